//! Uploaded images: who uploaded them, where their two stored versions are, and what they are attached to.
//! Unattached rows (no target, `attached_at` NULL) older than a day are swept, files and row.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Images {
    Table,
    Id,
    OwnerId,
    DisplayKey,
    ThumbKey,
    Width,
    Height,
    Bytes,
    Sha256,
    TargetType,
    TargetId,
    Position,
    CreatedAt,
    AttachedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Images::Table)
                    .col(big_pk_auto(Images::Id))
                    .col(big_integer(Images::OwnerId))
                    .col(string_len(Images::DisplayKey, 255))
                    .col(string_len(Images::ThumbKey, 255))
                    .col(integer(Images::Width))
                    .col(integer(Images::Height))
                    .col(big_integer(Images::Bytes))
                    .col(string_len(Images::Sha256, 64))
                    .col(string_len_null(Images::TargetType, 32))
                    .col(big_integer_null(Images::TargetId))
                    .col(integer_null(Images::Position))
                    .col(timestamp_with_time_zone(Images::CreatedAt))
                    .col(timestamp_with_time_zone_null(Images::AttachedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_images_owner")
                            .from(Images::Table, Images::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The images of a listing (or post), in order.
        manager
            .create_index(
                Index::create()
                    .name("ix_images_target")
                    .table(Images::Table)
                    .col(Images::TargetType)
                    .col(Images::TargetId)
                    .col(Images::Position)
                    .to_owned(),
            )
            .await?;
        // The sweep: unattached (attached_at NULL) and old.
        manager
            .create_index(
                Index::create()
                    .name("ix_images_sweep")
                    .table(Images::Table)
                    .col(Images::AttachedAt)
                    .col(Images::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_images_owner")
                    .table(Images::Table)
                    .col(Images::OwnerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Images::Table).to_owned())
            .await
    }
}
