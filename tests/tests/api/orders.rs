//! Orders: buying reserves the item atomically, offline hand-over with the buyer's code, wrong codes lock the
//! day, cancellation and expiry put the item back on sale, only the two parties ever see an order.
//! (Everything that moves money through WeChat Pay is in `payments.rs`.)

use campus_trade::orders::model::order;
use campus_trade_tests::{Student, TestApp, app_test};
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

/// The demo school's first campus, one of its meet-up places, and the lamps category.
pub struct Demo {
    pub school: i64,
    pub campus: i64,
    pub place: i64,
    pub lamps: i64,
}

pub async fn demo(app: &TestApp) -> Demo {
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
    let lamps = cats
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["children"].as_array().unwrap().iter())
        .find(|c| c["slug"] == "lamps")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    Demo {
        school: school["id"].as_i64().unwrap(),
        campus,
        place: places[0]["id"].as_i64().unwrap(),
        lamps,
    }
}

/// A student of the demo school.
pub async fn student(app: &TestApp, who: &str, d: &Demo) -> Student {
    let s = app.login(who).await;
    let (status, _) = app
        .patch(
            "/api/v1/me",
            Some(&s.token),
            &json!({ "school_id": d.school, "campus_id": d.campus }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s
}

/// Publishes a lamp for `price` fen; returns the listing id.
pub async fn publish(app: &TestApp, seller: &Student, d: &Demo, title: &str, price: i64) -> i64 {
    let img = image::RgbImage::from_fn(32, 24, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 9) as u8, 60])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let (s, up) = app
        .upload_file(
            Some(&seller.token),
            "lamp.png",
            "image/png",
            &png.into_inner(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{up}");
    let body = json!({
        "title": title, "description": "宿舍自用，功能完好", "price": price, "condition": "good",
        "category_id": d.lamps, "image_ids": [up["id"]], "trade_methods": ["meetup"],
        "meetup_place_ids": [d.place], "campus_id": d.campus,
    });
    let (s, l) = app
        .post("/api/v1/listings", Some(&seller.token), &body)
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    l["id"].as_i64().unwrap()
}

/// Places an order.
pub async fn buy(
    app: &TestApp,
    buyer: &Student,
    listing: i64,
    method: &str,
) -> (StatusCode, Value) {
    app.post(
        "/api/v1/orders",
        Some(&buyer.token),
        &json!({ "listing_id": listing, "payment_method": method }),
    )
    .await
}

pub async fn order_of(app: &TestApp, who: &Student, id: i64) -> Value {
    let (s, o) = app
        .get(&format!("/api/v1/orders/{id}"), Some(&who.token))
        .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    o
}

pub async fn listing_status(app: &TestApp, id: i64, who: &Student) -> String {
    let (s, l) = app
        .get(&format!("/api/v1/listings/{id}"), Some(&who.token))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    l["status"].as_str().unwrap().to_string()
}

pub fn actions(o: &Value) -> Vec<&str> {
    o["allowed_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

/// The kinds of the user's inbox notifications about order `id`.
pub async fn inbox_kinds(app: &TestApp, who: &Student, id: i64) -> Vec<String> {
    let (s, page) = app
        .get("/api/v1/me/notifications?limit=50", Some(&who.token))
        .await;
    assert_eq!(s, StatusCode::OK);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["target_type"] == "order" && n["target_id"] == id)
        .map(|n| n["kind"].as_str().unwrap().to_string())
        .collect()
}

pub async fn act(
    app: &TestApp,
    who: &Student,
    id: i64,
    what: &str,
    body: Value,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/orders/{id}/{what}"),
        Some(&who.token),
        &body,
    )
    .await
}

app_test!(
    async fn an_offline_order_completes_with_the_buyers_code(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let buyer = student(&app, "buyer", &d).await;
        let stranger = student(&app, "stranger", &d).await;
        let listing = publish(&app, &seller, &d, "护眼台灯", 3500).await;

        let (s, o) = app
            .post(
                "/api/v1/orders",
                Some(&buyer.token),
                &json!({ "listing_id": listing, "payment_method": "offline", "meetup_point_id": d.place }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{o}");
        let id = o["id"].as_i64().unwrap();
        assert_eq!(o["status"], "pending_handover");
        assert_eq!(o["amount"], 3500);
        assert_eq!(o["role"], "buyer");
        assert_eq!(o["meetup_place"]["id"], d.place);
        assert_eq!(listing_status(&app, listing, &buyer).await, "reserved");

        // The buyer holds the code; the seller never sees it.
        let code = o["handover_code"].as_str().unwrap().to_string();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert!(o["handover_qr"].as_str().unwrap().contains(&code));
        assert_eq!(actions(&o), vec!["confirm_receipt", "cancel"]);
        let seen = order_of(&app, &seller, id).await;
        assert!(seen["handover_code"].is_null() && seen["handover_qr"].is_null());
        assert!(!seen.to_string().contains(&format!("\"{code}\"")));
        assert_eq!(seen["handover_tries_left"], 5);
        assert_eq!(actions(&seen), vec!["handover", "cancel"]);
        assert!(inbox_kinds(&app, &seller, id).await.contains(&"listing_reserved".to_string()));

        // Nobody else learns the order exists, or may act on it.
        let (s, b) = app.get(&format!("/api/v1/orders/{id}"), Some(&stranger.token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        for (what, body) in [
            ("handover", json!({ "code": code })),
            ("confirm-receipt", json!({})),
            ("cancel", json!({})),
        ] {
            let (s, _) = act(&app, &stranger, id, what, body).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{what}");
        }
        // The buyer cannot enter the code for the seller.
        let (s, b) = act(&app, &buyer, id, "handover", json!({ "code": code })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_allowed")));

        let (s, done) = act(&app, &seller, id, "handover", json!({ "code": code })).await;
        assert_eq!(s, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed");
        assert!(done["completed_at"].is_string());
        assert!(done["payout"].is_null(), "offline orders have no payout");
        assert!(actions(&done).is_empty());
        assert_eq!(listing_status(&app, listing, &buyer).await, "sold");
        let after = order_of(&app, &buyer, id).await;
        assert!(after["handover_code"].is_null(), "the code is gone once used");
        let steps: Vec<(Value, Value, Value)> = after["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["actor"].clone(), e["from_status"].clone(), e["to_status"].clone()))
            .collect();
        assert_eq!(
            steps,
            vec![
                (json!("buyer"), Value::Null, json!("pending_handover")),
                (json!("seller"), json!("pending_handover"), json!("completed")),
            ]
        );
        assert!(inbox_kinds(&app, &seller, id).await.contains(&"listing_sold".to_string()));
        assert!(inbox_kinds(&app, &buyer, id).await.contains(&"order_completed".to_string()));

        // A completed order is final.
        let (s, b) = act(&app, &seller, id, "cancel", json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(b["code"], "invalid_transition");
        assert_eq!(b["current_status"], "completed");
    }
);

app_test!(
    async fn five_wrong_codes_lock_the_hand_over_but_the_buyer_can_confirm(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let buyer = student(&app, "buyer", &d).await;
        let listing = publish(&app, &seller, &d, "LED台灯", 2000).await;
        let (_, o) = buy(&app, &buyer, listing, "offline").await;
        let id = o["id"].as_i64().unwrap();
        let code = o["handover_code"].as_str().unwrap().to_string();
        let wrong = if code == "000000" { "111111" } else { "000000" };

        for left in (1..=4).rev() {
            let (s, b) = act(&app, &seller, id, "handover", json!({ "code": wrong })).await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_handover_code")));
            assert!(b["message"].as_str().unwrap().contains(&left.to_string()), "{b}");
            assert_eq!(order_of(&app, &seller, id).await["handover_tries_left"], left);
        }
        let (s, b) = act(&app, &seller, id, "handover", json!({ "code": wrong })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("handover_locked")));
        // Locked: even the right code is refused until the next campus day.
        let (s, b) = act(&app, &seller, id, "handover", json!({ "code": code })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("handover_locked")));
        let seen = order_of(&app, &seller, id).await;
        assert_eq!(seen["status"], "pending_handover");
        assert!(seen["handover_locked_until"].is_string());
        assert!(!actions(&seen).contains(&"handover"));
        let attempts = campus_trade::orders::model::handover_attempt::Entity::find()
            .filter(campus_trade::orders::model::handover_attempt::Column::OrderId.eq(id))
            .count(&app.state.db)
            .await
            .unwrap();
        assert_eq!(attempts, 6, "every try is recorded");

        let (s, done) = act(&app, &buyer, id, "confirm-receipt", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed");
        assert_eq!(listing_status(&app, listing, &buyer).await, "sold");
    }
);

app_test!(
    async fn sellers_cannot_buy_their_own_and_blocked_buyers_cannot_buy(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let buyer = student(&app, "buyer", &d).await;
        let listing = publish(&app, &seller, &d, "台灯", 1000).await;

        let (s, b) = buy(&app, &seller, listing, "wechat_pay").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cannot_buy_own_listing")));
        let (s, _) = buy(&app, &buyer, 999_999, "offline").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, b) = app
            .post(
                "/api/v1/orders",
                Some(&buyer.token),
                &json!({ "listing_id": listing, "payment_method": "offline", "meetup_point_id": 999_999 }),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(b["fields"]["meetup_point_id"].is_string());

        // A payout of 2,000 yuan or more would need the seller's real name: such items sell offline.
        let dear = publish(&app, &seller, &d, "笔记本电脑", 200_000).await;
        let (s, b) = buy(&app, &buyer, dear, "wechat_pay").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("amount_too_large_for_wechat_pay")));
        assert_eq!(listing_status(&app, dear, &buyer).await, "on_sale");
        let (s, o) = buy(&app, &buyer, dear, "offline").await;
        assert_eq!(s, StatusCode::OK, "{o}");

        let (s, _, _) = app
            .send(Method::PUT, &format!("/api/v1/users/{}/block", buyer.id), Some(&seller.token), None)
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, b) = buy(&app, &buyer, listing, "wechat_pay").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("blocked_by_seller")));
        assert_eq!(listing_status(&app, listing, &buyer).await, "on_sale", "nothing was reserved");
        let (s, _) = app.get("/api/v1/orders/999999", Some(&buyer.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

app_test!(
    async fn of_fifty_buyers_racing_for_one_item_exactly_one_wins(backend) {
        let app = TestApp::spawn_with(backend, &[("LOGIN_RATE_PER_IP_PER_MINUTE", "1000")]).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let listing = publish(&app, &seller, &d, "抢手台灯", 990).await;
        let mut buyers = Vec::new();
        for i in 0..50 {
            buyers.push(app.login(&format!("racer{i}")).await);
        }
        let app = std::sync::Arc::new(app);
        let mut tasks = Vec::new();
        for b in buyers {
            let app = app.clone();
            tasks.push(tokio::spawn(async move { buy(&app, &b, listing, "wechat_pay").await }));
        }
        let mut won = 0;
        for t in tasks {
            let (s, b) = t.await.unwrap();
            match s {
                StatusCode::OK => won += 1,
                StatusCode::CONFLICT => assert_eq!(b["code"], "listing_unavailable", "{b}"),
                other => panic!("unexpected {other}: {b}"),
            }
        }
        assert_eq!(won, 1);
        let orders = order::Entity::find()
            .filter(order::Column::ListingId.eq(listing))
            .count(&app.state.db)
            .await
            .unwrap();
        assert_eq!(orders, 1);
        assert_eq!(listing_status(&app, listing, &seller).await, "reserved");
    }
);

app_test!(
    async fn cancelling_puts_the_item_back_on_sale(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let buyer = student(&app, "buyer", &d).await;
        let other = student(&app, "other", &d).await;
        let listing = publish(&app, &seller, &d, "台灯", 1200).await;

        let (s, o) = buy(&app, &buyer, listing, "wechat_pay").await;
        assert_eq!(s, StatusCode::OK, "{o}");
        let id = o["id"].as_i64().unwrap();
        assert_eq!(o["status"], "pending_payment");
        assert!(o["expires_at"].is_string());
        assert!(o["handover_code"].is_null(), "no code before payment");
        assert_eq!(actions(&o), vec!["pay", "sync_payment", "cancel"]);
        // Not paid: nothing to hand over or refund.
        let (s, b) = act(&app, &buyer, id, "refund-request", json!({ "reason": "不想要了" })).await;
        assert_eq!((s, b["current_status"].as_str()), (StatusCode::CONFLICT, Some("pending_payment")));
        let (s, b) = act(&app, &seller, id, "payout", json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        // Someone else cannot buy the reserved item.
        let (s, b) = buy(&app, &other, listing, "offline").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("listing_unavailable")));

        let (s, c) = act(&app, &buyer, id, "cancel", json!({ "reason": "买错了" })).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        assert_eq!(c["status"], "cancelled");
        assert!(c["cancelled_at"].is_string());
        assert_eq!(c["events"][1]["reason"], "买错了");
        assert_eq!(listing_status(&app, listing, &buyer).await, "on_sale");
        assert!(inbox_kinds(&app, &seller, id).await.contains(&"order_cancelled".to_string()));
        let (s, b) = act(&app, &seller, id, "cancel", json!({})).await;
        assert_eq!((s, b["current_status"].as_str()), (StatusCode::CONFLICT, Some("cancelled")));

        // The item sells again; this time the seller calls the offline deal off.
        let (s, o2) = buy(&app, &other, listing, "offline").await;
        assert_eq!(s, StatusCode::OK, "{o2}");
        let id2 = o2["id"].as_i64().unwrap();
        let (s, c) = act(&app, &seller, id2, "cancel", json!({})).await;
        assert_eq!((s, c["status"].as_str()), (StatusCode::OK, Some("cancelled")));
        assert_eq!(listing_status(&app, listing, &seller).await, "on_sale");

        // My orders, by role and status.
        let (_, mine) = app.get("/api/v1/me/orders", Some(&buyer.token)).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 1);
        let (_, sold) = app.get("/api/v1/me/orders?role=seller", Some(&seller.token)).await;
        let ids: Vec<i64> = sold["items"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![id2, id], "newest first");
        assert!(sold["items"][0]["handover_code"].is_null());
        let (_, paged) = app.get("/api/v1/me/orders?role=seller&limit=1", Some(&seller.token)).await;
        let cursor = paged["next_cursor"].as_str().unwrap().to_string();
        let (_, rest) = app
            .get(&format!("/api/v1/me/orders?role=seller&limit=1&cursor={cursor}"), Some(&seller.token))
            .await;
        assert_eq!(rest["items"][0]["id"], id);
        let (_, none) = app
            .get("/api/v1/me/orders?role=seller&status=completed&status=paid", Some(&seller.token))
            .await;
        assert!(none["items"].as_array().unwrap().is_empty());
    }
);

app_test!(
    async fn unpaid_orders_expire_and_free_the_item(backend) {
        let app = TestApp::spawn_with(
            backend,
            &[("ORDER_PAYMENT_TIMEOUT_MINUTES", "0.03"), ("ORDER_SWEEP_INTERVAL_SECONDS", "1")],
        )
        .await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let buyer = student(&app, "buyer", &d).await;
        let listing = publish(&app, &seller, &d, "台灯", 1200).await;
        let (_, o) = buy(&app, &buyer, listing, "wechat_pay").await;
        let id = o["id"].as_i64().unwrap();

        let mut status = String::new();
        for _ in 0..100 {
            status = order_of(&app, &buyer, id).await["status"].as_str().unwrap().to_string();
            if status != "pending_payment" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, "cancelled");
        let o = order_of(&app, &buyer, id).await;
        assert_eq!(o["events"][1]["actor"], "system");
        assert_eq!(listing_status(&app, listing, &buyer).await, "on_sale");
        let (s, b) = act(&app, &buyer, id, "wechat-pay", json!({})).await;
        assert_eq!((s, b["current_status"].as_str()), (StatusCode::CONFLICT, Some("cancelled")));
    }
);
