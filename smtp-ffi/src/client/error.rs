//! The detail of a failed client call, and the `smtpx_result` of each client error kind.

use smtp_core::blocking::client::{Error, ErrorKind};
use smtp_core::tls::TlsErrorKind;

use crate::result::smtpx_result;

/// The `smtpx_result` for a client error: its kind's, and for a TLS error the kind of
/// TLS failure (classified by the core, [`Error::tls_kind`]).
pub(crate) fn result_of(error: &Error) -> smtpx_result {
    match error.tls_kind() {
        Some(failure) => result_for_tls(failure),
        None => result_for(error.kind()),
    }
}

/// The `smtpx_result` for a kind of TLS failure.
pub(crate) fn result_for_tls(kind: TlsErrorKind) -> smtpx_result {
    match kind {
        TlsErrorKind::UnknownIssuer => smtpx_result::TlsUnknownIssuer,
        TlsErrorKind::NameMismatch => smtpx_result::TlsNameMismatch,
        TlsErrorKind::Expired => smtpx_result::TlsExpired,
        // A configuration problem is this side's, not the handshake's.
        TlsErrorKind::Configuration => smtpx_result::Tls,
        // Any other certificate or handshake problem (TlsErrorKind may grow).
        _ => smtpx_result::TlsHandshake,
    }
}

/// The `smtpx_result` for a client error kind.
pub(crate) fn result_for(kind: ErrorKind) -> smtpx_result {
    match kind {
        ErrorKind::Io => smtpx_result::Io,
        ErrorKind::Tls => smtpx_result::Tls,
        ErrorKind::Timeout => smtpx_result::Timeout,
        ErrorKind::InvalidArgument => smtpx_result::InvalidArgument,
        ErrorKind::NotReady => smtpx_result::NotReady,
        ErrorKind::Greeting => smtpx_result::Greeting,
        ErrorKind::Hello => smtpx_result::Hello,
        ErrorKind::StartTlsUnavailable => smtpx_result::StartTlsUnavailable,
        ErrorKind::StartTlsRefused => smtpx_result::StartTlsRefused,
        ErrorKind::AuthUnsupported => smtpx_result::AuthUnsupported,
        ErrorKind::AuthFailed => smtpx_result::AuthFailed,
        ErrorKind::InsecureAuth => smtpx_result::InsecureAuth,
        ErrorKind::MessageTooLarge => smtpx_result::MessageTooLarge,
        ErrorKind::SmtpUtf8Unsupported => smtpx_result::SmtpUtf8Unsupported,
        ErrorKind::ServerClosed => smtpx_result::ServerClosed,
        ErrorKind::ConnectionClosed => smtpx_result::ConnectionClosed,
        ErrorKind::MessageSource => smtpx_result::MessageSource,
        // ErrorKind is non_exhaustive: a kind added later is a protocol failure until it
        // gets a code of its own.
        _ => smtpx_result::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_error_kind_has_its_own_result() {
        let kinds = [
            ErrorKind::Io,
            ErrorKind::Tls,
            ErrorKind::Timeout,
            ErrorKind::InvalidArgument,
            ErrorKind::NotReady,
            ErrorKind::Greeting,
            ErrorKind::Hello,
            ErrorKind::StartTlsUnavailable,
            ErrorKind::StartTlsRefused,
            ErrorKind::AuthUnsupported,
            ErrorKind::AuthFailed,
            ErrorKind::InsecureAuth,
            ErrorKind::MessageTooLarge,
            ErrorKind::SmtpUtf8Unsupported,
            ErrorKind::ServerClosed,
            ErrorKind::ConnectionClosed,
            ErrorKind::Protocol,
            ErrorKind::MessageSource,
        ];
        let results: HashSet<u32> = kinds.iter().map(|&k| result_for(k) as u32).collect();
        assert_eq!(results.len(), kinds.len());
        assert!(!results.contains(&(smtpx_result::Ok as u32)));
        // The ranges: protocol 2xx, I/O 3xx, TLS and authentication 4xx.
        assert_eq!(result_for(ErrorKind::Greeting) as u32 / 100, 2);
        assert_eq!(result_for(ErrorKind::Timeout) as u32 / 100, 3);
        assert_eq!(result_for(ErrorKind::AuthFailed) as u32 / 100, 4);
        assert_eq!(result_for(ErrorKind::InsecureAuth) as u32 / 100, 4);
        assert_eq!(result_for(ErrorKind::StartTlsRefused) as u32 / 100, 4);
    }
}
