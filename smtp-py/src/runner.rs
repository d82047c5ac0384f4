//! `smtpx._native.ClientRunner`: the engine's client runner (`smtp_core::client::runner`)
//! for the asyncio client, which performs its actions on an asyncio transport.
//!
//! Every client operation (connect, send, a batch, login, STARTTLS, one command, QUIT)
//! is the runner's, as for the Rust drivers: this class only holds the operation in
//! progress between Python awaits ([`OwnedOperation`]) and translates its actions into
//! tuples, its outcomes into the values and exceptions `smtpx/client.py` also uses.
//!
//! The asyncio driver asks `next_action(now)` and gets one of `("write", bytes)`,
//! `("goodbye", bytes)`, `("read", deadline)`, `("starttls", deadline)`, `("close", None)`,
//! `("abort", None)` or `("done", outcome)`; times are seconds on the driver's clock,
//! zero when the connection was made. A message's content is given when its operation
//! starts, so the runner's requests for it never reach Python.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use smtp_core::auth::Credentials;
use smtp_core::blocking::client::Error;
use smtp_core::client::ClientSession;
use smtp_core::client::runner::{Action, ClientRunner as Runner, Outcome, OwnedOperation};

use crate::client::{
    ReplyTuple, client_options, envelope, outcome_object, reply_tuple, result_tuple,
};
use crate::errors::{SmtpDisconnected, client_error};
use crate::results::ResultObjects;
use crate::tls::TlsConfig;
use crate::trace::PyTrace;

/// The runner between operations, or the operation that holds it.
enum State {
    Idle(Box<Runner>),
    /// An operation and the content it will ask for (a single message's).
    Busy(Box<OwnedOperation>, Option<Vec<u8>>),
    /// Only while moving from one to the other.
    Moving,
}

/// One client connection's engine for a Python driver (see the module docs).
#[pyclass(module = "smtpx._native")]
pub struct ClientRunner {
    state: State,
    trace: Arc<PyTrace>,
    /// The operation under way is the opening, where a network failure means the
    /// connection could not be made (a refused connection, not a lost one).
    connecting: bool,
}

impl std::fmt::Debug for ClientRunner {
    // Not the session (it holds the credentials) nor the message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRunner")
            .field("id", &self.id())
            .field("busy", &matches!(self.state, State::Busy(..)))
            .finish_non_exhaustive()
    }
}

fn seconds(now: f64) -> Duration {
    Duration::try_from_secs_f64(now.max(0.0)).unwrap_or(Duration::MAX)
}

impl ClientRunner {
    fn runner(&self) -> Option<&Runner> {
        match &self.state {
            State::Idle(runner) => Some(runner),
            State::Busy(op, _) => Some(op.runner()),
            State::Moving => None,
        }
    }

    fn session(&self) -> Option<&ClientSession> {
        self.runner().map(Runner::session)
    }

    /// Starts an operation on the idle runner.
    fn start(
        &mut self,
        body: Option<Vec<u8>>,
        make: impl FnOnce(Runner) -> OwnedOperation,
    ) -> PyResult<()> {
        match std::mem::replace(&mut self.state, State::Moving) {
            State::Idle(runner) => {
                self.state = State::Busy(Box::new(make(*runner)), body);
                Ok(())
            }
            other => {
                self.state = other;
                Err(SmtpDisconnected::new_err(
                    "another operation is under way on this connection",
                ))
            }
        }
    }

    fn op(&mut self) -> PyResult<&mut OwnedOperation> {
        match &mut self.state {
            State::Busy(op, _) => Ok(op),
            _ => Err(SmtpDisconnected::new_err("no operation is under way")),
        }
    }

