pub mod image {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "images")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub owner_id: i64,
        pub display_key: String,
        pub thumb_key: String,
        pub width: i32,
        pub height: i32,
        pub bytes: i64,
        pub sha256: String,
        pub target_type: Option<String>,
        pub target_id: Option<i64>,
        pub position: Option<i32>,
        pub created_at: DateTimeUtc,
        pub attached_at: Option<DateTimeUtc>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}
