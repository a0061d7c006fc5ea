//! The chat benchmark behind `loadgen chat-idle` and `loadgen chat` (see `tests/bench/chat.sh`). It talks to
//! running servers only through their public HTTP and WebSocket API, like the Mini Program, so the same run
//! measures one instance or two instances sharing PostgreSQL and Redis (`--base2`).
//!
//! - `chat-idle`: logs in N sandbox students and holds one socket open for each (answering heartbeats) while the
//!   script reads the server's resident memory.
//! - `chat`: `pairs` buyer–seller conversations, both sides connected (the seller to `--base2` when given), and
//!   an open-loop sender on every socket so that `rate` text messages per second in total go out, each to the
//!   other side of its conversation. The send time travels in the `client_msg_id`, so each receiver measures
//!   send → receive latency on the same clock; acks, errors and what never arrived are counted.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

/// A small API client for one server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// A logged-in student.
#[derive(Clone, Debug)]
pub struct Who {
    pub token: String,
    pub id: i64,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn answer(resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Self::answer(req.send().await?)
            .await
            .with_context(|| path.to_string())
    }

    /// Logs in as the sandbox user `who` (lower-case letters, digits, `_`).
    pub async fn login(&self, who: &str) -> anyhow::Result<Who> {
        let code = format!("{who}-n{}", rand::random::<u32>());
        let body = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/wechat-login",
                None,
                Some(&json!({ "code": code })),
            )
            .await?;
        Ok(Who {
            token: body["token"].as_str().context("token")?.to_string(),
            id: body["user"]["id"].as_i64().context("user id")?,
        })
    }

    /// Joins the demo school (first campus), as a new student does before selling.
    pub async fn join_demo_school(&self, who: &Who) -> anyhow::Result<()> {
        let schools = self
            .call(reqwest::Method::GET, "/api/v1/schools", None, None)
            .await?;
        let school = schools
            .as_array()
            .and_then(|a| a.iter().find(|s| s["slug"] == "demo-university"))
            .context("the demo school is seeded")?;
        let body = json!({ "school_id": school["id"], "campus_id": school["campuses"][0]["id"] });
        self.call(
            reqwest::Method::PATCH,
            "/api/v1/me",
            Some(&who.token),
            Some(&body),
        )
        .await?;
        Ok(())
    }

    /// Publishes a listing with one photo; returns its id.
    pub async fn sell(&self, who: &Who, title: &str, category_id: &Value) -> anyhow::Result<i64> {
        let img = image::RgbImage::from_fn(24, 24, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 10) as u8, 90])
        });
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png)?;
        const BOUNDARY: &str = "----campusTradeBenchBoundary";
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"item.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&png.into_inner());
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let up = Self::answer(
            self.http
                .post(format!("{}/api/v1/images", self.base))
                .bearer_auth(&who.token)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(body)
                .send()
                .await?,
        )
        .await
        .context("image upload")?;
        let listing = json!({
            "title": title, "description": "宿舍自用，成色不错，可以小刀", "price": 3000, "condition": "good",
            "category_id": category_id, "image_ids": [up["id"]], "trade_methods": ["meetup"],
        });
        let created = self
            .call(
                reqwest::Method::POST,
                "/api/v1/listings",
                Some(&who.token),
                Some(&listing),
            )
            .await?;
        if created["status"] != "on_sale" {
            bail!(
                "the listing was published as {}: {created}",
                created["status"]
            );
        }
        created["id"].as_i64().context("listing id")
    }

    /// A leaf category to sell in.
    pub async fn some_category(&self) -> anyhow::Result<Value> {
        let cats = self
            .call(reqwest::Method::GET, "/api/v1/categories", None, None)
            .await?;
        cats.as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["children"].as_array().into_iter().flatten())
            .find(|c| c["slug"] == "lamps")
            .map(|c| c["id"].clone())
            .context("the lamps category is seeded")
    }

    fn ws_url(&self) -> String {
        format!("{}/api/v1/ws", self.base.replacen("http://", "ws://", 1))
    }
}

type Sock =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(api: &Api, token: &str) -> anyhow::Result<Sock> {
    let mut req = api.ws_url().into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut s, _) = tokio_tungstenite::connect_async(req).await?;
    // The `ready` frame.
    match tokio::time::timeout(Duration::from_secs(30), s.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"ready\"") => Ok(s),
        other => bail!("no ready frame: {other:?}"),
    }
}

/// Logs in `n` students named `{prefix}{i}` with `concurrency` requests in flight.
pub async fn login_many(
    api: &Api,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Who>> {
    let results: Vec<anyhow::Result<Who>> = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let who = format!("{prefix}{i}");
            async move { api.login(&who).await }
        })
        .buffered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// What `chat-idle` measured.
