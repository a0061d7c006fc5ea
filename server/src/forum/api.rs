//! HTTP endpoints of the campus circle. Handlers parse, authorise, call [`super::service`] and shape the answer.
//! Shaping is where anonymity is kept: an anonymous post or comment carries no author (and nothing that
//! depends on who wrote it) for anyone but its author, who sees `is_mine: true`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    model::{Status, board, comment, editable, post},
    service::{
        self, CommentInput, CommentSort, Period, PostInput, PostPatch, PostQuery, Sort, VoteTarget,
    },
};
use crate::{
    auth::StudentAuth,
    error::{AppError, AppResult},
    images::{self, api::ImageRef},
    listings::{
        api::{ListingCard, OptionalStudent},
        model::listing,
    },
    state::AppState,
    users::model::user,
    util,
};

#[derive(Tags)]
enum ForumTags {
    /// Boards, posts and votes of the campus circle.
    Forum,
    /// Comments on posts.
    Comments,
}

fn viewer_of(auth: &OptionalStudent) -> Option<&user::Model> {
    match auth {
        OptionalStudent::Student(a) => Some(&a.0.user),
        OptionalStudent::Anonymous => None,
    }
}

/// A board of the campus circle.
#[derive(Debug, Clone, Object)]
pub struct Board {
    pub id: i64,
    pub school_id: i64,
    /// Stable English identifier: `help`, `chat`, `wanted`, `lost-and-found`, `events`, `graduation`.
    pub slug: String,
    /// Chinese name, shown to students.
    pub name: String,
}

/// Who wrote a post or comment (absent when it is anonymous).
#[derive(Debug, Clone, Object)]
pub struct Author {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: Option<String>,
}

/// What the caller may do with a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum PostAction {
    Edit,
    Delete,
    Comment,
    Vote,
    Report,
}

/// What the caller may do with a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum CommentAction {
    Reply,
    Delete,
    Vote,
    Report,
}

