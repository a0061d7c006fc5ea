//! HTTP endpoints of chat: conversations, history, read marks, offers, and a REST send for clients without an
//! open socket. Handlers parse, authorise, call [`super::service`] and shape the response. The views here are
//! also what the WebSocket sends (`docs/chat-protocol.md`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
    types::ToJSON,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    cards,
    model::{MessageKind, OfferAction, OfferStatus, conversation, message, offer},
    service::{self, Content, Page, Role},
};
use crate::{
    auth::StudentAuth,
    error::{AppError, AppResult},
    images::{
        api::{ImageRef, image_ref},
        model::image,
    },
    listings::model::{Status as ListingStatus, listing},
    state::AppState,
    users::model::user,
};

#[derive(Tags)]
enum ChatTags {
    /// Buyer–seller conversations (the real-time side is the WebSocket `GET /api/v1/ws`).
    Chat,
}

/// An offer: a price the buyer proposed.
#[derive(Debug, Clone, Object)]
pub struct OfferView {
    pub id: i64,
    pub conversation_id: i64,
    pub listing_id: i64,
    pub buyer_id: i64,
    /// Fen.
    pub price: i64,
    pub status: OfferStatus,
    pub created_at: DateTime<Utc>,
    /// When it stopped being pending.
    #[oai(skip_serializing_if_is_none)]
    pub decided_at: Option<DateTime<Utc>>,
}

/// What a system card is about.
#[derive(Debug, Clone, Object)]
pub struct CardView {
    /// `listing_reserved`, `listing_on_sale`, `listing_sold`, `listing_price_changed`, `offer_accepted`,
    /// `offer_declined`, `offer_withdrawn`, `contact_warning`, or an order event (`order_created`, …).
    pub kind: String,
    /// The order the card is about.
    #[oai(skip_serializing_if_is_none)]
    pub order_id: Option<i64>,
}

/// One message of a conversation.
#[derive(Debug, Clone, Object)]
pub struct MessageView {
    /// Orders the conversation: larger is later.
    pub id: i64,
    pub conversation_id: i64,
    /// Absent for system cards.
    #[oai(skip_serializing_if_is_none)]
    pub sender_id: Option<i64>,
    pub kind: MessageKind,
    /// The text of a `text` message or of a card. Plain text: never render links in it as clickable.
    #[oai(skip_serializing_if_is_none)]
    pub text: Option<String>,
    /// The photo of an `image` message (absent once content security hid it).
    #[oai(skip_serializing_if_is_none)]
    pub image: Option<ImageRef>,
    /// The offer of an `offer` message, or the offer a card is about, with its status now.
    #[oai(skip_serializing_if_is_none)]
    pub offer: Option<OfferView>,
    /// For `system` messages.
    #[oai(skip_serializing_if_is_none)]
    pub card: Option<CardView>,
    /// The sender's id for the message (resending it returns this message).
    #[oai(skip_serializing_if_is_none)]
    pub client_msg_id: Option<String>,
    /// Kinds of contact details found in the text (`phone`, `wechat`, `qq`, `link`).
    pub contact_kinds: Vec<String>,
    /// Content security removed the content (a flagged image).
    pub hidden: bool,
    pub created_at: DateTime<Utc>,
}

/// The listing a conversation is about.
#[derive(Debug, Clone, Object)]
pub struct ListingSummary {
    pub id: i64,
    pub title: String,
    /// Fen.
    pub price: i64,
    pub status: ListingStatus,
    pub cover: Option<ImageRef>,
}

/// The other participant.
#[derive(Debug, Clone, Object)]
pub struct UserSummary {
    pub id: i64,
    pub nickname: String,
    pub avatar_url: Option<String>,
}

