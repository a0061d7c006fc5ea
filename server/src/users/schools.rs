//! Operators' changes to schools and campuses. A new school gets a fresh roster salt and the default forum
//! boards; a school or campus that anything refers to cannot be deleted (409 `school_in_use`,
//! `campus_in_use`). Every function runs in the caller's transaction; the caller invalidates the catalogue cache
//! after the commit.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter,
};

use super::model::{campus, roster_entry, school, user, verification_request};
use crate::{
    db::is_unique_violation,
    error::{AppError, AppResult},
    util,
};

/// What a school is called.
#[derive(Debug, Clone, Default)]
pub struct SchoolInput {
    /// Stable English identifier: 2–64 of `a-z 0-9 -`. Fixed once created.
    pub slug: String,
    /// 1–100 characters.
    pub name: String,
    /// 1–40 characters.
    pub short_name: String,
    pub requires_verification: bool,
}

/// A change to a school; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct SchoolPatch {
    pub name: Option<String>,
    pub short_name: Option<String>,
    pub requires_verification: Option<bool>,
}

fn check_text(
    problems: &mut BTreeMap<String, String>,
    field: &str,
    value: &mut String,
    max: usize,
) {
    *value = value.trim().to_string();
    let n = value.chars().count();
    if n == 0 || n > max || value.chars().any(char::is_control) {
        problems.insert(
            field.into(),
            format!("must be 1–{max} characters on one line"),
        );
    }
}

/// Checks a slug: 2–64 of lower-case letters, digits and `-`.
pub fn check_slug(slug: &str) -> Result<(), String> {
    if (2..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err("must be 2–64 characters: lower-case letters, digits and '-'".into())
    }
}

pub async fn find(db: &impl ConnectionTrait, id: i64) -> AppResult<school::Model> {
    school::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("school"))
}

/// Creates a school with the default forum boards.
pub async fn create_school_in(
    txn: &impl ConnectionTrait,
    mut input: SchoolInput,
) -> AppResult<school::Model> {
    let mut problems = BTreeMap::new();
    input.slug = input.slug.trim().to_string();
    if let Err(p) = check_slug(&input.slug) {
        problems.insert("slug".into(), p);
    }
    check_text(&mut problems, "name", &mut input.name, 100);
    check_text(&mut problems, "short_name", &mut input.short_name, 40);
    AppError::check_fields(problems)?;
    let row = school::ActiveModel {
        slug: Set(input.slug),
        name: Set(input.name),
        short_name: Set(input.short_name),
        requires_verification: Set(input.requires_verification),
        roster_salt: Set(migrations::new_roster_salt()),
        created_at: Set(util::now()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AppError::conflict("slug_taken", "a school with this slug exists")
        } else {
            e.into()
        }
    })?;
    crate::forum::boards::create_defaults_in(txn, row.id).await?;
    Ok(row)
}

/// Renames a school or changes whether publishing there needs verification.
pub async fn update_school_in(
    txn: &impl ConnectionTrait,
    id: i64,
    mut patch: SchoolPatch,
) -> AppResult<school::Model> {
    let mut problems = BTreeMap::new();
    if let Some(n) = patch.name.as_mut() {
        check_text(&mut problems, "name", n, 100);
    }
    if let Some(n) = patch.short_name.as_mut() {
        check_text(&mut problems, "short_name", n, 40);
    }
    AppError::check_fields(problems)?;
    let current = find(txn, id).await?;
    let mut active: school::ActiveModel = current.into();
    if let Some(n) = patch.name {
        active.name = Set(n);
    }
    if let Some(n) = patch.short_name {
        active.short_name = Set(n);
    }
    if let Some(r) = patch.requires_verification {
        active.requires_verification = Set(r);
    }
    Ok(active.update(txn).await?)
}

fn in_use(code: &'static str, what: &str, by: &str) -> AppError {
    AppError::conflict(
        code,
        format!("this {what} is in use by {by} and cannot be deleted"),
    )
}

/// Deletes a school nothing refers to (its empty boards and its roster go with it).
pub async fn delete_school_in(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    find(txn, id).await?;
    let code = "school_in_use";
    if campus::Entity::find()
        .filter(campus::Column::SchoolId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(in_use(code, "school", "campuses"));
    }
    if user::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(user::Column::SchoolId.eq(id))
                .add(user::Column::VerifiedSchoolId.eq(id)),
        )
        .count(txn)
        .await?
        > 0
        || verification_request::Entity::find()
            .filter(verification_request::Column::SchoolId.eq(id))
            .count(txn)
            .await?
            > 0
    {
        return Err(in_use(code, "school", "students"));
    }
    if crate::listings::model::listing::Entity::find()
        .filter(crate::listings::model::listing::Column::SchoolId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(in_use(code, "school", "listings"));
    }
    if crate::admin::operators::operator_school::Entity::find()
        .filter(crate::admin::operators::operator_school::Column::SchoolId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(in_use(code, "school", "operator accounts"));
    }
    crate::forum::boards::delete_all_of_school_in(txn, id).await?;
    roster_entry::Entity::delete_many()
        .filter(roster_entry::Column::SchoolId.eq(id))
        .exec(txn)
        .await?;
    school::Entity::delete_by_id(id).exec(txn).await?;
    Ok(())
}

pub async fn find_campus(db: &impl ConnectionTrait, id: i64) -> AppResult<campus::Model> {
    campus::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("campus"))
}

fn campus_name_taken(e: sea_orm::DbErr) -> AppError {
    if is_unique_violation(&e) {
        AppError::conflict("campus_name_taken", "the school has a campus of this name")
    } else {
        e.into()
    }
}

/// Adds a campus to a school.
pub async fn create_campus_in(
    txn: &impl ConnectionTrait,
    school_id: i64,
    mut name: String,
) -> AppResult<campus::Model> {
    let mut problems = BTreeMap::new();
    check_text(&mut problems, "name", &mut name, 100);
    AppError::check_fields(problems)?;
    find(txn, school_id).await?;
    campus::ActiveModel {
        school_id: Set(school_id),
        name: Set(name),
        created_at: Set(util::now()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(campus_name_taken)
}

/// Renames a campus.
pub async fn rename_campus_in(
    txn: &impl ConnectionTrait,
    id: i64,
    mut name: String,
) -> AppResult<campus::Model> {
    let mut problems = BTreeMap::new();
    check_text(&mut problems, "name", &mut name, 100);
    AppError::check_fields(problems)?;
    let mut active: campus::ActiveModel = find_campus(txn, id).await?.into();
    active.name = Set(name);
    active.update(txn).await.map_err(campus_name_taken)
}

/// Deletes a campus nothing refers to (no students, listings or meet-up places).
pub async fn delete_campus_in(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    use crate::listings::model::{campus_place, listing};
    find_campus(txn, id).await?;
    let code = "campus_in_use";
    if user::Entity::find()
        .filter(user::Column::CampusId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(in_use(code, "campus", "students"));
    }
    if listing::Entity::find()
        .filter(listing::Column::CampusId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(in_use(code, "campus", "listings"));
    }
    if campus_place::Entity::find()
        .filter(campus_place::Column::CampusId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(in_use(
            code,
            "campus",
            "meet-up places (delete or move them first)",
        ));
    }
    campus::Entity::delete_by_id(id).exec(txn).await?;
    Ok(())
}
