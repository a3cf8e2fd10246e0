//! The compiled RBAC model: each role's effective permissions (inheritance
//! flattened) in hash maps, so a check is a few lookups per role of the
//! subject, never a scan of the policies.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use super::config::RbacConfig;
use crate::AuthError;

/// What granted a permission: the role chain (`admin > editor`) and the
/// permission as written (`orders:*`).
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) chain: Arc<str>,
    pub(crate) pattern: Arc<str>,
}

#[derive(Debug, Default)]
struct ResourceGrants {
    /// `resource:*`.
    any_action: Option<Grant>,
    /// `resource:action`.
    actions: HashMap<Box<str>, Grant>,
}

/// One role's effective permissions, its own and every inherited one.
#[derive(Debug, Default)]
struct RoleGrants {
    /// `*`.
    all: Option<Grant>,
    by_resource: HashMap<Box<str>, ResourceGrants>,
    /// `*:action`.
    by_action: HashMap<Box<str>, Grant>,
}

impl RoleGrants {
    /// Keeps the first grant of a pattern: roles are visited nearest first,
    /// so the reason names the shortest chain.
    fn add(&mut self, resource: &str, action: &str, grant: &Grant) {
        let slot = match (resource, action) {
            ("*", "*") => &mut self.all,
            ("*", action) => {
                self.by_action
                    .entry(action.into())
                    .or_insert_with(|| grant.clone());
                return;
            }
            (resource, "*") => {
                &mut self
                    .by_resource
                    .entry(resource.into())
                    .or_default()
                    .any_action
            }
            (resource, action) => {
                self.by_resource
                    .entry(resource.into())
                    .or_default()
                    .actions
                    .entry(action.into())
                    .or_insert_with(|| grant.clone());
                return;
            }
        };
        if slot.is_none() {
            *slot = Some(grant.clone());
        }
    }

    #[inline]
    fn find(&self, resource: &str, action: &str) -> Option<&Grant> {
        if let Some(r) = self.by_resource.get(resource) {
            if let Some(g) = r.actions.get(action) {
                return Some(g);
            }
            if let Some(g) = &r.any_action {
                return Some(g);
            }
        }
        if let Some(g) = self.by_action.get(action) {
            return Some(g);
        }
        self.all.as_ref()
    }
}

/// A subject's assigned roles (indices into `Compiled::roles`).
#[derive(Debug, Default)]
struct Assigned {
    every_tenant: Vec<u32>,
    by_tenant: HashMap<Box<str>, Vec<u32>>,
}

/// A model ready to answer checks.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    index: HashMap<Box<str>, u32>,
    roles: Vec<RoleGrants>,
    assignments: HashMap<Box<str>, Assigned>,
}

/// Splits a permission into resource and action: `*` is `*:*`; each side is
/// non-empty and either `*` or free of `*`.
pub(crate) fn split_permission(permission: &str) -> Option<(&str, &str)> {
    if permission == "*" {
        return Some(("*", "*"));
    }
    let (resource, action) = permission.split_once(':')?;
    let side_ok = |s: &str| !s.is_empty() && (s == "*" || !s.contains('*'));
    (side_ok(resource) && side_ok(action)).then_some((resource, action))
}

