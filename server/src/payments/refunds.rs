//! Refunds: recorded in the transaction that decides them, submitted to WeChat after the commit with an
//! `out_refund_no` that is the same on every retry (so WeChat refunds at most once), advanced by refund
//! notifications, and reconciled by the sweep (resubmit pending ones, query processing ones).

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait, sea_query::Expr,
};

use super::{
    backoff,
    model::{RefundStatus, payment, refund},
};
use crate::{
    error::{AppError, AppResult},
    notifications::service::notify,
    orders::{model::order, service::yuan},
    state::AppState,
    util,
    wechat::pay::{Refund, RefundRequest},
};

/// At most `max` bytes of `s`, cut at a character boundary (WeChat counts the refund reason in bytes).
fn clip_bytes(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Records a refund of `fen` for order `o` in the caller's transaction; returns its id. Submit it after the
/// commit with [`submit`] (the sweep does it too).
pub async fn create_in(
    txn: &impl ConnectionTrait,
    o: &order::Model,
    fen: i64,
    reason: &str,
) -> AppResult<i64> {
    let now = util::now();
    let res = refund::Entity::insert(refund::ActiveModel {
        order_id: Set(o.id),
        out_refund_no: Set(super::merchant_no("RF", 24)),
        amount: Set(fen),
        reason: Set(clip_bytes(reason, 80)),
        status: Set(RefundStatus::Pending),
        refund_id: Set(None),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        succeeded_at: Set(None),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(res.last_insert_id)
}

/// The refunds of these orders, oldest first.
pub async fn of_orders(
    db: &impl ConnectionTrait,
    order_ids: &[i64],
) -> AppResult<Vec<refund::Model>> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(refund::Entity::find()
        .filter(refund::Column::OrderId.is_in(order_ids.iter().copied()))
        .all(db)
        .await?)
}

/// Claims a due refund for one attempt (conditional update on its attempt count), so concurrent sweeps and
/// the after-commit submission never act on the same attempt twice. Returns the claimed row.
async fn claim(
    state: &AppState,
    id: i64,
    statuses: &[RefundStatus],
) -> AppResult<Option<refund::Model>> {
    let now = util::now();
    let Some(r) = refund::Entity::find_by_id(id).one(&state.db).await? else {
        return Ok(None);
    };
    if !statuses.contains(&r.status) || r.next_attempt_at > now {
        return Ok(None);
    }
    let res = refund::Entity::update_many()
        .col_expr(refund::Column::Attempts, Expr::value(r.attempts + 1))
        .col_expr(
            refund::Column::NextAttemptAt,
            Expr::value(now + backoff(r.attempts + 1)),
        )
        .filter(refund::Column::Id.eq(id))
        .filter(refund::Column::Status.eq(r.status))
        .filter(refund::Column::Attempts.eq(r.attempts))
        .exec(&state.db)
        .await?;
    Ok((res.rows_affected == 1).then_some(r))
}

/// Sends a pending refund to WeChat (same `out_refund_no` as any earlier attempt) and applies the answer. A
/// failure leaves it pending for the sweep. After an attempt whose outcome is unknown, WeChat is asked first
/// (see [`reconcile_one`]).
pub async fn submit(state: &AppState, refund_id: i64) -> AppResult<()> {
    reconcile_one(state, refund_id).await.map(|_| ())
}

/// One step for one due refund, as the sweep and the operators' retry take it: claims it (so concurrent
/// attempts never overlap), then
/// - a pending refund never sent is sent;
/// - a pending refund sent before (the answer was lost or refused) is first queried under its
///   `out_refund_no`: if WeChat has it, its status is applied and it is not sent again; only if WeChat does not
///   know it is it sent (with the same number);
/// - a processing or abnormal refund is queried and its status applied.
///
/// Returns false when the refund was not due (or another worker claimed it).
pub async fn reconcile_one(state: &AppState, refund_id: i64) -> AppResult<bool> {
    let Some(r) = claim(
        state,
        refund_id,
        &[
            RefundStatus::Pending,
            RefundStatus::Processing,
            RefundStatus::Abnormal,
        ],
    )
    .await?
    else {
        return Ok(false);
    };
    if r.status == RefundStatus::Pending && r.attempts == 0 {
        send(state, &r).await?;
        return Ok(true);
    }
    match state.pay.query_refund(&r.out_refund_no).await {
        Ok(answer) => apply(state, &answer).await?,
        Err(e) if super::not_found(&e) && r.status == RefundStatus::Pending => {
            send(state, &r).await?
        }
        Err(e) => {
            tracing::warn!(refund_id = r.id, error = %e, "refund query failed");
            return Err(super::pay_error("refund query", &e));
        }
    }
    Ok(true)
}

/// Makes these refunds due now (an operator's retry), in the caller's transaction; returns how many.
pub async fn make_due_in(txn: &impl ConnectionTrait, refund_ids: &[i64]) -> AppResult<u64> {
    if refund_ids.is_empty() {
        return Ok(0);
    }
    Ok(refund::Entity::update_many()
        .col_expr(refund::Column::NextAttemptAt, Expr::value(util::now()))
        .filter(refund::Column::Id.is_in(refund_ids.iter().copied()))
        .filter(refund::Column::Status.is_in([
            RefundStatus::Pending,
            RefundStatus::Processing,
            RefundStatus::Abnormal,
        ]))
        .exec(txn)
        .await?
        .rows_affected)
}

/// Sends a claimed refund and applies WeChat's answer; a failure is kept in `last_error`.
async fn send(state: &AppState, r: &refund::Model) -> AppResult<()> {
    let p = payment::Entity::find()
        .filter(payment::Column::OrderId.eq(r.order_id))
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("refund {} has no payment", r.id)))?;
    let req = RefundRequest {
        out_trade_no: p.out_trade_no.clone(),
        out_refund_no: r.out_refund_no.clone(),
        reason: Some(r.reason.clone()).filter(|s| !s.is_empty()),
        refund_fen: r.amount,
        total_fen: p.amount,
    };
    match state.pay.refund(&req).await {
        Ok(answer) => apply(state, &answer).await,
        Err(e) => {
            tracing::warn!(refund_id = r.id, out_refund_no = %r.out_refund_no, error = %e, "refund not accepted yet");
            refund::Entity::update_many()
                .col_expr(refund::Column::LastError, Expr::value(e.to_string()))
                .col_expr(refund::Column::UpdatedAt, Expr::value(util::now()))
                .filter(refund::Column::Id.eq(r.id))
                .exec(&state.db)
                .await?;
            Err(super::pay_error("refund", &e))
        }
    }
}

