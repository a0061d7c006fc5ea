//! The keys WeChat Pay signs with, and the checks on everything it sends us. A response or notification names its
//! key in `Wechatpay-Serial`: either the WeChat Pay public key id (`PUB_KEY_ID_…`, public-key mode) or the hex
//! serial of a platform certificate (certificate mode). Both kinds may be configured at once (WeChat signs
//! notifications with either during a migration). The signed message is `TIMESTAMP\nNONCE\nBODY\n` over the raw
//! body, and the timestamp must be within five minutes of our clock.

use std::collections::HashMap;

use rsa::{PublicKey, pkcs8::DecodePublicKey};
use x509_cert::der::{DecodePem, Encode};

use super::sign;

/// How far WeChat's timestamp may be from our clock, in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Public keys by the serial WeChat names them with.
#[derive(Clone, Default)]
pub struct PlatformKeys {
    by_serial: HashMap<String, PublicKey>,
    public_key_id: Option<String>,
    certificate_serials: Vec<String>,
}

/// Why a signed message was not believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The timestamp is not a number, or is more than five minutes away from our clock.
    Stale,
    /// `Wechatpay-Serial` names no key we have.
    UnknownSerial(String),
    /// The signature does not verify (includes `WECHATPAY/SIGNTEST/` probes and non-Base64 values).
    BadSignature,
}

/// The form serials are compared in: public key ids as they are, certificate serials as upper-case hex without
/// leading zeros (the header carries 40 hex digits; DER may add or drop a leading zero byte).
pub fn normalize_serial(serial: &str) -> String {
    let serial = serial.trim();
    if serial.starts_with("PUB_KEY_ID_") {
        return serial.to_string();
    }
    let upper = serial.to_ascii_uppercase();
    let trimmed = upper.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.to_string()
    }
}

/// A platform certificate's public key and its serial as upper-case hex, from PEM.
pub fn certificate_from_pem(pem: &str) -> Result<(String, PublicKey, CertificateValidity), String> {
    let cert = x509_cert::Certificate::from_pem(pem.trim())
        .map_err(|e| format!("not a PEM X.509 certificate: {e}"))?;
    let tbs = cert.tbs_certificate();
    let serial = hex::encode_upper(tbs.serial_number().as_bytes());
    let spki = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("certificate public key unreadable: {e}"))?;
    let key = PublicKey::from_public_key_der(&spki)
        .map_err(|e| format!("the certificate's key is not an RSA key: {e}"))?;
    if rsa::traits::PublicKeyParts::size(&key) * 8 < sign::MIN_KEY_BITS {
        return Err("the certificate's RSA key is smaller than 2048 bits".into());
    }
    let validity = CertificateValidity {
        not_before: tbs.validity().not_before.to_unix_duration().as_secs() as i64,
        not_after: tbs.validity().not_after.to_unix_duration().as_secs() as i64,
    };
    Ok((normalize_serial(&serial), key, validity))
}

/// When a certificate is valid, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateValidity {
    pub not_before: i64,
    pub not_after: i64,
}

impl PlatformKeys {
    /// Adds the WeChat Pay public key (public-key mode) under its id (`PUB_KEY_ID_` + digits).
    pub fn add_public_key(&mut self, id: &str, key: PublicKey) {
        let id = id.trim().to_string();
        self.by_serial.insert(id.clone(), key);
        self.public_key_id = Some(id);
    }

    /// Adds a platform certificate (certificate mode) under its serial; returns the serial and validity.
    pub fn add_certificate_pem(
        &mut self,
        pem: &str,
    ) -> Result<(String, CertificateValidity), String> {
        let (serial, key, validity) = certificate_from_pem(pem)?;
        self.by_serial.insert(serial.clone(), key);
        self.certificate_serials.push(serial.clone());
        Ok((serial, validity))
    }

    /// The configured public key id, if any.
    pub fn public_key_id(&self) -> Option<&str> {
        self.public_key_id.as_deref()
    }

    /// The serials of the configured platform certificates.
    pub fn certificate_serials(&self) -> &[String] {
        &self.certificate_serials
    }

    pub fn is_empty(&self) -> bool {
        self.by_serial.is_empty()
    }

    /// The key named by a `Wechatpay-Serial` value.
    pub fn key(&self, serial: &str) -> Option<&PublicKey> {
        self.by_serial.get(&normalize_serial(serial))
    }

