//! A blocking SMTP (and LMTP) client: the [`ClientSession`] engine on a `std::net`
//! socket, with STARTTLS and implicit TLS through rustls.
//!
//! This driver owns no protocol logic. It moves bytes between the socket and the session,
//! keeps time, and does the TLS handshakes; every decision (what to send, when to upgrade,
//! which AUTH mechanism, pipelining, BDAT, what a reply means) is the session's.
//!
//! ```no_run
//! use smtp_core::blocking::client::{ClientOptions, SmtpClient, TlsMode};
//! use smtp_core::client::Envelope;
//!
//! let mut options = ClientOptions::new("client.example");
//! options.tls = TlsMode::StartTlsRequired;
//! let mut client = SmtpClient::connect("mx.example.com:25", "mx.example.com", options)?;
//! let envelope = Envelope::new("alice@example.com", &["bob@example.org"])?;
//! let result = client.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello.\r\n")?;
//! for refused in result.refused() {
//!     eprintln!("{:?}: {}", refused.address, refused.reply);
//! }
//! client.quit()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # I/O
//! - `TCP_NODELAY` is set, and everything the session has to say goes out in one write, so a
//!   pipelined batch is one segment and never waits for Nagle and a delayed ACK.
//! - One 64 KiB read buffer; every read goes straight to the session.
//! - Before each read the socket's read timeout is set to what is left until the session's
//!   next deadline; when it expires the session, not the driver, decides whether that is a
//!   timeout. Writes time out after [`ClientTimeouts::data_block`].
//! - Messages are streamed from any [`Read`] 64 KiB at a time and never held whole.
//! - Dropping an [`SmtpClient`] closes the socket without QUIT; call [`SmtpClient::quit`]
//!   to say goodbye.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::auth::Credentials;
use crate::client::{
    ClientConfig, ClientError, ClientEvent, ClientSession, ClientTimeouts, Envelope,
    StartTlsPolicy, TransactionResult,
};
use crate::ehlo::Capabilities;
use crate::reply::Reply;
use crate::tls::{self, TlsClientOptions, TlsError};

/// Size of the read buffer and of the pieces a message is read in.
const BUFFER_SIZE: usize = 64 * 1024;

/// Session output is written once it reaches this size while a message streams, so that
/// memory stays bounded and each write is large.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// The shortest socket timeout set; zero would mean "no timeout" (or an error) to the OS.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Numbers connections in log lines.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// How a connection is encrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plain text throughout; STARTTLS is never sent.
    None,
    /// Upgrade with STARTTLS when the server offers it; go on in clear when it does not (or
    /// refuses). Protects against passive eavesdropping only.
    #[default]
    StartTlsOpportunistic,
    /// Upgrade with STARTTLS or fail before any credentials or mail are sent.
    StartTlsRequired,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

/// How [`SmtpClient::connect`] sets up a connection.
#[derive(Clone)]
pub struct ClientOptions {
    /// The name sent with EHLO, HELO or LHLO: this host's fully qualified domain name, or an
    /// address literal such as `[192.0.2.1]`.
    pub helo_name: String,
    /// How the connection is encrypted. Default [`TlsMode::StartTlsOpportunistic`].
    pub tls: TlsMode,
    /// The rustls configuration for TLS; `None` builds one with
    /// [`tls::client_config`]`(&TlsClientOptions::default())` (the webpki roots, full
    /// verification). Share one configuration between connections: it caches sessions
    /// for resumption. Default `None`.
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Authenticate with these once the greeting (and TLS) is done; a refusal makes
    /// [`SmtpClient::connect`] fail. Default `None`.
    pub credentials: Option<Credentials>,
    /// How long to wait for each TCP connection attempt (one per resolved address), and
    /// for the handshake of implicit TLS. Name resolution itself is not bounded by it.
    /// Default 30 seconds.
    pub connect_timeout: Duration,
    /// How long to wait for each reply; the defaults are RFC 5321's. The STARTTLS
    /// handshake gets [`ClientTimeouts::command`], and each write
    /// [`ClientTimeouts::data_block`].
    pub timeouts: ClientTimeouts,
    /// Speak LMTP (RFC 2033): LHLO, and one reply per recipient after the message.
    /// Default false.
    pub lmtp: bool,
    /// Pipeline commands when the server offers PIPELINING. Default true.
    pub pipelining: bool,
    /// Send messages with BDAT when the server offers CHUNKING (and PIPELINING). Default
    /// true.
    pub chunking: bool,
}

