//! The payment of a WeChat Pay order: creating it with the order, prepay and the `wx.requestPayment`
//! parameters, applying a verified payment (from a notification, a sync or the sweep) exactly once, closing the
//! WeChat order before a cancellation, and the sweep that asks WeChat when a notification is overdue.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait, sea_query::Expr,
};

use super::{model::PaymentStatus, model::payment, pay_error};
use crate::{
    error::{AppError, AppResult},
    orders::{
        model::{OrderStatus, OrderTransition, PaymentMethod, order},
        service::{self as orders, Actor, AfterCommit, Announcement},
        settings,
    },
    state::AppState,
    users::model::user,
    util,
    wechat::pay::{JsapiPrepay, RequestPayment, Transaction},
};

/// Creates the payment row of a new WeChat Pay order (in the order's transaction).
pub async fn create_in(
    txn: &impl ConnectionTrait,
    order_id: i64,
    amount: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    // `CT` + campus date and time + random: unique per merchant across deployments and database resets.
    let stamp = now
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset"))
        .format("%y%m%d%H%M%S");
    payment::Entity::insert(payment::ActiveModel {
        order_id: Set(order_id),
        out_trade_no: Set(super::merchant_no(&format!("CT{stamp}"), 12)),
        amount: Set(amount),
        status: Set(PaymentStatus::Unpaid),
        prepay_id: Set(None),
        prepaid_at: Set(None),
        transaction_id: Set(None),
        payer_openid: Set(None),
        paid_at: Set(None),
        query_after: Set(None),
        shipping_uploaded_at: Set(None),
        shipping_next_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The payment of an order, if it has one.
pub async fn of_order(
    db: &impl ConnectionTrait,
    order_id: i64,
) -> AppResult<Option<payment::Model>> {
    Ok(payment::Entity::find()
        .filter(payment::Column::OrderId.eq(order_id))
        .one(db)
        .await?)
}

/// Marks the payment of a cancelled order closed (in the cancellation's transaction).
pub async fn mark_closed_in(txn: &impl ConnectionTrait, order_id: i64) -> AppResult<()> {
    payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Closed))
        .col_expr(
            payment::Column::QueryAfter,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(util::now()))
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::Status.eq(PaymentStatus::Unpaid))
        .exec(txn)
        .await?;
    Ok(())
}

/// `POST /orders/{id}/wechat-pay`: the buyer's `wx.requestPayment` parameters. The first call creates the
/// WeChat order (`jsapi` prepay); later calls re-sign the same prepay id, so there is never a second WeChat
/// order for one of ours.
pub async fn prepay(state: &AppState, buyer_id: i64, order_id: i64) -> AppResult<RequestPayment> {
    let db = &state.db;
    let o = orders::visible(db, order_id, buyer_id).await?;
    if o.buyer_id != buyer_id {
        return Err(AppError::forbidden("not_allowed", "only the buyer pays"));
    }
    if o.payment_method != PaymentMethod::WechatPay {
        return Err(AppError::conflict(
            "not_wechat_pay",
            "this order is paid offline, at the meet-up",
        ));
    }
    if o.status != OrderStatus::PendingPayment {
        return Err(orders::refused(o.status, OrderTransition::Pay));
    }
    let now = util::now();
    let expires_at = o.expires_at.unwrap_or(now);
    if expires_at <= now {
        return Err(AppError::conflict(
            "payment_expired",
            "the payment deadline of this order has passed",
        ));
    }
    let p = of_order(db, o.id)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("order {} has no payment", o.id)))?;
    if let Some(prepay_id) = &p.prepay_id {
        return Ok(state.pay.request_payment(prepay_id));
    }
    let buyer = user::Entity::find_by_id(buyer_id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    // Written before the call: if its answer is lost, WeChat may still have the order, so a cancellation must
    // close it and the sweep must query it.
    let query_after = now + settings::chrono(settings::payment_query_after(state));
    payment::Entity::update_many()
        .col_expr(payment::Column::PrepaidAt, Expr::value(now))
        .col_expr(payment::Column::QueryAfter, Expr::value(query_after))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(p.id))
        .filter(payment::Column::PrepaidAt.is_null())
        .exec(db)
        .await?;
    let prepay_id = state
        .pay
        .jsapi_prepay(&JsapiPrepay {
            out_trade_no: p.out_trade_no.clone(),
            description: format!("校园二手-{}", o.title),
            total_fen: p.amount,
            payer_openid: buyer.openid,
            time_expire: expires_at,
        })
        .await
        .map_err(|e| match &e {
            crate::wechat::pay::PayError::Wechat { code, .. } if code == "ORDER_CLOSED" => {
                AppError::conflict("payment_expired", "WeChat closed this order's payment")
            }
            _ => pay_error("prepay", &e),
        })?;
    // Concurrent first calls send identical parameters, for which WeChat returns the same prepay id.
    payment::Entity::update_many()
        .col_expr(payment::Column::PrepayId, Expr::value(prepay_id.clone()))
        .col_expr(payment::Column::UpdatedAt, Expr::value(util::now()))
        .filter(payment::Column::Id.eq(p.id))
        .filter(payment::Column::PrepayId.is_null())
        .exec(db)
        .await?;
    Ok(state.pay.request_payment(&prepay_id))
}

