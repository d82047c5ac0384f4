//! TLS configuration for the drivers, built on rustls, and what a TLS failure was about.
//!
//! The crypto provider is chosen by feature, as rustls does: `ring` (the default) or
//! `aws-lc-rs` (which wins when both are on; it adds post-quantum key exchange). Turn
//! the default off to use only aws-lc-rs:
//! `smtp-core = { version = "0.1", default-features = false, features = ["aws-lc-rs"] }`.
//!
//! **Certificates for tests.** rustls wants an *end-entity* server certificate. `openssl
//! req -x509` makes a CA certificate by default (`basicConstraints=CA:TRUE`), which rustls
//! refuses as `CaUsedAsEndEntity` ([`TlsErrorKind::CaUsedAsEndEntity`] here). Make one with
//! `-addext basicConstraints=critical,CA:FALSE` (and a `subjectAltName`, since the name in
//! the CN is not checked):
//!
//! ```text
//! openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
//!     -addext basicConstraints=critical,CA:FALSE -addext subjectAltName=DNS:localhost \
//!     -keyout key.pem -out cert.pem
//! ```
//!
//! The client then trusts that file with [`RootCerts::PemFile`]; `rcgen` (Rust) and
//! `trustme` (Python) make end-entity certificates by default.
//!
//! Every configuration here names its crypto provider explicitly instead of relying on a
//! process-wide default, so that linking another crate that installs a different default
//! (or none) never changes what smtpx does.
//!
//! - [`client_config`] builds a client configuration from [`TlsClientOptions`]: which roots
//!   to trust, or (for tests only) no certificate checks at all.
//! - [`server_config_from_pem`] and [`server_config_from_pem_files`] build a server
//!   configuration from a PEM certificate chain and private key.
//! - [`client_config_with`] and [`server_config_with`] take the settings beyond those
//!   ([`TlsClientExtras`], [`TlsServerExtras`]): mutual TLS, the oldest protocol version,
//!   SNI.
//! - [`TlsSession`] is one TLS connection without I/O (client or server), for event
//!   loops in C and Python.
//! - [`TlsInfo`] is what a server's handshake negotiated (version, cipher, SNI, the
//!   client's certificate), for handlers; [`TlsState`] is where a handler reads it.
//! - [`TlsErrorKind`] says what kind of TLS failure an error is (an unknown issuer, a name
//!   mismatch, an expired certificate, another certificate or handshake problem, a
//!   configuration).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

mod info;
mod kind;
mod session;
mod settings;

pub use info::{TlsInfo, TlsState};
pub use kind::TlsErrorKind;
pub use session::{TlsSession, TlsSessionError};
pub use settings::{ClientAuth, TlsClientExtras, TlsIdentity, TlsServerExtras, TlsVersion};

/// Which certificate authorities a client trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RootCerts {
    /// Mozilla's root program, compiled in (the `webpki-roots` crate). Works the same on
    /// every machine, including minimal containers without a CA bundle.
    #[default]
    WebPki,
    /// The operating system's trust store (`rustls-native-certs`). Fails when it holds no
    /// usable certificate.
    System,
    /// The certificates in a PEM file (for a private CA).
    PemFile(PathBuf),
    /// The certificates in PEM text (for a private CA, or a test's self-signed certificate).
    Pem(Vec<u8>),
}

impl RootCerts {
    /// The certificates in the PEM file at `path` ([`RootCerts::PemFile`]).
    pub fn pem_file(path: impl AsRef<Path>) -> RootCerts {
        RootCerts::PemFile(path.as_ref().to_path_buf())
    }
}

/// How a client sets up TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsClientOptions {
    /// The certificate authorities to trust. Default [`RootCerts::WebPki`].
    pub roots: RootCerts,
    /// Accept any server certificate: expired, self-signed, or for another name. The
    /// handshake's signatures are still checked, but the server is not authenticated, so
    /// anyone on the path can read and change the mail. For tests only. Default false.
    pub dangerous_accept_invalid_certs: bool,
}

/// A TLS configuration could not be built: which file or setting, and what failed.
#[derive(Debug)]
pub struct TlsError {
    message: String,
}

