//! The write side of the index: one row per listing (every status but deleted), written in the same
//! transaction as the listing, so a search never sees a listing's old text after its edit commits.
//!
//! The listing's status is deliberately NOT in the index: searches join `listings` and filter on its status
//! like browsing does, so withdrawing, selling, holding or removing a listing is reflected at once without
//! touching the index.
//!
//! - SQLite: `listing_search`, an FTS5 table without stored content (`content=''`, `contentless_delete=1`;
//!   rowid = listing id) with columns `title`, `category`, `body`, fed pre-segmented, space-joined pieces and
//!   tokenised by FTS5's `ascii` tokenizer (which splits on the spaces and keeps every non-ASCII character).
//! - PostgreSQL: `listing_search (listing_id, doc tsvector)` with a GIN index. The `tsvector` is written here as
//!   its text form (`'自行车':3A …`, cast with `::tsvector`), so no text search configuration or parser ever
//!   touches the words: weight A for the title, B for the category names, C for the description.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::segment;
use crate::{
    error::AppResult,
    listings::{catalogue::Snapshot, model::listing},
    state::AppState,
};

/// The indexed form of a listing: the pieces of each field, words in order then inner words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Doc {
    pub title: Vec<String>,
    pub category: Vec<String>,
    pub body: Vec<String>,
}

impl Doc {
    /// Segments a listing's title, category names (the category and its parent) and description.
    pub fn new(title: &str, category_names: &str, description: &str) -> Doc {
        Doc {
            title: segment::index_tokens(title),
            category: segment::index_tokens(category_names),
            body: segment::index_tokens(description),
        }
    }

    /// The fields in index order (what [`super::query::Query::matches`] takes).
    pub fn fields(self) -> Vec<Vec<String>> {
        vec![self.title, self.category, self.body]
    }

    /// The text form of the PostgreSQL `tsvector`: every lexeme with its positions and weight.
    pub fn tsvector(&self) -> String {
        // Positions run on through the fields with a gap, so a phrase never spans two fields.
        const MAX_POS: usize = 16_383;
        const MAX_POSITIONS: usize = 256;
        let mut lexemes: BTreeMap<&str, Vec<(usize, char)>> = BTreeMap::new();
        let mut pos = 0usize;
        for (field, weight) in [(&self.title, 'A'), (&self.category, 'B'), (&self.body, 'C')] {
            for w in field {
                pos = (pos + 1).min(MAX_POS);
                let at = lexemes.entry(w.as_str()).or_default();
                if at.len() < MAX_POSITIONS && at.last().is_none_or(|(p, _)| *p < pos) {
                    at.push((pos, weight));
                }
            }
            pos += 1;
        }
        let mut out = String::new();
        for (lexeme, positions) in lexemes {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&ts_quote(lexeme));
            out.push(':');
            let list: Vec<String> = positions.iter().map(|(p, w)| format!("{p}{w}")).collect();
            out.push_str(&list.join(","));
        }
        out
    }
}

/// A lexeme quoted for `tsvector`/`tsquery` text: in single quotes, with `'` and `\` escaped.
pub fn ts_quote(word: &str) -> String {
    format!("'{}'", word.replace('\\', "\\\\").replace('\'', "''"))
}

/// The category's names as indexed: its own and its parent's (`自行车 自行车与出行`).
pub fn category_names(cat: &Snapshot, category_id: i64) -> String {
    let Some(c) = cat.category_by_id.get(&category_id) else {
        return String::new();
    };
    match c.parent_id.and_then(|p| cat.category_by_id.get(&p)) {
        Some(parent) => format!("{} {}", c.name_zh, parent.name_zh),
        None => c.name_zh.clone(),
    }
}

/// The indexed form of a listing, with its category names from the catalogue.
pub fn doc_of(cat: &Snapshot, l: &listing::Model) -> Doc {
    Doc::new(
        &l.title,
        &category_names(cat, l.category_id),
        &l.description,
    )
}

/// Writes (or replaces) the index row of listing `id`, in the caller's transaction.
pub async fn upsert(txn: &impl ConnectionTrait, id: i64, doc: &Doc) -> AppResult<()> {
    let backend = txn.get_database_backend();
    match backend {
        DbBackend::Postgres => {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO listing_search (listing_id, doc) VALUES ($1, $2::tsvector) \
                 ON CONFLICT (listing_id) DO UPDATE SET doc = EXCLUDED.doc",
                [id.into(), doc.tsvector().into()],
            ))
            .await?;
        }
        _ => {
            remove(txn, id).await?;
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO listing_search (rowid, title, category, body) VALUES (?, ?, ?, ?)",
                [
                    id.into(),
                    doc.title.join(" ").into(),
                    doc.category.join(" ").into(),
                    doc.body.join(" ").into(),
                ],
            ))
            .await?;
        }
    }
    Ok(())
}

