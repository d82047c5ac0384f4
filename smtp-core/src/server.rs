//! The server side of an SMTP (or LMTP) session as a sans-IO state machine.
//!
//! A [`ServerSession`] owns no socket, thread or clock. The embedder feeds it the bytes it
//! read ([`ServerSession::receive`]), pulls [`ServerEvent`]s ([`ServerSession::poll_event`]),
//! answers the events that ask for a [`Decision`] ([`ServerSession::decide`]), and writes
//! what [`ServerSession::output`] holds. Time comes in as a `Duration` read from any
//! monotonic clock the embedder likes; the session says when it next needs to be woken
//! ([`ServerSession::next_deadline`]) and what happens then ([`ServerSession::handle_timeout`]).
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};
//!
//! let now = Duration::ZERO;
//! let mut session = ServerSession::new(ServerConfig::new("mx.example"), now);
//! let mut wire = Vec::new();
//! let mut drive = |session: &mut ServerSession, input: &[u8]| {
//!     session.receive(input, now);
//!     while let Some(event) = session.poll_event() {
//!         if event.needs_decision() {
//!             session.decide(Decision::Accept).unwrap();
//!         }
//!     }
//!     wire.extend_from_slice(session.output());
//!     session.clear_output();
//! };
//! drive(&mut session, b"");
//! // EHLO ends a pipelining group: the client waits for its reply before the next group.
//! drive(&mut session, b"EHLO client.example\r\n");
//! drive(&mut session, b"MAIL FROM:<a@b.example>\r\nQUIT\r\n");
//! let text = String::from_utf8(wire).unwrap();
//! assert!(text.starts_with("220 mx.example ESMTP"));
//! assert!(text.contains("250 2.1.0"));
//! assert!(text.ends_with("221 2.0.0 Bye\r\n"));
//! assert!(session.is_closed());
//! ```
//!
//! Pipelining (RFC 2920) falls out of this shape: every command in one read is answered into
//! the same output buffer, which the embedder writes once.

pub mod connection;
pub mod dispatch;
pub mod handlers;
pub mod hooks;
pub mod options;

use crate::trace::{Direction, TraceSink, Tracer};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::address::{ForwardPath, ReversePath};
use crate::auth::{self, AuthAttempt, Secret};
use crate::command::{Body, Command, MailParameters, RcptParameters};
use crate::data::{BareLinePolicy, ChunkNormalizer, DataReceiver};
use crate::ehlo::{AuthMechanism, Capabilities};
use crate::reply::{EnhancedCode, Reply, ReplyCode};

/// How a server session behaves. Every limit has a default fit for a public MX.
///
/// ```
/// use smtp_core::server::ServerConfig;
/// let mut config = ServerConfig::new("mx.example");
/// config.max_message_size = 10 << 20;
/// config.max_recipients = 50;
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name the server gives in its greeting and replies.
    pub hostname: String,
    /// Text after the hostname in the 220 greeting. Default `"ESMTP smtpx"` (or `"LMTP smtpx"`).
    pub banner: Option<String>,
    /// Speak LMTP (RFC 2033): LHLO instead of HELO/EHLO and one DATA reply per recipient.
    /// Default false.
    pub lmtp: bool,
    /// Longest command line accepted, CRLF included. Default 4096 (RFC 5321's minimum is 512).
    pub max_line_len: usize,
    /// Largest message in octets, announced as SIZE and enforced on the content. Default 25 MiB.
    pub max_message_size: u64,
    /// Most recipients per message (452 beyond). Default 100, RFC 5321 §4.5.3.1.8's minimum.
    pub max_recipients: usize,
    /// Error replies allowed before the session is closed with 421. Default 20.
    pub max_errors: u32,
    /// Failed AUTH attempts allowed before the session is closed with 421. Default 3.
    pub max_auth_failures: u32,
    /// What to do with a lone CR or LF in message content. Default: normalise to CRLF.
    pub bare_line_policy: BareLinePolicy,
    /// Announce and serve PIPELINING. Default true.
    pub pipelining: bool,
    /// Enforce pipelining synchronisation (RFC 2920 §3.1; Postfix's
    /// `smtpd_forbid_unauth_pipelining`, Exim's `smtp_enforce_sync`). Input already waiting
    /// behind a command that must end a group (EHLO, HELO, LHLO, DATA, VRFY, EXPN, QUIT,
    /// NOOP, STARTTLS, AUTH but AUTH PLAIN with its initial response), any command
    /// pipelined by a client that was not offered PIPELINING, and input sent before the
    /// greeting get `554 5.5.0 Error: SMTP protocol synchronization` and the session ends.
    /// Bytes after the final dot of a message are the start of the next group and are
    /// allowed, so a client may chain `MAIL`/`RCPT`/`DATA` or `QUIT` behind the dot.
    /// Default true.
    pub pipelining_sync: bool,
    /// Announce and serve CHUNKING (BDAT) and BINARYMIME. Default true.
    pub chunking: bool,
    /// Announce 8BITMIME. Default true.
    pub eight_bit_mime: bool,
    /// Announce and accept SMTPUTF8. Default true.
    pub smtputf8: bool,
    /// Announce DSN and accept its parameters. Default true.
    pub dsn: bool,
    /// Announce ENHANCEDSTATUSCODES and put enhanced codes on replies. Default true.
    pub enhanced_status_codes: bool,
    /// The driver can do TLS, so STARTTLS is offered. Default false.
    pub starttls: bool,
    /// The connection is already encrypted (implicit TLS, port 465). Default false.
    pub tls_active: bool,
    /// Refuse every command but EHLO, HELO, LHLO, STARTTLS, NOOP, RSET and QUIT with
    /// `530 5.7.0 Must issue a STARTTLS command first` until TLS is active (RFC 3207 §4).
    /// Default false.
    pub require_tls: bool,
    /// SASL mechanisms offered; empty disables AUTH. Default empty.
    pub auth_mechanisms: Vec<AuthMechanism>,
    /// Offer and accept AUTH without TLS. Default false: passwords never travel in clear.
    pub allow_insecure_auth: bool,
    /// Refuse MAIL until the client has authenticated. Default false.
    pub require_auth: bool,
    /// Wait this long before the greeting; a client that talks first gets 554 and is
    /// closed (RFC 5321 §4.3.1 forbids talking before the greeting). Default none.
    pub greeting_delay: Option<Duration>,
    /// Time allowed for each command line, from the moment the server is ready for it;
    /// bytes trickling in do not extend it. Default 5 minutes (RFC 5321 §4.5.3.2.7).
    pub command_timeout: Duration,
    /// Time allowed between lines (or 1 KiB of BDAT content) while a message is read.
    /// Default 3 minutes (RFC 5321 §4.5.3.2.5's data block timeout).
    pub data_timeout: Duration,
}

impl ServerConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(hostname: impl Into<String>) -> ServerConfig {
        ServerConfig {
            hostname: hostname.into(),
            banner: None,
            lmtp: false,
            max_line_len: 4096,
            max_message_size: 25 << 20,
            max_recipients: 100,
            max_errors: 20,
            max_auth_failures: 3,
            bare_line_policy: BareLinePolicy::Normalize,
            pipelining: true,
            pipelining_sync: true,
            chunking: true,
            eight_bit_mime: true,
            smtputf8: true,
            dsn: true,
            enhanced_status_codes: true,
            starttls: false,
            tls_active: false,
            require_tls: false,
            auth_mechanisms: Vec::new(),
            allow_insecure_auth: false,
            require_auth: false,
            greeting_delay: None,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
        }
    }
}

