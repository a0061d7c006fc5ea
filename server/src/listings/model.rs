//! Tables and rules of listings: the status state machine, what a caller may do with a listing, and the
//! popularity score. The rules are plain functions so they are tested without HTTP or a database.

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::StringLen;

pub mod category {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "categories")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub parent_id: Option<i64>,
        pub slug: String,
        pub name_zh: String,
        pub name_en: String,
        pub position: i32,
        pub hidden: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod campus_place {
    use sea_orm::entity::prelude::*;

    /// A named place on a campus where students meet to hand items over.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "campus_places")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub campus_id: i64,
        pub name: String,
        pub position: i32,
        pub hidden: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod listing {
    use sea_orm::entity::prelude::*;

    pub use super::{Condition, Status};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "listings")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub seller_id: i64,
        pub school_id: i64,
        pub campus_id: Option<i64>,
        pub category_id: i64,
        pub title: String,
        pub description: String,
        /// Fen.
        pub price: i64,
        pub original_price: Option<i64>,
        pub condition: Condition,
        pub trade_meetup: bool,
        pub trade_delivery: bool,
        pub status: Status,
        /// Why content security or an operator held the listing back.
        pub moderation_label: Option<String>,
        pub cover_image_id: Option<i64>,
        pub view_count: i64,
        pub favorite_count: i64,
        pub chat_count: i64,
        pub hot_score: f64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// Position in the newest feed: publication time, moved forward by a bump.
        pub bumped_at: DateTimeUtc,
        pub sold_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "crate::users::model::user::Entity",
            from = "Column::SellerId",
            to = "crate::users::model::user::Column::Id"
        )]
        Seller,
    }

    impl Related<crate::users::model::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Seller.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod listing_place {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "listing_places")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub listing_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub place_id: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod price_change {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "listing_price_history")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub listing_id: i64,
        pub old_price: i64,
        pub new_price: i64,
        pub changed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod favorite {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "favorites")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub listing_id: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The life of a listing.
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
#[oai(rename_all = "snake_case")]
pub enum Status {
    /// Public and for sale.
    #[sea_orm(string_value = "on_sale")]
    OnSale,
    /// Public, but promised to a buyer.
    #[sea_orm(string_value = "reserved")]
    Reserved,
    /// Handed over. Content and price are frozen.
    #[sea_orm(string_value = "sold")]
    Sold,
    /// Taken off sale by the seller; can be relisted.
    #[sea_orm(string_value = "withdrawn")]
    Withdrawn,
    /// Held for an operator by content security; only the seller sees it.
    #[sea_orm(string_value = "pending_review")]
    PendingReview,
    /// Taken down by an operator.
    #[sea_orm(string_value = "removed")]
    Removed,
    /// Deleted by the seller; gone for everyone.
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::OnSale => "on_sale",
            Status::Reserved => "reserved",
            Status::Sold => "sold",
            Status::Withdrawn => "withdrawn",
            Status::PendingReview => "pending_review",
            Status::Removed => "removed",
            Status::Deleted => "deleted",
        }
    }

    /// Shown in public feeds and search.
    pub const PUBLIC: [Status; 2] = [Status::OnSale, Status::Reserved];

    /// Whether someone other than the seller may open the listing.
    pub fn visible_to_others(self) -> bool {
        matches!(self, Status::OnSale | Status::Reserved | Status::Sold)
    }

    /// Whether the seller may still change content and price.
    pub fn editable(self) -> bool {
        matches!(
            self,
            Status::OnSale | Status::Reserved | Status::Withdrawn | Status::PendingReview
        )
    }
}

/// What a seller declares about the item's state.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    poem_openapi::Enum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[oai(rename_all = "snake_case")]
pub enum Condition {
    #[sea_orm(string_value = "new")]
    New,
    #[sea_orm(string_value = "like_new")]
    LikeNew,
    #[sea_orm(string_value = "good")]
    Good,
    #[sea_orm(string_value = "fair")]
    Fair,
    #[sea_orm(string_value = "poor")]
    Poor,
}

