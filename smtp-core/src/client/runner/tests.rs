//! The runner driven in memory against a scripted server.

use std::borrow::BorrowMut;
use std::collections::VecDeque;
use std::time::Duration;

use super::{Action, BatchMessage, ClientRunner, Operation, Outcome, OwnedOperation};
use crate::client::error::ErrorKind;
use crate::client::{ClientConfig, ClientSession, Envelope, StartTlsPolicy};

/// What the driver saw and did.
#[derive(Default)]
struct Wire {
    /// Everything written, goodbyes included.
    written: Vec<u8>,
    /// How many writes.
    writes: usize,
    closed: bool,
    aborted: bool,
}

/// A scripted server: each read gets the next chunk; with none left, the server hangs up.
struct Script {
    replies: VecDeque<&'static [u8]>,
    wire: Wire,
}

impl Script {
    fn new(replies: &[&'static [u8]]) -> Script {
        Script {
            replies: replies.iter().copied().collect(),
            wire: Wire::default(),
        }
    }

    /// Carries out `op`'s actions; `body` is the message in pieces, and `Err` as a piece
    /// is a failing source.
    fn drive<R, I>(
        &mut self,
        mut op: Operation<R, I>,
        body: &mut VecDeque<Result<&[u8], ()>>,
    ) -> Outcome
    where
        R: BorrowMut<ClientRunner>,
        I: Iterator<Item: BatchMessage>,
    {
        self.drive_in_place(&mut op, body)
    }

    /// As [`Script::drive`], leaving the operation (and so its runner) with the caller.
    fn drive_in_place<R, I>(
        &mut self,
        op: &mut Operation<R, I>,
        body: &mut VecDeque<Result<&[u8], ()>>,
    ) -> Outcome
    where
        R: BorrowMut<ClientRunner>,
        I: Iterator<Item: BatchMessage>,
    {
        let now = Duration::from_secs(1);
        // Bounded, so that a runner that loops for ever fails the test instead.
        for _ in 0..10_000 {
            match op.next_action(now) {
                Action::Write(bytes) | Action::Goodbye(bytes) => {
                    self.wire.written.extend_from_slice(bytes);
                    self.wire.writes += 1;
                    op.written();
                }
                Action::Read { deadline } => {
                    assert!(deadline > now);
                    match self.replies.pop_front() {
                        Some(reply) => op.received(reply, now),
                        None => op.eof(),
                    }
                }
                Action::StartTls { .. } => panic!("no TLS in these scripts"),
                Action::Body => match body.pop_front() {
                    Some(Ok(piece)) => op.body(piece, now),
                    Some(Err(())) => op.body_failed(std::io::Error::other("disk gone")),
                    None => op.body_end(now),
                },
                Action::Close => self.wire.closed = true,
                Action::Abort => self.wire.aborted = true,
                Action::Done(outcome) => return outcome,
            }
        }
        panic!("the operation never ended");
    }

    fn written(&self) -> &str {
        std::str::from_utf8(&self.wire.written).unwrap()
    }
}

fn runner(configure: impl FnOnce(&mut ClientConfig)) -> ClientRunner {
    let mut config = ClientConfig::new("client.example");
    configure(&mut config);
    let session = ClientSession::new(config, Duration::ZERO).unwrap();
    ClientRunner::new(7, session, None, Duration::from_secs(300))
}

/// A runner greeted by a server that offers `extensions`.
fn connected(extensions: &'static [u8]) -> (ClientRunner, Script) {
    let mut runner = runner(|_| {});
    let mut script = Script::new(&[b"220 mx.example ESMTP\r\n", extensions]);
    let outcome = script.drive(runner.connect(), &mut VecDeque::new());
    assert!(matches!(outcome, Outcome::Ready), "{outcome:?}");
    script.wire = Wire::default();
    (runner, script)
}

#[test]
fn a_send_with_a_refused_recipient_reports_each_recipient() {
    let (mut runner, mut script) = connected(b"250-mx.example\r\n250 PIPELINING\r\n");
    script.replies.extend([
        &b"250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go\r\n"[..],
        b"250 2.0.0 queued as Q1\r\n",
    ]);
    let envelope = Envelope::new("a@example.com", ["b@example.com", "c@example.com"]).unwrap();
    let op = runner.send(&envelope, None, Duration::from_secs(1));
    let mut body = VecDeque::from([Ok(&b"Subject: x\r\n\r\n"[..]), Ok(b".dot\n")]);
    let result = script.drive(op, &mut body).transaction().unwrap();
    assert_eq!(result.refused().count(), 1);
    assert_eq!(result.accepted().count(), 1);
    assert_eq!(result.queue_id(), Some("Q1"));
    assert_eq!(
        script.written(),
        "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n\
         DATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
    );
    assert!(!runner.is_closed());
}

#[test]
fn a_batch_chains_the_next_transaction_behind_the_final_dot() {
    let (mut runner, mut script) = connected(b"250-mx.example\r\n250 PIPELINING\r\n");
    script.replies.extend([
        &b"250 ok\r\n250 ok\r\n354 go\r\n"[..],
        b"250 first\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 second\r\n",
    ]);
    let envelope = Envelope::new("a@example.com", ["b@example.com"]).unwrap();
    let messages: [(&Envelope, &[u8]); 2] = [(&envelope, b"one\r\n"), (&envelope, b"two\r\n")];
    let results = script
        .drive(runner.send_batch(messages), &mut VecDeque::new())
        .batch();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.is_success()))
    );
    let mail = "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n";
    assert_eq!(
        script.written(),
        format!("{mail}one\r\n.\r\n{mail}two\r\n.\r\n")
    );
    // The second MAIL left in the same write as the first message's dot.
    assert_eq!(script.wire.writes, 3);
}

