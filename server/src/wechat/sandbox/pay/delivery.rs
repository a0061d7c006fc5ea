//! Notifications: the envelope with its AES-256-GCM resource, signed afresh at every attempt, POSTed to the
//! notify URL. 200/204 is an acknowledgement; anything else (or no answer within five seconds) is retried on
//! WeChat's schedule (15 s, 15 s, 30 s, 3 min, … 6 h), divided by `SANDBOX_WECHATPAY_TIME_SCALE`. One background
//! task (started by `App::run`, stopped with it) sends what is due and settles refunds; the schedule is in the
//! saved state, so a restarted service picks up where the last one stopped.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{
    PaySandbox, RETRY_SCHEDULE_SECS, SignAs,
    api::{bill_notification_json, refund_notification_json, transaction_json},
    notification_id, now_ms,
    store::{Attempt, Bill, Collection, Delivery, State, Trade},
    wx_now,
};
use crate::wechat::pay::{crypto::ApiV3Key, notify::ALGORITHM, sign};

/// What a notification says, before encryption.
pub(super) struct Plain {
    pub event_type: &'static str,
    pub summary: &'static str,
    pub original_type: &'static str,
    pub subject: String,
    pub resource: Value,
}

impl Plain {
    pub fn transaction(t: &Trade, amount_override: Option<i64>) -> Self {
        Plain {
            event_type: "TRANSACTION.SUCCESS",
            summary: "支付成功",
            original_type: "transaction",
            subject: t.out_trade_no.clone(),
            resource: transaction_json(t, amount_override),
        }
    }
}

/// The envelope of `plain`, its resource encrypted under `key`.
pub(super) fn envelope(plain: &Plain, key: &ApiV3Key) -> (String, String) {
    let nonce: String = sign::nonce().chars().take(12).collect();
    let ciphertext = key.encrypt(
        &nonce,
        plain.original_type,
        plain.resource.to_string().as_bytes(),
    );
    let id = notification_id();
    let body = json!({
        "id": id,
        "create_time": wx_now(),
        "resource_type": "encrypt-resource",
        "event_type": plain.event_type,
        "summary": plain.summary,
        "resource": {
            "original_type": plain.original_type,
            "algorithm": ALGORITHM,
            "ciphertext": ciphertext,
            "associated_data": plain.original_type,
            "nonce": nonce,
        }
    });
    (id, body.to_string())
}

/// Finished deliveries kept (in memory and in the file) for the log; older ones are dropped, so a long-running
/// sandbox does not rewrite an ever-growing file. Pending ones are always kept.
pub(super) const KEEP_FINISHED: usize = 1000;

/// Drops the oldest finished deliveries beyond [`KEEP_FINISHED`].
pub(super) fn prune(state: &mut State) {
    let finished: Vec<u64> = state
        .deliveries
        .values()
        .filter(|d| d.state != "pending")
        .map(|d| d.id)
        .collect();
    if finished.len() > KEEP_FINISHED {
        for id in &finished[..finished.len() - KEEP_FINISHED] {
            state.deliveries.remove(id);
        }
    }
}

impl PaySandbox {
    /// Adds a delivery of `plain` to `url`, due now.
    pub(super) fn queue(
        &self,
        state: &mut State,
        touched: &mut Vec<Collection>,
        url: &str,
        plain: Plain,
    ) -> u64 {
        let (notification_id, body) = envelope(&plain, &self.keys.apiv3);
        prune(state);
        let id = state.deliveries.keys().next_back().map_or(1, |k| k + 1);
        state.deliveries.insert(
            id,
            Delivery {
                id,
                notification_id,
                event_type: plain.event_type.into(),
                subject: plain.subject,
                url: url.to_string(),
                body,
                key: self.notification_key().name().into(),
                state: "pending".into(),
                next_at_ms: Some(now_ms()),
                attempts: Vec::new(),
                tamper: None,
            },
        );
        touched.push(Collection::Deliveries);
        id
    }

