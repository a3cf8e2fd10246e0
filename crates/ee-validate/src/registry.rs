//! `SchemaRegistry`: JSON Schemas (draft 7 and 2020-12, detected from
//! `$schema`) compiled once, `$ref`s between them resolved inside the
//! registry (nothing is ever fetched), custom formats and keywords.

use std::any::TypeId;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use jsonschema::{Keyword, Registry, ValidationError, Validator};
use serde_json::{Map, Value};

use crate::error::SchemaError;
use crate::metrics::Rejections;
use crate::schema::HasSchema;

type FormatCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;
type KeywordFactory = Arc<
    dyn for<'a> Fn(
            &'a Map<String, Value>,
            &'a Value,
            jsonschema::paths::Location,
        ) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>>
        + Send
        + Sync,
>;

/// Schemas by id, compiled once and shared (`Clone` is an `Arc` clone).
///
/// ```
/// use ee_validate::SchemaRegistry;
/// use serde_json::json;
///
/// let registry = SchemaRegistry::builder()
///     .schema("https://shop.example/schemas/money", json!({
///         "type": "object",
///         "properties": {"amount_cents": {"type": "integer", "minimum": 0},
///                        "currency": {"type": "string", "format": "currency"}},
///         "required": ["amount_cents", "currency"]
///     }))
///     .schema("https://shop.example/schemas/product", json!({
///         "$schema": "http://json-schema.org/draft-07/schema#",
///         "type": "object",
///         "properties": {"price": {"$ref": "https://shop.example/schemas/money"}},
///         "required": ["price"]
///     }))
///     .format("currency", |s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()))
///     .build()
///     .unwrap();
///
/// let product = registry.validator("https://shop.example/schemas/product").unwrap();
/// assert!(product.is_valid(&json!({"price": {"amount_cents": 1299, "currency": "EUR"}})));
/// assert!(!product.is_valid(&json!({"price": {"amount_cents": 1299, "currency": "euro"}})));
/// ```
#[derive(Clone)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// The raw documents, for `$ref` resolution of schemas compiled later.
    resources: Registry<'static>,
    formats: Vec<(String, FormatCheck)>,
    keywords: Vec<(String, KeywordFactory)>,
    by_id: HashMap<String, Arc<Validator>>,
    documents: HashMap<String, Value>,
    /// Validators of derived (schemars) schemas, compiled on first use (a
    /// schema that does not compile is remembered too: it is not retried
    /// and logged on every request).
    by_type: RwLock<HashMap<TypeId, Result<Arc<Validator>, SchemaError>>>,
    max_depth: usize,
    deny_unknown_fields: bool,
    /// The rejection counters of requests validated through this registry.
    rejections: Rejections,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.inner.by_id.keys().collect();
        ids.sort();
        f.debug_struct("SchemaRegistry")
            .field("schemas", &ids)
            .field("max_depth", &self.inner.max_depth)
            .finish_non_exhaustive()
    }
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::builder()
            .build()
            .expect("an empty registry always builds")
    }
}

impl SchemaRegistry {
    /// A builder: add schemas, formats and keywords, then
    /// [`build`](SchemaRegistryBuilder::build).
    pub fn builder() -> SchemaRegistryBuilder {
        SchemaRegistryBuilder {
            schemas: Vec::new(),
            derived: Vec::new(),
            formats: Vec::new(),
            keywords: Vec::new(),
            max_depth: 128,
            deny_unknown_fields: false,
            errors: Vec::new(),
        }
    }

    /// The compiled schema registered under `id`.
    ///
    /// # Errors
    /// [`SchemaError::Unknown`] when no schema has that id.
    pub fn validator(&self, id: &str) -> Result<Arc<Validator>, SchemaError> {
        self.inner
            .by_id
            .get(id.trim_end_matches('#'))
            .cloned()
            .ok_or_else(|| SchemaError::Unknown(id.to_owned()))
    }

    /// The schema document registered under `id`, as it was given.
    pub fn document(&self, id: &str) -> Option<&Value> {
        self.inner.documents.get(id.trim_end_matches('#'))
    }

