//! Student sessions: opaque random tokens (256 bits) of which only the SHA-256 is stored. Kept in Redis with a
//! TTL when Redis is configured (every instance sees every session at once), otherwise in the database.
//! Expiry slides: a session in use stays alive; one unused for the TTL lapses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr,
};

use crate::{error::AppResult, kv::RedisKv, util};

/// The table behind the database store.
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

/// A session that a token resolved to.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: String,
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

fn token_key(hash: &str) -> String {
    format!("session:{hash}")
}

fn user_key(user_id: i64) -> String {
    format!("user_sessions:{user_id}")
}

impl SessionStore {
    fn ttl(&self) -> Duration {
        match self {
            SessionStore::Database { ttl, .. } | SessionStore::Redis { ttl, .. } => *ttl,
        }
    }

    fn chrono_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.ttl()).unwrap_or(chrono::Duration::days(30))
    }

    /// Creates a session for the user and returns its token (shown to the client once) and expiry.
    pub async fn create(&self, user_id: i64) -> AppResult<(String, DateTime<Utc>)> {
        let token = format!("ct_{}", util::random_token(32));
        let hash = hash_token(&token);
        let now = util::now();
        let expires_at = now + self.chrono_ttl();
        match self {
            SessionStore::Database { db, .. } => {
                session::Entity::insert(session::ActiveModel {
                    token_hash: Set(hash),
                    user_id: Set(user_id),
                    created_at: Set(now),
                    expires_at: Set(expires_at),
                })
                .exec_without_returning(db)
                .await?;
            }
            SessionStore::Redis { redis, ttl } => {
                // The per-user index has no expiry of its own (a session in use slides past any fixed one);
                // entries of lapsed sessions are pruned here, at login.
                let mut conn = redis.conn.clone();
                let index = redis.key(&user_key(user_id));
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
                        pipe.exists(redis.key(&token_key(h)));
                    }
                    pipe.query_async(&mut conn)
                        .await
                        .map_err(crate::error::AppError::internal)?
                };
                let mut pipe = redis::pipe();
                pipe.set_ex(redis.key(&token_key(&hash)), user_id, ttl.as_secs())
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
        match self {
            SessionStore::Database { db, .. } => {
                let Some(row) = session::Entity::find_by_id(hash.clone()).one(db).await? else {
                    return Ok(None);
                };
                if row.expires_at <= now {
                    session::Entity::delete_by_id(hash).exec(db).await?;
                    return Ok(None);
                }
                let mut expires_at = row.expires_at;
                // Slide at most once an hour per session, so reads do not turn into a write per request.
                let fresh = now + self.chrono_ttl();
                if fresh - row.expires_at > chrono::Duration::hours(1) {
                    session::Entity::update_many()
                        .col_expr(session::Column::ExpiresAt, Expr::value(fresh))
                        .filter(session::Column::TokenHash.eq(hash.clone()))
                        .exec(db)
                        .await?;
                    expires_at = fresh;
                }
                Ok(Some(Session {
                    token_hash: hash,
                    user_id: row.user_id,
                    expires_at,
                }))
            }
            SessionStore::Redis { redis, ttl } => {
                let user_id: Option<i64> = redis::cmd("GETEX")
                    .arg(redis.key(&token_key(&hash)))
                    .arg("EX")
                    .arg(ttl.as_secs())
                    .query_async(&mut redis.conn.clone())
                    .await
                    .map_err(crate::error::AppError::internal)?;
                Ok(user_id.map(|user_id| Session {
                    token_hash: hash,
                    user_id,
                    expires_at: now + self.chrono_ttl(),
                }))
            }
        }
    }

    /// Ends one session (logout).
    pub async fn revoke(&self, token_hash: &str, user_id: i64) -> AppResult<()> {
        match self {
            SessionStore::Database { db, .. } => {
                session::Entity::delete_by_id(token_hash.to_string())
                    .exec(db)
                    .await?;
            }
            SessionStore::Redis { redis, .. } => {
                let _: () = redis::pipe()
                    .del(redis.key(&token_key(token_hash)))
                    .srem(redis.key(&user_key(user_id)), token_hash)
                    .query_async(&mut redis.conn.clone())
                    .await
                    .map_err(crate::error::AppError::internal)?;
            }
        }
        Ok(())
    }

    /// Ends every session of a user (ban, account deletion). Returns how many were ended.
    pub async fn revoke_all(&self, user_id: i64) -> AppResult<u64> {
        match self {
            SessionStore::Database { db, .. } => {
                let res = session::Entity::delete_many()
                    .filter(session::Column::UserId.eq(user_id))
                    .exec(db)
                    .await?;
                Ok(res.rows_affected)
            }
            SessionStore::Redis { redis, .. } => {
                let mut conn = redis.conn.clone();
                let hashes: Vec<String> = conn
                    .smembers(redis.key(&user_key(user_id)))
                    .await
                    .map_err(crate::error::AppError::internal)?;
                let mut pipe = redis::pipe();
                for h in &hashes {
                    pipe.del(redis.key(&token_key(h)));
                }
                pipe.del(redis.key(&user_key(user_id)));
                let _: () = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(crate::error::AppError::internal)?;
                Ok(hashes.len() as u64)
            }
        }
    }

    /// Deletes expired sessions from the database store (Redis expires its own). Run by a periodic job.
    pub async fn purge_expired(&self) -> AppResult<u64> {
        match self {
            SessionStore::Database { db, .. } => {
                let res = session::Entity::delete_many()
                    .filter(session::Column::ExpiresAt.lte(util::now()))
                    .exec(db)
                    .await?;
                Ok(res.rows_affected)
            }
            SessionStore::Redis { .. } => Ok(0),
        }
    }
}
