//! `smtpx._native.Client`: the blocking [`SmtpClient`] for Python.
//!
//! Every network wait runs with the interpreter detached (`py.detach`), so other Python
//! threads run meanwhile; the connection sits behind a mutex that is only ever locked
//! while detached. Replies go back as plain tuples, which `smtpx/client.py` turns into
//! smtplib's return conventions and into result objects.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

use smtp_core::auth::Credentials;
use smtp_core::blocking::client::{ClientOptions, SmtpClient, TlsMode};
use smtp_core::client::{ClientTimeouts, Envelope, Recipient, TransactionResult};
use smtp_core::command::Command;
use smtp_core::reply::Reply;
use smtp_core::tls::{self, RootCerts, TlsClientExtras, TlsClientOptions, TlsIdentity};
use smtp_core::{Address, ForwardPath, ReversePath};

use crate::errors::{SmtpDisconnected, client_error, smtplib_message};
use crate::results::ResultObjects;
use crate::trace::PyTrace;

/// How much is asked of a Python file object at a time.
const READ_CHUNK: usize = 64 * 1024;

/// `(code, enhanced code or None, text, smtplib message bytes)`.
pub type ReplyTuple = (u16, Option<String>, String, Vec<u8>);

/// `(address, RCPT reply, LMTP delivery reply or None, accepted)`.
type RecipientTuple = (String, ReplyTuple, Option<ReplyTuple>, bool);

/// `(MAIL reply, recipients, final reply or None, queue id or None)`.
pub(crate) type ResultTuple = (
    ReplyTuple,
    Vec<RecipientTuple>,
    Option<ReplyTuple>,
    Option<String>,
);

pub fn reply_tuple(reply: &Reply) -> ReplyTuple {
    (
        reply.code().get(),
        reply.enhanced().map(|e| e.to_string()),
        reply.text(),
        smtplib_message(reply),
    )
}

pub(crate) fn result_tuple(result: &TransactionResult) -> ResultTuple {
    (
        reply_tuple(&result.mail),
        result
            .recipients
            .iter()
            .map(|r| {
                (
                    r.address.as_str().to_owned(),
                    reply_tuple(&r.reply),
                    r.delivery.as_ref().map(reply_tuple),
                    r.is_accepted(),
                )
            })
            .collect(),
        result.data.as_ref().map(reply_tuple),
        result.queue_id().map(str::to_owned),
    )
}

/// One outcome of a batch in Python's terms: a `SendResult`, or the exception.
pub(crate) fn outcome_object<'py>(
    py: Python<'py>,
    objects: &mut ResultObjects<'py>,
    outcome: Result<TransactionResult, smtp_core::blocking::client::Error>,
) -> PyResult<Py<PyAny>> {
    match outcome {
        Ok(result) => Ok(objects.result(&result)?.unbind()),
        Err(e) => Ok(client_error(e, false).into_value(py).into_any()),
    }
}

/// The bare address of an address given to smtplib's `sendmail`, as
/// `smtpx.common.bare_address` finds it. perf: an address that is bare already (no `<`,
/// no CR, LF or NUL, printable ASCII at both ends, so that Python's `strip()` would
/// leave it as it is) is taken here; anything else goes to `bare_address` itself, so the
/// outcome (and any error) is always that function's.
fn smtplib_address(address: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = address.cast::<PyString>()
        && let Ok(text) = text.to_str()
        && let (Some(first), Some(last)) = (text.bytes().next(), text.bytes().last())
        && first.is_ascii_graphic()
        && last.is_ascii_graphic()
        && !text.bytes().any(|b| matches!(b, b'<' | b'\r' | b'\n' | 0))
    {
        return Ok(text.to_owned());
    }
    let py = address.py();
    py.import("smtpx.common")?
        .getattr("bare_address")?
        .call1((address,))?
        .extract()
}

/// Refuses text that would break a command line; the engine checks again, this makes the
/// error a `ValueError` before a parameter string is even looked at.
fn no_line_breaks(what: &str, text: &str) -> PyResult<()> {
    if text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        Err(PyValueError::new_err(format!(
            "{what} contains CR, LF or NUL: {text:?}"
        )))
    } else {
        Ok(())
    }
}

