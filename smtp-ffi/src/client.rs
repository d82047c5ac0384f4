//! The blocking SMTP client: `smtpx_client_options`, `smtpx_client`, `smtpx_send_result`.
//!
//! A thin translation of [`smtp_core::blocking::client`]: options are collected in a
//! builder, `smtpx_client_connect` opens a ready session, and each call blocks until the
//! server has answered (or a timeout expires).

use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::ptr;
use std::time::Duration;

use smtp_core::auth::Credentials;
use smtp_core::blocking::client::{ClientOptions, Error, ErrorKind, SmtpClient, TlsMode};
use smtp_core::client::{Envelope, TransactionResult};
use smtp_core::ehlo::Capabilities;
use smtp_core::reply::Reply;
use smtp_core::tls::{self, RootCerts, TlsClientOptions};

use crate::ffi::{
    copy_str_out, free_raw, into_raw, line_arg, obj, obj_mut, opt_line_arg, out_arg, str_arg,
    to_cstring, try_arg, write_out,
};
use crate::log::{self, CLog, smtpx_log_callback};
use crate::panic::ffi_panic_boundary;
use crate::reply::smtpx_reply;
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

/// The detail of the last failure: the message and the server's reply when there was one.
#[derive(Debug, Default)]
pub(crate) struct LastError {
    message: String,
    reply: Option<smtpx_reply>,
}

impl LastError {
    fn set(&mut self, error: &Error) {
        self.message = error.to_string();
        self.reply = error.reply().map(smtpx_reply::new);
    }

    fn set_message(&mut self, message: impl Into<String>) {
        self.message = message.into();
        self.reply = None;
    }
}

/// The `smtpx_result` for a client error kind.
pub(crate) fn result_for(kind: ErrorKind) -> smtpx_result {
    match kind {
        ErrorKind::Io => smtpx_result::Io,
        ErrorKind::Tls => smtpx_result::Tls,
        ErrorKind::Timeout => smtpx_result::Timeout,
        ErrorKind::InvalidArgument => smtpx_result::InvalidArgument,
        ErrorKind::NotReady => smtpx_result::NotReady,
        ErrorKind::Greeting => smtpx_result::Greeting,
        ErrorKind::Hello => smtpx_result::Hello,
        ErrorKind::StartTlsUnavailable => smtpx_result::StartTlsUnavailable,
        ErrorKind::StartTlsRefused => smtpx_result::StartTlsRefused,
        ErrorKind::AuthUnsupported => smtpx_result::AuthUnsupported,
        ErrorKind::AuthFailed => smtpx_result::AuthFailed,
        ErrorKind::MessageTooLarge => smtpx_result::MessageTooLarge,
        ErrorKind::SmtpUtf8Unsupported => smtpx_result::SmtpUtf8Unsupported,
        ErrorKind::ServerClosed => smtpx_result::ServerClosed,
        ErrorKind::ConnectionClosed => smtpx_result::ConnectionClosed,
        ErrorKind::MessageSource => smtpx_result::MessageSource,
        // ErrorKind is non_exhaustive: a kind added later is a protocol failure until it
        // gets a code of its own.
        _ => smtpx_result::Protocol,
    }
}

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
    options: ClientOptions,
    roots: RootCerts,
    insecure: bool,
    last_error: LastError,
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
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let name = try_arg!(unsafe { line_arg(helo_name) });
        options.options.helo_name = name.to_owned();
        smtpx_result::Ok
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
        options.roots = if path.is_null() {
            RootCerts::WebPki
        } else {
            // SAFETY: path is a NUL-terminated string.
            RootCerts::PemFile(try_arg!(unsafe { str_arg(path) }).into())
        };
        smtpx_result::Ok
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
        options.insecure = insecure;
        smtpx_result::Ok
    })
}

/// Authenticates with this user name and password once connected (PLAIN or LOGIN,
/// whichever the server offers); a refusal makes `smtpx_client_connect` fail with
/// SMTPX_RESULT_AUTH_FAILED. Passing NULL for both removes the credentials.
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
        if timeout_ms == 0 {
            return smtpx_result::InvalidArgument;
        }
        options.options.connect_timeout = Duration::from_millis(timeout_ms);
        smtpx_result::Ok
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
        options.options.lmtp = lmtp;
        smtpx_result::Ok
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
        options.options.pipelining = pipelining;
        smtpx_result::Ok
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
        options.options.chunking = chunking;
        smtpx_result::Ok
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
        options.options.trace = CLog::sink(callback, user_data).map(|log| log.trace_sink());
        smtpx_result::Ok
    })
}

