//! Reviews and reputation: only the two parties of a completed order review each other, once, within 30 days;
//! reviews stay sealed until both have reviewed or the window closes; one reply; 24 hours of edits; hidden
//! reviews stop counting; the reputation kept incrementally equals the one rebuilt from scratch; the "me" page
//! counts; reviews in the export and after an account deletion.
//! (Time is moved by rewriting timestamps in the database, as the order tests do.)

use campus_trade::{
    admin::auth::Role,
    reviews::{reputation, service as reviews},
    users::model::user,
    wechat::sandbox::openid_for,
};
use campus_trade_tests::{Student, TestApp, app_test};
use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, EntityTrait, Statement, TransactionTrait};
use serde_json::{Value, json};

use super::orders::{Demo, act, buy, demo, publish, student};

/// A completed offline deal: `seller` publishes `title`, `buyer` orders it and confirms receipt. Returns the
/// order id.
pub(crate) async fn deal(
    app: &TestApp,
    d: &Demo,
    seller: &Student,
    buyer: &Student,
    title: &str,
) -> i64 {
    let listing = publish(app, seller, d, title, 2000).await;
    let id = open_order(app, buyer, listing).await;
    let (s, o) = act(app, buyer, id, "confirm-receipt", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["status"], "completed");
    id
}

