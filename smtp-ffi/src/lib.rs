//! The C ABI of smtpx: `libsmtpx.so`, `libsmtpx.a` and `include/smtpx.h`.
//!
//! This crate translates types and errors between C and [`smtp_core`]; it owns no
//! protocol logic. The header is generated from these sources by cbindgen (see
//! `cbindgen.toml`), checked in as `include/smtpx.h`, and kept current by
//! `tests/header.rs`: after changing anything exported here, run
//! `SMTPX_BLESS=1 cargo test -p smtp-ffi --test header`.
//!
//! # Conventions
//!
//! - Every exported symbol is `smtpx_*`; every macro and enum value is `SMTPX_*`.
//! - Fallible functions return [`smtpx_result`] (`SMTPX_RESULT_OK` is 0). Its values are
//!   grouped in ranges and never reused.
//! - Strings returned as `const char *` are static, NUL-terminated and owned by the
//!   library: never free them.
//! - No panic crosses the boundary: each exported body runs inside
//!   [`panic::ffi_panic_boundary`], and a caught panic becomes `SMTPX_RESULT_PANIC`, NULL
//!   or 0 (depending on the return type). This needs the default `panic = "unwind"`; a
//!   build with `panic = "abort"` aborts instead.
//! - Parameter order: the object first, then inputs, then outputs; a byte buffer is
//!   followed by its `size_t` length. Out-parameters are written only on success.
//! - String arguments are `const char *`, NUL-terminated and UTF-8
//!   (`SMTPX_RESULT_INVALID_UTF8` otherwise); CR or LF in anything that goes into a
//!   protocol line gives `SMTPX_RESULT_INJECTION` before anything is sent.
//! - Objects are created by `*_new`/`*_connect`/`*_start*` and released by their
//!   `*_free`, which accepts NULL and must be called once. Strings and replies borrowed
//!   from an object live as long as the object says (at most until it is freed).
//! - Objects that fail keep the detail: `smtpx_client_last_error` (and the server reply
//!   behind it), `smtpx_client_options_last_error` for a failed connect,
//!   `smtpx_server_config_last_error` for a failed start.
//! - Thread safety is stated on every item. Server callbacks run on connection threads.
//!
//! # Modules
//!
//! - [`client`]: the blocking client, one module per concept: [`client::options`]
//!   (`smtpx_client_options`, `smtpx_tls_mode`), [`client::connection`] (`smtpx_client`:
//!   connect, STARTTLS, QUIT, capabilities, commands), [`client::send`] (send one message,
//!   a batch, or a stream), [`client::result`] (`smtpx_send_result`).
//! - [`config`]: `smtpx_server_config`, shared by every server face.
//! - [`connection`]: `smtpx_server_connection`, the sans-I/O server connection for the
//!   caller's own loop (the library's connection layer: it says what to do next).
//! - [`decision`]: `smtpx_decision`, the reply C code gives to a hook.
//! - [`event`]: `smtpx_server_event`, what a sans-I/O server tells C.
//! - [`log`]: `smtpx_log_callback`, the wire trace for C; `SMTPX_LOG` (records and trace
//!   on standard error for programs without a callback).
//! - [`server`]: the blocking server: [`server::handler`] (`smtpx_handler`, the C
//!   callbacks), [`server::run`] (`smtpx_server`: threads and sockets, start and stop).
//! - [`pool`]: `smtpx_pool`, a bounded pool of client connections shared between
//!   threads (`smtpx_pool_config`, `smtpx_pool_send`).
//! - [`relay`]: `smtpx_server_start_relay`, a server that forwards each transaction to a
//!   next hop and answers with its replies.
//! - [`session`]: `smtpx_server_session`, the engine's own sans-I/O view (events,
//!   decisions, output), for callers that want to run the connection loop themselves.
//! - [`tls`]: the TLS settings (trust store, client certificates, minimum version, SNI)
//!   and `smtpx_tls_version`.
//! - [`tls_session`]: `smtpx_tls_session`, one TLS connection without I/O (rustls), for
//!   event loops on either side.
//! - [`reply`]: `smtpx_reply` and reply-code meanings; [`result`], [`version`].
//!
//! # ABI stability
//!
//! None before 1.0: any release may change the ABI. The shared library's SONAME carries
//! the full version (`libsmtpx.so.0.1.0`), so a program is never loaded against a library
//! from another release. Static linking against `libsmtpx.a` is recommended.

// Exported functions take raw pointers from C and are safe `extern "C" fn`s on purpose (as
// in rustls-ffi): C cannot see `unsafe`, every pointer is checked for NULL first, and each
// function documents what it requires of the others.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod client;
pub mod config;
pub mod connection;
pub mod decision;
pub mod event;
pub(crate) mod ffi;
pub(crate) mod last_error;
pub mod log;
pub mod panic;
pub mod pool;
pub mod proxy;
pub mod relay;
pub mod reply;
pub mod result;
pub mod server;
pub mod session;
pub mod tls;
pub mod tls_session;
pub mod version;

pub use reply::smtpx_reply_code_meaning;
pub use result::{smtpx_result, smtpx_result_str};
pub use version::smtpx_version;
