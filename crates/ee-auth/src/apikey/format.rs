//! The key format `<prefix>_<lookup id>_<secret>`: generation from the OS
//! CSPRNG, parsing with bounded work, and the stored hash.

use crate::AuthError;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Characters of the lookup id and the secret: base62, so a key is one "word"
/// (a double click selects it whole) and needs no escaping anywhere.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of the lookup id: 12 base62 characters (71 bits), so two keys of one
/// store practically never draw the same id (a collision is retried anyway).
pub(crate) const ID_LEN: usize = 12;

/// Length of the secret: 43 base62 characters carry 43 × log2(62) ≈ 256.03
/// bits, drawn uniformly (rejection sampling), so the secret has ≥ 256 bits.
pub(crate) const SECRET_LEN: usize = 43;

/// The longest prefix accepted by the configuration.
pub(crate) const MAX_PREFIX_LEN: usize = 32;

/// The generic answer to every key that does not verify: unknown id, wrong
/// secret, revoked, expired, malformed.
pub(crate) fn invalid_key() -> AuthError {
    AuthError::invalid_token("invalid API key")
}

/// The SHA-256 of a key's secret: what a store keeps.
///
/// A plain (unsalted, fast) hash is right here, unlike for passwords: the
/// secret is 256 random bits from the OS CSPRNG, so there is no dictionary to
/// try and a brute force of 2^256 candidates is out of reach however fast the
/// hash is; salting or stretching (Argon2, bcrypt) would only cost every
/// request time. A leaked table of hashes therefore lets nobody sign in.
pub(crate) type KeyHash = [u8; 32];

/// Hashes a secret.
pub(crate) fn hash_secret(secret: &str) -> KeyHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// The hash an unknown id is compared against, so a miss does the same
/// hashing and comparison as a hit. No secret hashes to it knowingly: it is
/// the SHA-256 of a string that is not base62.
pub(crate) fn dummy_hash() -> &'static KeyHash {
    static DUMMY: std::sync::LazyLock<KeyHash> =
        std::sync::LazyLock::new(|| hash_secret("ee-auth: no key has this secret!"));
    &DUMMY
}

/// A presented key split into its parts (borrowed from the input).
#[derive(Clone, Copy)]
pub(crate) struct ParsedKey<'a> {
    pub(crate) id: &'a str,
    pub(crate) secret: &'a str,
}

/// The configured prefix and what follows from it.
#[derive(Debug, Clone)]
pub(crate) struct KeyFormat {
    /// `<prefix>_`, what [`recognizes`](crate::ApiKeyVerifier::recognizes) looks for.
    lead: Box<str>,
}

impl KeyFormat {
    /// Checks and takes a prefix: 1 to 32 ASCII letters, digits and `_`,
    /// starting with a letter and not ending with `_` (`eek`, `sk_live`).
    pub(crate) fn new(prefix: &str) -> Result<Self, AuthError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && prefix.as_bytes()[0].is_ascii_alphabetic()
            && !prefix.ends_with('_');
        if !ok {
            return Err(AuthError::Config(format!(
                "api key prefix `{}` is not valid: use 1 to {MAX_PREFIX_LEN} ASCII letters, digits \
                 and `_`, starting with a letter and not ending with `_` (e.g. `eek`, `sk_live`)",
                prefix.escape_debug()
            )));
        }
        Ok(Self {
            lead: format!("{prefix}_").into(),
        })
    }

    /// The prefix, without the `_` that follows it.
    pub(crate) fn prefix(&self) -> &str {
        &self.lead[..self.lead.len() - 1]
    }

    /// Whether `credential` starts with `<prefix>_`.
    pub(crate) fn recognizes(&self, credential: &str) -> bool {
        credential.starts_with(&*self.lead)
    }

    /// The exact length of every key of this format.
    pub(crate) fn key_len(&self) -> usize {
        self.lead.len() + ID_LEN + 1 + SECRET_LEN
    }

    /// Splits `key` into id and secret, or refuses it. The length is checked
    /// first, so an oversized input costs one comparison; after that at most
    /// `key_len` bytes are looked at once.
    pub(crate) fn parse<'a>(&self, key: &'a str) -> Option<ParsedKey<'a>> {
        if key.len() != self.key_len() {
            return None;
        }
        let rest = key.strip_prefix(&*self.lead)?;
        let bytes = rest.as_bytes();
        // All ASCII from here (checked below), so slicing is on char boundaries.
        if bytes[ID_LEN] != b'_' {
            return None;
        }
        let (id, secret) = (&bytes[..ID_LEN], &bytes[ID_LEN + 1..]);
        if !id.iter().chain(secret).all(u8::is_ascii_alphanumeric) {
            return None;
        }
        Some(ParsedKey {
            id: &rest[..ID_LEN],
            secret: &rest[ID_LEN + 1..],
        })
    }

    /// A new key: `(lookup id, full key)`, both from the OS CSPRNG.
    pub(crate) fn generate(&self) -> Result<GeneratedKey, AuthError> {
        let chars = random_base62(ID_LEN + SECRET_LEN)?;
        let (id, secret) = chars.split_at(ID_LEN);
        let mut key = String::with_capacity(self.key_len());
        key.push_str(&self.lead);
        key.push_str(id);
        key.push('_');
        key.push_str(secret);
        Ok(GeneratedKey {
            id: id.to_owned(),
            hash: hash_secret(secret),
            key,
        })
    }
}

