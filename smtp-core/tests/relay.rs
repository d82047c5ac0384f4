//! The relay handler between a real client and a second smtpx server (the next hop), all
//! on loopback sockets: per-recipient refusals, LMTP, a next hop that is down or slow,
//! canonicalised content, and connection reuse. Each case runs on both relays: the
//! blocking `RelayHandler` on the blocking server, and (feature `tokio`) the
//! `AsyncRelayHandler` on the tokio server with a single worker thread.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_core::blocking::client::{ClientOptions, SmtpClient, TlsMode};
use smtp_core::blocking::pool::SmtpPool;
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::client::Envelope;
use smtp_core::client::pool::PoolConfig;
use smtp_core::handler::{ConnectionInfo, Handler, SessionHandler, Transaction};
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::relay::RelayHandler;
use smtp_core::server::{Decision, ServerConfig};
use smtp_core::{ForwardPath, ReversePath};

/// One stored message: its envelope recipients and its content.
type Stored = (Vec<String>, Vec<u8>);

/// What the next hop stored, and how many connections it took.
#[derive(Clone, Default)]
struct Store {
    messages: Arc<Mutex<Vec<Stored>>>,
    connections: Arc<AtomicUsize>,
}

/// The next hop: refuses `refused@…` at RCPT, answers LMTP per recipient (452 for
/// `full@…`), and takes `delay` over each final reply.
#[derive(Clone)]
struct NextHop {
    store: Store,
    delay: Duration,
}

struct NextHopSession {
    hop: NextHop,
    content: Vec<u8>,
}

impl Handler for NextHop {
    type Session = NextHopSession;
    fn connect(&self, _info: &ConnectionInfo) -> Result<NextHopSession, Reply> {
        self.store.connections.fetch_add(1, Ordering::SeqCst);
        Ok(NextHopSession {
            hop: self.clone(),
            content: Vec::new(),
        })
    }
}

impl SessionHandler for NextHopSession {
    fn rcpt(&mut self, to: &ForwardPath, _params: &smtp_core::command::RcptParameters) -> Decision {
        if to.to_string().contains("refused@") {
            return Decision::Reply(Reply::new(
                ReplyCode::MAILBOX_UNAVAILABLE,
                Some(EnhancedCode::BAD_DESTINATION),
                "no such user here (next hop)",
            ));
        }
        Decision::Accept
    }
    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        self.content.extend_from_slice(chunk);
        Ok(())
    }
    fn data_end(&mut self, t: &Transaction) -> Decision {
        std::thread::sleep(self.hop.delay);
        let rcpts: Vec<String> = t.recipients.iter().map(|r| r.to_string()).collect();
        let replies: Vec<Reply> = rcpts
            .iter()
            .map(|r| {
                if r.contains("full@") {
                    Reply::new(
                        ReplyCode::INSUFFICIENT_STORAGE,
                        Some(EnhancedCode::MAILBOX_FULL),
                        "full (next hop)",
                    )
                } else {
                    Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), "stored by next hop")
                }
            })
            .collect();
        self.hop
            .store
            .messages
            .lock()
            .unwrap()
            .push((rcpts, std::mem::take(&mut self.content)));
        Decision::PerRecipient(replies)
    }
}

fn server<H: Handler>(handler: H, lmtp: bool) -> Server {
    Server::builder(handler, ServerOptions::new(config(lmtp)))
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap()
}

fn config(lmtp: bool) -> ServerConfig {
    let mut config = ServerConfig::new("hop.test");
    config.lmtp = lmtp;
    config
}

fn next_hop(lmtp: bool, delay: Duration) -> (Server, Store) {
    let store = Store::default();
    let hop = NextHop {
        store: store.clone(),
        delay,
    };
    (server(hop, lmtp), store)
}

fn client_options(lmtp: bool) -> ClientOptions {
    let mut options = ClientOptions::new("relay.test");
    options.tls = TlsMode::None;
    options.lmtp = lmtp;
    options.timeouts.data_end = Duration::from_secs(10);
    options
}

