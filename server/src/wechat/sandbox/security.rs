//! The sandbox's content security: `POST /wxa/msg_sec_check` (v2) judged by a keyword table, and
//! `POST /wxa/media_check_async`, which, like WeChat, downloads the image a moment later and pushes a signed
//! `wxa_media_check` event to the service's message-push URL, judged by the SHA-256 of the downloaded bytes.
//!
//! Control endpoints: `POST /_sandbox/keywords {"word","suggest","label"}` adds (or replaces) a keyword;
//! `POST /_sandbox/media-verdicts {"sha256","suggest","label"}` sets the verdict for an image (default pass).

use std::{sync::Arc, time::Duration};

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json, Query},
};
use rand::Rng;
use serde_json::{Value, json};

use super::{AccessTokenQuery, Sandbox, err};
use crate::wechat::push;

/// Longest content `msg_sec_check` accepts, in characters.
const MAX_CONTENT_CHARS: usize = 2500;
/// Largest image the sandbox downloads (WeChat's limit).
const MAX_MEDIA_BYTES: usize = 10 * 1024 * 1024;
/// Deliveries of one push before the sandbox gives up (WeChat also retries a failed push a few times).
const PUSH_ATTEMPTS: u32 = 3;

/// A verdict of WeChat's: `suggest` (`pass`, `review`, `risky`) and a label code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Judgement {
    suggest: &'static str,
    label: i64,
}

impl Judgement {
    const PASS: Judgement = Judgement {
        suggest: "pass",
        label: 100,
    };

    fn severity(&self) -> u8 {
        match self.suggest {
            "risky" => 2,
            "review" => 1,
            _ => 0,
        }
    }
}

/// A row of the keyword table: content containing `word` (case-insensitive) gets `judgement`.
#[derive(Debug, Clone)]
pub(super) struct Keyword {
    word: String,
    judgement: Judgement,
}

/// The keywords every sandbox starts with.
pub(super) fn seed_keywords() -> Vec<Keyword> {
    [
        ("代考", "risky", 20006),
        ("枪支", "risky", 20006),
        ("刷单", "risky", 20008),
        ("加微信", "review", 10001),
    ]
    .into_iter()
    .map(|(word, suggest, label)| Keyword {
        word: word.to_string(),
        judgement: Judgement { suggest, label },
    })
    .collect()
}

fn suggest_of(value: Option<&Value>) -> Option<&'static str> {
    match value.and_then(Value::as_str)? {
        "pass" => Some("pass"),
        "review" => Some("review"),
        "risky" => Some("risky"),
        _ => None,
    }
}

fn label_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn trace_id() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The fields both checks require: `version` 2, `scene` 1–4 and an `openid`.
fn common_fields(body: &Value) -> Result<i64, Value> {
    if body.get("version").and_then(Value::as_i64) != Some(2) {
        return Err(err(47001, "data format error: version must be 2"));
    }
    let openid = body.get("openid").and_then(Value::as_str).unwrap_or("");
    if openid.is_empty()
        || openid.len() > 64
        || !openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(err(40003, "invalid openid"));
    }
    match body.get("scene").and_then(Value::as_i64) {
        Some(scene @ 1..=4) => Ok(scene),
        _ => Err(err(40129, "invalid scene")),
    }
}

/// `POST /wxa/msg_sec_check?access_token=…` (v2).
#[handler]
pub(super) fn msg_sec_check(
    Query(q): Query<AccessTokenQuery>,
    body: Option<Json<Value>>,
    sb: Data<&Arc<Sandbox>>,
) -> Json<Value> {
    sb.count("msg_sec_check");
    Json(msg_sec_check_answer(&sb, q, body.map(|b| b.0)).unwrap_or_else(|e| e))
}

fn msg_sec_check_answer(
    sb: &Sandbox,
    q: AccessTokenQuery,
    body: Option<Value>,
) -> Result<Value, Value> {
    sb.check_token(q.access_token.as_deref().unwrap_or(""))?;
    let Some(body) = body.filter(Value::is_object) else {
        return Err(err(47001, "data format error"));
    };
    common_fields(&body)?;
    let content = match body.get("content") {
        Some(Value::String(c)) if !c.is_empty() => c,
        Some(Value::String(_)) | None => return Err(err(44002, "empty post data")),
        Some(_) => return Err(err(47001, "data format error: content must be a string")),
    };
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(err(47001, "data format error: content is too long"));
    }
    let mut text = content.to_lowercase();
    for extra in ["title", "nickname", "signature"] {
        if let Some(v) = body.get(extra).and_then(Value::as_str) {
            text.push('\n');
            text.push_str(&v.to_lowercase());
        }
    }

    let hits: Vec<Keyword> = sb
        .lock()
        .keywords
        .iter()
        .filter(|k| text.contains(&k.word.to_lowercase()))
        .cloned()
        .collect();
    let result = hits
        .iter()
        .map(|k| k.judgement.clone())
        .fold(Judgement::PASS, |worst, j| {
            if j.severity() > worst.severity() {
                j
            } else {
                worst
            }
        });
    let mut detail = vec![json!({
        "strategy": "content_model", "errcode": 0, "suggest": "pass", "label": 100, "prob": 90,
    })];
    if hits.is_empty() {
        detail.push(json!({ "strategy": "keyword", "errcode": 0 }));
    }
    for k in &hits {
        detail.push(json!({
            "strategy": "keyword",
            "errcode": 0,
            "suggest": k.judgement.suggest,
            "label": k.judgement.label,
            "level": if k.judgement.suggest == "risky" { 90 } else { 20 },
            "keyword": k.word,
        }));
    }
    Ok(json!({
        "errcode": 0,
        "errmsg": "ok",
        "result": { "suggest": result.suggest, "label": result.label },
        "detail": detail,
        "trace_id": trace_id(),
    }))
}

