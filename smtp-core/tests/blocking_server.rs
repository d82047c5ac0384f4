//! The blocking server on real loopback sockets, driven with raw bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::handler::{ConnectionInfo, DiscardHandler, Handler, SessionHandler, Transaction};
use smtp_core::reply::Reply;
use smtp_core::server::{AbortReason, Decision, ServerConfig};

/// A line-oriented test client with bounded waits.
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

    /// Reads one whole reply; returns its last line.
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

    /// True when the server closed the connection (read returns 0 or reset).
    fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

fn start<H: Handler>(
    handler: H,
    config: ServerConfig,
    tweak: impl FnOnce(&mut ServerOptions),
) -> Server {
    let mut options = ServerOptions::new(config);
    tweak(&mut options);
    Server::builder(handler, options)
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap()
}

fn config() -> ServerConfig {
    ServerConfig::new("mx.test")
}

#[derive(Clone, Default)]
struct Counting {
    delivered: Arc<AtomicUsize>,
    aborted: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

struct CountingSession {
    shared: Counting,
    body: Vec<u8>,
}

impl Handler for Counting {
    type Session = CountingSession;
    fn connect(&self, _: &ConnectionInfo) -> Result<CountingSession, Reply> {
        Ok(CountingSession {
            shared: self.clone(),
            body: Vec::new(),
        })
    }
}

impl SessionHandler for CountingSession {
    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        self.body.extend_from_slice(chunk);
        // Slow enough that a shutdown can catch a message in flight.
        std::thread::sleep(Duration::from_millis(1));
        Ok(())
    }
    fn data_end(&mut self, _: &Transaction) -> Decision {
        self.shared
            .bodies
            .lock()
            .unwrap()
            .push(std::mem::take(&mut self.body));
        self.shared.delivered.fetch_add(1, Ordering::SeqCst);
        Decision::Accept
    }
    fn data_aborted(&mut self, _: AbortReason) {
        self.body.clear();
        self.shared.aborted.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_transaction_over_loopback_with_pipelining() {
    let handler = Counting::default();
    let server = start(handler.clone(), config(), |_| {});
    let mut peer = Peer::connect(server.local_addrs()[0]);
    assert!(peer.reply().starts_with("220 mx.test ESMTP"));
    // EHLO ends a group (RFC 2920): wait for it, then pipeline the envelope.
    peer.send(b"EHLO c\r\n");
    assert_eq!(peer.reply(), "250 DSN");
    peer.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
    assert_eq!(peer.reply(), "250 2.1.0 Ok");
    assert_eq!(peer.reply(), "250 2.1.5 Ok");
    assert!(peer.reply().starts_with("354"));
    peer.send(b"Subject: x\r\n\r\n..dot\r\n.\r\n");
    assert_eq!(peer.reply(), "250 2.0.0 Ok: queued");
    assert_eq!(peer.command("QUIT"), "221 2.0.0 Bye");
    assert!(peer.is_closed());
    assert_eq!(
        handler.bodies.lock().unwrap().as_slice(),
        [b"Subject: x\r\n\r\n.dot\r\n".to_vec()]
    );
    assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
}

#[test]
fn connection_limit_answers_421_then_serves_again() {
    let server = start(DiscardHandler, config(), |o| o.max_connections = 3);
    let addr = server.local_addrs()[0];
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.active_connections() > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut again = Peer::connect(addr);
    assert!(again.reply().starts_with("220"));
    drop(held);
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn per_command_timeout_closes_a_slowloris() {
    let mut c = config();
    c.command_timeout = Duration::from_millis(400);
    let server = start(DiscardHandler, c, |_| {});
    let mut peer = Peer::connect(server.local_addrs()[0]);
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
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn graceful_shutdown_lets_a_transaction_finish() {
    let handler = Counting::default();
    let server = start(handler.clone(), config(), |_| {});
    let addr = server.local_addrs()[0];
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
    let stopper = std::thread::spawn(move || server.shutdown(Duration::from_secs(10)));
    // The idle client is told at once.
    assert!(idle.reply().starts_with("421 4.3.2"));
    // The busy one finishes its message and then hears 421.
    std::thread::sleep(Duration::from_millis(200));
    busy.send(b"second half\r\n.\r\n");
    assert_eq!(busy.reply(), "250 2.0.0 Ok: queued");
    assert!(busy.reply().starts_with("421 4.3.2"));
    assert_eq!(stopper.join().unwrap(), 0, "nothing had to be cut");
    assert_eq!(handler.delivered.load(Ordering::SeqCst), 1);
    // And no one is listening any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn grace_period_cuts_a_stalled_transaction() {
    let handler = Counting::default();
    let server = start(handler.clone(), config(), |_| {});
    let mut stalled = Peer::connect(server.local_addrs()[0]);
    stalled.reply();
    assert!(stalled.command("EHLO c").starts_with("250"));
    stalled.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
    for _ in 0..2 {
        stalled.reply();
    }
    assert!(stalled.reply().starts_with("354"));
    stalled.send(b"partial\r\n");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.shutdown(Duration::from_millis(300)), 1);
    assert_eq!(handler.delivered.load(Ordering::SeqCst), 0);
    assert_eq!(
        handler.aborted.load(Ordering::SeqCst),
        1,
        "the partial message was dropped"
    );
}

#[test]
fn client_that_disconnects_mid_data_leaves_nothing() {
    let handler = Counting::default();
    let server = start(handler.clone(), config(), |_| {});
    {
        let mut peer = Peer::connect(server.local_addrs()[0]);
        peer.reply();
        assert!(peer.command("EHLO c").starts_with("250"));
        peer.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
        for _ in 0..2 {
            peer.reply();
        }
        assert!(peer.reply().starts_with("354"));
        peer.send(b"Subject: cut\r\n\r\nhalf");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while handler.aborted.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handler.aborted.load(Ordering::SeqCst), 1);
    assert_eq!(handler.delivered.load(Ordering::SeqCst), 0);
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn a_thousand_concurrent_connections() {
    let handler = Counting::default();
    let server = start(handler.clone(), config(), |_| {});
    let addr = server.local_addrs()[0];
    // Open them all first, so that they really are concurrent.
    let mut peers: Vec<Peer> = (0..1000).map(|_| Peer::connect(addr)).collect();
    for p in &mut peers {
        assert!(p.reply().starts_with("220"));
    }
    assert_eq!(server.active_connections(), 1000);
    // A HELO client is not offered PIPELINING: each command waits for its reply, one
    // round of all thousand connections at a time.
    for (i, p) in peers.iter_mut().enumerate() {
        p.send(format!("HELO c{i}\r\n").as_bytes());
    }
    for command in ["MAIL FROM:<a@b.test>", "RCPT TO:<x@y.test>", "DATA"] {
        for p in &mut peers {
            assert!(p.reply().starts_with("250"));
            p.send(format!("{command}\r\n").as_bytes());
        }
    }
    for p in &mut peers {
        assert!(p.reply().starts_with("354"));
        p.send(b"hello\r\n.\r\nQUIT\r\n");
    }
    for p in &mut peers {
        assert_eq!(p.reply(), "250 2.0.0 Ok: queued");
        assert_eq!(p.reply(), "221 2.0.0 Bye");
    }
    assert_eq!(handler.delivered.load(Ordering::SeqCst), 1000);
    assert_eq!(server.shutdown(Duration::from_secs(10)), 0);
}

#[test]
fn garbage_costs_only_its_own_connection() {
    let server = start(DiscardHandler, config(), |_| {});
    let addr = server.local_addrs()[0];
    let mut bad = Peer::connect(addr);
    bad.reply();
    bad.send(&[0xffu8; 10_000]);
    bad.send(b"\r\n\0\0\0\r\nGARBAGE\r\n");
    let mut good = Peer::connect(addr);
    assert!(good.reply().starts_with("220"));
    assert_eq!(good.command("NOOP"), "250 2.0.0 Ok");
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn pipelined_input_beyond_what_the_session_takes_is_all_answered() {
    // A client that writes 30,000 commands before reading: the session holds input back
    // while its output is full, so the driver must step it again after each write rather
    // than wait for input that is already there.
    const COMMANDS: usize = 30_000;
    for read_buffer in [16 * 1024, 1024 * 1024] {
        let server = start(DiscardHandler, config(), |o| o.read_buffer = read_buffer);
        let mut peer = Peer::connect(server.local_addrs()[0]);
        assert!(peer.reply().starts_with("220 "));
        assert!(peer.command("EHLO a").starts_with("250 "));
        // RSET may be pipelined (RFC 2920); NOOP ends a group.
        let input = b"RSET\r\n".repeat(COMMANDS);
        let mut writer = peer.writer.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&input));
        for answered in 0..COMMANDS {
            let line = peer.reply();
            assert!(line.starts_with("250 "), "reply {answered}: {line:?}");
        }
        sender.join().unwrap().unwrap();
        assert!(peer.command("QUIT").starts_with("221 "));
        assert_eq!(server.shutdown(Duration::from_secs(5)), 0);
    }
}
