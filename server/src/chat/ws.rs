//! The chat socket, `GET /api/v1/ws`: one socket carries every conversation of a user; a user may have several.
//!
//! Authenticated like the API (`Authorization: Bearer <token>`, which `wx.connectSocket` can send in `header`)
//! or with a `token` query parameter. JSON text frames, documented with examples in `docs/chat-protocol.md`.
//!
//! Robustness: a frame larger than [`MAX_FRAME_BYTES`], malformed JSON, an unknown `type` or bad fields get an
//! `error` frame and the socket carries on; frames beyond the per-socket budget get `rate_limited`. The server
//! pings every `CHAT_HEARTBEAT_SECONDS` and drops a socket it has heard nothing from for 2.5 times that (so a
//! dead socket is gone within a minute by default). The session is checked again every
//! [`REVALIDATE_EVERY`], so a logout or a ban closes the socket. A socket that stops reading its frames is closed
//! (1013) rather than allowed to hold memory; at shutdown every socket is closed with 1012 so clients reconnect
//! to another instance.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use poem::{
    IntoResponse, Request, handler,
    web::{
        Data,
        websocket::{CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream},
    },
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    api::{json_of, message_view, message_views},
    cards,
    hub::{KICK_MARKER, SocketId},
    model::{MessageKind, OfferAction},
    service::{self, Content},
};
use crate::{
    auth::extract::authenticate,
    error::{AppError, AppResult},
    state::AppState,
    users::model::user,
};

/// Largest client frame that is processed; larger ones get an `error` frame (`frame_too_large`).
pub const MAX_FRAME_BYTES: usize = 8 * 1024;
/// Frames larger than this close the connection (1009) at the protocol level, before they are buffered.
pub const MAX_WIRE_MESSAGE_BYTES: usize = 64 * 1024;
/// How often the session behind a socket is checked again.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(300);
/// Frames of any kind a socket may send at once, and per second sustained.
const FRAME_BURST: f64 = 60.0;
const FRAMES_PER_SECOND: f64 = 30.0;
/// Typing events per conversation are passed on at most this often.
const TYPING_EVERY: Duration = Duration::from_secs(2);

/// A server frame: `{"type": kind, ...fields}`.
pub fn frame(kind: &str, fields: Value) -> String {
    let mut obj = match fields {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    obj.insert("type".into(), Value::String(kind.into()));
    Value::Object(obj).to_string()
}

pub fn error_frame(code: &str, message: &str, client_msg_id: Option<&str>) -> String {
    let mut fields = json!({ "code": code, "message": message });
    if let Some(id) = client_msg_id {
        fields["client_msg_id"] = id.into();
    }
    frame("error", fields)
}

fn app_error_frame(e: &AppError, client_msg_id: Option<&str>) -> String {
    let message = match e {
        AppError::Internal(cause) => {
            tracing::error!(
                error = format!("{cause:#}"),
                "internal error on a chat socket"
            );
            "internal error".to_string()
        }
        other => {
            let shown = other.to_string();
            shown
                .strip_prefix(&format!("{}: ", other.code()))
                .map_or(shown.clone(), str::to_string)
        }
    };
    let mut fields = json!({ "code": e.code(), "message": message });
    if let Some(id) = client_msg_id {
        fields["client_msg_id"] = id.into();
    }
    match e {
        AppError::RateLimited {
            retry_after_secs, ..
        } => fields["retry_after"] = (*retry_after_secs).into(),
        AppError::InvalidTransition { current, .. } => fields["current_status"] = (*current).into(),
        AppError::Validation(f) => fields["fields"] = json!(f),
        _ => {}
    }
    frame("error", fields)
}

/// `body` of a `send` frame.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    text: Option<String>,
    image_id: Option<i64>,
    price: Option<i64>,
}

/// `action` of an `offer` frame.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OfferVerb {
    Accept,
    Decline,
    Withdraw,
}

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Send {
        conversation_id: i64,
        client_msg_id: String,
        kind: MessageKind,
        body: SendBody,
    },
    Read {
        conversation_id: i64,
        up_to: i64,
    },
    Typing {
        conversation_id: i64,
    },
    Ping {
        #[serde(default)]
        t: Option<Value>,
    },
    Sync {
        since: i64,
        #[serde(default)]
        limit: Option<u64>,
    },
    Offer {
        action: OfferVerb,
        offer_id: i64,
    },
}

