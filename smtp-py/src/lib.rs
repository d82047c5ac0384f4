//! The compiled part of the `smtpx` Python package, imported as `smtpx._native`.
//!
//! Users import `smtpx`, whose pure-Python part (`python/smtpx/`) re-exports what is
//! here; `_native.pyi` describes this module to type checkers. Like every binding, this
//! crate translates types and errors and owns no protocol logic.
//!
//! Built by maturin (`pip install ./smtp-py`) as an abi3 extension for CPython 3.10 and
//! later; the workspace enables pyo3's `abi3-py310` feature.
//!
//! - `client::Client` wraps the blocking client; every network wait runs detached
//!   (`py.detach`), and a message may be streamed from a Python file object.
//! - `server::Server` runs the blocking server with a handler whose hooks call a Python
//!   object per connection from the Rust connection threads (`Python::try_attach` only
//!   for the call), or with the Rust Maildir handler.
//! - `sans_io::{ServerSession, ClientSession}` expose the engine's sans-IO sessions
//!   (bytes, seconds and one `Event` object per engine event), which the asyncio client
//!   (`smtpx/aio/client.py`) drives on a transport.
//! - `runner::ClientRunner` is the engine's client runner (every client operation) as
//!   actions, which `smtpx/aio/client.py` performs on an asyncio transport.
//! - `connection::ServerConnection` is the engine's server connection layer (hook
//!   dispatch, held input, deadlines, STARTTLS handover, graceful shutdown) as actions,
//!   which `smtpx/aio/server.py` performs on an asyncio transport.
//! - `tls::{TlsConfig, TlsSession}` expose rustls without I/O, with the engine's TLS
//!   configuration builders, for the asyncio drivers' STARTTLS and implicit TLS.
//! - `errors` is the one place where engine errors become the Python exceptions of
//!   `smtpx/errors.py`; `logging` forwards the engine's log records (info and above)
//!   to Python's `logging`, under `smtpx.*`.
//! - `trace::PyTrace` is the wire trace's sink for Python: a callable called with
//!   `(connection_id, "C" | "S", text)` per line, installed only when asked for
//!   (`trace=` at `Client.connect` and `Server.start`, `set_trace` on the others).
//!
//! `smtpx/client.py` and `smtpx/server.py` give these smtplib's and aiosmtpd's shapes.

use pyo3::prelude::*;

mod client;
mod connection;
mod errors;
mod logging;
mod poller;
mod pool;
mod proxy;
mod results;
mod runner;
mod sans_io;
mod server;
mod tls;
mod trace;
mod vocabulary;

/// The compiled core of smtpx. Import `smtpx` instead of this module.
#[pymodule]
mod _native {
    use super::*;

    use pyo3::types::PyInt;

    #[pymodule_export]
    use crate::client::Client;
    #[pymodule_export]
    use crate::connection::ServerConnection;
    #[pymodule_export]
    use crate::poller::ServerPoller;
    #[pymodule_export]
    use crate::pool::{Pool, PoolCore, PoolLease, Relay, RelayJob, RelaySession};
    #[pymodule_export]
    use crate::results::register_result_types;
    #[pymodule_export]
    use crate::runner::ClientRunner;
    #[pymodule_export]
    use crate::sans_io::{ClientSession, Event, ServerSession};
    #[pymodule_export]
    use crate::server::Server;
    #[pymodule_export]
    use crate::tls::{TlsConfig, TlsSession};
    use smtp_core::reply::ReplyCode;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        crate::logging::install();
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }

    /// Checks an envelope as the clients' `send_mail`/`send` would (ValueError), sending
    /// nothing: `send_batch` checks every message this way before the first goes out.
    #[pyfunction]
    #[pyo3(signature = (sender, recipients, mail_options = Vec::new(), rcpt_options = Vec::new()))]
    fn check_envelope(
        sender: &str,
        recipients: Vec<String>,
        mail_options: Vec<String>,
        rcpt_options: Vec<String>,
    ) -> PyResult<()> {
        crate::client::envelope(sender, &recipients, &mail_options, &rcpt_options).map(drop)
    }

    /// The octets `message` takes on the wire after CRLF canonicalisation (dot-stuffing
    /// and the final dot not counted): what SIZE= declares (RFC 1870).
    #[pyfunction]
    fn wire_size(message: &[u8]) -> u64 {
        smtp_core::data::wire_size(message)
    }

    /// The standard meaning of an SMTP reply code (RFC 5321 section 4.2), or None.
    ///
    /// For example ``reply_code_meaning(250)`` is "Requested mail action okay,
    /// completed". Any int without a standard meaning, including negative or huge
    /// ones, gives None; a value that is not an int raises TypeError.
    #[pyfunction]
    fn reply_code_meaning(code: &Bound<'_, PyInt>) -> Option<&'static str> {
        let code: u16 = code.extract().ok()?;
        ReplyCode::new(code)?.meaning()
    }
}