/// What applying a reported payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// `pending_payment → paid`.
    Paid,
    /// Seen before: nothing changed.
    AlreadyApplied,
    /// The order had been cancelled: the payment is being refunded.
    RefundedLate,
    /// WeChat says it is not paid (yet).
    NotPaid,
}

/// Applies a payment WeChat reported (verified notification, or a signed query answer): checks merchant,
/// appid, order, amount and currency against ours, then, once however often it is reported, marks the payment
/// paid and the order `paid` — or, when the order was cancelled meanwhile, refunds the money automatically.
pub async fn apply_transaction(
    state: &AppState,
    tx: &Transaction,
    source: &str,
) -> AppResult<Applied> {
    if tx.mchid != state.pay.mchid() || tx.appid != state.pay.appid() {
        tracing::warn!(mchid = %tx.mchid, appid = %tx.appid, out_trade_no = %tx.out_trade_no, source,
            "payment for another merchant or app refused");
        return Err(AppError::bad_request(
            "merchant_mismatch",
            "the payment is not for this merchant and app",
        ));
    }
    let p = payment::Entity::find()
        .filter(payment::Column::OutTradeNo.eq(tx.out_trade_no.as_str()))
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            tracing::warn!(out_trade_no = %tx.out_trade_no, source, "payment for an unknown order");
            AppError::not_found("order")
        })?;
    if tx.trade_state != "SUCCESS" {
        return Ok(Applied::NotPaid);
    }
    match &tx.amount {
        Some(a) if a.total == p.amount && a.currency == "CNY" => {}
        other => {
            tracing::warn!(out_trade_no = %tx.out_trade_no, expected = p.amount, reported = ?other.as_ref().map(|a| (a.total, &a.currency)),
                source, "payment amount does not match the order: refused");
            return Err(AppError::bad_request(
                "amount_mismatch",
                "the paid amount or currency does not match the order",
            ));
        }
    }
    let now = util::now();
    // Read before the transaction (outside the writer slot): the order's transitions below are conditional on
    // the status read here, so a change in between makes them fail and the whole notification roll back (and
    // WeChat deliver it again), never apply to a stale order.
    let o = orders::find(&state.db, p.order_id).await?;
    let _turn = state.write_gate.enter().await;
    let txn = state.db.begin().await?;
    // The guard of exactly-once: only the first report flips the payment to paid (write first).
    let res = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Paid))
        .col_expr(
            payment::Column::TransactionId,
            Expr::value(tx.transaction_id.clone()),
        )
        .col_expr(
            payment::Column::PayerOpenid,
            Expr::value(tx.payer.as_ref().map(|p| p.openid.clone())),
        )
        .col_expr(payment::Column::PaidAt, Expr::value(now))
        .col_expr(
            payment::Column::QueryAfter,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(p.id))
        .filter(payment::Column::Status.ne(PaymentStatus::Paid))
        .exec(&txn)
        .await?;
    if res.rows_affected == 0 {
        return Ok(Applied::AlreadyApplied);
    }
    let mut after = AfterCommit::default();
    let applied = match o.status {
        OrderStatus::PendingPayment => {
            let done = orders::transition_in(
                &txn,
                &o,
                OrderTransition::Pay,
                &Actor::System,
                Some(source),
                |q| q,
            )
            .await?;
            after.deliveries.push(
                orders::announce(
                    &txn,
                    &done,
                    Announcement::Changed(OrderTransition::Pay, None),
                )
                .await?,
            );
            Applied::Paid
        }
        OrderStatus::Cancelled => {
            tracing::warn!(order_id = o.id, out_trade_no = %p.out_trade_no, "payment arrived for a cancelled order: refunding it");
            after
                .refunds
                .push(super::refunds::create_in(&txn, &o, p.amount, "订单已取消，自动退款").await?);
            orders::record_event(
                &txn,
                o.id,
                &Actor::System,
                Some(o.status),
                o.status,
                Some("payment arrived after cancellation; refunded automatically"),
            )
            .await?;
            after
                .deliveries
                .push(orders::announce(&txn, &o, Announcement::LatePaymentRefunded).await?);
            Applied::RefundedLate
        }
        other => {
            tracing::error!(
                order_id = o.id,
                status = other.as_str(),
                "payment reported for an order that is past payment"
            );
            Applied::AlreadyApplied
        }
    };
    txn.commit().await?;
    after.run(state);
    Ok(applied)
}

