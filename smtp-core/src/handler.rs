//! Server user code: a [`Handler`] makes one [`SessionHandler`] per connection, whose hooks
//! are called as the conversation goes. Every hook answers with a [`Decision`], so any hook
//! can refuse with any code, enhanced code and text.
//!
//! [`Dispatch`] turns a [`ServerSession`]'s events into hook calls. Every driver (blocking,
//! async, the C server, the Python server) uses it, or, for hooks that must be awaited, the
//! sans-IO [`DispatchState`] it is built on, so the mapping exists once.
//!
//! ```
//! use smtp_core::handler::{Handler, SessionHandler, ConnectionInfo, Transaction};
//! use smtp_core::server::Decision;
//! use smtp_core::reply::{Reply, ReplyCode, EnhancedCode};
//! use smtp_core::address::ForwardPath;
//! use smtp_core::command::RcptParameters;
//!
//! /// Accepts mail for one domain and counts the bytes.
//! struct OneDomain;
//! struct Counter { bytes: usize }
//! impl Handler for OneDomain {
//!     type Session = Counter;
//!     fn connect(&self, _: &ConnectionInfo) -> Result<Counter, Reply> { Ok(Counter { bytes: 0 }) }
//! }
//! impl SessionHandler for Counter {
//!     fn rcpt(&mut self, to: &ForwardPath, _: &RcptParameters) -> Decision {
//!         if to.as_str().ends_with("@example.com") { Decision::Accept } else {
//!             Decision::Reply(Reply::new(ReplyCode::MAILBOX_UNAVAILABLE,
//!                 Some(EnhancedCode::new(5, 7, 1)), "relay denied"))
//!         }
//!     }
//!     fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> { self.bytes += chunk.len(); Ok(()) }
//!     fn data_end(&mut self, _: &Transaction) -> Decision { Decision::Accept }
//! }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use crate::address::{ForwardPath, ReversePath};
use crate::auth::{AuthAttempt, Secret};
use crate::command::{MailParameters, RcptParameters};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::{AbortReason, Decision, HelloVerb, ServerEvent, ServerSession};

/// What a handler knows about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// A number unique within the server, for logs.
    pub id: u64,
    /// The client's address, when the connection has one.
    pub peer: Option<SocketAddr>,
    /// The server's own address.
    pub local: Option<SocketAddr>,
    /// The server's host name.
    pub hostname: String,
    /// True when the connection started encrypted (implicit TLS).
    pub tls: bool,
}

/// The envelope and context of the message being received, handed to
/// [`SessionHandler::data_end`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The verb and name the client greeted with.
    pub hello: Option<(HelloVerb, String)>,
    /// The sender.
    pub from: Option<ReversePath>,
    /// MAIL's parameters.
    pub mail_params: MailParameters,
    /// The accepted recipients, in order.
    pub recipients: Vec<ForwardPath>,
    /// True when the session is encrypted.
    pub tls: bool,
    /// The user the client authenticated as.
    pub authenticated: Option<String>,
}

/// Makes a [`SessionHandler`] for each connection. Shared by all connections, so it must
/// be `Send + Sync`; per-connection state lives in the session handler.
pub trait Handler: Send + Sync + 'static {
    /// The per-connection part.
    type Session: SessionHandler;

    /// A client connected. Return its session handler, or a reply that refuses it (554, or
    /// 421 to close at once).
    fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply>;
}

/// Hooks for one connection. Every hook has a default: accept everything, refuse AUTH,
/// throw content away.
pub trait SessionHandler: Send + 'static {
    /// HELO, EHLO or LHLO.
    fn hello(&mut self, _verb: HelloVerb, _domain: &str) -> Decision {
        Decision::Accept
    }

    /// The connection is now encrypted (after STARTTLS).
    fn tls_started(&mut self) {}

    /// AUTH: check the credentials (use [`crate::auth::Secret::constant_time_eq`]).
    /// Default: refuse.
    fn auth(&mut self, _attempt: &AuthAttempt) -> Decision {
        Decision::Reply(Reply::new(
            ReplyCode::AUTH_INVALID,
            Some(EnhancedCode::AUTH_INVALID),
            "Error: authentication failed",
        ))
    }

    /// MAIL FROM.
    fn mail(&mut self, _from: &ReversePath, _params: &MailParameters) -> Decision {
        Decision::Accept
    }

    /// RCPT TO.
    fn rcpt(&mut self, _to: &ForwardPath, _params: &RcptParameters) -> Decision {
        Decision::Accept
    }

    /// DATA or the first BDAT chunk: may the content come?
    fn data_start(&mut self, _transaction: &Transaction) -> Decision {
        Decision::Accept
    }

    /// A piece of the content (un-stuffed, CRLF line endings). An error is remembered and
    /// becomes the reply to the end of the message.
    fn data_chunk(&mut self, _chunk: &[u8]) -> Result<(), Reply> {
        Ok(())
    }

    /// The whole message has arrived: accept (the reply can carry a queue id) or refuse.
    /// Under LMTP answer with [`Decision::PerRecipient`].
    fn data_end(&mut self, _transaction: &Transaction) -> Decision {
        Decision::Accept
    }

    /// The message in progress was dropped; discard what was kept of it.
    fn data_aborted(&mut self, _reason: AbortReason) {}

    /// The transaction was abandoned (RSET, a new greeting, STARTTLS).
    fn reset(&mut self) {}

    /// VRFY. Default: 252.
    fn verify(&mut self, _argument: &str) -> Decision {
        Decision::Accept
    }

    /// EXPN. Default: 252.
    fn expand(&mut self, _argument: &str) -> Decision {
        Decision::Accept
    }

    /// Whether `hook` may block the calling thread (file, database or network I/O, a
    /// lock). The async server on a multi-threaded runtime runs the hooks that may block in
    /// `tokio::task::block_in_place` (feature `tokio`), so that they do not stall other
    /// connections, and calls the others inline, which costs far less. Default: every hook
    /// may block; override it to name the quick ones. Wrappers forward it.
    fn may_block(&self, _hook: &Hook<'_>) -> bool {
        true
    }

    /// The connection is over.
    fn close(&mut self) {}
}

