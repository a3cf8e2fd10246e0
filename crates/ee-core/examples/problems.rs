//! ee-core in an axum service: every error is an RFC 9457 problem, client IPs
//! are read through trusted proxies only, and axum's own rejections (a bad
//! query string) answer `application/problem+json` too.
//!
//! ```sh
//! cargo run -p ee-core --example problems --features axum
//! curl -i 'http://127.0.0.1:3010/items?per_page=5'
//! curl -i 'http://127.0.0.1:3010/items?per_page=lots'            # 400 core/invalid-query
//! curl -i http://127.0.0.1:3010/whoami -H 'x-forwarded-for: 203.0.113.7'  # loopback is trusted
//! curl -i http://127.0.0.1:3010/items/404                        # 404 demo/not-found
//! ```

use std::net::SocketAddr;

use axum::extract::{Path, Query};
use axum::http::{StatusCode, request::Parts};
use axum::routing::get;
use axum::{Json, Router};
use ee_core::{ClientIp, KeyExtractor, Problem, RequestHead, WithProblem};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Page {
    per_page: u32,
}

async fn items(WithProblem(Query(page)): WithProblem<Query<Page>>) -> Json<Value> {
    Json(json!({ "per_page": page.per_page, "items": [] }))
}

async fn item(WithProblem(Path(id)): WithProblem<Path<u64>>) -> Result<Json<Value>, Problem> {
    if id == 404 {
        return Err(Problem::ee(StatusCode::NOT_FOUND, "demo", "not-found")
            .with_title("No such item")
            .with_detail(format!("there is no item {id}"))
            .with_instance(format!("/items/{id}")));
    }
    Ok(Json(json!({ "id": id })))
}

async fn whoami(parts: Parts) -> Result<String, Problem> {
    // Loopback is the only trusted proxy here: X-Forwarded-For is believed
    // from it, and from nobody else.
    let clients = ClientIp::trusting(["127.0.0.0/8".parse().expect("a network")]);
    let key = clients.extract(&RequestHead::from(&parts))?;
    Ok(format!("you are {key}\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/items", get(items))
        .route("/items/{id}", get(item))
        .route("/whoami", get(whoami));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3010").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
