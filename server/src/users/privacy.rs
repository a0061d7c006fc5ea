//! A student's rights over their personal information (PIPL): a copy of everything we hold about them, and
//! deleting the account.
//!
//! Export walks [`EXPORT`], one line per table that holds a student's rows: a capability that stores personal
//! data adds its table there, and the export test fails if a section goes missing. Deletion erases what
//! identifies the person, withdraws their listings and drops their private rows, in one transaction; what other
//! people need to keep making sense (posts, comments, messages, reviews, orders) stays, shown as written by
//! "已注销用户".

use std::collections::BTreeMap;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, FromQueryResult, JsonValue, Statement, TransactionTrait,
};
use serde_json::{Map, Value};

use crate::{
    error::{AppError, AppResult},
    state::AppState,
    util,
};

/// The name a deleted account shows wherever its old posts, comments and messages appear.
pub const DELETED_NICKNAME: &str = "已注销用户";

/// One export section: (section name, table, the column holding the user id, order by, extra condition or "").
type Section = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Every table with rows that belong to a student.
pub const EXPORT: &[Section] = &[
    (
        "verification_requests",
        "verification_requests",
        "user_id",
        "id",
        "",
    ),
    (
        "student_identities",
        "student_identities",
        "user_id",
        "created_at",
        "",
    ),
    ("listings", "listings", "seller_id", "id", ""),
    ("favorites", "favorites", "user_id", "created_at", ""),
    ("images", "images", "owner_id", "id", ""),
    ("posts", "posts", "author_id", "id", ""),
    ("comments", "comments", "author_id", "id", ""),
    ("votes", "votes", "user_id", "updated_at", ""),
    ("reports_filed", "reports", "reporter_id", "id", ""),
    ("blocks", "user_blocks", "blocker_id", "created_at", ""),
    ("notifications", "notifications", "user_id", "id", ""),
    (
        "conversations_as_buyer",
        "conversations",
        "buyer_id",
        "id",
        "",
    ),
    (
        "conversations_as_seller",
        "conversations",
        "seller_id",
        "id",
        "",
    ),
    ("chat_messages_sent", "chat_messages", "sender_id", "id", ""),
    ("chat_offers_made", "chat_offers", "buyer_id", "id", ""),
    ("orders_bought", "orders", "buyer_id", "id", ""),
    ("orders_sold", "orders", "seller_id", "id", ""),
    ("payouts", "payouts", "seller_id", "id", ""),
    ("saved_searches", "saved_searches", "user_id", "id", ""),
    (
        "search_history",
        "search_history",
        "user_id",
        "searched_at",
        "",
    ),
    ("reviews_written", "reviews", "reviewer_id", "id", ""),
    // Reviews of the student once revealed: a sealed one would give away the rating before the other side's
    // reveal (docs/reviews.md).
    (
        "reviews_received",
        "reviews",
        "reviewee_id",
        "id",
        "revealed_at IS NOT NULL",
    ),
    ("reputation", "user_reputation", "user_id", "user_id", ""),
];

/// Columns never exported: keyed hashes and secrets that mean nothing to the student and would help an attacker.
/// `handover_code` too: the seller's copy of an open order must not carry the buyer's code.
const NEVER_EXPORTED: &[&str] = &[
    "student_number_hash",
    "number_hash",
    "token_hash",
    "handover_code",
];

fn scrub(mut row: Value) -> Value {
    if let Value::Object(map) = &mut row {
        for k in NEVER_EXPORTED {
            map.remove(*k);
        }
    }
    row
}

/// Everything we hold about `user_id`, as one JSON document.
pub async fn export(db: &DatabaseConnection, user_id: i64) -> AppResult<Value> {
    let backend = db.get_database_backend();
    let profile = JsonValue::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT id, openid, unionid, nickname, avatar_url, bio, school_id, campus_id, status, ban_reason, \
         banned_until, verified_school_id, verified_until, created_at, updated_at, last_login_at \
         FROM users WHERE id = $1",
        [user_id.into()],
    ))
    .one(db)
    .await?
    .ok_or_else(|| AppError::not_found("user"))?;

    let mut sections = Map::new();
    for (name, table, column, order, extra) in EXPORT {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" AND {extra}")
        };
        let rows = JsonValue::find_by_statement(Statement::from_string(
            backend,
            format!("SELECT * FROM {table} WHERE {column} = {user_id}{extra} ORDER BY {order}"),
        ))
        .all(db)
        .await?;
        sections.insert(
            (*name).to_string(),
            Value::Array(rows.into_iter().map(scrub).collect()),
        );
    }
    let mut doc = BTreeMap::new();
    doc.insert(
        "format",
        Value::from("campus_trade personal data export v1"),
    );
    doc.insert("exported_at", Value::from(util::now().to_rfc3339()));
    doc.insert("profile", scrub(profile));
    doc.insert("data", Value::Object(sections));
    serde_json::to_value(doc).map_err(AppError::internal)
}

