//! Reviews and reputation: one review per side of a completed order (with the reviewed person's reply and the
//! operators' hiding), and each student's reputation counters, kept up to date incrementally by the service and
//! rebuilt from `orders`, `order_events` and `reviews` by `campus-trade recompute-reputation`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Reviews {
    Table,
    Id,
    OrderId,
    ReviewerId,
    RevieweeId,
    ReviewerRole,
    Rating,
    Body,
    Tags,
    ModerationLabel,
    Reply,
    RepliedAt,
    Hidden,
    HiddenBy,
    HiddenReason,
    RevealedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserReputation {
    Table,
    UserId,
    CompletedSales,
    CompletedPurchases,
    SellerCancelled,
    RatingCount,
    RatingSum,
    PositiveCount,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reviews::Table)
                    .col(big_pk_auto(Reviews::Id))
                    .col(big_integer(Reviews::OrderId))
                    .col(big_integer(Reviews::ReviewerId))
                    .col(big_integer(Reviews::RevieweeId))
                    // The reviewer's side of the order: `buyer` (reviews the seller) or `seller`.
                    .col(string_len(Reviews::ReviewerRole, 8))
                    .col(integer(Reviews::Rating))
                    .col(text(Reviews::Body).default(""))
                    // Comma-separated tag keys from the fixed list.
                    .col(string_len(Reviews::Tags, 200).default(""))
                    .col(string_len_null(Reviews::ModerationLabel, 40))
                    .col(text_null(Reviews::Reply))
                    .col(timestamp_with_time_zone_null(Reviews::RepliedAt))
                    .col(boolean(Reviews::Hidden).default(false))
                    .col(string_len_null(Reviews::HiddenBy, 64))
                    .col(string_len_null(Reviews::HiddenReason, 200))
                    // Set when both sides have reviewed or the 30-day window closed; NULL = still sealed.
                    .col(timestamp_with_time_zone_null(Reviews::RevealedAt))
                    .col(timestamp_with_time_zone(Reviews::CreatedAt))
                    .col(timestamp_with_time_zone(Reviews::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_reviews_order",
                        (Reviews::Table, Reviews::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_reviews_reviewer",
                        (Reviews::Table, Reviews::ReviewerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_reviews_reviewee",
                        (Reviews::Table, Reviews::RevieweeId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserReputation::Table)
                    .col(big_integer(UserReputation::UserId).primary_key())
                    .col(integer(UserReputation::CompletedSales).default(0))
                    .col(integer(UserReputation::CompletedPurchases).default(0))
                    .col(integer(UserReputation::SellerCancelled).default(0))
                    .col(integer(UserReputation::RatingCount).default(0))
                    .col(big_integer(UserReputation::RatingSum).default(0))
                    .col(integer(UserReputation::PositiveCount).default(0))
                    .col(timestamp_with_time_zone(UserReputation::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_user_reputation_user",
                        (UserReputation::Table, UserReputation::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        // One review per side of an order (the race of two submissions ends at this index); a profile's reviews
        // newest first; "written by me"; the reveal sweep finds sealed reviews by age.
        let conn = manager.get_connection();
        for sql in [
            "CREATE UNIQUE INDEX ux_reviews_order_reviewer ON reviews (order_id, reviewer_id)",
            "CREATE INDEX ix_reviews_reviewee ON reviews (reviewee_id, id)",
            "CREATE INDEX ix_reviews_reviewer ON reviews (reviewer_id, id)",
            "CREATE INDEX ix_reviews_sealed ON reviews (revealed_at, created_at)",
        ] {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["user_reputation", "reviews"] {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
                .await?;
        }
        Ok(())
    }
}
