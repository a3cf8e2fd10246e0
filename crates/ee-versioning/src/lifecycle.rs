//! A version's lifecycle: deprecated (RFC 9745 `Deprecation`), sunset
//! (RFC 8594 `Sunset`), links to the deprecation notice and the successor.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// When a version is deprecated and removed, and where clients read more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// When the version is (or will be) deprecated: every response carries
    /// `Deprecation: @<seconds>` once this is set (a date in the future
    /// announces it, RFC 9745 §2.1).
    pub deprecated_at: Option<SystemTime>,
    /// When it stops being served: `Sunset: <HTTP-date>` on responses, and
    /// `410 Gone` problems after it.
    pub sunset_at: Option<SystemTime>,
    /// A page about the deprecation: `Link: <…>; rel="deprecation"`.
    pub deprecation_link: Option<String>,
    /// The version's successor, as a URI reference: `Link: <…>; rel="successor-version"`.
    pub successor_link: Option<String>,
}

impl Lifecycle {
    /// A version deprecated at `at`.
    pub fn deprecated(at: SystemTime) -> Self {
        Self {
            deprecated_at: Some(at),
            ..Self::default()
        }
    }

    /// Sets the sunset date.
    #[must_use]
    pub fn sunset(mut self, at: SystemTime) -> Self {
        self.sunset_at = Some(at);
        self
    }

    /// Sets the deprecation notice link.
    #[must_use]
    pub fn link(mut self, url: impl Into<String>) -> Self {
        self.deprecation_link = Some(url.into());
        self
    }

    /// Sets the successor link.
    #[must_use]
    pub fn successor(mut self, url: impl Into<String>) -> Self {
        self.successor_link = Some(url.into());
        self
    }

    /// Whether the version is gone at `now`.
    pub fn is_sunset(&self, now: SystemTime) -> bool {
        self.sunset_at.is_some_and(|at| now >= at)
    }

    /// The headers every response of this version carries.
    pub(crate) fn headers(&self) -> Vec<(http::HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(at) = self.deprecated_at {
            out.push((
                http::HeaderName::from_static("deprecation"),
                deprecation_value(at),
            ));
        }
        if let Some(at) = self.sunset_at {
            out.push((http::HeaderName::from_static("sunset"), sunset_value(at)));
        }
        let mut links = Vec::new();
        if let Some(url) = &self.deprecation_link {
            links.push(format!("<{url}>; rel=\"deprecation\"; type=\"text/html\""));
        }
        if let Some(url) = &self.successor_link {
            links.push(format!("<{url}>; rel=\"successor-version\""));
        }
        if !links.is_empty()
            && let Ok(v) = HeaderValue::from_str(&links.join(", "))
        {
            out.push((http::header::LINK, v));
        }
        out
    }
}

/// The RFC 9745 `Deprecation` value: a Structured Field Date, `@` and the
/// seconds since the epoch (before the epoch: negative).
///
/// RFC 9651 integers have at most 15 digits: a time beyond that range (some
/// 31 million years from 1970) is written as its end.
pub fn deprecation_value(at: SystemTime) -> HeaderValue {
    const MAX: u64 = 999_999_999_999_999;
    let seconds = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs().min(MAX) as i64,
        Err(e) => -(e.duration().as_secs().min(MAX) as i64),
    };
    HeaderValue::from_str(&format!("@{seconds}")).expect("digits are a valid header value")
}

