//! The order settings, each read through one function. The payment deadline and the auto-completion delay are
//! operator site settings (`crate::settings`): a value an operator stored wins over the configured one, and a
//! change applies without a restart (at once on the instance that made it, within `settings::MAX_AGE` on the
//! others). Until an operator sets one, the configured value applies exactly (fractional minutes and days
//! included, which tests and demos use).

use std::time::Duration;

use crate::{settings::Key, state::AppState};

/// The stored site setting `key`, if an operator set one (a settings read that fails falls back to the
/// configuration, with a warning: orders keep working while the database hiccups).
async fn stored(state: &AppState, key: Key) -> Option<u32> {
    match crate::settings::current(state).await {
        Ok(s) => s.stored(key),
        Err(e) => {
            tracing::warn!(error = %e, "site settings unavailable; using the configured order timers");
            None
        }
    }
}

/// How long a WeChat Pay order waits for payment: the `order_payment_timeout_minutes` site setting, else
/// `ORDER_PAYMENT_TIMEOUT_MINUTES` (default 15).
pub async fn payment_timeout(state: &AppState) -> Duration {
    match stored(state, Key::OrderPaymentTimeoutMinutes).await {
        Some(minutes) => Duration::from_secs(u64::from(minutes) * 60),
        None => state.config.orders.payment_timeout,
    }
}

/// How long after payment an undisputed order completes by itself: the `order_auto_complete_days` site
/// setting, else `ORDER_AUTO_COMPLETE_DAYS` (default 7).
pub async fn auto_complete_after(state: &AppState) -> Duration {
    match stored(state, Key::OrderAutoCompleteDays).await {
        Some(days) => Duration::from_secs(u64::from(days) * 86_400),
        None => state.config.orders.auto_complete_after,
    }
}

/// The platform's fee on payouts in basis points (`PLATFORM_FEE_BPS`, default 0).
pub fn platform_fee_bps(state: &AppState) -> u32 {
    state.config.orders.platform_fee_bps
}

/// How long after a prepay or the last query the sweep asks WeChat about an unpaid order
/// (`PAYMENT_QUERY_AFTER_SECONDS`, default 60).
pub fn payment_query_after(state: &AppState) -> Duration {
    state.config.orders.payment_query_after
}

/// Converts a setting to a chrono duration (saturating; settings are bounded at start-up).
pub fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
