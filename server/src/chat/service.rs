//! Rules of chat, free of HTTP and sockets: opening conversations, sending messages, history, read marks,
//! unread counts, offers, and system cards.
//!
//! - A conversation is unique per (listing, buyer); opening it again returns the same one.
//! - A message is stored (and committed) before anyone is told about it; a second send with the same
//!   `client_msg_id` by the same sender finds the stored message instead of storing another
//!   (unique (sender_id, client_msg_id), `INSERT … ON CONFLICT DO NOTHING`).
//! - Messages of a conversation are ordered by their id. Pushes may overtake each other on the way to a socket,
//!   so [`sync`] also returns the messages of the minute before `since` (clients drop ids they have).
//! - Offer decisions are conditional UPDATEs of the offer's status (409 `invalid_transition` otherwise).
//! - On SQLite every transaction here writes first and reads after (see the codebase rules).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde_json::json;

use super::{
    cards::{Delivery, Event},
    model::{
        MessageKind, OfferAction, OfferStatus, Party, conversation, message, offer,
        validate_client_msg_id, validate_text, yuan,
    },
};
use crate::{
    error::{AppError, AppResult},
    images::model::image,
    listings::{model::listing, service::PRICE_MAX},
    moderation::{Scene, Verdict},
    notifications::outbox,
    state::AppState,
    users::model::user,
    util,
};

/// Most messages one history page or one `sync` answer carries.
pub const PAGE_MAX: u64 = 100;
/// Default size of a history page.
pub const PAGE_DEFAULT: u64 = 30;
/// Most messages one `sync` answer carries (besides the overlap).
pub const SYNC_MAX: u64 = 200;
/// `sync` also returns the messages written this long before the `since` message (see the module docs).
pub const SYNC_OVERLAP_SECONDS: i64 = 60;
/// Most overlap messages one `sync` answer carries.
const SYNC_OVERLAP_MAX: u64 = 100;
/// At most one WeChat reminder per conversation and receiver in this many minutes.
pub const REMINDER_INTERVAL_MINUTES: i64 = 10;
/// Longest label kept on a message.
const LABEL_MAX: usize = 40;

/// The card the receiver of a message with contact details sees.
pub const CONTACT_WARNING: &str = "对方的消息里可能有联系方式（电话、微信号或链接）。为了保障交易安全，请在平台内沟通、下单和付款，不要点开陌生链接或私下转账。";

/// A statement with `?` placeholders, renumbered `$1, $2, …` for PostgreSQL.
pub(crate) fn stmt(backend: DbBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_string()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A participant's side of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum Role {
    Buyer,
    Seller,
}

impl Role {
    pub fn of(c: &conversation::Model, user_id: i64) -> Option<Role> {
        if c.buyer_id == user_id {
            Some(Role::Buyer)
        } else if c.seller_id == user_id {
            Some(Role::Seller)
        } else {
            None
        }
    }

    fn party(self) -> Party {
        match self {
            Role::Buyer => Party::Buyer,
            Role::Seller => Party::Seller,
        }
    }

    fn read_column(self) -> conversation::Column {
        match self {
            Role::Buyer => conversation::Column::BuyerLastReadId,
            Role::Seller => conversation::Column::SellerLastReadId,
        }
    }

    fn notified_column(self) -> conversation::Column {
        match self {
            Role::Buyer => conversation::Column::BuyerNotifiedAt,
            Role::Seller => conversation::Column::SellerNotifiedAt,
        }
    }
}

fn blocked_by_other() -> AppError {
    AppError::forbidden(
        "blocked_by_user",
        "this user has blocked you: you cannot start a conversation with them or message them",
    )
}

fn blocking_other() -> AppError {
    AppError::forbidden(
        "user_blocked",
        "you have blocked this user: unblock them to message them",
    )
}

