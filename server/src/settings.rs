//! Site settings: the few rules operators tune at run time without a deployment (report threshold, order
//! timers). Each is a typed, validated key stored as JSON in `site_settings`; a key never set falls back to its
//! default (for the report threshold: `REPORT_HIDE_THRESHOLD`). Read on hot paths, so they are cached in memory
//! for at most [`MAX_AGE`]: a change made on this instance applies at once, other instances pick it up within
//! [`MAX_AGE`]. (Whether a school requires verification is a column of the school, changed through the
//! catalogue.)

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait, sea_query::OnConflict,
};
use serde_json::Value;

use crate::{
    config::Config,
    error::{AppError, AppResult},
    state::AppState,
    util,
};

pub const MAX_AGE: Duration = Duration::from_secs(30);

pub mod site_setting {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "site_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: Json,
        /// The operator who set it last.
        pub updated_by: Option<i64>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A setting operators may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// Minutes a buyer has to pay before an unpaid order expires.
    OrderPaymentTimeoutMinutes,
    /// Days after hand-over (or shipping) before an order completes by itself.
    OrderAutoCompleteDays,
    /// Distinct students whose open reports hide a listing, post or comment until an operator decides.
    ReportHideThreshold,
}

impl Key {
    pub const ALL: [Key; 3] = [
        Key::OrderPaymentTimeoutMinutes,
        Key::OrderAutoCompleteDays,
        Key::ReportHideThreshold,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::OrderPaymentTimeoutMinutes => "order_payment_timeout_minutes",
            Key::OrderAutoCompleteDays => "order_auto_complete_days",
            Key::ReportHideThreshold => "report_hide_threshold",
        }
    }

    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The allowed range (every setting is a whole number for now).
    pub fn range(self) -> (u32, u32) {
        match self {
            Key::OrderPaymentTimeoutMinutes => (5, 1440),
            Key::OrderAutoCompleteDays => (1, 30),
            Key::ReportHideThreshold => (1, 100),
        }
    }

    /// Checks a proposed value; the error says what is allowed.
    pub fn validate(self, value: u32) -> AppResult<Value> {
        let (lo, hi) = self.range();
        if !(lo..=hi).contains(&value) {
            return Err(AppError::invalid_field(
                self.name(),
                format!("must be a whole number from {lo} to {hi}"),
            ));
        }
        Ok(Value::from(value))
    }
}

/// Every setting, with the stored value or the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSettings {
    pub order_payment_timeout_minutes: u32,
    pub order_auto_complete_days: u32,
    pub report_hide_threshold: u32,
    /// The keys an operator stored (the others are defaults from the configuration).
    pub stored: BTreeSet<Key>,
}

impl SiteSettings {
    /// The defaults, from the configuration: `ORDER_PAYMENT_TIMEOUT_MINUTES` (15), `ORDER_AUTO_COMPLETE_DAYS`
    /// (7) — rounded to whole minutes and days within the settings' ranges for display; orders use the exact
    /// configured durations until an operator stores a value — and `REPORT_HIDE_THRESHOLD`.
    pub fn defaults(config: &Config) -> Self {
        let whole = |d: Duration, unit: f64, key: Key| {
            let (lo, hi) = key.range();
            ((d.as_secs_f64() / unit).round() as u32).clamp(lo, hi)
        };
        Self {
            order_payment_timeout_minutes: whole(
                config.orders.payment_timeout,
                60.0,
                Key::OrderPaymentTimeoutMinutes,
            ),
            order_auto_complete_days: whole(
                config.orders.auto_complete_after,
                86_400.0,
                Key::OrderAutoCompleteDays,
            ),
            report_hide_threshold: config.report_hide_threshold,
            stored: BTreeSet::new(),
        }
    }

    /// The value of `key` if an operator stored it.
    pub fn stored(&self, key: Key) -> Option<u32> {
        self.stored.contains(&key).then(|| self.get(key))
    }