/// A freshly generated key.
pub(crate) struct GeneratedKey {
    pub(crate) id: String,
    pub(crate) hash: KeyHash,
    /// The whole key, the one time it exists in plain text.
    pub(crate) key: String,
}

/// `n` base62 characters drawn uniformly from the OS CSPRNG: bytes below 248
/// (4 × 62) are kept, modulo 62; the others are drawn again.
fn random_base62(n: usize) -> Result<String, AuthError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        OsRng
            .try_fill_bytes(&mut buf)
            .map_err(|e| AuthError::unavailable("operating system random number generator", e))?;
        for &b in &buf {
            if b < 248 && out.len() < n {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Lower-case hex of a hash (how the Redis and SQL stores keep it).
#[cfg_attr(
    not(any(feature = "redis", feature = "postgres", feature = "sqlite")),
    allow(dead_code)
)]
pub(crate) fn to_hex(hash: &KeyHash) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in hash {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// A hash back from hex; `None` when it is not 64 hex digits.
#[cfg_attr(
    not(any(feature = "redis", feature = "postgres", feature = "sqlite")),
    allow(dead_code)
)]
pub(crate) fn from_hex(s: &str) -> Option<KeyHash> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let format = KeyFormat::new("sk_live").unwrap();
        let key = format.generate().unwrap();
        assert_eq!(key.key.len(), format.key_len());
        assert!(format.recognizes(&key.key));
        let parsed = format.parse(&key.key).unwrap();
        assert_eq!(parsed.id, key.id);
        assert_eq!(hash_secret(parsed.secret), key.hash);
        assert_ne!(format.generate().unwrap().key, key.key);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let format = KeyFormat::new("eek").unwrap();
        let good = format.generate().unwrap().key;
        let mut cases = vec![
            String::new(),
            "eek_".into(),
            good[..good.len() - 1].into(),
            format!("{good}x"),
            good.replacen("eek_", "eex_", 1),
            good.replacen('_', "-", 2),
        ];
        // A non-ASCII character of the same byte length.
        let mut non_ascii = good.clone();
        non_ascii.replace_range(good.len() - 2.., "é");
        cases.push(non_ascii);
        // The separator moved.
        let mut moved = good.clone().into_bytes();
        moved.swap(4 + ID_LEN, 5 + ID_LEN);
        cases.push(String::from_utf8(moved).unwrap());
        for case in cases {
            assert!(format.parse(&case).is_none(), "{case:?}");
        }
    }

    #[test]
    fn prefixes_are_checked() {
        for bad in ["", "_x", "x_", "ék", "a-b", &"a".repeat(33)] {
            assert!(KeyFormat::new(bad).is_err(), "{bad}");
        }
        assert_eq!(KeyFormat::new("sk_live").unwrap().prefix(), "sk_live");
    }

    #[test]
    fn hex_round_trips() {
        let h = hash_secret("x");
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
