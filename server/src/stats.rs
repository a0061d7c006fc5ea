//! Per-day counts for the operators' dashboard, computed on demand from the capabilities' own tables: one indexed
//! `GROUP BY day` per figure over a time range (and optionally some schools), so the dashboard can load them on
//! every view without a separate aggregate to keep in step. Days are calendar days in China Standard Time
//! (UTC+8, no daylight saving), the operators' day.
//!
//! A figure is a [`Counter`]: the table, its time column, an optional extra condition, and its school column.
//! The order figures (transitions by status, GMV paid and settled, refunds, disputes) count the orders' own
//! tables by indexed times; an order's school is its listing's (a subquery by primary key, only when a school
//! filter applies). Daily active chatters are pre-aggregated by the chat capability (`chat_active_days`). Sums
//! (GMV) use [`Counter::sum_of`].

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::error::{AppError, AppResult};

/// The dashboard's time zone: China Standard Time.
pub const DAY_OFFSET_HOURS: i32 = 8;

/// The longest range one request may ask for.
pub const MAX_DAYS: i64 = 366;

/// One figure counted per day.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    pub table: &'static str,
    /// The time that puts a row on a day.
    pub time_column: &'static str,
    /// An extra SQL condition (a literal; never user input), e.g. `status = 'approved'`.
    pub condition: Option<&'static str>,
    /// The school of a row: a column, or a scalar subquery (a literal).
    pub school_column: &'static str,
    /// `COUNT(*)` when `None`, else `SUM(column)`.
    pub sum_of: Option<&'static str>,
}

/// Students who joined (first login) — by the school in their profile.
pub const NEW_USERS: Counter = Counter {
    table: "users",
    time_column: "created_at",
    condition: None,
    school_column: "school_id",
    sum_of: None,
};

/// Verification requests approved (by the roster at once, or by an operator) — the day of the decision.
pub const VERIFIED_STUDENTS: Counter = Counter {
    table: "verification_requests",
    time_column: "decided_at",
    condition: Some("status = 'approved'"),
    school_column: "school_id",
    sum_of: None,
};

/// Listings published (whatever became of them since).
pub const LISTINGS_PUBLISHED: Counter = Counter {
    table: "listings",
    time_column: "created_at",
    condition: None,
    school_column: "school_id",
    sum_of: None,
};

/// The school of an order: its listing's.
/// (`order_id` is the counted table's: neither `orders` nor `listings` has such a column.)
const ORDER_SCHOOL: &str = "(SELECT l.school_id FROM orders o JOIN listings l ON l.id = o.listing_id WHERE o.id = order_id)";

/// Order transitions, by the status they led to (`GROUP BY to_status`): `pending_payment` and
/// `pending_handover` are orders placed; `disputed` is a dispute opened.
pub const ORDER_EVENTS: Counter = Counter {
    table: "order_events",
    time_column: "created_at",
    // Status changes only (a late payment's refund is logged from a status to itself).
    condition: Some("(from_status IS NULL OR from_status <> to_status)"),
    school_column: ORDER_SCHOOL,
    sum_of: None,
};

/// Disputes decided by an operator.
pub const DISPUTES_DECIDED: Counter = Counter {
    table: "order_events",
    time_column: "created_at",
    condition: Some("actor = 'operator' AND from_status = 'disputed'"),
    school_column: ORDER_SCHOOL,
    sum_of: None,
};

/// GMV paid: fen of WeChat Pay orders on the day they were paid.
pub const GMV_PAID: Counter = Counter {
    table: "orders",
    time_column: "paid_at",
    condition: None,
    school_column: "(SELECT l.school_id FROM listings l WHERE l.id = orders.listing_id)",
    sum_of: Some("amount"),
};

/// GMV settled: fen the payouts that reached sellers settled (what the seller received plus the platform fee,
/// i.e. the order amount less refunds), on the day the payout succeeded.
pub const GMV_SETTLED: Counter = Counter {
    table: "payouts",
    time_column: "succeeded_at",
    condition: Some("status = 'succeeded'"),
    school_column: ORDER_SCHOOL,
    sum_of: Some("amount + fee"),
};

/// Refunds back in the buyer's account, on the day they succeeded.
pub const REFUNDS: Counter = Counter {
    table: "refunds",
    time_column: "succeeded_at",
    condition: Some("status = 'succeeded'"),
    school_column: ORDER_SCHOOL,
    sum_of: None,
};

/// Fen of [`REFUNDS`].
pub const REFUNDED_FEN: Counter = Counter {
    sum_of: Some("amount"),
    ..REFUNDS
};

/// Students who sent at least one chat message that day (pre-aggregated in `chat_active_days`), by their
/// school at the time.
pub const ACTIVE_CHATTERS: Counter = Counter {
    table: "chat_active_days",
    time_column: "first_at",
    condition: None,
    school_column: "school_id",
    sum_of: None,
};

