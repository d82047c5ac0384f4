//! An async SMTP server on tokio: listeners, a task per connection, STARTTLS and implicit
//! TLS (tokio-rustls), a connection limit, per-command deadlines and graceful shutdown.
//!
//! It is the [blocking server](crate::blocking::server) on tasks instead of threads, with
//! the same [`ServerOptions`] (`thread_stack` is not used). Each connection is the same
//! sans-IO [connection layer](crate::server::connection) as the blocking server's; this
//! module only reads, writes, keeps timers and does TLS I/O. User code is either
//! - a synchronous [`Handler`] ([`AsyncServer::builder`]).
//!   Its hooks run on the runtime's thread. On a multi-threaded runtime each hook that
//!   [`SessionHandler::may_block`] names (by default every hook) runs in
//!   [`tokio::task::block_in_place`], so a hook that blocks (the
//!   [`MaildirHandler`](crate::maildir::MaildirHandler) fsyncs every message) does not
//!   stall other connections; on a current-thread runtime it does stall them, so keep hooks
//!   quick there or use an [`AsyncHandler`]. See [`AsyncServerBuilder::blocking_hooks`]
//!   for the other places a hook that may block can run ([`BlockingHooks`]).
//! - an [`AsyncHandler`] whose [`AsyncSessionHandler`] hooks are `async fn`s
//!   ([`AsyncServer::builder_async`]). They are awaited where the connection layer asks
//!   for them, so both kinds of user code see the same hooks, in the same order, with the
//!   same [`Transaction`](crate::server::hooks::Transaction).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use smtp_core::asynchronous::server::AsyncServer;
//! use smtp_core::blocking::server::ServerOptions;
//! use smtp_core::handler::DiscardHandler;
//! use smtp_core::server::ServerConfig;
//!
//! let options = ServerOptions::new(ServerConfig::new("mx.example"));
//! let server = AsyncServer::builder(DiscardHandler, options).listen("127.0.0.1:2525")?.start()?;
//! println!("listening on {}", server.local_addrs()[0]);
//! server.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! Shutdown: accepting stops at once; connections between transactions get
//! `421 4.3.2` at once (also those waiting for their next command), transactions in flight
//! may finish within the grace period and then get the 421, and whatever is left after it
//! is cut. Dropping the [`AsyncServerHandle`] without calling
//! [`shutdown`](AsyncServerHandle::shutdown) starts the same shutdown without a deadline
//! and without waiting (the tasks end as their transactions do, or by their timeouts).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::phase::{Phase, PhaseBell, PhaseListener};
use super::spare_worker::SpareWorkers;
use crate::clock::Clock;
use crate::reply::Reply;
use crate::server::connection::{self, Action, Connection};
use crate::server::hooks::{Answer, ConnectionInfo, Handler, Hook, HookSet, SessionHandler};
pub use crate::server::hooks::{AsyncHandler, AsyncSessionHandler};
pub use crate::server::options::{ListenerOptions, ServerOptions};

/// How long the cut connections get to unwind their handlers after the grace period.
const UNWIND: Duration = Duration::from_secs(5);

/// Collects listeners before [`AsyncServerBuilder::start`].
pub struct AsyncServerBuilder {
    serve: Arc<dyn Serve>,
    options: ServerOptions,
    listeners: Vec<(Pending, ListenerOptions)>,
    hooks: BlockingHooks,
}

