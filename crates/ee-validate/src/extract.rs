//! `Valid<T>`: the axum extractor of a schema-checked JSON body.

use std::sync::OnceLock;

use axum::extract::{FromRequest, MatchedPath, Request};
use bytes::Bytes;
use ee_core::Problem;
use serde::de::DeserializeOwned;

use crate::check;
use crate::error::{Part, ValidateError};
use crate::metrics::{Rejecter, UNMATCHED_ROUTE};
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
        Ok(Valid(validated(req, state).await?))
    }
}

/// `T` from the request's body, checked on the way.
async fn validated<T, S>(req: Request, state: &S) -> Result<T, ValidateError>
where
    T: DeserializeOwned + HasSchema + 'static,
    S: Send + Sync,
{
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let registry = req
        .extensions()
        .get::<SchemaRegistry>()
        .cloned()
        .unwrap_or_else(|| default_registry().clone());
    let rejecter = Rejecter {
        rejections: registry.rejections(),
        route: matched
            .as_ref()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
    };
    check::content_type(req.headers(), rejecter)?;
    let validator = registry.validator_for::<T>()?;
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|rejection| check::body_error(&rejection, rejecter))?;
    let value = check::parse(&bytes, rejecter)?;
    check::depth(&value, registry.max_depth(), rejecter)?;
    check::verdict(check::violations(&validator, &value, Part::Body), rejecter)?;
    serde_json::from_value(value).map_err(|e| {
        // The schema allowed what the type cannot hold (a schema looser
        // than the type): still the client's document, still a 422.
        rejecter.reject("deserialize");
        ValidateError::one(Part::Body, "deserialize", e.to_string())
    })
}
