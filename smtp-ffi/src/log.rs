//! Logging to C: `smtpx_log_callback`, set on a server configuration (and so on every
//! server face built from it) or on client options (and so on every client connected
//! with them) to receive the wire trace: every command and reply line with its
//! connection id, AUTH payloads and SASL responses redacted, message content by size
//! only.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use smtp_core::trace::{Direction, Trace, TraceSink};

/// How much a log record matters. The wire trace is `SMTPX_LOG_LEVEL_DEBUG`.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_log_level {
    /// Something failed.
    Error = 1,
    /// Something is wrong but the work goes on.
    Warn = 2,
    /// A connection event.
    Info = 3,
    /// A line of the wire trace.
    Debug = 4,
}

/// Receives one log record: `user_data` as it was given with the callback, the level,
/// the connection id (on a server, as the handler's callbacks see it; 0 when the record
/// belongs to no connection), and the text: NUL-terminated, `text_len` bytes without the
/// NUL, valid only during the call. A trace line reads `C: MAIL FROM:<a@example.org>` (from the
/// client) or `S: 250 2.1.0 Ok` (from the server).
///
/// Client connection ids and server connection ids are counted apart: a client and a
/// server in one process may both have a connection 1.
///
/// Thread safety: on a server configuration, the callback is called from the threads that
/// run connections, several at once: it must be thread-safe, and so must whatever
/// `user_data` points to. On client options, it is called from the thread using the
/// client (see `smtpx_client_options_set_log`). It must return quickly (the connection
/// waits for it) and must not call back into the object that logs.
#[allow(non_camel_case_types)]
pub type smtpx_log_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: smtpx_log_level,
        connection: u64,
        text: *const c_char,
        text_len: usize,
    ),
>;

/// A C log callback with its user data, as a trace sink.
#[derive(Debug)]
pub(crate) struct CLog {
    callback: unsafe extern "C" fn(*mut c_void, smtpx_log_level, u64, *const c_char, usize),
    user_data: *mut c_void,
}

// SAFETY: the callback's contract (see `smtpx_log_callback`) requires it and its user data
// to be callable from any thread, several at once.
unsafe impl Send for CLog {}
// SAFETY: as above.
unsafe impl Sync for CLog {}

impl CLog {
    /// The sink for `callback`, or none for a NULL callback.
    pub(crate) fn sink(callback: smtpx_log_callback, user_data: *mut c_void) -> Option<CLog> {
        callback.map(|callback| CLog {
            callback,
            user_data,
        })
    }

    /// A trace sink that calls this callback.
    pub(crate) fn trace_sink(&self) -> TraceSink {
        TraceSink::new(Arc::new(CLog {
            callback: self.callback,
            user_data: self.user_data,
        }))
    }
}

impl Trace for CLog {
    fn line(&self, connection: u64, direction: Direction, text: &str) {
        // A NUL inside would cut the C string short.
        let line = format!("{direction} {text}").replace('\0', "\u{fffd}");
        let Ok(line) = CString::new(line) else {
            return;
        };
        let len = line.as_bytes().len();
        // SAFETY: the caller gave a callback of this signature with this user data and
        // promised they may be called from any thread; the text is valid for the call.
        unsafe {
            (self.callback)(
                self.user_data,
                smtpx_log_level::Debug,
                connection,
                line.as_ptr(),
                len,
            )
        };
    }
}
