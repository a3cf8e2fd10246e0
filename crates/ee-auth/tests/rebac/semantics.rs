//! The cases, each as OpenFGA documents the behaviour; run on every store.

use ee_auth::{AuthError, CheckCache, RebacConfig};

use crate::env::{Backend, obj, tuples, user};

pub use crate::lists::{expand, list_objects, list_users};

/// Direct relationship: only the tuple's user has it.
pub async fn direct(b: Backend) {
    let env = b.env().await;
    env.write(&["document:1#owner@user:anne"]).await;
    assert_eq!(
        env.path("document:1", "owner", "user:anne")
            .await
            .as_deref(),
        Some("document:1#owner <- user:anne")
    );
    assert!(!env.check("document:1", "owner", "user:bob").await);
    assert!(!env.check("document:2", "owner", "user:anne").await);
    // Another type with the same id is another user.
    assert!(!env.check("document:1", "owner", "employee:anne").await);
}

/// Computed usersets: an owner is an editor is a viewer.
pub async fn computed_usersets(b: Backend) {
    let env = b.env().await;
    env.write(&["document:1#owner@user:anne", "document:1#editor@user:bob"])
        .await;
    assert_eq!(
        env.path("document:1", "viewer", "user:anne")
            .await
            .as_deref(),
        Some("document:1#viewer <- document:1#editor <- document:1#owner <- user:anne")
    );
    assert!(env.check("document:1", "viewer", "user:bob").await);
    assert!(env.check("document:1", "editor", "user:anne").await);
    // Not the other way round.
    assert!(!env.check("document:1", "owner", "user:bob").await);
}

/// Tuple to userset: `viewer from parent`, through nested folders.
pub async fn tuple_to_userset_through_parent_folders(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "folder:root#viewer@user:anne",
        "folder:sub#parent@folder:root",
        "document:1#parent@folder:sub",
        "folder:other#owner@user:bob",
    ])
    .await;
    assert_eq!(
        env.path("document:1", "viewer", "user:anne")
            .await
            .as_deref(),
        Some("document:1#viewer <- folder:sub#viewer <- folder:root#viewer <- user:anne")
    );
    // A folder's owner views it (computed), and through it what it contains.
    env.write(&["folder:sub#parent@folder:other"]).await;
    assert!(env.check("document:1", "viewer", "user:bob").await);
    // `viewer from parent` does not make one an editor.
    assert!(!env.check("document:1", "editor", "user:anne").await);
    assert!(!env.check("document:1", "viewer", "user:carl").await);
}

/// Union, intersection and exclusion (`but not`).
pub async fn union_intersection_exclusion(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "document:1#viewer@user:anne",
        "document:1#viewer@user:bob",
        "document:1#blocked@user:bob",
        "document:1#editor@user:carl",
        "document:1#allowed@user:carl",
        "document:1#editor@user:dana",
        "team:bad#member@user:erin",
        "document:1#viewer@user:erin",
        "document:1#blocked@team:bad#member",
    ])
    .await;
    // but not
    let anne = env.path("document:1", "can_view", "user:anne").await;
    assert_eq!(
        anne.as_deref(),
        Some("document:1#can_view <- document:1#viewer <- user:anne, but not document:1#blocked")
    );
    assert!(!env.check("document:1", "can_view", "user:bob").await);
    // The exclusion follows usersets too.
    assert!(!env.check("document:1", "can_view", "user:erin").await);
    assert!(env.check("document:1", "viewer", "user:erin").await);
    // and: editor and allowed
    assert!(env.check("document:1", "can_share", "user:carl").await);
    assert!(!env.check("document:1", "can_share", "user:dana").await);
    assert!(!env.check("document:1", "can_share", "user:anne").await);
}

/// `(viewer and allowed) but not blocked`.
pub async fn parenthesised_exclusion(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "document:1#viewer@user:anne",
        "document:1#allowed@user:anne",
        "document:1#viewer@user:bob",
        "document:1#allowed@user:bob",
        "document:1#blocked@user:bob",
        "document:1#viewer@user:carl",
    ])
    .await;
    assert!(env.check("document:1", "can_audit", "user:anne").await);
    assert!(!env.check("document:1", "can_audit", "user:bob").await);
    assert!(!env.check("document:1", "can_audit", "user:carl").await);
}

