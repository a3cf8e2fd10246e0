//! The serde form of a Cedar set-up.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Cedar policies, an optional schema, and how a request becomes Cedar
/// entities.
///
/// ```toml
/// policies_file = "policies.cedar"
/// schema_file = "schema.cedarschema"   # policies are validated against it at load
/// principal_type = "User"
/// role_type = "Role"                    # roles also become parents: `principal in Role::"admin"`
/// claims = ["email", "department"]      # copied to principal attributes
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CedarConfig {
    /// The policies, as Cedar text (use this or `policies_file`).
    pub policies: Option<String>,
    /// A file of Cedar policies.
    pub policies_file: Option<PathBuf>,
    /// A schema, in the Cedar schema syntax or as Cedar's JSON schema (text
    /// starting with `{`). With a schema, policies are validated (strict
    /// mode) when loaded.
    pub schema: Option<String>,
    /// A schema file (Cedar syntax, or JSON if it ends in `.json`).
    pub schema_file: Option<PathBuf>,
    /// The principal's entity type (default `User`): the principal is
    /// `User::"<identity id>"`.
    pub principal_type: String,
    /// The actions' entity type (default `Action`; `MyApp::Action` in a namespace).
    pub action_type: String,
    /// If set, each of the identity's roles also becomes a parent entity of
    /// this type, so policies can say `principal in Role::"admin"`.
    pub role_type: Option<String>,
    /// Claims copied from the identity to principal attributes of the same
    /// name (absent or null claims are left out).
    pub claims: Vec<String>,
}

impl Default for CedarConfig {
    fn default() -> Self {
        CedarConfig {
            policies: None,
            policies_file: None,
            schema: None,
            schema_file: None,
            principal_type: "User".into(),
            action_type: "Action".into(),
            role_type: None,
            claims: Vec::new(),
        }
    }
}
