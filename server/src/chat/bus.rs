//! Fan-out of chat events to every instance.
//!
//! Events are addressed to users, not sockets: "every socket of users 12 and 34 gets this frame". The publishing
//! instance hands the frame to its own [`Hub`] at once. With Redis configured it also publishes it on one channel
//! of the deployment (`{REDIS_KEY_PREFIX}chat:events`); every other instance is subscribed to that channel and
//! hands what it receives to its hub, which knows whether it holds a socket of those users. Without Redis there
//! is only one instance and the hub is the whole audience.
//!
//! One channel for the deployment keeps subscriptions static (no per-user SUBSCRIBE churn as sockets come and
//! go); each instance reads every event and drops those for users it does not hold, which costs microseconds per
//! event. That is the right trade-off up to a few dozen instances; beyond that, per-user channels (or sharded
//! channels) would cut the traffic each instance reads.
//!
//! Pub/sub is at-most-once: an event published while an instance is reconnecting to Redis is lost for that
//! instance. Nothing is lost for good — every message is stored before it is published — and after a reconnect
//! the instance tells its sockets to `sync` (a `resync` frame).

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::hub::Hub;

/// How the events of this deployment travel.
pub enum Bus {
    /// One instance: the local hub is the whole audience.
    Local,
    /// Several instances sharing Redis pub/sub.
    Redis(Box<RedisBus>),
}

/// Publisher side of the Redis bus; the tasks are started by [`RedisBus::start`].
pub struct RedisBus {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    channel: String,
    outgoing: mpsc::UnboundedSender<String>,
    pending: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// The frame that asks every socket of an instance to `sync` (sent after events may have been missed).
pub const RESYNC_FRAME: &str = r#"{"type":"resync"}"#;

/// `origin|user,user|frame`.
pub fn encode(origin: &str, users: &[i64], frame: &str) -> String {
    let users: Vec<String> = users.iter().map(i64::to_string).collect();
    format!("{origin}|{}|{frame}", users.join(","))
}

/// The parts of an envelope made by [`encode`]; `None` when it is not one.
pub fn decode(envelope: &str) -> Option<(&str, Vec<i64>, &str)> {
    let (origin, rest) = envelope.split_once('|')?;
    let (users, frame) = rest.split_once('|')?;
    let users = if users.is_empty() {
        Vec::new()
    } else {
        users
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<i64>, _>>()
            .ok()?
    };
    Some((origin, users, frame))
}

impl RedisBus {
    /// Connects the publisher; the subscriber connects in [`RedisBus::start`].
    pub fn new(client: redis::Client, conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        let (outgoing, pending) = mpsc::unbounded_channel();
        Self {
            client,
            conn,
            channel: format!("{prefix}chat:events"),
            outgoing,
            pending: std::sync::Mutex::new(Some(pending)),
        }
    }

    /// Queues an envelope for publication (never blocks the caller).
    pub fn publish(&self, envelope: String) {
        if self.outgoing.send(envelope).is_err() {
            tracing::warn!("chat bus publisher is not running; event not sent to other instances");
        }
    }

    /// Starts the publisher and the subscriber; returns once the subscriber listens (or after 5 s).
    pub async fn start(&self, instance: String, hub: Arc<Hub>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(rx) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            tasks.push(tokio::spawn(publisher(
                self.conn.clone(),
                self.channel.clone(),
                rx,
            )));
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tasks.push(tokio::spawn(subscriber(
            self.client.clone(),
            self.channel.clone(),
            instance,
            hub,
            ready_tx,
        )));
        if tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .is_err()
        {
            tracing::warn!("chat bus: not subscribed to Redis after 5 s; still trying");
        }
        tasks
    }
}

/// Publishes queued envelopes, many per round trip when they pile up.
async fn publisher(
    mut conn: redis::aio::ConnectionManager,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut pipe = redis::pipe();
        for envelope in batch.drain(..) {
            pipe.publish(&channel, envelope).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(error = %e, "chat bus: publishing to Redis failed; other instances miss these events");
        }
    }
}

/// Listens on the channel and hands events from other instances to the hub; reconnects with a pause after a
/// failure and then asks local sockets to `sync`.
async fn subscriber(
    client: redis::Client,
    channel: String,
    instance: String,
    hub: Arc<Hub>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut failures = 0u32;
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match connected {
            Ok(pubsub) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                } else {
                    tracing::info!("chat bus: subscribed to Redis again; asking sockets to sync");
                    hub.broadcast(&Arc::from(RESYNC_FRAME));
                }
                failures = 0;
                let mut stream = pubsub.into_on_message();
                while let Some(msg) = stream.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match decode(&payload) {
                        Some((origin, _, _)) if origin == instance => {}
                        Some((_, users, frame)) => {
                            hub.dispatch(&users, None, &Arc::from(frame));
                        }
                        None => tracing::warn!("chat bus: ignoring a malformed event"),
                    }
                }
                tracing::warn!("chat bus: Redis subscription ended; reconnecting");
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, failures, "chat bus: cannot subscribe to Redis; retrying");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(
            500 * u64::from(failures.clamp(1, 10)),
        ))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let frame = r#"{"type":"message","message":{"text":"a|b"}}"#;
        let e = encode("inst1", &[12, 34], frame);
        assert_eq!(decode(&e), Some(("inst1", vec![12, 34], frame)));
        assert_eq!(decode("x"), None);
        assert_eq!(decode("a|1,b|{}"), None);
        assert_eq!(decode("a||{}"), Some(("a", vec![], "{}")));
    }
}
