//! Who has an open chat socket anywhere: decides whether a receiver gets a WeChat reminder.
//!
//! Without Redis there is one instance and its [`Hub`](super::hub::Hub) knows. With Redis each user with
//! sockets has a hash `presence:{user}` whose fields are instance ids and whose values are the time (Unix ms)
//! until which that instance vouches for the user. An instance sets its field when the user's first socket opens
//! there, deletes it when the last one closes, and re-vouches for all its users every [`REFRESH`]; a field older
//! than its time is ignored, so a crashed instance stops counting after at most [`TTL`], and the key itself
//! expires when nobody refreshes it.

use std::time::Duration;

use crate::kv::RedisKv;

/// How long one vouching lasts.
pub const TTL: Duration = Duration::from_secs(90);
/// How often an instance vouches again for its users.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Users refreshed per Redis round trip.
const REFRESH_BATCH: usize = 500;

pub struct Presence {
    redis: Option<RedisKv>,
    instance: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether any field of a presence hash (instance → vouched-until ms) is still valid at `now`, not counting
/// `except` (this instance, whose sockets the caller counts itself).
pub fn any_valid(fields: &[(String, i64)], now: i64, except: &str) -> bool {
    fields
        .iter()
        .any(|(instance, until)| instance != except && *until > now)
}

impl Presence {
    pub fn new(redis: Option<RedisKv>, instance: String) -> Self {
        Self { redis, instance }
    }

    fn key(redis: &RedisKv, user_id: i64) -> String {
        redis.key(&format!("presence:{user_id}"))
    }

    fn vouch(&self, pipe: &mut redis::Pipeline, redis: &RedisKv, user_id: i64) {
        let key = Self::key(redis, user_id);
        let until = now_ms() + TTL.as_millis() as i64;
        pipe.hset(&key, &self.instance, until)
            .ignore()
            .pexpire(&key, TTL.as_millis() as i64)
            .ignore();
    }

    /// The user's first socket on this instance opened.
    pub async fn announce(&self, user_id: i64) {
        self.refresh(&[user_id]).await;
    }

    /// The user's last socket on this instance closed.
    pub async fn withdraw(&self, user_id: i64) {
        let Some(redis) = &self.redis else { return };
        let res: redis::RedisResult<()> = redis::cmd("HDEL")
            .arg(Self::key(redis, user_id))
            .arg(&self.instance)
            .query_async(&mut redis.conn.clone())
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not withdraw chat presence");
        }
    }

    /// Vouches again for `users` (this instance's).
    pub async fn refresh(&self, users: &[i64]) {
        let Some(redis) = &self.redis else { return };
        for chunk in users.chunks(REFRESH_BATCH) {
            let mut pipe = redis::pipe();
            for &user in chunk {
                self.vouch(&mut pipe, redis, user);
            }
            if let Err(e) = pipe.query_async::<()>(&mut redis.conn.clone()).await {
                tracing::warn!(error = %e, "could not refresh chat presence");
                return;
            }
        }
    }

    /// Whether another instance holds a socket of the user. Unknown (Redis unreachable) counts as no.
    pub async fn elsewhere(&self, user_id: i64) -> bool {
        let Some(redis) = &self.redis else {
            return false;
        };
        let fields: redis::RedisResult<std::collections::HashMap<String, i64>> =
            redis::cmd("HGETALL")
                .arg(Self::key(redis, user_id))
                .query_async(&mut redis.conn.clone())
                .await;
        match fields {
            Ok(fields) => {
                let fields: Vec<(String, i64)> = fields.into_iter().collect();
                any_valid(&fields, now_ms(), &self.instance)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read chat presence; treating the user as offline");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_own_fields_do_not_count() {
        let fields = vec![("a".to_string(), 1_000), ("b".to_string(), 5_000)];
        assert!(any_valid(&fields, 2_000, "a"));
        assert!(
            !any_valid(&fields, 2_000, "b"),
            "only a stale field is left"
        );
        assert!(!any_valid(&fields, 6_000, "x"));
        assert!(!any_valid(&[], 0, "x"));
    }
}
