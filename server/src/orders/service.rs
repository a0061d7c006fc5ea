//! The rules and transactions of orders: placing an order (which reserves the listing atomically), every
//! transition as one conditional UPDATE with its event row, system card and inbox notifications in the same
//! transaction, the hand-over code, refunds and disputes, and the sweeps that expire and auto-complete orders.
//! WeChat Pay calls live in [`crate::payments`]; this module decides what they mean for the order.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, UpdateMany,
    sea_query::{Condition, Expr, ExprTrait},
};

use super::{
    model::{
        HANDOVER_MAX_FAILURES, OrderStatus, OrderTransition, PaymentMethod, Role, campus_day,
        code_matches, handover_attempt, handover_locked, new_handover_code, next_campus_midnight,
        order, order_event,
    },
    settings,
};
use crate::{
    chat::cards::{self, Card, Delivery},
    error::{AppError, AppResult},
    listings::{
        model::{
            Status as ListingStatus, Transition as ListingTransition, campus_place, listing,
            listing_place,
        },
        service::{self as listings, Actor as ListingActor},
    },
    notifications::service::notify,
    payments, reviews,
    state::AppState,
    users::blocks::user_block,
    util,
};

/// Who changes an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Buyer(i64),
    Seller(i64),
    /// Payment notifications and queries, timers.
    System,
    /// An operator, by name.
    Operator(String),
}

impl Actor {
    pub fn role(&self) -> Role {
        match self {
            Actor::Buyer(_) => Role::Buyer,
            Actor::Seller(_) => Role::Seller,
            Actor::System => Role::System,
            Actor::Operator(_) => Role::Operator,
        }
    }

    fn user_id(&self) -> Option<i64> {
        match self {
            Actor::Buyer(id) | Actor::Seller(id) => Some(*id),
            _ => None,
        }
    }
}

/// What the buyer asks for when placing an order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub listing_id: i64,
    /// An offer of this buyer the seller accepted; its price replaces the listing price.
    pub offer_id: Option<i64>,
    pub payment_method: PaymentMethod,
    /// A meet-up place of the listing (or of its campus when the listing names none).
    pub meetup_place_id: Option<i64>,
}

pub const REASON_MAX: usize = 200;

fn clip(s: &str, max: usize) -> String {
    s.trim().chars().take(max).collect()
}

/// `¥12.34` for 1234 fen.
pub fn yuan(fen: i64) -> String {
    format!("¥{}.{:02}", fen / 100, fen % 100)
}

fn listing_unavailable() -> AppError {
    AppError::conflict(
        "listing_unavailable",
        "this item is no longer for sale (someone else was faster, or the seller took it off sale)",
    )
}

/// The 409 of a transition the order's current status does not allow.
pub fn refused(current: OrderStatus, t: OrderTransition) -> AppError {
    AppError::InvalidTransition {
        current: current.as_str(),
        message: format!("cannot {} an order that is {}", t.verb(), current.as_str()),
    }
}

/// Reads an order.
pub async fn find(db: &impl ConnectionTrait, id: i64) -> AppResult<order::Model> {
    order::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("order"))
}

/// The order, when `user_id` is its buyer or seller; 404 for everyone else (they may not know it exists).
pub async fn visible(db: &impl ConnectionTrait, id: i64, user_id: i64) -> AppResult<order::Model> {
    let o = find(db, id).await?;
    if o.buyer_id == user_id || o.seller_id == user_id {
        Ok(o)
    } else {
        Err(AppError::not_found("order"))
    }
}

/// The caller as a party of the order.
pub fn party(o: &order::Model, user_id: i64) -> Actor {
    if o.buyer_id == user_id {
        Actor::Buyer(user_id)
    } else {
        Actor::Seller(user_id)
    }
}