/// The RFC 8594 `Sunset` value: an HTTP-date (IMF-fixdate, RFC 9110 §5.6.7).
///
/// An HTTP-date cannot say a time before 1970 or after 9999: such times are
/// written as the nearest one it can (a sunset before 1970 is long past
/// either way).
pub fn sunset_value(at: SystemTime) -> HeaderValue {
    // 9999-12-31T23:59:59Z, the last second an HTTP-date can write.
    let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    let at = at.clamp(UNIX_EPOCH, last);
    HeaderValue::from_str(&httpdate::fmt_http_date(at))
        .expect("an HTTP-date is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The `Link` value `l` sends.
    fn link_of(l: &Lifecycle) -> String {
        let headers = l.headers();
        let (_, value) = headers
            .iter()
            .find(|(n, _)| n == http::header::LINK)
            .unwrap();
        value.to_str().unwrap().to_owned()
    }

    #[test]
    fn header_values_match_the_rfc_grammars() {
        let times = [
            UNIX_EPOCH - Duration::from_secs(86_400 * 365),
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_secs(1_688_169_599),
            UNIX_EPOCH + Duration::from_secs(4_102_444_800), // 2100-01-01
            UNIX_EPOCH + Duration::from_secs(400_000_000_000), // past year 9999
            UNIX_EPOCH + Duration::from_secs(u64::MAX / 4),  // past 15 digits
        ];
        for at in times {
            // RFC 9745 §2 / RFC 9651 §3.3.7: sf-date = "@" sf-integer, an
            // integer of at most 15 digits, optionally negative.
            let deprecation = deprecation_value(at);
            let text = deprecation.to_str().unwrap();
            let digits = text.strip_prefix('@').unwrap();
            let unsigned = digits.strip_prefix('-').unwrap_or(digits);
            assert!(
                (1..=15).contains(&unsigned.len()) && unsigned.bytes().all(|b| b.is_ascii_digit()),
                "{text}"
            );
            assert!(!unsigned.starts_with('0') || unsigned == "0", "{text}");
            // RFC 8594 §3 / RFC 9110 §5.6.7: IMF-fixdate, e.g.
            // `Sun, 06 Nov 1994 08:49:37 GMT`, and it reads back as the same time.
            let sunset = sunset_value(at);
            let text = sunset.to_str().unwrap();
            let b = text.as_bytes();
            assert_eq!(b.len(), 29, "{text}");
            assert!(
                ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&text[..3]),
                "{text}"
            );
            assert_eq!(
                (&text[3..5], b[7], b[11], b[16]),
                (", ", b' ', b' ', b' '),
                "{text}"
            );
            assert!(
                [
                    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                    "Dec"
                ]
                .contains(&&text[8..11]),
                "{text}"
            );
            assert!(
                text[5..7]
                    .bytes()
                    .chain(text[12..16].bytes())
                    .all(|c| c.is_ascii_digit()),
                "{text}"
            );
            assert_eq!((b[19], b[22], &text[25..]), (b':', b':', " GMT"), "{text}");
            let written = at.clamp(
                UNIX_EPOCH,
                UNIX_EPOCH + Duration::from_secs(253_402_300_799),
            );
            assert_eq!(httpdate::parse_http_date(text).unwrap(), written, "{text}");
        }
        // RFC 8288 §3: link-value = "<" URI-Reference ">" *( OWS ";" OWS
        // link-param ), comma-separated; rel values quoted.
        let l = Lifecycle::deprecated(UNIX_EPOCH)
            .link("https://api.example/deprecation/v1")
            .successor("/v2/orders");
        let link = link_of(&l);
        let values: Vec<&str> = link.split(", ").collect();
        assert_eq!(values.len(), 2, "{link}");
        for value in values {
            let (target, params) = value.split_once(">;").unwrap();
            assert!(
                target.starts_with('<') && !target[1..].contains(['<', '>', ' ']),
                "{value}"
            );
            for param in params.split(';') {
                let (name, val) = param.trim().split_once('=').unwrap();
                assert!(name.bytes().all(|c| c.is_ascii_lowercase()), "{value}");
                assert!(
                    val.starts_with('"') && val.ends_with('"') && val.len() > 2,
                    "{value}"
                );
            }
        }
    }

    #[test]
    fn header_values_follow_the_rfcs() {
        // 2023-06-30T23:59:59Z, the example of RFC 9745 §2.1.
        let at = UNIX_EPOCH + Duration::from_secs(1_688_169_599);
        assert_eq!(deprecation_value(at), "@1688169599");
        assert_eq!(sunset_value(at), "Fri, 30 Jun 2023 23:59:59 GMT");
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(deprecation_value(before), "@-10");
        let l = Lifecycle::deprecated(at)
            .sunset(at + Duration::from_secs(86_400))
            .link("https://api.example/deprecation/v1")
            .successor("/v2/orders");
        let link = link_of(&l);
        assert_eq!(
            link,
            r#"<https://api.example/deprecation/v1>; rel="deprecation"; type="text/html", </v2/orders>; rel="successor-version""#
        );
    }
}
