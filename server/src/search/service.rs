//! Searching listings, and what searches leave behind: the student's history and the school's hot queries.
//!
//! A search is the browse query (same visibility rule, same filters) restricted to the listings whose index row
//! matches the parsed query:
//! - `relevance` ranks the newest [`crate::config::Config::search_rank_window`] matches by BM25 (SQLite FTS5) or
//!   `ts_rank` (PostgreSQL), title above category above description, ties newest first; the cursor is a keyset
//!   over (score, id). Bounding the ranked set keeps a query for a word in every tenth listing as cheap as a
//!   rare one; the rest of the matches stay reachable through the other sorts.
//! - `newest`, `price_asc`, `price_desc` are browsing's sorts and cursors over every match.
//!
//! Searches are logged off the request path: a buffer in memory, written every few seconds (and at shutdown)
//! by a job, so a search costs no write.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Statement,
    sea_query::{Alias, Condition, Expr, OnConflict, Order, Query as SqlQuery},
};

use super::{model::history, model::query_stat, query::Query, segment};
use crate::{
    error::{AppError, AppResult},
    listings::{
        model::listing,
        service::{self as listings, BrowseQuery, Page, Sort},
    },
    state::AppState,
    util,
};

/// How search results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum SearchSort {
    /// Best match first (title matches above category and description matches), among the newest matches.
    #[default]
    Relevance,
    /// Newest first (by publication or last bump).
    Newest,
    PriceAsc,
    PriceDesc,
}

/// Who is searching: their account if logged in, and a key that tells searchers apart for the hot list.
#[derive(Debug, Clone)]
pub struct Searcher {
    pub user_id: Option<i64>,
    pub school_id: Option<i64>,
    /// `u<id>` or `ip<address>`.
    pub key: String,
}

/// A page of results.
pub struct Results {
    /// Each listing with its title highlighted.
    pub items: Vec<(listing::Model, String)>,
    pub next_cursor: Option<String>,
    /// First page only: the number of matches, counted up to the rank window.
    pub total: Option<i64>,
    /// `total` stopped at the window: there are at least that many.
    pub total_is_estimate: bool,
}

/// `GET /api/v1/search`.
pub async fn search(
    state: &AppState,
    raw_q: &str,
    filters: BrowseQuery,
    sort: SearchSort,
    searcher: &Searcher,
) -> AppResult<Results> {
    let query = Query::parse(raw_q)?;
    if filters.seller_id.is_some() {
        return Err(AppError::invalid_field(
            "seller_id",
            "search covers public listings only",
        ));
    }
    let cond = listings::browse_condition(state, &filters, searcher.user_id).await?;
    let window = state.config.search_rank_window.max(1) as u64;
    let first_page = filters.cursor.is_none();
    let (page, total) = match sort {
        SearchSort::Relevance => {
            relevance_page(
                &state.db,
                &query,
                cond,
                window,
                filters.cursor.as_deref(),
                filters.limit,
            )
            .await?
        }
        other => {
            let browse_sort = match other {
                SearchSort::PriceAsc => Sort::PriceAsc,
                SearchSort::PriceDesc => Sort::PriceDesc,
                _ => Sort::Newest,
            };
            let backend = state.db.get_database_backend();
            let total = if first_page {
                Some(count_window(&state.db, &query, cond.clone(), window).await?)
            } else {
                None
            };
            // SQLite: a word in many listings is checked listing by listing while walking the sort's index (a
            // page needs few of them); a rarer one is looked up once in the index and its matches sorted.
            let probe_from = state.config.search_probe_from;
            let probe = backend != DbBackend::Postgres
                && count_index_matches(&state.db, &query, probe_from).await? >= probe_from as i64;
            let matching = match_condition(backend, &query, probe);
            let select = listing::Entity::find().filter(cond).filter(matching);
            let page = listings::sorted_page(
                &state.db,
                select,
                browse_sort,
                filters.cursor.as_deref(),
                filters.limit,
            )
            .await?;
            (page, total)
        }
    };
    let words = query.highlight_words();
    let items: Vec<(listing::Model, String)> = page
        .items
        .into_iter()
        .map(|l| {
            let h = segment::highlight(&l.title, &words);
            (l, h)
        })
        .collect();
    if first_page {
        let school = filters.school_id.or(searcher.school_id).unwrap_or(0);
        record(
            state,
            searcher,
            school,
            &query.normalized,
            !items.is_empty(),
        );
    }
    Ok(Results {
        items,
        next_cursor: page.next_cursor,
        total: if first_page {
            Some(total.unwrap_or(0).min(window as i64))
        } else {
            None
        },
        total_is_estimate: first_page && total.unwrap_or(0) >= window as i64,
    })
}