/// Where a synchronous [`Handler`]'s hooks that may block run
/// ([`SessionHandler::may_block`]; the others always run on the connection's worker).
/// See [`AsyncServerBuilder::blocking_hooks`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockingHooks {
    /// On the connection's worker thread, like the quick ones: for hooks that never
    /// block. A hook that blocks stalls the other connections of its worker.
    Inline,
    /// Each turn of hooks in [`tokio::task::block_in_place`], which first hands the
    /// worker's other connections to another thread. Safe for any hook; costs two
    /// thread switches per turn (about a message's worth of CPU on a small server).
    #[default]
    BlockInPlace,
    /// On the connection's worker as long as another worker stays free, and in
    /// `block_in_place` when it would take the last one; a watchdog thread moves the
    /// held worker's connections and the I/O driver to a free worker when a hook has run
    /// for a tick, so a hook that blocks delays the others by a millisecond or two while
    /// hooks keep blocking, and by up to ten milliseconds when it is the first in a
    /// second (the watchdog looks every millisecond only then). Nearly the cost of
    /// [`Inline`](Self::Inline) for hooks that may block. On a runtime with more workers
    /// than CPUs, one worker waits in reserve, kept off the CPUs, while no hook holds
    /// another for that tick.
    ///
    /// Only for hooks that never wake a task of the runtime they are served on (no
    /// `tokio::spawn`, no send on a tokio channel to such a task): tokio keeps a task
    /// woken from a worker in that worker's LIFO slot, where no other worker can take
    /// it until the hook returns, and a hook that then waits for that task never
    /// returns. The C library's servers use it for their callbacks. On a runtime of one
    /// worker it is [`BlockInPlace`](Self::BlockInPlace).
    SpareWorker,
}

/// A listener before [`AsyncServerBuilder::start`]: bound by the builder (so that bind
/// errors come from `listen`), listening once started, with an accept queue of
/// [`ServerOptions::listen_backlog`] (a burst of connections waits there instead of
/// having its SYNs dropped and retried a second later).
#[derive(Debug)]
enum Pending {
    Bound(TcpSocket),
    Listening(StdTcpListener),
}

fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpSocket> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return Ok(socket),
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

impl std::fmt::Debug for AsyncServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncServerBuilder")
            .field("options", &self.options)
            .field("listeners", &self.listeners)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// The async server's entry points. See the [module docs](self).
#[derive(Debug)]
pub struct AsyncServer;

impl AsyncServer {
    /// A server whose user code is a synchronous [`Handler`].
    pub fn builder<H: Handler>(handler: H, mut options: ServerOptions) -> AsyncServerBuilder {
        options.offer_handler_auth(handler.auth_mechanisms());
        AsyncServerBuilder {
            serve: Arc::new(SyncServe(handler)),
            options,
            listeners: Vec::new(),
            hooks: BlockingHooks::BlockInPlace,
        }
    }

    /// A server whose user code is an [`AsyncHandler`].
    pub fn builder_async<H: AsyncHandler>(
        handler: H,
        mut options: ServerOptions,
    ) -> AsyncServerBuilder {
        options.offer_handler_auth(handler.auth_mechanisms());
        AsyncServerBuilder {
            serve: Arc::new(AsyncServe(handler)),
            options,
            listeners: Vec::new(),
            hooks: BlockingHooks::Inline,
        }
    }
}

