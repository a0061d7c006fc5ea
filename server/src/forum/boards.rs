//! Operators' changes to a school's forum boards. Every school starts with the default boards; a board with posts
//! cannot be deleted (409 `board_in_use`) but can be hidden, which takes it off the board list and closes it to
//! new posts while its threads stay readable. Every function runs in the caller's transaction.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder,
};

use super::model::{board, post};
use crate::{
    db::is_unique_violation,
    error::{AppError, AppResult},
    util,
};

/// The boards every school starts with: (slug, name), in order. The forum migration seeded the same list for
/// the schools that existed then.
pub const DEFAULT_BOARDS: &[(&str, &str)] = &[
    ("help", "求助"),
    ("chat", "闲聊"),
    (super::service::WANTED_BOARD, "求购"),
    ("lost-and-found", "失物招领"),
    ("events", "活动"),
    ("graduation", "毕业季"),
];

/// Gives a new school the default boards.
pub async fn create_defaults_in(txn: &impl ConnectionTrait, school_id: i64) -> AppResult<()> {
    let now = util::now();
    board::Entity::insert_many(
        DEFAULT_BOARDS
            .iter()
            .enumerate()
            .map(|(pos, (slug, name))| board::ActiveModel {
                school_id: Set(school_id),
                slug: Set(slug.to_string()),
                name: Set(name.to_string()),
                position: Set(pos as i32),
                hidden: Set(false),
                created_at: Set(now),
                ..Default::default()
            }),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Every board of a school, hidden ones included, in order.
pub async fn all_of_school(
    db: &impl ConnectionTrait,
    school_id: i64,
) -> AppResult<Vec<board::Model>> {
    Ok(board::Entity::find()
        .filter(board::Column::SchoolId.eq(school_id))
        .order_by_asc(board::Column::Position)
        .order_by_asc(board::Column::Id)
        .all(db)
        .await?)
}

pub async fn find(db: &impl ConnectionTrait, id: i64) -> AppResult<board::Model> {
    board::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("board"))
}

/// A new board.
#[derive(Debug, Clone, Default)]
pub struct BoardInput {
    /// 2–32 of `a-z 0-9 -`, unique within the school.
    pub slug: String,
    /// 1–10 characters.
    pub name: String,
    pub position: i32,
}

/// A change to a board; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct BoardPatch {
    pub name: Option<String>,
    pub position: Option<i32>,
    pub hidden: Option<bool>,
}

fn check_name(problems: &mut BTreeMap<String, String>, name: &mut String) {
    *name = name.trim().to_string();
    let n = name.chars().count();
    if n == 0 || n > 10 || name.chars().any(char::is_control) {
        problems.insert("name".into(), "must be 1–10 characters".into());
    }
}

fn slug_taken(e: sea_orm::DbErr) -> AppError {
    if is_unique_violation(&e) {
        AppError::conflict("slug_taken", "the school has a board with this slug")
    } else {
        e.into()
    }
}

pub async fn create_in(
    txn: &impl ConnectionTrait,
    school_id: i64,
    mut input: BoardInput,
) -> AppResult<board::Model> {
    let mut problems = BTreeMap::new();
    input.slug = input.slug.trim().to_string();
    if !(2..=32).contains(&input.slug.len())
        || !input
            .slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        problems.insert(
            "slug".into(),
            "must be 2–32 characters: lower-case letters, digits and '-'".into(),
        );
    }
    check_name(&mut problems, &mut input.name);
    AppError::check_fields(problems)?;
    crate::users::schools::find(txn, school_id).await?;
    board::ActiveModel {
        school_id: Set(school_id),
        slug: Set(input.slug),
        name: Set(input.name),
        position: Set(input.position),
        hidden: Set(false),
        created_at: Set(util::now()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(slug_taken)
}

pub async fn update_in(
    txn: &impl ConnectionTrait,
    id: i64,
    mut patch: BoardPatch,
) -> AppResult<board::Model> {
    let mut problems = BTreeMap::new();
    if let Some(n) = patch.name.as_mut() {
        check_name(&mut problems, n);
    }
    AppError::check_fields(problems)?;
    let mut active: board::ActiveModel = find(txn, id).await?.into();
    if let Some(n) = patch.name {
        active.name = Set(n);
    }
    if let Some(p) = patch.position {
        active.position = Set(p);
    }
    if let Some(h) = patch.hidden {
        active.hidden = Set(h);
    }
    Ok(active.update(txn).await?)
}

/// Deletes a board without posts; 409 `board_in_use` otherwise (hide it instead).
pub async fn delete_in(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    find(txn, id).await?;
    if post::Entity::find()
        .filter(post::Column::BoardId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(AppError::conflict(
            "board_in_use",
            "this board has posts and cannot be deleted; hide it instead",
        ));
    }
    board::Entity::delete_by_id(id).exec(txn).await?;
    Ok(())
}

/// Deletes the boards of a school that is being deleted (the caller checked nothing refers to the school).
pub async fn delete_all_of_school_in(txn: &impl ConnectionTrait, school_id: i64) -> AppResult<()> {
    if post::Entity::find()
        .filter(post::Column::SchoolId.eq(school_id))
        .count(txn)
        .await?
        > 0
    {
        return Err(AppError::conflict(
            "school_in_use",
            "this school is in use by forum posts and cannot be deleted",
        ));
    }
    board::Entity::delete_many()
        .filter(board::Column::SchoolId.eq(school_id))
        .exec(txn)
        .await?;
    Ok(())
}
