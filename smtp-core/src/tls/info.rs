//! [`TlsInfo`]: what a finished TLS handshake negotiated, owned, for server handlers (the
//! equivalent of go-smtp's `tls.ConnectionState` and aiosmtpd's `session.ssl`), and
//! [`TlsState`], the handle through which a handler reads it once the handshake is done.
//!
//! The names are computed here once, from rustls's common state, for [`TlsInfo`] and for
//! [`TlsSession`](super::TlsSession)'s getters alike.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use rustls::CommonState;
use rustls::pki_types::CertificateDer;

/// The negotiated protocol version's name: "TLSv1.2" or "TLSv1.3" (as Python's
/// `ssl.SSLSocket.version()` names them), once known.
pub(crate) fn protocol_name(state: &CommonState) -> Option<&'static str> {
    state.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        _ => "TLS",
    })
}

/// The negotiated cipher suite's IANA name, such as "TLS13_AES_256_GCM_SHA384".
pub(crate) fn cipher_name(state: &CommonState) -> Option<&'static str> {
    state
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
}

/// What a server's TLS handshake negotiated: the protocol version, the cipher suite, the
/// name the client asked for (SNI) and the certificate chain the client presented (mutual
/// TLS). Every field is `None` (or empty) when it is not known: a handshake not yet done,
/// a client that sent no SNI or no certificate, or a sans-IO embedder that did its own
/// TLS and said nothing about it.
///
/// ```
/// use smtp_core::tls::TlsInfo;
/// let info = TlsInfo {
///     version: Some("TLSv1.3".into()),
///     cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
///     server_name: Some("mx.example.org".into()),
///     peer_certificates: Vec::new(),
/// };
/// assert!(info.peer_certificate().is_none()); // the client sent none
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version, "TLSv1.2" or "TLSv1.3". (Borrowed when it comes from
    /// rustls; owned when an embedder with another TLS stack names it.)
    pub version: Option<Cow<'static, str>>,
    /// The cipher suite's name: IANA's for rustls, such as "TLS13_AES_256_GCM_SHA384".
    pub cipher: Option<Cow<'static, str>>,
    /// The host name the client sent in its SNI extension.
    pub server_name: Option<String>,
    /// The client's certificate chain as DER, leaf first; empty when it sent none.
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    /// What the server side of a finished handshake negotiated.
    pub fn from_server(conn: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo::from_state(conn, conn.server_name())
    }

    /// The details in rustls's state common to both sides, with the SNI name (a server's).
    pub(crate) fn from_state(state: &CommonState, server_name: Option<&str>) -> TlsInfo {
        TlsInfo {
            version: protocol_name(state).map(Cow::Borrowed),
            cipher: cipher_name(state).map(Cow::Borrowed),
            server_name: server_name.map(str::to_owned),
            peer_certificates: state.peer_certificates().map_or_else(Vec::new, |chain| {
                chain.iter().map(|c| c.clone().into_owned()).collect()
            }),
        }
    }

    /// The client's own certificate (the leaf of its chain), as DER, if it sent one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_certificates.first().map(|c| c.as_ref())
    }
}

/// The TLS details of one connection as a handler sees them: empty until a handshake
/// finishes (at once with implicit TLS, after STARTTLS otherwise), then the
/// [`TlsInfo`] for the rest of the connection. The connection layer fills it; the handler
/// gets a handle in [`ConnectionInfo::tls_state`](crate::handler::ConnectionInfo::tls_state)
/// at connect, keeps it (clones share the one value) and reads it from any later hook,
/// as go-smtp's `Conn.TLSConnectionState()`:
///
/// ```
/// use smtp_core::tls::TlsState;
/// let state = TlsState::default();
/// let kept = state.clone();
/// assert!(kept.get().is_none()); // before STARTTLS
/// ```
#[derive(Clone, Debug, Default)]
pub struct TlsState(Arc<OnceLock<TlsInfo>>);

impl TlsState {
    /// The negotiated details, once a handshake has finished.
    pub fn get(&self) -> Option<&TlsInfo> {
        self.0.get()
    }

    /// Records the handshake's details (a connection is encrypted once: later calls are
    /// ignored).
    pub(crate) fn set(&self, info: TlsInfo) {
        let _ = self.0.set(info);
    }
}

/// Two states are equal when they hold the same details (not only when shared).
impl PartialEq for TlsState {
    fn eq(&self, other: &TlsState) -> bool {
        self.get() == other.get()
    }
}

impl Eq for TlsState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{RootCerts, TlsClientOptions, TlsSession, client_config};

    #[test]
    fn a_server_handshake_gives_version_cipher_and_sni() {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = generated.cert.pem();
        let key = generated.signing_key.serialize_pem();
        let server = crate::tls::server_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let options = TlsClientOptions {
            roots: RootCerts::Pem(cert.into_bytes()),
            ..TlsClientOptions::default()
        };
        let mut client = TlsSession::client(client_config(&options).unwrap(), "localhost").unwrap();
        let mut conn = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..16 {
            let out = client.take_output();
            if out.is_empty() && !conn.wants_write() {
                break;
            }
            conn.read_tls(&mut out.as_slice()).unwrap();
            conn.process_new_packets().unwrap();
            let mut back = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut back).unwrap();
            }
            client.receive(&back).unwrap();
        }
        assert!(!conn.is_handshaking());
        let info = TlsInfo::from_server(&conn);
        assert_eq!(info.version.as_deref(), Some("TLSv1.3"));
        assert_eq!(info.cipher.as_deref(), client.cipher_suite());
        assert_eq!(info.server_name.as_deref(), Some("localhost"));
        assert!(info.peer_certificate().is_none());
        let state = TlsState::default();
        let kept = state.clone();
        state.set(info.clone());
        state.set(TlsInfo::default());
        assert_eq!(kept.get(), Some(&info), "shared, and set once");
    }
}
