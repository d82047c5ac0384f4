//! The event→hook mapping: [`DispatchState`] turns a [`ServerSession`]'s events into the
//! hooks of [`crate::server::hooks`] and applies their answers (the decision to the
//! session, the accepted parts of the envelope to the [`Transaction`], a failed chunk to
//! the end of the message). It exists once; the connection layer
//! ([`crate::server::connection`]) and [`Dispatch`] drive it.

use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::hooks::{
    Answer, Hook, HookKind, HookSet, IntoAnswer, SessionHandler, Transaction,
};
use crate::server::{AbortReason, Decision, ServerEvent, ServerSession};

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

    /// A dispatcher for a connection the handler refused in [`Handler::connect`](crate::server::hooks::Handler::connect): the
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

/// What [`DispatchState::poll_answering`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Polled {
    /// No more events for now: do what the [`Flow`] says.
    Flow(Flow),
    /// A hook is due ([`DispatchState::due_hook`]).
    HookDue,
    /// A hook left to its default was answered, and its reply is in the session's
    /// output: write it, then poll again.
    Answered,
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
    /// The session's event (a chunk's bytes are still in the session:
    /// [`ServerSession::message_data`]).
    Event(ServerEvent<'static>),
    /// The message ended after `data_chunk` failed: `data_aborted` is called instead of
    /// `data_end`, and the failure is the reply.
    DataEndFailed(Reply),
    /// The TLS handshake succeeded (the driver says so; the session has no event for it).
    TlsStarted,
}

impl Pending {
    /// The kind of the hook this calls ([`DispatchState::due_hook`]'s when due).
    fn hook_kind(&self) -> Option<HookKind> {
        match self {
            Pending::Event(event) => event.hook_kind(),
            Pending::DataEndFailed(_) => Some(HookKind::DataAborted),
            Pending::TlsStarted => Some(HookKind::TlsStarted),
        }
    }

    fn needs_decision(&self) -> bool {
        match self {
            Pending::Event(event) => event.needs_decision(),
            Pending::DataEndFailed(_) => true,
            Pending::TlsStarted => false,
        }
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
        match self.poll_answering(session, refusal, HookSet::EMPTY) {
            Polled::Flow(flow) => Some(flow),
            Polled::HookDue | Polled::Answered => None,
        }
    }

