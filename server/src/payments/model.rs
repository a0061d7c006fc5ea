//! Tables of the money side of orders: one WeChat Pay payment per order, refunds (each with its own
//! `out_refund_no`, reused on every retry), and the payout to the seller (one transfer bill at a time per order).

use sea_orm::sea_query::StringLen;

pub mod payment {
    use sea_orm::entity::prelude::*;

    pub use super::PaymentStatus;

    /// The WeChat Pay side of a `wechat_pay` order.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        /// Our number for the WeChat order (unique per merchant).
        pub out_trade_no: String,
        /// Fen.
        pub amount: i64,
        pub status: PaymentStatus,
        /// From `POST /v3/pay/transactions/jsapi`; reused while the order is unpaid.
        pub prepay_id: Option<String>,
        /// When the first prepay was requested (written BEFORE the call: from then on a WeChat order may exist,
        /// even when the answer was lost).
        pub prepaid_at: Option<DateTimeUtc>,
        /// WeChat's number of the payment.
        pub transaction_id: Option<String>,
        pub payer_openid: Option<String>,
        pub paid_at: Option<DateTimeUtc>,
        /// When the sweep next asks WeChat about an unpaid order whose notification has not come.
        pub query_after: Option<DateTimeUtc>,
        /// The Mini Program shipping information (self-pickup) was accepted by WeChat.
        pub shipping_uploaded_at: Option<DateTimeUtc>,
        /// When the shipping upload is (re)tried; `None` until the order completes.
        pub shipping_next_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refund {
    use sea_orm::entity::prelude::*;

    pub use super::RefundStatus;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        /// Our number of the refund: the same on every retry, so WeChat refunds at most once.
        pub out_refund_no: String,
        /// Fen.
        pub amount: i64,
        /// Shown to the buyer by WeChat (at most 80 bytes).
        pub reason: String,
        pub status: RefundStatus,
        pub refund_id: Option<String>,
        pub attempts: i32,
        /// When the sweep next submits (pending) or queries (processing) it.
        pub next_attempt_at: DateTimeUtc,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub succeeded_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod payout {
    use sea_orm::entity::prelude::*;

    pub use super::PayoutStatus;

    /// What the platform owes the seller of a completed WeChat Pay order, and the transfer bill paying it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payouts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        pub seller_id: i64,
        /// The current transfer bill's number. Replaced only after WeChat confirmed the previous bill failed or
        /// was cancelled (never after an uncertain answer: that is queried first).
        pub out_bill_no: String,
        /// 1 for the first bill, +1 for each replacement.
        pub attempt: i32,
        /// Fen the seller receives.
        pub amount: i64,
        /// Fen the platform keeps.
        pub fee: i64,
        pub status: PayoutStatus,
        pub transfer_bill_no: Option<String>,
        /// What `wx.requestMerchantTransfer` takes as `package` while the bill waits for the seller.
        pub package_info: Option<String>,
        pub fail_reason: Option<String>,
        pub attempts: i32,
        /// When the sweep next queries an uncertain or unfinished bill.
        pub next_attempt_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub succeeded_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Where the WeChat order of a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum PaymentStatus {
    #[sea_orm(string_value = "unpaid")]
    Unpaid,
    #[sea_orm(string_value = "paid")]
    Paid,
    /// Closed at WeChat (order cancelled or expired). A payment may still arrive in a race; it is refunded.
    #[sea_orm(string_value = "closed")]
    Closed,
}

/// Where a refund is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[oai(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Not yet accepted by WeChat (submitted again with the same number until it is).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Accepted by WeChat, money on its way back.
    #[sea_orm(string_value = "processing")]
    Processing,
    /// Back in the buyer's account.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// WeChat closed the refund without paying it: an operator must look.
    #[sea_orm(string_value = "closed")]
    Closed,
    /// WeChat could not pay it back (e.g. the buyer's card was cancelled): an operator must look.
    #[sea_orm(string_value = "abnormal")]
    Abnormal,
}

impl RefundStatus {
    /// The status a WeChat `status` / `refund_status` maps to.
    pub fn from_wechat(s: &str) -> Option<Self> {
        match s {
            "SUCCESS" => Some(Self::Succeeded),
            "PROCESSING" => Some(Self::Processing),
            "CLOSED" => Some(Self::Closed),
            "ABNORMAL" => Some(Self::Abnormal),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Closed)
    }
}

/// Where the seller's payout is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
#[oai(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Ready to collect: no transfer bill yet.
    #[sea_orm(string_value = "ready")]
    Ready,
    /// A bill was requested and the answer is unknown: WeChat is asked before anything else happens.
    #[sea_orm(string_value = "uncertain")]
    Uncertain,
    /// The bill waits for the seller to confirm it in the Mini Program (`wx.requestMerchantTransfer`).
    #[sea_orm(string_value = "wait_user_confirm")]
    WaitUserConfirm,
    /// Confirmed; WeChat is transferring.
    #[sea_orm(string_value = "processing")]
    Processing,
    /// In the seller's WeChat balance.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
}

/// What a transfer bill `state` from WeChat means for the payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillOutcome {
    WaitUserConfirm,
    Processing,
    Succeeded,
    /// `FAIL` or `CANCELLED`: this bill is dead; a new one (new number) may be made.
    Dead,
}

impl BillOutcome {
    pub fn from_wechat(state: &str) -> Option<Self> {
        match state {
            "WAIT_USER_CONFIRM" => Some(Self::WaitUserConfirm),
            "ACCEPTED" | "PROCESSING" | "TRANSFERING" | "CANCELING" => Some(Self::Processing),
            "SUCCESS" => Some(Self::Succeeded),
            "FAIL" | "CANCELLED" => Some(Self::Dead),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_states_map() {
        assert_eq!(
            RefundStatus::from_wechat("SUCCESS"),
            Some(RefundStatus::Succeeded)
        );
        assert_eq!(
            RefundStatus::from_wechat("ABNORMAL"),
            Some(RefundStatus::Abnormal)
        );
        assert!(!RefundStatus::Abnormal.is_final());
        assert_eq!(RefundStatus::from_wechat("whatever"), None);
        assert_eq!(
            BillOutcome::from_wechat("WAIT_USER_CONFIRM"),
            Some(BillOutcome::WaitUserConfirm)
        );
        assert_eq!(
            BillOutcome::from_wechat("CANCELLED"),
            Some(BillOutcome::Dead)
        );
        assert_eq!(
            BillOutcome::from_wechat("TRANSFERING"),
            Some(BillOutcome::Processing)
        );
    }
}
