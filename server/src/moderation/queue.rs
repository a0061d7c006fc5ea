//! The operators' moderation queue: one list of everything waiting for a human — listings held for review,
//! posts and comments held by content security or hidden by reports, and open reports grouped by target — and
//! the three decisions on an item:
//!
//! - **approve**: the content is fine — a held listing goes on sale, a held or hidden post or comment is
//!   published, open reports are closed as dismissed;
//! - **remove**: take it down, with a reason the author reads in their inbox; open reports are closed as
//!   upheld. A listing with an open order cannot be removed (409 `listing_has_open_order`);
//! - **dismiss**: the reports are wrong — they are closed, and content hidden only because of them comes back
//!   (content security's holds stay).
//!
//! Reported accounts are decided by banning (or dismissing the reports); `remove` on a user answers 422
//! `use_ban`. Every decision runs in the caller's transaction so the operator API audits it in the same commit.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;

use super::reports::{self, Decision, ReportGroup, TargetType};
use crate::{
    error::{AppError, AppResult},
    forum::{
        model::{Status as PostStatus, comment, post},
        service::{self as forum, Moderation},
    },
    listings::{
        self,
        model::{Status as ListingStatus, Transition, listing},
    },
    users::model::user,
};

/// The most rows read from each source for one page of the queue.
pub const SOURCE_MAX: u64 = 1000;

/// Why an item waits.
#[derive(Debug, Clone)]
pub struct QueueItem {
    pub target_type: TargetType,
    pub target_id: i64,
    pub school_id: Option<i64>,
    /// The content's status (`pending_review`, `hidden`, …; a user's `active` or `banned`).
    pub status: String,
    /// Why content security or the reports held it (`reported`, a label such as `advertising`, `unchecked`).
    pub label: Option<String>,
    /// Held or hidden (not merely reported).
    pub held: bool,
    /// A listing's or post's title, the start of a comment, or a user's nickname.
    pub title: String,
    /// The start of the text.
    pub excerpt: String,
    /// The author, seller or reported user.
    pub author_id: i64,
    /// Open reports of the target, if any.
    pub reports: Option<ReportGroup>,
    /// Since when it waits: when it was held, or first reported.
    pub waiting_since: DateTime<Utc>,
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn in_scope(schools: Option<&[i64]>, school: Option<i64>) -> bool {
    match schools {
        None => true,
        Some(list) => school.is_some_and(|s| list.contains(&s)),
    }
}

fn listing_item(l: &listing::Model, held: bool) -> QueueItem {
    QueueItem {
        target_type: TargetType::Listing,
        target_id: l.id,
        school_id: Some(l.school_id),
        status: l.status.as_str().to_string(),
        label: l.moderation_label.clone(),
        held,
        title: l.title.clone(),
        excerpt: clip(&l.description, 200),
        author_id: l.seller_id,
        reports: None,
        waiting_since: l.updated_at,
    }
}

fn post_item(p: &post::Model, held: bool) -> QueueItem {
    QueueItem {
        target_type: TargetType::Post,
        target_id: p.id,
        school_id: Some(p.school_id),
        status: forum::status_str(p.status).to_string(),
        label: p.moderation_label.clone(),
        held,
        title: p.title.clone(),
        excerpt: clip(&p.body, 200),
        author_id: p.author_id,
        reports: None,
        waiting_since: p.updated_at,
    }
}

fn comment_item(c: &comment::Model, school: Option<i64>, held: bool) -> QueueItem {
    QueueItem {
        target_type: TargetType::Comment,
        target_id: c.id,
        school_id: school,
        status: forum::status_str(c.status).to_string(),
        label: c.moderation_label.clone(),
        held,
        title: clip(&c.body, 30),
        excerpt: clip(&c.body, 200),
        author_id: c.author_id,
        reports: None,
        waiting_since: c.updated_at,
    }
}

fn user_item(u: &user::Model) -> QueueItem {
    QueueItem {
        target_type: TargetType::User,
        target_id: u.id,
        school_id: u.school_id.or(u.verified_school_id),
        status: match u.status {
            user::Status::Active => "active",
            user::Status::Banned => "banned",
            user::Status::Deleted => "deleted",
        }
        .to_string(),
        label: None,
        held: false,
        title: u.nickname.clone(),
        excerpt: clip(&u.bio, 200),
        author_id: u.id,
        reports: None,
        waiting_since: u.updated_at,
    }
}

async fn post_schools(
    db: &DatabaseConnection,
    post_ids: impl IntoIterator<Item = i64>,
) -> AppResult<HashMap<i64, i64>> {
    let ids: Vec<i64> = post_ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(post::Entity::find()
        .filter(post::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p.school_id))
        .collect())
}

