//! Profiles, schools, student verification and bans.

use campus_trade::users::service as users;
use campus_trade_tests::{TestApp, app_test};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An RFC 3339 time from a response, normalised to UTC with a `Z`.
fn instant(v: &Value) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("RFC 3339");
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

async fn demo_school(app: &TestApp) -> (i64, Vec<i64>) {
    let (s, schools) = app.get("/api/v1/schools", None).await;
    assert_eq!(s, StatusCode::OK);
    let demo = schools
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slug"] == "demo-university")
        .expect("demo school seeded");
    let campuses = demo["campuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    (demo["id"].as_i64().unwrap(), campuses)
}

/// A second school with one campus, made directly in the database (operators' catalogue API comes later).
async fn other_school(app: &TestApp) -> (i64, i64) {
    use campus_trade::users::model::{campus, school};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let now = chrono::Utc::now();
    let s = school::ActiveModel {
        slug: Set("other-u".into()),
        name: Set("另一所大学".into()),
        short_name: Set("另大".into()),
        requires_verification: Set(true),
        roster_salt: Set(migrations::new_roster_salt()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    let c = campus::ActiveModel {
        school_id: Set(s.id),
        name: Set("本部".into()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    (s.id, c.id)
}

app_test!(
    async fn schools_are_listed_with_campuses(backend) {
        let app = TestApp::spawn(backend).await;
        let (_, campuses) = demo_school(&app).await;
        assert_eq!(campuses.len(), 2);
    }
);

app_test!(
    async fn profile_edits_are_validated_and_applied(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let (school, campuses) = demo_school(&app).await;
        let (other, other_campus) = other_school(&app).await;

        let (s, me) = app
            .patch(
                "/api/v1/me",
                Some(&alice.token),
                &json!({ "nickname": "  爱丽丝 ", "bio": "卖书", "school_id": school, "campus_id": campuses[1],
                         "avatar_url": "https://img.example.com/a.png" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{me}");
        assert_eq!(me["nickname"], "爱丽丝");
        assert_eq!(me["school"]["id"], school);
        assert_eq!(me["campus"]["id"], campuses[1]);
        assert_eq!(me["avatar_url"], "https://img.example.com/a.png");

        // Leaving fields out keeps them; null clears the avatar.
        let (s, me) = app.patch("/api/v1/me", Some(&alice.token), &json!({ "avatar_url": null })).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(me["avatar_url"], Value::Null);
        assert_eq!(me["nickname"], "爱丽丝");
        assert_eq!(me["campus"]["id"], campuses[1]);

        let (s, b) = app
            .patch("/api/v1/me", Some(&alice.token), &json!({ "nickname": "", "bio": "长".repeat(201), "avatar_url": "ftp://x" }))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(b["code"], "validation_failed");
        for f in ["nickname", "bio", "avatar_url"] {
            assert!(b["fields"][f].is_string(), "{f} missing in {b}");
        }
        let (s, b) = app.patch("/api/v1/me", Some(&alice.token), &json!({ "campus_id": other_campus })).await;
        assert_eq!((s, b["fields"]["campus_id"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
        let (s, b) = app.patch("/api/v1/me", Some(&alice.token), &json!({ "school_id": 999_999 })).await;
        assert_eq!((s, b["fields"]["school_id"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));

        // Nicknames are public: content security reads them.
        let (s, b) = app.patch("/api/v1/me", Some(&alice.token), &json!({ "nickname": "代考找我" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("content_rejected")));

        // Moving school clears the campus.
        let (s, me) = app.patch("/api/v1/me", Some(&alice.token), &json!({ "school_id": other })).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(me["school"]["id"], other);
        assert_eq!(me["campus"], Value::Null);

        // Nothing changed by the refused edits.
        let (_, me) = app.get("/api/v1/me", Some(&alice.token)).await;
        assert_eq!(me["nickname"], "爱丽丝");
        assert_eq!(me["bio"], "卖书");
    }
);

app_test!(
    async fn public_profiles_hide_private_fields(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let bob = app.login("bob").await;
        let (school, _) = demo_school(&app).await;
        let (s, _) = app
            .post("/api/v1/me/verification", Some(&alice.token), &json!({ "school_id": school, "student_number": "2024301234", "real_name": "王小丽" }))
            .await;
        assert_eq!(s, StatusCode::OK);
        let request = users::pending_verifications(&app.state.db, Some(school)).await.unwrap().remove(0);
        users::approve_verification(&app.state.db, request.id, "test-operator").await.unwrap();

        let (s, profile) = app.get(&format!("/api/v1/users/{}", alice.id), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(profile["verified_student"]["school_name"], "示例大学");
        assert!(profile["member_since"].is_string());
        let raw = profile.to_string();
        let openid = campus_trade::wechat::sandbox::openid_for("alice");
        for secret in [openid.as_str(), "2024301234", "王小丽", "openid", "student_number", "real_name"] {
            assert!(!raw.contains(secret), "public profile leaks {secret}: {raw}");
        }
        let (s, b) = app.get("/api/v1/users/999999", Some(&bob.token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    }
);

app_test!(
    async fn verification_waits_for_an_operator_without_a_roster(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let (school, _) = demo_school(&app).await;

        let (s, v) = app.get("/api/v1/me/verification", Some(&alice.token)).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("none")));

        let body = json!({ "school_id": school, "student_number": "2023 1001 23" });
        let (s, v) = app.post("/api/v1/me/verification", Some(&alice.token), &body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "pending");
        assert_eq!(v["student_number_masked"], "20******23");
        let (s, b) = app.post("/api/v1/me/verification", Some(&alice.token), &body).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("verification_pending")));

        let pending = users::pending_verifications(&app.state.db, Some(school)).await.unwrap();
        assert_eq!(pending.len(), 1);
        users::reject_verification(&app.state.db, pending[0].id, "test-operator", "学号与姓名不符").await.unwrap();
        let (_, v) = app.get("/api/v1/me/verification", Some(&alice.token)).await;
        assert_eq!(v["status"], "rejected");
        assert_eq!(v["reject_reason"], "学号与姓名不符");
        // A decided request cannot be decided again.
        let again = users::approve_verification(&app.state.db, pending[0].id, "test-operator").await.unwrap_err();
        assert_eq!(again.code(), "verification_not_pending");

        // Asking again after a rejection is allowed, and this time it is approved.
        let (s, v) = app.post("/api/v1/me/verification", Some(&alice.token), &body).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("pending")));
        let pending = users::pending_verifications(&app.state.db, Some(school)).await.unwrap();
        users::approve_verification(&app.state.db, pending[0].id, "test-operator").await.unwrap();
        let (_, v) = app.get("/api/v1/me/verification", Some(&alice.token)).await;
        assert_eq!(v["status"], "verified");
        // Enrolled 2023: expected to graduate at the end of 2027.
        assert_eq!(instant(&v["verified_until"]), "2027-12-31T23:59:59Z");
        let (_, me) = app.get("/api/v1/me", Some(&alice.token)).await;
        assert_eq!(me["verified_student"]["school_id"], school);
        assert_eq!(me["school"]["id"], school);

        let (s, b) = app.post("/api/v1/me/verification", Some(&alice.token), &body).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("already_verified")));
    }
);

app_test!(
    async fn a_roster_match_verifies_at_once_and_a_number_serves_one_account(backend) {
        let app = TestApp::spawn(backend).await;
        let (school, _) = demo_school(&app).await;
        let report = users::import_roster(
            &app.state.db,
            school,
            vec![
                users::RosterRow { student_number: "2025000111".into(), graduation_year: Some(2029) },
                users::RosterRow { student_number: "bad-row".into(), graduation_year: None },
            ],
        )
        .await
        .unwrap();
        assert_eq!(report.accepted, 1);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].0, 2);

        let alice = app.login("alice").await;
        let (s, v) = app
            .post("/api/v1/me/verification", Some(&alice.token), &json!({ "school_id": school, "student_number": "2025000111" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "verified");
        assert_eq!(instant(&v["verified_until"]), "2029-12-31T23:59:59Z");

        // The same number for another account: refused, whether typed the same way or not.
        let bob = app.login("bob").await;
        let (s, b) = app
            .post("/api/v1/me/verification", Some(&bob.token), &json!({ "school_id": school, "student_number": " 2025 000 111" }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("student_number_taken")));

        // Bad input is a validation error, not a crash.
        let (s, b) = app
            .post("/api/v1/me/verification", Some(&bob.token), &json!({ "school_id": school, "student_number": "1" }))
            .await;
        assert_eq!((s, b["fields"]["student_number"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
        let (s, b) = app
            .post("/api/v1/me/verification", Some(&bob.token), &json!({ "school_id": 424242, "student_number": "20250001" }))
            .await;
        assert_eq!((s, b["fields"]["school_id"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
    }
);

app_test!(
    async fn a_verified_student_cannot_switch_school(backend) {
        let app = TestApp::spawn(backend).await;
        let (school, _) = demo_school(&app).await;
        let (other, _) = other_school(&app).await;
        users::import_roster(&app.state.db, school, vec![users::RosterRow { student_number: "S20240001".into(), graduation_year: None }])
            .await
            .unwrap();
        let alice = app.login("alice").await;
        let (s, _) = app
            .post("/api/v1/me/verification", Some(&alice.token), &json!({ "school_id": school, "student_number": "s20240001" }))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, b) = app.patch("/api/v1/me", Some(&alice.token), &json!({ "school_id": other })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("school_locked_by_verification")));
    }
);

app_test!(
    async fn a_banned_user_is_refused_everywhere_at_once(backend) {
        let app = TestApp::spawn(backend).await;
        let mallory = app.login("mallory").await;
        let (s, _) = app.get("/api/v1/me", Some(&mallory.token)).await;
        assert_eq!(s, StatusCode::OK);

        users::ban_user(&app.state, mallory.id, "发布违禁物品", None).await.unwrap();
        let (s, b) = app.get("/api/v1/me", Some(&mallory.token)).await;
        // The session is gone with the ban.
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
        let (s, b) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "mallory-99" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("account_banned")));
        assert!(b["message"].as_str().unwrap().contains("发布违禁物品"));

        // A ban whose end date has passed no longer applies.
        let past = chrono::Utc::now() - chrono::Duration::minutes(1);
        users::ban_user(&app.state, mallory.id, "短期禁言", Some(past)).await.unwrap();
        let again = app.login("mallory").await;
        let (s, _) = app.get("/api/v1/me", Some(&again.token)).await;
        assert_eq!(s, StatusCode::OK);
    }
);

app_test!(
    async fn a_ban_applies_to_a_live_session_even_if_it_was_not_revoked(backend) {
        // Sessions are checked against the account on every request, not only at login.
        let app = TestApp::spawn(backend).await;
        let mallory = app.login("mallory").await;
        use campus_trade::users::model::user;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        user::Entity::update_many()
            .col_expr(user::Column::Status, Expr::value(user::Status::Banned))
            .filter(user::Column::Id.eq(mallory.id))
            .exec(&app.state.db)
            .await
            .unwrap();
        let (s, b) = app.get("/api/v1/me", Some(&mallory.token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("account_banned")));
    }
);

app_test!(
    async fn the_badge_lapses_at_the_end_of_the_verification(backend) {
        let app = TestApp::spawn(backend).await;
        let (school, _) = demo_school(&app).await;
        users::import_roster(&app.state.db, school, vec![users::RosterRow { student_number: "2022000999".into(), graduation_year: Some(2026) }])
            .await
            .unwrap();
        let alice = app.login("alice").await;
        let bob = app.login("bob").await;
        let (s, v) = app
            .post("/api/v1/me/verification", Some(&alice.token), &json!({ "school_id": school, "student_number": "2022000999" }))
            .await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("verified")));

        // Graduation passes.
        use campus_trade::users::model::user;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        user::Entity::update_many()
            .col_expr(user::Column::VerifiedUntil, Expr::value(chrono::Utc::now() - chrono::Duration::days(1)))
            .filter(user::Column::Id.eq(alice.id))
            .exec(&app.state.db)
            .await
            .unwrap();
        let (_, v) = app.get("/api/v1/me/verification", Some(&alice.token)).await;
        assert_eq!(v["status"], "expired");
        let (_, me) = app.get("/api/v1/me", Some(&alice.token)).await;
        assert_eq!(me["verified_student"], Value::Null);
        let (_, public) = app.get(&format!("/api/v1/users/{}", alice.id), Some(&bob.token)).await;
        assert_eq!(public["verified_student"], Value::Null);
    }
);

app_test!(
    async fn a_deleted_account_cannot_be_used_or_logged_into(backend) {
        let app = TestApp::spawn(backend).await;
        let gone = app.login("gone").await;
        use campus_trade::users::model::user;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        user::Entity::update_many()
            .col_expr(user::Column::Status, Expr::value(user::Status::Deleted))
            .filter(user::Column::Id.eq(gone.id))
            .exec(&app.state.db)
            .await
            .unwrap();
        let (s, b) = app.get("/api/v1/me", Some(&gone.token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
        let (s, b) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "gone-9" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("account_deleted")));
        let other = app.login("other").await;
        let (s, _) = app.get(&format!("/api/v1/users/{}", gone.id), Some(&other.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

app_test!(
    async fn export_holds_my_data_and_deleting_erases_me_but_keeps_what_others_need(backend) {
        use sea_orm::EntityTrait;
        let app = TestApp::spawn(backend).await;
        let alice = app.demo_student("alice").await;
        let bob = app.demo_student("bob").await;
        let (s, _) = app.patch("/api/v1/me", Some(&alice.token), &json!({ "nickname": "爱丽丝", "bio": "卖台灯的" })).await;
        assert_eq!(s, StatusCode::OK);
        let lamp = app.sell(&alice, "护眼台灯", 3_000).await;
        let bobs = app.sell(&bob, "自行车", 20_000).await;
        let (s, _, _) = app.send(reqwest::Method::PUT, &format!("/api/v1/listings/{bobs}/favorite"), Some(&alice.token), None).await;
        assert!(s.is_success());
        let (s, _, _) = app.send(reqwest::Method::PUT, &format!("/api/v1/users/{}/block", bob.id), Some(&alice.token), None).await;
        assert!(s.is_success());
        let (_, boards) = app.get("/api/v1/boards", Some(&alice.token)).await;
        let board = boards.as_array().unwrap()[0]["id"].clone();
        let (s, post) = app.post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": board, "title": "出台灯", "body": "图书馆自取" })).await;
        assert_eq!(s, StatusCode::OK, "{post}");
        let post_id = post["id"].as_i64().unwrap();
        let body = json!({ "school_id": 1, "student_number": "2024777888", "real_name": "李爱丽" });
        app.post("/api/v1/me/verification", Some(&alice.token), &body).await;

        // The export: everything of hers, nothing of Bob's, no keyed hashes.
        let (s, export) = app.get("/api/v1/me/export", Some(&alice.token)).await;
        assert_eq!(s, StatusCode::OK, "{export}");
        assert_eq!(export["profile"]["nickname"], "爱丽丝");
        assert_eq!(export["profile"]["id"], alice.id);
        let data = &export["data"];
        let ids = |section: &str, key: &str| -> Vec<i64> {
            data[section].as_array().unwrap_or_else(|| panic!("section {section}: {export}"))
                .iter().map(|r| r[key].as_i64().unwrap()).collect()
        };
        assert_eq!(ids("listings", "id"), vec![lamp]);
        assert_eq!(ids("favorites", "listing_id"), vec![bobs]);
        assert_eq!(ids("blocks", "blocked_id"), vec![bob.id]);
        assert_eq!(ids("posts", "id"), vec![post_id]);
        assert_eq!(ids("images", "owner_id"), vec![alice.id], "her one listing photo");
        let text = export.to_string();
        assert!(!text.contains("student_number_hash"), "keyed hashes are never exported");
        assert!(!text.contains("自行车"), "Bob's listing is not her data");
        let (_, bob_export) = app.get("/api/v1/me/export", Some(&bob.token)).await;
        assert_eq!(bob_export["profile"]["id"], bob.id);
        assert!(bob_export["data"]["posts"].as_array().unwrap().is_empty());

        // Deleting: the session ends, the profile is gone, the listing leaves the market, the post stays
        // under the deleted-account name.
        let (s, _, _) = app.send(reqwest::Method::DELETE, "/api/v1/me", Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = app.get("/api/v1/me", Some(&alice.token)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = app.get(&format!("/api/v1/users/{}", alice.id), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, feed) = app.get("/api/v1/listings", Some(&bob.token)).await;
        assert!(feed["items"].as_array().unwrap().iter().all(|l| l["id"] != lamp), "{feed}");
        let (s, kept) = app.get(&format!("/api/v1/posts/{post_id}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::OK, "{kept}");
        assert_eq!(kept["body"], "图书馆自取", "the post stays");
        assert!(kept["author"].is_null(), "and no longer names anyone: {kept}");
        assert!(!kept.to_string().contains("爱丽丝"), "{kept}");
        let row = campus_trade::users::model::user::Entity::find_by_id(alice.id).one(&app.state.db).await.unwrap().unwrap();
        assert_eq!(row.nickname, "已注销用户");
        assert_eq!(row.bio, "");
        assert!(row.openid.starts_with("deleted:"), "the WeChat identity is erased");
        let favs = campus_trade::listings::model::favorite::Entity::find().all(&app.state.db).await.unwrap();
        assert!(favs.iter().all(|f| f.user_id != alice.id));

        // The same WeChat account later starts afresh.
        let again = app.login("alice").await;
        assert_ne!(again.id, alice.id);
        let (_, me) = app.get("/api/v1/me", Some(&again.token)).await;
        assert_ne!(me["nickname"], "爱丽丝");
        // Deleting twice is not a thing: the old token is dead.
        let (s, _, _) = app.send(reqwest::Method::DELETE, "/api/v1/me", Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
);

app_test!(
    async fn an_account_with_an_open_order_cannot_be_deleted(backend) {
        let app = TestApp::spawn(backend).await;
        let seller = app.demo_student("seller").await;
        let buyer = app.demo_student("buyer").await;
        let lamp = app.sell(&seller, "台灯", 3_000).await;
        let (s, order) = app.post("/api/v1/orders", Some(&buyer.token), &json!({ "listing_id": lamp, "payment_method": "offline" })).await;
        assert_eq!(s, StatusCode::OK, "{order}");
        for who in [&buyer, &seller] {
            let (s, _, body) = app.send(reqwest::Method::DELETE, "/api/v1/me", Some(&who.token), None).await;
            assert_eq!(s, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["code"], "open_orders");
            let (s, _) = app.get("/api/v1/me", Some(&who.token)).await;
            assert_eq!(s, StatusCode::OK, "the account is still there");
        }
        // Once the order is cancelled, the buyer may go.
        let id = order["id"].as_i64().unwrap();
        let (s, body) = app.post(&format!("/api/v1/orders/{id}/cancel"), Some(&buyer.token), &json!({ "reason": "不需要了" })).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, _, _) = app.send(reqwest::Method::DELETE, "/api/v1/me", Some(&buyer.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
);
