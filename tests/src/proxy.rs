//! A TCP proxy the tests put between a client and a server, to make the
//! network between them slow or silent on demand, without privileges or
//! tools on the machine.
//!
//! Each proxied connection keeps reading both sides and writes what it read
//! to the other side after a delay, or, when black-holed, not at all: the
//! kernels on both sides go on acknowledging, so neither peer sees an error,
//! only silence (as behind a network that drops packets, for a client that
//! waits for answers). The proxy runs on a thread of its own, so that it
//! works whatever the test's runtime is doing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// What becomes of the bytes of a proxied connection, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Passed on at once.
    Pass,
    /// Passed on this long after they arrived, in order.
    Delay(Duration),
    /// Read and dropped: both peers hear nothing more from each other.
    BlackHole,
}

/// A connection's controls.
#[derive(Debug)]
struct Connection {
    /// The local port of the proxy's socket to the server: what the server
    /// sees as the client's port.
    upstream_port: u16,
    flow: watch::Sender<Flow>,
}

#[derive(Debug)]
struct Shared {
    /// The flow of connections made from now on.
    new_flow: Mutex<Flow>,
    connections: Mutex<Vec<Connection>>,
}

/// A TCP proxy from a local port to `target`; stopped, with every
/// connection through it closed, when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and proxies every connection to
    /// `target` (`host:port`).
    pub fn start(target: &str) -> Self {
        let shared = Arc::new(Shared {
            new_flow: Mutex::new(Flow::Pass),
            connections: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the listener's address");
        let (shutdown, on_shutdown) = oneshot::channel();
        let target = target.to_owned();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("a tokio listener");
                    tokio::select! {
                        () = accept(listener, target, shared) => {}
                        _ = on_shutdown => {}
                    }
                });
                // Dropping the runtime drops every connection's tasks, and
                // with them the sockets.
            })
        };
        TcpProxy {
            address,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sets the flow of every connection, open or made from now on.
    pub fn set_all(&self, flow: Flow) {
        *lock(&self.shared.new_flow) = flow;
        for connection in lock(&self.shared.connections).iter() {
            connection.flow.send_replace(flow);
        }
    }

    /// Sets the flow of the open connection whose socket to the server has
    /// the local port `upstream_port` (the client port the server reports,
    /// e.g. PostgreSQL's `pg_stat_activity.client_port`); whether there is
    /// one.
    pub fn set_connection(&self, upstream_port: u16, flow: Flow) -> bool {
        let connections = lock(&self.shared.connections);
        let found = connections
            .iter()
            .find(|connection| connection.upstream_port == upstream_port);
        if let Some(connection) = found {
            connection.flow.send_replace(flow);
        }
        found.is_some()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept(listener: TcpListener, target: String, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let Ok(server) = TcpStream::connect(&target).await else {
            // The client sees its connection closed, as with a server that
            // is down.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let upstream_port = server.local_addr().map_or(0, |address| address.port());
        let (flow, flows) = watch::channel(*lock(&shared.new_flow));
        lock(&shared.connections).push(Connection {
            upstream_port,
            flow,
        });
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::spawn(pump(client_read, server_write, flows.clone()));
        tokio::spawn(pump(server_read, client_write, flows));
    }
}

/// Moves bytes from `from` to `to` as the connection's flow says, until
/// either side closes.
async fn pump(mut from: OwnedReadHalf, to: OwnedWriteHalf, mut flows: watch::Receiver<Flow>) {
    let (chunks, due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(write_when_due(to, due));
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let flow = *flows.borrow();
        let at = match flow {
            Flow::Pass => Instant::now(),
            Flow::Delay(delay) => Instant::now() + delay,
            Flow::BlackHole => continue,
        };
        if chunks.send((at, buffer[..read].to_vec())).is_err() {
            break;
        }
    }
    // A black hole passes no close on either: the other peer keeps waiting
    // on a silent connection until the flow changes.
    while *flows.borrow_and_update() == Flow::BlackHole {
        if flows.changed().await.is_err() {
            break;
        }
    }
    // What was read before the close still goes out, when due.
    drop(chunks);
    let _ = writer.await;
}

async fn write_when_due(
    mut to: OwnedWriteHalf,
    mut due: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
) {
    while let Some((at, chunk)) = due.recv().await {
        tokio::time::sleep_until(at).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buffer = [0; 1024];
                    while let Ok(read) = socket.read(&mut buffer).await {
                        if read == 0 || socket.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        stream.write_all(b"ping").await.unwrap();
        let mut answer = [0; 4];
        tokio::time::timeout(within, stream.read_exact(&mut answer))
            .await
            .ok()
            .map(|read| {
                read.unwrap();
                started.elapsed()
            })
    }

    #[tokio::test]
    async fn connections_pass_slow_down_and_go_silent_on_demand() {
        let proxy = TcpProxy::start(&echo_server().await);
        let mut first = TcpStream::connect(proxy.address()).await.unwrap();
        let took = round_trip(&mut first, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(took < Duration::from_millis(500), "{took:?}");

        proxy.set_all(Flow::Delay(Duration::from_millis(200)));
        let took = round_trip(&mut first, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(took >= Duration::from_millis(400), "both ways: {took:?}");

        let mut second = TcpStream::connect(proxy.address()).await.unwrap();
        let upstream = loop {
            {
                let connections = lock(&proxy.shared.connections);
                if connections.len() == 2 {
                    break connections[1].upstream_port;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(proxy.set_connection(upstream, Flow::BlackHole));
        assert_eq!(
            round_trip(&mut second, Duration::from_millis(800)).await,
            None,
            "silent"
        );
        proxy.set_all(Flow::Pass);
        let took = round_trip(&mut first, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert!(!proxy.set_connection(1, Flow::Pass));
    }
}
