//! The in-app inbox: events land in it with the change they report; reading it, marking read, privacy.

use campus_trade::users::service as users;
use campus_trade_tests::{TestApp, app_test};
use reqwest::StatusCode;
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
