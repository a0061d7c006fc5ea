//! The campus circle: boards per school (seeded for every school that exists), posts with their linked
//! listings, comments nested one level, votes, reports of anything a student can see, and user blocks.

use sea_orm_migration::{prelude::*, schema::*};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schools {
    Table,
    Id,
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
enum Boards {
    Table,
    Id,
    SchoolId,
    Slug,
    Name,
    Position,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Posts {
    Table,
    Id,
    SchoolId,
    BoardId,
    AuthorId,
    Title,
    Body,
    Anonymous,
    Status,
    ModerationLabel,
    Pinned,
    Locked,
    Score,
    Upvotes,
    Downvotes,
    CommentCount,
    Hot,
    WantedKeyword,
    PriceCeiling,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum PostListings {
    Table,
    PostId,
    ListingId,
    Position,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    PostId,
    AuthorId,
    ParentId,
    ReplyToId,
    Anonymous,
    Body,
    Status,
    ModerationLabel,
    Score,
    Upvotes,
    Downvotes,
    ReplyCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Votes {
    Table,
    UserId,
    TargetType,
    TargetId,
    Value,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Reports {
    Table,
    Id,
    ReporterId,
    TargetType,
    TargetId,
    Reason,
    Details,
    Status,
    Decision,
    CreatedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum UserBlocks {
    Table,
    BlockerId,
    BlockedId,
    CreatedAt,
}

/// The seeded boards: (slug, name, position).
const BOARDS: &[(&str, &str)] = &[
    ("help", "求助"),
    ("chat", "闲聊"),
    ("wanted", "求购"),
    ("lost-and-found", "失物招领"),
    ("events", "活动"),
    ("graduation", "毕业季"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Boards::Table)
                    .col(big_pk_auto(Boards::Id))
                    .col(big_integer(Boards::SchoolId))
                    .col(string_len(Boards::Slug, 32))
                    .col(string_len(Boards::Name, 20))
                    .col(integer(Boards::Position).default(0))
                    .col(timestamp_with_time_zone(Boards::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_boards_school",
                        (Boards::Table, Boards::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_boards_school_slug")
                    .table(Boards::Table)
                    .col(Boards::SchoolId)
                    .col(Boards::Slug)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Posts::Table)
                    .col(big_pk_auto(Posts::Id))
                    .col(big_integer(Posts::SchoolId))
                    .col(big_integer(Posts::BoardId))
                    .col(big_integer(Posts::AuthorId))
                    .col(string_len(Posts::Title, 160))
                    .col(text(Posts::Body))
                    .col(boolean(Posts::Anonymous).default(false))
                    .col(string_len(Posts::Status, 16))
                    .col(string_len_null(Posts::ModerationLabel, 40))
                    .col(boolean(Posts::Pinned).default(false))
                    .col(boolean(Posts::Locked).default(false))
                    .col(big_integer(Posts::Score).default(0))
                    .col(big_integer(Posts::Upvotes).default(0))
                    .col(big_integer(Posts::Downvotes).default(0))
                    .col(big_integer(Posts::CommentCount).default(0))
                    .col(double(Posts::Hot).default(0.0))
                    .col(string_len_null(Posts::WantedKeyword, 40))
                    .col(big_integer_null(Posts::PriceCeiling))
                    .col(timestamp_with_time_zone(Posts::CreatedAt))
                    .col(timestamp_with_time_zone(Posts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Posts::DeletedAt))
                    .foreign_key(&mut fk(
                        "fk_posts_school",
                        (Posts::Table, Posts::SchoolId),
                        (Schools::Table, Schools::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_posts_board",
                        (Posts::Table, Posts::BoardId),
                        (Boards::Table, Boards::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_posts_author",
                        (Posts::Table, Posts::AuthorId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "ix_posts_board_hot",
                vec![Posts::BoardId, Posts::Hot, Posts::Id],
            ),
            (
                "ix_posts_board_new",
                vec![Posts::BoardId, Posts::CreatedAt, Posts::Id],
            ),
            (
                "ix_posts_school_hot",
                vec![Posts::SchoolId, Posts::Hot, Posts::Id],
            ),
            (
                "ix_posts_school_new",
                vec![Posts::SchoolId, Posts::CreatedAt, Posts::Id],
            ),
            ("ix_posts_author", vec![Posts::AuthorId, Posts::Id]),
            (
                "ix_posts_wanted",
                vec![Posts::SchoolId, Posts::PriceCeiling],
            ),
        ] {
            let mut idx = Index::create().name(name).table(Posts::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(PostListings::Table)
                    .col(big_integer(PostListings::PostId))
                    .col(big_integer(PostListings::ListingId))
                    .col(integer(PostListings::Position).default(0))
                    .primary_key(
                        Index::create()
                            .col(PostListings::PostId)
                            .col(PostListings::ListingId),
                    )
                    .foreign_key(&mut fk(
                        "fk_post_listings_post",
                        (PostListings::Table, PostListings::PostId),
                        (Posts::Table, Posts::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_post_listings_listing",
                        (PostListings::Table, PostListings::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Comments::Table)
                    .col(big_pk_auto(Comments::Id))
                    .col(big_integer(Comments::PostId))
                    .col(big_integer(Comments::AuthorId))
                    .col(big_integer_null(Comments::ParentId))
                    .col(big_integer_null(Comments::ReplyToId))
                    .col(boolean(Comments::Anonymous).default(false))
                    .col(text(Comments::Body))
                    .col(string_len(Comments::Status, 16))
                    .col(string_len_null(Comments::ModerationLabel, 40))
                    .col(big_integer(Comments::Score).default(0))
                    .col(big_integer(Comments::Upvotes).default(0))
                    .col(big_integer(Comments::Downvotes).default(0))
                    .col(big_integer(Comments::ReplyCount).default(0))
                    .col(timestamp_with_time_zone(Comments::CreatedAt))
                    .col(timestamp_with_time_zone(Comments::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_comments_post",
                        (Comments::Table, Comments::PostId),
                        (Posts::Table, Posts::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_comments_author",
                        (Comments::Table, Comments::AuthorId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut fk(
                        "fk_comments_parent",
                        (Comments::Table, Comments::ParentId),
                        (Comments::Table, Comments::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_comments_thread")
                    .table(Comments::Table)
                    .col(Comments::PostId)
                    .col(Comments::ParentId)
                    .col(Comments::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_comments_parent")
                    .table(Comments::Table)
                    .col(Comments::ParentId)
                    .col(Comments::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Votes::Table)
                    .col(big_integer(Votes::UserId))
                    .col(string_len(Votes::TargetType, 16))
                    .col(big_integer(Votes::TargetId))
                    .col(small_integer(Votes::Value).default(0))
                    .col(timestamp_with_time_zone(Votes::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(Votes::UserId)
                            .col(Votes::TargetType)
                            .col(Votes::TargetId),
                    )
                    .foreign_key(&mut fk(
                        "fk_votes_user",
                        (Votes::Table, Votes::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_votes_target")
                    .table(Votes::Table)
                    .col(Votes::TargetType)
                    .col(Votes::TargetId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Reports::Table)
                    .col(big_pk_auto(Reports::Id))
                    .col(big_integer(Reports::ReporterId))
                    .col(string_len(Reports::TargetType, 16))
                    .col(big_integer(Reports::TargetId))
                    .col(string_len(Reports::Reason, 32))
                    .col(string_len_null(Reports::Details, 1000))
                    .col(string_len(Reports::Status, 16))
                    .col(string_len_null(Reports::Decision, 16))
                    .col(timestamp_with_time_zone(Reports::CreatedAt))
                    .col(timestamp_with_time_zone_null(Reports::ResolvedAt))
                    .foreign_key(&mut fk(
                        "fk_reports_reporter",
                        (Reports::Table, Reports::ReporterId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // One open report per reporter per target; a resolved one does not stop a new report.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_reports_open ON reports (reporter_id, target_type, target_id) \
                 WHERE status = 'open'",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_reports_queue")
                    .table(Reports::Table)
                    .col(Reports::Status)
                    .col(Reports::TargetType)
                    .col(Reports::TargetId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserBlocks::Table)
                    .col(big_integer(UserBlocks::BlockerId))
                    .col(big_integer(UserBlocks::BlockedId))
                    .col(timestamp_with_time_zone(UserBlocks::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(UserBlocks::BlockerId)
                            .col(UserBlocks::BlockedId),
                    )
                    .foreign_key(&mut fk(
                        "fk_user_blocks_blocker",
                        (UserBlocks::Table, UserBlocks::BlockerId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_user_blocks_blocked",
                        (UserBlocks::Table, UserBlocks::BlockedId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        // The six boards for every school there is.
        let now = chrono::Utc::now();
        for (pos, (slug, name)) in BOARDS.iter().enumerate() {
            manager
                .exec_stmt(
                    Query::insert()
                        .into_table(Boards::Table)
                        .columns([
                            Boards::SchoolId,
                            Boards::Slug,
                            Boards::Name,
                            Boards::Position,
                            Boards::CreatedAt,
                        ])
                        .select_from(
                            Query::select()
                                .expr(Expr::col(Schools::Id))
                                .expr(Expr::val(*slug))
                                .expr(Expr::val(*name))
                                .expr(Expr::val(pos as i32))
                                .expr(Expr::val(now))
                                .from(Schools::Table)
                                .to_owned(),
                        )
                        .map_err(|e| DbErr::Custom(e.to_string()))?
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UserBlocks::Table.into_iden(),
            Reports::Table.into_iden(),
            Votes::Table.into_iden(),
            Comments::Table.into_iden(),
            PostListings::Table.into_iden(),
            Posts::Table.into_iden(),
            Boards::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
