//! RBAC: inheritance, wildcards, tenants, load-time errors, reload, metrics,
//! and a property test against a naive reference implementation.

use std::collections::BTreeMap;

use ee_auth::{
    AccessRequest, AssignmentConfig, AuthError, Authorize, Identity, Method, Rbac, RbacConfig,
    Resource, RoleConfig,
};
use proptest::prelude::*;

fn user(id: &str, roles: &[&str]) -> Identity {
    Identity::new(id, Method::Jwt).with_roles(roles.iter().copied())
}

fn shop() -> Rbac {
    Rbac::builder()
        .role("guest", RoleConfig::new().permissions(["products:read"]))
        .role(
            "customer",
            RoleConfig::new()
                .inherits(["guest"])
                .permissions(["orders:create", "orders:read"]),
        )
        .role(
            "support",
            RoleConfig::new()
                .inherits(["customer"])
                .permissions(["*:read", "refunds:create"]),
        )
        .role(
            "manager",
            RoleConfig::new()
                .inherits(["support"])
                .permissions(["orders:*"]),
        )
        .role("admin", RoleConfig::new().permissions(["*"]))
        .build()
        .unwrap()
}

fn config_error(result: Result<Rbac, AuthError>) -> String {
    match result {
        Err(AuthError::Config(msg)) => msg,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn inheritance_is_transitive_and_the_reason_names_the_chain() {
    let rbac = shop();
    let manager = user("user:mia", &["manager"]);
    // Three levels up: manager > support > customer > guest.
    let d = rbac.check(&manager, "products:read");
    assert!(d.is_allowed());
    // The reason names the most specific grant (guest's exact permission
    // before support's `*:read`) and the chain that reaches it.
    assert_eq!(
        d.reason(),
        "role manager > support > customer > guest grants products:read"
    );
    let d = rbac.check(&manager, "invoices:read");
    assert_eq!(d.reason(), "role manager > support grants *:read");
    let d = rbac.check(&user("user:cy", &["customer"]), "products:read");
    assert_eq!(d.reason(), "role customer > guest grants products:read");
    assert!(rbac.check(&manager, "refunds:create").is_allowed());
    assert!(rbac.check(&manager, "orders:cancel").is_allowed());
    // Inheritance goes one way: a guest has nothing of the customer's.
    let guest = user("user:gus", &["guest"]);
    let d = rbac.check(&guest, "orders:read");
    assert!(!d.is_allowed());
    assert_eq!(d.reason(), "no role grants orders:read");
}

#[test]
fn wildcards_match_a_whole_side_only() {
    let rbac = shop();
    let support = user("user:sue", &["support"]);
    assert!(rbac.check(&support, "invoices:read").is_allowed(), "*:read");
    assert!(!rbac.check(&support, "invoices:write").is_allowed());
    let manager = user("user:mia", &["manager"]);
    assert!(
        rbac.check(&manager, "orders:anything").is_allowed(),
        "orders:*"
    );
    assert!(!rbac.check(&manager, "ordersx:write").is_allowed());
    let admin = user("user:ada", &["admin"]);
    for p in ["x:y", "orders:delete", "a:*"] {
        let d = rbac.check(&admin, p);
        assert!(d.is_allowed(), "{p}");
        assert_eq!(d.reason(), "role admin grants *");
    }
    // A wildcard in the request is literal.
    let customer = user("user:cy", &["customer"]);
    assert!(!rbac.check(&customer, "orders:*").is_allowed());
    assert!(rbac.check(&manager, "orders:*").is_allowed());
    // Not a permission at all.
    let d = rbac.check(&admin, "orders");
    assert!(!d.is_allowed());
    assert!(d.reason().contains("not a permission"));
}

#[test]
fn unknown_roles_in_credentials_are_ignored_and_roles_add_up() {
    let rbac = shop();
    let d = rbac.check(&user("user:x", &["ghost", "guest"]), "products:read");
    assert!(d.is_allowed());
    assert!(
        !rbac
            .check(&user("user:x", &["ghost"]), "products:read")
            .is_allowed()
    );
    let both = user("user:x", &["guest", "admin"]);
    assert!(rbac.check(&both, "payments:refund").is_allowed());
}

#[tokio::test]
async fn roles_hold_in_their_tenant_only() {
    let rbac = Rbac::builder()
        .role("admin", RoleConfig::new().permissions(["*"]))
        .role("viewer", RoleConfig::new().permissions(["*:read"]))
        .assign(AssignmentConfig::new("user:anne", ["admin"]).tenant("acme"))
        .assign(AssignmentConfig::new("user:anne", ["viewer"]))
        .build()
        .unwrap();
    let ask = |identity: &Identity, tenant: Option<&str>, action: &str| {
        let mut resource = Resource::new("orders", "1");
        resource.tenant = tenant;
        let request = AccessRequest::new(identity, action, resource);
        // Rbac decides at once.
        futures_now(rbac.authorize(&request)).unwrap()
    };
    let anne = Identity::new("user:anne", Method::Jwt);
    assert!(ask(&anne, Some("acme"), "delete").is_allowed());
    let d = ask(&anne, Some("globex"), "delete");
    assert_eq!(d.reason(), "no role grants orders:delete in tenant globex");
    // The assignment without a tenant holds everywhere.
    assert!(ask(&anne, Some("globex"), "read").is_allowed());
    assert!(ask(&anne, None, "read").is_allowed());
    // No tenant on the request: only the tenant-less assignment.
    assert!(!ask(&anne, None, "delete").is_allowed());
    // The identity's tenant is the request's when the resource names none.
    let anne_acme = anne.clone().with_tenant("acme");
    assert!(ask(&anne_acme, None, "delete").is_allowed());
    // Roles carried by credentials hold in the credentials' tenant only.
    let bob = Identity::new("user:bob", Method::Jwt)
        .with_tenant("acme")
        .with_roles(["admin"]);
    assert!(ask(&bob, Some("acme"), "delete").is_allowed());
    assert!(ask(&bob, None, "delete").is_allowed());
    assert!(!ask(&bob, Some("globex"), "delete").is_allowed());
    // Credentials without a tenant: their roles hold where no tenant is named, never in
    // a tenant (a missing tenant claim is no key to every tenant).
    let root = user("user:root", &["admin"]);
    assert!(ask(&root, None, "delete").is_allowed());
    let d = ask(&root, Some("globex"), "delete");
    assert!(!d.is_allowed(), "{d:?}");
    // `check` uses the identity's tenant.
    assert!(rbac.check(&anne_acme, "orders:delete").is_allowed());
    assert!(!rbac.check(&anne, "orders:delete").is_allowed());
}

/// Polls a future that must be ready at once.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("rbac should decide at once"),
    }
}

