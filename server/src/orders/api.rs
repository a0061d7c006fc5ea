//! HTTP endpoints of orders (including their WeChat Pay steps: prepay, sync, payout). Handlers parse,
//! authorise, call [`super::service`] or [`crate::payments`], and shape the response; the rules live in the
//! services and the model. Only the buyer and the seller of an order ever see it (404 for everyone else).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    model::{
        Action, HANDOVER_MAX_FAILURES, OrderStatus, PaymentMethod, allowed_actions, campus_day,
        handover_locked, handover_qr_payload, next_campus_midnight, order, order_event,
    },
    service::{self, ListRole, NewOrder},
};
use crate::{
    auth::StudentAuth,
    error::AppResult,
    images::{self, api::ImageRef, model::image},
    listings::{
        api::PlaceRef,
        model::{campus_place, listing},
    },
    payments::{
        self,
        model::{PayoutStatus, RefundStatus, payout, refund},
    },
    state::AppState,
    users::model::user,
    util,
};

#[derive(Tags)]
enum OrderTags {
    /// Buying and selling: orders, payment, hand-over, refunds, payouts.
    Orders,
}

/// A new order.
#[derive(Debug, Object)]
pub struct CreateOrder {
    pub listing_id: i64,
    /// An offer of yours the seller accepted in the chat; its price replaces the listing price.
    pub offer_id: Option<i64>,
    pub payment_method: PaymentMethod,
    /// A meet-up place of the listing.
    pub meetup_point_id: Option<i64>,
}

/// A party of an order.
#[derive(Debug, Clone, Object)]
pub struct Party {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: Option<String>,
}

/// The item of an order.
#[derive(Debug, Clone, Object)]
pub struct OrderListing {
    pub id: i64,
    /// The title when the order was placed.
    pub title: String,
    pub cover: Option<ImageRef>,
}

/// A refund of an order.
#[derive(Debug, Clone, Object)]
pub struct RefundView {
    /// Fen.
    pub amount: i64,
    pub status: RefundStatus,
    pub created_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
}

/// The seller's payout (seller's view only).
#[derive(Debug, Clone, Object)]
pub struct PayoutView {
    /// Fen the seller receives.
    pub amount: i64,
    /// Fen the platform keeps (`PLATFORM_FEE_BPS`).
    pub fee: i64,
    pub status: PayoutStatus,
    pub succeeded_at: Option<DateTime<Utc>>,
}