async fn block_between(db: &impl ConnectionTrait, me: i64, other: i64) -> AppResult<()> {
    use crate::users::blocks::user_block;
    let rows = user_block::Entity::find()
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(user_block::Column::BlockerId.eq(me))
                        .add(user_block::Column::BlockedId.eq(other)),
                )
                .add(
                    Condition::all()
                        .add(user_block::Column::BlockerId.eq(other))
                        .add(user_block::Column::BlockedId.eq(me)),
                ),
        )
        .all(db)
        .await?;
    if rows.iter().any(|b| b.blocker_id == other) {
        return Err(blocked_by_other());
    }
    if !rows.is_empty() {
        return Err(blocking_other());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Conversations

/// The outcome of opening a conversation.
pub struct Opened {
    pub conversation: conversation::Model,
    /// False when it existed already.
    pub created: bool,
}

/// `POST /api/v1/conversations`: the caller (as buyer) and the seller of `listing_id`. Idempotent: an existing
/// conversation is returned whatever the listing's status now. A new one needs a listing on sale or reserved
/// (409 `listing_not_available`), a buyer who is not the seller (422 `cannot_chat_with_self`) and no block between
/// the two (403 `blocked_by_user` / `user_blocked`).
pub async fn open(state: &AppState, buyer: &user::Model, listing_id: i64) -> AppResult<Opened> {
    let l = crate::listings::service::visible(&state.db, listing_id, Some(buyer.id)).await?;
    if l.seller_id == buyer.id {
        return Err(AppError::unprocessable(
            "cannot_chat_with_self",
            "this is your own listing",
        ));
    }
    if let Some(existing) = conversation::Entity::find()
        .filter(conversation::Column::ListingId.eq(listing_id))
        .filter(conversation::Column::BuyerId.eq(buyer.id))
        .one(&state.db)
        .await?
    {
        return Ok(Opened {
            conversation: existing,
            created: false,
        });
    }
    if !matches!(
        l.status,
        listing::Status::OnSale | listing::Status::Reserved
    ) {
        return Err(AppError::conflict(
            "listing_not_available",
            format!(
                "the listing is {}; conversations start only about listings on sale",
                l.status.as_str()
            ),
        ));
    }
    block_between(&state.db, buyer.id, l.seller_id).await?;
    let seller_id = l.seller_id;
    let buyer_id = buyer.id;
    let (conversation, created) = state
        .db
        .transaction::<_, (conversation::Model, bool), AppError>(move |txn| {
            Box::pin(async move {
                let (conv, created) =
                    insert_conversation(txn, listing_id, buyer_id, seller_id).await?;
                if created {
                    listing::Entity::update_many()
                        .col_expr(
                            listing::Column::ChatCount,
                            Expr::col(listing::Column::ChatCount).add(1),
                        )
                        .filter(listing::Column::Id.eq(listing_id))
                        .exec(txn)
                        .await?;
                }
                Ok((conv, created))
            })
        })
        .await?;
    Ok(Opened {
        conversation,
        created,
    })
}

/// Inserts the conversation unless it exists (write first), then reads it; true when this call created it.
async fn insert_conversation(
    txn: &impl ConnectionTrait,
    listing_id: i64,
    buyer_id: i64,
    seller_id: i64,
) -> AppResult<(conversation::Model, bool)> {
    let now = util::now();
    let inserted = conversation::Entity::insert(conversation::ActiveModel {
        listing_id: Set(listing_id),
        buyer_id: Set(buyer_id),
        seller_id: Set(seller_id),
        last_message_id: Set(None),
        last_activity_at: Set(now),
        buyer_last_read_id: Set(0),
        seller_last_read_id: Set(0),
        buyer_notified_at: Set(None),
        seller_notified_at: Set(None),
        created_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            conversation::Column::ListingId,
            conversation::Column::BuyerId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .try_insert()
    .exec_without_returning(txn)
    .await?;
    let created = matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0);
    let conv = conversation::Entity::find()
        .filter(conversation::Column::ListingId.eq(listing_id))
        .filter(conversation::Column::BuyerId.eq(buyer_id))
        .one(txn)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("conversation vanished")))?;
    Ok((conv, created))
}

/// The conversation between `buyer_id` and `seller_id` about `listing_id`, opened if needed, in the caller's
/// transaction (for cards other capabilities write; no checks).
pub(crate) async fn ensure_conversation_in(
    txn: &impl ConnectionTrait,
    listing_id: i64,
    buyer_id: i64,
    seller_id: i64,
) -> AppResult<conversation::Model> {
    Ok(insert_conversation(txn, listing_id, buyer_id, seller_id)
        .await?
        .0)
}

/// The conversation if `user_id` takes part in it; 404 otherwise (whether it exists is not theirs to know).
pub async fn participant_of(
    db: &impl ConnectionTrait,
    conversation_id: i64,
    user_id: i64,
) -> AppResult<conversation::Model> {
    conversation::Entity::find_by_id(conversation_id)
        .one(db)
        .await?
        .filter(|c| c.has(user_id))
        .ok_or_else(|| AppError::not_found("conversation"))
}

/// A page of the caller's conversations, newest activity first, and the cursor of the next page.
pub async fn list(
    db: &DatabaseConnection,
    user_id: i64,
    cursor: Option<&str>,
    limit: Option<u64>,
) -> AppResult<(Vec<conversation::Model>, Option<String>)> {
    let limit = limit.unwrap_or(20).clamp(1, 50);
    let mut q = conversation::Entity::find().filter(
        Condition::any()
            .add(conversation::Column::BuyerId.eq(user_id))
            .add(conversation::Column::SellerId.eq(user_id)),
    );
    if let Some(c) = cursor {
        let (key, id) = util::decode_cursor("conv", c)?;
        let micros: i64 = key.parse().map_err(|_| util::invalid_cursor())?;
        let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(util::invalid_cursor)?;
        q = q.filter(
            Condition::any()
                .add(conversation::Column::LastActivityAt.lt(at))
                .add(
                    Condition::all()
                        .add(conversation::Column::LastActivityAt.eq(at))
                        .add(conversation::Column::Id.lt(id)),
                ),
        );
    }
    let mut rows = q
        .order_by_desc(conversation::Column::LastActivityAt)
        .order_by_desc(conversation::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|c| {
            util::encode_cursor(
                "conv",
                &c.last_activity_at.timestamp_micros().to_string(),
                c.id,
            )
        })
    } else {
        None
    };
    Ok((rows, next))
}

#[derive(Debug, FromQueryResult)]
struct UnreadRow {
    conversation_id: i64,
    unread: i64,
}

/// Messages the user has not read, per conversation (conversations without any are absent).
pub async fn unread_counts(
    db: &impl ConnectionTrait,
    user_id: i64,
    conversation_ids: &[i64],
) -> AppResult<HashMap<i64, i64>> {
    if conversation_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders = vec!["?"; conversation_ids.len()].join(", ");
    let sql = format!(
        "SELECT m.conversation_id AS conversation_id, COUNT(*) AS unread \
         FROM chat_messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.conversation_id IN ({placeholders}) \
           AND m.id > CASE WHEN c.buyer_id = ? THEN c.buyer_last_read_id ELSE c.seller_last_read_id END \
           AND (m.sender_id IS NULL OR m.sender_id <> ?) \
           AND (m.visible_to IS NULL OR m.visible_to = ?) \
         GROUP BY m.conversation_id"
    );
    let mut values: Vec<sea_orm::Value> = conversation_ids.iter().map(|&i| i.into()).collect();
    values.extend([user_id.into(), user_id.into(), user_id.into()]);
    let rows = UnreadRow::find_by_statement(stmt(db.get_database_backend(), &sql, values))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.conversation_id, r.unread))
        .collect())
}

