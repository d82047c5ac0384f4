//! `smtpx._native.Pool` (the blocking connection pool, shared between threads) and
//! `smtpx._native.Relay` / `RelaySession` (the relay handler's hooks), thin over
//! `smtp_core::blocking::pool::SmtpPool` and `smtp_core::server::relay::RelayHandler`:
//! the pool's policy and the relay's logic are the core's. Every network wait runs with
//! the interpreter detached. `smtpx/pool.py` and `smtpx/relay.py` give them their faces.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use smtp_core::blocking::client::{ClientOptions, TlsMode};
use smtp_core::blocking::pool::SmtpPool;
use smtp_core::client::pool::PoolConfig;
use smtp_core::command::{MailParameters, RcptParameters};
use smtp_core::handler::{Answer, ConnectionInfo, Handler, Hook, SessionHandler, Transaction};
use smtp_core::reply::Reply;
use smtp_core::server::relay::{RelayHandler, RelaySession as CoreRelaySession};
use smtp_core::server::{AbortReason, Decision, HelloVerb};

use crate::client::{ResultTuple, client_options, envelope, result_tuple, tls_config};
use crate::errors::client_error;

/// How much content goes to the relay's next hop per piece.
const PIECE: usize = 64 * 1024;

/// The client options of every pooled connection, from the keywords both classes take:
/// those of `_native.Client` (no trace; AUTH needs TLS).
#[allow(clippy::too_many_arguments)]
fn connection_options(
    helo_name: String,
    tls: &str,
    insecure: bool,
    ca_pem: Option<Vec<u8>>,
    timeout: Option<f64>,
    lmtp: bool,
    username: Option<String>,
    password: Option<String>,
) -> PyResult<ClientOptions> {
    let mut options = client_options(
        helo_name,
        tls,
        timeout,
        (username, password),
        false,
        lmtp,
        None,
    )?;
    if options.tls != TlsMode::None {
        options.tls_config = tls_config(insecure, ca_pem)?;
    }
    Ok(options)
}

/// The pool's behaviour from keywords (seconds).
fn pool_config(
    max_size: usize,
    idle_timeout: f64,
    max_messages: u64,
    check_after: f64,
    checkout_timeout: f64,
) -> PyResult<PoolConfig> {
    let seconds = |what: &str, s: f64| {
        if s.is_finite() && s >= 0.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(PyValueError::new_err(format!(
                "{what} must be a number of seconds, not {s}"
            )))
        }
    };
    if max_size == 0 {
        return Err(PyValueError::new_err("max_size must be at least 1"));
    }
    Ok(PoolConfig::new(max_size)
        .idle_timeout(seconds("idle_timeout", idle_timeout)?)
        .max_messages(max_messages)
        .check_after(seconds("check_after", check_after)?)
        .checkout_timeout(seconds("checkout_timeout", checkout_timeout)?))
}

/// A bounded pool of connections to one server, shared between threads.
#[pyclass(frozen, module = "smtpx._native")]
#[derive(Debug)]
pub struct Pool {
    pool: SmtpPool,
}

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(signature = (host, port, *, helo_name, tls = "none", server_name = None,
        insecure = false, ca_pem = None, timeout = None, lmtp = false, username = None,
        password = None, max_size = 8, idle_timeout = 60.0, max_messages = 0,
        check_after = 1.0, checkout_timeout = 30.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: String,
        port: u16,
        helo_name: String,
        tls: &str,
        server_name: Option<String>,
        insecure: bool,
        ca_pem: Option<Vec<u8>>,
        timeout: Option<f64>,
        lmtp: bool,
        username: Option<String>,
        password: Option<String>,
        max_size: usize,
        idle_timeout: f64,
        max_messages: u64,
        check_after: f64,
        checkout_timeout: f64,
    ) -> PyResult<Pool> {
        let options = connection_options(
            helo_name, tls, insecure, ca_pem, timeout, lmtp, username, password,
        )?;
        let config = pool_config(
            max_size,
            idle_timeout,
            max_messages,
            check_after,
            checkout_timeout,
        )?;
        let server_name = server_name.unwrap_or_else(|| host.clone());
        let pool = py
            .detach(|| SmtpPool::new((host.as_str(), port), &server_name, options, config))
            .map_err(|e| client_error(e, true))?;
        Ok(Pool { pool })
    }

    /// Sends one message (bytes) over a pooled connection; the result tuple as
    /// `Client.send` gives it.
    #[pyo3(signature = (from_addr, to_addrs, message, mail_options = Vec::new(), rcpt_options = Vec::new()))]
    fn send(
        &self,
        py: Python<'_>,
        from_addr: &str,
        to_addrs: Vec<String>,
        message: Vec<u8>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
    ) -> PyResult<ResultTuple> {
        let envelope = envelope(from_addr, &to_addrs, &mail_options, &rcpt_options)?;
        py.detach(|| self.pool.send_bytes(&envelope, &message))
            .map(|r| result_tuple(&r))
            .map_err(|e| client_error(e, false))
    }

    /// `(open, idle)` connections now.
    fn status(&self) -> (usize, usize) {
        self.pool.status()
    }

    /// Closes the connections idle for too long.
    fn reap(&self, py: Python<'_>) {
        py.detach(|| self.pool.reap());
    }

    /// Closes the pool: idle connections now, the others when given back.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.pool.close());
    }
}