const KNOWN_TYPES: [&str; 6] = ["send", "read", "typing", "ping", "sync", "offer"];

/// Parses a client frame; `Err` is the error frame to answer with.
fn parse(text: &str) -> Result<ClientFrame, String> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(error_frame(
            "frame_too_large",
            &format!("frames are limited to {MAX_FRAME_BYTES} bytes"),
            None,
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|_| error_frame("invalid_json", "the frame is not JSON", None))?;
    let client_msg_id = value
        .get("client_msg_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(kind) = value
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(error_frame(
            "invalid_frame",
            "a frame is a JSON object with a string `type`",
            client_msg_id.as_deref(),
        ));
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(error_frame(
            "unknown_type",
            &format!("unknown frame type {kind:?}"),
            client_msg_id.as_deref(),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        error_frame(
            "invalid_frame",
            &format!("invalid {kind} frame: {e}"),
            client_msg_id.as_deref(),
        )
    })
}

/// `GET /api/v1/ws`: authenticates, then upgrades to the chat socket.
#[handler]
pub async fn connect(
    req: &Request,
    ws: poem::Result<WebSocket>,
    state: Data<&AppState>,
) -> poem::Result<impl IntoResponse> {
    let header_token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    let query_token = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    let Some(token) = header_token.or(query_token).filter(|t| !t.is_empty()) else {
        return Err(AppError::unauthorized(
            "a session token is required: `Authorization: Bearer <token>` or `?token=<token>`",
        )
        .into());
    };
    let me = authenticate(&state, &token).await?;
    // Authenticated first, so a client learns about a bad token even when it did not ask to upgrade.
    let ws = ws.map_err(|_| {
        AppError::bad_request(
            "websocket_required",
            "this endpoint speaks WebSocket only (Upgrade: websocket)",
        )
    })?;
    let state = state.clone();
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_WIRE_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WIRE_MESSAGE_BYTES));
    Ok(ws
        .config(config)
        .on_upgrade(move |socket| run(state, me.user, token, socket)))
}

/// One socket's conversation with the server.
struct Session {
    state: AppState,
    user: user::Model,
    socket: SocketId,
    /// Frame budget of this socket.
    tokens: f64,
    refilled: Instant,
    /// Conversations this socket sent `typing` for: the other participant, and when it was last passed on.
    typing: HashMap<i64, (i64, Option<Instant>)>,
}

