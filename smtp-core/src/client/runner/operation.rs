//! One operation on a [`ClientRunner`]: the state machine that turns session events into
//! the driver's next [`Action`] until the operation is [`Action::Done`].

use std::borrow::BorrowMut;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Action, BODY_PIECE, ClientRunner, FLUSH_THRESHOLD, Outcome};
use crate::auth::Credentials;
use crate::client::batch::{Batch, BatchMessage};
use crate::client::error::{Error, ErrorKind};
use crate::client::{ClientError, ClientEvent, ClientSession, Envelope, TransactionResult};

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

enum Step {
    /// Hand events to the operation, write, read.
    Run,
    /// The server said 220 to STARTTLS: write what is pending, then the handshake.
    Handshake,
    /// The caller's message is wanted.
    Body,
    /// The oldest started batch message's content goes into the session from `offset` on.
    BatchBody { offset: usize },
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
///
/// `R` is how the operation holds its runner: `&mut ClientRunner` for a driver that runs
/// the operation within one call ([`ClientRunner::send`] and the like), or the
/// `ClientRunner` itself for a binding that keeps an operation in progress between calls
/// from its host language and takes the runner back with [`Operation::into_runner`]
/// ([`OwnedOperation`]). `I` is the batch's message source ([`NoMessages`](super::NoMessages) for every other
/// operation).
pub struct Operation<R: BorrowMut<ClientRunner>, I: Iterator<Item: BatchMessage>> {
    runner: R,
    kind: Kind,
    batch: Option<Batch<I>>,
    step: Step,
}

/// An operation that owns its runner and its batch's messages: what a binding holds while
/// its host language awaits.
pub type OwnedOperation = Operation<ClientRunner, std::vec::IntoIter<(Envelope, Vec<u8>)>>;

impl<R: BorrowMut<ClientRunner>, I: Iterator<Item: BatchMessage>> fmt::Debug for Operation<R, I> {
    // Not the messages: they may be large, and they are the caller's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("connection", &self.runner.borrow().id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<R: BorrowMut<ClientRunner>, I: Iterator<Item: BatchMessage>> Operation<R, I> {
    fn new(runner: R, kind: Kind, batch: Option<Batch<I>>) -> Self {
        Operation {
            runner,
            kind,
            batch,
            step: Step::Run,
        }
    }

    /// Waits for the greeting, greets, upgrades and authenticates as the session is
    /// configured; ends [`Outcome::Ready`]. A refused opportunistic STARTTLS is logged
    /// and the session goes on in clear; any other error ends the connection with QUIT.
    pub fn connect(runner: R) -> Self {
        Operation::new(runner, Kind::Connect, None)
    }

    /// Sends one message, asking for its content with [`Action::Body`]; ends
    /// [`Outcome::Transaction`]. `size`, when known, is announced with SIZE.
    pub fn send(mut runner: R, envelope: &Envelope, size: Option<u64>, now: Duration) -> Self {
        let r = runner.borrow_mut();
        let started = r
            .begin(now)
            .and_then(|()| Ok(r.session.send_mail(envelope, size)?));
        Operation::new(runner, Kind::Send, None).started(started)
    }

    /// Sends each message in its own transaction, chaining the next behind the previous
    /// one's final dot when the server pipelines; ends [`Outcome::Batch`]. Content is
    /// taken from the messages as they are, never copied into a buffer.
    pub fn send_batch(runner: R, messages: impl IntoIterator<IntoIter = I>) -> Self {
        Operation::new(runner, Kind::Batch, Some(Batch::new(messages)))
    }

    /// Authenticates now; ends [`Outcome::Reply`] with the server's 235.
    pub fn login(mut runner: R, credentials: Credentials, now: Duration) -> Self {
        let r = runner.borrow_mut();
        let started = r
            .begin(now)
            .and_then(|()| Ok(r.session.login(credentials)?));
        Operation::new(runner, Kind::Login, None).started(started)
    }

    /// Upgrades a plain connection with STARTTLS now, checking the certificate for
    /// `server_name` (`tls_config` `None`: [`crate::tls::client_config`] with the defaults); ends
    /// [`Outcome::Ready`] once the session has greeted again over TLS.
    pub fn starttls(
        mut runner: R,
        server_name: &str,
        tls_config: Option<Arc<rustls::ClientConfig>>,
        now: Duration,
    ) -> Self {
        let started = runner
            .borrow_mut()
            .prepare_starttls(server_name, tls_config, now);
        Operation::new(runner, Kind::StartTls, None).started(started)
    }

