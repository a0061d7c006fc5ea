//! A small key-value store with expiry, shared by every instance when Redis is configured and in-process
//! otherwise. It backs rate limits, the WeChat access-token cache and (with Redis) sessions; later presence.
//! Keys are namespaced with `REDIS_KEY_PREFIX` so several deployments or test runs can share one Redis.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use redis::AsyncCommands;

/// The store: in-process for the embedded default, Redis for the scaled deployment.
#[derive(Clone)]
pub enum Kv {
    Local(Arc<LocalKv>),
    Redis(RedisKv),
}

/// A Redis connection (auto-reconnecting) plus the key prefix of this deployment.
#[derive(Clone)]
pub struct RedisKv {
    pub conn: redis::aio::ConnectionManager,
    pub prefix: String,
}

impl RedisKv {
    pub fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

/// In-process map with per-key expiry. Expired entries are purged when the map has doubled since the last
/// purge, so the scan costs O(1) per operation on average however many live keys there are.
pub struct LocalKv {
    inner: Mutex<LocalInner>,
}

struct LocalInner {
    entries: HashMap<String, (String, Instant)>,
    purge_at: usize,
}

const LOCAL_PURGE_MIN: usize = 10_000;

impl Default for LocalKv {
    fn default() -> Self {
        Self {
            inner: Mutex::new(LocalInner {
                entries: HashMap::new(),
                purge_at: LOCAL_PURGE_MIN,
            }),
        }
    }
}

impl LocalKv {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, (String, Instant)>, Instant) -> R) -> R {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if inner.entries.len() >= inner.purge_at {
            inner.entries.retain(|_, (_, exp)| *exp > now);
            inner.purge_at = (inner.entries.len() * 2).max(LOCAL_PURGE_MIN);
        }
        f(&mut inner.entries, now)
    }
}

impl Kv {
    pub fn local() -> Self {
        Kv::Local(Arc::new(LocalKv::default()))
    }

    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let conn = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .context("connecting to Redis (check REDIS_URL)")?;
        Ok(Kv::Redis(RedisKv {
            conn,
            prefix: prefix.to_string(),
        }))
    }

    pub fn as_redis(&self) -> Option<&RedisKv> {
        match self {
            Kv::Redis(r) => Some(r),
            Kv::Local(_) => None,
        }
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self {
            Kv::Local(l) => Ok(l.with(|m, now| {
                m.get(key)
                    .filter(|(_, exp)| *exp > now)
                    .map(|(v, _)| v.clone())
            })),
            Kv::Redis(r) => Ok(r.conn.clone().get(r.key(key)).await?),
        }
    }

    pub async fn set_ex(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<()> {
        match self {
            Kv::Local(l) => {
                l.with(|m, now| m.insert(key.to_string(), (value.to_string(), now + ttl)));
                Ok(())
            }
            Kv::Redis(r) => {
                let _: () = r
                    .conn
                    .clone()
                    .pset_ex(r.key(key), value, ttl.as_millis().max(1) as u64)
                    .await?;
                Ok(())
            }
        }
    }

    /// Sets the key only if it is absent; true when this call set it (a lock or a first claim).
    pub async fn set_nx_ex(&self, key: &str, value: &str, ttl: Duration) -> anyhow::Result<bool> {
        match self {
            Kv::Local(l) => Ok(l.with(|m, now| match m.get(key) {
                Some((_, exp)) if *exp > now => false,
                _ => {
                    m.insert(key.to_string(), (value.to_string(), now + ttl));
                    true
                }
            })),
            Kv::Redis(r) => {
                let opts = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::PX(ttl.as_millis().max(1) as u64));
                let set: Option<String> =
                    r.conn.clone().set_options(r.key(key), value, opts).await?;
                Ok(set.is_some())
            }
        }
    }

    /// Deletes the key only while it still holds `value` (releasing a lock one owns, dropping a cached value
    /// one knows is stale without clobbering a newer one).
    pub async fn del_if_eq(&self, key: &str, value: &str) -> anyhow::Result<()> {
        match self {
            Kv::Local(l) => {
                l.with(|m, _| {
                    if m.get(key).is_some_and(|(v, _)| v == value) {
                        m.remove(key);
                    }
                });
                Ok(())
            }
            Kv::Redis(r) => {
                let script = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
                );
                let _: i64 = script
                    .key(r.key(key))
                    .arg(value)
                    .invoke_async(&mut r.conn.clone())
                    .await?;
                Ok(())
            }
        }
    }

    /// Counts a hit in a fixed window that starts at the key's first hit. Returns the count so far and the
    /// time until the window ends.
    pub async fn hit(&self, key: &str, window: Duration) -> anyhow::Result<(u64, Duration)> {
        match self {
            Kv::Local(l) => Ok(l.with(|m, now| {
                let entry = m
                    .entry(key.to_string())
                    .or_insert_with(|| ("0".into(), now + window));
                if entry.1 <= now {
                    *entry = ("0".into(), now + window);
                }
                let count = entry.0.parse::<u64>().unwrap_or(0) + 1;
                entry.0 = count.to_string();
                (count, entry.1.saturating_duration_since(now))
            })),
            Kv::Redis(r) => {
                let key = r.key(key);
                let (count, ttl): (u64, i64) = redis::pipe()
                    .atomic()
                    .incr(&key, 1u64)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(window.as_millis() as u64)
                    .arg("NX")
                    .ignore()
                    .pttl(&key)
                    .query_async(&mut r.conn.clone())
                    .await?;
                Ok((count, Duration::from_millis(ttl.max(0) as u64)))
            }
        }
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Kv::Local(_) => Ok(()),
            Kv::Redis(r) => {
                let _: String = redis::cmd("PING").query_async(&mut r.conn.clone()).await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_expires_and_counts() {
        let kv = Kv::local();
        kv.set_ex("a", "1", Duration::from_millis(30))
            .await
            .unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("1"));
        assert!(
            !kv.set_nx_ex("a", "2", Duration::from_secs(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(kv.get("a").await.unwrap(), None);
        assert!(
            kv.set_nx_ex("a", "2", Duration::from_secs(1))
                .await
                .unwrap()
        );
        kv.del_if_eq("a", "other").await.unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("2"));
        kv.del_if_eq("a", "2").await.unwrap();
        assert_eq!(kv.get("a").await.unwrap(), None);

        for expected in 1..=3 {
            let (count, left) = kv.hit("h", Duration::from_secs(60)).await.unwrap();
            assert_eq!(count, expected);
            assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50));
        }
    }

    #[tokio::test]
    async fn many_live_keys_stay_and_expired_ones_are_purged() {
        let kv = Kv::local();
        for i in 0..25_000 {
            kv.set_ex(&format!("live{i}"), "1", Duration::from_secs(60))
                .await
                .unwrap();
        }
        for i in 0..5_000 {
            kv.set_ex(&format!("dead{i}"), "1", Duration::from_millis(1))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..40_000 {
            kv.set_ex(&format!("more{i}"), "1", Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(kv.get("live24999").await.unwrap().as_deref(), Some("1"));
        assert_eq!(kv.get("dead0").await.unwrap(), None);
        let Kv::Local(local) = &kv else {
            unreachable!()
        };
        let len = local.inner.lock().unwrap().entries.len();
        assert!(len < 70_000, "expired keys were purged ({len} left)");
    }
}
