//! `smtpx._native.ServerConnection`: the engine's server connection layer
//! ([`smtp_core::server::connection::Connection`]) for Python, which `smtpx.aio.Server`
//! drives from its asyncio protocol: bytes in, bytes out, one action at a time.
//!
//! Everything a connection needs beyond its sockets (hook dispatch, input held while the
//! session is busy, deadlines, the STARTTLS handover, graceful shutdown and its 421) is
//! the layer's; this file only translates: seconds as floats, the hooks that run Python
//! code as [`Event`]s (the same objects `ServerSession` gives), their answers from status
//! lines.
//!
//! Two choices keep the crossings into Python few (the asyncio server's cost per message
//! is benchmarked, `bench/python_server.py`):
//! - The hooks no Python code answers are answered here: `data_start` (accept),
//!   `data_chunk` (the content is gathered here and handed over once, with
//!   "message_end"), `data_aborted` (the content is dropped) and `expand` (the engine's
//!   standard answer), as the blocking server's Python handler does (`server.rs`).
//! - Output is gathered across actions and handed over as one `bytes` when the driver must
//!   wait (to read, for a handshake, to close), so a pipelined group of commands costs one
//!   transport write: an asyncio transport takes every byte it is given, so the bytes
//!   count as written when handed over.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyString};

use smtp_core::handler::{Answer, Hook};
use smtp_core::server::Decision;
use smtp_core::server::connection::{self, Action, Connection};

use crate::sans_io::{Event, event, seconds, server_config, set_trace};
use crate::server::{local_error, parse_status};
use crate::trace::PyTrace;
use crate::vocabulary::hook_event;

/// The action kinds of [`ServerConnection::next_action`].
const CONNECT: u8 = 0;
const HOOK: u8 = 1;
const WRITE: u8 = 2;
const READ: u8 = 3;
const START_TLS: u8 = 4;
const CLOSE: u8 = 5;

/// Gathered output is handed over at this size without waiting for the driver to wait.
const WRITE_BATCH: usize = 64 * 1024;

/// A message's content above this size is not kept allocated between messages.
const KEEP_CONTENT: usize = 1 << 20;

/// Where a hook goes: answered here, or to Python as an event.
// Only ever returned and matched at once: boxing the event would cost an allocation per hook.
#[allow(clippy::large_enum_variant)]
enum Route {
    Here(Answer),
    Python(Event),
}

/// One server connection, sans-IO (see `_native.pyi`).
#[pyclass(module = "smtpx._native")]
#[derive(Debug)]
pub struct ServerConnection {
    inner: Connection,
    /// The message being received.
    content: Vec<u8>,
    /// Output not handed over yet (already reported written to the layer).
    output: Vec<u8>,
    /// The hook handed to Python waits for a decision (its answer is a status).
    decision_due: bool,
    /// The wire trace, once `set_trace` installed one.
    trace: Option<std::sync::Arc<PyTrace>>,
    /// The socket's peer, as given.
    peer: Option<std::net::SocketAddr>,
}

impl ServerConnection {
    /// Takes the gathered output as one `bytes`.
    fn take_output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyAny> {
        let bytes = PyBytes::new(py, &self.output).into_any();
        self.output.clear();
        if self.output.capacity() > WRITE_BATCH {
            self.output = Vec::new();
        }
        bytes
    }

    fn drop_content(content: &mut Vec<u8>) {
        if content.capacity() > KEEP_CONTENT {
            *content = Vec::new();
        } else {
            content.clear();
        }
    }

    /// What to do with `hook`: answer it here, or hand it to Python.
    fn route(py: Python<'_>, hook: Hook<'_>, content: &mut Vec<u8>) -> Route {
        let out = match hook {
            Hook::DataStart { .. } => {
                Self::drop_content(content);
                return Route::Here(Answer::Decision(Decision::Accept));
            }
            Hook::DataChunk { chunk } => {
                // The session enforces the size limit, so this stays bounded.
                content.extend_from_slice(chunk);
                return Route::Here(Answer::Chunk(Ok(())));
            }
            Hook::DataAborted { .. } => {
                Self::drop_content(content);
                return Route::Here(Answer::Done);
            }
            Hook::Expand { .. } => return Route::Here(Answer::Decision(Decision::Accept)),
            Hook::DataEnd { .. } => {
                let data = PyBytes::new(py, content).unbind();
                Self::drop_content(content);
                Event {
                    data: Some(data),
                    needs_decision: true,
                    ..event("message_end")
                }
            }
            // Every other hook by its name and arguments.
            hook => hook_event(py, hook.name(), &hook),
        };
        Route::Python(out)
    }
}

