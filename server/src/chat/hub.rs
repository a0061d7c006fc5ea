//! The open sockets of this instance, by user, and the per-user send budget.
//!
//! Every socket registers here with a bounded queue of outgoing frames. [`Hub::dispatch`] puts a frame on the
//! queue of every socket of the given users; a socket whose queue is full (a client that stopped reading) is
//! unregistered on the spot, which closes it — the client reconnects and catches up with `sync` — so one slow
//! client never holds up delivery to the others.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

/// Identifies one socket within this instance.
pub type SocketId = u64;

/// Marks a queued frame as an order to close the socket: what follows the marker is the (JSON) `error` frame the
/// client gets first. The marker's first byte cannot start a JSON frame, so no chat event is ever mistaken for
/// it; it travels the bus like any frame, so every instance closes its sockets of the user.
pub const KICK_MARKER: &str = "\u{1}kick|";

/// Frames waiting for one socket before it counts as too slow and is closed.
pub const SOCKET_QUEUE: usize = 256;

/// The sockets of each user on this instance, with the queues that feed them.
type Sockets = HashMap<i64, Vec<(SocketId, mpsc::Sender<Arc<str>>)>>;

/// A token bucket: `burst` sends at once, refilled at `per_minute`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What a registration gives the socket task.
pub struct Registration {
    pub id: SocketId,
    /// Frames to write to the client. `None` from `recv` means the hub dropped the socket (too slow).
    pub frames: mpsc::Receiver<Arc<str>>,
    /// True when this is the user's first socket on this instance (presence must be announced).
    pub first: bool,
}

/// The sockets of this instance.
pub struct Hub {
    next_id: AtomicU64,
    sockets: Mutex<Sockets>,
    buckets: Mutex<HashMap<i64, Bucket>>,
    burst: f64,
    per_second: f64,
    shutdown: watch::Sender<bool>,
}

impl Hub {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            sockets: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            burst: burst.max(1) as f64,
            per_second: per_minute.max(1) as f64 / 60.0,
            shutdown: watch::channel(false).0,
        }
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, Sockets> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a socket of `user_id`.
    pub fn register(&self, user_id: i64) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let mut sockets = self.sockets();
        let list = sockets.entry(user_id).or_default();
        let first = list.is_empty();
        list.push((id, tx));
        Registration {
            id,
            frames: rx,
            first,
        }
    }

    /// Forgets a socket; true when it was the user's last one on this instance.
    pub fn unregister(&self, user_id: i64, id: SocketId) -> bool {
        let mut sockets = self.sockets();
        let Some(list) = sockets.get_mut(&user_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|(sid, _)| *sid != id);
        let removed = list.len() < before;
        if list.is_empty() {
            sockets.remove(&user_id);
            return removed;
        }
        false
    }

    /// Queues `frame` for every socket of `users` (except `skip`). Returns the users whose last socket was
    /// dropped because it was too slow (their presence must be withdrawn).
    pub fn dispatch(&self, users: &[i64], skip: Option<SocketId>, frame: &Arc<str>) -> Vec<i64> {
        let mut gone = Vec::new();
        let mut sockets = self.sockets();
        for user in users {
            let Some(list) = sockets.get_mut(user) else {
                continue;
            };
            list.retain(|(sid, tx)| {
                if Some(*sid) == skip {
                    return true;
                }
                match tx.try_send(Arc::clone(frame)) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::info!(
                            user_id = user,
                            socket = sid,
                            "chat socket too slow; closing it"
                        );
                        false
                    }
                    // The socket task ended and will unregister itself.
                    Err(mpsc::error::TrySendError::Closed(_)) => true,
                }
            });
            if list.is_empty() {
                sockets.remove(user);
                gone.push(*user);
            }
        }
        gone
    }

    /// Sockets of `user_id` open on this instance.
    pub fn local_count(&self, user_id: i64) -> usize {
        self.sockets().get(&user_id).map_or(0, Vec::len)
    }

    /// Users with at least one socket on this instance.
    pub fn local_users(&self) -> Vec<i64> {
        self.sockets().keys().copied().collect()
    }

    /// Open sockets on this instance.
    pub fn socket_count(&self) -> usize {
        self.sockets().values().map(Vec::len).sum()
    }

    /// Queues `frame` for every socket of this instance.
    pub fn broadcast(&self, frame: &Arc<str>) {
        let users = self.local_users();
        self.dispatch(&users, None, frame);
    }

    /// Takes one send from `user_id`'s budget; `Err(wait)` when it is used up (how long until the next send is
    /// allowed).
    pub fn take_send(&self, user_id: i64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget users whose bucket has refilled anyway.
            let full_after = self.burst / self.per_second;
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < full_after);
        }
        let b = buckets.entry(user_id).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }

    /// A receiver that turns true when the instance shuts down (sockets then close with 1012 "restart").
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every socket to close.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reach_every_socket_of_a_user_but_the_sender() {
        let hub = Hub::new(5, 60);
        let mut a1 = hub.register(1);
        let mut a2 = hub.register(1);
        let mut b = hub.register(2);
        assert!(a1.first && !a2.first && b.first);
        let frame: Arc<str> = Arc::from("hello");
        hub.dispatch(&[1, 2], Some(a1.id), &frame);
        assert!(a1.frames.try_recv().is_err());
        assert_eq!(&*a2.frames.try_recv().unwrap(), "hello");
        assert_eq!(&*b.frames.try_recv().unwrap(), "hello");
        assert!(!hub.unregister(1, a1.id));
        assert!(hub.unregister(1, a2.id));
        assert_eq!(hub.local_count(1), 0);
        assert_eq!(hub.local_count(2), 1);
    }

    #[test]
    fn a_socket_that_does_not_read_is_dropped() {
        let hub = Hub::new(5, 60);
        let mut slow = hub.register(1);
        let frame: Arc<str> = Arc::from("x");
        for _ in 0..SOCKET_QUEUE {
            assert!(hub.dispatch(&[1], None, &frame).is_empty());
        }
        assert_eq!(hub.dispatch(&[1], None, &frame), vec![1]);
        assert_eq!(hub.local_count(1), 0);
        // What was queued is still readable, then the queue ends.
        let mut n = 0;
        while slow.frames.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, SOCKET_QUEUE);
        assert!(matches!(
            slow.frames.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn the_send_budget_has_a_burst_and_a_sustained_rate() {
        let hub = Hub::new(3, 60);
        for _ in 0..3 {
            assert!(hub.take_send(7).is_ok());
        }
        let wait = hub.take_send(7).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        assert!(hub.take_send(8).is_ok(), "budgets are per user");
    }
}
