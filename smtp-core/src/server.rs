//! The server side of an SMTP (or LMTP) session as a sans-IO state machine.
//!
//! A [`ServerSession`] owns no socket, thread or clock. The embedder feeds it the bytes it
//! read ([`ServerSession::receive`]), pulls [`ServerEvent`]s ([`ServerSession::poll_event`]),
//! answers the events that ask for a [`Decision`] ([`ServerSession::decide`]), and writes
//! what [`ServerSession::output`] holds. Time comes in as a `Duration` read from any
//! monotonic clock the embedder likes; the session says when it next needs to be woken
//! ([`ServerSession::next_deadline`]) and what happens then ([`ServerSession::handle_timeout`]).
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};
//!
//! let now = Duration::ZERO;
//! let mut session = ServerSession::new(ServerConfig::new("mx.example"), now);
//! let mut wire = Vec::new();
//! let mut drive = |session: &mut ServerSession, input: &[u8]| {
//!     session.receive(input, now);
//!     while let Some(event) = session.poll_event() {
//!         if event.needs_decision() {
//!             session.decide(Decision::Accept).unwrap();
//!         }
//!     }
//!     wire.extend_from_slice(session.output());
//!     session.clear_output();
//! };
//! drive(&mut session, b"");
//! // EHLO ends a pipelining group: the client waits for its reply before the next group.
//! drive(&mut session, b"EHLO client.example\r\n");
//! drive(&mut session, b"MAIL FROM:<a@b.example>\r\nQUIT\r\n");
//! let text = String::from_utf8(wire).unwrap();
//! assert!(text.starts_with("220 mx.example ESMTP"));
//! assert!(text.contains("250 2.1.0"));
//! assert!(text.ends_with("221 2.0.0 Bye\r\n"));
//! assert!(session.is_closed());
//! ```
//!
//! Pipelining (RFC 2920) falls out of this shape: every command in one read is answered into
//! the same output buffer, which the embedder writes once.

pub mod connection;
pub mod dispatch;
pub mod handlers;
pub mod hooks;
pub mod message;
pub mod options;
pub mod proxy;
pub mod relay;

mod admission;
mod apply;
mod config;
mod decision;
mod event;
mod framing;
mod replies;
mod sasl;
mod session;
mod wrap;

pub use config::{CommandLimits, ServerConfig};
pub use event::{AbortReason, Decision, HelloVerb, NoDecisionPending, ServerEvent};
pub use options::{ListenerOptions, ServerOptions};
pub use session::ServerSession;
