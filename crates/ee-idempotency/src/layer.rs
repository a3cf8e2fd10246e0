//! `IdempotencyLayer` and the `Idempotency<S, St>` service.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use ee_core::KeyExtractor;
use ee_core::{KeySpace, Problem, RequestHead};
use http::header;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use crate::body::IdempotencyBody;
use crate::config::{IdempotencyConfig, OnBackendError};
use crate::error::IdempotencyError;
use crate::key::{IDEMPOTENT_REPLAYED, parse_key};
use crate::store::{Begin, Fingerprint, IdempotencyStore, StoredResponse};

type StatusFn = dyn Fn(StatusCode) -> bool + Send + Sync;

struct Shared<St> {
    store: St,
    config: IdempotencyConfig,
    methods: Vec<Method>,
    scope: Option<Arc<dyn KeyExtractor>>,
    store_when: Option<Arc<StatusFn>>,
}

/// Makes unsafe requests with an `Idempotency-Key` run at most once; see the
/// [crate docs](crate).
pub struct IdempotencyLayer<St> {
    shared: Arc<Shared<St>>,
}

impl<St> Clone for IdempotencyLayer<St> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<St> fmt::Debug for IdempotencyLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<St: IdempotencyStore> IdempotencyLayer<St> {
    /// A layer on `store` with the default configuration.
    pub fn new(store: St) -> Self {
        Self::with_config(store, IdempotencyConfig::default())
    }

    /// A layer on `store` with `config`. Methods that do not parse are ignored
    /// with a warning.
    pub fn with_config(store: St, config: IdempotencyConfig) -> Self {
        let methods = config
            .methods
            .iter()
            .filter_map(|m| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) => Some(method),
                Err(_) => {
                    tracing::warn!(method = %m, "ignoring an invalid method in the idempotency config");
                    None
                }
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                store,
                config,
                methods,
                scope: None,
                store_when: None,
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut Shared<St>)) -> Self
    where
        St: Clone,
    {
        let mut shared = match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared,
            Err(arc) => Shared {
                store: arc.store.clone(),
                config: arc.config.clone(),
                methods: arc.methods.clone(),
                scope: arc.scope.clone(),
                store_when: arc.store_when.clone(),
            },
        };
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Keys are scoped by `scope` (tenant, user, route…): the same key from
    /// two users is two keys. Without it, keys are global to the store.
    pub fn scope(self, scope: impl KeyExtractor) -> Self {
        self.edit(|s| s.scope = Some(Arc::new(scope)))
    }

    /// Which response statuses are stored (default: all but 5xx, or all with
    /// `store_server_errors`). A response not stored frees its key.
    pub fn store_when(self, f: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.edit(|s| s.store_when = Some(Arc::new(f)))
    }

    /// Requires the header on every guarded request (400 without it).
    pub fn required(self, required: bool) -> Self {
        self.edit(|s| s.config.required = required)
    }
}

impl<S, St> Layer<S> for IdempotencyLayer<St> {
    type Service = Idempotency<S, St>;

    fn layer(&self, inner: S) -> Idempotency<S, St> {
        Idempotency {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`IdempotencyLayer`] wraps around yours.
pub struct Idempotency<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S: Clone, St> Clone for Idempotency<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, St> fmt::Debug for Idempotency<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The future of [`Idempotency`].
pub type ResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<IdempotencyBody<B>>, E>> + Send>>;

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Idempotency<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    St: IdempotencyStore,
    ReqB: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    ResB: Body<Data = Bytes> + Send + Unpin + 'static,
    ResB::Error: Send,
{
    type Response = Response<IdempotencyBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(handle(self.shared.clone(), inner, req))
    }
}

fn problem<B>(err: impl Into<Problem>) -> Response<IdempotencyBody<B>> {
    Problem::into_response::<Bytes>(err.into()).map(IdempotencyBody::full)
}

fn count(outcome: &'static str) {
    metrics::counter!("ee_idempotency_requests_total", "outcome" => outcome).increment(1);
}

/// A holder token unique to this process run and request.
fn token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    // Odd multiplier: distinct counters give distinct tokens.
    seed ^ NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// SHA-256 over method, path and query, the credentials (`Authorization`,
/// `Cookie`) and the body. With the credentials in, another client that sends
/// the same key and payload gets 422, never the first client's stored response.
fn fingerprint(parts: &http::request::Parts, body: &[u8]) -> Fingerprint {
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in parts.headers.get_all(name) {
            hash.update(b"\n");
            hash.update(value.as_bytes());
        }
        hash.update(b"\n--");
    }
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().into()
}

