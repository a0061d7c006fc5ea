//! The server-to-WeChat access token: fetched once, shared, refreshed when WeChat rejects it.

use campus_trade_tests::{TestApp, app_test};
use reqwest::StatusCode;
use serde_json::Value;

async fn calls(app: &TestApp, api: &str) -> u64 {
    let (s, stats) = app.get("/sandbox/wechat/_sandbox/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    stats["calls"][api].as_u64().unwrap_or(0)
}

app_test!(
    async fn the_access_token_is_fetched_once_and_replaced_when_rejected(backend) {
        let app = TestApp::spawn(backend).await;
        // Twenty concurrent calls that each need a token: one stable_token fetch.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let state = app.state.clone();
            tasks.push(tokio::spawn(async move { state.wechat.api_domain_ips().await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), vec!["127.0.0.1".to_string()]);
        }
        assert_eq!(calls(&app, "stable_token").await, 1);
        assert_eq!(calls(&app, "get_api_domain_ip").await, 20);

        // WeChat expires the token early: the next call sees 42001, refreshes once and succeeds.
        let (s, _) = app.post("/sandbox/wechat/_sandbox/expire-tokens", None, &Value::Null).await;
        assert_eq!(s, StatusCode::OK);
        app.state.wechat.api_domain_ips().await.expect("call succeeds after refresh");
        assert_eq!(calls(&app, "stable_token").await, 2);
        app.state.wechat.api_domain_ips().await.unwrap();
        assert_eq!(calls(&app, "stable_token").await, 2, "the fresh token is cached");
    }
);

app_test!(
    async fn the_sandbox_checks_credentials_like_wechat(backend) {
        let app = TestApp::spawn(backend).await;
        let (s, b) = app
            .get("/sandbox/wechat/sns/jscode2session?appid=wxwrong&secret=x&js_code=a-1&grant_type=authorization_code", None)
            .await;
        assert_eq!(s, StatusCode::OK, "WeChat reports errors with HTTP 200");
        assert_eq!(b["errcode"], 40013);
        let (_, b) = app.get("/sandbox/wechat/cgi-bin/get_api_domain_ip?access_token=forged", None).await;
        assert_eq!(b["errcode"], 40001);
    }
);
