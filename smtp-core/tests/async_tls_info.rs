//! What a TLS handshake negotiated reaches the handler, on both server drivers (blocking
//! and tokio), after STARTTLS and with implicit TLS, with and without a client
//! certificate: real sockets, real rustls, certificates made here (rcgen).
//!
//! (The file name starts with `async_` so that `make test` builds it with the `tokio`
//! feature.)
#![cfg(feature = "tokio")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use smtp_core::address::ReversePath;
use smtp_core::asynchronous::server::AsyncServer;
use smtp_core::blocking::client::{ClientOptions, SmtpClient, TlsMode};
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::client::Envelope;
use smtp_core::command::MailParameters;
use smtp_core::handler::{ConnectionInfo, Handler, SessionHandler};
use smtp_core::reply::Reply;
use smtp_core::server::{Decision, ServerConfig};
use smtp_core::tls::{
    ClientAuth, RootCerts, TlsClientExtras, TlsClientOptions, TlsIdentity, TlsInfo,
    TlsServerExtras, TlsState, client_config_with, server_config_with,
};

/// What the handler saw of TLS, hook by hook, for one connection.
#[derive(Clone, Debug, Default)]
struct Seen {
    at_connect: Option<TlsInfo>,
    at_tls_started: Option<TlsInfo>,
    at_mail: Option<TlsInfo>,
}

/// Records [`Seen`] per connection, in the order connections close.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct RecorderSession {
    tls: TlsState,
    seen: Seen,
    all: Arc<Mutex<Vec<Seen>>>,
}

impl Handler for Recorder {
    type Session = RecorderSession;
    fn connect(&self, info: &ConnectionInfo) -> Result<RecorderSession, Reply> {
        Ok(RecorderSession {
            tls: info.tls_state.clone(),
            seen: Seen {
                at_connect: info.tls_state.get().cloned(),
                ..Seen::default()
            },
            all: Arc::clone(&self.0),
        })
    }
}

impl SessionHandler for RecorderSession {
    fn tls_started(&mut self) {
        self.seen.at_tls_started = self.tls.get().cloned();
    }
    fn mail(&mut self, _: &ReversePath, _: &MailParameters) -> Decision {
        self.seen.at_mail = self.tls.get().cloned();
        Decision::Accept
    }
    fn close(&mut self) {
        self.all.lock().unwrap().push(self.seen.clone());
    }
}

/// A CA, a server certificate for "localhost" and a client certificate, all signed by it.
struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    client_der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "tls info test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            (cert.pem(), key.serialize_pem(), cert.der().to_vec())
        };
        let (server_pem, server_key, _) = leaf("localhost");
        let (client_pem, client_key, client_der) = leaf("client.example");
        Pki {
            ca_pem: ca.pem(),
            server: (server_pem, server_key),
            client: (client_pem, client_key),
            client_der,
        }
    }

    fn roots(&self) -> RootCerts {
        RootCerts::Pem(self.ca_pem.clone().into_bytes())
    }

    /// A server that asks for client certificates but does not require one.
    fn server_options(&self) -> ServerOptions {
        let mut config = ServerConfig::new("mx.test");
        config.starttls = true;
        let identity =
            TlsIdentity::from_pem(self.server.0.as_bytes(), self.server.1.as_bytes()).unwrap();
        let extras = TlsServerExtras {
            client_auth: ClientAuth::Optional(self.roots()),
            ..TlsServerExtras::default()
        };
        let mut options = ServerOptions::new(config);
        options.tls = Some(server_config_with(identity, &extras).unwrap());
        options
    }

    /// A client that trusts the CA, with the client certificate when `with_cert`.
    fn client(&self, mode: TlsMode, with_cert: bool) -> ClientOptions {
        let extras = TlsClientExtras {
            identity: with_cert.then(|| {
                TlsIdentity::from_pem(self.client.0.as_bytes(), self.client.1.as_bytes()).unwrap()
            }),
            ..TlsClientExtras::default()
        };
        let mut o = ClientOptions::new("client.test");
        o.tls = mode;
        o.connect_timeout = Duration::from_secs(5);
        o.tls_config = Some(
            client_config_with(
                &TlsClientOptions {
                    roots: self.roots(),
                    ..TlsClientOptions::default()
                },
                &extras,
            )
            .unwrap(),
        );
        o
    }
}

