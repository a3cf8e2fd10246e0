//! A check pushed down to SQL: one recursive query on [`DbTuples`] fetches
//! every tuple the check could read, then the engine runs on that snapshot
//! in memory (same answer, path and bounds as level by level, in one round
//! trip instead of one per level).
//!
//! It applies to a `(type, relation)` whose rewrite, and the rewrites of
//! every relation it reaches, use only direct types, computed usersets,
//! tuple-to-userset and `or`. The model part is compiled once: per such
//! relation its rules (edges to follow, relations to read) go into the
//! query's `rules` table. The walk expands forward from `object#relation`
//! as the engine would (computed relations on the same object, the admitted
//! userset tuples, the tupleset's objects whose type has the computed
//! relation), deduplicated and cut at `max_depth`; the query then returns,
//! for each reached `object#relation`, the tuples the engine reads there:
//! the user's own tuple or its type's wildcard, the userset tuples, the
//! tupleset's users. More than `max_fanout` rows: the engine reads level by
//! level instead.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use ee_db::{Engine, Value};

use crate::AuthError;
use crate::rebac::engine::Limits;
use crate::rebac::model::{RebacModel, Restriction, Rewrite};
use crate::rebac::tuple::{ObjectRef, TupleUser};

use super::db::DbTuples;
use super::{CheckReads, DirectLookup, DirectMatch};

/// A `(type, relation)` pair.
type Node = (String, String);
/// `(object type, object id, relation)` → its users as `(user relation,
/// user type, user id)`, in that order.
type Tuples = HashMap<(String, String, String), Vec<(String, String, String)>>;

/// One row of the query's `rules` table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `C`: computed (`trel` on the same object); `E`: an edge through the
    /// tuples `object#arg@ttype:?#urel`, to `ttype:?#trel`; `R`: read the
    /// user's tuple on `arg`; `W`: read its type's wildcard on `arg` (only
    /// where one is admitted: else the engine ignores it); `U`: read the
    /// userset tuples of `arg`; `S`:
    /// read every tuple of `arg` (a tupleset).
    kind: &'static str,
    otype: String,
    orel: String,
    arg: String,
    ttype: String,
    urel: String,
    trel: String,
}

/// The compiled pushdown for one engine on one [`DbTuples`].
#[derive(Debug)]
pub(crate) struct Pushdown {
    store: DbTuples,
    sql: String,
    eligible: HashSet<Node>,
    max_depth: u32,
    max_rows: usize,
}

/// Whether a rewrite uses only what a walk can follow.
fn union_only(rewrite: &Rewrite) -> bool {
    match rewrite {
        Rewrite::Direct | Rewrite::Computed(_) | Rewrite::TupleToUserset { .. } => true,
        Rewrite::Union(parts) => parts.iter().all(union_only),
        Rewrite::Intersection(_) | Rewrite::Exclusion(..) => false,
    }
}

/// The relations `kind#relation` leads to, as the engine follows them.
fn next(model: &RebacModel, kind: &str, relation: &str) -> Vec<Node> {
    let mut out = Vec::new();
    let Some(rel) = model.relation(kind, relation) else {
        return out;
    };
    for r in &rel.direct {
        if let Restriction::Userset(t, r2) = r {
            out.push((t.clone(), r2.clone()));
        }
    }
    fn rewrite(model: &RebacModel, kind: &str, rw: &Rewrite, out: &mut Vec<Node>) {
        match rw {
            Rewrite::Direct => {}
            Rewrite::Computed(r) => out.push((kind.to_owned(), r.clone())),
            Rewrite::TupleToUserset { computed, .. } => {
                for t in types_with(model, computed) {
                    out.push((t, computed.clone()));
                }
            }
            Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
                parts.iter().for_each(|p| rewrite(model, kind, p, out));
            }
            Rewrite::Exclusion(b, s) => {
                rewrite(model, kind, b, out);
                rewrite(model, kind, s, out);
            }
        }
    }
    rewrite(model, kind, &rel.rewrite, &mut out);
    out
}

/// The types with a relation `relation`, sorted (the engine follows a
/// tupleset's object to any of them).
fn types_with(model: &RebacModel, relation: &str) -> Vec<String> {
    let mut types: Vec<String> = model
        .types
        .iter()
        .filter(|(_, def)| def.relations.contains_key(relation))
        .map(|(t, _)| t.clone())
        .collect();
    types.sort_unstable();
    types
}

/// Whether every relation reachable from `start` is union-only.
fn eligible(model: &RebacModel, start: &Node) -> bool {
    let mut seen = HashSet::from([start.clone()]);
    let mut stack = vec![start.clone()];
    while let Some((kind, relation)) = stack.pop() {
        match model.relation(&kind, &relation) {
            Some(rel) if union_only(&rel.rewrite) => {}
            _ => return false,
        }
        for n in next(model, &kind, &relation) {
            if seen.insert(n.clone()) {
                stack.push(n);
            }
        }
    }
    true
}

