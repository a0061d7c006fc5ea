//! The sandbox's API v3 endpoints. One dispatcher checks the request signature first (like WeChat, nothing
//! happens for a request that does not verify), applies any fault a test injected for that kind of call, performs
//! the call on the remembered state, and signs the answer.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use poem::{Request, Response, handler, http::StatusCode, web::Data};
use serde_json::{Value, json};

use super::{
    PaySandbox, SANDBOX_MCHID, SignAs,
    controls::FaultKind,
    digits, error_body, now_ms, package_info,
    store::{Bill, Collection, RefundRec, Trade},
    wx_now,
};
use crate::wechat::pay::{sign, verify};

/// A WeChat error answer.
#[derive(Debug)]
pub(super) struct WxError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<Value>,
}

fn wx(status: u16, code: &'static str, message: impl Into<String>) -> WxError {
    WxError {
        status,
        code,
        message: message.into(),
        detail: None,
    }
}

fn param(message: impl Into<String>) -> WxError {
    wx(400, "PARAM_ERROR", message)
}

type Outcome = Result<(u16, Option<Value>), WxError>;

/// The calls a fault can be injected into.
pub(super) const KINDS: [&str; 9] = [
    "prepay",
    "query",
    "close",
    "refund",
    "query_refund",
    "transfer",
    "query_transfer",
    "cancel_transfer",
    "certificates",
];

/// A parsed v3 route.
enum Call<'a> {
    Prepay,
    Query(&'a str),
    QueryById(&'a str),
    Close(&'a str),
    Refund,
    QueryRefund(&'a str),
    Transfer,
    QueryTransfer(&'a str),
    CancelTransfer(&'a str),
    Certificates,
}

impl Call<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Call::Prepay => "prepay",
            Call::Query(_) | Call::QueryById(_) => "query",
            Call::Close(_) => "close",
            Call::Refund => "refund",
            Call::QueryRefund(_) => "query_refund",
            Call::Transfer => "transfer",
            Call::QueryTransfer(_) => "query_transfer",
            Call::CancelTransfer(_) => "cancel_transfer",
            Call::Certificates => "certificates",
        }
    }
}

fn route<'a>(method: &str, path: &'a str) -> Option<Call<'a>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match (method, segs.as_slice()) {
        ("POST", ["v3", "pay", "transactions", "jsapi"]) => Call::Prepay,
        ("GET", ["v3", "pay", "transactions", "out-trade-no", no]) => Call::Query(no),
        ("GET", ["v3", "pay", "transactions", "id", id]) => Call::QueryById(id),
        ("POST", ["v3", "pay", "transactions", "out-trade-no", no, "close"]) => Call::Close(no),
        ("POST", ["v3", "refund", "domestic", "refunds"]) => Call::Refund,
        ("GET", ["v3", "refund", "domestic", "refunds", no]) => Call::QueryRefund(no),
        ("POST", ["v3", "fund-app", "mch-transfer", "transfer-bills"]) => Call::Transfer,
        (
            "GET",
            [
                "v3",
                "fund-app",
                "mch-transfer",
                "transfer-bills",
                "out-bill-no",
                no,
            ],
        ) => Call::QueryTransfer(no),
        (
            "POST",
            [
                "v3",
                "fund-app",
                "mch-transfer",
                "transfer-bills",
                "out-bill-no",
                no,
                "cancel",
            ],
        ) => Call::CancelTransfer(no),
        ("GET", ["v3", "certificates"]) => Call::Certificates,
        _ => return None,
    })
}