/// What the driver must do after [`Dispatch::run`] (or when [`DispatchState::step`] is done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Write the output, then read more input.
    Continue,
    /// Write the output, do the TLS handshake, then call
    /// [`ServerSession::tls_established`] and [`Dispatch::tls_started`].
    StartTls,
    /// Write the output, then close the connection.
    Close,
}

/// Connects a [`ServerSession`] to a [`SessionHandler`]: polls events, calls hooks,
/// answers decisions and keeps the [`Transaction`] that `data_end` receives. The mapping
/// itself is [`DispatchState`]; this only calls the hooks it asks for.
#[derive(Debug)]
pub struct Dispatch<S> {
    handler: Option<S>,
    state: DispatchState,
}

impl<S: SessionHandler> Dispatch<S> {
    /// A dispatcher for a connection whose handler accepted it. `tls` says whether the
    /// connection is already encrypted.
    pub fn new(handler: S, tls: bool) -> Dispatch<S> {
        Dispatch {
            handler: Some(handler),
            state: DispatchState::new(tls),
        }
    }

    /// A dispatcher for a connection the handler refused in [`Handler::connect`]: the
    /// refusal is the session's reply to Connect.
    pub fn refused() -> Dispatch<S> {
        Dispatch {
            handler: None,
            state: DispatchState::new(false),
        }
    }

    /// The session handler, while the connection lasts.
    pub fn handler(&mut self) -> Option<&mut S> {
        self.handler.as_mut()
    }

    /// The transaction as known so far.
    pub fn transaction(&self) -> &Transaction {
        self.state.transaction()
    }

    /// Processes every event the session has; `refusal` answers Connect when the handler
    /// refused the connection.
    pub fn run(&mut self, session: &mut ServerSession, refusal: Option<&Reply>) -> Flow {
        loop {
            match self.state.step(session, refusal) {
                Step::Call(call) => call_sync(self.handler.as_mut(), call),
                Step::Done(flow) => return flow,
            }
        }
    }

    /// The TLS handshake succeeded; call after [`ServerSession::tls_established`].
    pub fn tls_started(&mut self) {
        call_sync(self.handler.as_mut(), self.state.tls_started());
    }

    /// The connection ended (the session closed it, or the driver lost it). Idempotent.
    pub fn close(&mut self) {
        if let Some(call) = self.state.close() {
            call_sync(self.handler.as_mut(), call);
        }
    }
}

/// Answers `call` with the hook it names, or as a refused session when there is no handler.
fn call_sync<S: SessionHandler>(handler: Option<&mut S>, call: HookCall<'_>) {
    match handler {
        Some(h) => {
            let answer = call.hook().call(h);
            call.answer(answer);
        }
        None => call.refuse(),
    }
}

/// The event→hook mapping without the hooks, so that it exists once for every kind of hook:
/// [`Dispatch`] calls [`SessionHandler`]'s, the async server awaits its
/// `AsyncSessionHandler`'s. It answers what needs no hook (Connect, a refused session),
/// names the hook each other event calls and with which arguments ([`HookCall::hook`]),
/// and applies the hook's answer ([`HookCall::answer`]): the decision to the session, the
/// accepted parts of the envelope to the [`Transaction`], a failed `data_chunk` to the end
/// of the message.
///
/// ```
/// use smtp_core::handler::{DispatchState, Flow, SessionHandler, Step};
/// use smtp_core::server::{ServerConfig, ServerSession};
/// use std::time::Duration;
///
/// struct Accept;
/// impl SessionHandler for Accept {}
///
/// let mut session = ServerSession::new(ServerConfig::new("mx.test"), Duration::ZERO);
/// let mut state = DispatchState::new(false);
/// let mut handler = Accept;
/// let flow = loop {
///     match state.step(&mut session, None) {
///         // An async driver would await its own hook here instead.
///         Step::Call(call) => {
///             let answer = call.hook().call(&mut handler);
///             call.answer(answer);
///         }
///         Step::Done(flow) => break flow,
///     }
/// };
/// assert_eq!(flow, Flow::Continue);
/// assert!(session.take_output().starts_with(b"220 "));
/// ```
#[derive(Debug)]
pub struct DispatchState {
    transaction: Transaction,
    /// The reply a failed `data_chunk` left for the end of the message.
    data_error: Option<Reply>,
    closed: bool,
    /// The close hook of a Close event is out: the next step ends with [`Flow::Close`].
    closing: bool,
    /// The event whose hook is due: set by [`DispatchState::poll`], taken by
    /// [`DispatchState::answer`].
    pending: Option<Pending>,
}