    /// The operation is over: the runner is idle again, the outcome in Python's terms.
    fn finish(&mut self, py: Python<'_>, outcome: Outcome) -> PyResult<Py<PyAny>> {
        if let State::Busy(op, _) = std::mem::replace(&mut self.state, State::Moving) {
            self.state = State::Idle(Box::new(op.into_runner()));
        }
        let connecting = std::mem::take(&mut self.connecting);
        Ok(match outcome {
            Outcome::Ready => py.None(),
            Outcome::Transaction(result) => {
                result_tuple(&result).into_pyobject(py)?.into_any().unbind()
            }
            Outcome::Reply(reply) => reply_tuple(&reply).into_pyobject(py)?.into_any().unbind(),
            Outcome::Batch(results) => {
                let mut objects = ResultObjects::new(py)?;
                let items = results
                    .into_iter()
                    .map(|outcome| outcome_object(py, &mut objects, outcome))
                    .collect::<PyResult<Vec<_>>>()?;
                items.into_pyobject(py)?.into_any().unbind()
            }
            Outcome::Closed => self
                .session()
                .and_then(ClientSession::quit_reply)
                .map(reply_tuple)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            Outcome::Failed(error) => return Err(client_error(error, connecting)),
            // Outcome is non-exhaustive upstream; nothing else ends an operation today.
            #[allow(unreachable_patterns)]
            other => {
                return Err(client_error(
                    Error::from(smtp_core::client::ClientError::Protocol(format!(
                        "{other:?}"
                    ))),
                    false,
                ));
            }
        })
    }
}

