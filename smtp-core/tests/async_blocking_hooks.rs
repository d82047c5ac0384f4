//! A synchronous handler's hooks that block, on the tokio server, more of them at once
//! than the runtime has workers: another client is served meanwhile, and every blocked
//! client is served when its hook returns. On one, two and four workers, with each hook
//! in `block_in_place` (the default) and with hooks in place on a spare worker
//! (`BlockingHooks::SpareWorker`, what the C library's servers use).
//!
//! The spare-worker mode needed its watchdog to pass here: without it a hook that held
//! the worker which last polled the I/O driver left every socket unpolled (the free
//! workers sleep without polling it), and the clients queued behind that worker waited
//! for the hook ("the slow hooks did not all start").
//!
//! (The file name starts with `async_` so that `make test` builds it with the `tokio`
//! feature.)
#![cfg(feature = "tokio")]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smtp_core::asynchronous::server::{AsyncServer, BlockingHooks};
use smtp_core::handler::{ConnectionInfo, Handler, SessionHandler};
use smtp_core::reply::Reply;
use smtp_core::server::{Decision, HelloVerb, ServerConfig, ServerOptions};

/// How long a slow hook blocks.
const SLOW: Duration = Duration::from_millis(1500);

/// Greets "slow*" clients after blocking the thread for [`SLOW`] (a lookup, a database),
/// counting the hooks blocked at the moment.
struct Slow {
    blocked: Arc<AtomicUsize>,
}

struct SlowSession {
    blocked: Arc<AtomicUsize>,
}

impl Handler for Slow {
    type Session = SlowSession;
    fn connect(&self, _info: &ConnectionInfo) -> Result<SlowSession, Reply> {
        Ok(SlowSession {
            blocked: Arc::clone(&self.blocked),
        })
    }
}

impl SessionHandler for SlowSession {
    fn hello(&mut self, _verb: HelloVerb, domain: &str) -> Decision {
        if domain.starts_with("slow") {
            self.blocked.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(SLOW);
            self.blocked.fetch_sub(1, Ordering::SeqCst);
        }
        Decision::Accept
    }
}

struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let writer = TcpStream::connect(addr).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        let mut client = Client { writer, reader };
        assert!(client.reply().starts_with("220 "));
        client
    }

    /// The last line of the next reply.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    fn send(&mut self, command: &str) {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
    }

    fn command(&mut self, command: &str) -> String {
        self.send(command);
        self.reply()
    }
}

fn more_blocking_hooks_than_workers(workers: usize, hooks: BlockingHooks) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let blocked = Arc::new(AtomicUsize::new(0));
    let handler = Slow {
        blocked: Arc::clone(&blocked),
    };
    let server = {
        let _inside = rt.enter();
        AsyncServer::builder(handler, ServerOptions::new(ServerConfig::new("mx.test")))
            .blocking_hooks(hooks)
            .listen("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap()
    };
    let addr = server.local_addrs()[0];

    // Twice as many blocking hooks as workers, all blocked at once.
    let slow_count = 2 * workers + 1;
    let mut slow: Vec<Client> = (0..slow_count).map(|_| Client::connect(addr)).collect();
    for (i, client) in slow.iter_mut().enumerate() {
        client.send(&format!("EHLO slow{i}.test"));
    }
    let waited = Instant::now();
    while blocked.load(Ordering::SeqCst) < slow_count {
        assert!(
            waited.elapsed() < SLOW,
            "the slow hooks did not all start: {} of {slow_count}",
            blocked.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // Meanwhile another client is served at once.
    let started = Instant::now();
    let mut fast = Client::connect(addr);
    assert!(fast.command("EHLO fast.test").starts_with("250 "));
    assert!(
        fast.command("MAIL FROM:<a@example.org>")
            .starts_with("250 ")
    );
    assert!(fast.command("QUIT").starts_with("221 "));
    let took = started.elapsed();
    assert!(
        blocked.load(Ordering::SeqCst) > 0,
        "the slow hooks ended before the fast client was served ({took:?})"
    );
    assert!(took < SLOW / 2, "the fast client waited {took:?}");

    for client in &mut slow {
        assert!(client.reply().starts_with("250 "));
        assert!(client.command("QUIT").starts_with("221 "));
    }
    assert_eq!(rt.block_on(server.shutdown(Duration::from_secs(5))), 0);
}

#[test]
fn blocking_hooks_on_one_worker_stall_no_other_client() {
    more_blocking_hooks_than_workers(1, BlockingHooks::BlockInPlace);
}

#[test]
fn blocking_hooks_on_two_workers_stall_no_other_client() {
    more_blocking_hooks_than_workers(2, BlockingHooks::BlockInPlace);
}

#[test]
fn blocking_hooks_on_four_workers_stall_no_other_client() {
    more_blocking_hooks_than_workers(4, BlockingHooks::BlockInPlace);
}

#[test]
fn hooks_on_a_spare_worker_on_one_worker_stall_no_other_client() {
    // No worker to spare: every hook goes through block_in_place.
    more_blocking_hooks_than_workers(1, BlockingHooks::SpareWorker);
}

#[test]
fn hooks_on_a_spare_worker_on_two_workers_stall_no_other_client() {
    more_blocking_hooks_than_workers(2, BlockingHooks::SpareWorker);
}

#[test]
fn hooks_on_a_spare_worker_on_four_workers_stall_no_other_client() {
    more_blocking_hooks_than_workers(4, BlockingHooks::SpareWorker);
}
