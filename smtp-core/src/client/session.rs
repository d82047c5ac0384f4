//! The session's state and its public face: opening (greeting, EHLO, STARTTLS, AUTH),
//! simple commands, output and time. Transactions live in `transaction`, reading replies in
//! `replies`.

use std::collections::VecDeque;
use std::time::Duration;

use crate::auth::Credentials;
use crate::command::Command;
use crate::data::DotStuffer;
use crate::ehlo::Capabilities;
use crate::reply::{Reply, ReplyCode, ReplyParser};
use crate::trace::{Direction, TraceSink, Tracer};

use super::replies::reply_error_text;
use super::{ClientConfig, ClientError, ClientEvent, RecipientResult};

/// A reply the session is waiting for, in the order the commands went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    AuthPlain,
    AuthLoginStart,
    AuthLoginUser,
    AuthLoginPassword,
    AuthXOAuth2,
    Mail,
    Rcpt(usize),
    Data,
    DataEnd,
    Bdat {
        last: bool,
    },
    /// RSET sent by the session itself, to clear a failed transaction.
    CleanupRset,
    /// A command whose reply goes to the embedder as [`ClientEvent::Reply`].
    Simple,
    /// EHLO (or HELO) sent again by the embedder (see `raw.rs`).
    Rehello {
        ehlo: bool,
    },
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Greeting, EHLO, STARTTLS and AUTH in progress.
    Opening,
    /// Waiting for the TLS handshake.
    AwaitTls,
    Ready,
    /// A transaction, or a simple command, is under way.
    Busy,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyMode {
    Data,
    Bdat,
}

#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) mode: BodyMode,
    pub(super) mail: Option<Reply>,
    pub(super) recipients: Vec<RecipientResult>,
    pub(super) pending_reply: Reply,
    /// Commands not yet written, when not pipelining.
    pub(super) unsent: VecDeque<(Command, Expect)>,
    pub(super) data: Option<Reply>,
    /// The body may be (or is being) written.
    pub(super) body_open: bool,
    pub(super) body_done: bool,
    pub(super) lmtp_replies_left: usize,
    pub(super) stuffer: DotStuffer,
    /// BDAT content waiting to fill a chunk.
    pub(super) chunk: Vec<u8>,
    /// Content octets given so far, for the trace.
    pub(super) content_octets: u64,
}

/// BDAT chunks are sent once this much content has gathered, so that a small message
/// goes out as a single `BDAT n LAST`.
pub(super) const BDAT_CHUNK: usize = 64 * 1024;

/// A client-side SMTP session. See the [module docs](super).
#[derive(Debug)]
pub struct ClientSession {
    pub(super) config: ClientConfig,
    pub(super) state: State,
    pub(super) parser: ReplyParser,
    pub(super) expected: VecDeque<(Expect, Duration)>,
    pub(super) events: VecDeque<ClientEvent>,
    pub(super) output: Vec<u8>,
    pub(super) now: Duration,
    pub(super) tls: bool,
    pub(super) capabilities: Option<Capabilities>,
    pub(super) authenticated: bool,
    /// The current authentication was asked for by [`ClientSession::login`].
    pub(super) explicit_auth: bool,
    /// Where the session was when a fatal error ended it (see [`ClientSession::phase`]).
    pub(super) failed_in: Option<super::Phase>,
    /// The current STARTTLS was asked for by [`ClientSession::starttls`].
    pub(super) explicit_starttls: bool,
    pub(super) transaction: Option<Transaction>,
    /// A transaction started while `transaction` awaited only its final reply, its
    /// commands already written behind that message's end (see [`ClientSession::send_mail`]).
    pub(super) chained: Option<Transaction>,
    /// The server still holds a transaction that failed half-way: RSET before the next.
    pub(super) needs_rset: bool,
    /// Where the wire trace goes, when the session traces.
    pub(super) tracer: Tracer,
    /// MAIL (and RCPT) of the current transaction went out one at a time (see
    /// `client::stepwise`): the next `send_mail` only sends DATA.
    pub(super) stepwise: bool,
    /// The server's replies that end no operation of their own, kept for smtplib-style
    /// APIs that return them: the greeting, the 220 to STARTTLS, the reply to QUIT.
    pub(super) kept: KeptReplies,
}

