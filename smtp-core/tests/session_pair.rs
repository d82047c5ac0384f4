//! A ClientSession talking to a ServerSession in memory, through every command of the
//! protocol: greeting, EHLO and the HELO fallback, STARTTLS sequencing, AUTH (PLAIN, LOGIN),
//! pipelined and one-at-a-time transactions, DATA and BDAT, refused recipients, RSET, NOOP,
//! VRFY, EXPN, HELP, QUIT and LMTP.

use std::time::Duration;

use smtp_core::auth::{AuthMechanism, Credentials};
use smtp_core::client::{
    ClientConfig, ClientError, ClientEvent, ClientSession, Envelope, StartTlsPolicy,
    TransactionResult,
};
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::{Decision, HelloVerb, ServerConfig, ServerEvent, ServerSession};

type Decider = Box<dyn FnMut(&ServerEvent<'_>) -> Decision>;

struct Pair {
    client: ClientSession,
    server: ServerSession,
    decide: Decider,
    /// Every byte each side wrote, in order, for transcript assertions.
    client_wrote: Vec<u8>,
    server_wrote: Vec<u8>,
    /// Messages the server accepted.
    delivered: Vec<Vec<u8>>,
    receiving: Vec<u8>,
    /// The body the client sends when asked.
    body: Vec<u8>,
    events: Vec<ClientEvent>,
    now: Duration,
    /// Envelopes to start right after the next `finish_body` (transaction chaining), and
    /// what `send_mail` said to each.
    chain: Vec<Envelope>,
    chain_refused: Vec<ClientError>,
    /// Each `take_output` of the client, to see what went out in one write.
    client_writes: Vec<Vec<u8>>,
}

impl Pair {
    fn new(client: ClientConfig, server: ServerConfig) -> Pair {
        Pair::with_decider(client, server, Box::new(|_| Decision::Accept))
    }

    fn with_decider(client: ClientConfig, server: ServerConfig, decide: Decider) -> Pair {
        let now = Duration::ZERO;
        Pair {
            client: ClientSession::new(client, now).unwrap(),
            server: ServerSession::new(server, now),
            decide,
            client_wrote: Vec::new(),
            server_wrote: Vec::new(),
            delivered: Vec::new(),
            receiving: Vec::new(),
            body: b"Subject: test\r\n\r\nHello.\r\n".to_vec(),
            events: Vec::new(),
            now,
            chain: Vec::new(),
            chain_refused: Vec::new(),
            client_writes: Vec::new(),
        }
    }

    /// Moves bytes both ways until neither side has anything to say; returns the client
    /// events seen on the way.
    fn run(&mut self) -> Vec<ClientEvent> {
        let start = self.events.len();
        for _ in 0..1000 {
            let mut progress = false;
            // Server side.
            while let Some(event) = self.server.poll_event() {
                progress = true;
                match event {
                    ServerEvent::MessageStart => {
                        self.receiving.clear();
                        let d = (self.decide)(&ServerEvent::MessageStart);
                        self.server.decide(d).unwrap();
                    }
                    ServerEvent::MessageData(d) => self.receiving.extend_from_slice(d),
                    ServerEvent::MessageEnd => {
                        let d = (self.decide)(&ServerEvent::MessageEnd);
                        if matches!(&d, Decision::Accept)
                            || matches!(&d, Decision::Reply(r) if r.is_positive())
                        {
                            self.delivered.push(std::mem::take(&mut self.receiving));
                        }
                        self.server.decide(d).unwrap();
                    }
                    // The simulated handshake succeeds at once.
                    ServerEvent::StartTls => self.server.tls_established(self.now),
                    e if e.needs_decision() => {
                        let d = (self.decide)(&e);
                        self.server.decide(d).unwrap();
                    }
                    _ => {}
                }
            }
            let out = self.server.take_output();
            if !out.is_empty() {
                progress = true;
                self.server_wrote.extend_from_slice(&out);
                self.client.receive(&out, self.now);
            }
            // Client side.
            while let Some(event) = self.client.poll_event() {
                progress = true;
                match &event {
                    ClientEvent::StartTls => self.client.tls_established(self.now),
                    ClientEvent::SendBody => {
                        let body = self.body.clone();
                        // Odd split points: the stuffer must not care.
                        for piece in body.chunks(7) {
                            self.client.send_body(piece).unwrap();
                        }
                        self.client.finish_body().unwrap();
                        if !self.chain.is_empty() {
                            let next = self.chain.remove(0);
                            if let Err(e) = self.client.send_mail(&next, None) {
                                self.chain_refused.push(e);
                            }
                        }
                    }
                    _ => {}
                }
                self.events.push(event);
            }
            if self.client.is_ready() && !self.chain.is_empty() {
                // No dot to chain behind (the last transaction sent no content): start
                // the next one as usual.
                let next = self.chain.remove(0);
                self.client.send_mail(&next, None).unwrap();
                progress = true;
            }
            let out = self.client.take_output();
            if !out.is_empty() {
                progress = true;
                self.client_wrote.extend_from_slice(&out);
                self.client_writes.push(out.clone());
                let mut rest = &out[..];
                while !rest.is_empty() {
                    let n = self.server.receive(rest, self.now);
                    rest = &rest[n..];
                    if n == 0 {
                        break;
                    }
                }
            }
            if !progress {
                return self.events[start..].to_vec();
            }
        }
        panic!("the conversation did not settle");
    }

    fn client_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.client_wrote)
            .split("\r\n")
            .map(str::to_owned)
            .collect()
    }

    fn send(&mut self, envelope: &Envelope) -> TransactionResult {
        self.client
            .send_mail(envelope, Some(self.body.len() as u64))
            .unwrap();
        let events = self.run();
        events
            .into_iter()
            .find_map(|e| {
                if let ClientEvent::TransactionComplete(r) = e {
                    Some(r)
                } else {
                    None
                }
            })
            .expect("transaction completes")
    }
}