/// What [`DispatchState::step`] asks of the driver.
#[derive(Debug)]
pub enum Step<'a> {
    /// Call the hook [`HookCall::hook`] names, then give its answer to
    /// [`HookCall::answer`], then step again.
    Call(HookCall<'a>),
    /// The session has no more events for now: do what the [`Flow`] says.
    Done(Flow),
}

/// One hook to call: which one and with what ([`hook`](Self::hook)), and where its answer
/// goes ([`answer`](Self::answer)). Dropping it unanswered leaves a decision unmade.
#[derive(Debug)]
pub struct HookCall<'a> {
    state: &'a mut DispatchState,
    /// The session, to take the decision; absent for the hooks called outside
    /// [`DispatchState::step`] (`tls_started`, `close`), which decide nothing.
    session: Option<&'a mut ServerSession>,
}

/// A hook call's event, owned so that the session is free to take the decision.
#[derive(Debug)]
enum Pending {
    Hello {
        verb: HelloVerb,
        domain: String,
    },
    Auth(AuthAttempt),
    Mail {
        from: ReversePath,
        params: MailParameters,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParameters,
    },
    DataStart,
    /// The chunk itself is still in the session ([`ServerSession::message_data`]).
    DataChunk,
    DataEnd,
    /// The message ended after `data_chunk` failed: `data_aborted` is called instead of
    /// `data_end`, and the failure is the reply.
    DataEndFailed(Reply),
    DataAborted(AbortReason),
    Reset,
    Verify(String),
    Expand(String),
    TlsStarted,
    Close,
}

