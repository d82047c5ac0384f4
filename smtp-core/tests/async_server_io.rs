//! How the async server moves bytes and runs synchronous hooks: a hook that blocks on a
//! multi-threaded runtime leaves other connections served, and input beyond what the
//! session takes in at once (a read buffer larger than the session's input buffer) is
//! all answered; a deadline seconds away is kept whether the client is silent or
//! trickles bytes meanwhile.
#![cfg(feature = "tokio")]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtp_core::address::ReversePath;
use smtp_core::asynchronous::server::{AsyncServer, AsyncServerHandle};
use smtp_core::blocking::server::ServerOptions;
use smtp_core::command::MailParameters;
use smtp_core::handler::{ConnectionInfo, DiscardHandler, Handler, SessionHandler};
use smtp_core::reply::Reply;
use smtp_core::server::{Decision, ServerConfig};
use tokio::runtime::Runtime;

/// The longest any single wait in these tests may take.
const BOUND: Duration = Duration::from_secs(20);

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn start<H: Handler>(rt: &Runtime, handler: H, options: ServerOptions) -> AsyncServerHandle {
    let _guard = rt.enter();
    AsyncServer::builder(handler, options)
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap()
}

/// A client speaking raw lines, every read bounded by [`BOUND`].
struct Peer {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Peer {
    fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream.set_write_timeout(Some(BOUND)).unwrap();
        Peer {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Sends `command` and returns the last line of its reply.
    fn say(&mut self, command: &str) -> String {
        self.writer.write_all(command.as_bytes()).unwrap();
        loop {
            let line = self.line();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }
}

/// Its `mail` hook blocks its thread until the test lets it go (bounded).
struct BlockingMail {
    entered: mpsc::SyncSender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

struct BlockingMailSession {
    entered: mpsc::SyncSender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Handler for BlockingMail {
    type Session = BlockingMailSession;
    fn connect(&self, _info: &ConnectionInfo) -> Result<BlockingMailSession, Reply> {
        Ok(BlockingMailSession {
            entered: self.entered.clone(),
            release: Arc::clone(&self.release),
        })
    }
}

impl SessionHandler for BlockingMailSession {
    // `may_block` keeps its default: every hook may block.
    fn mail(&mut self, _from: &ReversePath, _params: &MailParameters) -> Decision {
        let _ = self.entered.send(());
        let released = self.release.lock().unwrap().recv_timeout(BOUND);
        assert!(released.is_ok(), "the test never released the hook");
        Decision::Accept
    }
}

#[test]
fn a_blocking_hook_does_not_stall_other_connections_on_one_worker() {
    let rt = runtime(1);
    let (entered_tx, entered) = mpsc::sync_channel(1);
    let (release, release_rx) = mpsc::channel();
    let handler = BlockingMail {
        entered: entered_tx,
        release: Arc::new(Mutex::new(release_rx)),
    };
    let server = start(
        &rt,
        handler,
        ServerOptions::new(ServerConfig::new("mx.test")),
    );
    let addr = server.local_addrs()[0];

    let mut blocked = Peer::connect(addr);
    assert!(blocked.line().starts_with("220 "));
    assert!(blocked.say("EHLO a\r\n").starts_with("250 "));
    blocked
        .writer
        .write_all(b"MAIL FROM:<a@b.test>\r\n")
        .unwrap();
    entered.recv_timeout(BOUND).expect("the mail hook ran");

    // The only worker's thread is inside the hook; the runtime still serves a newcomer.
    let mut other = Peer::connect(addr);
    assert!(other.line().starts_with("220 "));
    assert!(other.say("EHLO b\r\n").starts_with("250 "));
    assert!(other.say("NOOP\r\n").starts_with("250 "));
    assert!(other.say("QUIT\r\n").starts_with("221 "));

    release.send(()).unwrap();
    assert!(blocked.line().starts_with("250 "));
    assert!(blocked.say("QUIT\r\n").starts_with("221 "));
    let cut = rt.block_on(server.shutdown(Duration::from_secs(5)));
    assert_eq!(cut, 0);
}

#[test]
fn input_beyond_the_session_buffer_is_all_answered() {
    const COMMANDS: usize = 30_000;
    let rt = runtime(2);
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    // Larger than the session's input buffer, so that one read can bring more than the
    // session takes in at once.
    options.read_buffer = 1024 * 1024;
    let server = start(&rt, DiscardHandler, options);
    let mut peer = Peer::connect(server.local_addrs()[0]);
    assert!(peer.line().starts_with("220 "));
    assert!(peer.say("EHLO a\r\n").starts_with("250 "));

    // Written from another thread while this one reads the replies; exactly one reply
    // each, then QUIT's. RSET may be pipelined (RFC 2920); NOOP ends a group.
    let input = b"RSET\r\n".repeat(COMMANDS);
    let mut writer = peer.writer.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&input));
    let first = peer.line();
    assert!(first.starts_with("250 "), "{first}");
    let mut answered = 1;
    while answered < COMMANDS {
        let line = peer.line();
        assert!(line.starts_with("250 "), "reply {answered}: {line:?}");
        answered += 1;
    }
    sender.join().unwrap().unwrap();
    assert!(peer.say("QUIT\r\n").starts_with("221 "));
    let cut = rt.block_on(server.shutdown(Duration::from_secs(5)));
    assert_eq!(cut, 0);
}

/// The server's 421 for a command timeout of `timeout`, after about that long (the
/// server's coarse clock may put its deadline a tick earlier than the client sees it).
fn assert_timed_out(line: &str, waited: Duration, timeout: Duration) {
    assert!(line.starts_with("421 4.4.2"), "{line:?}");
    assert!(
        waited >= timeout - Duration::from_millis(50),
        "timed out early: {waited:?}"
    );
    // Late only by the scheduling of a busy machine (the test runs beside others).
    assert!(
        waited < timeout + Duration::from_secs(2),
        "timed out late: {waited:?}"
    );
}

/// The connection's timer is polled again only once its deadline is near (a second or
/// less away); these deadlines are further than that when the wait starts, so the wait
/// has to come back to the timer by itself: after the timer's own wake-up for a silent
/// client, and across wake-ups by input for one that trickles a line byte by byte.
#[test]
fn a_deadline_seconds_away_is_kept_for_a_silent_and_a_trickling_client() {
    let rt = runtime(2);
    let timeout = Duration::from_millis(2500);
    let mut config = ServerConfig::new("mx.test");
    config.command_timeout = timeout;
    let server = start(&rt, DiscardHandler, ServerOptions::new(config));
    let addr = server.local_addrs()[0];

    let silent = std::thread::spawn(move || {
        let mut peer = Peer::connect(addr);
        assert!(peer.line().starts_with("220 "));
        let started = Instant::now();
        let line = peer.line();
        (line, started.elapsed())
    });

    let mut peer = Peer::connect(addr);
    assert!(peer.line().starts_with("220 "));
    // The deadline is set by the greeting and does not move for a part of a line.
    let started = Instant::now();
    // A byte every 50 ms until half a second past the deadline (the server has answered
    // and closed by then; a write after its close may fail, which also ends the loop).
    for b in b"EHLO trickling.example".iter().cycle() {
        if peer.writer.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > timeout + Duration::from_millis(500) {
            break;
        }
    }
    let line = peer.line();
    let waited = started.elapsed();
    assert_timed_out(&line, waited, timeout);

    let (line, waited) = silent.join().unwrap();
    assert_timed_out(&line, waited, timeout);
    let cut = rt.block_on(server.shutdown(Duration::from_secs(5)));
    assert_eq!(cut, 0);
}
