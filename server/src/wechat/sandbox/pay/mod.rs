//! The built-in fake WeChat Pay API v3, mounted under `/sandbox/wechatpay` in sandbox mode (the client's API base
//! there). Like the real one it **verifies** our request signatures (401 `SIGN_ERROR` with the message it
//! expected), **signs** every answer and notification with its own keys (public-key mode by default; certificate
//! mode or a migration with both through `SANDBOX_WECHATPAY_MODE`), encrypts notification resources with the
//! APIv3 key and retries unacknowledged notifications on WeChat's schedule, time-compressed by
//! `SANDBOX_WECHATPAY_TIME_SCALE`.
//!
//! APIs: JSAPI prepay, query (by out_trade_no and by transaction id), close, refunds (+ query, `REFUND.SUCCESS`),
//! transfer bills (+ query, cancel, `MCHTRANSFER.BILL.FINISHED`). The Mini Program side's
//! `upload_shipping_info` is in [`shipping`] (mounted with the rest of `/sandbox/wechat`).
//!
//! What a student's WeChat would do: `POST /pay {"prepay_id"}` pays, `POST /confirm-transfer {"package_info"}`
//! accepts a payout. Test controls live under `/_sandbox/` ([`controls`]). Everything is kept in small JSON files
//! under `DATA_DIR/sandbox/` ([`store`]) so a restart resumes pending deliveries. See `docs/wechat-pay.md`.

mod api;
mod controls;
mod delivery;
pub mod keys;
pub mod shipping;
pub mod store;

use std::{
    collections::HashSet,
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use base64::Engine;
use poem::{Route, get, post};
use rsa::PrivateKey;
use serde_json::Value;

pub use keys::{SANDBOX_MCHID, SandboxKeys};
use store::{Collection, State, Store};

use crate::{
    config::SandboxPayMode,
    wechat::pay::{ClientOptions, PayClientConfig, sign, verify::PlatformKeys},
};

/// WeChat's retry schedule for unacknowledged notifications, in seconds after each failed attempt.
pub const RETRY_SCHEDULE_SECS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

/// How long WeChat takes to process a refund, in (uncompressed) seconds.
const REFUND_PROCESSING_SECS: u64 = 30;

/// What the sandbox is told at start-up.
pub struct SandboxOptions {
    /// The Mini Program appid payments must be made under.
    pub appid: String,
    pub mode: SandboxPayMode,
    pub time_scale: u32,
    /// The service's notify URL (for crafted notifications about unknown orders).
    pub default_notify_url: String,
}

/// The fake WeChat Pay: keys, remembered objects, pending deliveries, injected faults.
pub struct PaySandbox {
    appid: String,
    mode: SandboxPayMode,
    time_scale: u32,
    default_notify_url: String,
    keys: Arc<SandboxKeys>,
    merchant_public: rsa::PublicKey,
    store: Store,
    state: Mutex<State>,
    faults: Mutex<Vec<controls::Fault>>,
    in_flight: Mutex<HashSet<u64>>,
    wake: tokio::sync::Notify,
    http: reqwest::Client,
}

/// Which of its keys the sandbox signs an answer or notification with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignAs {
    PublicKey,
    Certificate,
}

impl SignAs {
    fn name(self) -> &'static str {
        match self {
            SignAs::PublicKey => "public_key",
            SignAs::Certificate => "certificate",
        }
    }
    fn from_name(name: &str) -> Self {
        if name == "certificate" {
            SignAs::Certificate
        } else {
            SignAs::PublicKey
        }
    }
}