/// Every `/v3/...` request.
#[handler]
pub(super) async fn v3(req: &Request, body: Vec<u8>, sb: Data<&Arc<PaySandbox>>) -> Response {
    let sb: &PaySandbox = &sb;
    let method = req.method().as_str().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let request_serial = req
        .headers()
        .get("wechatpay-serial")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let sign_as = sb.response_key(request_serial.as_deref());

    if let Err(e) = sb.verify_request(&method, &path_and_query, req.headers(), &body) {
        return sb.reply(sign_as, Err(e), None);
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (path_and_query.clone(), String::new()),
    };
    let Some(call) = route(&method, &path) else {
        return sb.reply(
            sign_as,
            Err(wx(404, "NOT_FOUND", "no such API in the sandbox")),
            None,
        );
    };
    let fault = sb.take_fault(call.kind());
    if let Some(FaultKind::SystemError) = fault {
        return sb.reply(
            sign_as,
            Err(wx(
                500,
                "SYSTEM_ERROR",
                "系统错误 (injected by the sandbox)",
            )),
            None,
        );
    }
    let query: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let outcome = sb.perform(call, &body, &query, request_serial.as_deref());
    if let Some(FaultKind::Timeout { delay_ms }) = fault {
        // The call happened; the answer comes too late for the client.
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    sb.reply(sign_as, outcome, fault)
}

impl PaySandbox {
    /// WeChat's check of the `Authorization` header: mchid, merchant certificate serial, timestamp window and the
    /// signature over `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`.
    fn verify_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &poem::http::HeaderMap,
        body: &[u8],
    ) -> Result<(), WxError> {
        let sign_error = |message: String| wx(401, "SIGN_ERROR", message);
        let Some(auth) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(sign::parse_authorization)
        else {
            return Err(sign_error(
                "Authorization header missing or not WECHATPAY2-SHA256-RSA2048 with mchid, nonce_str, timestamp, \
                 serial_no and signature"
                    .into(),
            ));
        };
        if auth.mchid != SANDBOX_MCHID {
            return Err(sign_error(format!("商户号 {} 不存在", auth.mchid)));
        }
        if verify::normalize_serial(&auth.serial_no)
            != verify::normalize_serial(&self.keys.merchant_serial)
        {
            return Err(sign_error(
                "serial_no is not the serial of this merchant's API certificate".into(),
            ));
        }
        if !verify::timestamp_fresh(&auth.timestamp, chrono::Utc::now().timestamp()) {
            return Err(sign_error(
                "timestamp is more than 5 minutes away from WeChat's clock".into(),
            ));
        }
        let message = sign::request_message(
            method,
            path_and_query,
            &auth.timestamp,
            &auth.nonce_str,
            body,
        );
        if sign::verify(&self.merchant_public, &message, &auth.signature) {
            return Ok(());
        }
        let head = format!(
            "{method}\n{path_and_query}\n{}\n{}\n",
            auth.timestamp, auth.nonce_str
        );
        let body_start: String = String::from_utf8_lossy(body).chars().take(8).collect();
        let mut err = sign_error("错误的签名，验签失败".into());
        err.detail = Some(json!({
            "detail": { "issue": "sign not match" },
            "field": "signature",
            "location": "authorization",
            "sign_information": {
                "method": method,
                "sign_message_length": message.len(),
                "truncated_sign_message": format!("{head}{body_start}\n"),
                "url": path_and_query,
            }
        }));
        Err(err)
    }

    /// Signs (or, by injected fault, mis-signs or leaves unsigned) an answer.
    fn reply(&self, sign_as: SignAs, outcome: Outcome, fault: Option<FaultKind>) -> Response {
        let (status, body) = match outcome {
            Ok((status, body)) => (status, body),
            Err(e) => {
                let mut b = error_body(e.code, &e.message);
                if let Some(d) = e.detail {
                    b["detail"] = d;
                }
                (e.status, Some(b))
            }
        };
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let mut resp = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("Request-ID", format!("08{}", digits(30)));
        if !bytes.is_empty() {
            resp = resp.header("Content-Type", "application/json");
        }
        match fault {
            Some(FaultKind::Unsigned) => {}
            Some(FaultKind::BadSignature) => {
                // Signed, but over other bytes than those sent.
                let mut other = bytes.clone();
                other.extend_from_slice(b" ");
                for (k, v) in self.signature_headers(sign_as, &other) {
                    resp = resp.header(k, v);
                }
            }
            _ => {
                for (k, v) in self.signature_headers(sign_as, &bytes) {
                    resp = resp.header(k, v);
                }
            }
        }
        resp.body(bytes)
    }

    fn perform(
        &self,
        call: Call<'_>,
        body: &[u8],
        query: &BTreeMap<String, String>,
        request_serial: Option<&str>,
    ) -> Outcome {
        match call {
            Call::Prepay => self.prepay(body),
            Call::Query(no) => {
                check_mchid_query(query)?;
                self.query_trade(|t| t.out_trade_no == no)
            }
            Call::QueryById(id) => {
                check_mchid_query(query)?;
                self.query_trade(|t| t.transaction_id.as_deref() == Some(id))
            }
            Call::Close(no) => self.close(no, body),
            Call::Refund => self.refund(body),
            Call::QueryRefund(no) => {
                let state = self.lock();
                let r = state
                    .refunds
                    .get(no)
                    .ok_or_else(|| wx(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))?;
                Ok((200, Some(refund_json(r))))
            }
            Call::Transfer => self.transfer(body, request_serial),
            Call::QueryTransfer(no) => {
                let state = self.lock();
                let b = state
                    .bills
                    .get(no)
                    .ok_or_else(|| wx(404, "NOT_FOUND", "记录不存在"))?;
                Ok((200, Some(bill_query_json(b))))
            }
            Call::CancelTransfer(no) => self.cancel_transfer(no),
            Call::Certificates => self.certificates(),
        }
    }

    fn prepay(&self, body: &[u8]) -> Outcome {
        let v: Value = serde_json::from_slice(body).map_err(|_| param("请求体不是合法的JSON"))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        let (appid, mchid) = (s("appid"), s("mchid"));
        if mchid != SANDBOX_MCHID {
            return Err(wx(400, "MCH_NOT_EXISTS", "商户号不存在"));
        }
        if appid != self.appid {
            return Err(wx(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配"));
        }
        let description = s("description");
        if description.is_empty() || description.len() > 127 {
            return Err(param("description is required, at most 127 bytes"));
        }
        let out_trade_no = s("out_trade_no");
        check_out_trade_no(out_trade_no)?;
        check_notify_url(s("notify_url"), true)?;
        let total = v
            .pointer("/amount/total")
            .and_then(Value::as_i64)
            .filter(|t| *t >= 1)
            .ok_or_else(|| param("amount.total must be a positive integer (fen)"))?;
        if let Some(c) = v.pointer("/amount/currency")
            && c != "CNY"
        {
            return Err(param("amount.currency must be CNY"));
        }
        let openid = v
            .pointer("/payer/openid")
            .and_then(Value::as_str)
            .filter(|o| !o.is_empty() && o.len() <= 128)
            .ok_or_else(|| param("payer.openid is required"))?;
        let time_expire = v.get("time_expire").and_then(Value::as_str);
        let expire_at = match time_expire {
            Some(t) => Some(
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|_| param("time_expire must be RFC 3339 (2018-06-08T10:34:56+08:00)"))?
                    .timestamp(),
            ),
            None => Some(chrono::Utc::now().timestamp() + 7 * 86_400),
        };
        let now = chrono::Utc::now().timestamp();
        self.change(|state, touched| {
            if let Some(t) = state.trades.get_mut(out_trade_no) {
                if expire_if_due(t, now) {
                    touched.push(Collection::Trades);
                }
                match t.state.as_str() {
                    "CLOSED" => return Err(wx(400, "ORDER_CLOSED", "订单已关闭")),
                    "SUCCESS" | "REFUND" => return Err(wx(400, "ORDERPAID", "该订单已支付")),
                    _ => {}
                }
                let same = t.appid == appid
                    && t.description == description
                    && t.total == total
                    && t.openid == openid
                    && t.notify_url == s("notify_url");
                if !same {
                    return Err(wx(
                        403,
                        "OUT_TRADE_NO_USED",
                        "商户订单号重复: the same out_trade_no was used with other parameters",
                    ));
                }
                return Ok((200, Some(json!({ "prepay_id": t.prepay_id }))));
            }
            let prepay_id = format!(
                "wx{}{}",
                chrono::Utc::now().format("%d%H%M%S"),
                hex::encode(rand::random::<[u8; 13]>())
            );
            state.trades.insert(
                out_trade_no.to_string(),
                Trade {
                    out_trade_no: out_trade_no.to_string(),
                    appid: appid.to_string(),
                    mchid: mchid.to_string(),
                    description: description.to_string(),
                    total,
                    openid: openid.to_string(),
                    notify_url: s("notify_url").to_string(),
                    time_expire: time_expire.map(str::to_string),
                    expire_at,
                    prepay_id: prepay_id.clone(),
                    state: "NOTPAY".into(),
                    transaction_id: None,
                    success_time: None,
                    refunded: 0,
                    create_time: wx_now(),
                },
            );
            touched.push(Collection::Trades);
            Ok((200, Some(json!({ "prepay_id": prepay_id }))))
        })
    }

    fn query_trade(&self, pick: impl Fn(&Trade) -> bool) -> Outcome {
        let now = chrono::Utc::now().timestamp();
        self.change(|state, touched| {
            let t = state
                .trades
                .values_mut()
                .find(|t| pick(t))
                .ok_or_else(|| wx(404, "ORDER_NOT_EXIST", "订单不存在"))?;
            if expire_if_due(t, now) {
                touched.push(Collection::Trades);
            }
            Ok((200, Some(transaction_json(t, None))))
        })
    }

    fn close(&self, no: &str, body: &[u8]) -> Outcome {
        let v: Value = serde_json::from_slice(body).map_err(|_| param("请求体不是合法的JSON"))?;
        if v.get("mchid").and_then(Value::as_str) != Some(SANDBOX_MCHID) {
            return Err(param("mchid is required and must be the merchant's"));
        }
        self.change(|state, touched| {
            let t = state
                .trades
                .get_mut(no)
                .ok_or_else(|| wx(404, "ORDER_NOT_EXIST", "订单不存在"))?;
            match t.state.as_str() {
                "SUCCESS" | "REFUND" => Err(wx(400, "ORDERPAID", "订单已支付，不能关闭")),
                "CLOSED" => Ok((204, None)),
                _ => {
                    t.state = "CLOSED".into();
                    touched.push(Collection::Trades);
                    Ok((204, None))
                }
            }
        })
    }

    fn refund(&self, body: &[u8]) -> Outcome {
        let v: Value = serde_json::from_slice(body).map_err(|_| param("请求体不是合法的JSON"))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let out_refund_no = s("out_refund_no").unwrap_or("");
        let ok_no = !out_refund_no.is_empty()
            && out_refund_no.len() <= 64
            && out_refund_no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b));
        if !ok_no {
            return Err(param("out_refund_no: 1-64 of [0-9A-Za-z_-|*@]"));
        }
        let refund = v
            .pointer("/amount/refund")
            .and_then(Value::as_i64)
            .filter(|r| *r >= 1)
            .ok_or_else(|| param("amount.refund must be a positive integer (fen)"))?;
        let total = v
            .pointer("/amount/total")
            .and_then(Value::as_i64)
            .ok_or_else(|| param("amount.total is required"))?;
        if v.pointer("/amount/currency").and_then(Value::as_str) != Some("CNY") {
            return Err(param("amount.currency must be CNY"));
        }
        let reason = s("reason").map(str::to_string);
        if reason.as_ref().is_some_and(|r| r.len() > 80) {
            return Err(param("reason: at most 80 bytes"));
        }
        let notify_url = s("notify_url").map(str::to_string);
        if let Some(u) = &notify_url {
            check_notify_url(u, false)?;
        }
        let by_trade = s("out_trade_no");
        let by_txid = s("transaction_id");
        if by_trade.is_none() && by_txid.is_none() {
            return Err(param("out_trade_no or transaction_id is required"));
        }
        let settle_at_ms = now_ms() + self.scaled_ms(super::REFUND_PROCESSING_SECS);
        let outcome = self.change(|state, touched| {
            let trade = state
                .trades
                .values()
                .find(|t| {
                    by_trade.is_some_and(|n| t.out_trade_no == n)
                        || by_txid.is_some_and(|id| t.transaction_id.as_deref() == Some(id))
                })
                .cloned()
                .ok_or_else(|| wx(404, "RESOURCE_NOT_EXISTS", "订单不存在"))?;
            if let Some(existing) = state.refunds.get(out_refund_no) {
                if existing.out_trade_no == trade.out_trade_no
                    && existing.refund == refund
                    && existing.total == total
                {
                    return Ok((200, Some(refund_json(existing))));
                }
                return Err(wx(
                    400,
                    "INVALID_REQUEST",
                    "out_refund_no 已用于另一笔退款 (same out_refund_no, other parameters)",
                ));
            }
            if !matches!(trade.state.as_str(), "SUCCESS" | "REFUND") {
                return Err(wx(400, "INVALID_REQUEST", "订单未支付，不能退款"));
            }
            if total != trade.total {
                return Err(wx(400, "INVALID_REQUEST", "amount.total 与订单金额不一致"));
            }
            let committed: i64 = state
                .refunds
                .values()
                .filter(|r| r.out_trade_no == trade.out_trade_no && r.status != "CLOSED")
                .map(|r| r.refund)
                .sum();
            if committed + refund > trade.total {
                return Err(wx(400, "INVALID_REQUEST", "退款金额超过订单可退金额"));
            }
            let r = RefundRec {
                out_refund_no: out_refund_no.to_string(),
                refund_id: format!("50{}", digits(30)),
                out_trade_no: trade.out_trade_no.clone(),
                transaction_id: trade.transaction_id.clone().unwrap_or_default(),
                refund,
                total,
                reason,
                notify_url,
                status: "PROCESSING".into(),
                create_time: wx_now(),
                success_time: None,
                settle_at_ms,
            };
            let answer = refund_json(&r);
            state.refunds.insert(r.out_refund_no.clone(), r);
            touched.push(Collection::Refunds);
            Ok((200, Some(answer)))
        });
        self.wake.notify_one();
        outcome
    }

    fn transfer(&self, body: &[u8], request_serial: Option<&str>) -> Outcome {
        match request_serial {
            Some(serial) if self.knows_serial(serial) => {}
            Some(_) => {
                return Err(param(
                    "Wechatpay-Serial names no WeChat Pay key of this merchant",
                ));
            }
            None => return Err(param("the Wechatpay-Serial header is required")),
        }
        let v: Value = serde_json::from_slice(body).map_err(|_| param("请求体不是合法的JSON"))?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
        if s("appid") != self.appid {
            return Err(wx(400, "APPID_MCHID_NOT_MATCH", "appid与商户号不匹配"));
        }
        let out_bill_no = s("out_bill_no");
        if out_bill_no.is_empty()
            || out_bill_no.len() > 32
            || !out_bill_no.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(param("out_bill_no: 1-32 letters and digits"));
        }
        let scene = s("transfer_scene_id");
        if scene.is_empty() || !scene.bytes().all(|b| b.is_ascii_digit()) {
            return Err(param("transfer_scene_id is required"));
        }
        let infos_ok = v
            .get("transfer_scene_report_infos")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                !a.is_empty()
                    && a.iter().all(|i| {
                        i.get("info_type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| (1..=15).contains(&t.chars().count()))
                            && i.get("info_content")
                                .and_then(Value::as_str)
                                .is_some_and(|c| (1..=32).contains(&c.chars().count()))
                    })
            });
        if !infos_ok {
            return Err(param(
                "需传入转账场景报备信息 (transfer_scene_report_infos)",
            ));
        }
        let openid = s("openid");
        if openid.is_empty() {
            return Err(param("openid is required"));
        }
        let amount = v
            .get("transfer_amount")
            .and_then(Value::as_i64)
            .filter(|a| *a >= 1)
            .ok_or_else(|| param("transfer_amount must be a positive integer (fen)"))?;
        let remark = s("transfer_remark");
        if remark.is_empty() || remark.chars().count() > 32 {
            return Err(param("transfer_remark: 1-32 characters"));
        }
        let notify_url = v
            .get("notify_url")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(u) = &notify_url {
            check_notify_url(u, false)?;
        }
        self.change(|state, touched| {
            if let Some(b) = state.bills.get(out_bill_no) {
                if b.openid == openid && b.transfer_amount == amount && b.transfer_remark == remark
                {
                    return Ok((200, Some(bill_create_json(b))));
                }
                return Err(wx(
                    400,
                    "INVALID_REQUEST",
                    "商户单号 out_bill_no 已用于另一笔转账 (same out_bill_no, other parameters)",
                ));
            }
            let now = wx_now();
            let b = Bill {
                out_bill_no: out_bill_no.to_string(),
                transfer_bill_no: format!("1330{}", digits(28)),
                appid: self.appid.clone(),
                openid: openid.to_string(),
                transfer_amount: amount,
                transfer_remark: remark.to_string(),
                transfer_scene_id: scene.to_string(),
                notify_url,
                state: "WAIT_USER_CONFIRM".into(),
                package_info: package_info(),
                create_time: now.clone(),
                update_time: now,
            };
            let answer = bill_create_json(&b);
            state.bills.insert(b.out_bill_no.clone(), b);
            touched.push(Collection::Bills);
            Ok((200, Some(answer)))
        })
    }

    fn cancel_transfer(&self, no: &str) -> Outcome {
        let outcome = self.change(|state, touched| {
            let b = state
                .bills
                .get_mut(no)
                .ok_or_else(|| wx(404, "NOT_FOUND", "记录不存在"))?;
            match b.state.as_str() {
                "WAIT_USER_CONFIRM" | "ACCEPTED" | "PROCESSING" => {
                    b.state = "CANCELLED".into();
                    b.update_time = wx_now();
                    touched.push(Collection::Bills);
                    let b = b.clone();
                    let answer = json!({
                        "out_bill_no": b.out_bill_no, "transfer_bill_no": b.transfer_bill_no,
                        "state": "CANCELING", "update_time": b.update_time,
                    });
                    self.queue_transfer_notification(state, touched, &b);
                    Ok((200, Some(answer)))
                }
                _ => Err(wx(400, "INVALID_REQUEST", "当前状态不可撤销")),
            }
        });
        self.wake.notify_one();
        outcome
    }

    /// `GET /v3/certificates`: the platform certificate encrypted with the APIv3 key (certificate and migration
    /// modes); merchants in public-key mode get `SYSTEM_ERROR`, as real ones report.
    fn certificates(&self) -> Outcome {
        if self.mode == crate::config::SandboxPayMode::PublicKey {
            return Err(wx(500, "SYSTEM_ERROR", "系统错误"));
        }
        let nonce: String = sign::nonce().chars().take(12).collect();
        let ciphertext = self.keys.apiv3.encrypt(
            &nonce,
            "certificate",
            self.keys.platform_cert_pem.as_bytes(),
        );
        let now = chrono::Utc::now();
        Ok((
            200,
            Some(json!({ "data": [{
                "serial_no": self.keys.platform_serial,
                "effective_time": crate::wechat::pay::wechat_time(now - chrono::Duration::days(1)),
                "expire_time": crate::wechat::pay::wechat_time(now + chrono::Duration::days(5 * 365 - 1)),
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM", "nonce": nonce,
                    "associated_data": "certificate", "ciphertext": ciphertext,
                }
            }]})),
        ))
    }
}

