//! Rules of posts, free of HTTP: publishing with content checks, the edit window, soft deletion, the stored hot
//! rank, keyset-paged feeds that leave out what the viewer blocked, wanted-post matching, and the hiding and
//! pinning that moderation uses. Comments live in [`super::comments`] and votes in [`super::votes`]; both are
//! re-exported here.
//!
//! Every state change is one conditional UPDATE (or an insert) inside a transaction whose first statement is a
//! write: on SQLite a transaction that reads first and writes later fails when another connection committed
//! in between, so look-ups happen before `begin()`.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
};

use super::model::{Status, board, comment, editable, hot, post, post_listing};
pub use super::{
    comments::{
        CommentCreated, CommentInput, CommentSort, Thread, comments_by_id, create_comment,
        delete_comment, list_comments, list_replies, visible_comment,
    },
    votes::{Tally, VoteTarget, my_votes, vote},
};
use crate::{
    error::{AppError, AppResult},
    images,
    listings::model::listing,
    moderation::{self, Scene, Verdict},
    state::AppState,
    users::{blocks::user_block, model::user},
    util,
};

pub const TITLE_MAX: usize = 80;
pub const BODY_MAX: usize = 5000;
pub const MAX_IMAGES: usize = 9;
pub const MAX_LISTINGS: usize = 5;
pub const PAGE_MAX: u64 = 50;
/// Posts a student may publish per hour.
pub const POSTS_PER_HOUR: u64 = 20;
const LABEL_MAX: usize = 40;

pub(super) fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Boards

/// The boards of a school that students see, in their order (hidden boards left out).
pub async fn boards(db: &impl ConnectionTrait, school_id: i64) -> AppResult<Vec<board::Model>> {
    Ok(board::Entity::find()
        .filter(board::Column::SchoolId.eq(school_id))
        .filter(board::Column::Hidden.eq(false))
        .order_by_asc(board::Column::Position)
        .order_by_asc(board::Column::Id)
        .all(db)
        .await?)
}

// ---------------------------------------------------------------------------------------------------------------
// Posts

/// Everything a post says, as the author typed it.
#[derive(Debug, Clone)]
pub struct PostInput {
    pub board_id: i64,
    pub title: String,
    pub body: String,
    pub image_ids: Vec<i64>,
    pub listing_ids: Vec<i64>,
    pub anonymous: bool,
    /// Only in the `wanted` board: a saved search that tells the author about matching new listings.
    pub wanted: Option<Wanted>,
}

/// A wanted post's saved search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// 1–20 characters that a listing's title or description must contain (case does not matter).
    pub keyword: String,
    /// Fen, 1 … 10,000,000: the most the author will pay.
    pub max_price: i64,
}

/// The board whose posts may carry a saved search.
pub const WANTED_BOARD: &str = "wanted";
/// How long a wanted post keeps matching new listings.
pub const WANTED_FOR: chrono::Duration = chrono::Duration::days(30);
/// Wanted posts told about one new listing at most.
pub const WANTED_NOTIFY_MAX: u64 = 100;

/// An edit of a post: `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct PostPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub image_ids: Option<Vec<i64>>,
    pub listing_ids: Option<Vec<i64>>,
}

/// Field checks that need no database; every problem is reported at once.
pub fn validate_post(
    title: &mut String,
    body: &mut String,
    images: &[i64],
    listings: &[i64],
) -> AppResult<()> {
    let mut problems = BTreeMap::new();
    *title = title.trim().to_string();
    *body = body.trim().to_string();
    if !(1..=TITLE_MAX).contains(&title.chars().count()) || title.chars().any(char::is_control) {
        problems.insert(
            "title".into(),
            format!("must be 1–{TITLE_MAX} characters on one line"),
        );
    }
    if body.chars().count() > BODY_MAX {
        problems.insert(
            "body".into(),
            format!("must be at most {BODY_MAX} characters"),
        );
    }
    if images.len() > MAX_IMAGES || images.iter().collect::<HashSet<_>>().len() != images.len() {
        problems.insert(
            "image_ids".into(),
            format!("at most {MAX_IMAGES} distinct uploaded images"),
        );
    }
    if listings.len() > MAX_LISTINGS
        || listings.iter().collect::<HashSet<_>>().len() != listings.len()
    {
        problems.insert(
            "listing_ids".into(),
            format!("at most {MAX_LISTINGS} distinct listings"),
        );
    }
    AppError::check_fields(problems)
}