/// A second school (created through the operator API as an admin), for school-scope checks.
async fn other_school(app: &TestApp) -> i64 {
    let admin = app.operator(Role::Admin, None).await;
    let (st, b) = app
        .post(
            "/admin/api/v1/schools",
            Some(&admin),
            &json!({ "name": "另一所大学", "short_name": "另大", "slug": "other-university" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["id"].as_i64().unwrap()
}

/// An offline order of `buyer` for `listing`, waiting for the hand-over.
async fn open_order(app: &TestApp, buyer: &Student, listing: i64) -> i64 {
    let (s, o) = buy(app, buyer, listing, "offline").await;
    assert_eq!(s, StatusCode::OK, "{o}");
    o["id"].as_i64().unwrap()
}

pub(crate) async fn review(
    app: &TestApp,
    who: &Student,
    order: i64,
    body: Value,
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/orders/{order}/review"),
        Some(&who.token),
        &body,
    )
    .await
}

async fn reputation_of(app: &TestApp, viewer: &Student, user: i64) -> Value {
    let (s, u) = app
        .get(&format!("/api/v1/users/{user}"), Some(&viewer.token))
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    u["reputation"].clone()
}

async fn public_reviews(app: &TestApp, viewer: &Student, user: i64) -> Vec<Value> {
    let (s, page) = app
        .get(
            &format!("/api/v1/users/{user}/reviews"),
            Some(&viewer.token),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// Runs one SQL statement (`$1`… placeholders) against the test's database.
async fn sql(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) {
    let db = &app.state.db;
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .await
    .unwrap();
}

/// The stored reputation equals the one computed from the source tables.
async fn assert_consistent(app: &TestApp) {
    let stored = reputation::all_stored(&app.state.db).await.unwrap();
    let scratch = reputation::from_scratch(&app.state.db).await.unwrap();
    assert_eq!(stored, scratch, "incremental vs. from scratch");
}

app_test!(
    async fn only_the_parties_review_once_blind_until_both_have(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "seller", &d).await;
        let buyer = student(&app, "buyer", &d).await;
        let stranger = student(&app, "stranger", &d).await;

        // Not before the order completes.
        let listing = publish(&app, &seller, &d, "护眼台灯", 3500).await;
        let id = open_order(&app, &buyer, listing).await;
        let (s, b) = review(&app, &buyer, id, json!({ "rating": 5 })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("order_not_completed")), "{b}");
        let (s, o) = act(&app, &buyer, id, "confirm-receipt", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{o}");

        // Nobody else, and only good input.
        let (s, _) = review(&app, &stranger, id, json!({ "rating": 5 })).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = app.get(&format!("/api/v1/orders/{id}/reviews"), Some(&stranger.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        for bad in [
            json!({ "rating": 0 }),
            json!({ "rating": 6 }),
            json!({ "rating": 5, "text": "好".repeat(501) }),
            json!({ "rating": 5, "tags": ["friendly", "on_time", "quick_reply", "fair_price", "good_condition", "described_accurately"] }),
        ] {
            let (s, b) = review(&app, &buyer, id, bad.clone()).await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")), "{bad}: {b}");
        }
        let (s, b) = review(&app, &buyer, id, json!({ "rating": 5, "tags": ["rude"] })).await;
        assert!(s.is_client_error() && s != StatusCode::NOT_FOUND, "unknown tag: {s} {b}");
        let (s, b) = review(&app, &buyer, id, json!({ "rating": 1, "text": "卖家找人代考" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("content_rejected")), "{b}");

        // The buyer's review: sealed.
        let (s, mine) = review(&app, &buyer, id, json!({ "rating": 5, "text": "灯很好用，卖家很准时", "tags": ["friendly", "on_time", "friendly"] })).await;
        assert_eq!(s, StatusCode::OK, "{mine}");
        assert_eq!(mine["rating"], 5);
        assert_eq!(mine["tags"], json!(["friendly", "on_time"]));
        assert_eq!(mine["reviewer_role"], "buyer");
        assert_eq!(mine["reviewer"]["id"], buyer.id);
        assert_eq!(mine["revealed"], false);
        assert!(mine["editable_until"].is_string());
        let buyers_review = mine["id"].as_i64().unwrap();
        let (s, b) = review(&app, &buyer, id, json!({ "rating": 4 })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("already_reviewed")));

        // The seller sees that the buyer reviewed, not what; nobody else sees anything yet.
        let (s, page) = app.get(&format!("/api/v1/orders/{id}/reviews"), Some(&seller.token)).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["they_reviewed"], true);
        assert!(page["theirs"].is_null() && page["mine"].is_null(), "{page}");
        assert_eq!(page["can_review"], true);
        assert!(page["review_deadline"].is_string());
        assert!(public_reviews(&app, &stranger, seller.id).await.is_empty());
        let (_, received) = app.get("/api/v1/me/reviews?direction=received", Some(&seller.token)).await;
        assert!(received["items"].as_array().unwrap().is_empty(), "{received}");
        let (_, written) = app.get("/api/v1/me/reviews?direction=written", Some(&buyer.token)).await;
        assert_eq!(written["items"][0]["id"], buyers_review);
        let rep = reputation_of(&app, &stranger, seller.id).await;
        assert_eq!(rep["completed_sales"], 1);
        assert_eq!(rep["rating_count"], 0, "a sealed rating does not count yet: {rep}");
        assert_eq!(rep["score"], 4.5);
        assert!(rep["average_rating"].is_null());
        assert_eq!(reputation_of(&app, &stranger, buyer.id).await["completed_purchases"], 1);
        let (s, _) = app.post(&format!("/api/v1/reviews/{buyers_review}/reply"), Some(&seller.token), &json!({ "text": "谢谢" })).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "no reply to a sealed review");
        assert!(!inbox_kinds_any(&app, &seller).await.contains(&"new_review".to_string()));

        // The seller's review reveals both.
        let (s, theirs) = review(&app, &seller, id, json!({ "rating": 4, "text": "买家很爽快" })).await;
        assert_eq!(s, StatusCode::OK, "{theirs}");
        assert_eq!(theirs["revealed"], true);
        assert_eq!(theirs["reviewer_role"], "seller");
        let public = public_reviews(&app, &stranger, seller.id).await;
        assert_eq!(public.len(), 1, "{public:?}");
        assert_eq!(public[0]["rating"], 5);
        assert_eq!(public[0]["text"], "灯很好用，卖家很准时");
        assert_eq!(public[0]["item_title"], "护眼台灯");
        assert!(public[0]["order_id"].is_null(), "the public does not learn order ids");
        assert_eq!(public_reviews(&app, &stranger, buyer.id).await[0]["rating"], 4);
        let (_, by_buyers) = app.get(&format!("/api/v1/users/{}/reviews?role=seller", seller.id), Some(&stranger.token)).await;
        assert!(by_buyers["items"].as_array().unwrap().is_empty(), "the seller got no review from a seller");
        assert!(inbox_kinds_any(&app, &seller).await.contains(&"new_review".to_string()));
        assert!(inbox_kinds_any(&app, &buyer).await.contains(&"new_review".to_string()));
        let rep = reputation_of(&app, &stranger, seller.id).await;
        assert_eq!(rep["rating_count"], 1);
        assert_eq!(rep["average_rating"], 5.0);
        assert_eq!(rep["score"], 4.55, "(10 × 4.5 + 5) / 11");
        assert_eq!(rep["positive_rate"], 1.0);
        assert_eq!(rep["completion_rate"], 1.0);
        let (_, page) = app.get(&format!("/api/v1/orders/{id}/reviews"), Some(&seller.token)).await;
        assert_eq!(page["theirs"]["id"], buyers_review);
        assert_eq!(page["mine"]["rating"], 4);
        assert_eq!(page["can_review"], false);

        // Edits within 24 hours move the reputation; after that, none.
        let (s, edited) = app.patch(&format!("/api/v1/reviews/{buyers_review}"), Some(&buyer.token), &json!({ "rating": 3 })).await;
        assert_eq!(s, StatusCode::OK, "{edited}");
        assert_eq!(edited["text"], "灯很好用，卖家很准时", "left-out fields stay");
        let rep = reputation_of(&app, &stranger, seller.id).await;
        assert_eq!((rep["average_rating"].clone(), rep["score"].clone(), rep["positive_rate"].clone()), (json!(3.0), json!(4.36), json!(0.0)));
        let (s, _) = app.patch(&format!("/api/v1/reviews/{buyers_review}"), Some(&seller.token), &json!({ "rating": 5 })).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "only the author edits");
        let (s, _) = app.patch(&format!("/api/v1/reviews/{buyers_review}"), Some(&stranger.token), &json!({ "rating": 5 })).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        sql(&app, "UPDATE reviews SET created_at = $1 WHERE id = $2", vec![(Utc::now() - Duration::hours(25)).into(), buyers_review.into()]).await;
        let (s, b) = app.patch(&format!("/api/v1/reviews/{buyers_review}"), Some(&buyer.token), &json!({ "rating": 5 })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("edit_window_closed")), "{b}");
        let (_, written) = app.get("/api/v1/me/reviews?direction=written", Some(&buyer.token)).await;
        assert!(written["items"][0]["editable_until"].is_null());

        // One public reply, by the reviewed person only.
        let (s, b) = app.post(&format!("/api/v1/reviews/{buyers_review}/reply"), Some(&buyer.token), &json!({ "text": "自问自答" })).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        let (s, b) = app.post(&format!("/api/v1/reviews/{buyers_review}/reply"), Some(&stranger.token), &json!({ "text": "路过" })).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        let (s, replied) = app.post(&format!("/api/v1/reviews/{buyers_review}/reply"), Some(&seller.token), &json!({ "text": "谢谢，欢迎再来" })).await;
        assert_eq!(s, StatusCode::OK, "{replied}");
        assert_eq!(replied["reply"], "谢谢，欢迎再来");
        assert!(replied["replied_at"].is_string());
        let (s, b) = app.post(&format!("/api/v1/reviews/{buyers_review}/reply"), Some(&seller.token), &json!({ "text": "再说一句" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("already_replied")));
        assert_eq!(public_reviews(&app, &stranger, seller.id).await[0]["reply"], "谢谢，欢迎再来");
        assert!(inbox_kinds_any(&app, &buyer).await.contains(&"review_replied".to_string()));

        // The listing cards show the seller's reputation.
        let (_, mine) = app.get("/api/v1/me/listings", Some(&seller.token)).await;
        let card = &mine["items"][0];
        assert_eq!(card["seller"]["reputation"]["completed_sales"], 1, "{card}");
        assert_eq!(card["seller"]["reputation"]["rating_count"], 1);
        assert_eq!(card["seller"]["reputation"]["score"], 4.36);

        assert_consistent(&app).await;
    }
);

/// Every notification kind in the user's inbox.
async fn inbox_kinds_any(app: &TestApp, who: &Student) -> Vec<String> {
    let (s, page) = app
        .get("/api/v1/me/notifications?limit=50", Some(&who.token))
        .await;
    assert_eq!(s, StatusCode::OK);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_string())
        .collect()
}

app_test!(
    async fn the_window_closes_after_30_days_and_reveals_what_is_sealed(backend) {
        const TEMPLATE: &str = "tmpl-new-review";
        let app = TestApp::spawn_with(backend, &[("WECHAT_TEMPLATE_NEW_REVIEW", TEMPLATE)]).await;
        let d = demo(&app).await;
        let seller = student(&app, "wseller", &d).await;
        let buyer = student(&app, "wbuyer", &d).await;
        let (s, b) = app.post("/sandbox/wechat/_sandbox/templates", None, &json!({ "template_id": TEMPLATE, "keys": ["thing1", "thing2", "time3"] })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let seller_openid = openid_for("wseller");
        let (s, b) = app.post("/sandbox/wechat/_sandbox/subscriptions", None, &json!({ "openid": seller_openid, "template_id": TEMPLATE, "count": 1 })).await;
        assert_eq!(s, StatusCode::OK, "{b}");

        let id = deal(&app, &d, &seller, &buyer, "二手自行车").await;
        let (s, r) = review(&app, &buyer, id, json!({ "rating": 2, "text": "车有点旧" })).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let rid = r["id"].as_i64().unwrap();
        // Within the window nothing is revealed by the sweep.
        reviews::reveal_due(&app.state).await.unwrap();
        assert!(public_reviews(&app, &buyer, seller.id).await.is_empty());
        let (_, summary) = app.get("/api/v1/me/summary", Some(&seller.token)).await;
        assert_eq!(summary["pending_reviews"], 1, "{summary}");

        // 31 days later: the seller can no longer review, and the sweep reveals the buyer's review.
        sql(&app, "UPDATE orders SET completed_at = $1 WHERE id = $2", vec![(Utc::now() - Duration::days(31)).into(), id.into()]).await;
        let (s, b) = review(&app, &seller, id, json!({ "rating": 5 })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("review_window_closed")), "{b}");
        let (_, summary) = app.get("/api/v1/me/summary", Some(&seller.token)).await;
        assert_eq!(summary["pending_reviews"], 0, "{summary}");
        let (_, page) = app.get(&format!("/api/v1/orders/{id}/reviews"), Some(&seller.token)).await;
        assert_eq!(page["can_review"], false);
        assert!(reviews::reveal_due(&app.state).await.unwrap() >= 1);
        let public = public_reviews(&app, &buyer, seller.id).await;
        assert_eq!(public.len(), 1);
        assert_eq!(public[0]["id"], rid);
        assert_eq!(public[0]["revealed"], true);
        let rep = reputation_of(&app, &buyer, seller.id).await;
        assert_eq!(rep["rating_count"], 1);
        assert_eq!(rep["positive_rate"], 0.0);
        assert!(inbox_kinds_any(&app, &seller).await.contains(&"new_review".to_string()));
        assert_eq!(reviews::reveal_due(&app.state).await.unwrap(), 0, "revealed once");

        // The "new review" subscribe message, through the outbox.
        let url = format!("/sandbox/wechat/_sandbox/subscribe-messages?touser={seller_openid}");
        let mut got = Vec::new();
        for _ in 0..100 {
            got = app.get(&url, None).await.1["messages"].as_array().unwrap().clone();
            if !got.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["template_id"], TEMPLATE);
        assert_eq!(got[0]["data"]["thing1"]["value"], "二手自行车");
        assert_eq!(got[0]["data"]["thing2"]["value"], "买家给了你2星评价");
        assert_consistent(&app).await;
    }
);

app_test!(
    async fn hidden_reviews_stop_counting_and_recompute_equals_incremental(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let s = student(&app, "rs", &d).await;
        let b1 = student(&app, "rb1", &d).await;
        let b2 = student(&app, "rb2", &d).await;
        let b3 = student(&app, "rb3", &d).await;

        // S sells to B1 (both review), to B2 (both review), and buys from B1 (only S reviews: sealed).
        let o1 = deal(&app, &d, &s, &b1, "台灯").await;
        let o2 = deal(&app, &d, &s, &b2, "书架").await;
        let o5 = deal(&app, &d, &b1, &s, "电饭煲").await;
        for (who, order, rating) in [(&b1, o1, 5), (&s, o1, 4), (&b2, o2, 2), (&s, o2, 5), (&s, o5, 1)] {
            let (st, r) = review(&app, who, order, json!({ "rating": rating })).await;
            assert_eq!(st, StatusCode::OK, "{r}");
        }
        // S cancels a sale (counts against S), B1 cancels a purchase from S (does not).
        let l3 = publish(&app, &s, &d, "椅子", 1000).await;
        let o3 = open_order(&app, &b3, l3).await;
        let (st, c) = act(&app, &s, o3, "cancel", json!({ "reason": "不卖了" })).await;
        assert_eq!(st, StatusCode::OK, "{c}");
        let l4 = publish(&app, &s, &d, "桌子", 1000).await;
        let o4 = open_order(&app, &b1, l4).await;
        let (st, c) = act(&app, &b1, o4, "cancel", json!({})).await;
        assert_eq!(st, StatusCode::OK, "{c}");

        let rep = reputation_of(&app, &b3, s.id).await;
        assert_eq!(rep["completed_sales"], 2, "{rep}");
        assert_eq!(rep["completed_purchases"], 1);
        assert_eq!(rep["rating_count"], 2);
        assert_eq!(rep["average_rating"], 3.5);
        assert_eq!(rep["positive_rate"], 0.5);
        assert_eq!(rep["completion_rate"], 0.67, "2 / (2 + 1)");
        assert_eq!(reputation_of(&app, &b3, b1.id).await["rating_count"], 1, "S's review of B1 for o5 is still sealed");
        assert_consistent(&app).await;

        // An operator hides B2's review of S: it stops counting and disappears.
        let (_, page) = app.get(&format!("/api/v1/orders/{o2}/reviews"), Some(&s.token)).await;
        let abusive = page["theirs"]["id"].as_i64().unwrap();
        // Through the operator API: a moderator of another school may not; one of the demo school may, with a
        // reason (required).
        let elsewhere = other_school(&app).await;
        let outsider = app.operator(Role::Moderator, Some(&[elsewhere])).await;
        let moderator = app.operator(Role::Moderator, Some(&[d.school])).await;
        let hide = format!("/admin/api/v1/reviews/{abusive}/hide");
        let (st, b) = app.post(&hide, Some(&outsider), &json!({ "reason": "辱骂" })).await;
        assert_eq!((st, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("outside_school_scope")), "{b}");
        let (st, b) = app.post(&hide, Some(&moderator), &json!({ "reason": "  " })).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let (st, hidden) = app.post(&hide, Some(&moderator), &json!({ "reason": "辱骂" })).await;
        assert_eq!(st, StatusCode::OK, "{hidden}");
        assert_eq!((hidden["hidden"].clone(), hidden["hidden_reason"].clone()), (json!(true), json!("辱骂")));
        let (_, listed) = app.get(&format!("/admin/api/v1/reviews?user_id={}&hidden=true", s.id), Some(&moderator)).await;
        assert_eq!(listed["items"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect::<Vec<_>>(), vec![json!(abusive)]);
        assert_eq!(listed["items"][0]["school_id"], d.school, "the school of the order's listing: {listed}");
        let rep = reputation_of(&app, &b3, s.id).await;
        assert_eq!((rep["rating_count"].clone(), rep["average_rating"].clone()), (json!(1), json!(5.0)));
        assert!(public_reviews(&app, &b3, s.id).await.iter().all(|r| r["id"] != abusive));
        let (st, _) = app.post(&format!("/api/v1/reviews/{abusive}/reply"), Some(&s.token), &json!({ "text": "？" })).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (_, written) = app.get("/api/v1/me/reviews?direction=written", Some(&b2.token)).await;
        let own = written["items"].as_array().unwrap().iter().find(|r| r["id"] == abusive).unwrap().clone();
        assert_eq!(own["hidden"], true, "the author sees it is hidden");
        let (st, b) = app.patch(&format!("/api/v1/reviews/{abusive}"), Some(&b2.token), &json!({ "rating": 5 })).await;
        assert_eq!((st, b["code"].as_str()), (StatusCode::CONFLICT, Some("review_hidden")));
        // Hiding twice changes nothing.
        let (st, _) = app.post(&hide, Some(&moderator), &json!({ "reason": "再次" })).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(reputation_of(&app, &b3, s.id).await["rating_count"], 1);
        assert_consistent(&app).await;

        // Recompute from scratch: the same counters.
        let before = reputation::all_stored(&app.state.db).await.unwrap();
        let n = reputation::recompute(&app.state.db).await.unwrap();
        assert_eq!(n as usize, before.len());
        assert_eq!(reputation::all_stored(&app.state.db).await.unwrap(), before);

        // Shown again: counts again.
        let (st, shown) = app.post(&format!("/admin/api/v1/reviews/{abusive}/unhide"), Some(&moderator), &json!({})).await;
        assert_eq!((st, shown["hidden"].clone()), (StatusCode::OK, json!(false)), "{shown}");
        assert_eq!(reputation_of(&app, &b3, s.id).await["rating_count"], 2);
        assert_consistent(&app).await;
        let (st, b) = app.post("/admin/api/v1/reviews/999999/hide", Some(&moderator), &json!({ "reason": "x" })).await;
        assert_eq!((st, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        // The service function behind it, directly: unknown ids are 404 there too.
        let txn = app.state.db.begin().await.unwrap();
        let missing = reviews::set_hidden(&txn, 999_999, true, "op.li", None).await;
        assert!(matches!(missing, Err(campus_trade::error::AppError::NotFound { .. })));
    }
);

app_test!(
    async fn me_summary_counts_a_scripted_history(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "ms", &d).await;
        let buyer = student(&app, "mb", &d).await;

        // Seller: three on sale, one reserved by an open order, one sold; one withdrawn.
        let mut on_sale = Vec::new();
        for t in ["书", "笔", "包"] {
            on_sale.push(publish(&app, &seller, &d, t, 500).await);
        }
        let reserved = publish(&app, &seller, &d, "台灯", 800).await;
        open_order(&app, &buyer, reserved).await;
        let done = deal(&app, &d, &seller, &buyer, "风扇").await;
        let gone = publish(&app, &seller, &d, "杯子", 300).await;
        let (st, _) = app.post(&format!("/api/v1/listings/{gone}/withdraw"), Some(&seller.token), &json!({})).await;
        assert_eq!(st, StatusCode::OK);
        // The buyer favourites two items and cancels a third order.
        for l in &on_sale[..2] {
            let (st, _, _) = app.send(Method::PUT, &format!("/api/v1/listings/{l}/favorite"), Some(&buyer.token), None).await;
            assert!(st.is_success());
        }
        let third = open_order(&app, &buyer, on_sale[2]).await;
        let (st, _) = act(&app, &buyer, third, "cancel", json!({})).await;
        assert_eq!(st, StatusCode::OK);

        let (st, sm) = app.get("/api/v1/me/summary", Some(&seller.token)).await;
        assert_eq!(st, StatusCode::OK, "{sm}");
        assert_eq!(sm["listings"], json!({ "on_sale": 3, "reserved": 1, "sold": 1, "pending_review": 0, "withdrawn": 1 }));
        assert_eq!(sm["sales"]["pending_handover"], 1);
        assert_eq!(sm["sales"]["completed"], 1);
        assert_eq!(sm["sales"]["cancelled"], 1);
        assert_eq!(sm["purchases"]["completed"], 0);
        assert_eq!(sm["pending_reviews"], 1);
        assert_eq!(sm["favorites"], 0);

        let (st, bm) = app.get("/api/v1/me/summary", Some(&buyer.token)).await;
        assert_eq!(st, StatusCode::OK, "{bm}");
        assert_eq!(bm["listings"]["on_sale"], 0);
        assert_eq!(bm["purchases"], json!({
            "pending_payment": 0, "pending_handover": 1, "paid": 0, "refund_requested": 0, "disputed": 0,
            "refunded": 0, "completed": 1, "settled": 0, "cancelled": 1,
        }));
        assert_eq!(bm["favorites"], 2);
        assert_eq!(bm["pending_reviews"], 1);
        // Unread counts are the same as the chat and inbox badges say.
        let (_, chat) = app.get("/api/v1/conversations/unread", Some(&buyer.token)).await;
        assert_eq!(bm["unread_messages"], chat["unread"]);
        assert!(bm["unread_messages"].as_u64().unwrap() > 0, "the order cards are unread");
        let (_, inbox) = app.get("/api/v1/me/notifications", Some(&buyer.token)).await;
        assert_eq!(bm["unread_notifications"], inbox["unread_count"]);
        let (st, _) = app.post("/api/v1/me/notifications/read-all", Some(&buyer.token), &json!({})).await;
        assert!(st.is_success());

        // Reviewing and reading change the badges.
        let (st, _) = review(&app, &buyer, done, json!({ "rating": 5 })).await;
        assert_eq!(st, StatusCode::OK);
        let (_, bm) = app.get("/api/v1/me/summary", Some(&buyer.token)).await;
        assert_eq!(bm["pending_reviews"], 0);
        assert_eq!(bm["unread_notifications"], 0);

        // The chat response time on the profile: the buyer asks about an item, the seller answers.
        assert!(reputation_of(&app, &buyer, seller.id).await["median_response_seconds"].is_null());
        let (st, c) = app.post("/api/v1/conversations", Some(&buyer.token), &json!({ "listing_id": on_sale[0] })).await;
        assert!(st.is_success(), "{c}");
        let conv = c["id"].as_i64().unwrap();
        for (who, n) in [(&buyer, "q1"), (&seller, "a1")] {
            let (st, m) = app.post(&format!("/api/v1/conversations/{conv}/messages"), Some(&who.token), &json!({ "client_msg_id": n, "kind": "text", "text": "还在吗" })).await;
            assert!(st.is_success(), "{m}");
        }
        let rep = reputation_of(&app, &buyer, seller.id).await;
        assert!(rep["median_response_seconds"].as_i64().is_some_and(|s| (0..60).contains(&s)), "{rep}");
    }
);

app_test!(
    async fn export_holds_reviews_and_deleting_keeps_them_anonymised(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let seller = student(&app, "es", &d).await;
        let buyer = student(&app, "eb", &d).await;
        let id = deal(&app, &d, &seller, &buyer, "吉他").await;
        let (st, mine) = review(&app, &buyer, id, json!({ "rating": 5, "text": "音色很好" })).await;
        assert_eq!(st, StatusCode::OK);
        let (st, theirs) = review(&app, &seller, id, json!({ "rating": 4 })).await;
        assert_eq!(st, StatusCode::OK);
        // A second deal whose review of the buyer is still sealed.
        let sealed_order = deal(&app, &d, &seller, &buyer, "琴包").await;
        let (st, sealed) = review(&app, &seller, sealed_order, json!({ "rating": 1 })).await;
        assert_eq!(st, StatusCode::OK);

        let (st, export) = app.get("/api/v1/me/export", Some(&buyer.token)).await;
        assert_eq!(st, StatusCode::OK, "{export}");
        let data = &export["data"];
        let ids = |section: &str| -> Vec<Value> {
            data[section].as_array().unwrap_or_else(|| panic!("section {section}: {export}"))
                .iter().map(|r| r["id"].clone()).collect()
        };
        assert_eq!(ids("reviews_written"), vec![mine["id"].clone()]);
        assert_eq!(data["reviews_written"][0]["body"], "音色很好");
        assert_eq!(ids("reviews_received"), vec![theirs["id"].clone()], "not the sealed one");
        assert!(!ids("reviews_received").contains(&sealed["id"]));
        assert_eq!(ids("orders_bought"), vec![json!(id), json!(sealed_order)]);
        assert!(ids("orders_sold").is_empty());
        assert_eq!(data["reputation"][0]["completed_purchases"], 2);
        assert!(!data["conversations_as_buyer"].as_array().unwrap().is_empty());
        assert!(!export.to_string().contains("handover_code"), "hand-over codes are never exported");

        // The buyer deletes the account: the review of the seller stays, anonymised.
        let (st, _, _) = app.send(Method::DELETE, "/api/v1/me", Some(&buyer.token), None).await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let public = public_reviews(&app, &seller, seller.id).await;
        assert_eq!(public.len(), 1);
        assert_eq!(public[0]["text"], "音色很好");
        assert!(public[0]["reviewer"]["id"].is_null(), "{}", public[0]);
        assert_eq!(public[0]["reviewer"]["nickname"], "已注销用户");
        let row = user::Entity::find_by_id(buyer.id).one(&app.state.db).await.unwrap().unwrap();
        assert_eq!(row.nickname, "已注销用户");
        assert_consistent(&app).await;
    }
);

app_test!(
    async fn inbox_events_go_out_as_subscribe_messages_when_configured(backend) {
        const TEMPLATE: &str = "tmpl-order-done";
        let templates = format!("order_completed={TEMPLATE}");
        let app = TestApp::spawn_with(backend, &[("WECHAT_SUBSCRIBE_TEMPLATES", templates.as_str())]).await;
        // The first sweep starts the watermark: earlier notifications are not news.
        campus_trade::notifications::subscribe::sweep(&app.state).await.unwrap();
        let d = demo(&app).await;
        let seller = student(&app, "nseller", &d).await;
        let buyer = student(&app, "nbuyer", &d).await;
        let (s, b) = app.post("/sandbox/wechat/_sandbox/templates", None, &json!({ "template_id": TEMPLATE, "keys": ["thing1", "thing2", "time3"] })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let buyer_openid = openid_for("nbuyer");
        let (s, b) = app.post("/sandbox/wechat/_sandbox/subscriptions", None, &json!({ "openid": buyer_openid, "template_id": TEMPLATE, "count": 5 })).await;
        assert_eq!(s, StatusCode::OK, "{b}");

        let id = deal(&app, &d, &seller, &buyer, "九成新的二手自行车，骑了一年，送车锁").await;
        // Notifications settle for a moment before the sweep takes them.
        tokio::time::sleep(campus_trade::notifications::subscribe::SETTLE + std::time::Duration::from_millis(300)).await;
        campus_trade::notifications::subscribe::sweep(&app.state).await.unwrap();
        let url = format!("/sandbox/wechat/_sandbox/subscribe-messages?touser={buyer_openid}");
        let mut got = Vec::new();
        for _ in 0..200 {
            got = app.get(&url, None).await.1["messages"].as_array().unwrap().clone();
            if !got.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(got.len(), 1, "only the mapped kind goes out: {got:?}");
        assert_eq!(got[0]["template_id"], TEMPLATE);
        assert_eq!(got[0]["page"], format!("pages/order/detail?id={id}"));
        assert_eq!(got[0]["data"]["thing1"]["value"], "交易完成");
        assert_eq!(got[0]["data"]["thing2"]["value"].as_str().unwrap().chars().count(), 20);
        // Nothing twice.
        campus_trade::notifications::subscribe::sweep(&app.state).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(app.get(&url, None).await.1["messages"].as_array().unwrap().len(), 1);
    }
);
