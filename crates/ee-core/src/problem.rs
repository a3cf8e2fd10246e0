//! RFC 9457 problem details: the one error body every ee layer answers with.
//!
//! A [`Problem`] carries the five standard members (`type`, `title`, `status`,
//! `detail`, `instance`), any number of extension members, and response headers
//! that belong with the error (for example `Retry-After` on a 429). It becomes an
//! `application/problem+json` response through [`Problem::into_response`] for bare
//! tower/hyper services, or through axum's `IntoResponse` with the `axum` feature.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of a problem body (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The base of every problem `type` URI that ee crates emit.
pub const TYPE_BASE: &str = "https://ee.rs/problems/";

/// The default problem type: the status code says everything (RFC 9457 §4.2.1).
pub const ABOUT_BLANK: &str = "about:blank";

/// The standard member names; extension members may not reuse them.
const RESERVED: [&str; 5] = ["type", "title", "status", "detail", "instance"];

/// An RFC 9457 problem details object, ready to be sent as a response.
///
/// ```
/// use ee_core::Problem;
/// use http::StatusCode;
///
/// let problem = Problem::ee(StatusCode::TOO_MANY_REQUESTS, "ratelimit", "too-many-requests")
///     .with_title("Too many requests")
///     .with_detail("policy `api` allows 10 requests per second")
///     .with_extension("policy", "api")
///     .with_retry_after(std::time::Duration::from_secs(3));
///
/// let response: http::Response<bytes::Bytes> = problem.into_response();
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// assert_eq!(response.headers()["retry-after"], "3");
/// let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
/// assert_eq!(body["type"], "https://ee.rs/problems/ratelimit/too-many-requests");
/// assert_eq!(body["status"], 429);
/// assert_eq!(body["policy"], "api");
/// ```
#[derive(Clone, PartialEq)]
pub struct Problem {
    type_uri: Cow<'static, str>,
    title: Option<Cow<'static, str>>,
    status: StatusCode,
    detail: Option<Cow<'static, str>>,
    instance: Option<Cow<'static, str>>,
    extensions: Map<String, Value>,
    headers: HeaderMap,
}

impl Problem {
    /// A problem of type `about:blank` whose title is the status's reason phrase.
    pub fn new(status: StatusCode) -> Self {
        Self {
            type_uri: Cow::Borrowed(ABOUT_BLANK),
            title: status.canonical_reason().map(Cow::Borrowed),
            status,
            detail: None,
            instance: None,
            extensions: Map::new(),
            headers: HeaderMap::new(),
        }
    }

    /// A problem whose type is `https://ee.rs/problems/<crate_name>/<kind>`, the
    /// stable type URI scheme of the ee crates.
    pub fn ee(status: StatusCode, crate_name: &str, kind: &str) -> Self {
        Self::new(status).with_type(format!("{TYPE_BASE}{crate_name}/{kind}"))
    }

    /// Sets the `type` URI reference identifying the problem type.
    pub fn with_type(mut self, type_uri: impl Into<Cow<'static, str>>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    /// Sets the short, human-readable summary of the problem type.
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the explanation specific to this occurrence.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 404 for a request no route matched (`no route for GET /x`, the path
    /// as `instance`): a router's fallback.
    pub fn no_route<B>(req: &http::Request<B>) -> Self {
        Self::new(StatusCode::NOT_FOUND)
            .with_detail(format!(
                "no route for {} {}",
                req.method(),
                req.uri().path()
            ))
            .with_instance(req.uri().path().to_owned())
    }

    /// 405 for a method a matched route does not serve (`PUT is not
    /// allowed on /x`): a router's method-not-allowed fallback.
    pub fn method_not_allowed<B>(req: &http::Request<B>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED)
            .with_detail(format!(
                "{} is not allowed on {}",
                req.method(),
                req.uri().path()
            ))
            .with_instance(req.uri().path().to_owned())
    }

    /// Sets the URI reference identifying this occurrence (often the request path).
    pub fn with_instance(mut self, instance: impl Into<Cow<'static, str>>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Adds an extension member. A name that clashes with a standard member
    /// (`type`, `title`, `status`, `detail`, `instance`) is stored as
    /// `ext_<name>` so the standard member keeps its meaning (and the name still
    /// starts with a letter, as RFC 9457 §3.2 advises); a repeated name replaces
    /// the value.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let mut name = name.into();
        if RESERVED.contains(&name.as_str()) {
            name.insert_str(0, "ext_");
        }
        self.extensions.insert(name, value.into());
        self
    }

    /// Sets `Retry-After` to `wait` in whole seconds, rounded up (RFC 9110
    /// §10.2.3): the one way ee crates say when to come back. A zero wait is
    /// sent as `0`.
    ///
    /// ```
    /// use ee_core::Problem;
    /// use std::time::Duration;
    /// let p = Problem::new(http::StatusCode::SERVICE_UNAVAILABLE)
    ///     .with_retry_after(Duration::from_millis(1500));
    /// assert_eq!(p.headers()["retry-after"], "2");
    /// assert_eq!(p.retry_after(), Some(Duration::from_secs(2)));
    /// ```
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.headers
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        self
    }