/// An unpaid order past its `time_expire` is closed. Returns whether it changed.
pub(super) fn expire_if_due(t: &mut Trade, now_unix: i64) -> bool {
    if t.state == "NOTPAY" && t.expire_at.is_some_and(|e| e <= now_unix) {
        t.state = "CLOSED".into();
        return true;
    }
    false
}

fn check_mchid_query(query: &BTreeMap<String, String>) -> Result<(), WxError> {
    match query.get("mchid").map(String::as_str) {
        Some(SANDBOX_MCHID) => Ok(()),
        Some(_) => Err(wx(400, "MCH_NOT_EXISTS", "商户号不存在")),
        None => Err(param("query parameter mchid is required")),
    }
}

fn check_out_trade_no(no: &str) -> Result<(), WxError> {
    let ok = (6..=32).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(param("out_trade_no: 6-32 of [0-9A-Za-z_-|*]"))
    }
}

/// WeChat wants a public https URL without a query string; the sandbox also accepts http (it runs locally).
fn check_notify_url(url: &str, required: bool) -> Result<(), WxError> {
    if url.is_empty() && !required {
        return Ok(());
    }
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains('?')
        && url.len() <= 255;
    if ok {
        Ok(())
    } else {
        Err(param(
            "notify_url must be an http(s) URL of at most 255 bytes without a query string",
        ))
    }
}

