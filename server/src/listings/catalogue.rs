//! The catalogue: categories, schools, campuses and meet-up places. Read on every listing request, changed by
//! operators a few times a term, so it is held in memory and reloaded at most every [`MAX_AGE`]; a change made on
//! this instance calls [`Catalogue::invalidate`], and other instances pick it up within [`MAX_AGE`].
//!
//! The operators' changes to categories and places are here too ([`create_category_in`] and friends): a
//! category or place that listings use can be hidden (no new listing may pick it) but not deleted.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use std::collections::BTreeMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

use super::model::{campus_place, category, listing, listing_place};
use crate::{
    db::is_unique_violation,
    error::{AppError, AppResult},
    users::model::{campus, school},
    util,
};

pub const MAX_AGE: Duration = Duration::from_secs(30);

/// One consistent copy of the catalogue.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub categories: Vec<category::Model>,
    pub category_by_id: HashMap<i64, category::Model>,
    pub schools: HashMap<i64, school::Model>,
    pub campuses: HashMap<i64, campus::Model>,
    pub places: HashMap<i64, campus_place::Model>,
}

impl Snapshot {
    /// The category and every category below it (the tree has two levels).
    pub fn category_with_children(&self, id: i64) -> Vec<i64> {
        let mut ids = vec![id];
        ids.extend(
            self.categories
                .iter()
                .filter(|c| c.parent_id == Some(id))
                .map(|c| c.id),
        );
        ids
    }

    pub fn campus_of_school(&self, campus_id: i64, school_id: i64) -> bool {
        self.campuses
            .get(&campus_id)
            .is_some_and(|c| c.school_id == school_id)
    }

    /// The school a meet-up place belongs to.
    pub fn school_of_place(&self, place_id: i64) -> Option<i64> {
        let place = self.places.get(&place_id)?;
        self.campuses.get(&place.campus_id).map(|c| c.school_id)
    }
}

#[derive(Default)]
pub struct Catalogue {
    current: RwLock<Option<(Arc<Snapshot>, Instant)>>,
    reload: tokio::sync::Mutex<()>,
}

impl Catalogue {
    /// The current snapshot, reloaded from the database when it is older than [`MAX_AGE`].
    pub async fn get(&self, db: &DatabaseConnection) -> AppResult<Arc<Snapshot>> {
        if let Some(snap) = self.fresh() {
            return Ok(snap);
        }
        let _guard = self.reload.lock().await;
        if let Some(snap) = self.fresh() {
            return Ok(snap);
        }
        let snap = Arc::new(load(db).await?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::clone(&snap), Instant::now()));
        Ok(snap)
    }

    fn fresh(&self) -> Option<Arc<Snapshot>> {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|(_, at)| at.elapsed() < MAX_AGE)
            .map(|(s, _)| Arc::clone(s))
    }

    /// The snapshot, reloaded first when it lacks something the caller knows should be there (`has` is false):
    /// a school or category created on another instance within the last [`MAX_AGE`]. A miss reloads at most
    /// once a second, so requests for ids that do not exist cannot make every request reload.
    pub async fn get_with(
        &self,
        db: &DatabaseConnection,
        has: impl Fn(&Snapshot) -> bool,
    ) -> AppResult<Arc<Snapshot>> {
        let snap = self.get(db).await?;
        if has(&snap) {
            return Ok(snap);
        }
        let recent = {
            let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
            guard
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() < Duration::from_secs(1))
        };
        if recent {
            return Ok(snap);
        }
        self.invalidate();
        self.get(db).await
    }

    /// Forget the snapshot so the next read reloads it (after this instance changed the catalogue).
    pub fn invalidate(&self) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

async fn load(db: &DatabaseConnection) -> AppResult<Snapshot> {
    let categories = category::Entity::find()
        .order_by_asc(category::Column::Position)
        .order_by_asc(category::Column::Id)
        .all(db)
        .await?;
    let category_by_id = categories.iter().map(|c| (c.id, c.clone())).collect();
    let schools = school::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let campuses = campus::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let places = campus_place::Entity::find()
        .order_by_asc(campus_place::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    Ok(Snapshot {
        categories,
        category_by_id,
        schools,
        campuses,
        places,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Operators' changes (each in the caller's transaction; the caller invalidates the cache after the commit)

/// A new category.
#[derive(Debug, Clone, Default)]
pub struct CategoryInput {
    /// A top-level category's id; the tree has two levels.
    pub parent_id: Option<i64>,
    /// Stable English identifier: 2–64 of `a-z 0-9 -`.
    pub slug: String,
    /// 1–20 characters.
    pub name_zh: String,
    /// 1–60 characters.
    pub name_en: String,
    pub position: i32,
}

/// A change to a category; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct CategoryPatch {
    pub name_zh: Option<String>,
    pub name_en: Option<String>,
    pub position: Option<i32>,
    pub hidden: Option<bool>,
}

fn check_name(problems: &mut BTreeMap<String, String>, field: &str, v: &mut String, max: usize) {
    *v = v.trim().to_string();
    let n = v.chars().count();
    if n == 0 || n > max || v.chars().any(char::is_control) {
        problems.insert(field.into(), format!("must be 1–{max} characters"));
    }
}

/// Every category, hidden ones included, in display order (straight from the database).
pub async fn all_categories(db: &impl ConnectionTrait) -> AppResult<Vec<category::Model>> {
    Ok(category::Entity::find()
        .order_by_asc(category::Column::Position)
        .order_by_asc(category::Column::Id)
        .all(db)
        .await?)
}

pub async fn find_category(db: &impl ConnectionTrait, id: i64) -> AppResult<category::Model> {
    category::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("category"))
}

pub async fn create_category_in(
    txn: &impl ConnectionTrait,
    mut input: CategoryInput,
) -> AppResult<category::Model> {
    let mut problems = BTreeMap::new();
    input.slug = input.slug.trim().to_string();
    if let Err(p) = crate::users::schools::check_slug(&input.slug) {
        problems.insert("slug".into(), p);
    }
    check_name(&mut problems, "name_zh", &mut input.name_zh, 20);
    check_name(&mut problems, "name_en", &mut input.name_en, 60);
    if let Some(parent) = input.parent_id {
        match category::Entity::find_by_id(parent).one(txn).await? {
            Some(p) if p.parent_id.is_none() => {}
            Some(_) => {
                problems.insert(
                    "parent_id".into(),
                    "categories have two levels: the parent must be a top-level category".into(),
                );
            }
            None => {
                problems.insert("parent_id".into(), "no such category".into());
            }
        }
    }
    AppError::check_fields(problems)?;
    category::ActiveModel {
        parent_id: Set(input.parent_id),
        slug: Set(input.slug),
        name_zh: Set(input.name_zh),
        name_en: Set(input.name_en),
        position: Set(input.position),
        hidden: Set(false),
        created_at: Set(util::now()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AppError::conflict("slug_taken", "a category with this slug exists")
        } else {
            e.into()
        }
    })
}

