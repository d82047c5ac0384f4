//! The client side of an SMTP (or LMTP) session as a sans-IO state machine.
//!
//! A [`ClientSession`] reads the greeting, sends EHLO (falling back to HELO), upgrades with
//! STARTTLS and authenticates as its [`ClientConfig`] says, then reports
//! [`ClientEvent::Ready`]. Transactions go out one command at a time, or as one pipelined
//! batch when the server offers PIPELINING, and with BDAT when it offers CHUNKING. Every
//! transaction ends with a [`TransactionResult`] that holds a reply for every recipient: one
//! refused recipient never stops the others.
//!
//! The embedder moves bytes: it passes what it reads to [`ClientSession::receive`], writes
//! what [`ClientSession::output`] holds, and reacts to [`ClientEvent`]s.
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::client::{ClientConfig, ClientEvent, ClientSession, Envelope};
//!
//! let now = Duration::ZERO;
//! let mut client = ClientSession::new(ClientConfig::new("client.example"), now).unwrap();
//! client.receive(b"220 mx.example ESMTP\r\n", now);
//! assert_eq!(client.take_output(), b"EHLO client.example\r\n");
//! client.receive(b"250-mx.example\r\n250 PIPELINING\r\n", now);
//! assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
//!
//! let envelope = Envelope::new("a@example.com", &["b@example.com"]).unwrap();
//! client.send_mail(&envelope, None).unwrap();
//! // Pipelined: MAIL, RCPT and DATA leave in one write.
//! assert_eq!(client.take_output(), b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
//! client.receive(b"250 ok\r\n250 ok\r\n354 go\r\n", now);
//! assert_eq!(client.poll_event(), Some(ClientEvent::SendBody));
//! client.send_body(b"Subject: hi\n\n.hello\n").unwrap();
//! client.finish_body().unwrap();
//! assert_eq!(client.take_output(), b"Subject: hi\r\n\r\n..hello\r\n.\r\n");
//! client.receive(b"250 2.0.0 Ok: queued as 4XyZ\r\n", now);
//! let Some(ClientEvent::TransactionComplete(result)) = client.poll_event() else { panic!() };
//! assert!(result.is_success());
//! assert_eq!(result.queue_id(), Some("4XyZ"));
//! ```

pub(crate) mod batch;
pub mod error;
pub mod options;
pub mod runner;
pub(crate) mod api;

use crate::trace::{Direction, TraceSink, Tracer};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::address::{Address, AddressError, ForwardPath, ReversePath};
use crate::auth::{self, Credentials};
use crate::command::{Command, CommandError, MailParameters, RcptParameters};
use crate::data::DotStuffer;
use crate::ehlo::{AuthMechanism, Capabilities};
use crate::reply::{Reply, ReplyCode, ReplyError, ReplyLimits, ReplyParser};

/// Whether to upgrade a plain connection with STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartTlsPolicy {
    /// Never send STARTTLS.
    Never,
    /// Upgrade when the server offers it; go on in clear otherwise.
    #[default]
    Opportunistic,
    /// Upgrade or stop: a server that does not offer STARTTLS, or refuses it, ends the
    /// session with an error before any mail or credentials are sent.
    Required,
}

/// Per-phase reply timeouts. The defaults are RFC 5321 §4.5.3.2's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// Waiting for the 220 greeting. Default 5 minutes.
    pub greeting: Duration,
    /// Waiting for the reply to EHLO, HELO, STARTTLS, AUTH, RSET, NOOP, VRFY, EXPN, HELP,
    /// QUIT and MAIL. Default 5 minutes.
    pub command: Duration,
    /// Waiting for the reply to each RCPT. Default 5 minutes.
    pub rcpt: Duration,
    /// Waiting for the 354 to DATA. Default 2 minutes.
    pub data_start: Duration,
    /// Waiting for the reply to a BDAT chunk that is not the last. Default 3 minutes.
    pub data_block: Duration,
    /// Waiting for the reply after the final dot or the last BDAT chunk. Default 10 minutes.
    pub data_end: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            rcpt: Duration::from_secs(300),
            data_start: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
        }
    }
}

/// How a client session behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent with EHLO/HELO/LHLO. Default `localhost`.
    pub helo_name: String,
    /// Speak LMTP: LHLO, and one reply per recipient after the message. Default false.
    pub lmtp: bool,
    /// STARTTLS policy. Default [`StartTlsPolicy::Opportunistic`].
    pub starttls: StartTlsPolicy,
    /// The connection is already encrypted (implicit TLS). Default false.
    pub tls_active: bool,
    /// Authenticate with these after the greeting (and TLS). Default none.
    pub credentials: Option<Credentials>,
    /// Pipeline when the server offers PIPELINING. Default true.
    pub pipelining: bool,
    /// Send the message with BDAT when the server offers CHUNKING. Default true.
    pub chunking: bool,
    /// Bounds on the replies read.
    pub reply_limits: ReplyLimits,
    /// Reply timeouts.
    pub timeouts: ClientTimeouts,
}

