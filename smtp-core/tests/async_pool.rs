//! The tokio connection pool against a real server on loopback: bounded, shared between
//! tasks, reused, checked after idling, retired after `max_messages`, and a result per
//! message.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use smtp_core::asynchronous::pool::AsyncSmtpPool;
use smtp_core::blocking::client::{ClientOptions, TlsMode};
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::client::Envelope;
use smtp_core::client::pool::PoolConfig;
use smtp_core::handler::{ConnectionInfo, Handler, SessionHandler};
use smtp_core::reply::Reply;
use smtp_core::server::ServerConfig;

/// Counts connections and NOOPs-free messages; refuses recipients named `refused@…`.
#[derive(Clone, Default)]
struct Counting {
    connections: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
}

struct CountingSession(Counting);

impl Handler for Counting {
    type Session = CountingSession;
    fn connect(&self, _info: &ConnectionInfo) -> Result<CountingSession, Reply> {
        self.connections.fetch_add(1, Ordering::SeqCst);
        Ok(CountingSession(self.clone()))
    }
}

impl SessionHandler for CountingSession {
    fn rcpt(
        &mut self,
        to: &smtp_core::ForwardPath,
        _params: &smtp_core::command::RcptParameters,
    ) -> smtp_core::Decision {
        if to.to_string().contains("refused@") {
            return smtp_core::Decision::Reply(Reply::new(
                smtp_core::ReplyCode::MAILBOX_UNAVAILABLE,
                None,
                "no",
            ));
        }
        smtp_core::Decision::Accept
    }
    fn data_end(&mut self, _t: &smtp_core::handler::Transaction) -> smtp_core::Decision {
        self.0.messages.fetch_add(1, Ordering::SeqCst);
        smtp_core::Decision::Accept
    }
}

fn serve() -> (Server, Counting) {
    let counting = Counting::default();
    let server = Server::builder(
        counting.clone(),
        ServerOptions::new(ServerConfig::new("mx.test")),
    )
    .listen("127.0.0.1:0")
    .unwrap()
    .start()
    .unwrap();
    (server, counting)
}

fn options() -> ClientOptions {
    let mut options = ClientOptions::new("pool.test");
    options.tls = TlsMode::None;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_share_a_bounded_pool_with_a_result_per_message() {
    let (server, counting) = serve();
    let pool = AsyncSmtpPool::new(
        server.local_addrs()[0],
        "localhost",
        options(),
        PoolConfig::new(4).max_messages(25),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..20 {
                let to = if (task + i) % 10 == 0 {
                    "refused@example.net"
                } else {
                    "ok@example.net"
                };
                let envelope = Envelope::new("s@example.org", [to, "ok2@example.net"]).unwrap();
                let result = pool
                    .send_bytes(&envelope, b"Subject: pooled\r\n\r\nx\r\n")
                    .await
                    .unwrap();
                assert!(pool.status().0 <= 4);
                outcomes.push((to, result));
            }
            outcomes
        }));
    }
    let mut refused = 0;
    for task in tasks {
        for (to, result) in task.await.unwrap() {
            assert!(result.data.as_ref().unwrap().is_completion());
            let first = &result.recipients[0].reply;
            if to.starts_with("refused") {
                refused += 1;
                assert_eq!(first.code().get(), 550);
            } else {
                assert!(first.is_completion());
            }
        }
    }
    assert_eq!(refused, 16);
    assert_eq!(counting.messages.load(Ordering::SeqCst), 160);
    // 160 messages, at most 25 per connection: at least 7 connections, far fewer than 160.
    let opened = counting.connections.load(Ordering::SeqCst);
    assert!((7..=20).contains(&opened), "{opened} connections");
    pool.close().await;
    assert_eq!(pool.status(), (0, 0));
    server.shutdown(Duration::from_secs(5));
}

#[tokio::test]
async fn an_idle_connection_is_checked_and_a_dead_one_replaced() {
    let (server, counting) = serve();
    let addr = server.local_addrs()[0];
    let config = PoolConfig::new(1).check_after(Duration::ZERO);
    let pool = AsyncSmtpPool::new(addr, "localhost", options(), config).unwrap();
    let envelope = Envelope::new("s@example.org", ["ok@example.net"]).unwrap();
    pool.send_bytes(&envelope, b"one\r\n").await.unwrap();
    pool.send_bytes(&envelope, b"two\r\n").await.unwrap();
    assert_eq!(counting.connections.load(Ordering::SeqCst), 1);
    // The server goes away and comes back on the same port: the pooled connection fails
    // its NOOP and a new one carries the message.
    server.shutdown(Duration::from_secs(5));
    let counting2 = Counting::default();
    let server2 = Server::builder(
        counting2.clone(),
        ServerOptions::new(ServerConfig::new("mx.test")),
    )
    .listen(addr)
    .unwrap()
    .start()
    .unwrap();
    let result = pool.send_bytes(&envelope, b"three\r\n").await.unwrap();
    assert!(result.is_success());
    assert_eq!(counting2.connections.load(Ordering::SeqCst), 1);
    pool.close().await;
    server2.shutdown(Duration::from_secs(5));
}

#[tokio::test]
async fn idle_connections_expire() {
    let (server, counting) = serve();
    let config = PoolConfig::new(2).idle_timeout(Duration::from_millis(100));
    let pool = AsyncSmtpPool::new(server.local_addrs()[0], "localhost", options(), config).unwrap();
    let envelope = Envelope::new("s@example.org", ["ok@example.net"]).unwrap();
    pool.send_bytes(&envelope, b"one\r\n").await.unwrap();
    assert_eq!(pool.status(), (1, 1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    pool.reap().await;
    assert_eq!(pool.status(), (0, 0));
    pool.send_bytes(&envelope, b"two\r\n").await.unwrap();
    assert_eq!(counting.connections.load(Ordering::SeqCst), 2);
    pool.close().await;
    server.shutdown(Duration::from_secs(5));
}