/// Deletes the account of `user_id`: refused while an order of theirs is open; otherwise personal fields are
/// erased (the WeChat identity too, so logging in again starts a new account), listings are withdrawn,
/// favourites, blocks, notifications, saved searches, search history and verified identities dropped, and every
/// session ends. Reviews, orders and messages stay for the other party, shown as written by
/// [`DELETED_NICKNAME`] (reviews without a link to the profile).
pub async fn delete_account(state: &AppState, user_id: i64) -> AppResult<()> {
    let db = &state.db;
    let backend = db.get_database_backend();
    let now = util::now();
    let erased_openid = format!("deleted:{user_id}:{}", util::random_token(8));
    let txn = db.begin().await?;
    // First write, and the only check: one conditional UPDATE (an order opened concurrently cannot slip in
    // between a check and the write).
    let res = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "UPDATE users SET status = 'deleted', openid = $1, unionid = NULL, nickname = $2, \
                 avatar_url = NULL, bio = '', verified_school_id = NULL, verified_until = NULL, \
                 ban_reason = NULL, banned_until = NULL, updated_at = $3 \
                 WHERE id = $4 AND status <> 'deleted'{}",
                open_order_guard()
            ),
            [
                erased_openid.into(),
                DELETED_NICKNAME.into(),
                now.into(),
                user_id.into(),
            ],
        ))
        .await?;
    if res.rows_affected() != 1 {
        txn.rollback().await?;
        let still_there = JsonValue::find_by_statement(Statement::from_sql_and_values(
            backend,
            "SELECT status FROM users WHERE id = $1",
            [user_id.into()],
        ))
        .one(db)
        .await?;
        return match still_there {
            Some(row) if row["status"] != "deleted" => Err(AppError::conflict(
                "open_orders",
                "finish or cancel your open orders before deleting the account",
            )),
            _ => Err(AppError::not_found("user")),
        };
    }
    let statements = [
        "UPDATE listings SET status = 'withdrawn', updated_at = $2 \
         WHERE seller_id = $1 AND status IN ('on_sale', 'reserved', 'pending_review')",
        "DELETE FROM favorites WHERE user_id = $1",
        "DELETE FROM user_blocks WHERE blocker_id = $1 OR blocked_id = $1",
        "DELETE FROM notifications WHERE user_id = $1",
        "DELETE FROM student_identities WHERE user_id = $1",
        "UPDATE verification_requests SET real_name = NULL WHERE user_id = $1",
        "DELETE FROM saved_search_hits WHERE saved_search_id IN \
         (SELECT id FROM saved_searches WHERE user_id = $1)",
        "DELETE FROM saved_searches WHERE user_id = $1",
        "DELETE FROM search_history WHERE user_id = $1",
    ];
    for sql in statements {
        let values: Vec<sea_orm::Value> = if sql.contains("$2") {
            vec![user_id.into(), now.into()]
        } else {
            vec![user_id.into()]
        };
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    txn.commit().await?;
    state.sessions.revoke_all(user_id).await?;
    tracing::info!(user_id, "account deleted at the student's request");
    Ok(())
}

/// The `AND NOT EXISTS (open order)` part of the deletion's UPDATE (`$4` is the user id): an order waiting for
/// payment or hand-over, paid, or in a refund or dispute keeps the account.
fn open_order_guard() -> &'static str {
    " AND NOT EXISTS (SELECT 1 FROM orders o WHERE (o.buyer_id = $4 OR o.seller_id = $4) \
     AND o.status IN ('pending_payment', 'pending_handover', 'paid', 'refund_requested', 'disputed'))"
}
