//! W3C Trace Context (`traceparent`, `tracestate`) and the request id: parse,
//! generate, carry through a request's task, inject into outgoing calls,
//! queue jobs and events.

use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// `traceparent` (W3C Trace Context level 1).
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where trace context travels besides HTTP headers: a queue job's or an
/// event's metadata. Implemented for `HeaderMap` and `HashMap<String, String>`.
pub trait Carrier {
    /// The value under `key` (lower-case), if any.
    fn get(&self, key: &str) -> Option<&str>;
    /// Sets `key` (lower-case) to `value`.
    fn set(&mut self, key: &str, value: String);
}

impl Carrier for HeaderMap {
    fn get(&self, key: &str) -> Option<&str> {
        HeaderMap::get(self, key).and_then(|v| v.to_str().ok())
    }

    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.insert(name, value);
        }
    }
}

impl<S: std::hash::BuildHasher> Carrier for std::collections::HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        std::collections::HashMap::get(self, key).map(String::as_str)
    }

    fn set(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }
}

/// One span's place in a distributed trace.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    /// The caller's span (none for a root).
    parent_id: Option<[u8; 8]>,
    sampled: bool,
    /// Vendor state, passed on unchanged.
    tracestate: Option<Arc<str>>,
}

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .field("parent_id", &self.parent_id.map(|p| hex(&p)))
            .finish()
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes.iter().any(|b| *b != 0) {
            return bytes; // all-zero ids are invalid
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None; // W3C: lower-case hex only
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceContext {
    /// A new trace: random trace and span ids, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_bytes(),
            span_id: random_bytes(),
            parent_id: None,
            sampled: true,
            tracestate: None,
        }
    }

    /// Parses a `traceparent` value (and the `tracestate` that came with
    /// it); `None` when it is not valid W3C Trace Context: wrong length or
    /// case, version `ff`, an all-zero trace or span id.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let t = traceparent.trim();
        let version = parse_hex::<1>(t.get(0..2)?)?[0];
        if version == 0xff || t.get(2..3)? != "-" || t.get(35..36)? != "-" || t.get(52..53)? != "-"
        {
            return None;
        }
        // Version 00 is exactly 55 characters; a later version may add
        // fields after another dash.
        if (version == 0 && t.len() != 55) || (t.len() > 55 && t.get(55..56)? != "-") {
            return None;
        }
        let trace_id = parse_hex::<16>(t.get(3..35)?)?;
        let parent = parse_hex::<8>(t.get(36..52)?)?;
        let flags = parse_hex::<1>(t.get(53..55)?)?[0];
        if trace_id == [0; 16] || parent == [0; 8] {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 512 && s.is_ascii())
            .map(Arc::from);
        Some(Self {
            trace_id,
            span_id: parent,
            parent_id: None,
            sampled: flags & 1 == 1,
            tracestate,
        })
    }

    /// The context in `carrier` (`traceparent` + `tracestate`), if valid.
    pub fn extract(carrier: &impl Carrier) -> Option<Self> {
        Self::parse(carrier.get("traceparent")?, carrier.get("tracestate"))
    }

    /// A child span of this one: same trace, new span id, this span as parent.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: random_bytes(),
            parent_id: Some(self.span_id),
            sampled: self.sampled,
            tracestate: self.tracestate.clone(),
        }
    }

    /// Writes `traceparent` (and `tracestate`) into `carrier`.
    pub fn inject(&self, carrier: &mut impl Carrier) {
        carrier.set("traceparent", self.traceparent());
        if let Some(state) = &self.tracestate {
            carrier.set("tracestate", state.to_string());
        }
    }

    /// The `traceparent` value of this span.
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        s.push_str(&hex(&self.trace_id));
        s.push('-');
        s.push_str(&hex(&self.span_id));
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn span_id_bytes(&self) -> [u8; 8] {
        self.span_id
    }

    /// This context with the ids an exporter gave its span.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn with_ids(mut self, trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Self {
        if self.trace_id != trace_id {
            // A new trace (a root): no parent in it.
            self.parent_id = None;
        }
        self.trace_id = trace_id;
        self.span_id = span_id;
        self.sampled = sampled;
        self
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// This span's id, 16 lower-case hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span_id)
    }

    /// The parent span's id, when this span continues a caller's.
    pub fn parent_id(&self) -> Option<String> {
        self.parent_id.map(|p| hex(&p))
    }

    /// Whether the trace is sampled (the caller's flag, or ours for a root).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The context of the request this task is handling, if any (set by
    /// [`RequestLogLayer`](crate::RequestLogLayer), or by [`scope`](Self::scope)).
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| c.trace.clone()).ok()
    }

    /// Runs `fut` with `self` (and `request_id`) as the current context: what
    /// a queue worker does with the context a job carried.
    pub async fn scope<F: std::future::Future>(
        self,
        request_id: Option<RequestId>,
        fut: F,
    ) -> F::Output {
        CURRENT
            .scope(
                Current {
                    trace: self,
                    request_id,
                },
                fut,
            )
            .await
    }
}

/// A request id: a valid incoming `X-Request-Id` (1-128 visible ASCII
/// characters other than `"` and `\`), or a generated one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A new random id (32 lower-case hex digits).
    pub fn generate() -> Self {
        Self(Arc::from(hex(&random_bytes::<16>())))
    }

    /// The incoming id, if acceptable: anything else is replaced, so a
    /// client cannot inject log syntax or megabytes through it.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        ok.then(|| Self(Arc::from(value)))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request this task is handling, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| c.request_id.clone()).ok().flatten()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) trace: TraceContext,
    pub(crate) request_id: Option<RequestId>,
}

tokio::task_local! {
    pub(crate) static CURRENT: Current;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing_follows_the_w3c_rules() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(valid, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.traceparent(), valid);
        assert!(ctx.sampled());
        let child = ctx.child();
        assert_eq!(child.trace_id(), ctx.trace_id());
        assert_ne!(child.span_id(), ctx.span_id());
        assert_eq!(child.parent_id().as_deref(), Some("00f067aa0ba902b7"));
        // A later version with an extra field is read by its first four.
        assert!(TraceContext::parse(&format!("01-{}-extra", &valid[3..]), None).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad, None).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn contexts_travel_through_any_carrier() {
        let ctx = TraceContext::new_root();
        let mut job: std::collections::HashMap<String, String> = Default::default();
        ctx.inject(&mut job);
        assert_eq!(TraceContext::extract(&job), Some(ctx.clone()));
        let mut headers = HeaderMap::new();
        ctx.inject(&mut headers);
        assert_eq!(TraceContext::extract(&headers), Some(ctx));
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(RequestId::parse("req-42_ABC.x:y").is_some());
        for bad in ["", "has space", "quote\"", &"x".repeat(129), "tab\t", "é"] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(RequestId::generate().as_str().len(), 32);
    }
}
