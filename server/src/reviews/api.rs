//! HTTP endpoints of reviews: writing, editing and answering reviews, an order's reviews, a student's public
//! reviews and the caller's own; and the reputation objects that profiles and listing cards show. Handlers
//! parse, authorise, call [`super::service`] and map the result.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};

use super::{
    model::{Counters, Tag, decode_tags, edit_deadline, review, review_deadline, round2},
    reputation,
    service::{self, Direction, NewReview, ReviewEdit},
};
use crate::{
    auth::StudentAuth,
    error::AppResult,
    orders,
    state::AppState,
    users::{model::user, service as users},
    util,
};

#[derive(Tags)]
enum ReviewTags {
    /// Reviews after a trade, and reputation.
    Reviews,
}

/// Which side of the order wrote a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ReviewerRole {
    /// The buyer, reviewing the seller.
    Buyer,
    /// The seller, reviewing the buyer.
    Seller,
}

impl ReviewerRole {
    fn as_str(self) -> &'static str {
        match self {
            ReviewerRole::Buyer => "buyer",
            ReviewerRole::Seller => "seller",
        }
    }
}

/// The author of a review as shown with it.
#[derive(Debug, Clone, Object)]
pub struct ReviewAuthor {
    /// Absent when the account was deleted (the review stays, anonymised).
    pub id: Option<i64>,
    pub nickname: String,
    pub avatar_url: Option<String>,
}

