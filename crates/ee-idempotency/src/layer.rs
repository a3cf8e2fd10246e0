//! `IdempotencyLayer`: the store, the configuration and the builder methods.

use std::fmt;
use std::sync::Arc;

use ee_core::{KeyExtractor, OnBackendError};
use http::{Method, StatusCode};
use tower::Layer;

use crate::config::IdempotencyConfig;
use crate::error::IdempotencyError;
use crate::memory::MemoryStore;
use crate::metrics::Metrics;
use crate::service::Idempotency;
use crate::store::IdempotencyStore;

type StatusFn = dyn Fn(StatusCode) -> bool + Send + Sync;

/// What every clone of a layer and its services share.
pub(crate) struct Shared<St> {
    pub(crate) store: St,
    /// Records kept in this process while the store fails, with
    /// [`OnBackendError::FallbackToMemory`].
    pub(crate) fallback: Option<MemoryStore>,
    pub(crate) config: IdempotencyConfig,
    pub(crate) methods: Vec<Method>,
    pub(crate) scope: Option<Arc<dyn KeyExtractor>>,
    pub(crate) store_when: Option<Arc<StatusFn>>,
    pub(crate) metrics: Metrics,
}

/// Makes unsafe requests with an `Idempotency-Key` run at most once; see the
/// [crate docs](crate).
///
/// Metric handles are registered when the layer is made: install your
/// metrics recorder first.
pub struct IdempotencyLayer<St> {
    shared: Arc<Shared<St>>,
}

impl<St> Clone for IdempotencyLayer<St> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<St> fmt::Debug for IdempotencyLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// The methods of `config`, parsed; an error names the first that does not parse.
fn parse_methods(config: &IdempotencyConfig) -> Result<Vec<Method>, IdempotencyError> {
    config
        .methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                IdempotencyError::Config(format!("`methods`: `{m}` is not an HTTP method"))
            })
        })
        .collect()
}

/// Checks `config` and parses its methods.
fn check(config: &IdempotencyConfig) -> Result<Vec<Method>, IdempotencyError> {
    for (field, value) in [("ttl_ms", config.ttl_ms), ("lease_ms", config.lease_ms)] {
        if value == 0 {
            return Err(IdempotencyError::Config(format!(
                "`{field}` must be greater than 0"
            )));
        }
    }
    parse_methods(config)
}

/// The in-process store a layer falls back to, if its config says so.
fn fallback_for(config: &IdempotencyConfig) -> Option<MemoryStore> {
    (config.on_backend_error == OnBackendError::FallbackToMemory).then(MemoryStore::new)
}

impl<St: IdempotencyStore> IdempotencyLayer<St> {
    /// A layer on `store` ([`MemoryStore`], `RedisStore` with feature
    /// `redis`, or [`AnyStore`](crate::AnyStore), either one picked at run
    /// time) with the default configuration. Describes the crate's metrics
    /// and registers the layer's handles.
    pub fn new(store: St) -> Self {
        let config = IdempotencyConfig::default();
        let methods = check(&config).expect("the default configuration is valid");
        Self {
            shared: Arc::new(Shared {
                store,
                fallback: fallback_for(&config),
                config,
                methods,
                scope: None,
                store_when: None,
                metrics: Metrics::register(),
            }),
        }
    }

    /// Applies `config` (methods, retention, lease, sizes, outage policy…),
    /// replacing the one applied before.
    ///
    /// Fails on a method that is not an HTTP method, or a `ttl_ms` or
    /// `lease_ms` of 0.
    ///
    /// ```
    /// use ee_idempotency::{IdempotencyConfig, IdempotencyLayer, MemoryStore};
    ///
    /// let config = IdempotencyConfig { required: true, ..IdempotencyConfig::default() };
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).config(&config)?;
    /// # Ok::<(), ee_idempotency::IdempotencyError>(())
    /// ```
    pub fn config(self, config: &IdempotencyConfig) -> Result<Self, IdempotencyError> {
        let methods = check(config)?;
        Ok(self.edit(|s| {
            s.fallback = fallback_for(config);
            s.config = config.clone();
            s.methods = methods;
        }))
    }

    fn edit(self, f: impl FnOnce(&mut Shared<St>)) -> Self {
        let mut shared = match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared,
            Err(arc) => Shared {
                store: arc.store.clone(),
                fallback: arc.fallback.clone(),
                config: arc.config.clone(),
                methods: arc.methods.clone(),
                scope: arc.scope.clone(),
                store_when: arc.store_when.clone(),
                metrics: arc.metrics.clone(),
            },
        };
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Keys are scoped by `scope` (tenant, user, route…) instead of the
    /// default scope. The default is the method, the path and the
    /// authenticated [`ee_core::Subject`] (when an auth layer put one in the
    /// request, i.e. runs before this layer): the same key sent by two users,
    /// to two routes or to two services sharing a store is two keys.
    pub fn scope(self, scope: impl KeyExtractor) -> Self {
        self.edit(|s| s.scope = Some(Arc::new(scope)))
    }

    /// Which response statuses are stored (default: all but 5xx, or all with
    /// `store_server_errors`). A response not stored frees its key.
    pub fn store_when(self, f: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.edit(|s| s.store_when = Some(Arc::new(f)))
    }

    /// Requires the header on every guarded request (400 without it).
    pub fn required(self, required: bool) -> Self {
        self.edit(|s| s.config.required = required)
    }
}

impl<S, St> Layer<S> for IdempotencyLayer<St> {
    type Service = Idempotency<S, St>;

    fn layer(&self, inner: S) -> Idempotency<S, St> {
        Idempotency::new(inner, self.shared.clone())
    }
}
