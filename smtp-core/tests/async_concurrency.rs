//! 10,000 concurrent connections on the async server, then one more client is served a
//! whole transaction.
//!
//! Every connection costs a descriptor at each end, and the hard limit on open files on the
//! reference machine is 20,000: client and server in one process would not fit. So the
//! client sockets live in a child process, this same test binary run again with
//! [`HOLDER_ENV`] set and only [`connection_holder`] selected. The two talk in lines over
//! the child's stdin and stdout; every wait is bounded and the child is killed if the
//! parent fails.
#![cfg(all(feature = "tokio", unix))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use smtp_core::asynchronous::client::AsyncSmtpClient;
use smtp_core::asynchronous::server::AsyncServer;
use smtp_core::blocking::client::ClientOptions;
use smtp_core::blocking::server::ServerOptions;
use smtp_core::client::Envelope;
use smtp_core::handler::DiscardHandler;
use smtp_core::server::ServerConfig;

/// The connections held open at once.
const CONNECTIONS: usize = 10_000;

/// Descriptors each process needs beyond the connections (runtime, pipes, the test
/// harness, the newcomer).
const SPARE_FILES: u64 = 200;

/// Set (to the server's address) in the child's environment.
const HOLDER_ENV: &str = "SMTPX_TEST_HOLD_CONNECTIONS";

/// What marks the child's messages to the parent: the test harness prints on the same
/// stdout (and its "test connection_holder ... " has no line end before the first one).
const MARK: &str = "holder:";

/// Every `SAMPLE`th held connection is checked after the newcomer and after shutdown.
const SAMPLE: usize = 997;

/// Sets the soft limit on open files to at least `needed`: to the hard limit, or, when the
/// hard limit is lower and the process may raise it (root, as in CI), to `needed` for both.
/// Returns the soft limit in force.
fn raise_open_files_limit(needed: u64) -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let target = hard.max(needed);
    if limit.current.is_some_and(|soft| soft < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum: Some(target),
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            eprintln!("cannot raise RLIMIT_NOFILE to {target}: {e}");
            let soft_only = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            let _ = setrlimit(Resource::Nofile, soft_only);
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn assert_enough_files(who: &str) {
    let needed = CONNECTIONS as u64 + SPARE_FILES;
    let soft = raise_open_files_limit(needed);
    assert!(
        soft >= needed,
        "the {who} needs {needed} open files and RLIMIT_NOFILE allows {soft}: raise the hard limit (ulimit -Hn)"
    );
}

/// Reads one reply line with the socket's read timeout (one descriptor per connection: no
/// `try_clone`, no `BufReader` that could hold the next reply).
fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("no reply line: {other:?} after {line:?}"),
        }
    }
    String::from_utf8(line).unwrap()
}

/// The child half. Not a test by itself: without [`HOLDER_ENV`] (a plain `cargo test`) it
/// returns at once; [`ten_thousand_concurrent_connections`] runs it in a child process.
#[test]
fn connection_holder() {
    let Ok(addr) = std::env::var(HOLDER_ENV) else {
        return;
    };
    hold(addr.parse().expect("a socket address"));
}