/// A review of one party of an order by the other.
#[derive(Debug, Clone, Object)]
pub struct Review {
    pub id: i64,
    /// Present for the two parties of the order only.
    pub order_id: Option<i64>,
    /// The item of the order.
    pub item_title: String,
    /// 1–5.
    pub rating: i32,
    /// Absent when the reviewer wrote none (or, to anyone but its author, while content security holds it).
    pub text: Option<String>,
    pub tags: Vec<Tag>,
    pub reviewer_role: ReviewerRole,
    pub reviewer: ReviewAuthor,
    /// The reviewed person's public answer.
    pub reply: Option<String>,
    pub replied_at: Option<DateTime<Utc>>,
    /// Whether the other party (and the public) can see it: both sides reviewed, or the 30-day window closed.
    pub revealed: bool,
    pub revealed_at: Option<DateTime<Utc>>,
    /// Author only: an operator hid the review; it counts nowhere.
    pub hidden: bool,
    /// Author only: until when the review can be edited (absent once it cannot).
    pub editable_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of reviews.
#[derive(Debug, Object)]
pub struct ReviewPage {
    pub items: Vec<Review>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A student's reputation: deals done, ratings received (revealed, not hidden ones), and how reliably they sell.
/// `docs/reviews.md` defines every figure.
#[derive(Debug, Clone, Object)]
pub struct Reputation {
    /// Orders completed as the seller.
    pub completed_sales: i64,
    /// Orders completed as the buyer.
    pub completed_purchases: i64,
    /// Ratings received.
    pub rating_count: i64,
    /// Mean rating, two decimals; absent without ratings.
    pub average_rating: Option<f64>,
    /// Bayesian-smoothed rating, two decimals: (10 × 4.5 + sum of ratings) / (10 + number of ratings). Sort and
    /// compare by this, not by the average: one 5-star review does not beat fifty 4.8s.
    pub score: f64,
    /// Share of ratings of 4 or 5, 0–1, two decimals; absent without ratings.
    pub positive_rate: Option<f64>,
    /// Completed sales / (completed sales + orders the seller cancelled), 0–1, two decimals; absent before the
    /// first of either.
    pub completion_rate: Option<f64>,
    /// Median seconds the student took to answer a buyer's first chat message (last 50 conversations as a
    /// seller); absent when there is nothing to measure. Profiles only (not computed for listing cards).
    pub median_response_seconds: Option<i64>,
}

/// The reputation a listing card shows of its seller.
#[derive(Debug, Clone, Object)]
pub struct CardReputation {
    pub completed_sales: i64,
    pub rating_count: i64,
    /// Mean rating, two decimals; absent without ratings.
    pub average_rating: Option<f64>,
    /// Bayesian-smoothed rating, two decimals (see `Reputation.score`).
    pub score: f64,
}

/// The full reputation object of some counters.
pub fn reputation_view(c: &Counters, median_response_seconds: Option<i64>) -> Reputation {
    let f = c.figures();
    Reputation {
        completed_sales: c.completed_sales,
        completed_purchases: c.completed_purchases,
        rating_count: c.rating_count,
        average_rating: f.average_rating.map(round2),
        score: round2(f.score),
        positive_rate: f.positive_rate.map(round2),
        completion_rate: f.completion_rate.map(round2),
        median_response_seconds,
    }
}

/// The card reputation of some counters.
pub fn card_reputation(c: &Counters) -> CardReputation {
    let f = c.figures();
    CardReputation {
        completed_sales: c.completed_sales,
        rating_count: c.rating_count,
        average_rating: f.average_rating.map(round2),
        score: round2(f.score),
    }
}

/// The reputation of a profile: the stored counters and the chat response time.
pub async fn profile_reputation(state: &AppState, user_id: i64) -> AppResult<Reputation> {
    let counters = reputation::counters(&state.db, user_id).await?;
    let response = reputation::median_response_seconds(&state.db, user_id).await?;
    Ok(reputation_view(&counters, response))
}

/// What the order page shows about reviews.
#[derive(Debug, Object)]
pub struct OrderReviews {
    /// The caller's review, if written.
    pub mine: Option<Review>,
    /// The other party's review, once revealed (and not hidden).
    pub theirs: Option<Review>,
    /// Whether the other party has reviewed (even while their review is sealed).
    pub they_reviewed: bool,
    /// Whether the caller may write a review now.
    pub can_review: bool,
    /// The end of the 30-day review window; absent before the order completes.
    pub review_deadline: Option<DateTime<Utc>>,
}

/// A new review.
#[derive(Debug, Object)]
pub struct CreateReview {
    /// 1–5 stars.
    pub rating: i32,
    /// At most 500 characters, checked by content security.
    pub text: Option<String>,
    /// Up to 5 tags from the fixed list.
    #[oai(default)]
    pub tags: Vec<Tag>,
}

/// An edit of a review (within 24 hours of writing it): fields left out stay.
#[derive(Debug, Object)]
pub struct UpdateReview {
    pub rating: Option<i32>,
    /// At most 500 characters; an empty text removes it.
    pub text: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

/// The reviewed person's answer.
#[derive(Debug, Object)]
pub struct ReplyBody {
    /// 1–500 characters, checked by content security.
    pub text: String,
}

/// Which of the caller's reviews to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "ReviewDirection", rename_all = "snake_case")]
pub enum DirectionParam {
    /// Reviews of the caller (revealed, not hidden).
    Received,
    /// Reviews the caller wrote, sealed ones included.
    Written,
}

fn author(u: Option<&user::Model>) -> ReviewAuthor {
    match u {
        Some(u) if u.status != user::Status::Deleted => ReviewAuthor {
            id: Some(u.id),
            nickname: u.nickname.clone(),
            avatar_url: u.avatar_url.clone(),
        },
        _ => ReviewAuthor {
            id: None,
            nickname: crate::users::privacy::DELETED_NICKNAME.into(),
            avatar_url: None,
        },
    }
}

/// The view of `r` for `viewer_id`.
pub fn view(
    r: review::Model,
    viewer_id: i64,
    users: &HashMap<i64, user::Model>,
    titles: &HashMap<i64, String>,
) -> Review {
    let now = util::now();
    let own = r.reviewer_id == viewer_id;
    let party = own || r.reviewee_id == viewer_id;
    let text =
        (!r.body.is_empty() && (own || r.moderation_label.is_none())).then(|| r.body.clone());
    let editable_until = (own && !r.hidden && now <= edit_deadline(r.created_at))
        .then(|| edit_deadline(r.created_at));
    Review {
        id: r.id,
        order_id: party.then_some(r.order_id),
        item_title: titles.get(&r.order_id).cloned().unwrap_or_default(),
        rating: r.rating,
        text,
        tags: decode_tags(&r.tags),
        reviewer_role: if r.reviewer_role == "seller" {
            ReviewerRole::Seller
        } else {
            ReviewerRole::Buyer
        },
        reviewer: author(users.get(&r.reviewer_id)),
        reply: r.reply,
        replied_at: r.replied_at,
        revealed: r.revealed_at.is_some(),
        revealed_at: r.revealed_at,
        hidden: own && r.hidden,
        editable_until,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

async fn views(
    state: &AppState,
    rows: Vec<review::Model>,
    viewer_id: i64,
) -> AppResult<Vec<Review>> {
    let (users, titles) = service::page_context(&state.db, &rows).await?;
    Ok(rows
        .into_iter()
        .map(|r| view(r, viewer_id, &users, &titles))
        .collect())
}

async fn one(state: &AppState, r: review::Model, viewer_id: i64) -> AppResult<Review> {
    Ok(views(state, vec![r], viewer_id)
        .await?
        .pop()
        .expect("one review in, one out"))
}

pub struct ReviewsApi;

#[OpenApi(tag = "ReviewTags::Reviews")]
impl ReviewsApi {
    /// Review the other party of a completed (or settled) order: 1–5 stars, optional text and tags. Once per
    /// party, within 30 days of completion (409 `order_not_completed`, `review_window_closed`,
    /// `already_reviewed`). The review stays sealed until the other party has reviewed too or the window
    /// closes; then both become visible at once. 404 for anyone but the buyer and the seller.
    #[oai(
        path = "/v1/orders/:id/review",
        method = "post",
        operation_id = "review_order"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<CreateReview>,
    ) -> AppResult<Json<Review>> {
        let b = body.0;
        let r = service::create(
            &state,
            &auth.0.user,
            id.0,
            NewReview {
                rating: b.rating,
                text: b.text,
                tags: b.tags,
            },
        )
        .await?;
        Ok(Json(one(&state, r, auth.0.id()).await?))
    }

    /// The reviews of an order, for its two parties: the caller's own, the other party's once revealed, and
    /// whether the caller may still review. 404 for anyone else.
    #[oai(
        path = "/v1/orders/:id/reviews",
        method = "get",
        operation_id = "order_reviews"
    )]
    async fn of_order(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<OrderReviews>> {
        let uid = auth.0.id();
        let o = orders::service::visible(&state.db, id.0, uid).await?;
        let rows = service::of_order(&state.db, o.id).await?;
        let mine_exists = rows.iter().any(|r| r.reviewer_id == uid);
        let they_reviewed = rows.iter().any(|r| r.reviewer_id != uid);
        let can_review = !mine_exists && service::reviewable(&o, util::now()).is_ok();
        let shown: Vec<review::Model> = rows
            .into_iter()
            .filter(|r| r.reviewer_id == uid || (r.revealed_at.is_some() && !r.hidden))
            .collect();
        let mut mine = None;
        let mut theirs = None;
        for v in views(&state, shown, uid).await? {
            if v.reviewer.id == Some(uid) {
                mine = Some(v);
            } else {
                theirs = Some(v);
            }
        }
        Ok(Json(OrderReviews {
            mine,
            theirs,
            they_reviewed,
            can_review,
            review_deadline: o.completed_at.map(review_deadline),
        }))
    }

    /// Edit the caller's review within 24 hours of writing it (409 `edit_window_closed` after, 409
    /// `review_hidden` once hidden by an operator).
    #[oai(
        path = "/v1/reviews/:id",
        method = "patch",
        operation_id = "update_review"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<UpdateReview>,
    ) -> AppResult<Json<Review>> {
        let b = body.0;
        let r = service::edit(
            &state,
            &auth.0.user,
            id.0,
            ReviewEdit {
                rating: b.rating,
                text: b.text,
                tags: b.tags,
            },
        )
        .await?;
        Ok(Json(one(&state, r, auth.0.id()).await?))
    }

