//! Test harness: boots the real campus_trade application on a random port, with a fresh database and the
//! WeChat sandbox, and talks HTTP to it the way the Mini Program does.
//!
//! Every test runs on the embedded default (SQLite file in a temporary folder, sessions in it, in-process caches). When
//! `TEST_DATABASE_URL` / `TEST_REDIS_URL` are set, [`app_test!`] also runs it on PostgreSQL (a schema of its own,
//! dropped afterwards) and Redis (a key prefix of its own, deleted afterwards).

pub mod bench;
pub mod chatbench;
pub mod seed;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};

use campus_trade::{
    App, AppState, Config,
    admin::{auth::Role, operators},
};
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
    /// The settings it was started with (a restart reuses them).
    vars: Vec<(String, String)>,
    _cleanup: Cleanup,
    _dir: Option<tempfile::TempDir>,
}

type Running = (
    String,
    AppState,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// Builds and starts the application from `vars`.
async fn boot(vars: Vec<(String, String)>) -> anyhow::Result<Running> {
    let config = Config::from_vars(vars)?;
    let app = App::build(config).await?;
    let base = format!("http://{}", app.local_addr);
    let state = app.state.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    Ok((base, state, tx, server))
}

/// A logged-in student.
#[derive(Debug, Clone)]
pub struct Student {
    pub token: String,
    pub id: i64,
    pub who: String,
}

/// A logged-in operator (see [`TestApp::operator_account`]).
#[derive(Debug, Clone)]
pub struct TestOperator {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub token: String,
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
        let (base, state, tx, server) = boot(vars.clone()).await.expect("application starts");
        let http = reqwest::Client::builder().build().expect("client");
        Self {
            base,
            state,
            http,
            shutdown: Some(tx),
            server: Some(server),
            vars,
            _cleanup: cleanup,
            _dir: Some(dir),
        }
    }

    /// Stops the server gracefully and starts it again on the same port, with the same settings, data folder,
    /// database and Redis prefix — as an operator restarting the service would. The port stays, so URLs
    /// handed out before the restart (WeChat Pay's `notify_url`) still reach it.
    pub async fn restart(mut self) -> TestApp {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        let port = self
            .base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("port of the base URL");
        let mut vars = self.vars.clone();
        vars.retain(|(k, _)| k != "BIND");
        vars.push(("BIND".into(), format!("127.0.0.1:{port}")));
        // The old socket may take a moment to be released.
        let mut tries = 0;
        let (base, state, tx, server) = loop {
            match boot(vars.clone()).await {
                Ok(running) => break running,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("application restarts on port {port}: {e:#}"),
            }
        };
        self.base = base;
        self.state = state;
        self.shutdown = Some(tx);
        self.server = Some(server);
        self.vars = vars;
        self
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

    /// Logs in as `who` and joins the seeded demo school (first campus), ready to sell and buy.
    pub async fn demo_student(&self, who: &str) -> Student {
        let student = self.login(who).await;
        let (_, schools) = self.get("/api/v1/schools", None).await;
        let school = schools
            .as_array()
            .expect("schools")
            .iter()
            .find(|s| s["slug"] == "demo-university")
            .expect("the demo school is seeded");
        let body = serde_json::json!({
            "school_id": school["id"], "campus_id": school["campuses"][0]["id"],
        });
        let (status, me) = self.patch("/api/v1/me", Some(&student.token), &body).await;
        assert_eq!(status, StatusCode::OK, "joining the demo school: {me}");
        student
    }

    /// Publishes an on-sale listing of `seller` (a demo-school student) in the lamps category with one small
    /// photo; returns its id.
    pub async fn sell(&self, seller: &Student, title: &str, price: i64) -> i64 {
        let img = image::RgbImage::from_fn(24, 24, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 10) as u8, 120])
        });
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png)
            .expect("png");
        let (status, up) = self
            .upload_file(
                Some(&seller.token),
                "item.png",
                "image/png",
                &png.into_inner(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "upload: {up}");
        let (_, cats) = self.get("/api/v1/categories", None).await;
        let lamps = cats
            .as_array()
            .expect("categories")
            .iter()
            .flat_map(|c| c["children"].as_array().into_iter().flatten())
            .find(|c| c["slug"] == "lamps")
            .expect("the lamps category is seeded")["id"]
            .clone();
        let body = serde_json::json!({
            "title": title, "description": "宿舍自用，成色不错", "price": price, "condition": "good",
            "category_id": lamps, "image_ids": [up["id"]], "trade_methods": ["meetup"],
        });
        let (status, listing) = self
            .post("/api/v1/listings", Some(&seller.token), &body)
            .await;
        assert_eq!(status, StatusCode::OK, "publishing {title}: {listing}");
        listing["id"].as_i64().expect("listing id")
    }

    /// Creates an operator account through the service (as `campus-trade operator create` does) and logs it in
    /// through the operator API; returns the session token.
    pub async fn operator(&self, role: Role, schools: Option<&[i64]>) -> String {
        self.operator_account(role, schools).await.token
    }

    /// [`TestApp::operator`], with the account's id, username and password.
    pub async fn operator_account(&self, role: Role, schools: Option<&[i64]>) -> TestOperator {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let username = format!("{}-{n}", role.as_str());
        let password = format!("pw-{username}-correct-horse");
        let created = operators::create_from_cli(
            &self.state.db,
            operators::NewOperator {
                username: username.clone(),
                password: password.clone(),
                role,
                schools: schools.map(<[i64]>::to_vec),
            },
        )
        .await
        .expect("operator created");
        let token = self.operator_login(&username, &password).await;
        TestOperator {
            id: created.id,
            username,
            password,
            token,
        }
    }

    /// Logs an operator in through `POST /admin/api/v1/auth/login`; returns the token.
    pub async fn operator_login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/admin/api/v1/auth/login",
                None,
                &serde_json::json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "operator login failed: {body}");
        body["token"].as_str().expect("token").to_string()
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
