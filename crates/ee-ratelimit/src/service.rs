//! `RateLimit<S, L>`: the tower service.
//!
//! Stores that decide without waiting (memory) are decided inside `call`, and
//! the response future is the inner service's future plus the headers: no
//! boxing, no extra allocation on the allowed path. Stores that wait (Redis)
//! run the same decision steps in a boxed async block.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ee_core::{Key, Problem, RequestHead};
use ee_core::{KeyError, KeyExtractor, PeerIp};
use http::{Request, Response};
use tower::Service;

use crate::Rule;
use crate::error::RateLimitError;
use crate::future::ResponseFuture;
use crate::headers::{HeaderBuilder, HeaderSet};
use crate::layer::{ActivePolicy, Shared};
use crate::store::{Admission, Decision, Limiter, StoreError};
use ee_core::OnBackendError;

/// The service [`RateLimitLayer`](crate::RateLimitLayer) wraps around yours.
pub struct RateLimit<S, L> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<L>>,
}

impl<S: Clone, L> Clone for RateLimit<S, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, L> std::fmt::Debug for RateLimit<S, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, L, B, ResB> Service<Request<B>> for RateLimit<S, L>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    L: Limiter,
    B: Send + 'static,
    ResB: From<Bytes> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let Some(costs) = &shared.peer_ip_costs else {
            // Each other path is a function of its own: this one then lends
            // the request to nothing opaque, and hands it on uncopied.
            return if shared.lean {
                self.call_lean(req)
            } else if shared.synchronous {
                self.call_synchronous(req)
            } else {
                self.call_waiting(req)
            };
        };
        // The default policy shape (peer IP, fixed cost, no exemption), a
        // store that decides at once (memory), no headers, no concurrency
        // limit: the allowed path touches nothing but the key, the limiter
        // and a counter; a refusal goes through `Run`.
        let head = RequestHead::from(&req);
        for (i, (p, &cost)) in shared.policies.iter().zip(costs.iter()).enumerate() {
            if cost == 0 {
                continue;
            }
            let key = match PeerIp.extract(&head) {
                Ok(key) => key,
                Err(e) => return ResponseFuture::ready(refused_key(e)),
            };
            if let Some(response) = admit(shared, i, p, key, cost) {
                return ResponseFuture::ready(response);
            }
        }
        ResponseFuture::plain(self.inner.call(req))
    }
}

impl<S, L: Limiter> RateLimit<S, L> {
    /// In memory, no headers, no concurrency slot, any key, cost or
    /// exemption: the inner service's future untouched.
    #[inline(never)]
    fn call_lean<B, ResB>(
        &mut self,
        req: Request<B>,
    ) -> ResponseFuture<S::Future, ResB, S::Error, L>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
        ResB: From<Bytes> + Send + 'static,
    {
        let shared = &self.shared;
        let head = RequestHead::from(&req);
        if !is_exempt(shared, &head) {
            for (i, p) in shared.policies.iter().enumerate() {
                let cost = p.policy.cost.of(&head);
                if cost == 0 {
                    continue;
                }
                let key = match p.policy.key.extract(&head) {
                    Ok(key) => key,
                    Err(e) => return ResponseFuture::ready(refused_key(e)),
                };
                if let Some(response) = admit(shared, i, p, key, cost) {
                    return ResponseFuture::ready(response);
                }
            }
        }
        ResponseFuture::plain(self.inner.call(req))
    }

    /// Stores that decide at once, with headers or concurrency slots.
    #[inline(never)]
    fn call_synchronous<B, ResB>(
        &mut self,
        req: Request<B>,
    ) -> ResponseFuture<S::Future, ResB, S::Error, L>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
        ResB: From<Bytes> + Send + 'static,
    {
        let shared = &self.shared;
        let mut run = Run::new(shared);
        let head = RequestHead::from(&req);
        if is_exempt(shared, &head) {
            return ResponseFuture::inner(self.inner.call(req), HeaderSet::default(), None);
        }
        for i in 0..shared.policies.len() {
            let (key, cost) = match key_and_cost(shared, i, &head) {
                Ok(Some(kc)) => kc,
                Ok(None) => continue,
                Err(e) => return ResponseFuture::ready(refused_key(e)),
            };
            let result = shared.policies[i]
                .limiter
                .check_now(&key, cost)
                .expect("a synchronous store decides now");
            if let ControlFlow::Break(response) = run.step(i, key, cost, result) {
                return ResponseFuture::ready(response);
            }
        }
        let (headers, held) = run.finish();
        ResponseFuture::inner(self.inner.call(req), headers, held)
    }

