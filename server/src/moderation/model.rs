//! Tables of the moderation capability: the operators' word blocklist and the image checks sent to WeChat.

pub mod blocked_word {
    use sea_orm::entity::prelude::*;

    /// What a blocklist hit does to the content.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    pub enum Action {
        /// Refuse the content.
        #[sea_orm(string_value = "risky")]
        Risky,
        /// Hold the content for an operator.
        #[sea_orm(string_value = "review")]
        Review,
    }

    impl std::str::FromStr for Action {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            match s {
                "risky" => Ok(Self::Risky),
                "review" => Ok(Self::Review),
                _ => Err(()),
            }
        }
    }

    /// A word the operators refuse (or hold for review) wherever it appears, before WeChat is asked.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blocked_words")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The word, normalised: lower case, half-width, without whitespace (see `service::normalize`).
        pub word: String,
        pub action: Action,
        /// A readable label name (`advertising`, `fraud`, … — see `service::LABELS`).
        pub label: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod media_check {
    use sea_orm::entity::prelude::*;

    /// Where an image check stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    pub enum Status {
        /// Not submitted yet, or submitted and waiting for WeChat's `wxa_media_check` push.
        #[sea_orm(string_value = "pending")]
        Pending,
        #[sea_orm(string_value = "pass")]
        Pass,
        #[sea_orm(string_value = "review")]
        Review,
        #[sea_orm(string_value = "risky")]
        Risky,
    }

    /// One image sent to WeChat's asynchronous media check, and its verdict once WeChat pushed it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "media_checks")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// WeChat's id of the submission; `None` while it could not be submitted yet.
        pub trace_id: Option<String>,
        /// What the image belongs to, e.g. `listing` or `avatar`.
        pub target_type: String,
        pub target_id: i64,
        pub image_id: Option<i64>,
        /// The user who published the image (WeChat wants it with every check).
        pub openid: String,
        /// The [`Scene`](crate::moderation::Scene) number.
        pub scene: i32,
        pub media_url: String,
        pub status: Status,
        /// Readable label of the verdict (`porn`, `advertising`, …), once decided.
        pub label: Option<String>,
        /// WeChat's numeric label code, once decided.
        pub label_code: Option<i64>,
        /// Submissions attempted so far.
        pub attempts: i32,
        pub last_error: Option<String>,
        /// When the retry job should (re)submit this check; `None` once decided.
        pub next_attempt_at: Option<DateTimeUtc>,
        /// When the flagged-media hook completed for a risky/review verdict.
        pub flag_handled_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub submitted_at: Option<DateTimeUtc>,
        pub decided_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
