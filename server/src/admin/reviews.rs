//! Review moderation: operators read any review (sealed ones too) and hide abusive ones, or show them again.
//! A hidden review is shown to nobody but its author and stops counting in the reputation of the student it
//! is about; the rules are in `crate::reviews::service::set_hidden`.

use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, sea_query::ExprTrait,
};

use super::{
    AdminTags, audit,
    auth::{Need, perm},
};
use crate::{
    error::{AppError, AppResult},
    listings::model::listing,
    orders::model::order,
    reviews::{model::review, service as reviews},
    state::AppState,
};

/// A review as operators see it: everything, including sealed and hidden ones.
#[derive(Debug, Clone, Object)]
pub struct AdminReview {
    pub id: i64,
    pub order_id: i64,
    /// The school of the order's listing.
    pub school_id: Option<i64>,
    pub reviewer_id: i64,
    pub reviewee_id: i64,
    /// `buyer` (a review of the seller) or `seller`.
    pub reviewer_role: String,
    /// 1–5.
    pub rating: i32,
    pub body: String,
    /// Tag keys.
    pub tags: Vec<String>,
    /// Set when content security asked for a human look at the text.
    pub moderation_label: Option<String>,
    pub reply: Option<String>,
    pub hidden: bool,
    /// The operator who hid (or last showed) it.
    pub hidden_by: Option<String>,
    pub hidden_reason: Option<String>,
    /// When it became visible; absent while sealed.
    pub revealed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// One page of reviews, newest first.
#[derive(Debug, Object)]
pub struct AdminReviewPage {
    pub items: Vec<AdminReview>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Why a review is hidden.
#[derive(Debug, Object)]
pub struct HideReview {
    /// 1–200 characters, kept on the review and in the audit log.
    pub reason: String,
}

fn view(r: &review::Model, school_id: Option<i64>) -> AdminReview {
    AdminReview {
        id: r.id,
        order_id: r.order_id,
        school_id,
        reviewer_id: r.reviewer_id,
        reviewee_id: r.reviewee_id,
        reviewer_role: r.reviewer_role.clone(),
        rating: r.rating,
        body: r.body.clone(),
        tags: r
            .tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        moderation_label: r.moderation_label.clone(),
        reply: r.reply.clone(),
        hidden: r.hidden,
        hidden_by: r.hidden_by.clone(),
        hidden_reason: r.hidden_reason.clone(),
        revealed_at: r.revealed_at,
        created_at: r.created_at,
    }
}

/// The school of the reviewed order's listing.
async fn school_of(db: &impl ConnectionTrait, r: &review::Model) -> AppResult<Option<i64>> {
    match order::Entity::find_by_id(r.order_id).one(db).await? {
        Some(o) => super::orders::school_of(db, &o).await,
        None => Ok(None),
    }
}

async fn set_hidden(
    state: &AppState,
    auth: &Need<perm::Moderation>,
    id: i64,
    hidden: bool,
    reason: Option<String>,
) -> AppResult<Json<AdminReview>> {
    let before = reviews::find(&state.db, id).await?;
    let school = school_of(&state.db, &before).await?;
    auth.school(school)?;
    let txn = state.db.begin().await?;
    let action = if hidden {
        "review.hide"
    } else {
        "review.unhide"
    };
    let pending = audit::begin(&txn, auth.actor(), action).await?;
    let operator = auth.operator.username.clone();
    let after = reviews::set_hidden(&txn, id, hidden, &operator, reason.as_deref()).await?;
    pending
        .finish(
            &txn,
            audit::Record::target("review", id)
                .school(school)
                .reason(reason.as_deref())
                .before_view(&view(&before, school))
                .after_view(&view(&after, school)),
        )
        .await?;
    txn.commit().await?;
    Ok(Json(view(&after, school)))
}

pub struct ReviewModerationApi;

#[OpenApi(tag = "AdminTags::Forum")]
impl ReviewModerationApi {
    /// List reviews, newest first: about or by one student (`user_id`), only hidden or only visible ones
    /// (`hidden`). Sealed reviews are included. Limited to the operator's schools (the order's listing).
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/reviews",
        method = "get",
        operation_id = "admin_list_reviews"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        /// Reviews written by or about this student.
        user_id: Query<Option<i64>>,
        hidden: Query<Option<bool>>,
        /// The `next_before` of the previous page.
        before: Query<Option<i64>>,
        /// 1–100, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<AdminReviewPage>> {
        let limit = limit.0.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(AppError::invalid_field("limit", "must be 1 to 100"));
        }
        let mut q = review::Entity::find().order_by_desc(review::Column::Id);
        if let Some(u) = user_id.0 {
            q = q.filter(
                Condition::any()
                    .add(review::Column::ReviewerId.eq(u))
                    .add(review::Column::RevieweeId.eq(u)),
            );
        }
        if let Some(h) = hidden.0 {
            q = q.filter(review::Column::Hidden.eq(h));
        }
        if let Some(b) = before.0 {
            q = q.filter(review::Column::Id.lt(b));
        }
        if let Some(schools) = auth.school_filter(None)? {
            let orders_in_schools = sea_orm::sea_query::Query::select()
                .column((order::Entity, order::Column::Id))
                .from(order::Entity)
                .inner_join(
                    listing::Entity,
                    sea_orm::sea_query::Expr::col((listing::Entity, listing::Column::Id))
                        .equals((order::Entity, order::Column::ListingId)),
                )
                .and_where(listing::Column::SchoolId.is_in(schools))
                .to_owned();
            q = q.filter(review::Column::OrderId.in_subquery(orders_in_schools));
        }
        let mut rows = q.limit(limit + 1).all(&state.db).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        // The page's schools in two queries (its orders, then their listings), not two per review.
        let listing_of: std::collections::HashMap<i64, i64> = order::Entity::find()
            .select_only()
            .column(order::Column::Id)
            .column(order::Column::ListingId)
            .filter(order::Column::Id.is_in(rows.iter().map(|r| r.order_id)))
            .into_tuple::<(i64, i64)>()
            .all(&state.db)
            .await?
            .into_iter()
            .collect();
        let schools =
            super::orders::listing_schools(&state.db, listing_of.values().copied()).await?;
        let items = rows
            .iter()
            .map(|r| {
                let school = listing_of.get(&r.order_id).and_then(|l| schools.get(l));
                view(r, school.copied())
            })
            .collect();
        Ok(Json(AdminReviewPage {
            next_before: if more {
                rows.last().map(|r| r.id)
            } else {
                None
            },
            items,
        }))
    }

    /// Hide an abusive review, with a reason: it is shown to nobody but its author and stops counting in the
    /// reputation of the student it is about. Hiding a hidden review changes nothing.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/reviews/:id/hide",
        method = "post",
        operation_id = "hide_review"
    )]
    async fn hide(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
        body: Json<HideReview>,
    ) -> AppResult<Json<AdminReview>> {
        let reason = super::reason(Some(&body.reason), true, 200)?;
        set_hidden(&state, &auth, id.0, true, reason).await
    }

    /// Show a hidden review again; it counts in the reputation again once revealed.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/reviews/:id/unhide",
        method = "post",
        operation_id = "unhide_review"
    )]
    async fn unhide(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
    ) -> AppResult<Json<AdminReview>> {
        set_hidden(&state, &auth, id.0, false, None).await
    }
}
