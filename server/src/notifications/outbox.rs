//! The durable outbox of WeChat subscribe messages.
//!
//! A capability that wants to tell a student something through WeChat calls [`enqueue`] inside the transaction
//! that makes the change, so the message exists exactly when the change is committed and survives a crash. The
//! sender ([`run_due`], run by a periodic job on every instance and kicked right after a commit by [`kick`])
//! claims due rows with a conditional UPDATE (so two instances never send the same row), sends them with
//! `subscribe/send`, and records the outcome:
//!
//! - success → `sent`;
//! - a permanent refusal (43101 the user has not subscribed or used up their one-time subscription, 47003 bad
//!   data, 40003 bad openid, 40037 bad template, 41030 bad page) → `dropped`, with a log line (43101 is normal
//!   and logged at `info`);
//! - anything else (WeChat unreachable, system error, quota) → retried with exponential backoff, and dropped
//!   after [`MAX_ATTEMPTS`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use serde_json::Value;

use crate::{
    error::AppResult,
    state::AppState,
    users::model::user,
    util,
    wechat::{WechatError, client::SubscribeMessage},
};

pub mod outbox_message {
    use sea_orm::entity::prelude::*;

    /// Where a queued message stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    pub enum Status {
        /// Waiting to be sent (or to be sent again at `next_attempt_at`).
        #[sea_orm(string_value = "pending")]
        Pending,
        /// WeChat accepted it.
        #[sea_orm(string_value = "sent")]
        Sent,
        /// Given up: WeChat refused it for good, or it failed [`super::MAX_ATTEMPTS`] times.
        #[sea_orm(string_value = "dropped")]
        Dropped,
    }

    /// A subscribe message waiting to be sent, or the record of one.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification_outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        /// What it is in the service's terms (`chat_message`, …), for logs and statistics.
        pub template_key: String,
        /// WeChat's template id (from the configuration).
        pub template_id: String,
        pub page: Option<String>,
        /// The `data` object, as JSON text.
        pub data: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub status: Status,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use outbox_message::Status;

/// Sends of one message before it is dropped.
pub const MAX_ATTEMPTS: i32 = 8;
/// How long a claimed row is reserved for the instance sending it.
const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// Rows one run of the sender takes.
const BATCH: u64 = 50;

/// A subscribe message to queue.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub user_id: i64,
    /// The service's name for it, e.g. `chat_message`.
    pub template_key: &'static str,
    pub template_id: String,
    /// The Mini Program page it opens, e.g. `pages/chat/conversation?id=7`.
    pub page: Option<String>,
    /// `{"thing1": {"value": "…"}, …}`.
    pub data: Value,
}

/// Queues `msg` in the caller's transaction; returns its id (pass it to [`kick`] after the commit to send it at
/// once).
pub async fn enqueue(txn: &impl ConnectionTrait, msg: Outgoing) -> AppResult<i64> {
    let now = util::now();
    let res = outbox_message::Entity::insert(outbox_message::ActiveModel {
        user_id: Set(msg.user_id),
        template_key: Set(msg.template_key.chars().take(32).collect()),
        template_id: Set(msg.template_id.chars().take(128).collect()),
        page: Set(msg.page.map(|p| p.chars().take(256).collect())),
        data: Set(msg.data.to_string()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        status: Set(Status::Pending),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(res.last_insert_id)
}

/// Sends what is due now in the background (after a commit that queued something), instead of waiting for the
/// next run of the job.
pub fn kick(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = run_due(&state).await {
            tracing::warn!(error = %e, "sending subscribe messages failed; the job will retry");
        }
    });
}

/// What to do after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// WeChat will never accept it: drop it.
    Permanent,
    /// Try again later.
    Transient,
}

/// Classifies a failed `subscribe/send`.
pub fn classify(err: &WechatError) -> Failure {
    match err.errcode() {
        Some(43101 | 47003 | 40003 | 40037 | 41030 | 47001) => Failure::Permanent,
        _ => Failure::Transient,
    }
}

/// Wait before attempt `attempts + 1`: 30 s, 1 min, 2 min, … capped at one hour.
pub fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 8) as u32 - 1;
    Duration::from_secs((30u64 << exp).min(3600))
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::zero())
}