/// Places an order: checks the buyer may buy, then, in one transaction that writes first, reserves the listing
/// (exactly one of any number of racing buyers wins; the others get 409 `listing_unavailable`), stores the
/// order (and its WeChat Pay payment), logs the event, posts the card and tells the seller.
pub async fn create(state: &AppState, buyer_id: i64, input: NewOrder) -> AppResult<order::Model> {
    let db = &state.db;
    let l = listing::Entity::find_by_id(input.listing_id)
        .one(db)
        .await?
        .filter(|l| l.status.visible_to_others() || l.seller_id == buyer_id)
        .ok_or_else(|| AppError::not_found("listing"))?;
    if l.seller_id == buyer_id {
        return Err(AppError::unprocessable(
            "cannot_buy_own_listing",
            "you cannot buy your own item",
        ));
    }
    let blocked = user_block::Entity::find()
        .filter(user_block::Column::BlockerId.eq(l.seller_id))
        .filter(user_block::Column::BlockedId.eq(buyer_id))
        .one(db)
        .await?
        .is_some();
    if blocked {
        return Err(AppError::forbidden(
            "blocked_by_seller",
            "the seller does not trade with you",
        ));
    }
    if l.status != ListingStatus::OnSale {
        return Err(listing_unavailable());
    }
    if input.payment_method == PaymentMethod::WechatPay && !state.pay.enabled() {
        return Err(AppError::conflict(
            "wechat_pay_disabled",
            "WeChat Pay is not available on this service; choose offline payment",
        ));
    }
    if let Some(place_id) = input.meetup_place_id {
        check_meetup_place(db, &l, place_id).await?;
    }

    // Read before the transaction (the settings may come from the database).
    let payment_timeout = settings::payment_timeout(state).await;
    let now = util::now();
    let txn = db.begin().await?;
    // Write first: the reservation is the race's single point of decision.
    let l = match listings::transition_in(
        &txn,
        l.id,
        ListingActor::System,
        ListingTransition::Reserve,
        None,
    )
    .await
    {
        Ok(l) => l,
        Err(AppError::InvalidTransition { .. } | AppError::NotFound { .. }) => {
            return Err(listing_unavailable());
        }
        Err(e) => return Err(e),
    };
    let amount = match input.offer_id {
        Some(offer) => cards::accepted_offer_price(&txn, offer, l.id, buyer_id).await?,
        None => l.price,
    };
    if input.payment_method == PaymentMethod::WechatPay && amount >= payments::MAX_WECHAT_PAY_FEN {
        return Err(AppError::unprocessable(
            "amount_too_large_for_wechat_pay",
            "WeChat Pay orders must be under 2,000 yuan (the seller's payout would need their real name); \
             choose offline payment",
        ));
    }
    let (status, expires_at) = match input.payment_method {
        PaymentMethod::WechatPay => (
            OrderStatus::PendingPayment,
            Some(now + settings::chrono(payment_timeout)),
        ),
        PaymentMethod::Offline => (OrderStatus::PendingHandover, None),
    };
    let id = order::Entity::insert(order::ActiveModel {
        listing_id: Set(l.id),
        buyer_id: Set(buyer_id),
        seller_id: Set(l.seller_id),
        title: Set(clip(&l.title, 120)),
        amount: Set(amount),
        payment_method: Set(input.payment_method),
        status: Set(status),
        offer_id: Set(input.offer_id),
        meetup_place_id: Set(input.meetup_place_id),
        handover_code: Set(new_handover_code()),
        handover_failures: Set(0),
        handover_fail_day: Set(None),
        expires_at: Set(expires_at),
        refund_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        paid_at: Set(None),
        completed_at: Set(None),
        cancelled_at: Set(None),
        settled_at: Set(None),
        ..Default::default()
    })
    .exec(&txn)
    .await?
    .last_insert_id;
    if input.payment_method == PaymentMethod::WechatPay {
        payments::service::create_in(&txn, id, amount, now).await?;
    }
    let actor = Actor::Buyer(buyer_id);
    record_event(&txn, id, &actor, None, status, None).await?;
    let o = find(&txn, id).await?;
    let delivery = announce(&txn, &o, Announcement::Created).await?;
    txn.commit().await?;
    cards::deliver(state, delivery);
    Ok(o)
}

async fn check_meetup_place(
    db: &impl ConnectionTrait,
    l: &listing::Model,
    place_id: i64,
) -> AppResult<()> {
    let bad = || AppError::invalid_field("meetup_point_id", "not a meet-up place of this item");
    let place = campus_place::Entity::find_by_id(place_id)
        .one(db)
        .await?
        .filter(|p| !p.hidden)
        .ok_or_else(bad)?;
    let named: Vec<i64> = listing_place::Entity::find()
        .filter(listing_place::Column::ListingId.eq(l.id))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.place_id)
        .collect();
    let ok = if named.is_empty() {
        l.campus_id.is_none_or(|c| c == place.campus_id)
    } else {
        named.contains(&place_id)
    };
    if ok { Ok(()) } else { Err(bad()) }
}