/// A TLS configuration, or `None` for the engine's default (webpki roots, full checks).
pub(crate) fn tls_config(
    insecure: bool,
    ca_pem: Option<Vec<u8>>,
) -> PyResult<Option<Arc<rustls::ClientConfig>>> {
    tls_config_with_identity(insecure, ca_pem, None)
}

/// The client certificate of a Python client: smtplib's `certfile`/`keyfile` and
/// aiosmtplib's `client_cert`/`client_key` (PEM files). As with `ssl`'s
/// `load_cert_chain`, the key may be in the certificate's file (`key` None).
pub(crate) fn client_identity(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> PyResult<Option<TlsIdentity>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(PyValueError::new_err(
                "a client key needs its certificate (certfile / client_cert)",
            ));
        }
        (Some(cert), key) => {
            let key = key.unwrap_or_else(|| cert.clone());
            (cert, key)
        }
    };
    TlsIdentity::from_pem_files(&cert, &key)
        .map(Some)
        .map_err(|e| client_error(e.into(), true))
}

/// A TLS configuration that also shows `identity` (mutual TLS) to a server that asks for
/// a certificate; `None` for the engine's default when there is nothing to add to it.
pub(crate) fn tls_config_with_identity(
    insecure: bool,
    ca_pem: Option<Vec<u8>>,
    identity: Option<TlsIdentity>,
) -> PyResult<Option<Arc<rustls::ClientConfig>>> {
    if !insecure && ca_pem.is_none() && identity.is_none() {
        return Ok(None);
    }
    let options = TlsClientOptions {
        roots: ca_pem.map(RootCerts::Pem).unwrap_or_default(),
        dangerous_accept_invalid_certs: insecure,
    };
    let extras = TlsClientExtras {
        identity,
        ..TlsClientExtras::default()
    };
    tls::client_config_with(&options, &extras)
        .map(Some)
        .map_err(|e| client_error(e.into(), true))
}

