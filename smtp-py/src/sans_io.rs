//! `smtpx._native.ServerSession` and `smtpx._native.ClientSession`: the engine's sans-IO
//! sessions for Python, for embedders that own the sockets and the clock (such as the
//! asyncio client in `smtpx/aio/client.py`).
//!
//! Only types are translated here: bytes in and out, seconds as floats (any monotonic
//! clock, for example `loop.time()`), and each engine event as one [`Event`] object.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use smtp_core::auth::{AuthMechanism, Credentials};
use smtp_core::blocking::client::Error;
use smtp_core::client::{
    ClientConfig, ClientError, ClientEvent, ClientSession as RustClient, StartTlsPolicy,
};
use smtp_core::server::hooks::Transaction;
use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession as RustServer};

use crate::client::{ReplyTuple, ResultTuple, envelope, reply_tuple, result_tuple};
use crate::errors::client_error;
use crate::server::parse_status;
use crate::trace::PyTrace;
use crate::vocabulary::hook_event;

pub(crate) fn seconds(now: f64) -> PyResult<Duration> {
    if now.is_finite() && now >= 0.0 {
        Ok(Duration::from_secs_f64(now))
    } else {
        Err(PyValueError::new_err(
            "a time must be a finite number of seconds >= 0",
        ))
    }
}

fn positive(what: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be a positive number of seconds"
        )))
    }
}

/// One thing a session reports. `kind` says which; the other fields are None (or empty)
/// unless that kind carries them.
#[pyclass(frozen, get_all, module = "smtpx._native")]
#[derive(Debug, Default)]
pub struct Event {
    pub(crate) kind: &'static str,
    pub(crate) needs_decision: bool,
    pub(crate) verb: Option<&'static str>,
    pub(crate) domain: Option<String>,
    pub(crate) sender: Option<String>,
    pub(crate) recipient: Option<String>,
    pub(crate) options: Vec<String>,
    pub(crate) data: Option<Py<PyBytes>>,
    pub(crate) mechanism: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) argument: Option<String>,
    pub(crate) reason: Option<&'static str>,
    pub(crate) reply: Option<ReplyTuple>,
    pub(crate) result: Option<ResultTuple>,
    pub(crate) error: Option<String>,
    pub(crate) exception: Option<Py<PyAny>>,
    pub(crate) fatal: bool,
}

#[pymethods]
impl Event {
    fn __repr__(&self) -> String {
        format!("<Event {}>", self.kind)
    }
}

pub(crate) fn event(kind: &'static str) -> Event {
    Event {
        kind,
        ..Event::default()
    }
}

/// A session event for Python: told as the hook it calls ([`hook_event`]), under the
/// event's own name, but for the two a connection answers itself.
fn server_event(py: Python<'_>, e: ServerEvent<'_>) -> Event {
    match e.hook(&Transaction::default()) {
        Some(hook) => hook_event(py, e.name(), &hook),
        None => Event {
            needs_decision: e.needs_decision(),
            ..event(e.name())
        },
    }
}

/// The engine's settings from the keyword arguments `ServerSession` and `ServerConnection`
/// share: `auth` is (auth, allow_insecure_auth, require_auth), `tls` is (starttls,
/// tls_active, require_tls).
#[allow(clippy::too_many_arguments)]
pub(crate) fn server_config(
    hostname: String,
    max_message_size: u64,
    max_recipients: usize,
    lmtp: bool,
    (auth, allow_insecure_auth, require_auth): (bool, bool, bool),
    timeout: f64,
    (starttls, tls_active, require_tls): (bool, bool, bool),
    pipelining_sync: bool,
) -> PyResult<ServerConfig> {
    let mut config = ServerConfig::new(hostname);
    config.max_message_size = max_message_size;
    config.max_recipients = max_recipients;
    config.lmtp = lmtp;
    config.starttls = starttls;
    config.tls_active = tls_active;
    config.require_tls = require_tls;
    config.pipelining_sync = pipelining_sync;
    config.command_timeout = positive("timeout", timeout)?;
    config.data_timeout = config.command_timeout;
    if auth {
        config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
        config.allow_insecure_auth = allow_insecure_auth;
        config.require_auth = require_auth;
    }
    Ok(config)
}

