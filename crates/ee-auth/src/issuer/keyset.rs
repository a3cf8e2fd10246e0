//! Signing keys: one active signer among published keys, and the JWKS.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use ee_core::Secret;
use serde_json::{Value, json};

use super::config::{KeyConfig, KeyStatus, SigningAlgorithm};
use super::random_token;
use crate::AuthError;

enum Pair {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// One private signing key with its `kid`, algorithm and rotation status.
///
/// `Debug` shows the `kid`, algorithm and status, never key material.
pub struct SigningKey {
    kid: Arc<str>,
    alg: SigningAlgorithm,
    status: KeyStatus,
    pair: Pair,
    jwk: Value,
    /// `base64url({"alg":…,"typ":"JWT","kid":…})`, the first part of every token.
    header: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn key_error(kid: &str, what: impl fmt::Display) -> AuthError {
    AuthError::Config(format!("signing key `{kid}`: {what}"))
}

impl SigningKey {
    /// A fresh random key (`active`), for development and tests: it lives only
    /// as long as the process.
    pub fn generate(kid: impl Into<Arc<str>>, alg: SigningAlgorithm) -> Result<Self, AuthError> {
        let kid = kid.into();
        let pair = match alg {
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate().map(Pair::Ed),
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map(Pair::Ec)
            }
            SigningAlgorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048).map(Pair::Rsa),
        }
        .map_err(|_| key_error(&kid, "key generation failed"))?;
        Self::from_pair(kid, alg, pair)
    }

    /// A key from a PEM: PKCS#8 (`-----BEGIN PRIVATE KEY-----`), or PKCS#1
    /// (`-----BEGIN RSA PRIVATE KEY-----`) for RS256.
    pub fn from_pem(
        kid: impl Into<Arc<str>>,
        alg: SigningAlgorithm,
        pem: &Secret<String>,
    ) -> Result<Self, AuthError> {
        let kid = kid.into();
        let (label, der) = pem_decode(pem.expose())
            .ok_or_else(|| key_error(&kid, "not a PEM (expected `-----BEGIN PRIVATE KEY-----`)"))?;
        let der = Secret::new(der);
        match (alg, label) {
            (_, "PRIVATE KEY") => Self::from_pkcs8_der(kid, alg, &der),
            (SigningAlgorithm::RS256, "RSA PRIVATE KEY") => {
                let pair = RsaKeyPair::from_der(der.expose())
                    .map_err(|e| key_error(&kid, format!("not an RSA key: {e}")))?;
                Self::from_pair(kid, alg, Pair::Rsa(pair))
            }
            (_, other) => Err(key_error(
                &kid,
                format!(
                    "PEM label `{other}`: convert it to PKCS#8 (`openssl pkcs8 -topk8 -nocrypt`)"
                ),
            )),
        }
    }

