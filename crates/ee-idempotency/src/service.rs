//! `Idempotency<S, St>`: the tower service, and the steps of one guarded
//! request: its key, its fingerprint, taking the key, then replaying what
//! is stored or running the handler and storing its response.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use ee_core::{KeySpace, OnBackendError, Problem, RequestHead, Subject};
use http::header;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use sha2::{Digest, Sha256};
use tower::Service;

use crate::body::IdempotencyBody;
use crate::error::IdempotencyError;
use crate::held::{HeldKey, token};
use crate::key::{IDEMPOTENT_REPLAYED, parse_key};
use crate::layer::Shared;
use crate::memory::MemoryStore;
use crate::store::{Begin, Fingerprint, IdempotencyStore, StoredResponse};

/// The service [`IdempotencyLayer`](crate::IdempotencyLayer) wraps around yours.
pub struct Idempotency<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S, St> Idempotency<S, St> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St>>) -> Self {
        Self { inner, shared }
    }
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

/// `ee:idempotency:<scope>:<key>` (escaped): one key per record, so Cluster-safe.
static KEYS: std::sync::LazyLock<KeySpace> =
    std::sync::LazyLock::new(|| KeySpace::new("idempotency"));

fn problem<B>(err: impl Into<Problem>) -> Response<IdempotencyBody<B>> {
    Problem::into_response::<Bytes>(err.into()).map(IdempotencyBody::full)
}

fn pass<B>(response: Response<B>) -> Response<IdempotencyBody<B>> {
    response.map(IdempotencyBody::inner)
}

/// One request through the layer: unguarded methods and keyless requests
/// pass; a guarded one takes its key, then replays, refuses or runs.
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
    let storage_key = match storage_key(&shared, &req) {
        Guard::Pass => return inner.call(req).await.map(pass),
        Guard::Refuse(response) => return Ok(response),
        Guard::Key(key) => key,
    };
    let (req, fingerprint) = match fingerprinted(&shared, req).await {
        Ok(read) => read,
        Err(response) => return Ok(response),
    };
    let token = token();
    match begin(&shared, &storage_key, &fingerprint, token).await {
        Started::Held => {
            let held = HeldKey {
                store: shared.store.clone(),
                key: storage_key,
                token,
            };
            run(&shared, held, &fingerprint, inner, req).await
        }
        Started::HeldInMemory(store) => {
            let held = HeldKey {
                store,
                key: storage_key,
                token,
            };
            run(&shared, held, &fingerprint, inner, req).await
        }
        Started::Taken(found) => Ok(answer_taken(&shared, found, &fingerprint)),
        Started::Unguarded => inner.call(req).await.map(pass),
        Started::Refused => Ok(problem(IdempotencyError::Unavailable)),
    }
}

/// Whether and under which storage key a request is guarded.
enum Guard<B> {
    /// Not a guarded method, or no key where none is required: runs as is.
    Pass,
    /// A missing, malformed or unscoped key: this problem answers.
    Refuse(Response<IdempotencyBody<B>>),
    /// Guarded under this storage key.
    Key(String),
}

/// The request's storage key, if it is guarded: `ee:idempotency:<scope>:<key>`
/// with a scope, else `ee:idempotency:<method>:<path>:<subject>:<key>`.
fn storage_key<St, ReqB, ResB>(shared: &Shared<St>, req: &Request<ReqB>) -> Guard<ResB> {
    let config = &shared.config;
    if !shared.methods.contains(req.method()) {
        return Guard::Pass;
    }
    let key = match parse_key(req.headers(), config.max_key_len) {
        Ok(Some(key)) => key,
        Ok(None) if !config.required => return Guard::Pass,
        Ok(None) => {
            shared.metrics.rejected.increment(1);
            return Guard::Refuse(problem(IdempotencyError::MissingKey));
        }
        Err(e) => {
            shared.metrics.rejected.increment(1);
            return Guard::Refuse(problem(e));
        }
    };
    match &shared.scope {
        Some(scope) => match scope.extract(&RequestHead::from(req)) {
            Ok(scope) => Guard::Key(KEYS.key(&[&scope.to_string(), &key])),
            Err(e) => Guard::Refuse(problem(e)),
        },
        // The default scope: the method, the path and the authenticated subject
        // (when an auth layer ran first), so one client's key never meets another
        // client's, another route's or another service's on a shared store.
        None => {
            let subject = req.extensions().get::<Subject>().map_or("", |s| &s.0);
            Guard::Key(KEYS.key(&[req.method().as_str(), req.uri().path(), subject, &key]))
        }
    }
}

/// Reads the body (bounded) into the fingerprint and rebuilds the request;
/// the problem that refuses a body too large or unreadable.
async fn fingerprinted<St, ReqB, ResB>(
    shared: &Shared<St>,
    req: Request<ReqB>,
) -> Result<(Request<ReqB>, Fingerprint), Response<IdempotencyBody<ResB>>>
where
    ReqB: Body<Data = Bytes> + From<Bytes>,
    ReqB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = shared.config.max_request_body;
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            shared.metrics.rejected.increment(1);
            return Err(if e.is::<http_body_util::LengthLimitError>() {
                problem(IdempotencyError::BodyTooLarge(max))
            } else {
                problem(IdempotencyError::BodyUnreadable)
            });
        }
    };
    let fingerprint = fingerprint(&parts, &body);
    Ok((Request::from_parts(parts, ReqB::from(body)), fingerprint))
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

/// Where a request stands once it asked for its key.
enum Started {
    /// It holds the key in the layer's store.
    Held,
    /// The store failed and, falling back to memory, it holds the key there.
    HeldInMemory(MemoryStore),
    /// Another request holds or held the key.
    Taken(Begin),
    /// The store failed and the layer fails open: it runs unguarded.
    Unguarded,
    /// The store failed and the layer fails closed: 503.
    Refused,
}