/// The envelope, with the MAIL and RCPT parameters read by the engine's command parser
/// (so that this binding parses nothing itself).
pub(crate) fn envelope(
    from: &str,
    to: &[String],
    mail_options: &[String],
    rcpt_options: &[String],
) -> PyResult<Envelope> {
    no_line_breaks("the sender", from)?;
    for (what, list) in [
        ("a recipient", to),
        ("a MAIL option", mail_options),
        ("an RCPT option", rcpt_options),
    ] {
        for item in list {
            no_line_breaks(what, item)?;
        }
    }
    // Addresses as smtplib sends them: a local part alone is taken (local submission,
    // LMTP); the grammar still refuses anything that could change the command line.
    let bad = |address: &str, e: &dyn std::fmt::Display| {
        PyValueError::new_err(format!("invalid address {address:?}: {e}"))
    };
    let from = if from.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(
            Address::parse_allowing_bare_local_part(from).map_err(|e| bad(from, &e))?,
        )
    };
    let params = if mail_options.is_empty() {
        Default::default()
    } else {
        let line = format!("MAIL FROM:<> {}", mail_options.join(" "));
        match Command::parse(line.as_bytes()) {
            Ok(Command::Mail { params, .. }) => params,
            Ok(_) => return Err(PyValueError::new_err("invalid MAIL options")),
            Err(e) => {
                return Err(PyValueError::new_err(format!(
                    "invalid MAIL options {mail_options:?}: {e}"
                )));
            }
        }
    };
    let rcpt_params = if rcpt_options.is_empty() {
        Default::default()
    } else {
        let line = format!("RCPT TO:<postmaster> {}", rcpt_options.join(" "));
        match Command::parse(line.as_bytes()) {
            Ok(Command::Rcpt { params, .. }) => params,
            Ok(_) => return Err(PyValueError::new_err("invalid RCPT options")),
            Err(e) => {
                return Err(PyValueError::new_err(format!(
                    "invalid RCPT options {rcpt_options:?}: {e}"
                )));
            }
        }
    };
    let recipients = to
        .iter()
        .map(|t| {
            Ok(Recipient {
                address: ForwardPath::Mailbox(
                    Address::parse_allowing_bare_local_part(t).map_err(|e| bad(t, &e))?,
                ),
                params: rcpt_params.clone(),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    if recipients.is_empty() {
        return Err(PyValueError::new_err("no recipients"));
    }
    Ok(Envelope {
        from,
        params,
        recipients,
    })
}

/// The options both Python clients (this one and `crate::runner`) make of their
/// arguments: `tls` is "none", "starttls" (when offered), "starttls-required" or
/// "implicit"; `timeout` (seconds) bounds connecting and each reply.
pub(crate) fn client_options(
    helo_name: String,
    tls: &str,
    timeout: Option<f64>,
    (username, password): (Option<String>, Option<String>),
    allow_insecure_auth: bool,
    lmtp: bool,
    trace: Option<&Arc<PyTrace>>,
) -> PyResult<ClientOptions> {
    let mut options = ClientOptions::new(helo_name);
    options.trace = trace.map(|t| t.sink());
    options.tls = match tls {
        "none" => TlsMode::None,
        "starttls" => TlsMode::StartTlsOpportunistic,
        "starttls-required" => TlsMode::StartTlsRequired,
        "implicit" => TlsMode::Implicit,
        other => {
            return Err(PyValueError::new_err(format!(
                "tls must be none, starttls, starttls-required or implicit, not {other:?}"
            )));
        }
    };
    if let Some(seconds) = timeout {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(PyValueError::new_err("timeout must be a positive number"));
        }
        let each = Duration::from_secs_f64(seconds);
        options.connect_timeout = each;
        options.timeouts = ClientTimeouts {
            greeting: each,
            command: each,
            rcpt: each,
            data_start: each,
            data_block: each,
            data_end: each,
        };
    }
    options.credentials = match (username, password) {
        (Some(user), Some(password)) => Some(Credentials::password(user, password)),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "give both username and password, or neither",
            ));
        }
    };
    options.allow_insecure_auth = allow_insecure_auth;
    options.lmtp = lmtp;
    Ok(options)
}

/// Takes over a connected TCP socket that Python gave up (`socket.detach()`).
fn owned_tcp(fd: i32) -> PyResult<std::net::TcpStream> {
    if fd < 0 {
        return Err(PyValueError::new_err("sock_fd must be a file descriptor"));
    }
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: the caller (smtpx/client.py) passes the descriptor returned by
        // `socket.detach()`, which Python no longer owns or closes; it is a connected
        // stream socket, so this TcpStream becomes its only owner.
        Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
    }
    #[cfg(not(unix))]
    {
        Err(PyValueError::new_err("sock_fd is supported on Unix only"))
    }
}

