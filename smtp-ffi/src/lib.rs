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
//! - Thread safety is stated on every item.
//!
//! # ABI stability
//!
//! None before 1.0: any release may change the ABI. The shared library's SONAME carries
//! the full version (`libsmtpx.so.0.1.0`), so a program is never loaded against a library
//! from another release. Static linking against `libsmtpx.a` is recommended.

pub mod panic;
pub mod reply;
pub mod result;
pub mod version;

pub use reply::smtpx_reply_code_meaning;
pub use result::{smtpx_result, smtpx_result_str};
pub use version::smtpx_version;
