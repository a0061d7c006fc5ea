//! The sandbox's subscribe messages: `POST /cgi-bin/message/subscribe/send`, validated as WeChat validates it
//! (token, `touser`, known `template_id`, `data` an object whose values follow the keyword types' rules), with
//! WeChat's one-time subscriptions: a user who has not granted one for the template gets 43101, and every
//! accepted message uses one up.
//!
//! Control endpoints: `POST /_sandbox/subscriptions {"openid", "template_id", "count"}` grants one-time
//! subscriptions (what `wx.requestSubscribeMessage` does on the phone); `GET /_sandbox/subscribe-messages
//! ?touser=` lists what was accepted; `POST /_sandbox/templates {"template_id", "keys"}` adds a template;
//! `POST /_sandbox/subscribe-failures {"errcodes": [-1, 45009]}` answers the next sends with those errors, one
//! each, as a busy WeChat would (for the outbox's retries).

use std::{collections::HashMap, sync::Arc};

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json, Query},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AccessTokenQuery, Sandbox, err};
use crate::wechat::SANDBOX_TEMPLATE_CHAT_MESSAGE;

/// Most one-time subscriptions a single control call may grant.
const MAX_GRANT: u32 = 1000;

/// What the sandbox remembers about subscribe messages.
pub(super) struct State {
    /// Template id → its keywords (`thing1`, `time4`, …).
    templates: HashMap<String, Vec<String>>,
    /// (openid, template id) → one-time subscriptions left.
    grants: HashMap<(String, String), u32>,
    /// Every accepted message: the request body plus `msgid` and `received_at`.
    received: Vec<Value>,
    next_msgid: u64,
    /// Errors the next sends get, first one first (set by `POST /_sandbox/subscribe-failures`).
    failures: std::collections::VecDeque<i64>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            templates: HashMap::from([(
                SANDBOX_TEMPLATE_CHAT_MESSAGE.to_string(),
                ["thing1", "thing2", "thing3", "time4"]
                    .map(String::from)
                    .to_vec(),
            )]),
            grants: HashMap::new(),
            received: Vec::new(),
            next_msgid: 3_000_000_000,
            failures: Default::default(),
        }
    }
}

/// The keyword types WeChat's templates use.
const KINDS: [&str; 12] = [
    "thing",
    "character_string",
    "number",
    "letter",
    "symbol",
    "amount",
    "phone_number",
    "car_number",
    "name",
    "phrase",
    "time",
    "date",
];

/// The type of a keyword (`thing` of `thing1`), when it is a known type followed by a number.
fn key_kind(key: &str) -> Option<&str> {
    let kind = key.trim_end_matches(|c: char| c.is_ascii_digit());
    (kind.len() < key.len() && KINDS.contains(&kind)).then_some(kind)
}

/// The value rules of a keyword type (WeChat's table of 模板参数值限制), `Err` naming what is wrong.
fn check_value(key: &str, value: &str) -> Result<(), &'static str> {
    let Some(kind) = key_kind(key) else {
        return Err("not a keyword");
    };
    let chars = value.chars().count();
    let ok = match kind {
        "thing" => (1..=20).contains(&chars),
        "character_string" => {
            (1..=32).contains(&chars) && value.chars().all(|c| c.is_ascii_graphic())
        }
        "number" => {
            (1..=32).contains(&chars) && value.chars().all(|c| c.is_ascii_digit() || c == '.')
        }
        "letter" => (1..=32).contains(&chars) && value.chars().all(|c| c.is_ascii_alphabetic()),
        "symbol" => (1..=5).contains(&chars) && value.chars().all(|c| c.is_ascii_punctuation()),
        "amount" => {
            let v = value
                .trim_start_matches('¥')
                .trim_end_matches('元')
                .to_string();
            (1..=11).contains(&v.len())
                && v.chars().all(|c| c.is_ascii_digit() || c == '.')
                && v.chars().filter(|c| *c == '.').count() <= 1
        }
        "phone_number" => {
            (1..=17).contains(&chars)
                && value
                    .chars()
                    .all(|c| c.is_ascii_digit() || "+- ()".contains(c))
        }
        "car_number" => (1..=8).contains(&chars),
        "name" => (1..=10).contains(&chars) || (1..=20).contains(&chars) && value.is_ascii(),
        "phrase" => (1..=5).contains(&chars) && value.chars().all(|c| !c.is_ascii()),
        _ => time_like(value),
    };
    if ok {
        Ok(())
    } else {
        Err("value breaks the keyword's rules")
    }
}