impl ClientOptions {
    /// Options with the defaults documented on each field.
    pub fn new(helo_name: impl Into<String>) -> ClientOptions {
        ClientOptions {
            helo_name: helo_name.into(),
            tls: TlsMode::default(),
            tls_config: None,
            credentials: None,
            connect_timeout: Duration::from_secs(30),
            timeouts: ClientTimeouts::default(),
            lmtp: false,
            pipelining: true,
            chunking: true,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("helo_name", &self.helo_name)
            .field("tls", &self.tls)
            .field("tls_config", &self.tls_config.as_ref().map(|_| "custom"))
            // Not even the user name: logs of options should not say who sends.
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("timeouts", &self.timeouts)
            .field("lmtp", &self.lmtp)
            .field("pipelining", &self.pipelining)
            .field("chunking", &self.chunking)
            .finish()
    }
}

/// What kind of failure an [`Error`] is. Each kind is meant to become one C result code and
/// one Python exception class; the smtplib counterpart is named where there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The network failed: name resolution, connection refused or reset, a write to a
    /// closed socket. The [`std::io::Error`] is the error's source. (`OSError`)
    Io,
    /// TLS failed: the configuration could not be built, the handshake failed, or the
    /// server's certificate was not trusted. (`ssl.SSLError`)
    Tls,
    /// Connecting, the TLS handshake, a write, or a reply took too long. (`TimeoutError`)
    Timeout,
    /// An argument, address, parameter, HELO name or credential would have injected
    /// commands (CR, LF or NUL) or is otherwise unusable; nothing was sent. (`ValueError`)
    InvalidArgument,
    /// The call does not fit the connection's state: it is closed after an earlier
    /// failure, or another exchange is under way. Nothing was sent.
    NotReady,
    /// The server refused the connection in its greeting; see [`Error::reply`].
    /// (`SMTPConnectError`)
    Greeting,
    /// The server refused EHLO and then HELO (or LHLO); see [`Error::reply`].
    /// (`SMTPHeloError`)
    Hello,
    /// STARTTLS is required but the server does not offer it; nothing else was sent.
    /// (`SMTPNotSupportedError`)
    StartTlsUnavailable,
    /// The server refused STARTTLS; see [`Error::reply`]. (`SMTPResponseException`)
    StartTlsRefused,
    /// No authentication mechanism both sides support (the server may offer AUTH only
    /// after TLS). (`SMTPNotSupportedError`)
    AuthUnsupported,
    /// The server refused the credentials; see [`Error::reply`].
    /// (`SMTPAuthenticationError`)
    AuthFailed,
    /// The message is larger than the server's SIZE limit; nothing was sent.
    MessageTooLarge,
    /// An address needs SMTPUTF8, which the server does not offer; nothing was sent.
    /// (`SMTPNotSupportedError`)
    SmtpUtf8Unsupported,
    /// The server closed the session with 421; see [`Error::reply`].
    /// (`SMTPServerDisconnected`)
    ServerClosed,
    /// The connection ended while a reply was expected. (`SMTPServerDisconnected`)
    ConnectionClosed,
    /// The server sent something that is not a valid reply, or a reply nobody asked for.
    /// (`SMTPResponseException`)
    Protocol,
    /// Reading the message from the caller's [`Read`] failed part-way. The connection was
    /// closed, because ending the message any other way would deliver it truncated. The
    /// [`std::io::Error`] is the error's source.
    MessageSource,
}

