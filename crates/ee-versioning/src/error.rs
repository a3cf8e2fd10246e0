//! The crate's one error type, and the problems it answers with.

use std::time::SystemTime;

use ee_core::Problem;
use http::StatusCode;

use crate::version::Version;

/// What can go wrong in this crate: a configuration that does not apply (at
/// start-up), or a request whose version cannot be served (as a problem:
/// `impl From<VersioningError> for Problem`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersioningError {
    /// A [`VersioningConfig`](crate::VersioningConfig) that does not apply:
    /// every problem, one per line.
    #[error("invalid versioning configuration:\n{}", .problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n"))]
    Config {
        /// Each problem: a source that is not one, a date that is not one, a
        /// lifecycle for a version without routes, a link that cannot be a
        /// `Link` target.
        problems: Vec<String>,
    },
    /// The request names something that is not a version (400).
    #[error("`{text}` is not an API version; this API serves {}", list(.supported))]
    Malformed {
        /// What the request named.
        text: String,
        /// The versions this API serves.
        supported: Vec<Version>,
    },
    /// The request names no version and there is no default (400).
    #[error("the request names no API version; this API serves {}", list(.supported))]
    Missing {
        /// The versions this API serves.
        supported: Vec<Version>,
    },
    /// The request names a version this API does not serve (400).
    #[error("{version} is not served; this API serves {}", list(.supported))]
    Unsupported {
        /// The version named.
        version: Version,
        /// The versions this API serves.
        supported: Vec<Version>,
    },
    /// The version was retired (410).
    #[error("{version} was retired on {}; this API serves {}", httpdate::fmt_http_date(*.at), list(.supported))]
    Sunset {
        /// The retired version.
        version: Version,
        /// When it was retired.
        at: SystemTime,
        /// The versions this API serves.
        supported: Vec<Version>,
    },
}

/// `v1, v2`.
fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<VersioningError> for Problem {
    fn from(e: VersioningError) -> Self {
        let detail = e.to_string();
        match e {
            VersioningError::Malformed { supported, .. }
            | VersioningError::Missing { supported }
            | VersioningError::Unsupported { supported, .. } => {
                Problem::ee(StatusCode::BAD_REQUEST, "versioning", "unsupported-version")
                    .with_title("Unsupported API version")
                    .with_detail(detail)
                    .with_extension(
                        "supported",
                        supported
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>(),
                    )
            }
            VersioningError::Sunset { .. } => Problem::ee(StatusCode::GONE, "versioning", "sunset")
                .with_title("API version retired")
                .with_detail(detail),
            // A set-up error: it reaches a client only through a handler
            // that applies a configuration per request.
            VersioningError::Config { .. } => {
                Problem::ee(StatusCode::INTERNAL_SERVER_ERROR, "versioning", "config")
                    .with_title("Invalid versioning configuration")
                    .with_detail(detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn each_error_is_its_problem() {
        let supported = vec![Version(1), Version(2)];
        for (error, status, kind, detail) in [
            (
                VersioningError::Malformed {
                    text: "two".into(),
                    supported: supported.clone(),
                },
                400,
                "unsupported-version",
                "`two` is not an API version; this API serves v1, v2",
            ),
            (
                VersioningError::Missing {
                    supported: supported.clone(),
                },
                400,
                "unsupported-version",
                "the request names no API version; this API serves v1, v2",
            ),
            (
                VersioningError::Unsupported {
                    version: Version(7),
                    supported: supported.clone(),
                },
                400,
                "unsupported-version",
                "v7 is not served; this API serves v1, v2",
            ),
            (
                VersioningError::Sunset {
                    version: Version(1),
                    at: UNIX_EPOCH + Duration::from_secs(1_798_761_600),
                    supported: supported.clone(),
                },
                410,
                "sunset",
                "v1 was retired on Fri, 01 Jan 2027 00:00:00 GMT; this API serves v1, v2",
            ),
        ] {
            let problem = Problem::from(error);
            assert_eq!(problem.status(), status, "{kind}");
            assert_eq!(
                problem.type_uri(),
                format!("https://ee.rs/problems/versioning/{kind}")
            );
            assert_eq!(problem.detail(), Some(detail));
            let listed = problem.extension("supported");
            if status == 400 {
                assert_eq!(listed, Some(&serde_json::json!(["v1", "v2"])));
            } else {
                assert_eq!(listed, None);
            }
        }
    }
}
