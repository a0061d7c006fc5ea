//! Two server processes on one PostgreSQL schema and one Redis: the buyer's socket on instance A, the seller's on
//! instance B. Messages travel both ways through Redis pub/sub, and killing an instance (SIGKILL, no goodbye)
//! loses no message it acknowledged.
//!
//! Runs when `TEST_DATABASE_URL` and `TEST_REDIS_URL` are set (CI sets both); otherwise it prints a note and
//! passes. It uses a PostgreSQL schema and a Redis key prefix of its own and removes both afterwards.
//!
//! Both instances run in sandbox mode, each with its own fake WeChat. Sandbox login codes are self-describing
//! (`<who>-<nonce>` always gives the openid derived from `<who>`), and sessions live in Redis, so a login made on
//! one instance is good on the other.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

const BIN: &str = env!("CARGO_BIN_EXE_campus-trade");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running instance; killed when dropped.
struct Instance {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Instance {
    fn start(db_url: &str, schema: &str, redis_url: &str, prefix: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", dir.path())
            .env("DATABASE_URL", db_url)
            .env("DATABASE_SCHEMA", schema)
            .env("DATABASE_MAX_CONNECTIONS", "5")
            .env("REDIS_URL", redis_url)
            .env("REDIS_KEY_PREFIX", prefix)
            .env("LOG_LEVEL", "warn")
            .env("SHUTDOWN_GRACE_SECONDS", "1")
            .env("CHAT_SEND_BURST", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn ready(&self, http: &reqwest::Client) {
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} did not become ready",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Drops the schema and the Redis keys, even when the test panicked.
struct Cleanup {
    db_url: String,
    schema: String,
    redis_url: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (db_url, schema, redis_url, prefix) = (
            self.db_url.clone(),
            self.schema.clone(),
            self.redis_url.clone(),
            self.prefix.clone(),
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sea_orm::ConnectionTrait;
                if let Ok(db) = sea_orm::Database::connect(db_url).await {
                    let _ = db
                        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                    let _ = db.close().await;
                }
                if let Ok(client) = redis::Client::open(redis_url)
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            });
        })
        .join();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, token: &str) -> Socket {
    let mut req = format!("{}/api/v1/ws", base.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let ready = next_of(&mut ws, "ready").await;
    assert!(ready["user_id"].as_i64().is_some());
    ws
}

async fn next_of(ws: &mut Socket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame within 10 s"))
            .expect("socket open")
            .expect("socket healthy");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

async fn say(ws: &mut Socket, conv: i64, cid: &str, text: &str) -> i64 {
    let frame = json!({
        "type": "send", "conversation_id": conv, "client_msg_id": cid, "kind": "text", "body": { "text": text },
    });
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no ack for {cid} within 10 s"))
            .expect("socket open")
            .expect("socket healthy");
        let Message::Text(t) = msg else { continue };
        let f: Value = serde_json::from_str(t.as_str()).unwrap();
        if f["client_msg_id"] == cid {
            assert_eq!(f["type"], "ack", "sending {cid}: {f}");
            return f["message"]["id"].as_i64().unwrap();
        }
    }
}

async fn login(http: &reqwest::Client, base: &str, code: &str) -> (String, i64) {
    let body: Value = http
        .post(format!("{base}/api/v1/auth/wechat-login"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        body["token"].as_str().expect("token").to_string(),
        body["user"]["id"].as_i64().unwrap(),
    )
}

/// Alice (on `base`) publishes a listing of the demo school; returns its id.
async fn publish(http: &reqwest::Client, base: &str, token: &str) -> i64 {
    let get = |path: String| {
        let http = http.clone();
        async move {
            http.get(path)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let schools = get(format!("{base}/api/v1/schools")).await;
    let school = &schools[0];
    let campus = school["campuses"][0]["id"].as_i64().unwrap();
    let places = get(format!("{base}/api/v1/campuses/{campus}/places")).await;
    let cats = get(format!("{base}/api/v1/categories")).await;
    let r = http
        .patch(format!("{base}/api/v1/me"))
        .bearer_auth(token)
        .json(&json!({ "school_id": school["id"], "campus_id": campus }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 9, 60]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    const B: &str = "----clusterTestBoundary";
    let mut body = format!(
        "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&png.into_inner());
    body.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
    let up: Value = http
        .post(format!("{base}/api/v1/images"))
        .bearer_auth(token)
        .header("content-type", format!("multipart/form-data; boundary={B}"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listing: Value = http
        .post(format!("{base}/api/v1/listings"))
        .bearer_auth(token)
        .json(&json!({
            "title": "宿舍小冰箱", "description": "制冷正常", "price": 20000, "condition": "good",
            "category_id": cats[0]["children"][0]["id"], "image_ids": [up["id"]], "trade_methods": ["meetup"],
            "meetup_place_ids": [places[0]["id"]], "campus_id": campus,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listing["id"].as_i64().expect("listing published")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_chat_through_redis_and_a_killed_one_loses_nothing() {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (Some(db_url), Some(redis_url)) = (env("TEST_DATABASE_URL"), env("TEST_REDIS_URL")) else {
        eprintln!(
            "note: two_instances_share_chat_through_redis... skipped: set TEST_DATABASE_URL and TEST_REDIS_URL to run it"
        );
        return;
    };
    let tag = format!("{}_{:08x}", std::process::id(), rand::random::<u32>());
    let schema = format!("cluster_{tag}");
    let prefix = format!("ct_cluster_{tag}:");
    let _cleanup = Cleanup {
        db_url: db_url.clone(),
        schema: schema.clone(),
        redis_url: redis_url.clone(),
        prefix: prefix.clone(),
    };
    let http = reqwest::Client::new();
    // A first, alone, migrates; then B starts on the same schema.
    let a = Instance::start(&db_url, &schema, &redis_url, &prefix);
    a.ready(&http).await;
    let mut b = Instance::start(&db_url, &schema, &redis_url, &prefix);
    b.ready(&http).await;

    // Logins on either instance are good on both.
    let (alice, alice_id) = login(&http, &a.base, "alice-1").await;
    let (bob, bob_id) = login(&http, &b.base, "bob-1").await;
    let (_, alice_again_id) = login(&http, &b.base, "alice-2").await;
    assert_eq!(
        alice_again_id, alice_id,
        "the same sandbox user on both instances"
    );
    let me: Value = http
        .get(format!("{}/api/v1/me", b.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], alice_id, "a session made on A works on B");

    let listing = publish(&http, &a.base, &alice).await;
    let conv: Value = http
        .post(format!("{}/api/v1/conversations", b.base))
        .bearer_auth(&bob)
        .json(&json!({ "listing_id": listing }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv = conv["id"].as_i64().unwrap();

    // The buyer on A, the seller on B.
    let mut bob_on_a = connect(&a.base, &bob).await;
    let mut alice_on_b = connect(&b.base, &alice).await;

    let m1 = say(&mut bob_on_a, conv, "b1", "冰箱还在吗？").await;
    let got = next_of(&mut alice_on_b, "message").await;
    assert_eq!(got["message"]["id"], m1, "A → Redis → B");
    assert_eq!(got["message"]["sender_id"], bob_id);
    let m2 = say(&mut alice_on_b, conv, "a1", "在的").await;
    let got = next_of(&mut bob_on_a, "message").await;
    assert_eq!(got["message"]["id"], m2, "B → Redis → A");
    // Read receipts and typing cross too.
    bob_on_a
        .send(Message::text(
            json!({ "type": "read", "conversation_id": conv, "up_to": m2 }).to_string(),
        ))
        .await
        .unwrap();
    let r = next_of(&mut alice_on_b, "read").await;
    assert_eq!(
        (r["user_id"].as_i64(), r["up_to"].as_i64()),
        (Some(bob_id), Some(m2))
    );

    // Alice sends a burst through B, and B is killed right after the last acknowledgement.
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(
            say(
                &mut alice_on_b,
                conv,
                &format!("burst-{i}"),
                &format!("第{i}条"),
            )
            .await,
        );
    }
    b.kill();
    // Meanwhile Bob keeps writing through A.
    let mut while_down = Vec::new();
    for i in 0..3 {
        while_down.push(say(&mut bob_on_a, conv, &format!("down-{i}"), "你掉线了吗").await);
    }

    // Every message B acknowledged is stored (B published it to Redis, or not yet: Bob's sync finds it anyway).
    bob_on_a
        .send(Message::text(
            json!({ "type": "sync", "since": m2 }).to_string(),
        ))
        .await
        .unwrap();
    let sync = next_of(&mut bob_on_a, "sync").await;
    let synced: Vec<i64> = sync["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    for id in &acked {
        assert!(
            synced.contains(id),
            "acknowledged message {id} survived the kill"
        );
    }

    // Alice reconnects to A (her client retries) and catches up on what was written while B was down.
    let mut alice_on_a = connect(&a.base, &alice).await;
    let last_seen = *acked.last().unwrap();
    alice_on_a
        .send(Message::text(
            json!({ "type": "sync", "since": last_seen }).to_string(),
        ))
        .await
        .unwrap();
    let sync = next_of(&mut alice_on_a, "sync").await;
    let newer: Vec<i64> = sync["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .filter(|id| *id > last_seen)
        .collect();
    assert_eq!(newer, while_down);

    // The history through A has everything, once, in order.
    let page: Value = http
        .get(format!(
            "{}/api/v1/conversations/{conv}/messages?limit=100",
            a.base
        ))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let mut expected = vec![m1, m2];
    expected.extend(&acked);
    expected.extend(&while_down);
    assert_eq!(history, expected);
}