/// The message of the last `smtpx_client_connect` that failed with these options,
/// copied NUL-terminated into `buf` (of `len` bytes); its length without the NUL goes
/// to `*out_n`. Empty when no connect failed. SMTPX_RESULT_BUFFER_TOO_SMALL writes
/// nothing.
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

/// A connected SMTP (or LMTP) client session, ready for mail.
///
/// Every call blocks until the server has answered or a timeout expires. After an error
/// that ended the connection (a timeout, a lost connection, a 421) and after
/// `smtpx_client_quit`, calls fail with SMTPX_RESULT_NOT_READY. The detail of the last
/// failed call is kept: `smtpx_client_last_error` and `smtpx_client_last_error_reply`.
///
/// Thread safety: movable between threads, one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_client {
    inner: Option<SmtpClient>,
    last_error: LastError,
    /// The options' TLS settings, for `smtpx_client_starttls`.
    tls_options: TlsClientOptions,
    /// The name given to (or implied by) `smtpx_client_connect`.
    server_name: String,
}

impl smtpx_client {
    /// The live session, or `NotReady` (recorded as the last error) after QUIT.
    fn session(&mut self) -> Result<&mut SmtpClient, smtpx_result> {
        match self.inner.as_mut() {
            Some(c) => Ok(c),
            None => {
                self.last_error.set_message("the client has quit");
                Err(smtpx_result::NotReady)
            }
        }
    }

    /// Records `error` as the last error and gives its code.
    fn fail(&mut self, error: &Error) -> smtpx_result {
        self.last_error.set(error);
        result_for(error.kind())
    }

    /// Records a failure found at the boundary (a bad argument).
    fn refuse(&mut self, result: smtpx_result, message: impl Into<String>) -> smtpx_result {
        self.last_error.set_message(message);
        result
    }
}

/// Connects to `host`:`port` (trying each resolved address), sets up TLS as the options
/// say, greets, upgrades with STARTTLS and authenticates as configured, and writes a
/// ready client to `*out_client`, to be released with `smtpx_client_free`.
///
/// `server_name` is the name the server's certificate must carry; NULL means `host`.
/// `options` is not consumed and may be reused; on failure its
/// `smtpx_client_options_last_error` gives the detail. Errors: argument codes (1xx), and
/// the protocol (2xx), I/O (3xx) and TLS/authentication (4xx) codes.
///
/// Thread safety: blocks the calling thread; `options` is used by this thread only
/// during the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_connect(
    host: *const c_char,
    port: u16,
    server_name: *const c_char,
    options: *mut smtpx_client_options,
    out_client: *mut *mut smtpx_client,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        try_arg!(out_arg(out_client));
        // SAFETY: the caller passes NUL-terminated strings (server_name may be NULL).
        let host = try_arg!(unsafe { line_arg(host) });
        // SAFETY: as above.
        let server_name = try_arg!(unsafe { opt_line_arg(server_name) }).unwrap_or(host);
        let mut client_options = options.options.clone();
        if client_options.trace.is_none() {
            client_options.trace = log::env_trace(log::Side::Client);
        }
        if client_options.tls != TlsMode::None {
            let tls_options = TlsClientOptions {
                roots: options.roots.clone(),
                dangerous_accept_invalid_certs: options.insecure,
            };
            match tls::client_config(&tls_options) {
                Ok(config) => client_options.tls_config = Some(config),
                Err(e) => {
                    options.last_error.set_message(e.to_string());
                    return smtpx_result::Tls;
                }
            }
        }
        match SmtpClient::connect((host, port), server_name, client_options) {
            Ok(client) => {
                options.last_error = LastError::default();
                let client = into_raw(smtpx_client {
                    inner: Some(client),
                    last_error: LastError::default(),
                    tls_options: TlsClientOptions {
                        roots: options.roots.clone(),
                        dangerous_accept_invalid_certs: options.insecure,
                    },
                    server_name: server_name.to_owned(),
                });
                // SAFETY: out_client was checked non-NULL above.
                unsafe { write_out(out_client, client) };
                smtpx_result::Ok
            }
            Err(e) => {
                options.last_error.set(&e);
                result_for(e.kind())
            }
        }
    })
}