    /// A key from DER-encoded PKCS#8.
    pub fn from_pkcs8_der(
        kid: impl Into<Arc<str>>,
        alg: SigningAlgorithm,
        der: &Secret<Vec<u8>>,
    ) -> Result<Self, AuthError> {
        let kid = kid.into();
        let der = der.expose();
        let pair = match alg {
            SigningAlgorithm::EdDSA => Ed25519KeyPair::from_pkcs8(der).map(Pair::Ed),
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map(Pair::Ec)
            }
            SigningAlgorithm::RS256 => RsaKeyPair::from_pkcs8(der).map(Pair::Rsa),
        }
        .map_err(|e| key_error(&kid, format!("not a PKCS#8 {} key: {e}", alg.as_str())))?;
        Self::from_pair(kid, alg, pair)
    }

    /// A key from configuration: its PEM inline or read from its file.
    pub fn from_config(cfg: &KeyConfig) -> Result<Self, AuthError> {
        let pem = match (&cfg.private_key_pem, &cfg.private_key_file) {
            (Some(pem), None) => pem.clone(),
            (None, Some(path)) => Secret::new(
                std::fs::read_to_string(path)
                    .map_err(|e| key_error(&cfg.kid, format!("reading {}: {e}", path.display())))?,
            ),
            _ => {
                return Err(key_error(
                    &cfg.kid,
                    "set exactly one of `private_key_pem` and `private_key_file`",
                ));
            }
        };
        Ok(Self::from_pem(cfg.kid.as_str(), cfg.alg, &pem)?.with_status(cfg.status))
    }

    fn from_pair(kid: Arc<str>, alg: SigningAlgorithm, pair: Pair) -> Result<Self, AuthError> {
        if kid.is_empty() || kid.len() > 128 || kid.chars().any(|c| c.is_control()) {
            return Err(key_error(
                &kid,
                "a kid is 1 to 128 characters, no control characters",
            ));
        }
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match &pair {
            Pair::Ed(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(p.public_key().as_ref())})
            }
            Pair::Ec(p) => {
                // Uncompressed point: 0x04 || x || y.
                let point = p.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(key_error(&kid, "unexpected P-256 public key encoding"));
                }
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Pair::Rsa(p) => {
                let parts = RsaPublicKeyComponents::<Vec<u8>>::from(p.public_key());
                json!({"kty": "RSA", "n": b64(&parts.n), "e": b64(&parts.e)})
            }
        };
        jwk["kid"] = Value::from(&*kid);
        jwk["alg"] = Value::from(alg.as_str());
        jwk["use"] = Value::from("sig");
        let header = json!({"alg": alg.as_str(), "typ": "JWT", "kid": &*kid});
        let header = b64(header.to_string().as_bytes());
        Ok(Self {
            kid,
            alg,
            status: KeyStatus::Active,
            pair,
            jwk,
            header,
        })
    }

    /// Sets the rotation status.
    pub fn with_status(mut self, status: KeyStatus) -> Self {
        self.status = status;
        self
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The rotation status.
    pub fn status(&self) -> KeyStatus {
        self.status
    }

    /// The public key as a JWK (`kty`, `kid`, `alg`, `use: sig` and the key).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs `claims` (a JSON object): the compact JWS `header.claims.signature`.
    pub(crate) fn sign_json(&self, claims: &[u8]) -> Result<String, AuthError> {
        let engine = URL_SAFE_NO_PAD;
        let mut token =
            String::with_capacity(self.header.len() + 2 + claims.len() * 4 / 3 + 4 + 350);
        token.push_str(&self.header);
        token.push('.');
        engine.encode_string(claims, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        engine.encode_string(&signature, &mut token);
        Ok(token)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        let failed = |_| AuthError::Config(format!("signing with key `{}` failed", self.kid));
        match &self.pair {
            Pair::Ed(p) => Ok(p.sign(message).as_ref().to_vec()),
            Pair::Ec(p) => p
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            Pair::Rsa(p) => {
                let mut signature = vec![0; p.public_modulus_len()];
                p.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}

/// Decodes a PEM block: its label and DER bytes.
fn pem_decode(pem: &str) -> Option<(&str, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let label_end = start + pem[start..].find("-----")?;
    let label = &pem[start..label_end];
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = body_start + pem[body_start..].find(&end_marker)?;
    let body: String = pem[body_start..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok().map(|der| (label, der))
}

/// The keys an issuer signs with and publishes: exactly one `active` (it
/// signs), any number of `next` and `retired` (published, not signing).
///
/// Cheap to clone. See [`KeyStatus`] for rotation by configuration.
///
/// ```
/// use ee_auth::{SigningAlgorithm, SigningKeys};
///
/// let keys = SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap();
/// let jwks = keys.jwks();
/// assert_eq!(jwks["keys"][0]["kid"], keys.active().kid());
/// assert_eq!(jwks["keys"][0]["use"], "sig");
/// ```
#[derive(Clone)]
pub struct SigningKeys {
    inner: Arc<KeysInner>,
}

struct KeysInner {
    keys: Vec<SigningKey>,
    active: usize,
    jwks: Value,
    jwks_bytes: Bytes,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.inner.keys).finish()
    }
}

impl SigningKeys {
    /// A key set from `keys`: exactly one must be `active`, and `kid`s unique.
    pub fn new(keys: impl IntoIterator<Item = SigningKey>) -> Result<Self, AuthError> {
        let mut keys: Vec<SigningKey> = keys.into_iter().collect();
        // The JWKS lists the signer first, then upcoming keys, then retired ones.
        keys.sort_by_key(|k| match k.status {
            KeyStatus::Active => 0,
            KeyStatus::Next => 1,
            KeyStatus::Retired => 2,
        });
        let active = keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count();
        if active != 1 {
            return Err(AuthError::Config(format!(
                "signing keys: exactly one key must be `active`, found {active}"
            )));
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(key_error(&key.kid, "the kid is used twice"));
            }
        }
        let jwks = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        let jwks_bytes = Bytes::from(jwks.to_string());
        Ok(Self {
            inner: Arc::new(KeysInner {
                keys,
                active: 0,
                jwks,
                jwks_bytes,
            }),
        })
    }

    /// One fresh `active` key with a random `kid`, for development and tests.
    pub fn generate(alg: SigningAlgorithm) -> Result<Self, AuthError> {
        Self::new([SigningKey::generate(random_token(9), alg)?])
    }

    /// The keys of `cfg` (each PEM inline or read from its file).
    pub fn from_config(cfg: &[KeyConfig]) -> Result<Self, AuthError> {
        Self::new(
            cfg.iter()
                .map(SigningKey::from_config)
                .collect::<Result<Vec<_>, _>>()?,
        )
    }

    /// The key that signs.
    pub fn active(&self) -> &SigningKey {
        &self.inner.keys[self.inner.active]
    }

    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.inner.keys.iter().find(|k| &*k.kid == kid)
    }

    /// Every key: active first, then `next`, then `retired`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &SigningKey> {
        self.inner.keys.iter()
    }

    /// The public JWK set (`{"keys": […]}`) to serve at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &Value {
        &self.inner.jwks
    }

    /// [`jwks`](Self::jwks) serialised once, ready for a response body
    /// (`Content-Type: application/jwk-set+json` or `application/json`).
    pub fn jwks_bytes(&self) -> Bytes {
        self.inner.jwks_bytes.clone()
    }
}