fn server_config() -> ServerConfig {
    ServerConfig::new("mx.test")
}

fn client_config() -> ClientConfig {
    ClientConfig::new("client.test")
}

fn refuse_nobody() -> Decider {
    Box::new(|e| match e {
        ServerEvent::Rcpt { to, .. } if to.as_str().starts_with("nobody") => {
            Decision::Reply(Reply::new(
                ReplyCode::MAILBOX_UNAVAILABLE,
                Some(EnhancedCode::new(5, 1, 1)),
                "no such user",
            ))
        }
        ServerEvent::MessageEnd => Decision::Reply(Reply::new(
            ReplyCode::OK,
            Some(EnhancedCode::new(2, 0, 0)),
            "Ok: queued as Q1",
        )),
        _ => Decision::Accept,
    })
}

#[test]
fn pipelined_bdat_transaction_with_a_refused_recipient() {
    let mut pair = Pair::with_decider(client_config(), server_config(), refuse_nobody());
    assert_eq!(pair.run(), [ClientEvent::Ready]);
    let caps = pair.client.capabilities().unwrap();
    assert!(caps.pipelining && caps.chunking);
    pair.body = b"Subject: hi\n\n.leading dot\nbare LF lines\n".to_vec();
    let envelope = Envelope::new(
        "a@example.com",
        ["x@example.com", "nobody@example.com", "y@example.com"],
    )
    .unwrap();
    let result = pair.send(&envelope);
    assert!(result.is_success());
    assert_eq!(result.accepted().count(), 2);
    let refused: Vec<_> = result.refused().collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].address.as_str(), "nobody@example.com");
    assert_eq!(refused[0].reply.code(), ReplyCode::MAILBOX_UNAVAILABLE);
    assert_eq!(result.queue_id(), Some("Q1"));
    // BDAT carries the canonical content without dot-stuffing.
    assert_eq!(
        pair.delivered,
        [b"Subject: hi\r\n\r\n.leading dot\r\nbare LF lines\r\n".to_vec()]
    );
    let lines = pair.client_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("BDAT ") && l.ends_with(" LAST")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!(
            "MAIL FROM:<a@example.com> SIZE={}",
            pair.body.len()
        )),
        "{lines:?}"
    );
    assert!(!lines.contains(&"DATA".to_string()));
}

