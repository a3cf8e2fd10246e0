//! API versions and where a request says which one it wants.

use http::HeaderName;

/// An API major version (`v1`, `v2`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u16);

impl Version {
    /// Parses `2`, `v2` or `V2` (nothing else: `v2.1`, `v02`, `v0` and
    /// `v70000` are not versions).
    pub fn parse(text: &str) -> Option<Self> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`parse`](Self::parse) over bytes (a header value as it came).
    fn parse_bytes(text: &[u8]) -> Option<Self> {
        let digits = match text {
            [b'v' | b'V', rest @ ..] => rest,
            _ => text,
        };
        if digits.is_empty() || digits.len() > 5 || digits[0] == b'0' {
            return None;
        }
        let mut n: u32 = 0;
        for &b in digits {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(b - b'0');
        }
        u16::try_from(n).ok().map(Version)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Where the version is read from, tried in the order given to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The first path segment: `/v2/orders` (the segment is stripped before
    /// the version's routes see the path).
    Uri,
    /// A header: `Api-Version: 2`.
    Header(HeaderName),
    /// The media type in `Accept`: `application/vnd.<vendor>.v2+json`.
    MediaType {
        /// The vendor tree name (`ee` in `application/vnd.ee.v2+json`).
        vendor: String,
    },
    /// A query parameter: `?api-version=2`.
    Query(String),
}

/// What a source says: nothing, a version, or something that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Absent,
    Version(Version),
    Malformed(String),
}

impl Source {
    pub(crate) fn read<B>(&self, req: &http::Request<B>) -> Found {
        match self {
            Source::Uri => {
                let path = req.uri().path();
                let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
                // Only `v<digits…>` looks like a version segment; `/orders` is
                // a version-less path, `/v2x/…` a malformed version.
                let looks = first.len() > 1
                    && first.starts_with(['v', 'V'])
                    && first.as_bytes()[1].is_ascii_digit();
                if !looks {
                    return Found::Absent;
                }
                Version::parse(first)
                    .map_or_else(|| Found::Malformed(first.to_owned()), Found::Version)
            }
            Source::Header(name) => match req.headers().get(name) {
                None => Found::Absent,
                // Bytes, not `to_str`: a version is ASCII digits, and
                // anything else is malformed either way.
                Some(v) => match Version::parse_bytes(v.as_bytes().trim_ascii()) {
                    Some(version) => Found::Version(version),
                    None => Found::Malformed(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                },
            },
            Source::MediaType { vendor } => {
                for value in req.headers().get_all(http::header::ACCEPT) {
                    let Ok(text) = value.to_str() else { continue };
                    for media in text.split(',') {
                        let essence = media
                            .split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase();
                        let rest = essence
                            .strip_prefix("application/vnd.")
                            .and_then(|r| r.strip_prefix(vendor.as_str()))
                            .and_then(|r| r.strip_prefix('.'));
                        if let Some(rest) = rest {
                            let version = rest.split('+').next().unwrap_or("");
                            return Version::parse(version)
                                .map_or_else(|| Found::Malformed(essence.clone()), Found::Version);
                        }
                    }
                }
                Found::Absent
            }
            Source::Query(name) => {
                let Some(query) = req.uri().query() else {
                    return Found::Absent;
                };
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == name {
                        return Version::parse(v)
                            .map_or_else(|| Found::Malformed(v.to_owned()), Found::Version);
                    }
                }
                Found::Absent
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(Version::parse("v2"), Some(Version(2)));
        assert_eq!(Version::parse("V12"), Some(Version(12)));
        assert_eq!(Version::parse("3"), Some(Version(3)));
        for bad in [
            "", "v", "v0", "v02", "v2.1", "2a", "v-1", "v70000", "vv2", " 2",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }
}