/// Which greeting the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HelloVerb {
    /// HELO: plain SMTP, no extensions.
    Helo,
    /// EHLO: extended SMTP.
    Ehlo,
    /// LHLO: LMTP.
    Lhlo,
}

/// Why a message being received was dropped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// The content grew past the size limit (the client is told 552 at the end).
    TooLarge,
    /// A lone CR or LF arrived under [`BareLinePolicy::Reject`] (550 at the end).
    BareLineEnding,
    /// The connection ended, or timed out, in the middle of the message.
    Disconnected,
    /// The client sent RSET between BDAT chunks.
    Reset,
}

/// Something the embedder must know or decide. Events marked *decision* stop the session
/// until [`ServerSession::decide`] is called.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// *Decision.* A client connected: accept to send the 220 greeting, or reply (554 keeps
    /// the connection until QUIT, as RFC 5321 §3.1 asks; 421 closes it).
    Connect,
    /// *Decision.* HELO, EHLO or LHLO. Accepting starts a fresh session state.
    Hello {
        /// The verb used.
        verb: HelloVerb,
        /// The name the client gave.
        domain: String,
    },
    /// The 220 for STARTTLS is in the output: write it, do the TLS handshake on the
    /// connection, then call [`ServerSession::tls_established`]. Input buffered before the
    /// handshake has been thrown away (STARTTLS command injection).
    StartTls,
    /// *Decision.* The client authenticated with these credentials. Accept (235) or reply
    /// (535 5.7.8 is the usual refusal).
    Auth(AuthAttempt),
    /// *Decision.* MAIL FROM.
    Mail {
        /// The sender.
        from: ReversePath,
        /// Its parameters.
        params: MailParameters,
    },
    /// *Decision.* RCPT TO.
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// Its parameters.
        params: RcptParameters,
    },
    /// *Decision.* DATA, or the first BDAT chunk: may the message content come?
    MessageStart,
    /// A piece of the message content, un-stuffed and with CRLF line endings.
    MessageData(&'a [u8]),
    /// *Decision.* The message is complete: accept to reply 250 (the reply text can carry a
    /// queue id), or reply. Under LMTP answer with [`Decision::PerRecipient`].
    MessageEnd,
    /// The message being received was dropped; forget what was stored of it.
    MessageAborted(AbortReason),
    /// The transaction (sender and recipients) was abandoned: RSET, a new greeting, or
    /// STARTTLS.
    Reset,
    /// *Decision.* VRFY. Accepting replies 252 (cannot verify, will try to deliver).
    Verify(String),
    /// *Decision.* EXPN. Accepting replies 252 (will not expand).
    Expand(String),
    /// The session is over: write the output, then close the connection.
    Close,
}

impl ServerEvent<'_> {
    /// True for the events that wait for [`ServerSession::decide`].
    pub fn needs_decision(&self) -> bool {
        matches!(
            self,
            ServerEvent::Connect
                | ServerEvent::Hello { .. }
                | ServerEvent::Auth(_)
                | ServerEvent::Mail { .. }
                | ServerEvent::Rcpt { .. }
                | ServerEvent::MessageStart
                | ServerEvent::MessageEnd
                | ServerEvent::Verify(_)
                | ServerEvent::Expand(_)
        )
    }
}

/// The embedder's answer to a decision event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead, with the standard reply.
    Accept,
    /// This reply: a positive code (2xx, or 3xx for MessageStart) accepts with this text,
    /// anything else refuses.
    Reply(Reply),
    /// LMTP MessageEnd: one reply per accepted recipient, in RCPT order. Missing entries
    /// repeat the last one; for SMTP only the first is used.
    PerRecipient(Vec<Reply>),
}

impl From<Reply> for Decision {
    fn from(reply: Reply) -> Decision {
        Decision::Reply(reply)
    }
}

/// [`ServerSession::decide`] was called with no decision pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoDecisionPending;

impl fmt::Display for NoDecisionPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no event is waiting for a decision")
    }
}

impl std::error::Error for NoDecisionPending {}

/// What is waiting for the embedder's decision.
#[derive(Debug)]
enum Pending {
    Connect,
    Hello(HelloVerb),
    Auth(String),
    Mail,
    Rcpt,
    DataStart,
    BdatStart { size: u64, last: bool },
    MessageEnd,
    Verify,
    Expand,
}

/// Where the session is in the conversation.
#[derive(Debug)]
enum Phase {
    /// Holding the greeting back until this time.
    GreetingDelay(Duration),
    /// Reading command lines.
    Command,
    /// Greeting was refused with a non-421 code: only QUIT is served.
    Rejected,
    /// Waiting for the PLAIN response line.
    SaslPlain,
    /// Waiting for LOGIN's user name line.
    SaslLoginUser,
    /// Waiting for LOGIN's password line.
    SaslLoginPassword(String),
    /// Reading DATA content.
    Data,
    /// Reading `remaining` octets of an accepted BDAT chunk.
    Bdat {
        remaining: u64,
        last: bool,
        size: u64,
    },
    /// Throwing away `remaining` octets of a refused BDAT chunk, then sending `reply`.
    BdatDrain { remaining: u64, reply: Reply },
    /// The 220 for STARTTLS went out; waiting for the driver's handshake.
    AwaitTls,
    /// Over.
    Closed,
}

/// One step of the state machine, computed without holding a borrow of the session;
/// events that carry no message data are `'static` and can be queued.
enum Step {
    Event(ServerEvent<'static>),
    Data,
    NeedInput,
    Continue,
}

/// Replies held back when the output already holds this much, so that a client that
/// pipelines without reading cannot make the server buffer without bound.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Unprocessed input kept at most, beyond one command line.
const INPUT_BUFFER: usize = 64 * 1024;
/// Content handed to the embedder per MessageData event, at most.
const CONTENT_CHUNK: usize = 64 * 1024;
/// Longest AUTH command line and SASL response line, CRLF included (RFC 4954 §4:
/// 12,288 octets; Postfix's `smtpd_sasl_response_limit`). Other commands keep
/// [`ServerConfig::max_line_len`].
const SASL_LINE_MAX: usize = 12_288;

/// A server-side SMTP session. See the [module docs](self) for the driving loop.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    phase: Phase,
    pending: Option<Pending>,
    queued: VecDeque<ServerEvent<'static>>,
    input: Vec<u8>,
    input_pos: usize,
    output: Vec<u8>,
    content: Vec<u8>,
    receiver: DataReceiver,
    /// BDAT content under the bare line-ending policy, across chunks.
    bdat_normalizer: ChunkNormalizer,
    now: Duration,
    deadline: Option<Duration>,
    eof: bool,
    /// Part of an overlong line was thrown away; skip to its end.
    skipping_line: bool,
    // Session state.
    hello: Option<HelloVerb>,
    tls: bool,
    authenticated: Option<String>,
    errors: u32,
    auth_failures: u32,
    // Transaction state.
    in_transaction: bool,
    transaction_smtputf8: bool,
    transaction_binary: bool,
    recipients: usize,
    message_size: u64,
    message_started: bool,
    message_aborted: Option<AbortReason>,
    /// Where the wire trace goes, when the session traces.
    tracer: Tracer,
}

