//! What the fake WeChat Pay remembers, and how it survives a restart: one small JSON file per collection under
//! `DATA_DIR/sandbox/`, rewritten atomically (write a temporary file, then rename) after every change. Pending
//! notification deliveries are among them, so a service stopped between a payment and its notification delivers
//! it after it starts again.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A JSAPI order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trade {
    pub out_trade_no: String,
    pub appid: String,
    pub mchid: String,
    pub description: String,
    pub total: i64,
    pub openid: String,
    pub notify_url: String,
    pub time_expire: Option<String>,
    /// Unix seconds of `time_expire`; after it an unpaid order is closed.
    pub expire_at: Option<i64>,
    pub prepay_id: String,
    /// `NOTPAY`, `SUCCESS`, `CLOSED`, `REFUND`.
    pub state: String,
    pub transaction_id: Option<String>,
    pub success_time: Option<String>,
    /// Fen refunded successfully so far.
    #[serde(default)]
    pub refunded: i64,
    pub create_time: String,
}

/// A refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundRec {
    pub out_refund_no: String,
    pub refund_id: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub refund: i64,
    pub total: i64,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
    /// `PROCESSING`, then `SUCCESS`.
    pub status: String,
    pub create_time: String,
    pub success_time: Option<String>,
    /// When a `PROCESSING` refund succeeds (Unix milliseconds).
    pub settle_at_ms: i64,
}

/// A transfer bill (payout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bill {
    pub out_bill_no: String,
    pub transfer_bill_no: String,
    pub appid: String,
    pub openid: String,
    pub transfer_amount: i64,
    pub transfer_remark: String,
    pub transfer_scene_id: String,
    pub notify_url: Option<String>,
    /// `WAIT_USER_CONFIRM`, `SUCCESS`, `CANCELLED`.
    pub state: String,
    pub package_info: String,
    pub create_time: String,
    pub update_time: String,
}

/// One attempt at delivering a notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub at: String,
    /// Our HTTP status, or `None` when we could not be reached.
    pub status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A notification and its delivery history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: u64,
    /// The envelope's `id` (duplicates share it).
    pub notification_id: String,
    pub event_type: String,
    /// The order, refund or bill number it is about.
    pub subject: String,
    pub url: String,
    /// The envelope, exactly as sent (signed afresh at every attempt).
    pub body: String,
    /// `public_key` or `certificate`: which key signs it.
    pub key: String,
    /// `pending`, `acked`, `gave_up`, or `crafted` (a synchronous test notification, never retried).
    pub state: String,
    /// Unix milliseconds of the next attempt while pending.
    pub next_at_ms: Option<i64>,
    pub attempts: Vec<Attempt>,
    /// A crafted notification's tampering, if any.
    #[serde(default)]
    pub tamper: Option<String>,
}

/// A `upload_shipping_info` call that WeChat accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShippingUpload {
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub logistics_type: i64,
    pub at: String,
    pub body: serde_json::Value,
}

/// Everything, in memory; each collection is its own file.
#[derive(Default)]
pub struct State {
    pub trades: BTreeMap<String, Trade>,
    pub refunds: BTreeMap<String, RefundRec>,
    pub bills: BTreeMap<String, Bill>,
    pub deliveries: BTreeMap<u64, Delivery>,
    pub shipping: Vec<ShippingUpload>,
}

/// Which file a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Trades,
    Refunds,
    Bills,
    Deliveries,
    Shipping,
}

impl Collection {
    fn file(self) -> &'static str {
        match self {
            Collection::Trades => "wechatpay-trades.json",
            Collection::Refunds => "wechatpay-refunds.json",
            Collection::Bills => "wechatpay-bills.json",
            Collection::Deliveries => "wechatpay-deliveries.json",
            Collection::Shipping => "wechatpay-shipping.json",
        }
    }
}

/// The folder of the files.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Reads every collection (missing files are empty collections).
    pub fn load(&self) -> anyhow::Result<State> {
        Ok(State {
            trades: self.read(Collection::Trades)?,
            refunds: self.read(Collection::Refunds)?,
            bills: self.read(Collection::Bills)?,
            deliveries: self.read(Collection::Deliveries)?,
            shipping: self.read(Collection::Shipping)?,
        })
    }

    fn read<T: DeserializeOwned + Default>(&self, c: Collection) -> anyhow::Result<T> {
        let path = self.dir.join(c.file());
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Rewrites the files of the collections a change touched (called with the state locked, so writes of one
    /// file never interleave). A failure is logged: the sandbox keeps working from memory.
    pub fn save(&self, state: &State, touched: &[Collection]) {
        for c in touched {
            let bytes = match c {
                Collection::Trades => serde_json::to_vec(&state.trades),
                Collection::Refunds => serde_json::to_vec(&state.refunds),
                Collection::Bills => serde_json::to_vec(&state.bills),
                Collection::Deliveries => serde_json::to_vec(&state.deliveries),
                Collection::Shipping => serde_json::to_vec(&state.shipping),
            };
            let result = bytes
                .map_err(anyhow::Error::from)
                .and_then(|b| write_atomically(&self.dir.join(c.file()), &b));
            if let Err(e) = result {
                tracing::warn!(error = %e, file = c.file(), "the WeChat Pay sandbox could not save its state");
            }
        }
    }
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", crate::util::random_token(6)));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: u64, state: &str) -> Delivery {
        Delivery {
            id,
            notification_id: "n".into(),
            event_type: "TRANSACTION.SUCCESS".into(),
            subject: "T1".into(),
            url: "http://127.0.0.1:9/notify".into(),
            body: "{}".into(),
            key: "public_key".into(),
            state: state.into(),
            next_at_ms: Some(1),
            attempts: vec![],
            tamper: None,
        }
    }

    #[test]
    fn old_finished_deliveries_are_pruned_pending_ones_never() {
        use crate::wechat::sandbox::pay::delivery::{KEEP_FINISHED, prune};
        let mut state = State::default();
        state.deliveries.insert(1, delivery(1, "pending"));
        for id in 2..(KEEP_FINISHED as u64 + 12) {
            state.deliveries.insert(id, delivery(id, "acked"));
        }
        prune(&mut state);
        assert!(
            state.deliveries.contains_key(&1),
            "a pending delivery is kept however old"
        );
        assert_eq!(state.deliveries.len(), KEEP_FINISHED + 1);
        assert!(
            !state.deliveries.contains_key(&2),
            "the oldest finished ones go first"
        );
    }

    #[test]
    fn collections_survive_a_reload_and_missing_files_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path()).unwrap();
        let empty = store.load().unwrap();
        assert!(empty.trades.is_empty() && empty.deliveries.is_empty());
        let mut state = State::default();
        state.deliveries.insert(7, delivery(7, "pending"));
        store.save(&state, &[Collection::Deliveries]);
        let again = Store::new(dir.path()).unwrap().load().unwrap();
        assert_eq!(again.deliveries[&7].state, "pending");
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["wechatpay-deliveries.json".to_string()]);
    }
}
