//! A fault-injecting TCP proxy: forwards every connection it accepts to one upstream address and can, on
//! command and at once for existing and new connections, drop traffic in one or both directions (a network
//! partition), add latency, or reset every connection.
//!
//! The proxy runs on its own single-threaded tokio runtime on a dedicated thread. Test code that blocks its
//! own thread (waiting for a broker process, say) therefore never stalls the traffic between brokers, and the
//! controls are plain synchronous calls usable from synchronous and asynchronous tests alike.
//!
//! A proxy can also be told who opened each connection (an [`OriginResolver`], for brokers
//! [`crate::origin::ProcessMarkers`]) and then drop only the connections of one origin: that is how a cluster
//! cuts a node's outgoing connections, which reach the other nodes through the other nodes' proxies.
//!
//! Dropped data is read and discarded, never held back: a partition must not deliver stale bytes when it heals,
//! and a paused direction must not grow a buffer. Delayed data waits in a per-direction queue bounded by
//! [`DELAY_QUEUE_BYTES_MAX`]; when it is full the proxy stops reading and TCP flow control pushes back.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes read from a socket in one go. Also the granularity at which a fault takes effect mid-stream.
const CHUNK_BYTES_MAX: usize = 16 * 1024;
/// Bytes one direction of one connection may hold while they wait out an injected delay.
pub const DELAY_QUEUE_BYTES_MAX: usize = 256 * 1024;
/// Giving up on connecting to the upstream for an accepted connection.
const UPSTREAM_CONNECT_MS_MAX: u64 = 5_000;

/// Names the origin of a connection from its client's address and the proxy's own address (in that order), or
/// `None` if unknown. Origins are small numbers (node ids), below [`ORIGINS_MAX`].
pub type OriginResolver = Arc<dyn Fn(SocketAddr, SocketAddr) -> Option<u32> + Send + Sync>;

/// Origins are tracked in a 64-bit set.
pub const ORIGINS_MAX: u32 = 64;

/// A direction of traffic through the proxy. The client is whoever connected to the proxy; the server is the
/// upstream it forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// The faults in force. Every forwarding loop watches this and applies a change to the next chunk it handles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    /// Indexed by [`Direction::index`]: traffic in that direction is discarded.
    dropped: [bool; 2],
    /// Bit `o` set: every connection whose origin is `o` is discarded in both directions.
    isolated_origins: u64,
    /// Latency added to every chunk, in each direction.
    delay_ms: u64,
    /// Bumped by [`FaultProxy::drop_connections`]; a connection opened under an older value is reset.
    reset_generation: u64,
}

impl Faults {
    fn drops(&self, direction: Direction, origin: Option<u32>) -> bool {
        self.dropped[direction.index()] || origin.is_some_and(|o| self.isolated_origins & (1 << o) != 0)
    }
}

/// Counters shared by all connections of a proxy.
#[derive(Debug, Default)]
struct Counters {
    forwarded_bytes: [AtomicU64; 2],
    dropped_bytes: [AtomicU64; 2],
    connections_accepted: AtomicU64,
    connections_by_origin: Mutex<BTreeMap<u32, u64>>,
}

