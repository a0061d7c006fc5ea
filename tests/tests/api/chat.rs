//! Chat: conversations, the WebSocket with real clients, history, unread counts and read receipts, idempotent
//! sends, privacy, blocks, robustness against bad frames, reconnect + sync, offers, contact warnings, listing
//! cards, and the WeChat reminder for offline receivers (checked in the sandbox).

use std::time::Duration;

use campus_trade::{
    chat::{
        cards,
        model::{conversation, message},
    },
    notifications::outbox::outbox_message,
    wechat::{SANDBOX_TEMPLATE_CHAT_MESSAGE, sandbox::openid_for},
};
use campus_trade_tests::{
    Student, TestApp, app_test,
    ws::{Auth, ChatSocket},
};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A small PNG uploaded as `wx.uploadFile` would; returns the image id.
async fn upload(app: &TestApp, who: &Student) -> i64 {
    let img = image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 9) as u8, 40])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let (status, body) = app
        .upload_file(Some(&who.token), "p.png", "image/png", &png.into_inner())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_i64().unwrap()
}

/// A student of the demo school who publishes one listing; returns them and the listing id.
async fn seller_with_listing(app: &TestApp, who: &str, title: &str, price: i64) -> (Student, i64) {
    let (_, schools) = app.get("/api/v1/schools", None).await;
    let school = schools
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slug"] == "demo-university")
        .unwrap()
        .clone();
    let campus = school["campuses"][0]["id"].as_i64().unwrap();
    let (_, places) = app
        .get(&format!("/api/v1/campuses/{campus}/places"), None)
        .await;
    let (_, cats) = app.get("/api/v1/categories", None).await;
    let s = app.login(who).await;
    let (st, _) = app
        .patch(
            "/api/v1/me",
            Some(&s.token),
            &json!({ "school_id": school["id"], "campus_id": campus }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let listing = publish(
        app,
        &s,
        title,
        price,
        campus,
        places[0]["id"].as_i64().unwrap(),
        cats[0]["children"][0]["id"].as_i64().unwrap(),
    )
    .await;
    (s, listing)
}

async fn publish(
    app: &TestApp,
    s: &Student,
    title: &str,
    price: i64,
    campus: i64,
    place: i64,
    category: i64,
) -> i64 {
    let img = upload(app, s).await;
    let body = json!({
        "title": title, "description": "九成新，图书馆门口面交", "price": price, "condition": "like_new",
        "category_id": category, "image_ids": [img], "trade_methods": ["meetup"],
        "meetup_place_ids": [place], "campus_id": campus,
    });
    let (status, l) = app.post("/api/v1/listings", Some(&s.token), &body).await;
    assert_eq!(status, StatusCode::OK, "{l}");
    l["id"].as_i64().unwrap()
}

/// Opens (as `buyer`) the conversation about `listing`; returns its id.
async fn open(app: &TestApp, buyer: &Student, listing: i64) -> i64 {
    let (s, c) = app
        .post(
            "/api/v1/conversations",
            Some(&buyer.token),
            &json!({ "listing_id": listing }),
        )
        .await;
    assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {c}");
    c["id"].as_i64().unwrap()
}

async fn socket(app: &TestApp, who: &Student) -> ChatSocket {
    ChatSocket::connect(&app.base, &who.token, Auth::Header)
        .await
        .expect("socket connects")
}

async fn rest_say(
    app: &TestApp,
    who: &Student,
    conv: i64,
    client_msg_id: &str,
    text: &str,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&who.token),
        &json!({ "client_msg_id": client_msg_id, "kind": "text", "text": text }),
    )
    .await
}

