//! ABAC on Cedar: permit and forbid, attribute conditions on principal,
//! resource and context, schemas, reasons, configuration, metrics.

use ee_auth::{
    AccessRequest, AuthError, Authorize, CedarConfig, CedarPolicies, Decision, Identity, Method,
    Resource,
};
use serde_json::{Value, json};

const POLICIES: &str = r#"
@id("owner-edits")
permit(principal, action == Action::"edit", resource is Doc)
when { resource.owner == principal };

@id("owner-by-id-reads")
permit(principal, action == Action::"read", resource is Doc)
when { resource has owner_id && resource.owner_id == principal.id };

@id("admins-read")
permit(principal, action == Action::"read", resource)
when { principal.roles.contains("admin") };

@id("no-archived-edits")
forbid(principal, action == Action::"edit", resource)
when { resource has archived && resource.archived };

@id("office-hours")
permit(principal, action == Action::"export", resource is Doc)
when { context.ip.isInRange(ip("10.0.0.0/8")) && context.hour >= 9 && context.hour < 18 };

@id("same-tenant-list")
permit(principal, action == Action::"list", resource is Doc)
when { principal has tenant && resource has tenant && principal.tenant == resource.tenant };

@id("staff-by-claim")
permit(principal, action == Action::"audit", resource)
when { principal has department && principal.department == "audit" };

@id("role-parent")
permit(principal in Role::"auditor", action == Action::"review", resource);
"#;

fn engine() -> CedarPolicies {
    CedarPolicies::builder()
        .policies(POLICIES)
        .role_type("Role")
        .claims(["department"])
        .build()
        .unwrap()
}

fn decide(
    cedar: &CedarPolicies,
    who: &Identity,
    action: &str,
    resource: Resource<'_>,
    context: Option<&Value>,
) -> Result<Decision, AuthError> {
    let mut request = AccessRequest::new(who, action, resource);
    request.context = context;
    now(cedar.authorize(&request))
}

/// Polls a future that must be ready at once (Cedar decides in memory).
fn now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("cedar should decide at once"),
    }
}

fn anne() -> Identity {
    Identity::new("anne", Method::Jwt)
}

#[test]
fn owner_checks_by_entity_reference_and_by_id() {
    let cedar = engine();
    let owned = json!({ "owner": { "__entity": { "type": "User", "id": "anne" } } });
    let d = decide(
        &cedar,
        &anne(),
        "edit",
        Resource::new("Doc", "1").with_attrs(&owned),
        None,
    )
    .unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.reason(), "policy owner-edits");
    let theirs = json!({ "owner": { "__entity": { "type": "User", "id": "bob" } } });
    let d = decide(
        &cedar,
        &anne(),
        "edit",
        Resource::new("Doc", "1").with_attrs(&theirs),
        None,
    )
    .unwrap();
    assert!(!d.is_allowed());
    assert_eq!(d.reason(), "no policy permits edit on Doc:1");

    let by_id = json!({ "owner_id": "anne" });
    let d = decide(
        &cedar,
        &anne(),
        "read",
        Resource::new("Doc", "2").with_attrs(&by_id),
        None,
    )
    .unwrap();
    assert_eq!(d.reason(), "policy owner-by-id-reads");
    let by_id = json!({ "owner_id": "bob" });
    let d = decide(
        &cedar,
        &anne(),
        "read",
        Resource::new("Doc", "2").with_attrs(&by_id),
        None,
    )
    .unwrap();
    assert!(!d.is_allowed());
}

#[test]
fn forbid_overrides_permit_and_is_named() {
    let cedar = engine();
    let archived = json!({
        "owner": { "__entity": { "type": "User", "id": "anne" } },
        "archived": true
    });
    let d = decide(
        &cedar,
        &anne(),
        "edit",
        Resource::new("Doc", "3").with_attrs(&archived),
        None,
    )
    .unwrap();
    assert_eq!(
        d,
        Decision::Deny("forbidden by policy no-archived-edits".into())
    );
}

