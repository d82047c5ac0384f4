//! The sans-I/O server session: `smtpx_server_session` over [`ServerSession`].
//!
//! The caller owns the socket, the clock and TLS: it feeds received bytes in, polls
//! events, answers the events that need a decision, and writes the output. This is the
//! engine's own view, for a caller that runs the connection loop itself (input held while
//! the output is full, deadlines, shutdown); most C event loops want
//! `smtpx_server_connection` ([`crate::connection`]), which runs that loop for them.

use std::ffi::CString;
use std::time::Duration;

use smtp_core::server::hooks::{Answer, Transaction};
use smtp_core::server::{Decision, ServerEvent, ServerSession};

use crate::config::smtpx_server_config;
use crate::decision::smtpx_decision;
use crate::event::{EventStrings, describe_hook, smtpx_event_kind, smtpx_server_event};
use crate::ffi::{free_raw, into_raw, obj, obj_mut, out_arg, to_cstring, try_arg, write_out};
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// One SMTP server connection's protocol state, without I/O (see
/// `smtpx_server_session_new`). Times are milliseconds on any monotonic clock the caller
/// chooses, passed to every call that needs one.
///
/// Thread safety: movable between threads, one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_server_session {
    session: ServerSession,
    /// The strings of the last event, kept alive until the next call.
    arg: Option<CString>,
    password: Option<CString>,
}

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// Creates a session for a connection accepted at `now_ms`, configured by `config`
/// (host name, limits, timeouts, LMTP, bare-LF policy; STARTTLS is offered when the
/// configuration has TLS files, and AUTH when it has users, but the session itself
/// neither reads the files nor checks the users: the caller does TLS and decides each
/// AUTH event). Writes it to `*out_session`; free with `smtpx_server_session_free`.
/// The first event is CONNECT.
///
/// Thread safety: `config` is only read during the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_new(
    config: *const smtpx_server_config,
    now_ms: u64,
    out_session: *mut *mut smtpx_server_session,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config.
        let config = try_arg!(unsafe { obj(config) });
        try_arg!(out_arg(out_session));
        let session = ServerSession::new(config.session_config(), ms(now_ms));
        let session = into_raw(smtpx_server_session {
            session,
            arg: None,
            password: None,
        });
        // SAFETY: out_session was checked non-NULL above.
        unsafe { write_out(out_session, session) };
        smtpx_result::Ok
    })
}

/// Frees a session. NULL is fine; must not be called twice.
///
/// Thread safety: no other thread may use the session during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_free(session: *mut smtpx_server_session) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a session from smtpx_server_session_new, once.
        unsafe { free_raw(session) }
    })
}

/// Takes `len` bytes read from the client at `now_ms`; writes how many were taken to
/// `*out_taken` (fewer than offered when the input buffer is full: poll events, then
/// offer the rest again). `bytes` may be NULL when `len` is 0.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_receive(
    session: *mut smtpx_server_session,
    bytes: *const u8,
    len: usize,
    now_ms: u64,
    out_taken: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        try_arg!(out_arg(out_taken));
        if bytes.is_null() && len != 0 {
            return smtpx_result::NullParameter;
        }
        let input: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: bytes is not NULL and readable for len bytes (the caller's contract).
            unsafe { std::slice::from_raw_parts(bytes, len) }
        };
        let taken = s.session.receive(input, ms(now_ms));
        // SAFETY: out_taken was checked non-NULL above.
        unsafe { write_out(out_taken, taken) };
        smtpx_result::Ok
    })
}

/// The client closed its side of the connection. Commands already received are still
/// answered; a message in progress is aborted.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_receive_eof(
    session: *mut smtpx_server_session,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        s.session.receive_eof();
        smtpx_result::Ok
    })
}

/// Writes the next event to `*out_event`; its kind is SMTPX_EVENT_KIND_NONE when the
/// session needs more input, a decision, or its output written. An event this header has no
/// kind for (a library newer than the header the program was built with) is never
/// given: the session answers it as a handler without that callback would. The event's pointers
/// are valid until the next call on the session.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_poll_event(
    session: *mut smtpx_server_session,
    out_event: *mut smtpx_server_event,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        try_arg!(out_arg(out_event));
        s.arg = None;
        s.password = None;
        let mut strings = EventStrings::default();
        let mut event = smtpx_server_event::empty(smtpx_event_kind::None);
        // The session's events are told as the hooks they call (one translation, in
        // `event.rs`), but for the two a connection answers itself.
        let transaction = Transaction::default();
        while let Some(e) = s.session.poll_event() {
            event.needs_decision = e.needs_decision();
            let default = match &e {
                ServerEvent::Connect => {
                    event.kind = smtpx_event_kind::Connect;
                    break;
                }
                ServerEvent::StartTls => {
                    event.kind = smtpx_event_kind::StartTls;
                    break;
                }
                e => match e.hook(&transaction) {
                    Some(hook) => match describe_hook(&hook, &mut event) {
                        Some(described) => {
                            strings = described;
                            break;
                        }
                        None => hook.default_answer(),
                    },
                    None => Answer::Done,
                },
            };
            // An event this header has no name for (a newer core): decided with its
            // hook's default, and the next one is taken.
            event = smtpx_server_event::empty(smtpx_event_kind::None);
            if let Answer::Decision(decision) = default {
                let _ = s.session.decide(decision);
            }
        }
        let (arg, password) = (strings.arg, strings.password);
        if let Some(a) = arg {
            event.arg_len = a.len();
            let c = to_cstring(a);
            event.arg = c.as_ptr();
            s.arg = Some(c);
        }
        if let Some(p) = password {
            event.password_len = p.len();
            let c = to_cstring(p);
            event.password = c.as_ptr();
            s.password = Some(c);
        }
        // SAFETY: out_event was checked non-NULL above.
        unsafe { write_out(out_event, event) };
        smtpx_result::Ok
    })
}

