//! Wire-level tests of the server session: raw bytes in, reply codes and events out.

use std::time::Duration;

use smtp_core::auth::AuthMechanism;
use smtp_core::data::BareLinePolicy;
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::{
    AbortReason, CommandLimits, Decision, HelloVerb, ServerConfig, ServerEvent, ServerSession,
};

/// What the embedder saw, in a form tests can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Connect,
    Hello(HelloVerb, String),
    StartTls,
    Auth(String, String, String),
    Mail(String),
    Rcpt(String),
    MessageStart,
    MessageEnd(Vec<u8>),
    Aborted(AbortReason),
    Reset,
    Verify(String),
    Expand(String),
    Close,
}

/// A server session with a scripted embedder: every decision is Accept unless `decide`
/// says otherwise; message content is collected.
struct Harness {
    session: ServerSession,
    seen: Vec<Seen>,
    message: Vec<u8>,
    now: Duration,
    decide: Box<dyn FnMut(&Seen) -> Decision>,
}

impl Harness {
    fn new(config: ServerConfig) -> Harness {
        Harness::with_decider(config, |_| Decision::Accept)
    }

    fn with_decider(
        config: ServerConfig,
        decide: impl FnMut(&Seen) -> Decision + 'static,
    ) -> Harness {
        let mut h = Harness {
            session: ServerSession::new(config, Duration::ZERO),
            seen: Vec::new(),
            message: Vec::new(),
            now: Duration::ZERO,
            decide: Box::new(decide),
        };
        h.pump();
        h
    }

    fn pump(&mut self) {
        while let Some(event) = self.session.poll_event() {
            let needs = event.needs_decision();
            let seen = match event {
                ServerEvent::Connect => Seen::Connect,
                ServerEvent::Hello { verb, domain } => Seen::Hello(verb, domain),
                ServerEvent::StartTls => Seen::StartTls,
                ServerEvent::Auth(a) => Seen::Auth(
                    a.authorization_id,
                    a.username,
                    a.password.expose().to_owned(),
                ),
                ServerEvent::Mail { from, .. } => Seen::Mail(from.as_str().to_owned()),
                ServerEvent::Rcpt { to, .. } => Seen::Rcpt(to.as_str().to_owned()),
                ServerEvent::MessageStart => {
                    self.message.clear();
                    Seen::MessageStart
                }
                ServerEvent::MessageData(d) => {
                    self.message.extend_from_slice(d);
                    continue;
                }
                ServerEvent::MessageEnd => Seen::MessageEnd(std::mem::take(&mut self.message)),
                ServerEvent::MessageAborted(r) => Seen::Aborted(r),
                ServerEvent::Reset => Seen::Reset,
                ServerEvent::Verify(s) => Seen::Verify(s),
                ServerEvent::Expand(s) => Seen::Expand(s),
                ServerEvent::Close => Seen::Close,
                // Only with ServerConfig::handler_replies, which these tests leave off.
                ServerEvent::Noop(_) | ServerEvent::Rset | ServerEvent::Quit => {
                    unreachable!("handler_replies is off")
                }
            };
            if needs {
                let decision = (self.decide)(&seen);
                self.session.decide(decision).unwrap();
            }
            self.seen.push(seen);
        }
    }

    /// Sends bytes and returns the replies they caused, as text.
    fn send(&mut self, bytes: &[u8]) -> String {
        let mut rest = bytes;
        let mut written = Vec::new();
        while !rest.is_empty() {
            let n = self.session.receive(rest, self.now);
            rest = &rest[n..];
            self.pump();
            // A driver writes the output before reading more; the session holds back
            // replies once too much is unwritten.
            written.extend_from_slice(&self.session.take_output());
            if self.session.is_closed() {
                break;
            }
        }
        self.pump();
        written.extend_from_slice(&self.session.take_output());
        String::from_utf8(written).unwrap()
    }

    fn codes(&mut self, bytes: &[u8]) -> Vec<String> {
        reply_codes(&self.send(bytes))
    }

    /// Sends bytes one line at a time, as a client that waits for each reply before it
    /// writes the next line (no pipelining), and returns all the replies, as text.
    fn send_waiting(&mut self, bytes: &[u8]) -> String {
        let mut out = String::new();
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            out.push_str(&self.send(line));
        }
        out
    }

    fn codes_waiting(&mut self, bytes: &[u8]) -> Vec<String> {
        reply_codes(&self.send_waiting(bytes))
    }

    fn greeted(config: ServerConfig) -> Harness {
        let mut h = Harness::new(config);
        let greeting = String::from_utf8(h.session.take_output()).unwrap();
        assert!(greeting.starts_with("220 "), "{greeting}");
        h
    }
}

/// "250 2.1.0" style summaries of the final line of each reply.
fn reply_codes(text: &str) -> Vec<String> {
    text.split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ' || l.len() == 3)
        .map(|l| {
            let mut words = l.split(' ');
            let code = words.next().unwrap_or_default();
            match words.next() {
                Some(e) if e.contains('.') && e.as_bytes()[0].is_ascii_digit() => {
                    format!("{code} {e}")
                }
                _ => code.to_owned(),
            }
        })
        .collect()
}

fn config() -> ServerConfig {
    ServerConfig::new("mx.test")
}

