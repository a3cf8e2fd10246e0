//! Connection URLs without their passwords, for `Debug` output and logs.

use std::borrow::Cow;

/// `url` with the password of its userinfo, and the value of a `password`
/// query parameter (PostgreSQL URLs take one), replaced by `***`
/// (`redis://app:s3cret@cache:6379` → `redis://app:***@cache:6379`); a URL
/// without either is returned as it is.
///
/// ```
/// use ee_core::redact_url as url;
/// assert_eq!(url("postgres://app:s3cret@db/shop"), "postgres://app:***@db/shop");
/// assert_eq!(url("redis://:s3cret@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// assert_eq!(url("sqlite://data/app.db"), "sqlite://data/app.db");
/// assert_eq!(url("postgres://db/shop?user=app&password=s3cret"), "postgres://db/shop?user=app&password=***");
/// ```
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let userinfo = userinfo_password(url);
    match query_password(&userinfo) {
        Cow::Borrowed(_) => userinfo,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// The `password=` query parameter's value replaced.
fn query_password(url: &str) -> Cow<'_, str> {
    let Some(q) = url.find('?') else {
        return Cow::Borrowed(url);
    };
    let (head, query) = url.split_at(q + 1);
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    let mut changed = false;
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, value)) if name.eq_ignore_ascii_case("password") && !value.is_empty() => {
                changed = true;
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    if !changed {
        return Cow::Borrowed(url);
    }
    Cow::Owned(format!("{head}{}{fragment}", params.join("&")))
}

/// The userinfo's password replaced.
fn userinfo_password(url: &str) -> Cow<'_, str> {
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
            (
                "postgres://u:p@h/db?password=q&x=1",
                "postgres://u:***@h/db?password=***&x=1",
            ),
            (
                "postgres://h/db?sslmode=require",
                "postgres://h/db?sslmode=require",
            ),
        ] {
            assert_eq!(super::redact_url(given), shown, "{given}");
        }
    }
}
