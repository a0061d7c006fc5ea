//! Search: the full-text index of listings, the query statistics behind hot queries and suggestions, students'
//! search history, saved searches, and the queue of newly published listings that saved searches are matched
//! against.
//!
//! The index is the one backend-specific table: an FTS5 virtual table on SQLite, a `tsvector` column with a GIN
//! index on PostgreSQL (see `server/src/search/index.rs`). Both are filled by the service (which segments the
//! Chinese text with jieba); listings that exist when this migration runs are indexed by the service's
//! start-up backfill.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

use crate::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SearchPublications {
    Table,
    Id,
    ListingId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SavedSearches {
    Table,
    Id,
    UserId,
    SchoolId,
    Q,
    CategoryId,
    CampusId,
    Conditions,
    MinPrice,
    MaxPrice,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SavedSearchHits {
    Table,
    SavedSearchId,
    ListingId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SearchQueryStats {
    Table,
    SchoolId,
    Day,
    Q,
    Searches,
}

#[derive(DeriveIden)]
enum SearchHistory {
    Table,
    UserId,
    Q,
    SearchedAt,
}

#[derive(DeriveIden)]
enum Listings {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE TABLE listing_search (
                        listing_id BIGINT PRIMARY KEY REFERENCES listings (id) ON DELETE CASCADE,
                        doc TSVECTOR NOT NULL
                    )",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE INDEX ix_listing_search_doc ON listing_search USING GIN (doc)",
                )
                .await?;
            }
            _ => {
                // rowid = listing id. No stored content (the text lives in `listings`); deletable rows.
                db.execute_unprepared(
                    "CREATE VIRTUAL TABLE listing_search USING fts5(
                        title, category, body,
                        content = '', contentless_delete = 1, tokenize = 'ascii'
                    )",
                )
                .await?;
            }
        }

        // Listings that became public (published on sale, or approved from review), waiting to be matched
        // against saved searches. A row leaves the queue in the transaction that writes its notifications.
        manager
            .create_table(
                Table::create()
                    .table(SearchPublications::Table)
                    .col(big_pk_auto(SearchPublications::Id))
                    .col(big_integer(SearchPublications::ListingId))
                    .col(timestamp_with_time_zone(SearchPublications::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_search_publications_listing",
                        (SearchPublications::Table, SearchPublications::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SavedSearches::Table)
                    .col(big_pk_auto(SavedSearches::Id))
                    .col(big_integer(SavedSearches::UserId))
                    .col(big_integer(SavedSearches::SchoolId))
                    .col(string_len(SavedSearches::Q, 100))
                    .col(big_integer_null(SavedSearches::CategoryId))
                    .col(big_integer_null(SavedSearches::CampusId))
                    // Comma-separated conditions; empty means any.
                    .col(string_len(SavedSearches::Conditions, 64))
                    .col(big_integer_null(SavedSearches::MinPrice))
                    .col(big_integer_null(SavedSearches::MaxPrice))
                    .col(timestamp_with_time_zone(SavedSearches::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_saved_searches_user",
                        (SavedSearches::Table, SavedSearches::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "ix_saved_searches_user",
                vec![SavedSearches::UserId, SavedSearches::Id],
            ),
            (
                "ix_saved_searches_school",
                vec![SavedSearches::SchoolId, SavedSearches::Id],
            ),
        ] {
            let mut ix = Index::create();
            ix.name(name).table(SavedSearches::Table);
            for c in cols {
                ix.col(c);
            }
            manager.create_index(ix.to_owned()).await?;
        }

        // One row per listing a saved search has notified about: the guard that makes notifying exactly-once.
        manager
            .create_table(
                Table::create()
                    .table(SavedSearchHits::Table)
                    .col(big_integer(SavedSearchHits::SavedSearchId))
                    .col(big_integer(SavedSearchHits::ListingId))
                    .col(timestamp_with_time_zone(SavedSearchHits::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(SavedSearchHits::SavedSearchId)
                            .col(SavedSearchHits::ListingId),
                    )
                    .foreign_key(&mut fk(
                        "fk_saved_search_hits_search",
                        (SavedSearchHits::Table, SavedSearchHits::SavedSearchId),
                        (SavedSearches::Table, SavedSearches::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_saved_search_hits_listing",
                        (SavedSearchHits::Table, SavedSearchHits::ListingId),
                        (Listings::Table, Listings::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        // How often each normalised query was searched per school (0: no school) and day (days since 1970).
        manager
            .create_table(
                Table::create()
                    .table(SearchQueryStats::Table)
                    .col(big_integer(SearchQueryStats::SchoolId))
                    .col(integer(SearchQueryStats::Day))
                    .col(string_len(SearchQueryStats::Q, 100))
                    .col(big_integer(SearchQueryStats::Searches))
                    .primary_key(
                        Index::create()
                            .col(SearchQueryStats::SchoolId)
                            .col(SearchQueryStats::Day)
                            .col(SearchQueryStats::Q),
                    )
                    .to_owned(),
            )
            .await?;

        // A student's recent distinct queries (capped by the service).
        manager
            .create_table(
                Table::create()
                    .table(SearchHistory::Table)
                    .col(big_integer(SearchHistory::UserId))
                    .col(string_len(SearchHistory::Q, 100))
                    .col(timestamp_with_time_zone(SearchHistory::SearchedAt))
                    .primary_key(
                        Index::create()
                            .col(SearchHistory::UserId)
                            .col(SearchHistory::Q),
                    )
                    .foreign_key(&mut fk(
                        "fk_search_history_user",
                        (SearchHistory::Table, SearchHistory::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            SearchHistory::Table.into_iden(),
            SearchQueryStats::Table.into_iden(),
            SavedSearchHits::Table.into_iden(),
            SavedSearches::Table.into_iden(),
            SearchPublications::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE listing_search")
            .await?;
        Ok(())
    }
}
