//! Login, sessions, the error contract, health probes and the OpenAPI document.

use campus_trade_tests::{TestApp, app_test};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

app_test!(
    async fn probes_answer(backend) {
        let app = TestApp::spawn(backend).await;
        let (status, body) = app.get("/healthz", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        let (status, body) = app.get("/readyz", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["database"], "ok");
        let expected_redis = if app.state.kv.as_redis().is_some() { "ok" } else { "not_configured" };
        assert_eq!(body["redis"], expected_redis);
    }
);

app_test!(
    async fn first_login_creates_the_account_and_later_logins_find_it(backend) {
        let app = TestApp::spawn(backend).await;
        let (status, first) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "alice-1" })).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["is_new_user"], true);
        let token = first["token"].as_str().unwrap();
        assert!(token.len() >= 40, "token carries at least 128 bits");
        let raw = first.to_string();
        assert!(!raw.contains("session_key") && !raw.contains("openid"), "login leaks WeChat identifiers: {raw}");
        let expires = chrono::DateTime::parse_from_rfc3339(first["expires_at"].as_str().unwrap()).unwrap();
        let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
        assert!((29..=30).contains(&days), "default session lifetime is 30 days, got {days}");

        let (status, second) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "alice-2" })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(second["is_new_user"], false);
        assert_eq!(second["user"]["id"], first["user"]["id"]);
        assert_ne!(second["token"], first["token"]);

        // Both sessions work.
        for t in [first["token"].as_str().unwrap(), second["token"].as_str().unwrap()] {
            let (status, me) = app.get("/api/v1/me", Some(t)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(me["id"], first["user"]["id"]);
        }

        let bob = app.login("bob").await;
        assert_ne!(json!(bob.id), first["user"]["id"]);
    }
);

app_test!(
    async fn wechat_login_failures_map_to_clear_errors(backend) {
        let app = TestApp::spawn(backend).await;
        let login = |code: &'static str| {
            let app = &app;
            async move { app.post("/api/v1/auth/wechat-login", None, &json!({ "code": code })).await }
        };
        let (s, b) = login("carol-1").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = login("carol-1").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("wechat_code_used")));
        let (s, b) = login("nosuchformat").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("wechat_code_invalid")));
        let (s, b) = login("blocked-1").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("wechat_login_blocked")));
        let (s, b) = login("busy-1").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("wechat_unavailable")));
        let (s, b) = login("quota-1").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
        let (s, b) = login("").await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
        assert!(b["fields"]["code"].is_string());
    }
);

app_test!(
    async fn wechat_down_is_503(backend) {
        // Point the (sandbox-mode) client at a port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let base = format!("http://{closed}");
        let app = TestApp::spawn_with(backend, &[("WECHAT_API_BASE", &base)]).await;
        let (s, b) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "dave-1" })).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert_eq!(b["code"], "wechat_unavailable");
    }
);

app_test!(
    async fn login_is_rate_limited_per_address(backend) {
        let app = TestApp::spawn_with(backend, &[("LOGIN_RATE_PER_IP_PER_MINUTE", "3")]).await;
        for i in 0..3 {
            let (s, b) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": format!("erin-{i}") })).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        let (s, headers, b) =
            app.send(Method::POST, "/api/v1/auth/wechat-login", None, Some(&json!({ "code": "erin-9" }))).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(b["code"], "rate_limited");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
);

app_test!(
    async fn the_same_code_cannot_be_hammered(backend) {
        let app = TestApp::spawn(backend).await;
        for _ in 0..3 {
            let (s, _) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "badcode" })).await;
            assert_eq!(s, StatusCode::BAD_REQUEST);
        }
        let (s, b) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "badcode" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
    }
);