/// Applies transition `t` to `o` (as the caller read it) in `txn`: one conditional UPDATE from `o.status`
/// (plus whatever `extra` adds: more columns, more conditions), then the event row. Returns the order as it is
/// now. A status that moved meanwhile is 409 `invalid_transition` with the current status; a party that may
/// not ask for `t` is 403 `not_allowed`.
pub async fn transition_in(
    txn: &impl ConnectionTrait,
    o: &order::Model,
    t: OrderTransition,
    actor: &Actor,
    reason: Option<&str>,
    extra: impl FnOnce(UpdateMany<order::Entity>) -> UpdateMany<order::Entity>,
) -> AppResult<order::Model> {
    if !t.allowed_roles().contains(&actor.role()) {
        return Err(AppError::forbidden(
            "not_allowed",
            format!(
                "the {} cannot {} this order",
                actor.role().as_str(),
                t.verb()
            ),
        ));
    }
    let Some(to) = t.apply(o.status) else {
        return Err(refused(o.status, t));
    };
    let now = util::now();
    let mut q = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to))
        .col_expr(order::Column::UpdatedAt, Expr::value(now));
    q = match to {
        OrderStatus::Paid => q.col_expr(order::Column::PaidAt, Expr::value(now)),
        OrderStatus::Completed => q.col_expr(order::Column::CompletedAt, Expr::value(now)),
        OrderStatus::Cancelled => q.col_expr(order::Column::CancelledAt, Expr::value(now)),
        OrderStatus::Settled => q.col_expr(order::Column::SettledAt, Expr::value(now)),
        _ => q,
    };
    // One statement: the conditional UPDATE hands back the row as it is now (`RETURNING`), so a transition costs
    // no read-back (it runs inside the single writer slot on SQLite, where every statement counts).
    let mut updated = extra(q)
        .filter(order::Column::Id.eq(o.id))
        .filter(order::Column::Status.eq(o.status))
        .exec_with_returning(txn)
        .await?;
    let Some(done) = updated.pop() else {
        let current = find(txn, o.id).await?;
        return Err(refused(current.status, t));
    };
    record_event(txn, o.id, actor, Some(o.status), to, reason).await?;
    // Reputation follows in the same transaction: a completed deal counts for both sides, a seller's
    // cancellation against the seller's completion rate.
    match (to, actor) {
        (OrderStatus::Completed, _) => reviews::reputation::order_completed(txn, o).await?,
        (OrderStatus::Cancelled, Actor::Seller(_)) => {
            reviews::reputation::seller_cancelled(txn, o.seller_id).await?
        }
        _ => {}
    }
    Ok(done)
}

