//! campus_trade: the second-hand market of a university campus.
//!
//! This crate is the whole service: the student API under `/api/v1`, the operator API under `/admin/api/v1`,
//! the built-in WeChat sandbox under `/sandbox/wechat` and `/sandbox/wechatpay` (sandbox mode only), WeChat's
//! message push at `/wechat/push`, uploaded media under `/media`, and health probes. [`App::build`] wires it
//! from a [`Config`]; the
//! binary and the black-box tests both start the service through [`App`].
//! `docs/architecture.md` explains how the pieces fit.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod config;
pub mod db;
pub mod error;
pub mod forum;
pub mod health;
pub mod images;
pub mod jobs;
pub mod kv;
pub mod listings;
pub mod moderation;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod reviews;
pub mod search;
pub mod settings;
pub mod state;
pub mod stats;
pub mod storage;
pub mod users;
pub mod util;
pub mod web;
pub mod wechat;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use poem::{EndpointExt, Route, listener::Acceptor};
use poem_openapi::OpenApiService;

pub use config::Config;
pub use state::AppState;

use crate::{
    auth::sessions::SessionStore,
    kv::Kv,
    wechat::{MiniProgram, SANDBOX_APPID, SANDBOX_SECRET, sandbox::Sandbox},
};

/// The student API's OpenAPI service: every operation the Mini Program may call.
pub fn student_api() -> OpenApiService<StudentApis, ()> {
    OpenApiService::new(student_apis(), "campus_trade student API", env!("CARGO_PKG_VERSION"))
        .description("The API the campus_trade WeChat Mini Program speaks. Money is integer fen; times are UTC RFC 3339.")
        .server("/api")
}

/// Every capability's part of the student API.
pub type StudentApis = (
    auth::api::AuthApi,
    users::api::MeApi,
    users::api::UsersApi,
    users::api::SchoolsApi,
    listings::api::ListingsApi,
    images::api::ImagesApi,
    forum::api::ForumApi,
    moderation::reports::ReportsApi,
    users::blocks::BlocksApi,
    notifications::api::NotificationsApi,
    search::api::SearchApi,
    orders::api::OrdersApi,
    chat::api::ChatApi,
    reviews::api::ReviewsApi,
);

fn student_apis() -> StudentApis {
    (
        auth::api::AuthApi,
        users::api::MeApi,
        users::api::UsersApi,
        users::api::SchoolsApi,
        listings::api::ListingsApi,
        images::api::ImagesApi,
        forum::api::ForumApi,
        moderation::reports::ReportsApi,
        users::blocks::BlocksApi,
        notifications::api::NotificationsApi,
        search::api::SearchApi,
        orders::api::OrdersApi,
        chat::api::ChatApi,
        reviews::api::ReviewsApi,
    )
}

/// The operator API's OpenAPI service: what the operators' web console calls (its own document, security
/// scheme and Swagger UI, apart from the students').
pub fn admin_api() -> OpenApiService<AdminApis, ()> {
    OpenApiService::new(admin_apis(), "campus_trade operator API", env!("CARGO_PKG_VERSION"))
        .description(
            "The API campus operators run the market with. Every operation needs an operator session \
             (`POST /v1/auth/login`) and names the permission it needs; roles grant permissions (see \
             docs/operators.md). Every change is recorded in the audit log. Money is integer fen; times are \
             UTC RFC 3339.",
        )
        .server("/admin/api")
}

/// Every capability's part of the operator API.
pub type AdminApis = (
    admin::accounts::SessionApi,
    admin::accounts::OperatorsApi,
    admin::audit::AuditApi,
    admin::moderation::ModerationApi,
    admin::users::UsersApi,
    admin::users::VerificationApi,
    admin::catalogue::CatalogueApi,
    admin::forum::ForumModerationApi,
    admin::reviews::ReviewModerationApi,
    admin::orders::OrdersApi,
    admin::settings::SettingsApi,
    admin::stats::StatsApi,
);