/// `user:*` grants every user of type `user`, and nothing else.
pub async fn wildcard(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "document:public#viewer@user:*",
        "document:public#blocked@user:bob",
    ])
    .await;
    assert_eq!(
        env.path("document:public", "viewer", "user:anyone")
            .await
            .as_deref(),
        Some("document:public#viewer <- user:*")
    );
    // Asked about the wildcard itself: it is related.
    assert!(env.check("document:public", "viewer", "user:*").await);
    // Not objects of another type, nor usersets.
    assert!(
        !env.check("document:public", "viewer", "employee:anyone")
            .await
    );
    assert!(
        !env.check("document:public", "viewer", "team:eng#member")
            .await
    );
    // The wildcard does not reach other relations or objects.
    assert!(!env.check("document:public", "editor", "user:anyone").await);
    assert!(!env.check("document:private", "viewer", "user:anyone").await);
    // but not still applies to a wildcard grant.
    assert!(env.check("document:public", "can_view", "user:anne").await);
    assert!(!env.check("document:public", "can_view", "user:bob").await);
}

/// A userset tuple grants to the userset's members; the userset itself is
/// related.
pub async fn usersets_and_the_userset_itself(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "document:1#viewer@team:eng#member",
        "team:eng#member@user:anne",
        "folder:x#viewer@team:eng#member",
        "document:2#parent@folder:x",
    ])
    .await;
    assert_eq!(
        env.path("document:1", "viewer", "user:anne")
            .await
            .as_deref(),
        Some("document:1#viewer <- team:eng#member <- user:anne")
    );
    assert_eq!(
        env.path("document:2", "viewer", "user:anne")
            .await
            .as_deref(),
        Some("document:2#viewer <- folder:x#viewer <- team:eng#member <- user:anne")
    );
    assert!(!env.check("document:1", "viewer", "user:bob").await);
    assert!(env.check("document:1", "viewer", "team:eng#member").await);
    assert!(env.check("team:eng", "member", "team:eng#member").await);
    assert!(!env.check("document:1", "viewer", "team:ops#member").await);
    assert!(!env.check("document:1", "editor", "team:eng#member").await);
}

/// Groups in groups.
pub async fn nested_groups(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "group:a#member@group:b#member",
        "group:b#member@group:c#member",
        "group:c#member@user:anne",
        "group:d#member@user:bob",
    ])
    .await;
    assert_eq!(
        env.path("group:a", "member", "user:anne").await.as_deref(),
        Some("group:a#member <- group:b#member <- group:c#member <- user:anne")
    );
    assert!(!env.check("group:a", "member", "user:bob").await);
    assert!(env.check("group:a", "member", "group:c#member").await);
    assert!(!env.check("group:c", "member", "group:a#member").await);
    assert_eq!(
        env.objects("group", "member", "user:anne").await,
        ["group:a", "group:b", "group:c"]
    );
}

/// A cycle in the data is no path along that branch: false, not a hang or
/// an error; a member anywhere on the cycle is a member of all of it.
pub async fn cycles_end_without_a_path(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "group:a#member@group:b#member",
        "group:b#member@group:c#member",
        "group:c#member@group:a#member",
        "team:x#member@team:x#member",
    ])
    .await;
    assert!(!env.check("group:a", "member", "user:anne").await);
    assert!(!env.check("team:x", "member", "user:anne").await);
    env.write(&["group:c#member@user:anne"]).await;
    for g in ["group:a", "group:b", "group:c"] {
        assert!(env.check(g, "member", "user:anne").await, "{g}");
    }
    assert_eq!(
        env.objects("group", "member", "user:anne").await,
        ["group:a", "group:b", "group:c"]
    );
    assert_eq!(env.users("group:b", "member", "user").await, ["user:anne"]);
    // Memoised sub-results never carry a cut branch into another answer:
    // folders in a loop with a viewer at one end.
    env.write(&[
        "folder:p#parent@folder:q",
        "folder:q#parent@folder:p",
        "folder:q#viewer@user:bob",
        "document:1#parent@folder:p",
        "document:1#parent@folder:q",
    ])
    .await;
    assert!(env.check("document:1", "viewer", "user:bob").await);
    assert!(env.check("folder:p", "viewer", "user:bob").await);
    assert!(!env.check("document:1", "viewer", "user:anne").await);

    // folder:c is first met inside the loop b -> c -> b, where its answer
    // is "no" only because b is being resolved: that answer must not be
    // cached for the next check of the request.
    env.write(&[
        "document:10#parent@folder:b",
        "folder:b#parent@folder:c",
        "folder:b#parent@folder:d",
        "folder:c#parent@folder:b",
        "folder:d#viewer@user:carl",
        "document:11#parent@folder:c",
    ])
    .await;
    let cache = CheckCache::new();
    let carl = user("user:carl");
    for doc in ["document:10", "document:11"] {
        let found = env
            .rebac
            .check_cached(&obj(doc), "viewer", &carl, &cache)
            .await
            .unwrap();
        assert!(found.allowed, "{doc}");
    }
    assert_eq!(
        env.path("document:11", "viewer", "user:carl")
            .await
            .as_deref(),
        Some(
            "document:11#viewer <- folder:c#viewer <- folder:b#viewer <- folder:d#viewer <- user:carl"
        )
    );
}