/// One line of the order's history.
#[derive(Debug, Clone, Object)]
pub struct OrderEventView {
    /// `buyer`, `seller`, `system` or `operator`.
    pub actor: String,
    /// Absent for the creation.
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Which side of the order the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OrderRole {
    Buyer,
    Seller,
}

/// An order as its buyer or seller sees it.
#[derive(Debug, Clone, Object)]
pub struct OrderView {
    pub id: i64,
    pub status: OrderStatus,
    pub payment_method: PaymentMethod,
    /// Fen.
    pub amount: i64,
    pub listing: OrderListing,
    pub buyer: Party,
    pub seller: Party,
    /// The caller's side.
    pub role: OrderRole,
    pub meetup_place: Option<PlaceRef>,
    pub offer_id: Option<i64>,
    /// Buyer only, while the hand-over is due (`paid`, or `pending_handover` offline): the six digits to show
    /// the seller at the meet-up. Never in the seller's view.
    pub handover_code: Option<String>,
    /// Buyer only, with `handover_code`: the payload of the QR code the seller may scan instead.
    pub handover_qr: Option<String>,
    /// While five wrong codes lock the hand-over: when it unlocks (next midnight, Beijing time).
    pub handover_locked_until: Option<DateTime<Utc>>,
    /// Seller only, while the hand-over is due: wrong codes left today.
    pub handover_tries_left: Option<i32>,
    /// Payment deadline of an unpaid WeChat Pay order.
    pub expires_at: Option<DateTime<Utc>>,
    /// The buyer's reason, once a refund was requested.
    pub refund_reason: Option<String>,
    pub refunds: Vec<RefundView>,
    /// Seller only: the payout of a completed WeChat Pay order.
    pub payout: Option<PayoutView>,
    /// What the caller may do now; render buttons from this.
    pub allowed_actions: Vec<Action>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub settled_at: Option<DateTime<Utc>>,
    /// The history, oldest first (single-order responses only).
    pub events: Option<Vec<OrderEventView>>,
}

/// A page of orders.
#[derive(Debug, Object)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Why the order is called off (optional; `{}` is fine).
#[derive(Debug, Object)]
pub struct CancelOrder {
    /// At most 200 characters.
    pub reason: Option<String>,
}

/// The buyer's hand-over code, entered (or scanned) by the seller.
#[derive(Debug, Object)]
pub struct Handover {
    /// Six digits.
    pub code: String,
}

/// The buyer asks for their money back.
#[derive(Debug, Object)]
pub struct RefundRequestBody {
    /// 1–200 characters.
    pub reason: String,
}

/// The seller's answer to a refund request.
#[derive(Debug, Object)]
pub struct RefundResponseBody {
    /// `true` refunds the buyer in full; `false` opens a dispute an operator decides.
    pub accept: bool,
    /// At most 200 characters.
    pub reason: Option<String>,
}

/// The parameters of `wx.requestPayment`, signed with the merchant key (names exactly as the API takes them).
#[derive(Debug, Object)]
pub struct RequestPaymentParams {
    /// Unix seconds, as a string.
    #[oai(rename = "timeStamp")]
    pub time_stamp: String,
    #[oai(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// Always `RSA`.
    #[oai(rename = "signType")]
    pub sign_type: String,
    #[oai(rename = "paySign")]
    pub pay_sign: String,
}

/// The parameters of `wx.requestMerchantTransfer` (names exactly as the API takes them).
#[derive(Debug, Object)]
pub struct MerchantTransferParams {
    #[oai(rename = "mchId")]
    pub mch_id: String,
    #[oai(rename = "appId")]
    pub app_id: String,
    /// The transfer bill's `package_info`.
    pub package: String,
    #[oai(rename = "openId")]
    pub open_id: String,
}

/// What the seller's Mini Program needs to collect the payout.
#[derive(Debug, Object)]
pub struct PayoutTicket {
    pub payout: PayoutView,
    /// Pass to `wx.requestMerchantTransfer`; the seller confirms the transfer there.
    pub transfer: MerchantTransferParams,
}

/// Which orders to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RoleFilter {
    Buyer,
    Seller,
}