/// The linked listings must exist and be visible to others (or be the author's own).
/// An anonymous post cannot link the author's own listings: the seller on the card would name them.
async fn check_listings(
    db: &DatabaseConnection,
    author_id: i64,
    anonymous: bool,
    ids: &[i64],
) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found: HashMap<i64, listing::Model> = listing::Entity::find()
        .filter(listing::Column::Id.is_in(ids.to_vec()))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    for id in ids {
        if anonymous && found.get(id).is_some_and(|l| l.seller_id == author_id) {
            return Err(AppError::invalid_field(
                "listing_ids",
                "an anonymous post cannot link your own listings (they would show who you are)",
            ));
        }
        let ok = found.get(id).is_some_and(|l| {
            l.status.visible_to_others()
                || (l.seller_id == author_id && l.status != listing::Status::Deleted)
        });
        if !ok {
            return Err(AppError::invalid_field(
                "listing_ids",
                format!("listing {id} cannot be linked"),
            ));
        }
    }
    Ok(())
}

/// What content security says; `risky` refuses the text (422 `content_rejected`), `review` holds it.
pub(super) async fn check_content(
    state: &AppState,
    author: &user::Model,
    scene: Scene,
    title: Option<&str>,
    text: &str,
) -> AppResult<Option<String>> {
    match moderation::service::check_text(state, &author.openid, scene, title, text).await? {
        Verdict::Pass => Ok(None),
        Verdict::Review { label } => Ok(Some(clip(&label, LABEL_MAX))),
        Verdict::Risky { label } => Err(AppError::Unprocessable {
            code: "content_rejected",
            message: format!(
                "the text was rejected by content security ({label}); please change it"
            ),
        }),
    }
}

fn post_text(title: &str, body: &str) -> String {
    if body.is_empty() {
        title.to_string()
    } else {
        format!("{title}\n{body}")
    }
}

