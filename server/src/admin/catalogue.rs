//! The catalogue: schools (and whether they require verification to publish), campuses, meet-up places,
//! categories and forum boards. Things in use can be hidden but not deleted (409 with a code saying what uses
//! them). Every change invalidates this instance's catalogue cache; other instances pick it up within 30 s. The
//! rules are in `crate::users::schools`, `crate::listings::catalogue` and `crate::forum::boards`.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use sea_orm::TransactionTrait;

use super::{
    AdminTags, audit,
    auth::{Need, OperatorAuth, perm},
};
use crate::{
    error::AppResult,
    forum::{
        boards::{self, BoardInput, BoardPatch},
        model::board,
    },
    listings::{
        catalogue::{self, CategoryInput, CategoryPatch, PlaceInput, PlacePatch},
        model::{campus_place, category},
    },
    state::AppState,
    users::{
        model::{campus, school},
        schools::{self, SchoolInput, SchoolPatch},
        service as users,
    },
};

/// A campus.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AdminCampus")]
pub struct CampusView {
    pub id: i64,
    pub school_id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

fn campus_view(c: &campus::Model) -> CampusView {
    CampusView {
        id: c.id,
        school_id: c.school_id,
        name: c.name.clone(),
        created_at: c.created_at,
    }
}

/// A school with its campuses.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AdminSchool")]
pub struct SchoolView {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub short_name: String,
    /// Only verified students may publish listings at this school.
    pub requires_verification: bool,
    pub campuses: Vec<CampusView>,
    pub created_at: DateTime<Utc>,
}

fn school_view(s: &school::Model, campuses: &[campus::Model]) -> SchoolView {
    SchoolView {
        id: s.id,
        slug: s.slug.clone(),
        name: s.name.clone(),
        short_name: s.short_name.clone(),
        requires_verification: s.requires_verification,
        campuses: campuses.iter().map(campus_view).collect(),
        created_at: s.created_at,
    }
}

/// A new school.
#[derive(Debug, Object)]
pub struct CreateSchool {
    /// 2–64 of `a-z 0-9 -`, fixed once created.
    pub slug: String,
    /// 1–100 characters.
    pub name: String,
    /// 1–40 characters.
    pub short_name: String,
    /// Default false.
    pub requires_verification: Option<bool>,
}

/// A change to a school; fields left out stay.
#[derive(Debug, Object)]
pub struct UpdateSchool {
    pub name: Option<String>,
    pub short_name: Option<String>,
    /// Whether only verified students may publish listings at this school.
    pub requires_verification: Option<bool>,
}

/// A campus name.
#[derive(Debug, Object)]
pub struct CampusBody {
    /// 1–100 characters, unique within the school.
    pub name: String,
}

/// A meet-up place.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AdminPlace")]
pub struct PlaceView {
    pub id: i64,
    pub campus_id: i64,
    pub name: String,
    pub position: i32,
    /// Hidden places are not offered for new listings.
    pub hidden: bool,
    pub created_at: DateTime<Utc>,
}

fn place_view(p: &campus_place::Model) -> PlaceView {
    PlaceView {
        id: p.id,
        campus_id: p.campus_id,
        name: p.name.clone(),
        position: p.position,
        hidden: p.hidden,
        created_at: p.created_at,
    }
}

/// A new meet-up place.
#[derive(Debug, Object)]
pub struct CreatePlace {
    /// 1–30 characters.
    pub name: String,
    /// Order in the picker (ascending); default 0.
    pub position: Option<i32>,
}

/// A change to a place; fields left out stay.
#[derive(Debug, Object)]
pub struct UpdatePlace {
    pub name: Option<String>,
    pub position: Option<i32>,
    pub hidden: Option<bool>,
}

/// A category.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AdminCategory")]
pub struct CategoryView {
    pub id: i64,
    /// The top-level category this one is under; `null` for a top-level one.
    pub parent_id: Option<i64>,
    pub slug: String,
    pub name_zh: String,
    pub name_en: String,
    pub position: i32,
    /// Hidden categories are not offered for new listings.
    pub hidden: bool,
    pub created_at: DateTime<Utc>,
}

fn category_view(c: &category::Model) -> CategoryView {
    CategoryView {
        id: c.id,
        parent_id: c.parent_id,
        slug: c.slug.clone(),
        name_zh: c.name_zh.clone(),
        name_en: c.name_en.clone(),
        position: c.position,
        hidden: c.hidden,
        created_at: c.created_at,
    }
}

/// A new category.
#[derive(Debug, Object)]
pub struct CreateCategory {
    /// A top-level category to put it under (two levels at most); leave out for a top-level one.
    pub parent_id: Option<i64>,
    /// 2–64 of `a-z 0-9 -`.
    pub slug: String,
    /// 1–20 characters.
    pub name_zh: String,
    /// 1–60 characters.
    pub name_en: String,
    pub position: Option<i32>,
}

/// A change to a category; fields left out stay.
#[derive(Debug, Object)]
pub struct UpdateCategory {
    pub name_zh: Option<String>,
    pub name_en: Option<String>,
    pub position: Option<i32>,
    pub hidden: Option<bool>,
}

/// A forum board.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AdminBoard")]
pub struct BoardView {
    pub id: i64,
    pub school_id: i64,
    pub slug: String,
    pub name: String,
    pub position: i32,
    /// Hidden boards are not listed and take no new posts; their threads stay readable.
    pub hidden: bool,
    pub created_at: DateTime<Utc>,
}

fn board_view(b: &board::Model) -> BoardView {
    BoardView {
        id: b.id,
        school_id: b.school_id,
        slug: b.slug.clone(),
        name: b.name.clone(),
        position: b.position,
        hidden: b.hidden,
        created_at: b.created_at,
    }
}

/// A new board.
#[derive(Debug, Object)]
pub struct CreateBoard {
    /// 2–32 of `a-z 0-9 -`, unique within the school.
    pub slug: String,
    /// 1–10 characters.
    pub name: String,
    pub position: Option<i32>,
}

/// A change to a board; fields left out stay.
#[derive(Debug, Object)]
pub struct UpdateBoard {
    pub name: Option<String>,
    pub position: Option<i32>,
    pub hidden: Option<bool>,
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Done,
}

pub struct CatalogueApi;

#[OpenApi(tag = "AdminTags::Catalogue")]
impl CatalogueApi {
    /// Every school with its campuses (every operator sees the list, to pick filters).
    ///
    /// Permission: any operator.
    #[oai(
        path = "/v1/schools",
        method = "get",
        operation_id = "admin_list_schools"
    )]
    async fn schools(
        &self,
        state: Data<&AppState>,
        _auth: OperatorAuth,
    ) -> AppResult<Json<Vec<SchoolView>>> {
        let all = users::list_schools(&state.db).await?;
        Ok(Json(all.iter().map(|(s, c)| school_view(s, c)).collect()))
    }

    /// Create a school; it starts with the default forum boards. 409 `slug_taken`.
    ///
    /// Permission: `catalogue` (for operators of every school).
    #[oai(path = "/v1/schools", method = "post", operation_id = "create_school")]
    async fn create_school(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        body: Json<CreateSchool>,
    ) -> AppResult<Json<SchoolView>> {
        auth.school(None)?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "school.create").await?;
        let row = schools::create_school_in(
            &txn,
            SchoolInput {
                slug: b.slug,
                name: b.name,
                short_name: b.short_name,
                requires_verification: b.requires_verification.unwrap_or(false),
            },
        )
        .await?;
        let view = school_view(&row, &[]);
        pending
            .finish(
                &txn,
                audit::Record::target("school", row.id)
                    .school(Some(row.id))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Rename a school, or change whether publishing there requires verification.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/schools/:id",
        method = "patch",
        operation_id = "update_school"
    )]
    async fn update_school(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<UpdateSchool>,
    ) -> AppResult<Json<SchoolView>> {
        let before = schools::find(&state.db, id.0).await?;
        auth.school(Some(before.id))?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "school.update").await?;
        let row = schools::update_school_in(
            &txn,
            id.0,
            SchoolPatch {
                name: b.name,
                short_name: b.short_name,
                requires_verification: b.requires_verification,
            },
        )
        .await?;
        let view = school_view(&row, &[]);
        pending
            .finish(
                &txn,
                audit::Record::target("school", row.id)
                    .school(Some(row.id))
                    .before_view(&school_view(&before, &[]))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Delete a school nothing refers to (no campuses, students, listings, posts or operator accounts);
    /// 409 `school_in_use` otherwise.
    ///
    /// Permission: `catalogue` (for operators of every school).
    #[oai(
        path = "/v1/schools/:id",
        method = "delete",
        operation_id = "delete_school"
    )]
    async fn delete_school(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
    ) -> AppResult<Deleted> {
        auth.school(None)?;
        let before = schools::find(&state.db, id.0).await?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "school.delete").await?;
        schools::delete_school_in(&txn, id.0).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("school", id.0)
                    .school(Some(id.0))
                    .before_view(&school_view(&before, &[])),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Deleted::Done)
    }

    /// Add a campus to a school. 409 `campus_name_taken`.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/schools/:id/campuses",
        method = "post",
        operation_id = "create_campus"
    )]
    async fn create_campus(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<CampusBody>,
    ) -> AppResult<Json<CampusView>> {
        schools::find(&state.db, id.0).await?;
        auth.school(Some(id.0))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "campus.create").await?;
        let row = schools::create_campus_in(&txn, id.0, body.0.name).await?;
        let view = campus_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("campus", row.id)
                    .school(Some(id.0))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Rename a campus. 409 `campus_name_taken`.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/campuses/:id",
        method = "patch",
        operation_id = "update_campus"
    )]
    async fn update_campus(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<CampusBody>,
    ) -> AppResult<Json<CampusView>> {
        let before = schools::find_campus(&state.db, id.0).await?;
        auth.school(Some(before.school_id))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "campus.update").await?;
        let row = schools::rename_campus_in(&txn, id.0, body.0.name).await?;
        let view = campus_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("campus", row.id)
                    .school(Some(row.school_id))
                    .before_view(&campus_view(&before))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Delete a campus no student, listing or meet-up place refers to; 409 `campus_in_use` otherwise.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/campuses/:id",
        method = "delete",
        operation_id = "delete_campus"
    )]
    async fn delete_campus(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
    ) -> AppResult<Deleted> {
        let before = schools::find_campus(&state.db, id.0).await?;
        auth.school(Some(before.school_id))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "campus.delete").await?;
        schools::delete_campus_in(&txn, id.0).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("campus", id.0)
                    .school(Some(before.school_id))
                    .before_view(&campus_view(&before)),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Deleted::Done)
    }

    /// Every meet-up place of a campus, hidden ones included.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/campuses/:id/places",
        method = "get",
        operation_id = "admin_list_places"
    )]
    async fn places(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
    ) -> AppResult<Json<Vec<PlaceView>>> {
        let c = schools::find_campus(&state.db, id.0).await?;
        auth.school(Some(c.school_id))?;
        let rows = catalogue::places_of_campus(&state.db, c.id).await?;
        Ok(Json(rows.iter().map(place_view).collect()))
    }

    /// Add a meet-up place to a campus.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/campuses/:id/places",
        method = "post",
        operation_id = "create_place"
    )]
    async fn create_place(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<CreatePlace>,
    ) -> AppResult<Json<PlaceView>> {
        let c = schools::find_campus(&state.db, id.0).await?;
        auth.school(Some(c.school_id))?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "place.create").await?;
        let row = catalogue::create_place_in(
            &txn,
            c.id,
            PlaceInput {
                name: b.name,
                position: b.position.unwrap_or(0),
            },
        )
        .await?;
        let view = place_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("place", row.id)
                    .school(Some(c.school_id))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Rename, reorder, hide or show a meet-up place.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/places/:id",
        method = "patch",
        operation_id = "update_place"
    )]
    async fn update_place(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<UpdatePlace>,
    ) -> AppResult<Json<PlaceView>> {
        let before = catalogue::find_place(&state.db, id.0).await?;
        let school = schools::find_campus(&state.db, before.campus_id)
            .await?
            .school_id;
        auth.school(Some(school))?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "place.update").await?;
        let row = catalogue::update_place_in(
            &txn,
            id.0,
            PlacePatch {
                name: b.name,
                position: b.position,
                hidden: b.hidden,
            },
        )
        .await?;
        let view = place_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("place", row.id)
                    .school(Some(school))
                    .before_view(&place_view(&before))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Delete a meet-up place no listing names; 409 `place_in_use` otherwise (hide it instead).
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/places/:id",
        method = "delete",
        operation_id = "delete_place"
    )]
    async fn delete_place(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
    ) -> AppResult<Deleted> {
        let before = catalogue::find_place(&state.db, id.0).await?;
        let school = schools::find_campus(&state.db, before.campus_id)
            .await?
            .school_id;
        auth.school(Some(school))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "place.delete").await?;
        catalogue::delete_place_in(&txn, id.0).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("place", id.0)
                    .school(Some(school))
                    .before_view(&place_view(&before)),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Deleted::Done)
    }

    /// Every category, hidden ones included, in display order.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/categories",
        method = "get",
        operation_id = "admin_list_categories"
    )]
    async fn categories(
        &self,
        state: Data<&AppState>,
        _auth: Need<perm::Catalogue>,
    ) -> AppResult<Json<Vec<CategoryView>>> {
        let rows = catalogue::all_categories(&state.db).await?;
        Ok(Json(rows.iter().map(category_view).collect()))
    }

    /// Create a category (top-level, or under a top-level one). 409 `slug_taken`.
    ///
    /// Permission: `catalogue` (for operators of every school: categories are shared).
    #[oai(
        path = "/v1/categories",
        method = "post",
        operation_id = "create_category"
    )]
    async fn create_category(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        body: Json<CreateCategory>,
    ) -> AppResult<Json<CategoryView>> {
        auth.school(None)?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "category.create").await?;
        let row = catalogue::create_category_in(
            &txn,
            CategoryInput {
                parent_id: b.parent_id,
                slug: b.slug,
                name_zh: b.name_zh,
                name_en: b.name_en,
                position: b.position.unwrap_or(0),
            },
        )
        .await?;
        let view = category_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("category", row.id).after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Rename, reorder, hide or show a category. A hidden category takes no new listings; its listings stay.
    ///
    /// Permission: `catalogue` (for operators of every school).
    #[oai(
        path = "/v1/categories/:id",
        method = "patch",
        operation_id = "update_category"
    )]
    async fn update_category(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<UpdateCategory>,
    ) -> AppResult<Json<CategoryView>> {
        auth.school(None)?;
        let before = catalogue::find_category(&state.db, id.0).await?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "category.update").await?;
        let row = catalogue::update_category_in(
            &txn,
            id.0,
            CategoryPatch {
                name_zh: b.name_zh,
                name_en: b.name_en,
                position: b.position,
                hidden: b.hidden,
            },
        )
        .await?;
        let view = category_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("category", row.id)
                    .before_view(&category_view(&before))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Json(view))
    }

    /// Delete a category that no listing uses and no category hangs under; 409 `category_in_use` otherwise
    /// (hide it instead).
    ///
    /// Permission: `catalogue` (for operators of every school).
    #[oai(
        path = "/v1/categories/:id",
        method = "delete",
        operation_id = "delete_category"
    )]
    async fn delete_category(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
    ) -> AppResult<Deleted> {
        auth.school(None)?;
        let before = catalogue::find_category(&state.db, id.0).await?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "category.delete").await?;
        catalogue::delete_category_in(&txn, id.0).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("category", id.0).before_view(&category_view(&before)),
            )
            .await?;
        txn.commit().await?;
        state.catalogue.invalidate();
        Ok(Deleted::Done)
    }

    /// Every forum board of a school, hidden ones included.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/schools/:id/boards",
        method = "get",
        operation_id = "admin_list_boards"
    )]
    async fn boards(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
    ) -> AppResult<Json<Vec<BoardView>>> {
        schools::find(&state.db, id.0).await?;
        auth.school(Some(id.0))?;
        let rows = boards::all_of_school(&state.db, id.0).await?;
        Ok(Json(rows.iter().map(board_view).collect()))
    }

    /// Add a forum board to a school. 409 `slug_taken`.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/schools/:id/boards",
        method = "post",
        operation_id = "create_board"
    )]
    async fn create_board(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<CreateBoard>,
    ) -> AppResult<Json<BoardView>> {
        schools::find(&state.db, id.0).await?;
        auth.school(Some(id.0))?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "board.create").await?;
        let row = boards::create_in(
            &txn,
            id.0,
            BoardInput {
                slug: b.slug,
                name: b.name,
                position: b.position.unwrap_or(0),
            },
        )
        .await?;
        let view = board_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("board", row.id)
                    .school(Some(id.0))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view))
    }

    /// Rename, reorder, hide or show a board. A hidden board is not listed and takes no new posts.
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/boards/:id",
        method = "patch",
        operation_id = "update_board"
    )]
    async fn update_board(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
        body: Json<UpdateBoard>,
    ) -> AppResult<Json<BoardView>> {
        let before = boards::find(&state.db, id.0).await?;
        auth.school(Some(before.school_id))?;
        let b = body.0;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "board.update").await?;
        let row = boards::update_in(
            &txn,
            id.0,
            BoardPatch {
                name: b.name,
                position: b.position,
                hidden: b.hidden,
            },
        )
        .await?;
        let view = board_view(&row);
        pending
            .finish(
                &txn,
                audit::Record::target("board", row.id)
                    .school(Some(row.school_id))
                    .before_view(&board_view(&before))
                    .after_view(&view),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(view))
    }

    /// Delete a board without posts; 409 `board_in_use` otherwise (hide it instead).
    ///
    /// Permission: `catalogue`.
    #[oai(
        path = "/v1/boards/:id",
        method = "delete",
        operation_id = "delete_board"
    )]
    async fn delete_board(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Catalogue>,
        id: Path<i64>,
    ) -> AppResult<Deleted> {
        let before = boards::find(&state.db, id.0).await?;
        auth.school(Some(before.school_id))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "board.delete").await?;
        boards::delete_in(&txn, id.0).await?;
        pending
            .finish(
                &txn,
                audit::Record::target("board", id.0)
                    .school(Some(before.school_id))
                    .before_view(&board_view(&before)),
            )
            .await?;
        txn.commit().await?;
        Ok(Deleted::Done)
    }
}