    pub(super) fn queue_transfer_notification(
        &self,
        state: &mut State,
        touched: &mut Vec<Collection>,
        b: &Bill,
    ) {
        if let Some(url) = b.notify_url.clone() {
            self.queue(
                state,
                touched,
                &url,
                Plain {
                    event_type: "MCHTRANSFER.BILL.FINISHED",
                    summary: "商家转账单据终态通知",
                    original_type: "mch_payment",
                    subject: b.out_bill_no.clone(),
                    resource: bill_notification_json(b),
                },
            );
        }
    }

    /// Starts the background task that delivers notifications and settles refunds. Abort the handle to stop it
    /// (in-flight attempts stop with it; they are retried by the next start).
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let sb = Arc::clone(self);
        tokio::spawn(async move { sb.run().await })
    }

    async fn run(self: Arc<Self>) {
        let mut attempts = JoinSet::new();
        loop {
            let now = now_ms();
            let (due, next) = self.tick(now);
            for d in due {
                let sb = Arc::clone(&self);
                attempts.spawn(async move { sb.attempt(d).await });
            }
            let wait = next.map_or(1000, |n| (n - now).clamp(1, 1000)) as u64;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            }
        }
    }

    /// Settles refunds whose processing time is over, and picks the deliveries that are due and not in flight.
    /// Returns them and when something is next due.
    fn tick(&self, now: i64) -> (Vec<Delivery>, Option<i64>) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        self.change(|state, touched| {
            let settling: Vec<String> = state
                .refunds
                .values()
                .filter(|r| r.status == "PROCESSING" && r.settle_at_ms <= now)
                .map(|r| r.out_refund_no.clone())
                .collect();
            for no in settling {
                let Some(r) = state.refunds.get_mut(&no) else {
                    continue;
                };
                r.status = "SUCCESS".into();
                r.success_time = Some(wx_now());
                let r = r.clone();
                touched.push(Collection::Refunds);
                if let Some(t) = state.trades.get_mut(&r.out_trade_no) {
                    t.refunded += r.refund;
                    t.state = "REFUND".into();
                    touched.push(Collection::Trades);
                }
                if let Some(url) = &r.notify_url {
                    self.queue(
                        state,
                        touched,
                        url,
                        Plain {
                            event_type: "REFUND.SUCCESS",
                            summary: "退款成功",
                            original_type: "refund",
                            subject: r.out_refund_no.clone(),
                            resource: refund_notification_json(&r),
                        },
                    );
                }
            }
            let mut due = Vec::new();
            let mut next: Option<i64> = state
                .refunds
                .values()
                .filter(|r| r.status == "PROCESSING")
                .map(|r| r.settle_at_ms)
                .min();
            for d in state.deliveries.values() {
                let Some(at) = d.next_at_ms.filter(|_| d.state == "pending") else {
                    continue;
                };
                if in_flight.contains(&d.id) {
                    continue;
                }
                if at <= now {
                    in_flight.insert(d.id);
                    due.push(d.clone());
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            (due, next)
        })
    }

    /// One delivery attempt, then its outcome and next retry recorded.
    async fn attempt(&self, d: Delivery) {
        let headers = self.signature_headers(SignAs::from_name(&d.key), d.body.as_bytes());
        let result = self.post(&d.url, &d.body, &headers).await;
        let now = now_ms();
        self.change(|state, touched| {
            let Some(rec) = state.deliveries.get_mut(&d.id) else {
                return;
            };
            let (status, error) = match &result {
                Ok(s) => (Some(*s), None),
                Err(e) => (None, Some(e.clone())),
            };
            rec.attempts.push(Attempt {
                at: wx_now(),
                status,
                error,
            });
            if matches!(status, Some(200 | 204)) {
                rec.state = "acked".into();
                rec.next_at_ms = None;
            } else if let Some(delay) = RETRY_SCHEDULE_SECS.get(rec.attempts.len() - 1) {
                rec.next_at_ms = Some(now + self.scaled_ms(*delay));
            } else {
                rec.state = "gave_up".into();
                rec.next_at_ms = None;
            }
            touched.push(Collection::Deliveries);
        });
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&d.id);
        self.wake.notify_one();
    }

    /// POSTs a notification; our HTTP status, or why there was none.
    pub(super) async fn post(
        &self,
        url: &str,
        body: &str,
        headers: &[(&'static str, String)],
    ) -> Result<u16, String> {
        let mut req = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) => Err(e.without_url().to_string()),
        }
    }
}