#[test]
fn pipelined_data_transaction() {
    let mut server = server_config();
    server.chunking = false;
    let mut pair = Pair::with_decider(client_config(), server, refuse_nobody());
    pair.run();
    pair.body = b"Subject: hi\n\n.leading dot\n..two\n".to_vec();
    let envelope = Envelope::new("a@example.com", ["x@example.com", "nobody@example.com"]).unwrap();
    let before = pair.client_wrote.len();
    let result = pair.send(&envelope);
    assert!(result.is_success());
    assert_eq!(result.accepted().count(), 1);
    assert_eq!(
        pair.delivered,
        [b"Subject: hi\r\n\r\n.leading dot\r\n..two\r\n".to_vec()]
    );
    // MAIL, RCPT, RCPT and DATA went out in one batch, before any reply was read.
    let sent = String::from_utf8_lossy(&pair.client_wrote[before..]).into_owned();
    assert!(sent.starts_with("MAIL FROM:<a@example.com> SIZE=32\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\n"), "{sent}");
    assert!(
        sent.contains("\r\n..leading dot\r\n...two\r\n.\r\n"),
        "dot-stuffed: {sent}"
    );
}

#[test]
fn transactions_chain_behind_the_final_dot() {
    let mut server = server_config();
    server.chunking = false;
    // The first message's content is refused; chaining must not disturb the next ones.
    let mut messages = 0;
    let decide: Decider = Box::new(move |event| match event {
        ServerEvent::MessageEnd => {
            messages += 1;
            if messages == 1 {
                Decision::Reply(Reply::new(ReplyCode::TRANSACTION_FAILED, None, "spam"))
            } else {
                Decision::Accept
            }
        }
        ServerEvent::Rcpt { to, .. } if to.as_str().starts_with("nobody@") => Decision::Reply(
            Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, None, "no such user"),
        ),
        _ => Decision::Accept,
    });
    let mut pair = Pair::with_decider(client_config(), server, decide);
    pair.run();
    let envelope = |to: &str| Envelope::new("a@example.com", [to]).unwrap();
    pair.chain = vec![
        envelope("x@example.com"),
        envelope("nobody@example.com"),
        envelope("y@example.com"),
    ];
    pair.client
        .send_mail(&envelope("w@example.com"), None)
        .unwrap();
    // Not while the first message waits for its 354: the session refuses and writes nothing.
    let before = pair.client.output().len();
    assert!(matches!(
        pair.client.send_mail(&envelope("v@example.com"), None),
        Err(ClientError::NotReady)
    ));
    assert_eq!(pair.client.output().len(), before);

    let results: Vec<TransactionResult> = pair
        .run()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::TransactionComplete(r) => Some(r),
            _ => None,
        })
        .collect();
    let to: Vec<&str> = results
        .iter()
        .map(|r| r.recipients[0].address.as_str())
        .collect();
    assert_eq!(
        to,
        [
            "w@example.com",
            "x@example.com",
            "nobody@example.com",
            "y@example.com"
        ]
    );
    assert_eq!(
        results[0].data.as_ref().unwrap().code(),
        ReplyCode::TRANSACTION_FAILED
    );
    assert!(results[1].is_success() && results[3].is_success());
    assert!(!results[2].is_success() && results[2].recipients[0].reply.is_permanent());
    assert_eq!(pair.delivered.len(), 2);
    assert!(pair.chain_refused.is_empty());
    assert!(pair.client.is_ready());
    // The MAIL after each of the two dots left in the same write as that dot (the
    // all-refused transaction sent no content, so the last one started afterwards).
    let chained = pair
        .client_writes
        .iter()
        .filter(|w| {
            let w = String::from_utf8_lossy(w);
            w.contains("\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<")
        })
        .count();
    assert_eq!(chained, 2, "{:?}", pair.client_lines());
    // One RSET: after the refused DATA of the all-refused transaction (the server may
    // still hold its MAIL), none after the refused dot (its reply ends a transaction,
    // whatever it says).
    let lines = pair.client_lines();
    let rsets: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == "RSET").collect();
    assert_eq!(rsets.len(), 1, "{lines:?}");
    assert_eq!(lines[rsets[0] + 2], "RCPT TO:<y@example.com>", "{lines:?}");
    // After the chain, an ordinary transaction.
    assert!(pair.send(&envelope("z@example.com")).is_success());
}

#[test]
fn no_chaining_with_bdat_or_lmtp() {
    // With CHUNKING the whole transaction is already one write: send_mail waits.
    let mut pair = Pair::new(client_config(), server_config());
    pair.run();
    let envelope = Envelope::new("a@example.com", ["x@example.com"]).unwrap();
    pair.client.send_mail(&envelope, None).unwrap();
    let _ = pair.client.poll_event(); // SendBody
    pair.client.send_body(b"x\r\n").unwrap();
    pair.client.finish_body().unwrap();
    assert!(matches!(
        pair.client.send_mail(&envelope, None),
        Err(ClientError::NotReady)
    ));

    let mut server = server_config();
    server.chunking = false;
    server.lmtp = true;
    let mut client = client_config();
    client.lmtp = true;
    let mut pair = Pair::new(client, server);
    pair.run();
    pair.chain = vec![envelope.clone()];
    let result = pair.send(&envelope);
    assert!(result.is_success());
    // LMTP has one reply per recipient after the dot: send_mail waits for them.
    assert!(matches!(pair.chain_refused[..], [ClientError::NotReady]));
}

