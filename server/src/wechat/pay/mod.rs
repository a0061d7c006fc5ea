//! WeChat Pay API v3 client (direct merchant, JSAPI for Mini Programs): our own thin layer over reqwest, rsa,
//! sha2 and aes-gcm. Every request is signed over the exact bytes sent; every response and notification is
//! signature-verified (key chosen by `Wechatpay-Serial`) before it is believed.
//!
//! INTERFACE SKELETON: the signatures below are the contract between the payments protocol work and the
//! orders work; the bodies are filled in by the protocol work.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A configured WeChat Pay client (real merchant, or the built-in sandbox). Cheap to clone.
#[derive(Clone)]
pub struct WechatPay {
    _private: (),
}

/// What `POST /v3/pay/transactions/jsapi` needs from an order.
#[derive(Debug, Clone)]
pub struct JsapiPrepay {
    /// Our order's out_trade_no (6–32 of `[0-9A-Za-z_-|*]`).
    pub out_trade_no: String,
    /// Shown in the buyer's bill (≤127 bytes; clipped by the client).
    pub description: String,
    pub total_fen: i64,
    pub payer_openid: String,
    /// The order's payment deadline (sent as `time_expire`).
    pub time_expire: DateTime<Utc>,
}

/// The parameters `wx.requestPayment` takes, signed with the merchant key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestPayment {
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// A payment as WeChat reports it (query response, or decrypted `TRANSACTION.SUCCESS` resource).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// `SUCCESS`, `REFUND`, `NOTPAY`, `CLOSED`, ...
    pub trade_state: String,
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub payer: Option<Payer>,
    #[serde(default)]
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payer {
    pub openid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionAmount {
    pub total: i64,
    #[serde(default)]
    pub payer_total: Option<i64>,
    pub currency: String,
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub out_trade_no: String,
    /// Reused on every retry of the same refund.
    pub out_refund_no: String,
    pub reason: Option<String>,
    pub refund_fen: i64,
    pub total_fen: i64,
}

/// A refund as WeChat reports it (API response, query, or decrypted refund notification).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub refund_id: Option<String>,
    /// `SUCCESS`, `CLOSED`, `PROCESSING`, `ABNORMAL` (the API's `status`, or the notification's `refund_status`).
    pub status: String,
    pub refund_fen: i64,
}

/// `POST /v3/fund-app/mch-transfer/transfer-bills`.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// One per order; never replaced after an uncertain failure (query first).
    pub out_bill_no: String,
    pub openid: String,
    pub amount_fen: i64,
    /// User-visible, ≤32 characters.
    pub remark: String,
}

/// A transfer bill (API response, query, or decrypted `MCHTRANSFER.BILL.FINISHED` resource).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferBill {
    pub out_bill_no: String,
    #[serde(default)]
    pub transfer_bill_no: Option<String>,
    /// `ACCEPTED`, `PROCESSING`, `WAIT_USER_CONFIRM`, `TRANSFERING`, `SUCCESS`, `FAIL`, `CANCELING`, `CANCELLED`.
    pub state: String,
    /// What `wx.requestMerchantTransfer` takes as `package`.
    #[serde(default)]
    pub package_info: Option<String>,
    #[serde(default)]
    pub fail_reason: Option<String>,
}

/// A verified, decrypted notification.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The envelope's `id` (for de-duplication and logs).
    pub id: String,
    pub event_type: String,
    pub resource: NotificationResource,
}

#[derive(Debug, Clone)]
pub enum NotificationResource {
    /// `TRANSACTION.*`, original_type `transaction`.
    Transaction(Transaction),
    /// `REFUND.*`, original_type `refund`.
    Refund(Refund),
    /// `MCHTRANSFER.BILL.FINISHED`, original_type `mch_payment`.
    Transfer(TransferBill),
    /// Anything else, verified but not understood (logged and acknowledged).
    Other(serde_json::Value),
}

/// Why a WeChat Pay call failed.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// WeChat answered with an error body (`status` HTTP code, `code` like `ORDER_NOT_EXIST`, `SIGN_ERROR`).
    #[error("WeChat Pay {status} {code}: {message}")]
    Wechat {
        status: u16,
        code: String,
        message: String,
    },
    /// The response's signature did not verify (or a 2xx came unsigned): the response is not believed.
    #[error("WeChat Pay response failed verification: {0}")]
    Unverified(String),
    /// No answer or an unreadable one: the outcome is UNKNOWN (query before retrying with anything new).
    #[error("WeChat Pay unreachable or unreadable: {0}")]
    Transport(String),
}

/// Why an incoming notification was refused (answered 4xx/5xx so WeChat sends it again).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("timestamp outside the 5-minute window")]
    StaleTimestamp,
    #[error("unknown Wechatpay-Serial {0}")]
    UnknownSerial(String),
    /// Includes `WECHATPAY/SIGNTEST/` probes.
    #[error("signature does not verify")]
    BadSignature,
    #[error("resource does not decrypt (wrong APIv3 key or tampered)")]
    Decrypt,
    #[error("malformed notification: {0}")]
    Malformed(String),
}

/// The headers a notification carries.
#[derive(Debug, Clone, Default)]
pub struct NotifyHeaders {
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub signature: Option<String>,
    pub serial: Option<String>,
}

impl WechatPay {
    /// Placeholder constructor until the protocol work lands (it replaces this with the real configuration).
    pub fn skeleton() -> Self {
        Self { _private: () }
    }

    /// Our merchant id.
    pub fn mchid(&self) -> &str {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// The Mini Program appid payments are made under.
    pub fn appid(&self) -> &str {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// `POST /v3/pay/transactions/jsapi` → `prepay_id`. Same out_trade_no and parameters again → the same valid
    /// prepay id (WeChat's idempotency).
    pub async fn jsapi_prepay(&self, _req: &JsapiPrepay) -> Result<String, PayError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// The signed `wx.requestPayment` parameters for a prepay id.
    pub fn request_payment(&self, _prepay_id: &str) -> RequestPayment {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`. Unknown order → `PayError::Wechat{code:"ORDER_NOT_EXIST"}`.
    pub async fn query_order(&self, _out_trade_no: &str) -> Result<Transaction, PayError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close` (204).
    pub async fn close_order(&self, _out_trade_no: &str) -> Result<(), PayError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// `POST /v3/refund/domestic/refunds` (200 means accepted, not refunded).
    pub async fn refund(&self, _req: &RefundRequest) -> Result<Refund, PayError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub async fn query_refund(&self, _out_refund_no: &str) -> Result<Refund, PayError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// `POST /v3/fund-app/mch-transfer/transfer-bills`.
    pub async fn create_transfer(&self, _req: &TransferRequest) -> Result<TransferBill, PayError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// `GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{no}`.
    pub async fn query_transfer(&self, _out_bill_no: &str) -> Result<TransferBill, PayError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }

    /// Verifies a notification (headers + the RAW body bytes, timestamp within 5 minutes of `now_unix`) and
    /// decrypts its resource.
    pub fn parse_notification(
        &self,
        _headers: &NotifyHeaders,
        _raw_body: &[u8],
        _now_unix: i64,
    ) -> Result<Notification, NotifyError> {
        unimplemented!("filled in by the WeChat Pay protocol work")
    }
}
