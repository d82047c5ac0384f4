//! What kind of TLS failure an error is, for callers that act on it (a C result code, a
//! Python exception, a retry policy) without parsing the text.

use std::fmt;

use rustls::{AlertDescription, CertificateError};

use super::TlsError;

/// The kind of a TLS failure.
///
/// [`TlsFailure::of_error`] finds it in any error whose source chain holds the rustls
/// error (every client [`Error`](crate::client::error::Error) of kind `Tls` does;
/// [`Error::tls_failure`](crate::client::error::Error::tls_failure) is the shortcut).
///
/// ```
/// use smtp_core::tls::TlsFailure;
/// let e = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
/// assert_eq!(TlsFailure::of_rustls(&e), TlsFailure::UnknownIssuer);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The peer's certificate does not chain to a trusted root (self-signed, a private
    /// CA not configured, a missing intermediate).
    UnknownIssuer,
    /// The certificate is valid but not for the name that was asked for.
    NameMismatch,
    /// The certificate has expired or is not valid yet.
    Expired,
    /// The handshake failed otherwise: no protocol version or cipher in common, a
    /// certificate refused for another reason, an alert from the peer, a peer that closed
    /// the connection during the handshake.
    Handshake,
    /// The local configuration could not be used (a certificate, key or CA file).
    Configuration,
}

impl TlsFailure {
    /// The kind of a rustls error. An alert the peer sent about our certificate is
    /// classified as the peer saw it (an unknown CA, an expired certificate).
    pub fn of_rustls(error: &rustls::Error) -> TlsFailure {
        match error {
            rustls::Error::InvalidCertificate(e) => Self::of_certificate_error(e),
            rustls::Error::AlertReceived(alert) => match alert {
                AlertDescription::UnknownCA => TlsFailure::UnknownIssuer,
                AlertDescription::CertificateExpired => TlsFailure::Expired,
                _ => TlsFailure::Handshake,
            },
            _ => TlsFailure::Handshake,
        }
    }

    fn of_certificate_error(error: &CertificateError) -> TlsFailure {
        match error {
            CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            _ => TlsFailure::Handshake,
        }
    }

    /// The kind of the first TLS error in `error`'s source chain (itself first): a rustls
    /// error, or a [`TlsError`] (a configuration that could not be built). `None` when
    /// the chain holds neither.
    pub fn of_error(error: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(e) = e.downcast_ref::<rustls::Error>() {
                return Some(Self::of_rustls(e));
            }
            if e.is::<TlsError>() {
                return Some(TlsFailure::Configuration);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(inner) = io.get_ref() {
                    if let Some(found) = Self::of_error(inner) {
                        return Some(found);
                    }
                }
            }
            next = e.source();
        }
        None
    }

    /// A short English description.
    pub fn describe(self) -> &'static str {
        match self {
            TlsFailure::UnknownIssuer => "the certificate's issuer is not trusted",
            TlsFailure::NameMismatch => "the certificate is not valid for the name",
            TlsFailure::Expired => "the certificate has expired or is not valid yet",
            TlsFailure::Handshake => "the TLS handshake failed",
            TlsFailure::Configuration => "the TLS configuration could not be used",
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl crate::client::error::Error {
    /// The kind of TLS failure behind this error: `Some` for every error of kind
    /// [`ErrorKind::Tls`](crate::client::error::ErrorKind::Tls) (a failure without a
    /// rustls error behind it, such as a peer that hung up mid-handshake, is
    /// [`TlsFailure::Handshake`]), `None` for the other kinds.
    pub fn tls_failure(&self) -> Option<TlsFailure> {
        if self.kind() != crate::client::error::ErrorKind::Tls {
            return None;
        }
        Some(TlsFailure::of_error(self).unwrap_or(TlsFailure::Handshake))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_told_apart() {
        let cert = |e| rustls::Error::InvalidCertificate(e);
        assert_eq!(
            TlsFailure::of_rustls(&cert(CertificateError::UnknownIssuer)),
            TlsFailure::UnknownIssuer
        );
        assert_eq!(
            TlsFailure::of_rustls(&cert(CertificateError::NotValidForName)),
            TlsFailure::NameMismatch
        );
        assert_eq!(
            TlsFailure::of_rustls(&cert(CertificateError::Expired)),
            TlsFailure::Expired
        );
        assert_eq!(
            TlsFailure::of_rustls(&cert(CertificateError::NotValidYet)),
            TlsFailure::Expired
        );
        assert_eq!(
            TlsFailure::of_rustls(&cert(CertificateError::BadSignature)),
            TlsFailure::Handshake
        );
        assert_eq!(
            TlsFailure::of_rustls(&rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
            TlsFailure::UnknownIssuer
        );
        assert_eq!(
            TlsFailure::of_rustls(&rustls::Error::HandshakeNotComplete),
            TlsFailure::Handshake
        );
    }

    #[test]
    fn the_source_chain_is_searched_through_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(TlsFailure::of_error(&io), Some(TlsFailure::UnknownIssuer));
        let plain = std::io::Error::other("no TLS here");
        assert_eq!(TlsFailure::of_error(&plain), None);
        let config = TlsError::new("bad file");
        assert_eq!(
            TlsFailure::of_error(&config),
            Some(TlsFailure::Configuration)
        );
    }
}