impl ClientConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.into(),
            lmtp: false,
            starttls: StartTlsPolicy::Opportunistic,
            tls_active: false,
            credentials: None,
            pipelining: true,
            chunking: true,
            reply_limits: ReplyLimits::default(),
            timeouts: ClientTimeouts::default(),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new("localhost")
    }
}

/// A recipient with its RCPT parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The address.
    pub address: ForwardPath,
    /// NOTIFY, ORCPT and others.
    pub params: RcptParameters,
}

/// The envelope of one message: sender, recipients and their parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sender (MAIL FROM), or the null path for notifications.
    pub from: ReversePath,
    /// MAIL parameters. SIZE and SMTPUTF8 are added by the session when they apply.
    pub params: MailParameters,
    /// The recipients, in order.
    pub recipients: Vec<Recipient>,
}

impl Envelope {
    /// An envelope from plain address strings; an empty `from` is the null path.
    ///
    /// ```
    /// use smtp_core::client::Envelope;
    /// assert!(Envelope::new("a@example.com", &["b@example.com"]).is_ok());
    /// assert!(Envelope::new("a@example.com\r\nRSET", &["b@example.com"]).is_err());
    /// ```
    pub fn new(from: &str, to: &[&str]) -> Result<Envelope, AddressError> {
        let from = if from.is_empty() {
            ReversePath::Null
        } else {
            ReversePath::Mailbox(Address::parse(from)?)
        };
        let recipients = to
            .iter()
            .map(|t| {
                Ok(Recipient {
                    address: ForwardPath::Mailbox(Address::parse(t)?),
                    params: RcptParameters::default(),
                })
            })
            .collect::<Result<Vec<_>, AddressError>>()?;
        Ok(Envelope {
            from,
            params: MailParameters::default(),
            recipients,
        })
    }

    fn is_ascii(&self) -> bool {
        self.from.is_ascii() && self.recipients.iter().all(|r| r.address.is_ascii())
    }
}

/// The outcome for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    /// The recipient.
    pub address: ForwardPath,
    /// The reply to its RCPT.
    pub reply: Reply,
    /// Under LMTP, the reply after the message for this recipient.
    pub delivery: Option<Reply>,
}

impl RecipientResult {
    /// True when the server took the message for this recipient.
    pub fn is_accepted(&self) -> bool {
        self.reply.is_completion() && self.delivery.as_ref().is_none_or(|d| d.is_completion())
    }
}

/// The outcome of one transaction: a reply for each step and each recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionResult {
    /// The reply to MAIL FROM.
    pub mail: Reply,
    /// One entry per recipient, in envelope order.
    pub recipients: Vec<RecipientResult>,
    /// The final reply after the message (the last one under LMTP), or the refusal of
    /// DATA/BDAT; `None` when the message was never sent.
    pub data: Option<Reply>,
}

impl TransactionResult {
    /// True when the message was accepted for at least one recipient.
    pub fn is_success(&self) -> bool {
        // Under LMTP `data` is only the last recipient's delivery reply: the per-recipient
        // deliveries (which `is_accepted` checks) decide, not whether the last one failed.
        let lmtp = self.recipients.iter().any(|r| r.delivery.is_some());
        self.mail.is_completion()
            && (lmtp || self.data.as_ref().is_some_and(Reply::is_completion))
            && self.recipients.iter().any(RecipientResult::is_accepted)
    }

    /// The recipients the message was accepted for.
    pub fn accepted(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients.iter().filter(|r| r.is_accepted())
    }

    /// The recipients that were refused, with their replies.
    pub fn refused(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients.iter().filter(|r| !r.is_accepted())
    }

    /// The queue id in the final reply, when the server names one the usual ways
    /// (`queued as ID` as Postfix says, or `id=ID` as Exim says).
    pub fn queue_id(&self) -> Option<&str> {
        let data = self.data.as_ref().filter(|d| d.is_completion())?;
        let line = data.lines().first()?;
        let start = if let Some(i) = line.find("queued as ") {
            i + "queued as ".len()
        } else {
            line.find("id=")? + "id=".len()
        };
        let id = line[start..].split([' ', ',', ';', ')']).next()?;
        (!id.is_empty()).then_some(id)
    }
}

