//! The server's SASL exchange (AUTH PLAIN and LOGIN, with or without an initial
//! response) and its base64 and PLAIN decoding, through a `ServerSession`.
//!
//! Byte 0 picks the mode. In the structured modes the rest is split at 0xff bytes into the
//! fields (authzid, user, password for PLAIN; user, password for LOGIN), which the target
//! encodes itself, perhaps corrupting the encoding: a well-formed exchange (UTF-8 fields
//! without NUL, a non-empty user, valid base64) must reach the `auth` decision with
//! exactly those fields, and anything else must be refused without reaching it. In the raw
//! mode the rest is what the client sends after EHLO, in chunks, and every attempt that
//! reaches the decision must carry a non-empty user and no NUL in any field.

#![no_main]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use smtp_core::auth::AuthAttempt;
use smtp_core::ehlo::AuthMechanism;
use smtp_core::reply::{Reply, ReplyCode};
use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};

const T0: Duration = Duration::ZERO;

fn session() -> ServerSession {
    let mut config = ServerConfig::new("mx.example");
    config.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    config.allow_insecure_auth = true;
    // Long enough for any initial response the fuzzer makes: the limit is not under test.
    config.max_line_len = 64 * 1024;
    config.max_auth_failures = 1000;
    config.max_errors = 1000;
    ServerSession::new(config, T0)
}

/// Feeds `input`, answers every decision with `decide`, and returns what was written and
/// the attempts that reached the `auth` decision.
fn exchange(
    s: &mut ServerSession,
    input: &[u8],
    decide: &mut dyn FnMut(&ServerEvent<'_>) -> Decision,
) -> (String, Vec<AuthAttempt>) {
    let mut attempts = Vec::new();
    let mut rest = input;
    loop {
        let taken = s.receive(rest, T0);
        rest = &rest[taken..];
        while let Some(event) = s.poll_event() {
            if let ServerEvent::Auth(attempt) = &event {
                attempts.push(attempt.clone());
            }
            if event.needs_decision() {
                let d = decide(&event);
                s.decide(d).unwrap();
            }
        }
        if rest.is_empty() || s.is_closed() {
            break;
        }
        assert!(taken > 0, "the session took nothing");
    }
    let out = String::from_utf8(s.output().to_vec()).expect("replies are UTF-8");
    s.clear_output();
    (out, attempts)
}

fn accept_all(_: &ServerEvent<'_>) -> Decision {
    Decision::Accept
}

fn b64(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "=".to_owned() // RFC 4954 §4: an empty response
    } else {
        BASE64.encode(bytes)
    }
}

/// How the target spoils a well-formed encoding.
#[derive(Clone, Copy, PartialEq)]
enum Corruption {
    None,
    /// A character outside the base64 alphabet.
    BadChar,
    /// One character dropped: no longer a whole number of quads.
    Truncated,
    /// The client cancels with `*` instead.
    Cancel,
}