impl TlsError {
    fn new(message: impl Into<String>) -> TlsError {
        TlsError {
            message: message.into(),
        }
    }

    /// What kind of failure: always [`TlsErrorKind::Configuration`], since this error is
    /// about building a configuration (a file, a PEM block, a key).
    pub fn kind(&self) -> TlsErrorKind {
        TlsErrorKind::Configuration
    }

    /// The whole message, the same as the `Display` form.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
compile_error!("smtp-core needs a TLS crypto provider: enable the feature `ring` or `aws-lc-rs`");

/// The one provider every configuration here uses: aws-lc-rs when its feature is on.
#[cfg(feature = "aws-lc-rs")]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The one provider every configuration here uses: *ring* (feature `ring`).
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub fn provider() -> Arc<CryptoProvider> {
    // rustls 0.23.48 deprecates this constructor only to point out that *ring* has no
    // post-quantum key exchange; it is the one way to get the provider the user chose by
    // feature (rustls itself calls it the same way), and aws-lc-rs is the feature for
    // post-quantum key exchange.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(feature = "aws-lc-rs")]
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, String> {
    rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("session tickets: {e}"))
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, String> {
    rustls::crypto::ring::Ticketer::new().map_err(|e| format!("session tickets: {e}"))
}

/// The name of the crypto provider compiled in: `"aws-lc-rs"` or `"ring"`.
pub const PROVIDER_NAME: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// A client configuration as `options` say; share the result between connections (it
/// caches session tickets for resumption).
///
/// ```
/// use smtp_core::tls::{client_config, TlsClientOptions};
/// let config = client_config(&TlsClientOptions::default()).unwrap();
/// assert!(config.enable_sni);
/// ```
pub fn client_config(options: &TlsClientOptions) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with(options, &TlsClientExtras::default())
}

/// The configuration of clients given none ([`TlsClientOptions::default`]: the webpki
/// roots, full verification), built once per process and shared: its session cache lets a
/// client that connects again to a server resume its TLS session (no certificate
/// signature for the server to make, none for the client to check), and the roots are
/// parsed once instead of at every connection.
///
/// ```
/// let a = smtp_core::tls::default_client_config().unwrap();
/// let b = smtp_core::tls::default_client_config().unwrap();
/// assert!(std::sync::Arc::ptr_eq(&a, &b));
/// ```
pub fn default_client_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    static DEFAULT: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(config) = DEFAULT.get() {
        return Ok(Arc::clone(config));
    }
    let config = client_config(&TlsClientOptions::default())?;
    Ok(Arc::clone(DEFAULT.get_or_init(|| config)))
}

/// A client configuration as `options` and `extras` say (a client certificate for mutual
/// TLS, the oldest protocol version, SNI).
///
/// ```
/// use smtp_core::tls::{client_config_with, TlsClientExtras, TlsClientOptions, TlsVersion};
/// let extras = TlsClientExtras { min_version: TlsVersion::Tls13, enable_sni: false, ..Default::default() };
/// let config = client_config_with(&TlsClientOptions::default(), &extras).unwrap();
/// assert!(!config.enable_sni);
/// ```
pub fn client_config_with(
    options: &TlsClientOptions,
    extras: &TlsClientExtras,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(extras.min_version.versions())
        .map_err(|e| TlsError::new(format!("TLS client configuration: {e}")))?;
    let builder = if options.dangerous_accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else {
        builder.with_root_certificates(root_store(&options.roots)?)
    };
    let mut config = match &extras.identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| TlsError::new(format!("TLS client certificate and key: {e}")))?,
    };
    config.enable_sni = extras.enable_sni;
    Ok(Arc::new(config))
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::WebPki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(TlsError::new(format!(
                    "no usable root certificate in the system trust store{why}"
                )));
            }
        }
        RootCerts::PemFile(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                TlsError::new(format!(
                    "cannot read root certificates {}: {e}",
                    path.display()
                ))
            })?;
            add_pem_roots(&mut store, &pem)
                .map_err(|e| TlsError::new(format!("root certificates {}: {e}", path.display())))?;
        }
        RootCerts::Pem(pem) => add_pem_roots(&mut store, pem)
            .map_err(|e| TlsError::new(format!("root certificates (PEM text): {e}")))?,
    }
    Ok(store)
}

