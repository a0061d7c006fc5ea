//! HTTP endpoints of the inbox.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};

use super::{model::notification, service};
use crate::{auth::StudentAuth, error::AppResult, state::AppState};

#[derive(Tags)]
enum InboxTags {
    /// The in-app inbox.
    Notifications,
}

/// One notification.
#[derive(Debug, Object)]
pub struct Notification {
    pub id: i64,
    /// What happened, e.g. `listing_held`, `verification_approved`, `post_commented`.
    pub kind: String,
    pub title: String,
    pub body: String,
    /// What it is about (`listing`, `post`, `comment`, `verification`), for the client to open.
    pub target_type: Option<String>,
    pub target_id: Option<i64>,
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

/// A page of the inbox.
#[derive(Debug, Object)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Unread notifications in the whole inbox.
    pub unread_count: u64,
}

/// How many were marked read.
#[derive(Debug, Object)]
pub struct Marked {
    pub marked: u64,
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

fn view(n: notification::Model) -> Notification {
    Notification {
        id: n.id,
        kind: n.kind,
        title: n.title,
        body: n.body,
        target_type: n.target_type,
        target_id: n.target_id,
        read: n.read_at.is_some(),
        created_at: n.created_at,
    }
}

pub struct NotificationsApi;

#[OpenApi(tag = "InboxTags::Notifications")]
impl NotificationsApi {
    /// The caller's inbox, newest first.
    #[oai(
        path = "/v1/me/notifications",
        method = "get",
        operation_id = "my_notifications"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
        /// Only unread ones.
        #[oai(default)]
        unread_only: Query<bool>,
    ) -> AppResult<Json<NotificationPage>> {
        let uid = auth.0.id();
        let (rows, next_cursor) =
            service::list(&state.db, uid, cursor.0.as_deref(), limit.0, unread_only.0).await?;
        Ok(Json(NotificationPage {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
            unread_count: service::unread_count(&state.db, uid).await?,
        }))
    }

    /// Mark one notification read.
    #[oai(
        path = "/v1/me/notifications/:id/read",
        method = "post",
        operation_id = "read_notification"
    )]
    async fn read(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        service::mark_read(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }

    /// Mark every notification read.
    #[oai(
        path = "/v1/me/notifications/read-all",
        method = "post",
        operation_id = "read_all_notifications"
    )]
    async fn read_all(&self, state: Data<&AppState>, auth: StudentAuth) -> AppResult<Json<Marked>> {
        Ok(Json(Marked {
            marked: service::mark_all_read(&state.db, auth.0.id()).await?,
        }))
    }
}
