//! The in-app inbox: events land in it with the change they report; reading it, marking read, privacy.

use campus_trade::users::service as users;
use campus_trade_tests::{TestApp, app_test};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

app_test!(
    async fn decisions_reach_the_inbox_and_can_be_marked_read(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let bob = app.login("bob").await;
        let (_, schools) = app.get("/api/v1/schools", None).await;
        let school = schools[0]["id"].as_i64().unwrap();

        let (_, inbox) = app.get("/api/v1/me/notifications", Some(&alice.token)).await;
        assert_eq!(inbox["unread_count"], 0);
        assert!(inbox["items"].as_array().unwrap().is_empty());

        // An operator rejects, then (after a new request) approves the verification.
        let body = json!({ "school_id": school, "student_number": "2024555666" });
        app.post("/api/v1/me/verification", Some(&alice.token), &body).await;
        let req = users::pending_verifications(&app.state.db, Some(school)).await.unwrap().remove(0);
        users::reject_verification(&app.state.db, req.id, "op", "照片不清晰").await.unwrap();
        app.post("/api/v1/me/verification", Some(&alice.token), &body).await;
        let req = users::pending_verifications(&app.state.db, Some(school)).await.unwrap().remove(0);
        users::approve_verification(&app.state.db, req.id, "op").await.unwrap();

        let (s, inbox) = app.get("/api/v1/me/notifications", Some(&alice.token)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(inbox["unread_count"], 2);
        let kinds: Vec<&str> = inbox["items"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["verification_approved", "verification_rejected"], "newest first");
        assert!(inbox["items"][1]["body"].as_str().unwrap().contains("照片不清晰"));

        // Bob sees none of it and cannot touch it.
        let (_, theirs) = app.get("/api/v1/me/notifications", Some(&bob.token)).await;
        assert!(theirs["items"].as_array().unwrap().is_empty());
        let first = inbox["items"][0]["id"].as_i64().unwrap();
        let (s, _) = app.post(&format!("/api/v1/me/notifications/{first}/read"), Some(&bob.token), &Value::Null).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Paging, one at a time.
        let (_, p1) = app.get("/api/v1/me/notifications?limit=1", Some(&alice.token)).await;
        let (_, p2) = app
            .get(&format!("/api/v1/me/notifications?limit=1&cursor={}", p1["next_cursor"].as_str().unwrap()), Some(&alice.token))
            .await;
        assert_eq!(p2["items"][0]["kind"], "verification_rejected");
        assert_eq!(p2["next_cursor"], Value::Null);
        let (s, b) = app.get("/api/v1/me/notifications?cursor=abc", Some(&alice.token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_cursor")));

        // Mark one read (twice: idempotent), then all.
        for _ in 0..2 {
            let (s, _) = app.post(&format!("/api/v1/me/notifications/{first}/read"), Some(&alice.token), &Value::Null).await;
            assert!(s.is_success());
        }
        let (_, inbox) = app.get("/api/v1/me/notifications?unread_only=true", Some(&alice.token)).await;
        assert_eq!(inbox["unread_count"], 1);
        assert_eq!(inbox["items"].as_array().unwrap().len(), 1);
        let (_, marked) = app.post("/api/v1/me/notifications/read-all", Some(&alice.token), &Value::Null).await;
        assert_eq!(marked["marked"], 1);
        let (_, inbox) = app.get("/api/v1/me/notifications", Some(&alice.token)).await;
        assert_eq!(inbox["unread_count"], 0);
        assert!(inbox["items"].as_array().unwrap().iter().all(|n| n["read"] == true));
    }
);

/// A student of the demo school with one lamp for sale at `price`; returns (seller, listing id).
async fn lamp_for_sale(app: &TestApp, who: &str, price: i64) -> (campus_trade_tests::Student, i64) {
    let seller = app.demo_student(who).await;
    let id = app.sell(&seller, "护眼台灯", price).await;
    (seller, id)
}

async fn price_drop_count(app: &TestApp) -> u64 {
    use campus_trade::notifications::model::notification;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    notification::Entity::find()
        .filter(notification::Column::Kind.eq("price_drop"))
        .count(&app.state.db)
        .await
        .unwrap()
}

app_test!(
    async fn a_price_drop_reaches_every_favouriter_once_a_day(backend) {
        use campus_trade::{listings::model::favorite, notifications::price_drops};
        use sea_orm::{ActiveValue::Set, EntityTrait};

        let app = TestApp::spawn(backend).await;
        let (seller, lamp) = lamp_for_sale(&app, "lampseller", 8_000).await;
        let (other_seller, other) = lamp_for_sale(&app, "otherseller", 5_000).await;
        let fan = app.login("fan").await;
        let (s, _, _) = app.send(Method::PUT, &format!("/api/v1/listings/{lamp}/favorite"), Some(&fan.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        // 999 more favouriters, set up below the API (logging in a thousand students is not the point here).
        let mut rows = Vec::new();
        for i in 0..999 {
            let (u, _) = campus_trade::users::service::find_or_create_by_openid(&app.state.db, &format!("fan-openid-{i}"), None).await.unwrap();
            rows.push(favorite::ActiveModel { user_id: Set(u.id), listing_id: Set(lamp), created_at: Set(chrono::Utc::now()) });
        }
        for chunk in rows.chunks(200) {
            favorite::Entity::insert_many(chunk.to_vec()).exec_without_returning(&app.state.db).await.unwrap();
        }
        // The fan also favourited the other lamp, whose price only goes up.
        app.send(Method::PUT, &format!("/api/v1/listings/{other}/favorite"), Some(&fan.token), None).await;

        // Nothing happened yet: no alerts.
        assert_eq!(price_drops::sweep(&app.state.db).await.unwrap(), 0);

        // The seller lowers the price (two steps), the other seller raises theirs.
        for price in [7_000, 6_500] {
            let (s, body) = app.patch(&format!("/api/v1/listings/{lamp}"), Some(&seller.token), &json!({ "price": price })).await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }
        let (s, _) = app.patch(&format!("/api/v1/listings/{other}"), Some(&other_seller.token), &json!({ "price": 6_000 })).await;
        assert_eq!(s, StatusCode::OK);

        // Two sweeps racing (as two instances would): exactly one alert per favouriter, in one sweep.
        let (a, b) = tokio::join!(price_drops::sweep(&app.state.db), price_drops::sweep(&app.state.db));
        assert_eq!(a.unwrap() + b.unwrap(), 1000);
        assert_eq!(price_drop_count(&app).await, 1000);

        let (_, inbox) = app.get("/api/v1/me/notifications", Some(&fan.token)).await;
        let drops: Vec<&Value> = inbox["items"].as_array().unwrap().iter().filter(|n| n["kind"] == "price_drop").collect();
        assert_eq!(drops.len(), 1, "one alert, for the lamp that got cheaper: {inbox}");
        let body = drops[0]["body"].as_str().unwrap();
        assert!(body.contains("护眼台灯") && body.contains("80.00") && body.contains("65.00"), "{body}");
        assert_eq!(drops[0]["target_type"], "listing");
        assert_eq!(drops[0]["target_id"], lamp);
        let (_, seller_inbox) = app.get("/api/v1/me/notifications", Some(&seller.token)).await;
        assert!(seller_inbox["items"].as_array().unwrap().iter().all(|n| n["kind"] != "price_drop"));

        // A second drop the same day tells nobody again.
        app.patch(&format!("/api/v1/listings/{lamp}"), Some(&seller.token), &json!({ "price": 6_000 })).await;
        assert_eq!(price_drops::sweep(&app.state.db).await.unwrap(), 0);
        assert_eq!(price_drop_count(&app).await, 1000);
    }
);