async fn replace_listings(txn: &impl ConnectionTrait, post_id: i64, ids: &[i64]) -> AppResult<()> {
    post_listing::Entity::delete_many()
        .filter(post_listing::Column::PostId.eq(post_id))
        .exec(txn)
        .await?;
    if !ids.is_empty() {
        let rows = ids
            .iter()
            .enumerate()
            .map(|(i, l)| post_listing::ActiveModel {
                post_id: Set(post_id),
                listing_id: Set(*l),
                position: Set(i as i32),
            });
        post_listing::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// `POST /api/v1/posts`: in a board of the author's school; text checked as listings are (scene 3).
pub async fn create_post(
    state: &AppState,
    author: &user::Model,
    mut input: PostInput,
) -> AppResult<post::Model> {
    validate_post(
        &mut input.title,
        &mut input.body,
        &input.image_ids,
        &input.listing_ids,
    )?;
    let Some(school_id) = author.school_id else {
        return Err(AppError::conflict(
            "school_required",
            "choose your school in your profile before posting",
        ));
    };
    let b = board::Entity::find_by_id(input.board_id)
        .one(&state.db)
        .await?;
    let Some(b) = b.filter(|b| b.school_id == school_id) else {
        return Err(AppError::invalid_field(
            "board_id",
            "not a board of your school",
        ));
    };
    if b.hidden {
        return Err(AppError::invalid_field(
            "board_id",
            "this board is closed to new posts",
        ));
    }
    if let Some(w) = &mut input.wanted {
        w.keyword = w.keyword.trim().to_lowercase();
        if b.slug != WANTED_BOARD {
            return Err(AppError::invalid_field(
                "wanted",
                "only posts in the wanted board (求购) carry a saved search",
            ));
        }
        if !(1..=20).contains(&w.keyword.chars().count()) {
            return Err(AppError::invalid_field(
                "wanted.keyword",
                "must be 1–20 characters",
            ));
        }
        if !(1..=crate::listings::service::PRICE_MAX).contains(&w.max_price) {
            return Err(AppError::invalid_field(
                "wanted.max_price",
                "must be 1 to 10,000,000 fen",
            ));
        }
    }
    check_listings(&state.db, author.id, input.anonymous, &input.listing_ids).await?;
    crate::auth::service::rate_limit(
        &state.kv,
        &format!("rl:posts:{}", author.id),
        POSTS_PER_HOUR,
        std::time::Duration::from_secs(3600),
        "new posts",
    )
    .await?;
    let label = check_content(
        state,
        author,
        Scene::Forum,
        Some(&input.title),
        &post_text(&input.title, &input.body),
    )
    .await?;
    let now = util::now();
    let author_id = author.id;
    let txn = state.db.begin().await?;
    let row = post::ActiveModel {
        school_id: Set(school_id),
        board_id: Set(input.board_id),
        author_id: Set(author_id),
        title: Set(input.title),
        body: Set(input.body),
        anonymous: Set(input.anonymous),
        status: Set(if label.is_some() {
            Status::PendingReview
        } else {
            Status::Published
        }),
        moderation_label: Set(label),
        pinned: Set(false),
        locked: Set(false),
        score: Set(0),
        upvotes: Set(0),
        downvotes: Set(0),
        comment_count: Set(0),
        hot: Set(hot(0, now)),
        wanted_keyword: Set(input.wanted.as_ref().map(|w| w.keyword.clone())),
        price_ceiling: Set(input.wanted.as_ref().map(|w| w.max_price)),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    images::service::attach(&txn, author_id, &input.image_ids, "post", row.id).await?;
    replace_listings(&txn, row.id, &input.listing_ids).await?;
    txn.commit().await?;
    let imgs = images::service::for_targets(&state.db, "post", &[row.id])
        .await?
        .remove(&row.id)
        .unwrap_or_default();
    crate::moderation::service::check_images_later(state, &author.openid, "post", row.id, imgs);
    tracing::info!(post_id = row.id, status = ?row.status, "post published");
    Ok(row)
}

/// The post as `viewer` may open it: published and deleted posts (the latter as a placeholder) for everyone,
/// held, hidden and removed ones for their author only.
pub async fn visible_post(
    db: &impl ConnectionTrait,
    id: i64,
    viewer: Option<i64>,
) -> AppResult<post::Model> {
    match post::Entity::find_by_id(id).one(db).await? {
        Some(p)
            if matches!(p.status, Status::Published | Status::Deleted)
                || Some(p.author_id) == viewer =>
        {
            Ok(p)
        }
        _ => Err(AppError::not_found("post")),
    }
}

pub(super) fn refused(current: Status, what: &str) -> AppError {
    AppError::InvalidTransition {
        current: status_str(current),
        message: format!("cannot {what} a post that is {}", status_str(current)),
    }
}

pub fn status_str(s: Status) -> &'static str {
    match s {
        Status::Published => "published",
        Status::PendingReview => "pending_review",
        Status::Hidden => "hidden",
        Status::Removed => "removed",
        Status::Deleted => "deleted",
    }
}

/// `PATCH /api/v1/posts/{id}`: the author, within 24 hours and until the first comment. Changed text is checked
/// again; a `review` verdict holds the post.
pub async fn update_post(
    state: &AppState,
    author: &user::Model,
    id: i64,
    patch: PostPatch,
) -> AppResult<post::Model> {
    let current = visible_post(&state.db, id, Some(author.id)).await?;
    if current.author_id != author.id {
        return Err(AppError::forbidden(
            "not_post_author",
            "only the author can edit this post",
        ));
    }
    if !matches!(current.status, Status::Published | Status::PendingReview) {
        return Err(refused(current.status, "edit"));
    }
    let now = util::now();
    if !editable(current.created_at, current.comment_count, now) {
        return Err(AppError::conflict(
            "edit_window_closed",
            "a post can be edited within 24 hours and only until someone comments",
        ));
    }
    let text_changed = patch.title.is_some() || patch.body.is_some();
    let mut title = patch.title.unwrap_or_else(|| current.title.clone());
    let mut body = patch.body.unwrap_or_else(|| current.body.clone());
    let image_ids = patch.image_ids.clone().unwrap_or_default();
    let listing_ids = patch.listing_ids.clone().unwrap_or_default();
    validate_post(&mut title, &mut body, &image_ids, &listing_ids)?;
    check_listings(&state.db, author.id, current.anonymous, &listing_ids).await?;
    let label = if text_changed {
        check_content(
            state,
            author,
            Scene::Forum,
            Some(&title),
            &post_text(&title, &body),
        )
        .await?
    } else {
        None
    };
    let old_images: Vec<i64> = images::service::for_targets(&state.db, "post", &[id])
        .await?
        .remove(&id)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.id)
        .collect();
    let txn = state.db.begin().await?;
    let mut q = post::Entity::update_many()
        .col_expr(post::Column::Title, Expr::value(title))
        .col_expr(post::Column::Body, Expr::value(body))
        .col_expr(post::Column::UpdatedAt, Expr::value(now));
    if let Some(l) = &label {
        q = q
            .col_expr(post::Column::Status, Expr::value(Status::PendingReview))
            .col_expr(post::Column::ModerationLabel, Expr::value(l.clone()));
    }
    // The window is re-checked by the UPDATE itself: a comment committed meanwhile closes it.
    let res = q
        .filter(post::Column::Id.eq(id))
        .filter(post::Column::AuthorId.eq(author.id))
        .filter(post::Column::Status.is_in([Status::Published, Status::PendingReview]))
        .filter(post::Column::CommentCount.eq(0))
        .filter(post::Column::CreatedAt.gt(now - super::model::EDIT_WINDOW))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        txn.rollback().await?;
        return Err(AppError::conflict(
            "edit_window_closed",
            "a post can be edited within 24 hours and only until someone comments",
        ));
    }
    if let Some(ids) = &patch.image_ids {
        images::service::attach(&txn, author.id, ids, "post", id).await?;
    }
    if let Some(ids) = &patch.listing_ids {
        replace_listings(&txn, id, ids).await?;
    }
    txn.commit().await?;
    if let Some(ids) = patch.image_ids {
        let imgs = images::service::for_targets(&state.db, "post", &[id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        crate::moderation::service::check_images_later(
            state,
            &author.openid,
            "post",
            id,
            imgs.into_iter()
                .filter(|i| ids.contains(&i.id) && !old_images.contains(&i.id))
                .collect(),
        );
    }
    visible_post(&state.db, id, Some(author.id)).await
}

/// `DELETE /api/v1/posts/{id}`: a soft delete by the author; the thread stays readable with a placeholder.
pub async fn delete_post(db: &DatabaseConnection, author_id: i64, id: i64) -> AppResult<()> {
    let txn = db.begin().await?;
    let now = util::now();
    let res = post::Entity::update_many()
        .col_expr(post::Column::Status, Expr::value(Status::Deleted))
        .col_expr(post::Column::DeletedAt, Expr::value(now))
        .col_expr(post::Column::UpdatedAt, Expr::value(now))
        .col_expr(post::Column::Pinned, Expr::value(false))
        .filter(post::Column::Id.eq(id))
        .filter(post::Column::AuthorId.eq(author_id))
        // Hidden or removed content stays an operator's: deleting it would make the thread public again.
        .filter(post::Column::Status.is_in([Status::Published, Status::PendingReview]))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        txn.rollback().await?;
        let p = visible_post(db, id, Some(author_id)).await?;
        if p.author_id != author_id {
            return Err(AppError::forbidden(
                "not_post_author",
                "only the author can delete this post",
            ));
        }
        return Err(refused(p.status, "delete"));
    }
    images::service::detach_all(&txn, "post", id).await?;
    txn.commit().await?;
    Ok(())
}

/// Pins or unpins a post (an operator action). Deleted posts cannot be pinned.
pub async fn set_pinned(db: &impl ConnectionTrait, id: i64, pinned: bool) -> AppResult<()> {
    let res = post::Entity::update_many()
        .col_expr(post::Column::Pinned, Expr::value(pinned))
        .filter(post::Column::Id.eq(id))
        .filter(post::Column::Status.ne(Status::Deleted))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::not_found("post"));
    }
    Ok(())
}

