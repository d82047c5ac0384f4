//! `smtpx._native.Pool` (the blocking connection pool, shared between threads) and
//! `smtpx._native.Relay` / `RelaySession` (the relay handler's hooks), thin over
//! `smtp_core::blocking::pool::SmtpPool` and `smtp_core::server::relay::RelayHandler`:
//! the pool's policy and the relay's logic are the core's. Every network wait runs with
//! the interpreter detached. `smtpx/pool.py` and `smtpx/relay.py` give them their faces.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use smtp_core::blocking::client::{ClientOptions, TlsMode};
use smtp_core::blocking::pool::SmtpPool;
use smtp_core::client::pool::PoolConfig;
use smtp_core::handler::{ConnectionInfo, Handler, SessionHandler, Transaction};
use smtp_core::reply::Reply;
use smtp_core::server::relay::{RelayHandler, RelaySession as CoreRelaySession};
use smtp_core::server::{Decision, HelloVerb};

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