    /// [`poll`](Self::poll), answering the hooks in `by_default` with their defaults as
    /// they come (as [`answer`](Self::answer) would with [`Hook::default_answer`]), unless
    /// the connection was refused: it stops after one whose answer left output, so that
    /// the reply is written before the session reads on, as when the driver answers.
    pub(crate) fn poll_answering(
        &mut self,
        session: &mut ServerSession,
        refusal: Option<&Reply>,
        by_default: HookSet,
    ) -> Polled {
        if self.pending.is_some() {
            return Polled::HookDue;
        }
        if std::mem::take(&mut self.closing) {
            return Polled::Flow(Flow::Close);
        }
        loop {
            let Some(event) = session.poll_event() else {
                return Polled::Flow(Flow::Continue);
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
                    return Polled::Flow(Flow::StartTls);
                }
                ServerEvent::Close => match self.close_pending() {
                    Some(pending) => {
                        self.closing = true;
                        pending
                    }
                    None => return Polled::Flow(Flow::Close),
                },
                ServerEvent::MessageStart => {
                    self.data_error = None;
                    Pending::Event(ServerEvent::MessageStart)
                }
                // After a failure the rest of the message is not the handler's business.
                ServerEvent::MessageData(_) if self.data_error.is_some() => continue,
                ServerEvent::MessageEnd => match self.data_error.take() {
                    Some(reply) => Pending::DataEndFailed(reply),
                    None => Pending::Event(ServerEvent::MessageEnd),
                },
                ServerEvent::MessageAborted(reason) => {
                    self.data_error = None;
                    Pending::Event(ServerEvent::MessageAborted(reason))
                }
                ServerEvent::Reset => {
                    self.transaction.from = None;
                    self.transaction.recipients.clear();
                    Pending::Event(ServerEvent::Reset)
                }
                event => Pending::Event(event.into_owned()),
            };
            if by_default != HookSet::EMPTY && refusal.is_none() {
                // perf: answered here, not handed to the driver and back (and told by its
                // kind, without making the hook).
                if let Some(kind) = pending.hook_kind()
                    && by_default.contains(kind)
                {
                    self.apply(pending, Some(session), kind.default_answer());
                    if !session.output().is_empty() {
                        return Polled::Answered;
                    }
                    continue;
                }
            }
            self.pending = Some(pending);
            return Polled::HookDue;
        }
    }

    /// True when [`poll`](Self::poll) has nothing of its own to say: no hook due, no
    /// close to report; what it returns is then up to the session's events.
    #[inline]
    pub(crate) fn is_quiet(&self) -> bool {
        self.pending.is_none() && !self.closing
    }

    /// True while a hook is due (polled and not yet answered).
    pub fn has_due_hook(&self) -> bool {
        self.pending.is_some()
    }

    /// The kind of the hook that is due ([`due_hook`](Self::due_hook)'s), without making
    /// the hook.
    pub(crate) fn due_hook_kind(&self) -> Option<HookKind> {
        self.pending.as_ref()?.hook_kind()
    }

    /// The hook that is due, with its arguments (a chunk is read from `session`).
    pub fn due_hook<'a>(&'a self, session: Option<&'a ServerSession>) -> Option<Hook<'a>> {
        self.hook_of(self.pending.as_ref()?, session)
    }

    /// The hook `pending` calls, with its arguments.
    fn hook_of<'a>(
        &'a self,
        pending: &'a Pending,
        session: Option<&'a ServerSession>,
    ) -> Option<Hook<'a>> {
        match pending {
            Pending::Event(ServerEvent::MessageData(_)) => Some(Hook::DataChunk {
                chunk: session.map_or(&[], |s| s.message_data()),
            }),
            Pending::Event(event) => event.hook(&self.transaction),
            Pending::DataEndFailed(_) => Some(Hook::DataAborted {
                reason: AbortReason::Disconnected,
            }),
            Pending::TlsStarted => Some(Hook::TlsStarted),
        }
    }

    /// Applies what the due hook returned: keeps the accepted parts of the envelope,
    /// remembers a failed chunk, and gives a decision to the session. Without a due hook
    /// it does nothing.
    pub fn answer(&mut self, session: Option<&mut ServerSession>, answer: Answer) {
        if let Some(pending) = self.pending.take() {
            self.apply(pending, session, answer);
        }
    }

    /// [`answer`](Self::answer) for the hook of `pending`.
    fn apply(&mut self, pending: Pending, mut session: Option<&mut ServerSession>, answer: Answer) {
        let t = &mut self.transaction;
        // perf: each arm gives its decision to the session itself, rather than all of them
        // through one `Option<Decision>` after the match.
        match pending {
            Pending::Event(ServerEvent::Hello { verb, domain }) => {
                let d = Decision::from_answer(answer);
                if is_accept(&d) {
                    t.hello = Some((verb, domain));
                    t.from = None;
                    t.recipients.clear();
                }
                decide_in(session, d);
            }
            Pending::Event(ServerEvent::Auth(attempt)) => {
                let d = Decision::from_answer(answer);
                if is_accept(&d) {
                    t.authenticated = Some(attempt.username);
                }
                decide_in(session, d);
            }
            Pending::Event(ServerEvent::Mail { from, params }) => {
                let d = Decision::from_answer(answer);
                if is_accept(&d) {
                    t.from = Some(from);
                    t.mail_params = params;
                    t.recipients.clear();
                }
                decide_in(session, d);
            }
            Pending::Event(ServerEvent::Rcpt { to, .. }) => {
                let d = Decision::from_answer(answer);
                if is_accept(&d) {
                    t.recipients.push(to);
                }
                decide_in(session, d);
            }
            Pending::Event(ServerEvent::MessageData(_)) => {
                if let Answer::Chunk(Err(reply)) = answer {
                    self.data_error = Some(reply);
                }
            }
            Pending::Event(ServerEvent::MessageEnd) => {
                end_envelope(t, session.as_deref_mut());
                decide_in(session, Decision::from_answer(answer));
            }
            Pending::DataEndFailed(reply) => {
                end_envelope(t, session.as_deref_mut());
                decide_in(session, Decision::Reply(reply));
            }
            Pending::Event(ServerEvent::MessageStart) => {
                decide_in(session, Decision::from_answer(answer));
            }
            // Every other hook: its decision goes to the session as it is.
            pending => {
                if pending.needs_decision() {
                    decide_in(session, Decision::from_answer(answer));
                }
            }
        }
    }

    /// Answers the due hook as for a connection refused in [`Handler::connect`](crate::server::hooks::Handler::connect): every
    /// decision is a refusal, and no user code runs.
    pub fn refuse(&mut self, session: Option<&mut ServerSession>) {
        let needs_decision = self.pending.take().is_some_and(|p| p.needs_decision());
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
        (!std::mem::replace(&mut self.closed, true)).then_some(Pending::Event(ServerEvent::Close))
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

    /// Answers without a handler (the connection was refused in [`Handler::connect`](crate::server::hooks::Handler::connect)):
    /// every decision is a refusal.
    pub fn refuse(self) {
        self.state.refuse(self.session);
    }
}

/// Forgets the envelope of the message that ended; its addresses' strings go back to the
/// session to hold the next message's (perf: two allocations and two frees less per
/// message).
fn end_envelope(t: &mut Transaction, session: Option<&mut ServerSession>) {
    match session {
        Some(session) => {
            let spare = session.spare_text();
            if let Some(from) = t.from.take() {
                spare.keep_reverse(from);
            }
            for to in t.recipients.drain(..) {
                spare.keep_forward(to);
            }
        }
        None => {
            t.from = None;
            t.recipients.clear();
        }
    }
}

/// [`decide`] when there is a session to decide (the hooks called outside
/// [`DispatchState::step`] have none).
#[inline]
fn decide_in(session: Option<&mut ServerSession>, decision: Decision) {
    if let Some(session) = session {
        decide(session, decision);
    }
}

fn decide(session: &mut ServerSession, decision: Decision) {
    // The session asked for this decision in the event just polled.
    let answered = session.decide(decision);
    debug_assert!(answered.is_ok());
}

/// Whether the answer to HELO/EHLO, AUTH, MAIL or RCPT accepts it: a completion (2xx)
/// reply; a 3xx one is refused by the session (see `fit_reply` there), so it is no
/// acceptance here either.
fn is_accept(decision: &Decision) -> bool {
    match decision {
        Decision::Accept => true,
        Decision::Reply(r) => r.is_completion(),
        Decision::PerRecipient(rs) => rs.first().is_none_or(Reply::is_completion),
    }
}
