//! Orders and disputes as support operators see them: any order with its event log and payment records
//! (payment, refunds, payout), dispute decisions, and the levers for money stuck between us and WeChat Pay —
//! retrying a refund or a payout, querying a payment. The rules stay in `crate::orders::service` and
//! `crate::payments`; every handler here only checks scope, opens the audit row and calls them.
//!
//! Deciding a dispute writes its audit row in the decision's own transaction. The three WeChat levers act on
//! WeChat Pay, outside any transaction of ours: their audit row is committed first (with what the records looked
//! like and, for refunds, the refunds made due now), then WeChat is called and the answer applied as the
//! sweeps would; the response shows the records afterwards.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, sea_query::Query as SqlQuery,
};

use super::{
    AdminTags, audit,
    auth::{Need, perm},
};
use crate::{
    error::{AppError, AppResult},
    listings::model::listing,
    orders::{
        model::{OrderStatus, PaymentMethod, order, order_event},
        service::{self as orders, Decision},
    },
    payments::{
        self,
        model::{PaymentStatus, PayoutStatus, RefundStatus, payment, payout, refund},
        service::Applied,
    },
    state::AppState,
};

/// An order as operators see it (the hand-over code is never shown).
#[derive(Debug, Clone, Object)]
pub struct AdminOrder {
    pub id: i64,
    pub listing_id: i64,
    /// The listing's school.
    pub school_id: Option<i64>,
    pub buyer_id: i64,
    pub seller_id: i64,
    /// The listing's title when the order was placed.
    pub title: String,
    /// Fen.
    pub amount: i64,
    pub payment_method: PaymentMethod,
    pub status: OrderStatus,
    /// The buyer's reason for asking for a refund.
    pub refund_reason: Option<String>,
    /// Payment deadline of a WeChat Pay order.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub settled_at: Option<DateTime<Utc>>,
}

fn admin_order(o: &order::Model, school_id: Option<i64>) -> AdminOrder {
    AdminOrder {
        id: o.id,
        listing_id: o.listing_id,
        school_id,
        buyer_id: o.buyer_id,
        seller_id: o.seller_id,
        title: o.title.clone(),
        amount: o.amount,
        payment_method: o.payment_method,
        status: o.status,
        refund_reason: o.refund_reason.clone(),
        expires_at: o.expires_at,
        created_at: o.created_at,
        updated_at: o.updated_at,
        paid_at: o.paid_at,
        completed_at: o.completed_at,
        cancelled_at: o.cancelled_at,
        settled_at: o.settled_at,
    }
}

/// A page of orders, newest first.
#[derive(Debug, Clone, Object)]
pub struct AdminOrderPage {
    pub items: Vec<AdminOrder>,
    /// Pass as `before_id` for the next page; absent on the last page.
    pub next_before_id: Option<i64>,
}

