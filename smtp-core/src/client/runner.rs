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

use std::fmt;
use std::io;
use std::iter::Empty;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::auth::Credentials;
use crate::client::batch::Batch;
use crate::client::error::{Error, ErrorKind};
use crate::client::options::TlsSetup;
use crate::client::{ClientError, ClientEvent, ClientSession, Envelope, TransactionResult};
use crate::reply::Reply;
use crate::tls::{self, TlsClientOptions};

#[cfg(test)]
mod tests;

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

/// Which operation is under way; it says which events end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connect,
    Send,
    Batch,
    Login,
    StartTls,
    Command,
    Quit,
}

/// How the connection ends with an operation.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Close,
    Abort,
}

enum Step<'m> {
    /// Hand events to the operation, write, read.
    Run,
    /// The server said 220 to STARTTLS: write what is pending, then the handshake.
    Handshake,
    /// The caller's message is wanted.
    Body,
    /// A batch message's content goes into the session from `offset` on.
    BatchBody { content: &'m [u8], offset: usize },
    /// A fatal error: a best-effort QUIT, then close and fail with it.
    Goodbye(Option<Error>),
    /// Close the connection as said, then report the outcome.
    Finish {
        ending: Option<Ending>,
        outcome: Option<Outcome>,
    },
}

/// What [`Operation::next_action`] decided, before its bytes are borrowed.
enum Next {
    Write,
    Goodbye,
    Read(Duration),
    StartTls(Duration),
    Body,
    End(Ending),
    Done(Outcome),
}

/// One operation on a [`ClientRunner`], from start to [`Action::Done`]. Dropping it part-way
/// leaves the session where it was (as abandoning a driver's call does).
pub struct Operation<'r, 'm, I: Iterator<Item = (&'m Envelope, &'m [u8])>> {
    runner: &'r mut ClientRunner,
    kind: Kind,
    batch: Option<Batch<'m, I>>,
    step: Step<'m>,
}