/// A failed client operation: a [kind](ErrorKind), the server's reply when there was one,
/// and the underlying error as [`std::error::Error::source`].
///
/// Its `Display` form is complete on its own (bindings show only that), so it repeats the
/// source's text.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    client: Option<ClientError>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            client: None,
            source: None,
        }
    }

    /// An I/O error with what was being done; rustls errors inside it become
    /// [`ErrorKind::Tls`] and expired socket timeouts [`ErrorKind::Timeout`].
    pub(crate) fn io(context: &str, error: io::Error) -> Error {
        let kind = match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            if let Some(inner) = error.into_inner() {
                return Error {
                    kind: ErrorKind::Tls,
                    message: format!("{context}: {inner}"),
                    client: None,
                    source: Some(inner),
                };
            }
            // into_inner gave nothing back although get_ref saw something: cannot happen.
            return Error::new(ErrorKind::Tls, context.to_owned());
        }
        Error {
            kind,
            message: format!("{context}: {error}"),
            client: None,
            source: Some(Box::new(error)),
        }
    }

    /// Reading the caller's message failed; the connection was closed so that no truncated
    /// message is delivered (both drivers).
    pub(crate) fn message_source(error: io::Error) -> Error {
        let mut error = Error::io("cannot read the message", error);
        error.kind = ErrorKind::MessageSource;
        error
            .message
            .push_str(" (the connection was closed so that no truncated message is delivered)");
        error
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's reply behind the error, when there is one (a refused greeting, EHLO,
    /// STARTTLS or AUTH, or a 421).
    pub fn reply(&self) -> Option<&Reply> {
        self.client.as_ref().and_then(ClientError::reply)
    }

    /// The engine's error, unchanged, when the failure came from the session (every kind
    /// but `Io`, `Tls`, `MessageSource` and the driver's own timeouts).
    pub fn client_error(&self) -> Option<&ClientError> {
        self.client.as_ref()
    }

    /// True when trying again later may succeed: network failures, timeouts, a closed
    /// connection, and refusals with a 4xx reply.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ErrorKind::Io
            | ErrorKind::Timeout
            | ErrorKind::ConnectionClosed
            | ErrorKind::ServerClosed => true,
            ErrorKind::Greeting
            | ErrorKind::Hello
            | ErrorKind::StartTlsRefused
            | ErrorKind::AuthFailed => self.reply().is_some_and(Reply::is_transient),
            _ => false,
        }
    }

    /// True when something took longer than its timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    // The engine's error is not a source: it is this error, as `client_error` gives it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<ClientError> for Error {
    fn from(error: ClientError) -> Error {
        let kind = match &error {
            ClientError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            ClientError::NotReady => ErrorKind::NotReady,
            ClientError::Greeting(_) => ErrorKind::Greeting,
            ClientError::Hello(_) => ErrorKind::Hello,
            ClientError::StartTlsUnavailable => ErrorKind::StartTlsUnavailable,
            ClientError::StartTlsRefused(_) => ErrorKind::StartTlsRefused,
            ClientError::AuthUnsupported => ErrorKind::AuthUnsupported,
            ClientError::AuthFailed(_) => ErrorKind::AuthFailed,
            ClientError::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
            ClientError::SmtpUtf8Unsupported => ErrorKind::SmtpUtf8Unsupported,
            ClientError::ServerClosed(_) => ErrorKind::ServerClosed,
            ClientError::Protocol(_) => ErrorKind::Protocol,
            ClientError::Timeout => ErrorKind::Timeout,
            ClientError::ConnectionClosed => ErrorKind::ConnectionClosed,
        };
        Error {
            kind,
            message: error.to_string(),
            client: Some(error),
            source: None,
        }
    }
}

impl From<TlsError> for Error {
    fn from(error: TlsError) -> Error {
        Error {
            kind: ErrorKind::Tls,
            message: error.to_string(),
            client: None,
            source: Some(Box::new(error)),
        }
    }
}

/// The socket, before and after TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Closed, or lost in a failed upgrade; nothing more can be sent.
    Gone,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(tls) => Some(tls.get_ref()),
            Stream::Gone => None,
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self.tcp() {
            Some(tcp) => tcp.set_read_timeout(Some(timeout.max(MIN_WAIT))),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes all of `data` and pushes it out: one `write` on a plain socket, as few TLS
    /// records as rustls makes of it.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.write_all(data),
            Stream::Tls(tls) => {
                tls.write_all(data)?;
                tls.flush()
            }
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Closes the connection, with a TLS close_notify when encrypted; errors do not
    /// matter any more.
    fn close(&mut self) {
        match std::mem::replace(self, Stream::Gone) {
            Stream::Plain(tcp) => {
                let _ = tcp.shutdown(Shutdown::Both);
            }
            Stream::Tls(mut tls) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                let _ = tls.sock.shutdown(Shutdown::Both);
            }
            Stream::Gone => {}
        }
    }
}

/// What the STARTTLS or implicit TLS handshake needs.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

/// What both client drivers make of [`ClientOptions`] before any connection is opened:
/// the engine session (made now, it refuses a bad HELO name or credentials before a
/// socket exists) and the TLS setup.
pub(crate) struct Prepared {
    pub(crate) session: ClientSession,
    pub(crate) tls: Option<TlsSetup>,
    pub(crate) tls_mode: TlsMode,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeouts: ClientTimeouts,
}

/// Checks `options` and turns them into the engine's configuration; the session's time
/// starts at zero, which each driver takes as the moment it connects.
pub(crate) fn prepare(options: ClientOptions, server_name: &str) -> Result<Prepared, Error> {
    let ClientOptions {
        helo_name,
        tls: tls_mode,
        tls_config,
        credentials,
        connect_timeout,
        timeouts,
        lmtp,
        pipelining,
        chunking,
    } = options;
    let mut config = ClientConfig::new(helo_name);
    config.lmtp = lmtp;
    config.pipelining = pipelining;
    config.chunking = chunking;
    config.credentials = credentials;
    config.timeouts = timeouts;
    config.tls_active = tls_mode == TlsMode::Implicit;
    config.starttls = match tls_mode {
        TlsMode::StartTlsOpportunistic => StartTlsPolicy::Opportunistic,
        TlsMode::StartTlsRequired => StartTlsPolicy::Required,
        TlsMode::None | TlsMode::Implicit => StartTlsPolicy::Never,
    };
    if connect_timeout.is_zero() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "the connect timeout must not be zero",
        ));
    }
    let session = ClientSession::new(config, Duration::ZERO)?;
    let tls = match tls_mode {
        TlsMode::None => None,
        _ => {
            let server_name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{server_name:?} is not a valid TLS server name"),
                )
            })?;
            let config = match tls_config {
                Some(config) => config,
                None => tls::client_config(&TlsClientOptions::default())?,
            };
            Some(TlsSetup {
                config,
                server_name,
            })
        }
    };

    Ok(Prepared {
        session,
        tls,
        tls_mode,
        connect_timeout,
        timeouts,
    })
}

