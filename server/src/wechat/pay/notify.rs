//! Incoming notifications (`TRANSACTION.SUCCESS`, `REFUND.*`, `MCHTRANSFER.BILL.FINISHED`): verified over the raw
//! body with the key `Wechatpay-Serial` names, within the five-minute window, then the AES-256-GCM resource is
//! decrypted and mapped by `original_type` / `event_type`. Nothing here panics on bad input: a probe, garbage or
//! a forgery is an error the handler answers with 4xx/5xx (so a genuine notification is sent again).

use serde::Deserialize;
use serde_json::Value;

use super::{
    Notification, NotificationResource, NotifyError, NotifyHeaders, Refund, Transaction,
    TransferBill,
    crypto::DecryptError,
    verify::{PlatformKeys, VerifyError},
};

/// The envelope of every notification.
#[derive(Debug, Deserialize)]
struct Envelope {
    id: String,
    #[serde(default)]
    event_type: String,
    resource: EncryptedResource,
}

/// An encrypted `resource` (notifications) or `encrypt_certificate` (certificate download).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct EncryptedResource {
    #[serde(default)]
    pub original_type: String,
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: Option<String>,
    pub nonce: String,
}

/// The one algorithm WeChat Pay uses for resources.
pub const ALGORITHM: &str = "AEAD_AES_256_GCM";

/// A refund as both the refund API (`status`) and the refund notification (`refund_status`) spell it; the amount
/// refunded is `amount.refund`.
#[derive(Debug, Deserialize)]
pub(super) struct RefundWire {
    out_refund_no: String,
    out_trade_no: String,
    #[serde(default)]
    refund_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    refund_status: Option<String>,
    amount: RefundAmountWire,
}

#[derive(Debug, Deserialize)]
struct RefundAmountWire {
    refund: i64,
}

impl RefundWire {
    pub(super) fn into_refund(self) -> Result<Refund, String> {
        let status = self
            .status
            .or(self.refund_status)
            .ok_or("refund without status or refund_status")?;
        Ok(Refund {
            out_refund_no: self.out_refund_no,
            out_trade_no: self.out_trade_no,
            refund_id: self.refund_id,
            status,
            refund_fen: self.amount.refund,
        })
    }
}

/// The APIv3 key's decryption: `(nonce, associated_data, ciphertext) → plaintext`.
pub(super) type Decrypt<'a> = &'a dyn Fn(&str, &str, &str) -> Result<Vec<u8>, DecryptError>;

/// Verifies and decrypts a notification. `decrypt(nonce, associated_data, ciphertext)` is the APIv3 key's
/// decryption (a parameter so the official 16-byte-key test vector can be checked too).
pub(super) fn parse(
    keys: &PlatformKeys,
    decrypt: Decrypt<'_>,
    headers: &NotifyHeaders,
    raw_body: &[u8],
    now_unix: i64,
) -> Result<Notification, NotifyError> {
    let need = |v: &Option<String>, name: &'static str| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or(NotifyError::MissingHeader(name))
    };
    let timestamp = need(&headers.timestamp, "Wechatpay-Timestamp")?;
    let nonce = need(&headers.nonce, "Wechatpay-Nonce")?;
    let signature = need(&headers.signature, "Wechatpay-Signature")?;
    let serial = need(&headers.serial, "Wechatpay-Serial")?;
    keys.verify(&serial, &timestamp, &nonce, &signature, raw_body, now_unix)
        .map_err(|e| match e {
            VerifyError::Stale => NotifyError::StaleTimestamp,
            VerifyError::UnknownSerial(s) => NotifyError::UnknownSerial(s),
            VerifyError::BadSignature => NotifyError::BadSignature,
        })?;

    let envelope: Envelope = serde_json::from_slice(raw_body)
        .map_err(|e| NotifyError::Malformed(format!("envelope: {e}")))?;
    let r = &envelope.resource;
    if r.algorithm != ALGORITHM {
        return Err(NotifyError::Malformed(format!(
            "unsupported algorithm {:?}",
            r.algorithm.chars().take(40).collect::<String>()
        )));
    }
    let plain = decrypt(
        &r.nonce,
        r.associated_data.as_deref().unwrap_or(""),
        &r.ciphertext,
    )
    .map_err(|_| NotifyError::Decrypt)?;
    let resource = map_resource(&envelope.event_type, &r.original_type, &plain)?;
    Ok(Notification {
        id: envelope.id,
        event_type: envelope.event_type,
        resource,
    })
}