/// A conversation as its participant sees it.
#[derive(Debug, Clone, Object)]
pub struct ConversationView {
    pub id: i64,
    pub listing: ListingSummary,
    /// The caller's side.
    pub role: Role,
    pub other: UserSummary,
    pub last_message: Option<MessageView>,
    /// Messages the caller has not read.
    pub unread: i64,
    /// The caller has read up to this message id.
    pub read_up_to: i64,
    /// The other participant has read up to this message id (read receipts).
    pub other_read_up_to: i64,
    pub last_activity_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A page of conversations, newest activity first.
#[derive(Debug, Object)]
pub struct ConversationPage {
    pub items: Vec<ConversationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page of messages in ascending id order.
#[derive(Debug, Object)]
pub struct MessagePage {
    pub items: Vec<MessageView>,
    /// More messages exist in the direction asked for (older for `before` and the latest page, newer for
    /// `after`).
    pub has_more: bool,
}

/// Open a conversation.
#[derive(Debug, Object)]
pub struct OpenConversation {
    pub listing_id: i64,
}

/// Mark read.
#[derive(Debug, Object)]
pub struct ReadBody {
    /// The newest message id the caller has seen (clipped to the conversation's newest).
    pub up_to: i64,
}

/// The caller's read mark.
#[derive(Debug, Object)]
pub struct ReadState {
    pub conversation_id: i64,
    pub up_to: i64,
    /// Messages still unread in this conversation.
    pub unread: i64,
}

/// Unread messages across all conversations.
#[derive(Debug, Object)]
pub struct UnreadTotal {
    pub unread: i64,
}

/// A message to send (the REST twin of the socket's `send` frame).
#[derive(Debug, Object)]
pub struct SendMessage {
    /// The client's own id for this message, 1–64 printable ASCII characters; sending the same id again returns
    /// the stored message instead of storing another.
    pub client_msg_id: String,
    /// `text`, `image` or `offer`.
    pub kind: MessageKind,
    /// For `text`: 1–1000 characters.
    pub text: Option<String>,
    /// For `image`: an image id from `POST /api/v1/images`, not used elsewhere.
    pub image_id: Option<i64>,
    /// For `offer` (buyers only): the price in fen.
    pub price: Option<i64>,
}

#[derive(ApiResponse)]
enum OpenedResponse {
    /// The conversation existed already.
    #[oai(status = 200)]
    Existing(Json<ConversationView>),
    /// The conversation was opened now.
    #[oai(status = 201)]
    Created(Json<ConversationView>),
}

#[derive(ApiResponse)]
enum SentResponse {
    /// A message with this `client_msg_id` was stored before; this is it.
    #[oai(status = 200)]
    Existing(Json<MessageView>),
    /// Stored and pushed to the participants' sockets.
    #[oai(status = 201)]
    Created(Json<MessageView>),
}

/// The JSON of an API object (for socket frames).
pub fn json_of<T: ToJSON>(v: &T) -> serde_json::Value {
    v.to_json().unwrap_or(serde_json::Value::Null)
}

pub fn offer_view(o: &offer::Model) -> OfferView {
    OfferView {
        id: o.id,
        conversation_id: o.conversation_id,
        listing_id: o.listing_id,
        buyer_id: o.buyer_id,
        price: o.price,
        status: o.status,
        created_at: o.created_at,
        decided_at: o.decided_at,
    }
}

/// A message with the image and offer it refers to (when the caller has them).
pub fn message_view(
    state: &AppState,
    m: &message::Model,
    image: Option<&image::Model>,
    offer: Option<&offer::Model>,
) -> MessageView {
    let hidden = m.moderation_label.as_deref() == Some("image_flagged");
    MessageView {
        id: m.id,
        conversation_id: m.conversation_id,
        sender_id: m.sender_id,
        kind: m.kind,
        text: matches!(m.kind, MessageKind::Text | MessageKind::System).then(|| m.body.clone()),
        image: if hidden {
            None
        } else {
            image.map(|i| image_ref(state, i))
        },
        offer: offer.map(offer_view),
        card: (m.kind == MessageKind::System).then(|| CardView {
            kind: m.card_kind.clone().unwrap_or_default(),
            order_id: m.order_id,
        }),
        client_msg_id: m.client_msg_id.clone(),
        contact_kinds: m
            .contact_kinds
            .as_deref()
            .map(|k| k.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        hidden,
        created_at: m.created_at,
    }
}

/// Views of stored messages (their images and offers fetched in two queries).
pub async fn message_views(
    state: &AppState,
    messages: &[message::Model],
) -> AppResult<Vec<MessageView>> {
    let (images, offers) = service::attachments_of(&state.db, messages).await?;
    Ok(messages
        .iter()
        .map(|m| {
            message_view(
                state,
                m,
                m.image_id.and_then(|id| images.get(&id)),
                m.offer_id.and_then(|id| offers.get(&id)),
            )
        })
        .collect())
}

/// Views of conversations for `user_id`, with listings, covers, the other participants, last messages and
/// unread counts fetched in a handful of queries for the whole page.
pub async fn conversation_views(
    state: &AppState,
    user_id: i64,
    rows: Vec<conversation::Model>,
) -> AppResult<Vec<ConversationView>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let db = &state.db;
    let listing_ids: Vec<i64> = rows.iter().map(|c| c.listing_id).collect();
    let listings: HashMap<i64, listing::Model> = listing::Entity::find()
        .filter(listing::Column::Id.is_in(listing_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    let cover_ids: Vec<i64> = listings.values().filter_map(|l| l.cover_image_id).collect();
    let covers: HashMap<i64, image::Model> = if cover_ids.is_empty() {
        HashMap::new()
    } else {
        image::Entity::find()
            .filter(image::Column::Id.is_in(cover_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|i| (i.id, i))
            .collect()
    };
    let other_ids: Vec<i64> = rows.iter().map(|c| c.other(user_id)).collect();
    let others: HashMap<i64, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(other_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    // The newest message each participant may see: the conversation's last one, unless it is a card meant for
    // the other participant (then the newest before it).
    let last_ids: Vec<i64> = rows.iter().filter_map(|c| c.last_message_id).collect();
    let mut lasts: HashMap<i64, message::Model> = if last_ids.is_empty() {
        HashMap::new()
    } else {
        message::Entity::find()
            .filter(message::Column::Id.is_in(last_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|m| (m.conversation_id, m))
            .collect()
    };
    for c in &rows {
        if lasts.get(&c.id).is_some_and(|m| !m.visible_for(user_id)) {
            let (mut page, _) = service::history(db, user_id, c.id, Page::Latest, Some(1)).await?;
            match page.pop() {
                Some(m) => lasts.insert(c.id, m),
                None => lasts.remove(&c.id),
            };
        }
    }
    let last_rows: Vec<message::Model> = lasts.values().cloned().collect();
    let last_views: HashMap<i64, MessageView> = message_views(state, &last_rows)
        .await?
        .into_iter()
        .map(|v| (v.conversation_id, v))
        .collect();
    let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
    let unread = service::unread_counts(db, user_id, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|c| {
            let l = listings.get(&c.listing_id);
            let other_id = c.other(user_id);
            let other = others.get(&other_id);
            ConversationView {
                id: c.id,
                listing: ListingSummary {
                    id: c.listing_id,
                    title: l.map(|l| l.title.clone()).unwrap_or_default(),
                    price: l.map_or(0, |l| l.price),
                    status: l.map_or(ListingStatus::Deleted, |l| l.status),
                    cover: l
                        .filter(|l| l.status != ListingStatus::Deleted)
                        .and_then(|l| l.cover_image_id)
                        .and_then(|id| covers.get(&id))
                        .map(|i| image_ref(state, i)),
                },
                role: Role::of(&c, user_id).unwrap_or(Role::Buyer),
                other: UserSummary {
                    id: other_id,
                    nickname: other.map(|u| u.nickname.clone()).unwrap_or_default(),
                    avatar_url: other.and_then(|u| u.avatar_url.clone()),
                },
                last_message: last_views.get(&c.id).cloned(),
                unread: unread.get(&c.id).copied().unwrap_or(0),
                read_up_to: c.last_read_of(user_id),
                other_read_up_to: c.last_read_of(other_id),
                last_activity_at: c.last_activity_at,
                created_at: c.created_at,
            }
        })
        .collect())
}

async fn one_view(
    state: &AppState,
    user_id: i64,
    c: conversation::Model,
) -> AppResult<ConversationView> {
    conversation_views(state, user_id, vec![c])
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("conversation"))
}

/// The content of a REST send.
fn content_of(b: &SendMessage) -> AppResult<Content> {
    let missing = |field: &str, kind: &str| {
        AppError::invalid_field(field, format!("is required for a message of kind {kind}"))
    };
    match b.kind {
        MessageKind::Text => Ok(Content::Text(
            b.text.clone().ok_or_else(|| missing("text", "text"))?,
        )),
        MessageKind::Image => Ok(Content::Image(
            b.image_id.ok_or_else(|| missing("image_id", "image"))?,
        )),
        MessageKind::Offer => Ok(Content::Offer(
            b.price.ok_or_else(|| missing("price", "offer"))?,
        )),
        MessageKind::System => Err(AppError::invalid_field(
            "kind",
            "must be text, image or offer (system cards are written by the service)",
        )),
    }
}

/// Buyer–seller conversations.
pub struct ChatApi;

#[OpenApi]
impl ChatApi {
    /// Open the conversation with the seller of a listing, as its buyer (or get it, when it exists: 200
    /// instead of 201). 409 `listing_not_available` when a new one is asked for a listing that is not on sale;
    /// 422 `cannot_chat_with_self` for your own listing; 403 `blocked_by_user` / `user_blocked` across a block.
    #[oai(
        path = "/v1/conversations",
        method = "post",
        tag = "ChatTags::Chat",
        operation_id = "open_conversation"
    )]
    async fn open(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        body: Json<OpenConversation>,
    ) -> AppResult<OpenedResponse> {
        let opened = service::open(&state, &auth.0.user, body.0.listing_id).await?;
        let view = one_view(&state, auth.0.id(), opened.conversation).await?;
        Ok(if opened.created {
            OpenedResponse::Created(Json(view))
        } else {
            OpenedResponse::Existing(Json(view))
        })
    }

    /// Your conversations, newest activity first, each with the listing, the other participant, the last
    /// message and the unread count.
    #[oai(
        path = "/v1/conversations",
        method = "get",
        tag = "ChatTags::Chat",
        operation_id = "list_conversations"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        /// From the previous page's `next_cursor`.
        cursor: Query<Option<String>>,
        /// 1–50, default 20.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<ConversationPage>> {
        let (rows, next_cursor) =
            service::list(&state.db, auth.0.id(), cursor.0.as_deref(), limit.0).await?;
        Ok(Json(ConversationPage {
            items: conversation_views(&state, auth.0.id(), rows).await?,
            next_cursor,
        }))
    }

    /// Unread messages across all your conversations (the badge of the chat tab).
    #[oai(
        path = "/v1/conversations/unread",
        method = "get",
        tag = "ChatTags::Chat",
        operation_id = "chat_unread_total"
    )]
    async fn unread(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
    ) -> AppResult<Json<UnreadTotal>> {
        Ok(Json(UnreadTotal {
            unread: service::unread_total(&state.db, auth.0.id()).await?,
        }))
    }