/// The bookkeeping of a batch of messages sent over one connection, shared by both
/// client drivers' `send_batch`: which messages are started (each one's content is the
/// next to be asked for with [`ClientEvent::SendBody`], since replies come in order), and
/// the outcomes in message order.
pub(crate) struct Batch<'m, I: Iterator<Item = (&'m Envelope, &'m [u8])>> {
    queue: std::iter::Peekable<I>,
    /// The contents of the started transactions, oldest first.
    in_flight: std::collections::VecDeque<&'m [u8]>,
    results: Vec<Result<TransactionResult, Error>>,
}

impl<'m, I: Iterator<Item = (&'m Envelope, &'m [u8])>> Batch<'m, I> {
    pub(crate) fn new(messages: impl IntoIterator<IntoIter = I>) -> Self {
        Batch {
            queue: messages.into_iter().peekable(),
            in_flight: std::collections::VecDeque::new(),
            results: Vec::new(),
        }
    }

    /// Starts as many queued messages as the session takes now: one when it is ready,
    /// one chained behind a finished message, none otherwise. A message the session
    /// refuses for itself (too large, an address it cannot send) gets its error in place
    /// once every message before it has its outcome, and the next one is tried.
    pub(crate) fn start_next(&mut self, session: &mut ClientSession) {
        while let Some(&(envelope, content)) = self.queue.peek() {
            if !self.in_flight.is_empty() && !session.can_send_mail() {
                // Busy with an earlier message: this one starts once that is done.
                return;
            }
            match session.send_mail(envelope, Some(crate::data::wire_size(content))) {
                Ok(()) => {
                    self.queue.next();
                    self.in_flight.push_back(content);
                    return;
                }
                Err(error) if self.in_flight.is_empty() => {
                    self.queue.next();
                    let fatal = error.is_fatal() || session.is_closed();
                    self.results.push(Err(error.into()));
                    if fatal {
                        self.stop();
                    }
                }
                // Refused for itself, behind messages without an outcome yet: keep the
                // order, report it after them.
                Err(_) => return,
            }
        }
    }

    /// The content the session asks for now.
    pub(crate) fn content(&self) -> Result<&'m [u8], Error> {
        self.in_flight.front().copied().ok_or_else(|| {
            Error::from(ClientError::Protocol(
                "the session asked for content with no message started".into(),
            ))
        })
    }

    /// The oldest started message is done.
    pub(crate) fn complete(&mut self, result: TransactionResult) {
        self.in_flight.pop_front();
        self.results.push(Ok(result));
    }

    /// The connection failed: the oldest started message gets the error (its outcome is
    /// unknown), and nothing after it is sent.
    pub(crate) fn fail(&mut self, error: Error) {
        self.results.push(Err(error));
        self.stop();
    }

    fn stop(&mut self) {
        self.in_flight.clear();
        while self.queue.next().is_some() {}
    }

    /// Nothing started and nothing left to start.
    pub(crate) fn is_done(&mut self) -> bool {
        self.in_flight.is_empty() && self.queue.peek().is_none()
    }

    /// True when no message is under way (so the next must be started before waiting).
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub(crate) fn into_results(self) -> Vec<Result<TransactionResult, Error>> {
        self.results
    }
}

/// What a batch waits for next.
pub(crate) enum BatchStep {
    Content,
    Complete(TransactionResult),
}

/// A blocking SMTP client connection. See the [module docs](self).
pub struct SmtpClient {
    id: u64,
    peer: SocketAddr,
    stream: Stream,
    session: ClientSession,
    /// The session's clock: `base.elapsed()` is the `now` it is given.
    base: Instant,
    buffer: Box<[u8]>,
    tls: Option<TlsSetup>,
    handshake_timeout: Duration,
}