impl AsyncServerBuilder {
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
        self.listeners.push((Pending::Bound(bind(addr)?), listener));
        Ok(self)
    }

    /// Adds an already bound listener (it keeps its own accept queue), with the
    /// server-wide PROXY setting.
    pub fn listener(self, listener: StdTcpListener, implicit_tls: bool) -> Self {
        let options = self.options.listener_options(implicit_tls);
        self.listener_with(listener, options)
    }

    /// Adds an already bound listener with its own [`ListenerOptions`]. An implicit-TLS
    /// listener without [`ServerOptions::tls`] makes [`AsyncServerBuilder::start`] fail.
    pub fn listener_with(mut self, listener: StdTcpListener, options: ListenerOptions) -> Self {
        self.listeners.push((Pending::Listening(listener), options));
        self
    }

    /// For a synchronous [`Handler`] on a multi-threaded runtime: whether the hooks that
    /// [`SessionHandler::may_block`] names (by default all of them) run inside
    /// [`tokio::task::block_in_place`]. Default true, which is right for hooks that may
    /// block (file or database I/O); turn it off when no hook blocks, to save the
    /// hand-over of the worker thread (or say which ones do in `may_block`). On a
    /// current-thread runtime it has no effect (hooks always run inline there).
    /// Shorthand for [`blocking_hooks`](Self::blocking_hooks) with
    /// [`BlockingHooks::BlockInPlace`] or [`BlockingHooks::Inline`].
    pub fn block_in_place(self, on: bool) -> Self {
        self.blocking_hooks(if on {
            BlockingHooks::BlockInPlace
        } else {
            BlockingHooks::Inline
        })
    }

    /// For a synchronous [`Handler`] on a multi-threaded runtime: where its hooks that
    /// may block run (default [`BlockingHooks::BlockInPlace`]). On a current-thread
    /// runtime every hook runs inline.
    ///
    /// ```no_run
    /// # fn demo() -> std::io::Result<()> {
    /// use smtp_core::asynchronous::server::{AsyncServer, BlockingHooks};
    /// use smtp_core::blocking::server::ServerOptions;
    /// use smtp_core::handler::DiscardHandler;
    /// use smtp_core::server::ServerConfig;
    ///
    /// let options = ServerOptions::new(ServerConfig::new("mx.example"));
    /// let builder = AsyncServer::builder(DiscardHandler, options)
    ///     .blocking_hooks(BlockingHooks::SpareWorker)
    ///     .listen("127.0.0.1:2525")?;
    /// # Ok(()) }
    /// ```
    pub fn blocking_hooks(mut self, hooks: BlockingHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Starts accepting on every listener, each in its own task. Must be called within a
    /// tokio runtime (with the time and I/O drivers enabled).
    pub fn start(self) -> io::Result<AsyncServerHandle> {
        if self.listeners.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no listener"));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("AsyncServer::start needs a runtime: {e}")))?;
        let mut options = self.options;
        for (_, listener) in &self.listeners {
            options.check_listener(listener)?;
        }
        options.session.starttls = options.tls.is_some();
        // A current-thread runtime has no worker to hand over or to spare.
        let hooks = if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            self.hooks
        } else {
            BlockingHooks::Inline
        };
        let spare = match hooks {
            BlockingHooks::SpareWorker => {
                SpareWorkers::start(runtime.metrics().num_workers(), runtime.clone())?
            }
            BlockingHooks::Inline | BlockingHooks::BlockInPlace => None,
        };
        let shared = Arc::new(Shared {
            acceptor: options.tls.clone().map(TlsAcceptor::from),
            options,
            clock: Clock::start(),
            next_id: AtomicU64::new(1),
            active: watch::Sender::new(0),
            phase: PhaseBell::default(),
            hooks,
            spare,
        });
        let backlog = shared.options.listen_backlog;
        let mut local_addrs = Vec::new();
        let mut listeners = Vec::new();
        for (pending, listening) in self.listeners {
            let listener = match pending {
                Pending::Bound(socket) => socket.listen(backlog)?,
                Pending::Listening(listener) => {
                    listener.set_nonblocking(true)?;
                    TcpListener::from_std(listener)?
                }
            };
            local_addrs.push(listener.local_addr()?);
            listeners.push((listener, Arc::new(listening)));
        }
        let acceptors = listeners
            .into_iter()
            .map(|(listener, listening)| {
                let shared = Arc::clone(&shared);
                let serve = Arc::clone(&self.serve);
                runtime.spawn(accept_loop(shared, serve, listener, listening))
            })
            .collect();
        Ok(AsyncServerHandle {
            shared,
            local_addrs,
            acceptors,
        })
    }
}

/// A running server. See the [module docs](self) for what dropping it does.
#[derive(Debug)]
pub struct AsyncServerHandle {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    acceptors: Vec<JoinHandle<()>>,
}