/// `POST /orders/{id}/sync-payment` (after `requestPayment:ok`, which proves nothing): asks WeChat and applies
/// a payment it confirms. Returns the order as it is afterwards.
pub async fn sync(state: &AppState, user_id: i64, order_id: i64) -> AppResult<order::Model> {
    let o = orders::visible(&state.db, order_id, user_id).await?;
    if o.status == OrderStatus::PendingPayment
        && let Some(p) = of_order(&state.db, o.id).await?
        && p.prepaid_at.is_some()
    {
        query_and_apply(state, &p, "query").await?;
    }
    orders::find(&state.db, order_id).await
}

/// Asks WeChat about the payment's order and applies what it reports, as a notification would (exactly once,
/// refunding a payment that arrives for a cancelled order). `None`: WeChat has no such order (no prepay was
/// ever made, or it was never created).
pub async fn query_and_apply(
    state: &AppState,
    p: &payment::Model,
    source: &str,
) -> AppResult<Option<Applied>> {
    match state.pay.query_order(&p.out_trade_no).await {
        Ok(tx) => Ok(Some(apply_transaction(state, &tx, source).await?)),
        Err(e) if super::not_found(&e) => Ok(None),
        Err(e) => Err(pay_error("query", &e)),
    }
}

/// Closes the WeChat order of an unpaid order before it is cancelled, so the buyer can no longer pay it. When
/// WeChat says it was paid meanwhile, the payment is applied and the answer is 409 (`current_status` `paid`).
pub async fn close_before_cancel(state: &AppState, o: &order::Model) -> AppResult<()> {
    let Some(p) = of_order(&state.db, o.id).await? else {
        return Ok(());
    };
    // Never asked WeChat for a prepay: there is no WeChat order to close.
    if p.prepaid_at.is_none() || p.status != PaymentStatus::Unpaid {
        return Ok(());
    }
    let close_err = match state.pay.close_order(&p.out_trade_no).await {
        Ok(()) => return Ok(()),
        Err(e) if super::not_found(&e) => return Ok(()),
        Err(e) => e,
    };
    // Closing failed: paid meanwhile, or a hiccup. Ask.
    match state.pay.query_order(&p.out_trade_no).await {
        Ok(tx) if tx.trade_state == "SUCCESS" => {
            apply_transaction(state, &tx, "query while closing").await?;
            Err(orders::refused(OrderStatus::Paid, OrderTransition::Cancel))
        }
        Ok(tx) if tx.trade_state == "CLOSED" => Ok(()),
        Ok(_) => Err(pay_error("close", &close_err)),
        Err(e) => Err(pay_error("query", &e)),
    }
}

/// Sweep: unpaid WeChat orders whose notification is overdue are queried (each at most once per
/// `PAYMENT_QUERY_AFTER_SECONDS`, claimed with a conditional update so instances do not duplicate the work).
pub async fn query_overdue(state: &AppState) -> AppResult<u64> {
    let now = util::now();
    let due = payment::Entity::find()
        .filter(payment::Column::Status.eq(PaymentStatus::Unpaid))
        .filter(payment::Column::QueryAfter.lte(now))
        .limit(100)
        .all(&state.db)
        .await?;
    let next = now + settings::chrono(settings::payment_query_after(state));
    let mut paid = 0;
    for p in due {
        let claimed = payment::Entity::update_many()
            .col_expr(payment::Column::QueryAfter, Expr::value(next))
            .filter(payment::Column::Id.eq(p.id))
            .filter(payment::Column::Status.eq(PaymentStatus::Unpaid))
            .filter(payment::Column::QueryAfter.lte(now))
            .exec(&state.db)
            .await?
            .rows_affected
            == 1;
        if !claimed {
            continue;
        }
        match state.pay.query_order(&p.out_trade_no).await {
            Ok(tx) => match apply_transaction(state, &tx, "overdue query").await {
                Ok(Applied::Paid | Applied::RefundedLate) => paid += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(payment_id = p.id, error = %e, "overdue query not applied")
                }
            },
            Err(e) if super::not_found(&e) => {}
            Err(e) => tracing::warn!(payment_id = p.id, error = %e, "overdue payment query failed"),
        }
    }
    Ok(paid)
}
