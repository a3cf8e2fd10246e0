//! Serves a README's axum `app()` on a free port, as the README's `main` serves it
//! (shared by the readme packages whose example is an axum app).

use std::net::SocketAddr;

/// Serves `app` on 127.0.0.1 and a free port, in the background; its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
