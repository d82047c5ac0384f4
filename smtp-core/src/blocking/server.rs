//! A blocking SMTP server: listeners, a thread per connection, STARTTLS and implicit TLS
//! (rustls), a connection limit, per-command deadlines and graceful shutdown.
//!
//! Each connection is the sans-IO [connection layer](crate::server::connection) (the
//! session, the hook dispatch, deadlines, STARTTLS handover, shutdown); user code is a
//! [`Handler`]. This module only accepts, reads, writes, keeps time and does TLS I/O.
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

use crate::handler::{Answer, Handler};
use crate::server::connection::{self, Action, Connection};

pub use crate::server::options::{ListenerOptions, ServerOptions};

/// Collects listeners before [`ServerBuilder::start`].
#[derive(Debug)]
pub struct ServerBuilder<H> {
    handler: H,
    options: ServerOptions,
    listeners: Vec<(TcpListener, ListenerOptions)>,
}

impl<H: Handler> ServerBuilder<H> {
    /// Adds a plain listener (STARTTLS is offered when TLS is configured), with the
    /// server-wide PROXY setting ([`ServerOptions::proxy_protocol`]).
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        let listener = self.options.listener_options(false);
        self.listen_with(addr, listener)
    }

    /// Adds an implicit-TLS listener (port 465 style), with the server-wide PROXY
    /// setting. Needs [`ServerOptions::tls`].
    pub fn listen_tls(self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        let listener = self.options.listener_options(true);
        self.listen_with(addr, listener)
    }

    /// Adds a listener with its own [`ListenerOptions`] (implicit TLS or not, PROXY or
    /// not), whatever the server-wide setting.
    pub fn listen_with(
        mut self,
        addr: impl ToSocketAddrs,
        listener: ListenerOptions,
    ) -> io::Result<Self> {
        self.options.check_listener(&listener)?;
        let backlog = self.options.listen_backlog;
        self.listeners.push((bind(addr, backlog)?, listener));
        Ok(self)
    }

    /// Adds an already bound listener (it keeps its own accept queue), with the
    /// server-wide PROXY setting.
    pub fn listener(self, listener: TcpListener, implicit_tls: bool) -> Self {
        let options = self.options.listener_options(implicit_tls);
        self.listener_with(listener, options)
    }

    /// Adds an already bound listener with its own [`ListenerOptions`]. An implicit-TLS
    /// listener without [`ServerOptions::tls`] makes [`ServerBuilder::start`] fail.
    pub fn listener_with(mut self, listener: TcpListener, options: ListenerOptions) -> Self {
        self.listeners.push((listener, options));
        self
    }

    /// Starts accepting on every listener, each in its own thread.
    pub fn start(self) -> io::Result<Server> {
        if self.listeners.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no listener"));
        }
        let mut options = self.options;
        for (_, listener) in &self.listeners {
            options.check_listener(listener)?;
        }
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
        for (listener, listening) in self.listeners {
            let addr = listener.local_addr()?;
            local_addrs.push(addr);
            let shared = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("smtpx-accept-{addr}"))
                .spawn(move || accept_loop(&shared, &listener, &Arc::new(listening)))?;
            acceptors.push(handle);
        }
        Ok(Server {
            shared: Some(shared),
            local_addrs,
            acceptors,
        })
    }
}

