//! `DbTuples`: tuples in a PostgreSQL or SQLite table through ee-db.

use std::sync::Arc;

use ee_db::{Database, DbError, Value};

use crate::AuthError;
use crate::rebac::tuple::{ObjectRef, RelationTuple, TupleUser};

use super::{DirectLookup, DirectMatch, ReverseLookup, TupleChanges, TupleStore};

/// Rows per multi-row `INSERT` (6 parameters each: far below both engines'
/// parameter limits).
const INSERT_CHUNK: usize = 1000;
/// Longest table name (PostgreSQL identifiers have 63 bytes; the index
/// name adds `_by_user`).
const MAX_TABLE: usize = 48;

/// The statements, built once for the table.
#[derive(Debug)]
struct Sql {
    table: String,
    /// The exact tuple or the wildcard (`part` 0).
    exact: String,
    /// `UNION ALL` the userset tuples (`part` 1).
    usersets: String,
    /// `UNION ALL` the users of tuplesets (`part` 2): the head, to which
    /// the parameters of the relation list and the limit are appended.
    tuplesets: String,
    users: String,
    objects: String,
    delete: String,
}

impl Sql {
    fn new(t: &str) -> Self {
        let cols = "relation, user_type, user_id, user_relation";
        Sql {
            table: t.to_owned(),
            exact: format!(
                "SELECT 0 AS part, {cols} FROM {t} \
                 WHERE object_type = $1 AND object_id = $2 AND relation = $3 \
                 AND user_relation = $4 AND user_type = $5 AND user_id IN ($6, '*')"
            ),
            usersets: format!(
                " UNION ALL SELECT * FROM (SELECT 1 AS part, {cols} FROM {t} \
                 WHERE object_type = $1 AND object_id = $2 AND relation = $3 AND user_relation > '' \
                 ORDER BY user_relation, user_type, user_id LIMIT $7) AS usersets"
            ),
            tuplesets: format!(
                " UNION ALL SELECT * FROM (SELECT 2 AS part, {cols} FROM {t} \
                 WHERE object_type = $1 AND object_id = $2 AND relation IN ("
            ),
            users: format!(
                "SELECT user_type, user_id, user_relation FROM {t} \
                 WHERE object_type = $1 AND object_id = $2 AND relation = $3 \
                 ORDER BY user_relation, user_type, user_id LIMIT $4"
            ),
            objects: format!(
                "SELECT object_id FROM {t} WHERE user_type = $1 AND user_id = $2 \
                 AND user_relation = $3 AND object_type = $4 AND relation = $5 \
                 ORDER BY object_id LIMIT $6"
            ),
            delete: format!(
                "DELETE FROM {t} WHERE object_type = $1 AND object_id = $2 AND relation = $3 \
                 AND user_relation = $4 AND user_type = $5 AND user_id = $6"
            ),
        }
    }

    /// The table and its two indexes: the primary key serves forward reads
    /// (`object#relation` → users, userset tuples after the plain ones),
    /// `<table>_by_user` the reverse ones (user → objects).
    fn create(&self) -> String {
        let t = &self.table;
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                object_type TEXT NOT NULL,
                object_id TEXT NOT NULL,
                relation TEXT NOT NULL,
                user_relation TEXT NOT NULL,
                user_type TEXT NOT NULL,
                user_id TEXT NOT NULL,
                PRIMARY KEY (object_type, object_id, relation, user_relation, user_type, user_id)
            );
            CREATE INDEX IF NOT EXISTS {t}_by_user
                ON {t} (user_type, user_id, user_relation, object_type, relation, object_id)"
        )
    }

    fn insert(&self, rows: usize) -> String {
        let mut sql = format!(
            "INSERT INTO {} (object_type, object_id, relation, user_relation, user_type, user_id) VALUES ",
            self.table
        );
        for row in 0..rows {
            let p = row * 6;
            if row > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            ));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        sql
    }
}

fn columns(t: &RelationTuple, out: &mut Vec<Value>) {
    let (user_type, user_id, user_relation) = t.user.parts();
    out.extend([
        Value::from(t.object.kind.as_str()),
        Value::from(t.object.id.as_str()),
        Value::from(t.relation.as_str()),
        Value::from(user_relation),
        Value::from(user_type),
        Value::from(user_id),
    ]);
}

fn unavailable(e: DbError) -> AuthError {
    AuthError::unavailable("tuple store", e)
}

