//! The rules and transactions of reviews: writing one (participants of a completed order, once each, within
//! 30 days, text checked by content security), editing it for 24 hours, the reviewed person's one reply, the
//! blind reveal (both sides reviewed, or the window closed: [`reveal_due`]), operators hiding abusive reviews
//! ([`set_hidden`]), and the lists. Every change that affects a reputation updates it in the same transaction
//! (see [`super::reputation`]); a review counts only once it is revealed, so a rating cannot be guessed from a
//! moving average before the reveal.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait, sea_query::Expr,
};
use serde_json::json;

use super::{
    model::{TAGS_MAX, TEXT_MAX, Tag, edit_deadline, encode_tags, review, review_deadline},
    reputation::{self, Delta},
};
use crate::{
    db::is_unique_violation,
    error::{AppError, AppResult},
    moderation::service::{self as moderation, Scene, Verdict},
    notifications::{outbox, service::notify},
    orders::{
        model::{OrderStatus, order},
        service as orders,
    },
    state::AppState,
    users::model::user,
    util,
};

/// A new review.
#[derive(Debug, Clone)]
pub struct NewReview {
    pub rating: i32,
    pub text: Option<String>,
    pub tags: Vec<Tag>,
}

/// An edit of a review: fields left out stay.
#[derive(Debug, Clone, Default)]
pub struct ReviewEdit {
    pub rating: Option<i32>,
    pub text: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

/// Which reviews of the caller to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Revealed, not hidden reviews of the caller.
    Received,
    /// The caller's own reviews, sealed ones included.
    Written,
}

pub const PAGE_MAX: u64 = 50;

fn check_rating(rating: i32) -> AppResult<()> {
    if (1..=5).contains(&rating) {
        Ok(())
    } else {
        Err(AppError::invalid_field(
            "rating",
            "a whole number from 1 to 5",
        ))
    }
}

fn clean_text(field: &str, text: Option<&str>) -> AppResult<String> {
    let t = text.map(str::trim).unwrap_or_default().to_string();
    if t.chars().count() > TEXT_MAX {
        return Err(AppError::invalid_field(
            field,
            format!("at most {TEXT_MAX} characters"),
        ));
    }
    Ok(t)
}

fn check_tags(tags: &[Tag]) -> AppResult<String> {
    let stored = encode_tags(tags);
    if stored.split(',').filter(|s| !s.is_empty()).count() > TAGS_MAX {
        return Err(AppError::invalid_field(
            "tags",
            format!("at most {TAGS_MAX} tags"),
        ));
    }
    Ok(stored)
}

/// What content security says about a review or reply: `risky` refuses it (422 `content_rejected`), `review`
/// keeps it with a label (the text is then shown to its author only).
async fn check_content(
    state: &AppState,
    author: &user::Model,
    text: &str,
) -> AppResult<Option<String>> {
    if text.is_empty() {
        return Ok(None);
    }
    match moderation::check_text(state, &author.openid, Scene::Comment, None, text).await? {
        Verdict::Pass => Ok(None),
        Verdict::Review { label } => Ok(Some(label.chars().take(40).collect())),
        Verdict::Risky { label } => Err(AppError::Unprocessable {
            code: "content_rejected",
            message: format!(
                "the text was rejected by content security ({label}); please change it"
            ),
        }),
    }
}

/// The reviewer's side and the person reviewed, for a participant of `o`.
fn sides(o: &order::Model, user_id: i64) -> (&'static str, i64) {
    if o.buyer_id == user_id {
        ("buyer", o.seller_id)
    } else {
        ("seller", o.buyer_id)
    }
}

/// Whether `o` may be reviewed at `now` (completed or settled, window open); the error says why not.
pub fn reviewable(o: &order::Model, now: DateTime<Utc>) -> AppResult<()> {
    if !matches!(o.status, OrderStatus::Completed | OrderStatus::Settled) {
        return Err(AppError::conflict(
            "order_not_completed",
            format!(
                "an order can be reviewed once it is completed; this one is {}",
                o.status.as_str()
            ),
        ));
    }
    match o.completed_at {
        Some(done) if now <= review_deadline(done) => Ok(()),
        _ => Err(AppError::conflict(
            "review_window_closed",
            "reviews are possible for 30 days after the order completed",
        )),
    }
}

/// Takes the order row's lock (a write, first in the transaction, so SQLite never upgrades a read lock and two
/// reviews of one order are serialised on PostgreSQL: the second sees the first and reveals both).
async fn lock_order(txn: &impl ConnectionTrait, order_id: i64) -> AppResult<()> {
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "UPDATE orders SET updated_at = updated_at WHERE id = $1",
        [order_id.into()],
    ))
    .await?;
    Ok(())
}

