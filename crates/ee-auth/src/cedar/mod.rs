//! Attribute-based access control on AWS Cedar (`cedar-policy`).
//!
//! Policies are parsed (and, with a schema, validated) once, when loaded; a
//! request becomes Cedar entities built directly (no JSON round trip):
//!
//! | Cedar | from |
//! |---|---|
//! | `principal` | `User::"<identity id>"` (type: [`CedarConfig::principal_type`]) with attributes `id` (string), `roles` (set of strings), `tenant` (if any) and the configured claims; with [`CedarConfig::role_type`] each role is also a parent (`principal in Role::"admin"`) |
//! | `action` | `Action::"<action>"` (with a schema: its action groups, so `action in Action::"writes"` works) |
//! | `resource` | `<kind>::"<id>"` with [`Resource::attrs`] (a JSON object) as attributes, and `tenant` if [`Resource::tenant`] is set |
//! | `context` | [`AccessRequest::context`] (a JSON object) |
//!
//! JSON values map to Cedar values: strings, booleans, integers, numbers with
//! a fraction as `decimal`, arrays as sets, objects as records, `null` as
//! absent; Cedar's escapes `{"__entity": {"type": "User", "id": "anne"}}` and
//! `{"__extn": {"fn": "ip", "arg": "10.1.2.3"}}` (`ip`, `decimal`,
//! `datetime`, `duration`) give entity references and extension values.
//!
//! Policies are named by their `@id("…")` annotation (else `policy0`,
//! `policy1`… in order), and a decision's reason names the policies that
//! determined it.

mod config;
mod convert;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use foldhash::{HashMap, HashMapExt};
use serde_json::Value;

pub use config::CedarConfig;
use convert::{TypeNames, parse_type};

use crate::authz::record;
use crate::metrics::DecisionMetrics;
use crate::{AccessRequest, AuthError, Authorize, Decision, Identity};

/// Cedar policies answering [`Authorize`].
///
/// ```
/// use ee_auth::{AccessRequest, Authorize, CedarPolicies, Identity, Method, Resource};
///
/// let cedar = CedarPolicies::builder()
///     .policies(r#"
///         @id("owner-edits")
///         permit(principal, action == Action::"edit", resource is Doc)
///         when { resource.owner == principal.id };
///     "#)
///     .build()?;
/// let anne = Identity::new("anne", Method::Jwt);
/// let attrs = serde_json::json!({ "owner": "anne" });
/// let doc = Resource::new("Doc", "7").with_attrs(&attrs);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let decision = cedar.authorize(&AccessRequest::new(&anne, "edit", doc)).await?;
/// assert_eq!(decision.reason(), "policy owner-edits");
/// # Ok::<(), ee_auth::AuthError>(()) })?;
/// # Ok::<(), ee_auth::AuthError>(())
/// ```
pub struct CedarPolicies {
    policies: PolicySet,
    authorizer: Authorizer,
    principal_type: EntityTypeName,
    action_type: EntityTypeName,
    role_type: Option<EntityTypeName>,
    claims: Box<[String]>,
    /// With a schema: each action's entity, its groups as parents.
    actions: HashMap<String, Entity>,
    types: TypeNames,
    metrics: DecisionMetrics,
}

impl fmt::Debug for CedarPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPolicies")
            .field("policies", &self.policies.policies().count())
            .field("principal_type", &self.principal_type.to_string())
            .finish_non_exhaustive()
    }
}

/// Builds [`CedarPolicies`] from code or a [`CedarConfig`].
#[derive(Debug, Clone, Default)]
pub struct CedarBuilder {
    config: CedarConfig,
}

fn read_file(path: &Path, what: &str) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|e| {
        AuthError::Config(format!("cedar: cannot read {what} {}: {e}", path.display()))
    })
}

impl CedarBuilder {
    /// The policies, as Cedar text.
    pub fn policies(mut self, text: impl Into<String>) -> Self {
        self.config.policies = Some(text.into());
        self
    }

    /// A schema (Cedar schema syntax, or Cedar's JSON schema if it starts
    /// with `{`): policies are validated against it when built.
    pub fn schema(mut self, text: impl Into<String>) -> Self {
        self.config.schema = Some(text.into());
        self
    }

    /// The principal's entity type (default `User`).
    pub fn principal_type(mut self, name: impl Into<String>) -> Self {
        self.config.principal_type = name.into();
        self
    }

    /// The entity type of roles made parents of the principal (default: none).
    pub fn role_type(mut self, name: impl Into<String>) -> Self {
        self.config.role_type = Some(name.into());
        self
    }

    /// Claims copied to principal attributes.
    pub fn claims<I, S>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// Applies `config` (reading its files now).
    pub fn config(mut self, config: &CedarConfig) -> Result<Self, AuthError> {
        let mut config = config.clone();
        if let Some(path) = config.policies_file.take() {
            if config.policies.is_some() {
                return Err(AuthError::Config(
                    "cedar: set `policies` or `policies_file`, not both".into(),
                ));
            }
            config.policies = Some(read_file(&path, "policies file")?);
        }
        if let Some(path) = config.schema_file.take() {
            if config.schema.is_some() {
                return Err(AuthError::Config(
                    "cedar: set `schema` or `schema_file`, not both".into(),
                ));
            }
            config.schema = Some(read_file(&path, "schema file")?);
        }
        self.config = config;
        Ok(self)
    }