/// A relay to one next hop: `session()` makes the per-connection part.
#[pyclass(frozen, module = "smtpx._native")]
#[derive(Debug)]
pub struct Relay {
    relay: RelayHandler,
}

#[pymethods]
impl Relay {
    #[new]
    #[pyo3(signature = (host, port, *, helo_name, tls = "none", server_name = None,
        insecure = false, ca_pem = None, timeout = None, lmtp = false, username = None,
        password = None, max_size = 8))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: String,
        port: u16,
        helo_name: String,
        tls: &str,
        server_name: Option<String>,
        insecure: bool,
        ca_pem: Option<Vec<u8>>,
        timeout: Option<f64>,
        lmtp: bool,
        username: Option<String>,
        password: Option<String>,
        max_size: usize,
    ) -> PyResult<Relay> {
        let options = connection_options(
            helo_name, tls, insecure, ca_pem, timeout, lmtp, username, password,
        )?;
        let config = pool_config(max_size, 60.0, 0, 1.0, 30.0)?;
        let server_name = server_name.unwrap_or_else(|| host.clone());
        let relay = py
            .detach(|| RelayHandler::new((host.as_str(), port), &server_name, options, config))
            .map_err(|e| client_error(e, true))?;
        Ok(Relay { relay })
    }

    /// The per-connection part, for one client connection.
    fn session(&self) -> PyResult<RelaySession> {
        let info = ConnectionInfo {
            id: 0,
            peer: None,
            local: None,
            hostname: String::new(),
            tls: false,
            proxy: None,
            tls_state: Default::default(),
        };
        let session = self
            .relay
            .connect(&info)
            .map_err(|reply| PyValueError::new_err(status_line(&reply)))?;
        Ok(RelaySession {
            inner: Mutex::new(Some(session)),
            recipients: Mutex::new(Vec::new()),
        })
    }

    /// `(open, idle)` next-hop connections now.
    fn status(&self) -> (usize, usize) {
        self.relay.pool().status()
    }

    /// Closes the next-hop connections.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.relay.pool().close());
    }
}

/// The relay's hooks for one client connection; each answers with status lines (the next
/// hop's replies).
#[pyclass(frozen, module = "smtpx._native")]
#[derive(Debug)]
pub struct RelaySession {
    inner: Mutex<Option<CoreRelaySession>>,
    /// The recipients the next hop accepted, for the transaction handed to data hooks.
    recipients: Mutex<Vec<smtp_core::ForwardPath>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A reply as an aiosmtpd status line: the code, the enhanced code and the text on one
/// line (a multi-line reply's lines joined by spaces).
fn status_line(reply: &Reply) -> String {
    let mut line = reply.code().get().to_string();
    if let Some(enhanced) = reply.enhanced() {
        line.push(' ');
        line.push_str(&enhanced.to_string());
    }
    let text = reply.lines().join(" ");
    if !text.is_empty() {
        line.push(' ');
        line.push_str(&text);
    }
    line
}

/// A decision as status lines: one, or (LMTP's end of message) one per recipient; None
/// for "go on" (DATA's 354).
fn decision_lines(decision: Decision) -> Option<Vec<String>> {
    match decision {
        Decision::Accept => None,
        Decision::Reply(reply) => Some(vec![status_line(&reply)]),
        Decision::PerRecipient(replies) => Some(replies.iter().map(status_line).collect()),
    }
}

impl RelaySession {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut CoreRelaySession) -> T + Send,
    ) -> PyResult<T> {
        py.detach(|| lock(&self.inner).as_mut().map(f))
            .ok_or_else(|| PyValueError::new_err("the relay session is closed"))
    }
}

