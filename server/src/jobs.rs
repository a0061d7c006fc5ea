//! Periodic background work. Every job derives what to do from the database, so it is safe to run on every
//! instance at once and loses nothing when an instance dies.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::state::AppState;

/// Starts the periodic jobs; the returned handle stops them when aborted.
pub fn spawn(state: AppState) -> JoinHandle<()> {
    let views = state.clone();
    let view_flush = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(e) = views.views.flush(&views.db).await {
                tracing::warn!(error = %e, "writing view counts failed");
            }
        }
    });
    tokio::spawn(async move {
        let _view_flush = AbortOnDrop(view_flush);
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

/// Stops a task when the handle that owns it is dropped (so aborting the job runner stops every job).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
