//! `smtpx._native.Server`: the blocking server for Python, with a [`Handler`] that hands
//! each hook to a Python connection object (see `smtpx/server.py`), or the built-in
//! [`MaildirHandler`].
//!
//! Connection threads are Rust threads. Each hook attaches to the interpreter only for
//! the Python call (`Python::try_attach`); reading, writing and TLS happen detached. The
//! message content is gathered here and given to Python once, at the end. A Python
//! answer is `None` (accept with the standard reply) or a status line such as
//! `"550 5.1.1 No such user"`, read by the engine's reply parser.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use smtp_core::address::{ForwardPath, ReversePath};
use smtp_core::auth::{AuthAttempt, AuthMechanism};
use smtp_core::blocking::server::{Server as RustServer, ServerOptions};
use smtp_core::command::{Command, MailParameters, RcptParameters};
use smtp_core::handler::{ConnectionInfo, Handler};
use smtp_core::maildir::MaildirHandler;
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode, ReplyLimits, ReplyParser};
use smtp_core::server::hooks::{Answer, ByHook, Hook, HookHandler};
use smtp_core::server::{Decision, HelloVerb, ServerConfig};
use smtp_core::tls;

use crate::errors::client_error;
use crate::trace::PyTrace;

/// Stack for each connection thread: Python code runs on it.
const THREAD_STACK: usize = 4 << 20;

pub(crate) fn local_error(text: &str) -> Reply {
    Reply::new(
        ReplyCode::LOCAL_ERROR,
        Some(EnhancedCode::TEMP_LOCAL_ERROR),
        text,
    )
}

/// A status line from Python as a reply, through the engine's reply parser.
pub(crate) fn parse_status(status: &str) -> Option<Reply> {
    let mut line = status.trim_end_matches(['\r', '\n']).to_owned();
    if line.contains(['\r', '\n']) {
        return None;
    }
    line.push_str("\r\n");
    let mut parser = ReplyParser::new(ReplyLimits::default());
    match parser.feed(line.as_bytes()) {
        Ok((_, Some(reply))) => Some(reply),
        _ => None,
    }
}

/// The MAIL or RCPT parameters as the words the client wrote, as aiosmtpd lists them.
fn parameter_words(command: &Command, prefix_len: usize) -> Vec<String> {
    let line = command.to_bytes();
    let text = String::from_utf8_lossy(&line[prefix_len..]);
    text.split_whitespace().map(str::to_owned).collect()
}

pub(crate) fn mail_options(params: &MailParameters) -> Vec<String> {
    let command = Command::Mail {
        from: ReversePath::Null,
        params: params.clone(),
    };
    parameter_words(&command, "MAIL FROM:<>".len())
}

pub(crate) fn rcpt_options(to: &ForwardPath, params: &RcptParameters) -> Vec<String> {
    let command = Command::Rcpt {
        to: to.clone(),
        params: params.clone(),
    };
    let prefix = format!("RCPT TO:<{}>", to.as_str()).len();
    parameter_words(&command, prefix)
}

/// Makes a Python connection object per connection through `factory(peer_host,
/// peer_port, tls)`, or `factory(peer_host, peer_port, tls, proxy)` when the connection
/// began with a PROXY protocol header (`proxy` as `_native.ServerConnection.proxy`).
struct PyHandler {
    factory: Py<PyAny>,
}

impl Handler for PyHandler {
    type Session = ByHook<PySession>;

