//! One sans-IO client runner under every client driver.
//!
//! A [`ClientSession`] says what to send and what a reply means; the [`ClientRunner`] adds
//! what every connection needs around it to carry out one whole operation (connect and
//! greet, send a message, send a batch, log in, STARTTLS, one command, QUIT): which events
//! end the operation, what a fatal error does (a best-effort QUIT, then close), going on in
//! clear after a refused opportunistic STARTTLS, a connection lost or a message source
//! failing mid-operation, the bookkeeping of a batch with transactions chained behind the
//! final dot, and writing output in large pieces while a body streams.
//!
//! A driver starts an [`Operation`] and asks it [`Operation::next_action`] until the answer
//! is [`Action::Done`]: it writes, reads until a deadline, does a TLS handshake, feeds
//! pieces of the message, or closes the socket, and reports back. Time is the driver's
//! clock on the session's scale (zero when the connection was made).
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::client::{ClientConfig, ClientSession};
//! use smtp_core::client::runner::{Action, ClientRunner, Outcome};
//!
//! let session = ClientSession::new(ClientConfig::new("client.example"), Duration::ZERO).unwrap();
//! let mut runner = ClientRunner::new(1, session, None, Duration::from_secs(300));
//! let mut replies: Vec<&[u8]> = vec![b"220 mx.example\r\n", b"250 mx.example\r\n"];
//! let mut op = runner.connect();
//! let outcome = loop {
//!     match op.next_action(Duration::ZERO) {
//!         Action::Write(_bytes) => op.written(),
//!         Action::Read { .. } => op.received(&replies.remove(0), Duration::ZERO),
//!         Action::Done(outcome) => break outcome,
//!         _ => unreachable!(),
//!     }
//! };
//! assert!(matches!(outcome, Outcome::Ready));
//! ```

use std::iter::Empty;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Credentials;
use crate::client::error::{Error, ErrorKind};
use crate::client::options::TlsSetup;
use crate::client::{ClientError, ClientSession, Envelope, TransactionResult};
use crate::reply::Reply;

mod operation;
#[cfg(test)]
mod tests;

pub use crate::client::batch::BatchMessage;
pub use operation::{Operation, OwnedOperation};

/// Batch content goes into the session this much at a time, so that the session's output
/// (and memory) stays bounded by the flush threshold whatever a message's size.
const BODY_PIECE: usize = 64 * 1024;

/// The size of a driver's read buffer, and of the pieces a streamed message is read in.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// Session output is written once it reaches this size while a message streams, so that
/// memory stays bounded and each write is large.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// The message source of every operation but a batch.
pub type NoMessages = Empty<(&'static Envelope, &'static [u8])>;

/// A client connection's session and what lives as long as it, between operations.
#[derive(Debug)]
pub struct ClientRunner {
    id: u64,
    session: ClientSession,
    tls: Option<TlsSetup>,
    handshake_timeout: Duration,
    /// The driver was told to close or drop the connection.
    gone: bool,
}

/// What the driver does next for an [`Operation`].
#[derive(Debug)]
pub enum Action<'a> {
    /// Write all of these bytes, then call [`Operation::written`] (or
    /// [`Operation::write_failed`]).
    Write(&'a [u8]),
    /// The connection is ending: write these bytes if that is quick (a short, bounded
    /// try), then call [`Operation::written`] whatever happened.
    Goodbye(&'a [u8]),
    /// Read once, waiting until `deadline` (session clock) at the most, and report with
    /// [`Operation::received`], [`Operation::eof`], [`Operation::timed_out`] or
    /// [`Operation::read_failed`]. An interrupted read may simply ask again.
    Read {
        /// When the session's oldest awaited reply is due.
        deadline: Duration,
    },
    /// Do the TLS client handshake on the connection with `setup`, giving up at
    /// `deadline` (session clock), then call [`Operation::tls_established`] or
    /// [`Operation::tls_failed`].
    StartTls {
        /// The configuration and the name the certificate must carry.
        setup: &'a TlsSetup,
        /// When the handshake must be done.
        deadline: Duration,
    },
    /// Read the next piece of the caller's message and hand it over with
    /// [`Operation::body`], or say it ended with [`Operation::body_end`] or failed with
    /// [`Operation::body_failed`].
    Body,
    /// Close the connection gracefully (TLS close_notify, then shutdown).
    Close,
    /// Drop the connection at once: the transport failed, or a message must not look
    /// finished to the server.
    Abort,
    /// The operation is over.
    Done(Outcome),
}

/// How an operation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Connected, greeted, upgraded and authenticated as configured; or upgraded with
    /// STARTTLS and greeted again.
    Ready,
    /// One message's per-recipient result.
    Transaction(TransactionResult),
    /// The reply to NOOP, RSET, VRFY, EXPN or HELP, or the 235 of a login.
    Reply(Reply),
    /// A batch's outcomes, one per message in order, ending early with the error that
    /// ended the connection.
    Batch(Vec<Result<TransactionResult, Error>>),
    /// QUIT is done (or the connection was already over) and the connection closed.
    Closed,
    /// The operation failed.
    Failed(Error),
}

