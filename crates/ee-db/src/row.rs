//! Rows from either engine, read by column name or index, or straight into
//! a `serde::Deserialize` type.

use std::sync::Arc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use crate::DbError;

/// One result row.
///
/// ```
/// # async fn demo(db: ee_db::Database) -> Result<(), ee_db::DbError> {
/// let row = db.query_one("SELECT 42 AS answer, 'ok' AS word", ee_db::params![]).await?;
/// let answer: i64 = row.get("answer")?;
/// let word: String = row.get(1)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Row(pub(crate) RowInner);

#[derive(Debug)]
pub(crate) enum RowInner {
    #[cfg(feature = "postgres")]
    Pg(tokio_postgres::Row),
    #[cfg(feature = "sqlite")]
    Sqlite {
        columns: Arc<[String]>,
        values: Vec<crate::Value>,
    },
}

/// A column by position (`0`) or by name (`"id"`).
pub trait ColumnIndex: std::fmt::Display + Copy {
    /// The position of this column in `names`.
    fn position<'a>(&self, names: impl Iterator<Item = &'a str>) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn position<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> Option<usize> {
        names.nth(*self).map(|_| *self)
    }
}

impl ColumnIndex for &str {
    fn position<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> Option<usize> {
        names.position(|n| n == *self)
    }
}

/// A borrowed cell: what both engines' columns decode to.
#[derive(Debug)]
pub(crate) enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// Boxed: keeps the common cells small to move.
    Json(Box<serde_json::Value>),
}

impl Row {
    /// How many columns the row has.
    pub fn len(&self) -> usize {
        match &self.0 {
            #[cfg(feature = "postgres")]
            RowInner::Pg(r) => r.len(),
            #[cfg(feature = "sqlite")]
            RowInner::Sqlite { values, .. } => values.len(),
        }
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column names, in order.
    pub fn columns(&self) -> Vec<&str> {
        self.names().collect()
    }

    fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.0 {
            #[cfg(feature = "postgres")]
            RowInner::Pg(r) => Box::new(r.columns().iter().map(|c| c.name())),
            #[cfg(feature = "sqlite")]
            RowInner::Sqlite { columns, .. } => Box::new(columns.iter().map(String::as_str)),
        }
    }

    fn name(&self, i: usize) -> &str {
        match &self.0 {
            #[cfg(feature = "postgres")]
            RowInner::Pg(r) => r.columns()[i].name(),
            #[cfg(feature = "sqlite")]
            RowInner::Sqlite { columns, .. } => &columns[i],
        }
    }

    /// One column, decoded with serde into `T` (`i64`, `String`,
    /// `Option<_>`, `bool`, `f64`, `Vec<u8>`, `serde_json::Value`, or any
    /// `Deserialize` type from a JSON column).
    pub fn get<T: DeserializeOwned>(&self, column: impl ColumnIndex) -> Result<T, DbError> {
        let i = column
            .position(self.names())
            .ok_or_else(|| DbError::Decode(format!("the row has no column {column}")))?;
        let cell = self.cell(i)?;
        T::deserialize(CellDe(cell))
            .map_err(|e| DbError::Decode(format!("column `{}`: {}", self.name(i), e.0)))
    }

    /// The whole row as `T` (a struct whose fields are named like the
    /// columns, a map, or a tuple in column order).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DbError> {
        decode(self)
    }

    pub(crate) fn cell(&self, i: usize) -> Result<Cell<'_>, DbError> {
        match &self.0 {
            #[cfg(feature = "postgres")]
            RowInner::Pg(r) => pg_cell(r, i),
            #[cfg(feature = "sqlite")]
            RowInner::Sqlite { values, .. } => Ok(match &values[i] {
                crate::Value::Null => Cell::Null,
                crate::Value::Bool(b) => Cell::Bool(*b),
                crate::Value::Int(n) => Cell::Int(*n),
                crate::Value::Float(f) => Cell::Float(*f),
                crate::Value::Text(s) => Cell::Text(s),
                crate::Value::Bytes(b) => Cell::Bytes(b),
                crate::Value::Json(v) => Cell::Json(Box::new(v.clone())),
            }),
        }
    }
}

#[cfg(feature = "postgres")]
fn pg_cell(row: &tokio_postgres::Row, i: usize) -> Result<Cell<'_>, DbError> {
    use tokio_postgres::types::Type;
    let column = &row.columns()[i];
    let ty = column.type_();
    let bad =
        |e: tokio_postgres::Error| DbError::Decode(format!("column `{}`: {e}", column.name()));
    macro_rules! get {
        ($t:ty, $make:expr) => {
            row.try_get::<_, Option<$t>>(i)
                .map_err(bad)?
                .map_or(Cell::Null, $make)
        };
    }
    Ok(match *ty {
        Type::BOOL => get!(bool, Cell::Bool),
        Type::INT2 => get!(i16, |v| Cell::Int(i64::from(v))),
        Type::INT4 => get!(i32, |v| Cell::Int(i64::from(v))),
        Type::INT8 => get!(i64, Cell::Int),
        Type::OID => get!(u32, |v| Cell::Int(i64::from(v))),
        Type::FLOAT4 => get!(f32, |v| Cell::Float(f64::from(v))),
        Type::FLOAT8 => get!(f64, Cell::Float),
        Type::BYTEA => get!(&[u8], Cell::Bytes),
        Type::JSON | Type::JSONB => get!(serde_json::Value, |v| Cell::Json(Box::new(v))),
        _ if <&str as tokio_postgres::types::FromSql>::accepts(ty) => get!(&str, Cell::Text),
        _ => {
            return Err(DbError::Decode(format!(
                "column `{}` has type {ty}, which ee-db does not decode; cast it in SQL (`{}::text`)",
                column.name(),
                column.name()
            )));
        }
    })
}

