//! A chat socket client for the tests and the chat load generator: connects to `GET /api/v1/ws` like
//! `wx.connectSocket` (bearer header or `?token=`), sends JSON frames and reads the server's frames.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};

/// How long a test waits for a frame before it fails.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// One client socket.
pub struct ChatSocket {
    pub stream: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    /// The `ready` frame the server sent first.
    pub ready: Value,
}

/// How the token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Header,
    Query,
}

/// The WebSocket URL of a server whose HTTP base is `base` (`http://host:port`).
pub fn ws_url(base: &str) -> String {
    format!("{}/api/v1/ws", base.replacen("http://", "ws://", 1))
}

impl ChatSocket {
    /// Connects and waits for the `ready` frame.
    pub async fn connect(base: &str, token: &str, auth: Auth) -> anyhow::Result<Self> {
        let mut url = ws_url(base);
        if auth == Auth::Query {
            url = format!("{url}?token={token}");
        }
        let mut req = url.into_client_request()?;
        if auth == Auth::Header {
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        let mut s = Self {
            stream,
            ready: Value::Null,
        };
        let ready = s.next_frame().await?;
        anyhow::ensure!(ready["type"] == "ready", "first frame was {ready}");
        s.ready = ready;
        Ok(s)
    }

    /// The HTTP status of a refused handshake (e.g. 401 without a session), or `None` if it was accepted.
    pub async fn refused_status(base: &str, token: Option<&str>) -> Option<u16> {
        let mut req = ws_url(base).into_client_request().ok()?;
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().ok()?);
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok(_) => None,
            Err(tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
            Err(_) => Some(0),
        }
    }

    pub async fn send_json(&mut self, v: &Value) -> anyhow::Result<()> {
        self.stream.send(Message::text(v.to_string())).await?;
        Ok(())
    }

    pub async fn send_raw(&mut self, m: Message) -> anyhow::Result<()> {
        self.stream.send(m).await?;
        Ok(())
    }

    /// The next text frame, as JSON (pings are answered and skipped); fails after [`FRAME_TIMEOUT`].
    pub async fn next_frame(&mut self) -> anyhow::Result<Value> {
        self.next_within(FRAME_TIMEOUT)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no frame within {FRAME_TIMEOUT:?}"))
    }

    /// The next text frame within `wait`, or `None`.
    pub async fn next_within(&mut self, wait: Duration) -> anyhow::Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => anyhow::bail!("the socket closed"),
                Ok(Some(m)) => m?,
            };
            match msg {
                Message::Text(t) => return Ok(Some(serde_json::from_str(t.as_str())?)),
                Message::Close(c) => anyhow::bail!("the server closed the socket: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame of type `kind`, skipping others (typing, read, …).
    pub async fn next_of(&mut self, kind: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Some(f) if f["type"] == kind => return Ok(f),
                Some(_) => continue,
                None => anyhow::bail!("no {kind} frame within {FRAME_TIMEOUT:?}"),
            }
        }
    }

    /// The next frame of type `kind` for which `pred` holds, skipping others.
    pub async fn next_where(
        &mut self,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        loop {
            let f = self.next_of(kind).await?;
            if pred(&f) {
                return Ok(f);
            }
        }
    }

    /// Every frame that arrives within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            match self.next_within(left).await? {
                Some(f) => out.push(f),
                None => return Ok(out),
            }
        }
    }

    /// Sends a text message and returns the `ack`'s message (or the `error` frame as `Err`).
    pub async fn say(
        &mut self,
        conversation_id: i64,
        client_msg_id: &str,
        text: &str,
    ) -> anyhow::Result<Value> {
        self.send_json(&serde_json::json!({
            "type": "send", "conversation_id": conversation_id, "client_msg_id": client_msg_id,
            "kind": "text", "body": { "text": text },
        }))
        .await?;
        loop {
            let f = self.next_frame().await?;
            match f["type"].as_str() {
                Some("ack") if f["client_msg_id"] == client_msg_id => {
                    return Ok(f["message"].clone());
                }
                Some("error") if f["client_msg_id"] == client_msg_id => anyhow::bail!("{f}"),
                _ => continue,
            }
        }
    }
}
