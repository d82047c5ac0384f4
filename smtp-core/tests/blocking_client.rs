//! The blocking client against scripted fake servers on 127.0.0.1.
//!
//! Each fake server is a thread that accepts one connection and plays a fixed script:
//! it sends replies, reads what the client sends, asserts it, and records every byte it
//! received. Every wait is bounded: accepts, reads and the join all time out.

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use smtp_core::auth::Credentials;
use smtp_core::blocking::client::{ClientOptions, ErrorKind, SmtpClient, TlsMode};
use smtp_core::client::{ClientTimeouts, Envelope};
use smtp_core::tls::{self, RootCerts, TlsClientOptions};

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

const HELO: &str = "client.test";

// ---------------------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------------------

enum ServerStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

/// The server's side of one connection.
struct Peer {
    stream: Option<ServerStream>,
    /// Received and not yet consumed by the script.
    pending: Vec<u8>,
    /// Every byte received, in order (plaintext after TLS).
    log: Vec<u8>,
    /// Where in `log` the encrypted part began.
    tls_from: Option<usize>,
}

impl Peer {
    fn stream(&mut self) -> &mut ServerStream {
        self.stream.as_mut().expect("stream")
    }

    fn send(&mut self, bytes: &[u8]) {
        match self.stream() {
            ServerStream::Plain(s) => s.write_all(bytes).unwrap(),
            ServerStream::Tls(s) => {
                s.write_all(bytes).unwrap();
                s.flush().unwrap();
            }
        }
    }

    /// One read; 0 at the end of the stream.
    fn fill(&mut self) -> usize {
        let mut buf = vec![0; 256 * 1024];
        let n = match self.stream() {
            ServerStream::Plain(s) => s.read(&mut buf),
            ServerStream::Tls(s) => s.read(&mut buf),
        };
        let n = match n {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("fake server read failed: {e}"),
        };
        self.pending.extend_from_slice(&buf[..n]);
        self.log.extend_from_slice(&buf[..n]);
        n
    }

    /// The next line, without its CRLF.
    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..i + 2).collect();
                return String::from_utf8(line[..i].to_vec()).unwrap();
            }
            assert!(
                self.fill() > 0,
                "connection closed while a line was expected; pending {:?}",
                String::from_utf8_lossy(&self.pending)
            );
        }
    }

    fn expect(&mut self, expected: &str) {
        assert_eq!(self.line(), expected);
    }

    /// What one read brings (or what is already pending).
    fn chunk(&mut self) -> Vec<u8> {
        if self.pending.is_empty() {
            assert!(self.fill() > 0, "connection closed while data was expected");
        }
        std::mem::take(&mut self.pending)
    }

    fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            assert!(self.fill() > 0, "connection closed while data was expected");
        }
        self.pending.drain(..n).collect()
    }

    /// DATA content up to the terminator, which is consumed and not returned.
    fn data(&mut self) -> Vec<u8> {
        let mut scanned: usize = 0;
        loop {
            let from = scanned.saturating_sub(4);
            if let Some(i) = self.pending[from..]
                .windows(5)
                .position(|w| w == b"\r\n.\r\n")
            {
                let end = from + i + 2;
                let content: Vec<u8> = self.pending.drain(..end).collect();
                self.pending.drain(..3);
                return content;
            }
            scanned = self.pending.len();
            assert!(self.fill() > 0, "connection closed inside DATA");
        }
    }

    /// Greets and answers EHLO with `capabilities` (the lines after the domain).
    fn greet(&mut self, capabilities: &[&str]) {
        self.send(b"220 fake.test ESMTP\r\n");
        self.expect(&format!("EHLO {HELO}"));
        self.ehlo_reply("fake.test", capabilities);
    }

    fn ehlo_reply(&mut self, domain: &str, capabilities: &[&str]) {
        let mut lines = vec![domain.to_owned()];
        lines.extend(capabilities.iter().map(|c| c.to_string()));
        let mut reply = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            reply.push_str(&format!("250{sep}{line}\r\n"));
        }
        self.send(reply.as_bytes());
    }

    fn quit(&mut self) {
        self.expect("QUIT");
        self.send(b"221 2.0.0 bye\r\n");
    }

    /// Reads until the client closes the connection.
    fn until_closed(&mut self) {
        while self.fill() > 0 {}
    }

    /// Does the server side of a TLS handshake.
    fn tls(&mut self, config: Arc<rustls::ServerConfig>) -> Result<(), String> {
        assert!(
            self.pending.is_empty(),
            "plaintext pending before TLS: {:?}",
            String::from_utf8_lossy(&self.pending)
        );
        let ServerStream::Plain(mut tcp) = self.stream.take().expect("stream") else {
            panic!("TLS twice");
        };
        let mut conn = rustls::ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        self.tls_from = Some(self.log.len());
        self.stream = Some(ServerStream::Tls(Box::new(rustls::StreamOwned::new(
            conn, tcp,
        ))));
        Ok(())
    }
}

/// What the fake server received.
struct Transcript {
    log: Vec<u8>,
    tls_from: Option<usize>,
}

impl Transcript {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.log).into_owned()
    }

    /// What arrived before TLS.
    fn plain(&self) -> String {
        String::from_utf8_lossy(&self.log[..self.tls_from.unwrap_or(self.log.len())]).into_owned()
    }
}

fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection came");
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-text panic)".into())
}

