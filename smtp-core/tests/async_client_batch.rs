//! `send_batch` of both clients against the blocking server, with and without CHUNKING:
//! every message delivered once, in order, each outcome in its place. (The wire-level
//! chaining is checked against a scripted server in blocking_client.rs.)
#![cfg(feature = "tokio")]

use std::path::PathBuf;
use std::time::Duration;

use smtp_core::asynchronous::client::AsyncSmtpClient;
use smtp_core::blocking::client::{ClientOptions, SmtpClient, TlsMode};
use smtp_core::blocking::server::{Server, ServerOptions};
use smtp_core::client::Envelope;
use smtp_core::maildir::MaildirHandler;
use smtp_core::server::ServerConfig;

struct Maildir {
    root: PathBuf,
    server: Option<Server>,
}

impl Maildir {
    fn serve(name: &str, chunking: bool) -> Maildir {
        let root = std::env::temp_dir().join(format!("smtpx-batch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let handler = MaildirHandler::new(&root, "mx.test").unwrap();
        let mut config = ServerConfig::new("mx.test");
        config.chunking = chunking;
        config.max_recipients = 10;
        let server = Server::builder(handler, ServerOptions::new(config))
            .listen("127.0.0.1:0")
            .unwrap()
            .start()
            .unwrap();
        Maildir {
            root,
            server: Some(server),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().local_addrs()[0]
    }

    /// The stored messages, from their Subject on (after the Received header block).
    fn bodies(&mut self) -> Vec<String> {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(5));
        }
        std::fs::read_dir(self.root.join("new"))
            .unwrap()
            .map(|e| {
                let text = String::from_utf8(std::fs::read(e.unwrap().path()).unwrap()).unwrap();
                text.split_once("Subject: ").unwrap().1.to_owned()
            })
            .collect()
    }
}

impl Drop for Maildir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn options() -> ClientOptions {
    let mut options = ClientOptions::new("client.test");
    options.tls = TlsMode::None;
    options
}

/// 60 messages: every seventh to a recipient list over the server's limit of 10 (the
/// 11th is refused, the rest accepted), so refusals sit between accepted messages.
fn messages() -> (Vec<Envelope>, Vec<Vec<u8>>) {
    let many: Vec<String> = (0..11).map(|i| format!("r{i}@example.net")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let envelopes = (0..60)
        .map(|n| {
            if n % 7 == 3 {
                Envelope::new("a@example.org", &many).unwrap()
            } else {
                Envelope::new("a@example.org", ["b@example.net"]).unwrap()
            }
        })
        .collect();
    let bodies = (0..60)
        .map(|n| format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes())
        .collect();
    (envelopes, bodies)
}

fn check(
    outcomes: Vec<Result<smtp_core::TransactionResult, smtp_core::blocking::client::Error>>,
    mut maildir: Maildir,
) {
    assert_eq!(outcomes.len(), 60);
    for (n, outcome) in outcomes.iter().enumerate() {
        let result = outcome.as_ref().unwrap();
        assert!(result.is_success(), "message {n}: {result:?}");
        let refused = result.refused().count();
        assert_eq!(refused, usize::from(n % 7 == 3), "message {n}");
    }
    let bodies = maildir.bodies();
    assert_eq!(bodies.len(), 60);
    let mut seen: Vec<String> = bodies
        .iter()
        .map(|b| b.split("\r\n").next().unwrap().to_owned())
        .collect();
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(seen, (0..60).map(|n| n.to_string()).collect::<Vec<_>>());
}

#[test]
fn blocking_send_batch_with_and_without_chunking() {
    for chunking in [false, true] {
        let maildir = Maildir::serve(&format!("blocking-{chunking}"), chunking);
        let (envelopes, bodies) = messages();
        let mut client = SmtpClient::connect(maildir.addr(), "localhost", options()).unwrap();
        let outcomes = client.send_batch(envelopes.iter().zip(bodies.iter().map(Vec::as_slice)));
        client.quit().unwrap();
        check(outcomes, maildir);
    }
}

#[test]
fn async_send_batch_with_and_without_chunking() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for chunking in [false, true] {
        let maildir = Maildir::serve(&format!("async-{chunking}"), chunking);
        let (envelopes, bodies) = messages();
        let addr = maildir.addr();
        let outcomes = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), async {
                let mut client = AsyncSmtpClient::connect(addr, "localhost", options())
                    .await
                    .unwrap();
                let outcomes = client
                    .send_batch(envelopes.iter().zip(bodies.iter().map(Vec::as_slice)))
                    .await;
                client.quit().await.unwrap();
                outcomes
            })
            .await
            .expect("the batch finished in time")
        });
        check(outcomes, maildir);
    }
}
