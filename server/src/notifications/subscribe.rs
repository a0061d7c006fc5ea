//! WeChat subscribe messages for inbox events: every notification whose kind has a template in
//! `WECHAT_SUBSCRIBE_TEMPLATES` (order paid, refund requested, listing sold, price drop, verification decided, …)
//! also goes out through the durable [`super::outbox`].
//!
//! Capabilities only write the inbox ([`super::service::notify`], inside their own transactions); this sweep
//! reads committed notifications past a stored watermark and queues their subscribe messages, so no capability
//! needs to know about templates, and a message exists only for a change that was committed. Advancing the
//! watermark is the first write of the sweep's transaction and is conditional on the value read: of several
//! instances sweeping at once, exactly one queues a batch. Notifications younger than [`SETTLE`] wait for the
//! next run, so that a transaction still in flight with a lower id (PostgreSQL hands out ids before commit) is
//! not skipped.
//!
//! Every mapped template uses the same keywords: `thing1` the notification's title, `thing2` its text (both cut
//! to WeChat's 20 characters), `time3` when it happened (Beijing time). Reviews have their own template
//! (`WECHAT_TEMPLATE_NEW_REVIEW`, queued by the reveal itself); chat has `WECHAT_TEMPLATE_CHAT_MESSAGE`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait,
};
use serde_json::{Value, json};

use super::{model::notification, outbox};
use crate::{error::AppResult, state::AppState, util};

const WATERMARK: &str = "notification_subscribe";
/// Notifications read per transaction.
const BATCH: u64 = 500;
/// How old a notification must be before the sweep takes it.
pub const SETTLE: Duration = Duration::from_secs(2);

/// A text as a `thing` keyword: one line, at most 20 characters, never empty.
fn thing(text: &str, fallback: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clipped: String = one_line.chars().take(20).collect();
    if clipped.is_empty() {
        fallback.to_string()
    } else {
        clipped
    }
}

/// The Mini Program page a notification opens.
pub fn page_of(n: &notification::Model) -> String {
    match (n.target_type.as_deref(), n.target_id) {
        (Some(t), Some(id)) if t.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
            format!("pages/{t}/detail?id={id}")
        }
        _ => "pages/notifications/index".to_string(),
    }
}

/// The `data` of the subscribe message of `n`.
pub fn data_of(n: &notification::Model) -> Value {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    json!({
        "thing1": { "value": thing(&n.title, "通知") },
        "thing2": { "value": thing(&n.body, "查看详情") },
        "time3": { "value": n.created_at.with_timezone(&beijing).format("%Y-%m-%d %H:%M").to_string() },
    })
}

/// Queues the subscribe messages of new notifications; returns how many were queued. Does nothing (and keeps no
/// watermark) while no template is configured.
pub async fn sweep(state: &AppState) -> AppResult<u64> {
    let templates = &state.config.wechat_subscribe_templates;
    if templates.is_empty() {
        return Ok(0);
    }
    let mut queued = 0;
    while let Some(n) = sweep_batch(state, util::now()).await? {
        queued += n;
    }
    if queued > 0 {
        outbox::kick(state);
    }
    Ok(queued)
}

/// One batch; `None` when there was nothing new (or another instance took the batch).
async fn sweep_batch(state: &AppState, now: DateTime<Utc>) -> AppResult<Option<u64>> {
    let db = &state.db;
    let backend = db.get_database_backend();
    let last_id = match super::watermark::read(db, WATERMARK).await? {
        Some(id) => id,
        None => {
            // The first run starts after the newest notification: what happened before is not news.
            db.execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO job_watermarks (name, last_id, updated_at) \
                 SELECT $1, COALESCE(MAX(id), 0), $2 FROM notifications WHERE 1 = 1 \
                 ON CONFLICT (name) DO NOTHING",
                [WATERMARK.into(), now.into()],
            ))
            .await?;
            return Ok(None);
        }
    };
    let settled = now - chrono::Duration::from_std(SETTLE).expect("small duration");
    let rows = notification::Entity::find()
        .filter(notification::Column::Id.gt(last_id))
        .filter(notification::Column::CreatedAt.lte(settled))
        .order_by_asc(notification::Column::Id)
        .limit(BATCH)
        .all(db)
        .await?;
    let Some(newest) = rows.last().map(|n| n.id) else {
        return Ok(None);
    };
    let templates = &state.config.wechat_subscribe_templates;
    let txn = db.begin().await?;
    if !super::watermark::advance_in(&txn, WATERMARK, last_id, newest).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    let mut queued = 0;
    for n in &rows {
        let Some(template) = templates.get(&n.kind) else {
            continue;
        };
        outbox::enqueue(
            &txn,
            outbox::Outgoing {
                user_id: n.user_id,
                template_key: "notification",
                template_id: template.clone(),
                page: Some(page_of(n)),
                data: data_of(n),
            },
        )
        .await?;
        queued += 1;
    }
    txn.commit().await?;
    Ok(Some(queued))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(title: &str, body: &str, target: Option<(&str, i64)>) -> notification::Model {
        notification::Model {
            id: 1,
            user_id: 2,
            kind: "order_paid".into(),
            title: title.into(),
            body: body.into(),
            target_type: target.map(|t| t.0.to_string()),
            target_id: target.map(|t| t.1),
            read_at: None,
            created_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 24, 14, 18, 0).unwrap(),
        }
    }

    #[test]
    fn keywords_follow_wechats_rules() {
        let d = data_of(&n(
            "买家已付款",
            "「九成新的自行车，骑了一年，送车锁」买家已付款 ¥120.00，请约定面交。",
            Some(("order", 7)),
        ));
        assert_eq!(d["thing1"]["value"], "买家已付款");
        assert_eq!(d["thing2"]["value"].as_str().unwrap().chars().count(), 20);
        assert_eq!(d["time3"]["value"], "2026-11-24 22:18");
        let empty = data_of(&n("", "  ", None));
        assert_eq!(empty["thing1"]["value"], "通知");
        assert_eq!(empty["thing2"]["value"], "查看详情");
    }

    #[test]
    fn pages_follow_the_target() {
        assert_eq!(
            page_of(&n("t", "b", Some(("order", 7)))),
            "pages/order/detail?id=7"
        );
        assert_eq!(page_of(&n("t", "b", None)), "pages/notifications/index");
        assert_eq!(
            page_of(&n("t", "b", Some(("x/../y", 7)))),
            "pages/notifications/index"
        );
    }
}
