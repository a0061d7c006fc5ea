//! Tables and rules of orders: the order, its event log and hand-over attempts; the status state machine (which
//! transition starts where, leads where, and who may ask for it); what a caller may do with an order; and the
//! campus day that hand-over locks follow. The rules are plain functions, tested without HTTP or a database.

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use sea_orm::sea_query::StringLen;

pub mod order {
    use sea_orm::entity::prelude::*;

    pub use super::{OrderStatus, PaymentMethod};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub listing_id: i64,
        pub buyer_id: i64,
        pub seller_id: i64,
        /// The listing's title when the order was placed.
        pub title: String,
        /// Fen: the listing price or the accepted offer.
        pub amount: i64,
        pub payment_method: PaymentMethod,
        pub status: OrderStatus,
        pub offer_id: Option<i64>,
        pub meetup_place_id: Option<i64>,
        /// Six digits the buyer shows the seller at the meet-up. Never in the seller's view.
        pub handover_code: String,
        /// Wrong codes entered on `handover_fail_day` (a campus day, `YYYY-MM-DD` in UTC+8).
        pub handover_failures: i32,
        pub handover_fail_day: Option<String>,
        /// Payment deadline of a WeChat Pay order.
        pub expires_at: Option<DateTimeUtc>,
        /// The buyer's reason for asking for a refund.
        pub refund_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub paid_at: Option<DateTimeUtc>,
        pub completed_at: Option<DateTimeUtc>,
        pub cancelled_at: Option<DateTimeUtc>,
        pub settled_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order_event {
    use sea_orm::entity::prelude::*;

    /// One transition of an order: who, when, from, to, why.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        /// `buyer`, `seller`, `system` or `operator`.
        pub actor: String,
        pub actor_user_id: Option<i64>,
        /// The operator's name, for operator decisions.
        pub operator: Option<String>,
        /// `None` for the creation of the order.
        pub from_status: Option<String>,
        pub to_status: String,
        pub reason: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod handover_attempt {
    use sea_orm::entity::prelude::*;

    /// A hand-over code the seller entered, right or wrong.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "handover_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        pub user_id: i64,
        pub success: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Where an order is. `docs/orders.md` draws the diagram.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
#[oai(rename_all = "snake_case")]
pub enum OrderStatus {
    /// WeChat Pay order waiting for the buyer's payment (until `expires_at`).
    #[sea_orm(string_value = "pending_payment")]
    PendingPayment,
    /// Offline order: no money through the platform; waiting for the hand-over.
    #[sea_orm(string_value = "pending_handover")]
    PendingHandover,
    /// Paid; the platform holds the money until the hand-over.
    #[sea_orm(string_value = "paid")]
    Paid,
    /// The buyer asked for their money back; the seller answers.
    #[sea_orm(string_value = "refund_requested")]
    RefundRequested,
    /// The seller refused the refund; an operator decides.
    #[sea_orm(string_value = "disputed")]
    Disputed,
    /// The buyer's money is (being) returned in full; the item is back on sale.
    #[sea_orm(string_value = "refunded")]
    Refunded,
    /// Handed over. For WeChat Pay orders the seller's payout is ready to collect.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// The seller received the payout. Final.
    #[sea_orm(string_value = "settled")]
    Settled,
    /// Cancelled before payment (or before an offline hand-over). Final.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::PendingHandover => "pending_handover",
            OrderStatus::Paid => "paid",
            OrderStatus::RefundRequested => "refund_requested",
            OrderStatus::Disputed => "disputed",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Completed => "completed",
            OrderStatus::Settled => "settled",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Statuses in which the hand-over code may be used (and is shown to the buyer).
    pub fn awaits_handover(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::PendingHandover)
    }
}

/// How the buyer pays.
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
pub enum PaymentMethod {
    /// Through WeChat Pay; the platform holds the money until the hand-over (escrow).
    #[sea_orm(string_value = "wechat_pay")]
    WechatPay,
    /// Cash or a direct transfer at the meet-up; the platform only records the deal.
    #[sea_orm(string_value = "offline")]
    Offline,
}

/// Who asks for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Buyer,
    Seller,
    /// Payment notifications, queries and timers.
    System,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
            Role::System => "system",
            Role::Operator => "operator",
        }
    }
}

