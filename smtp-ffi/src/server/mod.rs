//! The blocking SMTP server: `smtpx_handler` (C callbacks) and `smtpx_server`.
//!
//! A thin translation of [`smtp_core::blocking::server`]: a configuration builder, a
//! handler given either as the built-in Maildir delivery or as a table of C callbacks,
//! and a running server with a thread per connection.
//!
//! The modules, by concept: [`handler`] (`smtpx_handler`, the C callback table, and the
//! engine's handler over it) and [`run`] (`smtpx_server`: start, ports, stop), and
//! [`call`] (`smtpx_server_call_*`: what a callback may ask about its connection), and
//! `reentry` (how a stop from inside the server's own callbacks is told apart). Every
//! public item is re-exported here.

pub mod call;
pub mod handler;
pub(crate) mod reentry;
pub mod run;

pub use call::*;
pub use handler::*;
pub use run::*;