/// A serde error message.
#[derive(Debug)]
pub(crate) struct DeError(pub(crate) String);

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DeError {}
impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

struct CellDe<'a>(Cell<'a>);

impl<'de> de::Deserializer<'de> for CellDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Cell::Null => visitor.visit_unit(),
            Cell::Bool(b) => visitor.visit_bool(b),
            Cell::Int(i) => visitor.visit_i64(i),
            Cell::Float(f) => visitor.visit_f64(f),
            Cell::Text(s) => visitor.visit_str(s),
            Cell::Bytes(b) => visitor.visit_bytes(b),
            Cell::Json(v) => (*v).deserialize_any(visitor).map_err(de::Error::custom),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Cell::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            // SQLite has no boolean: 0 and 1.
            Cell::Int(i) => visitor.visit_bool(i != 0),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Cell::Bytes(b) => visitor.visit_byte_buf(b.to_vec()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            // A BLOB into `Vec<u8>`.
            Cell::Bytes(b) => visitor.visit_seq(de::value::SeqDeserializer::new(b.iter().copied())),
            Cell::Text(s) => json_text(s)?
                .deserialize_seq(visitor)
                .map_err(de::Error::custom),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Cell::Text(s) => json_text(s)?
                .deserialize_map(visitor)
                .map_err(de::Error::custom),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            // JSON kept in a text column (SQLite).
            Cell::Text(s) => json_text(s)?
                .deserialize_struct(name, fields, visitor)
                .map_err(de::Error::custom),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Cell::Text(s) => visitor.visit_enum(s.into_deserializer()),
            Cell::Json(v) => (*v)
                .deserialize_enum(name, variants, visitor)
                .map_err(de::Error::custom),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

/// JSON kept in a text column (SQLite), parsed for a struct, map or list.
fn json_text(s: &str) -> Result<serde_json::Value, DeError> {
    serde_json::from_str(s).map_err(|e| DeError(format!("JSON in a text column: {e}")))
}

/// A row the deserializer can read: an owned [`Row`], or an SQLite row
/// still inside its statement (decoded without copying).
pub(crate) trait Cells {
    fn width(&self) -> usize;
    fn column(&self, i: usize) -> &str;
    fn at(&self, i: usize) -> Result<Cell<'_>, DbError>;
    /// Whether a struct with these fields can take the columns by position.
    fn positional(&self, _fields: &'static [&'static str]) -> bool {
        false
    }
}

impl Cells for Row {
    fn width(&self) -> usize {
        self.len()
    }
    fn column(&self, i: usize) -> &str {
        self.name(i)
    }
    fn at(&self, i: usize) -> Result<Cell<'_>, DbError> {
        self.cell(i)
    }
}

/// Decodes a whole row into `T`.
pub(crate) fn decode<T: DeserializeOwned, R: Cells + ?Sized>(row: &R) -> Result<T, DbError> {
    T::deserialize(RowDe { row }).map_err(|e| DbError::Decode(e.0))
}

struct RowDe<'r, R: ?Sized> {
    row: &'r R,
}

impl<'de, R: Cells + ?Sized> de::Deserializer<'de> for RowDe<'_, R> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Columns {
            row: self.row,
            next: 0,
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(Columns {
            row: self.row,
            next: 0,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Columns named like the fields, in order: skip matching names per row.
        if self.row.positional(fields) {
            self.deserialize_seq(visitor)
        } else {
            self.deserialize_any(visitor)
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct map enum
        identifier ignored_any
    }
}

struct Columns<'r, R: ?Sized> {
    row: &'r R,
    next: usize,
}

impl<'de, R: Cells + ?Sized> MapAccess<'de> for Columns<'_, R> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if self.next >= self.row.width() {
            return Ok(None);
        }
        let name = self.row.column(self.next);
        seed.deserialize(de::value::StrDeserializer::<DeError>::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let i = self.next;
        self.next += 1;
        let cell = self.row.at(i).map_err(|e| DeError(e.to_string()))?;
        seed.deserialize(CellDe(cell))
            .map_err(|e| DeError(format!("column `{}`: {}", self.row.column(i), e.0)))
    }
}

impl<'de, R: Cells + ?Sized> de::SeqAccess<'de> for Columns<'_, R> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if self.next >= self.row.width() {
            return Ok(None);
        }
        self.next_value_seed(seed).map(Some)
    }
}

/// Builds a value from a row by hand (the serde route is
/// [`Row::decode`] / `query_as`).
///
/// ```
/// use ee_db::{DbError, FromRow, Row};
///
/// struct Product { sku: String, price_minor: i64 }
///
/// impl FromRow for Product {
///     fn from_row(row: &Row) -> Result<Self, DbError> {
///         Ok(Product { sku: row.get("sku")?, price_minor: row.get("price_minor")? })
///     }
/// }
/// ```
pub trait FromRow: Sized {
    /// Reads `Self` from `row`.
    fn from_row(row: &Row) -> Result<Self, DbError>;
}
