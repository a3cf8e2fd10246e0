//! Request keys: who or what a request is counted against.
//!
//! Rate limits, idempotency scopes, cache namespaces and quotas all need a key
//! taken from the request. A [`KeyExtractor`] produces one or fails with a
//! [`KeyError`] that is itself a [`Problem`]: a key is never silently empty.
//!
//! Ready extractors: [`PeerIp`] (the TCP peer), [`ClientIp`] (the client behind
//! *trusted* proxies only), [`HeaderKey`] (an API key or tenant header),
//! [`SubjectKey`] (the authenticated [`Subject`] an auth layer put in the request
//! extensions) and [`key_fn`] (a closure).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{FORWARDED, HeaderName};
use http::{Extensions, HeaderMap, Method, Request, StatusCode, Uri};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// The parts of a request a key is taken from: borrowed from an
/// `http::Request<B>` or from `http::request::Parts` (axum extractors) alike.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (peer address, authenticated subject, …).
    pub extensions: &'a Extensions,
}

impl<'a, B> From<&'a Request<B>> for RequestHead<'a> {
    fn from(req: &'a Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

impl<'a> From<&'a http::request::Parts> for RequestHead<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// A request key. IP keys stay unformatted (no allocation on the hot path);
/// text keys are shared cheaply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A client or peer IP address (IPv4-mapped IPv6 addresses are canonicalised to IPv4).
    Ip(IpAddr),
    /// Any other key: an API key, a user id, a tenant, a composite.
    Text(Arc<str>),
}

impl Key {
    /// A text key.
    pub fn text(s: impl Into<Arc<str>>) -> Self {
        Key::Text(s.into())
    }
}

/// One hasher write per IP key (the keyed maps of rate limiters hash on every
/// request): an IPv4 address and an IPv6 address never write the same value,
/// and text keys hash as strings.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Key::Ip(IpAddr::V4(v4)) => state.write_u64(u64::from(v4.to_bits()) | (1 << 32)),
            Key::Ip(IpAddr::V6(v6)) => state.write_u128(v6.to_bits()),
            Key::Text(s) => s.hash(state),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Ip(ip) => ip.fmt(f),
            Key::Text(s) => f.write_str(s),
        }
    }
}

impl From<IpAddr> for Key {
    #[inline]
    fn from(ip: IpAddr) -> Self {
        Key::Ip(ip.to_canonical())
    }
}

/// Why no key could be taken from a request. Converts into a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A header the key comes from is absent (400).
    #[error("the request has no `{0}` header")]
    MissingHeader(HeaderName),
    /// A header the key comes from is present but unusable (400).
    #[error("the `{name}` header is malformed: {reason}")]
    MalformedHeader {
        /// The header.
        name: HeaderName,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The server did not record the TCP peer address (500: a set-up error, not
    /// the client's). With axum, serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()` and enable the
    /// `axum` feature (of ee-core, or of the ee crate you use: it is what reads
    /// axum's `ConnectInfo`); with hyper, insert a [`PeerAddr`] extension per
    /// connection. The problem's detail and a log line (once per process)
    /// say so.
    #[error("{}", NO_PEER_ADDRESS_FIX)]
    NoPeerAddress,
    /// No authenticated [`Subject`] in the request extensions (401).
    #[error("the request is not authenticated")]
    Unauthenticated,
    /// A key extractor of the user's own rejected the request (400).
    #[error("{0}")]
    Rejected(Cow<'static, str>),
}

/// What to do about [`KeyError::NoPeerAddress`], as this build can tell.
#[cfg(feature = "axum")]
const NO_PEER_ADDRESS_FIX: &str = "the server records no peer address: with axum, serve with \
    `into_make_service_with_connect_info::<SocketAddr>()`; with hyper or tonic, insert an \
    `ee_core::PeerAddr` request extension per connection";
/// What to do about [`KeyError::NoPeerAddress`], as this build can tell.
#[cfg(not(feature = "axum"))]
const NO_PEER_ADDRESS_FIX: &str = "the server records no peer address: with axum, serve with \
    `into_make_service_with_connect_info::<SocketAddr>()` AND enable the `axum` feature \
    (`cargo add ee-ratelimit -F axum`, or `-F axum` on the ee crate you use; without it axum's \
    `ConnectInfo` cannot be read); with hyper or tonic, insert an `ee_core::PeerAddr` request \
    extension per connection";

/// Logs a set-up error once per process: the first request that meets it
/// says what to fix; the rest answer with the same detail, unlogged.
fn log_setup_error_once(err: &KeyError) {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::error!(error = %err, "ee: server set-up error (logged once)");
    }
}

impl KeyError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            KeyError::NoPeerAddress => StatusCode::INTERNAL_SERVER_ERROR,
            KeyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            KeyError::MissingHeader(_) => "missing-header",
            KeyError::MalformedHeader { .. } => "malformed-header",
            KeyError::NoPeerAddress => "no-peer-address",
            KeyError::Unauthenticated => "unauthenticated",
            KeyError::Rejected(_) => "key-rejected",
        }
    }
}

