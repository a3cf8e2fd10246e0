//! `ValidateLayer`: schema checks for bare tower services (and axum routes):
//! the JSON body, the query string and the headers, each against its schema.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value;
use tower::Layer;

use crate::SchemaRegistry;
use crate::error::SchemaError;
use crate::service::Validate;

/// Checks requests against schemas before your service sees them.
///
/// - **body**: must be JSON (415), at most `max_body` bytes (413), JSON (400),
///   not deeper than the registry's limit (400), and match the schema (422);
///   the service then gets the checked bytes as the body;
/// - **query**: the parameters as an object (`?page=2&tag=a&tag=b` is
///   `{"page": 2, "tag": ["a", "b"]}`: values are coerced to the `integer`,
///   `number`, `boolean` or `array` type the schema's `properties` give them);
/// - **headers**: an object of lower-case header names to their values.
///
/// Every violation of every part is in one 422 problem (`errors`: `in`,
/// `pointer`, `keyword`, `message`).
///
/// ```
/// use ee_validate::{SchemaRegistry, ValidateLayer};
/// use serde_json::json;
///
/// let registry = SchemaRegistry::builder()
///     .schema("urn:search", json!({
///         "type": "object",
///         "properties": {"page": {"type": "integer", "minimum": 1}},
///         "additionalProperties": false
///     }))
///     .build()
///     .unwrap();
/// let layer = ValidateLayer::new(&registry).query("urn:search").unwrap().route("/search");
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ValidateLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) registry: SchemaRegistry,
    pub(crate) body: Option<Arc<Validator>>,
    pub(crate) query: Option<(Arc<Validator>, HashMap<String, Coerce>)>,
    pub(crate) headers: Option<Arc<Validator>>,
    pub(crate) route: Option<String>,
    pub(crate) max_body: usize,
}

impl std::fmt::Debug for ValidateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidateLayer")
            .field("body", &self.shared.body.is_some())
            .field("query", &self.shared.query.is_some())
            .field("headers", &self.shared.headers.is_some())
            .field("route", &self.shared.route)
            .field("max_body", &self.shared.max_body)
            .finish()
    }
}

/// How a query parameter's text becomes the JSON its schema expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Coerce {
    Integer,
    Number,
    Boolean,
    Array(Box<Coerce>),
    Text,
}

impl Coerce {
    fn from_schema(schema: &Value) -> Self {
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.contains(&"array") {
            let items = schema
                .get("items")
                .map_or(Coerce::Text, Coerce::from_schema);
            Coerce::Array(Box::new(items))
        } else if types.contains(&"integer") {
            Coerce::Integer
        } else if types.contains(&"number") {
            Coerce::Number
        } else if types.contains(&"boolean") {
            Coerce::Boolean
        } else {
            Coerce::Text
        }
    }

    /// The JSON value of one parameter's text: the coerced type when the
    /// text parses as it, the text otherwise (the schema then says why).
    pub(crate) fn apply(&self, text: String) -> Value {
        match self {
            Coerce::Integer => text.parse::<i64>().map_or(Value::String(text), Value::from),
            Coerce::Number => match text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => Value::Number(n),
                None => Value::String(text),
            },
            Coerce::Boolean => match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text),
            },
            Coerce::Array(item) => item.apply(text),
            Coerce::Text => Value::String(text),
        }
    }
}

impl ValidateLayer {
    /// A layer that checks nothing yet; add parts with
    /// [`body`](Self::body), [`query`](Self::query), [`headers`](Self::headers).
    pub fn new(registry: &SchemaRegistry) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: registry.clone(),
                body: None,
                query: None,
                headers: None,
                route: None,
                max_body: 2 << 20,
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|arc| Shared {
            registry: arc.registry.clone(),
            body: arc.body.clone(),
            query: arc.query.clone(),
            headers: arc.headers.clone(),
            route: arc.route.clone(),
            max_body: arc.max_body,
        });
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Checks the JSON body against the schema registered as `id`.
    ///
    /// # Errors
    /// [`SchemaError::Unknown`] when the registry has no such schema.
    pub fn body(self, id: &str) -> Result<Self, SchemaError> {
        let validator = self.shared.registry.validator(id)?;
        Ok(self.with(|s| s.body = Some(validator)))
    }

    /// Checks the query parameters against the schema registered as `id`.
    ///
    /// # Errors
    /// [`SchemaError::Unknown`] when the registry has no such schema.
    pub fn query(self, id: &str) -> Result<Self, SchemaError> {
        let validator = self.shared.registry.validator(id)?;
        let coerce = self
            .shared
            .registry
            .document(id)
            .and_then(|d| d.get("properties"))
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, schema)| (name.clone(), Coerce::from_schema(schema)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(self.with(|s| s.query = Some((validator, coerce))))
    }

    /// Checks the headers against the schema registered as `id`.
    ///
    /// # Errors
    /// [`SchemaError::Unknown`] when the registry has no such schema.
    pub fn headers(self, id: &str) -> Result<Self, SchemaError> {
        let validator = self.shared.registry.validator(id)?;
        Ok(self.with(|s| s.headers = Some(validator)))
    }

    /// The `route` label of this layer's rejection metrics (default: axum's
    /// matched route template when there is one, else `unmatched`).
    #[must_use]
    pub fn route(self, route: impl Into<String>) -> Self {
        let route = route.into();
        self.with(|s| s.route = Some(route))
    }

    /// The largest body accepted, in bytes (default 2 MiB).
    #[must_use]
    pub fn max_body(self, bytes: usize) -> Self {
        self.with(|s| s.max_body = bytes)
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Validate {
            inner,
            shared: self.shared.clone(),
        }
    }
}
