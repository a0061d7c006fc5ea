//! Periodic background work. Every job derives what to do from the database, so it is safe to run on every
//! instance at once and loses nothing when an instance dies.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{images, state::AppState};

/// Starts the periodic jobs; the returned handle stops them when aborted.
pub fn spawn(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::join!(purge_sessions(state.clone()), sweep_images(state));
    })
}

/// Hourly: drop expired sessions.
async fn purge_sessions(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match state.sessions.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired sessions purged"),
            Err(e) => tracing::warn!(error = %e, "session purge failed"),
        }
    }
}

/// Every `IMAGE_SWEEP_INTERVAL_SECONDS`: delete images nobody attached within a day of their upload.
async fn sweep_images(state: AppState) {
    let mut tick = tokio::time::interval(state.config.image_sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match images::service::sweep_unattached(&state, images::service::UNATTACHED_TTL).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "unattached images swept"),
            Err(e) => tracing::warn!(error = %e, "image sweep failed"),
        }
    }
}
