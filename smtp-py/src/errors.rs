//! The one place where the engine's errors become Python exceptions.
//!
//! The classes live in `python/smtpx/errors.py` (they subclass smtplib's, which an abi3
//! extension cannot do itself) and are imported here. Each [`ErrorKind`] maps to one
//! class; a reply-carrying error passes `(code, message)` as smtplib's do.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use smtp_core::blocking::client::{Error, ErrorKind};
use smtp_core::reply::Reply;

pyo3::import_exception!(smtpx.errors, SmtpError);
pyo3::import_exception!(smtpx.errors, SmtpProtocolError);
pyo3::import_exception!(smtpx.errors, SmtpConnectError);
pyo3::import_exception!(smtpx.errors, SmtpTimeoutError);
pyo3::import_exception!(smtpx.errors, SmtpDisconnected);
pyo3::import_exception!(smtpx.errors, SmtpNotSupportedError);
pyo3::import_exception!(smtpx.errors, SmtpReplyError);
pyo3::import_exception!(smtpx.errors, SmtpDataError);
pyo3::import_exception!(smtpx.errors, SmtpAuthError);
pyo3::import_exception!(smtpx.errors, SmtpTlsError);
pyo3::import_exception!(smtpx.errors, SmtpInsecureAuthError);
pyo3::import_exception!(smtpx.errors, SmtpHeloError);
pyo3::import_exception!(smtpx.errors, SmtpServerClosed);
pyo3::import_exception!(smtpx.errors, SmtpConnectionRefused);
pyo3::import_exception!(smtpx.errors, SmtpCertificateError);

/// What an [`ErrorKind::InsecureAuth`] says in Python: smtplib's users expect `login()` to
/// work in clear, so the message names both ways out.
const INSECURE_AUTH: &str = "credentials not sent: the connection is not encrypted; \
    call starttls() first (or use implicit TLS), or pass allow_insecure_auth=True to send \
    them in clear";

/// A reply's text as smtplib gives it: every line with the enhanced code in front (as it
/// was on the wire), lines joined with `\n`.
pub fn smtplib_message(reply: &Reply) -> Vec<u8> {
    let lines: Vec<String> = match reply.enhanced() {
        Some(enhanced) => reply
            .lines()
            .iter()
            .map(|line| {
                if line.is_empty() {
                    enhanced.to_string()
                } else {
                    format!("{enhanced} {line}")
                }
            })
            .collect(),
        None => reply.lines().to_vec(),
    };
    lines.join("\n").into_bytes()
}

/// Converts a client error. `connecting` says whether the connection was being opened,
/// where a network failure is a refused connection rather than a lost one.
pub fn client_error(error: Error, connecting: bool) -> PyErr {
    let text = error.to_string();
    let with_reply = |make: fn((u16, Vec<u8>)) -> PyErr| match error.reply() {
        Some(reply) => make((reply.code().get(), smtplib_message(reply))),
        None => SmtpError::new_err(text.clone()),
    };
    match error.kind() {
        ErrorKind::Io if connecting => connect_failure(&error, text),
        ErrorKind::Io | ErrorKind::ConnectionClosed | ErrorKind::NotReady => {
            SmtpDisconnected::new_err(text)
        }
        // The phase ("MAIL", "RCPT", "DATA", "after the end of data", ...) lets the
        // Python faces raise a 421 as the class smtplib and aiosmtplib raise in that phase.
        ErrorKind::ServerClosed => match error.reply() {
            Some(reply) => SmtpServerClosed::new_err((
                reply.code().get(),
                smtplib_message(reply),
                error.phase().map(|p| p.as_str()),
            )),
            None => SmtpError::new_err(text),
        },
        ErrorKind::Tls if certificate_refused(&error) => SmtpCertificateError::new_err(text),
        ErrorKind::Tls => SmtpTlsError::new_err(text),
        ErrorKind::Timeout => SmtpTimeoutError::new_err(text),
        ErrorKind::InvalidArgument => PyValueError::new_err(text),
        ErrorKind::Greeting => with_reply(SmtpConnectError::new_err),
        ErrorKind::Hello => with_reply(SmtpHeloError::new_err),
        ErrorKind::StartTlsRefused => with_reply(SmtpReplyError::new_err),
        ErrorKind::AuthFailed => with_reply(SmtpAuthError::new_err),
        ErrorKind::InsecureAuth => SmtpInsecureAuthError::new_err(INSECURE_AUTH),
        ErrorKind::StartTlsUnavailable
        | ErrorKind::AuthUnsupported
        | ErrorKind::SmtpUtf8Unsupported => SmtpNotSupportedError::new_err(text),
        ErrorKind::MessageTooLarge => SmtpDataError::new_err((552u16, text.into_bytes())),
        ErrorKind::Protocol => SmtpProtocolError::new_err(text),
        ErrorKind::MessageSource => PyOSError::new_err(text),
        _ => SmtpError::new_err(text),
    }
}

/// The network failure of a connection attempt, as an `OSError` with its `errno` (as
/// smtplib's `socket.create_connection` raises it): `ConnectionRefusedError` when refused.
fn connect_failure(error: &Error, text: String) -> PyErr {
    let io = std::error::Error::source(error).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io {
        Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            SmtpConnectionRefused::new_err((io.raw_os_error().unwrap_or(0), text))
        }
        _ => SmtpConnectError::new_err(text),
    }
}

/// True when TLS failed because the server's certificate was not trusted.
fn certificate_refused(error: &Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(rustls::Error::InvalidCertificate(_)) = current.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        source = current.source();
    }
    false
}