#[test]
fn cycles_are_refused_with_the_cycle_named() {
    let msg = config_error(
        Rbac::builder()
            .role("a", RoleConfig::new().inherits(["b"]))
            .role("b", RoleConfig::new().inherits(["c"]))
            .role("c", RoleConfig::new().inherits(["a"]))
            .role("d", RoleConfig::new().inherits(["a"]))
            .build(),
    );
    assert!(msg.contains("cycle"), "{msg}");
    assert!(msg.contains("a > b > c > a"), "{msg}");
    let msg = config_error(
        Rbac::builder()
            .role("self", RoleConfig::new().inherits(["self"]))
            .build(),
    );
    assert!(msg.contains("self > self"), "{msg}");
    // A diamond is no cycle.
    Rbac::builder()
        .role("top", RoleConfig::new().inherits(["l", "r"]))
        .role("l", RoleConfig::new().inherits(["base"]))
        .role("r", RoleConfig::new().inherits(["base"]))
        .role("base", RoleConfig::new().permissions(["x:y"]))
        .build()
        .unwrap();
}

#[test]
fn bad_models_are_refused_at_load() {
    let msg = config_error(
        Rbac::builder()
            .role("viewer", RoleConfig::new())
            .assign(AssignmentConfig::new("user:anne", ["editor"]))
            .build(),
    );
    assert!(msg.contains("unknown role `editor`"), "{msg}");
    let msg = config_error(
        Rbac::builder()
            .role("viewer", RoleConfig::new().inherits(["nobody"]))
            .build(),
    );
    assert!(msg.contains("inherits unknown role `nobody`"), "{msg}");
    for bad in ["orders", "orders:", ":read", "ord*:read", "orders:re*d", ""] {
        let msg = config_error(
            Rbac::builder()
                .role("r", RoleConfig::new().permissions([bad]))
                .build(),
        );
        assert!(msg.contains("invalid permission"), "{bad}: {msg}");
    }
    let msg = config_error(
        Rbac::builder()
            .role("r", RoleConfig::new())
            .role("r", RoleConfig::new())
            .build(),
    );
    assert!(msg.contains("defined twice"), "{msg}");
}

#[test]
fn config_deserializes_strictly_and_builds() {
    let config: RbacConfig = serde_json::from_value(serde_json::json!({
        "roles": {
            "viewer": { "permissions": ["*:read"] },
            "editor": { "inherits": ["viewer"], "permissions": ["orders:write"] }
        },
        "assignments": [{ "subject": "user:anne", "tenant": "acme", "roles": ["editor"] }]
    }))
    .unwrap();
    let rbac = Rbac::builder().config(&config).unwrap().build().unwrap();
    let anne = Identity::new("user:anne", Method::Jwt).with_tenant("acme");
    assert!(rbac.check(&anne, "orders:write").is_allowed());
    assert_eq!(
        rbac.check(&anne, "orders:read").reason(),
        "role editor > viewer grants *:read"
    );
    let unknown = serde_json::from_value::<RbacConfig>(serde_json::json!({
        "roles": { "viewer": { "permission": ["*:read"] } }
    }));
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    // `config` checks what it was given at once.
    let mut bad = config.clone();
    bad.assignments[0].roles = vec!["ghost".into()];
    assert!(matches!(
        Rbac::builder().config(&bad),
        Err(AuthError::Config(_))
    ));
}

