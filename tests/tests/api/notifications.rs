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

/// The outbox row of `user`, once `done` holds for it (the job and the test's own runs may both send it).
async fn outbox_row(
    app: &TestApp,
    user: i64,
    done: impl Fn(&campus_trade::notifications::outbox::outbox_message::Model) -> bool,
) -> campus_trade::notifications::outbox::outbox_message::Model {
    use campus_trade::notifications::outbox::outbox_message;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    for _ in 0..200 {
        let row = outbox_message::Entity::find()
            .filter(outbox_message::Column::UserId.eq(user))
            .one(&app.state.db)
            .await
            .unwrap();
        if let Some(r) = row.filter(|r| done(r)) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the outbox row of user {user} never got there");
}

app_test!(
    async fn the_outbox_retries_a_busy_wechat_and_drops_a_refusal_for_good(backend) {
        use campus_trade::notifications::outbox::{self, Outgoing, outbox_message::{self, Status}};
        use campus_trade::wechat::sandbox::openid_for;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

        const TEMPLATE: &str = "tmpl-outbox";
        let app = TestApp::spawn(backend).await;
        let alice = app.login("outboxa").await;
        let bob = app.login("outboxb").await;
        let (s, b) = app.post("/sandbox/wechat/_sandbox/templates", None, &json!({ "template_id": TEMPLATE, "keys": ["thing1"] })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = app.post("/sandbox/wechat/_sandbox/subscriptions", None, &json!({ "openid": openid_for("outboxa"), "template_id": TEMPLATE, "count": 5 })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let message = |user: i64| Outgoing {
            user_id: user,
            template_key: "test",
            template_id: TEMPLATE.into(),
            page: Some("pages/me/index".into()),
            data: json!({ "thing1": { "value": "订单已完成" } }),
        };

        // WeChat is busy (-1) for the first send: the message stays queued, with the error and a later attempt.
        let (s, b) = app.post("/sandbox/wechat/_sandbox/subscribe-failures", None, &json!({ "errcodes": [-1] })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        outbox::enqueue(&app.state.db, message(alice.id)).await.unwrap();
        outbox::run_due(&app.state).await.unwrap();
        let row = outbox_row(&app, alice.id, |r| r.attempts == 1).await;
        assert_eq!(row.status, Status::Pending, "{row:?}");
        assert!(row.last_error.as_deref().unwrap_or("").contains("-1"), "{row:?}");
        assert!(row.next_attempt_at > chrono::Utc::now() + chrono::Duration::seconds(20), "backs off: {row:?}");
        let url = format!("/sandbox/wechat/_sandbox/subscribe-messages?touser={}", openid_for("outboxa"));
        assert!(app.get(&url, None).await.1["messages"].as_array().unwrap().is_empty());

        // When it is due again, it goes out, once.
        outbox_message::Entity::update_many()
            .col_expr(outbox_message::Column::NextAttemptAt, Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)))
            .filter(outbox_message::Column::Id.eq(row.id))
            .exec(&app.state.db)
            .await
            .unwrap();
        outbox::run_due(&app.state).await.unwrap();
        let row = outbox_row(&app, alice.id, |r| r.status == Status::Sent).await;
        assert_eq!(row.attempts, 2);
        let got = app.get(&url, None).await.1["messages"].as_array().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["data"]["thing1"]["value"], "订单已完成");
        outbox::run_due(&app.state).await.unwrap();
        assert_eq!(app.get(&url, None).await.1["messages"].as_array().unwrap().len(), 1, "never twice");

        // Bob never subscribed: 43101 is permanent, so the message is dropped after one attempt, not retried.
        outbox::enqueue(&app.state.db, message(bob.id)).await.unwrap();
        outbox::run_due(&app.state).await.unwrap();
        let row = outbox_row(&app, bob.id, |r| r.status != Status::Pending).await;
        assert_eq!((row.status, row.attempts), (Status::Dropped, 1), "{row:?}");
        assert!(row.last_error.as_deref().unwrap_or("").contains("43101"), "{row:?}");
    }
);