    /// Checks a signed response or notification: timestamp window, key by serial, signature over the raw body.
    pub fn verify(
        &self,
        serial: &str,
        timestamp: &str,
        nonce: &str,
        signature: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        if !timestamp_fresh(timestamp, now_unix) {
            return Err(VerifyError::Stale);
        }
        let key = self
            .key(serial)
            .ok_or_else(|| VerifyError::UnknownSerial(serial.chars().take(64).collect()))?;
        let message = sign::response_message(timestamp, nonce, body);
        if sign::verify(key, &message, signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

/// Whether a header timestamp (Unix seconds, digits only) is within five minutes of `now_unix`.
pub fn timestamp_fresh(timestamp: &str, now_unix: i64) -> bool {
    let ts = timestamp.trim();
    if ts.is_empty() || ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    ts.parse::<i64>()
        .is_ok_and(|t| (t - now_unix).abs() <= MAX_CLOCK_SKEW_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::pay::sign::tests::{TV1_PUBLIC, vectors};

    const TV2_CERT: &str = include_str!("testdata/tv2-platform-certificate.pem");

    #[test]
    fn tv2_certificate_serial_and_notification_signature() {
        let v = vectors();
        let tv = &v["tv2_notification"];
        let mut keys = PlatformKeys::default();
        let (serial, _) = keys.add_certificate_pem(TV2_CERT).unwrap();
        assert_eq!(serial, "D7CE59D1F522D701");
        let h = &tv["headers"];
        let body = tv["body"].as_str().unwrap().as_bytes();
        let ts = h["Wechatpay-Timestamp"].as_str().unwrap();
        let now: i64 = ts.parse().unwrap();
        let check = |serial: &str, ts: &str, nonce: &str, sig: &str, body: &[u8], now: i64| {
            keys.verify(serial, ts, nonce, sig, body, now)
        };
        let (nonce, sig) = (
            h["Wechatpay-Nonce"].as_str().unwrap(),
            h["Wechatpay-Signature"].as_str().unwrap(),
        );
        assert_eq!(check("D7CE59D1F522D701", ts, nonce, sig, body, now), Ok(()));
        // Serial case and leading zeros do not matter.
        assert_eq!(
            check("00d7ce59d1f522d701", ts, nonce, sig, body, now),
            Ok(())
        );
        // Within the window on both sides, outside beyond five minutes.
        assert_eq!(
            check("D7CE59D1F522D701", ts, nonce, sig, body, now + 300),
            Ok(())
        );
        assert_eq!(
            check("D7CE59D1F522D701", ts, nonce, sig, body, now + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check("D7CE59D1F522D701", ts, nonce, sig, body, now - 301),
            Err(VerifyError::Stale)
        );
        // One byte of the body changed.
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            check("D7CE59D1F522D701", ts, nonce, sig, &tampered, now),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check("D7CE59D1F522D701", ts, "other", sig, body, now),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check("ABCDEF", ts, nonce, sig, body, now),
            Err(VerifyError::UnknownSerial("ABCDEF".into()))
        );
        assert_eq!(
            check(
                "D7CE59D1F522D701",
                ts,
                nonce,
                "WECHATPAY/SIGNTEST/abc==",
                body,
                now
            ),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn public_key_mode_selects_by_id_and_both_modes_coexist() {
        let v = vectors();
        let tv = &v["tv2_notification"];
        let h = &tv["headers"];
        let body = tv["body"].as_str().unwrap().as_bytes();
        let ts = h["Wechatpay-Timestamp"].as_str().unwrap();
        let now: i64 = ts.parse().unwrap();
        let mut keys = PlatformKeys::default();
        let id = "PUB_KEY_ID_0000000000000024101100397200000006";
        keys.add_public_key(id, sign::public_key_from_pem(TV1_PUBLIC).unwrap());
        let (nonce, sig) = (
            h["Wechatpay-Nonce"].as_str().unwrap(),
            h["Wechatpay-Signature"].as_str().unwrap(),
        );
        // The TV-2 notification was signed by the TV-1 key: under the public key id it verifies too.
        assert_eq!(keys.verify(id, ts, nonce, sig, body, now), Ok(()));
        assert!(matches!(
            keys.verify("D7CE59D1F522D701", ts, nonce, sig, body, now),
            Err(VerifyError::UnknownSerial(_))
        ));
        keys.add_certificate_pem(TV2_CERT).unwrap();
        assert_eq!(
            keys.verify("D7CE59D1F522D701", ts, nonce, sig, body, now),
            Ok(())
        );
        assert_eq!(keys.public_key_id(), Some(id));
        assert_eq!(keys.certificate_serials(), ["D7CE59D1F522D701".to_string()]);
    }

    #[test]
    fn timestamps_must_be_plain_recent_numbers() {
        assert!(timestamp_fresh("1000", 1000));
        assert!(!timestamp_fresh("", 1000));
        assert!(!timestamp_fresh("-5", 0));
        assert!(!timestamp_fresh("1e3", 1000));
        assert!(!timestamp_fresh("99999999999999999999", 1000));
        assert!(!timestamp_fresh("1000000", 1000));
    }

    #[test]
    fn garbage_certificates_are_refused() {
        assert!(certificate_from_pem("nope").is_err());
        assert!(certificate_from_pem(TV1_PUBLIC).is_err());
    }
}