#[test]
fn one_command_at_a_time_without_pipelining() {
    let mut server = server_config();
    server.pipelining = false;
    let mut pair = Pair::with_decider(client_config(), server, refuse_nobody());
    pair.run();
    let envelope = Envelope::new("a@example.com", ["nobody@example.com", "x@example.com"]).unwrap();
    let result = pair.send(&envelope);
    assert!(result.is_success());
    assert_eq!(
        result.recipients[0].reply.code(),
        ReplyCode::MAILBOX_UNAVAILABLE
    );
    assert!(result.recipients[1].reply.is_completion());
    // Every recipient refused: no DATA is sent, and the server is RSET before the next MAIL.
    let envelope = Envelope::new("a@example.com", ["nobody@example.com"]).unwrap();
    let result = pair.send(&envelope);
    assert!(!result.is_success());
    assert!(result.data.is_none());
    let result = pair.send(&Envelope::new("a@example.com", ["x@example.com"]).unwrap());
    assert!(result.is_success(), "{result:?}");
    let lines = pair.client_lines();
    let data_count = lines.iter().filter(|l| *l == "DATA").count();
    assert_eq!(data_count, 2, "{lines:?}");
    assert!(lines.contains(&"RSET".to_string()), "{lines:?}");
    assert_eq!(pair.delivered.len(), 2);
}

#[test]
fn many_messages_over_one_connection() {
    let mut pair = Pair::new(client_config(), server_config());
    pair.run();
    for i in 0..50 {
        pair.body = format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes();
        let result = pair.send(&Envelope::new("a@example.com", ["x@example.com"]).unwrap());
        assert!(result.is_success());
    }
    assert_eq!(pair.delivered.len(), 50);
    assert_eq!(pair.delivered[49], b"Subject: 49\r\n\r\nbody 49\r\n");
}

#[test]
fn starttls_then_auth_plain() {
    let mut server = server_config();
    server.starttls = true;
    server.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
    let mut client = client_config();
    client.starttls = StartTlsPolicy::Required;
    client.credentials = Some(Credentials::password("alice", "pw"));
    let decide: Decider = Box::new(|e| match e {
        ServerEvent::Auth(a) if a.username == "alice" && a.password.constant_time_eq("pw") => {
            Decision::Accept
        }
        ServerEvent::Auth(_) => Decision::Reply(Reply::new(
            ReplyCode::AUTH_INVALID,
            Some(EnhancedCode::new(5, 7, 8)),
            "no",
        )),
        _ => Decision::Accept,
    });
    let mut pair = Pair::with_decider(client, server, decide);
    let events = pair.run();
    assert!(
        matches!(
            events.as_slice(),
            [
                ClientEvent::StartTls,
                ClientEvent::Authenticated(_),
                ClientEvent::Ready
            ]
        ),
        "{events:?}"
    );
    assert!(pair.client.is_tls() && pair.server.is_tls());
    assert!(pair.client.is_authenticated());
    assert_eq!(pair.server.authenticated_user(), Some("alice"));
    let lines = pair.client_lines();
    assert_eq!(
        &lines[..3],
        ["EHLO client.test", "STARTTLS", "EHLO client.test"]
    );
    assert!(lines[3].starts_with("AUTH PLAIN "));
    assert!(
        pair.send(&Envelope::new("a@example.com", ["x@example.com"]).unwrap())
            .is_success()
    );
}

