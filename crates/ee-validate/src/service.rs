//! `Validate<S>`: the service [`ValidateLayer`](crate::ValidateLayer) wraps.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ee_core::Problem;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full, Limited};
use serde_json::{Map, Value};
use tower::Service;

use crate::check;
use crate::error::{Part, ValidateError};
use crate::layer::{Coerce, Shared};
use crate::metrics::{Rejecter, UNMATCHED_ROUTE};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body your service gets: the checked bytes when the body was
/// validated, the original body otherwise.
pub type ValidatedBody<B> = Either<Full<Bytes>, B>;

/// The service [`ValidateLayer`](crate::ValidateLayer) wraps around yours.
#[derive(Clone)]
pub struct Validate<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Validate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validate")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResB> Service<Request<B>> for Validate<S>
where
    S: Service<Request<ValidatedBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: From<Bytes> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match checked(&shared, req).await {
                Ok(req) => inner.call(req).await,
                Err(error) => Ok(Problem::from(error).into_response()),
            }
        })
    }
}

fn route_of<'a, B>(shared: &'a Shared, req: &'a Request<B>) -> &'a str {
    if let Some(route) = &shared.route {
        return route;
    }
    #[cfg(feature = "axum")]
    if let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() {
        return matched.as_str();
    }
    let _ = req;
    UNMATCHED_ROUTE
}

/// The request with its body checked (and buffered), or why it is refused.
async fn checked<B>(
    shared: &Shared,
    req: Request<B>,
) -> Result<Request<ValidatedBody<B>>, ValidateError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // The route label outlives the request's move into its parts.
    let route = route_of(shared, &req).to_owned();
    let rejecter = Rejecter {
        rejections: shared.registry.rejections(),
        route: &route,
    };
    let mut found = Vec::new();
    let mut total = 0;
    if let Some(validator) = &shared.headers {
        let (list, n) = check::violations(validator, &headers_object(req.headers()), Part::Headers);
        found.extend(list);
        total += n;
    }
    if let Some((validator, coerce)) = &shared.query {
        let query = query_object(req.uri().query().unwrap_or(""), coerce).inspect_err(|_| {
            rejecter.reject("syntax");
        })?;
        let (list, n) = check::violations(validator, &query, Part::Query);
        found.extend(list);
        total += n;
    }
    let Some(validator) = &shared.body else {
        check::verdict((found, total), rejecter)?;
        return Ok(req.map(Either::Right));
    };
    check::content_type(req.headers(), rejecter)?;
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, shared.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Err(check::body_error(e.as_ref(), rejecter)),
    };
    let value = check::parse(&bytes, rejecter)?;
    check::depth(&value, shared.registry.max_depth(), rejecter)?;
    let (list, n) = check::violations(validator, &value, Part::Body);
    found.extend(list);
    total += n;
    check::verdict((found, total), rejecter)?;
    Ok(Request::from_parts(parts, Either::Left(Full::new(bytes))))
}

/// The headers as `{"lower-case-name": "value"}`; repeated headers joined
/// with `, ` (RFC 9110 §5.3), non-ASCII bytes replaced.
fn headers_object(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        map.insert(name.as_str().to_owned(), Value::String(joined));
    }
    Value::Object(map)
}

/// Query strings with more parameters are refused (400).
pub(crate) const MAX_QUERY_PAIRS: usize = 256;

/// The query string as an object, values coerced per `coerce`; `Err` names
/// a parameter that is not valid percent-encoded UTF-8.
pub(crate) fn query_object(
    query: &str,
    coerce: &std::collections::HashMap<String, Coerce>,
) -> Result<Value, ValidateError> {
    let malformed = |parameter: String| ValidateError::MalformedQuery { parameter };
    let mut map = Map::new();
    for (n, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        if n == MAX_QUERY_PAIRS {
            return Err(malformed(format!(
                "(more than {MAX_QUERY_PAIRS} parameters)"
            )));
        }
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name).ok_or_else(|| malformed(raw_name.to_owned()))?;
        let text = decode(raw_value).ok_or_else(|| malformed(name.clone()))?;
        let rule = coerce.get(&name).unwrap_or(&Coerce::Text);
        let value = rule.apply(text);
        match (rule, map.get_mut(&name)) {
            (Coerce::Array(_), Some(Value::Array(items))) => items.push(value),
            (Coerce::Array(_), None) => {
                map.insert(name, Value::Array(vec![value]));
            }
            // A repeated scalar: the schema sees every value in one flat
            // array (and says the parameter is not an array).
            (_, Some(Value::Array(items))) => items.push(value),
            (_, Some(existing)) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            (_, None) => {
                map.insert(name, value);
            }
        }
    }
    Ok(Value::Object(map))
}

/// Percent-decodes one query component (`+` is a space); `None` when the
/// escapes are malformed or the bytes are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn query_strings_become_coerced_objects() {
        let coerce: HashMap<String, Coerce> = [
            ("page".to_owned(), Coerce::Integer),
            ("tag".to_owned(), Coerce::Array(Box::new(Coerce::Text))),
            ("in_stock".to_owned(), Coerce::Boolean),
            ("min".to_owned(), Coerce::Number),
        ]
        .into();
        let q = query_object(
            "page=2&tag=a&tag=b%20c&in_stock=true&min=1.5&q=caf%C3%A9+au+lait&page2=x",
            &coerce,
        )
        .unwrap();
        assert_eq!(
            q,
            json!({"page": 2, "tag": ["a", "b c"], "in_stock": true, "min": 1.5, "q": "café au lait", "page2": "x"})
        );
        // Text that does not parse stays text, for the schema to refuse.
        assert_eq!(
            query_object("page=two", &coerce).unwrap(),
            json!({"page": "two"})
        );
        // A repeated scalar shows both values.
        assert_eq!(
            query_object("page=1&page=2", &coerce).unwrap(),
            json!({"page": [1, 2]})
        );
        assert!(query_object("q=%ZZ", &coerce).is_err());
        assert!(query_object("q=%C3%28", &coerce).is_err());
    }
}
