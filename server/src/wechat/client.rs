//! The Mini Program server API client: `code2session`, and the `access_token` every other call needs.
//!
//! The access token is fetched through `stable_token`, cached, refreshed five minutes before it expires, and
//! refreshed at once when WeChat rejects it (40001/42001). One task per process fetches it while the others wait
//! (a mutex is the single flight); with Redis the token and a refresh lock are shared, so a fleet of instances
//! asks WeChat once, not once each.

use std::time::{Duration, Instant};

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use super::WechatError;
use crate::{config::Secret, kv::Kv};

/// Refresh this long before WeChat says the token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long a token read from the shared store is trusted before it is read again.
const SHARED_READ_TTL: Duration = Duration::from_secs(60);

pub struct MiniProgram {
    http: reqwest::Client,
    base: String,
    appid: String,
    secret: Secret,
    kv: Kv,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

struct CachedToken {
    token: String,
    refresh_at: Instant,
}

/// What `code2session` tells us about a user. `session_key` is kept secret: never returned or logged.
pub struct Code2Session {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: Secret,
}

/// One subscribe message (`POST /cgi-bin/message/subscribe/send`).
#[derive(Debug, Clone)]
pub struct SubscribeMessage {
    /// The receiver's openid.
    pub touser: String,
    pub template_id: String,
    /// The Mini Program page the message opens, e.g. `pages/chat/conversation?id=7`.
    pub page: Option<String>,
    /// `{"thing1": {"value": "…"}, …}`, keyed by the template's keywords.
    pub data: Value,
    /// `developer`, `trial` or `formal` (WeChat's default).
    pub miniprogram_state: Option<String>,
}

#[derive(Deserialize)]
struct Code2SessionBody {
    openid: String,
    #[serde(default)]
    unionid: Option<String>,
    session_key: String,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: u64,
}

/// Turns a WeChat JSON answer into `T`, or into the error its non-zero `errcode` names.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, WechatError> {
    let errcode = value.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    if errcode != 0 {
        let errmsg = value
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        return Err(WechatError::Api { errcode, errmsg });
    }
    serde_json::from_value(value).map_err(|e| WechatError::BadResponse(e.to_string()))
}

fn is_token_rejection(err: &WechatError) -> bool {
    matches!(err.errcode(), Some(40001 | 42001))
}