/// A batch's outcome can be taken as soon as its final reply is read, before the replies
/// of later messages; what is not taken is in the batch's outcome at the end, in order.
#[test]
fn a_batch_outcome_is_taken_before_the_next_reply_is_read() {
    let (mut runner, mut script) = connected(b"250-mx.example\r\n250 PIPELINING\r\n");
    script.replies.extend([
        &b"250 ok\r\n250 ok\r\n354 go\r\n"[..],
        b"250 first\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 second\r\n",
    ]);
    let envelope = Envelope::new("a@example.com", ["b@example.com"]).unwrap();
    let messages: [(&Envelope, &[u8]); 2] = [(&envelope, b"one\r\n"), (&envelope, b"two\r\n")];
    let mut op = runner.send_batch(messages);
    let now = Duration::from_secs(1);
    // (replies still unread, the outcome's final reply) for each outcome taken.
    let mut taken = Vec::new();
    let rest = loop {
        while let Some(outcome) = op.take_result() {
            let data = outcome.unwrap().data.unwrap().text();
            taken.push((script.replies.len(), data));
        }
        match op.next_action(now) {
            Action::Write(_) => op.written(),
            Action::Read { .. } => match script.replies.pop_front() {
                Some(reply) => op.received(reply, now),
                None => op.eof(),
            },
            Action::Done(outcome) => break outcome.batch(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(taken, [(1, "first".to_owned())]);
    assert_eq!(rest.len(), 1);
    assert_eq!(
        rest[0].as_ref().unwrap().data.as_ref().unwrap().text(),
        "second"
    );
    // Nothing is given twice, and other operations have none.
    assert!(op.take_result().is_none());
    drop(op);
    assert!(runner.quit(now).take_result().is_none());
}

#[test]
fn an_owned_operation_keeps_its_runner_and_messages_between_calls() {
    let (runner, mut script) = connected(b"250-mx.example\r\n250 PIPELINING\r\n");
    script.replies.extend([
        &b"250 ok\r\n250 ok\r\n354 go\r\n"[..],
        b"250 first\r\n250 ok\r\n250 ok\r\n354 go\r\n",
        b"250 second\r\n",
        b"250 2.0.0 fine\r\n",
    ]);
    let envelope = Envelope::new("a@example.com", ["b@example.com"]).unwrap();
    // Owned messages and an owned runner: nothing borrowed, as a binding holds it while
    // its host language awaits.
    let messages = vec![
        (envelope.clone(), b"one\r\n".to_vec()),
        (envelope, b"two\r\n".to_vec()),
    ];
    let mut op: OwnedOperation = Operation::send_batch(runner, messages);
    let results = script.drive_in_place(&mut op, &mut VecDeque::new()).batch();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.is_success()))
    );
    assert_eq!(
        script.wire.writes, 3,
        "the second MAIL chained behind the dot"
    );

    // The runner comes back for the next operation on the same connection.
    let runner = op.into_runner();
    assert!(!runner.is_closed());
    let mut op: OwnedOperation =
        Operation::command(runner, |session| session.noop(), Duration::from_secs(1));
    let reply = script
        .drive_in_place(&mut op, &mut VecDeque::new())
        .reply()
        .unwrap();
    assert_eq!(reply.code().get(), 250);
    assert!(
        script.written().ends_with("NOOP\r\n"),
        "{}",
        script.written()
    );
    assert_eq!(op.runner().id(), 7);
}