/// Frees a client, closing its connection without QUIT (call `smtpx_client_quit`
/// first to say goodbye). NULL is fine; must not be called twice on the same client.
///
/// Thread safety: no other thread may use the client during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_free(client: *mut smtpx_client) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a client from smtpx_client_connect, once.
        unsafe { free_raw(client) }
    })
}

/// Sends QUIT, waits for the reply and closes the connection. The client must still be
/// freed with `smtpx_client_free`; every later call on it fails with
/// SMTPX_RESULT_NOT_READY. A server that hangs up without replying is not an error.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_quit(client: *mut smtpx_client) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        try_arg!(client.session());
        let Some(session) = client.inner.take() else {
            return smtpx_result::NotReady;
        };
        match session.quit() {
            Ok(()) => smtpx_result::Ok,
            Err(e) => client.fail(&e),
        }
    })
}

/// True when the connection is encrypted (false for NULL or after QUIT).
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_is_tls(client: *const smtpx_client) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client.
        unsafe { client.as_ref() }
            .and_then(|c| c.inner.as_ref())
            .is_some_and(SmtpClient::is_tls)
    })
}

/// Upgrades a plain connection with STARTTLS now (for a client connected with
/// SMTPX_TLS_MODE_NONE, like smtplib's `starttls()`), checking the certificate with the
/// TLS settings of the options given to `smtpx_client_connect` (CA file, insecure). Returns
/// once the session has greeted again over TLS; the capabilities accessors then give the
/// new EHLO reply. `server_name` is the name the certificate must carry; NULL means the one
/// used at connect time.
///
/// Errors: SMTPX_RESULT_NOT_READY when the connection is already encrypted (nothing is
/// sent) or after QUIT; SMTPX_RESULT_START_TLS_REFUSED when the server refuses (the
/// connection stays usable in clear); SMTPX_RESULT_TLS when the handshake fails (the
/// connection is then closed); SMTPX_RESULT_INVALID_ARGUMENT for a bad server name.
///
/// Thread safety: blocks the calling thread; one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_starttls(
    client: *mut smtpx_client,
    server_name: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let name = match unsafe { opt_line_arg(server_name) } {
            Ok(name) => name.unwrap_or(&client.server_name).to_owned(),
            Err(r) => {
                let message = format!("the server name: {}", r.message().to_string_lossy());
                return client.refuse(r, message);
            }
        };
        if let Err(r) = client.session() {
            return r;
        }
        let config = match tls::client_config(&client.tls_options) {
            Ok(config) => config,
            Err(e) => return client.refuse(smtpx_result::Tls, e.to_string()),
        };
        let session = match client.session() {
            Ok(s) => s,
            Err(r) => return r,
        };
        match session.starttls(&name, Some(config)) {
            Ok(()) => smtpx_result::Ok,
            Err(e) => client.fail(&e),
        }
    })
}

/// The capabilities of a live client, or the error to return.
fn capabilities<'a>(client: *const smtpx_client) -> Result<&'a Capabilities, smtpx_result> {
    // SAFETY: the caller passes NULL or a live client; the borrow ends with the call.
    let client = unsafe { obj(client) }?;
    let session = client.inner.as_ref().ok_or(smtpx_result::NotReady)?;
    session.capabilities().ok_or(smtpx_result::NotReady)
}

/// Writes to `*out` whether the server announced `keyword` in its last EHLO (or LHLO)
/// reply, compared case-insensitively: "PIPELINING", "SIZE", "STARTTLS", "AUTH",
/// "CHUNKING", "8BITMIME", "SMTPUTF8", "DSN", or any other keyword.
///
/// Errors: SMTPX_RESULT_NULL_PARAMETER, SMTPX_RESULT_INVALID_UTF8; SMTPX_RESULT_NOT_READY
/// after QUIT or when the server answered HELO only (no capabilities known). These do not
/// change the client's last error.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_has_extension(
    client: *const smtpx_client,
    keyword: *const c_char,
    out: *mut bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        try_arg!(out_arg(out));
        // SAFETY: the caller passes a NUL-terminated string.
        let keyword = try_arg!(unsafe { str_arg(keyword) });
        let caps = try_arg!(capabilities(client));
        // SAFETY: out was checked non-NULL and points to a writable bool.
        unsafe { write_out(out, caps.has(keyword)) };
        smtpx_result::Ok
    })
}

