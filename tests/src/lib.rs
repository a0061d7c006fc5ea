//! Test harness: boots the real campus_trade application on a random port, with a fresh database and the
//! WeChat sandbox, and talks HTTP to it the way the Mini Program does.
//!
//! Every test runs on the embedded default (SQLite file in a temporary folder, sessions in it, in-process caches). When
//! `TEST_DATABASE_URL` / `TEST_REDIS_URL` are set, [`app_test!`] also runs it on PostgreSQL (a schema of its own,
//! dropped afterwards) and Redis (a key prefix of its own, deleted afterwards).

pub mod bench;
pub mod seed;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};

use campus_trade::{App, AppState, Config};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Which deployment shape a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (sessions included), in-process caches.
    Embedded,
    /// PostgreSQL (`TEST_DATABASE_URL`) and Redis (`TEST_REDIS_URL`), whichever are set.
    Scaled,
}

/// Declares a test that runs once per backend: `app_test!(async fn name(backend) { ... })`.
#[macro_export]
macro_rules! app_test {
    ($(#[$attr:meta])* async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$attr])*
            async fn run($backend: $crate::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::Backend::Embedded).await
            }

            #[cfg(scaled_backend)]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                run($crate::Backend::Scaled).await
            }
        }
    };
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::random();
    format!("{prefix}{}_{n}_{r:08x}", std::process::id())
}

/// A running application and a client for it.
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _cleanup: Cleanup,
    _dir: tempfile::TempDir,
}

/// A logged-in student.
#[derive(Debug, Clone)]
pub struct Student {
    pub token: String,
    pub id: i64,
    pub who: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the application with extra settings on top of the test defaults.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars: Vec<(String, String)> = vec![
            ("BIND".into(), "127.0.0.1:0".into()),
            ("DATA_DIR".into(), dir.path().display().to_string()),
            ("SHUTDOWN_GRACE_SECONDS".into(), "2".into()),
        ];
        let mut cleanup = Cleanup::default();
        if backend == Backend::Scaled {
            if let Ok(url) = std::env::var("TEST_DATABASE_URL").map(|u| u.trim().to_string())
                && !url.is_empty()
            {
                let schema = unique("t_");
                vars.push(("DATABASE_URL".into(), url.clone()));
                vars.push(("DATABASE_SCHEMA".into(), schema.clone()));
                vars.push(("DATABASE_MAX_CONNECTIONS".into(), "5".into()));
                cleanup.pg = Some((url, schema));
            }
            if let Ok(url) = std::env::var("TEST_REDIS_URL").map(|u| u.trim().to_string())
                && !url.is_empty()
            {
                let prefix = format!("{}:", unique("ct_test_"));
                vars.push(("REDIS_URL".into(), url.clone()));
                vars.push(("REDIS_KEY_PREFIX".into(), prefix.clone()));
                cleanup.redis = Some((url, prefix));
            }
        }
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            vars.push((k.to_string(), v.to_string()));
        }
        let config = Config::from_vars(vars).expect("test configuration");
        let app = App::build(config).await.expect("application starts");
        let base = format!("http://{}", app.local_addr);
        let state = app.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder().build().expect("client");
        Self {
            base,
            state,
            http,
            shutdown: Some(tx),
            server: Some(server),
            _cleanup: cleanup,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status, headers and JSON body
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, json)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (s, _, b) = self.send(Method::GET, path, token, None).await;
        (s, b)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let (s, _, b) = self.send(Method::POST, path, token, Some(body)).await;
        (s, b)
    }

    pub async fn patch(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let (s, _, b) = self.send(Method::PATCH, path, token, Some(body)).await;
        (s, b)
    }

    /// Uploads a file as `wx.uploadFile` does: `multipart/form-data` with one file field named `file`.
    pub async fn upload_file(
        &self,
        token: Option<&str>,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> (StatusCode, Value) {
        const BOUNDARY: &str = "----campusTradeTestBoundary7MA4YWxkTrZu0gW";
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let mut req = self
            .http
            .post(self.url("/api/v1/images"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("upload sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Logs in as the sandbox WeChat user `who` with a fresh code.
    pub async fn login(&self, who: &str) -> Student {
        let code = format!("{who}-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        let (status, body) = self
            .post(
                "/api/v1/auth/wechat-login",
                None,
                &serde_json::json!({ "code": code }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login as {who} failed: {body}");
        Student {
            token: body["token"].as_str().expect("token").to_string(),
            id: body["user"]["id"].as_i64().expect("user id"),
            who: who.to_string(),
        }
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Drops the test's PostgreSQL schema and Redis keys, even when the test panicked.
#[derive(Default)]
struct Cleanup {
    pg: Option<(String, String)>,
    redis: Option<(String, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let pg = self.pg.take();
        let redis = self.redis.take();
        if pg.is_none() && redis.is_none() {
            return;
        }
        // A runtime of its own: Drop may run inside or outside the test's runtime.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Some((url, schema)) = pg {
                    use sea_orm::ConnectionTrait;
                    if let Ok(db) = sea_orm::Database::connect(url).await {
                        let _ = db
                            .execute_unprepared(&format!(
                                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                            ))
                            .await;
                        let _ = db.close().await;
                    }
                }
                if let Some((url, prefix)) = redis
                    && let Ok(client) = redis::Client::open(url)
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            });
        });
        let _ = done.join();
    }
}
