//! A TCP proxy in front of a dependency that a test can break on demand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::servers;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards bytes both ways.
    Forward,
    /// Closes every open connection and closes new ones as soon as they are accepted.
    Refuse,
    /// Keeps connections open but forwards nothing: a hung dependency.
    BlackHole,
}

/// A proxy on 127.0.0.1 in front of `upstream`; stops when dropped.
pub struct TcpProxy {
    /// The port the proxy listens on.
    pub port: u16,
    mode: watch::Sender<ProxyMode>,
    acceptor: JoinHandle<()>,
    /// Connections accepted so far (in any mode).
    accepted: Arc<AtomicUsize>,
}

impl TcpProxy {
    /// Starts forwarding to `upstream`, a `host:port` (e.g. [`servers::REDIS_ADDR`], which
    /// starts the suite's Redis if it is not running yet).
    pub async fn start(upstream: impl AsRef<str>) -> Self {
        let upstream = upstream.as_ref();
        let upstream: SocketAddr = tokio::net::lookup_host(upstream)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("resolving the proxy's upstream {upstream:?}"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (mode, watcher) = watch::channel(ProxyMode::Forward);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counting = accepted.clone();
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                counting.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(proxy_connection(inbound, upstream, watcher.clone()));
            }
        });
        Self {
            port,
            mode,
            acceptor,
            accepted,
        }
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Switches every current and future connection to `mode`.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// The suite's Redis URL with its address replaced by this proxy's,
    /// `redis://127.0.0.1:<port>` for the Redis the suite starts.
    pub fn redis_url(&self) -> String {
        servers::redis().url_via(self.port)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn proxy_connection(
    mut inbound: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let initial = *mode.borrow_and_update();
    match initial {
        ProxyMode::Refuse => return,
        ProxyMode::BlackHole => return hold(inbound, mode).await,
        ProxyMode::Forward => {}
    }
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let broken = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => None,
        changed = mode.wait_for(|m| *m != ProxyMode::Forward) => changed.ok().map(|m| *m),
    };
    if broken == Some(ProxyMode::BlackHole) {
        hold((inbound, outbound), mode).await;
    }
    // Refuse (or the proxy is gone): dropping both sockets closes them.
}

/// Keeps `sockets` open, reading nothing, until the proxy leaves black-hole mode.
async fn hold<T>(sockets: T, mut mode: watch::Receiver<ProxyMode>) {
    let _ = mode.wait_for(|m| *m != ProxyMode::BlackHole).await;
    drop(sockets);
}