/// A hook's answer from Python: None accepts; a status line, or (LMTP, "message_end") a
/// list of them, replies. Anything else is the handler's bug, answered with 451.
fn decision(status: Option<&Bound<'_, PyAny>>) -> Decision {
    let Some(status) = status else {
        return Decision::Accept;
    };
    let parsed = if let Ok(line) = status.cast::<PyString>() {
        line.to_str()
            .ok()
            .and_then(parse_status)
            .map(Decision::Reply)
    } else if let Ok(lines) = status.extract::<Vec<String>>() {
        lines
            .iter()
            .map(|line| parse_status(line))
            .collect::<Option<Vec<_>>>()
            .map(Decision::PerRecipient)
    } else {
        None
    };
    parsed.unwrap_or_else(|| {
        log::error!("the handler returned an invalid status: {status}");
        Decision::Reply(local_error("Error: handler returned an invalid status"))
    })
}

#[pymethods]
impl ServerConnection {
    #[classattr]
    const CONNECT: u8 = CONNECT;
    #[classattr]
    const HOOK: u8 = HOOK;
    #[classattr]
    const WRITE: u8 = WRITE;
    #[classattr]
    const READ: u8 = READ;
    #[classattr]
    const START_TLS: u8 = START_TLS;
    #[classattr]
    const CLOSE: u8 = CLOSE;

