//! A blocking SMTP server: listeners, a thread per connection, STARTTLS and implicit TLS
//! (rustls), a connection limit, per-command deadlines and graceful shutdown.
//!
//! The protocol is the engine's [`ServerSession`]; user code is a [`Handler`] reached through
//! [`Dispatch`]. This module only accepts, reads, writes, keeps time and does TLS.
//!
//! A thread per connection was chosen by measurement on the 2-core reference machine: with
//! 256 KiB reserved (and only a few KiB touched) per thread stack it holds 10,000 idle
//! connections, and a blocked thread costs nothing while its client is silent. See
//! `bench/README.md` for the figures.
//!
//! ```no_run
//! use smtp_core::blocking::server::{Server, ServerOptions};
//! use smtp_core::handler::DiscardHandler;
//! use smtp_core::server::ServerConfig;
//!
//! let options = ServerOptions::new(ServerConfig::new("mx.example"));
//! let server = Server::builder(DiscardHandler, options).listen("127.0.0.1:2525")?.start()?;
//! println!("listening on {}", server.local_addrs()[0]);
//! server.shutdown(std::time::Duration::from_secs(10));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::handler::{ConnectionInfo, Dispatch, Flow, Handler};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::{ServerConfig, ServerSession};

/// How the server runs, beyond the protocol settings of [`ServerConfig`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The protocol settings given to every session. `starttls` is turned on when
    /// [`ServerOptions::tls`] is set.
    pub session: ServerConfig,
    /// The certificate and key for STARTTLS and implicit-TLS listeners.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections served at once; beyond, a new client gets 421 and is closed.
    /// Default 10,000.
    pub max_connections: usize,
    /// Bytes read from a socket at a time. Default 16 KiB: enough for pipelined batches,
    /// small enough that thousands of idle connections stay cheap. (The async server
    /// reads into one such buffer per thread, so its idle connections hold none.)
    pub read_buffer: usize,
    /// Stack reserved for each connection thread. Default 256 KiB.
    pub thread_stack: usize,
}

impl ServerOptions {
    /// Options with the defaults documented on each field.
    pub fn new(session: ServerConfig) -> ServerOptions {
        ServerOptions {
            session,
            tls: None,
            max_connections: 10_000,
            read_buffer: 16 * 1024,
            thread_stack: 256 * 1024,
        }
    }
}

/// Collects listeners before [`ServerBuilder::start`].
#[derive(Debug)]
pub struct ServerBuilder<H> {
    handler: H,
    options: ServerOptions,
    listeners: Vec<(TcpListener, bool)>,
}

impl<H: Handler> ServerBuilder<H> {
    /// Adds a plain listener (STARTTLS is offered when TLS is configured).
    pub fn listen(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        self.listeners.push((TcpListener::bind(addr)?, false));
        Ok(self)
    }

    /// Adds an implicit-TLS listener (port 465 style). Needs [`ServerOptions::tls`].
    pub fn listen_tls(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        if self.options.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an implicit-TLS listener needs a TLS configuration",
            ));
        }
        self.listeners.push((TcpListener::bind(addr)?, true));
        Ok(self)
    }

    /// Adds an already bound listener.
    pub fn listener(mut self, listener: TcpListener, implicit_tls: bool) -> Self {
        self.listeners.push((listener, implicit_tls));
        self
    }

    /// Starts accepting on every listener, each in its own thread.
    pub fn start(self) -> io::Result<Server> {
        if self.listeners.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no listener"));
        }
        let mut options = self.options;
        options.session.starttls = options.tls.is_some();
        let shared = Arc::new(Shared {
            handler: self.handler,
            options,
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            finished: Condvar::new(),
        });
        let mut local_addrs = Vec::new();
        let mut acceptors = Vec::new();
        for (listener, implicit_tls) in self.listeners {
            let addr = listener.local_addr()?;
            local_addrs.push(addr);
            let shared = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("smtpx-accept-{addr}"))
                .spawn(move || accept_loop(&shared, &listener, implicit_tls))?;
            acceptors.push(handle);
        }
        Ok(Server {
            shared: Some(shared),
            local_addrs,
            acceptors,
        })
    }
}