/// A hook with its arguments: what [`HookCall::hook`] asks the driver to call. The variants
/// are the [`SessionHandler`] methods of the same names.
#[derive(Debug)]
pub enum Hook<'a> {
    /// [`SessionHandler::hello`].
    Hello {
        /// The verb the client used.
        verb: HelloVerb,
        /// The name it gave.
        domain: &'a str,
    },
    /// [`SessionHandler::tls_started`].
    TlsStarted,
    /// [`SessionHandler::auth`].
    Auth(&'a AuthAttempt),
    /// [`SessionHandler::mail`].
    Mail {
        /// The sender.
        from: &'a ReversePath,
        /// MAIL's parameters.
        params: &'a MailParameters,
    },
    /// [`SessionHandler::rcpt`].
    Rcpt {
        /// The recipient.
        to: &'a ForwardPath,
        /// RCPT's parameters.
        params: &'a RcptParameters,
    },
    /// [`SessionHandler::data_start`].
    DataStart(&'a Transaction),
    /// [`SessionHandler::data_chunk`].
    DataChunk(&'a [u8]),
    /// [`SessionHandler::data_end`].
    DataEnd(&'a Transaction),
    /// [`SessionHandler::data_aborted`].
    DataAborted(AbortReason),
    /// [`SessionHandler::reset`].
    Reset,
    /// [`SessionHandler::verify`].
    Verify(&'a str),
    /// [`SessionHandler::expand`].
    Expand(&'a str),
    /// [`SessionHandler::close`].
    Close,
}

/// What a hook returned, for [`HookCall::answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The decision of `hello`, `auth`, `mail`, `rcpt`, `data_start`, `data_end`,
    /// `verify` or `expand`.
    Decision(Decision),
    /// The result of `data_chunk`.
    Chunk(Result<(), Reply>),
    /// A hook without a result returned.
    Done,
}

impl Hook<'_> {
    /// Calls this hook on a synchronous handler.
    pub fn call<S: SessionHandler + ?Sized>(self, h: &mut S) -> Answer {
        match self {
            Hook::Hello { verb, domain } => Answer::Decision(h.hello(verb, domain)),
            Hook::TlsStarted => {
                h.tls_started();
                Answer::Done
            }
            Hook::Auth(attempt) => Answer::Decision(h.auth(attempt)),
            Hook::Mail { from, params } => Answer::Decision(h.mail(from, params)),
            Hook::Rcpt { to, params } => Answer::Decision(h.rcpt(to, params)),
            Hook::DataStart(t) => Answer::Decision(h.data_start(t)),
            Hook::DataChunk(chunk) => Answer::Chunk(h.data_chunk(chunk)),
            Hook::DataEnd(t) => Answer::Decision(h.data_end(t)),
            Hook::DataAborted(reason) => {
                h.data_aborted(reason);
                Answer::Done
            }
            Hook::Reset => {
                h.reset();
                Answer::Done
            }
            Hook::Verify(argument) => Answer::Decision(h.verify(argument)),
            Hook::Expand(argument) => Answer::Decision(h.expand(argument)),
            Hook::Close => {
                h.close();
                Answer::Done
            }
        }
    }

    /// True for the hooks whose answer is a [`Decision`] (the session waits for it).
    pub fn needs_decision(&self) -> bool {
        matches!(
            self,
            Hook::Hello { .. }
                | Hook::Auth(_)
                | Hook::Mail { .. }
                | Hook::Rcpt { .. }
                | Hook::DataStart(_)
                | Hook::DataEnd(_)
                | Hook::Verify(_)
                | Hook::Expand(_)
        )
    }
}

impl DispatchState {
    /// The state of a new connection; `tls` says whether it is already encrypted.
    pub fn new(tls: bool) -> DispatchState {
        DispatchState {
            transaction: Transaction {
                tls,
                ..Transaction::default()
            },
            data_error: None,
            closed: false,
            closing: false,
            pending: None,
        }
    }

    /// The transaction as known so far.
    pub fn transaction(&self) -> &Transaction {
        &self.transaction
    }

    /// Takes the session's events until one calls a hook or there are none left; `refusal`
    /// answers Connect when the handler refused the connection (the driver then answers
    /// every call with [`HookCall::refuse`]).
    pub fn step<'a>(
        &'a mut self,
        session: &'a mut ServerSession,
        refusal: Option<&Reply>,
    ) -> Step<'a> {
        match self.poll(session, refusal) {
            Some(flow) => Step::Done(flow),
            None => Step::Call(HookCall {
                state: self,
                session: Some(session),
            }),
        }
    }

    /// [`step`](Self::step) without the borrow: `None` when a hook is due (see
    /// [`due_hook`](Self::due_hook) and [`answer`](Self::answer)), else what the driver
    /// must do now. A hook already due is still due.
    pub fn poll(&mut self, session: &mut ServerSession, refusal: Option<&Reply>) -> Option<Flow> {
        if self.pending.is_some() {
            return None;
        }
        if std::mem::take(&mut self.closing) {
            return Some(Flow::Close);
        }
        loop {
            let Some(event) = session.poll_event() else {
                return Some(Flow::Continue);
            };
            let pending = match event {
                ServerEvent::Connect => {
                    let d = match refusal {
                        Some(r) => Decision::Reply(r.clone()),
                        None => Decision::Accept,
                    };
                    decide(session, d);
                    continue;
                }
                ServerEvent::StartTls => {
                    self.reset_transaction();
                    return Some(Flow::StartTls);
                }
                ServerEvent::Close => match self.close_pending() {
                    Some(pending) => {
                        self.closing = true;
                        pending
                    }
                    None => return Some(Flow::Close),
                },
                ServerEvent::Hello { verb, domain } => Pending::Hello { verb, domain },
                ServerEvent::Auth(attempt) => Pending::Auth(attempt),
                ServerEvent::Mail { from, params } => Pending::Mail { from, params },
                ServerEvent::Rcpt { to, params } => Pending::Rcpt { to, params },
                ServerEvent::MessageStart => {
                    self.data_error = None;
                    Pending::DataStart
                }
                // After a failure the rest of the message is not the handler's business.
                ServerEvent::MessageData(_) if self.data_error.is_some() => continue,
                ServerEvent::MessageData(_) => Pending::DataChunk,
                ServerEvent::MessageEnd => match self.data_error.take() {
                    Some(reply) => Pending::DataEndFailed(reply),
                    None => Pending::DataEnd,
                },
                ServerEvent::MessageAborted(reason) => {
                    self.data_error = None;
                    Pending::DataAborted(reason)
                }
                ServerEvent::Reset => {
                    self.transaction.from = None;
                    self.transaction.recipients.clear();
                    Pending::Reset
                }
                ServerEvent::Verify(argument) => Pending::Verify(argument),
                ServerEvent::Expand(argument) => Pending::Expand(argument),
            };
            self.pending = Some(pending);
            return None;
        }
    }

    /// The hook that is due, with its arguments (a chunk is read from `session`).
    pub fn due_hook<'a>(&'a self, session: Option<&'a ServerSession>) -> Option<Hook<'a>> {
        let t = &self.transaction;
        Some(match self.pending.as_ref()? {
            Pending::Hello { verb, domain } => Hook::Hello {
                verb: *verb,
                domain,
            },
            Pending::Auth(attempt) => Hook::Auth(attempt),
            Pending::Mail { from, params } => Hook::Mail { from, params },
            Pending::Rcpt { to, params } => Hook::Rcpt { to, params },
            Pending::DataStart => Hook::DataStart(t),
            Pending::DataChunk => Hook::DataChunk(session.map_or(&[], |s| s.message_data())),
            Pending::DataEnd => Hook::DataEnd(t),
            Pending::DataEndFailed(_) => Hook::DataAborted(AbortReason::Disconnected),
            Pending::DataAborted(reason) => Hook::DataAborted(*reason),
            Pending::Reset => Hook::Reset,
            Pending::Verify(argument) => Hook::Verify(argument),
            Pending::Expand(argument) => Hook::Expand(argument),
            Pending::TlsStarted => Hook::TlsStarted,
            Pending::Close => Hook::Close,
        })
    }

    /// Applies what the due hook returned: keeps the accepted parts of the envelope,
    /// remembers a failed chunk, and gives a decision to the session. Without a due hook
    /// it does nothing.
    pub fn answer(&mut self, session: Option<&mut ServerSession>, answer: Answer) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let t = &mut self.transaction;
        let decision = match pending {
            Pending::Hello { verb, domain } => {
                let d = answer.into_decision();
                if is_accept(&d) {
                    t.hello = Some((verb, domain));
                    t.from = None;
                    t.recipients.clear();
                }
                Some(d)
            }
            Pending::Auth(attempt) => {
                let d = answer.into_decision();
                if is_accept(&d) {
                    t.authenticated = Some(attempt.username);
                }
                Some(d)
            }
            Pending::Mail { from, params } => {
                let d = answer.into_decision();
                if is_accept(&d) {
                    t.from = Some(from);
                    t.mail_params = params;
                    t.recipients.clear();
                }
                Some(d)
            }
            Pending::Rcpt { to, .. } => {
                let d = answer.into_decision();
                if is_accept(&d) {
                    t.recipients.push(to);
                }
                Some(d)
            }
            Pending::DataChunk => {
                if let Answer::Chunk(Err(reply)) = answer {
                    self.data_error = Some(reply);
                }
                None
            }
            Pending::DataEnd => {
                t.from = None;
                t.recipients.clear();
                Some(answer.into_decision())
            }
            Pending::DataEndFailed(reply) => {
                t.from = None;
                t.recipients.clear();
                Some(Decision::Reply(reply))
            }
            Pending::DataStart | Pending::Verify(_) | Pending::Expand(_) => {
                Some(answer.into_decision())
            }
            Pending::DataAborted(_) | Pending::Reset | Pending::TlsStarted | Pending::Close => None,
        };
        if let (Some(d), Some(session)) = (decision, session) {
            decide(session, d);
        }
    }

    /// Answers the due hook as for a connection refused in [`Handler::connect`]: every
    /// decision is a refusal, and no user code runs.
    pub fn refuse(&mut self, session: Option<&mut ServerSession>) {
        let needs_decision = matches!(
            self.pending.take(),
            Some(
                Pending::Hello { .. }
                    | Pending::Auth(_)
                    | Pending::Mail { .. }
                    | Pending::Rcpt { .. }
                    | Pending::DataStart
                    | Pending::DataEnd
                    | Pending::DataEndFailed(_)
                    | Pending::Verify(_)
                    | Pending::Expand(_)
            )
        );
        if needs_decision && let Some(session) = session {
            decide(
                session,
                Decision::Reply(Reply::new(
                    ReplyCode::BAD_SEQUENCE,
                    Some(EnhancedCode::BAD_SEQUENCE),
                    "Error: session rejected",
                )),
            );
        }
    }

    /// The TLS handshake succeeded (call after [`ServerSession::tls_established`]): the
    /// transaction starts over, encrypted, and the `tls_started` hook is due.
    pub fn tls_started(&mut self) -> HookCall<'_> {
        self.begin_tls();
        HookCall {
            state: self,
            session: None,
        }
    }

    /// [`tls_started`](Self::tls_started) without the borrow: the `tls_started` hook is
    /// now due.
    pub fn begin_tls(&mut self) {
        self.reset_transaction();
        self.transaction.tls = true;
        self.pending = Some(Pending::TlsStarted);
    }

    /// The connection ended (the session closed it, or the driver lost it): the `close`
    /// hook, the first time only.
    pub fn close(&mut self) -> Option<HookCall<'_>> {
        self.begin_close().then_some(HookCall {
            state: self,
            session: None,
        })
    }

    /// [`close`](Self::close) without the borrow: true when the `close` hook is now due
    /// (the first time only).
    pub fn begin_close(&mut self) -> bool {
        match self.close_pending() {
            Some(pending) => {
                self.pending = Some(pending);
                true
            }
            None => false,
        }
    }

    /// True once the `close` hook has been due.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn close_pending(&mut self) -> Option<Pending> {
        (!std::mem::replace(&mut self.closed, true)).then_some(Pending::Close)
    }

    fn reset_transaction(&mut self) {
        let tls = self.transaction.tls;
        self.transaction = Transaction {
            tls,
            ..Transaction::default()
        };
    }
}

