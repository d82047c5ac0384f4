//! The promise of `ServerSession::receive_eof`: whatever the session was doing, it then
//! reaches `ServerEvent::Close` without more input, in a bounded number of steps.

use std::time::Duration;

use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};

/// Feeds `input`, ends the input, and drives the session (accepting every decision,
/// dropping the output) until Close; returns the number of steps it took after the end
/// of input, or `None` when the input itself closed the session (QUIT, too many errors).
fn steps_to_close(config: ServerConfig, input: &[u8]) -> Option<usize> {
    let now = Duration::ZERO;
    let mut session = ServerSession::new(config, now);
    let mut rest = input;
    // Offer the input, draining events between offers, as a driver does.
    for _ in 0..10_000 {
        let taken = session.receive(rest, now);
        rest = &rest[taken..];
        let mut closed = false;
        while let Some(event) = session.poll_event() {
            if event == ServerEvent::Close {
                closed = true;
            } else if event.needs_decision() {
                session.decide(Decision::Accept).unwrap();
            }
        }
        session.clear_output();
        if closed {
            // QUIT, or too many errors: closed before the end of the input.
            assert!(session.is_closed());
            return None;
        }
        if rest.is_empty() {
            break;
        }
    }
    session.receive_eof();
    for step in 0..1000 {
        let mut closed = false;
        while let Some(event) = session.poll_event() {
            if event == ServerEvent::Close {
                closed = true;
            } else if event.needs_decision() {
                session.decide(Decision::Accept).unwrap();
            }
        }
        session.clear_output();
        if closed {
            assert!(session.is_closed());
            return Some(step);
        }
    }
    panic!(
        "no Close within 1000 steps after EOF, input {:?}",
        String::from_utf8_lossy(input)
    );
}

#[test]
fn every_prefix_of_a_conversation_closes_after_eof() {
    let conversation: &[u8] = b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n\
        DATA\r\nSubject: x\r\n\r\nbody line\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n\
        BDAT 5\r\nhelloBDAT 3 LAST\r\nabcNOOP\r\nRSET\r\nQUIT\r\n";
    let mut worst = 0;
    let mut closed_by_eof = 0;
    for cut in 0..=conversation.len() {
        let mut config = ServerConfig::new("mx.test");
        // The test writes the whole conversation at once: no pipelining checks.
        config.pipelining_sync = false;
        if let Some(steps) = steps_to_close(config, &conversation[..cut]) {
            worst = worst.max(steps);
            closed_by_eof += 1;
        }
    }
    // Every cut before QUIT's line is complete is closed by the end of input.
    assert!(closed_by_eof >= conversation.len() - 6, "{closed_by_eof}");
    assert!(worst < 10, "took {worst} steps");
}

#[test]
fn eof_before_the_greeting_delay_and_with_garbage_closes() {
    let mut config = ServerConfig::new("mx.test");
    config.greeting_delay = Some(Duration::from_secs(5));
    assert_eq!(steps_to_close(config, b""), Some(0));
    let mut config = ServerConfig::new("mx.test");
    config.pipelining_sync = false;
    steps_to_close(config, &[b'x'; 10_000]);
    steps_to_close(ServerConfig::new("mx.test"), b"\x00\xff\r\n\r\nDATA\r\n");
}
