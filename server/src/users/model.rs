//! Tables of the users capability: schools and their campuses, users, and student verification (requests,
//! verified identities, uploaded rosters).

pub mod school {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "schools")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub slug: String,
        pub name: String,
        pub short_name: String,
        pub requires_verification: bool,
        /// Key of the HMAC that turns this school's student numbers into stored hashes.
        pub roster_salt: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod campus {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "campuses")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub school_id: i64,
        pub name: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user {
    use sea_orm::entity::prelude::*;

    /// Whether an account may be used.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    pub enum Status {
        #[sea_orm(string_value = "active")]
        Active,
        #[sea_orm(string_value = "banned")]
        Banned,
        #[sea_orm(string_value = "deleted")]
        Deleted,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub openid: String,
        pub unionid: Option<String>,
        pub nickname: String,
        pub avatar_url: Option<String>,
        pub bio: String,
        pub school_id: Option<i64>,
        pub campus_id: Option<i64>,
        pub status: Status,
        pub ban_reason: Option<String>,
        pub banned_until: Option<DateTimeUtc>,
        pub verified_school_id: Option<i64>,
        pub verified_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub last_login_at: Option<DateTimeUtc>,
    }

    impl Model {
        /// The school this user is a verified student of right now (the badge lapses at `verified_until`).
        pub fn verified_school(&self, now: DateTimeUtc) -> Option<i64> {
            match (self.verified_school_id, self.verified_until) {
                (Some(school), Some(until)) if until > now => Some(school),
                _ => None,
            }
        }

        /// Whether a ban is in force at `now` (a ban with an end date lapses by itself).
        pub fn is_banned(&self, now: DateTimeUtc) -> bool {
            self.status == Status::Banned && self.banned_until.is_none_or(|until| until > now)
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod verification_request {
    use sea_orm::entity::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    pub enum Status {
        #[sea_orm(string_value = "pending")]
        Pending,
        #[sea_orm(string_value = "approved")]
        Approved,
        #[sea_orm(string_value = "rejected")]
        Rejected,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "verification_requests")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub school_id: i64,
        pub student_number_hash: String,
        /// The number with its middle hidden, for operators and the student to recognise it.
        pub student_number_masked: String,
        pub real_name: Option<String>,
        pub graduation_year: i32,
        pub status: Status,
        /// `roster` when the uploaded roster matched, otherwise who decided.
        pub decided_by: Option<String>,
        pub reject_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub decided_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod student_identity {
    use sea_orm::entity::prelude::*;

    /// A student number of a school that is verified for one account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "student_identities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub school_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub number_hash: String,
        pub user_id: i64,
        pub verified_until: DateTimeUtc,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod roster_entry {
    use sea_orm::entity::prelude::*;

    /// One student number of an uploaded roster, as a salted hash.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "roster_entries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub school_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub number_hash: String,
        pub graduation_year: Option<i32>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
