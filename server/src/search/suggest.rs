//! Search suggestions while the student types: completions of a prefix, fast enough for every keystroke.
//!
//! Each school (and "every school", key 0) has a vocabulary held in memory: a vector sorted by the folded text,
//! so a prefix is a binary search and a short scan. It is built from
//! - the school's popular queries of the last 30 days (weighted ×5 per search), and
//! - the words of the titles of its newest [`TITLE_SAMPLE`] public listings, and pairs of adjacent words
//!   (`山地` `自行车` → `山地自行车`), weighted by how many titles contain them,
//!
//! without anything containing a word of the operators' blocklist. It is rebuilt in the background when older
//! than `SEARCH_SUGGEST_REFRESH_SECONDS`; only the first request for a school waits for a build.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
    time::Instant,
};

use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};

use super::{segment, service};
use crate::{
    error::{AppError, AppResult},
    listings::{model::listing, service::PUBLIC_PREDICATE},
    state::AppState,
    util,
};

/// Completions returned at most.
pub const SUGGEST_MAX: usize = 10;
/// Titles a vocabulary is built from (the newest public listings).
pub const TITLE_SAMPLE: u64 = 20_000;
/// Entries a vocabulary keeps at most (the heaviest).
pub const VOCAB_MAX: usize = 50_000;
/// Longest completion, in characters.
const ENTRY_MAX_CHARS: usize = 20;

/// One school's completions, sorted by text.
#[derive(Debug, Default)]
pub struct Vocabulary {
    entries: Vec<(String, u32)>,
}

impl Vocabulary {
    /// Builds the vocabulary from weighted texts (merged when equal).
    pub fn new(weighted: impl IntoIterator<Item = (String, u32)>) -> Vocabulary {
        let mut merged: HashMap<String, u32> = HashMap::new();
        for (text, w) in weighted {
            if text.is_empty() || text.chars().count() > ENTRY_MAX_CHARS {
                continue;
            }
            let e = merged.entry(text).or_default();
            *e = e.saturating_add(w);
        }
        let mut entries: Vec<(String, u32)> = merged.into_iter().collect();
        if entries.len() > VOCAB_MAX {
            entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            entries.truncate(VOCAB_MAX);
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Vocabulary { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Up to `n` entries starting with `prefix` (already folded), heaviest first, then alphabetical.
    pub fn complete(&self, prefix: &str, n: usize) -> Vec<&str> {
        let start = self.entries.partition_point(|(t, _)| t.as_str() < prefix);
        let mut best: Vec<&(String, u32)> = Vec::with_capacity(n + 1);
        for e in self.entries[start..]
            .iter()
            .take_while(|(t, _)| t.starts_with(prefix))
        {
            // Keep the n heaviest seen so far, in order (n is small).
            let pos = best.partition_point(|b| b.1 > e.1 || (b.1 == e.1 && b.0 < e.0));
            if pos < n {
                best.insert(pos, e);
                best.truncate(n);
            }
        }
        best.into_iter().map(|(t, _)| t.as_str()).collect()
    }
}

/// Joins two adjacent words the way a student would type them: no space between Chinese words, a space when
/// either is Latin or a number.
fn join_words(a: &str, b: &str) -> String {
    let ascii = |s: &str| s.chars().any(|c| c.is_ascii_alphanumeric());
    if ascii(a) || ascii(b) {
        format!("{a} {b}")
    } else {
        format!("{a}{b}")
    }
}

/// The weighted words and word pairs of some titles (each counted once per title).
pub fn title_terms<'a>(titles: impl IntoIterator<Item = &'a str>) -> HashMap<String, u32> {
    let mut df: HashMap<String, u32> = HashMap::new();
    let ascii = |s: &str| s.chars().any(|c| c.is_ascii_alphanumeric());
    for title in titles {
        let folded: Vec<char> = segment::fold(title).chars().collect();
        let text: String = folded.iter().collect();
        let words = segment::segment_folded(&text).words;
        let mut seen = HashSet::new();
        for w in &words {
            // Single characters complete nothing useful.
            if w.text.chars().count() >= 2 && seen.insert(w.text.clone()) {
                *df.entry(w.text.clone()).or_default() += 1;
            }
        }
        for pair in words.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            // Words written together, or Latin/numbers separated by one space ("ipad 2021").
            let adjacent = b.start == a.end
                || (b.start == a.end + 1
                    && folded.get(a.end) == Some(&' ')
                    && (ascii(&a.text) || ascii(&b.text)));
            if !adjacent || a.text.chars().count() + b.text.chars().count() < 3 {
                continue;
            }
            let joined = join_words(&a.text, &b.text);
            if seen.insert(joined.clone()) {
                *df.entry(joined).or_default() += 1;
            }
        }
    }
    df
}

/// The vocabularies, per school.
#[derive(Default)]
pub struct Suggester {
    vocabularies: RwLock<HashMap<i64, (Instant, Arc<Vocabulary>)>>,
    building: tokio::sync::Mutex<()>,
}

impl Suggester {
    fn current(&self, school: i64) -> Option<(Instant, Arc<Vocabulary>)> {
        self.vocabularies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&school)
            .map(|(at, v)| (*at, Arc::clone(v)))
    }

