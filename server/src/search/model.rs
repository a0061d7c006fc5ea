//! Tables of search (besides the backend-specific full-text index, which is written with raw SQL in
//! `index.rs`): saved searches and the rows that make their notifications exactly-once, the queue of newly
//! published listings, query statistics and search history.

pub mod saved_search {
    use sea_orm::entity::prelude::*;

    /// What a student waits for: new listings of their school matching `q` and the filters.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saved_searches")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub school_id: i64,
        /// The normalised query.
        pub q: String,
        pub category_id: Option<i64>,
        pub campus_id: Option<i64>,
        /// Comma-separated conditions; empty means any.
        pub conditions: String,
        pub min_price: Option<i64>,
        pub max_price: Option<i64>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod saved_search_hit {
    use sea_orm::entity::prelude::*;

    /// A saved search told its owner about a listing (at most once: the primary key).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saved_search_hits")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub saved_search_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub listing_id: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod publication {
    use sea_orm::entity::prelude::*;

    /// A listing that just became public, waiting to be matched against saved searches.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "search_publications")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub listing_id: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod query_stat {
    use sea_orm::entity::prelude::*;

    /// Searches of one normalised query in one school (0: none) on one day (days since 1970-01-01, UTC).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "search_query_stats")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub school_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub q: String,
        pub searches: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod history {
    use sea_orm::entity::prelude::*;

    /// A query a student searched, with when they last searched it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "search_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub q: String,
        pub searched_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