fn ids(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

app_test!(
    async fn two_users_chat_in_real_time(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "捷安特山地自行车", 35000).await;
        let bob = app.login("bob").await;

        let (s, c) = app.post("/api/v1/conversations", Some(&bob.token), &json!({ "listing_id": listing })).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        assert_eq!(c["role"], "buyer");
        assert_eq!(c["other"]["id"], alice.id);
        assert_eq!(c["listing"]["title"], "捷安特山地自行车");
        assert_eq!(c["listing"]["price"], 35000);
        assert!(c["listing"]["cover"]["url"].as_str().is_some());
        let conv = c["id"].as_i64().unwrap();
        let (s, again) = app.post("/api/v1/conversations", Some(&bob.token), &json!({ "listing_id": listing })).await;
        assert_eq!((s, again["id"].as_i64()), (StatusCode::OK, Some(conv)), "opening again finds the same one");
        let (s, b) = app.post("/api/v1/conversations", Some(&alice.token), &json!({ "listing_id": listing })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cannot_chat_with_self")));
        let (_, detail) = app.get(&format!("/api/v1/listings/{listing}"), None).await;
        assert_eq!(detail["counts"]["chats"], 1);

        // Alice on her phone (query token) and on the DevTools (header); Bob on one socket.
        let mut alice_phone = ChatSocket::connect(&app.base, &alice.token, Auth::Query).await.unwrap();
        let mut alice_devtools = socket(&app, &alice).await;
        let mut bob_ws = socket(&app, &bob).await;
        assert_eq!(bob_ws.ready["user_id"], bob.id);

        let sent = bob_ws.say(conv, "b-1", "你好，自行车还在吗？").await.unwrap();
        assert!(sent["id"].as_i64().unwrap() > 0);
        assert_eq!(sent["sender_id"], bob.id);
        assert!(sent["created_at"].as_str().is_some());
        for s in [&mut alice_phone, &mut alice_devtools] {
            let f = s.next_of("message").await.unwrap();
            assert_eq!(f["message"]["id"], sent["id"]);
            assert_eq!(f["message"]["text"], "你好，自行车还在吗？");
            assert_eq!(f["message"]["kind"], "text");
        }

        let reply = alice_phone.say(conv, "a-1", "在的，周六下午可以看车").await.unwrap();
        let f = bob_ws.next_of("message").await.unwrap();
        assert_eq!(f["message"]["id"], reply["id"]);
        assert_eq!(f["message"]["sender_id"], alice.id);
        // Alice's other socket sees her own message too; the sending socket got the ack instead.
        let f = alice_devtools.next_of("message").await.unwrap();
        assert_eq!(f["message"]["id"], reply["id"]);
        assert!(reply["id"].as_i64() > sent["id"].as_i64(), "later messages have larger ids");

        // Typing reaches the other side only.
        bob_ws.send_json(&json!({ "type": "typing", "conversation_id": conv })).await.unwrap();
        let t = alice_phone.next_of("typing").await.unwrap();
        assert_eq!((t["conversation_id"].as_i64(), t["user_id"].as_i64()), (Some(conv), Some(bob.id)));

        bob_ws.send_json(&json!({ "type": "ping", "t": 42 })).await.unwrap();
        let pong = bob_ws.next_of("pong").await.unwrap();
        assert_eq!(pong["t"], 42);
        let frames = bob_ws.drain(Duration::from_millis(300)).await.unwrap();
        assert!(frames.iter().all(|f| f["type"] != "typing"), "the typist does not get their own typing: {frames:?}");
    }
);

app_test!(
    async fn history_unread_counts_and_read_receipts(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "高数教材", 2000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut bob_ws = socket(&app, &bob).await;
        let mut sent = Vec::new();
        for i in 1..=3 {
            sent.push(bob_ws.say(conv, &format!("m{i}"), &format!("第{i}条")).await.unwrap()["id"].as_i64().unwrap());
        }

        let (_, list) = app.get("/api/v1/conversations", Some(&alice.token)).await;
        let item = &list["items"][0];
        assert_eq!(item["id"], conv);
        assert_eq!(item["unread"], 3);
        assert_eq!(item["role"], "seller");
        assert_eq!(item["last_message"]["text"], "第3条");
        assert_eq!(item["other"]["id"], bob.id);
        let (_, total) = app.get("/api/v1/conversations/unread", Some(&alice.token)).await;
        assert_eq!(total["unread"], 3);
        let (_, bobs) = app.get("/api/v1/conversations/unread", Some(&bob.token)).await;
        assert_eq!(bobs["unread"], 0, "your own messages are not unread");

        // Paging backwards, two at a time, ascending within a page.
        let (s, page) = app.get(&format!("/api/v1/conversations/{conv}/messages?limit=2"), Some(&alice.token)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ids(&page["items"]), vec![sent[1], sent[2]]);
        assert_eq!(page["has_more"], true);
        let (_, older) = app.get(&format!("/api/v1/conversations/{conv}/messages?limit=2&before={}", sent[1]), Some(&alice.token)).await;
        assert_eq!(ids(&older["items"]), vec![sent[0]]);
        assert_eq!(older["has_more"], false);
        let (_, newer) = app.get(&format!("/api/v1/conversations/{conv}/messages?after={}", sent[0]), Some(&alice.token)).await;
        assert_eq!(ids(&newer["items"]), vec![sent[1], sent[2]]);
        let (s, b) = app.get(&format!("/api/v1/conversations/{conv}/messages?after=1&before=9"), Some(&alice.token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));

        // Alice reads up to the second: one left unread, and Bob's socket gets the receipt.
        let (s, mark) = app.post(&format!("/api/v1/conversations/{conv}/read"), Some(&alice.token), &json!({ "up_to": sent[1] })).await;
        assert_eq!(s, StatusCode::OK, "{mark}");
        assert_eq!((mark["up_to"].as_i64(), mark["unread"].as_i64()), (Some(sent[1]), Some(1)));
        let receipt = bob_ws.next_of("read").await.unwrap();
        assert_eq!(receipt["conversation_id"], conv);
        assert_eq!(receipt["user_id"], alice.id);
        assert_eq!(receipt["up_to"], sent[1]);
        let (_, c) = app.get(&format!("/api/v1/conversations/{conv}"), Some(&bob.token)).await;
        assert_eq!(c["other_read_up_to"], sent[1]);

        // A mark never moves back, and cannot pass the newest message.
        let (_, mark) = app.post(&format!("/api/v1/conversations/{conv}/read"), Some(&alice.token), &json!({ "up_to": sent[0] })).await;
        assert_eq!(mark["up_to"], sent[1]);
        let mut alice_ws = socket(&app, &alice).await;
        assert_eq!(alice_ws.ready["unread"], 1);
        alice_ws.send_json(&json!({ "type": "read", "conversation_id": conv, "up_to": sent[2] + 1000 })).await.unwrap();
        let r = bob_ws.next_of("read").await.unwrap();
        assert_eq!(r["up_to"], sent[2]);
        let (_, total) = app.get("/api/v1/conversations/unread", Some(&alice.token)).await;
        assert_eq!(total["unread"], 0);

        // Newest activity first, with cursors.
        let (_, second_listing) = seller_with_listing(&app, "carol", "台灯", 1500).await;
        let conv2 = open(&app, &bob, second_listing).await;
        bob_ws.say(conv2, "x1", "台灯还在吗").await.unwrap();
        let (_, p1) = app.get("/api/v1/conversations?limit=1", Some(&bob.token)).await;
        assert_eq!(p1["items"][0]["id"], conv2);
        let cursor = p1["next_cursor"].as_str().unwrap();
        let (_, p2) = app.get(&format!("/api/v1/conversations?limit=1&cursor={cursor}"), Some(&bob.token)).await;
        assert_eq!(p2["items"][0]["id"], conv);
        assert_eq!(p2["next_cursor"], Value::Null);
    }
);

app_test!(
    async fn a_resent_client_msg_id_is_stored_once(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "显示器", 40000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut alice_ws = socket(&app, &alice).await;
        let mut bob_ws = socket(&app, &bob).await;

        let first = bob_ws.say(conv, "retry-1", "能便宜点吗").await.unwrap();
        // The client did not see the ack (say, the network dropped) and sends again, on a new socket and by REST.
        let again = bob_ws.say(conv, "retry-1", "能便宜点吗").await.unwrap();
        assert_eq!(again["id"], first["id"]);
        let mut bob_other = socket(&app, &bob).await;
        let third = bob_other.say(conv, "retry-1", "能便宜点吗").await.unwrap();
        assert_eq!(third["id"], first["id"]);
        let (s, rest) = rest_say(&app, &bob, conv, "retry-1", "能便宜点吗").await;
        assert_eq!((s, rest["id"].clone()), (StatusCode::OK, first["id"].clone()), "200, not 201: nothing new");

        let (_, page) = app.get(&format!("/api/v1/conversations/{conv}/messages"), Some(&alice.token)).await;
        assert_eq!(ids(&page["items"]), vec![first["id"].as_i64().unwrap()]);
        let frames = alice_ws.drain(Duration::from_millis(500)).await.unwrap();
        let delivered: Vec<&Value> = frames.iter().filter(|f| f["type"] == "message").collect();
        assert_eq!(delivered.len(), 1, "the receiver got the message once: {frames:?}");

        // The same id in another conversation is refused rather than confused.
        let (_, other_listing) = seller_with_listing(&app, "carol", "键盘", 9000).await;
        let conv2 = open(&app, &bob, other_listing).await;
        let err = bob_ws.say(conv2, "retry-1", "键盘呢").await.unwrap_err().to_string();
        assert!(err.contains("client_msg_id_reused"), "{err}");
    }
);

app_test!(
    async fn a_third_user_can_neither_read_nor_post(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "吉他", 50000).await;
        let bob = app.login("bob").await;
        let carol = app.login("carol").await;
        let conv = open(&app, &bob, listing).await;
        let mut bob_ws = socket(&app, &bob).await;
        let m = bob_ws.say(conv, "p1", "私聊内容").await.unwrap();
        bob_ws.send_json(&json!({ "type": "send", "conversation_id": conv, "client_msg_id": "o1", "kind": "offer", "body": { "price": 40000 } })).await.unwrap();
        let offer = bob_ws.next_of("ack").await.unwrap()["message"]["offer"]["id"].as_i64().unwrap();

        for path in [format!("/api/v1/conversations/{conv}"), format!("/api/v1/conversations/{conv}/messages")] {
            let (s, b) = app.get(&path, Some(&carol.token)).await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}");
        }
        let (s, _) = rest_say(&app, &carol, conv, "c1", "我也来").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = app.post(&format!("/api/v1/conversations/{conv}/read"), Some(&carol.token), &json!({ "up_to": 1 })).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = app.post(&format!("/api/v1/offers/{offer}/accept"), Some(&carol.token), &Value::Null).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, list) = app.get("/api/v1/conversations", Some(&carol.token)).await;
        assert!(list["items"].as_array().unwrap().is_empty());

        let mut carol_ws = socket(&app, &carol).await;
        let err = carol_ws.say(conv, "c2", "我也来").await.unwrap_err().to_string();
        assert!(err.contains("not_found"), "{err}");
        carol_ws.send_json(&json!({ "type": "typing", "conversation_id": conv })).await.unwrap();
        assert_eq!(carol_ws.next_of("error").await.unwrap()["code"], "not_found");
        carol_ws.send_json(&json!({ "type": "sync", "since": 0 })).await.unwrap();
        let sync = carol_ws.next_of("sync").await.unwrap();
        assert!(sync["messages"].as_array().unwrap().is_empty(), "{sync}");

        // Carol cannot report what she cannot see; Alice can report Bob's message, not her own.
        let report = |who: &Student, id: &Value| {
            let body = json!({ "target_type": "message", "target_id": id, "reason": "harassment" });
            let token = who.token.clone();
            let app = &app;
            async move { app.post("/api/v1/reports", Some(&token), &body).await }
        };
        assert_eq!(report(&carol, &m["id"]).await.0, StatusCode::NOT_FOUND);
        let (s, b) = report(&alice, &m["id"]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(report(&bob, &m["id"]).await.1["code"], "cannot_report_self");

        // Nothing of theirs reached Carol's socket, and the seller never saw Carol's attempt.
        let (_, page) = app.get(&format!("/api/v1/conversations/{conv}/messages"), Some(&alice.token)).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert_eq!(page["items"][0]["id"], m["id"]);
    }
);