/// A change of an order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderTransition {
    /// WeChat reports the payment (notification, sync or sweep).
    Pay,
    /// Buyer or seller calls the deal off before payment / offline hand-over.
    Cancel,
    /// The payment deadline passed (WeChat order closed first).
    Expire,
    /// The seller entered the buyer's hand-over code.
    Handover,
    /// The buyer confirms they received the item.
    ConfirmReceipt,
    /// Nobody acted for `ORDER_AUTO_COMPLETE_DAYS` after payment.
    AutoComplete,
    /// The buyer wants their money back.
    RequestRefund,
    /// The seller agrees to the refund.
    AcceptRefund,
    /// The seller refuses the refund: a dispute for an operator.
    RefuseRefund,
    /// An operator decides a dispute for a full refund.
    DecideRefund,
    /// An operator decides a dispute for the seller (with or without a partial refund).
    DecideComplete,
    /// The seller's payout arrived.
    Settle,
}

impl OrderTransition {
    /// The statuses this transition may start from, and where it leads.
    pub fn rule(self) -> (&'static [OrderStatus], OrderStatus) {
        use OrderStatus::*;
        match self {
            OrderTransition::Pay => (&[PendingPayment], Paid),
            OrderTransition::Cancel => (&[PendingPayment, PendingHandover], Cancelled),
            OrderTransition::Expire => (&[PendingPayment], Cancelled),
            OrderTransition::Handover => (&[Paid, PendingHandover], Completed),
            OrderTransition::ConfirmReceipt => (&[Paid, PendingHandover], Completed),
            OrderTransition::AutoComplete => (&[Paid], Completed),
            OrderTransition::RequestRefund => (&[Paid], RefundRequested),
            OrderTransition::AcceptRefund => (&[RefundRequested], Refunded),
            OrderTransition::RefuseRefund => (&[RefundRequested], Disputed),
            OrderTransition::DecideRefund => (&[Disputed], Refunded),
            OrderTransition::DecideComplete => (&[Disputed], Completed),
            OrderTransition::Settle => (&[Completed], Settled),
        }
    }

    /// Who may ask for it.
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            OrderTransition::Pay
            | OrderTransition::Expire
            | OrderTransition::AutoComplete
            | OrderTransition::Settle => &[System],
            OrderTransition::Cancel => &[Buyer, Seller],
            OrderTransition::Handover => &[Seller],
            OrderTransition::ConfirmReceipt | OrderTransition::RequestRefund => &[Buyer],
            OrderTransition::AcceptRefund | OrderTransition::RefuseRefund => &[Seller],
            OrderTransition::DecideRefund | OrderTransition::DecideComplete => &[Operator],
        }
    }

    /// Where the transition leads from `from`, or `None` when it does not start there.
    pub fn apply(self, from: OrderStatus) -> Option<OrderStatus> {
        let (sources, to) = self.rule();
        sources.contains(&from).then_some(to)
    }

    pub fn verb(self) -> &'static str {
        match self {
            OrderTransition::Pay => "pay",
            OrderTransition::Cancel => "cancel",
            OrderTransition::Expire => "expire",
            OrderTransition::Handover => "hand over",
            OrderTransition::ConfirmReceipt => "confirm receipt of",
            OrderTransition::AutoComplete => "auto-complete",
            OrderTransition::RequestRefund => "request a refund for",
            OrderTransition::AcceptRefund => "accept the refund of",
            OrderTransition::RefuseRefund => "refuse the refund of",
            OrderTransition::DecideRefund | OrderTransition::DecideComplete => "decide",
            OrderTransition::Settle => "settle",
        }
    }
}

/// Buttons the client may show for an order; computed by the server so clients never re-implement the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename = "OrderAction", rename_all = "snake_case")]
pub enum Action {
    /// Buyer: `POST /orders/{id}/wechat-pay`, then `wx.requestPayment`.
    Pay,
    /// Buyer: `POST /orders/{id}/sync-payment` after `requestPayment:ok`.
    SyncPayment,
    Cancel,
    /// Seller: enter the buyer's hand-over code.
    Handover,
    /// Buyer: confirm the item was received.
    ConfirmReceipt,
    /// Buyer: ask for the money back.
    RequestRefund,
    /// Seller: answer the refund request (`accept` true or false).
    RespondRefund,
    /// Seller: collect the payout (`POST /orders/{id}/payout`, then `wx.requestMerchantTransfer`).
    CollectPayout,
}