/// Applies a refund status WeChat reported (API answer, query, or a verified refund notification). Final
/// statuses never change again; the buyer hears when the money is back.
pub async fn apply(state: &AppState, answer: &Refund) -> AppResult<()> {
    let Some(r) = refund::Entity::find()
        .filter(refund::Column::OutRefundNo.eq(answer.out_refund_no.as_str()))
        .one(&state.db)
        .await?
    else {
        tracing::warn!(out_refund_no = %answer.out_refund_no, "refund report for an unknown refund");
        return Err(AppError::not_found("refund"));
    };
    let Some(status) = RefundStatus::from_wechat(&answer.status) else {
        tracing::warn!(status = %answer.status, "unknown refund status ignored");
        return Ok(());
    };
    if r.status.is_final() || r.status == status && answer.refund_id == r.refund_id {
        return Ok(());
    }
    let now = util::now();
    let txn = state.db.begin().await?;
    let mut q = refund::Entity::update_many()
        .col_expr(refund::Column::Status, Expr::value(status))
        .col_expr(refund::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            refund::Column::LastError,
            Expr::value(Option::<String>::None),
        );
    if answer.refund_id.is_some() {
        q = q.col_expr(
            refund::Column::RefundId,
            Expr::value(answer.refund_id.clone()),
        );
    }
    if status == RefundStatus::Succeeded {
        q = q.col_expr(refund::Column::SucceededAt, Expr::value(now));
    }
    if status == RefundStatus::Processing {
        // Query it if no notification comes.
        q = q.col_expr(refund::Column::NextAttemptAt, Expr::value(now + backoff(2)));
    }
    let res = q
        .filter(refund::Column::Id.eq(r.id))
        .filter(refund::Column::Status.eq(r.status))
        .exec(&txn)
        .await?;
    if res.rows_affected == 1 {
        match status {
            RefundStatus::Succeeded => {
                if let Some(o) = crate::orders::model::order::Entity::find_by_id(r.order_id)
                    .one(&txn)
                    .await?
                {
                    notify(
                        &txn,
                        o.buyer_id,
                        "refund_succeeded",
                        "退款已到账",
                        &format!("「{}」的退款 {} 已原路退回。", o.title, yuan(r.amount)),
                        Some("order"),
                        Some(o.id),
                    )
                    .await?;
                }
            }
            RefundStatus::Closed | RefundStatus::Abnormal => {
                tracing::error!(refund_id = r.id, out_refund_no = %r.out_refund_no, status = ?status,
                    "WeChat could not complete a refund: an operator must look");
            }
            _ => {}
        }
    }
    txn.commit().await?;
    Ok(())
}

/// Sweep: resubmits pending refunds and queries processing (and abnormal) ones whose time has come.
pub async fn retry_due(state: &AppState) -> AppResult<u64> {
    let now = util::now();
    let due = refund::Entity::find()
        .filter(refund::Column::Status.is_in([
            RefundStatus::Pending,
            RefundStatus::Processing,
            RefundStatus::Abnormal,
        ]))
        .filter(refund::Column::NextAttemptAt.lte(now))
        .limit(100)
        .all(&state.db)
        .await?;
    let mut n = 0;
    for r in due {
        match reconcile_one(state, r.id).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(refund_id = r.id, error = %e, "refund retry failed"),
        }
    }
    Ok(n)
}
