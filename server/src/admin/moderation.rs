//! The moderation queue and its decisions (one at a time or in bulk), and the local word blocklist. The rules
//! are in `crate::moderation::queue` and `crate::moderation::service`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Path, param::Query, payload::Json};
use sea_orm::TransactionTrait;

use super::{
    AdminTags, audit,
    auth::{Need, perm},
};
use crate::{
    error::{AppError, AppResult, ErrorBody},
    moderation::{
        model::blocked_word,
        queue::{self, QueueDecision, QueueItem},
        reports::TargetType,
        service as moderation,
    },
    state::AppState,
    util,
};

/// What an item of the queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "QueueTargetType", rename_all = "snake_case")]
pub enum QueueTarget {
    Listing,
    Post,
    Comment,
    User,
}

impl QueueTarget {
    fn target(self) -> TargetType {
        match self {
            QueueTarget::Listing => TargetType::Listing,
            QueueTarget::Post => TargetType::Post,
            QueueTarget::Comment => TargetType::Comment,
            QueueTarget::User => TargetType::User,
        }
    }

    fn of(t: TargetType) -> Self {
        match t {
            TargetType::Listing => QueueTarget::Listing,
            TargetType::Post => QueueTarget::Post,
            TargetType::Comment => QueueTarget::Comment,
            TargetType::User | TargetType::Message => QueueTarget::User,
        }
    }
}

/// The open reports of a target.
#[derive(Debug, Clone, Object)]
pub struct ReportSummary {
    /// Distinct students who reported it.
    pub reporters: u64,
    /// How often each reason was given (`spam`, `fraud`, …).
    pub reasons: BTreeMap<String, u64>,
    /// What the reporters wrote.
    pub details: Vec<String>,
    pub first_reported_at: DateTime<Utc>,
    pub last_reported_at: DateTime<Utc>,
}

/// Something waiting for a decision.
#[derive(Debug, Clone, Object)]
pub struct QueueEntry {
    pub target_type: QueueTarget,
    pub target_id: i64,
    pub school_id: Option<i64>,
    /// Its status now (`pending_review`, `hidden`, `on_sale`, …; `active`/`banned` for a user).
    pub status: String,
    /// Why it is held: `reported`, a content-security label (`advertising`, …) or `unchecked`.
    pub label: Option<String>,
    /// Held or hidden (rather than only reported).
    pub held: bool,
    /// Title, the start of a comment, or a user's nickname.
    pub title: String,
    /// The start of the text (200 characters).
    pub excerpt: String,
    /// The seller, author or reported user.
    pub author_id: i64,
    pub reports: Option<ReportSummary>,
    pub waiting_since: DateTime<Utc>,
}

fn entry(i: QueueItem) -> QueueEntry {
    QueueEntry {
        target_type: QueueTarget::of(i.target_type),
        target_id: i.target_id,
        school_id: i.school_id,
        status: i.status,
        label: i.label,
        held: i.held,
        title: i.title,
        excerpt: i.excerpt,
        author_id: i.author_id,
        reports: i.reports.map(|g| ReportSummary {
            reporters: g.reporters as u64,
            reasons: g.reasons.into_iter().map(|(k, v)| (k, v as u64)).collect(),
            details: g.details,
            first_reported_at: g.first_reported_at,
            last_reported_at: g.last_reported_at,
        }),
        waiting_since: i.waiting_since,
    }
}

/// A page of the queue, oldest first.
#[derive(Debug, Clone, Object)]
pub struct QueuePage {
    pub items: Vec<QueueEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Items waiting in total (for the operator's schools and the filter).
    pub total: u64,
}

/// A decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DecisionKind {
    /// The content is fine: publish what was held or hidden, close the reports as dismissed.
    Approve,
    /// Take it down (reason required, shown to the author); close the reports as upheld.
    Remove,
    /// The reports are wrong: close them; content hidden only by them comes back.
    Dismiss,
}

impl DecisionKind {
    fn queue(self) -> QueueDecision {
        match self {
            DecisionKind::Approve => QueueDecision::Approve,
            DecisionKind::Remove => QueueDecision::Remove,
            DecisionKind::Dismiss => QueueDecision::Dismiss,
        }
    }
}

/// One item to decide.
#[derive(Debug, Clone, Object)]
pub struct DecisionTarget {
    pub target_type: QueueTarget,
    pub target_id: i64,
}

/// The same decision on one or more items (at most 100).
#[derive(Debug, Object)]
pub struct DecisionRequest {
    pub decision: DecisionKind,
    pub items: Vec<DecisionTarget>,
    /// Required for `remove` (1–200 characters; the author reads it); optional otherwise.
    pub reason: Option<String>,
}

