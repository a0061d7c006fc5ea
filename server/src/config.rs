//! Every setting of the service, its default, and its validation at start-up.
//!
//! Settings come from environment variables; `CAMPUS_TRADE_CONFIG` may name a TOML file whose keys are the same
//! names (any case), and the environment wins over the file. With nothing set at all the service runs as the
//! embedded default: SQLite under `DATA_DIR` (sessions included), in-process caches and rate limits, and the WeChat
//! sandbox.
//! `docs/configuration.md` lists every setting; keep the two in step.

use std::{
    collections::HashMap, fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration,
};

use anyhow::{Context, anyhow, bail};

/// A secret value: usable by the code, but printed as `***` by `Debug` so it never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that has to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The WeChat Mini Program identity the service talks to WeChat with.
#[derive(Debug, Clone)]
pub enum WechatMode {
    /// No credentials configured: the built-in sandbox under `/sandbox/wechat/` plays WeChat.
    Sandbox,
    /// Real credentials: every call goes to `api_base` (the real WeChat unless overridden).
    Real { appid: String, secret: Secret },
}

/// Who WeChat Pay is, decided at start-up from `WECHATPAY_*` (see `docs/wechat-pay.md`).
#[derive(Debug, Clone)]
pub enum PaySettings {
    /// No `WECHATPAY_MCHID` in sandbox mode: the built-in fake WeChat Pay under `/sandbox/wechatpay` with its own
    /// generated keys.
    Sandbox,
    /// No `WECHATPAY_MCHID` with the real WeChat: payments are switched off (start-up logs a warning, and
    /// `WechatPay::enabled()` is false).
    Disabled,
    /// A real merchant (or a fake one at `WECHATPAY_API_BASE`).
    Merchant(MerchantSettings),
}

/// A direct merchant's credentials. The files are read (and their keys checked) when the service starts.
#[derive(Debug, Clone)]
pub struct MerchantSettings {
    pub mchid: String,
    /// PKCS#8 PEM `apiclient_key.pem`.
    pub merchant_key_path: PathBuf,
    /// Serial of the merchant API certificate (hex), sent as `serial_no`.
    pub merchant_serial: String,
    /// Exactly 32 bytes.
    pub apiv3_key: Secret,
    /// Public-key mode: the WeChat Pay public key file and its id (`PUB_KEY_ID_…`).
    pub public_key: Option<(PathBuf, String)>,
    /// Certificate mode: platform certificate files (serials are read from the certificates).
    pub platform_cert_paths: Vec<PathBuf>,
}

/// How the sandbox's fake WeChat Pay signs (`SANDBOX_WECHATPAY_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxPayMode {
    /// Signs with a WeChat Pay public key (`PUB_KEY_ID_…`), as merchants opened since 2024 see.
    PublicKey,
    /// Signs with a self-signed platform certificate (hex serial), the legacy mode.
    Certificate,
    /// Both configured: responses follow the request's `Wechatpay-Serial`, notifications pick either at random.
    Migration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    /// The externally visible base URL (no trailing slash); `None` means "derive from the bound address".
    pub public_base_url: Option<String>,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// PostgreSQL only: the schema to use (created if missing). Lets several deployments or test runs share a
    /// database.
    pub database_schema: Option<String>,
    pub database_max_connections: u32,
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key this deployment writes, so several deployments can share one Redis.
    pub redis_key_prefix: String,
    pub wechat: WechatMode,
    /// Base URL of WeChat's server API; `None` means the real one, or the built-in sandbox in sandbox mode.
    pub wechat_api_base: Option<String>,
    /// Token of WeChat's message push (the "Token" field of 开发管理 → 消息推送): pushes to `/wechat/push` are
    /// accepted only when signed with it. Defaults to [`crate::wechat::SANDBOX_PUSH_TOKEN`] in sandbox mode;
    /// `None` in real mode when unset, and then every push is refused.
    pub wechat_push_token: Option<Secret>,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub session_ttl: Duration,
    pub max_body_bytes: usize,
    pub login_rate_per_ip_per_minute: u32,
    pub trust_proxy_headers: bool,
    pub shutdown_grace: Duration,
    /// Image uploads one student may make per 10 minutes.
    pub image_uploads_per_10_minutes: u32,
    /// How often the sweep of unattached images runs.
    pub image_sweep_interval: Duration,
    /// Distinct students whose open reports hide a post, comment or listing until an operator decides. The
    /// default of the `report_hide_threshold` site setting, which operators may change at run time.
    pub report_hide_threshold: u32,
    /// Search: how many of the newest matches the `relevance` sort ranks (and `total` counts up to).
    pub search_rank_window: u32,
    /// Search (SQLite): from how many index matches on the `newest` and price sorts check each listing while
    /// walking the sort's index, instead of collecting every match first.
    pub search_probe_from: u64,
    /// Search: how long a school's suggestion vocabulary is served before it is rebuilt.
    pub search_suggest_refresh: Duration,
    /// How often new listings are matched against saved searches.
    pub saved_search_interval: Duration,
    /// Lifetime of an operator session (sliding, like students').
    pub operator_session_ttl: Duration,
    /// WeChat Pay: sandbox, disabled, or a merchant.
    pub pay: PaySettings,
    /// Base URL of WeChat Pay API v3; `None` means the real one, or the sandbox's in sandbox mode.
    pub wechatpay_api_base: Option<String>,
    /// How long one WeChat Pay call may take before its outcome counts as unknown.
    pub wechatpay_timeout: Duration,
    /// `transfer_scene_id` of payouts to sellers (must be approved in the merchant platform).
    pub wechatpay_transfer_scene_id: String,
    /// `transfer_scene_report_infos` sent with every payout: `(info_type, info_content)` pairs.
    pub wechatpay_transfer_report_infos: Vec<(String, String)>,
    /// Sandbox only: which key mode the fake WeChat Pay signs in.
    pub sandbox_wechatpay_mode: SandboxPayMode,
    /// Sandbox only: how many times faster than WeChat's the notification retry schedule (and refund
    /// processing) runs.
    pub sandbox_wechatpay_time_scale: u32,
    /// Orders and payments: deadlines, auto-completion, the platform fee, sweep cadence.
    pub orders: OrderSettings,
    /// How often the server pings an open chat socket; a socket silent for 2.5 times this long is dropped.
    pub chat_heartbeat: Duration,
    /// Chat messages a student may send at once before the sustained rate applies.
    pub chat_send_burst: u32,
    /// Chat messages a student may send per minute, sustained.
    pub chat_send_per_minute: u32,
    /// WeChat subscribe-message template "new chat message" (`thing1` sender, `thing2` message, `thing3` listing,
    /// `time4` time). `None`: no WeChat reminders for chat (the in-app unread count still works).
    pub wechat_template_chat_message: Option<String>,
    /// WeChat subscribe-message template "new review" (`thing1` item, `thing2` what was said, `time3` time), sent
    /// when a review of the student is revealed. `None`: the inbox only.
    pub wechat_template_new_review: Option<String>,
    /// WeChat subscribe-message templates of inbox events, by notification kind (`order_paid`,
    /// `refund_requested`, `listing_sold`, `price_drop`, …): `WECHAT_SUBSCRIBE_TEMPLATES=order_paid=ID,…`. Each
    /// template has the keywords `thing1` title, `thing2` text, `time3` time. Kinds left out: the inbox only.
    pub wechat_subscribe_templates: std::collections::BTreeMap<String, String>,
    /// `miniprogram_state` of subscribe messages (`developer`, `trial`, `formal`); `None` means WeChat's default
    /// (`formal`).
    pub wechat_miniprogram_state: Option<String>,
}

