//! `expand(object, relation)`: the relation's userset tree, one level deep,
//! as OpenFGA's Expand answers it.

use std::fmt;

use crate::AuthError;
use crate::rebac::model::Rewrite;
use crate::rebac::store::TupleStore;
use crate::rebac::tuple::{ObjectRef, TupleUser};

use super::{Ctx, admitted};

/// One node of an [`expand`](crate::Rebac::expand) answer: what `name`
/// (`document:1#viewer`) is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersetTree {
    /// The userset this node describes (`document:1#viewer`).
    pub name: String,
    /// How it is made.
    pub node: ExpandNode,
}

/// The kinds of [`UsersetTree`] node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpandNode {
    /// The users of the relation's tuples (objects, wildcards and usersets;
    /// expand a userset again to see its members), sorted.
    Users(Vec<TupleUser>),
    /// Another relation of the same object (`document:1#editor`).
    Computed(String),
    /// `viewer from parent`: the tupleset (`document:1#parent`) and the
    /// usersets it leads to (`folder:x#viewer`).
    TupleToUserset {
        /// The tupleset (`document:1#parent`).
        tupleset: String,
        /// The usersets found through it (`folder:x#viewer`), sorted.
        computed: Vec<String>,
    },
    /// Members of any child.
    Union(Vec<UsersetTree>),
    /// Members of every child.
    Intersection(Vec<UsersetTree>),
    /// Members of `base` who are not members of `subtract`.
    Difference {
        /// The base.
        base: Box<UsersetTree>,
        /// What is taken away.
        subtract: Box<UsersetTree>,
    },
}

impl fmt::Display for UsersetTree {
    /// A compact form: `document:1#viewer = (user:anne | document:1#editor)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn inner(t: &UsersetTree, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let list = |f: &mut fmt::Formatter<'_>, parts: &[UsersetTree], op: &str| {
                f.write_str("(")?;
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    inner(p, f)?;
                }
                f.write_str(")")
            };
            match &t.node {
                ExpandNode::Users(users) => {
                    let users: Vec<String> = users.iter().map(ToString::to_string).collect();
                    write!(f, "[{}]", users.join(", "))
                }
                ExpandNode::Computed(name) => f.write_str(name),
                ExpandNode::TupleToUserset { tupleset, computed } => {
                    write!(f, "{tupleset} -> [{}]", computed.join(", "))
                }
                ExpandNode::Union(parts) => list(f, parts, " | "),
                ExpandNode::Intersection(parts) => list(f, parts, " & "),
                ExpandNode::Difference { base, subtract } => {
                    f.write_str("(")?;
                    inner(base, f)?;
                    f.write_str(" - ")?;
                    inner(subtract, f)?;
                    f.write_str(")")
                }
            }
        }
        write!(f, "{} = ", self.name)?;
        inner(self, f)
    }
}

pub(crate) async fn expand<S: TupleStore>(
    ctx: &mut Ctx<'_, S>,
    object: &ObjectRef,
    relation: &str,
) -> Result<UsersetTree, AuthError> {
    let rel = ctx.model.require(&object.kind, relation)?;
    node(ctx, object, relation, &rel.rewrite).await
}

fn node<'b, S: TupleStore>(
    ctx: &'b mut Ctx<'_, S>,
    object: &'b ObjectRef,
    relation: &'b str,
    rewrite: &'b Rewrite,
) -> std::pin::Pin<Box<dyn Future<Output = Result<UsersetTree, AuthError>> + Send + 'b>> {
    Box::pin(async move {
        let name = format!("{object}#{relation}");
        let fanout = ctx.limits.max_fanout;
        let node = match rewrite {
            Rewrite::Direct => {
                ctx.lookup()?;
                let users = ctx.store.read_users(object, relation, fanout + 1).await?;
                ctx.fanout(users.len(), &name)?;
                let rel = ctx.model.require(&object.kind, relation)?;
                let mut users: Vec<TupleUser> = users
                    .into_iter()
                    .filter(|u| admitted(&rel.direct, u))
                    .collect();
                users.sort();
                ExpandNode::Users(users)
            }
            Rewrite::Computed(r) => ExpandNode::Computed(format!("{object}#{r}")),
            Rewrite::TupleToUserset { tupleset, computed } => {
                ctx.lookup()?;
                let users = ctx.store.read_users(object, tupleset, fanout + 1).await?;
                ctx.fanout(users.len(), &format_args!("{object}#{tupleset}"))?;
                let model = ctx.model;
                let mut found: Vec<String> = users
                    .iter()
                    .filter_map(|u| match u {
                        TupleUser::Object(o) if model.has_relation(&o.kind, computed) => {
                            Some(format!("{o}#{computed}"))
                        }
                        _ => None,
                    })
                    .collect();
                found.sort();
                ExpandNode::TupleToUserset {
                    tupleset: format!("{object}#{tupleset}"),
                    computed: found,
                }
            }
            Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
                let mut children = Vec::with_capacity(parts.len());
                for p in parts {
                    children.push(node(ctx, object, relation, p).await?);
                }
                if matches!(rewrite, Rewrite::Union(_)) {
                    ExpandNode::Union(children)
                } else {
                    ExpandNode::Intersection(children)
                }
            }
            Rewrite::Exclusion(base, subtract) => ExpandNode::Difference {
                base: Box::new(node(ctx, object, relation, base).await?),
                subtract: Box::new(node(ctx, object, relation, subtract).await?),
            },
        };
        Ok(UsersetTree { name, node })
    })
}
