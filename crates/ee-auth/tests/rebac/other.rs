//! `Rebac` as an `Authorize`r (subjects, reasons, metrics), configuration,
//! and a store that fails.

use ee_auth::{
    AccessRequest, AuthError, Authorize, DbTuples, Identity, MemoryTuples, Method, Rebac,
    RebacConfig, RebacModel, Resource,
};

use crate::env::{MODEL, tuples};

#[tokio::test]
async fn authorize_checks_the_relation_and_records_each_decision() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rebac = metrics::with_local_recorder(&recorder, || {
        Rebac::new(RebacModel::parse(MODEL).unwrap(), MemoryTuples::new())
    });
    rebac
        .write(&tuples(&[
            "folder:x#viewer@user:anne",
            "document:1#parent@folder:x",
            "document:1#owner@user:auth0|42",
        ]))
        .await
        .unwrap();

    let anne = Identity::new("user:anne", Method::Jwt);
    let doc = Resource::new("document", "1");
    let decision = rebac
        .authorize(&AccessRequest::new(&anne, "viewer", doc))
        .await
        .unwrap();
    assert_eq!(
        decision,
        ee_auth::Decision::Allow("document:1#viewer <- folder:x#viewer <- user:anne".into())
    );
    let decision = rebac
        .authorize(&AccessRequest::new(&anne, "owner", doc))
        .await
        .unwrap();
    assert!(!decision.is_allowed());
    assert!(
        decision
            .reason()
            .contains("no relationship grants owner on document:1 to user:anne")
    );
    // A subject without `:` is a `user`.
    let bare = Identity::new("auth0|42", Method::Jwt);
    assert!(
        rebac
            .authorize(&AccessRequest::new(&bare, "owner", doc))
            .await
            .unwrap()
            .is_allowed()
    );
    // Malformed objects and subjects are denials.
    let all = Resource::new("document", "*");
    assert!(
        !rebac
            .authorize(&AccessRequest::new(&anne, "viewer", all))
            .await
            .unwrap()
            .is_allowed()
    );
    let odd = Identity::new("user:", Method::Jwt);
    assert!(
        !rebac
            .authorize(&AccessRequest::new(&odd, "viewer", doc))
            .await
            .unwrap()
            .is_allowed()
    );
    // A relation the type lacks is a set-up error (500).
    let err = rebac
        .authorize(&AccessRequest::new(&anne, "delete", doc))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::Config(_)) && err.status() == 500,
        "{err:?}"
    );

    let counters = ee_testing::counters(&snapshotter);
    let get = |outcome: &str| {
        counters
            .get(&format!(
                "ee_auth_decisions_total{{model=rebac,outcome={outcome}}}"
            ))
            .unwrap_or(0)
    };
    assert_eq!((get("allow"), get("deny"), get("error")), (2, 3, 1));
}

#[tokio::test]
async fn config_sets_model_and_bounds() {
    let cfg: RebacConfig = serde_json::from_value(serde_json::json!({
        "model": MODEL,
        "max_depth": 3,
        "max_lookups": 50,
    }))
    .unwrap();
    assert_eq!(cfg.max_fanout, 1000);
    let rebac = Rebac::builder(MemoryTuples::new())
        .config(&cfg)
        .unwrap()
        .build()
        .unwrap();
    assert!(rebac.model().has_relation("document", "can_audit"));
    rebac
        .write(&tuples(&[
            "group:a#member@group:b#member",
            "group:b#member@group:c#member",
            "group:c#member@group:d#member",
            "group:d#member@user:x",
        ]))
        .await
        .unwrap();
    let err = rebac
        .check(
            &"group:a".parse().unwrap(),
            "member",
            &"user:x".parse().unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Limit(_)), "{err:?}");

    // A model file.
    let path = std::env::temp_dir().join(format!("ee-auth-rebac-{}.fga", std::process::id()));
    std::fs::write(&path, MODEL).unwrap();
    let cfg = RebacConfig {
        model_file: Some(path.clone()),
        ..RebacConfig::default()
    };
    let rebac = Rebac::builder(MemoryTuples::new())
        .config(&cfg)
        .unwrap()
        .build()
        .unwrap();
    assert!(rebac.model().has_type("folder"));
    std::fs::remove_file(&path).unwrap();

    // Refused: unknown keys, zero bounds, two models, no model, a bad model, a missing file.
    assert!(serde_json::from_value::<RebacConfig>(serde_json::json!({"max_dept": 3})).is_err());
    for cfg in [
        RebacConfig {
            max_depth: 0,
            ..RebacConfig::default()
        },
        RebacConfig {
            max_results: 0,
            ..RebacConfig::default()
        },
        RebacConfig {
            model: Some(MODEL.into()),
            model_file: Some(path.clone()),
            ..RebacConfig::default()
        },
        RebacConfig {
            model: Some("model\n schema 1.1\ntype doc\n relations\n  define a: [user]\n".into()),
            ..RebacConfig::default()
        },
        RebacConfig {
            model_file: Some(path),
            ..RebacConfig::default()
        },
    ] {
        let err = Rebac::builder(MemoryTuples::new())
            .config(&cfg)
            .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{cfg:?}: {err:?}");
    }
    let err = Rebac::builder(MemoryTuples::new()).build().unwrap_err();
    assert!(err.to_string().contains("no model"), "{err}");
}

