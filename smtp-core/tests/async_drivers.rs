//! The behaviour every driver must have, written once and run against both: the blocking
//! server and client, and the async (tokio) server and client. Each test body takes a
//! [`Driver`]; `both_drivers!` instantiates it as `blocking::NAME` and
//! `asynchronous::NAME`. Servers are started and clients used through the small harness
//! below, and raw-socket peers check what goes over the wire. Every wait is bounded.
//!
//! (The file name starts with `async_` so that `make test` builds it with the `tokio`
//! feature, which the async half needs.)
#![cfg(feature = "tokio")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use smtp_core::address::{ForwardPath, ReversePath};
use smtp_core::asynchronous::client::AsyncSmtpClient;
use smtp_core::asynchronous::server::{
    AsyncHandler, AsyncServer, AsyncServerHandle, AsyncSessionHandler,
};
use smtp_core::auth::{AuthAttempt, AuthMechanism, Credentials};
use smtp_core::blocking::client::{ClientOptions, Error, ErrorKind, SmtpClient, TlsMode};
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::client::{ClientTimeouts, Envelope, TransactionResult};
use smtp_core::command::{MailParameters, RcptParameters};
use smtp_core::ehlo::Capabilities;
use smtp_core::handler::{
    ConnectionInfo, DiscardHandler, Handler, PasswordAuth, SessionHandler, Transaction,
};
use smtp_core::maildir::MaildirHandler;
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::proxy::{ProxyCommand, ProxyHeader, ProxyProtocol, ProxyTlv};
use smtp_core::server::{AbortReason, Decision, HelloVerb, ListenerOptions, ServerConfig};
use smtp_core::tls::{self, RootCerts, TlsClientOptions};
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;

/// The longest any single step of a test may take.
const BOUND: Duration = Duration::from_secs(30);

/// Which driver a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// `blocking::server::Server` and `blocking::client::SmtpClient`.
    Blocking,
    /// `asynchronous::server::AsyncServer` and `asynchronous::client::AsyncSmtpClient`.
    Async,
}

/// Writes each test once and runs it against both drivers.
macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {
        mod blocking {
            $(#[test] fn $name() { super::$name(super::Driver::Blocking) })*
        }
        mod asynchronous {
            $(#[test] fn $name() { super::$name(super::Driver::Async) })*
        }
    };
}

both_drivers!(
    pipelined_transaction_with_a_refused_recipient_into_a_maildir,
    starttls_and_auth,
    implicit_tls,
    size_limit_announced_and_discovered,
    per_command_timeout_closes_a_slow_client,
    tls_handshake_has_one_deadline,
    wire_trace_shows_commands_and_replies_but_no_secret,
    credentials_go_in_clear_only_when_allowed,
    client_times_out_on_a_silent_server,
    graceful_shutdown_lets_a_transaction_finish,
    grace_expiry_cuts_a_stalled_transaction,
    connection_limit_answers_421_then_serves_again,
    a_flood_of_connections_is_answered,
    lmtp_answers_per_recipient,
    both_clients_against_this_server,
    proxy_protocol_header_names_the_client,
    proxy_protocol_refuses_without_a_greeting,
    proxy_protocol_with_starttls_and_implicit_tls,
    proxy_protocol_per_listener,
);

// ---------------------------------------------------------------------------------------
// The harness: a runtime, a server of either kind, a client of either kind.

/// The runtime the async driver runs on (the blocking driver does not use it).
struct Harness {
    driver: Driver,
    rt: Runtime,
}

impl Harness {
    fn new(driver: Driver) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Harness { driver, rt }
    }

    /// Runs `f` on the runtime, failing the test if it takes longer than [`BOUND`].
    fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.rt
            .block_on(async { tokio::time::timeout(BOUND, f).await.expect("bounded wait") })
    }

    /// Starts this driver's server with a synchronous handler on a plain listener, plus an
    /// implicit-TLS one when `implicit_tls`.
    fn serve<H: Handler>(&self, handler: H, options: ServerOptions, implicit_tls: bool) -> Running {
        match self.driver {
            Driver::Blocking => {
                let mut builder = Server::builder(handler, options)
                    .listen("127.0.0.1:0")
                    .unwrap();
                if implicit_tls {
                    builder = builder.listen_tls("127.0.0.1:0").unwrap();
                }
                Running::Blocking(builder.start().unwrap())
            }
            Driver::Async => {
                let _guard = self.rt.enter();
                let mut builder = AsyncServer::builder(handler, options)
                    .listen("127.0.0.1:0")
                    .unwrap();
                if implicit_tls {
                    builder = builder.listen_tls("127.0.0.1:0").unwrap();
                }
                Running::Async(self.rt.handle().clone(), builder.start().unwrap())
            }
        }
    }

    /// Starts this driver's server with a synchronous handler on one listener per entry of
    /// `listeners`, in that order.
    fn serve_listeners<H: Handler>(
        &self,
        handler: H,
        options: ServerOptions,
        listeners: Vec<ListenerOptions>,
    ) -> Running {
        match self.driver {
            Driver::Blocking => {
                let mut builder = Server::builder(handler, options);
                for listener in listeners {
                    builder = builder.listen_with("127.0.0.1:0", listener).unwrap();
                }
                Running::Blocking(builder.start().unwrap())
            }
            Driver::Async => {
                let _guard = self.rt.enter();
                let mut builder = AsyncServer::builder(handler, options);
                for listener in listeners {
                    builder = builder.listen_with("127.0.0.1:0", listener).unwrap();
                }
                Running::Async(self.rt.handle().clone(), builder.start().unwrap())
            }
        }
    }

    /// Connects this driver's client.
    fn connect(&self, addr: SocketAddr, options: ClientOptions) -> Result<Client<'_>, Error> {
        self.connect_with(self.driver, addr, options)
    }

    /// Connects a client of the given kind.
    fn connect_with(
        &self,
        kind: Driver,
        addr: SocketAddr,
        options: ClientOptions,
    ) -> Result<Client<'_>, Error> {
        Ok(match kind {
            Driver::Blocking => Client::Blocking(SmtpClient::connect(addr, "localhost", options)?),
            Driver::Async => Client::Async(
                self,
                self.block_on(AsyncSmtpClient::connect(addr, "localhost", options))?,
            ),
        })
    }
}

/// A running server of either kind.
enum Running {
    Blocking(Server),
    Async(tokio::runtime::Handle, AsyncServerHandle),
}

impl Running {
    /// The plain listener's address.
    fn addr(&self) -> SocketAddr {
        self.addrs()[0]
    }

    fn addrs(&self) -> &[SocketAddr] {
        match self {
            Running::Blocking(s) => s.local_addrs(),
            Running::Async(_, s) => s.local_addrs(),
        }
    }

    fn active_connections(&self) -> usize {
        match self {
            Running::Blocking(s) => s.active_connections(),
            Running::Async(_, s) => s.active_connections(),
        }
    }

    /// Shuts down in the background; [`Stopping::wait`] gives the number of connections
    /// that had to be cut.
    fn start_shutdown(self, grace: Duration) -> Stopping {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let cut = match self {
                Running::Blocking(s) => s.shutdown(grace),
                Running::Async(rt, s) => rt.block_on(s.shutdown(grace)),
            };
            let _ = tx.send(cut);
        });
        Stopping(rx)
    }

    /// Shuts down and returns the number of connections that had to be cut.
    fn shutdown(self, grace: Duration) -> usize {
        self.start_shutdown(grace).wait()
    }
}