/// Binds a listener with an accept queue of `backlog` ([`ServerOptions::listen_backlog`]),
/// trying each address `addr` resolves to in turn. std's `TcpListener::bind` always asks
/// for 128, which a burst of connections overflows.
#[cfg(unix)]
fn bind(addr: impl ToSocketAddrs, backlog: u32) -> io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        let family = if addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let attempt = (|| -> io::Result<TcpListener> {
            let fd =
                rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
            // As std does: a restarted server may bind while old connections linger.
            rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
            rustix::net::bind(&fd, &addr)?;
            rustix::net::listen(&fd, i32::try_from(backlog).unwrap_or(i32::MAX))?;
            Ok(TcpListener::from(fd))
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// Elsewhere std's own bind (its fixed accept queue of 128).
#[cfg(not(unix))]
fn bind(addr: impl ToSocketAddrs, _backlog: u32) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
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
    pub fn builder<H: Handler>(handler: H, mut options: ServerOptions) -> ServerBuilder<H> {
        options.offer_handler_auth(handler.auth_mechanisms());
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

fn accept_loop<H: Handler>(
    shared: &Arc<Shared<H>>,
    listener: &TcpListener,
    listening: &Arc<ListenerOptions>,
) {
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
        let listening = Arc::clone(listening);
        let spawned = thread::Builder::new()
            .stack_size(shared.options.thread_stack)
            .spawn(move || {
                let result = serve(&worker, id, peer, &live, &listening);
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
    let reply = connection::busy_reply(&shared.options.session.hostname);
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write_all(&reply);
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
    // rustls hands its queued records over as a vector: one system call and one TCP
    // segment for all of them (the default method writes only the first).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&*self.0).write_vectored(bufs)
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

    /// Ends TLS with a close_notify (so that the peer can tell the end from a cut); the
    /// caller closes TCP.
    fn close_notify(&mut self) {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            while s.conn.wants_write() {
                if s.conn.write_tls(&mut s.sock).is_err() {
                    break;
                }
            }
        }
    }

    /// What the TLS handshake negotiated, for the handler.
    fn tls_info(&self) -> crate::tls::TlsInfo {
        match self {
            Conn::Tls(s) => crate::tls::TlsInfo::from_server(&s.conn),
            Conn::Plain(_) => crate::tls::TlsInfo::default(),
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
        // `complete_io` also sends the session ticket as soon as the client's Finished is
        // in. Keep it that way: holding the ticket back to share the EHLO reply's write
        // saves a system call but leaves the client's Finished unacknowledged, and a
        // client with Nagle's algorithm on (most) then holds its EHLO until the delayed
        // ACK: 16 instead of 61 messages a second for one client in bench/tls_handshake.py.
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
    // A whole flight (ServerHello to Finished) in one write, not one per record.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.tcp.0.set_write_timeout(Some(self.remaining()?))?;
        (&*self.tcp.0).write_vectored(bufs)
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
    listening: &ListenerOptions,
) -> io::Result<()> {
    let options = &shared.options;
    let tcp = &live.stream;
    tcp.set_write_timeout(Some(options.session.command_timeout))?;
    let mut conn = Conn::Plain(SharedTcp(Arc::clone(tcp)));
    let mut connection = Connection::new(
        options.session.clone(),
        shared.epoch.elapsed(),
        listening.implicit_tls,
    );
    if let Some(trace) = &options.trace {
        connection.set_trace(trace.clone(), id);
    }
    if let Some(proxy) = &listening.proxy_protocol {
        connection.expect_proxy_header(proxy, Some(peer), shared.epoch.elapsed());
    }
    let mut buf = vec![0u8; options.read_buffer];
    let result = drive(
        shared,
        &mut connection,
        &mut conn,
        &mut buf,
        live,
        (id, peer),
    );
    log::info!(
        "conn={id} peer={} closed",
        connection.peer(Some(peer)).unwrap_or(peer)
    );
    result
}

/// The connection layer's actions carried out on a socket: the whole of this driver's
/// part of a connection. Returns the I/O error that broke the connection, if one did.
fn drive<H: Handler>(
    shared: &Shared<H>,
    connection: &mut Connection,
    conn: &mut Conn,
    buf: &mut [u8],
    live: &Live,
    (id, peer): (u64, SocketAddr),
) -> io::Result<()> {
    let now = || shared.epoch.elapsed();
    let mut handler: Option<H::Session> = None;
    let mut failure: Option<io::Error> = None;
    let mut stop_seen = false;
    loop {
        match connection.next_action(now()) {
            Action::Connect => {
                let info = connection.connected_info(id, peer, live.stream.local_addr().ok());
                match shared.handler.connect(&info) {
                    Ok(h) => {
                        connection.connected(None);
                        connection
                            .answer_by_default(crate::handler::SessionHandler::default_hooks(&h));
                        handler = Some(h);
                    }
                    Err(reply) => connection.connected(Some(reply)),
                }
            }
            Action::Hook(hook) => {
                // A refused connection gets no hook calls: the layer answers them.
                let answer = match handler.as_mut() {
                    Some(h) => hook.call(h),
                    None => Answer::Done,
                };
                connection.answer(answer);
            }
            Action::Write(bytes) => {
                let n = bytes.len();
                match conn.write_all(bytes) {
                    Ok(()) => connection.written(n),
                    Err(e) => {
                        failure.get_or_insert(e);
                        connection.lost();
                    }
                }
            }
            Action::Read { deadline } => {
                if !stop_seen && shared.stopping.load(Ordering::Acquire) {
                    stop_seen = true;
                    connection.stop();
                    continue;
                }
                // Published before waiting: a shutdown ends an idle connection by closing
                // its input (see `Control::begin_stop`), never one in a transaction.
                live.idle.store(connection.is_idle(), Ordering::Release);
                let timeout = deadline.saturating_sub(now()).max(Duration::from_millis(1));
                if let Err(e) = conn.tcp().set_read_timeout(Some(timeout)) {
                    failure.get_or_insert(e);
                    connection.lost();
                    continue;
                }
                let limit = connection.read_limit().min(buf.len());
                match conn.read(&mut buf[..limit]) {
                    Ok(0) => {
                        if shared.stopping.load(Ordering::Acquire) {
                            stop_seen = true;
                            connection.stop();
                        }
                        connection.receive_eof();
                    }
                    Ok(n) => {
                        live.idle.store(false, Ordering::Release);
                        connection.receive(&buf[..n], now());
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        connection.timeout(now());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failure.get_or_insert(e);
                        connection.lost();
                    }
                }
            }
            Action::StartTls { deadline } => {
                let upgraded = match shared.options.tls.as_ref() {
                    Some(tls) => {
                        let plain = std::mem::replace(
                            conn,
                            Conn::Plain(SharedTcp(Arc::clone(&live.stream))),
                        );
                        plain
                            .upgrade(tls, deadline.saturating_sub(now()))
                            .and_then(|c| {
                                *conn = c;
                                conn.tcp()
                                    .set_write_timeout(Some(shared.options.session.command_timeout))
                            })
                    }
                    None => Err(io::Error::other("no TLS configuration")),
                };
                match upgraded {
                    Ok(()) => connection.tls_established_with(now(), conn.tls_info()),
                    Err(e) => {
                        log::info!("conn={id} peer={peer} TLS handshake failed: {e}");
                        failure.get_or_insert(e);
                        connection.lost();
                    }
                }
            }
            Action::Close => {
                conn.close_notify();
                return failure.map_or(Ok(()), Err);
            }
        }
    }
}
