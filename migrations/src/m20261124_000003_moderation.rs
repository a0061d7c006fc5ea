//! Content security: the operators' local word blocklist, and the image checks submitted to WeChat
//! (`media_check_async`) with the verdicts its `wxa_media_check` pushes bring back.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BlockedWords {
    Table,
    Id,
    Word,
    Action,
    Label,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MediaChecks {
    Table,
    Id,
    TraceId,
    TargetType,
    TargetId,
    ImageId,
    Openid,
    Scene,
    MediaUrl,
    Status,
    Label,
    LabelCode,
    Attempts,
    LastError,
    NextAttemptAt,
    FlagHandledAt,
    CreatedAt,
    SubmittedAt,
    DecidedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `word` is stored normalised (lower case, half-width, no whitespace), so the unique index also refuses
        // "代 考" next to "代考".
        manager
            .create_table(
                Table::create()
                    .table(BlockedWords::Table)
                    .col(big_pk_auto(BlockedWords::Id))
                    .col(string_len_uniq(BlockedWords::Word, 100))
                    .col(string_len(BlockedWords::Action, 16))
                    .col(string_len(BlockedWords::Label, 32))
                    .col(timestamp_with_time_zone(BlockedWords::CreatedAt))
                    .to_owned(),
            )
            .await?;

        // `trace_id` is NULL while a check could not be submitted yet (WeChat unreachable); several NULLs are
        // allowed by the unique index on both SQLite and PostgreSQL.
        manager
            .create_table(
                Table::create()
                    .table(MediaChecks::Table)
                    .col(big_pk_auto(MediaChecks::Id))
                    .col(string_len_null(MediaChecks::TraceId, 128).unique_key())
                    .col(string_len(MediaChecks::TargetType, 32))
                    .col(big_integer(MediaChecks::TargetId))
                    .col(big_integer_null(MediaChecks::ImageId))
                    .col(string_len(MediaChecks::Openid, 64))
                    .col(integer(MediaChecks::Scene))
                    .col(string_len(MediaChecks::MediaUrl, 1024))
                    .col(string_len(MediaChecks::Status, 16).default("pending"))
                    .col(string_len_null(MediaChecks::Label, 32))
                    .col(big_integer_null(MediaChecks::LabelCode))
                    .col(integer(MediaChecks::Attempts).default(0))
                    .col(string_len_null(MediaChecks::LastError, 400))
                    .col(timestamp_with_time_zone_null(MediaChecks::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(MediaChecks::FlagHandledAt))
                    .col(timestamp_with_time_zone(MediaChecks::CreatedAt))
                    .col(timestamp_with_time_zone_null(MediaChecks::SubmittedAt))
                    .col(timestamp_with_time_zone_null(MediaChecks::DecidedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_media_checks_target")
                    .table(MediaChecks::Table)
                    .col(MediaChecks::TargetType)
                    .col(MediaChecks::TargetId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_media_checks_due")
                    .table(MediaChecks::Table)
                    .col(MediaChecks::Status)
                    .col(MediaChecks::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MediaChecks::Table.into_iden(),
            BlockedWords::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