fn map_resource(
    event_type: &str,
    original_type: &str,
    plain: &[u8],
) -> Result<NotificationResource, NotifyError> {
    let malformed = |what: &str, e: &dyn std::fmt::Display| {
        NotifyError::Malformed(format!("{what} resource: {e}"))
    };
    if original_type == "transaction" || event_type.starts_with("TRANSACTION.") {
        let t: Transaction =
            serde_json::from_slice(plain).map_err(|e| malformed("transaction", &e))?;
        return Ok(NotificationResource::Transaction(t));
    }
    if original_type == "refund" || event_type.starts_with("REFUND.") {
        let r: RefundWire = serde_json::from_slice(plain).map_err(|e| malformed("refund", &e))?;
        return r
            .into_refund()
            .map(NotificationResource::Refund)
            .map_err(|e| malformed("refund", &e));
    }
    if original_type == "mch_payment" || event_type.starts_with("MCHTRANSFER.") {
        let b: TransferBill =
            serde_json::from_slice(plain).map_err(|e| malformed("transfer bill", &e))?;
        return Ok(NotificationResource::Transfer(b));
    }
    let value = serde_json::from_slice(plain)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(plain).into_owned()));
    Ok(NotificationResource::Other(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::pay::{
        crypto::{ApiV3Key, gcm_decrypt},
        sign::{self, tests::vectors},
    };
    use aes_gcm::KeyInit;

    fn tv2() -> (PlatformKeys, NotifyHeaders, String, i64, Value) {
        let v = vectors();
        let tv = v["tv2_notification"].clone();
        let mut keys = PlatformKeys::default();
        keys.add_certificate_pem(include_str!("testdata/tv2-platform-certificate.pem"))
            .unwrap();
        let h = &tv["headers"];
        let s = |k: &str| h[k].as_str().map(str::to_string);
        let headers = NotifyHeaders {
            timestamp: s("Wechatpay-Timestamp"),
            nonce: s("Wechatpay-Nonce"),
            signature: s("Wechatpay-Signature"),
            serial: s("Wechatpay-Serial"),
        };
        let now = headers.timestamp.as_deref().unwrap().parse().unwrap();
        (
            keys,
            headers,
            tv["body"].as_str().unwrap().to_string(),
            now,
            tv,
        )
    }

    /// TV-2 end to end: its signature, then its 16-byte (AES-128) APIv3 key through the test-only decryption.
    #[test]
    fn tv2_parses_with_the_test_only_aes128_key() {
        let (keys, headers, body, now, tv) = tv2();
        let key = tv["apiv3_key"].as_str().unwrap().to_string();
        let aes128 = move |n: &str, aad: &str, ct: &str| {
            let cipher = aes_gcm::Aes128Gcm::new_from_slice(key.as_bytes()).unwrap();
            gcm_decrypt(&cipher, n, aad, ct)
        };
        let n = parse(&keys, &aes128, &headers, body.as_bytes(), now).unwrap();
        assert_eq!(n.id, "3119dfba-e649-5eec-ab1e-3412bc4d2e17");
        assert_eq!(n.event_type, "PAYSCORE.USER_OPEN_SERVICE");
        let NotificationResource::Other(value) = n.resource else {
            panic!("a payscore resource is not one we map");
        };
        let expected: Value = serde_json::from_str(tv["plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(value, expected);
    }

    #[test]
    fn tv2_with_a_32_byte_key_is_a_decrypt_error_not_a_panic() {
        let (keys, headers, body, now, _) = tv2();
        let wrong = ApiV3Key::random();
        let decrypt = move |n: &str, aad: &str, ct: &str| wrong.decrypt(n, aad, ct);
        assert!(matches!(
            parse(&keys, &decrypt, &headers, body.as_bytes(), now),
            Err(NotifyError::Decrypt)
        ));
    }

    #[test]
    fn tv2_rejections() {
        let (keys, headers, body, now, _) = tv2();
        let never = |_: &str, _: &str, _: &str| -> Result<Vec<u8>, DecryptError> {
            panic!("must not decrypt an unverified notification")
        };
        let run = |h: &NotifyHeaders, body: &[u8], now: i64| parse(&keys, &never, h, body, now);
        assert!(matches!(
            run(&headers, body.as_bytes(), now + 3600),
            Err(NotifyError::StaleTimestamp)
        ));
        let mut probe = headers.clone();
        probe.signature = Some(
            "WECHATPAY/SIGNTEST/gQ8ZCMx0AmlOaJB2mhQ3qwfDjbJNx45PSVbPzZcaRyNSmnzBQd7eF6C/KQ+EUEJM"
                .into(),
        );
        assert!(matches!(
            run(&probe, body.as_bytes(), now),
            Err(NotifyError::BadSignature)
        ));
        let mut wrong_serial = headers.clone();
        wrong_serial.serial = Some("PUB_KEY_ID_0000000000000000000000000000000001".into());
        assert!(matches!(
            run(&wrong_serial, body.as_bytes(), now),
            Err(NotifyError::UnknownSerial(_))
        ));
        let mut missing = headers.clone();
        missing.nonce = None;
        assert!(matches!(
            run(&missing, body.as_bytes(), now),
            Err(NotifyError::MissingHeader("Wechatpay-Nonce"))
        ));
        // Re-serialising the body (here: adding a space) breaks the signature.
        let reserialised = body.replacen("\"id\":", "\"id\": ", 1);
        assert!(matches!(
            run(&headers, reserialised.as_bytes(), now),
            Err(NotifyError::BadSignature)
        ));
    }

    /// Throughput of `parse` (signature check + decryption + mapping) on one core; a measurement, not a check.
    /// `cargo test -p campus-trade --lib wechat::pay::notify::tests::parse_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement; run by hand"]
    fn parse_throughput() {
        let key = sign::private_key_from_pem(sign::tests::TV1_PRIVATE).unwrap();
        let mut keys = PlatformKeys::default();
        keys.add_public_key(
            "PUB_KEY_ID_0000000000000000000000000000000042",
            key.to_public_key(),
        );
        let apiv3 = ApiV3Key::random();
        let plain = r#"{"appid":"wx5a4db0c0ffee0001","mchid":"1900000109","out_trade_no":"CT1234567890","transaction_id":"4200002024010112345678901234","trade_type":"JSAPI","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"OTHERS","attach":"","success_time":"2024-01-01T12:00:00+08:00","payer":{"openid":"oBuyer0000000000000000000001"},"amount":{"total":2350,"payer_total":2350,"currency":"CNY","payer_currency":"CNY"}}"#;
        let ct = apiv3.encrypt("abcdefghijkl", "transaction", plain.as_bytes());
        let body = serde_json::json!({
            "id": "n-1", "create_time": "2024-01-01T12:00:00+08:00", "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": ALGORITHM, "ciphertext": ct,
                         "associated_data": "transaction", "nonce": "abcdefghijkl"}
        })
        .to_string();
        let now = 1_700_000_000;
        let started = std::time::Instant::now();
        let signs = 50;
        let mut sig = String::new();
        for _ in 0..signs {
            sig = sign::sign(
                &key,
                &sign::response_message(&now.to_string(), "n", body.as_bytes()),
            )
            .unwrap();
        }
        let sign_rate = f64::from(signs) / started.elapsed().as_secs_f64();
        let headers = NotifyHeaders {
            timestamp: Some(now.to_string()),
            nonce: Some("n".into()),
            signature: Some(sig),
            serial: Some("PUB_KEY_ID_0000000000000000000000000000000042".into()),
        };
        let decrypt = |n: &str, aad: &str, ct: &str| apiv3.decrypt(n, aad, ct);
        let n = 2_000;
        let started = std::time::Instant::now();
        for _ in 0..n {
            parse(&keys, &decrypt, &headers, body.as_bytes(), now).unwrap();
        }
        let rate = f64::from(n) / started.elapsed().as_secs_f64();
        println!(
            "parse_notification: {rate:.0}/s on one core; RSA-2048 signing (the sender's side): {sign_rate:.0}/s"
        );
    }

    /// Fresh keys: a signed, encrypted refund notification maps `refund_status` and `amount.refund`; a transfer
    /// notification maps the bill; garbage after a valid signature is Malformed.
    #[test]
    fn refund_and_transfer_resources_map() {
        let key = sign::private_key_from_pem(sign::tests::TV1_PRIVATE).unwrap();
        let mut keys = PlatformKeys::default();
        keys.add_public_key(
            "PUB_KEY_ID_0000000000000000000000000000000042",
            key.to_public_key(),
        );
        let apiv3 = ApiV3Key::random();
        let now = 1_700_000_000;
        let envelope = |event: &str, original: &str, plain: &str| {
            let ct = apiv3.encrypt("abcdefghijkl", original, plain.as_bytes());
            serde_json::json!({
                "id": "n-1", "create_time": "2024-01-01T00:00:00+08:00", "resource_type": "encrypt-resource",
                "event_type": event, "summary": "x",
                "resource": {"original_type": original, "algorithm": ALGORITHM, "ciphertext": ct,
                             "associated_data": original, "nonce": "abcdefghijkl"}
            })
            .to_string()
        };
        let signed = |body: &str| NotifyHeaders {
            timestamp: Some(now.to_string()),
            nonce: Some("n".into()),
            signature: Some(
                sign::sign(
                    &key,
                    &sign::response_message(&now.to_string(), "n", body.as_bytes()),
                )
                .unwrap(),
            ),
            serial: Some("PUB_KEY_ID_0000000000000000000000000000000042".into()),
        };
        let decrypt = |n: &str, aad: &str, ct: &str| apiv3.decrypt(n, aad, ct);

        let body = envelope(
            "REFUND.SUCCESS",
            "refund",
            r#"{"mchid":"1900000109","out_trade_no":"T123456","transaction_id":"42","out_refund_no":"R123456",
                "refund_id":"5030","refund_status":"SUCCESS","success_time":"2024-01-01T00:00:00+08:00",
                "user_received_account":"x","amount":{"total":100,"refund":60,"payer_total":100,"payer_refund":60}}"#,
        );
        let n = parse(&keys, &decrypt, &signed(&body), body.as_bytes(), now).unwrap();
        let NotificationResource::Refund(r) = n.resource else {
            panic!("refund expected")
        };
        assert_eq!((r.status.as_str(), r.refund_fen), ("SUCCESS", 60));
        assert_eq!(r.out_refund_no, "R123456");

        let body = envelope(
            "MCHTRANSFER.BILL.FINISHED",
            "mch_payment",
            r#"{"out_bill_no":"B1","transfer_bill_no":"1330","state":"SUCCESS","mch_id":"1900000109",
                "transfer_amount":500,"openid":"o1","create_time":"2024-01-01T00:00:00+08:00"}"#,
        );
        let n = parse(&keys, &decrypt, &signed(&body), body.as_bytes(), now).unwrap();
        let NotificationResource::Transfer(b) = n.resource else {
            panic!("transfer expected")
        };
        assert_eq!(
            (b.out_bill_no.as_str(), b.state.as_str()),
            ("B1", "SUCCESS")
        );

        let body = envelope(
            "TRANSACTION.SUCCESS",
            "transaction",
            r#"{"not":"a transaction"}"#,
        );
        assert!(matches!(
            parse(&keys, &decrypt, &signed(&body), body.as_bytes(), now),
            Err(NotifyError::Malformed(_))
        ));
        let body = "not json at all".to_string();
        assert!(matches!(
            parse(&keys, &decrypt, &signed(&body), body.as_bytes(), now),
            Err(NotifyError::Malformed(_))
        ));
    }
}