    /// Stores whose decision waits (Redis): the steps in a boxed future.
    #[inline(never)]
    fn call_waiting<B, ResB>(
        &mut self,
        req: Request<B>,
    ) -> ResponseFuture<S::Future, ResB, S::Error, L>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
        ResB: From<Bytes> + Send + 'static,
    {
        // Call, later, the clone that was polled ready, and leave a fresh
        // clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            let mut run = Run::new(&shared);
            {
                let head = RequestHead::from(&req);
                if is_exempt(&shared, &head) {
                    return inner.call(req).await;
                }
            }
            for i in 0..shared.policies.len() {
                let (key, cost) = {
                    let head = RequestHead::from(&req);
                    match key_and_cost(&shared, i, &head) {
                        Ok(Some(kc)) => kc,
                        Ok(None) => continue,
                        Err(e) => return Ok(refused_key(e)),
                    }
                };
                let result = shared.policies[i].limiter.check(&key, cost).await;
                if let ControlFlow::Break(response) = run.step(i, key, cost, result) {
                    return Ok(response);
                }
            }
            let (headers, held) = run.finish();
            let mut response = inner.call(req).await?;
            headers.apply(response.headers_mut());
            drop(held);
            Ok(response)
        }))
    }
}

/// One policy of the lean paths: counts an admitted request; the response
/// that refuses it otherwise (if the policy refuses).
#[inline(always)]
fn admit<L: Limiter, ResB: From<Bytes>>(
    shared: &Arc<Shared<L>>,
    i: usize,
    p: &ActivePolicy<L>,
    key: Key,
    cost: u32,
) -> Option<Response<ResB>> {
    match p.limiter.admit_now(&key, cost) {
        Admission::Allowed => {
            p.metrics.allowed.increment(1);
            None
        }
        Admission::Decided(result) => refused_lean(shared, i, key, cost, result),
    }
}

/// The lean path's policy `i` did not admit the request: records the
/// decision (or the store's error) and gives the response that refuses it
/// (429, or 503 failing closed), if any.
#[cold]
#[inline(never)]
fn refused_lean<L: Limiter, ResB: From<Bytes>>(
    shared: &Arc<Shared<L>>,
    i: usize,
    key: Key,
    cost: u32,
    result: Result<Decision, StoreError>,
) -> Option<Response<ResB>> {
    match Run::new(shared).step(i, key, cost, result) {
        ControlFlow::Break(response) => Some(response),
        ControlFlow::Continue(()) => None,
    }
}

fn is_exempt<L>(shared: &Shared<L>, head: &RequestHead<'_>) -> bool {
    shared.exempt.as_ref().is_some_and(|exempt| exempt(head))
}

/// The key and cost of policy `i`; `None` when the request costs nothing
/// there; the key extractor's error when there is no key.
#[inline(always)]
fn key_and_cost<L>(
    shared: &Shared<L>,
    i: usize,
    head: &RequestHead<'_>,
) -> Result<Option<(Key, u32)>, KeyError> {
    let policy = &shared.policies[i].policy;
    let cost = policy.cost.of(head);
    if cost == 0 {
        return Ok(None);
    }
    policy.key.extract(head).map(|key| Some((key, cost)))
}

/// The problem response of a request without a key (400, 401 or 500).
#[cold]
#[inline(never)]
fn refused_key<B: From<Bytes>>(e: KeyError) -> Response<B> {
    Problem::from(e).into_response()
}

/// Which limiter granted a concurrency slot, to give it back to the same one.
#[derive(Clone, Copy)]
enum Source {
    Store,
    Fallback,
}

/// Concurrency slots held for a request; given back when the response is
/// ready or the request is dropped (client gone, timeout).
pub(crate) struct Held<L: Limiter> {
    shared: Arc<Shared<L>>,
    slots: Vec<(usize, Key, u32, u64, Source)>,
}