impl Outcome {
    /// The outcome of connect or STARTTLS.
    pub fn ready(self) -> Result<(), Error> {
        match self {
            Outcome::Ready => Ok(()),
            other => Err(other.mismatch()),
        }
    }

    /// The outcome of sending one message.
    pub fn transaction(self) -> Result<TransactionResult, Error> {
        match self {
            Outcome::Transaction(result) => Ok(result),
            other => Err(other.mismatch()),
        }
    }

    /// The outcome of a command or a login.
    pub fn reply(self) -> Result<Reply, Error> {
        match self {
            Outcome::Reply(reply) => Ok(reply),
            other => Err(other.mismatch()),
        }
    }

    /// The outcome of QUIT.
    pub fn closed(self) -> Result<(), Error> {
        match self {
            Outcome::Closed => Ok(()),
            other => Err(other.mismatch()),
        }
    }

    /// The outcomes of a batch; a batch that failed as a whole has one entry, its error.
    pub fn batch(self) -> Vec<Result<TransactionResult, Error>> {
        match self {
            Outcome::Batch(results) => results,
            other => vec![Err(other.mismatch())],
        }
    }

    /// The error of a failed operation, or one saying the outcome was not the one the
    /// operation ends with (which a correct runner never gives).
    fn mismatch(self) -> Error {
        match self {
            Outcome::Failed(error) => error,
            other => Error::new(
                ErrorKind::Protocol,
                format!("the operation ended with an unexpected outcome: {other:?}"),
            ),
        }
    }
}

impl ClientRunner {
    /// A runner for `session`, freshly connected (its clock at zero); `tls` is what a
    /// STARTTLS handshake uses, and `handshake_timeout` bounds that handshake. `id` numbers
    /// the connection in log lines.
    pub fn new(
        id: u64,
        session: ClientSession,
        tls: Option<TlsSetup>,
        handshake_timeout: Duration,
    ) -> ClientRunner {
        ClientRunner {
            id,
            session,
            tls,
            handshake_timeout,
            gone: false,
        }
    }

    /// A runner for a connection that a binding makes itself, from `options` checked as
    /// the drivers' `connect` checks them (`server_name` is the name a certificate must
    /// carry). The binding connects and, under
    /// [`TlsMode::Implicit`](crate::client::options::TlsMode::Implicit), does the TLS
    /// handshake before it starts [`Operation::connect`]; the session's clock starts when
    /// the connection is made.
    pub fn from_options(
        options: crate::client::options::ClientOptions,
        server_name: &str,
    ) -> Result<ClientRunner, Error> {
        let prepared = crate::client::options::prepare(options, server_name)?;
        Ok(ClientRunner::new(
            prepared.id,
            prepared.session,
            prepared.tls,
            prepared.timeouts.command,
        ))
    }

    /// The session, for what it knows (capabilities, TLS, authentication).
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Allows (or forbids again) AUTH on this connection while it is not encrypted; see
    /// [`ClientSession::set_allow_insecure_auth`].
    pub fn set_allow_insecure_auth(&mut self, allow: bool) {
        self.session.set_allow_insecure_auth(allow);
    }