/// `POST /wxa/media_check_async?access_token=…`: accepts the image and answers a `trace_id` at once; the
/// verdict follows as a push.
#[handler]
pub(super) fn media_check_async(
    Query(q): Query<AccessTokenQuery>,
    body: Option<Json<Value>>,
    sb: Data<&Arc<Sandbox>>,
) -> Json<Value> {
    sb.count("media_check_async");
    let accepted = (|| {
        sb.check_token(q.access_token.as_deref().unwrap_or(""))?;
        let Some(Json(body)) = body.filter(|b| b.0.is_object()) else {
            return Err(err(47001, "data format error"));
        };
        common_fields(&body)?;
        let url = body.get("media_url").and_then(Value::as_str).unwrap_or("");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err(47001, "data format error: media_url"));
        }
        if !matches!(body.get("media_type").and_then(Value::as_i64), Some(1 | 2)) {
            return Err(err(47001, "data format error: media_type"));
        }
        let openid = body
            .get("openid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Ok((url.to_string(), openid))
    })();
    match accepted {
        Ok((url, openid)) => {
            let trace_id = trace_id();
            tokio::spawn(judge_and_push(
                Arc::clone(&sb),
                trace_id.clone(),
                url,
                openid,
            ));
            Json(json!({ "errcode": 0, "errmsg": "ok", "trace_id": trace_id }))
        }
        Err(e) => Json(e),
    }
}

/// Downloads at most [`MAX_MEDIA_BYTES`] of `url`.
async fn download(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_MEDIA_BYTES {
            return Err("larger than 10 MB".into());
        }
    }
    Ok(bytes)
}

/// What WeChat does after accepting an image: wait a little, fetch it, judge it and push the verdict.
async fn judge_and_push(sb: Arc<Sandbox>, trace_id: String, url: String, openid: String) {
    let delay = rand::rng().random_range(50..=200);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let mut event = json!({
        "ToUserName": "gh_5a4db0c0ffee",
        "FromUserName": openid,
        "CreateTime": chrono::Utc::now().timestamp(),
        "MsgType": "event",
        "Event": "wxa_media_check",
        "appid": sb.appid,
        "trace_id": trace_id,
        "version": 2,
    });
    match download(&sb.http, &url).await {
        Ok(bytes) => {
            let sha = crate::util::sha256_hex(&bytes);
            let j = sb
                .lock()
                .media_verdicts
                .get(&sha)
                .cloned()
                .unwrap_or(Judgement::PASS);
            // Labels arrive as strings in real pushes; the sandbox does the same.
            let label = j.label.to_string();
            event["errcode"] = 0.into();
            event["errmsg"] = "ok".into();
            event["result"] = json!({ "suggest": j.suggest, "label": label });
            event["detail"] = json!([{
                "strategy": "content_model", "errcode": 0, "suggest": j.suggest, "label": label, "prob": 90,
            }]);
        }
        Err(e) => {
            // Sandbox convention (WeChat's v2 behaviour is undocumented): a failed download is reported with
            // errcode -1008, like v1's status_code, and no result.
            tracing::info!(trace_id, error = %e, "sandbox could not download the media");
            event["errcode"] = (-1008).into();
            event["errmsg"] = "media download failed".into();
            event["detail"] = json!([]);
        }
    }
    deliver(&sb, &event).await;
}

/// POSTs an event to the push URL, signed as WeChat signs, until the service answers `success`.
async fn deliver(sb: &Sandbox, event: &Value) {
    for attempt in 1..=PUSH_ATTEMPTS {
        sb.count("push_wxa_media_check");
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let nonce = rand::rng()
            .random_range(100_000_000u32..=999_999_999)
            .to_string();
        let signature = push::signature(&sb.push_token, &timestamp, &nonce);
        let sent = sb
            .http
            .post(&sb.push_url)
            .query(&[
                ("signature", signature.as_str()),
                ("timestamp", timestamp.as_str()),
                ("nonce", nonce.as_str()),
            ])
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let text = resp.text().await.unwrap_or_default();
                if text.trim().is_empty() || text.trim() == "success" {
                    return;
                }
            }
            Ok(resp) => {
                tracing::info!(attempt, status = %resp.status(), "sandbox push not acknowledged");
            }
            Err(e) => {
                tracing::info!(attempt, error = %e.without_url(), "sandbox push failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    sb.count("push_failed");
}

fn bad_control(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "code": "invalid_request", "message": message })),
    )
        .into_response()
}