/// The rules of one eligible relation.
fn rules(model: &RebacModel, kind: &str, relation: &str, out: &mut Vec<Rule>) {
    let Some(rel) = model.relation(kind, relation) else {
        return;
    };
    let rule = |kind_: &'static str, arg: &str, ttype: &str, urel: &str, trel: &str| Rule {
        kind: kind_,
        otype: kind.to_owned(),
        orel: relation.to_owned(),
        arg: arg.to_owned(),
        ttype: ttype.to_owned(),
        urel: urel.to_owned(),
        trel: trel.to_owned(),
    };
    fn parts<'r>(rw: &'r Rewrite, out: &mut Vec<&'r Rewrite>) {
        match rw {
            Rewrite::Union(p) => p.iter().for_each(|p| parts(p, out)),
            other => out.push(other),
        }
    }
    let mut all = Vec::new();
    parts(&rel.rewrite, &mut all);
    for part in all {
        match part {
            Rewrite::Direct => {
                out.push(rule("R", relation, "", "", ""));
                if rel
                    .direct
                    .iter()
                    .any(|r| matches!(r, Restriction::Wildcard(_)))
                {
                    out.push(rule("W", relation, "", "", ""));
                }
                if rel.has_usersets {
                    out.push(rule("U", relation, "", "", ""));
                }
                for r in &rel.direct {
                    if let Restriction::Userset(t, r2) = r {
                        out.push(rule("E", relation, t, r2, r2));
                    }
                }
            }
            Rewrite::Computed(r) => out.push(rule("C", "", kind, "", r)),
            Rewrite::TupleToUserset { tupleset, computed } => {
                out.push(rule("S", tupleset, "", "", ""));
                for t in types_with(model, computed) {
                    out.push(rule("E", tupleset, &t, "", computed));
                }
            }
            // Not eligible: never compiled.
            Rewrite::Union(_) | Rewrite::Intersection(_) | Rewrite::Exclusion(..) => {}
        }
    }
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The query: `$1..$3` the object type, id and relation, `$4..$6` the user's
/// columns, `$7` the deepest hop to take, `$8` the row limit.
fn query(engine: Engine, table: &str, rules: &[Rule]) -> String {
    let mut values = String::new();
    for (i, r) in rules.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            values,
            "{sep}({}, {}, {}, {}, {}, {}, {})",
            lit(r.kind),
            lit(&r.otype),
            lit(&r.orel),
            lit(&r.arg),
            lit(&r.ttype),
            lit(&r.urel),
            lit(&r.trel)
        );
    }
    let cols = "t.object_type, t.object_id, t.relation, t.user_type, t.user_id, t.user_relation";
    // Each walk row is a reached `object#relation` with one of its rules,
    // so every tuple read takes its whole key from that one row.
    let read = |kind: &str, filter: &str| {
        let keyed = format!(
            "t.object_type = w.otype AND t.object_id = w.oid AND t.relation = w.arg{filter}"
        );
        match engine {
            // A lateral probe per walk row (`OFFSET 0` keeps it one): the
            // generic plan otherwise may scan all of a user's tuples through
            // the reverse index instead.
            Engine::Postgres => format!(
                "SELECT {cols} FROM walk w CROSS JOIN LATERAL \
                 (SELECT {cols} FROM {table} t WHERE {keyed} OFFSET 0) t WHERE w.kind = '{kind}'"
            ),
            Engine::Sqlite => {
                format!("SELECT {cols} FROM walk w JOIN {table} t ON w.kind = '{kind}' AND {keyed}")
            }
        }
    };
    format!(
        "WITH RECURSIVE rules(kind, otype, orel, arg, ttype, urel, trel) AS (VALUES {values}), \
         walk(otype, oid, orel, depth, kind, arg, ttype, urel, trel) AS ( \
           SELECT r.otype, CAST($2 AS TEXT), r.orel, 0, r.kind, r.arg, r.ttype, r.urel, r.trel \
             FROM rules r WHERE r.otype = $1 AND r.orel = $3 \
           UNION \
           SELECT r.otype, CASE WHEN w.kind = 'C' THEN w.oid ELSE t.user_id END, r.orel, \
                  w.depth + 1, r.kind, r.arg, r.ttype, r.urel, r.trel \
             FROM walk w \
             LEFT JOIN {table} t ON w.kind = 'E' AND t.object_type = w.otype \
               AND t.object_id = w.oid AND t.relation = w.arg \
               AND t.user_relation = w.urel AND t.user_type = w.ttype \
             JOIN rules r ON r.otype = w.ttype AND r.orel = w.trel \
            WHERE w.kind IN ('C', 'E') AND w.depth < $7 \
              AND (w.kind = 'C' OR (t.user_id IS NOT NULL AND t.user_id <> '*')) \
         ) \
         {} UNION ALL {} UNION ALL {}{} LIMIT $8",
        read("S", ""),
        read("U", " AND t.user_relation > ''"),
        // The user's tuple and its type's wildcard apart: each an index probe.
        read(
            "R",
            " AND t.user_relation = $4 AND t.user_type = $5 AND t.user_id = $6"
        ),
        if rules.iter().any(|r| r.kind == "W") {
            let wildcard = read(
                "W",
                " AND t.user_relation = $4 AND t.user_type = $5 AND t.user_id = '*'",
            );
            format!(" UNION ALL {wildcard}")
        } else {
            String::new()
        },
    )
}