/// The time formats WeChat accepts for `time`/`date` keywords (24-hour).
fn time_like(value: &str) -> bool {
    const FORMATS: [&str; 6] = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y年%m月%d日 %H:%M",
        "%Y/%m/%d %H:%M",
        "%H:%M",
        "%Y-%m-%d",
    ];
    FORMATS.iter().any(|f| {
        chrono::NaiveDateTime::parse_from_str(value, f).is_ok()
            || chrono::NaiveDate::parse_from_str(value, f).is_ok()
            || chrono::NaiveTime::parse_from_str(value, f).is_ok()
    })
}

fn valid_openid(openid: &str) -> bool {
    !openid.is_empty()
        && openid.len() <= 64
        && openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Judges a `subscribe/send` body; `Ok` is the stored record.
fn send_answer(sb: &Sandbox, body: Option<Value>) -> Result<Value, Value> {
    let Some(body) = body.filter(Value::is_object) else {
        return Err(err(47001, "data format error"));
    };
    let touser = body.get("touser").and_then(Value::as_str).unwrap_or("");
    if !valid_openid(touser) {
        return Err(err(40003, "invalid openid"));
    }
    let template_id = body
        .get("template_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(page) = body.get("page") {
        let page = page.as_str().unwrap_or("");
        if page.is_empty()
            || page.len() > 256
            || page.starts_with('/')
            || page.chars().any(char::is_whitespace)
        {
            return Err(err(41030, "invalid page rid"));
        }
    }
    if let Some(state) = body.get("miniprogram_state")
        && !matches!(state.as_str(), Some("developer" | "trial" | "formal"))
    {
        return Err(err(47001, "data format error: miniprogram_state"));
    }
    if let Some(lang) = body.get("lang")
        && !matches!(lang.as_str(), Some("zh_CN" | "en_US" | "zh_HK" | "zh_TW"))
    {
        return Err(err(47001, "data format error: lang"));
    }
    let data = match body.get("data") {
        Some(Value::Object(map)) => map,
        // WeChat's classic pitfall: `data` sent as a JSON string.
        Some(_) => return Err(err(47001, "data format error: data must be an object")),
        None => return Err(err(47003, "argument invalid! data is empty")),
    };
    let mut state = sb.subscribe.lock().unwrap_or_else(|p| p.into_inner());
    let Some(keys) = state.templates.get(template_id).cloned() else {
        return Err(err(40037, "invalid template_id"));
    };
    for key in &keys {
        let value = data
            .get(key)
            .and_then(|v| v.get("value"))
            .and_then(Value::as_str);
        match value {
            Some(v) if check_value(key, v).is_ok() => {}
            _ => return Err(err(47003, &format!("argument invalid! data.{key}.value"))),
        }
    }
    if let Some(extra) = data.keys().find(|k| !keys.contains(k)) {
        return Err(err(47003, &format!("argument invalid! data.{extra}")));
    }
    let key = (touser.to_string(), template_id.to_string());
    match state.grants.get_mut(&key) {
        Some(left) if *left > 0 => *left -= 1,
        _ => return Err(err(43101, "user refuse to accept the msg")),
    }
    state.next_msgid += 1;
    let mut record = body.clone();
    record["msgid"] = state.next_msgid.into();
    record["received_at"] = chrono::Utc::now().to_rfc3339().into();
    state.received.push(record.clone());
    Ok(record)
}

/// `POST /cgi-bin/message/subscribe/send?access_token=…`.
#[handler]
pub(super) fn send(
    Query(q): Query<AccessTokenQuery>,
    body: Option<Json<Value>>,
    sb: Data<&Arc<Sandbox>>,
) -> Json<Value> {
    sb.count("subscribe_send");
    if let Err(e) = sb.check_token(q.access_token.as_deref().unwrap_or("")) {
        return Json(e);
    }
    let injected = sb
        .subscribe
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .failures
        .pop_front();
    if let Some(code) = injected {
        return Json(err(code, "system error"));
    }
    match send_answer(&sb, body.map(|b| b.0)) {
        Ok(record) => Json(json!({ "errcode": 0, "errmsg": "ok", "msgid": record["msgid"] })),
        Err(e) => Json(e),
    }
}

fn bad_control(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "code": "invalid_request", "message": message })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct GrantBody {
    openid: String,
    template_id: String,
    count: Option<u32>,
}