#[pymethods]
impl RelaySession {
    /// MAIL FROM (options as aiosmtpd gives them, e.g. `["SIZE=100"]`): the next hop's
    /// status line.
    #[pyo3(signature = (address, options = Vec::new()))]
    fn mail(&self, py: Python<'_>, address: &str, options: Vec<String>) -> PyResult<String> {
        // The parameters are read by the engine's parser, through a whole envelope (whose
        // placeholder recipient is not used).
        let parsed = envelope(address, &["postmaster@localhost".to_owned()], &options, &[])?;
        lock(&self.recipients).clear();
        let decision = self.with(py, |s| s.mail(&parsed.from, &parsed.params))?;
        Ok(decision_lines(decision).map_or_else(|| "250 OK".to_owned(), |l| l.join(" ")))
    }

    /// RCPT TO: the next hop's status line.
    #[pyo3(signature = (address, options = Vec::new()))]
    fn rcpt(&self, py: Python<'_>, address: &str, options: Vec<String>) -> PyResult<String> {
        let parsed = envelope("", &[address.to_owned()], &[], &options)?;
        let recipient = parsed
            .recipients
            .into_iter()
            .next()
            .ok_or_else(|| PyValueError::new_err("no recipient"))?;
        let decision = self.with(py, |s| s.rcpt(&recipient.address, &recipient.params))?;
        let accepted = match &decision {
            Decision::Reply(r) => r.is_completion(),
            _ => true,
        };
        if accepted {
            lock(&self.recipients).push(recipient.address);
        }
        Ok(decision_lines(decision).map_or_else(|| "250 OK".to_owned(), |l| l.join(" ")))
    }

    /// The whole message (the content as the server received it): DATA on the next hop,
    /// the content in pieces, and its final reply: one status line, or under `lmtp` one
    /// per accepted recipient.
    #[pyo3(signature = (content, lmtp = false))]
    fn data(&self, py: Python<'_>, content: Vec<u8>, lmtp: bool) -> PyResult<Vec<String>> {
        let transaction = Transaction {
            hello: lmtp.then(|| (HelloVerb::Lhlo, String::new())),
            recipients: lock(&self.recipients).clone(),
            ..Default::default()
        };
        let lines = self.with(py, |s| {
            if let Some(refusal) = decision_lines(s.data_start(&transaction)) {
                return refusal;
            }
            for piece in content.chunks(PIECE) {
                // A failure is remembered by the session and becomes the final reply.
                let _ = s.data_chunk(piece);
            }
            decision_lines(s.data_end(&transaction)).unwrap_or_else(|| vec!["250 OK".into()])
        })?;
        lock(&self.recipients).clear();
        Ok(lines)
    }

    /// RSET, or the end of a transaction: the next hop's transaction is abandoned.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        lock(&self.recipients).clear();
        self.with(py, |s| s.reset())
    }

    /// The client connection is over: the next-hop connection goes back to the pool.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(mut session) = lock(&self.inner).take() {
                session.close();
            }
        });
    }
}

/// The core's pool policy (`smtp_core::client::pool::PoolCore`) over Python connection
/// objects, for a pool whose I/O is Python's (the asyncio pool): it says whether a sender
/// reuses an idle connection (and checks it first), opens one, or waits, and which
/// connections to retire. Times are the caller's clock in seconds (the event loop's).
#[pyclass(module = "smtpx._native")]
#[derive(Debug)]
pub struct PoolCore {
    core: smtp_core::client::pool::PoolCore<Py<PyAny>>,
    /// The instant the caller's clock reads 0 at; times before it count as it.
    epoch: std::time::Instant,
}

/// A connection lent out by [`PoolCore`], with its count of messages; `conn` is None
/// until one is put in (after a "connect" checkout).
#[pyclass(module = "smtpx._native")]
#[derive(Debug)]
pub struct PoolLease {
    lease: Option<smtp_core::client::pool::Lease<Py<PyAny>>>,
}

impl PoolCore {
    fn instant(&self, now: f64) -> std::time::Instant {
        if now.is_finite() && now > 0.0 {
            self.epoch + Duration::from_secs_f64(now)
        } else {
            self.epoch
        }
    }
}

impl PoolLease {
    fn take(&mut self) -> PyResult<smtp_core::client::pool::Lease<Py<PyAny>>> {
        self.lease
            .take()
            .ok_or_else(|| PyValueError::new_err("this lease was already checked in or discarded"))
    }
}

