//! The built-in fake WeChat. Mounted under `/sandbox/wechat/` in sandbox mode only, it answers the same URLs,
//! parameters, JSON and error codes as `api.weixin.qq.com`, so the production client is exercised end to end.
//!
//! Login codes have the form `<who>-<nonce>` (`alice-1`, `alice-2`, …): every code of the same `<who>` logs in
//! the same WeChat user (same openid), each code works once (40163 afterwards) and for five minutes. A few
//! `<who>` names are reserved to make WeChat fail on purpose: `blocked` (40226), `busy` (-1 system error),
//! `quota` (45011). Anything not of that form is 40029. See `docs/wechat-sandbox.md`.
//!
//! Control endpoints under `/sandbox/wechat/_sandbox/` let a developer or a test look inside (call counters)
//! and make WeChat misbehave (expire the current access tokens).
//!
//! Content security (`msg_sec_check`, `media_check_async` and the `wxa_media_check` push back to the service)
//! lives in [`security`]. The fake WeChat Pay (`/sandbox/wechatpay`, and `upload_shipping_info` here) lives in
//! [`pay`]; subscribe messages (`message/subscribe/send` and one-time
//! subscriptions) in [`subscribe`].

pub mod pay;
mod security;
mod subscribe;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use poem::{
    Route, get, handler, post,
    web::{Data, Json, Query},
};
use serde::Deserialize;
use serde_json::{Value, json};

const CODE_LIFETIME: Duration = Duration::from_secs(300);
const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
const LOGINS_PER_USER_PER_MINUTE: usize = 100;

/// The sandbox's memory: which codes were used, which tokens exist, and how often each API was called.
pub struct Sandbox {
    appid: String,
    secret: String,
    /// Where the sandbox pushes events (the service's `/wechat/push`), and the token it signs them with.
    push_url: String,
    push_token: String,
    /// For what WeChat itself fetches and sends: media downloads and pushes.
    http: reqwest::Client,
    inner: Mutex<Inner>,
    /// Subscribe messages: templates, one-time subscriptions, and what was sent.
    subscribe: Mutex<subscribe::State>,
}

#[derive(Default)]
struct Inner {
    used_codes: HashMap<String, Instant>,
    logins: HashMap<String, Vec<Instant>>,
    /// Valid access tokens and when each stops working.
    tokens: HashMap<String, Instant>,
    /// The token `stable_token` hands out in normal mode, and when it expires.
    stable: Option<(String, Instant)>,
    calls: HashMap<&'static str, u64>,
    /// `msg_sec_check`'s keyword table (seeded, extended through `/_sandbox/keywords`).
    keywords: Vec<security::Keyword>,
    /// Verdicts of `media_check_async` by SHA-256 of the image bytes; anything else passes.
    media_verdicts: HashMap<String, security::Judgement>,
}

impl Sandbox {
    /// A sandbox for the Mini Program `appid`/`secret` that pushes events to `push_url` signed with
    /// `push_token`, as WeChat's message push does.
    pub fn new(appid: &str, secret: &str, push_url: &str, push_token: &str) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .user_agent("campus-trade-wechat-sandbox")
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            appid: appid.into(),
            secret: secret.into(),
            push_url: push_url.into(),
            push_token: push_token.into(),
            http,
            inner: Mutex::new(Inner {
                keywords: security::seed_keywords(),
                ..Inner::default()
            }),
            subscribe: Mutex::new(subscribe::State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, api: &'static str) {
        *self.lock().calls.entry(api).or_default() += 1;
    }

    /// Whether `token` is a live access token (for the sandbox's own authenticated APIs).
    pub fn check_token(&self, token: &str) -> Result<(), Value> {
        let inner = self.lock();
        match inner.tokens.get(token) {
            Some(exp) if *exp > Instant::now() => Ok(()),
            Some(_) => Err(err(42001, "access_token expired")),
            None => Err(err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )),
        }
    }

    fn credentials_ok(&self, appid: &str, secret: &str) -> Result<(), Value> {
        if appid != self.appid {
            return Err(err(40013, "invalid appid"));
        }
        if secret != self.secret {
            return Err(err(40125, "invalid appsecret"));
        }
        Ok(())
    }

    fn issue_token(inner: &mut Inner) -> (String, Instant) {
        let token = format!("SBX_{}", crate::util::random_token(96));
        let exp = Instant::now() + TOKEN_LIFETIME;
        inner.tokens.insert(token.clone(), exp);
        (token, exp)
    }
}

fn err(code: i64, msg: &str) -> Value {
    json!({ "errcode": code, "errmsg": format!("{msg} rid: sbx-{}", crate::util::random_token(6)) })
}