/// Takes the key (first writer wins), or finds who has it. A layer falling
/// back to memory looks there first: a key this instance took while the
/// store was down is answered from memory even once the store is back.
async fn begin<St: IdempotencyStore>(
    shared: &Shared<St>,
    key: &str,
    fingerprint: &Fingerprint,
    token: u64,
) -> Started {
    let lease = shared.config.lease();
    if let Some(found) = shared.fallback.as_ref().and_then(|m| m.peek(key)) {
        return Started::Taken(found);
    }
    let error = match shared.store.begin(key, fingerprint, token, lease).await {
        Ok(Begin::Acquired) => return Started::Held,
        Ok(found) => return Started::Taken(found),
        Err(e) => e,
    };
    let policy = shared.config.on_backend_error;
    shared.metrics.backend_errors.increment(1);
    tracing::warn!(error = %error, on_backend_error = ?policy, "idempotency store failed");
    match (policy, &shared.fallback) {
        (OnBackendError::FallbackToMemory, Some(memory)) => {
            match memory.begin(key, fingerprint, token, lease).await {
                Ok(Begin::Acquired) => Started::HeldInMemory(memory.clone()),
                Ok(found) => Started::Taken(found),
                Err(_) => Started::Refused,
            }
        }
        (OnBackendError::FailOpen, _) => Started::Unguarded,
        _ => Started::Refused,
    }
}

/// A key another request holds (409, or 422 for another payload) or held
/// (its stored response, or 422).
fn answer_taken<St, B>(
    shared: &Shared<St>,
    found: Begin,
    fingerprint: &Fingerprint,
) -> Response<IdempotencyBody<B>> {
    let metrics = &shared.metrics;
    match found {
        Begin::InFlight {
            fingerprint: theirs,
        } if theirs == *fingerprint => {
            metrics.conflict.increment(1);
            problem(IdempotencyError::InFlight)
        }
        Begin::Completed {
            fingerprint: theirs,
            response,
        } if theirs == *fingerprint => {
            metrics.replayed.increment(1);
            replay(response)
        }
        Begin::InFlight { .. } | Begin::Completed { .. } => {
            metrics.mismatch.increment(1);
            problem(IdempotencyError::KeyReused)
        }
        // Not a key someone else has: `begin` answers `Held` for it.
        Begin::Acquired => unreachable!("an acquired key is held, not taken"),
    }
}

fn replay<B>(response: StoredResponse) -> Response<IdempotencyBody<B>> {
    let mut out = Response::new(IdempotencyBody::full(response.body));
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out.headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    out
}

/// Runs the handler while holding the key (renewing its lease), then stores
/// its response, or frees the key where a retry may run again.
async fn run<T, St, S, ReqB, ResB>(
    shared: &Shared<St>,
    held: HeldKey<T>,
    fingerprint: &Fingerprint,
    mut inner: S,
    req: Request<ReqB>,
) -> Result<Response<IdempotencyBody<ResB>>, S::Error>
where
    T: IdempotencyStore,
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes> + Unpin,
{
    let config = &shared.config;
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
    shared.metrics.executed.increment(1);
    let status = response.status();
    let storable = match &shared.store_when {
        Some(f) => f(status),
        None => config.store_server_errors || !status.is_server_error(),
    };
    if !storable {
        held.release().await;
        return Ok(pass(response));
    }
    Ok(store_response(shared, held, fingerprint, response).await)
}

/// Reads the response body (bounded) and stores the response under the
/// held key; sends it either way.
async fn store_response<T, St, B>(
    shared: &Shared<St>,
    held: HeldKey<T>,
    fingerprint: &Fingerprint,
    response: Response<B>,
) -> Response<IdempotencyBody<B>>
where
    T: IdempotencyStore,
    B: Body<Data = Bytes> + Unpin,
{
    let (config, metrics) = (&shared.config, &shared.metrics);
    let (parts, body) = response.into_parts();
    let bytes = match collect_up_to(body, config.max_response_body).await {
        Collected::Whole(bytes) => bytes,
        Collected::TooLarge(prefix, rest) => {
            metrics.not_stored.increment(1);
            tracing::warn!(
                max_response_body = config.max_response_body,
                "idempotent response too large to store; a retry will run again"
            );
            held.release().await;
            return Response::from_parts(parts, IdempotencyBody::prefixed(prefix, rest));
        }
        Collected::Failed => {
            // The handler ran but its body broke: keep the key until
            // the lease ends rather than invite a second run.
            metrics.body_failed.increment(1);
            return problem(Problem::new(StatusCode::INTERNAL_SERVER_ERROR));
        }
    };
    let stored = StoredResponse {
        status: parts.status,
        headers: storable_headers(&parts.headers),
        body: bytes.clone(),
    };
    let completed = held
        .store
        .complete(&held.key, fingerprint, held.token, &stored, config.ttl())
        .await;
    match completed {
        Ok(true) => metrics.stored_bytes.record(bytes.len() as f64),
        Ok(false) => {
            // The lease ran out while the handler worked: another
            // request may have taken the key and run again.
            metrics.lease_lost.increment(1);
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
    Response::from_parts(parts, IdempotencyBody::full(bytes))
}

/// The headers worth replaying: without hop-by-hop fields (ee-core's list
/// and any named in `Connection`, RFC 9110 §7.6.1) and `Content-Length`.
fn storable_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    ee_core::remove_hop_by_hop(&mut kept);
    kept.remove(header::CONTENT_LENGTH);
    kept
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