impl<L: Limiter> Drop for Held<L> {
    fn drop(&mut self) {
        for (i, key, cost, ticket, source) in self.slots.drain(..) {
            let p = &self.shared.policies[i];
            match (source, &p.fallback) {
                (Source::Fallback, Some(fallback)) => fallback.release(&key, cost, ticket),
                _ => p.limiter.release(&key, cost, ticket),
            }
        }
    }
}

/// The decision steps of one request, whichever way the store answers.
struct Run<'a, L: Limiter> {
    shared: &'a Arc<Shared<L>>,
    headers: HeaderBuilder,
    slots: Vec<(usize, Key, u32, u64, Source)>,
}

impl<'a, L: Limiter> Run<'a, L> {
    fn new(shared: &'a Arc<Shared<L>>) -> Self {
        Self {
            shared,
            headers: HeaderBuilder::new(shared.headers.draft, shared.headers.legacy),
            slots: Vec::new(),
        }
    }

    /// Applies policy `i`'s result: records it, or breaks with the response
    /// that refuses the request (429, or 503 when failing closed).
    fn step<ResB: From<Bytes>>(
        &mut self,
        i: usize,
        key: Key,
        cost: u32,
        result: Result<Decision, StoreError>,
    ) -> ControlFlow<Response<ResB>> {
        let shared = self.shared;
        let p = &shared.policies[i];
        let (decision, source) = match result {
            Ok(decision) => (decision, Source::Store),
            Err(e) => {
                p.metrics.backend_errors.increment(1);
                shared
                    .outage
                    .record(&p.policy.name, &e, shared.on_backend_error);
                let fallback = match (shared.on_backend_error, &p.fallback) {
                    (OnBackendError::FailOpen, _) => {
                        p.metrics.failed_open.increment(1);
                        return ControlFlow::Continue(());
                    }
                    // A full fallback, or none (the store is in memory
                    // already): refused as when failing closed.
                    (OnBackendError::FallbackToMemory, Some(fallback)) => {
                        fallback.decide(&key, cost).ok()
                    }
                    _ => None,
                };
                match fallback {
                    Some(decision) => (decision, Source::Fallback),
                    None => {
                        p.metrics.failed_closed.increment(1);
                        let unavailable = RateLimitError::Unavailable {
                            policy: p.policy.name.to_string(),
                        };
                        return ControlFlow::Break(Problem::from(unavailable).into_response());
                    }
                }
            }
        };
        self.headers.push(&p.policy, &decision);
        if !decision.allowed {
            p.metrics.limited.increment(1);
            let limited = RateLimitError::Limited {
                policy: p.policy.name.to_string(),
                quota: p.policy.rule.quota(),
                window_secs: p.policy.rule.window_secs(),
                retry_after: decision.retry_after,
            };
            let mut response: Response<ResB> = Problem::from(limited).into_response();
            let headers = std::mem::replace(&mut self.headers, HeaderBuilder::new(false, false));
            headers
                .finish(&shared.policy_header)
                .apply(response.headers_mut());
            // Slots taken by earlier policies go back now (Run drops them).
            return ControlFlow::Break(response);
        }
        p.metrics.allowed.increment(1);
        if matches!(p.policy.rule, Rule::Concurrency { .. }) {
            self.slots.push((i, key, cost, decision.ticket, source));
        }
        ControlFlow::Continue(())
    }

    fn finish(mut self) -> (HeaderSet, Option<Held<L>>) {
        let headers = std::mem::replace(&mut self.headers, HeaderBuilder::new(false, false))
            .finish(&self.shared.policy_header);
        let held = (!self.slots.is_empty()).then(|| Held {
            shared: self.shared.clone(),
            slots: std::mem::take(&mut self.slots),
        });
        (headers, held)
    }
}

impl<L: Limiter> Drop for Run<'_, L> {
    fn drop(&mut self) {
        // A refused request gives back the slots it had taken.
        if !self.slots.is_empty() {
            drop(Held {
                shared: self.shared.clone(),
                slots: std::mem::take(&mut self.slots),
            });
        }
    }
}