/// A TCP proxy on a free `127.0.0.1` port in front of one upstream address. Stops forwarding, closing every
/// socket, when dropped.
///
/// # Examples
///
/// ```no_run
/// use rill_tests::proxy::{Direction, FaultProxy};
///
/// let proxy = FaultProxy::start("127.0.0.1:9400".parse().unwrap());
/// // Clients connect to `proxy.addr()` instead of the upstream.
/// proxy.blackhole(); // a partition: both sides see silence
/// proxy.heal();
/// proxy.one_way(Direction::ServerToClient); // requests arrive, answers are lost
/// proxy.heal();
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    counters: Arc<Counters>,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts forwarding connections made to a new free loopback port to `upstream`. The upstream need not be
    /// listening yet: each accepted connection connects to it afresh, and one it refuses is reset.
    ///
    /// # Panics
    ///
    /// If the runtime cannot be built or no loopback port can be bound.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start_with_origins(upstream, None)
    }

    /// Like [`FaultProxy::start`], naming the origin of every accepted connection with `resolver` so that
    /// [`FaultProxy::isolate_origin`] can single out one origin's connections. The origin is resolved once,
    /// before the connection is forwarded.
    pub fn start_with_origins(upstream: SocketAddr, resolver: Option<OriginResolver>) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("build the proxy runtime");
        // Bound with std and handed to the runtime, because `start` may be called from inside another runtime,
        // where blocking on this one is not allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        listener.set_nonblocking(true).expect("non-blocking proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let (faults, _) = watch::channel(Faults::default());
        let counters = Arc::new(Counters::default());
        runtime.spawn(accept_loop(listener, upstream, resolver, faults.clone(), counters.clone()));
        FaultProxy { addr, upstream, faults, counters, runtime: Some(runtime) }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Discards traffic in both directions while keeping every socket open, like a network partition: both
    /// sides see silence, and what they send is lost rather than delivered later.
    pub fn blackhole(&self) {
        self.faults.send_modify(|f| f.dropped = [true, true]);
    }

    /// Discards traffic in the `dropped` direction only; the other direction flows (a one-way partition).
    /// Replaces any earlier drop setting.
    pub fn one_way(&self, dropped: Direction) {
        self.faults.send_modify(|f| {
            f.dropped = [false, false];
            f.dropped[dropped.index()] = true;
        });
    }

    /// Delays every chunk by `delay_ms` in each direction (0 removes the delay). Data already queued keeps the
    /// due time it was given.
    pub fn delay(&self, delay_ms: u64) {
        self.faults.send_modify(|f| f.delay_ms = delay_ms);
    }

    /// Discards, in both directions, the traffic of every connection (existing and new) whose origin is
    /// `origin`; other connections are unaffected. Needs a resolver ([`FaultProxy::start_with_origins`]).
    ///
    /// # Panics
    ///
    /// If `origin` is not below [`ORIGINS_MAX`].
    pub fn isolate_origin(&self, origin: u32) {
        assert!(origin < ORIGINS_MAX, "origin {origin} is not below {ORIGINS_MAX}");
        self.faults.send_modify(|f| f.isolated_origins |= 1 << origin);
    }

    /// Removes every fault: traffic flows both ways without delay for every origin, on existing and new
    /// connections.
    pub fn heal(&self) {
        self.faults.send_modify(|f| {
            f.dropped = [false, false];
            f.isolated_origins = 0;
            f.delay_ms = 0;
        });
    }

    /// Resets (TCP RST) every connection open now, on both sides. Later connections are unaffected.
    pub fn drop_connections(&self) {
        self.faults.send_modify(|f| f.reset_generation += 1);
    }

    /// Bytes written towards the destination in `direction` so far, over all connections.
    pub fn bytes_forwarded(&self, direction: Direction) -> u64 {
        self.counters.forwarded_bytes[direction.index()].load(Ordering::SeqCst)
    }

    /// Bytes read and discarded in `direction` so far because of a blackhole or one-way fault.
    pub fn bytes_dropped(&self, direction: Direction) -> u64 {
        self.counters.dropped_bytes[direction.index()].load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.counters.connections_accepted.load(Ordering::SeqCst)
    }

    /// Connections accepted so far whose resolver named `origin`.
    pub fn connections_from(&self, origin: u32) -> u64 {
        self.counters.connections_by_origin.lock().expect("counter lock").get(&origin).copied().unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // `shutdown_background` rather than dropping the runtime: a test may drop the proxy from inside its
        // own async runtime, where blocking on the proxy's tasks is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("faults", &*self.faults.borrow())
            .finish()
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    resolver: Option<OriginResolver>,
    faults: watch::Sender<Faults>,
    counters: Arc<Counters>,
) {
    let listener = TcpListener::from_std(listener).expect("register the proxy listener");
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or similar: back off briefly rather than spin, then keep serving.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.connections_accepted.fetch_add(1, Ordering::SeqCst);
        let resolver = resolver.clone();
        let faults = faults.subscribe();
        let counters = counters.clone();
        tokio::spawn(async move {
            let origin = match (resolver, client.local_addr()) {
                // Resolving reads files; keep it off the forwarding thread.
                (Some(resolver), Ok(local)) => {
                    tokio::task::spawn_blocking(move || resolver(peer, local)).await.ok().flatten()
                }
                _ => None,
            };
            if let Some(origin) = origin {
                *counters.connections_by_origin.lock().expect("counter lock").entry(origin).or_default() += 1;
            }
            serve_connection(client, origin, upstream, faults, &counters).await;
        });
    }
}