/// One line of an order's event log.
#[derive(Debug, Clone, Object)]
pub struct AdminOrderEvent {
    pub id: i64,
    /// `buyer`, `seller`, `system` or `operator`.
    pub actor: String,
    pub actor_user_id: Option<i64>,
    /// The operator's username, for operator decisions.
    pub operator: Option<String>,
    /// Absent for the creation of the order.
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// The WeChat Pay payment of an order.
#[derive(Debug, Clone, Object)]
pub struct AdminPayment {
    /// Our number of the WeChat order.
    pub out_trade_no: String,
    /// Fen.
    pub amount: i64,
    /// `unpaid`, `paid` or `closed`.
    pub status: String,
    /// When the buyer first asked to pay (from then on WeChat may have the order).
    pub prepaid_at: Option<DateTime<Utc>>,
    /// WeChat's number of the payment.
    pub transaction_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    /// When the sweep next asks WeChat about it, while unpaid.
    pub query_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn payment_view(p: &payment::Model) -> AdminPayment {
    AdminPayment {
        out_trade_no: p.out_trade_no.clone(),
        amount: p.amount,
        status: match p.status {
            PaymentStatus::Unpaid => "unpaid",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Closed => "closed",
        }
        .into(),
        prepaid_at: p.prepaid_at,
        transaction_id: p.transaction_id.clone(),
        paid_at: p.paid_at,
        query_after: p.query_after,
        created_at: p.created_at,
    }
}

/// A refund of an order.
#[derive(Debug, Clone, Object)]
pub struct AdminRefund {
    pub id: i64,
    /// Our number of the refund (the same on every retry).
    pub out_refund_no: String,
    /// Fen.
    pub amount: i64,
    pub reason: String,
    pub status: RefundStatus,
    /// WeChat's number of the refund, once accepted.
    pub refund_id: Option<String>,
    /// Attempts so far (submissions and queries).
    pub attempts: i32,
    /// When the sweep next submits or queries it.
    pub next_attempt_at: DateTime<Utc>,
    /// What went wrong last, until WeChat accepts it.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
}

fn refund_view(r: &refund::Model) -> AdminRefund {
    AdminRefund {
        id: r.id,
        out_refund_no: r.out_refund_no.clone(),
        amount: r.amount,
        reason: r.reason.clone(),
        status: r.status,
        refund_id: r.refund_id.clone(),
        attempts: r.attempts,
        next_attempt_at: r.next_attempt_at,
        last_error: r.last_error.clone(),
        created_at: r.created_at,
        succeeded_at: r.succeeded_at,
    }
}

/// The seller's payout of a completed WeChat Pay order.
#[derive(Debug, Clone, Object)]
pub struct AdminPayout {
    pub id: i64,
    /// The current transfer bill's number.
    pub out_bill_no: String,
    /// 1 for the first bill, +1 for each replacement of a failed one.
    pub attempt: i32,
    /// Fen the seller receives.
    pub amount: i64,
    /// Fen the platform keeps.
    pub fee: i64,
    pub status: PayoutStatus,
    pub transfer_bill_no: Option<String>,
    /// Why the last bill failed, if one did.
    pub fail_reason: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
}

fn payout_view(p: &payout::Model) -> AdminPayout {
    AdminPayout {
        id: p.id,
        out_bill_no: p.out_bill_no.clone(),
        attempt: p.attempt,
        amount: p.amount,
        fee: p.fee,
        status: p.status,
        transfer_bill_no: p.transfer_bill_no.clone(),
        fail_reason: p.fail_reason.clone(),
        attempts: p.attempts,
        next_attempt_at: p.next_attempt_at,
        created_at: p.created_at,
        succeeded_at: p.succeeded_at,
    }
}

/// An order with its event log and payment records.
#[derive(Debug, Clone, Object)]
pub struct AdminOrderDetail {
    pub order: AdminOrder,
    /// Oldest first.
    pub events: Vec<AdminOrderEvent>,
    /// The WeChat Pay payment; absent for offline orders.
    pub payment: Option<AdminPayment>,
    /// Oldest first.
    pub refunds: Vec<AdminRefund>,
    /// The seller's payout, once a WeChat Pay order completed.
    pub payout: Option<AdminPayout>,
}

/// How an operator decides a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "DisputeOutcome", rename_all = "snake_case")]
pub enum DisputeOutcome {
    /// Give the buyer money back: all of it (the order is refunded, the item goes back on sale) or part of it
    /// (`refund_fen`: the deal stands at the lower price and the seller is paid the rest).
    Refund,
    /// The seller is right: the order completes and the seller is paid in full.
    Complete,
}

/// A dispute decision.
#[derive(Debug, Object)]
pub struct DisputeDecisionRequest {
    pub decision: DisputeOutcome,
    /// For `refund`: fen to give back, 1 to the order amount (default: the whole amount). Not allowed with
    /// `complete`.
    pub refund_fen: Option<i64>,
    /// 1–500 characters; both parties read it (in the order's history, the chat card and their inbox).
    pub reason: String,
}

/// What WeChat said about a payment an operator asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "PaymentQueryOutcome", rename_all = "snake_case")]
pub enum PaymentQueryOutcome {
    /// Paid: applied now, the order is `paid`.
    Paid,
    /// Paid, and already applied before (a notification or another query was first).
    AlreadyApplied,
    /// Paid after the order was cancelled: the money is being refunded automatically.
    RefundedLate,
    /// Not paid (yet): nothing changed.
    NotPaid,
    /// WeChat has no such order (the buyer never got as far as paying).
    UnknownToWechat,
}

/// The answer of a payment query.
#[derive(Debug, Clone, Object)]
pub struct PaymentQueryResult {
    pub outcome: PaymentQueryOutcome,
    /// The order afterwards.
    pub detail: AdminOrderDetail,
}

fn page_limit(limit: Option<u64>) -> AppResult<u64> {
    let limit = limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::invalid_field("limit", "must be 1–100"));
    }
    Ok(limit)
}

