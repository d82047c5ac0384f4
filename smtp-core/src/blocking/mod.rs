//! Blocking drivers: the engine on `std::net` sockets with rustls.
//!
//! - [`client::SmtpClient`]: connect, STARTTLS or implicit TLS, AUTH, and send messages
//!   with a result for every recipient.

pub mod client;
pub mod pool;
pub mod server;
