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
//!   "message_end") and `data_aborted` (the content is dropped).
//! - Output is gathered across actions and handed over as one `bytes` when the driver must
//!   wait (to read, for a handshake, to close), so a pipelined group of commands costs one
//!   transport write: an asyncio transport takes every byte it is given, so the bytes
//!   count as written when handed over.
//! - perf: on a plain socket the driver may let this object do the socket calls itself
//!   (`read_step` or `read_socket`, and `step` with the socket's descriptor): one read and
//!   the replies it causes cost one callback of Python's event loop and one call here, and
//!   no `bytes` object, instead of the transport's Python read and write paths; with the
//!   server's [`crate::poller::ServerPoller`], no Python at all unless a hook must run. What cannot be sent at once is handed back
//!   for the transport to buffer, so the driver keeps the order of the bytes.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyString};

use smtp_core::ehlo::AuthMechanism;
use smtp_core::handler::{Answer, ConnectionInfo, Hook};
use smtp_core::reply::{ReplyLimits, ReplyParser};
use smtp_core::server::connection::{self, Action, Connection};
use smtp_core::server::{CommandLimits, Decision};

use crate::pool::{NativeRelay, Relay, RelayJob};
use crate::sans_io::{Event, event, seconds, server_config, set_trace};
use crate::server::{local_error, mail_options, parse_status, rcpt_options};
use crate::trace::PyTrace;
use crate::vocabulary::hook_event;

/// The action kinds of [`ServerConnection::next_action`].
const CONNECT: u8 = 0;
const HOOK: u8 = 1;
const WRITE: u8 = 2;
pub(crate) const READ: u8 = 3;
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
    /// Output not handed over yet (already reported written to the layer).
    output: Vec<u8>,
    /// The hook handed to Python waits for a decision (its answer is a status).
    decision_due: bool,
    /// The wire trace, once `set_trace` installed one.
    trace: Option<std::sync::Arc<PyTrace>>,
    /// What the hooks answered here keep.
    hooks: HookState,
    /// The socket's peer, as given.
    peer: Option<std::net::SocketAddr>,
    /// The core's relay, answering the transaction hooks itself (`relay=`).
    relay: Option<NativeRelay>,
    /// The deadline of the last READ or START_TLS action handed out (seconds).
    deadline: f64,
}

/// What one read of the socket led to (see [`ServerConnection::read_step_on`]).
pub(crate) enum ReadStep<'py> {
    /// Nothing to read (a spurious wake-up).
    Nothing,
    /// The end of the stream.
    Eof,
    /// Bytes came: the next action, as `step` gives it.
    Step((u8, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)),
}

/// The hooks' side of a connection: what is kept for the hooks answered here.
#[derive(Debug)]
struct HookState {
    /// The message being received.
    content: Vec<u8>,
    /// Which hooks Python has code for (the others are answered here).
    routing: Routing,
    /// perf: the envelope of the message just ended, kept here when MAIL and RCPT are
    /// answered here (`take_envelope` hands it over with the message).
    envelope: Option<Envelope>,
    /// The RCPT parameters of the transaction so far, when RCPT is answered here.
    rcpt_options: Vec<String>,
}

/// What `ServerConnection(mail_rcpt_hooks=...)` says Python wants.
#[derive(Debug, Clone, Copy)]
struct Routing {
    /// MAIL and RCPT go to Python; else they are accepted here and the envelope travels
    /// with the message.
    mail_rcpt: bool,
}

/// A finished transaction's envelope: the sender, MAIL's parameters, the recipients and
/// their parameters, as aiosmtpd lists them.
type Envelope = (String, Vec<String>, Vec<String>, Vec<String>);

impl HookState {
    fn drop_content(content: &mut Vec<u8>) {
        if content.capacity() > KEEP_CONTENT {
            *content = Vec::new();
        } else {
            content.clear();
        }
    }

