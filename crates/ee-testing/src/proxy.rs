//! A TCP proxy a test can cut or stall: the server behind it "goes down" or
//! "goes slow" for the client without touching the real server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection on a free loopback port to `target` until
/// [`cut`](Self::cut); after [`restore`](Self::restore) it forwards again.
/// While [`stall`](Self::stall)ed, new connections are accepted but get no
/// byte from the server (a link that hangs: the client's timeouts fire)
/// until [`unstall`](Self::unstall).
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
    stalled: tokio::sync::watch::Sender<bool>,
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
        let (stalled, stall) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = shared.lock().expect("not poisoned");
                if state.cut {
                    drop(client);
                    continue;
                }
                state.links.retain(|l| !l.is_finished());
                let mut stall = stall.clone();
                state.links.push(tokio::spawn(async move {
                    // Held, unanswered, while stalled.
                    if stall.wait_for(|stalled| !stalled).await.is_err() {
                        return;
                    }
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            addr,
            state,
            stalled,
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

    /// Holds new connections open without forwarding them (the server
    /// "goes slow"); connections already open keep flowing.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forwards the held connections and new ones again.
    pub fn unstall(&self) {
        self.stalled.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
