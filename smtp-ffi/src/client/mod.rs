//! The blocking SMTP client: `smtpx_client_options`, `smtpx_client`, `smtpx_send_result`.
//!
//! A thin translation of [`smtp_core::blocking::client`]: options are collected in a
//! builder, `smtpx_client_connect` opens a ready session, and each call blocks until the
//! server has answered (or a timeout expires).
//!
//! The modules, by concept: [`options`] (`smtpx_client_options`, `smtpx_tls_mode`),
//! [`connection`] (`smtpx_client`: connect, STARTTLS, QUIT, capabilities, commands),
//! [`envelope`] (`smtpx_envelope`: DSN, BODY, SMTPUTF8), [`send`] (`smtpx_client_send`, `smtpx_client_send_batch`, `smtpx_client_send_stream`),
//! [`result`] (`smtpx_send_result`), and `error` (the last error and the result codes of
//! client errors). Every item is re-exported here.

pub mod connection;
pub mod envelope;
mod error;
pub mod options;
pub(crate) mod pooling;
pub mod result;
pub mod send;

pub use connection::*;
pub use envelope::*;
pub use options::*;
pub use result::*;
pub use send::*;
