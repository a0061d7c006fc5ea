//! What the operators' dashboard needs to stay cheap as orders and chat grow: indexes on the times the order
//! figures are counted by (every order transition, payments, refunds and payouts that succeeded), and a
//! pre-aggregated table of who chatted on which day (one row per student per campus day, written at most once
//! per day by each instance, instead of counting distinct senders over every message).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatActiveDays {
    Table,
    Day,
    UserId,
    SchoolId,
    FirstAt,
}

const INDEXES: [&str; 5] = [
    "CREATE INDEX ix_order_events_created ON order_events (created_at)",
    "CREATE INDEX ix_orders_paid_at ON orders (paid_at)",
    "CREATE INDEX ix_refunds_succeeded ON refunds (succeeded_at)",
    "CREATE INDEX ix_payouts_succeeded ON payouts (succeeded_at)",
    "CREATE INDEX ix_chat_active_days_first ON chat_active_days (first_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChatActiveDays::Table)
                    // The campus (UTC+8) calendar day, `YYYY-MM-DD`.
                    .col(string_len(ChatActiveDays::Day, 10))
                    .col(big_integer(ChatActiveDays::UserId))
                    // The student's school when they first chatted that day (no foreign key: statistics
                    // outlive a deleted school or account).
                    .col(big_integer_null(ChatActiveDays::SchoolId))
                    .col(timestamp_with_time_zone(ChatActiveDays::FirstAt))
                    .primary_key(
                        Index::create()
                            .col(ChatActiveDays::Day)
                            .col(ChatActiveDays::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        for sql in INDEXES {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "ix_order_events_created",
            "ix_orders_paid_at",
            "ix_refunds_succeeded",
            "ix_payouts_succeeded",
        ] {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ChatActiveDays::Table).to_owned())
            .await
    }
}