/// The actions the user `viewer_id` may take on `o`. `payout_collectable`: the order's payout exists and is not
/// paid out or in flight.
pub fn allowed_actions(
    o: &order::Model,
    viewer_id: i64,
    payout_collectable: bool,
    now: DateTime<Utc>,
) -> Vec<Action> {
    use OrderStatus::*;
    let mut out = Vec::new();
    let role = if viewer_id == o.buyer_id {
        Role::Buyer
    } else if viewer_id == o.seller_id {
        Role::Seller
    } else {
        return out;
    };
    match (o.status, role) {
        (PendingPayment, Role::Buyer) => {
            if o.expires_at.is_none_or(|e| e > now) {
                out.push(Action::Pay);
            }
            out.extend([Action::SyncPayment, Action::Cancel]);
        }
        (PendingPayment, Role::Seller) | (PendingHandover, Role::Seller) => {
            if o.status == PendingHandover && !handover_locked(o, now) {
                out.push(Action::Handover);
            }
            out.push(Action::Cancel);
        }
        (PendingHandover, Role::Buyer) => out.extend([Action::ConfirmReceipt, Action::Cancel]),
        (Paid, Role::Buyer) => out.extend([Action::ConfirmReceipt, Action::RequestRefund]),
        (Paid, Role::Seller) if !handover_locked(o, now) => out.push(Action::Handover),
        (RefundRequested, Role::Seller) => out.push(Action::RespondRefund),
        (Completed, Role::Seller) if payout_collectable => out.push(Action::CollectPayout),
        _ => {}
    }
    out
}

/// Wrong hand-over codes allowed per campus day before the order locks until the next one.
pub const HANDOVER_MAX_FAILURES: i32 = 5;

