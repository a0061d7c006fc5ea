//! Where a sweep that reads a table in id order has got to: one row per sweep in `job_watermarks`. The price-drop
//! alerts and the subscribe messages of inbox events both read their source this way, so every row is handled
//! once even with several instances sweeping: the batch belongs to whoever moves the watermark.

use sea_orm::{ConnectionTrait, Statement};

use crate::{error::AppResult, util};

/// The last id sweep `name` has handled; `None` before its first run.
pub async fn read(db: &impl ConnectionTrait, name: &str) -> AppResult<Option<i64>> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT last_id FROM job_watermarks WHERE name = $1",
            [name.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "last_id")).transpose()?)
}

/// Moves sweep `name` from `from` to `to` as the first write of the caller's transaction, if no other sweeper
/// has moved it meanwhile; false means the batch is someone else's (roll back and stop).
pub async fn advance_in(
    txn: &impl ConnectionTrait,
    name: &str,
    from: i64,
    to: i64,
) -> AppResult<bool> {
    let moved = txn
        .execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "UPDATE job_watermarks SET last_id = $1, updated_at = $2 WHERE name = $3 AND last_id = $4",
            [to.into(), util::now().into(), name.into(), from.into()],
        ))
        .await?;
    Ok(moved.rows_affected() == 1)
}
