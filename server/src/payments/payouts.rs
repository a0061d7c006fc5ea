//! The seller's payout through WeChat Pay merchant transfer bills (商家转账): ready when the order completes,
//! a transfer bill requested when the seller collects it, confirmed by the seller in the Mini Program
//! (`wx.requestMerchantTransfer`), finished by the `MCHTRANSFER.BILL.FINISHED` notification or a query.
//!
//! One bill number at a time per order. An answer that may or may not have created a bill (timeout, 5xx) leaves
//! the payout `uncertain`, and the next step is always a query of that same number — never a second bill. Only
//! a bill WeChat reports `FAIL` or `CANCELLED` (e.g. the seller never confirmed) is replaced by a new number.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait, sea_query::Expr,
};

use super::{
    backoff,
    model::{BillOutcome, PayoutStatus, payout},
};
use crate::{
    error::{AppError, AppResult},
    notifications::service::notify,
    orders::{
        model::{OrderStatus, OrderTransition, PaymentMethod, order, platform_fee},
        service::{self as orders, Actor, Announcement},
    },
    state::AppState,
    users::model::user,
    util,
    wechat::pay::{TransferBill, TransferRequest},
};

fn new_bill_no() -> String {
    super::merchant_no("PO", 26)
}

/// Records what the seller of a just-completed order is owed: `net` fen less the platform fee (in the
/// completion's transaction).
pub async fn create_in(
    txn: &impl ConnectionTrait,
    o: &order::Model,
    net: i64,
    fee_bps: u32,
) -> AppResult<()> {
    let fee = platform_fee(net, fee_bps);
    let now = util::now();
    payout::Entity::insert(payout::ActiveModel {
        order_id: Set(o.id),
        seller_id: Set(o.seller_id),
        out_bill_no: Set(new_bill_no()),
        attempt: Set(1),
        amount: Set(net - fee),
        fee: Set(fee),
        status: Set(PayoutStatus::Ready),
        transfer_bill_no: Set(None),
        package_info: Set(None),
        fail_reason: Set(None),
        attempts: Set(0),
        next_attempt_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
        succeeded_at: Set(None),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The payouts of these orders.
pub async fn of_orders(
    db: &impl ConnectionTrait,
    order_ids: &[i64],
) -> AppResult<Vec<payout::Model>> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(payout::Entity::find()
        .filter(payout::Column::OrderId.is_in(order_ids.iter().copied()))
        .all(db)
        .await?)
}

/// Whether the seller can (try to) collect it now.
pub fn collectable(p: &payout::Model) -> bool {
    matches!(
        p.status,
        PayoutStatus::Ready | PayoutStatus::Uncertain | PayoutStatus::WaitUserConfirm
    )
}

/// What `wx.requestMerchantTransfer` needs, with the payout it is for.
#[derive(Debug, Clone)]
pub struct Collect {
    pub payout: payout::Model,
    pub mch_id: String,
    pub app_id: String,
    pub package: String,
    pub open_id: String,
}

async fn reload(db: &impl ConnectionTrait, id: i64) -> AppResult<payout::Model> {
    payout::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("payout"))
}

/// `POST /orders/{id}/payout`: the seller collects the payout of a completed WeChat Pay order. Requests the
/// transfer bill if there is none yet (or resolves an uncertain one by querying it first) and returns what the
/// Mini Program passes to `wx.requestMerchantTransfer`.
pub async fn collect(state: &AppState, seller_id: i64, order_id: i64) -> AppResult<Collect> {
    let db = &state.db;
    let o = orders::visible(db, order_id, seller_id).await?;
    if o.seller_id != seller_id {
        return Err(AppError::forbidden(
            "not_allowed",
            "only the seller collects the payout",
        ));
    }
    if o.payment_method != PaymentMethod::WechatPay {
        return Err(AppError::conflict(
            "no_payout",
            "offline orders are paid at the meet-up; there is nothing to collect",
        ));
    }
    let Some(mut p) = payout::Entity::find()
        .filter(payout::Column::OrderId.eq(o.id))
        .one(db)
        .await?
    else {
        return Err(AppError::InvalidTransition {
            current: o.status.as_str(),
            message: "the payout is ready once the order is completed".into(),
        });
    };
    let seller = user::Entity::find_by_id(seller_id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    // A few steps at most: resolve uncertainty, request the bill, read what WeChat said.
    for _ in 0..4 {
        match p.status {
            PayoutStatus::Succeeded => {
                return Err(AppError::conflict(
                    "payout_settled",
                    "the payout is already in your WeChat balance",
                ));
            }
            PayoutStatus::Processing => {
                return Err(AppError::conflict(
                    "payout_in_progress",
                    "the payout is confirmed and on its way to your WeChat balance",
                ));
            }
            PayoutStatus::WaitUserConfirm => {
                if let Some(package) = p.package_info.clone() {
                    return Ok(Collect {
                        payout: p,
                        mch_id: state.pay.mchid().to_string(),
                        app_id: state.pay.appid().to_string(),
                        package,
                        open_id: seller.openid,
                    });
                }
                // A bill without its package (should not happen): ask WeChat.
                resolve(state, &p).await?;
            }
            PayoutStatus::Uncertain => resolve(state, &p).await?,
            PayoutStatus::Ready => request_bill(state, &p, &seller.openid).await?,
        }
        p = reload(db, p.id).await?;
    }
    Err(AppError::unavailable(
        "payout_pending",
        "WeChat Pay has not settled the transfer bill yet; try again shortly",
    ))
}

/// Requests the transfer bill of a ready payout. The payout is marked `uncertain` BEFORE the call (claiming it
/// at the same time), so a crash or timeout mid-call leads to a query, never to a second bill.
async fn request_bill(state: &AppState, p: &payout::Model, openid: &str) -> AppResult<()> {
    let now = util::now();
    let claimed = payout::Entity::update_many()
        .col_expr(payout::Column::Status, Expr::value(PayoutStatus::Uncertain))
        .col_expr(payout::Column::Attempts, Expr::value(p.attempts + 1))
        .col_expr(payout::Column::NextAttemptAt, Expr::value(now + backoff(1)))
        .col_expr(payout::Column::UpdatedAt, Expr::value(now))
        .filter(payout::Column::Id.eq(p.id))
        .filter(payout::Column::Status.eq(PayoutStatus::Ready))
        .filter(payout::Column::OutBillNo.eq(p.out_bill_no.as_str()))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    if !claimed {
        return Ok(());
    }
    let req = TransferRequest {
        out_bill_no: p.out_bill_no.clone(),
        openid: openid.to_string(),
        amount_fen: p.amount,
        remark: format!("校园二手货款 订单{}", p.order_id),
    };
    match state.pay.create_transfer(&req).await {
        Ok(bill) => apply_bill(state, &bill).await,
        Err(e) if super::definitely_refused(&e) => {
            // WeChat refused outright: no bill exists under this number; it may be requested again.
            payout::Entity::update_many()
                .col_expr(payout::Column::Status, Expr::value(PayoutStatus::Ready))
                .col_expr(payout::Column::FailReason, Expr::value(e.to_string()))
                .col_expr(payout::Column::UpdatedAt, Expr::value(util::now()))
                .filter(payout::Column::Id.eq(p.id))
                .filter(payout::Column::Status.eq(PayoutStatus::Uncertain))
                .filter(payout::Column::OutBillNo.eq(p.out_bill_no.as_str()))
                .exec(&state.db)
                .await?;
            Err(super::pay_error("transfer", &e))
        }
        Err(e) => {
            tracing::warn!(payout_id = p.id, out_bill_no = %p.out_bill_no, error = %e,
                "transfer bill outcome unknown: it will be queried before anything else");
            Err(super::pay_error("transfer", &e))
        }
    }
}

/// Asks WeChat about the current bill and applies the answer; a bill WeChat does not know (after an uncertain
/// request) makes the payout ready again under the same number.
async fn resolve(state: &AppState, p: &payout::Model) -> AppResult<()> {
    match state.pay.query_transfer(&p.out_bill_no).await {
        Ok(bill) => apply_bill(state, &bill).await,
        Err(e) if super::not_found(&e) && p.status == PayoutStatus::Uncertain => {
            payout::Entity::update_many()
                .col_expr(payout::Column::Status, Expr::value(PayoutStatus::Ready))
                .col_expr(payout::Column::UpdatedAt, Expr::value(util::now()))
                .filter(payout::Column::Id.eq(p.id))
                .filter(payout::Column::Status.eq(PayoutStatus::Uncertain))
                .filter(payout::Column::OutBillNo.eq(p.out_bill_no.as_str()))
                .exec(&state.db)
                .await?;
            Ok(())
        }
        Err(e) => Err(super::pay_error("transfer query", &e)),
    }
}

/// Applies a transfer bill state WeChat reported (answer, query, or a verified `MCHTRANSFER.BILL.FINISHED`
/// notification). `SUCCESS` settles the order, once.
pub async fn apply_bill(state: &AppState, bill: &TransferBill) -> AppResult<()> {
    let Some(p) = payout::Entity::find()
        .filter(payout::Column::OutBillNo.eq(bill.out_bill_no.as_str()))
        .one(&state.db)
        .await?
    else {
        tracing::warn!(out_bill_no = %bill.out_bill_no, state = %bill.state, "transfer report for an unknown (or replaced) bill");
        return Err(AppError::not_found("transfer bill"));
    };
    let Some(outcome) = BillOutcome::from_wechat(&bill.state) else {
        tracing::warn!(state = %bill.state, "unknown transfer bill state ignored");
        return Ok(());
    };
    if p.status == PayoutStatus::Succeeded {
        return Ok(());
    }
    let now = util::now();
    let this_bill = |q: sea_orm::UpdateMany<payout::Entity>| {
        q.filter(payout::Column::Id.eq(p.id))
            .filter(payout::Column::OutBillNo.eq(bill.out_bill_no.as_str()))
            .filter(payout::Column::Status.ne(PayoutStatus::Succeeded))
    };
    match outcome {
        BillOutcome::WaitUserConfirm | BillOutcome::Processing => {
            let status = if outcome == BillOutcome::WaitUserConfirm {
                PayoutStatus::WaitUserConfirm
            } else {
                PayoutStatus::Processing
            };
            let mut q = payout::Entity::update_many()
                .col_expr(payout::Column::Status, Expr::value(status))
                .col_expr(payout::Column::NextAttemptAt, Expr::value(now + backoff(6)))
                .col_expr(payout::Column::UpdatedAt, Expr::value(now));
            if bill.transfer_bill_no.is_some() {
                q = q.col_expr(
                    payout::Column::TransferBillNo,
                    Expr::value(bill.transfer_bill_no.clone()),
                );
            }
            if bill.package_info.is_some() {
                q = q.col_expr(
                    payout::Column::PackageInfo,
                    Expr::value(bill.package_info.clone()),
                );
            }
            this_bill(q).exec(&state.db).await?;
            Ok(())
        }
        BillOutcome::Dead => {
            tracing::warn!(payout_id = p.id, out_bill_no = %p.out_bill_no, state = %bill.state, reason = ?bill.fail_reason,
                "transfer bill failed or was cancelled: the payout gets a new bill number");
            let res = this_bill(
                payout::Entity::update_many()
                    .col_expr(payout::Column::Status, Expr::value(PayoutStatus::Ready))
                    .col_expr(payout::Column::OutBillNo, Expr::value(new_bill_no()))
                    .col_expr(payout::Column::Attempt, Expr::value(p.attempt + 1))
                    .col_expr(
                        payout::Column::TransferBillNo,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(
                        payout::Column::PackageInfo,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(
                        payout::Column::FailReason,
                        Expr::value(
                            bill.fail_reason
                                .clone()
                                .unwrap_or_else(|| bill.state.clone()),
                        ),
                    )
                    .col_expr(payout::Column::UpdatedAt, Expr::value(now)),
            )
            .exec(&state.db)
            .await?;
            if res.rows_affected == 1 {
                notify(
                    &state.db,
                    p.seller_id,
                    "payout_ready",
                    "货款待领取",
                    "上一笔转账未完成，请重新打开订单领取货款。",
                    Some("order"),
                    Some(p.order_id),
                )
                .await?;
            }
            Ok(())
        }
        BillOutcome::Succeeded => {
            let txn = state.db.begin().await?;
            let res = this_bill(
                payout::Entity::update_many()
                    .col_expr(payout::Column::Status, Expr::value(PayoutStatus::Succeeded))
                    .col_expr(payout::Column::SucceededAt, Expr::value(now))
                    .col_expr(
                        payout::Column::PackageInfo,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(payout::Column::UpdatedAt, Expr::value(now)),
            )
            .exec(&txn)
            .await?;
            if res.rows_affected == 0 {
                return Ok(());
            }
            let o = orders::find(&txn, p.order_id).await?;
            let mut delivery = None;
            if o.status == OrderStatus::Completed {
                let done = orders::transition_in(
                    &txn,
                    &o,
                    OrderTransition::Settle,
                    &Actor::System,
                    Some("transfer bill finished"),
                    |q| q,
                )
                .await?;
                delivery = Some(
                    orders::announce(
                        &txn,
                        &done,
                        Announcement::Changed(OrderTransition::Settle, None),
                    )
                    .await?,
                );
            }
            txn.commit().await?;
            if let Some(d) = delivery {
                crate::chat::cards::deliver(state, d);
            }
            Ok(())
        }
    }
}

/// Sweep: queries uncertain bills (before anything else may happen to them) and unfinished ones whose
/// notification may have been lost.
pub async fn reconcile_due(state: &AppState) -> AppResult<u64> {
    let now = util::now();
    let due = payout::Entity::find()
        .filter(payout::Column::Status.is_in([
            PayoutStatus::Uncertain,
            PayoutStatus::WaitUserConfirm,
            PayoutStatus::Processing,
        ]))
        .filter(payout::Column::NextAttemptAt.lte(now))
        .limit(100)
        .all(&state.db)
        .await?;
    let mut n = 0;
    for p in due {
        match reconcile_one(state, &p).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(payout_id = p.id, error = %e, "transfer bill query failed"),
        }
    }
    Ok(n)
}

/// One step for one payout as the sweep and the operators' retry take it: claims it (conditional update on its
/// attempt count and status, so concurrent workers never overlap), then asks WeChat about its current bill and
/// applies the answer — an uncertain request is always resolved by this query, never by a second bill. Returns
/// false when another worker claimed it first.
pub async fn reconcile_one(state: &AppState, p: &payout::Model) -> AppResult<bool> {
    let now = util::now();
    let claimed = payout::Entity::update_many()
        .col_expr(payout::Column::Attempts, Expr::value(p.attempts + 1))
        .col_expr(
            payout::Column::NextAttemptAt,
            Expr::value(now + backoff(p.attempts + 1)),
        )
        .filter(payout::Column::Id.eq(p.id))
        .filter(payout::Column::Attempts.eq(p.attempts))
        .filter(payout::Column::Status.eq(p.status))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    if !claimed {
        return Ok(false);
    }
    resolve(state, p).await?;
    Ok(true)
}

/// Whether an operator's retry has something to do: a bill whose outcome is unknown or unfinished (queried at
/// once). A `ready` payout waits for the seller to collect it in the Mini Program (409 `payout_awaits_seller`);
/// a paid-out one is done (409 `payout_settled`).
pub fn check_retryable(p: &payout::Model) -> AppResult<()> {
    match p.status {
        PayoutStatus::Uncertain | PayoutStatus::WaitUserConfirm | PayoutStatus::Processing => {
            Ok(())
        }
        PayoutStatus::Ready => Err(AppError::conflict(
            "payout_awaits_seller",
            "no transfer bill is open: the seller collects the payout in the Mini Program (a failed bill was \
             already replaced)",
        )),
        PayoutStatus::Succeeded => Err(AppError::conflict(
            "payout_settled",
            "the payout is already in the seller's WeChat balance",
        )),
    }
}

/// The payout of an order, if it has one.
pub async fn of_order(
    db: &impl ConnectionTrait,
    order_id: i64,
) -> AppResult<Option<payout::Model>> {
    Ok(payout::Entity::find()
        .filter(payout::Column::OrderId.eq(order_id))
        .one(db)
        .await?)
}