impl Pushdown {
    /// Compiles `model` for `store`; `None` when no relation is eligible.
    pub(crate) fn new(model: &RebacModel, store: DbTuples, limits: Limits) -> Option<Self> {
        let mut nodes: Vec<Node> = model
            .types
            .iter()
            .flat_map(|(t, def)| def.relations.keys().map(move |r| (t.clone(), r.clone())))
            .filter(|n| eligible(model, n))
            .collect();
        nodes.sort_unstable();
        let mut all = Vec::new();
        for (kind, relation) in &nodes {
            rules(model, kind, relation, &mut all);
        }
        if all.is_empty() {
            return None;
        }
        // SQLite runs the same query but for the reads' join: both engines
        // have `WITH RECURSIVE`.
        let sql = query(store.database().engine(), store.table(), &all);
        Some(Pushdown {
            store,
            sql,
            eligible: nodes.into_iter().collect(),
            max_depth: limits.max_depth,
            max_rows: limits.max_fanout,
        })
    }

    /// Whether a check of `kind#relation` is pushed down.
    pub(crate) fn applies(&self, kind: &str, relation: &str) -> bool {
        self.eligible
            .contains(&(kind.to_owned(), relation.to_owned()))
    }

    /// Every tuple a check of `object#relation` for `user` may read, in one
    /// query; `None` when there are more than `max_fanout` (the engine then
    /// reads level by level).
    pub(crate) async fn fetch(
        &self,
        object: &ObjectRef,
        relation: &str,
        user: &TupleUser,
    ) -> Result<Option<Snapshot>, AuthError> {
        let (user_type, user_id, user_relation) = user.parts();
        let rows: Vec<(String, String, String, String, String, String)> = self
            .store
            .database()
            .query_as(
                &self.sql,
                &[
                    Value::from(object.kind.as_str()),
                    Value::from(object.id.as_str()),
                    Value::from(relation),
                    Value::from(user_relation),
                    Value::from(user_type),
                    Value::from(user_id),
                    Value::Int(i64::from(self.max_depth.saturating_sub(1))),
                    Value::Int(i64::try_from(self.max_rows).unwrap_or(i64::MAX - 1) + 1),
                ],
            )
            .await
            .map_err(|e| AuthError::unavailable("tuple store", e))?;
        if rows.len() > self.max_rows {
            return Ok(None);
        }
        let mut tuples = Tuples::new();
        for (ot, oid, rel, ut, uid, ur) in rows {
            tuples
                .entry((ot, oid, rel))
                .or_default()
                .push((ur, ut, uid));
        }
        for users in tuples.values_mut() {
            // The order `DbTuples` reads in: relation, type, id.
            users.sort_unstable();
            users.dedup();
        }
        Ok(Some(Snapshot { tuples }))
    }
}

/// The tuples one check may read, as `(object type, id, relation) →
/// (user relation, user type, user id)`, sorted.
#[derive(Debug)]
pub(crate) struct Snapshot {
    tuples: Tuples,
}

impl Snapshot {
    fn of(&self, object: &ObjectRef, relation: &str) -> &[(String, String, String)] {
        self.tuples
            .get(&(object.kind.clone(), object.id.clone(), relation.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    fn users_of(&self, object: &ObjectRef, relation: &str, limit: usize) -> Vec<TupleUser> {
        self.of(object, relation)
            .iter()
            .take(limit)
            .map(|(r, t, id)| TupleUser::from_parts(t, id, r))
            .collect()
    }
}

impl CheckReads for Snapshot {
    async fn direct(&self, lookup: DirectLookup<'_>) -> Result<DirectMatch, AuthError> {
        let (user_type, user_id, user_relation) = lookup.user.parts();
        let rows = self.of(lookup.object, lookup.relation);
        let mut found = DirectMatch::default();
        for (r, t, id) in rows {
            if r == user_relation && t == user_type && (id == user_id || id == "*") {
                // The exact tuple wins over the wildcard.
                if found.matched.is_none() || id == user_id {
                    found.matched = Some(TupleUser::from_parts(t, id, r));
                }
            }
        }
        found.usersets = rows
            .iter()
            .filter(|(r, _, _)| !r.is_empty())
            .take(lookup.max_usersets)
            .map(|(r, t, id)| TupleUser::from_parts(t, id, r))
            .collect();
        for ts in lookup.tuplesets {
            let users = self.users_of(lookup.object, ts, lookup.max_tupleset_users);
            found.tuplesets.insert(ts.clone(), users);
        }
        Ok(found)
    }

    async fn users(
        &self,
        object: &ObjectRef,
        relation: &str,
        limit: usize,
    ) -> Result<Vec<TupleUser>, AuthError> {
        Ok(self.users_of(object, relation, limit))
    }
}