impl fmt::Debug for SmtpClient {
    // Hand-written so that neither the session (which holds the credentials) nor the TLS
    // state is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpClient")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("tls", &self.is_tls())
            .field("authenticated", &self.session.is_authenticated())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl SmtpClient {
    /// Connects (with the connect timeout, trying each resolved address in turn), sets up
    /// TLS as `options.tls` says, greets, upgrades with STARTTLS and authenticates as
    /// configured, and returns once the session is ready for mail. All sequencing is the
    /// session's; this only reacts to its events.
    ///
    /// `server_name` is the name the server's certificate must carry (usually the host
    /// part of `addr`); it is not used without TLS.
    ///
    /// The HELO name and credentials are checked before anything is connected. When the
    /// configured credentials are refused (or no mechanism fits), the connection is closed
    /// with QUIT and the error returned: the caller asked for an authenticated session.
    /// A refused STARTTLS under [`TlsMode::StartTlsOpportunistic`] is logged and the
    /// session goes on in clear.
    pub fn connect(
        addr: impl ToSocketAddrs,
        server_name: &str,
        options: ClientOptions,
    ) -> Result<SmtpClient, Error> {
        let Prepared {
            session,
            tls,
            tls_mode,
            connect_timeout,
            timeouts,
        } = prepare(options, server_name)?;

        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let tcp = connect_tcp(addr, connect_timeout, id)?;
        let peer = tcp
            .peer_addr()
            .map_err(|e| Error::io("cannot set up the connection", e))?;
        tcp.set_nodelay(true)
            .and_then(|()| tcp.set_write_timeout(Some(timeouts.data_block.max(MIN_WAIT))))
            .map_err(|e| Error::io("cannot set up the connection", e))?;
        let base = Instant::now();
        log::debug!("smtpx client #{id}: connected to {peer}");

        let stream = match (&tls, tls_mode) {
            (Some(setup), TlsMode::Implicit) => {
                let tls = tls_handshake(tcp, setup, base, connect_timeout)?;
                log::debug!("smtpx client #{id}: implicit TLS established");
                Stream::Tls(Box::new(tls))
            }
            _ => Stream::Plain(tcp),
        };
        let mut client = SmtpClient {
            id,
            peer,
            stream,
            session,
            base,
            buffer: vec![0; BUFFER_SIZE].into_boxed_slice(),
            tls,
            handshake_timeout: timeouts.command,
        };
        client.run(|client, event| match event {
            ClientEvent::Ready => Ok(Some(())),
            ClientEvent::Authenticated(_) => {
                log::debug!("smtpx client #{}: authenticated", client.id);
                Ok(None)
            }
            // Only under the opportunistic policy does the session go on after this.
            ClientEvent::Error(ClientError::StartTlsRefused(reply)) => {
                log::warn!(
                    "smtpx client #{}: STARTTLS refused ({}), going on in clear",
                    client.id,
                    reply.code()
                );
                Ok(None)
            }
            ClientEvent::Error(error) => {
                client.say_goodbye();
                Err(error.into())
            }
            other => client.unexpected(other),
        })?;
        Ok(client)
    }

    /// What the server announced in its last EHLO reply (`None` after a HELO fallback).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.session.capabilities()
    }

    /// True when the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// True once the connection is over, after an error that ended it (a timeout, a lost
    /// connection, a 421, a failed message source). Every further call fails with
    /// [`ErrorKind::NotReady`].
    pub fn is_closed(&self) -> bool {
        self.session.is_closed() || matches!(self.stream, Stream::Gone)
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message and returns the outcome for each recipient. A refused recipient
    /// is not an error: see [`TransactionResult::refused`]. The message is streamed from
    /// `message` 64 KiB at a time; bare LF and CR become CRLF, and dot-stuffing is done
    /// here. `size`, when known, is announced with SIZE (and a message over the server's
    /// limit is refused before anything is sent).
    ///
    /// If reading `message` fails part-way, the connection is closed (a message cannot be
    /// ended without being delivered) and the error is [`ErrorKind::MessageSource`].
    pub fn send(
        &mut self,
        envelope: &Envelope,
        mut message: impl Read,
        size: Option<u64>,
    ) -> Result<TransactionResult, Error> {
        self.begin()?;
        self.session.send_mail(envelope, size)?;
        self.run(|client, event| match event {
            ClientEvent::SendBody => {
                client.write_body(&mut message)?;
                Ok(None)
            }
            ClientEvent::TransactionComplete(result) => Ok(Some(result)),
            other => client.unexpected(other),
        })
    }

    /// Sends several messages over this connection, one transaction each, and returns an
    /// outcome per message, in order. With a server that offers PIPELINING but not
    /// CHUNKING, each next message's MAIL, RCPT and DATA leave in the same write as the
    /// previous message's final dot (RFC 2920 §3.1), so a message costs one round trip
    /// instead of two; with CHUNKING a message is one round trip already.
    ///
    /// A refused message does not stop the batch (its [`TransactionResult`] says so), nor
    /// does an error that leaves the connection usable, such as a message over the
    /// server's size limit: that message's entry is the error. An error that ends the
    /// connection ends the batch: the list then stops with it, shorter than `messages`.
    /// That last entry belongs to the oldest message without an outcome, which may or may
    /// not have been delivered; the messages after it were not.
    ///
    /// ```no_run
    /// # use smtp_core::blocking::client::{ClientOptions, SmtpClient};
    /// # use smtp_core::client::Envelope;
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut client = SmtpClient::connect("mx.example:25", "mx.example", ClientOptions::new("me.example"))?;
    /// let envelope = Envelope::new("news@example.org", &["reader@example.net"])?;
    /// let issues: Vec<Vec<u8>> = (1..=3).map(|n| format!("Subject: issue {n}\r\n\r\n...\r\n").into_bytes()).collect();
    /// let outcomes = client.send_batch(issues.iter().map(|m| (&envelope, m.as_slice())));
    /// for outcome in outcomes {
    ///     println!("{}", if outcome?.is_success() { "sent" } else { "refused" });
    /// }
    /// # Ok(()) }
    /// ```
    pub fn send_batch<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
    ) -> Vec<Result<TransactionResult, Error>> {
        let mut batch = Batch::new(messages);
        while !batch.is_done() {
            if batch.is_idle() {
                if let Err(error) = self.begin() {
                    batch.fail(error);
                    break;
                }
                batch.start_next(&mut self.session);
                continue;
            }
            let step = self.run(|client, event| match event {
                ClientEvent::SendBody => Ok(Some(BatchStep::Content)),
                ClientEvent::TransactionComplete(result) => Ok(Some(BatchStep::Complete(result))),
                other => client.unexpected(other),
            });
            match step {
                Ok(BatchStep::Content) => {
                    let written = batch
                        .content()
                        .and_then(|mut content| self.write_body(&mut content));
                    if let Err(error) = written {
                        batch.fail(error);
                        break;
                    }
                    // Chained behind the dot: `run` writes both at once.
                    batch.start_next(&mut self.session);
                }
                Ok(BatchStep::Complete(result)) => batch.complete(result),
                Err(error) => {
                    batch.fail(error);
                    break;
                }
            }
        }
        batch.into_results()
    }

