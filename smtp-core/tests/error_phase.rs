//! Errors that say where: a scripted server on a real loopback socket stops answering, or
//! hangs up, at each step of the conversation, and the client's error names the phase
//! and whether the message may have been delivered.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use smtp_core::blocking::SmtpClient;
use smtp_core::client::{ClientOptions, Envelope, ErrorKind, Phase, TlsMode};

/// What the scripted server does once it has read the line that starts with `at`.
#[derive(Clone, Copy)]
enum Then {
    HangUp,
    Stall,
    /// Says `421 4.3.2 shutting down` and hangs up.
    Closing,
}

/// A server that greets, answers every command with 250 (354 for DATA), without
/// PIPELINING, until it reads a line starting with `at` (`""`: before the greeting).
fn scripted(at: &'static str, then: Then) -> (std::net::SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let act = |mut stream: TcpStream| match then {
            Then::HangUp => drop(stream),
            Then::Closing => {
                let _ = stream.write_all(b"421 4.3.2 shutting down\r\n");
            }
            // Bounded: the client gives up long before.
            Then::Stall => std::thread::sleep(Duration::from_secs(1)),
        };
        if at.is_empty() {
            return act(stream);
        }
        let mut out = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        out.write_all(b"220 scripted ready\r\n").unwrap();
        let mut in_data = false;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let upper = line.to_ascii_uppercase();
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    if at == "." {
                        return act(reader.into_inner());
                    }
                    out.write_all(b"250 queued\r\n").unwrap();
                }
                continue;
            }
            if !at.is_empty() && at != "." && upper.starts_with(at) {
                return act(reader.into_inner());
            }
            if upper.starts_with("DATA") {
                in_data = true;
                out.write_all(b"354 go\r\n").unwrap();
            } else if upper.starts_with("QUIT") {
                out.write_all(b"221 bye\r\n").unwrap();
                return;
            } else {
                out.write_all(b"250 ok\r\n").unwrap();
            }
        }
    });
    (addr, handle)
}

fn options() -> ClientOptions {
    let mut o = ClientOptions::new("client.test");
    o.tls = TlsMode::None;
    let t = Duration::from_millis(400);
    o.timeouts.greeting = t;
    o.timeouts.command = t;
    o.timeouts.rcpt = t;
    o.timeouts.data_start = t;
    o.timeouts.data_block = t;
    o.timeouts.data_end = t;
    o
}

/// Runs a connection and one message against the scripted server; returns the error.
fn failure(at: &'static str, then: Then) -> smtp_core::client::Error {
    let (addr, server) = scripted(at, then);
    let result = SmtpClient::connect(addr, "localhost", options()).and_then(|mut client| {
        let envelope = Envelope::new("a@example.org", ["b@example.net"])?;
        client.send_bytes(&envelope, b"Subject: x\r\n\r\nbody\r\n")
    });
    server.join().unwrap();
    result.unwrap_err()
}

#[test]
fn each_phase_is_named() {
    let cases = [
        ("", Phase::Greeting),
        ("EHLO", Phase::Hello),
        ("MAIL", Phase::Mail),
        ("RCPT", Phase::Rcpt),
        ("DATA", Phase::Data),
        (".", Phase::AfterData),
    ];
    for (at, phase) in cases {
        for then in [Then::HangUp, Then::Stall, Then::Closing] {
            let e = failure(at, then);
            let expected_kind = match then {
                Then::HangUp => ErrorKind::ConnectionClosed,
                Then::Stall => ErrorKind::Timeout,
                // The phase is the one of the command the 421 answered, not the next.
                Then::Closing => ErrorKind::ServerClosed,
            };
            assert_eq!(e.kind(), expected_kind, "{at:?}: {e}");
            assert_eq!(e.phase(), Some(phase), "{at:?}: {e}");
            assert_eq!(
                e.delivery_unknown(),
                phase == Phase::AfterData,
                "{at:?}: {e}"
            );
            assert!(e.to_string().contains(phase.as_str()), "{e}");
        }
    }
}

#[test]
fn a_refusal_has_no_phase() {
    // A bad address is refused before anything is sent: the connection is fine.
    let e = Envelope::new("a@example.org", ["not an address"]).unwrap_err();
    assert_eq!(e.address(), "not an address");
    let client_error = smtp_core::client::Error::from(e);
    assert_eq!(client_error.kind(), ErrorKind::InvalidArgument);
    assert_eq!(client_error.phase(), None);
    assert!(client_error.to_string().contains("not an address"));
}
