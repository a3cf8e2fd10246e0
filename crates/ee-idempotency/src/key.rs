//! The `Idempotency-Key` request header and the `Idempotent-Replayed` response header.

use http::{HeaderMap, HeaderName};

use crate::error::IdempotencyError;

/// `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `Idempotent-Replayed: true` marks a response served from the store.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Reads the key: an RFC 8941 sf-string as the draft specifies
/// (`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`), or, since many
/// clients send it unquoted, a bare run of visible ASCII without quotes or
/// backslashes. `Ok(None)` when absent.
pub fn parse_key(headers: &HeaderMap, max_len: usize) -> Result<Option<String>, IdempotencyError> {
    use IdempotencyError::MalformedKey;
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(MalformedKey("sent more than once"));
    }
    let raw = value.as_bytes();
    let key = match raw.split_first() {
        Some((b'"', rest)) => {
            let mut key = Vec::with_capacity(rest.len());
            let mut bytes = rest.iter();
            loop {
                match bytes.next() {
                    None => return Err(MalformedKey("unterminated string")),
                    Some(b'"') => break,
                    Some(b'\\') => match bytes.next() {
                        Some(&c @ (b'"' | b'\\')) => key.push(c),
                        _ => return Err(MalformedKey("invalid escape in string")),
                    },
                    Some(&c) if (0x20..=0x7e).contains(&c) => key.push(c),
                    Some(_) => return Err(MalformedKey("not printable ASCII")),
                }
            }
            if bytes.next().is_some() {
                return Err(MalformedKey("characters after the closing quote"));
            }
            key
        }
        _ => {
            if !raw
                .iter()
                .all(|&c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
            {
                return Err(MalformedKey("not visible ASCII"));
            }
            raw.to_vec()
        }
    };
    if key.is_empty() {
        return Err(MalformedKey("empty"));
    }
    if key.len() > max_len {
        return Err(MalformedKey("longer than the longest key accepted"));
    }
    // Only ASCII bytes were accepted above.
    String::from_utf8(key)
        .map(Some)
        .map_err(|_| MalformedKey("not ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(value: &[u8]) -> Result<Option<String>, IdempotencyError> {
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_bytes(value).unwrap());
        parse_key(&headers, 16)
    }

    #[test]
    fn keys_parse_as_sf_strings_or_bare_tokens() {
        assert_eq!(parse(br#""abc-123""#).unwrap().unwrap(), "abc-123");
        assert_eq!(parse(br#""a \"b\" \\c""#).unwrap().unwrap(), r#"a "b" \c"#);
        assert_eq!(parse(b"abc-123").unwrap().unwrap(), "abc-123");
        assert_eq!(parse_key(&HeaderMap::new(), 16).unwrap(), None);
        for bad in [
            &b"\"\""[..],
            b"\"abc",
            b"\"abc\"x",
            b"\"a\\nb\"",
            b"\"caf\xc3\xa9\"",
            b"caf\xc3\xa9",
            b"a b",
            b"0123456789abcdefX",
            b"\"0123456789abcdefX\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