/// `POST /api/v1/orders/{id}/review`: the caller reviews the other party of order `order_id`. Non-participants
/// get 404; 409 `order_not_completed`, `review_window_closed` or `already_reviewed`. When the other side has
/// reviewed already, both reviews are revealed in the same transaction.
pub async fn create(
    state: &AppState,
    reviewer: &user::Model,
    order_id: i64,
    input: NewReview,
) -> AppResult<review::Model> {
    check_rating(input.rating)?;
    let text = clean_text("text", input.text.as_deref())?;
    let tags = check_tags(&input.tags)?;
    let o = orders::visible(&state.db, order_id, reviewer.id).await?;
    let now = util::now();
    reviewable(&o, now)?;
    let already = review::Entity::find()
        .filter(review::Column::OrderId.eq(o.id))
        .filter(review::Column::ReviewerId.eq(reviewer.id))
        .one(&state.db)
        .await?
        .is_some();
    if already {
        return Err(already_reviewed());
    }
    let label = check_content(state, reviewer, &text).await?;
    let (role, reviewee) = sides(&o, reviewer.id);

    let txn = state.db.begin().await?;
    lock_order(&txn, o.id).await?;
    let inserted = review::Entity::insert(review::ActiveModel {
        order_id: Set(o.id),
        reviewer_id: Set(reviewer.id),
        reviewee_id: Set(reviewee),
        reviewer_role: Set(role.into()),
        rating: Set(input.rating),
        body: Set(text),
        tags: Set(tags),
        moderation_label: Set(label),
        reply: Set(None),
        replied_at: Set(None),
        hidden: Set(false),
        hidden_by: Set(None),
        hidden_reason: Set(None),
        revealed_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(&txn)
    .await;
    let id = match inserted {
        Ok(r) => r.last_insert_id,
        Err(e) if is_unique_violation(&e) => return Err(already_reviewed()),
        Err(e) => return Err(e.into()),
    };
    let both = review::Entity::find()
        .filter(review::Column::OrderId.eq(o.id))
        .count(&txn)
        .await?
        >= 2;
    let queued = if both {
        reveal_in(state, &txn, &o, now).await?
    } else {
        false
    };
    let r = find(&txn, id).await?;
    txn.commit().await?;
    if queued {
        outbox::kick(state);
    }
    Ok(r)
}

fn already_reviewed() -> AppError {
    AppError::conflict(
        "already_reviewed",
        "you have reviewed this order already (a review can be edited for 24 hours)",
    )
}

/// Reads a review.
pub async fn find(db: &impl ConnectionTrait, id: i64) -> AppResult<review::Model> {
    review::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("review"))
}

/// Reveals the sealed reviews of `o` in the caller's transaction (which holds the order's lock): each one
/// starts counting in its subject's reputation (unless hidden) and its subject is told. Returns whether a
/// subscribe message was queued.
async fn reveal_in(
    state: &AppState,
    txn: &impl ConnectionTrait,
    o: &order::Model,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let sealed: Vec<i64> = review::Entity::find()
        .select_only()
        .column(review::Column::Id)
        .filter(review::Column::OrderId.eq(o.id))
        .filter(review::Column::RevealedAt.is_null())
        .into_tuple()
        .all(txn)
        .await?;
    let mut queued = false;
    for id in sealed {
        // One conditional UPDATE per review, then the row as it is (locked by the update): a concurrent
        // `set_hidden` either happened before (and we see it) or waits for us (and sees the reveal).
        let res = review::Entity::update_many()
            .col_expr(review::Column::RevealedAt, Expr::value(Some(now)))
            .filter(review::Column::Id.eq(id))
            .filter(review::Column::RevealedAt.is_null())
            .exec(txn)
            .await?;
        if res.rows_affected != 1 {
            continue;
        }
        let r = find(txn, id).await?;
        if r.hidden {
            continue;
        }
        reputation::bump(txn, r.reviewee_id, Delta::rating(r.rating, 1)).await?;
        let who = if r.reviewer_role == "buyer" {
            "买家"
        } else {
            "卖家"
        };
        notify(
            txn,
            r.reviewee_id,
            "new_review",
            "你收到了新评价",
            &format!("「{}」的{who}给了你 {} 星评价。", o.title, r.rating),
            Some("review"),
            Some(r.id),
        )
        .await?;
        if let Some(template) = &state.config.wechat_template_new_review {
            outbox::enqueue(
                txn,
                outbox::Outgoing {
                    user_id: r.reviewee_id,
                    template_key: "new_review",
                    template_id: template.clone(),
                    page: Some(format!("pages/reviews/received?id={}", r.id)),
                    data: new_review_data(&o.title, who, r.rating, now),
                },
            )
            .await?;
            queued = true;
        }
    }
    Ok(queued)
}

/// The keywords of the "new review" subscribe message.
fn new_review_data(title: &str, who: &str, rating: i32, at: DateTime<Utc>) -> serde_json::Value {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    let mut item: String = title.split_whitespace().collect::<Vec<_>>().join(" ");
    item = item.chars().take(20).collect();
    if item.is_empty() {
        item = "商品".into();
    }
    json!({
        "thing1": { "value": item },
        "thing2": { "value": format!("{who}给了你{rating}星评价") },
        "time3": { "value": at.with_timezone(&beijing).format("%Y-%m-%d %H:%M").to_string() },
    })
}

/// Sweep: reveals sealed reviews whose window has closed (or whose order has both reviews, should a reveal
/// ever have been missed). Returns how many orders were revealed. Conditional updates make concurrent sweeps
/// on several instances harmless.
pub async fn reveal_due(state: &AppState) -> AppResult<u64> {
    #[derive(Debug, FromQueryResult)]
    struct Due {
        order_id: i64,
    }
    let cutoff = util::now() - chrono::Duration::days(super::model::REVIEW_WINDOW_DAYS);
    let due = Due::find_by_statement(Statement::from_sql_and_values(
        state.db.get_database_backend(),
        "SELECT DISTINCT r.order_id AS order_id FROM reviews r JOIN orders o ON o.id = r.order_id \
         WHERE r.revealed_at IS NULL AND (o.completed_at <= $1 \
           OR (SELECT COUNT(*) FROM reviews r2 WHERE r2.order_id = r.order_id) >= 2) \
         ORDER BY r.order_id LIMIT 100",
        [cutoff.into()],
    ))
    .all(&state.db)
    .await?;
    let mut done = 0;
    let mut queued = false;
    for d in due {
        let txn = state.db.begin().await?;
        lock_order(&txn, d.order_id).await?;
        let o = orders::find(&txn, d.order_id).await?;
        queued |= reveal_in(state, &txn, &o, util::now()).await?;
        txn.commit().await?;
        done += 1;
    }
    if queued {
        outbox::kick(state);
    }
    Ok(done)
}

/// `PATCH /api/v1/reviews/{id}`: the author changes their review within 24 hours of writing it (409
/// `edit_window_closed` after; 409 `review_hidden` once an operator hid it). A revealed review's new rating
/// replaces the old one in the reputation, in the same transaction.
pub async fn edit(
    state: &AppState,
    author: &user::Model,
    id: i64,
    change: ReviewEdit,
) -> AppResult<review::Model> {
    let r = visible(&state.db, id, author.id).await?;
    if r.reviewer_id != author.id {
        return Err(AppError::forbidden(
            "not_allowed",
            "only the author of a review can edit it",
        ));
    }
    if let Some(rating) = change.rating {
        check_rating(rating)?;
    }
    let text = match &change.text {
        Some(t) => Some(clean_text("text", Some(t))?),
        None => None,
    };
    let tags = match &change.tags {
        Some(t) => Some(check_tags(t)?),
        None => None,
    };
    let now = util::now();
    if now > edit_deadline(r.created_at) {
        return Err(edit_window_closed());
    }
    if r.hidden {
        return Err(review_hidden());
    }
    let label = match &text {
        Some(t) => Some(check_content(state, author, t).await?),
        None => None,
    };

    let txn = state.db.begin().await?;
    // Write first: claim the row while it is still editable and visible.
    let res = review::Entity::update_many()
        .col_expr(review::Column::UpdatedAt, Expr::value(now))
        .filter(review::Column::Id.eq(r.id))
        .filter(
            review::Column::CreatedAt
                .gte(now - chrono::Duration::hours(super::model::EDIT_WINDOW_HOURS)),
        )
        .filter(review::Column::Hidden.eq(false))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        let current = find(&txn, r.id).await?;
        return Err(if current.hidden {
            review_hidden()
        } else {
            edit_window_closed()
        });
    }
    let before = find(&txn, r.id).await?;
    let mut q = review::Entity::update_many().filter(review::Column::Id.eq(r.id));
    let mut changed = false;
    if let Some(rating) = change.rating {
        q = q.col_expr(review::Column::Rating, Expr::value(rating));
        changed = true;
    }
    if let Some(t) = text {
        q = q.col_expr(review::Column::Body, Expr::value(t));
        q = q.col_expr(
            review::Column::ModerationLabel,
            Expr::value(label.flatten()),
        );
        changed = true;
    }
    if let Some(t) = tags {
        q = q.col_expr(review::Column::Tags, Expr::value(t));
        changed = true;
    }
    if changed {
        q.exec(&txn).await?;
    }
    if let Some(rating) = change.rating
        && before.revealed_at.is_some()
        && rating != before.rating
    {
        reputation::bump(
            &txn,
            before.reviewee_id,
            Delta::rerating(before.rating, rating),
        )
        .await?;
    }
    let after = find(&txn, r.id).await?;
    txn.commit().await?;
    Ok(after)
}