/// Everything waiting, for the given schools (`None`: all), oldest first. At most [`SOURCE_MAX`] held items of
/// each kind are read; decide the oldest and the rest follow.
pub async fn list(db: &DatabaseConnection, schools: Option<&[i64]>) -> AppResult<Vec<QueueItem>> {
    let mut items: BTreeMap<(&'static str, i64), QueueItem> = BTreeMap::new();

    let mut held_listings =
        listing::Entity::find().filter(listing::Column::Status.eq(ListingStatus::PendingReview));
    if let Some(s) = schools {
        held_listings = held_listings.filter(listing::Column::SchoolId.is_in(s.iter().copied()));
    }
    for l in held_listings
        .order_by_asc(listing::Column::UpdatedAt)
        .limit(SOURCE_MAX)
        .all(db)
        .await?
    {
        items.insert(("listing", l.id), listing_item(&l, true));
    }

    let held = [PostStatus::PendingReview, PostStatus::Hidden];
    let mut held_posts = post::Entity::find().filter(post::Column::Status.is_in(held));
    if let Some(s) = schools {
        held_posts = held_posts.filter(post::Column::SchoolId.is_in(s.iter().copied()));
    }
    for p in held_posts
        .order_by_asc(post::Column::UpdatedAt)
        .limit(SOURCE_MAX)
        .all(db)
        .await?
    {
        items.insert(("post", p.id), post_item(&p, true));
    }

    let held_comments = comment::Entity::find()
        .filter(comment::Column::Status.is_in(held))
        .order_by_asc(comment::Column::UpdatedAt)
        .limit(SOURCE_MAX)
        .all(db)
        .await?;
    let schools_of_posts = post_schools(db, held_comments.iter().map(|c| c.post_id)).await?;
    for c in &held_comments {
        let school = schools_of_posts.get(&c.post_id).copied();
        if in_scope(schools, school) {
            items.insert(("comment", c.id), comment_item(c, school, true));
        }
    }

    // Open reports, grouped by target: attached to held items, or items of their own.
    let groups = reports::list_open_reports(db, usize::MAX).await?;
    let mut missing: BTreeMap<&'static str, Vec<i64>> = BTreeMap::new();
    for g in &groups {
        if let Some(kind) = static_kind(&g.target_type)
            && !items.contains_key(&(kind, g.target_id))
        {
            missing.entry(kind).or_default().push(g.target_id);
        }
    }
    for (kind, ids) in missing {
        match kind {
            "listing" => {
                for l in listing::Entity::find()
                    .filter(listing::Column::Id.is_in(ids))
                    .all(db)
                    .await?
                {
                    items.insert(("listing", l.id), listing_item(&l, false));
                }
            }
            "post" => {
                for p in post::Entity::find()
                    .filter(post::Column::Id.is_in(ids))
                    .all(db)
                    .await?
                {
                    items.insert(("post", p.id), post_item(&p, false));
                }
            }
            "comment" => {
                let rows = comment::Entity::find()
                    .filter(comment::Column::Id.is_in(ids))
                    .all(db)
                    .await?;
                let by_post = post_schools(db, rows.iter().map(|c| c.post_id)).await?;
                for c in &rows {
                    let school = by_post.get(&c.post_id).copied();
                    items.insert(("comment", c.id), comment_item(c, school, false));
                }
            }
            "user" => {
                for u in user::Entity::find()
                    .filter(user::Column::Id.is_in(ids))
                    .all(db)
                    .await?
                {
                    items.insert(("user", u.id), user_item(&u));
                }
            }
            _ => {}
        }
    }
    for g in groups {
        if let Some(kind) = static_kind(&g.target_type)
            && let Some(item) = items.get_mut(&(kind, g.target_id))
        {
            if !item.held {
                item.waiting_since = g.first_reported_at;
            } else {
                item.waiting_since = item.waiting_since.min(g.first_reported_at);
            }
            item.reports = Some(g);
        }
    }

    let mut out: Vec<QueueItem> = items
        .into_values()
        // A reported item that was removed or deleted meanwhile still waits: its reports need closing.
        .filter(|i| in_scope(schools, i.school_id))
        .collect();
    out.sort_by(|a, b| {
        a.waiting_since
            .cmp(&b.waiting_since)
            .then(a.target_type.as_str().cmp(b.target_type.as_str()))
            .then(a.target_id.cmp(&b.target_id))
    });
    Ok(out)
}

fn static_kind(t: &str) -> Option<&'static str> {
    ["listing", "post", "comment", "user"]
        .into_iter()
        .find(|k| *k == t)
}

