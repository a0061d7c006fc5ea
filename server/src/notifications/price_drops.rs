//! Price-drop alerts: when a seller lowers a price, everyone who favourited the item hears of it once — at most
//! one alert per listing per campus day, however often the price moves.
//!
//! The listing edit only records the change in the price history (same transaction as the edit). A sweep reads
//! the history past a stored watermark and fans each drop out to the favouriters with one `INSERT … SELECT`, so a
//! thousand favouriters cost one statement, not a thousand. Advancing the watermark is the first write of the
//! sweep's transaction and is conditional on the value it read: of several instances sweeping at once exactly one
//! commits a batch, and a crash in between loses nothing (the batch is read again).

use std::collections::BTreeMap;

use chrono::FixedOffset;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait, Value,
};

use crate::{
    error::AppResult,
    listings::model::{listing, price_change},
    notifications::service::{BODY_MAX, TITLE_MAX},
    util,
};

const WATERMARK: &str = "price_drops";
/// Price changes read per transaction.
const BATCH: u64 = 200;

/// The campus calendar day (China Standard Time) of an instant, `YYYY-MM-DD`.
pub fn campus_day(at: chrono::DateTime<chrono::Utc>) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    at.with_timezone(&cst).format("%Y-%m-%d").to_string()
}

/// `12345` fen → `123.45`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

/// Of the changes in one batch, the drops worth telling: per listing, the price before its first change in the
/// batch against the price after its last one (so ¥100 → ¥90 → ¥80 reads "¥100 → ¥80", and a drop taken back
/// within the batch tells nobody). Returns (listing, old price, new price, id of the last change).
pub fn drops_in(changes: &[price_change::Model]) -> Vec<(i64, i64, i64, i64)> {
    let mut by_listing: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for c in changes {
        by_listing
            .entry(c.listing_id)
            .and_modify(|e| {
                e.1 = c.new_price;
                e.2 = c.id;
            })
            .or_insert((c.old_price, c.new_price, c.id));
    }
    by_listing
        .into_iter()
        .filter(|(_, (old, new, _))| new < old)
        .map(|(listing, (old, new, change))| (listing, old, new, change))
        .collect()
}

/// Runs the sweep until the price history is read to its end; returns how many alerts went out (one per
/// favouriter).
pub async fn sweep(db: &DatabaseConnection) -> AppResult<u64> {
    let mut sent = 0;
    loop {
        match sweep_batch(db).await? {
            Some(n) => sent += n,
            None => return Ok(sent),
        }
    }
}

/// One batch; `None` when there was nothing new (or another instance took the batch).
async fn sweep_batch(db: &DatabaseConnection) -> AppResult<Option<u64>> {
    let backend = db.get_database_backend();
    let Some(last_id) = super::watermark::read(db, WATERMARK).await? else {
        return Ok(None);
    };
    let changes = price_change::Entity::find()
        .filter(price_change::Column::Id.gt(last_id))
        .order_by_asc(price_change::Column::Id)
        .limit(BATCH)
        .all(db)
        .await?;
    let Some(newest) = changes.last().map(|c| c.id) else {
        return Ok(None);
    };
    let drops = drops_in(&changes);
    let titles: BTreeMap<i64, String> = if drops.is_empty() {
        BTreeMap::new()
    } else {
        listing::Entity::find()
            .filter(listing::Column::Id.is_in(drops.iter().map(|d| d.0)))
            .all(db)
            .await?
            .into_iter()
            .map(|l| (l.id, l.title))
            .collect()
    };

    let now = util::now();
    let day = campus_day(now);
    let txn = db.begin().await?;
    // First write of the transaction, conditional on what we read: exactly one sweeper wins the batch.
    if !super::watermark::advance_in(&txn, WATERMARK, last_id, newest).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    let mut sent = 0;
    for (listing_id, old, new, change_id) in drops {
        let claimed = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO price_drop_alerts (listing_id, alert_day, price_change_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                [
                    listing_id.into(),
                    day.clone().into(),
                    change_id.into(),
                    now.into(),
                ],
            ))
            .await?;
        if claimed.rows_affected() != 1 {
            continue; // this listing already alerted today
        }
        let title = titles.get(&listing_id).cloned().unwrap_or_default();
        let body: String = format!(
            "你收藏的「{title}」从 ¥{} 降到了 ¥{}。",
            yuan(old),
            yuan(new)
        )
        .chars()
        .take(BODY_MAX)
        .collect();
        let heading: String = "收藏的商品降价了".chars().take(TITLE_MAX).collect();
        // One statement for every favouriter; the seller is never told about their own listing, and a listing
        // that left the market (sold, withdrawn, held) alerts nobody.
        let res = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO notifications (user_id, kind, title, body, target_type, target_id, read_at, created_at) \
                 SELECT f.user_id, 'price_drop', $1, $2, 'listing', l.id, NULL, $3 \
                 FROM favorites f JOIN listings l ON l.id = f.listing_id \
                 WHERE f.listing_id = $4 AND f.user_id <> l.seller_id AND l.status IN ('on_sale', 'reserved')",
                [
                    heading.into(),
                    body.into(),
                    now.into(),
                    Value::from(listing_id),
                ],
            ))
            .await?;
        sent += res.rows_affected();
    }
    txn.commit().await?;
    Ok(Some(sent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn change(id: i64, listing_id: i64, old: i64, new: i64) -> price_change::Model {
        price_change::Model {
            id,
            listing_id,
            old_price: old,
            new_price: new,
            changed_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn campus_day_is_china_time() {
        let late_utc = chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 17, 30, 0)
            .unwrap();
        assert_eq!(campus_day(late_utc), "2026-11-25");
        let early_utc = chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 15, 59, 0)
            .unwrap();
        assert_eq!(campus_day(early_utc), "2026-11-24");
    }

    #[test]
    fn yuan_formats_fen() {
        assert_eq!(yuan(150_000), "1500.00");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(yuan(1999), "19.99");
    }

    #[test]
    fn only_drops_count_and_a_batch_folds_per_listing() {
        let changes = vec![
            change(1, 10, 10_000, 9_000),
            change(2, 10, 9_000, 8_000),
            change(3, 11, 5_000, 6_000), // a rise: nothing
            change(4, 12, 3_000, 2_000),
            change(5, 12, 2_000, 3_500), // dropped then raised above the start: nothing to tell
        ];
        assert_eq!(drops_in(&changes), vec![(10, 10_000, 8_000, 2)]);
    }
}