/// A status change and who may ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Seller takes the item off sale.
    Withdraw,
    /// Seller puts a withdrawn item back on sale (back to review when content security holds it).
    Relist,
    /// Seller promises the item to someone.
    Reserve,
    /// Seller releases a reservation.
    Unreserve,
    /// Seller records an offline hand-over (orders also use this).
    MarkSold,
    /// Seller deletes the listing.
    Delete,
    /// Content security or an operator holds the listing for review.
    HoldForReview,
    /// An operator approves a held listing.
    Approve,
    /// An operator takes the listing down.
    Remove,
}

impl Transition {
    /// The statuses this transition may start from, and where it leads.
    pub fn rule(self) -> (&'static [Status], Status) {
        use Status::*;
        match self {
            Transition::Withdraw => (&[OnSale, Reserved, PendingReview], Withdrawn),
            Transition::Relist => (&[Withdrawn], OnSale),
            Transition::Reserve => (&[OnSale], Reserved),
            Transition::Unreserve => (&[Reserved], OnSale),
            Transition::MarkSold => (&[OnSale, Reserved], Sold),
            Transition::Delete => (&[OnSale, Withdrawn, PendingReview, Sold, Removed], Deleted),
            Transition::HoldForReview => (&[OnSale, Reserved], PendingReview),
            Transition::Approve => (&[PendingReview], OnSale),
            Transition::Remove => (&[OnSale, Reserved, Withdrawn, PendingReview, Sold], Removed),
        }
    }

    /// Where the transition leads from `from`, or `None` when it is not allowed from there.
    pub fn apply(self, from: Status) -> Option<Status> {
        let (sources, to) = self.rule();
        sources.contains(&from).then_some(to)
    }

    pub fn verb(self) -> &'static str {
        match self {
            Transition::Withdraw => "withdraw",
            Transition::Relist => "relist",
            Transition::Reserve => "reserve",
            Transition::Unreserve => "unreserve",
            Transition::MarkSold => "mark as sold",
            Transition::Delete => "delete",
            Transition::HoldForReview => "hold for review",
            Transition::Approve => "approve",
            Transition::Remove => "remove",
        }
    }
}

/// Buttons the client may show for a listing; computed by the server so clients never re-implement the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum Action {
    Edit,
    Withdraw,
    Relist,
    Reserve,
    Unreserve,
    MarkSold,
    Bump,
    Delete,
    Chat,
    Buy,
    Favorite,
    Unfavorite,
}

/// Who is looking at a listing.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub user_id: Option<i64>,
    pub has_favorited: bool,
}

/// How long a seller waits between two bumps.
pub const BUMP_INTERVAL: chrono::Duration = chrono::Duration::hours(24);

/// The actions `viewer` may take on `l` at `now`.
pub fn allowed_actions(l: &listing::Model, viewer: Viewer, now: DateTime<Utc>) -> Vec<Action> {
    let mut out = Vec::new();
    let Some(uid) = viewer.user_id else {
        return out;
    };
    if uid == l.seller_id {
        if l.status.editable() {
            out.push(Action::Edit);
        }
        for (t, a) in [
            (Transition::Withdraw, Action::Withdraw),
            (Transition::Relist, Action::Relist),
            (Transition::Reserve, Action::Reserve),
            (Transition::Unreserve, Action::Unreserve),
            (Transition::MarkSold, Action::MarkSold),
        ] {
            if t.apply(l.status).is_some() {
                out.push(a);
            }
        }
        if l.status == Status::OnSale && now - l.bumped_at >= BUMP_INTERVAL {
            out.push(Action::Bump);
        }
        if Transition::Delete.apply(l.status).is_some() {
            out.push(Action::Delete);
        }
        return out;
    }
    if Status::PUBLIC.contains(&l.status) {
        out.push(Action::Chat);
    }
    if l.status == Status::OnSale {
        out.push(Action::Buy);
    }
    if viewer.has_favorited {
        out.push(Action::Unfavorite);
    } else if Status::PUBLIC.contains(&l.status) {
        out.push(Action::Favorite);
    }
    out
}

