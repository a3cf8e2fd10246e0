//! A TCP proxy a test can cut: the server behind it "goes down" for the
//! client without touching the real server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection on a free loopback port to `target` until
/// [`cut`](Self::cut); after [`restore`](Self::restore) it forwards again.
///
/// ```no_run
/// # async fn demo() {
/// let proxy = ee_testing::TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
/// let url = format!("postgres://postgres@{}/test", proxy.addr());
/// // … a pool on `url` works …
/// proxy.cut(); // open connections reset, new ones refused
/// // … the pool sees an outage …
/// proxy.restore();
/// # }
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    cut: bool,
    links: Vec<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("bound");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = shared.lock().expect("not poisoned");
                if state.cut {
                    drop(client);
                    continue;
                }
                state.links.retain(|l| !l.is_finished());
                state.links.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.cut = true;
        for link in state.links.drain(..) {
            link.abort();
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.lock().expect("not poisoned").cut = false;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
