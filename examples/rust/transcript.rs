//! Plays a whole SMTP conversation between smtpx's client and server sessions in memory and
//! prints the transcript: the engine on its own, no sockets involved.
//!
//! Run with `cargo run --release -p smtp-core --example transcript`.

use std::time::Duration;

use smtp_core::client::{ClientConfig, ClientEvent, ClientSession, Envelope};
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};

fn print_wire(prefix: &str, bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).split_inclusive("\r\n") {
        println!("{prefix} {}", line.trim_end_matches("\r\n"));
    }
}

fn main() {
    let now = Duration::ZERO;
    let mut server = ServerSession::new(ServerConfig::new("mx.example.net"), now);
    let mut client =
        ClientSession::new(ClientConfig::new("client.example.org"), now).expect("valid config");
    let envelope = Envelope::new(
        "alice@example.org",
        ["bob@example.net", "nobody@example.net", "carol@example.net"],
    )
    .expect("valid addresses");
    let body = b"From: alice@example.org\nTo: bob@example.net\nSubject: Hello from smtpx\n\nHi Bob,\n.this line starts with a dot\n";
    let mut stored = Vec::new();
    let mut message = Vec::new();
    let mut sent = false;
    let mut done = false;

    for _ in 0..100 {
        while let Some(event) = server.poll_event() {
            let decision = match event {
                ServerEvent::Rcpt { to, .. } if to.as_str().starts_with("nobody") => {
                    Some(Decision::Reply(Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::new(5, 1, 1)),
                        "Error: no such user",
                    )))
                }
                ServerEvent::MessageData(chunk) => {
                    message.extend_from_slice(chunk);
                    None
                }
                ServerEvent::MessageEnd => {
                    stored.push(std::mem::take(&mut message));
                    Some(Decision::Reply(Reply::new(
                        ReplyCode::OK,
                        Some(EnhancedCode::new(2, 0, 0)),
                        format!("Ok: queued as MEM{}", stored.len()),
                    )))
                }
                e if e.needs_decision() => Some(Decision::Accept),
                _ => None,
            };
            if let Some(d) = decision {
                server.decide(d).expect("a decision was pending");
            }
        }
        let from_server = server.take_output();
        if !from_server.is_empty() {
            print_wire("S:", &from_server);
            client.receive(&from_server, now);
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Ready if !sent => {
                    client
                        .send_mail(&envelope, Some(smtp_core::data::wire_size(body)))
                        .expect("ready to send");
                    sent = true;
                }
                ClientEvent::SendBody => {
                    client.send_body(body).expect("body expected");
                    client.finish_body().expect("body expected");
                }
                ClientEvent::TransactionComplete(result) => {
                    println!(
                        "-- result: {} accepted, {} refused, queue id {:?}",
                        result.accepted().count(),
                        result.refused().count(),
                        result.queue_id()
                    );
                    for r in &result.recipients {
                        println!("--   <{}>: {}", r.address.as_str(), r.reply);
                    }
                    client.quit().expect("ready to quit");
                }
                ClientEvent::Closed => done = true,
                ClientEvent::Error(e) => panic!("client error: {e}"),
                _ => {}
            }
        }
        let from_client = client.take_output();
        if !from_client.is_empty() {
            print_wire("C:", &from_client);
            // The server takes at most its input buffer; a conversation this small fits.
            let taken = server.receive(&from_client, now);
            assert_eq!(taken, from_client.len(), "the server took all of the input");
        }
        if done && server.is_closed() {
            break;
        }
    }
    assert!(done, "the conversation ended");
    println!(
        "-- the server stored {} message(s); the first reads:",
        stored.len()
    );
    print_wire("  |", &stored[0]);
}
