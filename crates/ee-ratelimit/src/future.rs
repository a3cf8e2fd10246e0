//! The response future of [`RateLimit`](crate::RateLimit).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::headers::HeaderSet;
use crate::service::Held;
use crate::store::Limiter;

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// The future of [`RateLimit`](crate::RateLimit): a ready refusal, the
    /// inner service's future plus headers (stores that decide at once), or a
    /// boxed decision-then-call (stores that wait, such as Redis).
    pub struct ResponseFuture<F, B, E, L: Limiter> {
        #[pin]
        kind: Kind<F, B, E, L>,
    }
}

pin_project! {
    #[project = Projection]
    enum Kind<F, B, E, L: Limiter> {
        // Refused before reaching the inner service.
        Ready { response: Option<Box<Response<B>>> },
        // Allowed, with nothing to add to the response.
        Plain {
            #[pin]
            future: F,
        },
        // Allowed: the inner service's response gets the rate-limit headers;
        // concurrency slots are given back when it is ready (or dropped).
        Inner {
            #[pin]
            future: F,
            headers: Option<HeaderSet>,
            held: Option<Box<Held<L>>>,
        },
        // Decided asynchronously.
        Boxed { future: Boxed<B, E> },
    }
}

impl<F, B, E, L: Limiter> ResponseFuture<F, B, E, L> {
    pub(crate) fn ready(response: Response<B>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(Box::new(response)),
            },
        }
    }

    pub(crate) fn plain(future: F) -> Self {
        Self {
            kind: Kind::Plain { future },
        }
    }

    pub(crate) fn inner(future: F, headers: HeaderSet, held: Option<Held<L>>) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                headers: Some(headers),
                held: held.map(Box::new),
            },
        }
    }

    pub(crate) fn boxed(future: Boxed<B, E>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E, L> Future for ResponseFuture<F, B, E, L>
where
    F: Future<Output = Result<Response<B>, E>>,
    L: Limiter,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projection::Ready { response } => Poll::Ready(Ok(*response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Projection::Plain { future } => future.poll(cx),
            Projection::Inner {
                future,
                headers,
                held,
            } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(headers) = headers.take() {
                    headers.apply(response.headers_mut());
                }
                drop(held.take());
                Poll::Ready(Ok(response))
            }
            Projection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