impl AsyncServerHandle {
    /// The addresses the listeners are bound to, in the order they were added.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        *self.shared.active.borrow()
    }

    /// Stops accepting, closes idle connections with 421, lets transactions in flight
    /// finish for up to `grace` (then 421), then cuts whatever is left. Returns the number
    /// of connections that had to be cut.
    pub async fn shutdown(mut self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        self.shared.advance(Phase::Stopping);
        for acceptor in self.acceptors.drain(..) {
            let abort = acceptor.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), acceptor)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let mut active = self.shared.active.subscribe();
        let _ = tokio::time::timeout_at(deadline, active.wait_for(|n| *n == 0)).await;
        let cut = *active.borrow();
        if cut > 0 {
            self.shared.advance(Phase::Cut);
            // Let the cut tasks unwind their handlers (a Maildir removes its partial file).
            let _ = tokio::time::timeout(UNWIND, active.wait_for(|n| *n == 0)).await;
            log::warn!("shutdown: cut {cut} connection(s) still busy after the grace period");
        }
        cut
    }
}

impl Drop for AsyncServerHandle {
    fn drop(&mut self) {
        // Stops accepting and ends idle connections; nothing here can wait.
        self.shared.advance(Phase::Stopping);
    }
}

/// What every connection task shares.
struct Shared {
    options: ServerOptions,
    acceptor: Option<TlsAcceptor>,
    clock: Clock,
    next_id: AtomicU64,
    /// Connections being served; shutdown waits for zero.
    active: watch::Sender<usize>,
    /// Serving, then stopping, then cut: one signal, so that a connection waiting for
    /// input watches one thing.
    phase: PhaseBell,
    hooks: BlockingHooks,
    /// With [`BlockingHooks::SpareWorker`] on a runtime of two workers or more.
    spare: Option<Arc<SpareWorkers>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("active", &*self.active.borrow())
            .field("phase", &self.phase.get())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Moves to `phase` unless the server is there or further already. A stopping server
    /// keeps no worker in reserve, so that its runtime can end.
    fn advance(&self, phase: Phase) {
        self.phase.advance(phase);
        if let Some(spare) = &self.spare {
            spare.close();
        }
    }
}

/// Decrements the active count however the task ends (even by a panicking hook).
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.send_modify(|n| *n -= 1);
    }
}

/// The handler side of a connection, type-erased so that the builder is not generic.
trait Serve: Send + Sync + 'static {
    fn serve(
        self: Arc<Self>,
        shared: Arc<Shared>,
        tcp: TcpStream,
        peer: SocketAddr,
        listening: Arc<ListenerOptions>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct SyncServe<H>(H);
struct AsyncServe<H>(H);

impl<H: Handler> Serve for SyncServe<H> {
    fn serve(
        self: Arc<Self>,
        shared: Arc<Shared>,
        tcp: TcpStream,
        peer: SocketAddr,
        listening: Arc<ListenerOptions>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _guard = ActiveGuard(Arc::clone(&shared));
            let hooks = SyncHooks {
                serve: self,
                session: None,
                hooks: shared.hooks,
                spare: shared.spare.clone(),
            };
            serve_connection(&shared, tcp, peer, &listening, hooks).await;
        })
    }
}

impl<H: AsyncHandler> Serve for AsyncServe<H> {
    fn serve(
        self: Arc<Self>,
        shared: Arc<Shared>,
        tcp: TcpStream,
        peer: SocketAddr,
        listening: Arc<ListenerOptions>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _guard = ActiveGuard(Arc::clone(&shared));
            let hooks = AsyncHooks {
                serve: self,
                session: None,
            };
            serve_connection(&shared, tcp, peer, &listening, hooks).await;
        })
    }
}

/// The user code of one connection, as the connection loop calls it: a synchronous or an
/// async handler.
trait Hooks: Send {
    /// The handler's connect hook; its refusal, if it refused.
    fn connect(&mut self, info: &ConnectionInfo) -> impl Future<Output = Option<Reply>> + Send;
    /// Answers the hook the connection has due ([`Action::Hook`]) at `now`, and possibly
    /// the ones after it; the time once answered.
    fn answer(
        &mut self,
        connection: &mut Connection,
        shared: &Shared,
        now: Duration,
    ) -> impl Future<Output = Duration> + Send;
    /// The hooks the session leaves to their defaults, once it exists.
    fn default_hooks(&self) -> HookSet {
        HookSet::EMPTY
    }
}