#[derive(Debug, FromQueryResult)]
struct CountRow {
    n: i64,
}

/// Every message of every conversation the user has not read (the badge of the chat tab).
pub async fn unread_total(db: &impl ConnectionTrait, user_id: i64) -> AppResult<i64> {
    let sql = "SELECT COUNT(*) AS n FROM chat_messages m JOIN conversations c ON c.id = m.conversation_id \
               WHERE (c.buyer_id = ? OR c.seller_id = ?) \
                 AND m.id > CASE WHEN c.buyer_id = ? THEN c.buyer_last_read_id ELSE c.seller_last_read_id END \
                 AND (m.sender_id IS NULL OR m.sender_id <> ?) \
                 AND (m.visible_to IS NULL OR m.visible_to = ?)";
    let values = vec![user_id.into(); 5];
    Ok(
        CountRow::find_by_statement(stmt(db.get_database_backend(), sql, values))
            .one(db)
            .await?
            .map_or(0, |r| r.n),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Messages

/// What a participant sends.
#[derive(Debug, Clone)]
pub enum Content {
    Text(String),
    /// An uploaded image of the sender's, not attached to anything yet.
    Image(i64),
    /// A price in fen (buyers only).
    Offer(i64),
}

/// A stored message and what to push about it.
pub struct Sent {
    pub message: message::Model,
    pub image: Option<image::Model>,
    pub offer: Option<offer::Model>,
    /// The message was stored by an earlier send with the same `client_msg_id`; nothing new to deliver.
    pub duplicate: bool,
    pub delivery: Delivery,
}

/// What a send needs to know about the conversation, in one query.
#[derive(Debug, FromQueryResult)]
struct SendContext {
    id: i64,
    listing_id: i64,
    buyer_id: i64,
    seller_id: i64,
    listing_status: String,
    listing_title: String,
    blocked_by_other: bool,
    blocking_other: bool,
    buyer_notified_at: Option<DateTime<Utc>>,
    seller_notified_at: Option<DateTime<Utc>>,
}

impl SendContext {
    fn conversation(&self) -> ConvRef {
        ConvRef {
            id: self.id,
            buyer_id: self.buyer_id,
            seller_id: self.seller_id,
        }
    }

    fn listing_open(&self) -> bool {
        matches!(self.listing_status.as_str(), "on_sale" | "reserved")
    }
}

/// The ids a card needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvRef {
    pub id: i64,
    pub buyer_id: i64,
    pub seller_id: i64,
}

impl From<&conversation::Model> for ConvRef {
    fn from(c: &conversation::Model) -> Self {
        Self {
            id: c.id,
            buyer_id: c.buyer_id,
            seller_id: c.seller_id,
        }
    }
}

async fn send_context(
    db: &DatabaseConnection,
    conversation_id: i64,
    user_id: i64,
) -> AppResult<SendContext> {
    let other = "CASE WHEN c.buyer_id = ? THEN c.seller_id ELSE c.buyer_id END";
    let sql = format!(
        "SELECT c.id AS id, c.listing_id AS listing_id, c.buyer_id AS buyer_id, c.seller_id AS seller_id, \
           l.status AS listing_status, l.title AS listing_title, \
           EXISTS (SELECT 1 FROM user_blocks b WHERE b.blocker_id = {other} AND b.blocked_id = ?) AS blocked_by_other, \
           EXISTS (SELECT 1 FROM user_blocks b WHERE b.blocker_id = ? AND b.blocked_id = {other}) AS blocking_other, \
           c.buyer_notified_at AS buyer_notified_at, c.seller_notified_at AS seller_notified_at \
         FROM conversations c JOIN listings l ON l.id = c.listing_id \
         WHERE c.id = ? AND (c.buyer_id = ? OR c.seller_id = ?)"
    );
    let values: Vec<sea_orm::Value> = vec![
        user_id.into(),
        user_id.into(),
        user_id.into(),
        user_id.into(),
        conversation_id.into(),
        user_id.into(),
        user_id.into(),
    ];
    SendContext::find_by_statement(stmt(db.get_database_backend(), &sql, values))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("conversation"))
}

fn rate_limited(wait: std::time::Duration) -> AppError {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    AppError::RateLimited {
        retry_after_secs: secs,
        message: format!("you are sending too fast; try again in {secs} s"),
    }
}

/// A short, single-line text for a WeChat `thing` keyword (at most 20 characters, never empty).
fn thing(text: &str, fallback: &str) -> String {
    let one_line: Vec<&str> = text.split_whitespace().collect();
    let joined = one_line.join(" ");
    let clipped: String = joined.chars().take(20).collect();
    if clipped.is_empty() {
        fallback.to_string()
    } else {
        clipped
    }
}

/// The "new message" subscribe message for the receiver of a message.
fn reminder(
    template_id: &str,
    receiver_id: i64,
    conversation_id: i64,
    sender_nickname: &str,
    preview: &str,
    listing_title: &str,
    at: DateTime<Utc>,
) -> outbox::Outgoing {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    outbox::Outgoing {
        user_id: receiver_id,
        template_key: "chat_message",
        template_id: template_id.to_string(),
        page: Some(format!("pages/chat/conversation?id={conversation_id}")),
        data: json!({
            "thing1": { "value": thing(sender_nickname, "同学") },
            "thing2": { "value": thing(preview, "[消息]") },
            "thing3": { "value": thing(listing_title, "商品") },
            "time4": { "value": at.with_timezone(&beijing).format("%Y-%m-%d %H:%M").to_string() },
        }),
    }
}