    /// What to do with `hook`: answer it here, or hand it to Python.
    fn route(&mut self, py: Python<'_>, hook: Hook<'_>) -> Route {
        let content = &mut self.content;
        if !self.routing.mail_rcpt {
            match hook {
                Hook::Mail { .. } => {
                    self.rcpt_options.clear();
                    return Route::Here(Answer::Decision(Decision::Accept));
                }
                Hook::Rcpt { to, params } => {
                    self.rcpt_options.extend(rcpt_options(to, params));
                    return Route::Here(Answer::Decision(Decision::Accept));
                }
                Hook::DataEnd { transaction } => {
                    let sender = transaction
                        .from
                        .as_ref()
                        .map_or_else(String::new, |f| f.as_str().to_owned());
                    let recipients = transaction
                        .recipients
                        .iter()
                        .map(|r| r.as_str().to_owned())
                        .collect();
                    self.envelope = Some((
                        sender,
                        mail_options(&transaction.mail_params),
                        recipients,
                        std::mem::take(&mut self.rcpt_options),
                    ));
                }
                _ => {}
            }
        }
        if matches!(hook, Hook::Reset) {
            // Python's envelope starts over at MAIL, RSET, a greeting and STARTTLS.
            return Route::Here(Answer::Done);
        }
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

    /// One read from `fd` into the thread's buffer, taken by the connection (see
    /// `read_socket`).
    fn read_from(&mut self, fd: i32, now: std::time::Duration) -> PyResult<isize> {
        let limit = self.inner.read_limit();
        let inner = &mut self.inner;
        socket_io::with_read_buffer(|buffer| {
            // (0 never means "nothing": as the `read_limit` getter says it, no limit.)
            let size = match limit {
                0 => buffer.len(),
                limit => buffer.len().min(limit),
            };
            match socket_io::recv(fd, &mut buffer[..size]) {
                Ok(0) => Ok(0),
                Ok(n) => {
                    inner.receive(&buffer[..n], now);
                    Ok(n as isize)
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    Ok(-1)
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Sends what it can of the gathered output on the socket `fd` (see `step`), without
    /// waiting; the rest stays gathered, for the driver's transport.
    fn send_output(&mut self, fd: i32) {
        let mut sent = 0;
        while sent < self.output.len() {
            match socket_io::send(fd, &self.output[sent..]) {
                Ok(n) => sent += n,
                // Full, or broken: the transport's write finds out which, and reports a
                // broken connection as it always does.
                Err(_) => break,
            }
        }
        self.output.drain(..sent);
    }

    /// The next action for Python; see `next_action` and `step` (`with_output`, `fd`).
    fn advance<'py>(
        &mut self,
        py: Python<'py>,
        now: std::time::Duration,
        with_output: bool,
        fd: Option<i32>,
    ) -> PyResult<(u8, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
        loop {
            let (kind, payload) = match self.inner.next_action(now) {
                Action::Write(bytes) => {
                    self.output.extend_from_slice(bytes);
                    let n = bytes.len();
                    self.inner.written(n);
                    if self.output.len() < WRITE_BATCH {
                        continue;
                    }
                    if let Some(fd) = fd {
                        self.send_output(fd);
                        if self.output.is_empty() {
                            continue;
                        }
                    }
                    return Ok((WRITE, self.take_output(py), None));
                }
                Action::Hook(hook) => {
                    // The relay's hooks run as jobs off the event loop (they may wait on
                    // the next hop); answered with the job itself.
                    if let Some(job) = self.relay.as_ref().and_then(|relay| relay.job(&hook)) {
                        (HOOK, Bound::new(py, job)?.into_any())
                    } else {
                        match self.hooks.route(py, hook) {
                            Route::Here(answer) => {
                                self.inner.answer(answer);
                                continue;
                            }
                            Route::Python(event) => {
                                self.decision_due = event.needs_decision;
                                (HOOK, Bound::new(py, event)?.into_any())
                            }
                        }
                    }
                }
                // The driver waits now: what was said goes first (the layer gives the
                // same action again when asked).
                _ if !with_output && !self.output.is_empty() => {
                    return Ok((WRITE, self.take_output(py), None));
                }
                Action::Connect => (CONNECT, py.None().into_bound(py)),
                Action::Read { deadline } => {
                    self.deadline = deadline.as_secs_f64();
                    (READ, PyFloat::new(py, self.deadline).into_any())
                }
                Action::StartTls { deadline } => {
                    self.deadline = deadline.as_secs_f64();
                    (START_TLS, PyFloat::new(py, self.deadline).into_any())
                }
                Action::Close => (CLOSE, py.None().into_bound(py)),
            };
            if let Some(fd) = fd
                && kind != HOOK
                && !self.output.is_empty()
            {
                // What does not fit now goes with the action, to the transport.
                self.send_output(fd);
            }
            let output = (kind != HOOK && !self.output.is_empty()).then(|| self.take_output(py));
            return Ok((kind, payload, output));
        }
    }
}

impl ServerConnection {
    /// One read from `fd` and, when bytes came, the step they lead to (`read_step`), for
    /// the driver's [`crate::poller::ServerPoller`] too.
    pub(crate) fn read_step_on<'py>(
        &mut self,
        py: Python<'py>,
        fd: i32,
        now: std::time::Duration,
        send_fd: Option<i32>,
    ) -> PyResult<ReadStep<'py>> {
        Ok(match self.read_from(fd, now)? {
            0 => ReadStep::Eof,
            n if n < 0 => ReadStep::Nothing,
            _ => ReadStep::Step(self.advance(py, now, true, send_fd)?),
        })
    }

    /// The deadline of the last READ or START_TLS action handed out (seconds).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn last_deadline(&self) -> f64 {
        self.deadline
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
            .and_then(|text| {
                if text.contains('\n') {
                    parse_lines(text)
                } else {
                    parse_status(text)
                }
            })
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

/// One reply of several lines (`"250-a\r\n250 b"`, an edited EHLO reply) through the
/// engine's reply parser: every line must belong to it, the last one ending it.
fn parse_lines(text: &str) -> Option<smtp_core::reply::Reply> {
    let mut wire = text.trim_end_matches(['\r', '\n']).replace("\r\n", "\n");
    if wire.contains('\r') {
        return None;
    }
    wire = wire.replace('\n', "\r\n");
    wire.push_str("\r\n");
    let mut parser = ReplyParser::new(ReplyLimits::default());
    match parser.feed(wire.as_bytes()) {
        Ok((used, Some(reply))) if used == wire.len() => Some(reply),
        _ => None,
    }
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
    #[pyo3(signature = (hostname, *, now = 0.0, max_message_size = Some(26214400),
        max_recipients = 100, lmtp = false, auth = false, allow_insecure_auth = false,
        require_auth = false, timeout = 300.0, starttls = false, implicit_tls = false,
        require_tls = false, pipelining_sync = true, banner = None, smtputf8 = true,
        eight_bit_mime = true, auth_mechanisms = None, mail_rcpt_hooks = true, peer = None,
        proxy_protocol_timeout = None, proxy_trusted = Vec::new(), command_limits = None, relay = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        hostname: String,
        now: f64,
        max_message_size: Option<u64>,
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
        banner: Option<String>,
        smtputf8: bool,
        eight_bit_mime: bool,
        auth_mechanisms: Option<Vec<String>>,
        mail_rcpt_hooks: bool,
        peer: Option<(String, u16)>,
        proxy_protocol_timeout: Option<f64>,
        proxy_trusted: Vec<String>,
        command_limits: Option<(u32, Vec<(String, u32)>)>,
        relay: Option<Bound<'_, Relay>>,
    ) -> PyResult<ServerConnection> {
        let relay_hostname = if relay.is_some() {
            hostname.clone()
        } else {
            String::new()
        };
        let mut config = server_config(
            hostname,
            // None: no limit (u64::MAX, which the engine does not announce).
            max_message_size.unwrap_or(u64::MAX),
            max_recipients,
            lmtp,
            (auth, allow_insecure_auth, require_auth),
            timeout,
            (starttls, false, require_tls),
            pipelining_sync,
        )?;
        if banner.as_deref().is_some_and(|b| b.contains(['\r', '\n'])) {
            return Err(PyValueError::new_err("banner must be one line"));
        }
        config.banner = banner;
        // aiosmtpd's command_call_limit: (the default, [(verb, limit), ...]).
        config.command_limits = command_limits.map(|(default, per_verb)| {
            per_verb
                .iter()
                .fold(CommandLimits::new(default), |limits, (verb, limit)| {
                    limits.with(verb, *limit)
                })
        });
        // aiosmtpd's hooks: handle_NOOP, handle_RSET, handle_QUIT, an edited EHLO reply.
        config.handler_replies = true;
        config.smtputf8 = smtputf8;
        config.eight_bit_mime = eight_bit_mime;
        if let (true, Some(names)) = (auth, auth_mechanisms) {
            config.auth_mechanisms = names
                .iter()
                .map(|name| match AuthMechanism::parse(name) {
                    m @ (AuthMechanism::Plain | AuthMechanism::Login) => Ok(m),
                    _ => Err(PyValueError::new_err(format!(
                        "the server offers PLAIN and LOGIN, not {name:?}"
                    ))),
                })
                .collect::<PyResult<_>>()?;
        }
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
        let relay = match relay {
            Some(relay) => Some(NativeRelay::new(
                relay.get(),
                &ConnectionInfo {
                    id: 0,
                    peer,
                    local: None,
                    hostname: relay_hostname,
                    tls: false,
                    proxy: None,
                    tls_state: Default::default(),
                },
            )?),
            None => None,
        };
        Ok(ServerConnection {
            peer,
            relay,
            inner,
            output: Vec::new(),
            deadline: 0.0,
            decision_due: false,
            trace: None,
            hooks: HookState {
                content: Vec::new(),
                routing: Routing {
                    mail_rcpt: mail_rcpt_hooks,
                },
                envelope: None,
                rcpt_options: Vec::new(),
            },
        })
    }

    /// The 421 a server at its connection limit says to a client before closing it.
    #[staticmethod]
    fn busy_reply<'py>(py: Python<'py>, hostname: &str) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &connection::busy_reply(hostname))
    }