#[test]
fn auth_login_when_plain_is_not_offered_and_a_failed_login() {
    let mut server = server_config();
    server.auth_mechanisms = vec![AuthMechanism::Login];
    server.allow_insecure_auth = true;
    let decide: Decider = Box::new(|e| match e {
        ServerEvent::Auth(a) if a.password.constant_time_eq("right") => Decision::Accept,
        ServerEvent::Auth(_) => Decision::Reply(Reply::new(
            ReplyCode::AUTH_INVALID,
            Some(EnhancedCode::new(5, 7, 8)),
            "no",
        )),
        _ => Decision::Accept,
    });
    // Over clear text (AUTH LOGIN is what this tests), as the server allows it.
    let mut client = client_config();
    client.allow_insecure_auth = true;
    let mut pair = Pair::with_decider(client, server, decide);
    assert_eq!(pair.run(), [ClientEvent::Ready]);
    pair.client
        .login(Credentials::password("bob", "wrong"))
        .unwrap();
    let events = pair.run();
    assert!(
        matches!(events.as_slice(), [ClientEvent::Error(ClientError::AuthFailed(r))] if r.code() == ReplyCode::AUTH_INVALID),
        "{events:?}"
    );
    assert!(pair.client.is_ready());
    pair.client
        .login(Credentials::password("bob", "right"))
        .unwrap();
    let events = pair.run();
    assert!(
        matches!(events.as_slice(), [ClientEvent::Authenticated(_)]),
        "{events:?}"
    );
    assert!(pair.client_lines().contains(&"AUTH LOGIN".to_string()));
}

#[test]
fn helo_fallback_when_ehlo_is_refused() {
    let decide: Decider = Box::new(|e| match e {
        ServerEvent::Hello {
            verb: HelloVerb::Ehlo,
            ..
        } => Decision::Reply(Reply::new(
            ReplyCode::SYNTAX_ERROR,
            Some(EnhancedCode::new(5, 5, 1)),
            "what?",
        )),
        _ => Decision::Accept,
    });
    let mut pair = Pair::with_decider(client_config(), server_config(), decide);
    assert_eq!(pair.run(), [ClientEvent::Ready]);
    assert!(pair.client.capabilities().is_none());
    let result = pair.send(&Envelope::new("a@example.com", ["x@example.com"]).unwrap());
    assert!(result.is_success());
    let lines = pair.client_lines();
    assert_eq!(&lines[..2], ["EHLO client.test", "HELO client.test"]);
    // No ESMTP parameters and no pipelining towards a HELO server.
    assert!(
        lines.contains(&"MAIL FROM:<a@example.com>".to_string()),
        "{lines:?}"
    );
}

#[test]
fn simple_commands_and_quit() {
    let mut pair = Pair::new(client_config(), server_config());
    pair.run();
    let reply_to =
        |pair: &mut Pair, f: &dyn Fn(&mut ClientSession) -> Result<(), ClientError>| -> Reply {
            f(&mut pair.client).unwrap();
            match pair.run().as_slice() {
                [ClientEvent::Reply(r)] => r.clone(),
                other => panic!("{other:?}"),
            }
        };
    assert_eq!(reply_to(&mut pair, &|c| c.noop()).code(), ReplyCode::OK);
    assert_eq!(reply_to(&mut pair, &|c| c.rset()).code(), ReplyCode::OK);
    assert_eq!(
        reply_to(&mut pair, &|c| c.vrfy("alice")).code(),
        ReplyCode::CANNOT_VERIFY
    );
    assert_eq!(
        reply_to(&mut pair, &|c| c.expn("staff")).code(),
        ReplyCode::CANNOT_VERIFY
    );
    assert_eq!(
        reply_to(&mut pair, &|c| c.help(None)).code(),
        ReplyCode::HELP_MESSAGE
    );
    assert_eq!(
        reply_to(&mut pair, &|c| c.help(Some("MAIL"))).code(),
        ReplyCode::HELP_MESSAGE
    );
    // Arguments that would inject a command are refused before anything is written.
    let before = pair.client_wrote.len();
    assert!(matches!(
        pair.client.vrfy("x\r\nQUIT"),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        pair.client.help(Some("\0")),
        Err(ClientError::InvalidArgument(_))
    ));
    pair.run();
    assert_eq!(pair.client_wrote.len(), before);
    pair.client.quit().unwrap();
    assert_eq!(pair.run(), [ClientEvent::Closed]);
    assert!(pair.client.is_closed() && pair.server.is_closed());
}

