//! The server's connection layer, sans-IO: everything a connection needs beyond the
//! [`ServerSession`] except the syscalls. It owns the session, the event→hook dispatch
//! ([`DispatchState`]), input that arrived while the session had no room for it, the
//! deadlines (per command, per data block, the TLS handshake), the STARTTLS handover and
//! graceful shutdown, and answers "what now?" with an [`Action`].
//!
//! Every server driver is this loop around it, with its own reading, writing, timers and
//! TLS I/O (the blocking and tokio servers, and through them the C server and Python's
//! `Controller`):
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::server::ServerConfig;
//! use smtp_core::server::connection::{Action, Connection};
//!
//! let mut conn = Connection::new(ServerConfig::new("mx.test"), Duration::ZERO, false);
//! let mut input: &[&[u8]] = &[b"EHLO client.test\r\n", b"QUIT\r\n"];
//! let mut wire = Vec::new();
//! loop {
//!     match conn.next_action(Duration::ZERO) {
//!         Action::Connect => conn.connected(None),         // or a refusal
//!         Action::Hook(hook) => {
//!             let answer = hook.call(&mut smtp_core::handler::DiscardSession);
//!             conn.answer(answer);
//!         }
//!         Action::Write(bytes) => {
//!             wire.extend_from_slice(bytes);
//!             let n = bytes.len();
//!             conn.written(n);
//!         }
//!         Action::Read { .. } => match input.split_first() {
//!             Some((bytes, rest)) => {
//!                 conn.receive(bytes, Duration::ZERO);
//!                 input = rest;
//!             }
//!             None => conn.receive_eof(),
//!         },
//!         Action::StartTls { .. } => unreachable!("no STARTTLS offered"),
//!         Action::Close => break,
//!     }
//! }
//! let wire = String::from_utf8(wire).unwrap();
//! assert!(wire.starts_with("220 mx.test"));
//! assert!(wire.ends_with("221 2.0.0 Bye\r\n"));
//! ```
//!
//! The rules a driver follows:
//! - [`Action::Read`]: read at most one buffer of input (any size; the layer keeps what the
//!   session has no room for, and asks for more only once that is taken, so it holds at most
//!   one read) and give it to [`Connection::receive`]; at the end of the input call
//!   [`Connection::receive_eof`]; when the deadline passes first, [`Connection::timeout`].
//! - [`Action::Write`]: write the bytes (all or some) and report with
//!   [`Connection::written`]. A write that cannot finish in time is a lost connection.
//! - [`Action::Hook`]: call the hook and give its answer to [`Connection::answer`].
//! - [`Action::StartTls`]: do the server side of the TLS handshake within the deadline,
//!   then [`Connection::tls_established`]; a failure is a lost connection.
//! - [`Action::Close`]: the session is over and its hooks have run: close the connection
//!   (with a TLS close_notify when encrypted).
//! - The connection broke (an I/O error, a failed handshake, the server cutting it):
//!   [`Connection::lost`], then keep answering hooks until [`Action::Close`]. Nothing more
//!   is written.
//! - The server is stopping: [`Connection::stop`]; the layer ends an idle session with
//!   421 at once and lets a transaction in progress finish first.

use std::net::SocketAddr;
use std::time::Duration;

use crate::handler::{Answer, ConnectionInfo, DispatchState, Flow, Hook};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::dispatch::Polled;
use crate::server::hooks::{HookKind, HookSet};
use crate::server::proxy::{ProxyCommand, ProxyHeader, ProxyParser, ProxyProgress, ProxyProtocol};
use crate::server::{ServerConfig, ServerSession};
use crate::tls::{TlsInfo, TlsState};
use crate::trace::TraceSink;