/// A running server. Dropping it shuts it down with a 30-second grace period.
#[derive(Debug)]
pub struct Server {
    shared: Option<Arc<dyn Control>>,
    local_addrs: Vec<SocketAddr>,
    acceptors: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Starts building a server around `handler`.
    pub fn builder<H: Handler>(handler: H, options: ServerOptions) -> ServerBuilder<H> {
        ServerBuilder {
            handler,
            options,
            listeners: Vec::new(),
        }
    }

    /// The addresses the listeners are bound to, in the order they were added.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.active())
    }

    /// Stops accepting, lets transactions in flight finish for up to `grace`, closes idle
    /// connections with 421, then cuts whatever is left. Returns the number of connections
    /// that had to be cut.
    pub fn shutdown(mut self, grace: Duration) -> usize {
        self.stop(grace)
    }

    fn stop(&mut self, grace: Duration) -> usize {
        let Some(shared) = self.shared.take() else {
            return 0;
        };
        shared.begin_stop();
        // Wake each acceptor blocked in accept() with a connection of our own.
        for addr in &self.local_addrs {
            let _ = TcpStream::connect_timeout(&wake_addr(*addr), Duration::from_secs(1));
        }
        for handle in self.acceptors.drain(..) {
            let _ = handle.join();
        }
        shared.drain(grace)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(30));
    }
}

/// A wildcard bind address is not connectable everywhere; wake it through loopback.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

/// The type-erased part of the server that [`Server`] controls.
trait Control: Send + Sync + std::fmt::Debug {
    fn active(&self) -> usize;
    fn begin_stop(&self);
    fn drain(&self, grace: Duration) -> usize;
}

/// One live connection, as the shutdown sees it.
#[derive(Debug)]
struct Live {
    stream: Arc<TcpStream>,
    /// Between transactions: safe to end with 421 at shutdown.
    idle: AtomicBool,
}

struct Shared<H> {
    handler: H,
    options: ServerOptions,
    epoch: Instant,
    next_id: AtomicU64,
    active: AtomicUsize,
    stopping: AtomicBool,
    connections: Mutex<HashMap<u64, Arc<Live>>>,
    finished: Condvar,
}

