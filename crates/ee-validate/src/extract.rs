//! `Valid<T>`: the axum extractor of a schema-checked JSON body.

use std::sync::OnceLock;

use axum::extract::{FromRequest, MatchedPath, Request};
use bytes::Bytes;
use ee_core::Problem;
use ee_serialize::error::{body_read_problem, is_json_content_type, not_json_problem};
use http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::check;
use crate::error::{Part, Violation, setup_problem, violations_problem};
use crate::metrics::{UNMATCHED, reject};
use crate::{HasSchema, SchemaRegistry};

/// A JSON body that matched `T`'s schema and then deserialised into `T`.
///
/// The handler never sees a malformed body: 415 when the `Content-Type` is
/// not JSON, 413 past the body limit (axum's `DefaultBodyLimit`), 400 when
/// the bytes are not JSON or nest deeper than the registry's limit, 422 with
/// **every** violation (`errors`: `in`, `pointer`, `keyword`, `message`)
/// when the document does not match its schema. Rejections are counted in
/// `ee_validate_rejections_total{route,keyword}`.
///
/// The registry comes from a request extension (`.layer(Extension(registry))`)
/// when there is one; without it, types that carry their own schema
/// (`#[derive(JsonSchema)]`) use a process-wide registry with default options.
///
/// ```
/// use axum::{Router, routing::post};
/// use ee_validate::Valid;
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct CreateOrder {
///     #[schemars(length(min = 1))]
///     sku: String,
///     #[schemars(range(min = 1, max = 100))]
///     quantity: u32,
/// }
///
/// async fn create(Valid(order): Valid<CreateOrder>) -> String {
///     format!("{} x {}", order.quantity, order.sku)
/// }
///
/// let app: Router = Router::new().route("/orders", post(create));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Valid<T>(pub T);

fn default_registry() -> &'static SchemaRegistry {
    static DEFAULT: OnceLock<SchemaRegistry> = OnceLock::new();
    DEFAULT.get_or_init(SchemaRegistry::default)
}

impl<T, S> FromRequest<S> for Valid<T>
where
    T: DeserializeOwned + HasSchema + 'static,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let registry = req
            .extensions()
            .get::<SchemaRegistry>()
            .cloned()
            .unwrap_or_else(|| default_registry().clone());
        let content_type = req.headers().get(CONTENT_TYPE);
        if !content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_content_type)
        {
            reject(route, "content-type");
            return Err(not_json_problem(
                content_type.map(|v| v.to_str().unwrap_or("(not ASCII)")),
            ));
        }
        let validator = registry
            .validator_for::<T>()
            .map_err(|e| setup_problem(&e))?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let problem = body_read_problem(&rejection);
            reject(
                route,
                if problem.status() == 413 {
                    "size"
                } else {
                    "body"
                },
            );
            problem
        })?;
        let value = check::parse(&bytes, route).map_err(|p| *p)?;
        check::depth(&value, registry.max_depth(), route).map_err(|p| *p)?;
        check::verdict(check::violations(&validator, &value, Part::Body), route).map_err(|p| *p)?;
        serde_json::from_value(value).map(Valid).map_err(|e| {
            // The schema allowed what the type cannot hold (a schema looser
            // than the type): still the client's document, still a 422.
            reject(route, "deserialize");
            violations_problem(
                &[Violation {
                    part: Part::Body,
                    pointer: String::new(),
                    keyword: "deserialize".into(),
                    message: e.to_string(),
                }],
                1,
            )
        })
    }
}
