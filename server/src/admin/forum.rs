//! Forum moderation: pin and unpin, lock and unlock posts, remove posts and comments with a reason the author
//! reads. The rules are in `crate::forum::service`.

use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};
use sea_orm::{ConnectionTrait, EntityTrait, TransactionTrait};

use super::{
    AdminTags, audit,
    auth::{Need, perm},
};
use crate::{
    error::{AppError, AppResult},
    forum::{
        model::{comment, post},
        service as forum,
    },
    state::AppState,
};

/// A post's moderation state.
#[derive(Debug, Clone, Object)]
pub struct PostModeration {
    pub id: i64,
    pub school_id: i64,
    pub status: crate::forum::model::Status,
    pub pinned: bool,
    pub locked: bool,
    pub moderation_label: Option<String>,
}

/// A comment's moderation state.
#[derive(Debug, Clone, Object)]
pub struct CommentModeration {
    pub id: i64,
    pub post_id: i64,
    pub status: crate::forum::model::Status,
    pub moderation_label: Option<String>,
}

/// Why content is removed.
#[derive(Debug, Object)]
pub struct RemoveContent {
    /// 1–200 characters; the author reads it in their inbox.
    pub reason: String,
}

fn post_view(p: &post::Model) -> PostModeration {
    PostModeration {
        id: p.id,
        school_id: p.school_id,
        status: p.status,
        pinned: p.pinned,
        locked: p.locked,
        moderation_label: p.moderation_label.clone(),
    }
}

async fn find_post(db: &impl ConnectionTrait, id: i64) -> AppResult<post::Model> {
    post::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("post"))
}

/// Which flag of a post an operator sets.
#[derive(Clone, Copy)]
enum Flag {
    Pinned(bool),
    Locked(bool),
}

async fn set_flag(
    state: &AppState,
    auth: &Need<perm::Moderation>,
    id: i64,
    flag: Flag,
) -> AppResult<Json<PostModeration>> {
    let before = find_post(&state.db, id).await?;
    auth.school(Some(before.school_id))?;
    let action = match flag {
        Flag::Pinned(true) => "post.pin",
        Flag::Pinned(false) => "post.unpin",
        Flag::Locked(true) => "post.lock",
        Flag::Locked(false) => "post.unlock",
    };
    let txn = state.db.begin().await?;
    let pending = audit::begin(&txn, auth.actor(), action).await?;
    match flag {
        Flag::Pinned(v) => forum::set_pinned(&txn, id, v).await?,
        Flag::Locked(v) => forum::set_locked(&txn, id, v).await?,
    }
    let after = post_view(&find_post(&txn, id).await?);
    pending
        .finish(
            &txn,
            audit::Record::target("post", id)
                .school(Some(before.school_id))
                .before_view(&post_view(&before))
                .after_view(&after),
        )
        .await?;
    txn.commit().await?;
    Ok(Json(after))
}

pub struct ForumModerationApi;

#[OpenApi(tag = "AdminTags::Forum")]
impl ForumModerationApi {
    /// Pin a post: pinned posts come first on the first page of their board. Deleted posts cannot be pinned.
    ///
    /// Permission: `moderation`.
    #[oai(path = "/v1/posts/:id/pin", method = "post", operation_id = "pin_post")]
    async fn pin(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
    ) -> AppResult<Json<PostModeration>> {
        set_flag(&state, &auth, id.0, Flag::Pinned(true)).await
    }

    /// Unpin a post.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/posts/:id/unpin",
        method = "post",
        operation_id = "unpin_post"
    )]
    async fn unpin(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
    ) -> AppResult<Json<PostModeration>> {
        set_flag(&state, &auth, id.0, Flag::Pinned(false)).await
    }

    /// Lock a post: it takes no new comments (409 `post_locked` for students).
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/posts/:id/lock",
        method = "post",
        operation_id = "lock_post"
    )]
    async fn lock(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
    ) -> AppResult<Json<PostModeration>> {
        set_flag(&state, &auth, id.0, Flag::Locked(true)).await
    }

    /// Unlock a post.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/posts/:id/unlock",
        method = "post",
        operation_id = "unlock_post"
    )]
    async fn unlock(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
    ) -> AppResult<Json<PostModeration>> {
        set_flag(&state, &auth, id.0, Flag::Locked(false)).await
    }

    /// Remove a post (published, held or hidden) with a reason the author reads in their inbox; open reports
    /// of it are closed as upheld. 409 `invalid_transition` when it is already removed or deleted.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/posts/:id/remove",
        method = "post",
        operation_id = "remove_post"
    )]
    async fn remove_post(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
        body: Json<RemoveContent>,
    ) -> AppResult<Json<PostModeration>> {
        let reason = super::reason(Some(&body.reason), true, 200)?.unwrap_or_default();
        let before = find_post(&state.db, id.0).await?;
        auth.school(Some(before.school_id))?;
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "post.remove").await?;
        forum::remove_by_operator_in(&txn, "post", id.0, &reason).await?;
        crate::moderation::reports::close_reports_in(
            &txn,
            crate::moderation::reports::TargetType::Post,
            id.0,
            crate::moderation::reports::Decision::Remove,
        )
        .await?;
        let after = post_view(&find_post(&txn, id.0).await?);
        pending
            .finish(
                &txn,
                audit::Record::target("post", id.0)
                    .school(Some(before.school_id))
                    .before_view(&post_view(&before))
                    .after_view(&after)
                    .reason(Some(&reason)),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(after))
    }

    /// Remove a comment with a reason the author reads in their inbox; open reports of it are closed as
    /// upheld. 409 `invalid_transition` when it is already removed or deleted.
    ///
    /// Permission: `moderation`.
    #[oai(
        path = "/v1/comments/:id/remove",
        method = "post",
        operation_id = "remove_comment"
    )]
    async fn remove_comment(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Moderation>,
        id: Path<i64>,
        body: Json<RemoveContent>,
    ) -> AppResult<Json<CommentModeration>> {
        let reason = super::reason(Some(&body.reason), true, 200)?.unwrap_or_default();
        let before = comment::Entity::find_by_id(id.0)
            .one(&state.db)
            .await?
            .ok_or_else(|| AppError::not_found("comment"))?;
        let school = find_post(&state.db, before.post_id).await?.school_id;
        auth.school(Some(school))?;
        let view = |c: &comment::Model| CommentModeration {
            id: c.id,
            post_id: c.post_id,
            status: c.status,
            moderation_label: c.moderation_label.clone(),
        };
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "comment.remove").await?;
        forum::remove_by_operator_in(&txn, "comment", id.0, &reason).await?;
        crate::moderation::reports::close_reports_in(
            &txn,
            crate::moderation::reports::TargetType::Comment,
            id.0,
            crate::moderation::reports::Decision::Remove,
        )
        .await?;
        let after = comment::Entity::find_by_id(id.0)
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("comment"))?;
        let after = view(&after);
        pending
            .finish(
                &txn,
                audit::Record::target("comment", id.0)
                    .school(Some(school))
                    .before_view(&view(&before))
                    .after_view(&after)
                    .reason(Some(&reason)),
            )
            .await?;
        txn.commit().await?;
        Ok(Json(after))
    }
}
