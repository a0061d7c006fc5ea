//! The catalogue: categories, schools, campuses and meet-up places. Read on every listing request, changed by
//! operators a few times a term, so it is held in memory and reloaded at most every [`MAX_AGE`]; a change made on
//! this instance calls [`Catalogue::invalidate`], and other instances pick it up within [`MAX_AGE`].

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};

use super::model::{campus_place, category};
use crate::{
    error::AppResult,
    users::model::{campus, school},
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
