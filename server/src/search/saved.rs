//! Saved searches: "tell me when an iPad under ¥1500 appears".
//!
//! When a listing becomes public (published on sale, or approved from review) a row is queued in
//! `search_publications`, in the same transaction. A job ([`match_publications`], every few seconds) takes each
//! queued listing and matches it against the saved searches of its school, with the same query rules as
//! search ([`Query::matches`]) and the saved filters. For every student it matches (not the seller, not someone
//! who blocked the seller), it inserts a `saved_search_hits` row and, if that row is new, an inbox
//! notification — in one transaction that also removes the listing from the queue. The primary key of
//! `saved_search_hits` makes each (saved search, listing) notify at most once, however many instances run the
//! job and however often a listing is held and approved again; the queue row makes sure it is not forgotten.

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, OnConflict},
};

use super::{
    index,
    model::{publication, saved_search, saved_search_hit},
    query::Query,
};
use crate::{
    error::{AppError, AppResult},
    listings::model::{Condition as ItemCondition, Status, listing},
    state::AppState,
    users::{blocks::user_block, model::user},
    util,
};

/// Saved searches one student may keep.
pub const SAVED_MAX: u64 = 20;
/// Queued listings one run of the job takes.
const BATCH: u64 = 50;

/// What a saved search waits for, besides its words.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub category_id: Option<i64>,
    pub campus_id: Option<i64>,
    pub conditions: Vec<ItemCondition>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
}

fn condition_code(c: ItemCondition) -> &'static str {
    match c {
        ItemCondition::New => "new",
        ItemCondition::LikeNew => "like_new",
        ItemCondition::Good => "good",
        ItemCondition::Fair => "fair",
        ItemCondition::Poor => "poor",
    }
}

fn condition_of(code: &str) -> Option<ItemCondition> {
    [
        ItemCondition::New,
        ItemCondition::LikeNew,
        ItemCondition::Good,
        ItemCondition::Fair,
        ItemCondition::Poor,
    ]
    .into_iter()
    .find(|c| condition_code(*c) == code)
}

/// The conditions a saved search accepts (empty: any).
pub fn conditions_of(s: &saved_search::Model) -> Vec<ItemCondition> {
    s.conditions.split(',').filter_map(condition_of).collect()
}

/// `POST /api/v1/me/saved-searches`. The query must be a valid search (400 with the search's codes); the
/// filters must name a category and a campus of the student's school (422); the same query and filters saved
/// again return the existing saved search; more than [`SAVED_MAX`] is 409 `saved_search_limit`.
pub async fn create(
    state: &AppState,
    me: &user::Model,
    raw_q: &str,
    mut f: Filters,
) -> AppResult<saved_search::Model> {
    let q = Query::parse(raw_q)?;
    let Some(school_id) = me.school_id else {
        return Err(AppError::conflict(
            "school_required",
            "choose your school in your profile before saving a search",
        ));
    };
    let cat = state.catalogue.get(&state.db).await?;
    let mut problems = BTreeMap::new();
    if let Some(c) = f.category_id
        && cat.category_by_id.get(&c).is_none_or(|c| c.hidden)
    {
        problems.insert("category_id".into(), "no such category".into());
    }
    if let Some(c) = f.campus_id
        && !cat.campus_of_school(c, school_id)
    {
        problems.insert("campus_id".into(), "not a campus of your school".into());
    }
    let max = crate::listings::service::PRICE_MAX;
    for (name, v) in [("min_price", f.min_price), ("max_price", f.max_price)] {
        if v.is_some_and(|v| !(0..=max).contains(&v)) {
            problems.insert(name.into(), format!("must be 0 to {max} fen"));
        }
    }
    if let (Some(lo), Some(hi)) = (f.min_price, f.max_price)
        && lo > hi
    {
        problems.insert("min_price".into(), "must not exceed max_price".into());
    }
    AppError::check_fields(problems)?;
    f.conditions.sort_by_key(|c| condition_code(*c));
    f.conditions.dedup();
    let conditions = f
        .conditions
        .iter()
        .map(|c| condition_code(*c))
        .collect::<Vec<_>>()
        .join(",");

    let mine = saved_search::Entity::find()
        .filter(saved_search::Column::UserId.eq(me.id))
        .all(&state.db)
        .await?;
    if let Some(same) = mine.iter().find(|s| {
        s.school_id == school_id
            && s.q == q.normalized
            && s.category_id == f.category_id
            && s.campus_id == f.campus_id
            && s.conditions == conditions
            && s.min_price == f.min_price
            && s.max_price == f.max_price
    }) {
        return Ok(same.clone());
    }
    if mine.len() as u64 >= SAVED_MAX {
        return Err(AppError::conflict(
            "saved_search_limit",
            format!("you can keep at most {SAVED_MAX} saved searches; delete one first"),
        ));
    }
    let row = saved_search::ActiveModel {
        user_id: Set(me.id),
        school_id: Set(school_id),
        q: Set(q.normalized),
        category_id: Set(f.category_id),
        campus_id: Set(f.campus_id),
        conditions: Set(conditions),
        min_price: Set(f.min_price),
        max_price: Set(f.max_price),
        created_at: Set(util::now()),
        ..Default::default()
    };
    Ok(saved_search::Entity::insert(row)
        .exec_with_returning(&state.db)
        .await?)
}