/// Runs `script` as a fake server for one connection and `client` against it; returns
/// the client's result and what the server received. A panic on either side fails the
/// test, and the other side's panic is printed too.
fn with_server<T>(
    script: impl FnOnce(&mut Peer) + Send + 'static,
    client: impl FnOnce(SocketAddr) -> T,
) -> (T, Transcript) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, finished) = mpsc::channel();
    let handle = thread::spawn(move || {
        let stream = accept(&listener);
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut peer = Peer {
            stream: Some(ServerStream::Plain(stream)),
            pending: Vec::new(),
            log: Vec::new(),
            tls_from: None,
        };
        script(&mut peer);
        let _ = done.send(Transcript {
            log: peer.log,
            tls_from: peer.tls_from,
        });
    });
    let outcome = catch_unwind(AssertUnwindSafe(|| client(addr)));
    let server = match finished.recv_timeout(WAIT + Duration::from_secs(5)) {
        Ok(transcript) => Ok(transcript),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => Err(payload),
            Ok(()) => Err(Box::new("fake server ended without a transcript".to_owned()) as _),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("fake server did not finish in time"),
    };
    match (outcome, server) {
        (Ok(value), Ok(transcript)) => (value, transcript),
        (Err(client_panic), server) => {
            if let Err(payload) = server {
                eprintln!("fake server panicked too: {}", panic_text(&*payload));
            }
            resume_unwind(client_panic)
        }
        (Ok(_), Err(server_panic)) => resume_unwind(server_panic),
    }
}

/// Options for these tests: plain text, short timeouts.
fn options() -> ClientOptions {
    let mut options = ClientOptions::new(HELO);
    options.tls = TlsMode::None;
    options.connect_timeout = Duration::from_secs(5);
    options.timeouts = timeouts(Duration::from_secs(5));
    options
}

fn timeouts(each: Duration) -> ClientTimeouts {
    ClientTimeouts {
        greeting: each,
        command: each,
        rcpt: each,
        data_start: each,
        data_block: each,
        data_end: each,
    }
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new("a@example.com", to).unwrap()
}

/// A self-signed certificate for `localhost` and its key, both PEM.
fn certificate() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

fn server_tls(cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
    tls::server_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap()
}

fn client_tls_trusting(cert: &str) -> Arc<rustls::ClientConfig> {
    tls::client_config(&TlsClientOptions {
        roots: RootCerts::Pem(cert.as_bytes().to_vec()),
        ..TlsClientOptions::default()
    })
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn pipelined_send_reports_each_recipient_and_the_queue_id() {
    let message = b"Subject: hi\r\n\r\nhello\r\n";
    let (result, transcript) = with_server(
        move |peer| {
            peer.greet(&["PIPELINING", "SIZE 1000000", "8BITMIME"]);
            // The whole batch in one read: one write, no Nagle.
            let batch = peer.chunk();
            assert_eq!(
                String::from_utf8(batch).unwrap(),
                format!(
                    "MAIL FROM:<a@example.com> SIZE={}\r\nRCPT TO:<b@example.com>\r\n\
                     RCPT TO:<c@example.com>\r\nDATA\r\n",
                    message.len()
                )
            );
            peer.send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n");
            assert_eq!(peer.data(), message);
            peer.send(b"250 2.0.0 Ok: queued as ABC123\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            assert!(!client.is_tls());
            assert!(client.capabilities().unwrap().pipelining);
            let result = client
                .send_bytes(&envelope(&["b@example.com", "c@example.com"]), message)
                .unwrap();
            client.quit().unwrap();
            result
        },
    );
    assert!(result.is_success());
    assert_eq!(result.queue_id(), Some("ABC123"));
    let accepted: Vec<String> = result.accepted().map(|r| r.address.to_string()).collect();
    assert_eq!(accepted, ["<b@example.com>"]);
    let refused: Vec<_> = result.refused().collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].address.to_string(), "<c@example.com>");
    assert_eq!(refused[0].reply.code().get(), 550);
    assert!(transcript.text().ends_with("QUIT\r\n"));
}

