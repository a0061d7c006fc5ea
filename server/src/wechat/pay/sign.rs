//! Our side of WeChat Pay's signatures: the `Authorization` header over the exact bytes of each request, and the
//! `paySign` of `wx.requestPayment`. Both are RSASSA-PKCS1-v1_5 with SHA-256 under the merchant API private key,
//! Base64-encoded. The message layouts live here (and nowhere else) so the client and the sandbox, which checks
//! them, cannot drift apart.

use base64::Engine;
use rand::{Rng, RngCore};
use rsa::{
    PrivateKey, PublicKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey},
    sha2::Sha256,
    traits::PublicKeyParts,
};

/// The scheme name of the `Authorization` header (and of `Wechatpay-Signature-Type`).
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// Smallest RSA modulus we accept for any key, in bits (WeChat's keys are 2048-bit).
pub const MIN_KEY_BITS: usize = 2048;

/// The operating system's CSPRNG (through `rand`'s thread generator, reseeded from the OS) in the shape the
/// `rsa` crate wants (it uses a newer `rand_core` than the rest of the service).
pub struct SysRng;

impl rsa::rand_core::TryRng for SysRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::rng().next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::rng().next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::rng().fill_bytes(dst);
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for SysRng {}

/// A fresh RSA-2048 private key (the size WeChat uses). Slow: seconds in a debug build.
pub fn generate_key() -> Result<PrivateKey, String> {
    PrivateKey::new(&mut SysRng, 2048).map_err(|e| format!("RSA key generation failed: {e}"))
}

/// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`, the form of WeChat's `apiclient_key.pem`), at least
/// 2048 bits.
pub fn private_key_from_pem(pem: &str) -> Result<PrivateKey, String> {
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return Err(
            "the key is PKCS#1 (BEGIN RSA PRIVATE KEY); WeChat Pay's apiclient_key.pem is PKCS#8 \
                    (BEGIN PRIVATE KEY) -- use the file as downloaded, or convert it with \
                    `openssl pkcs8 -topk8 -nocrypt`"
                .into(),
        );
    }
    let key = PrivateKey::from_pkcs8_pem(pem.trim())
        .map_err(|e| format!("not a PKCS#8 PEM RSA private key: {e}"))?;
    check_size(key.size() * 8)?;
    Ok(key)
}

/// A SubjectPublicKeyInfo PEM public key (`-----BEGIN PUBLIC KEY-----`, the form of WeChat Pay's public key file).
pub fn public_key_from_pem(pem: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("not a PEM RSA public key (BEGIN PUBLIC KEY): {e}"))?;
    check_size(key.size() * 8)?;
    Ok(key)
}

fn check_size(bits: usize) -> Result<(), String> {
    if bits < MIN_KEY_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; at least {MIN_KEY_BITS} are required"
        ));
    }
    Ok(())
}

