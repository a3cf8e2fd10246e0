//! Verification keys: each knows its one algorithm, from a PEM file, a JWK or
//! an HMAC secret; a [`KeySet`] finds a token's key by `kid`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ee_core::Secret;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use crate::AuthError;

/// A public key (or HMAC secret) that verifies tokens of exactly one
/// algorithm: a token whose header names another algorithm is refused
/// before any cryptography runs, which closes RS/HS confusion.
///
/// `Debug` shows the `kid` and the algorithm, never the key.
///
/// ```
/// use ee_auth::{Algorithm, VerifyingKey};
///
/// let jwks = r#"{ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "k1",
///                 "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }] }"#;
/// let keys = VerifyingKey::from_jwk_set(jwks).unwrap();
/// assert_eq!(keys[0].kid(), Some("k1"));
/// assert_eq!(keys[0].algorithm(), Algorithm::EdDSA); // inferred from `crv`
/// ```
#[derive(Clone)]
pub struct VerifyingKey {
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn bad_key(what: impl fmt::Display) -> AuthError {
    AuthError::Config(format!("invalid verification key: {what}"))
}

impl VerifyingKey {
    /// A public key in PEM form (`-----BEGIN PUBLIC KEY-----`, or
    /// `BEGIN RSA PUBLIC KEY`) for `alg`: RS*/PS* take an RSA key, ES256/ES384
    /// an EC key, EdDSA an Ed25519 key.
    pub fn from_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, AuthError> {
        let key = match alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(bad_key(format!(
                    "{alg:?} takes a secret: use VerifyingKey::hmac"
                )));
            }
        }
        .map_err(|e| bad_key(format!("not a {alg:?} public key in PEM form ({e})")))?;
        Ok(Self {
            kid: None,
            alg,
            key,
        })
    }

    /// An HMAC secret for `alg` (HS256, HS384 or HS512), at least 32 bytes.
    /// The verifier accepts it only after
    /// [`JwtVerifierBuilder::allow_hmac`](crate::JwtVerifierBuilder::allow_hmac).
    pub fn hmac(alg: Algorithm, secret: &Secret<Vec<u8>>) -> Result<Self, AuthError> {
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(bad_key(format!("{alg:?} is not an HMAC algorithm")));
        }
        if secret.expose().len() < 32 {
            return Err(bad_key("an HMAC secret must be at least 32 bytes"));
        }
        let key = DecodingKey::from_secret(secret.expose()).map_err(bad_key)?;
        Ok(Self {
            kid: None,
            alg,
            key,
        })
    }

    /// Every key of a JWK set (`{"keys": [...]}`), each with the algorithm of
    /// its `alg`, or else inferred: RS256 for `RSA`, ES256/ES384 for `EC`
    /// P-256/P-384, EdDSA for `OKP` Ed25519, HS256 for `oct`. Encryption keys
    /// (`use: enc`) are left out; any other key that cannot verify tokens is an
    /// error (a fetched JWKS skips those instead, see [`JwksSource`](crate::JwksSource)).
    pub fn from_jwk_set(json: &str) -> Result<Vec<Self>, AuthError> {
        let mut keys = Vec::new();
        for (i, jwk) in jwk_values(json.as_bytes())?.into_iter().enumerate() {
            match Self::from_jwk_value(jwk) {
                Ok(Some(key)) => keys.push(key),
                Ok(None) => {}
                Err(why) => return Err(bad_key(format!("JWK #{i}: {why}"))),
            }
        }
        Ok(keys)
    }

    /// Names the key: tokens select it by their header's `kid`.
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// One JWK: the key, `None` for a key that is not for signatures, or why
    /// it cannot be used.
    pub(crate) fn from_jwk_value(value: Value) -> Result<Option<Self>, String> {
        let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK ({e})"))?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Ok(None);
        }
        let alg = jwk_algorithm(&jwk)?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key ({e})"))?;
        Ok(Some(Self {
            kid: jwk.common.key_id.map(Arc::from),
            alg,
            key,
        }))
    }
}

/// The JWKs of a JWK set document, unparsed.
pub(crate) fn jwk_values(json: &[u8]) -> Result<Vec<Value>, AuthError> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<Value>,
    }
    serde_json::from_slice::<Doc>(json)
        .map(|doc| doc.keys)
        .map_err(|e| bad_key(format!("not a JWK set ({e})")))
}

/// The algorithm of a JWK: its `alg` (checked against its key type and
/// curve), or inferred from them.
fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    let declared = match &jwk.common.key_algorithm {
        Some(a) => Some(
            Algorithm::from_str(&a.to_string())
                .map_err(|_| format!("`alg` {a} is not a signature algorithm"))?,
        ),
        None => None,
    };
    let (family, inferred) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (AlgorithmFamily::Ec, Algorithm::ES256),
            EllipticCurve::P384 => (AlgorithmFamily::Ec, Algorithm::ES384),
            ref c => return Err(format!("curve {c:?} is not supported for EC keys")),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (AlgorithmFamily::Ed, Algorithm::EdDSA),
            ref c => return Err(format!("curve {c:?} is not supported for OKP keys")),
        },
        AlgorithmParameters::OctetKey(_) => (AlgorithmFamily::Hmac, Algorithm::HS256),
        _ => return Err("unsupported key type".into()),
    };
    match declared {
        None => Ok(inferred),
        // An EC key's curve fixes its algorithm; an RSA or oct key takes any of its family.
        Some(alg) if family == AlgorithmFamily::Ec && alg != inferred => Err(format!(
            "`alg` {alg:?} does not match the key's curve ({inferred:?})"
        )),
        Some(alg) if alg.family() != family => Err(format!(
            "`alg` {alg:?} does not match the key type ({family:?})"
        )),
        Some(alg) => Ok(alg),
    }
}

/// What a [`KeySet`] found for a token.
pub(crate) enum Lookup<'a> {
    /// The key.
    Found(&'a Arc<VerifyingKey>),
    /// No key with the token's `kid` (a refresh may bring it).
    UnknownKid,
    /// The token names no `kid` and no single key of its algorithm exists.
    Ambiguous,
}

/// Keys by `kid`, plus every key (for tokens without a `kid`).
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<Arc<str>, Arc<VerifyingKey>, foldhash::fast::RandomState>,
    all: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// A set of `keys`; the last of two keys with the same `kid` wins.
    pub(crate) fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut set = KeySet::default();
        for key in keys {
            let key = Arc::new(key);
            if let Some(kid) = &key.kid {
                set.by_kid.insert(kid.clone(), key.clone());
            }
            set.all.push(key);
        }
        set
    }

    #[cfg_attr(not(feature = "jwks"), allow(dead_code))] // used by the JWKS refresh
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<VerifyingKey>> {
        self.all.iter()
    }

    /// The key of a token with header `kid` and `alg`: by `kid` when it has
    /// one, else the only key of its algorithm.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(key) => Lookup::Found(key),
                None => Lookup::UnknownKid,
            },
            None => {
                let mut of_alg = self.all.iter().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(key), None) => Lookup::Found(key),
                    _ => Lookup::Ambiguous,
                }
            }
        }
    }
}
