//! The table of the images capability.

pub mod image {
    use sea_orm::entity::prelude::*;

    /// One uploaded photo: its two stored versions and what it is attached to.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "images")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The student who uploaded it; only they may attach it.
        pub owner_id: i64,
        /// Storage key of the display version (JPEG, longest side at most 1600 px).
        pub display_key: String,
        /// Storage key of the thumbnail (JPEG, longest side at most 400 px).
        pub thumb_key: String,
        /// Width of the display version, after the EXIF orientation was applied.
        pub width: i32,
        /// Height of the display version, after the EXIF orientation was applied.
        pub height: i32,
        /// Size of the display version in bytes.
        pub bytes: i64,
        /// Lower-case hex SHA-256 of the display version.
        pub sha256: String,
        /// Kind of object it is attached to (`listing`, `post`, …); `None` while unattached.
        pub target_type: Option<String>,
        pub target_id: Option<i64>,
        /// Place among the target's images, from 0.
        pub position: Option<i32>,
        pub created_at: DateTimeUtc,
        /// When it was first attached to its current target; `None` exactly when unattached.
        pub attached_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