/// The hook due now and the session that answers it; `None` when no hook is due, or
/// when the connection was refused (no session: the layer's answer is given here).
fn due_hook<'c, 's, S>(
    connection: &'c mut Connection,
    session: &'s mut Option<S>,
    now: Duration,
) -> Option<(Hook<'c>, &'s mut S)> {
    let Some(session) = session.as_mut() else {
        if let Action::Hook(_) = connection.next_action(now) {
            connection.answer(Answer::Done);
        }
        return None;
    };
    match connection.next_action(now) {
        Action::Hook(hook) => Some((hook, session)),
        _ => None,
    }
}

/// A synchronous [`Handler`] on the runtime. The hooks that may block run where
/// [`BlockingHooks`] says; a turn of `block_in_place` hands the worker's core to another
/// thread and back, which cost 2.7x the CPU per message when every hook took one, so a
/// turn, once entered, answers every hook that follows until the connection needs I/O
/// (and so does a turn in place on a spare worker).
struct SyncHooks<H: Handler> {
    serve: Arc<SyncServe<H>>,
    session: Option<H::Session>,
    hooks: BlockingHooks,
    spare: Option<Arc<SpareWorkers>>,
}

/// Runs a turn of hooks that may block: in place when a worker can be spared, else in
/// `block_in_place`.
fn run_blocking<R>(spare: Option<&SpareWorkers>, turn: impl FnOnce() -> R) -> R {
    if let Some(_held) = spare.and_then(SpareWorkers::take) {
        return turn();
    }
    tokio::task::block_in_place(turn)
}

impl<H: Handler> Hooks for SyncHooks<H> {
    async fn connect(&mut self, info: &ConnectionInfo) -> Option<Reply> {
        // The connect hook may block as any other (a lookup of the client's address).
        let handler = &self.serve.0;
        let made = if self.hooks == BlockingHooks::Inline {
            handler.connect(info)
        } else {
            run_blocking(self.spare.as_deref(), || handler.connect(info))
        };
        match made {
            Ok(session) => {
                self.session = Some(session);
                None
            }
            Err(reply) => Some(reply),
        }
    }

    async fn answer(&mut self, layer: &mut Connection, shared: &Shared, now: Duration) -> Duration {
        let Some((hook, h)) = due_hook(layer, &mut self.session, now) else {
            return now;
        };
        if self.hooks == BlockingHooks::Inline || !h.may_block(&hook) {
            // A hook that does not block takes no time worth reading the clock for.
            let answer = hook.call(h);
            layer.answer(answer);
            return now;
        }
        run_blocking(self.spare.as_deref(), || {
            // The hook is still due: ask for it again inside, and go on with the ones that
            // follow without leaving. The clock is read once after each hook (it may have
            // taken a while): that reading is the next step's time and the turn's end.
            let mut at = now;
            while let Action::Hook(hook) = layer.next_action(at) {
                let answer = hook.call(h);
                layer.answer(answer);
                at = shared.now();
            }
            at
        })
    }

    fn default_hooks(&self) -> HookSet {
        self.session
            .as_ref()
            .map_or(HookSet::EMPTY, SessionHandler::default_hooks)
    }
}

/// An [`AsyncHandler`]: each hook awaited.
struct AsyncHooks<H: AsyncHandler> {
    serve: Arc<AsyncServe<H>>,
    session: Option<H::Session>,
}

impl<H: AsyncHandler> Hooks for AsyncHooks<H> {
    async fn connect(&mut self, info: &ConnectionInfo) -> Option<Reply> {
        match self.serve.0.connect(info).await {
            Ok(session) => {
                self.session = Some(session);
                None
            }
            Err(reply) => Some(reply),
        }
    }