/// The key this request holds. It is freed explicitly where a retry may safely
/// run again (the handler failed, answered 5xx, or its response cannot be
/// stored). A request cut off after taking its key (client gone, timeout)
/// does *not* free it: the handler may have done its work, so the key stays
/// taken until the lease ends and retries get 409 meanwhile.
struct HeldKey<St: IdempotencyStore> {
    store: St,
    key: String,
    token: u64,
}

impl<St: IdempotencyStore> HeldKey<St> {
    /// Renews the lease every third of it while the handler runs, so a slow
    /// handler keeps its key; stops when dropped (the handler finished, or the
    /// request was cut off: then the lease runs out as documented).
    fn keep_alive(&self, lease: std::time::Duration) -> Option<Heartbeat> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (store, key, token) = (self.store.clone(), self.key.clone(), self.token);
        let every = (lease / 3).max(std::time::Duration::from_millis(10));
        let task = runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store.extend(&key, token, lease).await {
                    Ok(true) => {}
                    Ok(false) => break, // lost the key: nothing left to renew
                    Err(e) => {
                        tracing::debug!(error = %e, "idempotency lease not renewed; retrying")
                    }
                }
            }
        });
        Some(Heartbeat(task))
    }

    async fn release(self) {
        if let Err(e) = self.store.release(&self.key, self.token).await {
            tracing::warn!(error = %e, "idempotency key not released; its lease will free it");
        }
    }
}

/// Stops the lease renewal when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The headers worth replaying: without hop-by-hop fields (ee-core's list
/// and any named in `Connection`, RFC 9110 §7.6.1) and `Content-Length`.
fn storable_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    ee_core::remove_hop_by_hop(&mut kept);
    kept.remove(header::CONTENT_LENGTH);
    kept
}

fn replay<B>(response: StoredResponse) -> Response<IdempotencyBody<B>> {
    let mut out = Response::new(IdempotencyBody::full(response.body));
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out.headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    out
}

enum Collected<B> {
    Whole(Bytes),
    TooLarge(Bytes, B),
    Failed,
}

/// Reads a body up to `max` bytes; past that, hands back what was read and the rest.
async fn collect_up_to<B: Body<Data = Bytes> + Unpin>(mut body: B, max: usize) -> Collected<B> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Collected::Failed;
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > max {
                return Collected::TooLarge(buf.freeze(), body);
            }
        }
        // Trailers are not stored (a replay sends none).
    }
    Collected::Whole(buf.freeze())
}

