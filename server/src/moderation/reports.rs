//! Reports: students flag anything they can see (a listing, post, comment or user). One open report per
//! reporter per target; reports from `report_hide_threshold` (a site setting, `REPORT_HIDE_THRESHOLD` by
//! default) distinct students hide the target until an operator decides. [`list_open_reports`] and
//! [`resolve_reports`] feed the operators' moderation queue (`super::queue`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{Enum, Object, OpenApi, Tags, payload::Json};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, TransactionTrait, sea_query::Expr,
};

use crate::{
    auth::StudentAuth,
    db::is_unique_violation,
    error::{AppError, AppResult},
    forum::{
        model::Status as PostStatus,
        service::{self as forum, Moderation},
    },
    listings::{self, model::Transition},
    state::AppState,
    users::model::user,
    util,
};

pub mod report {
    use sea_orm::entity::prelude::*;

    /// One student's report of one target.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reports")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub reporter_id: i64,
        /// `listing`, `post`, `comment` or `user`.
        pub target_type: String,
        pub target_id: i64,
        pub reason: String,
        pub details: Option<String>,
        /// `open` until an operator resolves it.
        pub status: String,
        /// `remove` or `dismiss`, once resolved.
        pub decision: Option<String>,
        pub created_at: DateTimeUtc,
        pub resolved_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "ReportTargetType", rename_all = "snake_case")]
pub enum TargetType {
    Listing,
    Post,
    Comment,
    User,
    /// A chat message the other participant sent you (it waits for an operator; nothing is hidden).
    Message,
}

impl TargetType {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Listing => "listing",
            TargetType::Post => "post",
            TargetType::Comment => "comment",
            TargetType::User => "user",
            TargetType::Message => "message",
        }
    }
}

/// Why it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "ReportReason", rename_all = "snake_case")]
pub enum Reason {
    Spam,
    Fraud,
    ProhibitedItem,
    Harassment,
    Inappropriate,
    Other,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Spam => "spam",
            Reason::Fraud => "fraud",
            Reason::ProhibitedItem => "prohibited_item",
            Reason::Harassment => "harassment",
            Reason::Inappropriate => "inappropriate",
            Reason::Other => "other",
        }
    }
}

/// At most this many characters of details.
pub const DETAILS_MAX: usize = 500;

/// What a report hid, if it reached the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filed {
    pub report_id: i64,
    /// Distinct open reporters of the target, this report included.
    pub reporters: u64,
    pub hidden: bool,
}

