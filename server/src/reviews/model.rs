//! Tables and rules of reviews and reputation: the review row and the reputation counters; the fixed list of
//! tags; the review, edit and reveal windows; and the reputation figures (average, Bayesian score, positive and
//! completion rates) as pure functions of the counters, tested without a database. `docs/reviews.md` explains
//! the rules and the formula.

use chrono::{DateTime, Duration, Utc};

pub mod review {
    use sea_orm::entity::prelude::*;

    /// One side's review of the other after a completed order.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reviews")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub order_id: i64,
        pub reviewer_id: i64,
        pub reviewee_id: i64,
        /// The reviewer's side of the order: `buyer` (the review is of the seller) or `seller`.
        pub reviewer_role: String,
        /// 1–5.
        pub rating: i32,
        /// At most 500 characters; may be empty.
        pub body: String,
        /// Comma-separated keys of [`super::Tag`].
        pub tags: String,
        /// Set when content security wanted an operator to look at the text: the text is then shown to its
        /// author only (the rating still counts).
        pub moderation_label: Option<String>,
        /// The reviewed person's one public answer.
        pub reply: Option<String>,
        pub replied_at: Option<DateTimeUtc>,
        /// Hidden by an operator: shown to nobody, counted nowhere.
        pub hidden: bool,
        pub hidden_by: Option<String>,
        pub hidden_reason: Option<String>,
        /// When the review became visible to the reviewed person and the public; `None` while sealed.
        pub revealed_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user_reputation {
    use sea_orm::entity::prelude::*;

    /// A student's reputation counters, maintained in the transactions that change them.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_reputation")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        /// Orders completed (or settled) as the seller.
        pub completed_sales: i32,
        /// Orders completed (or settled) as the buyer.
        pub completed_purchases: i32,
        /// Orders this student cancelled as the seller.
        pub seller_cancelled: i32,
        /// Revealed, not hidden reviews received.
        pub rating_count: i32,
        pub rating_sum: i64,
        /// Of those, rated 4 or 5.
        pub positive_count: i32,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How long after an order completes its parties may review each other; when it closes, sealed reviews are
/// revealed.
pub const REVIEW_WINDOW_DAYS: i64 = 30;
/// How long a review may be edited after it was written.
pub const EDIT_WINDOW_HOURS: i64 = 24;
/// Longest review text and reply, in characters.
pub const TEXT_MAX: usize = 500;
/// Most tags on one review.
pub const TAGS_MAX: usize = 5;
/// A rating of at least this counts as positive.
pub const POSITIVE_RATING: i32 = 4;
/// The Bayesian prior: a student's score starts as if they had `PRIOR_WEIGHT` reviews of `PRIOR_MEAN` stars.
pub const PRIOR_WEIGHT: f64 = 10.0;
pub const PRIOR_MEAN: f64 = 4.5;

/// The fixed tags a review may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename = "ReviewTag", rename_all = "snake_case")]
pub enum Tag {
    /// 描述相符: the item was as described.
    DescribedAccurately,
    /// 态度友好.
    Friendly,
    /// 准时守约: on time at the meet-up.
    OnTime,
    /// 回复及时.
    QuickReply,
    /// 物品完好.
    GoodCondition,
    /// 付款爽快.
    PromptPayment,
    /// 价格公道.
    FairPrice,
    /// 沟通顺畅.
    EasyToDealWith,
}

impl Tag {
    pub const ALL: [Tag; 8] = [
        Tag::DescribedAccurately,
        Tag::Friendly,
        Tag::OnTime,
        Tag::QuickReply,
        Tag::GoodCondition,
        Tag::PromptPayment,
        Tag::FairPrice,
        Tag::EasyToDealWith,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Tag::DescribedAccurately => "described_accurately",
            Tag::Friendly => "friendly",
            Tag::OnTime => "on_time",
            Tag::QuickReply => "quick_reply",
            Tag::GoodCondition => "good_condition",
            Tag::PromptPayment => "prompt_payment",
            Tag::FairPrice => "fair_price",
            Tag::EasyToDealWith => "easy_to_deal_with",
        }
    }

    pub fn from_key(key: &str) -> Option<Tag> {
        Tag::ALL.into_iter().find(|t| t.key() == key)
    }
}

/// Tags as stored: deduplicated, in the order given, comma-separated.
pub fn encode_tags(tags: &[Tag]) -> String {
    let mut seen: Vec<Tag> = Vec::new();
    for t in tags {
        if !seen.contains(t) {
            seen.push(*t);
        }
    }
    seen.iter().map(|t| t.key()).collect::<Vec<_>>().join(",")
}

/// Stored tags back as tags (unknown keys, from a later version, are skipped).
pub fn decode_tags(stored: &str) -> Vec<Tag> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(Tag::from_key)
        .collect()
}

/// The last moment the parties of an order completed at `completed_at` may review it.
pub fn review_deadline(completed_at: DateTime<Utc>) -> DateTime<Utc> {
    completed_at + Duration::days(REVIEW_WINDOW_DAYS)
}

/// The last moment a review written at `created_at` may be edited.
pub fn edit_deadline(created_at: DateTime<Utc>) -> DateTime<Utc> {
    created_at + Duration::hours(EDIT_WINDOW_HOURS)
}

/// A student's reputation counters (a missing row is all zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub completed_sales: i64,
    pub completed_purchases: i64,
    pub seller_cancelled: i64,
    pub rating_count: i64,
    pub rating_sum: i64,
    pub positive_count: i64,
}