/// A shutdown under way.
struct Stopping(mpsc::Receiver<usize>);

impl Stopping {
    fn wait(self) -> usize {
        self.0.recv_timeout(BOUND).expect("shutdown finished")
    }
}

/// A client of either kind, with the blocking client's interface.
enum Client<'h> {
    Blocking(SmtpClient),
    Async(&'h Harness, AsyncSmtpClient),
}

impl Client<'_> {
    fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionResult, Error> {
        match self {
            Client::Blocking(c) => c.send_bytes(envelope, message),
            Client::Async(h, c) => h.block_on(c.send_bytes(envelope, message)),
        }
    }

    /// Sends `len` copies of `byte` without announcing the size.
    fn send_unsized(
        &mut self,
        envelope: &Envelope,
        byte: u8,
        len: u64,
    ) -> Result<TransactionResult, Error> {
        match self {
            Client::Blocking(c) => c.send(envelope, std::io::repeat(byte).take(len), None),
            Client::Async(h, c) => {
                h.block_on(c.send(envelope, tokio::io::repeat(byte).take(len), None))
            }
        }
    }

    fn login(&mut self, credentials: Credentials) -> Result<Reply, Error> {
        match self {
            Client::Blocking(c) => c.login(credentials),
            Client::Async(h, c) => h.block_on(c.login(credentials)),
        }
    }

    fn noop(&mut self) -> Result<Reply, Error> {
        match self {
            Client::Blocking(c) => c.noop(),
            Client::Async(h, c) => h.block_on(c.noop()),
        }
    }

    fn rset(&mut self) -> Result<Reply, Error> {
        match self {
            Client::Blocking(c) => c.rset(),
            Client::Async(h, c) => h.block_on(c.rset()),
        }
    }

    fn vrfy(&mut self, argument: &str) -> Result<Reply, Error> {
        match self {
            Client::Blocking(c) => c.vrfy(argument),
            Client::Async(h, c) => h.block_on(c.vrfy(argument)),
        }
    }

    fn expn(&mut self, argument: &str) -> Result<Reply, Error> {
        match self {
            Client::Blocking(c) => c.expn(argument),
            Client::Async(h, c) => h.block_on(c.expn(argument)),
        }
    }

    fn help(&mut self) -> Result<Reply, Error> {
        match self {
            Client::Blocking(c) => c.help(None),
            Client::Async(h, c) => h.block_on(c.help(None)),
        }
    }

    fn quit(self) -> Result<(), Error> {
        match self {
            Client::Blocking(c) => c.quit(),
            Client::Async(h, c) => h.block_on(c.quit()),
        }
    }

    fn is_tls(&self) -> bool {
        match self {
            Client::Blocking(c) => c.is_tls(),
            Client::Async(_, c) => c.is_tls(),
        }
    }

    fn capabilities(&self) -> Option<&Capabilities> {
        match self {
            Client::Blocking(c) => c.capabilities(),
            Client::Async(_, c) => c.capabilities(),
        }
    }
}

/// Client options with every wait bounded well below the test's patience.
fn client_options(tls: TlsMode) -> ClientOptions {
    let mut o = ClientOptions::new("client.test");
    o.tls = tls;
    o.connect_timeout = Duration::from_secs(5);
    let each = Duration::from_secs(10);
    o.timeouts = ClientTimeouts {
        greeting: each,
        command: each,
        rcpt: each,
        data_start: each,
        data_block: each,
        data_end: each,
    };
    o
}

/// Polls `done` until it holds, for at most [`BOUND`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures: directories, certificates, handlers, a raw peer.

/// A temporary directory holding a Maildir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("smtpx-drivers-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn maildir(&self) -> MaildirHandler {
        MaildirHandler::new(self.0.join("md"), "mx.test").unwrap()
    }

    /// The delivered messages.
    fn delivered(&self) -> Vec<String> {
        self.files("new")
    }

    /// Messages being written (none may be left behind).
    fn partial(&self) -> Vec<String> {
        self.files("tmp")
    }

    fn files(&self, sub: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.0.join("md").join(sub)) else {
            return Vec::new();
        };
        let mut paths: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| String::from_utf8(std::fs::read(p).unwrap()).unwrap())
            .collect()
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

impl TestCert {
    fn new() -> TestCert {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = key.cert.pem();
        let key_pem = key.signing_key.serialize_pem();
        let server = tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        TestCert { cert_pem, server }
    }

    /// Client options that trust this certificate.
    fn client(&self, mode: TlsMode) -> ClientOptions {
        let mut o = client_options(mode);
        o.tls_config = Some(
            tls::client_config(&TlsClientOptions {
                roots: RootCerts::Pem(self.cert_pem.clone().into_bytes()),
                ..TlsClientOptions::default()
            })
            .unwrap(),
        );
        o
    }
}

fn refusal(to: &ForwardPath) -> Option<Decision> {
    to.as_str().ends_with("@refused.test").then(|| {
        Decision::Reply(Reply::new(
            ReplyCode::MAILBOX_UNAVAILABLE,
            Some(EnhancedCode::new(5, 7, 1)),
            "relay denied",
        ))
    })
}

/// A Maildir that refuses recipients at `refused.test`, reports mailboxes at `full.test`
/// as full under LMTP, and counts the content chunks it is given (so that a test can wait
/// until the server has read what it sent).
struct TestMaildir {
    inner: MaildirHandler,
    chunks: Arc<AtomicUsize>,
}

impl TestMaildir {
    fn new(dir: &TempDir) -> (TestMaildir, Arc<AtomicUsize>) {
        let chunks = Arc::new(AtomicUsize::new(0));
        let handler = TestMaildir {
            inner: dir.maildir(),
            chunks: Arc::clone(&chunks),
        };
        (handler, chunks)
    }
}

struct TestMaildirSession<S> {
    inner: S,
    chunks: Arc<AtomicUsize>,
}

impl Handler for TestMaildir {
    type Session = TestMaildirSession<<MaildirHandler as Handler>::Session>;
    fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply> {
        Ok(TestMaildirSession {
            inner: self.inner.connect(info)?,
            chunks: Arc::clone(&self.chunks),
        })
    }
}

impl<S: SessionHandler> SessionHandler for TestMaildirSession<S> {
    fn hello(&mut self, verb: HelloVerb, domain: &str) -> Decision {
        self.inner.hello(verb, domain)
    }
    fn tls_started(&mut self) {
        self.inner.tls_started()
    }
    fn auth(&mut self, attempt: &AuthAttempt) -> Decision {
        self.inner.auth(attempt)
    }
    fn mail(&mut self, from: &ReversePath, params: &MailParameters) -> Decision {
        self.inner.mail(from, params)
    }
    fn rcpt(&mut self, to: &ForwardPath, params: &RcptParameters) -> Decision {
        refusal(to).unwrap_or_else(|| self.inner.rcpt(to, params))
    }
    fn data_start(&mut self, transaction: &Transaction) -> Decision {
        self.inner.data_start(transaction)
    }
    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        self.chunks.fetch_add(1, Ordering::SeqCst);
        self.inner.data_chunk(chunk)
    }
    fn data_end(&mut self, transaction: &Transaction) -> Decision {
        match self.inner.data_end(transaction) {
            Decision::PerRecipient(mut replies) => {
                for (reply, to) in replies.iter_mut().zip(&transaction.recipients) {
                    if to.as_str().ends_with("@full.test") {
                        *reply = Reply::new(
                            ReplyCode::INSUFFICIENT_STORAGE,
                            Some(EnhancedCode::new(4, 2, 2)),
                            "mailbox full",
                        );
                    }
                }
                Decision::PerRecipient(replies)
            }
            other => other,
        }
    }
    fn data_aborted(&mut self, reason: AbortReason) {
        self.inner.data_aborted(reason)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn verify(&mut self, argument: &str) -> Decision {
        self.inner.verify(argument)
    }
    fn expand(&mut self, argument: &str) -> Decision {
        self.inner.expand(argument)
    }
    fn close(&mut self) {
        self.inner.close()
    }
}

