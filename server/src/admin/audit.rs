//! The audit log: one row per operator action — who, when, what, on which target, the state before and after
//! where it applies, and the reason given — written in the same transaction as the action, so a change and its
//! record exist together or not at all. The API lists and filters it; nothing updates or deletes it.
//!
//! Every action follows the same shape:
//!
//! ```text
//! let txn = state.db.begin().await?;
//! let pending = audit::begin(&txn, op.actor(), "user.ban").await?;   // the transaction's first statement
//! … the change, through a capability's service function …
//! pending.finish(&txn, Record::target("user", id).before(&b).after(&a).reason(r)).await?;
//! txn.commit().await?;
//! ```
//!
//! Beginning with the insert makes the transaction's first statement a write, which SQLite needs (a transaction
//! that reads first and writes later fails when another connection committed in between); the `before` read
//! after it is then consistent.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Query, payload::Json, types::ToJSON};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::Value;

use super::{
    AdminTags,
    auth::{Need, perm},
};
use crate::{
    error::{AppError, AppResult},
    state::AppState,
    util,
};

pub mod audit_log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// `None` for the command line.
        pub operator_id: Option<i64>,
        /// The operator's username at the time (`cli` for the command line).
        pub operator_name: String,
        /// `area.verb`, e.g. `user.ban`, `moderation.remove`, `setting.update`.
        pub action: String,
        pub target_type: Option<String>,
        pub target_id: Option<i64>,
        /// The school the target belongs to, when it belongs to one.
        pub school_id: Option<i64>,
        pub before: Option<Json>,
        pub after: Option<Json>,
        pub reason: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Who acted.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Operator {
        id: i64,
        name: &'a str,
    },
    /// The `campus-trade` command line (run by whoever has the server's shell).
    Cli,
}

/// An audit row opened by [`begin`], completed by [`Pending::finish`].
#[must_use = "an opened audit row must be finished with what the action did"]
pub struct Pending {
    id: i64,
}

