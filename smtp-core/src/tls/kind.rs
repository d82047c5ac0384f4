//! What a TLS failure was about, without downcasting to `rustls::Error`: a certificate
//! problem (whose, and which) or a configuration problem. The client's
//! [`Error::tls_kind`](crate::client::error::Error::tls_kind), the C binding's result codes
//! and the Python exceptions all classify through [`TlsErrorKind::of`], so the three agree.

use std::error::Error as StdError;
use std::fmt;

use rustls::{AlertDescription, CertificateError};

/// What kind of TLS failure. Certificate kinds ([`TlsErrorKind::is_certificate`]) are
/// problems of the peer's certificate as this side checked it; the others are this side's
/// configuration or the handshake itself.
///
/// ```
/// use smtp_core::tls::TlsErrorKind;
/// let e = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
/// assert_eq!(TlsErrorKind::of_rustls(&e), TlsErrorKind::UnknownIssuer);
/// assert!(TlsErrorKind::UnknownIssuer.is_certificate());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The certificate is not signed by a trusted authority (self-signed, a private CA
    /// not in the roots, or an incomplete chain).
    UnknownIssuer,
    /// The certificate is not valid for the host name asked for.
    NameMismatch,
    /// The certificate has expired, or is not valid yet (check the clock).
    Expired,
    /// The server presented a CA certificate as its own (`basicConstraints=CA:TRUE`, what
    /// `openssl req -x509` makes by default); it needs an end-entity certificate.
    CaUsedAsEndEntity,
    /// The certificate was revoked.
    Revoked,
    /// Any other problem with the peer's certificate (bad encoding, signature, purpose).
    BadCertificate,
    /// The peer refused this side's certificate (it sent a certificate alert), the mirror
    /// of the kinds above seen from the side that presented it.
    PeerRejectedCertificate,
    /// The two sides share no protocol version, cipher suite or key exchange.
    Incompatible,
    /// This side's TLS set-up: a certificate, key or root file that cannot be read or
    /// used, a key that does not match its certificate, an unusable provider.
    Configuration,
    /// The handshake or the record layer failed otherwise (a malformed or unexpected
    /// message, a decryption failure, an alert).
    Protocol,
}

impl TlsErrorKind {
    /// True for the kinds about the peer's certificate as this side checked it.
    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            TlsErrorKind::UnknownIssuer
                | TlsErrorKind::NameMismatch
                | TlsErrorKind::Expired
                | TlsErrorKind::CaUsedAsEndEntity
                | TlsErrorKind::Revoked
                | TlsErrorKind::BadCertificate
        )
    }

    /// True for a problem of this side's set-up.
    pub fn is_configuration(self) -> bool {
        self == TlsErrorKind::Configuration
    }

    /// A short stable name (`"unknown-issuer"`, `"name-mismatch"`...), for logs and
    /// bindings.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsErrorKind::UnknownIssuer => "unknown-issuer",
            TlsErrorKind::NameMismatch => "name-mismatch",
            TlsErrorKind::Expired => "expired",
            TlsErrorKind::CaUsedAsEndEntity => "ca-used-as-end-entity",
            TlsErrorKind::Revoked => "revoked",
            TlsErrorKind::BadCertificate => "bad-certificate",
            TlsErrorKind::PeerRejectedCertificate => "peer-rejected-certificate",
            TlsErrorKind::Incompatible => "incompatible",
            TlsErrorKind::Configuration => "configuration",
            TlsErrorKind::Protocol => "protocol",
        }
    }

    /// The kind of a rustls error.
    pub fn of_rustls(error: &rustls::Error) -> TlsErrorKind {
        use rustls::Error as E;
        match error {
            E::InvalidCertificate(cert) => certificate_kind(cert),
            E::NoCertificatesPresented => TlsErrorKind::BadCertificate,
            E::AlertReceived(alert) => alert_kind(*alert),
            E::PeerIncompatible(_) | E::NoApplicationProtocol => TlsErrorKind::Incompatible,
            E::InconsistentKeys(_) | E::General(_) | E::FailedToGetRandomBytes => {
                TlsErrorKind::Configuration
            }
            E::FailedToGetCurrentTime | E::BadMaxFragmentSize => TlsErrorKind::Configuration,
            _ => TlsErrorKind::Protocol,
        }
    }

    /// The kind of any error that is, holds (as an `io::Error`'s inner error) or has as a
    /// source a rustls error or a [`TlsError`](super::TlsError) (configuration); `None`
    /// when nothing in the chain is about TLS.
    pub fn of(error: &(dyn StdError + 'static)) -> Option<TlsErrorKind> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Some(TlsErrorKind::of_rustls(tls));
            }
            if e.is::<super::TlsError>() {
                return Some(TlsErrorKind::Configuration);
            }
            if let Some(kind) = e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| TlsErrorKind::of(inner))
            {
                return Some(kind);
            }
            next = e.source();
        }
        None
    }
}

fn certificate_kind(error: &CertificateError) -> TlsErrorKind {
    use CertificateError as C;
    match error {
        C::UnknownIssuer => TlsErrorKind::UnknownIssuer,
        C::NotValidForName | C::NotValidForNameContext { .. } => TlsErrorKind::NameMismatch,
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            TlsErrorKind::Expired
        }
        C::Revoked => TlsErrorKind::Revoked,
        C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => TlsErrorKind::CaUsedAsEndEntity,
            Some(webpki::Error::EndEntityUsedAsCa) => TlsErrorKind::UnknownIssuer,
            _ => TlsErrorKind::BadCertificate,
        },
        _ => TlsErrorKind::BadCertificate,
    }
}

fn alert_kind(alert: AlertDescription) -> TlsErrorKind {
    use AlertDescription as A;
    match alert {
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateExpired
        | A::CertificateUnknown
        | A::UnknownCA
        | A::CertificateRequired
        | A::AccessDenied => TlsErrorKind::PeerRejectedCertificate,
        A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => {
            TlsErrorKind::Incompatible
        }
        _ => TlsErrorKind::Protocol,
    }
}

impl fmt::Display for TlsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn certificate_errors_are_told_apart() {
        let cert = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(
            TlsErrorKind::of_rustls(&cert(CertificateError::UnknownIssuer)),
            TlsErrorKind::UnknownIssuer
        );
        assert_eq!(
            TlsErrorKind::of_rustls(&cert(CertificateError::NotValidForName)),
            TlsErrorKind::NameMismatch
        );
        assert_eq!(
            TlsErrorKind::of_rustls(&cert(CertificateError::Expired)),
            TlsErrorKind::Expired
        );
        let ca = CertificateError::Other(rustls::OtherError(Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        )));
        assert_eq!(
            TlsErrorKind::of_rustls(&cert(ca)),
            TlsErrorKind::CaUsedAsEndEntity
        );
        assert!(TlsErrorKind::CaUsedAsEndEntity.is_certificate());
        assert!(!TlsErrorKind::Configuration.is_certificate());
        let general = rustls::Error::General("no key".into());
        assert!(TlsErrorKind::of_rustls(&general).is_configuration());
    }

    #[test]
    fn found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(TlsErrorKind::of(&io), Some(TlsErrorKind::UnknownIssuer));
        let plain = std::io::Error::other("reset");
        assert_eq!(TlsErrorKind::of(&plain), None);
    }
}