    /// The number of this connection in log lines.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once the connection is over, after an error that ended it or QUIT.
    pub fn is_closed(&self) -> bool {
        self.gone || self.session.is_closed()
    }

    /// Waits for the greeting, greets, upgrades and authenticates; see
    /// [`Operation::connect`].
    pub fn connect(&mut self) -> Operation<&mut ClientRunner, NoMessages> {
        Operation::connect(self)
    }

    /// Sends one message; see [`Operation::send`].
    pub fn send(
        &mut self,
        envelope: &Envelope,
        size: Option<u64>,
        now: Duration,
    ) -> Operation<&mut ClientRunner, NoMessages> {
        Operation::send(self, envelope, size, now)
    }

    /// Sends each message in its own transaction; see [`Operation::send_batch`].
    pub fn send_batch<I>(
        &mut self,
        messages: impl IntoIterator<IntoIter = I>,
    ) -> Operation<&mut ClientRunner, I>
    where
        I: Iterator<Item: BatchMessage>,
    {
        Operation::send_batch(self, messages)
    }

    /// Authenticates now; see [`Operation::login`].
    pub fn login(
        &mut self,
        credentials: Credentials,
        now: Duration,
    ) -> Operation<&mut ClientRunner, NoMessages> {
        Operation::login(self, credentials, now)
    }

    /// Upgrades a plain connection with STARTTLS now; see [`Operation::starttls`].
    pub fn starttls(
        &mut self,
        server_name: &str,
        tls_config: Option<Arc<rustls::ClientConfig>>,
        now: Duration,
    ) -> Operation<&mut ClientRunner, NoMessages> {
        Operation::starttls(self, server_name, tls_config, now)
    }

    /// Sends one command; see [`Operation::command`].
    pub fn command(
        &mut self,
        start: impl FnOnce(&mut ClientSession) -> Result<(), ClientError>,
        now: Duration,
    ) -> Operation<&mut ClientRunner, NoMessages> {
        Operation::command(self, start, now)
    }

    /// Sends QUIT and closes; see [`Operation::quit`].
    pub fn quit(&mut self, now: Duration) -> Operation<&mut ClientRunner, NoMessages> {
        Operation::quit(self, now)
    }

    /// Checks STARTTLS may start, keeps the TLS setup it will use and sends the command.
    fn prepare_starttls(
        &mut self,
        server_name: &str,
        tls_config: Option<Arc<rustls::ClientConfig>>,
        now: Duration,
    ) -> Result<(), Error> {
        self.begin(now)?;
        if self.session.is_tls() {
            return Err(Error::new(
                ErrorKind::NotReady,
                "the connection is already encrypted",
            ));
        }
        let setup = TlsSetup::new(server_name, tls_config)?;
        self.session.starttls()?;
        self.tls = Some(setup);
        Ok(())
    }

    /// Checks that the connection is usable and brings the session's clock up to date
    /// before a command is started.
    fn begin(&mut self, now: Duration) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::NotReady, "the connection is closed"));
        }
        self.sync_clock(now);
        Ok(())
    }

    /// Gives the session the current time without letting it declare a timeout. The
    /// session stamps each new command's deadline with the last time it was given, and
    /// it is only given time when something is read; without this, a command after a
    /// long idle spell (or the final reply after a long upload) would start out overdue.
    fn sync_clock(&mut self, now: Duration) {
        // With a deadline already passed (a reply sitting unread during a long BDAT
        // upload), the clock stays: reading that reply restarts the timers anyway.
        if self.session.next_deadline().is_none_or(|d| d > now) {
            self.session.handle_timeout(now);
        }
    }

    /// Ends the session for good after the transport went away: it refuses further calls
    /// and its events no longer matter.
    fn end_session(&mut self) {
        self.session.receive_eof();
        while self.session.poll_event().is_some() {}
    }
}

/// The outcome sink of every operation but a batch, which has none to give.
pub(crate) fn no_results(_: Result<TransactionResult, Error>) {}

/// A driver was asked for STARTTLS on a connection that is not a plain socket.
pub(crate) fn starttls_without_plain_socket() -> Error {
    Error::new(
        ErrorKind::Protocol,
        "the session asked for STARTTLS on a connection that cannot do it",
    )
}
