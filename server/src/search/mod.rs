//! Chinese full-text search over listings: segmentation with jieba, an index kept in the database in the same
//! transaction as the listing (SQLite FTS5 or PostgreSQL `tsvector`), relevance-ranked and filtered search,
//! suggestions while typing, hot queries, search history, and saved searches that notify when a matching
//! listing is published. `docs/search.md` explains how it works and what it does with 高数.

pub mod api;
pub mod index;
pub mod model;
pub mod query;
pub mod saved;
pub mod segment;
pub mod service;
pub mod suggest;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::{error::AppResult, state::AppState};

/// Search's share of the application state: buffers and caches, all in memory.
#[derive(Default)]
pub struct SearchState {
    /// Searches not yet written to history and statistics.
    pub log: service::SearchLog,
    /// Suggestion vocabularies per school.
    pub suggest: suggest::Suggester,
    /// Hot lists per school.
    pub hot: service::HotCache,
    /// The start-up backfill has found nothing left to index.
    backfilled: AtomicBool,
    /// How far the backfill got (listing id).
    backfill_after: AtomicI64,
}

/// The job that indexes listings written before search existed; once it finds none left it does nothing more
/// in this process. Returns how many it indexed.
pub async fn backfill_job(state: &AppState) -> AppResult<u64> {
    if state.search.backfilled.load(Ordering::Relaxed) {
        return Ok(0);
    }
    let mut total = 0u64;
    loop {
        let after = state.search.backfill_after.load(Ordering::Relaxed);
        let ids = index::backfill(state, after, 500).await?;
        let Some(last) = ids.last() else {
            state.search.backfilled.store(true, Ordering::Relaxed);
            return Ok(total);
        };
        state.search.backfill_after.store(*last, Ordering::Relaxed);
        total += ids.len() as u64;
    }
}