fn admin_apis() -> AdminApis {
    (
        admin::accounts::SessionApi,
        admin::accounts::OperatorsApi,
        admin::audit::AuditApi,
        admin::moderation::ModerationApi,
        admin::users::UsersApi,
        admin::users::VerificationApi,
        admin::catalogue::CatalogueApi,
        admin::forum::ForumModerationApi,
        admin::reviews::ReviewModerationApi,
        admin::orders::OrdersApi,
        admin::settings::SettingsApi,
        admin::stats::StatsApi,
    )
}

/// Body limit of the image upload route: the 10 MiB file plus room for the multipart framing.
pub const IMAGE_UPLOAD_BODY_LIMIT: usize = images::process::MAX_UPLOAD_BYTES + 512 * 1024;

/// A configured, migrated service, ready to serve on its listener.
pub struct App {
    pub state: AppState,
    pub local_addr: SocketAddr,
    acceptor: poem::listener::TcpAcceptor,
}

impl App {
    /// Binds the listener, connects to the database (and Redis), runs migrations and builds the state.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        use poem::listener::Listener;
        let acceptor = poem::listener::TcpListener::bind(config.bind)
            .into_acceptor()
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("listener has no socket address")?;

        let db = db::connect(&config).await?;
        db::migrate(&db).await?;

        let kv = match &config.redis_url {
            Some(url) => Kv::redis(url.expose(), &config.redis_key_prefix).await?,
            None => Kv::local(),
        };
        let sessions = match &kv {
            Kv::Redis(redis) => SessionStore::Redis {
                redis: redis.clone(),
                ttl: config.session_ttl,
            },
            Kv::Local(_) => SessionStore::Database {
                db: db.clone(),
                ttl: config.session_ttl,
            },
        };

