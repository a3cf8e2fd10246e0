//! The request's credentials: `Authorization: Bearer <token>` or `X-Api-Key`.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::AuthError;

/// The API key header.
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// A credential as sent.
pub(crate) enum Credential<'a> {
    /// `Authorization: Bearer <credential>`: a JWT or an API key.
    Bearer(&'a str),
    /// `X-Api-Key: <key>`.
    ApiKey(&'a str),
}

fn invalid(why: &'static str) -> AuthError {
    AuthError::InvalidRequest(why.into())
}

/// The only value of header `name`, if any; two are a malformed request.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    twice: &'static str,
) -> Result<Option<&'a HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(invalid(twice)),
    }
}

/// The credential of a request: `None` when it sends none; an error for
/// two `Authorization` (or `X-Api-Key`) headers, both at once, a value that
/// is not UTF-8 or an empty credential (400 `invalid_request`), or
/// a scheme other than Bearer (401 with a `Bearer` challenge).
pub(crate) fn extract(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthError> {
    let authorization = single(headers, &AUTHORIZATION, "send one Authorization header")?;
    let api_key = single(headers, &X_API_KEY, "send one X-Api-Key header")?;
    match (authorization, api_key) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(invalid(
            "send one credential: Authorization or X-Api-Key, not both",
        )),
        (Some(value), None) => bearer(value).map(|c| Some(Credential::Bearer(c))),
        (None, Some(value)) => {
            let key = text(value, "the X-Api-Key header is not UTF-8")?;
            if key.is_empty() {
                return Err(invalid("the X-Api-Key header is empty"));
            }
            Ok(Some(Credential::ApiKey(key)))
        }
    }
}

/// The header as text. `HeaderValue` already excludes control characters
/// but tab; a value that is not UTF-8 is malformed, and any other character
/// a token cannot hold is the verifier's to refuse (as a malformed token).
fn text<'a>(value: &'a HeaderValue, why: &'static str) -> Result<&'a str, AuthError> {
    std::str::from_utf8(value.as_bytes())
        .map(str::trim)
        .map_err(|_| invalid(why))
}

/// The credential of `Bearer <credential>` (the scheme in any case).
fn bearer(value: &HeaderValue) -> Result<&str, AuthError> {
    let value = text(value, "the Authorization header is not UTF-8")?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // RFC 6750 §3.1: another scheme is as good as no credential here.
        return Err(AuthError::Missing);
    }
    let credential = rest.trim_start_matches(' ');
    if credential.is_empty() {
        return Err(invalid("the Bearer credential is empty"));
    }
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn kind(map: &HeaderMap) -> Result<Option<(bool, String)>, u16> {
        extract(map)
            .map(|c| {
                c.map(|c| match c {
                    Credential::Bearer(t) => (true, t.to_owned()),
                    Credential::ApiKey(k) => (false, k.to_owned()),
                })
            })
            .map_err(|e| e.status().as_u16())
    }

    #[test]
    fn reads_each_form() {
        let a = &AUTHORIZATION;
        let k = &X_API_KEY;
        assert_eq!(kind(&headers(&[])), Ok(None));
        assert_eq!(
            kind(&headers(&[(a, b"bEaReR  abc.def")])),
            Ok(Some((true, "abc.def".into())))
        );
        assert_eq!(
            kind(&headers(&[(k, b"ee_live_1")])),
            Ok(Some((false, "ee_live_1".into())))
        );
        assert_eq!(kind(&headers(&[(a, b"Basic dXNlcg==")])), Err(401));
        assert_eq!(kind(&headers(&[(a, b"Bearer")])), Err(400));
        // A space inside is the token's problem (the verifier refuses it).
        assert_eq!(
            kind(&headers(&[(a, b"Bearer a b")])),
            Ok(Some((true, "a b".into())))
        );
        assert_eq!(
            kind(&headers(&[(a, b"Bearer x"), (a, b"Bearer y")])),
            Err(400)
        );
        assert_eq!(kind(&headers(&[(k, b"x"), (k, b"y")])), Err(400));
        assert_eq!(kind(&headers(&[(a, b"Bearer x"), (k, b"y")])), Err(400));
        assert_eq!(kind(&headers(&[(a, b"Bearer \xff")])), Err(400));
        assert_eq!(kind(&headers(&[(k, b"")])), Err(400));
    }
}
