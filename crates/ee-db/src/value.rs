//! Parameters: one value type both engines bind.

/// A query parameter (and an SQLite column value).
///
/// Build parameters with [`params!`](crate::params), which converts each
/// argument with `Value::from`. Types beyond these (timestamps, UUIDs,
/// numerics) are passed as text and cast in SQL: `$1::text::uuid`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A boolean (SQLite stores 0 or 1).
    Bool(bool),
    /// An integer of any width (bound as the parameter's declared width on
    /// PostgreSQL, with a range check).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes (`bytea` / `BLOB`).
    Bytes(Vec<u8>),
    /// A JSON document (`json`/`jsonb` on PostgreSQL, text on SQLite).
    Json(serde_json::Value),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        Value::Json(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Query parameters, converted with `Value::from`: `params![id, "name", 3_i64]`.
/// Placeholders are `$1`, `$2`, … on both engines.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::Value] };
    ($($v:expr),+ $(,)?) => { &[$($crate::Value::from($v)),+] as &[$crate::Value] };
}

#[cfg(feature = "postgres")]
mod pg {
    use super::Value;
    use bytes::BytesMut;
    use postgres_types::{IsNull, ToSql, Type, to_sql_checked};

    type BoxError = Box<dyn std::error::Error + Sync + Send>;

    fn mismatch(value: &str, ty: &Type) -> BoxError {
        format!("cannot bind {value} to a parameter of type {ty}; cast the parameter in SQL (`$1::text::{ty}`)").into()
    }

    impl ToSql for Value {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            match self {
                Value::Null => Ok(IsNull::Yes),
                Value::Bool(b) => match *ty {
                    Type::BOOL => b.to_sql(ty, out),
                    _ => Err(mismatch("a boolean", ty)),
                },
                Value::Int(i) => match *ty {
                    Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                    Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                    Type::INT8 => i.to_sql(ty, out),
                    Type::OID => u32::try_from(*i)?.to_sql(ty, out),
                    #[allow(clippy::cast_precision_loss)]
                    Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                    #[allow(clippy::cast_precision_loss)]
                    Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                    Type::TEXT | Type::VARCHAR => i.to_string().as_str().to_sql(ty, out),
                    _ => Err(mismatch("an integer", ty)),
                },
                Value::Float(f) => match *ty {
                    #[allow(clippy::cast_possible_truncation)]
                    Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                    Type::FLOAT8 => f.to_sql(ty, out),
                    _ => Err(mismatch("a float", ty)),
                },
                Value::Text(s) => match *ty {
                    Type::JSON => {
                        out.extend_from_slice(s.as_bytes());
                        Ok(IsNull::No)
                    }
                    Type::JSONB => {
                        out.extend_from_slice(&[1]);
                        out.extend_from_slice(s.as_bytes());
                        Ok(IsNull::No)
                    }
                    _ if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
                    _ => Err(mismatch("text", ty)),
                },
                Value::Bytes(b) => match *ty {
                    Type::BYTEA => b.as_slice().to_sql(ty, out),
                    _ => Err(mismatch("bytes", ty)),
                },
                Value::Json(v) => match *ty {
                    Type::JSON | Type::JSONB => v.to_sql(ty, out),
                    _ if <&str as ToSql>::accepts(ty) => v.to_string().as_str().to_sql(ty, out),
                    _ => Err(mismatch("JSON", ty)),
                },
            }
        }

        fn accepts(_ty: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::Value;
    use rusqlite::types::{ToSqlOutput, ValueRef};

    impl rusqlite::ToSql for Value {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(match self {
                Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
                Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
                Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
                Value::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
                Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
                Value::Json(v) => ToSqlOutput::Owned(rusqlite::types::Value::Text(v.to_string())),
            })
        }
    }
}
