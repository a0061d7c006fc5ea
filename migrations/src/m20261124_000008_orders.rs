//! Orders and their money: the order with its state and hand-over code, the event log of every transition,
//! hand-over attempts, and the WeChat Pay side (one payment per order, refunds, the payout to the seller).
//! Timers (payment deadline, auto-completion, retries) are columns here, so sweeps derive their work from the
//! database and any instance may run them.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    ListingId,
    BuyerId,
    SellerId,
    Title,
    Amount,
    PaymentMethod,
    Status,
    OfferId,
    MeetupPlaceId,
    HandoverCode,
    HandoverFailures,
    HandoverFailDay,
    ExpiresAt,
    RefundReason,
    CreatedAt,
    UpdatedAt,
    PaidAt,
    CompletedAt,
    CancelledAt,
    SettledAt,
}

#[derive(DeriveIden)]
enum OrderEvents {
    Table,
    Id,
    OrderId,
    Actor,
    ActorUserId,
    Operator,
    FromStatus,
    ToStatus,
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum HandoverAttempts {
    Table,
    Id,
    OrderId,
    UserId,
    Success,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    OrderId,
    OutTradeNo,
    Amount,
    Status,
    PrepayId,
    PrepaidAt,
    TransactionId,
    PayerOpenid,
    PaidAt,
    QueryAfter,
    ShippingUploadedAt,
    ShippingNextAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    OrderId,
    OutRefundNo,
    Amount,
    Reason,
    Status,
    RefundId,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
    UpdatedAt,
    SucceededAt,
}

#[derive(DeriveIden)]
enum Payouts {
    Table,
    Id,
    OrderId,
    SellerId,
    OutBillNo,
    Attempt,
    Amount,
    Fee,
    Status,
    TransferBillNo,
    PackageInfo,
    FailReason,
    Attempts,
    NextAttemptAt,
    CreatedAt,
    UpdatedAt,
    SucceededAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Listings {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum CampusPlaces {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(big_pk_auto(Orders::Id))
                    .col(big_integer(Orders::ListingId))
                    .col(big_integer(Orders::BuyerId))
                    .col(big_integer(Orders::SellerId))
                    .col(string_len(Orders::Title, 120))
                    .col(big_integer(Orders::Amount))
                    .col(string_len(Orders::PaymentMethod, 16))
                    .col(string_len(Orders::Status, 24))
                    .col(big_integer_null(Orders::OfferId))
                    .col(big_integer_null(Orders::MeetupPlaceId))
                    .col(string_len(Orders::HandoverCode, 6))
                    .col(integer(Orders::HandoverFailures).default(0))
                    .col(string_len_null(Orders::HandoverFailDay, 10))
                    .col(timestamp_with_time_zone_null(Orders::ExpiresAt))
                    .col(string_len_null(Orders::RefundReason, 200))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Orders::PaidAt))
                    .col(timestamp_with_time_zone_null(Orders::CompletedAt))
                    .col(timestamp_with_time_zone_null(Orders::CancelledAt))
                    .col(timestamp_with_time_zone_null(Orders::SettledAt))
                    .foreign_key(&mut fk(
                        "fk_orders_listing",
                        (Orders::Table, Orders::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_orders_buyer",
                        (Orders::Table, Orders::BuyerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_orders_seller",
                        (Orders::Table, Orders::SellerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_orders_place",
                        (Orders::Table, Orders::MeetupPlaceId),
                        (CampusPlaces::Table, CampusPlaces::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderEvents::Table)
                    .col(big_pk_auto(OrderEvents::Id))
                    .col(big_integer(OrderEvents::OrderId))
                    .col(string_len(OrderEvents::Actor, 16))
                    .col(big_integer_null(OrderEvents::ActorUserId))
                    .col(string_len_null(OrderEvents::Operator, 64))
                    .col(string_len_null(OrderEvents::FromStatus, 24))
                    .col(string_len(OrderEvents::ToStatus, 24))
                    .col(text_null(OrderEvents::Reason))
                    .col(timestamp_with_time_zone(OrderEvents::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_order_events_order",
                        (OrderEvents::Table, OrderEvents::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HandoverAttempts::Table)
                    .col(big_pk_auto(HandoverAttempts::Id))
                    .col(big_integer(HandoverAttempts::OrderId))
                    .col(big_integer(HandoverAttempts::UserId))
                    .col(boolean(HandoverAttempts::Success))
                    .col(timestamp_with_time_zone(HandoverAttempts::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_handover_attempts_order",
                        (HandoverAttempts::Table, HandoverAttempts::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(big_pk_auto(Payments::Id))
                    .col(big_integer_uniq(Payments::OrderId))
                    .col(string_len_uniq(Payments::OutTradeNo, 32))
                    .col(big_integer(Payments::Amount))
                    .col(string_len(Payments::Status, 16))
                    .col(string_len_null(Payments::PrepayId, 64))
                    .col(timestamp_with_time_zone_null(Payments::PrepaidAt))
                    .col(string_len_null(Payments::TransactionId, 64))
                    .col(string_len_null(Payments::PayerOpenid, 128))
                    .col(timestamp_with_time_zone_null(Payments::PaidAt))
                    .col(timestamp_with_time_zone_null(Payments::QueryAfter))
                    .col(timestamp_with_time_zone_null(Payments::ShippingUploadedAt))
                    .col(timestamp_with_time_zone_null(Payments::ShippingNextAt))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .col(timestamp_with_time_zone(Payments::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_payments_order",
                        (Payments::Table, Payments::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(big_pk_auto(Refunds::Id))
                    .col(big_integer(Refunds::OrderId))
                    .col(string_len_uniq(Refunds::OutRefundNo, 64))
                    .col(big_integer(Refunds::Amount))
                    .col(string_len(Refunds::Reason, 80))
                    .col(string_len(Refunds::Status, 16))
                    .col(string_len_null(Refunds::RefundId, 64))
                    .col(integer(Refunds::Attempts).default(0))
                    .col(timestamp_with_time_zone(Refunds::NextAttemptAt))
                    .col(text_null(Refunds::LastError))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .col(timestamp_with_time_zone(Refunds::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Refunds::SucceededAt))
                    .foreign_key(&mut fk(
                        "fk_refunds_order",
                        (Refunds::Table, Refunds::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Payouts::Table)
                    .col(big_pk_auto(Payouts::Id))
                    .col(big_integer_uniq(Payouts::OrderId))
                    .col(big_integer(Payouts::SellerId))
                    .col(string_len_uniq(Payouts::OutBillNo, 32))
                    .col(integer(Payouts::Attempt).default(1))
                    .col(big_integer(Payouts::Amount))
                    .col(big_integer(Payouts::Fee))
                    .col(string_len(Payouts::Status, 24))
                    .col(string_len_null(Payouts::TransferBillNo, 64))
                    .col(text_null(Payouts::PackageInfo))
                    .col(text_null(Payouts::FailReason))
                    .col(integer(Payouts::Attempts).default(0))
                    .col(timestamp_with_time_zone(Payouts::NextAttemptAt))
                    .col(timestamp_with_time_zone(Payouts::CreatedAt))
                    .col(timestamp_with_time_zone(Payouts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Payouts::SucceededAt))
                    .foreign_key(&mut fk(
                        "fk_payouts_order",
                        (Payouts::Table, Payouts::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_payouts_seller",
                        (Payouts::Table, Payouts::SellerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;

        // "My orders" per role, newest first; the sweeps find due orders by status and deadline; a listing's
        // orders for its page.
        let conn = manager.get_connection();
        for sql in [
            "CREATE INDEX ix_orders_buyer ON orders (buyer_id, id)",
            "CREATE INDEX ix_orders_seller ON orders (seller_id, id)",
            "CREATE INDEX ix_orders_listing ON orders (listing_id)",
            "CREATE INDEX ix_orders_status_expires ON orders (status, expires_at)",
            "CREATE INDEX ix_orders_status_paid ON orders (status, paid_at)",
            "CREATE INDEX ix_order_events_order ON order_events (order_id, id)",
            "CREATE INDEX ix_handover_attempts_order ON handover_attempts (order_id, id)",
            "CREATE INDEX ix_payments_query ON payments (status, query_after)",
            "CREATE INDEX ix_payments_shipping ON payments (shipping_next_at)",
            "CREATE INDEX ix_refunds_order ON refunds (order_id)",
            "CREATE INDEX ix_refunds_due ON refunds (status, next_attempt_at)",
            "CREATE INDEX ix_payouts_due ON payouts (status, next_attempt_at)",
        ] {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "payouts",
            "refunds",
            "payments",
            "handover_attempts",
            "order_events",
            "orders",
        ] {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
                .await?;
        }
        Ok(())
    }
}