impl Session {
    fn take_frame(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.refilled).as_secs_f64() * FRAMES_PER_SECOND)
            .min(FRAME_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Handles one text frame; returns the frames to answer this socket with.
    async fn handle(&mut self, text: &str) -> Vec<String> {
        let parsed = parse(text);
        if !matches!(parsed, Ok(ClientFrame::Ping { .. })) && !self.take_frame() {
            return vec![error_frame(
                "rate_limited",
                "too many frames; slow down",
                None,
            )];
        }
        let f = match parsed {
            Ok(f) => f,
            Err(e) => return vec![e],
        };
        match f {
            ClientFrame::Ping { t } => {
                let mut fields = json!({});
                if let Some(t) = t {
                    fields["t"] = t;
                }
                vec![frame("pong", fields)]
            }
            ClientFrame::Send {
                conversation_id,
                client_msg_id,
                kind,
                body,
            } => {
                let content = match (kind, body) {
                    (
                        MessageKind::Text,
                        SendBody {
                            text: Some(t),
                            image_id: None,
                            price: None,
                        },
                    ) => Content::Text(t),
                    (
                        MessageKind::Image,
                        SendBody {
                            text: None,
                            image_id: Some(i),
                            price: None,
                        },
                    ) => Content::Image(i),
                    (
                        MessageKind::Offer,
                        SendBody {
                            text: None,
                            image_id: None,
                            price: Some(p),
                        },
                    ) => Content::Offer(p),
                    (kind, _) => {
                        return vec![error_frame(
                            "invalid_frame",
                            match kind {
                                MessageKind::Text => "a text message has body {\"text\"}",
                                MessageKind::Image => "an image message has body {\"image_id\"}",
                                MessageKind::Offer => "an offer has body {\"price\"} (fen)",
                                MessageKind::System => "system cards are written by the service",
                            },
                            Some(&client_msg_id),
                        )];
                    }
                };
                match service::send(
                    &self.state,
                    &self.user,
                    conversation_id,
                    &client_msg_id,
                    content,
                )
                .await
                {
                    Ok(sent) => {
                        let view = message_view(
                            &self.state,
                            &sent.message,
                            sent.image.as_ref(),
                            sent.offer.as_ref(),
                        );
                        cards::deliver_except(&self.state, sent.delivery, Some(self.socket));
                        vec![frame(
                            "ack",
                            json!({ "client_msg_id": client_msg_id, "message": json_of(&view) }),
                        )]
                    }
                    Err(e) => vec![app_error_frame(&e, Some(&client_msg_id))],
                }
            }
            ClientFrame::Read {
                conversation_id,
                up_to,
            } => match service::mark_read(&self.state.db, self.user.id, conversation_id, up_to)
                .await
            {
                Ok(mark) => {
                    cards::deliver(&self.state, mark.delivery);
                    Vec::new()
                }
                Err(e) => vec![app_error_frame(&e, None)],
            },
            ClientFrame::Typing { conversation_id } => match self.typing(conversation_id).await {
                Ok(()) => Vec::new(),
                Err(e) => vec![app_error_frame(&e, None)],
            },
            ClientFrame::Sync { since, limit } => match self.sync(since, limit).await {
                Ok(f) => vec![f],
                Err(e) => vec![app_error_frame(&e, None)],
            },
            ClientFrame::Offer { action, offer_id } => {
                let action = match action {
                    OfferVerb::Accept => OfferAction::Accept,
                    OfferVerb::Decline => OfferAction::Decline,
                    OfferVerb::Withdraw => OfferAction::Withdraw,
                };
                match service::decide_offer(&self.state, &self.user, offer_id, action).await {
                    Ok(decided) => {
                        cards::deliver(&self.state, decided.delivery);
                        Vec::new()
                    }
                    Err(e) => vec![app_error_frame(&e, None)],
                }
            }
        }
    }

    async fn typing(&mut self, conversation_id: i64) -> AppResult<()> {
        let now = Instant::now();
        let other = match self.typing.get(&conversation_id) {
            Some((_, Some(at))) if now.duration_since(*at) < TYPING_EVERY => return Ok(()),
            Some((other, _)) => *other,
            None => {
                let c =
                    service::participant_of(&self.state.db, conversation_id, self.user.id).await?;
                if self.typing.len() >= 256 {
                    self.typing.clear();
                }
                c.other(self.user.id)
            }
        };
        self.typing.insert(conversation_id, (other, Some(now)));
        let f = frame(
            "typing",
            json!({ "conversation_id": conversation_id, "user_id": self.user.id }),
        );
        self.state.chat.publish(&[other], None, Arc::from(f));
        Ok(())
    }

    async fn sync(&self, since: i64, limit: Option<u64>) -> AppResult<String> {
        let (messages, has_more) =
            service::sync(&self.state.db, self.user.id, since, limit).await?;
        let views = message_views(&self.state, &messages).await?;
        let views: Vec<Value> = views.iter().map(json_of).collect();
        Ok(frame(
            "sync",
            json!({ "messages": views, "has_more": has_more }),
        ))
    }
}

async fn send_text(socket: &mut WebSocketStream, text: String) -> bool {
    socket.send(Message::Text(text)).await.is_ok()
}