thread_local! {
    /// The client (its address) whose Python callback this thread is running while it
    /// holds that client's connection: the callback's own calls on that client are
    /// refused (they would wait for the lock this thread holds).
    static CALLING_BACK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f` (Python code, attached) as a callback of `client`'s operation under way.
fn calling_back<T>(client: usize, f: impl FnOnce() -> T) -> T {
    let before = CALLING_BACK.with(|c| c.replace(client));
    let out = f();
    CALLING_BACK.with(|c| c.set(before));
    out
}

/// A Python binary file object as a [`Read`]: each read attaches, calls `read(64 KiB)`
/// and detaches again. A Python exception is kept to be raised as it was.
struct PyReader {
    /// The client sending (see [`calling_back`]).
    client: usize,
    file: Py<PyAny>,
    pending: Vec<u8>,
    at: usize,
    error: Option<PyErr>,
}

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.pending.len() {
            let client = self.client;
            let chunk = Python::attach(|py| {
                calling_back(client, || -> PyResult<Vec<u8>> {
                    let data = self.file.bind(py).call_method1("read", (READ_CHUNK,))?;
                    if let Ok(bytes) = data.cast::<PyBytes>() {
                        Ok(bytes.as_bytes().to_vec())
                    } else if let Ok(array) = data.cast::<PyByteArray>() {
                        Ok(array.to_vec())
                    } else {
                        Err(PyTypeError::new_err(
                            "the message file's read() must return bytes (open it in binary mode)",
                        ))
                    }
                })
            });
            match chunk {
                Ok(chunk) if chunk.is_empty() => return Ok(0),
                Ok(chunk) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                Err(e) => {
                    self.error = Some(e);
                    return Err(io::Error::other("the message file's read() raised"));
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A connection to an SMTP or LMTP server. Made by [`Client::connect`], which greets (and
/// upgrades, and authenticates) as asked; use from one thread at a time or not, the calls
/// are serialised. `trace` (at connect, or `set_trace` later) sees every line of the
/// conversation as the engine traces it (see `crate::trace`).
#[pyclass(frozen, module = "smtpx._native")]
#[derive(Debug)]
pub struct Client {
    inner: Mutex<Option<SmtpClient>>,
    /// The wire trace's switch: the engine takes its sink at connect, so every client
    /// has one; while it holds no callable no line is even built (`Trace::enabled`).
    trace: Arc<PyTrace>,
}

fn lock(m: &Mutex<Option<SmtpClient>>) -> MutexGuard<'_, Option<SmtpClient>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// This client's identity for [`calling_back`].
    fn key(&self) -> usize {
        self as *const Client as usize
    }

    /// Refuses a call made by a callback of this client's own operation under way (an
    /// `on_result`, a message file's `read`): it would wait for itself.
    fn not_from_own_callback(&self) -> PyResult<()> {
        if CALLING_BACK.with(std::cell::Cell::get) == self.key() {
            return Err(PyRuntimeError::new_err(
                "this connection is busy with the operation whose callback is running",
            ));
        }
        Ok(())
    }

    /// Runs `f` on the open connection with the interpreter detached.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut SmtpClient) -> Result<T, smtp_core::blocking::client::Error> + Send,
    ) -> PyResult<T> {
        self.not_from_own_callback()?;
        py.detach(|| {
            let mut guard = lock(&self.inner);
            match guard.as_mut() {
                Some(client) => f(client).map_err(|e| client_error(e, false)),
                None => Err(SmtpDisconnected::new_err("the connection is closed")),
            }
        })
    }

    /// One transaction: `message` is bytes (sent from where it is: a `bytes` object
    /// cannot change), a bytearray (copied), or a binary file object read 64 KiB at a
    /// time.
    fn transaction(
        &self,
        py: Python<'_>,
        envelope: &Envelope,
        message: &Bound<'_, PyAny>,
    ) -> PyResult<TransactionResult> {
        self.not_from_own_callback()?;
        if let Ok(bytes) = message.cast::<PyBytes>() {
            let data: &[u8] = bytes.as_bytes();
            return self.with(py, move |c| c.send_bytes(envelope, data));
        }
        if let Ok(array) = message.cast::<PyByteArray>() {
            let data = array.to_vec();
            return self.with(py, move |c| c.send_bytes(envelope, &data));
        }
        if !message.hasattr("read")? {
            return Err(PyTypeError::new_err(
                "message must be bytes or a binary file object",
            ));
        }
        let mut reader = PyReader {
            client: self.key(),
            file: message.clone().unbind(),
            pending: Vec::new(),
            at: 0,
            error: None,
        };
        let outcome = py.detach(|| {
            let mut guard = lock(&self.inner);
            match guard.as_mut() {
                Some(client) => Ok(client.send(envelope, &mut reader, None)),
                None => Err(()),
            }
        });
        match outcome {
            Err(()) => Err(SmtpDisconnected::new_err("the connection is closed")),
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(match reader.error.take() {
                Some(raised) => raised,
                None => client_error(e, false),
            }),
        }
    }

    /// Reads what is known without waiting for the network.
    fn peek<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&SmtpClient) -> T + Send,
    ) -> PyResult<Option<T>>
    where
        T: Send,
    {
        self.not_from_own_callback()?;
        Ok(py.detach(|| lock(&self.inner).as_ref().map(f)))
    }
}

#[pymethods]
impl Client {
    /// Connects to `host`:`port`, greets with `helo_name` and, as `tls` says ("none",
    /// "starttls" when offered, "starttls-required", "implicit"), encrypts; logs in when a
    /// username is given. `timeout` (seconds) bounds the connection and each reply.
    #[staticmethod]
    #[pyo3(signature = (host, port, *, helo_name, tls = "none", server_name = None,
        insecure = false, ca_pem = None, timeout = None, lmtp = false, username = None,
        password = None, allow_insecure_auth = false, pipelining = true, chunking = true,
        trace = None, sock_fd = None, unix_path = None, client_cert = None, client_key = None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
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
        allow_insecure_auth: bool,
        pipelining: bool,
        chunking: bool,
        trace: Option<Py<PyAny>>,
        sock_fd: Option<i32>,
        unix_path: Option<std::path::PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
    ) -> PyResult<Client> {
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
        let identity = client_identity(client_cert, client_key)?;
        if options.tls != TlsMode::None {
            options.tls_config = tls_config_with_identity(insecure, ca_pem, identity)?;
        }
        options.pipelining = pipelining;
        options.chunking = chunking;
        let server_name = server_name.unwrap_or_else(|| host.clone());
        let client = match (sock_fd, unix_path) {
            #[cfg(unix)]
            (_, Some(path)) => py.detach(|| SmtpClient::connect_unix(&path, options)),
            #[cfg(not(unix))]
            (_, Some(_)) => {
                return Err(PyValueError::new_err("Unix sockets need a Unix system"));
            }
            (Some(fd), None) => {
                let tcp = owned_tcp(fd)?;
                py.detach(|| SmtpClient::from_tcp(tcp, &server_name, options))
            }
            (None, None) => {
                py.detach(|| SmtpClient::connect((host.as_str(), port), &server_name, options))
            }
        }
        .map_err(|e| client_error(e, true))?;
        Ok(Client {
            inner: Mutex::new(Some(client)),
            trace,
        })
    }

    /// Calls `trace(connection_id, direction, text)` for each line from now on (direction
    /// "C" or "S", text redacted by the engine), or stops calling when None.
    #[pyo3(signature = (trace))]
    fn set_trace(&self, trace: Option<Py<PyAny>>) {
        // The slot's lock is never held while attaching, so taking it attached is safe.
        self.trace.set(trace);
    }

    /// The last EHLO (or LHLO) reply's lines, the server's name first; None after a HELO
    /// fallback or once closed.
    fn ehlo_lines(&self, py: Python<'_>) -> PyResult<Option<Vec<String>>> {
        Ok(self
            .peek(py, |c| {
                c.capabilities()
                    .map(|caps| caps.to_reply().lines().to_vec())
            })?
            .flatten())
    }

    /// The announced extensions as `(lower-case keyword, parameters)`, as smtplib's
    /// `esmtp_features` holds them.
    fn features(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        Ok(self
            .ehlo_lines(py)?
            .unwrap_or_default()
            .iter()
            .skip(1)
            .map(|line| match line.split_once(' ') {
                Some((keyword, params)) => (keyword.to_ascii_lowercase(), params.to_owned()),
                None => (line.to_ascii_lowercase(), String::new()),
            })
            .collect())
    }

    /// True when the connection is encrypted.
    fn is_tls(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.peek(py, SmtpClient::is_tls)?.unwrap_or(false))
    }

    /// True once the connection is over.
    fn is_closed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.peek(py, SmtpClient::is_closed)?.unwrap_or(true))
    }

    /// The server's address as `(host, port)`.
    fn peer(&self, py: Python<'_>) -> PyResult<Option<(String, u16)>> {
        self.peek(py, |c| {
            let addr = c.peer_addr();
            (addr.ip().to_string(), addr.port())
        })
    }

    /// Upgrades with STARTTLS and greets again; `client_cert` (and `client_key`, when the
    /// key is in a file of its own) is shown to a server that asks for a certificate.
    #[pyo3(signature = (server_name, *, insecure = false, ca_pem = None, client_cert = None,
        client_key = None))]
    fn starttls(
        &self,
        py: Python<'_>,
        server_name: String,
        insecure: bool,
        ca_pem: Option<Vec<u8>>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
    ) -> PyResult<()> {
        let identity = client_identity(client_cert, client_key)?;
        let config = tls_config_with_identity(insecure, ca_pem, identity)?;
        self.with(py, move |c| c.starttls(&server_name, config))
    }

    /// Authenticates (PLAIN or LOGIN, as offered) and returns the 235 reply. Without TLS
    /// it fails (SmtpInsecureAuthError, nothing sent) unless `allow_insecure_auth`.
    #[pyo3(signature = (username, password, *, allow_insecure_auth = false))]
    fn login(
        &self,
        py: Python<'_>,
        username: String,
        password: String,
        allow_insecure_auth: bool,
    ) -> PyResult<ReplyTuple> {
        no_line_breaks("the user name", &username)?;
        no_line_breaks("the password", &password)?;
        let credentials = Credentials::password(username, password);
        self.with(py, move |c| {
            c.set_allow_insecure_auth(allow_insecure_auth);
            c.login(credentials)
        })
        .map(|r| reply_tuple(&r))
    }

    /// NOOP; the reply whatever its code.
    fn noop(&self, py: Python<'_>) -> PyResult<ReplyTuple> {
        self.with(py, SmtpClient::noop).map(|r| reply_tuple(&r))
    }

    /// RSET; the reply whatever its code.
    fn rset(&self, py: Python<'_>) -> PyResult<ReplyTuple> {
        self.with(py, SmtpClient::rset).map(|r| reply_tuple(&r))
    }

    /// VRFY; the reply whatever its code.
    fn vrfy(&self, py: Python<'_>, argument: String) -> PyResult<ReplyTuple> {
        no_line_breaks("the VRFY argument", &argument)?;
        self.with(py, move |c| c.vrfy(&argument))
            .map(|r| reply_tuple(&r))
    }

    /// EXPN; the reply whatever its code.
    fn expn(&self, py: Python<'_>, argument: String) -> PyResult<ReplyTuple> {
        no_line_breaks("the EXPN argument", &argument)?;
        self.with(py, move |c| c.expn(&argument))
            .map(|r| reply_tuple(&r))
    }

    /// HELP; the reply whatever its code.
    #[pyo3(signature = (topic = None))]
    fn help(&self, py: Python<'_>, topic: Option<String>) -> PyResult<ReplyTuple> {
        if let Some(topic) = &topic {
            no_line_breaks("the HELP topic", topic)?;
        }
        self.with(py, move |c| c.help(topic.as_deref()))
            .map(|r| reply_tuple(&r))
    }

    /// Sends one message: `message` is bytes, or a binary file object read 64 KiB at a
    /// time. Returns `(mail, recipients, data, queue_id)`; refusals are in the replies,
    /// not exceptions.
    #[pyo3(signature = (from_addr, to_addrs, message, mail_options = Vec::new(),
        rcpt_options = Vec::new()))]
    fn send(
        &self,
        py: Python<'_>,
        from_addr: &str,
        to_addrs: Vec<String>,
        message: &Bound<'_, PyAny>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
    ) -> PyResult<ResultTuple> {
        let envelope = envelope(from_addr, &to_addrs, &mail_options, &rcpt_options)?;
        self.transaction(py, &envelope, message)
            .map(|r| result_tuple(&r))
    }

    /// perf: `send` for smtplib's `sendmail`, which needs only the refusals: None when
    /// the message was accepted for every recipient (SMTP, the final reply 2xx), without
    /// building the result tuple; otherwise the result tuple as `send` gives it. The
    /// addresses are taken as smtplib's `sendmail` takes them (`smtpx.common.bare_address`,
    /// see [`smtplib_address`]).
    #[pyo3(signature = (from_addr, to_addrs, message, mail_options = Vec::new(),
        rcpt_options = Vec::new()))]
    fn sendmail(
        &self,
        py: Python<'_>,
        from_addr: &Bound<'_, PyAny>,
        to_addrs: Vec<Bound<'_, PyAny>>,
        message: &Bound<'_, PyAny>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
    ) -> PyResult<Option<ResultTuple>> {
        let from_addr = smtplib_address(from_addr)?;
        let to_addrs = to_addrs
            .iter()
            .map(smtplib_address)
            .collect::<PyResult<Vec<_>>>()?;
        let envelope = envelope(&from_addr, &to_addrs, &mail_options, &rcpt_options)?;
        let result = self.transaction(py, &envelope, message)?;
        let positive = |r: &Reply| (200..300).contains(&r.code().get());
        let all_accepted = positive(&result.mail)
            && result
                .recipients
                .iter()
                .all(|r| r.is_accepted() && r.delivery.is_none())
            && result.data.as_ref().is_some_and(positive);
        Ok((!all_accepted).then(|| result_tuple(&result)))
    }

    /// Sends several messages, each `(from_addr, to_addrs, message)` (`message` a
    /// `bytes` object), one
    /// transaction each, the next chained behind the previous one's final dot when the
    /// server pipelines. Every envelope is checked before anything is sent (ValueError).
    /// Returns one entry per message, in order: a `SendResult` (see
    /// `crate::results`), or the exception that message failed with. An error that closed
    /// the connection ends the list early.
    ///
    /// With `on_result`, `on_result(index, outcome)` is called for each message as soon
    /// as its outcome is known, while the next ones are under way. An exception it raises
    /// stops the batch: no further message is started, the ones already sent are finished
    /// (their replies read, so the connection stays usable) without being reported, and
    /// the exception is raised here.
    #[pyo3(signature = (messages, mail_options = Vec::new(), rcpt_options = Vec::new(),
        on_result = None))]
    fn send_batch(
        &self,
        py: Python<'_>,
        messages: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyBytes>)>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
        on_result: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        self.not_from_own_callback()?;
        // perf: an entry whose sender and recipients are the very objects of the entry
        // before it (`smtpx.common.batch_items` shares a repeated envelope's) uses that
        // entry's envelope instead of reading and parsing them again. The objects are
        // only read here, attached, so they cannot change in between.
        let mut envelopes: Vec<Envelope> = Vec::new();
        let mut envelope_of = Vec::with_capacity(messages.len());
        let mut previous: Option<(&Bound<'_, PyAny>, &Bound<'_, PyAny>)> = None;
        for (from, to, _) in &messages {
            let repeated = previous.is_some_and(|(f, t)| from.is(f) && to.is(t));
            if !repeated {
                let sender: String = from.extract()?;
                let recipients: Vec<String> = to.extract()?;
                envelopes.push(envelope(
                    &sender,
                    &recipients,
                    &mail_options,
                    &rcpt_options,
                )?);
                previous = Some((from, to));
            }
            envelope_of.push(envelopes.len() - 1);
        }
        // perf: each message is sent from its `bytes` object, not a copy (a `bytes`
        // cannot change, and `messages` holds each one until the batch is over).
        let bodies: Vec<&[u8]> = messages
            .iter()
            .map(|(_, _, body)| body.as_bytes())
            .collect();
        let batch = envelope_of
            .iter()
            .map(|&i| &envelopes[i])
            .zip(bodies.iter().copied());
        let Some(on_result) = on_result else {
            let outcomes = py.detach(|| {
                lock(&self.inner)
                    .as_mut()
                    .map(|client| client.send_batch(batch))
            });
            let Some(outcomes) = outcomes else {
                return Err(SmtpDisconnected::new_err("the connection is closed"));
            };
            let mut objects = ResultObjects::new(py)?;
            return outcomes
                .into_iter()
                .map(|outcome| outcome_object(py, &mut objects, outcome))
                .collect();
        };
        // Streamed: each outcome is made and handed over as it comes, attached for that
        // moment only. `stopped` ends the messages the engine takes once the callback
        // (or the building of an outcome) failed.
        let stopped = AtomicBool::new(false);
        let batch = batch.take_while(|_| !stopped.load(Ordering::Relaxed));
        let mut reported: Vec<Py<PyAny>> = Vec::new();
        let mut failure: Option<PyErr> = None;
        let key = self.key();
        let opened = py.detach(|| {
            let mut guard = lock(&self.inner);
            let client = guard.as_mut()?;
            client.send_batch_with(batch, |index, outcome| {
                if failure.is_some() {
                    return; // a message already under way when the callback failed
                }
                Python::attach(|py| {
                    let given = ResultObjects::new(py)
                        .and_then(|mut objects| outcome_object(py, &mut objects, outcome))
                        .and_then(|object| {
                            calling_back(key, || {
                                on_result.call1(py, (index, object.clone_ref(py)))
                            })?;
                            Ok(object)
                        });
                    match given {
                        Ok(object) => reported.push(object),
                        Err(e) => {
                            stopped.store(true, Ordering::Relaxed);
                            failure = Some(e);
                        }
                    }
                });
            });
            Some(())
        });
        if opened.is_none() {
            return Err(SmtpDisconnected::new_err("the connection is closed"));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(reported),
        }
    }

    /// Sends `line` as it is and returns the reply whatever its code (smtplib's
    /// `docmd`); `secret` redacts it in the trace. AUTH lines need TLS or
    /// `allow_insecure_auth` (SmtpInsecureAuthError otherwise, nothing sent).
    #[pyo3(signature = (line, *, secret = false, allow_insecure_auth = false))]
    fn command(
        &self,
        py: Python<'_>,
        line: String,
        secret: bool,
        allow_insecure_auth: bool,
    ) -> PyResult<ReplyTuple> {
        no_line_breaks("the command", &line)?;
        self.with(py, move |c| {
            c.set_allow_insecure_auth(allow_insecure_auth);
            c.raw_command(&line, secret)
        })
        .map(|r| reply_tuple(&r))
    }

    /// Sends message content after the caller's own DATA got 354 (dot-stuffed, CRLF line
    /// ends, the final dot added); returns the reply whatever its code.
    fn content(&self, py: Python<'_>, message: Vec<u8>) -> PyResult<ReplyTuple> {
        self.with(py, move |c| c.raw_content(&message))
            .map(|r| reply_tuple(&r))
    }

    /// Greets again with EHLO (HELO when `ehlo` is false) as `name`; returns the reply
    /// whatever its code, a 2xx one replacing the known extensions.
    #[pyo3(signature = (ehlo, name = None))]
    fn hello(&self, py: Python<'_>, ehlo: bool, name: Option<String>) -> PyResult<ReplyTuple> {
        self.with(py, move |c| c.hello(ehlo, name.as_deref()))
            .map(|r| reply_tuple(&r))
    }

    /// The server's greeting, and its 220 to the last STARTTLS, as reply tuples.
    fn kept_replies(&self, py: Python<'_>) -> PyResult<(Option<ReplyTuple>, Option<ReplyTuple>)> {
        Ok(self
            .peek(py, |c| {
                (
                    c.greeting().map(reply_tuple),
                    c.starttls_reply().map(reply_tuple),
                )
            })?
            .unwrap_or((None, None)))
    }

    /// Sends QUIT, waits for the reply and closes; returns the reply (None when the server
    /// hung up without one). Quiet when already closed.
    fn quit(&self, py: Python<'_>) -> PyResult<Option<ReplyTuple>> {
        self.not_from_own_callback()?;
        py.detach(|| {
            let client = lock(&self.inner).take();
            match client {
                Some(client) => client
                    .quit_reply()
                    .map(|r| r.as_ref().map(reply_tuple))
                    .map_err(|e| client_error(e, false)),
                None => Ok(None),
            }
        })
    }

    /// Closes the connection without QUIT.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.not_from_own_callback()?;
        py.detach(|| drop(lock(&self.inner).take()));
        Ok(())
    }
}