impl From<KeyError> for Problem {
    fn from(err: KeyError) -> Self {
        let problem = Problem::ee(err.status(), "core", err.kind());
        let problem = match &err {
            KeyError::MissingHeader(name) | KeyError::MalformedHeader { name, .. } => {
                problem.with_extension("header", name.as_str())
            }
            _ => problem,
        };
        if matches!(err, KeyError::NoPeerAddress) {
            // A set-up error: the detail is the fix (no client data in it),
            // for whoever first tries the service; logged once.
            log_setup_error_once(&err);
        }
        problem.with_detail(err.to_string())
    }
}

/// Takes a [`Key`] from a request.
///
/// Implemented by the ready extractors of this module and by [`key_fn`] closures;
/// object safe, so `Arc<dyn KeyExtractor>` works where a layer must be configured
/// at run time.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of this request, or why it has none.
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError>;

    /// Convenience for a whole `http::Request`.
    fn extract_from<B>(&self, req: &Request<B>) -> Result<Key, KeyError>
    where
        Self: Sized,
    {
        self.extract(&RequestHead::from(req))
    }
}

impl<K: KeyExtractor + ?Sized> KeyExtractor for Arc<K> {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        (**self).extract(req)
    }
}

impl<K: KeyExtractor + ?Sized> KeyExtractor for Box<K> {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        (**self).extract(req)
    }
}

/// The TCP peer address of a connection, as a request extension. axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`) and a bare `SocketAddr` extension
/// are read as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

#[inline]
fn peer_ip(ext: &Extensions) -> Option<IpAddr> {
    // axum's ConnectInfo first: with the `axum` feature it is what is there.
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    if let Some(PeerAddr(addr)) = ext.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    ext.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The key is the TCP peer's IP address. Behind a proxy that is the proxy's
/// address: use [`ClientIp`] there.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    #[inline]
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        match peer_ip(req.extensions) {
            Some(ip) => Ok(Key::from(ip)),
            None => Err(KeyError::NoPeerAddress),
        }
    }
}

/// Which header trusted proxies record the client address in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, AWS ALB, most CDNs).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:443"`.
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => FORWARDED,
        }
    }
}

/// Serde-deserialisable configuration of [`ClientIp`].
///
/// ```
/// # use ee_core::ClientIpConfig;
/// let config: ClientIpConfig = serde_json::from_str(
///     r#"{ "trusted_proxies": ["10.0.0.0/8", "127.0.0.1/32"], "header": "forwarded" }"#,
/// ).unwrap();
/// assert_eq!(config.trusted_proxies.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Networks whose hops are proxies of ours. Empty (the default) trusts no
    /// proxy: the key is then the peer address and forwarding headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// The header the proxies write.
    pub header: ForwardedHeader,
}

