//! `smtpx_client_options`: how `smtpx_client_connect` sets up a connection (a builder
//! filled with setters), and `smtpx_tls_mode`.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use smtp_core::auth::Credentials;
use smtp_core::blocking::client::{ClientOptions, TlsMode};
use smtp_core::tls::{RootCerts, TlsClientExtras, TlsClientOptions};

use crate::ffi::{copy_str_out, free_raw, into_raw, line_arg, obj, obj_mut, str_arg, try_arg};
use crate::last_error::{KeepsLastError, LastError, record};
use crate::log::{self, CLog, smtpx_log_callback};
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// How a client connection is encrypted.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_tls_mode {
    /// Plain text throughout; STARTTLS is never sent.
    None = 0,
    /// Upgrade with STARTTLS when the server offers it, else go on in clear (protects
    /// against passive eavesdropping only). The default.
    StarttlsOpportunistic = 1,
    /// Upgrade with STARTTLS, or fail before any credentials or mail are sent.
    StarttlsRequired = 2,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit = 3,
}

/// A raw `smtpx_tls_mode` as it arrives from C (see `smtpx_result_code` for why); the
/// header spells it `smtpx_tls_mode`.
#[allow(non_camel_case_types)]
pub type smtpx_tls_mode_code = u32;

/// How `smtpx_client_connect` sets up a connection: a builder filled with setters.
///
/// Defaults: HELO name "localhost", opportunistic STARTTLS, the compiled-in Mozilla
/// roots, no credentials, 30 s connect timeout, RFC 5321 reply timeouts, SMTP (not
/// LMTP), pipelining and chunking used when offered.
///
/// Thread safety: movable between threads, one thread at a time (setters and
/// `smtpx_client_connect` write to it).
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_client_options {
    pub(super) options: ClientOptions,
    pub(crate) roots: RootCerts,
    pub(super) insecure: bool,
    pub(crate) last_error: LastError,
    /// Mutual TLS, the oldest TLS version, SNI (see the `tls` module).
    pub(crate) tls_extras: TlsClientExtras,
}

impl smtpx_client_options {
    /// Which certificates the client trusts, as the core takes it.
    pub(super) fn tls_options(&self) -> TlsClientOptions {
        TlsClientOptions {
            roots: self.roots.clone(),
            dangerous_accept_invalid_certs: self.insecure,
        }
    }
}

impl KeepsLastError for smtpx_client_options {
    fn last_error_mut(&mut self) -> &mut LastError {
        &mut self.last_error
    }
}

/// Creates client options with the defaults. Returns NULL only if memory ran out (or on
/// an internal error). Free with `smtpx_client_options_free`.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_new() -> *mut smtpx_client_options {
    ffi_panic_boundary(|| {
        log::init_from_env();
        into_raw(smtpx_client_options {
            options: ClientOptions::new("localhost"),
            roots: RootCerts::default(),
            insecure: false,
            last_error: LastError::default(),
            tls_extras: TlsClientExtras::default(),
        })
    })
}

/// Frees client options. NULL is fine; must not be called twice on the same options.
/// Clients already connected with them are not affected.
///
/// Thread safety: no other thread may use the options during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_free(options: *mut smtpx_client_options) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or options from smtpx_client_options_new, once.
        unsafe { free_raw(options) }
    })
}

/// Sets the name sent with EHLO, HELO or LHLO: this host's fully qualified domain name or
/// an address literal such as "[192.0.2.1]". Checked fully at connect time.
///
/// Returns SMTPX_RESULT_NULL_PARAMETER, SMTPX_RESULT_INVALID_UTF8 or
/// SMTPX_RESULT_INJECTION (CR or LF) and changes nothing on a bad argument.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_helo_name(
    options: *mut smtpx_client_options,
    helo_name: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            // SAFETY: the caller passes NULL or a NUL-terminated string.
            let name = try_arg!(unsafe { line_arg(helo_name) });
            options.options.helo_name = name.to_owned();
            smtpx_result::Ok
        })
    })
}