/// `listings.id` is among the index rows matching the query: the set of matches (`IN`), or, with `probe`, a
/// lookup of this listing's row in the index (`EXISTS … rowid = listings.id`). Custom SQL placeholders are `$1`
/// for PostgreSQL, `?` for SQLite.
fn match_condition(backend: DbBackend, q: &Query, probe: bool) -> Condition {
    let expr = match backend {
        DbBackend::Postgres => Expr::cust_with_values(
            "listings.id IN (SELECT listing_id FROM listing_search WHERE doc @@ CAST($1 AS tsquery))",
            [q.tsquery()],
        ),
        _ if probe => Expr::cust_with_values(
            "EXISTS (SELECT 1 FROM listing_search WHERE listing_search MATCH ? \
             AND listing_search.rowid = listings.id)",
            [q.fts5_match()],
        ),
        _ => Expr::cust_with_values(
            "listings.id IN (SELECT rowid FROM listing_search WHERE listing_search MATCH ?)",
            [q.fts5_match()],
        ),
    };
    Condition::all().add(expr)
}

/// The index side of a search: matching listings (joined, so `cond` applies), newest first, with their score
/// when `scored` (lower is better on both backends). The index hands its matches over in id order, so a `LIMIT`
/// on this stops early without scoring or even looking at the rest.
fn window_select(
    backend: DbBackend,
    q: &Query,
    cond: Condition,
    scored: bool,
) -> sea_orm::sea_query::SelectStatement {
    let mut inner = SqlQuery::select();
    inner.expr_as(
        Expr::col((listing::Entity, listing::Column::Id)),
        Alias::new("id"),
    );
    match backend {
        DbBackend::Postgres => {
            let tsq = q.tsquery();
            if scored {
                inner.expr_as(
                    Expr::cust_with_values(
                        "CAST(-ts_rank('{0.05, 0.2, 0.4, 1.0}', listing_search.doc, CAST($1 AS tsquery)) AS double precision)",
                        [tsq.clone()],
                    ),
                    Alias::new("score"),
                );
            }
            inner
                .from(Alias::new("listing_search"))
                .inner_join(
                    listing::Entity,
                    Expr::cust("listings.id = listing_search.listing_id"),
                )
                .and_where(Expr::cust_with_values(
                    "listing_search.doc @@ CAST($1 AS tsquery)",
                    [tsq],
                ))
                .order_by_expr(Expr::cust("listing_search.listing_id"), Order::Desc);
        }
        _ => {
            if scored {
                inner.expr_as(
                    Expr::cust("bm25(listing_search, 10.0, 4.0, 1.0)"),
                    Alias::new("score"),
                );
            }
            inner
                .from(Alias::new("listing_search"))
                .inner_join(
                    listing::Entity,
                    Expr::cust("listings.id = listing_search.rowid"),
                )
                .and_where(Expr::cust_with_values(
                    "listing_search MATCH ?",
                    [q.fts5_match()],
                ))
                .order_by_expr(Expr::cust("listing_search.rowid"), Order::Desc);
        }
    }
    inner.cond_where(cond);
    inner
}

async fn count_of(
    db: &DatabaseConnection,
    inner: sea_orm::sea_query::SelectStatement,
) -> AppResult<i64> {
    let q = SqlQuery::select()
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from_subquery(inner, Alias::new("t"))
        .to_owned();
    let stmt = db.get_database_backend().build(&q);
    let row = db
        .query_one_raw(stmt)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("COUNT returned no row")))?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// How many listings match (filters included), counting no further than `cap`, newest first from the index.
async fn count_window(
    db: &DatabaseConnection,
    q: &Query,
    cond: Condition,
    cap: u64,
) -> AppResult<i64> {
    let mut inner = window_select(db.get_database_backend(), q, cond, false);
    inner.limit(cap);
    count_of(db, inner).await
}

/// How many index rows match the words (any status, no filters), counting no further than `cap` (SQLite).
async fn count_index_matches(db: &DatabaseConnection, q: &Query, cap: u64) -> AppResult<i64> {
    let inner = SqlQuery::select()
        .expr(Expr::cust("rowid"))
        .from(Alias::new("listing_search"))
        .and_where(Expr::cust_with_values(
            "listing_search MATCH ?",
            [q.fts5_match()],
        ))
        .limit(cap)
        .to_owned();
    count_of(db, inner).await
}

