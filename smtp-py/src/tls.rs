//! `smtpx._native.TlsConfig` and `smtpx._native.TlsSession`: rustls without I/O, for
//! drivers that own the sockets (the asyncio drivers in `smtpx/aio.py`).
//!
//! The configurations come from `smtp_core::tls`, the same builders the blocking client,
//! the blocking server and the C API use, so certificate handling (trusted roots, the
//! *ring* provider, what "accept invalid certificates" means) is the same everywhere.
//! A session only moves bytes: ciphertext read from the socket goes in and plaintext
//! comes out; plaintext to send goes in and ciphertext to write comes out.
//!
//! Memory stays bounded by what the caller hands over: every call drains rustls's own
//! buffers (which rustls limits too) before returning, so a session holds at most one
//! partial TLS record between calls.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use rustls::pki_types::ServerName;
use smtp_core::tls::{
    self, RootCerts, TlsClientExtras, TlsClientOptions, TlsSession as CoreSession,
};

use crate::errors::{SmtpTlsError, client_error};

/// A client or a server TLS configuration, built once and shared by many sessions.
#[derive(Debug, Clone)]
enum Side {
    Client(Arc<rustls::ClientConfig>),
    Server(Arc<rustls::ServerConfig>),
}

/// A TLS configuration: which certificates a client trusts, or which certificate and key
/// a server presents. Immutable; build it once (errors show up then, not per connection)
/// and make a [`TlsSession`] per connection.
#[pyclass(frozen, module = "smtpx._native")]
#[derive(Debug)]
pub struct TlsConfig {
    side: Side,
}

impl TlsConfig {
    /// The client configuration, for the engine's client runner.
    pub(crate) fn client_config(&self) -> PyResult<Arc<rustls::ClientConfig>> {
        match &self.side {
            Side::Client(config) => Ok(Arc::clone(config)),
            Side::Server(_) => Err(pyo3::exceptions::PyValueError::new_err(
                "a server TLS configuration cannot be used by a client",
            )),
        }
    }
}

#[pymethods]
impl TlsConfig {
    /// A client configuration. `roots` is "webpki" (Mozilla's roots, compiled in; the
    /// default) or "system" (the operating system's store); `ca_file` (a PEM file) or
    /// `ca_pem` (PEM text) trust those certificates instead. With
    /// `dangerous_accept_invalid_certs` any certificate is accepted (tests only).
    /// `client_cert` (a PEM chain file, leaf first) and `client_key` (its key's PEM file;
    /// None when the key is in `client_cert`) are shown to a server that asks for a
    /// certificate (mutual TLS). Without arguments: the process's one default
    /// configuration (`tls::default_client_config`), shared so that clients resume.
    #[staticmethod]
    #[pyo3(signature = (*, roots = "webpki", ca_file = None, ca_pem = None,
        dangerous_accept_invalid_certs = false, client_cert = None, client_key = None))]
    fn client(
        roots: &str,
        ca_file: Option<PathBuf>,
        ca_pem: Option<Vec<u8>>,
        dangerous_accept_invalid_certs: bool,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
    ) -> PyResult<TlsConfig> {
        let identity = crate::client::client_identity(client_cert, client_key)?;
        let roots = match (roots, ca_file, ca_pem) {
            (_, Some(_), Some(_)) => {
                return Err(PyValueError::new_err("give ca_file or ca_pem, not both"));
            }
            (_, Some(path), None) => RootCerts::PemFile(path),
            (_, None, Some(pem)) => RootCerts::Pem(pem),
            ("webpki", None, None) => RootCerts::WebPki,
            ("system", None, None) => RootCerts::System,
            (other, None, None) => {
                return Err(PyValueError::new_err(format!(
                    "roots must be \"webpki\" or \"system\", not {other:?}"
                )));
            }
        };
        let defaults = matches!(roots, RootCerts::WebPki)
            && !dangerous_accept_invalid_certs
            && identity.is_none();
        let config = if defaults {
            // The process's one default configuration: its session cache is shared with
            // every other client given no settings, so they resume each other's sessions.
            tls::default_client_config()
        } else {
            let options = TlsClientOptions {
                roots,
                dangerous_accept_invalid_certs,
            };
            let extras = TlsClientExtras {
                identity,
                ..TlsClientExtras::default()
            };
            tls::client_config_with(&options, &extras)
        }
        .map_err(|e| client_error(e.into(), false))?;
        Ok(TlsConfig {
            side: Side::Client(config),
        })
    }

    /// A server configuration from a PEM certificate chain (leaf first) and a PEM private
    /// key, given as text (bytes).
    #[staticmethod]
    fn server(cert_pem: &[u8], key_pem: &[u8]) -> PyResult<TlsConfig> {
        let config = tls::server_config_from_pem(cert_pem, key_pem)
            .map_err(|e| client_error(e.into(), false))?;
        Ok(TlsConfig {
            side: Side::Server(config),
        })
    }

    /// A server configuration from a PEM certificate chain file and a PEM key file.
    #[staticmethod]
    fn server_from_files(cert_file: PathBuf, key_file: PathBuf) -> PyResult<TlsConfig> {
        let config = tls::server_config_from_pem_files(&cert_file, &key_file)
            .map_err(|e| client_error(e.into(), false))?;
        Ok(TlsConfig {
            side: Side::Server(config),
        })
    }

    /// True for a server configuration.
    #[getter]
    fn is_server(&self) -> bool {
        matches!(self.side, Side::Server(_))
    }
}