/// Sets how the connection is encrypted (see `smtpx_tls_mode`). A value that is not an
/// `smtpx_tls_mode` gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_tls_mode(
    options: *mut smtpx_client_options,
    mode: smtpx_tls_mode_code,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.options.tls = match mode {
                m if m == smtpx_tls_mode::None as u32 => TlsMode::None,
                m if m == smtpx_tls_mode::StarttlsOpportunistic as u32 => {
                    TlsMode::StartTlsOpportunistic
                }
                m if m == smtpx_tls_mode::StarttlsRequired as u32 => TlsMode::StartTlsRequired,
                m if m == smtpx_tls_mode::Implicit as u32 => TlsMode::Implicit,
                _ => return smtpx_result::InvalidArgument,
            };
            smtpx_result::Ok
        })
    })
}

/// Trusts the certificate authorities in a PEM file instead of the compiled-in Mozilla
/// roots (for a private CA or a self-signed test certificate). The file is read at
/// connect time; NULL goes back to the Mozilla roots.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_ca_file(
    options: *mut smtpx_client_options,
    path: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.roots = if path.is_null() {
                RootCerts::WebPki
            } else {
                // SAFETY: path is a NUL-terminated string.
                RootCerts::PemFile(try_arg!(unsafe { str_arg(path) }).into())
            };
            smtpx_result::Ok
        })
    })
}

/// Accepts any server certificate (expired, self-signed, for another name) when true.
/// The server is then not authenticated, so anyone on the path can read and change the
/// mail: for tests only. Default false.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_insecure(
    options: *mut smtpx_client_options,
    insecure: bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.insecure = insecure;
            smtpx_result::Ok
        })
    })
}

/// Authenticates with this user name and password once connected (PLAIN or LOGIN,
/// whichever the server offers); a refusal makes `smtpx_client_connect` fail with
/// SMTPX_RESULT_AUTH_FAILED. Over a connection without TLS (SMTPX_TLS_MODE_NONE, or an
/// opportunistic STARTTLS the server does not offer) the connect fails with
/// SMTPX_RESULT_INSECURE_AUTH before anything of the credentials is sent, unless
/// `smtpx_client_options_set_allow_insecure_auth` allowed it. Passing NULL for both
/// removes the credentials.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_credentials(
    options: *mut smtpx_client_options,
    username: *const c_char,
    password: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            if username.is_null() && password.is_null() {
                options.options.credentials = None;
                return smtpx_result::Ok;
            }
            // SAFETY: the caller passes NUL-terminated strings.
            let username = try_arg!(unsafe { line_arg(username) });
            // SAFETY: as above.
            let password = try_arg!(unsafe { line_arg(password) });
            options.options.credentials = Some(Credentials::password(username, password));
            smtpx_result::Ok
        })
    })
}

/// Authenticates with XOAUTH2 (RFC 7628's predecessor, as Gmail and Microsoft 365 take
/// it) once connected: `username` and an OAuth 2.0 bearer `token` the caller obtained.
/// Replaces any password set with `smtpx_client_options_set_credentials` (and is
/// replaced by it); the same TLS rule applies (SMTPX_RESULT_INSECURE_AUTH without TLS
/// unless allowed). A refusal makes `smtpx_client_connect` fail with
/// SMTPX_RESULT_AUTH_FAILED, or SMTPX_RESULT_AUTH_UNSUPPORTED when the server does not
/// offer XOAUTH2. NULL for both removes the credentials.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_xoauth2(
    options: *mut smtpx_client_options,
    username: *const c_char,
    token: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            if username.is_null() && token.is_null() {
                options.options.credentials = None;
                return smtpx_result::Ok;
            }
            // SAFETY: the caller passes NUL-terminated strings.
            let username = try_arg!(unsafe { line_arg(username) });
            // SAFETY: as above.
            let token = try_arg!(unsafe { line_arg(token) });
            options.options.credentials = Some(Credentials::oauth2(username, token));
            smtpx_result::Ok
        })
    })
}

