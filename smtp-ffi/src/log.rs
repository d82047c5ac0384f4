//! Logging to C: `smtpx_log_callback`, set on a server configuration (and so on every
//! server face built from it) or on client options (and so on every client connected
//! with them) to receive the wire trace: every command and reply line with its
//! connection id, AUTH payloads and SASL responses redacted, message content by size
//! only.
//!
//! Without a callback, the environment variable `SMTPX_LOG` (`error`, `warn`, `info`,
//! `debug` or `trace`) sends the library's log records to standard error, and at `debug`
//! or `trace` the wire trace of objects without a callback too (see `smtpx_log_level`).

use std::ffi::{CString, c_char, c_void};
use std::sync::{Arc, OnceLock};

use ::log::LevelFilter;

use smtp_core::trace::{Direction, Trace, TraceSink};

/// How much a log record matters. The wire trace is `SMTPX_LOG_LEVEL_DEBUG`.
///
/// `SMTPX_LOG`: a C program that installs no log callback can still see what the library
/// does by setting the environment variable `SMTPX_LOG` to `error`, `warn`, `info`,
/// `debug` or `trace` (any case) before it creates its first `smtpx_client_options` or
/// `smtpx_server_config` (the variable is read then, once per process). The library's
/// own records (connection events, warnings; never message content or credentials) at
/// that level and above are then written to standard error, one line each, as
/// `smtpx LEVEL TARGET: TEXT`. At `debug` or `trace`, clients and servers whose options
/// or configuration have no log callback also write their wire trace there, as
/// `smtpx DEBUG smtpx::wire: client conn=ID C: LINE` (or `server conn=ID ...`); an
/// object with a callback sends its trace to the callback only. Unset, empty, `off` or
/// an unknown value: nothing is written. Either way the library never installs a logger
/// over one already installed in its process.
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
/// server in one process may both have a connection 1. Without a callback, the
/// environment variable `SMTPX_LOG` can send the trace to standard error (see
/// `smtpx_log_level`).
///
/// Thread safety: on a server configuration, the callback is called from the threads that
/// run connections, several at once: it must be thread-safe, and so must whatever
/// `user_data` points to. On client options, it is called from the thread using the
/// client (see `smtpx_client_options_set_log`). It must return quickly (the connection
/// waits for it) and must not call back into the object that logs (on a server,
/// `smtpx_server_stop` gives SMTPX_RESULT_REENTRANT there; see `smtpx_handler`).
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
    /// The token of the server whose trace this is (see `server::reentry`); 0 otherwise.
    server: u64,
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
            server: 0,
        })
    }

    /// A trace sink that calls this callback.
    pub(crate) fn trace_sink(&self) -> TraceSink {
        self.trace_sink_of(0)
    }

    /// A trace sink that calls this callback for the server with token `server`: while
    /// it runs, the thread counts as inside that server's callbacks.
    fn trace_sink_of(&self, server: u64) -> TraceSink {
        TraceSink::new(Arc::new(CLog {
            callback: self.callback,
            user_data: self.user_data,
            server,
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
        let _inside =
            (self.server != 0).then(|| crate::server::reentry::Inside::enter(self.server));
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

/// The level `SMTPX_LOG` asks for, once the library's standard-error logger is installed
/// (read once per process, on first use); `None` when it is unset, not a level, or when
/// another logger was installed first.
fn env_level() -> Option<LevelFilter> {
    static LEVEL: OnceLock<Option<LevelFilter>> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let level = std::env::var("SMTPX_LOG")
            .ok()?
            .trim()
            .parse::<LevelFilter>()
            .ok()?;
        if level == LevelFilter::Off {
            return None;
        }
        static LOGGER: StderrLogger = StderrLogger;
        ::log::set_logger(&LOGGER).ok()?;
        ::log::set_max_level(level);
        Some(level)
    })
}

/// Reads `SMTPX_LOG` and installs the standard-error logger it asks for, once per process;
/// called by the constructors every C program starts from.
pub(crate) fn init_from_env() {
    let _ = env_level();
}

/// Which side of SMTP an object speaks, as its `SMTPX_LOG` trace lines name it (client
/// and server connection ids are counted apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// The trace sink for an object without a log callback: the `log` facade (so standard
/// error) when `SMTPX_LOG` is `debug` or `trace`, else none.
pub(crate) fn env_trace(side: Side) -> Option<TraceSink> {
    env_level()
        .filter(|level| *level >= LevelFilter::Debug)
        .map(|_| TraceSink::new(Arc::new(EnvTrace(side))))
}

/// The trace sink for a server object: its callback when it has one, else `SMTPX_LOG`'s.
pub(crate) fn server_trace_sink(log: Option<&CLog>, server: u64) -> Option<TraceSink> {
    match log {
        Some(log) => Some(log.trace_sink_of(server)),
        None => env_trace(Side::Server),
    }
}

/// The `SMTPX_LOG` trace: each line to the `log` facade, target `smtpx::wire`, level
/// debug, as `client conn=ID C: LINE` or `server conn=ID S: LINE`.
#[derive(Debug)]
struct EnvTrace(Side);

impl Trace for EnvTrace {
    fn line(&self, connection: u64, direction: Direction, text: &str) {
        let side = match self.0 {
            Side::Client => "client",
            Side::Server => "server",
        };
        ::log::debug!(target: "smtpx::wire", "{side} conn={connection} {direction} {text}");
    }
}

/// Writes the library's `log` records to standard error, one `write` per line so that
/// lines of concurrent connections do not interleave within a line.
struct StderrLogger;

impl ::log::Log for StderrLogger {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        metadata.level() <= ::log::max_level()
    }

    fn log(&self, record: &::log::Record<'_>) {
        if self.enabled(record.metadata()) {
            use std::io::Write as _;
            let line = format!(
                "smtpx {} {}: {}\n",
                record.level(),
                record.target(),
                record.args()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}