/// The SIZE the server announced: `*has` is false when it announced none (`*out` is then
/// 0); otherwise `*out` is the limit in bytes, 0 meaning announced without a fixed limit.
///
/// Errors: SMTPX_RESULT_NULL_PARAMETER; SMTPX_RESULT_NOT_READY as for
/// `smtpx_client_has_extension`.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_size_limit(
    client: *const smtpx_client,
    out: *mut u64,
    has: *mut bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        try_arg!(out_arg(out));
        try_arg!(out_arg(has));
        let caps = try_arg!(capabilities(client));
        // SAFETY: out and has were checked non-NULL and are writable.
        unsafe {
            write_out(out, caps.size.unwrap_or(0));
            write_out(has, caps.size.is_some());
        }
        smtpx_result::Ok
    })
}

/// The AUTH mechanisms the server announced, in its order, separated by single spaces
/// (for example "PLAIN LOGIN"; "" when none), copied NUL-terminated into `buf` (of `len`
/// bytes); the length without the NUL goes to `*out_n`. SMTPX_RESULT_BUFFER_TOO_SMALL
/// writes nothing to `buf` (see `smtpx_client_last_error` for the buffer contract).
///
/// Errors: as `smtpx_client_has_extension`, and SMTPX_RESULT_BUFFER_TOO_SMALL.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_auth_mechanisms(
    client: *const smtpx_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        let caps = try_arg!(capabilities(client));
        let names: Vec<&str> = caps.auth.iter().map(|m| m.name()).collect();
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(&names.join(" "), buf, len, out_n) }
    })
}

/// The message of the client's last failed call, copied NUL-terminated into `buf` (of
/// `len` bytes); its length without the NUL goes to `*out_n`. Empty when no call failed.
/// SMTPX_RESULT_BUFFER_TOO_SMALL writes nothing.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_last_error(
    client: *const smtpx_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client.
        let client = try_arg!(unsafe { obj(client) });
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(&client.last_error.message, buf, len, out_n) }
    })
}

/// The server's reply behind the client's last failed call (a refused AUTH, a 421, ...),
/// borrowed: valid until the next call on the client or its free. NULL when the failure
/// had no reply (or `client` is NULL).
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_last_error_reply(client: *const smtpx_client) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client.
        unsafe { client.as_ref() }
            .and_then(|c| c.last_error.reply.as_ref())
            .map_or(ptr::null(), |r| r as *const smtpx_reply)
    })
}

/// Reads the envelope arguments shared by both send functions.
///
/// # Safety
/// `from` is a C string; `to` is NULL or points to `n_to` C strings.
unsafe fn envelope_args(
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
) -> Result<Envelope, (smtpx_result, String)> {
    let bad =
        |r: smtpx_result, what: &str| (r, format!("{what}: {}", r.message().to_string_lossy()));
    // SAFETY: from is a C string by this function's contract.
    let from = unsafe { line_arg(from) }.map_err(|r| bad(r, "the sender"))?;
    if to.is_null() {
        return Err(bad(smtpx_result::NullParameter, "the recipient list"));
    }
    if n_to == 0 {
        return Err((
            smtpx_result::InvalidArgument,
            "a message needs at least one recipient".to_owned(),
        ));
    }
    // SAFETY: to points to n_to pointers by this function's contract.
    let pointers = unsafe { std::slice::from_raw_parts(to, n_to) };
    let mut recipients = Vec::with_capacity(n_to);
    for (i, &p) in pointers.iter().enumerate() {
        // SAFETY: each element is a C string by this function's contract.
        let r = unsafe { line_arg(p) }.map_err(|r| bad(r, &format!("recipient {i}")))?;
        recipients.push(r);
    }
    Envelope::new(from, &recipients).map_err(|e| (smtpx_result::InvalidArgument, e.to_string()))
}

/// Sends the message through `client` and stores the result for C.
fn finish_send(
    client: &mut smtpx_client,
    outcome: Result<TransactionResult, Error>,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    match outcome {
        Ok(result) => {
            let result = into_raw(smtpx_send_result::new(&result));
            // SAFETY: out_result was checked non-NULL by the caller.
            unsafe { write_out(out_result, result) };
            smtpx_result::Ok
        }
        Err(e) => client.fail(&e),
    }
}

