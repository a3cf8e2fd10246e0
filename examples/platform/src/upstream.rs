//! Calls between services and from the gateway: a static table of instances
//! per service, round robin, a per-call timeout, and problem+json answers
//! when no instance answers (502) or the one asked is too slow (504). The
//! edge's limits apply: a request body that arrives too slowly is a 408, an
//! answer over the size limit a 502 (or cut off, when streamed).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use ee_core::Problem;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::edge::EdgeSettings;

/// The largest request body passed on (it is held whole, so that a refused
/// connection can be retried on the next instance).
pub const MAX_BODY: usize = 1 << 20;

/// The longest wait for a connection to an instance: an instance that is
/// down without refusing (no RST) is given up on this soon, and the next one
/// tried, within the call's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest an idle connection to an instance is kept for reuse (less
/// when the services' header read timeout is short: see [`client`]).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The instances of each service, by name (`user`, `product`, …), each a
/// base URL such as `http://127.0.0.1:8101`.
pub type UpstreamTable = HashMap<String, Vec<String>>;

struct Pool {
    bases: Vec<(http::uri::Scheme, http::uri::Authority)>,
    next: AtomicUsize,
    /// How long a call to this service may take for its response head.
    timeout: Duration,
}

/// A client over an [`UpstreamTable`]. Cheap to clone.
#[derive(Clone)]
pub struct Upstreams {
    pools: Arc<HashMap<String, Pool>>,
    client: Client<HttpConnector, Body>,
    timeout: Duration,
    /// The calling service's tokens: [`call`](Self::call) sends one, minted
    /// for the callee, with every request.
    caller: Option<ee_auth::ServiceTokens>,
    /// How long a request body may take to arrive.
    body_read_timeout: Duration,
    /// The largest answer taken from an instance.
    max_response_bytes: u64,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("services", &self.pools.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field(
                "caller",
                &self.caller.as_ref().map(ee_auth::ServiceTokens::subject),
            )
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// A table of upstreams that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// A base URL that is not `http://host:port`.
    #[error("upstream {service}: {url:?} is not http://host:port ({reason})")]
    BadUrl {
        /// The service.
        service: String,
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A timeout for a service that has no upstreams.
    #[error("a timeout for {0:?}, which has no upstreams")]
    UnknownService(String),
}

impl Upstreams {
    /// A client of `table`; each call waits `timeout` at most for the
    /// response head. The edge's limits are [`EdgeSettings::default`]'s
    /// until [`with_edge`](Self::with_edge).
    ///
    /// # Errors
    /// A base URL that is not `http://host:port`.
    pub fn new(table: &UpstreamTable, timeout: Duration) -> Result<Self, UpstreamError> {
        let mut pools = HashMap::new();
        for (service, urls) in table {
            let mut bases = Vec::with_capacity(urls.len());
            for url in urls {
                let bad = |reason: String| UpstreamError::BadUrl {
                    service: service.clone(),
                    url: url.clone(),
                    reason,
                };
                let uri: Uri = url.parse().map_err(|e| bad(format!("not a URL: {e}")))?;
                match (uri.scheme(), uri.authority()) {
                    (Some(s), Some(a)) if s == &http::uri::Scheme::HTTP => {
                        bases.push((s.clone(), a.clone()));
                    }
                    _ => return Err(bad("not an http URL with a host".to_owned())),
                }
            }
            pools.insert(
                service.clone(),
                Pool {
                    bases,
                    next: AtomicUsize::new(0),
                    timeout,
                },
            );
        }
        let edge = EdgeSettings::default();
        Ok(Self {
            pools: Arc::new(pools),
            client: client(timeout, &edge),
            timeout,
            caller: None,
            body_read_timeout: edge.body_read_timeout(),
            max_response_bytes: edge.max_upstream_response_bytes,
        })
    }

    /// The same upstreams, calling as the service whose tokens these are.
    #[must_use]
    pub fn calling_as(mut self, tokens: Option<ee_auth::ServiceTokens>) -> Self {
        self.caller = tokens;
        self
    }

    /// The base URLs of `service`'s instances (`http://host:port`).
    pub fn instances(&self, service: &str) -> Vec<String> {
        self.pools.get(service).map_or_else(Vec::new, |p| {
            p.bases
                .iter()
                .map(|(scheme, authority)| format!("{scheme}://{authority}"))
                .collect()
        })
    }

    /// Applies the edge's limits: how long a request body may take to
    /// arrive (`body_read_timeout_ms`), how large an answer may be
    /// (`max_upstream_response_bytes`), and keeps idle connections for less
    /// than the services' `header_read_timeout_ms`, after which they close
    /// them.
    #[must_use]
    pub fn with_edge(mut self, edge: &EdgeSettings) -> Self {
        self.client = client(self.timeout, edge);
        self.body_read_timeout = edge.body_read_timeout();
        self.max_response_bytes = edge.max_upstream_response_bytes;
        self
    }

    /// Gives the services named in `timeouts` a timeout of their own (ms),
    /// instead of the one given to [`new`](Self::new).
    ///
    /// # Errors
    /// A service that is not in the table.
    pub fn with_timeouts(mut self, timeouts: &HashMap<String, u64>) -> Result<Self, UpstreamError> {
        let pools = Arc::get_mut(&mut self.pools).expect("not shared yet");
        for (service, ms) in timeouts {
            let pool = pools
                .get_mut(service)
                .ok_or_else(|| UpstreamError::UnknownService(service.clone()))?;
            pool.timeout = Duration::from_millis(*ms);
        }
        Ok(self)
    }

    /// Sends `req` (its path and query kept) to an instance of `service`,
    /// round robin. An instance that refuses the connection is skipped for
    /// the next one, since nothing reached it; once the request is sent, its
    /// answer (or its timeout, 504) is final.
    ///
    /// The body is read whole first, within the body read timeout (408
    /// problem past it). The callee's parent span is the current request's
    /// (ee-logging's `TraceContext::current()`), whatever `traceparent` came
    /// in `req`. An answer larger than the size limit is a 502 problem when
    /// its `Content-Length` says so, and cut off (an error in the body) when
    /// it grows past the limit while streamed.
    pub async fn forward(&self, service: &str, req: Request<Body>) -> Response<Body> {
        let Some(pool) = self.pools.get(service).filter(|p| !p.bases.is_empty()) else {
            return bad_gateway(service, "no instance is configured").into_response();
        };
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        // A body can be sent once; keep it whole so that a refused connection
        // can be tried on the next instance. A client that sends it slowly
        // holds a connection and this task: it gets the read timeout.
        let read = http_body_util::Limited::new(body, MAX_BODY).collect();
        let body = match tokio::time::timeout(self.body_read_timeout, read).await {
            Err(_) => return self.body_timeout().into_response(),
            Ok(read) => read,
        };
        let body = match body {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                    .with_detail(format!("the request body is over {MAX_BODY} bytes"))
                    .into_response();
            }
            Err(e) => {
                return Problem::new(StatusCode::BAD_REQUEST)
                    .with_detail(format!("the request body could not be read: {e}"))
                    .into_response();
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        // The trace goes on in the callee, with this request's span as its
        // parent (not the span of whoever sent `req`).
        if let Some(trace) = ee_logging::TraceContext::current() {
            parts.headers.remove(&ee_logging::TRACESTATE);
            trace.inject(&mut parts.headers);
        }
        let first = pool.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = String::new();
        for i in 0..pool.bases.len() {
            let (scheme, authority) = &pool.bases[(first + i) % pool.bases.len()];
            let uri = Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(path.clone())
                .build()
                .expect("scheme, authority and path from valid URIs");
            let mut out = Request::new(Body::from(body.clone()));
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.headers_mut() = parts.headers.clone();
            match tokio::time::timeout(pool.timeout, self.client.request(out)).await {
                Err(_) => {
                    tracing::warn!(service, instance = %authority, "upstream timed out");
                    return Problem::ee(StatusCode::GATEWAY_TIMEOUT, "gateway", "upstream-timeout")
                        .with_title("Upstream timed out")
                        .with_detail(format!(
                            "the {service} service did not answer within {} ms",
                            pool.timeout.as_millis()
                        ))
                        .into_response();
                }
                Ok(Ok(resp)) => {
                    return self.relay(service, authority, &parts.method, resp);
                }
                Ok(Err(e)) if e.is_connect() => {
                    tracing::warn!(service, instance = %authority, error = %e, "upstream refused; trying the next instance");
                    last_error = e.to_string();
                }
                Ok(Err(e)) => {
                    tracing::warn!(service, instance = %authority, error = %e, "upstream failed");
                    return bad_gateway(service, &format!("the instance failed: {e}"))
                        .into_response();
                }
            }
        }
        bad_gateway(
            service,
            &format!("no instance could be reached (last: {last_error})"),
        )
        .into_response()
    }

    /// A JSON call to `service`: `method path` with `body` and `headers`,
    /// and the caller's service token (see [`calling_as`](Self::calling_as)).
    /// Returns the status and the body decoded as `T` for 2xx; any other
    /// answer comes back as the problem it carried (or a 502 if it was not
    /// one).
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        service: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&'static str, String)],
    ) -> Result<(StatusCode, T), Problem> {
        // The caller's trace goes on in the callee (`forward` sets it).
        let mut req = Request::builder().method(method).uri(path);
        if let Some(tokens) = &self.caller {
            let token = tokens.mint(service).map_err(|e| {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                    .with_detail(format!("no service token for the {service} service: {e}"))
            })?;
            req = req.header(header::AUTHORIZATION, token.header_value());
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::to_vec(b).expect("a serializable body"),
                )),
            None => req.body(Body::empty()),
        }
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR).with_detail(e.to_string()))?;
        let resp = self.forward(service, req).await;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| bad_gateway(service, &format!("the answer could not be read: {e}")))?
            .to_bytes();
        if status.is_success() {
            // No body (204) reads as `null`.
            let json: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            let value = serde_json::from_slice(json).map_err(|e| {
                bad_gateway(
                    service,
                    &format!("the answer was not the expected JSON: {e}"),
                )
            })?;
            Ok((status, value))
        } else {
            Err(
                serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| {
                    bad_gateway(
                        service,
                        &format!("it answered {status} without a problem body"),
                    )
                }),
            )
        }
    }
}