/// Base64 of the RSASSA-PKCS1-v1_5 / SHA-256 signature of `message` under `key`.
pub fn sign(key: &PrivateKey, message: &[u8]) -> Result<String, String> {
    let signature = key
        .pkcs1v15_sign::<Sha256>(message)
        .map_err(|e| format!("RSA signing failed: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signature))
}

/// Whether `signature_b64` is a valid signature of `message` under `key`. Anything that is not Base64 (such as
/// WeChat's `WECHATPAY/SIGNTEST/...` probes) is simply invalid.
pub fn verify(key: &PublicKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim())
    else {
        return false;
    };
    key.pkcs1v15_verify::<Sha256>(message, &signature).is_ok()
}

/// A 32-character nonce of `[0-9A-Za-z]` (what WeChat's SDKs send).
pub fn nonce() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The request signing message: `METHOD\nCANONICAL_URL\nTIMESTAMP\nNONCE\nBODY\n`, every line terminated, the
/// body being the exact bytes sent (empty for GET).
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(method.len() + canonical_url.len() + body.len() + 64);
    for part in [method, canonical_url, timestamp, nonce] {
        m.extend_from_slice(part.as_bytes());
        m.push(b'\n');
    }
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The response/notification verification message: `TIMESTAMP\nNONCE\nBODY\n` over the raw body bytes.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The `paySign` message of `wx.requestPayment`: `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn pay_sign_message(appid: &str, timestamp: &str, nonce: &str, package: &str) -> String {
    format!("{appid}\n{timestamp}\n{nonce}\n{package}\n")
}

/// The `Authorization` header value. Field order is irrelevant to WeChat; this is the Go SDK's.
pub fn authorization(
    mchid: &str,
    nonce: &str,
    timestamp: &str,
    serial_no: &str,
    signature: &str,
) -> String {
    format!(
        "{SCHEME} mchid=\"{mchid}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\",signature=\"{signature}\""
    )
}

/// The fields of an `Authorization` header (as the sandbox reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationFields {
    pub mchid: String,
    pub nonce_str: String,
    pub timestamp: String,
    pub serial_no: String,
    pub signature: String,
}

/// Parses `WECHATPAY2-SHA256-RSA2048 k="v",k="v",...` (pairs in any order); `None` when the scheme is wrong or a
/// field is missing.
pub fn parse_authorization(header: &str) -> Option<AuthorizationFields> {
    let rest = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let mut fields = std::collections::HashMap::new();
    for pair in rest.split(',') {
        let (k, v) = pair.trim().split_once('=')?;
        let v = v.strip_prefix('"')?.strip_suffix('"')?;
        fields.insert(k.trim(), v.to_string());
    }
    let mut take = |k: &str| fields.remove(k).filter(|v| !v.is_empty());
    Some(AuthorizationFields {
        mchid: take("mchid")?,
        nonce_str: take("nonce_str")?,
        timestamp: take("timestamp")?,
        serial_no: take("serial_no")?,
        signature: take("signature")?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const TV1_PRIVATE: &str = include_str!("testdata/tv1-rsa-private-key.pem");
    pub(crate) const TV1_PUBLIC: &str = include_str!("testdata/tv1-rsa-public-key.pem");

    pub(crate) fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("testdata/vectors.json")).unwrap()
    }

    #[test]
    fn tv1_signature_matches_the_official_sdk() {
        let v = vectors();
        let key = private_key_from_pem(TV1_PRIVATE).unwrap();
        let sig = sign(&key, v["tv1_sign"]["message"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(sig, v["tv1_sign"]["signature"].as_str().unwrap());
        let public = public_key_from_pem(TV1_PUBLIC).unwrap();
        assert!(verify(&public, b"source", &sig));
        assert!(!verify(&public, b"sourcE", &sig));
    }

    #[test]
    fn tv8_request_signature_and_pay_sign() {
        let v = vectors();
        let key = private_key_from_pem(TV1_PRIVATE).unwrap();
        let message = request_message(
            "GET",
            "/v3/certificates",
            "1554208460",
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            b"",
        );
        assert_eq!(
            message,
            v["tv8_request_signature"]["message"]
                .as_str()
                .unwrap()
                .as_bytes()
        );
        assert_eq!(
            sign(&key, &message).unwrap(),
            v["tv8_request_signature"]["signature"].as_str().unwrap()
        );

        let pay = pay_sign_message(
            "wx8888888888888888",
            "1414561699",
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "prepay_id=wx201410272009395522657a690389285100",
        );
        assert_eq!(pay, v["tv8_pay_sign"]["message"].as_str().unwrap());
        assert_eq!(
            sign(&key, pay.as_bytes()).unwrap(),
            v["tv8_pay_sign"]["signature"].as_str().unwrap()
        );
    }

    #[test]
    fn signtest_probes_and_garbage_are_invalid_without_panicking() {
        let public = public_key_from_pem(TV1_PUBLIC).unwrap();
        for bad in [
            "WECHATPAY/SIGNTEST/gQ8ZCMx0AmlOaJB2mhQ3qwfDjbJNx45PSVbPzZcaRyNSmnzBQd7eF6C/KQ+EUEJMd7nERcqtWpE33ew6VHCuSIuT==",
            "",
            "@@@",
            "AAAA",
        ] {
            assert!(!verify(&public, b"anything", bad));
        }
    }

    #[test]
    fn authorization_round_trips_in_any_order() {
        let h = authorization("1900000109", "n0nce", "1554208460", "ABC123", "c2ln");
        let f = parse_authorization(&h).unwrap();
        assert_eq!(f.mchid, "1900000109");
        assert_eq!(f.serial_no, "ABC123");
        let shuffled = format!(
            "{SCHEME} signature=\"c2ln\",serial_no=\"ABC123\",timestamp=\"1554208460\",mchid=\"1900000109\",nonce_str=\"n0nce\""
        );
        assert_eq!(parse_authorization(&shuffled), Some(f));
        assert_eq!(parse_authorization("Bearer abc"), None);
        assert_eq!(
            parse_authorization(&format!("{SCHEME} mchid=\"1\"")),
            None,
            "missing fields"
        );
    }

    #[test]
    fn pkcs1_and_small_keys_are_refused_with_a_reason() {
        let err = private_key_from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
        )
        .unwrap_err();
        assert!(err.contains("PKCS#8"));
        assert!(private_key_from_pem("not a key").is_err());
        assert!(
            public_key_from_pem("-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }
}