/// Sends one message held in memory (`msg`, `len` bytes: headers, a blank line, the
/// body) from `from` to the `n_to` addresses in `to`, and writes the outcome for each
/// recipient to `*out_result` (release with `smtpx_send_result_free`).
///
/// A refused recipient is not an error: check `smtpx_send_result_success` and each
/// recipient's reply. Bare LF and CR become CRLF and dot-stuffing is done here.
/// Addresses are bare (`user@example.com`, no angle brackets); "" is the null sender.
/// An address with CR or LF gives SMTPX_RESULT_INJECTION and sends nothing.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_send(
    client: *mut smtpx_client,
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
    msg: *const u8,
    len: usize,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        try_arg!(out_arg(out_result));
        if msg.is_null() && len != 0 {
            return client.refuse(smtpx_result::NullParameter, "the message is NULL");
        }
        // SAFETY: from, to and n_to as documented.
        let envelope = match unsafe { envelope_args(from, to, n_to) } {
            Ok(e) => e,
            Err((r, m)) => return client.refuse(r, m),
        };
        let message: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: msg is not NULL and readable for len bytes (the caller's contract).
            unsafe { std::slice::from_raw_parts(msg, len) }
        };
        let session = try_arg!(client.session());
        let outcome = session.send_bytes(&envelope, message);
        finish_send(client, outcome, out_result)
    })
}

/// One message of a batch for `smtpx_client_send_batch`: the envelope as
/// `smtpx_client_send` takes it (`from`, and `n_to` recipient addresses in `to`) and the
/// message held in memory (`data`, `len` bytes). Read during the call only.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_message {
    /// The sender, bare (`user@example.com`); "" is the null sender.
    pub from: *const c_char,
    /// `n_to` recipient addresses.
    pub to: *const *const c_char,
    /// How many addresses `to` holds (at least one).
    pub n_to: usize,
    /// The message: headers, a blank line, the body. NULL only when `len` is 0.
    pub data: *const u8,
    /// The length of `data` in bytes.
    pub len: usize,
}

/// Sends the `n` messages of `messages` over this connection, one transaction each. When
/// the server offers PIPELINING (and not CHUNKING) each next message's MAIL, RCPT and
/// DATA leave in the same write as the previous message's final dot, so a message costs
/// one round trip instead of two.
///
/// `out_results` and `out_codes` point to arrays of `n` elements. For message `i`,
/// `out_codes[i]` is SMTPX_RESULT_OK and `out_results[i]` its outcome (refusals are in it;
/// release each with `smtpx_send_result_free`), or `out_codes[i]` is the error that
/// message failed with (SMTPX_RESULT_MESSAGE_TOO_LARGE, say) and `out_results[i]` is
/// NULL. `*out_done` is how many messages have an outcome. Every envelope is checked
/// before anything is sent: a bad one returns its code (SMTPX_RESULT_INJECTION, ...)
/// with `*out_done` 0.
///
/// Returns SMTPX_RESULT_OK when every message has an outcome. An error that closes the
/// connection ends the batch: it is returned, `out_codes[*out_done - 1]` holds it too
/// (for the oldest message without an outcome, which may or may not have been
/// delivered), the messages from `*out_done` on were not sent (their code is
/// SMTPX_RESULT_NOT_READY, their result NULL), and `smtpx_client_last_error` says more.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_send_batch(
    client: *mut smtpx_client,
    messages: *const smtpx_message,
    n: usize,
    out_results: *mut *mut smtpx_send_result,
    out_codes: *mut smtpx_result,
    out_done: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        try_arg!(out_arg(out_done));
        // SAFETY: out_done was checked non-NULL above.
        unsafe { write_out(out_done, 0) };
        if n == 0 {
            return smtpx_result::Ok;
        }
        if messages.is_null() || out_results.is_null() || out_codes.is_null() {
            return client.refuse(
                smtpx_result::NullParameter,
                "messages, out_results and out_codes must not be NULL",
            );
        }
        // SAFETY: messages points to n readable elements (the caller's contract).
        let messages = unsafe { std::slice::from_raw_parts(messages, n) };
        // SAFETY: out_results and out_codes point to n writable elements each.
        let (results, codes) = unsafe {
            (
                std::slice::from_raw_parts_mut(out_results, n),
                std::slice::from_raw_parts_mut(out_codes, n),
            )
        };
        results.fill(ptr::null_mut());
        codes.fill(smtpx_result::NotReady);
        let mut envelopes = Vec::with_capacity(n);
        let mut bodies: Vec<&[u8]> = Vec::with_capacity(n);
        for (i, m) in messages.iter().enumerate() {
            if m.data.is_null() && m.len != 0 {
                return client.refuse(
                    smtpx_result::NullParameter,
                    format!("message {i}: the data is NULL"),
                );
            }
            // SAFETY: from, to and n_to as documented for smtpx_message.
            match unsafe { envelope_args(m.from, m.to, m.n_to) } {
                Ok(e) => envelopes.push(e),
                Err((r, text)) => return client.refuse(r, format!("message {i}: {text}")),
            }
            bodies.push(if m.len == 0 {
                &[]
            } else {
                // SAFETY: data is not NULL and readable for len bytes (the caller's
                // contract), and stays so during the call.
                unsafe { std::slice::from_raw_parts(m.data, m.len) }
            });
        }
        let session = try_arg!(client.session());
        let outcomes = session.send_batch(envelopes.iter().zip(bodies.iter().copied()));
        let done = outcomes.len();
        let complete = done == n;
        let mut last = smtpx_result::Ok;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(result) => {
                    results[i] = into_raw(smtpx_send_result::new(&result));
                    codes[i] = smtpx_result::Ok;
                }
                Err(e) => {
                    codes[i] = client.fail(&e);
                    last = codes[i];
                }
            }
        }
        // SAFETY: out_done was checked non-NULL above.
        unsafe { write_out(out_done, done) };
        if complete { smtpx_result::Ok } else { last }
    })
}