impl Upstreams {
    /// An instance's answer (to a `method` request), passed on within the
    /// size limit.
    fn relay<B>(
        &self,
        service: &str,
        instance: &http::uri::Authority,
        method: &Method,
        resp: Response<B>,
    ) -> Response<Body>
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let (mut head, incoming) = resp.into_parts();
        let limit = self.max_response_bytes;
        // The Content-Length of a HEAD, 204 or 304 answer announces no body.
        let bodiless = method == Method::HEAD
            || head.status == StatusCode::NO_CONTENT
            || head.status == StatusCode::NOT_MODIFIED;
        let length = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| !bodiless);
        if let Some(length) = length.filter(|l| *l > limit) {
            tracing::warn!(service, %instance, length, limit, "upstream answer over the size limit");
            return Problem::ee(
                StatusCode::BAD_GATEWAY,
                "gateway",
                "upstream-response-too-large",
            )
            .with_title("Upstream response too large")
            .with_detail(format!(
                "the {service} service answered {length} bytes, over the {limit} allowed"
            ))
            .into_response();
        }
        strip_hop_by_hop(&mut head.headers);
        // Streamed (or lying about its length): cut off past the limit. The
        // error ends the body, which closes the client's connection.
        let service = service.to_owned();
        let instance = instance.clone();
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        let body = http_body_util::Limited::new(incoming, cap).map_err(move |e| {
            if e.is::<http_body_util::LengthLimitError>() {
                tracing::warn!(
                    service,
                    %instance,
                    limit,
                    "upstream answer cut off: over the size limit"
                );
            }
            e
        });
        Response::from_parts(head, Body::new(body))
    }

    /// 408: the request body did not arrive in time. The connection is
    /// closed after it (RFC 9110 §15.5.9).
    fn body_timeout(&self) -> Problem {
        Problem::ee(StatusCode::REQUEST_TIMEOUT, "gateway", "body-timeout")
            .with_title("Request body too slow")
            .with_detail(format!(
                "the request body did not arrive within {} ms",
                self.body_read_timeout.as_millis()
            ))
            .with_header(header::CONNECTION, http::HeaderValue::from_static("close"))
    }
}

/// The client of the instances: `timeout` bounds each connection attempt,
/// and an idle connection is let go before the services' header read
/// timeout closes it (hyper's timer also runs while a connection waits for
/// its next request), so a request is not sent on a connection being
/// closed.
fn client(timeout: Duration, edge: &EdgeSettings) -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout.min(CONNECT_TIMEOUT)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT.min(edge.header_read_timeout() / 2))
        .build(connector)
}

/// 502 from the gateway (or a service calling another).
fn bad_gateway(service: &str, detail: &str) -> Problem {
    Problem::ee(StatusCode::BAD_GATEWAY, "gateway", "upstream-unavailable")
        .with_title("Upstream unavailable")
        .with_detail(format!("the {service} service: {detail}"))
}

/// Connection-specific fields are not forwarded (RFC 9110 §7.6.1), and
/// `Host` comes from the upstream's URI.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    ee_core::remove_hop_by_hop(headers);
    headers.remove(header::HOST);
}
