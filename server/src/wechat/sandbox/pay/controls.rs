//! What the student's WeChat does (pay, accept a payout) and the test controls under `/_sandbox/`: the delivery
//! log, duplicate deliveries, crafted (optionally tampered) notifications answered synchronously, injected faults,
//! and the shipping uploads. None of these exist on the real WeChat Pay; they are not signed.

use std::sync::Arc;

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json, Query},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    PaySandbox, SANDBOX_MCHID, SignAs,
    api::expire_if_due,
    delivery::Plain,
    digits, error_body, now_ms,
    store::{Attempt, Collection, Delivery, Trade},
    wx_now,
};
use crate::wechat::pay::{crypto::ApiV3Key, sign};

/// How an injected fault spoils a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FaultKind {
    /// 500 `SYSTEM_ERROR`; nothing happened.
    SystemError,
    /// The call happens, the answer comes after `delay_ms` (longer than the client waits: outcome unknown).
    Timeout { delay_ms: u64 },
    /// The call happens, the answer's signature does not verify.
    BadSignature,
    /// The call happens, the answer carries no signature.
    Unsigned,
}

pub(super) struct Fault {
    kind: String,
    remaining: u32,
    fault: FaultKind,
}

impl PaySandbox {
    /// The fault to apply to the next call of `kind`, if a test asked for one.
    pub(super) fn take_fault(&self, kind: &str) -> Option<FaultKind> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let i = faults
            .iter()
            .position(|f| f.kind == kind || f.kind == "any")?;
        let f = &mut faults[i];
        let fault = f.fault;
        f.remaining -= 1;
        if f.remaining == 0 {
            faults.remove(i);
        }
        Some(fault)
    }
}

/// A refusal of a control endpoint: status, code, message.
pub(super) struct Problem(StatusCode, &'static str, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(error_body(self.1, &self.2))).into_response()
    }
}

fn refusal(status: StatusCode, code: &'static str, message: &str) -> Problem {
    Problem(status, code, message.to_string())
}

fn problem(status: StatusCode, code: &'static str, message: &str) -> Response {
    refusal(status, code, message).into_response()
}

#[derive(Deserialize)]
pub(super) struct PayBody {
    prepay_id: Option<String>,
}

/// `POST /pay {"prepay_id"}`: the student confirms the payment in WeChat. The order becomes `SUCCESS` and its
/// `TRANSACTION.SUCCESS` notification is sent.
#[handler]
pub(super) fn pay(body: Option<Json<PayBody>>, sb: Data<&Arc<PaySandbox>>) -> Response {
    let Some(prepay_id) = body.and_then(|b| b.0.prepay_id).filter(|p| !p.is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "prepay_id is required",
        );
    };
    let now = chrono::Utc::now().timestamp();
    let result = sb.change(|state, touched| {
        let Some(t) = state.trades.values_mut().find(|t| t.prepay_id == prepay_id) else {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                "PREPAY_NOT_FOUND",
                "no order has this prepay_id",
            ));
        };
        if expire_if_due(t, now) {
            touched.push(Collection::Trades);
        }
        match t.state.as_str() {
            "CLOSED" => {
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "ORDER_CLOSED",
                    "订单已关闭",
                ));
            }
            "SUCCESS" | "REFUND" => {
                return Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "ORDERPAID",
                    "该订单已支付",
                ));
            }
            _ => {}
        }
        mark_paid(t);
        touched.push(Collection::Trades);
        let t = t.clone();
        let url = t.notify_url.clone();
        sb.queue(state, touched, &url, Plain::transaction(&t, None));
        Ok(json!({
            "out_trade_no": t.out_trade_no,
            "transaction_id": t.transaction_id,
            "trade_state": t.state,
        }))
    });
    sb.wake.notify_one();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

fn mark_paid(t: &mut Trade) {
    t.state = "SUCCESS".into();
    t.transaction_id = Some(format!(
        "4200{}{}",
        chrono::Utc::now().format("%Y%m%d"),
        digits(16)
    ));
    t.success_time = Some(wx_now());
}

#[derive(Deserialize)]
pub(super) struct ConfirmBody {
    package_info: Option<String>,
}

