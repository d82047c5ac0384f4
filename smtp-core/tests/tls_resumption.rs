//! TLS 1.3 through STARTTLS with a raw rustls client, against both server drivers: a
//! returning client resumes with the session ticket of its previous connection, a fresh
//! client gets a full handshake, and the conversation after the handshake is intact.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::HandshakeKind;
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::handler::DiscardHandler;
use smtp_core::server::ServerConfig;
use smtp_core::tls::{self, RootCerts, TlsClientOptions};

const BOUND: Duration = Duration::from_secs(20);

/// A certificate for "localhost", made for this run, and a client configuration that
/// trusts it (one configuration per returning client: it holds the tickets).
fn configs() -> (
    Arc<rustls::ServerConfig>,
    impl Fn() -> Arc<rustls::ClientConfig>,
) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = key.cert.pem();
    let server = tls::server_config_from_pem(
        cert_pem.as_bytes(),
        key.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let client = move || {
        tls::client_config(&TlsClientOptions {
            roots: RootCerts::Pem(cert_pem.clone().into_bytes()),
            ..TlsClientOptions::default()
        })
        .unwrap()
    };
    (server, client)
}

/// Reads one whole reply (all its lines) and returns its last line.
fn reply(r: &mut impl BufRead) -> String {
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
        assert!(line.len() >= 4, "short reply line {line:?}");
        if line.as_bytes()[3] != b'-' {
            return line;
        }
    }
}

/// One message over a new connection with STARTTLS; returns how the handshake went.
fn one_message(addr: SocketAddr, client: &Arc<rustls::ClientConfig>) -> HandshakeKind {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(BOUND)).unwrap();
    tcp.set_write_timeout(Some(BOUND)).unwrap();
    let mut plain = BufReader::new(tcp.try_clone().unwrap());
    assert!(reply(&mut plain).starts_with("220"));
    (&tcp).write_all(b"EHLO client.test\r\n").unwrap();
    assert!(reply(&mut plain).starts_with("250"));
    (&tcp).write_all(b"STARTTLS\r\n").unwrap();
    assert!(reply(&mut plain).starts_with("220"));
    assert!(plain.buffer().is_empty(), "bytes after the 220 to STARTTLS");
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"EHLO client.test\r\n").unwrap();
    let kind = tls.conn.handshake_kind().expect("handshake done");
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut r = BufReader::new(tls);
    assert!(reply(&mut r).starts_with("250"));
    r.get_mut()
        .write_all(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<b@server.test>\r\nDATA\r\n")
        .unwrap();
    assert!(reply(&mut r).starts_with("250"));
    assert!(reply(&mut r).starts_with("250"));
    assert!(reply(&mut r).starts_with("354"));
    r.get_mut()
        .write_all(b"Subject: resumption\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        .unwrap();
    assert!(reply(&mut r).starts_with("250"));
    assert!(reply(&mut r).starts_with("221"));
    // The server ends TLS cleanly: close_notify, then end of input.
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
    kind
}

/// A fresh client's first connection is a full handshake; its next ones resume.
fn returning_client_resumes(addr: SocketAddr, client: impl Fn() -> Arc<rustls::ClientConfig>) {
    let returning = client();
    assert_eq!(one_message(addr, &returning), HandshakeKind::Full);
    for _ in 0..3 {
        assert_eq!(one_message(addr, &returning), HandshakeKind::Resumed);
    }
    // Another client holds no ticket: a full handshake.
    assert_eq!(one_message(addr, &client()), HandshakeKind::Full);
}

#[test]
fn blocking_server_returning_client_resumes() {
    let (server_tls, client) = configs();
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    options.tls = Some(server_tls);
    let server = Server::builder(DiscardHandler, options)
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    returning_client_resumes(server.local_addrs()[0], client);
}

#[cfg(feature = "tokio")]
#[test]
fn async_server_returning_client_resumes() {
    use smtp_core::asynchronous::AsyncServer;
    let (server_tls, client) = configs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    options.tls = Some(server_tls);
    let server = {
        let _guard = rt.enter();
        AsyncServer::builder(DiscardHandler, options)
            .listen("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap()
    };
    let addr = server.local_addrs()[0];
    // The client is blocking: run it off the runtime's threads.
    std::thread::spawn(move || returning_client_resumes(addr, client))
        .join()
        .unwrap();
    drop(server);
}