fn is_limit(e: &AuthError) -> bool {
    matches!(e, AuthError::Limit(_)) && e.status() == 500
}

/// A chain deeper than `max_depth` is an error (500), a shorter one is fine.
pub async fn depth_limit(b: Backend) {
    let env = b.env().await;
    let mut chain: Vec<String> = (0..30)
        .map(|i| format!("group:g{i}#member@group:g{}#member", i + 1))
        .collect();
    chain.push("group:g30#member@user:anne".into());
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    env.write(&chain).await;
    let err = env
        .rebac
        .check(&obj("group:g0"), "member", &user("user:anne"))
        .await
        .unwrap_err();
    assert!(is_limit(&err), "{err:?}");
    assert!(err.to_string().contains("max_depth"), "{err}");
    // 10 hops from g20: within the default 25.
    assert!(env.check("group:g20", "member", "user:anne").await);
    // A lower bound from the configuration.
    let cfg = RebacConfig {
        max_depth: 5,
        ..RebacConfig::default()
    };
    let shallow = b.env_with(crate::env::MODEL, &cfg).await;
    shallow.write(&chain).await;
    assert!(shallow.check("group:g26", "member", "user:anne").await);
    let err = shallow
        .rebac
        .check(&obj("group:g20"), "member", &user("user:anne"))
        .await
        .unwrap_err();
    assert!(is_limit(&err), "{err:?}");
}

