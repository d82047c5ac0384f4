//! What an `smtpx_client_session`'s operations produced (a send result, a reply, a
//! batch's outcomes) and what the session knows (TLS, closed, the last error).

use std::ffi::c_char;

use super::error::result_of;
use super::result::smtpx_send_result;
use super::session::{Produced, State, on_session, smtpx_client_session};
use crate::ffi::{copy_str_out, into_raw, obj, out_arg, try_arg, write_out};
use crate::panic::ffi_panic_boundary;
use crate::reply::smtpx_reply;
use crate::result::smtpx_result;

/// Takes the per-recipient outcome of the last send (free with `smtpx_send_result_free`).
/// SMTPX_RESULT_NOT_READY when there is none (not a send, not taken yet, or it failed).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_take_send_result(
    session: *mut smtpx_client_session,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    on_session(session, |s| {
        try_arg!(out_arg(out_result));
        if !matches!(s.produced, Produced::Transaction(_)) {
            return smtpx_result::NotReady;
        }
        let Produced::Transaction(t) = std::mem::take(&mut s.produced) else {
            return smtpx_result::NotReady;
        };
        // SAFETY: out_result was checked non-NULL above.
        unsafe { write_out(out_result, into_raw(smtpx_send_result::new(&t))) };
        smtpx_result::Ok
    })
}

/// Takes the reply of the last command or login (free with `smtpx_reply_free`).
/// SMTPX_RESULT_NOT_READY when there is none.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_take_reply(
    session: *mut smtpx_client_session,
    out_reply: *mut *mut smtpx_reply,
) -> smtpx_result {
    on_session(session, |s| {
        try_arg!(out_arg(out_reply));
        if !matches!(s.produced, Produced::Reply(_)) {
            return smtpx_result::NotReady;
        }
        let Produced::Reply(r) = std::mem::take(&mut s.produced) else {
            return smtpx_result::NotReady;
        };
        // SAFETY: out_reply was checked non-NULL above.
        unsafe { write_out(out_reply, into_raw(smtpx_reply::new(&r))) };
        smtpx_result::Ok
    })
}

/// Takes the outcomes of the last batch, as `smtpx_client_send_batch` gives them:
/// `out_results` and `out_codes` have room for `n` (the batch's size); `*out_done` is
/// how many messages have an outcome. SMTPX_RESULT_NOT_READY when there is no batch
/// outcome.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_take_batch(
    session: *mut smtpx_client_session,
    out_results: *mut *mut smtpx_send_result,
    out_codes: *mut smtpx_result,
    n: usize,
    out_done: *mut usize,
) -> smtpx_result {
    on_session(session, |s| {
        try_arg!(out_arg(out_done));
        if n > 0 && (out_results.is_null() || out_codes.is_null()) {
            return smtpx_result::NullParameter;
        }
        if !matches!(s.produced, Produced::Batch(_)) {
            return smtpx_result::NotReady;
        }
        let Produced::Batch(outcomes) = std::mem::take(&mut s.produced) else {
            return smtpx_result::NotReady;
        };
        if outcomes.len() > n {
            s.produced = Produced::Batch(outcomes);
            return smtpx_result::BufferTooSmall;
        }
        for (i, outcome) in outcomes.iter().enumerate() {
            let (result, code) = match outcome {
                Ok(t) if !t.mail.is_completion() => {
                    (std::ptr::null_mut(), smtpx_result::SenderRefused)
                }
                Ok(t) => (into_raw(smtpx_send_result::new(t)), smtpx_result::Ok),
                Err(e) => (std::ptr::null_mut(), result_of(e)),
            };
            // SAFETY: both arrays have room for n >= outcomes.len() elements.
            unsafe {
                out_results.add(i).write(result);
                out_codes.add(i).write(code);
            }
        }
        // SAFETY: out_done was checked non-NULL above.
        unsafe { write_out(out_done, outcomes.len()) };
        smtpx_result::Ok
    })
}

/// True when the connection is encrypted (STARTTLS done, or implicit TLS).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_is_tls(session: *const smtpx_client_session) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        unsafe { session.as_ref() }.is_some_and(|s| match &s.state {
            State::Idle(r) => r.session().is_tls(),
            State::Busy(b) => b.op.runner().session().is_tls(),
            State::Moving => false,
        })
    })
}

/// True once the connection is over (after QUIT, or an error that ended it); also true
/// for NULL.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_is_closed(session: *const smtpx_client_session) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        unsafe { session.as_ref() }.is_none_or(|s| match &s.state {
            State::Idle(r) => r.is_closed(),
            State::Busy(b) => b.op.runner().is_closed(),
            State::Moving => true,
        })
    })
}

/// The message of the session's last failure, copied into `buf` under the buffer
/// contract: an operation's, set (or cleared, when it succeeded) by the
/// `smtpx_client_session_next_action` that gave DONE; else that of the last other call,
/// which follows the header's rule (cleared on success).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_last_error(
    session: *const smtpx_client_session,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(&s.last_error.message, buf, len, out_n) }
    })
}

/// The server's reply behind the session's last failure (a refused sender, AUTH, a 421),
/// borrowed until the next call on the session; NULL when there is none.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_last_error_reply(
    session: *const smtpx_client_session,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        unsafe { session.as_ref() }
            .and_then(|s| s.last_error.reply.as_ref())
            .map_or(std::ptr::null(), |r| r as *const smtpx_reply)
    })
}