pub async fn update_category_in(
    txn: &impl ConnectionTrait,
    id: i64,
    mut patch: CategoryPatch,
) -> AppResult<category::Model> {
    let mut problems = BTreeMap::new();
    if let Some(n) = patch.name_zh.as_mut() {
        check_name(&mut problems, "name_zh", n, 20);
    }
    if let Some(n) = patch.name_en.as_mut() {
        check_name(&mut problems, "name_en", n, 60);
    }
    AppError::check_fields(problems)?;
    let mut active: category::ActiveModel = find_category(txn, id).await?.into();
    if let Some(n) = patch.name_zh {
        active.name_zh = Set(n);
    }
    if let Some(n) = patch.name_en {
        active.name_en = Set(n);
    }
    if let Some(p) = patch.position {
        active.position = Set(p);
    }
    if let Some(h) = patch.hidden {
        active.hidden = Set(h);
    }
    Ok(active.update(txn).await?)
}

/// Deletes a category no listing uses and no category hangs under; 409 `category_in_use` otherwise.
pub async fn delete_category_in(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    find_category(txn, id).await?;
    if category::Entity::find()
        .filter(category::Column::ParentId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(AppError::conflict(
            "category_in_use",
            "this category has sub-categories and cannot be deleted; hide it instead",
        ));
    }
    if listing::Entity::find()
        .filter(listing::Column::CategoryId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(AppError::conflict(
            "category_in_use",
            "listings use this category, so it cannot be deleted; hide it instead",
        ));
    }
    category::Entity::delete_by_id(id).exec(txn).await?;
    Ok(())
}

/// A new meet-up place.
#[derive(Debug, Clone, Default)]
pub struct PlaceInput {
    /// 1–30 characters.
    pub name: String,
    pub position: i32,
}

/// A change to a place; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct PlacePatch {
    pub name: Option<String>,
    pub position: Option<i32>,
    pub hidden: Option<bool>,
}

pub async fn find_place(db: &impl ConnectionTrait, id: i64) -> AppResult<campus_place::Model> {
    campus_place::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("place"))
}

/// Every place of a campus, hidden ones included.
pub async fn places_of_campus(
    db: &impl ConnectionTrait,
    campus_id: i64,
) -> AppResult<Vec<campus_place::Model>> {
    Ok(campus_place::Entity::find()
        .filter(campus_place::Column::CampusId.eq(campus_id))
        .order_by_asc(campus_place::Column::Position)
        .order_by_asc(campus_place::Column::Id)
        .all(db)
        .await?)
}

pub async fn create_place_in(
    txn: &impl ConnectionTrait,
    campus_id: i64,
    mut input: PlaceInput,
) -> AppResult<campus_place::Model> {
    let mut problems = BTreeMap::new();
    check_name(&mut problems, "name", &mut input.name, 30);
    AppError::check_fields(problems)?;
    crate::users::schools::find_campus(txn, campus_id).await?;
    Ok(campus_place::ActiveModel {
        campus_id: Set(campus_id),
        name: Set(input.name),
        position: Set(input.position),
        hidden: Set(false),
        created_at: Set(util::now()),
        ..Default::default()
    }
    .insert(txn)
    .await?)
}

pub async fn update_place_in(
    txn: &impl ConnectionTrait,
    id: i64,
    mut patch: PlacePatch,
) -> AppResult<campus_place::Model> {
    let mut problems = BTreeMap::new();
    if let Some(n) = patch.name.as_mut() {
        check_name(&mut problems, "name", n, 30);
    }
    AppError::check_fields(problems)?;
    let mut active: campus_place::ActiveModel = find_place(txn, id).await?.into();
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

/// Deletes a place no listing names; 409 `place_in_use` otherwise.
pub async fn delete_place_in(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    find_place(txn, id).await?;
    if listing_place::Entity::find()
        .filter(listing_place::Column::PlaceId.eq(id))
        .count(txn)
        .await?
        > 0
    {
        return Err(AppError::conflict(
            "place_in_use",
            "listings name this meet-up place, so it cannot be deleted; hide it instead",
        ));
    }
    campus_place::Entity::delete_by_id(id).exec(txn).await?;
    Ok(())
}
