//! Model parsing: OpenFGA's documented models parse; errors name the line.

use ee_auth::{AuthError, RebacModel};

fn error(model: &str) -> String {
    match RebacModel::parse(model) {
        Err(AuthError::Config(msg)) => msg,
        other => panic!("expected a Config error, got {other:?}"),
    }
}

/// The example of OpenFGA's "Configuration Language" page, and ours.
#[test]
fn documented_models_parse() {
    let model = RebacModel::parse(
        "model
  schema 1.1

type user

type domain
  relations
    define member: [user]

type folder
  relations
    define can_share: writer
    define owner: [user, domain#member] or owner from parent_folder
    define parent_folder: [folder]
    define viewer: [user, domain#member] or writer or viewer from parent_folder
    define writer: [user, domain#member] or owner or writer from parent_folder

type document
  relations
    define can_share: writer
    define owner: [user, domain#member] or owner from parent_folder
    define parent_folder: [folder]
    define viewer: [user, domain#member] or writer or viewer from parent_folder
    define writer: [user, domain#member] or owner or writer from parent_folder
",
    )
    .unwrap();
    assert_eq!(model.types(), ["document", "domain", "folder", "user"]);
    assert!(model.has_relation("folder", "can_share"));
    RebacModel::parse(crate::env::MODEL).unwrap();
    // Mixed operators with parentheses, nested.
    RebacModel::parse(
        "model\n schema 1.1\ntype user\ntype doc\n relations\n  define a: [user]\n  define b: [user]\n  define c: [user]\n  define d: [user] or ((a and b) but not c)\n  define e: a and (b or (c but not a))\n",
    )
    .unwrap();
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, &str)] = &[
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [usr]\n",
            "line 6: relation `doc#viewer`: unknown type `usr`",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [user] or editor\n",
            "line 6: relation `doc#viewer`: type `doc` has no relation `editor`",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [team#member]\n",
            "line 6: relation `doc#viewer`: unknown relation `team#member`",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define parent: [doc] or owner\n    define owner: [user]\n    define viewer: [user] or viewer from parent\n",
            "line 8: relation `doc#viewer`: `viewer from parent`: `parent` must be directly assignable only",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype team\n  relations\n    define member: [user]\ntype doc\n  relations\n    define parent: [team#member]\n    define viewer: [user] or member from parent\n",
            "may only admit plain types, not `team#member`",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define parent: [user]\n    define viewer: [user] or viewer from parent\n",
            "none of the types `parent` admits has a relation `viewer`",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user]\n    define b: [user]\n    define c: a or b and a\n",
            "model line 8: operators `or`, `and` and `but not` cannot be mixed",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user]\n    define c: a but not a but not a\n",
            "model line 7: operators",
        ),
        (
            "model\n  schema 1.0\ntype user\n",
            "model line 2: schema `1.0` is not supported",
        ),
        ("type user\n", "model line 1: a model starts with `model`"),
        (
            "model\ntype user\n",
            "model line 2: `schema 1.1` must follow `model`",
        ),
        ("", "the model is empty"),
        (
            "model\n  schema 1.1\ntype user\ntype user\n",
            "model line 4: type `user` is defined twice",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user]\n    define a: [user]\n",
            "model line 7: relation `doc#a` is defined twice",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user with cond]\n",
            "model line 6: conditions (`with`) are not supported",
        ),
        (
            "model\n  schema 1.1\ntype user\ncondition x(a: int) {\n",
            "model line 4: conditions are not supported",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: b\n    define b: a\n",
            "line 6: relation `doc#a` can never be satisfied",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: []\n",
            "model line 6: `[]` admits nothing",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user] or [user:*]\n",
            "at most one direct type restriction",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: ([user]\n",
            "model line 6: expected `)` at the end of the line",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user,\n",
            "model line 6: `[` is not closed",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user] but a\n",
            "model line 6: `but` must be followed by `not`",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n    define a: [user]\n",
            "model line 5: `define` outside a type's `relations`",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define self: [user]\n",
            "`self` is reserved",
        ),
        (
            "model\n  schema 1.1\ntype us:er\n",
            "model line 3: `us:er` is not a valid type name",
        ),
        (
            "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user] or\n",
            "model line 6: expected a relation",
        ),
    ];
    for (model, want) in cases {
        let got = error(model);
        assert!(
            got.contains(want),
            "model:\n{model}\nwant: {want}\ngot:  {got}"
        );
    }
}

/// Deep parentheses are refused, not a stack overflow.
#[test]
fn nesting_is_bounded() {
    let deep = format!(
        "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: {}[user]{}\n",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(error(&deep).contains("nested deeper than 32"));
}

/// The parser never panics, whatever it is given.
mod properties {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_is_an_answer(body in "[a-z:#@*()\\[\\], \n]{0,200}") {
            let _ = ee_auth::RebacModel::parse(&format!("model\n schema 1.1\ntype user\ntype doc\n relations\n  define a: {body}"));
        }

        #[test]
        fn any_tuple_string_is_an_answer(s in "\\PC{0,80}") {
            if let Ok(t) = s.parse::<ee_auth::RelationTuple>() {
                // What parses prints back the same.
                prop_assert_eq!(t.to_string().parse::<ee_auth::RelationTuple>().unwrap(), t);
            }
        }

        #[test]
        fn valid_tuples_round_trip(
            kind in "[a-z][a-z_]{0,10}", id in "[a-zA-Z0-9_:|.-]{1,20}", rel in "[a-z][a-z_]{0,10}",
            user_kind in "[a-z]{1,8}", user_id in "[a-zA-Z0-9|-]{1,12}", user_rel in proptest::option::of("[a-z]{1,8}"),
        ) {
            let user = match user_rel { Some(r) => format!("{user_kind}:{user_id}#{r}"), None => format!("{user_kind}:{user_id}") };
            let s = format!("{kind}:{id}#{rel}@{user}");
            let t: ee_auth::RelationTuple = s.parse().unwrap();
            prop_assert_eq!(t.to_string(), s);
        }
    }
}
