//! The server configuration: `smtpx_server_config` and `smtpx_bare_lf_policy`.
//!
//! One builder for both server faces: the blocking server (`smtpx_server_start*`, in
//! [`crate::server`]) and the sans-I/O ones (`smtpx_server_session_new`,
//! `smtpx_server_connection_new`), which read only its session settings.

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::time::Duration;

use smtp_core::auth::AuthMechanism;
use smtp_core::data::BareLinePolicy;
use smtp_core::server::ServerConfig;
use smtp_core::tls::TlsServerExtras;

use crate::ffi::{
    copy_str_out, free_raw, into_raw, line_arg, obj, obj_mut, opt_line_arg, str_arg, try_arg,
};
use crate::last_error::{KeepsLastError, LastError, record};
use crate::log::{self, CLog, smtpx_log_callback};
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// What the server does with a lone CR or LF inside a message.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_bare_lf_policy {
    /// Replace it with CRLF and accept the message (the default, as Postfix 3.9 does).
    Normalize = 0,
    /// Read the message to its real end and refuse it as a whole (550 5.5.2).
    Reject = 1,
}

/// A raw `smtpx_bare_lf_policy` as it arrives from C; the header spells it
/// `smtpx_bare_lf_policy`.
#[allow(non_camel_case_types)]
pub type smtpx_bare_lf_policy_code = u32;

/// How a server (or a sans-I/O server session) behaves: a builder filled with setters.
///
/// Defaults: host name "localhost", listening on 127.0.0.1 port 0 (a free port: see
/// `smtpx_server_local_port`), no TLS, no AUTH, 25 MiB messages, 100 recipients per
/// message, RFC 5321 timeouts, 10000 connections, SMTP (not LMTP), bare LF normalised.
///
/// Thread safety: movable between threads, one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_server_config {
    pub(crate) config: ServerConfig,
    pub(crate) listen: String,
    pub(crate) tls_listen: Option<String>,
    /// An already listening socket to serve instead of `listen` (socket activation).
    pub(crate) listen_fd: Option<c_int>,
    pub(crate) tls_files: Option<(PathBuf, PathBuf)>,
    pub(crate) users: Vec<(String, String)>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) listen_backlog: Option<u32>,
    pub(crate) last_error: LastError,
    /// Client certificates, the oldest TLS version (see the `tls` module).
    pub(crate) tls_extras: TlsServerExtras,
    /// The log callback, with its user data.
    pub(crate) log: Option<CLog>,
    /// The PROXY protocol when enabled (its trusted list unused), and the trusted
    /// networks (see `proxy.rs`).
    pub(crate) proxy: Option<smtp_core::server::proxy::ProxyProtocol>,
    pub(crate) proxy_trusted: Vec<smtp_core::server::proxy::IpNetwork>,
    /// False when the callbacks never block (`smtpx_server_config_set_callbacks_block`).
    pub(crate) callbacks_block: bool,
}

impl KeepsLastError for smtpx_server_config {
    fn last_error_mut(&mut self) -> &mut LastError {
        &mut self.last_error
    }
}

impl smtpx_server_config {
    /// The session configuration: STARTTLS offered with TLS files, AUTH with users.
    pub(crate) fn session_config(&self) -> ServerConfig {
        let mut session = self.config.clone();
        session.starttls = self.tls_files.is_some();
        if !self.users.is_empty() {
            session.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
        }
        session
    }
}

/// Creates a server configuration with the defaults. Free with
/// `smtpx_server_config_free`; NULL only on an internal error.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_new() -> *mut smtpx_server_config {
    ffi_panic_boundary(|| {
        log::init_from_env();
        into_raw(smtpx_server_config {
            config: ServerConfig::new("localhost"),
            listen: "127.0.0.1:0".to_owned(),
            tls_listen: None,
            listen_fd: None,
            tls_files: None,
            users: Vec::new(),
            max_connections: None,
            listen_backlog: None,
            last_error: LastError::default(),
            tls_extras: TlsServerExtras::default(),
            log: None,
            proxy: None,
            proxy_trusted: Vec::new(),
            callbacks_block: true,
        })
    })
}

/// Frees a server configuration. NULL is fine; must not be called twice. Servers and
/// sessions created from it are not affected.
///
/// Thread safety: no other thread may use it during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_free(config: *mut smtpx_server_config) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a config from smtpx_server_config_new, once.
        unsafe { free_raw(config) }
    })
}

/// Runs `f` on the configuration behind `config` (a setter's body).
fn with_config(
    config: *mut smtpx_server_config,
    f: impl FnOnce(&mut smtpx_server_config) -> Result<(), smtpx_result>,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let config = try_arg!(unsafe { obj_mut(config) });
        record(config, |config| match f(config) {
            Ok(()) => smtpx_result::Ok,
            Err(e) => e,
        })
    })
}