    /// Sends one command (NOOP, RSET, VRFY, EXPN or HELP, as `start` writes it); ends
    /// [`Outcome::Reply`] with its reply, whatever the code.
    pub fn command(
        mut runner: R,
        start: impl FnOnce(&mut ClientSession) -> Result<(), ClientError>,
        now: Duration,
    ) -> Self {
        let r = runner.borrow_mut();
        let started = r.begin(now).and_then(|()| Ok(start(&mut r.session)?));
        Operation::new(runner, Kind::Command, None).started(started)
    }

    /// Sends QUIT, waits for the reply and closes; ends [`Outcome::Closed`]. A server
    /// that hangs up without replying is not an error; a connection already over is
    /// only closed.
    pub fn quit(mut runner: R, now: Duration) -> Self {
        let r = runner.borrow_mut();
        if r.is_closed() {
            let mut op = Operation::new(runner, Kind::Quit, None);
            op.finish(Some(Ending::Close), Outcome::Closed);
            return op;
        }
        r.sync_clock(now);
        let started = r.session.quit().map_err(Error::from);
        Operation::new(runner, Kind::Quit, None).started(started)
    }

    /// The runner, for what its session knows.
    pub fn runner(&self) -> &ClientRunner {
        self.runner.borrow()
    }

    /// Gives the runner back (for the next operation). Taken before [`Action::Done`], the
    /// operation is abandoned where it stands, as dropping it would.
    pub fn into_runner(self) -> R {
        self.runner
    }
    /// The next outcome of a batch known since the last call (`None` for any other
    /// operation, or when none is new). Outcomes come in message order, so the n-th one
    /// taken is the n-th message's; what is not taken before [`Action::Done`] is in its
    /// [`Outcome::Batch`], after the taken ones. A driver that streams outcomes to its
    /// caller takes them before each wait for the server ([`Action::Read`]), so that each
    /// arrives as soon as its final reply is read.
    pub fn take_result(&mut self) -> Option<Result<TransactionResult, Error>> {
        self.batch.as_mut().and_then(Batch::take_result)
    }

    /// Starts no further message of a batch (nothing for any other operation): the
    /// messages not started yet are dropped without an outcome, the ones under way
    /// finish as usual (their replies are read, so the connection stays usable) and end
    /// the operation. For a driver whose caller stopped taking outcomes midway.
    pub fn stop_batch(&mut self) {
        if let Some(batch) = self.batch.as_mut() {
            batch.start_none();
        }
    }

    /// Hands every batch outcome known since the last call to `on_result`, oldest first;
    /// see [`take_result`](Operation::take_result).
    pub fn report_results(&mut self, on_result: &mut impl FnMut(Result<TransactionResult, Error>)) {
        while let Some(result) = self.take_result() {
            on_result(result);
        }
    }

    /// What the driver does next; `now` is the session clock.
    pub fn next_action(&mut self, now: Duration) -> Action<'_> {
        match self.decide(now) {
            Next::Write => Action::Write(self.runner.borrow_mut().session.output()),
            Next::Goodbye => Action::Goodbye(self.runner.borrow_mut().session.output()),
            Next::Read(deadline) => Action::Read { deadline },
            Next::StartTls(deadline) => match &self.runner.borrow().tls {
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
        self.runner.borrow_mut().session.clear_output();
    }

    /// Writing failed: the connection is lost.
    pub fn write_failed(&mut self, error: io::Error) {
        self.lose(Ending::Abort, Error::io("cannot send to the server", error));
    }

    /// Bytes came from the server.
    pub fn received(&mut self, bytes: &[u8], now: Duration) {
        self.runner.borrow_mut().session.receive(bytes, now);
    }

    /// The server closed the connection.
    pub fn eof(&mut self) {
        self.runner.borrow_mut().session.receive_eof();
    }

    /// The read's deadline passed without bytes; the session decides whether that is a
    /// timeout.
    pub fn timed_out(&mut self, now: Duration) {
        self.runner.borrow_mut().session.handle_timeout(now);
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
            self.runner.borrow_mut().session.tls_established(now);
            log::debug!(
                "smtpx client #{}: STARTTLS established",
                self.runner.borrow().id
            );
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
            self.runner.borrow_mut().sync_clock(now);
            if let Err(error) = self.runner.borrow_mut().session.send_body(piece) {
                self.fail(None, error.into());
            }
        }
    }