/// The openid the sandbox gives the user `who`: 28 characters, like a real one, and the same every time.
pub fn openid_for(who: &str) -> String {
    let digest = crate::util::sha256_hex(format!("campus-trade-sandbox:{who}").as_bytes());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(hex::decode(digest).unwrap_or_default());
    format!("o{}", &b64[..27])
}

/// Splits a sandbox login code into `<who>` and `<nonce>`; `None` when it is not of that form.
fn parse_code(code: &str) -> Option<(&str, &str)> {
    let (who, nonce) = code.split_once('-')?;
    let who_ok = (1..=32).contains(&who.len())
        && who
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let nonce_ok = (1..=32).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    (who_ok && nonce_ok).then_some((who, nonce))
}

#[derive(Deserialize)]
struct Code2SessionQuery {
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
}

#[handler]
fn jscode2session(Query(q): Query<Code2SessionQuery>, sb: Data<&Arc<Sandbox>>) -> Json<Value> {
    sb.count("jscode2session");
    Json(code2session_answer(&sb, q).unwrap_or_else(|e| e))
}

fn code2session_answer(sb: &Sandbox, q: Code2SessionQuery) -> Result<Value, Value> {
    if q.grant_type.as_deref() != Some("authorization_code") {
        return Err(err(40002, "invalid grant_type"));
    }
    sb.credentials_ok(
        q.appid.as_deref().unwrap_or(""),
        q.secret.as_deref().unwrap_or(""),
    )?;
    let code = q.js_code.unwrap_or_default();
    let Some((who, _)) = parse_code(&code) else {
        return Err(err(40029, "invalid code"));
    };
    match who {
        "blocked" => return Err(err(40226, "code blocked")),
        "busy" => return Err(err(-1, "system error")),
        "quota" => {
            return Err(err(
                45011,
                "api minute-quota reach limit  mustslower  retry next minute",
            ));
        }
        _ => {}
    }
    let now = Instant::now();
    let mut inner = sb.lock();
    inner
        .used_codes
        .retain(|_, used| now.duration_since(*used) < CODE_LIFETIME);
    if inner.used_codes.contains_key(&code) {
        return Err(err(40163, "code been used"));
    }
    let openid = openid_for(who);
    let recent = inner.logins.entry(openid.clone()).or_default();
    recent.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
    if recent.len() >= LOGINS_PER_USER_PER_MINUTE {
        return Err(err(
            45011,
            "api minute-quota reach limit  mustslower  retry next minute",
        ));
    }
    recent.push(now);
    inner.used_codes.insert(code, now);
    let mut key = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    Ok(json!({
        "openid": openid,
        "session_key": base64::engine::general_purpose::STANDARD.encode(key),
    }))
}

#[derive(Deserialize)]
struct StableTokenBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

#[handler]
fn stable_token(body: Option<Json<StableTokenBody>>, sb: Data<&Arc<Sandbox>>) -> Json<Value> {
    sb.count("stable_token");
    let Some(Json(b)) = body else {
        return Json(err(47001, "data format error"));
    };
    if b.grant_type.as_deref() != Some("client_credential") {
        return Json(err(40002, "invalid grant_type"));
    }
    if let Err(e) = sb.credentials_ok(
        b.appid.as_deref().unwrap_or(""),
        b.secret.as_deref().unwrap_or(""),
    ) {
        return Json(e);
    }
    let now = Instant::now();
    let mut inner = sb.lock();
    let current = inner
        .stable
        .clone()
        .filter(|(token, exp)| *exp > now && inner.tokens.get(token).is_some_and(|e| *e > now));
    let (token, exp) = match current {
        Some(live) if !b.force_refresh => live,
        previous => {
            if let Some((old, _)) = previous {
                // The replaced token keeps working for a short grace period, as WeChat's do.
                inner.tokens.insert(old, now + Duration::from_secs(300));
            }
            let fresh = Sandbox::issue_token(&mut inner);
            inner.stable = Some(fresh.clone());
            fresh
        }
    };
    Json(
        json!({ "access_token": token, "expires_in": exp.saturating_duration_since(now).as_secs() }),
    )
}

#[derive(Deserialize)]
struct TokenQuery {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
}

#[handler]
fn legacy_token(Query(q): Query<TokenQuery>, sb: Data<&Arc<Sandbox>>) -> Json<Value> {
    sb.count("token");
    if q.grant_type.as_deref() != Some("client_credential") {
        return Json(err(40002, "invalid grant_type"));
    }
    if let Err(e) = sb.credentials_ok(
        q.appid.as_deref().unwrap_or(""),
        q.secret.as_deref().unwrap_or(""),
    ) {
        return Json(e);
    }
    let mut inner = sb.lock();
    let (token, _) = Sandbox::issue_token(&mut inner);
    Json(json!({ "access_token": token, "expires_in": TOKEN_LIFETIME.as_secs() }))
}