/// Forwards one connection until both directions end or the connection is reset. Both directions run as
/// futures of this one task so that a reset drops both sockets together.
async fn serve_connection(
    client: TcpStream,
    origin: Option<u32>,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    counters: &Counters,
) {
    let generation = faults.borrow_and_update().reset_generation;
    let connect = tokio::time::timeout(Duration::from_millis(UPSTREAM_CONNECT_MS_MAX), TcpStream::connect(upstream));
    let mut server = match connect.await {
        Ok(Ok(server)) => server,
        _ => {
            // The upstream is down: reset the client, as a refused connection would look to it.
            reset(&client);
            return;
        }
    };
    let mut client = client;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset_both = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let to_server = pump(client_read, server_write, Direction::ClientToServer, origin, faults.clone(), counters);
        let to_client = pump(server_read, client_write, Direction::ServerToClient, origin, faults.clone(), counters);
        // A clean end of stream in one direction lets the other carry on (half close); an error in either
        // ends both, so a connection whose peer vanished does not hold the other side open forever.
        let forwarding = async { tokio::try_join!(to_server, to_client).is_err() };
        let reset_signal = faults.wait_for(|f| f.reset_generation != generation);
        tokio::select! {
            failed = forwarding => failed,
            _ = reset_signal => true,
        }
    };
    if reset_both {
        reset(&client);
        reset(&server);
    }
}

/// Arranges for the socket to be closed with a RST instead of a FIN when it is dropped.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// A chunk waiting for its due time.
struct Delayed {
    due: Instant,
    bytes: Vec<u8>,
}

