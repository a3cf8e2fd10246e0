//! `CedarPolicies` through `Authorize` beside raw `cedar_policy`: the same 4
//! policies with an owner check, the same request (anne edits her document).
//!
//! The anchor does what a hand-written integration does per request, as
//! lean as the API allows: entity type names parsed once, the principal
//! (`id`, `roles`) and resource (`owner`) entities built directly, then
//! `Entities::from_entities`, `Request::new` and `Authorizer::is_authorized`.
//! Ours starts from the `Identity` and the resource's JSON attributes.
//!
//! Run: `cargo bench -p ee-auth --bench cedar`.

use std::hint::black_box;
use std::str::FromStr;
use std::task::{Context as TaskContext, Poll, Waker};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use criterion::{Criterion, criterion_group, criterion_main};
use ee_auth::{AccessRequest, Authorize, CedarPolicies, Identity, Method, Resource};
use serde_json::json;

const POLICIES: &str = r#"
@id("owner-edits")
permit(principal, action == Action::"edit", resource is Doc) when { resource.owner == principal };
@id("viewers")
permit(principal, action == Action::"view", resource is Doc) when { principal.roles.contains("viewer") };
@id("admins")
permit(principal, action, resource) when { principal.roles.contains("admin") };
@id("no-archived-edits")
forbid(principal, action == Action::"edit", resource) when { resource has archived && resource.archived };
"#;

struct Raw {
    policies: PolicySet,
    authorizer: Authorizer,
    user: EntityTypeName,
    action: EntityTypeName,
    doc: EntityTypeName,
}

impl Raw {
    fn decide(
        &self,
        principal: &str,
        roles: &[&str],
        action: &str,
        doc: &str,
        owner: &str,
    ) -> bool {
        let p = EntityUid::from_type_name_and_id(self.user.clone(), EntityId::new(principal));
        let a = EntityUid::from_type_name_and_id(self.action.clone(), EntityId::new(action));
        let r = EntityUid::from_type_name_and_id(self.doc.clone(), EntityId::new(doc));
        let owner = EntityUid::from_type_name_and_id(self.user.clone(), EntityId::new(owner));
        let principal_entity = Entity::new_with_tags(
            p.clone(),
            [
                (
                    "id".to_owned(),
                    RestrictedExpression::new_string(principal.to_owned()),
                ),
                (
                    "roles".to_owned(),
                    RestrictedExpression::new_set(
                        roles
                            .iter()
                            .map(|r| RestrictedExpression::new_string((*r).to_owned())),
                    ),
                ),
            ],
            [],
            [],
        )
        .unwrap();
        let resource_entity = Entity::new_with_tags(
            r.clone(),
            [(
                "owner".to_owned(),
                RestrictedExpression::new_entity_uid(owner),
            )],
            [],
            [],
        )
        .unwrap();
        let entities = Entities::from_entities([principal_entity, resource_entity], None).unwrap();
        let request = Request::new(p, a, r, Context::empty(), None).unwrap();
        self.authorizer
            .is_authorized(&request, &self.policies, &entities)
            .decision()
            == cedar_policy::Decision::Allow
    }
}

fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut TaskContext::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("cedar decides at once"),
    }
}

fn cedar(c: &mut Criterion) {
    let raw = Raw {
        policies: PolicySet::from_str(POLICIES).unwrap(),
        authorizer: Authorizer::new(),
        user: EntityTypeName::from_str("User").unwrap(),
        action: EntityTypeName::from_str("Action").unwrap(),
        doc: EntityTypeName::from_str("Doc").unwrap(),
    };
    let ours = CedarPolicies::builder().policies(POLICIES).build().unwrap();
    let anne = Identity::new("anne", Method::Jwt).with_roles(["editor"]);
    let attrs = json!({ "owner": { "__entity": { "type": "User", "id": "anne" } } });
    let ask = || AccessRequest::new(&anne, "edit", Resource::new("Doc", "42").with_attrs(&attrs));
    assert!(raw.decide("anne", &["editor"], "edit", "42", "anne"));
    assert!(!raw.decide("anne", &["editor"], "edit", "42", "bob"));
    assert!(now(ours.authorize(&ask())).unwrap().is_allowed());

    let mut group = c.benchmark_group("cedar_owner_check");
    group.bench_function("raw cedar-policy is_authorized (anchor)", |b| {
        b.iter(|| raw.decide(black_box("anne"), &["editor"], "edit", "42", "anne"))
    });
    group.bench_function("CedarPolicies via Authorize", |b| {
        b.iter(|| now(ours.authorize(black_box(&ask()))).unwrap())
    });
    group.finish();

    let batch = 2_000;
    let turns = ee_testing::take_turns(
        30,
        || {
            ee_testing::ns_per_op(batch, || {
                for _ in 0..batch {
                    black_box(raw.decide(black_box("anne"), &["editor"], "edit", "42", "anne"));
                }
            })
        },
        || {
            ee_testing::ns_per_op(batch, || {
                for _ in 0..batch {
                    let _ = black_box(now(ours.authorize(black_box(&ask()))));
                }
            })
        },
    );
    println!("== cedar, owner check, 4 policies ==");
    turns.print("raw cedar-policy", "CedarPolicies", "ns per decision");
}

criterion_group!(benches, cedar);
criterion_main!(benches);
