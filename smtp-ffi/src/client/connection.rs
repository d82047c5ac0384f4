//! `smtpx_client`: connecting, the session's state (TLS, capabilities, the last error),
//! STARTTLS, QUIT, and the commands that return a reply (AUTH, NOOP, RSET, VRFY, EXPN,
//! HELP).

use std::ffi::c_char;
use std::ptr;

use smtp_core::auth::Credentials;
use smtp_core::blocking::client::{Error, SmtpClient, TlsMode};
use smtp_core::ehlo::Capabilities;
use smtp_core::reply::Reply;
use smtp_core::tls::{self, TlsClientExtras, TlsClientOptions};

use super::error::result_of;
use super::options::smtpx_client_options;
use crate::ffi::{
    copy_str_out, free_raw, into_raw, line_arg, obj, obj_mut, opt_line_arg, out_arg, str_arg,
    try_arg, write_out,
};
use crate::last_error::{KeepsLastError, LastError, record};
use crate::log;
use crate::panic::ffi_panic_boundary;
use crate::reply::smtpx_reply;
use crate::result::smtpx_result;

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
    /// The options' other TLS settings (client certificate, minimum version, SNI).
    tls_extras: TlsClientExtras,
    /// The name given to (or implied by) `smtpx_client_connect`.
    server_name: String,
}

impl KeepsLastError for smtpx_client {
    fn last_error_mut(&mut self) -> &mut LastError {
        &mut self.last_error
    }
}

impl smtpx_client {
    /// The live session, or `NotReady` (recorded as the last error) after QUIT or after
    /// an error that ended the connection.
    pub(super) fn session(&mut self) -> Result<&mut SmtpClient, smtpx_result> {
        match self.inner.as_mut() {
            Some(c) if !c.is_closed() => Ok(c),
            Some(_) => {
                self.last_error
                    .set_message("the connection is over (an earlier error ended it)");
                Err(smtpx_result::NotReady)
            }
            None => {
                self.last_error.set_message("the client has quit");
                Err(smtpx_result::NotReady)
            }
        }
    }

    /// Records `error` as the last error and gives its code.
    pub(super) fn fail(&mut self, error: &Error) -> smtpx_result {
        self.last_error.set(error);
        result_of(error)
    }

    /// Records a refused MAIL FROM (the reply kept as the last error's).
    pub(super) fn sender_refused(&mut self, mail: &Reply) -> smtpx_result {
        self.last_error.message = format!("the server refused the sender: {mail}");
        self.last_error.reply = Some(smtpx_reply::new(mail));
        smtpx_result::SenderRefused
    }

