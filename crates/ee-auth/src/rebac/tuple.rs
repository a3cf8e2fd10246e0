//! Relationship tuples, `object_type:object_id#relation@user`, in string and
//! struct form.

use std::fmt;
use std::str::FromStr;

use crate::AuthError;

/// Longest type name (as OpenFGA).
const MAX_TYPE: usize = 254;
/// Longest object id (as OpenFGA).
const MAX_ID: usize = 256;
/// Longest relation name (as OpenFGA).
const MAX_RELATION: usize = 50;

/// An object: a type and an id (`document:1`).
///
/// The type may not contain `:`, `#`, `@` or white space; the id may not
/// contain `#`, `@` or white space (it may contain `:`: `doc:a:b` is type
/// `doc`, id `a:b`), and is never `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The type (`document`).
    pub kind: String,
    /// The id (`1`).
    pub id: String,
}

impl ObjectRef {
    /// `kind:id`, validated.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Result<Self, AuthError> {
        let object = ObjectRef {
            kind: kind.into(),
            id: id.into(),
        };
        object.validate()?;
        Ok(object)
    }

    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        check_type(&self.kind)?;
        check_id(&self.id)?;
        if self.id == "*" {
            return Err(AuthError::Config(format!(
                "`{self}`: an object id cannot be the wildcard `*`"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

impl FromStr for ObjectRef {
    type Err = AuthError;

    /// Parses `type:id`.
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| AuthError::Config(format!("`{s}` is not an object (`type:id`)")))?;
        ObjectRef::new(kind, id)
    }
}

/// The user side of a tuple (and who a check asks about): an object
/// (`user:anne`), every object of a type (`user:*`), or a userset: the
/// objects related to an object by a relation (`team:eng#member`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TupleUser {
    /// One object (`user:anne`, `folder:x` as a parent).
    Object(ObjectRef),
    /// Every object of the type (`user:*`).
    Wildcard {
        /// The type (`user`).
        kind: String,
    },
    /// Everyone related to `object` by `relation` (`team:eng#member`).
    Userset {
        /// The object (`team:eng`).
        object: ObjectRef,
        /// The relation (`member`).
        relation: String,
    },
}

impl TupleUser {
    /// The object `kind:id`.
    pub fn object(kind: impl Into<String>, id: impl Into<String>) -> Result<Self, AuthError> {
        Ok(TupleUser::Object(ObjectRef::new(kind, id)?))
    }

    /// The type this user is of (`user` for `user:anne` and `user:*`, `team`
    /// for `team:eng#member`).
    pub fn kind(&self) -> &str {
        match self {
            TupleUser::Object(o) | TupleUser::Userset { object: o, .. } => &o.kind,
            TupleUser::Wildcard { kind } => kind,
        }
    }

    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    /// The three columns a store keeps: type, id (`*` for a wildcard) and
    /// relation (empty unless a userset).
    pub(crate) fn parts(&self) -> (&str, &str, &str) {
        match self {
            TupleUser::Object(o) => (&o.kind, &o.id, ""),
            TupleUser::Wildcard { kind } => (kind, "*", ""),
            TupleUser::Userset { object, relation } => (&object.kind, &object.id, relation),
        }
    }

    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    /// Rebuilds a user from its stored columns (trusted: they were validated
    /// when written).
    pub(crate) fn from_parts(kind: &str, id: &str, relation: &str) -> Self {
        let object = || ObjectRef {
            kind: kind.to_owned(),
            id: id.to_owned(),
        };
        if !relation.is_empty() {
            TupleUser::Userset {
                object: object(),
                relation: relation.to_owned(),
            }
        } else if id == "*" {
            TupleUser::Wildcard {
                kind: kind.to_owned(),
            }
        } else {
            TupleUser::Object(object())
        }
    }

    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        match self {
            TupleUser::Object(o) => o.validate(),
            TupleUser::Wildcard { kind } => check_type(kind),
            TupleUser::Userset { object, relation } => {
                object.validate()?;
                check_relation(relation)
            }
        }
    }
}

impl From<ObjectRef> for TupleUser {
    fn from(object: ObjectRef) -> Self {
        TupleUser::Object(object)
    }
}