/// The campus clock: China Standard Time, UTC+8 (no daylight saving).
fn campus_tz() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// The campus day of `t`, `YYYY-MM-DD` in UTC+8.
pub fn campus_day(t: DateTime<Utc>) -> String {
    t.with_timezone(&campus_tz())
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// The start of the campus day after `t` (midnight UTC+8), as UTC.
pub fn next_campus_midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = t.with_timezone(&campus_tz()).date_naive() + Duration::days(1);
    campus_tz()
        .from_local_datetime(&tomorrow.and_time(NaiveTime::MIN))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// Whether too many wrong codes today lock the hand-over until the next campus day.
pub fn handover_locked(o: &order::Model, now: DateTime<Utc>) -> bool {
    o.handover_failures >= HANDOVER_MAX_FAILURES
        && o.handover_fail_day.as_deref() == Some(campus_day(now).as_str())
}

/// A fresh six-digit hand-over code (leading zeros kept).
pub fn new_handover_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// Compares a submitted code with the order's in constant time (for equal lengths).
pub fn code_matches(expected: &str, submitted: &str) -> bool {
    let (a, b) = (expected.as_bytes(), submitted.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the buyer's Mini Program encodes in the hand-over QR code; the seller's scanner submits its `code`.
pub fn handover_qr_payload(order_id: i64, code: &str) -> String {
    format!("campustrade://handover?order={order_id}&code={code}")
}

/// The platform's fee on `net` fen at `bps` basis points, rounded down (the seller never pays a fen more).
pub fn platform_fee(net: i64, bps: u32) -> i64 {
    net.max(0) * i64::from(bps) / 10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus) -> order::Model {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 4, 0, 0).unwrap();
        order::Model {
            id: 1,
            listing_id: 2,
            buyer_id: 10,
            seller_id: 20,
            title: "台灯".into(),
            amount: 3000,
            payment_method: PaymentMethod::WechatPay,
            status,
            offer_id: None,
            meetup_place_id: None,
            handover_code: "012345".into(),
            handover_failures: 0,
            handover_fail_day: None,
            expires_at: Some(t + Duration::minutes(15)),
            refund_reason: None,
            created_at: t,
            updated_at: t,
            paid_at: None,
            completed_at: None,
            cancelled_at: None,
            settled_at: None,
        }
    }

    #[test]
    fn the_machine_follows_the_diagram() {
        use OrderStatus::*;
        use OrderTransition as T;
        assert_eq!(T::Pay.apply(PendingPayment), Some(Paid));
        assert_eq!(T::Pay.apply(Cancelled), None);
        assert_eq!(
            T::Cancel.apply(Paid),
            None,
            "paid orders are refunded, not cancelled"
        );
        assert_eq!(T::Handover.apply(PendingHandover), Some(Completed));
        assert_eq!(T::Handover.apply(RefundRequested), None);
        assert_eq!(T::AutoComplete.apply(RefundRequested), None);
        assert_eq!(T::AutoComplete.apply(Disputed), None);
        assert_eq!(T::RefuseRefund.apply(RefundRequested), Some(Disputed));
        assert_eq!(T::DecideRefund.apply(Disputed), Some(Refunded));
        assert_eq!(T::DecideComplete.apply(Disputed), Some(Completed));
        assert_eq!(T::Settle.apply(Completed), Some(Settled));
        assert_eq!(T::Settle.apply(Refunded), None);
        // Final statuses have no way out.
        for t in [
            T::Pay,
            T::Cancel,
            T::Expire,
            T::Handover,
            T::ConfirmReceipt,
            T::AutoComplete,
            T::RequestRefund,
            T::AcceptRefund,
            T::RefuseRefund,
            T::DecideRefund,
            T::DecideComplete,
            T::Settle,
        ] {
            for s in [Settled, Cancelled, Refunded] {
                assert_eq!(t.apply(s), None, "{t:?} from {s:?}");
            }
        }
    }

    #[test]
    fn only_the_right_party_may_trigger() {
        use OrderTransition as T;
        assert_eq!(T::Handover.allowed_roles(), &[Role::Seller]);
        assert_eq!(T::ConfirmReceipt.allowed_roles(), &[Role::Buyer]);
        assert!(!T::DecideRefund.allowed_roles().contains(&Role::Buyer));
        assert!(!T::Pay.allowed_roles().contains(&Role::Buyer));
    }

    #[test]
    fn actions_per_party() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 4, 5, 0).unwrap();
        let o = order(OrderStatus::PendingPayment);
        assert_eq!(
            allowed_actions(&o, 10, false, now),
            vec![Action::Pay, Action::SyncPayment, Action::Cancel]
        );
        assert_eq!(allowed_actions(&o, 20, false, now), vec![Action::Cancel]);
        assert!(allowed_actions(&o, 99, false, now).is_empty());
        let late = now + Duration::hours(1);
        assert!(!allowed_actions(&o, 10, false, late).contains(&Action::Pay));

        let paid = order(OrderStatus::Paid);
        assert_eq!(
            allowed_actions(&paid, 10, false, now),
            vec![Action::ConfirmReceipt, Action::RequestRefund]
        );
        assert_eq!(
            allowed_actions(&paid, 20, false, now),
            vec![Action::Handover]
        );
        let done = order(OrderStatus::Completed);
        assert_eq!(
            allowed_actions(&done, 20, true, now),
            vec![Action::CollectPayout]
        );
        assert!(allowed_actions(&done, 20, false, now).is_empty());
        assert!(allowed_actions(&done, 10, true, now).is_empty());
    }

    #[test]
    fn campus_days_turn_at_midnight_beijing_time() {
        // 15:59 UTC is 23:59 in UTC+8; 16:00 UTC is the next campus day.
        let before = Utc.with_ymd_and_hms(2026, 3, 1, 15, 59, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 3, 1, 16, 0, 0).unwrap();
        assert_eq!(campus_day(before), "2026-03-01");
        assert_eq!(campus_day(after), "2026-03-02");
        assert_eq!(next_campus_midnight(before), after);
        assert_eq!(
            next_campus_midnight(after),
            Utc.with_ymd_and_hms(2026, 3, 2, 16, 0, 0).unwrap()
        );
    }

    #[test]
    fn five_wrong_codes_lock_for_the_rest_of_the_campus_day() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 4, 0, 0).unwrap();
        let mut o = order(OrderStatus::Paid);
        o.handover_failures = 4;
        o.handover_fail_day = Some(campus_day(now));
        assert!(!handover_locked(&o, now));
        o.handover_failures = 5;
        assert!(handover_locked(&o, now));
        assert!(!allowed_actions(&o, 20, false, now).contains(&Action::Handover));
        assert!(!handover_locked(&o, next_campus_midnight(now)));
    }

    #[test]
    fn codes_are_six_digits_and_compared_exactly() {
        for _ in 0..100 {
            let c = new_handover_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert!(code_matches("012345", "012345"));
        assert!(code_matches("012345", " 012345 "));
        assert!(!code_matches("012345", "12345"));
        assert!(!code_matches("012345", "012346"));
        assert!(!code_matches("012345", ""));
    }

    #[test]
    fn the_fee_rounds_down() {
        assert_eq!(platform_fee(10_000, 0), 0);
        assert_eq!(platform_fee(10_000, 250), 250);
        assert_eq!(platform_fee(999, 100), 9);
        assert_eq!(platform_fee(-5, 100), 0);
    }
}
