//! smtpx's blocking client against smtpx's blocking server over loopback: TLS both ways,
//! AUTH, pipelining, BDAT, refused recipients, the size limit, timeouts and a Maildir that
//! cannot be written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smtp_core::auth::{AuthMechanism, Credentials};
use smtp_core::blocking::client::{ClientOptions, ErrorKind, SmtpClient, TlsMode};
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::client::Envelope;
use smtp_core::handler::{Handler, PasswordAuth};
use smtp_core::maildir::MaildirHandler;
use smtp_core::reply::ReplyCode;
use smtp_core::server::ServerConfig;
use smtp_core::tls::{self, RootCerts, TlsClientOptions};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("smtpx-pair-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for "localhost", made for this test run only.
struct TestCert {
    cert_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_cert() -> TestCert {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = key.cert.pem();
    let key_pem = key.signing_key.serialize_pem();
    let server = tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    TestCert { cert_pem, server }
}

fn trusting(cert: &TestCert) -> Arc<rustls::ClientConfig> {
    tls::client_config(&TlsClientOptions {
        roots: RootCerts::Pem(cert.cert_pem.clone().into_bytes()),
        ..TlsClientOptions::default()
    })
    .unwrap()
}

fn start<H: Handler>(
    handler: H,
    config: ServerConfig,
    tls: Option<&TestCert>,
    implicit: bool,
) -> Server {
    let mut options = ServerOptions::new(config);
    options.tls = tls.map(|c| Arc::clone(&c.server));
    let mut builder = Server::builder(handler, options)
        .listen("127.0.0.1:0")
        .unwrap();
    if implicit {
        builder = builder.listen_tls("127.0.0.1:0").unwrap();
    }
    builder.start().unwrap()
}

fn maildir(dir: &TempDir) -> MaildirHandler {
    MaildirHandler::new(dir.0.join("md"), "mx.test").unwrap()
}

fn new_files(dir: &TempDir) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir.0.join("md/new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn tmp_is_empty(dir: &TempDir) -> bool {
    std::fs::read_dir(dir.0.join("md/tmp"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

fn options(tls: TlsMode) -> ClientOptions {
    let mut o = ClientOptions::new("client.test");
    o.tls = tls;
    o
}

#[test]
fn starttls_auth_pipelining_and_bdat_into_maildir() {
    let dir = TempDir::new("starttls");
    let cert = test_cert();
    let mut config = ServerConfig::new("mx.test");
    config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    config.require_tls = true;
    config.max_recipients = 2;
    let server = start(
        PasswordAuth::new(maildir(&dir), [("alice", "s3cret")]),
        config,
        Some(&cert),
        false,
    );
    let addr = server.local_addrs()[0];

    let mut o = options(TlsMode::StartTlsRequired);
    o.tls_config = Some(trusting(&cert));
    o.credentials = Some(Credentials::password("alice", "s3cret"));
    let mut client = SmtpClient::connect(addr, "localhost", o).unwrap();
    assert!(client.is_tls());
    let caps = client.capabilities().unwrap();
    assert!(caps.pipelining && caps.chunking && !caps.starttls);

    // Three recipients against a limit of two: the third is refused, the others get it.
    let envelope = Envelope::new(
        "a@example.org",
        ["b@example.net", "c@example.net", "d@example.net"],
    )
    .unwrap();
    let result = client
        .send_bytes(&envelope, b"Subject: one\n\n.dot\nline\n")
        .unwrap();
    assert!(result.is_success());
    assert_eq!(result.accepted().count(), 2);
    let refused: Vec<_> = result.refused().collect();
    assert_eq!(refused[0].address.as_str(), "d@example.net");
    assert_eq!(refused[0].reply.code(), ReplyCode::INSUFFICIENT_STORAGE);
    let queue_id = result.queue_id().unwrap().to_owned();

    // The connection is reused.
    for i in 0..5 {
        let envelope = Envelope::new("a@example.org", ["b@example.net"]).unwrap();
        let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        assert!(
            client
                .send_bytes(&envelope, body.as_bytes())
                .unwrap()
                .is_success()
        );
    }
    assert_eq!(client.noop().unwrap().code(), ReplyCode::OK);
    client.quit().unwrap();

    let files = new_files(&dir);
    assert_eq!(files.len(), 6);
    let first = files
        .iter()
        .find(|f| f.windows(queue_id.len()).any(|w| w == queue_id.as_bytes()))
        .unwrap();
    let text = String::from_utf8_lossy(first);
    assert!(
        text.starts_with(
            "Return-Path: <a@example.org>\r\nReceived: from client.test (127.0.0.1)\r\n"
        ),
        "{text}"
    );
    assert!(text.contains("with ESMTPSA id"), "{text}");
    assert!(
        text.ends_with("\r\nSubject: one\r\n\r\n.dot\r\nline\r\n"),
        "{text}"
    );
    assert!(tmp_is_empty(&dir));
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

#[test]
fn implicit_tls_listener() {
    let dir = TempDir::new("implicit");
    let cert = test_cert();
    let server = start(
        maildir(&dir),
        ServerConfig::new("mx.test"),
        Some(&cert),
        true,
    );
    let tls_addr = server.local_addrs()[1];
    let mut o = options(TlsMode::Implicit);
    o.tls_config = Some(trusting(&cert));
    let mut client = SmtpClient::connect(tls_addr, "localhost", o).unwrap();
    assert!(client.is_tls());
    let envelope = Envelope::new("a@example.org", ["b@example.net"]).unwrap();
    assert!(
        client
            .send_bytes(&envelope, b"Subject: 465\r\n\r\nhi\r\n")
            .unwrap()
            .is_success()
    );
    client.quit().unwrap();
    assert!(String::from_utf8_lossy(&new_files(&dir)[0]).contains("with ESMTPS id"));
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn wrong_password_and_untrusted_certificate() {
    let dir = TempDir::new("auth");
    let cert = test_cert();
    let mut config = ServerConfig::new("mx.test");
    config.auth_mechanisms = vec![AuthMechanism::Plain];
    let server = start(
        PasswordAuth::new(maildir(&dir), [("alice", "s3cret")]),
        config,
        Some(&cert),
        false,
    );
    let addr = server.local_addrs()[0];

    let mut o = options(TlsMode::StartTlsRequired);
    o.tls_config = Some(trusting(&cert));
    let mut client = SmtpClient::connect(addr, "localhost", o).unwrap();
    let err = client
        .login(Credentials::password("alice", "wrong"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed);
    assert_eq!(err.reply().unwrap().code(), ReplyCode::AUTH_INVALID);
    assert!(
        client
            .login(Credentials::password("alice", "s3cret"))
            .is_ok()
    );
    client.quit().unwrap();

    // Default verification against a certificate nobody trusts fails.
    let err =
        SmtpClient::connect(addr, "localhost", options(TlsMode::StartTlsRequired)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls);
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn size_limit_announced_and_discovered() {
    let dir = TempDir::new("size");
    let mut config = ServerConfig::new("mx.test");
    config.max_message_size = 1000;
    let server = start(maildir(&dir), config, None, false);
    let mut client =
        SmtpClient::connect(server.local_addrs()[0], "localhost", options(TlsMode::None)).unwrap();
    let envelope = Envelope::new("a@example.org", ["b@example.net"]).unwrap();
    // Announced: refused before anything is sent.
    let announced = client.send_bytes(&envelope, &[b'x'; 2000]);
    let err = announced.as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    // Discovered: a stream of unknown size that turns out too big.
    let discovered = client.send(&envelope, std::io::repeat(b'y').take_bytes(5000), None);
    let result = discovered.as_ref().unwrap();
    assert!(!result.is_success());
    assert_eq!(
        result.data.as_ref().unwrap().code(),
        ReplyCode::STORAGE_EXCEEDED
    );
    // One shape for both.
    use smtp_core::client::SendOutcome;
    let (early, late) = (
        announced.message_too_large().unwrap(),
        discovered.message_too_large().unwrap(),
    );
    assert_eq!((early.limit, early.sent), (Some(1000), false));
    assert!(late.sent);
    assert_eq!(late.reply.unwrap().code(), ReplyCode::STORAGE_EXCEEDED);
    // The connection still works.
    assert!(
        client
            .send_bytes(&envelope, b"Subject: small\r\n\r\nok\r\n")
            .unwrap()
            .is_success()
    );
    client.quit().unwrap();
    assert_eq!(new_files(&dir).len(), 1);
    assert!(tmp_is_empty(&dir));
    server.shutdown(Duration::from_secs(5));
}

/// `Read::take` by another name, so the call above reads as what it is.
trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: u64) -> std::io::Take<Self> {
        std::io::Read::take(self, n)
    }
}

impl<R: std::io::Read> TakeBytes for R {}

#[test]
fn unwritable_maildir_gives_451_and_the_server_keeps_serving() {
    let dir = TempDir::new("unwritable");
    let handler = maildir(&dir);
    let server = start(handler, ServerConfig::new("mx.test"), None, false);
    let addr = server.local_addrs()[0];
    // tmp/ replaced by a file: nothing can be created (root ignores permission bits).
    std::fs::remove_dir_all(dir.0.join("md/tmp")).unwrap();
    std::fs::write(dir.0.join("md/tmp"), b"not a directory").unwrap();
    let mut client = SmtpClient::connect(addr, "localhost", options(TlsMode::None)).unwrap();
    let envelope = Envelope::new("a@example.org", ["b@example.net"]).unwrap();
    let result = client
        .send_bytes(&envelope, b"Subject: lost?\r\n\r\nno\r\n")
        .unwrap();
    assert!(!result.is_success());
    assert_eq!(
        result.data.as_ref().unwrap().code(),
        ReplyCode::LOCAL_ERROR,
        "{result:?}"
    );
    // Repaired, the same connection delivers.
    std::fs::remove_file(dir.0.join("md/tmp")).unwrap();
    std::fs::create_dir(dir.0.join("md/tmp")).unwrap();
    assert!(
        client
            .send_bytes(&envelope, b"Subject: kept\r\n\r\nyes\r\n")
            .unwrap()
            .is_success()
    );
    client.quit().unwrap();
    let files = new_files(&dir);
    assert_eq!(files.len(), 1);
    assert!(String::from_utf8_lossy(&files[0]).contains("Subject: kept"));
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn short_server_timeout_closes_an_idle_client() {
    let dir = TempDir::new("timeout");
    let mut config = ServerConfig::new("mx.test");
    config.command_timeout = Duration::from_millis(300);
    let server = start(maildir(&dir), config, None, false);
    let mut client =
        SmtpClient::connect(server.local_addrs()[0], "localhost", options(TlsMode::None)).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let err = client.noop().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ServerClosed | ErrorKind::ConnectionClosed | ErrorKind::Io
        ),
        "{err}"
    );
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn lmtp_client_and_server() {
    let dir = TempDir::new("lmtp");
    let mut config = ServerConfig::new("mx.test");
    config.lmtp = true;
    let server = start(maildir(&dir), config, None, false);
    let mut o = options(TlsMode::None);
    o.lmtp = true;
    let mut client = SmtpClient::connect(server.local_addrs()[0], "localhost", o).unwrap();
    let envelope = Envelope::new("a@example.org", ["b@example.net", "c@example.net"]).unwrap();
    let result = client
        .send_bytes(&envelope, b"Subject: lmtp\r\n\r\nhi\r\n")
        .unwrap();
    assert!(result.is_success());
    assert!(
        result
            .recipients
            .iter()
            .all(|r| r.delivery.as_ref().is_some_and(|d| d.is_completion()))
    );
    client.quit().unwrap();
    assert!(String::from_utf8_lossy(&new_files(&dir)[0]).contains("with LMTP id"));
    server.shutdown(Duration::from_secs(5));
}

/// A client meeting a certificate it cannot trust is told which problem it was, without
/// downcasting to rustls's error: unknown issuer, wrong name, a CA as end entity.
#[test]
fn tls_failures_say_which_certificate_problem() {
    use smtp_core::tls::TlsErrorKind;
    let cert = test_cert();
    let server = start(
        smtp_core::handler::DiscardHandler,
        ServerConfig::new("mx.test"),
        Some(&cert),
        false,
    );
    let addr = server.local_addrs()[0];
    let kind_for = |name: &str, config: Option<Arc<rustls::ClientConfig>>| {
        let mut o = options(TlsMode::StartTlsRequired);
        o.tls_config = config;
        let err = SmtpClient::connect(addr, name, o).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
        err.tls_kind().unwrap()
    };
    assert_eq!(kind_for("localhost", None), TlsErrorKind::UnknownIssuer);
    assert_eq!(
        kind_for("other.test", Some(trusting(&cert))),
        TlsErrorKind::NameMismatch
    );
    server.shutdown(Duration::from_secs(5));

    // A CA certificate (what `openssl req -x509` makes by default) served as the leaf.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = params.self_signed(&key).unwrap();
    let ca_cert = TestCert {
        cert_pem: ca.pem(),
        server: tls::server_config_from_pem(ca.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap(),
    };
    let server = start(
        smtp_core::handler::DiscardHandler,
        ServerConfig::new("mx.test"),
        Some(&ca_cert),
        false,
    );
    let mut o = options(TlsMode::StartTlsRequired);
    o.tls_config = Some(trusting(&ca_cert));
    let err = SmtpClient::connect(server.local_addrs()[0], "localhost", o).unwrap_err();
    assert_eq!(
        err.tls_kind(),
        Some(TlsErrorKind::CaUsedAsEndEntity),
        "{err}"
    );
    assert!(err.tls_kind().unwrap().is_certificate());
    server.shutdown(Duration::from_secs(5));

    // A configuration problem is not a certificate problem.
    let e = tls::server_config_from_pem(b"", b"").unwrap_err();
    assert!(e.kind().is_configuration());
}

/// `send_batch` takes owned messages from an iterator that makes them as the batch goes.
#[test]
fn send_batch_over_owned_messages_from_an_iterator() {
    let dir = TempDir::new("owned-batch");
    let server = start(maildir(&dir), ServerConfig::new("mx.test"), None, false);
    let mut client =
        SmtpClient::connect(server.local_addrs()[0], "localhost", options(TlsMode::None)).unwrap();
    let made = std::cell::Cell::new(0);
    let messages = (0..3).map(|i| {
        made.set(made.get() + 1);
        let envelope = Envelope::new("a@example.org", [format!("user{i}@example.net")]).unwrap();
        (
            envelope,
            format!("Subject: {i}\r\n\r\nmessage {i}\r\n").into_bytes(),
        )
    });
    let outcomes = client.send_batch(messages);
    assert_eq!(made.get(), 3);
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|o| o.as_ref().unwrap().is_success()));
    client.quit().unwrap();
    let files = new_files(&dir);
    assert_eq!(files.len(), 3);
    for i in 0..3 {
        let needle = format!("message {i}");
        assert!(
            files
                .iter()
                .any(|f| String::from_utf8_lossy(f).contains(&needle))
        );
    }
    server.shutdown(Duration::from_secs(5));
}