    /// One of your conversations (404 for anybody else's).
    #[oai(
        path = "/v1/conversations/:id",
        method = "get",
        tag = "ChatTags::Chat",
        operation_id = "get_conversation"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<ConversationView>> {
        let c = service::participant_of(&state.db, id.0, auth.0.id()).await?;
        Ok(Json(one_view(&state, auth.0.id(), c).await?))
    }

    /// A page of the history, in ascending id order: the latest messages, or those `before` an id (paging
    /// backwards), or those `after` an id (catching up). Give at most one of the two.
    #[oai(
        path = "/v1/conversations/:id/messages",
        method = "get",
        tag = "ChatTags::Chat",
        operation_id = "list_messages"
    )]
    async fn messages(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        /// Only messages with a smaller id.
        before: Query<Option<i64>>,
        /// Only messages with a larger id.
        after: Query<Option<i64>>,
        /// 1–100, default 30.
        limit: Query<Option<u64>>,
    ) -> AppResult<Json<MessagePage>> {
        let page = match (before.0, after.0) {
            (None, None) => Page::Latest,
            (Some(b), None) => Page::Before(b),
            (None, Some(a)) => Page::After(a),
            (Some(_), Some(_)) => {
                return Err(AppError::invalid_field(
                    "before",
                    "give either before or after, not both",
                ));
            }
        };
        let (rows, has_more) =
            service::history(&state.db, auth.0.id(), id.0, page, limit.0).await?;
        Ok(Json(MessagePage {
            items: message_views(&state, &rows).await?,
            has_more,
        }))
    }

    /// Send a message without a socket (the socket's `send` frame does the same). Stored before the answer;
    /// the same `client_msg_id` again returns the stored message (200) instead of storing another (201).
    #[oai(
        path = "/v1/conversations/:id/messages",
        method = "post",
        tag = "ChatTags::Chat",
        operation_id = "send_message"
    )]
    async fn send(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<SendMessage>,
    ) -> AppResult<SentResponse> {
        let content = content_of(&body.0)?;
        let sent =
            service::send(&state, &auth.0.user, id.0, &body.0.client_msg_id, content).await?;
        let view = message_view(
            &state,
            &sent.message,
            sent.image.as_ref(),
            sent.offer.as_ref(),
        );
        let duplicate = sent.duplicate;
        cards::deliver(&state, sent.delivery);
        Ok(if duplicate {
            SentResponse::Existing(Json(view))
        } else {
            SentResponse::Created(Json(view))
        })
    }

    /// Mark the conversation read up to a message; the other participant's sockets get a `read` event (read
    /// receipt). A mark never moves back.
    #[oai(
        path = "/v1/conversations/:id/read",
        method = "post",
        tag = "ChatTags::Chat",
        operation_id = "mark_conversation_read"
    )]
    async fn read(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
        body: Json<ReadBody>,
    ) -> AppResult<Json<ReadState>> {
        let mark = service::mark_read(&state.db, auth.0.id(), id.0, body.0.up_to).await?;
        cards::deliver(&state, mark.delivery);
        Ok(Json(ReadState {
            conversation_id: mark.conversation_id,
            up_to: mark.up_to,
            unread: mark.unread,
        }))
    }

    /// Accept a pending offer (seller only). An order of the buyer for this listing may then use its price.
    #[oai(
        path = "/v1/offers/:id/accept",
        method = "post",
        tag = "ChatTags::Chat",
        operation_id = "accept_offer"
    )]
    async fn accept(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<OfferView>> {
        decide(&state, &auth, id.0, OfferAction::Accept).await
    }

    /// Decline a pending offer (seller only).
    #[oai(
        path = "/v1/offers/:id/decline",
        method = "post",
        tag = "ChatTags::Chat",
        operation_id = "decline_offer"
    )]
    async fn decline(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<OfferView>> {
        decide(&state, &auth, id.0, OfferAction::Decline).await
    }

    /// Withdraw your pending offer (buyer only).
    #[oai(
        path = "/v1/offers/:id/withdraw",
        method = "post",
        tag = "ChatTags::Chat",
        operation_id = "withdraw_offer"
    )]
    async fn withdraw(
        &self,
        state: Data<&AppState>,
        auth: StudentAuth,
        id: Path<i64>,
    ) -> AppResult<Json<OfferView>> {
        decide(&state, &auth, id.0, OfferAction::Withdraw).await
    }
}

async fn decide(
    state: &AppState,
    auth: &StudentAuth,
    offer_id: i64,
    action: OfferAction,
) -> AppResult<Json<OfferView>> {
    let decided = service::decide_offer(state, &auth.0.user, offer_id, action).await?;
    let view = offer_view(&decided.offer);
    cards::deliver(state, decided.delivery);
    Ok(Json(view))
}
