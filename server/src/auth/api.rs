//! HTTP endpoints of login and logout.

use chrono::{DateTime, Utc};
use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, payload::Json};

use super::{StudentAuth, service};
use crate::{error::AppResult, state::AppState, users::api::Me, web};

#[derive(Tags)]
enum AuthTags {
    /// WeChat login and sessions.
    Auth,
}

/// A login with the code `wx.login()` returned.
#[derive(Debug, Object)]
pub struct LoginRequest {
    /// The code from `wx.login()`; single use, valid for five minutes.
    pub code: String,
}

/// A new session.
#[derive(Debug, Object)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`. Stays valid while in use; lapses after `SESSION_TTL_DAYS` unused.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: Me,
    /// True when this login created the account.
    pub is_new_user: bool,
}

#[derive(ApiResponse)]
enum LoggedOut {
    /// The session has ended.
    #[oai(status = 204)]
    Done,
}

pub struct AuthApi;

#[OpenApi(tag = "AuthTags::Auth")]
impl AuthApi {
    /// Log in with WeChat. Creates the account on first login. Rate limited per address and per code.
    #[oai(
        path = "/v1/auth/wechat-login",
        method = "post",
        operation_id = "wechat_login"
    )]
    async fn wechat_login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> AppResult<Json<LoginResponse>> {
        let ip = web::client_ip(req, state.config.trust_proxy_headers);
        let outcome = service::wechat_login(&state, &body.code, ip).await?;
        let user = crate::users::api::me_view(&state, &outcome.user).await?;
        Ok(Json(LoginResponse {
            token: outcome.token,
            expires_at: outcome.expires_at,
            user,
            is_new_user: outcome.is_new_user,
        }))
    }

    /// End the caller's session; the token stops working at once.
    #[oai(path = "/v1/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, state: Data<&AppState>, auth: StudentAuth) -> AppResult<LoggedOut> {
        state
            .sessions
            .revoke(&auth.0.session.token_hash, auth.0.id())
            .await?;
        Ok(LoggedOut::Done)
    }
}