/// A line-oriented raw client on std sockets, with bounded waits.
struct Peer {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Peer {
    fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// The next reply's last line.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed while a reply was expected");
            assert!(line.ends_with("\r\n"), "{line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_owned();
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new("a@example.org", to).unwrap()
}

// ---------------------------------------------------------------------------------------
// The behaviour.

fn pipelined_transaction_with_a_refused_recipient_into_a_maildir(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("pipelined");
    let (handler, _) = TestMaildir::new(&dir);
    let server = h.serve(
        handler,
        ServerOptions::new(ServerConfig::new("mx.test")),
        false,
    );

    // Raw bytes: EHLO (it ends a group, RFC 2920), then the whole envelope in one write,
    // the replies in order.
    let mut peer = Peer::connect(server.addr());
    assert!(peer.reply().starts_with("220 mx.test ESMTP"));
    peer.send(b"EHLO c\r\n");
    assert_eq!(peer.reply(), "250 DSN");
    peer.send(
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<no@refused.test>\r\nDATA\r\n",
    );
    assert_eq!(peer.reply(), "250 2.1.0 Ok");
    assert_eq!(peer.reply(), "250 2.1.5 Ok");
    assert_eq!(peer.reply(), "550 5.7.1 relay denied");
    assert!(peer.reply().starts_with("354"));
    peer.send(b"Subject: raw\r\n\r\n..dot\r\n.\r\n");
    assert!(peer.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(peer.command("QUIT"), "221 2.0.0 Bye");
    assert!(peer.is_closed());
    let files = dir.delivered();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].ends_with("Subject: raw\r\n\r\n.dot\r\n"),
        "{}",
        files[0]
    );

    // The driver's client: per-recipient results, the connection reused.
    let mut client = h
        .connect(server.addr(), client_options(TlsMode::None))
        .unwrap();
    assert!(client.capabilities().unwrap().pipelining);
    let result = client
        .send_bytes(
            &envelope(&["b@example.net", "c@refused.test"]),
            b"Subject: one\n\nbody\n",
        )
        .unwrap();
    assert!(result.is_success());
    assert!(result.queue_id().is_some());
    assert_eq!(result.accepted().count(), 1);
    let refused: Vec<_> = result.refused().collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].address.as_str(), "c@refused.test");
    assert_eq!(refused[0].reply.code(), ReplyCode::MAILBOX_UNAVAILABLE);
    assert_eq!(client.noop().unwrap().code(), ReplyCode::OK);
    assert_eq!(client.rset().unwrap().code(), ReplyCode::OK);
    assert_eq!(
        client.vrfy("someone").unwrap().code(),
        ReplyCode::CANNOT_VERIFY
    );
    assert!(client.help().unwrap().code().is_positive());
    assert_eq!(
        client.expn("list").unwrap().code(),
        ReplyCode::CANNOT_VERIFY
    );
    // Streamed from a reader of unknown size.
    let result = client
        .send_unsized(&envelope(&["b@example.net"]), b'z', 100)
        .unwrap();
    assert!(result.is_success());
    client.quit().unwrap();

    let files = dir.delivered();
    assert_eq!(files.len(), 3);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("Subject: one\r\n\r\nbody\r\n"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with(&format!("{}\r\n", "z".repeat(100))))
    );
    assert!(dir.partial().is_empty());
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

/// A server that offers STARTTLS and requires it (and PLAIN/LOGIN) before mail.
fn tls_auth_server(h: &Harness, dir: &TempDir, cert: &TestCert, implicit_tls: bool) -> Running {
    let mut config = ServerConfig::new("mx.test");
    config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    config.require_tls = true;
    let mut options = ServerOptions::new(config);
    options.tls = Some(Arc::clone(&cert.server));
    let (handler, _) = TestMaildir::new(dir);
    h.serve(
        PasswordAuth::new(handler, [("alice", "s3cret")]),
        options,
        implicit_tls,
    )
}

