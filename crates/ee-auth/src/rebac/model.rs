//! The authorization model: types, their relations and each relation's
//! rewrite, checked once when it is built.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::AuthError;

use super::tuple::{RelationTuple, TupleUser};

/// What a direct type restriction (`[user, user:*, team#member]`) admits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Restriction {
    /// `user`: objects of the type.
    Type(String),
    /// `user:*`: the wildcard of the type.
    Wildcard(String),
    /// `team#member`: usersets of the type and relation.
    Userset(String, String),
}

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restriction::Type(t) => f.write_str(t),
            Restriction::Wildcard(t) => write!(f, "{t}:*"),
            Restriction::Userset(t, r) => write!(f, "{t}#{r}"),
        }
    }
}

/// How a relation is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// `[...]`: tuples written for this relation (restrictions on the relation).
    Direct,
    /// `editor`: another relation of the same object.
    Computed(String),
    /// `viewer from parent`: `computed` on each object in `tupleset`.
    TupleToUserset {
        /// The relation naming the related objects (`parent`).
        tupleset: String,
        /// The relation evaluated on them (`viewer`).
        computed: String,
    },
    /// `a or b`.
    Union(Vec<Rewrite>),
    /// `a and b`.
    Intersection(Vec<Rewrite>),
    /// `a but not b`.
    Exclusion(Box<Rewrite>, Box<Rewrite>),
}

/// One relation of a type.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    pub(crate) rewrite: Rewrite,
    /// The direct type restrictions (empty when the rewrite has no `[...]`).
    pub(crate) direct: Vec<Restriction>,
    /// Whether some restriction is a userset (else a direct lookup need not
    /// read userset tuples).
    pub(crate) has_usersets: bool,
    /// The tuplesets of the rewrite's `x from tupleset` parts, when it also
    /// has `[...]`: a check reads them with the direct lookup, in one query.
    pub(crate) tuplesets: Vec<String>,
    /// Line of its `define`, for errors.
    pub(crate) line: usize,
}

/// One type and its relations.
#[derive(Debug, Clone, Default)]
pub(crate) struct TypeDef {
    pub(crate) relations: HashMap<String, Relation>,
}

/// Where a found membership leads, for list_objects' reverse walk: from
/// `(source type, source relation)` to `(target type, target relation)`.
#[derive(Debug, Clone)]
pub(crate) enum Edge {
    /// `define target: source` on the same object.
    Computed,
    /// `define target: [source_type#source_relation]`: tuples
    /// `target_type:?#target@source_object#source_relation`.
    Userset,
    /// `define target: source_relation from tupleset`: tuples
    /// `target_type:?#tupleset@source_object`.
    TupleToUserset(String),
}

/// A `(type, relation)` pair.
pub(crate) type NodeKey = (String, String);

/// An OpenFGA authorization model (schema 1.1, without conditions), parsed
/// from the modeling language with [`RebacModel::parse`] and validated.
///
/// ```
/// let model = ee_auth::RebacModel::parse(r"
/// model
///   schema 1.1
/// type user
/// type document
///   relations
///     define owner: [user]
///     define viewer: [user, user:*] or owner
/// ")?;
/// assert!(model.has_relation("document", "viewer"));
/// # Ok::<(), ee_auth::AuthError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RebacModel {
    pub(crate) types: HashMap<String, TypeDef>,
    /// `(source type, source relation)` → edges to what a membership there
    /// grants (for list_objects).
    pub(crate) edges: HashMap<NodeKey, Vec<(NodeKey, Edge)>>,
}

impl Rewrite {
    fn has_direct(&self) -> bool {
        match self {
            Rewrite::Direct => true,
            Rewrite::Computed(_) | Rewrite::TupleToUserset { .. } => false,
            Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
                parts.iter().any(Rewrite::has_direct)
            }
            Rewrite::Exclusion(b, s) => b.has_direct() || s.has_direct(),
        }
    }

    fn tuplesets(&self, out: &mut Vec<String>) {
        match self {
            Rewrite::Direct | Rewrite::Computed(_) => {}
            Rewrite::TupleToUserset { tupleset, .. } => {
                if !out.contains(tupleset) {
                    out.push(tupleset.clone());
                }
            }
            Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
                parts.iter().for_each(|p| p.tuplesets(out));
            }
            Rewrite::Exclusion(b, s) => {
                b.tuplesets(out);
                s.tuplesets(out);
            }
        }
    }

    /// The tuplesets to read with the direct lookup.
    pub(crate) fn prefetched_tuplesets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.has_direct() {
            self.tuplesets(&mut out);
        }
        out
    }
}