/// The cursor tag of a relevance page: the sort and a fingerprint of the query, so a cursor only continues the
/// query it came from.
fn relevance_tag(q: &Query) -> String {
    format!("r{}", &util::sha256_hex(q.normalized.as_bytes())[..8])
}

#[derive(Debug, FromQueryResult)]
struct Ranked {
    search_score: f64,
    search_total: i64,
}

/// One relevance page: the newest `window` matches ranked by score, keyset over (score, id), plus the number of
/// matches in the window.
async fn relevance_page(
    db: &DatabaseConnection,
    q: &Query,
    cond: Condition,
    window: u64,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<(Page<listing::Model>, Option<i64>)> {
    let limit = limit.unwrap_or(20).clamp(1, listings::PAGE_MAX);
    let backend = db.get_database_backend();
    let tag = relevance_tag(q);
    let after = match cursor {
        Some(c) => {
            let (key, id) = util::decode_cursor(&tag, c)?;
            let bits = u64::from_str_radix(&key, 16).map_err(|_| util::invalid_cursor())?;
            let score = f64::from_bits(bits);
            if !score.is_finite() {
                return Err(util::invalid_cursor());
            }
            Some((score, id))
        }
        None => None,
    };

    // The window: matching listings, newest first, each with its score.
    let mut inner = window_select(backend, q, cond, true);
    inner.limit(window);
    let built = backend.build(&inner);
    let mut values = built.values.map(|v| v.0).unwrap_or_default();
    let mut param = |v: sea_orm::Value| {
        values.push(v);
        match backend {
            DbBackend::Postgres => format!("${}", values.len()),
            _ => "?".to_string(),
        }
    };
    let keyset = match after {
        Some((score, id)) => {
            let (s1, s2, i) = (param(score.into()), param(score.into()), param(id.into()));
            format!("WHERE w.score > {s1} OR (w.score = {s2} AND w.id < {i})")
        }
        None => String::new(),
    };
    // The page is cut from the window first and only its rows are joined back to `listings` (joining the whole
    // window before sorting would read every row of it twice).
    let sql = format!(
        "WITH w AS MATERIALIZED ({inner}) \
         SELECT listings.*, p.score AS search_score, p.total AS search_total \
         FROM (SELECT w.id AS id, w.score AS score, (SELECT COUNT(*) FROM w) AS total \
               FROM w {keyset} ORDER BY w.score, w.id DESC LIMIT {take}) p \
         JOIN listings ON listings.id = p.id \
         ORDER BY p.score, p.id DESC",
        inner = built.sql,
        take = limit + 1,
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut total = None;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let r = Ranked::from_query_result(row, "")?;
        total = Some(r.search_total);
        items.push((listing::Model::from_query_result(row, "")?, r.search_score));
    }
    if cursor.is_none() && total.is_none() {
        total = Some(0);
    }
    let next_cursor = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|(l, score)| util::encode_cursor(&tag, &format!("{:016x}", score.to_bits()), l.id))
    } else {
        None
    };
    Ok((
        Page {
            items: items.into_iter().map(|(l, _)| l).collect(),
            next_cursor,
        },
        total,
    ))
}

// ---------------------------------------------------------------------------------------------------------------
// History and hot queries

/// Queries kept in a student's history.
pub const HISTORY_MAX: usize = 20;
/// Queries on the hot list.
pub const HOT_MAX: usize = 10;
/// How long a school's hot list is reused before it is computed again.
pub const HOT_CACHE: Duration = Duration::from_secs(60);
/// The days the hot list looks back over.
pub const HOT_DAYS: i32 = 7;

/// Days since 1970-01-01 (UTC) of a time.
pub fn day_of(t: DateTime<Utc>) -> i32 {
    (t.timestamp().div_euclid(86_400)) as i32
}

/// Searches not yet written: counts per (school, day, query) and history entries per (user, query).
#[derive(Default)]
pub struct SearchLog {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    counts: HashMap<(i64, i32, String), i64>,
    history: HashMap<(i64, String), DateTime<Utc>>,
}

