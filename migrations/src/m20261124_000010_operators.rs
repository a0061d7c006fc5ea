//! The operators' side: operator accounts (argon2id passwords, lockout, optional TOTP), the schools each may act
//! on, their sessions (a table of their own, so a student token can never resolve as an operator's), the audit
//! log, typed site settings, a `hidden` flag on forum boards, and the indexes that make the dashboard's per-day
//! counts and the moderation queue cheap.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Operators {
    Table,
    Id,
    Username,
    PasswordHash,
    Role,
    AllSchools,
    Disabled,
    FailedAttempts,
    LockedUntil,
    TotpSecret,
    TotpPendingSecret,
    TotpLastStep,
    LastLoginAt,
    PasswordChangedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OperatorSchools {
    Table,
    OperatorId,
    SchoolId,
}

#[derive(DeriveIden)]
enum OperatorSessions {
    Table,
    TokenHash,
    OperatorId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OperatorId,
    OperatorName,
    Action,
    TargetType,
    TargetId,
    SchoolId,
    Before,
    After,
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SiteSettings {
    Table,
    Key,
    Value,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Schools {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Boards {
    Table,
    Hidden,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Operators::Table)
                    .col(big_pk_auto(Operators::Id))
                    .col(string_len_uniq(Operators::Username, 32))
                    .col(string_len(Operators::PasswordHash, 255))
                    .col(string_len(Operators::Role, 16))
                    .col(boolean(Operators::AllSchools).default(false))
                    .col(boolean(Operators::Disabled).default(false))
                    .col(integer(Operators::FailedAttempts).default(0))
                    .col(timestamp_with_time_zone_null(Operators::LockedUntil))
                    .col(string_len_null(Operators::TotpSecret, 64))
                    .col(string_len_null(Operators::TotpPendingSecret, 64))
                    .col(big_integer_null(Operators::TotpLastStep))
                    .col(timestamp_with_time_zone_null(Operators::LastLoginAt))
                    .col(timestamp_with_time_zone(Operators::PasswordChangedAt))
                    .col(timestamp_with_time_zone(Operators::CreatedAt))
                    .col(timestamp_with_time_zone(Operators::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OperatorSchools::Table)
                    .col(big_integer(OperatorSchools::OperatorId))
                    .col(big_integer(OperatorSchools::SchoolId))
                    .primary_key(
                        Index::create()
                            .col(OperatorSchools::OperatorId)
                            .col(OperatorSchools::SchoolId),
                    )
                    .foreign_key(&mut fk(
                        "fk_operator_schools_operator",
                        (OperatorSchools::Table, OperatorSchools::OperatorId),
                        (Operators::Table, Operators::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_operator_schools_school",
                        (OperatorSchools::Table, OperatorSchools::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OperatorSessions::Table)
                    .col(string_len(OperatorSessions::TokenHash, 64).primary_key())
                    .col(big_integer(OperatorSessions::OperatorId))
                    .col(timestamp_with_time_zone(OperatorSessions::CreatedAt))
                    .col(timestamp_with_time_zone(OperatorSessions::ExpiresAt))
                    .foreign_key(&mut fk(
                        "fk_operator_sessions_operator",
                        (OperatorSessions::Table, OperatorSessions::OperatorId),
                        (Operators::Table, Operators::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            (
                "ix_operator_sessions_operator",
                OperatorSessions::OperatorId,
            ),
            ("ix_operator_sessions_expires", OperatorSessions::ExpiresAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(OperatorSessions::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }

        // The audit log references operators by id and keeps their name, so a row stays readable whatever
        // happens to the account later (accounts are disabled, never deleted). No foreign key to the targets:
        // the log outlives what it describes.
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk_auto(AuditLog::Id))
                    .col(big_integer_null(AuditLog::OperatorId))
                    .col(string_len(AuditLog::OperatorName, 32))
                    .col(string_len(AuditLog::Action, 64))
                    .col(string_len_null(AuditLog::TargetType, 32))
                    .col(big_integer_null(AuditLog::TargetId))
                    .col(big_integer_null(AuditLog::SchoolId))
                    .col(json_null(AuditLog::Before))
                    .col(json_null(AuditLog::After))
                    .col(text_null(AuditLog::Reason))
                    .col(timestamp_with_time_zone(AuditLog::CreatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "ix_audit_operator",
                vec![AuditLog::OperatorId, AuditLog::Id],
            ),
            (
                "ix_audit_target",
                vec![AuditLog::TargetType, AuditLog::TargetId, AuditLog::Id],
            ),
            ("ix_audit_action", vec![AuditLog::Action, AuditLog::Id]),
            ("ix_audit_school", vec![AuditLog::SchoolId, AuditLog::Id]),
            ("ix_audit_created", vec![AuditLog::CreatedAt]),
        ] {
            let mut idx = Index::create().name(name).table(AuditLog::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(SiteSettings::Table)
                    .col(string_len(SiteSettings::Key, 64).primary_key())
                    .col(json(SiteSettings::Value))
                    .col(big_integer_null(SiteSettings::UpdatedBy))
                    .col(timestamp_with_time_zone(SiteSettings::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // A board in use cannot be deleted, only hidden.
        manager
            .alter_table(
                Table::alter()
                    .table(Boards::Table)
                    .add_column(boolean(Boards::Hidden).default(false))
                    .to_owned(),
            )
            .await?;

        // The dashboard's per-day counts (range scans by time, optionally per school) and the moderation queue
        // (partial indexes over what waits for a human).
        let db = manager.get_connection();
        for sql in [
            "CREATE INDEX ix_users_created ON users (created_at)",
            "CREATE INDEX ix_users_school_created ON users (school_id, created_at)",
            "CREATE INDEX ix_listings_created ON listings (created_at)",
            "CREATE INDEX ix_listings_school_created ON listings (school_id, created_at)",
            "CREATE INDEX ix_verification_requests_decided ON verification_requests (status, decided_at)",
            "CREATE INDEX ix_listings_review ON listings (updated_at, id) WHERE status = 'pending_review'",
            "CREATE INDEX ix_posts_review ON posts (updated_at, id) WHERE status IN ('pending_review', 'hidden')",
            "CREATE INDEX ix_comments_review ON comments (updated_at, id) WHERE status IN ('pending_review', 'hidden')",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for name in [
            "ix_users_created",
            "ix_users_school_created",
            "ix_listings_created",
            "ix_listings_school_created",
            "ix_verification_requests_decided",
            "ix_listings_review",
            "ix_posts_review",
            "ix_comments_review",
        ] {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Boards::Table)
                    .drop_column(Boards::Hidden)
                    .to_owned(),
            )
            .await?;
        for table in [
            SiteSettings::Table.into_iden(),
            AuditLog::Table.into_iden(),
            OperatorSessions::Table.into_iden(),
            OperatorSchools::Table.into_iden(),
            Operators::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
