//! AEAD_AES_256_GCM, the cipher of WeChat Pay notification resources (and of downloaded platform certificates):
//! key = the 32-byte APIv3 key, nonce = the resource's 12-character `nonce`, associated data = its
//! `associated_data`, and the Base64 `ciphertext` is the encrypted bytes followed by the 16-byte tag.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::Engine;

/// The merchant's APIv3 key: exactly 32 bytes (WeChat's merchant platform only accepts 32 ASCII characters).
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(***)")
    }
}

impl ApiV3Key {
    /// Checks the length: WeChat's keys are 32 bytes; anything else would fail every notification.
    pub fn new(key: &str) -> Result<Self, String> {
        let bytes: [u8; 32] = key.as_bytes().try_into().map_err(|_| {
            format!(
                "the APIv3 key must be exactly 32 bytes (the 32 characters set in the merchant platform under \
                 API安全 → APIv3密钥); this one has {} bytes",
                key.len()
            )
        })?;
        Ok(Self(bytes))
    }

    /// A random key of 32 letters and digits (the sandbox's, and for tests).
    pub fn random() -> Self {
        let text = super::sign::nonce();
        Self::new(&text).unwrap_or(Self([b'0'; 32]))
    }

    /// The key as text (for the sandbox's key file only).
    pub fn expose(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// Decrypts a resource. Fails (never panics) on bad Base64, a nonce that is not 12 bytes, a wrong key or any
    /// tampering with the ciphertext, nonce or associated data.
    pub fn decrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_b64: &str,
    ) -> Result<Vec<u8>, DecryptError> {
        let cipher = Aes256Gcm::new_from_slice(&self.0).map_err(|_| DecryptError)?;
        gcm_decrypt(&cipher, nonce, associated_data, ciphertext_b64)
    }

    /// Encrypts a resource the way WeChat does (the sandbox's side); returns the Base64 ciphertext‖tag.
    pub fn encrypt(&self, nonce: &str, associated_data: &str, plaintext: &[u8]) -> String {
        let Ok(cipher) = Aes256Gcm::new_from_slice(&self.0) else {
            return String::new();
        };
        let Ok(nonce) = <&Nonce<_>>::try_from(nonce.as_bytes()) else {
            return String::new();
        };
        let sealed = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: associated_data.as_bytes(),
                },
            )
            .unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }
}

/// The resource did not decrypt: wrong key, tampered data, or malformed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptError;

/// GCM decryption with any AES key size (the 16-byte keys of some official test vectors go through here).
pub(crate) fn gcm_decrypt<C>(
    cipher: &C,
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, DecryptError>
where
    C: Aead<NonceSize = aes_gcm::aead::consts::U12>,
{
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(ciphertext_b64.trim())
        .map_err(|_| DecryptError)?;
    let nonce = <&Nonce<_>>::try_from(nonce.as_bytes()).map_err(|_| DecryptError)?;
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &sealed,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| DecryptError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tv4_decrypts_and_encrypts() {
        let v = super::super::sign::tests::vectors();
        let tv = &v["tv4_aes256_gcm"];
        let key = ApiV3Key::new(tv["key"].as_str().unwrap()).unwrap();
        let plain = key
            .decrypt(
                tv["nonce"].as_str().unwrap(),
                tv["associated_data"].as_str().unwrap(),
                tv["ciphertext"].as_str().unwrap(),
            )
            .unwrap();
        assert_eq!(plain, tv["plaintext"].as_str().unwrap().as_bytes());
        assert_eq!(
            key.encrypt(
                tv["nonce"].as_str().unwrap(),
                tv["associated_data"].as_str().unwrap(),
                tv["plaintext"].as_str().unwrap().as_bytes()
            ),
            tv["ciphertext"].as_str().unwrap()
        );
    }

    #[test]
    fn tv3_aes128_through_the_generic_path() {
        let v = super::super::sign::tests::vectors();
        let tv = &v["tv3_aes128_gcm"];
        let cipher =
            aes_gcm::Aes128Gcm::new_from_slice(tv["key"].as_str().unwrap().as_bytes()).unwrap();
        let plain = gcm_decrypt(
            &cipher,
            tv["nonce"].as_str().unwrap(),
            tv["associated_data"].as_str().unwrap(),
            tv["ciphertext"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(plain, b"Hello World");
    }

    #[test]
    fn round_trip_and_every_kind_of_tampering_fails() {
        let key = ApiV3Key::random();
        let sealed = key.encrypt("0123456789ab", "transaction", b"{\"a\":1}");
        assert_eq!(
            key.decrypt("0123456789ab", "transaction", &sealed).unwrap(),
            b"{\"a\":1}"
        );
        let other = ApiV3Key::random();
        assert_eq!(
            other.decrypt("0123456789ab", "transaction", &sealed),
            Err(DecryptError)
        );
        assert!(key.decrypt("0123456789ac", "transaction", &sealed).is_err());
        assert!(key.decrypt("0123456789ab", "refund", &sealed).is_err());
        assert!(key.decrypt("short", "transaction", &sealed).is_err());
        assert!(key.decrypt("0123456789ab", "transaction", "%%%").is_err());
        assert!(key.decrypt("0123456789ab", "transaction", "").is_err());
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        bytes[0] ^= 1;
        let flipped = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(
            key.decrypt("0123456789ab", "transaction", &flipped)
                .is_err()
        );
    }

    #[test]
    fn keys_must_be_32_bytes_and_do_not_print() {
        assert!(ApiV3Key::new("short").unwrap_err().contains("32 bytes"));
        assert!(ApiV3Key::new(&"x".repeat(33)).is_err());
        let key = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        assert!(!format!("{key:?}").contains("a7cde1"));
    }
}
