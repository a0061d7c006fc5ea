//! Reputation counters: changed incrementally inside the transaction of whatever changes them (an order
//! completing, a seller cancelling, a review being revealed, edited or hidden), so reading a reputation is one
//! primary-key lookup and never a recount; and rebuilt from scratch by [`recompute`]
//! (`campus-trade recompute-reputation`), which must agree with the increments.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter,
    Statement, TransactionTrait,
};

use super::model::{Counters, POSITIVE_RATING, user_reputation};
use crate::{error::AppResult, orders::model::order, util};

/// A change of a student's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    pub completed_sales: i64,
    pub completed_purchases: i64,
    pub seller_cancelled: i64,
    pub rating_count: i64,
    pub rating_sum: i64,
    pub positive_count: i64,
}

impl Delta {
    /// One rating starting (`sign` 1) or stopping (`sign` -1) to count.
    pub fn rating(rating: i32, sign: i64) -> Self {
        Delta {
            rating_count: sign,
            rating_sum: sign * i64::from(rating),
            positive_count: if rating >= POSITIVE_RATING { sign } else { 0 },
            ..Default::default()
        }
    }

    /// A counted rating changing from `old` to `new`.
    pub fn rerating(old: i32, new: i32) -> Self {
        let a = Delta::rating(old, -1);
        let b = Delta::rating(new, 1);
        Delta {
            rating_count: 0,
            rating_sum: a.rating_sum + b.rating_sum,
            positive_count: a.positive_count + b.positive_count,
            ..Default::default()
        }
    }

    fn is_zero(&self) -> bool {
        *self == Delta::default()
    }
}

/// Adds `d` to `user_id`'s counters in the caller's transaction (creating the row on first use). One statement,
/// a write: safe as the first statement of a SQLite transaction, atomic under concurrency on PostgreSQL.
pub async fn bump(txn: &impl ConnectionTrait, user_id: i64, d: Delta) -> AppResult<()> {
    if d.is_zero() {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO user_reputation (user_id, completed_sales, completed_purchases, seller_cancelled, \
         rating_count, rating_sum, positive_count, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (user_id) DO UPDATE SET \
         completed_sales = user_reputation.completed_sales + excluded.completed_sales, \
         completed_purchases = user_reputation.completed_purchases + excluded.completed_purchases, \
         seller_cancelled = user_reputation.seller_cancelled + excluded.seller_cancelled, \
         rating_count = user_reputation.rating_count + excluded.rating_count, \
         rating_sum = user_reputation.rating_sum + excluded.rating_sum, \
         positive_count = user_reputation.positive_count + excluded.positive_count, \
         updated_at = excluded.updated_at",
        [
            user_id.into(),
            (d.completed_sales as i32).into(),
            (d.completed_purchases as i32).into(),
            (d.seller_cancelled as i32).into(),
            (d.rating_count as i32).into(),
            d.rating_sum.into(),
            (d.positive_count as i32).into(),
            util::now().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// An order completed: one more sale for the seller, one more purchase for the buyer.
pub async fn order_completed(txn: &impl ConnectionTrait, o: &order::Model) -> AppResult<()> {
    bump(
        txn,
        o.seller_id,
        Delta {
            completed_sales: 1,
            ..Default::default()
        },
    )
    .await?;
    bump(
        txn,
        o.buyer_id,
        Delta {
            completed_purchases: 1,
            ..Default::default()
        },
    )
    .await
}

/// The seller called an order off: it counts against their completion rate.
pub async fn seller_cancelled(txn: &impl ConnectionTrait, seller_id: i64) -> AppResult<()> {
    bump(
        txn,
        seller_id,
        Delta {
            seller_cancelled: 1,
            ..Default::default()
        },
    )
    .await
}

/// The counters of one student (zeros when they have none).
pub async fn counters(db: &impl ConnectionTrait, user_id: i64) -> AppResult<Counters> {
    Ok(user_reputation::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map(|r| Counters::from(&r))
        .unwrap_or_default())
}

/// The counters of many students in one query (students without a row are absent: zeros).
pub async fn counters_of(
    db: &impl ConnectionTrait,
    user_ids: &[i64],
) -> AppResult<HashMap<i64, Counters>> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user_reputation::Entity::find()
        .filter(user_reputation::Column::UserId.is_in(user_ids.iter().copied()))
        .all(db)
        .await?
        .iter()
        .map(|r| (r.user_id, Counters::from(r)))
        .collect())
}

/// Every student's counters from the source tables, as [`recompute`] writes them: completed (or settled)
/// orders per side, orders cancelled by their seller (the event log says who cancelled), and revealed, not
/// hidden reviews received. Students with nothing to count are absent.
pub async fn from_scratch(db: &impl ConnectionTrait) -> AppResult<HashMap<i64, Counters>> {
    #[derive(Debug, FromQueryResult)]
    struct Row {
        user_id: i64,
        completed_sales: i64,
        completed_purchases: i64,
        seller_cancelled: i64,
        rating_count: i64,
        rating_sum: i64,
        positive_count: i64,
    }
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT * FROM ({}) t WHERE {}", FROM_SCRATCH, NOT_EMPTY),
        [false.into(), POSITIVE_RATING.into()],
    ))
    .all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.user_id,
                Counters {
                    completed_sales: r.completed_sales,
                    completed_purchases: r.completed_purchases,
                    seller_cancelled: r.seller_cancelled,
                    rating_count: r.rating_count,
                    rating_sum: r.rating_sum,
                    positive_count: r.positive_count,
                },
            )
        })
        .collect())
}