/// `POST /confirm-transfer {"package_info"}`: the seller accepts the payout in WeChat
/// (`wx.requestMerchantTransfer`). The bill becomes `SUCCESS` and `MCHTRANSFER.BILL.FINISHED` is sent.
#[handler]
pub(super) fn confirm_transfer(
    body: Option<Json<ConfirmBody>>,
    sb: Data<&Arc<PaySandbox>>,
) -> Response {
    let Some(package) = body
        .and_then(|b| b.0.package_info)
        .filter(|p| !p.is_empty())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "package_info is required",
        );
    };
    let result = sb.change(|state, touched| {
        let Some(b) = state.bills.values_mut().find(|b| b.package_info == package) else {
            return Err(refusal(StatusCode::NOT_FOUND, "NOT_FOUND", "no transfer bill has this package_info"));
        };
        if b.state != "WAIT_USER_CONFIRM" {
            return Err(refusal(
                StatusCode::CONFLICT,
                "INVALID_STATE",
                &format!("the bill is {}, not WAIT_USER_CONFIRM", b.state),
            ));
        }
        b.state = "SUCCESS".into();
        b.update_time = wx_now();
        touched.push(Collection::Bills);
        let b = b.clone();
        sb.queue_transfer_notification(state, touched, &b);
        Ok(json!({ "out_bill_no": b.out_bill_no, "transfer_bill_no": b.transfer_bill_no, "state": b.state }))
    });
    sb.wake.notify_one();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct DeliveriesQuery {
    subject: Option<String>,
    event_type: Option<String>,
}

/// `GET /_sandbox/deliveries?subject=&event_type=`: every notification and its attempts (with our status).
#[handler]
pub(super) fn deliveries(
    Query(q): Query<DeliveriesQuery>,
    sb: Data<&Arc<PaySandbox>>,
) -> Json<Value> {
    let state = sb.lock();
    let list: Vec<Value> = state
        .deliveries
        .values()
        .filter(|d| q.subject.as_ref().is_none_or(|s| &d.subject == s))
        .filter(|d| q.event_type.as_ref().is_none_or(|e| &d.event_type == e))
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .collect();
    Json(json!({ "deliveries": list }))
}

#[derive(Deserialize)]
pub(super) struct RedeliverBody {
    /// A delivery id, or the subject (order/refund/bill number) whose latest notification is repeated.
    delivery_id: Option<u64>,
    subject: Option<String>,
    times: Option<u32>,
}

/// `POST /_sandbox/redeliver {"subject" | "delivery_id", "times"}`: sends the same notification (same id, same
/// resource) `times` more times at once, as WeChat may.
#[handler]
pub(super) fn redeliver(body: Option<Json<RedeliverBody>>, sb: Data<&Arc<PaySandbox>>) -> Response {
    let Some(Json(b)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "a JSON body is required",
        );
    };
    let times = b.times.unwrap_or(1);
    if !(1..=100).contains(&times) {
        return problem(StatusCode::BAD_REQUEST, "PARAM_ERROR", "times: 1 to 100");
    }
    let result: Result<Value, Problem> = sb.change(|state, touched| {
        let original = state
            .deliveries
            .values()
            .rev()
            .filter(|d| d.state != "crafted")
            .find(|d| match (b.delivery_id, &b.subject) {
                (Some(id), _) => d.id == id,
                (None, Some(s)) => &d.subject == s,
                (None, None) => false,
            })
            .cloned()
            .ok_or_else(|| refusal(StatusCode::NOT_FOUND, "NOT_FOUND", "no such notification"))?;
        let mut ids = Vec::new();
        for _ in 0..times {
            let id = state.deliveries.keys().next_back().map_or(1, |k| k + 1);
            state.deliveries.insert(
                id,
                Delivery {
                    id,
                    state: "pending".into(),
                    next_at_ms: Some(now_ms()),
                    attempts: Vec::new(),
                    ..original.clone()
                },
            );
            ids.push(id);
        }
        touched.push(Collection::Deliveries);
        Ok(json!({ "queued": ids }))
    });
    sb.wake.notify_one();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct NotifyBody {
    out_trade_no: Option<String>,
    tamper: Option<String>,
    /// For `tamper: "amount"`: the amount the notification claims (default: the order's plus one fen).
    amount_fen: Option<i64>,
}

const TAMPERS: [&str; 10] = [
    "none",
    "forged_signature",
    "wrong_serial",
    "stale_timestamp",
    "amount",
    "signtest",
    "wrong_key",
    "unknown_order",
    "wrong_mchid",
    "wrong_appid",
];