/// Answers the event waiting for a decision: `decision` NULL accepts with the standard
/// reply; otherwise its reply is sent (see `smtpx_decision`: a 2xx, or 3xx for
/// MESSAGE_START, accepts with that text, anything else refuses). With no decision
/// pending: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_decide(
    session: *mut smtpx_server_session,
    decision: *const smtpx_decision,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        // SAFETY: the caller passes NULL or a readable smtpx_decision.
        let decision = match unsafe { decision.as_ref() } {
            None => Decision::Accept,
            Some(d) => Decision::Reply(d.to_reply()),
        };
        match s.session.decide(decision) {
            Ok(()) => smtpx_result::Ok,
            Err(_) => smtpx_result::NotReady,
        }
    })
}

/// Answers MESSAGE_END under LMTP with one reply per accepted recipient, in RCPT order
/// (`decisions`, `n` of them; missing ones repeat the last). For SMTP, or another event,
/// only the first counts, as with `smtpx_server_session_decide`. `n` 0 accepts. With no
/// decision pending: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_decide_each(
    session: *mut smtpx_server_session,
    decisions: *const smtpx_decision,
    n: usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        if decisions.is_null() && n != 0 {
            return smtpx_result::NullParameter;
        }
        let decisions: &[smtpx_decision] = if n == 0 {
            &[]
        } else {
            // SAFETY: decisions is not NULL and points to n readable smtpx_decision values.
            unsafe { std::slice::from_raw_parts(decisions, n) }
        };
        let replies = decisions.iter().map(|d| d.to_reply()).collect();
        match s.session.decide(Decision::PerRecipient(replies)) {
            Ok(()) => smtpx_result::Ok,
            Err(_) => smtpx_result::NotReady,
        }
    })
}

/// The bytes to send to the client: writes a pointer to them to `*out_ptr` and their
/// count to `*out_len` (0 when there is nothing to send). The bytes stay valid until the
/// next call on the session; after writing some, call
/// `smtpx_server_session_consume_output`.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_output(
    session: *const smtpx_server_session,
    out_ptr: *mut *const u8,
    out_len: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        try_arg!(out_arg(out_ptr));
        try_arg!(out_arg(out_len));
        let output = s.session.output();
        // SAFETY: both out-pointers were checked non-NULL above.
        unsafe {
            write_out(out_ptr, output.as_ptr());
            write_out(out_len, output.len());
        }
        smtpx_result::Ok
    })
}

/// Marks the first `n` bytes of the output as written (more than there are: all).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_consume_output(
    session: *mut smtpx_server_session,
    n: usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        s.session.consume_output(n);
        smtpx_result::Ok
    })
}

/// When `smtpx_server_session_handle_timeout` must be called next: writes true to
/// `*out_has` and the time to `*out_ms`, or false (and leaves `*out_ms` alone) when no
/// deadline is set.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_next_deadline(
    session: *const smtpx_server_session,
    out_ms: *mut u64,
    out_has: *mut bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        try_arg!(out_arg(out_ms));
        try_arg!(out_arg(out_has));
        let deadline = s.session.next_deadline();
        // SAFETY: both out-pointers were checked non-NULL above.
        unsafe {
            if let Some(d) = deadline {
                write_out(out_ms, u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
            write_out(out_has, deadline.is_some());
        }
        smtpx_result::Ok
    })
}

/// Tells the session the time; when its deadline has passed it closes the session with
/// 421 4.4.2 (or ends a greeting delay).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_handle_timeout(
    session: *mut smtpx_server_session,
    now_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        s.session.handle_timeout(ms(now_ms));
        smtpx_result::Ok
    })
}

/// The TLS handshake that followed a START_TLS event succeeded: the session forgets its
/// state (the client must greet again) and reads the rest of the connection as encrypted.
/// Without a START_TLS event waiting for its handshake: SMTPX_RESULT_NOT_READY, and
/// nothing changes.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_tls_established(
    session: *mut smtpx_server_session,
    now_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        if !s.session.is_awaiting_tls() {
            return smtpx_result::NotReady;
        }
        s.session.tls_established(ms(now_ms));
        smtpx_result::Ok
    })
}

/// True once the session is over (after the CLOSE event); also true for NULL.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_session_is_closed(session: *const smtpx_server_session) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        unsafe { session.as_ref() }.is_none_or(|s| s.session.is_closed())
    })
}
