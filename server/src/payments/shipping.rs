//! The Mini Program trading rule: WeChat holds the money of a Mini Program payment until the merchant uploads
//! the shipping information. When a WeChat Pay order completes, its hand-over is uploaded as a self-pickup
//! (`logistics_type` 4) through `wxa/sec/order/upload_shipping_info`; failures are retried by the sweep.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

use super::{backoff, model::payment};
use crate::{
    error::{AppError, AppResult},
    orders::service as orders,
    state::AppState,
    users::model::user,
    util,
    wechat::shipping::{SELF_PICKUP, ShippingInfo},
};

/// Makes the shipping upload of an order due now (in the completion's transaction).
pub async fn due_in(txn: &impl ConnectionTrait, order_id: i64) -> AppResult<()> {
    payment::Entity::update_many()
        .col_expr(payment::Column::ShippingNextAt, Expr::value(util::now()))
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::ShippingUploadedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// Uploads the shipping information of a completed order, when due (claimed with a conditional update, so it
/// happens once however many instances try). `Ok(false)`: not due, or another instance has it.
pub async fn upload(state: &AppState, order_id: i64) -> AppResult<bool> {
    let now = util::now();
    let claimed = payment::Entity::update_many()
        .col_expr(
            payment::Column::ShippingNextAt,
            Expr::value(now + backoff(4)),
        )
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::ShippingUploadedAt.is_null())
        .filter(payment::Column::ShippingNextAt.lte(now))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    if !claimed {
        return Ok(false);
    }
    let p = super::service::of_order(&state.db, order_id)
        .await?
        .ok_or_else(|| AppError::not_found("payment"))?;
    let o = orders::find(&state.db, order_id).await?;
    let openid = match p.payer_openid.clone() {
        Some(o) => o,
        None => {
            user::Entity::find_by_id(o.buyer_id)
                .one(&state.db)
                .await?
                .ok_or_else(|| AppError::not_found("user"))?
                .openid
        }
    };
    let info = ShippingInfo {
        mchid: state.pay.mchid().to_string(),
        out_trade_no: p.out_trade_no.clone(),
        logistics_type: SELF_PICKUP,
        item_desc: o.title.clone(),
        payer_openid: openid,
        upload_time: now,
    };
    match state.wechat.upload_shipping_info(&info).await {
        Ok(()) => {
            payment::Entity::update_many()
                .col_expr(
                    payment::Column::ShippingUploadedAt,
                    Expr::value(util::now()),
                )
                .col_expr(
                    payment::Column::ShippingNextAt,
                    Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
                )
                .filter(payment::Column::Id.eq(p.id))
                .exec(&state.db)
                .await?;
            Ok(true)
        }
        Err(e) => Err(AppError::unavailable(
            "wechat_unavailable",
            format!("shipping upload failed: {e}"),
        )),
    }
}

/// Sweep: retries due shipping uploads.
pub async fn retry_due(state: &AppState) -> AppResult<u64> {
    let due = payment::Entity::find()
        .filter(payment::Column::ShippingUploadedAt.is_null())
        .filter(payment::Column::ShippingNextAt.lte(util::now()))
        .limit(100)
        .all(&state.db)
        .await?;
    let mut n = 0;
    for p in due {
        match upload(state, p.order_id).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(order_id = p.order_id, error = %e, "shipping upload failed"),
        }
    }
    Ok(n)
}