/// One TLS connection without I/O (see `_native.pyi`): the core's
/// [`smtp_core::tls::TlsSession`], the one C's `smtpx_tls_session` wraps too, with its
/// bytes as Python `bytes` and its failures as `SmtpTlsError`.
#[pyclass(module = "smtpx._native")]
#[derive(Debug)]
pub struct TlsSession {
    inner: CoreSession,
}

impl TlsSession {
    /// What the handshake negotiated, for a server connection's handler
    /// (`ServerConnection.tls_established(now, tls=session)`).
    pub(crate) fn info(&self) -> smtp_core::tls::TlsInfo {
        self.inner.info()
    }
}

fn tls_error(error: impl std::fmt::Display) -> PyErr {
    SmtpTlsError::new_err(error.to_string())
}

#[pymethods]
impl TlsSession {
    /// A session with `config`: a client one checks the server's certificate against
    /// `server_name` (a DNS name or an IP address), which a server one does not take.
    #[new]
    #[pyo3(signature = (config, server_name = None))]
    fn new(config: &TlsConfig, server_name: Option<String>) -> PyResult<TlsSession> {
        let inner = match (&config.side, server_name) {
            (Side::Client(config), Some(name)) => {
                if ServerName::try_from(name.clone()).is_err() {
                    return Err(PyValueError::new_err(format!(
                        "not a DNS name or IP address: {name:?}"
                    )));
                }
                CoreSession::client(Arc::clone(config), &name).map_err(tls_error)?
            }
            (Side::Client(_), None) => {
                return Err(PyValueError::new_err(
                    "a client session needs a server_name",
                ));
            }
            (Side::Server(config), None) => {
                CoreSession::server(Arc::clone(config)).map_err(tls_error)?
            }
            (Side::Server(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "a server session takes no server_name",
                ));
            }
        };
        Ok(TlsSession { inner })
    }

    /// Takes ciphertext read from the socket and returns the plaintext it carried (often
    /// empty: handshake records carry none). Raises `SmtpTlsError` when the peer breaks
    /// TLS or, during the handshake, is not trusted; `output()` may then hold an alert to
    /// send before closing.
    fn receive<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let received = self.inner.receive(data);
        let plain = PyBytes::new(py, self.inner.plaintext());
        let n = self.inner.plaintext().len();
        self.inner.consume_plaintext(n);
        received.map_err(tls_error)?;
        Ok(plain)
    }

    /// Encrypts plaintext to send; take the ciphertext with `output()`. Only once the
    /// handshake is over (before, rustls would hold the plaintext back).
    fn write(&mut self, data: &[u8]) -> PyResult<()> {
        self.inner.write(data).map_err(tls_error)
    }

    /// The ciphertext to write to the socket (handshake records, encrypted data, alerts);
    /// taking it clears it.
    fn output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let out = PyBytes::new(py, self.inner.output());
        let n = self.inner.output().len();
        self.inner.consume_output(n);
        out
    }

    /// Queues a close_notify alert (take it with `output()`): the orderly end.
    fn close(&mut self) {
        self.inner.close();
    }

    /// True until the handshake is complete.
    #[getter]
    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    /// True once the peer sent close_notify: it will send nothing more.
    #[getter]
    fn peer_closed(&self) -> bool {
        self.inner.peer_closed()
    }

    /// The negotiated protocol, such as "TLSv1.3" (as Python's `ssl` names it), once the handshake is over.
    #[getter]
    fn protocol_version(&self) -> Option<String> {
        self.inner.protocol_version().map(str::to_owned)
    }

    /// The negotiated cipher suite, such as "TLS13_AES_256_GCM_SHA384".
    #[getter]
    fn cipher_suite(&self) -> Option<String> {
        self.inner.cipher_suite().map(str::to_owned)
    }
}
