//! HTTP endpoints of search: the search itself, suggestions, hot queries, the student's history and saved
//! searches. Handlers parse, authorise, call the services and shape the response.

use chrono::{DateTime, Utc};
use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};

use super::{model::saved_search, saved, service, suggest};
use crate::{
    auth::StudentAuth,
    error::AppResult,
    listings::{
        api::{ListingCard, OptionalStudent, cards},
        model::{Condition, Status},
        service::BrowseQuery,
    },
    state::AppState,
    users::model::user,
};

#[derive(Tags)]
enum SearchTags {
    /// Full-text search over listings, suggestions and hot queries.
    Search,
    /// The caller's search history and saved searches.
    SavedSearches,
}

/// A listing found by a search: the card browsing shows, plus the highlighted title.
#[derive(Debug, Object)]
pub struct SearchHit {
    #[oai(flatten)]
    pub card: ListingCard,
    /// The title with every matched word wrapped in `<em>` and `</em>`; everything else is HTML-escaped
    /// (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;`), so the text can be rendered as rich text as it is.
    pub highlighted_title: String,
}

/// A page of search results.
#[derive(Debug, Object)]
pub struct SearchPage {
    pub items: Vec<SearchHit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// First page only: how many listings match, counted up to 1,000 (`SEARCH_RANK_WINDOW`).
    pub total: Option<i64>,
    /// True when `total` stopped at that cap: show it as "1000+". With the `relevance` sort only that many
    /// (the newest matches) are ranked and paged; the other sorts page through every match.
    pub total_is_estimate: bool,
}

/// Completions for what the student is typing.
#[derive(Debug, Object)]
pub struct Suggestions {
    /// Up to 10, most popular first.
    pub items: Vec<String>,
}

/// A query on the hot list.
#[derive(Debug, Object)]
pub struct HotQuery {
    pub q: String,
    /// Distinct searchers per day, summed over the last 7 days.
    pub searches: i64,
}

/// The school's most searched queries of the last 7 days.
#[derive(Debug, Object)]
pub struct HotQueries {
    pub items: Vec<HotQuery>,
}

/// A query the caller searched.
#[derive(Debug, Object)]
pub struct HistoryItem {
    /// As searched, normalised (full-width folded, lower case, single spaces).
    pub q: String,
    pub searched_at: DateTime<Utc>,
}

/// The caller's recent distinct queries, newest first (at most 20).
#[derive(Debug, Object)]
pub struct SearchHistory {
    pub items: Vec<HistoryItem>,
}

/// What a saved search waits for besides its words. Everything is optional.
#[derive(Debug, Clone, Default, Object)]
pub struct SavedSearchFilters {
    /// A category of the catalogue; a parent category includes its children.
    pub category_id: Option<i64>,
    /// A campus of the caller's school.
    pub campus_id: Option<i64>,
    /// Any of these conditions (empty: any).
    #[oai(default)]
    pub conditions: Vec<Condition>,
    /// Fen.
    pub min_price: Option<i64>,
}

/// A new saved search.
#[derive(Debug, Object)]
pub struct CreateSavedSearch {
    /// A search query (same syntax and limits as `GET /api/v1/search`).
    pub q: String,
    #[oai(default)]
    pub filters: SavedSearchFilters,
    /// Fen: only listings at most this price.
    pub max_price: Option<i64>,
}

/// A saved search: the caller is notified in the inbox when a new listing of their school matches.
#[derive(Debug, Object)]
pub struct SavedSearch {
    pub id: i64,
    /// The query, normalised.
    pub q: String,
    pub filters: SavedSearchFilters,
    /// Fen.
    pub max_price: Option<i64>,
    /// The school whose new listings it watches (the caller's when it was saved).
    pub school_id: i64,
    /// How many listings it has notified about.
    pub notified_count: i64,
    pub created_at: DateTime<Utc>,
}