    /// Parses the policies (and schema, validating the policies against
    /// it); registers the decision counters (model `abac`).
    ///
    /// Fails with [`AuthError::Config`] on no policies, a syntax error, a
    /// template (templates need links, not supported), an `@id` used twice,
    /// a bad type name, or validation errors (all of them listed).
    pub fn build(self) -> Result<CedarPolicies, AuthError> {
        let c = self.config;
        let text = c.policies.as_deref().ok_or_else(|| {
            AuthError::Config("cedar: no policies (`policies` or `policies_file`)".into())
        })?;
        let policies = parse_policies(text)?;
        let schema = c.schema.as_deref().map(parse_schema).transpose()?;
        let types = TypeNames::default();
        let mut actions = HashMap::new();
        if let Some(schema) = &schema {
            validate(schema, &policies)?;
            for t in schema.entity_types() {
                types.insert(t.clone());
            }
            let entities = schema
                .action_entities()
                .map_err(|e| AuthError::Config(format!("cedar: schema actions: {e}")))?;
            for entity in entities.iter() {
                // `into_inner` gives every ancestor as a parent, so the one
                // action entity answers `action in <group>` on its own.
                let (uid, attrs, parents) = entity.clone().into_inner();
                let id = uid.id().unescaped().to_owned();
                let entity = Entity::new(uid, attrs, parents)
                    .map_err(|e| AuthError::Config(format!("cedar: schema action: {e}")))?;
                actions.insert(id, entity);
            }
        }
        let principal_type = parse_type(&c.principal_type)?;
        let action_type = parse_type(&c.action_type)?;
        let role_type = c.role_type.as_deref().map(parse_type).transpose()?;
        for reserved in ["id", "roles", "tenant"] {
            if c.claims.iter().any(|claim| claim == reserved) {
                return Err(AuthError::Config(format!(
                    "cedar: claim `{reserved}` collides with the principal attribute of that name"
                )));
            }
        }
        types.insert(principal_type.clone());
        Ok(CedarPolicies {
            policies,
            authorizer: Authorizer::new(),
            principal_type,
            action_type,
            role_type,
            claims: c.claims.into_boxed_slice(),
            actions,
            types,
            metrics: DecisionMetrics::new("abac"),
        })
    }
}

/// Parses `text`, naming each policy by its `@id` annotation.
fn parse_policies(text: &str) -> Result<PolicySet, AuthError> {
    let parsed = PolicySet::from_str(text)
        .map_err(|e| AuthError::Config(format!("cedar: policies do not parse: {e}")))?;
    if parsed.num_of_templates() > 0 {
        return Err(AuthError::Config(
            "cedar: policy templates are not supported (they need links)".into(),
        ));
    }
    let mut named = PolicySet::new();
    for policy in parsed.policies() {
        let policy = match policy.annotation("id") {
            Some(id) => policy.new_id(PolicyId::new(id)),
            None => policy.clone(),
        };
        let id = policy.id().to_string();
        named
            .add(policy)
            .map_err(|e| AuthError::Config(format!("cedar: policy `{id}`: {e}")))?;
    }
    Ok(named)
}

fn parse_schema(text: &str) -> Result<Schema, AuthError> {
    let schema = if text.trim_start().starts_with('{') {
        Schema::from_json_str(text).map_err(|e| e.to_string())
    } else {
        Schema::from_cedarschema_str(text)
            .map(|(schema, _warnings)| schema)
            .map_err(|e| e.to_string())
    };
    schema.map_err(|e| AuthError::Config(format!("cedar: schema: {e}")))
}

fn validate(schema: &Schema, policies: &PolicySet) -> Result<(), AuthError> {
    let result = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
    if result.validation_passed() {
        return Ok(());
    }
    let errors: Vec<String> = result
        .validation_errors()
        .map(|e| format!("policy `{}`: {e}", e.policy_id()))
        .collect();
    Err(AuthError::Config(format!(
        "cedar: policies do not validate against the schema: {}",
        errors.join("; ")
    )))
}

impl CedarPolicies {
    /// A builder (policies required).
    pub fn builder() -> CedarBuilder {
        CedarBuilder::default()
    }