/// Writes one line of the order's event log.
pub async fn record_event(
    txn: &impl ConnectionTrait,
    order_id: i64,
    actor: &Actor,
    from: Option<OrderStatus>,
    to: OrderStatus,
    reason: Option<&str>,
) -> AppResult<()> {
    order_event::Entity::insert(order_event::ActiveModel {
        order_id: Set(order_id),
        actor: Set(actor.role().as_str().into()),
        actor_user_id: Set(actor.user_id()),
        operator: Set(match actor {
            Actor::Operator(name) => Some(clip(name, 64)),
            _ => None,
        }),
        from_status: Set(from.map(|s| s.as_str().to_string())),
        to_status: Set(to.as_str().into()),
        reason: Set(reason.map(|r| clip(r, 1000)).filter(|r| !r.is_empty())),
        created_at: Set(util::now()),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The order's event log, oldest first.
pub async fn events(
    db: &impl ConnectionTrait,
    order_id: i64,
) -> AppResult<Vec<order_event::Model>> {
    Ok(order_event::Entity::find()
        .filter(order_event::Column::OrderId.eq(order_id))
        .order_by_asc(order_event::Column::Id)
        .all(db)
        .await?)
}

/// What to tell the parties.
pub enum Announcement<'a> {
    Created,
    Changed(OrderTransition, Option<&'a str>),
    /// A payment arrived for an order already cancelled; it is being refunded.
    LatePaymentRefunded,
    /// An operator decided a dispute (partial refund in fen, if any), with the reason both parties read.
    DisputeDecided {
        refund: Option<i64>,
        reason: Option<&'a str>,
    },
}

/// Posts the system card into the buyer–seller conversation and puts the inbox notifications of an order
/// event, in the caller's transaction.
pub async fn announce(
    txn: &impl ConnectionTrait,
    o: &order::Model,
    what: Announcement<'_>,
) -> AppResult<Delivery> {
    use OrderTransition as T;
    let title = &o.title;
    let reason = |r: Option<&str>| {
        r.filter(|r| !r.trim().is_empty())
            .map(|r| format!("（{}）", clip(r, 60)))
            .unwrap_or_default()
    };
    // (card kind, card text, [(user, notification kind, title, body)])
    let mut inbox: Vec<(i64, &str, &str, String)> = Vec::new();
    let (kind, text) = match what {
        Announcement::Created => {
            let how = match o.payment_method {
                PaymentMethod::WechatPay => "等待买家付款",
                PaymentMethod::Offline => "线下交易，面交时请向买家索取交接码",
            };
            inbox.push((
                o.seller_id,
                "listing_reserved",
                "商品已被拍下",
                format!("「{title}」已被拍下（{}），{how}。", yuan(o.amount)),
            ));
            (
                "order_created".to_string(),
                format!("买家已下单 {}，{how}。", yuan(o.amount)),
            )
        }
        Announcement::LatePaymentRefunded => (
            "order_refunded".into(),
            "订单取消后才收到付款，款项已原路退回买家。".into(),
        ),
        Announcement::DisputeDecided {
            refund,
            reason: why,
        } => {
            let text = match (o.status, refund) {
                (OrderStatus::Refunded, _) => "平台裁定：全额退款给买家".to_string(),
                (_, Some(fen)) => format!("平台裁定：交易完成，退还买家 {}", yuan(fen)),
                _ => "平台裁定：交易完成".to_string(),
            };
            let text = format!("{text}{}。", reason(why));
            for user in [o.buyer_id, o.seller_id] {
                inbox.push((
                    user,
                    "dispute_decided",
                    "纠纷已裁定",
                    format!("「{title}」{text}"),
                ));
            }
            ("dispute_decided".into(), text)
        }
        Announcement::Changed(t, why) => {
            let text = match t {
                T::Pay => {
                    inbox.push((
                        o.seller_id,
                        "order_paid",
                        "买家已付款",
                        format!(
                            "「{title}」买家已付款 {}，请约定面交，交接时输入买家的交接码。",
                            yuan(o.amount)
                        ),
                    ));
                    format!(
                        "买家已付款 {}，款项由平台托管。面交时卖家输入买家的交接码完成交易。",
                        yuan(o.amount)
                    )
                }
                T::Cancel | T::Expire => {
                    let text = if t == T::Expire {
                        "订单超时未付款，已自动取消。".to_string()
                    } else {
                        format!("订单已取消{}。", reason(why))
                    };
                    for user in [o.buyer_id, o.seller_id] {
                        inbox.push((
                            user,
                            "order_cancelled",
                            "订单已取消",
                            format!("「{title}」{text}"),
                        ));
                    }
                    text
                }
                T::Handover | T::ConfirmReceipt | T::AutoComplete => {
                    let text = match t {
                        T::Handover => "卖家已输入交接码，交易完成。",
                        T::ConfirmReceipt => "买家已确认收货，交易完成。",
                        _ => "付款后无人申请退款，订单已自动完成。",
                    };
                    completion_inbox(o, &mut inbox);
                    text.to_string()
                }
                T::RequestRefund => {
                    inbox.push((
                        o.seller_id,
                        "refund_requested",
                        "买家申请退款",
                        format!("「{title}」买家申请退款{}，请尽快处理。", reason(why)),
                    ));
                    format!("买家申请退款{}。", reason(why))
                }
                T::AcceptRefund => {
                    inbox.push((
                        o.buyer_id,
                        "refund_decided",
                        "卖家已同意退款",
                        format!("「{title}」的退款 {} 将原路退回。", yuan(o.amount)),
                    ));
                    "卖家同意退款，款项将原路退回买家。".into()
                }
                T::RefuseRefund => {
                    inbox.push((
                        o.buyer_id,
                        "refund_decided",
                        "卖家拒绝退款",
                        format!("「{title}」卖家拒绝退款{}，平台将介入处理。", reason(why)),
                    ));
                    format!("卖家拒绝退款{}，平台将介入处理。", reason(why))
                }
                T::DecideRefund | T::DecideComplete => "平台已裁定。".into(),
                T::Settle => {
                    inbox.push((
                        o.seller_id,
                        "payout_settled",
                        "货款已到账",
                        format!("「{title}」的货款已转入你的微信零钱。"),
                    ));
                    "货款已转入卖家微信零钱。".into()
                }
            };
            (format!("order_{}", t.rule().1.as_str()), text)
        }
    };
    for (user, kind, title, body) in inbox {
        notify(txn, user, kind, title, &body, Some("order"), Some(o.id)).await?;
    }
    cards::post_in(
        txn,
        o.listing_id,
        o.buyer_id,
        o.seller_id,
        Card {
            kind,
            text,
            order_id: Some(o.id),
        },
    )
    .await
}

/// The inbox lines of a completed order: the buyer's "done", the seller's "sold" and, for WeChat Pay orders,
/// "payout ready to collect".
fn completion_inbox(o: &order::Model, inbox: &mut Vec<(i64, &str, &str, String)>) {
    let title = &o.title;
    inbox.push((
        o.buyer_id,
        "order_completed",
        "交易完成",
        format!("「{title}」交易完成。"),
    ));
    inbox.push((
        o.seller_id,
        "listing_sold",
        "商品已售出",
        format!("「{title}」已售出。"),
    ));
    if o.payment_method == PaymentMethod::WechatPay {
        inbox.push((
            o.seller_id,
            "payout_ready",
            "货款待领取",
            format!("「{title}」的货款可以领取了：打开订单点击「领取货款」。"),
        ));
    }
}

/// Everything around an order that just completed, in the same transaction: the listing is sold, the
/// seller's payout (amount less refunds and the platform fee) is ready, and the shipping upload is due.
async fn on_completed(
    state: &AppState,
    txn: &impl ConnectionTrait,
    o: &order::Model,
    refunded: i64,
) -> AppResult<()> {
    mark_listing(txn, o.listing_id, ListingTransition::MarkSold).await?;
    if o.payment_method == PaymentMethod::WechatPay {
        payments::payouts::create_in(
            txn,
            o,
            o.amount - refunded,
            settings::platform_fee_bps(state),
        )
        .await?;
        payments::shipping::due_in(txn, o.id).await?;
    }
    Ok(())
}

/// Sells or releases the listing of an order. A listing the seller or an operator moved meanwhile (withdrawn,
/// held, removed) stays where it is: the order's outcome does not depend on it.
async fn mark_listing(
    txn: &impl ConnectionTrait,
    listing_id: i64,
    t: ListingTransition,
) -> AppResult<()> {
    match listings::transition_in(txn, listing_id, ListingActor::System, t, None).await {
        Ok(_) => Ok(()),
        Err(AppError::InvalidTransition { current, .. }) => {
            tracing::warn!(
                listing_id,
                current,
                to = t.verb(),
                "listing not moved with its order"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Work to do once a transaction has committed.
#[derive(Default)]
#[must_use]
pub struct AfterCommit {
    pub deliveries: Vec<Delivery>,
    pub refunds: Vec<i64>,
    pub shipping: Option<i64>,
}

impl AfterCommit {
    /// Pushes the cards, and starts the WeChat calls the commit made due (refund submissions, the shipping
    /// upload) in the background; the sweeps retry whatever fails.
    pub fn run(self, state: &AppState) {
        for d in self.deliveries {
            cards::deliver(state, d);
        }
        if !self.refunds.is_empty() || self.shipping.is_some() {
            let state = state.clone();
            tokio::spawn(async move {
                for id in self.refunds {
                    if let Err(e) = payments::refunds::submit(&state, id).await {
                        tracing::warn!(refund_id = id, error = %e, "refund submission failed; the sweep retries");
                    }
                }
                if let Some(order_id) = self.shipping
                    && let Err(e) = payments::shipping::upload(&state, order_id).await
                {
                    tracing::warn!(order_id, error = %e, "shipping upload failed; the sweep retries");
                }
            });
        }
    }
}

/// Completes `o` by transition `t` (hand-over, receipt, timer, operator) in `txn`, with its listing, payout,
/// shipping, card and notifications.
async fn complete_in(
    state: &AppState,
    txn: &impl ConnectionTrait,
    o: &order::Model,
    t: OrderTransition,
    actor: &Actor,
    reason: Option<&str>,
    extra: impl FnOnce(UpdateMany<order::Entity>) -> UpdateMany<order::Entity>,
) -> AppResult<(order::Model, AfterCommit)> {
    let done = transition_in(txn, o, t, actor, reason, extra).await?;
    on_completed(state, txn, &done, 0).await?;
    let mut after = AfterCommit::default();
    after
        .deliveries
        .push(announce(txn, &done, Announcement::Changed(t, reason)).await?);
    if done.payment_method == PaymentMethod::WechatPay {
        after.shipping = Some(done.id);
    }
    Ok((done, after))
}

/// The error of a hand-over locked by too many wrong codes.
fn handover_locked_error(now: chrono::DateTime<chrono::Utc>) -> AppError {
    AppError::conflict(
        "handover_locked",
        format!(
            "{HANDOVER_MAX_FAILURES} wrong hand-over codes today: try again after {} (midnight, Beijing time), or \
             ask the buyer to confirm receipt",
            next_campus_midnight(now).to_rfc3339()
        ),
    )
}

/// Not locked today: no failures on `today`, or fewer than the maximum.
fn not_locked(today: &str) -> Condition {
    Condition::any()
        .add(order::Column::HandoverFailDay.is_null())
        .add(order::Column::HandoverFailDay.ne(today))
        .add(order::Column::HandoverFailures.lt(HANDOVER_MAX_FAILURES))
}

/// The seller enters the buyer's hand-over code. Right: the order completes. Wrong: 422 `wrong_handover_code`
/// and one of the day's five tries is used; after the fifth the order is locked until the next campus day
/// (409 `handover_locked`), when the buyer can still confirm receipt.
pub async fn handover(
    state: &AppState,
    seller_id: i64,
    order_id: i64,
    code: &str,
) -> AppResult<order::Model> {
    let db = &state.db;
    let o = visible(db, order_id, seller_id).await?;
    if o.seller_id != seller_id {
        return Err(AppError::forbidden(
            "not_allowed",
            "only the seller enters the hand-over code; the buyer shows it",
        ));
    }
    if !o.status.awaits_handover() {
        return Err(refused(o.status, OrderTransition::Handover));
    }
    let now = util::now();
    let today = campus_day(now);
    if handover_locked(&o, now) {
        // Refused unchecked, but kept in the record of tries.
        record_attempt(db, o.id, seller_id, false).await?;
        return Err(handover_locked_error(now));
    }
    let right = code_matches(&o.handover_code, code);
    let txn = db.begin().await?;
    if !right {
        // Count the failure in one atomic UPDATE (a new campus day starts from one), unless already locked.
        let res = order::Entity::update_many()
            .col_expr(
                order::Column::HandoverFailures,
                Expr::case(
                    order::Column::HandoverFailDay.eq(today.as_str()),
                    Expr::col(order::Column::HandoverFailures).add(1),
                )
                .finally(1)
                .into(),
            )
            .col_expr(order::Column::HandoverFailDay, Expr::value(today.clone()))
            .filter(order::Column::Id.eq(o.id))
            .filter(not_locked(&today))
            .exec(&txn)
            .await?;
        record_attempt(&txn, o.id, seller_id, false).await?;
        let after = find(&txn, o.id).await?;
        txn.commit().await?;
        let left = HANDOVER_MAX_FAILURES - after.handover_failures;
        if res.rows_affected == 0 || left <= 0 {
            return Err(handover_locked_error(now));
        }
        return Err(AppError::unprocessable(
            "wrong_handover_code",
            format!("wrong hand-over code; {left} more tries today"),
        ));
    }
    let result = complete_in(
        state,
        &txn,
        &o,
        OrderTransition::Handover,
        &Actor::Seller(seller_id),
        None,
        |q| q.filter(not_locked(&today)),
    )
    .await;
    let (done, after) = match result {
        Ok(r) => r,
        Err(AppError::InvalidTransition { .. }) => {
            drop(txn);
            let current = find(db, o.id).await?;
            if current.status.awaits_handover() && handover_locked(&current, now) {
                return Err(handover_locked_error(now));
            }
            return Err(refused(current.status, OrderTransition::Handover));
        }
        Err(e) => return Err(e),
    };
    record_attempt(&txn, o.id, seller_id, true).await?;
    txn.commit().await?;
    after.run(state);
    Ok(done)
}

async fn record_attempt(
    txn: &impl ConnectionTrait,
    order_id: i64,
    user_id: i64,
    success: bool,
) -> AppResult<()> {
    handover_attempt::Entity::insert(handover_attempt::ActiveModel {
        order_id: Set(order_id),
        user_id: Set(user_id),
        success: Set(success),
        created_at: Set(util::now()),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The buyer confirms they have the item: the order completes without the code.
pub async fn confirm_receipt(
    state: &AppState,
    buyer_id: i64,
    order_id: i64,
) -> AppResult<order::Model> {
    let o = visible(&state.db, order_id, buyer_id).await?;
    let actor = party(&o, buyer_id);
    let txn = state.db.begin().await?;
    let (done, after) = complete_in(
        state,
        &txn,
        &o,
        OrderTransition::ConfirmReceipt,
        &actor,
        None,
        |q| q,
    )
    .await?;
    txn.commit().await?;
    after.run(state);
    Ok(done)
}

/// Buyer or seller calls off an order before payment (or before an offline hand-over). An unpaid WeChat order
/// is closed at WeChat first; when WeChat says it was paid meanwhile, the payment is applied instead and the
/// answer is 409 with `current_status` `paid`.
pub async fn cancel(
    state: &AppState,
    user_id: i64,
    order_id: i64,
    reason: Option<&str>,
) -> AppResult<order::Model> {
    let o = visible(&state.db, order_id, user_id).await?;
    let actor = party(&o, user_id);
    if OrderTransition::Cancel.apply(o.status).is_none() {
        return Err(refused(o.status, OrderTransition::Cancel));
    }
    if o.status == OrderStatus::PendingPayment {
        payments::service::close_before_cancel(state, &o).await?;
    }
    finish_cancel(state, &o, OrderTransition::Cancel, &actor, reason).await
}

/// The cancellation itself (after WeChat closed the order): status, listing back on sale, payment closed,
/// card and notifications.
async fn finish_cancel(
    state: &AppState,
    o: &order::Model,
    t: OrderTransition,
    actor: &Actor,
    reason: Option<&str>,
) -> AppResult<order::Model> {
    let txn = state.db.begin().await?;
    let done = transition_in(&txn, o, t, actor, reason, |q| q).await?;
    mark_listing(&txn, o.listing_id, ListingTransition::Unreserve).await?;
    payments::service::mark_closed_in(&txn, o.id).await?;
    let delivery = announce(&txn, &done, Announcement::Changed(t, reason)).await?;
    txn.commit().await?;
    cards::deliver(state, delivery);
    Ok(done)
}

/// The buyer of a paid order asks for their money back (before the hand-over).
pub async fn request_refund(
    state: &AppState,
    buyer_id: i64,
    order_id: i64,
    reason: &str,
) -> AppResult<order::Model> {
    let reason = clip(reason, REASON_MAX);
    if reason.is_empty() {
        return Err(AppError::invalid_field(
            "reason",
            "say why you want a refund",
        ));
    }
    let o = visible(&state.db, order_id, buyer_id).await?;
    let actor = party(&o, buyer_id);
    let txn = state.db.begin().await?;
    let r = reason.clone();
    let done = transition_in(
        &txn,
        &o,
        OrderTransition::RequestRefund,
        &actor,
        Some(&reason),
        |q| q.col_expr(order::Column::RefundReason, Expr::value(r)),
    )
    .await?;
    let delivery = announce(
        &txn,
        &done,
        Announcement::Changed(OrderTransition::RequestRefund, Some(&reason)),
    )
    .await?;
    txn.commit().await?;
    cards::deliver(state, delivery);
    Ok(done)
}

/// The seller answers a refund request: agreeing refunds the buyer in full and puts the item back on sale;
/// refusing opens a dispute for an operator.
pub async fn respond_refund(
    state: &AppState,
    seller_id: i64,
    order_id: i64,
    accept: bool,
    reason: Option<&str>,
) -> AppResult<order::Model> {
    let reason = reason
        .map(|r| clip(r, REASON_MAX))
        .filter(|r| !r.is_empty());
    let o = visible(&state.db, order_id, seller_id).await?;
    let actor = party(&o, seller_id);
    let t = if accept {
        OrderTransition::AcceptRefund
    } else {
        OrderTransition::RefuseRefund
    };
    let txn = state.db.begin().await?;
    let done = transition_in(&txn, &o, t, &actor, reason.as_deref(), |q| q).await?;
    let mut after = AfterCommit::default();
    if accept {
        mark_listing(&txn, o.listing_id, ListingTransition::Unreserve).await?;
        let why = o
            .refund_reason
            .clone()
            .unwrap_or_else(|| "卖家同意退款".into());
        after
            .refunds
            .push(payments::refunds::create_in(&txn, &done, done.amount, &why).await?);
    }
    after
        .deliveries
        .push(announce(&txn, &done, Announcement::Changed(t, reason.as_deref())).await?);
    txn.commit().await?;
    after.run(state);
    Ok(done)
}

/// An operator's decision of a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Give the buyer `fen` back. The whole amount: the order is refunded and the item goes back on sale. Less:
    /// the deal stands at the lower price (completed; the seller is paid the rest).
    Refund { fen: i64 },
    /// The seller is right: the order completes and the seller is paid in full.
    Complete,
}

/// Decides a dispute in its own transaction. `operator` is recorded in the event log with `reason`.
pub async fn decide_dispute(
    state: &AppState,
    order_id: i64,
    operator: &str,
    decision: Decision,
    reason: &str,
) -> AppResult<order::Model> {
    let o = find(&state.db, order_id).await?;
    let txn = state.db.begin().await?;
    let (done, after) = decide_dispute_in(state, &txn, &o, operator, decision, reason).await?;
    txn.commit().await?;
    after.run(state);
    Ok(done)
}

/// Decides the dispute of `o` (as the caller read it) in the caller's transaction — the operator API opens its
/// audit row first in the same one. The status changes by the conditional update from `o.status`, so a
/// decision racing another is 409 `invalid_transition`. Run the returned [`AfterCommit`] after the commit: it
/// submits the refund to WeChat and pushes the cards.
pub async fn decide_dispute_in(
    state: &AppState,
    txn: &impl ConnectionTrait,
    o: &order::Model,
    operator: &str,
    decision: Decision,
    reason: &str,
) -> AppResult<(order::Model, AfterCommit)> {
    if o.status != OrderStatus::Disputed {
        return Err(refused(o.status, OrderTransition::DecideRefund));
    }
    let actor = Actor::Operator(operator.to_string());
    let reason = clip(reason, 1000);
    let mut after = AfterCommit::default();
    let (done, refund) = match decision {
        Decision::Refund { fen } if !(1..=o.amount).contains(&fen) => {
            return Err(AppError::invalid_field(
                "fen",
                format!("a refund is between 1 and {} fen", o.amount),
            ));
        }
        Decision::Refund { fen } if fen == o.amount => {
            let done = transition_in(
                txn,
                o,
                OrderTransition::DecideRefund,
                &actor,
                Some(&reason),
                |q| q,
            )
            .await?;
            mark_listing(txn, o.listing_id, ListingTransition::Unreserve).await?;
            after
                .refunds
                .push(payments::refunds::create_in(txn, &done, fen, "平台裁定退款").await?);
            (done, Some(fen))
        }
        Decision::Refund { fen } => {
            let done = transition_in(
                txn,
                o,
                OrderTransition::DecideComplete,
                &actor,
                Some(&reason),
                |q| q,
            )
            .await?;
            after
                .refunds
                .push(payments::refunds::create_in(txn, &done, fen, "平台裁定部分退款").await?);
            on_completed(state, txn, &done, fen).await?;
            (done, Some(fen))
        }
        Decision::Complete => {
            let done = transition_in(
                txn,
                o,
                OrderTransition::DecideComplete,
                &actor,
                Some(&reason),
                |q| q,
            )
            .await?;
            on_completed(state, txn, &done, 0).await?;
            (done, None)
        }
    };
    if done.status == OrderStatus::Completed {
        let mut inbox = Vec::new();
        completion_inbox(&done, &mut inbox);
        for (user, kind, title, body) in inbox {
            notify(txn, user, kind, title, &body, Some("order"), Some(done.id)).await?;
        }
        after.shipping = Some(done.id);
    }
    after.deliveries.push(
        announce(
            txn,
            &done,
            Announcement::DisputeDecided {
                refund,
                reason: Some(&reason),
            },
        )
        .await?,
    );
    Ok((done, after))
}

/// Sweep: unpaid WeChat Pay orders past their deadline are closed at WeChat, then cancelled (or marked paid,
/// when WeChat says the buyer paid after all). Conditional updates make concurrent sweeps harmless.
pub async fn expire_due(state: &AppState) -> AppResult<u64> {
    let now = util::now();
    let due = order::Entity::find()
        .filter(order::Column::Status.eq(OrderStatus::PendingPayment))
        .filter(order::Column::ExpiresAt.lte(now))
        .order_by_asc(order::Column::ExpiresAt)
        .limit(100)
        .all(&state.db)
        .await?;
    let mut done = 0;
    for o in due {
        match payments::service::close_before_cancel(state, &o).await {
            Ok(()) => {}
            // Paid after all (applied), or WeChat unreachable (next round).
            Err(AppError::InvalidTransition { .. }) => continue,
            Err(e) => {
                tracing::warn!(order_id = o.id, error = %e, "could not close the WeChat order; retrying later");
                continue;
            }
        }
        match finish_cancel(
            state,
            &o,
            OrderTransition::Expire,
            &Actor::System,
            Some("payment deadline passed"),
        )
        .await
        {
            Ok(_) => done += 1,
            Err(AppError::InvalidTransition { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Sweep: paid orders with no hand-over, refund request or dispute for `ORDER_AUTO_COMPLETE_DAYS` complete.
pub async fn auto_complete_due(state: &AppState) -> AppResult<u64> {
    let cutoff = util::now() - settings::chrono(settings::auto_complete_after(state).await);
    let due = order::Entity::find()
        .filter(order::Column::Status.eq(OrderStatus::Paid))
        .filter(order::Column::PaidAt.lte(cutoff))
        .order_by_asc(order::Column::PaidAt)
        .limit(100)
        .all(&state.db)
        .await?;
    let mut done = 0;
    for o in due {
        let txn = state.db.begin().await?;
        match complete_in(
            state,
            &txn,
            &o,
            OrderTransition::AutoComplete,
            &Actor::System,
            Some("no hand-over, refund request or dispute in time"),
            |q| q,
        )
        .await
        {
            Ok((_, after)) => {
                txn.commit().await?;
                after.run(state);
                done += 1;
            }
            Err(AppError::InvalidTransition { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Which side of the orders to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRole {
    Buyer,
    Seller,
}

pub const PAGE_MAX: u64 = 50;

/// A page of the user's orders as buyer or seller, newest first, optionally of some statuses only.
pub async fn list_mine(
    db: &impl ConnectionTrait,
    user_id: i64,
    role: ListRole,
    statuses: &[OrderStatus],
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<(Vec<order::Model>, Option<String>)> {
    let limit = limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let mut q = order::Entity::find().filter(match role {
        ListRole::Buyer => order::Column::BuyerId.eq(user_id),
        ListRole::Seller => order::Column::SellerId.eq(user_id),
    });
    if !statuses.is_empty() {
        q = q.filter(order::Column::Status.is_in(statuses.iter().copied()));
    }
    if let Some(c) = cursor {
        let (_, before) = util::decode_cursor("orders", c)?;
        q = q.filter(order::Column::Id.lt(before));
    }
    let mut rows = q
        .order_by_desc(order::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|o| util::encode_cursor("orders", "", o.id))
    } else {
        None
    };
    Ok((rows, next))
}
