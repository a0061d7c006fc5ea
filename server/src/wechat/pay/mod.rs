//! WeChat Pay API v3 client (direct merchant, JSAPI for Mini Programs): our own thin layer over reqwest, rsa,
//! sha2 and aes-gcm. Every request is signed over the exact bytes sent; every response and notification is
//! signature-verified (key chosen by `Wechatpay-Serial`) before it is believed.
//!
//! [`sign`] makes our signatures, [`verify`] holds WeChat's keys and checks theirs, [`crypto`] is the
//! AES-256-GCM of notification resources, [`notify`] parses notifications. In sandbox mode the same client talks
//! to the built-in fake at `/sandbox/wechatpay` (`wechat::sandbox::pay`), which checks our signatures and signs
//! its answers with keys of its own, so nothing is skipped. `docs/wechat-pay.md` explains the whole layer.

pub mod crypto;
pub mod notify;
pub mod sign;
pub mod verify;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Config, PaySettings};
use crypto::ApiV3Key;
use verify::PlatformKeys;

/// A configured WeChat Pay client (real merchant, or the built-in sandbox). Cheap to clone.
#[derive(Clone)]
pub struct WechatPay {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    appid: String,
    notify_url: String,
    /// `None`: payments are switched off (real WeChat without `WECHATPAY_*`).
    merchant: Option<Merchant>,
}

/// Everything a working client needs.
#[derive(Clone)]
struct Merchant {
    http: reqwest::Client,
    /// e.g. `https://api.mch.weixin.qq.com`; the path of the base itself is not part of the signed URL.
    base: String,
    base_path: String,
    mchid: String,
    serial: String,
    key: rsa::PrivateKey,
    apiv3: ApiV3Key,
    platform: PlatformKeys,
    transfer_scene_id: String,
    transfer_report_infos: Vec<(String, String)>,
}

/// The parts of a working client, for [`WechatPay::new`] (the sandbox and the start-up code build one).
pub struct PayClientConfig {
    /// The Mini Program appid payments are made under.
    pub appid: String,
    pub mchid: String,
    /// Serial of the merchant API certificate (`serial_no` in `Authorization`).
    pub merchant_serial: String,
    /// The merchant API private key.
    pub merchant_key: rsa::PrivateKey,
    pub apiv3_key: ApiV3Key,
    /// WeChat Pay's public key and/or platform certificates, by serial.
    pub platform: PlatformKeys,
    /// Base URL of the API, without a trailing `/`.
    pub api_base: String,
    /// Where WeChat sends payment, refund and transfer notifications.
    pub notify_url: String,
    /// How long one call may take.
    pub timeout: Duration,
    pub transfer_scene_id: String,
    pub transfer_report_infos: Vec<(String, String)>,
}

/// What `POST /v3/pay/transactions/jsapi` needs from an order.
#[derive(Debug, Clone)]
pub struct JsapiPrepay {
    /// Our order's out_trade_no (6–32 of `[0-9A-Za-z_-|*]`).
    pub out_trade_no: String,
    /// Shown in the buyer's bill (≤127 bytes; clipped by the client).
    pub description: String,
    pub total_fen: i64,
    pub payer_openid: String,
    /// The order's payment deadline (sent as `time_expire`).
    pub time_expire: DateTime<Utc>,
}

/// The parameters `wx.requestPayment` takes, signed with the merchant key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestPayment {
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// A payment as WeChat reports it (query response, or decrypted `TRANSACTION.SUCCESS` resource).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// `SUCCESS`, `REFUND`, `NOTPAY`, `CLOSED`, ...
    pub trade_state: String,
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub payer: Option<Payer>,
    #[serde(default)]
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payer {
    pub openid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionAmount {
    pub total: i64,
    #[serde(default)]
    pub payer_total: Option<i64>,
    pub currency: String,
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub out_trade_no: String,
    /// Reused on every retry of the same refund.
    pub out_refund_no: String,
    pub reason: Option<String>,
    pub refund_fen: i64,
    pub total_fen: i64,
}

/// A refund as WeChat reports it (API response, query, or decrypted refund notification).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub refund_id: Option<String>,
    /// `SUCCESS`, `CLOSED`, `PROCESSING`, `ABNORMAL` (the API's `status`, or the notification's `refund_status`).
    pub status: String,
    pub refund_fen: i64,
}