        let loopback = match local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            other => other,
        };
        let public_base_url = config
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{loopback}"));

        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("campus-trade/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let (wechat, sandbox) = match &config.wechat {
            config::WechatMode::Sandbox => {
                let base = config
                    .wechat_api_base
                    .clone()
                    .unwrap_or_else(|| format!("http://{loopback}/sandbox/wechat"));
                tracing::warn!(
                    api_base = %base,
                    "WECHAT_APPID is not set: running in SANDBOX MODE. Logins and payments are simulated by the \
                     built-in fake WeChat; set WECHAT_APPID and WECHAT_SECRET for the real one."
                );
                let client = MiniProgram::new(
                    http.clone(),
                    base,
                    SANDBOX_APPID.into(),
                    config::Secret::new(SANDBOX_SECRET),
                    kv.clone(),
                );
                let push_token = config
                    .wechat_push_token
                    .as_ref()
                    .map(|t| t.expose().to_string())
                    .unwrap_or_default();
                let sandbox = Sandbox::new(
                    SANDBOX_APPID,
                    SANDBOX_SECRET,
                    &format!("{public_base_url}/wechat/push"),
                    &push_token,
                );
                (client, Some(sandbox))
            }
            config::WechatMode::Real { appid, secret } => {
                if config.wechat_push_token.is_none() {
                    tracing::warn!(
                        "WECHAT_PUSH_TOKEN is not set: WeChat's message push to /wechat/push is refused, so image \
                         checks never get their verdict. Set it to the Token of the Mini Program's message push \
                         (开发管理 → 消息推送); see docs/content-security.md."
                    );
                }
                let base = config
                    .wechat_api_base
                    .clone()
                    .unwrap_or_else(|| "https://api.weixin.qq.com".into());
                (
                    MiniProgram::new(
                        http.clone(),
                        base,
                        appid.clone(),
                        secret.clone(),
                        kv.clone(),
                    ),
                    None,
                )
            }
        };

        let (pay, pay_sandbox) =
            wechat::pay::setup(&config, wechat.appid(), &public_base_url, loopback)?;
        let chat = Arc::new(chat::Chat::new(&config, &kv).await?);

        let media_dir = config.data_dir.join("media");
        let storage = storage::LocalStorage::new(&media_dir)
            .with_context(|| format!("creating the media folder {}", media_dir.display()))?;

        let write_gate = db::WriteGate::for_backend(db.get_database_backend());
        let state = AppState::new(state::Inner {
            config,
            db,
            kv,
            sessions,
            wechat,
            sandbox,
            public_base_url,
            catalogue: Default::default(),
            views: Default::default(),
            storage: Arc::new(storage),
            search: Default::default(),
            settings: Default::default(),
            pay,
            pay_sandbox,
            chat,
            write_gate,
        });
        // Load the segmentation dictionary now, off the async threads, not in the first search.
        tokio::task::spawn_blocking(search::segment::warm_up);
        Ok(Self {
            state,
            local_addr,
            acceptor,
        })
    }

    /// The whole HTTP application: API, docs, sandbox, probes, and the shared middleware.
    pub fn endpoint(state: &AppState) -> impl poem::Endpoint<Output = poem::Response> + 'static {
        let api = student_api();
        let admin = admin_api();
        let mut route = Route::new()
            // The chat socket is a plain poem route (not OpenAPI); the exact path wins over the `/api` nest.
            .at("/api/v1/ws", poem::get(chat::ws::connect))
            .nest("/api/docs", api.swagger_ui())
            .nest("/api/openapi.json", api.spec_endpoint())
            .nest("/api", api)
            .nest("/admin/api/docs", admin.swagger_ui())
            .nest("/admin/api/openapi.json", admin.spec_endpoint())
            .nest("/admin/api", admin)
            .at("/healthz", poem::get(health::healthz))
            .at("/readyz", poem::get(health::readyz))
            .at(
                "/wechat/push",
                poem::get(moderation::push::verify_url).post(moderation::push::receive),
            )
            .at("/media/*key", poem::get(images::api::serve_media))
            // WeChat Pay's notifications need the raw body and headers: a plain handler beside the OpenAPI
            // service (the router prefers this exact path to the `/api` nest).
            .at(
                "/api/v1/payments/wechat/notify",
                poem::post(payments::notify::wechat_notify),
            );
        if let Some(sandbox) = &state.sandbox {
            route = route.nest(
                "/sandbox/wechat",
                wechat::sandbox::routes(Arc::clone(sandbox)),
            );
        }
        if let Some(pay_sandbox) = &state.pay_sandbox {
            route = route.nest(
                "/sandbox/wechatpay",
                wechat::sandbox::pay::routes(Arc::clone(pay_sandbox)),
            );
        }
        route
            .data(state.clone())
            .with(web::BodyLimit {
                default_limit: state.config.max_body_bytes,
                overrides: vec![("/api/v1/images", IMAGE_UPLOAD_BODY_LIMIT)],
            })
            .with(web::RequestContext)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish (up to the grace
    /// period) and closes the database pool.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let jobs = jobs::spawn(state.clone());
        // The sandbox's WeChat Pay notifications (resumed from DATA_DIR after a restart).
        let pay_sandbox = state.pay_sandbox.as_ref().map(|p| p.start());
        let chat_tasks = state.chat.start().await;
        tracing::info!(addr = %self.local_addr, public_base_url = %state.public_base_url, "campus_trade listening");
        let grace = state.config.shutdown_grace;
        // Chat sockets are told to reconnect elsewhere as soon as the shutdown begins.
        let hub = Arc::clone(&state.chat.hub);
        let shutdown = async move {
            shutdown.await;
            hub.shut_down();
        };
        poem::Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(Self::endpoint(&state), shutdown, Some(grace))
            .await
            .context("serving HTTP")?;
        jobs.abort();
        if let Some(task) = pay_sandbox {
            task.abort();
        }
        state.chat.hub.shut_down();
        for task in chat_tasks {
            task.abort();
        }
        // Buffered view counts are written before the pool closes.
        if let Err(e) = state.views.flush(&state.db).await {
            tracing::warn!(error = %e, "could not write the last view counts");
        }
        if let Err(e) = state.search.log.flush(&state.db).await {
            tracing::warn!(error = %e, "could not write the last searches");
        }
        tracing::info!("stopped accepting; closing the database pool");
        state.db.clone().close().await.ok();
        Ok(())
    }
}