/// Per user: the counters from the source tables. `$1` is `false` (the `hidden` flag), `$2` the lowest positive
/// rating. CASTs keep the column types the same on both backends (SUM is NUMERIC on PostgreSQL otherwise).
const FROM_SCRATCH: &str = "SELECT u.id AS user_id, \
     CAST((SELECT COUNT(*) FROM orders o WHERE o.seller_id = u.id \
       AND o.status IN ('completed', 'settled')) AS BIGINT) AS completed_sales, \
     CAST((SELECT COUNT(*) FROM orders o WHERE o.buyer_id = u.id \
       AND o.status IN ('completed', 'settled')) AS BIGINT) AS completed_purchases, \
     CAST((SELECT COUNT(*) FROM orders o WHERE o.seller_id = u.id AND o.status = 'cancelled' \
       AND EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.to_status = 'cancelled' \
       AND e.actor = 'seller')) AS BIGINT) AS seller_cancelled, \
     CAST((SELECT COUNT(*) FROM reviews r WHERE r.reviewee_id = u.id AND r.revealed_at IS NOT NULL \
       AND r.hidden = $1) AS BIGINT) AS rating_count, \
     CAST((SELECT COALESCE(SUM(r.rating), 0) FROM reviews r WHERE r.reviewee_id = u.id \
       AND r.revealed_at IS NOT NULL AND r.hidden = $1) AS BIGINT) AS rating_sum, \
     CAST((SELECT COUNT(*) FROM reviews r WHERE r.reviewee_id = u.id AND r.revealed_at IS NOT NULL \
       AND r.hidden = $1 AND r.rating >= $2) AS BIGINT) AS positive_count \
     FROM users u";

const NOT_EMPTY: &str =
    "t.completed_sales + t.completed_purchases + t.seller_cancelled + t.rating_count > 0";

/// Rebuilds `user_reputation` from scratch in one transaction (replacing every row); returns the number of
/// students with a reputation. A maintenance command: increments committed while it runs may be lost, so run
/// it when the service is quiet (or stopped).
pub async fn recompute(db: &DatabaseConnection) -> AppResult<u64> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_string(
        backend,
        "DELETE FROM user_reputation",
    ))
    .await?;
    let res = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO user_reputation (user_id, completed_sales, completed_purchases, \
                 seller_cancelled, rating_count, rating_sum, positive_count, updated_at) \
                 SELECT t.user_id, t.completed_sales, t.completed_purchases, t.seller_cancelled, \
                 t.rating_count, t.rating_sum, t.positive_count, $3 FROM ({FROM_SCRATCH}) t WHERE {NOT_EMPTY}"
            ),
            [false.into(), POSITIVE_RATING.into(), util::now().into()],
        ))
        .await?;
    txn.commit().await?;
    Ok(res.rows_affected())
}

/// Every stored reputation row, as counters (for comparing with [`from_scratch`]).
pub async fn all_stored(db: &impl ConnectionTrait) -> AppResult<HashMap<i64, Counters>> {
    Ok(user_reputation::Entity::find()
        .all(db)
        .await?
        .iter()
        .map(|r| (r.user_id, Counters::from(r)))
        .filter(|(_, c)| *c != Counters::default())
        .collect())
}

/// Conversations a response time is taken from: the seller's most recent ones.
const RESPONSE_SAMPLE: u64 = 50;

/// The median time `seller_id` took to answer a buyer's first message, over their last 50 conversations as a
/// seller (conversations they never answered are left out). Computed when a profile is read (two indexed
/// queries), not stored: it changes with every chat message, and keeping it incremental would put a write
/// on the chat's hot path. `None` when there is nothing to measure.
pub async fn median_response_seconds(
    db: &impl ConnectionTrait,
    seller_id: i64,
) -> AppResult<Option<i64>> {
    use crate::chat::model::message;
    #[derive(Debug, FromQueryResult)]
    struct Pair {
        asked: Option<i64>,
        answered: Option<i64>,
    }
    let pairs = Pair::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT q.asked AS asked, (SELECT MIN(a.id) FROM chat_messages a \
               WHERE a.conversation_id = q.id AND a.sender_id = $1 AND a.id > q.asked) AS answered \
             FROM (SELECT c.id AS id, (SELECT MIN(m.id) FROM chat_messages m \
               WHERE m.conversation_id = c.id AND m.sender_id = c.buyer_id) AS asked \
               FROM conversations c WHERE c.seller_id = $1 \
               ORDER BY c.last_activity_at DESC LIMIT {RESPONSE_SAMPLE}) q \
             WHERE q.asked IS NOT NULL"
        ),
        [seller_id.into()],
    ))
    .all(db)
    .await?;
    let pairs: Vec<(i64, i64)> = pairs
        .into_iter()
        .filter_map(|p| Some((p.asked?, p.answered?)))
        .collect();
    if pairs.is_empty() {
        return Ok(None);
    }
    let ids = pairs.iter().flat_map(|(a, b)| [*a, *b]);
    let times: HashMap<i64, chrono::DateTime<chrono::Utc>> = message::Entity::find()
        .filter(message::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.id, m.created_at))
        .collect();
    let delays: Vec<i64> = pairs
        .iter()
        .filter_map(|(a, b)| Some((*times.get(b)? - *times.get(a)?).num_seconds().max(0)))
        .collect();
    Ok(super::model::median(delays))
}