impl HookCall<'_> {
    /// The hook to call, with its arguments.
    pub fn hook(&self) -> Hook<'_> {
        self.state
            .due_hook(self.session.as_deref())
            .unwrap_or(Hook::Close)
    }

    /// Applies what the hook returned: keeps the accepted parts of the envelope, remembers
    /// a failed chunk, and gives a decision to the session.
    pub fn answer(self, answer: Answer) {
        self.state.answer(self.session, answer);
    }

    /// Answers without a handler (the connection was refused in [`Handler::connect`]):
    /// every decision is a refusal.
    pub fn refuse(self) {
        self.state.refuse(self.session);
    }
}

impl Answer {
    fn into_decision(self) -> Decision {
        match self {
            Answer::Decision(d) => d,
            // A driver answered a decision hook with something else: a bug, which the
            // client sees as a temporary failure rather than as an acceptance.
            Answer::Chunk(_) | Answer::Done => Decision::Reply(Reply::new(
                ReplyCode::LOCAL_ERROR,
                Some(EnhancedCode::new(4, 3, 0)),
                "Error: internal server error",
            )),
        }
    }
}

fn decide(session: &mut ServerSession, decision: Decision) {
    // The session asked for this decision in the event just polled.
    let answered = session.decide(decision);
    debug_assert!(answered.is_ok());
}

