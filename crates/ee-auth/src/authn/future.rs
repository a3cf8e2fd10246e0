//! The response future of [`Auth`](crate::Auth).

use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// The future of [`Auth`](crate::Auth): a ready refusal, the inner
    /// service's future untouched (credentials verified without waiting: a
    /// cached or freshly verified JWT), or a boxed verify-then-call (an API
    /// key store lookup, a JWKS refresh for an unknown `kid`).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = Projection]
    enum Kind<F, B, E> {
        Ready { response: Option<Box<Response<B>>> },
        Plain {
            #[pin]
            future: F,
        },
        Boxed { future: Boxed<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
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

    pub(crate) fn boxed(future: Boxed<B, E>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projection::Ready { response } => Poll::Ready(Ok(*response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Projection::Plain { future } => future.poll(cx),
            Projection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
