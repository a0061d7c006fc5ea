//! The bearer-token security scheme of the student API. Every student endpoint takes a [`StudentAuth`]; the
//! checker resolves the session and loads the user, refusing banned and deleted accounts on every request.

use anyhow::anyhow;
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use sea_orm::EntityTrait;

use super::sessions::Session;
use crate::{
    error::{AppError, AppResult},
    state::AppState,
    users::model::user,
    util,
};

/// A student session token from `POST /api/v1/auth/wechat-login`, sent as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_student")]
pub struct StudentAuth(pub CurrentUser);

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: user::Model,
    pub session: Session,
}

impl CurrentUser {
    pub fn id(&self) -> i64 {
        self.user.id
    }
}

async fn check_student(req: &Request, bearer: Bearer) -> poem::Result<CurrentUser> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| AppError::internal(anyhow!("application state missing")))?;
    Ok(authenticate(state, &bearer.token).await?)
}

/// Resolves a session token to the user behind it (also used by the WebSocket, which may carry the token in
/// its query string).
pub async fn authenticate(state: &AppState, token: &str) -> AppResult<CurrentUser> {
    let invalid = || AppError::unauthorized("the session is invalid or has expired; log in again");
    if token.is_empty() || token.len() > 128 {
        return Err(invalid());
    }
    let session = state.sessions.resolve(token).await?.ok_or_else(invalid)?;
    let user = user::Entity::find_by_id(session.user_id)
        .one(&state.db)
        .await?
        .ok_or_else(invalid)?;
    match user.status {
        user::Status::Deleted => Err(invalid()),
        user::Status::Banned if user.is_banned(util::now()) => Err(banned_error(&user)),
        _ => Ok(CurrentUser { user, session }),
    }
}

/// The 403 a banned user gets, saying why and until when.
pub fn banned_error(user: &user::Model) -> AppError {
    let reason = user
        .ban_reason
        .as_deref()
        .unwrap_or("violation of the community rules");
    let message = match user.banned_until {
        Some(until) => format!(
            "this account is banned until {}: {reason}",
            until.to_rfc3339()
        ),
        None => format!("this account is banned: {reason}"),
    };
    AppError::forbidden("account_banned", message)
}