    /// Records a failure found at the boundary (a bad argument).
    pub(super) fn refuse(
        &mut self,
        result: smtpx_result,
        message: impl Into<String>,
    ) -> smtpx_result {
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
        record(options, |options| {
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
                match tls::client_config_with(&options.tls_options(), &options.tls_extras) {
                    Ok(config) => client_options.tls_config = Some(config),
                    Err(e) => {
                        options.last_error.set_message(e.to_string());
                        return smtpx_result::Tls;
                    }
                }
            }
            match SmtpClient::connect((host, port), server_name, client_options) {
                Ok(client) => {
                    let client = into_raw(smtpx_client {
                        inner: Some(client),
                        last_error: LastError::default(),
                        tls_options: options.tls_options(),
                        tls_extras: options.tls_extras.clone(),
                        server_name: server_name.to_owned(),
                    });
                    // SAFETY: out_client was checked non-NULL above.
                    unsafe { write_out(out_client, client) };
                    smtpx_result::Ok
                }
                Err(e) => {
                    options.last_error.set(&e);
                    result_of(&e)
                }
            }
        })
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
        record(client, |client| {
            try_arg!(client.session());
            let Some(session) = client.inner.take() else {
                return smtpx_result::NotReady;
            };
            match session.quit() {
                Ok(()) => smtpx_result::Ok,
                Err(e) => client.fail(&e),
            }
        })
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
        record(client, |client| {
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
            let config = match tls::client_config_with(&client.tls_options, &client.tls_extras) {
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
/// bytes); the length without the NUL goes to `*out_n`. When `buf` is NULL or too small:
/// SMTPX_RESULT_BUFFER_TOO_SMALL, and the size needed (with the NUL) goes to `*out_n`.
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

/// The message of the client's last call if it failed (empty if it succeeded; see "Last
/// errors" at the top of this header), copied NUL-terminated into `buf` (of `len`
/// bytes); its length without the NUL goes to `*out_n`. When `buf` is NULL or too small:
/// SMTPX_RESULT_BUFFER_TOO_SMALL, nothing written to `buf`, and the size needed (with the
/// NUL) written to `*out_n`, as every string getter of this library does:
///
/// ```c
/// size_t n = 0;
/// smtpx_client_last_error(client, NULL, 0, &n);  // SMTPX_RESULT_BUFFER_TOO_SMALL
/// char *text = malloc(n);
/// smtpx_client_last_error(client, text, n, &n);  // SMTPX_RESULT_OK, n = strlen(text)
/// ```
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

/// Why a command that returns a reply failed: a bad argument, or the client's error.
enum CommandFailure {
    Argument(smtpx_result),
    Client(Error),
}

impl From<Error> for CommandFailure {
    fn from(error: Error) -> Self {
        CommandFailure::Client(error)
    }
}

/// Runs one command that returns a reply (reading its arguments inside `command`, so
/// that a bad one is recorded as the last error too), and hands the reply to C.
fn reply_command(
    client: *mut smtpx_client,
    out_reply: *mut *mut smtpx_reply,
    command: impl FnOnce(&mut SmtpClient) -> Result<Reply, CommandFailure>,
) -> smtpx_result {
    // SAFETY: the caller passes NULL or a live client, used by no other thread.
    let client = try_arg!(unsafe { obj_mut(client) });
    record(client, |client| {
        try_arg!(out_arg(out_reply));
        let session = try_arg!(client.session());
        match command(session) {
            Ok(reply) => {
                // SAFETY: out_reply was checked non-NULL above.
                unsafe { write_out(out_reply, into_raw(smtpx_reply::new(&reply))) };
                smtpx_result::Ok
            }
            Err(CommandFailure::Client(e)) => client.fail(&e),
            Err(CommandFailure::Argument(r)) => r,
        }
    })
}

/// Authenticates now with a user name and password (PLAIN or LOGIN, whichever the
/// server offers) and writes the server's 235 reply to `*out_reply` (free with
/// `smtpx_reply_free`). A refusal is SMTPX_RESULT_AUTH_FAILED (the reply is then
/// `smtpx_client_last_error_reply`) and leaves the connection usable. On a connection
/// without TLS it fails with SMTPX_RESULT_INSECURE_AUTH, sending nothing, unless the
/// options allowed it (`smtpx_client_options_set_allow_insecure_auth`); the connection
/// stays usable (for `smtpx_client_starttls`, then a login).
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
        reply_command(client, out_reply, |c| {
            // SAFETY: the caller passes NUL-terminated strings.
            let user = unsafe { line_arg(username) }.map_err(CommandFailure::Argument)?;
            // SAFETY: as above.
            let pass = unsafe { line_arg(password) }.map_err(CommandFailure::Argument)?;
            Ok(c.login(Credentials::password(user, pass))?)
        })
    })
}

/// Authenticates now with XOAUTH2: `username` and an OAuth 2.0 bearer `token`; otherwise
/// as `smtpx_client_login` (SMTPX_RESULT_AUTH_UNSUPPORTED when the server does not offer
/// XOAUTH2).
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_login_xoauth2(
    client: *mut smtpx_client,
    username: *const c_char,
    token: *const c_char,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        reply_command(client, out_reply, |c| {
            // SAFETY: the caller passes NUL-terminated strings.
            let user = unsafe { line_arg(username) }.map_err(CommandFailure::Argument)?;
            // SAFETY: as above.
            let token = unsafe { line_arg(token) }.map_err(CommandFailure::Argument)?;
            Ok(c.login(Credentials::oauth2(user, token))?)
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
    ffi_panic_boundary(|| reply_command(client, out_reply, |c| Ok(c.noop()?)))
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
    ffi_panic_boundary(|| reply_command(client, out_reply, |c| Ok(c.rset()?)))
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
        reply_command(client, out_reply, |c| {
            // SAFETY: the caller passes a NUL-terminated string.
            let argument = unsafe { line_arg(argument) }.map_err(CommandFailure::Argument)?;
            Ok(c.vrfy(argument)?)
        })
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
        reply_command(client, out_reply, |c| {
            // SAFETY: the caller passes a NUL-terminated string.
            let argument = unsafe { line_arg(argument) }.map_err(CommandFailure::Argument)?;
            Ok(c.expn(argument)?)
        })
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
        reply_command(client, out_reply, |c| {
            // SAFETY: the caller passes NULL or a NUL-terminated string.
            let topic = unsafe { opt_line_arg(topic) }.map_err(CommandFailure::Argument)?;
            Ok(c.help(topic)?)
        })
    })
}
