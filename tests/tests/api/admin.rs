//! The operator API: its own OpenAPI document, the role matrix and student tokens walked over every operation
//! of that document, audit completeness walked over every mutating operation, login with lockout and TOTP,
//! bans, rosters, school scoping, the moderation queue, the catalogue, settings and statistics.

use std::collections::BTreeMap;

use campus_trade::{
    admin::{audit::audit_log, auth::Role, totp},
    orders::service::{Decision, decide_dispute},
};
use campus_trade_tests::{
    Student, TestApp, TestOperator, app_test,
    ws::{Auth, ChatSocket},
};
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use super::{
    orders::act,
    payments::{Deal, deal, paid_deal, prepay, sandbox_state},
};

// ---------------------------------------------------------------------------------------------------------------
// Fixtures

struct Fx {
    school: i64,
    campus: i64,
    place: i64,
    lamps: i64,
    boards: Vec<Value>,
}

impl Fx {
    fn board(&self, slug: &str) -> i64 {
        self.boards.iter().find(|b| b["slug"] == slug).unwrap()["id"]
            .as_i64()
            .unwrap()
    }
}

async fn fixture(app: &TestApp) -> Fx {
    let (_, schools) = app.get("/api/v1/schools", None).await;
    let demo = schools
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slug"] == "demo-university")
        .unwrap()
        .clone();
    let school = demo["id"].as_i64().unwrap();
    let campus = demo["campuses"][0]["id"].as_i64().unwrap();
    let (_, places) = app
        .get(&format!("/api/v1/campuses/{campus}/places"), None)
        .await;
    let (_, cats) = app.get("/api/v1/categories", None).await;
    let lamps = cats
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["children"].as_array().unwrap().iter())
        .find(|c| c["slug"] == "lamps")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (_, boards) = app
        .get(&format!("/api/v1/boards?school_id={school}"), None)
        .await;
    Fx {
        school,
        campus,
        place: places[0]["id"].as_i64().unwrap(),
        lamps,
        boards: boards.as_array().unwrap().clone(),
    }
}

