//! The login flow: rate limits, `code2session`, first-login account creation, session issue.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    error::{AppError, AppResult},
    kv::Kv,
    state::AppState,
    users::{model::user, service as users},
    util,
    wechat::WechatError,
};

pub struct LoginOutcome {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: user::Model,
    pub is_new_user: bool,
}

/// Counts a hit against a limit of `limit` per `window`; refuses with 429 and `Retry-After` past it. When the
/// store is unreachable the limit is not enforced (and a warning logged): a Redis hiccup must not lock
/// everybody out.
pub async fn rate_limit(
    kv: &Kv,
    key: &str,
    limit: u64,
    window: Duration,
    what: &str,
) -> AppResult<()> {
    match kv.hit(key, window).await {
        Ok((count, left)) if count > limit => Err(AppError::RateLimited {
            retry_after_secs: left.as_secs().max(1),
            message: format!("too many {what}; try again in {} s", left.as_secs().max(1)),
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "rate limit store unavailable; not enforcing");
            Ok(())
        }
    }
}

fn validate_code(code: &str) -> AppResult<()> {
    if code.is_empty() || code.len() > 128 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid_field(
            "code",
            "must be the 1–128 character code that wx.login() returned",
        ));
    }
    Ok(())
}

/// What a WeChat failure means to the student trying to log in.
fn login_error(err: WechatError) -> AppError {
    match err.errcode() {
        Some(40029) => AppError::bad_request(
            "wechat_code_invalid",
            "the login code is invalid or has expired; call wx.login() again",
        ),
        Some(40163) => AppError::bad_request(
            "wechat_code_used",
            "the login code was already used; call wx.login() again",
        ),
        Some(40226) => AppError::forbidden(
            "wechat_login_blocked",
            "WeChat refused this login for security reasons",
        ),
        Some(45011) => AppError::RateLimited {
            retry_after_secs: 60,
            message: "WeChat's login quota for this user is used up; try again in a minute".into(),
        },
        _ => {
            tracing::warn!(error = %err, "code2session failed");
            AppError::unavailable(
                "wechat_unavailable",
                "WeChat is not answering; try again shortly",
            )
        }
    }
}

/// `POST /api/v1/auth/wechat-login`: exchange the code, create the user on first login, open a session.
pub async fn wechat_login(
    state: &AppState,
    code: &str,
    ip: Option<IpAddr>,
) -> AppResult<LoginOutcome> {
    validate_code(code)?;
    if let Some(ip) = ip {
        let limit = state.config.login_rate_per_ip_per_minute as u64;
        rate_limit(
            &state.kv,
            &format!("rl:login:ip:{ip}"),
            limit,
            Duration::from_secs(60),
            "login attempts",
        )
        .await?;
    }
    let code_key = format!("rl:login:code:{}", util::sha256_hex(code.as_bytes()));
    rate_limit(
        &state.kv,
        &code_key,
        3,
        Duration::from_secs(600),
        "attempts with this code",
    )
    .await?;

    let session = state.wechat.code2session(code).await.map_err(login_error)?;
    let (user, is_new_user) =
        users::find_or_create_by_openid(&state.db, &session.openid, session.unionid).await?;
    if user.is_banned(util::now()) {
        return Err(super::extract::banned_error(&user));
    }
    if user.status == user::Status::Deleted {
        return Err(AppError::forbidden(
            "account_deleted",
            "this account was deleted",
        ));
    }
    users::touch_login(&state.db, user.id).await?;
    let (token, expires_at) = state.sessions.create(user.id).await?;
    tracing::info!(user_id = user.id, is_new_user, "student logged in");
    Ok(LoginOutcome {
        token,
        expires_at,
        user,
        is_new_user,
    })
}

/// What happens, after the commit, when a student is banned: every session ends at once, so the next request
/// with any of their tokens gets 401 (and a new login 403 `account_banned`), and their live chat sockets get an
/// `account_banned` error frame and close, on every instance (a kick event on the chat bus).
///
/// This is the one "user banned" hook: anything else that must react to a ban at once belongs here too.
pub async fn on_user_banned(state: &AppState, user_id: i64) -> AppResult<()> {
    let ended = state.sessions.revoke_all(user_id).await?;
    // Live chat sockets close too, on every instance.
    state.chat.kick(
        user_id,
        &crate::chat::ws::error_frame(
            "account_banned",
            "this account has been banned; the connection is closed",
            None,
        ),
    );
    tracing::info!(user_id, sessions_ended = ended, "user banned");
    Ok(())
}