#[test]
fn bdat_when_chunking_and_pipelining_are_offered() {
    let message = b"Subject: b\n\n.leading dot\nbare LF\n";
    let (result, _) = with_server(
        |peer| {
            peer.greet(&["PIPELINING", "CHUNKING"]);
            // MAIL, RCPT, BDAT and the content: one write, one read.
            let batch = peer.chunk();
            let expected_content = b"Subject: b\r\n\r\n.leading dot\r\nbare LF\r\n";
            let head = format!(
                "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT {} LAST\r\n",
                expected_content.len()
            );
            assert_eq!(
                String::from_utf8_lossy(&batch[..head.len().min(batch.len())]),
                head
            );
            // BDAT content is not dot-stuffed, only made CRLF.
            assert_eq!(&batch[head.len()..], expected_content);
            peer.send(b"250 ok\r\n250 ok\r\n250 2.0.0 Ok: queued as BDAT1\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let result = client
                .send(&envelope(&["b@example.com"]), &message[..], None)
                .unwrap();
            client.quit().unwrap();
            result
        },
    );
    assert!(result.is_success());
    assert_eq!(result.queue_id(), Some("BDAT1"));
}

/// A message made on the fly from a repeated pattern, recording the largest read asked of
/// it: the client must stream, never slurp.
struct PatternReader {
    pattern: &'static [u8],
    left: usize,
    offset: usize,
    largest_read: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.largest_read.fetch_max(buf.len(), Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        let n = buf.len().min(self.left);
        for b in &mut buf[..n] {
            *b = self.pattern[self.offset];
            self.offset = (self.offset + 1) % self.pattern.len();
        }
        self.left -= n;
        Ok(n)
    }
}

const PATTERN: &[u8] = b".starts with a dot\r\nplain line of text\r\n..two dots\r\n.\r\n";

fn pattern_message(total: usize) -> (PatternReader, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let largest = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = PatternReader {
        pattern: PATTERN,
        left: total,
        offset: 0,
        largest_read: largest.clone(),
        reads: reads.clone(),
    };
    (reader, largest, reads)
}

#[test]
fn large_message_streams_intact_and_dot_stuffed() {
    let repeats = (1 << 20) / PATTERN.len() + 1; // a little over 1 MiB
    let total = repeats * PATTERN.len();
    let (reader, largest, reads) = pattern_message(total);
    let (result, _) = with_server(
        move |peer| {
            peer.greet(&["PIPELINING"]);
            peer.expect("MAIL FROM:<a@example.com>");
            peer.expect("RCPT TO:<b@example.com>");
            peer.expect("DATA");
            peer.send(b"250 ok\r\n250 ok\r\n354 go\r\n");
            let content = peer.data();
            let stuffed: &[u8] =
                b"..starts with a dot\r\nplain line of text\r\n...two dots\r\n..\r\n";
            assert_eq!(content.len(), repeats * stuffed.len());
            for (i, piece) in content.chunks(stuffed.len()).enumerate() {
                assert_eq!(piece, stuffed, "repeat {i}");
            }
            peer.send(b"250 2.0.0 Ok: queued as BIG\r\n");
            peer.quit();
        },
        move |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let result = client
                .send(&envelope(&["b@example.com"]), reader, None)
                .unwrap();
            client.quit().unwrap();
            result
        },
    );
    assert_eq!(result.queue_id(), Some("BIG"));
    assert!(largest.load(Ordering::Relaxed) <= 64 * 1024);
    assert!(reads.load(Ordering::Relaxed) > 16);
}

#[test]
fn large_message_goes_in_several_bdat_chunks() {
    let repeats = (1 << 20) / PATTERN.len() + 1;
    let total = repeats * PATTERN.len();
    let (reader, largest, _) = pattern_message(total);
    let (result, _) = with_server(
        move |peer| {
            peer.greet(&["PIPELINING", "CHUNKING"]);
            peer.expect("MAIL FROM:<a@example.com>");
            peer.expect("RCPT TO:<b@example.com>");
            peer.send(b"250 ok\r\n250 ok\r\n");
            let mut content = Vec::new();
            let mut chunks = 0;
            loop {
                let line = peer.line();
                let mut words = line.split(' ');
                assert_eq!(words.next(), Some("BDAT"), "{line}");
                let size: usize = words.next().unwrap().parse().unwrap();
                let last = words.next() == Some("LAST");
                content.extend(peer.exact(size));
                chunks += 1;
                if last {
                    peer.send(b"250 2.0.0 Ok: queued as CHUNKED\r\n");
                    break;
                }
                peer.send(format!("250 2.0.0 {size} octets\r\n").as_bytes());
            }
            assert!(chunks > 4, "{chunks} chunks");
            // Unstuffed: the content is exactly the message.
            assert_eq!(content.len(), total);
            for piece in content.chunks(PATTERN.len()) {
                assert_eq!(piece, PATTERN);
            }
            peer.quit();
        },
        move |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let result = client
                .send(&envelope(&["b@example.com"]), reader, Some(total as u64))
                .unwrap();
            client.quit().unwrap();
            result
        },
    );
    assert_eq!(result.queue_id(), Some("CHUNKED"));
    assert!(largest.load(Ordering::Relaxed) <= 64 * 1024);
}

#[test]
fn one_connection_carries_three_messages() {
    let (ids, transcript) = with_server(
        |peer| {
            // No PIPELINING: one command at a time.
            peer.greet(&["8BITMIME"]);
            for i in 0..3 {
                peer.expect("MAIL FROM:<a@example.com>");
                peer.send(b"250 ok\r\n");
                peer.expect("RCPT TO:<b@example.com>");
                peer.send(b"250 ok\r\n");
                peer.expect("DATA");
                peer.send(b"354 go\r\n");
                assert_eq!(
                    peer.data(),
                    format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes()
                );
                peer.send(format!("250 2.0.0 Ok: queued as Q{i}\r\n").as_bytes());
            }
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let mut ids = Vec::new();
            for i in 0..3 {
                let message = format!("Subject: {i}\r\n\r\nbody\r\n");
                let result = client
                    .send_bytes(&envelope(&["b@example.com"]), message.as_bytes())
                    .unwrap();
                ids.push(result.queue_id().unwrap().to_owned());
            }
            client.quit().unwrap();
            ids
        },
    );
    assert_eq!(ids, ["Q0", "Q1", "Q2"]);
    assert_eq!(transcript.text().matches("EHLO").count(), 1);
}

#[test]
fn simple_commands_return_the_reply() {
    let (replies, transcript) = with_server(
        |peer| {
            peer.greet(&[]);
            peer.expect("NOOP");
            peer.send(b"250 2.0.0 ok\r\n");
            peer.expect("RSET");
            peer.send(b"250 2.0.0 reset\r\n");
            peer.expect("VRFY bob");
            peer.send(b"252 2.5.2 cannot verify\r\n");
            peer.expect("EXPN list");
            peer.send(b"502 5.5.1 no\r\n");
            peer.expect("HELP MAIL");
            peer.send(b"214-2.0.0 help\r\n214 2.0.0 end\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let replies = vec![
                client.noop().unwrap(),
                client.rset().unwrap(),
                client.vrfy("bob").unwrap(),
                client.expn("list").unwrap(),
                client.help(Some("MAIL")).unwrap(),
            ];
            client.quit().unwrap();
            replies
        },
    );
    let codes: Vec<u16> = replies.iter().map(|r| r.code().get()).collect();
    assert_eq!(codes, [250, 250, 252, 502, 214]);
    assert_eq!(replies[4].lines(), ["help", "end"]);
    assert!(transcript.text().ends_with("HELP MAIL\r\nQUIT\r\n"));
}