impl From<&user_reputation::Model> for Counters {
    fn from(r: &user_reputation::Model) -> Self {
        Counters {
            completed_sales: r.completed_sales.into(),
            completed_purchases: r.completed_purchases.into(),
            seller_cancelled: r.seller_cancelled.into(),
            rating_count: r.rating_count.into(),
            rating_sum: r.rating_sum,
            positive_count: r.positive_count.into(),
        }
    }
}

/// The reputation figures derived from the counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Mean of the ratings; `None` without ratings.
    pub average_rating: Option<f64>,
    /// `(C·m + Σ ratings) / (C + n)` with C = [`PRIOR_WEIGHT`], m = [`PRIOR_MEAN`]: m without ratings, moving to
    /// the average as ratings accumulate.
    pub score: f64,
    /// Share of ratings ≥ 4, 0–1; `None` without ratings.
    pub positive_rate: Option<f64>,
    /// completed sales / (completed sales + seller cancellations), 0–1; `None` before either.
    pub completion_rate: Option<f64>,
}

/// The Bayesian-smoothed score of `n` ratings summing to `sum`.
pub fn bayesian_score(n: i64, sum: i64) -> f64 {
    (PRIOR_WEIGHT * PRIOR_MEAN + sum as f64) / (PRIOR_WEIGHT + n as f64)
}

/// Rounds to two decimals, as the API shows figures.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Counters {
    pub fn figures(&self) -> Figures {
        let n = self.rating_count;
        let rated = n > 0;
        let finished = self.completed_sales + self.seller_cancelled;
        Figures {
            average_rating: rated.then(|| self.rating_sum as f64 / n as f64),
            score: bayesian_score(n, self.rating_sum),
            positive_rate: rated.then(|| self.positive_count as f64 / n as f64),
            completion_rate: (finished > 0).then(|| self.completed_sales as f64 / finished as f64),
        }
    }
}

/// The median of some durations (the mean of the middle two for an even count); `None` for none.
pub fn median(mut values: Vec<i64>) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rated(ratings: &[i64]) -> Counters {
        Counters {
            rating_count: ratings.len() as i64,
            rating_sum: ratings.iter().sum(),
            positive_count: ratings.iter().filter(|r| **r >= 4).count() as i64,
            ..Default::default()
        }
    }

    #[test]
    fn the_score_starts_at_the_prior_and_moves_to_the_average() {
        let nobody = Counters::default().figures();
        assert_eq!(nobody.score, PRIOR_MEAN);
        assert_eq!(nobody.average_rating, None);
        assert_eq!(nobody.positive_rate, None);
        assert_eq!(nobody.completion_rate, None);
        // One 5: (10·4.5 + 5) / 11 = 50/11.
        let one = rated(&[5]).figures();
        assert!((one.score - 50.0 / 11.0).abs() < 1e-12);
        assert_eq!(one.average_rating, Some(5.0));
        // A hundred ratings: the prior weighs a tenth as much as the ratings.
        let many = rated(&[3; 100]).figures();
        assert!((many.score - (45.0 + 300.0) / 110.0).abs() < 1e-12);
    }

    #[test]
    fn one_five_star_review_does_not_beat_fifty_good_ones() {
        // Fifty reviews averaging 4.8: forty 5s and ten 4s.
        let mut fifty = vec![5; 40];
        fifty.extend([4; 10]);
        let steady = rated(&fifty).figures();
        assert!((steady.average_rating.unwrap() - 4.8).abs() < 1e-12);
        let lucky = rated(&[5]).figures();
        assert!(lucky.average_rating > steady.average_rating);
        assert!(
            steady.score > lucky.score,
            "{} vs {}",
            steady.score,
            lucky.score
        );
        // (45 + 240) / 60 = 4.75.
        assert!((steady.score - 4.75).abs() < 1e-12);
    }

    #[test]
    fn a_hand_made_history() {
        // Ratings 5, 4, 2, 5, 1; 3 sales completed, 1 cancelled by the seller.
        let mut c = rated(&[5, 4, 2, 5, 1]);
        c.completed_sales = 3;
        c.completed_purchases = 2;
        c.seller_cancelled = 1;
        let f = c.figures();
        assert_eq!(f.average_rating, Some(17.0 / 5.0));
        assert!((f.score - (45.0 + 17.0) / 15.0).abs() < 1e-12);
        assert_eq!(round2(f.score), 4.13);
        assert_eq!(f.positive_rate, Some(3.0 / 5.0));
        assert_eq!(f.completion_rate, Some(0.75));
    }

    #[test]
    fn tags_round_trip_without_duplicates() {
        let stored = encode_tags(&[Tag::Friendly, Tag::OnTime, Tag::Friendly]);
        assert_eq!(stored, "friendly,on_time");
        assert_eq!(decode_tags(&stored), vec![Tag::Friendly, Tag::OnTime]);
        assert_eq!(decode_tags(""), Vec::<Tag>::new());
        assert_eq!(decode_tags("friendly,from_the_future"), vec![Tag::Friendly]);
        for t in Tag::ALL {
            assert_eq!(Tag::from_key(t.key()), Some(t));
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![30]), Some(30));
        assert_eq!(median(vec![600, 30, 90]), Some(90));
        assert_eq!(median(vec![10, 40, 20, 30]), Some(25));
    }

    #[test]
    fn windows() {
        use chrono::TimeZone;
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 4, 0, 0).unwrap();
        assert_eq!(
            review_deadline(t),
            Utc.with_ymd_and_hms(2026, 3, 31, 4, 0, 0).unwrap()
        );
        assert_eq!(
            edit_deadline(t),
            Utc.with_ymd_and_hms(2026, 3, 2, 4, 0, 0).unwrap()
        );
    }
}