/// `POST /_sandbox/keywords {"word", "suggest", "label"}`: content containing `word` gets that verdict from
/// `msg_sec_check` (a word already listed is replaced).
#[handler]
pub(super) fn add_keyword(body: Option<Json<Value>>, sb: Data<&Arc<Sandbox>>) -> Response {
    let Some(Json(body)) = body else {
        return bad_control("expected a JSON body {word, suggest, label}");
    };
    let word = body
        .get("word")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    if word.is_empty() || word.chars().count() > 100 {
        return bad_control("word must be 1 to 100 characters");
    }
    let Some(suggest) = suggest_of(body.get("suggest")) else {
        return bad_control("suggest must be pass, review or risky");
    };
    let Some(label) = label_of(body.get("label")) else {
        return bad_control("label must be a WeChat label code, e.g. 20002");
    };
    let mut inner = sb.lock();
    let word = word.to_lowercase();
    inner.keywords.retain(|k| k.word != word);
    inner.keywords.push(Keyword {
        word: word.clone(),
        judgement: Judgement { suggest, label },
    });
    Json(json!({ "word": word, "suggest": suggest, "label": label, "keywords": inner.keywords.len() }))
        .into_response()
}

/// `POST /_sandbox/media-verdicts {"sha256", "suggest", "label"}`: the verdict of the image whose bytes have this
/// SHA-256 (hex).
#[handler]
pub(super) fn add_media_verdict(body: Option<Json<Value>>, sb: Data<&Arc<Sandbox>>) -> Response {
    let Some(Json(body)) = body else {
        return bad_control("expected a JSON body {sha256, suggest, label}");
    };
    let sha = body
        .get("sha256")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad_control("sha256 must be 64 hex digits");
    }
    let Some(suggest) = suggest_of(body.get("suggest")) else {
        return bad_control("suggest must be pass, review or risky");
    };
    let Some(label) = label_of(body.get("label")) else {
        return bad_control("label must be a WeChat label code, e.g. 20002");
    };
    let mut inner = sb.lock();
    inner
        .media_verdicts
        .insert(sha.clone(), Judgement { suggest, label });
    Json(json!({ "sha256": sha, "suggest": suggest, "label": label })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox_with_token() -> (Arc<Sandbox>, String) {
        let sb = Sandbox::new("wxa", "s", "http://127.0.0.1:9/wechat/push", "token");
        let token = {
            let mut inner = sb.lock();
            Sandbox::issue_token(&mut inner).0
        };
        (sb, token)
    }

    fn ask(sb: &Sandbox, token: &str, body: Value) -> Value {
        msg_sec_check_answer(
            sb,
            AccessTokenQuery {
                access_token: Some(token.into()),
            },
            Some(body),
        )
        .unwrap_or_else(|e| e)
    }

    #[test]
    fn keywords_decide_and_the_worst_wins() {
        let (sb, token) = sandbox_with_token();
        let body = |content: &str| json!({ "content": content, "version": 2, "scene": 2, "openid": "oABC" });
        let pass = ask(&sb, &token, body("九成新自行车"));
        assert_eq!(pass["errcode"], 0);
        assert_eq!(pass["result"], json!({ "suggest": "pass", "label": 100 }));
        assert!(pass["trace_id"].as_str().is_some_and(|t| t.len() == 36));
        let review = ask(&sb, &token, body("有意加微信"));
        assert_eq!(
            review["result"],
            json!({ "suggest": "review", "label": 10001 })
        );
        let both = ask(&sb, &token, body("加微信，代考"));
        assert_eq!(
            both["result"],
            json!({ "suggest": "risky", "label": 20006 })
        );
        assert_eq!(both["detail"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn bad_requests_get_wechat_errcodes() {
        let (sb, token) = sandbox_with_token();
        let ok = json!({ "content": "x", "version": 2, "scene": 2, "openid": "oABC" });
        assert_eq!(ask(&sb, "forged", ok.clone())["errcode"], 40001);
        let mut b = ok.clone();
        b["scene"] = 7.into();
        assert_eq!(ask(&sb, &token, b)["errcode"], 40129);
        let mut b = ok.clone();
        b["openid"] = "".into();
        assert_eq!(ask(&sb, &token, b)["errcode"], 40003);
        let mut b = ok.clone();
        b["content"] = "".into();
        assert_eq!(ask(&sb, &token, b)["errcode"], 44002);
        let mut b = ok.clone();
        b["version"] = 1.into();
        assert_eq!(ask(&sb, &token, b)["errcode"], 47001);
        let mut b = ok;
        b["content"] = "长".repeat(2501).into();
        assert_eq!(ask(&sb, &token, b)["errcode"], 47001);
    }
}