fn starttls_and_auth(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("starttls");
    let cert = TestCert::new();
    let server = tls_auth_server(&h, &dir, &cert, false);

    // In clear, STARTTLS is offered and mail is refused until it is used.
    let mut peer = Peer::connect(server.addr());
    peer.reply();
    peer.send(b"EHLO c\r\n");
    let mut ehlo = Vec::new();
    loop {
        let mut line = String::new();
        peer.reader.read_line(&mut line).unwrap();
        ehlo.push(line.trim_end().to_owned());
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    }
    assert!(ehlo.iter().any(|l| l.ends_with("STARTTLS")), "{ehlo:?}");
    assert!(peer.command("MAIL FROM:<a@b.test>").starts_with("530"));
    drop(peer);

    let mut o = cert.client(TlsMode::StartTlsRequired);
    o.credentials = Some(Credentials::password("alice", "s3cret"));
    let mut client = h.connect(server.addr(), o).unwrap();
    assert!(client.is_tls());
    let caps = client.capabilities().unwrap();
    assert!(caps.pipelining && !caps.starttls);
    let result = client
        .send_bytes(
            &envelope(&["b@example.net"]),
            b"Subject: tls\r\n\r\nsecret\r\n",
        )
        .unwrap();
    assert!(result.is_success(), "{result:?}");
    client.quit().unwrap();

    // A wrong password fails the connect with AuthFailed.
    let mut o = cert.client(TlsMode::StartTlsRequired);
    o.credentials = Some(Credentials::password("alice", "wrong"));
    let err = h.connect(server.addr(), o).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");

    // An untrusted certificate fails with Tls.
    let err = h
        .connect(server.addr(), client_options(TlsMode::StartTlsRequired))
        .err()
        .expect("untrusted");
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");

    let files = dir.delivered();
    assert_eq!(files.len(), 1);
    assert!(files[0].contains("with ESMTPSA"), "{}", files[0]);
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

fn implicit_tls(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("implicit");
    let cert = TestCert::new();
    let server = tls_auth_server(&h, &dir, &cert, true);
    let implicit = server.addrs()[1];

    // TLS before the greeting; AUTH after connecting.
    let mut client = h.connect(implicit, cert.client(TlsMode::Implicit)).unwrap();
    assert!(client.is_tls());
    assert!(!client.capabilities().unwrap().starttls);
    let reply = client
        .login(Credentials::password("alice", "s3cret"))
        .unwrap();
    assert_eq!(reply.code(), ReplyCode::AUTH_SUCCEEDED);
    let result = client
        .send_bytes(
            &envelope(&["b@example.net"]),
            b"Subject: implicit\r\n\r\nx\r\n",
        )
        .unwrap();
    assert!(result.is_success());
    client.quit().unwrap();

    // A plain-text client on the TLS port gets no greeting (at most a TLS alert), and the
    // connection is closed.
    let mut peer = Peer::connect(implicit);
    peer.send(b"EHLO c\r\n");
    let mut rest = Vec::new();
    match peer.reader.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    assert!(!String::from_utf8_lossy(&rest).contains("220"), "{rest:?}");

    let files = dir.delivered();
    assert_eq!(files.len(), 1);
    assert!(files[0].contains("with ESMTPSA"), "{}", files[0]);
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

fn size_limit_announced_and_discovered(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("size");
    let mut config = ServerConfig::new("mx.test");
    config.max_message_size = 1000;
    let (handler, _) = TestMaildir::new(&dir);
    let server = h.serve(handler, ServerOptions::new(config), false);
    let mut client = h
        .connect(server.addr(), client_options(TlsMode::None))
        .unwrap();
    assert_eq!(client.capabilities().unwrap().size, Some(1000));
    let to = envelope(&["b@example.net"]);
    // Announced: refused before anything is sent.
    let err = client.send_bytes(&to, &[b'x'; 2000]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    // Unannounced: the server discovers it and answers 552 at the end.
    let result = client.send_unsized(&to, b'y', 5000).unwrap();
    assert!(!result.is_success());
    assert_eq!(result.data.unwrap().code(), ReplyCode::STORAGE_EXCEEDED);
    // The connection is still good.
    assert!(
        client
            .send_bytes(&to, b"Subject: small\r\n\r\nok\r\n")
            .unwrap()
            .is_success()
    );
    client.quit().unwrap();
    assert_eq!(dir.delivered().len(), 1);
    assert!(dir.partial().is_empty());
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

fn per_command_timeout_closes_a_slow_client(driver: Driver) {
    let h = Harness::new(driver);
    let mut config = ServerConfig::new("mx.test");
    config.command_timeout = Duration::from_millis(400);
    let server = h.serve(DiscardHandler, ServerOptions::new(config), false);
    let mut peer = Peer::connect(server.addr());
    peer.reply();
    let started = Instant::now();
    // One byte every 100 ms, never a whole line: the deadline does not move.
    for b in b"EHLO slow" {
        if peer.writer.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_millis(600) {
            break;
        }
    }
    assert!(peer.reply().starts_with("421 4.4.2"));
    assert!(peer.is_closed());
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(peer);

    // The client notices the server's timeout on its next command.
    let mut client = h
        .connect(server.addr(), client_options(TlsMode::None))
        .unwrap();
    wait_until("the server timed the client out", || {
        server.active_connections() == 0
    });
    let err = client.noop().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ServerClosed | ErrorKind::ConnectionClosed | ErrorKind::Io
        ),
        "{err}"
    );
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

/// A client that trickles its TLS handshake (a byte every 150 ms) is cut when the
/// handshake's one deadline passes, after STARTTLS and on an implicit-TLS listener alike;
/// a socket timeout per read would let it hold the connection forever.
fn tls_handshake_has_one_deadline(driver: Driver) {
    let h = Harness::new(driver);
    let cert = TestCert::new();
    let mut config = ServerConfig::new("mx.test");
    config.command_timeout = Duration::from_millis(800);
    let mut options = ServerOptions::new(config);
    options.tls = Some(Arc::clone(&cert.server));
    let server = h.serve(DiscardHandler, options, true);
    // A real ClientHello's first bytes would do; any bytes keep a naive timer happy.
    let trickle = |stream: &mut TcpStream| -> Duration {
        let started = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        let mut byte = [0u8; 1];
        // TLS record header of a handshake message, then filler, one byte at a time.
        let hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        for b in hello.iter().cycle() {
            if started.elapsed() > Duration::from_secs(10) {
                panic!("the trickling handshake was still open after 10 s");
            }
            if stream.write_all(&[*b]).is_err() {
                break;
            }
            match stream.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        started.elapsed()
    };

    // After STARTTLS.
    let mut peer = Peer::connect(server.addr());
    peer.reply();
    assert!(peer.command("EHLO client.test").starts_with("250"));
    assert!(peer.command("STARTTLS").starts_with("220"));
    let took = trickle(&mut peer.writer);
    assert!(
        took < Duration::from_secs(4),
        "STARTTLS handshake cut after {took:?}"
    );

    // On the implicit-TLS listener.
    let mut stream = TcpStream::connect(server.addrs()[1]).unwrap();
    let took = trickle(&mut stream);
    assert!(
        took < Duration::from_secs(4),
        "implicit-TLS handshake cut after {took:?}"
    );
    wait_until("both connections are gone", || {
        server.active_connections() == 0
    });
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

/// Keeps every traced line.
#[derive(Default)]
struct KeepTrace(Mutex<Vec<(u64, String)>>);

impl smtp_core::trace::Trace for KeepTrace {
    fn line(&self, connection: u64, direction: smtp_core::trace::Direction, text: &str) {
        self.0
            .lock()
            .unwrap()
            .push((connection, format!("{direction} {text}")));
    }
}

/// The wire trace (`ServerOptions::trace`, `ClientOptions::trace`) shows every command and
/// reply of a session with its connection id, AUTH redacted and content by size only: the
/// server's of a raw client, then the client's own against the same server.
fn wire_trace_shows_commands_and_replies_but_no_secret(driver: Driver) {
    let h = Harness::new(driver);
    let trace = Arc::new(KeepTrace::default());
    let mut config = ServerConfig::new("mx.test");
    config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    config.allow_insecure_auth = true;
    let mut options = ServerOptions::new(config);
    options.trace = Some(smtp_core::trace::TraceSink::new(trace.clone()));
    let server = h.serve(
        PasswordAuth::new(DiscardHandler, [("alice", "s3cret-pw")]),
        options,
        false,
    );
    let mut peer = Peer::connect(server.addr());
    peer.reply();
    assert!(peer.command("EHLO client.test").starts_with("250"));
    // AUTH PLAIN with the initial response: "\0alice\0s3cret-pw".
    assert!(
        peer.command("AUTH PLAIN AGFsaWNlAHMzY3JldC1wdw==")
            .starts_with("235")
    );
    assert!(peer.command("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(peer.command("RCPT TO:<b@example.net>").starts_with("250"));
    assert!(peer.command("DATA").starts_with("354"));
    assert!(
        peer.command("Subject: top secret content\r\n\r\nhello\r\n.")
            .starts_with("250")
    );
    assert!(peer.command("QUIT").starts_with("221"));
    wait_until("the connection is closed", || {
        server.active_connections() == 0
    });

    // The client's side: this driver's client, with its own trace.
    let client_trace = Arc::new(KeepTrace::default());
    let mut options = client_options(TlsMode::None);
    options.credentials = Some(Credentials::password("alice", "s3cret-pw"));
    // In clear, so that the server's trace can be compared with the raw client's.
    options.allow_insecure_auth = true;
    options.trace = Some(smtp_core::trace::TraceSink::new(client_trace.clone()));
    let mut client = h.connect(server.addr(), options).unwrap();
    let result = client
        .send_bytes(
            &envelope(&["b@example.net"]),
            b"Subject: top secret content\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert!(result.is_success());
    client.quit().unwrap();
    let client_lines: Vec<String> = client_trace
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| l.clone())
        .collect();
    for expected in [
        "S: 220 mx.test ESMTP smtpx",
        "C: EHLO client.test",
        "C: AUTH PLAIN <redacted>",
        "C: QUIT",
    ] {
        assert!(
            client_lines.iter().any(|l| l == expected),
            "{expected:?} not in {client_lines:#?}"
        );
    }
    assert!(
        client_lines
            .iter()
            .any(|l| l.starts_with("C: <message content, ")),
        "{client_lines:#?}"
    );
    for line in &client_lines {
        assert!(
            !line.contains("s3cret") && !line.contains("top secret"),
            "leaked: {line}"
        );
    }
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);

    let all = trace.0.lock().unwrap().clone();
    let ids: std::collections::HashSet<u64> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 2, "two connections, two ids: {all:?}");
    // The raw client's connection, which traced first.
    let first = all[0].0;
    let lines: Vec<(u64, String)> = all.into_iter().filter(|(id, _)| *id == first).collect();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    for expected in [
        "S: 220 mx.test ESMTP smtpx",
        "C: EHLO client.test",
        "C: AUTH PLAIN <redacted>",
        "S: 235 2.7.0 Authentication successful",
        "C: MAIL FROM:<a@example.org>",
        "C: DATA",
        "S: 354 End data with <CR><LF>.<CR><LF>",
        "C: QUIT",
    ] {
        assert!(text.contains(&expected), "{expected:?} not in {text:#?}");
    }
    assert!(
        text.iter()
            .any(|l| l.starts_with("C: <message content, ") && l.ends_with(" octets>")),
        "{text:#?}"
    );
    for line in &text {
        assert!(!line.contains("s3cret"), "a password in the trace: {line}");
        assert!(
            !line.contains("AGFsaWNl"),
            "an AUTH payload in the trace: {line}"
        );
        assert!(
            !line.contains("top secret content"),
            "content in the trace: {line}"
        );
    }
}

/// Credentials never go out over a connection without TLS unless the caller allows it
/// (`ClientOptions::allow_insecure_auth`), against a server that would take them in clear:
/// without the permission, `connect` with credentials and `login` both fail before any AUTH
/// is written; with it both log in; over STARTTLS the same credentials need no permission.
fn credentials_go_in_clear_only_when_allowed(driver: Driver) {
    let h = Harness::new(driver);
    let cert = TestCert::new();
    let trace = Arc::new(KeepTrace::default());
    let mut config = ServerConfig::new("mx.test");
    config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    config.allow_insecure_auth = true;
    let mut options = ServerOptions::new(config);
    options.tls = Some(Arc::clone(&cert.server));
    options.trace = Some(smtp_core::trace::TraceSink::new(trace.clone()));
    let server = h.serve(
        PasswordAuth::new(DiscardHandler, [("alice", "s3cret")]),
        options,
        false,
    );
    let alice = || Credentials::password("alice", "s3cret");
    // What the server read: every command, by connection.
    let commands = |prefix: &str| {
        trace
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.starts_with(&format!("C: {prefix}")))
            .count()
    };

    // Configured credentials in clear: connect fails and says why, with QUIT.
    let mut o = client_options(TlsMode::None);
    o.credentials = Some(alice());
    let err = h.connect(server.addr(), o).err().expect("refused in clear");
    assert_eq!(err.kind(), ErrorKind::InsecureAuth, "{err}");
    assert!(err.to_string().contains("without TLS"), "{err}");
    assert!(err.reply().is_none());
    wait_until("the refused connection is gone", || {
        server.active_connections() == 0
    });
    assert_eq!(commands("QUIT"), 1, "{:#?}", trace.0.lock().unwrap());

    // An explicit login in clear fails the same way; the connection stays usable.
    let mut client = h
        .connect(server.addr(), client_options(TlsMode::None))
        .unwrap();
    let err = client.login(alice()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InsecureAuth, "{err}");
    assert_eq!(client.noop().unwrap().code(), ReplyCode::OK);
    client.quit().unwrap();
    wait_until("the connection is closed", || {
        server.active_connections() == 0
    });
    assert_eq!(commands("AUTH"), 0, "{:#?}", trace.0.lock().unwrap());

    // Allowed: both log in in clear.
    let mut o = client_options(TlsMode::None);
    o.credentials = Some(alice());
    o.allow_insecure_auth = true;
    let client = h.connect(server.addr(), o).unwrap();
    assert!(!client.is_tls());
    client.quit().unwrap();
    let mut o = client_options(TlsMode::None);
    o.allow_insecure_auth = true;
    let mut client = h.connect(server.addr(), o).unwrap();
    assert_eq!(
        client.login(alice()).unwrap().code(),
        ReplyCode::AUTH_SUCCEEDED
    );
    client.quit().unwrap();
    wait_until("the connections are closed", || {
        server.active_connections() == 0
    });
    assert_eq!(commands("AUTH"), 2, "{:#?}", trace.0.lock().unwrap());

    // Over STARTTLS the same credentials need no permission (the default opportunistic
    // policy, the server offering STARTTLS).
    let mut o = cert.client(TlsMode::StartTlsOpportunistic);
    o.credentials = Some(alice());
    let client = h.connect(server.addr(), o).unwrap();
    assert!(client.is_tls());
    client.quit().unwrap();
    let mut client = h
        .connect(server.addr(), cert.client(TlsMode::StartTlsRequired))
        .unwrap();
    assert_eq!(
        client.login(alice()).unwrap().code(),
        ReplyCode::AUTH_SUCCEEDED
    );
    client.quit().unwrap();
    wait_until("the TLS connections are closed", || {
        server.active_connections() == 0
    });
    assert_eq!(commands("AUTH"), 4, "{:#?}", trace.0.lock().unwrap());
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

fn client_times_out_on_a_silent_server(driver: Driver) {
    let h = Harness::new(driver);
    // A listener that accepts (the kernel does) and never greets.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut o = client_options(TlsMode::None);
    o.timeouts.greeting = Duration::from_millis(300);
    let started = Instant::now();
    let err = h
        .connect(silent.local_addr().unwrap(), o)
        .err()
        .expect("no greeting");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

fn graceful_shutdown_lets_a_transaction_finish(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("graceful");
    let (handler, chunks) = TestMaildir::new(&dir);
    let server = h.serve(
        handler,
        ServerOptions::new(ServerConfig::new("mx.test")),
        false,
    );
    let addr = server.addr();
    let mut idle = Peer::connect(addr);
    idle.reply();
    idle.command("EHLO idle");
    let mut busy = Peer::connect(addr);
    busy.reply();
    assert!(busy.command("EHLO c").starts_with("250"));
    busy.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
    for _ in 0..2 {
        busy.reply();
    }
    assert!(busy.reply().starts_with("354"));
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    wait_until("the server has the first half", || {
        chunks.load(Ordering::SeqCst) > 0
    });
    let stopping = server.start_shutdown(Duration::from_secs(10));
    // The idle client is told at once.
    assert!(idle.reply().starts_with("421 4.3.2"));
    assert!(idle.is_closed());
    // The busy one (shutdown has begun: the idle one heard of it) finishes its message and
    // then hears 421.
    busy.send(b"second half\r\n.\r\n");
    assert!(busy.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert!(busy.reply().starts_with("421 4.3.2"));
    assert!(busy.is_closed());
    assert_eq!(stopping.wait(), 0, "nothing had to be cut");
    let files = dir.delivered();
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("first half\r\nsecond half\r\n"));
    // And no one is listening any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

fn grace_expiry_cuts_a_stalled_transaction(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("grace");
    let (handler, chunks) = TestMaildir::new(&dir);
    let server = h.serve(
        handler,
        ServerOptions::new(ServerConfig::new("mx.test")),
        false,
    );
    let mut stalled = Peer::connect(server.addr());
    stalled.reply();
    assert!(stalled.command("EHLO c").starts_with("250"));
    stalled.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
    for _ in 0..2 {
        stalled.reply();
    }
    assert!(stalled.reply().starts_with("354"));
    stalled.send(b"partial\r\n");
    wait_until("the server has the partial message", || {
        chunks.load(Ordering::SeqCst) > 0
    });
    assert_eq!(dir.partial().len(), 1, "the message is being written");
    assert_eq!(server.shutdown(Duration::from_millis(300)), 1);
    assert!(stalled.is_closed());
    assert!(dir.delivered().is_empty());
    assert!(dir.partial().is_empty(), "the partial message was removed");
}

fn connection_limit_answers_421_then_serves_again(driver: Driver) {
    let h = Harness::new(driver);
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    options.max_connections = 3;
    let server = h.serve(DiscardHandler, options, false);
    let addr = server.addr();
    let mut held: Vec<Peer> = (0..3).map(|_| Peer::connect(addr)).collect();
    for p in &mut held {
        assert!(p.reply().starts_with("220"));
    }
    let mut extra = Peer::connect(addr);
    assert!(extra.reply().starts_with("421 4.7.0"));
    assert!(extra.is_closed());
    // One leaves; a newcomer is served.
    let mut leaving = held.pop().unwrap();
    assert!(leaving.command("QUIT").starts_with("221"));
    wait_until("the server let go of the connection", || {
        server.active_connections() == 2
    });
    let mut again = Peer::connect(addr);
    assert!(again.reply().starts_with("220"));
    assert_eq!(again.command("QUIT"), "221 2.0.0 Bye");
    drop(held);
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

/// Connections opened at once by [`a_flood_of_connections_is_answered`]: far more than
/// the 128 of std's `TcpListener::bind`, within the default accept queue of 1,024 plus
/// what the acceptor takes while the burst arrives.
const FLOOD: usize = 2_000;

/// Every connection of a burst is greeted (220, or 421 past the limit) within seconds:
/// none is left in a handshake the kernel forgot because the accept queue overflowed
/// (its client would wait for a greeting that never comes).
fn a_flood_of_connections_is_answered(driver: Driver) {
    // A descriptor at each end of each connection, in this one process.
    #[cfg(unix)]
    raise_open_files_limit(2 * FLOOD as u64 + 500);
    let h = Harness::new(driver);
    let options = ServerOptions::new(ServerConfig::new("mx.test"));
    assert_eq!(options.listen_backlog, 1024);
    let server = h.serve(DiscardHandler, options, false);
    let addr = server.addr();
    // The clients: one task each on a runtime of their own, all connecting at once.
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (answers, held) = clients.block_on(async move {
        let tasks: Vec<_> = (0..FLOOD)
            .map(|_| {
                tokio::spawn(async move {
                    let greeting = async {
                        let mut stream = tokio::net::TcpStream::connect(addr).await?;
                        let mut line = Vec::new();
                        let mut byte = [0u8; 1];
                        while !line.ends_with(b"\r\n") && stream.read(&mut byte).await? == 1 {
                            line.push(byte[0]);
                        }
                        Ok::<_, std::io::Error>((
                            String::from_utf8_lossy(&line).into_owned(),
                            stream,
                        ))
                    };
                    tokio::time::timeout(Duration::from_secs(10), greeting).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        let mut held = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(Ok((line, stream))) => {
                    answers.push(line);
                    held.push(stream);
                }
                Ok(Err(e)) => answers.push(format!("error: {e}")),
                Err(_) => answers.push("no greeting within 10 s".to_owned()),
            }
        }
        (answers, held)
    });
    let elapsed = started.elapsed();
    let unanswered: Vec<_> = answers
        .iter()
        .filter(|a| !(a.starts_with("220 ") || a.starts_with("421 ")))
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} of {FLOOD} connections not greeted (first: {:?}) after {elapsed:?}",
        unanswered.len(),
        unanswered.first()
    );
    assert_eq!(answers.len(), FLOOD);
    drop(held);
    drop(clients);
    server.shutdown(Duration::from_secs(5));
}

/// Sets the soft limit on open files to at least `needed` when the hard limit allows.
#[cfg(unix)]
fn raise_open_files_limit(needed: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < needed) {
        let raised = Rlimit {
            current: Some(limit.maximum.map_or(needed, |hard| hard.min(needed))),
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            eprintln!("cannot raise RLIMIT_NOFILE to {needed}: {e}");
        }
    }
}

fn lmtp_answers_per_recipient(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("lmtp");
    let mut config = ServerConfig::new("mx.test");
    config.lmtp = true;
    let (handler, _) = TestMaildir::new(&dir);
    let server = h.serve(handler, ServerOptions::new(config), false);

    // On the wire: one reply per accepted recipient after the dot.
    let mut peer = Peer::connect(server.addr());
    assert!(peer.reply().starts_with("220 mx.test LMTP"));
    assert!(peer.command("LHLO c").starts_with("250"));
    peer.send(
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<no@refused.test>\r\nRCPT TO:<z@full.test>\r\nDATA\r\n",
    );
    let replies: Vec<_> = (0..5).map(|_| peer.reply()).collect();
    assert_eq!(replies[2], "550 5.7.1 relay denied");
    assert!(replies[4].starts_with("354"), "{replies:?}");
    peer.send(b"Subject: raw lmtp\r\n\r\nhi\r\n.\r\n");
    assert!(peer.reply().starts_with("250 2.0.0"));
    assert_eq!(peer.reply(), "452 4.2.2 mailbox full");
    assert_eq!(peer.command("QUIT"), "221 2.0.0 Bye");

    let mut o = client_options(TlsMode::None);
    o.lmtp = true;
    let mut client = h.connect(server.addr(), o).unwrap();
    let result = client
        .send_bytes(
            &envelope(&[
                "b@example.net",
                "c@refused.test",
                "d@full.test",
                "e@example.net",
            ]),
            b"Subject: lmtp\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert!(result.is_success());
    let outcome: Vec<_> = result
        .recipients
        .iter()
        .map(|r| {
            let code = |reply: &Reply| reply.code().get();
            (
                r.address.as_str().to_owned(),
                code(&r.reply),
                r.delivery.as_ref().map(code),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            ("b@example.net".to_owned(), 250, Some(250)),
            ("c@refused.test".to_owned(), 550, None),
            ("d@full.test".to_owned(), 250, Some(452)),
            ("e@example.net".to_owned(), 250, Some(250)),
        ]
    );
    client.quit().unwrap();
    let files = dir.delivered();
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f.contains("with LMTP id")));
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

/// The blocking and the async client, each against this driver's server (so both
/// instantiations together cover the four pairs).
fn both_clients_against_this_server(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("pairs");
    let cert = TestCert::new();
    let server = tls_auth_server(&h, &dir, &cert, false);
    for kind in [Driver::Blocking, Driver::Async] {
        let mut o = cert.client(TlsMode::StartTlsRequired);
        o.credentials = Some(Credentials::password("alice", "s3cret"));
        let mut client = h.connect_with(kind, server.addr(), o).unwrap();
        assert!(client.is_tls());
        for n in 0..2 {
            let body = format!("Subject: {kind:?} client, {driver:?} server, #{n}\r\n\r\nx\r\n");
            let result = client
                .send_bytes(
                    &envelope(&["b@example.net", "x@refused.test"]),
                    body.as_bytes(),
                )
                .unwrap();
            assert!(result.is_success());
            assert_eq!(result.refused().count(), 1);
        }
        client.quit().unwrap();
    }
    let files = dir.delivered();
    assert_eq!(files.len(), 4);
    for kind in ["Blocking", "Async"] {
        let subject = format!("Subject: {kind} client, {driver:?} server");
        assert_eq!(files.iter().filter(|f| f.contains(&subject)).count(), 2);
    }
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

// ---------------------------------------------------------------------------------------
// Async only: user code whose hooks are `async fn`s.

/// Records what it receives; its `rcpt` really awaits.
#[derive(Clone, Default)]
struct AsyncRecorder {
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    closed: Arc<AtomicUsize>,
}

struct AsyncRecorderSession {
    shared: AsyncRecorder,
    body: Vec<u8>,
}

impl AsyncHandler for AsyncRecorder {
    type Session = AsyncRecorderSession;
    async fn connect(&self, info: &ConnectionInfo) -> Result<AsyncRecorderSession, Reply> {
        assert!(info.peer.is_some());
        Ok(AsyncRecorderSession {
            shared: self.clone(),
            body: Vec::new(),
        })
    }
}

impl AsyncSessionHandler for AsyncRecorderSession {
    async fn rcpt(&mut self, to: &ForwardPath, _: &RcptParameters) -> Decision {
        tokio::time::sleep(Duration::from_millis(5)).await;
        refusal(to).unwrap_or(Decision::Accept)
    }
    async fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        tokio::task::yield_now().await;
        self.body.extend_from_slice(chunk);
        Ok(())
    }
    async fn data_end(&mut self, t: &Transaction) -> Decision {
        let mut body = std::mem::take(&mut self.body);
        body.extend_from_slice(format!("[{} rcpt]", t.recipients.len()).as_bytes());
        self.shared.bodies.lock().unwrap().push(body);
        Decision::Reply(Reply::new(
            ReplyCode::OK,
            Some(EnhancedCode::new(2, 0, 0)),
            "Ok: queued as ASYNC1",
        ))
    }
    async fn close(&mut self) {
        self.shared.closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn async_handler_hooks_are_awaited() {
    let h = Harness::new(Driver::Async);
    let recorder = AsyncRecorder::default();
    let server = {
        let _guard = h.rt.enter();
        AsyncServer::builder_async(
            recorder.clone(),
            ServerOptions::new(ServerConfig::new("mx.test")),
        )
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap()
    };
    let addr = server.local_addrs()[0];
    let mut client = h.connect(addr, client_options(TlsMode::None)).unwrap();
    let result = client
        .send_bytes(
            &envelope(&["b@example.net", "c@refused.test", "d@example.net"]),
            b"Subject: async\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert!(result.is_success());
    assert_eq!(result.accepted().count(), 2);
    assert_eq!(result.refused().count(), 1);
    assert_eq!(result.queue_id(), Some("ASYNC1"));
    client.quit().unwrap();
    assert_eq!(
        recorder.bodies.lock().unwrap().as_slice(),
        [b"Subject: async\r\n\r\nhi\r\n[2 rcpt]".to_vec()]
    );
    assert_eq!(h.block_on(server.shutdown(Duration::from_secs(5))), 0);
    assert_eq!(recorder.closed.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// The PROXY protocol (a load balancer's header before the client's first byte).

/// A [`TestMaildir`] that keeps the [`ConnectionInfo`] of every connection.
struct InfoRecorder {
    inner: TestMaildir,
    seen: Arc<Mutex<Vec<ConnectionInfo>>>,
}

impl Handler for InfoRecorder {
    type Session = <TestMaildir as Handler>::Session;
    fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply> {
        self.seen.lock().unwrap().push(info.clone());
        self.inner.connect(info)
    }
}

fn proxy_server(
    h: &Harness,
    dir: &TempDir,
    trusted: &str,
    tls: Option<&TestCert>,
) -> (Running, Arc<Mutex<Vec<ConnectionInfo>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (inner, _) = TestMaildir::new(dir);
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    let mut proxy = ProxyProtocol::new(vec![trusted.parse().unwrap()]);
    proxy.timeout = Duration::from_millis(500);
    options.proxy_protocol = Some(proxy);
    options.tls = tls.map(|c| Arc::clone(&c.server));
    let handler = InfoRecorder {
        inner,
        seen: Arc::clone(&seen),
    };
    (h.serve(handler, options, tls.is_some()), seen)
}

fn proxied(version: u8, source: &str, tlvs: Vec<ProxyTlv>) -> Vec<u8> {
    let source: SocketAddr = source.parse().unwrap();
    let destination = if source.is_ipv4() {
        "192.0.2.1:25"
    } else {
        "[2001:db8::1]:25"
    };
    ProxyHeader {
        version,
        command: ProxyCommand::Proxy,
        source: Some(source),
        destination: Some(destination.parse().unwrap()),
        tlvs,
    }
    .to_bytes()
}

/// One message through a raw peer that has sent its header.
fn send_one(peer: &mut Peer, subject: &str) {
    assert!(peer.reply().starts_with("220 mx.test"));
    assert!(peer.command("EHLO client.test").starts_with("250 "));
    assert!(
        peer.command("MAIL FROM:<a@example.org>")
            .starts_with("250 ")
    );
    assert!(peer.command("RCPT TO:<b@example.net>").starts_with("250 "));
    assert!(peer.command("DATA").starts_with("354 "));
    let body = format!("Subject: {subject}\r\n\r\nx\r\n.");
    assert!(peer.command(&body).starts_with("250 "));
    assert!(peer.command("QUIT").starts_with("221 "));
}

fn proxy_protocol_header_names_the_client(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("proxy");
    let (server, seen) = proxy_server(&h, &dir, "127.0.0.0/8", None);
    let authority = ProxyTlv {
        kind: ProxyTlv::AUTHORITY,
        value: b"mx.example".to_vec(),
    };
    for (header, subject) in [
        (proxied(1, "192.0.2.7:40000", vec![]), "v1"),
        (proxied(2, "[2001:db8::9]:40001", vec![authority]), "v2"),
        (b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec(), "local"),
    ] {
        let mut peer = Peer::connect(server.addr());
        peer.send(&header);
        send_one(&mut peer, subject);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].peer, Some("192.0.2.7:40000".parse().unwrap()));
    assert_eq!(seen[0].proxy.as_ref().unwrap().version, 1);
    assert_eq!(seen[1].peer, Some("[2001:db8::9]:40001".parse().unwrap()));
    let v2 = seen[1].proxy.as_ref().unwrap();
    assert_eq!((v2.version, v2.authority()), (2, Some("mx.example")));
    // LOCAL: the balancer's own connection, served with the real endpoints.
    assert_eq!(seen[2].peer.unwrap().ip().to_string(), "127.0.0.1");
    assert_eq!(seen[2].proxy.as_ref().unwrap().command, ProxyCommand::Local);

    let mut files = dir.delivered();
    files.sort_by_key(|f| {
        ["v1", "v2", "local"]
            .iter()
            .position(|s| f.contains(&format!("Subject: {s}\r")))
    });
    assert_eq!(files.len(), 3);
    assert!(files[0].contains("(192.0.2.7)"), "{}", files[0]);
    assert!(files[1].contains("(2001:db8::9)"), "{}", files[1]);
    assert!(files[2].contains("(127.0.0.1)"), "{}", files[2]);
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

/// One server, two listeners: PROXY is expected on the one configured for it only, and a
/// listener's own setting wins over the server-wide one.
fn proxy_protocol_per_listener(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("proxy-listeners");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (inner, _) = TestMaildir::new(&dir);
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    // Server-wide PROXY from a network nobody connects from: the listeners below choose
    // for themselves, so it must not apply to either.
    options.proxy_protocol = Some(ProxyProtocol::new(vec!["10.0.0.0/8".parse().unwrap()]));
    let mut proxy = ProxyProtocol::new(vec!["127.0.0.0/8".parse().unwrap()]);
    proxy.timeout = Duration::from_millis(500);
    let handler = InfoRecorder {
        inner,
        seen: Arc::clone(&seen),
    };
    let server = h.serve_listeners(
        handler,
        options,
        vec![
            ListenerOptions::plain().with_proxy_protocol(proxy),
            ListenerOptions::plain(),
        ],
    );
    let (balanced, direct) = (server.addrs()[0], server.addrs()[1]);

    let mut peer = Peer::connect(balanced);
    peer.send(&proxied(2, "192.0.2.7:40000", vec![]));
    send_one(&mut peer, "balanced");
    let mut peer = Peer::connect(direct);
    send_one(&mut peer, "direct");
    // A client talking SMTP first on the balanced port is closed without a greeting.
    let mut peer = Peer::connect(balanced);
    peer.send(b"EHLO client.test\r\n");
    assert_eq!(said_before_closing(&mut peer), "");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].peer, Some("192.0.2.7:40000".parse().unwrap()));
    assert!(seen[0].proxy.is_some());
    assert_eq!(seen[1].peer.unwrap().ip().to_string(), "127.0.0.1");
    assert!(seen[1].proxy.is_none());
    let files = dir.delivered();
    assert_eq!(files.len(), 2);
    let balanced_file = files
        .iter()
        .find(|f| f.contains("Subject: balanced\r"))
        .unwrap();
    assert!(balanced_file.contains("(192.0.2.7)"), "{balanced_file}");
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);

    // An implicit-TLS listener needs TLS: refused when the listener is added.
    let options = ServerOptions::new(ServerConfig::new("mx.test"));
    let refused = match driver {
        Driver::Blocking => Server::builder(DiscardHandler, options)
            .listen_with("127.0.0.1:0", ListenerOptions::implicit_tls())
            .err(),
        Driver::Async => {
            let _guard = h.rt.enter();
            AsyncServer::builder(DiscardHandler, options)
                .listen_with("127.0.0.1:0", ListenerOptions::implicit_tls())
                .err()
        }
    };
    assert_eq!(refused.unwrap().kind(), std::io::ErrorKind::InvalidInput);
}

/// Reads until the server closes; returns what it said.
fn said_before_closing(peer: &mut Peer) -> String {
    let mut rest = Vec::new();
    match peer.reader.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    String::from_utf8_lossy(&rest).into_owned()
}

fn proxy_protocol_refuses_without_a_greeting(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("proxy-refused");
    let (server, seen) = proxy_server(&h, &dir, "127.0.0.0/8", None);
    // Missing (the client talks SMTP first), malformed, oversized.
    let oversized = [b"PROXY TCP4 ".as_slice(), &[b'1'; 300]].concat();
    for bad in [
        &b"EHLO client.test\r\n"[..],
        b"PROXY TCP4 192.0.2.7 192.0.2.1 99999 25\r\n",
        &oversized,
    ] {
        let mut peer = Peer::connect(server.addr());
        peer.send(bad);
        assert_eq!(
            said_before_closing(&mut peer),
            "",
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Slow: half a header, then nothing until the deadline (500 ms).
    let started = Instant::now();
    let mut peer = Peer::connect(server.addr());
    peer.send(b"PROXY TCP4 192.0");
    assert_eq!(said_before_closing(&mut peer), "");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert!(seen.lock().unwrap().is_empty(), "no handler was asked");
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);

    // A source outside the trusted networks, even with a valid header.
    let (server, seen) = proxy_server(&h, &dir, "10.0.0.0/8", None);
    let mut peer = Peer::connect(server.addr());
    peer.send(&proxied(1, "192.0.2.7:40000", vec![]));
    assert_eq!(said_before_closing(&mut peer), "");
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

/// A TLS client stream over `tcp` that trusts `cert`.
fn tls_client(
    cert: &TestCert,
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = tls::client_config(&TlsClientOptions {
        roots: RootCerts::Pem(cert.cert_pem.clone().into_bytes()),
        ..TlsClientOptions::default()
    })
    .unwrap();
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends `line` (if any), then reads the reply and returns its last line.
fn tls_command(
    stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    line: Option<&str>,
) -> String {
    if let Some(line) = line {
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        stream.flush().unwrap();
    }
    let mut text = String::new();
    let mut byte = [0u8; 1];
    loop {
        let n = stream.read(&mut byte).unwrap();
        assert_eq!(n, 1, "closed while a reply was expected: {text:?}");
        text.push(byte[0] as char);
        if text.ends_with("\r\n") {
            let last = text.lines().last().unwrap_or("").to_owned();
            if last.as_bytes().get(3) != Some(&b'-') {
                return last;
            }
        }
    }
}

fn proxy_protocol_with_starttls_and_implicit_tls(driver: Driver) {
    let h = Harness::new(driver);
    let dir = TempDir::new("proxy-tls");
    let cert = TestCert::new();
    let (server, seen) = proxy_server(&h, &dir, "127.0.0.1", Some(&cert));
    let connect = |addr: SocketAddr, header: &[u8]| {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(header).unwrap();
        tcp
    };

    // Implicit TLS: the header in clear, then the handshake.
    let tcp = connect(server.addrs()[1], &proxied(2, "198.51.100.4:1111", vec![]));
    let mut tls = tls_client(&cert, tcp);
    let say = tls_command;
    assert!(say(&mut tls, None).starts_with("220 mx.test"));
    for (line, code) in [
        ("EHLO client.test", "250"),
        ("MAIL FROM:<a@example.org>", "250"),
        ("RCPT TO:<b@example.net>", "250"),
        ("DATA", "354"),
        ("Subject: implicit\r\n\r\nx\r\n.", "250"),
        ("QUIT", "221"),
    ] {
        let reply = say(&mut tls, Some(line));
        assert!(reply.starts_with(code), "{line}: {reply}");
    }

    // STARTTLS: header, greeting and EHLO in clear, then TLS.
    let tcp = connect(server.addr(), &proxied(1, "198.51.100.5:2222", vec![]));
    let mut plain = Peer {
        reader: BufReader::new(tcp.try_clone().unwrap()),
        writer: tcp.try_clone().unwrap(),
    };
    assert!(plain.reply().starts_with("220 "));
    assert!(plain.command("EHLO client.test").starts_with("250 "));
    assert!(plain.command("STARTTLS").starts_with("220 "));
    let mut tls = tls_client(&cert, tcp);
    for (line, code) in [
        ("EHLO client.test", "250"),
        ("MAIL FROM:<a@example.org>", "250"),
        ("RCPT TO:<b@example.net>", "250"),
        ("DATA", "354"),
        ("Subject: starttls\r\n\r\nx\r\n.", "250"),
        ("QUIT", "221"),
    ] {
        let reply = say(&mut tls, Some(line));
        assert!(reply.starts_with(code), "{line}: {reply}");
    }

    let seen = seen.lock().unwrap().clone();
    let peers: Vec<String> = seen.iter().map(|i| i.peer.unwrap().to_string()).collect();
    assert_eq!(peers, ["198.51.100.4:1111", "198.51.100.5:2222"]);
    assert!(seen[0].tls && !seen[1].tls);
    let files = dir.delivered();
    assert_eq!(files.len(), 2);
    for f in &files {
        assert!(
            f.contains("(198.51.100.4)") || f.contains("(198.51.100.5)"),
            "{f}"
        );
        assert!(f.contains("ESMTPS"), "{f}");
    }
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}