/// A post. Deleted and removed posts keep their place in threads with empty content.
#[derive(Debug, Clone, Object)]
pub struct PostView {
    pub id: i64,
    pub board_id: i64,
    pub school_id: i64,
    pub title: String,
    pub body: String,
    pub images: Vec<ImageRef>,
    /// Linked listings that are still visible.
    pub listings: Vec<ListingCard>,
    /// `null` when the post is anonymous (or deleted).
    pub author: Option<Author>,
    pub anonymous: bool,
    /// Whether the caller wrote it.
    pub is_mine: bool,
    pub status: Status,
    pub score: i64,
    pub upvotes: i64,
    pub downvotes: i64,
    /// The caller's vote: 1, -1 or 0.
    pub my_vote: i32,
    pub comment_count: i64,
    pub pinned: bool,
    pub locked: bool,
    /// A wanted post's saved search.
    pub wanted: Option<WantedSearch>,
    pub allowed_actions: Vec<PostAction>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of posts; pinned posts lead the first page.
#[derive(Debug, Object)]
pub struct PostPage {
    pub items: Vec<PostView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The comment a reply answers.
#[derive(Debug, Clone, Object)]
pub struct ReplyTo {
    pub comment_id: i64,
    /// `null` when that comment is anonymous or deleted.
    pub author: Option<Author>,
    pub anonymous: bool,
}

/// A comment. Deleted, removed and (for others) held comments keep their place with an empty body.
#[derive(Debug, Clone, Object)]
pub struct CommentView {
    pub id: i64,
    pub post_id: i64,
    /// The top-level comment a reply hangs under.
    pub parent_id: Option<i64>,
    /// For a reply: whom it answers.
    pub reply_to: Option<ReplyTo>,
    pub body: String,
    pub author: Option<Author>,
    pub anonymous: bool,
    pub is_mine: bool,
    pub status: Status,
    pub score: i64,
    pub upvotes: i64,
    pub downvotes: i64,
    pub my_vote: i32,
    pub reply_count: i64,
    pub allowed_actions: Vec<CommentAction>,
    pub created_at: DateTime<Utc>,
}

/// A top-level comment with its first replies (oldest first).
#[derive(Debug, Clone, Object)]
pub struct CommentThread {
    #[oai(flatten)]
    pub comment: CommentView,
    pub replies: Vec<CommentView>,
}

/// A page of comments.
#[derive(Debug, Object)]
pub struct CommentPage {
    pub items: Vec<CommentThread>,
    pub next_cursor: Option<String>,
}

/// A page of replies under one comment.
#[derive(Debug, Object)]
pub struct ReplyPage {
    pub items: Vec<CommentView>,
    pub next_cursor: Option<String>,
}

/// A new post.
#[derive(Debug, Object)]
pub struct CreatePost {
    pub board_id: i64,
    /// 1–80 characters.
    pub title: String,
    /// At most 5000 characters.
    #[oai(default)]
    pub body: String,
    /// Up to 9 images uploaded by the caller.
    #[oai(default)]
    pub image_ids: Vec<i64>,
    /// Up to 5 listings to link.
    #[oai(default)]
    pub listing_ids: Vec<i64>,
    /// Hide the author from everyone (operators excepted).
    #[oai(default)]
    pub anonymous: bool,
    /// Wanted board (求购) only: a saved search; new listings of your school that match notify you for 30 days.
    pub wanted: Option<WantedSearch>,
}

/// A wanted post's saved search.
#[derive(Debug, Clone, Object)]
pub struct WantedSearch {
    /// 1–20 characters a listing's title or description must contain.
    pub keyword: String,
    /// Fen: the most you will pay.
    pub max_price: i64,
}

/// An edit: fields left out stay. Possible within 24 hours and until the first comment.
#[derive(Debug, Object)]
pub struct UpdatePost {
    pub title: Option<String>,
    pub body: Option<String>,
    pub image_ids: Option<Vec<i64>>,
    pub listing_ids: Option<Vec<i64>>,
}

/// A vote: 1 up, -1 down, 0 clears.
#[derive(Debug, Object)]
pub struct VoteBody {
    pub value: i32,
}

/// The totals after a vote.
#[derive(Debug, Object)]
pub struct VoteResult {
    pub score: i64,
    pub upvotes: i64,
    pub downvotes: i64,
    pub my_vote: i32,
}

/// A new comment.
#[derive(Debug, Object)]
pub struct CreateComment {
    /// 1–1000 characters.
    pub body: String,
    /// The comment answered. A reply to a reply hangs under the top-level comment and names whom it answers.
    pub parent_id: Option<i64>,
    /// Hide the author. The author of an anonymous post is always anonymous in its thread.
    #[oai(default)]
    pub anonymous: bool,
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

async fn authors(
    db: &sea_orm::DatabaseConnection,
    ids: HashSet<i64>,
) -> AppResult<HashMap<i64, Author>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .filter(|u| u.status != user::Status::Deleted)
        .map(|u| {
            (
                u.id,
                Author {
                    id: u.id,
                    nickname: u.nickname,
                    avatar_url: u.avatar_url,
                },
            )
        })
        .collect())
}

/// Shapes posts for `viewer`: images, linked listings, authors and votes fetched for the whole page at once.
pub async fn post_views(
    state: &AppState,
    rows: Vec<post::Model>,
    viewer: Option<&user::Model>,
) -> AppResult<Vec<PostView>> {
    let viewer_id = viewer.map(|u| u.id);
    let ids: Vec<i64> = rows.iter().map(|p| p.id).collect();
    let mut imgs = images::service::for_targets(&state.db, "post", &ids).await?;
    let links = service::linked_listings(&state.db, &ids).await?;
    let listing_ids: Vec<i64> = links
        .values()
        .flatten()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let listing_rows: Vec<listing::Model> = if listing_ids.is_empty() {
        Vec::new()
    } else {
        listing::Entity::find()
            .filter(listing::Column::Id.is_in(listing_ids))
            .all(&state.db)
            .await?
            .into_iter()
            .filter(|l| l.status.visible_to_others())
            .collect()
    };
    let cards: HashMap<i64, ListingCard> = crate::listings::api::cards(state, listing_rows)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let named: HashSet<i64> = rows
        .iter()
        .filter(|p| !p.anonymous)
        .map(|p| p.author_id)
        .collect();
    let people = authors(&state.db, named).await?;
    let votes = match viewer_id {
        Some(v) => service::my_votes(&state.db, v, VoteTarget::Post, &ids).await?,
        None => HashMap::new(),
    };
    let now = util::now();
    Ok(rows
        .into_iter()
        .map(|p| {
            let is_mine = viewer_id == Some(p.author_id);
            let readable = p.status.readable(is_mine);
            let mut actions = Vec::new();
            if viewer_id.is_some() {
                if is_mine
                    && matches!(p.status, Status::Published | Status::PendingReview)
                    && editable(p.created_at, p.comment_count, now)
                {
                    actions.push(PostAction::Edit);
                }
                if is_mine && p.status != Status::Deleted {
                    actions.push(PostAction::Delete);
                }
                if p.status == Status::Published {
                    if !p.locked {
                        actions.push(PostAction::Comment);
                    }
                    actions.push(PostAction::Vote);
                    if !is_mine {
                        actions.push(PostAction::Report);
                    }
                }
            }
            PostView {
                id: p.id,
                board_id: p.board_id,
                school_id: p.school_id,
                title: if readable { p.title } else { String::new() },
                body: if readable { p.body } else { String::new() },
                images: if readable {
                    imgs.remove(&p.id)
                        .unwrap_or_default()
                        .iter()
                        .map(|i| images::api::image_ref(state, i))
                        .collect()
                } else {
                    Vec::new()
                },
                listings: if readable {
                    links
                        .get(&p.id)
                        .map(|ls| ls.iter().filter_map(|l| cards.get(l).cloned()).collect())
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
                author: if readable && !p.anonymous {
                    people.get(&p.author_id).cloned()
                } else {
                    None
                },
                anonymous: p.anonymous,
                is_mine,
                status: p.status,
                score: p.score,
                upvotes: p.upvotes,
                downvotes: p.downvotes,
                my_vote: i32::from(votes.get(&p.id).copied().unwrap_or(0)),
                comment_count: p.comment_count,
                pinned: p.pinned,
                locked: p.locked,
                wanted: match (readable, p.wanted_keyword, p.price_ceiling) {
                    (true, Some(keyword), Some(max_price)) => {
                        Some(WantedSearch { keyword, max_price })
                    }
                    _ => None,
                },
                allowed_actions: actions,
                created_at: p.created_at,
                updated_at: p.updated_at,
            }
        })
        .collect())
}

/// Shapes comments (top-level ones with their replies) for `viewer`.
async fn comment_views(
    state: &AppState,
    threads: Vec<service::Thread>,
    viewer: Option<&user::Model>,
    post_open: bool,
) -> AppResult<Vec<CommentThread>> {
    let viewer_id = viewer.map(|u| u.id);
    let all: Vec<&comment::Model> = threads
        .iter()
        .flat_map(|t| std::iter::once(&t.comment).chain(t.replies.iter()))
        .collect();
    let ids: Vec<i64> = all.iter().map(|c| c.id).collect();
    let answered_ids: Vec<i64> = all.iter().filter_map(|c| c.reply_to_id).collect();
    let answered = service::comments_by_id(&state.db, &answered_ids).await?;
    let named: HashSet<i64> = all
        .iter()
        .copied()
        .chain(answered.values())
        .filter(|c| !c.anonymous)
        .map(|c| c.author_id)
        .collect();
    let people = authors(&state.db, named).await?;
    let votes = match viewer_id {
        Some(v) => service::my_votes(&state.db, v, VoteTarget::Comment, &ids).await?,
        None => HashMap::new(),
    };
    let view = |c: &comment::Model| -> CommentView {
        let is_mine = viewer_id == Some(c.author_id);
        let readable = c.status.readable(is_mine);
        let mut actions = Vec::new();
        if viewer_id.is_some() {
            if c.status == Status::Published {
                if post_open {
                    actions.push(CommentAction::Reply);
                }
                actions.push(CommentAction::Vote);
                if !is_mine {
                    actions.push(CommentAction::Report);
                }
            }
            if is_mine && c.status != Status::Deleted {
                actions.push(CommentAction::Delete);
            }
        }
        CommentView {
            id: c.id,
            post_id: c.post_id,
            parent_id: c.parent_id,
            reply_to: c.reply_to_id.map(|rid| {
                let target = answered.get(&rid);
                ReplyTo {
                    comment_id: rid,
                    author: target
                        .filter(|t| !t.anonymous && t.status.readable(false))
                        .and_then(|t| people.get(&t.author_id).cloned()),
                    anonymous: target.is_some_and(|t| t.anonymous),
                }
            }),
            body: if readable {
                c.body.clone()
            } else {
                String::new()
            },
            author: if readable && !c.anonymous {
                people.get(&c.author_id).cloned()
            } else {
                None
            },
            anonymous: c.anonymous,
            is_mine,
            status: c.status,
            score: c.score,
            upvotes: c.upvotes,
            downvotes: c.downvotes,
            my_vote: i32::from(votes.get(&c.id).copied().unwrap_or(0)),
            reply_count: c.reply_count,
            allowed_actions: actions,
            created_at: c.created_at,
        }
    };
    Ok(threads
        .iter()
        .map(|t| CommentThread {
            comment: view(&t.comment),
            replies: t.replies.iter().map(view).collect(),
        })
        .collect())
}

async fn one_post(
    state: &AppState,
    p: post::Model,
    viewer: Option<&user::Model>,
) -> AppResult<PostView> {
    post_views(state, vec![p], viewer)
        .await?
        .pop()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("post view missing")))
}