    /// The reviewed person's one public reply to a revealed review (409 `already_replied` the second time).
    #[oai(
        path = "/v1/reviews/:id/reply",
        method = "post",
        operation_id = "reply_review"
    )]
    async fn reply(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<ReplyBody>,
    ) -> AppResult<Json<Review>> {
        let r = service::reply(&state, &auth.0.user, id.0, &body.0.text).await?;
        Ok(Json(one(&state, r, auth.0.id()).await?))
    }

    /// A student's public reviews (revealed, not hidden), newest first. `role` keeps the reviews written by
    /// buyers (the student as a seller) or by sellers.
    #[oai(
        path = "/v1/users/:id/reviews",
        method = "get",
        operation_id = "user_reviews"
    )]
    async fn of_user(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        /// Only reviews written by this side.
        role: Query<Option<ReviewerRole>>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<ReviewPage>> {
        let u = users::visible_user(&state.db, id.0).await?;
        let (rows, next_cursor) = service::list_public(
            &state.db,
            u.id,
            role.0.map(ReviewerRole::as_str),
            cursor.0.as_deref(),
            limit.0,
        )
        .await?;
        Ok(Json(ReviewPage {
            items: views(&state, rows, auth.0.id()).await?,
            next_cursor,
        }))
    }

    /// The caller's reviews: `received` (revealed, not hidden) or `written` (sealed ones too, with whether they
    /// are still editable), newest first.
    #[oai(path = "/v1/me/reviews", method = "get", operation_id = "my_reviews")]
    async fn mine(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        direction: Query<DirectionParam>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<ReviewPage>> {
        let uid = auth.0.id();
        let direction = match direction.0 {
            DirectionParam::Received => Direction::Received,
            DirectionParam::Written => Direction::Written,
        };
        let (rows, next_cursor) =
            service::list_mine(&state.db, uid, direction, cursor.0.as_deref(), limit.0).await?;
        Ok(Json(ReviewPage {
            items: views(&state, rows, uid).await?,
            next_cursor,
        }))
    }
}