/// `POST /v3/fund-app/mch-transfer/transfer-bills`.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// One per order; never replaced after an uncertain failure (query first).
    pub out_bill_no: String,
    pub openid: String,
    pub amount_fen: i64,
    /// User-visible, ≤32 characters.
    pub remark: String,
}

/// A transfer bill (API response, query, or decrypted `MCHTRANSFER.BILL.FINISHED` resource).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferBill {
    pub out_bill_no: String,
    #[serde(default)]
    pub transfer_bill_no: Option<String>,
    /// `ACCEPTED`, `PROCESSING`, `WAIT_USER_CONFIRM`, `TRANSFERING`, `SUCCESS`, `FAIL`, `CANCELING`, `CANCELLED`.
    pub state: String,
    /// What `wx.requestMerchantTransfer` takes as `package`.
    #[serde(default)]
    pub package_info: Option<String>,
    #[serde(default)]
    pub fail_reason: Option<String>,
}

/// A verified, decrypted notification.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The envelope's `id` (for de-duplication and logs).
    pub id: String,
    pub event_type: String,
    pub resource: NotificationResource,
}

#[derive(Debug, Clone)]
pub enum NotificationResource {
    /// `TRANSACTION.*`, original_type `transaction`.
    Transaction(Transaction),
    /// `REFUND.*`, original_type `refund`.
    Refund(Refund),
    /// `MCHTRANSFER.BILL.FINISHED`, original_type `mch_payment`.
    Transfer(TransferBill),
    /// Anything else, verified but not understood (logged and acknowledged).
    Other(serde_json::Value),
}

/// Why a WeChat Pay call failed.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// WeChat answered with an error body (`status` HTTP code, `code` like `ORDER_NOT_EXIST`, `SIGN_ERROR`).
    #[error("WeChat Pay {status} {code}: {message}")]
    Wechat {
        status: u16,
        code: String,
        message: String,
    },
    /// The response's signature did not verify (or a 2xx came unsigned): the response is not believed.
    #[error("WeChat Pay response failed verification: {0}")]
    Unverified(String),
    /// No answer or an unreadable one: the outcome is UNKNOWN (query before retrying with anything new).
    #[error("WeChat Pay unreachable or unreadable: {0}")]
    Transport(String),
}

/// Why an incoming notification was refused (answered 4xx/5xx so WeChat sends it again).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("timestamp outside the 5-minute window")]
    StaleTimestamp,
    #[error("unknown Wechatpay-Serial {0}")]
    UnknownSerial(String),
    /// Includes `WECHATPAY/SIGNTEST/` probes.
    #[error("signature does not verify")]
    BadSignature,
    #[error("resource does not decrypt (wrong APIv3 key or tampered)")]
    Decrypt,
    #[error("malformed notification: {0}")]
    Malformed(String),
}

/// The headers a notification carries.
#[derive(Debug, Clone, Default)]
pub struct NotifyHeaders {
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub signature: Option<String>,
    pub serial: Option<String>,
}

impl PayError {
    /// Whether the call's outcome is unknown (no answer, an unreadable or unverifiable one, or WeChat's own
    /// `SYSTEM_ERROR`/5xx or rate limiting): query, or retry with the SAME identifiers, never new ones.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            PayError::Transport(_) | PayError::Unverified(_) => true,
            PayError::Wechat { status, code, .. } => {
                code != DISABLED && (*status >= 500 || *status == 429 || code == "SYSTEM_ERROR")
            }
        }
    }

    /// WeChat's error code (`ORDER_NOT_EXIST`, `SIGN_ERROR`, ...), when WeChat answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            PayError::Wechat { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The code of [`PayError::Wechat`] when WeChat Pay is not configured (nothing was sent).
pub const DISABLED: &str = "PAYMENTS_DISABLED";

/// The path of WeChat's notifications on our side (under `PUBLIC_BASE_URL`).
pub const NOTIFY_PATH: &str = "/api/v1/payments/wechat/notify";
/// WeChat Pay's production API.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";