pub struct ForumApi;

#[OpenApi]
impl ForumApi {
    /// The boards of a school (the caller's school by default). Needs no login.
    #[oai(
        path = "/v1/boards",
        method = "get",
        tag = "ForumTags::Forum",
        operation_id = "list_boards"
    )]
    async fn boards(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        school_id: Query<Option<i64>>,
    ) -> AppResult<Json<Vec<Board>>> {
        let Some(school) = school_id
            .0
            .or_else(|| viewer_of(&auth).and_then(|u| u.school_id))
        else {
            return Err(AppError::invalid_field(
                "school_id",
                "say which school (or choose yours in your profile)",
            ));
        };
        let rows: Vec<board::Model> = service::boards(&state.db, school).await?;
        Ok(Json(
            rows.into_iter()
                .map(|b| Board {
                    id: b.id,
                    school_id: b.school_id,
                    slug: b.slug,
                    name: b.name,
                })
                .collect(),
        ))
    }

    /// Publish a post. Text goes through content security as listings do: rejected text is 422
    /// `content_rejected`; text that needs a human makes the post `pending_review`, visible only to its author.
    #[oai(
        path = "/v1/posts",
        method = "post",
        tag = "ForumTags::Forum",
        operation_id = "create_post"
    )]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<CreatePost>,
    ) -> AppResult<Json<PostView>> {
        let b = body.0;
        let input = PostInput {
            board_id: b.board_id,
            title: b.title,
            body: b.body,
            image_ids: b.image_ids,
            listing_ids: b.listing_ids,
            anonymous: b.anonymous,
            wanted: b.wanted.map(|w| service::Wanted {
                keyword: w.keyword,
                max_price: w.max_price,
            }),
        };
        let p = service::create_post(&state, &auth.0.user, input).await?;
        Ok(Json(one_post(&state, p, Some(&auth.0.user)).await?))
    }

    /// Browse posts of a board or a school (the caller's school by default). `hot` (default) ranks by a
    /// time-decayed score, `new` by time, `top` by score within `period`. Pinned posts lead the first page.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/v1/posts",
        method = "get",
        tag = "ForumTags::Forum",
        operation_id = "list_posts"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        /// A board id.
        board: Query<Option<i64>>,
        /// A school id.
        school: Query<Option<i64>>,
        sort: Query<Option<Sort>>,
        /// For `top`: `day`, `week` (default), `month` or `all`.
        period: Query<Option<Period>>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<PostPage>> {
        let viewer = viewer_of(&auth);
        let school = match (board.0, school.0) {
            (None, None) => viewer.and_then(|u| u.school_id),
            (_, s) => s,
        };
        let q = PostQuery {
            school_id: school,
            board_id: board.0,
            sort: sort.0.unwrap_or_default(),
            period: period.0.unwrap_or_default(),
            cursor: cursor.0,
            limit: limit.0,
        };
        let page = service::list_posts(&state.db, q, viewer.map(|u| u.id)).await?;
        Ok(Json(PostPage {
            items: post_views(&state, page.items, viewer).await?,
            next_cursor: page.next_cursor,
        }))
    }

    /// One post. Deleted posts answer with empty content (`status: deleted`) so the thread stays readable.
    #[oai(
        path = "/v1/posts/:id",
        method = "get",
        tag = "ForumTags::Forum",
        operation_id = "get_post"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        id: Path<i64>,
    ) -> AppResult<Json<PostView>> {
        let viewer = viewer_of(&auth);
        let p = service::visible_post(&state.db, id.0, viewer.map(|u| u.id)).await?;
        Ok(Json(one_post(&state, p, viewer).await?))
    }

    /// Edit a post (author only, within 24 hours and until the first comment: 409 `edit_window_closed`).
    #[oai(
        path = "/v1/posts/:id",
        method = "patch",
        tag = "ForumTags::Forum",
        operation_id = "update_post"
    )]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<UpdatePost>,
    ) -> AppResult<Json<PostView>> {
        let b = body.0;
        let patch = PostPatch {
            title: b.title,
            body: b.body,
            image_ids: b.image_ids,
            listing_ids: b.listing_ids,
        };
        let p = service::update_post(&state, &auth.0.user, id.0, patch).await?;
        Ok(Json(one_post(&state, p, Some(&auth.0.user)).await?))
    }

    /// Delete a post (author only). The thread stays readable; the post shows as deleted.
    #[oai(
        path = "/v1/posts/:id",
        method = "delete",
        tag = "ForumTags::Forum",
        operation_id = "delete_post"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        service::delete_post(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }

    /// Vote on a post: 1, -1, or 0 to clear. Idempotent.
    #[oai(
        path = "/v1/posts/:id/vote",
        method = "put",
        tag = "ForumTags::Forum",
        operation_id = "vote_post"
    )]
    async fn vote_post(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<VoteBody>,
    ) -> AppResult<Json<VoteResult>> {
        vote(&state, &auth, VoteTarget::Post, id.0, body.0.value).await
    }

    /// Vote on a comment: 1, -1, or 0 to clear. Idempotent.
    #[oai(
        path = "/v1/comments/:id/vote",
        method = "put",
        tag = "ForumTags::Comments",
        operation_id = "vote_comment"
    )]
    async fn vote_comment(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<VoteBody>,
    ) -> AppResult<Json<VoteResult>> {
        vote(&state, &auth, VoteTarget::Comment, id.0, body.0.value).await
    }

    /// Comment on a post, or reply to a comment (`parent_id`). Locked posts answer 409 `post_locked`.
    #[oai(
        path = "/v1/posts/:id/comments",
        method = "post",
        tag = "ForumTags::Comments",
        operation_id = "create_comment"
    )]
    async fn comment(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<CreateComment>,
    ) -> AppResult<Json<CommentView>> {
        let b = body.0;
        let created = service::create_comment(
            &state,
            &auth.0.user,
            id.0,
            CommentInput {
                body: b.body,
                parent_id: b.parent_id,
                anonymous: b.anonymous,
            },
        )
        .await?;
        let open = !created.post.locked;
        let thread = service::Thread {
            comment: created.comment,
            replies: Vec::new(),
        };
        let mut views = comment_views(&state, vec![thread], Some(&auth.0.user), open).await?;
        let v = views
            .pop()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("comment view missing")))?;
        Ok(Json(v.comment))
    }

    /// The comments of a post: top-level comments (`top` by score, default, or `new`), each with its first
    /// replies, oldest first.
    #[oai(
        path = "/v1/posts/:id/comments",
        method = "get",
        tag = "ForumTags::Comments",
        operation_id = "list_comments"
    )]
    async fn comments(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        id: Path<i64>,
        sort: Query<Option<CommentSort>>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<CommentPage>> {
        let viewer = viewer_of(&auth);
        let p = service::visible_post(&state.db, id.0, viewer.map(|u| u.id)).await?;
        let page = service::list_comments(
            &state.db,
            id.0,
            viewer.map(|u| u.id),
            sort.0.unwrap_or_default(),
            cursor.0.as_deref(),
            limit.0,
        )
        .await?;
        let open = p.status == Status::Published && !p.locked;
        Ok(Json(CommentPage {
            items: comment_views(&state, page.items, viewer, open).await?,
            next_cursor: page.next_cursor,
        }))
    }

    /// Every reply under a top-level comment (the comment list shows the first 20), oldest first.
    #[oai(
        path = "/v1/comments/:id/replies",
        method = "get",
        tag = "ForumTags::Comments",
        operation_id = "list_replies"
    )]
    async fn replies(
        &self,
        state: Data<&AppState>,
        auth: OptionalStudent,
        id: Path<i64>,
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<ReplyPage>> {
        let viewer = viewer_of(&auth);
        let (top, page) = service::list_replies(
            &state.db,
            id.0,
            viewer.map(|u| u.id),
            cursor.0.as_deref(),
            limit.0,
        )
        .await?;
        let p = service::visible_post(&state.db, top.post_id, viewer.map(|u| u.id)).await?;
        let open = p.status == Status::Published && !p.locked;
        let threads = page
            .items
            .into_iter()
            .map(|c| service::Thread {
                comment: c,
                replies: Vec::new(),
            })
            .collect();
        Ok(Json(ReplyPage {
            items: comment_views(&state, threads, viewer, open)
                .await?
                .into_iter()
                .map(|t| t.comment)
                .collect(),
            next_cursor: page.next_cursor,
        }))
    }

    /// Delete your comment. Replies under it stay; it shows as deleted.
    #[oai(
        path = "/v1/comments/:id",
        method = "delete",
        tag = "ForumTags::Comments",
        operation_id = "delete_comment"
    )]
    async fn delete_comment(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Done> {
        service::delete_comment(&state.db, auth.0.id(), id.0).await?;
        Ok(Done::NoContent)
    }
}

async fn vote(
    state: &AppState,
    auth: &StudentAuth,
    target: VoteTarget,
    id: i64,
    value: i32,
) -> AppResult<Json<VoteResult>> {
    let value =
        i16::try_from(value).map_err(|_| AppError::invalid_field("value", "must be 1, -1 or 0"))?;
    let t = service::vote(&state.db, auth.0.id(), target, id, value).await?;
    Ok(Json(VoteResult {
        score: t.score,
        upvotes: t.upvotes,
        downvotes: t.downvotes,
        my_vote: i32::from(t.my_vote),
    }))
}