app_test!(
    async fn logout_ends_the_session_and_bad_tokens_are_refused(backend) {
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let other = app.login("alice").await;
        let (s, _, _) = app.send(Method::POST, "/api/v1/auth/logout", Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, b) = app.get("/api/v1/me", Some(&alice.token)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
        // The other session of the same user is untouched.
        let (s, _) = app.get("/api/v1/me", Some(&other.token)).await;
        assert_eq!(s, StatusCode::OK);

        for bad in ["ct_forged", &"x".repeat(500)] {
            let (s, b) = app.get("/api/v1/me", Some(bad)).await;
            assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
        }
        let (s, b) = app.get("/api/v1/me", None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }
);

app_test!(
    async fn session_lifetime_is_configurable(backend) {
        let app = TestApp::spawn_with(backend, &[("SESSION_TTL_DAYS", "2")]).await;
        let (_, body) = app.post("/api/v1/auth/wechat-login", None, &json!({ "code": "fay-1" })).await;
        let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
        let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
        assert!((47..=48).contains(&hours), "{hours}");
    }
);

app_test!(
    async fn every_error_has_the_json_shape(backend) {
        let app = TestApp::spawn_with(backend, &[("MAX_BODY_BYTES", "4096")]).await;
        let (s, b) = app.get("/api/v1/no-such-thing", None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

        let (s, _, b) = app.send(Method::DELETE, "/api/v1/auth/wechat-login", None, None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));

        let resp = app
            .http
            .post(app.url("/api/v1/auth/wechat-login"))
            .header("content-type", "application/json")
            .body("{\"code\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["code"], "invalid_request");
        assert!(b["message"].as_str().unwrap().contains("EOF"), "says why: {b}");

        let big = json!({ "code": "x".repeat(10_000) });
        let (s, b) = app.post("/api/v1/auth/wechat-login", None, &big).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

        // A chunked body without Content-Length is held to the same limit. (Its own client: the server closes
        // that connection instead of reading the rest of the body.)
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(b"{\"code\":\"".to_vec()), Ok(vec![b'a'; 8000]), Ok(b"\"}".to_vec())];
        let resp = reqwest::Client::new()
            .post(app.url("/api/v1/auth/wechat-login"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let resp = app.http.post(app.url("/api/v1/auth/wechat-login")).body("code=1").send().await.unwrap();
        assert!(resp.status().is_client_error());
        let b: Value = resp.json().await.unwrap();
        assert!(b["code"].is_string() && b["message"].is_string(), "{b}");
    }
);

app_test!(
    async fn request_ids_are_echoed(backend) {
        let app = TestApp::spawn(backend).await;
        let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
        let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(generated.len() >= 8);
        let resp = app.http.get(app.url("/healthz")).header("x-request-id", "lb-abcdef123456").send().await.unwrap();
        assert_eq!(resp.headers()["x-request-id"], "lb-abcdef123456");
        let resp = app.http.get(app.url("/healthz")).header("x-request-id", "bad id\twith junk").send().await.unwrap();
        assert_ne!(resp.headers()["x-request-id"], "bad id\twith junk");
    }
);

app_test!(
    async fn openapi_document_describes_the_student_api(backend) {
        let app = TestApp::spawn(backend).await;
        let (s, spec) = app.get("/api/openapi.json", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
        let paths = spec["paths"].as_object().unwrap();
        for p in ["/v1/auth/wechat-login", "/v1/auth/logout", "/v1/me", "/v1/me/verification", "/v1/users/{id}", "/v1/schools"] {
            assert!(paths.contains_key(p), "spec lacks {p}");
        }
        // Every operation is described and documents the error body.
        for (path, ops) in paths {
            for (method, op) in ops.as_object().unwrap() {
                assert!(op["summary"].is_string() || op["description"].is_string(), "{method} {path} undocumented");
                assert!(op["responses"]["422"].is_object(), "{method} {path} lacks error responses");
            }
        }
        assert!(spec["components"]["securitySchemes"]["StudentAuth"].is_object());
        let resp = app.http.get(app.url("/api/docs")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.text().await.unwrap().contains("swagger"));
    }
);

app_test!(
    async fn a_session_in_use_slides_forward(backend) {
        use campus_trade::auth::sessions::{hash_token, session};
        use sea_orm::{EntityTrait, sea_query::Expr};
        let app = TestApp::spawn(backend).await;
        let alice = app.login("alice").await;
        let hash = hash_token(&alice.token);
        let soon = chrono::Utc::now() + chrono::Duration::hours(1);

        // Make the session nearly lapsed, in whichever store holds it.
        match app.state.kv.as_redis() {
            Some(redis) => {
                let key = redis.key(&format!("session:{hash}"));
                let _: () = redis::cmd("EXPIRE").arg(&key).arg(3600).query_async(&mut redis.conn.clone()).await.unwrap();
            }
            None => {
                session::Entity::update_many()
                    .col_expr(session::Column::ExpiresAt, Expr::value(soon))
                    .exec(&app.state.db)
                    .await
                    .unwrap();
            }
        }

        let (s, _) = app.get("/api/v1/me", Some(&alice.token)).await;
        assert_eq!(s, StatusCode::OK);

        // Using it pushed the expiry a full lifetime ahead again.
        let left = match app.state.kv.as_redis() {
            Some(redis) => {
                let key = redis.key(&format!("session:{hash}"));
                let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis.conn.clone()).await.unwrap();
                chrono::Duration::seconds(ttl)
            }
            None => {
                let row = session::Entity::find_by_id(hash.clone()).one(&app.state.db).await.unwrap().unwrap();
                row.expires_at - chrono::Utc::now()
            }
        };
        assert!(left > chrono::Duration::days(29), "session expiry did not slide: {left}");
    }
);