/// The key is the client IP address, read from the forwarding header **only
/// through trusted proxies**.
///
/// The walk starts at the TCP peer. While the current hop is a trusted proxy, the
/// next hop is taken from the right end of the forwarding header (proxies append).
/// The first hop that is not trusted is the client. So a client that sends its own
/// `X-Forwarded-For` cannot choose its key: its entries sit left of the ones our
/// proxies appended, and are only reached if every hop to their right is trusted.
///
/// ```
/// use ee_core::{ClientIp, Key, KeyExtractor, PeerAddr};
///
/// let client_ip = ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
/// let mut req = http::Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")
///     .body(())
///     .unwrap();
/// req.extensions_mut().insert(PeerAddr("10.0.0.2:443".parse().unwrap()));
/// // 10.0.0.2 (peer) and 10.1.1.1 are ours; 203.0.113.7 is the client; 6.6.6.6 is
/// // whatever the client wrote and is ignored.
/// assert_eq!(client_ip.extract_from(&req).unwrap(), Key::Ip("203.0.113.7".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    trusted: Arc<[IpNet]>,
    header: ForwardedHeader,
}

impl ClientIp {
    /// A client IP extractor from its configuration.
    pub fn new(config: ClientIpConfig) -> Self {
        Self {
            trusted: config.trusted_proxies.into(),
            header: config.header,
        }
    }

    /// Trusts the given proxy networks, reading `X-Forwarded-For`.
    pub fn trusting(proxies: impl IntoIterator<Item = IpNet>) -> Self {
        Self::new(ClientIpConfig {
            trusted_proxies: proxies.into_iter().collect(),
            header: ForwardedHeader::XForwardedFor,
        })
    }

    /// Reads RFC 7239 `Forwarded` instead of `X-Forwarded-For`.
    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a peer address and request headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, KeyError> {
        let mut current = peer.to_canonical();
        if !self.is_trusted(current) {
            return Ok(current);
        }
        let name = self.header.name();
        // Several header lines form one list, in order (RFC 9110 §5.3).
        for line in headers.get_all(&name).iter().rev() {
            let found = match self.header {
                // No quoting in X-Forwarded-For: walk the bytes without
                // allocating, and judge only the hops the walk reaches (what a
                // client wrote further left cannot make our request fail).
                ForwardedHeader::XForwardedFor => self.walk(
                    &mut current,
                    line.as_bytes().rsplit(|b| *b == b','),
                    |hop| {
                        std::str::from_utf8(hop)
                            .map_err(|_| Cow::Borrowed("a hop is not visible ASCII"))
                            .and_then(|hop| parse_node(hop.trim()))
                    },
                ),
                ForwardedHeader::Forwarded => {
                    let line = line
                        .to_str()
                        .map_err(|_| malformed(&name, "not visible ASCII"))?;
                    self.walk(
                        &mut current,
                        split_quoted(line, ',')?.into_iter().rev(),
                        forwarded_for,
                    )
                }
            }
            .map_err(|reason| malformed(&name, reason))?;
            if found {
                return Ok(current);
            }
        }
        // Every hop was one of ours: the leftmost is as far as we can see.
        Ok(current)
    }
}

