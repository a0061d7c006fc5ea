//! Content security: text checks (local blocklist, then WeChat's msg_sec_check), image checks (media_check_async
//! and the wxa_media_check push back) and the message-push endpoint, all against the sandbox.

use std::time::Duration;

use campus_trade::{
    error::AppError,
    moderation::{
        Scene, Verdict, check_text,
        model::{blocked_word::Action, media_check},
        service, submit_media_check,
    },
    wechat::{push, sandbox::openid_for},
};
use campus_trade_tests::{TestApp, app_test};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

async fn calls(app: &TestApp, api: &str) -> u64 {
    let (s, stats) = app.get("/sandbox/wechat/_sandbox/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    stats["calls"][api].as_u64().unwrap_or(0)
}

fn review(label: &str) -> Verdict {
    Verdict::Review {
        label: label.into(),
    }
}

fn risky(label: &str) -> Verdict {
    Verdict::Risky {
        label: label.into(),
    }
}

fn push_token(app: &TestApp) -> String {
    app.state
        .config
        .wechat_push_token
        .as_ref()
        .expect("push token configured")
        .expose()
        .to_string()
}

/// The query WeChat adds to a push: `signature`, `timestamp`, `nonce`, signed with `token` at `timestamp`.
fn signed(token: &str, timestamp: i64) -> String {
    let ts = timestamp.to_string();
    let nonce = format!("{}", rand::random::<u32>());
    let sig = push::signature(token, &ts, &nonce);
    format!("signature={sig}&timestamp={ts}&nonce={nonce}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn post_push(app: &TestApp, query: &str, body: &str) -> (StatusCode, String) {
    let resp = app
        .http
        .post(app.url(&format!("/wechat/push?{query}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn media_event(trace_id: &str, suggest: &str, label: Value) -> String {
    json!({
        "ToUserName": "gh_5a4db0c0ffee",
        "FromUserName": openid_for("alice"),
        "CreateTime": now(),
        "MsgType": "event",
        "Event": "wxa_media_check",
        "appid": campus_trade::wechat::SANDBOX_APPID,
        "trace_id": trace_id,
        "version": 2,
        "detail": [{ "strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90 }],
        "errcode": 0,
        "errmsg": "ok",
        "result": { "suggest": suggest, "label": label },
    })
    .to_string()
}

async fn check_row(app: &TestApp, id: i64) -> media_check::Model {
    media_check::Entity::find_by_id(id)
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("media check row")
}

/// Waits (up to 5 s) until the only image check of the target satisfies `done`.
async fn wait_for_check(
    app: &TestApp,
    target_id: i64,
    done: impl Fn(&media_check::Model) -> bool,
) -> media_check::Model {
    for _ in 0..100 {
        let rows = service::media_checks_for_target(&app.state, "listing", target_id)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        if done(&rows[0]) {
            return rows[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("image check of listing {target_id} did not reach the expected state in time");
}

app_test!(
    async fn sandbox_keywords_decide_the_text_verdict(backend) {
        let app = TestApp::spawn(backend).await;
        let st = &app.state;
        let alice = openid_for("alice");

        let check = |title: Option<&'static str>, text: String| {
            let alice = alice.clone();
            async move { check_text(st, &alice, Scene::Forum, title, &text).await.unwrap() }
        };
        assert_eq!(check(None, "九成新自行车，价格可议".into()).await, Verdict::Pass);
        assert_eq!(check(None, "出二手教材，有意加微信".into()).await, review("advertising"));
        assert_eq!(check(None, "代考四六级，包过".into()).await, risky("illegal"));
        assert_eq!(check(None, "兼职刷单日结".into()).await, risky("fraud"));
        assert_eq!(check(Some("代考"), "正常的描述".into()).await, risky("illegal"), "the title is checked too");
        assert_eq!(calls(&app, "msg_sec_check").await, 5);

        // Tests extend the keyword table through the control endpoint.
        assert_eq!(check(None, "出售违禁测试词一件".into()).await, Verdict::Pass);
        let (s, _) = app
            .post(
                "/sandbox/wechat/_sandbox/keywords",
                None,
                &json!({ "word": "违禁测试词", "suggest": "risky", "label": 20002 }),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(check(None, "出售违禁测试词一件".into()).await, risky("porn"));
        let (s, _) = app
            .post(
                "/sandbox/wechat/_sandbox/keywords",
                None,
                &json!({ "word": "Pirated", "suggest": "review", "label": "20013" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(check(None, "pirated textbook PDF".into()).await, review("copyright"));
        let (s, b) = app
            .post(
                "/sandbox/wechat/_sandbox/keywords",
                None,
                &json!({ "word": "x", "suggest": "maybe", "label": 1 }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["code"], "invalid_request");

        // Nothing to check: WeChat is not asked.
        let before = calls(&app, "msg_sec_check").await;
        assert_eq!(check(None, "   ".into()).await, Verdict::Pass);
        assert_eq!(calls(&app, "msg_sec_check").await, before);

        // Longer than one call may carry: checked in pieces, and a word in the second piece still counts.
        let long = format!("{}刷单", "好".repeat(2600));
        assert_eq!(check(None, long).await, risky("fraud"));
        assert_eq!(calls(&app, "msg_sec_check").await, before + 2);

        // WeChat refusing the request itself (an invalid openid) is an error, not "unchecked".
        let err = check_text(st, "not an openid!", Scene::Comment, None, "你好").await.unwrap_err();
        assert_eq!(err.code(), "content_check_refused");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
);

app_test!(
    async fn the_local_blocklist_is_applied_before_wechat(backend) {
        let app = TestApp::spawn(backend).await;
        let st = &app.state;
        let alice = openid_for("alice");

        let essay = service::add_blocked_word(st, "代 写论文", Action::Risky, "illegal").await.unwrap();
        assert_eq!(essay.word, "代写论文", "stored normalised");
        let before = calls(&app, "msg_sec_check").await;
        let v = check_text(st, &alice, Scene::Forum, None, "专业 代写 论文，价格优惠").await.unwrap();
        assert_eq!(v, risky("illegal"));
        assert_eq!(calls(&app, "msg_sec_check").await, before, "WeChat is not asked about a blocked word");
        let v = check_text(st, &alice, Scene::Forum, Some("代写论文"), "详情私聊").await.unwrap();
        assert_eq!(v, risky("illegal"), "the title is matched too");

        // Full-width letters and digits fold to half-width, case does not matter. A `review` word still lets
        // WeChat speak, and the more severe verdict wins.
        service::add_blocked_word(st, "vx123", Action::Review, "advertising").await.unwrap();
        let before = calls(&app, "msg_sec_check").await;
        let v = check_text(st, &alice, Scene::Comment, None, "加ＶＸ１２３聊").await.unwrap();
        assert_eq!(v, review("advertising"));
        assert_eq!(calls(&app, "msg_sec_check").await, before + 1);
        let v = check_text(st, &alice, Scene::Comment, None, "Vx 123 刷单").await.unwrap();
        assert_eq!(v, risky("fraud"));

        // The rules of the list.
        let dup = service::add_blocked_word(st, "代写 论文", Action::Review, "fraud").await.unwrap_err();
        assert_eq!(dup.code(), "blocked_word_exists");
        let bad = service::add_blocked_word(st, "abc", Action::Risky, "naughty").await.unwrap_err();
        assert!(matches!(bad, AppError::Validation(ref f) if f.contains_key("label")));
        let empty = service::add_blocked_word(st, " \u{3000} ", Action::Risky, "other").await.unwrap_err();
        assert!(matches!(empty, AppError::Validation(ref f) if f.contains_key("word")));
        let words: Vec<String> = service::list_blocked_words(st).await.unwrap().into_iter().map(|w| w.word).collect();
        assert_eq!(words, vec!["代写论文".to_string(), "vx123".to_string()]);

        // A removed word stops matching at once.
        service::remove_blocked_word(st, essay.id).await.unwrap();
        let v = check_text(st, &alice, Scene::Forum, None, "专业代写论文").await.unwrap();
        assert_eq!(v, Verdict::Pass);
        let gone = service::remove_blocked_word(st, essay.id).await.unwrap_err();
        assert_eq!(gone.code(), "not_found");
    }
);

app_test!(
    async fn when_wechat_is_down_content_waits_for_an_operator(backend) {
        let app = TestApp::spawn_with(backend, &[("WECHAT_API_BASE", "http://127.0.0.1:1")]).await;
        let st = &app.state;
        let alice = openid_for("alice");

        let v = check_text(st, &alice, Scene::Forum, None, "九成新自行车").await.unwrap();
        assert_eq!(v, review("unchecked"));
        // The local blocklist still works without WeChat.
        service::add_blocked_word(st, "枪支", Action::Risky, "illegal").await.unwrap();
        let v = check_text(st, &alice, Scene::Forum, None, "出售枪支").await.unwrap();
        assert_eq!(v, risky("illegal"));

        // An image that cannot be submitted does not fail the caller; it is kept for the retry job.
        submit_media_check(st, &alice, Scene::Forum, "https://example.invalid/a.jpg", "listing", 5, None)
            .await
            .unwrap();
        let rows = service::media_checks_for_target(st, "listing", 5).await.unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.status, media_check::Status::Pending);
        assert!(row.trace_id.is_none());
        assert_eq!(row.attempts, 1);
        assert!(row.last_error.as_deref().is_some_and(|e| e.contains("unreachable")));
        assert!(row.next_attempt_at.is_some_and(|t| t > chrono::Utc::now()));
    }
);

app_test!(
    async fn images_are_checked_end_to_end(backend) {
        let app = TestApp::spawn(backend).await;
        let st = &app.state;
        let alice = openid_for("alice");

        // The "image" is the service's own /healthz: WeChat (the sandbox) downloads and hashes these bytes.
        let healthz = app.http.get(app.url("/healthz")).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&healthz[..], br#"{"status":"ok"}"#);
        let sha = campus_trade::util::sha256_hex(&healthz);
        let (s, _) = app
            .post(
                "/sandbox/wechat/_sandbox/media-verdicts",
                None,
                &json!({ "sha256": sha, "suggest": "risky", "label": 20002 }),
            )
            .await;
        assert_eq!(s, StatusCode::OK);

        submit_media_check(st, &alice, Scene::Forum, &app.url("/healthz"), "listing", 41, Some(7))
            .await
            .unwrap();
        // Any other image passes by default.
        submit_media_check(st, &alice, Scene::Forum, &app.url("/readyz"), "listing", 42, None)
            .await
            .unwrap();
        assert_eq!(calls(&app, "media_check_async").await, 2);
        let submitted = service::media_checks_for_target(st, "listing", 41).await.unwrap();
        assert!(submitted[0].trace_id.as_deref().is_some_and(|t| !t.is_empty()));

        // Decided, and the flagged-image hook has run.
        let flagged = wait_for_check(&app, 41, |c| c.flag_handled_at.is_some()).await;
        assert_eq!(flagged.status, media_check::Status::Risky);
        assert_eq!(flagged.label.as_deref(), Some("porn"));
        assert_eq!(flagged.label_code, Some(20002));
        assert_eq!(flagged.image_id, Some(7));
        assert!(flagged.decided_at.is_some());
        assert!(flagged.next_attempt_at.is_none());

        let clean = wait_for_check(&app, 42, |c| c.decided_at.is_some()).await;
        assert_eq!(clean.status, media_check::Status::Pass);
        assert_eq!(clean.label.as_deref(), Some("normal"));
        assert!(clean.flag_handled_at.is_none());

        // WeChat pushing the same verdict again changes nothing.
        let trace_id = flagged.trace_id.clone().unwrap();
        let (s, body) = post_push(&app, &signed(&push_token(&app), now()), &media_event(&trace_id, "pass", json!("100"))).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "success"));
        assert_eq!(check_row(&app, flagged.id).await, flagged);
    }
);

app_test!(
    async fn an_image_wechat_cannot_download_is_submitted_again(backend) {
        let app = TestApp::spawn(backend).await;
        let st = &app.state;
        submit_media_check(st, &openid_for("bob"), Scene::Forum, &app.url("/no-such-image.jpg"), "listing", 9, None)
            .await
            .unwrap();
        let failed = wait_for_check(&app, 9, |c| c.last_error.is_some()).await;
        assert_eq!(failed.status, media_check::Status::Pending);
        assert!(failed.last_error.as_deref().unwrap().contains("-1008"));
        assert!(failed.next_attempt_at.is_some_and(|t| t > chrono::Utc::now()));

        // Once due, the retry job submits it again under a new trace_id.
        let mut due: media_check::ActiveModel = failed.clone().into();
        due.next_attempt_at = Set(Some(chrono::Utc::now() - chrono::Duration::seconds(1)));
        due.update(&st.db).await.unwrap();
        assert_eq!(service::run_due_work(st).await.unwrap(), 1);
        let again = check_row(&app, failed.id).await;
        assert_eq!(again.attempts, 2);
        assert_ne!(again.trace_id, failed.trace_id);
        assert_eq!(calls(&app, "media_check_async").await, 2);
    }
);

app_test!(
    async fn the_push_endpoint_checks_signatures(backend) {
        let app = TestApp::spawn_with(backend, &[("WECHAT_PUSH_TOKEN", "Pushtoken42")]).await;
        let token = push_token(&app);
        assert_eq!(token, "Pushtoken42");

        // WeChat's URL verification: the raw echostr comes back when the signature is right.
        let resp = app
            .http
            .get(app.url(&format!("/wechat/push?{}&echostr=4375120948345356249", signed(&token, now()))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "4375120948345356249");
        let resp = app
            .http
            .get(app.url(&format!(
                "/wechat/push?{}&echostr=1",
                signed(campus_trade::wechat::SANDBOX_PUSH_TOKEN, now())
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(code_of(&resp.text().await.unwrap()), "invalid_signature");

        // A pending check waiting for its verdict.
        let pending = media_check::ActiveModel {
            trace_id: Set(Some("trace-forged-1".into())),
            target_type: Set("listing".into()),
            target_id: Set(77),
            image_id: Set(None),
            openid: Set(openid_for("alice")),
            scene: Set(3),
            media_url: Set("https://example.invalid/x.jpg".into()),
            status: Set(media_check::Status::Pending),
            label: Set(None),
            label_code: Set(None),
            attempts: Set(1),
            last_error: Set(None),
            next_attempt_at: Set(None),
            flag_handled_at: Set(None),
            created_at: Set(campus_trade::util::now()),
            submitted_at: Set(None),
            decided_at: Set(None),
            ..Default::default()
        }
        .insert(&app.state.db)
        .await
        .unwrap();
        let risky_event = media_event("trace-forged-1", "risky", json!(20003));

        // Forged, unsigned and stale pushes are refused and change nothing.
        let (s, b) = post_push(&app, &signed("SomeOtherToken", now()), &risky_event).await;
        assert_eq!((s, code_of(&b).as_str()), (StatusCode::UNAUTHORIZED, "invalid_signature"));
        let (s, b) = post_push(&app, "", &risky_event).await;
        assert_eq!((s, code_of(&b).as_str()), (StatusCode::UNAUTHORIZED, "invalid_signature"));
        let (s, b) = post_push(&app, &signed(&token, now() - 600), &risky_event).await;
        assert_eq!((s, code_of(&b).as_str()), (StatusCode::UNAUTHORIZED, "stale_timestamp"));
        assert_eq!(check_row(&app, pending.id).await, pending);

        // Safe mode and XML are not spoken; unknown trace ids are refused so WeChat tries again later.
        let (s, b) = post_push(&app, &format!("{}&encrypt_type=aes&msg_signature=abc", signed(&token, now())), r#"{"ToUserName":"gh_x","Encrypt":"AAAA"}"#).await;
        assert_eq!((s, code_of(&b).as_str()), (StatusCode::BAD_REQUEST, "encrypted_push_not_supported"));
        let (s, b) = post_push(&app, &signed(&token, now()), "<xml><Event>wxa_media_check</Event></xml>").await;
        assert_eq!((s, code_of(&b).as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
        let (s, b) = post_push(&app, &signed(&token, now()), &media_event("no-such-trace", "risky", json!(20003))).await;
        assert_eq!((s, code_of(&b).as_str()), (StatusCode::NOT_FOUND, "unknown_trace_id"));
        assert_eq!(check_row(&app, pending.id).await, pending);

        // Other events are acknowledged and ignored.
        let other = json!({ "ToUserName": "gh_x", "MsgType": "event", "Event": "user_enter_tempsession", "CreateTime": now() });
        let (s, b) = post_push(&app, &signed(&token, now()), &other.to_string()).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "success"));

        // The real thing is recorded once; a repeat (even with another verdict) changes nothing.
        let (s, b) = post_push(&app, &signed(&token, now()), &risky_event).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "success"));
        let decided = check_row(&app, pending.id).await;
        assert_eq!(decided.status, media_check::Status::Risky);
        assert_eq!(decided.label.as_deref(), Some("abuse"));
        assert_eq!(decided.label_code, Some(20003));
        assert!(decided.decided_at.is_some());
        assert!(decided.flag_handled_at.is_some());
        for verdict in ["risky", "pass"] {
            let (s, b) = post_push(&app, &signed(&token, now()), &media_event("trace-forged-1", verdict, json!("100"))).await;
            assert_eq!((s, b.as_str()), (StatusCode::OK, "success"));
            assert_eq!(check_row(&app, pending.id).await, decided);
        }
    }
);

app_test!(
    async fn an_image_attached_just_before_a_crash_is_still_checked(backend) {
        use campus_trade::images::model::image;
        use sea_orm::{ColumnTrait, QueryFilter};
        let app = TestApp::spawn(backend).await;
        let seller = app.demo_student("seller").await;
        let listing = app.sell(&seller, "台灯", 3_000).await;
        // The normal path submitted the photo right after the commit.
        let checks = || async {
            media_check::Entity::find()
                .filter(media_check::Column::TargetId.eq(listing))
                .filter(media_check::Column::TargetType.eq("listing"))
                .all(&app.state.db)
                .await
                .unwrap()
        };
        for _ in 0..50 {
            if !checks().await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(checks().await.len(), 1);
        // Now pretend the process died between the commit and the submission: no check row, attached a while ago.
        media_check::Entity::delete_many().exec(&app.state.db).await.unwrap();
        let before = calls(&app, "media_check_async").await;
        image::Entity::update_many()
            .col_expr(image::Column::AttachedAt, sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::minutes(10)))
            .filter(image::Column::TargetId.eq(listing))
            .exec(&app.state.db)
            .await
            .unwrap();

        service::run_due_work(&app.state).await.unwrap();
        let recovered = checks().await;
        assert_eq!(recovered.len(), 1, "the photo is checked after all");
        assert!(recovered[0].trace_id.is_some(), "and WeChat has it: {recovered:?}");
        assert_eq!(calls(&app, "media_check_async").await, before + 1);
        // Once is enough.
        service::run_due_work(&app.state).await.unwrap();
        assert_eq!(checks().await.len(), 1);
        assert_eq!(calls(&app, "media_check_async").await, before + 1);
    }
);