    #[new]
    #[pyo3(signature = (hostname, *, now = 0.0, max_message_size = 26214400,
        max_recipients = 100, lmtp = false, auth = false, allow_insecure_auth = false,
        require_auth = false, timeout = 300.0, starttls = false, implicit_tls = false,
        require_tls = false, pipelining_sync = true, peer = None,
        proxy_protocol_timeout = None, proxy_trusted = Vec::new()))]
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
        implicit_tls: bool,
        require_tls: bool,
        pipelining_sync: bool,
        peer: Option<(String, u16)>,
        proxy_protocol_timeout: Option<f64>,
        proxy_trusted: Vec<String>,
    ) -> PyResult<ServerConnection> {
        let config = server_config(
            hostname,
            max_message_size,
            max_recipients,
            lmtp,
            (auth, allow_insecure_auth, require_auth),
            timeout,
            (starttls, false, require_tls),
            pipelining_sync,
        )?;
        let now = seconds(now)?;
        let mut inner = Connection::new(config, now, implicit_tls);
        // An address that does not parse (an IPv6 one with a zone, say) is unknown: the
        // PROXY header is then refused, as from any untrusted peer.
        let peer = peer.and_then(|(host, port)| {
            let ip: std::net::IpAddr = host.parse().ok()?;
            Some(std::net::SocketAddr::new(ip, port))
        });
        if let Some(proxy) = crate::proxy::proxy_protocol(proxy_protocol_timeout, &proxy_trusted)? {
            inner.expect_proxy_header(&proxy, peer, now);
        }
        Ok(ServerConnection {
            peer,
            inner,
            content: Vec::new(),
            output: Vec::new(),
            decision_due: false,
            trace: None,
        })
    }

    /// The 421 a server at its connection limit says to a client before closing it.
    #[staticmethod]
    fn busy_reply<'py>(py: Python<'py>, hostname: &str) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &connection::busy_reply(hostname))
    }

    fn next_action<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<(u8, Bound<'py, PyAny>)> {
        let now = seconds(now)?;
        loop {
            let (kind, payload) = match self.inner.next_action(now) {
                Action::Write(bytes) => {
                    self.output.extend_from_slice(bytes);
                    let n = bytes.len();
                    self.inner.written(n);
                    if self.output.len() < WRITE_BATCH {
                        continue;
                    }
                    return Ok((WRITE, self.take_output(py)));
                }
                Action::Hook(hook) => match Self::route(py, hook, &mut self.content) {
                    Route::Here(answer) => {
                        self.inner.answer(answer);
                        continue;
                    }
                    Route::Python(event) => {
                        self.decision_due = event.needs_decision;
                        (HOOK, Bound::new(py, event)?.into_any())
                    }
                },
                // The driver waits now: what was said goes first (the layer gives the
                // same action again when asked).
                _ if !self.output.is_empty() => return Ok((WRITE, self.take_output(py))),
                Action::Connect => (CONNECT, py.None().into_bound(py)),
                Action::Read { deadline } => {
                    (READ, PyFloat::new(py, deadline.as_secs_f64()).into_any())
                }
                Action::StartTls { deadline } => (
                    START_TLS,
                    PyFloat::new(py, deadline.as_secs_f64()).into_any(),
                ),
                Action::Close => (CLOSE, py.None().into_bound(py)),
            };
            return Ok((kind, payload));
        }
    }

    #[pyo3(signature = (refusal = None))]
    fn connected(&mut self, refusal: Option<&str>) -> PyResult<()> {
        let refusal = match refusal {
            Some(line) => Some(
                parse_status(line)
                    .ok_or_else(|| PyValueError::new_err(format!("not a valid reply: {line:?}")))?,
            ),
            None => None,
        };
        self.inner.connected(refusal);
        Ok(())
    }

    #[pyo3(signature = (status = None))]
    fn answer(&mut self, status: Option<&Bound<'_, PyAny>>) {
        let answer = if std::mem::take(&mut self.decision_due) {
            Answer::Decision(decision(status))
        } else {
            Answer::Done
        };
        self.inner.answer(answer);
    }

    #[pyo3(signature = (data, now, size = None))]
    fn receive(&mut self, data: &Bound<'_, PyAny>, now: f64, size: Option<usize>) -> PyResult<()> {
        let now = seconds(now)?;
        if let Ok(bytes) = data.cast::<PyBytes>() {
            let bytes = bytes.as_bytes();
            let size = size.unwrap_or(bytes.len()).min(bytes.len());
            self.inner.receive(&bytes[..size], now);
        } else if let Ok(array) = data.cast::<PyByteArray>() {
            // SAFETY: no Python code runs while the slice is alive (it is only copied), so
            // nothing can resize or free the bytearray under it.
            let copy = unsafe {
                let bytes = array.as_bytes();
                bytes[..size.unwrap_or(bytes.len()).min(bytes.len())].to_vec()
            };
            self.inner.receive(&copy, now);
        } else {
            return Err(PyTypeError::new_err("data must be bytes or a bytearray"));
        }
        Ok(())
    }

    fn receive_eof(&mut self) {
        self.inner.receive_eof();
    }

    fn timeout(&mut self, now: f64) -> PyResult<()> {
        self.inner.timeout(seconds(now)?);
        Ok(())
    }

    fn tls_established(&mut self, now: f64) -> PyResult<()> {
        self.inner.tls_established(seconds(now)?);
        Ok(())
    }

    fn lost(&mut self) {
        self.output.clear();
        self.inner.lost();
    }

    fn stop(&mut self) {
        self.inner.stop();
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
    fn is_idle(&self) -> bool {
        self.inner.is_idle()
    }

    #[getter]
    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }

    /// The most bytes to read now; 0 for any number (see `_native.pyi`).
    #[getter]
    fn read_limit(&self) -> usize {
        match self.inner.read_limit() {
            usize::MAX => 0,
            n => n,
        }
    }

    /// The client's `(host, port)`: the PROXY header's, or else the `peer` given.
    #[getter]
    fn peer(&self) -> Option<(String, u16)> {
        self.inner
            .peer(self.peer)
            .map(|a| (a.ip().to_string(), a.port()))
    }

    /// The PROXY protocol header the connection began with, as a dict, or None.
    #[getter]
    fn proxy<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, pyo3::types::PyDict>>> {
        self.inner
            .proxy_header()
            .map(|h| crate::proxy::header_dict(py, h))
            .transpose()
    }
}
