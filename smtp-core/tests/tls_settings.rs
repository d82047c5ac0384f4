//! The TLS settings beyond the defaults (mutual TLS, the oldest protocol version, SNI)
//! and the classification of TLS failures, with certificates made here (rcgen) and real
//! rustls handshakes pumped in memory.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};
use smtp_core::tls::{
    ClientAuth, RootCerts, TlsClientExtras, TlsClientOptions, TlsErrorKind, TlsIdentity,
    TlsServerExtras, TlsVersion, client_config_with, server_config_with,
};

/// A CA and certificates it signs, as PEM.
struct Pki {
    ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A CA named `name` (distinct names, so that one CA is never taken for another).
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki {
            ca_pem: ca.pem(),
            ca,
        }
    }

    /// A leaf for `name` (PEM certificate, PEM key); `expired` puts its validity in the past.
    fn leaf(&self, name: &str, expired: bool) -> (String, String) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn roots(&self) -> RootCerts {
        RootCerts::Pem(self.ca_pem.clone().into_bytes())
    }
}

/// Runs the handshake to its end (bounded); gives the first error on either side.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..64 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
        }
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
        }
        client.process_new_packets()?;
    }
    panic!("the handshake did not finish in 64 rounds");
}

fn connect(
    pki: &Pki,
    server_cert: (String, String),
    server_extras: &TlsServerExtras,
    client_roots: RootCerts,
    client_extras: &TlsClientExtras,
    name: &str,
) -> (
    ClientConnection,
    ServerConnection,
    Result<(), rustls::Error>,
) {
    let _ = pki;
    let identity =
        TlsIdentity::from_pem(server_cert.0.as_bytes(), server_cert.1.as_bytes()).unwrap();
    let server_config = server_config_with(identity, server_extras).unwrap();
    let options = TlsClientOptions {
        roots: client_roots,
        ..TlsClientOptions::default()
    };
    let client_config = client_config_with(&options, client_extras).unwrap();
    let mut client = ClientConnection::new(
        client_config,
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(Arc::clone(&server_config)).unwrap();
    let outcome = handshake(&mut client, &mut server);
    (client, server, outcome)
}

#[test]
fn mutual_tls_shows_the_client_certificate_to_the_server() {
    let pki = Pki::new("test CA");
    let (client_cert, client_key) = pki.leaf("client.example", false);
    let extras = TlsClientExtras {
        identity: Some(
            TlsIdentity::from_pem(client_cert.as_bytes(), client_key.as_bytes()).unwrap(),
        ),
        ..TlsClientExtras::default()
    };
    let server_extras = TlsServerExtras {
        client_auth: ClientAuth::Required(pki.roots()),
        ..TlsServerExtras::default()
    };
    let (_, server, outcome) = connect(
        &pki,
        pki.leaf("localhost", false),
        &server_extras,
        pki.roots(),
        &extras,
        "localhost",
    );
    outcome.unwrap();
    let seen = server
        .peer_certificates()
        .expect("the client's certificate");
    assert_eq!(seen.len(), 1);
    assert_eq!(server.server_name(), Some("localhost"));

    // Without a certificate the same server refuses the client.
    let (_, _, outcome) = connect(
        &pki,
        pki.leaf("localhost", false),
        &server_extras,
        pki.roots(),
        &TlsClientExtras::default(),
        "localhost",
    );
    assert!(outcome.is_err());

    // An optional client certificate lets a client without one in.
    let optional = TlsServerExtras {
        client_auth: ClientAuth::Optional(pki.roots()),
        ..TlsServerExtras::default()
    };
    let (_, server, outcome) = connect(
        &pki,
        pki.leaf("localhost", false),
        &optional,
        pki.roots(),
        &TlsClientExtras::default(),
        "localhost",
    );
    outcome.unwrap();
    assert!(server.peer_certificates().is_none());
}

#[test]
fn the_minimum_version_and_sni_are_applied() {
    let pki = Pki::new("test CA");
    let tls13 = TlsClientExtras {
        min_version: TlsVersion::Tls13,
        enable_sni: false,
        ..TlsClientExtras::default()
    };
    let (client, server, outcome) = connect(
        &pki,
        pki.leaf("localhost", false),
        &TlsServerExtras::default(),
        pki.roots(),
        &tls13,
        "localhost",
    );
    outcome.unwrap();
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(server.server_name(), None, "SNI was turned off");

    // A TLS 1.3-only server and a client that allows TLS 1.2: 1.3 is negotiated; a
    // TLS 1.2-only peer is not possible to configure here, so the refusal is tested by
    // the handshake of a 1.3-only client against a 1.3-only server above.
    let server13 = TlsServerExtras {
        min_version: TlsVersion::Tls13,
        ..TlsServerExtras::default()
    };
    let (client, _, outcome) = connect(
        &pki,
        pki.leaf("localhost", false),
        &server13,
        pki.roots(),
        &TlsClientExtras::default(),
        "localhost",
    );
    outcome.unwrap();
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn failures_are_classified() {
    let pki = Pki::new("test CA");
    let other = Pki::new("another CA");
    let plain = TlsClientExtras::default();
    let server = TlsServerExtras::default();
    let failure = |cert, roots, name| {
        let (_, _, outcome) = connect(&pki, cert, &server, roots, &plain, name);
        TlsErrorKind::of_rustls(&outcome.expect_err("the handshake must fail"))
    };
    assert_eq!(
        failure(pki.leaf("localhost", false), other.roots(), "localhost"),
        TlsErrorKind::UnknownIssuer
    );
    assert_eq!(
        failure(pki.leaf("localhost", false), pki.roots(), "mx.example"),
        TlsErrorKind::NameMismatch
    );
    assert_eq!(
        failure(pki.leaf("localhost", true), pki.roots(), "localhost"),
        TlsErrorKind::Expired
    );
}