fn is_accept(decision: &Decision) -> bool {
    match decision {
        Decision::Accept => true,
        Decision::Reply(r) => r.is_positive(),
        Decision::PerRecipient(rs) => rs.first().is_none_or(Reply::is_positive),
    }
}

/// Adds password authentication to any handler: AUTH is checked against a fixed table of
/// users (in time that does not depend on how much of a password was right), and everything
/// else goes to the inner handler.
///
/// ```
/// use smtp_core::handler::{DiscardHandler, PasswordAuth};
/// let handler = PasswordAuth::new(DiscardHandler, [("alice", "secret")]);
/// ```
#[derive(Debug)]
pub struct PasswordAuth<H> {
    inner: H,
    users: Arc<Vec<(String, Secret)>>,
}

impl<H> PasswordAuth<H> {
    /// Wraps `inner` with these user names and passwords.
    pub fn new<U: Into<String>, P: Into<String>>(
        inner: H,
        users: impl IntoIterator<Item = (U, P)>,
    ) -> PasswordAuth<H> {
        let users = users
            .into_iter()
            .map(|(u, p)| (u.into(), Secret::new(p)))
            .collect();
        PasswordAuth {
            inner,
            users: Arc::new(users),
        }
    }
}

impl<H: Handler> Handler for PasswordAuth<H> {
    type Session = PasswordAuthSession<H::Session>;
    fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply> {
        Ok(PasswordAuthSession {
            inner: self.inner.connect(info)?,
            users: Arc::clone(&self.users),
        })
    }
}

/// The per-connection part of [`PasswordAuth`].
#[derive(Debug)]
pub struct PasswordAuthSession<S> {
    inner: S,
    users: Arc<Vec<(String, Secret)>>,
}

impl<S: SessionHandler> SessionHandler for PasswordAuthSession<S> {
    fn hello(&mut self, verb: HelloVerb, domain: &str) -> Decision {
        self.inner.hello(verb, domain)
    }
    fn tls_started(&mut self) {
        self.inner.tls_started()
    }
    fn auth(&mut self, attempt: &AuthAttempt) -> Decision {
        // Check every entry so that the time taken does not reveal which user exists.
        let mut ok = false;
        for (user, password) in self.users.iter() {
            let user_ok = Secret::new(user.as_str()).constant_time_eq(&attempt.username);
            let password_ok = password.constant_time_eq(attempt.password.expose());
            ok |= user_ok & password_ok;
        }
        let authz_ok =
            attempt.authorization_id.is_empty() || attempt.authorization_id == attempt.username;
        if ok && authz_ok {
            Decision::Accept
        } else {
            Decision::Reply(Reply::new(
                ReplyCode::AUTH_INVALID,
                Some(EnhancedCode::AUTH_INVALID),
                "Error: authentication failed",
            ))
        }
    }
    fn mail(&mut self, from: &ReversePath, params: &MailParameters) -> Decision {
        self.inner.mail(from, params)
    }
    fn rcpt(&mut self, to: &ForwardPath, params: &RcptParameters) -> Decision {
        self.inner.rcpt(to, params)
    }
    fn data_start(&mut self, transaction: &Transaction) -> Decision {
        self.inner.data_start(transaction)
    }
    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        self.inner.data_chunk(chunk)
    }
    fn data_end(&mut self, transaction: &Transaction) -> Decision {
        self.inner.data_end(transaction)
    }
    fn data_aborted(&mut self, reason: AbortReason) {
        self.inner.data_aborted(reason)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn verify(&mut self, argument: &str) -> Decision {
        self.inner.verify(argument)
    }
    fn expand(&mut self, argument: &str) -> Decision {
        self.inner.expand(argument)
    }
    fn close(&mut self) {
        self.inner.close()
    }
    fn may_block(&self, hook: &Hook<'_>) -> bool {
        // The password check only computes.
        !matches!(hook, Hook::Auth(_)) && self.inner.may_block(hook)
    }
}