pub struct IdleResult {
    pub connected: usize,
    pub failed: usize,
    pub login_seconds: f64,
    pub connect_seconds: f64,
}

/// Logs in `sockets` students, connects one socket each and keeps them all open (reading, so heartbeats are
/// answered) until `hold` has passed; `on_connected` runs once all are up (the script reads RSS then).
pub async fn run_idle(
    base: &str,
    sockets: usize,
    hold: Duration,
    on_connected: impl FnOnce(&IdleResult),
) -> anyhow::Result<IdleResult> {
    let api = Api::new(base);
    let started = Instant::now();
    let users = login_many(&api, "idle_", sockets, 32).await?;
    let login_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let socks: Vec<anyhow::Result<Sock>> = stream::iter(users.iter())
        .map(|u| connect(&api, &u.token))
        .buffer_unordered(64)
        .collect()
        .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let failed = socks.iter().filter(|s| s.is_err()).count();
    if let Some(Err(e)) = socks.iter().find(|s| s.is_err()) {
        eprintln!("first connect failure: {e:#}");
    }
    let closed = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for s in socks.into_iter().flatten() {
        let closed = Arc::clone(&closed);
        readers.push(tokio::spawn(async move {
            let mut s = s;
            // Reading answers the server's pings (tungstenite queues the pong and flushes it on the next read).
            while let Some(m) = s.next().await {
                if m.is_err() || matches!(m, Ok(Message::Close(_))) {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            closed.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let result = IdleResult {
        connected: readers.len(),
        failed,
        login_seconds,
        connect_seconds,
    };
    on_connected(&result);
    tokio::time::sleep(hold).await;
    let closed = closed.load(Ordering::Relaxed);
    if closed > 0 {
        eprintln!("{closed} sockets were closed by the server while idle");
    }
    for r in readers {
        r.abort();
    }
    Ok(IdleResult {
        connected: result.connected - closed as usize,
        ..result
    })
}

/// `chat` settings.
pub struct ChatSpec {
    pub base: String,
    /// Where the sellers connect; `None` = the same server as the buyers.
    pub base2: Option<String>,
    pub pairs: usize,
    /// Messages per second in total (open loop).
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
}

/// What `chat` measured (after the warm-up).
pub struct ChatResult {
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    pub error_codes: HashMap<String, u64>,
    pub seconds: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for ChatResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent={} acked={} delivered={} errors={} {:?} seconds={:.1} sent_per_s={:.0} delivered_per_s={:.0} \
             ack_p50_ms={:.1} ack_p99_ms={:.1} deliver_p50_ms={:.1} p90_ms={:.1} p99_ms={:.1} max_ms={:.1}",
            self.sent,
            self.acked,
            self.delivered,
            self.errors,
            self.error_codes,
            self.seconds,
            self.sent as f64 / self.seconds,
            self.delivered as f64 / self.seconds,
            self.ack_p50_ms,
            self.ack_p99_ms,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
        )
    }
}

#[derive(Default)]
struct Tally {
    delivered: Vec<Duration>,
    acked: Vec<Duration>,
    errors: HashMap<String, u64>,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Sets up `pairs` conversations and drives the message load; see the module docs.
pub async fn run_chat(spec: ChatSpec) -> anyhow::Result<ChatResult> {
    let buyers_api = Api::new(&spec.base);
    let sellers_api = Api::new(spec.base2.as_deref().unwrap_or(&spec.base));
    let run = rand::random::<u16>();
    eprintln!("setting up {} conversations…", spec.pairs);
    let sellers = login_many(&sellers_api, &format!("cs{run}_"), spec.pairs, 16).await?;
    let buyers = login_many(&buyers_api, &format!("cb{run}_"), spec.pairs, 16).await?;
    let category = sellers_api.some_category().await?;
    let convs: Vec<anyhow::Result<i64>> = stream::iter(sellers.iter().zip(&buyers).enumerate())
        .map(|(i, (s, b))| {
            let (sa, ba, category) = (sellers_api.clone(), buyers_api.clone(), category.clone());
            async move {
                sa.join_demo_school(s).await?;
                let listing = sa.sell(s, &format!("台灯 九成新 {i}号"), &category).await?;
                let conv = ba
                    .call(
                        reqwest::Method::POST,
                        "/api/v1/conversations",
                        Some(&b.token),
                        Some(&json!({ "listing_id": listing })),
                    )
                    .await?;
                conv["id"].as_i64().context("conversation id")
            }
        })
        .buffered(8)
        .collect()
        .await;
    let convs: Vec<i64> = convs.into_iter().collect::<anyhow::Result<_>>()?;

    // Both sides of every conversation, each on its own socket.
    let mut ends = Vec::new();
    for (i, conv) in convs.iter().enumerate() {
        ends.push((*conv, buyers_api.clone(), buyers[i].token.clone()));
        ends.push((*conv, sellers_api.clone(), sellers[i].token.clone()));
    }
    let socks: Vec<anyhow::Result<Sock>> = stream::iter(ends.iter())
        .map(|(_, api, token)| connect(api, token))
        .buffered(32)
        .collect()
        .await;
    let socks: Vec<Sock> = socks.into_iter().collect::<anyhow::Result<_>>()?;
    eprintln!(
        "{} sockets connected; sending {:.0} messages/s for {:?} after {:?} warm-up",
        socks.len(),
        spec.rate,
        spec.duration,
        spec.warmup
    );

    let clock = Instant::now();
    let measure_from = spec.warmup;
    let stop_at = spec.warmup + spec.duration;
    let sent = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let per_socket = Duration::from_secs_f64(socks.len() as f64 / spec.rate);
    let mut tasks = Vec::new();
    for (n, (sock, (conv, _, _))) in socks.into_iter().zip(ends.iter()).enumerate() {
        let conv = *conv;
        let (mut tx, mut rx) = sock.split();
        let (sent, tally) = (Arc::clone(&sent), Arc::clone(&tally));
        // Sender: open loop, staggered start so the sockets do not fire together.
        let offset = per_socket.mul_f64(n as f64 / ends.len() as f64);
        let sender = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + offset, per_socket);
            let mut seq = 0u64;
            loop {
                tick.tick().await;
                let at = clock.elapsed();
                if at >= stop_at {
                    break;
                }
                seq += 1;
                // The send time (µs on the shared clock) and the sender travel in the client_msg_id.
                let id = format!("b{}-{n}-{seq}", at.as_micros());
                let frame = json!({
                    "type": "send", "conversation_id": conv, "client_msg_id": id,
                    "kind": "text", "body": { "text": "你好，台灯还在吗？周六下午可以在图书馆门口看看吗" },
                });
                if tx.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                if at >= measure_from {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            tx
        });
        let reader = tokio::spawn(async move {
            let mut local = Tally::default();
            let grace = stop_at + Duration::from_secs(5);
            loop {
                let left = grace.saturating_sub(clock.elapsed());
                let m = match tokio::time::timeout(left, rx.next()).await {
                    Ok(Some(Ok(m))) => m,
                    _ => break,
                };
                let Message::Text(t) = m else { continue };
                let now = clock.elapsed();
                let Ok(f) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                let sent_at = |id: &Value| -> Option<Duration> {
                    let id = id.as_str()?.strip_prefix('b')?;
                    let micros: u64 = id.split('-').next()?.parse().ok()?;
                    Some(Duration::from_micros(micros))
                };
                match f["type"].as_str() {
                    Some("message") => {
                        if let Some(at) = sent_at(&f["message"]["client_msg_id"])
                            && at >= measure_from
                        {
                            local.delivered.push(now.saturating_sub(at));
                        }
                    }
                    Some("ack") => {
                        if let Some(at) = sent_at(&f["client_msg_id"])
                            && at >= measure_from
                        {
                            local.acked.push(now.saturating_sub(at));
                        }
                    }
                    Some("error") => {
                        let code = f["code"].as_str().unwrap_or("?").to_string();
                        *local.errors.entry(code).or_default() += 1;
                    }
                    _ => {}
                }
            }
            let mut t = tally.lock().expect("tally");
            t.delivered.extend(local.delivered);
            t.acked.extend(local.acked);
            for (k, v) in local.errors {
                *t.errors.entry(k).or_default() += v;
            }
            rx
        });
        tasks.push((sender, reader));
    }
    let mut halves = Vec::new();
    for (s, r) in tasks {
        let tx = s.await?;
        let rx = r.await?;
        halves.push((tx, rx));
    }
    drop(halves);
    let mut t = std::mem::take(&mut *tally.lock().expect("tally"));
    t.delivered.sort_unstable();
    t.acked.sort_unstable();

    Ok(ChatResult {
        sent: sent.load(Ordering::Relaxed),
        acked: t.acked.len() as u64,
        delivered: t.delivered.len() as u64,
        errors: t.errors.values().sum(),
        error_codes: t.errors,
        seconds: spec.duration.as_secs_f64(),
        ack_p50_ms: pct(&t.acked, 0.5),
        ack_p99_ms: pct(&t.acked, 0.99),
        p50_ms: pct(&t.delivered, 0.5),
        p90_ms: pct(&t.delivered, 0.9),
        p99_ms: pct(&t.delivered, 0.99),
        max_ms: t.delivered.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}
