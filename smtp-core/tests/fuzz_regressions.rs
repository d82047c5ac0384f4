//! Regression tests for what the fuzz targets in `fuzz/` found, one per finding, each
//! with the input (or its meaning) that showed it.

use std::time::Duration;

use smtp_core::auth::AuthMechanism;
use smtp_core::server::connection::{Action, Connection};
use smtp_core::server::hooks::{Answer, Hook};
use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};

const T0: Duration = Duration::ZERO;

/// Feeds `input` to `s`, accepts every decision, and returns the replies and the users of
/// the AUTH attempts that reached the decision.
fn exchange(s: &mut ServerSession, input: &[u8]) -> (String, Vec<String>) {
    assert_eq!(s.receive(input, T0), input.len());
    let mut users = Vec::new();
    while let Some(event) = s.poll_event() {
        if let ServerEvent::Auth(attempt) = &event {
            users.push(attempt.username.clone());
        }
        if event.needs_decision() {
            s.decide(Decision::Accept).unwrap();
        }
    }
    let out = String::from_utf8(s.output().to_vec()).unwrap();
    s.clear_output();
    (out, users)
}

fn auth_session() -> ServerSession {
    let mut config = ServerConfig::new("mx.test");
    config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    config.allow_insecure_auth = true;
    let mut s = ServerSession::new(config, T0);
    assert!(exchange(&mut s, b"").0.starts_with("220 "));
    assert!(
        exchange(&mut s, b"EHLO c.test\r\n")
            .0
            .contains("AUTH PLAIN LOGIN")
    );
    s
}

/// `sasl` target: a PLAIN message with a third NUL ("admin\0bo\0\0\0b\0s3cret") was
/// accepted, the extra NULs going into the password; RFC 4616 §2 allows NUL in no field.
#[test]
fn plain_with_a_nul_in_a_field_is_refused() {
    // base64 of "admin\0bo\0\0\0b\0s3cret".
    let mut s = auth_session();
    let (out, users) = exchange(&mut s, b"AUTH PLAIN YWRtaW4AYm8AAABiAHMzY3JldA==\r\n");
    assert!(users.is_empty(), "reached the auth hook as {users:?}");
    assert!(out.starts_with("501 5.5.2"), "{out:?}");
    // The same exchange without the extra NULs is accepted: the refusal is about them.
    let (out, users) = exchange(&mut s, b"AUTH PLAIN YWRtaW4AYm8AczNjcmV0\r\n");
    assert_eq!(users, ["bo"]);
    assert!(out.starts_with("235 "), "{out:?}");
}

/// The same rule for LOGIN, whose user name and password are sent one per line.
#[test]
fn login_with_a_nul_in_the_user_or_password_is_refused() {
    let mut s = auth_session();
    // "al\0ice" as the user name.
    let (out, _) = exchange(&mut s, b"AUTH LOGIN YWwAaWNl\r\n");
    assert!(out.starts_with("501 "), "{out:?}");
    // "pw\0" as the password.
    assert!(exchange(&mut s, b"AUTH LOGIN\r\n").0.starts_with("334 "));
    assert!(exchange(&mut s, b"YWxpY2U=\r\n").0.starts_with("334 "));
    let (out, users) = exchange(&mut s, b"cHcA\r\n");
    assert!(users.is_empty(), "reached the auth hook as {users:?}");
    assert!(out.starts_with("501 "), "{out:?}");
    // And without the NUL it goes through.
    assert!(
        exchange(&mut s, b"AUTH LOGIN YWxpY2U=\r\n")
            .0
            .starts_with("334 ")
    );
    let (out, users) = exchange(&mut s, b"cHc=\r\n");
    assert_eq!(users, ["alice"]);
    assert!(out.starts_with("235 "), "{out:?}");
}