    fn store(&self, school: i64, v: Arc<Vocabulary>) {
        self.vocabularies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(school, (Instant::now(), v));
    }

    /// Forgets every vocabulary (the next request builds afresh).
    pub fn invalidate(&self) {
        self.vocabularies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// `GET /api/v1/search/suggest`: completions of `prefix` for a school (0: every school).
pub async fn suggest(state: &AppState, school: i64, prefix: &str) -> AppResult<Vec<String>> {
    let prefix = prefix.trim_start();
    if prefix.chars().count() > super::query::QUERY_MAX_CHARS {
        return Err(AppError::bad_request(
            "query_too_long",
            format!(
                "a search may be at most {} characters",
                super::query::QUERY_MAX_CHARS
            ),
        ));
    }
    let folded = segment::fold(prefix);
    // Spaces collapse as in stored queries; a trailing space stays (the student finished a word).
    let mut key = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.ends_with(char::is_whitespace) && !key.is_empty() {
        key.push(' ');
    }
    if key.is_empty() {
        return Ok(Vec::new());
    }
    let vocab = vocabulary(state, school).await?;
    Ok(vocab
        .complete(&key, SUGGEST_MAX)
        .into_iter()
        .map(str::to_string)
        .collect())
}

/// The school's vocabulary: built now if there is none, rebuilt in the background when stale.
pub async fn vocabulary(state: &AppState, school: i64) -> AppResult<Arc<Vocabulary>> {
    let refresh = state.config.search_suggest_refresh;
    if let Some((at, v)) = state.search.suggest.current(school) {
        if at.elapsed() >= refresh
            && let Ok(guard) = state.search.suggest.building.try_lock()
        {
            drop(guard);
            let state = state.clone();
            tokio::spawn(async move {
                let _guard = state.search.suggest.building.lock().await;
                // Several requests may have asked at once: the first rebuild serves them all.
                if state
                    .search
                    .suggest
                    .current(school)
                    .is_some_and(|(at, _)| at.elapsed() < refresh)
                {
                    return;
                }
                match build(&state.db, school).await {
                    Ok(v) => state.search.suggest.store(school, Arc::new(v)),
                    Err(e) => {
                        tracing::warn!(error = %e, school, "could not rebuild search suggestions")
                    }
                }
            });
        }
        return Ok(v);
    }
    let _guard = state.search.suggest.building.lock().await;
    if let Some((_, v)) = state.search.suggest.current(school) {
        return Ok(v);
    }
    let v = Arc::new(build(&state.db, school).await?);
    state.search.suggest.store(school, Arc::clone(&v));
    Ok(v)
}

/// Builds a school's vocabulary from its popular queries and its newest titles.
pub async fn build(db: &DatabaseConnection, school: i64) -> AppResult<Vocabulary> {
    let started = Instant::now();
    let since = service::day_of(util::now()) - 29;
    let popular = service::popular_queries(db, school, since, 2_000).await?;
    let mut titles = listing::Entity::find()
        .select_only()
        .column(listing::Column::Title)
        .filter(Expr::cust(PUBLIC_PREDICATE))
        .order_by_desc(listing::Column::BumpedAt)
        .order_by_desc(listing::Column::Id)
        .limit(TITLE_SAMPLE);
    if school != 0 {
        titles = titles.filter(listing::Column::SchoolId.eq(school));
    }
    let titles: Vec<String> = titles.into_tuple().all(db).await?;
    let blocked = service::blocked_words(db).await?;
    let vocab = tokio::task::spawn_blocking(move || {
        let terms = title_terms(titles.iter().map(String::as_str));
        let weighted = terms.into_iter().chain(
            popular
                .into_iter()
                .map(|h| (h.q, (h.searches.clamp(0, u32::MAX as i64 / 5) as u32) * 5)),
        );
        Vocabulary::new(weighted.filter(|(t, _)| {
            let text = crate::moderation::service::normalize(t);
            !blocked.iter().any(|w| text.contains(w.as_str()))
        }))
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("building suggestions: {e}")))?;
    tracing::debug!(
        school,
        entries = vocab.len(),
        ms = started.elapsed().as_millis() as u64,
        "search suggestions built"
    );
    Ok(vocab)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_prefix_matches_heaviest_first() {
        let mut weighted: Vec<(String, u32)> = title_terms([
            "九成新 山地自行车 送配件",
            "二手自行车 可小刀",
            "山地自行车 捷安特",
            "iPad 2021 平板",
            "iPad Air",
        ])
        .into_iter()
        .collect();
        weighted.push(("自行车 二手".into(), 50));
        let v = Vocabulary::new(weighted);
        assert_eq!(v.complete("自行", 10)[..2], ["自行车 二手", "自行车"]);
        assert!(v.complete("自行", 10).iter().all(|c| c.starts_with("自行")));
        assert_eq!(v.complete("山地", 10)[..2], ["山地", "山地自行车"]);
        assert_eq!(v.complete("ipad", 10), ["ipad", "ipad 2021", "ipad air"]);
        assert_eq!(v.complete("ipad ", 10), ["ipad 2021", "ipad air"]);
        assert!(v.complete("电脑", 10).is_empty());
        assert_eq!(v.complete("", 2).len(), 2);
        assert!(v.complete("山地", 1).len() == 1);
    }
}
