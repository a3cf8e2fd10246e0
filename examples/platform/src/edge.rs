//! The platform's edge: what faces clients.
//!
//! - [`EdgeSettings`] (`[edge]` in `platform.toml`): who the client is behind
//!   trusted proxies (the gateway's rate limit keys on it), how long a client
//!   may take to send a request head and a request body, how large an
//!   answer from a service may be, and whether a client's `traceparent` is
//!   continued.
//! - [`serve_on`]: the HTTP/1 server every listener (the gateway's and each
//!   service's) runs: hyper's header read timeout, `TCP_NODELAY`, the peer
//!   address as `ConnectInfo<SocketAddr>`, and a graceful shutdown that lets
//!   in-flight requests finish.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use ee_core::{ClientIp, ClientIpConfig, ForwardedHeader};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::Layer;

use crate::StartError;

/// What faces clients: the gateway's view of them, and the limits on how
/// slowly they send and how much a service may answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// The networks of the proxies in front of the gateway (load
    /// balancers, CDNs), as CIDRs (`10.0.0.0/8`, `127.0.0.1/32`). A request
    /// from one of them is counted against the client its forwarding header
    /// names (ee-core's `ClientIp`: the header is read right to left, only
    /// through trusted hops, so a client cannot pick its own key). Default
    /// empty: the TCP peer is the client and forwarding headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// The header those proxies write: `x-forwarded-for` (default) or
    /// `forwarded` (RFC 7239).
    pub forwarded_header: ForwardedHeader,
    /// How long a client may take to send a request head, in ms (default
    /// 10 000); past it the connection is closed. It also bounds how long an
    /// idle keep-alive connection is kept, so a proxy that pools connections
    /// to the gateway must let them go sooner. Every listener applies it.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request body through the
    /// gateway, in ms (default 10 000); past it, 408 problem and the
    /// connection closed.
    pub body_read_timeout_ms: u64,
    /// The largest answer taken from a service, in bytes (default 8 MiB):
    /// one whose `Content-Length` is larger is a 502 problem; a streamed one
    /// that grows past it is cut off (the client's connection is closed,
    /// and a warning logged).
    pub max_upstream_response_bytes: u64,
    /// Whether the gateway continues a trace a client started with its own
    /// `traceparent` (default false: each request through the gateway starts
    /// a trace, so a client cannot choose the trace id the platform's logs
    /// are filed under).
    pub accept_client_traceparent: bool,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            max_upstream_response_bytes: 8 << 20,
            accept_client_traceparent: false,
        }
    }
}

impl EdgeSettings {
    /// Refuses a zero timeout or size limit (every request would fail).
    ///
    /// # Errors
    /// The first setting that is zero.
    pub fn check(&self) -> Result<(), StartError> {
        for (name, value) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            (
                "max_upstream_response_bytes",
                self.max_upstream_response_bytes,
            ),
        ] {
            if value == 0 {
                return Err(StartError(format!("edge.{name} must be above 0")));
            }
        }
        Ok(())
    }

    /// The client of a request: the peer, or the client behind the trusted
    /// proxies.
    pub fn client_ip(&self) -> ClientIp {
        ClientIp::new(ClientIpConfig {
            trusted_proxies: self.trusted_proxies.clone(),
            header: self.forwarded_header,
        })
    }

    /// [`header_read_timeout_ms`](Self::header_read_timeout_ms).
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// [`body_read_timeout_ms`](Self::body_read_timeout_ms).
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

/// Serves `app` on `listener` until `stop` turns true (or its sender is
/// dropped), then stops accepting and lets each connection finish the
/// request it is running; the task ends when the last connection has.
///
/// HTTP/1 only. A request head must arrive within the edge's header read
/// timeout (hyper's timer), or the connection is closed: a client that
/// opens connections and trickles header bytes (slowloris) holds none for
/// long.
pub fn serve_on(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    edge: &EdgeSettings,
) -> JoinHandle<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_read_timeout());
    tokio::spawn(async move {
        // Each connection holds a token; once the loop ends it waits for
        // the last one to be dropped.
        let (tokens, token) = watch::channel(());
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                },
                () = stopped(&mut stop) => break,
            };
            // Without TCP_NODELAY a response written in two segments (head,
            // then a streamed body: every answer the gateway relays) waits
            // for the peer's delayed ACK.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            // The peer address, as `into_make_service_with_connect_info::<SocketAddr>()`
            // sets it (the client, or the proxy in front of it).
            let service =
                TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(app.clone()));
            let conn = builder
                .serve_connection(TokioIo::new(tcp), service)
                .into_owned();
            let mut stop = stop.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    () = stopped(&mut stop) => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    // A client gone, or too slow with its request head.
                    tracing::debug!(peer = %peer, error = %e, "connection closed");
                }
                drop(token);
            });
        }
        drop(listener);
        drop(token);
        tokens.closed().await;
    })
}

/// Once `stop` is true, or its sender gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A failed `accept`: a connection the client already gave up is skipped;
/// anything else (out of file descriptors) is logged and waited out.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_trust_no_proxy_and_start_a_trace_per_request() {
        let edge: EdgeSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(edge, EdgeSettings::default());
        assert!(edge.trusted_proxies.is_empty());
        assert!(!edge.accept_client_traceparent);
        assert_eq!(edge.header_read_timeout(), Duration::from_secs(10));
        assert_eq!(edge.max_upstream_response_bytes, 8 * 1024 * 1024);
        assert!(edge.check().is_ok());
    }

    #[test]
    fn proxies_and_header_are_read_and_unknown_keys_and_zeros_refused() {
        let edge: EdgeSettings = serde_json::from_str(
            r#"{"trusted_proxies": ["10.0.0.0/8"], "forwarded_header": "forwarded"}"#,
        )
        .unwrap();
        assert_eq!(edge.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!(edge.trusted_proxies.len(), 1);
        assert!(serde_json::from_str::<EdgeSettings>(r#"{"trusted_proxy": []}"#).is_err());
        let zero = EdgeSettings {
            body_read_timeout_ms: 0,
            ..EdgeSettings::default()
        };
        assert!(zero.check().unwrap_err().0.contains("body_read_timeout_ms"));
    }
}