impl fmt::Display for TupleUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TupleUser::Object(o) => o.fmt(f),
            TupleUser::Wildcard { kind } => write!(f, "{kind}:*"),
            TupleUser::Userset { object, relation } => write!(f, "{object}#{relation}"),
        }
    }
}

impl FromStr for TupleUser {
    type Err = AuthError;

    /// Parses `type:id`, `type:*` or `type:id#relation`.
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let user = match s.split_once('#') {
            Some((object, relation)) => TupleUser::Userset {
                object: object.parse()?,
                relation: relation.to_owned(),
            },
            None => match s.split_once(':') {
                Some((kind, "*")) => TupleUser::Wildcard {
                    kind: kind.to_owned(),
                },
                _ => TupleUser::Object(s.parse()?),
            },
        };
        user.validate()?;
        Ok(user)
    }
}

/// A relationship: `object#relation@user` (`document:1#viewer@user:anne`,
/// `folder:x#viewer@team:eng#member`, `document:1#viewer@user:*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationTuple {
    /// The object (`document:1`).
    pub object: ObjectRef,
    /// The relation (`viewer`).
    pub relation: String,
    /// The user (`user:anne`, `user:*`, `team:eng#member`).
    pub user: TupleUser,
}

impl RelationTuple {
    /// `object#relation@user`, validated (syntax only: [`Rebac`](crate::Rebac)
    /// checks it against the model when it is written).
    pub fn new(
        object: ObjectRef,
        relation: impl Into<String>,
        user: TupleUser,
    ) -> Result<Self, AuthError> {
        let tuple = RelationTuple {
            object,
            relation: relation.into(),
            user,
        };
        tuple.validate()?;
        Ok(tuple)
    }

    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        self.object.validate()?;
        check_relation(&self.relation)?;
        self.user.validate()
    }
}

impl fmt::Display for RelationTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@{}", self.object, self.relation, self.user)
    }
}

impl FromStr for RelationTuple {
    type Err = AuthError;

    /// Parses `type:id#relation@user`.
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let bad = || AuthError::Config(format!("`{s}` is not a tuple (`type:id#relation@user`)"));
        let (left, user) = s.split_once('@').ok_or_else(bad)?;
        let (object, relation) = left.split_once('#').ok_or_else(bad)?;
        RelationTuple::new(object.parse()?, relation, user.parse()?)
    }
}

fn check_name(what: &str, value: &str, max: usize, forbidden: &[char]) -> Result<(), AuthError> {
    if value.is_empty() || value.len() > max {
        return Err(AuthError::Config(format!(
            "a {what} must have 1 to {max} bytes, not {}",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || forbidden.contains(c))
    {
        return Err(AuthError::Config(format!(
            "the {what} `{}` contains `{}`, which is not allowed",
            value.escape_debug(),
            c.escape_debug()
        )));
    }
    Ok(())
}

pub(crate) fn check_type(kind: &str) -> Result<(), AuthError> {
    check_name("type", kind, MAX_TYPE, &[':', '#', '@', '*'])
}

pub(crate) fn check_id(id: &str) -> Result<(), AuthError> {
    check_name("object id", id, MAX_ID, &['#', '@'])
}

pub(crate) fn check_relation(relation: &str) -> Result<(), AuthError> {
    check_name("relation", relation, MAX_RELATION, &[':', '#', '@', '*'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "document:1#viewer@user:anne",
            "folder:x#viewer@team:eng#member",
            "document:1#viewer@user:*",
            "doc:a:b#parent@folder:x",
        ] {
            let t: RelationTuple = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        let t: RelationTuple = "folder:x#viewer@team:eng#member".parse().unwrap();
        assert_eq!(
            t.user,
            TupleUser::Userset {
                object: ObjectRef::new("team", "eng").unwrap(),
                relation: "member".into()
            }
        );
    }

    #[test]
    fn refuses_malformed() {
        for s in [
            "document:1viewer@user:anne",
            "document#viewer@user:anne",
            "document:1#viewer",
            "document:*#viewer@user:anne",
            "document:1#viewer@user",
            "document:1#viewer@user:an ne",
            ":1#viewer@user:anne",
            "document:1#@user:anne",
            "document:1#viewer@team:*#member",
        ] {
            assert!(s.parse::<RelationTuple>().is_err(), "{s} parsed");
        }
    }
}