fn limit(n: usize) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Tuples in a table of a PostgreSQL or SQLite [`Database`] (features
/// `postgres`, `sqlite`): the same SQL on both, a primary key for forward
/// reads and an index for reverse ones. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ee_auth::{DbTuples, TupleStore};
///
/// let db = ee_db::Database::open("sqlite::memory:").await?;
/// let tuples = DbTuples::open(db, "rebac_tuples").await?; // creates the table if missing
/// # Ok(()) }
/// ```
///
/// On PostgreSQL, give each tenant or test its own table name, or a
/// `Database::with_schema` handle.
///
/// Under [`Rebac`](crate::Rebac), a check of a relation that reaches only
/// direct types, computed relations, `x from y` and `or` (no `and`, no
/// `but not`) is pushed down: one recursive query fetches the tuples it may
/// read (at most `max_fanout` of them, else it reads level by level), and
/// the engine walks them in memory, with the same answer, path and bounds.
#[derive(Debug, Clone)]
pub struct DbTuples {
    db: Database,
    sql: Arc<Sql>,
}

impl DbTuples {
    /// Tuples in `table` (a plain identifier: ASCII letters, digits and `_`,
    /// at most 48 bytes), created with its indexes if missing.
    pub async fn open(db: Database, table: &str) -> Result<Self, AuthError> {
        let valid = !table.is_empty()
            && table.len() <= MAX_TABLE
            && table
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(AuthError::Config(format!(
                "`{table}` is not a valid tuple table name (ASCII letters, digits and `_`, at most {MAX_TABLE} bytes)"
            )));
        }
        let sql = Sql::new(table);
        db.batch(&sql.create()).await.map_err(unavailable)?;
        Ok(DbTuples {
            db,
            sql: Arc::new(sql),
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.sql.table
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

impl TupleStore for DbTuples {
    async fn write(&self, changes: TupleChanges<'_>) -> Result<(), AuthError> {
        if changes.writes.is_empty() && changes.deletes.is_empty() {
            return Ok(());
        }
        // Sorted: concurrent writers take row locks in one order (no deadlock).
        let mut writes: Vec<&RelationTuple> = changes.writes.iter().collect();
        writes.sort_unstable();
        writes.dedup();
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let mut params = Vec::new();
        for chunk in writes.chunks(INSERT_CHUNK) {
            params.clear();
            for t in chunk {
                columns(t, &mut params);
            }
            tx.execute(&self.sql.insert(chunk.len()), &params)
                .await
                .map_err(unavailable)?;
        }
        for t in changes.deletes {
            params.clear();
            columns(t, &mut params);
            tx.execute(&self.sql.delete, &params)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn read_users(
        &self,
        object: &ObjectRef,
        relation: &str,
        max: usize,
    ) -> Result<Vec<TupleUser>, AuthError> {
        let rows: Vec<(String, String, String)> = self
            .db
            .query_as(
                &self.sql.users,
                &[
                    Value::from(object.kind.as_str()),
                    Value::from(object.id.as_str()),
                    Value::from(relation),
                    limit(max),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .iter()
            .map(|(t, id, r)| TupleUser::from_parts(t, id, r))
            .collect())
    }

    async fn find_direct(&self, lookup: DirectLookup<'_>) -> Result<DirectMatch, AuthError> {
        let (user_type, user_id, user_relation) = lookup.user.parts();
        let mut params = vec![
            Value::from(lookup.object.kind.as_str()),
            Value::from(lookup.object.id.as_str()),
            Value::from(lookup.relation),
            Value::from(user_relation),
            Value::from(user_type),
            Value::from(user_id),
        ];
        let mut sql = self.sql.exact.clone();
        if lookup.max_usersets > 0 {
            params.push(limit(lookup.max_usersets));
            sql.push_str(&self.sql.usersets);
        }
        if !lookup.tuplesets.is_empty() {
            sql.push_str(&self.sql.tuplesets);
            for (i, ts) in lookup.tuplesets.iter().enumerate() {
                params.push(Value::from(ts.as_str()));
                let sep = if i == 0 { "" } else { ", " };
                sql.push_str(&format!("{sep}${}", params.len()));
            }
            let all = lookup
                .max_tupleset_users
                .saturating_mul(lookup.tuplesets.len());
            params.push(limit(all));
            sql.push_str(&format!(
                ") ORDER BY relation, user_relation, user_type, user_id LIMIT ${}) AS tuplesets",
                params.len()
            ));
        }
        let rows: Vec<(i64, String, String, String, String)> =
            self.db.query_as(&sql, &params).await.map_err(unavailable)?;
        let mut tupleset_rows = 0;
        let mut found = DirectMatch {
            tuplesets: lookup
                .tuplesets
                .iter()
                .map(|ts| (ts.clone(), Vec::new()))
                .collect(),
            ..DirectMatch::default()
        };
        for (part, relation, t, id, r) in &rows {
            let user = TupleUser::from_parts(t, id, r);
            match part {
                0 => {
                    // The exact tuple wins over the wildcard.
                    if found.matched.is_none() || id == user_id {
                        found.matched = Some(user);
                    }
                }
                1 => found.usersets.push(user),
                _ => {
                    tupleset_rows += 1;
                    if let Some(users) = found.tuplesets.get_mut(relation) {
                        users.push(user);
                    }
                }
            }
        }
        // One shared LIMIT: when it was reached, one relation may have
        // crowded out another; the engine reads them one by one instead.
        if tupleset_rows
            >= lookup
                .max_tupleset_users
                .saturating_mul(lookup.tuplesets.len())
        {
            found.tuplesets.clear();
        }
        Ok(found)
    }

    async fn read_objects(&self, lookup: ReverseLookup<'_>) -> Result<Vec<String>, AuthError> {
        let (user_type, user_id, user_relation) = lookup.user.parts();
        let rows: Vec<(String,)> = self
            .db
            .query_as(
                &self.sql.objects,
                &[
                    Value::from(user_type),
                    Value::from(user_id),
                    Value::from(user_relation),
                    Value::from(lookup.object_type),
                    Value::from(lookup.relation),
                    limit(lookup.limit),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