/// A store that cannot be read fails closed: an error (503), never an allow.
#[tokio::test]
async fn a_failing_store_fails_closed() {
    let db = ee_db::Database::open("sqlite::memory:").await.unwrap();
    let store = DbTuples::open(db.clone(), "rebac_tuples").await.unwrap();
    let rebac = Rebac::new(RebacModel::parse(MODEL).unwrap(), store);
    rebac
        .write(&tuples(&["document:1#viewer@user:anne"]))
        .await
        .unwrap();
    db.batch("DROP TABLE rebac_tuples").await.unwrap();
    let anne = Identity::new("user:anne", Method::Jwt);
    let err = rebac
        .authorize(&AccessRequest::new(
            &anne,
            "viewer",
            Resource::new("document", "1"),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::Unavailable { .. }) && err.status() == 503,
        "{err:?}"
    );
    assert!(
        rebac
            .write(&tuples(&["document:1#viewer@user:bob"]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn table_names_are_checked() {
    let db = ee_db::Database::open("sqlite::memory:").await.unwrap();
    for bad in ["", "a b", "t;drop", "1abc", &"x".repeat(49)] {
        assert!(
            matches!(
                DbTuples::open(db.clone(), bad).await,
                Err(AuthError::Config(_))
            ),
            "{bad}"
        );
    }
}

/// A subject is an object only: an identity whose id is spelled as a userset
/// (`team:eng#member`) or a wildcard (`user:*`) borrows nobody's rights, whatever
/// the tuples grant to that userset or to everyone (an API key owner or a user
/// name is text a caller may choose).
#[tokio::test]
async fn a_subject_spelled_as_a_userset_or_wildcard_stands_for_no_one() {
    let model = RebacModel::parse(
        "model\n  schema 1.1\ntype user\ntype team\n  relations\n    define member: [user]\n\
         type doc\n  relations\n    define viewer: [user, user:*, team#member]\n",
    )
    .unwrap();
    let rebac = Rebac::new(model, MemoryTuples::new());
    rebac
        .write(&tuples(&[
            "team:eng#member@user:anne",
            "doc:plan#viewer@team:eng#member",
            "doc:open#viewer@user:*",
        ]))
        .await
        .unwrap();
    let ask = |id: &'static str, doc: &'static str| {
        let rebac = rebac.clone();
        async move {
            let who = Identity::new(id, Method::ApiKey);
            rebac
                .authorize(&AccessRequest::new(
                    &who,
                    "viewer",
                    Resource::new("doc", doc),
                ))
                .await
                .unwrap()
                .is_allowed()
        }
    };
    assert!(ask("user:anne", "plan").await);
    assert!(!ask("team:eng#member", "plan").await);
    assert!(ask("user:bob", "open").await);
    assert!(!ask("user:*", "open").await);
    assert!(!ask("user:*", "plan").await);
}