/// How a message reads in a reminder.
pub fn preview(kind: MessageKind, body: &str, price: Option<i64>) -> String {
    match kind {
        MessageKind::Text | MessageKind::System => body.to_string(),
        MessageKind::Image => "[图片]".to_string(),
        MessageKind::Offer => format!("[出价] {}", yuan(price.unwrap_or(0))),
    }
}

/// Sends a message: checks, content security and contact rules, then one transaction that stores it (with its
/// image attachment or offer, a contact warning for the receiver, the conversation's new activity, and a WeChat
/// reminder in the outbox when the receiver has no socket open anywhere).
///
/// Errors: 404 (not a participant), 403 `blocked_by_user` / `user_blocked` / `only_buyer_can_offer`, 409
/// `listing_not_available` (offers on a listing not for sale) / `client_msg_id_reused`, 422 `validation_failed` /
/// `content_rejected`, 429 `rate_limited`.
pub async fn send(
    state: &AppState,
    sender: &user::Model,
    conversation_id: i64,
    client_msg_id: &str,
    content: Content,
) -> AppResult<Sent> {
    validate_client_msg_id(client_msg_id)
        .map_err(|p| AppError::invalid_field("client_msg_id", p))?;
    let content = match content {
        Content::Text(t) => {
            Content::Text(validate_text(&t).map_err(|p| AppError::invalid_field("text", p))?)
        }
        Content::Offer(price) if !(1..=PRICE_MAX).contains(&price) => {
            return Err(AppError::invalid_field(
                "price",
                format!("must be 1 to {PRICE_MAX} fen"),
            ));
        }
        other => other,
    };
    state.chat.hub.take_send(sender.id).map_err(rate_limited)?;

    let ctx = send_context(&state.db, conversation_id, sender.id).await?;
    if ctx.blocked_by_other {
        return Err(blocked_by_other());
    }
    if ctx.blocking_other {
        return Err(blocking_other());
    }
    let conv = ctx.conversation();
    let role = if ctx.buyer_id == sender.id {
        Role::Buyer
    } else {
        Role::Seller
    };
    let receiver = if role == Role::Buyer {
        ctx.seller_id
    } else {
        ctx.buyer_id
    };

    let mut label = None;
    let mut contact_kinds = Vec::new();
    match &content {
        Content::Text(text) => {
            match crate::moderation::service::check_text(
                state,
                &sender.openid,
                Scene::Comment,
                None,
                text,
            )
            .await?
            {
                Verdict::Pass => {}
                // Chat is private and real time: a doubtful message is delivered, and its label kept for the
                // operators who judge a report about it (see docs/chat-protocol.md).
                Verdict::Review { label: l } => label = Some(l.chars().take(LABEL_MAX).collect()),
                Verdict::Risky { label } => {
                    return Err(AppError::unprocessable(
                        "content_rejected",
                        format!(
                            "the message was rejected by content security ({label}); please change it"
                        ),
                    ));
                }
            }
            contact_kinds = state.chat.rules.current(&state.db).await?.detect(text);
        }
        Content::Offer(_) => {
            if role != Role::Buyer {
                return Err(AppError::forbidden(
                    "only_buyer_can_offer",
                    "only the buyer makes offers",
                ));
            }
            if !ctx.listing_open() {
                return Err(AppError::conflict(
                    "listing_not_available",
                    format!(
                        "the listing is {}; offers are made only while it is on sale",
                        ctx.listing_status
                    ),
                ));
            }
        }
        Content::Image(_) => {}
    }

    // A reminder is due when the receiver is offline and was not reminded about this conversation lately (the
    // conditional UPDATE in the transaction decides for good; this only saves work when it is clearly not due).
    let now = util::now();
    let last_reminded = if role == Role::Buyer {
        ctx.seller_notified_at
    } else {
        ctx.buyer_notified_at
    };
    let interval = chrono::Duration::minutes(REMINDER_INTERVAL_MINUTES);
    let template = state.config.wechat_template_chat_message.clone();
    let remind = template.is_some()
        && last_reminded.is_none_or(|t| t <= now - interval)
        && !state.chat.is_online(receiver).await;

    let (kind, body, image_id, price) = match &content {
        Content::Text(t) => (MessageKind::Text, t.clone(), None, None),
        Content::Image(id) => (MessageKind::Image, String::new(), Some(*id), None),
        Content::Offer(p) => (MessageKind::Offer, String::new(), None, Some(*p)),
    };
    let sender_id = sender.id;
    let client_msg_id = client_msg_id.to_string();
    let kinds_text = (!contact_kinds.is_empty()).then(|| contact_kinds.join(","));
    let reminder_msg = template.map(|t| {
        reminder(
            &t,
            receiver,
            conv.id,
            &sender.nickname,
            &preview(kind, &body, price),
            &ctx.listing_title,
            now,
        )
    });
    let listing_id = ctx.listing_id;
    let receiver_role = if role == Role::Buyer {
        Role::Seller
    } else {
        Role::Buyer
    };

    let turn = state.write_gate.enter().await;
    let outcome = state
        .db
        .transaction::<_, (Sent, bool), AppError>(move |txn| {
            Box::pin(async move {
                let inserted = message::Entity::insert(message::ActiveModel {
                    conversation_id: Set(conv.id),
                    sender_id: Set(Some(sender_id)),
                    client_msg_id: Set(Some(client_msg_id.clone())),
                    kind: Set(kind),
                    body: Set(body),
                    image_id: Set(image_id),
                    offer_id: Set(None),
                    card_kind: Set(None),
                    order_id: Set(None),
                    visible_to: Set(None),
                    contact_kinds: Set(kinds_text),
                    moderation_label: Set(label),
                    created_at: Set(now),
                    ..Default::default()
                })
                .on_conflict(
                    OnConflict::columns([
                        message::Column::SenderId,
                        message::Column::ClientMsgId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .try_insert()
                .exec_with_returning_many(txn)
                .await?;
                // `ON CONFLICT DO NOTHING` returns no row when the client_msg_id was used before.
                let mut msg = match inserted {
                    sea_orm::TryInsertResult::Inserted(mut rows) if !rows.is_empty() => rows.remove(0),
                    _ => {
                        let existing = message::Entity::find()
                            .filter(message::Column::SenderId.eq(sender_id))
                            .filter(message::Column::ClientMsgId.eq(client_msg_id))
                            .one(txn)
                            .await?
                            .ok_or_else(|| {
                                AppError::internal(anyhow::anyhow!("duplicate message vanished"))
                            })?;
                        if existing.conversation_id != conv.id {
                            return Err(AppError::conflict(
                                "client_msg_id_reused",
                                "this client_msg_id was already used for a message in another conversation",
                            ));
                        }
                        return Ok((
                            Sent {
                                message: existing,
                                image: None,
                                offer: None,
                                duplicate: true,
                                delivery: Delivery::default(),
                            },
                            false,
                        ));
                    }
                };
                let mut delivery = Delivery::default();
                let users = vec![conv.buyer_id, conv.seller_id];
                let mut image_row = None;
                let mut offer_row = None;
                match kind {
                    MessageKind::Image => {
                        let id = image_id.unwrap_or_default();
                        crate::images::service::attach(txn, sender_id, &[id], "chat_message", msg.id)
                            .await
                            .map_err(|e| match e {
                                AppError::Validation(_) => AppError::invalid_field(
                                    "image_id",
                                    "must be an image you uploaded and have not used elsewhere",
                                ),
                                other => other,
                            })?;
                        image_row = image::Entity::find_by_id(id).one(txn).await?;
                    }
                    MessageKind::Offer => {
                        let superseded = offer::Entity::update_many()
                            .col_expr(offer::Column::Status, Expr::value(OfferStatus::Superseded))
                            .col_expr(offer::Column::DecidedAt, Expr::value(Some(now)))
                            .filter(offer::Column::ConversationId.eq(conv.id))
                            .filter(offer::Column::Status.eq(OfferStatus::Pending))
                            .exec_with_returning(txn)
                            .await?;
                        for o in superseded {
                            delivery.push(Event::OfferUpdated {
                                users: users.clone(),
                                offer: o,
                            });
                        }
                        let o = offer::Entity::insert(offer::ActiveModel {
                            conversation_id: Set(conv.id),
                            listing_id: Set(listing_id),
                            buyer_id: Set(sender_id),
                            price: Set(price.unwrap_or_default()),
                            status: Set(OfferStatus::Pending),
                            created_at: Set(now),
                            decided_at: Set(None),
                            ..Default::default()
                        })
                        .exec_with_returning(txn)
                        .await?;
                        message::Entity::update_many()
                            .col_expr(message::Column::OfferId, Expr::value(Some(o.id)))
                            .filter(message::Column::Id.eq(msg.id))
                            .exec(txn)
                            .await?;
                        msg.offer_id = Some(o.id);
                        offer_row = Some(o);
                    }
                    MessageKind::Text | MessageKind::System => {}
                }
                delivery.push(Event::Message {
                    users: users.clone(),
                    message: msg.clone(),
                    image: image_row.clone(),
                    offer: offer_row.clone(),
                    own: true,
                });
                let mut last_id = msg.id;
                if msg.contact_kinds.is_some() {
                    let warning = insert_card(
                        txn,
                        &conv,
                        NewCard {
                            kind: "contact_warning",
                            text: CONTACT_WARNING,
                            order_id: None,
                            offer_id: None,
                            visible_to: Some(receiver),
                        },
                    )
                    .await?;
                    last_id = warning.id;
                    delivery.push(Event::Message {
                        users: vec![receiver],
                        message: warning,
                        image: None,
                        offer: None,
                        own: false,
                    });
                }
                touch_conversation(txn, conv.id, last_id, now).await?;
                let mut queued = false;
                if remind && let Some(r) = reminder_msg {
                    let col = receiver_role.notified_column();
                    let due = conversation::Entity::update_many()
                        .col_expr(col, Expr::value(Some(now)))
                        .filter(conversation::Column::Id.eq(conv.id))
                        .filter(
                            Condition::any()
                                .add(col.is_null())
                                .add(col.lte(now - interval)),
                        )
                        .exec(txn)
                        .await?;
                    if due.rows_affected == 1 {
                        outbox::enqueue(txn, r).await?;
                        queued = true;
                    }
                }
                Ok((
                    Sent {
                        message: msg,
                        image: image_row,
                        offer: offer_row,
                        duplicate: false,
                        delivery,
                    },
                    queued,
                ))
            })
        })
        .await;
    drop(turn);
    let (mut sent, queued) = outcome?;
    if !sent.duplicate {
        state
            .chat
            .activity
            .record(&state.db, sender.id, sender.school_id, now)
            .await;
    }
    if queued {
        outbox::kick(state);
    }
    if sent.duplicate {
        let (image, offer) = attachments(&state.db, &sent.message).await?;
        sent.image = image;
        sent.offer = offer;
    } else if let Some(img) = &sent.image {
        crate::moderation::service::check_images_later(
            state,
            &sender.openid,
            "chat_message",
            sent.message.id,
            vec![img.clone()],
        );
    }
    Ok(sent)
}

/// The image and offer a stored message refers to.
async fn attachments(
    db: &impl ConnectionTrait,
    m: &message::Model,
) -> AppResult<(Option<image::Model>, Option<offer::Model>)> {
    let image = match m.image_id {
        Some(id) => image::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let offer = match m.offer_id {
        Some(id) => offer::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    Ok((image, offer))
}

/// The images and offers a page of messages refers to, by id.
pub async fn attachments_of(
    db: &impl ConnectionTrait,
    messages: &[message::Model],
) -> AppResult<(HashMap<i64, image::Model>, HashMap<i64, offer::Model>)> {
    let image_ids: Vec<i64> = messages.iter().filter_map(|m| m.image_id).collect();
    let offer_ids: Vec<i64> = messages.iter().filter_map(|m| m.offer_id).collect();
    let images = if image_ids.is_empty() {
        HashMap::new()
    } else {
        image::Entity::find()
            .filter(image::Column::Id.is_in(image_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|i| (i.id, i))
            .collect()
    };
    let offers = if offer_ids.is_empty() {
        HashMap::new()
    } else {
        offer::Entity::find()
            .filter(offer::Column::Id.is_in(offer_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|o| (o.id, o))
            .collect()
    };
    Ok((images, offers))
}

/// A system card to write.
pub(crate) struct NewCard<'a> {
    pub kind: &'a str,
    pub text: &'a str,
    pub order_id: Option<i64>,
    pub offer_id: Option<i64>,
    pub visible_to: Option<i64>,
}

/// Writes a system card into a conversation (the caller then calls [`touch_conversation`]).
pub(crate) async fn insert_card(
    txn: &impl ConnectionTrait,
    conv: impl Into<ConvRef>,
    card: NewCard<'_>,
) -> AppResult<message::Model> {
    let conv = conv.into();
    Ok(message::Entity::insert(message::ActiveModel {
        conversation_id: Set(conv.id),
        sender_id: Set(None),
        client_msg_id: Set(None),
        kind: Set(MessageKind::System),
        body: Set(card.text.chars().take(500).collect()),
        image_id: Set(None),
        offer_id: Set(card.offer_id),
        card_kind: Set(Some(card.kind.chars().take(32).collect())),
        order_id: Set(card.order_id),
        visible_to: Set(card.visible_to),
        contact_kinds: Set(None),
        moderation_label: Set(None),
        created_at: Set(util::now()),
        ..Default::default()
    })
    .exec_with_returning(txn)
    .await?)
}

impl From<&ConvRef> for ConvRef {
    fn from(c: &ConvRef) -> Self {
        *c
    }
}

/// Records a new message as the conversation's latest activity (the larger id wins, so two sends racing leave
/// the newest one).
pub(crate) async fn touch_conversation(
    txn: &impl ConnectionTrait,
    conversation_id: i64,
    message_id: i64,
    at: DateTime<Utc>,
) -> AppResult<()> {
    let sql = "UPDATE conversations SET \
                 last_message_id = CASE WHEN last_message_id IS NULL OR last_message_id < ? THEN ? ELSE last_message_id END, \
                 last_activity_at = CASE WHEN last_activity_at < ? THEN ? ELSE last_activity_at END \
               WHERE id = ?";
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        sql,
        vec![
            message_id.into(),
            message_id.into(),
            at.into(),
            at.into(),
            conversation_id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Writes the same card into every conversation of a listing: one INSERT … SELECT and one UPDATE, however many
/// conversations there are.
pub(crate) async fn post_listing_cards_in(
    txn: &impl ConnectionTrait,
    listing_id: i64,
    kind: &str,
    text: &str,
) -> AppResult<Delivery> {
    let backend = txn.get_database_backend();
    let now = util::now();
    let insert = "INSERT INTO chat_messages (conversation_id, sender_id, client_msg_id, kind, body, card_kind, created_at) \
                  SELECT c.id, NULL, NULL, 'system', ?, ?, ? FROM conversations c WHERE c.listing_id = ? \
                  RETURNING *";
    let rows = message::Model::find_by_statement(stmt(
        backend,
        insert,
        vec![
            text.to_string().into(),
            kind.to_string().into(),
            now.into(),
            listing_id.into(),
        ],
    ))
    .all(txn)
    .await?;
    let mut d = Delivery::default();
    if rows.is_empty() {
        return Ok(d);
    }
    let update = "UPDATE conversations SET \
                    last_message_id = (SELECT MAX(m.id) FROM chat_messages m WHERE m.conversation_id = conversations.id), \
                    last_activity_at = ? \
                  WHERE listing_id = ?";
    txn.execute_raw(stmt(backend, update, vec![now.into(), listing_id.into()]))
        .await?;
    let convs: HashMap<i64, conversation::Model> = conversation::Entity::find()
        .filter(conversation::Column::ListingId.eq(listing_id))
        .all(txn)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    for m in rows {
        if let Some(c) = convs.get(&m.conversation_id) {
            d.push(Event::Message {
                users: vec![c.buyer_id, c.seller_id],
                message: m,
                image: None,
                offer: None,
                own: false,
            });
        }
    }
    Ok(d)
}

/// Direction of a history page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// Messages older than this id.
    Before(i64),
    /// Messages newer than this id.
    After(i64),
}

/// A page of a conversation's history the user may see, in ascending id order, and whether there is more in
/// the same direction. 404 when the user does not take part.
pub async fn history(
    db: &DatabaseConnection,
    user_id: i64,
    conversation_id: i64,
    page: Page,
    limit: Option<u64>,
) -> AppResult<(Vec<message::Model>, bool)> {
    participant_of(db, conversation_id, user_id).await?;
    let limit = limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let mut q = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(
            Condition::any()
                .add(message::Column::VisibleTo.is_null())
                .add(message::Column::VisibleTo.eq(user_id)),
        );
    q = match page {
        Page::Latest => q.order_by_desc(message::Column::Id),
        Page::Before(id) => q
            .filter(message::Column::Id.lt(id))
            .order_by_desc(message::Column::Id),
        Page::After(id) => q
            .filter(message::Column::Id.gt(id))
            .order_by_asc(message::Column::Id),
    };
    let mut rows = q.limit(limit + 1).all(db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    if !matches!(page, Page::After(_)) {
        rows.reverse();
    }
    Ok((rows, more))
}

/// Every message of the user's conversations after `since` (at most [`SYNC_MAX`], ascending), plus the ones
/// written up to [`SYNC_OVERLAP_SECONDS`] before it; and whether more follow (ask again with the largest id).
pub async fn sync(
    db: &DatabaseConnection,
    user_id: i64,
    since: i64,
    limit: Option<u64>,
) -> AppResult<(Vec<message::Model>, bool)> {
    let limit = limit.unwrap_or(SYNC_MAX).clamp(1, SYNC_MAX);
    let backend = db.get_database_backend();
    let mine = "FROM chat_messages m JOIN conversations c ON c.id = m.conversation_id \
                WHERE (c.buyer_id = ? OR c.seller_id = ?) AND (m.visible_to IS NULL OR m.visible_to = ?)";
    let mut out = Vec::new();
    if since > 0
        && let Some(anchor) = message::Entity::find_by_id(since).one(db).await?
    {
        let floor = anchor.created_at - chrono::Duration::seconds(SYNC_OVERLAP_SECONDS);
        let sql = format!(
            "SELECT m.* {mine} AND m.id <= ? AND m.created_at >= ? ORDER BY m.id LIMIT {SYNC_OVERLAP_MAX}"
        );
        out = message::Model::find_by_statement(stmt(
            backend,
            &sql,
            vec![
                user_id.into(),
                user_id.into(),
                user_id.into(),
                since.into(),
                floor.into(),
            ],
        ))
        .all(db)
        .await?;
    }
    let sql = format!(
        "SELECT m.* {mine} AND m.id > ? ORDER BY m.id LIMIT {}",
        limit + 1
    );
    let mut newer = message::Model::find_by_statement(stmt(
        backend,
        &sql,
        vec![user_id.into(), user_id.into(), user_id.into(), since.into()],
    ))
    .all(db)
    .await?;
    let more = newer.len() as u64 > limit;
    newer.truncate(limit as usize);
    out.extend(newer);
    Ok((out, more))
}

// ---------------------------------------------------------------------------------------------------------------
// Read marks

/// The caller's read mark after a `read`.
pub struct ReadMark {
    pub conversation_id: i64,
    pub up_to: i64,
    pub unread: i64,
    pub delivery: Delivery,
}

/// Marks the conversation read up to `up_to` (clipped to its newest message; a mark never moves back). The other
/// participant's sockets get a `read` event: the read receipt.
pub async fn mark_read(
    db: &DatabaseConnection,
    user_id: i64,
    conversation_id: i64,
    up_to: i64,
) -> AppResult<ReadMark> {
    if up_to < 0 {
        return Err(AppError::invalid_field("up_to", "must be a message id"));
    }
    let conv = participant_of(db, conversation_id, user_id).await?;
    let role = Role::of(&conv, user_id).ok_or_else(|| AppError::not_found("conversation"))?;
    let up_to = std::cmp::min(up_to, conv.last_message_id.unwrap_or(0));
    let col = role.read_column();
    let moved = conversation::Entity::update_many()
        .col_expr(col, Expr::value(up_to))
        .filter(conversation::Column::Id.eq(conversation_id))
        .filter(col.lt(up_to))
        .exec(db)
        .await?;
    let mut delivery = Delivery::default();
    if moved.rows_affected == 1 {
        delivery.push(Event::Read {
            users: vec![conv.buyer_id, conv.seller_id],
            conversation_id,
            user_id,
            up_to,
        });
    }
    let unread = unread_counts(db, user_id, &[conversation_id])
        .await?
        .remove(&conversation_id)
        .unwrap_or(0);
    Ok(ReadMark {
        conversation_id,
        up_to: std::cmp::max(up_to, conv.last_read_of(user_id)),
        unread,
        delivery,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Offers

/// An offer after a decision, with the card that records it.
pub struct Decided {
    pub offer: offer::Model,
    pub delivery: Delivery,
}

/// The seller accepts or declines a pending offer, or the buyer withdraws it: one conditional UPDATE (409
/// `invalid_transition` with the offer's status when it is no longer pending), a card in the conversation, and
/// `offer_updated` events. Accepting needs the listing on sale or reserved, and makes an earlier accepted offer
/// of the conversation `superseded`.
pub async fn decide_offer(
    state: &AppState,
    user: &user::Model,
    offer_id: i64,
    action: OfferAction,
) -> AppResult<Decided> {
    let found = offer::Entity::find_by_id(offer_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::not_found("offer"))?;
    let ctx = send_context(&state.db, found.conversation_id, user.id)
        .await
        .map_err(|e| match e {
            AppError::NotFound { .. } => AppError::not_found("offer"),
            other => other,
        })?;
    let conv = ctx.conversation();
    let role = if ctx.buyer_id == user.id {
        Role::Buyer
    } else {
        Role::Seller
    };
    let (from, to, party) = action.rule();
    if party != role.party() {
        return Err(AppError::forbidden(
            "offer_action_not_allowed",
            match party {
                Party::Seller => "only the seller accepts or declines an offer",
                _ => "only the buyer withdraws an offer",
            },
        ));
    }
    if ctx.blocked_by_other {
        return Err(blocked_by_other());
    }
    if ctx.blocking_other {
        return Err(blocking_other());
    }
    if action == OfferAction::Accept && !ctx.listing_open() {
        return Err(AppError::conflict(
            "listing_not_available",
            format!(
                "the listing is {}; offers are accepted only while it is on sale",
                ctx.listing_status
            ),
        ));
    }
    state.chat.hub.take_send(user.id).map_err(rate_limited)?;
    let (card_kind, text) = match action {
        OfferAction::Accept => (
            "offer_accepted",
            format!("卖家接受了出价 {}。", yuan(found.price)),
        ),
        OfferAction::Decline => (
            "offer_declined",
            format!("卖家拒绝了出价 {}。", yuan(found.price)),
        ),
        _ => (
            "offer_withdrawn",
            format!("买家撤回了出价 {}。", yuan(found.price)),
        ),
    };
    let now = util::now();
    let decided = state
        .db
        .transaction::<_, Decided, AppError>(move |txn| {
            Box::pin(async move {
                let changed = offer::Entity::update_many()
                    .col_expr(offer::Column::Status, Expr::value(to))
                    .col_expr(offer::Column::DecidedAt, Expr::value(Some(now)))
                    .filter(offer::Column::Id.eq(offer_id))
                    .filter(offer::Column::Status.eq(from))
                    .exec(txn)
                    .await?;
                if changed.rows_affected != 1 {
                    let current = offer::Entity::find_by_id(offer_id)
                        .one(txn)
                        .await?
                        .map_or(OfferStatus::Superseded, |o| o.status);
                    return Err(AppError::InvalidTransition {
                        current: current.as_str(),
                        message: format!(
                            "cannot {} an offer that is {}",
                            action.verb(),
                            current.as_str()
                        ),
                    });
                }
                let users = vec![conv.buyer_id, conv.seller_id];
                let mut delivery = Delivery::default();
                if action == OfferAction::Accept {
                    let older = offer::Entity::update_many()
                        .col_expr(offer::Column::Status, Expr::value(OfferStatus::Superseded))
                        .filter(offer::Column::ConversationId.eq(conv.id))
                        .filter(offer::Column::Status.eq(OfferStatus::Accepted))
                        .filter(offer::Column::Id.ne(offer_id))
                        .exec_with_returning(txn)
                        .await?;
                    for o in older {
                        delivery.push(Event::OfferUpdated {
                            users: users.clone(),
                            offer: o,
                        });
                    }
                }
                let offer = offer::Entity::find_by_id(offer_id)
                    .one(txn)
                    .await?
                    .ok_or_else(|| AppError::not_found("offer"))?;
                let card = insert_card(
                    txn,
                    &conv,
                    NewCard {
                        kind: card_kind,
                        text: &text,
                        order_id: None,
                        offer_id: Some(offer_id),
                        visible_to: None,
                    },
                )
                .await?;
                touch_conversation(txn, conv.id, card.id, card.created_at).await?;
                delivery.push(Event::OfferUpdated {
                    users: users.clone(),
                    offer: offer.clone(),
                });
                delivery.push(Event::Message {
                    users,
                    message: card,
                    image: None,
                    offer: Some(offer.clone()),
                    own: false,
                });
                Ok(Decided { offer, delivery })
            })
        })
        .await?;
    Ok(decided)
}

/// Checks that `reporter` may report message `id`: a message of a conversation they take part in, visible to
/// them, written by the other participant (404 otherwise; their own message is 422 `cannot_report_self`).
pub async fn reportable_message(
    db: &DatabaseConnection,
    id: i64,
    reporter: i64,
) -> AppResult<message::Model> {
    let m = message::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|m| m.visible_for(reporter))
        .ok_or_else(|| AppError::not_found("message"))?;
    participant_of(db, m.conversation_id, reporter)
        .await
        .map_err(|_| AppError::not_found("message"))?;
    match m.sender_id {
        Some(sender) if sender == reporter => Err(AppError::unprocessable(
            "cannot_report_self",
            "you cannot report your own message",
        )),
        Some(_) => Ok(m),
        None => Err(AppError::not_found("message")),
    }
}

/// Content security flagged the image of a chat message: the image is hidden from both participants.
pub async fn hide_flagged_image(db: &DatabaseConnection, message_id: i64) -> AppResult<()> {
    message::Entity::update_many()
        .col_expr(
            message::Column::ModerationLabel,
            Expr::value(Some("image_flagged".to_string())),
        )
        .filter(message::Column::Id.eq(message_id))
        .filter(message::Column::Kind.eq(MessageKind::Image))
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        let s = stmt(
            DbBackend::Postgres,
            "a = ? AND b = ?",
            vec![1.into(), 2.into()],
        );
        assert_eq!(s.sql, "a = $1 AND b = $2");
        let s = stmt(DbBackend::Sqlite, "a = ?", vec![1.into()]);
        assert_eq!(s.sql, "a = ?");
    }

    #[test]
    fn reminder_fields_fit_wechat_rules() {
        let at = DateTime::parse_from_rfc3339("2026-11-24T14:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = reminder(
            "tmpl",
            7,
            42,
            "一个名字非常非常非常非常非常非常长的同学",
            "第一行\n第二行   很多空格",
            "",
            at,
        );
        assert_eq!(r.page.as_deref(), Some("pages/chat/conversation?id=42"));
        assert_eq!(
            r.data["thing1"]["value"].as_str().unwrap().chars().count(),
            20
        );
        assert_eq!(r.data["thing2"]["value"], "第一行 第二行 很多空格");
        assert_eq!(r.data["thing3"]["value"], "商品");
        assert_eq!(r.data["time4"]["value"], "2026-11-24 22:05", "Beijing time");
    }

    #[test]
    fn previews() {
        assert_eq!(preview(MessageKind::Image, "", None), "[图片]");
        assert_eq!(preview(MessageKind::Offer, "", Some(1250)), "[出价] ¥12.50");
        assert_eq!(preview(MessageKind::Text, "hi", None), "hi");
    }
}