/// `POST /api/v1/reports`: the target must be something the reporter can see.
pub async fn file_report(
    state: &AppState,
    reporter: &user::Model,
    target: TargetType,
    target_id: i64,
    reason: Reason,
    details: Option<String>,
) -> AppResult<Filed> {
    let details = details
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if details
        .as_ref()
        .is_some_and(|d| d.chars().count() > DETAILS_MAX)
    {
        return Err(AppError::invalid_field(
            "details",
            format!("at most {DETAILS_MAX} characters"),
        ));
    }
    let db = &state.db;
    let me = Some(reporter.id);
    match target {
        TargetType::Message => {
            crate::chat::service::reportable_message(db, target_id, reporter.id).await?;
        }
        TargetType::Listing => {
            listings::service::visible(db, target_id, me).await?;
        }
        TargetType::Post => {
            let p = forum::visible_post(db, target_id, me).await?;
            if p.status == PostStatus::Deleted {
                return Err(AppError::not_found("post"));
            }
        }
        TargetType::Comment => {
            forum::visible_comment(db, target_id, me).await?;
        }
        TargetType::User => {
            if target_id == reporter.id {
                return Err(AppError::unprocessable(
                    "cannot_report_self",
                    "you cannot report yourself",
                ));
            }
            crate::users::service::visible_user(db, target_id).await?;
        }
    }
    let kind = target.as_str();
    let txn = db.begin().await?;
    let inserted = report::ActiveModel {
        reporter_id: Set(reporter.id),
        target_type: Set(kind.to_string()),
        target_id: Set(target_id),
        reason: Set(reason.as_str().to_string()),
        details: Set(details),
        status: Set("open".into()),
        decision: Set(None),
        created_at: Set(util::now()),
        resolved_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await;
    let row = match inserted {
        Ok(r) => r,
        Err(e) if is_unique_violation(&e) => {
            txn.rollback().await?;
            return Err(AppError::conflict(
                "already_reported",
                "you already reported this; an operator will look at it",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    txn.commit().await?;
    // Counted after the commit, so two reports filed at the same moment both see each other (inside their
    // transactions, under READ COMMITTED, each would count only itself plus the older ones). The unique index
    // keeps one open report per reporter, so this counts distinct students; hiding twice is harmless.
    let reporters = report::Entity::find()
        .filter(report::Column::TargetType.eq(kind))
        .filter(report::Column::TargetId.eq(target_id))
        .filter(report::Column::Status.eq("open"))
        .count(db)
        .await?;
    let threshold = crate::settings::current(state).await?.report_hide_threshold;
    let hidden = reporters >= u64::from(threshold);
    if hidden {
        hide(db, target, target_id).await?;
        tracing::warn!(
            target_type = kind,
            target_id,
            reporters,
            "target hidden after reports"
        );
    }
    Ok(Filed {
        report_id: row.id,
        reporters,
        hidden,
    })
}

async fn hide(db: &DatabaseConnection, target: TargetType, id: i64) -> AppResult<()> {
    match target {
        TargetType::Listing => listings::service::hold_for_review(db, id, "reported").await,
        TargetType::Post | TargetType::Comment => {
            forum::moderate(db, target.as_str(), id, Moderation::Hide("reported")).await
        }
        // A reported account waits for an operator (bans are theirs to give).
        TargetType::User | TargetType::Message => Ok(()),
    }
}

/// The open reports of one target, for the operators' queue.
#[derive(Debug, Clone)]
pub struct ReportGroup {
    pub target_type: String,
    pub target_id: i64,
    pub reporters: usize,
    /// How often each reason was given.
    pub reasons: BTreeMap<String, usize>,
    pub details: Vec<String>,
    pub first_reported_at: DateTime<Utc>,
    pub last_reported_at: DateTime<Utc>,
}

/// Open reports grouped by target, the most reported first (then the oldest). At most `limit` groups.
pub async fn list_open_reports(
    db: &DatabaseConnection,
    limit: usize,
) -> AppResult<Vec<ReportGroup>> {
    let rows = report::Entity::find()
        .filter(report::Column::Status.eq("open"))
        .order_by_asc(report::Column::Id)
        .all(db)
        .await?;
    let mut groups: BTreeMap<(String, i64), ReportGroup> = BTreeMap::new();
    for r in rows {
        let g = groups
            .entry((r.target_type.clone(), r.target_id))
            .or_insert_with(|| ReportGroup {
                target_type: r.target_type.clone(),
                target_id: r.target_id,
                reporters: 0,
                reasons: BTreeMap::new(),
                details: Vec::new(),
                first_reported_at: r.created_at,
                last_reported_at: r.created_at,
            });
        g.reporters += 1;
        *g.reasons.entry(r.reason).or_default() += 1;
        if let Some(d) = r.details {
            g.details.push(d);
        }
        g.first_reported_at = g.first_reported_at.min(r.created_at);
        g.last_reported_at = g.last_reported_at.max(r.created_at);
    }
    let mut out: Vec<ReportGroup> = groups.into_values().collect();
    out.sort_by(|a, b| {
        b.reporters
            .cmp(&a.reporters)
            .then(a.first_reported_at.cmp(&b.first_reported_at))
    });
    out.truncate(limit);
    Ok(out)
}

/// Every report (open or resolved) about a user or about their listings, posts and comments, newest first.
pub async fn reports_about_user(
    db: &DatabaseConnection,
    user_id: i64,
    before_id: Option<i64>,
    limit: u64,
) -> AppResult<Vec<report::Model>> {
    use sea_orm::{
        Condition, QuerySelect,
        sea_query::{ExprTrait, Query},
    };
    let owned = |target: &str, table: &str, owner: &str| {
        Condition::all()
            .add(report::Column::TargetType.eq(target))
            .add(
                report::Column::TargetId.in_subquery(
                    Query::select()
                        .column(sea_orm::sea_query::Alias::new("id"))
                        .from(sea_orm::sea_query::Alias::new(table))
                        .and_where(
                            sea_orm::sea_query::Expr::col(sea_orm::sea_query::Alias::new(owner))
                                .eq(user_id),
                        )
                        .to_owned(),
                ),
            )
    };
    let mut q = report::Entity::find().filter(
        Condition::any()
            .add(
                Condition::all()
                    .add(report::Column::TargetType.eq("user"))
                    .add(report::Column::TargetId.eq(user_id)),
            )
            .add(owned("listing", "listings", "seller_id"))
            .add(owned("post", "posts", "author_id"))
            .add(owned("comment", "comments", "author_id")),
    );
    if let Some(b) = before_id {
        q = q.filter(report::Column::Id.lt(b));
    }
    Ok(q.order_by_desc(report::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// An operator's decision on a reported target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The reports are right: take the target down.
    Remove,
    /// The reports are wrong: bring a hidden target back.
    Dismiss,
}

/// Closes every open report of a target with the decision and applies it. Returns how many reports closed.
pub async fn resolve_reports(
    db: &DatabaseConnection,
    target: TargetType,
    target_id: i64,
    decision: Decision,
) -> AppResult<u64> {
    let txn = db.begin().await?;
    let closed = resolve_reports_in(&txn, target, target_id, decision).await?;
    txn.commit().await?;
    Ok(closed)
}

/// Closes every open report of a target with the decision, without touching the target (the caller decides
/// what happens to it). One UPDATE; returns how many reports closed.
pub async fn close_reports_in(
    txn: &impl ConnectionTrait,
    target: TargetType,
    target_id: i64,
    decision: Decision,
) -> AppResult<u64> {
    let res = report::Entity::update_many()
        .col_expr(report::Column::Status, Expr::value("resolved"))
        .col_expr(
            report::Column::Decision,
            Expr::value(match decision {
                Decision::Remove => "remove",
                Decision::Dismiss => "dismiss",
            }),
        )
        .col_expr(report::Column::ResolvedAt, Expr::value(util::now()))
        .filter(report::Column::TargetType.eq(target.as_str()))
        .filter(report::Column::TargetId.eq(target_id))
        .filter(report::Column::Status.eq("open"))
        .exec(txn)
        .await?;
    Ok(res.rows_affected)
}

/// [`resolve_reports`] in the caller's transaction.
pub async fn resolve_reports_in(
    txn: &impl ConnectionTrait,
    target: TargetType,
    target_id: i64,
    decision: Decision,
) -> AppResult<u64> {
    let kind = target.as_str();
    let closed = close_reports_in(txn, target, target_id, decision).await?;
    match (target, decision) {
        (TargetType::Post | TargetType::Comment, Decision::Remove) => {
            forum::moderate_in(txn, kind, target_id, Moderation::Remove).await?;
        }
        (TargetType::Post | TargetType::Comment, Decision::Dismiss) => {
            forum::moderate_in(txn, kind, target_id, Moderation::Restore("reported")).await?;
        }
        (TargetType::Listing, Decision::Remove) => {
            match listings::service::transition_in(
                txn,
                target_id,
                listings::service::Actor::System,
                Transition::Remove,
                Some("reported".into()),
            )
            .await
            {
                Ok(_) | Err(AppError::InvalidTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        (TargetType::Listing, Decision::Dismiss) => {
            restore_if_held_by_reports(txn, target_id).await?;
        }
        (TargetType::User | TargetType::Message, _) => {}
    }
    Ok(closed)
}

/// Brings back a listing the reports held; one held by content security stays with its label.
pub async fn restore_if_held_by_reports(
    txn: &impl ConnectionTrait,
    listing_id: i64,
) -> AppResult<()> {
    let held_by_reports = listings::model::listing::Entity::find_by_id(listing_id)
        .one(txn)
        .await?
        .is_some_and(|l| {
            l.status == listings::model::Status::PendingReview
                && l.moderation_label.as_deref() == Some("reported")
        });
    if held_by_reports {
        match listings::service::transition_in(
            txn,
            listing_id,
            listings::service::Actor::System,
            Transition::Approve,
            None,
        )
        .await
        {
            Ok(_) | Err(AppError::InvalidTransition { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[derive(Tags)]
enum ReportTags {
    /// Reporting content and accounts to the operators.
    Reports,
}

/// A report.
#[derive(Debug, Object)]
pub struct CreateReport {
    pub target_type: TargetType,
    pub target_id: i64,
    pub reason: Reason,
    /// At most 500 characters.
    pub details: Option<String>,
}

/// The report was filed.
#[derive(Debug, Object)]
pub struct ReportFiled {
    pub id: i64,
    pub status: String,
}

/// Reporting content and accounts.
pub struct ReportsApi;

#[OpenApi]
impl ReportsApi {
    /// Report a listing, post, comment or user you can see, or a chat message the other participant sent you.
    /// One open report per target (409 `already_reported`). Enough reports from different students hide a
    /// listing, post or comment until an operator decides.
    #[oai(
        path = "/v1/reports",
        method = "post",
        tag = "ReportTags::Reports",
        operation_id = "create_report"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<CreateReport>,
    ) -> AppResult<Json<ReportFiled>> {
        let b = body.0;
        let filed = file_report(
            &state,
            &auth.0.user,
            b.target_type,
            b.target_id,
            b.reason,
            b.details,
        )
        .await?;
        // Whether the report tipped the target over is the operators' business, not the reporter's.
        Ok(Json(ReportFiled {
            id: filed.report_id,
            status: "open".into(),
        }))
    }
}
