//! Per-day counts for the operators' dashboard, computed on demand from the capabilities' own tables: one indexed
//! `GROUP BY day` per figure over a time range (and optionally some schools), so the dashboard can load them on
//! every view without a separate aggregate to keep in step. Days are calendar days in China Standard Time
//! (UTC+8, no daylight saving), the operators' day.
//!
//! A figure is a [`Counter`]: the table, its time column, an optional extra condition, and its school column.
//! Capabilities that add figures (orders by state, GMV, refunds, disputes, active chatters) declare their counter
//! next to these and add a field to the dashboard's day. Sums (GMV) use [`Counter::sum_of`].

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
    let mut sql = format!(
        "SELECT {day_expr} AS day, {aggregate} AS n FROM {table} WHERE {time} >= {p1} AND {time} < {p2}",
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
    sql.push_str(" GROUP BY 1");
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
        let n: i64 = row.try_get("", "n")?;
        let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| {
            AppError::internal(anyhow::anyhow!(
                "unexpected day {day:?} from the database: {e}"
            ))
        })?;
        out.insert(day, n);
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