impl PaySandbox {
    /// Opens (or starts) the sandbox whose files live in `dir`.
    pub fn open(dir: &Path, opts: SandboxOptions) -> anyhow::Result<Arc<Self>> {
        let store = Store::new(dir)?;
        let keys = SandboxKeys::load_or_create(dir)?;
        let state = store.load()?;
        let pending = state
            .deliveries
            .values()
            .filter(|d| d.state == "pending")
            .count();
        if pending > 0 {
            tracing::info!(
                pending,
                "the WeChat Pay sandbox resumes undelivered notifications"
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // WeChat waits about five seconds for an answer.
            .timeout(Duration::from_secs(5))
            .user_agent("Mozilla/4.0 campus-trade-wechatpay-sandbox")
            .build()
            .unwrap_or_default();
        Ok(Arc::new(Self {
            appid: opts.appid,
            mode: opts.mode,
            time_scale: opts.time_scale.max(1),
            default_notify_url: opts.default_notify_url,
            merchant_public: keys.merchant_key.to_public_key(),
            keys,
            store,
            state: Mutex::new(state),
            faults: Mutex::new(Vec::new()),
            in_flight: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
            http,
        }))
    }

    /// The client configuration that talks to this sandbox: its merchant, its keys, and the WeChat Pay keys of
    /// the configured mode.
    pub fn client_config(&self, appid: &str, o: ClientOptions) -> PayClientConfig {
        PayClientConfig {
            appid: appid.to_string(),
            mchid: SANDBOX_MCHID.into(),
            merchant_serial: self.keys.merchant_serial.clone(),
            merchant_key: self.keys.merchant_key.clone(),
            apiv3_key: self.keys.apiv3.clone(),
            platform: self.platform_keys(),
            api_base: o.api_base,
            notify_url: o.notify_url,
            timeout: o.timeout,
            transfer_scene_id: o.transfer_scene_id,
            transfer_report_infos: o.transfer_report_infos,
        }
    }

    /// The verification keys a merchant of this sandbox configures.
    pub fn platform_keys(&self) -> PlatformKeys {
        let mut platform = PlatformKeys::default();
        if self.mode != SandboxPayMode::Certificate {
            platform.add_public_key(
                &self.keys.public_key_id,
                self.keys.wechatpay_key.to_public_key(),
            );
        }
        if self.mode != SandboxPayMode::PublicKey
            && let Err(e) = platform.add_certificate_pem(&self.keys.platform_cert_pem)
        {
            tracing::error!(error = %e, "the sandbox's own certificate does not parse");
        }
        platform
    }

    /// The sandbox's keys (tests use the merchant key and the APIv3 key).
    pub fn keys(&self) -> &SandboxKeys {
        &self.keys
    }

    pub fn mode(&self) -> SandboxPayMode {
        self.mode
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state and saves the collections it says it touched.
    fn change<R>(&self, f: impl FnOnce(&mut State, &mut Vec<Collection>) -> R) -> R {
        let mut state = self.lock();
        let mut touched = Vec::new();
        let out = f(&mut state, &mut touched);
        touched.dedup();
        if !touched.is_empty() {
            self.store.save(&state, &touched);
        }
        out
    }

    /// `secs` of WeChat's time in milliseconds of ours.
    fn scaled_ms(&self, secs: u64) -> i64 {
        ((secs * 1000) / u64::from(self.time_scale)).max(5) as i64
    }

    fn signer(&self, as_: SignAs) -> (&PrivateKey, &str) {
        match as_ {
            SignAs::PublicKey => (&self.keys.wechatpay_key, &self.keys.public_key_id),
            SignAs::Certificate => (&self.keys.platform_key, &self.keys.platform_serial),
        }
    }

    /// The key of an answer: in migration mode WeChat follows the request's `Wechatpay-Serial`.
    fn response_key(&self, request_serial: Option<&str>) -> SignAs {
        match self.mode {
            SandboxPayMode::PublicKey => SignAs::PublicKey,
            SandboxPayMode::Certificate => SignAs::Certificate,
            SandboxPayMode::Migration => {
                if request_serial.is_some_and(|s| s.trim() == self.keys.public_key_id) {
                    SignAs::PublicKey
                } else {
                    SignAs::Certificate
                }
            }
        }
    }

    /// The key of a notification: in migration mode either, at random (as WeChat does while switching).
    fn notification_key(&self) -> SignAs {
        match self.mode {
            SandboxPayMode::PublicKey => SignAs::PublicKey,
            SandboxPayMode::Certificate => SignAs::Certificate,
            SandboxPayMode::Migration => {
                if rand::random::<bool>() {
                    SignAs::PublicKey
                } else {
                    SignAs::Certificate
                }
            }
        }
    }

    /// The `Wechatpay-*` headers of a body signed now with `as_`.
    fn signature_headers(&self, as_: SignAs, body: &[u8]) -> Vec<(&'static str, String)> {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        self.signature_headers_at(as_, body, &timestamp)
    }

    fn signature_headers_at(
        &self,
        as_: SignAs,
        body: &[u8],
        timestamp: &str,
    ) -> Vec<(&'static str, String)> {
        let (key, serial) = self.signer(as_);
        let nonce = sign::nonce();
        let signature =
            sign::sign(key, &sign::response_message(timestamp, &nonce, body)).unwrap_or_default();
        vec![
            ("Wechatpay-Timestamp", timestamp.to_string()),
            ("Wechatpay-Nonce", nonce),
            ("Wechatpay-Signature", signature),
            ("Wechatpay-Serial", serial.to_string()),
            ("Wechatpay-Signature-Type", sign::SCHEME.to_string()),
        ]
    }

    /// Whether `serial` names one of the sandbox's WeChat Pay keys (what `Wechatpay-Serial` on a request may be).
    fn knows_serial(&self, serial: &str) -> bool {
        self.platform_keys().key(serial).is_some()
    }
}

impl PaySandbox {
    /// A genuine `TRANSACTION.SUCCESS` notification (headers and raw body, signed now and encrypted as WeChat
    /// would) for a payment of `total_fen` by `payer_openid`, without sending it or touching the sandbox's orders.
    /// For tests and benchmarks of a notification handler.
    pub fn signed_payment_notification(
        &self,
        out_trade_no: &str,
        total_fen: i64,
        payer_openid: &str,
    ) -> (crate::wechat::pay::NotifyHeaders, Vec<u8>) {
        let trade = store::Trade {
            out_trade_no: out_trade_no.to_string(),
            appid: self.appid.clone(),
            mchid: SANDBOX_MCHID.into(),
            description: String::new(),
            total: total_fen,
            openid: payer_openid.to_string(),
            notify_url: self.default_notify_url.clone(),
            time_expire: None,
            expire_at: None,
            prepay_id: String::new(),
            state: "SUCCESS".into(),
            transaction_id: Some(format!("4200{}", digits(24))),
            success_time: Some(wx_now()),
            refunded: 0,
            create_time: wx_now(),
        };
        let (_, body) = delivery::envelope(
            &delivery::Plain::transaction(&trade, None),
            &self.keys.apiv3,
        );
        let headers = self.signature_headers(self.notification_key(), body.as_bytes());
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        (
            crate::wechat::pay::NotifyHeaders {
                timestamp: get("Wechatpay-Timestamp"),
                nonce: get("Wechatpay-Nonce"),
                signature: get("Wechatpay-Signature"),
                serial: get("Wechatpay-Serial"),
            },
            body.into_bytes(),
        )
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// WeChat-style time now.
fn wx_now() -> String {
    crate::wechat::pay::wechat_time(chrono::Utc::now())
}

/// `n` random decimal digits.
fn digits(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rand::random_range(0..10u8)))
        .collect()
}

/// A UUID-shaped notification id.
fn notification_id() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A `package_info` as `wx.requestMerchantTransfer` takes it.
fn package_info() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 48]>())
}

/// A WeChat error body.
fn error_body(code: &str, message: &str) -> Value {
    serde_json::json!({ "code": code, "message": message })
}

/// The routes of the fake `api.mch.weixin.qq.com`, to be nested under `/sandbox/wechatpay`.
pub fn routes(sandbox: Arc<PaySandbox>) -> impl poem::Endpoint {
    use poem::EndpointExt;
    Route::new()
        .at("/v3/*rest", api::v3)
        .at("/pay", post(controls::pay))
        .at("/confirm-transfer", post(controls::confirm_transfer))
        .at("/_sandbox/deliveries", get(controls::deliveries))
        .at("/_sandbox/redeliver", post(controls::redeliver))
        .at("/_sandbox/notify", post(controls::notify))
        .at("/_sandbox/fail-next", post(controls::fail_next))
        .at("/_sandbox/shipping", get(controls::shipping_uploads))
        .at("/_sandbox/state", get(controls::sandbox_state))
        .at("/_sandbox/keys", get(controls::keys))
        .data(sandbox)
}
