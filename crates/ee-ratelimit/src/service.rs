//! `RateLimit<S, L>`: the tower service.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ee_core::{Key, Problem, RequestHead};
use http::{Request, Response};
use tower::Service;

use crate::Rule;
use crate::config::OnBackendError;
use crate::error::RateLimitError;
use crate::headers::{self, Outcome};
use crate::layer::{Cost, Shared};
use crate::store::Limiter;

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

/// The future of [`RateLimit`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

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
    type Future = ResponseFuture<Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Call the clone that was polled ready; leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(decide_and_call(shared, inner, req))
    }
}

/// Which limiter granted a concurrency slot, to give it back to the same one.
#[derive(Clone, Copy)]
enum Source {
    Store,
    Fallback,
}

/// Concurrency slots held for the request; given back when the response is
/// ready or the request is dropped (client gone, timeout).
struct Held<'a, L: Limiter> {
    shared: &'a Shared<L>,
    slots: Vec<(usize, Key, u32, u64, Source)>,
}

impl<L: Limiter> Drop for Held<'_, L> {
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

async fn decide_and_call<S, L, B, ResB>(
    shared: Arc<Shared<L>>,
    mut inner: S,
    req: Request<B>,
) -> Result<Response<ResB>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    L: Limiter,
    ResB: From<Bytes>,
{
    // Keys and costs first: they borrow the request, which the inner service takes.
    let mut pending: Vec<(usize, Key, u32)> = Vec::with_capacity(shared.policies.len());
    {
        let head = RequestHead::from(&req);
        if let Some(exempt) = &shared.exempt
            && exempt(&head)
        {
            return inner.call(req).await;
        }
        for (i, p) in shared.policies.iter().enumerate() {
            let cost = match &p.policy.cost {
                Cost::Fixed(n) => *n,
                Cost::Dynamic(f) => f(&head),
            };
            if cost == 0 {
                continue;
            }
            match p.policy.key.extract(&head) {
                Ok(key) => pending.push((i, key, cost)),
                Err(e) => return Ok(Problem::from(e).into_response()),
            }
        }
    }

    let mut outcomes: Vec<Outcome<'_>> = Vec::with_capacity(pending.len());
    let mut held = Held {
        shared: &shared,
        slots: Vec::new(),
    };
    for (i, key, cost) in pending {
        let p = &shared.policies[i];
        let (decision, source) = match p.limiter.check(&key, cost).await {
            Ok(decision) => (decision, Source::Store),
            Err(e) => {
                p.metrics.backend_errors.increment(1);
                shared
                    .outage
                    .record(&p.policy.name, &e, shared.on_backend_error);
                match (shared.on_backend_error, &p.fallback) {
                    (OnBackendError::FallbackToMemory, Some(fallback)) => {
                        (fallback.decide(&key, cost), Source::Fallback)
                    }
                    (OnBackendError::FailClosed, _) => {
                        p.metrics.failed_closed.increment(1);
                        let unavailable = RateLimitError::Unavailable {
                            policy: p.policy.name.to_string(),
                        };
                        return Ok(Problem::from(unavailable).into_response());
                    }
                    _ => {
                        p.metrics.failed_open.increment(1);
                        continue;
                    }
                }
            }
        };
        outcomes.push(Outcome {
            policy: &p.policy,
            decision,
        });
        if !decision.allowed {
            p.metrics.limited.increment(1);
            let limited = RateLimitError::Limited {
                policy: p.policy.name.to_string(),
                quota: p.policy.rule.quota(),
                window_secs: p.policy.rule.window_secs(),
                retry_after: decision.retry_after,
            };
            let mut res: Response<ResB> = Problem::from(limited).into_response();
            headers::write(
                res.headers_mut(),
                &shared.policy_header,
                &outcomes,
                shared.headers.draft,
                shared.headers.legacy,
            );
            return Ok(res);
        }
        p.metrics.allowed.increment(1);
        if matches!(p.policy.rule, Rule::Concurrency { .. }) {
            held.slots.push((i, key, cost, decision.ticket, source));
        }
    }

    let mut res = inner.call(req).await?;
    headers::write(
        res.headers_mut(),
        &shared.policy_header,
        &outcomes,
        shared.headers.draft,
        shared.headers.legacy,
    );
    drop(held);
    Ok(res)
}
