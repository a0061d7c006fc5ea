//! Time-based one-time passwords (RFC 6238) for the operators' second factor: HMAC-SHA1, 30-second steps, six
//! digits, accepting the step before and after the current one for clock drift. Secrets are 160 random bits,
//! shown once as RFC 4648 base32 and as an `otpauth://` URI that authenticator apps scan as a QR code.

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha1::Sha1;

/// Length of a time step, seconds.
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps accepted on either side of the current one.
pub const DRIFT_STEPS: u64 = 1;
/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "campus_trade";

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes base32 as authenticator apps write it: any case, spaces and padding ignored. `None` when a character
/// is outside the alphabet.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let c = c.to_ascii_uppercase() as u8;
        let value = BASE32_ALPHABET.iter().position(|a| *a == c)? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// A fresh secret (160 bits, the size RFC 4226 recommends for HMAC-SHA1), base32.
pub fn generate_secret() -> String {
    let mut key = [0u8; 20];
    rand::rng().fill_bytes(&mut key);
    base32_encode(&key)
}

/// RFC 4226 HOTP: the `digits`-digit code of `counter`, zero-padded.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let binary = (u32::from(digest[offset] & 0x7f) << 24)
        | (u32::from(digest[offset + 1]) << 16)
        | (u32::from(digest[offset + 2]) << 8)
        | u32::from(digest[offset + 3]);
    let code = binary % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// The time step containing `unix_seconds`.
pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// RFC 6238 TOTP: the `digits`-digit code at `unix_seconds`.
pub fn totp(key: &[u8], unix_seconds: u64, digits: u32) -> String {
    hotp(key, step_at(unix_seconds), digits)
}

/// Checks a six-digit code against the secret at `unix_seconds`, allowing [`DRIFT_STEPS`] either way. Returns the
/// step that matched, so the caller can refuse a code used before (a step at or below the last accepted one).
pub fn verify(secret_base32: &str, code: &str, unix_seconds: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key = base32_decode(secret_base32)?;
    let now = step_at(unix_seconds);
    (now.saturating_sub(DRIFT_STEPS)..=now + DRIFT_STEPS)
        .find(|step| constant_time_eq(hotp(&key, *step, DIGITS).as_bytes(), code.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The provisioning URI authenticator apps read (Google Authenticator's `otpauth://` format).
pub fn provisioning_uri(username: &str, secret_base32: &str) -> String {
    format!(
        "otpauth://totp/{ISSUER}:{username}?secret={secret_base32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared secret of RFC 6238 appendix B (SHA-1): the ASCII string "12345678901234567890".
    const RFC_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        for (time, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp(RFC_KEY, time, 8), expected, "T = {time}");
            // Six digits are the last six of the eight (the same truncated value, modulo 10^6).
            assert_eq!(totp(RFC_KEY, time, 6), &expected[2..], "T = {time}");
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(RFC_KEY, counter as u64, 6), *code);
        }
    }

    #[test]
    fn base32_round_trips_and_matches_rfc4648() {
        // RFC 4648 section 10 test vectors (without padding).
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(
            base32_decode("mzxw 6ytb oi======").unwrap(),
            b"foobar".to_vec()
        );
        assert!(base32_decode("MZXW1").is_none(), "1 is not base32");
        let secret = generate_secret();
        assert_eq!(secret.len(), 32);
        assert_eq!(base32_decode(&secret).unwrap().len(), 20);
    }

    #[test]
    fn verification_allows_one_step_of_drift_and_reports_the_step() {
        let secret = base32_encode(RFC_KEY);
        // At T = 59 the current step is 1; its code is valid, and so are those of steps 0 and 2.
        assert_eq!(verify(&secret, "287082", 59), Some(1));
        assert_eq!(verify(&secret, "755224", 59), Some(0));
        assert_eq!(verify(&secret, "359152", 59), Some(2));
        assert_eq!(verify(&secret, "969429", 59), None, "two steps ahead");
        assert_eq!(verify(&secret, "28708", 59), None);
        assert_eq!(verify(&secret, "28708x", 59), None);
        assert_eq!(verify(&secret, " 287082 ", 59), Some(1));
    }

    #[test]
    fn provisioning_uri_names_issuer_account_and_parameters() {
        assert_eq!(
            provisioning_uri("li.lei", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/campus_trade:li.lei?secret=JBSWY3DPEHPK3PXP&issuer=campus_trade&algorithm=SHA1&digits=6&period=30"
        );
    }
}