impl ClientIp {
    /// Steps through `hops` (right to left) while `current` is trusted; true
    /// once an untrusted hop, the client, is reached.
    fn walk<'h, H: ?Sized + 'h>(
        &self,
        current: &mut IpAddr,
        hops: impl Iterator<Item = &'h H>,
        parse: impl Fn(&'h H) -> Result<IpAddr, Cow<'static, str>>,
    ) -> Result<bool, Cow<'static, str>> {
        for hop in hops {
            *current = parse(hop)?.to_canonical();
            if !self.is_trusted(*current) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl KeyExtractor for ClientIp {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        let Some(peer) = peer_ip(req.extensions) else {
            return Err(KeyError::NoPeerAddress);
        };
        self.client_ip(peer, req.headers).map(Key::Ip)
    }
}

fn malformed(name: &HeaderName, reason: impl Into<Cow<'static, str>>) -> KeyError {
    KeyError::MalformedHeader {
        name: name.clone(),
        reason: reason.into(),
    }
}

/// Splits on `sep` outside double quotes, refusing an unterminated quote.
fn split_quoted(s: &str, sep: char) -> Result<Vec<&str>, KeyError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err(malformed(&FORWARDED, "unterminated quoted string"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Result<IpAddr, Cow<'static, str>> {
    let pairs = split_quoted(element, ';').map_err(|_| "unterminated quoted string")?;
    let mut found = None;
    for pair in pairs {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').ok_or("a forwarded-pair without `=`")?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return Err("`for` given twice in one element".into());
            }
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(rest) => rest.strip_suffix('"').ok_or("unterminated quoted string")?,
                None => value,
            };
            found = Some(parse_node(value)?);
        }
    }
    found.ok_or_else(|| "an element without `for=`".into())
}

/// An IP node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:80`. `unknown` and obfuscated identifiers (`_hidden`) carry no
/// address and are refused: a trusted proxy hid the client from us.
fn parse_node(node: &str) -> Result<IpAddr, Cow<'static, str>> {
    if node.is_empty() {
        return Err("an empty hop".into());
    }
    if node.eq_ignore_ascii_case("unknown") || node.starts_with('_') {
        return Err(format!("hop `{}` hides the client address", truncate(node)).into());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, port) = rest
            .split_once(']')
            .ok_or("an IPv6 hop without the closing `]`")?;
        if !(port.is_empty() || valid_port(port.strip_prefix(':').unwrap_or("x"))) {
            return Err(format!("hop `{}` has a bad port", truncate(node)).into());
        }
        return ip
            .parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("hop `{}` is not an IP address", truncate(node)).into());
    }
    if let Some((ip, port)) = node.rsplit_once(':')
        && valid_port(port)
        && let Ok(ip) = ip.parse::<std::net::Ipv4Addr>()
    {
        return Ok(IpAddr::V4(ip));
    }
    Err(format!("hop `{}` is not an IP address", truncate(node)).into())
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// Keeps error details short when a header is long.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The key is the value of a header: an API key, a tenant id, a device id.
///
/// The value must be 1..=`max_len` bytes of visible ASCII (default 256); an absent
/// header is [`KeyError::MissingHeader`], anything else unusable is
/// [`KeyError::MalformedHeader`].
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
    max_len: usize,
}

impl HeaderKey {
    /// The key from header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name, max_len: 256 }
    }

    /// Sets the longest accepted value, in bytes.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }
}

impl KeyExtractor for HeaderKey {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        let mut values = req.headers.get_all(&self.name).iter();
        let value = values
            .next()
            .ok_or_else(|| KeyError::MissingHeader(self.name.clone()))?;
        if values.next().is_some() {
            return Err(malformed(&self.name, "sent more than once"));
        }
        let value = value.as_bytes();
        if value.is_empty() {
            return Err(malformed(&self.name, "empty"));
        }
        if value.len() > self.max_len {
            return Err(malformed(
                &self.name,
                format!("longer than {} bytes", self.max_len),
            ));
        }
        if !value.iter().all(|b| b.is_ascii_graphic()) {
            return Err(malformed(&self.name, "not visible ASCII"));
        }
        // All bytes are ASCII, so this is valid UTF-8.
        let text = std::str::from_utf8(value).map_err(|_| malformed(&self.name, "not ASCII"))?;
        Ok(Key::text(text))
    }
}

/// The authenticated principal (user id, service account, API client) an
/// authentication layer puts in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(pub Arc<str>);

impl Subject {
    /// A subject from its identifier.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }
}

/// The key is the authenticated [`Subject`]; an unauthenticated request fails
/// with [`KeyError::Unauthenticated`] (401).
#[derive(Debug, Clone, Copy, Default)]
pub struct SubjectKey;

