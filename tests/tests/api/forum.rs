//! The campus circle: boards, posts, anonymity, votes, hot ranking, comments, reports and blocks.

use campus_trade::forum::{model::post, service as forum};
use campus_trade_tests::{Student, TestApp, app_test};
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

struct Demo {
    school: i64,
    boards: Vec<Value>,
}

impl Demo {
    fn board(&self, slug: &str) -> i64 {
        self.boards.iter().find(|b| b["slug"] == slug).unwrap()["id"]
            .as_i64()
            .unwrap()
    }
}

async fn demo(app: &TestApp) -> Demo {
    let (_, schools) = app.get("/api/v1/schools", None).await;
    let school = schools
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slug"] == "demo-university")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (s, boards) = app
        .get(&format!("/api/v1/boards?school_id={school}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{boards}");
    Demo {
        school,
        boards: boards.as_array().unwrap().clone(),
    }
}

/// A student of the demo school with a recognisable nickname.
async fn student(app: &TestApp, who: &str, d: &Demo) -> Student {
    let s = app.login(who).await;
    let (status, b) = app
        .patch(
            "/api/v1/me",
            Some(&s.token),
            &json!({ "school_id": d.school, "nickname": format!("N{who}") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    s
}

async fn post(app: &TestApp, s: &Student, d: &Demo, title: &str, anonymous: bool) -> Value {
    let body = json!({ "board_id": d.board("chat"), "title": title, "body": "有人一起吗", "anonymous": anonymous });
    let (status, p) = app.post("/api/v1/posts", Some(&s.token), &body).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    p
}

async fn comment(
    app: &TestApp,
    s: &Student,
    post_id: i64,
    body: &str,
    parent: Option<i64>,
) -> Value {
    let (status, c) = app
        .post(
            &format!("/api/v1/posts/{post_id}/comments"),
            Some(&s.token),
            &json!({ "body": body, "parent_id": parent }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    c
}

async fn vote(app: &TestApp, s: &Student, path: &str, value: i32) -> Value {
    let (status, _, b) = app
        .send(
            Method::PUT,
            path,
            Some(&s.token),
            Some(&json!({ "value": value })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

/// Every field about a person that names `user` (by object or bare id), and every string with their nickname.
fn leaks(v: &Value, user: &Student) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                // Any field about a person (author, seller, user, owner, creator, …) that names them, as an
                // object with their id or as a bare id.
                let about_a_person = ["author", "seller", "user", "owner", "creat", "poster", "by"]
                    .iter()
                    .any(|w| k.contains(w));
                if about_a_person
                    && (x["id"].as_i64() == Some(user.id) || x.as_i64() == Some(user.id))
                {
                    out.push(format!("{k}: {x}"));
                }
                out.extend(leaks(x, user));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| out.extend(leaks(x, user))),
        Value::String(s) if s.contains(&format!("N{}", user.who)) => out.push(s.clone()),
        _ => {}
    }
    out
}

app_test!(
    async fn boards_are_seeded_and_posts_follow_the_rules(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let slugs: Vec<&str> = d.boards.iter().map(|b| b["slug"].as_str().unwrap()).collect();
        assert_eq!(slugs, ["help", "chat", "wanted", "lost-and-found", "events", "graduation"]);
        assert_eq!(d.boards[0]["name"], "求助");
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        // Alice's own school is the default.
        let (_, mine) = app.get("/api/v1/boards", Some(&alice.token)).await;
        assert_eq!(mine.as_array().unwrap().len(), 6);

        // Validation and school rules.
        let (s, b) = app
            .post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": d.board("help"), "title": "", "body": "x".repeat(5001) }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
        assert!(b["fields"]["title"].is_string() && b["fields"]["body"].is_string());
        let nobody = app.login("nobody").await;
        let (s, b) = app
            .post("/api/v1/posts", Some(&nobody.token), &json!({ "board_id": d.board("help"), "title": "hi" }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("school_required")));

        let p = post(&app, &alice, &d, "周末爬山", false).await;
        let id = p["id"].as_i64().unwrap();
        assert_eq!(p["author"]["id"], alice.id);
        assert_eq!(p["is_mine"], true);
        assert_eq!(p["status"], "published");
        let acts: Vec<&str> = p["allowed_actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(acts.contains(&"edit") && acts.contains(&"delete"));

        // Only the author edits.
        let (s, b) = app.patch(&format!("/api/v1/posts/{id}"), Some(&bob.token), &json!({ "title": "改" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_post_author")));
        let (s, b) = app.patch(&format!("/api/v1/posts/{id}"), Some(&alice.token), &json!({ "title": "周末去爬山" })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["title"], "周末去爬山");

        // The first comment closes the edit window.
        comment(&app, &bob, id, "算我一个", None).await;
        let (s, b) = app.patch(&format!("/api/v1/posts/{id}"), Some(&alice.token), &json!({ "title": "再改" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("edit_window_closed")));

        // So does the 24-hour mark.
        let old = post(&app, &alice, &d, "旧帖", false).await;
        let old_id = old["id"].as_i64().unwrap();
        post::Entity::update_many()
            .col_expr(post::Column::CreatedAt, Expr::value(chrono::Utc::now() - chrono::Duration::hours(25)))
            .filter(post::Column::Id.eq(old_id))
            .exec(&app.state.db)
            .await
            .unwrap();
        let (s, b) = app.patch(&format!("/api/v1/posts/{old_id}"), Some(&alice.token), &json!({ "body": "新" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("edit_window_closed")));

        // Soft delete: only by the author; the thread stays readable.
        let (s, _, b) = app.send(Method::DELETE, &format!("/api/v1/posts/{id}"), Some(&bob.token), None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_post_author")));
        let (s, _, _) = app.send(Method::DELETE, &format!("/api/v1/posts/{id}"), Some(&alice.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, gone) = app.get(&format!("/api/v1/posts/{id}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!((gone["status"].as_str(), gone["title"].as_str(), &gone["author"]), (Some("deleted"), Some(""), &Value::Null));
        let (s, thread) = app.get(&format!("/api/v1/posts/{id}/comments"), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(thread["items"][0]["body"], "算我一个");
        let (s, b) = app.post(&format!("/api/v1/posts/{id}/comments"), Some(&bob.token), &json!({ "body": "还在吗" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_transition")));
        let (_, list) = app.get(&format!("/api/v1/posts?board={}&sort=new", d.board("chat")), None).await;
        assert_eq!(ids(&list), vec![old_id], "deleted posts leave the feed");

        // Locked posts take no comments.
        forum::set_locked(&app.state.db, old_id, true).await.unwrap();
        let (s, b) = app.post(&format!("/api/v1/posts/{old_id}/comments"), Some(&bob.token), &json!({ "body": "hi" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("post_locked")));
    }
);

app_test!(
    async fn anonymous_authors_never_leak(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        let p = post(&app, &alice, &d, "匿名吐槽食堂", true).await;
        let id = p["id"].as_i64().unwrap();
        assert_eq!((p["is_mine"].as_bool(), &p["author"], p["anonymous"].as_bool()), (Some(true), &Value::Null, Some(true)));

        // Alice answers in her own thread: she stays anonymous there too.
        let c1 = comment(&app, &bob, id, "同感", None).await;
        let c1_id = c1["id"].as_i64().unwrap();
        let mine = comment(&app, &alice, id, "对吧", Some(c1_id)).await;
        assert_eq!((mine["anonymous"].as_bool(), mine["is_mine"].as_bool()), (Some(true), Some(true)));
        let reply = comment(&app, &bob, id, "哈哈", Some(mine["id"].as_i64().unwrap())).await;
        assert_eq!(reply["reply_to"]["author"], Value::Null, "{reply}");
        assert_eq!(reply["reply_to"]["anonymous"], true);
        vote(&app, &bob, &format!("/api/v1/posts/{id}/vote"), 1).await;

        // Whatever bob (or a visitor) looks at, Alice is not named.
        let mut seen = Vec::new();
        for token in [Some(bob.token.as_str()), None] {
            for path in [
                format!("/api/v1/posts/{id}"),
                format!("/api/v1/posts?board={}", d.board("chat")),
                format!("/api/v1/posts?school={}&sort=new", d.school),
                format!("/api/v1/posts/{id}/comments"),
                format!("/api/v1/posts/{id}/comments?sort=new"),
            ] {
                let (s, b) = app.get(&path, token).await;
                assert_eq!(s, StatusCode::OK, "{path}: {b}");
                assert!(leaks(&b, &alice).is_empty(), "{path} leaks alice: {:?}", leaks(&b, &alice));
                seen.push(b);
            }
        }
        let (_, inbox) = app.get("/api/v1/me/notifications", Some(&bob.token)).await;
        assert_eq!(inbox["items"].as_array().unwrap().len(), 1, "{inbox}");
        assert!(leaks(&inbox, &alice).is_empty());
        let detail = &seen[0];
        assert_eq!(detail["is_mine"], false);
        // Bob sees the same buttons on Alice's anonymous post as on anyone's.
        let other = post(&app, &bob, &d, "另一个", true).await;
        let carol = student(&app, "carol", &d).await;
        let (_, a) = app.get(&format!("/api/v1/posts/{id}"), Some(&carol.token)).await;
        let (_, b) = app.get(&format!("/api/v1/posts/{}", other["id"]), Some(&carol.token)).await;
        assert_eq!(a["allowed_actions"], b["allowed_actions"]);
        // Alice's own reply reads as hers to her, to no one else.
        let (_, thread) = app.get(&format!("/api/v1/posts/{id}/comments"), Some(&alice.token)).await;
        assert_eq!(thread["items"][0]["replies"][0]["is_mine"], true);
        let (_, thread) = app.get(&format!("/api/v1/posts/{id}/comments"), Some(&bob.token)).await;
        assert_eq!(thread["items"][0]["replies"][0]["is_mine"], false);
        assert_eq!(thread["items"][0]["replies"][0]["author"], Value::Null);
        // A named comment names its author.
        assert_eq!(thread["items"][0]["author"]["id"], bob.id);
    }
);

app_test!(
    async fn hot_ranking_follows_the_formula_on_a_timeline(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let fresh = post(&app, &alice, &d, "刚发的", false).await["id"].as_i64().unwrap();
        let voted = post(&app, &alice, &d, "十小时前三票", false).await["id"].as_i64().unwrap();
        let popular = post(&app, &alice, &d, "二十小时前一百分", false).await["id"].as_i64().unwrap();
        let now = chrono::Utc::now();
        let backdate = |id: i64, hours: i64| {
            post::Entity::update_many()
                .col_expr(post::Column::CreatedAt, Expr::value(now - chrono::Duration::hours(hours)))
                .filter(post::Column::Id.eq(id))
        };
        backdate(voted, 10).exec(&app.state.db).await.unwrap();
        backdate(popular, 20).exec(&app.state.db).await.unwrap();
        post::Entity::update_many()
            .col_expr(post::Column::Score, Expr::value(100i64))
            .filter(post::Column::Id.eq(popular))
            .exec(&app.state.db)
            .await
            .unwrap();
        for id in [voted, popular] {
            forum::refresh_hot(&app.state.db, id).await.unwrap();
        }
        for who in ["v1", "v2", "v3"] {
            let v = student(&app, who, &d).await;
            vote(&app, &v, &format!("/api/v1/posts/{voted}/vote"), 1).await;
        }
        // hot: 100 points 20 h ago (2 − 1.6 = 0.4) > fresh (0) > 3 points 10 h ago (0.48 − 0.8 = −0.32).
        let (_, hot) = app.get(&format!("/api/v1/posts?school={}", d.school), None).await;
        assert_eq!(ids(&hot), vec![popular, fresh, voted]);
        let (_, new) = app.get(&format!("/api/v1/posts?school={}&sort=new", d.school), None).await;
        assert_eq!(ids(&new), vec![fresh, voted, popular]);
        let (_, top) = app.get(&format!("/api/v1/posts?school={}&sort=top&period=day", d.school), None).await;
        assert_eq!(ids(&top), vec![popular, voted, fresh]);
        backdate(popular, 48).exec(&app.state.db).await.unwrap();
        let (_, top) = app.get(&format!("/api/v1/posts?school={}&sort=top&period=day", d.school), None).await;
        assert_eq!(ids(&top), vec![voted, fresh], "older than a day");
        let (_, top) = app.get(&format!("/api/v1/posts?school={}&sort=top&period=all", d.school), None).await;
        assert_eq!(ids(&top), vec![popular, voted, fresh]);

        // A pinned post leads the first page, and only the first.
        forum::set_pinned(&app.state.db, voted, true).await.unwrap();
        let (_, p1) = app.get(&format!("/api/v1/posts?school={}&limit=1", d.school), None).await;
        assert_eq!(ids(&p1)[0], voted);
        assert_eq!(p1["items"][0]["pinned"], true);
        let mut all = ids(&p1);
        let mut cursor = p1["next_cursor"].as_str().map(String::from);
        while let Some(c) = cursor {
            let (_, p) = app.get(&format!("/api/v1/posts?school={}&limit=1&cursor={c}", d.school), None).await;
            all.extend(ids(&p));
            cursor = p["next_cursor"].as_str().map(String::from);
        }
        assert_eq!(all, vec![voted, popular, fresh]);
    }
);

app_test!(
    async fn fifty_concurrent_voters_never_drift(backend) {
        let app = TestApp::spawn_with(backend, &[("LOGIN_RATE_PER_IP_PER_MINUTE", "1000")]).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let id = post(&app, &alice, &d, "投票", false).await["id"].as_i64().unwrap();
        let c = comment(&app, &alice, id, "评论也投", None).await["id"].as_i64().unwrap();
        let mut voters = Vec::new();
        for i in 0..50 {
            voters.push(app.login(&format!("voter{i}")).await);
        }
        // Everyone votes at once, on the post and its comment; then a third change their mind at once.
        let round = |values: Vec<(usize, i32)>| {
            let app = &app;
            let voters = &voters;
            futures_util::future::join_all(values.into_iter().map(move |(i, v)| async move {
                let s = &voters[i];
                for path in [format!("/api/v1/posts/{id}/vote"), format!("/api/v1/comments/{c}/vote")] {
                    let (status, _, b) = app.send(Method::PUT, &path, Some(&s.token), Some(&json!({ "value": v }))).await;
                    assert_eq!(status, StatusCode::OK, "{b}");
                }
            }))
        };
        round((0..50).map(|i| (i, if i % 5 == 0 { -1 } else { 1 })).collect()).await;
        round((0..50).filter(|i| i % 3 == 0).map(|i| (i, if i % 2 == 0 { 0 } else { -1 })).collect()).await;
        let expected: i64 = (0..50)
            .map(|i| {
                if i % 3 == 0 {
                    if i % 2 == 0 { 0 } else { -1 }
                } else if i % 5 == 0 {
                    -1
                } else {
                    1
                }
            })
            .sum();
        use campus_trade::forum::model::{comment as cm, vote as vm};
        for (kind, target) in [("post", id), ("comment", c)] {
            let rows = vm::Entity::find()
                .filter(vm::Column::TargetType.eq(kind))
                .filter(vm::Column::TargetId.eq(target))
                .all(&app.state.db)
                .await
                .unwrap();
            let sum: i64 = rows.iter().map(|r| i64::from(r.value)).sum();
            let ups = rows.iter().filter(|r| r.value == 1).count() as i64;
            let downs = rows.iter().filter(|r| r.value == -1).count() as i64;
            assert_eq!(sum, expected);
            let (score, u, dn) = if kind == "post" {
                let p = post::Entity::find_by_id(target).one(&app.state.db).await.unwrap().unwrap();
                (p.score, p.upvotes, p.downvotes)
            } else {
                let x = cm::Entity::find_by_id(target).one(&app.state.db).await.unwrap().unwrap();
                (x.score, x.upvotes, x.downvotes)
            };
            assert_eq!((score, u, dn), (sum, ups, downs), "{kind} totals drifted");
        }
        // Idempotent, and the API reports the caller's vote.
        let again = vote(&app, &voters[1], &format!("/api/v1/posts/{id}/vote"), 1).await;
        assert_eq!((again["score"].as_i64(), again["my_vote"].as_i64()), (Some(expected), Some(1)));
        let (s, _, b) = app.send(Method::PUT, &format!("/api/v1/posts/{id}/vote"), Some(&voters[1].token), Some(&json!({ "value": 2 }))).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
        let (_, p) = app.get(&format!("/api/v1/posts/{id}"), Some(&voters[1].token)).await;
        assert_eq!(p["my_vote"], 1);
    }
);

app_test!(
    async fn replies_nest_one_level_and_name_whom_they_answer(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        let carol = student(&app, "carol", &d).await;
        let dave = student(&app, "dave", &d).await;
        let id = post(&app, &alice, &d, "求推荐自习室", false).await["id"].as_i64().unwrap();
        let top = comment(&app, &bob, id, "图书馆四楼", None).await;
        let top_id = top["id"].as_i64().unwrap();
        let r1 = comment(&app, &carol, id, "四楼人太多", Some(top_id)).await;
        assert_eq!((r1["parent_id"].as_i64(), r1["reply_to"]["author"]["id"].as_i64()), (Some(top_id), Some(bob.id)));
        let r2 = comment(&app, &dave, id, "那去三楼", Some(r1["id"].as_i64().unwrap())).await;
        assert_eq!(r2["parent_id"].as_i64(), Some(top_id), "a reply to a reply hangs under the top comment");
        assert_eq!(r2["reply_to"]["comment_id"], r1["id"]);
        assert_eq!(r2["reply_to"]["author"]["id"].as_i64(), Some(carol.id));
        let second = comment(&app, &carol, id, "教学楼也行", None).await;
        // The post's author hears of every comment but her own; whoever is answered hears of the reply.
        comment(&app, &alice, id, "谢谢", Some(top_id)).await;
        let kinds = |s: Student| {
            let app = &app;
            async move {
                let (status, inbox) = app.get("/api/v1/me/notifications", Some(&s.token)).await;
                assert_eq!(status, StatusCode::OK, "{inbox}");
                let mut k: Vec<String> = inbox["items"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap().to_string()).collect();
                k.sort();
                k
            }
        };
        assert_eq!(kinds(alice.clone()).await, vec!["post_comment"; 4]);
        assert_eq!(kinds(bob.clone()).await, vec!["comment_reply"; 2]);
        assert_eq!(kinds(carol.clone()).await, vec!["comment_reply"]);
        assert!(kinds(dave.clone()).await.is_empty());

        let (_, page) = app.get(&format!("/api/v1/posts/{id}/comments?sort=new"), None).await;
        assert_eq!(ids(&page), vec![second["id"].as_i64().unwrap(), top_id]);
        let t = &page["items"][1];
        assert_eq!(t["reply_count"], 3);
        let replies: Vec<i64> = t["replies"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(replies[..2], [r1["id"].as_i64().unwrap(), r2["id"].as_i64().unwrap()]);
        let (_, p) = app.get(&format!("/api/v1/posts/{id}"), None).await;
        assert_eq!(p["comment_count"], 5);

        // All replies of a comment, paged oldest first (asking with a reply's id means its thread).
        let (s, p1) = app.get(&format!("/api/v1/comments/{top_id}/replies?limit=2"), None).await;
        assert_eq!(s, StatusCode::OK, "{p1}");
        let first: Vec<i64> = p1["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(first, vec![r1["id"].as_i64().unwrap(), r2["id"].as_i64().unwrap()]);
        let (_, p2) = app
            .get(&format!("/api/v1/comments/{}/replies?limit=2&cursor={}", r1["id"], p1["next_cursor"].as_str().unwrap()), None)
            .await;
        assert_eq!(p2["items"].as_array().unwrap().len(), 1);
        assert_eq!(p2["next_cursor"], Value::Null);
        let (s, _) = app.get("/api/v1/comments/999999/replies", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Comment votes order the `top` sort; a deleted comment keeps its replies.
        vote(&app, &alice, &format!("/api/v1/comments/{}/vote", second["id"]), 1).await;
        vote(&app, &dave, &format!("/api/v1/comments/{}/vote", second["id"]), 1).await;
        vote(&app, &alice, &format!("/api/v1/comments/{top_id}/vote"), -1).await;
        let (_, page) = app.get(&format!("/api/v1/posts/{id}/comments"), None).await;
        assert_eq!(ids(&page), vec![second["id"].as_i64().unwrap(), top_id]);
        let (s, _, _) = app.send(Method::DELETE, &format!("/api/v1/comments/{top_id}"), Some(&carol.token), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _, _) = app.send(Method::DELETE, &format!("/api/v1/comments/{top_id}"), Some(&bob.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, page) = app.get(&format!("/api/v1/posts/{id}/comments?sort=new"), None).await;
        let t = &page["items"][1];
        assert_eq!((t["status"].as_str(), t["body"].as_str(), &t["author"]), (Some("deleted"), Some(""), &Value::Null));
        assert_eq!(t["replies"].as_array().unwrap().len(), 3);
        // Replying to a comment of another post is refused.
        let other = post(&app, &bob, &d, "另一帖", false).await["id"].as_i64().unwrap();
        let (s, b) = app.post(&format!("/api/v1/posts/{other}/comments"), Some(&bob.token), &json!({ "body": "x", "parent_id": r1["id"] })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
    }
);

app_test!(
    async fn reports_from_enough_students_hide_the_target(backend) {
        let app = TestApp::spawn_with(backend, &[("REPORT_HIDE_THRESHOLD", "2")]).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        let carol = student(&app, "carol", &d).await;
        let id = post(&app, &alice, &d, "广告", false).await["id"].as_i64().unwrap();
        let report = |s: &Student, ty: &str, target: i64| {
            let body = json!({ "target_type": ty, "target_id": target, "reason": "spam", "details": "刷屏" });
            let token = s.token.clone();
            let app = &app;
            async move { app.post("/api/v1/reports", Some(&token), &body).await }
        };
        let (s, b) = report(&bob, "post", id).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = report(&bob, "post", id).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("already_reported")));
        let (s, b) = report(&bob, "message", 999_999).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (s, _) = report(&bob, "post", 999_999).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, b) = app.post("/api/v1/reports", Some(&bob.token), &json!({ "target_type": "post", "target_id": id, "reason": "boring" })).await;
        assert_eq!(s.as_u16() / 100, 4, "{b}");
        // Still visible after one report.
        let (s, _) = app.get(&format!("/api/v1/posts/{id}"), Some(&carol.token)).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = report(&carol, "post", id).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = app.get(&format!("/api/v1/posts/{id}"), Some(&carol.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "hidden after two reporters");
        let (_, list) = app.get(&format!("/api/v1/posts?school={}", d.school), None).await;
        assert!(ids(&list).is_empty());
        let (_, own) = app.get(&format!("/api/v1/posts/{id}"), Some(&alice.token)).await;
        assert_eq!(own["status"], "hidden");

        use campus_trade::moderation::reports::{Decision, TargetType, list_open_reports, resolve_reports};
        let queue = list_open_reports(&app.state.db, 10).await.unwrap();
        assert_eq!((queue.len(), queue[0].reporters, queue[0].target_id), (1, 2, id));
        assert_eq!(queue[0].reasons.get("spam"), Some(&2));
        assert_eq!(resolve_reports(&app.state.db, TargetType::Post, id, Decision::Dismiss).await.unwrap(), 2);
        let (s, _) = app.get(&format!("/api/v1/posts/{id}"), Some(&carol.token)).await;
        assert_eq!(s, StatusCode::OK, "back after the operator dismissed the reports");
        assert!(list_open_reports(&app.state.db, 10).await.unwrap().is_empty());
        // A resolved report does not stop a new one.
        let (s, _) = report(&bob, "post", id).await;
        assert_eq!(s, StatusCode::OK);

        // Comments and users can be reported too; reporting yourself cannot.
        let c = comment(&app, &bob, id, "垃圾", None).await["id"].as_i64().unwrap();
        report(&alice, "comment", c).await;
        report(&carol, "comment", c).await;
        let (_, thread) = app.get(&format!("/api/v1/posts/{id}/comments"), Some(&alice.token)).await;
        assert_eq!((thread["items"][0]["status"].as_str(), thread["items"][0]["body"].as_str()), (Some("hidden"), Some("")));
        let (s, _) = report(&alice, "user", bob.id).await;
        assert_eq!(s, StatusCode::OK);
        let (s, b) = report(&alice, "user", alice.id).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cannot_report_self")));

        // A reported listing is held for review, and comes back when the reports are dismissed.
        let l = sell(&app, &alice, "二手台灯", 2000).await;
        report(&bob, "listing", l).await;
        report(&carol, "listing", l).await;
        let (s, _) = app.get(&format!("/api/v1/listings/{l}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, own) = app.get(&format!("/api/v1/listings/{l}"), Some(&alice.token)).await;
        assert_eq!((own["status"].as_str(), own["moderation_label"].as_str()), (Some("pending_review"), Some("reported")));
        resolve_reports(&app.state.db, TargetType::Listing, l, Decision::Dismiss).await.unwrap();
        let (s, back) = app.get(&format!("/api/v1/listings/{l}"), Some(&bob.token)).await;
        assert_eq!((s, back["status"].as_str()), (StatusCode::OK, Some("on_sale")));
        // Removing takes a post down for good.
        resolve_reports(&app.state.db, TargetType::Post, id, Decision::Remove).await.unwrap();
        let (s, _) = app.get(&format!("/api/v1/posts/{id}"), Some(&carol.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

app_test!(
    async fn content_security_refuses_or_holds_posts(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        let (s, b) = app
            .post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": d.board("help"), "title": "代考四六级" }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("content_rejected")));
        let (s, held) = app
            .post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": d.board("help"), "title": "出台灯", "body": "有意加微信" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{held}");
        assert_eq!(held["status"], "pending_review");
        let id = held["id"].as_i64().unwrap();
        let (s, _) = app.get(&format!("/api/v1/posts/{id}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, list) = app.get(&format!("/api/v1/posts?school={}", d.school), Some(&bob.token)).await;
        assert!(ids(&list).is_empty());
        let (s, own) = app.get(&format!("/api/v1/posts/{id}"), Some(&alice.token)).await;
        assert_eq!((s, own["status"].as_str()), (StatusCode::OK, Some("pending_review")));
        // Comments are checked too.
        let ok = post(&app, &alice, &d, "正常帖", false).await["id"].as_i64().unwrap();
        let (s, b) = app.post(&format!("/api/v1/posts/{ok}/comments"), Some(&bob.token), &json!({ "body": "代考找我" })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("content_rejected")));
        // An edit into review text holds the post.
        let (s, b) = app.patch(&format!("/api/v1/posts/{ok}"), Some(&alice.token), &json!({ "body": "加微信聊" })).await;
        assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("pending_review")));

        // A photo WeChat finds risky hides the published post, asynchronously.
        let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, 20, (y * 7) as u8]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let (_, up) = app.upload_file(Some(&alice.token), "p.png", "image/png", &png.into_inner()).await;
        let bytes = app.http.get(up["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
        let sha256 = campus_trade::util::sha256_hex(&bytes);
        let (s, _) = app
            .post("/sandbox/wechat/_sandbox/media-verdicts", None, &json!({ "sha256": sha256, "suggest": "risky", "label": 20002 }))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, p) = app
            .post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": d.board("chat"), "title": "看图", "image_ids": [up["id"]] }))
            .await;
        assert_eq!((s, p["status"].as_str()), (StatusCode::OK, Some("published")), "{p}");
        assert_eq!(p["images"][0]["id"], up["id"]);
        let path = format!("/api/v1/posts/{}", p["id"]);
        let mut status = String::new();
        for _ in 0..100 {
            let (_, now) = app.get(&path, Some(&alice.token)).await;
            status = now["status"].as_str().unwrap().to_string();
            if status == "hidden" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(status, "hidden", "the flagged photo hid the post");
        let (s, _) = app.get(&path, Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);

app_test!(
    async fn pages_stay_stable_while_posts_arrive(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let mut created = Vec::new();
        for i in 0..7 {
            created.push(post(&app, &alice, &d, &format!("帖子{i}"), false).await["id"].as_i64().unwrap());
        }
        for sort in ["new", "hot", "top"] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/posts?school={}&sort={sort}&limit=3&cursor={c}", d.school),
                    None => format!("/api/v1/posts?school={}&sort={sort}&limit=3", d.school),
                };
                let (s, page) = app.get(&path, None).await;
                assert_eq!(s, StatusCode::OK, "{page}");
                seen.extend(ids(&page));
                if seen.len() == 3 {
                    // A new post while scrolling shifts nothing that follows.
                    post(&app, &alice, &d, "插队", false).await;
                }
                cursor = page["next_cursor"].as_str().map(String::from);
                if cursor.is_none() {
                    break;
                }
            }
            let unique: std::collections::HashSet<_> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "{sort}: repeated items {seen:?}");
            for id in &created {
                assert!(seen.contains(id), "{sort}: {id} skipped in {seen:?}");
            }
        }
        let (s, b) = app.get("/api/v1/posts?sort=new&cursor=bogus", None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_cursor")));
    }
);

app_test!(
    async fn blocked_students_disappear_from_the_blockers_circle(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        let carol = student(&app, "carol", &d).await;
        let c1 = post(&app, &carol, &d, "carol 1", false).await["id"].as_i64().unwrap();
        let c2 = post(&app, &carol, &d, "carol 2", false).await["id"].as_i64().unwrap();
        let anon = post(&app, &alice, &d, "alice anon", true).await["id"].as_i64().unwrap();
        for i in 0..3 {
            post(&app, &alice, &d, &format!("alice {i}"), false).await;
        }
        comment(&app, &alice, c1, "alice says", None).await;
        comment(&app, &carol, c1, "carol says", None).await;

        let block = format!("/api/v1/users/{}/block", alice.id);
        for _ in 0..2 {
            let (s, _, _) = app.send(Method::PUT, &block, Some(&bob.token), None).await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
        let (s, _, b) = app.send(Method::PUT, &format!("/api/v1/users/{}/block", bob.id), Some(&bob.token), None).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cannot_block_self")));

        // The filter is in the query: a page of 3 is full of what bob may see.
        let (_, page) = app.get(&format!("/api/v1/posts?school={}&sort=new&limit=3", d.school), Some(&bob.token)).await;
        assert_eq!(ids(&page), vec![anon, c2, c1], "anonymous posts stay: hiding them would name their author");
        let (_, thread) = app.get(&format!("/api/v1/posts/{c1}/comments"), Some(&bob.token)).await;
        let bodies: Vec<&str> = thread["items"].as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap()).collect();
        assert_eq!(bodies, vec!["carol says"]);
        // Others still see everything.
        let (_, page) = app.get(&format!("/api/v1/posts?school={}&sort=new&limit=3", d.school), Some(&carol.token)).await;
        assert_eq!(page["items"][0]["author"]["id"].as_i64(), Some(alice.id));

        let (s, _, _) = app.send(Method::DELETE, &block, Some(&bob.token), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (_, thread) = app.get(&format!("/api/v1/posts/{c1}/comments"), Some(&bob.token)).await;
        assert_eq!(thread["items"].as_array().unwrap().len(), 2);
    }
);

/// Publishes a listing of the demo school (a lamp category, one small photo).
async fn sell(app: &TestApp, s: &Student, title: &str, price: i64) -> i64 {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 60])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let (status, up) = app
        .upload_file(Some(&s.token), "p.png", "image/png", &png.into_inner())
        .await;
    assert_eq!(status, StatusCode::OK, "{up}");
    let (_, cats) = app.get("/api/v1/categories", None).await;
    let lamps = cats
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["children"].as_array().unwrap().iter())
        .find(|c| c["slug"] == "lamps")
        .unwrap()["id"]
        .clone();
    let body = json!({
        "title": title, "description": "宿舍用", "price": price, "condition": "good",
        "category_id": lamps, "image_ids": [up["id"]], "trade_methods": ["meetup"],
    });
    let (status, l) = app.post("/api/v1/listings", Some(&s.token), &body).await;
    assert_eq!(status, StatusCode::OK, "{l}");
    l["id"].as_i64().unwrap()
}

app_test!(
    async fn wanted_posts_hear_of_matching_listings(backend) {
        let app = TestApp::spawn(backend).await;
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let bob = student(&app, "bob", &d).await;
        let wanted = json!({ "keyword": "台灯", "max_price": 5000 });
        let (s, b) = app
            .post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": d.board("chat"), "title": "求台灯", "wanted": wanted }))
            .await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")), "{b}");
        let (s, p) = app
            .post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": d.board("wanted"), "title": "求台灯", "wanted": wanted, "anonymous": true }))
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert_eq!(p["wanted"]["max_price"], 5000);

        let inbox = |s: &Student| {
            let token = s.token.clone();
            let app = &app;
            async move {
                let (_, b) = app.get("/api/v1/me/notifications", Some(&token)).await;
                b["items"].as_array().unwrap().iter().filter(|n| n["kind"] == "wanted_match").map(|n| n["target_id"].as_i64().unwrap()).collect::<Vec<_>>()
            }
        };
        let cheap = sell(&app, &bob, "护眼台灯 九成新", 3000).await;
        sell(&app, &bob, "落地台灯", 8000).await; // over the ceiling
        sell(&app, &bob, "书架", 1000).await; // no keyword
        sell(&app, &alice, "旧台灯", 1000).await; // her own
        assert_eq!(inbox(&alice).await, vec![cheap]);
        assert!(inbox(&bob).await.is_empty());

        // A listing held for review is announced when an operator approves it, not before.
        let held = sell(&app, &bob, "台灯 有意加微信", 2000).await;
        assert_eq!(inbox(&alice).await, vec![cheap], "a held listing is not announced");
        use campus_trade::listings::{model::Transition, service as listings};
        listings::transition(&app.state.db, held, listings::Actor::System, Transition::Approve, None).await.unwrap();
        assert_eq!(inbox(&alice).await, vec![held, cheap]);
    }
);

app_test!(
    async fn reports_filed_at_the_same_moment_still_reach_the_threshold(backend) {
        let app = TestApp::spawn(backend).await; // default threshold: 5 distinct students
        let d = demo(&app).await;
        let alice = student(&app, "alice", &d).await;
        let (s, p) = app
            .post("/api/v1/posts", Some(&alice.token), &json!({ "board_id": d.board("chat"), "title": "被举报的帖子", "body": "内容" }))
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        let id = p["id"].as_i64().unwrap();
        let mut reporters = Vec::new();
        for i in 0..5 {
            reporters.push(student(&app, &format!("rep{i}"), &d).await);
        }
        let mut tasks = Vec::new();
        for r in reporters {
            let (http, url, token) = (app.http.clone(), app.url("/api/v1/reports"), r.token.clone());
            tasks.push(tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .json(&json!({ "target_type": "post", "target_id": id, "reason": "spam" }))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_success());
        }
        let bob = student(&app, "bob", &d).await;
        let (s, _) = app.get(&format!("/api/v1/posts/{id}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "five reporters at once hide the post");

        // The author cannot delete their way out of it (that would make the thread public again).
        let (s, _, _) = app.send(reqwest::Method::DELETE, &format!("/api/v1/posts/{id}"), Some(&alice.token), None).await;
        assert!(s.is_client_error(), "{s}");
        let (s, _) = app.get(&format!("/api/v1/posts/{id}"), Some(&bob.token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
);
