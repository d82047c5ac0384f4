//! `send_batch_with`: each message's outcome reaches the caller as soon as its final reply
//! is read, while later messages are still under way, on the blocking and the tokio client
//! (and through a pooled connection); errors in the middle of a batch are reported for the
//! message they belong to.
//!
//! The server is the crate's blocking server with a handler that decides by the sender's
//! local part: `hold` waits in `data_end` until the test releases it (bounded), `reject`
//! refuses the message, `bye` answers 421 and ends the connection.
#![cfg(feature = "tokio")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_core::asynchronous::client::AsyncSmtpClient;
use smtp_core::asynchronous::pool::AsyncSmtpPool;
use smtp_core::blocking::client::{ClientOptions, SmtpClient, TlsMode};
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::client::pool::PoolConfig;
use smtp_core::client::{Envelope, Error, ErrorKind, TransactionResult};
use smtp_core::handler::{ConnectionInfo, Handler, SessionHandler, Transaction};
use smtp_core::reply::Reply;
use smtp_core::server::{Decision, ServerConfig};

/// How long the held message waits for the test's release before the server gives up.
const HOLD_LIMIT: Duration = Duration::from_secs(10);

/// What the server saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// Held messages released by the test (rather than by `HOLD_LIMIT`).
    released: AtomicUsize,
    /// Held messages that waited out `HOLD_LIMIT`.
    gave_up: AtomicUsize,
}

struct Scripted {
    release: Arc<Mutex<Receiver<()>>>,
    seen: Arc<Seen>,
}

struct ScriptedSession {
    release: Arc<Mutex<Receiver<()>>>,
    seen: Arc<Seen>,
}

impl Handler for Scripted {
    type Session = ScriptedSession;
    fn connect(&self, _: &ConnectionInfo) -> Result<ScriptedSession, Reply> {
        Ok(ScriptedSession {
            release: Arc::clone(&self.release),
            seen: Arc::clone(&self.seen),
        })
    }
}

impl SessionHandler for ScriptedSession {
    fn data_chunk(&mut self, _: &[u8]) -> Result<(), Reply> {
        Ok(())
    }

    fn data_end(&mut self, transaction: &Transaction) -> Decision {
        let from = transaction
            .from
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_default();
        if from.contains("hold@") {
            let released = self.release.lock().unwrap().recv_timeout(HOLD_LIMIT);
            let counter = match released {
                Ok(()) => &self.seen.released,
                Err(_) => &self.seen.gave_up,
            };
            counter.fetch_add(1, Ordering::SeqCst);
            Decision::Accept
        } else if from.contains("reject@") {
            Decision::reject(554, "5.7.1", "content refused")
        } else if from.contains("bye@") {
            Decision::reject(421, "4.3.0", "going away")
        } else {
            Decision::Accept
        }
    }
}

struct Fixture {
    server: Option<Server>,
    release: Sender<()>,
    seen: Arc<Seen>,
}

impl Fixture {
    fn serve(chunking: bool) -> Fixture {
        let (release, receiver) = channel();
        let seen = Arc::new(Seen::default());
        let handler = Scripted {
            release: Arc::new(Mutex::new(receiver)),
            seen: Arc::clone(&seen),
        };
        let mut config = ServerConfig::new("mx.test");
        config.chunking = chunking;
        config.max_message_size = 4096;
        let server = Server::builder(handler, ServerOptions::new(config))
            .listen("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap();
        Fixture {
            server: Some(server),
            release,
            seen,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().local_addrs()[0]
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // A held message still waiting is let go, so that shutdown is quick.
        let _ = self.release.send(());
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(5));
        }
    }
}

fn options() -> ClientOptions {
    let mut options = ClientOptions::new("client.test");
    options.tls = TlsMode::None;
    options
}

/// Messages from the given senders' local parts, each to one recipient.
fn batch(senders: &[&str]) -> Vec<(Envelope, Vec<u8>)> {
    senders
        .iter()
        .enumerate()
        .map(|(n, sender)| {
            let envelope = Envelope::new(format!("{sender}@example.org"), ["to@example.net"]);
            let body = format!("Subject: message {n}\r\n\r\nbody {n}\r\n").into_bytes();
            (envelope.unwrap(), body)
        })
        .collect()
}

/// The third message is held by the server until the caller has seen the first two
/// outcomes: the callback releases it on seeing message 1's. Were outcomes only given at
/// the end, the server would wait out `HOLD_LIMIT` and count it in `gave_up`.
const HELD_THIRD: [&str; 5] = ["ok", "ok", "hold", "ok", "ok"];

/// Checks the outcomes of a `HELD_THIRD` batch and what the server saw.
fn check_held_third(fixture: &Fixture, seen_order: &[(usize, bool)], given: usize) {
    assert_eq!(given, 5);
    let expected: Vec<(usize, bool)> = (0..5).map(|i| (i, true)).collect();
    assert_eq!(seen_order, expected.as_slice());
    assert_eq!(fixture.seen.released.load(Ordering::SeqCst), 1);
    assert_eq!(fixture.seen.gave_up.load(Ordering::SeqCst), 0);
}

/// A callback for a `HELD_THIRD` batch: records (index, success) and releases the held
/// message once message 1's outcome is in.
fn releasing(
    seen_order: &mut Vec<(usize, bool)>,
    release: Sender<()>,
) -> impl FnMut(usize, Result<TransactionResult, Error>) + '_ {
    move |index, outcome| {
        seen_order.push((index, outcome.is_ok_and(|r| r.is_success())));
        if index == 1 {
            release.send(()).unwrap();
        }
    }
}