    pub fn get(&self, key: Key) -> u32 {
        match key {
            Key::OrderPaymentTimeoutMinutes => self.order_payment_timeout_minutes,
            Key::OrderAutoCompleteDays => self.order_auto_complete_days,
            Key::ReportHideThreshold => self.report_hide_threshold,
        }
    }

    fn set(&mut self, key: Key, value: u32) {
        match key {
            Key::OrderPaymentTimeoutMinutes => self.order_payment_timeout_minutes = value,
            Key::OrderAutoCompleteDays => self.order_auto_complete_days = value,
            Key::ReportHideThreshold => self.report_hide_threshold = value,
        }
    }

    /// Every key and its value, for the audit log.
    pub fn as_map(&self) -> BTreeMap<&'static str, u32> {
        Key::ALL
            .into_iter()
            .map(|k| (k.name(), self.get(k)))
            .collect()
    }
}

/// Reads every setting from the database (stored values over defaults). A stored value that no longer
/// validates (a range narrowed by a release) is ignored with a warning.
pub async fn load(db: &impl ConnectionTrait, config: &Config) -> AppResult<SiteSettings> {
    let mut s = SiteSettings::defaults(config);
    for row in site_setting::Entity::find().all(db).await? {
        let Some(key) = Key::from_name(&row.key) else {
            continue;
        };
        match row.value.as_u64().and_then(|v| u32::try_from(v).ok()) {
            Some(v) if key.validate(v).is_ok() => {
                s.set(key, v);
                s.stored.insert(key);
            }
            _ => {
                tracing::warn!(key = %row.key, value = %row.value, "ignoring an invalid site setting")
            }
        }
    }
    Ok(s)
}

/// Stores values in the caller's transaction (validated by the caller with [`Key::validate`]).
pub async fn store_in(
    txn: &impl ConnectionTrait,
    values: &BTreeMap<Key, u32>,
    operator_id: Option<i64>,
) -> AppResult<()> {
    if values.is_empty() {
        return Ok(());
    }
    let now = util::now();
    site_setting::Entity::insert_many(values.iter().map(|(k, v)| site_setting::ActiveModel {
        key: Set(k.name().to_string()),
        value: Set(Value::from(*v)),
        updated_by: Set(operator_id),
        updated_at: Set(now),
    }))
    .on_conflict(
        OnConflict::column(site_setting::Column::Key)
            .update_columns([
                site_setting::Column::Value,
                site_setting::Column::UpdatedBy,
                site_setting::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The settings, cached.
#[derive(Default)]
pub struct SettingsCache {
    current: RwLock<Option<(Arc<SiteSettings>, Instant)>>,
}

impl SettingsCache {
    /// The settings, reloaded when older than [`MAX_AGE`].
    pub async fn get(
        &self,
        db: &DatabaseConnection,
        config: &Config,
    ) -> AppResult<Arc<SiteSettings>> {
        {
            let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
            if let Some((s, at)) = guard.as_ref()
                && at.elapsed() < MAX_AGE
            {
                return Ok(Arc::clone(s));
            }
        }
        let fresh = Arc::new(load(db, config).await?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::clone(&fresh), Instant::now()));
        Ok(fresh)
    }

    /// Forget the cached copy (after this instance changed a setting).
    pub fn invalidate(&self) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The current settings (the accessor every capability uses).
pub async fn current(state: &AppState) -> AppResult<Arc<SiteSettings>> {
    state.settings.get(&state.db, &state.config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_and_ranged() {
        for k in Key::ALL {
            assert_eq!(Key::from_name(k.name()), Some(k));
            let (lo, hi) = k.range();
            assert!(k.validate(lo).is_ok() && k.validate(hi).is_ok());
            assert!(k.validate(hi + 1).is_err());
            assert!(lo == 0 || k.validate(lo - 1).is_err());
        }
        assert_eq!(Key::from_name("nope"), None);
        let err = Key::ReportHideThreshold.validate(0).unwrap_err();
        assert_eq!(err.code(), "validation_failed");
    }
}