impl RebacModel {
    /// Parses and validates a model in the OpenFGA modeling language.
    /// Errors are [`AuthError::Config`] naming the line.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        super::dsl::parse(text)
    }

    /// Whether `kind` is a type of the model.
    pub fn has_type(&self, kind: &str) -> bool {
        self.types.contains_key(kind)
    }

    /// Whether type `kind` has `relation`.
    pub fn has_relation(&self, kind: &str, relation: &str) -> bool {
        self.relation(kind, relation).is_some()
    }

    /// The types, sorted.
    pub fn types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.types.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }

    pub(crate) fn relation(&self, kind: &str, relation: &str) -> Option<&Relation> {
        self.types.get(kind)?.relations.get(relation)
    }

    /// The relation, or the error a caller asking for it gets.
    pub(crate) fn require(&self, kind: &str, relation: &str) -> Result<&Relation, AuthError> {
        let def = self
            .types
            .get(kind)
            .ok_or_else(|| AuthError::Config(format!("the model has no type `{kind}`")))?;
        def.relations
            .get(relation)
            .ok_or_else(|| AuthError::Config(format!("type `{kind}` has no relation `{relation}`")))
    }

    /// Checks that the model admits `tuple`: the type and relation exist, the
    /// relation is directly assignable and its type restrictions allow the user.
    pub fn validate_tuple(&self, tuple: &RelationTuple) -> Result<(), AuthError> {
        tuple.validate()?;
        let rel = self.require(&tuple.object.kind, &tuple.relation)?;
        let wanted = match &tuple.user {
            TupleUser::Object(o) => Restriction::Type(o.kind.clone()),
            TupleUser::Wildcard { kind } => Restriction::Wildcard(kind.clone()),
            TupleUser::Userset { object, relation } => {
                Restriction::Userset(object.kind.clone(), relation.clone())
            }
        };
        if rel.direct.contains(&wanted) {
            return Ok(());
        }
        let allowed = if rel.direct.is_empty() {
            "none: it is not directly assignable".to_owned()
        } else {
            rel.direct
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(AuthError::Config(format!(
            "tuple `{tuple}`: `{}#{}` does not admit `{wanted}` (allowed: {allowed})",
            tuple.object.kind, tuple.relation
        )))
    }

    /// Builds a model from parsed types: validates references and computes
    /// the reverse edges.
    pub(crate) fn build(types: HashMap<String, TypeDef>) -> Result<Self, AuthError> {
        let mut model = RebacModel {
            types,
            edges: HashMap::new(),
        };
        model.check_references()?;
        model.check_entrypoints()?;
        model.build_edges();
        Ok(model)
    }

    fn sorted_relations(&self) -> Vec<(&str, &str, &Relation)> {
        let mut all: Vec<_> = self
            .types
            .iter()
            .flat_map(|(t, def)| def.relations.iter().map(move |(r, rel)| (&**t, &**r, rel)))
            .collect();
        all.sort_by_key(|(_, _, rel)| rel.line);
        all
    }

    fn check_references(&self) -> Result<(), AuthError> {
        for (kind, name, rel) in self.sorted_relations() {
            let err = |msg: String| {
                AuthError::Config(format!(
                    "model line {}: relation `{kind}#{name}`: {msg}",
                    rel.line
                ))
            };
            for r in &rel.direct {
                match r {
                    Restriction::Type(t) | Restriction::Wildcard(t) if !self.has_type(t) => {
                        return Err(err(format!("unknown type `{t}` in `[{r}]`")));
                    }
                    Restriction::Userset(t, r2) if self.relation(t, r2).is_none() => {
                        return Err(err(format!("unknown relation `{t}#{r2}` in `[{r}]`")));
                    }
                    _ => {}
                }
            }
            self.check_rewrite(kind, &rel.rewrite).map_err(err)?;
        }
        Ok(())
    }

    fn check_rewrite(&self, kind: &str, rewrite: &Rewrite) -> Result<(), String> {
        match rewrite {
            Rewrite::Direct => Ok(()),
            Rewrite::Computed(r) => match self.relation(kind, r) {
                Some(_) => Ok(()),
                None => Err(format!("type `{kind}` has no relation `{r}`")),
            },
            Rewrite::TupleToUserset { tupleset, computed } => {
                let ts = self.relation(kind, tupleset).ok_or_else(|| {
                    format!(
                        "`{computed} from {tupleset}`: type `{kind}` has no relation `{tupleset}`"
                    )
                })?;
                if ts.rewrite != Rewrite::Direct {
                    return Err(format!(
                        "`{computed} from {tupleset}`: `{tupleset}` must be directly assignable only (`[type, ...]`), without rewrites"
                    ));
                }
                let mut any = false;
                for r in &ts.direct {
                    match r {
                        Restriction::Type(t) => any |= self.has_relation(t, computed),
                        _ => {
                            return Err(format!(
                                "`{computed} from {tupleset}`: `{tupleset}` may only admit plain types, not `{r}`"
                            ));
                        }
                    }
                }
                if any {
                    Ok(())
                } else {
                    Err(format!(
                        "`{computed} from {tupleset}`: none of the types `{tupleset}` admits has a relation `{computed}`"
                    ))
                }
            }
            Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
                parts.iter().try_for_each(|p| self.check_rewrite(kind, p))
            }
            Rewrite::Exclusion(base, sub) => {
                self.check_rewrite(kind, base)?;
                self.check_rewrite(kind, sub)
            }
        }
    }

    /// Every relation must be satisfiable by some tuples: a relation defined
    /// only through others in a loop (`define a: b`, `define b: a`) never is.
    fn check_entrypoints(&self) -> Result<(), AuthError> {
        let mut ok: HashSet<(&str, &str)> = HashSet::new();
        loop {
            let before = ok.len();
            for (kind, def) in &self.types {
                for (name, rel) in &def.relations {
                    if !ok.contains(&(&**kind, &**name))
                        && self.satisfiable(kind, &rel.rewrite, &rel.direct, &ok)
                    {
                        ok.insert((kind, name));
                    }
                }
            }
            if ok.len() == before {
                break;
            }
        }
        match self
            .sorted_relations()
            .into_iter()
            .find(|(k, r, _)| !ok.contains(&(*k, *r)))
        {
            Some((kind, name, rel)) => Err(AuthError::Config(format!(
                "model line {}: relation `{kind}#{name}` can never be satisfied: it is defined through itself without a direct type restriction to enter by",
                rel.line
            ))),
            None => Ok(()),
        }
    }

    fn satisfiable(
        &self,
        kind: &str,
        rewrite: &Rewrite,
        direct: &[Restriction],
        ok: &HashSet<(&str, &str)>,
    ) -> bool {
        match rewrite {
            Rewrite::Direct => direct.iter().any(|r| match r {
                Restriction::Type(_) | Restriction::Wildcard(_) => true,
                Restriction::Userset(t, r) => ok.contains(&(t.as_str(), r.as_str())),
            }),
            Rewrite::Computed(r) => ok.contains(&(kind, r.as_str())),
            Rewrite::TupleToUserset { tupleset, computed } => self
                .relation(kind, tupleset)
                .into_iter()
                .flat_map(|ts| &ts.direct)
                .any(|r| matches!(r, Restriction::Type(t) if ok.contains(&(t.as_str(), computed.as_str())))),
            Rewrite::Union(parts) => parts.iter().any(|p| self.satisfiable(kind, p, direct, ok)),
            Rewrite::Intersection(parts) => {
                parts.iter().all(|p| self.satisfiable(kind, p, direct, ok))
            }
            Rewrite::Exclusion(base, _) => self.satisfiable(kind, base, direct, ok),
        }
    }

    fn build_edges(&mut self) {
        let mut edges: HashMap<NodeKey, Vec<(NodeKey, Edge)>> = HashMap::new();
        for (kind, def) in &self.types {
            for (name, rel) in &def.relations {
                let target = (kind.clone(), name.clone());
                for r in &rel.direct {
                    if let Restriction::Userset(t, r2) = r {
                        edges
                            .entry((t.clone(), r2.clone()))
                            .or_default()
                            .push((target.clone(), Edge::Userset));
                    }
                }
                self.rewrite_edges(kind, &rel.rewrite, &target, &mut edges);
            }
        }
        self.edges = edges;
    }

    fn rewrite_edges(
        &self,
        kind: &str,
        rewrite: &Rewrite,
        target: &NodeKey,
        edges: &mut HashMap<NodeKey, Vec<(NodeKey, Edge)>>,
    ) {
        match rewrite {
            Rewrite::Direct => {}
            Rewrite::Computed(r) => edges
                .entry((kind.to_owned(), r.clone()))
                .or_default()
                .push((target.clone(), Edge::Computed)),
            Rewrite::TupleToUserset { tupleset, computed } => {
                for r in self
                    .relation(kind, tupleset)
                    .into_iter()
                    .flat_map(|ts| &ts.direct)
                {
                    if let Restriction::Type(t) = r
                        && self.has_relation(t, computed)
                    {
                        edges
                            .entry((t.clone(), computed.clone()))
                            .or_default()
                            .push((target.clone(), Edge::TupleToUserset(tupleset.clone())));
                    }
                }
            }
            Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
                for p in parts {
                    self.rewrite_edges(kind, p, target, edges);
                }
            }
            // Only the base can grant; the subtracted part only takes away.
            Rewrite::Exclusion(base, _) => self.rewrite_edges(kind, base, target, edges),
        }
    }

    /// The `(type, relation)` pairs from which a membership can lead to
    /// `target` (including `target`).
    pub(crate) fn leading_to(&self, target: &NodeKey) -> HashSet<NodeKey> {
        let mut reverse: HashMap<&NodeKey, Vec<&NodeKey>> = HashMap::new();
        for (source, outs) in &self.edges {
            for (to, _) in outs {
                reverse.entry(to).or_default().push(source);
            }
        }
        let mut seen = HashSet::from([target.clone()]);
        let mut stack = vec![target];
        while let Some(node) = stack.pop() {
            for source in reverse.get(node).into_iter().flatten() {
                if seen.insert((*source).clone()) {
                    stack.push(source);
                }
            }
        }
        seen
    }
}