/// The caller's saved searches, newest first.
#[derive(Debug, Object)]
pub struct SavedSearches {
    pub items: Vec<SavedSearch>,
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

fn saved_view(s: saved_search::Model, notified_count: i64) -> SavedSearch {
    SavedSearch {
        id: s.id,
        filters: SavedSearchFilters {
            category_id: s.category_id,
            campus_id: s.campus_id,
            conditions: saved::conditions_of(&s),
            min_price: s.min_price,
        },
        q: s.q,
        max_price: s.max_price,
        school_id: s.school_id,
        notified_count,
        created_at: s.created_at,
    }
}

/// The school a suggestion or hot list is for: the one asked for, else the caller's, else every school (0).
fn school_of(asked: Option<i64>, user: Option<&user::Model>) -> i64 {
    asked.or(user.and_then(|u| u.school_id)).unwrap_or(0)
}

pub struct SearchApi;

#[OpenApi]
impl SearchApi {
    /// Search on-sale and reserved listings. Chinese is matched by word (jieba), Latin case-insensitively,
    /// full-width like half-width. Every word must match; `-word` excludes; `"…"` is a phrase. Filters, sorts
    /// and cursors work as in browsing. Needs no login; with a session the query joins the caller's history.
    /// An empty, punctuation-only or over-100-character query is 400 (`query_empty`, `query_no_words`,
    /// `query_too_long`).
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/v1/search",
        method = "get",
        tag = "SearchTags::Search",
        operation_id = "search_listings"
    )]
    async fn search(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: OptionalStudent,
        /// The query.
        q: Query<Option<String>>,
        school_id: Query<Option<i64>>,
        campus_id: Query<Option<i64>>,
        /// A parent category includes its children.
        category_id: Query<Option<i64>>,
        /// Fen.
        min_price: Query<Option<i64>>,
        /// Fen.
        max_price: Query<Option<i64>>,
        /// Any of these conditions.
        condition: Query<Vec<Condition>>,
        /// `on_sale` and/or `reserved` (default both).
        status: Query<Vec<Status>>,
        /// Default `relevance`.
        sort: Query<Option<service::SearchSort>>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<SearchPage>> {
        let user = auth.user();
        let searcher = service::Searcher {
            user_id: user.map(|u| u.id),
            school_id: user.and_then(|u| u.school_id),
            key: match user {
                Some(u) => format!("u{}", u.id),
                None => format!(
                    "ip{}",
                    crate::web::client_ip(req, state.config.trust_proxy_headers)
                        .map(|i| i.to_string())
                        .unwrap_or_default()
                ),
            },
        };
        let filters = BrowseQuery {
            school_id: school_id.0,
            campus_id: campus_id.0,
            category_id: category_id.0,
            min_price: min_price.0,
            max_price: max_price.0,
            conditions: condition.0,
            seller_id: None,
            statuses: status.0,
            sort: Default::default(),
            cursor: cursor.0,
            limit: limit.0,
        };
        let results = service::search(
            &state,
            q.0.as_deref().unwrap_or(""),
            filters,
            sort.0.unwrap_or_default(),
            &searcher,
        )
        .await?;
        let (rows, highlights): (Vec<_>, Vec<_>) = results.items.into_iter().unzip();
        let items = cards(&state, rows)
            .await?
            .into_iter()
            .zip(highlights)
            .map(|(card, highlighted_title)| SearchHit {
                card,
                highlighted_title,
            })
            .collect();
        Ok(Json(SearchPage {
            items,
            next_cursor: results.next_cursor,
            total: results.total,
            total_is_estimate: results.total_is_estimate,
        }))
    }

    /// Up to 10 completions of what the student is typing (popular queries and words of listing titles of the
    /// school), fast enough to call on every keystroke. An empty `q` gives none.
    #[oai(
        path = "/v1/search/suggest",
        method = "get",
        tag = "SearchTags::Search",
        operation_id = "suggest_searches"
    )]
    async fn suggest(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        /// What has been typed so far.
        q: Query<Option<String>>,
        /// Default: the caller's school, else every school.
        school_id: Query<Option<i64>>,
    ) -> AppResult<Json<Suggestions>> {
        let school = school_of(school_id.0, auth.user());
        let items = suggest::suggest(&state, school, q.0.as_deref().unwrap_or("")).await?;
        Ok(Json(Suggestions { items }))
    }

    /// The school's most searched queries of the last 7 days (each student counted once a day per query;
    /// queries with a blocklisted word are left out).
    #[oai(
        path = "/v1/search/hot",
        method = "get",
        tag = "SearchTags::Search",
        operation_id = "hot_searches"
    )]
    async fn hot(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        /// Default: the caller's school, else every school.
        school_id: Query<Option<i64>>,
    ) -> AppResult<Json<HotQueries>> {
        let school = school_of(school_id.0, auth.user());
        let list = service::hot(&state, school).await?;
        Ok(Json(HotQueries {
            items: list
                .iter()
                .map(|h| HotQuery {
                    q: h.q.clone(),
                    searches: h.searches,
                })
                .collect(),
        }))
    }

    /// The caller's recent distinct queries, newest first (at most 20).
    #[oai(
        path = "/v1/me/search-history",
        method = "get",
        tag = "SearchTags::SavedSearches",
        operation_id = "my_search_history"
    )]
    async fn history(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
    ) -> AppResult<Json<SearchHistory>> {
        let items = service::history(&state, auth.0.id())
            .await?
            .into_iter()
            .map(|h| HistoryItem {
                q: h.q,
                searched_at: h.searched_at,
            })
            .collect();
        Ok(Json(SearchHistory { items }))
    }

    /// Forget the caller's search history, or only the query `q`.
    #[oai(
        path = "/v1/me/search-history",
        method = "delete",
        tag = "SearchTags::SavedSearches",
        operation_id = "clear_search_history"
    )]
    async fn clear_history(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        /// Only this query.
        q: Query<Option<String>>,
    ) -> AppResult<Done> {
        service::clear_history(&state, auth.0.id(), q.0.as_deref()).await?;
        Ok(Done::NoContent)
    }

    /// Save a search: the caller gets an inbox notification (kind `saved_search_match`) when a new listing of
    /// their school matches it — published on sale, or approved from review — unless they are its seller or
    /// have blocked the seller. Saving the same query and filters again returns the existing one. At most 20
    /// (409 `saved_search_limit`); the caller needs a school (409 `school_required`).
    #[oai(
        path = "/v1/me/saved-searches",
        method = "post",
        tag = "SearchTags::SavedSearches",
        operation_id = "create_saved_search"
    )]
    async fn create_saved(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<CreateSavedSearch>,
    ) -> AppResult<Json<SavedSearch>> {
        let b = body.0;
        let f = saved::Filters {
            category_id: b.filters.category_id,
            campus_id: b.filters.campus_id,
            conditions: b.filters.conditions,
            min_price: b.filters.min_price,
            max_price: b.max_price,
        };
        let s = saved::create(&state, &auth.0.user, &b.q, f).await?;
        let n = saved::hit_counts(&state.db, &[s.id])
            .await?
            .get(&s.id)
            .copied()
            .unwrap_or(0);
        Ok(Json(saved_view(s, n)))
    }

    /// The caller's saved searches, newest first.
    #[oai(
        path = "/v1/me/saved-searches",
        method = "get",
        tag = "SearchTags::SavedSearches",
        operation_id = "my_saved_searches"
    )]
    async fn list_saved(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
    ) -> AppResult<Json<SavedSearches>> {
        let list = saved::list(&state.db, auth.0.id()).await?;
        let ids: Vec<i64> = list.iter().map(|s| s.id).collect();
        let counts = saved::hit_counts(&state.db, &ids).await?;
        Ok(Json(SavedSearches {
            items: list
                .into_iter()
                .map(|s| {
                    let n = counts.get(&s.id).copied().unwrap_or(0);
                    saved_view(s, n)
                })
                .collect(),
        }))
    }

    /// Delete one of the caller's saved searches (404 for anyone else's).
    #[oai(
        path = "/v1/me/saved-searches/:id",
        method = "delete",
        tag = "SearchTags::SavedSearches",
        operation_id = "delete_saved_search"
    )]
    async fn delete_saved(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        saved::delete(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }
}
