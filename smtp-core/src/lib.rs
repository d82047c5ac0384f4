//! smtp_core: one sans-IO SMTP engine for both sides of the conversation, with blocking
//! and tokio drivers around it.
//!
//! The engine takes bytes and returns bytes plus events; it owns no sockets, threads or
//! clocks, so the same code runs under a blocking driver, an async runtime, a C event loop
//! or Python's asyncio.
//!
//! ```toml
//! [dependencies]
//! smtp-core = "0.1"                                          # blocking drivers, TLS by ring
//! # smtp-core = { version = "0.1", features = ["tokio"] }     # + the async drivers
//! # smtp-core = { version = "0.1", default-features = false, features = ["aws-lc-rs"] }
//! ```
//!
//! # Getting started
//!
//! ## Send a message
//!
//! [`blocking::SmtpClient`] connects, greets, upgrades with STARTTLS and authenticates as
//! its [`ClientOptions`](client::ClientOptions) say, then sends messages and gives a result
//! for every recipient (one refused recipient never stops the others). Here it sends to a
//! server started on a free local port, so that the example runs anywhere:
//!
//! ```
//! use smtp_core::blocking::{Server, SmtpClient};
//! use smtp_core::client::{ClientOptions, Envelope, TlsMode};
//! use smtp_core::handler::DiscardHandler;
//! use smtp_core::server::{ServerConfig, ServerOptions};
//!
//! # let server = Server::builder(DiscardHandler, ServerOptions::new(ServerConfig::new("mx.test")))
//! #     .listen("127.0.0.1:0")?.start()?;
//! # let addr = server.local_addrs()[0];
//! let mut options = ClientOptions::new("client.example");  // the name we greet with
//! options.tls = TlsMode::None; // loopback only; the default, StartTlsRequired, is for networks
//! let mut client = SmtpClient::connect(addr, "localhost", options)?;
//! let envelope = Envelope::new("alice@example.org", ["bob@example.net", "carol@example.net"])?;
//! let result = client.send_bytes(&envelope, b"Subject: hello\r\n\r\nHi!\r\n")?;
//! for r in &result.recipients {
//!     println!("{}: {}", r.address, r.reply);
//! }
//! assert!(result.is_success());
//! client.quit()?;
//! # server.shutdown(std::time::Duration::from_secs(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Failures are one [`client::Error`] with a [`kind`](client::Error::kind); TLS failures
//! say whether the certificate or the set-up was at fault ([`client::Error::tls_kind`]).
//! [`send_batch`](blocking::SmtpClient::send_batch) sends many messages over one
//! connection ([`send_batch_with`](blocking::SmtpClient::send_batch_with) hands over each
//! outcome as soon as it is known); [`send`](blocking::SmtpClient::send) streams one from
//! any `Read`.
//!
//! ## Receive into a Maildir
//!
//! A [`blocking::Server`] runs a [`Handler`](handler::Handler) per connection;
//! [`MaildirHandler`](maildir::MaildirHandler) delivers into a Maildir (fsync'd before the
//! 250). TLS: [`tls::server_config_from_pem_files`] into [`ServerOptions::tls`](server::ServerOptions::tls)
//! (an end-entity certificate: see [`tls`] about test certificates).
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::blocking::Server;
//! use smtp_core::maildir::MaildirHandler;
//! use smtp_core::server::{ServerConfig, ServerOptions};
//!
//! let dir = std::env::temp_dir().join(format!("smtpx-guide-{}", std::process::id()));
//! let mut config = ServerConfig::new("mx.example");
//! config.max_message_size = 10 << 20; // announced as SIZE, enforced while reading
//! let server = Server::builder(MaildirHandler::new(&dir, "mx.example")?, ServerOptions::new(config))
//!     .listen("127.0.0.1:0")?
//!     .start()?;
//! println!("listening on {}", server.local_addrs()[0]);
//! server.shutdown(Duration::from_secs(5)); // lets transactions in flight finish
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## A custom handler
//!
//! Implement the hooks you need; every other hook keeps its default (accept, refuse AUTH).
//! Answer with [`Decision::Accept`] or a short form such as
//! [`Decision::reject`]. To get the whole message at once, as
//! go-smtp's `Data(io.Reader)` does, implement [`MessageHook`](handler::MessageHook) and
//! wrap the handler in [`WholeMessage`](handler::WholeMessage); for AUTH, implement `auth`
//! and [`Handler::auth_mechanisms`](handler::Handler::auth_mechanisms), or wrap in
//! [`PasswordAuth`](handler::PasswordAuth): the server then offers AUTH by itself.
//!
//! ```
//! use std::io::Read;
//! use smtp_core::address::ForwardPath;
//! use smtp_core::blocking::{Server, SmtpClient};
//! use smtp_core::client::{ClientOptions, Envelope, TlsMode};
//! use smtp_core::command::RcptParameters;
//! use smtp_core::handler::{ConnectionInfo, Handler, Message, MessageHook, PasswordAuth, SessionHandler, Transaction, WholeMessage};
//! use smtp_core::reply::Reply;
//! use smtp_core::server::{Decision, ServerConfig, ServerOptions};
//!
//! struct Inbox;
//! struct InboxSession;
//!
//! impl Handler for Inbox {
//!     type Session = InboxSession;
//!     fn connect(&self, info: &ConnectionInfo) -> Result<InboxSession, Reply> {
//!         println!("connection {} from {:?}", info.id, info.peer);
//!         Ok(InboxSession)
//!     }
//! }
//!
//! impl SessionHandler for InboxSession {
//!     fn rcpt(&mut self, to: &ForwardPath, _: &RcptParameters) -> Decision {
//!         if to.as_str().ends_with("@example.net") {
//!             Decision::Accept
//!         } else {
//!             Decision::reject(550, "5.7.1", "relaying denied")
//!         }
//!     }
//! }
//!
//! impl MessageHook for InboxSession {
//!     fn message(&mut self, transaction: &Transaction, mut message: Message<'_>) -> Decision {
//!         let mut text = Vec::new();
//!         if message.read_to_end(&mut text).is_err() {
//!             return Decision::temp_fail("try again later");
//!         }
//!         println!("{} bytes for {:?}", text.len(), transaction.recipients);
//!         Decision::queued("0001")
//!     }
//! }
//!
//! let handler = PasswordAuth::new(WholeMessage::new(Inbox), [("alice", "s3cret")]);
//! let server = Server::builder(handler, ServerOptions::new(ServerConfig::new("mx.test")))
//!     .listen("127.0.0.1:0")?
//!     .start()?;
//!
//! let mut options = ClientOptions::new("client.test");
//! options.tls = TlsMode::None;
//! let mut client = SmtpClient::connect(server.local_addrs()[0], "localhost", options)?;
//! let envelope = Envelope::new("a@example.org", ["b@example.net", "c@elsewhere.test"])?;
//! let result = client.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello\r\n")?;
//! assert_eq!(result.refused().count(), 1);
//! assert_eq!(result.queue_id(), Some("0001"));
//! client.quit()?;
//! server.shutdown(std::time::Duration::from_secs(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the `tokio` feature, [`asynchronous::AsyncServer`] runs the same handlers, or an
//! [`AsyncHandler`](handler::AsyncHandler) whose hooks are `async fn`s
//! ([`AsyncServer::builder_async`](asynchronous::AsyncServer::builder_async)); `PasswordAuth`
//! and `WholeMessage` (with [`AsyncMessageHook`](handler::AsyncMessageHook)) wrap those too.
//!
//! ## The sans-IO engine in your own loop
//!
//! [`ServerSession`] and [`ClientSession`]
//! are the protocol without I/O: feed bytes with `receive`, pull events with `poll_event`,
//! answer decisions with `decide`, write `output()`, and wake up at `next_deadline()`.
//! For a server, [`server::connection::Connection`] adds what every loop needs (hook
//! calls, held input, deadlines, STARTTLS hand-over, shutdown) as one "what now?"
//! question; `examples/rust/sans-io-server.rs` is a complete socket loop on it, with
//! deadlines. Two sessions talking in memory:
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::client::{ClientConfig, ClientEvent, ClientSession, Envelope};
//! use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};
//!
//! let now = Duration::ZERO;
//! let mut server = ServerSession::new(ServerConfig::new("mx.test"), now);
//! let mut client = ClientSession::new(ClientConfig::new("client.test"), now)?;
//! let envelope = Envelope::new("a@example.org", ["b@example.net"])?;
//! let (mut sent, mut done) = (false, false);
//! for _ in 0..100 {
//!     // Server: answer every decision (a real server asks its handler), pass its output on.
//!     while let Some(event) = server.poll_event() {
//!         if event.needs_decision() {
//!             server.decide(Decision::Accept)?;
//!         }
//!     }
//!     client.receive(&server.take_output(), now);
//!     // Client: react to its events, pass its output on.
//!     while let Some(event) = client.poll_event() {
//!         match event {
//!             ClientEvent::Ready if !sent => { client.send_mail(&envelope, None)?; sent = true; }
//!             ClientEvent::SendBody => { client.send_body(b"Subject: hi\r\n\r\nHi\r\n")?; client.finish_body()?; }
//!             ClientEvent::TransactionComplete(result) => { assert!(result.is_success()); done = true; }
//!             _ => {}
//!         }
//!     }
//!     let bytes = client.take_output();
//!     assert_eq!(server.receive(&bytes, now), bytes.len());
//!     if done { break; }
//! }
//! assert!(done);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Which module for what
//!
//! | You want to | Use |
//! |---|---|
//! | send mail (blocking) | [`blocking::SmtpClient`] with [`client::ClientOptions`], [`client::Envelope`] |
//! | send mail (tokio) | [`asynchronous::AsyncSmtpClient`], the same options and results |
//! | serve SMTP/LMTP (blocking / tokio) | [`blocking::Server`] / [`asynchronous::AsyncServer`] with [`server::ServerOptions`] |
//! | write server logic | [`handler`]: `Handler` + `SessionHandler` (or the `Async` pair), `WholeMessage`, `PasswordAuth` |
//! | store mail | [`maildir::MaildirHandler`] |
//! | answer a hook | [`server::Decision`] (`Accept`, `reject`, `temp_fail`, `queued`), [`reply::Reply`] |
//! | handle errors | [`client::Error`] + [`client::ErrorKind`] (drivers), [`tls::TlsErrorKind`] |
//! | TLS set-up | [`tls`]: `client_config`, `server_config_from_pem_files`, `RootCerts` |
//! | your own event loop | [`server::ServerSession`], [`server::connection::Connection`], [`client::ClientSession`], [`client::runner`] |
//! | protocol vocabulary | [`address`], [`command`], [`reply`], [`ehlo`], [`auth`], [`data`] |
//! | a wire log | [`trace`] |
//!
//! Names follow two rules. `*Config` is the sans-IO session's protocol settings
//! ([`client::ClientConfig`], [`server::ServerConfig`]); `*Options` is a driver's
//! settings around it ([`client::ClientOptions`], [`server::ServerOptions`], which holds
//! the `ServerConfig` as `session`). The engine's error is [`client::SessionError`] (also
//! named `ClientError`); what the drivers return is [`client::Error`]. The modules
//! `smtp_core::client` and `smtp_core::server` are the neutral homes of everything shared;
//! `blocking` and `asynchronous` only add the drivers (`blocking::client` and
//! `asynchronous::client` re-export the shared types for older code).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
#[cfg(feature = "tokio")]
pub mod asynchronous;
pub mod auth;
pub mod blocking;
pub mod client;
mod clock;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod handler;
pub mod maildir;
pub mod reply;
pub mod server;
pub mod tls;
pub mod trace;

pub use address::{Address, ForwardPath, ReversePath};
pub use client::{
    ClientConfig, ClientError, ClientEvent, ClientSession, Envelope, TransactionResult,
};
pub use command::Command;
pub use data::BareLinePolicy;
pub use reply::{EnhancedCode, Reply, ReplyCode};
pub use server::{Decision, ServerConfig, ServerEvent, ServerSession};

/// The README's Rust quick starts, compiled and run as doctests so that they stay true.
/// One of them is async, so they run with the `tokio` feature (as `make test` does).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