fn add_pem_roots(store: &mut RootCertStore, pem: &[u8]) -> Result<(), String> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("unusable certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(())
}

/// Trusts every certificate, but still checks that the server holds the key of the
/// certificate it sent, so the handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1) in two files; clients are not asked for certificates.
///
/// ```no_run
/// let config = smtp_core::tls::server_config_from_pem_files("cert.pem", "key.pem")?;
/// # Ok::<(), smtp_core::tls::TlsError>(())
/// ```
pub fn server_config_from_pem_files(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let identity = TlsIdentity::from_pem_files(cert, key)?;
    server_config_with(identity, &TlsServerExtras::default()).map_err(|e| {
        TlsError::new(format!(
            "TLS certificate {} with key {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// A server configuration with `identity` as `extras` say: clients asked for
/// certificates (mutual TLS) or not, the oldest protocol version.
pub fn server_config_with(
    identity: TlsIdentity,
    extras: &TlsServerExtras,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(extras.min_version.versions())
        .map_err(|e| TlsError::new(format!("TLS server configuration: {e}")))?;
    let builder = match &extras.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(roots) | ClientAuth::Required(roots) => {
            let store = Arc::new(
                root_store(roots)
                    .map_err(|e| TlsError::new(format!("client certificate roots: {e}")))?,
            );
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(store, provider);
            let verifier = if matches!(extras.client_auth, ClientAuth::Optional(_)) {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::new(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| TlsError::new(format!("rejected: {e}")))?;
    // Returning clients resume with a ticket instead of a new certificate signature (the
    // handshake's most expensive step, see bench/tls_handshake.py). Stateless tickets,
    // encrypted under keys rotated every 6 hours, serve any number of clients without a
    // server-side cache; one ticket per handshake is enough for a client that reconnects
    // one connection at a time.
    config.ticketer = ticketer().map_err(TlsError::new)?;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// A server configuration from PEM text: a certificate chain (leaf first) and a private
/// key; clients are not asked for certificates.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let identity = TlsIdentity::from_pem(cert_pem, key_pem)?;
    server_config_with(identity, &TlsServerExtras::default())
        .map_err(|e| TlsError::new(format!("TLS certificate and key: {e}")))
}

fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(chain)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found".to_owned(),
        e => format!("bad PEM: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_client_config_builds() {
        assert!(client_config(&TlsClientOptions::default()).is_ok());
        let insecure = TlsClientOptions {
            dangerous_accept_invalid_certs: true,
            ..TlsClientOptions::default()
        };
        assert!(client_config(&insecure).is_ok());
    }

    #[test]
    fn bad_pem_roots_are_reported() {
        let options = TlsClientOptions {
            roots: RootCerts::Pem(b"not a certificate".to_vec()),
            ..TlsClientOptions::default()
        };
        let e = client_config(&options).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn missing_files_are_named() {
        let e = server_config_from_pem_files(
            Path::new("no-such-cert.pem"),
            Path::new("no-such-key.pem"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no-such-cert.pem"), "{e}");
        let options = TlsClientOptions {
            roots: RootCerts::PemFile(PathBuf::from("no-such-ca.pem")),
            ..TlsClientOptions::default()
        };
        let e = client_config(&options).unwrap_err();
        assert!(e.to_string().contains("no-such-ca.pem"), "{e}");
    }

    #[test]
    fn server_config_from_generated_pem() {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = generated.cert.pem();
        let key = generated.signing_key.serialize_pem();
        let config = server_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        // Returning clients can resume: stateless tickets are on.
        assert!(config.ticketer.enabled());
        let e = server_config_from_pem(cert.as_bytes(), b"").unwrap_err();
        assert!(e.to_string().contains("no PRIVATE KEY"), "{e}");
        let e = server_config_from_pem(key.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }
}
