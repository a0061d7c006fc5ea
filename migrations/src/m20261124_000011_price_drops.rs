//! Price-drop alerts: at most one alert per listing per campus day, and the watermark of the price history the
//! sweep has read, so several instances sweeping at once never alert twice.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JobWatermarks {
    Table,
    Name,
    LastId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PriceDropAlerts {
    Table,
    ListingId,
    AlertDay,
    PriceChangeId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Listings {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobWatermarks::Table)
                    .col(string_len(JobWatermarks::Name, 64).primary_key())
                    .col(big_integer(JobWatermarks::LastId))
                    .col(timestamp_with_time_zone(JobWatermarks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Price changes made before this migration are history, not news: start after the newest one.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO job_watermarks (name, last_id, updated_at) \
                 SELECT 'price_drops', COALESCE(MAX(id), 0), CURRENT_TIMESTAMP FROM listing_price_history",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PriceDropAlerts::Table)
                    .col(big_integer(PriceDropAlerts::ListingId))
                    // The campus (UTC+8) calendar day, `YYYY-MM-DD`.
                    .col(string_len(PriceDropAlerts::AlertDay, 10))
                    .col(big_integer(PriceDropAlerts::PriceChangeId))
                    .col(timestamp_with_time_zone(PriceDropAlerts::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(PriceDropAlerts::ListingId)
                            .col(PriceDropAlerts::AlertDay),
                    )
                    .foreign_key(&mut fk(
                        "fk_price_drop_alerts_listing",
                        (PriceDropAlerts::Table, PriceDropAlerts::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PriceDropAlerts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobWatermarks::Table).to_owned())
            .await
    }
}