/// `GET /api/v1/me/saved-searches`: newest first.
pub async fn list(db: &DatabaseConnection, user_id: i64) -> AppResult<Vec<saved_search::Model>> {
    Ok(saved_search::Entity::find()
        .filter(saved_search::Column::UserId.eq(user_id))
        .order_by_desc(saved_search::Column::Id)
        .all(db)
        .await?)
}

/// `DELETE /api/v1/me/saved-searches/{id}`: 404 unless it is the caller's.
pub async fn delete(db: &DatabaseConnection, user_id: i64, id: i64) -> AppResult<()> {
    let res = saved_search::Entity::delete_many()
        .filter(saved_search::Column::Id.eq(id))
        .filter(saved_search::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::not_found("saved search"));
    }
    Ok(())
}

/// Queues a listing that just became public for matching, in the caller's transaction.
pub async fn published(txn: &impl ConnectionTrait, listing_id: i64) -> AppResult<()> {
    publication::Entity::insert(publication::ActiveModel {
        listing_id: Set(listing_id),
        created_at: Set(util::now()),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Whether a saved search's filters accept a listing (everything but the words).
pub fn filters_accept(
    s: &saved_search::Model,
    l: &listing::Model,
    category_and_children: &HashMap<i64, Vec<i64>>,
) -> bool {
    s.school_id == l.school_id
        && s.user_id != l.seller_id
        && s.max_price.is_none_or(|m| l.price <= m)
        && s.min_price.is_none_or(|m| l.price >= m)
        && s.campus_id.is_none_or(|c| l.campus_id == Some(c))
        && s.category_id.is_none_or(|c| {
            category_and_children
                .get(&c)
                .is_some_and(|ids| ids.contains(&l.category_id))
        })
        && {
            let conds = conditions_of(s);
            conds.is_empty() || conds.contains(&l.condition)
        }
}

/// The job: matches queued listings against saved searches and notifies. Returns how many notifications it
/// wrote. Safe on several instances at once.
pub async fn match_publications(state: &AppState) -> AppResult<u64> {
    let queued = publication::Entity::find()
        .order_by_asc(publication::Column::Id)
        .limit(BATCH)
        .all(&state.db)
        .await?;
    let mut notified = 0;
    for p in queued {
        notified += match_one(state, &p).await?;
    }
    Ok(notified)
}

async fn match_one(state: &AppState, p: &publication::Model) -> AppResult<u64> {
    let db = &state.db;
    let l = listing::Entity::find_by_id(p.listing_id).one(db).await?;
    // Who to tell: decided before the transaction (reads), written inside it (writes first, for SQLite).
    let mut matches: Vec<saved_search::Model> = Vec::new();
    if let Some(l) = l.as_ref().filter(|l| Status::PUBLIC.contains(&l.status)) {
        let candidates = saved_search::Entity::find()
            .filter(saved_search::Column::SchoolId.eq(l.school_id))
            .filter(saved_search::Column::UserId.ne(l.seller_id))
            .filter(saved_search::Column::CreatedAt.lte(p.created_at))
            .filter(
                sea_orm::Condition::any()
                    .add(saved_search::Column::MaxPrice.is_null())
                    .add(saved_search::Column::MaxPrice.gte(l.price)),
            )
            .order_by_asc(saved_search::Column::Id)
            .all(db)
            .await?;
        if !candidates.is_empty() {
            let cat = state.catalogue.get(db).await?;
            let families: HashMap<i64, Vec<i64>> = candidates
                .iter()
                .filter_map(|s| s.category_id)
                .map(|c| (c, cat.category_with_children(c)))
                .collect();
            let fields = index::doc_of(&cat, l).fields();
            let mut users_done = HashSet::new();
            for s in candidates {
                if users_done.contains(&s.user_id) || !filters_accept(&s, l, &families) {
                    continue;
                }
                // A stored query that no longer parses (rules tightened) matches nothing.
                if Query::parse(&s.q).is_ok_and(|q| q.matches(&fields)) {
                    users_done.insert(s.user_id);
                    matches.push(s);
                }
            }
            if !matches.is_empty() {
                let ids: Vec<i64> = matches.iter().map(|s| s.user_id).collect();
                let blockers: HashSet<i64> = user_block::Entity::find()
                    .filter(user_block::Column::BlockedId.eq(l.seller_id))
                    .filter(user_block::Column::BlockerId.is_in(ids.clone()))
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|b| b.blocker_id)
                    .collect();
                let active: HashSet<i64> = user::Entity::find()
                    .filter(user::Column::Id.is_in(ids))
                    .filter(user::Column::Status.eq(user::Status::Active))
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|u| u.id)
                    .collect();
                matches.retain(|s| active.contains(&s.user_id) && !blockers.contains(&s.user_id));
            }
        }
    }

    let txn = db.begin().await?;
    // Taking the listing off the queue first claims it: another instance doing the same finds nothing to
    // delete (PostgreSQL waits for this transaction, SQLite serialises the writers) and moves on.
    let claimed = publication::Entity::delete_many()
        .filter(publication::Column::Id.eq(p.id))
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(0);
    }
    let mut notified = 0;
    if let Some(l) = &l {
        for s in &matches {
            let inserted = saved_search_hit::Entity::insert(saved_search_hit::ActiveModel {
                saved_search_id: Set(s.id),
                listing_id: Set(l.id),
                created_at: Set(util::now()),
            })
            .on_conflict(
                OnConflict::columns([
                    saved_search_hit::Column::SavedSearchId,
                    saved_search_hit::Column::ListingId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            if inserted != 1 {
                continue;
            }
            crate::notifications::service::notify(
                &txn,
                s.user_id,
                "saved_search_match",
                &format!("你关注的「{}」有新商品", clip(&s.q, 30)),
                &format!("{}，¥{:.2}", clip(&l.title, 60), l.price as f64 / 100.0),
                Some("listing"),
                Some(l.id),
            )
            .await?;
            notified += 1;
        }
    }
    txn.commit().await?;
    Ok(notified)
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// How many listings each of these saved searches has notified about.
pub async fn hit_counts(db: &DatabaseConnection, ids: &[i64]) -> AppResult<HashMap<i64, i64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64)> = saved_search_hit::Entity::find()
        .select_only()
        .column(saved_search_hit::Column::SavedSearchId)
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "n")
        .filter(saved_search_hit::Column::SavedSearchId.is_in(ids.to_vec()))
        .group_by(saved_search_hit::Column::SavedSearchId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}
