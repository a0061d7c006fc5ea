//! Votes on posts and comments: one row per student and target, and totals on the target that move by the
//! difference between the old and the new value in the same transaction, so they never drift.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use super::{
    comments::visible_comment,
    model::{Status, comment, post, vote},
    service::{refresh_hot, refused, visible_post},
};
use crate::{
    error::{AppError, AppResult},
    util,
};

/// What a vote is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteTarget {
    Post,
    Comment,
}

impl VoteTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            VoteTarget::Post => "post",
            VoteTarget::Comment => "comment",
        }
    }
}

/// A target's totals after a vote, and the caller's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub score: i64,
    pub upvotes: i64,
    pub downvotes: i64,
    pub my_vote: i16,
}

/// `PUT …/vote`: sets the caller's vote to 1, -1 or 0 (clear). Idempotent. The vote row and the target's totals
/// change in one transaction by the difference between the old and the new value, so totals never drift.
pub async fn vote(
    db: &DatabaseConnection,
    user_id: i64,
    target: VoteTarget,
    id: i64,
    value: i16,
) -> AppResult<Tally> {
    if !(-1..=1).contains(&value) {
        return Err(AppError::invalid_field("value", "must be 1, -1 or 0"));
    }
    // Look-ups before the transaction: the target must be published (and a comment's post too).
    match target {
        VoteTarget::Post => {
            let p = visible_post(db, id, Some(user_id)).await?;
            if p.status != Status::Published {
                return Err(refused(p.status, "vote on"));
            }
        }
        VoteTarget::Comment => {
            let c = visible_comment(db, id, Some(user_id)).await?;
            if c.status != Status::Published {
                return Err(refused(c.status, "vote on"));
            }
        }
    }
    let kind = target.as_str();
    let now = util::now();
    let txn = db.begin().await?;
    // Write first: claim the vote row. On PostgreSQL this locks it, so two requests of one user serialise; on
    // SQLite it takes the write lock before anything is read.
    vote::Entity::insert(vote::ActiveModel {
        user_id: Set(user_id),
        target_type: Set(kind.to_string()),
        target_id: Set(id),
        value: Set(0),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            vote::Column::UserId,
            vote::Column::TargetType,
            vote::Column::TargetId,
        ])
        .update_column(vote::Column::UpdatedAt)
        .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let old = vote::Entity::find_by_id((user_id, kind.to_string(), id))
        .one(&txn)
        .await?
        .map(|v| v.value)
        .unwrap_or(0);
    if old != value {
        vote::Entity::update_many()
            .col_expr(vote::Column::Value, Expr::value(value))
            .filter(vote::Column::UserId.eq(user_id))
            .filter(vote::Column::TargetType.eq(kind))
            .filter(vote::Column::TargetId.eq(id))
            .exec(&txn)
            .await?;
        let delta = i64::from(value - old);
        let ups = i64::from(value == 1) - i64::from(old == 1);
        let downs = i64::from(value == -1) - i64::from(old == -1);
        match target {
            VoteTarget::Post => {
                post::Entity::update_many()
                    .col_expr(
                        post::Column::Score,
                        Expr::col(post::Column::Score).add(delta),
                    )
                    .col_expr(
                        post::Column::Upvotes,
                        Expr::col(post::Column::Upvotes).add(ups),
                    )
                    .col_expr(
                        post::Column::Downvotes,
                        Expr::col(post::Column::Downvotes).add(downs),
                    )
                    .filter(post::Column::Id.eq(id))
                    .exec(&txn)
                    .await?;
                refresh_hot(&txn, id).await?;
            }
            VoteTarget::Comment => {
                comment::Entity::update_many()
                    .col_expr(
                        comment::Column::Score,
                        Expr::col(comment::Column::Score).add(delta),
                    )
                    .col_expr(
                        comment::Column::Upvotes,
                        Expr::col(comment::Column::Upvotes).add(ups),
                    )
                    .col_expr(
                        comment::Column::Downvotes,
                        Expr::col(comment::Column::Downvotes).add(downs),
                    )
                    .filter(comment::Column::Id.eq(id))
                    .exec(&txn)
                    .await?;
            }
        }
    }
    let (score, upvotes, downvotes) = match target {
        VoteTarget::Post => post::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .map(|p| (p.score, p.upvotes, p.downvotes)),
        VoteTarget::Comment => comment::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .map(|c| (c.score, c.upvotes, c.downvotes)),
    }
    .ok_or_else(|| AppError::not_found(kind))?;
    txn.commit().await?;
    Ok(Tally {
        score,
        upvotes,
        downvotes,
        my_vote: value,
    })
}

/// The caller's votes on these targets (absent means no vote).
pub async fn my_votes(
    db: &impl ConnectionTrait,
    user_id: i64,
    target: VoteTarget,
    ids: &[i64],
) -> AppResult<HashMap<i64, i16>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(vote::Entity::find()
        .filter(vote::Column::UserId.eq(user_id))
        .filter(vote::Column::TargetType.eq(target.as_str()))
        .filter(vote::Column::TargetId.is_in(ids.to_vec()))
        .all(db)
        .await?
        .into_iter()
        .map(|v| (v.target_id, v.value))
        .collect())
}