    /// The principal entity: `id`, `roles`, `tenant`, the configured claims.
    fn principal(&self, uid: EntityUid, identity: &Identity) -> Result<Entity, AuthError> {
        let mut attrs = Vec::with_capacity(3 + self.claims.len());
        attrs.push((
            "id".to_owned(),
            RestrictedExpression::new_string(identity.id().to_owned()),
        ));
        attrs.push((
            "roles".to_owned(),
            RestrictedExpression::new_set(
                identity
                    .roles()
                    .map(|r| RestrictedExpression::new_string(r.to_owned())),
            ),
        ));
        if let Some(t) = identity.tenant() {
            attrs.push((
                "tenant".to_owned(),
                RestrictedExpression::new_string(t.to_owned()),
            ));
        }
        for claim in &*self.claims {
            if let Some(v) = identity.claims().get(claim)
                && let Some(e) = convert::value(&self.types, v)?
            {
                attrs.push((claim.clone(), e));
            }
        }
        let parents: Vec<EntityUid> = match &self.role_type {
            Some(t) => identity
                .roles()
                .map(|r| EntityUid::from_type_name_and_id(t.clone(), EntityId::new(r)))
                .collect(),
            None => Vec::new(),
        };
        Entity::new_with_tags(uid, attrs, parents, [])
            .map_err(|e| AuthError::Config(format!("cedar: principal attributes: {e}")))
    }

    /// Builds the request's entities and asks Cedar.
    fn decide(&self, request: &AccessRequest<'_>) -> Result<Decision, AuthError> {
        let resource = &request.resource;
        let principal_uid = EntityUid::from_type_name_and_id(
            self.principal_type.clone(),
            EntityId::new(request.subject.id()),
        );
        let action_uid = EntityUid::from_type_name_and_id(
            self.action_type.clone(),
            EntityId::new(request.action),
        );
        let resource_uid = EntityUid::from_type_name_and_id(
            self.types.get(resource.kind)?,
            EntityId::new(resource.id),
        );
        let mut entities = Vec::with_capacity(3);
        entities.push(self.principal(principal_uid.clone(), request.subject)?);
        if resource_uid != principal_uid {
            let mut attrs = Vec::new();
            match resource.attrs {
                Some(Value::Object(map)) => convert::attrs(&self.types, map, &mut attrs)?,
                Some(_) => {
                    return Err(AuthError::Config(
                        "cedar: resource attributes must be a JSON object".into(),
                    ));
                }
                None => {}
            }
            if let Some(t) = resource.tenant {
                attrs.push((
                    "tenant".to_owned(),
                    RestrictedExpression::new_string(t.to_owned()),
                ));
            }
            let entity = Entity::new_with_tags(resource_uid.clone(), attrs, [], [])
                .map_err(|e| AuthError::Config(format!("cedar: resource attributes: {e}")))?;
            entities.push(entity);
        }
        if let Some(action) = self.actions.get(request.action) {
            entities.push(action.clone());
        }
        let context = match request.context {
            None => Context::empty(),
            Some(Value::Object(map)) => {
                let mut pairs = Vec::with_capacity(map.len());
                convert::attrs(&self.types, map, &mut pairs)?;
                Context::from_pairs(pairs)
                    .map_err(|e| AuthError::Config(format!("cedar: context: {e}")))?
            }
            Some(_) => {
                return Err(AuthError::Config(
                    "cedar: the context must be a JSON object".into(),
                ));
            }
        };
        let entities = Entities::from_entities(entities, None)
            .map_err(|e| AuthError::Config(format!("cedar: entities: {e}")))?;
        let cedar_request = Request::new(principal_uid, action_uid, resource_uid, context, None)
            .map_err(|e| AuthError::Config(format!("cedar: request: {e}")))?;
        let response = self
            .authorizer
            .is_authorized(&cedar_request, &self.policies, &entities);
        Ok(decision(&response, request))
    }
}

/// The decision with its reason: the policies that determined it, and any
/// that failed to evaluate (they count as not applying).
fn decision(response: &cedar_policy::Response, request: &AccessRequest<'_>) -> Decision {
    let diagnostics = response.diagnostics();
    let mut ids = diagnostics.reason().map(PolicyId::to_string);
    let mut reason = String::new();
    if let Some(first) = ids.next() {
        reason.push_str(match response.decision() {
            cedar_policy::Decision::Allow => "policy ",
            cedar_policy::Decision::Deny => "forbidden by policy ",
        });
        reason.push_str(&first);
        for id in ids {
            reason.push_str(", ");
            reason.push_str(&id);
        }
    } else {
        reason = format!(
            "no policy permits {} on {}",
            request.action, request.resource
        );
    }
    let mut errors = diagnostics.errors().peekable();
    if errors.peek().is_some() {
        let failed: Vec<String> = errors.map(ToString::to_string).collect();
        reason.push_str(&format!(
            " (policies that failed to evaluate: {})",
            failed.join("; ")
        ));
    }
    match response.decision() {
        cedar_policy::Decision::Allow => Decision::Allow(Cow::Owned(reason)),
        cedar_policy::Decision::Deny => Decision::Deny(Cow::Owned(reason)),
    }
}

impl Authorize for CedarPolicies {
    fn authorize(
        &self,
        request: &AccessRequest<'_>,
    ) -> impl Future<Output = Result<Decision, AuthError>> + Send {
        let result = self.decide(request);
        record(&self.metrics, request, &result);
        std::future::ready(result)
    }
}
