//! Writing and reading the inbox.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};

use super::model::notification;
use crate::{
    error::{AppError, AppResult},
    util,
};

pub const TITLE_MAX: usize = 100;
pub const BODY_MAX: usize = 500;
pub const PAGE_MAX: u64 = 50;

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Puts a notification in `user_id`'s inbox, in the caller's transaction (so it exists exactly when the change
/// it reports is committed). Title and body are cut to 100 and 500 characters.
pub async fn notify(
    txn: &impl ConnectionTrait,
    user_id: i64,
    kind: &str,
    title: &str,
    body: &str,
    target_type: Option<&str>,
    target_id: Option<i64>,
) -> AppResult<()> {
    notification::Entity::insert(notification::ActiveModel {
        user_id: Set(user_id),
        kind: Set(clip(kind, 32)),
        title: Set(clip(title, TITLE_MAX)),
        body: Set(clip(body, BODY_MAX)),
        target_type: Set(target_type.map(|t| clip(t, 16))),
        target_id: Set(target_id),
        read_at: Set(None),
        created_at: Set(util::now()),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// A page of the inbox, newest first, and the cursor of the next page.
pub async fn list(
    db: &DatabaseConnection,
    user_id: i64,
    cursor: Option<&str>,
    limit: Option<u64>,
    unread_only: bool,
) -> AppResult<(Vec<notification::Model>, Option<String>)> {
    let limit = limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let mut q = notification::Entity::find().filter(notification::Column::UserId.eq(user_id));
    if let Some(c) = cursor {
        let before: i64 = c.parse().map_err(|_| {
            AppError::bad_request(
                "invalid_cursor",
                "the cursor is not valid; start from the first page",
            )
        })?;
        q = q.filter(notification::Column::Id.lt(before));
    }
    if unread_only {
        q = q.filter(notification::Column::ReadAt.is_null());
    }
    let mut rows = q
        .order_by_desc(notification::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|n| n.id.to_string())
    } else {
        None
    };
    Ok((rows, next))
}

/// How many notifications the user has not read (the badge on the "me" tab).
pub async fn unread_count(db: &DatabaseConnection, user_id: i64) -> AppResult<u64> {
    Ok(notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .count(db)
        .await?)
}

/// Marks one of the user's notifications read (idempotent); someone else's is 404.
pub async fn mark_read(db: &DatabaseConnection, user_id: i64, id: i64) -> AppResult<()> {
    notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(util::now()))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .exec(db)
        .await?;
    let mine = notification::Entity::find_by_id(id)
        .one(db)
        .await?
        .is_some_and(|n| n.user_id == user_id);
    if mine {
        Ok(())
    } else {
        Err(AppError::not_found("notification"))
    }
}

/// Marks every unread notification of the user read; returns how many.
pub async fn mark_all_read(db: &DatabaseConnection, user_id: i64) -> AppResult<u64> {
    let res = notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(util::now()))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
