//! Serves the queue board and admin API on http://127.0.0.1:3003/admin/queues
//! (`EE_REDIS_URL` picks the server; `PORT` the port).

use ee_example_queue::{QUEUE, env_number, redis_config};
use ee_queue::Queue;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::connect(redis_config(), QUEUE).await?;
    let app = axum::Router::new().nest("/admin/queues", ee_queue::admin_router([queue]));
    let port = u16::try_from(env_number("PORT", 3003))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("board: http://127.0.0.1:{port}/admin/queues");
    axum::serve(listener, app).await?;
    Ok(())
}