/// The read callback of `smtpx_client_send_stream`: fills `buf` (of `len` bytes) with up
/// to `len` bytes of the message, writes how many to `*out_n`, and returns 0; `*out_n`
/// 0 means the message is complete. Any other return value is an error (an errno value,
/// for example): the connection is then closed, so that a truncated message is never
/// delivered, and the send fails with SMTPX_RESULT_MESSAGE_SOURCE. Runs on the calling
/// thread, during the call only.
#[allow(non_camel_case_types)]
pub type smtpx_read_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        buf: *mut u8,
        len: usize,
        out_n: *mut usize,
    ) -> c_int,
>;

/// Adapts a C read callback to `std::io::Read`.
struct CallbackReader {
    callback: unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> c_int,
    userdata: *mut c_void,
}

impl io::Read for CallbackReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        // SAFETY: buf is initialised and writable for buf.len() bytes, n is a valid
        // out-pointer; the callback's contract is to write at most len bytes.
        let rc = unsafe { (self.callback)(self.userdata, buf.as_mut_ptr(), buf.len(), &mut n) };
        if rc != 0 {
            return Err(io::Error::other(format!("the read callback returned {rc}")));
        }
        if n > buf.len() {
            return Err(io::Error::other(format!(
                "the read callback reported {n} bytes for a buffer of {}",
                buf.len()
            )));
        }
        Ok(n)
    }
}

/// Sends one message read piece by piece from `read_callback` (see
/// `smtpx_read_callback`), which receives `userdata`; otherwise as `smtpx_client_send`.
/// The message is never held whole in memory. SIZE is not announced.
///
/// Thread safety: one thread at a time per client; the callback runs on the calling
/// thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_send_stream(
    client: *mut smtpx_client,
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
    read_callback: smtpx_read_callback,
    userdata: *mut c_void,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        try_arg!(out_arg(out_result));
        let Some(callback) = read_callback else {
            return client.refuse(smtpx_result::NullParameter, "the read callback is NULL");
        };
        // SAFETY: from, to and n_to as documented.
        let envelope = match unsafe { envelope_args(from, to, n_to) } {
            Ok(e) => e,
            Err((r, m)) => return client.refuse(r, m),
        };
        let session = try_arg!(client.session());
        let reader = CallbackReader { callback, userdata };
        let outcome = session.send(&envelope, reader, None);
        finish_send(client, outcome, out_result)
    })
}

/// Runs one command that returns a reply, and hands the reply to C.
fn reply_command(
    client: *mut smtpx_client,
    out_reply: *mut *mut smtpx_reply,
    command: impl FnOnce(&mut SmtpClient) -> Result<Reply, Error>,
) -> smtpx_result {
    // SAFETY: the caller passes NULL or a live client, used by no other thread.
    let client = try_arg!(unsafe { obj_mut(client) });
    try_arg!(out_arg(out_reply));
    let session = try_arg!(client.session());
    match command(session) {
        Ok(reply) => {
            // SAFETY: out_reply was checked non-NULL above.
            unsafe { write_out(out_reply, into_raw(smtpx_reply::new(&reply))) };
            smtpx_result::Ok
        }
        Err(e) => client.fail(&e),
    }
}

