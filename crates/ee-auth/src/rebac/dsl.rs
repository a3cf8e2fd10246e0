//! The OpenFGA modeling language (schema 1.1, without conditions): a
//! line-based reader and a small recursive-descent parser for each `define`.
//!
//! ```text
//! model
//!   schema 1.1
//! type user
//! type document            # comments start with `#` after white space
//!   relations
//!     define parent: [folder]
//!     define viewer: [user, user:*, team#member] or editor or viewer from parent
//!     define can_view: (viewer and allowed) but not blocked
//! ```
//!
//! Operators do not mix without parentheses (`a or b and c` is refused), as
//! in OpenFGA.

use std::collections::HashMap;

use crate::AuthError;

use super::model::{RebacModel, Relation, Restriction, Rewrite, TypeDef};

/// Deepest parenthesis nesting accepted (the parser is recursive).
const MAX_NESTING: usize = 32;

fn err(line: usize, msg: impl std::fmt::Display) -> AuthError {
    AuthError::Config(format!("model line {line}: {msg}"))
}

/// The line without its comment: `#` at the start or after white space
/// begins one (a `#` inside a word is a userset, `team#member`).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 50
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn identifier<'a>(line: usize, what: &str, s: &'a str) -> Result<&'a str, AuthError> {
    if is_identifier(s) {
        Ok(s)
    } else {
        Err(err(
            line,
            format!(
                "`{s}` is not a valid {what} name (a letter or `_`, then letters, digits, `_` or `-`; at most 50)"
            ),
        ))
    }
}

/// Parses and validates a model.
pub(crate) fn parse(text: &str) -> Result<RebacModel, AuthError> {
    let mut types: HashMap<String, TypeDef> = HashMap::new();
    let mut current: Option<String> = None;
    let mut in_relations = false;
    let mut header = Header::Model;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = strip_comment(raw).trim();
        if content.is_empty() {
            continue;
        }
        let (keyword, rest) = content
            .split_once(char::is_whitespace)
            .map_or((content, ""), |(k, r)| (k, r.trim()));
        match header {
            Header::Model if keyword == "model" && rest.is_empty() => {
                header = Header::Schema;
                continue;
            }
            Header::Model => return Err(err(line, "a model starts with `model`")),
            Header::Schema if keyword == "schema" => {
                if rest != "1.1" {
                    return Err(err(
                        line,
                        format!("schema `{rest}` is not supported (only 1.1)"),
                    ));
                }
                header = Header::Done;
                continue;
            }
            Header::Schema => return Err(err(line, "`schema 1.1` must follow `model`")),
            Header::Done => {}
        }
        match keyword {
            "type" => {
                let name = identifier(line, "type", rest)?;
                if types.contains_key(name) {
                    return Err(err(line, format!("type `{name}` is defined twice")));
                }
                types.insert(
                    name.to_owned(),
                    TypeDef {
                        relations: HashMap::new(),
                    },
                );
                current = Some(name.to_owned());
                in_relations = false;
            }
            "relations" if rest.is_empty() => {
                if current.is_none() {
                    return Err(err(line, "`relations` outside a type"));
                }
                in_relations = true;
            }
            "define" => {
                let kind = match (&current, in_relations) {
                    (Some(kind), true) => kind,
                    _ => return Err(err(line, "`define` outside a type's `relations`")),
                };
                let (name, relation) = define(line, rest)?;
                let def = types.get_mut(kind).expect("the current type exists");
                if def.relations.contains_key(&name) {
                    return Err(err(
                        line,
                        format!("relation `{kind}#{name}` is defined twice"),
                    ));
                }
                def.relations.insert(name, relation);
            }
            "condition" => return Err(err(line, "conditions are not supported")),
            "module" | "extend" => return Err(err(line, "modular models are not supported")),
            "model" | "schema" => return Err(err(line, format!("`{keyword}` appears twice"))),
            other => return Err(err(line, format!("unexpected `{other}`"))),
        }
    }
    if header != Header::Done {
        return Err(AuthError::Config(
            "the model is empty: it needs `model` and `schema 1.1`".into(),
        ));
    }
    RebacModel::build(types)
}

#[derive(Debug, PartialEq, Eq)]
enum Header {
    Model,
    Schema,
    Done,
}

/// `name: expression` after `define`.
fn define(line: usize, rest: &str) -> Result<(String, Relation), AuthError> {
    let (name, expr) = rest
        .split_once(':')
        .ok_or_else(|| err(line, "expected `define <relation>: <expression>`"))?;
    let name = identifier(line, "relation", name.trim())?;
    if matches!(name, "self" | "this") {
        return Err(err(
            line,
            format!("`{name}` is reserved and cannot name a relation"),
        ));
    }
    let mut parser = Parser {
        tokens: tokenize(expr),
        pos: 0,
        line,
        direct: None,
        depth: 0,
    };
    let rewrite = parser.expression()?;
    if let Some(token) = parser.peek() {
        return Err(err(line, format!("unexpected `{token}`")));
    }
    let direct = parser.direct.unwrap_or_default();
    let has_usersets = direct.iter().any(|r| matches!(r, Restriction::Userset(..)));
    let tuplesets = rewrite.prefetched_tuplesets();
    Ok((
        name.to_owned(),
        Relation {
            rewrite,
            direct,
            has_usersets,
            tuplesets,
            line,
        },
    ))
}

