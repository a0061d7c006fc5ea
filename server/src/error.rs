//! The one error type of the service and its single mapping to HTTP.
//!
//! Every failure a client can see is an [`AppError`]: a category (which fixes the HTTP status), a stable
//! snake_case `code` that clients switch on, and a human message. Errors raised by poem or poem-openapi
//! themselves (unknown route, malformed JSON, missing bearer token, …) are translated into the same body by
//! [`into_json_response`], so no response of the service ever has a different error shape.

use std::{collections::BTreeMap, fmt};

use poem::{IntoResponse, Response, error::ResponseError, http::StatusCode};
use poem_openapi::{
    Object,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::ToJSON,
};

/// The JSON body of every error response.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable error code, e.g. `validation_failed`, `not_found`, `rate_limited`.
    pub code: String,
    /// Human-readable explanation; may change wording between releases.
    pub message: String,
    /// For `validation_failed`: the offending fields and what is wrong with each.
    #[oai(skip_serializing_if_is_none)]
    pub fields: Option<BTreeMap<String, String>>,
    /// For `invalid_transition`: the object's status now, which did not allow the change.
    #[oai(skip_serializing_if_is_none)]
    pub current_status: Option<String>,
}

/// What went wrong, by category; the category decides the HTTP status.
#[derive(Debug)]
pub enum AppError {
    /// 400: the request is malformed (unparseable body, bad parameter syntax).
    BadRequest { code: &'static str, message: String },
    /// 422: the request is well-formed but some fields break the rules.
    Validation(BTreeMap<String, String>),
    /// 401: no valid session.
    Unauthorized { code: &'static str, message: String },
    /// 403: authenticated, but not allowed.
    Forbidden { code: &'static str, message: String },
    /// 404: no such object, or the caller may not know it exists.
    NotFound { code: &'static str, message: String },
    /// 409: the object's current state does not allow this.
    Conflict { code: &'static str, message: String },
    /// 409 `invalid_transition`: a state machine refused the change; carries the current status.
    InvalidTransition {
        current: &'static str,
        message: String,
    },
    /// 413: the request body (or an uploaded file in it) is larger than allowed.
    PayloadTooLarge { code: &'static str, message: String },
    /// 415: the body (or an uploaded file) is of a type this operation does not take.
    UnsupportedMediaType { code: &'static str, message: String },
    /// 422 with a specific code: well-formed, but the content cannot be processed (e.g. an image too large to
    /// decode). Field-level rule violations use [`AppError::Validation`] instead.
    Unprocessable { code: &'static str, message: String },
    /// 429: slow down; retry after the given number of seconds.
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// 503: a dependency (WeChat, the database) is unavailable; the request may be retried.
    Unavailable { code: &'static str, message: String },
    /// 500: a bug or an unexpected failure. The cause is logged, never shown.
    Internal(anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized {
            code: "unauthorized",
            message: message.into(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(what: &str) -> Self {
        Self::NotFound {
            code: "not_found",
            message: format!("{what} not found"),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
    pub fn payload_too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::PayloadTooLarge {
            code,
            message: message.into(),
        }
    }
    pub fn unsupported_media_type(code: &'static str, message: impl Into<String>) -> Self {
        Self::UnsupportedMediaType {
            code,
            message: message.into(),
        }
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code,
            message: message.into(),
        }
    }
    /// A validation failure of a single field.
    pub fn invalid_field(field: &str, problem: impl Into<String>) -> Self {
        Self::Validation(BTreeMap::from([(field.to_string(), problem.into())]))
    }
    /// `Ok` when no field has a problem, else one 422 naming every field that has.
    pub fn check_fields(problems: BTreeMap<String, String>) -> AppResult<()> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Self::Validation(problems))
        }
    }
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } | Self::InvalidTransition { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::PayloadTooLarge { code, .. }
            | Self::UnsupportedMediaType { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::Validation(_) => "validation_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body this error answers with.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Self::BadRequest { message, .. }
            | Self::Unauthorized { message, .. }
            | Self::Forbidden { message, .. }
            | Self::NotFound { message, .. }
            | Self::Conflict { message, .. }
            | Self::InvalidTransition { message, .. }
            | Self::PayloadTooLarge { message, .. }
            | Self::UnsupportedMediaType { message, .. }
            | Self::Unprocessable { message, .. }
            | Self::RateLimited { message, .. }
            | Self::Unavailable { message, .. } => message.clone(),
            Self::Validation(fields) => {
                let names: Vec<&str> = fields.keys().map(String::as_str).collect();
                format!("invalid value for {}", names.join(", "))
            }
            Self::Internal(_) => match crate::web::current_request_id() {
                Some(id) => format!("internal error (request id {id})"),
                None => "internal error".into(),
            },
        };
        let fields = match self {
            Self::Validation(fields) => Some(fields.clone()),
            _ => None,
        };
        let current_status = match self {
            Self::InvalidTransition { current, .. } => Some(current.to_string()),
            _ => None,
        };
        ErrorBody {
            code: self.code().into(),
            message,
            fields,
            current_status,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internal(cause) => write!(f, "internal error: {cause:#}"),
            other => write!(f, "{}: {}", other.code(), other.body().message),
        }
    }
}

impl std::error::Error for AppError {}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(err.into())
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(err: sea_orm::TransactionError<AppError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}

impl ResponseError for AppError {
    fn status(&self) -> StatusCode {
        AppError::status(self)
    }

    fn as_response(&self) -> Response {
        if let Self::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut resp = json_response(self.status(), &self.body());
        if let Self::RateLimited {
            retry_after_secs, ..
        } = self
        {
            resp.headers_mut()
                .insert("retry-after", (*retry_after_secs).max(1).into());
        }
        resp
    }
}

/// Documents the error responses every operation may give; they all share the [`ErrorBody`] schema.
impl poem_openapi::ApiResponse for AppError {
    fn meta() -> MetaResponses {
        let described: [(u16, &'static str); 11] = [
            (400, "Malformed request (`invalid_request` and friends)."),
            (401, "Missing, invalid or expired session (`unauthorized`)."),
            (403, "Not allowed (`forbidden`, `account_banned`, …)."),
            (404, "No such object (`not_found`)."),
            (
                409,
                "The object's state does not allow this (a specific code says why).",
            ),
            (
                413,
                "The body or an uploaded file is too large (`payload_too_large`).",
            ),
            (
                415,
                "The body or an uploaded file is of a type this operation does not take.",
            ),
            (
                422,
                "Validation failed (`validation_failed`, with `fields`), or the content cannot be processed (a specific code says why).",
            ),
            (
                429,
                "Too many requests (`rate_limited`); see the `Retry-After` header.",
            ),
            (500, "Internal error; the message carries the request id."),
            (
                503,
                "A dependency (WeChat, database) is unavailable; retry later.",
            ),
        ];
        MetaResponses {
            responses: described
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json",
                        schema: <ErrorBody as poem_openapi::types::Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorBody as poem_openapi::types::Type>::register(registry);
    }
}

fn json_response(status: StatusCode, body: &ErrorBody) -> Response {
    let json = body.to_json_string();
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}

/// Turns any error that reached the top of the router into the uniform JSON body. Errors that poem and
/// poem-openapi produce themselves are classified by status.
pub fn into_json_response(err: poem::Error) -> Response {
    if let Some(app) = err.downcast_ref::<AppError>() {
        return app.as_response();
    }
    let status = err.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "method not allowed on this route".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "request body is too large".to_string())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", err.to_string()),
        StatusCode::UNAUTHORIZED => (
            "unauthorized",
            "a valid `Authorization: Bearer <token>` is required".to_string(),
        ),
        s if s.is_client_error() => ("invalid_request", err.to_string()),
        _ => {
            tracing::error!(error = %err, status = status.as_u16(), "unhandled framework error");
            let message = match crate::web::current_request_id() {
                Some(id) => format!("internal error (request id {id})"),
                None => "internal error".into(),
            };
            ("internal", message)
        }
    };
    json_response(
        status,
        &ErrorBody {
            code: code.into(),
            message,
            fields: None,
            current_status: None,
        },
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_its_status_and_code() {
        assert_eq!(
            AppError::invalid_field("nickname", "too long").status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(AppError::not_found("user").code(), "not_found");
        let limited = AppError::RateLimited {
            retry_after_secs: 7,
            message: "slow down".into(),
        };
        let resp = limited.as_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = AppError::internal(anyhow::anyhow!("password=hunter2 connection refused"));
        let body = err.body();
        assert_eq!(body.code, "internal");
        assert!(!body.message.contains("hunter2"));
    }
}