/// Sets the server's host name, used in the greeting, EHLO reply and Received headers.
/// CR or LF gives SMTPX_RESULT_INJECTION.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_hostname(
    config: *mut smtpx_server_config,
    hostname: *const c_char,
) -> smtpx_result {
    with_config(config, |c| {
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { line_arg(hostname) }?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(smtpx_result::InvalidArgument);
        }
        c.config.hostname = name.to_owned();
        Ok(())
    })
}

/// Serves the already listening TCP socket `fd` (socket activation: systemd's
/// `LISTEN_FDS`, inetd, a socket the program bound before dropping privileges) instead
/// of the address of `smtpx_server_config_set_listen`; -1 goes back to that address.
/// When the server starts it checks that `fd` is a listening TCP socket (else
/// SMTPX_RESULT_IO and the descriptor stays the caller's), then owns it: it is closed
/// when the server is freed, and the configuration forgets it (start another server
/// with another descriptor). Unix only; elsewhere SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_listen_fd(
    config: *mut smtpx_server_config,
    fd: c_int,
) -> smtpx_result {
    with_config(config, |c| {
        if fd < -1 || (!cfg!(unix) && fd != -1) {
            return Err(smtpx_result::InvalidArgument);
        }
        c.listen_fd = (fd >= 0).then_some(fd);
        Ok(())
    })
}

/// Sets the address to listen on, "HOST:PORT" (for example "127.0.0.1:2525", or port 0
/// for a free port). Checked when the server starts.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_listen(
    config: *mut smtpx_server_config,
    addr: *const c_char,
) -> smtpx_result {
    with_config(config, |c| {
        // SAFETY: the caller passes a NUL-terminated string.
        c.listen = unsafe { line_arg(addr) }?.to_owned();
        Ok(())
    })
}

/// Enables TLS with a PEM certificate chain (leaf first) and a PEM private key, read when
/// the server starts: STARTTLS is then offered. NULL for both disables TLS.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_tls_files(
    config: *mut smtpx_server_config,
    cert_file: *const c_char,
    key_file: *const c_char,
) -> smtpx_result {
    with_config(config, |c| {
        if cert_file.is_null() && key_file.is_null() {
            c.tls_files = None;
            return Ok(());
        }
        // SAFETY: the caller passes NUL-terminated strings.
        let cert = unsafe { str_arg(cert_file) }?;
        // SAFETY: as above.
        let key = unsafe { str_arg(key_file) }?;
        c.tls_files = Some((cert.into(), key.into()));
        Ok(())
    })
}

/// Also listens with implicit TLS (SMTPS) on "HOST:PORT"; NULL removes it. Needs
/// `smtpx_server_config_set_tls_files`.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_tls_listen(
    config: *mut smtpx_server_config,
    addr: *const c_char,
) -> smtpx_result {
    with_config(config, |c| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        c.tls_listen = unsafe { opt_line_arg(addr) }?.map(str::to_owned);
        Ok(())
    })
}

/// Refuses mail until the client has started TLS (530 5.7.0). Default false.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_require_tls(
    config: *mut smtpx_server_config,
    require: bool,
) -> smtpx_result {
    with_config(config, |c| {
        c.config.require_tls = require;
        Ok(())
    })
}

/// Turns the pipelining synchronisation check on (the default) or off. When on, a client
/// that pipelines a command that must end a group (EHLO, DATA, NOOP, QUIT, ...), pipelines
/// without having been offered PIPELINING, or talks before the greeting gets
/// `554 5.5.0 Error: SMTP protocol synchronization` and is disconnected (RFC 2920 §3.1).
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_pipelining_sync(
    config: *mut smtpx_server_config,
    enabled: bool,
) -> smtpx_result {
    with_config(config, |c| {
        c.config.pipelining_sync = enabled;
        Ok(())
    })
}

/// Adds a user for AUTH PLAIN and LOGIN (passwords are compared in constant time). With
/// at least one user, AUTH is offered and checked by the server itself (a handler's
/// `auth` callback is then not called).
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_add_user(
    config: *mut smtpx_server_config,
    username: *const c_char,
    password: *const c_char,
) -> smtpx_result {
    with_config(config, |c| {
        // SAFETY: the caller passes NUL-terminated strings.
        let user = unsafe { line_arg(username) }?;
        // SAFETY: as above.
        let pass = unsafe { line_arg(password) }?;
        c.users.push((user.to_owned(), pass.to_owned()));
        Ok(())
    })
}

/// Offers and accepts AUTH PLAIN and LOGIN without TLS (passwords in clear). Default
/// false.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_allow_insecure_auth(
    config: *mut smtpx_server_config,
    allow: bool,
) -> smtpx_result {
    with_config(config, |c| {
        c.config.allow_insecure_auth = allow;
        Ok(())
    })
}

