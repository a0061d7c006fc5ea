//! Periodic background work. Every job derives what to do from the database, so it is safe to run on every
//! instance at once and loses nothing when an instance dies.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::state::AppState;

/// Starts the periodic jobs; the returned handle stops them when aborted.
pub fn spawn(state: AppState) -> JoinHandle<()> {
    let moderation = state.clone();
    tokio::spawn(async move {
        // Image checks to (re)submit to WeChat and flagged-image hooks to retry.
        let _moderation = AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match crate::moderation::service::run_due_work(&moderation).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "moderation retries done"),
                    Err(e) => tracing::warn!(error = %e, "moderation retry job failed"),
                }
            }
        }));
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match state.sessions.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired sessions purged"),
                Err(e) => tracing::warn!(error = %e, "session purge failed"),
            }
        }
    })
}

/// Aborts the task when dropped, so aborting [`spawn`]'s handle stops every job it started.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