#[test]
fn starttls_upgrades_and_greets_again() {
    let (cert, key) = certificate();
    let server_config = server_tls(&cert, &key);
    let mut opts = options();
    opts.tls = TlsMode::StartTlsRequired;
    opts.tls_config = Some(client_tls_trusting(&cert));
    let (was_tls, transcript) = with_server(
        move |peer| {
            peer.greet(&["PIPELINING", "STARTTLS"]);
            peer.expect("STARTTLS");
            peer.send(b"220 2.0.0 go ahead\r\n");
            peer.tls(server_config).unwrap();
            peer.expect(&format!("EHLO {HELO}"));
            peer.ehlo_reply("fake.tls", &["PIPELINING"]);
            peer.expect("MAIL FROM:<a@example.com>");
            peer.expect("RCPT TO:<b@example.com>");
            peer.expect("DATA");
            peer.send(b"250 ok\r\n250 ok\r\n354 go\r\n");
            assert_eq!(peer.data(), b"Subject: tls\r\n\r\nsecret\r\n");
            peer.send(b"250 2.0.0 Ok: queued as TLS1\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            assert_eq!(client.capabilities().unwrap().domain, "fake.tls");
            let tls = client.is_tls();
            client
                .send_bytes(
                    &envelope(&["b@example.com"]),
                    b"Subject: tls\r\n\r\nsecret\r\n",
                )
                .unwrap();
            client.quit().unwrap();
            tls
        },
    );
    assert!(was_tls);
    assert_eq!(transcript.plain(), format!("EHLO {HELO}\r\nSTARTTLS\r\n"));
}

#[test]
fn starttls_required_but_not_offered_sends_no_mail() {
    let mut opts = options();
    opts.tls = TlsMode::StartTlsRequired;
    opts.tls_config = Some(client_tls_trusting(&certificate().0));
    let (error, transcript) = with_server(
        |peer| {
            peer.greet(&["PIPELINING", "AUTH PLAIN"]);
            peer.until_closed();
        },
        |addr| SmtpClient::connect(addr, "localhost", opts).unwrap_err(),
    );
    assert_eq!(error.kind(), ErrorKind::StartTlsUnavailable, "{error}");
    assert!(!error.is_transient());
    assert_eq!(transcript.text(), format!("EHLO {HELO}\r\nQUIT\r\n"));
}

#[test]
fn starttls_required_but_refused_ends_the_session() {
    let mut opts = options();
    opts.tls = TlsMode::StartTlsRequired;
    opts.tls_config = Some(client_tls_trusting(&certificate().0));
    let (error, transcript) = with_server(
        |peer| {
            peer.greet(&["STARTTLS"]);
            peer.expect("STARTTLS");
            peer.send(b"454 4.7.0 TLS not available\r\n");
            peer.until_closed();
        },
        |addr| SmtpClient::connect(addr, "localhost", opts).unwrap_err(),
    );
    assert_eq!(error.kind(), ErrorKind::StartTlsRefused, "{error}");
    assert_eq!(error.reply().unwrap().code().get(), 454);
    assert!(error.is_transient());
    assert_eq!(
        transcript.text(),
        format!("EHLO {HELO}\r\nSTARTTLS\r\nQUIT\r\n")
    );
}

#[test]
fn starttls_refused_when_opportunistic_goes_on_in_clear() {
    let mut opts = options();
    opts.tls = TlsMode::StartTlsOpportunistic;
    opts.tls_config = Some(client_tls_trusting(&certificate().0));
    let (tls, _) = with_server(
        |peer| {
            peer.greet(&["STARTTLS"]);
            peer.expect("STARTTLS");
            peer.send(b"454 4.7.0 TLS not available\r\n");
            peer.expect("NOOP");
            peer.send(b"250 ok\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            client.noop().unwrap();
            let tls = client.is_tls();
            client.quit().unwrap();
            tls
        },
    );
    assert!(!tls);
}

#[test]
fn reply_injected_after_starttls_220_is_ignored() {
    let (cert, key) = certificate();
    let server_config = server_tls(&cert, &key);
    let mut opts = options();
    opts.tls = TlsMode::StartTlsRequired;
    opts.tls_config = Some(client_tls_trusting(&cert));
    let (noop, _) = with_server(
        move |peer| {
            peer.greet(&["STARTTLS"]);
            peer.expect("STARTTLS");
            // The 220 and an injected reply in the same write, as a man in the middle would.
            peer.send(b"220 2.0.0 go ahead\r\n250 injected\r\n");
            peer.tls(server_config).unwrap();
            peer.expect(&format!("EHLO {HELO}"));
            peer.ehlo_reply("fake.tls", &["PIPELINING"]);
            peer.expect("NOOP");
            peer.send(b"250 2.0.0 real\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            assert!(client.is_tls());
            assert_eq!(client.capabilities().unwrap().domain, "fake.tls");
            let noop = client.noop().unwrap();
            client.quit().unwrap();
            noop
        },
    );
    assert_eq!(noop.lines(), ["real"]);
}

#[test]
fn implicit_tls_handshakes_before_the_greeting() {
    let (cert, key) = certificate();
    let server_config = server_tls(&cert, &key);
    let mut opts = options();
    opts.tls = TlsMode::Implicit;
    opts.tls_config = Some(client_tls_trusting(&cert));
    let (tls, transcript) = with_server(
        move |peer| {
            peer.tls(server_config).unwrap();
            peer.greet(&["PIPELINING", "STARTTLS"]);
            peer.quit();
        },
        |addr| {
            let client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            let tls = client.is_tls();
            client.quit().unwrap();
            tls
        },
    );
    assert!(tls);
    assert_eq!(transcript.tls_from, Some(0));
    // Already encrypted: no STARTTLS even though it was (wrongly) offered.
    assert_eq!(transcript.text(), format!("EHLO {HELO}\r\nQUIT\r\n"));
}

#[test]
fn untrusted_certificate_fails_by_default() {
    let (cert, key) = certificate();
    let server_config = server_tls(&cert, &key);
    let mut opts = options();
    opts.tls = TlsMode::Implicit;
    opts.tls_config = None; // the default: webpki roots, full verification
    let (error, transcript) = with_server(
        move |peer| {
            assert!(peer.tls(server_config).is_err());
        },
        |addr| SmtpClient::connect(addr, "localhost", opts).unwrap_err(),
    );
    assert_eq!(error.kind(), ErrorKind::Tls, "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    assert!(transcript.plain().is_empty() || transcript.tls_from.is_none());
}

#[test]
fn dangerous_accept_invalid_certs_accepts_an_untrusted_certificate() {
    let (cert, key) = certificate();
    let server_config = server_tls(&cert, &key);
    let mut opts = options();
    opts.tls = TlsMode::Implicit;
    opts.tls_config = Some(
        tls::client_config(&TlsClientOptions {
            dangerous_accept_invalid_certs: true,
            ..TlsClientOptions::default()
        })
        .unwrap(),
    );
    let (tls, _) = with_server(
        move |peer| {
            peer.tls(server_config).unwrap();
            peer.greet(&[]);
            peer.quit();
        },
        // Not even the name matches: the certificate is for "localhost".
        |addr| {
            let client = SmtpClient::connect(addr, "mx.elsewhere.test", opts).unwrap();
            let tls = client.is_tls();
            client.quit().unwrap();
            tls
        },
    );
    assert!(tls);
}

#[test]
fn auth_plain_goes_only_over_tls_when_required() {
    let (cert, key) = certificate();
    let server_config = server_tls(&cert, &key);
    let mut opts = options();
    opts.tls = TlsMode::StartTlsRequired;
    opts.tls_config = Some(client_tls_trusting(&cert));
    opts.credentials = Some(Credentials::password("alice", "secret"));
    let shown_options = format!("{opts:?}");
    let (shown_client, transcript) = with_server(
        move |peer| {
            // AUTH offered in clear, as a misconfigured server might: it must wait for TLS.
            peer.greet(&["AUTH PLAIN LOGIN", "STARTTLS"]);
            peer.expect("STARTTLS");
            peer.send(b"220 2.0.0 go ahead\r\n");
            peer.tls(server_config).unwrap();
            peer.expect(&format!("EHLO {HELO}"));
            peer.ehlo_reply("fake.tls", &["AUTH PLAIN LOGIN"]);
            peer.expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==");
            peer.send(b"235 2.7.0 Authentication successful\r\n");
            peer.quit();
        },
        |addr| {
            let client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            let shown = format!("{client:?}");
            client.quit().unwrap();
            shown
        },
    );
    assert!(
        !transcript.plain().contains("AUTH"),
        "{}",
        transcript.plain()
    );
    assert!(transcript.text().contains("AUTH PLAIN"));
    for shown in [shown_client, shown_options] {
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
    }
}

#[test]
fn refused_configured_credentials_fail_connect() {
    let mut opts = options();
    opts.credentials = Some(Credentials::password("alice", "wrong"));
    // A fake server in clear: the refusal, not TLS, is under test.
    opts.allow_insecure_auth = true;
    let (error, transcript) = with_server(
        |peer| {
            peer.greet(&["AUTH PLAIN"]);
            assert!(peer.line().starts_with("AUTH PLAIN "));
            peer.send(b"535 5.7.8 bad credentials\r\n");
            peer.expect("QUIT");
            peer.until_closed();
        },
        |addr| SmtpClient::connect(addr, "localhost", opts).unwrap_err(),
    );
    assert_eq!(error.kind(), ErrorKind::AuthFailed, "{error}");
    assert_eq!(error.reply().unwrap().code().get(), 535);
    assert!(!error.is_transient());
    assert!(transcript.text().ends_with("QUIT\r\n"));
}

#[test]
fn failed_login_leaves_the_connection_usable() {
    let (outcome, _) = with_server(
        |peer| {
            peer.greet(&["AUTH LOGIN"]);
            peer.expect("AUTH LOGIN");
            peer.send(b"334 VXNlcm5hbWU6\r\n");
            peer.expect("Ym9i"); // bob
            peer.send(b"334 UGFzc3dvcmQ6\r\n");
            peer.expect("bm9wZQ=="); // nope
            peer.send(b"535 5.7.8 no\r\n");
            peer.expect("AUTH LOGIN");
            peer.send(b"334 VXNlcm5hbWU6\r\n");
            peer.expect("Ym9i");
            peer.send(b"334 UGFzc3dvcmQ6\r\n");
            peer.expect("eWVz"); // yes
            peer.send(b"235 2.7.0 ok\r\n");
            peer.quit();
        },
        |addr| {
            // A fake server in clear: the refusal, not TLS, is under test.
            let mut opts = options();
            opts.allow_insecure_auth = true;
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            let failed = client
                .login(Credentials::password("bob", "nope"))
                .unwrap_err();
            let ok = client.login(Credentials::password("bob", "yes")).unwrap();
            client.quit().unwrap();
            (failed, ok)
        },
    );
    let (failed, ok) = outcome;
    assert_eq!(failed.kind(), ErrorKind::AuthFailed);
    assert_eq!(ok.code().get(), 235);
}

#[test]
fn silent_server_times_out_within_the_reply_timeout() {
    let mut opts = options();
    opts.timeouts = timeouts(Duration::from_millis(300));
    let (outcome, _) = with_server(
        |peer| {
            peer.greet(&[]);
            peer.expect("NOOP");
            // Silence, until the client gives up.
            peer.until_closed();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            let start = Instant::now();
            let error = client.noop().unwrap_err();
            let elapsed = start.elapsed();
            let closed = client.is_closed();
            let after = client.noop().unwrap_err();
            (error, elapsed, closed, after)
        },
    );
    let (error, elapsed, closed, after) = outcome;
    assert!(error.is_timeout(), "{error}");
    assert!(error.is_transient());
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(closed);
    assert_eq!(after.kind(), ErrorKind::NotReady);
}

#[test]
fn silent_greeting_times_out() {
    let mut opts = options();
    opts.timeouts = timeouts(Duration::from_millis(300));
    let (error, transcript) = with_server(
        |peer| peer.until_closed(),
        |addr| SmtpClient::connect(addr, "localhost", opts).unwrap_err(),
    );
    assert!(error.is_timeout(), "{error}");
    assert!(transcript.log.is_empty());
}

#[test]
fn idle_time_does_not_count_against_the_next_command() {
    let mut opts = options();
    opts.timeouts = timeouts(Duration::from_millis(300));
    let (reply, _) = with_server(
        |peer| {
            peer.greet(&[]);
            peer.expect("NOOP");
            // A prompt but not instant reply.
            thread::sleep(Duration::from_millis(50));
            peer.send(b"250 ok\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            // Idle for longer than any timeout: the NOOP's clock starts when it is sent.
            thread::sleep(Duration::from_millis(500));
            let reply = client.noop().unwrap();
            client.quit().unwrap();
            reply
        },
    );
    assert_eq!(reply.code().get(), 250);
}

/// The driver keeps a socket read timeout that is no longer than what is left and not
/// much shorter (a `setsockopt` now and then, not one per reply). Here the final reply's wait
/// (500 ms) inherits the 300 ms timeout of the waits before it: a reply after 400 ms must
/// still be taken (the early expiry only makes the session read again), and silence must
/// end in a timeout at the 500 ms deadline, not later.
#[test]
fn a_kept_read_timeout_neither_cuts_a_wait_short_nor_lengthens_it() {
    let mut opts = options();
    opts.timeouts = timeouts(Duration::from_millis(300));
    opts.timeouts.data_end = Duration::from_millis(500);
    let (outcome, _) = with_server(
        |peer| {
            peer.greet(&["PIPELINING"]);
            for reply_after in [Some(400), None] {
                peer.expect("MAIL FROM:<a@example.com>");
                peer.expect("RCPT TO:<b@example.com>");
                peer.expect("DATA");
                peer.send(b"250 ok\r\n250 ok\r\n354 go\r\n");
                peer.data();
                match reply_after {
                    Some(ms) => {
                        thread::sleep(Duration::from_millis(ms));
                        peer.send(b"250 2.0.0 Ok: queued as SLOW\r\n");
                    }
                    None => peer.until_closed(),
                }
            }
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            let slow = client.send_bytes(&envelope(&["b@example.com"]), b"hi\r\n");
            let start = Instant::now();
            let silent = client.send_bytes(&envelope(&["b@example.com"]), b"hi\r\n");
            (slow, silent, start.elapsed())
        },
    );
    let (slow, silent, elapsed) = outcome;
    assert_eq!(slow.unwrap().queue_id(), Some("SLOW"));
    let error = silent.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
}

#[test]
fn server_421_closes_the_session() {
    let (error, _) = with_server(
        |peer| {
            peer.greet(&[]);
            peer.expect("MAIL FROM:<a@example.com>");
            peer.send(b"421 4.3.2 shutting down\r\n");
            peer.until_closed();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let error = client
                .send_bytes(&envelope(&["b@example.com"]), b"x\r\n")
                .unwrap_err();
            assert!(client.is_closed());
            error
        },
    );
    assert_eq!(error.kind(), ErrorKind::ServerClosed, "{error}");
    assert_eq!(error.reply().unwrap().code().get(), 421);
    assert!(error.is_transient());
}

#[test]
fn lmtp_reports_delivery_per_recipient() {
    let mut opts = options();
    opts.lmtp = true;
    let (result, _) = with_server(
        |peer| {
            peer.send(b"220 fake.test LMTP\r\n");
            peer.expect(&format!("LHLO {HELO}"));
            peer.ehlo_reply("fake.test", &["PIPELINING"]);
            let batch = String::from_utf8(peer.chunk()).unwrap();
            assert_eq!(
                batch,
                "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n\
                 RCPT TO:<c@example.com>\r\nDATA\r\n"
            );
            peer.send(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
            peer.data();
            peer.send(b"250 2.0.0 delivered\r\n452 4.2.2 mailbox full\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", opts).unwrap();
            let result = client
                .send_bytes(&envelope(&["b@example.com", "c@example.com"]), b"x\r\n")
                .unwrap();
            client.quit().unwrap();
            result
        },
    );
    assert!(result.is_success());
    assert!(result.recipients[0].is_accepted());
    assert!(!result.recipients[1].is_accepted());
    assert_eq!(
        result.recipients[1].delivery.as_ref().unwrap().code().get(),
        452
    );
}

/// Gives `good` bytes, then fails.
struct FailingReader {
    good: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.good);
        buf[..n].fill(b'x');
        self.good -= n;
        Ok(n)
    }
}

#[test]
fn failing_message_source_drops_the_connection_without_ending_the_message() {
    let (error, transcript) = with_server(
        |peer| {
            peer.greet(&["PIPELINING"]);
            peer.expect("MAIL FROM:<a@example.com>");
            peer.expect("RCPT TO:<b@example.com>");
            peer.expect("DATA");
            peer.send(b"250 ok\r\n250 ok\r\n354 go\r\n");
            peer.until_closed();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let error = client
                .send(
                    &envelope(&["b@example.com"]),
                    FailingReader { good: 200_000 },
                    None,
                )
                .unwrap_err();
            assert!(client.is_closed());
            error
        },
    );
    assert_eq!(error.kind(), ErrorKind::MessageSource, "{error}");
    let source = std::error::Error::source(&error).unwrap();
    assert!(source.to_string().contains("disk on fire"));
    // The message was never ended, so it cannot be delivered truncated.
    assert!(!transcript.text().contains("\r\n.\r\n"));
    assert!(!transcript.text().contains("QUIT"));
}

#[test]
fn connection_refused_is_an_io_error() {
    // A port that was free a moment ago, on loopback only.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let error = SmtpClient::connect(addr, "localhost", options()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
    assert!(error.is_transient());
    let source = std::error::Error::source(&error).unwrap();
    let io = source.downcast_ref::<io::Error>().unwrap();
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
}

/// Nothing connects to `listener` (checked without blocking).
fn assert_no_connection(listener: &TcpListener) {
    thread::sleep(Duration::from_millis(100));
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => panic!("accept failed: {e}"),
        Ok(_) => panic!("the client connected although its options were refused"),
    }
}

#[test]
fn control_characters_in_options_are_refused_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    let mut bad_helo = options();
    bad_helo.helo_name = "client.test\r\nMAIL FROM:<x@example.com>".into();
    let error = SmtpClient::connect(addr, "localhost", bad_helo).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");

    let mut bad_credentials = options();
    bad_credentials.credentials = Some(Credentials::password("alice\r\nRSET", "pw"));
    let error = SmtpClient::connect(addr, "localhost", bad_credentials).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");

    let mut bad_name = options();
    bad_name.tls = TlsMode::Implicit;
    let error = SmtpClient::connect(addr, "not a host name", bad_name).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");

    assert_no_connection(&listener);
}

#[test]
fn control_characters_in_commands_are_refused_before_anything_is_written() {
    let (errors, transcript) = with_server(
        |peer| {
            peer.greet(&["PIPELINING", "AUTH PLAIN", "DSN"]);
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            assert!(Envelope::new("a@example.com", ["b@example.com>\r\nRSET"]).is_err());
            let mut envelope = envelope(&["b@example.com"]);
            envelope.params.envid = Some("id\r\nRSET".into());
            let errors = vec![
                client.vrfy("bob\r\nRSET").unwrap_err(),
                client.expn("list\0").unwrap_err(),
                client.help(Some("\nRSET")).unwrap_err(),
                client
                    .login(Credentials::password("bob\r\n", "pw"))
                    .unwrap_err(),
                client
                    .login(Credentials::password("bob", "pw\0x"))
                    .unwrap_err(),
                client.send_bytes(&envelope, b"x\r\n").unwrap_err(),
            ];
            client.quit().unwrap();
            errors
        },
    );
    for error in &errors {
        assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
        assert!(!error.is_transient());
    }
    // After EHLO the server received only the QUIT.
    assert_eq!(transcript.text(), format!("EHLO {HELO}\r\nQUIT\r\n"));
}

#[test]
fn error_kinds_come_from_engine_errors_losslessly() {
    use smtp_core::client::ClientError;
    use smtp_core::reply::{Reply, ReplyCode};
    let reply = Reply::new(ReplyCode::AUTH_INVALID, None, "no");
    let error = smtp_core::blocking::client::Error::from(ClientError::AuthFailed(reply.clone()));
    assert_eq!(error.kind(), ErrorKind::AuthFailed);
    assert_eq!(error.reply(), Some(&reply));
    assert_eq!(error.client_error(), Some(&ClientError::AuthFailed(reply)));
    let error = smtp_core::blocking::client::Error::from(ClientError::Timeout);
    assert!(error.is_timeout() && error.is_transient());

    // Bindings move clients between threads and errors across them.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SmtpClient>();
    send_sync::<smtp_core::blocking::client::Error>();
}

#[test]
fn explicit_starttls_after_connect_upgrades_and_greets_again() {
    let (cert, key) = certificate();
    let server_config = server_tls(&cert, &key);
    let client_config = client_tls_trusting(&cert);
    let ((before, after, refused_again), transcript) = with_server(
        move |peer| {
            peer.greet(&["PIPELINING", "STARTTLS"]);
            peer.expect("STARTTLS");
            peer.send(b"220 2.0.0 go ahead\r\n");
            peer.tls(server_config).unwrap();
            peer.expect(&format!("EHLO {HELO}"));
            peer.ehlo_reply("fake.tls", &["PIPELINING", "AUTH PLAIN"]);
            peer.expect("NOOP");
            peer.send(b"250 ok\r\n");
            peer.quit();
        },
        move |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let before = client.is_tls();
            client
                .starttls("localhost", Some(client_config.clone()))
                .unwrap();
            assert_eq!(client.capabilities().unwrap().domain, "fake.tls");
            let after = client.is_tls();
            let again = client
                .starttls("localhost", Some(client_config))
                .unwrap_err();
            client.noop().unwrap();
            client.quit().unwrap();
            (before, after, again.kind())
        },
    );
    assert!(!before);
    assert!(after);
    assert_eq!(refused_again, ErrorKind::NotReady);
    assert_eq!(transcript.plain(), format!("EHLO {HELO}\r\nSTARTTLS\r\n"));
}

#[test]
fn explicit_starttls_refused_leaves_the_connection_usable() {
    let (error, _) = with_server(
        |peer| {
            peer.greet(&["STARTTLS"]);
            peer.expect("STARTTLS");
            peer.send(b"454 4.7.0 TLS not available\r\n");
            peer.expect("NOOP");
            peer.send(b"250 ok\r\n");
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let error = client
                .starttls("localhost", Some(client_tls_trusting(&certificate().0)))
                .unwrap_err();
            assert!(!client.is_tls());
            client.noop().unwrap();
            client.quit().unwrap();
            error
        },
    );
    assert_eq!(error.kind(), ErrorKind::StartTlsRefused, "{error}");
    assert_eq!(error.reply().unwrap().code().get(), 454);
}

#[test]
fn a_batch_chains_each_message_behind_the_previous_dot() {
    let (outcomes, _) = with_server(
        |peer| {
            peer.greet(&["PIPELINING", "SIZE 1000000"]);
            peer.expect("MAIL FROM:<a@example.com> SIZE=11");
            peer.expect("RCPT TO:<b@example.com>");
            peer.expect("DATA");
            peer.send(b"250 ok\r\n250 ok\r\n354 go\r\n");
            for n in 1..=3 {
                assert_eq!(peer.data(), format!("message {n}\r\n").as_bytes());
                if n < 3 {
                    // The reply to the dot is held back until the next transaction is
                    // in: a client that waited for it before its next MAIL would stall
                    // here until this read timed out.
                    peer.expect("MAIL FROM:<a@example.com> SIZE=11");
                    peer.expect("RCPT TO:<b@example.com>");
                    peer.expect("DATA");
                    let refused: &[u8] = if n == 1 {
                        b"554 5.7.1 spam\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    peer.send(&[refused, b"250 ok\r\n250 ok\r\n354 go\r\n"].concat());
                } else {
                    peer.send(b"250 2.0.0 queued as LAST\r\n");
                }
            }
            peer.quit();
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let to = envelope(&["b@example.com"]);
            let bodies: Vec<Vec<u8>> = (1..=3)
                .map(|n| format!("message {n}\r\n").into_bytes())
                .collect();
            let outcomes = client.send_batch(bodies.iter().map(|b| (&to, b.as_slice())));
            client.quit().unwrap();
            outcomes
        },
    );
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].data.as_ref().unwrap().code().get(), 554);
    assert!(!outcomes[0].is_success());
    assert!(outcomes[1].is_success() && outcomes[2].is_success());
    assert_eq!(outcomes[2].queue_id(), Some("LAST"));
}

