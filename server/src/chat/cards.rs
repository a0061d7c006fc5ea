//! What other capabilities may put into a conversation: system cards (order events, listing changes), and the
//! accepted offer an order may use as its price.
//!
//! Cards are written in the caller's transaction ([`post_in`], [`listing_changed_in`]); what they return is a
//! [`Delivery`], to hand to [`deliver`] once the transaction has committed, which pushes the cards to the
//! participants' sockets on every instance. A delivery that is dropped instead loses nothing: the cards are
//! stored, and clients see them at their next `sync` or history load.

use std::sync::Arc;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::{
    hub::SocketId,
    model::{OfferStatus, message, offer},
    service,
};
use crate::{
    error::{AppError, AppResult},
    images::model::image,
    listings::model::listing,
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

/// Something to push to sockets once the transaction that produced it has committed.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // short-lived, a handful per transaction
pub(crate) enum Event {
    /// A new message; `own` marks the sender's own message, which the sending socket gets as its `ack` instead.
    Message {
        users: Vec<i64>,
        message: message::Model,
        image: Option<image::Model>,
        offer: Option<offer::Model>,
        own: bool,
    },
    /// An offer changed status.
    OfferUpdated {
        users: Vec<i64>,
        offer: offer::Model,
    },
    /// `user_id` read `conversation_id` up to `up_to`.
    Read {
        users: Vec<i64>,
        conversation_id: i64,
        user_id: i64,
        up_to: i64,
    },
}

/// Cards (and other events) written in a transaction, to be pushed to open sockets once it has committed.
#[derive(Debug, Default)]
#[must_use = "pass it to `deliver` after the transaction commits"]
pub struct Delivery {
    pending: Vec<Event>,
}

impl Delivery {
    pub(crate) fn push(&mut self, event: Event) {
        self.pending.push(event);
    }

    /// Adds another delivery's events (for a transaction that wrote cards in several places).
    pub fn merge(&mut self, other: Delivery) {
        self.pending.extend(other.pending);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Writes `card` into the conversation between `buyer_id` and `seller_id` about `listing_id` (opening the
/// conversation when there is none yet), in the caller's transaction.
pub async fn post_in(
    txn: &impl ConnectionTrait,
    listing_id: i64,
    buyer_id: i64,
    seller_id: i64,
    card: Card,
) -> AppResult<Delivery> {
    let conv = service::ensure_conversation_in(txn, listing_id, buyer_id, seller_id).await?;
    let msg = service::insert_card(
        txn,
        &conv,
        service::NewCard {
            kind: &card.kind,
            text: &card.text,
            order_id: card.order_id,
            offer_id: None,
            visible_to: None,
        },
    )
    .await?;
    service::touch_conversation(txn, conv.id, msg.id, msg.created_at).await?;
    let mut d = Delivery::default();
    d.push(Event::Message {
        users: vec![conv.buyer_id, conv.seller_id],
        message: msg,
        image: None,
        offer: None,
        own: false,
    });
    Ok(d)
}

/// What happened to a listing that its conversations should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingChange {
    Reserved,
    /// A reservation was released: on sale again.
    BackOnSale,
    Sold,
    PriceChanged {
        old: i64,
        new: i64,
    },
}

/// Writes a card about `change` into every conversation of the listing, in the caller's transaction (which must
/// already have written: call it after the listing's own UPDATE).
pub async fn listing_changed_in(
    txn: &impl ConnectionTrait,
    l: &listing::Model,
    change: ListingChange,
) -> AppResult<Delivery> {
    let (kind, text) = match change {
        ListingChange::Reserved => (
            "listing_reserved",
            format!("卖家已将「{}」标记为已预定。", l.title),
        ),
        ListingChange::BackOnSale => ("listing_on_sale", format!("「{}」重新开始出售。", l.title)),
        ListingChange::Sold => ("listing_sold", format!("「{}」已售出。", l.title)),
        ListingChange::PriceChanged { old, new } => (
            "listing_price_changed",
            format!(
                "卖家把「{}」的价格从 {} 改为 {}。",
                l.title,
                super::model::yuan(old),
                super::model::yuan(new)
            ),
        ),
    };
    service::post_listing_cards_in(txn, l.id, kind, &text).await
}

/// Pushes committed cards to the participants' open sockets (best effort: clients catch up with `sync`).
pub fn deliver(state: &AppState, delivery: Delivery) {
    deliver_except(state, delivery, None);
}

/// [`deliver`], leaving out the socket that sent the message (it gets an `ack` instead).
pub(crate) fn deliver_except(state: &AppState, delivery: Delivery, sender: Option<SocketId>) {
    for event in delivery.pending {
        let (users, frame, skip) = match event {
            Event::Message {
                users,
                message,
                image,
                offer,
                own,
            } => {
                let view =
                    super::api::message_view(state, &message, image.as_ref(), offer.as_ref());
                (
                    users,
                    super::ws::frame(
                        "message",
                        serde_json::json!({ "message": super::api::json_of(&view) }),
                    ),
                    if own { sender } else { None },
                )
            }
            Event::OfferUpdated { users, offer } => (
                users,
                super::ws::frame(
                    "offer_updated",
                    serde_json::json!({
                        "offer": super::api::json_of(&super::api::offer_view(&offer)),
                    }),
                ),
                None,
            ),
            Event::Read {
                users,
                conversation_id,
                user_id,
                up_to,
            } => (
                users,
                super::ws::frame(
                    "read",
                    serde_json::json!({
                        "conversation_id": conversation_id, "user_id": user_id, "up_to": up_to,
                    }),
                ),
                None,
            ),
        };
        state.chat.publish(&users, skip, Arc::from(frame));
    }
}

/// The price in fen of offer `offer_id`, when it is an offer `buyer_id` made on `listing_id` and the seller
/// accepted it. 404 `not_found` when there is no such offer of this buyer on this listing; 409 `offer_not_accepted`
/// when it is pending, declined or superseded.
pub async fn accepted_offer_price(
    txn: &impl ConnectionTrait,
    offer_id: i64,
    listing_id: i64,
    buyer_id: i64,
) -> AppResult<i64> {
    let found = offer::Entity::find_by_id(offer_id)
        .filter(offer::Column::ListingId.eq(listing_id))
        .filter(offer::Column::BuyerId.eq(buyer_id))
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("offer"))?;
    if found.status != OfferStatus::Accepted {
        return Err(AppError::conflict(
            "offer_not_accepted",
            format!(
                "the offer is {}, not accepted by the seller",
                found.status.as_str()
            ),
        ));
    }
    Ok(found.price)
}