/// What went wrong in a client session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A command argument, address or credential contains CR, LF or NUL, or is otherwise
    /// unfit to be written; nothing was sent.
    InvalidArgument(String),
    /// The call does not fit the session's state (for example a send while another one is
    /// under way); nothing was sent.
    NotReady,
    /// The server refused the connection in its greeting.
    Greeting(Reply),
    /// The server refused EHLO, and then HELO.
    Hello(Reply),
    /// STARTTLS is required but the server does not offer it.
    StartTlsUnavailable,
    /// STARTTLS was refused by the server.
    StartTlsRefused(Reply),
    /// No mechanism both sides support.
    AuthUnsupported,
    /// The server refused the credentials.
    AuthFailed(Reply),
    /// The message is larger than the server's announced SIZE limit; nothing was sent.
    MessageTooLarge {
        /// The server's limit.
        limit: u64,
    },
    /// An address needs SMTPUTF8 but the server does not offer it; nothing was sent.
    SmtpUtf8Unsupported,
    /// The server is closing the connection (421).
    ServerClosed(Reply),
    /// The server sent something that is not a valid reply, or a reply nobody asked for.
    Protocol(String),
    /// A reply did not come in time.
    Timeout,
    /// The connection ended while replies were still expected.
    ConnectionClosed,
}

impl ClientError {
    /// True when the session cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ClientError::InvalidArgument(_)
                | ClientError::NotReady
                | ClientError::AuthFailed(_)
                | ClientError::AuthUnsupported
                | ClientError::StartTlsRefused(_)
                | ClientError::MessageTooLarge { .. }
                | ClientError::SmtpUtf8Unsupported
        )
    }

    /// The server's reply behind the error, if there is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Greeting(r)
            | ClientError::Hello(r)
            | ClientError::StartTlsRefused(r)
            | ClientError::AuthFailed(r)
            | ClientError::ServerClosed(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            ClientError::NotReady => f.write_str("the session is not ready for this call"),
            ClientError::Greeting(r) => write!(f, "connection refused by server: {r}"),
            ClientError::Hello(r) => write!(f, "greeting refused by server: {r}"),
            ClientError::StartTlsUnavailable => {
                f.write_str("STARTTLS required but not offered by the server")
            }
            ClientError::StartTlsRefused(r) => write!(f, "STARTTLS refused by server: {r}"),
            ClientError::AuthUnsupported => {
                f.write_str("no authentication mechanism in common with the server")
            }
            ClientError::AuthFailed(r) => write!(f, "authentication failed: {r}"),
            ClientError::MessageTooLarge { limit } => write!(
                f,
                "message larger than the server's limit of {limit} octets"
            ),
            ClientError::SmtpUtf8Unsupported => {
                f.write_str("an address needs SMTPUTF8, which the server does not offer")
            }
            ClientError::ServerClosed(r) => write!(f, "server closed the session: {r}"),
            ClientError::Protocol(what) => write!(f, "protocol error: {what}"),
            ClientError::Timeout => f.write_str("timed out waiting for the server"),
            ClientError::ConnectionClosed => f.write_str("connection closed by the server"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<CommandError> for ClientError {
    fn from(e: CommandError) -> Self {
        ClientError::InvalidArgument(e.to_string())
    }
}

impl From<AddressError> for ClientError {
    fn from(e: AddressError) -> Self {
        ClientError::InvalidArgument(e.to_string())
    }
}

/// Something the embedder must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The session is greeted (and upgraded and authenticated, as configured): commands and
    /// transactions may be started.
    Ready,
    /// The server said 220 to STARTTLS: write the output, do the TLS handshake, then call
    /// [`ClientSession::tls_established`]. Bytes the server sent after its 220 were thrown
    /// away (they could only be injected).
    StartTls,
    /// Authentication succeeded.
    Authenticated(Reply),
    /// Send the message now with [`ClientSession::send_body`] and
    /// [`ClientSession::finish_body`].
    SendBody,
    /// A transaction is over.
    TransactionComplete(TransactionResult),
    /// The reply to NOOP, RSET, VRFY, EXPN or HELP.
    Reply(Reply),
    /// The session is over (after QUIT, or when the server went away while idle); close
    /// the connection.
    Closed,
    /// Something failed; when [`ClientError::is_fatal`] the session is over too.
    Error(ClientError),
}

/// A reply the session is waiting for, in the order the commands went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
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
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
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
enum BodyMode {
    Data,
    Bdat,
}

#[derive(Debug)]
struct Transaction {
    mode: BodyMode,
    mail: Option<Reply>,
    recipients: Vec<RecipientResult>,
    pending_reply: Reply,
    /// Commands not yet written, when not pipelining.
    unsent: VecDeque<(Command, Expect)>,
    data: Option<Reply>,
    /// The body may be (or is being) written.
    body_open: bool,
    body_done: bool,
    lmtp_replies_left: usize,
    stuffer: DotStuffer,
    /// BDAT content waiting to fill a chunk.
    chunk: Vec<u8>,
    /// Content octets given so far, for the trace.
    content_octets: u64,
}

/// BDAT chunks are sent once this much content has gathered, so that a small message
/// goes out as a single `BDAT n LAST`.
const BDAT_CHUNK: usize = 64 * 1024;

/// A client-side SMTP session. See the [module docs](self).
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: State,
    parser: ReplyParser,
    expected: VecDeque<(Expect, Duration)>,
    events: VecDeque<ClientEvent>,
    output: Vec<u8>,
    now: Duration,
    tls: bool,
    capabilities: Option<Capabilities>,
    authenticated: bool,
    /// The current authentication was asked for by [`ClientSession::login`].
    explicit_auth: bool,
    /// The current STARTTLS was asked for by [`ClientSession::starttls`].
    explicit_starttls: bool,
    transaction: Option<Transaction>,
    /// A transaction started while `transaction` awaited only its final reply, its
    /// commands already written behind that message's end (see [`ClientSession::send_mail`]).
    chained: Option<Transaction>,
    /// The server still holds a transaction that failed half-way: RSET before the next.
    needs_rset: bool,
    /// Where the wire trace goes, when the session traces.
    tracer: Tracer,
}

