//! Starting the operations of an `smtpx_client_session` (connect, send, a batch, login,
//! STARTTLS, a command, QUIT); [`super::session`] drives them.

use std::ffi::c_char;

use smtp_core::auth::Credentials;
use smtp_core::client::Envelope;
use smtp_core::client::runner::OwnedOperation;
use smtp_core::tls;

use super::envelope::smtpx_envelope;
use super::options::smtpx_client_options;
use super::send::{envelope_args, smtpx_message};
use super::session::{on_session, smtpx_client_session};
use crate::ffi::{line_arg, obj, opt_line_arg, try_arg};
use crate::result::smtpx_result;

/// Starts the connect operation: wait for the greeting, EHLO (or LHLO), STARTTLS and
/// AUTH as the options say. Every operation starter returns SMTPX_RESULT_NOT_READY while
/// another operation is in progress, and otherwise OK: what happens is told by the
/// actions, up to DONE.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_connect(session: *mut smtpx_client_session) -> smtpx_result {
    on_session(session, |s| s.start(Vec::new(), OwnedOperation::connect))
}

/// Starts sending one message held in memory (`msg`, `len` bytes, copied) from `from` to
/// the `n_to` addresses of `to`, as `smtpx_client_send` takes them. At DONE with
/// SMTPX_RESULT_OK, `smtpx_client_session_take_send_result` gives the per-recipient
/// outcome; a refused sender is SMTPX_RESULT_SENDER_REFUSED.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_send(
    session: *mut smtpx_client_session,
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
    msg: *const u8,
    len: usize,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: from, to and n_to as documented.
        let envelope = match unsafe { envelope_args(from, to, n_to) } {
            Ok(e) => e,
            Err((r, m)) => {
                s.last_error.set_message(m);
                return r;
            }
        };
        // SAFETY: msg is readable for len bytes (the caller's contract).
        let body = try_arg!(unsafe { message(msg, len) }).to_vec();
        start_send(s, envelope, body, now_ms)
    })
}

/// As `smtpx_client_session_send`, with the envelope `envelope` (DSN, BODY, SMTPUTF8;
/// see `smtpx_envelope`; not consumed).
///
/// Thread safety: one thread at a time per session and per envelope.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_send_envelope(
    session: *mut smtpx_client_session,
    envelope: *const smtpx_envelope,
    msg: *const u8,
    len: usize,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: the caller passes NULL or a live envelope.
        let envelope = try_arg!(unsafe { obj(envelope) }).envelope.clone();
        if envelope.recipients.is_empty() {
            s.last_error
                .set_message("a message needs at least one recipient");
            return smtpx_result::InvalidArgument;
        }
        // SAFETY: msg is readable for len bytes (the caller's contract).
        let body = try_arg!(unsafe { message(msg, len) }).to_vec();
        start_send(s, envelope, body, now_ms)
    })
}

/// Starts sending one message whose content the program gives piece by piece, as it
/// comes (a file, a pipe, a generator), from `from` to the `n_to` addresses of `to`:
/// when the operation wants content, the next action is BODY, answered with
/// `smtpx_client_session_body` (a piece) or `smtpx_client_session_body_end` (the end).
/// Only one piece is held at a time. No SIZE is declared (the size is not known). At
/// DONE, as `smtpx_client_session_send`.
///
/// ```c
/// case SMTPX_CLIENT_ACTION_KIND_BODY: {
///     ssize_t n = read(file, buf, sizeof buf);
///     if (n > 0) smtpx_client_session_body(s, buf, (size_t)n);
///     else if (n == 0) smtpx_client_session_body_end(s);
///     else smtpx_client_session_body_failed(s);
///     break;
/// }
/// ```
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_send_stream(
    session: *mut smtpx_client_session,
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: from, to and n_to as documented.
        let envelope = match unsafe { envelope_args(from, to, n_to) } {
            Ok(e) => e,
            Err((r, m)) => {
                s.last_error.set_message(m);
                return r;
            }
        };
        let now = s.at(now_ms);
        s.start_with(Vec::new(), true, |runner| {
            OwnedOperation::send(runner, &envelope, None, now)
        })
    })
}

fn start_send(
    s: &mut smtpx_client_session,
    envelope: Envelope,
    body: Vec<u8>,
    now_ms: u64,
) -> smtpx_result {
    let now = s.at(now_ms);
    let size = u64::try_from(body.len()).ok();
    s.start(body, |runner| {
        OwnedOperation::send(runner, &envelope, size, now)
    })
}

/// A message argument: NULL only with length 0.
///
/// # Safety
/// `p` is NULL or readable for `len` bytes during the call.
pub(super) unsafe fn message<'a>(p: *const u8, len: usize) -> Result<&'a [u8], smtpx_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(smtpx_result::NullParameter);
    }
    // SAFETY: p is not NULL and readable for len bytes by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Starts sending the `n` messages of `messages` (copied), one transaction each, chained
