//! The versioning settings a service keeps in its configuration file.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::VersioningError;
use crate::lifecycle::Lifecycle;
use crate::router::VersionedRouter;
use crate::version::{Source, Version};

/// Versioning settings (serde; a `[versioning]` section of `ee.toml` through
/// ee-config), applied with [`VersionedRouter::config`] after the versions'
/// routes are registered.
///
/// ```
/// # use ee_versioning::VersioningConfig;
/// let config: VersioningConfig = serde_json::from_str(r#"{
///     "default_version": 2,
///     "sources": ["uri", "header:api-version", "media-type:shop", "query:v"],
///     "lifecycle": { "v1": {
///         "deprecated_at": "Mon, 01 Jun 2026 00:00:00 GMT",
///         "sunset_at": 1798761600,
///         "link": "https://api.example/deprecations/v1",
///         "successor": "/v2/orders"
///     } }
/// }"#).unwrap();
/// assert_eq!(config.default_version, Some(2));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VersioningConfig {
    /// The version of requests that name none.
    pub default_version: Option<u16>,
    /// Where the version is read from, in order: `uri`, `header:<name>`,
    /// `media-type:<vendor>`, `query:<parameter>` (default: the router's).
    pub sources: Option<Vec<String>>,
    /// Each version's lifecycle, by version (`1` or `v1`).
    pub lifecycle: BTreeMap<String, LifecycleConfig>,
    /// At most this many distinct clients in the deprecation metric.
    pub max_clients: Option<usize>,
}

/// One version's lifecycle in a [`VersioningConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// When it is (or will be) deprecated: Unix seconds or an HTTP date.
    pub deprecated_at: Option<Date>,
    /// When it goes (410 from then on): Unix seconds or an HTTP date.
    pub sunset_at: Option<Date>,
    /// `Link: <…>; rel="deprecation"`: where the deprecation is explained.
    pub link: Option<String>,
    /// `Link: <…>; rel="successor-version"`.
    pub successor: Option<String>,
}

/// A point in time: Unix seconds, or an HTTP date (`Mon, 01 Jun 2026 00:00:00 GMT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Date {
    /// Seconds since the Unix epoch.
    Unix(u64),
    /// An HTTP date (RFC 9110 §5.6.7).
    Http(String),
}

/// 9999-12-31T23:59:59Z: the last second an HTTP-date (the `Sunset` header)
/// can write.
const LAST_SECOND: u64 = 253_402_300_799;

/// A link target the `Link` header can carry as it is (RFC 8288: inside
/// `<…>`, and a list is comma-separated).
fn link_target(field: &str, url: &str) -> Result<String, String> {
    let bad = url.is_empty()
        || url.chars().any(|c| {
            c.is_ascii_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"' | ',')
        });
    if bad {
        return Err(format!(
            "{field}: `{url}` cannot be a Link target (no spaces, <, >, \", or commas)"
        ));
    }
    Ok(url.to_owned())
}

impl Date {
    fn time(&self) -> Result<SystemTime, String> {
        match self {
            Date::Unix(s) if *s <= LAST_SECOND => Ok(UNIX_EPOCH + Duration::from_secs(*s)),
            Date::Unix(s) => Err(format!("{s} is after the year 9999")),
            Date::Http(text) => httpdate::parse_http_date(text).map_err(|_| {
                format!("`{text}` is not an HTTP date (Mon, 01 Jun 2026 00:00:00 GMT)")
            }),
        }
    }
}

/// `uri`, `header:<name>`, `media-type:<vendor>` or `query:<parameter>`.
fn source(spec: &str) -> Result<Source, String> {
    let bad = || {
        format!(
            "`{spec}` is not a version source (uri, header:<name>, media-type:<vendor>, query:<parameter>)"
        )
    };
    let (kind, arg) = spec
        .split_once(':')
        .map_or((spec, ""), |(k, a)| (k, a.trim()));
    match (kind.trim(), arg) {
        ("uri", "") => Ok(Source::Uri),
        ("header", name) if !name.is_empty() => http::HeaderName::from_bytes(name.as_bytes())
            .map(Source::Header)
            .map_err(|_| bad()),
        ("media-type", vendor) if !vendor.is_empty() => Ok(Source::MediaType {
            vendor: vendor.to_ascii_lowercase(),
        }),
        ("query", param) if !param.is_empty() => Ok(Source::Query(param.to_owned())),
        _ => Err(bad()),
    }
}

impl VersionedRouter {
    /// Applies `config`: the default version, the sources, each version's
    /// lifecycle, the metric's client bound. Register the versions' routes
    /// first.
    ///
    /// # Errors
    /// [`VersioningError::Config`] with every problem of `config`: a source
    /// that is not one, a date that is not one, a lifecycle for a version
    /// without routes, a link that cannot be a `Link` target.
    pub fn config(mut self, config: &VersioningConfig) -> Result<Self, VersioningError> {
        let mut problems = Vec::new();
        if let Some(version) = config.default_version {
            self = self.default_version(version);
        }
        if let Some(specs) = &config.sources {
            let mut sources = Vec::new();
            for spec in specs {
                match source(spec) {
                    Ok(s) => sources.push(s),
                    Err(e) => problems.push(e),
                }
            }
            self = self.sources(sources);
        }
        for (name, lc) in &config.lifecycle {
            let Some(version) = Version::parse(name.trim()) else {
                problems.push(format!("lifecycle `{name}`: not a version (1 or v1)"));
                continue;
            };
            if !self.has_version(version) {
                problems.push(format!("lifecycle for {version}, which has no routes"));
                continue;
            }
            self = self.lifecycle(version.0, lifecycle(name, lc, &mut problems));
        }
        if let Some(n) = config.max_clients {
            self = self.max_clients(n);
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(VersioningError::Config { problems })
        }
    }
}

/// The lifecycle `lc` of version `name` says, its problems added to
/// `problems`.
fn lifecycle(name: &str, lc: &LifecycleConfig, problems: &mut Vec<String>) -> Lifecycle {
    let mut lifecycle = Lifecycle::default();
    for (field, date, slot) in [
        (
            "deprecated_at",
            &lc.deprecated_at,
            &mut lifecycle.deprecated_at,
        ),
        ("sunset_at", &lc.sunset_at, &mut lifecycle.sunset_at),
    ] {
        match date.as_ref().map(Date::time).transpose() {
            Ok(time) => *slot = time,
            Err(e) => problems.push(format!("lifecycle.{name}.{field}: {e}")),
        }
    }
    for (field, url, slot) in [
        ("link", &lc.link, &mut lifecycle.deprecation_link),
        ("successor", &lc.successor, &mut lifecycle.successor_link),
    ] {
        if let Some(url) = url {
            match link_target(&format!("lifecycle.{name}.{field}"), url) {
                Ok(url) => *slot = Some(url),
                Err(e) => problems.push(e),
            }
        }
    }
    lifecycle
}