/// The first instant of `day` in the dashboard's time zone, in UTC.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    let tz = FixedOffset::east_opt(DAY_OFFSET_HOURS * 3600).expect("valid offset");
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// Today in the dashboard's time zone.
pub fn today() -> NaiveDate {
    let tz = FixedOffset::east_opt(DAY_OFFSET_HOURS * 3600).expect("valid offset");
    crate::util::now().with_timezone(&tz).date_naive()
}

/// Checks a requested range: `from` ≤ `to`, at most [`MAX_DAYS`] days.
pub fn check_range(from: NaiveDate, to: NaiveDate) -> AppResult<()> {
    if from > to {
        return Err(AppError::invalid_field("from", "must not be after `to`"));
    }
    if (to - from).num_days() + 1 > MAX_DAYS {
        return Err(AppError::invalid_field(
            "to",
            format!("a range covers at most {MAX_DAYS} days"),
        ));
    }
    Ok(())
}

/// The counter's value per day from `from` to `to` (both included), for the given schools (`None`: all). Days
/// without rows are absent from the map.
pub async fn per_day(
    db: &impl ConnectionTrait,
    c: Counter,
    schools: Option<&[i64]>,
    from: NaiveDate,
    to: NaiveDate,
) -> AppResult<BTreeMap<NaiveDate, i64>> {
    Ok(query(db, c, None, schools, from, to)
        .await?
        .into_iter()
        .map(|((day, _), n)| (day, n))
        .collect())
}

/// The counter's value per day and value of `group_column` (a column of the counter's table, e.g. the status
/// an order event led to), from `from` to `to`.
pub async fn per_day_by(
    db: &impl ConnectionTrait,
    c: Counter,
    group_column: &'static str,
    schools: Option<&[i64]>,
    from: NaiveDate,
    to: NaiveDate,
) -> AppResult<BTreeMap<(NaiveDate, String), i64>> {
    query(db, c, Some(group_column), schools, from, to).await
}

async fn query(
    db: &impl ConnectionTrait,
    c: Counter,
    group_column: Option<&'static str>,
    schools: Option<&[i64]>,
    from: NaiveDate,
    to: NaiveDate,
) -> AppResult<BTreeMap<(NaiveDate, String), i64>> {
    if schools.is_some_and(|s| s.is_empty()) {
        return Ok(BTreeMap::new());
    }
    let backend = db.get_database_backend();
    let day_expr = match backend {
        DbBackend::Postgres => format!(
            "to_char(({col} AT TIME ZONE 'UTC') + interval '{DAY_OFFSET_HOURS} hours', 'YYYY-MM-DD')",
            col = c.time_column
        ),
        _ => format!(
            "date({col}, '+{DAY_OFFSET_HOURS} hours')",
            col = c.time_column
        ),
    };
    let aggregate = match c.sum_of {
        None => "COUNT(*)".to_string(),
        Some(col) => format!("CAST(COALESCE(SUM({col}), 0) AS BIGINT)"),
    };
    let (p1, p2) = match backend {
        DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let group = group_column.unwrap_or("''");
    let mut sql = format!(
        "SELECT {day_expr} AS day, {group} AS grp, {aggregate} AS n FROM {table} WHERE {time} >= {p1} AND {time} < {p2}",
        table = c.table,
        time = c.time_column,
    );
    if let Some(cond) = c.condition {
        sql.push_str(&format!(" AND {cond}"));
    }
    if let Some(ids) = schools {
        // Integers from the operator's scope or a parsed parameter: safe to inline.
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        sql.push_str(&format!(
            " AND {} IN ({})",
            c.school_column,
            list.join(", ")
        ));
    }
    sql.push_str(if group_column.is_some() {
        " GROUP BY 1, 2"
    } else {
        " GROUP BY 1"
    });
    let values: Vec<Value> = vec![
        day_start(from).into(),
        day_start(to + chrono::Duration::days(1)).into(),
    ];
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let day: String = row.try_get("", "day")?;
        let grp: String = row.try_get("", "grp")?;
        let n: i64 = row.try_get("", "n")?;
        let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| {
            AppError::internal(anyhow::anyhow!(
                "unexpected day {day:?} from the database: {e}"
            ))
        })?;
        out.insert((day, grp), n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_midnight_china_time() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(day_start(d).to_rfc3339(), "2026-11-23T16:00:00+00:00");
    }

    #[test]
    fn ranges_are_checked() {
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert!(check_range(d, d).is_ok());
        assert!(check_range(d, d + chrono::Duration::days(365)).is_ok());
        assert!(check_range(d, d + chrono::Duration::days(366)).is_err());
        assert!(check_range(d + chrono::Duration::days(1), d).is_err());
    }
}