fn edit_window_closed() -> AppError {
    AppError::conflict(
        "edit_window_closed",
        "a review can be edited for 24 hours after it was written",
    )
}

fn review_hidden() -> AppError {
    AppError::conflict("review_hidden", "this review was hidden by an operator")
}

/// The review, when `user_id` may see it: its author always; its subject once it is revealed and not hidden.
/// 404 for everyone else.
pub async fn visible(db: &impl ConnectionTrait, id: i64, user_id: i64) -> AppResult<review::Model> {
    let r = find(db, id).await?;
    let subject_sees = r.reviewee_id == user_id && r.revealed_at.is_some() && !r.hidden;
    if r.reviewer_id == user_id || subject_sees {
        Ok(r)
    } else {
        Err(AppError::not_found("review"))
    }
}

/// `POST /api/v1/reviews/{id}/reply`: the reviewed person answers a revealed review, once (409
/// `already_replied`). The text is checked like reviews; the author is told.
pub async fn reply(
    state: &AppState,
    subject: &user::Model,
    id: i64,
    text: &str,
) -> AppResult<review::Model> {
    let r = visible(&state.db, id, subject.id).await?;
    if r.reviewee_id != subject.id {
        return Err(AppError::forbidden(
            "not_allowed",
            "only the reviewed person can reply to a review",
        ));
    }
    let text = clean_text("text", Some(text))?;
    if text.is_empty() {
        return Err(AppError::invalid_field("text", "write something"));
    }
    if let Some(label) = check_content(state, subject, &text).await? {
        // A reply is public at once: one that needs a human look is refused rather than published.
        return Err(AppError::Unprocessable {
            code: "content_rejected",
            message: format!("the reply needs changes before it can be published ({label})"),
        });
    }
    let now = util::now();
    let txn = state.db.begin().await?;
    let res = review::Entity::update_many()
        .col_expr(review::Column::Reply, Expr::value(Some(text)))
        .col_expr(review::Column::RepliedAt, Expr::value(Some(now)))
        .filter(review::Column::Id.eq(r.id))
        .filter(review::Column::Reply.is_null())
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::conflict(
            "already_replied",
            "a review can be replied to once",
        ));
    }
    notify(
        &txn,
        r.reviewer_id,
        "review_replied",
        "对方回复了你的评价",
        "你写的评价收到了回复。",
        Some("review"),
        Some(r.id),
    )
    .await?;
    let after = find(&txn, r.id).await?;
    txn.commit().await?;
    Ok(after)
}

