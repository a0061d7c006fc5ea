//! Comments: one level of replies (a reply to a reply hangs under the top-level comment and names whom it
//! answers), soft deletion, keyset-paged threads without blocked authors, and the inbox notifications of a new
//! comment.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};

use super::{
    model::{Status, comment, post},
    service::{
        PAGE_MAX, Page, before, check_content, clip, decode_cursor, encode_cursor, not_blocked,
        refused, visible_post,
    },
};
use crate::{
    error::{AppError, AppResult},
    moderation::Scene,
    state::AppState,
    users::model::user,
    util,
};

pub const COMMENT_MAX: usize = 1000;
/// Replies shown under each top-level comment of a page (the oldest first).
pub const REPLIES_SHOWN: usize = 20;
/// Comments a student may write per hour.
pub const COMMENTS_PER_HOUR: u64 = 120;

/// The comment as `viewer` may see it (deleted and held ones appear as placeholders in threads, but only
/// published ones, or the viewer's own, are found by id).
pub async fn visible_comment(
    db: &impl ConnectionTrait,
    id: i64,
    viewer: Option<i64>,
) -> AppResult<comment::Model> {
    let c = comment::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("comment"))?;
    let post_ok = post::Entity::find_by_id(c.post_id)
        .one(db)
        .await?
        .is_some_and(|p| p.status == Status::Published || Some(p.author_id) == viewer);
    if post_ok
        && (c.status == Status::Published
            || (Some(c.author_id) == viewer && c.status != Status::Deleted))
    {
        Ok(c)
    } else {
        Err(AppError::not_found("comment"))
    }
}

/// A new comment.
#[derive(Debug, Clone)]
pub struct CommentInput {
    pub body: String,
    /// The comment answered; a reply to a reply hangs under the top-level comment and names whom it answers.
    pub parent_id: Option<i64>,
    pub anonymous: bool,
}

/// Who should hear about a new comment: the post's author and the author of the comment answered.
pub struct CommentCreated {
    pub comment: comment::Model,
    pub post: post::Model,
    pub answered: Option<comment::Model>,
}

/// `POST /api/v1/posts/{id}/comments`. Locked posts take none. The author of an anonymous post stays anonymous in
/// its thread.
pub async fn create_comment(
    state: &AppState,
    author: &user::Model,
    post_id: i64,
    mut input: CommentInput,
) -> AppResult<CommentCreated> {
    input.body = input.body.trim().to_string();
    if !(1..=COMMENT_MAX).contains(&input.body.chars().count()) {
        return Err(AppError::invalid_field(
            "body",
            format!("must be 1–{COMMENT_MAX} characters"),
        ));
    }
    let p = visible_post(&state.db, post_id, Some(author.id)).await?;
    if p.status != Status::Published {
        return Err(refused(p.status, "comment on"));
    }
    if p.locked {
        return Err(AppError::conflict(
            "post_locked",
            "this post is locked and takes no new comments",
        ));
    }
    let answered = match input.parent_id {
        Some(pid) => {
            let c = visible_comment(&state.db, pid, Some(author.id))
                .await
                .map_err(|_| AppError::invalid_field("parent_id", "no such comment"))?;
            if c.post_id != post_id || c.status == Status::Deleted {
                return Err(AppError::invalid_field(
                    "parent_id",
                    "no such comment on this post",
                ));
            }
            Some(c)
        }
        None => None,
    };
    crate::auth::service::rate_limit(
        &state.kv,
        &format!("rl:comments:{}", author.id),
        COMMENTS_PER_HOUR,
        std::time::Duration::from_secs(3600),
        "comments",
    )
    .await?;
    let label = check_content(state, author, Scene::Comment, None, &input.body).await?;
    let anonymous = input.anonymous || (p.anonymous && p.author_id == author.id);
    let top = answered.as_ref().map(|c| c.parent_id.unwrap_or(c.id));
    let now = util::now();
    let txn = state.db.begin().await?;
    // Write first, and conditional: the post must still be published and unlocked.
    let res = post::Entity::update_many()
        .col_expr(
            post::Column::CommentCount,
            Expr::col(post::Column::CommentCount).add(1),
        )
        .filter(post::Column::Id.eq(post_id))
        .filter(post::Column::Status.eq(Status::Published))
        .filter(post::Column::Locked.eq(false))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        txn.rollback().await?;
        return Err(AppError::conflict(
            "post_locked",
            "this post no longer takes comments",
        ));
    }
    if let Some(top) = top {
        comment::Entity::update_many()
            .col_expr(
                comment::Column::ReplyCount,
                Expr::col(comment::Column::ReplyCount).add(1),
            )
            .filter(comment::Column::Id.eq(top))
            .exec(&txn)
            .await?;
    }
    let row = comment::ActiveModel {
        post_id: Set(post_id),
        author_id: Set(author.id),
        parent_id: Set(top),
        reply_to_id: Set(answered.as_ref().map(|c| c.id)),
        anonymous: Set(anonymous),
        body: Set(input.body),
        status: Set(if label.is_some() {
            Status::PendingReview
        } else {
            Status::Published
        }),
        moderation_label: Set(label),
        score: Set(0),
        upvotes: Set(0),
        downvotes: Set(0),
        reply_count: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    notify_thread(&txn, &row, &p, answered.as_ref()).await?;
    txn.commit().await?;
    Ok(CommentCreated {
        comment: row,
        post: p,
        answered,
    })
}

