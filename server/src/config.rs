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
    /// Distinct students whose open reports hide a post, comment or listing until an operator decides.
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
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    pub fn is_sandbox(&self) -> bool {
        matches!(self.wechat, WechatMode::Sandbox)
    }
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
    fn bad_values_name_the_setting() {
        let err = Config::from_vars(vars(&[("BIND", "nonsense")])).unwrap_err();
        assert!(err.to_string().contains("BIND"));
        let err = Config::from_vars(vars(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"));
    }
}
