//! The foundation: schools and campuses, users, sessions, and student verification (requests, verified
//! identities, uploaded rosters). Seeds one demo school so a fresh install has something to pick.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schools {
    Table,
    Id,
    Slug,
    Name,
    ShortName,
    RequiresVerification,
    RosterSalt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Campuses {
    Table,
    Id,
    SchoolId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Openid,
    Unionid,
    Nickname,
    AvatarUrl,
    Bio,
    SchoolId,
    CampusId,
    Status,
    BanReason,
    BannedUntil,
    VerifiedSchoolId,
    VerifiedUntil,
    CreatedAt,
    UpdatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    TokenHash,
    UserId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum VerificationRequests {
    Table,
    Id,
    UserId,
    SchoolId,
    StudentNumberHash,
    StudentNumberMasked,
    RealName,
    GraduationYear,
    Status,
    DecidedBy,
    RejectReason,
    CreatedAt,
    DecidedAt,
}

#[derive(DeriveIden)]
enum StudentIdentities {
    Table,
    SchoolId,
    NumberHash,
    UserId,
    VerifiedUntil,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RosterEntries {
    Table,
    SchoolId,
    NumberHash,
    GraduationYear,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schools::Table)
                    .col(big_pk_auto(Schools::Id))
                    .col(string_len_uniq(Schools::Slug, 64))
                    .col(string_len(Schools::Name, 100))
                    .col(string_len(Schools::ShortName, 40))
                    .col(boolean(Schools::RequiresVerification).default(false))
                    .col(string_len(Schools::RosterSalt, 64))
                    .col(timestamp_with_time_zone(Schools::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Campuses::Table)
                    .col(big_pk_auto(Campuses::Id))
                    .col(big_integer(Campuses::SchoolId))
                    .col(string_len(Campuses::Name, 100))
                    .col(timestamp_with_time_zone(Campuses::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_campuses_school",
                        (Campuses::Table, Campuses::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_campuses_school_name")
                    .table(Campuses::Table)
                    .col(Campuses::SchoolId)
                    .col(Campuses::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(string_len_uniq(Users::Openid, 64))
                    .col(string_len_null(Users::Unionid, 64))
                    .col(string_len(Users::Nickname, 40))
                    .col(string_len_null(Users::AvatarUrl, 512))
                    .col(string_len(Users::Bio, 400).default(""))
                    .col(big_integer_null(Users::SchoolId))
                    .col(big_integer_null(Users::CampusId))
                    .col(string_len(Users::Status, 16).default("active"))
                    .col(string_len_null(Users::BanReason, 400))
                    .col(timestamp_with_time_zone_null(Users::BannedUntil))
                    .col(big_integer_null(Users::VerifiedSchoolId))
                    .col(timestamp_with_time_zone_null(Users::VerifiedUntil))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Users::LastLoginAt))
                    .foreign_key(&mut fk(
                        "fk_users_school",
                        (Users::Table, Users::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_users_campus",
                        (Users::Table, Users::CampusId),
                        (Campuses::Table, Campuses::Id),
                        ForeignKeyAction::SetNull,
                    ))
                    .foreign_key(&mut fk(
                        "fk_users_verified_school",
                        (Users::Table, Users::VerifiedSchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_users_school")
                    .table(Users::Table)
                    .col(Users::SchoolId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(string_len(Sessions::TokenHash, 64).primary_key())
                    .col(big_integer(Sessions::UserId))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                    .foreign_key(&mut fk(
                        "fk_sessions_user",
                        (Sessions::Table, Sessions::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sessions_user")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_sessions_expires")
                    .table(Sessions::Table)
                    .col(Sessions::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(VerificationRequests::Table)
                    .col(big_pk_auto(VerificationRequests::Id))
                    .col(big_integer(VerificationRequests::UserId))
                    .col(big_integer(VerificationRequests::SchoolId))
                    .col(string_len(VerificationRequests::StudentNumberHash, 64))
                    .col(string_len(VerificationRequests::StudentNumberMasked, 32))
                    .col(string_len_null(VerificationRequests::RealName, 64))
                    .col(integer(VerificationRequests::GraduationYear))
                    .col(string_len(VerificationRequests::Status, 16))
                    .col(string_len_null(VerificationRequests::DecidedBy, 64))
                    .col(string_len_null(VerificationRequests::RejectReason, 400))
                    .col(timestamp_with_time_zone(VerificationRequests::CreatedAt))
                    .col(timestamp_with_time_zone_null(
                        VerificationRequests::DecidedAt,
                    ))
                    .foreign_key(&mut fk(
                        "fk_verification_requests_user",
                        (VerificationRequests::Table, VerificationRequests::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_verification_requests_school",
                        (VerificationRequests::Table, VerificationRequests::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_verification_requests_user")
                    .table(VerificationRequests::Table)
                    .col(VerificationRequests::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_verification_requests_queue")
                    .table(VerificationRequests::Table)
                    .col(VerificationRequests::Status)
                    .col(VerificationRequests::SchoolId)
                    .to_owned(),
            )
            .await?;

        // One verified account per student number per school: the primary key is the guarantee.
        manager
            .create_table(
                Table::create()
                    .table(StudentIdentities::Table)
                    .col(big_integer(StudentIdentities::SchoolId))
                    .col(string_len(StudentIdentities::NumberHash, 64))
                    .col(big_integer(StudentIdentities::UserId))
                    .col(timestamp_with_time_zone(StudentIdentities::VerifiedUntil))
                    .col(timestamp_with_time_zone(StudentIdentities::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(StudentIdentities::SchoolId)
                            .col(StudentIdentities::NumberHash),
                    )
                    .foreign_key(&mut fk(
                        "fk_student_identities_school",
                        (StudentIdentities::Table, StudentIdentities::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_student_identities_user",
                        (StudentIdentities::Table, StudentIdentities::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_student_identities_user")
                    .table(StudentIdentities::Table)
                    .col(StudentIdentities::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RosterEntries::Table)
                    .col(big_integer(RosterEntries::SchoolId))
                    .col(string_len(RosterEntries::NumberHash, 64))
                    .col(integer_null(RosterEntries::GraduationYear))
                    .col(timestamp_with_time_zone(RosterEntries::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RosterEntries::SchoolId)
                            .col(RosterEntries::NumberHash),
                    )
                    .foreign_key(&mut fk(
                        "fk_roster_entries_school",
                        (RosterEntries::Table, RosterEntries::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        seed_demo_school(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RosterEntries::Table.into_iden(),
            StudentIdentities::Table.into_iden(),
            VerificationRequests::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
            Campuses::Table.into_iden(),
            Schools::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

async fn seed_demo_school(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let now = chrono::Utc::now();
    let insert_school = Query::insert()
        .into_table(Schools::Table)
        .columns([
            Schools::Slug,
            Schools::Name,
            Schools::ShortName,
            Schools::RequiresVerification,
            Schools::RosterSalt,
            Schools::CreatedAt,
        ])
        .values_panic([
            "demo-university".into(),
            "示例大学".into(),
            "示大".into(),
            false.into(),
            crate::new_roster_salt().into(),
            now.into(),
        ])
        .to_owned();
    manager.exec_stmt(insert_school).await?;

    let school_id = Query::select()
        .column(Schools::Id)
        .from(Schools::Table)
        .and_where(Expr::col(Schools::Slug).eq("demo-university"))
        .to_owned();
    for campus in ["主校区", "东校区"] {
        let insert = Query::insert()
            .into_table(Campuses::Table)
            .columns([Campuses::SchoolId, Campuses::Name, Campuses::CreatedAt])
            .select_from(
                Query::select()
                    .expr(Expr::col(Schools::Id))
                    .expr(Expr::val(campus))
                    .expr(Expr::val(now))
                    .from(Schools::Table)
                    .and_where(Expr::col(Schools::Id).in_subquery(school_id.clone()))
                    .to_owned(),
            )
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .to_owned();
        manager.exec_stmt(insert).await?;
    }
    Ok(())
}
