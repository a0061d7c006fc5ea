//! `GET/POST /wechat/push`: WeChat's message push (消息推送) into the service.
//!
//! `GET` is WeChat's URL verification: when `signature` matches, the `echostr` is echoed as the body. `POST`
//! delivers events, in **plaintext mode with the JSON data format** only: safe mode (`encrypt_type=aes`) is
//! refused with `400 encrypted_push_not_supported`. Both check `signature` against `WECHAT_PUSH_TOKEN` and refuse
//! a timestamp more than five minutes from our clock (`401 invalid_signature` / `401 stale_timestamp`, nothing
//! changed). Plain poem handlers: WeChat, not the Mini Program, calls them, so they are not in the student
//! OpenAPI document.

use poem::{
    handler,
    web::{Data, Query},
};
use serde::Deserialize;
use serde_json::Value;

use super::service::{self, MediaEventOutcome};
use crate::{
    error::{AppError, AppResult},
    state::AppState,
    wechat::push::{self, PushRejection},
};

/// The query WeChat adds to every push.
#[derive(Deserialize)]
pub struct PushQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    /// URL verification only.
    echostr: Option<String>,
    /// Safe mode only (`aes`).
    encrypt_type: Option<String>,
    /// Safe mode only.
    msg_signature: Option<String>,
}

fn authenticate(state: &AppState, q: &PushQuery) -> AppResult<()> {
    let Some(token) = &state.config.wechat_push_token else {
        tracing::error!("a WeChat push arrived but WECHAT_PUSH_TOKEN is not set; refusing it");
        return Err(AppError::unavailable(
            "push_not_configured",
            "the message push is not configured on this service",
        ));
    };
    let now = chrono::Utc::now().timestamp();
    match push::verify(
        token.expose(),
        q.signature.as_deref(),
        q.timestamp.as_deref(),
        q.nonce.as_deref(),
        now,
    ) {
        Ok(()) => Ok(()),
        Err(PushRejection::BadSignature) => {
            tracing::warn!("WeChat push refused: bad signature");
            Err(AppError::Unauthorized {
                code: "invalid_signature",
                message: "the push signature does not match the push token".into(),
            })
        }
        Err(PushRejection::StaleTimestamp) => {
            tracing::warn!(timestamp = ?q.timestamp, "WeChat push refused: stale timestamp");
            Err(AppError::Unauthorized {
                code: "stale_timestamp",
                message: "the push timestamp is more than five minutes from the server clock"
                    .into(),
            })
        }
    }
}

/// `GET /wechat/push`: WeChat's URL verification. Answers the raw `echostr` when the signature is valid.
#[handler]
pub fn verify_url(state: Data<&AppState>, Query(q): Query<PushQuery>) -> AppResult<String> {
    authenticate(&state, &q)?;
    let echostr = q
        .echostr
        .ok_or_else(|| AppError::bad_request("invalid_request", "echostr is missing"))?;
    tracing::info!("WeChat push URL verified");
    Ok(echostr)
}

/// `POST /wechat/push`: an event from WeChat. Answers `success` once it is handled (or deliberately ignored).
#[handler]
pub async fn receive(
    state: Data<&AppState>,
    Query(q): Query<PushQuery>,
    body: Vec<u8>,
) -> AppResult<&'static str> {
    authenticate(&state, &q)?;
    if q.encrypt_type.as_deref().is_some_and(|t| t != "raw") || q.msg_signature.is_some() {
        tracing::error!(
            "WeChat push in safe mode (encrypted): not supported; set the push to plaintext mode (明文模式)"
        );
        return Err(AppError::bad_request(
            "encrypted_push_not_supported",
            "encrypted (safe mode) pushes are not supported; use plaintext mode",
        ));
    }
    let event: Value = serde_json::from_slice(&body).map_err(|_| {
        tracing::error!("WeChat push body is not JSON; set the data format to JSON");
        AppError::bad_request("invalid_request", "the push body must be JSON")
    })?;
    let kind = event.get("Event").and_then(Value::as_str).unwrap_or("");
    match kind {
        "wxa_media_check" => match service::record_media_event(&state, &event).await? {
            MediaEventOutcome::Unknown => Err(AppError::NotFound {
                code: "unknown_trace_id",
                message: "no image check has this trace_id".into(),
            }),
            MediaEventOutcome::Decided(_)
            | MediaEventOutcome::AlreadyDecided
            | MediaEventOutcome::Resubmit => Ok("success"),
        },
        other => {
            let msg_type = event.get("MsgType").and_then(Value::as_str).unwrap_or("");
            tracing::info!(event = other, msg_type, "WeChat push ignored");
            Ok("success")
        }
    }
}
