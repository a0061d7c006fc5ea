//! Orders paid through WeChat Pay, end to end against the built-in sandbox: the buyer pays (sandbox hook), the
//! signed, encrypted notification arrives at our notify endpoint, the hand-over completes the order, the seller
//! collects the payout; refunds, disputes, duplicate and forged notifications, retries after our own failure,
//! and a restart between payment and notification.

use std::time::Duration;

use campus_trade::{
    orders::{
        model::order_event,
        service::{Decision, decide_dispute},
    },
    payments::model::{payment, payout},
};
use campus_trade_tests::{Student, TestApp, app_test};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use super::orders::{
    act, actions, buy, demo, inbox_kinds, listing_status, order_of, publish, student,
};

/// Seller, buyer and a listing of `price` fen bought with WeChat Pay; returns the order id.
pub struct Deal {
    pub seller: Student,
    pub buyer: Student,
    pub listing: i64,
    pub order: i64,
}

pub async fn deal(app: &TestApp, price: i64) -> Deal {
    let d = demo(app).await;
    let seller = student(app, "seller", &d).await;
    let buyer = student(app, "buyer", &d).await;
    let listing = publish(app, &seller, &d, "九成新护眼台灯", price).await;
    let (s, o) = buy(app, &buyer, listing, "wechat_pay").await;
    assert_eq!(s, StatusCode::OK, "{o}");
    Deal {
        seller,
        buyer,
        listing,
        order: o["id"].as_i64().unwrap(),
    }
}