    async fn answer(&mut self, layer: &mut Connection, shared: &Shared, now: Duration) -> Duration {
        let Some((hook, h)) = due_hook(layer, &mut self.session, now) else {
            return now;
        };
        let answer = hook.call_async(h).await;
        layer.answer(answer);
        shared.now()
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    serve: Arc<dyn Serve>,
    listener: TcpListener,
    listening: Arc<ListenerOptions>,
) {
    let phase = shared.phase.listen();
    loop {
        if shared.phase.get() != Phase::Serving {
            return;
        }
        let accepted = tokio::select! {
            _ = phase.moved(Phase::Serving) => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept failed: {e}");
                tokio::select! {
                    _ = phase.moved(Phase::Serving) => return,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let max = shared.options.max_connections;
        let admitted = shared.active.send_if_modified(|n| {
            if *n >= max {
                false
            } else {
                *n += 1;
                true
            }
        });
        if !admitted {
            // Over the limit: one 421 line without waiting, then close.
            let _ = tcp.try_write(&connection::busy_reply(&shared.options.session.hostname));
            continue;
        }
        let serve = Arc::clone(&serve);
        tokio::spawn(serve.serve(Arc::clone(&shared), tcp, peer, Arc::clone(&listening)));
    }
}

/// One `send` of what the socket takes at once, without waiting.
///
/// perf: straight to the system call. tokio's `try_write` first looks at the readiness it
/// keeps for the socket (and clears it when the call would block), which was a third of
/// the instructions of a reply's write. Its readiness is only a hint: when this call
/// would block, the wait that follows (`write_all`) tries once more through tokio, which
/// then learns that the socket is full and waits for it.
#[cfg(unix)]
fn send_now(tcp: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        tcp,
        bytes,
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}

#[cfg(not(unix))]
fn send_now(tcp: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    tcp.try_write(bytes)
}

/// A connection before or after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

impl Conn {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Writes what the socket takes at once, without waiting; returns how much that was.
    /// Plain TCP only (TLS has its own buffer to flush): a reply is small, so this is
    /// usually all of it, and no timer or shutdown watch is set up for it.
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Conn::Plain(s) = self else {
            return Ok(0);
        };
        let mut done = 0;
        while done < bytes.len() {
            match send_now(s, &bytes[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// What the TLS handshake negotiated, for the handler.
    fn tls_info(&self) -> crate::tls::TlsInfo {
        match self {
            Conn::Tls(s) => crate::tls::TlsInfo::from_server(s.get_ref().1),
            Conn::Plain(_) | Conn::Gone => crate::tls::TlsInfo::default(),
        }
    }

    /// The server side of the TLS handshake, finished by `until`.
    async fn upgrade(
        &mut self,
        acceptor: &TlsAcceptor,
        until: tokio::time::Instant,
    ) -> io::Result<()> {
        let Conn::Plain(tcp) = std::mem::replace(self, Conn::Gone) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = tokio::time::timeout_at(until, acceptor.accept(tcp))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))?;
        *self = Conn::Tls(Box::new(tls));
        Ok(())
    }

    async fn close(&mut self) {
        let wait = Duration::from_secs(1);
        match std::mem::replace(self, Conn::Gone) {
            Conn::Plain(mut s) => {
                let _ = tokio::time::timeout(wait, s.shutdown()).await;
            }
            Conn::Tls(mut s) => {
                let _ = tokio::time::timeout(wait, s.shutdown()).await;
            }
            Conn::Gone => {}
        }
    }
}

/// One connection: the connection layer's actions carried out on the socket.
async fn serve_connection<K: Hooks>(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    listening: &ListenerOptions,
    mut hooks: K,
) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let local = tcp.local_addr().ok();
    let mut conn = Conn::Plain(tcp);
    let mut connection = Connection::new(
        shared.options.session.clone(),
        shared.now(),
        listening.implicit_tls,
    );
    if let Some(trace) = &shared.options.trace {
        connection.set_trace(trace.clone(), id);
    }
    if let Some(proxy) = &listening.proxy_protocol {
        connection.expect_proxy_header(proxy, Some(peer), shared.now());
    }
    // perf: registered with the server's phase once for the connection's life (see
    // `phase`), not at every read.
    let phase = shared.phase.listen();
    let mut phase_seen = Phase::Serving;
    let size = shared.options.read_buffer.max(512);
    let mut failure: Option<io::Error> = None;
    let mut stop_seen = false;
    // One timer for the connection's life, moved only when the deadline comes earlier
    // than it is set for: a deadline that moves later (every command moves it) is
    // checked when the timer fires, instead of setting a timer per read.
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Duration> = None;
    // Whether the timer has been polled since it was last set (it then holds the waker).
    let mut timer_polled = false;
    // perf: the time as the connection layer is told it, read again only after a wait
    // (a read, a hook, a write the socket did not take at once): the clock has a tick's
    // resolution anyway, and reading it at every step was 3 % of the server's own
    // instructions per message.
    let mut now = shared.now();
    loop {
        match connection.next_action(now) {
            Action::Connect => {
                let info = connection.connected_info(id, peer, local);
                let refusal = hooks.connect(&info).await;
                now = shared.now();
                connection.connected(refusal);
                connection.answer_by_default(hooks.default_hooks());
            }
            Action::Hook(_) => now = hooks.answer(&mut connection, shared, now).await,
            Action::Write(bytes) => {
                let n = bytes.len();
                match write(shared, &mut conn, bytes, &phase).await {
                    Ok(waited) => {
                        if waited {
                            now = shared.now();
                        }
                        connection.written(n);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                        connection.lost();
                    }
                }
            }
            Action::StartTls { deadline } => {
                let Some(acceptor) = shared.acceptor.as_ref() else {
                    failure.get_or_insert(io::Error::other("no TLS configuration"));
                    connection.lost();
                    continue;
                };
                let until = tokio::time::Instant::from_std(shared.clock.epoch + deadline);
                let upgraded = tokio::select! {
                    () = cut(&phase) => Err(io::Error::other("cut at shutdown")),
                    r = conn.upgrade(acceptor, until) => r,
                };
                now = shared.now();
                match upgraded {
                    Ok(()) => connection.tls_established_with(now, conn.tls_info()),
                    Err(e) => {
                        log::info!("conn={id} peer={peer} TLS handshake failed: {e}");
                        failure.get_or_insert(e);
                        connection.lost();
                    }
                }
            }
            Action::Read { deadline } => {
                // The phase and the deadline are looked at before each wait as well as
                // during it, so that a client whose input is always there (the read wins
                // the wait below) still meets them.
                let moved = shared.phase.get();
                if moved == Phase::Cut {
                    failure.get_or_insert(io::Error::other("cut at shutdown"));
                    connection.lost();
                    continue;
                }
                if !stop_seen && moved >= Phase::Stopping {
                    stop_seen = true;
                    connection.stop();
                    continue;
                }
                if now >= deadline {
                    connection.timeout(now);
                    continue;
                }
                if armed.is_none_or(|at| deadline < at) {
                    let until = tokio::time::Instant::from_std(shared.clock.epoch + deadline);
                    timer.as_mut().reset(until);
                    armed = Some(deadline);
                    timer_polled = false;
                }
                let mut first = true;
                let woken = poll_fn(|cx| {
                    // The read first: woken by input, the wait ends without polling the
                    // timer and the phase again.
                    if let Poll::Ready(read) =
                        poll_receive(cx, &mut conn, size, &mut connection, shared)
                    {
                        return Poll::Ready(Woken::Read(read));
                    }
                    // perf: a timer polled once keeps this task's waker until it fires,
                    // and it cannot fire before its deadline: polled again only once the
                    // deadline is near. The time is the loop's on the first poll (read
                    // microseconds ago), the clock's on a poll after a wake-up (the
                    // timer's own, maybe, after a long wait).
                    let at = if std::mem::take(&mut first) {
                        now
                    } else {
                        shared.now()
                    };
                    let near = armed.is_none_or(|deadline| at + TIMER_SLACK >= deadline);
                    if (!timer_polled || near) && timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Woken::Timer);
                    }
                    timer_polled = true;
                    phase.poll_moved(cx, phase_seen).map(Woken::Phase)
                })
                .await;
                let read = match woken {
                    Woken::Read(read) => Some(read),
                    Woken::Timer => {
                        armed = None;
                        now = shared.now();
                        let until = tokio::time::Instant::from_std(shared.clock.epoch + deadline);
                        if tokio::time::Instant::now() < until {
                            // Set for an earlier deadline that has moved since.
                            continue;
                        }
                        None
                    }
                    Woken::Phase(moved) => {
                        now = shared.now();
                        phase_seen = moved;
                        // Cut or stopping: the next Read sees it.
                        continue;
                    }
                };
                match read {
                    None => {
                        now = shared.clock.at_least(deadline);
                        connection.timeout(now);
                    }
                    Some(Ok((0, at))) => {
                        now = at;
                        connection.receive_eof();
                    }
                    Some(Ok((_, at))) => now = at,
                    Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => now = shared.now(),
                    Some(Err(e)) => {
                        failure.get_or_insert(e);
                        connection.lost();
                    }
                }
            }
            Action::Close => break,
        }
    }
    conn.close().await;
    let peer = connection.peer(Some(peer)).unwrap_or(peer);
    if let Some(e) = failure {
        log::info!("conn={id} peer={peer} ended: {e}");
    }
    log::info!("conn={id} peer={peer} closed");
}

/// What ended a connection's wait for input.
enum Woken {
    Read(io::Result<(usize, Duration)>),
    Timer,
    Phase(Phase),
}

/// How long before its deadline a connection's timer is polled again at each wait (see
/// the Read action in [`serve_connection`]): more than the coarse clock can lag behind the
/// timer's.
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// Resolves once the server cuts its connections (at once if it has).
async fn cut(phase: &PhaseListener<'_>) {
    let mut seen = Phase::Serving;
    while seen != Phase::Cut {
        seen = phase.moved(seen).await;
    }
}

/// Writes `bytes` within the command timeout, unless the connection is cut first. True
/// when it had to wait for the socket.
async fn write(
    shared: &Shared,
    conn: &mut Conn,
    bytes: &[u8],
    phase: &PhaseListener<'_>,
) -> io::Result<bool> {
    let done = conn.write_now(bytes)?;
    let rest = &bytes[done..];
    if rest.is_empty() {
        return Ok(false);
    }
    let timeout = shared.options.session.command_timeout;
    tokio::select! {
        () = cut(phase) => Err(io::Error::other("cut at shutdown")),
        r = tokio::time::timeout(timeout, conn.write_all(rest)) => {
            r.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())).map(|()| true)
        }
    }
}

thread_local! {
    /// The read buffer, one per thread: a connection borrows it only while a read
    /// completes (within one poll), so a connection waiting for input holds none.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads once (up to `size` bytes, into the thread's [`READ_BUFFER`]) and gives it to the
/// connection (which keeps what its session has no room for yet). Ready with the number
/// of bytes read (0 at the end of the input) and the time it was given.
fn poll_receive(
    cx: &mut Context<'_>,
    conn: &mut Conn,
    size: usize,
    connection: &mut Connection,
    shared: &Shared,
) -> Poll<io::Result<(usize, Duration)>> {
    READ_BUFFER.with_borrow_mut(|buf| {
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let mut read = ReadBuf::new(&mut buf[..size.min(connection.read_limit())]);
        ready!(conn.poll_read(cx, &mut read))?;
        let bytes = read.filled();
        let now = shared.now();
        connection.receive(bytes, now);
        Poll::Ready(Ok((bytes.len(), now)))
    })
}