/// `connection` target (input `[191, 255, 5, 255, 64]`: implicit TLS, a greeting delay,
/// the client gone before the greeting): the end of the input was ignored during the
/// greeting delay, so the connection asked for input again, and a driver reading the end
/// of a closed socket over and over would spin until the delay was over.
#[test]
fn the_end_of_input_during_the_greeting_delay_closes_at_once() {
    let mut config = ServerConfig::new("mx.test");
    config.greeting_delay = Some(Duration::from_secs(5));
    let mut conn = Connection::new(config, T0, false);
    assert!(matches!(conn.next_action(T0), Action::Connect));
    conn.connected(None);
    assert!(matches!(conn.next_action(T0), Action::Read { .. }));
    conn.receive_eof();
    let mut hooks = Vec::new();
    loop {
        match conn.next_action(T0) {
            Action::Hook(hook) => {
                hooks.push(hook.name());
                let answer = match hook {
                    Hook::Close => Answer::Done,
                    other => panic!("{other:?}"),
                };
                conn.answer(answer);
            }
            Action::Close => break,
            other => panic!("{other:?} after the end of the input"),
        }
    }
    assert_eq!(hooks, ["close"]);

    // The session alone: closes, with nothing said.
    let mut config = ServerConfig::new("mx.test");
    config.greeting_delay = Some(Duration::from_secs(5));
    let mut s = ServerSession::new(config, T0);
    s.receive_eof();
    assert!(matches!(s.poll_event(), Some(ServerEvent::Close)));
    assert!(s.poll_event().is_none());
    assert!(s.is_closed());
    assert!(s.output().is_empty());
    assert_eq!(s.next_deadline(), None);
}

/// Feeds `input` and answers every decision with `decision()`.
fn exchange_with(s: &mut ServerSession, input: &[u8], decision: &dyn Fn() -> Decision) -> String {
    assert_eq!(s.receive(input, T0), input.len());
    while let Some(event) = s.poll_event() {
        if event.needs_decision() {
            s.decide(decision()).unwrap();
        }
    }
    let out = String::from_utf8(s.output().to_vec()).unwrap();
    s.clear_output();
    out
}

fn reply(code: u16, text: &str) -> smtp_core::reply::Reply {
    smtp_core::reply::Reply::new(smtp_core::reply::ReplyCode::new(code).unwrap(), None, text)
}

/// Python adapter property test (a hook answering "300" to RCPT): a 3xx reply to a
/// command that completes was said as is and taken as an acceptance, so the client heard
/// "go on" (334 to AUTH, 354 to MAIL) while the session went on as if it were done.
#[test]
fn a_3xx_answer_to_a_command_that_completes_is_a_451() {
    let mut s = auth_session();
    let intermediate = || Decision::Reply(reply(334, "more please"));
    let out = exchange_with(&mut s, b"AUTH PLAIN AGFsaWNlAHB3\r\n", &intermediate);
    assert!(out.starts_with("451 4.3.0"), "{out:?}");
    let out = exchange_with(&mut s, b"MAIL FROM:<a@b.test>\r\n", &|| {
        Decision::Reply(reply(354, "go on"))
    });
    assert!(out.starts_with("451 4.3.0"), "{out:?}");
    // MAIL was not accepted: RCPT has no transaction to join.
    let out = exchange_with(&mut s, b"RCPT TO:<x@y.test>\r\n", &|| Decision::Accept);
    assert!(out.starts_with("503 "), "{out:?}");
    // AUTH was not accepted either: it may be tried again.
    let out = exchange_with(&mut s, b"AUTH PLAIN AGFsaWNlAHB3\r\n", &|| Decision::Accept);
    assert!(out.starts_with("235 "), "{out:?}");
    // DATA's own 3xx still works, with the text given.
    exchange_with(&mut s, b"MAIL FROM:<a@b.test>\r\n", &|| Decision::Accept);
    exchange_with(&mut s, b"RCPT TO:<x@y.test>\r\n", &|| Decision::Accept);
    let out = exchange_with(&mut s, b"DATA\r\n", &|| {
        Decision::Reply(reply(354, "send it"))
    });
    assert_eq!(out, "354 send it\r\n");
}

/// The same rule under LMTP, for each recipient's reply after the message.
#[test]
fn a_3xx_per_recipient_reply_is_a_451() {
    let mut config = ServerConfig::new("mx.test");
    config.lmtp = true;
    let mut s = ServerSession::new(config, T0);
    let accept = || Decision::Accept;
    for line in [
        &b""[..],
        b"LHLO c.test\r\n",
        b"MAIL FROM:<a@b.test>\r\n",
        b"RCPT TO:<x@y.test>\r\n",
        b"RCPT TO:<z@y.test>\r\n",
        b"DATA\r\n",
    ] {
        exchange_with(&mut s, line, &accept);
    }
    let out = exchange_with(&mut s, b"hi\r\n.\r\n", &|| {
        Decision::PerRecipient(vec![reply(250, "ok"), reply(354, "more")])
    });
    assert!(
        out.starts_with("250 ok\r\n451 4.3.0") && out.matches("\r\n").count() == 2,
        "{out:?}"
    );
}
