//! Connection URLs without their passwords, for `Debug` output and logs.

use std::borrow::Cow;

/// `url` with the password of its userinfo replaced by `***`
/// (`redis://app:s3cret@cache:6379` → `redis://app:***@cache:6379`); a URL
/// without one is returned as it is.
///
/// ```
/// use ee_core::redact::url;
/// assert_eq!(url("postgres://app:s3cret@db/shop"), "postgres://app:***@db/shop");
/// assert_eq!(url("redis://:s3cret@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// assert_eq!(url("sqlite://data/app.db"), "sqlite://data/app.db");
/// ```
pub fn url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let rest = &url[scheme_end + 3..];
    // The authority ends at the first `/`, `?` or `#`; its userinfo at the
    // last `@` in it (a password may hold `@` only percent-encoded, but be
    // lenient).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(url);
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return Cow::Borrowed(url); // a user name alone is not secret
    };
    let start = scheme_end + 3 + colon + 1;
    let end = scheme_end + 3 + at;
    Cow::Owned(format!("{}***{}", &url[..start], &url[end..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_survive() {
        for (given, shown) in [
            ("redis://u:p@h:1/2?x=y", "redis://u:***@h:1/2?x=y"),
            ("rediss://:p%40ss@h", "rediss://:***@h"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db?user=u", "postgres://h/db?user=u"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(super::url(given), shown, "{given}");
        }
    }
}