impl SearchLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_history(&self, user_id: i64, q: &str, at: DateTime<Utc>) {
        let mut p = self.lock();
        let e = p.history.entry((user_id, q.to_string())).or_insert(at);
        *e = (*e).max(at);
    }

    fn add_count(&self, school: i64, day: i32, q: &str) {
        *self
            .lock()
            .counts
            .entry((school, day, q.to_string()))
            .or_default() += 1;
    }

    /// The user's searches not yet written.
    fn pending_history(&self, user_id: i64) -> Vec<(String, DateTime<Utc>)> {
        self.lock()
            .history
            .iter()
            .filter(|((u, _), _)| *u == user_id)
            .map(|((_, q), at)| (q.clone(), *at))
            .collect()
    }

    fn forget_history(&self, user_id: i64, q: Option<&str>) {
        self.lock()
            .history
            .retain(|(u, k), _| *u != user_id || q.is_some_and(|q| q != k));
    }

    /// Writes everything buffered. Whatever cannot be written goes back into the buffer for the next flush.
    /// Returns how many entries were written.
    pub async fn flush(&self, db: &DatabaseConnection) -> AppResult<u64> {
        let taken = std::mem::take(&mut *self.lock());
        let n = (taken.counts.len() + taken.history.len()) as u64;
        if n == 0 {
            return Ok(0);
        }
        match write_log(db, &taken).await {
            Ok(()) => Ok(n),
            Err(e) => {
                let mut p = self.lock();
                for (k, v) in taken.counts {
                    *p.counts.entry(k).or_default() += v;
                }
                for (k, at) in taken.history {
                    let e = p.history.entry(k).or_insert(at);
                    *e = (*e).max(at);
                }
                Err(e)
            }
        }
    }
}