/// Settings of orders and payments (read through `orders::settings`, so operator site settings can override
/// them later).
#[derive(Debug, Clone)]
pub struct OrderSettings {
    /// How long a WeChat Pay order waits for payment before it is closed (`ORDER_PAYMENT_TIMEOUT_MINUTES`).
    pub payment_timeout: Duration,
    /// A paid order nobody completed, refunded or disputed completes by itself after this long
    /// (`ORDER_AUTO_COMPLETE_DAYS`).
    pub auto_complete_after: Duration,
    /// The platform's fee in basis points of what the seller is paid out (`PLATFORM_FEE_BPS`, 0 = none).
    pub platform_fee_bps: u32,
    /// How often the order and payment sweeps run (`ORDER_SWEEP_INTERVAL_SECONDS`).
    pub sweep_interval: Duration,
    /// How long after a prepay (or the last query) without a payment notification the sweep asks WeChat
    /// (`PAYMENT_QUERY_AFTER_SECONDS`).
    pub payment_query_after: Duration,
}

/// Where a setting's raw text comes from: the environment first, then the optional TOML file.
struct Source {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
}

impl Source {
    fn get(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .or_else(|| self.file.get(name))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| anyhow!("setting {name}={raw:?} is not valid: {e}")),
        }
    }

    fn flag(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => bail!("setting {name}={v:?} must be true or false"),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment (and `CAMPUS_TRADE_CONFIG`, if set).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the configuration from the given variables; the TOML file named by `CAMPUS_TRADE_CONFIG` among them
    /// supplies what they do not.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let env: HashMap<String, String> = vars.into_iter().collect();
        let file = match env.get("CAMPUS_TRADE_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => read_toml(path)?,
            None => HashMap::new(),
        };
        Self::from_source(&Source { env, file })
    }

    fn from_source(src: &Source) -> anyhow::Result<Self> {
        let bind: SocketAddr =
            src.parse("BIND", "127.0.0.1:8080".parse().expect("valid default"))?;
        let data_dir = PathBuf::from(src.get("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = match src.get("DATABASE_URL") {
            Some(url) => url,
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("campus_trade.db").display()
            ),
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            bail!("DATABASE_URL must start with sqlite: or postgres:// (got a different scheme)");
        }
        let database_schema = src.get("DATABASE_SCHEMA");
        if let Some(schema) = &database_schema
            && !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!("DATABASE_SCHEMA may contain only letters, digits and underscores");
        }

        let public_base_url = src
            .get("PUBLIC_BASE_URL")
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("PUBLIC_BASE_URL must start with http:// or https://");
        }

        let wechat = match (src.get("WECHAT_APPID"), src.get("WECHAT_SECRET")) {
            (None, None) => WechatMode::Sandbox,
            (Some(appid), Some(secret)) => WechatMode::Real {
                appid,
                secret: Secret::new(secret),
            },
            (Some(_), None) => bail!(
                "WECHAT_APPID is set but WECHAT_SECRET is not: set both, or neither for sandbox mode"
            ),
            (None, Some(_)) => bail!(
                "WECHAT_SECRET is set but WECHAT_APPID is not: set both, or neither for sandbox mode"
            ),
        };
        let wechat_api_base = src
            .get("WECHAT_API_BASE")
            .map(|u| u.trim_end_matches('/').to_string());

        let wechat_push_token = match src.get("WECHAT_PUSH_TOKEN") {
            Some(token) => {
                // WeChat's admin console accepts 3–32 letters and digits.
                if !(3..=32).contains(&token.len())
                    || !token.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    bail!("WECHAT_PUSH_TOKEN must be 3 to 32 letters and digits");
                }
                Some(Secret::new(token))
            }
            None if matches!(wechat, WechatMode::Sandbox) => {
                Some(Secret::new(crate::wechat::SANDBOX_PUSH_TOKEN))
            }
            None => None,
        };

        let log_format = match src.get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("LOG_FORMAT={other:?} must be text or json"),
        };

        let session_ttl_days: u64 = src.parse("SESSION_TTL_DAYS", 30)?;
        if !(1..=365).contains(&session_ttl_days) {
            bail!("SESSION_TTL_DAYS must be between 1 and 365");
        }
        let image_sweep_seconds: u64 = src.parse("IMAGE_SWEEP_INTERVAL_SECONDS", 600)?;
        if !(10..=86_400).contains(&image_sweep_seconds) {
            bail!("IMAGE_SWEEP_INTERVAL_SECONDS must be between 10 and 86400");
        }
        let image_uploads_per_10_minutes: u32 = src.parse("IMAGE_UPLOADS_PER_10_MINUTES", 60)?;
        if image_uploads_per_10_minutes == 0 {
            bail!("IMAGE_UPLOADS_PER_10_MINUTES must be at least 1");
        }
        let report_hide_threshold: u32 = src.parse("REPORT_HIDE_THRESHOLD", 5)?;
        if report_hide_threshold == 0 {
            bail!("REPORT_HIDE_THRESHOLD must be at least 1");
        }
        let search_rank_window: u32 = src.parse("SEARCH_RANK_WINDOW", 1000)?;
        if !(10..=100_000).contains(&search_rank_window) {
            bail!("SEARCH_RANK_WINDOW must be between 10 and 100000");
        }
        let search_probe_from: u64 = src.parse("SEARCH_PROBE_FROM", 10_000)?;
        if search_probe_from == 0 {
            bail!("SEARCH_PROBE_FROM must be at least 1");
        }
        let search_suggest_refresh_seconds: u64 =
            src.parse("SEARCH_SUGGEST_REFRESH_SECONDS", 300)?;
        if !(1..=86_400).contains(&search_suggest_refresh_seconds) {
            bail!("SEARCH_SUGGEST_REFRESH_SECONDS must be between 1 and 86400");
        }
        let saved_search_interval_seconds: u64 = src.parse("SAVED_SEARCH_INTERVAL_SECONDS", 5)?;
        if !(1..=3_600).contains(&saved_search_interval_seconds) {
            bail!("SAVED_SEARCH_INTERVAL_SECONDS must be between 1 and 3600");
        }
        let operator_session_hours: u64 = src.parse("OPERATOR_SESSION_TTL_HOURS", 12)?;
        if !(1..=720).contains(&operator_session_hours) {
            bail!("OPERATOR_SESSION_TTL_HOURS must be between 1 and 720");
        }
        let pay = pay_settings(src, &wechat, public_base_url.as_deref())?;
        let wechatpay_api_base = src
            .get("WECHATPAY_API_BASE")
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &wechatpay_api_base
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("WECHATPAY_API_BASE must start with http:// or https://");
        }
        let wechatpay_timeout_ms: u64 = src.parse("WECHATPAY_TIMEOUT_MS", 10_000)?;
        if !(100..=60_000).contains(&wechatpay_timeout_ms) {
            bail!("WECHATPAY_TIMEOUT_MS must be between 100 and 60000");
        }
        let wechatpay_transfer_scene_id = src
            .get("WECHATPAY_TRANSFER_SCENE_ID")
            .unwrap_or_else(|| "1005".into());
        if wechatpay_transfer_scene_id.len() > 36
            || !wechatpay_transfer_scene_id
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            bail!(
                "WECHATPAY_TRANSFER_SCENE_ID must be the digits of an approved transfer scene (e.g. 1005)"
            );
        }
        let wechatpay_transfer_report_infos = match src.get("WECHATPAY_TRANSFER_REPORT_INFOS") {
            None => vec![
                ("岗位类型".to_string(), "校园二手交易卖家".to_string()),
                ("报酬说明".to_string(), "二手商品成交货款".to_string()),
            ],
            Some(raw) => parse_report_infos(&raw)?,
        };
        let sandbox_wechatpay_mode = match src.get("SANDBOX_WECHATPAY_MODE").as_deref() {
            None | Some("public_key") => SandboxPayMode::PublicKey,
            Some("certificate") => SandboxPayMode::Certificate,
            Some("migration") => SandboxPayMode::Migration,
            Some(other) => bail!(
                "SANDBOX_WECHATPAY_MODE={other:?} must be public_key, certificate or migration"
            ),
        };
        let sandbox_wechatpay_time_scale: u32 = src.parse("SANDBOX_WECHATPAY_TIME_SCALE", 15)?;
        if !(1..=1_000_000).contains(&sandbox_wechatpay_time_scale) {
            bail!("SANDBOX_WECHATPAY_TIME_SCALE must be between 1 and 1000000");
        }

        let chat_heartbeat_seconds: u64 = src.parse("CHAT_HEARTBEAT_SECONDS", 20)?;
        if !(1..=300).contains(&chat_heartbeat_seconds) {
            bail!("CHAT_HEARTBEAT_SECONDS must be between 1 and 300");
        }
        let chat_send_burst: u32 = src.parse("CHAT_SEND_BURST", 20)?;
        let chat_send_per_minute: u32 = src.parse("CHAT_SEND_PER_MINUTE", 60)?;
        if chat_send_burst == 0 || chat_send_per_minute == 0 {
            bail!("CHAT_SEND_BURST and CHAT_SEND_PER_MINUTE must be at least 1");
        }
        let wechat_template_chat_message = src.get("WECHAT_TEMPLATE_CHAT_MESSAGE").or_else(|| {
            matches!(wechat, WechatMode::Sandbox)
                .then(|| crate::wechat::SANDBOX_TEMPLATE_CHAT_MESSAGE.to_string())
        });
        if wechat_template_chat_message
            .as_ref()
            .is_some_and(|t| t.len() > 128 || t.chars().any(char::is_whitespace))
        {
            bail!("WECHAT_TEMPLATE_CHAT_MESSAGE must be a template id of at most 128 characters");
        }
        let wechat_template_new_review = src.get("WECHAT_TEMPLATE_NEW_REVIEW");
        if wechat_template_new_review
            .as_ref()
            .is_some_and(|t| t.len() > 128 || t.chars().any(char::is_whitespace))
        {
            bail!("WECHAT_TEMPLATE_NEW_REVIEW must be a template id of at most 128 characters");
        }
        let wechat_subscribe_templates =
            parse_subscribe_templates(src.get("WECHAT_SUBSCRIBE_TEMPLATES").as_deref())?;
        let wechat_miniprogram_state = src.get("WECHAT_MINIPROGRAM_STATE");
        if let Some(state) = &wechat_miniprogram_state
            && !["developer", "trial", "formal"].contains(&state.as_str())
        {
            bail!("WECHAT_MINIPROGRAM_STATE must be developer, trial or formal");
        }
        let max_connections = if database_url.starts_with("sqlite:") {
            8
        } else {
            20
        };

        Ok(Self {
            bind,
            public_base_url,
            data_dir,
            database_url,
            database_schema,
            database_max_connections: src.parse("DATABASE_MAX_CONNECTIONS", max_connections)?,
            redis_url: src.get("REDIS_URL").map(Secret::new),
            redis_key_prefix: src.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "ct:".into()),
            wechat,
            wechat_api_base,
            wechat_push_token,
            log_format,
            log_filter: src.get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            session_ttl: Duration::from_secs(session_ttl_days * 86_400),
            max_body_bytes: src.parse("MAX_BODY_BYTES", 1024 * 1024)?,
            login_rate_per_ip_per_minute: src.parse("LOGIN_RATE_PER_IP_PER_MINUTE", 30)?,
            trust_proxy_headers: src.flag("TRUST_PROXY_HEADERS", false)?,
            shutdown_grace: Duration::from_secs(src.parse("SHUTDOWN_GRACE_SECONDS", 20)?),
            image_uploads_per_10_minutes,
            image_sweep_interval: Duration::from_secs(image_sweep_seconds),
            report_hide_threshold,
            search_rank_window,
            search_probe_from,
            search_suggest_refresh: Duration::from_secs(search_suggest_refresh_seconds),
            saved_search_interval: Duration::from_secs(saved_search_interval_seconds),
            operator_session_ttl: Duration::from_secs(operator_session_hours * 3600),
            orders: order_settings(src)?,
            pay,
            wechatpay_api_base,
            wechatpay_timeout: Duration::from_millis(wechatpay_timeout_ms),
            wechatpay_transfer_scene_id,
            wechatpay_transfer_report_infos,
            sandbox_wechatpay_mode,
            sandbox_wechatpay_time_scale,
            chat_heartbeat: Duration::from_secs(chat_heartbeat_seconds),
            chat_send_burst,
            chat_send_per_minute,
            wechat_template_chat_message,
            wechat_template_new_review,
            wechat_subscribe_templates,
            wechat_miniprogram_state,
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    pub fn is_sandbox(&self) -> bool {
        matches!(self.wechat, WechatMode::Sandbox)
    }
}