/// A trade as the query API and the `TRANSACTION.SUCCESS` resource describe it.
pub(super) fn transaction_json(t: &Trade, amount_override: Option<i64>) -> Value {
    let desc = match t.state.as_str() {
        "SUCCESS" => "支付成功",
        "REFUND" => "转入退款",
        "CLOSED" => "已关闭",
        _ => "未支付",
    };
    let total = amount_override.unwrap_or(t.total);
    let mut v = json!({
        "appid": t.appid,
        "mchid": t.mchid,
        "out_trade_no": t.out_trade_no,
        "trade_type": "JSAPI",
        "trade_state": t.state,
        "trade_state_desc": desc,
        "attach": "",
        "payer": { "openid": t.openid },
        "amount": { "total": total, "currency": "CNY", "payer_currency": "CNY" },
    });
    if let Some(id) = &t.transaction_id {
        v["transaction_id"] = json!(id);
        v["bank_type"] = json!("OTHERS");
        v["success_time"] = json!(t.success_time);
        v["amount"]["payer_total"] = json!(total);
    }
    v
}

/// A refund as the refund API describes it (`status`, not the notification's `refund_status`).
fn refund_json(r: &RefundRec) -> Value {
    let mut v = json!({
        "refund_id": r.refund_id,
        "out_refund_no": r.out_refund_no,
        "transaction_id": r.transaction_id,
        "out_trade_no": r.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": r.create_time,
        "status": r.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": r.total, "refund": r.refund, "payer_total": r.total, "payer_refund": r.refund,
            "settlement_refund": r.refund, "settlement_total": r.total, "discount_refund": 0,
            "currency": "CNY", "refund_fee": 0,
        },
        "promotion_detail": [],
    });
    if let Some(t) = &r.success_time {
        v["success_time"] = json!(t);
    }
    v
}

