//! `HasSchema`: how a type names (or carries) the schema its JSON must match.

use std::borrow::Cow;

use serde_json::Value;

/// A type whose JSON form is checked against a schema.
///
/// Types that `#[derive(schemars::JsonSchema)]` have it already (feature
/// `schemars`, on by default): their derived schema is compiled on first use.
/// For a hand-written schema, name its registry id:
///
/// ```
/// use ee_validate::HasSchema;
/// use std::borrow::Cow;
///
/// struct CreateOrder { /* … */ }
///
/// impl HasSchema for CreateOrder {
///     fn schema_id() -> Cow<'static, str> {
///         "https://shop.example/schemas/create-order".into()
///     }
/// }
/// ```
pub trait HasSchema {
    /// The id the schema is registered under (or, for a type that carries
    /// its own schema, a name for it in errors).
    fn schema_id() -> Cow<'static, str>;

    /// The type's own schema, when it carries one; `None` (the default) means
    /// the registry must hold [`schema_id`](Self::schema_id).
    fn schema() -> Option<Value> {
        None
    }
}

#[cfg(feature = "schemars")]
impl<T: schemars::JsonSchema> HasSchema for T {
    fn schema_id() -> Cow<'static, str> {
        Cow::Owned(format!("urn:ee:schemars:{}", T::schema_id()))
    }

    fn schema() -> Option<Value> {
        Some(schemars::schema_for!(T).to_value())
    }
}
