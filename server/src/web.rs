//! HTTP plumbing shared by every route: request ids and the per-request log line, the body size limit, the
//! translation of every error into the JSON error body, and the caller's IP address.

use std::{net::IpAddr, time::Instant};

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::StatusCode};
use tracing::Instrument;

use crate::error::{AppError, into_json_response};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served by this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Gives every request an id (the caller's `x-request-id` when it is sane, else a fresh one), runs it inside a
/// tracing span, turns errors into JSON bodies, echoes the id in `x-request-id`, and writes one log line with
/// method, path, status and latency. Query strings are never logged: they may carry tokens.
pub struct RequestContext;

impl<E: Endpoint> Middleware<E> for RequestContext {
    type Output = RequestContextEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        RequestContextEndpoint { inner }
    }
}

pub struct RequestContextEndpoint<E> {
    inner: E,
}

fn sane_request_id(value: &str) -> bool {
    (8..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<E: Endpoint> Endpoint for RequestContextEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| sane_request_id(v))
            .map(str::to_string)
            .unwrap_or_else(|| crate::util::random_token(12));
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = tracing::info_span!("request", id = %id, method = %method, path = %path);
        let started = Instant::now();
        let inner = &self.inner;
        let mut resp = REQUEST_ID
            .scope(
                id.clone(),
                async move {
                    match inner.call(req).await {
                        Ok(resp) => resp.into_response(),
                        Err(err) => into_json_response(err),
                    }
                }
                .instrument(span.clone()),
            )
            .await;
        if let Ok(value) = id.parse() {
            resp.headers_mut().insert("x-request-id", value);
        }
        let status = resp.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        span.in_scope(|| {
            if status >= 500 {
                tracing::warn!(status, latency_ms, "request finished");
            } else {
                tracing::info!(status, latency_ms, "request finished");
            }
        });
        Ok(resp)
    }
}

/// Refuses request bodies larger than the limit with 413 `payload_too_large`: when `Content-Length` says so, and
/// by reading at most `limit` bytes when the body is chunked.
///
/// A declared body of up to [`DRAIN_MAX_BYTES`] is read and thrown away before the 413 is sent: a server that
/// answers while the client is still sending closes the connection on it, and most clients (`wx.uploadFile`
/// among them) then report a network failure instead of the 413. Larger bodies are cut off at once.
pub struct BodyLimit {
    pub default_limit: usize,
    /// Path prefixes that take a larger body (uploads), with their limit.
    pub overrides: Vec<(&'static str, usize)>,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            default_limit: self.default_limit,
            overrides: self.overrides.clone(),
        }
    }
}

/// Largest oversized body that is drained so the client sees its 413 (see [`BodyLimit`]).
pub const DRAIN_MAX_BYTES: usize = 32 * 1024 * 1024;
/// How long draining an oversized body may take before the connection is cut.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct BodyLimitEndpoint<E> {
    inner: E,
    default_limit: usize,
    overrides: Vec<(&'static str, usize)>,
}

fn too_large(limit: usize) -> poem::Error {
    poem::Error::from_string(
        format!("request body exceeds {limit} bytes"),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let path = req.uri().path();
        let limit = self
            .overrides
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, limit)| *limit)
            .unwrap_or(self.default_limit);
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match declared {
            Some(len) if len > limit => {
                if len <= DRAIN_MAX_BYTES {
                    let mut body = req.take_body().into_async_read();
                    let mut sink = tokio::io::sink();
                    let drain = tokio::io::copy(&mut body, &mut sink);
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
                }
                return Err(too_large(limit));
            }
            Some(_) => {}
            None if req
                .headers()
                .contains_key(poem::http::header::TRANSFER_ENCODING) =>
            {
                let body = req.take_body();
                let bytes = body
                    .into_bytes_limit(limit)
                    .await
                    .map_err(|_| too_large(limit))?;
                req.set_body(bytes);
            }
            None => {}
        }
        self.inner.call(req).await
    }
}

/// The address of the caller: the socket peer, or the first `X-Forwarded-For` hop when the service is told to
/// trust its proxy (behind a load balancer).
pub fn client_ip(req: &Request, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    req.remote_addr().as_socket_addr().map(|a| a.ip())
}

/// Translate an [`AppError`] into a poem error (for plain poem handlers outside the OpenAPI service).
pub fn err(e: AppError) -> poem::Error {
    poem::Error::from(e)
}