#[test]
fn a_batch_reports_a_message_too_large_in_place_and_a_lost_connection_at_the_end() {
    let (outcomes, _) = with_server(
        |peer| {
            peer.greet(&["PIPELINING", "SIZE 20"]);
            // SIZE= declares the canonical size: "one\n" goes out as "one\r\n".
            peer.expect("MAIL FROM:<a@example.com> SIZE=5");
            peer.expect("RCPT TO:<b@example.com>");
            peer.expect("DATA");
            peer.send(b"250 ok\r\n250 ok\r\n354 go\r\n");
            assert_eq!(peer.data(), b"one\r\n");
            peer.send(b"250 ok\r\n");
            // The second message is over SIZE: the client reports it without sending it,
            // then starts the third.
            peer.expect("MAIL FROM:<a@example.com> SIZE=7");
            peer.expect("RCPT TO:<b@example.com>");
            peer.expect("DATA");
            peer.send(b"250 ok\r\n250 ok\r\n354 go\r\n");
            assert_eq!(peer.data(), b"three\r\n");
            // Then the server goes away without a reply: the third has no outcome.
        },
        |addr| {
            let mut client = SmtpClient::connect(addr, "localhost", options()).unwrap();
            let to = envelope(&["b@example.com"]);
            let big = vec![b'x'; 100];
            let messages: [&[u8]; 4] = [b"one\n", &big, b"three\n", b"four\n"];
            client.send_batch(messages.iter().map(|m| (&to, *m)))
        },
    );
    assert_eq!(
        outcomes.len(),
        3,
        "the fourth was never started: {outcomes:?}"
    );
    assert!(outcomes[0].as_ref().unwrap().is_success());
    assert_eq!(
        outcomes[1].as_ref().unwrap_err().kind(),
        ErrorKind::MessageTooLarge
    );
    assert!(outcomes[2].is_err());
}
