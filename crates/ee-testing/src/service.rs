//! Sending requests through any tower `Service` and reading what came back.

use std::fmt::Debug;

use bytes::Bytes;
use ee_core::Problem;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tower::{Service, ServiceExt};

/// A response with its body read to the end.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl TestResponse {
    /// Reads a whole response.
    pub async fn from_response<B>(response: Response<B>) -> Self
    where
        B: Body,
        B::Error: Debug,
    {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("the response body failed")
            .to_bytes();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// One header as text; panics if it is not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header value is not visible ASCII"))
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("the body is not UTF-8")
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not the expected JSON ({e}): {}", self.text()))
    }

    /// The body as an RFC 9457 problem, after checking the content type and that
    /// the body's `status` matches the response status.
    pub fn problem(&self) -> Problem {
        assert_eq!(
            self.header("content-type"),
            Some(ee_core::PROBLEM_JSON),
            "not a problem response: {} {}",
            self.status,
            self.text()
        );
        let problem: Problem = self.json();
        assert_eq!(
            problem.status(),
            self.status,
            "the problem's status differs from the response's"
        );
        problem
    }
}

/// Sends `request` through `service` (waiting for readiness) and reads the
/// whole response.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use bytes::Bytes;
/// use http::{Request, Response};
///
/// let echo = tower::service_fn(|req: Request<String>| async move {
///     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(Bytes::from(req.into_body()))))
/// });
/// let response = ee_testing::send(echo, Request::new("hi".to_owned())).await;
/// assert_eq!(response.text(), "hi");
/// # }
/// ```
pub async fn send<S, ReqB, ResB>(service: S, request: Request<ReqB>) -> TestResponse
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Debug,
    ResB: Body,
    ResB::Error: Debug,
{
    let response = service
        .oneshot(request)
        .await
        .expect("the service returned an error instead of a response");
    TestResponse::from_response(response).await
}