/// Popularity, for the `popular` sort: `log2(1 + views + 4·favourites + 8·chats) + days since 2026-01-01 of the
/// last bump`. Each day of freshness is worth doubling the engagement, so new items surface and old ones sink
/// without the score of an untouched listing ever changing (which keeps cursor pagination stable).
pub fn hot_score(views: i64, favorites: i64, chats: i64, bumped_at: DateTime<Utc>) -> f64 {
    let engagement = (views.max(0) + 4 * favorites.max(0) + 8 * chats.max(0)) as f64;
    let epoch = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    (1.0 + engagement).log2() + (bumped_at - epoch).num_seconds() as f64 / 86_400.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: Status, seller: i64, bumped_hours_ago: i64) -> listing::Model {
        let now = Utc::now();
        listing::Model {
            id: 1,
            seller_id: seller,
            school_id: 1,
            campus_id: None,
            category_id: 1,
            title: "t".into(),
            description: String::new(),
            price: 100,
            original_price: None,
            condition: Condition::Good,
            trade_meetup: true,
            trade_delivery: false,
            status,
            moderation_label: None,
            cover_image_id: None,
            view_count: 0,
            favorite_count: 0,
            chat_count: 0,
            hot_score: 0.0,
            created_at: now,
            updated_at: now,
            bumped_at: now - chrono::Duration::hours(bumped_hours_ago),
            sold_at: None,
        }
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        use Status::*;
        assert_eq!(Transition::Withdraw.apply(OnSale), Some(Withdrawn));
        assert_eq!(Transition::Withdraw.apply(Sold), None);
        assert_eq!(Transition::Relist.apply(Withdrawn), Some(OnSale));
        assert_eq!(
            Transition::Relist.apply(Removed),
            None,
            "only an operator brings a removed item back"
        );
        assert_eq!(Transition::Reserve.apply(Reserved), None);
        assert_eq!(
            Transition::Delete.apply(Reserved),
            None,
            "a promised item cannot vanish"
        );
        assert_eq!(Transition::Approve.apply(PendingReview), Some(OnSale));
        for t in [
            Transition::Withdraw,
            Transition::Relist,
            Transition::Reserve,
            Transition::MarkSold,
            Transition::Remove,
        ] {
            assert_eq!(t.apply(Deleted), None, "nothing leaves deleted");
        }
    }

    #[test]
    fn sellers_and_buyers_get_different_buttons() {
        let now = Utc::now();
        let fresh = sample(Status::OnSale, 7, 1);
        let seller = Viewer {
            user_id: Some(7),
            has_favorited: false,
        };
        let buyer = Viewer {
            user_id: Some(8),
            has_favorited: false,
        };
        let acts = allowed_actions(&fresh, seller, now);
        assert!(
            acts.contains(&Action::Edit)
                && acts.contains(&Action::Withdraw)
                && acts.contains(&Action::Reserve)
        );
        assert!(!acts.contains(&Action::Bump), "bumped an hour ago");
        assert!(!acts.contains(&Action::Buy));
        assert!(
            allowed_actions(&sample(Status::OnSale, 7, 25), seller, now).contains(&Action::Bump)
        );

        assert_eq!(
            allowed_actions(&fresh, buyer, now),
            vec![Action::Chat, Action::Buy, Action::Favorite]
        );
        let reserved = sample(Status::Reserved, 7, 1);
        assert_eq!(
            allowed_actions(&reserved, buyer, now),
            vec![Action::Chat, Action::Favorite]
        );
        let sold = sample(Status::Sold, 7, 1);
        assert_eq!(
            allowed_actions(
                &sold,
                Viewer {
                    user_id: Some(8),
                    has_favorited: true
                },
                now
            ),
            vec![Action::Unfavorite]
        );
        assert!(
            allowed_actions(&sold, seller, now)
                .iter()
                .all(|a| *a != Action::Edit)
        );
        assert!(
            allowed_actions(
                &fresh,
                Viewer {
                    user_id: None,
                    has_favorited: false
                },
                now
            )
            .is_empty()
        );
    }

    #[test]
    fn hot_score_rewards_engagement_and_freshness() {
        let now = Utc::now();
        let day_ago = now - chrono::Duration::days(1);
        assert!(hot_score(10, 0, 0, now) > hot_score(0, 0, 0, now));
        assert!(hot_score(0, 1, 0, now) > hot_score(3, 0, 0, now));
        // A day of age is worth doubling the engagement.
        let old = hot_score(15, 0, 0, day_ago);
        let new = hot_score(7, 0, 0, now);
        assert!((old - new).abs() < 1e-6, "{old} vs {new}");
    }
}