    /// The compiled schema of `T`: the registered one named by
    /// [`HasSchema::schema_id`], or, for a type that carries its own schema
    /// (`#[derive(JsonSchema)]`), that schema compiled on first use and kept.
    ///
    /// # Errors
    /// [`SchemaError::Unknown`] when `T` names a schema that is not
    /// registered; [`SchemaError::Invalid`] when `T`'s own schema does not compile.
    pub fn validator_for<T: HasSchema + 'static>(&self) -> Result<Arc<Validator>, SchemaError> {
        let key = TypeId::of::<T>();
        if let Some(v) = self.inner.by_type.read().expect("not poisoned").get(&key) {
            return v.clone();
        }
        let validator = match T::schema() {
            Some(mut schema) => {
                if self.inner.deny_unknown_fields {
                    deny_unknown_fields(&mut schema);
                }
                // A Rust type name (`Page<Order>`, `[Line]`) is not a URI:
                // the base URI is the name with everything else escaped.
                self.compile(&uri_safe(&T::schema_id()), &schema)
                    .map(Arc::new)
            }
            None => self.validator(&T::schema_id()),
        };
        let mut by_type = self.inner.by_type.write().expect("not poisoned");
        // Another request may have compiled it meanwhile: the first one kept
        // is everyone's (and a failure is logged once).
        if let Some(v) = by_type.get(&key) {
            return v.clone();
        }
        if let Err(error) = &validator {
            tracing::error!(%error, schema = %T::schema_id(), "requests that need this schema cannot be validated (they get 500)");
        }
        by_type.insert(key, validator.clone());
        validator
    }

    /// The nesting limit of documents validated through this registry.
    pub fn max_depth(&self) -> usize {
        self.inner.max_depth
    }

    /// The rejection counters of requests validated through this registry.
    pub(crate) fn rejections(&self) -> &Rejections {
        &self.inner.rejections
    }

    /// Compiles one schema against this registry's resources and options
    /// (used per request, this is what the registry saves you from: see
    /// `docs/benchmarks.md`).
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] when the schema does not compile, or names a
    /// `$ref` the registry does not hold.
    pub fn compile(&self, id: &str, schema: &Value) -> Result<Validator, SchemaError> {
        compile(
            &self.inner.resources,
            &self.inner.formats,
            &self.inner.keywords,
            id,
            schema,
        )
    }
}