async fn handle<S, St, ReqB, ResB>(
    shared: Arc<Shared<St>>,
    mut inner: S,
    req: Request<ReqB>,
) -> Result<Response<IdempotencyBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: IdempotencyStore,
    ReqB: Body<Data = Bytes> + From<Bytes>,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResB: Body<Data = Bytes> + Unpin,
{
    let pass = |res: Response<ResB>| res.map(IdempotencyBody::inner);
    let config = &shared.config;
    if !shared.methods.contains(req.method()) {
        return inner.call(req).await.map(pass);
    }
    let key = match parse_key(req.headers(), config.max_key_len) {
        Ok(Some(key)) => key,
        Ok(None) if !config.required => return inner.call(req).await.map(pass),
        Ok(None) => {
            count("rejected");
            return Ok(problem(IdempotencyError::MissingKey));
        }
        Err(e) => {
            count("rejected");
            return Ok(problem(e));
        }
    };
    let scope = match &shared.scope {
        Some(scope) => match scope.extract(&RequestHead::from(&req)) {
            Ok(scope) => scope.to_string(),
            Err(e) => return Ok(problem(e)),
        },
        None => String::new(),
    };
    let storage_key = KEYS.key(&[&scope, &key]);

    // The body is part of the fingerprint: read it (bounded), then rebuild the request.
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, config.max_request_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            count("rejected");
            return Ok(problem(IdempotencyError::BodyTooLarge(
                config.max_request_body,
            )));
        }
        Err(_) => {
            count("rejected");
            return Ok(problem(IdempotencyError::BodyUnreadable));
        }
    };
    let fingerprint = fingerprint(&parts, &body);
    let req = Request::from_parts(parts, ReqB::from(body));

    let token = token();
    let begin = shared
        .store
        .begin(&storage_key, &fingerprint, token, config.lease())
        .await;
    match begin {
        Err(e) => {
            metrics::counter!("ee_idempotency_backend_errors_total").increment(1);
            tracing::warn!(error = %e, on_backend_error = ?config.on_backend_error, "idempotency store failed");
            match config.on_backend_error {
                OnBackendError::FailClosed => Ok(problem(IdempotencyError::Unavailable)),
                OnBackendError::FailOpen => inner.call(req).await.map(pass),
            }
        }
        Ok(Begin::InFlight {
            fingerprint: theirs,
        }) => {
            if theirs == fingerprint {
                count("conflict");
                Ok(problem(IdempotencyError::InFlight))
            } else {
                count("mismatch");
                Ok(problem(IdempotencyError::KeyReused))
            }
        }
        Ok(Begin::Completed {
            fingerprint: theirs,
            response,
        }) => {
            if theirs == fingerprint {
                count("replayed");
                Ok(replay(response))
            } else {
                count("mismatch");
                Ok(problem(IdempotencyError::KeyReused))
            }
        }
        Ok(Begin::Acquired) => {
            let held = HeldKey {
                store: shared.store.clone(),
                key: storage_key,
                token,
            };
            let heartbeat = held.keep_alive(config.lease());
            let called = inner.call(req).await;
            drop(heartbeat);
            let response = match called {
                Ok(response) => response,
                Err(e) => {
                    // The handler failed: like a 5xx, a retry may run again.
                    held.release().await;
                    return Err(e);
                }
            };
            count("executed");
            let status = response.status();
            let storable = match &shared.store_when {
                Some(f) => f(status),
                None => config.store_server_errors || !status.is_server_error(),
            };
            if !storable {
                held.release().await;
                return Ok(pass(response));
            }
            let (parts, body) = response.into_parts();
            match collect_up_to(body, config.max_response_body).await {
                Collected::Whole(bytes) => {
                    let stored = StoredResponse {
                        status,
                        headers: storable_headers(&parts.headers),
                        body: bytes.clone(),
                    };
                    let completed = shared
                        .store
                        .complete(&held.key, &fingerprint, held.token, &stored, config.ttl())
                        .await;
                    match completed {
                        Ok(true) => {
                            metrics::histogram!("ee_idempotency_stored_bytes")
                                .record(bytes.len() as f64);
                        }
                        Ok(false) => {
                            // The lease ran out while the handler worked: another
                            // request may have taken the key and run again.
                            count("lease_lost");
                            tracing::warn!(
                                lease_ms = config.lease_ms,
                                "idempotency lease expired before the response was stored; raise lease_ms above the handler's duration"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "idempotent response not stored; a retry will run again");
                            held.release().await;
                        }
                    }
                    Ok(Response::from_parts(parts, IdempotencyBody::full(bytes)))
                }
                Collected::TooLarge(prefix, rest) => {
                    count("not_stored");
                    tracing::warn!(
                        max_response_body = config.max_response_body,
                        "idempotent response too large to store; a retry will run again"
                    );
                    held.release().await;
                    Ok(Response::from_parts(
                        parts,
                        IdempotencyBody::prefixed(prefix, rest),
                    ))
                }
                Collected::Failed => {
                    // The handler ran but its body broke: keep the key until
                    // the lease ends rather than invite a second run.
                    count("body_failed");
                    Ok(problem(Problem::new(StatusCode::INTERNAL_SERVER_ERROR)))
                }
            }
        }
    }
}

/// `ee:idempotency:<scope>:<key>` (escaped): one key per record, so Cluster-safe.
static KEYS: std::sync::LazyLock<KeySpace> =
    std::sync::LazyLock::new(|| KeySpace::new("idempotency"));