/// The server side of one SMTP or LMTP connection, without I/O (see `_native.pyi`).
#[pyclass(module = "smtpx._native")]
#[derive(Debug)]
pub struct ServerSession {
    inner: RustServer,
    /// The wire trace, once `set_trace` installed one.
    trace: Option<Arc<PyTrace>>,
}

#[pymethods]
impl ServerSession {
    #[new]
    #[pyo3(signature = (hostname, *, now = 0.0, max_message_size = 26214400,
        max_recipients = 100, lmtp = false, auth = false, allow_insecure_auth = false,
        require_auth = false, timeout = 300.0, starttls = false, tls_active = false,
        require_tls = false, pipelining_sync = true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        hostname: String,
        now: f64,
        max_message_size: u64,
        max_recipients: usize,
        lmtp: bool,
        auth: bool,
        allow_insecure_auth: bool,
        require_auth: bool,
        timeout: f64,
        starttls: bool,
        tls_active: bool,
        require_tls: bool,
        pipelining_sync: bool,
    ) -> PyResult<ServerSession> {
        let config = server_config(
            hostname,
            max_message_size,
            max_recipients,
            lmtp,
            (auth, allow_insecure_auth, require_auth),
            timeout,
            (starttls, tls_active, require_tls),
            pipelining_sync,
        )?;
        Ok(ServerSession {
            inner: RustServer::new(config, seconds(now)?),
            trace: None,
        })
    }

    fn receive(&mut self, data: &[u8], now: f64) -> PyResult<usize> {
        Ok(self.inner.receive(data, seconds(now)?))
    }

    fn receive_eof(&mut self) {
        self.inner.receive_eof();
    }

    fn next_event(&mut self, py: Python<'_>) -> Option<Event> {
        self.inner.poll_event().map(|e| server_event(py, e))
    }

    fn accept(&mut self) -> PyResult<()> {
        self.inner
            .decide(Decision::Accept)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    #[pyo3(signature = (code, text, enhanced = None))]
    fn reply(&mut self, code: u16, text: &str, enhanced: Option<&str>) -> PyResult<()> {
        let line = match enhanced {
            Some(enhanced) => format!("{code} {enhanced} {text}"),
            None => format!("{code} {text}"),
        };
        let reply = parse_status(&line)
            .filter(|r| r.code().get() == code)
            .ok_or_else(|| PyValueError::new_err(format!("not a valid reply: {line:?}")))?;
        self.inner
            .decide(Decision::Reply(reply))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Answers with a status line such as "550 5.1.1 No such user" (aiosmtpd's handler
    /// return values), read by the engine's reply parser.
    fn reply_line(&mut self, line: &str) -> PyResult<()> {
        let reply = parse_status(line)
            .ok_or_else(|| PyValueError::new_err(format!("not a valid reply: {line:?}")))?;
        self.inner
            .decide(Decision::Reply(reply))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// LMTP's answer to "message_end": one status line per accepted recipient, in RCPT
    /// order (missing ones repeat the last). Under SMTP only the first is used.
    fn reply_per_recipient(&mut self, lines: Vec<String>) -> PyResult<()> {
        let replies = lines
            .iter()
            .map(|line| {
                parse_status(line)
                    .ok_or_else(|| PyValueError::new_err(format!("not a valid reply: {line:?}")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        self.inner
            .decide(Decision::PerRecipient(replies))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn output(&mut self) -> Vec<u8> {
        self.inner.take_output()
    }

    fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline().map(|d| d.as_secs_f64())
    }

    fn handle_timeout(&mut self, now: f64) -> PyResult<()> {
        self.inner.handle_timeout(seconds(now)?);
        Ok(())
    }

    /// The TLS handshake after the "starttls" event succeeded: the client must greet
    /// again. (Input received before it was already thrown away by the engine.)
    fn tls_established(&mut self, now: f64) -> PyResult<()> {
        self.inner.tls_established(seconds(now)?);
        Ok(())
    }

    /// Calls `trace(connection_id, direction, text)` for each line from now on (direction
    /// "C" or "S", text redacted by the engine); None stops calling.
    #[pyo3(signature = (trace, connection_id = 0))]
    fn set_trace(&mut self, trace: Option<Py<PyAny>>, connection_id: u64) {
        set_trace(&mut self.trace, trace, |sink| {
            self.inner.set_trace(sink, connection_id);
        });
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    #[getter]
    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }

    #[getter]
    fn is_waiting_for_decision(&self) -> bool {
        self.inner.is_waiting_for_decision()
    }

    #[getter]
    fn authenticated_user(&self) -> Option<String> {
        self.inner.authenticated_user().map(str::to_owned)
    }
}

/// Installs a new sink through `install`, or empties the installed one (the engine keeps
/// a sink once given one).
pub(crate) fn set_trace(
    slot: &mut Option<Arc<PyTrace>>,
    callable: Option<Py<PyAny>>,
    install: impl FnOnce(smtp_core::trace::TraceSink),
) {
    match (callable, slot.as_ref()) {
        (None, Some(trace)) => trace.set(None),
        (None, None) => {}
        (Some(callable), _) => {
            let trace = PyTrace::new(Some(callable));
            install(trace.sink());
            *slot = Some(trace);
        }
    }
}

fn client_event(py: Python<'_>, e: ClientEvent) -> Event {
    match e {
        ClientEvent::Ready => event("ready"),
        ClientEvent::StartTls => event("starttls"),
        ClientEvent::Authenticated(reply) => Event {
            reply: Some(reply_tuple(&reply)),
            ..event("authenticated")
        },
        ClientEvent::SendBody => event("send_body"),
        ClientEvent::TransactionComplete(result) => Event {
            result: Some(result_tuple(&result)),
            ..event("transaction_complete")
        },
        ClientEvent::Reply(reply) => Event {
            reply: Some(reply_tuple(&reply)),
            ..event("reply")
        },
        ClientEvent::Closed => event("closed"),
        ClientEvent::Error(error) => Event {
            reply: error.reply().map(reply_tuple),
            fatal: error.is_fatal(),
            error: Some(error.to_string()),
            exception: Some(call_error(error).into_value(py).into_any()),
            ..event("error")
        },
    }
}

fn call_error(error: ClientError) -> PyErr {
    client_error(Error::from(error), false)
}

/// The client side of one SMTP or LMTP connection, without I/O (see `_native.pyi`).
#[pyclass(module = "smtpx._native")]
#[derive(Debug)]
pub struct ClientSession {
    inner: RustClient,
    /// The wire trace, once `set_trace` installed one.
    trace: Option<Arc<PyTrace>>,
}

#[pymethods]
impl ClientSession {
    #[new]
    #[pyo3(signature = (helo_name, *, now = 0.0, lmtp = false, username = None,
        password = None, allow_insecure_auth = false, pipelining = true, chunking = true,
        starttls = "never", tls_active = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        helo_name: String,
        now: f64,
        lmtp: bool,
        username: Option<String>,
        password: Option<String>,
        allow_insecure_auth: bool,
        pipelining: bool,
        chunking: bool,
        starttls: &str,
        tls_active: bool,
    ) -> PyResult<ClientSession> {
        let mut config = ClientConfig::new(helo_name);
        config.lmtp = lmtp;
        config.starttls = match starttls {
            "never" => StartTlsPolicy::Never,
            "opportunistic" => StartTlsPolicy::Opportunistic,
            "required" => StartTlsPolicy::Required,
            other => {
                return Err(PyValueError::new_err(format!(
                    "starttls must be never, opportunistic or required, not {other:?}"
                )));
            }
        };
        config.tls_active = tls_active;
        config.allow_insecure_auth = allow_insecure_auth;
        config.pipelining = pipelining;
        config.chunking = chunking;
        config.credentials = match (username, password) {
            (Some(u), Some(p)) => Some(Credentials::password(u, p)),
            (None, None) => None,
            _ => return Err(PyValueError::new_err("give both a username and a password")),
        };
        let inner = RustClient::new(config, seconds(now)?).map_err(call_error)?;
        Ok(ClientSession { inner, trace: None })
    }

    fn receive(&mut self, data: &[u8], now: f64) -> PyResult<()> {
        self.inner.receive(data, seconds(now)?);
        Ok(())
    }

    fn receive_eof(&mut self) {
        self.inner.receive_eof();
    }

    fn next_event(&mut self, py: Python<'_>) -> Option<Event> {
        self.inner.poll_event().map(|e| client_event(py, e))
    }

    #[pyo3(signature = (sender, recipients, size = None, mail_options = Vec::new(),
        rcpt_options = Vec::new()))]
    fn send_mail(
        &mut self,
        sender: &str,
        recipients: Vec<String>,
        size: Option<u64>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
    ) -> PyResult<()> {
        let envelope = envelope(sender, &recipients, &mail_options, &rcpt_options)?;
        self.inner.send_mail(&envelope, size).map_err(call_error)
    }

    fn send_body(&mut self, data: &[u8]) -> PyResult<()> {
        self.inner.send_body(data).map_err(call_error)
    }

    fn finish_body(&mut self) -> PyResult<()> {
        self.inner.finish_body().map_err(call_error)
    }

    fn noop(&mut self) -> PyResult<()> {
        self.inner.noop().map_err(call_error)
    }

    fn rset(&mut self) -> PyResult<()> {
        self.inner.rset().map_err(call_error)
    }

    fn vrfy(&mut self, argument: &str) -> PyResult<()> {
        self.inner.vrfy(argument).map_err(call_error)
    }

    fn quit(&mut self) -> PyResult<()> {
        self.inner.quit().map_err(call_error)
    }

    /// Sends STARTTLS now (ready and not yet encrypted): "starttls" follows, or an
    /// "error" when the server refuses.
    /// Authenticates now with a user name and password (PLAIN or LOGIN, whichever the
    /// server offers): an "authenticated" event, or an "error" event that leaves the
    /// session ready.
    ///
    /// Without TLS it raises SmtpInsecureAuthError (nothing written) unless AUTH in clear
    /// is allowed (`allow_insecure_auth`, at construction or with
    /// `set_allow_insecure_auth`).
    fn login(&mut self, username: String, password: String) -> PyResult<()> {
        // The engine refuses CR, LF or NUL in either (InvalidArgument: ValueError).
        self.inner
            .login(Credentials::password(username, password))
            .map_err(call_error)
    }

    /// Allows (or forbids again) AUTH while the connection is not encrypted, from the next
    /// `login` on.
    fn set_allow_insecure_auth(&mut self, allow: bool) {
        self.inner.set_allow_insecure_auth(allow);
    }

    /// True when `send_mail` would start a transaction now: the session is ready, or the
    /// current message has been written and the next can be chained behind its end.
    #[getter]
    fn can_send_mail(&self) -> bool {
        self.inner.can_send_mail()
    }

    fn starttls(&mut self) -> PyResult<()> {
        self.inner.starttls().map_err(call_error)
    }

    fn output(&mut self) -> Vec<u8> {
        self.inner.take_output()
    }

    fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline().map(|d| d.as_secs_f64())
    }

    fn handle_timeout(&mut self, now: f64) -> PyResult<()> {
        self.inner.handle_timeout(seconds(now)?);
        Ok(())
    }

    /// The TLS handshake after the "starttls" event succeeded: the session greets again.
    /// (What the server sent after its 220 was already thrown away by the engine.)
    fn tls_established(&mut self, now: f64) -> PyResult<()> {
        self.inner.tls_established(seconds(now)?);
        Ok(())
    }

    #[getter]
    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    #[getter]
    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }

    /// Calls `trace(connection_id, direction, text)` for each line from now on (direction
    /// "C" or "S", text redacted by the engine); None stops calling.
    #[pyo3(signature = (trace, connection_id = 0))]
    fn set_trace(&mut self, trace: Option<Py<PyAny>>, connection_id: u64) {
        set_trace(&mut self.trace, trace, |sink| {
            self.inner.set_trace(sink, connection_id);
        });
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}