/// behind each final dot when the server pipelines (one round trip per message). Every
/// envelope is checked first: a bad one returns its code and starts nothing. At DONE,
/// `smtpx_client_session_take_batch` gives each message's outcome.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_send_batch(
    session: *mut smtpx_client_session,
    messages: *const smtpx_message,
    n: usize,
) -> smtpx_result {
    on_session(session, |s| {
        if messages.is_null() || n == 0 {
            s.last_error
                .set_message("a batch needs at least one message");
            return if messages.is_null() {
                smtpx_result::NullParameter
            } else {
                smtpx_result::InvalidArgument
            };
        }
        // SAFETY: messages points to n readable elements (the caller's contract).
        let messages = unsafe { std::slice::from_raw_parts(messages, n) };
        let mut batch = Vec::with_capacity(n);
        for (i, m) in messages.iter().enumerate() {
            // SAFETY: from, to and n_to as documented for smtpx_message.
            let envelope = match unsafe { envelope_args(m.from, m.to, m.n_to) } {
                Ok(e) => e,
                Err((r, text)) => {
                    s.last_error.set_message(format!("message {i}: {text}"));
                    return r;
                }
            };
            // SAFETY: data is readable for len bytes (the caller's contract).
            let body = try_arg!(unsafe { message(m.data, m.len) }).to_vec();
            batch.push((envelope, body));
        }
        s.start(Vec::new(), |runner| {
            OwnedOperation::send_batch(runner, batch)
        })
    })
}

/// Starts AUTH with a user name and password (PLAIN or LOGIN). At DONE with
/// SMTPX_RESULT_OK, `smtpx_client_session_take_reply` gives the 235.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_login(
    session: *mut smtpx_client_session,
    username: *const c_char,
    password: *const c_char,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: the caller passes NUL-terminated strings.
        let user = try_arg!(unsafe { line_arg(username) });
        // SAFETY: as above.
        let pass = try_arg!(unsafe { line_arg(password) });
        let credentials = Credentials::password(user, pass);
        let now = s.at(now_ms);
        s.start(Vec::new(), |runner| {
            OwnedOperation::login(runner, credentials, now)
        })
    })
}

/// Starts STARTTLS on a plain connection, checking the certificate for `server_name`
/// (NULL: the session's name) with the options' TLS settings; a START_TLS action follows
/// the server's 220.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_starttls(
    session: *mut smtpx_client_session,
    options: *mut smtpx_client_options,
    server_name: *const c_char,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: the caller passes NULL or live options.
        let o = try_arg!(unsafe { obj(options) });
        // SAFETY: the caller passes a NUL-terminated string.
        let name = try_arg!(unsafe { line_arg(server_name) }).to_owned();
        let config = match tls::client_config_with(&o.tls_options(), &o.tls_extras) {
            Ok(c) => c,
            Err(e) => {
                s.last_error.set_message(e.to_string());
                return smtpx_result::Tls;
            }
        };
        let now = s.at(now_ms);
        s.start(Vec::new(), |runner| {
            OwnedOperation::starttls(runner, &name, Some(config), now)
        })
    })
}

/// The commands that return a reply, for `smtpx_client_session_command`.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_client_command {
    /// NOOP (no argument).
    Noop = 1,
    /// RSET (no argument).
    Rset = 2,
    /// VRFY argument.
    Vrfy = 3,
    /// EXPN argument.
    Expn = 4,
    /// HELP, with an optional argument.
    Help = 5,
}

/// A raw `smtpx_client_command` from C; the header spells it `smtpx_client_command`.
#[allow(non_camel_case_types)]
pub type smtpx_client_command_code = u32;

/// Starts one command that returns a reply (see `smtpx_client_command`; `argument` for
/// VRFY and EXPN, optional for HELP, NULL otherwise). At DONE with SMTPX_RESULT_OK,
/// `smtpx_client_session_take_reply` gives the reply, whatever its code.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_command(
    session: *mut smtpx_client_session,
    command: smtpx_client_command_code,
    argument: *const c_char,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let argument = try_arg!(unsafe { opt_line_arg(argument) }).map(str::to_owned);
        let now = s.at(now_ms);
        let needs_argument = |a: Option<String>| a.ok_or(smtpx_result::NullParameter);
        match command {
            c if c == smtpx_client_command::Noop as u32 => s.start(Vec::new(), |r| {
                OwnedOperation::command(r, |c| c.noop(), now)
            }),
            c if c == smtpx_client_command::Rset as u32 => s.start(Vec::new(), |r| {
                OwnedOperation::command(r, |c| c.rset(), now)
            }),
            c if c == smtpx_client_command::Vrfy as u32 => {
                let a = try_arg!(needs_argument(argument));
                s.start(Vec::new(), |r| {
                    OwnedOperation::command(r, |c| c.vrfy(&a), now)
                })
            }
            c if c == smtpx_client_command::Expn as u32 => {
                let a = try_arg!(needs_argument(argument));
                s.start(Vec::new(), |r| {
                    OwnedOperation::command(r, |c| c.expn(&a), now)
                })
            }
            c if c == smtpx_client_command::Help as u32 => s.start(Vec::new(), |r| {
                OwnedOperation::command(r, |c| c.help(argument.as_deref()), now)
            }),
            _ => smtpx_result::InvalidArgument,
        }
    })
}

/// Starts QUIT: the reply, then a CLOSE action (a connection already over is only
/// closed).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_quit(
    session: *mut smtpx_client_session,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        let now = s.at(now_ms);
        s.start(Vec::new(), |r| OwnedOperation::quit(r, now))
    })
}