/// Sends one message from a client with `options` to `addr`, then quits.
fn send(addr: SocketAddr, options: ClientOptions) {
    let mut client = SmtpClient::connect(addr, "localhost", options).unwrap();
    let envelope = Envelope::new("a@example.org", ["b@example.net"]).unwrap();
    let result = client
        .send_bytes(&envelope, b"Subject: t\r\n\r\nx\r\n")
        .unwrap();
    assert!(result.is_success(), "{result:?}");
    client.quit().unwrap();
}

/// Runs the four connections (STARTTLS and implicit, each with and without a client
/// certificate) against a server started by `serve`, and checks what the handler saw.
fn check(serve: impl FnOnce(Recorder, ServerOptions) -> (Vec<SocketAddr>, Box<dyn FnOnce()>)) {
    let pki = Pki::new();
    let recorder = Recorder::default();
    let (addrs, stop) = serve(recorder.clone(), pki.server_options());
    let (plain, implicit) = (addrs[0], addrs[1]);
    send(plain, pki.client(TlsMode::StartTlsRequired, false));
    send(plain, pki.client(TlsMode::StartTlsRequired, true));
    send(implicit, pki.client(TlsMode::Implicit, false));
    send(implicit, pki.client(TlsMode::Implicit, true));
    stop();
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (i, s) in seen.iter().enumerate() {
        let implicit = i >= 2;
        let with_cert = i % 2 == 1;
        // STARTTLS: nothing at connect; the details from tls_started on.
        // Implicit TLS: the details at connect already (no tls_started hook).
        let info = if implicit {
            assert!(s.at_tls_started.is_none(), "{s:?}");
            s.at_connect
                .clone()
                .expect("implicit TLS: known at connect")
        } else {
            assert!(s.at_connect.is_none(), "{s:?}");
            s.at_tls_started.clone().expect("known at tls_started")
        };
        assert_eq!(s.at_mail.as_ref(), Some(&info), "the same details later on");
        assert!(
            matches!(info.version.as_deref(), Some("TLSv1.3" | "TLSv1.2")),
            "{info:?}"
        );
        assert!(
            info.cipher.as_deref().is_some_and(|c| c.starts_with("TLS")),
            "{info:?}"
        );
        assert_eq!(info.server_name.as_deref(), Some("localhost"));
        if with_cert {
            assert_eq!(info.peer_certificate(), Some(pki.client_der.as_slice()));
        } else {
            assert!(info.peer_certificates.is_empty(), "{info:?}");
        }
    }
}

#[test]
fn blocking_server_hands_tls_details_to_the_handler() {
    check(|handler, options| {
        let server = Server::builder(handler, options)
            .listen("127.0.0.1:0")
            .unwrap()
            .listen_tls("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap();
        let addrs = server.local_addrs().to_vec();
        (
            addrs,
            Box::new(move || assert_eq!(server.shutdown(Duration::from_secs(5)), 0)),
        )
    });
}

#[test]
fn async_server_hands_tls_details_to_the_handler() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    check(|handler, options| {
        let _guard = rt.enter();
        let server = AsyncServer::builder(handler, options)
            .listen("127.0.0.1:0")
            .unwrap()
            .listen_tls("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap();
        let addrs = server.local_addrs().to_vec();
        let handle = rt.handle().clone();
        (
            addrs,
            Box::new(move || {
                let cut = handle.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(30),
                        server.shutdown(Duration::from_secs(5)),
                    )
                    .await
                    .expect("bounded shutdown")
                });
                assert_eq!(cut, 0);
            }),
        )
    });
}
