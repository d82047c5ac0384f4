//! The adversarial suite over real sockets: the published attacks on SMTP servers, sent as
//! raw bytes to the blocking server with a real Maildir behind it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtp_core::auth::AuthMechanism;
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::handler::PasswordAuth;
use smtp_core::maildir::MaildirHandler;
use smtp_core::server::ServerConfig;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("smtpx-adv-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn maildir(&self) -> PathBuf {
        self.0.join("md")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn start(dir: &TempDir, tweak: impl FnOnce(&mut ServerConfig, &mut ServerOptions)) -> Server {
    let mut options = ServerOptions::new(ServerConfig::new("mx.test"));
    let mut config = options.session.clone();
    tweak(&mut config, &mut options);
    options.session = config;
    let handler = PasswordAuth::new(
        MaildirHandler::new(dir.maildir(), "mx.test").unwrap(),
        [("alice", "s3cret")],
    );
    Server::builder(handler, options)
        .listen("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap()
}

/// Sends `input` in one write and reads everything until the server closes or goes quiet;
/// returns the reply lines.
fn exchange(addr: SocketAddr, input: &[u8], quiet: Duration) -> Vec<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(quiet)).unwrap();
    stream.write_all(input).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A client that keeps to pipelining synchronisation (RFC 2920 §3.1): it sends a group of
/// commands in one write, then waits for the replies the group ends with before the next.
struct Peer {
    stream: TcpStream,
    /// Bytes of a reply line not yet complete.
    partial: Vec<u8>,
    lines: Vec<String>,
    /// How many final reply lines have come.
    finals: usize,
    closed: bool,
}

impl Peer {
    /// Connects and waits for the greeting.
    fn connect(addr: SocketAddr, quiet: Duration) -> Peer {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream.set_read_timeout(Some(quiet)).unwrap();
        let mut peer = Peer {
            stream,
            partial: Vec::new(),
            lines: Vec::new(),
            finals: 0,
            closed: false,
        };
        peer.replies(1);
        peer
    }

    /// Sends `group` in one write, then waits for `replies` more final reply lines (or the
    /// server closing, or going quiet).
    fn group(&mut self, group: &[u8], replies: usize) {
        if self.closed {
            return;
        }
        if self.stream.write_all(group).is_err() {
            self.closed = true;
            return;
        }
        self.replies(replies);
    }

    /// Reads until `n` more final reply lines have come, the server closes or goes quiet,
    /// or 20 seconds pass.
    fn replies(&mut self, n: usize) {
        let want = self.finals + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 8192];
        while self.finals < want && !self.closed && Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => self.closed = true,
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = self.partial.windows(2).position(|w| w == b"\r\n") {
                        let line: Vec<u8> = self.partial.drain(..end + 2).collect();
                        let line = String::from_utf8_lossy(&line[..end]).into_owned();
                        if line.as_bytes().get(3) != Some(&b'-') {
                            self.finals += 1;
                        }
                        if !line.is_empty() {
                            self.lines.push(line);
                        }
                    }
                }
            }
        }
    }

    /// Sends the last group and reads until the server closes or goes quiet; returns every
    /// reply line of the session.
    fn finish(mut self, last: &[u8]) -> Vec<String> {
        self.group(last, usize::MAX - self.finals);
        self.lines
    }
}

/// The final lines of each reply, as "code" or "code x.y.z".
fn finals(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .map(|l| {
            let mut w = l.split(' ');
            let code = w.next().unwrap_or_default().to_owned();
            match w.next() {
                Some(e) if e.len() >= 5 && e.as_bytes()[1] == b'.' => format!("{code} {e}"),
                _ => code,
            }
        })
        .collect()
}

const EHLO: &[u8] = b"EHLO attacker.test\r\n";
/// The envelope group, pipelined as RFC 2920 allows: three replies, the last a 354.
const ENVELOPE: &[u8] = b"MAIL FROM:<user@attacker.test>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\n";