/// The school a target belongs to (a user's: the profile's, else the verified one); 404 when there is no
/// such target.
pub async fn target_school(
    db: &impl ConnectionTrait,
    target: TargetType,
    id: i64,
) -> AppResult<Option<i64>> {
    match target {
        TargetType::Listing => Ok(Some(
            listing::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| AppError::not_found("listing"))?
                .school_id,
        )),
        TargetType::Post => Ok(Some(
            post::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| AppError::not_found("post"))?
                .school_id,
        )),
        TargetType::Comment => {
            let c = comment::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| AppError::not_found("comment"))?;
            Ok(post::Entity::find_by_id(c.post_id)
                .one(db)
                .await?
                .map(|p| p.school_id))
        }
        TargetType::User => {
            let u = user::Entity::find_by_id(id)
                .one(db)
                .await?
                .ok_or_else(|| AppError::not_found("user"))?;
            Ok(u.school_id.or(u.verified_school_id))
        }
        TargetType::Message => Err(AppError::not_found("message")),
    }
}

/// What the audit log keeps of a target around a decision: its status, label and open reports.
pub async fn snapshot(
    db: &impl ConnectionTrait,
    target: TargetType,
    id: i64,
) -> AppResult<serde_json::Value> {
    let (status, label) = match target {
        TargetType::Listing => listing::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|l| (l.status.as_str().to_string(), l.moderation_label))
            .unwrap_or_default(),
        TargetType::Post => post::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|p| (forum::status_str(p.status).to_string(), p.moderation_label))
            .unwrap_or_default(),
        TargetType::Comment => comment::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|c| (forum::status_str(c.status).to_string(), c.moderation_label))
            .unwrap_or_default(),
        TargetType::User => user::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|u| (user_item(&u).status, u.ban_reason))
            .unwrap_or_default(),
        TargetType::Message => Default::default(),
    };
    let open_reports = reports::report::Entity::find()
        .filter(reports::report::Column::TargetType.eq(target.as_str()))
        .filter(reports::report::Column::TargetId.eq(id))
        .filter(reports::report::Column::Status.eq("open"))
        .count(db)
        .await?;
    Ok(json!({ "status": status, "label": label, "open_reports": open_reports }))
}

/// An operator's decision on a queue item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueDecision {
    Approve,
    Remove,
    Dismiss,
}

impl QueueDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueDecision::Approve => "approve",
            QueueDecision::Remove => "remove",
            QueueDecision::Dismiss => "dismiss",
        }
    }
}

fn nothing_waits(current: &str) -> AppError {
    AppError::conflict(
        "nothing_to_decide",
        format!(
            "nothing about this waits for a decision (it is {current} and has no open reports)"
        ),
    )
}

