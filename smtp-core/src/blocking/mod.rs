//! Blocking drivers: the engine on `std::net` sockets with rustls.
//!
//! - [`SmtpClient`] ([`client`]): connect, STARTTLS or implicit TLS, AUTH, and send messages
//!   with a result for every recipient.
//! - [`Server`] ([`server`]): listeners, a thread per connection, STARTTLS and implicit TLS.
//!
//! Their options and errors live in the neutral modules, shared with the async drivers:
//! [`crate::client::ClientOptions`], [`crate::client::Error`],
//! [`crate::server::ServerOptions`].

pub mod client;
pub mod pool;
pub mod server;

pub use client::SmtpClient;
pub use server::Server;