/// Opens [`CONNECTIONS`] connections to `addr`, reads every greeting, then does what the
/// parent says: `noop` (a sample answers NOOP) and `shutdown` (the sample hears 421).
/// Ends when the parent closes stdin.
fn hold(addr: SocketAddr) {
    assert_enough_files("connection holder");
    let say = |line: &str| println!("{MARK} {line}");
    let started = Instant::now();
    let mut held = Vec::with_capacity(CONNECTIONS);
    let mut slow_connects = 0;
    for _ in 0..CONNECTIONS {
        let t = Instant::now();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connected");
        if t.elapsed() > Duration::from_millis(500) {
            slow_connects += 1;
        }
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        held.push(s);
    }
    for s in &mut held {
        let greeting = read_line(s);
        assert!(greeting.starts_with("220 "), "{greeting:?}");
    }
    say(&format!(
        "greeted {CONNECTIONS} in {:?} ({slow_connects} connects took over 500 ms: SYN retransmitted)",
        started.elapsed()
    ));
    for command in std::io::stdin().lock().lines() {
        match command.expect("the parent's command").as_str() {
            "noop" => {
                for s in held.iter_mut().step_by(SAMPLE) {
                    s.write_all(b"NOOP\r\n").unwrap();
                    let reply = read_line(s);
                    assert!(reply.starts_with("250"), "{reply:?}");
                }
                say("noop ok");
            }
            "shutdown" => {
                for s in held.iter_mut().step_by(SAMPLE) {
                    let reply = read_line(s);
                    assert!(reply.starts_with("421 4.3.2"), "{reply:?}");
                }
                say("421 ok");
            }
            other => panic!("unknown command {other:?}"),
        }
    }
}

/// The child process, killed on drop unless it finished.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    fn spawn(addr: SocketAddr) -> Holder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "connection_holder",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test binary runs again");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        // Ends when the child's stdout does (the child exited or was killed).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, message)) = line.split_once(MARK)
                    && tx.send(message.trim().to_owned()).is_err()
                {
                    break;
                }
            }
        });
        Holder {
            child,
            stdin,
            lines,
        }
    }

    /// The child's next message, which must start with `what`, within `within`.
    fn expect(&self, what: &str, within: Duration) -> String {
        match self.lines.recv_timeout(within) {
            Ok(line) if line.starts_with(what) => line,
            Ok(line) => panic!("the holder said {line:?}, expected {what:?}"),
            Err(e) => panic!("the holder did not say {what:?} within {within:?} ({e})"),
        }
    }

    fn tell(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("the holder is alive");
    }

    /// Closes its stdin and waits (bounded) for it to exit successfully.
    fn finish(mut self, within: Duration) {
        drop(self.stdin.take());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the holder failed: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the holder did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn ten_thousand_concurrent_connections() {
    assert_enough_files("server");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    // Room for the newcomer beyond the held connections.
    options.max_connections = CONNECTIONS + 100;
    let server = {
        let _guard = rt.enter();
        AsyncServer::builder(DiscardHandler, options)
            .listen("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap()
    };
    let addr = server.local_addrs()[0];

    let mut holder = Holder::spawn(addr);
    let greeted = holder.expect("greeted", Duration::from_secs(180));
    eprintln!("{greeted}");
    assert_eq!(server.active_connections(), CONNECTIONS);

    // All held open; a newcomer gets a whole transaction, promptly.
    let t = Instant::now();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let client =
                AsyncSmtpClient::connect(addr, "localhost", ClientOptions::new("client.test"));
            let mut client = client.await.unwrap();
            let envelope = Envelope::new("a@example.org", ["b@example.net"]).unwrap();
            let result = client
                .send_bytes(&envelope, b"Subject: one more\r\n\r\nx\r\n")
                .await
                .unwrap();
            assert!(result.is_success());
            client.quit().await.unwrap();
        })
        .await
        .expect("the newcomer is served within 10 s")
    });
    let newcomer = t.elapsed();
    eprintln!("with {CONNECTIONS} connections held, a new client's transaction took {newcomer:?}");

    // The held ones still answer.
    holder.tell("noop");
    holder.expect("noop ok", Duration::from_secs(60));
    assert_eq!(server.active_connections(), CONNECTIONS);

    let t = Instant::now();
    let cut = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(60),
            server.shutdown(Duration::from_secs(20)),
        )
        .await
        .expect("shutdown within its grace period")
    });
    assert_eq!(cut, 0, "idle connections are closed, not cut");
    eprintln!(
        "shutdown of {CONNECTIONS} idle connections took {:?}",
        t.elapsed()
    );
    holder.tell("shutdown");
    holder.expect("421 ok", Duration::from_secs(60));
    holder.finish(Duration::from_secs(30));
}
