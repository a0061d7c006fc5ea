//! The WeChat Pay protocol layer against the built-in fake WeChat Pay, over real HTTP: our client signs, the
//! sandbox verifies and signs back, our client verifies; notifications are delivered to a small receiver in the
//! test, which checks them with the service's own `parse_notification` and answers like a merchant would.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use campus_trade::wechat::pay::{
    JsapiPrepay, NotificationResource, NotifyError, NotifyHeaders, PayError, RefundRequest,
    TransferRequest, WechatPay, sign,
};
use campus_trade_tests::{TestApp, app_test};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a notification receiver saw.
#[derive(Clone)]
struct Received {
    headers: NotifyHeaders,
    body: Vec<u8>,
}

type Policy = Box<dyn FnMut(&Received) -> u16 + Send>;

/// A bare HTTP endpoint that records every request and answers with the status `policy` picks.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    policy: Arc<Mutex<Policy>>,
}

impl Receiver {
    async fn start(policy: Policy) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let policy = Arc::new(Mutex::new(policy));
        let (s, p) = (seen.clone(), policy.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (s, p) = (s.clone(), p.clone());
                tokio::spawn(async move {
                    let Some(r) = read_request(&mut conn).await else {
                        return;
                    };
                    s.lock().unwrap().push(r.clone());
                    let status = (p.lock().unwrap())(&r);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { url, seen, policy }
    }

    fn set_policy(&self, policy: Policy) {
        *self.policy.lock().unwrap() = policy;
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            if self.seen().len() >= n {
                return self.seen();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("expected {n} notifications, got {}", self.seen().len());
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let get = |k: &str| headers.get(k).cloned();
    Some(Received {
        headers: NotifyHeaders {
            timestamp: get("wechatpay-timestamp"),
            nonce: get("wechatpay-nonce"),
            signature: get("wechatpay-signature"),
            serial: get("wechatpay-serial"),
        },
        body,
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A merchant's answer: 204 when the notification verifies and decrypts, 400 otherwise.
fn verifying(pay: WechatPay) -> Policy {
    Box::new(
        move |r: &Received| match pay.parse_notification(&r.headers, &r.body, now()) {
            Ok(_) => 204,
            Err(_) => 400,
        },
    )
}

fn order_no(prefix: &str) -> String {
    format!("{prefix}{}", rand::random::<u64>())
}

fn prepay_of(no: &str, total: i64, openid: &str) -> JsapiPrepay {
    JsapiPrepay {
        out_trade_no: no.to_string(),
        description: "二手教材 · 高等数学（上）".into(),
        total_fen: total,
        payer_openid: openid.to_string(),
        time_expire: chrono::Utc::now() + chrono::Duration::minutes(15),
    }
}

/// Fast retries: WeChat's 15 s first retry becomes 15 ms.
const FAST: (&str, &str) = ("SANDBOX_WECHATPAY_TIME_SCALE", "1000");

async fn sandbox(app: &TestApp, path: &str, body: &Value) -> (StatusCode, Value) {
    app.post(&format!("/sandbox/wechatpay{path}"), None, body)
        .await
}

async fn deliveries(app: &TestApp, subject: &str) -> Vec<Value> {
    let (s, b) = app
        .get(
            &format!("/sandbox/wechatpay/_sandbox/deliveries?subject={subject}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    b["deliveries"].as_array().cloned().unwrap_or_default()
}

fn wechat_code(e: &PayError) -> (u16, &str) {
    match e {
        PayError::Wechat { status, code, .. } => (*status, code.as_str()),
        other => panic!("expected a WeChat error, got {other:?}"),
    }
}

app_test!(
    async fn prepay_is_idempotent_and_payment_parameters_are_signed(backend) {
        let app = TestApp::spawn(backend).await;
        let pay = &app.state.pay;
        assert!(pay.enabled());
        assert!(pay.notify_url().ends_with("/api/v1/payments/wechat/notify"));
        let no = order_no("CT");
        let req = prepay_of(&no, 2_350, "oBuyer0000000000000000000001");
        let first = pay.jsapi_prepay(&req).await.expect("prepay");
        let again = pay.jsapi_prepay(&req).await.expect("same prepay again");
        assert_eq!(first, again, "WeChat returns the same prepay_id for the same order");

        // The same out_trade_no with another amount is a different order: refused.
        let mut changed = req.clone();
        changed.total_fen = 2_000;
        let err = pay.jsapi_prepay(&changed).await.unwrap_err();
        assert_eq!(wechat_code(&err), (403, "OUT_TRADE_NO_USED"));
        assert!(!err.outcome_unknown());

        // wx.requestPayment parameters: signed by the merchant key over appId\ntimeStamp\nnonceStr\npackage\n.
        let p = pay.request_payment(&first);
        assert_eq!(p.package, format!("prepay_id={first}"));
        assert_eq!(p.sign_type, "RSA");
        assert_eq!(p.time_stamp.len(), 10, "seconds, not milliseconds");
        let merchant = app.state.pay_sandbox.as_ref().unwrap().keys().merchant_key.to_public_key();
        let message = sign::pay_sign_message(pay.appid(), &p.time_stamp, &p.nonce_str, &p.package);
        assert!(sign::verify(&merchant, message.as_bytes(), &p.pay_sign));
        let json = serde_json::to_value(&p).unwrap();
        for key in ["timeStamp", "nonceStr", "package", "signType", "paySign"] {
            assert!(json.get(key).is_some(), "wx.requestPayment needs {key}");
        }

        let t = pay.query_order(&no).await.expect("query");
        assert_eq!((t.trade_state.as_str(), t.out_trade_no.as_str()), ("NOTPAY", no.as_str()));
        assert_eq!(t.amount.as_ref().map(|a| a.total), Some(2_350));
        assert_eq!((t.mchid.as_str(), t.appid.as_str()), (pay.mchid(), pay.appid()));

        let err = pay.query_order(&order_no("NONE")).await.unwrap_err();
        assert_eq!(wechat_code(&err), (404, "ORDER_NOT_EXIST"));

        // The helper for handler tests and benchmarks makes notifications our client accepts.
        let (headers, body) = app
            .state
            .pay_sandbox
            .as_ref()
            .unwrap()
            .signed_payment_notification(&no, 2_350, "oBuyer0000000000000000000001");
        let n = pay.parse_notification(&headers, &body, now()).unwrap();
        let NotificationResource::Transaction(t) = n.resource else { panic!() };
        assert_eq!((t.out_trade_no, t.amount.map(|a| a.total)), (no, Some(2_350)));
    }
);

app_test!(
    async fn paying_delivers_a_verified_notification_retried_until_acknowledged(backend) {
        let app = TestApp::spawn_with(backend, &[FAST]).await;
        // The merchant is down for the first two deliveries, then verifies and acknowledges.
        let verify = app.state.pay.clone();
        let mut calls = 0;
        let receiver = Receiver::start(Box::new(move |r| {
            calls += 1;
            if calls <= 2 {
                return 500;
            }
            match verify.parse_notification(&r.headers, &r.body, now()) {
                Ok(_) => 204,
                Err(_) => 400,
            }
        }))
        .await;
        let pay = app.state.pay.with_notify_url(&receiver.url);
        let no = order_no("CT");
        let prepay_id = pay
            .jsapi_prepay(&prepay_of(&no, 990, "oBuyer0000000000000000000002"))
            .await
            .unwrap();
        let (s, paid) = sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
        assert_eq!(s, StatusCode::OK, "{paid}");
        let seen_all = receiver.wait_for(3).await;
        let seen = &seen_all;

        // Every delivery is the same notification, each signed afresh.
        let n = app
            .state
            .pay
            .parse_notification(&seen[0].headers, &seen[0].body, now())
            .expect("the notification verifies and decrypts");
        assert_eq!(n.event_type, "TRANSACTION.SUCCESS");
        let NotificationResource::Transaction(t) = &n.resource else {
            panic!("a transaction resource")
        };
        assert_eq!((t.out_trade_no.as_str(), t.trade_state.as_str()), (no.as_str(), "SUCCESS"));
        assert_eq!(t.amount.as_ref().map(|a| (a.total, a.currency.as_str())), Some((990, "CNY")));
        assert_eq!(t.payer.as_ref().map(|p| p.openid.as_str()), Some("oBuyer0000000000000000000002"));
        assert_eq!(t.transaction_id.as_deref(), paid["transaction_id"].as_str());
        let n2 = app.state.pay.parse_notification(&seen_all[2].headers, &seen_all[2].body, now()).unwrap();
        assert_eq!(n2.id, n.id, "a retry repeats the notification id");

        // The sandbox's log shows our answers, and stops once acknowledged.
        let mut log = Vec::new();
        for _ in 0..100 {
            log = deliveries(&app, &no).await;
            if log.first().is_some_and(|d| d["state"] == "acked") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let d = &log[0];
        assert_eq!(d["state"], "acked", "{d}");
        let statuses: Vec<Value> = d["attempts"].as_array().unwrap().iter().map(|a| a["status"].clone()).collect();
        assert_eq!(statuses, vec![json!(500), json!(500), json!(204)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(receiver.seen().len(), 3, "nothing more after the acknowledgement");

        let q = app.state.pay.query_order(&no).await.unwrap();
        assert_eq!(q.trade_state, "SUCCESS");
        assert_eq!(q.transaction_id, t.transaction_id);
        // Paying twice is refused.
        let (s, b) = sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("ORDERPAID")));

        // Ten more deliveries of the same notification, at once (WeChat may duplicate).
        let (s, b) = sandbox(&app, "/_sandbox/redeliver", &json!({ "subject": no, "times": 10 })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let all = receiver.wait_for(13).await;
        let ids: std::collections::HashSet<String> = all
            .iter()
            .map(|r| app.state.pay.parse_notification(&r.headers, &r.body, now()).unwrap().id)
            .collect();
        assert_eq!(ids.len(), 1);
    }
);

app_test!(
    async fn closing_an_order_stops_payment(backend) {
        let app = TestApp::spawn(backend).await;
        let pay = &app.state.pay;
        let no = order_no("CT");
        let req = prepay_of(&no, 100, "oBuyer0000000000000000000003");
        let prepay_id = pay.jsapi_prepay(&req).await.unwrap();
        pay.close_order(&no).await.expect("close answers 204");
        pay.close_order(&no).await.expect("closing twice is fine");
        assert_eq!(pay.query_order(&no).await.unwrap().trade_state, "CLOSED");
        let err = pay.jsapi_prepay(&req).await.unwrap_err();
        assert_eq!(wechat_code(&err), (400, "ORDER_CLOSED"));
        let (s, b) = sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("ORDER_CLOSED")));
        let err = pay.close_order(&order_no("NONE")).await.unwrap_err();
        assert_eq!(wechat_code(&err), (404, "ORDER_NOT_EXIST"));

        // A paid order cannot be closed.
        let no = order_no("CT");
        let prepay_id = pay.jsapi_prepay(&prepay_of(&no, 100, "oB")).await.unwrap();
        sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
        let err = pay.close_order(&no).await.unwrap_err();
        assert_eq!(wechat_code(&err), (400, "ORDERPAID"));

        // Identifiers WeChat would refuse never reach the URL.
        let err = pay.query_order("../../v3/x").await.unwrap_err();
        assert_eq!(wechat_code(&err), (400, "PARAM_ERROR"));
    }
);

app_test!(
    async fn a_request_signed_with_the_wrong_key_is_refused_with_sign_error(backend) {
        let app = TestApp::spawn(backend).await;
        let keys = app.state.pay_sandbox.as_ref().unwrap().keys();
        // Any key but the merchant's: WeChat Pay's own platform key will do.
        let wrong = app.state.pay.with_merchant_key(keys.platform_key.clone());
        let no = order_no("CT");
        let err = wrong
            .jsapi_prepay(&prepay_of(&no, 100, "oBuyer0000000000000000000004"))
            .await
            .unwrap_err();
        assert_eq!(wechat_code(&err), (401, "SIGN_ERROR"));
        let PayError::Wechat { message, .. } = &err else { unreachable!() };
        assert!(
            message.contains("POST\\n/v3/pay/transactions/jsapi\\n"),
            "WeChat's truncated_sign_message helps debugging: {message}"
        );
        // Nothing was created.
        let err = app.state.pay.query_order(&no).await.unwrap_err();
        assert_eq!(wechat_code(&err), (404, "ORDER_NOT_EXIST"));
        let err = wrong.query_order(&no).await.unwrap_err();
        assert_eq!(wechat_code(&err), (401, "SIGN_ERROR"), "GETs are signed too");
    }
);

app_test!(
    async fn answers_that_do_not_verify_are_not_believed(backend) {
        let app = TestApp::spawn_with(backend, &[("WECHATPAY_TIMEOUT_MS", "1000")]).await;
        let pay = &app.state.pay;
        let no = order_no("CT");
        pay.jsapi_prepay(&prepay_of(&no, 100, "oBuyer0000000000000000000005")).await.unwrap();
        let fail = |kind: &str, fault: &str| json!({ "kind": kind, "fault": fault, "delay_ms": 2500 });

        let (s, _) = sandbox(&app, "/_sandbox/fail-next", &fail("query", "bad_signature")).await;
        assert_eq!(s, StatusCode::OK);
        let err = pay.query_order(&no).await.unwrap_err();
        assert!(matches!(err, PayError::Unverified(_)), "{err:?}");
        assert!(err.outcome_unknown());

        sandbox(&app, "/_sandbox/fail-next", &fail("query", "unsigned")).await;
        let err = pay.query_order(&no).await.unwrap_err();
        assert!(matches!(err, PayError::Unverified(_)), "an unsigned 200 is forged: {err:?}");

        sandbox(&app, "/_sandbox/fail-next", &fail("close", "system_error")).await;
        let err = pay.close_order(&no).await.unwrap_err();
        assert_eq!(wechat_code(&err), (500, "SYSTEM_ERROR"));
        assert!(err.outcome_unknown());
        assert_eq!(pay.query_order(&no).await.unwrap().trade_state, "NOTPAY", "SYSTEM_ERROR: nothing happened");

        // A transfer that happens but whose answer never arrives: the outcome is unknown, a query tells.
        let bill = order_no("B");
        sandbox(&app, "/_sandbox/fail-next", &fail("transfer", "timeout")).await;
        let req = TransferRequest {
            out_bill_no: bill.clone(),
            openid: "oSeller000000000000000000001".into(),
            amount_fen: 500,
            remark: "二手交易货款".into(),
        };
        let err = pay.create_transfer(&req).await.unwrap_err();
        assert!(matches!(err, PayError::Transport(_)), "{err:?}");
        assert!(err.outcome_unknown());
        let b = pay.query_transfer(&bill).await.expect("the bill exists after all");
        assert_eq!(b.state, "WAIT_USER_CONFIRM");
        // The same out_bill_no again returns the same bill (with its package_info), never a second one.
        let again = pay.create_transfer(&req).await.unwrap();
        assert_eq!(again.transfer_bill_no, b.transfer_bill_no);
        assert!(again.package_info.is_some());

        // WeChat Pay unreachable.
        let dead = TestApp::spawn_with(backend, &[("WECHATPAY_API_BASE", "http://127.0.0.1:9")]).await;
        let err = dead.state.pay.query_order(&no).await.unwrap_err();
        assert!(matches!(err, PayError::Transport(_)), "{err:?}");
    }
);

app_test!(
    async fn a_refund_is_accepted_then_succeeds_and_is_notified(backend) {
        let app = TestApp::spawn_with(backend, &[FAST]).await;
        let receiver = Receiver::start(verifying(app.state.pay.clone())).await;
        let pay = app.state.pay.with_notify_url(&receiver.url);
        let no = order_no("CT");
        let prepay_id = pay.jsapi_prepay(&prepay_of(&no, 3_000, "oBuyer0000000000000000000006")).await.unwrap();
        let req = RefundRequest {
            out_trade_no: no.clone(),
            out_refund_no: format!("R{no}"),
            reason: Some("买家与卖家协商退款".into()),
            refund_fen: 3_000,
            total_fen: 3_000,
        };
        let err = pay.refund(&req).await.unwrap_err();
        assert_eq!(wechat_code(&err), (400, "INVALID_REQUEST"), "an unpaid order cannot be refunded");
        sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
        receiver.wait_for(1).await;

        let r = pay.refund(&req).await.expect("refund accepted");
        assert_eq!((r.status.as_str(), r.refund_fen), ("PROCESSING", 3_000));
        assert_eq!(r.out_trade_no, no);
        let again = pay.refund(&req).await.expect("the same out_refund_no is the same refund");
        assert_eq!(again.refund_id, r.refund_id);
        let mut more = req.clone();
        more.out_refund_no = format!("S{no}");
        let err = pay.refund(&more).await.unwrap_err();
        assert_eq!(wechat_code(&err), (400, "INVALID_REQUEST"), "nothing left to refund");

        let seen = receiver.wait_for(2).await;
        let n = app.state.pay.parse_notification(&seen[1].headers, &seen[1].body, now()).unwrap();
        assert_eq!(n.event_type, "REFUND.SUCCESS");
        let NotificationResource::Refund(notified) = &n.resource else { panic!("a refund resource") };
        assert_eq!(
            (notified.status.as_str(), notified.refund_fen, notified.out_refund_no.as_str()),
            ("SUCCESS", 3_000, req.out_refund_no.as_str())
        );
        let q = pay.query_refund(&req.out_refund_no).await.unwrap();
        assert_eq!((q.status.as_str(), q.refund_id.clone()), ("SUCCESS", r.refund_id.clone()));
        assert_eq!(pay.query_order(&no).await.unwrap().trade_state, "REFUND");
        let err = pay.query_refund("R-none-0001").await.unwrap_err();
        assert_eq!(wechat_code(&err), (404, "RESOURCE_NOT_EXISTS"));
    }
);

app_test!(
    async fn a_payout_waits_for_the_seller_then_is_notified(backend) {
        let app = TestApp::spawn_with(backend, &[FAST]).await;
        let receiver = Receiver::start(verifying(app.state.pay.clone())).await;
        let pay = app.state.pay.with_notify_url(&receiver.url);
        let req = TransferRequest {
            out_bill_no: order_no("B"),
            openid: "oSeller000000000000000000002".into(),
            amount_fen: 2_800,
            remark: "校园二手交易货款：高等数学教材一本，感谢使用campus_trade".into(),
        };
        let bill = pay.create_transfer(&req).await.expect("transfer bill created");
        assert_eq!(bill.state, "WAIT_USER_CONFIRM");
        let package = bill.package_info.clone().expect("package_info for wx.requestMerchantTransfer");
        assert_eq!(pay.query_transfer(&req.out_bill_no).await.unwrap().state, "WAIT_USER_CONFIRM");

        let (s, b) = sandbox(&app, "/confirm-transfer", &json!({ "package_info": package })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let seen = receiver.wait_for(1).await;
        let n = app.state.pay.parse_notification(&seen[0].headers, &seen[0].body, now()).unwrap();
        assert_eq!(n.event_type, "MCHTRANSFER.BILL.FINISHED");
        let NotificationResource::Transfer(done) = &n.resource else { panic!("a transfer resource") };
        assert_eq!((done.out_bill_no.as_str(), done.state.as_str()), (req.out_bill_no.as_str(), "SUCCESS"));
        assert_eq!(done.transfer_bill_no, bill.transfer_bill_no);
        assert_eq!(pay.query_transfer(&req.out_bill_no).await.unwrap().state, "SUCCESS");
        let (s, _) = sandbox(&app, "/confirm-transfer", &json!({ "package_info": package })).await;
        assert_eq!(s, StatusCode::CONFLICT, "a bill is accepted once");
        let err = pay.query_transfer("Bnone0001").await.unwrap_err();
        assert_eq!(wechat_code(&err), (404, "NOT_FOUND"));

        // A bill the seller has not accepted can be withdrawn; an accepted one cannot.
        let mut other = req.clone();
        other.out_bill_no = order_no("B");
        let waiting = pay.create_transfer(&other).await.unwrap();
        let cancelled = pay.cancel_transfer(&other.out_bill_no).await.unwrap();
        assert_eq!(cancelled.state, "CANCELING");
        assert_eq!(pay.query_transfer(&other.out_bill_no).await.unwrap().state, "CANCELLED");
        let seen = receiver.wait_for(2).await;
        let n = app.state.pay.parse_notification(&seen[1].headers, &seen[1].body, now()).unwrap();
        let NotificationResource::Transfer(b) = &n.resource else { panic!("a transfer resource") };
        assert_eq!((b.state.as_str(), b.transfer_bill_no.clone()), ("CANCELLED", waiting.transfer_bill_no));
        let (s, _) = sandbox(&app, "/confirm-transfer", &json!({ "package_info": waiting.package_info })).await;
        assert_eq!(s, StatusCode::CONFLICT);
        let err = pay.cancel_transfer(&req.out_bill_no).await.unwrap_err();
        assert_eq!(wechat_code(&err), (400, "INVALID_REQUEST"));
    }
);

app_test!(
    async fn shipping_information_is_recorded_for_paid_orders(backend) {
        use campus_trade::wechat::shipping::{SELF_PICKUP, ShippingInfo};
        let app = TestApp::spawn(backend).await;
        let pay = &app.state.pay;
        let buyer = "oBuyer0000000000000000000007";
        let no = order_no("CT");
        let prepay_id = pay.jsapi_prepay(&prepay_of(&no, 100, buyer)).await.unwrap();
        let info = ShippingInfo {
            mchid: pay.mchid().to_string(),
            out_trade_no: no.clone(),
            logistics_type: SELF_PICKUP,
            item_desc: "二手教材 · 高等数学（上）".into(),
            payer_openid: buyer.into(),
            upload_time: chrono::Utc::now(),
        };
        let err = app.state.wechat.upload_shipping_info(&info).await.unwrap_err();
        assert_eq!(err.errcode(), Some(10060004), "an unpaid order has nothing to ship");
        sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
        app.state.wechat.upload_shipping_info(&info).await.expect("accepted");
        let mut wrong = info.clone();
        wrong.payer_openid = "oSomeoneElse0000000000000000".into();
        let err = app.state.wechat.upload_shipping_info(&wrong).await.unwrap_err();
        assert_eq!(err.errcode(), Some(47001));

        let (s, b) = app.get("/sandbox/wechatpay/_sandbox/shipping", None).await;
        assert_eq!(s, StatusCode::OK);
        let uploads = b["uploads"].as_array().unwrap();
        assert_eq!(uploads.len(), 1);
        assert_eq!(uploads[0]["out_trade_no"], no.as_str());
        assert_eq!(uploads[0]["logistics_type"], 4);
        assert_eq!(uploads[0]["body"]["payer"]["openid"], buyer);
    }
);

app_test!(
    async fn crafted_notifications_are_refused_for_the_right_reason(backend) {
        let app = TestApp::spawn(backend).await;
        // This receiver reports why a notification was refused (as the status: 400 + the reason's index).
        let verify = app.state.pay.clone();
        let receiver = Receiver::start(Box::new(move |r| {
            match verify.parse_notification(&r.headers, &r.body, now()) {
                Ok(_) => 204,
                Err(NotifyError::BadSignature) => 401,
                Err(NotifyError::UnknownSerial(_)) => 402,
                Err(NotifyError::StaleTimestamp) => 403,
                Err(NotifyError::Decrypt) => 406,
                Err(_) => 400,
            }
        }))
        .await;
        let pay = app.state.pay.with_notify_url(&receiver.url);
        let no = order_no("CT");
        pay.jsapi_prepay(&prepay_of(&no, 1_200, "oBuyer0000000000000000000008")).await.unwrap();
        for (tamper, expected) in [
            ("forged_signature", 401),
            ("signtest", 401),
            ("wrong_serial", 402),
            ("stale_timestamp", 403),
            ("wrong_key", 406),
        ] {
            let (s, b) = sandbox(&app, "/_sandbox/notify", &json!({ "out_trade_no": no, "tamper": tamper })).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["status"], expected, "tamper {tamper}: {b}");
        }
        assert_eq!(pay.query_order(&no).await.unwrap().trade_state, "NOTPAY", "forgeries change nothing");

        // A lying resource is correctly signed: only comparing it with the order catches it.
        let (_, b) = sandbox(&app, "/_sandbox/notify", &json!({ "out_trade_no": no, "tamper": "amount" })).await;
        assert_eq!(b["status"], 204);
        let last = receiver.seen().pop().unwrap();
        let n = app.state.pay.parse_notification(&last.headers, &last.body, now()).unwrap();
        let NotificationResource::Transaction(t) = n.resource else { panic!() };
        assert_eq!(t.amount.map(|a| a.total), Some(1_201));

        // The genuine one pays the order.
        let (_, b) = sandbox(&app, "/_sandbox/notify", &json!({ "out_trade_no": no })).await;
        assert_eq!(b["status"], 204);
        assert_eq!(pay.query_order(&no).await.unwrap().trade_state, "SUCCESS");
        let log = deliveries(&app, &no).await;
        assert_eq!(log.len(), 7);
        assert!(log.iter().all(|d| d["state"] == "crafted"));
    }
);

app_test!(
    async fn certificate_and_migration_modes_verify_by_serial(backend) {
        for mode in ["certificate", "migration"] {
            let app = TestApp::spawn_with(backend, &[FAST, ("SANDBOX_WECHATPAY_MODE", mode)]).await;
            let receiver = Receiver::start(verifying(app.state.pay.clone())).await;
            let pay = app.state.pay.with_notify_url(&receiver.url);
            let keys = app.state.pay_sandbox.as_ref().unwrap().keys();
            assert_eq!(keys.platform_serial.len(), 40, "a 20-byte certificate serial, in hex");
            for i in 0..6 {
                let no = order_no("CT");
                let prepay_id = pay.jsapi_prepay(&prepay_of(&no, 100 + i, "oB")).await.expect(mode);
                assert_eq!(pay.query_order(&no).await.expect(mode).trade_state, "NOTPAY");
                sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
            }
            let seen = receiver.wait_for(6).await;
            let serials: std::collections::HashSet<String> =
                seen.iter().map(|r| r.headers.serial.clone().unwrap()).collect();
            for r in &seen {
                app.state.pay.parse_notification(&r.headers, &r.body, now()).expect(mode);
            }
            if mode == "certificate" {
                assert_eq!(serials, [keys.platform_serial.clone()].into(), "only the certificate signs");
            } else {
                let known: std::collections::HashSet<String> =
                    [keys.platform_serial.clone(), keys.public_key_id.clone()].into();
                assert!(serials.is_subset(&known), "either key may sign during a migration: {serials:?}");
            }
        }
    }
);

app_test!(
    async fn pending_notifications_survive_a_restart(backend) {
        let receiver = Receiver::start(Box::new(|_| 503)).await;
        let app = TestApp::spawn_with(backend, &[FAST]).await;
        let pay = app.state.pay.with_notify_url(&receiver.url);
        let no = order_no("CT");
        let prepay_id = pay.jsapi_prepay(&prepay_of(&no, 4_200, "oBuyer0000000000000000000009")).await.unwrap();
        sandbox(&app, "/pay", &json!({ "prepay_id": prepay_id })).await;
        let before = receiver.wait_for(2).await.len();
        let base = app.base.clone();

        // The service restarts (same address, data folder and database) and the merchant answers again: the
        // new process delivers what was still pending.
        let app = app.restart().await;
        assert_eq!(app.base, base);
        receiver.set_policy(verifying(app.state.pay.clone()));
        let after = receiver.wait_for(before + 1).await;
        let last = after.last().unwrap();
        let n = app.state.pay.parse_notification(&last.headers, &last.body, now()).unwrap();
        let NotificationResource::Transaction(t) = n.resource else { panic!() };
        assert_eq!((t.out_trade_no.as_str(), t.trade_state.as_str()), (no.as_str(), "SUCCESS"));
        assert_eq!(app.state.pay.query_order(&no).await.unwrap().trade_state, "SUCCESS");
        let mut log = Vec::new();
        for _ in 0..100 {
            log = deliveries(&app, &no).await;
            if log[0]["state"] == "acked" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(log[0]["state"], "acked");
        assert_eq!(log[0]["attempts"].as_array().unwrap().last().unwrap()["status"], 204);
    }
);
