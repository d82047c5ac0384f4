//! A client session talking to a hostile server: arbitrary reply bytes, split anywhere,
//! while the embedder keeps starting transactions.
//!
//! Layout of the input: byte 0 picks the driving style, bytes 1..3 seed the chunk sizes, the
//! rest is what the server sends.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smtp_core::auth::Credentials;
use smtp_core::client::{ClientConfig, ClientEvent, ClientSession, Envelope, StartTlsPolicy};

struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// Lines the client writes must be whole CRLF lines: anything else would glue the next
/// command onto a half-written one. BDAT content is canonicalised, so this holds for it too.
fn check_output(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    assert!(
        out.ends_with(b"\r\n"),
        "output ends mid-line: {:?}",
        String::from_utf8_lossy(out)
    );
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in output: {out:?}"),
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF in output: {out:?}"),
            _ => {}
        }
    }
}

// A body with a dot line, a bare LF and no final line ending: all things the session must
// fix before they reach the wire.
const BODY: &[u8] = b"Subject: fuzz\r\n\r\n.leading dot\nbare lf\r\n.\r\nlast line";

fn drive(client: &mut ClientSession, envelope: &Envelope, now: Duration, closed: &mut bool) {
    // The client must never ask for the same thing twice without a reply in between; a
    // bounded loop turns a livelock into a failure.
    for _ in 0..64 {
        let mut acted = false;
        while let Some(event) = client.poll_event() {
            acted = true;
            assert!(!*closed, "event after Closed: {event:?}");
            match event {
                ClientEvent::StartTls => client.tls_established(now),
                ClientEvent::SendBody => {
                    // Events are queued: one read can hold the 354 and then a broken reply,
                    // so a SendBody may be stale, but only because the session has died.
                    let sent = client.send_body(BODY).and_then(|()| client.finish_body());
                    assert!(sent.is_ok() || client.is_closed(), "body refused: {sent:?}");
                }
                ClientEvent::Closed => *closed = true,
                ClientEvent::Error(e) => {
                    let _ = e.to_string();
                }
                ClientEvent::TransactionComplete(result) => {
                    assert_eq!(result.recipients.len(), envelope.recipients.len());
                    let _ = (result.is_success(), result.queue_id());
                }
                ClientEvent::Ready | ClientEvent::Authenticated(_) | ClientEvent::Reply(_) => {}
            }
        }
        if client.is_ready()
            && client
                .send_mail(envelope, Some(BODY.len() as u64 + 16))
                .is_ok()
        {
            acted = true;
        }
        assert_eq!(
            client.is_closed(),
            *closed,
            "is_closed disagrees with the Closed event"
        );
        if !acted {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [style, s0, s1, s2, input @ ..] = data else {
        return;
    };
    let mut rng = Rng(u32::from_le_bytes([*s0, *s1, *s2, 0xa5]) | 1);
    let max_chunk = match style & 0x06 {
        0 => 1,
        2 => 5,
        4 => 40,
        _ => 4096,
    };
    let mut config = ClientConfig::new("client.example");
    config.credentials = Some(Credentials::password("user@example.com", "correct horse"));
    config.starttls = StartTlsPolicy::Opportunistic;
    config.pipelining = style & 0x08 == 0;
    config.chunking = style & 0x10 == 0;
    config.lmtp = style & 0x20 != 0;
    let mut client = ClientSession::new(config, Duration::ZERO).unwrap();
    let recipients: &[&str] = if style & 0x40 != 0 {
        &["b@example.org", "c@example.net"]
    } else {
        &["b@example.org"]
    };
    let envelope = Envelope::new("a@example.com", recipients).unwrap();
    let mut closed = false;
    let now = Duration::ZERO;

    let mut rest = input;
    while !rest.is_empty() {
        let len = (1 + rng.below(max_chunk)) as usize;
        let chunk = &rest[..len.min(rest.len())];
        rest = &rest[chunk.len()..];
        client.receive(chunk, now);
        drive(&mut client, &envelope, now, &mut closed);
        check_output(client.output());
        client.clear_output();
    }
    client.receive_eof();
    drive(&mut client, &envelope, now, &mut closed);
    check_output(client.output());
    assert!(client.is_closed(), "still open after EOF");
    assert!(closed, "no Closed event after EOF");
});