/// A duration given as a (possibly fractional) number of `unit_secs`-second units, within `min..=max` units.
fn fractional(
    src: &Source,
    name: &str,
    default: f64,
    unit_secs: f64,
    (min, max): (f64, f64),
) -> anyhow::Result<Duration> {
    let v: f64 = src.parse(name, default)?;
    if !(v.is_finite() && (min..=max).contains(&v)) {
        bail!("{name} must be between {min} and {max}");
    }
    Ok(Duration::from_secs_f64(v * unit_secs))
}

fn order_settings(src: &Source) -> anyhow::Result<OrderSettings> {
    let platform_fee_bps: u32 = src.parse("PLATFORM_FEE_BPS", 0)?;
    if platform_fee_bps > 5000 {
        bail!("PLATFORM_FEE_BPS must be between 0 and 5000 (50%)");
    }
    let sweep_seconds: u64 = src.parse("ORDER_SWEEP_INTERVAL_SECONDS", 15)?;
    if !(1..=3600).contains(&sweep_seconds) {
        bail!("ORDER_SWEEP_INTERVAL_SECONDS must be between 1 and 3600");
    }
    let query_after: u64 = src.parse("PAYMENT_QUERY_AFTER_SECONDS", 60)?;
    if !(1..=3600).contains(&query_after) {
        bail!("PAYMENT_QUERY_AFTER_SECONDS must be between 1 and 3600");
    }
    Ok(OrderSettings {
        // Fractional minutes and days are accepted so tests and demos can use short timers.
        payment_timeout: fractional(
            src,
            "ORDER_PAYMENT_TIMEOUT_MINUTES",
            15.0,
            60.0,
            (0.01, 1440.0),
        )?,
        auto_complete_after: fractional(
            src,
            "ORDER_AUTO_COMPLETE_DAYS",
            7.0,
            86_400.0,
            (0.00001, 90.0),
        )?,
        platform_fee_bps,
        sweep_interval: Duration::from_secs(sweep_seconds),
        payment_query_after: Duration::from_secs(query_after),
    })
}