fn compile(
    resources: &Registry<'static>,
    formats: &[(String, FormatCheck)],
    keywords: &[(String, KeywordFactory)],
    id: &str,
    schema: &Value,
) -> Result<Validator, SchemaError> {
    let mut options = jsonschema::options()
        .offline()
        .with_registry(resources)
        .should_validate_formats(true);
    if !id.is_empty() && schema.get("$id").is_none() {
        options = options.with_base_uri(id.to_owned());
    }
    for (name, check) in formats {
        let check = check.clone();
        options = options.with_format(name.clone(), move |s: &str| check(s));
    }
    for (name, factory) in keywords {
        let factory = factory.clone();
        options = options.with_keyword(name.clone(), move |parent, value, path| {
            factory(parent, value, path)
        });
    }
    options.build(schema).map_err(|e| SchemaError::Invalid {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// The registry's retriever: records what it was asked for, fetches nothing.
struct Missing(Arc<std::sync::Mutex<Vec<String>>>);

impl jsonschema::Retrieve for Missing {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .lock()
            .expect("not poisoned")
            .push(uri.as_str().to_owned());
        Ok(Value::Object(Map::new()))
    }
}

/// `id` with every byte outside RFC 3986's unreserved set and `:`
/// percent-encoded.
fn uri_safe(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Adds `"additionalProperties": false` to every object schema that lists
/// `properties` and says nothing about additional ones (values of `const`,
/// `default`, `enum` and `examples` are data, not schemas, and stay as they are).
fn deny_unknown_fields(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !map.contains_key("unevaluatedProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (key, v) in map.iter_mut() {
                if !matches!(key.as_str(), "const" | "default" | "enum" | "examples") {
                    deny_unknown_fields(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(deny_unknown_fields),
        _ => {}
    }
}

/// Builds a [`SchemaRegistry`]; every schema is compiled by
/// [`build`](Self::build), which reports every bad schema at once.
#[must_use]
pub struct SchemaRegistryBuilder {
    schemas: Vec<(String, Value)>,
    /// Ids of the schemas derived from Rust types.
    derived: Vec<String>,
    formats: Vec<(String, FormatCheck)>,
    keywords: Vec<(String, KeywordFactory)>,
    max_depth: usize,
    deny_unknown_fields: bool,
    errors: Vec<SchemaError>,
}

impl std::fmt::Debug for SchemaRegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistryBuilder")
            .field("schemas", &self.schemas.len())
            .finish_non_exhaustive()
    }
}

impl SchemaRegistryBuilder {
    /// Registers `schema` under `id` (other schemas `$ref` it by that id; an
    /// `$id` inside the schema is registered too).
    pub fn schema(mut self, id: impl Into<String>, schema: Value) -> Self {
        let id: String = id.into();
        self.schemas
            .push((id.trim_end_matches('#').to_owned(), schema));
        self
    }

    /// Registers the JSON schema in the file at `path` under `id`.
    pub fn schema_file(mut self, id: impl Into<String>, path: impl AsRef<Path>) -> Self {
        let id = id.into();
        let path = path.as_ref();
        let read = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()));
        match read {
            Ok(schema) => self.schema(id, schema),
            Err(reason) => {
                self.errors.push(SchemaError::File {
                    path: path.display().to_string(),
                    reason,
                });
                self
            }
        }
    }

    /// Registers the schema derived from `T` (`#[derive(JsonSchema)]`) under
    /// `id`, so hand-written schemas can `$ref` it.
    #[cfg(feature = "schemars")]
    pub fn derived<T: schemars::JsonSchema>(mut self, id: impl Into<String>) -> Self {
        let id: String = id.into();
        self.derived.push(id.trim_end_matches('#').to_owned());
        self.schema(id, schemars::schema_for!(T).to_value())
    }

    /// A custom `format`: `check` says whether a string conforms.
    pub fn format<F>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.formats.push((name.into(), Arc::new(check)));
        self
    }

    /// A custom keyword (see `jsonschema::Keyword`): `factory` builds its
    /// validator from the keyword's value in a schema.
    pub fn keyword<F>(mut self, name: impl Into<String>, factory: F) -> Self
    where
        F: for<'a> Fn(
                &'a Map<String, Value>,
                &'a Value,
                jsonschema::paths::Location,
            ) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>>
            + Send
            + Sync
            + 'static,
    {
        self.keywords.push((name.into(), Arc::new(factory)));
        self
    }

    /// Documents nested deeper than this are refused (400) before they are
    /// validated. Default and maximum 128, serde_json's own limit (checked
    /// at no cost; larger values are taken as 128); a lower limit costs one
    /// walk over the parsed document.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.min(128);
        self
    }

    /// Treats unknown fields in **derived** schemas (`Valid<T>` of a
    /// `JsonSchema` type, and [`derived`](Self::derived)) as violations
    /// (`additionalProperties: false` on every object schema that does not
    /// say otherwise). Hand-written schemas say what they mean themselves.
    pub fn deny_unknown_fields(mut self, deny: bool) -> Self {
        self.deny_unknown_fields = deny;
        self
    }

    /// Compiles every schema.
    ///
    /// # Errors
    /// [`SchemaError::Many`] listing every schema that did not load or compile
    /// (or the one error when there is one).
    pub fn build(mut self) -> Result<SchemaRegistry, SchemaError> {
        if self.deny_unknown_fields {
            for (id, schema) in &mut self.schemas {
                if self.derived.contains(id) {
                    deny_unknown_fields(schema);
                }
            }
        }
        let mut errors = self.errors;
        // Nothing is fetched: a `$ref` to a document the registry does not
        // hold is recorded (and stands in as `{}` only until it is reported).
        let missing = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let resources = Registry::new()
            .retriever(Missing(missing.clone()))
            .extend(self.schemas.iter().map(|(id, s)| (id.clone(), s.clone())))
            .and_then(|builder| builder.prepare());
        let resources = match resources {
            Ok(r) => r,
            Err(e) => {
                errors.push(SchemaError::Invalid {
                    id: "(registry)".into(),
                    reason: e.to_string(),
                });
                return Err(SchemaError::many(errors));
            }
        };
        let missing = std::mem::take(&mut *missing.lock().expect("not poisoned"));
        if !missing.is_empty() {
            for (id, schema) in &self.schemas {
                let text = schema.to_string();
                for uri in missing
                    .iter()
                    .filter(|uri| text.contains(uri.trim_end_matches('#')))
                {
                    errors.push(SchemaError::Invalid {
                        id: id.clone(),
                        reason: format!(
                            "`$ref` to {uri}, which is not in the registry (nothing is fetched)"
                        ),
                    });
                }
            }
            if errors.is_empty() {
                errors.push(SchemaError::Invalid {
                    id: "(registry)".into(),
                    reason: format!(
                        "`$ref` to documents not in the registry: {}",
                        missing.join(", ")
                    ),
                });
            }
        }
        let mut by_id = HashMap::new();
        let mut documents = HashMap::new();
        for (id, schema) in self.schemas {
            match compile(&resources, &self.formats, &self.keywords, &id, &schema) {
                Ok(v) => {
                    by_id.insert(id.clone(), Arc::new(v));
                    documents.insert(id, schema);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            errors.dedup_by(|a, b| a.to_string() == b.to_string());
            return Err(SchemaError::many(errors));
        }
        crate::metrics::describe_metrics();
        Ok(SchemaRegistry {
            inner: Arc::new(Inner {
                resources,
                formats: self.formats,
                keywords: self.keywords,
                by_id,
                documents,
                by_type: RwLock::new(HashMap::new()),
                max_depth: self.max_depth,
                deny_unknown_fields: self.deny_unknown_fields,
                rejections: Rejections::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn draft7_and_2020_12_are_both_understood() {
        let registry = SchemaRegistry::builder()
            // Draft 7: `items` as an array is tuple validation.
            .schema(
                "urn:d7",
                json!({"$schema": "http://json-schema.org/draft-07/schema#",
                       "type": "array", "items": [{"type": "integer"}], "additionalItems": false}),
            )
            // 2020-12: `prefixItems` + `items: false` say the same.
            .schema(
                "urn:d2020",
                json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
                       "type": "array", "prefixItems": [{"type": "integer"}], "items": false}),
            )
            .build()
            .unwrap();
        for id in ["urn:d7", "urn:d2020"] {
            let v = registry.validator(id).unwrap();
            assert!(v.is_valid(&json!([1])), "{id}");
            assert!(!v.is_valid(&json!([1, 2])), "{id}");
            assert!(!v.is_valid(&json!(["a"])), "{id}");
        }
    }

    #[test]
    fn a_ref_outside_the_registry_is_a_build_error_not_a_fetch() {
        let err = SchemaRegistry::builder()
            .schema(
                "urn:a",
                json!({"$ref": "https://example.com/not-here.json"}),
            )
            .schema("urn:b", json!({"type": 12}))
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("urn:a") || text.contains("not-here"),
            "{text}"
        );
        assert!(
            text.contains("urn:b"),
            "every bad schema is reported: {text}"
        );
    }

    #[cfg(feature = "schemars")]
    #[test]
    fn schemas_from_files_and_derived_types_ref_each_other() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Money {
            amount_cents: u64,
            currency: String,
        }
        let dir = std::env::temp_dir().join(format!("ee-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("product.json");
        std::fs::write(
            &file,
            r#"{"type": "object", "properties": {"price": {"$ref": "urn:money"}}, "required": ["price"]}"#,
        )
        .unwrap();
        let registry = SchemaRegistry::builder()
            .derived::<Money>("urn:money")
            .schema_file("urn:product", &file)
            .deny_unknown_fields(true)
            .build()
            .unwrap();
        let v = registry.validator("urn:product").unwrap();
        assert!(v.is_valid(&json!({"price": {"amount_cents": 5, "currency": "EUR"}})));
        assert!(!v.is_valid(&json!({"price": {"amount_cents": -5, "currency": "EUR"}})));
        // `deny_unknown_fields` reaches the derived schema.
        assert!(!v.is_valid(&json!({"price": {"amount_cents": 5, "currency": "EUR", "x": 1}})));
        // A missing or malformed file is a build error that names the file.
        std::fs::write(dir.join("broken.json"), "{not json").unwrap();
        let err = SchemaRegistry::builder()
            .schema_file("urn:a", dir.join("absent.json"))
            .schema_file("urn:b", dir.join("broken.json"))
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("absent.json") && err.contains("broken.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn custom_keywords_run() {
        struct Even;
        impl<'i> Keyword<'i> for Even {
            fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
                if self.is_valid(instance) {
                    Ok(())
                } else {
                    Err(ValidationError::custom("must be even"))
                }
            }
            fn is_valid(&self, instance: &'i Value) -> bool {
                instance.as_u64().is_none_or(|n| n % 2 == 0)
            }
        }
        let registry = SchemaRegistry::builder()
            .schema("urn:even", json!({"even": true}))
            .keyword("even", |_, _, _| Ok(Box::new(Even)))
            .build()
            .unwrap();
        let v = registry.validator("urn:even").unwrap();
        assert!(v.is_valid(&json!(4)));
        let three = json!(3);
        let errors: Vec<_> = v.iter_errors(&three).collect();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind().keyword(), "even");
    }
}