/// The largest message accepted, in bytes (announced with SIZE). 0 gives
/// SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_max_size(
    config: *mut smtpx_server_config,
    bytes: u64,
) -> smtpx_result {
    with_config(config, |c| {
        if bytes == 0 {
            return Err(smtpx_result::InvalidArgument);
        }
        c.config.max_message_size = bytes;
        Ok(())
    })
}

/// The most recipients per message. 0 gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_max_recipients(
    config: *mut smtpx_server_config,
    n: usize,
) -> smtpx_result {
    with_config(config, |c| {
        if n == 0 {
            return Err(smtpx_result::InvalidArgument);
        }
        c.config.max_recipients = n;
        Ok(())
    })
}

/// How long the server waits for each command and for each piece of a message, in
/// seconds. 0 gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_timeout_secs(
    config: *mut smtpx_server_config,
    secs: u64,
) -> smtpx_result {
    with_config(config, |c| {
        if secs == 0 {
            return Err(smtpx_result::InvalidArgument);
        }
        c.config.command_timeout = Duration::from_secs(secs);
        c.config.data_timeout = Duration::from_secs(secs);
        Ok(())
    })
}

/// The most connections served at once (more are told 421). 0 gives
/// SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_max_connections(
    config: *mut smtpx_server_config,
    n: usize,
) -> smtpx_result {
    with_config(config, |c| {
        if n == 0 {
            return Err(smtpx_result::InvalidArgument);
        }
        c.max_connections = Some(n);
        Ok(())
    })
}

/// The accept queue of each listener: how many connections the kernel completes and
/// holds while the server is busy accepting, so that a burst of connections is greeted
/// rather than left in a handshake the kernel forgot. Default 1024; the kernel caps it
/// (`net.core.somaxconn` on Linux). 0 or more than 2^31 - 1 gives
/// SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_listen_backlog(
    config: *mut smtpx_server_config,
    n: u32,
) -> smtpx_result {
    with_config(config, |c| {
        if n == 0 || i32::try_from(n).is_err() {
            return Err(smtpx_result::InvalidArgument);
        }
        c.listen_backlog = Some(n);
        Ok(())
    })
}

/// Speaks LMTP (RFC 2033) instead of SMTP when true. Default false.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_lmtp(
    config: *mut smtpx_server_config,
    lmtp: bool,
) -> smtpx_result {
    with_config(config, |c| {
        c.config.lmtp = lmtp;
        Ok(())
    })
}

/// Lets the handler answer NOOP, RSET and QUIT (the `noop`, `rset` and `quit` callbacks
/// of `smtpx_handler`; the NOOP, RSET and QUIT events of a sans-I/O session or
/// connection), and say its own reply to HELO, EHLO or LHLO: with it on, a hello callback
/// that returns SMTPX_REPLY with a positive (2xx) reply has that reply said instead of the
/// standard one (what the session accepts stays the same). Default false: the session
/// answers those commands itself, and those callbacks and events do not come.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_handler_replies(
    config: *mut smtpx_server_config,
    enabled: bool,
) -> smtpx_result {
    with_config(config, |c| {
        c.config.handler_replies = enabled;
        Ok(())
    })
}

/// What to do with a lone CR or LF inside a message (see `smtpx_bare_lf_policy`). A value
/// that is not an `smtpx_bare_lf_policy` gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_bare_lf(
    config: *mut smtpx_server_config,
    policy: smtpx_bare_lf_policy_code,
) -> smtpx_result {
    with_config(config, |c| {
        c.config.bare_line_policy = match policy {
            p if p == smtpx_bare_lf_policy::Normalize as u32 => BareLinePolicy::Normalize,
            p if p == smtpx_bare_lf_policy::Reject as u32 => BareLinePolicy::Reject,
            _ => return Err(smtpx_result::InvalidArgument),
        };
        Ok(())
    })
}

/// Sends the wire trace of every connection of servers and sans-I/O connections built from
/// this configuration to `callback` (see `smtpx_log_callback` for what it receives, and
/// from which threads), with `user_data`; NULL turns it off. The library never frees
/// `user_data`; it must live as long as anything built from the configuration.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_log(
    config: *mut smtpx_server_config,
    callback: smtpx_log_callback,
    user_data: *mut c_void,
) -> smtpx_result {
    with_config(config, |c| {
        c.log = CLog::sink(callback, user_data);
        Ok(())
    })
}

/// The message of the last call on this configuration (a setter or `smtpx_server_start*`)
/// if it failed, copied NUL-terminated into `buf` (of `len` bytes); its length without the NUL goes to
/// `*out_n`. Empty when the last call on the configuration succeeded. When `buf` is NULL
/// or too small: SMTPX_RESULT_BUFFER_TOO_SMALL, nothing written to `buf`, and the size
/// needed (with the NUL) written to `*out_n`.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_last_error(
    config: *const smtpx_server_config,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config.
        let config = try_arg!(unsafe { obj(config) });
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(&config.last_error.message, buf, len, out_n) }
    })
}