#[derive(Deserialize)]
struct AccessTokenQuery {
    access_token: Option<String>,
}

#[handler]
fn api_domain_ip(Query(q): Query<AccessTokenQuery>, sb: Data<&Arc<Sandbox>>) -> Json<Value> {
    sb.count("get_api_domain_ip");
    match sb.check_token(q.access_token.as_deref().unwrap_or("")) {
        Ok(()) => Json(json!({ "ip_list": ["127.0.0.1"] })),
        Err(e) => Json(e),
    }
}

/// `GET /_sandbox/stats`: how often each API was called.
#[handler]
fn stats(sb: Data<&Arc<Sandbox>>) -> Json<Value> {
    let inner = sb.lock();
    Json(json!({ "calls": inner.calls }))
}

#[derive(Deserialize)]
struct SleepQuery {
    ms: Option<u64>,
}

/// `GET /_sandbox/sleep?ms=N`: answers after N milliseconds (at most 5000), like a slow WeChat. Lets a test keep
/// a request in flight (graceful shutdown) or exercise client timeouts.
#[handler]
async fn sleep(Query(q): Query<SleepQuery>) -> Json<Value> {
    let ms = q.ms.unwrap_or(0).min(5000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms }))
}

/// `POST /_sandbox/expire-tokens`: every access token issued so far stops working at once (42001), as if
/// WeChat had expired them early.
#[handler]
fn expire_tokens(sb: Data<&Arc<Sandbox>>) -> Json<Value> {
    let mut inner = sb.lock();
    let past = Instant::now() - Duration::from_secs(1);
    for exp in inner.tokens.values_mut() {
        *exp = past;
    }
    inner.stable = None;
    Json(json!({ "expired": inner.tokens.len() }))
}

/// The routes of the fake `api.weixin.qq.com`, to be nested under `/sandbox/wechat`.
pub fn routes(sandbox: Arc<Sandbox>) -> impl poem::Endpoint {
    use poem::EndpointExt;
    Route::new()
        .at("/sns/jscode2session", get(jscode2session))
        .at("/cgi-bin/stable_token", post(stable_token))
        .at("/cgi-bin/token", get(legacy_token))
        .at("/cgi-bin/get_api_domain_ip", get(api_domain_ip))
        .at("/_sandbox/stats", get(stats))
        .at("/_sandbox/expire-tokens", post(expire_tokens))
        .at("/_sandbox/sleep", get(sleep))
        .at("/wxa/msg_sec_check", post(security::msg_sec_check))
        .at("/wxa/media_check_async", post(security::media_check_async))
        .at("/_sandbox/keywords", post(security::add_keyword))
        .at(
            "/_sandbox/media-verdicts",
            post(security::add_media_verdict),
        )
        .at(
            "/wxa/sec/order/upload_shipping_info",
            post(pay::shipping::upload_shipping_info),
        )
        .at("/cgi-bin/message/subscribe/send", post(subscribe::send))
        .at("/_sandbox/subscriptions", post(subscribe::grant))
        .at("/_sandbox/subscribe-messages", get(subscribe::received))
        .at("/_sandbox/templates", post(subscribe::add_template))
        .at("/_sandbox/subscribe-failures", post(subscribe::fail_next))
        .data(sandbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_and_openids_are_stable() {
        assert_eq!(parse_code("alice-1"), Some(("alice", "1")));
        assert_eq!(parse_code("Alice-1"), None);
        assert_eq!(parse_code("alice"), None);
        assert_eq!(parse_code("alice-"), None);
        assert_eq!(openid_for("alice"), openid_for("alice"));
        assert_ne!(openid_for("alice"), openid_for("bob"));
        assert_eq!(openid_for("alice").len(), 28);
    }

    #[test]
    fn a_code_works_once() {
        let sb = Sandbox::new("wxa", "s", "http://127.0.0.1:9/wechat/push", "token");
        let q = || Code2SessionQuery {
            appid: Some("wxa".into()),
            secret: Some("s".into()),
            js_code: Some("carol-7".into()),
            grant_type: Some("authorization_code".into()),
        };
        let first = code2session_answer(&sb, q()).unwrap();
        assert_eq!(first["openid"], openid_for("carol"));
        let second = code2session_answer(&sb, q()).unwrap_err();
        assert_eq!(second["errcode"], 40163);
    }
}