    fn connect(&self, info: &ConnectionInfo) -> Result<ByHook<PySession>, Reply> {
        let (host, port) = match info.peer {
            Some(addr) => (addr.ip().to_string(), addr.port()),
            None => (String::new(), 0),
        };
        let made = Python::try_attach(|py| {
            let factory = self.factory.bind(py);
            match &info.proxy {
                None => factory.call1((host, port, info.tls)),
                Some(h) => crate::proxy::header_dict(py, h)
                    .and_then(|proxy| factory.call1((host, port, info.tls, proxy))),
            }
            .map(Bound::unbind)
            .map_err(|e| e.write_unraisable(py, Some(self.factory.bind(py))))
        });
        match made {
            Some(Ok(conn)) => Ok(ByHook(PySession {
                conn,
                content: Vec::new(),
            })),
            _ => Err(Reply::new(
                ReplyCode::SERVICE_UNAVAILABLE,
                Some(EnhancedCode::TEMP_LOCAL_ERROR),
                "Error: cannot serve this connection now",
            )),
        }
    }
}

/// What `conn.data()` answers besides None: one status line, or (LMTP) one per accepted
/// recipient in RCPT order.
#[derive(FromPyObject)]
enum DataAnswer {
    Line(String),
    PerRecipient(Vec<String>),
}

/// One connection's Python object, and the message being received.
struct PySession {
    conn: Py<PyAny>,
    content: Vec<u8>,
}

impl PySession {
    /// Calls `conn.<method>(*args)`; the answer is None or a status line. A failure of
    /// the call itself (the Python side catches handler errors) is reported as
    /// unraisable and answered with 451.
    fn call<A>(&self, method: &str, args: A) -> Result<Option<String>, Reply>
    where
        A: for<'py> pyo3::call::PyCallArgs<'py>,
    {
        let outcome = Python::try_attach(|py| {
            let conn = self.conn.bind(py);
            let answer = conn
                .call_method1(method, args)
                .and_then(|value| value.extract::<Option<String>>());
            answer.map_err(|e| e.write_unraisable(py, Some(conn)))
        });
        match outcome {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(())) => Err(local_error("Error: handler failed")),
            None => Err(local_error("Error: server shutting down")),
        }
    }

    fn decide<A>(&self, method: &str, args: A) -> Decision
    where
        A: for<'py> pyo3::call::PyCallArgs<'py>,
    {
        match self.call(method, args) {
            Ok(None) => Decision::Accept,
            Ok(Some(status)) => match parse_status(&status) {
                Some(reply) => Decision::Reply(reply),
                None => {
                    log::warn!("handler returned an invalid status line: {status:?}");
                    Decision::Reply(local_error("Error: handler returned an invalid status"))
                }
            },
            Err(reply) => Decision::Reply(reply),
        }
    }

    /// Calls a hook whose answer does not matter.
    fn notify<A>(&self, method: &str, args: A)
    where
        A: for<'py> pyo3::call::PyCallArgs<'py>,
    {
        let _ = self.call(method, args);
    }
}

/// Every hook to the connection's Python object, in one match.
impl HookHandler for PySession {
    fn on_hook(&mut self, hook: Hook<'_>) -> Answer {
        match hook {
            Hook::Hello { verb, domain } => Answer::Decision(self.hello(verb, domain)),
            Hook::TlsStarted => {
                self.notify("tls_started", ());
                Answer::Done
            }
            Hook::Auth { attempt } => Answer::Decision(self.auth(attempt)),
            Hook::Mail { from, params } => {
                Answer::Decision(self.decide("mail", (from.as_str(), mail_options(params))))
            }
            Hook::Rcpt { to, params } => {
                Answer::Decision(self.decide("rcpt", (to.as_str(), rcpt_options(to, params))))
            }
            Hook::DataStart { .. } => {
                self.content.clear();
                Answer::Decision(Decision::Accept)
            }
            Hook::DataChunk { chunk } => {
                // The session enforces the size limit, so this stays bounded.
                self.content.extend_from_slice(chunk);
                Answer::Chunk(Ok(()))
            }
            Hook::DataEnd { .. } => Answer::Decision(self.data_end()),
            Hook::DataAborted { .. } => {
                self.content = Vec::new();
                Answer::Done
            }
            Hook::Reset => {
                self.notify("reset", ());
                Answer::Done
            }
            Hook::Verify { argument } => Answer::Decision(self.decide("vrfy", (argument,))),
            // EXPN: the engine's 252 (the adapter has no EXPN hook for this server yet).
            Hook::Expand { .. } => Answer::Decision(Decision::Accept),
            Hook::Close => {
                self.notify("close", ());
                Answer::Done
            }
            // A hook this server has no method for: its default, as an aiosmtpd handler
            // without that hook gets.
            other => other.default_answer(),
        }
    }
}

