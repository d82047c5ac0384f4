//! The TLS settings beyond the defaults: a client certificate (mutual TLS), the oldest
//! protocol version accepted, SNI on or off; on a server, asking clients for
//! certificates checked against chosen roots.

use std::fmt;
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{RootCerts, TlsError, parse_chain, parse_key};

/// The oldest TLS version a configuration accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl TlsVersion {
    /// The rustls protocol versions from this one up.
    pub(super) fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static FROM_12: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static FROM_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &FROM_12,
            TlsVersion::Tls13 => &FROM_13,
        }
    }
}

/// A certificate chain (leaf first) and its private key: a server's identity, or a
/// client's for mutual TLS. Checked when made; the key is never shown by `Debug`.
pub struct TlsIdentity {
    pub(super) chain: Vec<CertificateDer<'static>>,
    pub(super) key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// An identity from PEM text: the chain (leaf first) and the key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, TlsError> {
        let chain =
            parse_chain(cert_pem).map_err(|e| TlsError::new(format!("TLS certificate: {e}")))?;
        let key = parse_key(key_pem).map_err(|e| TlsError::new(format!("TLS key: {e}")))?;
        Ok(TlsIdentity { chain, key })
    }

    /// An identity from two PEM files; errors name the file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                TlsError::new(format!("cannot read TLS {what} {}: {e}", path.display()))
            })
        };
        let cert_pem = read(cert, "certificate")?;
        let key_pem = read(key, "key")?;
        let chain = parse_chain(&cert_pem)
            .map_err(|e| TlsError::new(format!("TLS certificate {}: {e}", cert.display())))?;
        let key = parse_key(&key_pem)
            .map_err(|e| TlsError::new(format!("TLS key {}: {e}", key.display())))?;
        Ok(TlsIdentity { chain, key })
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A client's TLS settings beyond [`TlsClientOptions`](super::TlsClientOptions), for
/// [`client_config_with`](super::client_config_with).
#[derive(Clone, Debug)]
pub struct TlsClientExtras {
    /// The certificate and key to show a server that asks for one (mutual TLS).
    pub identity: Option<TlsIdentity>,
    /// The oldest protocol version accepted. Default TLS 1.2.
    pub min_version: TlsVersion,
    /// Send the server's name in the handshake (SNI). Default true; an IP address is
    /// never sent.
    pub enable_sni: bool,
}

impl Default for TlsClientExtras {
    fn default() -> Self {
        TlsClientExtras {
            identity: None,
            min_version: TlsVersion::Tls12,
            enable_sni: true,
        }
    }
}

/// Whether a server asks clients for certificates (mutual TLS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients are not asked (the default).
    #[default]
    None,
    /// Clients are asked; one that sends a certificate must chain to these roots, one that
    /// sends none is let in (the handler sees that it has none).
    Optional(RootCerts),
    /// Clients must send a certificate that chains to these roots, or the handshake fails.
    Required(RootCerts),
}

/// A server's TLS settings beyond its certificate and key, for
/// [`server_config_with`](super::server_config_with).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsServerExtras {
    /// Whether clients are asked for certificates.
    pub client_auth: ClientAuth,
    /// The oldest protocol version accepted. Default TLS 1.2.
    pub min_version: TlsVersion,
}