/// `POST /_sandbox/subscriptions {"openid", "template_id", "count"}`: the user accepts `count` (default 1)
/// one-time subscriptions of the template, as after `wx.requestSubscribeMessage`.
#[handler]
pub(super) fn grant(body: Option<Json<GrantBody>>, sb: Data<&Arc<Sandbox>>) -> Response {
    let Some(Json(b)) = body else {
        return bad_control("expected a JSON body {openid, template_id, count}");
    };
    if !valid_openid(&b.openid) {
        return bad_control("openid must be 1–64 letters, digits, - or _");
    }
    let count = b.count.unwrap_or(1);
    if !(1..=MAX_GRANT).contains(&count) {
        return bad_control("count must be 1 to 1000");
    }
    let mut state = sb.subscribe.lock().unwrap_or_else(|p| p.into_inner());
    if !state.templates.contains_key(&b.template_id) {
        return bad_control("unknown template_id (add it with POST /_sandbox/templates)");
    }
    let left = state
        .grants
        .entry((b.openid.clone(), b.template_id.clone()))
        .or_default();
    *left = left.saturating_add(count);
    Json(json!({ "openid": b.openid, "template_id": b.template_id, "remaining": *left }))
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct ReceivedQuery {
    touser: Option<String>,
}

/// `GET /_sandbox/subscribe-messages?touser=`: the accepted messages (of one user, or all), oldest first.
#[handler]
pub(super) fn received(Query(q): Query<ReceivedQuery>, sb: Data<&Arc<Sandbox>>) -> Json<Value> {
    let state = sb.subscribe.lock().unwrap_or_else(|p| p.into_inner());
    let messages: Vec<&Value> = state
        .received
        .iter()
        .filter(|m| {
            q.touser
                .as_deref()
                .is_none_or(|t| m.get("touser").and_then(Value::as_str) == Some(t))
        })
        .collect();
    Json(json!({ "messages": messages }))
}

#[derive(Deserialize)]
pub(super) struct FailuresBody {
    errcodes: Vec<i64>,
}

/// `POST /_sandbox/subscribe-failures {"errcodes": [-1]}`: the next sends (one per code) get these errors
/// instead of being judged, e.g. `-1` (system busy, worth a retry) or `45009` (quota).
#[handler]
pub(super) fn fail_next(body: Option<Json<FailuresBody>>, sb: Data<&Arc<Sandbox>>) -> Response {
    let Some(Json(b)) = body else {
        return bad_control("expected a JSON body {errcodes}");
    };
    if b.errcodes.is_empty() || b.errcodes.len() > 100 || b.errcodes.contains(&0) {
        return bad_control("errcodes must be 1–100 non-zero WeChat error codes");
    }
    let mut state = sb.subscribe.lock().unwrap_or_else(|p| p.into_inner());
    state.failures.extend(b.errcodes.iter().copied());
    Json(json!({ "queued": state.failures.len() })).into_response()
}

#[derive(Deserialize)]
pub(super) struct TemplateBody {
    template_id: String,
    keys: Vec<String>,
}

/// `POST /_sandbox/templates {"template_id", "keys": ["thing1", "amount2"]}`: a template the sandbox accepts.
#[handler]
pub(super) fn add_template(body: Option<Json<TemplateBody>>, sb: Data<&Arc<Sandbox>>) -> Response {
    let Some(Json(b)) = body else {
        return bad_control("expected a JSON body {template_id, keys}");
    };
    if b.template_id.is_empty() || b.template_id.len() > 128 {
        return bad_control("template_id must be 1–128 characters");
    }
    if b.keys.is_empty() || b.keys.len() > 20 || b.keys.iter().any(|k| key_kind(k).is_none()) {
        return bad_control("keys must be 1–20 keywords such as thing1, amount2, time3");
    }
    let mut state = sb.subscribe.lock().unwrap_or_else(|p| p.into_inner());
    state
        .templates
        .insert(b.template_id.clone(), b.keys.clone());
    Json(json!({ "template_id": b.template_id, "keys": b.keys })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(touser: &str) -> Value {
        json!({
            "touser": touser,
            "template_id": SANDBOX_TEMPLATE_CHAT_MESSAGE,
            "page": "pages/chat/conversation?id=1",
            "data": {
                "thing1": {"value": "小明"},
                "thing2": {"value": "还在吗"},
                "thing3": {"value": "九成新自行车"},
                "time4": {"value": "2026-11-24 22:18"},
            },
            "miniprogram_state": "formal",
            "lang": "zh_CN",
        })
    }

    fn grant_one(sb: &Sandbox, openid: &str) {
        sb.subscribe
            .lock()
            .unwrap()
            .grants
            .insert((openid.into(), SANDBOX_TEMPLATE_CHAT_MESSAGE.into()), 1);
    }

    #[test]
    fn one_time_subscriptions_are_used_up() {
        let sb = Sandbox::new("wxa", "s", "http://127.0.0.1:9/wechat/push", "token");
        assert_eq!(
            send_answer(&sb, Some(body("oUser1"))).unwrap_err()["errcode"],
            43101
        );
        grant_one(&sb, "oUser1");
        let record = send_answer(&sb, Some(body("oUser1"))).unwrap();
        assert_eq!(record["data"]["thing2"]["value"], "还在吗");
        assert_eq!(
            send_answer(&sb, Some(body("oUser1"))).unwrap_err()["errcode"],
            43101
        );
        assert_eq!(sb.subscribe.lock().unwrap().received.len(), 1);
    }

    #[test]
    fn fields_are_validated_like_wechat() {
        let sb = Sandbox::new("wxa", "s", "http://127.0.0.1:9/wechat/push", "token");
        grant_one(&sb, "oUser1");
        let mut b = body("oUser1");
        b["data"]["thing2"]["value"] = "这是一条超过二十个字的很长很长很长很长的消息内容".into();
        let e = send_answer(&sb, Some(b)).unwrap_err();
        assert_eq!(e["errcode"], 47003);
        assert!(e["errmsg"].as_str().unwrap().contains("data.thing2.value"));
        let mut b = body("oUser1");
        b["data"] = body("oUser1")["data"].to_string().into();
        assert_eq!(send_answer(&sb, Some(b)).unwrap_err()["errcode"], 47001);
        let mut b = body("oUser1");
        b["template_id"] = "nope".into();
        assert_eq!(send_answer(&sb, Some(b)).unwrap_err()["errcode"], 40037);
        let mut b = body("oUser1");
        b["touser"] = "".into();
        assert_eq!(send_answer(&sb, Some(b)).unwrap_err()["errcode"], 40003);
        let mut b = body("oUser1");
        b["page"] = "/pages/x".into();
        assert_eq!(send_answer(&sb, Some(b)).unwrap_err()["errcode"], 41030);
        let mut b = body("oUser1");
        b["data"]["time4"]["value"] = "yesterday".into();
        assert_eq!(send_answer(&sb, Some(b)).unwrap_err()["errcode"], 47003);
        // None of the refused ones used the subscription.
        assert!(send_answer(&sb, Some(body("oUser1"))).is_ok());
    }

    #[test]
    fn keyword_types() {
        assert!(check_value("thing1", "二十个字以内").is_ok());
        assert!(check_value("thing1", "").is_err());
        assert!(check_value("amount2", "¥12.50").is_ok());
        assert!(check_value("amount2", "12.5元").is_ok());
        assert!(check_value("amount2", "十二元").is_err());
        assert!(check_value("time3", "2026-11-24 22:18").is_ok());
        assert!(check_value("time3", "2026年11月24日 22:18").is_ok());
        assert!(check_value("phrase4", "已售出").is_ok());
        assert!(check_value("phrase4", "sold").is_err());
        assert!(check_value("character_string5", "ORDER-2026-0001").is_ok());
        assert!(
            check_value("thing", "x").is_err(),
            "keywords carry a number"
        );
        assert!(check_value("weird1", "x").is_err());
    }
}