/// Copies one direction until end of stream or an error, applying the current faults to each chunk: dropped
/// chunks are counted and discarded, delayed ones wait in a bounded queue.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    direction: Direction,
    origin: Option<u32>,
    mut faults: watch::Receiver<Faults>,
    counters: &Counters,
) -> io::Result<()> {
    let index = direction.index();
    let mut queue: VecDeque<Delayed> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut buffer = vec![0u8; CHUNK_BYTES_MAX];
    let mut reading = true;
    loop {
        // Deliver (or, under a drop fault, discard) everything that is due.
        while queue.front().is_some_and(|chunk| chunk.due <= Instant::now()) {
            let chunk = queue.pop_front().expect("front exists");
            queued_bytes -= chunk.bytes.len();
            let dropped = faults.borrow().drops(direction, origin);
            if dropped {
                counters.dropped_bytes[index].fetch_add(chunk.bytes.len() as u64, Ordering::SeqCst);
            } else {
                counters.forwarded_bytes[index].fetch_add(chunk.bytes.len() as u64, Ordering::SeqCst);
                to.write_all(&chunk.bytes).await?;
            }
        }
        if !reading && queue.is_empty() {
            // End of stream reached the other side in order, after the data before it.
            return to.shutdown().await;
        }
        let next_due = queue.front().map(|chunk| chunk.due);
        let can_read = reading && queued_bytes < DELAY_QUEUE_BYTES_MAX;
        tokio::select! {
            read = from.read(&mut buffer), if can_read => {
                let n = read?;
                if n == 0 {
                    reading = false;
                    continue;
                }
                let current = *faults.borrow_and_update();
                if current.drops(direction, origin) {
                    counters.dropped_bytes[index].fetch_add(n as u64, Ordering::SeqCst);
                } else {
                    let due = Instant::now() + Duration::from_millis(current.delay_ms);
                    queue.push_back(Delayed { due, bytes: buffer[..n].to_vec() });
                    queued_bytes += n;
                }
            }
            () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
            // A fault changed: re-evaluate the queue at once (a blackhole discards what waits in it).
            changed = faults.changed() => {
                if changed.is_err() {
                    // The proxy is gone.
                    return Ok(());
                }
                if faults.borrow_and_update().drops(direction, origin) {
                    let discarded: usize = queue.drain(..).map(|chunk| chunk.bytes.len()).sum();
                    queued_bytes = 0;
                    counters.dropped_bytes[index].fetch_add(discarded as u64, Ordering::SeqCst);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Greeting a test server sends first on every connection, so server-to-client traffic can be observed
    /// without the client sending anything.
    const GREETING: &[u8] = b"hello\n";

    /// How long a test waits for something that must happen.
    const EVENT_MS_MAX: u64 = 5_000;
    /// How long a test watches for something that must not happen (traffic through a dropped direction).
    const SILENCE_MS: u64 = 300;

    /// A server that greets each connection and then echoes whatever it receives.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    socket.write_all(GREETING).await?;
                    let mut buffer = [0u8; 1024];
                    loop {
                        let n = socket.read(&mut buffer).await?;
                        if n == 0 {
                            return Ok::<_, io::Error>(());
                        }
                        socket.write_all(&buffer[..n]).await?;
                    }
                });
            }
        });
        addr
    }

    /// Reads exactly `expected.len()` bytes within the event limit and checks them.
    async fn expect_bytes(socket: &mut TcpStream, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_millis(EVENT_MS_MAX), socket.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| panic!("no {:?} within {EVENT_MS_MAX} ms", String::from_utf8_lossy(expected)))
            .expect("read from the proxy");
        assert_eq!(got, expected);
    }

    /// Asserts that nothing arrives for a while.
    async fn expect_silence(socket: &mut TcpStream) {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(SILENCE_MS), socket.read(&mut byte)).await {
            Err(_) => {}
            Ok(read) => panic!("expected silence, got {read:?} ({:?})", byte),
        }
    }

    /// Waits until `counter` reaches `at_least`; the proxy counts on its own thread.
    async fn counter_reaches(what: &str, at_least: u64, counter: impl Fn() -> u64) {
        let deadline = Instant::now() + Duration::from_millis(EVENT_MS_MAX);
        while counter() < at_least {
            assert!(Instant::now() < deadline, "{what} stayed at {} (< {at_least}) for {EVENT_MS_MAX} ms", counter());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn connect(proxy: &FaultProxy) -> TcpStream {
        TcpStream::connect(proxy.addr()).await.unwrap()
    }

    #[tokio::test]
    async fn forwards_both_directions_and_counts_bytes_and_connections() {
        let proxy = FaultProxy::start(echo_server().await);
        let mut socket = connect(&proxy).await;
        expect_bytes(&mut socket, GREETING).await;
        socket.write_all(b"ping").await.unwrap();
        expect_bytes(&mut socket, b"ping").await;
        let mut second = connect(&proxy).await;
        expect_bytes(&mut second, GREETING).await;

        assert_eq!(proxy.connections_accepted(), 2);
        assert_eq!(proxy.bytes_forwarded(Direction::ClientToServer), 4);
        assert_eq!(proxy.bytes_forwarded(Direction::ServerToClient), 2 * GREETING.len() as u64 + 4);
        assert_eq!(proxy.bytes_dropped(Direction::ClientToServer) + proxy.bytes_dropped(Direction::ServerToClient), 0);
    }

    #[tokio::test]
    async fn forwards_large_transfers_in_order() {
        let proxy = FaultProxy::start(echo_server().await);
        let mut socket = connect(&proxy).await;
        expect_bytes(&mut socket, GREETING).await;
        // Several times the chunk and queue sizes, so flow control and chunking are exercised.
        let payload: Vec<u8> = (0..(2 * DELAY_QUEUE_BYTES_MAX)).map(|i| (i % 251) as u8).collect();
        let (mut read, mut write) = socket.into_split();
        let sent = payload.clone();
        let writer = tokio::spawn(async move { write.write_all(&sent).await });
        let mut echoed = vec![0u8; payload.len()];
        tokio::time::timeout(Duration::from_millis(EVENT_MS_MAX), read.read_exact(&mut echoed))
            .await
            .expect("echo within the limit")
            .unwrap();
        writer.await.unwrap().unwrap();
        assert!(echoed == payload, "the echo differs from what was sent");
    }

    #[tokio::test]
    async fn blackhole_silences_open_connections_and_heal_restores_old_and_new_ones() {
        let proxy = FaultProxy::start(echo_server().await);
        let mut socket = connect(&proxy).await;
        expect_bytes(&mut socket, GREETING).await;

        proxy.blackhole();
        socket.write_all(b"lost").await.unwrap();
        counter_reaches("bytes dropped towards the server", 4, || proxy.bytes_dropped(Direction::ClientToServer)).await;
        expect_silence(&mut socket).await;
        assert_eq!(proxy.bytes_forwarded(Direction::ClientToServer), 0, "nothing may reach the server");
        // A connection made during the partition is accepted but hears nothing, not even the greeting.
        let mut during = connect(&proxy).await;
        counter_reaches("greeting dropped", GREETING.len() as u64, || proxy.bytes_dropped(Direction::ServerToClient))
            .await;
        expect_silence(&mut during).await;

        proxy.heal();
        let mut after = connect(&proxy).await;
        expect_bytes(&mut after, GREETING).await;
        after.write_all(b"back").await.unwrap();
        expect_bytes(&mut after, b"back").await;
        // The old connection works again too, and the bytes sent during the partition stay lost.
        socket.write_all(b"again").await.unwrap();
        expect_bytes(&mut socket, b"again").await;
    }

    #[tokio::test]
    async fn one_way_drops_only_the_named_direction() {
        let proxy = FaultProxy::start(echo_server().await);

        proxy.one_way(Direction::ClientToServer);
        let mut socket = connect(&proxy).await;
        expect_bytes(&mut socket, GREETING).await;
        socket.write_all(b"unheard").await.unwrap();
        counter_reaches("bytes dropped towards the server", 7, || proxy.bytes_dropped(Direction::ClientToServer)).await;
        expect_silence(&mut socket).await;

        proxy.one_way(Direction::ServerToClient);
        socket.write_all(b"heard").await.unwrap();
        counter_reaches("bytes forwarded to the server", 5, || proxy.bytes_forwarded(Direction::ClientToServer)).await;
        counter_reaches("echo dropped", 5, || proxy.bytes_dropped(Direction::ServerToClient)).await;
        expect_silence(&mut socket).await;

        proxy.heal();
        socket.write_all(b"both").await.unwrap();
        expect_bytes(&mut socket, b"both").await;
    }

    #[tokio::test]
    async fn delay_adds_latency_each_way_until_healed() {
        const DELAY_MS: u64 = 200;
        let proxy = FaultProxy::start(echo_server().await);
        let mut socket = connect(&proxy).await;
        expect_bytes(&mut socket, GREETING).await;

        proxy.delay(DELAY_MS);
        let started = Instant::now();
        socket.write_all(b"slow").await.unwrap();
        expect_bytes(&mut socket, b"slow").await;
        let round_trip = started.elapsed();
        assert!(
            round_trip >= Duration::from_millis(2 * DELAY_MS),
            "round trip {round_trip:?} is not delayed both ways"
        );

        proxy.heal();
        let started = Instant::now();
        socket.write_all(b"fast").await.unwrap();
        expect_bytes(&mut socket, b"fast").await;
        assert!(
            started.elapsed() < Duration::from_millis(DELAY_MS),
            "still delayed after heal: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn drop_connections_resets_open_connections_only() {
        let proxy = FaultProxy::start(echo_server().await);
        let mut socket = connect(&proxy).await;
        expect_bytes(&mut socket, GREETING).await;

        proxy.drop_connections();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(EVENT_MS_MAX), socket.read(&mut byte))
            .await
            .expect("the reset arrives within the limit");
        match read {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "unexpected error {e}"),
            Ok(n) => panic!("expected a connection reset, read {n} bytes"),
        }

        let mut fresh = connect(&proxy).await;
        expect_bytes(&mut fresh, GREETING).await;
        fresh.write_all(b"new").await.unwrap();
        expect_bytes(&mut fresh, b"new").await;
    }

    #[tokio::test]
    async fn isolate_origin_silences_only_that_origins_connections() {
        // The resolver names origin 3 for connections from the ports in `marked`.
        let marked: Arc<Mutex<Vec<u16>>> = Arc::default();
        let resolver: OriginResolver = {
            let marked = marked.clone();
            Arc::new(move |peer: SocketAddr, _local: SocketAddr| {
                marked.lock().unwrap().contains(&peer.port()).then_some(3)
            })
        };
        let proxy = FaultProxy::start_with_origins(echo_server().await, Some(resolver));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        marked.lock().unwrap().push(socket.local_addr().unwrap().port());
        let mut isolated = socket.connect(proxy.addr()).await.unwrap();
        expect_bytes(&mut isolated, GREETING).await;
        let mut other = connect(&proxy).await;
        expect_bytes(&mut other, GREETING).await;
        assert_eq!(proxy.connections_from(3), 1);

        proxy.isolate_origin(3);
        isolated.write_all(b"cut").await.unwrap();
        counter_reaches("bytes dropped towards the server", 3, || proxy.bytes_dropped(Direction::ClientToServer)).await;
        expect_silence(&mut isolated).await;
        other.write_all(b"fine").await.unwrap();
        expect_bytes(&mut other, b"fine").await;

        proxy.heal();
        isolated.write_all(b"back").await.unwrap();
        expect_bytes(&mut isolated, b"back").await;
    }

    #[tokio::test]
    async fn an_unreachable_upstream_resets_the_client() {
        // Bind and release a port so that nothing listens on it.
        let upstream = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let proxy = FaultProxy::start(upstream);
        let mut socket = connect(&proxy).await;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(EVENT_MS_MAX), socket.read(&mut byte))
            .await
            .expect("the proxy gives up on the upstream within the limit");
        assert!(matches!(read, Err(ref e) if e.kind() == io::ErrorKind::ConnectionReset), "got {read:?}");
    }
}