fn bill_create_json(b: &Bill) -> Value {
    let mut v = json!({
        "out_bill_no": b.out_bill_no,
        "transfer_bill_no": b.transfer_bill_no,
        "create_time": b.create_time,
        "state": b.state,
    });
    if b.state == "WAIT_USER_CONFIRM" {
        v["package_info"] = json!(b.package_info);
    }
    v
}

fn bill_query_json(b: &Bill) -> Value {
    json!({
        "mch_id": SANDBOX_MCHID,
        "out_bill_no": b.out_bill_no,
        "transfer_bill_no": b.transfer_bill_no,
        "appid": b.appid,
        "state": b.state,
        "transfer_amount": b.transfer_amount,
        "transfer_remark": b.transfer_remark,
        "openid": b.openid,
        "create_time": b.create_time,
        "update_time": b.update_time,
    })
}

/// A bill as the `MCHTRANSFER.BILL.FINISHED` resource describes it.
pub(super) fn bill_notification_json(b: &Bill) -> Value {
    json!({
        "out_bill_no": b.out_bill_no,
        "transfer_bill_no": b.transfer_bill_no,
        "state": b.state,
        "mch_id": SANDBOX_MCHID,
        "transfer_amount": b.transfer_amount,
        "openid": b.openid,
        "create_time": b.create_time,
        "update_time": b.update_time,
    })
}