impl ServerSession {
    /// A session for a connection accepted at `now`. Unless a greeting delay is configured,
    /// the first event is [`ServerEvent::Connect`].
    pub fn new(config: ServerConfig, now: Duration) -> ServerSession {
        let mut queued = VecDeque::new();
        let phase = match config.greeting_delay {
            Some(delay) if !delay.is_zero() => Phase::GreetingDelay(now + delay),
            _ => {
                queued.push_back(ServerEvent::Connect);
                Phase::Command
            }
        };
        let tls = config.tls_active;
        let receiver = DataReceiver::new(config.bare_line_policy);
        let mut session = ServerSession {
            config,
            phase,
            pending: None,
            queued,
            input: Vec::new(),
            input_pos: 0,
            output: Vec::new(),
            content: Vec::new(),
            receiver,
            bdat_normalizer: ChunkNormalizer::new(),
            now,
            deadline: None,
            eof: false,
            skipping_line: false,
            hello: None,
            tls,
            authenticated: None,
            errors: 0,
            auth_failures: 0,
            in_transaction: false,
            transaction_smtputf8: false,
            transaction_binary: false,
            recipients: 0,
            message_size: 0,
            message_started: false,
            message_aborted: None,
            tracer: Tracer::default(),
        };
        if let Phase::GreetingDelay(until) = session.phase {
            session.deadline = Some(until);
        }
        session
    }

    /// Traces every command and reply line of this session into `sink`, marked with
    /// `connection` (see [`crate::trace`]): AUTH payloads redacted, content by size only.
    pub fn set_trace(&mut self, sink: TraceSink, connection: u64) {
        self.tracer.set(sink, connection);
    }

    /// The configuration this session runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Takes bytes read from the client at `now`. Returns how many were taken: fewer than
    /// offered when the input buffer is full (poll events, then offer the rest again).
    pub fn receive(&mut self, bytes: &[u8], now: Duration) -> usize {
        self.now = now;
        if matches!(self.phase, Phase::Closed) {
            return bytes.len();
        }
        if let Phase::GreetingDelay(_) = self.phase {
            if !bytes.is_empty() {
                self.early_talker();
            }
            return bytes.len();
        }
        self.compact_input();
        let room = (INPUT_BUFFER + self.config.max_line_len).saturating_sub(self.input.len());
        let taken = bytes.len().min(room);
        self.input.extend_from_slice(&bytes[..taken]);
        taken
    }

