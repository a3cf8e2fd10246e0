//! Read-your-writes: a request's scope remembers when it last wrote, so its
//! reads stay on the primary for a while after.

use std::time::{Duration, Instant};

tokio::task_local! {
    static SCOPE: Scope;
}

/// Per-request state: when this request last wrote.
struct Scope {
    last_write: std::cell::Cell<Option<Instant>>,
}

/// Runs `fut` as one request for read-your-writes: after a write in it,
/// its reads go to the primary for `read_your_writes_ms`. [`DbLayer`]
/// does this for every request.
///
/// [`DbLayer`]: crate::DbLayer
pub async fn request_scope<F: Future>(fut: F) -> F::Output {
    SCOPE
        .scope(
            Scope {
                last_write: std::cell::Cell::new(None),
            },
            fut,
        )
        .await
}

/// Notes a write in this request's scope (nothing outside one).
pub(super) fn mark_write() {
    let _ = SCOPE.try_with(|s| s.last_write.set(Some(Instant::now())));
}

/// Whether this request wrote less than `window` ago (never, outside a
/// request scope).
pub(super) fn wrote_within(window: Duration) -> bool {
    SCOPE
        .try_with(|s| s.last_write.get().is_some_and(|t| t.elapsed() < window))
        .unwrap_or(false)
}
