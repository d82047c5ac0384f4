//! `smtpx_pool`: a bounded pool of client connections to one server, shared between
//! threads (`smtp_core::blocking::pool::SmtpPool`; the policy lives in the core).

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::time::Duration;

use smtp_core::blocking::pool::SmtpPool;
use smtp_core::client::pool::PoolConfig;

use crate::client::options::smtpx_client_options;
use crate::client::pooling::{connection_options, error_code, options_failed, send_result};
use crate::client::result::smtpx_send_result;
use crate::client::send::envelope_args;
use crate::ffi::{
    free_raw, into_raw, line_arg, obj, obj_mut, opt_line_arg, out_arg, to_cstring, try_arg,
    write_out,
};
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// How a pool behaves; start from `smtpx_pool_config_default()` and change fields.
///
/// Thread safety: a plain value.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_pool_config {
    /// The most connections open at once (at least 1). Default 8.
    pub max_size: usize,
    /// An idle connection older than this is closed, not reused. Default 60000.
    pub idle_timeout_ms: u64,
    /// A connection is closed after carrying this many messages; 0: no limit. Default 0.
    pub max_messages: u64,
    /// A connection idle longer than this is checked with NOOP before reuse; 0 checks
    /// before every reuse. Default 1000.
    pub check_after_ms: u64,
    /// How long a sender waits for a connection when all are busy. Default 30000.
    pub checkout_timeout_ms: u64,
}

impl From<smtpx_pool_config> for PoolConfig {
    fn from(c: smtpx_pool_config) -> PoolConfig {
        PoolConfig::new(c.max_size)
            .idle_timeout(Duration::from_millis(c.idle_timeout_ms))
            .max_messages(c.max_messages)
            .check_after(Duration::from_millis(c.check_after_ms))
            .checkout_timeout(Duration::from_millis(c.checkout_timeout_ms))
    }
}

/// The defaults documented on each field of `smtpx_pool_config`.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_pool_config_default() -> smtpx_pool_config {
    let d = PoolConfig::new(8);
    smtpx_pool_config {
        max_size: d.max_size,
        idle_timeout_ms: d.idle_timeout.as_millis() as u64,
        max_messages: d.max_messages,
        check_after_ms: d.check_after.as_millis() as u64,
        checkout_timeout_ms: d.checkout_timeout.as_millis() as u64,
    }
}

/// A bounded pool of connections to one server: each `smtpx_pool_send` takes an idle
/// connection (checked with NOOP after idling), or opens one while fewer than `max_size`
/// are open, or waits for one; the connection goes back after the message.
///
/// Thread safety: shareable; any number of threads may call `smtpx_pool_send`,
/// `smtpx_pool_open_count` and `smtpx_pool_idle_count` at once. `smtpx_pool_free` only
/// when no other thread uses the pool.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_pool {
    pool: SmtpPool,
}

thread_local! {
    /// The calling thread's last pool failure, for `smtpx_pool_last_error`.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: impl Into<String>) {
    LAST_ERROR.with(|e| *e.borrow_mut() = to_cstring(message));
}

/// Makes a pool of connections to `host`:`port`, each set up by `options` as
/// `smtpx_client_connect` would (not consumed; NULL is not allowed), behaving as `config`
/// says (NULL: the defaults), and writes it to `*out_pool` (release with
/// `smtpx_pool_free`). No connection is opened yet. `server_name` is the name the
/// server's certificate must carry; NULL means `host`. On failure the options'
/// `smtpx_client_options_last_error` says why.
///
/// Thread safety: `options` is used by this thread during the call only.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_pool_new(
    host: *const c_char,
    port: u16,
    server_name: *const c_char,
    options: *mut smtpx_client_options,
    config: *const smtpx_pool_config,
    out_pool: *mut *mut smtpx_pool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        try_arg!(out_arg(out_pool));
        // SAFETY: the caller passes NUL-terminated strings (server_name may be NULL).
        let host = try_arg!(unsafe { line_arg(host) });
        // SAFETY: as above.
        let server_name = try_arg!(unsafe { opt_line_arg(server_name) }).unwrap_or(host);
        // SAFETY: the caller passes NULL or a readable smtpx_pool_config.
        let config = unsafe { config.as_ref() }
            .copied()
            .unwrap_or_else(|| smtpx_pool_config_default());
        let client_options = try_arg!(connection_options(options));
        match SmtpPool::new((host, port), server_name, client_options, config.into()) {
            Ok(pool) => {
                // SAFETY: out_pool was checked non-NULL above.
                unsafe { write_out(out_pool, into_raw(smtpx_pool { pool })) };
                smtpx_result::Ok
            }
            Err(e) => options_failed(options, &e),
        }
    })
}

/// Sends one message held in memory through the pool, as `smtpx_client_send` does
/// (same arguments and result; a refused recipient is not an error), and writes its
/// outcome to `*out_result` (release with `smtpx_send_result_free`). On failure
/// `smtpx_pool_last_error` gives the detail, on this thread.
///
/// Thread safety: any number of threads at once.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_pool_send(
    pool: *const smtpx_pool,
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
    msg: *const u8,
    len: usize,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live pool.
        let pool = try_arg!(unsafe { obj(pool) });
        try_arg!(out_arg(out_result));
        if msg.is_null() && len != 0 {
            set_last_error("the message is NULL");
            return smtpx_result::NullParameter;
        }
        // SAFETY: from, to and n_to as documented.
        let envelope = match unsafe { envelope_args(from, to, n_to) } {
            Ok(e) => e,
            Err((r, m)) => {
                set_last_error(m);
                return r;
            }
        };
        let message: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: msg is not NULL and readable for len bytes (the caller's contract).
            unsafe { std::slice::from_raw_parts(msg, len) }
        };
        match pool.pool.send_bytes(&envelope, message) {
            Ok(result) => {
                // SAFETY: out_result was checked non-NULL above.
                unsafe { write_out(out_result, into_raw(send_result(&result))) };
                smtpx_result::Ok
            }
            Err(e) => {
                set_last_error(e.to_string());
                error_code(&e)
            }
        }
    })
}

/// The detail of this thread's last failed `smtpx_pool_send` ("" when none): valid until
/// this thread's next pool call.
///
/// Thread safety: per thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_pool_last_error() -> *const c_char {
    ffi_panic_boundary(|| LAST_ERROR.with(|e| e.borrow().as_ptr()))
}

/// Connections open now (idle and in use); 0 for NULL.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_pool_open_count(pool: *const smtpx_pool) -> usize {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live pool.
        unsafe { pool.as_ref() }.map_or(0, |p| p.pool.status().0)
    })
}

/// Idle connections now; 0 for NULL.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_pool_idle_count(pool: *const smtpx_pool) -> usize {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live pool.
        unsafe { pool.as_ref() }.map_or(0, |p| p.pool.status().1)
    })
}

/// Closes the pool's connections (QUIT to the idle ones now, the others when their
/// message is done) and frees it. NULL is fine; must not be called twice.
///
/// Thread safety: no other thread may use the pool during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_pool_free(pool: *mut smtpx_pool) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live pool, used by no other thread.
        if let Ok(p) = unsafe { obj(pool) } {
            p.pool.close();
        }
        // SAFETY: as above; freed once.
        unsafe { free_raw(pool) };
    })
}