    /// Sends one message held in memory; see [`send`](Self::send).
    pub fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionResult, Error> {
        self.send(envelope, message, Some(crate::data::wire_size(message)))
    }

    /// Authenticates now (PLAIN, LOGIN or XOAUTH2, whichever the server offers and fits
    /// the credentials) and returns the server's 235. A refusal is
    /// [`ErrorKind::AuthFailed`] and leaves the connection usable.
    pub fn login(&mut self, credentials: Credentials) -> Result<Reply, Error> {
        self.begin()?;
        self.session.login(credentials)?;
        self.run(|client, event| match event {
            ClientEvent::Authenticated(reply) => Ok(Some(reply)),
            other => client.unexpected(other),
        })
    }

    /// Upgrades a plain connection with STARTTLS now (for a connection opened with
    /// [`TlsMode::None`], as smtplib's `starttls()` does) and returns once the session has
    /// greeted again over TLS: [`capabilities`](Self::capabilities) then holds the new
    /// EHLO reply. `server_name` is the name the certificate must carry; `tls_config`
    /// `None` means [`tls::client_config`]`(&TlsClientOptions::default())`.
    ///
    /// A refusal is [`ErrorKind::StartTlsRefused`] and leaves the connection usable in
    /// clear; a failed handshake closes it. On an encrypted connection the call fails with
    /// [`ErrorKind::NotReady`] and sends nothing.
    pub fn starttls(
        &mut self,
        server_name: &str,
        tls_config: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<(), Error> {
        self.begin()?;
        if self.is_tls() {
            return Err(Error::new(
                ErrorKind::NotReady,
                "the connection is already encrypted",
            ));
        }
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{server_name:?} is not a valid TLS server name"),
            )
        })?;
        let config = match tls_config {
            Some(config) => config,
            None => tls::client_config(&TlsClientOptions::default())?,
        };
        self.session.starttls()?;
        self.tls = Some(TlsSetup {
            config,
            server_name,
        });
        self.run(|client, event| match event {
            ClientEvent::Ready => Ok(Some(())),
            other => client.unexpected(other),
        })
    }

    /// Sends NOOP and returns the reply, whatever its code.
    pub fn noop(&mut self) -> Result<Reply, Error> {
        self.command(ClientSession::noop)
    }

    /// Sends RSET and returns the reply, whatever its code.
    pub fn rset(&mut self) -> Result<Reply, Error> {
        self.command(ClientSession::rset)
    }

    /// Sends VRFY and returns the reply, whatever its code.
    pub fn vrfy(&mut self, argument: &str) -> Result<Reply, Error> {
        self.command(|session| session.vrfy(argument))
    }

    /// Sends EXPN and returns the reply, whatever its code.
    pub fn expn(&mut self, argument: &str) -> Result<Reply, Error> {
        self.command(|session| session.expn(argument))
    }

    /// Sends HELP and returns the reply, whatever its code.
    pub fn help(&mut self, topic: Option<&str>) -> Result<Reply, Error> {
        self.command(|session| session.help(topic))
    }

    /// Sends QUIT, waits for the reply and closes the connection. A server that hangs up
    /// without replying is not an error; a connection already closed is closed quietly.
    pub fn quit(mut self) -> Result<(), Error> {
        if self.is_closed() {
            self.stream.close();
            return Ok(());
        }
        self.sync_clock();
        self.session.quit()?;
        let result = self.run(|client, event| match event {
            ClientEvent::Closed => Ok(Some(())),
            other => client.unexpected(other),
        });
        self.stream.close();
        log::debug!("smtpx client #{}: closed", self.id);
        match result {
            Err(e) if e.kind == ErrorKind::ConnectionClosed => Ok(()),
            other => other,
        }
    }

    fn command(
        &mut self,
        start: impl FnOnce(&mut ClientSession) -> Result<(), ClientError>,
    ) -> Result<Reply, Error> {
        self.begin()?;
        start(&mut self.session)?;
        self.run(|client, event| match event {
            ClientEvent::Reply(reply) => Ok(Some(reply)),
            other => client.unexpected(other),
        })
    }

    /// Checks that the connection is usable and brings the session's clock up to date
    /// before a command is started.
    fn begin(&mut self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::NotReady, "the connection is closed"));
        }
        self.sync_clock();
        Ok(())
    }

    /// Gives the session the current time without letting it declare a timeout. The
    /// session stamps each new command's deadline with the last time it was given, and
    /// it is only given time when something is read; without this, a command after a
    /// long idle spell (or the final reply after a long upload) would start out overdue.
    fn sync_clock(&mut self) {
        let now = self.base.elapsed();
        // With a deadline already passed (a reply sitting unread during a long BDAT
        // upload), the clock stays: reading that reply restarts the timers anyway.
        if self.session.next_deadline().is_none_or(|d| d > now) {
            self.session.handle_timeout(now);
        }
    }

    /// Runs the session until `on_event` returns a value: hands it every event but
    /// STARTTLS (done here) and fatal errors (returned here), writes what the session has
    /// to say, and reads.
    fn run<T>(
        &mut self,
        mut on_event: impl FnMut(&mut SmtpClient, ClientEvent) -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        loop {
            while let Some(event) = self.session.poll_event() {
                match event {
                    ClientEvent::StartTls => self.start_tls()?,
                    // A closed session after an error means the error ended it, whatever
                    // the error's own is_fatal says (a STARTTLS refusal under "required").
                    ClientEvent::Error(error) if error.is_fatal() || self.session.is_closed() => {
                        log::debug!("smtpx client #{}: {error}", self.id);
                        self.say_goodbye();
                        return Err(error.into());
                    }
                    event => {
                        if let Some(done) = on_event(self, event)? {
                            return Ok(done);
                        }
                    }
                }
            }
            if self.session.is_closed() {
                self.stream.close();
                return Err(ClientError::ConnectionClosed.into());
            }
            self.flush()?;
            self.read_once()?;
        }
    }

    /// The default reaction to an event an operation does not wait for: errors end the
    /// operation, anything else is logged and passed over.
    fn unexpected<T>(&mut self, event: ClientEvent) -> Result<Option<T>, Error> {
        match event {
            ClientEvent::Error(error) => Err(error.into()),
            ClientEvent::Closed => Ok(None),
            other => {
                log::debug!("smtpx client #{}: ignoring event {other:?}", self.id);
                Ok(None)
            }
        }
    }

    /// Writes everything the session has to say, in one write.
    fn flush(&mut self) -> Result<(), Error> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        match self.stream.write_all(self.session.output()) {
            Ok(()) => {
                self.session.clear_output();
                Ok(())
            }
            Err(e) => Err(self.connection_lost("cannot send to the server", e)),
        }
    }

    /// Waits for bytes until the session's next deadline and hands them to the session.
    fn read_once(&mut self) -> Result<(), Error> {
        let now = self.base.elapsed();
        let Some(deadline) = self.session.next_deadline() else {
            // The session awaits nothing, yet the operation is not done: cannot happen
            // with a correct engine, and reading would block for ever.
            return Err(Error::new(
                ErrorKind::NotReady,
                "the session is not waiting for any reply",
            ));
        };
        if let Err(e) = self.stream.set_read_timeout(deadline.saturating_sub(now)) {
            return Err(self.connection_lost("cannot read from the server", e));
        }
        match self.stream.read(&mut self.buffer) {
            Ok(0) => self.session.receive_eof(),
            Ok(n) => self.session.receive(&self.buffer[..n], self.base.elapsed()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.session.handle_timeout(self.base.elapsed());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // TCP closed without a TLS close_notify. Replies delimit themselves, so there
            // is no truncation to detect: to the session this is an end of stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.stream.is_tls() => {
                self.session.receive_eof();
            }
            Err(e) => return Err(self.connection_lost("cannot read from the server", e)),
        }
        Ok(())
    }

    /// The transport failed: tells the session the connection is gone (so that it is
    /// closed and refuses further calls), drops its events, and closes the socket.
    fn connection_lost(&mut self, context: &str, error: io::Error) -> Error {
        let error = Error::io(context, error);
        log::debug!("smtpx client #{}: {error}", self.id);
        self.session.receive_eof();
        while self.session.poll_event().is_some() {}
        self.stream = Stream::Gone;
        error
    }

    /// After an error that ends the session: sends what it still has to say (a QUIT when
    /// it gives up during the opening), best effort, and closes the connection.
    fn say_goodbye(&mut self) {
        if !self.session.output().is_empty() {
            let _ = self.stream.write_all(self.session.output());
            self.session.clear_output();
        }
        if !self.session.is_closed() {
            // A non-fatal refusal that ends connect(): the session is ready, so QUIT is
            // the session's to write.
            if self.session.quit().is_ok() {
                let _ = self.stream.write_all(self.session.output());
                self.session.clear_output();
            }
            self.session.receive_eof();
            while self.session.poll_event().is_some() {}
        }
        self.stream.close();
    }

    /// The server said 220 to STARTTLS: the session has already dropped anything that
    /// came after it (nothing read is kept here), so the handshake starts on a clean
    /// socket.
    fn start_tls(&mut self) -> Result<(), Error> {
        self.flush()?;
        let setup = self.tls.clone();
        let stream = std::mem::replace(&mut self.stream, Stream::Gone);
        let result = match (setup, stream) {
            (Some(setup), Stream::Plain(tcp)) => {
                let deadline = self.base.elapsed() + self.handshake_timeout;
                tls_handshake(tcp, &setup, self.base, deadline)
            }
            (_, stream) => {
                self.stream = stream;
                Err(Error::new(
                    ErrorKind::Protocol,
                    "the session asked for STARTTLS on a connection that cannot do it",
                ))
            }
        };
        match result {
            Ok(tls) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.session.tls_established(self.base.elapsed());
                log::debug!("smtpx client #{}: STARTTLS established", self.id);
                Ok(())
            }
            Err(error) => {
                log::debug!("smtpx client #{}: {error}", self.id);
                // The session waits for a handshake that will not come: end it.
                self.session.receive_eof();
                while self.session.poll_event().is_some() {}
                self.stream.close();
                Err(error)
            }
        }
    }

    /// Streams the message into the session, writing its output in large pieces, then
    /// ends the message.
    /// Streams the message into the session and ends it. What is left in the session's
    /// output goes out with whatever follows (a chained transaction) when `run` flushes.
    fn write_body(&mut self, message: &mut dyn Read) -> Result<(), Error> {
        loop {
            let n = match message.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // However the message were ended now, the server would deliver it
                    // truncated; only dropping the connection abandons it.
                    log::debug!("smtpx client #{}: reading the message failed", self.id);
                    self.session.receive_eof();
                    while self.session.poll_event().is_some() {}
                    self.stream = Stream::Gone;
                    return Err(Error::message_source(e));
                }
            };
            self.sync_clock();
            self.session.send_body(&self.buffer[..n])?;
            if self.session.output().len() >= FLUSH_THRESHOLD {
                self.flush()?;
            }
        }
        self.sync_clock();
        self.session.finish_body()?;
        Ok(())
    }
}

