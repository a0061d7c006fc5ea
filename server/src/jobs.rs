//! Periodic background work. Every job derives what to do from the database, so it is safe to run on every
//! instance at once and loses nothing when an instance dies — except the view-count buffer, which holds at most
//! a few seconds of views in memory (written again at a normal shutdown).

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;

use crate::{error::AppResult, state::AppState};

/// Runs `job` every `period` (first run after one period), logging what it did and any failure.
fn every<F, Fut>(state: &AppState, period: Duration, name: &'static str, job: F) -> AbortOnDrop
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = AppResult<u64>> + Send,
{
    let state = state.clone();
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            match job(state.clone()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(job = name, count = n, "background job did work"),
                Err(e) => tracing::warn!(job = name, error = %e, "background job failed"),
            }
        }
    }))
}

/// Starts the periodic jobs; aborting the returned handle stops them all.
pub fn spawn(state: AppState) -> JoinHandle<()> {
    let jobs = vec![
        every(
            &state,
            Duration::from_secs(3600),
            "purge expired sessions",
            |s| async move { s.sessions.purge_expired().await },
        ),
        every(
            &state,
            Duration::from_secs(5),
            "write view counts",
            |s| async move { s.views.flush(&s.db).await.map(|n| n as u64) },
        ),
        // Images nobody attached within a day of their upload.
        every(
            &state,
            state.config.image_sweep_interval,
            "sweep unattached images",
            |s| async move {
                crate::images::service::sweep_unattached(&s, crate::images::service::UNATTACHED_TTL)
                    .await
            },
        ),
        // Image checks to (re)submit to WeChat and flagged-image hooks to retry.
        every(
            &state,
            Duration::from_secs(60),
            "content security retries",
            |s| async move {
                crate::moderation::service::run_due_work(&s)
                    .await
                    .map(|n| n as u64)
            },
        ),
        // Tell favouriters about price drops (one alert per listing per day, one statement per listing).
        every(
            &state,
            Duration::from_secs(15),
            "price-drop alerts",
            |s| async move { crate::notifications::price_drops::sweep(&s.db).await },
        ),
        // New public listings matched against saved searches (inbox notifications).
        every(
            &state,
            state.config.saved_search_interval,
            "match saved searches",
            |s| async move { crate::search::saved::match_publications(&s).await },
        ),
        // Search history and query statistics, buffered in memory by searches.
        every(
            &state,
            Duration::from_secs(2),
            "write search log",
            |s| async move { s.search.log.flush(&s.db).await },
        ),
        // Listings written before search existed (runs until it finds none, then idles).
        every(
            &state,
            Duration::from_secs(10),
            "index listings missing from search",
            |s| async move { crate::search::backfill_job(&s).await },
        ),
        // Orders and payments: deadlines, overdue notifications, auto-completion, refunds, payouts, shipping.
        every(
            &state,
            state.config.orders.sweep_interval,
            "expire unpaid orders",
            |s| async move { crate::orders::service::expire_due(&s).await },
        ),
        every(
            &state,
            state.config.orders.sweep_interval,
            "query overdue payments",
            |s| async move { crate::payments::service::query_overdue(&s).await },
        ),
        every(
            &state,
            state.config.orders.sweep_interval,
            "auto-complete paid orders",
            |s| async move { crate::orders::service::auto_complete_due(&s).await },
        ),
        every(
            &state,
            state.config.orders.sweep_interval,
            "retry refunds",
            |s| async move { crate::payments::refunds::retry_due(&s).await },
        ),
        every(
            &state,
            state.config.orders.sweep_interval,
            "reconcile payouts",
            |s| async move { crate::payments::payouts::reconcile_due(&s).await },
        ),
        every(
            &state,
            state.config.orders.sweep_interval,
            "retry shipping uploads",
            |s| async move { crate::payments::shipping::retry_due(&s).await },
        ),
        // Sealed reviews whose 30-day window closed are revealed (and start counting).
        every(
            &state,
            Duration::from_secs(600),
            "reveal reviews",
            |s| async move { crate::reviews::service::reveal_due(&s).await },
        ),
        // Subscribe messages of new inbox events whose kind has a template (WECHAT_SUBSCRIBE_TEMPLATES).
        every(
            &state,
            Duration::from_secs(5),
            "queue subscribe messages of notifications",
            |s| async move { crate::notifications::subscribe::sweep(&s).await },
        ),
        // WeChat subscribe messages that are due (new ones are also sent at once after their commit).
        every(
            &state,
            Duration::from_secs(5),
            "send subscribe messages",
            |s| async move { crate::notifications::outbox::run_due(&s).await },
        ),
    ];
    tokio::spawn(async move {
        let _jobs = jobs;
        std::future::pending::<()>().await;
    })
}

/// Aborts the task when dropped, so aborting [`spawn`]'s handle stops every job it started.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
