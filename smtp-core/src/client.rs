//! The client side of an SMTP (or LMTP) session as a sans-IO state machine.
//!
//! A [`ClientSession`] reads the greeting, sends EHLO (falling back to HELO), upgrades with
//! STARTTLS and authenticates as its [`ClientConfig`] says, then reports
//! [`ClientEvent::Ready`]. Transactions go out one command at a time, or as one pipelined
//! batch when the server offers PIPELINING, and with BDAT when it offers CHUNKING. Every
//! transaction ends with a [`TransactionResult`] that holds a reply for every recipient: one
//! refused recipient never stops the others.
//!
//! The embedder moves bytes: it passes what it reads to [`ClientSession::receive`], writes
//! what [`ClientSession::output`] holds, and reacts to [`ClientEvent`]s.
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::client::{ClientConfig, ClientEvent, ClientSession, Envelope};
//!
//! let now = Duration::ZERO;
//! let mut client = ClientSession::new(ClientConfig::new("client.example"), now).unwrap();
//! client.receive(b"220 mx.example ESMTP\r\n", now);
//! assert_eq!(client.take_output(), b"EHLO client.example\r\n");
//! client.receive(b"250-mx.example\r\n250 PIPELINING\r\n", now);
//! assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
//!
//! let envelope = Envelope::new("a@example.com", ["b@example.com"]).unwrap();
//! client.send_mail(&envelope, None).unwrap();
//! // Pipelined: MAIL, RCPT and DATA leave in one write.
//! assert_eq!(client.take_output(), b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
//! client.receive(b"250 ok\r\n250 ok\r\n354 go\r\n", now);
//! assert_eq!(client.poll_event(), Some(ClientEvent::SendBody));
//! client.send_body(b"Subject: hi\n\n.hello\n").unwrap();
//! client.finish_body().unwrap();
//! assert_eq!(client.take_output(), b"Subject: hi\r\n\r\n..hello\r\n.\r\n");
//! client.receive(b"250 2.0.0 Ok: queued as 4XyZ\r\n", now);
//! let Some(ClientEvent::TransactionComplete(result)) = client.poll_event() else { panic!() };
//! assert!(result.is_success());
//! assert_eq!(result.queue_id(), Some("4XyZ"));
//! ```

pub(crate) mod api;
pub(crate) mod batch;
pub mod error;
pub mod options;
pub mod pool;
pub mod runner;

mod config;
mod envelope;
mod event;
mod phase;
mod raw;
mod replies;
mod result;
mod session;
mod stepwise;
mod too_large;
mod transaction;

pub use batch::BatchMessage;
pub use config::{ClientConfig, ClientTimeouts, StartTlsPolicy};
pub use envelope::{AddressRole, Envelope, InvalidAddress, Recipient};
pub use error::{Error, ErrorKind};
/// The engine's error ([`ClientError`]) by the name that says whose it is: the sans-IO
/// session's, as opposed to [`Error`], what the drivers return.
pub use event::ClientError as SessionError;
pub use event::{ClientError, ClientEvent};
pub use options::{ClientOptions, TlsMode};
pub use phase::Phase;
pub use result::{RecipientResult, TransactionResult};
pub use session::ClientSession;
pub use too_large::{SendOutcome, TooLarge};
