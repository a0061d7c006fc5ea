//! What other capabilities may put into a conversation: system cards (order events), and the accepted offer an
//! order may use as its price.

use sea_orm::ConnectionTrait;

use crate::{
    error::{AppError, AppResult},
    state::AppState,
};

/// A system card: a line the service itself writes into the buyer–seller conversation of a listing.
#[derive(Debug, Clone)]
pub struct Card {
    /// Machine-readable kind, e.g. `order_created`, `order_paid`, `order_completed`.
    pub kind: String,
    /// The text both parties see (Chinese, complete sentence).
    pub text: String,
    /// The order the card is about, when there is one.
    pub order_id: Option<i64>,
}

/// Cards written in a transaction, to be pushed to open sockets once it has committed.
#[derive(Debug, Default)]
#[must_use = "pass it to `deliver` after the transaction commits"]
pub struct Delivery {
    pending: Vec<i64>,
}

/// Writes `card` into the conversation between `buyer_id` and `seller_id` about `listing_id` (opening the
/// conversation when there is none yet), in the caller's transaction.
pub async fn post_in(
    _txn: &impl ConnectionTrait,
    _listing_id: i64,
    _buyer_id: i64,
    _seller_id: i64,
    _card: Card,
) -> AppResult<Delivery> {
    // Interface placeholder: the chat capability (issue #5) stores the card here.
    Ok(Delivery::default())
}

/// Pushes committed cards to the participants' open sockets (best effort: clients catch up with `sync`).
pub fn deliver(_state: &AppState, delivery: Delivery) {
    let _ = delivery.pending;
}

/// The price in fen of offer `offer_id`, when it is an offer `buyer_id` made on `listing_id` and the seller
/// accepted it. 404 `not_found` when there is no such offer of this buyer on this listing; 409 `offer_not_accepted`
/// when it is pending, declined or superseded.
pub async fn accepted_offer_price(
    _txn: &impl ConnectionTrait,
    _offer_id: i64,
    _listing_id: i64,
    _buyer_id: i64,
) -> AppResult<i64> {
    // Interface placeholder until the chat capability (issue #5) lands offers.
    Err(AppError::not_found("offer"))
}
