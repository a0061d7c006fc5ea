//! The counts behind the badges of the Mini Program's "me" page, in one request: the caller's listings by
//! status, purchases and sales by order status, unread chat messages and notifications, reviews still to write
//! and favourites. Each figure is one indexed aggregate query (grouped where it can be), so the page costs a
//! fixed handful of queries however active the student is.

use sea_orm::{ConnectionTrait, FromQueryResult, Statement};

use crate::{
    chat, error::AppResult, notifications, orders::model::OrderStatus, reviews, state::AppState,
};

/// Listings of the caller by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, poem_openapi::Object)]
pub struct MyListingCounts {
    pub on_sale: u64,
    pub reserved: u64,
    pub sold: u64,
    /// Held for an operator's review.
    pub pending_review: u64,
    pub withdrawn: u64,
}

/// Orders of the caller on one side, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, poem_openapi::Object)]
pub struct MyOrderCounts {
    pub pending_payment: u64,
    pub pending_handover: u64,
    pub paid: u64,
    pub refund_requested: u64,
    pub disputed: u64,
    pub refunded: u64,
    pub completed: u64,
    pub settled: u64,
    pub cancelled: u64,
}

impl MyOrderCounts {
    fn add(&mut self, status: &str, n: u64) {
        let slot = match status {
            s if s == OrderStatus::PendingPayment.as_str() => &mut self.pending_payment,
            s if s == OrderStatus::PendingHandover.as_str() => &mut self.pending_handover,
            s if s == OrderStatus::Paid.as_str() => &mut self.paid,
            s if s == OrderStatus::RefundRequested.as_str() => &mut self.refund_requested,
            s if s == OrderStatus::Disputed.as_str() => &mut self.disputed,
            s if s == OrderStatus::Refunded.as_str() => &mut self.refunded,
            s if s == OrderStatus::Completed.as_str() => &mut self.completed,
            s if s == OrderStatus::Settled.as_str() => &mut self.settled,
            s if s == OrderStatus::Cancelled.as_str() => &mut self.cancelled,
            _ => return,
        };
        *slot += n;
    }
}

/// The badges of the "me" page.
#[derive(Debug, Clone, PartialEq, Eq, poem_openapi::Object)]
pub struct MeSummary {
    pub listings: MyListingCounts,
    /// Orders as the buyer.
    pub purchases: MyOrderCounts,
    /// Orders as the seller.
    pub sales: MyOrderCounts,
    /// Chat messages not read yet, in every conversation.
    pub unread_messages: u64,
    /// Inbox notifications not read yet.
    pub unread_notifications: u64,
    /// Completed orders the caller can still review (30-day window open, no review yet).
    pub pending_reviews: u64,
    /// Listings the caller favourited.
    pub favorites: u64,
}

#[derive(Debug, FromQueryResult)]
struct Group {
    side: String,
    status: String,
    n: i64,
}

#[derive(Debug, FromQueryResult)]
struct Count {
    n: i64,
}

async fn count(db: &impl ConnectionTrait, sql: &str, user_id: i64) -> AppResult<u64> {
    Ok(Count::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [user_id.into()],
    ))
    .one(db)
    .await?
    .map_or(0, |c| c.n.max(0) as u64))
}

/// `GET /api/v1/me/summary`.
pub async fn summary(state: &AppState, user_id: i64) -> AppResult<MeSummary> {
    let db = &state.db;
    let backend = db.get_database_backend();
    let mut listings = MyListingCounts::default();
    let rows = Group::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT 'listing' AS side, status, COUNT(*) AS n FROM listings WHERE seller_id = $1 GROUP BY status",
        [user_id.into()],
    ))
    .all(db)
    .await?;
    for g in rows {
        let n = g.n.max(0) as u64;
        match g.status.as_str() {
            "on_sale" => listings.on_sale += n,
            "reserved" => listings.reserved += n,
            "sold" => listings.sold += n,
            "pending_review" => listings.pending_review += n,
            "withdrawn" => listings.withdrawn += n,
            _ => {}
        }
    }
    let mut purchases = MyOrderCounts::default();
    let mut sales = MyOrderCounts::default();
    let rows = Group::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT CASE WHEN buyer_id = $1 THEN 'buyer' ELSE 'seller' END AS side, status, COUNT(*) AS n \
         FROM orders WHERE buyer_id = $1 OR seller_id = $1 GROUP BY 1, 2",
        [user_id.into()],
    ))
    .all(db)
    .await?;
    for g in rows {
        let side = if g.side == "buyer" {
            &mut purchases
        } else {
            &mut sales
        };
        side.add(&g.status, g.n.max(0) as u64);
    }
    Ok(MeSummary {
        listings,
        purchases,
        sales,
        unread_messages: chat::service::unread_total(db, user_id).await?.max(0) as u64,
        unread_notifications: notifications::service::unread_count(db, user_id).await?,
        pending_reviews: reviews::service::pending_count(db, user_id).await?,
        favorites: count(
            db,
            "SELECT COUNT(*) AS n FROM favorites WHERE user_id = $1",
            user_id,
        )
        .await?,
    })
}