/// Authenticates now with a user name and password (PLAIN or LOGIN, whichever the
/// server offers) and writes the server's 235 reply to `*out_reply` (free with
/// `smtpx_reply_free`). A refusal is SMTPX_RESULT_AUTH_FAILED (the reply is then
/// `smtpx_client_last_error_reply`) and leaves the connection usable.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_login(
    client: *mut smtpx_client,
    username: *const c_char,
    password: *const c_char,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NUL-terminated strings.
        let user = try_arg!(unsafe { line_arg(username) });
        // SAFETY: as above.
        let pass = try_arg!(unsafe { line_arg(password) });
        reply_command(client, out_reply, |c| {
            c.login(Credentials::password(user, pass))
        })
    })
}

/// Sends NOOP and writes the reply, whatever its code, to `*out_reply` (free with
/// `smtpx_reply_free`).
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_noop(
    client: *mut smtpx_client,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    ffi_panic_boundary(|| reply_command(client, out_reply, SmtpClient::noop))
}

/// Sends RSET and writes the reply, whatever its code, to `*out_reply` (free with
/// `smtpx_reply_free`).
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_rset(
    client: *mut smtpx_client,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    ffi_panic_boundary(|| reply_command(client, out_reply, SmtpClient::rset))
}

/// Sends VRFY `argument` and writes the reply, whatever its code, to `*out_reply` (free
/// with `smtpx_reply_free`). CR or LF in `argument` gives SMTPX_RESULT_INJECTION.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_vrfy(
    client: *mut smtpx_client,
    argument: *const c_char,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let argument = try_arg!(unsafe { line_arg(argument) });
        reply_command(client, out_reply, |c| c.vrfy(argument))
    })
}

/// Sends EXPN `argument` and writes the reply, whatever its code, to `*out_reply` (free
/// with `smtpx_reply_free`). CR or LF in `argument` gives SMTPX_RESULT_INJECTION.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_expn(
    client: *mut smtpx_client,
    argument: *const c_char,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let argument = try_arg!(unsafe { line_arg(argument) });
        reply_command(client, out_reply, |c| c.expn(argument))
    })
}

/// Sends HELP (with `topic`, or none when NULL) and writes the reply, whatever its code,
/// to `*out_reply` (free with `smtpx_reply_free`).
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_help(
    client: *mut smtpx_client,
    topic: *const c_char,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let topic = try_arg!(unsafe { opt_line_arg(topic) });
        reply_command(client, out_reply, |c| c.help(topic))
    })
}

/// One recipient's outcome, kept for C.
#[derive(Debug)]
struct RecipientOutcome {
    address: CString,
    reply: smtpx_reply,
    delivery: Option<smtpx_reply>,
    accepted: bool,
}

/// The outcome of one sent message: the reply to MAIL FROM, each recipient's reply (and,
/// under LMTP, its delivery reply), the final reply after the message, and the queue id
/// the server named.
///
/// Strings and replies borrowed from it live until `smtpx_send_result_free`.
///
/// Thread safety: immutable; may be read from several threads at once and moved between
/// threads.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_send_result {
    success: bool,
    mail: smtpx_reply,
    recipients: Vec<RecipientOutcome>,
    data: Option<smtpx_reply>,
    queue_id: Option<CString>,
}

impl smtpx_send_result {
    fn new(result: &TransactionResult) -> smtpx_send_result {
        smtpx_send_result {
            success: result.is_success(),
            mail: smtpx_reply::new(&result.mail),
            recipients: result
                .recipients
                .iter()
                .map(|r| RecipientOutcome {
                    address: to_cstring(r.address.as_str()),
                    reply: smtpx_reply::new(&r.reply),
                    delivery: r.delivery.as_ref().map(smtpx_reply::new),
                    accepted: r.is_accepted(),
                })
                .collect(),
            data: result.data.as_ref().map(smtpx_reply::new),
            queue_id: result.queue_id().map(to_cstring),
        }
    }