/// Connects to the first address that answers within `timeout`.
fn connect_tcp(addr: impl ToSocketAddrs, timeout: Duration, id: u64) -> Result<TcpStream, Error> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| Error::io("cannot resolve the server's address", e))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => {
                log::debug!("smtpx client #{id}: cannot connect to {addr}: {e}");
                last = Some((addr, e));
            }
        }
    }
    match last {
        Some((addr, e)) => Err(Error::io(&format!("cannot connect to {addr}"), e)),
        None => Err(Error::new(
            ErrorKind::Io,
            "the server's address resolved to nothing",
        )),
    }
}

/// Does a TLS client handshake on `tcp`, giving up at `deadline` (on the `base` clock).
fn tls_handshake(
    mut tcp: TcpStream,
    setup: &TlsSetup,
    base: Instant,
    deadline: Duration,
) -> Result<StreamOwned<ClientConnection, TcpStream>, Error> {
    let mut conn =
        ClientConnection::new(setup.config.clone(), setup.server_name.clone()).map_err(|e| {
            Error {
                kind: ErrorKind::Tls,
                message: format!("cannot start TLS: {e}"),
                client: None,
                source: Some(Box::new(e)),
            }
        })?;
    while conn.is_handshaking() {
        let now = base.elapsed();
        if now >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                "the TLS handshake timed out",
            ));
        }
        tcp.set_read_timeout(Some((deadline - now).max(MIN_WAIT)))
            .map_err(|e| Error::io("TLS handshake failed", e))?;
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Error::new(
                    ErrorKind::Tls,
                    "TLS handshake failed: the server closed the connection",
                ));
            }
            Err(e) => return Err(Error::io("TLS handshake failed", e)),
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}
