//! list_objects, list_users and expand, as OpenFGA documents them; run on
//! every store through `semantics`.

use ee_auth::{AuthError, ExpandNode, UsersetTree};

use crate::env::{Backend, obj, tuples, user};

/// list_objects: every object the user has the relation on, and only those.
pub async fn list_objects(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "document:1#viewer@user:anne",
        "document:2#owner@user:anne",
        "document:3#parent@folder:x",
        "folder:x#parent@folder:root",
        "folder:root#viewer@team:eng#member",
        "team:eng#member@team:core#member",
        "team:core#member@user:anne",
        "document:4#viewer@user:*",
        "document:5#viewer@user:bob",
        "document:4#blocked@user:anne",
        "document:1#allowed@user:anne",
    ])
    .await;
    assert_eq!(
        env.objects("document", "viewer", "user:anne").await,
        ["document:1", "document:2", "document:3", "document:4"]
    );
    // Exclusion and intersection filter the candidates.
    assert_eq!(
        env.objects("document", "can_view", "user:anne").await,
        ["document:1", "document:2", "document:3"]
    );
    assert_eq!(
        env.objects("document", "can_audit", "user:anne").await,
        ["document:1"]
    );
    assert_eq!(
        env.objects("folder", "viewer", "user:anne").await,
        ["folder:root", "folder:x"]
    );
    assert_eq!(
        env.objects("document", "viewer", "user:bob").await,
        ["document:4", "document:5"]
    );
    assert_eq!(
        env.objects("document", "viewer", "team:core#member").await,
        ["document:3"]
    );
    assert_eq!(
        env.objects("document", "viewer", "user:*").await,
        ["document:4"]
    );
    assert!(
        env.objects("document", "owner", "user:bob")
            .await
            .is_empty()
    );
    let err = env
        .rebac
        .list_objects("document", "nope", &user("user:anne"))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Config(_)), "{err:?}");
}

/// list_users: users of a type (with the wildcard when it applies) or
/// usersets, exclusions applied.
pub async fn list_users(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "document:1#viewer@user:anne",
        "document:1#owner@user:bob",
        "document:1#parent@folder:x",
        "folder:x#viewer@team:eng#member",
        "team:eng#member@user:carl",
        "team:eng#member@user:dana",
        "document:1#blocked@user:dana",
        "document:2#viewer@user:*",
    ])
    .await;
    // A tuple the model does not admit (written before a model change),
    // straight into the store.
    let stale = tuples(&["document:2#viewer@employee:eve"]);
    let changes = ee_auth::TupleChanges {
        writes: &stale,
        deletes: &[],
    };
    ee_auth::TupleStore::write(env.rebac.store(), changes)
        .await
        .unwrap();
    assert_eq!(
        env.users("document:1", "viewer", "user").await,
        ["user:anne", "user:bob", "user:carl", "user:dana"]
    );
    assert_eq!(
        env.users("document:1", "can_view", "user").await,
        ["user:anne", "user:bob", "user:carl"]
    );
    assert_eq!(
        env.users("document:1", "viewer", "team#member").await,
        ["team:eng#member"]
    );
    assert_eq!(env.users("document:1", "owner", "user").await, ["user:bob"]);
    // The wildcard is an answer of its own; a tuple the model does not admit
    // (`employee`, written before a model change) is not.
    assert_eq!(env.users("document:2", "viewer", "user").await, ["user:*"]);
    assert!(
        env.users("document:2", "viewer", "employee")
            .await
            .is_empty()
    );
}

/// expand: the relation's tree, one level deep.
pub async fn expand(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "document:1#viewer@user:anne",
        "document:1#viewer@team:eng#member",
        "document:1#parent@folder:x",
        "document:1#parent@folder:y",
    ])
    .await;
    let tree = env
        .rebac
        .expand(&obj("document:1"), "viewer")
        .await
        .unwrap();
    let name = "document:1#viewer".to_owned();
    assert_eq!(
        tree,
        UsersetTree {
            name: name.clone(),
            node: ExpandNode::Union(vec![
                UsersetTree {
                    name: name.clone(),
                    node: ExpandNode::Users(vec![user("user:anne"), user("team:eng#member")]),
                },
                UsersetTree {
                    name: name.clone(),
                    node: ExpandNode::Computed("document:1#editor".into())
                },
                UsersetTree {
                    name,
                    node: ExpandNode::TupleToUserset {
                        tupleset: "document:1#parent".into(),
                        computed: vec!["folder:x#viewer".into(), "folder:y#viewer".into()],
                    },
                },
            ]),
        }
    );
    assert_eq!(
        tree.to_string(),
        "document:1#viewer = ([user:anne, team:eng#member] | document:1#editor | document:1#parent -> [folder:x#viewer, folder:y#viewer])"
    );
    let tree = env
        .rebac
        .expand(&obj("document:1"), "can_view")
        .await
        .unwrap();
    assert!(matches!(tree.node, ExpandNode::Difference { .. }), "{tree}");
    assert_eq!(
        tree.to_string(),
        "document:1#can_view = (document:1#viewer - document:1#blocked)"
    );
}