/// A second school with one campus, through the operator API.
async fn other_school(app: &TestApp, admin: &str, slug: &str) -> (i64, i64) {
    let (s, school) = app
        .post(
            "/admin/api/v1/schools",
            Some(admin),
            &json!({ "slug": slug, "name": format!("{slug} 大学"), "short_name": slug }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{school}");
    let id = school["id"].as_i64().unwrap();
    let (s, campus) = app
        .post(
            &format!("/admin/api/v1/schools/{id}/campuses"),
            Some(admin),
            &json!({ "name": "本部" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{campus}");
    (id, campus["id"].as_i64().unwrap())
}

async fn student(app: &TestApp, who: &str, school: i64) -> Student {
    let s = app.login(who).await;
    let (status, b) = app
        .patch(
            "/api/v1/me",
            Some(&s.token),
            &json!({ "school_id": school, "nickname": format!("N{who}") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    s
}

async fn upload(app: &TestApp, s: &Student) -> i64 {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 60])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let (status, up) = app
        .upload_file(Some(&s.token), "p.png", "image/png", &png.into_inner())
        .await;
    assert_eq!(status, StatusCode::OK, "{up}");
    up["id"].as_i64().unwrap()
}

/// A listing; a description with 加微信 is held for review by the sandbox's content security.
async fn sell(app: &TestApp, s: &Student, fx: &Fx, title: &str, description: &str) -> Value {
    let img = upload(app, s).await;
    let body = json!({
        "title": title, "description": description, "price": 1500, "condition": "good",
        "category_id": fx.lamps, "image_ids": [img], "trade_methods": ["meetup"],
    });
    let (status, l) = app.post("/api/v1/listings", Some(&s.token), &body).await;
    assert_eq!(status, StatusCode::OK, "{l}");
    l
}

async fn post(app: &TestApp, s: &Student, fx: &Fx, title: &str) -> i64 {
    let (status, p) = app
        .post(
            "/api/v1/posts",
            Some(&s.token),
            &json!({ "board_id": fx.board("chat"), "title": title, "body": "周末有空" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    p["id"].as_i64().unwrap()
}

async fn comment(app: &TestApp, s: &Student, post_id: i64, body: &str) -> i64 {
    let (status, c) = app
        .post(
            &format!("/api/v1/posts/{post_id}/comments"),
            Some(&s.token),
            &json!({ "body": body }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    c["id"].as_i64().unwrap()
}

async fn report(app: &TestApp, s: &Student, target_type: &str, id: i64) {
    let (status, b) = app
        .post(
            "/api/v1/reports",
            Some(&s.token),
            &json!({ "target_type": target_type, "target_id": id, "reason": "spam" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
}

async fn inbox(app: &TestApp, s: &Student) -> Vec<Value> {
    let (status, b) = app.get("/api/v1/me/notifications", Some(&s.token)).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().clone()
}

/// Audit rows after `after_id`, oldest first.
async fn audit_since(app: &TestApp, after_id: i64) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Id.gt(after_id))
        .order_by_asc(audit_log::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap()
}

async fn last_audit_id(app: &TestApp) -> i64 {
    audit_log::Entity::find()
        .order_by_desc(audit_log::Column::Id)
        .one(&app.state.db)
        .await
        .unwrap()
        .map(|r| r.id)
        .unwrap_or(0)
}

/// A paid WeChat Pay order whose seller refused the buyer's refund: a dispute for an operator.
async fn disputed_deal(app: &TestApp, price: i64) -> Deal {
    let d = paid_deal(app, price).await;
    let (s, b) = act(
        app,
        &d.buyer,
        d.order,
        "refund-request",
        json!({ "reason": "东西是坏的" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = act(
        app,
        &d.seller,
        d.order,
        "refund-response",
        json!({ "accept": false, "reason": "交货时是好的" }),
    )
    .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("disputed")),
        "{b}"
    );
    d
}

/// Makes the sandbox's next call of `kind` fail with `fault`.
async fn fail_next(app: &TestApp, kind: &str, fault: &str, delay_ms: Option<u64>) {
    let mut body = json!({ "kind": kind, "fault": fault });
    if let Some(ms) = delay_ms {
        body["delay_ms"] = ms.into();
    }
    let (s, b) = app
        .post("/sandbox/wechatpay/_sandbox/fail-next", None, &body)
        .await;
    assert!(s.is_success(), "{b}");
}

/// The order's first refund as the operator API shows it, once `pred` holds (refunds move in the background).
async fn wait_refund(app: &TestApp, order: i64, pred: impl Fn(&Value) -> bool) -> Value {
    let admin = app.operator(Role::Admin, None).await;
    let mut last = Value::Null;
    for _ in 0..300 {
        let (s, o) = app
            .get(&format!("/admin/api/v1/orders/{order}"), Some(&admin))
            .await;
        assert_eq!(s, StatusCode::OK, "{o}");
        last = o["refunds"][0].clone();
        if !last.is_null() && pred(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the refund of order {order} never got there: {last}");
}

fn totp_now(secret: &str) -> String {
    let key = totp::base32_decode(secret).unwrap();
    totp::totp(&key, chrono::Utc::now().timestamp() as u64, 6)
}

// ---------------------------------------------------------------------------------------------------------------
// The OpenAPI document, walked

/// One operation of the operator API's OpenAPI document.
#[derive(Debug, Clone)]
struct Op {
    method: Method,
    /// As in the document, with `{id}` parameters.
    path: String,
    id: String,
    secured: bool,
    description: String,
    /// Content types of the request body, if it has one.
    body: Vec<String>,
}

async fn operations(app: &TestApp) -> Vec<Op> {
    let (status, spec) = app.get("/admin/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push(Op {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                id: op["operationId"].as_str().unwrap_or_default().to_string(),
                secured: op["security"].as_array().is_some_and(|s| !s.is_empty()),
                description: format!(
                    "{} {}",
                    op["summary"].as_str().unwrap_or_default(),
                    op["description"].as_str().unwrap_or_default()
                ),
                body: op["requestBody"]["content"]
                    .as_object()
                    .map(|c| c.keys().cloned().collect())
                    .unwrap_or_default(),
            });
        }
    }
    assert!(
        ops.len() > 40,
        "the document lists only {} operations",
        ops.len()
    );
    ops
}

fn concrete(path: &str, id: i64) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&rest[..start]);
        out.push_str(&id.to_string());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    format!("/admin/api{out}")
}

/// Calls an operation with every id replaced by `id` and a minimal body (`{}` or an empty CSV).
async fn call_blind(app: &TestApp, op: &Op, token: Option<&str>, id: i64) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(op.method.clone(), app.url(&concrete(&op.path, id)));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if op.body.iter().any(|c| c == "application/json") {
        req = req.json(&json!({}));
    } else if op.body.iter().any(|c| c == "text/csv") {
        req = req.header("content-type", "text/csv").body("");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, body)
}

/// Every operation of the operator API and the permission it needs: `none` (login), `any` (any operator), or
/// a permission. A new operation without a row here fails the role-matrix test.
const MATRIX: &[(&str, &str)] = &[
    ("operator_login", "none"),
    ("operator_logout", "any"),
    ("operator_me", "any"),
    ("change_own_password", "any"),
    ("start_totp_enrolment", "any"),
    ("confirm_totp_enrolment", "any"),
    ("disable_totp", "any"),
    ("list_operators", "operators"),
    ("create_operator", "operators"),
    ("get_operator", "operators"),
    ("update_operator", "operators"),
    ("list_audit_log", "audit"),
    ("moderation_queue", "moderation"),
    ("decide_moderation", "moderation"),
    ("list_blocked_words", "moderation"),
    ("add_blocked_word", "moderation"),
    ("remove_blocked_word", "moderation"),
    ("search_users", "user_lookup"),
    ("get_user", "user_lookup"),
    ("user_listings", "user_lookup"),
    ("user_reports", "user_lookup"),
    ("ban_user", "users"),
    ("unban_user", "users"),
    ("list_verification_requests", "users"),
    ("approve_verification", "users"),
    ("reject_verification", "users"),
    ("upload_roster", "users"),
    ("admin_list_schools", "any"),
    ("create_school", "catalogue"),
    ("update_school", "catalogue"),
    ("delete_school", "catalogue"),
    ("create_campus", "catalogue"),
    ("update_campus", "catalogue"),
    ("delete_campus", "catalogue"),
    ("admin_list_places", "catalogue"),
    ("create_place", "catalogue"),
    ("update_place", "catalogue"),
    ("delete_place", "catalogue"),
    ("admin_list_categories", "catalogue"),
    ("create_category", "catalogue"),
    ("update_category", "catalogue"),
    ("delete_category", "catalogue"),
    ("admin_list_boards", "catalogue"),
    ("create_board", "catalogue"),
    ("update_board", "catalogue"),
    ("delete_board", "catalogue"),
    ("pin_post", "moderation"),
    ("unpin_post", "moderation"),
    ("lock_post", "moderation"),
    ("unlock_post", "moderation"),
    ("remove_post", "moderation"),
    ("remove_comment", "moderation"),
    ("admin_list_reviews", "moderation"),
    ("hide_review", "moderation"),
    ("unhide_review", "moderation"),
    ("list_orders", "orders"),
    ("get_order", "orders"),
    ("decide_dispute", "orders"),
    ("retry_refund", "orders"),
    ("retry_payout", "orders"),
    ("query_payment", "orders"),
    ("get_settings", "settings"),
    ("update_settings", "settings"),
    ("get_stats", "stats"),
];

/// What each role may do (docs/operators.md has the same table).
const ROLES: &[(Role, &[&str])] = &[
    (
        Role::Admin,
        &[
            "operators",
            "settings",
            "catalogue",
            "audit",
            "moderation",
            "users",
            "user_lookup",
            "orders",
            "stats",
        ],
    ),
    (
        Role::Moderator,
        &["moderation", "users", "user_lookup", "stats"],
    ),
    (Role::Support, &["orders", "user_lookup", "stats"]),
];

app_test!(
    async fn the_operator_api_has_its_own_complete_document(backend) {
        let app = TestApp::spawn(backend).await;
        let (s, spec) = app.get("/admin/api/openapi.json", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(spec["servers"][0]["url"], "/admin/api");
        let scheme = &spec["components"]["securitySchemes"]["OperatorAuth"];
        assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")), "{scheme}");
        assert!(spec["components"]["securitySchemes"].get("StudentAuth").is_none(), "student scheme leaked in");
        for op in operations(&app).await {
            assert!(op.path.starts_with("/v1/"), "{}", op.path);
            assert!(!op.id.is_empty(), "{} {} has no operationId", op.method, op.path);
            assert!(op.description.trim().len() > 20, "{} is not described", op.id);
            assert_eq!(op.secured, op.id != "operator_login", "{}: security", op.id);
        }
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has no tag");
                // Every success answer says what it carries (or is a 204).
                let ok = op["responses"].as_object().unwrap();
                let (code, resp) = ok.iter().find(|(c, _)| c.starts_with('2')).expect("a success response");
                assert!(code == "204" || resp["content"].is_object(), "{method} {path}: {code} without a schema");
                assert!(ok.contains_key("403") && ok.contains_key("401"), "{method} {path}: error answers undocumented");
            }
        }
        // The students' document knows nothing of operators.
        let (_, student) = app.get("/api/openapi.json", None).await;
        assert!(!student.to_string().contains("/v1/moderation/queue"));
        let resp = app.http.get(app.url("/admin/api/docs")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.text().await.unwrap().contains("swagger"), "Swagger UI is served");
    }
);

app_test!(
    async fn every_operation_is_in_the_role_matrix_and_roles_are_enforced(backend) {
        let app = TestApp::spawn(backend).await;
        let ops = operations(&app).await;
        let table: BTreeMap<&str, &str> = MATRIX.iter().copied().collect();
        for op in &ops {
            let Some(perm) = table.get(op.id.as_str()) else {
                panic!("{} ({} {}) has no row in the role matrix", op.id, op.method, op.path);
            };
            let declared = match *perm {
                "none" => "Permission: none".to_string(),
                "any" => "Permission: any operator".to_string(),
                p => format!("Permission: `{p}`"),
            };
            assert!(op.description.contains(&declared), "{} does not declare {declared:?}: {}", op.id, op.description);
        }
        for (id, _) in MATRIX {
            assert!(ops.iter().any(|o| o.id == *id), "the matrix names {id}, which the document does not have");
        }
        for (role, perms) in ROLES {
            let mut me: TestOperator = app.operator_account(*role, None).await;
            for op in &ops {
                let perm = table[op.id.as_str()];
                if perm == "none" {
                    continue;
                }
                let allowed = perm == "any" || perms.contains(&perm);
                let (status, body) = call_blind(&app, op, Some(&me.token), 999_999_999).await;
                if allowed {
                    assert!(
                        status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                        "{role:?} should be allowed {}: {status} {body}",
                        op.id
                    );
                } else {
                    assert_eq!(
                        (status, body["code"].as_str()),
                        (StatusCode::FORBIDDEN, Some("permission_denied")),
                        "{role:?} should be refused {}: {body}",
                        op.id
                    );
                }
                if op.id == "operator_logout" {
                    me.token = app.operator_login(&me.username, &me.password).await;
                }
            }
        }
    }
);

app_test!(
    async fn student_tokens_and_no_token_get_401_on_every_operator_endpoint(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let ops = operations(&app).await;
        for op in ops.iter().filter(|o| o.secured) {
            for token in [Some(alice.token.as_str()), None, Some("cto_forged")] {
                let (status, body) = call_blind(&app, op, token, 1).await;
                assert_eq!(
                    (status, body["code"].as_str()),
                    (StatusCode::UNAUTHORIZED, Some("unauthorized")),
                    "{} with {token:?}: {body}",
                    op.id
                );
            }
        }
        // And an operator token is no student session either.
        let op = app.operator(Role::Admin, None).await;
        let (s, _) = app.get("/api/v1/me", Some(&op)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
);

// ---------------------------------------------------------------------------------------------------------------
// Audit completeness

enum Body {
    None,
    Json(Value),
    Csv(String),
}

/// A successful call of one operation, and the operator it acts as.
struct Call {
    method: Method,
    path: String,
    token: Option<String>,
    body: Body,
    actor: i64,
}

fn call(method: Method, path: String, token: &str, body: Body, actor: i64) -> Call {
    Call {
        method,
        path: format!("/admin/api/v1{path}"),
        token: Some(token.to_string()),
        body,
        actor,
    }
}

async fn send(app: &TestApp, c: &Call) -> (StatusCode, Value) {
    let mut req = app.http.request(c.method.clone(), app.url(&c.path));
    if let Some(t) = &c.token {
        req = req.bearer_auth(t);
    }
    req = match &c.body {
        Body::None => req,
        Body::Json(v) => req.json(v),
        Body::Csv(text) => req
            .header("content-type", "text/csv; charset=utf-8")
            .body(text.clone()),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null),
    )
}

async fn created_id(app: &TestApp, admin: &str, path: &str, body: Value) -> i64 {
    let (s, b) = app
        .post(&format!("/admin/api/v1{path}"), Some(admin), &body)
        .await;
    assert_eq!(s, StatusCode::OK, "{path}: {b}");
    b["id"].as_i64().unwrap()
}

async fn pending_verification(app: &TestApp, who: &str, fx: &Fx, number: &str) -> i64 {
    let s = student(app, who, fx.school).await;
    let (status, b) = app
        .post(
            "/api/v1/me/verification",
            Some(&s.token),
            &json!({ "school_id": fx.school, "student_number": number }),
        )
        .await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{b}"
    );
    campus_trade::users::service::pending_verifications(&app.state.db, Some(fx.school))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.user_id == s.id)
        .unwrap()
        .id
}

/// How to call each mutating operation successfully (setting up what it needs first).
async fn recipe(app: &TestApp, fx: &Fx, admin: &TestOperator, op: &str, n: usize) -> Option<Call> {
    let a = admin.token.as_str();
    let me = admin.id;
    Some(match op {
        "operator_login" => {
            let o = app.operator_account(Role::Support, None).await;
            Call {
                method: Method::POST,
                path: "/admin/api/v1/auth/login".into(),
                token: None,
                body: Body::Json(json!({ "username": o.username, "password": o.password })),
                actor: o.id,
            }
        }
        "operator_logout" => {
            let o = app.operator_account(Role::Support, None).await;
            call(
                Method::POST,
                "/auth/logout".into(),
                &o.token,
                Body::None,
                o.id,
            )
        }
        "change_own_password" => {
            let o = app.operator_account(Role::Moderator, None).await;
            let body =
                json!({ "current_password": o.password, "new_password": "a brand new passphrase" });
            call(
                Method::POST,
                "/me/password".into(),
                &o.token,
                Body::Json(body),
                o.id,
            )
        }
        "start_totp_enrolment" => {
            let o = app.operator_account(Role::Moderator, None).await;
            call(Method::POST, "/me/totp".into(), &o.token, Body::None, o.id)
        }
        "confirm_totp_enrolment" => {
            let o = app.operator_account(Role::Moderator, None).await;
            let (s, e) = app
                .post("/admin/api/v1/me/totp", Some(&o.token), &json!({}))
                .await;
            assert_eq!(s, StatusCode::OK, "{e}");
            let code = totp_now(e["secret"].as_str().unwrap());
            call(
                Method::POST,
                "/me/totp/confirm".into(),
                &o.token,
                Body::Json(json!({ "code": code })),
                o.id,
            )
        }
        "disable_totp" => {
            let o = app.operator_account(Role::Moderator, None).await;
            let (s, e) = app
                .post("/admin/api/v1/me/totp", Some(&o.token), &json!({}))
                .await;
            assert_eq!(s, StatusCode::OK, "{e}");
            let body = json!({ "password": o.password });
            call(
                Method::POST,
                "/me/totp/disable".into(),
                &o.token,
                Body::Json(body),
                o.id,
            )
        }
        "create_operator" => {
            let body = json!({ "username": format!("new-op-{n}"), "password": "a long enough secret", "role": "moderator", "schools": [fx.school] });
            call(Method::POST, "/operators".into(), a, Body::Json(body), me)
        }
        "update_operator" => {
            let o = app.operator_account(Role::Moderator, None).await;
            call(
                Method::PATCH,
                format!("/operators/{}", o.id),
                a,
                Body::Json(json!({ "role": "support" })),
                me,
            )
        }
        "decide_moderation" => {
            let s = student(app, &format!("held{n}"), fx.school).await;
            let l = sell(app, &s, fx, "台灯", "有意加微信").await;
            assert_eq!(l["status"], "pending_review");
            let body = json!({ "decision": "approve", "items": [{ "target_type": "listing", "target_id": l["id"] }] });
            call(
                Method::POST,
                "/moderation/decisions".into(),
                a,
                Body::Json(body),
                me,
            )
        }
        "add_blocked_word" => {
            let body =
                json!({ "word": format!("广告词{n}"), "action": "review", "label": "advertising" });
            call(Method::POST, "/blocklist".into(), a, Body::Json(body), me)
        }
        "remove_blocked_word" => {
            let w = campus_trade::moderation::service::add_blocked_word(
                &app.state,
                &format!("删除词{n}"),
                campus_trade::moderation::model::blocked_word::Action::Risky,
                "illegal",
            )
            .await
            .unwrap();
            call(
                Method::DELETE,
                format!("/blocklist/{}", w.id),
                a,
                Body::None,
                me,
            )
        }
        "ban_user" => {
            let s = student(app, &format!("ban{n}"), fx.school).await;
            call(
                Method::POST,
                format!("/users/{}/ban", s.id),
                a,
                Body::Json(json!({ "reason": "发布违禁物品" })),
                me,
            )
        }
        "unban_user" => {
            let s = student(app, &format!("unban{n}"), fx.school).await;
            campus_trade::users::service::ban_user(&app.state, s.id, "刷单", None)
                .await
                .unwrap();
            call(
                Method::POST,
                format!("/users/{}/unban", s.id),
                a,
                Body::Json(json!({})),
                me,
            )
        }
        "approve_verification" => {
            let id =
                pending_verification(app, &format!("ver{n}"), fx, &format!("2024{n:06}")).await;
            call(
                Method::POST,
                format!("/verifications/{id}/approve"),
                a,
                Body::None,
                me,
            )
        }
        "reject_verification" => {
            let id =
                pending_verification(app, &format!("rej{n}"), fx, &format!("2023{n:06}")).await;
            call(
                Method::POST,
                format!("/verifications/{id}/reject"),
                a,
                Body::Json(json!({ "reason": "照片不清晰" })),
                me,
            )
        }
        "upload_roster" => call(
            Method::POST,
            format!("/schools/{}/roster", fx.school),
            a,
            Body::Csv("student_number,graduation_year\n2025000001,2029\n".into()),
            me,
        ),
        "create_school" => {
            let body =
                json!({ "slug": format!("school-{n}"), "name": "新大学", "short_name": "新大" });
            call(Method::POST, "/schools".into(), a, Body::Json(body), me)
        }
        "update_school" => call(
            Method::PATCH,
            format!("/schools/{}", fx.school),
            a,
            Body::Json(json!({ "short_name": "演示" })),
            me,
        ),
        "delete_school" => {
            let id = created_id(
                app,
                a,
                "/schools",
                json!({ "slug": format!("gone-{n}"), "name": "将删除", "short_name": "删" }),
            )
            .await;
            call(Method::DELETE, format!("/schools/{id}"), a, Body::None, me)
        }
        "create_campus" => call(
            Method::POST,
            format!("/schools/{}/campuses", fx.school),
            a,
            Body::Json(json!({ "name": format!("新校区{n}") })),
            me,
        ),
        "update_campus" => {
            let id = created_id(
                app,
                a,
                &format!("/schools/{}/campuses", fx.school),
                json!({ "name": format!("旧名{n}") }),
            )
            .await;
            call(
                Method::PATCH,
                format!("/campuses/{id}"),
                a,
                Body::Json(json!({ "name": format!("新名{n}") })),
                me,
            )
        }
        "delete_campus" => {
            let id = created_id(
                app,
                a,
                &format!("/schools/{}/campuses", fx.school),
                json!({ "name": format!("临时{n}") }),
            )
            .await;
            call(Method::DELETE, format!("/campuses/{id}"), a, Body::None, me)
        }
        "create_place" => call(
            Method::POST,
            format!("/campuses/{}/places", fx.campus),
            a,
            Body::Json(json!({ "name": format!("食堂门口{n}") })),
            me,
        ),
        "update_place" => call(
            Method::PATCH,
            format!("/places/{}", fx.place),
            a,
            Body::Json(json!({ "position": 7 })),
            me,
        ),
        "delete_place" => {
            let id = created_id(
                app,
                a,
                &format!("/campuses/{}/places", fx.campus),
                json!({ "name": format!("临时点{n}") }),
            )
            .await;
            call(Method::DELETE, format!("/places/{id}"), a, Body::None, me)
        }
        "create_category" => {
            let body = json!({ "slug": format!("cat-{n}"), "name_zh": "新类", "name_en": "New" });
            call(Method::POST, "/categories".into(), a, Body::Json(body), me)
        }
        "update_category" => call(
            Method::PATCH,
            format!("/categories/{}", fx.lamps),
            a,
            Body::Json(json!({ "name_en": "Desk lamps" })),
            me,
        ),
        "delete_category" => {
            let id = created_id(
                app,
                a,
                "/categories",
                json!({ "slug": format!("tmp-{n}"), "name_zh": "临时", "name_en": "Tmp" }),
            )
            .await;
            call(
                Method::DELETE,
                format!("/categories/{id}"),
                a,
                Body::None,
                me,
            )
        }
        "create_board" => call(
            Method::POST,
            format!("/schools/{}/boards", fx.school),
            a,
            Body::Json(json!({ "slug": format!("b-{n}"), "name": "新版块" })),
            me,
        ),
        "update_board" => call(
            Method::PATCH,
            format!("/boards/{}", fx.board("events")),
            a,
            Body::Json(json!({ "position": 9 })),
            me,
        ),
        "delete_board" => {
            let id = created_id(
                app,
                a,
                &format!("/schools/{}/boards", fx.school),
                json!({ "slug": format!("tmp-{n}"), "name": "临时" }),
            )
            .await;
            call(Method::DELETE, format!("/boards/{id}"), a, Body::None, me)
        }
        "update_settings" => call(
            Method::PATCH,
            "/settings".into(),
            a,
            Body::Json(json!({ "report_hide_threshold": 4 })),
            me,
        ),
        "pin_post" | "unpin_post" | "lock_post" | "unlock_post" | "remove_post" => {
            let s = student(app, &format!("poster{n}"), fx.school).await;
            let p = post(app, &s, fx, "出二手书").await;
            let verb = op.trim_end_matches("_post");
            let body = if verb == "remove" {
                Body::Json(json!({ "reason": "广告" }))
            } else {
                Body::None
            };
            call(Method::POST, format!("/posts/{p}/{verb}"), a, body, me)
        }
        "hide_review" | "unhide_review" => {
            // A completed offline deal in the demo school, reviewed by the buyer; unhiding needs a hidden review.
            let d = super::orders::demo(app).await;
            let seller = super::orders::student(app, &format!("rvseller{n}"), &d).await;
            let buyer = super::orders::student(app, &format!("rvbuyer{n}"), &d).await;
            let order = super::reviews::deal(app, &d, &seller, &buyer, "旧台灯").await;
            let (s, r) = super::reviews::review(app, &buyer, order, json!({ "rating": 1 })).await;
            assert_eq!(s, StatusCode::OK, "{r}");
            let id = r["id"].as_i64().unwrap();
            let txn = sea_orm::TransactionTrait::begin(&app.state.db)
                .await
                .unwrap();
            if op == "unhide_review" {
                campus_trade::reviews::service::set_hidden(&txn, id, true, "setup", Some("x"))
                    .await
                    .unwrap();
            }
            txn.commit().await.unwrap();
            let (verb, body) = if op == "hide_review" {
                ("hide", Body::Json(json!({ "reason": "辱骂" })))
            } else {
                ("unhide", Body::None)
            };
            call(Method::POST, format!("/reviews/{id}/{verb}"), a, body, me)
        }
        "decide_dispute" => {
            let d = disputed_deal(app, 4000).await;
            call(
                Method::POST,
                format!("/orders/{}/dispute-decision", d.order),
                a,
                Body::Json(json!({ "decision": "complete", "reason": "卖家已证明商品完好" })),
                me,
            )
        }
        "retry_refund" => {
            let d = disputed_deal(app, 4100).await;
            fail_next(app, "refund", "system_error", None).await;
            decide_dispute(
                &app.state,
                d.order,
                "ops",
                Decision::Refund { fen: 4100 },
                "退款",
            )
            .await
            .unwrap();
            wait_refund(app, d.order, |r| r["last_error"].is_string()).await;
            call(
                Method::POST,
                format!("/orders/{}/retry-refund", d.order),
                a,
                Body::None,
                me,
            )
        }
        "retry_payout" => {
            let d = paid_deal(app, 4200).await;
            let (s, b) = act(app, &d.buyer, d.order, "confirm-receipt", json!({})).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            let (s, b) = act(app, &d.seller, d.order, "payout", json!({})).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            call(
                Method::POST,
                format!("/orders/{}/retry-payout", d.order),
                a,
                Body::None,
                me,
            )
        }
        "query_payment" => {
            let d = deal(app, 4300).await;
            prepay(app, &d.buyer, d.order).await;
            call(
                Method::POST,
                format!("/orders/{}/query-payment", d.order),
                a,
                Body::None,
                me,
            )
        }
        "remove_comment" => {
            let s = student(app, &format!("commenter{n}"), fx.school).await;
            let p = post(app, &s, fx, "求拼车").await;
            let c = comment(app, &s, p, "顶").await;
            call(
                Method::POST,
                format!("/comments/{c}/remove"),
                a,
                Body::Json(json!({ "reason": "灌水" })),
                me,
            )
        }
        _ => return None,
    })
}

app_test!(
    async fn every_mutating_operation_writes_exactly_one_audit_row(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator_account(Role::Admin, None).await;
        let ops: Vec<Op> = operations(&app)
            .await
            .into_iter()
            .filter(|o| o.method != Method::GET)
            .collect();
        assert!(ops.len() > 30);
        for (n, op) in ops.iter().enumerate() {
            let Some(c) = recipe(&app, &fx, &admin, &op.id, n).await else {
                panic!("{} ({} {}) changes something but has no audit recipe in this test", op.id, op.method, op.path);
            };
            assert_eq!(c.method, op.method, "{}", op.id);
            let mark = last_audit_id(&app).await;
            let (status, body) = send(&app, &c).await;
            assert!(status.is_success(), "{} answered {status}: {body}", op.id);
            let rows = audit_since(&app, mark).await;
            assert_eq!(rows.len(), 1, "{} wrote {} audit rows: {rows:?}", op.id, rows.len());
            assert_eq!(rows[0].operator_id, Some(c.actor), "{}", op.id);
            assert!(rows[0].action.contains('.'), "{}: action {}", op.id, rows[0].action);
            assert!(rows[0].target_type.is_some(), "{}: no target", op.id);
        }
        // Reads write nothing.
        let mark = last_audit_id(&app).await;
        for path in ["/admin/api/v1/audit", "/admin/api/v1/moderation/queue", "/admin/api/v1/users", "/admin/api/v1/stats"] {
            let (s, b) = app.get(path, Some(&admin.token)).await;
            assert_eq!(s, StatusCode::OK, "{path}: {b}");
        }
        assert!(audit_since(&app, mark).await.is_empty());
    }
);

app_test!(
    async fn the_audit_log_is_filtered_and_cannot_be_changed(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let mallory = student(&app, "mallory", fx.school).await;
        let (s, _) = app
            .post(&format!("/admin/api/v1/users/{}/ban", mallory.id), Some(&admin), &json!({ "reason": "诈骗", "until": "2099-01-01T00:00:00Z" }))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, page) = app
            .get(&format!("/admin/api/v1/audit?action=user&target_type=user&target_id={}", mallory.id), Some(&admin))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{page}");
        let e = &items[0];
        assert_eq!((e["action"].as_str(), e["reason"].as_str()), (Some("user.ban"), Some("诈骗")));
        assert_eq!((e["before"]["status"].as_str(), e["after"]["status"].as_str()), (Some("active"), Some("banned")));
        assert_eq!(e["school_id"], fx.school);
        let (_, logins) = app.get("/admin/api/v1/audit?action=operator.login", Some(&admin)).await;
        assert_eq!(logins["items"].as_array().unwrap().len(), 1);
        // Paging.
        let (_, first) = app.get("/admin/api/v1/audit?limit=1", Some(&admin)).await;
        let next = first["next_before_id"].as_i64().expect("a next page");
        let (_, second) = app.get(&format!("/admin/api/v1/audit?limit=1&before_id={next}"), Some(&admin)).await;
        assert!(second["items"][0]["id"].as_i64().unwrap() < next);
        // No way to change it.
        for method in [Method::PUT, Method::PATCH, Method::DELETE] {
            let (s, _, _) = app.send(method.clone(), "/admin/api/v1/audit", Some(&admin), Some(&json!({}))).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        }
    }
);

// ---------------------------------------------------------------------------------------------------------------
// Login, lockout, two-step login, accounts

app_test!(
    async fn five_failed_logins_lock_the_account(backend) {
        let app = TestApp::spawn(backend).await;
        let op = app.operator_account(Role::Moderator, None).await;
        let login = |password: &str| {
            let body = json!({ "username": op.username.to_uppercase(), "password": password });
            let app = &app;
            async move { app.post("/admin/api/v1/auth/login", None, &body).await }
        };
        let (s, b) = app
            .post("/admin/api/v1/auth/login", None, &json!({ "username": "nobody-here", "password": "whatever-it-is" }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
        for _ in 0..4 {
            let (s, b) = login("wrong password!!").await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
        }
        // Four failures do not lock; a success resets the count.
        let (s, _) = login(&op.password).await;
        assert_eq!(s, StatusCode::OK, "usernames are not case-sensitive");
        for _ in 0..5 {
            login("wrong password!!").await;
        }
        let (s, b) = login(&op.password).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("account_locked")), "{b}");
        // The live session is not affected, and an admin can lift the lock.
        let (s, me) = app.get("/admin/api/v1/me", Some(&op.token)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(me["locked_until"].is_string(), "{me}");
        let admin = app.operator(Role::Admin, None).await;
        let (s, b) = app.patch(&format!("/admin/api/v1/operators/{}", op.id), Some(&admin), &json!({ "unlock": true })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, _) = login(&op.password).await;
        assert_eq!(s, StatusCode::OK);
    }
);

app_test!(
    async fn totp_enrolment_then_login_needs_a_fresh_code(backend) {
        let app = TestApp::spawn(backend).await;
        let op = app.operator_account(Role::Admin, None).await;
        let (s, e) = app.post("/admin/api/v1/me/totp", Some(&op.token), &json!({})).await;
        assert_eq!(s, StatusCode::OK, "{e}");
        let secret = e["secret"].as_str().unwrap().to_string();
        assert_eq!(
            e["otpauth_uri"].as_str().unwrap(),
            format!("otpauth://totp/campus_trade:{}?secret={secret}&issuer=campus_trade&algorithm=SHA1&digits=6&period=30", op.username)
        );
        // Not on until confirmed: login still needs only the password.
        app.operator_login(&op.username, &op.password).await;
        let (s, b) = app.post("/admin/api/v1/me/totp/confirm", Some(&op.token), &json!({ "code": "000000" })).await;
        assert_eq!((s, b["fields"]["code"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true), "{b}");
        let code = totp_now(&secret);
        let (s, me) = app.post("/admin/api/v1/me/totp/confirm", Some(&op.token), &json!({ "code": code })).await;
        assert_eq!((s, me["totp_enabled"].as_bool()), (StatusCode::OK, Some(true)), "{me}");
        let (s, b) = app.post("/admin/api/v1/me/totp", Some(&op.token), &json!({})).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("totp_already_enabled")));

        let login = |code: Option<String>| {
            let body = json!({ "username": op.username, "password": op.password, "totp_code": code });
            let app = &app;
            async move { app.post("/admin/api/v1/auth/login", None, &body).await }
        };
        let (s, b) = login(None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("totp_required")));
        let (s, b) = login(Some("123456".into())).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_totp")));
        // The confirming code was used already: the same step cannot log in again.
        let (s, b) = login(Some(code.clone())).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_totp")), "a code is good once");
        // A code of the next step (clock drift) is accepted, once.
        let key = totp::base32_decode(&secret).unwrap();
        let next = totp::totp(&key, chrono::Utc::now().timestamp() as u64 + 30, 6);
        let (s, b) = login(Some(next.clone())).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["operator"]["totp_enabled"], true);
        let (s, _) = login(Some(next)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "replayed");

        // An admin can reset a lost device; the operator's sessions end.
        let other = app.operator(Role::Admin, None).await;
        let (s, b) = app.patch(&format!("/admin/api/v1/operators/{}", op.id), Some(&other), &json!({ "reset_totp": true })).await;
        assert_eq!((s, b["totp_enabled"].as_bool()), (StatusCode::OK, Some(false)), "{b}");
        let (s, _) = app.get("/admin/api/v1/me", Some(&op.token)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        app.operator_login(&op.username, &op.password).await;
    }
);

app_test!(
    async fn admins_manage_operator_accounts(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator_account(Role::Admin, None).await;
        let (s, b) = app
            .post("/admin/api/v1/operators", Some(&admin.token), &json!({ "username": "x", "password": "short", "role": "moderator", "schools": [424242] }))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        for f in ["username", "password", "schools"] {
            assert!(b["fields"][f].is_string(), "{f}: {b}");
        }
        let body = json!({ "username": "Han.Meimei", "password": "long enough password", "role": "moderator", "schools": [fx.school] });
        let (s, created) = app.post("/admin/api/v1/operators", Some(&admin.token), &body).await;
        assert_eq!(s, StatusCode::OK, "{created}");
        assert_eq!(created["username"], "han.meimei");
        assert_eq!(created["schools"], json!([fx.school]));
        assert_eq!(created["permissions"], json!(["moderation", "users", "user_lookup", "stats"]));
        let (s, b) = app.post("/admin/api/v1/operators", Some(&admin.token), &body).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("username_taken")));

        let token = app.operator_login("han.meimei", "long enough password").await;
        let (s, _) = app.get("/admin/api/v1/moderation/queue", Some(&token)).await;
        assert_eq!(s, StatusCode::OK);
        // A change of role ends the sessions; the new role applies at the next login.
        let id = created["id"].as_i64().unwrap();
        let (s, _) = app.patch(&format!("/admin/api/v1/operators/{id}"), Some(&admin.token), &json!({ "role": "support" })).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = app.get("/admin/api/v1/me", Some(&token)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let token = app.operator_login("han.meimei", "long enough password").await;
        let (s, b) = app.get("/admin/api/v1/moderation/queue", Some(&token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("permission_denied")));
        // Disabled accounts cannot log in.
        app.patch(&format!("/admin/api/v1/operators/{id}"), Some(&admin.token), &json!({ "disabled": true })).await;
        let (s, b) = app
            .post("/admin/api/v1/auth/login", None, &json!({ "username": "han.meimei", "password": "long enough password" }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("operator_disabled")));
        // Nobody locks themselves out.
        let (s, b) = app.patch(&format!("/admin/api/v1/operators/{}", admin.id), Some(&admin.token), &json!({ "disabled": true })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("cannot_change_self")));

        // Changing one's password ends every session and hands out a new one.
        let (s, b) = app
            .post("/admin/api/v1/me/password", Some(&admin.token), &json!({ "current_password": "nope", "new_password": "another long password" }))
            .await;
        assert_eq!((s, b["fields"]["current_password"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
        let (s, fresh) = app
            .post("/admin/api/v1/me/password", Some(&admin.token), &json!({ "current_password": admin.password, "new_password": "another long password" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{fresh}");
        let (s, _) = app.get("/admin/api/v1/me", Some(&admin.token)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = app.get("/admin/api/v1/me", Some(fresh["token"].as_str().unwrap())).await;
        assert_eq!(s, StatusCode::OK);
        app.operator_login(&admin.username, "another long password").await;
    }
);

// ---------------------------------------------------------------------------------------------------------------
// Students

app_test!(
    async fn a_ban_ends_live_sessions_and_can_be_lifted(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let moderator = app.operator(Role::Moderator, None).await;
        let mallory = student(&app, "mallory", fx.school).await;
        let second_device = app.login("mallory").await;
        for t in [&mallory.token, &second_device.token] {
            assert_eq!(app.get("/api/v1/me", Some(t)).await.0, StatusCode::OK);
        }
        let (s, b) = app
            .post(&format!("/admin/api/v1/users/{}/ban", mallory.id), Some(&moderator), &json!({ "reason": "  " }))
            .await;
        assert_eq!((s, b["fields"]["reason"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
        let (s, b) = app
            .post(&format!("/admin/api/v1/users/{}/ban", mallory.id), Some(&moderator), &json!({ "reason": "x", "until": "2020-01-01T00:00:00Z" }))
            .await;
        assert_eq!((s, b["fields"]["until"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
        let until = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
        let (s, u) = app
            .post(&format!("/admin/api/v1/users/{}/ban", mallory.id), Some(&moderator), &json!({ "reason": "出售违禁品", "until": until }))
            .await;
        assert_eq!(s, StatusCode::OK, "{u}");
        assert_eq!((u["status"].as_str(), u["ban"]["in_force"].as_bool()), (Some("banned"), Some(true)));
        // Every session ended at once.
        for t in [&mallory.token, &second_device.token] {
            let (s, b) = app.get("/api/v1/me", Some(t)).await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
        }
        let (s, b) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "mallory-77" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("account_banned")));
        assert!(b["message"].as_str().unwrap().contains("出售违禁品"));

        let (s, u) = app.post(&format!("/admin/api/v1/users/{}/unban", mallory.id), Some(&moderator), &json!({ "reason": "申诉成功" })).await;
        assert_eq!((s, u["status"].as_str()), (StatusCode::OK, Some("active")), "{u}");
        let (s, b) = app.post(&format!("/admin/api/v1/users/{}/unban", mallory.id), Some(&moderator), &json!({})).await;
        assert_eq!((s, b["code"].as_str(), b["current_status"].as_str()), (StatusCode::CONFLICT, Some("invalid_transition"), Some("active")));
        let again = app.login("mallory").await;
        assert_eq!(app.get("/api/v1/me", Some(&again.token)).await.0, StatusCode::OK);
        let (s, _) = app.post("/admin/api/v1/users/999999/ban", Some(&moderator), &json!({ "reason": "x" })).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

app_test!(
    async fn operators_find_students_and_see_their_listings_and_reports(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let support = app.operator(Role::Support, None).await;
        let alice = student(&app, "alice", fx.school).await;
        let bob = student(&app, "bob", fx.school).await;
        app.patch("/api/v1/me", Some(&alice.token), &json!({ "nickname": "爱丽丝卖书" })).await;
        let l = sell(&app, &alice, &fx, "二手台灯", "九成新").await;
        report(&app, &bob, "listing", l["id"].as_i64().unwrap()).await;
        report(&app, &bob, "user", alice.id).await;
        campus_trade::users::service::import_roster(
            &app.state.db,
            fx.school,
            vec![campus_trade::users::service::RosterRow { student_number: "2024123456".into(), graduation_year: Some(2028) }],
        )
        .await
        .unwrap();
        let (s, v) = app
            .post("/api/v1/me/verification", Some(&alice.token), &json!({ "school_id": fx.school, "student_number": "2024123456" }))
            .await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("verified")), "{v}");

        let ids = |page: &Value| -> Vec<i64> { page["items"].as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect() };
        let (s, page) = app.get("/admin/api/v1/users?q=爱丽丝", Some(&support)).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(ids(&page), vec![alice.id]);
        let (_, page) = app.get(&format!("/admin/api/v1/users?q={}", bob.id), Some(&support)).await;
        assert_eq!(ids(&page), vec![bob.id]);
        // By student number: hashed with the school's salt, typed any way.
        let (_, page) = app.get("/admin/api/v1/users?student_number=2024%20123%20456", Some(&support)).await;
        assert_eq!(ids(&page), vec![alice.id]);
        let (_, page) = app.get(&format!("/admin/api/v1/users?school={}&student_number=2099000000", fx.school), Some(&support)).await;
        assert!(ids(&page).is_empty());
        let (s, b) = app.get("/admin/api/v1/users?student_number=1", Some(&support)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

        let (s, d) = app.get(&format!("/admin/api/v1/users/{}", alice.id), Some(&support)).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert_eq!((d["listings"].as_u64(), d["open_reports"].as_u64()), (Some(1), Some(2)));
        assert_eq!(d["user"]["verified_school_id"], fx.school);
        let (_, ls) = app.get(&format!("/admin/api/v1/users/{}/listings", alice.id), Some(&support)).await;
        assert_eq!(ls["items"][0]["id"], l["id"]);
        let (_, rs) = app.get(&format!("/admin/api/v1/users/{}/reports", alice.id), Some(&support)).await;
        let kinds: Vec<&str> = rs["items"].as_array().unwrap().iter().map(|r| r["target_type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["user", "listing"]);
    }
);

app_test!(
    async fn a_roster_upload_reports_malformed_rows_by_line(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let moderator = app.operator(Role::Moderator, None).await;
        let csv = "学号,毕业年份\n2025000001,2029\n\n2025000002\nbad!,2029\n2025000003,20x9\n2025000004,1899\na,b,c\n2025000005,2030\n";
        let c = Call {
            method: Method::POST,
            path: format!("/admin/api/v1/schools/{}/roster", fx.school),
            token: Some(moderator.clone()),
            body: Body::Csv(csv.into()),
            actor: 0,
        };
        let (s, r) = send(&app, &c).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["accepted"], 3);
        let rejected: Vec<(i64, &str)> = r["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["line"].as_i64().unwrap(), x["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![5, 6, 7, 8], "{r}");
        assert!(rejected[0].1.contains("student number"));
        assert!(rejected[1].1.contains("20x9"));
        assert!(rejected[2].1.contains("1899"));
        assert!(rejected[3].1.contains("two columns"));
        // The accepted numbers verify students at once.
        let alice = app.login("alice").await;
        let (s, v) = app
            .post("/api/v1/me/verification", Some(&alice.token), &json!({ "school_id": fx.school, "student_number": "2025000002" }))
            .await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("verified")), "{v}");

        // The same as a form upload; other content types are refused.
        const BOUNDARY: &str = "----rosterBoundary";
        let form = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.csv\"\r\nContent-Type: text/csv\r\n\r\n2025000009,2029\r\n--{BOUNDARY}--\r\n"
        );
        let resp = app
            .http
            .post(app.url(&format!("/admin/api/v1/schools/{}/roster", fx.school)))
            .bearer_auth(&moderator)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let r: Value = resp.json().await.unwrap();
        assert_eq!((r["accepted"].as_u64(), r["rejected"].as_array().unwrap().len()), (Some(1), 0));
        let resp = app
            .http
            .post(app.url(&format!("/admin/api/v1/schools/{}/roster", fx.school)))
            .bearer_auth(&moderator)
            .header("content-type", "application/vnd.ms-excel")
            .body("xx")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (s, _) = send(&app, &Call { path: "/admin/api/v1/schools/999999/roster".into(), ..c }).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

app_test!(
    async fn verification_requests_are_decided_by_operators(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let moderator = app.operator(Role::Moderator, None).await;
        let first = pending_verification(&app, "alice", &fx, "2024000111").await;
        let second = pending_verification(&app, "bob", &fx, "2024000222").await;
        let (s, queue) = app.get("/admin/api/v1/verifications", Some(&moderator)).await;
        assert_eq!(s, StatusCode::OK);
        let ids: Vec<i64> = queue.as_array().unwrap().iter().map(|v| v["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![first, second]);
        assert_eq!(queue[0]["student_number_masked"], "20******11");
        let (s, v) = app.post(&format!("/admin/api/v1/verifications/{first}/approve"), Some(&moderator), &json!({})).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("approved")), "{v}");
        assert!(v["decided_by"].as_str().unwrap().starts_with("operator:moderator-"));
        let (s, b) = app.post(&format!("/admin/api/v1/verifications/{first}/reject"), Some(&moderator), &json!({ "reason": "晚了" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("verification_not_pending")));
        let (s, v) = app.post(&format!("/admin/api/v1/verifications/{second}/reject"), Some(&moderator), &json!({ "reason": "学号与姓名不符" })).await;
        assert_eq!((s, v["reject_reason"].as_str()), (StatusCode::OK, Some("学号与姓名不符")));
        let (_, queue) = app.get("/admin/api/v1/verifications", Some(&moderator)).await;
        assert!(queue.as_array().unwrap().is_empty());
    }
);

// ---------------------------------------------------------------------------------------------------------------
// School scope

app_test!(
    async fn an_operator_of_one_school_cannot_act_on_another(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let (other, _) = other_school(&app, &admin, "other-u").await;
        let moderator = app.operator(Role::Moderator, Some(&[fx.school])).await;
        let scoped_admin = app.operator(Role::Admin, Some(&[fx.school])).await;

        let ours = student(&app, "ours", fx.school).await;
        let theirs = student(&app, "theirs", other).await;
        let our_listing = sell(&app, &ours, &fx, "台灯", "有意加微信").await;
        let their_post = {
            let (_, boards) = app.get(&format!("/api/v1/boards?school_id={other}"), None).await;
            let board = boards[0]["id"].as_i64().unwrap();
            let (s, p) = app.post("/api/v1/posts", Some(&theirs.token), &json!({ "board_id": board, "title": "加微信" })).await;
            assert_eq!(s, StatusCode::OK, "{p}");
            assert_eq!(p["status"], "pending_review");
            p["id"].as_i64().unwrap()
        };
        let refused = |(s, b): (StatusCode, Value)| {
            assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("outside_school_scope")), "{b}");
        };
        refused(app.post(&format!("/admin/api/v1/users/{}/ban", theirs.id), Some(&moderator), &json!({ "reason": "x" })).await);
        refused(app.get(&format!("/admin/api/v1/users/{}", theirs.id), Some(&moderator)).await);
        refused(app.post(&format!("/admin/api/v1/posts/{their_post}/pin"), Some(&moderator), &json!({})).await);
        refused(app.get(&format!("/admin/api/v1/moderation/queue?school={other}"), Some(&moderator)).await);
        refused(app.get(&format!("/admin/api/v1/users?school={other}"), Some(&moderator)).await);
        refused(app.post(&format!("/admin/api/v1/schools/{other}/campuses"), Some(&scoped_admin), &json!({ "name": "x" })).await);
        refused(app.post("/admin/api/v1/categories", Some(&scoped_admin), &json!({ "slug": "zz", "name_zh": "z", "name_en": "z" })).await);
        refused(app.patch("/admin/api/v1/settings", Some(&scoped_admin), &json!({ "report_hide_threshold": 2 })).await);
        refused(app
            .post("/admin/api/v1/operators", Some(&scoped_admin), &json!({ "username": "everywhere", "password": "long enough password", "role": "admin" }))
            .await);

        // Their item is decided per item: refused, while ours goes through.
        let body = json!({ "decision": "approve", "items": [
            { "target_type": "post", "target_id": their_post },
            { "target_type": "listing", "target_id": our_listing["id"] },
        ]});
        let (s, r) = app.post("/admin/api/v1/moderation/decisions", Some(&moderator), &body).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!((r["decided"].as_u64(), r["failed"].as_u64()), (Some(1), Some(1)));
        assert_eq!(r["results"][0]["error"]["code"], "outside_school_scope");

        // Lists show only their own school.
        let (_, q) = app.get("/admin/api/v1/moderation/queue", Some(&moderator)).await;
        assert!(q["items"].as_array().unwrap().iter().all(|i| i["school_id"] == fx.school), "{q}");
        let (_, q) = app.get("/admin/api/v1/moderation/queue", Some(&admin)).await;
        assert!(q["items"].as_array().unwrap().iter().any(|i| i["target_id"] == their_post), "{q}");
        let (_, page) = app.get("/admin/api/v1/users", Some(&moderator)).await;
        assert!(page["items"].as_array().unwrap().iter().all(|u| u["id"] != theirs.id));
        // The scoped admin manages only accounts of their school.
        let (_, ops) = app.get("/admin/api/v1/operators", Some(&scoped_admin)).await;
        assert!(ops.as_array().unwrap().iter().all(|o| o["schools"] == json!([fx.school])), "{ops}");
    }
);

// ---------------------------------------------------------------------------------------------------------------
// The moderation queue

app_test!(
    async fn the_queue_holds_flagged_and_reported_content_until_decided(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let moderator = app.operator(Role::Moderator, None).await;
        // One report is enough to hide content from now on.
        let (s, b) = app.patch("/admin/api/v1/settings", Some(&admin), &json!({ "report_hide_threshold": 1 })).await;
        assert_eq!((s, b["report_hide_threshold"].as_u64()), (StatusCode::OK, Some(1)), "{b}");

        let alice = student(&app, "alice", fx.school).await;
        let bob = student(&app, "bob", fx.school).await;
        let held = sell(&app, &alice, &fx, "二手台灯", "有意加微信").await;
        let held_id = held["id"].as_i64().unwrap();
        assert_eq!((held["status"].as_str(), held["moderation_label"].as_str()), (Some("pending_review"), Some("advertising")));
        let p = post(&app, &alice, &fx, "周末爬山").await;
        let c = comment(&app, &bob, p, "推广链接").await;
        report(&app, &bob, "post", p).await;
        let (_, own) = app.get(&format!("/api/v1/posts/{p}"), Some(&alice.token)).await;
        assert_eq!(own["status"], "hidden", "hidden after one report with the threshold at 1");
        report(&app, &alice, "comment", c).await;
        report(&app, &alice, "user", bob.id).await;

        let (s, q) = app.get("/admin/api/v1/moderation/queue", Some(&moderator)).await;
        assert_eq!(s, StatusCode::OK, "{q}");
        let keys: Vec<(String, i64)> = q["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["target_type"].as_str().unwrap().to_string(), i["target_id"].as_i64().unwrap()))
            .collect();
        for k in [("listing", held_id), ("post", p), ("comment", c), ("user", bob.id)] {
            assert!(keys.contains(&(k.0.to_string(), k.1)), "{k:?} missing from {keys:?}");
        }
        assert_eq!(q["total"], 4);
        let post_item = q["items"].as_array().unwrap().iter().find(|i| i["target_type"] == "post").unwrap();
        assert_eq!((post_item["held"].as_bool(), post_item["label"].as_str()), (Some(true), Some("reported")));
        assert_eq!(post_item["reports"]["reporters"], 1);
        assert_eq!(post_item["reports"]["reasons"]["spam"], 1);
        // Paged, and filtered by kind.
        let (_, page1) = app.get("/admin/api/v1/moderation/queue?limit=3", Some(&moderator)).await;
        let cursor = page1["next_cursor"].as_str().unwrap();
        let (_, page2) = app.get(&format!("/admin/api/v1/moderation/queue?limit=3&cursor={cursor}"), Some(&moderator)).await;
        assert_eq!(page2["items"].as_array().unwrap().len(), 1);
        assert!(page2["next_cursor"].is_null());
        let (_, only) = app.get("/admin/api/v1/moderation/queue?target_type=user", Some(&moderator)).await;
        assert_eq!(only["items"].as_array().unwrap().len(), 1);

        // Approve the held listing: on sale, and the seller is told.
        let decide = |decision: &str, kind: &str, id: i64, reason: Option<&str>| {
            let body = json!({ "decision": decision, "items": [{ "target_type": kind, "target_id": id }], "reason": reason });
            let (app, token) = (&app, moderator.clone());
            async move { app.post("/admin/api/v1/moderation/decisions", Some(&token), &body).await }
        };
        let (s, r) = decide("approve", "listing", held_id, None).await;
        assert_eq!((s, r["decided"].as_u64()), (StatusCode::OK, Some(1)), "{r}");
        let (s, l) = app.get(&format!("/api/v1/listings/{held_id}"), Some(&bob.token)).await;
        assert_eq!((s, l["status"].as_str()), (StatusCode::OK, Some("on_sale")));
        // Deciding again finds nothing to decide.
        let (_, r) = decide("approve", "listing", held_id, None).await;
        assert_eq!(r["results"][0]["error"]["code"], "nothing_to_decide", "{r}");
        // Dismiss the reports of the post: it comes back.
        let (_, r) = decide("dismiss", "post", p, None).await;
        assert_eq!(r["results"][0]["reports_closed"], 1, "{r}");
        let (s, _) = app.get(&format!("/api/v1/posts/{p}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::OK);
        // Remove the comment: a reason is required, and the author reads it.
        let (s, b) = decide("remove", "comment", c, None).await;
        assert_eq!((s, b["fields"]["reason"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
        let (_, r) = decide("remove", "comment", c, Some("发布推广链接")).await;
        assert_eq!(r["decided"], 1, "{r}");
        let told = inbox(&app, &bob).await;
        assert!(
            told.iter().any(|n| n["kind"] == "comment_removed" && n["body"].as_str().unwrap().contains("发布推广链接")),
            "{told:?}"
        );
        // An account is banned, not removed; its reports can be dismissed.
        let (_, r) = decide("remove", "user", bob.id, Some("x")).await;
        assert_eq!(r["results"][0]["error"]["code"], "use_ban");
        let (_, r) = decide("dismiss", "user", bob.id, None).await;
        assert_eq!(r["decided"], 1);
        let (_, q) = app.get("/admin/api/v1/moderation/queue", Some(&moderator)).await;
        assert_eq!(q["total"], 0, "{q}");

        // Removing a listing tells the seller why; a removed listing cannot be removed twice.
        let (_, r) = decide("remove", "listing", held_id, Some("禁止出售二手电器")).await;
        assert_eq!(r["decided"], 1, "{r}");
        let (s, _) = app.get(&format!("/api/v1/listings/{held_id}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(inbox(&app, &alice).await.iter().any(|n| n["kind"] == "listing_removed"
            && n["body"].as_str().unwrap().contains("禁止出售二手电器")));
        let (_, r) = decide("remove", "listing", held_id, Some("again")).await;
        assert_eq!(r["results"][0]["error"]["code"], "invalid_transition");
        assert_eq!(r["results"][0]["error"]["current_status"], "removed");
        let (s, b) = app
            .post("/admin/api/v1/moderation/decisions", Some(&moderator), &json!({ "decision": "approve", "items": [] }))
            .await;
        assert_eq!((s, b["fields"]["items"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true));
    }
);

app_test!(
    async fn forum_posts_are_pinned_locked_and_removed(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let moderator = app.operator(Role::Moderator, None).await;
        let alice = student(&app, "alice", fx.school).await;
        let bob = student(&app, "bob", fx.school).await;
        let older = post(&app, &alice, &fx, "旧帖").await;
        let newer = post(&app, &alice, &fx, "新帖").await;
        let (s, v) = app.post(&format!("/admin/api/v1/posts/{older}/pin"), Some(&moderator), &json!({})).await;
        assert_eq!((s, v["pinned"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
        let (_, feed) = app.get(&format!("/api/v1/posts?school={}&sort=new", fx.school), None).await;
        assert_eq!(feed["items"][0]["id"], older, "pinned first: {feed}");
        app.post(&format!("/admin/api/v1/posts/{older}/unpin"), Some(&moderator), &json!({})).await;
        let (_, feed) = app.get(&format!("/api/v1/posts?school={}&sort=new", fx.school), None).await;
        assert_eq!(feed["items"][0]["id"], newer);

        let (s, v) = app.post(&format!("/admin/api/v1/posts/{newer}/lock"), Some(&moderator), &json!({})).await;
        assert_eq!((s, v["locked"].as_bool()), (StatusCode::OK, Some(true)));
        let (s, b) = app.post(&format!("/api/v1/posts/{newer}/comments"), Some(&bob.token), &json!({ "body": "顶" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("post_locked")));
        app.post(&format!("/admin/api/v1/posts/{newer}/unlock"), Some(&moderator), &json!({})).await;
        let c = comment(&app, &bob, newer, "顶").await;

        let (s, v) = app.post(&format!("/admin/api/v1/posts/{newer}/remove"), Some(&moderator), &json!({ "reason": "广告" })).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("removed")), "{v}");
        let (s, _) = app.get(&format!("/api/v1/posts/{newer}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(inbox(&app, &alice).await.iter().any(|n| n["kind"] == "post_removed" && n["body"].as_str().unwrap().contains("广告")));
        let (s, b) = app.post(&format!("/admin/api/v1/posts/{newer}/remove"), Some(&moderator), &json!({ "reason": "再删" })).await;
        assert_eq!((s, b["current_status"].as_str()), (StatusCode::CONFLICT, Some("removed")));
        let (s, v) = app.post(&format!("/admin/api/v1/comments/{c}/remove"), Some(&moderator), &json!({ "reason": "灌水" })).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("removed")), "{v}");
        let (s, _) = app.post("/admin/api/v1/posts/999999/pin", Some(&moderator), &json!({})).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

// ---------------------------------------------------------------------------------------------------------------
// Catalogue, settings, statistics

app_test!(
    async fn the_catalogue_is_edited_and_things_in_use_are_hidden_not_deleted(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let (school, campus) = other_school(&app, &admin, "new-u").await;
        // A new school gets the default boards and shows up for students at once.
        let (_, boards) = app.get(&format!("/api/v1/boards?school_id={school}"), None).await;
        assert_eq!(boards.as_array().unwrap().len(), 6);
        let (_, schools) = app.get("/api/v1/schools", None).await;
        assert!(schools.as_array().unwrap().iter().any(|s| s["id"] == school));
        let (s, b) = app.post("/admin/api/v1/schools", Some(&admin), &json!({ "slug": "new-u", "name": "x", "short_name": "x" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("slug_taken")));
        let (s, b) = app.post("/admin/api/v1/schools", Some(&admin), &json!({ "slug": "Bad Slug", "name": "", "short_name": "x" })).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(b["fields"]["slug"].is_string() && b["fields"]["name"].is_string());

        // Places: created, hidden from students, deleted while unused.
        let (s, place) = app.post(&format!("/admin/api/v1/campuses/{campus}/places"), Some(&admin), &json!({ "name": "东门" })).await;
        assert_eq!(s, StatusCode::OK, "{place}");
        let place_id = place["id"].as_i64().unwrap();
        let (_, visible) = app.get(&format!("/api/v1/campuses/{campus}/places"), None).await;
        assert_eq!(visible.as_array().unwrap().len(), 1);
        app.patch(&format!("/admin/api/v1/places/{place_id}"), Some(&admin), &json!({ "hidden": true })).await;
        let (_, visible) = app.get(&format!("/api/v1/campuses/{campus}/places"), None).await;
        assert!(visible.as_array().unwrap().is_empty());
        let (_, all) = app.get(&format!("/admin/api/v1/campuses/{campus}/places"), Some(&admin)).await;
        assert_eq!(all[0]["hidden"], true);
        // A campus with places is in use.
        let (s, b) = app.send(Method::DELETE, &format!("/admin/api/v1/campuses/{campus}"), Some(&admin), None).await.into_pair();
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("campus_in_use")));
        let (s, _) = app.send(Method::DELETE, &format!("/admin/api/v1/places/{place_id}"), Some(&admin), None).await.into_pair();
        assert_eq!(s, StatusCode::NO_CONTENT);
        // A school with a campus is in use.
        let (s, b) = app.send(Method::DELETE, &format!("/admin/api/v1/schools/{school}"), Some(&admin), None).await.into_pair();
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("school_in_use")));

        // Categories: a used one cannot go, but can be hidden (no new listings in it).
        let alice = student(&app, "alice", fx.school).await;
        sell(&app, &alice, &fx, "台灯", "宿舍用").await;
        let (s, b) = app.send(Method::DELETE, &format!("/admin/api/v1/categories/{}", fx.lamps), Some(&admin), None).await.into_pair();
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("category_in_use")));
        let (s, c) = app.patch(&format!("/admin/api/v1/categories/{}", fx.lamps), Some(&admin), &json!({ "hidden": true })).await;
        assert_eq!((s, c["hidden"].as_bool()), (StatusCode::OK, Some(true)));
        let img = upload(&app, &alice).await;
        let (s, b) = app
            .post("/api/v1/listings", Some(&alice.token), &json!({ "title": "又一盏台灯", "price": 100, "condition": "good", "category_id": fx.lamps, "image_ids": [img], "trade_methods": ["meetup"] }))
            .await;
        assert_eq!((s, b["fields"]["category_id"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true), "{b}");
        let (s, child) = app
            .post("/admin/api/v1/categories", Some(&admin), &json!({ "parent_id": fx.lamps, "slug": "too-deep", "name_zh": "深", "name_en": "Deep" }))
            .await;
        assert_eq!((s, child["fields"]["parent_id"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true), "{child}");

        // Boards: a board with posts is hidden, not deleted; hidden boards are not listed and take no posts.
        let chat = fx.board("chat");
        post(&app, &alice, &fx, "有人吗").await;
        let (s, b) = app.send(Method::DELETE, &format!("/admin/api/v1/boards/{chat}"), Some(&admin), None).await.into_pair();
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("board_in_use")));
        let (s, _) = app.patch(&format!("/admin/api/v1/boards/{chat}"), Some(&admin), &json!({ "hidden": true })).await;
        assert_eq!(s, StatusCode::OK);
        let (_, listed) = app.get(&format!("/api/v1/boards?school_id={}", fx.school), None).await;
        assert!(listed.as_array().unwrap().iter().all(|b| b["id"] != chat));
        let (s, b) = app.post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": chat, "title": "还能发吗" })).await;
        assert_eq!((s, b["fields"]["board_id"].is_string()), (StatusCode::UNPROCESSABLE_ENTITY, true), "{b}");

        // Requiring verification is a property of the school.
        let (s, v) = app.patch(&format!("/admin/api/v1/schools/{}", fx.school), Some(&admin), &json!({ "requires_verification": true })).await;
        assert_eq!((s, v["requires_verification"].as_bool()), (StatusCode::OK, Some(true)));
        let img = upload(&app, &alice).await;
        let (_, cats) = app.get("/api/v1/categories", None).await;
        let other_cat = cats[0]["children"][0]["id"].clone();
        let (s, b) = app
            .post("/api/v1/listings", Some(&alice.token), &json!({ "title": "书", "price": 100, "condition": "good", "category_id": other_cat, "image_ids": [img], "trade_methods": ["meetup"] }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("verification_required")), "{b}");
    }
);

app_test!(
    async fn settings_are_validated_and_take_effect(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let (s, v) = app.get("/admin/api/v1/settings", Some(&admin)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!({ "order_payment_timeout_minutes": 15, "order_auto_complete_days": 7, "report_hide_threshold": 5 }));
        let (s, b) = app
            .patch("/admin/api/v1/settings", Some(&admin), &json!({ "order_payment_timeout_minutes": 1, "order_auto_complete_days": 31, "report_hide_threshold": 2 }))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(b["fields"]["order_payment_timeout_minutes"].is_string() && b["fields"]["order_auto_complete_days"].is_string());
        let (_, v) = app.get("/admin/api/v1/settings", Some(&admin)).await;
        assert_eq!(v["report_hide_threshold"], 5, "nothing stored when one value is refused");
        let (s, v) = app.patch("/admin/api/v1/settings", Some(&admin), &json!({ "report_hide_threshold": 2, "order_auto_complete_days": 10 })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["report_hide_threshold"].as_u64(), v["order_auto_complete_days"].as_u64()), (Some(2), Some(10)));
        assert_eq!(campus_trade::settings::current(&app.state).await.unwrap().order_auto_complete_days, 10);
        // Two reports now hide a post.
        let alice = student(&app, "alice", fx.school).await;
        let p = post(&app, &alice, &fx, "帖子").await;
        for who in ["bob", "carol"] {
            let s = student(&app, who, fx.school).await;
            report(&app, &s, "post", p).await;
        }
        let (s, _) = app.get(&format!("/api/v1/posts/{p}"), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

app_test!(
    async fn statistics_count_per_day_for_a_school(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let (other, _) = other_school(&app, &admin, "stats-u").await;
        let alice = student(&app, "alice", fx.school).await;
        student(&app, "bob", other).await;
        sell(&app, &alice, &fx, "台灯", "宿舍用").await;
        sell(&app, &alice, &fx, "书架", "宿舍用").await;
        let id = pending_verification(&app, "carol", &fx, "2024000999").await;
        app.post(&format!("/admin/api/v1/verifications/{id}/approve"), Some(&admin), &json!({})).await;

        let support = app.operator(Role::Support, None).await;
        let (s, r) = app.get(&format!("/admin/api/v1/stats?school={}", fx.school), Some(&support)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let days = r["days"].as_array().unwrap();
        assert_eq!(days.len(), 30);
        let today = days.last().unwrap();
        assert_eq!(today["day"], r["to"]);
        assert_eq!((today["new_users"].as_i64(), today["listings_published"].as_i64(), today["verified_students"].as_i64()), (Some(2), Some(2), Some(1)), "{today}");
        assert_eq!(r["totals"]["new_users"], 2);
        let (_, all) = app.get("/admin/api/v1/stats", Some(&support)).await;
        assert_eq!(all["totals"]["new_users"], 3, "{all}");
        let (_, none) = app.get(&format!("/admin/api/v1/stats?school={}&from=2020-01-01&to=2020-01-31", fx.school), Some(&support)).await;
        assert_eq!((none["days"].as_array().unwrap().len(), none["totals"]["listings_published"].as_i64()), (31, Some(0)));
        let (s, _) = app.get("/admin/api/v1/stats?from=2020-01-01&to=2021-06-01", Some(&support)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, _) = app.get("/admin/api/v1/stats?from=2020-02-01&to=2020-01-01", Some(&support)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
);

// ---------------------------------------------------------------------------------------------------------------
// Orders and disputes

/// The sandbox's record of the refund numbered `out_refund_no`.
async fn wechat_refund(app: &TestApp, out_refund_no: &str) -> Value {
    let sb = sandbox_state(app).await;
    sb["refunds"]
        .as_object()
        .unwrap()
        .values()
        .find(|r| r["out_refund_no"] == out_refund_no)
        .cloned()
        .unwrap_or(Value::Null)
}

app_test!(
    async fn support_operators_find_orders_and_decide_disputes_with_a_wechat_refund(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let support = app.operator(Role::Support, None).await;
        let d = disputed_deal(&app, 5000).await;
        // Listed, filtered, paged.
        let (s, page) = app.get(&format!("/admin/api/v1/orders?status=disputed&school={}", fx.school), Some(&support)).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{page}");
        assert_eq!((items[0]["id"].as_i64(), items[0]["school_id"].as_i64()), (Some(d.order), Some(fx.school)));
        assert!(items[0].get("handover_code").is_none(), "the hand-over code is the buyer's");
        let (_, page) = app.get(&format!("/admin/api/v1/orders?buyer_id={}", d.seller.id), Some(&support)).await;
        assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
        let (_, page) = app.get(&format!("/admin/api/v1/orders?seller_id={}&status=paid", d.seller.id), Some(&support)).await;
        assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
        let (s, b) = app.get("/admin/api/v1/orders?limit=0", Some(&support)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
        // One order with its history and money.
        let (s, o) = app.get(&format!("/admin/api/v1/orders/{}", d.order), Some(&support)).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        let steps: Vec<&str> = o["events"].as_array().unwrap().iter().map(|e| e["to_status"].as_str().unwrap()).collect();
        assert_eq!(steps, ["pending_payment", "paid", "refund_requested", "disputed"]);
        assert_eq!((o["payment"]["status"].as_str(), o["payment"]["amount"].as_i64()), (Some("paid"), Some(5000)));
        assert!(o["refunds"].as_array().unwrap().is_empty() && o["payout"].is_null());
        let (s, _) = app.get("/admin/api/v1/orders/999999", Some(&support)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Bad decisions are 4xx with a code, never 500.
        let path = format!("/admin/api/v1/orders/{}/dispute-decision", d.order);
        for bad in [
            json!({ "decision": "refund", "refund_fen": 0, "reason": "x" }),
            json!({ "decision": "refund", "refund_fen": 5001, "reason": "x" }),
            json!({ "decision": "complete", "refund_fen": 100, "reason": "x" }),
            json!({ "decision": "refund", "reason": "   " }),
        ] {
            let (s, b) = app.post(&path, Some(&support), &bad).await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")), "{bad}: {b}");
        }
        let (s, _) = app.post(&path, Some(&support), &json!({ "decision": "maybe", "reason": "x" })).await;
        assert!(s.is_client_error(), "{s}");

        // A full refund: the order is refunded, the refund reaches WeChat Pay and succeeds there.
        let mark = last_audit_id(&app).await;
        let (s, o) = app.post(&path, Some(&support), &json!({ "decision": "refund", "reason": "商品与描述不符" })).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        assert_eq!(o["order"]["status"], "refunded");
        assert_eq!(o["refunds"][0]["amount"], 5000);
        let last = o["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["actor"].as_str(), last["reason"].as_str()), (Some("operator"), Some("商品与描述不符")));
        // One audit row, written in the decision's transaction.
        let rows = audit_since(&app, mark).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].action.as_str(), rows[0].reason.as_deref(), rows[0].school_id), ("order.decide_dispute", Some("商品与描述不符"), Some(fx.school)));
        assert_eq!(rows[0].after.as_ref().unwrap()["status"], "refunded");
        let refund = wait_refund(&app, d.order, |r| r["status"] == "succeeded").await;
        let at_wechat = wechat_refund(&app, refund["out_refund_no"].as_str().unwrap()).await;
        assert_eq!((at_wechat["refund"].as_i64(), at_wechat["total"].as_i64(), at_wechat["status"].as_str()), (Some(5000), Some(5000), Some("SUCCESS")), "{at_wechat}");
        assert_eq!(refund["refund_id"], at_wechat["refund_id"]);
        // Both parties read the decision and its reason.
        for who in [&d.buyer, &d.seller] {
            let told = inbox(&app, who).await;
            assert!(
                told.iter().any(|n| n["kind"] == "dispute_decided" && n["body"].as_str().unwrap().contains("商品与描述不符")),
                "{told:?}"
            );
        }
        // Decided once.
        let (s, b) = app.post(&path, Some(&support), &json!({ "decision": "complete", "reason": "再来" })).await;
        assert_eq!((s, b["code"].as_str(), b["current_status"].as_str()), (StatusCode::CONFLICT, Some("invalid_transition"), Some("refunded")));
        let (s, b) = app.post(&format!("/admin/api/v1/orders/{}/retry-refund", d.order), Some(&support), &json!({})).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("no_refund_to_retry")));

        // A partial refund lets the deal stand: completed, the seller is paid the rest.
        let d2 = disputed_deal(&app, 8000).await;
        let (s, o) = app
            .post(&format!("/admin/api/v1/orders/{}/dispute-decision", d2.order), Some(&support), &json!({ "decision": "refund", "refund_fen": 3000, "reason": "有划痕，部分退款" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{o}");
        assert_eq!((o["order"]["status"].as_str(), o["payout"]["amount"].as_i64(), o["payout"]["status"].as_str()), (Some("completed"), Some(5000), Some("ready")));
        let refund = wait_refund(&app, d2.order, |r| r["status"] == "succeeded").await;
        assert_eq!(wechat_refund(&app, refund["out_refund_no"].as_str().unwrap()).await["refund"], 3000);

        // Operators of another school see none of it.
        let (other, _) = other_school(&app, &admin, "orders-u").await;
        let outsider = app.operator(Role::Support, Some(&[other])).await;
        let (s, b) = app.get(&format!("/admin/api/v1/orders/{}", d.order), Some(&outsider)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("outside_school_scope")));
        let (s, b) = app.post(&format!("/admin/api/v1/orders/{}/retry-payout", d2.order), Some(&outsider), &json!({})).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("outside_school_scope")));
        let (s, page) = app.get("/admin/api/v1/orders", Some(&outsider)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
        let (s, _) = app.get(&format!("/admin/api/v1/orders?school={}", fx.school), Some(&outsider)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
);

app_test!(
    async fn stuck_refunds_are_retried_and_an_uncertain_one_is_queried_before_sending_again(backend) {
        // Real WeChat time (refunds take 30 s to succeed) and a short client timeout.
        let app = TestApp::spawn_with(backend, &[("SANDBOX_WECHATPAY_TIME_SCALE", "1"), ("WECHATPAY_TIMEOUT_MS", "500")]).await;
        let support = app.operator(Role::Support, None).await;
        // WeChat refused the first submission (500): the retry sends it, under the same number.
        let d = disputed_deal(&app, 6000).await;
        fail_next(&app, "refund", "system_error", None).await;
        let (s, o) = app
            .post(&format!("/admin/api/v1/orders/{}/dispute-decision", d.order), Some(&support), &json!({ "decision": "refund", "reason": "退款" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{o}");
        let stuck = wait_refund(&app, d.order, |r| r["last_error"].is_string()).await;
        assert_eq!(stuck["status"], "pending");
        assert!(wechat_refund(&app, stuck["out_refund_no"].as_str().unwrap()).await.is_null(), "WeChat has nothing yet");
        let mark = last_audit_id(&app).await;
        let (s, o) = app.post(&format!("/admin/api/v1/orders/{}/retry-refund", d.order), Some(&support), &json!({})).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        let r = &o["refunds"][0];
        assert_eq!((r["status"].as_str(), r["out_refund_no"].as_str()), (Some("processing"), stuck["out_refund_no"].as_str()), "{r}");
        assert!(r["last_error"].is_null(), "{r}");
        assert_eq!(wechat_refund(&app, r["out_refund_no"].as_str().unwrap()).await["refund"], 6000);
        let rows = audit_since(&app, mark).await;
        assert_eq!((rows.len(), rows[0].action.as_str()), (1, "order.retry_refund"));

        // The answer was lost (timeout) but WeChat made the refund: the retry asks WeChat first and does not
        // send it again (a second submission would fail here).
        let d2 = disputed_deal(&app, 7000).await;
        fail_next(&app, "refund", "timeout", Some(1500)).await;
        let (s, o) = app
            .post(&format!("/admin/api/v1/orders/{}/dispute-decision", d2.order), Some(&support), &json!({ "decision": "refund", "reason": "退款" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{o}");
        let lost = wait_refund(&app, d2.order, |r| r["last_error"].is_string()).await;
        assert_eq!(lost["status"], "pending");
        assert_eq!(wechat_refund(&app, lost["out_refund_no"].as_str().unwrap()).await["refund"], 7000, "WeChat did make it");
        fail_next(&app, "refund", "system_error", None).await;
        let (s, o) = app.post(&format!("/admin/api/v1/orders/{}/retry-refund", d2.order), Some(&support), &json!({})).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        assert_eq!(o["refunds"][0]["status"], "processing", "{o}");
        assert_eq!(o["refunds"].as_array().unwrap().len(), 1);
    }
);

app_test!(
    async fn payments_and_payouts_are_asked_about_when_an_operator_says_so(backend) {
        // Real WeChat time: a notification we failed to take is not repeated for 15 s.
        let app = TestApp::spawn_with(backend, &[("SANDBOX_WECHATPAY_TIME_SCALE", "1"), ("WECHATPAY_TIMEOUT_MS", "500")]).await;
        let support = app.operator(Role::Support, None).await;
        let query = |order: i64| {
            let app = &app;
            let support = support.clone();
            async move { app.post(&format!("/admin/api/v1/orders/{order}/query-payment"), Some(&support), &json!({})).await }
        };
        // Never prepaid: WeChat has no such order. Prepaid, unpaid: not paid.
        let d = deal(&app, 3300).await;
        let (s, r) = query(d.order).await;
        assert_eq!((s, r["outcome"].as_str()), (StatusCode::OK, Some("unknown_to_wechat")), "{r}");
        let prepay_id = prepay(&app, &d.buyer, d.order).await;
        let (s, r) = query(d.order).await;
        assert_eq!((s, r["outcome"].as_str(), r["detail"]["order"]["status"].as_str()), (StatusCode::OK, Some("not_paid"), Some("pending_payment")), "{r}");
        // Paid while our notify endpoint was failing: the query applies it like the notification would, once.
        let no = crate::payments::out_trade_no(&app, d.order).await;
        crate::payments::payments_offline(&app).await;
        crate::payments::wechat_pays(&app, &prepay_id).await;
        crate::payments::first_failure(&app, &no).await;
        crate::payments::payments_back(&app).await;
        let (s, r) = query(d.order).await;
        assert_eq!((s, r["outcome"].as_str()), (StatusCode::OK, Some("paid")), "{r}");
        assert_eq!((r["detail"]["order"]["status"].as_str(), r["detail"]["payment"]["status"].as_str()), (Some("paid"), Some("paid")));
        let paid_steps = r["detail"]["events"].as_array().unwrap().iter().filter(|e| e["to_status"] == "paid").count();
        assert_eq!(paid_steps, 1);
        let (s, b) = query(d.order).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("payment_already_recorded")));

        // The payout: nothing to retry until the seller collects; a transfer request whose answer was lost is
        // resolved by asking WeChat, never by a second bill.
        let retry = |order: i64| {
            let app = &app;
            let support = support.clone();
            async move { app.post(&format!("/admin/api/v1/orders/{order}/retry-payout"), Some(&support), &json!({})).await }
        };
        let (s, b) = retry(d.order).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("no_payout")));
        let (s, b) = act(&app, &d.buyer, d.order, "confirm-receipt", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = retry(d.order).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("payout_awaits_seller")));
        fail_next(&app, "transfer", "timeout", Some(1500)).await;
        let (s, b) = act(&app, &d.seller, d.order, "payout", json!({})).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("wechat_pay_unavailable")), "{b}");
        let (_, o) = app.get(&format!("/admin/api/v1/orders/{}", d.order), Some(&support)).await;
        assert_eq!(o["payout"]["status"], "uncertain", "{o}");
        let bill_no = o["payout"]["out_bill_no"].as_str().unwrap().to_string();
        let mark = last_audit_id(&app).await;
        let (s, o) = retry(d.order).await;
        assert_eq!(s, StatusCode::OK, "{o}");
        assert_eq!((o["payout"]["status"].as_str(), o["payout"]["out_bill_no"].as_str()), (Some("wait_user_confirm"), Some(bill_no.as_str())), "{o}");
        let bills = sandbox_state(&app).await["bills"].clone();
        assert_eq!(bills.as_object().unwrap().len(), 1, "one bill at WeChat: {bills}");
        let rows = audit_since(&app, mark).await;
        assert_eq!((rows.len(), rows[0].action.as_str()), (1, "order.retry_payout"));
    }
);

app_test!(
    async fn a_ban_closes_the_students_live_chat_sockets(backend) {
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let moderator = app.operator(Role::Moderator, None).await;
        let mallory = student(&app, "mallory", fx.school).await;
        let bob = student(&app, "bob", fx.school).await;
        let mut phone = ChatSocket::connect(&app.base, &mallory.token, Auth::Header).await.unwrap();
        let mut tablet = ChatSocket::connect(&app.base, &mallory.token, Auth::Query).await.unwrap();
        let mut bystander = ChatSocket::connect(&app.base, &bob.token, Auth::Header).await.unwrap();
        let (s, b) = app
            .post(&format!("/admin/api/v1/users/{}/ban", mallory.id), Some(&moderator), &json!({ "reason": "诈骗" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for socket in [&mut phone, &mut tablet] {
            let f = socket.next_of("error").await.unwrap();
            assert_eq!(f["code"], "account_banned", "{f}");
            let closed = socket.next_within(std::time::Duration::from_secs(5)).await.unwrap_err();
            assert!(closed.to_string().contains("closed"), "{closed}");
        }
        // Nobody else is disturbed, and the banned student cannot reconnect.
        let ping = bystander.next_within(std::time::Duration::from_millis(300)).await;
        assert!(ping.is_ok(), "{ping:?}");
        assert_eq!(ChatSocket::refused_status(&app.base, Some(&mallory.token)).await, Some(401));
    }
);

app_test!(
    async fn order_timers_follow_the_site_settings_without_a_restart(backend) {
        use campus_trade::orders::model::order;
        let app = TestApp::spawn(backend).await;
        let admin = app.operator(Role::Admin, None).await;
        let deadline = |id: i64| {
            let app = &app;
            async move {
                let o = order::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap();
                (o.expires_at.unwrap() - o.created_at).num_seconds()
            }
        };
        let before = deal(&app, 1000).await;
        assert_eq!(deadline(before.order).await, 15 * 60);
        let (s, v) = app.patch("/admin/api/v1/settings", Some(&admin), &json!({ "order_payment_timeout_minutes": 30 })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let after = deal(&app, 1100).await;
        assert_eq!(deadline(after.order).await, 30 * 60);

        // A paid order two days old is not due with the default 7 days, and is with 1.
        let d = paid_deal(&app, 1200).await;
        order::Entity::update_many()
            .col_expr(order::Column::PaidAt, sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::days(2)))
            .filter(order::Column::Id.eq(d.order))
            .exec(&app.state.db)
            .await
            .unwrap();
        let status = |id: i64| {
            let app = &app;
            async move { order::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap().status.as_str() }
        };
        campus_trade::orders::service::auto_complete_due(&app.state).await.unwrap();
        assert_eq!(status(d.order).await, "paid");
        let (s, v) = app.patch("/admin/api/v1/settings", Some(&admin), &json!({ "order_auto_complete_days": 1 })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        campus_trade::orders::service::auto_complete_due(&app.state).await.unwrap();
        assert_eq!(status(d.order).await, "completed");
    }
);

app_test!(
    async fn statistics_count_orders_money_disputes_and_chatters_per_day(backend) {
        use campus_trade::{
            orders::model::{OrderStatus, PaymentMethod, order, order_event},
            payments::model::{PayoutStatus, RefundStatus, payout, refund},
        };
        use chrono::TimeZone;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        let app = TestApp::spawn(backend).await;
        let fx = fixture(&app).await;
        let admin = app.operator(Role::Admin, None).await;
        let (other, _) = other_school(&app, &admin, "stats-o").await;
        let alice = student(&app, "alice", fx.school).await;
        let bob = student(&app, "bob", fx.school).await;
        let olga = student(&app, "olga", other).await;
        let here = sell(&app, &alice, &fx, "台灯", "宿舍用").await["id"].as_i64().unwrap();
        let there = sell(&app, &olga, &fx, "书架", "宿舍用").await["id"].as_i64().unwrap();
        let db = &app.state.db;
        // 2026-03-01 in China is 2026-02-28T16:00Z to 2026-03-01T16:00Z.
        let t = |d: u32, h: u32| chrono::Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap();
        let new_order = |listing: i64, seller: i64, amount: i64, at| order::ActiveModel {
            listing_id: Set(listing),
            buyer_id: Set(bob.id),
            seller_id: Set(seller),
            title: Set("x".into()),
            amount: Set(amount),
            payment_method: Set(PaymentMethod::WechatPay),
            status: Set(OrderStatus::Paid),
            offer_id: Set(None),
            meetup_place_id: Set(None),
            handover_code: Set("000000".into()),
            handover_failures: Set(0),
            handover_fail_day: Set(None),
            expires_at: Set(None),
            refund_reason: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
            paid_at: Set(Some(at)),
            completed_at: Set(None),
            cancelled_at: Set(None),
            settled_at: Set(None),
            ..Default::default()
        };
        let a = order::Entity::insert(new_order(here, alice.id, 5000, t(1, 3))).exec(db).await.unwrap().last_insert_id;
        let b = order::Entity::insert(new_order(here, alice.id, 3000, t(1, 6))).exec(db).await.unwrap().last_insert_id;
        let c = order::Entity::insert(new_order(there, olga.id, 9900, t(1, 9))).exec(db).await.unwrap().last_insert_id;
        let events = [
            (a, None, "pending_payment", "buyer", t(1, 2)),
            (a, Some("pending_payment"), "paid", "system", t(1, 3)),
            // 01:00 on March 2nd in China.
            (a, Some("paid"), "completed", "buyer", t(1, 17)),
            (a, Some("completed"), "settled", "system", t(2, 4)),
            (b, None, "pending_payment", "buyer", t(1, 5)),
            (b, Some("pending_payment"), "paid", "system", t(1, 6)),
            (b, Some("paid"), "refund_requested", "buyer", t(1, 7)),
            (b, Some("refund_requested"), "disputed", "seller", t(1, 8)),
            (b, Some("disputed"), "refunded", "operator", t(2, 2)),
            (c, None, "pending_payment", "buyer", t(1, 9)),
            (c, Some("pending_payment"), "paid", "system", t(1, 9)),
            // A late payment's refund is logged from a status to itself: no change of state.
            (c, Some("paid"), "paid", "system", t(1, 10)),
        ];
        for (order_id, from, to, actor, at) in events {
            order_event::Entity::insert(order_event::ActiveModel {
                order_id: Set(order_id),
                actor: Set(actor.into()),
                actor_user_id: Set(None),
                operator: Set(None),
                from_status: Set(from.map(str::to_string)),
                to_status: Set(to.into()),
                reason: Set(None),
                created_at: Set(at),
                ..Default::default()
            })
            .exec(db)
            .await
            .unwrap();
        }
        refund::Entity::insert(refund::ActiveModel {
            order_id: Set(b),
            out_refund_no: Set("RFSTATS1".into()),
            amount: Set(3000),
            reason: Set("x".into()),
            status: Set(RefundStatus::Succeeded),
            refund_id: Set(Some("w1".into())),
            attempts: Set(1),
            next_attempt_at: Set(t(2, 2)),
            last_error: Set(None),
            created_at: Set(t(2, 2)),
            updated_at: Set(t(2, 3)),
            succeeded_at: Set(Some(t(2, 3))),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap();
        payout::Entity::insert(payout::ActiveModel {
            order_id: Set(a),
            seller_id: Set(alice.id),
            out_bill_no: Set("POSTATS1".into()),
            attempt: Set(1),
            amount: Set(4875),
            fee: Set(125),
            status: Set(PayoutStatus::Succeeded),
            transfer_bill_no: Set(None),
            package_info: Set(None),
            fail_reason: Set(None),
            attempts: Set(1),
            next_attempt_at: Set(t(2, 4)),
            created_at: Set(t(1, 17)),
            updated_at: Set(t(2, 4)),
            succeeded_at: Set(Some(t(2, 4))),
            ..Default::default()
        })
        .exec(db)
        .await
        .unwrap();
        for (user, school, at) in [(alice.id, fx.school, t(1, 2)), (bob.id, fx.school, t(1, 3)), (olga.id, other, t(1, 4)), (alice.id, fx.school, t(1, 20))] {
            let day = campus_trade::orders::model::campus_day(at);
            campus_trade::chat::activity::record_in(db, &day, user, Some(school), at).await.unwrap();
        }
        // The same student again the same day counts once.
        campus_trade::chat::activity::record_in(db, "2026-03-01", bob.id, Some(fx.school), t(1, 5)).await.unwrap();

        let support = app.operator(Role::Support, None).await;
        let (s, r) = app.get(&format!("/admin/api/v1/stats?school={}&from=2026-03-01&to=2026-03-02", fx.school), Some(&support)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let (d1, d2) = (&r["days"][0], &r["days"][1]);
        assert_eq!(d1["orders"], json!({ "placed": 2, "paid": 2, "refund_requested": 1, "disputed": 1, "refunded": 0, "completed": 0, "settled": 0, "cancelled": 0 }), "{d1}");
        assert_eq!(d2["orders"], json!({ "placed": 0, "paid": 0, "refund_requested": 0, "disputed": 0, "refunded": 1, "completed": 1, "settled": 1, "cancelled": 0 }), "{d2}");
        let figures = |d: &Value| {
            ["gmv_paid", "gmv_settled", "refunds", "refunded_fen", "disputes_opened", "disputes_decided", "active_chatters"]
                .map(|k| d[k].as_i64().unwrap())
        };
        assert_eq!(figures(d1), [8000, 0, 0, 0, 1, 0, 2], "{d1}");
        assert_eq!(figures(d2), [0, 5000, 1, 3000, 0, 1, 1], "{d2}");
        assert_eq!(figures(&r["totals"]), [8000, 5000, 1, 3000, 1, 1, 3]);
        // Every school.
        let (_, all) = app.get("/admin/api/v1/stats?from=2026-03-01&to=2026-03-02", Some(&support)).await;
        assert_eq!((all["days"][0]["orders"]["placed"].as_i64(), all["days"][0]["gmv_paid"].as_i64(), all["days"][0]["active_chatters"].as_i64()), (Some(3), Some(17900), Some(3)), "{all}");
        assert_eq!(all["days"][0]["orders"]["paid"], 3, "a status logged to itself is no change");
        // Chatting today makes a daily active chatter, once however much they say.
        let (s, c) = app.post("/api/v1/conversations", Some(&bob.token), &json!({ "listing_id": here })).await;
        assert!(s.is_success(), "{c}");
        for (i, text) in ["还在吗", "可以便宜点吗"].iter().enumerate() {
            let (s, m) = app
                .post(&format!("/api/v1/conversations/{}/messages", c["id"]), Some(&bob.token), &json!({ "client_msg_id": format!("m{i}"), "kind": "text", "text": text }))
                .await;
            assert!(s.is_success(), "{m}");
        }
        let (_, today) = app.get(&format!("/admin/api/v1/stats?school={}", fx.school), Some(&support)).await;
        assert_eq!(today["days"].as_array().unwrap().last().unwrap()["active_chatters"], 1, "{today}");
    }
);

/// `(status, body)` of [`TestApp::send`].
trait IntoPair {
    fn into_pair(self) -> (StatusCode, Value);
}

impl IntoPair for (StatusCode, reqwest::header::HeaderMap, Value) {
    fn into_pair(self) -> (StatusCode, Value) {
        (self.0, self.2)
    }
}
