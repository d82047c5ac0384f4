//! The relay handler between a real client and a second smtpx server (the next hop), all
//! on loopback sockets: per-recipient refusals, LMTP, a next hop that is down or slow,
//! canonicalised content, and connection reuse.

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
    let mut config = ServerConfig::new("hop.test");
    config.lmtp = lmtp;
    Server::builder(handler, ServerOptions::new(config))
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap()
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

fn relay_to(addr: SocketAddr, options: ClientOptions) -> Server {
    let relay = RelayHandler::new(addr, "localhost", options, PoolConfig::new(4)).unwrap();
    server(relay, false)
}

fn send(front: &Server, to: &[&str], body: &[u8]) -> smtp_core::TransactionResult {
    let mut client =
        SmtpClient::connect(front.local_addrs()[0], "localhost", client_options(false)).unwrap();
    let envelope = Envelope::new("sender@example.org", to).unwrap();
    let result = client.send_bytes(&envelope, body).unwrap();
    client.quit().unwrap();
    result
}

#[test]
fn rcpt_gets_the_next_hops_reply_and_only_accepted_recipients_are_relayed() {
    let (hop, store) = next_hop(false, Duration::ZERO);
    let front = relay_to(hop.local_addrs()[0], client_options(false));
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
    assert_eq!(codes, [250, 550, 250]);
    assert!(
        result.recipients[1].reply.text().contains("next hop"),
        "{}",
        result.recipients[1].reply
    );
    let data = result.data.expect("a final reply");
    assert_eq!(data.code(), ReplyCode::OK);
    assert!(data.text().contains("stored by next hop"), "{data}");
    let messages = store.messages.lock().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0, ["<a@example.net>", "<b@example.net>"]);
    assert_eq!(messages[0].1, b"Subject: relayed\r\n\r\nHello.\r\n");
    drop(messages);
    front.shutdown(Duration::from_secs(5));
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn lmtp_next_hop_replies_per_recipient_to_an_lmtp_client() {
    let (hop, store) = next_hop(true, Duration::ZERO);
    let relay = RelayHandler::new(
        hop.local_addrs()[0],
        "localhost",
        client_options(true),
        PoolConfig::new(2),
    )
    .unwrap();
    let front = server(relay, true);
    let mut client =
        SmtpClient::connect(front.local_addrs()[0], "localhost", client_options(true)).unwrap();
    let envelope = Envelope::new("s@example.org", ["a@example.net", "full@example.net"]).unwrap();
    let result = client
        .send_bytes(&envelope, b"Subject: lmtp\r\n\r\nx\r\n")
        .unwrap();
    let deliveries: Vec<u16> = result
        .recipients
        .iter()
        .map(|r| r.delivery.as_ref().expect("a delivery reply").code().get())
        .collect();
    assert_eq!(deliveries, [250, 452]);
    assert!(
        result.recipients[1]
            .delivery
            .as_ref()
            .unwrap()
            .text()
            .contains("full (next hop)")
    );
    client.quit().unwrap();
    assert_eq!(store.messages.lock().unwrap().len(), 1);
    front.shutdown(Duration::from_secs(5));
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn lmtp_next_hop_that_refuses_some_recipients_is_not_acknowledged_to_an_smtp_client() {
    let (hop, _store) = next_hop(true, Duration::ZERO);
    let front = relay_to(hop.local_addrs()[0], client_options(true));
    let result = send(&front, &["a@example.net", "full@example.net"], b"x\r\n");
    let data = result.data.expect("a final reply");
    assert_eq!(data.code(), ReplyCode::LOCAL_ERROR, "{data}");
    // All refused temporarily: the next hop's own words.
    let result = send(&front, &["full@example.net"], b"x\r\n");
    assert_eq!(result.data.unwrap().code(), ReplyCode::INSUFFICIENT_STORAGE);
    front.shutdown(Duration::from_secs(5));
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn a_next_hop_that_is_down_gives_451_441() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut options = client_options(false);
    options.connect_timeout = Duration::from_secs(2);
    let front = relay_to(addr, options);
    let mut client =
        SmtpClient::connect(front.local_addrs()[0], "localhost", client_options(false)).unwrap();
    let envelope = Envelope::new("s@example.org", ["a@example.net"]).unwrap();
    let result = client.send_bytes(&envelope, b"x\r\n").unwrap();
    assert_eq!(
        result.mail.code(),
        ReplyCode::LOCAL_ERROR,
        "{}",
        result.mail
    );
    assert_eq!(result.mail.enhanced(), Some(EnhancedCode::new(4, 4, 1)));
    assert!(!result.is_success());
    client.quit().unwrap();
    front.shutdown(Duration::from_secs(5));
}

#[test]
fn a_slow_next_hop_gives_451_442_never_250() {
    let (hop, _store) = next_hop(false, Duration::from_secs(3));
    let mut options = client_options(false);
    options.timeouts.data_end = Duration::from_millis(500);
    let front = relay_to(hop.local_addrs()[0], options);
    let result = send(&front, &["a@example.net"], b"Subject: slow\r\n\r\nx\r\n");
    let data = result.data.expect("a final reply");
    assert_eq!(data.code(), ReplyCode::LOCAL_ERROR, "{data}");
    assert_eq!(data.enhanced(), Some(EnhancedCode::new(4, 4, 2)));
    front.shutdown(Duration::from_secs(5));
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn lone_cr_and_lf_from_the_client_leave_as_crlf() {
    let (hop, store) = next_hop(false, Duration::ZERO);
    let front = relay_to(hop.local_addrs()[0], client_options(false));
    let stream = TcpStream::connect(front.local_addrs()[0]).unwrap();
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
        assert!(line.starts_with(code), "{command:?}: {line}");
    }
    writer
        .write_all(b"Subject: bare\r\n\r\none\ntwo\rthree\r\n.\r\n")
        .unwrap();
    assert!(reply().starts_with("250"));
    writer.write_all(b"QUIT\r\n").unwrap();
    let messages = store.messages.lock().unwrap();
    assert_eq!(
        messages[0].1,
        b"Subject: bare\r\n\r\none\r\ntwo\r\nthree\r\n"
    );
    drop(messages);
    front.shutdown(Duration::from_secs(5));
    hop.shutdown(Duration::from_secs(5));
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
    let info = ConnectionInfo {
        id: 1,
        peer: None,
        local: None,
        hostname: "relay.test".into(),
        tls: false,
        proxy: None,
        tls_state: Default::default(),
    };
    let mut session = relay.connect(&info).unwrap();
    let from: ReversePath =
        ReversePath::Mailbox(smtp_core::Address::parse("s@example.org").unwrap());
    let to = ForwardPath::Mailbox(smtp_core::Address::parse("a@example.net").unwrap());
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
    for piece in [&b"a\nb"[..], b"\rc\r", b"\nd\n.e\n"] {
        session.data_chunk(piece).unwrap();
    }
    assert!(matches!(
        session.data_end(&transaction),
        Decision::PerRecipient(_) | Decision::Reply(_)
    ));
    let messages = store.messages.lock().unwrap();
    assert_eq!(messages[0].1, b"a\r\nb\r\nc\r\nd\r\n.e\r\n");
    drop(messages);
    drop(session);
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn next_hop_connections_are_reused_across_transactions_and_connections() {
    let (hop, store) = next_hop(false, Duration::ZERO);
    let front = relay_to(hop.local_addrs()[0], client_options(false));
    for i in 0..5 {
        let result = send(
            &front,
            &["a@example.net"],
            format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
        );
        assert!(result.is_success());
    }
    assert_eq!(store.messages.lock().unwrap().len(), 5);
    assert_eq!(store.connections.load(Ordering::SeqCst), 1);
    front.shutdown(Duration::from_secs(5));
    hop.shutdown(Duration::from_secs(5));
}

#[test]
fn an_abandoned_message_is_never_finished_at_the_next_hop() {
    let (hop, store) = next_hop(false, Duration::ZERO);
    let front = relay_to(hop.local_addrs()[0], client_options(false));
    let mut stream = TcpStream::connect(front.local_addrs()[0]).unwrap();
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
                "closed after {seen}"
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
    assert!(result.is_success());
    // Every front connection is over (the cut one's hooks have run) before looking.
    front.shutdown(Duration::from_secs(5));
    let messages = store.messages.lock().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1, b"whole\r\n");
    drop(messages);
    hop.shutdown(Duration::from_secs(5));
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
    let front = relay_to(hop.local_addrs()[0], client_options(false));
    let result = send(&front, &["a@example.net"], b"x\r\n");
    assert_eq!(result.mail.code().get(), 530, "{}", result.mail);
    front.shutdown(Duration::from_secs(5));
    // With them, the message goes through.
    let mut options = client_options(false);
    options.credentials = Some(Credentials::password("relay", "s3cret"));
    options.allow_insecure_auth = true;
    let front = relay_to(hop.local_addrs()[0], options);
    let result = send(&front, &["a@example.net"], b"authenticated\r\n");
    assert!(result.is_success(), "{result:?}");
    assert_eq!(store.messages.lock().unwrap()[0].1, b"authenticated\r\n");
    front.shutdown(Duration::from_secs(5));
    hop.shutdown(Duration::from_secs(5));
}