/// Runs one socket until it closes.
async fn run(state: AppState, user: user::Model, token: String, mut socket: WebSocketStream) {
    let hub = Arc::clone(&state.chat.hub);
    let user_id = user.id;
    let mut reg = hub.register(user_id);
    if reg.first {
        state.chat.presence.announce(user_id).await;
    }
    let heartbeat = state.config.chat_heartbeat;
    let idle_limit = heartbeat * 5 / 2;
    let mut session = Session {
        state: state.clone(),
        user,
        socket: reg.id,
        tokens: FRAME_BURST,
        refilled: Instant::now(),
        typing: HashMap::new(),
    };
    let unread = service::unread_total(&state.db, user_id).await.unwrap_or(0);
    let ready = frame(
        "ready",
        json!({
            "user_id": user_id,
            "unread": unread,
            "heartbeat_seconds": heartbeat.as_secs(),
            "max_frame_bytes": MAX_FRAME_BYTES,
        }),
    );
    let mut shutdown = hub.shutdown_signal();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    let mut revalidate_at = Instant::now() + REVALIDATE_EVERY;
    let mut open = send_text(&mut socket, ready).await && !*shutdown.borrow();
    while open {
        tokio::select! {
            incoming = socket.next() => {
                let Some(Ok(msg)) = incoming else { break };
                last_heard = Instant::now();
                match msg {
                    Message::Text(text) => {
                        for reply in session.handle(&text).await {
                            if !send_text(&mut socket, reply).await {
                                open = false;
                                break;
                            }
                        }
                    }
                    Message::Binary(_) => {
                        open = send_text(
                            &mut socket,
                            error_frame("unsupported_frame", "only JSON text frames are understood", None),
                        )
                        .await;
                    }
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            out = reg.frames.recv() => match out {
                Some(f) if f.starts_with(KICK_MARKER) => {
                    let _ = send_text(&mut socket, f[KICK_MARKER.len()..].to_string()).await;
                    let _ = socket.send(Message::close_with(CloseCode::Policy, "session ended")).await;
                    break;
                }
                Some(f) => open = send_text(&mut socket, f.to_string()).await,
                None => {
                    let _ = socket
                        .send(Message::close_with(CloseCode::Again, "too slow: reconnect and sync"))
                        .await;
                    break;
                }
            },
            _ = tick.tick() => {
                if last_heard.elapsed() > idle_limit {
                    tracing::debug!(user_id, "chat socket silent too long; dropping it");
                    let _ = socket.send(Message::close_with(CloseCode::Away, "no heartbeat")).await;
                    break;
                }
                if Instant::now() >= revalidate_at {
                    revalidate_at = Instant::now() + REVALIDATE_EVERY;
                    match authenticate(&state, &token).await {
                        Ok(me) => session.user = me.user,
                        Err(e @ (AppError::Unauthorized { .. } | AppError::Forbidden { .. })) => {
                            let _ = send_text(&mut socket, app_error_frame(&e, None)).await;
                            let _ = socket.send(Message::close_with(CloseCode::Policy, "session ended")).await;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not re-check a chat session"),
                    }
                }
                open = socket.send(Message::Ping(Vec::new())).await.is_ok();
            }
            _ = shutdown.changed() => {
                let _ = socket
                    .send(Message::close_with(CloseCode::Restart, "server restarting: reconnect"))
                    .await;
                break;
            }
        }
    }
    hub.unregister(user_id, reg.id);
    if hub.local_count(user_id) == 0 {
        state.chat.presence.withdraw(user_id).await;
        // A socket of the same user may have opened while the withdrawal was on its way.
        if hub.local_count(user_id) > 0 {
            state.chat.presence.announce(user_id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(frame: &str) -> String {
        let v: Value = serde_json::from_str(frame).unwrap();
        assert_eq!(v["type"], "error");
        v["code"].as_str().unwrap().to_string()
    }

    #[test]
    fn frames_are_parsed_or_explained() {
        assert!(matches!(
            parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { .. })
        ));
        assert!(matches!(
            parse(
                r#"{"type":"send","conversation_id":1,"client_msg_id":"a","kind":"text","body":{"text":"hi"}}"#
            ),
            Ok(ClientFrame::Send { .. })
        ));
        assert_eq!(code_of(&parse("not json").unwrap_err()), "invalid_json");
        assert_eq!(code_of(&parse("[1,2]").unwrap_err()), "invalid_frame");
        assert_eq!(
            code_of(&parse(r#"{"type":"dance"}"#).unwrap_err()),
            "unknown_type"
        );
        let bad =
            parse(r#"{"type":"send","client_msg_id":"c9","conversation_id":"x"}"#).unwrap_err();
        assert_eq!(code_of(&bad), "invalid_frame");
        assert!(bad.contains("\"client_msg_id\":\"c9\""), "{bad}");
        let big = format!(r#"{{"type":"ping","t":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
        assert_eq!(code_of(&parse(&big).unwrap_err()), "frame_too_large");
    }

    #[test]
    fn error_frames_carry_the_details_clients_need() {
        let f: Value = serde_json::from_str(&app_error_frame(
            &AppError::RateLimited {
                retry_after_secs: 3,
                message: "slow down".into(),
            },
            Some("c1"),
        ))
        .unwrap();
        assert_eq!(f["code"], "rate_limited");
        assert_eq!(f["retry_after"], 3);
        assert_eq!(f["client_msg_id"], "c1");
        assert_eq!(f["message"], "slow down");
        let f: Value =
            serde_json::from_str(&app_error_frame(&AppError::not_found("conversation"), None))
                .unwrap();
        assert_eq!(f["message"], "conversation not found");
    }
}