/// Builds the views of `orders` for `viewer_id`, loading what they show in a few queries for the whole page.
async fn views(
    state: &AppState,
    viewer_id: i64,
    orders: Vec<order::Model>,
    with_events: bool,
) -> AppResult<Vec<OrderView>> {
    let db = &state.db;
    let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    let user_ids: HashSet<i64> = orders
        .iter()
        .flat_map(|o| [o.buyer_id, o.seller_id])
        .collect();
    let users: HashMap<i64, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(user_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let listing_ids: HashSet<i64> = orders.iter().map(|o| o.listing_id).collect();
    let covers: HashMap<i64, Option<i64>> = listing::Entity::find()
        .filter(listing::Column::Id.is_in(listing_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.id, l.cover_image_id))
        .collect();
    let cover_ids: HashSet<i64> = covers.values().flatten().copied().collect();
    let images: HashMap<i64, image::Model> = if cover_ids.is_empty() {
        HashMap::new()
    } else {
        image::Entity::find()
            .filter(image::Column::Id.is_in(cover_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|i| (i.id, i))
            .collect()
    };
    let place_ids: HashSet<i64> = orders.iter().filter_map(|o| o.meetup_place_id).collect();
    let places: HashMap<i64, campus_place::Model> = if place_ids.is_empty() {
        HashMap::new()
    } else {
        campus_place::Entity::find()
            .filter(campus_place::Column::Id.is_in(place_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect()
    };
    let mut refunds: HashMap<i64, Vec<refund::Model>> = HashMap::new();
    for r in payments::refunds::of_orders(db, &ids).await? {
        refunds.entry(r.order_id).or_default().push(r);
    }
    let payouts: HashMap<i64, payout::Model> = payments::payouts::of_orders(db, &ids)
        .await?
        .into_iter()
        .map(|p| (p.order_id, p))
        .collect();
    let mut events: HashMap<i64, Vec<order_event::Model>> = HashMap::new();
    if with_events {
        for id in &ids {
            events.insert(*id, service::events(db, *id).await?);
        }
    }
    let party = |id: i64| {
        let u = users.get(&id);
        Party {
            id,
            nickname: u.map(|u| u.nickname.clone()).unwrap_or_default(),
            avatar_url: u.and_then(|u| u.avatar_url.clone()),
        }
    };
    let now = util::now();
    Ok(orders
        .into_iter()
        .map(|o| {
            let is_buyer = o.buyer_id == viewer_id;
            let payout = payouts.get(&o.id);
            let due = o.status.awaits_handover();
            let locked = due && handover_locked(&o, now);
            let tries_left = if o.handover_fail_day.as_deref() == Some(campus_day(now).as_str()) {
                (HANDOVER_MAX_FAILURES - o.handover_failures).max(0)
            } else {
                HANDOVER_MAX_FAILURES
            };
            let mut order_refunds: Vec<RefundView> = refunds
                .get(&o.id)
                .map(|rs| {
                    rs.iter()
                        .map(|r| RefundView {
                            amount: r.amount,
                            status: r.status,
                            created_at: r.created_at,
                            succeeded_at: r.succeeded_at,
                        })
                        .collect()
                })
                .unwrap_or_default();
            order_refunds.sort_by_key(|r| r.created_at);
            OrderView {
                id: o.id,
                status: o.status,
                payment_method: o.payment_method,
                amount: o.amount,
                listing: OrderListing {
                    id: o.listing_id,
                    title: o.title.clone(),
                    cover: covers
                        .get(&o.listing_id)
                        .copied()
                        .flatten()
                        .and_then(|c| images.get(&c))
                        .map(|i| images::api::image_ref(state, i)),
                },
                buyer: party(o.buyer_id),
                seller: party(o.seller_id),
                role: if is_buyer {
                    OrderRole::Buyer
                } else {
                    OrderRole::Seller
                },
                meetup_place: o
                    .meetup_place_id
                    .and_then(|p| places.get(&p))
                    .map(|p| PlaceRef {
                        id: p.id,
                        name: p.name.clone(),
                        campus_id: p.campus_id,
                    }),
                offer_id: o.offer_id,
                handover_code: (is_buyer && due).then(|| o.handover_code.clone()),
                handover_qr: (is_buyer && due).then(|| handover_qr_payload(o.id, &o.handover_code)),
                handover_locked_until: locked.then(|| next_campus_midnight(now)),
                handover_tries_left: (!is_buyer && due).then_some(tries_left),
                expires_at: (o.status == OrderStatus::PendingPayment)
                    .then_some(o.expires_at)
                    .flatten(),
                refund_reason: o.refund_reason.clone(),
                refunds: order_refunds,
                payout: payout.filter(|_| !is_buyer).map(payout_view),
                allowed_actions: allowed_actions(
                    &o,
                    viewer_id,
                    payout.is_some_and(payments::payouts::collectable),
                    now,
                ),
                created_at: o.created_at,
                updated_at: o.updated_at,
                paid_at: o.paid_at,
                completed_at: o.completed_at,
                cancelled_at: o.cancelled_at,
                settled_at: o.settled_at,
                events: with_events.then(|| {
                    events
                        .remove(&o.id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| OrderEventView {
                            actor: e.actor,
                            from_status: e.from_status,
                            to_status: e.to_status,
                            reason: e.reason,
                            at: e.created_at,
                        })
                        .collect()
                }),
            }
        })
        .collect())
}

fn payout_view(p: &payout::Model) -> PayoutView {
    PayoutView {
        amount: p.amount,
        fee: p.fee,
        status: p.status,
        succeeded_at: p.succeeded_at,
    }
}

/// One order's full view for the caller.
async fn one(state: &AppState, viewer_id: i64, o: order::Model) -> AppResult<Json<OrderView>> {
    let mut v = views(state, viewer_id, vec![o], true).await?;
    Ok(Json(v.remove(0)))
}

/// Orders, payment, hand-over, refunds and payouts.
pub struct OrdersApi;

#[OpenApi]
impl OrdersApi {
    /// Buy an item. Reserves the listing atomically: of any number of buyers racing for it exactly one gets the
    /// order; the others get 409 `listing_unavailable`. The price is the listing price, or the accepted offer
    /// named by `offer_id`. Your own item is 422 `cannot_buy_own_listing`; a seller who blocked you is 403
    /// `blocked_by_seller`. A `wechat_pay` order waits for payment (`expires_at`); an `offline` one for the
    /// hand-over.
    #[oai(
        path = "/v1/orders",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "create_order"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<CreateOrder>,
    ) -> AppResult<Json<OrderView>> {
        let b = body.0;
        let o = service::create(
            &state,
            auth.0.id(),
            NewOrder {
                listing_id: b.listing_id,
                offer_id: b.offer_id,
                payment_method: b.payment_method,
                meetup_place_id: b.meetup_point_id,
            },
        )
        .await?;
        one(&state, auth.0.id(), o).await
    }

    /// One order, with its history. Buyer and seller only (404 for anyone else). The buyer's view of an order
    /// awaiting hand-over carries `handover_code`; the seller's never does.
    #[oai(
        path = "/v1/orders/:id",
        method = "get",
        tag = "OrderTags::Orders",
        operation_id = "get_order"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<OrderView>> {
        let o = service::visible(&state.db, id.0, auth.0.id()).await?;
        one(&state, auth.0.id(), o).await
    }

    /// Your orders as buyer (default) or seller, newest first, optionally of some statuses only.
    #[oai(
        path = "/v1/me/orders",
        method = "get",
        tag = "OrderTags::Orders",
        operation_id = "my_orders"
    )]
    async fn mine(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        role: Query<Option<RoleFilter>>,
        /// Any of these statuses.
        status: Query<Vec<OrderStatus>>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<OrderPage>> {
        let role = match role.0 {
            Some(RoleFilter::Seller) => ListRole::Seller,
            _ => ListRole::Buyer,
        };
        let (rows, next_cursor) = service::list_mine(
            &state.db,
            auth.0.id(),
            role,
            &status.0,
            cursor.0.as_deref(),
            limit.0,
        )
        .await?;
        Ok(Json(OrderPage {
            items: views(&state, auth.0.id(), rows, false).await?,
            next_cursor,
        }))
    }

    /// Buyer: the signed parameters of `wx.requestPayment` for an unpaid WeChat Pay order. Calling it again
    /// returns fresh parameters for the same WeChat order (never a second one). `requestPayment:ok` proves
    /// nothing: call `sync-payment` afterwards, or wait for the order to turn `paid`.
    #[oai(
        path = "/v1/orders/:id/wechat-pay",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "pay_order"
    )]
    async fn wechat_pay(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<RequestPaymentParams>> {
        let p = payments::service::prepay(&state, auth.0.id(), id.0).await?;
        Ok(Json(RequestPaymentParams {
            time_stamp: p.time_stamp,
            nonce_str: p.nonce_str,
            package: p.package,
            sign_type: p.sign_type,
            pay_sign: p.pay_sign,
        }))
    }

    /// Asks WeChat Pay whether an unpaid order has been paid and applies the answer (what the notification
    /// would do). Returns the order.
    #[oai(
        path = "/v1/orders/:id/sync-payment",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "sync_order_payment"
    )]
    async fn sync_payment(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<OrderView>> {
        let o = payments::service::sync(&state, auth.0.id(), id.0).await?;
        one(&state, auth.0.id(), o).await
    }

    /// Buyer or seller: call off an order before payment (or before an offline hand-over). The item goes back
    /// on sale. A paid order is not cancelled but refunded (`refund-request`).
    #[oai(
        path = "/v1/orders/:id/cancel",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "cancel_order"
    )]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<CancelOrder>,
    ) -> AppResult<Json<OrderView>> {
        let o = service::cancel(&state, auth.0.id(), id.0, body.0.reason.as_deref()).await?;
        one(&state, auth.0.id(), o).await
    }

    /// Seller: enter the buyer's six-digit hand-over code at the meet-up; the order completes. A wrong code is
    /// 422 `wrong_handover_code`; after five wrong codes in a campus day (Beijing time) the hand-over is locked
    /// until midnight (409 `handover_locked`) — the buyer can still confirm receipt.
    #[oai(
        path = "/v1/orders/:id/handover",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "handover_order"
    )]
    async fn handover(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<Handover>,
    ) -> AppResult<Json<OrderView>> {
        let o = service::handover(&state, auth.0.id(), id.0, &body.0.code).await?;
        one(&state, auth.0.id(), o).await
    }

    /// Buyer: confirm you received the item; the order completes.
    #[oai(
        path = "/v1/orders/:id/confirm-receipt",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "confirm_order_receipt"
    )]
    async fn confirm_receipt(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<OrderView>> {
        let o = service::confirm_receipt(&state, auth.0.id(), id.0).await?;
        one(&state, auth.0.id(), o).await
    }

    /// Buyer: ask for your money back before the hand-over. The seller agrees (full refund) or refuses (an
    /// operator decides). While a request is open the order does not auto-complete.
    #[oai(
        path = "/v1/orders/:id/refund-request",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "request_order_refund"
    )]
    async fn refund_request(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<RefundRequestBody>,
    ) -> AppResult<Json<OrderView>> {
        let o = service::request_refund(&state, auth.0.id(), id.0, &body.0.reason).await?;
        one(&state, auth.0.id(), o).await
    }

    /// Seller: answer a refund request. `accept: true` refunds the buyer in full through WeChat Pay and puts the
    /// item back on sale; `false` opens a dispute (`disputed`) for an operator.
    #[oai(
        path = "/v1/orders/:id/refund-response",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "respond_order_refund"
    )]
    async fn refund_response(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<RefundResponseBody>,
    ) -> AppResult<Json<OrderView>> {
        let b = body.0;
        let o = service::respond_refund(&state, auth.0.id(), id.0, b.accept, b.reason.as_deref())
            .await?;
        one(&state, auth.0.id(), o).await
    }

    /// Seller: collect the payout of a completed WeChat Pay order. Returns what `wx.requestMerchantTransfer`
    /// takes; confirming there moves the money to your WeChat balance and the order to `settled`. Already paid
    /// out: 409 `payout_settled`; confirmed and on its way: 409 `payout_in_progress`.
    #[oai(
        path = "/v1/orders/:id/payout",
        method = "post",
        tag = "OrderTags::Orders",
        operation_id = "collect_order_payout"
    )]
    async fn payout(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<PayoutTicket>> {
        let c = payments::payouts::collect(&state, auth.0.id(), id.0).await?;
        Ok(Json(PayoutTicket {
            payout: payout_view(&c.payout),
            transfer: MerchantTransferParams {
                mch_id: c.mch_id,
                app_id: c.app_id,
                package: c.package,
                open_id: c.open_id,
            },
        }))
    }
}