/// A huge fan-out errors instead of hanging: past `max_fanout` tuples in one
/// read, or past `max_lookups` reads in one check.
pub async fn fanout_and_lookup_limits(b: Backend) {
    let many: Vec<String> = (0..1500)
        .map(|i| format!("group:big#member@group:s{i}#member"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();

    let env = b.env().await;
    env.write(&many).await;
    let err = env
        .rebac
        .check(&obj("group:big"), "member", &user("user:anne"))
        .await
        .unwrap_err();
    assert!(
        is_limit(&err) && err.to_string().contains("max_fanout"),
        "{err}"
    );
    let err = env
        .rebac
        .list_users(&obj("group:big"), "member", &"user".parse().unwrap())
        .await
        .unwrap_err();
    assert!(is_limit(&err), "{err}");
    // The same through a tupleset (`viewer from parent`, read with the
    // document's direct lookup).
    let parents: Vec<String> = (0..1500)
        .map(|i| format!("document:big#parent@folder:p{i}"))
        .collect();
    env.write(&parents.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let err = env
        .rebac
        .check(&obj("document:big"), "viewer", &user("user:anne"))
        .await
        .unwrap_err();
    assert!(
        is_limit(&err) && err.to_string().contains("document:big#parent"),
        "{err}"
    );

    let cfg = RebacConfig {
        max_fanout: 5000,
        max_lookups: 200,
        ..RebacConfig::default()
    };
    let env = b.env_with(crate::env::MODEL, &cfg).await;
    env.write(&many).await;
    let err = env
        .rebac
        .check(&obj("group:big"), "member", &user("user:anne"))
        .await
        .unwrap_err();
    assert!(
        is_limit(&err) && err.to_string().contains("max_lookups"),
        "{err}"
    );
    // A member found early needs few lookups.
    env.write(&["group:s0#member@user:anne"]).await;
    assert!(env.check("group:big", "member", "user:anne").await);
}

/// Tuples are checked against the model when written: nothing is written
/// when one is refused.
pub async fn writes_are_checked_against_the_model(b: Backend) {
    let env = b.env().await;
    for (tuple, says) in [
        (
            "document:1#owner@team:eng#member",
            "does not admit `team#member`",
        ),
        ("document:1#owner@user:*", "does not admit `user:*`"),
        (
            "document:1#viewer@employee:eve",
            "does not admit `employee`",
        ),
        ("document:1#can_view@user:anne", "not directly assignable"),
        ("paper:1#viewer@user:anne", "no type `paper`"),
        ("document:1#reader@user:anne", "no relation `reader`"),
        ("folder:x#parent@document:1", "does not admit `document`"),
    ] {
        let err = env
            .rebac
            .write(&tuples(&["document:9#viewer@user:ok", tuple]))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{tuple}: {err:?}");
        assert!(err.to_string().contains(says), "{tuple}: {err}");
    }
    assert!(
        !env.check("document:9", "viewer", "user:ok").await,
        "a refused batch wrote nothing"
    );
}

/// Deletes remove; writing twice and deleting what is absent are no-ops.
pub async fn delete_and_idempotent_writes(b: Backend) {
    let env = b.env().await;
    env.write(&["document:1#viewer@user:anne", "document:1#viewer@user:anne"])
        .await;
    env.write(&[
        "document:1#viewer@user:anne",
        "document:1#viewer@team:eng#member",
    ])
    .await;
    assert_eq!(
        env.users("document:1", "viewer", "user").await,
        ["user:anne"]
    );
    env.rebac
        .delete(&tuples(&[
            "document:1#viewer@user:anne",
            "document:7#viewer@user:x",
        ]))
        .await
        .unwrap();
    assert!(!env.check("document:1", "viewer", "user:anne").await);
    assert!(
        env.objects("document", "viewer", "user:anne")
            .await
            .is_empty()
    );
    assert_eq!(
        env.users("document:1", "viewer", "team#member").await,
        ["team:eng#member"]
    );
    // Written and deleted together.
    env.rebac
        .apply(ee_auth::TupleChanges {
            writes: &tuples(&["document:2#viewer@user:bob"]),
            deletes: &tuples(&["document:1#viewer@team:eng#member"]),
        })
        .await
        .unwrap();
    assert!(env.check("document:2", "viewer", "user:bob").await);
    assert!(
        env.users("document:1", "viewer", "team#member")
            .await
            .is_empty()
    );
}

/// A `CheckCache` answers a repeated sub-problem of the same request
/// without the store (here: after the tuple is gone, the cached answer
/// stands; a fresh check sees the change).
pub async fn check_cache_is_shared_within_a_request(b: Backend) {
    let env = b.env().await;
    env.write(&[
        "folder:x#viewer@user:anne",
        "document:1#parent@folder:x",
        "document:2#parent@folder:x",
    ])
    .await;
    let cache = CheckCache::new();
    let anne = user("user:anne");
    let first = env
        .rebac
        .check_cached(&obj("document:1"), "viewer", &anne, &cache)
        .await
        .unwrap();
    assert!(first.allowed);
    assert!(!cache.is_empty());
    env.rebac
        .delete(&tuples(&["folder:x#viewer@user:anne"]))
        .await
        .unwrap();
    // document:2 reaches folder:x#viewer, answered from the cache.
    let second = env
        .rebac
        .check_cached(&obj("document:2"), "viewer", &anne, &cache)
        .await
        .unwrap();
    assert_eq!(
        second.path.as_deref(),
        Some("document:2#viewer <- folder:x#viewer <- user:anne")
    );
    assert!(!env.check("document:2", "viewer", "user:anne").await);
    // Bounded.
    let tiny = CheckCache::with_capacity(1);
    env.write(&["document:3#viewer@user:bob"]).await;
    let _ = env
        .rebac
        .check_cached(&obj("document:3"), "viewer", &user("user:bob"), &tiny)
        .await
        .unwrap();
    let _ = env
        .rebac
        .check_cached(&obj("document:1"), "viewer", &user("user:bob"), &tiny)
        .await
        .unwrap();
    assert_eq!(tiny.len(), 1);
}