/// The inbox notifications of a new comment, in its transaction: the author of the comment answered hears of
/// the reply, the post's author of the comment (once, if they are the same person); nobody hears of their own
/// comment. The notifications quote the comment and name nobody, so an anonymous commenter stays anonymous.
async fn notify_thread(
    txn: &impl ConnectionTrait,
    c: &comment::Model,
    p: &post::Model,
    answered: Option<&comment::Model>,
) -> AppResult<()> {
    use crate::notifications::service::notify;
    if c.status != Status::Published {
        return Ok(());
    }
    let excerpt = clip(&c.body, 100);
    let mut told = c.author_id;
    if let Some(a) = answered
        && a.author_id != c.author_id
    {
        notify(
            txn,
            a.author_id,
            "comment_reply",
            "有人回复了你的评论",
            &excerpt,
            Some("post"),
            Some(p.id),
        )
        .await?;
        told = a.author_id;
    }
    if p.author_id != c.author_id && p.author_id != told {
        notify(
            txn,
            p.author_id,
            "post_comment",
            &format!("你的帖子「{}」有新评论", clip(&p.title, 30)),
            &excerpt,
            Some("post"),
            Some(p.id),
        )
        .await?;
    }
    Ok(())
}

/// `DELETE /api/v1/comments/{id}`: the author's soft delete; replies under it stay.
pub async fn delete_comment(db: &DatabaseConnection, author_id: i64, id: i64) -> AppResult<()> {
    let txn = db.begin().await?;
    let res = comment::Entity::update_many()
        .col_expr(comment::Column::Status, Expr::value(Status::Deleted))
        .col_expr(comment::Column::UpdatedAt, Expr::value(util::now()))
        .filter(comment::Column::Id.eq(id))
        .filter(comment::Column::AuthorId.eq(author_id))
        // Hidden or removed comments stay an operator's to decide.
        .filter(comment::Column::Status.is_in([Status::Published, Status::PendingReview]))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    if res.rows_affected != 1 {
        let c = visible_comment(db, id, Some(author_id)).await?;
        if c.author_id != author_id {
            return Err(AppError::forbidden(
                "not_comment_author",
                "only the author can delete this comment",
            ));
        }
        return Err(refused(c.status, "delete"));
    }
    Ok(())
}

/// Comment order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum CommentSort {
    /// Highest score first.
    #[default]
    Top,
    /// Newest first.
    New,
}

/// A top-level comment and the first replies under it.
pub struct Thread {
    pub comment: comment::Model,
    pub replies: Vec<comment::Model>,
}