/// The `WECHATPAY_*` credentials: all of them with `WECHATPAY_MCHID`, none of them without it.
fn pay_settings(
    src: &Source,
    wechat: &WechatMode,
    public_base_url: Option<&str>,
) -> anyhow::Result<PaySettings> {
    const CREDENTIALS: [&str; 6] = [
        "WECHATPAY_MERCHANT_KEY_PATH",
        "WECHATPAY_MERCHANT_SERIAL",
        "WECHATPAY_APIV3_KEY",
        "WECHATPAY_PUBLIC_KEY_PATH",
        "WECHATPAY_PUBLIC_KEY_ID",
        "WECHATPAY_PLATFORM_CERT_PATHS",
    ];
    let Some(mchid) = src.get("WECHATPAY_MCHID") else {
        if let Some(set) = CREDENTIALS.iter().find(|n| src.get(n).is_some()) {
            bail!(
                "{set} is set but WECHATPAY_MCHID is not: set WECHATPAY_MCHID too, or none of WECHATPAY_*"
            );
        }
        return Ok(match wechat {
            WechatMode::Sandbox => PaySettings::Sandbox,
            WechatMode::Real { .. } => PaySettings::Disabled,
        });
    };
    if !(mchid.len() <= 32 && !mchid.is_empty() && mchid.bytes().all(|b| b.is_ascii_digit())) {
        bail!("WECHATPAY_MCHID must be the merchant id's digits");
    }
    let required = |name: &str| {
        src.get(name).ok_or_else(|| {
            anyhow!("WECHATPAY_MCHID is set, so {name} is required (see docs/wechat-pay.md)")
        })
    };
    let merchant_key_path = PathBuf::from(required("WECHATPAY_MERCHANT_KEY_PATH")?);
    let merchant_serial = required("WECHATPAY_MERCHANT_SERIAL")?;
    if merchant_serial.len() > 64 || !merchant_serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("WECHATPAY_MERCHANT_SERIAL must be the hex serial of the merchant API certificate");
    }
    let apiv3_key = required("WECHATPAY_APIV3_KEY")?;
    if apiv3_key.len() != 32 {
        bail!(
            "WECHATPAY_APIV3_KEY must be exactly 32 bytes (the APIv3 key set in the merchant platform under \
             API安全 → APIv3密钥); the value given has {} bytes",
            apiv3_key.len()
        );
    }
    let public_key = match (
        src.get("WECHATPAY_PUBLIC_KEY_PATH"),
        src.get("WECHATPAY_PUBLIC_KEY_ID"),
    ) {
        (None, None) => None,
        (Some(path), Some(id)) => {
            let digits = id.strip_prefix("PUB_KEY_ID_").unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
                bail!(
                    "WECHATPAY_PUBLIC_KEY_ID must look like PUB_KEY_ID_0112345678901234567890123456789012"
                );
            }
            Some((PathBuf::from(path), id))
        }
        (Some(_), None) => {
            bail!("WECHATPAY_PUBLIC_KEY_PATH is set but WECHATPAY_PUBLIC_KEY_ID is not")
        }
        (None, Some(_)) => {
            bail!("WECHATPAY_PUBLIC_KEY_ID is set but WECHATPAY_PUBLIC_KEY_PATH is not")
        }
    };
    let platform_cert_paths: Vec<PathBuf> = src
        .get("WECHATPAY_PLATFORM_CERT_PATHS")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    if public_key.is_none() && platform_cert_paths.is_empty() {
        bail!(
            "WECHATPAY_MCHID is set but no WeChat Pay verification key is: set WECHATPAY_PUBLIC_KEY_PATH and \
             WECHATPAY_PUBLIC_KEY_ID (public-key mode) and/or WECHATPAY_PLATFORM_CERT_PATHS (certificate mode)"
        );
    }
    if public_base_url.is_none() {
        bail!(
            "WECHATPAY_MCHID is set but PUBLIC_BASE_URL is not: WeChat Pay sends notifications to \
             PUBLIC_BASE_URL/api/v1/payments/wechat/notify, which must be a public https URL"
        );
    }
    Ok(PaySettings::Merchant(MerchantSettings {
        mchid,
        merchant_key_path,
        merchant_serial,
        apiv3_key: Secret::new(apiv3_key),
        public_key,
        platform_cert_paths,
    }))
}

