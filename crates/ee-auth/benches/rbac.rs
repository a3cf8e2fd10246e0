//! `Rbac::check` beside casbin-rs `enforce`, on the same model and
//! assignments: RBAC with role inheritance, 1 000 policies (50 roles × 20
//! permissions) and 1 050 users (1 000 with one role each, 50 whose role
//! inherits one of the 50). Three cases: allow, deny, inherited role.
//!
//! Both sides hold the users' roles in the model (casbin `g` rules; our
//! assignments), so the identity carries no roles.
//!
//! Run: `cargo bench -p ee-auth --bench rbac`.

use std::hint::black_box;

use casbin::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_auth::{AssignmentConfig, Identity, Method, Rbac, RbacConfig, RoleConfig};

const ROLES: usize = 50;
const PERMISSIONS: usize = 20;
const USERS: usize = 1000;

const MODEL: &str = r#"
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"#;

fn casbin_enforcer(rt: &tokio::runtime::Runtime) -> Enforcer {
    rt.block_on(async {
        let model = DefaultModel::from_str(MODEL).await.unwrap();
        let mut e = Enforcer::new(model, MemoryAdapter::default())
            .await
            .unwrap();
        let policies = (0..ROLES)
            .flat_map(|r| {
                (0..PERMISSIONS)
                    .map(move |p| vec![format!("role{r}"), format!("res{r}"), format!("act{p}")])
            })
            .collect();
        e.add_policies(policies).await.unwrap();
        let mut groups: Vec<Vec<String>> = (0..USERS)
            .map(|u| vec![format!("user{u}"), format!("role{}", u % ROLES)])
            .collect();
        for r in 0..ROLES {
            groups.push(vec![format!("heir{r}"), format!("lead{r}")]);
            groups.push(vec![format!("lead{r}"), format!("role{r}")]);
        }
        e.add_grouping_policies(groups).await.unwrap();
        e
    })
}

fn ours() -> Rbac {
    let mut config = RbacConfig::default();
    for r in 0..ROLES {
        config.roles.insert(
            format!("role{r}"),
            RoleConfig::new().permissions((0..PERMISSIONS).map(|p| format!("res{r}:act{p}"))),
        );
        config.roles.insert(
            format!("lead{r}"),
            RoleConfig::new().inherits([format!("role{r}")]),
        );
        config.assignments.push(AssignmentConfig::new(
            format!("heir{r}"),
            [format!("lead{r}")],
        ));
    }
    for u in 0..USERS {
        config.assignments.push(AssignmentConfig::new(
            format!("user{u}"),
            [format!("role{}", u % ROLES)],
        ));
    }
    Rbac::builder().config(&config).unwrap().build().unwrap()
}

/// (case, subject, object, action, allowed)
const CASES: [(&str, &str, &str, &str, bool); 3] = [
    ("allow", "user7", "res7", "act3", true),
    ("deny", "user7", "res8", "act3", false),
    ("inherited role", "heir7", "res7", "act3", true),
];

fn rbac(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let enforcer = casbin_enforcer(&rt);
    let rbac = ours();
    for (case, sub, obj, act, allowed) in CASES {
        let identity = Identity::new(sub, Method::Jwt);
        let permission = format!("{obj}:{act}");
        assert_eq!(
            enforcer.enforce((sub, obj, act)).unwrap(),
            allowed,
            "{case}"
        );
        assert_eq!(
            rbac.check(&identity, &permission).is_allowed(),
            allowed,
            "{case}"
        );
        let mut group = c.benchmark_group(format!("rbac_{}", case.replace(' ', "_")));
        group.bench_function("casbin enforce (anchor)", |b| {
            b.iter(|| enforcer.enforce(black_box((sub, obj, act))).unwrap())
        });
        group.bench_function("Rbac::check", |b| {
            b.iter(|| rbac.check(black_box(&identity), black_box(&permission)))
        });
        group.finish();
        // The ratio, from rounds taken in turns.
        let turns = ee_testing::take_turns(
            15,
            || {
                ee_testing::ns_per_op(20, || {
                    for _ in 0..20 {
                        black_box(enforcer.enforce(black_box((sub, obj, act))).unwrap());
                    }
                })
            },
            || {
                ee_testing::ns_per_op(20_000, || {
                    for _ in 0..20_000 {
                        let _ = black_box(rbac.check(black_box(&identity), black_box(&permission)));
                    }
                })
            },
        );
        println!("== rbac, {case} ==");
        turns.print("casbin enforce", "Rbac::check", "ns per check");
        println!(
            "speed-up (casbin / ours): {:.0}x",
            1.0 / turns.median_ratio()
        );
    }
}

criterion_group!(benches, rbac);
criterion_main!(benches);