impl PySession {
    fn hello(&mut self, verb: HelloVerb, domain: &str) -> Decision {
        let verb = match verb {
            HelloVerb::Helo => "HELO",
            HelloVerb::Ehlo => "EHLO",
            HelloVerb::Lhlo => "LHLO",
        };
        match self.decide("hello", (verb, domain)) {
            // A positive answer keeps the engine's own reply (it lists the extensions).
            Decision::Reply(reply) if reply.is_positive() => Decision::Accept,
            other => other,
        }
    }

    fn auth(&mut self, attempt: &AuthAttempt) -> Decision {
        let decision = self.decide(
            "auth",
            (
                attempt.mechanism.name(),
                attempt.username.as_str(),
                attempt.password.expose(),
            ),
        );
        match decision {
            Decision::Accept => Decision::Accept,
            Decision::Reply(reply) if reply.is_positive() => Decision::Accept,
            other => other,
        }
    }

    fn data_end(&mut self) -> Decision {
        let content = std::mem::take(&mut self.content);
        let outcome = Python::try_attach(|py| {
            let conn = self.conn.bind(py);
            let bytes = PyBytes::new(py, &content);
            conn.call_method1("data", (bytes,))
                .and_then(|value| value.extract::<Option<DataAnswer>>())
                .map_err(|e| e.write_unraisable(py, Some(conn)))
        });
        let invalid = || Decision::Reply(local_error("Error: handler returned an invalid status"));
        match outcome {
            Some(Ok(None)) => Decision::Accept,
            Some(Ok(Some(DataAnswer::Line(status)))) => match parse_status(&status) {
                Some(reply) => Decision::Reply(reply),
                None => invalid(),
            },
            Some(Ok(Some(DataAnswer::PerRecipient(lines)))) => {
                match lines.iter().map(|l| parse_status(l)).collect() {
                    Some(replies) => Decision::PerRecipient(replies),
                    None => invalid(),
                }
            }
            Some(Err(())) => Decision::Reply(local_error("Error: handler failed")),
            None => Decision::Reply(local_error("Error: server shutting down")),
        }
    }
}

/// A running server. `stop()` shuts it down; so does dropping it.
#[pyclass(frozen, module = "smtpx._native")]
#[derive(Debug)]
pub struct Server {
    inner: Mutex<Option<RustServer>>,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let server = self
            .inner
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(server) = server {
            // Connection threads attach to run Python hooks: wait for them detached.
            Python::attach(|py| py.detach(|| server.shutdown(Duration::from_secs(5))));
        }
    }
}

