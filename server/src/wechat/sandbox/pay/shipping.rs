//! The Mini Program side's `POST /wxa/sec/order/upload_shipping_info` (mounted under `/sandbox/wechat` with the
//! rest of the fake Mini Program API): trading Mini Programs must report how a paid order was handed over, or
//! WeChat holds the funds. The sandbox checks the access token and the fields, checks the order against the fake
//! WeChat Pay (it must exist and be paid, and belong to the payer), allows one re-upload, and records every
//! accepted upload (`GET /sandbox/wechatpay/_sandbox/shipping`).
//!
//! The `100600xx` error codes are WeChat's as reported by developers; only their meaning is relied upon.

use poem::{
    handler,
    web::{Data, Json, Query},
};
use serde_json::{Value, json};

use super::{
    SANDBOX_MCHID,
    store::{Collection, ShippingUpload},
    wx_now,
};
use crate::{
    AppState,
    wechat::sandbox::{AccessTokenQuery, err},
};

/// `POST /wxa/sec/order/upload_shipping_info?access_token=`.
#[handler]
pub async fn upload_shipping_info(
    Query(q): Query<AccessTokenQuery>,
    body: Vec<u8>,
    state: Data<&AppState>,
) -> Json<Value> {
    let Some(mini) = state.sandbox.as_ref() else {
        return Json(err(-1, "system error"));
    };
    mini.count("upload_shipping_info");
    if let Err(e) = mini.check_token(q.access_token.as_deref().unwrap_or("")) {
        return Json(e);
    }
    let Some(pay) = state.pay_sandbox.as_ref() else {
        return Json(err(
            10060001,
            "支付单不存在 (WeChat Pay is not the sandbox)",
        ));
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return Json(err(47001, "data format error"));
    };
    Json(match pay.record_shipping(&v) {
        Ok(()) => json!({ "errcode": 0, "errmsg": "ok" }),
        Err(e) => e,
    })
}

impl super::PaySandbox {
    fn record_shipping(&self, v: &Value) -> Result<(), Value> {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
        let n = |p: &str| v.pointer(p).and_then(Value::as_i64);
        let invalid = |what: &str| err(47001, &format!("data format error: {what}"));
        let logistics_type = n("/logistics_type").ok_or_else(|| invalid("logistics_type"))?;
        if !(1..=4).contains(&logistics_type) {
            return Err(err(10060005, "物流模式有误 (logistics_type must be 1-4)"));
        }
        let delivery_mode = n("/delivery_mode").unwrap_or(1);
        if !(1..=2).contains(&delivery_mode) {
            return Err(invalid("delivery_mode must be 1 or 2"));
        }
        let list = v
            .get("shipping_list")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty() && l.len() <= 10)
            .ok_or_else(|| invalid("shipping_list needs 1-10 items"))?;
        for item in list {
            let desc = item.get("item_desc").and_then(Value::as_str).unwrap_or("");
            if desc.is_empty() || desc.chars().count() > 120 {
                return Err(invalid("shipping_list[].item_desc: 1-120 characters"));
            }
            if logistics_type == 1
                && (item.get("tracking_no").and_then(Value::as_str).is_none()
                    || item
                        .get("express_company")
                        .and_then(Value::as_str)
                        .is_none())
            {
                return Err(invalid(
                    "express delivery needs tracking_no and express_company",
                ));
            }
        }
        if chrono::DateTime::parse_from_rfc3339(s("/upload_time")).is_err() {
            return Err(invalid("upload_time must be RFC 3339"));
        }
        let payer = s("/payer/openid");
        if payer.is_empty() {
            return Err(invalid("payer.openid is required"));
        }
        let (by_no, by_txid) = match n("/order_key/order_number_type") {
            Some(1) => {
                if s("/order_key/mchid") != SANDBOX_MCHID || s("/order_key/out_trade_no").is_empty()
                {
                    return Err(err(10060001, "支付单不存在"));
                }
                (Some(s("/order_key/out_trade_no").to_string()), None)
            }
            Some(2) => (None, Some(s("/order_key/transaction_id").to_string())),
            _ => return Err(invalid("order_key.order_number_type must be 1 or 2")),
        };
        self.change(|state, touched| {
            let trade = state
                .trades
                .values()
                .find(|t| {
                    by_no.as_deref() == Some(t.out_trade_no.as_str())
                        || (by_txid.is_some() && t.transaction_id == by_txid)
                })
                .cloned()
                .ok_or_else(|| err(10060001, "支付单不存在"))?;
            if !matches!(trade.state.as_str(), "SUCCESS" | "REFUND") {
                return Err(err(10060004, "支付单处于不可发货的状态"));
            }
            if trade.openid != payer {
                return Err(invalid("payer.openid is not the payer of this order"));
            }
            let earlier = state
                .shipping
                .iter()
                .filter(|u| u.out_trade_no.as_deref() == Some(trade.out_trade_no.as_str()))
                .count();
            if earlier >= 2 {
                return Err(err(10060003, "支付单已使用重新发货机会"));
            }
            state.shipping.push(ShippingUpload {
                out_trade_no: Some(trade.out_trade_no.clone()),
                transaction_id: trade.transaction_id.clone(),
                logistics_type,
                at: wx_now(),
                body: v.clone(),
            });
            touched.push(Collection::Shipping);
            Ok(())
        })
    }
}