#[pymethods]
impl PoolLease {
    /// The connection, or None.
    #[getter]
    fn conn(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.lease
            .as_ref()
            .and_then(|l| l.conn_ref())
            .map(|c| c.clone_ref(py))
    }

    /// Puts the freshly opened connection in.
    fn put(&mut self, conn: Py<PyAny>) -> PyResult<()> {
        let lease = self.take()?;
        self.lease = Some(lease.with(conn));
        Ok(())
    }

    /// Messages the connection carried before this lease.
    #[getter]
    fn messages(&self) -> u64 {
        self.lease.as_ref().map_or(0, |l| l.messages())
    }
}

#[pymethods]
impl PoolCore {
    #[new]
    #[pyo3(signature = (*, max_size = 8, idle_timeout = 60.0, max_messages = 0,
        check_after = 1.0, checkout_timeout = 30.0, now = 0.0))]
    fn new(
        max_size: usize,
        idle_timeout: f64,
        max_messages: u64,
        check_after: f64,
        checkout_timeout: f64,
        now: f64,
    ) -> PyResult<PoolCore> {
        let config = pool_config(
            max_size,
            idle_timeout,
            max_messages,
            check_after,
            checkout_timeout,
        )?;
        let start = std::time::Instant::now();
        // The caller's clock reads `now` at this instant.
        let offset = Duration::from_secs_f64(if now.is_finite() && now > 0.0 {
            now
        } else {
            0.0
        });
        Ok(PoolCore {
            core: smtp_core::client::pool::PoolCore::new(config),
            epoch: start.checked_sub(offset).unwrap_or(start),
        })
    }

    /// `(what, lease, check)`: `("reuse", lease, check)` (use its connection; NOOP first
    /// when `check`), `("connect", lease, False)` (open one and `lease.put` it), or
    /// `("wait", None, False)` (every slot is busy: wait for a checkin or discard).
    fn checkout(&mut self, now: f64) -> (&'static str, Option<PoolLease>, bool) {
        use smtp_core::client::pool::Checkout;
        match self.core.checkout(self.instant(now)) {
            Checkout::Reuse { lease, check } => {
                ("reuse", Some(PoolLease { lease: Some(lease) }), check)
            }
            Checkout::Connect(lease) => ("connect", Some(PoolLease { lease: Some(lease) }), false),
            Checkout::Wait => ("wait", None, false),
        }
    }

    /// Gives a lease back: `healthy` (it can carry more), `sent` messages this time.
    /// Returns the connection when it is to be closed now (QUIT), else None.
    fn checkin(
        &mut self,
        lease: &mut PoolLease,
        healthy: bool,
        sent: u64,
        now: f64,
    ) -> PyResult<Option<Py<PyAny>>> {
        let lease = lease.take()?;
        Ok(self.core.checkin(lease, healthy, sent, self.instant(now)))
    }

    /// A lease whose connection failed to open, failed its check or was lost: its slot
    /// is free. Returns the connection it held, for closing.
    fn discard(&mut self, lease: &mut PoolLease) -> PyResult<Option<Py<PyAny>>> {
        let lease = lease.take()?;
        Ok(self.core.discard(lease))
    }

    /// The idle connections past `idle_timeout`, taken out for closing.
    fn expired(&mut self, now: f64) -> Vec<Py<PyAny>> {
        self.core.expired(self.instant(now))
    }

    /// Closes the pool: no new connections; returns the idle ones for closing.
    fn close(&mut self) -> Vec<Py<PyAny>> {
        self.core.close()
    }

    /// `(open, idle)` connections now.
    fn status(&self) -> (usize, usize) {
        (self.core.open(), self.core.idle())
    }

    /// How long (seconds) a sender waits for a free slot before giving up.
    #[getter]
    fn checkout_timeout(&self) -> f64 {
        self.core.config().checkout_timeout.as_secs_f64()
    }
}

/// The relay run inside a native server connection (`ServerConnection(relay=...)`, what
/// `smtpx.aio.Server` does with a `smtpx.relay.RelayHandler`): the core's relay session
/// answers the connection's transaction hooks itself, the content arriving piece by
/// piece as the connection receives it. Its hooks may wait on the next hop, so each is
/// handed to the driver as a [`RelayJob`] to run off the event loop.
#[derive(Debug)]
pub(crate) struct NativeRelay {
    session: Arc<Mutex<CoreRelaySession>>,
}