#[pymethods]
impl ClientRunner {
    /// The engine for one connection: greets as `helo_name`; `tls` is "none",
    /// "starttls" (when offered), "starttls-required" or "implicit" (the driver does
    /// that handshake before `start_connect`); `tls_config` the client TLS
    /// configuration (the engine's default when None), checked for `server_name`;
    /// credentials log in at connect. `timeout` (seconds) bounds each reply.
    #[new]
    #[pyo3(signature = (helo_name, *, server_name, tls = "none", tls_config = None,
        username = None, password = None, allow_insecure_auth = false, lmtp = false,
        timeout = None, trace = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        helo_name: String,
        server_name: String,
        tls: &str,
        tls_config: Option<PyRef<'_, TlsConfig>>,
        username: Option<String>,
        password: Option<String>,
        allow_insecure_auth: bool,
        lmtp: bool,
        timeout: Option<f64>,
        trace: Option<Py<PyAny>>,
    ) -> PyResult<ClientRunner> {
        let trace = PyTrace::new(trace);
        let mut options = client_options(
            helo_name,
            tls,
            timeout,
            (username, password),
            allow_insecure_auth,
            lmtp,
            Some(&trace),
        )?;
        options.tls_config = match tls_config {
            Some(config) => Some(config.client_config()?),
            None => None,
        };
        let runner =
            Runner::from_options(options, &server_name).map_err(|e| client_error(e, true))?;
        Ok(ClientRunner {
            state: State::Idle(Box::new(runner)),
            trace,
            connecting: false,
        })
    }

    /// Calls `trace(connection_id, direction, text)` for each line from now on, or stops
    /// when None.
    fn set_trace(&self, trace: Option<Py<PyAny>>) {
        self.trace.set(trace);
    }

    /// The connection's id in logs and the trace.
    #[getter]
    fn id(&self) -> u64 {
        self.runner().map_or(0, Runner::id)
    }

    /// True when no operation is under way and the connection is not over.
    #[getter]
    fn is_ready(&self) -> bool {
        matches!(&self.state, State::Idle(runner) if !runner.is_closed())
    }

    /// True once the connection is over.
    #[getter]
    fn is_closed(&self) -> bool {
        self.runner().is_none_or(Runner::is_closed)
    }

    /// True when the session is encrypted.
    #[getter]
    fn is_tls(&self) -> bool {
        self.session().is_some_and(ClientSession::is_tls)
    }

    /// The last EHLO reply's lines, the server's name first; None after HELO.
    fn ehlo_lines(&self) -> Option<Vec<String>> {
        self.session()?
            .capabilities()
            .map(|caps| caps.to_reply().lines().to_vec())
    }

    /// The server's greeting, and its 220 to the last STARTTLS, as reply tuples.
    fn kept_replies(&self) -> (Option<ReplyTuple>, Option<ReplyTuple>) {
        match self.session() {
            Some(s) => (
                s.greeting().map(reply_tuple),
                s.starttls_reply().map(reply_tuple),
            ),
            None => (None, None),
        }
    }

    /// Allows AUTH in clear from the next operation on.
    fn set_allow_insecure_auth(&mut self, allow: bool) -> PyResult<()> {
        match &mut self.state {
            State::Idle(runner) => {
                runner.set_allow_insecure_auth(allow);
                Ok(())
            }
            _ => Err(SmtpDisconnected::new_err(
                "another operation is under way on this connection",
            )),
        }
    }

    // -- starting operations -------------------------------------------------------------

    /// Starts the opening: greeting, EHLO, STARTTLS and AUTH as configured.
    fn start_connect(&mut self) -> PyResult<()> {
        self.connecting = true;
        self.start(None, OwnedOperation::connect)
    }

    /// Starts sending one message (`message` bytes, announced with SIZE).
    #[pyo3(signature = (from_addr, to_addrs, message, mail_options = Vec::new(),
        rcpt_options = Vec::new(), *, now))]
    fn start_send(
        &mut self,
        from_addr: &str,
        to_addrs: Vec<String>,
        message: Vec<u8>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
        now: f64,
    ) -> PyResult<()> {
        let envelope = envelope(from_addr, &to_addrs, &mail_options, &rcpt_options)?;
        let size = smtp_core::data::wire_size(&message);
        self.start(Some(message), |runner| {
            OwnedOperation::send(runner, &envelope, Some(size), seconds(now))
        })
    }

    /// Starts a batch: each `(from_addr, to_addrs, message)` in its own transaction,
    /// chained when the server pipelines. Every envelope is checked first (ValueError).
    #[pyo3(signature = (messages, mail_options = Vec::new(), rcpt_options = Vec::new()))]
    fn start_batch(
        &mut self,
        messages: Vec<(String, Vec<String>, Vec<u8>)>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
    ) -> PyResult<()> {
        let mut items = Vec::with_capacity(messages.len());
        for (from, to, body) in messages {
            items.push((envelope(&from, &to, &mail_options, &rcpt_options)?, body));
        }
        self.start(None, |runner| OwnedOperation::send_batch(runner, items))
    }

    /// Starts AUTH with `username` and `password` (PLAIN or LOGIN, as offered).
    #[pyo3(signature = (username, password, *, now))]
    fn start_login(&mut self, username: String, password: String, now: f64) -> PyResult<()> {
        let credentials = Credentials::password(username, password);
        self.start(None, |runner| {
            OwnedOperation::login(runner, credentials, seconds(now))
        })
    }

    /// Starts STARTTLS, the certificate checked for `server_name` with `tls_config`.
    #[pyo3(signature = (server_name, tls_config = None, *, now))]
    fn start_starttls(
        &mut self,
        server_name: String,
        tls_config: Option<PyRef<'_, TlsConfig>>,
        now: f64,
    ) -> PyResult<()> {
        let config = match tls_config {
            Some(config) => Some(config.client_config()?),
            None => None,
        };
        self.start(None, |runner| {
            OwnedOperation::starttls(runner, &server_name, config, seconds(now))
        })
    }

    /// Starts one command: `verb` is "noop", "rset", "vrfy", "expn", "help", "ehlo",
    /// "helo" (`argument` the name, or None), "raw" (`argument` the line as it is),
    /// "secret" (the same, a SASL response the trace redacts) or
    /// "content" (`content` the message after the caller's own DATA).
    #[pyo3(signature = (verb, argument = None, content = None, *, now))]
    fn start_command(
        &mut self,
        verb: &str,
        argument: Option<String>,
        content: Option<Vec<u8>>,
        now: f64,
    ) -> PyResult<()> {
        let arg = argument.unwrap_or_default();
        let verb = verb.to_owned();
        if !matches!(
            verb.as_str(),
            "noop"
                | "rset"
                | "vrfy"
                | "expn"
                | "help"
                | "ehlo"
                | "helo"
                | "raw"
                | "secret"
                | "content"
        ) {
            return Err(PyValueError::new_err(format!("unknown command {verb:?}")));
        }
        let content = content.unwrap_or_default();
        self.start(None, move |runner| {
            OwnedOperation::command(
                runner,
                move |s: &mut ClientSession| match verb.as_str() {
                    "noop" => s.noop(),
                    "rset" => s.rset(),
                    "vrfy" => s.vrfy(&arg),
                    "expn" => s.expn(&arg),
                    "help" => s.help((!arg.is_empty()).then_some(arg.as_str())),
                    "ehlo" | "helo" => {
                        s.hello(verb == "ehlo", (!arg.is_empty()).then_some(arg.as_str()))
                    }
                    "raw" => s.raw_command(&arg, false),
                    "secret" => s.raw_command(&arg, true),
                    _ => s.raw_content(&content),
                },
                seconds(now),
            )
        })
    }

    /// Starts QUIT; the outcome is the server's reply tuple, or None.
    #[pyo3(signature = (*, now))]
    fn start_quit(&mut self, now: f64) -> PyResult<()> {
        self.start(None, |runner| OwnedOperation::quit(runner, seconds(now)))
    }

    /// Gives up the operation under way (the caller was cancelled): the session stays
    /// where it was, which only closing the connection can follow.
    fn abandon(&mut self) {
        if let State::Busy(op, _) = std::mem::replace(&mut self.state, State::Moving) {
            self.state = State::Idle(Box::new(op.into_runner()));
        }
    }

    // -- the operation's actions -----------------------------------------------------------

    /// What the driver does next (see the module docs). `("done", outcome)` hands the
    /// runner back; a failed operation raises its exception instead.
    fn next_action<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyTuple>> {
        let now = seconds(now);
        loop {
            let State::Busy(op, body) = &mut self.state else {
                return Err(SmtpDisconnected::new_err("no operation is under way"));
            };
            let done = match op.next_action(now) {
                Action::Write(bytes) => {
                    return ("write", PyBytes::new(py, bytes)).into_pyobject(py);
                }
                Action::Goodbye(bytes) => {
                    return ("goodbye", PyBytes::new(py, bytes)).into_pyobject(py);
                }
                Action::Read { deadline } => {
                    return ("read", deadline.as_secs_f64()).into_pyobject(py);
                }
                Action::StartTls { deadline, .. } => {
                    return ("starttls", deadline.as_secs_f64()).into_pyobject(py);
                }
                Action::Body => {
                    match body.take() {
                        Some(content) => {
                            op.body(&content, now);
                            op.body_end(now);
                        }
                        None => op.body_failed(std::io::ErrorKind::InvalidInput.into()),
                    }
                    continue;
                }
                Action::Close => return ("close", py.None()).into_pyobject(py),
                Action::Abort => return ("abort", py.None()).into_pyobject(py),
                Action::Done(outcome) => outcome,
            };
            let value = self.finish(py, done)?;
            return ("done", value).into_pyobject(py);
        }
    }

    /// The outcomes of the batch under way known since the last call, oldest first (each
    /// a `SendResult` or the exception, as in the batch's final list, which then holds
    /// only the outcomes not taken here); empty for any other operation.
    fn take_results(&mut self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let op = self.op()?;
        let mut objects = ResultObjects::new(py)?;
        let mut taken = Vec::new();
        while let Some(outcome) = op.take_result() {
            taken.push(outcome_object(py, &mut objects, outcome)?);
        }
        Ok(taken)
    }

    /// Starts no further message of the batch under way: the ones already started
    /// finish (their replies are read) and end it; the rest are not sent.
    fn stop_batch(&mut self) -> PyResult<()> {
        self.op()?.stop_batch();
        Ok(())
    }

    /// The bytes of the last write went out.
    fn written(&mut self) -> PyResult<()> {
        self.op()?.written();
        Ok(())
    }

    /// Writing failed: the connection is lost.
    fn write_failed(&mut self, reason: String) -> PyResult<()> {
        self.op()?.write_failed(std::io::Error::other(reason));
        Ok(())
    }

    /// Bytes came from the server (decrypted, under TLS).
    fn received(&mut self, data: &[u8], now: f64) -> PyResult<()> {
        self.op()?.received(data, seconds(now));
        Ok(())
    }

    /// The server closed the connection.
    fn eof(&mut self) -> PyResult<()> {
        self.op()?.eof();
        Ok(())
    }

    /// The read's deadline passed.
    fn timed_out(&mut self, now: f64) -> PyResult<()> {
        self.op()?.timed_out(seconds(now));
        Ok(())
    }

    /// Reading failed: the connection is lost.
    fn read_failed(&mut self, reason: String) -> PyResult<()> {
        self.op()?.read_failed(std::io::Error::other(reason));
        Ok(())
    }

    /// The STARTTLS handshake is done.
    fn tls_established(&mut self, now: f64) -> PyResult<()> {
        self.op()?.tls_established(seconds(now));
        Ok(())
    }

    /// The STARTTLS handshake failed (`timeout`: its deadline passed).
    #[pyo3(signature = (reason, *, timeout = false))]
    fn tls_failed(&mut self, reason: String, timeout: bool) -> PyResult<()> {
        let error = if timeout {
            Error::from(smtp_core::client::ClientError::Timeout)
        } else {
            Error::tls(reason)
        };
        self.op()?.tls_failed(error);
        Ok(())
    }
}