    /// The client closed its side of the connection. Commands already received are still
    /// answered; a message in progress is aborted.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// Bytes to send to the client. Write them (all or some), then call
    /// [`ServerSession::consume_output`] or [`ServerSession::clear_output`].
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Marks the first `n` bytes of [`ServerSession::output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.output.len());
        self.output.drain(..n);
    }

    /// Marks all of [`ServerSession::output`] as written.
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// Moves the output out of the session.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True once the session has ended ([`ServerEvent::Close`] was returned).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed) && self.queued.is_empty()
    }

    /// True while the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The name given with HELO/EHLO/LHLO, if any was accepted.
    pub fn hello_verb(&self) -> Option<HelloVerb> {
        self.hello
    }

    /// The user name the client authenticated as.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Recipients accepted in the current transaction.
    pub fn recipient_count(&self) -> usize {
        self.recipients
    }

    /// True between transactions: no sender, message, AUTH exchange or decision in
    /// progress. A server shutting down may end an idle session without losing anything.
    pub fn is_idle(&self) -> bool {
        !self.in_transaction
            && self.pending.is_none()
            && matches!(self.phase, Phase::Command | Phase::Rejected)
    }

    /// True while a decision event is unanswered.
    pub fn is_waiting_for_decision(&self) -> bool {
        self.pending.is_some()
    }

    /// When [`ServerSession::handle_timeout`] must be called next, if at all.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.pending.is_some() || matches!(self.phase, Phase::Closed) {
            return None;
        }
        self.deadline
    }

    /// Tells the session the time. When a deadline has passed it ends the greeting delay
    /// (the greeting is then due) or closes the session with 421 4.4.2.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = now;
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        if let Phase::GreetingDelay(_) = self.phase {
            self.phase = Phase::Command;
            self.deadline = None;
            self.queued.push_back(ServerEvent::Connect);
            return;
        }
        self.abort_message(AbortReason::Disconnected);
        let text = format!("{} Error: timeout exceeded", self.config.hostname);
        self.close_with(Reply::new(
            ReplyCode::SERVICE_UNAVAILABLE,
            Some(EnhancedCode::new(4, 4, 2)),
            text,
        ));
    }

    /// The TLS handshake that followed [`ServerEvent::StartTls`] succeeded. Everything known
    /// about the session is forgotten (RFC 3207 §4.2): the client must greet again.
    pub fn tls_established(&mut self, now: Duration) {
        self.now = now;
        if let Phase::AwaitTls = self.phase {
            self.tls = true;
            self.hello = None;
            self.authenticated = None;
            self.input.clear();
            self.input_pos = 0;
            self.phase = Phase::Command;
            self.wait_for_command();
        }
    }

    /// Answers the event that is waiting for a decision.
    pub fn decide(&mut self, decision: Decision) -> Result<(), NoDecisionPending> {
        let pending = self.pending.take().ok_or(NoDecisionPending)?;
        let (accepted, custom) = match decision {
            Decision::Accept => (true, None),
            Decision::Reply(r) => (r.is_positive(), Some(r)),
            Decision::PerRecipient(mut replies) => {
                if let Pending::MessageEnd = pending
                    && self.config.lmtp
                {
                    self.finish_lmtp_message(replies);
                    return Ok(());
                }
                if replies.is_empty() {
                    (true, None)
                } else {
                    let r = replies.swap_remove(0);
                    (r.is_positive(), Some(r))
                }
            }
        };
        self.apply_decision(pending, accepted, custom);
        Ok(())
    }

    /// The content the last [`ServerEvent::MessageData`] carried, until the next
    /// [`poll_event`](Self::poll_event): lets the dispatcher hand a chunk to a hook after
    /// the event (and its borrow of the session) is gone.
    pub(crate) fn message_data(&self) -> &[u8] {
        &self.content
    }

    /// The next event, or `None` when the session needs more input, a decision, or output
    /// to be written. A [`ServerEvent::MessageData`] slice is valid until the next call.
    pub fn poll_event(&mut self) -> Option<ServerEvent<'_>> {
        self.content.clear();
        loop {
            match self.step() {
                Step::Event(e) => return Some(e),
                Step::Data => return Some(ServerEvent::MessageData(&self.content)),
                Step::NeedInput => return None,
                Step::Continue => {}
            }
        }
    }

    fn step(&mut self) -> Step {
        if let Some(e) = self.queued.pop_front() {
            match e {
                ServerEvent::Close => self.phase = Phase::Closed,
                ServerEvent::Connect => self.pending = Some(Pending::Connect),
                _ => {}
            }
            return Step::Event(e);
        }
        if self.pending.is_some()
            || matches!(
                self.phase,
                Phase::Closed | Phase::AwaitTls | Phase::GreetingDelay(_)
            )
        {
            return Step::NeedInput;
        }
        match self.phase {
            Phase::Data => self.step_data(),
            Phase::Bdat { .. } | Phase::BdatDrain { .. } => self.step_bdat(),
            _ => self.step_line(),
        }
    }

    fn unread(&self) -> &[u8] {
        &self.input[self.input_pos..]
    }

    fn compact_input(&mut self) {
        if self.input_pos > 0 {
            self.input.drain(..self.input_pos);
            self.input_pos = 0;
        }
    }

    /// Ends the step when the input is exhausted: at end of stream the session closes.
    fn out_of_input(&mut self) -> Step {
        if self.eof {
            self.abort_message(AbortReason::Disconnected);
            self.phase = Phase::Closed;
            self.queued.push_back(ServerEvent::Close);
            return Step::Continue;
        }
        Step::NeedInput
    }

    fn step_line(&mut self) -> Step {
        if self.output.len() >= OUTPUT_HIGH_WATER {
            return Step::NeedInput;
        }
        let sasl = matches!(
            self.phase,
            Phase::SaslPlain | Phase::SaslLoginUser | Phase::SaslLoginPassword(_)
        );
        let max = if sasl || is_auth_line(self.unread()) {
            // RFC 4954 §4: an AUTH line and each SASL response may be longer than a
            // command line (a PLAIN or XOAUTH2 token often is).
            self.config.max_line_len.max(SASL_LINE_MAX)
        } else {
            self.config.max_line_len
        };
        let unread = self.unread();
        // A line ends only at CRLF; a lone LF inside is part of the (refused) line.
        let mut search = 0;
        let end = loop {
            match memchr::memchr(b'\n', &unread[search..]) {
                Some(i) if search + i > 0 && unread[search + i - 1] == b'\r' => {
                    break Some(search + i - 1);
                }
                Some(i) => search += i + 1,
                None => break None,
            }
        };
        let Some(end) = end else {
            if unread.len() >= max {
                // Refuse the overlong line now and throw away its rest as it comes, so its
                // tail can never be read as a command.
                let was_skipping = std::mem::replace(&mut self.skipping_line, true);
                self.input_pos = self.input.len();
                if !was_skipping {
                    self.line_too_long(sasl);
                }
                return Step::Continue;
            }
            return self.out_of_input();
        };
        let line_start = self.input_pos;
        self.input_pos += end + 2;
        if std::mem::replace(&mut self.skipping_line, false) {
            return Step::Continue;
        }
        let line = &self.input[line_start..line_start + end];
        let bare_line_ending = memchr::memchr2(b'\r', b'\n', line).is_some();
        if end + 2 > max {
            self.line_too_long(sasl);
            return Step::Continue;
        }
        if bare_line_ending {
            self.error_reply(Reply::new(
                ReplyCode::SYNTAX_ERROR,
                Some(EnhancedCode::new(5, 5, 2)),
                "Error: bare <CR> or <LF> in command",
            ));
            return Step::Continue;
        }
        self.wait_for_command();
        let line = line_start..line_start + end;
        if self.tracer.is_on() {
            match self.phase {
                Phase::SaslPlain | Phase::SaslLoginUser | Phase::SaslLoginPassword(_) => {
                    self.tracer.secret(Direction::ClientToServer);
                }
                _ => self
                    .tracer
                    .command(Direction::ClientToServer, &self.input[line.clone()]),
            }
        }
        match self.phase {
            Phase::SaslPlain | Phase::SaslLoginUser | Phase::SaslLoginPassword(_) => {
                // Rare enough that a copy does not matter.
                let line = self.input[line].to_vec();
                self.sasl_line(&line)
            }
            // The parsed command owns its data, so no copy of the line is needed.
            _ => match Command::parse(&self.input[line]) {
                Ok(command) => {
                    if self.out_of_sync(&command) {
                        self.sync_error();
                        return Step::Continue;
                    }
                    self.command(command)
                }
                Err(e) => {
                    self.error_reply(e.reply());
                    Step::Continue
                }
            },
        }
    }

    fn step_data(&mut self) -> Step {
        if !self.receiver.is_finished() {
            let start = self.input_pos;
            let end = self.input.len().min(start + CONTENT_CHUNK);
            let progress = self
                .receiver
                .feed(&self.input[start..end], &mut self.content);
            self.input_pos += progress.consumed;
            if progress.consumed > 0
                && memchr::memchr(b'\n', &self.input[start..start + progress.consumed]).is_some()
            {
                self.deadline = Some(self.now + self.config.data_timeout);
            }
            self.message_size += self.content.len() as u64;
            if self.message_aborted.is_none() {
                if self.message_size > self.config.max_message_size {
                    self.content.clear();
                    return self.abort_step(AbortReason::TooLarge);
                }
                if self.receiver.should_reject() {
                    self.content.clear();
                    return self.abort_step(AbortReason::BareLineEnding);
                }
                if !self.content.is_empty() {
                    return Step::Data;
                }
            } else {
                self.content.clear();
            }
        }
        if !self.receiver.is_finished() {
            return self.out_of_input();
        }
        self.phase = Phase::Command;
        self.wait_for_command();
        self.end_of_message()
    }

    fn step_bdat(&mut self) -> Step {
        let available = (self.input.len() - self.input_pos) as u64;
        match &mut self.phase {
            Phase::BdatDrain { remaining, .. } => {
                let take = available.min(*remaining);
                *remaining -= take;
                self.input_pos += take as usize;
                if take > 0 {
                    self.deadline = Some(self.now + self.config.data_timeout);
                }
                if *remaining > 0 {
                    return self.out_of_input();
                }
                let Phase::BdatDrain { reply, .. } =
                    std::mem::replace(&mut self.phase, Phase::Command)
                else {
                    unreachable!("matched above")
                };
                self.wait_for_command();
                self.error_reply(reply);
                Step::Continue
            }
            Phase::Bdat {
                remaining,
                last,
                size,
            } => {
                let (last, size) = (*last, *size);
                let take = available.min(*remaining).min(CONTENT_CHUNK as u64);
                *remaining -= take;
                let remaining = *remaining;
                // BINARYMIME content is not made of lines: it goes through untouched. All
                // other content follows the bare CR/LF policy, as DATA does.
                let normalize = !self.transaction_binary;
                if take > 0 {
                    let start = self.input_pos;
                    self.input_pos += take as usize;
                    self.deadline = Some(self.now + self.config.data_timeout);
                    self.message_size += take;
                    if self.message_aborted.is_none() {
                        if self.message_size > self.config.max_message_size {
                            return self.abort_step(AbortReason::TooLarge);
                        }
                        let chunk = &self.input[start..start + take as usize];
                        if normalize {
                            self.bdat_normalizer.feed(chunk, &mut self.content);
                        } else {
                            self.content.extend_from_slice(chunk);
                        }
                        return self.bdat_content_step();
                    }
                }
                if remaining == 0
                    && last
                    && self.bdat_normalizer.has_pending_cr()
                    && self.message_aborted.is_none()
                {
                    // A CR at the very end of the message had no LF after it: bare.
                    self.bdat_normalizer.finish(&mut self.content);
                    return self.bdat_content_step();
                }
                if remaining > 0 {
                    return if self.input_pos < self.input.len() {
                        Step::Continue
                    } else {
                        self.out_of_input()
                    };
                }
                self.phase = Phase::Command;
                self.wait_for_command();
                if last {
                    return self.end_of_message();
                }
                if self.message_aborted == Some(AbortReason::TooLarge) {
                    // Nothing more can be taken: the message is refused now. A message
                    // refused for a bare line ending is read through LAST and refused as a
                    // whole, as DATA does (the client then sees the refusal where it looks
                    // for the message's reply).
                    return self.end_of_message();
                }
                self.reply(Reply::new(
                    ReplyCode::OK,
                    Some(EnhancedCode::new(2, 0, 0)),
                    format!("{size} octets received"),
                ));
                Step::Continue
            }
            _ => Step::Continue,
        }
    }

    /// Hands normalised BDAT content to the embedder, unless the policy refuses it.
    fn bdat_content_step(&mut self) -> Step {
        if self.config.bare_line_policy == BareLinePolicy::Reject
            && self.bdat_normalizer.saw_bare_line_ending()
        {
            self.content.clear();
            return self.abort_step(AbortReason::BareLineEnding);
        }
        if self.content.is_empty() {
            Step::Continue
        } else {
            Step::Data
        }
    }

    /// The message is dropped now; its final reply comes when its end is read.
    fn abort_step(&mut self, reason: AbortReason) -> Step {
        self.message_aborted = Some(reason);
        Step::Event(ServerEvent::MessageAborted(reason))
    }

    fn end_of_message(&mut self) -> Step {
        self.tracer
            .content(Direction::ClientToServer, self.message_size);
        match self.message_aborted.take() {
            None => {
                self.pending = Some(Pending::MessageEnd);
                Step::Event(ServerEvent::MessageEnd)
            }
            Some(reason) => {
                let reply = match reason {
                    AbortReason::TooLarge => Reply::new(
                        ReplyCode::STORAGE_EXCEEDED,
                        Some(EnhancedCode::new(5, 3, 4)),
                        "Error: message exceeds fixed maximum message size",
                    ),
                    _ => Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::new(5, 5, 2)),
                        "Error: bare <CR> or <LF> in message content",
                    ),
                };
                self.end_transaction();
                self.error_reply(reply);
                Step::Continue
            }
        }
    }

    /// Restarts the per-command deadline: the client has this long for its next command.
    fn wait_for_command(&mut self) {
        self.deadline = Some(self.now + self.config.command_timeout);
    }

    fn early_talker(&mut self) {
        self.close_with(Reply::new(
            ReplyCode::TRANSACTION_FAILED,
            Some(EnhancedCode::new(5, 5, 1)),
            format!(
                "{} Error: protocol error, client talked before the greeting",
                self.config.hostname
            ),
        ));
    }

    fn command(&mut self, command: Command) -> Step {
        if let Phase::Rejected = self.phase {
            return match command {
                Command::Quit => self.quit(),
                _ => self.sequence_error("Error: session rejected, only QUIT is possible"),
            };
        }
        if self.config.require_tls && !self.tls && !allowed_before_tls(&command) {
            return self.tls_required(&command);
        }
        match command {
            Command::Helo(domain) if !self.config.lmtp => self.hello(HelloVerb::Helo, domain),
            Command::Ehlo(domain) if !self.config.lmtp => self.hello(HelloVerb::Ehlo, domain),
            Command::Lhlo(domain) if self.config.lmtp => self.hello(HelloVerb::Lhlo, domain),
            Command::Helo(_) | Command::Ehlo(_) | Command::Lhlo(_) => {
                self.error_reply(Reply::new(
                    ReplyCode::SYNTAX_ERROR,
                    Some(EnhancedCode::new(5, 5, 1)),
                    if self.config.lmtp {
                        "Error: this is LMTP, use LHLO"
                    } else {
                        "Error: command not recognized"
                    },
                ));
                Step::Continue
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                let step = self.reset_transaction();
                self.reply(ok("Ok"));
                step
            }
            Command::Noop => {
                self.reply(ok("Ok"));
                Step::Continue
            }
            Command::Quit => self.quit(),
            Command::Vrfy(arg) => {
                self.pending = Some(Pending::Verify);
                Step::Event(ServerEvent::Verify(arg))
            }
            Command::Expn(arg) => {
                self.pending = Some(Pending::Expand);
                Step::Event(ServerEvent::Expand(arg))
            }
            Command::Help(_) => {
                self.reply(Reply::new(
                    ReplyCode::HELP_MESSAGE,
                    Some(EnhancedCode::new(2, 0, 0)),
                    self.help_text(),
                ));
                Step::Continue
            }
            Command::StartTls => self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response),
        }
    }

    fn help_text(&self) -> String {
        let mut text = String::from(if self.config.lmtp {
            "Commands: LHLO"
        } else {
            "Commands: HELO EHLO"
        });
        text.push_str(" MAIL RCPT DATA");
        if self.config.chunking {
            text.push_str(" BDAT");
        }
        text.push_str(" RSET NOOP QUIT VRFY EXPN HELP");
        if self.config.starttls {
            text.push_str(" STARTTLS");
        }
        if !self.config.auth_mechanisms.is_empty() {
            text.push_str(" AUTH");
        }
        text
    }

    fn quit(&mut self) -> Step {
        self.abort_message(AbortReason::Disconnected);
        self.close_with(Reply::new(
            ReplyCode::CLOSING,
            Some(EnhancedCode::new(2, 0, 0)),
            "Bye",
        ));
        Step::Continue
    }

    fn hello(&mut self, verb: HelloVerb, domain: String) -> Step {
        self.pending = Some(Pending::Hello(verb));
        Step::Event(ServerEvent::Hello { verb, domain })
    }

    fn mail(&mut self, from: ReversePath, params: MailParameters) -> Step {
        let Some(hello) = self.hello else {
            return self.sequence_error("Error: send HELO/EHLO first");
        };
        if self.in_transaction {
            return self.sequence_error("Error: nested MAIL command");
        }
        if self.config.require_tls && !self.tls {
            return self.refuse(
                ReplyCode::AUTH_REQUIRED,
                (5, 7, 0),
                "Must issue a STARTTLS command first",
            );
        }
        if self.config.require_auth && self.authenticated.is_none() {
            return self.refuse(
                ReplyCode::AUTH_REQUIRED,
                (5, 7, 0),
                "Authentication required",
            );
        }
        if hello == HelloVerb::Helo && params != MailParameters::default() {
            return self.refuse(
                ReplyCode::PARAMETERS_UNRECOGNIZED,
                (5, 5, 4),
                "Error: MAIL parameters need EHLO",
            );
        }
        if let Some(size) = params.size
            && size > self.config.max_message_size
        {
            return self.refuse(
                ReplyCode::STORAGE_EXCEEDED,
                (5, 3, 4),
                "Message size exceeds fixed limit",
            );
        }
        match params.body {
            Some(Body::BinaryMime) if !self.config.chunking => {
                return self.unsupported_parameter("BODY=BINARYMIME");
            }
            Some(Body::EightBitMime) if !self.config.eight_bit_mime => {
                return self.unsupported_parameter("BODY=8BITMIME");
            }
            _ => {}
        }
        if params.smtputf8 && !self.config.smtputf8 {
            return self.unsupported_parameter("SMTPUTF8");
        }
        if (params.ret.is_some() || params.envid.is_some()) && !self.config.dsn {
            return self.unsupported_parameter("RET/ENVID");
        }
        if let Some(p) = params.other.first() {
            let what = format!("{} not supported", p.keyword);
            return self.refuse_text(ReplyCode::PARAMETERS_UNRECOGNIZED, (5, 5, 4), what);
        }
        if !from.is_ascii() && !params.smtputf8 {
            return self.refuse(
                ReplyCode::MAILBOX_NAME_INVALID,
                (5, 6, 7),
                "Non-ASCII address needs SMTPUTF8",
            );
        }
        self.transaction_smtputf8 = params.smtputf8;
        self.transaction_binary = params.body == Some(Body::BinaryMime);
        self.pending = Some(Pending::Mail);
        Step::Event(ServerEvent::Mail { from, params })
    }

    fn rcpt(&mut self, to: ForwardPath, params: RcptParameters) -> Step {
        if !self.in_transaction {
            return self.sequence_error("Error: need MAIL command");
        }
        if self.recipients >= self.config.max_recipients {
            return self.refuse(
                ReplyCode::INSUFFICIENT_STORAGE,
                (4, 5, 3),
                "Error: too many recipients",
            );
        }
        if (params.notify.is_some() || params.orcpt.is_some()) && !self.config.dsn {
            return self.unsupported_parameter("NOTIFY/ORCPT");
        }
        if let Some(p) = params.other.first() {
            let what = format!("{} not supported", p.keyword);
            return self.refuse_text(ReplyCode::PARAMETERS_UNRECOGNIZED, (5, 5, 4), what);
        }
        if !to.is_ascii() && !self.transaction_smtputf8 {
            return self.refuse(
                ReplyCode::MAILBOX_NAME_INVALID,
                (5, 6, 7),
                "Non-ASCII address needs SMTPUTF8",
            );
        }
        self.pending = Some(Pending::Rcpt);
        Step::Event(ServerEvent::Rcpt { to, params })
    }

    fn data(&mut self) -> Step {
        if !self.in_transaction {
            return self.sequence_error("Error: need MAIL command");
        }
        if self.recipients == 0 {
            // RFC 2920 §3.1: a pipelined DATA after refused recipients gets 554, not 354.
            return self.refuse(
                ReplyCode::TRANSACTION_FAILED,
                (5, 5, 1),
                "Error: no valid recipients",
            );
        }
        if self.transaction_binary || self.message_started {
            return self.sequence_error("Error: BDAT in use for this message");
        }
        self.pending = Some(Pending::DataStart);
        Step::Event(ServerEvent::MessageStart)
    }

    fn bdat(&mut self, size: u64, last: bool) -> Step {
        // A refused BDAT's octets are still read and thrown away: they were sent regardless,
        // and read as commands they would be an injection (go-smtp #315).
        let refusal = if !self.config.chunking {
            Some(Reply::new(
                ReplyCode::NOT_IMPLEMENTED,
                Some(EnhancedCode::new(5, 5, 1)),
                "Error: command not implemented",
            ))
        } else if !self.in_transaction {
            Some(Reply::new(
                ReplyCode::BAD_SEQUENCE,
                Some(EnhancedCode::new(5, 5, 1)),
                "Error: need MAIL command",
            ))
        } else if self.recipients == 0 {
            Some(Reply::new(
                ReplyCode::TRANSACTION_FAILED,
                Some(EnhancedCode::new(5, 5, 1)),
                "Error: no valid recipients",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.phase = Phase::BdatDrain {
                remaining: size,
                reply,
            };
            return Step::Continue;
        }
        if self.message_started {
            self.phase = Phase::Bdat {
                remaining: size,
                last,
                size,
            };
            return Step::Continue;
        }
        self.pending = Some(Pending::BdatStart { size, last });
        Step::Event(ServerEvent::MessageStart)
    }

    fn starttls(&mut self) -> Step {
        if self.tls {
            return self.sequence_error("Error: TLS already active");
        }
        if !self.config.starttls {
            return self.refuse(
                ReplyCode::NOT_IMPLEMENTED,
                (5, 5, 1),
                "Error: command not implemented",
            );
        }
        let step = self.reset_transaction();
        self.reply(Reply::new(
            ReplyCode::SERVICE_READY,
            Some(EnhancedCode::new(2, 0, 0)),
            "Ready to start TLS",
        ));
        // Whatever the client pipelined after STARTTLS was sent in clear and may have been
        // injected by an attacker (CVE-2011-0411): it must never be executed.
        self.input.clear();
        self.input_pos = 0;
        self.phase = Phase::AwaitTls;
        self.queued.push_back(ServerEvent::StartTls);
        step
    }

    fn auth_offered(&self) -> bool {
        !self.config.auth_mechanisms.is_empty() && (self.tls || self.config.allow_insecure_auth)
    }

    fn auth(&mut self, mechanism: AuthMechanism, initial: Option<String>) -> Step {
        if self.config.auth_mechanisms.is_empty() {
            return self.refuse(
                ReplyCode::NOT_IMPLEMENTED,
                (5, 5, 1),
                "Error: authentication not enabled",
            );
        }
        if !matches!(self.hello, Some(HelloVerb::Ehlo | HelloVerb::Lhlo)) {
            return self.sequence_error("Error: send EHLO first");
        }
        if self.authenticated.is_some() {
            return self.sequence_error("Error: already authenticated");
        }
        if self.in_transaction {
            return self.sequence_error("Error: AUTH not allowed during a mail transaction");
        }
        if !self.tls && !self.config.allow_insecure_auth {
            return self.refuse(
                ReplyCode::ENCRYPTION_REQUIRED,
                (5, 7, 11),
                "Encryption required for requested authentication mechanism",
            );
        }
        if !self.config.auth_mechanisms.contains(&mechanism) {
            return self.refuse(
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                (5, 5, 4),
                "Unrecognized authentication type",
            );
        }
        match (mechanism, initial) {
            (AuthMechanism::Plain, Some(response)) => self.sasl_plain(&response),
            (AuthMechanism::Plain, None) => {
                self.phase = Phase::SaslPlain;
                // RFC 4954 §4: "334" SP [base64]; the space stays even with no challenge.
                self.output.extend_from_slice(b"334 \r\n");
                self.tracer.replies(Direction::ServerToClient, b"334 \r\n");
                Step::Continue
            }
            (AuthMechanism::Login, Some(user)) => self.sasl_login_user(&user),
            (AuthMechanism::Login, None) => {
                self.phase = Phase::SaslLoginUser;
                self.reply(Reply::new(ReplyCode::AUTH_CONTINUE, None, "VXNlcm5hbWU6"));
                Step::Continue
            }
            _ => self.refuse(
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                (5, 5, 4),
                "Unrecognized authentication type",
            ),
        }
    }

    fn sasl_line(&mut self, line: &[u8]) -> Step {
        let phase = std::mem::replace(&mut self.phase, Phase::Command);
        let Ok(line) = std::str::from_utf8(line) else {
            return self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                (5, 5, 2),
                "Invalid base64 data",
            );
        };
        if line == "*" {
            return self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                (5, 0, 0),
                "Authentication aborted",
            );
        }
        match phase {
            Phase::SaslPlain => self.sasl_plain(line),
            Phase::SaslLoginUser => self.sasl_login_user(line),
            Phase::SaslLoginPassword(user) => match auth::decode(line).map(String::from_utf8) {
                Some(Ok(password)) => self.auth_attempt(AuthAttempt {
                    mechanism: AuthMechanism::Login,
                    authorization_id: String::new(),
                    username: user,
                    password: Secret::new(password),
                }),
                _ => self.refuse(
                    ReplyCode::PARAMETER_SYNTAX_ERROR,
                    (5, 5, 2),
                    "Invalid base64 data",
                ),
            },
            _ => Step::Continue,
        }
    }

    fn sasl_plain(&mut self, response: &str) -> Step {
        let decoded = auth::decode(response);
        match decoded.as_deref().and_then(auth::parse_plain) {
            Some((authorization_id, username, password)) => self.auth_attempt(AuthAttempt {
                mechanism: AuthMechanism::Plain,
                authorization_id,
                username,
                password,
            }),
            None => self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                (5, 5, 2),
                "Invalid authentication data",
            ),
        }
    }

    fn sasl_login_user(&mut self, line: &str) -> Step {
        match auth::decode(line).map(String::from_utf8) {
            Some(Ok(user)) if !user.is_empty() => {
                self.phase = Phase::SaslLoginPassword(user);
                self.reply(Reply::new(ReplyCode::AUTH_CONTINUE, None, "UGFzc3dvcmQ6"));
                Step::Continue
            }
            _ => self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                (5, 5, 2),
                "Invalid base64 data",
            ),
        }
    }

    fn auth_attempt(&mut self, attempt: AuthAttempt) -> Step {
        self.pending = Some(Pending::Auth(attempt.username.clone()));
        Step::Event(ServerEvent::Auth(attempt))
    }

    fn apply_decision(&mut self, pending: Pending, accepted: bool, custom: Option<Reply>) {
        match pending {
            Pending::Connect => {
                if accepted {
                    if self.config.pipelining_sync && self.input_pos < self.input.len() {
                        // Input that is here before the greeting was sent before it (RFC
                        // 5321 §4.3.1): a spam engine that does not wait.
                        self.sync_error();
                        return;
                    }
                    let reply = custom.unwrap_or_else(|| self.greeting());
                    self.reply(reply.without_enhanced());
                    self.wait_for_command();
                } else {
                    let reply = custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        None,
                        format!("{} Service not available", self.config.hostname),
                    ));
                    if reply.code() == ReplyCode::SERVICE_UNAVAILABLE {
                        self.close_with(reply);
                    } else {
                        self.reply(reply);
                        self.phase = Phase::Rejected;
                        self.wait_for_command();
                    }
                }
            }
            Pending::Hello(verb) => {
                if accepted {
                    if self.in_transaction {
                        self.queued.push_back(ServerEvent::Reset);
                    }
                    self.end_transaction();
                    self.hello = Some(verb);
                    let reply = match verb {
                        HelloVerb::Helo => {
                            Reply::new(ReplyCode::OK, None, self.config.hostname.clone())
                        }
                        HelloVerb::Ehlo | HelloVerb::Lhlo => self.capabilities().to_reply(),
                    };
                    self.reply(reply);
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::new(5, 7, 1)),
                        "Error: greeting refused",
                    )));
                }
            }
            Pending::Auth(user) => {
                if accepted {
                    self.authenticated = Some(user);
                    self.reply(custom.unwrap_or_else(|| {
                        Reply::new(
                            ReplyCode::AUTH_SUCCEEDED,
                            Some(EnhancedCode::new(2, 7, 0)),
                            "Authentication successful",
                        )
                    }));
                } else {
                    self.auth_failures += 1;
                    let reply = custom.unwrap_or(Reply::new(
                        ReplyCode::AUTH_INVALID,
                        Some(EnhancedCode::new(5, 7, 8)),
                        "Error: authentication failed",
                    ));
                    if self.auth_failures >= self.config.max_auth_failures {
                        self.reply(reply);
                        self.close_with(Reply::new(
                            ReplyCode::SERVICE_UNAVAILABLE,
                            Some(EnhancedCode::new(4, 7, 0)),
                            format!(
                                "{} Error: too many authentication failures",
                                self.config.hostname
                            ),
                        ));
                    } else {
                        self.error_reply(reply);
                    }
                }
            }
            Pending::Mail => {
                if accepted {
                    self.in_transaction = true;
                    self.reply(custom.unwrap_or_else(|| {
                        Reply::new(ReplyCode::OK, Some(EnhancedCode::new(2, 1, 0)), "Ok")
                    }));
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::new(5, 7, 1)),
                        "Error: sender refused",
                    )));
                }
            }
            Pending::Rcpt => {
                if accepted {
                    self.recipients += 1;
                    self.reply(custom.unwrap_or_else(|| {
                        Reply::new(ReplyCode::OK, Some(EnhancedCode::new(2, 1, 5)), "Ok")
                    }));
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::new(5, 1, 1)),
                        "Error: recipient refused",
                    )));
                }
            }
            Pending::DataStart => {
                if accepted {
                    let reply = custom
                        .filter(|r| r.code() == ReplyCode::START_MAIL_INPUT)
                        .unwrap_or_else(|| {
                            Reply::new(
                                ReplyCode::START_MAIL_INPUT,
                                None,
                                "End data with <CR><LF>.<CR><LF>",
                            )
                        });
                    self.reply(reply);
                    self.start_message();
                    self.receiver.reset();
                    self.phase = Phase::Data;
                    self.deadline = Some(self.now + self.config.data_timeout);
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        Some(EnhancedCode::new(5, 7, 1)),
                        "Error: message refused",
                    )));
                }
            }
            Pending::BdatStart { size, last } => {
                if accepted {
                    self.start_message();
                    self.phase = Phase::Bdat {
                        remaining: size,
                        last,
                        size,
                    };
                } else {
                    let reply = custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        Some(EnhancedCode::new(5, 7, 1)),
                        "Error: message refused",
                    ));
                    self.end_transaction();
                    self.queued.push_back(ServerEvent::Reset);
                    self.phase = Phase::BdatDrain {
                        remaining: size,
                        reply,
                    };
                }
            }
            Pending::MessageEnd => {
                let reply = if accepted {
                    custom.unwrap_or_else(|| {
                        Reply::new(
                            ReplyCode::OK,
                            Some(EnhancedCode::new(2, 0, 0)),
                            "Ok: queued",
                        )
                    })
                } else {
                    custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        Some(EnhancedCode::new(5, 7, 1)),
                        "Error: message refused",
                    ))
                };
                let recipients = self.recipients;
                self.end_transaction();
                if self.config.lmtp {
                    for _ in 0..recipients.max(1) {
                        self.reply(reply.clone());
                    }
                } else if accepted {
                    self.reply(reply);
                } else {
                    self.error_reply(reply);
                }
            }
            Pending::Verify => {
                self.reply(custom.unwrap_or_else(|| {
                    Reply::new(
                        ReplyCode::CANNOT_VERIFY,
                        Some(EnhancedCode::new(2, 5, 0)),
                        "Cannot verify the address, but will accept mail and attempt delivery",
                    )
                }));
            }
            Pending::Expand => {
                self.reply(custom.unwrap_or_else(|| {
                    Reply::new(
                        ReplyCode::CANNOT_VERIFY,
                        Some(EnhancedCode::new(2, 5, 0)),
                        "Will not expand the list",
                    )
                }));
            }
        }
    }

    fn finish_lmtp_message(&mut self, mut replies: Vec<Reply>) {
        let recipients = self.recipients.max(1);
        let fallback = replies.last().cloned().unwrap_or_else(|| {
            Reply::new(
                ReplyCode::OK,
                Some(EnhancedCode::new(2, 0, 0)),
                "Ok: delivered",
            )
        });
        replies.resize(recipients, fallback);
        replies.truncate(recipients);
        self.end_transaction();
        for reply in replies {
            self.reply(reply);
        }
    }

    fn greeting(&self) -> Reply {
        let banner = self.config.banner.clone().unwrap_or_else(|| {
            if self.config.lmtp {
                "LMTP smtpx".to_owned()
            } else {
                "ESMTP smtpx".to_owned()
            }
        });
        Reply::new(
            ReplyCode::SERVICE_READY,
            None,
            format!("{} {}", self.config.hostname, banner),
        )
    }

    /// The EHLO reply for the session's current state.
    pub fn capabilities(&self) -> Capabilities {
        let c = &self.config;
        Capabilities {
            domain: c.hostname.clone(),
            greeting: String::new(),
            pipelining: c.pipelining,
            size: Some(c.max_message_size),
            eight_bit_mime: c.eight_bit_mime,
            smtputf8: c.smtputf8,
            enhanced_status_codes: c.enhanced_status_codes,
            chunking: c.chunking,
            binary_mime: c.chunking,
            dsn: c.dsn,
            starttls: c.starttls && !self.tls,
            auth: if self.auth_offered() {
                c.auth_mechanisms.clone()
            } else {
                Vec::new()
            },
            other: Vec::new(),
        }
    }

    fn start_message(&mut self) {
        self.message_started = true;
        self.message_size = 0;
        self.message_aborted = None;
        self.bdat_normalizer.reset();
    }

    /// Forgets the transaction; returns a Reset event if there was one.
    fn reset_transaction(&mut self) -> Step {
        if self.message_started {
            // RSET between BDAT chunks drops the partial message.
            self.queued
                .push_back(ServerEvent::MessageAborted(AbortReason::Reset));
        }
        if self.in_transaction {
            self.queued.push_back(ServerEvent::Reset);
        }
        self.end_transaction();
        Step::Continue
    }

    fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.transaction_smtputf8 = false;
        self.transaction_binary = false;
        self.recipients = 0;
        self.message_started = false;
        self.message_size = 0;
        self.message_aborted = None;
    }

    /// Reports a message in progress as aborted, for a session that ends in its middle.
    fn abort_message(&mut self, reason: AbortReason) {
        let in_message =
            matches!(self.phase, Phase::Data | Phase::Bdat { .. }) || self.message_started;
        if in_message && self.message_aborted.is_none() {
            self.queued.push_back(ServerEvent::MessageAborted(reason));
        }
        self.end_transaction();
    }

    fn close_with(&mut self, reply: Reply) {
        self.reply(reply);
        self.pending = None;
        self.phase = Phase::Closed;
        self.input.clear();
        self.input_pos = 0;
        self.queued.push_back(ServerEvent::Close);
    }

    fn reply(&mut self, reply: Reply) {
        let start = self.output.len();
        if self.config.enhanced_status_codes {
            reply.write_to(&mut self.output);
        } else {
            reply.without_enhanced().write_to(&mut self.output);
        }
        self.tracer
            .replies(Direction::ServerToClient, &self.output[start..]);
    }

    /// Sends a negative reply and counts it; too many and the session ends.
    fn error_reply(&mut self, reply: Reply) {
        self.reply(reply);
        self.errors += 1;
        if self.errors >= self.config.max_errors && !matches!(self.phase, Phase::Closed) {
            self.abort_message(AbortReason::Disconnected);
            self.close_with(Reply::new(
                ReplyCode::SERVICE_UNAVAILABLE,
                Some(EnhancedCode::new(4, 7, 0)),
                format!("{} Error: too many errors", self.config.hostname),
            ));
        }
    }

    /// Refuses an overlong line; a SASL response ends the AUTH exchange.
    fn line_too_long(&mut self, sasl: bool) {
        let text = if sasl {
            self.phase = Phase::Command;
            "Error: SASL response limit exceeded"
        } else {
            "Error: line too long"
        };
        self.error_reply(Reply::new(
            ReplyCode::SYNTAX_ERROR,
            Some(EnhancedCode::LINE_TOO_LONG),
            text,
        ));
    }

    /// True when `command` (just taken from the input) breaks pipelining
    /// synchronisation: see [`ServerConfig::pipelining_sync`].
    fn out_of_sync(&self, command: &Command) -> bool {
        if !self.config.pipelining_sync || matches!(self.phase, Phase::Rejected) {
            return false;
        }
        let mut waiting = (self.input.len() - self.input_pos) as u64;
        if let Command::Bdat { size, .. } = command {
            // A BDAT chunk's octets follow its command by design.
            waiting = waiting.saturating_sub(*size);
        }
        if waiting == 0 {
            return false;
        }
        let offered =
            self.config.pipelining && matches!(self.hello, Some(HelloVerb::Ehlo | HelloVerb::Lhlo));
        !offered || ends_group(command)
    }

    /// Ends the session for a pipelining synchronisation error, storing nothing.
    fn sync_error(&mut self) {
        self.abort_message(AbortReason::Disconnected);
        self.close_with(Reply::new(
            ReplyCode::TRANSACTION_FAILED,
            Some(EnhancedCode::PROTOCOL_ERROR),
            "Error: SMTP protocol synchronization",
        ));
    }

    /// Refuses a command that needs TLS first; a BDAT chunk's octets are still read and
    /// thrown away, so they can never run as commands.
    fn tls_required(&mut self, command: &Command) -> Step {
        let reply = Reply::new(
            ReplyCode::AUTH_REQUIRED,
            Some(EnhancedCode::TLS_REQUIRED),
            "Must issue a STARTTLS command first",
        );
        if let Command::Bdat { size, .. } = command {
            self.phase = Phase::BdatDrain {
                remaining: *size,
                reply,
            };
        } else {
            self.error_reply(reply);
        }
        Step::Continue
    }

    fn sequence_error(&mut self, text: &str) -> Step {
        self.refuse(ReplyCode::BAD_SEQUENCE, (5, 5, 1), text)
    }

    fn unsupported_parameter(&mut self, what: &str) -> Step {
        self.refuse_text(
            ReplyCode::PARAMETERS_UNRECOGNIZED,
            (5, 5, 4),
            format!("Error: {what} not supported"),
        )
    }

    fn refuse(&mut self, code: ReplyCode, enhanced: (u8, u16, u16), text: &str) -> Step {
        self.refuse_text(code, enhanced, text.to_owned())
    }

    fn refuse_text(
        &mut self,
        code: ReplyCode,
        (class, subject, detail): (u8, u16, u16),
        text: String,
    ) -> Step {
        self.error_reply(Reply::new(
            code,
            Some(EnhancedCode::new(class, subject, detail)),
            text,
        ));
        Step::Continue
    }
}

/// True for a line that starts with the AUTH verb, which may be longer than other
/// commands (RFC 4954 §4).
fn is_auth_line(line: &[u8]) -> bool {
    line.len() >= 5 && line[..4].eq_ignore_ascii_case(b"AUTH") && line[4] == b' '
}

/// True for the commands that must end a pipelined group (RFC 2920 §3.1, RFC 3207 §4,
/// RFC 4954 §4). AUTH PLAIN with an initial response finishes in one round trip, so
/// RFC 4954 lets the client pipeline behind it.
fn ends_group(command: &Command) -> bool {
    match command {
        Command::Auth {
            mechanism: AuthMechanism::Plain,
            initial_response: Some(_),
        } => false,
        Command::Helo(_)
        | Command::Ehlo(_)
        | Command::Lhlo(_)
        | Command::Data
        | Command::Vrfy(_)
        | Command::Expn(_)
        | Command::Quit
        | Command::Noop
        | Command::StartTls
        | Command::Auth { .. } => true,
        Command::Mail { .. }
        | Command::Rcpt { .. }
        | Command::Rset
        | Command::Bdat { .. }
        | Command::Help(_) => false,
    }
}

/// The commands served before STARTTLS under [`ServerConfig::require_tls`] (RFC 3207 §4).
fn allowed_before_tls(command: &Command) -> bool {
    matches!(
        command,
        Command::Helo(_)
            | Command::Ehlo(_)
            | Command::Lhlo(_)
            | Command::StartTls
            | Command::Noop
            | Command::Rset
            | Command::Quit
    )
}

fn ok(text: &str) -> Reply {
    Reply::new(ReplyCode::OK, Some(EnhancedCode::new(2, 0, 0)), text)
}
