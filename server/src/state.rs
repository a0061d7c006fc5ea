//! What every handler shares: configuration, the database pool, the key-value store, the session store, the
//! WeChat clients and the file storage. Cheap to clone (one `Arc`).

use std::{ops::Deref, sync::Arc};

use sea_orm::DatabaseConnection;

use crate::{
    auth::sessions::SessionStore,
    config::Config,
    kv::Kv,
    storage::Storage,
    wechat::{MiniProgram, sandbox::Sandbox},
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: DatabaseConnection,
    pub kv: Kv,
    pub sessions: SessionStore,
    pub wechat: MiniProgram,
    /// The fake WeChat, present in sandbox mode only.
    pub sandbox: Option<Arc<Sandbox>>,
    /// The externally visible base URL (configured, or derived from the bound address).
    pub public_base_url: String,
    /// Categories, schools, campuses and places, cached.
    pub catalogue: crate::listings::catalogue::Catalogue,
    /// View counts waiting to be written.
    pub views: crate::listings::service::ViewBuffer,
    /// Uploaded files (local folder `DATA_DIR/media/` by default).
    pub storage: Arc<dyn Storage>,
    /// WeChat Pay API v3 (the real merchant, or the sandbox's).
    pub pay: crate::wechat::pay::WechatPay,
    /// Search's buffers and caches (query log, suggestion vocabularies, hot lists).
    pub search: crate::search::SearchState,
    /// Site settings operators change at run time, cached (read them with `crate::settings::current`).
    pub settings: crate::settings::SettingsCache,
    /// The fake WeChat Pay under `/sandbox/wechatpay`, present when WeChat Pay is the sandbox.
    pub pay_sandbox: Option<Arc<crate::wechat::sandbox::pay::PaySandbox>>,
    /// Chat's runtime: this instance's sockets, the bus to the other instances, presence, contact rules.
    pub chat: Arc<crate::chat::Chat>,
    /// On SQLite, hot write paths queue here for the single writer slot (see [`crate::db::WriteGate`]).
    pub write_gate: crate::db::WriteGate,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