/// Accepts every message and throws it away: for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardHandler;

/// The per-connection part of [`DiscardHandler`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSession;

impl Handler for DiscardHandler {
    type Session = DiscardSession;
    fn connect(&self, _info: &ConnectionInfo) -> Result<DiscardSession, Reply> {
        Ok(DiscardSession)
    }
}

impl SessionHandler for DiscardSession {
    fn may_block(&self, _hook: &Hook<'_>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerConfig;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        content: Vec<u8>,
    }

    impl SessionHandler for Recorder {
        fn hello(&mut self, verb: HelloVerb, domain: &str) -> Decision {
            self.calls.push(format!("hello {verb:?} {domain}"));
            Decision::Accept
        }
        fn mail(&mut self, from: &ReversePath, _: &MailParameters) -> Decision {
            self.calls.push(format!("mail {from}"));
            Decision::Accept
        }
        fn rcpt(&mut self, to: &ForwardPath, _: &RcptParameters) -> Decision {
            self.calls.push(format!("rcpt {to}"));
            if to.as_str().starts_with("no") {
                Decision::Reply(Reply::new(
                    ReplyCode::MAILBOX_UNAVAILABLE,
                    Some(EnhancedCode::new(5, 1, 1)),
                    "no",
                ))
            } else {
                Decision::Accept
            }
        }
        fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
            self.content.extend_from_slice(chunk);
            Ok(())
        }
        fn data_end(&mut self, t: &Transaction) -> Decision {
            let to: Vec<_> = t.recipients.iter().map(|r| r.as_str().to_owned()).collect();
            self.calls.push(format!(
                "data_end from={} to={}",
                t.from.as_ref().unwrap(),
                to.join(",")
            ));
            Decision::Reply(Reply::new(
                ReplyCode::OK,
                Some(EnhancedCode::new(2, 0, 0)),
                "queued as X1",
            ))
        }
        fn reset(&mut self) {
            self.calls.push("reset".into());
        }
        fn close(&mut self) {
            self.calls.push("close".into());
        }
    }

    /// A session for these tests, which feed a whole scripted dialogue in one write, before
    /// the greeting: the pipelining sync check (tested on the wire in
    /// tests/session_server.rs) would end it, so it is off here.
    fn scripted_session() -> ServerSession {
        let mut config = ServerConfig::new("mx.test");
        config.pipelining_sync = false;
        ServerSession::new(config, Duration::ZERO)
    }

    #[test]
    fn dispatch_calls_hooks_and_tracks_the_transaction() {
        let mut session = scripted_session();
        let mut dispatch = Dispatch::new(Recorder::default(), false);
        assert_eq!(dispatch.run(&mut session, None), Flow::Continue);
        session.receive(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<no@y.test>\r\nDATA\r\nhi\r\n.\r\nRSET\r\nQUIT\r\n",
            Duration::ZERO,
        );
        assert_eq!(dispatch.run(&mut session, None), Flow::Close);
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.contains("250 2.0.0 queued as X1\r\n"), "{out}");
        let h = dispatch.handler().unwrap();
        assert_eq!(h.content, b"hi\r\n");
        assert_eq!(
            h.calls,
            [
                "hello Ehlo c",
                "mail <a@b.test>",
                "rcpt <x@y.test>",
                "rcpt <no@y.test>",
                "data_end from=<a@b.test> to=x@y.test",
                "close"
            ]
        );
    }

    #[test]
    fn a_failing_chunk_becomes_the_final_reply() {
        struct Full;
        impl SessionHandler for Full {
            fn data_chunk(&mut self, _: &[u8]) -> Result<(), Reply> {
                Err(Reply::new(
                    ReplyCode::INSUFFICIENT_STORAGE,
                    Some(EnhancedCode::new(4, 3, 1)),
                    "disk full",
                ))
            }
        }
        let mut session = scripted_session();
        let mut dispatch = Dispatch::new(Full, false);
        session.receive(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nhi\r\n.\r\n",
            Duration::ZERO,
        );
        dispatch.run(&mut session, None);
        dispatch.run(&mut session, None);
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.ends_with("452 4.3.1 disk full\r\n"), "{out}");
    }

    #[test]
    fn refused_connection() {
        let mut session = scripted_session();
        let mut dispatch: Dispatch<DiscardSession> = Dispatch::refused();
        let refusal = Reply::new(
            ReplyCode::SERVICE_UNAVAILABLE,
            Some(EnhancedCode::new(4, 7, 0)),
            "too busy",
        );
        assert_eq!(dispatch.run(&mut session, Some(&refusal)), Flow::Close);
        assert_eq!(session.take_output(), b"421 4.7.0 too busy\r\n");
    }

    /// Steps `state` to the end, answering every hook with `answer` and listing them.
    fn step_all(
        state: &mut DispatchState,
        session: &mut ServerSession,
        mut answer: impl FnMut(&Hook<'_>) -> Answer,
    ) -> (Vec<String>, Flow) {
        let mut hooks = Vec::new();
        loop {
            match state.step(session, None) {
                Step::Call(call) => {
                    let hook = call.hook();
                    hooks.push(format!("{hook:?}"));
                    let a = answer(&hook);
                    call.answer(a);
                }
                Step::Done(flow) => return (hooks, flow),
            }
        }
    }

    #[test]
    fn the_state_names_each_hook_and_keeps_what_was_accepted() {
        let mut session = scripted_session();
        let mut state = DispatchState::new(false);
        session.receive(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<no@y.test>\r\nDATA\r\n",
            Duration::ZERO,
        );
        let refuse_no = |hook: &Hook<'_>| match hook {
            Hook::Rcpt { to, .. } if to.as_str().starts_with("no") => Answer::Decision(
                Decision::Reply(Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, None, "no")),
            ),
            Hook::DataStart(t) => {
                // The transaction data_start sees holds only the accepted recipient.
                assert_eq!(t.recipients.len(), 1);
                Answer::Decision(Decision::Accept)
            }
            _ => Answer::Decision(Decision::Accept),
        };
        let (hooks, flow) = step_all(&mut state, &mut session, refuse_no);
        assert_eq!(flow, Flow::Continue);
        assert_eq!(hooks.len(), 5, "{hooks:?}");
        assert!(hooks[0].starts_with("Hello"), "{hooks:?}");
        assert!(hooks[4].starts_with("DataStart"), "{hooks:?}");
        let t = state.transaction();
        assert_eq!(t.from.as_ref().unwrap().to_string(), "<a@b.test>");
        assert_eq!(t.recipients.len(), 1);
        assert_eq!(t.recipients[0].as_str(), "x@y.test");
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(
            out.contains("550 no\r\n") && out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
            "{out}"
        );
    }

    #[test]
    fn a_decision_hook_answered_without_a_decision_is_a_temporary_failure() {
        let mut session = scripted_session();
        let mut state = DispatchState::new(false);
        session.receive(b"EHLO c\r\n", Duration::ZERO);
        let (_, flow) = step_all(&mut state, &mut session, |_| Answer::Done);
        assert_eq!(flow, Flow::Continue);
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(
            out.ends_with("451 4.3.0 Error: internal server error\r\n"),
            "{out}"
        );
        assert_eq!(state.transaction().hello, None);
    }

    #[test]
    fn password_auth_forwards_may_block_except_for_its_own_check() {
        struct MayBlock;
        impl Handler for MayBlock {
            type Session = MayBlock;
            fn connect(&self, _: &ConnectionInfo) -> Result<MayBlock, Reply> {
                Ok(MayBlock)
            }
        }
        impl SessionHandler for MayBlock {}
        let info = ConnectionInfo {
            id: 1,
            peer: None,
            local: None,
            hostname: "mx.test".into(),
            tls: false,
        };
        let t = Transaction::default();
        let attempt = AuthAttempt {
            mechanism: crate::ehlo::AuthMechanism::Plain,
            authorization_id: String::new(),
            username: "u".into(),
            password: crate::auth::Secret::new("p"),
        };
        let blocking = PasswordAuth::new(MayBlock, [("u", "p")])
            .connect(&info)
            .unwrap();
        assert!(!blocking.may_block(&Hook::Auth(&attempt)));
        assert!(blocking.may_block(&Hook::DataEnd(&t)));
        let quick = PasswordAuth::new(DiscardHandler, [("u", "p")])
            .connect(&info)
            .unwrap();
        assert!(!quick.may_block(&Hook::DataEnd(&t)));
    }

    #[test]
    fn the_close_hook_is_called_once() {
        let mut session = scripted_session();
        let mut state = DispatchState::new(false);
        session.receive(b"QUIT\r\n", Duration::ZERO);
        let (hooks, flow) = step_all(&mut state, &mut session, |_| Answer::Done);
        assert_eq!(
            (hooks.as_slice(), flow),
            (["Close".to_owned()].as_slice(), Flow::Close)
        );
        // The driver's own close after the session's adds nothing.
        assert!(state.close().is_none());
    }

    #[test]
    fn tls_started_starts_an_encrypted_transaction() {
        let mut state = DispatchState::new(false);
        let call = state.tls_started();
        assert!(matches!(call.hook(), Hook::TlsStarted));
        call.answer(Answer::Done);
        assert_eq!(
            state.transaction(),
            &Transaction {
                tls: true,
                ..Transaction::default()
            }
        );
    }
}