#[test]
fn lmtp_reports_each_recipient() {
    let mut server = server_config();
    server.lmtp = true;
    let mut client = client_config();
    client.lmtp = true;
    let mut pair = Pair::new(client, server);
    assert_eq!(pair.run(), [ClientEvent::Ready]);
    assert!(pair.client_lines()[0].starts_with("LHLO "));
    for chunking in [true, false] {
        pair.server = {
            let mut c = server_config();
            c.lmtp = true;
            c.chunking = chunking;
            ServerSession::new(c, pair.now)
        };
        let mut client = client_config();
        client.lmtp = true;
        pair.client = ClientSession::new(client, pair.now).unwrap();
        pair.run();
        let result =
            pair.send(&Envelope::new("a@example.com", ["x@example.com", "y@example.com"]).unwrap());
        assert!(result.is_success(), "{result:?}");
        assert!(
            result
                .recipients
                .iter()
                .all(|r| r.delivery.as_ref().is_some_and(|d| d.is_completion())),
            "{result:?}"
        );
    }
}

#[test]
fn size_limit_is_checked_before_sending() {
    let mut server = server_config();
    server.max_message_size = 10;
    let mut pair = Pair::new(client_config(), server);
    pair.run();
    let before = pair.client_wrote.len();
    let err = pair
        .client
        .send_mail(
            &Envelope::new("a@example.com", ["x@example.com"]).unwrap(),
            Some(11),
        )
        .unwrap_err();
    assert_eq!(err, ClientError::MessageTooLarge { limit: 10 });
    assert_eq!(pair.client_wrote.len(), before);
    assert!(pair.client.is_ready());
}

#[test]
fn smtputf8_is_requested_for_international_addresses() {
    let mut pair = Pair::new(client_config(), server_config());
    pair.run();
    let result = pair.send(&Envelope::new("jöran@bücher.example", ["用户@例子.广告"]).unwrap());
    assert!(result.is_success());
    assert!(
        pair.client_lines()
            .iter()
            .any(|l| l.starts_with("MAIL FROM:<jöran@bücher.example>") && l.ends_with(" SMTPUTF8"))
    );

    let mut server = server_config();
    server.smtputf8 = false;
    let mut pair = Pair::new(client_config(), server);
    pair.run();
    let err = pair
        .client
        .send_mail(
            &Envelope::new("jöran@bücher.example", ["x@example.com"]).unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(err, ClientError::SmtpUtf8Unsupported);
}

#[test]
fn required_starttls_not_offered_stops_before_mail() {
    let mut client = client_config();
    client.starttls = StartTlsPolicy::Required;
    client.credentials = Some(Credentials::password("alice", "pw"));
    let mut pair = Pair::new(client, server_config());
    let events = pair.run();
    assert_eq!(
        events,
        [
            ClientEvent::Error(ClientError::StartTlsUnavailable),
            ClientEvent::Closed
        ]
    );
    let lines = pair.client_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("AUTH") || l.starts_with("MAIL")),
        "{lines:?}"
    );
}

/// XOAUTH2 against a scripted server (smtpx's server does not take OAuth tokens): success,
/// and the failure dance where the server's 334 carries an error and the client answers
/// with an empty line.
#[test]
fn xoauth2_success_and_failure() {
    use base64::Engine as _;
    for (replies, ok) in [
        (&["235 2.7.0 Accepted\r\n"][..], true),
        (
            &[
                "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n",
                "535 5.7.8 Username and Password not accepted\r\n",
            ][..],
            false,
        ),
    ] {
        let now = Duration::ZERO;
        let mut config = client_config();
        // A scripted server in clear text: the exchange, not TLS, is under test.
        config.allow_insecure_auth = true;
        config.credentials = Some(Credentials::oauth2("user@example.com", "ya29.token"));
        let mut client = ClientSession::new(config, now).unwrap();
        client.receive(b"220 smtp.example ESMTP\r\n", now);
        assert_eq!(client.take_output(), b"EHLO client.test\r\n");
        client.receive(b"250-smtp.example\r\n250 AUTH LOGIN PLAIN XOAUTH2\r\n", now);
        let auth = String::from_utf8(client.take_output()).unwrap();
        let encoded = auth.strip_prefix("AUTH XOAUTH2 ").unwrap().trim_end();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(
            decoded,
            b"user=user@example.com\x01auth=Bearer ya29.token\x01\x01"
        );
        let mut events = Vec::new();
        for reply in replies {
            client.receive(reply.as_bytes(), now);
            if reply.starts_with("334") {
                assert_eq!(
                    client.take_output(),
                    b"\r\n",
                    "an empty line ends the failed exchange"
                );
            }
        }
        while let Some(e) = client.poll_event() {
            events.push(e);
        }
        if ok {
            assert!(
                matches!(
                    events.as_slice(),
                    [ClientEvent::Authenticated(_), ClientEvent::Ready]
                ),
                "{events:?}"
            );
        } else {
            assert!(
                matches!(events.as_slice(), [ClientEvent::Error(ClientError::AuthFailed(r)), ClientEvent::Ready] if r.code() == ReplyCode::AUTH_INVALID),
                "{events:?}"
            );
        }
    }
}