impl Compiled {
    /// Compiles `config`: checks names, permissions and references, refuses
    /// inheritance cycles, and flattens each role's permissions.
    pub(crate) fn compile(config: &RbacConfig) -> Result<Self, AuthError> {
        let names: Vec<&str> = config.roles.keys().map(String::as_str).collect();
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(AuthError::Config("rbac: a role has an empty name".into()));
            }
            index.insert(Box::<str>::from(*name), i as u32);
        }
        // Parents as indices, and each role's own permissions checked.
        let mut parents: Vec<Vec<u32>> = Vec::with_capacity(names.len());
        for (name, role) in &config.roles {
            let mut p = Vec::with_capacity(role.inherits.len());
            for parent in &role.inherits {
                p.push(*index.get(parent.as_str()).ok_or_else(|| {
                    AuthError::Config(format!(
                        "rbac: role `{name}` inherits unknown role `{parent}`"
                    ))
                })?);
            }
            parents.push(p);
            for perm in &role.permissions {
                if split_permission(perm).is_none() {
                    return Err(AuthError::Config(format!(
                        "rbac: role `{name}` has invalid permission `{perm}` \
                         (expected `resource:action`, either side `*`, or `*`)"
                    )));
                }
            }
        }
        reject_cycles(&names, &parents)?;
        let own: Vec<&[String]> = config
            .roles
            .values()
            .map(|r| r.permissions.as_slice())
            .collect();
        let roles = (0..names.len())
            .map(|r| flatten(&own, &names, &parents, r))
            .collect();
        let mut assignments: HashMap<Box<str>, Assigned> = HashMap::new();
        for a in &config.assignments {
            if a.subject.is_empty() {
                return Err(AuthError::Config(
                    "rbac: an assignment has an empty subject".into(),
                ));
            }
            let mut ids = Vec::with_capacity(a.roles.len());
            for role in &a.roles {
                ids.push(*index.get(role.as_str()).ok_or_else(|| {
                    AuthError::Config(format!(
                        "rbac: the assignment of `{}` names unknown role `{role}`",
                        a.subject
                    ))
                })?);
            }
            let entry = assignments.entry(a.subject.as_str().into()).or_default();
            let list = match &a.tenant {
                Some(t) => entry.by_tenant.entry(t.as_str().into()).or_default(),
                None => &mut entry.every_tenant,
            };
            list.extend(ids);
            list.sort_unstable();
            list.dedup();
        }
        Ok(Compiled {
            index,
            roles,
            assignments,
        })
    }

    /// The grant of the first of the subject's roles that allows
    /// `resource:action`: the credentials' roles (`identity_roles`, names,
    /// unknown ones ignored), then the roles assigned to `subject` in every
    /// tenant and in `tenant`.
    #[inline]
    pub(crate) fn find<'a, 'r>(
        &self,
        identity_roles: impl Iterator<Item = &'r str>,
        subject: &str,
        tenant: Option<&str>,
        resource: &str,
        action: &str,
    ) -> Option<&Grant> {
        for name in identity_roles {
            if let Some(&r) = self.index.get(name)
                && let Some(g) = self.roles[r as usize].find(resource, action)
            {
                return Some(g);
            }
        }
        if self.assignments.is_empty() {
            return None;
        }
        let assigned = self.assignments.get(subject)?;
        let tenant_roles = tenant
            .and_then(|t| assigned.by_tenant.get(t))
            .map_or(&[][..], Vec::as_slice);
        assigned
            .every_tenant
            .iter()
            .chain(tenant_roles)
            .find_map(|&r| self.roles[r as usize].find(resource, action))
    }
}

/// Refuses a cycle in the inheritance graph, naming it (`a > b > a`).
fn reject_cycles(names: &[&str], parents: &[Vec<u32>]) -> Result<(), AuthError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; names.len()];
    for start in 0..names.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next parent to visit); the stack is the path.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&p) = parents[node].get(*next) {
                *next += 1;
                let p = p as usize;
                match mark[p] {
                    Mark::New => {
                        mark[p] = Mark::Open;
                        stack.push((p, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|&(n, _)| n == p).unwrap_or(0);
                        let mut path: Vec<&str> =
                            stack[from..].iter().map(|&(n, _)| names[n]).collect();
                        path.push(names[p]);
                        return Err(AuthError::Config(format!(
                            "rbac: roles inherit in a cycle: {}",
                            path.join(" > ")
                        )));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// Role `r`'s effective permissions: its own, then its parents' breadth
/// first, each grant naming the shortest chain that reaches it.
fn flatten(own: &[&[String]], names: &[&str], parents: &[Vec<u32>], r: usize) -> RoleGrants {
    let mut grants = RoleGrants::default();
    let mut chain_of: Vec<Option<Arc<str>>> = vec![None; names.len()];
    chain_of[r] = Some(names[r].into());
    let mut queue = VecDeque::from([r]);
    while let Some(n) = queue.pop_front() {
        let chain = chain_of[n].clone().unwrap_or_else(|| names[n].into());
        for perm in own[n] {
            if let Some((resource, action)) = split_permission(perm) {
                let grant = Grant {
                    chain: chain.clone(),
                    pattern: perm.as_str().into(),
                };
                grants.add(resource, action, &grant);
            }
        }
        for &p in &parents[n] {
            let p = p as usize;
            if chain_of[p].is_none() {
                chain_of[p] = Some(format!("{chain} > {}", names[p]).into());
                queue.push_back(p);
            }
        }
    }
    grants
}