/// One relay hook with its arguments owned, to run on another thread.
#[derive(Debug)]
enum RelayCall {
    Mail(smtp_core::ReversePath, MailParameters),
    Rcpt(smtp_core::ForwardPath, RcptParameters),
    DataStart(Transaction),
    DataChunk(Vec<u8>),
    DataEnd(Transaction),
    DataAborted(AbortReason),
    Reset,
    Close,
}

impl RelayCall {
    /// The relay's part of `hook`, or None for the hooks it does not take (those stay
    /// with the Python handler: HELO, AUTH, NOOP, ...).
    fn of(hook: &Hook<'_>) -> Option<RelayCall> {
        Some(match hook {
            Hook::Mail { from, params } => RelayCall::Mail((*from).clone(), (*params).clone()),
            Hook::Rcpt { to, params } => RelayCall::Rcpt((*to).clone(), (*params).clone()),
            Hook::DataStart { transaction } => RelayCall::DataStart((*transaction).clone()),
            Hook::DataChunk { chunk } => RelayCall::DataChunk(chunk.to_vec()),
            Hook::DataEnd { transaction } => RelayCall::DataEnd((*transaction).clone()),
            Hook::DataAborted { reason } => RelayCall::DataAborted(*reason),
            Hook::Reset => RelayCall::Reset,
            Hook::Close => RelayCall::Close,
            _ => return None,
        })
    }

    fn call(self, session: &mut CoreRelaySession) -> Answer {
        match self {
            RelayCall::Mail(from, params) => Answer::Decision(session.mail(&from, &params)),
            RelayCall::Rcpt(to, params) => Answer::Decision(session.rcpt(&to, &params)),
            RelayCall::DataStart(t) => Answer::Decision(session.data_start(&t)),
            RelayCall::DataChunk(chunk) => Answer::Chunk(session.data_chunk(&chunk)),
            RelayCall::DataEnd(t) => Answer::Decision(session.data_end(&t)),
            RelayCall::DataAborted(reason) => {
                session.data_aborted(reason);
                Answer::Done
            }
            RelayCall::Reset => {
                session.reset();
                Answer::Done
            }
            RelayCall::Close => {
                session.close();
                Answer::Done
            }
        }
    }
}

impl NativeRelay {
    /// A relay session for one client connection.
    pub(crate) fn new(relay: &Relay, info: &ConnectionInfo) -> PyResult<NativeRelay> {
        let session = relay
            .relay
            .connect(info)
            .map_err(|reply| PyValueError::new_err(status_line(&reply)))?;
        Ok(NativeRelay {
            session: Arc::new(Mutex::new(session)),
        })
    }

    /// The job that answers `hook`, when the relay takes it.
    pub(crate) fn job(&self, hook: &Hook<'_>) -> Option<RelayJob> {
        RelayCall::of(hook).map(|call| RelayJob {
            session: Arc::clone(&self.session),
            call: Mutex::new(Some(call)),
            answer: Mutex::new(None),
        })
    }
}

/// A relay hook of a native server connection, handed to the driver (its `kind` is
/// `"relay"`): `run()` it on a thread that may wait (it releases the interpreter), then
/// give it to `ServerConnection.answer`.
#[pyclass(frozen, module = "smtpx._native")]
#[derive(Debug)]
pub struct RelayJob {
    session: Arc<Mutex<CoreRelaySession>>,
    call: Mutex<Option<RelayCall>>,
    answer: Mutex<Option<Answer>>,
}

impl RelayJob {
    /// The answer `run` found; a job not run (or run twice) answers as a lost next hop
    /// would, never with an acceptance.
    pub(crate) fn take_answer(&self) -> Answer {
        lock(&self.answer).take().unwrap_or_else(|| {
            log::error!("a relay hook was answered without being run");
            Answer::Decision(Decision::Reply(Reply::new(
                smtp_core::reply::ReplyCode::LOCAL_ERROR,
                Some(smtp_core::reply::EnhancedCode::TEMP_LOCAL_ERROR),
                "Error: local error in processing",
            )))
        })
    }
}

#[pymethods]
impl RelayJob {
    /// `"relay"`: what the driver's hook dispatch looks at.
    #[getter]
    fn kind(&self) -> &'static str {
        "relay"
    }

    /// Runs the hook (it may wait on the next hop; the interpreter is released meanwhile).
    fn run(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(call) = lock(&self.call).take() {
                let answer = call.call(&mut lock(&self.session));
                *lock(&self.answer) = Some(answer);
            }
        });
    }
}
