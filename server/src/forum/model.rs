//! Tables of the campus circle and its plain rules: the content status, the hot rank and the edit window.

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::StringLen;

pub mod board {
    use sea_orm::entity::prelude::*;

    /// A board of a school's campus circle (求助, 闲聊, …).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "boards")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: i64,
        /// Stable English identifier (`help`, `chat`, `wanted`, `lost-and-found`, `events`, `graduation`).
        pub slug: String,
        pub name: String,
        pub position: i32,
        /// Hidden by an operator: not listed and closed to new posts (a board in use cannot be deleted).
        pub hidden: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod post {
    use sea_orm::entity::prelude::*;

    pub use super::Status;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: i64,
        pub board_id: i64,
        /// Never shown to others when `anonymous`.
        pub author_id: i64,
        pub title: String,
        pub body: String,
        pub anonymous: bool,
        pub status: Status,
        pub moderation_label: Option<String>,
        /// Set by operators; pinned posts come first on the first page.
        pub pinned: bool,
        /// A locked post takes no new comments.
        pub locked: bool,
        pub score: i64,
        pub upvotes: i64,
        pub downvotes: i64,
        pub comment_count: i64,
        /// [`super::hot`] of the score and the creation time; recomputed on every vote.
        pub hot: f64,
        /// A wanted post's saved search: new listings whose text contains this word …
        pub wanted_keyword: Option<String>,
        /// … at or under this price (fen) notify the author.
        pub price_ceiling: Option<i64>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub deleted_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod post_listing {
    use sea_orm::entity::prelude::*;

    /// A listing a post links to.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "post_listings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub post_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub listing_id: i64,
        pub position: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod comment {
    use sea_orm::entity::prelude::*;

    pub use super::Status;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "comments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub post_id: i64,
        pub author_id: i64,
        /// The top-level comment this reply hangs under; `None` for a top-level comment.
        pub parent_id: Option<i64>,
        /// The comment this one answers (the parent, or another reply under it).
        pub reply_to_id: Option<i64>,
        pub anonymous: bool,
        pub body: String,
        pub status: Status,
        pub moderation_label: Option<String>,
        pub score: i64,
        pub upvotes: i64,
        pub downvotes: i64,
        pub reply_count: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod vote {
    use sea_orm::entity::prelude::*;

    /// One user's vote on a post or a comment: 1, -1, or 0 once cleared.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "votes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_type: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_id: i64,
        pub value: i16,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Where a post or a comment stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[oai(rename = "PostStatus", rename_all = "snake_case")]
pub enum Status {
    /// Visible to everyone.
    #[sea_orm(string_value = "published")]
    Published,
    /// Held by content security; only the author sees it.
    #[sea_orm(string_value = "pending_review")]
    PendingReview,
    /// Hidden after reports from enough students, until an operator decides; only the author sees it.
    #[sea_orm(string_value = "hidden")]
    Hidden,
    /// Taken down by an operator.
    #[sea_orm(string_value = "removed")]
    Removed,
    /// Deleted by its author; the thread stays readable with a placeholder.
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

impl Status {
    /// Whether `viewer_is_author` may read the content (title, body, images).
    pub fn readable(self, viewer_is_author: bool) -> bool {
        match self {
            Status::Published => true,
            Status::PendingReview | Status::Hidden => viewer_is_author,
            Status::Removed | Status::Deleted => false,
        }
    }
}

/// How long an author may edit a post (as long as nobody commented yet).
pub const EDIT_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// The zero of the hot rank's time term.
pub fn hot_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// Reddit-style hot rank: `sign(score)·log10(max(|score|, 1)) + (created_at − 2026-01-01) / 45000 s`.
/// Ten times the score is worth 12.5 hours of freshness; the rank of a post changes only when it is voted on,
/// so it is stored and paged by keyset.
pub fn hot(score: i64, created_at: DateTime<Utc>) -> f64 {
    let order = (score.unsigned_abs().max(1) as f64).log10();
    let sign = score.signum() as f64;
    sign * order + (created_at - hot_epoch()).num_seconds() as f64 / 45_000.0
}

/// Whether the author may still edit a post created at `created_at` with `comments` comments, at `now`.
pub fn editable(created_at: DateTime<Utc>, comments: i64, now: DateTime<Utc>) -> bool {
    comments == 0 && now - created_at < EDIT_WINDOW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_rank_trades_votes_for_freshness() {
        let t = hot_epoch() + chrono::Duration::days(30);
        assert_eq!(hot(0, t), hot(1, t), "one vote is the floor");
        assert!(hot(10, t) > hot(1, t));
        assert!(hot(-10, t) < hot(0, t));
        // Ten times the score is worth 45000 seconds (12.5 h).
        let later = t + chrono::Duration::seconds(45_000);
        assert!((hot(10, t) - hot(1, later)).abs() < 1e-9);
    }

    #[test]
    fn edits_close_after_a_day_or_the_first_comment() {
        let now = Utc::now();
        assert!(editable(now - chrono::Duration::hours(23), 0, now));
        assert!(!editable(now - chrono::Duration::hours(25), 0, now));
        assert!(!editable(now, 1, now));
    }

    #[test]
    fn only_authors_read_held_content() {
        assert!(Status::Published.readable(false));
        assert!(!Status::PendingReview.readable(false) && Status::PendingReview.readable(true));
        assert!(!Status::Deleted.readable(true));
    }
}