/// `type:content|type:content` → pairs.
fn parse_report_infos(raw: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in raw.split('|').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((t, c)) = item.split_once(':') else {
            bail!(
                "WECHATPAY_TRANSFER_REPORT_INFOS must be info_type:info_content pairs separated by |"
            );
        };
        let (t, c) = (t.trim(), c.trim());
        // WeChat's limits: info_type at most 15 characters, info_content at most 32.
        if t.is_empty() || c.is_empty() || t.chars().count() > 15 || c.chars().count() > 32 {
            bail!(
                "WECHATPAY_TRANSFER_REPORT_INFOS: every info_type (at most 15 characters) needs an info_content \
                 (at most 32 characters)"
            );
        }
        out.push((t.to_string(), c.to_string()));
    }
    if out.is_empty() {
        bail!("WECHATPAY_TRANSFER_REPORT_INFOS is empty; unset it to use the defaults");
    }
    Ok(out)
}

fn read_toml(path: &str) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading CAMPUS_TRADE_CONFIG file {path}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing CAMPUS_TRADE_CONFIG file {path}"))?;
    let mut out = HashMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => bail!(
                "setting {key} in {path} must be a string, number or boolean, not {}",
                other.type_str()
            ),
        };
        out.insert(key.to_ascii_uppercase(), text);
    }
    Ok(out)
}

