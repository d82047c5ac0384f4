//! Async drivers on tokio (feature `tokio`): the same engine, the same options and errors
//! as the [blocking drivers](crate::blocking), over `tokio::net` and `tokio-rustls`.
//!
//! - [`client::AsyncSmtpClient`]: the client, with STARTTLS and implicit TLS.
//! - [`server::AsyncServer`]: listeners, a task per connection, STARTTLS and implicit TLS,
//!   a connection limit, per-command deadlines and graceful shutdown; user code is either
//!   the synchronous [`Handler`](crate::handler::Handler) or an
//!   [`AsyncHandler`](server::AsyncHandler).
//!
//! Like the blocking drivers these own no protocol logic: they move bytes, keep time
//! (deadlines come from the session's `next_deadline` and become `tokio::time::timeout_at`)
//! and do TLS handshakes.

pub mod client;
mod phase;
pub mod pool;
pub mod server;
mod spare_worker;

pub use client::AsyncSmtpClient;
pub use server::AsyncServer;
