//! Sessions: opaque random tokens (256 bits) of which only the SHA-256 is stored. Kept in Redis with a TTL when
//! Redis is configured (every instance sees every session at once), otherwise in the database. Expiry slides: a
//! session in use stays alive; one unused for the TTL lapses.
//!
//! Students and operators have sessions in the same store but in separate [`Namespace`]s: their own table in the
//! database (`sessions`, `operator_sessions`) and their own key prefix in Redis, so a token issued to one kind of
//! account can never resolve as the other's. [`SessionStore`]'s own methods are the students'; operators go
//! through [`SessionStore::scoped`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use sea_orm::{
    ConnectionTrait, DatabaseConnection,
    sea_query::{Alias, Expr, ExprTrait, Query},
};

use crate::{error::AppResult, kv::RedisKv, util};

/// The table behind the database store of student sessions.
pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub user_id: i64,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The table behind the database store of operator sessions.
pub mod operator_session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "operator_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub operator_id: i64,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Which kind of account a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Students, logged in with WeChat (`/api`).
    Student,
    /// Operators, logged in with a password (`/admin/api`).
    Operator,
}

impl Namespace {
    /// Database table and the column naming the account.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Namespace::Student => ("sessions", "user_id"),
            Namespace::Operator => ("operator_sessions", "operator_id"),
        }
    }

    /// Redis key of a session and of an account's index of sessions.
    fn token_key(self, hash: &str) -> String {
        match self {
            Namespace::Student => format!("session:{hash}"),
            Namespace::Operator => format!("op_session:{hash}"),
        }
    }

    fn account_key(self, id: i64) -> String {
        match self {
            Namespace::Student => format!("user_sessions:{id}"),
            Namespace::Operator => format!("operator_sessions:{id}"),
        }
    }

    /// Prefix of the tokens, so a token tells at a glance what it is for.
    fn token_prefix(self) -> &'static str {
        match self {
            Namespace::Student => "ct_",
            Namespace::Operator => "cto_",
        }
    }
}

/// A session that a token resolved to.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: String,
    /// The account: a user id for student sessions, an operator id for operator sessions.
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub enum SessionStore {
    Database {
        db: DatabaseConnection,
        ttl: Duration,
    },
    Redis {
        redis: RedisKv,
        ttl: Duration,
    },
}

/// The token's stored form. The token itself is never stored or logged.
pub fn hash_token(token: &str) -> String {
    util::sha256_hex(token.as_bytes())
}

impl SessionStore {
    fn ttl(&self) -> Duration {
        match self {
            SessionStore::Database { ttl, .. } | SessionStore::Redis { ttl, .. } => *ttl,
        }
    }

    /// The sessions of one namespace, with their own lifetime.
    pub fn scoped(&self, ns: Namespace, ttl: Duration) -> Sessions<'_> {
        Sessions {
            store: self,
            ns,
            ttl,
        }
    }

    fn students(&self) -> Sessions<'_> {
        self.scoped(Namespace::Student, self.ttl())
    }

    /// Creates a session for the student and returns its token (shown to the client once) and expiry.
    pub async fn create(&self, user_id: i64) -> AppResult<(String, DateTime<Utc>)> {
        self.students().create(user_id).await
    }

    /// Resolves a student token to its live session, sliding its expiry forward.
    pub async fn resolve(&self, token: &str) -> AppResult<Option<Session>> {
        self.students().resolve(token).await
    }

    /// Ends one student session (logout).
    pub async fn revoke(&self, token_hash: &str, user_id: i64) -> AppResult<()> {
        self.students().revoke(token_hash, user_id).await
    }

    /// Ends every session of a student (ban, account deletion). Returns how many were ended.
    pub async fn revoke_all(&self, user_id: i64) -> AppResult<u64> {
        self.students().revoke_all(user_id).await
    }

    /// Deletes expired sessions of every namespace from the database store (Redis expires its own). Run by a
    /// periodic job.
    pub async fn purge_expired(&self) -> AppResult<u64> {
        let mut purged = 0;
        for ns in [Namespace::Student, Namespace::Operator] {
            purged += self.scoped(ns, self.ttl()).purge_expired().await?;
        }
        Ok(purged)
    }
}

/// The sessions of one [`Namespace`] of a [`SessionStore`].
pub struct Sessions<'a> {
    store: &'a SessionStore,
    ns: Namespace,
    ttl: Duration,
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