/// The buyer asks for `wx.requestPayment` parameters; returns the prepay id in `package`.
pub async fn prepay(app: &TestApp, buyer: &Student, order: i64) -> String {
    let (s, p) = act(app, buyer, order, "wechat-pay", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    p["package"]
        .as_str()
        .unwrap()
        .strip_prefix("prepay_id=")
        .expect("package is prepay_id=…")
        .to_string()
}

/// What the buyer's WeChat does after `wx.requestPayment`: pays.
pub async fn wechat_pays(app: &TestApp, prepay_id: &str) {
    let (s, b) = app
        .post(
            "/sandbox/wechatpay/pay",
            None,
            &json!({ "prepay_id": prepay_id }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

pub async fn out_trade_no(app: &TestApp, order: i64) -> String {
    payment::Entity::find()
        .filter(payment::Column::OrderId.eq(order))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
        .out_trade_no
}

/// Waits until the order has `status` in the eyes of `who` (notifications arrive asynchronously).
pub async fn wait_status(app: &TestApp, who: &Student, order: i64, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = order_of(app, who, order).await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order {order} never became {status}: {last}");
}

/// The sandbox's delivery log of notifications about `subject` (order, refund or bill number).
async fn deliveries(app: &TestApp, subject: &str) -> Vec<Value> {
    let (s, b) = app
        .get(
            &format!("/sandbox/wechatpay/_sandbox/deliveries?subject={subject}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    b["deliveries"].as_array().unwrap().clone()
}

/// Our HTTP statuses as the sandbox saw them, over every delivery about `subject`.
async fn our_answers(app: &TestApp, subject: &str) -> Vec<Option<u64>> {
    deliveries(app, subject)
        .await
        .iter()
        .flat_map(|d| d["attempts"].as_array().unwrap().clone())
        .map(|a| a["status"].as_u64())
        .collect()
}

pub async fn sandbox_state(app: &TestApp) -> Value {
    app.get("/sandbox/wechatpay/_sandbox/state", None).await.1
}

/// How many times the order went from `from` to `to` in its event log.
async fn transitions(app: &TestApp, order: i64, from: &str, to: &str) -> u64 {
    order_event::Entity::find()
        .filter(order_event::Column::OrderId.eq(order))
        .filter(order_event::Column::FromStatus.eq(from))
        .filter(order_event::Column::ToStatus.eq(to))
        .count(&app.state.db)
        .await
        .unwrap()
}

/// Buys, pays and waits for the notification: a paid order.
pub async fn paid_deal(app: &TestApp, price: i64) -> Deal {
    let deal = deal(app, price).await;
    let prepay_id = prepay(app, &deal.buyer, deal.order).await;
    wechat_pays(app, &prepay_id).await;
    wait_status(app, &deal.buyer, deal.order, "paid").await;
    deal
}

/// The seller collects the payout and confirms it in WeChat; waits for `settled`.
async fn collect_payout(app: &TestApp, deal: &Deal) -> Value {
    let (s, ticket) = act(app, &deal.seller, deal.order, "payout", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{ticket}");
    let (s, b) = app
        .post(
            "/sandbox/wechatpay/confirm-transfer",
            None,
            &json!({ "package_info": ticket["transfer"]["package"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    wait_status(app, &deal.seller, deal.order, "settled").await;
    ticket
}

/// The WeChat Pay tables go away for a while (as in a database outage): our notify endpoint answers 500.
pub async fn payments_offline(app: &TestApp) {
    app.state
        .db
        .execute_unprepared("ALTER TABLE payments RENAME TO payments_offline")
        .await
        .unwrap();
}

pub async fn payments_back(app: &TestApp) {
    app.state
        .db
        .execute_unprepared("ALTER TABLE payments_offline RENAME TO payments")
        .await
        .unwrap();
}

/// Waits for the first (failed) delivery attempt of the notification about `no`.
pub async fn first_failure(app: &TestApp, no: &str) {
    for _ in 0..400 {
        let answers = our_answers(app, no).await;
        if let Some(first) = answers.first() {
            assert_eq!(*first, Some(500), "our database is away: {answers:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the notification about {no} never came");
}

/// The out_trade_no while the payments table is away (read from it under its other name).
async fn out_trade_no_offline(app: &TestApp, order: i64) -> String {
    let row = app
        .state
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.state.db.get_database_backend(),
            format!("SELECT out_trade_no FROM payments_offline WHERE order_id = {order}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<String>("", "out_trade_no").unwrap()
}

app_test!(
    async fn buy_pay_hand_over_and_collect_the_payout(backend) {
        let app = TestApp::spawn(backend).await;
        let deal = deal(&app, 8800).await;
        let (buyer, seller, id) = (&deal.buyer, &deal.seller, deal.order);

        // wx.requestPayment parameters; asking again re-signs the same WeChat order.
        let (s, p) = act(&app, buyer, id, "wechat-pay", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert!(p["timeStamp"].as_str().unwrap().len() == 10);
        assert!(!p["nonceStr"].as_str().unwrap().is_empty());
        assert_eq!(p["signType"], "RSA");
        assert!(!p["paySign"].as_str().unwrap().is_empty());
        let (_, again) = act(&app, buyer, id, "wechat-pay", json!({})).await;
        assert_eq!(again["package"], p["package"]);
        let no = out_trade_no(&app, id).await;
        let trades = sandbox_state(&app).await["trades"].clone();
        assert_eq!(trades.as_object().unwrap().len(), 1, "one WeChat order: {trades}");
        assert_eq!(trades[&no]["total"], 8800);
        assert_eq!(trades[&no]["state"], "NOTPAY");
        // Only the buyer pays.
        let (s, _) = act(&app, seller, id, "wechat-pay", json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        let prepay_id = p["package"].as_str().unwrap().trim_start_matches("prepay_id=").to_string();
        wechat_pays(&app, &prepay_id).await;
        let paid = wait_status(&app, buyer, id, "paid").await;
        assert!(paid["paid_at"].is_string());
        let code = paid["handover_code"].as_str().unwrap().to_string();
        assert_eq!(actions(&paid), vec!["confirm_receipt", "request_refund"]);
        let seen = order_of(&app, seller, id).await;
        assert!(seen["handover_code"].is_null(), "the seller never sees the code");
        assert_eq!(actions(&seen), vec!["handover"]);
        assert!(inbox_kinds(&app, seller, id).await.contains(&"order_paid".to_string()));
        assert_eq!(our_answers(&app, &no).await, vec![Some(204)]);

        let (s, done) = act(&app, seller, id, "handover", json!({ "code": code })).await;
        assert_eq!(s, StatusCode::OK, "{done}");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["payout"]["amount"], 8800);
        assert_eq!(done["payout"]["fee"], 0);
        assert_eq!(done["payout"]["status"], "ready");
        assert_eq!(actions(&done), vec!["collect_payout"]);
        assert_eq!(listing_status(&app, deal.listing, buyer).await, "sold");
        assert!(inbox_kinds(&app, seller, id).await.contains(&"payout_ready".to_string()));

        // The hand-over is reported to WeChat as a self-pickup, so it releases the funds.
        let mut uploads = Value::Null;
        for _ in 0..100 {
            uploads = app.get("/sandbox/wechatpay/_sandbox/shipping", None).await.1["uploads"].clone();
            if !uploads.as_array().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(uploads[0]["out_trade_no"], no.as_str());
        assert_eq!(uploads[0]["logistics_type"], 4);

        // The buyer cannot collect; the seller gets what wx.requestMerchantTransfer needs.
        let (s, _) = act(&app, buyer, id, "payout", json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let ticket = collect_payout(&app, &deal).await;
        assert_eq!(ticket["payout"]["amount"], 8800);
        assert!(ticket["transfer"]["mchId"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(ticket["transfer"]["appId"].as_str().unwrap().starts_with("wx"));
        let settled = order_of(&app, seller, id).await;
        assert_eq!(settled["payout"]["status"], "succeeded");
        assert!(settled["settled_at"].is_string());
        assert!(actions(&settled).is_empty());
        let bills = sandbox_state(&app).await["bills"].clone();
        let bill = bills.as_object().unwrap().values().next().unwrap().clone();
        assert_eq!(bill["transfer_amount"], 8800);
        assert_eq!(bill["state"], "SUCCESS");
        let (s, b) = act(&app, seller, id, "payout", json!({})).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("payout_settled")));

        let steps: Vec<String> = settled["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["to_status"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(steps, vec!["pending_payment", "paid", "completed", "settled"]);
    }
);

app_test!(
    async fn sync_payment_asks_wechat_instead_of_trusting_the_client(backend) {
        let app = TestApp::spawn(backend).await;
        let deal = deal(&app, 1500).await;
        // requestPayment:ok without a payment proves nothing.
        prepay(&app, &deal.buyer, deal.order).await;
        let (s, o) = act(&app, &deal.buyer, deal.order, "sync-payment", json!({})).await;
        assert_eq!((s, o["status"].as_str()), (StatusCode::OK, Some("pending_payment")));
        let prepay_id = prepay(&app, &deal.buyer, deal.order).await;
        wechat_pays(&app, &prepay_id).await;
        // Straight after paying, before or after the notification: sync says paid, and it happened once.
        let (s, o) = act(&app, &deal.buyer, deal.order, "sync-payment", json!({})).await;
        assert_eq!((s, o["status"].as_str()), (StatusCode::OK, Some("paid")));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(transitions(&app, deal.order, "pending_payment", "paid").await, 1);
    }
);

app_test!(
    async fn the_same_notification_ten_times_changes_the_order_once(backend) {
        let app = TestApp::spawn(backend).await;
        let deal = paid_deal(&app, 2600).await;
        let no = out_trade_no(&app, deal.order).await;
        let (s, b) = app
            .post("/sandbox/wechatpay/_sandbox/redeliver", None, &json!({ "subject": no, "times": 10 }))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let mut answers = Vec::new();
        for _ in 0..200 {
            answers = our_answers(&app, &no).await;
            if answers.len() >= 11 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(answers, vec![Some(204); 11], "every copy is acknowledged");
        assert_eq!(transitions(&app, deal.order, "pending_payment", "paid").await, 1);
        let paid_notices = inbox_kinds(&app, &deal.seller, deal.order)
            .await
            .iter()
            .filter(|k| *k == "order_paid")
            .count();
        assert_eq!(paid_notices, 1);

        // And the payout's notification, ten times more: one settlement, one payout.
        let code = order_of(&app, &deal.buyer, deal.order).await["handover_code"].as_str().unwrap().to_string();
        let (s, _) = act(&app, &deal.seller, deal.order, "handover", json!({ "code": code })).await;
        assert_eq!(s, StatusCode::OK);
        collect_payout(&app, &deal).await;
        let bill = payout::Entity::find()
            .filter(payout::Column::OrderId.eq(deal.order))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        let (s, _) = app
            .post(
                "/sandbox/wechatpay/_sandbox/redeliver",
                None,
                &json!({ "subject": bill.out_bill_no, "times": 10 }),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        for _ in 0..200 {
            if our_answers(&app, &bill.out_bill_no).await.len() >= 11 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(our_answers(&app, &bill.out_bill_no).await, vec![Some(204); 11]);
        assert_eq!(transitions(&app, deal.order, "completed", "settled").await, 1);
        let payouts = payout::Entity::find()
            .filter(payout::Column::OrderId.eq(deal.order))
            .count(&app.state.db)
            .await
            .unwrap();
        assert_eq!(payouts, 1);
        let bills = sandbox_state(&app).await["bills"].as_object().unwrap().len();
        assert_eq!(bills, 1, "one transfer bill");
    }
);

app_test!(
    async fn forged_and_tampered_notifications_are_refused_and_change_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let deal = deal(&app, 4200).await;
        prepay(&app, &deal.buyer, deal.order).await;
        let no = out_trade_no(&app, deal.order).await;
        for (tamper, status) in [
            ("forged_signature", 401),
            ("wrong_serial", 401),
            ("stale_timestamp", 401),
            ("signtest", 401),
            ("amount", 400),
            ("wrong_key", 400),
            ("wrong_mchid", 400),
            ("wrong_appid", 400),
        ] {
            let (s, b) = app
                .post("/sandbox/wechatpay/_sandbox/notify", None, &json!({ "out_trade_no": no, "tamper": tamper }))
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["status"], status, "{tamper}: {b}");
            let o = order_of(&app, &deal.buyer, deal.order).await;
            assert_eq!(o["status"], "pending_payment", "{tamper} changed the order");
        }
        let p = payment::Entity::find()
            .filter(payment::Column::OrderId.eq(deal.order))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        assert!(p.transaction_id.is_none() && p.paid_at.is_none());
        assert_eq!(transitions(&app, deal.order, "pending_payment", "paid").await, 0);

        // A payment of an order nobody placed.
        let (s, b) = app
            .post("/sandbox/wechatpay/_sandbox/notify", None, &json!({ "tamper": "unknown_order" }))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["status"], 404, "{b}");

        // The genuine one still works afterwards.
        let (_, b) = app
            .post("/sandbox/wechatpay/_sandbox/notify", None, &json!({ "out_trade_no": no, "tamper": "none" }))
            .await;
        assert_eq!(b["status"], 204, "{b}");
        assert_eq!(order_of(&app, &deal.buyer, deal.order).await["status"], "paid");
    }
);

app_test!(
    async fn wechat_retries_after_our_failure_and_we_apply_it_once(backend) {
        let app = TestApp::spawn(backend).await;
        let deal = deal(&app, 3300).await;
        let prepay_id = prepay(&app, &deal.buyer, deal.order).await;
        let no = out_trade_no(&app, deal.order).await;
        payments_offline(&app).await;
        wechat_pays(&app, &prepay_id).await;
        first_failure(&app, &no).await;
        payments_back(&app).await;
        // WeChat's schedule (15 s, compressed by the sandbox) brings it again.
        wait_status(&app, &deal.buyer, deal.order, "paid").await;
        let answers = our_answers(&app, &no).await;
        assert_eq!(answers.last(), Some(&Some(204)), "{answers:?}");
        assert!(answers[..answers.len() - 1].iter().all(|a| *a == Some(500)));
        assert_eq!(transitions(&app, deal.order, "pending_payment", "paid").await, 1);
    }
);

app_test!(
    async fn a_restart_between_payment_and_notification_loses_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let deal = deal(&app, 5100).await;
        let prepay_id = prepay(&app, &deal.buyer, deal.order).await;
        let no = out_trade_no(&app, deal.order).await;
        // The first delivery fails, so the notification is still owed when the service goes down.
        payments_offline(&app).await;
        wechat_pays(&app, &prepay_id).await;
        first_failure(&app, &no).await;
        payments_back(&app).await;
        let app = app.restart().await;
        let o = wait_status(&app, &deal.buyer, deal.order, "paid").await;
        assert!(o["handover_code"].is_string());
        assert_eq!(transitions(&app, deal.order, "pending_payment", "paid").await, 1);
        // And the service keeps working: the hand-over completes it.
        let code = o["handover_code"].as_str().unwrap().to_string();
        let (s, done) = act(&app, &deal.seller, deal.order, "handover", json!({ "code": code })).await;
        assert_eq!((s, done["status"].as_str()), (StatusCode::OK, Some("completed")));
    }
);

app_test!(
    async fn an_agreed_refund_returns_the_money_and_the_item(backend) {
        let app = TestApp::spawn(backend).await;
        let deal = paid_deal(&app, 6600).await;
        let (s, b) = act(&app, &deal.buyer, deal.order, "refund-request", json!({ "reason": "  " })).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let (s, r) = act(&app, &deal.buyer, deal.order, "refund-request", json!({ "reason": "颜色和图片不一样" })).await;
        assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("refund_requested")));
        assert!(inbox_kinds(&app, &deal.seller, deal.order).await.contains(&"refund_requested".to_string()));
        let seen = order_of(&app, &deal.seller, deal.order).await;
        assert_eq!(actions(&seen), vec!["respond_refund"]);
        assert_eq!(seen["refund_reason"], "颜色和图片不一样");
        // The buyer cannot answer their own request; the seller can no longer hand over.
        let (s, _) = act(&app, &deal.buyer, deal.order, "refund-response", json!({ "accept": true })).await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        let (s, r) = act(&app, &deal.seller, deal.order, "refund-response", json!({ "accept": true })).await;
        assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("refunded")), "{r}");
        assert_eq!(listing_status(&app, deal.listing, &deal.buyer).await, "on_sale");
        // WeChat accepts the refund, processes it, and says so.
        let mut refund = Value::Null;
        for _ in 0..200 {
            refund = order_of(&app, &deal.buyer, deal.order).await["refunds"][0].clone();
            if refund["status"] == "succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(refund["status"], "succeeded", "{refund}");
        assert_eq!(refund["amount"], 6600);
        let refunds = sandbox_state(&app).await["refunds"].clone();
        let r = refunds.as_object().unwrap().values().next().unwrap().clone();
        assert_eq!((r["refund"].as_i64(), r["status"].as_str()), (Some(6600), Some("SUCCESS")));
        assert!(inbox_kinds(&app, &deal.buyer, deal.order).await.contains(&"refund_succeeded".to_string()));
        let (s, _) = act(&app, &deal.seller, deal.order, "payout", json!({})).await;
        assert_eq!(s, StatusCode::CONFLICT, "nothing to pay out");
    }
);

app_test!(
    async fn disputes_are_decided_by_an_operator(backend) {
        let app = TestApp::spawn_with(backend, &[("PLATFORM_FEE_BPS", "250")]).await;
        // Refused refund → dispute → full refund.
        let deal = paid_deal(&app, 5000).await;
        act(&app, &deal.buyer, deal.order, "refund-request", json!({ "reason": "东西是坏的" })).await;
        let (s, o) = act(&app, &deal.seller, deal.order, "refund-response", json!({ "accept": false, "reason": "发货时是好的" })).await;
        assert_eq!((s, o["status"].as_str()), (StatusCode::OK, Some("disputed")));
        assert!(inbox_kinds(&app, &deal.buyer, deal.order).await.contains(&"refund_decided".to_string()));
        let err = decide_dispute(&app.state, deal.order, "ops-li", Decision::Refund { fen: 5001 }, "x")
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let done = decide_dispute(&app.state, deal.order, "ops-li", Decision::Refund { fen: 5000 }, "商品与描述不符")
            .await
            .unwrap();
        assert_eq!(done.status.as_str(), "refunded");
        let o = order_of(&app, &deal.buyer, deal.order).await;
        assert_eq!(o["refunds"][0]["amount"], 5000);
        let last = o["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["actor"].as_str(), last["reason"].as_str()), (Some("operator"), Some("商品与描述不符")));
        assert!(inbox_kinds(&app, &deal.seller, deal.order).await.contains(&"dispute_decided".to_string()));
        assert_eq!(listing_status(&app, deal.listing, &deal.buyer).await, "on_sale");
        // Deciding twice is refused.
        let err = decide_dispute(&app.state, deal.order, "ops-li", Decision::Complete, "again").await.unwrap_err();
        assert_eq!(err.code(), "invalid_transition");

        // Another item: the operator lets the deal stand with 20 yuan back; the seller gets the rest less 2.5 %.
        let d = demo(&app).await;
        let listing = publish(&app, &deal.seller, &d, "机械键盘", 10000).await;
        let (_, o) = buy(&app, &deal.buyer, listing, "wechat_pay").await;
        let id = o["id"].as_i64().unwrap();
        let prepay_id = prepay(&app, &deal.buyer, id).await;
        wechat_pays(&app, &prepay_id).await;
        wait_status(&app, &deal.buyer, id, "paid").await;
        act(&app, &deal.buyer, id, "refund-request", json!({ "reason": "有划痕" })).await;
        act(&app, &deal.seller, id, "refund-response", json!({ "accept": false })).await;
        let done = decide_dispute(&app.state, id, "ops-wang", Decision::Refund { fen: 2000 }, "部分退款")
            .await
            .unwrap();
        assert_eq!(done.status.as_str(), "completed");
        let seen = order_of(&app, &deal.seller, id).await;
        assert_eq!(seen["payout"]["fee"], 200, "2.5 % of the 80 yuan the seller is owed");
        assert_eq!(seen["payout"]["amount"], 7800);
        assert_eq!(seen["refunds"][0]["amount"], 2000);
        assert_eq!(listing_status(&app, listing, &deal.buyer).await, "sold");
        let ticket = collect_payout(&app, &Deal { seller: deal.seller.clone(), buyer: deal.buyer.clone(), listing, order: id }).await;
        assert_eq!(ticket["payout"]["amount"], 7800);
    }
);

app_test!(
    async fn paid_orders_complete_by_themselves_unless_a_refund_is_open(backend) {
        let app = TestApp::spawn_with(
            backend,
            &[("ORDER_AUTO_COMPLETE_DAYS", "0.00005"), ("ORDER_SWEEP_INTERVAL_SECONDS", "1")],
        )
        .await;
        let quiet = paid_deal(&app, 1000).await;
        let d = demo(&app).await;
        let listing = publish(&app, &quiet.seller, &d, "台灯二号", 1200).await;
        let (_, o) = buy(&app, &quiet.buyer, listing, "wechat_pay").await;
        let contested = o["id"].as_i64().unwrap();
        let prepay_id = prepay(&app, &quiet.buyer, contested).await;
        wechat_pays(&app, &prepay_id).await;
        wait_status(&app, &quiet.buyer, contested, "paid").await;
        let (s, _) = act(&app, &quiet.buyer, contested, "refund-request", json!({ "reason": "还没见面就不想要了" })).await;
        assert_eq!(s, StatusCode::OK);

        let done = wait_status(&app, &quiet.buyer, quiet.order, "completed").await;
        assert_eq!(done["events"].as_array().unwrap().last().unwrap()["actor"], "system");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(order_of(&app, &quiet.buyer, contested).await["status"], "refund_requested");
    }
);

app_test!(
    async fn unpaid_orders_are_closed_at_wechat_when_cancelled_or_expired(backend) {
        let app = TestApp::spawn_with(
            backend,
            &[("ORDER_PAYMENT_TIMEOUT_MINUTES", "0.05"), ("ORDER_SWEEP_INTERVAL_SECONDS", "1")],
        )
        .await;
        let deal = deal(&app, 1800).await;
        let prepay_id = prepay(&app, &deal.buyer, deal.order).await;
        let no = out_trade_no(&app, deal.order).await;
        let (s, o) = act(&app, &deal.seller, deal.order, "cancel", json!({ "reason": "卖出去了" })).await;
        assert_eq!((s, o["status"].as_str()), (StatusCode::OK, Some("cancelled")));
        assert_eq!(sandbox_state(&app).await["trades"][&no]["state"], "CLOSED");
        // The buyer can no longer pay it.
        let (s, _) = app
            .post("/sandbox/wechatpay/pay", None, &json!({ "prepay_id": prepay_id }))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // Expiry closes it too.
        let (_, o) = buy(&app, &deal.buyer, deal.listing, "wechat_pay").await;
        let id = o["id"].as_i64().unwrap();
        prepay(&app, &deal.buyer, id).await;
        let no = out_trade_no(&app, id).await;
        wait_status(&app, &deal.buyer, id, "cancelled").await;
        assert_eq!(sandbox_state(&app).await["trades"][&no]["state"], "CLOSED");
        assert_eq!(listing_status(&app, deal.listing, &deal.buyer).await, "on_sale");
    }
);

app_test!(
    async fn a_payment_that_beats_the_cancellation_wins_and_a_late_one_is_refunded(backend) {
        let app = TestApp::spawn(backend).await;
        // Paid at WeChat before our cancellation got there: the close fails, the query says paid.
        let deal = deal(&app, 2200).await;
        let prepay_id = prepay(&app, &deal.buyer, deal.order).await;
        payments_offline(&app).await; // the notification is held up
        wechat_pays(&app, &prepay_id).await;
        let no = out_trade_no_offline(&app, deal.order).await;
        first_failure(&app, &no).await;
        payments_back(&app).await;
        let (s, b) = act(&app, &deal.buyer, deal.order, "cancel", json!({})).await;
        assert_eq!((s, b["current_status"].as_str()), (StatusCode::CONFLICT, Some("paid")), "{b}");
        assert_eq!(order_of(&app, &deal.buyer, deal.order).await["status"], "paid");

        // Closed at WeChat, cancelled here — and still WeChat reports a payment (its close and the payment
        // crossed): the money goes back automatically.
        let d = demo(&app).await;
        let listing = publish(&app, &deal.seller, &d, "台灯三号", 900).await;
        let (_, o) = buy(&app, &deal.buyer, listing, "wechat_pay").await;
        let id = o["id"].as_i64().unwrap();
        prepay(&app, &deal.buyer, id).await;
        let (s, _) = act(&app, &deal.buyer, id, "cancel", json!({})).await;
        assert_eq!(s, StatusCode::OK);
        let no = out_trade_no(&app, id).await;
        let (_, b) = app
            .post("/sandbox/wechatpay/_sandbox/notify", None, &json!({ "out_trade_no": no, "tamper": "none" }))
            .await;
        assert_eq!(b["status"], 204, "{b}");
        let o = order_of(&app, &deal.buyer, id).await;
        assert_eq!(o["status"], "cancelled");
        assert_eq!(o["refunds"][0]["amount"], 900);
        let last = o["events"].as_array().unwrap().last().unwrap().clone();
        assert!(last["reason"].as_str().unwrap().contains("refunded automatically"), "{last}");
        let p = payment::Entity::find()
            .filter(payment::Column::OrderId.eq(id))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        assert!(p.transaction_id.is_some(), "the payment is on record");
        assert_eq!(listing_status(&app, listing, &deal.buyer).await, "on_sale");
    }
);
