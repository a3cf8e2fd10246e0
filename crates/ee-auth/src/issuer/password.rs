//! `Passwords`: Argon2id hashing and verification off the async threads,
//! bounded, with a decoy for unknown users.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ee_core::Secret;
use tokio::sync::Semaphore;

use super::config::PasswordConfig;
use super::random_bytes;
use crate::AuthError;

/// What a successful password check found out about the stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordCheck {
    /// The stored hash was made with another algorithm, version or parameters
    /// than the configured ones: hash the password again and store the new
    /// hash (the password is at hand only now, at login).
    pub needs_rehash: bool,
}

/// Argon2id password hashing (PHC strings), run on tokio's blocking pool.
///
/// Each hash costs `m_cost_kib` of memory and tens of milliseconds of CPU, so
/// at most `max_concurrent_hashes` run at once (default: one per core); the
/// rest wait their turn, and a login flood holds neither every blocking thread
/// nor unbounded memory. Passwords longer than `max_password_bytes` are
/// refused before any work.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ee_auth::AuthError> {
/// use ee_auth::{PasswordConfig, Passwords};
/// use ee_core::Secret;
///
/// let mut cfg = PasswordConfig::default();
/// cfg.m_cost_kib = 64; // fast for the example; keep the default in production
/// let passwords = Passwords::new().config(&cfg)?;
/// let phc = passwords.hash(&Secret::new("correct horse".to_owned())).await?;
/// let check = passwords.verify(&Secret::new("correct horse".to_owned()), &phc).await?;
/// assert!(!check.needs_rehash);
/// assert!(passwords.verify(&Secret::new("wrong".to_owned()), &phc).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    max_len: usize,
    permits: Semaphore,
    /// A PHC string with the configured parameters that no password matches:
    /// verifying against it costs what a real verification costs.
    decoy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("m_cost_kib", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .field("max_password_bytes", &self.inner.max_len)
            .finish_non_exhaustive()
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    /// Argon2id with the default [`PasswordConfig`] (OWASP: 19 MiB, t=2, p=1).
    pub fn new() -> Self {
        Self::build(&PasswordConfig::default()).expect("the default parameters are valid")
    }

    /// Applies `cfg` (parameters, concurrency, length bound), validating it.
    pub fn config(self, cfg: &PasswordConfig) -> Result<Self, AuthError> {
        Self::build(cfg)
    }

    fn build(cfg: &PasswordConfig) -> Result<Self, AuthError> {
        let params = Params::new(cfg.m_cost_kib, cfg.t_cost, cfg.p_cost, None)
            .map_err(|e| AuthError::Config(format!("password: invalid Argon2 parameters: {e}")))?;
        if cfg.max_password_bytes == 0 {
            return Err(AuthError::Config(
                "password: `max_password_bytes` must be at least 1".into(),
            ));
        }
        let permits = match cfg.max_concurrent_hashes {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let decoy = format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            STANDARD_NO_PAD.encode(random_bytes::<16>()),
            STANDARD_NO_PAD.encode(random_bytes::<32>()),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                max_len: cfg.max_password_bytes,
                permits: Semaphore::new(permits),
                decoy,
            }),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            self.inner.params.clone(),
        )
    }

    /// Runs `work` on the blocking pool once a hashing slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let inner = self.inner.clone();
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| AuthError::unavailable("password hashing", e))?;
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| AuthError::unavailable("password hashing", e))
    }

    /// Hashes `password` with a fresh random salt: a PHC string
    /// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) to store.
    ///
    /// A password longer than `max_password_bytes` is refused with
    /// [`AuthError::InvalidRequest`], before any hashing.
    pub async fn hash(&self, password: &Secret<String>) -> Result<String, AuthError> {
        if password.expose().len() > self.inner.max_len {
            return Err(AuthError::InvalidRequest(
                format!("the password is longer than {} bytes", self.inner.max_len).into(),
            ));
        }
        let password = password.clone();
        let argon2 = self.argon2();
        self.run(move |_| {
            let salt = SaltString::encode_b64(&random_bytes::<16>())
                .map_err(|e| AuthError::Config(format!("password: salt: {e}")))?;
            argon2
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| AuthError::Config(format!("password: hashing failed: {e}")))
        })
        .await?
    }

    /// Checks `password` against the stored PHC string `phc`.
    ///
    /// `Ok` carries whether the hash should be replaced (other algorithm,
    /// version or parameters than configured); a wrong password is
    /// [`AuthError::InvalidCredentials`], as is a password over the length
    /// bound (no stored hash can match it). A stored value that is not an
    /// Argon2 PHC string is [`AuthError::Config`].
    pub async fn verify(
        &self,
        password: &Secret<String>,
        phc: &str,
    ) -> Result<PasswordCheck, AuthError> {
        if password.expose().len() > self.inner.max_len {
            return Err(AuthError::InvalidCredentials);
        }
        let needs_rehash = {
            let parsed = parse(phc)?;
            self.needs_rehash(&parsed)
        };
        let password = password.clone();
        let phc = phc.to_owned();
        let matched = self
            .run(move |_| {
                let parsed = parse(&phc)?;
                // The hash's own algorithm, version and parameters are used;
                // the comparison is constant-time.
                Ok::<_, AuthError>(
                    Argon2::default()
                        .verify_password(password.expose().as_bytes(), &parsed)
                        .is_ok(),
                )
            })
            .await??;
        if matched {
            Ok(PasswordCheck { needs_rehash })
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }

    /// Spends the work of one [`verify`](Self::verify) with the configured
    /// parameters, and fails: call it when the user does not exist, so the
    /// answer takes as long as for a wrong password and does not reveal
    /// which it was. Always [`AuthError::InvalidCredentials`] (or
    /// [`AuthError::Unavailable`] if the hashing pool is gone).
    pub async fn verify_unknown_user(&self, password: &Secret<String>) -> AuthError {
        let decoy = self.inner.decoy.clone();
        match self.verify(password, &decoy).await {
            Err(e) => e,
            // A random 256-bit output: no password matches it.
            Ok(_) => AuthError::InvalidCredentials,
        }
    }

    /// Whether a stored hash differs from what [`hash`](Self::hash) makes now.
    fn needs_rehash(&self, hash: &PasswordHash<'_>) -> bool {
        let wanted = &self.inner.params;
        let same = hash.algorithm == Algorithm::Argon2id.ident()
            && hash.version == Some(Version::V0x13.into())
            && Params::try_from(hash).is_ok_and(|p| {
                p.m_cost() == wanted.m_cost()
                    && p.t_cost() == wanted.t_cost()
                    && p.p_cost() == wanted.p_cost()
            });
        !same
    }
}

fn parse(phc: &str) -> Result<PasswordHash<'_>, AuthError> {
    let hash = PasswordHash::new(phc).map_err(|_| {
        AuthError::Config("password: the stored hash is not a PHC string".to_owned())
    })?;
    if Algorithm::try_from(hash.algorithm).is_err() {
        return Err(AuthError::Config(
            "password: the stored hash is not an Argon2 hash".to_owned(),
        ));
    }
    Ok(hash)
}
