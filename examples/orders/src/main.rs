//! `cargo run -p ee-example-orders`: the order intake API on 127.0.0.1:3002.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("orders: http://{}", listener.local_addr()?);
    println!(
        "try: curl -si -H 'content-type: application/json' -d '{{\"email\":\"x\",\"currency\":\"eur\",\"lines\":[]}}' http://127.0.0.1:3002/orders"
    );
    axum::serve(listener, ee_example_orders::app()).await?;
    Ok(())
}