/// `POST /_sandbox/notify {"out_trade_no", "tamper"?, "amount_fen"?}`: sends a `TRANSACTION.SUCCESS` for the order
/// now and answers with our HTTP status and body. `tamper`:
/// - `none`: genuine (an unpaid order is marked paid first, so queries agree);
/// - `forged_signature`: signed with another key; `wrong_serial`: a serial we do not have; `stale_timestamp`:
///   signed ten minutes ago; `signtest`: a `WECHATPAY/SIGNTEST/` probe;
/// - `amount`, `wrong_mchid`, `wrong_appid`: correctly signed and encrypted, but the resource lies;
/// - `wrong_key`: the resource is encrypted under another APIv3 key;
/// - `unknown_order`: a genuine-looking payment of an order nobody created (sent to the service's notify URL).
///
/// Apart from `none`, the sandbox's own order is left as it was.
#[handler]
pub(super) async fn notify(body: Option<Json<NotifyBody>>, sb: Data<&Arc<PaySandbox>>) -> Response {
    let Some(Json(b)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "a JSON body is required",
        );
    };
    let tamper = b.tamper.unwrap_or_else(|| "none".into());
    if !TAMPERS.contains(&tamper.as_str()) {
        return problem(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            &format!("tamper must be one of {}", TAMPERS.join(", ")),
        );
    }
    let trade = if tamper == "unknown_order" {
        Trade {
            out_trade_no: format!("UNKNOWN{}", digits(16)),
            appid: sb.appid.clone(),
            mchid: SANDBOX_MCHID.into(),
            description: "unknown".into(),
            total: b.amount_fen.unwrap_or(100),
            openid: format!("o{}", crate::util::random_token(20)),
            notify_url: sb.default_notify_url.clone(),
            time_expire: None,
            expire_at: None,
            prepay_id: String::new(),
            state: "SUCCESS".into(),
            transaction_id: Some(format!("4200{}", digits(24))),
            success_time: Some(wx_now()),
            refunded: 0,
            create_time: wx_now(),
        }
    } else {
        let Some(no) = b.out_trade_no.filter(|n| !n.is_empty()) else {
            return problem(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "out_trade_no is required",
            );
        };
        let genuine = tamper == "none";
        let found = sb.change(|state, touched| {
            let t = state.trades.get_mut(&no)?;
            if genuine && t.state == "NOTPAY" {
                mark_paid(t);
                touched.push(Collection::Trades);
                return Some(t.clone());
            }
            let mut claimed = t.clone();
            if claimed.transaction_id.is_none() {
                mark_paid(&mut claimed);
            }
            claimed.state = "SUCCESS".into();
            Some(claimed)
        });
        let Some(t) = found else {
            return problem(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在");
        };
        t
    };
    let mut plain = Plain::transaction(&trade, None);
    match tamper.as_str() {
        "amount" => {
            let claimed = b.amount_fen.unwrap_or(trade.total + 1);
            plain.resource["amount"]["total"] = json!(claimed);
            plain.resource["amount"]["payer_total"] = json!(claimed);
        }
        "wrong_mchid" => plain.resource["mchid"] = json!("1900000999"),
        "wrong_appid" => plain.resource["appid"] = json!("wx00000000deadbeef"),
        _ => {}
    }
    let apiv3 = if tamper == "wrong_key" {
        ApiV3Key::random()
    } else {
        sb.keys.apiv3.clone()
    };
    let (notification_id, body) = super::delivery::envelope(&plain, &apiv3);
    let key = sb.notification_key();
    let mut headers = if tamper == "stale_timestamp" {
        let stale = (chrono::Utc::now().timestamp() - 600).to_string();
        sb.signature_headers_at(key, body.as_bytes(), &stale)
    } else {
        sb.signature_headers(key, body.as_bytes())
    };
    for (name, value) in headers.iter_mut() {
        match (*name, tamper.as_str()) {
            ("Wechatpay-Signature", "signtest") => {
                *value = format!(
                    "WECHATPAY/SIGNTEST/{}",
                    crate::util::random_token(64)
                        .replace('-', "+")
                        .replace('_', "/")
                );
            }
            ("Wechatpay-Serial", "wrong_serial") => {
                *value = match key {
                    SignAs::PublicKey => format!("PUB_KEY_ID_{}", digits(32)),
                    SignAs::Certificate => hex::encode_upper(rand::random::<[u8; 20]>()),
                };
            }
            _ => {}
        }
    }
    if tamper == "forged_signature" {
        // A well-formed signature over the right message, by a key that is not WeChat's (the merchant's own).
        let ts = value_of(&headers, "Wechatpay-Timestamp");
        let nonce = value_of(&headers, "Wechatpay-Nonce");
        let forged = sign::sign(
            &sb.keys.merchant_key,
            &sign::response_message(&ts, &nonce, body.as_bytes()),
        )
        .unwrap_or_default();
        for (name, value) in headers.iter_mut() {
            if *name == "Wechatpay-Signature" {
                *value = forged.clone();
            }
        }
    }
    let url = trade.notify_url.clone();
    let result = sb.post(&url, &body, &headers).await;
    let (status, error) = match &result {
        Ok(s) => (Some(*s), None),
        Err(e) => (None, Some(e.clone())),
    };
    let delivery_id = sb.change(|state, touched| {
        super::delivery::prune(state);
        let id = state.deliveries.keys().next_back().map_or(1, |k| k + 1);
        state.deliveries.insert(
            id,
            Delivery {
                id,
                notification_id: notification_id.clone(),
                event_type: "TRANSACTION.SUCCESS".into(),
                subject: trade.out_trade_no.clone(),
                url: url.clone(),
                body: body.clone(),
                key: key_name(key).into(),
                state: "crafted".into(),
                next_at_ms: None,
                attempts: vec![Attempt {
                    at: wx_now(),
                    status,
                    error: error.clone(),
                }],
                tamper: Some(tamper.clone()),
            },
        );
        touched.push(Collection::Deliveries);
        id
    });
    Json(json!({
        "delivery_id": delivery_id,
        "notification_id": notification_id,
        "out_trade_no": trade.out_trade_no,
        "status": status,
        "error": error,
    }))
    .into_response()
}