impl MiniProgram {
    pub fn new(http: reqwest::Client, base: String, appid: String, secret: Secret, kv: Kv) -> Self {
        Self {
            http,
            base,
            appid,
            secret,
            kv,
            token: tokio::sync::Mutex::new(None),
        }
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, WechatError> {
        let resp = req
            .send()
            .await
            .map_err(|e| WechatError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(WechatError::Transport(format!("HTTP {status}")));
        }
        resp.json::<Value>()
            .await
            .map_err(|e| WechatError::BadResponse(e.without_url().to_string()))
    }

    /// Exchanges a `wx.login()` code for the user's openid (`GET /sns/jscode2session`).
    pub async fn code2session(&self, code: &str) -> Result<Code2Session, WechatError> {
        let req = self
            .http
            .get(format!("{}/sns/jscode2session", self.base))
            .query(&[
                ("appid", self.appid.as_str()),
                ("secret", self.secret.expose()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ]);
        let body: Code2SessionBody = decode(self.send(req).await?)?;
        if body.openid.is_empty() {
            return Err(WechatError::BadResponse("empty openid".into()));
        }
        Ok(Code2Session {
            openid: body.openid,
            unionid: body.unionid,
            session_key: Secret::new(body.session_key),
        })
    }

    fn shared_key(&self) -> String {
        format!("wechat:access_token:{}", self.appid)
    }

    /// A valid access token, fetched or refreshed when needed.
    pub async fn access_token(&self) -> Result<String, WechatError> {
        let mut cached = self.token.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let fresh = self.obtain_token(None).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Called when WeChat rejected `rejected`: forget it everywhere and get a fresh one.
    async fn replace_rejected(&self, rejected: &str) -> Result<String, WechatError> {
        let mut cached = self.token.lock().await;
        if let Some(c) = cached.as_ref()
            && c.token != rejected
        {
            // Another task already replaced it.
            return Ok(c.token.clone());
        }
        *cached = None;
        let _ = self.kv.del_if_eq(&self.shared_key(), rejected).await;
        let fresh = self.obtain_token(Some(rejected)).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Reads the shared token, or fetches one under the shared refresh lock.
    async fn obtain_token(&self, rejected: Option<&str>) -> Result<CachedToken, WechatError> {
        let key = self.shared_key();
        if let Ok(Some(token)) = self.kv.get(&key).await
            && Some(token.as_str()) != rejected
        {
            return Ok(CachedToken {
                token,
                refresh_at: Instant::now() + SHARED_READ_TTL,
            });
        }
        let lock_key = format!("{key}:lock");
        let owner = crate::util::random_token(9);
        let have_lock = self
            .kv
            .set_nx_ex(&lock_key, &owner, Duration::from_secs(15))
            .await
            .unwrap_or(true);
        if !have_lock {
            // Someone else is refreshing: wait for their result for a few seconds.
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(Some(token)) = self.kv.get(&key).await
                    && Some(token.as_str()) != rejected
                {
                    return Ok(CachedToken {
                        token,
                        refresh_at: Instant::now() + SHARED_READ_TTL,
                    });
                }
            }
        }
        let result = self.fetch_stable_token(rejected).await;
        if have_lock {
            let _ = self.kv.del_if_eq(&lock_key, &owner).await;
        }
        let (token, expires_in) = result?;
        let lifetime = Duration::from_secs(expires_in)
            .saturating_sub(REFRESH_MARGIN)
            .max(Duration::from_secs(30));
        if let Err(e) = self.kv.set_ex(&key, &token, lifetime).await {
            tracing::warn!(error = %e, "could not share the access token");
        }
        Ok(CachedToken {
            token,
            refresh_at: Instant::now() + lifetime,
        })
    }

    /// `POST /cgi-bin/stable_token`; when the normal mode hands back the token WeChat just rejected, asks again
    /// with `force_refresh`.
    async fn fetch_stable_token(
        &self,
        rejected: Option<&str>,
    ) -> Result<(String, u64), WechatError> {
        let mut force = false;
        loop {
            let req = self
                .http
                .post(format!("{}/cgi-bin/stable_token", self.base))
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret.expose(),
                    "force_refresh": force,
                }));
            let body: TokenBody = decode(self.send(req).await?)?;
            if !force && Some(body.access_token.as_str()) == rejected {
                force = true;
                continue;
            }
            tracing::info!(
                expires_in = body.expires_in,
                forced = force,
                "fetched a WeChat access token"
            );
            return Ok((body.access_token, body.expires_in));
        }
    }

    /// Calls an API that takes `access_token` as a query parameter, retrying once with a fresh token when
    /// WeChat rejects the one we had.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, WechatError> {
        let mut token = self.access_token().await?;
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{}", self.base, path))
                .query(&[("access_token", &token)]);
            if let Some(body) = body {
                req = req.json(body);
            }
            match decode::<T>(self.send(req).await?) {
                Err(e) if attempt == 0 && is_token_rejection(&e) => {
                    tracing::warn!(
                        errcode = e.errcode(),
                        "WeChat rejected the access token; refreshing"
                    );
                    token = self.replace_rejected(&token).await?;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// `POST /cgi-bin/message/subscribe/send`: a subscribe message to `msg.touser`. `data` goes out as a JSON object
    /// (`{"thing1": {"value": "…"}}`), never as a string. A user who did not subscribe (or whose one-time
    /// subscription was used up) is WeChat's 43101.
    pub async fn subscribe_send(&self, msg: &SubscribeMessage) -> Result<(), WechatError> {
        let mut body = serde_json::json!({
            "touser": msg.touser,
            "template_id": msg.template_id,
            "data": msg.data,
            "lang": "zh_CN",
        });
        if let Some(page) = &msg.page {
            body["page"] = page.as_str().into();
        }
        if let Some(state) = &msg.miniprogram_state {
            body["miniprogram_state"] = state.as_str().into();
        }
        let _: Value = self
            .call(
                reqwest::Method::POST,
                "/cgi-bin/message/subscribe/send",
                Some(&body),
            )
            .await?;
        Ok(())
    }

    /// `GET /cgi-bin/get_api_domain_ip`: the addresses of WeChat's API servers. A cheap authenticated call used
    /// by `campus-trade wechat-check` to prove the credentials work.
    pub async fn api_domain_ips(&self) -> Result<Vec<String>, WechatError> {
        #[derive(Deserialize)]
        struct Ips {
            ip_list: Vec<String>,
        }
        let ips: Ips = self
            .call(reqwest::Method::GET, "/cgi-bin/get_api_domain_ip", None)
            .await?;
        Ok(ips.ip_list)
    }
}
