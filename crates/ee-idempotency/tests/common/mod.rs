//! Helpers shared by the ee-idempotency tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use bytes::Bytes;
use ee_idempotency::{IdempotencyLayer, IdempotencyStore};
use ee_testing::TestResponse;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

/// A handler that counts its runs and answers 201 with the run number and the
/// body it got; `/fail` answers 503, `/big` answers a 3 KiB body.
#[derive(Clone, Default)]
pub struct Counting {
    pub runs: Arc<AtomicUsize>,
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Counting {
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    pub fn service(
        &self,
    ) -> impl tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        let this = self.clone();
        tower::service_fn(move |req: Request<Body>| {
            let this = this.clone();
            async move {
                let n = this.runs.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(gate) = &this.gate {
                    let _permit = gate.acquire().await.unwrap();
                }
                let path = req.uri().path().to_owned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let (status, body) = match path.as_str() {
                    "/fail" => (StatusCode::SERVICE_UNAVAILABLE, Bytes::from("down")),
                    "/big" => (StatusCode::OK, Bytes::from(vec![b'x'; 3 * 1024])),
                    _ => (
                        StatusCode::CREATED,
                        Bytes::from(format!("run {n}: {}", String::from_utf8_lossy(&body))),
                    ),
                };
                let res = Response::builder()
                    .status(status)
                    .header("x-run", n.to_string())
                    .header("connection", "x-internal")
                    .header("x-internal", "1")
                    .body(Body::from(body))
                    .unwrap();
                Ok::<_, Infallible>(res)
            }
        })
    }
}

/// A POST with an optional key and a body.
pub fn post(path: &str, key: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post(path);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

/// Sends one request through `layer` around `handler`.
pub async fn send<St: IdempotencyStore>(
    layer: &IdempotencyLayer<St>,
    handler: &Counting,
    req: Request<Body>,
) -> TestResponse {
    let res = layer.layer(handler.service()).oneshot(req).await.unwrap();
    TestResponse::from_response(res).await
}