#[test]
fn blocking_outcomes_arrive_before_the_batch_ends() {
    for chunking in [false, true] {
        let fixture = Fixture::serve(chunking);
        let mut client = SmtpClient::connect(fixture.addr(), "mx.test", options()).unwrap();
        let mut seen_order = Vec::new();
        let given = client.send_batch_with(
            batch(&HELD_THIRD),
            releasing(&mut seen_order, fixture.release.clone()),
        );
        check_held_third(&fixture, &seen_order, given);
        client.quit().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_outcomes_arrive_before_the_batch_ends() {
    for chunking in [false, true] {
        let fixture = Fixture::serve(chunking);
        let mut client = AsyncSmtpClient::connect(fixture.addr(), "mx.test", options())
            .await
            .unwrap();
        let mut seen_order = Vec::new();
        let sending = client.send_batch_with(
            batch(&HELD_THIRD),
            releasing(&mut seen_order, fixture.release.clone()),
        );
        let given = tokio::time::timeout(Duration::from_secs(30), sending)
            .await
            .expect("the batch is bounded");
        check_held_third(&fixture, &seen_order, given);
        client.quit().await.unwrap();
    }
}

/// A batch with a refused message, one over the server's size limit (refused by the client
/// before it is sent, the connection still usable) and a 421 that ends the connection: each
/// outcome is given for its own message, and nothing after the 421.
const MIXED: [&str; 6] = ["ok", "reject", "big", "ok", "bye", "ok"];

fn mixed_batch() -> Vec<(Envelope, Vec<u8>)> {
    let mut messages = batch(&MIXED);
    messages[2].1 = vec![b'x'; 10_000];
    messages
}

fn check_mixed(outcomes: &[(usize, Result<TransactionResult, Error>)], given: usize) {
    assert_eq!(given, 5, "{outcomes:?}");
    let indices: Vec<usize> = outcomes.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4]);
    let success = |n: usize| {
        outcomes[n]
            .1
            .as_ref()
            .is_ok_and(TransactionResult::is_success)
    };
    assert!(success(0) && success(3), "{outcomes:?}");
    let refused = outcomes[1].1.as_ref().unwrap();
    assert!(!refused.is_success());
    assert_eq!(refused.data.as_ref().map(|d| d.code().get()), Some(554));
    let too_large = outcomes[2].1.as_ref().unwrap_err();
    assert_eq!(
        too_large.kind(),
        ErrorKind::MessageTooLarge,
        "{too_large:?}"
    );
    match &outcomes[4].1 {
        Err(error) => assert!(matches!(error.kind(), ErrorKind::ServerClosed), "{error:?}"),
        Ok(result) => panic!("a 421 is not a transaction outcome: {result:?}"),
    }
}

#[test]
fn blocking_errors_mid_batch_belong_to_their_message() {
    for chunking in [false, true] {
        let fixture = Fixture::serve(chunking);
        let mut client = SmtpClient::connect(fixture.addr(), "mx.test", options()).unwrap();
        let mut outcomes = Vec::new();
        let given = client.send_batch_with(mixed_batch(), |i, o| outcomes.push((i, o)));
        check_mixed(&outcomes, given);
        assert!(client.is_closed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_errors_mid_batch_belong_to_their_message() {
    for chunking in [false, true] {
        let fixture = Fixture::serve(chunking);
        let mut client = AsyncSmtpClient::connect(fixture.addr(), "mx.test", options())
            .await
            .unwrap();
        let mut outcomes = Vec::new();
        let sending = client.send_batch_with(mixed_batch(), |i, o| outcomes.push((i, o)));
        let given = tokio::time::timeout(Duration::from_secs(30), sending)
            .await
            .expect("the batch is bounded");
        check_mixed(&outcomes, given);
        assert!(client.is_closed());
    }
}

/// `send_batch` is `send_batch_with` collected: the same outcomes, in a list.
#[test]
fn send_batch_lists_what_send_batch_with_gives() {
    let fixture = Fixture::serve(false);
    let mut client = SmtpClient::connect(fixture.addr(), "mx.test", options()).unwrap();
    let listed: Vec<(usize, Result<TransactionResult, Error>)> = client
        .send_batch(mixed_batch())
        .into_iter()
        .enumerate()
        .collect();
    check_mixed(&listed, listed.len());
}

/// Through a pooled connection: outcomes streamed the same way, and each message counted
/// against `max_messages` (a connection that sent its share is closed when given back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connection_streams_and_counts_each_message() {
    let fixture = Fixture::serve(false);
    let pool = AsyncSmtpPool::new(
        fixture.addr(),
        "mx.test",
        options(),
        PoolConfig::new(1).max_messages(5),
    )
    .unwrap();
    let mut seen_order = Vec::new();
    let given = {
        let mut pooled = pool.get().await.unwrap();
        let sending = pooled.send_batch_with(
            batch(&HELD_THIRD),
            releasing(&mut seen_order, fixture.release.clone()),
        );
        tokio::time::timeout(Duration::from_secs(30), sending)
            .await
            .expect("the batch is bounded")
    };
    check_held_third(&fixture, &seen_order, given);
    assert_eq!(pool.status(), (0, 0), "retired after its 5 messages");
    pool.close().await;
}
