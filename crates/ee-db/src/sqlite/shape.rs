//! A statement's shape (its columns and placeholder map, worked out once per
//! text), binding `$N` parameters like PostgreSQL, and reading rows: copied
//! into [`Row`]s or decoded straight into `T`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::types::ValueRef;

use crate::row::RowInner;
use crate::{DbError, Row, Value};

/// What a statement looks like, worked out once per statement text:
/// its column names, and which parameter each placeholder takes (`$N` /
/// `?N` / `?` bound by number, as PostgreSQL does; SQLite alone would
/// number `$N` by first appearance).
pub(crate) struct Shape {
    pub(super) text: Box<str>,
    columns: Arc<[String]>,
    /// For placeholder `i + 1`, the index into the parameters.
    slots: Box<[usize]>,
    /// How many parameters the statement takes.
    arity: usize,
    /// The serde field list (by address) known to match the columns in
    /// order, so rows decode positionally.
    positional: std::sync::atomic::AtomicUsize,
}

impl Shape {
    pub(super) fn of(stmt: &rusqlite::Statement<'_>, text: &str) -> Result<Self, DbError> {
        let mut slots = Vec::with_capacity(stmt.parameter_count());
        for i in 1..=stmt.parameter_count() {
            let n = match stmt.parameter_name(i) {
                None => Some(i),
                Some(name) => name
                    .strip_prefix(['$', '?'])
                    .and_then(|d| d.parse::<usize>().ok()),
            };
            let Some(n) = n.filter(|n| *n >= 1) else {
                return Err(DbError::Query {
                    code: Some("SQLITE_RANGE".into()),
                    message: format!(
                        "placeholder `{}` is not positional; use $1, $2, …",
                        stmt.parameter_name(i).unwrap_or("?")
                    ),
                });
            };
            slots.push(n - 1);
        }
        Ok(Self {
            text: text.into(),
            columns: stmt.column_names().into_iter().map(str::to_owned).collect(),
            arity: slots.iter().map(|n| n + 1).max().unwrap_or(0),
            slots: slots.into(),
            positional: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    pub(super) fn bind(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        params: &[Value],
    ) -> Result<(), DbError> {
        if self.arity != params.len() {
            return Err(arity(self.arity, params.len()));
        }
        for (i, n) in self.slots.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, &params[*n])?;
        }
        Ok(())
    }

    /// Whether `fields` are the columns, in order.
    pub(crate) fn positional(&self, fields: &'static [&'static str]) -> bool {
        let key = fields.as_ptr() as usize;
        if self.positional.load(Ordering::Relaxed) == key {
            return true;
        }
        let same = fields.len() == self.columns.len()
            && fields.iter().zip(self.columns.iter()).all(|(f, c)| f == c);
        if same {
            self.positional.store(key, Ordering::Relaxed);
        }
        same
    }
}

/// A connection that prepares a statement and binds its parameters: a
/// pooled connection (rusqlite's statement cache) or a thread's reader
/// (statements of its own).
pub(crate) trait Prepare {
    /// Runs `f` on `sql` prepared, with `params` bound.
    fn with_bound<R>(
        &mut self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&mut rusqlite::Statement<'_>, &Shape) -> Result<R, DbError>,
    ) -> Result<R, DbError>;

    /// Up to `limit` rows, copied out of the statement.
    fn query(&mut self, sql: &str, params: &[Value], limit: usize) -> Result<Vec<Row>, DbError> {
        self.with_bound(sql, params, |stmt, shape| copy_rows(stmt, shape, limit))
    }

    /// Up to `limit` rows decoded straight from the statement into `T` (no
    /// copies of text or blobs on the way).
    fn query_as<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
        limit: usize,
    ) -> Result<Vec<T>, DbError> {
        let mut out = Vec::new();
        self.with_bound(sql, params, |stmt, shape| {
            each(stmt, shape, limit, |t| out.push(t))
        })?;
        Ok(out)
    }

    /// The first row decoded into `T`, if any.
    fn query_first<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<T>, DbError> {
        let mut first = None;
        self.with_bound(sql, params, |stmt, shape| {
            each(stmt, shape, 1, |t| first = Some(t))
        })?;
        Ok(first)
    }
}

/// Up to `limit` rows of a bound statement, copied into [`Row`]s.
fn copy_rows(
    stmt: &mut rusqlite::Statement<'_>,
    shape: &Shape,
    limit: usize,
) -> Result<Vec<Row>, DbError> {
    let columns = shape.columns.clone();
    let width = columns.len();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(f) => Value::Float(f),
                ValueRef::Text(t) => Value::Text(
                    std::str::from_utf8(t)
                        .map_err(|e| DbError::Decode(format!("column {i}: {e}")))?
                        .to_owned(),
                ),
                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            });
        }
        out.push(Row(RowInner::Sqlite {
            columns: columns.clone(),
            values,
        }));
    }
    Ok(out)
}

/// Decodes up to `limit` rows of a bound statement into `T` and hands each
/// to `sink`.
fn each<T: serde::de::DeserializeOwned>(
    stmt: &mut rusqlite::Statement<'_>,
    shape: &Shape,
    limit: usize,
    mut sink: impl FnMut(T),
) -> Result<(), DbError> {
    let mut rows = stmt.raw_query();
    let mut n = 0;
    while n < limit {
        let Some(row) = rows.next()? else { break };
        sink(crate::row::decode(&Borrowed { row, shape })?);
        n += 1;
    }
    Ok(())
}

fn arity(expected: usize, given: usize) -> DbError {
    DbError::Query {
        code: Some("SQLITE_RANGE".into()),
        message: format!("the statement takes {expected} parameters, {given} given"),
    }
}

/// An SQLite row inside its statement.
struct Borrowed<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    shape: &'a Shape,
}

impl crate::row::Cells for Borrowed<'_, '_> {
    fn width(&self) -> usize {
        self.shape.columns.len()
    }
    fn column(&self, i: usize) -> &str {
        &self.shape.columns[i]
    }
    fn positional(&self, fields: &'static [&'static str]) -> bool {
        self.shape.positional(fields)
    }
    fn at(&self, i: usize) -> Result<crate::row::Cell<'_>, DbError> {
        use crate::row::Cell;
        Ok(match self.row.get_ref(i)? {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(n) => Cell::Int(n),
            ValueRef::Real(f) => Cell::Float(f),
            ValueRef::Text(t) => Cell::Text(
                std::str::from_utf8(t)
                    .map_err(|e| DbError::Decode(format!("column `{}`: {e}", self.column(i))))?,
            ),
            ValueRef::Blob(b) => Cell::Bytes(b),
        })
    }
}