    /// The caller's message ended.
    pub fn body_end(&mut self, now: Duration) {
        if matches!(self.step, Step::Body) {
            self.runner.borrow_mut().sync_clock(now);
            match self.runner.borrow_mut().session.finish_body() {
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
            self.runner.borrow().id
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
            let pending = self.runner.borrow_mut().session.output().len();
            match &mut self.step {
                Step::Finish { ending, outcome } => {
                    if let Some(ending) = ending.take() {
                        self.runner.borrow_mut().gone = true;
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
                    if !self.runner.borrow_mut().session.is_closed() {
                        self.runner.borrow_mut().end_session();
                    }
                    self.fail(Some(Ending::Close), error);
                }
                Step::Handshake => {
                    if pending > 0 {
                        return Next::Write;
                    }
                    if self.runner.borrow().tls.is_none() {
                        self.lose(Ending::Close, no_tls_setup());
                        continue;
                    }
                    return Next::StartTls(now + self.runner.borrow_mut().handshake_timeout);
                }
                Step::Body => {
                    return if pending >= FLUSH_THRESHOLD {
                        Next::Write
                    } else {
                        Next::Body
                    };
                }
                Step::BatchBody { offset } => {
                    if pending >= FLUSH_THRESHOLD {
                        return Next::Write;
                    }
                    let start = *offset;
                    match self.feed_batch(start, now) {
                        Ok(Some(end)) => self.step = Step::BatchBody { offset: end },
                        Ok(None) => self.step = Step::Run,
                        Err(error) => self.fail(None, error),
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

    /// Feeds the oldest started batch message's content from `start` on, a piece at a
    /// time; `Some(end)` where the next piece starts, `None` once the message is finished
    /// (and the next one chained behind its dot).
    fn feed_batch(&mut self, start: usize, now: Duration) -> Result<Option<usize>, Error> {
        let runner = self.runner.borrow_mut();
        runner.sync_clock(now);
        let content = match self.batch.as_ref() {
            Some(batch) => batch.content()?,
            None => return Err(no_batch()),
        };
        if start < content.len() {
            let end = content.len().min(start + BODY_PIECE);
            runner.session.send_body(&content[start..end])?;
            return Ok(Some(end));
        }
        runner.session.finish_body()?;
        // Chained behind the dot: both leave in the next write.
        if let Some(batch) = self.batch.as_mut() {
            batch.start_next(&mut runner.session);
        }
        Ok(None)
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
                match self.runner.borrow_mut().begin(now) {
                    Ok(()) => batch.start_next(&mut self.runner.borrow_mut().session),
                    Err(error) => self.fail(None, error),
                }
                return None;
            }
        }
        while let Some(event) = self.runner.borrow_mut().session.poll_event() {
            match event {
                ClientEvent::StartTls => {
                    self.step = Step::Handshake;
                    return None;
                }
                // A closed session after an error means the error ended it, whatever the
                // error's own is_fatal says (a STARTTLS refusal under "required").
                ClientEvent::Error(error)
                    if error.is_fatal() || self.runner.borrow_mut().session.is_closed() =>
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
        if self.runner.borrow_mut().session.is_closed() {
            self.fail(Some(Ending::Close), ClientError::ConnectionClosed.into());
            return None;
        }
        if !self.runner.borrow_mut().session.output().is_empty() {
            return Some(Next::Write);
        }
        match self.runner.borrow_mut().session.next_deadline() {
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
        let id = self.runner.borrow().id;
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
            (Kind::Batch, ClientEvent::SendBody) => {
                match self.batch.as_ref().map(|batch| batch.content().map(|_| ())) {
                    Some(Ok(())) => self.step = Step::BatchBody { offset: 0 },
                    Some(Err(error)) => self.fail(None, error),
                    None => self.fail(None, no_batch()),
                }
            }
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
        log::debug!("smtpx client #{}: {error}", self.runner.borrow().id);
        if !self.runner.borrow_mut().session.is_closed() {
            // A non-fatal refusal that ends connect(): the session is ready, so QUIT is
            // the session's to write. Failing to queue it changes nothing.
            let _ = self.runner.borrow_mut().session.quit();
        }
        self.step = Step::Goodbye(Some(error));
    }

    /// The transport failed (or must be dropped): the session ends, then the connection.
    fn lose(&mut self, ending: Ending, error: Error) {
        log::debug!("smtpx client #{}: {error}", self.runner.borrow().id);
        self.runner.borrow_mut().end_session();
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
        // An error that ended the connection says where (see client::Phase).
        let outcome = outcome.in_phase(self.runner.borrow().session.phase());
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