impl KeyExtractor for SubjectKey {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        match req.extensions.get::<Subject>() {
            Some(s) => Ok(Key::Text(s.0.clone())),
            None => Err(KeyError::Unauthenticated),
        }
    }
}

/// The key is the matched route template with the method (`GET /orders/{id}`),
/// from axum's `MatchedPath` (feature `axum`): one limit or quota per endpoint,
/// never per raw path. Outside a matched route (a layer added with
/// `Router::layer` sees the fallback unmatched) the request is refused with
/// [`KeyError::Rejected`].
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteKey;

#[cfg(feature = "axum")]
impl KeyExtractor for RouteKey {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        req.extensions
            .get::<axum::extract::MatchedPath>()
            .map(|path| Key::text(format!("{} {}", req.method, path.as_str())))
            .ok_or_else(|| KeyError::Rejected("no route matches this request".into()))
    }
}

/// Two keys at once (per user *and* route, per tenant *and* IP): the key is
/// both, joined by a space.
impl<A: KeyExtractor, B: KeyExtractor> KeyExtractor for (A, B) {
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        let (a, b) = (self.0.extract(req)?, self.1.extract(req)?);
        Ok(Key::text(format!("{a} {b}")))
    }
}

/// A key extractor from a closure (see [`key_fn`]).
#[derive(Clone)]
pub struct KeyFn<F>(F);

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFn")
    }
}

/// A key extractor from a closure.
///
/// ```
/// use ee_core::{key_fn, Key, KeyError, KeyExtractor};
///
/// // Per tenant and route, from a header and the path.
/// let by_tenant_route = key_fn(|req| {
///     let tenant = req.headers.get("x-tenant").and_then(|v| v.to_str().ok())
///         .ok_or(KeyError::Rejected("tenant unknown".into()))?;
///     Ok(Key::text(format!("{tenant}:{}", req.uri.path())))
/// });
/// let req = http::Request::get("/orders").header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(by_tenant_route.extract_from(&req).unwrap(), Key::text("acme:/orders"));
/// ```
pub fn key_fn<F>(f: F) -> KeyFn<F>
where
    F: Fn(&RequestHead<'_>) -> Result<Key, KeyError> + Send + Sync + 'static,
{
    KeyFn(f)
}

impl<F> KeyExtractor for KeyFn<F>
where
    F: Fn(&RequestHead<'_>) -> Result<Key, KeyError> + Send + Sync + 'static,
{
    fn extract(&self, req: &RequestHead<'_>) -> Result<Key, KeyError> {
        (self.0)(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nodes_parse_with_and_without_ports() {
        assert_eq!(parse_node("1.2.3.4").unwrap(), ip("1.2.3.4"));
        assert_eq!(parse_node("1.2.3.4:8080").unwrap(), ip("1.2.3.4"));
        assert_eq!(parse_node("2001:db8::1").unwrap(), ip("2001:db8::1"));
        assert_eq!(parse_node("[2001:db8::1]").unwrap(), ip("2001:db8::1"));
        assert_eq!(parse_node("[2001:db8::1]:443").unwrap(), ip("2001:db8::1"));
        for bad in [
            "",
            "unknown",
            "_hidden",
            "1.2.3",
            "1.2.3.4:",
            "1.2.3.4:99999x",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "example.com",
        ] {
            assert!(parse_node(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn forwarded_elements() {
        assert_eq!(
            forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43").unwrap(),
            ip("192.0.2.60")
        );
        assert_eq!(
            forwarded_for(r#" For="[2001:db8:cafe::17]:4711""#).unwrap(),
            ip("2001:db8:cafe::17")
        );
        assert!(forwarded_for("proto=https").is_err());
        assert!(forwarded_for("for=1.2.3.4;for=5.6.7.8").is_err());
        assert!(forwarded_for("for").is_err());
    }
}