/// What the driver must do next; see the [module docs](self) for how to answer each.
#[derive(Debug)]
pub enum Action<'a> {
    /// A client is here: call the handler's connect hook (the server's own checks, such as
    /// a connection limit, come first), then [`Connection::connected`] with its refusal, if
    /// any. Comes once, before anything else is said (after the handshake on an
    /// implicit-TLS listener).
    Connect,
    /// Call this hook, then give its answer to [`Connection::answer`].
    Hook(Hook<'a>),
    /// Write these bytes, then call [`Connection::written`] with how many went out.
    Write(&'a [u8]),
    /// Read input and give it to [`Connection::receive`] (or [`Connection::receive_eof`]);
    /// if none has come by `deadline` (on the clock given to the connection), call
    /// [`Connection::timeout`].
    Read {
        /// When to give up waiting.
        deadline: Duration,
    },
    /// Do the server side of the TLS handshake, finished by `deadline` (one deadline for
    /// the whole handshake: a client trickling its bytes must not extend it), then call
    /// [`Connection::tls_established`], or [`Connection::lost`] if it failed.
    StartTls {
        /// When the handshake must be done.
        deadline: Duration,
    },
    /// Close the connection. Every hook has run; nothing more is to be written.
    Close,
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A PROXY protocol header comes first, whole by the deadline.
    Proxy { deadline: Duration },
    /// Implicit TLS: the handshake comes before anything else.
    Handshake { deadline: Duration, implicit: bool },
    /// Waiting for [`Connection::connected`].
    Connecting,
    /// The conversation.
    Open,
    /// The session or the server ended it: write what is left, then close.
    Closing,
    /// The connection is gone: run the remaining hooks, write nothing.
    Lost,
    /// [`Action::Close`] was given.
    Closed,
}

/// One server connection, sans-IO. See the [module docs](self).
#[derive(Debug)]
pub struct Connection {
    session: ServerSession,
    dispatch: DispatchState,
    /// The handler refused the client in its connect hook: this answers Connect, and no
    /// hook is called after.
    refusal: Option<Reply>,
    /// Input already read that the session had no room for; asked for no more until empty.
    spill: Vec<u8>,
    /// A reply the layer itself says (the 421 of a shutdown), written after the session's
    /// output.
    own_output: Vec<u8>,
    phase: Phase,
    stopping: bool,
    /// The time allowed for a TLS handshake, and for a command when the session names no
    /// deadline.
    command_timeout: Duration,
    implicit_tls: bool,
    /// Reading the PROXY protocol header (boxed: most connections have none).
    proxy_parser: Option<Box<ProxyParser>>,
    /// The PROXY protocol header the connection began with.
    proxy_header: Option<Box<ProxyHeader>>,
    /// What the TLS handshake negotiated, shared with the handler's [`ConnectionInfo`].
    tls_state: TlsState,
    /// Hooks the handler leaves to their defaults: answered here, never given as
    /// [`Action::Hook`].
    by_default: HookSet,
}

impl Connection {
    /// A new connection at `now`. With `implicit_tls` (a port-465 style listener) the TLS
    /// handshake is the first action; `config.tls_active` is then set for the session.
    pub fn new(mut config: ServerConfig, now: Duration, implicit_tls: bool) -> Connection {
        config.tls_active |= implicit_tls;
        let command_timeout = config.command_timeout;
        let phase = if implicit_tls {
            Phase::Handshake {
                deadline: now + command_timeout,
                implicit: true,
            }
        } else {
            Phase::Connecting
        };
        Connection {
            dispatch: DispatchState::new(implicit_tls),
            session: ServerSession::new(config, now),
            refusal: None,
            spill: Vec::new(),
            own_output: Vec::new(),
            phase,
            stopping: false,
            command_timeout,
            implicit_tls,
            proxy_parser: None,
            proxy_header: None,
            tls_state: TlsState::default(),
            by_default: HookSet::EMPTY,
        }
    }

    /// Says which hooks the session's handler leaves to their defaults
    /// ([`SessionHandler::default_hooks`](crate::handler::SessionHandler::default_hooks)):
    /// the layer answers those itself with [`Hook::default_answer`] instead of giving
    /// them as [`Action::Hook`]. Call it once the handler's session exists (after
    /// [`Action::Connect`]).
    pub fn answer_by_default(&mut self, hooks: HookSet) {
        self.by_default = hooks;
        // perf: content only `data_chunk` would read is not copied out of the input.
        self.session
            .discard_content(hooks.contains(HookKind::DataChunk));
    }

    /// Makes this connection, accepted at `now` from `peer` (the socket's remote address),
    /// begin with a PROXY protocol header (see [`crate::server::proxy`]): call it right
    /// after [`Connection::new`] on a listener configured for the protocol. A peer outside
    /// [`ProxyProtocol::trusted`] (or an unknown one) is refused at once: the next action
    /// is [`Action::Close`], with nothing said and no hook called. Otherwise the first
    /// actions are reads of at most [`Connection::read_limit`] bytes until the header is
    /// whole; a missing, malformed, oversized or late one closes the same way.
    pub fn expect_proxy_header(
        &mut self,
        proxy: &ProxyProtocol,
        peer: Option<SocketAddr>,
        now: Duration,
    ) {
        if !matches!(self.phase, Phase::Connecting | Phase::Handshake { .. }) {
            return;
        }
        if !peer.is_some_and(|p| proxy.trusts(p.ip())) {
            log::info!(
                "connection: PROXY protocol from untrusted {}; closing",
                peer.map_or_else(|| "peer".to_owned(), |p| p.to_string())
            );
            self.phase = Phase::Closed;
            return;
        }
        self.proxy_parser = Some(Box::default());
        self.phase = Phase::Proxy {
            deadline: now + proxy.timeout,
        };
    }

    /// The most bytes the next read may take (usually unlimited): while the PROXY header
    /// is read, reading past it would swallow the client's first bytes (on an
    /// implicit-TLS listener, its ClientHello), so drivers read at most this many.
    pub fn read_limit(&self) -> usize {
        match &self.proxy_parser {
            Some(parser) if matches!(self.phase, Phase::Proxy { .. }) => parser.wanted(),
            _ => usize::MAX,
        }
    }

    /// The PROXY protocol header the connection began with, once read.
    pub fn proxy_header(&self) -> Option<&ProxyHeader> {
        self.proxy_header.as_deref()
    }

    /// The client's address: the one a PROXY header carried, or else `real` (the
    /// socket's). Use it everywhere the client is named (logs, limits, handler info).
    pub fn peer(&self, real: Option<SocketAddr>) -> Option<SocketAddr> {
        match self.proxy_header.as_deref() {
            Some(ProxyHeader {
                command: ProxyCommand::Proxy,
                source: Some(source),
                ..
            }) => Some(*source),
            _ => real,
        }
    }

    /// What the handler is told at [`Action::Connect`], from the socket's own addresses:
    /// the peer is the client's ([`Connection::peer`]) and the PROXY header is attached.
    pub fn connection_info(
        &self,
        id: u64,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> ConnectionInfo {
        ConnectionInfo {
            id,
            peer: self.peer(peer),
            local,
            hostname: self.session.config().hostname.clone(),
            tls: self.implicit_tls,
            proxy: self.proxy_header.as_deref().cloned(),
            tls_state: self.tls_state.clone(),
        }
    }

    /// [`connection_info`](Self::connection_info) for a driver at [`Action::Connect`],
    /// with the connection's log line (the client's address, TLS, and the balancer it
    /// came through), so that every driver logs it alike.
    pub fn connected_info(
        &self,
        id: u64,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> ConnectionInfo {
        let info = self.connection_info(id, Some(peer), local);
        let via = if info.proxy.is_some() {
            format!(" via {peer}")
        } else {
            String::new()
        };
        let tls = if self.implicit_tls { " tls" } else { "" };
        log::info!(
            "conn={id} peer={} connected{tls}{via}",
            info.peer.unwrap_or(peer)
        );
        info
    }

    /// Feeds the PROXY header's parser; the rest of the input, if a driver read past the
    /// header, goes to the session.
    fn receive_proxy_header(&mut self, bytes: &[u8], now: Duration) {
        let Some(parser) = self.proxy_parser.as_mut() else {
            return;
        };
        match parser.feed(bytes) {
            Ok(ProxyProgress::More) => {}
            Ok(ProxyProgress::Done(header)) => {
                let rest = parser.take_rest();
                self.proxy_parser = None;
                log::debug!("connection: PROXY header {header:?}");
                self.proxy_header = Some(Box::new(header));
                if self.implicit_tls {
                    if !rest.is_empty() {
                        // TLS bytes already taken from the socket: the handshake cannot
                        // have them. The driver did not honour read_limit.
                        log::warn!("connection: read past the PROXY header on a TLS listener");
                        self.phase = Phase::Closed;
                        return;
                    }
                    self.phase = Phase::Handshake {
                        deadline: now + self.command_timeout,
                        implicit: true,
                    };
                } else {
                    self.phase = Phase::Connecting;
                    self.spill = rest;
                }
            }
            Err(e) => {
                log::info!("connection: {e}; closing");
                self.proxy_parser = None;
                self.phase = Phase::Closed;
            }
        }
    }

    /// Traces the conversation into `sink` as connection `id` (see [`crate::trace`]).
    pub fn set_trace(&mut self, sink: TraceSink, id: u64) {
        self.session.set_trace(sink, id);
    }

    /// The session, to read its state (its output and input are the layer's business).
    pub fn session(&self) -> &ServerSession {
        &self.session
    }

    /// The transaction as known so far.
    pub fn transaction(&self) -> &crate::handler::Transaction {
        self.dispatch.transaction()
    }

    /// True between transactions: a shutdown may end the connection without losing
    /// anything.
    pub fn is_idle(&self) -> bool {
        self.session.is_idle() && !self.dispatch.has_due_hook()
    }

    /// True while the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.session.is_tls()
    }

    /// What the TLS handshake negotiated, once it finished (see
    /// [`tls_established_with`](Self::tls_established_with)).
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_state.get()
    }

    /// What to do now. Non-hook actions are the same until the driver acts on them, so a
    /// driver may ask again (for example after leaving a `block_in_place` that ran hooks).
    #[inline(always)]
    pub fn next_action(&mut self, now: Duration) -> Action<'_> {
        // perf: the two answers a driver gets most in an open conversation (about twenty
        // asks per message), given here exactly as the first round of the full loop
        // below would give them, without its set-up.
        if matches!(self.phase, Phase::Open) {
            if self.dispatch.has_due_hook() {
                if self.refusal.is_none() && !self.due_hook_by_default() {
                    return Action::Hook(
                        self.dispatch
                            .due_hook(Some(&self.session))
                            .unwrap_or(Hook::Close),
                    );
                }
            } else if !self.session.output().is_empty() {
                return Action::Write(self.session.output());
            } else if self.own_output.is_empty()
                && self.spill.is_empty()
                && !self.stopping
                && self.dispatch.is_quiet()
                && self.session.is_starved()
            {
                // perf: everything said and answered, and the session has nothing to
                // read (the ask after each write): the full loop would poll the session
                // for nothing and end here.
                return Action::Read {
                    deadline: self.read_deadline(now),
                };
            }
        }
        self.next_action_loop(now)
    }

    /// The deadline of the next [`Action::Read`]: the session's, or a command's time.
    #[inline(always)]
    fn read_deadline(&self, now: Duration) -> Duration {
        self.session
            .next_deadline()
            .unwrap_or(now + self.command_timeout)
    }

    /// True when the hook due is one the handler leaves to its default
    /// ([`answer_by_default`](Self::answer_by_default)).
    fn due_hook_by_default(&self) -> bool {
        self.by_default != HookSet::EMPTY
            && self
                .dispatch
                .due_hook_kind()
                .is_some_and(|kind| self.by_default.contains(kind))
    }

    /// [`next_action`](Self::next_action) in full.
    fn next_action_loop(&mut self, now: Duration) -> Action<'_> {
        loop {
            match self.phase {
                Phase::Closed => return Action::Close,
                Phase::Connecting => return Action::Connect,
                Phase::Proxy { deadline } => return Action::Read { deadline },
                _ => {}
            }
            // A hook due now (the session's, or tls_started/close) comes first.
            if self.dispatch.has_due_hook() {
                if self.refusal.is_some() {
                    self.dispatch.refuse(Some(&mut self.session));
                    continue;
                }
                if self.due_hook_by_default() {
                    let answer = self
                        .dispatch
                        .due_hook(Some(&self.session))
                        .map_or(Answer::Done, |hook| hook.default_answer());
                    self.dispatch.answer(Some(&mut self.session), answer);
                    continue;
                }
                return Action::Hook(
                    self.dispatch
                        .due_hook(Some(&self.session))
                        .unwrap_or(Hook::Close),
                );
            }
            // Then what is to be said (a lost connection says nothing more).
            if !matches!(self.phase, Phase::Lost) {
                if !self.session.output().is_empty() {
                    return Action::Write(self.session.output());
                }
                if !self.own_output.is_empty() {
                    return Action::Write(&self.own_output);
                }
            }
            if let Phase::Handshake { deadline, .. } = self.phase {
                return Action::StartTls { deadline };
            }
            let flow = match self.dispatch.poll_answering(
                &mut self.session,
                self.refusal.as_ref(),
                self.by_default,
            ) {
                Polled::Flow(flow) => flow,
                // A hook left to its default was answered: its reply first (as the loop's
                // next round would give it).
                Polled::Answered if !matches!(self.phase, Phase::Lost) => {
                    return Action::Write(self.session.output());
                }
                Polled::HookDue | Polled::Answered => continue,
            };
            if matches!(self.phase, Phase::Lost) {
                if self.dispatch.begin_close() {
                    continue;
                }
                self.phase = Phase::Closed;
                return Action::Close;
            }
            match flow {
                Flow::Close => {
                    // The session said its last reply (221, 421, ...): write it, then close.
                    self.phase = Phase::Closing;
                    continue;
                }
                Flow::StartTls => {
                    // Whatever the client sent behind STARTTLS is not to be read (the
                    // session drops its own buffer at the handshake).
                    self.spill = Vec::new();
                    self.phase = Phase::Handshake {
                        deadline: now + self.command_timeout,
                        implicit: false,
                    };
                    continue;
                }
                Flow::Continue => {}
            }
            if !self.session.output().is_empty() {
                continue; // the replies to what was just polled go out first
            }
            if matches!(self.phase, Phase::Closing) {
                // Everything is written: end the session (a message in progress is
                // dropped) and run its last hooks.
                self.session.receive_eof();
                self.phase = Phase::Lost;
                continue;
            }
            if !self.spill.is_empty() {
                let taken = self.session.receive(&self.spill, now);
                self.spill.drain(..taken);
                if self.spill.is_empty() {
                    // Hold no memory while waiting for the next read.
                    self.spill = Vec::new();
                }
                if taken > 0 {
                    continue;
                }
                // Output written, events answered, and still no room: the session will not
                // move again. Cannot happen; end the connection rather than spin.
                log::warn!("connection: the session took none of the held input; closing");
                self.lost();
                continue;
            }
            if self.stopping && self.session.is_idle() {
                self.own_output = shutdown_reply(&self.session.config().hostname);
                self.phase = Phase::Closing;
                continue;
            }
            return Action::Read {
                deadline: self.read_deadline(now),
            };
        }
    }

    /// The answer to [`Action::Connect`]: `None` to go on, or the handler's refusal (554
    /// keeps the session for QUIT only, 421 closes at once).
    pub fn connected(&mut self, refusal: Option<Reply>) {
        if matches!(self.phase, Phase::Connecting) {
            self.refusal = refusal;
            self.phase = Phase::Open;
        }
    }

    /// The answer to [`Action::Hook`].
    pub fn answer(&mut self, answer: Answer) {
        self.dispatch.answer(Some(&mut self.session), answer);
    }

    /// `n` bytes of the last [`Action::Write`] went out.
    pub fn written(&mut self, n: usize) {
        let from_session = n.min(self.session.output().len());
        self.session.consume_output(from_session);
        let rest = (n - from_session).min(self.own_output.len());
        if rest > 0 {
            self.own_output.drain(..rest);
        }
    }

    /// Input read from the client at `now`. All of it is kept: what the session has no
    /// room for waits here, and no [`Action::Read`] comes until it is taken.
    #[inline]
    pub fn receive(&mut self, bytes: &[u8], now: Duration) {
        if matches!(self.phase, Phase::Lost | Phase::Closed) || bytes.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Proxy { .. }) {
            self.receive_proxy_header(bytes, now);
            return;
        }
        if !self.spill.is_empty() {
            self.spill.extend_from_slice(bytes);
            return;
        }
        let taken = self.session.receive(bytes, now);
        if taken < bytes.len() {
            self.spill.extend_from_slice(&bytes[taken..]);
        }
    }

    /// The client closed its side. If the server is stopping and the session is idle, that
    /// is the shutdown's 421 moment; otherwise the session answers what it has and closes.
    pub fn receive_eof(&mut self) {
        if matches!(self.phase, Phase::Proxy { .. }) {
            self.phase = Phase::Closed; // no header: nothing was said
            return;
        }
        if self.stopping && self.is_idle() {
            return;
        }
        self.session.receive_eof();
    }

    /// The deadline of the last [`Action::Read`] passed at `now`.
    pub fn timeout(&mut self, now: Duration) {
        if let Phase::Proxy { deadline } = self.phase {
            if now >= deadline {
                log::info!("connection: no PROXY header in time; closing");
                self.phase = Phase::Closed;
            }
            return;
        }
        self.session.handle_timeout(now);
    }

    /// The TLS handshake of the last [`Action::StartTls`] succeeded at `now`; what it
    /// negotiated is not known (a sans-IO embedder that says nothing about its TLS). A
    /// driver that knows uses [`tls_established_with`](Self::tls_established_with).
    pub fn tls_established(&mut self, now: Duration) {
        self.tls_established_with(now, TlsInfo::default());
    }

    /// The TLS handshake of the last [`Action::StartTls`] succeeded at `now`, and
    /// negotiated `info` ([`TlsInfo::from_server`], or a
    /// [`TlsSession::info`](crate::tls::TlsSession::info)): the handler reads it in
    /// [`ConnectionInfo::tls_state`] from now on (before the connect hook with implicit
    /// TLS, before the `tls_started` hook after STARTTLS), and [`tls_info`](Self::tls_info)
    /// gives it.
    pub fn tls_established_with(&mut self, now: Duration, info: TlsInfo) {
        let Phase::Handshake { implicit, .. } = self.phase else {
            return;
        };
        self.tls_state.set(info);
        if implicit {
            self.phase = Phase::Connecting;
        } else {
            self.session.tls_established(now);
            self.dispatch.begin_tls();
            self.phase = Phase::Open;
        }
    }

    /// The connection is gone (an I/O error, a failed or late handshake, the server cut
    /// it): a message in progress is dropped, the remaining hooks run, and the next
    /// actions are hooks, then [`Action::Close`].
    pub fn lost(&mut self) {
        match self.phase {
            Phase::Closed | Phase::Lost => {}
            // Nothing was said, no hook was called: there is nothing to run.
            Phase::Proxy { .. } | Phase::Handshake { implicit: true, .. } | Phase::Connecting => {
                self.phase = Phase::Closed;
            }
            _ => {
                self.session.receive_eof();
                self.phase = Phase::Lost;
            }
        }
    }

    /// The server is shutting down: an idle session gets 421 and is closed at once; one in
    /// a transaction is let finish, then closed the same way.
    pub fn stop(&mut self) {
        if matches!(self.phase, Phase::Proxy { .. }) {
            self.phase = Phase::Closed; // nothing said yet: nothing to end politely
        }
        self.stopping = true;
    }
}