/// What happened to one item.
#[derive(Debug, Clone, Object)]
pub struct DecisionResult {
    pub target_type: QueueTarget,
    pub target_id: i64,
    pub ok: bool,
    /// Open reports closed by the decision.
    pub reports_closed: u64,
    /// Why the item was not decided (another operator was faster, a listing with an open order, …).
    pub error: Option<ErrorBody>,
}

/// The outcome of every item, in the order given. Each item is decided (and audited) on its own: one refused
/// item does not stop the others.
#[derive(Debug, Clone, Object)]
pub struct DecisionResults {
    pub results: Vec<DecisionResult>,
    pub decided: u64,
    pub failed: u64,
}

/// A word of the blocklist.
#[derive(Debug, Clone, Object)]
pub struct BlockedWord {
    pub id: i64,
    /// As stored: lower case, half-width, without spaces.
    pub word: String,
    pub action: BlockAction,
    /// `advertising`, `fraud`, `illegal`, … (the content-security label names).
    pub label: String,
    pub created_at: DateTime<Utc>,
}

/// What a blocklist hit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum BlockAction {
    /// Refuse the content.
    Risky,
    /// Hold it for an operator.
    Review,
}

fn word_view(w: &blocked_word::Model) -> BlockedWord {
    BlockedWord {
        id: w.id,
        word: w.word.clone(),
        action: match w.action {
            blocked_word::Action::Risky => BlockAction::Risky,
            blocked_word::Action::Review => BlockAction::Review,
        },
        label: w.label.clone(),
        created_at: w.created_at,
    }
}

/// A word to block.
#[derive(Debug, Object)]
pub struct AddBlockedWord {
    /// At most 50 characters; normalised before it is stored.
    pub word: String,
    pub action: BlockAction,
    pub label: String,
}

#[derive(ApiResponse)]
pub enum Removed {
    /// Done.
    #[oai(status = 204)]
    Done,
}

pub const BULK_MAX: usize = 100;
const QUEUE_CURSOR: &str = "queue";

pub struct ModerationApi;