impl<'m, I: Iterator<Item = (&'m Envelope, &'m [u8])>> fmt::Debug for Operation<'_, 'm, I> {
    // Not the messages: they may be large, and they are the caller's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("connection", &self.runner.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
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

    /// Waits for the greeting, greets, upgrades and authenticates as the session is
    /// configured; ends [`Outcome::Ready`]. A refused opportunistic STARTTLS is logged
    /// and the session goes on in clear; any other error ends the connection with QUIT.
    pub fn connect(&mut self) -> Operation<'_, 'static, NoMessages> {
        self.operation(Kind::Connect, None)
    }

    /// Sends one message, asking for its content with [`Action::Body`]; ends
    /// [`Outcome::Transaction`]. `size`, when known, is announced with SIZE.
    pub fn send(
        &mut self,
        envelope: &Envelope,
        size: Option<u64>,
        now: Duration,
    ) -> Operation<'_, 'static, NoMessages> {
        let started = self
            .begin(now)
            .and_then(|()| Ok(self.session.send_mail(envelope, size)?));
        self.operation(Kind::Send, None).started(started)
    }

    /// Sends each message in its own transaction, chaining the next behind the previous
    /// one's final dot when the server pipelines; ends [`Outcome::Batch`]. Content is
    /// taken from the slices as they are, never copied into a buffer.
    pub fn send_batch<'m, I>(
        &mut self,
        messages: impl IntoIterator<IntoIter = I>,
    ) -> Operation<'_, 'm, I>
    where
        I: Iterator<Item = (&'m Envelope, &'m [u8])>,
    {
        self.operation(Kind::Batch, Some(Batch::new(messages)))
    }

    /// Authenticates now; ends [`Outcome::Reply`] with the server's 235.
    pub fn login(
        &mut self,
        credentials: Credentials,
        now: Duration,
    ) -> Operation<'_, 'static, NoMessages> {
        let started = self
            .begin(now)
            .and_then(|()| Ok(self.session.login(credentials)?));
        self.operation(Kind::Login, None).started(started)
    }

    /// Upgrades a plain connection with STARTTLS now, checking the certificate for
    /// `server_name` (`tls_config` `None`: [`tls::client_config`] with the defaults); ends
    /// [`Outcome::Ready`] once the session has greeted again over TLS.
    pub fn starttls(
        &mut self,
        server_name: &str,
        tls_config: Option<Arc<rustls::ClientConfig>>,
        now: Duration,
    ) -> Operation<'_, 'static, NoMessages> {
        let started = self.begin(now).and_then(|()| {
            if self.session.is_tls() {
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
            Ok(())
        });
        self.operation(Kind::StartTls, None).started(started)
    }

    /// Sends one command (NOOP, RSET, VRFY, EXPN or HELP, as `start` writes it); ends
    /// [`Outcome::Reply`] with its reply, whatever the code.
    pub fn command(
        &mut self,
        start: impl FnOnce(&mut ClientSession) -> Result<(), ClientError>,
        now: Duration,
    ) -> Operation<'_, 'static, NoMessages> {
        let started = self.begin(now).and_then(|()| Ok(start(&mut self.session)?));
        self.operation(Kind::Command, None).started(started)
    }

    /// Sends QUIT, waits for the reply and closes; ends [`Outcome::Closed`]. A server
    /// that hangs up without replying is not an error; a connection already over is
    /// only closed.
    pub fn quit(&mut self, now: Duration) -> Operation<'_, 'static, NoMessages> {
        if self.is_closed() {
            let mut op = self.operation(Kind::Quit, None);
            op.finish(Some(Ending::Close), Outcome::Closed);
            return op;
        }
        self.sync_clock(now);
        let started = self.session.quit().map_err(Error::from);
        self.operation(Kind::Quit, None).started(started)
    }

    fn operation<'m, I>(&mut self, kind: Kind, batch: Option<Batch<'m, I>>) -> Operation<'_, 'm, I>
    where
        I: Iterator<Item = (&'m Envelope, &'m [u8])>,
    {
        Operation {
            runner: self,
            kind,
            batch,
            step: Step::Run,
        }
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

impl<'m, I: Iterator<Item = (&'m Envelope, &'m [u8])>> Operation<'_, 'm, I> {
    /// What the driver does next; `now` is the session clock.
    pub fn next_action(&mut self, now: Duration) -> Action<'_> {
        match self.decide(now) {
            Next::Write => Action::Write(self.runner.session.output()),
            Next::Goodbye => Action::Goodbye(self.runner.session.output()),
            Next::Read(deadline) => Action::Read { deadline },
            Next::StartTls(deadline) => match &self.runner.tls {
                Some(setup) => Action::StartTls { setup, deadline },
                // decide() saw a setup; without one there is nothing to do but fail.
                None => Action::Done(Outcome::Failed(no_tls_setup())),
            },
            Next::Body => Action::Body,
            Next::End(Ending::Close) => Action::Close,
            Next::End(Ending::Abort) => Action::Abort,
            Next::Done(outcome) => Action::Done(outcome),
        }
    }

    /// The bytes of the last [`Action::Write`] or [`Action::Goodbye`] are written.
    pub fn written(&mut self) {
        self.runner.session.clear_output();
    }

    /// Writing failed: the connection is lost.
    pub fn write_failed(&mut self, error: io::Error) {
        self.lose(Ending::Abort, Error::io("cannot send to the server", error));
    }

    /// Bytes came from the server.
    pub fn received(&mut self, bytes: &[u8], now: Duration) {
        self.runner.session.receive(bytes, now);
    }

    /// The server closed the connection.
    pub fn eof(&mut self) {
        self.runner.session.receive_eof();
    }

    /// The read's deadline passed without bytes; the session decides whether that is a
    /// timeout.
    pub fn timed_out(&mut self, now: Duration) {
        self.runner.session.handle_timeout(now);
    }

    /// Reading failed: the connection is lost.
    pub fn read_failed(&mut self, error: io::Error) {
        self.lose(
            Ending::Abort,
            Error::io("cannot read from the server", error),
        );
    }

    /// The STARTTLS handshake is done; the session greets again.
    pub fn tls_established(&mut self, now: Duration) {
        if matches!(self.step, Step::Handshake) {
            self.runner.session.tls_established(now);
            log::debug!("smtpx client #{}: STARTTLS established", self.runner.id);
            self.step = Step::Run;
        }
    }

    /// The STARTTLS handshake failed: the session, waiting for it, ends with `error`.
    pub fn tls_failed(&mut self, error: Error) {
        self.lose(Ending::Close, error);
    }

    /// The next piece of the caller's message.
    pub fn body(&mut self, piece: &[u8], now: Duration) {
        if matches!(self.step, Step::Body) {
            self.runner.sync_clock(now);
            if let Err(error) = self.runner.session.send_body(piece) {
                self.fail(None, error.into());
            }
        }
    }

    /// The caller's message ended.
    pub fn body_end(&mut self, now: Duration) {
        if matches!(self.step, Step::Body) {
            self.runner.sync_clock(now);
            match self.runner.session.finish_body() {
                Ok(()) => self.step = Step::Run,
                Err(error) => self.fail(None, error.into()),
            }
        }
    }

    /// Reading the caller's message failed. However the message were ended now, the
    /// server would deliver it truncated: only dropping the connection abandons it.
    pub fn body_failed(&mut self, error: io::Error) {
        log::debug!(
            "smtpx client #{}: reading the message failed",
            self.runner.id
        );
        self.lose(Ending::Abort, Error::message_source(error));
    }

    fn started(mut self, started: Result<(), Error>) -> Self {
        if let Err(error) = started {
            self.finish(None, Outcome::Failed(error));
        }
        self
    }

    fn decide(&mut self, now: Duration) -> Next {
        loop {
            let pending = self.runner.session.output().len();
            match &mut self.step {
                Step::Finish { ending, outcome } => {
                    if let Some(ending) = ending.take() {
                        self.runner.gone = true;
                        return Next::End(ending);
                    }
                    return Next::Done(outcome.take().unwrap_or_else(|| {
                        Outcome::Failed(Error::new(ErrorKind::NotReady, "the operation is over"))
                    }));
                }
                Step::Goodbye(error) => {
                    if pending > 0 {
                        return Next::Goodbye;
                    }
                    let error = error.take().unwrap_or_else(|| {
                        Error::new(ErrorKind::ConnectionClosed, "the connection is closed")
                    });
                    if !self.runner.session.is_closed() {
                        self.runner.end_session();
                    }
                    self.fail(Some(Ending::Close), error);
                }
                Step::Handshake => {
                    if pending > 0 {
                        return Next::Write;
                    }
                    if self.runner.tls.is_none() {
                        self.lose(Ending::Close, no_tls_setup());
                        continue;
                    }
                    return Next::StartTls(now + self.runner.handshake_timeout);
                }
                Step::Body => {
                    return if pending >= FLUSH_THRESHOLD {
                        Next::Write
                    } else {
                        Next::Body
                    };
                }
                Step::BatchBody { content, offset } => {
                    if pending >= FLUSH_THRESHOLD {
                        return Next::Write;
                    }
                    let (content, start) = (*content, *offset);
                    self.runner.sync_clock(now);
                    let fed = if start < content.len() {
                        let end = content.len().min(start + BODY_PIECE);
                        *offset = end;
                        self.runner.session.send_body(&content[start..end])
                    } else {
                        self.runner.session.finish_body().map(|()| {
                            // Chained behind the dot: both leave in the next write.
                            if let Some(batch) = self.batch.as_mut() {
                                batch.start_next(&mut self.runner.session);
                            }
                            self.step = Step::Run;
                        })
                    };
                    if let Err(error) = fed {
                        self.fail(None, error.into());
                    }
                }
                Step::Run => {
                    if let Some(next) = self.run(now) {
                        return next;
                    }
                }
            }
        }
    }

    /// One turn of the event loop: hands events to the operation until one changes its
    /// step, then writes what the session has to say, then reads. `None` when the step
    /// changed.
    fn run(&mut self, now: Duration) -> Option<Next> {
        if let Some(batch) = self.batch.as_mut() {
            if batch.is_done() {
                let results = self.batch.take().map(Batch::into_results);
                self.finish(None, Outcome::Batch(results.unwrap_or_default()));
                return None;
            }
            if batch.is_idle() {
                match self.runner.begin(now) {
                    Ok(()) => batch.start_next(&mut self.runner.session),
                    Err(error) => self.fail(None, error),
                }
                return None;
            }
        }
        while let Some(event) = self.runner.session.poll_event() {
            match event {
                ClientEvent::StartTls => {
                    self.step = Step::Handshake;
                    return None;
                }
                // A closed session after an error means the error ended it, whatever the
                // error's own is_fatal says (a STARTTLS refusal under "required").
                ClientEvent::Error(error)
                    if error.is_fatal() || self.runner.session.is_closed() =>
                {
                    self.goodbye(error.into());
                    return None;
                }
                event => {
                    if self.on_event(event) {
                        return None;
                    }
                }
            }
        }
        if self.runner.session.is_closed() {
            self.fail(Some(Ending::Close), ClientError::ConnectionClosed.into());
            return None;
        }
        if !self.runner.session.output().is_empty() {
            return Some(Next::Write);
        }
        match self.runner.session.next_deadline() {
            Some(deadline) => Some(Next::Read(deadline)),
            None => {
                // The session awaits nothing, yet the operation is not done: cannot happen
                // with a correct engine, and reading would wait for ever.
                self.fail(
                    None,
                    Error::new(
                        ErrorKind::NotReady,
                        "the session is not waiting for any reply",
                    ),
                );
                None
            }
        }
    }

    /// Hands an event to the operation; true when the operation's step changed.
    fn on_event(&mut self, event: ClientEvent) -> bool {
        let id = self.runner.id;
        match (self.kind, event) {
            (Kind::Connect | Kind::StartTls, ClientEvent::Ready) => {
                self.finish(None, Outcome::Ready);
            }
            (Kind::Connect, ClientEvent::Authenticated(_)) => {
                log::debug!("smtpx client #{id}: authenticated");
                return false;
            }
            // Only under the opportunistic policy does the session go on after this.
            (Kind::Connect, ClientEvent::Error(ClientError::StartTlsRefused(reply))) => {
                log::warn!(
                    "smtpx client #{id}: STARTTLS refused ({}), going on in clear",
                    reply.code()
                );
                return false;
            }
            // The caller asked for a greeted (and authenticated) session: anything else
            // ends the connection politely.
            (Kind::Connect, ClientEvent::Error(error)) => self.goodbye(error.into()),
            (Kind::Send, ClientEvent::SendBody) => self.step = Step::Body,
            (Kind::Send, ClientEvent::TransactionComplete(result)) => {
                self.finish(None, Outcome::Transaction(result));
            }
            (Kind::Batch, ClientEvent::SendBody) => match self.batch.as_ref().map(Batch::content) {
                Some(Ok(content)) => self.step = Step::BatchBody { content, offset: 0 },
                Some(Err(error)) => self.fail(None, error),
                None => self.fail(None, no_batch()),
            },
            (Kind::Batch, ClientEvent::TransactionComplete(result)) => {
                if let Some(batch) = self.batch.as_mut() {
                    batch.complete(result);
                }
            }
            (Kind::Login, ClientEvent::Authenticated(reply))
            | (Kind::Command, ClientEvent::Reply(reply)) => {
                self.finish(None, Outcome::Reply(reply));
            }
            (Kind::Quit, ClientEvent::Closed) => self.finish(None, Outcome::Closed),
            (_, ClientEvent::Error(error)) => self.fail(None, error.into()),
            (_, ClientEvent::Closed) => return false,
            (_, other) => {
                log::debug!("smtpx client #{id}: ignoring event {other:?}");
                return false;
            }
        }
        true
    }

    /// After an error that ends the session: a QUIT behind whatever is pending (when the
    /// session can still say it), written best effort, then close.
    fn goodbye(&mut self, error: Error) {
        log::debug!("smtpx client #{}: {error}", self.runner.id);
        if !self.runner.session.is_closed() {
            // A non-fatal refusal that ends connect(): the session is ready, so QUIT is
            // the session's to write. Failing to queue it changes nothing.
            let _ = self.runner.session.quit();
        }
        self.step = Step::Goodbye(Some(error));
    }

    /// The transport failed (or must be dropped): the session ends, then the connection.
    fn lose(&mut self, ending: Ending, error: Error) {
        log::debug!("smtpx client #{}: {error}", self.runner.id);
        self.runner.end_session();
        self.fail(Some(ending), error);
    }

    /// The operation ends with `error`: a batch records it against its oldest unfinished
    /// message and reports its outcomes; a QUIT the server answered by hanging up is done.
    fn fail(&mut self, ending: Option<Ending>, error: Error) {
        let outcome = match (self.kind, self.batch.take()) {
            (Kind::Batch, Some(mut batch)) => {
                batch.fail(error);
                Outcome::Batch(batch.into_results())
            }
            (Kind::Quit, _) if error.kind() == ErrorKind::ConnectionClosed => Outcome::Closed,
            _ => Outcome::Failed(error),
        };
        self.finish(ending, outcome);
    }

    fn finish(&mut self, ending: Option<Ending>, outcome: Outcome) {
        // QUIT always ends with the connection closed, whatever the server did.
        let ending = match self.kind {
            Kind::Quit => Some(ending.unwrap_or(Ending::Close)),
            _ => ending,
        };
        self.step = Step::Finish {
            ending,
            outcome: Some(outcome),
        };
    }
}

fn no_tls_setup() -> Error {
    Error::new(
        ErrorKind::Protocol,
        "the session asked for STARTTLS on a connection that cannot do it",
    )
}

fn no_batch() -> Error {
    ClientError::Protocol("the session asked for content with no message started".into()).into()
}