/// Hides (or shows again) a review, for the operator API: a hidden review is shown to nobody but its author and
/// stops counting in its subject's reputation, in the caller's transaction. `operator` and `reason` are
/// recorded on the review. Idempotent: hiding a hidden review changes nothing. 404 when there is no such review.
pub async fn set_hidden(
    txn: &impl ConnectionTrait,
    review_id: i64,
    hidden: bool,
    operator: &str,
    reason: Option<&str>,
) -> AppResult<review::Model> {
    // Write first: the conditional UPDATE decides whether anything changes (and locks the row).
    let res = review::Entity::update_many()
        .col_expr(review::Column::Hidden, Expr::value(hidden))
        .col_expr(
            review::Column::HiddenBy,
            Expr::value(Some(operator.chars().take(64).collect::<String>())),
        )
        .col_expr(
            review::Column::HiddenReason,
            Expr::value(reason.map(|r| r.trim().chars().take(200).collect::<String>())),
        )
        .col_expr(review::Column::UpdatedAt, Expr::value(util::now()))
        .filter(review::Column::Id.eq(review_id))
        .filter(review::Column::Hidden.eq(!hidden))
        .exec(txn)
        .await?;
    let r = find(txn, review_id).await?;
    if res.rows_affected == 1 && r.revealed_at.is_some() {
        let sign = if hidden { -1 } else { 1 };
        reputation::bump(txn, r.reviewee_id, Delta::rating(r.rating, sign)).await?;
    }
    Ok(r)
}