#[test]
fn a_refused_opportunistic_starttls_goes_on_in_clear() {
    let mut runner = runner(|config| config.starttls = StartTlsPolicy::Opportunistic);
    let mut script = Script::new(&[
        b"220 mx.example\r\n",
        b"250-mx.example\r\n250 STARTTLS\r\n",
        b"454 4.7.0 TLS not available\r\n",
    ]);
    let outcome = script.drive(runner.connect(), &mut VecDeque::new());
    assert!(matches!(outcome, Outcome::Ready), "{outcome:?}");
    assert_eq!(script.written(), "EHLO client.example\r\nSTARTTLS\r\n");
    assert!(!runner.is_closed() && !runner.session().is_tls());
}

#[test]
fn a_fatal_error_says_goodbye_and_closes() {
    let (mut runner, mut script) = connected(b"250 mx.example\r\n");
    script.replies.push_back(b"421 4.3.2 shutting down\r\n");
    let error = script
        .drive(
            runner.command(ClientSession::noop, Duration::from_secs(1)),
            &mut VecDeque::new(),
        )
        .reply()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ServerClosed);
    assert!(script.wire.closed && !script.wire.aborted);
    assert!(runner.is_closed());
    let next = runner.command(ClientSession::noop, Duration::from_secs(2));
    let error = Script::new(&[])
        .drive(next, &mut VecDeque::new())
        .reply()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotReady);
}

#[test]
fn refused_credentials_end_connect_with_a_quit() {
    let mut runner = runner(|config| {
        config.credentials = Some(crate::auth::Credentials::password("u", "p"));
        // The scripted server speaks clear text; the refusal is under test.
        config.allow_insecure_auth = true;
    });
    let mut script = Script::new(&[
        b"220 mx.example\r\n",
        b"250-mx.example\r\n250 AUTH PLAIN\r\n",
        b"535 5.7.8 no\r\n",
    ]);
    let error = script
        .drive(runner.connect(), &mut VecDeque::new())
        .ready()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AuthFailed);
    assert!(
        script.written().ends_with("QUIT\r\n"),
        "{}",
        script.written()
    );
    assert!(script.wire.closed);
}

#[test]
fn credentials_in_clear_end_connect_with_a_quit_and_no_auth() {
    let mut runner = runner(|config| {
        config.credentials = Some(crate::auth::Credentials::password("u", "p"));
    });
    let mut script = Script::new(&[
        b"220 mx.example\r\n",
        b"250-mx.example\r\n250 AUTH PLAIN\r\n",
    ]);
    let error = script
        .drive(runner.connect(), &mut VecDeque::new())
        .ready()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InsecureAuth);
    assert!(error.to_string().contains("without TLS"), "{error}");
    assert!(error.reply().is_none() && !error.is_transient());
    assert_eq!(script.written(), "EHLO client.example\r\nQUIT\r\n");
    assert!(script.wire.closed);
    assert!(runner.is_closed());
}

#[test]
fn a_connection_lost_before_the_final_reply_fails_the_send() {
    let (mut runner, mut script) = connected(b"250-mx.example\r\n250 PIPELINING\r\n");
    script.replies.push_back(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let envelope = Envelope::new("a@example.com", ["b@example.com"]).unwrap();
    let op = runner.send(&envelope, None, Duration::from_secs(1));
    // The server hangs up while waiting for the final reply.
    let mut body = VecDeque::from([Ok(&b"half a message\r\n"[..])]);
    let error = script.drive(op, &mut body).transaction().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert!(runner.is_closed());
}

#[test]
fn a_failing_message_source_drops_the_connection() {
    let (mut runner, mut script) = connected(b"250-mx.example\r\n250 PIPELINING\r\n");
    script.replies.push_back(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let envelope = Envelope::new("a@example.com", ["b@example.com"]).unwrap();
    let op = runner.send(&envelope, None, Duration::from_secs(1));
    let mut body = VecDeque::from([Ok(&b"half\r\n"[..]), Err(())]);
    let error = script.drive(op, &mut body).transaction().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MessageSource);
    // Dropped, not closed with a final dot or close_notify: nothing looks finished.
    assert!(script.wire.aborted && !script.wire.closed);
    assert!(!script.written().contains("\r\n.\r\n"));
    assert!(runner.is_closed());
}

#[test]
fn quit_after_the_server_hung_up_is_not_an_error() {
    let (mut runner, mut script) = connected(b"250 mx.example\r\n");
    let outcome = script.drive(runner.quit(Duration::from_secs(1)), &mut VecDeque::new());
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    assert_eq!(script.written(), "QUIT\r\n");
    assert!(script.wire.closed);
}