impl<H> std::fmt::Debug for Shared<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("active", &self.active)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Control for Shared<H> {
    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // Idle connections are ended now: their threads see end of input and say 421.
        for live in lock(&self.connections).values() {
            if live.idle.load(Ordering::Acquire) {
                let _ = live.stream.shutdown(Shutdown::Read);
            }
        }
    }

    fn drain(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut connections = lock(&self.connections);
        while !connections.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            connections = match self.finished.wait_timeout(connections, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let cut = connections.len();
        for live in connections.values() {
            let _ = live.stream.shutdown(Shutdown::Both);
        }
        // Let the cut threads unwind their handlers (a Maildir removes its partial file).
        let until = Instant::now() + Duration::from_secs(5);
        while !connections.is_empty() && Instant::now() < until {
            connections = match self
                .finished
                .wait_timeout(connections, Duration::from_millis(100))
            {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        if cut > 0 {
            log::warn!("shutdown: cut {cut} connection(s) still busy after the grace period");
        }
        cut
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking connection thread must not take the whole server down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop<H: Handler>(shared: &Arc<Shared<H>>, listener: &TcpListener, implicit_tls: bool) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) => {
                if shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let _ = stream.set_nodelay(true);
        let active = shared.active.fetch_add(1, Ordering::AcqRel) + 1;
        if active > shared.options.max_connections {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            refuse_busy(shared, &stream);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(stream);
        let live = Arc::new(Live {
            stream: Arc::clone(&stream),
            idle: AtomicBool::new(true),
        });
        lock(&shared.connections).insert(id, Arc::clone(&live));
        let worker = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .stack_size(shared.options.thread_stack)
            .spawn(move || {
                let result = serve(&worker, id, peer, &live, implicit_tls);
                if let Err(e) = result {
                    log::info!("conn={id} peer={peer} ended: {e}");
                }
                let _ = live.stream.shutdown(Shutdown::Both);
                let mut connections = lock(&worker.connections);
                connections.remove(&id);
                worker.active.fetch_sub(1, Ordering::AcqRel);
                worker.finished.notify_all();
            });
        if let Err(e) = spawned {
            log::warn!("conn={id} peer={peer} no thread: {e}");
            lock(&shared.connections).remove(&id);
            shared.active.fetch_sub(1, Ordering::AcqRel);
            refuse_busy(shared, &stream);
        }
    }
}

/// Over the connection limit: one 421 line, without blocking the acceptor.
fn refuse_busy<H>(shared: &Shared<H>, stream: &TcpStream) {
    let reply = Reply::new(
        ReplyCode::SERVICE_UNAVAILABLE,
        Some(EnhancedCode::new(4, 7, 0)),
        format!(
            "{} Error: too many connections, try again later",
            shared.options.session.hostname
        ),
    );
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write_all(&reply.to_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// The TCP stream shared with the shutdown registry; reads and writes go through `&TcpStream`.
#[derive(Debug)]
struct SharedTcp(Arc<TcpStream>);

impl Read for SharedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SharedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection before or after TLS.
enum Conn {
    Plain(SharedTcp),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, SharedTcp>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => &s.0,
            Conn::Tls(s) => &s.sock.0,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }

    /// Writes all of `bytes` as one piece (one TLS record run, one TCP write).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes),
            Conn::Tls(s) => {
                s.write_all(bytes)?;
                s.flush()
            }
        }
    }

    /// Wraps the plain stream in TLS and completes the handshake within `timeout`.
    fn upgrade(self, config: &Arc<rustls::ServerConfig>, timeout: Duration) -> io::Result<Conn> {
        let Conn::Plain(tcp) = self else {
            return Err(io::Error::other("TLS is already active"));
        };
        let mut tls =
            rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        // One deadline for the whole handshake: a socket timeout alone restarts with every
        // read, so a client trickling its ClientHello would hold this thread forever.
        let mut io = HandshakeIo {
            tcp: &tcp,
            deadline: Instant::now() + timeout,
        };
        while tls.is_handshaking() {
            tls.complete_io(&mut io)?;
        }
        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(tls, tcp))))
    }
}

/// The TCP stream during a TLS handshake: every read and write waits at most until the
/// handshake's deadline, and fails with `TimedOut` once it has passed.
struct HandshakeIo<'a> {
    tcp: &'a SharedTcp,
    deadline: Instant,
}

impl HandshakeIo<'_> {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not finished in time",
            ));
        }
        Ok(left)
    }
}

impl Read for HandshakeIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.0.set_read_timeout(Some(self.remaining()?))?;
        (&*self.tcp.0).read(buf)
    }
}

