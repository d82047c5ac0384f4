//! The sans-IO engine in your own socket loop: a small SMTP server that drives
//! `ServerSession` over `std::net::TcpStream` itself, with the session's deadlines as the
//! socket's read timeouts. No handler traits, no driver: every event is answered here.
//!
//! ```sh
//! cargo run --example sans-io-server -- --listen 127.0.0.1:2525 --timeout 30
//! ```
//!
//! It serves one connection at a time (a real server would run this loop per connection
//! on a thread, or use `server::connection::Connection`, which adds hooks, held input,
//! STARTTLS and shutdown to the same loop). Recipients must be in `example.net`;
//! messages are printed, not stored. `--connections N` stops after N connections.
//!
//! The loop, in three steps that repeat until the session closes:
//! 1. offer the input read so far (`receive` takes what fits), then answer every event;
//! 2. write the output;
//! 3. read, but only until the session's `next_deadline`: when it passes, call
//!    `handle_timeout`, and the session says 421 and closes.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};

/// Serves one client on `stream`; returns the messages it accepted, for the caller to
/// print (or the tests to check).
pub fn serve(mut stream: TcpStream, config: ServerConfig) -> io::Result<Vec<Vec<u8>>> {
    let epoch = Instant::now();
    // The session's clock: any monotonic Duration will do.
    let now = || epoch.elapsed();
    let mut session = ServerSession::new(config, now());
    let mut pending = Vec::new(); // read but not yet taken by the session
    let mut content = Vec::new(); // the message being received
    let mut accepted = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // 1. Input to the session, events out of it.
        let taken = session.receive(&pending, now());
        pending.drain(..taken);
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Rcpt { to, .. } => {
                    let decision = if to.as_str().ends_with("@example.net") {
                        Decision::Accept
                    } else {
                        Decision::reject(550, "5.7.1", "relaying denied")
                    };
                    session.decide(decision).expect("a decision is pending");
                }
                ServerEvent::MessageData(chunk) => content.extend_from_slice(chunk),
                ServerEvent::MessageEnd => {
                    accepted.push(std::mem::take(&mut content));
                    session
                        .decide(Decision::queued(accepted.len()))
                        .expect("a decision is pending");
                }
                ServerEvent::MessageAborted(_) | ServerEvent::Reset => content.clear(),
                event if event.needs_decision() => {
                    session
                        .decide(Decision::Accept)
                        .expect("a decision is pending");
                }
                // STARTTLS is not offered (ServerConfig::starttls is false); Close shows
                // in is_closed() below.
                _ => {}
            }
        }
        // 2. Output to the socket.
        if !session.output().is_empty() {
            stream.write_all(session.output())?;
            session.clear_output();
        }
        if session.is_closed() {
            return Ok(accepted);
        }
        if !pending.is_empty() {
            continue; // the session has taken some: offer the rest before reading more
        }
        // 3. Read until the session's next deadline.
        let timeout = match session.next_deadline() {
            Some(deadline) => match deadline.checked_sub(now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => {
                    session.handle_timeout(now());
                    continue;
                }
            },
            None => None,
        };
        stream.set_read_timeout(timeout)?;
        match stream.read(&mut buf) {
            Ok(0) => session.receive_eof(), // the session then closes (its promise)
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(now());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

struct Args {
    listen: String,
    timeout: Option<u64>,
    connections: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:2525".into(),
        timeout: None,
        connections: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--timeout" => {
                args.timeout = Some(value()?.parse().map_err(|e| format!("--timeout: {e}"))?)
            }
            "--connections" => {
                args.connections = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--connections: {e}"))?,
                )
            }
            _ => {
                return Err(format!(
                    "unknown argument {flag}\nusage: sans-io-server [--listen ADDR] [--timeout SECS] [--connections N]"
                ));
            }
        }
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let listener = TcpListener::bind(&args.listen).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args.listen);
        std::process::exit(1);
    });
    println!(
        "listening on {}",
        listener.local_addr().expect("a bound address")
    );
    let _ = io::stdout().flush();
    let mut config = ServerConfig::new("mx.example");
    if let Some(secs) = args.timeout {
        config.command_timeout = Duration::from_secs(secs);
        config.data_timeout = Duration::from_secs(secs);
    }
    for (n, stream) in listener.incoming().enumerate() {
        if args.connections.is_some_and(|max| n >= max) {
            break;
        }
        let peer = stream.as_ref().ok().and_then(|s| s.peer_addr().ok());
        match stream.and_then(|s| serve(s, config.clone())) {
            Ok(messages) => {
                for m in messages {
                    println!(
                        "{peer:?}: {} bytes: {:?}",
                        m.len(),
                        String::from_utf8_lossy(&m)
                    );
                }
            }
            Err(e) => eprintln!("{peer:?}: {e}"),
        }
        if args.connections.is_some_and(|max| n + 1 >= max) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_core::blocking::SmtpClient;
    use smtp_core::client::{ClientOptions, Envelope, TlsMode};
    use smtp_core::reply::ReplyCode;

    fn start(
        config: ServerConfig,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            serve(stream, config).unwrap()
        });
        (addr, server)
    }

    #[test]
    fn a_client_sends_through_the_loop() {
        let (addr, server) = start(ServerConfig::new("mx.test"));
        let mut options = ClientOptions::new("client.test");
        options.tls = TlsMode::None;
        let mut client = SmtpClient::connect(addr, "localhost", options).unwrap();
        let envelope = Envelope::new("a@example.org", ["b@example.net", "c@other.test"]).unwrap();
        let body = b"Subject: loop\r\n\r\n.leading dot\r\n".repeat(2000);
        let result = client.send_bytes(&envelope, &body).unwrap();
        assert_eq!(result.queue_id(), Some("1"));
        assert_eq!(result.refused().count(), 1);
        client.quit().unwrap();
        let messages = server.join().unwrap();
        assert_eq!(messages, [body]);
    }

    #[test]
    fn a_silent_client_is_timed_out() {
        let mut config = ServerConfig::new("mx.test");
        config.command_timeout = Duration::from_millis(300);
        let (addr, server) = start(config);
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut seen = Vec::new();
        // Read until the server closes (bounded by the read timeout above).
        let _ = stream.read_to_end(&mut seen);
        let text = String::from_utf8_lossy(&seen);
        assert!(text.starts_with("220 "), "{text}");
        assert!(
            text.contains(&format!("{} ", ReplyCode::SERVICE_UNAVAILABLE.get())),
            "{text}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(server.join().unwrap().is_empty());
    }
}
