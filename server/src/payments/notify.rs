//! `POST /api/v1/payments/wechat/notify`: where WeChat Pay delivers payment, refund and transfer notifications.
//!
//! A plain poem handler (not an OpenAPI operation) because verification needs the RAW body bytes and the
//! `Wechatpay-*` headers exactly as sent. Verified and applied → 204 with no body (WeChat's success); anything
//! else → 4xx/5xx with `{"code","message"}`, and WeChat delivers again on its retry schedule. Applying is
//! idempotent, so duplicates are harmless. Refusals are logged as warnings only (WeChat's `WECHATPAY/SIGNTEST/`
//! signature probes are expected to be refused).

use poem::{
    Body, IntoResponse, Request, Response, error::ResponseError, handler, http::StatusCode,
    web::Data,
};

use super::{payouts, refunds, service};
use crate::{
    error::AppError,
    state::AppState,
    wechat::pay::{NotificationResource, NotifyError, NotifyHeaders},
};

/// The refusal of a notification that did not verify.
fn refusal(e: &NotifyError) -> AppError {
    let message = e.to_string();
    match e {
        NotifyError::BadSignature => AppError::Unauthorized {
            code: "invalid_signature",
            message,
        },
        NotifyError::UnknownSerial(_) => AppError::Unauthorized {
            code: "unknown_serial",
            message,
        },
        NotifyError::MissingHeader(_) => AppError::bad_request("missing_header", message),
        NotifyError::StaleTimestamp => AppError::Unauthorized {
            code: "stale_timestamp",
            message,
        },
        NotifyError::Decrypt => AppError::bad_request("undecryptable", message),
        NotifyError::Malformed(_) => AppError::bad_request("malformed_notification", message),
    }
}

/// Receives one WeChat Pay notification.
#[handler]
pub async fn wechat_notify(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let state = state.0;
    let raw = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            return AppError::bad_request("unreadable_body", e.to_string()).as_response();
        }
    };
    let headers = NotifyHeaders::from_header_map(req.headers());
    let now = chrono::Utc::now().timestamp();
    let n = match state.pay.parse_notification(&headers, &raw, now) {
        Ok(n) => n,
        Err(e) => {
            let probe = headers
                .signature
                .as_deref()
                .is_some_and(|s| s.starts_with("WECHATPAY/SIGNTEST/"));
            if probe {
                tracing::warn!(
                    "WeChat Pay signature probe (WECHATPAY/SIGNTEST) refused, as expected"
                );
            } else {
                tracing::warn!(error = %e, serial = ?headers.serial, "WeChat Pay notification refused");
            }
            return refusal(&e).as_response();
        }
    };
    let result = match &n.resource {
        NotificationResource::Transaction(tx) if n.event_type == "TRANSACTION.SUCCESS" => {
            service::apply_transaction(state, tx, "notification")
                .await
                .map(|_| ())
        }
        NotificationResource::Refund(r) => refunds::apply(state, r).await,
        NotificationResource::Transfer(b) => payouts::apply_bill(state, b).await,
        NotificationResource::Transaction(_) | NotificationResource::Other(_) => {
            tracing::info!(id = %n.id, event_type = %n.event_type, "WeChat Pay notification acknowledged without action");
            Ok(())
        }
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            if !matches!(e, AppError::Internal(_)) {
                tracing::warn!(id = %n.id, event_type = %n.event_type, error = %e, "WeChat Pay notification not applied");
            }
            e.as_response()
        }
    }
}
