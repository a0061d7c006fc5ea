//! Buyer–seller conversations about a listing: messages, offers, system cards, and their real-time delivery.
//!
//! - [`model`]: tables, message kinds, the offer state machine.
//! - [`service`]: opening conversations, sending (stored before it is acknowledged, idempotent per
//!   `client_msg_id`), history, read marks, unread counts, offers, listing cards.
//! - [`rules`]: contact-sharing detection (rules operators can change).
//! - [`ws`]: the WebSocket `GET /api/v1/ws`; [`api`]: the REST routes.
//! - [`hub`], [`bus`], [`presence`]: this instance's sockets, fan-out to every instance (Redis pub/sub or
//!   in-process), and who is online anywhere; [`activity`]: who chatted on which day (statistics).
//!
//! Other capabilities (orders) talk to chat only through [`cards`]. `docs/chat-protocol.md` documents the
//! socket's frames.

pub mod activity;
pub mod api;
pub mod bus;
pub mod cards;
pub mod hub;
pub mod model;
pub mod presence;
pub mod rules;
pub mod service;
pub mod ws;

use std::sync::Arc;

use crate::{config::Config, kv::Kv};

/// The chat runtime of one instance: its sockets, the bus to the other instances, presence, and the compiled
/// contact rules. Lives in the application state.
pub struct Chat {
    /// Random id of this process, naming it in presence and on the bus.
    pub instance: String,
    pub hub: Arc<hub::Hub>,
    pub bus: bus::Bus,
    pub presence: presence::Presence,
    pub rules: rules::ContactRules,
    /// Who chatted today (for the dashboard's daily active chatters).
    pub activity: activity::Activity,
}

impl Chat {
    /// Builds the runtime; with Redis configured, the bus and presence use it.
    pub async fn new(config: &Config, kv: &Kv) -> anyhow::Result<Self> {
        let instance = crate::util::random_token(9);
        let hub = Arc::new(hub::Hub::new(
            config.chat_send_burst,
            config.chat_send_per_minute,
        ));
        let (bus, redis) = match (kv, &config.redis_url) {
            (Kv::Redis(r), Some(url)) => {
                let client = redis::Client::open(url.expose())
                    .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
                (
                    bus::Bus::Redis(Box::new(bus::RedisBus::new(
                        client,
                        r.conn.clone(),
                        &r.prefix,
                    ))),
                    Some(r.clone()),
                )
            }
            _ => (bus::Bus::Local, None),
        };
        Ok(Self {
            presence: presence::Presence::new(redis, instance.clone()),
            instance,
            hub,
            bus,
            rules: rules::ContactRules::default(),
            activity: activity::Activity::default(),
        })
    }

    /// Starts the background work of the runtime (the Redis bus, presence refresh); the handles are aborted
    /// when the server stops.
    pub async fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let bus::Bus::Redis(redis) = &self.bus {
            tasks.extend(
                redis
                    .start(self.instance.clone(), Arc::clone(&self.hub))
                    .await,
            );
            let chat = Arc::clone(self);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(presence::REFRESH);
                loop {
                    tick.tick().await;
                    chat.presence.refresh(&chat.hub.local_users()).await;
                }
            }));
        }
        tasks
    }

    /// Sends `frame` to every socket of `users` on every instance (except the socket `skip`).
    pub fn publish(&self, users: &[i64], skip: Option<hub::SocketId>, frame: Arc<str>) {
        // Sockets dropped here for being too slow withdraw their own presence when their task ends.
        self.hub.dispatch(users, skip, &frame);
        if let bus::Bus::Redis(redis) = &self.bus {
            redis.publish(bus::encode(&self.instance, users, &frame));
        }
    }

    /// Closes every socket of `user_id` on every instance (a ban): each gets `error_frame` (a JSON `error`
    /// frame), then a close with 1008 (policy). Like any event, it reaches other instances over the bus.
    pub fn kick(&self, user_id: i64, error_frame: &str) {
        self.publish(
            &[user_id],
            None,
            Arc::from(format!("{}{error_frame}", hub::KICK_MARKER)),
        );
    }

    /// Whether the user has an open socket on any instance.
    pub async fn is_online(&self, user_id: i64) -> bool {
        self.hub.local_count(user_id) > 0 || self.presence.elsewhere(user_id).await
    }
}