/// A refund as the `REFUND.*` resource describes it (`refund_status`).
pub(super) fn refund_notification_json(r: &RefundRec) -> Value {
    json!({
        "mchid": SANDBOX_MCHID,
        "out_trade_no": r.out_trade_no,
        "transaction_id": r.transaction_id,
        "out_refund_no": r.out_refund_no,
        "refund_id": r.refund_id,
        "refund_status": r.status,
        "success_time": r.success_time,
        "user_received_account": "支付用户零钱",
        "amount": { "total": r.total, "refund": r.refund, "payer_total": r.total, "payer_refund": r.refund },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert!(matches!(
            route("POST", "/v3/pay/transactions/jsapi"),
            Some(Call::Prepay)
        ));
        assert!(matches!(
            route("GET", "/v3/pay/transactions/out-trade-no/T123456"),
            Some(Call::Query("T123456"))
        ));
        assert!(matches!(
            route("POST", "/v3/pay/transactions/out-trade-no/T123456/close"),
            Some(Call::Close("T123456"))
        ));
        assert!(route("GET", "/v3/pay/transactions/jsapi").is_none());
        assert!(route("DELETE", "/v3/refund/domestic/refunds").is_none());
    }

    #[test]
    fn out_trade_numbers_follow_wechats_alphabet() {
        assert!(check_out_trade_no("CT20240101_1|*-").is_ok());
        assert!(check_out_trade_no("short").is_err());
        assert!(check_out_trade_no("has space 123").is_err());
        assert!(check_out_trade_no(&"x".repeat(33)).is_err());
        assert!(check_notify_url("https://x.example/notify?a=1", true).is_err());
        assert!(check_notify_url("", true).is_err());
        assert!(check_notify_url("", false).is_ok());
    }
}