/// Allows AUTH (the credentials of `smtpx_client_options_set_credentials`, or
/// `smtpx_client_login`) on a connection without TLS when true, where PLAIN and LOGIN
/// send the password merely base64-encoded: for test servers and trusted networks only.
/// Default false: such an attempt fails with SMTPX_RESULT_INSECURE_AUTH and sends
/// nothing of the credentials.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_allow_insecure_auth(
    options: *mut smtpx_client_options,
    allow: bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.options.allow_insecure_auth = allow;
            smtpx_result::Ok
        })
    })
}

/// How long to wait for each TCP connection attempt and the implicit-TLS handshake, in
/// milliseconds (default 30000). 0 gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_connect_timeout_ms(
    options: *mut smtpx_client_options,
    timeout_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            if timeout_ms == 0 {
                return smtpx_result::InvalidArgument;
            }
            options.options.connect_timeout = Duration::from_millis(timeout_ms);
            smtpx_result::Ok
        })
    })
}

/// How long to wait for each reply and each write, in milliseconds: sets every reply
/// timeout (greeting, commands, RCPT, DATA, each block of the message, the end of the
/// message) to this value instead of RFC 5321's (5 to 10 minutes). 0 gives
/// SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_command_timeout_ms(
    options: *mut smtpx_client_options,
    timeout_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            if timeout_ms == 0 {
                return smtpx_result::InvalidArgument;
            }
            let t = Duration::from_millis(timeout_ms);
            let timeouts = &mut options.options.timeouts;
            timeouts.greeting = t;
            timeouts.command = t;
            timeouts.rcpt = t;
            timeouts.data_start = t;
            timeouts.data_block = t;
            timeouts.data_end = t;
            smtpx_result::Ok
        })
    })
}

/// Speaks LMTP (RFC 2033) instead of SMTP when true: LHLO, and one reply per recipient
/// after the message. Default false.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_lmtp(
    options: *mut smtpx_client_options,
    lmtp: bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.options.lmtp = lmtp;
            smtpx_result::Ok
        })
    })
}

/// Pipelines commands when the server offers PIPELINING (default true).
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_pipelining(
    options: *mut smtpx_client_options,
    pipelining: bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.options.pipelining = pipelining;
            smtpx_result::Ok
        })
    })
}

/// Sends messages with BDAT when the server offers CHUNKING and PIPELINING (default
/// true).
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_chunking(
    options: *mut smtpx_client_options,
    chunking: bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.options.chunking = chunking;
            smtpx_result::Ok
        })
    })
}

/// Sends the wire trace of every client connected with these options from now on to
/// `callback` (see `smtpx_log_callback` for what it receives), with `user_data`; NULL
/// turns it off. Clients already connected keep what they had. The library never frees
/// `user_data`; it must live as long as any client connected with these options.
///
/// Thread safety: one thread at a time per options object. A client is used by one
/// thread at a time, and its callback is called from that thread, during
/// `smtpx_client_connect` and the calls on the client (never afterwards). Clients
/// connected with the same options and used on different threads call it at the same
/// time: it must then be thread-safe, and so must whatever `user_data` points to.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_log(
    options: *mut smtpx_client_options,
    callback: smtpx_log_callback,
    user_data: *mut c_void,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |options| {
            options.options.trace = CLog::sink(callback, user_data).map(|log| log.trace_sink());
            smtpx_result::Ok
        })
    })
}

/// The message of the last call on these options (a setter or `smtpx_client_connect`)
/// if it failed, empty if it succeeded, copied NUL-terminated into `buf` (of `len`
/// bytes); its length without the NUL goes to `*out_n`. When `buf` is NULL or too small:
/// SMTPX_RESULT_BUFFER_TOO_SMALL, and the size needed (with the NUL) goes to `*out_n`.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_last_error(
    options: *const smtpx_client_options,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options.
        let options = try_arg!(unsafe { obj(options) });
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(&options.last_error.message, buf, len, out_n) }
    })
}