/// Greeting, EHLO and the envelope group up to DATA's 354, each waited for, then `content`
/// (the message, its end and what follows) in one write; returns every reply line.
fn transaction(addr: SocketAddr, content: &[u8], quiet: Duration) -> Vec<String> {
    let mut peer = Peer::connect(addr, quiet);
    peer.group(EHLO, 1);
    peer.group(ENVELOPE, 3);
    peer.finish(content)
}

/// Every end-of-data look-alike of SEC Consult's research and of the SMTP-Smuggling-Tools
/// and smtpsmug checkers. None may end the message, and the smuggled commands after them
/// must stay content.
const LOOKALIKES: &[(&str, &[u8])] = &[
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CR.CR", b"\r.\r"),
    ("CR.LF", b"\r.\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CR.CRLF", b"\r.\r\n"),
    ("LF.CR", b"\n.\r"),
    ("CRLF.NULCRLF", b"\r\n.\0\r\n"),
    ("CRLFNUL.CRLF", b"\r\n\0.\r\n"),
    ("CRLF.SPCRLF", b"\r\n. \r\n"),
    ("CRLF.TABCRLF", b"\r\n.\t\r\n"),
];

#[test]
fn smuggling_lookalikes_store_one_message_with_one_reply() {
    let dir = TempDir::new("smuggle");
    let server = start(&dir, |_, _| {});
    let addr = server.local_addrs()[0];
    let mut expected_files = 0;
    for (name, fake_end) in LOOKALIKES {
        // At the start of the content, after a short line, and with the look-alike straddling
        // the server's 16 KiB read buffer and a 1000-octet line.
        let subject = b"Subject: innocent\r\n\r\n";
        for pad in [0usize, 5, 998, 16 * 1024 - subject.len() - 1] {
            let mut input = subject.to_vec();
            input.extend(std::iter::repeat_n(b'a', pad));
            input.extend_from_slice(fake_end);
            input.extend_from_slice(b"MAIL FROM:<ceo@mx.test>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire money\r\n");
            input.extend_from_slice(b".\r\nQUIT\r\n");
            let replies = finals(&transaction(addr, &input, Duration::from_secs(5)));
            assert_eq!(
                replies,
                [
                    "220",
                    "250",
                    "250 2.1.0",
                    "250 2.1.5",
                    "354",
                    "250 2.0.0",
                    "221 2.0.0"
                ],
                "{name} pad {pad}"
            );
            expected_files += 1;
            let stored = files(&dir.maildir().join("new"));
            assert_eq!(
                stored.len(),
                expected_files,
                "{name} pad {pad}: exactly one message per session"
            );
            // Every stored message carries its smuggled text inside it, as content.
            let with_smuggled = stored
                .iter()
                .filter(|f| f.windows(17).any(|w| w == b"Subject: smuggled"))
                .count();
            assert_eq!(with_smuggled, expected_files, "{name} pad {pad}");
        }
    }
    for f in files(&dir.maildir().join("new")) {
        let bare_lf = f
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || f[i - 1] != b'\r'));
        assert!(!bare_lf, "a stored message has a bare LF");
    }
    assert_eq!(count(&dir.maildir().join("tmp")), 0);
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn smuggling_with_bare_lf_rejected_stores_nothing() {
    let dir = TempDir::new("smuggle-reject");
    let server = start(&dir, |c, _| {
        c.bare_line_policy = smtp_core::BareLinePolicy::Reject
    });
    let addr = server.local_addrs()[0];
    for (name, fake_end) in LOOKALIKES {
        let mut input = b"Subject: innocent\r\n\r\nx".to_vec();
        input.extend_from_slice(fake_end);
        input.extend_from_slice(b"MAIL FROM:<ceo@mx.test>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n");
        let replies = finals(&transaction(addr, &input, Duration::from_secs(5)));
        let has_bare = fake_end.iter().enumerate().any(|(i, &b)| {
            (b == b'\n' && (i == 0 || fake_end[i - 1] != b'\r'))
                || (b == b'\r' && fake_end.get(i + 1) != Some(&b'\n'))
        });
        let verdict = if has_bare { "550 5.5.2" } else { "250 2.0.0" };
        assert_eq!(
            replies,
            [
                "220",
                "250",
                "250 2.1.0",
                "250 2.1.5",
                "354",
                verdict,
                "221 2.0.0"
            ],
            "{name}"
        );
    }
    assert_eq!(count(&dir.maildir().join("tmp")), 0);
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn overlong_lines_and_framing_never_execute() {
    let dir = TempDir::new("framing");
    let server = start(&dir, |c, _| c.max_line_len = 512);
    let addr = server.local_addrs()[0];
    // An overlong line whose tail is a command.
    let mut input: Vec<u8> = std::iter::repeat_n(b'A', 600).collect();
    input.extend_from_slice(b"MAIL FROM:<tail@x.test>\r\n");
    // Lone LF and lone CR inside a command line.
    input.extend_from_slice(b"NOOP\nMAIL FROM:<lf@x.test>\r\n");
    input.extend_from_slice(b"NOOP\rMAIL FROM:<cr@x.test>\r\n");
    // NUL, 8-bit and invalid UTF-8.
    input.extend_from_slice(b"MAIL FROM:<a\0b@x.test>\r\n");
    input.extend_from_slice(b"\xff\xfe\xfd\r\n");
    input.extend_from_slice(b"RSET\r\nQUIT\r\n");
    let mut peer = Peer::connect(addr, Duration::from_secs(5));
    peer.group(b"EHLO x\r\n", 1);
    let replies = finals(&peer.finish(&input));
    assert_eq!(
        replies,
        [
            "220",
            "250",
            "500 5.5.6",
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn bdat_abuse() {
    let dir = TempDir::new("bdat");
    let server = start(&dir, |_, _| {});
    let addr = server.local_addrs()[0];
    // BDAT with no transaction: its octets (which look like commands) are read and dropped.
    let mut peer = Peer::connect(addr, Duration::from_secs(5));
    peer.group(b"EHLO x\r\n", 1);
    peer.group(b"BDAT 25\r\nMAIL FROM:<evil@x.test>\r\n", 1);
    peer.group(b"NOOP\r\n", 1);
    let replies = finals(&peer.finish(b"QUIT\r\n"));
    assert_eq!(
        replies,
        ["220", "250", "503 5.5.1", "250 2.0.0", "221 2.0.0"]
    );
    // A size smaller than what follows: the rest is read as commands (and refused).
    let mut input = ENVELOPE.to_vec();
    input.truncate(ENVELOPE.len() - b"DATA\r\n".len());
    input.extend_from_slice(b"BDAT 5 LAST\r\nhello world\r\nQUIT\r\n");
    let mut peer = Peer::connect(addr, Duration::from_secs(5));
    peer.group(EHLO, 1);
    let replies = finals(&peer.finish(&input));
    assert_eq!(
        replies,
        [
            "220",
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "500 5.5.1",
            "221 2.0.0"
        ]
    );
    assert!(files(&dir.maildir().join("new"))[0].ends_with(b"\r\nhello"));
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn early_talker_with_greeting_delay() {
    let dir = TempDir::new("early");
    let server = start(&dir, |c, _| {
        c.greeting_delay = Some(Duration::from_millis(500))
    });
    let addr = server.local_addrs()[0];
    let replies = finals(&exchange(
        addr,
        b"EHLO eager\r\nMAIL FROM:<a@x.test>\r\n",
        Duration::from_secs(3),
    ));
    assert_eq!(replies, ["554 5.5.1"]);
    // A client that waits is served.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220 "));
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn limits_recipients_size_errors_and_auth() {
    let dir = TempDir::new("limits");
    let server = start(&dir, |c, _| {
        c.max_recipients = 2;
        c.max_message_size = 100;
        c.max_errors = 5;
        c.auth_mechanisms = vec![AuthMechanism::Plain];
        c.max_auth_failures = 3;
    });
    let addr = server.local_addrs()[0];
    let mut peer = Peer::connect(addr, Duration::from_secs(5));
    peer.group(b"EHLO x\r\n", 1);
    peer.group(
        b"MAIL FROM:<a@x.test> SIZE=1000\r\nMAIL FROM:<a@x.test>\r\n\
          RCPT TO:<1@mx.test>\r\nRCPT TO:<2@mx.test>\r\nRCPT TO:<3@mx.test>\r\nDATA\r\n",
        6,
    );
    let mut input: Vec<u8> = std::iter::repeat_n(b'x', 300).collect();
    input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
    let replies = finals(&peer.finish(&input));
    assert_eq!(
        replies,
        [
            "220",
            "250",
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354",
            "552 5.3.4",
            "221 2.0.0"
        ]
    );
    // AUTH is not offered, and refused, in clear.
    let mut peer = Peer::connect(addr, Duration::from_secs(5));
    peer.group(b"EHLO x\r\n", 1);
    peer.group(b"AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n", 1);
    let lines = peer.finish(b"QUIT\r\n");
    assert!(!lines.iter().any(|l| l.contains("AUTH")), "{lines:?}");
    assert_eq!(finals(&lines), ["220", "250", "538 5.7.11", "221 2.0.0"]);
    // The error limit.
    // Unknown commands are answered as errors (they are not commands to keep in step).
    let replies = finals(
        &Peer::connect(addr, Duration::from_secs(5)).finish(b"A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n"),
    );
    assert_eq!(
        replies,
        [
            "220",
            "500 5.5.1",
            "500 5.5.1",
            "500 5.5.1",
            "500 5.5.1",
            "500 5.5.1",
            "421 4.7.0"
        ]
    );
    server.shutdown(Duration::from_secs(5));

    // AUTH brute force, where AUTH is allowed in clear.
    let dir = TempDir::new("brute");
    let server = start(&dir, |c, _| {
        c.auth_mechanisms = vec![AuthMechanism::Plain];
        c.allow_insecure_auth = true;
        c.max_auth_failures = 3;
    });
    // AUTH PLAIN with its initial response may be pipelined (RFC 4954 §4).
    let guess = b"AUTH PLAIN AGFsaWNlAGd1ZXNz\r\n";
    let mut peer = Peer::connect(server.local_addrs()[0], Duration::from_secs(5));
    peer.group(b"EHLO x\r\n", 1);
    let replies = finals(&peer.finish(&guess.repeat(5)));
    assert_eq!(
        replies,
        [
            "220",
            "250",
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "421 4.7.0"
        ]
    );
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn idle_connection_is_closed_with_421() {
    let dir = TempDir::new("idle");
    let server = start(&dir, |c, _| c.command_timeout = Duration::from_millis(300));
    let started = Instant::now();
    let replies = finals(
        &Peer::connect(server.local_addrs()[0], Duration::from_secs(3)).finish(b"EHLO x\r\n"),
    );
    assert_eq!(replies, ["220", "250", "421 4.4.2"]);
    assert!(started.elapsed() < Duration::from_secs(2));
    server.shutdown(Duration::from_secs(5));
}

/// A client that disconnects at every point of a transaction leaves nothing half-stored,
/// and every message acknowledged with 250 is on disk.
#[test]
fn disconnects_at_every_step_leave_nothing_half_stored() {
    let dir = TempDir::new("cuts");
    let server = start(&dir, |_, _| {});
    let addr = server.local_addrs()[0];
    let mut content = b"Subject: cut\r\n\r\n".to_vec();
    content.extend(std::iter::repeat_n(b'z', 3000));
    content.extend_from_slice(b"\r\n.\r\n");
    // The groups of the transaction and the replies each ends with.
    let groups: [(&[u8], usize); 3] = [(EHLO, 1), (ENVELOPE, 3), (&content, 1)];
    let total: usize = groups.iter().map(|(g, _)| g.len()).sum();
    let prefix = EHLO.len() + ENVELOPE.len();
    let mut acknowledged = 0;
    let mut cut = 1;
    while cut <= total {
        let mut peer = Peer::connect(addr, Duration::from_secs(5));
        let mut left = cut;
        for (group, replies) in groups {
            if left >= group.len() {
                peer.group(group, replies);
                left -= group.len();
            } else {
                // Read what the server says to the part it got (until it goes quiet), then
                // hang up.
                peer.stream
                    .set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                if left > 0 {
                    peer.group(&group[..left], usize::MAX - peer.finals);
                }
                break;
            }
        }
        let seen = peer.lines;
        if seen.iter().any(|l| l.starts_with("250 2.0.0 Ok: queued")) {
            acknowledged += 1;
        }
        cut += if cut < prefix + 40 { 7 } else { 397 };
        if cut > total && cut - 397 < total {
            cut = total;
        }
    }
    // Let the last connection threads finish their clean-up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&dir.maildir().join("tmp")) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        count(&dir.maildir().join("tmp")),
        0,
        "a partial message was left in tmp/"
    );
    assert_eq!(
        acknowledged, 1,
        "only the complete transaction was acknowledged"
    );
    assert_eq!(
        count(&dir.maildir().join("new")),
        acknowledged,
        "every acknowledged message is on disk"
    );
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn connection_flood_gets_421_then_service_resumes() {
    let dir = TempDir::new("flood");
    let server = start(&dir, |_, o| o.max_connections = 50);
    let addr = server.local_addrs()[0];
    let mut streams = Vec::new();
    let mut refused = 0;
    let mut greeted = 0;
    for _ in 0..120 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 128];
        let n = s.read(&mut buf).unwrap_or(0);
        if buf[..n].starts_with(b"421 ") {
            refused += 1;
        } else if buf[..n].starts_with(b"220 ") {
            greeted += 1;
        }
        streams.push(s);
    }
    assert_eq!(greeted, 50);
    assert_eq!(refused, 70);
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.active_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let replies = finals(&transaction(
        addr,
        b"after the flood\r\n.\r\nQUIT\r\n",
        Duration::from_secs(5),
    ));
    assert_eq!(
        replies,
        [
            "220",
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    server.shutdown(Duration::from_secs(5));
}

/// Commands riding in the same packet as STARTTLS (CVE-2011-0411 and kin) are a
/// pipelining synchronisation error: 554, closed, no handshake.
#[test]
fn starttls_injection_is_a_sync_error() {
    let dir = TempDir::new("starttls-sync");
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let tls = smtp_core::tls::server_config_from_pem(
        key.cert.pem().as_bytes(),
        key.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = start(&dir, |_, o| o.tls = Some(tls));
    let mut peer = Peer::connect(server.local_addrs()[0], Duration::from_secs(5));
    peer.group(b"EHLO x\r\n", 1);
    let lines = peer.finish(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@mx.test>\r\n");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("554 5.5.0 Error: SMTP protocol synchronization"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("220 2.0.0")),
        "{lines:?}"
    );
    server.shutdown(Duration::from_secs(5));
}

/// With the sync check off, what rode in with STARTTLS is still thrown away at the
/// handshake, over real TLS.
#[test]
fn starttls_injection_is_discarded_over_real_tls() {
    let dir = TempDir::new("starttls");
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let tls = smtp_core::tls::server_config_from_pem(
        key.cert.pem().as_bytes(),
        key.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = start(&dir, |c, o| {
        c.pipelining_sync = false;
        o.tls = Some(tls)
    });
    let addr = server.local_addrs()[0];
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let _ = tcp.read(&mut buf).unwrap();
    tcp.write_all(b"EHLO x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _ = tcp.read(&mut buf).unwrap();
    // The attacker's commands ride in the same packet as STARTTLS.
    tcp.write_all(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@mx.test>\r\n")
        .unwrap();
    let n = tcp.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"220 2.0.0 Ready to start TLS\r\n");
    let config = smtp_core::tls::client_config(&smtp_core::tls::TlsClientOptions {
        roots: smtp_core::tls::RootCerts::Pem(key.cert.pem().into_bytes()),
        ..Default::default()
    })
    .unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), "localhost".try_into().unwrap())
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Without a new EHLO the injected MAIL would have made this RCPT valid.
    tls.write_all(b"RCPT TO:<victim@mx.test>\r\nQUIT\r\n")
        .unwrap();
    let mut text = Vec::new();
    let _ = tls.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("503 5.5.1"), "{text}");
    server.shutdown(Duration::from_secs(5));
}