async fn write_log(db: &DatabaseConnection, p: &Pending) -> AppResult<()> {
    use sea_orm::{ActiveValue::Set, TransactionTrait, sea_query::ExprTrait};
    let txn = db.begin().await?;
    let counts: Vec<_> = p.counts.iter().collect();
    for chunk in counts.chunks(500) {
        query_stat::Entity::insert_many(chunk.iter().map(|((school, day, q), n)| {
            query_stat::ActiveModel {
                school_id: Set(*school),
                day: Set(*day),
                q: Set(q.clone()),
                searches: Set(**n),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                query_stat::Column::SchoolId,
                query_stat::Column::Day,
                query_stat::Column::Q,
            ])
            .value(
                query_stat::Column::Searches,
                Expr::col((query_stat::Entity, query_stat::Column::Searches))
                    .add(Expr::cust("excluded.searches")),
            )
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    let history: Vec<_> = p.history.iter().collect();
    for chunk in history.chunks(500) {
        history::Entity::insert_many(chunk.iter().map(|((user, q), at)| history::ActiveModel {
            user_id: Set(*user),
            q: Set(q.clone()),
            searched_at: Set(**at),
        }))
        .on_conflict(
            OnConflict::columns([history::Column::UserId, history::Column::Q])
                .update_column(history::Column::SearchedAt)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    // Each user keeps the newest HISTORY_MAX queries.
    let mut users: Vec<i64> = p.history.keys().map(|(u, _)| *u).collect();
    users.sort_unstable();
    users.dedup();
    for user in users {
        let backend = txn.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                "DELETE FROM search_history WHERE user_id = $1 AND q NOT IN \
                 (SELECT q FROM search_history WHERE user_id = $1 ORDER BY searched_at DESC, q LIMIT $2)"
            }
            _ => {
                "DELETE FROM search_history WHERE user_id = ?1 AND q NOT IN \
                 (SELECT q FROM search_history WHERE user_id = ?1 ORDER BY searched_at DESC, q LIMIT ?2)"
            }
        };
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [user.into(), (HISTORY_MAX as i64).into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Remembers a search: in the user's history, and (once per searcher, query and day, and only when it found
/// something) in the school's statistics.
fn record(state: &AppState, searcher: &Searcher, school: i64, q: &str, found: bool) {
    let now = util::now();
    if let Some(user) = searcher.user_id {
        state.search.log.add_history(user, q, now);
    }
    if !found {
        return;
    }
    let state = state.clone();
    let q = q.to_string();
    let day = day_of(now);
    let key = format!(
        "sq:{day}:{school}:{}:{}",
        searcher.key,
        &util::sha256_hex(q.as_bytes())[..16]
    );
    tokio::spawn(async move {
        match state
            .kv
            .set_nx_ex(&key, "1", Duration::from_secs(86_400))
            .await
        {
            Ok(true) => state.search.log.add_count(school, day, &q),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "search de-duplication unavailable"),
        }
    });
}

/// A query of the student's history.
pub struct HistoryEntry {
    pub q: String,
    pub searched_at: DateTime<Utc>,
}

/// `GET /api/v1/me/search-history`: newest first, distinct, at most [`HISTORY_MAX`].
pub async fn history(state: &AppState, user_id: i64) -> AppResult<Vec<HistoryEntry>> {
    let stored = history::Entity::find()
        .filter(history::Column::UserId.eq(user_id))
        .order_by_desc(history::Column::SearchedAt)
        .limit(HISTORY_MAX as u64)
        .all(&state.db)
        .await?;
    let mut merged: HashMap<String, DateTime<Utc>> = HashMap::new();
    for (q, at) in stored
        .into_iter()
        .map(|h| (h.q, h.searched_at))
        .chain(state.search.log.pending_history(user_id))
    {
        let e = merged.entry(q).or_insert(at);
        *e = (*e).max(at);
    }
    let mut out: Vec<HistoryEntry> = merged
        .into_iter()
        .map(|(q, searched_at)| HistoryEntry { q, searched_at })
        .collect();
    out.sort_by(|a, b| b.searched_at.cmp(&a.searched_at).then(a.q.cmp(&b.q)));
    out.truncate(HISTORY_MAX);
    Ok(out)
}

/// `DELETE /api/v1/me/search-history`: forgets every query, or only `q`.
pub async fn clear_history(state: &AppState, user_id: i64, q: Option<&str>) -> AppResult<()> {
    let q = q.map(|q| {
        segment::fold(q)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    });
    state.search.log.forget_history(user_id, q.as_deref());
    let mut del = history::Entity::delete_many().filter(history::Column::UserId.eq(user_id));
    if let Some(q) = &q {
        del = del.filter(history::Column::Q.eq(q.as_str()));
    }
    del.exec(&state.db).await?;
    Ok(())
}

/// A query on the hot list.
#[derive(Debug, Clone)]
pub struct HotQuery {
    pub q: String,
    /// Distinct searchers per day, summed over the last seven days.
    pub searches: i64,
}

/// A school's hot list and when it was computed.
type HotList = (Instant, Arc<Vec<HotQuery>>);

/// Hot lists per school, each with when it was computed.
#[derive(Default)]
pub struct HotCache {
    lists: Mutex<HashMap<i64, HotList>>,
}

/// The most searched queries of a school (0: every school) over the last [`HOT_DAYS`] days, without queries
/// that contain a word of the operators' blocklist. Cached for [`HOT_CACHE`].
pub async fn hot(state: &AppState, school: i64) -> AppResult<Arc<Vec<HotQuery>>> {
    if let Some((at, list)) = state
        .search
        .hot
        .lists
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&school)
        && at.elapsed() < HOT_CACHE
    {
        return Ok(Arc::clone(list));
    }
    let since = day_of(util::now()) - (HOT_DAYS - 1);
    let list = Arc::new(
        popular_queries(&state.db, school, since, HOT_MAX * 3)
            .await?
            .into_iter()
            .take(HOT_MAX)
            .collect::<Vec<_>>(),
    );
    state
        .search
        .hot
        .lists
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(school, (Instant::now(), Arc::clone(&list)));
    Ok(list)
}

/// The most searched queries of a school (0: every school) since `since_day`, most searched first, without
/// queries containing a word of the operators' blocklist.
pub async fn popular_queries(
    db: &DatabaseConnection,
    school: i64,
    since_day: i32,
    n: usize,
) -> AppResult<Vec<HotQuery>> {
    #[derive(FromQueryResult)]
    struct Row {
        q: String,
        searches: i64,
    }
    let mut select = query_stat::Entity::find()
        .select_only()
        .column(query_stat::Column::Q)
        .column_as(Expr::cust("CAST(SUM(searches) AS BIGINT)"), "searches")
        .filter(query_stat::Column::Day.gte(since_day))
        .group_by(query_stat::Column::Q)
        .order_by_desc(Expr::cust("searches"))
        .order_by_asc(query_stat::Column::Q)
        .limit(n as u64 * 2);
    if school != 0 {
        select = select.filter(query_stat::Column::SchoolId.eq(school));
    }
    let rows = select.into_model::<Row>().all(db).await?;
    let blocked = blocked_words(db).await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            let text = crate::moderation::service::normalize(&r.q);
            !blocked.iter().any(|w| text.contains(w.as_str()))
        })
        .take(n)
        .map(|r| HotQuery {
            q: r.q,
            searches: r.searches,
        })
        .collect())
}

/// The operators' blocklist words (normalised), which never appear in hot lists or suggestions.
pub(crate) async fn blocked_words(db: &DatabaseConnection) -> AppResult<Vec<String>> {
    use crate::moderation::model::blocked_word;
    Ok(blocked_word::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|w| w.word)
        .filter(|w| !w.is_empty())
        .collect())
}