fn structured(mode: u8, data: &[u8]) {
    let login = mode & 1 != 0;
    let initial = mode & 2 != 0;
    let corruption = match mode >> 2 & 7 {
        4 => Corruption::BadChar,
        5 => Corruption::Truncated,
        6 => Corruption::Cancel,
        _ => Corruption::None,
    };
    let mut fields = data.split(|&b| b == 0xff);
    let (authzid, user, password) = if login {
        (
            &b""[..],
            fields.next().unwrap_or(b""),
            fields.next().unwrap_or(b""),
        )
    } else {
        (
            fields.next().unwrap_or(b""),
            fields.next().unwrap_or(b""),
            fields.next().unwrap_or(b""),
        )
    };
    let text = |f: &[u8]| std::str::from_utf8(f).is_ok_and(|s| !s.contains('\0'));
    let well_formed = text(authzid) && text(user) && !user.is_empty() && text(password);

    // The lines the client sends after EHLO, one group each.
    let mut lines: Vec<String> = Vec::new();
    let spoil = |mut line: String, at: usize| -> String {
        match corruption {
            Corruption::None => line,
            Corruption::Cancel => "*".to_owned(),
            Corruption::BadChar => {
                line.insert(at % (line.len() + 1), '!');
                line
            }
            Corruption::Truncated => {
                if line == "=" {
                    "==".to_owned()
                } else {
                    line.remove(at % line.len());
                    line
                }
            }
        }
    };
    let at = data.len();
    if login {
        let user_line = b64(user);
        let password_line = spoil(b64(password), at);
        if initial {
            lines.push(format!("AUTH LOGIN {user_line}"));
        } else {
            lines.push("AUTH LOGIN".to_owned());
            lines.push(user_line);
        }
        lines.push(password_line);
    } else {
        let mut blob = authzid.to_vec();
        blob.push(0);
        blob.extend_from_slice(user);
        blob.push(0);
        blob.extend_from_slice(password);
        let line = spoil(BASE64.encode(&blob), at);
        if initial && corruption != Corruption::Cancel {
            lines.push(format!("AUTH PLAIN {line}"));
        } else {
            lines.push("AUTH PLAIN".to_owned());
            lines.push(line);
        }
    }

    let mut s = session();
    let (greeting, _) = exchange(&mut s, b"", &mut accept_all);
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    exchange(&mut s, b"EHLO client.example\r\n", &mut accept_all);
    let mut out = String::new();
    let mut attempts = Vec::new();
    for line in &lines {
        let (o, a) = exchange(&mut s, format!("{line}\r\n").as_bytes(), &mut accept_all);
        out = o;
        attempts.extend(a);
        if !out.starts_with("334 ") {
            break;
        }
    }
    let expect_attempt = well_formed && corruption == Corruption::None;
    if expect_attempt {
        assert_eq!(attempts.len(), 1, "no attempt from {lines:?}: {out:?}");
        let a = &attempts[0];
        let mechanism = if login {
            AuthMechanism::Login
        } else {
            AuthMechanism::Plain
        };
        assert_eq!(a.mechanism, mechanism);
        assert_eq!(a.authorization_id.as_bytes(), authzid);
        assert_eq!(a.username.as_bytes(), user);
        assert_eq!(a.password.expose().as_bytes(), password);
        assert!(out.starts_with("235 "), "accepted attempt answered {out:?}");
        // Once is enough.
        let (out, again) = exchange(
            &mut s,
            format!("{}\r\n", lines[0]).as_bytes(),
            &mut accept_all,
        );
        assert!(again.is_empty() && out.starts_with("503 "), "{out:?}");
    } else {
        assert!(
            attempts.is_empty(),
            "malformed exchange {lines:?} reached the decision: {attempts:?}"
        );
        assert!(
            out.starts_with('5') || out.starts_with('4'),
            "malformed exchange {lines:?} answered {out:?}"
        );
    }
    // The session is still usable.
    let (out, _) = exchange(&mut s, b"NOOP\r\n", &mut accept_all);
    assert!(out.starts_with("250 "), "{out:?}");
}

fn raw(seed: u8, data: &[u8]) {
    let mut s = session();
    let (greeting, _) = exchange(&mut s, b"", &mut accept_all);
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    exchange(&mut s, b"EHLO client.example\r\n", &mut accept_all);
    let mut n = u32::from(seed) | 1;
    let mut decide = |_: &ServerEvent<'_>| {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        if n >> 16 & 1 == 0 {
            Decision::Accept
        } else {
            Decision::Reply(Reply::new(ReplyCode::AUTH_INVALID, None, "no"))
        }
    };
    let chunk = 1 + usize::from(seed >> 4) * 16;
    for piece in data.chunks(chunk) {
        let (out, attempts) = exchange(&mut s, piece, &mut decide);
        for line in out.split_terminator("\r\n") {
            assert!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "{out:?}"
            );
        }
        for a in attempts {
            let bad = |f: &str| f.contains('\0');
            assert!(!a.username.is_empty(), "{a:?}");
            assert!(
                !bad(&a.username) && !bad(&a.authorization_id) && !bad(a.password.expose()),
                "NUL in an attempt: {:?} {:?}",
                a.username,
                a.authorization_id
            );
        }
        if s.is_closed() {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode & 0x80 == 0 {
        structured(*mode, rest);
    } else {
        raw(*mode, rest);
    }
});