/// Builds the WeChat Pay client the configuration asks for, and the sandbox's fake WeChat Pay in sandbox mode.
/// Every key file is read and checked here, so bad credentials stop the service at start-up.
pub fn setup(
    config: &Config,
    appid: &str,
    public_base_url: &str,
    loopback: std::net::SocketAddr,
) -> anyhow::Result<(
    WechatPay,
    Option<Arc<crate::wechat::sandbox::pay::PaySandbox>>,
)> {
    let notify_url = format!("{public_base_url}{NOTIFY_PATH}");
    let options = |api_base: String| ClientOptions {
        api_base,
        notify_url: notify_url.clone(),
        timeout: config.wechatpay_timeout,
        transfer_scene_id: config.wechatpay_transfer_scene_id.clone(),
        transfer_report_infos: config.wechatpay_transfer_report_infos.clone(),
    };
    match &config.pay {
        PaySettings::Disabled => {
            tracing::warn!(
                "WECHATPAY_MCHID is not set: WECHAT PAY IS DISABLED. Orders can only be paid offline; set the \
                 WECHATPAY_* settings (docs/wechat-pay.md) to take payments."
            );
            Ok((WechatPay::disabled(appid, &notify_url), None))
        }
        PaySettings::Sandbox => {
            let base = config
                .wechatpay_api_base
                .clone()
                .unwrap_or_else(|| format!("http://{loopback}/sandbox/wechatpay"));
            let sandbox = crate::wechat::sandbox::pay::PaySandbox::open(
                &config.data_dir.join("sandbox"),
                crate::wechat::sandbox::pay::SandboxOptions {
                    appid: appid.to_string(),
                    mode: config.sandbox_wechatpay_mode,
                    time_scale: config.sandbox_wechatpay_time_scale,
                    default_notify_url: notify_url.clone(),
                },
            )
            .context("opening the WeChat Pay sandbox")?;
            tracing::warn!(api_base = %base, "WECHATPAY_MCHID is not set: WeChat Pay is the built-in SANDBOX");
            let client = WechatPay::new(sandbox.client_config(appid, options(base)))
                .context("building the sandbox WeChat Pay client")?;
            Ok((client, Some(sandbox)))
        }
        PaySettings::Merchant(m) => {
            let read = |path: &Path, what: &str| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {what} {}", path.display()))
            };
            let key = sign::private_key_from_pem(&read(
                &m.merchant_key_path,
                "WECHATPAY_MERCHANT_KEY_PATH",
            )?)
            .map_err(|e| {
                anyhow::anyhow!(
                    "WECHATPAY_MERCHANT_KEY_PATH {}: {e}",
                    m.merchant_key_path.display()
                )
            })?;
            let apiv3 = ApiV3Key::new(m.apiv3_key.expose())
                .map_err(|e| anyhow::anyhow!("WECHATPAY_APIV3_KEY: {e}"))?;
            let mut platform = PlatformKeys::default();
            if let Some((path, id)) = &m.public_key {
                let public = sign::public_key_from_pem(&read(path, "WECHATPAY_PUBLIC_KEY_PATH")?)
                    .map_err(|e| {
                    anyhow::anyhow!("WECHATPAY_PUBLIC_KEY_PATH {}: {e}", path.display())
                })?;
                platform.add_public_key(id, public);
            }
            let now = Utc::now().timestamp();
            for path in &m.platform_cert_paths {
                let (serial, validity) = platform
                    .add_certificate_pem(&read(path, "WECHATPAY_PLATFORM_CERT_PATHS")?)
                    .map_err(|e| {
                        anyhow::anyhow!("WECHATPAY_PLATFORM_CERT_PATHS {}: {e}", path.display())
                    })?;
                if validity.not_after < now {
                    tracing::warn!(%serial, path = %path.display(), "this WeChat Pay platform certificate has EXPIRED; WeChat no longer signs with it");
                }
            }
            let o = options(
                config
                    .wechatpay_api_base
                    .clone()
                    .unwrap_or_else(|| DEFAULT_API_BASE.into()),
            );
            if !o.notify_url.starts_with("https://") {
                tracing::warn!(notify_url = %o.notify_url, "WeChat Pay only delivers notifications to https URLs");
            }
            let client = WechatPay::new(PayClientConfig {
                appid: appid.to_string(),
                mchid: m.mchid.clone(),
                merchant_serial: m.merchant_serial.to_ascii_uppercase(),
                merchant_key: key,
                apiv3_key: apiv3,
                platform,
                api_base: o.api_base,
                notify_url: o.notify_url,
                timeout: o.timeout,
                transfer_scene_id: o.transfer_scene_id,
                transfer_report_infos: o.transfer_report_infos,
            })?;
            tracing::info!(
                mchid = %m.mchid,
                public_key = m.public_key.is_some(),
                certificates = m.platform_cert_paths.len(),
                "WeChat Pay configured"
            );
            Ok((client, None))
        }
    }
}