#[OpenApi(tag = "AdminTags::Moderation")]
impl ModerationApi {
    /// Everything waiting for a human, oldest first: listings held for review, posts and comments held by
    /// content security or hidden by reports, and everything with open reports (grouped by target, with the
    /// reasons). Limited to the operator's schools (or `school`), optionally to one `target_type`.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/moderation/queue",
        method = "get",
        operation_id = "moderation_queue"
    )]
    async fn queue(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        school: Query<Option<i64>>,
        target_type: Query<Option<QueueTarget>>,
        cursor: Query<Option<String>>,
        /// 1–100, default 50.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<QueuePage>> {
        let limit = limit.0.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(AppError::invalid_field("limit", "must be 1–100"));
        }
        let schools = auth.school_filter(school.0)?;
        let mut items = queue::list(&state.db, schools.as_deref()).await?;
        if let Some(t) = target_type.0 {
            items.retain(|i| i.target_type == t.target());
        }
        let total = items.len() as u64;
        // The cursor is the last item's place in the order: (waiting_since in µs, type, id).
        if let Some(c) = cursor.0 {
            let (key, id) = util::decode_cursor(QUEUE_CURSOR, &c)?;
            let (at, kind) = key.split_once('|').ok_or_else(util::invalid_cursor)?;
            let at = at
                .parse::<i64>()
                .ok()
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .ok_or_else(util::invalid_cursor)?;
            items.retain(|i| {
                (i.waiting_since, i.target_type.as_str(), i.target_id) > (at, kind, id)
            });
        }
        let more = items.len() as u64 > limit;
        items.truncate(limit as usize);
        let next_cursor = if more {
            items.last().map(|i| {
                util::encode_cursor(
                    QUEUE_CURSOR,
                    &format!(
                        "{}|{}",
                        i.waiting_since.timestamp_micros(),
                        i.target_type.as_str()
                    ),
                    i.target_id,
                )
            })
        } else {
            None
        };
        Ok(Json(QueuePage {
            items: items.into_iter().map(entry).collect(),
            next_cursor,
            total,
        }))
    }

    /// Decide one or more queue items: approve, remove (with a reason the author reads in their inbox) or
    /// dismiss. Each item is decided in its own transaction with its own audit row; the answer reports each.
    /// Per-item refusals: 404, 403 `outside_school_scope`, 409 `listing_has_open_order`,
    /// `invalid_transition`, `nothing_to_decide`, `nothing_to_dismiss`, 422 `use_ban` (remove on a user).
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/moderation/decisions",
        method = "post",
        operation_id = "decide_moderation"
    )]
    async fn decide(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        body: Json<DecisionRequest>,
    ) -> AppResult<Json<DecisionResults>> {
        let b = body.0;
        if b.items.is_empty() || b.items.len() > BULK_MAX {
            return Err(AppError::invalid_field(
                "items",
                format!("name 1–{BULK_MAX} items"),
            ));
        }
        let reason = super::reason(b.reason.as_deref(), b.decision == DecisionKind::Remove, 200)?;
        let mut results = Vec::with_capacity(b.items.len());
        for item in b.items {
            let outcome = decide_one(
                &state,
                &auth,
                item.target_type.target(),
                item.target_id,
                b.decision,
                reason.as_deref(),
            )
            .await;
            results.push(match outcome {
                Ok(closed) => DecisionResult {
                    target_type: item.target_type,
                    target_id: item.target_id,
                    ok: true,
                    reports_closed: closed,
                    error: None,
                },
                Err(AppError::Internal(e)) => return Err(AppError::Internal(e)),
                Err(e) => DecisionResult {
                    target_type: item.target_type,
                    target_id: item.target_id,
                    ok: false,
                    reports_closed: 0,
                    error: Some(e.body()),
                },
            });
        }
        let decided = results.iter().filter(|r| r.ok).count() as u64;
        let failed = results.len() as u64 - decided;
        Ok(Json(DecisionResults {
            results,
            decided,
            failed,
        }))
    }

    /// The local word blocklist, checked before WeChat's text check on everything students publish.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/blocklist",
        method = "get",
        operation_id = "list_blocked_words"
    )]
    async fn blocklist(
        &self,
        state: Data<&AppState>,
        _auth: Need<perm::Moderation>,
    ) -> AppResult<Json<Vec<BlockedWord>>> {
        let words = moderation::list_blocked_words(&state).await?;
        Ok(Json(words.iter().map(word_view).collect()))
    }

    /// Add a word to the blocklist. It applies at once, on every instance. 409 `blocked_word_exists`.
    ///
    /// Permission: `moderation` (for operators of every school: the list applies everywhere).
    #[oai(
        path = "/v1/blocklist",
        method = "post",
        operation_id = "add_blocked_word"
    )]
    async fn add_word(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        body: Json<AddBlockedWord>,
    ) -> AppResult<Json<BlockedWord>> {
        auth.school(None)?;
        let action = match body.action {
            BlockAction::Risky => blocked_word::Action::Risky,
            BlockAction::Review => blocked_word::Action::Review,
        };
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "blocklist.add").await?;
        let row = moderation::add_blocked_word_in(&txn, &body.word, action, &body.label).await?;
        let view = word_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("blocked_word", row.id).after_view(&view),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view))
    }

    /// Remove a word from the blocklist.
    ///
    /// Permission: `moderation` (for operators of every school).
    #[oai(
        path = "/v1/blocklist/:id",
        method = "delete",
        operation_id = "remove_blocked_word"
    )]
    async fn remove_word(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
    ) -> AppResult<Removed> {
        auth.school(None)?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "blocklist.remove").await?;
        let row = moderation::remove_blocked_word_in(&txn, id.0).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("blocked_word", row.id).before_view(&word_view(&row)),
            )
            .await?;
        txn.commit().await?;
        Ok(Removed::Done)
    }
}

/// One decision in its own audited transaction.
async fn decide_one(
    state: &AppState,
    auth: &Need<perm::Moderation>,
    target: TargetType,
    id: i64,
    decision: DecisionKind,
    reason: Option<&str>,
) -> AppResult<u64> {
    let school = queue::target_school(&state.db, target, id).await?;
    auth.school(school)?;
    let txn = state.db.begin().await?;
    let pending = audit::begin(
        &txn,
        auth.actor(),
        &format!("moderation.{}", decision.queue().as_str()),
    )
    .await?;
    let before = queue::snapshot(&txn, target, id).await?;
    let closed = queue::decide_in(&txn, target, id, decision.queue(), reason).await?;
    let after = queue::snapshot(&txn, target, id).await?;
    pending
        .finish(
            &txn,
            audit::Record::target(target.as_str(), id)
                .school(school)
                .before(&before)
                .after(&after)
                .reason(reason),
        )
        .await?;
    txn.commit().await?;
    Ok(closed)
}
