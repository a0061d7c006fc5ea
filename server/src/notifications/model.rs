//! The inbox table.

pub mod notification {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        /// What happened, e.g. `listing_held`, `verification_approved`, `post_commented`.
        pub kind: String,
        pub title: String,
        pub body: String,
        /// What it is about (`listing`, `post`, `comment`, `verification`), for the client to link to.
        pub target_type: Option<String>,
        pub target_id: Option<i64>,
        pub read_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