/// Locks or unlocks a post's comments (an operator action).
pub async fn set_locked(db: &impl ConnectionTrait, id: i64, locked: bool) -> AppResult<()> {
    let res = post::Entity::update_many()
        .col_expr(post::Column::Locked, Expr::value(locked))
        .filter(post::Column::Id.eq(id))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::not_found("post"));
    }
    Ok(())
}

/// Recomputes the stored hot rank of a post from its score and creation time.
pub async fn refresh_hot(db: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    if let Some(p) = post::Entity::find_by_id(id).one(db).await? {
        post::Entity::update_many()
            .col_expr(post::Column::Hot, Expr::value(hot(p.score, p.created_at)))
            .filter(post::Column::Id.eq(id))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// What moderation may do to a post or a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    /// Hide it until an operator decides, saying why (`reported`, or the label of a flagged image).
    Hide(&'static str),
    /// Bring back one that was hidden for this reason only (dismissed reports never undo a flagged image).
    Restore(&'static str),
    /// An operator publishes what content security held or what was hidden, whatever the reason.
    Approve,
    /// Take it down for good.
    Remove,
}

/// Applies a moderation decision to a post or a comment (`target_type` is `post` or `comment`). Idempotent.
pub async fn moderate(
    db: &DatabaseConnection,
    target_type: &str,
    id: i64,
    m: Moderation,
) -> AppResult<()> {
    moderate_in(db, target_type, id, m).await.map(|_| ())
}

/// [`moderate`] in the caller's transaction: one conditional UPDATE. Returns whether the status changed.
pub async fn moderate_in(
    db: &impl ConnectionTrait,
    target_type: &str,
    id: i64,
    m: Moderation,
) -> AppResult<bool> {
    let (from, to): (&[Status], Status) = match m {
        Moderation::Hide(_) => (&[Status::Published], Status::Hidden),
        Moderation::Restore(_) => (&[Status::Hidden], Status::Published),
        Moderation::Approve => (&[Status::Hidden, Status::PendingReview], Status::Published),
        Moderation::Remove => (
            &[Status::Published, Status::Hidden, Status::PendingReview],
            Status::Removed,
        ),
    };
    let label: Option<Option<String>> = match m {
        Moderation::Hide(reason) => Some(Some(reason.to_string())),
        Moderation::Restore(_) | Moderation::Approve => Some(None),
        Moderation::Remove => None,
    };
    let only_reason = match m {
        Moderation::Restore(reason) => Some(reason),
        _ => None,
    };
    let now = util::now();
    let changed = match target_type {
        "post" => {
            let mut q = post::Entity::update_many()
                .col_expr(post::Column::Status, Expr::value(to))
                .col_expr(post::Column::UpdatedAt, Expr::value(now))
                .filter(post::Column::Id.eq(id))
                .filter(post::Column::Status.is_in(from.iter().copied()));
            if let Some(l) = label {
                q = q.col_expr(post::Column::ModerationLabel, Expr::value(l));
            }
            if to == Status::Removed {
                q = q.col_expr(post::Column::Pinned, Expr::value(false));
            }
            if let Some(reason) = only_reason {
                q = q.filter(post::Column::ModerationLabel.eq(reason));
            }
            q.exec(db).await?.rows_affected
        }
        "comment" => {
            let mut q = comment::Entity::update_many()
                .col_expr(comment::Column::Status, Expr::value(to))
                .col_expr(comment::Column::UpdatedAt, Expr::value(now))
                .filter(comment::Column::Id.eq(id))
                .filter(comment::Column::Status.is_in(from.iter().copied()));
            if let Some(l) = label {
                q = q.col_expr(comment::Column::ModerationLabel, Expr::value(l));
            }
            if let Some(reason) = only_reason {
                q = q.filter(comment::Column::ModerationLabel.eq(reason));
            }
            q.exec(db).await?.rows_affected
        }
        _ => 0,
    };
    Ok(changed == 1)
}

/// The status of a post or comment now, for an operator's error message; 404 when there is none.
pub async fn content_status(
    db: &impl ConnectionTrait,
    target_type: &str,
    id: i64,
) -> AppResult<Status> {
    let status = match target_type {
        "post" => post::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|p| p.status),
        "comment" => comment::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|c| c.status),
        _ => None,
    };
    status.ok_or_else(|| AppError::not_found(target_type))
}

/// An operator takes a post or comment down (from published, held or hidden), and the author is told why in
/// their inbox, in the same transaction. 409 `invalid_transition` when it is already removed or deleted.
pub async fn remove_by_operator_in(
    txn: &impl ConnectionTrait,
    target_type: &str,
    id: i64,
    reason: &str,
) -> AppResult<()> {
    if !moderate_in(txn, target_type, id, Moderation::Remove).await? {
        let current = content_status(txn, target_type, id).await?;
        return Err(refused(current, "remove"));
    }
    let (author, what) = match target_type {
        "post" => {
            let p = post::Entity::find_by_id(id)
                .one(txn)
                .await?
                .ok_or_else(|| AppError::not_found("post"))?;
            (p.author_id, format!("帖子「{}」", clip(&p.title, 30)))
        }
        _ => {
            let c = comment::Entity::find_by_id(id)
                .one(txn)
                .await?
                .ok_or_else(|| AppError::not_found("comment"))?;
            (c.author_id, format!("评论「{}」", clip(&c.body, 30)))
        }
    };
    crate::notifications::service::notify(
        txn,
        author,
        &format!("{target_type}_removed"),
        "内容已被删除",
        &format!("你的{what}因违反社区规范被管理员删除。原因：{reason}"),
        Some(target_type),
        Some(id),
    )
    .await
}

/// Tells the authors of wanted posts about a listing just put on sale, in the listing's transaction: published
/// wanted posts of its school, under 30 days old, whose price ceiling it meets and whose keyword its title or
/// description contains. The seller is never told about their own listing.
pub async fn notify_wanted(txn: &impl ConnectionTrait, l: &listing::Model) -> AppResult<usize> {
    let candidates = post::Entity::find()
        .filter(post::Column::SchoolId.eq(l.school_id))
        .filter(post::Column::PriceCeiling.gte(l.price))
        .filter(post::Column::Status.eq(Status::Published))
        .filter(post::Column::AuthorId.ne(l.seller_id))
        .filter(post::Column::CreatedAt.gte(util::now() - WANTED_FOR))
        .filter(post::Column::WantedKeyword.is_not_null())
        .order_by_desc(post::Column::Id)
        .all(txn)
        .await?;
    let text = format!("{}\n{}", l.title, l.description).to_lowercase();
    let mut told = HashSet::new();
    for p in candidates {
        let Some(k) = &p.wanted_keyword else { continue };
        if told.len() >= WANTED_NOTIFY_MAX as usize {
            break;
        }
        if !text.contains(k.as_str()) || !told.insert(p.author_id) {
            continue;
        }
        crate::notifications::service::notify(
            txn,
            p.author_id,
            "wanted_match",
            &format!("你求购的「{}」有新商品", clip(k, 20)),
            &format!("{}，¥{:.2}", clip(&l.title, 60), l.price as f64 / 100.0),
            Some("listing"),
            Some(l.id),
        )
        .await?;
    }
    Ok(told.len())
}

// ---------------------------------------------------------------------------------------------------------------
// Feeds

/// Feed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, poem_openapi::Enum)]
#[oai(rename = "PostSort", rename_all = "snake_case")]
pub enum Sort {
    /// Time-decayed score (see `docs/forum.md`).
    #[default]
    Hot,
    /// Newest first.
    New,
    /// Highest score first, within `period`.
    Top,
}

/// The window of the `top` sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, poem_openapi::Enum)]
#[oai(rename = "TopPeriod", rename_all = "snake_case")]
pub enum Period {
    Day,
    #[default]
    Week,
    Month,
    All,
}

impl Period {
    fn duration(self) -> Option<chrono::Duration> {
        match self {
            Period::Day => Some(chrono::Duration::days(1)),
            Period::Week => Some(chrono::Duration::days(7)),
            Period::Month => Some(chrono::Duration::days(30)),
            Period::All => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PostQuery {
    pub school_id: Option<i64>,
    pub board_id: Option<i64>,
    pub sort: Sort,
    pub period: Period,
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

/// A page of results and the cursor of the next page (`None` at the end).
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A keyset position: the sort key (as an integer; a hot rank as its bits) and the id.
pub(super) fn encode_cursor(tag: &str, key: i64, id: i64) -> String {
    util::encode_cursor(tag, &key.to_string(), id)
}

pub(super) fn decode_cursor(tag: &str, cursor: &str) -> AppResult<(i64, i64)> {
    let (key, id) = util::decode_cursor(tag, cursor)?;
    Ok((key.parse().map_err(|_| util::invalid_cursor())?, id))
}

fn sort_tag(s: Sort) -> &'static str {
    match s {
        Sort::Hot => "ph",
        Sort::New => "pn",
        Sort::Top => "pt",
    }
}

/// Leaves out what `viewer` blocked. Anonymous content stays: hiding it would tell the blocker who wrote it.
pub(super) fn not_blocked(
    author_col: impl ColumnTrait,
    anon_col: impl ColumnTrait,
    viewer: i64,
) -> Condition {
    Condition::any().add(anon_col.eq(true)).add(
        author_col.not_in_subquery(
            Query::select()
                .column(user_block::Column::BlockedId)
                .from(user_block::Entity)
                .and_where(user_block::Column::BlockerId.eq(viewer))
                .to_owned(),
        ),
    )
}

/// Descending keyset condition `(key, id) < (k, id)`.
pub(super) fn before(
    key: impl ColumnTrait,
    k: sea_orm::Value,
    id_col: impl ColumnTrait,
    id: i64,
) -> Condition {
    Condition::any().add(Expr::col(key).lt(k.clone())).add(
        Condition::all()
            .add(Expr::col(key).eq(k))
            .add(id_col.lt(id)),
    )
}

/// `GET /api/v1/posts`: published posts of a school or board, sorted and keyset-paged; pinned posts first on
/// the first page. Blocked authors' posts are left out in SQL, so pages stay full and stable.
pub async fn list_posts(
    db: &DatabaseConnection,
    q: PostQuery,
    viewer: Option<i64>,
) -> AppResult<Page<post::Model>> {
    let limit = q.limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let mut base = post::Entity::find().filter(post::Column::Status.eq(Status::Published));
    if let Some(s) = q.school_id {
        base = base.filter(post::Column::SchoolId.eq(s));
    }
    if let Some(b) = q.board_id {
        base = base.filter(post::Column::BoardId.eq(b));
    }
    if let Some(v) = viewer {
        base = base.filter(not_blocked(
            post::Column::AuthorId,
            post::Column::Anonymous,
            v,
        ));
    }
    if q.sort == Sort::Top
        && let Some(d) = q.period.duration()
    {
        base = base.filter(post::Column::CreatedAt.gte(util::now() - d));
    }
    let mut pinned = Vec::new();
    if q.cursor.is_none() {
        pinned = base
            .clone()
            .filter(post::Column::Pinned.eq(true))
            .order_by_desc(post::Column::CreatedAt)
            .order_by_desc(post::Column::Id)
            .limit(PAGE_MAX)
            .all(db)
            .await?;
    }
    let mut select = base.filter(post::Column::Pinned.eq(false));
    let tag = sort_tag(q.sort);
    if let Some(c) = &q.cursor {
        let (k, id) = decode_cursor(tag, c)?;
        let cond = match q.sort {
            Sort::Hot => before(
                post::Column::Hot,
                f64::from_bits(k as u64).into(),
                post::Column::Id,
                id,
            ),
            Sort::New => {
                let at = DateTime::<Utc>::from_timestamp_micros(k)
                    .ok_or_else(|| AppError::bad_request("invalid_cursor", "bad cursor"))?;
                before(post::Column::CreatedAt, at.into(), post::Column::Id, id)
            }
            Sort::Top => before(post::Column::Score, k.into(), post::Column::Id, id),
        };
        select = select.filter(cond);
    }
    let key = match q.sort {
        Sort::Hot => post::Column::Hot,
        Sort::New => post::Column::CreatedAt,
        Sort::Top => post::Column::Score,
    };
    let mut rows = select
        .order_by_desc(key)
        .order_by_desc(post::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|p| {
            let k = match q.sort {
                Sort::Hot => p.hot.to_bits() as i64,
                Sort::New => p.created_at.timestamp_micros(),
                Sort::Top => p.score,
            };
            encode_cursor(tag, k, p.id)
        })
    } else {
        None
    };
    pinned.extend(rows);
    Ok(Page {
        items: pinned,
        next_cursor,
    })
}

/// The listings each post links to, in order (ids only).
pub async fn linked_listings(
    db: &impl ConnectionTrait,
    post_ids: &[i64],
) -> AppResult<HashMap<i64, Vec<i64>>> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    if post_ids.is_empty() {
        return Ok(out);
    }
    for row in post_listing::Entity::find()
        .filter(post_listing::Column::PostId.is_in(post_ids.to_vec()))
        .order_by_asc(post_listing::Column::PostId)
        .order_by_asc(post_listing::Column::Position)
        .all(db)
        .await?
    {
        out.entry(row.post_id).or_default().push(row.listing_id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_validation_reports_every_problem() {
        let (mut t, mut b) = ("  求一个台灯 ".to_string(), String::new());
        validate_post(&mut t, &mut b, &[1, 2], &[3]).unwrap();
        assert_eq!(t, "求一个台灯");
        let (mut t, mut b) = ("x".repeat(81), "y".repeat(5001));
        let Err(AppError::Validation(f)) =
            validate_post(&mut t, &mut b, &(0..10).collect::<Vec<_>>(), &[1, 1])
        else {
            panic!("expected a validation error")
        };
        for field in ["title", "body", "image_ids", "listing_ids"] {
            assert!(f.contains_key(field), "{field} missing: {f:?}");
        }
    }

    #[test]
    fn cursors_belong_to_their_sort() {
        let c = encode_cursor("ph", 42, 7);
        assert_eq!(decode_cursor("ph", &c).unwrap(), (42, 7));
        assert!(decode_cursor("pn", &c).is_err());
        assert!(decode_cursor("ph", "garbage!").is_err());
    }
}