/// See [`ClientSession::greeting`], [`ClientSession::starttls_reply`] and
/// [`ClientSession::quit_reply`].
#[derive(Debug, Default)]
pub(super) struct KeptReplies {
    pub(super) greeting: Option<Reply>,
    pub(super) starttls: Option<Reply>,
    pub(super) quit: Option<Reply>,
}

/// A placeholder used while a recipient's RCPT reply has not come yet.
pub(super) fn no_reply() -> Reply {
    Reply::new(ReplyCode::TRANSACTION_FAILED, None, "no reply")
}

pub(super) fn has_control(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

impl ClientSession {
    /// A session for a connection opened at `now`; it waits for the server's greeting.
    /// Fails when the HELO name or the credentials could inject commands.
    pub fn new(config: ClientConfig, now: Duration) -> Result<ClientSession, ClientError> {
        if config.helo_name.is_empty()
            || has_control(&config.helo_name)
            || config.helo_name.contains(' ')
        {
            return Err(ClientError::InvalidArgument(
                "HELO name is empty or contains spaces or control characters".into(),
            ));
        }
        if config
            .credentials
            .as_ref()
            .is_some_and(Credentials::has_control_characters)
        {
            return Err(ClientError::InvalidArgument(
                "credentials contain control characters".into(),
            ));
        }
        let greeting_deadline = now + config.timeouts.greeting;
        Ok(ClientSession {
            parser: ReplyParser::new(config.reply_limits),
            tls: config.tls_active,
            config,
            state: State::Opening,
            expected: VecDeque::from([(Expect::Greeting, greeting_deadline)]),
            events: VecDeque::new(),
            output: Vec::new(),
            now,
            capabilities: None,
            authenticated: false,
            explicit_auth: false,
            failed_in: None,
            explicit_starttls: false,
            transaction: None,
            chained: None,
            needs_rset: false,
            tracer: Tracer::default(),
            stepwise: false,
            kept: KeptReplies::default(),
        })
    }

    /// Traces every command and reply line of this session into `sink`, marked with
    /// `connection` (see [`crate::trace`]): AUTH payloads redacted, content by size only.
    pub fn set_trace(&mut self, sink: TraceSink, connection: u64) {
        self.tracer.set(sink, connection);
    }

    /// What the server announced in its last EHLO reply (`None` before it, or after HELO).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }

    /// The server's greeting, once it came.
    pub fn greeting(&self) -> Option<&Reply> {
        self.kept.greeting.as_ref()
    }

    /// The server's 220 to the last STARTTLS, once it came.
    pub fn starttls_reply(&self) -> Option<&Reply> {
        self.kept.starttls.as_ref()
    }

    /// The server's reply to QUIT, once it came.
    pub fn quit_reply(&self) -> Option<&Reply> {
        self.kept.quit.as_ref()
    }

    /// Allows (or forbids again) AUTH while the connection is not encrypted, from the next
    /// [`ClientSession::login`] on: [`ClientConfig::allow_insecure_auth`] given after the
    /// session was made (as smtplib-style APIs set it on a connected object).
    pub fn set_allow_insecure_auth(&mut self, allow: bool) {
        self.config.allow_insecure_auth = allow;
    }

    /// True while the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True once authentication succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// True when commands and transactions may be started.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// True once the session is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Bytes to send to the server.
    #[must_use]
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Marks the first `n` bytes of the output as written.
    pub fn consume_output(&mut self, n: usize) {
        let n = n.min(self.output.len());
        self.output.drain(..n);
    }

    /// Marks all of the output as written.
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// Moves the output out of the session.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The next event, if any.
    #[must_use = "events carry the results and the requests for message content"]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`ClientSession::handle_timeout`] must be called next: the deadline of the
    /// oldest reply still awaited.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.state == State::Closed || self.state == State::AwaitTls {
            return None;
        }
        self.expected.front().map(|(_, deadline)| *deadline)
    }

    /// Tells the session the time; a reply overdue ends the session with
    /// [`ClientError::Timeout`]. Commands started later count their reply deadline from the
    /// last time the session was told, so after idle time call this before starting one.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = now;
        if self.next_deadline().is_some_and(|d| now >= d) {
            self.fail(ClientError::Timeout);
        }
    }

    /// The server closed the connection.
    pub fn receive_eof(&mut self) {
        if self.state == State::Closed {
            return;
        }
        if self.expected.is_empty() && self.transaction.is_none() {
            // An idle connection the server dropped (an idle timeout): not an error.
            self.state = State::Closed;
            self.events.push_back(ClientEvent::Closed);
        } else {
            self.fail(ClientError::ConnectionClosed);
        }
    }

    /// Takes bytes read from the server at `now` and acts on every complete reply in them.
    pub fn receive(&mut self, mut bytes: &[u8], now: Duration) {
        self.now = now;
        while !bytes.is_empty() && self.state != State::Closed && self.state != State::AwaitTls {
            match self.parser.feed(bytes) {
                Ok((consumed, reply)) => {
                    bytes = &bytes[consumed..];
                    if let Some(reply) = reply {
                        self.on_reply(reply);
                    }
                }
                Err(e) => {
                    self.fail(ClientError::Protocol(reply_error_text(&e)));
                    return;
                }
            }
        }
    }

    /// The TLS handshake that followed [`ClientEvent::StartTls`] succeeded: the session
    /// forgets what it knew and greets again (RFC 3207 §4.2).
    pub fn tls_established(&mut self, now: Duration) {
        self.now = now;
        if self.state != State::AwaitTls {
            return;
        }
        self.tls = true;
        self.capabilities = None;
        self.parser = ReplyParser::new(self.config.reply_limits);
        self.state = State::Opening;
        self.send_hello(Expect::Ehlo);
    }

    /// Sends STARTTLS now (the session must be ready and not yet encrypted).
    pub fn starttls(&mut self) -> Result<(), ClientError> {
        self.require_ready()?;
        if self.tls {
            return Err(ClientError::NotReady);
        }
        self.state = State::Opening;
        self.explicit_starttls = true;
        self.send(&Command::StartTls, Expect::StartTls);
        Ok(())
    }

    /// Authenticates now with `credentials`, choosing PLAIN, LOGIN or XOAUTH2 from what the
    /// server offers. The outcome is [`ClientEvent::Authenticated`] or
    /// [`ClientError::AuthFailed`]. On a connection without TLS it fails at once with
    /// [`ClientError::InsecureAuth`], writing nothing, unless
    /// [`ClientConfig::allow_insecure_auth`] is set; the session stays ready.
    pub fn login(&mut self, credentials: Credentials) -> Result<(), ClientError> {
        self.require_ready()?;
        if credentials.has_control_characters() {
            return Err(ClientError::InvalidArgument(
                "credentials contain control characters".into(),
            ));
        }
        if !self.auth_allowed() {
            return Err(ClientError::InsecureAuth);
        }
        self.config.credentials = Some(credentials);
        self.explicit_auth = true;
        if !self.start_auth() {
            self.explicit_auth = false;
            return Err(ClientError::AuthUnsupported);
        }
        self.state = State::Opening;
        Ok(())
    }

    /// Sends NOOP; the reply comes as [`ClientEvent::Reply`].
    pub fn noop(&mut self) -> Result<(), ClientError> {
        self.simple(Command::Noop(None))
    }

    /// Sends RSET; the reply comes as [`ClientEvent::Reply`].
    pub fn rset(&mut self) -> Result<(), ClientError> {
        self.simple(Command::Rset)?;
        self.needs_rset = false;
        self.stepwise = false;
        Ok(())
    }

    /// Sends VRFY; the reply comes as [`ClientEvent::Reply`].
    pub fn vrfy(&mut self, argument: &str) -> Result<(), ClientError> {
        self.simple(Command::Vrfy(argument.to_owned()))
    }

    /// Sends EXPN; the reply comes as [`ClientEvent::Reply`].
    pub fn expn(&mut self, argument: &str) -> Result<(), ClientError> {
        self.simple(Command::Expn(argument.to_owned()))
    }

    /// Sends HELP; the reply comes as [`ClientEvent::Reply`].
    pub fn help(&mut self, topic: Option<&str>) -> Result<(), ClientError> {
        self.simple(Command::Help(topic.map(str::to_owned)))
    }

    /// Sends QUIT; [`ClientEvent::Closed`] follows the reply.
    pub fn quit(&mut self) -> Result<(), ClientError> {
        if matches!(self.state, State::Closed | State::AwaitTls) {
            return Err(ClientError::NotReady);
        }
        self.state = State::Busy;
        self.send(&Command::Quit, Expect::Quit);
        Ok(())
    }

    pub(super) fn simple(&mut self, command: Command) -> Result<(), ClientError> {
        self.require_ready()?;
        command.check_arguments()?;
        self.state = State::Busy;
        self.send(&command, Expect::Simple);
        Ok(())
    }

    pub(super) fn require_ready(&self) -> Result<(), ClientError> {
        if self.state == State::Ready {
            Ok(())
        } else {
            Err(ClientError::NotReady)
        }
    }

    /// Writes a command line, and traces it.
    pub(super) fn write_command(&mut self, command: &Command) {
        let start = self.output.len();
        command.write_to(&mut self.output);
        if self.tracer.is_on() {
            let line = &self.output[start..];
            let line = line.strip_suffix(b"\r\n").unwrap_or(line);
            self.tracer.command(Direction::ClientToServer, line);
        }
    }

    pub(super) fn send(&mut self, command: &Command, expect: Expect) {
        self.write_command(command);
        let t = &self.config.timeouts;
        let timeout = match expect {
            Expect::Rcpt(_) => t.rcpt,
            Expect::Data => t.data_start,
            _ => t.command,
        };
        self.expected.push_back((expect, self.now + timeout));
    }

    pub(super) fn send_hello(&mut self, expect: Expect) {
        let name = self.config.helo_name.clone();
        let command = match expect {
            Expect::Helo => Command::Helo(name),
            _ if self.config.lmtp => Command::Lhlo(name),
            _ => Command::Ehlo(name),
        };
        self.send(&command, expect);
    }

    /// Ends the session with an error.
    pub(super) fn fail(&mut self, error: ClientError) {
        if self.state == State::Closed {
            return;
        }
        let fatal = error.is_fatal();
        if fatal && self.failed_in.is_none() {
            self.failed_in = Some(self.current_phase());
        }
        if fatal {
            // A body request queued before the failure can no longer be served.
            self.events.retain(|e| *e != ClientEvent::SendBody);
        }
        self.events.push_back(ClientEvent::Error(error));
        if fatal {
            self.state = State::Closed;
            self.expected.clear();
            self.transaction = None;
            self.chained = None;
            self.events.push_back(ClientEvent::Closed);
        }
    }

    /// Ends the opening (greeting, TLS, AUTH) with QUIT and an error. The session is over
    /// even when the error is one a ready session survives: a STARTTLS refusal under
    /// [`StartTlsPolicy::Required`] must stop it, not leave it waiting for nothing.
    pub(super) fn abandon(&mut self, error: ClientError) {
        if self.state == State::Closed {
            return;
        }
        self.write_command(&Command::Quit);
        self.events.push_back(ClientEvent::Error(error));
        self.state = State::Closed;
        self.expected.clear();
        self.transaction = None;
        self.chained = None;
        self.events.push_back(ClientEvent::Closed);
    }
}