    /// The `Retry-After` this problem is sent with, when it is a number of
    /// seconds.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let secs = self.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
        secs.parse().ok().map(std::time::Duration::from_secs)
    }

    /// Adds a response header sent with the problem (for example `Link`).
    /// `Content-Type` is always `application/problem+json` and cannot be replaced.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if name != CONTENT_TYPE {
            self.headers.append(name, value);
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem type URI (`about:blank` when none was set).
    pub fn type_uri(&self) -> &str {
        &self.type_uri
    }

    /// The title, if any.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The occurrence-specific detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The occurrence URI, if any.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// One extension member.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.extensions.get(name)
    }

    /// All extension members.
    pub fn extensions(&self) -> &Map<String, Value> {
        &self.extensions
    }

    /// The headers sent with the problem (without `Content-Type`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The JSON body.
    pub fn to_json_bytes(&self) -> Bytes {
        // Serialising a map of strings and JSON values cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Builds the `application/problem+json` response, for any body type that can
    /// be made from `Bytes`: `Bytes` itself, `axum::body::Body`,
    /// `http_body_util::Full<Bytes>`, `tonic::body::Body`…
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let body = B::from(self.to_json_bytes());
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        *headers = self.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl fmt::Debug for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Problem")
            .field("type", &self.type_uri)
            .field("status", &self.status.as_u16())
            .field("title", &self.title)
            .field("detail", &self.detail)
            .field("instance", &self.instance)
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status.as_u16())?;
        if let Some(title) = &self.title {
            write!(f, " {title}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = 2
            + usize::from(self.title.is_some())
            + usize::from(self.detail.is_some())
            + usize::from(self.instance.is_some())
            + self.extensions.len();
        let mut map = serializer.serialize_map(Some(len))?;
        map.serialize_entry("type", &self.type_uri)?;
        if let Some(title) = &self.title {
            map.serialize_entry("title", title)?;
        }
        map.serialize_entry("status", &self.status.as_u16())?;
        if let Some(detail) = &self.detail {
            map.serialize_entry("detail", detail)?;
        }
        if let Some(instance) = &self.instance {
            map.serialize_entry("instance", instance)?;
        }
        for (name, value) in &self.extensions {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Reads a problem body, for clients and tests. Per RFC 9457 §3.1 a standard
/// member of the wrong JSON type is ignored rather than rejected; a missing or
/// invalid `status` falls back to 500 (the receiver should use the HTTP status).
impl<'de> Deserialize<'de> for Problem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProblemVisitor;
        impl<'de> Visitor<'de> for ProblemVisitor {
            type Value = Problem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 9457 problem details object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Problem, A::Error> {
                let mut problem = Problem::new(StatusCode::INTERNAL_SERVER_ERROR);
                let mut title_seen = false;
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    match (name.as_str(), value) {
                        ("type", Value::String(s)) => problem.type_uri = s.into(),
                        ("title", Value::String(s)) => {
                            title_seen = true;
                            problem.title = Some(s.into());
                        }
                        ("status", Value::Number(n)) => {
                            if let Some(status) = n
                                .as_u64()
                                .and_then(|n| u16::try_from(n).ok())
                                .and_then(|n| StatusCode::from_u16(n).ok())
                            {
                                problem.status = status;
                            }
                        }
                        ("detail", Value::String(s)) => problem.detail = Some(s.into()),
                        ("instance", Value::String(s)) => problem.instance = Some(s.into()),
                        (name, _) if RESERVED.contains(&name) => {}
                        (_, value) => {
                            problem.extensions.insert(name, value);
                        }
                    }
                }
                if !title_seen {
                    problem.title = None;
                }
                Ok(problem)
            }
        }
        deserializer
            .deserialize_map(ProblemVisitor)
            .map_err(de::Error::custom)
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        Problem::into_response::<axum::body::Body>(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_blank_takes_the_reason_phrase_as_title() {
        let p = Problem::new(StatusCode::NOT_FOUND);
        let v: Value = serde_json::from_slice(&p.to_json_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "about:blank", "title": "Not Found", "status": 404})
        );
    }

    #[test]
    fn reserved_extension_names_do_not_override_standard_members() {
        let p = Problem::new(StatusCode::BAD_REQUEST).with_extension("status", 200);
        let v: Value = serde_json::from_slice(&p.to_json_bytes()).unwrap();
        assert_eq!(v["status"], 400);
        assert_eq!(v["ext_status"], 200);
    }

    #[test]
    fn content_type_cannot_be_overridden() {
        let p = Problem::new(StatusCode::BAD_REQUEST)
            .with_header(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let r: Response<Bytes> = p.into_response();
        assert_eq!(r.headers().get_all(CONTENT_TYPE).iter().count(), 1);
        assert_eq!(r.headers()[CONTENT_TYPE], PROBLEM_JSON);
    }
}