#[pymethods]
impl Server {
    /// Starts listening on `host`:`port` (0 picks a free port). `factory(peer_host,
    /// peer_port, tls[, proxy])` makes the Python object of each connection (see
    /// `PyHandler`; with `proxy_protocol_timeout` every connection begins with a PROXY
    /// header from `proxy_trusted`); with `maildir` the
    /// built-in Maildir handler is used instead. `trace(connection_id, direction, text)`,
    /// when given, is called from the connection threads for each line of every
    /// connection (direction "C" or "S", text redacted by the engine).
    #[staticmethod]
    #[pyo3(signature = (host, port, *, factory = None, maildir = None, hostname,
        data_size_limit = 33554432, tls_cert = None, tls_key = None, require_starttls = false,
        auth = false, auth_require_tls = true, auth_required = false, timeout = 300.0,
        lmtp = false, max_connections = 10000, listen_backlog = 1024, pipelining_sync = true,
        trace = None, proxy_protocol_timeout = None, proxy_trusted = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        host: String,
        port: u16,
        factory: Option<Py<PyAny>>,
        maildir: Option<String>,
        hostname: String,
        data_size_limit: u64,
        tls_cert: Option<String>,
        tls_key: Option<String>,
        require_starttls: bool,
        auth: bool,
        auth_require_tls: bool,
        auth_required: bool,
        timeout: f64,
        lmtp: bool,
        max_connections: usize,
        listen_backlog: u32,
        pipelining_sync: bool,
        trace: Option<Py<PyAny>>,
        proxy_protocol_timeout: Option<f64>,
        proxy_trusted: Vec<String>,
    ) -> PyResult<Server> {
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(PyValueError::new_err("timeout must be a positive number"));
        }
        let mut config = ServerConfig::new(hostname.clone());
        config.max_message_size = data_size_limit;
        config.require_tls = require_starttls;
        config.lmtp = lmtp;
        config.pipelining_sync = pipelining_sync;
        config.command_timeout = Duration::from_secs_f64(timeout);
        config.data_timeout = Duration::from_secs_f64(timeout);
        if auth {
            config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
            config.allow_insecure_auth = !auth_require_tls;
            config.require_auth = auth_required;
        }
        let mut options = ServerOptions::new(config);
        options.thread_stack = THREAD_STACK;
        options.max_connections = max_connections;
        options.listen_backlog = listen_backlog;
        options.trace = trace.map(|callable| PyTrace::new(Some(callable)).sink());
        options.proxy_protocol =
            crate::proxy::proxy_protocol(proxy_protocol_timeout, &proxy_trusted)?;
        options.tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(
                tls::server_config_from_pem_files(&cert, &key)
                    .map_err(|e| client_error(e.into(), false))?,
            ),
            (None, None) => None,
            _ => return Err(PyValueError::new_err("give both a certificate and a key")),
        };
        let addr = (host.as_str(), port);
        let started = match (factory, maildir) {
            (Some(factory), None) => py.detach(|| {
                RustServer::builder(PyHandler { factory }, options)
                    .listen(addr)
                    .and_then(|b| b.start())
            }),
            (None, Some(root)) => {
                let handler = MaildirHandler::new(root, hostname)
                    .map_err(|e| PyOSError::new_err(format!("cannot open the Maildir: {e}")))?;
                py.detach(|| {
                    RustServer::builder(handler, options)
                        .listen(addr)
                        .and_then(|b| b.start())
                })
            }
            _ => return Err(PyValueError::new_err("give a factory or a maildir")),
        };
        let server = started
            .map_err(|e| PyOSError::new_err(format!("cannot listen on {host}:{port}: {e}")))?;
        let addr = server.local_addrs()[0];
        Ok(Server {
            inner: Mutex::new(Some(server)),
            addr,
        })
    }

    /// The address listened on, as `(host, port)`.
    #[getter]
    fn address(&self) -> (String, u16) {
        (self.addr.ip().to_string(), self.addr.port())
    }

    /// Connections being served now.
    fn active_connections(&self, py: Python<'_>) -> usize {
        py.detach(|| {
            self.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or(0, RustServer::active_connections)
        })
    }

    /// Stops accepting, lets transactions in flight finish for up to `grace` seconds,
    /// closes idle connections with 421 and cuts the rest. Returns how many were cut.
    #[pyo3(signature = (grace = 5.0))]
    fn stop(&self, py: Python<'_>, grace: f64) -> PyResult<usize> {
        if !(grace.is_finite() && grace >= 0.0) {
            return Err(PyValueError::new_err("grace must be a number of seconds"));
        }
        let server = py.detach(|| self.inner.lock().unwrap_or_else(|p| p.into_inner()).take());
        Ok(match server {
            Some(server) => py.detach(|| server.shutdown(Duration::from_secs_f64(grace))),
            None => 0,
        })
    }
}