app_test!(
    async fn a_blocked_user_is_refused_and_history_stays(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "电饭煲", 8000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut bob_ws = socket(&app, &bob).await;
        bob_ws.say(conv, "b1", "在吗").await.unwrap();

        let (s, _, _) = app.send(reqwest::Method::PUT, &format!("/api/v1/users/{}/block", bob.id), Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let err = bob_ws.say(conv, "b2", "为什么不回我").await.unwrap_err().to_string();
        assert!(err.contains("blocked_by_user"), "{err}");
        let (s, b) = rest_say(&app, &bob, conv, "b3", "喂").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("blocked_by_user")));
        let (s, b) = rest_say(&app, &alice, conv, "a1", "别发了").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("user_blocked")));
        // No new conversation with the blocker either.
        let (_, schools) = app.get("/api/v1/schools", None).await;
        let campus = schools[0]["campuses"][0]["id"].as_i64().unwrap();
        let (_, places) = app.get(&format!("/api/v1/campuses/{campus}/places"), None).await;
        let (_, cats) = app.get("/api/v1/categories", None).await;
        let second = publish(&app, &alice, "电水壶", 3000, campus, places[0]["id"].as_i64().unwrap(), cats[0]["children"][0]["id"].as_i64().unwrap()).await;
        let (s, b) = app.post("/api/v1/conversations", Some(&bob.token), &json!({ "listing_id": second })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("blocked_by_user")));

        // The history stays readable for both.
        for who in [&alice, &bob] {
            let (s, page) = app.get(&format!("/api/v1/conversations/{conv}/messages"), Some(&who.token)).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(page["items"][0]["text"], "在吗");
        }

        // Unblocked, they talk again.
        let (s, _, _) = app.send(reqwest::Method::DELETE, &format!("/api/v1/users/{}/block", bob.id), Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        bob_ws.say(conv, "b4", "现在可以了").await.unwrap();
    }
);