/// A placeholder used while a recipient's RCPT reply has not come yet.
fn no_reply() -> Reply {
    Reply::new(ReplyCode::TRANSACTION_FAILED, None, "no reply")
}

fn has_control(s: &str) -> bool {
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
            explicit_starttls: false,
            transaction: None,
            chained: None,
            needs_rset: false,
            tracer: Tracer::default(),
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
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`ClientSession::handle_timeout`] must be called next: the deadline of the
    /// oldest reply still awaited.
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
    /// [`ClientError::AuthFailed`].
    pub fn login(&mut self, credentials: Credentials) -> Result<(), ClientError> {
        self.require_ready()?;
        if credentials.has_control_characters() {
            return Err(ClientError::InvalidArgument(
                "credentials contain control characters".into(),
            ));
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
        self.simple(Command::Noop)
    }

    /// Sends RSET; the reply comes as [`ClientEvent::Reply`].
    pub fn rset(&mut self) -> Result<(), ClientError> {
        self.needs_rset = false;
        self.simple(Command::Rset)
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

    fn simple(&mut self, command: Command) -> Result<(), ClientError> {
        self.require_ready()?;
        command.check_arguments()?;
        self.state = State::Busy;
        self.send(&command, Expect::Simple);
        Ok(())
    }

    fn require_ready(&self) -> Result<(), ClientError> {
        if self.state == State::Ready {
            Ok(())
        } else {
            Err(ClientError::NotReady)
        }
    }

    /// Starts a transaction. `size` is the message size when known: it is announced with
    /// SIZE and checked against the server's limit before anything is sent. It must count
    /// the octets that go out after CRLF canonicalisation (RFC 1870), which
    /// [`wire_size`](crate::data::wire_size) gives for a message in memory. The body is
    /// asked for with [`ClientEvent::SendBody`].
    ///
    /// With PIPELINING (and not CHUNKING), a transaction may also start while the previous
    /// one awaits only the reply to its final dot, i.e. after [`finish_body`]: its MAIL,
    /// RCPT and DATA then go out right behind that dot, in the same write (RFC 2920 §3.1:
    /// message content may begin a group), so a stream of messages costs one round trip
    /// each instead of two. The previous [`ClientEvent::TransactionComplete`] still comes
    /// first. At any other time a session that is not ready answers
    /// [`ClientError::NotReady`] and changes nothing.
    ///
    /// [`finish_body`]: ClientSession::finish_body
    pub fn send_mail(&mut self, envelope: &Envelope, size: Option<u64>) -> Result<(), ClientError> {
        let chaining = self.can_chain();
        if !chaining {
            self.require_ready()?;
        }
        if envelope.recipients.is_empty() {
            return Err(ClientError::InvalidArgument("no recipients".into()));
        }
        let caps = self.capabilities.clone().unwrap_or_default();
        let esmtp = self.capabilities.is_some();
        let mut params = envelope.params.clone();
        if let (Some(size), Some(limit)) = (size, caps.size) {
            if limit > 0 && size > limit {
                return Err(ClientError::MessageTooLarge { limit });
            }
            params.size = Some(size);
        }
        if !envelope.is_ascii() {
            if !caps.smtputf8 {
                return Err(ClientError::SmtpUtf8Unsupported);
            }
            params.smtputf8 = true;
        }
        if !esmtp {
            // HELO servers know no parameters at all.
            params = MailParameters::default();
        }
        let mail = Command::Mail {
            from: envelope.from.clone(),
            params,
        };
        mail.check_arguments()?;
        let mut commands = Vec::with_capacity(envelope.recipients.len() + 3);
        if self.needs_rset {
            commands.push((Command::Rset, Expect::CleanupRset));
        }
        commands.push((mail, Expect::Mail));
        for (i, r) in envelope.recipients.iter().enumerate() {
            let rcpt = Command::Rcpt {
                to: r.address.clone(),
                params: if esmtp {
                    r.params.clone()
                } else {
                    Default::default()
                },
            };
            rcpt.check_arguments()?;
            commands.push((rcpt, Expect::Rcpt(i)));
        }
        let pipelining = self.config.pipelining && caps.pipelining;
        let mode = if pipelining && self.config.chunking && caps.chunking {
            BodyMode::Bdat
        } else {
            BodyMode::Data
        };
        if mode == BodyMode::Data {
            commands.push((Command::Data, Expect::Data));
        }
        if chaining && mode != BodyMode::Data {
            return Err(ClientError::NotReady);
        }
        self.needs_rset = false;
        self.state = State::Busy;
        let mut transaction = Transaction {
            mode,
            mail: None,
            recipients: envelope
                .recipients
                .iter()
                .map(|r| RecipientResult {
                    address: r.address.clone(),
                    reply: no_reply(),
                    delivery: None,
                })
                .collect(),
            pending_reply: no_reply(),
            unsent: VecDeque::new(),
            data: None,
            body_open: false,
            body_done: false,
            lmtp_replies_left: 0,
            stuffer: if mode == BodyMode::Bdat {
                DotStuffer::canonicalize_only()
            } else {
                DotStuffer::new()
            },
            chunk: Vec::new(),
            content_octets: 0,
        };
        if pipelining {
            // RFC 2920: the whole group in one write, every reply read afterwards.
            for (command, expect) in &commands {
                self.send(command, *expect);
            }
            if mode == BodyMode::Bdat {
                transaction.body_open = true;
                self.events.push_back(ClientEvent::SendBody);
            }
        } else {
            let mut commands = VecDeque::from(commands);
            if let Some((command, expect)) = commands.pop_front() {
                self.send(&command, expect);
            }
            transaction.unsent = commands;
        }
        if chaining {
            self.chained = Some(transaction);
        } else {
            self.transaction = Some(transaction);
        }
        Ok(())
    }

    /// True when [`send_mail`](Self::send_mail) would start a transaction now: the
    /// session is ready, or the current transaction awaits only its final reply and the
    /// next may be chained behind it.
    pub fn can_send_mail(&self) -> bool {
        self.state == State::Ready || self.can_chain()
    }

    /// True when [`send_mail`](Self::send_mail) may start a transaction behind the current
    /// one: pipelining is on, nothing else is queued, and the current transaction has
    /// written its whole message with DATA and awaits only the reply to the dot (so the
    /// server has said 354, and that reply ends its transaction whatever it is: no RSET
    /// can be needed). LMTP, with one reply per recipient after the dot, is left out.
    fn can_chain(&self) -> bool {
        let pipelining =
            self.config.pipelining && self.capabilities.as_ref().is_some_and(|c| c.pipelining);
        self.state == State::Busy
            && pipelining
            && !self.config.lmtp
            && self.chained.is_none()
            && self
                .transaction
                .as_ref()
                .is_some_and(|t| t.mode == BodyMode::Data && t.body_done && t.unsent.is_empty())
            && self.expected.iter().all(|(e, _)| *e == Expect::DataEnd)
    }

    /// Adds message content. Line endings are made CRLF and, for DATA, lines starting with
    /// a dot are stuffed, so any bytes may be given, split anywhere.
    pub fn send_body(&mut self, chunk: &[u8]) -> Result<(), ClientError> {
        let t = self
            .transaction
            .as_mut()
            .filter(|t| t.body_open && !t.body_done)
            .ok_or(ClientError::NotReady)?;
        t.content_octets += chunk.len() as u64;
        match t.mode {
            BodyMode::Data => t.stuffer.stuff(chunk, &mut self.output),
            BodyMode::Bdat => {
                t.stuffer.stuff(chunk, &mut t.chunk);
                if t.chunk.len() >= BDAT_CHUNK {
                    let content = std::mem::take(&mut t.chunk);
                    self.send_bdat(&content, false);
                }
            }
        }
        Ok(())
    }

    /// Ends the message content: the final dot for DATA, the LAST chunk for BDAT.
    pub fn finish_body(&mut self) -> Result<(), ClientError> {
        let t = self
            .transaction
            .as_mut()
            .filter(|t| t.body_open && !t.body_done)
            .ok_or(ClientError::NotReady)?;
        t.body_done = true;
        self.tracer
            .content(Direction::ClientToServer, t.content_octets);
        let deadline = self.now + self.config.timeouts.data_end;
        match t.mode {
            BodyMode::Data => {
                t.stuffer.finish(&mut self.output);
                t.lmtp_replies_left = if self.config.lmtp {
                    t.recipients
                        .iter()
                        .filter(|r| r.reply.is_completion())
                        .count()
                } else {
                    1
                };
                self.expected.push_back((Expect::DataEnd, deadline));
            }
            BodyMode::Bdat => {
                t.stuffer.finish(&mut t.chunk);
                let content = std::mem::take(&mut t.chunk);
                self.send_bdat(&content, true);
            }
        }
        Ok(())
    }

    fn send_bdat(&mut self, content: &[u8], last: bool) {
        let command = Command::Bdat {
            size: content.len() as u64,
            last,
        };
        self.write_command(&command);
        self.output.extend_from_slice(content);
        let timeout = if last {
            self.config.timeouts.data_end
        } else {
            self.config.timeouts.data_block
        };
        self.expected
            .push_back((Expect::Bdat { last }, self.now + timeout));
    }

    /// Writes a command line, and traces it.
    fn write_command(&mut self, command: &Command) {
        let start = self.output.len();
        command.write_to(&mut self.output);
        if self.tracer.is_on() {
            let line = &self.output[start..];
            let line = line.strip_suffix(b"\r\n").unwrap_or(line);
            self.tracer.command(Direction::ClientToServer, line);
        }
    }

    fn send(&mut self, command: &Command, expect: Expect) {
        self.write_command(command);
        let t = &self.config.timeouts;
        let timeout = match expect {
            Expect::Rcpt(_) => t.rcpt,
            Expect::Data => t.data_start,
            _ => t.command,
        };
        self.expected.push_back((expect, self.now + timeout));
    }

    fn send_hello(&mut self, expect: Expect) {
        let name = self.config.helo_name.clone();
        let command = match expect {
            Expect::Helo => Command::Helo(name),
            _ if self.config.lmtp => Command::Lhlo(name),
            _ => Command::Ehlo(name),
        };
        self.send(&command, expect);
    }

    /// Ends the session with an error.
    fn fail(&mut self, error: ClientError) {
        if self.state == State::Closed {
            return;
        }
        let fatal = error.is_fatal();
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
    fn abandon(&mut self, error: ClientError) {
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

    fn on_reply(&mut self, reply: Reply) {
        if self.tracer.is_on() {
            self.tracer
                .replies(Direction::ServerToClient, &reply.to_bytes());
        }
        let Some((expect, _)) = self.expected.pop_front() else {
            if reply.code() == ReplyCode::SERVICE_UNAVAILABLE {
                self.fail(ClientError::ServerClosed(reply));
            } else {
                self.fail(ClientError::Protocol(format!("unexpected reply: {reply}")));
            }
            return;
        };
        // Restart the clock for the next awaited reply: timeouts are per command.
        if let Some((next, deadline)) = self.expected.front_mut() {
            let t = &self.config.timeouts;
            let timeout = match next {
                Expect::Rcpt(_) => t.rcpt,
                Expect::Data => t.data_start,
                Expect::DataEnd | Expect::Bdat { last: true } => t.data_end,
                Expect::Bdat { last: false } => t.data_block,
                Expect::Greeting => t.greeting,
                _ => t.command,
            };
            *deadline = (*deadline).max(self.now + timeout);
        }
        if reply.code() == ReplyCode::SERVICE_UNAVAILABLE && expect != Expect::Quit {
            self.fail(ClientError::ServerClosed(reply));
            return;
        }
        match expect {
            Expect::Greeting => {
                if reply.code() == ReplyCode::SERVICE_READY {
                    self.send_hello(Expect::Ehlo);
                } else {
                    self.abandon(ClientError::Greeting(reply));
                }
            }
            Expect::Ehlo => {
                if reply.is_completion() {
                    self.capabilities = Some(Capabilities::from_reply(&reply));
                    self.after_hello();
                } else if reply.is_permanent() && !self.config.lmtp {
                    self.send_hello(Expect::Helo);
                } else {
                    self.abandon(ClientError::Hello(reply));
                }
            }
            Expect::Helo => {
                if reply.is_completion() {
                    self.capabilities = None;
                    self.after_hello();
                } else {
                    self.abandon(ClientError::Hello(reply));
                }
            }
            Expect::StartTls => {
                if reply.code() == ReplyCode::SERVICE_READY {
                    // Anything after the 220 arrived before TLS: it can only be injected.
                    self.parser = ReplyParser::new(self.config.reply_limits);
                    self.expected.clear();
                    self.state = State::AwaitTls;
                    self.explicit_starttls = false;
                    self.events.push_back(ClientEvent::StartTls);
                } else if self.config.starttls == StartTlsPolicy::Required
                    && !self.explicit_starttls
                {
                    self.abandon(ClientError::StartTlsRefused(reply));
                } else {
                    let explicit = std::mem::take(&mut self.explicit_starttls);
                    self.events
                        .push_back(ClientEvent::Error(ClientError::StartTlsRefused(reply)));
                    if explicit {
                        self.state = State::Ready;
                    } else {
                        self.after_tls_decision();
                    }
                }
            }
            Expect::AuthPlain | Expect::AuthLoginPassword | Expect::AuthXOAuth2
                if reply.code() == ReplyCode::AUTH_SUCCEEDED =>
            {
                self.authenticated = true;
                self.events.push_back(ClientEvent::Authenticated(reply));
                self.opening_done();
            }
            Expect::AuthXOAuth2 if reply.code() == ReplyCode::AUTH_CONTINUE => {
                // The server's 334 carries an error description; an empty line ends the
                // exchange and brings the final refusal.
                self.output.extend_from_slice(b"\r\n");
                self.tracer.secret(Direction::ClientToServer);
                self.expected
                    .push_front((Expect::AuthXOAuth2, self.now + self.config.timeouts.command));
            }
            Expect::AuthLoginStart | Expect::AuthLoginUser
                if reply.code() == ReplyCode::AUTH_CONTINUE =>
            {
                let Some(credentials) = self.config.credentials.clone() else {
                    return;
                };
                let (next, secret) = match (expect, &credentials) {
                    (Expect::AuthLoginStart, c) => (Expect::AuthLoginUser, c.username().to_owned()),
                    (_, Credentials::Password { password, .. }) => {
                        (Expect::AuthLoginPassword, password.expose().to_owned())
                    }
                    (_, Credentials::OAuth2 { token, .. }) => {
                        (Expect::AuthLoginPassword, token.expose().to_owned())
                    }
                };
                self.output
                    .extend_from_slice(auth::encode(secret.as_bytes()).as_bytes());
                self.output.extend_from_slice(b"\r\n");
                self.tracer.secret(Direction::ClientToServer);
                self.expected
                    .push_front((next, self.now + self.config.timeouts.command));
            }
            Expect::AuthPlain
            | Expect::AuthLoginStart
            | Expect::AuthLoginUser
            | Expect::AuthLoginPassword
            | Expect::AuthXOAuth2 => {
                // An explicit login() reports only its failure; a configured one also ends
                // the opening, so the session is Ready (without authentication).
                let explicit = std::mem::take(&mut self.explicit_auth);
                self.events
                    .push_back(ClientEvent::Error(ClientError::AuthFailed(reply)));
                self.state = State::Ready;
                if !explicit {
                    self.events.push_back(ClientEvent::Ready);
                }
            }
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Data
            | Expect::DataEnd
            | Expect::Bdat { .. } => self.on_transaction_reply(expect, reply),
            Expect::CleanupRset => self.advance_transaction(),
            Expect::Simple => {
                self.state = State::Ready;
                self.events.push_back(ClientEvent::Reply(reply));
            }
            Expect::Quit => {
                self.state = State::Closed;
                self.expected.clear();
                self.events.push_back(ClientEvent::Closed);
            }
        }
    }

    fn after_hello(&mut self) {
        let offered = self.capabilities.as_ref().is_some_and(|c| c.starttls);
        if !self.tls && self.config.starttls != StartTlsPolicy::Never {
            if offered {
                self.send(&Command::StartTls, Expect::StartTls);
                return;
            }
            if self.config.starttls == StartTlsPolicy::Required {
                self.abandon(ClientError::StartTlsUnavailable);
                return;
            }
        }
        self.after_tls_decision();
    }

    fn after_tls_decision(&mut self) {
        if self.config.credentials.is_some() && !self.authenticated {
            if !self.start_auth() {
                self.events
                    .push_back(ClientEvent::Error(ClientError::AuthUnsupported));
                self.opening_done();
            }
            return;
        }
        self.opening_done();
    }

    fn opening_done(&mut self) {
        self.state = State::Ready;
        if std::mem::take(&mut self.explicit_auth) {
            return;
        }
        self.events.push_back(ClientEvent::Ready);
    }

    /// Sends the first AUTH command; false when no mechanism fits.
    fn start_auth(&mut self) -> bool {
        let Some(credentials) = self.config.credentials.clone() else {
            return false;
        };
        let offered = self
            .capabilities
            .as_ref()
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        match &credentials {
            Credentials::Password { username, password } => {
                if offered.contains(&AuthMechanism::Plain) {
                    let response = auth::plain_response(username, password.expose());
                    let command = Command::Auth {
                        mechanism: AuthMechanism::Plain,
                        initial_response: Some(response),
                    };
                    self.send(&command, Expect::AuthPlain);
                } else if offered.contains(&AuthMechanism::Login) {
                    let command = Command::Auth {
                        mechanism: AuthMechanism::Login,
                        initial_response: None,
                    };
                    self.send(&command, Expect::AuthLoginStart);
                } else {
                    return false;
                }
            }
            Credentials::OAuth2 { username, token } => {
                if !offered.contains(&AuthMechanism::XOAuth2) {
                    return false;
                }
                let response = auth::xoauth2_response(username, token.expose());
                let command = Command::Auth {
                    mechanism: AuthMechanism::XOAuth2,
                    initial_response: Some(response),
                };
                self.send(&command, Expect::AuthXOAuth2);
            }
        }
        true
    }

    fn on_transaction_reply(&mut self, expect: Expect, reply: Reply) {
        let Some(t) = self.transaction.as_mut() else {
            self.fail(ClientError::Protocol(format!(
                "reply with no transaction: {reply}"
            )));
            return;
        };
        match expect {
            Expect::Mail => {
                let ok = reply.is_completion();
                t.mail = Some(reply);
                if !ok && !t.unsent.is_empty() {
                    // Not pipelined: nothing more is sent for a refused sender.
                    t.unsent.clear();
                }
            }
            Expect::Rcpt(i) => {
                if let Some(r) = t.recipients.get_mut(i) {
                    r.reply = reply;
                }
                let accepted = t.recipients.iter().any(|r| r.reply.is_completion());
                let all_answered = !matches!(t.unsent.front(), Some((_, Expect::Rcpt(_))));
                if all_answered && !accepted && !t.unsent.is_empty() {
                    // Not pipelined and every recipient refused: do not send DATA.
                    t.unsent.clear();
                }
            }
            Expect::Data => {
                if reply.code() == ReplyCode::START_MAIL_INPUT {
                    if t.recipients.iter().any(|r| r.reply.is_completion()) {
                        t.body_open = true;
                        self.events.push_back(ClientEvent::SendBody);
                    } else {
                        // A server that says 354 with no valid recipient must still get an
                        // end of data (RFC 2920 §3.1); send an empty message.
                        self.output.extend_from_slice(b".\r\n");
                        t.body_open = true;
                        t.body_done = true;
                        t.lmtp_replies_left = 1;
                        self.expected
                            .push_back((Expect::DataEnd, self.now + self.config.timeouts.data_end));
                    }
                } else {
                    t.data = Some(reply);
                }
            }
            Expect::Bdat { last } => {
                if !reply.is_completion() && t.data.is_none() {
                    t.data = Some(reply.clone());
                }
                if last && t.data.is_none() {
                    if self.config.lmtp {
                        // Under LMTP the reply to the last chunk is the first recipient's.
                        t.lmtp_replies_left = t
                            .recipients
                            .iter()
                            .filter(|r| r.reply.is_completion())
                            .count();
                        self.record_lmtp_reply(reply);
                        return;
                    }
                    t.data = Some(reply);
                }
            }
            Expect::DataEnd => {
                if self.config.lmtp {
                    self.record_lmtp_reply(reply);
                    return;
                }
                t.data = Some(reply);
            }
            _ => {}
        }
        self.advance_transaction();
    }

    /// Stores one LMTP per-recipient reply; more may follow for the same message.
    fn record_lmtp_reply(&mut self, reply: Reply) {
        let Some(t) = self.transaction.as_mut() else {
            return;
        };
        if let Some(r) = t
            .recipients
            .iter_mut()
            .find(|r| r.reply.is_completion() && r.delivery.is_none())
        {
            r.delivery = Some(reply.clone());
        }
        t.lmtp_replies_left = t.lmtp_replies_left.saturating_sub(1);
        if t.lmtp_replies_left > 0 {
            self.expected
                .push_front((Expect::DataEnd, self.now + self.config.timeouts.data_end));
            return;
        }
        t.data = Some(reply);
        self.advance_transaction();
    }

    /// Sends the next unsent command, or completes the transaction when nothing more is
    /// awaited.
    fn advance_transaction(&mut self) {
        let Some(t) = self.transaction.as_mut() else {
            return;
        };
        // A chained transaction's replies queue behind the current one's single DataEnd,
        // which has just been taken off: the current one awaits nothing more.
        let waiting = self.chained.is_none()
            && self.expected.iter().any(|(e, _)| {
                matches!(
                    e,
                    Expect::Mail
                        | Expect::Rcpt(_)
                        | Expect::Data
                        | Expect::DataEnd
                        | Expect::Bdat { .. }
                )
            });
        if waiting {
            return;
        }
        if let Some((command, expect)) = t.unsent.pop_front() {
            if command == Command::Data && t.mode == BodyMode::Bdat {
                t.body_open = true;
                self.events.push_back(ClientEvent::SendBody);
                return;
            }
            self.send(&command, expect);
            return;
        }
        if t.body_open && !t.body_done {
            // The body is still being written; its end brings the final reply.
            return;
        }
        let Some(t) = self.transaction.take() else {
            return;
        };
        let mail = t.mail.unwrap_or(t.pending_reply);
        let mail_ok = mail.is_completion();
        let result = TransactionResult {
            mail,
            recipients: t.recipients,
            data: t.data,
        };
        // A server left holding a half-done transaction needs RSET before the next MAIL.
        // After the reply to a DATA dot it holds nothing, whatever that reply said
        // (RFC 5321 §4.1.1.4: the end of data clears the buffers).
        let ended_by_dot = t.mode == BodyMode::Data && t.body_done;
        self.needs_rset =
            mail_ok && !ended_by_dot && !result.data.as_ref().is_some_and(Reply::is_completion);
        self.events
            .push_back(ClientEvent::TransactionComplete(result));
        match self.chained.take() {
            // The chained transaction's replies come next; the session stays Busy.
            Some(next) => self.transaction = Some(next),
            None => self.state = State::Ready,
        }
    }
}

fn reply_error_text(e: &ReplyError) -> String {
    format!("bad reply from server: {e}")
}