#[test]
fn whole_transaction_with_the_seeds_sample_session() {
    let mut h = Harness::greeted(config());
    assert_eq!(h.codes(b"helo askcuix\r\n"), ["250"]);
    assert_eq!(
        h.codes(b"mail from: <askcuix@domain.com>\r\n"),
        ["250 2.1.0"]
    );
    assert_eq!(h.codes(b"rcpt to: <test@domain.com>\r\n"), ["250 2.1.5"]);
    assert_eq!(h.codes(b"data\r\n"), ["354"]);
    let body = b"From: askcuix@domain.com\r\nTo: test@domain.com\r\nSubject: test mail\r\n\r\nHi, test\r\n..leading dot\r\n.\r\n";
    assert_eq!(h.codes(body), ["250 2.0.0"]);
    assert_eq!(h.codes(b"quit\r\n"), ["221 2.0.0"]);
    assert!(h.session.is_closed());
    let message = h
        .seen
        .iter()
        .find_map(|s| {
            if let Seen::MessageEnd(m) = s {
                Some(m.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(message, b"From: askcuix@domain.com\r\nTo: test@domain.com\r\nSubject: test mail\r\n\r\nHi, test\r\n.leading dot\r\n");
    assert_eq!(h.seen.last(), Some(&Seen::Close));
}

#[test]
fn ehlo_lists_capabilities_and_auth_only_over_tls() {
    let mut c = config();
    c.starttls = true;
    c.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    let mut h = Harness::greeted(c);
    let text = h.send(b"EHLO client.test\r\n");
    for cap in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
        "STARTTLS",
    ] {
        assert!(
            text.contains(&format!("250-{cap}\r\n")) || text.contains(&format!("250 {cap}\r\n")),
            "{cap} in {text}"
        );
    }
    assert!(
        !text.contains("AUTH"),
        "AUTH must not be offered in clear: {text}"
    );
    // And it is refused in clear.
    assert_eq!(h.codes(b"AUTH PLAIN AGEAYg==\r\n"), ["538 5.7.11"]);
}

#[test]
fn every_simple_command() {
    let mut h = Harness::greeted(config());
    assert_eq!(h.codes(b"EHLO c.test\r\n"), ["250"]);
    assert_eq!(h.codes(b"NOOP\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes(b"RSET\r\n"), ["250 2.0.0"]);
    let help = h.send(b"HELP\r\n");
    assert!(help.starts_with("214 2.0.0 Commands:"), "{help}");
    assert_eq!(h.codes(b"VRFY alice\r\n"), ["252 2.5.0"]);
    assert_eq!(h.codes(b"EXPN staff\r\n"), ["252 2.5.0"]);
    assert!(h.seen.contains(&Seen::Verify("alice".into())));
    assert!(h.seen.contains(&Seen::Expand("staff".into())));
    assert_eq!(h.codes(b"STARTTLS\r\n"), ["502 5.5.1"]);
    assert_eq!(h.codes(b"AUTH PLAIN\r\n"), ["502 5.5.1"]);
    assert_eq!(h.codes(b"LHLO c.test\r\n"), ["500 5.5.1"]);
    assert_eq!(h.codes(b"QUIT\r\n"), ["221 2.0.0"]);
}

#[test]
fn noop_with_an_argument_is_ignored() {
    let mut h = Harness::greeted(config());
    assert_eq!(h.codes(b"NOOP keep me alive\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes(b"EHLO c.test\r\n"), ["250"]);
    assert_eq!(h.codes(b"NOOP x\r\n"), ["250 2.0.0"]);
}

#[test]
fn noop_hands_its_argument_to_the_handler() {
    let mut c = config();
    c.handler_replies = true;
    let mut session = ServerSession::new(c, Duration::ZERO);
    while let Some(event) = session.poll_event() {
        if event.needs_decision() {
            session.decide(Decision::Accept).unwrap();
        }
    }
    let mut seen = Vec::new();
    for line in [&b"NOOP\r\n"[..], b"NOOP  two words \r\n"] {
        assert_eq!(session.receive(line, Duration::ZERO), line.len());
        while let Some(event) = session.poll_event() {
            if let ServerEvent::Noop(argument) = &event {
                seen.push(argument.clone());
            }
            if event.needs_decision() {
                session.decide(Decision::Accept).unwrap();
            }
        }
    }
    assert_eq!(seen, [None, Some("two words".to_owned())]);
    let out = String::from_utf8(session.take_output()).unwrap();
    assert_eq!(out.matches("250 2.0.0").count(), 2, "{out}");
}

/// aiosmtpd's `command_call_limit`: each verb its own budget (or the default); the
/// command over it gets 421 4.7.0 and the session closes.
#[test]
fn command_limits_close_the_session_with_421() {
    let mut c = config();
    c.command_limits = Some(CommandLimits::new(3).with("noop", 2));
    let mut h = Harness::greeted(c);
    assert_eq!(h.codes(b"EHLO c.test\r\n"), ["250"]);
    assert_eq!(h.codes(b"NOOP\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes(b"NOOP again\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes(b"RSET\r\n"), ["250 2.0.0"]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    let text = h.send(b"NOOP\r\n");
    assert_eq!(text, "421 4.7.0 NOOP sent too many times\r\n");
    assert!(h.session.is_closed());
    assert_eq!(h.seen.last(), Some(&Seen::Close));

    // The default applies to every other verb.
    let mut c = config();
    c.command_limits = Some(CommandLimits::new(1));
    let mut h = Harness::greeted(c);
    assert_eq!(h.codes(b"HELO c.test\r\n"), ["250"]);
    assert_eq!(h.codes(b"HELO c.test\r\n"), ["421 4.7.0"]);
    assert!(h.session.is_closed());
}

#[test]
fn bad_sequences_get_503() {
    let mut h = Harness::greeted(config());
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes(b"RCPT TO:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes(b"DATA\r\n"), ["503 5.5.1"]);
    h.send(b"EHLO c.test\r\n");
    assert_eq!(h.codes(b"RCPT TO:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes(b"DATA\r\n"), ["554 5.5.1"]);
}

#[test]
fn pipelined_commands_are_answered_in_one_output() {
    let mut h = Harness::greeted(config());
    // EHLO ends a group (RFC 2920 §3.1): the client waits for its reply. MAIL, RCPT and
    // DATA form the next group, the content and QUIT behind the dot the one after.
    assert_eq!(h.codes(b"EHLO c.test\r\n"), ["250"]);
    let mut out =
        h.codes(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nDATA\r\n");
    out.extend(h.codes(b"hello\r\n.\r\nQUIT\r\n"));
    assert_eq!(
        out,
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
}

#[test]
fn refused_recipient_then_data() {
    let mut h = Harness::with_decider(config(), |seen| match seen {
        Seen::Rcpt(r) if r.starts_with("nobody") => Decision::Reply(Reply::new(
            ReplyCode::MAILBOX_UNAVAILABLE,
            Some(EnhancedCode::new(5, 1, 1)),
            "no such user",
        )),
        _ => Decision::Accept,
    });
    h.session.take_output();
    let out = h.codes_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@b.test>\r\nRCPT TO:<yes@b.test>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        out,
        [
            "250",
            "250 2.1.0",
            "550 5.1.1",
            "250 2.1.5",
            "354",
            "250 2.0.0"
        ]
    );
    // All recipients refused: pipelined DATA gets 554 and the body is read as commands,
    // which is what RFC 2920 expects the client to avoid by checking the RCPT replies.
    let out = h.codes(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@b.test>\r\nDATA\r\n");
    assert_eq!(out, ["250 2.1.0", "550 5.1.1", "554 5.5.1"]);
}

#[test]
fn null_sender_postmaster_and_parameters() {
    let mut h = Harness::greeted(config());
    h.send(b"EHLO c\r\n");
    assert_eq!(
        h.codes(b"MAIL FROM:<> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x\r\n"),
        ["250 2.1.0"]
    );
    assert_eq!(
        h.codes(b"RCPT TO:<Postmaster> NOTIFY=NEVER\r\n"),
        ["250 2.1.5"]
    );
    assert_eq!(h.codes(b"RCPT TO:<b@c.test> XFOO=1\r\n"), ["555 5.5.4"]);
    assert_eq!(h.codes(b"RSET\r\n"), ["250 2.0.0"]);
    assert!(h.seen.contains(&Seen::Reset));
    assert_eq!(
        h.codes(b"MAIL FROM:<a@b.test> SIZE=999999999999\r\n"),
        ["552 5.3.4"]
    );
    assert_eq!(h.codes(b"MAIL FROM:<j\xc3\xb6@b.test>\r\n"), ["553 5.6.7"]);
    assert_eq!(
        h.codes(b"MAIL FROM:<j\xc3\xb6@b.test> SMTPUTF8\r\n"),
        ["250 2.1.0"]
    );
    assert_eq!(h.codes(b"RCPT TO:<\xe7\x94\xa8@b.test>\r\n"), ["250 2.1.5"]);
}

#[test]
fn helo_does_not_take_parameters() {
    let mut h = Harness::greeted(config());
    h.send(b"HELO c\r\n");
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test> SIZE=10\r\n"), ["555 5.5.4"]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
}

#[test]
fn recipient_limit() {
    let mut c = config();
    c.max_recipients = 2;
    let mut h = Harness::greeted(c);
    let out = h.codes_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<1@b.test>\r\nRCPT TO:<2@b.test>\r\nRCPT TO:<3@b.test>\r\n");
    assert_eq!(
        out,
        ["250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "452 4.5.3"]
    );
}

#[test]
fn size_limit_discovered_in_content() {
    let mut c = config();
    c.max_message_size = 100;
    let mut h = Harness::greeted(c);
    h.send_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<1@b.test>\r\nDATA\r\n");
    let big = format!("{}\r\n.\r\nNOOP\r\n", "x".repeat(300));
    assert_eq!(h.codes(big.as_bytes()), ["552 5.3.4", "250 2.0.0"]);
    assert!(h.seen.contains(&Seen::Aborted(AbortReason::TooLarge)));
    assert!(!h.seen.iter().any(|s| matches!(s, Seen::MessageEnd(_))));
    // The transaction is over; a new one works.
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
}

#[test]
fn error_limit_closes_with_421() {
    let mut c = config();
    c.max_errors = 3;
    let mut h = Harness::greeted(c);
    let out = h.codes(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n");
    assert_eq!(out, ["500 5.5.1", "500 5.5.1", "500 5.5.1", "421 4.7.0"]);
    assert!(h.session.is_closed());
    assert_eq!(h.seen.last(), Some(&Seen::Close));
}

#[test]
fn auth_plain_and_login_with_failure_limit() {
    let mut c = config();
    c.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    c.allow_insecure_auth = true;
    c.max_auth_failures = 2;
    let mut h = Harness::with_decider(c, |seen| match seen {
        Seen::Auth(_, user, pass) if user == "alice" && pass == "pw" => Decision::Accept,
        Seen::Auth(..) => Decision::Reply(Reply::new(
            ReplyCode::AUTH_INVALID,
            Some(EnhancedCode::new(5, 7, 8)),
            "bad",
        )),
        _ => Decision::Accept,
    });
    h.session.take_output();
    let ehlo = h.send(b"EHLO c\r\n");
    assert!(ehlo.contains("250 AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    // LOGIN: user name and password prompts.
    assert_eq!(h.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.send(b"bWFsbG9yeQ==\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(h.codes(b"d3Jvbmc=\r\n"), ["535 5.7.8"]);
    // PLAIN without an initial response, then aborted with "*".
    assert_eq!(h.send(b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(h.codes(b"*\r\n"), ["501 5.0.0"]);
    // Bad base64.
    assert_eq!(h.codes(b"AUTH PLAIN !!!\r\n"), ["501 5.5.2"]);
    // Good credentials.
    assert_eq!(h.codes(b"AUTH PLAIN AGFsaWNlAHB3\r\n"), ["235 2.7.0"]);
    assert_eq!(h.session.authenticated_user(), Some("alice"));
    assert_eq!(h.codes(b"AUTH PLAIN AGFsaWNlAHB3\r\n"), ["503 5.5.1"]);
    assert!(
        h.seen
            .contains(&Seen::Auth(String::new(), "mallory".into(), "wrong".into()))
    );

    // A second session reaches the failure limit and is closed.
    let mut c = config();
    c.auth_mechanisms = vec![AuthMechanism::Plain];
    c.allow_insecure_auth = true;
    c.max_auth_failures = 2;
    let mut h = Harness::with_decider(c, |seen| match seen {
        Seen::Auth(..) => Decision::Reply(Reply::new(
            ReplyCode::AUTH_INVALID,
            Some(EnhancedCode::new(5, 7, 8)),
            "bad",
        )),
        _ => Decision::Accept,
    });
    h.session.take_output();
    h.send(b"EHLO c\r\n");
    assert_eq!(
        h.codes(b"AUTH PLAIN AGEAYg==\r\nAUTH PLAIN AGEAYg==\r\nAUTH PLAIN AGEAYg==\r\n"),
        ["535 5.7.8", "535 5.7.8", "421 4.7.0"]
    );
    assert!(h.session.is_closed());
}

#[test]
fn require_auth_and_require_tls() {
    let mut c = config();
    c.auth_mechanisms = vec![AuthMechanism::Plain];
    c.allow_insecure_auth = true;
    c.require_auth = true;
    let mut h = Harness::greeted(c);
    h.send(b"EHLO c\r\n");
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["530 5.7.0"]);
    assert_eq!(h.codes(b"AUTH PLAIN AGFsaWNlAHB3\r\n"), ["235 2.7.0"]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);

    let mut c = config();
    c.starttls = true;
    c.require_tls = true;
    let mut h = Harness::greeted(c);
    h.send(b"EHLO c\r\n");
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["530 5.7.0"]);
}

#[test]
fn starttls_discards_pipelined_commands_and_forgets_state() {
    let mut c = config();
    c.starttls = true;
    c.auth_mechanisms = vec![AuthMechanism::Plain];
    // The sync check would end this session at once (see pipelining_sync_refusals); the
    // discard must hold without it too.
    c.pipelining_sync = false;
    let mut h = Harness::greeted(c);
    h.send(b"EHLO c\r\n");
    // An attacker appends commands to the client's STARTTLS in the same packet.
    let out = h.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\n");
    assert_eq!(out, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(h.seen.last(), Some(&Seen::StartTls));
    // Bytes arriving before the handshake completes are thrown away too.
    let _ = h.session.receive(b"RSET\r\n", h.now);
    h.session.tls_established(h.now);
    assert!(h.session.is_tls());
    assert!(
        !h.seen
            .iter()
            .any(|s| matches!(s, Seen::Mail(_) | Seen::Rcpt(_)))
    );
    // State is forgotten: EHLO is needed again, and now AUTH is offered, STARTTLS not.
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["503 5.5.1"]);
    let ehlo = h.send(b"EHLO c\r\n");
    assert!(ehlo.contains("AUTH PLAIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(h.codes(b"STARTTLS\r\n"), ["503 5.5.1"]);
}

#[test]
fn lone_lf_and_cr_in_commands_are_not_executed() {
    let mut h = Harness::greeted(config());
    h.send(b"EHLO c\r\n");
    // "NOOP<LF>MAIL..." is one line holding a lone LF: refused whole.
    assert_eq!(h.codes(b"NOOP\nMAIL FROM:<a@b.test>\r\n"), ["500 5.5.2"]);
    assert_eq!(h.codes(b"NOOP\rMAIL FROM:<a@b.test>\r\n"), ["500 5.5.2"]);
    assert!(!h.seen.iter().any(|s| matches!(s, Seen::Mail(_))));
    assert_eq!(h.codes(b"NOOP\r\n"), ["250 2.0.0"]);
}

#[test]
fn overlong_line_tail_never_runs() {
    let mut c = config();
    c.max_line_len = 64;
    let mut h = Harness::greeted(c);
    h.send(b"EHLO c\r\n");
    let mut attack = vec![b'A'; 100];
    attack.extend_from_slice(b"QUIT\r\nNOOP\r\n");
    assert_eq!(h.codes(&attack), ["500 5.5.6", "250 2.0.0"]);
    assert!(!h.session.is_closed());
    // Split across reads too.
    assert_eq!(h.codes(&[b'B'; 70]), ["500 5.5.6"]);
    assert_eq!(h.codes(b"QUIT\r\n"), Vec::<String>::new());
    assert_eq!(h.codes(b"NOOP\r\n"), ["250 2.0.0"]);
}

#[test]
fn nul_and_invalid_utf8_in_commands() {
    let mut h = Harness::greeted(config());
    assert_eq!(h.codes(b"EHLO c\0d\r\n"), ["500 5.5.2"]);
    assert_eq!(h.codes(b"EHLO \xff\xfe\r\n"), ["500 5.5.2"]);
    assert_eq!(h.codes(b"\r\n"), ["500 5.5.2"]);
}

/// The SMTP smuggling sequences of SEC Consult's research: none may end the message, and
/// what follows them is content, never commands.
#[test]
fn smuggling_sequences_are_content() {
    for (name, fake_end) in [
        ("<LF>.<LF>", &b"\n.\n"[..]),
        ("<LF>.<CR><LF>", b"\n.\r\n"),
        ("<CR>.<CR>", b"\r.\r"),
        ("<CR><LF>.<LF>", b"\r\n.\n"),
        ("<CR><LF>.<CR>", b"\r\n.\r"),
        ("<CR>.<LF>", b"\r.\n"),
    ] {
        for policy in [BareLinePolicy::Normalize, BareLinePolicy::Reject] {
            let mut c = config();
            c.bare_line_policy = policy;
            let mut h = Harness::greeted(c);
            h.send_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
            let mut attack = b"Subject: legit\r\n\r\nhello".to_vec();
            attack.extend_from_slice(fake_end);
            attack.extend_from_slice(b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n");
            let out = h.codes(&attack);
            let expected = match policy {
                BareLinePolicy::Normalize => "250 2.0.0",
                BareLinePolicy::Reject => "550 5.5.2",
            };
            assert_eq!(out, [expected], "{name} {policy:?}");
            let mails: Vec<_> = h
                .seen
                .iter()
                .filter(|s| matches!(s, Seen::Mail(_)))
                .collect();
            assert_eq!(mails.len(), 1, "{name}: smuggled MAIL executed");
            let ends = h
                .seen
                .iter()
                .filter(|s| matches!(s, Seen::MessageEnd(_)))
                .count();
            assert_eq!(
                ends,
                usize::from(policy == BareLinePolicy::Normalize),
                "{name}"
            );
            if policy == BareLinePolicy::Normalize {
                let Some(Seen::MessageEnd(m)) =
                    h.seen.iter().find(|s| matches!(s, Seen::MessageEnd(_)))
                else {
                    panic!()
                };
                let text = String::from_utf8_lossy(m);
                assert!(
                    text.contains("admin@bank.test"),
                    "{name}: smuggled text must stay content"
                );
                assert!(
                    !m.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
                    "{name}: stored a bare LF"
                );
            } else {
                assert!(h.seen.contains(&Seen::Aborted(AbortReason::BareLineEnding)));
            }
        }
    }
}

#[test]
fn bdat_chunks_and_errors() {
    let mut h = Harness::greeted(config());
    h.send(b"EHLO c\r\n");
    // BDAT without a transaction: the chunk is read and thrown away, then 503.
    assert_eq!(h.codes(b"BDAT 6\r\nQUIT\r\n"), ["503 5.5.1"]);
    assert!(!h.session.is_closed());
    h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(h.codes(b"BDAT 5\r\nhello"), ["250 2.0.0"]);
    assert_eq!(h.codes(b"BDAT 8 LAST\r\n, world\n"), ["250 2.0.0"]);
    let Some(Seen::MessageEnd(m)) = h
        .seen
        .iter()
        .rev()
        .find(|s| matches!(s, Seen::MessageEnd(_)))
    else {
        panic!()
    };
    assert_eq!(
        m, b"hello, world\r\n",
        "a lone LF in BDAT content is normalised, as in DATA"
    );
    // DATA after BDAT in one transaction is refused.
    h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nBDAT 1\r\nx");
    assert_eq!(h.codes(b"DATA\r\n"), ["503 5.5.1"]);
    // RSET between chunks drops the message.
    assert_eq!(h.codes(b"RSET\r\n"), ["250 2.0.0"]);
    assert!(h.seen.contains(&Seen::Aborted(AbortReason::Reset)));
    // A wrong size: the declared count is what is read, the rest are commands.
    h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(
        h.codes(b"BDAT 3 LAST\r\nabcNOOP\r\n"),
        ["250 2.0.0", "250 2.0.0"]
    );
    // BINARYMIME needs BDAT.
    h.send(b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(h.codes(b"DATA\r\n"), ["503 5.5.1"]);
}

#[test]
fn bdat_size_limit() {
    let mut c = config();
    c.max_message_size = 10;
    let mut h = Harness::greeted(c);
    h.send_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(h.codes(b"BDAT 8\r\n12345678"), ["250 2.0.0"]);
    assert_eq!(
        h.codes(b"BDAT 8 LAST\r\n12345678NOOP\r\n"),
        ["552 5.3.4", "250 2.0.0"]
    );
    assert!(h.seen.contains(&Seen::Aborted(AbortReason::TooLarge)));
}

#[test]
fn refused_data_and_message() {
    let mut h = Harness::with_decider(config(), |seen| match seen {
        Seen::MessageEnd(m) if m.starts_with(b"spam") => Decision::Reply(Reply::new(
            ReplyCode::TRANSACTION_FAILED,
            Some(EnhancedCode::new(5, 7, 1)),
            "spam",
        )),
        Seen::MessageEnd(_) => Decision::Reply(Reply::new(
            ReplyCode::OK,
            Some(EnhancedCode::new(2, 0, 0)),
            "Ok: queued as ABC123",
        )),
        _ => Decision::Accept,
    });
    h.session.take_output();
    h.send_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(
        h.codes_waiting(b"DATA\r\nspam\r\n.\r\n"),
        ["354", "554 5.7.1"]
    );
    h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    let out = h.send_waiting(b"DATA\r\nham\r\n.\r\n");
    assert!(out.ends_with("250 2.0.0 Ok: queued as ABC123\r\n"), "{out}");
}

#[test]
fn lmtp_gives_one_reply_per_recipient() {
    let mut c = config();
    c.lmtp = true;
    let mut h = Harness::greeted(c);
    assert_eq!(h.codes(b"EHLO c\r\n"), ["500 5.5.1"]);
    h.send_waiting(
        b"LHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<1@b.test>\r\nRCPT TO:<2@b.test>\r\nDATA\r\n",
    );
    // The default Accept answers each recipient.
    assert_eq!(h.codes(b"x\r\n.\r\n"), ["250 2.0.0", "250 2.0.0"]);
}

#[test]
fn lmtp_per_recipient_decision() {
    let mut c = config();
    c.lmtp = true;
    let mut session = ServerSession::new(c, Duration::ZERO);
    let now = Duration::ZERO;
    let mut out = Vec::new();
    // The client waits for the greeting, then for each group's last reply.
    for input in [
        &b""[..],
        b"LHLO c\r\n",
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<1@b.test>\r\nRCPT TO:<2@b.test>\r\nDATA\r\n",
        b"x\r\n.\r\n",
    ] {
        let _ = session.receive(input, now);
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::MessageEnd => session
                    .decide(Decision::PerRecipient(vec![
                        Reply::new(ReplyCode::OK, Some(EnhancedCode::new(2, 1, 5)), "delivered"),
                        Reply::new(
                            ReplyCode::INSUFFICIENT_STORAGE,
                            Some(EnhancedCode::new(4, 2, 2)),
                            "mailbox full",
                        ),
                    ]))
                    .unwrap(),
                e if e.needs_decision() => session.decide(Decision::Accept).unwrap(),
                _ => {}
            }
        }
    }
    out.extend_from_slice(session.output());
    let codes = reply_codes(&String::from_utf8(out).unwrap());
    assert_eq!(
        codes[codes.len() - 2..],
        ["250 2.1.5".to_string(), "452 4.2.2".to_string()]
    );
}

#[test]
fn rejected_connection_serves_only_quit() {
    let mut h = Harness::with_decider(config(), |seen| match seen {
        Seen::Connect => {
            Decision::Reply(Reply::new(ReplyCode::TRANSACTION_FAILED, None, "go away"))
        }
        _ => Decision::Accept,
    });
    assert_eq!(
        String::from_utf8(h.session.take_output()).unwrap(),
        "554 go away\r\n"
    );
    assert_eq!(h.codes(b"EHLO c\r\n"), ["503 5.5.1"]);
    assert_eq!(h.codes(b"QUIT\r\n"), ["221 2.0.0"]);

    let h = Harness::with_decider(config(), |seen| match seen {
        Seen::Connect => Decision::Reply(Reply::new(ReplyCode::SERVICE_UNAVAILABLE, None, "busy")),
        _ => Decision::Accept,
    });
    assert!(h.session.is_closed());
}

#[test]
fn early_talker_with_greeting_delay() {
    let mut c = config();
    c.greeting_delay = Some(Duration::from_secs(2));
    let mut h = Harness::new(c);
    assert_eq!(h.session.output(), b"");
    assert_eq!(h.session.next_deadline(), Some(Duration::from_secs(2)));
    assert_eq!(h.codes(b"EHLO eager\r\n"), ["554 5.5.1"]);
    assert!(h.session.is_closed());
    assert!(!h.seen.contains(&Seen::Connect));

    // A patient client gets the greeting once the delay has passed.
    let mut c = config();
    c.greeting_delay = Some(Duration::from_secs(2));
    let mut h = Harness::new(c);
    h.session.handle_timeout(Duration::from_secs(1));
    h.pump();
    assert!(h.session.output().is_empty());
    h.session.handle_timeout(Duration::from_secs(2));
    h.pump();
    assert!(h.session.take_output().starts_with(b"220 "));
    assert_eq!(h.codes(b"EHLO patient\r\n"), ["250"]);
}

#[test]
fn command_deadline_is_not_extended_by_trickling_bytes() {
    let mut c = config();
    c.command_timeout = Duration::from_secs(10);
    let mut h = Harness::greeted(c);
    assert_eq!(h.session.next_deadline(), Some(Duration::from_secs(10)));
    // One byte a second: the deadline stays where it was.
    for (i, b) in b"NOOP".iter().enumerate() {
        h.now = Duration::from_secs(i as u64 + 1);
        h.send(&[*b]);
        assert_eq!(h.session.next_deadline(), Some(Duration::from_secs(10)));
    }
    h.now = Duration::from_secs(10);
    h.session.handle_timeout(h.now);
    h.pump();
    assert_eq!(
        reply_codes(&String::from_utf8(h.session.take_output()).unwrap()),
        ["421 4.4.2"]
    );
    assert!(h.session.is_closed());
}

#[test]
fn timeout_in_data_aborts_the_message() {
    let mut c = config();
    c.data_timeout = Duration::from_secs(5);
    let mut h = Harness::greeted(c);
    h.send_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\npartial line");
    h.now = Duration::from_secs(6);
    h.session.handle_timeout(h.now);
    h.pump();
    assert!(h.seen.contains(&Seen::Aborted(AbortReason::Disconnected)));
    assert_eq!(h.seen.last(), Some(&Seen::Close));
}

#[test]
fn disconnect_mid_data_aborts_and_closes() {
    let mut h = Harness::greeted(config());
    h.send_waiting(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nhalf a mess");
    h.session.receive_eof();
    h.pump();
    assert!(h.seen.contains(&Seen::Aborted(AbortReason::Disconnected)));
    assert!(!h.seen.iter().any(|s| matches!(s, Seen::MessageEnd(_))));
    assert_eq!(h.seen.last(), Some(&Seen::Close));
}

#[test]
fn commands_before_eof_are_still_answered() {
    let mut h = Harness::greeted(config());
    h.send(b"EHLO c\r\n");
    // RSET may be pipelined; NOOP ends the group.
    let _ = h.session.receive(b"RSET\r\nNOOP\r\n", h.now);
    h.session.receive_eof();
    h.pump();
    assert_eq!(
        reply_codes(&String::from_utf8(h.session.take_output()).unwrap()),
        ["250 2.0.0", "250 2.0.0"]
    );
    assert_eq!(h.seen.last(), Some(&Seen::Close));
}

#[test]
fn enhanced_codes_can_be_turned_off() {
    let mut c = config();
    c.enhanced_status_codes = false;
    let mut h = Harness::greeted(c);
    let ehlo = h.send(b"EHLO c\r\n");
    assert!(!ehlo.contains("ENHANCEDSTATUSCODES"));
    assert_eq!(h.send(b"NOOP\r\n"), "250 Ok\r\n");
}

#[test]
fn input_is_bounded_and_resumable() {
    let mut h = Harness::greeted(config());
    h.send(b"EHLO c\r\n");
    // A megabyte of pipelined RSETs (NOOP would end the group): receive takes what fits,
    // the rest is offered again, and every command is answered.
    let flood = b"RSET\r\n".repeat(200_000);
    let out = h.send(&flood);
    assert_eq!(out.matches("250 2.0.0 Ok\r\n").count(), 200_000);
}

#[test]
fn decide_without_pending_is_an_error() {
    let mut h = Harness::greeted(config());
    assert!(h.session.decide(Decision::Accept).is_err());
}

/// The last message the embedder saw end.
fn last_message(h: &Harness) -> Vec<u8> {
    h.seen
        .iter()
        .rev()
        .find_map(|s| match s {
            Seen::MessageEnd(m) => Some(m.clone()),
            _ => None,
        })
        .expect("a message ended")
}

fn ready_for_bdat(policy: BareLinePolicy) -> Harness {
    let mut c = config();
    c.bare_line_policy = policy;
    let mut h = Harness::greeted(c);
    assert_eq!(h.codes(b"EHLO c\r\n"), ["250"]);
    assert_eq!(
        h.codes(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n"),
        ["250 2.1.0", "250 2.1.5"]
    );
    h
}

#[test]
fn bdat_bare_line_endings_are_normalised_by_default() {
    let mut h = ready_for_bdat(BareLinePolicy::Normalize);
    // A CR ending one chunk and the LF starting the next are one real CRLF.
    assert_eq!(
        h.codes(b"BDAT 6\r\na\nb\rcdBDAT 4\r\ne\r\r\nBDAT 3 LAST\r\n\nf\r"),
        ["250 2.0.0", "250 2.0.0", "250 2.0.0"]
    );
    assert_eq!(last_message(&h), b"a\r\nb\r\ncde\r\n\r\n\r\nf\r\n");
    // BINARYMIME content is not lines: it is stored as sent.
    h.send(b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(h.codes(b"BDAT 4 LAST\r\n\n\r\0\n"), ["250 2.0.0"]);
    assert_eq!(last_message(&h), b"\n\r\0\n");
}

#[test]
fn bdat_bare_line_endings_refuse_the_whole_message_when_strict() {
    let mut h = ready_for_bdat(BareLinePolicy::Reject);
    // Read through LAST, then refused as a whole, like DATA.
    assert_eq!(
        h.codes(b"BDAT 3\r\na\nbBDAT 2\r\ncdBDAT 2 LAST\r\ne\n"),
        ["250 2.0.0", "250 2.0.0", "550 5.5.2"]
    );
    assert!(h.seen.contains(&Seen::Aborted(AbortReason::BareLineEnding)));
    assert!(!h.seen.iter().any(|s| matches!(s, Seen::MessageEnd(_))));
    // A CRLF split between chunks is not bare; a CR at the very end is.
    h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(
        h.codes(b"BDAT 2\r\na\rBDAT 2 LAST\r\n\nb"),
        ["250 2.0.0", "250 2.0.0"]
    );
    assert_eq!(last_message(&h), b"a\r\nb");
    h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
    assert_eq!(h.codes(b"BDAT 2 LAST\r\na\r"), ["550 5.5.2"]);
    // The session stays in step.
    assert_eq!(h.codes(b"NOOP\r\n"), ["250 2.0.0"]);
}

#[test]
fn sasl_lines_may_be_12288_octets() {
    let mut c = config();
    c.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    c.allow_insecure_auth = true;
    c.max_auth_failures = 10;
    let mut h = Harness::with_decider(c, |seen| match seen {
        Seen::Auth(..) => Decision::Reply(Reply::new(
            ReplyCode::AUTH_INVALID,
            Some(EnhancedCode::AUTH_INVALID),
            "no",
        )),
        _ => Decision::Accept,
    });
    h.session.take_output();
    h.send(b"EHLO c\r\n");
    // PLAIN for "alice" with a long password: "AGFsaWNlAHBw" is "\0alice\0pp", each
    // "cHBw" three more "p".
    let token = |groups: usize| format!("AGFsaWNlAHBw{}", "cHBw".repeat(groups));
    let line = format!("AUTH PLAIN {}\r\n", token(3065));
    assert_eq!(line.len(), 12_285);
    assert_eq!(h.codes(line.as_bytes()), ["535 5.7.8"]);
    assert!(
        h.seen
            .iter()
            .any(|s| matches!(s, Seen::Auth(_, user, _) if user == "alice"))
    );
    // Exactly 12,288 octets with the CRLF is still read as a line (its data is bad)...
    let line = format!("AUTH PLAIN {}\r\n", "A".repeat(12_275));
    assert_eq!(line.len(), 12_288);
    assert_eq!(h.codes(line.as_bytes()), ["501 5.5.2"]);
    // ...one more is too long.
    let line = format!("AUTH PLAIN {}\r\n", "A".repeat(12_276));
    assert_eq!(h.codes(line.as_bytes()), ["500 5.5.6"]);
    // A SASL response line has the same limit.
    assert_eq!(h.codes(b"AUTH PLAIN\r\n"), ["334"]);
    let line = format!("{}\r\n", token(3067));
    assert_eq!(h.codes(line.as_bytes()), ["535 5.7.8"]);
    assert_eq!(h.codes(b"AUTH LOGIN\r\n"), ["334"]);
    let line = format!("{}\r\n", "A".repeat(12_287));
    assert_eq!(h.codes(line.as_bytes()), ["500 5.5.6"]);
    // That ended the exchange: the next line is a command again.
    assert_eq!(h.codes(b"NOOP\r\n"), ["250 2.0.0"]);
    // Other commands keep the command line limit.
    let line = format!("NOOP {}\r\n", "x".repeat(4_096));
    assert_eq!(h.codes(line.as_bytes()), ["500 5.5.6"]);
}

#[test]
fn require_tls_refuses_all_but_the_session_commands() {
    let mut c = config();
    c.starttls = true;
    c.require_tls = true;
    c.auth_mechanisms = vec![AuthMechanism::Plain];
    c.allow_insecure_auth = true;
    let mut h = Harness::greeted(c);
    assert_eq!(h.codes(b"EHLO c\r\n"), ["250"]);
    for command in [
        &b"MAIL FROM:<a@b.test>\r\n"[..],
        b"RCPT TO:<x@y.test>\r\n",
        b"DATA\r\n",
        b"VRFY x\r\n",
        b"EXPN x\r\n",
        b"HELP\r\n",
        b"AUTH PLAIN AGFsaWNlAHB3\r\n",
    ] {
        assert_eq!(h.codes(command), ["530 5.7.0"], "{command:?}");
    }
    // A refused BDAT's octets are read and thrown away, never run as commands.
    assert_eq!(h.codes(b"BDAT 6\r\nQUIT\r\n"), ["530 5.7.0"]);
    assert!(!h.session.is_closed());
    for command in [&b"NOOP\r\n"[..], b"RSET\r\n", b"HELO c\r\n", b"EHLO c\r\n"] {
        assert_eq!(h.codes(command)[0].chars().next(), Some('2'), "{command:?}");
    }
    assert!(!h.seen.iter().any(|s| matches!(
        s,
        Seen::Mail(_) | Seen::Verify(_) | Seen::Expand(_) | Seen::Auth(..)
    )));
    assert_eq!(h.codes(b"STARTTLS\r\n"), ["220 2.0.0"]);
    h.session.tls_established(h.now);
    assert_eq!(h.codes(b"EHLO c\r\n"), ["250"]);
    assert_eq!(h.codes(b"VRFY x\r\n"), ["252 2.5.0"]);
    assert_eq!(h.codes(b"MAIL FROM:<a@b.test>\r\n"), ["250 2.1.0"]);
}

const SYNC_ERROR: &str = "554 5.5.0 Error: SMTP protocol synchronization\r\n";

#[test]
fn pipelining_sync_refusals() {
    // EHLO with the whole transaction behind it, in one write.
    let mut h = Harness::greeted(config());
    let out = h.send(
        b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n",
    );
    assert_eq!(out, SYNC_ERROR);
    assert!(h.session.is_closed());
    assert!(
        !h.seen
            .iter()
            .any(|s| matches!(s, Seen::Hello(..) | Seen::Mail(_) | Seen::MessageEnd(_)))
    );

    // DATA with the content behind it, before the 354.
    let mut h = Harness::greeted(config());
    h.send(b"EHLO c\r\n");
    let out = h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nhi\r\n.\r\n");
    assert!(out.ends_with(SYNC_ERROR), "{out}");
    assert!(
        !h.seen
            .iter()
            .any(|s| matches!(s, Seen::MessageStart | Seen::MessageEnd(_)))
    );

    // A HELO client was not offered PIPELINING.
    let mut h = Harness::greeted(config());
    assert_eq!(h.codes(b"HELO c\r\n"), ["250"]);
    assert_eq!(
        h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n"),
        SYNC_ERROR
    );
    assert!(!h.seen.iter().any(|s| matches!(s, Seen::Mail(_))));

    // Nor was a client that has not greeted, nor one whose server does not offer it.
    let mut h = Harness::greeted(config());
    assert_eq!(h.send(b"RSET\r\nRSET\r\n"), SYNC_ERROR);
    let mut c = config();
    c.pipelining = false;
    let mut h = Harness::greeted(c);
    h.send(b"EHLO c\r\n");
    assert_eq!(
        h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n"),
        SYNC_ERROR
    );

    // The other group enders: NOOP, VRFY, STARTTLS, AUTH without an initial response.
    for (command, needs) in [
        (&b"NOOP\r\n"[..], ""),
        (b"VRFY x\r\n", ""),
        (b"EXPN x\r\n", ""),
        (b"QUIT\r\n", ""),
        (b"STARTTLS\r\n", "tls"),
        (b"AUTH LOGIN\r\n", "auth"),
    ] {
        let mut c = config();
        c.starttls = needs == "tls";
        if needs == "auth" {
            c.auth_mechanisms = vec![AuthMechanism::Login];
            c.allow_insecure_auth = true;
        }
        let mut h = Harness::greeted(c);
        h.send(b"EHLO c\r\n");
        let mut input = command.to_vec();
        input.extend_from_slice(b"MAIL FROM:<a@b.test>\r\n");
        assert_eq!(h.send(&input), SYNC_ERROR, "{command:?}");
        assert!(
            !h.seen.iter().any(|s| matches!(s, Seen::Mail(_))),
            "{command:?}"
        );
    }
}

#[test]
fn an_early_talker_is_refused() {
    // Input that is there before the greeting is sent was sent before the client saw it.
    let mut session = ServerSession::new(config(), Duration::ZERO);
    let _ = session.receive(b"EHLO c\r\n", Duration::ZERO);
    let mut seen = Vec::new();
    while let Some(event) = session.poll_event() {
        let needs = event.needs_decision();
        seen.push(format!("{event:?}"));
        if needs {
            session.decide(Decision::Accept).unwrap();
        }
    }
    assert_eq!(String::from_utf8_lossy(session.output()), SYNC_ERROR);
    assert!(session.is_closed());
    assert!(!seen.iter().any(|s| s.starts_with("Hello")), "{seen:?}");
}

#[test]
fn valid_pipelining_is_served() {
    let mut h = Harness::greeted(config());
    assert_eq!(h.codes(b"EHLO c\r\n"), ["250"]);
    // A MAIL/RCPT/RSET group ending in DATA.
    assert_eq!(
        h.codes(
            b"RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nDATA\r\n"
        ),
        ["250 2.0.0", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354"]
    );
    // Chaining behind the dot: the next MAIL, RCPT and DATA in the same write.
    assert_eq!(
        h.codes(b"one\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n"),
        ["250 2.0.0", "250 2.1.0", "250 2.1.5", "354"]
    );
    assert_eq!(last_message(&h), b"one\r\n");
    // QUIT behind the dot is allowed too.
    assert_eq!(h.codes(b"two\r\n.\r\nQUIT\r\n"), ["250 2.0.0", "221 2.0.0"]);
    assert_eq!(last_message(&h), b"two\r\n");
    assert!(!h.send(b"").contains("554"));

    // BDAT chunks with their octets and more BDAT commands behind them, in one write,
    // right behind MAIL and RCPT.
    let mut h = Harness::greeted(config());
    h.send(b"EHLO c\r\n");
    assert_eq!(
        h.codes(
            b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\n!\r\n"
        ),
        ["250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0"]
    );
    assert_eq!(last_message(&h), b"hello!\r\n");
    // AUTH PLAIN with its initial response completes in one round trip (RFC 4954 §4).
    let mut c = config();
    c.auth_mechanisms = vec![AuthMechanism::Plain];
    c.allow_insecure_auth = true;
    let mut h = Harness::greeted(c);
    h.send(b"EHLO c\r\n");
    assert_eq!(
        h.codes(b"AUTH PLAIN AGFsaWNlAHB3\r\nMAIL FROM:<a@b.test>\r\n"),
        ["235 2.7.0", "250 2.1.0"]
    );
    // A HELO client that waits for each reply is served.
    let mut h = Harness::greeted(config());
    assert_eq!(
        h.codes_waiting(
            b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
        ),
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
}

#[test]
fn pipelining_sync_can_be_turned_off() {
    let mut c = config();
    c.pipelining_sync = false;
    let mut h = Harness::greeted(c);
    assert_eq!(
        h.codes(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
        ),
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert_eq!(last_message(&h), b"hi\r\n");
}