#[test]
fn reload_swaps_the_model_for_every_clone_and_keeps_it_on_error() {
    let rbac = shop();
    let clone = rbac.clone();
    let cy = user("user:cy", &["customer"]);
    assert!(clone.check(&cy, "orders:read").is_allowed());
    let mut next = RbacConfig::default();
    next.roles.insert(
        "customer".into(),
        RoleConfig::new().permissions(["orders:read", "returns:create"]),
    );
    rbac.reload(&next).unwrap();
    assert!(clone.check(&cy, "returns:create").is_allowed());
    assert!(
        !clone.check(&cy, "products:read").is_allowed(),
        "guest is gone"
    );
    let mut broken = next.clone();
    broken
        .roles
        .insert("x".into(), RoleConfig::new().inherits(["x"]));
    assert!(matches!(rbac.reload(&broken), Err(AuthError::Config(_))));
    assert!(
        clone.check(&cy, "returns:create").is_allowed(),
        "the old model stays"
    );
}

#[test]
fn decisions_are_counted() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rbac = shop();
        let cy = user("user:cy", &["customer"]);
        for _ in 0..3 {
            let _ = rbac.check(&cy, "orders:read");
        }
        let _ = rbac.check(&cy, "orders:delete");
        let request = AccessRequest::new(&cy, "read", Resource::new("products", "1"));
        assert!(futures_now(rbac.authorize(&request)).unwrap().is_allowed());
    });
    let counters = ee_testing::counters(&snapshotter);
    assert_eq!(
        counters.get("ee_auth_decisions_total{model=rbac,outcome=allow}"),
        Some(4)
    );
    assert_eq!(
        counters.get("ee_auth_decisions_total{model=rbac,outcome=deny}"),
        Some(1)
    );
}

// ---- property test: the compiled model against a naive recursive walk ----

const RESOURCES: [&str; 3] = ["a", "b", "c"];
const ACTIONS: [&str; 4] = ["x", "y", "z", "*"];
const TENANTS: [&str; 2] = ["t0", "t1"];

fn matches(pattern: &str, resource: &str, action: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (r, a) = pattern.split_once(':').unwrap();
    (r == "*" || r == resource) && (a == "*" || a == action)
}

fn walk(config: &RbacConfig, role: &str, resource: &str, action: &str) -> bool {
    let Some(r) = config.roles.get(role) else {
        return false;
    };
    r.permissions.iter().any(|p| matches(p, resource, action))
        || r.inherits.iter().any(|p| walk(config, p, resource, action))
}

#[derive(Debug, Clone)]
struct Ask {
    subject: String,
    id_tenant: Option<&'static str>,
    roles: Vec<String>,
    resource_tenant: Option<&'static str>,
    resource: &'static str,
    action: &'static str,
}

/// The reference: the subject's roles by the documented tenant rules, each
/// walked recursively; the role that grants (for the reason check).
fn reference(config: &RbacConfig, ask: &Ask) -> Vec<String> {
    let tenant = ask.resource_tenant.or(ask.id_tenant);
    let mut roles = Vec::new();
    if ask.id_tenant == tenant {
        roles.extend(ask.roles.iter().cloned());
    }
    for a in &config.assignments {
        if a.subject == ask.subject && (a.tenant.is_none() || a.tenant.as_deref() == tenant) {
            roles.extend(a.roles.iter().cloned());
        }
    }
    roles
        .into_iter()
        .filter(|r| walk(config, r, ask.resource, ask.action))
        .collect()
}

fn permission() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        8 => (prop::sample::select(vec!["a", "b", "c", "*"]), prop::sample::select(vec!["x", "y", "z", "*"]))
            .prop_map(|(r, a)| format!("{r}:{a}")),
    ]
}

