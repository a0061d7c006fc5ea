//! Small helpers with no better home: random tokens, hashing, the clock.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the operating system's CSPRNG, URL-safe base64 without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Lower-case hex SHA-256 of the input.
pub fn sha256_hex(input: &[u8]) -> String {
    hex::encode(Sha256::digest(input))
}

/// The current time, UTC, truncated to whole microseconds so it round-trips through every database the same way.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// An opaque keyset cursor: `tag` names the query and sort it belongs to, `key` the sort key of the last item
/// (in the caller's own text form), `id` the last item's id.
pub fn encode_cursor(tag: &str, key: &str, id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{tag}:{key}:{id}"))
}

/// The `(key, id)` of a cursor made by [`encode_cursor`] with the same `tag`; 400 `invalid_cursor` otherwise.
pub fn decode_cursor(tag: &str, cursor: &str) -> crate::error::AppResult<(String, i64)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid_cursor())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid_cursor())?;
    let mut parts = raw.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(key), Some(id)) if t == tag => {
            Ok((key.to_string(), id.parse().map_err(|_| invalid_cursor())?))
        }
        _ => Err(invalid_cursor()),
    }
}

/// The error of a cursor that does not belong to the query.
pub fn invalid_cursor() -> crate::error::AppError {
    crate::error::AppError::bad_request(
        "invalid_cursor",
        "the cursor is not valid for this query; start from the first page",
    )
}
