//! Shipping information for trading Mini Programs (`POST /wxa/sec/order/upload_shipping_info`): WeChat holds a
//! payment's funds until the merchant reports how the goods were handed over. Campus hand-overs are self-pickup
//! (`logistics_type` 4).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{MiniProgram, WechatError};

/// `logistics_type` of a hand-over in person (用户自提).
pub const SELF_PICKUP: i64 = 4;

/// One paid order's hand-over.
#[derive(Debug, Clone)]
pub struct ShippingInfo {
    /// Our merchant id and the order's out_trade_no (`order_number_type` 1).
    pub mchid: String,
    pub out_trade_no: String,
    /// 1 express, 2 same-city delivery, 3 virtual goods, 4 self-pickup.
    pub logistics_type: i64,
    /// What was handed over (≤120 characters; clipped).
    pub item_desc: String,
    /// The buyer (the payer of the order).
    pub payer_openid: String,
    pub upload_time: DateTime<Utc>,
}

impl MiniProgram {
    /// Uploads the shipping information of a paid order (a second upload for the same order is allowed once).
    pub async fn upload_shipping_info(&self, info: &ShippingInfo) -> Result<(), WechatError> {
        let item_desc: String = info.item_desc.chars().take(120).collect();
        let body = json!({
            "order_key": {
                "order_number_type": 1,
                "mchid": info.mchid,
                "out_trade_no": info.out_trade_no,
            },
            "logistics_type": info.logistics_type,
            "delivery_mode": 1,
            "shipping_list": [{ "item_desc": item_desc }],
            "upload_time": crate::wechat::pay::wechat_time(info.upload_time),
            "payer": { "openid": info.payer_openid },
        });
        let _: Value = self
            .call(
                reqwest::Method::POST,
                "/wxa/sec/order/upload_shipping_info",
                Some(&body),
            )
            .await?;
        Ok(())
    }
}