    fn next_action<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<(u8, Bound<'py, PyAny>)> {
        let (kind, payload, _) = self.advance(py, seconds(now)?, false, None)?;
        Ok((kind, payload))
    }

    /// perf: `next_action`, with the output gathered before a waiting action (CONNECT,
    /// READ, START_TLS, CLOSE) handed over with it, as `(kind, payload, output or
    /// None)`: one call where `next_action` takes two. Write the output first; when the
    /// driver cannot act on the action at once (the transport is full), asking again gives
    /// the same waiting action.
    ///
    /// With `fd`, the descriptor of a plain non-blocking socket whose transport holds
    /// nothing unsent, the output is sent on it here; only what the socket did not take
    /// (or all of it, when sending failed) is handed over, to go through the transport.
    #[pyo3(signature = (now, fd = None))]
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        now: f64,
        fd: Option<i32>,
    ) -> PyResult<(u8, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
        self.advance(py, seconds(now)?, true, fd)
    }

    /// perf: reads once from the plain non-blocking socket `fd` (at most `read_limit`
    /// bytes) and takes what came, as `receive` does. Returns the number of bytes read: 0
    /// at the end of the stream, -1 when there was nothing to read; a failed read raises
    /// OSError. The buffer is the thread's, so an idle connection holds none.
    fn read_socket(&mut self, fd: i32, now: f64) -> PyResult<isize> {
        self.read_from(fd, seconds(now)?)
    }

    /// perf: `read_socket`, then, when bytes came, `step(now, send_fd)` in the same call:
    /// the step's tuple; else what `read_socket` returned (0 or -1).
    #[pyo3(signature = (fd, now, send_fd = None))]
    fn read_step<'py>(
        &mut self,
        py: Python<'py>,
        fd: i32,
        now: f64,
        send_fd: Option<i32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.read_step_on(py, fd, seconds(now)?, send_fd)? {
            ReadStep::Nothing => (-1isize).into_pyobject(py)?.into_any(),
            ReadStep::Eof => 0isize.into_pyobject(py)?.into_any(),
            ReadStep::Step(step) => step.into_pyobject(py)?.into_any(),
        })
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
        if self.relay.is_some()
            && let Some(job) = status.and_then(|s| s.cast::<RelayJob>().ok())
        {
            self.decision_due = false;
            self.inner.answer(job.get().take_answer());
            return;
        }
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

    /// The lines of the EHLO reply the engine would say now (for aiosmtpd's
    /// `handle_EHLO(..., responses)`), as written: `["250-mx.example", ..., "250 DSN"]`.
    fn ehlo_lines(&self) -> Vec<String> {
        let reply = self.inner.session().capabilities().to_reply();
        String::from_utf8_lossy(&reply.to_bytes())
            .split("\r\n")
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// perf: with `mail_rcpt_hooks=False`, the envelope of the message just handed over
    /// ("message_end"): `(sender, mail_options, recipients, rcpt_options)`; None otherwise.
    fn take_envelope(&mut self) -> Option<Envelope> {
        self.hooks.envelope.take()
    }

    fn receive_eof(&mut self) {
        self.inner.receive_eof();
    }

    fn timeout(&mut self, now: f64) -> PyResult<()> {
        self.inner.timeout(seconds(now)?);
        Ok(())
    }

    /// The TLS handshake of the last START_TLS action succeeded at `now`. `tls` tells what
    /// it negotiated: the `TlsSession` that did it, or a dict with "version", "cipher",
    /// "server_name" and "peer_certificates" (DER bytes) for another TLS stack; it is
    /// then `self.tls`.
    #[pyo3(signature = (now, tls = None))]
    fn tls_established(&mut self, now: f64, tls: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let now = seconds(now)?;
        match tls {
            Some(tls) => {
                let info = crate::vocabulary::tls_info_from(tls)?;
                self.inner.tls_established_with(now, info);
            }
            None => self.inner.tls_established(now),
        }
        Ok(())
    }

    /// What the TLS handshake negotiated, as given to `tls_established` (a dict: "version",
    /// "cipher", "server_name", "peer_certificates"), or None before it (or when it was not
    /// told).
    #[getter]
    fn tls<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, pyo3::types::PyDict>>> {
        self.inner
            .tls_info()
            .filter(|info| **info != smtp_core::tls::TlsInfo::default())
            .map(|info| crate::vocabulary::tls_info_dict(py, info))
            .transpose()
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

    /// The deadline of the last READ or START_TLS action handed out, in the clock of
    /// `now` (0.0 before the first).
    #[getter]
    fn deadline(&self) -> f64 {
        self.deadline
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

/// The socket calls of `read_socket` and `step(fd=...)` on a descriptor the driver's
/// transport owns: it stays open while Python holds the transport, and is never closed
/// here.
mod socket_io {
    use std::cell::RefCell;
    use std::io::{self, Read, Write};

    /// How much one read takes at most (as the asyncio server's own buffer).
    const READ_SIZE: usize = 64 * 1024;

    thread_local! {
        /// One read buffer per thread (the event loop's): input is handed to the
        /// connection layer at once, so no connection keeps one.
        static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
    }

    pub(super) fn with_read_buffer<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
        READ_BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => f(&mut buffer),
            // Only if a read ever ran inside another (a trace callback reading a socket).
            Err(_) => f(&mut vec![0; READ_SIZE]),
        })
    }

    #[cfg(unix)]
    fn with_socket<T>(
        fd: i32,
        f: impl FnOnce(&mut std::net::TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        use std::os::fd::FromRawFd;
        if fd < 0 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: `fd` is the open socket of a transport the caller (smtpx.aio.Server)
        // holds for the whole call; the stream only borrows it: ManuallyDrop keeps it from
        // being closed here. `TcpStream` is only used for `recv` and `send`, which work on
        // any connected stream socket.
        let mut stream =
            std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
        f(&mut stream)
    }

    #[cfg(not(unix))]
    fn with_socket<T>(
        _fd: i32,
        _f: impl FnOnce(&mut std::net::TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// One `recv`.
    pub(super) fn recv(fd: i32, buffer: &mut [u8]) -> io::Result<usize> {
        with_socket(fd, |stream| stream.read(buffer))
    }

    /// One `send` (MSG_NOSIGNAL: a closed peer is an error, not a signal).
    pub(super) fn send(fd: i32, bytes: &[u8]) -> io::Result<usize> {
        with_socket(fd, |stream| stream.write(bytes))
    }
}
