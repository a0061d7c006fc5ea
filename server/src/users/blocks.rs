//! Blocks: a student stops seeing another student's posts and comments in the campus circle. The forum's
//! queries filter on [`user_block`] in SQL, so pages stay full.

use poem::web::Data;
use poem_openapi::{ApiResponse, OpenApi, Tags, param::Path};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    sea_query::OnConflict,
};

use crate::{
    auth::StudentAuth,
    error::{AppError, AppResult},
    state::AppState,
    util,
};

pub mod user_block {
    use sea_orm::entity::prelude::*;

    /// `blocker_id` does not see `blocked_id`'s posts and comments.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_blocks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub blocker_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub blocked_id: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Blocks `blocked_id` for `blocker_id` (idempotent). Blocking yourself is 422.
pub async fn block(db: &DatabaseConnection, blocker_id: i64, blocked_id: i64) -> AppResult<()> {
    if blocker_id == blocked_id {
        return Err(AppError::unprocessable(
            "cannot_block_self",
            "you cannot block yourself",
        ));
    }
    super::service::visible_user(db, blocked_id).await?;
    user_block::Entity::insert(user_block::ActiveModel {
        blocker_id: Set(blocker_id),
        blocked_id: Set(blocked_id),
        created_at: Set(util::now()),
    })
    .on_conflict(
        OnConflict::columns([user_block::Column::BlockerId, user_block::Column::BlockedId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Lifts a block (idempotent).
pub async fn unblock(db: &DatabaseConnection, blocker_id: i64, blocked_id: i64) -> AppResult<()> {
    user_block::Entity::delete_many()
        .filter(user_block::Column::BlockerId.eq(blocker_id))
        .filter(user_block::Column::BlockedId.eq(blocked_id))
        .exec(db)
        .await?;
    Ok(())
}

#[derive(Tags)]
enum BlockTags {
    /// Blocking other students.
    Blocks,
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

/// Blocking other students.
pub struct BlocksApi;

#[OpenApi]
impl BlocksApi {
    /// Block a student: their posts and comments disappear from your campus circle (anonymous ones stay, so a
    /// block never reveals who wrote them). Idempotent; blocking yourself is 422 `cannot_block_self`.
    #[oai(
        path = "/v1/users/:id/block",
        method = "put",
        tag = "BlockTags::Blocks",
        operation_id = "block_user"
    )]
    async fn block(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        block(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }

    /// Lift a block (idempotent).
    #[oai(
        path = "/v1/users/:id/block",
        method = "delete",
        tag = "BlockTags::Blocks",
        operation_id = "unblock_user"
    )]
    async fn unblock(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        unblock(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }
}