/// Removes listing `id` from the index (it was deleted), in the caller's transaction.
pub async fn remove(txn: &impl ConnectionTrait, id: i64) -> AppResult<()> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "DELETE FROM listing_search WHERE listing_id = $1",
        _ => "DELETE FROM listing_search WHERE rowid = ?",
    };
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, [id.into()]))
        .await?;
    Ok(())
}

/// Writes many index rows in one statement per backend (bulk loading; each doc with its listing id). SQLite takes
/// at most 32,766 bound values, so at most 8,000 rows per call.
pub async fn insert_many(txn: &impl ConnectionTrait, docs: &[(i64, Doc)]) -> AppResult<()> {
    if docs.is_empty() {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let sql = match backend {
        DbBackend::Postgres => {
            let rows: Vec<String> = docs
                .iter()
                .enumerate()
                .map(|(i, (id, doc))| {
                    values.push((*id).into());
                    values.push(doc.tsvector().into());
                    format!("(${}, ${}::tsvector)", 2 * i + 1, 2 * i + 2)
                })
                .collect();
            format!(
                "INSERT INTO listing_search (listing_id, doc) VALUES {}",
                rows.join(", ")
            )
        }
        _ => {
            let rows: Vec<&str> = docs
                .iter()
                .map(|(id, doc)| {
                    values.push((*id).into());
                    values.push(doc.title.join(" ").into());
                    values.push(doc.category.join(" ").into());
                    values.push(doc.body.join(" ").into());
                    "(?, ?, ?, ?)"
                })
                .collect();
            format!(
                "INSERT INTO listing_search (rowid, title, category, body) VALUES {}",
                rows.join(", ")
            )
        }
    };
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// Indexes up to `batch` listings (every status but deleted) that have no index row, with ids above `after`:
/// those that existed before search did. Returns the ids it indexed (empty when none are left).
pub async fn backfill(state: &AppState, after: i64, batch: u64) -> AppResult<Vec<i64>> {
    use sea_orm::{
        ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
    };
    let cat = state.catalogue.get(&state.db).await?;
    let backend = state.db.get_database_backend();
    let txn = state.db.begin().await?;
    if backend != DbBackend::Postgres {
        // Take SQLite's write lock before reading, so no edit can slip between the read and the write.
        txn.execute_unprepared("DELETE FROM listing_search WHERE rowid = -1")
            .await?;
    }
    let missing = match backend {
        DbBackend::Postgres => {
            "NOT EXISTS (SELECT 1 FROM listing_search s WHERE s.listing_id = listings.id)"
        }
        _ => "NOT EXISTS (SELECT 1 FROM listing_search s WHERE s.rowid = listings.id)",
    };
    let rows = listing::Entity::find()
        .filter(listing::Column::Id.gt(after))
        .filter(listing::Column::Status.ne(crate::listings::model::Status::Deleted))
        .filter(sea_orm::sea_query::Expr::cust(missing))
        .order_by_asc(listing::Column::Id)
        .limit(batch)
        .all(&txn)
        .await?;
    let docs: Vec<(i64, Doc)> = rows.iter().map(|l| (l.id, doc_of(&cat, l))).collect();
    if backend == DbBackend::Postgres {
        // An edit committed meanwhile wrote the newer text: keep it.
        for (id, doc) in &docs {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO listing_search (listing_id, doc) VALUES ($1, $2::tsvector) \
                 ON CONFLICT (listing_id) DO NOTHING",
                [(*id).into(), doc.tsvector().into()],
            ))
            .await?;
        }
    } else {
        insert_many(&txn, &docs).await?;
    }
    txn.commit().await?;
    Ok(docs.into_iter().map(|(id, _)| id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsvector_text_weights_fields_and_keeps_phrases_inside_a_field() {
        let doc = Doc::new("山地自行车", "自行车 自行车与出行", "它's \\ 好");
        let v = doc.tsvector();
        // Title words A, category B; 自行车 is in both.
        assert!(v.contains("'山地':1A"), "{v}");
        assert!(v.contains("'自行车':2A,"), "{v}");
        assert!(v.contains("B"), "{v}");
        // Quotes and backslashes never reach the text form unescaped (pieces are letters and digits anyway).
        assert!(!v.contains("\\'"));
        assert_eq!(ts_quote("a'b\\c"), "'a''b\\\\c'");
    }
}