/// A page of the public reviews of `user_id` (revealed, not hidden), newest first; `role` keeps those written
/// by buyers (`buyer`: the student as a seller) or by sellers.
pub async fn list_public(
    db: &impl ConnectionTrait,
    user_id: i64,
    reviewer_role: Option<&str>,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<(Vec<review::Model>, Option<String>)> {
    let mut q = review::Entity::find()
        .filter(review::Column::RevieweeId.eq(user_id))
        .filter(review::Column::RevealedAt.is_not_null())
        .filter(review::Column::Hidden.eq(false));
    if let Some(role) = reviewer_role {
        q = q.filter(review::Column::ReviewerRole.eq(role));
    }
    page(db, q, "reviews", cursor, limit).await
}

/// A page of the caller's reviews, received (revealed, not hidden) or written (all), newest first.
pub async fn list_mine(
    db: &impl ConnectionTrait,
    user_id: i64,
    direction: Direction,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<(Vec<review::Model>, Option<String>)> {
    let q = match direction {
        Direction::Received => review::Entity::find()
            .filter(review::Column::RevieweeId.eq(user_id))
            .filter(review::Column::RevealedAt.is_not_null())
            .filter(review::Column::Hidden.eq(false)),
        Direction::Written => review::Entity::find().filter(review::Column::ReviewerId.eq(user_id)),
    };
    let tag = match direction {
        Direction::Received => "reviews_in",
        Direction::Written => "reviews_out",
    };
    page(db, q, tag, cursor, limit).await
}

async fn page(
    db: &impl ConnectionTrait,
    mut q: sea_orm::Select<review::Entity>,
    tag: &str,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<(Vec<review::Model>, Option<String>)> {
    let limit = limit.unwrap_or(20).clamp(1, PAGE_MAX);
    if let Some(c) = cursor {
        let (_, before) = util::decode_cursor(tag, c)?;
        q = q.filter(review::Column::Id.lt(before));
    }
    let mut rows = q
        .order_by_desc(review::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| util::encode_cursor(tag, "", r.id))
    } else {
        None
    };
    Ok((rows, next))
}

/// The reviews of one order (at most two).
pub async fn of_order(db: &impl ConnectionTrait, order_id: i64) -> AppResult<Vec<review::Model>> {
    Ok(review::Entity::find()
        .filter(review::Column::OrderId.eq(order_id))
        .order_by_asc(review::Column::Id)
        .all(db)
        .await?)
}

/// How many completed orders `user_id` can still review (window open, not reviewed yet).
pub async fn pending_count(db: &impl ConnectionTrait, user_id: i64) -> AppResult<u64> {
    #[derive(Debug, FromQueryResult)]
    struct N {
        n: i64,
    }
    let cutoff = util::now() - chrono::Duration::days(super::model::REVIEW_WINDOW_DAYS);
    let n = N::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM orders o WHERE (o.buyer_id = $1 OR o.seller_id = $1) \
         AND o.status IN ('completed', 'settled') AND o.completed_at >= $2 \
         AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.order_id = o.id AND r.reviewer_id = $1)",
        [user_id.into(), cutoff.into()],
    ))
    .one(db)
    .await?
    .map_or(0, |r| r.n);
    Ok(n.max(0) as u64)
}

/// The users (nickname, avatar, whether deleted) and order titles a page of reviews shows, in two queries.
pub async fn page_context(
    db: &impl ConnectionTrait,
    rows: &[review::Model],
) -> AppResult<(HashMap<i64, user::Model>, HashMap<i64, String>)> {
    let mut user_ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| [r.reviewer_id, r.reviewee_id])
        .collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let mut order_ids: Vec<i64> = rows.iter().map(|r| r.order_id).collect();
    order_ids.sort_unstable();
    order_ids.dedup();
    let users = if user_ids.is_empty() {
        HashMap::new()
    } else {
        user::Entity::find()
            .filter(user::Column::Id.is_in(user_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect()
    };
    let titles = if order_ids.is_empty() {
        HashMap::new()
    } else {
        order::Entity::find()
            .select_only()
            .column(order::Column::Id)
            .column(order::Column::Title)
            .filter(order::Column::Id.is_in(order_ids))
            .into_tuple::<(i64, String)>()
            .all(db)
            .await?
            .into_iter()
            .collect()
    };
    Ok((users, titles))
}
