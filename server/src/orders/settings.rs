//! The order settings, each read through one function so operator site settings can later override the
//! configured value in one place.

use std::time::Duration;

use crate::state::AppState;

/// How long a WeChat Pay order waits for payment (`ORDER_PAYMENT_TIMEOUT_MINUTES`, default 15).
pub fn payment_timeout(state: &AppState) -> Duration {
    state.config.orders.payment_timeout
}

/// How long after payment an undisputed order completes by itself (`ORDER_AUTO_COMPLETE_DAYS`, default 7).
pub fn auto_complete_after(state: &AppState) -> Duration {
    state.config.orders.auto_complete_after
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
