//! The PROXY protocol for Python: the setting from `proxy_protocol_timeout` (aiosmtpd's
//! name: None turns it off, seconds turn it on) and `proxy_trusted`, and a connection's
//! header as a dict (see `_native.pyi`). The protocol itself is the engine's
//! ([`smtp_core::server::proxy`]).

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use smtp_core::server::proxy::{ProxyCommand, ProxyHeader, ProxyProtocol};

/// The setting, or None when `timeout` is None. A timeout that is not a positive number
/// of seconds, or a network that is not CIDR notation, is a ValueError.
pub(crate) fn proxy_protocol(
    timeout: Option<f64>,
    trusted: &[String],
) -> PyResult<Option<ProxyProtocol>> {
    let Some(timeout) = timeout else {
        return Ok(None);
    };
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(PyValueError::new_err(
            "proxy_protocol_timeout must be a positive number of seconds",
        ));
    }
    let trusted = trusted
        .iter()
        .map(|net| net.parse().map_err(PyValueError::new_err))
        .collect::<PyResult<Vec<_>>>()?;
    let mut proxy = ProxyProtocol::new(trusted);
    proxy.timeout = Duration::from_secs_f64(timeout);
    Ok(Some(proxy))
}

/// The header as `{"version": 1|2, "command": "PROXY"|"LOCAL", "source": (host, port) |
/// None, "destination": (host, port) | None, "tlvs": [(type, bytes), ...]}`.
pub(crate) fn header_dict<'py>(py: Python<'py>, h: &ProxyHeader) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", h.version)?;
    let command = match h.command {
        ProxyCommand::Proxy => "PROXY",
        ProxyCommand::Local => "LOCAL",
    };
    d.set_item("command", command)?;
    let addr = |a: Option<std::net::SocketAddr>| a.map(|a| (a.ip().to_string(), a.port()));
    d.set_item("source", addr(h.source))?;
    d.set_item("destination", addr(h.destination))?;
    let tlvs = PyList::empty(py);
    for t in &h.tlvs {
        tlvs.append((t.kind, PyBytes::new(py, &t.value)))?;
    }
    d.set_item("tlvs", tlvs)?;
    Ok(d)
}
