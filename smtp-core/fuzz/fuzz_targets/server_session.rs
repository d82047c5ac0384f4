//! A whole server session driven by hostile bytes, split at hostile places, with the
//! embedder's answers chosen by the input too.
//!
//! Layout of the input: byte 0 picks the driving style, bytes 1..3 seed the chunk sizes and
//! decisions, the rest is what the client sends.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smtp_core::ehlo::AuthMechanism;
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};

const MAX_MESSAGE_SIZE: u64 = 4096;

/// xorshift: the split points and answers must be a pure function of the input, so that a
/// crash file replays exactly.
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

fn config() -> ServerConfig {
    let mut config = ServerConfig::new("mx.example");
    config.max_line_len = 256;
    config.max_message_size = MAX_MESSAGE_SIZE;
    config.max_recipients = 3;
    config.max_errors = 50;
    config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    config.allow_insecure_auth = true;
    config.starttls = true;
    config
}

/// A refusal (or an odd acceptance) the embedder might plausibly give.
fn reply_from(rng: &mut Rng) -> Reply {
    const CODES: [u16; 12] = [250, 251, 235, 354, 421, 450, 451, 452, 535, 550, 552, 554];
    let code = ReplyCode::new(CODES[rng.below(CODES.len() as u32) as usize]).unwrap();
    let enhanced = match rng.below(3) {
        0 => None,
        _ => Some(EnhancedCode::new(
            (code.get() / 100) as u8,
            rng.below(8) as u16,
            rng.below(20) as u16,
        )),
    };
    // Text with CR/LF must never break the output's framing.
    let text = match rng.below(4) {
        0 => "",
        1 => "no\r\n250 smuggled",
        _ => "refused by policy",
    };
    Reply::new(code, enhanced, text)
}

/// Output written between two polls must be whole reply lines.
fn check_output(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    assert!(
        out.ends_with(b"\r\n"),
        "output ends mid-line: {:?}",
        String::from_utf8_lossy(out)
    );
    for line in out[..out.len() - 1].split(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("bare LF in output: {out:?}"));
        assert!(!line.contains(&b'\r'), "bare CR in output: {out:?}");
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "line without a code: {line:?}"
        );
        assert!(
            line.len() == 3 || matches!(line[3], b' ' | b'-'),
            "bad separator: {line:?}"
        );
    }
}

struct Driver {
    session: ServerSession,
    rng: Rng,
    refuse_sometimes: bool,
    now: Duration,
    message_bytes: u64,
    closed: bool,
}

impl Driver {
    /// Polls until the session wants input; returns whether anything happened.
    fn poll_round(&mut self) -> bool {
        let mut progressed = false;
        loop {
            let mut tls = false;
            let Some(event) = self.session.poll_event() else {
                break;
            };
            progressed = true;
            assert!(!self.closed, "event after Close: {event:?}");
            let decide = event.needs_decision();
            match event {
                ServerEvent::MessageStart => self.message_bytes = 0,
                ServerEvent::MessageData(data) => {
                    assert!(!data.is_empty(), "empty MessageData");
                    self.message_bytes += data.len() as u64;
                    assert!(
                        self.message_bytes <= MAX_MESSAGE_SIZE,
                        "{} bytes of content delivered",
                        self.message_bytes
                    );
                }
                ServerEvent::MessageEnd | ServerEvent::MessageAborted(_) => {}
                ServerEvent::StartTls => tls = true,
                ServerEvent::Close => self.closed = true,
                _ => {}
            }
            if decide {
                let decision = if self.refuse_sometimes && self.rng.below(3) == 0 {
                    Decision::Reply(reply_from(&mut self.rng))
                } else {
                    Decision::Accept
                };
                self.session
                    .decide(decision)
                    .expect("the event asked for a decision");
            } else {
                assert!(
                    self.session.decide(Decision::Accept).is_err(),
                    "decision pending without a decision event"
                );
            }
            if tls {
                // The 220 for STARTTLS must already be out, whole, before the handshake.
                check_output(self.session.output());
                assert!(self.session.output().ends_with(b"Ready to start TLS\r\n"));
                self.session.tls_established(self.now);
            }
        }
        check_output(self.session.output());
        progressed |= !self.session.output().is_empty();
        self.session.clear_output();
        progressed
    }
}

fuzz_target!(|data: &[u8]| {
    let [style, s0, s1, s2, input @ ..] = data else {
        return;
    };
    let mut rng = Rng(u32::from_le_bytes([*s0, *s1, *s2, 0x5a]) | 1);
    let max_chunk = match style & 0x0e {
        0 => 1,
        2 => 7,
        4 => 64,
        _ => 4096,
    };
    let mut d = Driver {
        session: ServerSession::new(config(), Duration::ZERO),
        rng: Rng(rng.next() | 1),
        refuse_sometimes: style & 1 == 1,
        now: Duration::ZERO,
        message_bytes: 0,
        closed: false,
    };
    let use_clock = style & 0x10 != 0;

    d.poll_round();
    let mut rest = input;
    while !rest.is_empty() {
        let len = (1 + rng.below(max_chunk)) as usize;
        let mut chunk = &rest[..len.min(rest.len())];
        rest = &rest[chunk.len()..];
        if use_clock {
            d.now += Duration::from_secs(u64::from(rng.below(90)));
            if d.session.next_deadline().is_some_and(|t| t <= d.now) {
                d.session.handle_timeout(d.now);
                d.poll_round();
            }
        }
        while !chunk.is_empty() {
            let taken = d.session.receive(chunk, d.now);
            assert!(
                taken <= chunk.len(),
                "took {taken} of {} bytes",
                chunk.len()
            );
            chunk = &chunk[taken..];
            let progressed = d.poll_round();
            // A session that takes nothing and does nothing would hang its driver.
            assert!(
                taken > 0 || progressed || d.closed,
                "session stalled with input pending"
            );
        }
    }

    d.session.receive_eof();
    let mut rounds = 0;
    while !d.closed {
        let progressed = d.poll_round();
        assert!(progressed || d.closed, "session did not close after EOF");
        rounds += 1;
        assert!(rounds < 1000, "session keeps going after EOF");
    }
    assert!(d.session.is_closed());
    assert!(d.session.poll_event().is_none(), "event after Close");
    assert_eq!(d.session.receive(b"NOOP\r\n", d.now), 6);
    assert!(d.session.poll_event().is_none());
    assert!(d.session.output().is_empty(), "output after Close");
});