/// The 421 a server shutting down says to a connection between transactions.
pub fn shutdown_reply(hostname: &str) -> Vec<u8> {
    Reply::new(
        ReplyCode::SERVICE_UNAVAILABLE,
        Some(EnhancedCode::SERVICE_UNAVAILABLE),
        format!("{hostname} Service shutting down, try again later"),
    )
    .to_bytes()
}

/// The 421 a server at its connection limit says to a new client before closing it.
pub fn busy_reply(hostname: &str) -> Vec<u8> {
    Reply::new(
        ReplyCode::SERVICE_UNAVAILABLE,
        Some(EnhancedCode::TOO_MANY_CONNECTIONS),
        format!("{hostname} Error: too many connections, try again later"),
    )
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::{DiscardSession, SessionHandler, Transaction};
    use crate::server::Decision;

    const T0: Duration = Duration::ZERO;

    /// Runs `conn` against scripted input (one read each), answering hooks with `handler`,
    /// until it asks for input the script does not have, or closes. Returns what was
    /// written and whether it closed.
    fn run<S: SessionHandler>(
        conn: &mut Connection,
        handler: &mut S,
        input: &mut Vec<&[u8]>,
        now: Duration,
    ) -> (String, bool) {
        let mut wire = Vec::new();
        for _ in 0..10_000 {
            match conn.next_action(now) {
                Action::Connect => conn.connected(None),
                Action::Hook(hook) => {
                    let answer = hook.call(handler);
                    conn.answer(answer);
                }
                Action::Write(bytes) => {
                    // Half at a time: partial writes must be resumed where they stopped.
                    let n = bytes.len().div_ceil(2);
                    wire.extend_from_slice(&bytes[..n]);
                    conn.written(n);
                }
                Action::Read { .. } => {
                    if input.is_empty() {
                        return (String::from_utf8(wire).unwrap(), false);
                    }
                    let bytes = input.remove(0);
                    conn.receive(bytes, now);
                }
                Action::StartTls { .. } => conn.tls_established(now),
                Action::Close => return (String::from_utf8(wire).unwrap(), true),
            }
        }
        panic!("the connection did not settle");
    }

    fn config() -> ServerConfig {
        ServerConfig::new("mx.test")
    }

    /// Records the hooks it is called for (of those it implements), and the recipients
    /// of the message at its end.
    #[derive(Default)]
    struct Seen {
        calls: Vec<&'static str>,
        recipients: usize,
    }

    impl SessionHandler for Seen {
        fn tls_started(&mut self) {
            self.calls.push("tls_started");
        }
        fn mail(
            &mut self,
            _: &crate::address::ReversePath,
            _: &crate::command::MailParameters,
        ) -> Decision {
            self.calls.push("mail");
            Decision::Accept
        }
        fn data_end(&mut self, transaction: &Transaction) -> Decision {
            self.calls.push("data_end");
            self.recipients = transaction.recipients.len();
            Decision::Accept
        }
        fn close(&mut self) {
            self.calls.push("close");
        }
    }

    #[test]
    fn greeting_delay_then_greeting() {
        let mut c = config();
        c.greeting_delay = Some(Duration::from_millis(500));
        let mut conn = Connection::new(c, T0, false);
        let (out, closed) = run(&mut conn, &mut DiscardSession, &mut vec![], T0);
        assert_eq!((out.as_str(), closed), ("", false));
        let Action::Read { deadline } = conn.next_action(T0) else {
            panic!("waits for input")
        };
        assert_eq!(deadline, Duration::from_millis(500));
        conn.timeout(deadline);
        let (out, _) = run(&mut conn, &mut DiscardSession, &mut vec![], deadline);
        assert!(out.starts_with("220 mx.test"), "{out:?}");
    }

    #[test]
    fn a_flood_of_pipelined_input_is_all_answered_with_bounded_holding() {
        let mut conn = Connection::new(config(), T0, false);
        let flood = b"RSET\r\n".repeat(20_000);
        let mut input: Vec<&[u8]> = vec![b"EHLO c\r\n", &flood, b"QUIT\r\n"];
        let (out, closed) = run(&mut conn, &mut DiscardSession, &mut input, T0);
        assert!(closed);
        assert_eq!(
            out.matches("250 2.0.0").count(),
            20_000,
            "every RSET answered"
        );
        assert!(out.ends_with("221 2.0.0 Bye\r\n"));
    }

    #[test]
    fn shutdown_ends_an_idle_session_with_421_and_lets_a_transaction_finish() {
        let mut conn = Connection::new(config(), T0, false);
        let mut input: Vec<&[u8]> = vec![b"EHLO c\r\n", b"MAIL FROM:<a@b.test>\r\n"];
        run(&mut conn, &mut DiscardSession, &mut input, T0);
        conn.stop();
        assert!(!conn.is_idle());
        // In a transaction: still reading.
        assert!(matches!(conn.next_action(T0), Action::Read { .. }));
        let mut input: Vec<&[u8]> = vec![b"RCPT TO:<x@y.test>\r\n", b"DATA\r\n", b"hi\r\n.\r\n"];
        let (out, closed) = run(&mut conn, &mut DiscardSession, &mut input, T0);
        assert!(closed);
        assert!(out.contains("354"), "{out}");
        assert!(
            out.ends_with(
                "250 2.0.0 OK\r\n421 4.3.2 mx.test Service shutting down, try again later\r\n"
            ) || out.ends_with("Service shutting down, try again later\r\n"),
            "{out}"
        );
    }

    #[test]
    fn starttls_drops_what_was_pipelined_behind_it_and_calls_tls_started() {
        let injected = b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n".to_vec();
        // With the sync check off (it would end the session first: see the next test), the
        // layer itself must drop what came behind STARTTLS.
        let mut c = config();
        c.starttls = true;
        c.pipelining_sync = false;
        let mut conn = Connection::new(c, T0, false);
        let mut seen = Seen::default();
        let mut input: Vec<&[u8]> = vec![b"EHLO c\r\n", &injected, b"QUIT\r\n"];
        let (out, closed) = run(&mut conn, &mut seen, &mut input, T0);
        assert!(closed);
        assert!(conn.is_tls());
        assert!(out.contains("220 2.0.0 Ready to start TLS\r\n"), "{out}");
        assert!(
            !out.contains("2.1.0"),
            "the injected MAIL was not run: {out}"
        );
        assert_eq!(seen.calls, ["tls_started", "close"]);
    }

    #[test]
    fn input_pipelined_behind_starttls_is_a_sync_error_by_default() {
        let mut c = config();
        c.starttls = true;
        let mut conn = Connection::new(c, T0, false);
        let mut seen = Seen::default();
        let injected = b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n".to_vec();
        let mut input: Vec<&[u8]> = vec![b"EHLO c\r\n", &injected];
        let (out, closed) = run(&mut conn, &mut seen, &mut input, T0);
        assert!(closed);
        assert!(!conn.is_tls());
        assert!(
            out.ends_with("554 5.5.0 Error: SMTP protocol synchronization\r\n"),
            "{out}"
        );
        assert!(!out.contains("Ready to start TLS"), "{out}");
        assert_eq!(seen.calls, ["close"]);
    }

    #[test]
    fn a_lost_connection_runs_the_remaining_hooks_and_writes_nothing() {
        #[derive(Default)]
        struct Seen(Vec<String>);
        impl SessionHandler for Seen {
            fn data_aborted(&mut self, reason: crate::server::AbortReason) {
                self.0.push(format!("aborted {reason:?}"));
            }
            fn data_end(&mut self, _: &Transaction) -> Decision {
                self.0.push("data_end".into());
                Decision::Accept
            }
            fn close(&mut self) {
                self.0.push("close".into());
            }
        }
        let mut conn = Connection::new(config(), T0, false);
        let mut seen = Seen::default();
        let mut input: Vec<&[u8]> = vec![
            b"EHLO c\r\n",
            b"MAIL FROM:<a@b.test>\r\n",
            b"RCPT TO:<x@y.test>\r\n",
            b"DATA\r\n",
            b"half a mess",
        ];
        run(&mut conn, &mut seen, &mut input, T0);
        conn.lost();
        let mut actions = Vec::new();
        loop {
            match conn.next_action(T0) {
                Action::Hook(hook) => {
                    let answer = hook.call(&mut seen);
                    conn.answer(answer);
                }
                Action::Close => break,
                other => actions.push(format!("{other:?}")),
            }
        }
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(seen.0, ["aborted Disconnected", "close"]);
        assert!(matches!(conn.next_action(T0), Action::Close));
    }

    #[test]
    fn a_refused_connection_calls_no_hook() {
        let mut conn = Connection::new(config(), T0, false);
        assert!(matches!(conn.next_action(T0), Action::Connect));
        conn.connected(Some(Reply::new(
            ReplyCode::TRANSACTION_FAILED,
            None,
            "go away",
        )));
        let mut wire = Vec::new();
        let mut input: Vec<&[u8]> = vec![b"EHLO c\r\n", b"QUIT\r\n"];
        loop {
            match conn.next_action(T0) {
                Action::Hook(hook) => panic!("hook called on a refused connection: {hook:?}"),
                Action::Write(bytes) => {
                    wire.extend_from_slice(bytes);
                    let n = bytes.len();
                    conn.written(n);
                }
                Action::Read { .. } => {
                    let bytes = input.remove(0);
                    conn.receive(bytes, T0);
                }
                Action::Close => break,
                other => panic!("{other:?}"),
            }
        }
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.starts_with("554 go away\r\n"), "{wire}");
        assert!(wire.contains("503 5.5.1"), "{wire}");
    }

    #[test]
    fn the_tls_details_reach_the_handler_info_shared_and_once() {
        let info = TlsInfo {
            version: Some("TLSv1.3".into()),
            cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
            server_name: Some("mx.test".into()),
            peer_certificates: Vec::new(),
        };
        // Implicit TLS: known when the handler is told of the connection.
        let mut conn = Connection::new(config(), T0, true);
        assert!(matches!(conn.next_action(T0), Action::StartTls { .. }));
        conn.tls_established_with(T0, info.clone());
        assert!(matches!(conn.next_action(T0), Action::Connect));
        let seen = conn.connection_info(1, None, None);
        assert_eq!(seen.tls_state.get(), Some(&info));
        assert_eq!(conn.tls_info(), Some(&info));

        // STARTTLS: the handle given at connect is empty, then filled by the handshake.
        let mut c = config();
        c.starttls = true;
        let mut conn = Connection::new(c, T0, false);
        assert!(matches!(conn.next_action(T0), Action::Connect));
        let kept = conn.connection_info(2, None, None).tls_state;
        conn.connected(None);
        let mut input: Vec<&[u8]> = vec![b"EHLO c\r\n", b"STARTTLS\r\n"];
        let mut handshakes = 0;
        for _ in 0..100 {
            match conn.next_action(T0) {
                Action::Write(bytes) => {
                    let n = bytes.len();
                    conn.written(n);
                }
                Action::Hook(hook) => {
                    let answer = hook.call(&mut DiscardSession);
                    conn.answer(answer);
                }
                Action::Read { .. } if !input.is_empty() => conn.receive(input.remove(0), T0),
                Action::StartTls { .. } => {
                    assert!(kept.get().is_none(), "nothing before the handshake");
                    handshakes += 1;
                    conn.tls_established_with(T0, info.clone());
                    // A second report changes nothing.
                    conn.tls_established_with(T0, TlsInfo::default());
                }
                _ => break,
            }
        }
        assert_eq!(handshakes, 1);
        assert_eq!(kept.get(), Some(&info));
    }

    #[test]
    fn implicit_tls_handshakes_before_connect() {
        let mut conn = Connection::new(config(), T0, true);
        let Action::StartTls { deadline } = conn.next_action(T0) else {
            panic!("the handshake comes first")
        };
        assert_eq!(deadline, Duration::from_secs(300));
        conn.tls_established(T0);
        assert!(matches!(conn.next_action(T0), Action::Connect));
        conn.connected(None);
        let Action::Write(greeting) = conn.next_action(T0) else {
            panic!("then the greeting")
        };
        assert!(greeting.starts_with(b"220 "));
        assert!(conn.is_tls());
    }

    #[test]
    fn hooks_left_to_their_defaults_are_answered_without_a_call() {
        use crate::server::hooks::HookKind;
        // STARTTLS too: its tls_started hook is made due outside the layer's loop.
        let script: Vec<&[u8]> = vec![
            b"EHLO c.test\r\n",
            b"STARTTLS\r\n",
            b"EHLO c.test\r\n",
            b"MAIL FROM:<a@x.test>\r\n",
            b"RCPT TO:<b@x.test>\r\n",
            b"RCPT TO:<c@x.test>\r\n",
            b"DATA\r\n",
            b"Subject: t\r\n\r\nbody\r\n.\r\n",
            b"RSET\r\nQUIT\r\n",
        ];
        let mut outputs = Vec::new();
        for by_default in [
            HookSet::EMPTY,
            HookSet::EMPTY
                .with(HookKind::Hello)
                .with(HookKind::TlsStarted)
                .with(HookKind::Rcpt)
                .with(HookKind::DataStart)
                .with(HookKind::DataChunk)
                .with(HookKind::Reset)
                .with(HookKind::Rset)
                .with(HookKind::Quit)
                .with(HookKind::Close),
        ] {
            let mut c = config();
            c.starttls = true;
            let mut conn = Connection::new(c, T0, false);
            assert!(matches!(conn.next_action(T0), Action::Connect));
            conn.connected(None);
            conn.answer_by_default(by_default);
            let mut seen = Seen::default();
            // Every hook is seen by the test before the handler: which ones came.
            let mut kinds = Vec::new();
            let mut input = script.clone();
            let mut wire = Vec::new();
            for _ in 0..10_000 {
                match conn.next_action(T0) {
                    Action::Hook(hook) => {
                        assert!(
                            !by_default.contains(hook.kind()),
                            "{hook:?} was left to its default"
                        );
                        kinds.push(hook.kind());
                        let answer = hook.call(&mut seen);
                        conn.answer(answer);
                    }
                    Action::Write(bytes) => {
                        wire.extend_from_slice(bytes);
                        let n = bytes.len();
                        conn.written(n);
                    }
                    Action::Read { .. } if !input.is_empty() => conn.receive(input.remove(0), T0),
                    Action::StartTls { .. } => conn.tls_established(T0),
                    Action::Read { .. } | Action::Close => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            // The envelope is kept as ever, RCPT answered by the layer or not.
            assert_eq!(seen.recipients, 2);
            if by_default == HookSet::EMPTY {
                assert_eq!(seen.calls, ["tls_started", "mail", "data_end", "close"]);
                assert!(kinds.contains(&HookKind::Rcpt) && kinds.contains(&HookKind::Close));
            } else {
                assert_eq!(seen.calls, ["mail", "data_end"]);
                assert!(
                    kinds
                        .iter()
                        .all(|k| matches!(k, HookKind::Mail | HookKind::DataEnd)),
                    "{kinds:?}"
                );
            }
            outputs.push(String::from_utf8(wire).unwrap());
        }
        // The client sees the same conversation either way.
        assert_eq!(outputs[0], outputs[1]);
        assert!(outputs[0].ends_with("221 2.0.0 Bye\r\n"), "{}", outputs[0]);
    }
    #[test]
    fn content_no_one_reads_is_read_alike() {
        use crate::data::BareLinePolicy;
        use crate::server::hooks::HookKind;
        /// What the handler is told of each message, content left out.
        #[derive(Default)]
        struct Ends(Vec<String>);
        impl SessionHandler for Ends {
            fn data_end(&mut self, transaction: &Transaction) -> Decision {
                self.0.push(format!("end {}", transaction.recipients.len()));
                Decision::Accept
            }
            fn data_aborted(&mut self, reason: crate::server::AbortReason) {
                self.0.push(format!("aborted {reason:?}"));
            }
        }
        let big = [b"x".repeat(998), b"\r\n".to_vec()].concat();
        let large: Vec<u8> = [&big.repeat(200)[..], b".\r\nQUIT\r\n"].concat();
        let scripts: Vec<(u64, BareLinePolicy, Vec<&[u8]>, &str)> = vec![
            // Dot-stuffing, the terminator split over reads, a command pipelined behind.
            (
                1 << 20,
                BareLinePolicy::Normalize,
                vec![
                    b"EHLO c\r\n",
                    b"MAIL FROM:<a@x.test>\r\n",
                    b"RCPT TO:<b@x.test>\r\n",
                    b"DATA\r\n",
                    b"..dot\r\nbare\nline\r\n\r",
                    b"\n.",
                    b"\r\nRSET\r\n",
                    b"QUIT\r\n",
                ],
                "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n221",
            ),
            // Over the size limit by one octet, then a good message.
            (
                10,
                BareLinePolicy::Normalize,
                vec![
                    b"EHLO c\r\n",
                    b"MAIL FROM:<a@x.test>\r\n",
                    b"RCPT TO:<b@x.test>\r\n",
                    b"DATA\r\n",
                    b"123456789\r\n.\r\n",
                    b"MAIL FROM:<a@x.test>\r\n",
                    b"RCPT TO:<b@x.test>\r\n",
                    b"DATA\r\n",
                    b"1234567\r\n.\r\n",
                    b"QUIT\r\n",
                ],
                "552 5.3.4 Error: message exceeds fixed maximum message size\r\n250 2.1.0",
            ),
            // A bare LF refused, the message read to its real end.
            (
                1 << 20,
                BareLinePolicy::Reject,
                vec![
                    b"EHLO c\r\n",
                    b"MAIL FROM:<a@x.test>\r\n",
                    b"RCPT TO:<b@x.test>\r\n",
                    b"DATA\r\n",
                    b"a\n.\nb\r\n.\r\n",
                    b"QUIT\r\n",
                ],
                "550 5.5.2 Error: bare <CR> or <LF> in message content",
            ),
            // More than the session holds in one read (the layer keeps the rest).
            (
                1 << 20,
                BareLinePolicy::Normalize,
                vec![
                    b"EHLO c\r\n",
                    b"MAIL FROM:<a@x.test>\r\n",
                    b"RCPT TO:<b@x.test>\r\n",
                    b"DATA\r\n",
                    &large,
                ],
                "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n221",
            ),
            // The connection lost in the middle of a message.
            (
                1 << 20,
                BareLinePolicy::Normalize,
                vec![
                    b"EHLO c\r\n",
                    b"MAIL FROM:<a@x.test>\r\n",
                    b"RCPT TO:<b@x.test>\r\n",
                    b"DATA\r\n",
                    b"half",
                ],
                "354 ",
            ),
        ];
        for (max_message_size, policy, script, expected) in scripts {
            let mut seen = Vec::new();
            for by_default in [HookSet::EMPTY, HookSet::EMPTY.with(HookKind::DataChunk)] {
                let mut c = config();
                c.max_message_size = max_message_size;
                c.bare_line_policy = policy;
                let mut conn = Connection::new(c, T0, false);
                assert!(matches!(conn.next_action(T0), Action::Connect));
                conn.connected(None);
                conn.answer_by_default(by_default);
                let mut handler = Ends::default();
                let mut input = script.clone();
                let (out, closed) = run(&mut conn, &mut handler, &mut input, T0);
                if !closed {
                    conn.receive_eof();
                    let (rest, closed) = run(&mut conn, &mut handler, &mut vec![], T0);
                    assert!(closed);
                    seen.push((out + &rest, handler.0));
                } else {
                    seen.push((out, handler.0));
                }
            }
            assert_eq!(seen[0], seen[1]);
            assert!(seen[0].0.contains(expected), "{:?}", seen[0]);
            assert!(!seen[0].1.is_empty(), "{:?}", seen[0]);
        }
    }
}
