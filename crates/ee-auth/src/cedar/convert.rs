//! JSON attributes to Cedar values, and entity type names parsed once.

use std::str::FromStr;
use std::sync::{PoisonError, RwLock};

use cedar_policy::{EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use foldhash::HashMap;
use serde_json::{Map, Value};

use crate::AuthError;

/// How many entity type names the cache keeps (kinds come from the
/// application's code, but the cache stays bounded whatever feeds it).
pub(crate) const TYPE_CACHE_MAX: usize = 1024;

/// Entity type names by their text: Cedar's parser runs once per name.
#[derive(Debug, Default)]
pub(crate) struct TypeNames(RwLock<HashMap<Box<str>, EntityTypeName>>);

impl TypeNames {
    /// The parsed type name `name`.
    pub(crate) fn get(&self, name: &str) -> Result<EntityTypeName, AuthError> {
        if let Some(t) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(t.clone());
        }
        let parsed = parse_type(name)?;
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() < TYPE_CACHE_MAX {
            map.insert(name.into(), parsed.clone());
        }
        Ok(parsed)
    }

    /// Caches `name` (at load: the configured and the schema's types).
    pub(crate) fn insert(&self, name: EntityTypeName) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() < TYPE_CACHE_MAX {
            map.insert(name.to_string().into(), name);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

pub(crate) fn parse_type(name: &str) -> Result<EntityTypeName, AuthError> {
    EntityTypeName::from_str(name)
        .map_err(|e| AuthError::Config(format!("cedar: `{name}` is not an entity type name: {e}")))
}

/// Attributes from a JSON object; nulls are left out.
pub(crate) fn attrs(
    types: &TypeNames,
    object: &Map<String, Value>,
    out: &mut Vec<(String, RestrictedExpression)>,
) -> Result<(), AuthError> {
    for (k, v) in object {
        if let Some(e) = value(types, v)? {
            out.push((k.clone(), e));
        }
    }
    Ok(())
}

/// A JSON value as a Cedar value: strings, booleans, integers (a number
/// with a fraction is a `decimal`), sets, records, and Cedar's JSON escapes
/// `{"__entity": {"type": "User", "id": "anne"}}` and
/// `{"__extn": {"fn": "ip", "arg": "10.0.0.1"}}`. `null` is no value.
pub(crate) fn value(
    types: &TypeNames,
    v: &Value,
) -> Result<Option<RestrictedExpression>, AuthError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => match n.as_f64() {
                Some(f) if f.is_finite() => RestrictedExpression::new_decimal(format!("{f:.4}")),
                _ => {
                    return Err(AuthError::Config(format!(
                        "cedar: number {n} is out of range"
                    )));
                }
            },
        },
        Value::Array(items) => {
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                if let Some(e) = value(types, item)? {
                    set.push(e);
                }
            }
            RestrictedExpression::new_set(set)
        }
        Value::Object(map) => return object(types, map).map(Some),
    }))
}

fn object(types: &TypeNames, map: &Map<String, Value>) -> Result<RestrictedExpression, AuthError> {
    if map.len() == 1 {
        if let Some(e) = map.get("__entity") {
            return entity_ref(types, e).map(RestrictedExpression::new_entity_uid);
        }
        if let Some(e) = map.get("__extn") {
            return extension(e);
        }
    }
    let mut fields = Vec::with_capacity(map.len());
    attrs(types, map, &mut fields)?;
    RestrictedExpression::new_record(fields)
        .map_err(|e| AuthError::Config(format!("cedar: invalid record: {e}")))
}

fn entity_ref(types: &TypeNames, e: &Value) -> Result<EntityUid, AuthError> {
    let (Some(Value::String(t)), Some(Value::String(id))) = (e.get("type"), e.get("id")) else {
        return Err(AuthError::Config(
            "cedar: `__entity` needs string `type` and `id`".into(),
        ));
    };
    Ok(EntityUid::from_type_name_and_id(
        types.get(t)?,
        EntityId::new(id),
    ))
}

fn extension(e: &Value) -> Result<RestrictedExpression, AuthError> {
    let (Some(Value::String(f)), Some(Value::String(arg))) = (e.get("fn"), e.get("arg")) else {
        return Err(AuthError::Config(
            "cedar: `__extn` needs string `fn` and `arg`".into(),
        ));
    };
    Ok(match f.as_str() {
        "ip" => RestrictedExpression::new_ip(arg),
        "decimal" => RestrictedExpression::new_decimal(arg),
        "datetime" => RestrictedExpression::new_datetime(arg),
        "duration" => RestrictedExpression::new_duration(arg),
        other => {
            return Err(AuthError::Config(format!(
                "cedar: unknown extension function `{other}` (ip, decimal, datetime, duration)"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_cache_is_bounded() {
        let types = TypeNames::default();
        for i in 0..TYPE_CACHE_MAX + 100 {
            types.get(&format!("T{i}")).unwrap();
        }
        assert_eq!(types.len(), TYPE_CACHE_MAX);
        // Past the bound, names still parse, uncached.
        assert_eq!(types.get("Late").unwrap().to_string(), "Late");
        assert!(types.get("not a type").is_err());
    }

    #[test]
    fn json_values_convert() {
        let types = TypeNames::default();
        let v = serde_json::json!({
            "n": 3, "d": 1.5, "s": "x", "b": true, "none": null, "set": [1, null, 2],
            "owner": {"__entity": {"type": "User", "id": "anne"}},
            "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
            "rec": {"a": 1}
        });
        let mut out = Vec::new();
        attrs(&types, v.as_object().unwrap(), &mut out).unwrap();
        assert_eq!(out.len(), 8, "null is left out");
        for bad in [
            serde_json::json!({"__entity": {"type": "User"}}),
            serde_json::json!({"__extn": {"fn": "nope", "arg": "1"}}),
        ] {
            assert!(value(&types, &bad).is_err());
        }
    }
}