/// The order `id` and its school, when the operator's schools cover it (403 `outside_school_scope` otherwise).
async fn scoped(
    state: &AppState,
    auth: &Need<perm::Orders>,
    id: i64,
) -> AppResult<(order::Model, Option<i64>)> {
    let o = orders::find(&state.db, id).await?;
    let school = school_of(&state.db, &o).await?;
    auth.school(school)?;
    Ok((o, school))
}

/// Records an operator's request to WeChat Pay in the audit log, committed before WeChat is called: a WeChat
/// call cannot be part of our transaction, and the request is worth recording whatever WeChat answers.
async fn audit_request(
    state: &AppState,
    auth: &Need<perm::Orders>,
    action: &str,
    order_id: i64,
    school: Option<i64>,
    before: &impl poem_openapi::types::ToJSON,
) -> AppResult<()> {
    let txn = state.db.begin().await?;
    let pending = audit::begin(&txn, auth.actor(), action).await?;
    pending
        .finish(
            &txn,
            audit::Record::target("order", order_id)
                .school(school)
                .before_view(before),
        )
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The school of an order: its listing's.
pub(super) async fn school_of(
    db: &impl ConnectionTrait,
    o: &order::Model,
) -> AppResult<Option<i64>> {
    Ok(listing_schools(db, [o.listing_id])
        .await?
        .get(&o.listing_id)
        .copied())
}

/// The school of each of `listing_ids`, in one query (a page of orders or reviews needs them all).
pub(super) async fn listing_schools(
    db: &impl ConnectionTrait,
    listing_ids: impl IntoIterator<Item = i64>,
) -> AppResult<std::collections::HashMap<i64, i64>> {
    let ids: Vec<i64> = listing_ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(listing::Entity::find()
        .select_only()
        .column(listing::Column::Id)
        .column(listing::Column::SchoolId)
        .filter(listing::Column::Id.is_in(ids))
        .into_tuple::<(i64, i64)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

async fn detail(
    state: &AppState,
    o: order::Model,
    school: Option<i64>,
) -> AppResult<AdminOrderDetail> {
    let db = &state.db;
    let events = orders::events(db, o.id).await?;
    let payment = payments::service::of_order(db, o.id).await?;
    let mut refunds = payments::refunds::of_orders(db, &[o.id]).await?;
    refunds.sort_by_key(|r| r.id);
    let payout = payments::payouts::of_order(db, o.id).await?;
    Ok(AdminOrderDetail {
        order: admin_order(&o, school),
        events: events.iter().map(event_view).collect(),
        payment: payment.as_ref().map(payment_view),
        refunds: refunds.iter().map(refund_view).collect(),
        payout: payout.as_ref().map(payout_view),
    })
}

fn event_view(e: &order_event::Model) -> AdminOrderEvent {
    AdminOrderEvent {
        id: e.id,
        actor: e.actor.clone(),
        actor_user_id: e.actor_user_id,
        operator: e.operator.clone(),
        from_status: e.from_status.clone(),
        to_status: e.to_status.clone(),
        reason: e.reason.clone(),
        at: e.created_at,
    }
}

pub struct OrdersApi;

#[OpenApi(tag = "AdminTags::Orders")]
impl OrdersApi {
    /// List orders, newest first, filtered by status, school (the listing's), buyer and seller. Limited to the
    /// operator's schools (or `school`).
    ///
    /// Permission: `orders`.
    #[oai(path = "/v1/orders", method = "get", operation_id = "list_orders")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Orders>,
        status: Query<Option<OrderStatus>>,
        school: Query<Option<i64>>,
        buyer_id: Query<Option<i64>>,
        seller_id: Query<Option<i64>>,
        /// The `next_before_id` of the previous page.
        before_id: Query<Option<i64>>,
        /// 1–100, default 50.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<AdminOrderPage>> {
        let limit = page_limit(limit.0)?;
        let mut q = order::Entity::find();
        if let Some(s) = status.0 {
            q = q.filter(order::Column::Status.eq(s));
        }
        if let Some(b) = buyer_id.0 {
            q = q.filter(order::Column::BuyerId.eq(b));
        }
        if let Some(s) = seller_id.0 {
            q = q.filter(order::Column::SellerId.eq(s));
        }
        if let Some(schools) = auth.school_filter(school.0)? {
            q = q.filter(
                order::Column::ListingId.in_subquery(
                    SqlQuery::select()
                        .column(listing::Column::Id)
                        .from(listing::Entity)
                        .and_where(listing::Column::SchoolId.is_in(schools))
                        .to_owned(),
                ),
            );
        }
        if let Some(b) = before_id.0 {
            q = q.filter(order::Column::Id.lt(b));
        }
        let rows = q
            .order_by_desc(order::Column::Id)
            .limit(limit)
            .all(&state.db)
            .await?;
        let schools = listing_schools(&state.db, rows.iter().map(|o| o.listing_id)).await?;
        let next_before_id = (rows.len() as u64 == limit)
            .then(|| rows.last().map(|o| o.id))
            .flatten();
        Ok(Json(AdminOrderPage {
            items: rows
                .iter()
                .map(|o| admin_order(o, schools.get(&o.listing_id).copied()))
                .collect(),
            next_before_id,
        }))
    }

    /// One order with its event log, its WeChat Pay payment, refunds and the seller's payout.
    ///
    /// Permission: `orders`.
    #[oai(path = "/v1/orders/:id", method = "get", operation_id = "get_order")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Orders>,
        id: Path<i64>,
    ) -> AppResult<Json<AdminOrderDetail>> {
        let (o, school) = scoped(&state, &auth, id.0).await?;
        Ok(Json(detail(&state, o, school).await?))
    }

    /// Decide a dispute (an order the seller refused to refund): refund the buyer in full (the order is
    /// refunded and the item goes back on sale) or in part (`refund_fen`; the deal stands, the seller is paid
    /// the rest), or complete the order for the seller. The reason goes to both parties; a refund is submitted
    /// to WeChat Pay at once (and retried by the sweep). 409 `invalid_transition` when the order is not
    /// disputed (or was decided meanwhile); 422 for a refund outside 1 to the order amount.
    ///
    /// Permission: `orders`.
    #[oai(
        path = "/v1/orders/:id/dispute-decision",
        method = "post",
        operation_id = "decide_dispute"
    )]
    async fn decide(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Orders>,
        id: Path<i64>,
        body: Json<DisputeDecisionRequest>,
    ) -> AppResult<Json<AdminOrderDetail>> {
        let (o, school) = scoped(&state, &auth, id.0).await?;
        let reason = super::reason(Some(body.reason.as_str()), true, 500)?.unwrap_or_default();
        let decision = match (body.decision, body.refund_fen) {
            (DisputeOutcome::Complete, Some(_)) => {
                return Err(AppError::invalid_field(
                    "refund_fen",
                    "only a refund decision gives money back",
                ));
            }
            (DisputeOutcome::Complete, None) => Decision::Complete,
            (DisputeOutcome::Refund, fen) => {
                let fen = fen.unwrap_or(o.amount);
                if !(1..=o.amount).contains(&fen) {
                    return Err(AppError::invalid_field(
                        "refund_fen",
                        format!("a refund is between 1 and {} fen", o.amount),
                    ));
                }
                Decision::Refund { fen }
            }
        };
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "order.decide_dispute").await?;
        let (done, after) =
            orders::decide_dispute_in(&state, &txn, &o, &auth.operator.username, decision, &reason)
                .await?;
        pending
            .finish(
                &txn,
                audit::Record::target("order", o.id)
                    .school(school)
                    .before_view(&admin_order(&o, school))
                    .after_view(&admin_order(&done, school))
                    .reason(Some(&reason)),
            )
            .await?;
        txn.commit().await?;
        after.run(&state);
        Ok(Json(detail(&state, done, school).await?))
    }

    /// Retry the order's refunds that WeChat has not finished (pending, processing or abnormal) now instead of
    /// at the sweep's next turn. A refund sent before is first queried under its number and only sent again
    /// (with the same number, so WeChat refunds at most once) if WeChat does not have it. 409
    /// `no_refund_to_retry` when every refund is final; 503 `wechat_pay_unavailable` when WeChat did not
    /// answer (the sweep keeps trying).
    ///
    /// Permission: `orders`.
    #[oai(
        path = "/v1/orders/:id/retry-refund",
        method = "post",
        operation_id = "retry_refund"
    )]
    async fn retry_refund(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Orders>,
        id: Path<i64>,
    ) -> AppResult<Json<AdminOrderDetail>> {
        let (o, school) = scoped(&state, &auth, id.0).await?;
        let open: Vec<refund::Model> = payments::refunds::of_orders(&state.db, &[o.id])
            .await?
            .into_iter()
            .filter(|r| !r.status.is_final())
            .collect();
        if open.is_empty() {
            return Err(AppError::conflict(
                "no_refund_to_retry",
                "this order has no refund waiting for WeChat Pay",
            ));
        }
        let ids: Vec<i64> = open.iter().map(|r| r.id).collect();
        let txn = state.db.begin().await?;
        let pending = audit::begin(&txn, auth.actor(), "order.retry_refund").await?;
        payments::refunds::make_due_in(&txn, &ids).await?;
        let before: Vec<AdminRefund> = open.iter().map(refund_view).collect();
        pending
            .finish(
                &txn,
                audit::Record::target("order", o.id)
                    .school(school)
                    .before_view(&before)
                    .after(&serde_json::json!({ "refunds_due_now": ids })),
            )
            .await?;
        txn.commit().await?;
        let mut failed = None;
        for r in &ids {
            if let Err(e) = payments::refunds::reconcile_one(&state, *r).await {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let o = orders::find(&state.db, o.id).await?;
        Ok(Json(detail(&state, o, school).await?))
    }

    /// Ask WeChat now about the seller's payout whose transfer bill is uncertain (the request's answer was
    /// lost) or unfinished, and apply the answer: an uncertain bill is always resolved by this query, never by
    /// a second bill; a bill WeChat does not have becomes collectable again under the same number; a failed
    /// or cancelled one is replaced and the seller told to collect again. 409 `no_payout` (offline or not
    /// completed), `payout_awaits_seller` (no bill is open: the seller collects it in the Mini Program),
    /// `payout_settled`; 503 `wechat_pay_unavailable`.
    ///
    /// Permission: `orders`.
    #[oai(
        path = "/v1/orders/:id/retry-payout",
        method = "post",
        operation_id = "retry_payout"
    )]
    async fn retry_payout(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Orders>,
        id: Path<i64>,
    ) -> AppResult<Json<AdminOrderDetail>> {
        let (o, school) = scoped(&state, &auth, id.0).await?;
        let p = payments::payouts::of_order(&state.db, o.id)
            .await?
            .ok_or_else(|| {
                AppError::conflict(
                    "no_payout",
                    "this order has no payout (offline, or not completed yet)",
                )
            })?;
        payments::payouts::check_retryable(&p)?;
        audit_request(
            &state,
            &auth,
            "order.retry_payout",
            o.id,
            school,
            &payout_view(&p),
        )
        .await?;
        payments::payouts::reconcile_one(&state, &p).await?;
        let o = orders::find(&state.db, o.id).await?;
        Ok(Json(detail(&state, o, school).await?))
    }

    /// Ask WeChat Pay about the order's payment now and apply what it says, exactly as a payment notification
    /// would: a payment is applied once (the order becomes `paid`), one that arrived after a cancellation is
    /// refunded automatically. 409 `not_wechat_pay` for offline orders, `payment_already_recorded` when the
    /// payment is already applied; 503 `wechat_pay_unavailable`.
    ///
    /// Permission: `orders`.
    #[oai(
        path = "/v1/orders/:id/query-payment",
        method = "post",
        operation_id = "query_payment"
    )]
    async fn query_payment(
        &self,
        state: Data<&AppState>,
        auth: Need<perm::Orders>,
        id: Path<i64>,
    ) -> AppResult<Json<PaymentQueryResult>> {
        let (o, school) = scoped(&state, &auth, id.0).await?;
        let p = payments::service::of_order(&state.db, o.id)
            .await?
            .ok_or_else(|| {
                AppError::conflict(
                    "not_wechat_pay",
                    "this order is paid offline, at the meet-up",
                )
            })?;
        if p.status == PaymentStatus::Paid {
            return Err(AppError::conflict(
                "payment_already_recorded",
                "the payment of this order is already recorded",
            ));
        }
        audit_request(
            &state,
            &auth,
            "order.query_payment",
            o.id,
            school,
            &payment_view(&p),
        )
        .await?;
        let outcome = match payments::service::query_and_apply(&state, &p, "operator query").await?
        {
            None => PaymentQueryOutcome::UnknownToWechat,
            Some(Applied::Paid) => PaymentQueryOutcome::Paid,
            Some(Applied::AlreadyApplied) => PaymentQueryOutcome::AlreadyApplied,
            Some(Applied::RefundedLate) => PaymentQueryOutcome::RefundedLate,
            Some(Applied::NotPaid) => PaymentQueryOutcome::NotPaid,
        };
        let o = orders::find(&state.db, o.id).await?;
        Ok(Json(PaymentQueryResult {
            outcome,
            detail: detail(&state, o, school).await?,
        }))
    }
}