/// `kind=template_id,kind=template_id` (see `WECHAT_SUBSCRIBE_TEMPLATES`).
fn parse_subscribe_templates(
    raw: Option<&str>,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for pair in raw.unwrap_or_default().split(',').map(str::trim) {
        if pair.is_empty() {
            continue;
        }
        let Some((kind, id)) = pair.split_once('=') else {
            bail!("WECHAT_SUBSCRIBE_TEMPLATES: `{pair}` is not kind=template_id");
        };
        let (kind, id) = (kind.trim(), id.trim());
        if kind.is_empty()
            || kind.len() > 32
            || !kind.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            bail!("WECHAT_SUBSCRIBE_TEMPLATES: `{kind}` is not a notification kind");
        }
        if kind == "new_review" {
            bail!(
                "WECHAT_SUBSCRIBE_TEMPLATES: reviews have their own template, WECHAT_TEMPLATE_NEW_REVIEW"
            );
        }
        if id.is_empty() || id.len() > 128 || id.chars().any(char::is_whitespace) {
            bail!(
                "WECHAT_SUBSCRIBE_TEMPLATES: the template id of `{kind}` must be 1–128 characters"
            );
        }
        out.insert(kind.to_string(), id.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_set_is_the_embedded_default() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(c.is_sqlite());
        assert!(c.database_url.contains("data/campus_trade.db"));
        assert!(c.is_sandbox());
        assert!(c.redis_url.is_none());
        assert_eq!(c.session_ttl, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn appid_without_secret_is_refused() {
        let err = Config::from_vars(vars(&[("WECHAT_APPID", "wx123")])).unwrap_err();
        assert!(err.to_string().contains("WECHAT_SECRET"));
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_vars(vars(&[
            ("WECHAT_APPID", "wx123"),
            ("WECHAT_SECRET", "topsecretvalue"),
            ("REDIS_URL", "redis://:hunter2@localhost"),
        ]))
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("topsecretvalue"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn push_token_defaults_in_sandbox_only_and_is_checked() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(
            c.wechat_push_token.as_ref().map(Secret::expose),
            Some(crate::wechat::SANDBOX_PUSH_TOKEN)
        );
        let real =
            Config::from_vars(vars(&[("WECHAT_APPID", "wx123"), ("WECHAT_SECRET", "s")])).unwrap();
        assert!(real.wechat_push_token.is_none());
        let set = Config::from_vars(vars(&[
            ("WECHAT_APPID", "wx123"),
            ("WECHAT_SECRET", "s"),
            ("WECHAT_PUSH_TOKEN", "Pushtoken42"),
        ]))
        .unwrap();
        assert_eq!(
            set.wechat_push_token.as_ref().map(Secret::expose),
            Some("Pushtoken42")
        );
        assert!(!format!("{set:?}").contains("Pushtoken42"));
        let err = Config::from_vars(vars(&[("WECHAT_PUSH_TOKEN", "has space!")])).unwrap_err();
        assert!(err.to_string().contains("WECHAT_PUSH_TOKEN"));
    }

    #[test]
    fn file_fills_in_and_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "bind = \"0.0.0.0:9000\"\nsession_ttl_days = 7\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = Config::from_vars(vars(&[
            ("CAMPUS_TRADE_CONFIG", path.to_str().unwrap()),
            ("LOG_FORMAT", "text"),
        ]))
        .unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.session_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn image_settings_have_defaults_and_bounds() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.image_uploads_per_10_minutes, 60);
        assert_eq!(c.image_sweep_interval, Duration::from_secs(600));
        let c = Config::from_vars(vars(&[
            ("IMAGE_UPLOADS_PER_10_MINUTES", "5"),
            ("IMAGE_SWEEP_INTERVAL_SECONDS", "60"),
        ]))
        .unwrap();
        assert_eq!(c.image_uploads_per_10_minutes, 5);
        assert_eq!(c.image_sweep_interval, Duration::from_secs(60));
        let err = Config::from_vars(vars(&[("IMAGE_SWEEP_INTERVAL_SECONDS", "0")])).unwrap_err();
        assert!(err.to_string().contains("IMAGE_SWEEP_INTERVAL_SECONDS"));
        let err = Config::from_vars(vars(&[("IMAGE_UPLOADS_PER_10_MINUTES", "0")])).unwrap_err();
        assert!(err.to_string().contains("IMAGE_UPLOADS_PER_10_MINUTES"));
    }

    #[test]
    fn report_threshold_has_a_default_and_a_floor() {
        assert_eq!(
            Config::from_vars(vars(&[])).unwrap().report_hide_threshold,
            5
        );
        let c = Config::from_vars(vars(&[("REPORT_HIDE_THRESHOLD", "2")])).unwrap();
        assert_eq!(c.report_hide_threshold, 2);
        let err = Config::from_vars(vars(&[("REPORT_HIDE_THRESHOLD", "0")])).unwrap_err();
        assert!(err.to_string().contains("REPORT_HIDE_THRESHOLD"));
    }

    #[test]
    fn search_settings_have_defaults_and_bounds() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.search_rank_window, 1000);
        assert_eq!(c.search_probe_from, 10_000);
        assert_eq!(c.search_suggest_refresh, Duration::from_secs(300));
        assert_eq!(c.saved_search_interval, Duration::from_secs(5));
        let c = Config::from_vars(vars(&[
            ("SEARCH_RANK_WINDOW", "50"),
            ("SAVED_SEARCH_INTERVAL_SECONDS", "1"),
        ]))
        .unwrap();
        assert_eq!(c.search_rank_window, 50);
        assert_eq!(c.saved_search_interval, Duration::from_secs(1));
        for (name, bad) in [
            ("SEARCH_RANK_WINDOW", "5"),
            ("SEARCH_SUGGEST_REFRESH_SECONDS", "0"),
            ("SAVED_SEARCH_INTERVAL_SECONDS", "0"),
            ("SEARCH_PROBE_FROM", "0"),
        ] {
            let err = Config::from_vars(vars(&[(name, bad)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn order_settings_have_defaults_and_bounds() {
        let c = Config::from_vars(vars(&[])).unwrap().orders;
        assert_eq!(c.payment_timeout, Duration::from_secs(15 * 60));
        assert_eq!(c.auto_complete_after, Duration::from_secs(7 * 86_400));
        assert_eq!(c.platform_fee_bps, 0);
        let c = Config::from_vars(vars(&[
            ("ORDER_PAYMENT_TIMEOUT_MINUTES", "0.05"),
            ("PLATFORM_FEE_BPS", "250"),
        ]))
        .unwrap()
        .orders;
        assert_eq!(c.payment_timeout, Duration::from_secs(3));
        assert_eq!(c.platform_fee_bps, 250);
        for (name, bad) in [
            ("ORDER_PAYMENT_TIMEOUT_MINUTES", "0"),
            ("ORDER_AUTO_COMPLETE_DAYS", "NaN"),
            ("PLATFORM_FEE_BPS", "10000"),
            ("ORDER_SWEEP_INTERVAL_SECONDS", "0"),
        ] {
            let err = Config::from_vars(vars(&[(name, bad)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn wechat_pay_is_sandbox_disabled_or_a_complete_merchant() {
        assert!(matches!(
            Config::from_vars(vars(&[])).unwrap().pay,
            PaySettings::Sandbox
        ));
        let real = [("WECHAT_APPID", "wx123"), ("WECHAT_SECRET", "s")];
        assert!(matches!(
            Config::from_vars(vars(&real)).unwrap().pay,
            PaySettings::Disabled
        ));

        let mut merchant = real.to_vec();
        merchant.extend([
            ("PUBLIC_BASE_URL", "https://market.example.edu"),
            ("WECHATPAY_MCHID", "1900000109"),
            ("WECHATPAY_MERCHANT_KEY_PATH", "/etc/ct/apiclient_key.pem"),
            (
                "WECHATPAY_MERCHANT_SERIAL",
                "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
            ),
            ("WECHATPAY_APIV3_KEY", "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"),
            ("WECHATPAY_PUBLIC_KEY_PATH", "/etc/ct/pub_key.pem"),
            (
                "WECHATPAY_PUBLIC_KEY_ID",
                "PUB_KEY_ID_0000000000000024101100397200000006",
            ),
            (
                "WECHATPAY_PLATFORM_CERT_PATHS",
                "/etc/ct/a.pem, /etc/ct/b.pem",
            ),
        ]);
        let c = Config::from_vars(vars(&merchant)).unwrap();
        let PaySettings::Merchant(m) = &c.pay else {
            panic!("merchant expected")
        };
        assert_eq!(m.platform_cert_paths.len(), 2);
        assert!(m.public_key.is_some());
        assert!(
            !format!("{c:?}").contains("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"),
            "the APIv3 key never prints"
        );

        let with = |name: &str, value: &str| {
            let mut v: Vec<(&str, &str)> = merchant
                .iter()
                .copied()
                .filter(|(k, _)| *k != name)
                .collect();
            if !value.is_empty() {
                v.push((name, value));
            }
            Config::from_vars(vars(&v))
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(with("WECHATPAY_APIV3_KEY", "too-short").contains("exactly 32 bytes"));
        assert!(with("WECHATPAY_MERCHANT_KEY_PATH", "").contains("WECHATPAY_MERCHANT_KEY_PATH"));
        assert!(with("WECHATPAY_PUBLIC_KEY_ID", "").contains("WECHATPAY_PUBLIC_KEY_ID"));
        assert!(with("WECHATPAY_PUBLIC_KEY_ID", "12345").contains("PUB_KEY_ID_"));
        assert!(with("PUBLIC_BASE_URL", "").contains("PUBLIC_BASE_URL"));
        assert!(with("WECHATPAY_MCHID", "abc").contains("WECHATPAY_MCHID"));
        let mut no_keys = merchant.clone();
        no_keys.retain(|(k, _)| {
            !k.starts_with("WECHATPAY_PUBLIC") && *k != "WECHATPAY_PLATFORM_CERT_PATHS"
        });
        let err = Config::from_vars(vars(&no_keys)).unwrap_err().to_string();
        assert!(err.contains("WECHATPAY_PLATFORM_CERT_PATHS"));
        // Credentials without a merchant id are a mistake, not silently ignored.
        let err = Config::from_vars(vars(&[("WECHATPAY_APIV3_KEY", "x")])).unwrap_err();
        assert!(err.to_string().contains("WECHATPAY_MCHID"));
    }

    #[test]
    fn sandbox_pay_settings_have_defaults_and_bounds() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.sandbox_wechatpay_mode, SandboxPayMode::PublicKey);
        assert_eq!(c.sandbox_wechatpay_time_scale, 15);
        assert_eq!(c.wechatpay_transfer_scene_id, "1005");
        assert_eq!(c.wechatpay_transfer_report_infos.len(), 2);
        let c = Config::from_vars(vars(&[
            ("SANDBOX_WECHATPAY_MODE", "certificate"),
            (
                "WECHATPAY_TRANSFER_REPORT_INFOS",
                "活动名称:期末清仓|奖励说明:货款",
            ),
        ]))
        .unwrap();
        assert_eq!(c.sandbox_wechatpay_mode, SandboxPayMode::Certificate);
        assert_eq!(c.wechatpay_transfer_report_infos[1].0, "奖励说明");
        assert!(Config::from_vars(vars(&[("SANDBOX_WECHATPAY_MODE", "x")])).is_err());
        assert!(Config::from_vars(vars(&[("SANDBOX_WECHATPAY_TIME_SCALE", "0")])).is_err());
        assert!(
            Config::from_vars(vars(&[("WECHATPAY_TRANSFER_REPORT_INFOS", "nocolon")])).is_err()
        );
        let too_long = format!("{}:x", "类".repeat(16));
        assert!(
            Config::from_vars(vars(&[(
                "WECHATPAY_TRANSFER_REPORT_INFOS",
                too_long.as_str()
            )]))
            .is_err(),
            "info_type is at most 15 characters"
        );
    }

    #[test]
    fn chat_settings_have_defaults_and_bounds() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.chat_heartbeat, Duration::from_secs(20));
        assert_eq!((c.chat_send_burst, c.chat_send_per_minute), (20, 60));
        assert_eq!(
            c.wechat_template_chat_message.as_deref(),
            Some(crate::wechat::SANDBOX_TEMPLATE_CHAT_MESSAGE)
        );
        let real =
            Config::from_vars(vars(&[("WECHAT_APPID", "wx123"), ("WECHAT_SECRET", "s")])).unwrap();
        assert_eq!(real.wechat_template_chat_message, None);
        let err = Config::from_vars(vars(&[("CHAT_HEARTBEAT_SECONDS", "0")])).unwrap_err();
        assert!(err.to_string().contains("CHAT_HEARTBEAT_SECONDS"));
        let err = Config::from_vars(vars(&[("WECHAT_MINIPROGRAM_STATE", "beta")])).unwrap_err();
        assert!(err.to_string().contains("WECHAT_MINIPROGRAM_STATE"));
    }

    #[test]
    fn subscribe_templates_map_notification_kinds() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert!(c.wechat_subscribe_templates.is_empty());
        assert_eq!(c.wechat_template_new_review, None);
        let c = Config::from_vars(vars(&[(
            "WECHAT_SUBSCRIBE_TEMPLATES",
            " order_paid = t-paid , refund_requested=t-refund,",
        )]))
        .unwrap();
        assert_eq!(
            c.wechat_subscribe_templates
                .get("order_paid")
                .map(String::as_str),
            Some("t-paid")
        );
        assert_eq!(c.wechat_subscribe_templates.len(), 2);
        for bad in ["order_paid", "Order=x", "order_paid=a b", "new_review=x"] {
            let err = Config::from_vars(vars(&[("WECHAT_SUBSCRIBE_TEMPLATES", bad)])).unwrap_err();
            assert!(
                err.to_string().contains("WECHAT_SUBSCRIBE_TEMPLATES"),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Config::from_vars(vars(&[("BIND", "nonsense")])).unwrap_err();
        assert!(err.to_string().contains("BIND"));
        let err = Config::from_vars(vars(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"));
    }
}