app_test!(
    async fn garbage_frames_get_errors_and_the_socket_survives(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "耳机", 12000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut alice_ws = socket(&app, &alice).await;
        let mut bob_ws = socket(&app, &bob).await;

        let mut expect = async |m: Message, code: &str| {
            bob_ws.send_raw(m).await.unwrap();
            let f = bob_ws.next_of("error").await.unwrap();
            assert_eq!(f["code"], code, "{f}");
        };
        expect(Message::text("this is not json"), "invalid_json").await;
        expect(Message::text("[1, 2, 3]"), "invalid_frame").await;
        expect(Message::text(r#"{"type":"dance"}"#), "unknown_type").await;
        expect(Message::text(r#"{"type":"send","conversation_id":"seven"}"#), "invalid_frame").await;
        expect(Message::binary(vec![0u8, 159, 146, 150]), "unsupported_frame").await;
        let big = json!({ "type": "send", "conversation_id": conv, "client_msg_id": "big", "kind": "text", "body": { "text": "长".repeat(4000) } });
        expect(Message::text(big.to_string()), "frame_too_large").await;
        let bigger = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(30_000));
        expect(Message::text(bigger), "frame_too_large").await;
        let wrong_body = json!({ "type": "send", "conversation_id": conv, "client_msg_id": "w1", "kind": "text", "body": { "price": 5 } });
        bob_ws.send_json(&wrong_body).await.unwrap();
        let f = bob_ws.next_of("error").await.unwrap();
        assert_eq!((f["code"].as_str(), f["client_msg_id"].as_str()), (Some("invalid_frame"), Some("w1")));
        let err = bob_ws.say(conv, "long", &"长".repeat(1001)).await.unwrap_err().to_string();
        assert!(err.contains("validation_failed") && err.contains("text"), "{err}");
        let err = bob_ws.say(conv, "", "空 id").await.unwrap_err().to_string();
        assert!(err.contains("client_msg_id"), "{err}");

        // The same socket still works, and the other user noticed nothing but the message.
        bob_ws.send_json(&json!({ "type": "ping" })).await.unwrap();
        bob_ws.next_of("pong").await.unwrap();
        let ok = bob_ws.say(conv, "fine", "正常消息").await.unwrap();
        let f = alice_ws.next_of("message").await.unwrap();
        assert_eq!(f["message"]["id"], ok["id"]);
    }
);

app_test!(
    async fn reconnect_and_sync_lose_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "羽毛球拍", 6000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut bob_ws = socket(&app, &bob).await;
        let mut alice_ws = socket(&app, &alice).await;
        let first = alice_ws.say(conv, "a1", "第一条").await.unwrap();
        let seen = bob_ws.next_of("message").await.unwrap()["message"]["id"].as_i64().unwrap();
        assert_eq!(Some(seen), first["id"].as_i64());

        // Bob's train goes into a tunnel.
        drop(bob_ws);
        let mut missed = Vec::new();
        for i in 2..=4 {
            missed.push(alice_ws.say(conv, &format!("a{i}"), &format!("第{i}条")).await.unwrap()["id"].as_i64().unwrap());
        }
        let (s, b) = rest_say(&app, &alice, conv, "a5", "第5条").await;
        assert_eq!(s, StatusCode::CREATED);
        missed.push(b["id"].as_i64().unwrap());

        let mut bob_ws = socket(&app, &bob).await;
        bob_ws.send_json(&json!({ "type": "sync", "since": seen })).await.unwrap();
        let sync = bob_ws.next_of("sync").await.unwrap();
        let got: Vec<i64> = ids(&sync["messages"]).into_iter().filter(|id| *id > seen).collect();
        assert_eq!(got, missed, "every missed message, in order");
        assert_eq!(sync["has_more"], false);
        assert!(ids(&sync["messages"]).iter().all(|id| *id >= seen), "the overlap is at most the last minute");

        // Paging a long gap: small pages, until has_more is false.
        let mut since = seen;
        let mut all: Vec<i64> = Vec::new();
        loop {
            bob_ws.send_json(&json!({ "type": "sync", "since": since, "limit": 2 })).await.unwrap();
            let page = bob_ws.next_of("sync").await.unwrap();
            let newer: Vec<i64> = ids(&page["messages"]).into_iter().filter(|id| *id > since).collect();
            all.extend(&newer);
            since = *newer.last().unwrap_or(&since);
            if page["has_more"] == false {
                break;
            }
        }
        assert_eq!(all, missed);
        // The REST history says the same.
        let (_, page) = app.get(&format!("/api/v1/conversations/{conv}/messages?after={seen}"), Some(&bob.token)).await;
        assert_eq!(ids(&page["items"]), missed);
    }
);

app_test!(
    async fn offers_are_accepted_and_their_price_is_what_an_order_gets(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "自行车", 30000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut alice_ws = socket(&app, &alice).await;
        let mut bob_ws = socket(&app, &bob).await;
        let offer_frame = |cid: &str, price: i64| json!({ "type": "send", "conversation_id": conv, "client_msg_id": cid, "kind": "offer", "body": { "price": price } });

        bob_ws.send_json(&offer_frame("o1", 25000)).await.unwrap();
        let ack = bob_ws.next_of("ack").await.unwrap();
        assert_eq!(ack["message"]["kind"], "offer");
        assert_eq!(ack["message"]["offer"]["price"], 25000);
        assert_eq!(ack["message"]["offer"]["status"], "pending");
        let first = ack["message"]["offer"]["id"].as_i64().unwrap();
        let seen = alice_ws.next_of("message").await.unwrap();
        assert_eq!(seen["message"]["offer"]["id"], first);

        // Sellers do not make offers; bad prices are refused.
        alice_ws.send_json(&json!({ "type": "send", "conversation_id": conv, "client_msg_id": "x", "kind": "offer", "body": { "price": 100 } })).await.unwrap();
        assert_eq!(alice_ws.next_of("error").await.unwrap()["code"], "only_buyer_can_offer");
        bob_ws.send_json(&offer_frame("o0", 0)).await.unwrap();
        assert_eq!(bob_ws.next_of("error").await.unwrap()["code"], "validation_failed");

        // A second offer replaces the pending first.
        bob_ws.send_json(&offer_frame("o2", 27000)).await.unwrap();
        let second = bob_ws.next_of("ack").await.unwrap()["message"]["offer"]["id"].as_i64().unwrap();
        for ws in [&mut alice_ws, &mut bob_ws] {
            let up = ws.next_of("offer_updated").await.unwrap();
            assert_eq!((up["offer"]["id"].as_i64(), up["offer"]["status"].as_str()), (Some(first), Some("superseded")));
        }

        // Only the seller accepts; the buyer gets 403, a stranger 404.
        let (s, b) = app.post(&format!("/api/v1/offers/{second}/accept"), Some(&bob.token), &Value::Null).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("offer_action_not_allowed")));
        let (s, o) = app.post(&format!("/api/v1/offers/{second}/accept"), Some(&alice.token), &Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        assert_eq!(o["status"], "accepted");
        let up = bob_ws.next_of("offer_updated").await.unwrap();
        assert_eq!((up["offer"]["id"].as_i64(), up["offer"]["status"].as_str()), (Some(second), Some("accepted")));
        let card = bob_ws.next_of("message").await.unwrap();
        assert_eq!(card["message"]["kind"], "system");
        assert_eq!(card["message"]["card"]["kind"], "offer_accepted");
        assert!(card["message"]["text"].as_str().unwrap().contains("¥270.00"));
        let (s, b) = app.post(&format!("/api/v1/offers/{second}/decline"), Some(&alice.token), &Value::Null).await;
        assert_eq!((s, b["code"].as_str(), b["current_status"].as_str()), (StatusCode::CONFLICT, Some("invalid_transition"), Some("accepted")));
        let (s, b) = app.post(&format!("/api/v1/offers/{first}/accept"), Some(&alice.token), &Value::Null).await;
        assert_eq!((s, b["current_status"].as_str()), (StatusCode::CONFLICT, Some("superseded")));

        // What the orders capability will ask.
        let txn = app.state.db.begin().await.unwrap();
        assert_eq!(cards::accepted_offer_price(&txn, second, listing, bob.id).await.unwrap(), 27000);
        let e = cards::accepted_offer_price(&txn, first, listing, bob.id).await.unwrap_err();
        assert_eq!(e.code(), "offer_not_accepted");
        assert_eq!(cards::accepted_offer_price(&txn, second, listing, alice.id).await.unwrap_err().code(), "not_found");
        assert_eq!(cards::accepted_offer_price(&txn, second, listing + 1, bob.id).await.unwrap_err().code(), "not_found");
        txn.rollback().await.unwrap();

        // A declined and a withdrawn offer, over the socket.
        bob_ws.send_json(&offer_frame("o3", 20000)).await.unwrap();
        let third = bob_ws.next_of("ack").await.unwrap()["message"]["offer"]["id"].as_i64().unwrap();
        alice_ws.send_json(&json!({ "type": "offer", "action": "decline", "offer_id": third })).await.unwrap();
        let up = bob_ws.next_where("offer_updated", |f| f["offer"]["id"] == third).await.unwrap();
        assert_eq!(up["offer"]["status"], "declined");
        bob_ws.send_json(&offer_frame("o4", 26000)).await.unwrap();
        let fourth = bob_ws.next_of("ack").await.unwrap()["message"]["offer"]["id"].as_i64().unwrap();
        bob_ws.send_json(&json!({ "type": "offer", "action": "withdraw", "offer_id": fourth })).await.unwrap();
        let up = alice_ws.next_where("offer_updated", |f| f["offer"]["id"] == fourth).await.unwrap();
        assert_eq!(up["offer"]["status"], "withdrawn");
        // The accepted one still stands.
        let txn = app.state.db.begin().await.unwrap();
        assert_eq!(cards::accepted_offer_price(&txn, second, listing, bob.id).await.unwrap(), 27000);
        txn.rollback().await.unwrap();

        // No offers once the listing is sold.
        let (s, _) = app.post(&format!("/api/v1/listings/{listing}/mark-sold"), Some(&alice.token), &Value::Null).await;
        assert_eq!(s, StatusCode::OK);
        bob_ws.send_json(&offer_frame("o5", 1)).await.unwrap();
        assert_eq!(bob_ws.next_of("error").await.unwrap()["code"], "listing_not_available");
    }
);

app_test!(
    async fn contact_details_get_a_warning_card_for_the_receiver(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "台式电脑主机", 150000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut alice_ws = socket(&app, &alice).await;
        let mut bob_ws = socket(&app, &bob).await;

        let m = bob_ws.say(conv, "c1", "加我 vx: bob_2024x 细聊，或者打 138-0013-8000").await.unwrap();
        assert_eq!(m["contact_kinds"], json!(["phone", "wechat"]));
        let got = alice_ws.next_of("message").await.unwrap();
        assert_eq!(got["message"]["id"], m["id"]);
        let warning = alice_ws.next_of("message").await.unwrap();
        assert_eq!(warning["message"]["kind"], "system");
        assert_eq!(warning["message"]["card"]["kind"], "contact_warning");
        assert!(warning["message"]["text"].as_str().unwrap().contains("平台内"));

        // Only Alice sees the card.
        let (_, hers) = app.get(&format!("/api/v1/conversations/{conv}/messages"), Some(&alice.token)).await;
        assert_eq!(hers["items"].as_array().unwrap().len(), 2);
        let (_, his) = app.get(&format!("/api/v1/conversations/{conv}/messages"), Some(&bob.token)).await;
        assert_eq!(ids(&his["items"]), vec![m["id"].as_i64().unwrap()]);
        let (_, list) = app.get("/api/v1/conversations", Some(&bob.token)).await;
        assert_eq!(list["items"][0]["last_message"]["id"], m["id"], "the card is not Bob's last message");
        let frames = bob_ws.drain(Duration::from_millis(300)).await.unwrap();
        assert!(frames.iter().all(|f| f["message"]["card"]["kind"] != "contact_warning"));

        // A link, and a harmless message.
        let link = alice_ws.say(conv, "a1", "看这个 https://example.com/bike").await.unwrap();
        assert_eq!(link["contact_kinds"], json!(["link"]));
        assert_eq!(bob_ws.next_of("message").await.unwrap()["message"]["id"], link["id"]);
        assert_eq!(bob_ws.next_of("message").await.unwrap()["message"]["card"]["kind"], "contact_warning");
        let plain = bob_ws.say(conv, "c2", "周六下午三点东门见").await.unwrap();
        assert_eq!(plain["contact_kinds"], json!([]));

        // Content security refuses what WeChat calls risky.
        let err = bob_ws.say(conv, "c3", "代考四六级").await.unwrap_err().to_string();
        assert!(err.contains("content_rejected"), "{err}");
    }
);

app_test!(
    async fn an_offline_receiver_gets_one_wechat_reminder_per_ten_minutes(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "九成新二手捷安特山地自行车带锁", 35000).await;
        let bob = app.login("bob").await;
        let (s, _) = app.patch("/api/v1/me", Some(&bob.token), &json!({ "nickname": "骑车的鲍勃" })).await;
        assert_eq!(s, StatusCode::OK);
        let conv = open(&app, &bob, listing).await;
        let alice_openid = openid_for("alice");
        // Alice accepted five reminders of the template in the Mini Program.
        let (s, g) = app.post("/sandbox/wechat/_sandbox/subscriptions", None, &json!({ "openid": alice_openid, "template_id": SANDBOX_TEMPLATE_CHAT_MESSAGE, "count": 5 })).await;
        assert_eq!(s, StatusCode::OK, "{g}");

        let url = format!("/sandbox/wechat/_sandbox/subscribe-messages?touser={alice_openid}");
        let received = async |app: &TestApp| app.get(&url, None).await.1["messages"].as_array().unwrap().clone();
        let wait_for = async |n: usize| {
            for _ in 0..100 {
                if received(&app).await.len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("expected {n} reminders");
        };

        let mut bob_ws = socket(&app, &bob).await;
        let first = bob_ws.say(conv, "r1", "你好，车还在吗？\n想周末去看看").await.unwrap();
        bob_ws.say(conv, "r2", "在吗").await.unwrap();
        bob_ws.say(conv, "r3", "？").await.unwrap();
        wait_for(1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let msgs = received(&app).await;
        assert_eq!(msgs.len(), 1, "one reminder for three messages: {msgs:?}");
        let r = &msgs[0];
        assert_eq!(r["touser"], alice_openid);
        assert_eq!(r["template_id"], SANDBOX_TEMPLATE_CHAT_MESSAGE);
        assert_eq!(r["page"], format!("pages/chat/conversation?id={conv}"));
        assert_eq!(r["lang"], "zh_CN");
        assert_eq!(r["data"]["thing1"]["value"], "骑车的鲍勃");
        assert_eq!(r["data"]["thing2"]["value"], "你好，车还在吗？ 想周末去看看");
        assert_eq!(r["data"]["thing3"]["value"], "九成新二手捷安特山地自行车带锁");
        let sent_at = chrono::DateTime::parse_from_rfc3339(first["created_at"].as_str().unwrap()).unwrap();
        let beijing = sent_at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
        assert_eq!(r["data"]["time4"]["value"], beijing.format("%Y-%m-%d %H:%M").to_string());
        // Meanwhile the in-app count says three.
        let (_, total) = app.get("/api/v1/conversations/unread", Some(&alice.token)).await;
        assert_eq!(total["unread"], 3);

        // Ten minutes later (the clock is moved back in the database), the next message reminds again.
        conversation::Entity::update_many()
            .col_expr(conversation::Column::SellerNotifiedAt, Expr::value(Some(chrono::Utc::now() - chrono::Duration::minutes(11))))
            .filter(conversation::Column::Id.eq(conv))
            .exec(&app.state.db)
            .await
            .unwrap();
        bob_ws.say(conv, "r4", "还在吗").await.unwrap();
        wait_for(2).await;
        assert_eq!(received(&app).await[1]["data"]["thing2"]["value"], "还在吗");

        // Online, no reminder even when one would be due.
        conversation::Entity::update_many()
            .col_expr(conversation::Column::SellerNotifiedAt, Expr::value(Some(chrono::Utc::now() - chrono::Duration::minutes(11))))
            .filter(conversation::Column::Id.eq(conv))
            .exec(&app.state.db)
            .await
            .unwrap();
        let mut alice_ws = socket(&app, &alice).await;
        bob_ws.say(conv, "r5", "看到回一下").await.unwrap();
        alice_ws.next_of("message").await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(received(&app).await.len(), 2);
        drop(alice_ws);

        // Bob never subscribed: WeChat says 43101, the reminder is dropped quietly and nothing else changes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice_ws = socket(&app, &alice).await;
        drop(bob_ws);
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice_ws.say(conv, "a1", "在的").await.unwrap();
        let mut dropped = None;
        for _ in 0..100 {
            dropped = outbox_message::Entity::find()
                .filter(outbox_message::Column::UserId.eq(bob.id))
                .filter(outbox_message::Column::Status.eq(outbox_message::Status::Dropped))
                .one(&app.state.db)
                .await
                .unwrap();
            if dropped.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let dropped = dropped.expect("the reminder to Bob was tried and dropped");
        assert!(dropped.last_error.as_deref().unwrap_or("").contains("43101"), "{dropped:?}");
        assert_eq!(dropped.attempts, 1, "a permanent refusal is not retried");
        let sent = outbox_message::Entity::find()
            .filter(outbox_message::Column::Status.eq(outbox_message::Status::Sent))
            .all(&app.state.db)
            .await
            .unwrap();
        assert_eq!(sent.len(), 2);
    }
);

app_test!(
    async fn listing_changes_are_posted_into_every_conversation(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "单反相机", 200000).await;
        let bob = app.login("bob").await;
        let carol = app.login("carol").await;
        let conv_bob = open(&app, &bob, listing).await;
        let conv_carol = open(&app, &carol, listing).await;
        let mut bob_ws = socket(&app, &bob).await;
        let mut carol_ws = socket(&app, &carol).await;

        let (s, _) = app.patch(&format!("/api/v1/listings/{listing}"), Some(&alice.token), &json!({ "price": 180000 })).await;
        assert_eq!(s, StatusCode::OK);
        for (ws, conv) in [(&mut bob_ws, conv_bob), (&mut carol_ws, conv_carol)] {
            let f = ws.next_of("message").await.unwrap();
            assert_eq!(f["message"]["conversation_id"], conv);
            assert_eq!(f["message"]["card"]["kind"], "listing_price_changed");
            assert!(f["message"]["text"].as_str().unwrap().contains("¥2000.00") && f["message"]["text"].as_str().unwrap().contains("¥1800.00"));
        }
        let (s, _) = app.post(&format!("/api/v1/listings/{listing}/reserve"), Some(&alice.token), &Value::Null).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(bob_ws.next_of("message").await.unwrap()["message"]["card"]["kind"], "listing_reserved");
        assert_eq!(carol_ws.next_of("message").await.unwrap()["message"]["card"]["kind"], "listing_reserved");
        let (s, _) = app.post(&format!("/api/v1/listings/{listing}/mark-sold"), Some(&alice.token), &Value::Null).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(bob_ws.next_of("message").await.unwrap()["message"]["card"]["kind"], "listing_sold");

        // The cards are in the history and count as unread; the list shows the new status.
        let (_, page) = app.get(&format!("/api/v1/conversations/{conv_carol}/messages"), Some(&carol.token)).await;
        let kinds: Vec<&str> = page["items"].as_array().unwrap().iter().map(|m| m["card"]["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["listing_price_changed", "listing_reserved", "listing_sold"]);
        let (_, list) = app.get("/api/v1/conversations", Some(&carol.token)).await;
        assert_eq!(list["items"][0]["unread"], 3);
        assert_eq!(list["items"][0]["listing"]["status"], "sold");
        // A conversation about a sold listing is not opened anew, but an existing one still opens.
        let dave = app.login("dave").await;
        let (s, b) = app.post("/api/v1/conversations", Some(&dave.token), &json!({ "listing_id": listing })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("listing_not_available")));
        let (s, _) = app.post("/api/v1/conversations", Some(&bob.token), &json!({ "listing_id": listing })).await;
        assert_eq!(s, StatusCode::OK);
    }
);

app_test!(
    async fn orders_post_cards_through_the_chat_interface(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "显卡", 180000).await;
        let bob = app.login("bob").await;
        let mut bob_ws = socket(&app, &bob).await;
        // No conversation yet: the card opens one.
        let txn = app.state.db.begin().await.unwrap();
        let d = cards::post_in(&txn, listing, bob.id, alice.id, cards::Card { kind: "order_created".into(), text: "买家已下单，等待付款。".into(), order_id: Some(77) }).await.unwrap();
        txn.commit().await.unwrap();
        cards::deliver(&app.state, d);
        let f = bob_ws.next_of("message").await.unwrap();
        assert_eq!(f["message"]["card"], json!({ "kind": "order_created", "order_id": 77 }));
        assert_eq!(f["message"]["text"], "买家已下单，等待付款。");
        let (_, list) = app.get("/api/v1/conversations", Some(&alice.token)).await;
        assert_eq!(list["items"][0]["listing"]["id"], listing);
        assert_eq!(list["items"][0]["last_message"]["card"]["kind"], "order_created");

        // A rolled-back transaction leaves no card.
        let txn = app.state.db.begin().await.unwrap();
        let _ = cards::post_in(&txn, listing, bob.id, alice.id, cards::Card { kind: "order_paid".into(), text: "x".into(), order_id: Some(77) }).await.unwrap();
        txn.rollback().await.unwrap();
        let n = message::Entity::find().filter(message::Column::CardKind.eq("order_paid")).all(&app.state.db).await.unwrap().len();
        assert_eq!(n, 0);
    }
);

app_test!(
    async fn images_are_sent_once_each(backend) {
        let app = TestApp::spawn(backend).await;
        let (alice, listing) = seller_with_listing(&app, "alice", "书桌", 10000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut alice_ws = socket(&app, &alice).await;
        let mut bob_ws = socket(&app, &bob).await;
        let img = upload(&app, &bob).await;
        bob_ws.send_json(&json!({ "type": "send", "conversation_id": conv, "client_msg_id": "i1", "kind": "image", "body": { "image_id": img } })).await.unwrap();
        let ack = bob_ws.next_of("ack").await.unwrap();
        assert_eq!(ack["message"]["kind"], "image");
        assert_eq!(ack["message"]["image"]["id"], img);
        let got = alice_ws.next_of("message").await.unwrap();
        let url = got["message"]["image"]["thumbnail_url"].as_str().unwrap().to_string();
        assert!(app.http.get(&url).send().await.unwrap().status().is_success());
        // The same image again, or someone else's, is refused.
        bob_ws.send_json(&json!({ "type": "send", "conversation_id": conv, "client_msg_id": "i2", "kind": "image", "body": { "image_id": img } })).await.unwrap();
        let e = bob_ws.next_of("error").await.unwrap();
        assert_eq!((e["code"].as_str(), e["client_msg_id"].as_str()), (Some("validation_failed"), Some("i2")));
        let hers = upload(&app, &alice).await;
        let (s, _) = app.post(&format!("/api/v1/conversations/{conv}/messages"), Some(&bob.token), &json!({ "client_msg_id": "i3", "kind": "image", "image_id": hers })).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
);

app_test!(
    async fn the_socket_needs_a_session_and_limits_senders(backend) {
        let app = TestApp::spawn_with(backend, &[("CHAT_SEND_BURST", "3"), ("CHAT_SEND_PER_MINUTE", "6")]).await;
        assert_eq!(ChatSocket::refused_status(&app.base, None).await, Some(401));
        assert_eq!(ChatSocket::refused_status(&app.base, Some("not-a-token")).await, Some(401));
        let (s, b) = app.get("/api/v1/ws", None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));

        let (_alice, listing) = seller_with_listing(&app, "alice", "篮球", 5000).await;
        let bob = app.login("bob").await;
        let conv = open(&app, &bob, listing).await;
        let mut bob_ws = socket(&app, &bob).await;
        for i in 0..3 {
            bob_ws.say(conv, &format!("f{i}"), "快").await.unwrap();
        }
        let err = bob_ws.say(conv, "f3", "快").await.unwrap_err().to_string();
        assert!(err.contains("rate_limited") && err.contains("retry_after"), "{err}");
        let (s, h, _) = app.send(reqwest::Method::POST, &format!("/api/v1/conversations/{conv}/messages"), Some(&bob.token), Some(&json!({ "client_msg_id": "f4", "kind": "text", "text": "快" }))).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "REST sends share the budget");
        assert!(h.get("retry-after").is_some());
        // Sustained: one more every ten seconds; the socket stays open meanwhile.
        bob_ws.send_json(&json!({ "type": "ping" })).await.unwrap();
        bob_ws.next_of("pong").await.unwrap();
    }
);

app_test!(
    async fn silent_sockets_are_dropped_and_shutdown_closes_the_rest(backend) {
        let app = TestApp::spawn_with(backend, &[("CHAT_HEARTBEAT_SECONDS", "1")]).await;
        let bob = app.login("bob").await;
        let alice = app.login("alice").await;
        let dead = socket(&app, &bob).await; // never read again: it cannot answer pings
        let mut alive = socket(&app, &alice).await;
        assert_eq!(app.state.chat.hub.socket_count(), 2);
        // A client that reads answers the pings and keeps its socket.
        let pings = alive.drain(Duration::from_millis(4000)).await.unwrap();
        assert!(pings.is_empty(), "no frames but pings: {pings:?}");
        assert_eq!(app.state.chat.hub.local_count(bob.id), 0, "the silent socket was dropped");
        assert_eq!(app.state.chat.hub.local_count(alice.id), 1);
        assert!(!app.state.chat.is_online(bob.id).await);
        drop(dead);

        app.state.chat.hub.shut_down();
        let closed = loop {
            match alive.stream.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(closed.map(|f| u16::from(f.code)), Some(1012), "clients are told to reconnect");
    }
);

use futures_util::StreamExt;
