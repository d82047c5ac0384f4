//! smtp_core: one sans-IO SMTP engine for both sides of the conversation.
//!
//! The engine takes bytes and returns bytes plus events; it owns no sockets, threads or
//! clocks, so the same code runs under a blocking driver, an async runtime, a C event loop
//! or Python's asyncio.
//!
//! - [`server::ServerSession`]: the server state machine (SMTP and LMTP).
//! - [`client::ClientSession`]: the client state machine, with per-recipient results.
//! - [`command`], [`reply`], [`ehlo`], [`address`]: the protocol's vocabulary, parsed and written.
//! - [`data`]: DATA transparency (dot-stuffing, the end-of-data terminator) as streaming pieces.
//! - [`auth`]: SASL PLAIN, LOGIN and XOAUTH2, with redacted secrets.
//! - [`trace`]: the wire trace (commands and replies, secrets redacted).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
#[cfg(feature = "tokio")]
pub mod asynchronous;
pub mod auth;
pub mod blocking;
pub mod client;
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
