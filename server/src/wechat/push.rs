//! The signature of WeChat's message push (消息推送): what WeChat adds to every request it makes to our push URL,
//! and what the sandbox adds when it plays WeChat.
//!
//! `signature = hex(sha1(a ‖ b ‖ c))` where `a, b, c` are the token (configured on both sides, never sent),
//! `timestamp` and `nonce` sorted lexicographically. Only plaintext mode is covered: safe mode's
//! `msg_signature` and AES envelope are not implemented (see `docs/content-security.md`).

use sha1::{Digest, Sha1};

/// How far a push's `timestamp` may be from our clock, in seconds, before it is refused as stale.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The push signature WeChat computes for `token`, `timestamp` and `nonce`: lower-case hex SHA-1 of the three
/// strings sorted lexicographically (by bytes) and concatenated.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Why a push request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushRejection {
    /// Missing parameters, or a signature that does not match the token.
    BadSignature,
    /// The timestamp is not a number, or is more than [`MAX_CLOCK_SKEW_SECS`] away from `now`.
    StaleTimestamp,
}

/// Checks a push request's `signature`, `timestamp` and `nonce` against `token`, and the timestamp against
/// `now` (unix seconds). The signature comparison takes the same time wherever the strings differ.
pub fn verify(
    token: &str,
    signature_param: Option<&str>,
    timestamp: Option<&str>,
    nonce: Option<&str>,
    now: i64,
) -> Result<(), PushRejection> {
    let (Some(given), Some(timestamp), Some(nonce)) = (signature_param, timestamp, nonce) else {
        return Err(PushRejection::BadSignature);
    };
    let expected = signature(token, timestamp, nonce);
    if !constant_time_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes()) {
        return Err(PushRejection::BadSignature);
    }
    match timestamp.parse::<i64>() {
        Ok(ts) if (now - ts).abs() <= MAX_CLOCK_SKEW_SECS => Ok(()),
        _ => Err(PushRejection::StaleTimestamp),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_known_vectors() {
        // Sorted: "1372623149" < "1409659813" < "AAAAA"; expected value from
        // `printf '%s' 13726231491409659813AAAAA | sha1sum`.
        assert_eq!(
            signature("AAAAA", "1409659813", "1372623149"),
            "aea4bea485da97e0dd0c1fdae5f4c542858bffb9"
        );
        // The URL-verification example of WeChat's message-push guide.
        assert_eq!(
            signature("AAAAA", "1714036504", "1514711492"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
        // The order of the arguments does not matter: they are sorted.
        assert_eq!(
            signature("1372623149", "AAAAA", "1409659813"),
            signature("AAAAA", "1409659813", "1372623149")
        );
    }

    #[test]
    fn verification_checks_signature_and_clock() {
        let sig = signature("tok", "1000", "42");
        assert_eq!(
            verify("tok", Some(&sig), Some("1000"), Some("42"), 1000),
            Ok(())
        );
        assert_eq!(
            verify(
                "tok",
                Some(&sig.to_uppercase()),
                Some("1000"),
                Some("42"),
                1200
            ),
            Ok(())
        );
        assert_eq!(
            verify("other", Some(&sig), Some("1000"), Some("42"), 1000),
            Err(PushRejection::BadSignature)
        );
        assert_eq!(
            verify("tok", Some(&sig), Some("1000"), Some("43"), 1000),
            Err(PushRejection::BadSignature)
        );
        assert_eq!(
            verify("tok", None, Some("1000"), Some("42"), 1000),
            Err(PushRejection::BadSignature)
        );
        assert_eq!(
            verify("tok", Some(&sig), Some("1000"), Some("42"), 1000 + 301),
            Err(PushRejection::StaleTimestamp)
        );
        assert_eq!(
            verify("tok", Some(&sig), Some("1000"), Some("42"), 1000 - 301),
            Err(PushRejection::StaleTimestamp)
        );
        let odd = signature("tok", "soon", "42");
        assert_eq!(
            verify("tok", Some(&odd), Some("soon"), Some("42"), 1000),
            Err(PushRejection::StaleTimestamp)
        );
    }
}