impl Write for HandshakeIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.0.set_write_timeout(Some(self.remaining()?))?;
        (&*self.tcp.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn serve<H: Handler>(
    shared: &Shared<H>,
    id: u64,
    peer: SocketAddr,
    live: &Live,
    implicit_tls: bool,
) -> io::Result<()> {
    let options = &shared.options;
    let now = || shared.epoch.elapsed();
    let tcp = &live.stream;
    tcp.set_write_timeout(Some(options.session.command_timeout))?;
    let mut conn = Conn::Plain(SharedTcp(Arc::clone(tcp)));
    let mut config = options.session.clone();
    if implicit_tls {
        let tls = options
            .tls
            .as_ref()
            .ok_or_else(|| io::Error::other("no TLS configuration"))?;
        conn = conn.upgrade(tls, config.command_timeout)?;
        config.tls_active = true;
    }
    let info = ConnectionInfo {
        id,
        peer: Some(peer),
        local: tcp.local_addr().ok(),
        hostname: config.hostname.clone(),
        tls: implicit_tls,
    };
    log::info!(
        "conn={id} peer={peer} connected{}",
        if implicit_tls { " tls" } else { "" }
    );
    let (mut dispatch, refusal) = match shared.handler.connect(&info) {
        Ok(handler) => (Dispatch::new(handler, implicit_tls), None),
        Err(reply) => (Dispatch::refused(), Some(reply)),
    };
    let mut session = ServerSession::new(config, now());
    let mut buf = vec![0u8; options.read_buffer];
    let result = drive(
        shared,
        &mut session,
        &mut dispatch,
        refusal.as_ref(),
        &mut conn,
        &mut buf,
        live,
    );
    // Whatever ended the loop, a message in progress must not survive.
    session.receive_eof();
    dispatch.run(&mut session, refusal.as_ref());
    dispatch.close();
    log::info!("conn={id} peer={peer} closed");
    result
}

fn drive<S: crate::handler::SessionHandler, H: Handler>(
    shared: &Shared<H>,
    session: &mut ServerSession,
    dispatch: &mut Dispatch<S>,
    refusal: Option<&Reply>,
    conn: &mut Conn,
    buf: &mut [u8],
    live: &Live,
) -> io::Result<()> {
    let now = || shared.epoch.elapsed();
    loop {
        let flow = dispatch.run(session, refusal);
        // Publish whether a transaction is open before the replies go out: once the client
        // has its 354 (or 250 to MAIL), a shutdown must not take it for idle.
        let idle = session.is_idle();
        live.idle.store(idle, Ordering::Release);
        let wrote = !session.output().is_empty();
        if wrote {
            conn.write_all(session.output())?;
            session.clear_output();
        }
        match flow {
            Flow::Close => return Ok(()),
            Flow::StartTls => {
                let tls = shared
                    .options
                    .tls
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no TLS configuration"))?;
                let plain =
                    std::mem::replace(conn, Conn::Plain(SharedTcp(Arc::clone(&live.stream))));
                *conn = plain.upgrade(tls, shared.options.session.command_timeout)?;
                conn.tcp()
                    .set_write_timeout(Some(shared.options.session.command_timeout))?;
                session.tls_established(now());
                dispatch.tls_started();
                continue;
            }
            Flow::Continue if wrote => {
                // The session holds input back while its output is full (a client that
                // pipelines without reading): step it again now that the output is out,
                // before waiting for input that may already be here.
                continue;
            }
            Flow::Continue => {}
        }
        if idle && shared.stopping.load(Ordering::Acquire) {
            // Shutdown: a finished transaction is the moment to leave.
            let reply = Reply::new(
                ReplyCode::SERVICE_UNAVAILABLE,
                Some(EnhancedCode::new(4, 3, 2)),
                format!(
                    "{} Service shutting down, try again later",
                    shared.options.session.hostname
                ),
            );
            conn.write_all(&reply.to_bytes())?;
            return Ok(());
        }
        let timeout = match session.next_deadline() {
            Some(deadline) => deadline.saturating_sub(now()).max(Duration::from_millis(1)),
            None => shared.options.session.command_timeout,
        };
        conn.tcp().set_read_timeout(Some(timeout))?;
        match conn.read(buf) {
            Ok(0) => {
                if shared.stopping.load(Ordering::Acquire) && session.is_idle() {
                    continue;
                }
                session.receive_eof();
            }
            Ok(n) => {
                let mut rest = &buf[..n];
                let at = now();
                loop {
                    let taken = session.receive(rest, at);
                    rest = &rest[taken..];
                    if rest.is_empty() {
                        break;
                    }
                    // The session's input is full: let it work, write its replies, go on.
                    if dispatch.run(session, refusal) == Flow::Close {
                        conn.write_all(session.output())?;
                        return Ok(());
                    }
                    conn.write_all(session.output())?;
                    session.clear_output();
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(now());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