impl Sessions<'_> {
    fn chrono_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(30))
    }

    /// Creates a session for the account and returns its token (shown to the client once) and expiry.
    pub async fn create(&self, account_id: i64) -> AppResult<(String, DateTime<Utc>)> {
        let token = format!("{}{}", self.ns.token_prefix(), util::random_token(32));
        let hash = hash_token(&token);
        let now = util::now();
        let expires_at = now + self.chrono_ttl();
        match self.store {
            SessionStore::Database { db, .. } => {
                let (table, owner) = self.ns.table();
                db.execute(
                    Query::insert()
                        .into_table(col(table))
                        .columns([
                            col("token_hash"),
                            col(owner),
                            col("created_at"),
                            col("expires_at"),
                        ])
                        .values_panic([
                            Expr::value(hash),
                            Expr::value(account_id),
                            Expr::value(now),
                            Expr::value(expires_at),
                        ]),
                )
                .await?;
            }
            SessionStore::Redis { redis, .. } => {
                // The per-account index has no expiry of its own (a session in use slides past any fixed one);
                // entries of lapsed sessions are pruned here, at login.
                let mut conn = redis.conn.clone();
                let index = redis.key(&self.ns.account_key(account_id));
                let known: Vec<String> = conn
                    .smembers(&index)
                    .await
                    .map_err(crate::error::AppError::internal)?;
                // (An empty pipeline is an error in redis-rs: ask only when there is something to ask.)
                let alive: Vec<bool> = if known.is_empty() {
                    Vec::new()
                } else {
                    let mut pipe = redis::pipe();
                    for h in &known {
                        pipe.exists(redis.key(&self.ns.token_key(h)));
                    }
                    pipe.query_async(&mut conn)
                        .await
                        .map_err(crate::error::AppError::internal)?
                };
                let mut pipe = redis::pipe();
                pipe.set_ex(
                    redis.key(&self.ns.token_key(&hash)),
                    account_id,
                    self.ttl.as_secs(),
                )
                .ignore();
                pipe.sadd(&index, &hash).ignore();
                for (h, live) in known.iter().zip(alive) {
                    if !live {
                        pipe.srem(&index, h).ignore();
                    }
                }
                let _: () = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(crate::error::AppError::internal)?;
            }
        }
        Ok((token, expires_at))
    }

    /// Resolves a token to its live session, sliding its expiry forward.
    pub async fn resolve(&self, token: &str) -> AppResult<Option<Session>> {
        let hash = hash_token(token);
        let now = util::now();
        match self.store {
            SessionStore::Database { db, .. } => {
                let (table, owner) = self.ns.table();
                let row = db
                    .query_one(
                        Query::select()
                            .columns([col(owner), col("expires_at")])
                            .from(col(table))
                            .and_where(Expr::col(col("token_hash")).eq(hash.clone())),
                    )
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let account_id: i64 = row.try_get("", owner)?;
                let stored_expiry: DateTime<Utc> = row.try_get("", "expires_at")?;
                let by_hash = Expr::col(col("token_hash")).eq(hash.clone());
                if stored_expiry <= now {
                    db.execute(Query::delete().from_table(col(table)).and_where(by_hash))
                        .await?;
                    return Ok(None);
                }
                let mut expires_at = stored_expiry;
                // Slide at most once an hour per session, so reads do not turn into a write per request.
                let fresh = now + self.chrono_ttl();
                if fresh - stored_expiry > chrono::Duration::hours(1) {
                    db.execute(
                        Query::update()
                            .table(col(table))
                            .value(col("expires_at"), Expr::value(fresh))
                            .and_where(by_hash),
                    )
                    .await?;
                    expires_at = fresh;
                }
                Ok(Some(Session {
                    token_hash: hash,
                    user_id: account_id,
                    expires_at,
                }))
            }
            SessionStore::Redis { redis, .. } => {
                let account_id: Option<i64> = redis::cmd("GETEX")
                    .arg(redis.key(&self.ns.token_key(&hash)))
                    .arg("EX")
                    .arg(self.ttl.as_secs())
                    .query_async(&mut redis.conn.clone())
                    .await
                    .map_err(crate::error::AppError::internal)?;
                Ok(account_id.map(|user_id| Session {
                    token_hash: hash,
                    user_id,
                    expires_at: now + self.chrono_ttl(),
                }))
            }
        }
    }

    /// Ends one session (logout).
    pub async fn revoke(&self, token_hash: &str, account_id: i64) -> AppResult<()> {
        match self.store {
            SessionStore::Database { db, .. } => {
                let (table, _) = self.ns.table();
                db.execute(
                    Query::delete()
                        .from_table(col(table))
                        .and_where(Expr::col(col("token_hash")).eq(token_hash)),
                )
                .await?;
            }
            SessionStore::Redis { redis, .. } => {
                let _: () = redis::pipe()
                    .del(redis.key(&self.ns.token_key(token_hash)))
                    .srem(redis.key(&self.ns.account_key(account_id)), token_hash)
                    .query_async(&mut redis.conn.clone())
                    .await
                    .map_err(crate::error::AppError::internal)?;
            }
        }
        Ok(())
    }

    /// Ends every session of an account. Returns how many were ended.
    pub async fn revoke_all(&self, account_id: i64) -> AppResult<u64> {
        match self.store {
            SessionStore::Database { db, .. } => {
                let (table, owner) = self.ns.table();
                let res = db
                    .execute(
                        Query::delete()
                            .from_table(col(table))
                            .and_where(Expr::col(col(owner)).eq(account_id)),
                    )
                    .await?;
                Ok(res.rows_affected())
            }
            SessionStore::Redis { redis, .. } => {
                let mut conn = redis.conn.clone();
                let hashes: Vec<String> = conn
                    .smembers(redis.key(&self.ns.account_key(account_id)))
                    .await
                    .map_err(crate::error::AppError::internal)?;
                let mut pipe = redis::pipe();
                for h in &hashes {
                    pipe.del(redis.key(&self.ns.token_key(h)));
                }
                pipe.del(redis.key(&self.ns.account_key(account_id)));
                let _: () = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(crate::error::AppError::internal)?;
                Ok(hashes.len() as u64)
            }
        }
    }

    /// Deletes expired sessions from the database store (Redis expires its own).
    pub async fn purge_expired(&self) -> AppResult<u64> {
        match self.store {
            SessionStore::Database { db, .. } => {
                let (table, _) = self.ns.table();
                let res = db
                    .execute(
                        Query::delete()
                            .from_table(col(table))
                            .and_where(Expr::col(col("expires_at")).lte(util::now())),
                    )
                    .await?;
                Ok(res.rows_affected())
            }
            SessionStore::Redis { .. } => Ok(0),
        }
    }
}