/// Sends every due message (up to one batch); returns how many were settled (sent or dropped).
pub async fn run_due(state: &AppState) -> AppResult<u64> {
    let now = util::now();
    let due = outbox_message::Entity::find()
        .filter(outbox_message::Column::Status.eq(Status::Pending))
        .filter(outbox_message::Column::NextAttemptAt.lte(now))
        .order_by_asc(outbox_message::Column::NextAttemptAt)
        .limit(BATCH)
        .all(&state.db)
        .await?;
    let mut settled = 0;
    for row in due {
        // Claim: only the instance whose UPDATE moves `next_attempt_at` sends it.
        let claimed = outbox_message::Entity::update_many()
            .col_expr(
                outbox_message::Column::NextAttemptAt,
                Expr::value(after(now, CLAIM_LEASE)),
            )
            .filter(outbox_message::Column::Id.eq(row.id))
            .filter(outbox_message::Column::Status.eq(Status::Pending))
            .filter(outbox_message::Column::NextAttemptAt.eq(row.next_attempt_at))
            .exec(&state.db)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        if send_one(state, &row).await? {
            settled += 1;
        }
    }
    Ok(settled)
}

/// Sends one claimed row and records the outcome; true when it is settled.
async fn send_one(state: &AppState, row: &outbox_message::Model) -> AppResult<bool> {
    let openid = user::Entity::find_by_id(row.user_id)
        .one(&state.db)
        .await?
        .filter(|u| u.status != user::Status::Deleted)
        .map(|u| u.openid);
    let outcome = match openid {
        None => Err((
            Failure::Permanent,
            None,
            "the user no longer exists".to_string(),
        )),
        Some(openid) => {
            let data = serde_json::from_str(&row.data).unwrap_or(Value::Null);
            let msg = SubscribeMessage {
                touser: openid,
                template_id: row.template_id.clone(),
                page: row.page.clone(),
                data,
                miniprogram_state: state.config.wechat_miniprogram_state.clone(),
            };
            state
                .wechat
                .subscribe_send(&msg)
                .await
                .map_err(|e| (classify(&e), e.errcode(), e.to_string()))
        }
    };
    let now = util::now();
    let attempts = row.attempts + 1;
    let mut update = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Attempts, Expr::value(attempts));
    let settled = match &outcome {
        Ok(()) => {
            update = update
                .col_expr(outbox_message::Column::Status, Expr::value(Status::Sent))
                .col_expr(outbox_message::Column::SentAt, Expr::value(Some(now)));
            true
        }
        Err((failure, errcode, error)) => {
            let give_up = *failure == Failure::Permanent || attempts >= MAX_ATTEMPTS;
            let error: String = error.chars().take(256).collect();
            if give_up {
                if *errcode == Some(43101) {
                    tracing::info!(outbox = row.id, user_id = row.user_id, template = %row.template_key, "subscribe message dropped: the user has no subscription left (43101)");
                } else {
                    tracing::warn!(outbox = row.id, user_id = row.user_id, template = %row.template_key, attempts, error = %error, "subscribe message dropped");
                }
                update =
                    update.col_expr(outbox_message::Column::Status, Expr::value(Status::Dropped));
            } else {
                tracing::info!(outbox = row.id, attempts, error = %error, "subscribe message failed; will retry");
                update = update.col_expr(
                    outbox_message::Column::NextAttemptAt,
                    Expr::value(after(now, backoff(attempts))),
                );
            }
            update = update.col_expr(outbox_message::Column::LastError, Expr::value(Some(error)));
            give_up
        }
    };
    update
        .filter(outbox_message::Column::Id.eq(row.id))
        .filter(outbox_message::Column::Status.eq(Status::Pending))
        .exec(&state.db)
        .await?;
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(errcode: i64) -> WechatError {
        WechatError::Api {
            errcode,
            errmsg: "x".into(),
        }
    }

    #[test]
    fn refusals_are_permanent_and_outages_transient() {
        for code in [43101, 47003, 40003, 40037, 41030] {
            assert_eq!(classify(&api(code)), Failure::Permanent, "{code}");
        }
        for code in [-1, 45009, 40001] {
            assert_eq!(classify(&api(code)), Failure::Transient, "{code}");
        }
        assert_eq!(
            classify(&WechatError::Transport("timed out".into())),
            Failure::Transient
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(4), Duration::from_secs(240));
        assert_eq!(backoff(8), Duration::from_secs(3600));
        assert_eq!(backoff(50), Duration::from_secs(3600));
    }
}