/// Opens the audit row of an action: call it first in the action's transaction.
pub async fn begin(
    txn: &impl ConnectionTrait,
    actor: Actor<'_>,
    action: &str,
) -> AppResult<Pending> {
    let (operator_id, name) = match actor {
        Actor::Operator { id, name } => (Some(id), name),
        Actor::Cli => (None, "cli"),
    };
    let row = audit_log::ActiveModel {
        operator_id: Set(operator_id),
        operator_name: Set(name.chars().take(32).collect()),
        action: Set(action.chars().take(64).collect()),
        target_type: Set(None),
        target_id: Set(None),
        school_id: Set(None),
        before: Set(None),
        after: Set(None),
        reason: Set(None),
        created_at: Set(util::now()),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(Pending { id: row.id })
}

/// What an action did to what.
#[derive(Debug, Clone, Default)]
pub struct Record {
    target_type: Option<String>,
    target_id: Option<i64>,
    school_id: Option<i64>,
    before: Option<Value>,
    after: Option<Value>,
    reason: Option<String>,
}

impl Record {
    pub fn target(target_type: &str, target_id: i64) -> Self {
        Self {
            target_type: Some(target_type.to_string()),
            target_id: Some(target_id),
            ..Default::default()
        }
    }

    /// An action on no single object (site settings).
    pub fn about(target_type: &str) -> Self {
        Self {
            target_type: Some(target_type.to_string()),
            ..Default::default()
        }
    }

    pub fn school(mut self, school: Option<i64>) -> Self {
        self.school_id = school;
        self
    }

    pub fn before(mut self, v: &impl serde::Serialize) -> Self {
        self.before = serde_json::to_value(v).ok();
        self
    }

    pub fn after(mut self, v: &impl serde::Serialize) -> Self {
        self.after = serde_json::to_value(v).ok();
        self
    }

    /// `before` from an API view (poem-openapi objects serialise through `ToJSON`).
    pub fn before_view(mut self, v: &impl ToJSON) -> Self {
        self.before = v.to_json();
        self
    }

    pub fn after_view(mut self, v: &impl ToJSON) -> Self {
        self.after = v.to_json();
        self
    }

    pub fn reason(mut self, r: Option<&str>) -> Self {
        self.reason = r.map(str::to_string).filter(|r| !r.is_empty());
        self
    }
}

impl Pending {
    /// Completes the row with what the action did.
    pub async fn finish(self, txn: &impl ConnectionTrait, r: Record) -> AppResult<()> {
        audit_log::Entity::update_many()
            .col_expr(
                audit_log::Column::TargetType,
                Expr::value(
                    r.target_type
                        .map(|t| t.chars().take(32).collect::<String>()),
                ),
            )
            .col_expr(audit_log::Column::TargetId, Expr::value(r.target_id))
            .col_expr(audit_log::Column::SchoolId, Expr::value(r.school_id))
            .col_expr(audit_log::Column::Before, Expr::value(r.before))
            .col_expr(audit_log::Column::After, Expr::value(r.after))
            .col_expr(audit_log::Column::Reason, Expr::value(r.reason))
            .filter(audit_log::Column::Id.eq(self.id))
            .exec(txn)
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/// Which rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub operator_id: Option<i64>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<i64>,
    /// Only rows about these schools (an operator limited to some schools sees only theirs).
    pub schools: Option<Vec<i64>>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Rows with a smaller id (the next page).
    pub before_id: Option<i64>,
    pub limit: u64,
}

pub const PAGE_MAX: u64 = 200;

/// Newest first.
pub async fn list(db: &impl ConnectionTrait, q: &AuditQuery) -> AppResult<Vec<audit_log::Model>> {
    let mut s = audit_log::Entity::find();
    if let Some(o) = q.operator_id {
        s = s.filter(audit_log::Column::OperatorId.eq(o));
    }
    if let Some(a) = &q.action {
        // `user` matches every `user.*` action; `user.ban` only that one.
        s = if a.contains('.') {
            s.filter(audit_log::Column::Action.eq(a.as_str()))
        } else {
            s.filter(audit_log::Column::Action.starts_with(format!("{a}.")))
        };
    }
    if let Some(t) = &q.target_type {
        s = s.filter(audit_log::Column::TargetType.eq(t.as_str()));
    }
    if let Some(id) = q.target_id {
        s = s.filter(audit_log::Column::TargetId.eq(id));
    }
    if let Some(schools) = &q.schools {
        s = s.filter(audit_log::Column::SchoolId.is_in(schools.iter().copied()));
    }
    if let Some(from) = q.from {
        s = s.filter(audit_log::Column::CreatedAt.gte(from));
    }
    if let Some(to) = q.to {
        s = s.filter(audit_log::Column::CreatedAt.lt(to));
    }
    if let Some(b) = q.before_id {
        s = s.filter(audit_log::Column::Id.lt(b));
    }
    Ok(s.order_by_desc(audit_log::Column::Id)
        .limit(q.limit.clamp(1, PAGE_MAX))
        .all(db)
        .await?)
}

/// One audit row.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AuditEntry")]
pub struct Entry {
    pub id: i64,
    /// The operator; absent for the command line.
    pub operator_id: Option<i64>,
    /// The operator's username at the time, or `cli`.
    pub operator_name: String,
    /// `area.verb`, e.g. `user.ban`, `moderation.remove`, `setting.update`, `operator.login`.
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<i64>,
    pub school_id: Option<i64>,
    /// The target before the action, where it applies (any JSON).
    pub before: Option<Value>,
    /// The target after the action, where it applies (any JSON).
    pub after: Option<Value>,
    /// The reason the operator gave.
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Object)]
pub struct AuditPage {
    pub items: Vec<Entry>,
    /// Pass as `before_id` for the next page; absent on the last page.
    pub next_before_id: Option<i64>,
}

pub struct AuditApi;

#[OpenApi(tag = "AdminTags::Audit")]
impl AuditApi {
    /// List the audit log, newest first, filtered by operator, action (`user` for every `user.*` action, or
    /// one action like `user.ban`), target, school and time (`from` inclusive, `to` exclusive). An operator
    /// limited to some schools sees only rows about those schools. Read-only: the log cannot be changed.
    ///
    /// Permission: `audit`.
    #[oai(path = "/v1/audit", method = "get", operation_id = "list_audit_log")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Audit>,
        operator_id: Query<Option<i64>>,
        action: Query<Option<String>>,
        target_type: Query<Option<String>>,
        target_id: Query<Option<i64>>,
        school: Query<Option<i64>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        /// The `next_before_id` of the previous page.
        before_id: Query<Option<i64>>,
        /// 1–200, default 50.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<AuditPage>> {
        let limit = limit.0.unwrap_or(50);
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(AppError::invalid_field("limit", "must be 1–200"));
        }
        let rows = list(
            &state.db,
            &AuditQuery {
                operator_id: operator_id.0,
                action: action.0,
                target_type: target_type.0,
                target_id: target_id.0,
                schools: auth.school_filter(school.0)?,
                from: from.0,
                to: to.0,
                before_id: before_id.0,
                limit,
            },
        )
        .await?;
        let next_before_id = (rows.len() as u64 == limit)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        Ok(Json(AuditPage {
            items: rows
                .into_iter()
                .map(|r| Entry {
                    id: r.id,
                    operator_id: r.operator_id,
                    operator_name: r.operator_name,
                    action: r.action,
                    target_type: r.target_type,
                    target_id: r.target_id,
                    school_id: r.school_id,
                    before: r.before,
                    after: r.after,
                    reason: r.reason,
                    at: r.created_at,
                })
                .collect(),
            next_before_id,
        }))
    }
}