fn tokenize(s: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        let punct = matches!(c, '[' | ']' | '(' | ')' | ',');
        if c.is_whitespace() || punct {
            if let Some(s0) = start.take() {
                tokens.push(&s[s0..i]);
            }
            if punct {
                tokens.push(&s[i..i + 1]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s0) = start {
        tokens.push(&s[s0..]);
    }
    tokens
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    pos: usize,
    line: usize,
    direct: Option<Vec<Restriction>>,
    depth: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Or,
    And,
    ButNot,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek();
        self.pos += usize::from(t.is_some());
        t
    }

    fn expect(&mut self, want: &str) -> Result<(), AuthError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            Some(t) => Err(err(self.line, format!("expected `{want}`, found `{t}`"))),
            None => Err(err(
                self.line,
                format!("expected `{want}` at the end of the line"),
            )),
        }
    }

    fn operator(&mut self) -> Result<Option<Op>, AuthError> {
        let op = match self.peek() {
            Some("or") => Op::Or,
            Some("and") => Op::And,
            Some("but") => {
                self.pos += 1;
                if self.peek() != Some("not") {
                    return Err(err(self.line, "`but` must be followed by `not`"));
                }
                Op::ButNot
            }
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(op))
    }

    /// `term (or term)* | term (and term)* | term but not term`.
    fn expression(&mut self) -> Result<Rewrite, AuthError> {
        let first = self.term()?;
        let Some(op) = self.operator()? else {
            return Ok(first);
        };
        let mut parts = vec![first, self.term()?];
        loop {
            let Some(next) = self.operator()? else { break };
            if next != op || op == Op::ButNot {
                return Err(err(
                    self.line,
                    "operators `or`, `and` and `but not` cannot be mixed or chained without parentheses: write `(a or b) and c`",
                ));
            }
            parts.push(self.term()?);
        }
        Ok(match op {
            Op::Or => Rewrite::Union(parts),
            Op::And => Rewrite::Intersection(parts),
            Op::ButNot => {
                let sub = parts.pop().expect("two parts");
                let base = parts.pop().expect("two parts");
                Rewrite::Exclusion(Box::new(base), Box::new(sub))
            }
        })
    }

    fn term(&mut self) -> Result<Rewrite, AuthError> {
        let line = self.line;
        match self.next() {
            None => Err(err(
                line,
                "expected a relation, `[` or `(` at the end of the line",
            )),
            Some("[") => self.restrictions(),
            Some("(") => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(err(
                        line,
                        format!("parentheses nested deeper than {MAX_NESTING}"),
                    ));
                }
                let inner = self.expression()?;
                self.expect(")")?;
                self.depth -= 1;
                Ok(inner)
            }
            Some(word @ ("or" | "and" | "but" | "not" | "from" | "]" | ")" | ",")) => {
                Err(err(line, format!("unexpected `{word}`")))
            }
            Some(word) => {
                let name = identifier(line, "relation", word)?;
                if self.peek() == Some("from") {
                    self.pos += 1;
                    let tupleset = self
                        .next()
                        .ok_or_else(|| err(line, format!("`{name} from` needs a relation")))?;
                    let tupleset = identifier(line, "relation", tupleset)?;
                    Ok(Rewrite::TupleToUserset {
                        tupleset: tupleset.to_owned(),
                        computed: name.to_owned(),
                    })
                } else {
                    Ok(Rewrite::Computed(name.to_owned()))
                }
            }
        }
    }

    /// After `[`: `type`, `type:*` or `type#relation`, comma separated, to `]`.
    fn restrictions(&mut self) -> Result<Rewrite, AuthError> {
        let line = self.line;
        if self.direct.is_some() {
            return Err(err(
                line,
                "a relation has at most one direct type restriction `[...]`",
            ));
        }
        let mut list = Vec::new();
        loop {
            let item = self.next().ok_or_else(|| err(line, "`[` is not closed"))?;
            if item == "]" && list.is_empty() {
                return Err(err(line, "`[]` admits nothing: name at least one type"));
            }
            let restriction = if let Some(kind) = item.strip_suffix(":*") {
                Restriction::Wildcard(identifier(line, "type", kind)?.to_owned())
            } else if let Some((kind, rel)) = item.split_once('#') {
                Restriction::Userset(
                    identifier(line, "type", kind)?.to_owned(),
                    identifier(line, "relation", rel)?.to_owned(),
                )
            } else {
                Restriction::Type(identifier(line, "type", item)?.to_owned())
            };
            if self.peek() == Some("with") {
                return Err(err(line, "conditions (`with`) are not supported"));
            }
            if list.contains(&restriction) {
                return Err(err(line, format!("`{restriction}` is listed twice")));
            }
            list.push(restriction);
            match self.next() {
                Some(",") => {}
                Some("]") => break,
                Some(t) => return Err(err(line, format!("expected `,` or `]`, found `{t}`"))),
                None => return Err(err(line, "`[` is not closed")),
            }
        }
        self.direct = Some(list);
        Ok(Rewrite::Direct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_usersets() {
        assert_eq!(
            strip_comment("define a: [team#member] # note"),
            "define a: [team#member] "
        );
        assert_eq!(strip_comment("# all"), "");
        assert_eq!(
            tokenize("[user, user:*]or(a)"),
            ["[", "user", ",", "user:*", "]", "or", "(", "a", ")"]
        );
    }
}