/// Applies a decision in the caller's transaction (its first statement should already be a write). `reason`
/// is required for `remove` (the author reads it). Returns how many reports were closed.
pub async fn decide_in(
    txn: &impl ConnectionTrait,
    target: TargetType,
    id: i64,
    decision: QueueDecision,
    reason: Option<&str>,
) -> AppResult<u64> {
    let kind = target.as_str();
    match (target, decision) {
        (TargetType::Message, _) => Err(AppError::not_found("message")),
        (TargetType::User, QueueDecision::Remove) => Err(AppError::unprocessable(
            "use_ban",
            "an account is not removed: ban it (POST /admin/api/v1/users/{id}/ban) or dismiss the reports",
        )),
        (TargetType::User, _) => {
            target_school(txn, target, id).await?;
            let closed = reports::close_reports_in(txn, target, id, Decision::Dismiss).await?;
            if closed == 0 {
                return Err(nothing_waits("an account"));
            }
            Ok(closed)
        }
        (_, QueueDecision::Remove) => {
            let reason = reason.ok_or_else(|| {
                AppError::invalid_field("reason", "a reason is required to remove content")
            })?;
            match target {
                TargetType::Listing => {
                    listings::service::remove_by_operator_in(txn, id, reason).await?;
                }
                _ => forum::remove_by_operator_in(txn, kind, id, reason).await?,
            }
            reports::close_reports_in(txn, target, id, Decision::Remove).await
        }
        (TargetType::Listing, QueueDecision::Approve) => {
            let l = listing::Entity::find_by_id(id)
                .one(txn)
                .await?
                .ok_or_else(|| AppError::not_found("listing"))?;
            let was_held = l.status == ListingStatus::PendingReview;
            if was_held {
                listings::service::transition_in(
                    txn,
                    id,
                    listings::service::Actor::System,
                    Transition::Approve,
                    None,
                )
                .await?;
            }
            let closed = reports::close_reports_in(txn, target, id, Decision::Dismiss).await?;
            if !was_held && closed == 0 {
                return Err(nothing_waits(l.status.as_str()));
            }
            Ok(closed)
        }
        (TargetType::Listing, QueueDecision::Dismiss) => {
            let closed = reports::close_reports_in(txn, target, id, Decision::Dismiss).await?;
            if closed == 0 {
                let current = target_status(txn, target, id).await?;
                return Err(AppError::conflict(
                    "nothing_to_dismiss",
                    format!("there are no open reports to dismiss (the listing is {current})"),
                ));
            }
            reports::restore_if_held_by_reports(txn, id).await?;
            Ok(closed)
        }
        (_, QueueDecision::Approve) => {
            let changed = forum::moderate_in(txn, kind, id, Moderation::Approve).await?;
            let closed = reports::close_reports_in(txn, target, id, Decision::Dismiss).await?;
            if !changed && closed == 0 {
                let current = target_status(txn, target, id).await?;
                return Err(nothing_waits(&current));
            }
            Ok(closed)
        }
        (_, QueueDecision::Dismiss) => {
            let closed = reports::close_reports_in(txn, target, id, Decision::Dismiss).await?;
            if closed == 0 {
                let current = target_status(txn, target, id).await?;
                return Err(AppError::conflict(
                    "nothing_to_dismiss",
                    format!("there are no open reports to dismiss (the {kind} is {current})"),
                ));
            }
            forum::moderate_in(txn, kind, id, Moderation::Restore("reported")).await?;
            Ok(closed)
        }
    }
}

async fn target_status(
    db: &impl ConnectionTrait,
    target: TargetType,
    id: i64,
) -> AppResult<String> {
    match target {
        TargetType::Listing => Ok(listing::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or_else(|| AppError::not_found("listing"))?
            .status
            .as_str()
            .to_string()),
        TargetType::Post | TargetType::Comment => Ok(forum::status_str(
            forum::content_status(db, target.as_str(), id).await?,
        )
        .to_string()),
        _ => Ok(String::new()),
    }
}