#[test]
fn principal_attributes_roles_tenant_claims_and_role_parents() {
    let cedar = engine();
    let admin = anne().with_roles(["admin"]);
    let d = decide(&cedar, &admin, "read", Resource::new("Report", "q3"), None).unwrap();
    assert_eq!(d.reason(), "policy admins-read");
    assert!(
        !decide(&cedar, &anne(), "read", Resource::new("Report", "q3"), None)
            .unwrap()
            .is_allowed()
    );

    let acme = anne().with_tenant("acme");
    let d = decide(
        &cedar,
        &acme,
        "list",
        Resource::new("Doc", "*").with_tenant("acme"),
        None,
    )
    .unwrap();
    assert_eq!(d.reason(), "policy same-tenant-list");
    let d = decide(
        &cedar,
        &acme,
        "list",
        Resource::new("Doc", "*").with_tenant("globex"),
        None,
    )
    .unwrap();
    assert!(!d.is_allowed());

    let mut claims = serde_json::Map::new();
    claims.insert("department".into(), json!("audit"));
    claims.insert("email".into(), json!("anne@example.com"));
    let auditor = anne().with_claims(claims);
    let d = decide(
        &cedar,
        &auditor,
        "audit",
        Resource::new("Ledger", "1"),
        None,
    )
    .unwrap();
    assert_eq!(d.reason(), "policy staff-by-claim");
    assert!(
        !decide(&cedar, &anne(), "audit", Resource::new("Ledger", "1"), None)
            .unwrap()
            .is_allowed()
    );

    let reviewer = anne().with_roles(["auditor"]);
    let d = decide(
        &cedar,
        &reviewer,
        "review",
        Resource::new("Ledger", "1"),
        None,
    )
    .unwrap();
    assert_eq!(d.reason(), "policy role-parent");
}

#[test]
fn context_conditions_on_ip_range_and_time() {
    let cedar = engine();
    let ctx = |ip: &str, hour: i64| json!({ "ip": { "__extn": { "fn": "ip", "arg": ip } }, "hour": hour });
    let doc = Resource::new("Doc", "9");
    let inside = ctx("10.1.2.3", 10);
    assert_eq!(
        decide(&cedar, &anne(), "export", doc, Some(&inside))
            .unwrap()
            .reason(),
        "policy office-hours"
    );
    for denied in [ctx("192.168.1.1", 10), ctx("10.1.2.3", 20)] {
        assert!(
            !decide(&cedar, &anne(), "export", doc, Some(&denied))
                .unwrap()
                .is_allowed()
        );
    }
    // Without the context, the policy errors (no attribute): a denial whose
    // reason names the failing policy.
    let d = decide(&cedar, &anne(), "export", doc, None).unwrap();
    assert!(!d.is_allowed());
    assert!(d.reason().contains("office-hours"), "{}", d.reason());
}

#[test]
fn malformed_attributes_are_errors_not_decisions() {
    let cedar = engine();
    let not_object = json!([1, 2]);
    let e = decide(
        &cedar,
        &anne(),
        "read",
        Resource::new("Doc", "1").with_attrs(&not_object),
        None,
    );
    assert!(matches!(e, Err(AuthError::Config(_))), "{e:?}");
    let bad_ip = json!({ "ip": { "__extn": { "fn": "ip", "arg": "not-an-ip" } } });
    let e = decide(
        &cedar,
        &anne(),
        "export",
        Resource::new("Doc", "1"),
        Some(&bad_ip),
    );
    assert!(matches!(e, Err(AuthError::Config(_))), "{e:?}");
    let e = decide(
        &cedar,
        &anne(),
        "read",
        Resource::new("not a type", "1"),
        None,
    );
    assert!(matches!(e, Err(AuthError::Config(_))), "{e:?}");
}

const SCHEMA: &str = r#"
entity User { id: String, roles: Set<String>, tenant?: String };
entity Doc { owner: User, archived?: Bool };
action read, edit appliesTo { principal: User, resource: Doc };
action writes;
action publish in [writes] appliesTo { principal: User, resource: Doc };
"#;