/// Which relay a case runs on.
#[derive(Clone, Copy, Debug)]
enum Driver {
    /// `RelayHandler` on the blocking server.
    Blocking,
    /// `AsyncRelayHandler` on the tokio server.
    #[cfg(feature = "tokio")]
    Async,
}

fn drivers() -> Vec<Driver> {
    vec![
        Driver::Blocking,
        #[cfg(feature = "tokio")]
        Driver::Async,
    ]
}

/// A relay server in front of a next hop.
enum Front {
    Blocking(Server),
    /// On a runtime of its own with one worker thread: a hook that blocked it would stall
    /// every other connection.
    #[cfg(feature = "tokio")]
    Async {
        server: smtp_core::asynchronous::server::AsyncServerHandle,
        runtime: tokio::runtime::Runtime,
    },
}

impl Front {
    /// A relay to `next_hop` with `options` and a pool of `pool` connections, speaking
    /// LMTP to its clients when `lmtp`.
    fn start(
        driver: Driver,
        next_hop: SocketAddr,
        options: ClientOptions,
        pool: usize,
        lmtp: bool,
    ) -> Front {
        let pool = PoolConfig::new(pool);
        match driver {
            Driver::Blocking => {
                let relay = RelayHandler::new(next_hop, "localhost", options, pool).unwrap();
                Front::Blocking(server(relay, lmtp))
            }
            #[cfg(feature = "tokio")]
            Driver::Async => {
                use smtp_core::asynchronous::AsyncServer;
                use smtp_core::server::relay::AsyncRelayHandler;
                let relay = AsyncRelayHandler::new(next_hop, "localhost", options, pool).unwrap();
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let builder = AsyncServer::builder_async(relay, ServerOptions::new(config(lmtp)))
                    .listen("127.0.0.1:0")
                    .unwrap();
                let server = runtime.block_on(async { builder.start() }).unwrap();
                Front::Async { server, runtime }
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Front::Blocking(server) => server.local_addrs()[0],
            #[cfg(feature = "tokio")]
            Front::Async { server, .. } => server.local_addrs()[0],
        }
    }

    /// Shuts down once every connection is over (within the grace period).
    fn shutdown(self) {
        match self {
            Front::Blocking(server) => {
                server.shutdown(Duration::from_secs(5));
            }
            #[cfg(feature = "tokio")]
            Front::Async { server, runtime } => {
                runtime.block_on(server.shutdown(Duration::from_secs(5)));
            }
        }
    }
}

fn relay_to(driver: Driver, addr: SocketAddr, options: ClientOptions) -> Front {
    Front::start(driver, addr, options, 4, false)
}

fn send(front: &Front, to: &[&str], body: &[u8]) -> smtp_core::TransactionResult {
    let mut client = SmtpClient::connect(front.addr(), "localhost", client_options(false)).unwrap();
    let envelope = Envelope::new("sender@example.org", to).unwrap();
    let result = client.send_bytes(&envelope, body).unwrap();
    client.quit().unwrap();
    result
}

#[test]
fn rcpt_gets_the_next_hops_reply_and_only_accepted_recipients_are_relayed() {
    for driver in drivers() {
        let (hop, store) = next_hop(false, Duration::ZERO);
        let front = relay_to(driver, hop.local_addrs()[0], client_options(false));
        let result = send(
            &front,
            &["a@example.net", "refused@example.net", "b@example.net"],
            b"Subject: relayed\r\n\r\nHello.\r\n",
        );
        let codes: Vec<u16> = result
            .recipients
            .iter()
            .map(|r| r.reply.code().get())
            .collect();
        assert_eq!(codes, [250, 550, 250], "{driver:?}");
        assert!(
            result.recipients[1].reply.text().contains("next hop"),
            "{driver:?}: {}",
            result.recipients[1].reply
        );
        let data = result.data.expect("a final reply");
        assert_eq!(data.code(), ReplyCode::OK, "{driver:?}");
        assert!(
            data.text().contains("stored by next hop"),
            "{driver:?}: {data}"
        );
        let messages = store.messages.lock().unwrap();
        assert_eq!(messages.len(), 1, "{driver:?}");
        assert_eq!(messages[0].0, ["<a@example.net>", "<b@example.net>"]);
        assert_eq!(messages[0].1, b"Subject: relayed\r\n\r\nHello.\r\n");
        drop(messages);
        front.shutdown();
        hop.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn lmtp_next_hop_replies_per_recipient_to_an_lmtp_client() {
    for driver in drivers() {
        let (hop, store) = next_hop(true, Duration::ZERO);
        let front = Front::start(driver, hop.local_addrs()[0], client_options(true), 2, true);
        let mut client =
            SmtpClient::connect(front.addr(), "localhost", client_options(true)).unwrap();
        let envelope =
            Envelope::new("s@example.org", ["a@example.net", "full@example.net"]).unwrap();
        let result = client
            .send_bytes(&envelope, b"Subject: lmtp\r\n\r\nx\r\n")
            .unwrap();
        let deliveries: Vec<u16> = result
            .recipients
            .iter()
            .map(|r| r.delivery.as_ref().expect("a delivery reply").code().get())
            .collect();
        assert_eq!(deliveries, [250, 452], "{driver:?}");
        assert!(
            result.recipients[1]
                .delivery
                .as_ref()
                .unwrap()
                .text()
                .contains("full (next hop)"),
            "{driver:?}"
        );
        client.quit().unwrap();
        assert_eq!(store.messages.lock().unwrap().len(), 1, "{driver:?}");
        front.shutdown();
        hop.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn lmtp_next_hop_that_refuses_some_recipients_is_not_acknowledged_to_an_smtp_client() {
    for driver in drivers() {
        let (hop, _store) = next_hop(true, Duration::ZERO);
        let front = relay_to(driver, hop.local_addrs()[0], client_options(true));
        let result = send(&front, &["a@example.net", "full@example.net"], b"x\r\n");
        let data = result.data.expect("a final reply");
        assert_eq!(data.code(), ReplyCode::LOCAL_ERROR, "{driver:?}: {data}");
        // All refused temporarily: the next hop's own words.
        let result = send(&front, &["full@example.net"], b"x\r\n");
        assert_eq!(
            result.data.unwrap().code(),
            ReplyCode::INSUFFICIENT_STORAGE,
            "{driver:?}"
        );
        front.shutdown();
        hop.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn a_next_hop_that_is_down_gives_451_441() {
    for driver in drivers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut options = client_options(false);
        options.connect_timeout = Duration::from_secs(2);
        let front = relay_to(driver, addr, options);
        let mut client =
            SmtpClient::connect(front.addr(), "localhost", client_options(false)).unwrap();
        let envelope = Envelope::new("s@example.org", ["a@example.net"]).unwrap();
        let result = client.send_bytes(&envelope, b"x\r\n").unwrap();
        assert_eq!(
            result.mail.code(),
            ReplyCode::LOCAL_ERROR,
            "{driver:?}: {}",
            result.mail
        );
        assert_eq!(result.mail.enhanced(), Some(EnhancedCode::new(4, 4, 1)));
        assert!(!result.is_success());
        client.quit().unwrap();
        front.shutdown();
    }
}

#[test]
fn a_slow_next_hop_gives_451_442_never_250() {
    for driver in drivers() {
        let (hop, _store) = next_hop(false, Duration::from_secs(3));
        let mut options = client_options(false);
        options.timeouts.data_end = Duration::from_millis(500);
        let front = relay_to(driver, hop.local_addrs()[0], options);
        let result = send(&front, &["a@example.net"], b"Subject: slow\r\n\r\nx\r\n");
        let data = result.data.expect("a final reply");
        assert_eq!(data.code(), ReplyCode::LOCAL_ERROR, "{driver:?}: {data}");
        assert_eq!(data.enhanced(), Some(EnhancedCode::new(4, 4, 2)));
        front.shutdown();
        hop.shutdown(Duration::from_secs(5));
    }
}

/// The async relay holds no worker while the next hop takes its time: with the tokio
/// server's only worker thread, a second client is served in full while the first waits
/// for a next hop that takes 1.5 s over its final reply.
#[cfg(feature = "tokio")]
#[test]
fn async_relay_holds_no_worker_while_the_next_hop_answers() {
    let (hop, store) = next_hop(false, Duration::from_millis(1500));
    let front = relay_to(Driver::Async, hop.local_addrs()[0], client_options(false));
    let addr = front.addr();
    let slow = std::thread::spawn(move || {
        let mut client = SmtpClient::connect(addr, "localhost", client_options(false)).unwrap();
        let envelope = Envelope::new("s@example.org", ["a@example.net"]).unwrap();
        let result = client.send_bytes(&envelope, b"slow\r\n").unwrap();
        client.quit().unwrap();
        result
    });
    // Once the slow message is with the next hop (it counts the connection when MAIL
    // arrives; then RCPT and DATA follow at once).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.connections.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow message never left"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let mut client = SmtpClient::connect(addr, "localhost", client_options(false)).unwrap();
    assert!(client.noop().unwrap().is_completion());
    client.quit().unwrap();
    let took = started.elapsed();
    assert!(!slow.is_finished(), "the slow message was not slow");
    assert!(took < Duration::from_millis(1000), "served in {took:?}");
    assert!(slow.join().unwrap().is_success());
    front.shutdown();
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn lone_cr_and_lf_from_the_client_leave_as_crlf() {
    for driver in drivers() {
        let (hop, store) = next_hop(false, Duration::ZERO);
        let front = relay_to(driver, hop.local_addrs()[0], client_options(false));
        let stream = TcpStream::connect(front.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        // The last line of a reply.
        let mut reply = || {
            loop {
                let mut line = String::new();
                assert!(reader.read_line(&mut line).unwrap() > 0, "closed");
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line;
                }
            }
        };
        assert!(reply().starts_with("220"));
        for (command, code) in [
            ("EHLO raw.test\r\n", "250"),
            ("MAIL FROM:<s@example.org>\r\n", "250"),
            ("RCPT TO:<a@example.net>\r\n", "250"),
            ("DATA\r\n", "354"),
        ] {
            writer.write_all(command.as_bytes()).unwrap();
            let line = reply();
            assert!(line.starts_with(code), "{driver:?} {command:?}: {line}");
        }
        writer
            .write_all(b"Subject: bare\r\n\r\none\ntwo\rthree\r\n.\r\n")
            .unwrap();
        assert!(reply().starts_with("250"));
        writer.write_all(b"QUIT\r\n").unwrap();
        let messages = store.messages.lock().unwrap();
        assert_eq!(
            messages[0].1, b"Subject: bare\r\n\r\none\r\ntwo\r\nthree\r\n",
            "{driver:?}"
        );
        drop(messages);
        front.shutdown();
        hop.shutdown(Duration::from_secs(5));
    }
}

fn connection_info() -> ConnectionInfo {
    ConnectionInfo {
        id: 1,
        peer: None,
        local: None,
        hostname: "relay.test".into(),
        tls: false,
        proxy: None,
        tls_state: Default::default(),
    }
}

/// Content split mid-line, with lone CR and LF in it, as
/// `relay_session_canonicalises_lone_line_endings_in_chunks` feeds it.
const SPLIT_CONTENT: [&[u8]; 3] = [b"a\nb", b"\rc\r", b"\nd\n.e\n"];
const SPLIT_CANONICAL: &[u8] = b"a\r\nb\r\nc\r\nd\r\n.e\r\n";

fn mailbox_paths() -> (ReversePath, ForwardPath) {
    let from = ReversePath::Mailbox(smtp_core::Address::parse("s@example.org").unwrap());
    let to = ForwardPath::Mailbox(smtp_core::Address::parse("a@example.net").unwrap());
    (from, to)
}

#[test]
fn relay_session_canonicalises_lone_line_endings_in_chunks() {
    // The hooks called directly, as a server would, with content split mid-line and lone
    // CR and LF in it: what reaches the next hop is CRLF only.
    let (hop, store) = next_hop(false, Duration::ZERO);
    let relay = RelayHandler::new(
        hop.local_addrs()[0],
        "localhost",
        client_options(false),
        PoolConfig::new(1),
    )
    .unwrap();
    let mut session = relay.connect(&connection_info()).unwrap();
    let (from, to) = mailbox_paths();
    assert!(
        matches!(session.mail(&from, &Default::default()), Decision::Reply(r) if r.is_completion())
    );
    assert!(
        matches!(session.rcpt(&to, &Default::default()), Decision::Reply(r) if r.is_completion())
    );
    let transaction = Transaction {
        from: Some(from),
        recipients: vec![to],
        ..Default::default()
    };
    assert_eq!(session.data_start(&transaction), Decision::Accept);
    for piece in SPLIT_CONTENT {
        session.data_chunk(piece).unwrap();
    }
    assert!(matches!(
        session.data_end(&transaction),
        Decision::Reply(r) if r.is_completion()
    ));
    let messages = store.messages.lock().unwrap();
    assert_eq!(messages[0].1, SPLIT_CANONICAL);
    drop(messages);
    drop(session);
    hop.shutdown(Duration::from_secs(5));
}

/// The same through the async relay's hooks, awaited as the tokio server awaits them.
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "current_thread")]
async fn async_relay_session_canonicalises_lone_line_endings_in_chunks() {
    use smtp_core::handler::{AsyncHandler, AsyncSessionHandler};
    use smtp_core::server::relay::AsyncRelayHandler;

    let (hop, store) = next_hop(false, Duration::ZERO);
    let relay = AsyncRelayHandler::new(
        hop.local_addrs()[0],
        "localhost",
        client_options(false),
        PoolConfig::new(1),
    )
    .unwrap();
    let mut session = relay.connect(&connection_info()).await.unwrap();
    let (from, to) = mailbox_paths();
    let mail = session.mail(&from, &Default::default()).await;
    assert!(matches!(mail, Decision::Reply(r) if r.is_completion()));
    let rcpt = session.rcpt(&to, &Default::default()).await;
    assert!(matches!(rcpt, Decision::Reply(r) if r.is_completion()));
    let transaction = Transaction {
        from: Some(from),
        recipients: vec![to],
        ..Default::default()
    };
    assert_eq!(session.data_start(&transaction).await, Decision::Accept);
    for piece in SPLIT_CONTENT {
        session.data_chunk(piece).await.unwrap();
    }
    let end = session.data_end(&transaction).await;
    assert!(matches!(end, Decision::Reply(r) if r.is_completion()));
    session.close().await;
    assert_eq!(store.messages.lock().unwrap()[0].1, SPLIT_CANONICAL);
    drop(session);
    relay.pool().close().await;
    tokio::task::spawn_blocking(move || hop.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

#[test]
fn next_hop_connections_are_reused_across_transactions_and_connections() {
    for driver in drivers() {
        let (hop, store) = next_hop(false, Duration::ZERO);
        let front = relay_to(driver, hop.local_addrs()[0], client_options(false));
        for i in 0..5 {
            let result = send(
                &front,
                &["a@example.net"],
                format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
            );
            assert!(result.is_success(), "{driver:?}");
        }
        assert_eq!(store.messages.lock().unwrap().len(), 5, "{driver:?}");
        assert_eq!(store.connections.load(Ordering::SeqCst), 1, "{driver:?}");
        front.shutdown();
        hop.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn an_abandoned_message_is_never_finished_at_the_next_hop() {
    for driver in drivers() {
        let (hop, store) = next_hop(false, Duration::ZERO);
        let front = relay_to(driver, hop.local_addrs()[0], client_options(false));
        let mut stream = TcpStream::connect(front.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut seen = String::new();
        // EHLO ends a pipelining group: its reply first, then the transaction's commands.
        for (command, wanted) in [
            (&b"EHLO raw.test\r\n"[..], "250 "),
            (
                b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n",
                "354",
            ),
        ] {
            stream.write_all(command).unwrap();
            while !seen.contains(wanted) {
                let mut line = String::new();
                assert!(
                    reader.read_line(&mut line).unwrap() > 0,
                    "{driver:?}: closed after {seen}"
                );
                seen.push_str(&line);
            }
        }
        stream
            .write_all(b"Subject: cut\r\n\r\nhalf a mess")
            .unwrap();
        drop(reader);
        drop(stream);
        // The next message goes through; the cut one never arrived.
        let result = send(&front, &["a@example.net"], b"whole\r\n");
        assert!(result.is_success(), "{driver:?}: {result:?}");
        // Every front connection is over (the cut one's hooks have run) before looking.
        front.shutdown();
        let messages = store.messages.lock().unwrap();
        assert_eq!(messages.len(), 1, "{driver:?}");
        assert_eq!(messages[0].1, b"whole\r\n");
        drop(messages);
        hop.shutdown(Duration::from_secs(5));
    }
}
#[test]
fn pool_is_bounded_and_shared_between_threads() {
    let (hop, store) = next_hop(false, Duration::from_millis(20));
    let pool = SmtpPool::new(
        hop.local_addrs()[0],
        "localhost",
        client_options(false),
        PoolConfig::new(3).max_messages(10),
    )
    .unwrap();
    let envelope = Envelope::new("s@example.org", ["a@example.net"]).unwrap();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..5 {
                    let result = pool.send_bytes(&envelope, b"pooled\r\n").unwrap();
                    assert!(result.is_success());
                    assert!(pool.status().0 <= 3);
                }
            });
        }
    });
    assert_eq!(store.messages.lock().unwrap().len(), 30);
    // 30 messages, at most 10 per connection, at most 3 at once: at least 3 connections,
    // far fewer than 30.
    let opened = store.connections.load(Ordering::SeqCst);
    assert!((3..=9).contains(&opened), "{opened} connections");
    pool.close();
    assert_eq!(pool.status(), (0, 0));
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn relay_authenticates_to_a_next_hop_that_requires_it() {
    use smtp_core::auth::{AuthMechanism, Credentials};
    use smtp_core::handler::PasswordAuth;

    for driver in drivers() {
        let store = Store::default();
        let hop = NextHop {
            store: store.clone(),
            delay: Duration::ZERO,
        };
        let mut config = ServerConfig::new("hop.test");
        config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
        config.allow_insecure_auth = true;
        config.require_auth = true;
        let hop = Server::builder(
            PasswordAuth::new(hop, [("relay", "s3cret")]),
            ServerOptions::new(config),
        )
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
        // Without credentials the next hop refuses MAIL, and so does the relay.
        let front = relay_to(driver, hop.local_addrs()[0], client_options(false));
        let result = send(&front, &["a@example.net"], b"x\r\n");
        assert_eq!(result.mail.code().get(), 530, "{driver:?}: {}", result.mail);
        front.shutdown();
        // With them, the message goes through.
        let mut options = client_options(false);
        options.credentials = Some(Credentials::password("relay", "s3cret"));
        options.allow_insecure_auth = true;
        let front = relay_to(driver, hop.local_addrs()[0], options);
        let result = send(&front, &["a@example.net"], b"authenticated\r\n");
        assert!(result.is_success(), "{driver:?}: {result:?}");
        assert_eq!(store.messages.lock().unwrap()[0].1, b"authenticated\r\n");
        front.shutdown();
        hop.shutdown(Duration::from_secs(5));
    }
}