    /// Recipient `i`, if there is one.
    ///
    /// # Safety
    /// `result` is NULL or a live result.
    unsafe fn recipient<'a>(
        result: *const smtpx_send_result,
        i: usize,
    ) -> Option<&'a RecipientOutcome> {
        // SAFETY: by this function's contract.
        unsafe { result.as_ref() }?.recipients.get(i)
    }
}

/// Frees a send result. NULL is fine; must not be called twice on the same result.
///
/// Thread safety: no other thread may use the result during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_free(result: *mut smtpx_send_result) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a result from this library, once.
        unsafe { free_raw(result) }
    })
}

/// True when the message was accepted for at least one recipient (false for NULL).
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_success(result: *const smtpx_send_result) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }.is_some_and(|r| r.success)
    })
}

/// How many recipients the result covers (the envelope's, in order); 0 for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_count(result: *const smtpx_send_result) -> usize {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }.map_or(0, |r| r.recipients.len())
    })
}

/// The address of recipient `index` (bare, without angle brackets), borrowed from the
/// result; NULL when `index` is out of range or `result` is NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_address(
    result: *const smtpx_send_result,
    index: usize,
) -> *const c_char {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }
            .map_or(ptr::null(), |r| r.address.as_ptr())
    })
}

/// True when the message was taken for recipient `index` (its RCPT was accepted, and
/// under LMTP its delivery too); false when refused, out of range or NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_accepted(
    result: *const smtpx_send_result,
    index: usize,
) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }.is_some_and(|r| r.accepted)
    })
}

/// The server's reply to recipient `index`'s RCPT, borrowed from the result; NULL when
/// `index` is out of range or `result` is NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_reply(
    result: *const smtpx_send_result,
    index: usize,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }
            .map_or(ptr::null(), |r| &r.reply as *const smtpx_reply)
    })
}

/// Under LMTP, the delivery reply for recipient `index` after the message, borrowed from
/// the result; NULL for SMTP, out of range or NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_delivery(
    result: *const smtpx_send_result,
    index: usize,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }
            .and_then(|r| r.delivery.as_ref())
            .map_or(ptr::null(), |r| r as *const smtpx_reply)
    })
}

/// The reply to MAIL FROM, borrowed from the result; NULL for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_mail_reply(
    result: *const smtpx_send_result,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }.map_or(ptr::null(), |r| &r.mail as *const smtpx_reply)
    })
}

/// The final reply after the message (the last one under LMTP) or the refusal of
/// DATA/BDAT, borrowed from the result; NULL when the message was never sent (every
/// recipient refused) or for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_final_reply(
    result: *const smtpx_send_result,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }
            .and_then(|r| r.data.as_ref())
            .map_or(ptr::null(), |r| r as *const smtpx_reply)
    })
}

/// The queue id the server named in its final reply ("queued as ID" or "id=ID"),
/// borrowed from the result; NULL when it named none or for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_queue_id(result: *const smtpx_send_result) -> *const c_char {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }
            .and_then(|r| r.queue_id.as_ref())
            .map_or(ptr::null(), |q| q.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_error_kind_has_its_own_result() {
        let kinds = [
            ErrorKind::Io,
            ErrorKind::Tls,
            ErrorKind::Timeout,
            ErrorKind::InvalidArgument,
            ErrorKind::NotReady,
            ErrorKind::Greeting,
            ErrorKind::Hello,
            ErrorKind::StartTlsUnavailable,
            ErrorKind::StartTlsRefused,
            ErrorKind::AuthUnsupported,
            ErrorKind::AuthFailed,
            ErrorKind::MessageTooLarge,
            ErrorKind::SmtpUtf8Unsupported,
            ErrorKind::ServerClosed,
            ErrorKind::ConnectionClosed,
            ErrorKind::Protocol,
            ErrorKind::MessageSource,
        ];
        let results: HashSet<u32> = kinds.iter().map(|&k| result_for(k) as u32).collect();
        assert_eq!(results.len(), kinds.len());
        assert!(!results.contains(&(smtpx_result::Ok as u32)));
        // The ranges: protocol 2xx, I/O 3xx, TLS and authentication 4xx.
        assert_eq!(result_for(ErrorKind::Greeting) as u32 / 100, 2);
        assert_eq!(result_for(ErrorKind::Timeout) as u32 / 100, 3);
        assert_eq!(result_for(ErrorKind::AuthFailed) as u32 / 100, 4);
        assert_eq!(result_for(ErrorKind::StartTlsRefused) as u32 / 100, 4);
    }
}
