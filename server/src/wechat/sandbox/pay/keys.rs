//! The sandbox's key material: our merchant's API key (the client signs with it, the sandbox checks), WeChat
//! Pay's public key (`PUB_KEY_ID_…`) and a platform key with a self-signed certificate (certificate mode), and the
//! APIv3 key. RSA-2048 generation takes seconds in a debug build, so the keys are made once per process (every
//! sandbox in a test run shares them) and written to `DATA_DIR/sandbox/wechatpay-keys.json`; a later start with
//! that file uses its keys, so a restart keeps verifying what was signed before it.

use std::{
    path::Path,
    str::FromStr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context;
use rsa::{
    PrivateKey,
    pkcs1v15::SigningKey,
    pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
    sha2::Sha256,
};
use serde::{Deserialize, Serialize};
use x509_cert::{
    builder::{Builder, CertificateBuilder, profile::BuilderProfile},
    der::EncodePem,
    name::Name,
    serial_number::SerialNumber,
    spki::{SubjectPublicKeyInfo, SubjectPublicKeyInfoRef},
    time::Validity,
};

use crate::wechat::pay::{crypto::ApiV3Key, sign, verify};

/// The sandbox merchant's id (shaped like a real one).
pub const SANDBOX_MCHID: &str = "1900000109";

/// Every key the sandbox and its client use.
pub struct SandboxKeys {
    pub merchant_key: PrivateKey,
    /// Serial of the (imaginary) merchant API certificate: 40 upper-case hex digits.
    pub merchant_serial: String,
    /// WeChat Pay's public-key-mode key and its id.
    pub wechatpay_key: PrivateKey,
    pub public_key_id: String,
    pub wechatpay_public_pem: String,
    /// The platform certificate's key, the certificate (PEM) and its serial (upper-case hex).
    pub platform_key: PrivateKey,
    pub platform_cert_pem: String,
    pub platform_serial: String,
    pub apiv3: ApiV3Key,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    merchant_key_pem: String,
    merchant_serial: String,
    wechatpay_key_pem: String,
    public_key_id: String,
    platform_key_pem: String,
    platform_cert_pem: String,
    apiv3_key: String,
}

static PROCESS_KEYS: OnceLock<Result<Arc<SandboxKeys>, String>> = OnceLock::new();

const FILE: &str = "wechatpay-keys.json";

impl SandboxKeys {
    /// The keys stored in `dir`, or this process's keys (generated on first use), then stored in `dir`.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Arc<Self>> {
        let path = dir.join(FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: KeyFile = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            return Self::from_file(file)
                .map(Arc::new)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
        let keys = PROCESS_KEYS
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let keys = Self::generate().map(Arc::new);
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "generated the WeChat Pay sandbox's RSA keys"
                );
                keys
            })
            .clone()
            .map_err(|e| anyhow::anyhow!(e))?;
        let file = keys.to_file()?;
        super::store::write_atomically(&path, serde_json::to_string_pretty(&file)?.as_bytes())?;
        Ok(keys)
    }

    fn generate() -> Result<Self, String> {
        let merchant_key = sign::generate_key()?;
        let wechatpay_key = sign::generate_key()?;
        let platform_key = sign::generate_key()?;
        let platform_cert_pem = self_signed_certificate(&platform_key)?;
        let mut digits = String::new();
        while digits.len() < 32 {
            digits.push_str(&format!("{:010}", rand::random::<u32>()));
        }
        let file = KeyFile {
            merchant_key_pem: pem_of(&merchant_key)?,
            merchant_serial: hex::encode_upper(rand::random::<[u8; 20]>()),
            wechatpay_key_pem: pem_of(&wechatpay_key)?,
            public_key_id: format!("PUB_KEY_ID_{}", &digits[..32]),
            platform_key_pem: pem_of(&platform_key)?,
            platform_cert_pem,
            apiv3_key: ApiV3Key::random().expose(),
        };
        Self::from_file(file)
    }

    fn from_file(f: KeyFile) -> Result<Self, String> {
        let wechatpay_key = sign::private_key_from_pem(&f.wechatpay_key_pem)?;
        let wechatpay_public_pem = wechatpay_key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let (platform_serial, _, _) = verify::certificate_from_pem(&f.platform_cert_pem)?;
        Ok(Self {
            merchant_key: sign::private_key_from_pem(&f.merchant_key_pem)?,
            merchant_serial: f.merchant_serial,
            wechatpay_key,
            public_key_id: f.public_key_id,
            wechatpay_public_pem,
            platform_key: sign::private_key_from_pem(&f.platform_key_pem)?,
            platform_cert_pem: f.platform_cert_pem,
            platform_serial,
            apiv3: ApiV3Key::new(&f.apiv3_key)?,
        })
    }

    fn to_file(&self) -> anyhow::Result<KeyFile> {
        Ok(KeyFile {
            merchant_key_pem: pem_of(&self.merchant_key).map_err(anyhow::Error::msg)?,
            merchant_serial: self.merchant_serial.clone(),
            wechatpay_key_pem: pem_of(&self.wechatpay_key).map_err(anyhow::Error::msg)?,
            public_key_id: self.public_key_id.clone(),
            platform_key_pem: pem_of(&self.platform_key).map_err(anyhow::Error::msg)?,
            platform_cert_pem: self.platform_cert_pem.clone(),
            apiv3_key: self.apiv3.expose(),
        })
    }
}

fn pem_of(key: &PrivateKey) -> Result<String, String> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| e.to_string())
}

/// A self-signed profile: subject = issuer, no extensions (WeChat's clients only read the key and the serial).
struct SelfSigned(Name);

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }
    fn get_subject(&self) -> Name {
        self.0.clone()
    }
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<x509_cert::ext::Extension>> {
        Ok(Vec::new())
    }
}

/// A five-year self-signed certificate for `key`, with a random 20-byte serial (40 hex digits, like WeChat's).
pub fn self_signed_certificate(key: &PrivateKey) -> Result<String, String> {
    let name = Name::from_str(
        "CN=campus_trade sandbox WeChat Pay platform,OU=Sandbox,O=campus_trade,C=CN",
    )
    .map_err(|e| e.to_string())?;
    let mut serial = rand::random::<[u8; 20]>();
    serial[0] = (serial[0] & 0x7f) | 0x10; // positive, and exactly 40 hex digits
    let serial = SerialNumber::new(&serial).map_err(|e| e.to_string())?;
    let validity =
        Validity::from_now(Duration::from_secs(5 * 365 * 86_400)).map_err(|e| e.to_string())?;
    let spki = SubjectPublicKeyInfo::from_key(&key.to_public_key()).map_err(|e| e.to_string())?;
    let builder = CertificateBuilder::new(SelfSigned(name), serial, validity, spki)
        .map_err(|e| e.to_string())?;
    let signer = SigningKey::<Sha256>::new(key.clone());
    let cert = builder
        .build::<_, rsa::pkcs1v15::Signature>(&signer)
        .map_err(|e| e.to_string())?;
    cert.to_pem(LineEnding::LF).map_err(|e| e.to_string())
}