#[test]
fn a_schema_validates_policies_at_load_listing_every_error() {
    let bad = r#"
        @id("typo")
        permit(principal, action == Action::"read", resource is Doc) when { resource.ownr == principal };
        @id("wrong-type")
        permit(principal, action == Action::"edit", resource is Doc) when { resource.archived == "yes" };
    "#;
    let err = CedarPolicies::builder()
        .policies(bad)
        .schema(SCHEMA)
        .build()
        .unwrap_err();
    let AuthError::Config(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("do not validate"), "{msg}");
    assert!(
        msg.contains("policy `typo`") && msg.contains("policy `wrong-type`"),
        "{msg}"
    );

    let good = r#"
        @id("owner-edits")
        permit(principal, action == Action::"edit", resource is Doc) when { resource.owner == principal };
        @id("writers")
        permit(principal, action in Action::"writes", resource is Doc) when { resource.owner == principal };
    "#;
    let cedar = CedarPolicies::builder()
        .policies(good)
        .schema(SCHEMA)
        .build()
        .unwrap();
    let owned = json!({ "owner": { "__entity": { "type": "User", "id": "anne" } } });
    let doc = Resource::new("Doc", "1").with_attrs(&owned);
    assert_eq!(
        decide(&cedar, &anne(), "edit", doc, None).unwrap().reason(),
        "policy owner-edits"
    );
    // Action groups from the schema: `publish` is in `writes`.
    assert_eq!(
        decide(&cedar, &anne(), "publish", doc, None)
            .unwrap()
            .reason(),
        "policy writers"
    );
    assert!(
        !decide(&cedar, &anne(), "read", doc, None)
            .unwrap()
            .is_allowed()
    );

    let err = CedarPolicies::builder()
        .policies(good)
        .schema("entity ;")
        .build()
        .unwrap_err();
    assert!(matches!(err, AuthError::Config(m) if m.contains("schema")));
}

#[test]
fn load_errors() {
    let config_err = |r: Result<CedarPolicies, AuthError>| match r {
        Err(AuthError::Config(m)) => m,
        other => panic!("expected a config error: {other:?}"),
    };
    let m = config_err(CedarPolicies::builder().build());
    assert!(m.contains("no policies"), "{m}");
    let m = config_err(
        CedarPolicies::builder()
            .policies("permit(principal")
            .build(),
    );
    assert!(m.contains("do not parse"), "{m}");
    let m = config_err(
        CedarPolicies::builder()
            .policies("permit(principal == ?principal, action, resource);")
            .build(),
    );
    assert!(m.contains("templates"), "{m}");
    let m = config_err(
        CedarPolicies::builder()
            .policies(r#"@id("a") permit(principal, action, resource); @id("a") forbid(principal, action, resource);"#)
            .build(),
    );
    assert!(m.contains("`a`"), "{m}");
    let m = config_err(
        CedarPolicies::builder()
            .policies(POLICIES)
            .claims(["roles"])
            .build(),
    );
    assert!(m.contains("collides"), "{m}");
}

#[test]
fn config_from_files_and_strict_keys() {
    let dir = std::env::temp_dir().join(format!("ee-auth-cedar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.cedar"), POLICIES).unwrap();
    let config: CedarConfig = serde_json::from_value(json!({
        "policies_file": dir.join("p.cedar"),
        "principal_type": "Member",
        "claims": ["department"]
    }))
    .unwrap();
    let cedar = CedarPolicies::builder()
        .config(&config)
        .unwrap()
        .build()
        .unwrap();
    let owned = json!({ "owner": { "__entity": { "type": "Member", "id": "anne" } } });
    let d = decide(
        &cedar,
        &anne(),
        "edit",
        Resource::new("Doc", "1").with_attrs(&owned),
        None,
    )
    .unwrap();
    assert_eq!(
        d.reason(),
        "policy owner-edits",
        "the principal is Member::\"anne\""
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let missing = CedarConfig {
        policies_file: Some(dir.join("gone.cedar")),
        ..CedarConfig::default()
    };
    assert!(matches!(
        CedarPolicies::builder().config(&missing),
        Err(AuthError::Config(_))
    ));
    let both = CedarConfig {
        policies: Some(POLICIES.into()),
        policies_file: Some(dir.join("p.cedar")),
        ..CedarConfig::default()
    };
    assert!(matches!(
        CedarPolicies::builder().config(&both),
        Err(AuthError::Config(_))
    ));
    let unknown = serde_json::from_value::<CedarConfig>(
        json!({ "policy": "permit(principal, action, resource);" }),
    );
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    assert_eq!(CedarConfig::default().principal_type, "User");
}

#[test]
fn decisions_are_counted_as_abac() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let cedar = engine();
        let admin = anne().with_roles(["admin"]);
        let _ = decide(&cedar, &admin, "read", Resource::new("Doc", "1"), None).unwrap();
        let _ = decide(&cedar, &anne(), "read", Resource::new("Doc", "1"), None).unwrap();
        let _ = decide(
            &cedar,
            &anne(),
            "read",
            Resource::new("bad type", "1"),
            None,
        );
    });
    let counters = ee_testing::counters(&snapshotter);
    for outcome in ["allow", "deny", "error"] {
        assert_eq!(
            counters.get(&format!(
                "ee_auth_decisions_total{{model=abac,outcome={outcome}}}"
            )),
            Some(1),
            "{outcome}"
        );
    }
}