/// Collects the client's events until it has none.
fn drain(client: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

#[test]
fn a_bare_lf_in_a_reply_does_not_push_the_pipelined_replies_out_of_step() {
    // A scripted server: `250 ok<LF>250 second<CRLF>` is one reply (a reply line ends only
    // at CRLF). Read as two, its second half would answer the pipelined RCPT and every
    // later reply would answer the wrong command.
    let now = Duration::ZERO;
    let mut client = ClientSession::new(client_config(), now).unwrap();
    client.receive(b"220 mx.test ESMTP\r\n", now);
    drain(&mut client);
    assert!(client.take_output().starts_with(b"EHLO "));
    client.receive(b"250-mx.test\r\n250 PIPELINING\r\n", now);
    assert!(matches!(
        drain(&mut client).as_slice(),
        [ClientEvent::Ready]
    ));
    let envelope = Envelope::new("a@example.com", ["x@example.com"]).unwrap();
    client.send_mail(&envelope, None).unwrap();
    assert_eq!(
        client.take_output(),
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n"
    );
    client.receive(b"250 ok\n250 second\r\n", now);
    assert!(drain(&mut client).is_empty(), "RCPT is not answered yet");
    client.receive(b"550 5.1.1 no such user\r\n", now);
    client.receive(b"554 5.5.1 Error: no valid recipients\r\n", now);
    let events = drain(&mut client);
    let [ClientEvent::TransactionComplete(result)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(result.mail.code(), ReplyCode::OK);
    assert_eq!(result.mail.lines(), ["ok 250 second"]);
    assert_eq!(result.recipients.len(), 1);
    assert!(!result.recipients[0].is_accepted());
    assert_eq!(
        result.data.as_ref().map(|r| r.code().get()),
        Some(554),
        "DATA's reply is the 554, not the RCPT's 550"
    );
    assert!(client.take_output().is_empty(), "no message was sent");
    assert!(client.is_ready());
}

/// A session greeted over clear text by a server that offers AUTH; returns what the client
/// wrote after the EHLO reply, and the events so far.
fn greeted_in_clear(config: ClientConfig) -> (ClientSession, String, Vec<ClientEvent>) {
    let now = Duration::ZERO;
    let mut client = ClientSession::new(config, now).unwrap();
    client.receive(b"220 smtp.example ESMTP\r\n", now);
    assert_eq!(client.take_output(), b"EHLO client.test\r\n");
    client.receive(b"250-smtp.example\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n", now);
    let wrote = String::from_utf8(client.take_output()).unwrap();
    let events = drain(&mut client);
    (client, wrote, events)
}

#[test]
fn configured_credentials_are_not_sent_in_clear() {
    for credentials in [
        Credentials::password("alice", "s3cret-pw"),
        Credentials::oauth2("alice@example.com", "ya29.s3cret-token"),
    ] {
        let mut config = client_config();
        config.starttls = StartTlsPolicy::Never;
        config.credentials = Some(credentials);
        let (client, wrote, events) = greeted_in_clear(config);
        // Nothing of the credentials: the opening is abandoned with QUIT.
        assert_eq!(wrote, "QUIT\r\n");
        assert!(!wrote.contains("AUTH"), "{wrote:?}");
        assert_eq!(
            events,
            [
                ClientEvent::Error(ClientError::InsecureAuth),
                ClientEvent::Closed
            ]
        );
        assert!(client.is_closed() && !client.is_authenticated());
    }
}

#[test]
fn an_opportunistic_starttls_not_offered_does_not_let_credentials_out() {
    let mut config = client_config();
    config.starttls = StartTlsPolicy::Opportunistic;
    config.credentials = Some(Credentials::password("alice", "s3cret-pw"));
    let (client, wrote, events) = greeted_in_clear(config);
    assert_eq!(wrote, "QUIT\r\n");
    assert_eq!(
        events,
        [
            ClientEvent::Error(ClientError::InsecureAuth),
            ClientEvent::Closed
        ]
    );
    assert!(client.is_closed());

    // Nor does a refused one.
    let now = Duration::ZERO;
    let mut config = client_config();
    config.credentials = Some(Credentials::password("alice", "s3cret-pw"));
    let mut client = ClientSession::new(config, now).unwrap();
    client.receive(b"220 smtp.example ESMTP\r\n", now);
    client.take_output();
    client.receive(
        b"250-smtp.example\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
        now,
    );
    assert_eq!(client.take_output(), b"STARTTLS\r\n");
    client.receive(b"454 4.7.0 TLS not available\r\n", now);
    let wrote = String::from_utf8(client.take_output()).unwrap();
    assert_eq!(wrote, "QUIT\r\n");
    let events = drain(&mut client);
    assert!(
        matches!(
            events.as_slice(),
            [
                ClientEvent::Error(ClientError::StartTlsRefused(_)),
                ClientEvent::Error(ClientError::InsecureAuth),
                ClientEvent::Closed
            ]
        ),
        "{events:?}"
    );
}

#[test]
fn an_explicit_login_in_clear_fails_and_writes_nothing() {
    let mut config = client_config();
    config.starttls = StartTlsPolicy::Never;
    let (mut client, wrote, events) = greeted_in_clear(config);
    assert_eq!(wrote, "");
    assert_eq!(events, [ClientEvent::Ready]);
    let err = client
        .login(Credentials::password("alice", "s3cret-pw"))
        .unwrap_err();
    assert_eq!(err, ClientError::InsecureAuth);
    assert!(!err.is_fatal());
    assert!(err.to_string().contains("without TLS"), "{err}");
    assert!(client.output().is_empty(), "{:?}", client.output());
    assert_eq!(drain(&mut client), []);
    // The session is still usable.
    assert!(client.is_ready());
    client.noop().unwrap();
    assert_eq!(client.take_output(), b"NOOP\r\n");
}

#[test]
fn allow_insecure_auth_lets_credentials_go_in_clear() {
    let now = Duration::ZERO;
    let mut config = client_config();
    config.starttls = StartTlsPolicy::Never;
    config.allow_insecure_auth = true;
    config.credentials = Some(Credentials::password("alice", "pw"));
    let (mut client, wrote, events) = greeted_in_clear(config);
    assert!(wrote.starts_with("AUTH PLAIN "), "{wrote:?}");
    assert_eq!(events, []);
    client.receive(b"235 2.7.0 ok\r\n", now);
    assert!(matches!(
        drain(&mut client).as_slice(),
        [ClientEvent::Authenticated(_), ClientEvent::Ready]
    ));

    // And an explicit login.
    let mut config = client_config();
    config.starttls = StartTlsPolicy::Never;
    config.allow_insecure_auth = true;
    let (mut client, _, _) = greeted_in_clear(config);
    client.login(Credentials::password("alice", "pw")).unwrap();
    let wrote = String::from_utf8(client.take_output()).unwrap();
    assert!(wrote.starts_with("AUTH PLAIN "), "{wrote:?}");
}

#[test]
fn implicit_tls_needs_no_permission() {
    let mut config = client_config();
    config.starttls = StartTlsPolicy::Never;
    config.tls_active = true;
    let (mut client, _, events) = greeted_in_clear(config);
    assert_eq!(events, [ClientEvent::Ready]);
    client.login(Credentials::password("alice", "pw")).unwrap();
    let wrote = String::from_utf8(client.take_output()).unwrap();
    assert!(wrote.starts_with("AUTH PLAIN "), "{wrote:?}");
}

#[test]
fn the_permission_can_be_given_after_the_session_was_made() {
    let mut config = client_config();
    config.starttls = StartTlsPolicy::Never;
    let (mut client, _, _) = greeted_in_clear(config);
    let alice = || Credentials::password("alice", "pw");
    assert_eq!(client.login(alice()), Err(ClientError::InsecureAuth));
    client.set_allow_insecure_auth(true);
    client.login(alice()).unwrap();
    let wrote = String::from_utf8(client.take_output()).unwrap();
    assert!(wrote.starts_with("AUTH PLAIN "), "{wrote:?}");
    client.receive(b"535 5.7.8 no\r\n", Duration::ZERO);
    drain(&mut client);
    // And taken back.
    client.set_allow_insecure_auth(false);
    assert_eq!(client.login(alice()), Err(ClientError::InsecureAuth));
    assert!(client.output().is_empty());
}