/// The non-credential half of a client's configuration (what the sandbox's credentials are combined with).
pub struct ClientOptions {
    pub api_base: String,
    pub notify_url: String,
    pub timeout: Duration,
    pub transfer_scene_id: String,
    pub transfer_report_infos: Vec<(String, String)>,
}

/// A verified answer: HTTP status and raw body.
struct Answer {
    body: Vec<u8>,
}

/// Length bounds of `out_trade_no`.
const TRADE_NO_LEN: (usize, usize) = (6, 32);

/// `out_trade_no` / `out_refund_no` / `out_bill_no` go into URL paths: refuse anything outside WeChat's alphabet
/// locally (it would be refused by WeChat anyway, and must never reshape the URL).
fn check_id(
    what: &str,
    value: &str,
    (min, max): (usize, usize),
    extra: &[u8],
) -> Result<(), PayError> {
    let ok = (min..=max).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(PayError::Wechat {
            status: 400,
            code: "PARAM_ERROR".into(),
            message: format!(
                "{what} {value:?} is not valid for WeChat Pay (refused before sending)"
            ),
        })
    }
}

/// The longest prefix of `text` that is at most `max_bytes` bytes, cut at a character boundary.
fn clip_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// RFC 3339 in China time, as WeChat writes and expects it (`2024-05-20T13:29:35+08:00`).
pub fn wechat_time(t: DateTime<Utc>) -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    t.with_timezone(&china)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn header(resp: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    resp.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl WechatPay {
    /// A working client. Fails when the merchant key is unusable.
    pub fn new(cfg: PayClientConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout.min(Duration::from_secs(3)))
            .timeout(cfg.timeout)
            .user_agent(concat!("campus-trade/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the WeChat Pay HTTP client")?;
        let base = cfg.api_base.trim_end_matches('/').to_string();
        let base_path = reqwest::Url::parse(&base)
            .with_context(|| format!("WeChat Pay API base {base:?} is not a URL"))?
            .path()
            .trim_end_matches('/')
            .to_string();
        // Prove the key signs before the first payment depends on it.
        sign::sign(&cfg.merchant_key, b"start-up check").map_err(|e| anyhow::anyhow!(e))?;
        if cfg.platform.is_empty() {
            anyhow::bail!(
                "no WeChat Pay public key or platform certificate to verify answers with"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                appid: cfg.appid,
                notify_url: cfg.notify_url,
                merchant: Some(Merchant {
                    http,
                    base,
                    base_path,
                    mchid: cfg.mchid,
                    serial: cfg.merchant_serial,
                    key: cfg.merchant_key,
                    apiv3: cfg.apiv3_key,
                    platform: cfg.platform,
                    transfer_scene_id: cfg.transfer_scene_id,
                    transfer_report_infos: cfg.transfer_report_infos,
                }),
            }),
        })
    }

    /// A client with payments switched off: every call fails with 503 `PAYMENTS_DISABLED`, nothing is sent.
    pub fn disabled(appid: &str, notify_url: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                appid: appid.into(),
                notify_url: notify_url.into(),
                merchant: None,
            }),
        }
    }

    /// Whether WeChat Pay is configured (false: real WeChat without `WECHATPAY_*`; offer offline payment only).
    pub fn enabled(&self) -> bool {
        self.inner.merchant.is_some()
    }

    /// Where WeChat sends notifications: `{PUBLIC_BASE_URL}/api/v1/payments/wechat/notify`.
    pub fn notify_url(&self) -> &str {
        &self.inner.notify_url
    }

    /// The same client, telling WeChat to notify `url` instead (tests receive notifications themselves).
    pub fn with_notify_url(&self, url: &str) -> Self {
        let mut inner = (*self.inner).clone();
        inner.notify_url = url.to_string();
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same client signing with another merchant key (key rotation; tests of WeChat's `SIGN_ERROR`).
    pub fn with_merchant_key(&self, key: rsa::PrivateKey) -> Self {
        let mut inner = (*self.inner).clone();
        if let Some(m) = inner.merchant.as_mut() {
            m.key = key;
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Our merchant id.
    pub fn mchid(&self) -> &str {
        self.inner
            .merchant
            .as_ref()
            .map(|m| m.mchid.as_str())
            .unwrap_or("")
    }

    /// The Mini Program appid payments are made under.
    pub fn appid(&self) -> &str {
        &self.inner.appid
    }

    fn merchant(&self) -> Result<&Merchant, PayError> {
        self.inner
            .merchant
            .as_ref()
            .ok_or_else(|| PayError::Wechat {
                status: 503,
                code: DISABLED.into(),
                message:
                    "WeChat Pay is not configured on this service (WECHATPAY_MCHID is not set)"
                        .into(),
            })
    }

    /// `POST /v3/pay/transactions/jsapi` → `prepay_id`. Same out_trade_no and parameters again → the same valid
    /// prepay id (WeChat's idempotency).
    pub async fn jsapi_prepay(&self, req: &JsapiPrepay) -> Result<String, PayError> {
        let m = self.merchant()?;
        check_id("out_trade_no", &req.out_trade_no, TRADE_NO_LEN, b"_-|*")?;
        let body = json!({
            "appid": self.appid(),
            "mchid": m.mchid,
            "description": clip_bytes(&req.description, 127),
            "out_trade_no": req.out_trade_no,
            "time_expire": wechat_time(req.time_expire),
            "notify_url": self.notify_url(),
            "amount": { "total": req.total_fen, "currency": "CNY" },
            "payer": { "openid": req.payer_openid },
        });
        #[derive(Deserialize)]
        struct Prepay {
            prepay_id: String,
        }
        let answer = m
            .call("POST", "/v3/pay/transactions/jsapi", Some(&body), false)
            .await?;
        let p: Prepay = parse_json(&answer)?;
        Ok(p.prepay_id)
    }

    /// The signed `wx.requestPayment` parameters for a prepay id.
    pub fn request_payment(&self, prepay_id: &str) -> RequestPayment {
        let time_stamp = Utc::now().timestamp().to_string();
        let nonce_str = sign::nonce();
        let package = format!("prepay_id={prepay_id}");
        let message = sign::pay_sign_message(self.appid(), &time_stamp, &nonce_str, &package);
        let pay_sign = match self.inner.merchant.as_ref() {
            Some(m) => sign::sign(&m.key, message.as_bytes()).unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not sign wx.requestPayment parameters");
                String::new()
            }),
            None => String::new(),
        };
        RequestPayment {
            time_stamp,
            nonce_str,
            package,
            sign_type: "RSA".into(),
            pay_sign,
        }
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`. Unknown order → `PayError::Wechat{code:"ORDER_NOT_EXIST"}`.
    pub async fn query_order(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        let m = self.merchant()?;
        check_id("out_trade_no", out_trade_no, TRADE_NO_LEN, b"_-|*")?;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            m.mchid
        );
        let answer = m.call("GET", &path, None, false).await?;
        parse_json(&answer)
    }

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close` (204).
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), PayError> {
        let m = self.merchant()?;
        check_id("out_trade_no", out_trade_no, TRADE_NO_LEN, b"_-|*")?;
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        m.call("POST", &path, Some(&json!({ "mchid": m.mchid })), false)
            .await?;
        Ok(())
    }

    /// `POST /v3/refund/domestic/refunds` (200 means accepted, not refunded).
    pub async fn refund(&self, req: &RefundRequest) -> Result<Refund, PayError> {
        let m = self.merchant()?;
        check_id("out_trade_no", &req.out_trade_no, TRADE_NO_LEN, b"_-|*")?;
        check_id("out_refund_no", &req.out_refund_no, (1, 64), b"_-|*@")?;
        let mut body = json!({
            "out_trade_no": req.out_trade_no,
            "out_refund_no": req.out_refund_no,
            "notify_url": self.notify_url(),
            "amount": { "refund": req.refund_fen, "total": req.total_fen, "currency": "CNY" },
        });
        if let Some(reason) = req.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            body["reason"] = Value::String(clip_bytes(reason.trim(), 80).to_string());
        }
        let answer = m
            .call("POST", "/v3/refund/domestic/refunds", Some(&body), false)
            .await?;
        parse_refund(&answer)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub async fn query_refund(&self, out_refund_no: &str) -> Result<Refund, PayError> {
        let m = self.merchant()?;
        check_id("out_refund_no", out_refund_no, (1, 64), b"_-|*@")?;
        let path = format!("/v3/refund/domestic/refunds/{out_refund_no}");
        let answer = m.call("GET", &path, None, false).await?;
        parse_refund(&answer)
    }

    /// `POST /v3/fund-app/mch-transfer/transfer-bills`.
    pub async fn create_transfer(&self, req: &TransferRequest) -> Result<TransferBill, PayError> {
        let m = self.merchant()?;
        check_id("out_bill_no", &req.out_bill_no, (1, 32), b"")?;
        let remark: String = req.remark.trim().chars().take(32).collect();
        let infos: Vec<Value> = m
            .transfer_report_infos
            .iter()
            .map(|(t, c)| json!({ "info_type": t, "info_content": c }))
            .collect();
        let body = json!({
            "appid": self.appid(),
            "out_bill_no": req.out_bill_no,
            "transfer_scene_id": m.transfer_scene_id,
            "openid": req.openid,
            "transfer_amount": req.amount_fen,
            "transfer_remark": if remark.is_empty() { "货款".to_string() } else { remark },
            "notify_url": self.notify_url(),
            "transfer_scene_report_infos": infos,
        });
        let answer = m
            .call(
                "POST",
                "/v3/fund-app/mch-transfer/transfer-bills",
                Some(&body),
                true,
            )
            .await?;
        parse_json(&answer)
    }

    /// `GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{no}`.
    pub async fn query_transfer(&self, out_bill_no: &str) -> Result<TransferBill, PayError> {
        let m = self.merchant()?;
        check_id("out_bill_no", out_bill_no, (1, 32), b"")?;
        let path = format!("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}");
        let answer = m.call("GET", &path, None, false).await?;
        parse_json(&answer)
    }

    /// `POST /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{no}/cancel`: withdraws a bill the seller has
    /// not accepted yet (`CANCELING`, then `CANCELLED` with a `MCHTRANSFER.BILL.FINISHED` notification).
    pub async fn cancel_transfer(&self, out_bill_no: &str) -> Result<TransferBill, PayError> {
        let m = self.merchant()?;
        check_id("out_bill_no", out_bill_no, (1, 32), b"")?;
        let path =
            format!("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}/cancel");
        let answer = m.call("POST", &path, None, false).await?;
        parse_json(&answer)
    }

    /// Verifies a notification (headers + the RAW body bytes, timestamp within 5 minutes of `now_unix`) and
    /// decrypts its resource.
    pub fn parse_notification(
        &self,
        headers: &NotifyHeaders,
        raw_body: &[u8],
        now_unix: i64,
    ) -> Result<Notification, NotifyError> {
        let Some(m) = self.inner.merchant.as_ref() else {
            return Err(NotifyError::UnknownSerial(
                "WeChat Pay is not configured".into(),
            ));
        };
        let decrypt = |nonce: &str, aad: &str, ct: &str| m.apiv3.decrypt(nonce, aad, ct);
        notify::parse(&m.platform, &decrypt, headers, raw_body, now_unix)
    }
}

impl NotifyHeaders {
    /// Reads the four `Wechatpay-*` headers (any case) from a request's header map.
    pub fn from_header_map(headers: &poem::http::HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Self {
            timestamp: get("wechatpay-timestamp"),
            nonce: get("wechatpay-nonce"),
            signature: get("wechatpay-signature"),
            serial: get("wechatpay-serial"),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, PayError> {
    serde_json::from_slice(&answer.body)
        .map_err(|e| PayError::Transport(format!("unreadable WeChat Pay answer: {e}")))
}

fn parse_refund(answer: &Answer) -> Result<Refund, PayError> {
    let wire: notify::RefundWire = parse_json(answer)?;
    wire.into_refund()
        .map_err(|e| PayError::Transport(format!("unreadable refund: {e}")))
}

impl Merchant {
    /// Signs and sends one request; returns the body of a verified 2xx answer, or the error WeChat (or the
    /// network) gave. `serial_header`: send `Wechatpay-Serial` even in certificate mode (APIs that require it).
    async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
        serial_header: bool,
    ) -> Result<Answer, PayError> {
        let body_bytes = match body {
            Some(b) => serde_json::to_vec(b)
                .map_err(|e| PayError::Transport(format!("could not encode the request: {e}")))?,
            None => Vec::new(),
        };
        let url = reqwest::Url::parse(&format!("{}{}", self.base, path_and_query))
            .map_err(|e| PayError::Transport(format!("bad WeChat Pay URL: {e}")))?;
        // Sign exactly what goes on the wire: the URL as the URL parser will send it, relative to the base.
        let sent = match url.query() {
            Some(q) => format!("{}?{}", url.path(), q),
            None => url.path().to_string(),
        };
        let canonical = sent.strip_prefix(&self.base_path).unwrap_or(&sent);
        let timestamp = Utc::now().timestamp().to_string();
        let nonce = sign::nonce();
        let message = sign::request_message(method, canonical, &timestamp, &nonce, &body_bytes);
        let signature = sign::sign(&self.key, &message).map_err(PayError::Transport)?;
        let authorization =
            sign::authorization(&self.mchid, &nonce, &timestamp, &self.serial, &signature);

        let method_value = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| PayError::Transport(e.to_string()))?;
        let mut req = self
            .http
            .request(method_value, url)
            .header("Authorization", authorization)
            .header("Accept", "application/json");
        let serial = self.platform.public_key_id().or_else(|| {
            serial_header
                .then(|| {
                    self.platform
                        .certificate_serials()
                        .first()
                        .map(String::as_str)
                })
                .flatten()
        });
        if let Some(serial) = serial {
            req = req.header("Wechatpay-Serial", serial);
        }
        if body.is_some() {
            req = req
                .header("Content-Type", "application/json")
                .body(body_bytes);
        }
        let resp = req.send().await.map_err(|e| {
            let e = e.without_url().to_string();
            tracing::warn!(%method, path = %canonical_path(canonical), error = %e, "WeChat Pay unreachable");
            PayError::Transport(e)
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp
            .bytes()
            .await
            .map_err(|e| PayError::Transport(format!("reading the answer: {}", e.without_url())))?;
        let signed = [
            "Wechatpay-Timestamp",
            "Wechatpay-Nonce",
            "Wechatpay-Signature",
            "Wechatpay-Serial",
        ]
        .map(|h| header(&headers, h));
        let verified = match &signed {
            [Some(ts), Some(nonce), Some(sig), Some(serial)] => {
                match self
                    .platform
                    .verify(serial, ts, nonce, sig, &raw, Utc::now().timestamp())
                {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(%method, path = %canonical_path(canonical), status = status.as_u16(), problem = ?e, "WeChat Pay answer FAILED signature verification; not believed");
                        return Err(PayError::Unverified(format!("HTTP {status}: {e:?}")));
                    }
                }
            }
            _ => false,
        };
        if status.is_success() {
            if !verified {
                tracing::warn!(%method, path = %canonical_path(canonical), status = status.as_u16(), "unsigned WeChat Pay answer; not believed");
                return Err(PayError::Unverified(format!(
                    "HTTP {status} without Wechatpay-Signature headers"
                )));
            }
            tracing::debug!(%method, path = %canonical_path(canonical), status = status.as_u16(), "WeChat Pay call");
            return Ok(Answer { body: raw.to_vec() });
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            detail: Option<Value>,
        }
        match serde_json::from_slice::<ErrorBody>(&raw) {
            Ok(e) => {
                let mut message = e.message;
                if let Some(expected) = e
                    .detail
                    .as_ref()
                    .and_then(|d| d.pointer("/sign_information/truncated_sign_message"))
                    .and_then(Value::as_str)
                {
                    message.push_str(&format!(" (WeChat verified against: {expected:?})"));
                }
                tracing::info!(%method, path = %canonical_path(canonical), status = status.as_u16(), code = %e.code, signed = verified, "WeChat Pay error");
                Err(PayError::Wechat {
                    status: status.as_u16(),
                    code: e.code,
                    message,
                })
            }
            Err(_) => Err(PayError::Transport(format!(
                "HTTP {status} without a WeChat Pay error body"
            ))),
        }
    }
}

/// The path of a call for logs: identifiers (order numbers) are kept, the query string (mchid) is dropped.
fn canonical_path(canonical: &str) -> &str {
    canonical.split('?').next().unwrap_or(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant_vars(dir: &Path, key_file: &str) -> Vec<(String, String)> {
        let p = |f: &str| dir.join(f).display().to_string();
        [
            ("WECHAT_APPID", "wx8888888888888888".to_string()),
            ("WECHAT_SECRET", "s".into()),
            ("PUBLIC_BASE_URL", "https://market.example.edu".into()),
            ("WECHATPAY_MCHID", "1900000109".into()),
            ("WECHATPAY_MERCHANT_KEY_PATH", p(key_file)),
            ("WECHATPAY_MERCHANT_SERIAL", "f5765756002fdd77".into()),
            (
                "WECHATPAY_APIV3_KEY",
                "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb".into(),
            ),
            ("WECHATPAY_PUBLIC_KEY_PATH", p("pub.pem")),
            (
                "WECHATPAY_PUBLIC_KEY_ID",
                "PUB_KEY_ID_0000000000000024101100397200000006".into(),
            ),
            ("WECHATPAY_PLATFORM_CERT_PATHS", p("cert.pem")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn loopback() -> std::net::SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    #[test]
    fn a_merchant_is_built_from_its_files_and_bad_files_stop_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let write = |f: &str, text: &str| std::fs::write(dir.path().join(f), text).unwrap();
        write("key.pem", sign::tests::TV1_PRIVATE);
        write("pub.pem", sign::tests::TV1_PUBLIC);
        write(
            "cert.pem",
            include_str!("testdata/tv2-platform-certificate.pem"),
        );
        write(
            "garbage.pem",
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
        );

        let config = Config::from_vars(merchant_vars(dir.path(), "key.pem")).unwrap();
        let (pay, sandbox) = setup(
            &config,
            "wx8888888888888888",
            "https://market.example.edu",
            loopback(),
        )
        .expect("a complete merchant starts");
        assert!(pay.enabled() && sandbox.is_none());
        assert_eq!(pay.mchid(), "1900000109");
        assert_eq!(
            pay.notify_url(),
            "https://market.example.edu/api/v1/payments/wechat/notify"
        );

        for (file, expected) in [
            ("garbage.pem", "garbage.pem"),
            ("missing.pem", "missing.pem"),
        ] {
            let config = Config::from_vars(merchant_vars(dir.path(), file)).unwrap();
            let err = setup(
                &config,
                "wx8888888888888888",
                "https://x.example",
                loopback(),
            )
            .err()
            .expect("a bad key file stops start-up");
            assert!(format!("{err:#}").contains(expected), "{err:#}");
        }
        let mut vars = merchant_vars(dir.path(), "key.pem");
        vars.retain(|(k, _)| k != "WECHATPAY_PLATFORM_CERT_PATHS");
        vars.push((
            "WECHATPAY_PLATFORM_CERT_PATHS".into(),
            dir.path().join("pub.pem").display().to_string(),
        ));
        let config = Config::from_vars(vars).unwrap();
        let err = setup(
            &config,
            "wx8888888888888888",
            "https://x.example",
            loopback(),
        )
        .err()
        .unwrap();
        assert!(
            format!("{err:#}").contains("WECHATPAY_PLATFORM_CERT_PATHS"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn without_a_merchant_payments_are_disabled_and_nothing_is_sent() {
        let config = Config::from_vars([
            ("WECHAT_APPID".to_string(), "wx8888888888888888".to_string()),
            ("WECHAT_SECRET".to_string(), "s".to_string()),
        ])
        .unwrap();
        let (pay, _) = setup(
            &config,
            "wx8888888888888888",
            "http://127.0.0.1:8080",
            loopback(),
        )
        .unwrap();
        assert!(!pay.enabled());
        let err = pay.query_order("CT123456").await.unwrap_err();
        assert_eq!(err.code(), Some("PAYMENTS_DISABLED"));
        assert!(!err.outcome_unknown());
        assert!(matches!(
            pay.parse_notification(&NotifyHeaders::default(), b"{}", 0),
            Err(NotifyError::UnknownSerial(_))
        ));
        assert_eq!(pay.request_payment("wx1").pay_sign, "");
    }

    #[test]
    fn times_are_china_time_and_texts_clip_at_character_boundaries() {
        let t = DateTime::parse_from_rfc3339("2024-05-20T05:29:35Z")
            .unwrap()
            .to_utc();
        assert_eq!(wechat_time(t), "2024-05-20T13:29:35+08:00");
        assert_eq!(clip_bytes("高等数学", 7), "高等");
        assert_eq!(clip_bytes("abc", 127), "abc");
    }
}