fn key_name(k: SignAs) -> &'static str {
    match k {
        SignAs::PublicKey => "public_key",
        SignAs::Certificate => "certificate",
    }
}

fn value_of(headers: &[(&'static str, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub(super) struct FailNextBody {
    kind: Option<String>,
    count: Option<u32>,
    fault: Option<String>,
    delay_ms: Option<u64>,
}

/// `POST /_sandbox/fail-next {"kind", "count"?, "fault", "delay_ms"?}`: the next `count` (default 1) calls of
/// `kind` (`prepay`, `query`, `close`, `refund`, `query_refund`, `transfer`, `query_transfer`,
/// `cancel_transfer`, `certificates` or `any`) fail with `fault`: `system_error` (500, nothing done),
/// `timeout` (done, but answered after `delay_ms`, default 15000), `bad_signature` or `unsigned` (done, answer
/// not verifiable).
#[handler]
pub(super) fn fail_next(body: Option<Json<FailNextBody>>, sb: Data<&Arc<PaySandbox>>) -> Response {
    let Some(Json(b)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "a JSON body is required",
        );
    };
    let kind = b.kind.unwrap_or_default();
    if kind != "any" && !super::api::KINDS.contains(&kind.as_str()) {
        return problem(
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            &format!(
                "kind must be any or one of {}",
                super::api::KINDS.join(", ")
            ),
        );
    }
    let fault = match b.fault.as_deref() {
        Some("system_error") => FaultKind::SystemError,
        Some("timeout") => FaultKind::Timeout {
            delay_ms: b.delay_ms.unwrap_or(15_000).min(60_000),
        },
        Some("bad_signature") => FaultKind::BadSignature,
        Some("unsigned") => FaultKind::Unsigned,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "fault must be system_error, timeout, bad_signature or unsigned",
            );
        }
    };
    let count = b.count.unwrap_or(1).clamp(1, 1000);
    sb.faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Fault {
            kind: kind.clone(),
            remaining: count,
            fault,
        });
    Json(json!({ "kind": kind, "count": count })).into_response()
}

/// `GET /_sandbox/shipping`: every shipping upload WeChat accepted.
#[handler]
pub(super) fn shipping_uploads(sb: Data<&Arc<PaySandbox>>) -> Json<Value> {
    let state = sb.lock();
    Json(json!({ "uploads": state.shipping }))
}

/// `GET /_sandbox/state`: the orders, refunds and transfer bills the sandbox knows.
#[handler]
pub(super) fn sandbox_state(sb: Data<&Arc<PaySandbox>>) -> Json<Value> {
    let state = sb.lock();
    Json(json!({
        "trades": state.trades,
        "refunds": state.refunds,
        "bills": state.bills,
    }))
}

/// `GET /_sandbox/keys`: the sandbox merchant's public identifiers and WeChat Pay's public keys (no private key).
#[handler]
pub(super) fn keys(sb: Data<&Arc<PaySandbox>>) -> Json<Value> {
    Json(json!({
        "mchid": SANDBOX_MCHID,
        "mode": format!("{:?}", sb.mode),
        "merchant_serial": sb.keys.merchant_serial,
        "public_key_id": sb.keys.public_key_id,
        "wechatpay_public_key_pem": sb.keys.wechatpay_public_pem,
        "platform_serial": sb.keys.platform_serial,
        "platform_certificate_pem": sb.keys.platform_cert_pem,
    }))
}
