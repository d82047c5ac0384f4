//! The one translation of the engine's hooks into Python: a [`Hook`] becomes an
//! [`Event`] whose fields are filled from the hook's arguments by their kind
//! ([`Hook::for_each_arg`]), so a hook the core adds later reaches Python with its name
//! and arguments without a change here. The sans-I/O session's events
//! (`_native.ServerSession`) and the connection's hooks (`_native.ServerConnection`) both
//! come through it.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use smtp_core::server::hooks::{Hook, HookArg};
use smtp_core::server::{AbortReason, HelloVerb};

use crate::sans_io::Event;
use crate::server::{mail_options, rcpt_options};

/// The name Python code sees for a greeting verb.
pub(crate) fn verb_name(verb: HelloVerb) -> &'static str {
    match verb {
        HelloVerb::Helo => "HELO",
        HelloVerb::Ehlo => "EHLO",
        HelloVerb::Lhlo => "LHLO",
    }
}

/// The name Python code sees for why a message was dropped.
fn reason_name(reason: AbortReason) -> &'static str {
    match reason {
        AbortReason::TooLarge => "too_large",
        AbortReason::BareLineEnding => "bare_line_ending",
        AbortReason::Disconnected => "disconnected",
        AbortReason::Reset => "reset",
    }
}

/// `hook` as an [`Event`] of kind `kind`: a greeting's verb and domain, AUTH's
/// mechanism, user name and password, MAIL's sender and RCPT's recipient with their
/// options, a chunk as `data`, an abort's `reason`, and any other text argument as
/// `argument`. The envelope (`transaction`) is not copied: Python keeps its own.
pub(crate) fn hook_event(py: Python<'_>, kind: &'static str, hook: &Hook<'_>) -> Event {
    let mut event = Event {
        kind,
        needs_decision: hook.needs_decision(),
        ..Event::default()
    };
    let mut recipient = None;
    hook.for_each_arg(|name, value| match value {
        HookArg::Verb(verb) => event.verb = Some(verb_name(verb)),
        HookArg::Text(text) if name == "domain" => event.domain = Some(text.to_owned()),
        HookArg::Text(text) => event.argument = Some(text.to_owned()),
        HookArg::Auth(attempt) => {
            event.mechanism = Some(attempt.mechanism.name().to_owned());
            event.username = Some(attempt.username.clone());
            event.password = Some(attempt.password.expose().to_owned());
        }
        HookArg::Sender(from) => event.sender = Some(from.as_str().to_owned()),
        HookArg::MailParams(params) => event.options = mail_options(params),
        HookArg::Recipient(to) => {
            event.recipient = Some(to.as_str().to_owned());
            recipient = Some(to);
        }
        HookArg::RcptParams(params) => {
            if let Some(to) = recipient {
                event.options = rcpt_options(to, params);
            }
        }
        HookArg::Bytes(bytes) => event.data = Some(PyBytes::new(py, bytes).unbind()),
        HookArg::AbortReason(reason) => event.reason = Some(reason_name(reason)),
        // The envelope, and kinds of argument this module does not know yet.
        _ => {}
    });
    event
}

/// What a TLS handshake negotiated, as the dict `ServerConnection.tls` gives:
/// `{"version": "TLSv1.3", "cipher": ..., "server_name": ... or None,
/// "peer_certificates": [DER bytes, ...]}`.
pub(crate) fn tls_info_dict<'py>(
    py: Python<'py>,
    info: &smtp_core::tls::TlsInfo,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let dict = pyo3::types::PyDict::new(py);
    dict.set_item("version", info.version.as_deref())?;
    dict.set_item("cipher", info.cipher.as_deref())?;
    dict.set_item("server_name", info.server_name.as_deref())?;
    let chain: Vec<Bound<'py, PyBytes>> = info
        .peer_certificates
        .iter()
        .map(|c| PyBytes::new(py, c.as_ref()))
        .collect();
    dict.set_item("peer_certificates", chain)?;
    Ok(dict)
}

/// The TLS details an embedder hands over: a `_native.TlsSession` whose handshake is
/// done, or a dict with the keys of [`tls_info_dict`] (each may be missing or None), for
/// a program whose TLS is not smtpx's own (asyncio's `ssl`).
pub(crate) fn tls_info_from(value: &Bound<'_, PyAny>) -> PyResult<smtp_core::tls::TlsInfo> {
    use pyo3::types::{PyDict, PyDictMethods};
    use smtp_core::tls::TlsInfo;
    if let Ok(session) = value.cast::<crate::tls::TlsSession>() {
        return Ok(session.borrow().info());
    }
    let Ok(dict) = value.cast::<PyDict>() else {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "tls must be a TlsSession or a dict",
        ));
    };
    let text = |key: &str| -> PyResult<Option<String>> {
        match dict.get_item(key)? {
            Some(v) if !v.is_none() => Ok(Some(v.extract()?)),
            _ => Ok(None),
        }
    };
    let mut peer_certificates = Vec::new();
    if let Some(chain) = dict.get_item("peer_certificates")?
        && !chain.is_none()
    {
        for cert in chain.try_iter()? {
            let der: Vec<u8> = cert?.extract()?;
            peer_certificates.push(der.into());
        }
    }
    Ok(TlsInfo {
        version: text("version")?.map(Into::into),
        cipher: text("cipher")?.map(Into::into),
        server_name: text("server_name")?,
        peer_certificates,
    })
}
