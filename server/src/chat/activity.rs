//! Who chatted on which day, for the operators' dashboard ("daily active chatters"): one row per student per
//! campus day (UTC+8) in `chat_active_days`, written when they first send a message that day. Each instance
//! remembers whom it already recorded today, so a busy chatter costs one insert per day per instance, not one
//! per message; the insert ignores a row another instance wrote first.

use std::{collections::HashSet, sync::Mutex};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};

/// This instance's memory of today's recorded chatters.
#[derive(Default)]
pub struct Activity {
    seen: Mutex<(String, HashSet<i64>)>,
}

impl Activity {
    /// Records that `user_id` (of `school_id`) sent a message at `at`. Never fails the send: an error is
    /// logged and the next message tries again.
    pub async fn record(
        &self,
        db: &impl ConnectionTrait,
        user_id: i64,
        school_id: Option<i64>,
        at: DateTime<Utc>,
    ) {
        let day = crate::orders::model::campus_day(at);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 != day {
                *seen = (day.clone(), HashSet::new());
            }
            if !seen.1.insert(user_id) {
                return;
            }
        }
        if let Err(e) = record_in(db, &day, user_id, school_id, at).await {
            tracing::warn!(user_id, error = %e, "could not record a daily chatter");
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 == day {
                seen.1.remove(&user_id);
            }
        }
    }
}

/// Inserts the row of `user_id` on `day` unless there is one.
pub async fn record_in(
    db: &impl ConnectionTrait,
    day: &str,
    user_id: i64,
    school_id: Option<i64>,
    at: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "INSERT INTO chat_active_days (day, user_id, school_id, first_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (day, user_id) DO NOTHING",
        [day.into(), user_id.into(), school_id.into(), at.into()],
    ))
    .await?;
    Ok(())
}