/// Up to 8 roles `r0`…; role i inherits only from roles j < i (a DAG).
fn model() -> impl Strategy<Value = RbacConfig> {
    (1usize..8)
        .prop_flat_map(|n| {
            let roles = prop::collection::vec(
                (
                    prop::collection::vec(any::<prop::sample::Index>(), 0..3),
                    prop::collection::vec(permission(), 0..4),
                ),
                n,
            );
            let assignments = prop::collection::vec(
                (
                    0usize..3,
                    prop::option::of(prop::sample::select(TENANTS.to_vec())),
                    prop::collection::vec(0..n, 0..3),
                ),
                0..5,
            );
            (roles, assignments)
        })
        .prop_map(|(roles, assignments)| {
            let n = roles.len();
            let mut map = BTreeMap::new();
            for (i, (parents, permissions)) in roles.into_iter().enumerate() {
                let inherits = if i == 0 {
                    Vec::new()
                } else {
                    let mut p: Vec<String> = parents
                        .iter()
                        .map(|ix| format!("r{}", ix.index(i)))
                        .collect();
                    p.dedup();
                    p
                };
                map.insert(
                    format!("r{i}"),
                    RoleConfig {
                        inherits,
                        permissions,
                    },
                );
            }
            let assignments = assignments
                .into_iter()
                .map(|(s, tenant, roles)| AssignmentConfig {
                    subject: format!("s{s}"),
                    tenant: tenant.map(str::to_owned),
                    roles: roles.into_iter().map(|r| format!("r{}", r % n)).collect(),
                })
                .collect();
            RbacConfig {
                roles: map,
                assignments,
            }
        })
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        0usize..4,
        prop::option::of(prop::sample::select(TENANTS.to_vec())),
        prop::collection::vec(0usize..9, 0..3),
        prop::option::of(prop::sample::select(TENANTS.to_vec())),
        prop::sample::select(RESOURCES.to_vec()),
        prop::sample::select(ACTIONS.to_vec()),
    )
        .prop_map(
            |(s, id_tenant, roles, resource_tenant, resource, action)| Ask {
                subject: format!("s{s}"),
                id_tenant,
                // r8 is never defined: credentials may carry unknown roles.
                roles: roles.into_iter().map(|r| format!("r{r}")).collect(),
                resource_tenant,
                resource,
                action,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_decision_agrees_with_the_reference(
        config in model(),
        asks in prop::collection::vec(ask(), 1..24),
    ) {
        let rbac = Rbac::builder().config(&config).unwrap().build().unwrap();
        for ask in &asks {
            let mut identity = Identity::new(ask.subject.as_str(), Method::Jwt)
                .with_roles(ask.roles.iter().map(String::as_str));
            if let Some(t) = ask.id_tenant {
                identity = identity.with_tenant(t);
            }
            let mut resource = Resource::new(ask.resource, "1");
            resource.tenant = ask.resource_tenant;
            let request = AccessRequest::new(&identity, ask.action, resource);
            let decision = futures_now(rbac.authorize(&request)).unwrap();
            let granting = reference(&config, ask);
            prop_assert_eq!(decision.is_allowed(), !granting.is_empty(),
                "{:?} {}:{} in {:?}", decision, ask.resource, ask.action, ask.resource_tenant);
            if decision.is_allowed() {
                // "role r3 > r1 grants a:*": the first role is one that grants,
                // and the pattern matches.
                let reason = decision.reason().strip_prefix("role ").unwrap();
                let (chain, pattern) = reason.split_once(" grants ").unwrap();
                let first = chain.split(" > ").next().unwrap();
                prop_assert!(granting.iter().any(|g| g == first), "{}", reason);
                prop_assert!(matches(pattern, ask.resource, ask.action), "{}", reason);
                let last = chain.split(" > ").last().unwrap();
                prop_assert!(config.roles[last].permissions.iter().any(|p| p == pattern));
            }
            // `check` agrees when the request's tenant is the identity's.
            if ask.resource_tenant.is_none() {
                let checked = rbac.check(&identity, &format!("{}:{}", ask.resource, ask.action));
                prop_assert_eq!(checked.is_allowed(), decision.is_allowed());
            }
        }
    }

    #[test]
    fn a_model_loads_if_and_only_if_its_inheritance_is_acyclic(
        edges in prop::collection::vec((0usize..6, 0usize..6), 0..10),
    ) {
        let mut config = RbacConfig::default();
        for i in 0..6 {
            config.roles.insert(format!("r{i}"), RoleConfig::new().permissions(["a:x"]));
        }
        for (from, to) in &edges {
            config.roles.get_mut(&format!("r{from}")).unwrap().inherits.push(format!("r{to}"));
        }
        // Reference: a role reaches itself.
        fn reaches(edges: &[(usize, usize)], from: usize, to: usize, seen: &mut Vec<usize>) -> bool {
            edges.iter().filter(|(f, _)| *f == from).any(|&(_, t)| {
                t == to || (!seen.contains(&t) && { seen.push(t); reaches(edges, t, to, seen) })
            })
        }
        let cyclic = (0..6).any(|r| reaches(&edges, r, r, &mut Vec::new()));
        let built = Rbac::builder().config(&config);
        prop_assert_eq!(built.is_err(), cyclic);
    }
}