/// `GET /api/v1/posts/{id}/comments`: top-level comments, keyset-paged, each with its first replies (oldest
/// first). Comments of blocked authors are left out in SQL.
pub async fn list_comments(
    db: &DatabaseConnection,
    post_id: i64,
    viewer: Option<i64>,
    sort: CommentSort,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<Page<Thread>> {
    visible_post(db, post_id, viewer).await?;
    let limit = limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let tag = match sort {
        CommentSort::Top => "ct",
        CommentSort::New => "cn",
    };
    let mut select = comment::Entity::find()
        .filter(comment::Column::PostId.eq(post_id))
        .filter(comment::Column::ParentId.is_null());
    if let Some(v) = viewer {
        select = select.filter(not_blocked(
            comment::Column::AuthorId,
            comment::Column::Anonymous,
            v,
        ));
    }
    if let Some(c) = cursor {
        let (k, id) = decode_cursor(tag, c)?;
        select = select.filter(match sort {
            CommentSort::Top => before(comment::Column::Score, k.into(), comment::Column::Id, id),
            CommentSort::New => before(comment::Column::Id, k.into(), comment::Column::Id, id),
        });
    }
    let key = match sort {
        CommentSort::Top => comment::Column::Score,
        CommentSort::New => comment::Column::Id,
    };
    let mut rows = select
        .order_by_desc(key)
        .order_by_desc(comment::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|c| {
            let k = match sort {
                CommentSort::Top => c.score,
                CommentSort::New => c.id,
            };
            encode_cursor(tag, k, c.id)
        })
    } else {
        None
    };
    let parents: Vec<i64> = rows.iter().map(|c| c.id).collect();
    let mut replies: HashMap<i64, Vec<comment::Model>> = HashMap::new();
    if !parents.is_empty() {
        let mut q = comment::Entity::find().filter(comment::Column::ParentId.is_in(parents));
        if let Some(v) = viewer {
            q = q.filter(not_blocked(
                comment::Column::AuthorId,
                comment::Column::Anonymous,
                v,
            ));
        }
        for r in q.order_by_asc(comment::Column::Id).all(db).await? {
            let list = replies.entry(r.parent_id.unwrap_or_default()).or_default();
            if list.len() < REPLIES_SHOWN {
                list.push(r);
            }
        }
    }
    let items = rows
        .into_iter()
        .map(|c| Thread {
            replies: replies.remove(&c.id).unwrap_or_default(),
            comment: c,
        })
        .collect();
    Ok(Page { items, next_cursor })
}

/// `GET /api/v1/comments/{id}/replies`: every reply under a top-level comment, oldest first, keyset-paged (the
/// comment list shows only the first [`REPLIES_SHOWN`]; `reply_count` tells the client there are more).
pub async fn list_replies(
    db: &DatabaseConnection,
    comment_id: i64,
    viewer: Option<i64>,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<(comment::Model, Page<comment::Model>)> {
    let mut top = visible_comment(db, comment_id, viewer).await?;
    if let Some(parent) = top.parent_id {
        top = visible_comment(db, parent, viewer).await?;
    }
    let limit = limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let mut q = comment::Entity::find().filter(comment::Column::ParentId.eq(top.id));
    if let Some(v) = viewer {
        q = q.filter(not_blocked(
            comment::Column::AuthorId,
            comment::Column::Anonymous,
            v,
        ));
    }
    if let Some(c) = cursor {
        let (_, after) = decode_cursor("cr", c)?;
        q = q.filter(comment::Column::Id.gt(after));
    }
    let mut rows = q
        .order_by_asc(comment::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|c| encode_cursor("cr", c.id, c.id))
    } else {
        None
    };
    Ok((
        top,
        Page {
            items: rows,
            next_cursor,
        },
    ))
}

/// Comments by id (for naming whom a reply answers).
pub async fn comments_by_id(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> AppResult<HashMap<i64, comment::Model>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(comment::Entity::find()
        .filter(comment::Column::Id.is_in(ids.to_vec()))
        .all(db)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect())
}
