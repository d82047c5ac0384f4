//! The sans-I/O server connection: `smtpx_server_connection` over
//! [`smtp_core::server::connection::Connection`].
//!
//! The caller owns the socket, the clock and TLS; the connection owns everything else a
//! server connection needs (hook dispatch, input held while the output is full,
//! deadlines, the STARTTLS handover, graceful shutdown) and says what to do next as an
//! `smtpx_action`. This is the loop the library's own servers run, so a C program's
//! poll/epoll/libuv loop only reads, writes, keeps timers and answers hooks.
//!
//! `smtpx_server_session` (in [`crate::session`]) stays: it is the engine's own view
//! (events, decisions, output) for callers that want to run that loop themselves.

use std::sync::atomic::{AtomicU64, Ordering};

use std::ffi::CString;
use std::time::Duration;

use smtp_core::handler::{Answer, Hook};
use smtp_core::server::Decision;
use smtp_core::server::connection::{Action, Connection};

use crate::config::smtpx_server_config;
use crate::decision::smtpx_decision;
use crate::event::{EventStrings, describe_hook, smtpx_event_kind, smtpx_server_event};
use crate::ffi::{free_raw, into_raw, obj, obj_mut, out_arg, to_cstring, try_arg, write_out};
use crate::log;
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// What an `smtpx_action` asks of the caller.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_action_kind {
    /// A client is here: decide whether to serve it (the caller's own checks, such as an
    /// address filter), then call `smtpx_server_connection_connected`. Comes once, first
    /// (after the handshake on an implicit-TLS connection).
    Connect = 1,
    /// Call the hook described by `event`, then `smtpx_server_connection_answer`.
    Hook = 2,
    /// Write `bytes` (`bytes_len` of them; all or some), then
    /// `smtpx_server_connection_written` with how many went out. A write that cannot
    /// finish in reasonable time is a lost connection (`smtpx_server_connection_lost`).
    Write = 3,
    /// Read what the client sends and give it to `smtpx_server_connection_receive` (the
    /// end of input to `smtpx_server_connection_receive_eof`); if nothing has come by
    /// `deadline_ms`, call `smtpx_server_connection_timeout`.
    Read = 4,
    /// Do the server side of the TLS handshake, finished by `deadline_ms` (one deadline for
    /// the whole handshake), then call `smtpx_server_connection_tls_established`, or
    /// `smtpx_server_connection_lost` if it failed or was late. Everything written and
    /// read after it goes through TLS.
    StartTls = 5,
    /// Close the connection (with a TLS close_notify when encrypted). Every hook has run
    /// and nothing more is to be written; free the connection.
    Close = 6,
}

/// What to do next, from `smtpx_server_connection_next_action`. Only the fields of its
/// kind are set; the others are NULL or 0 (and `event.kind` is SMTPX_EVENT_KIND_NONE
/// except for HOOK). Pointers are borrowed from the connection and valid until the next
/// call on it.
///
/// Thread safety: a plain value (its pointers follow the connection's rules).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_action {
    /// What to do.
    pub kind: smtpx_action_kind,
    /// WRITE: the bytes to write.
    pub bytes: *const u8,
    /// WRITE: how many. READ: the most bytes to read now, 0 for any number (while a
    /// PROXY protocol header is read, reading past it would take the client's first
    /// bytes, on an implicit-TLS listener its ClientHello).
    pub bytes_len: usize,
    /// READ and START_TLS: when to give up, in milliseconds on the caller's clock.
    pub deadline_ms: u64,
    /// HOOK: the hook to call and its arguments (see `smtpx_event_kind`).
    pub event: smtpx_server_event,
}

/// How a hook is answered: with a decision, as a content chunk, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookAnswer {
    Decision,
    Chunk,
    Done,
}

/// The action handed out last, which the caller's next report must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    Connected,
    Hook(HookAnswer),
    /// The length of the WRITE.
    Written(usize),
    Handshake,
}

/// One SMTP server connection without I/O (see `smtpx_server_connection_new`). Times
/// are milliseconds on any monotonic clock the caller chooses, passed to every call that
/// needs one.
///
/// The loop: call `smtpx_server_connection_next_action`, do what the action says and
/// report it with the matching call (CONNECT: `_connected`; HOOK: `_answer`; WRITE:
/// `_written`; READ: `_receive`, `_receive_eof` or `_timeout`; START_TLS:
/// `_tls_established` or `_lost`), and repeat until CLOSE. When the socket breaks, call
/// `smtpx_server_connection_lost` and keep answering hooks until CLOSE; when the server is
/// stopping, call `smtpx_server_connection_stop`.
///
/// Thread safety: movable between threads, one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_server_connection {
    pub(crate) conn: Connection,
    /// The strings of the last hook, kept alive until the next call.
    arg: Option<CString>,
    password: Option<CString>,
    awaiting: Awaiting,
    /// The socket's peer (`smtpx_server_connection_set_peer`).
    pub(crate) peer: Option<std::net::SocketAddr>,
    /// The PROXY protocol setting, applied at the first action (once the peer is known).
    proxy: Option<smtp_core::server::proxy::ProxyProtocol>,
}

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

fn to_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Creates the connection of a client accepted at `now_ms`, configured by `config`
/// (host name, limits, timeouts, LMTP, bare-LF policy; STARTTLS is offered when the
/// configuration has TLS files, and AUTH when it has users, but the connection neither
/// reads the files nor checks the users: the caller does TLS, and decides each AUTH
/// hook). With `implicit_tls` (an SMTPS listener) the first action is START_TLS and the
/// session is encrypted from the start. Writes it to `*out_conn`; free with
/// `smtpx_server_connection_free`.
///
/// Thread safety: `config` is only read during the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_new(
    config: *const smtpx_server_config,
    now_ms: u64,
    implicit_tls: bool,
    out_conn: *mut *mut smtpx_server_connection,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config.
        let config = try_arg!(unsafe { obj(config) });
        try_arg!(out_arg(out_conn));
        let mut connection = Connection::new(config.session_config(), ms(now_ms), implicit_tls);
        if let Some(trace) = log::server_trace_sink(config.log.as_ref(), 0) {
            connection.set_trace(trace, NEXT_ID.fetch_add(1, Ordering::Relaxed));
        }
        let conn = into_raw(smtpx_server_connection {
            conn: connection,
            arg: None,
            password: None,
            awaiting: Awaiting::Nothing,
            peer: None,
            proxy: config.proxy_protocol(),
        });
        // SAFETY: out_conn was checked non-NULL above.
        unsafe { write_out(out_conn, conn) };
        smtpx_result::Ok
    })
}

/// The ids of traced sans-I/O connections, as their log lines carry them.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Frees a connection (it does not call any hook: run it to CLOSE first, after
/// `smtpx_server_connection_lost` if need be). NULL is fine; must not be called twice.
///
/// Thread safety: no other thread may use the connection during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_free(conn: *mut smtpx_server_connection) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a connection from smtpx_server_connection_new,
        // once.
        unsafe { free_raw(conn) }
    })
}

/// Writes what to do now to `*out_action` (see `smtpx_action_kind`). Until the caller
/// reports on it, asking again gives the same action. The action's pointers are valid
/// until the next call on the connection.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_next_action(
    conn: *mut smtpx_server_connection,
    now_ms: u64,
    out_action: *mut smtpx_action,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        try_arg!(out_arg(out_action));
        let smtpx_server_connection {
            conn,
            arg,
            password,
            awaiting,
            peer,
            proxy,
        } = c;
        if let Some(proxy) = proxy.take() {
            conn.expect_proxy_header(&proxy, *peer, ms(now_ms));
        }
        *arg = None;
        *password = None;
        let mut action = smtpx_action {
            kind: smtpx_action_kind::Close,
            bytes: std::ptr::null(),
            bytes_len: 0,
            deadline_ms: 0,
            event: smtpx_server_event::empty(smtpx_event_kind::None),
        };
        let mut strings = EventStrings::default();
        let action_now = loop {
            match conn.next_action(ms(now_ms)) {
                Action::Hook(hook) => {
                    let mut event = smtpx_server_event::empty(smtpx_event_kind::None);
                    event.needs_decision = hook.needs_decision();
                    let answer = match &hook {
                        Hook::DataChunk { .. } => HookAnswer::Chunk,
                        _ if event.needs_decision => HookAnswer::Decision,
                        _ => HookAnswer::Done,
                    };
                    match describe_hook(&hook, &mut event) {
                        Some(s) => {
                            strings = s;
                            action.kind = smtpx_action_kind::Hook;
                            action.event = event;
                            *awaiting = Awaiting::Hook(answer);
                            break None;
                        }
                        // A hook C has no name for: its default, as a handler without
                        // that callback would answer.
                        None => {
                            let default = hook.default_answer();
                            conn.answer(default);
                        }
                    }
                }
                other => break Some(other),
            }
        };
        match action_now {
            None => {}
            Some(Action::Hook(_)) => unreachable!("hooks are handled in the loop above"),
            Some(Action::Connect) => {
                action.kind = smtpx_action_kind::Connect;
                *awaiting = Awaiting::Connected;
            }
            Some(Action::Write(bytes)) => {
                action.kind = smtpx_action_kind::Write;
                // The bytes live in the connection until its next call, as documented.
                action.bytes = bytes.as_ptr();
                action.bytes_len = bytes.len();
                *awaiting = Awaiting::Written(bytes.len());
            }
            Some(Action::Read { deadline }) => {
                action.kind = smtpx_action_kind::Read;
                action.deadline_ms = to_ms(deadline);
                action.bytes_len = match conn.read_limit() {
                    usize::MAX => 0,
                    limit => limit,
                };
                *awaiting = Awaiting::Nothing;
            }
            Some(Action::StartTls { deadline }) => {
                action.kind = smtpx_action_kind::StartTls;
                action.deadline_ms = to_ms(deadline);
                *awaiting = Awaiting::Handshake;
            }
            Some(Action::Close) => {
                action.kind = smtpx_action_kind::Close;
                *awaiting = Awaiting::Nothing;
            }
        }
        if let Some(a) = strings.arg {
            action.event.arg_len = a.len();
            let a = to_cstring(a);
            action.event.arg = a.as_ptr();
            *arg = Some(a);
        }
        if let Some(p) = strings.password {
            action.event.password_len = p.len();
            let p = to_cstring(p);
            action.event.password = p.as_ptr();
            *password = Some(p);
        }
        // SAFETY: out_action was checked non-NULL above.
        unsafe { write_out(out_action, action) };
        smtpx_result::Ok
    })
}

/// The answer to CONNECT: `refusal` NULL serves the client (the 220 greeting follows);
/// otherwise its reply refuses it (554 keeps the session for QUIT only, 421 closes at
/// once) and no hook is called for this connection. A 2xx or 3xx `refusal` serves the
/// client with the standard greeting. Without a CONNECT action to answer:
/// SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_connected(
    conn: *mut smtpx_server_connection,
    refusal: *const smtpx_decision,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        if c.awaiting != Awaiting::Connected {
            return smtpx_result::NotReady;
        }
        // SAFETY: the caller passes NULL or a readable smtpx_decision.
        let refusal = unsafe { refusal.as_ref() }
            .map(|d| d.to_reply())
            .filter(|r| !r.is_positive());
        c.conn.connected(refusal);
        c.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// Applies `answer` to the hook waiting for one.
fn answer_hook(c: &mut smtpx_server_connection, decision: Decision) -> smtpx_result {
    let Awaiting::Hook(kind) = c.awaiting else {
        return smtpx_result::NotReady;
    };
    let answer = match (kind, decision) {
        (HookAnswer::Decision, d) => Answer::Decision(d),
        (HookAnswer::Chunk, Decision::Accept) => Answer::Chunk(Ok(())),
        (HookAnswer::Chunk, Decision::Reply(r)) => Answer::Chunk(Err(r)),
        (HookAnswer::Chunk, Decision::PerRecipient(replies)) => {
            Answer::Chunk(replies.into_iter().next().map_or(Ok(()), Err))
        }
        (HookAnswer::Done, _) => Answer::Done,
    };
    c.conn.answer(answer);
    c.awaiting = Awaiting::Nothing;
    smtpx_result::Ok
}

/// The answer to HOOK. For a hook that needs a decision (`event.needs_decision`):
/// `decision` NULL accepts with the standard reply, otherwise its reply is sent (see
/// `smtpx_decision`: a 2xx, or 3xx for MESSAGE_START, accepts with that text, anything
/// else refuses). For MESSAGE_DATA: NULL takes the chunk, a decision refuses the message
/// (its reply answers the end of the message). For the other hooks `decision` is ignored
/// (pass NULL). Without a HOOK action to answer: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_answer(
    conn: *mut smtpx_server_connection,
    decision: *const smtpx_decision,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        // SAFETY: the caller passes NULL or a readable smtpx_decision.
        let decision = match unsafe { decision.as_ref() } {
            None => Decision::Accept,
            Some(d) => Decision::Reply(d.to_reply()),
        };
        answer_hook(c, decision)
    })
}

/// Answers MESSAGE_END under LMTP with one reply per accepted recipient, in RCPT order
/// (`decisions`, `n` of them; missing ones repeat the last). For SMTP, or another hook,
/// only the first counts, as with `smtpx_server_connection_answer`. `n` 0 accepts.
/// Without a HOOK action to answer: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_answer_each(
    conn: *mut smtpx_server_connection,
    decisions: *const smtpx_decision,
    n: usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        if decisions.is_null() && n != 0 {
            return smtpx_result::NullParameter;
        }
        let decisions: &[smtpx_decision] = if n == 0 {
            &[]
        } else {
            // SAFETY: decisions is not NULL and points to n readable smtpx_decision values.
            unsafe { std::slice::from_raw_parts(decisions, n) }
        };
        let decision = match decisions {
            [] => Decision::Accept,
            [one] => Decision::Reply(one.to_reply()),
            many => Decision::PerRecipient(many.iter().map(|d| d.to_reply()).collect()),
        };
        answer_hook(c, decision)
    })
}

/// `n` bytes of the last WRITE went out (0 is fine: nothing went out). More than it
/// offered gives SMTPX_RESULT_INVALID_ARGUMENT; without a WRITE action to answer:
/// SMTPX_RESULT_NOT_READY. The next action gives what is left.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_written(
    conn: *mut smtpx_server_connection,
    n: usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        let Awaiting::Written(offered) = c.awaiting else {
            return smtpx_result::NotReady;
        };
        if n > offered {
            return smtpx_result::InvalidArgument;
        }
        c.conn.written(n);
        c.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// Input read from the client at `now_ms` (`bytes` may be NULL when `len` is 0). All of
/// it is kept: what the session has no room for yet waits in the connection, and no READ
/// comes until it is taken, so the connection holds at most one read's worth.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_receive(
    conn: *mut smtpx_server_connection,
    bytes: *const u8,
    len: usize,
    now_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        if bytes.is_null() && len != 0 {
            return smtpx_result::NullParameter;
        }
        let input: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: bytes is not NULL and readable for len bytes (the caller's contract).
            unsafe { std::slice::from_raw_parts(bytes, len) }
        };
        c.conn.receive(input, ms(now_ms));
        smtpx_result::Ok
    })
}

/// The client closed its side of the connection. Commands already received are still
/// answered; a message in progress is aborted.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_receive_eof(
    conn: *mut smtpx_server_connection,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        c.conn.receive_eof();
        smtpx_result::Ok
    })
}

/// The deadline of the last READ passed; `now_ms` is the time now. The session says
/// 421 4.4.2 and closes (or ends a greeting delay).
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_timeout(
    conn: *mut smtpx_server_connection,
    now_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        c.conn.timeout(ms(now_ms));
        smtpx_result::Ok
    })
}

/// The TLS handshake of the last START_TLS succeeded at `now_ms`. After STARTTLS the
/// session forgets its state (the client must greet again) and a TLS_STARTED hook
/// follows; on an implicit-TLS connection CONNECT follows. Without a START_TLS action to
/// answer: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_tls_established(
    conn: *mut smtpx_server_connection,
    now_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        if c.awaiting != Awaiting::Handshake {
            return smtpx_result::NotReady;
        }
        c.conn.tls_established(ms(now_ms));
        c.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// As `smtpx_server_connection_tls_established`, for a program that does the handshake
/// with an `smtpx_tls_session` (NULL: the same as without): what that session
/// negotiated (version, cipher, the client's SNI name and certificate) becomes the
/// connection's TLS details, as the `smtpx_server_start*` servers give them to handler
/// callbacks, and `smtpx_server_connection_tls_version` and `_tls_cipher` read them back.
/// The session is only read; it stays the caller's.
///
/// Thread safety: one thread at a time per connection and per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_tls_established_with(
    conn: *mut smtpx_server_connection,
    now_ms: u64,
    tls: *const crate::tls_session::smtpx_tls_session,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        if c.awaiting != Awaiting::Handshake {
            return smtpx_result::NotReady;
        }
        // SAFETY: the caller passes NULL or a live TLS session, used by no other thread.
        let info = unsafe { tls.as_ref() }.map(crate::tls_session::info);
        c.conn
            .tls_established_with(ms(now_ms), info.unwrap_or_default());
        c.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The TLS version the connection's handshake negotiated ("TLSv1.2", "TLSv1.3"), as told
/// by `smtpx_server_connection_tls_established_with`, copied into `buf` under the buffer
/// contract; empty when not encrypted or not told.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_tls_version(
    conn: *const smtpx_server_connection,
    buf: *mut std::ffi::c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection.
        let c = try_arg!(unsafe { obj(conn) });
        let version = c
            .conn
            .tls_info()
            .and_then(|t| t.version.as_deref())
            .unwrap_or("");
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { crate::ffi::copy_str_out(version, buf, len, out_n) }
    })
}

/// The cipher suite the connection's handshake negotiated, as told by
/// `smtpx_server_connection_tls_established_with`, copied into `buf` under the buffer
/// contract; empty when not encrypted or not told.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_tls_cipher(
    conn: *const smtpx_server_connection,
    buf: *mut std::ffi::c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection.
        let c = try_arg!(unsafe { obj(conn) });
        let cipher = c
            .conn
            .tls_info()
            .and_then(|t| t.cipher.as_deref())
            .unwrap_or("");
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { crate::ffi::copy_str_out(cipher, buf, len, out_n) }
    })
}

/// The connection is gone (an I/O error, a failed or late handshake or write, the caller
/// cut it): a message in progress is dropped, and the next actions are the remaining
/// hooks (MESSAGE_ABORTED, CLOSE), then CLOSE. Nothing more is to be written. Calling it
/// again is harmless.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_lost(conn: *mut smtpx_server_connection) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        c.conn.lost();
        if !matches!(c.awaiting, Awaiting::Hook(_)) {
            c.awaiting = Awaiting::Nothing;
        }
        smtpx_result::Ok
    })
}

/// The server is stopping: an idle session is told 421 and closed at once (at its next
/// action); one in a transaction is let finish, then closed the same way. Bound the wait
/// with a timer of your own and call `smtpx_server_connection_lost` when it runs out.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_stop(conn: *mut smtpx_server_connection) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        c.conn.stop();
        smtpx_result::Ok
    })
}

/// True between transactions (a shutdown may end the connection without losing
/// anything); false for NULL.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_is_idle(conn: *const smtpx_server_connection) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection.
        unsafe { conn.as_ref() }.is_some_and(|c| c.conn.is_idle())
    })
}

/// True while the connection is encrypted (after `smtpx_server_connection_tls_established`);
/// false for NULL.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_is_tls(conn: *const smtpx_server_connection) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection.
        unsafe { conn.as_ref() }.is_some_and(|c| c.conn.is_tls())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_may_move_between_threads() {
        fn send<T: Send>() {}
        send::<Connection>();
    }

    #[test]
    fn a_whole_conversation_through_the_actions() {
        let config = crate::config::smtpx_server_config_new();
        let mut conn = std::ptr::null_mut();
        assert_eq!(
            smtpx_server_connection_new(config, 0, false, &mut conn),
            smtpx_result::Ok
        );
        crate::config::smtpx_server_config_free(config);
        let mut input: Vec<&[u8]> = vec![b"EHLO c\r\n", b"MAIL FROM:<a@b.test>\r\n", b"QUIT\r\n"];
        let mut wire = Vec::new();
        let mut hooks = Vec::new();
        for _ in 0..1000 {
            let mut a = std::mem::MaybeUninit::<smtpx_action>::uninit();
            assert_eq!(
                smtpx_server_connection_next_action(conn, 0, a.as_mut_ptr()),
                smtpx_result::Ok
            );
            // SAFETY: written by the call that returned Ok.
            let a = unsafe { a.assume_init() };
            let r = match a.kind {
                smtpx_action_kind::Connect => {
                    smtpx_server_connection_connected(conn, std::ptr::null())
                }
                smtpx_action_kind::Hook => {
                    hooks.push(a.event.kind);
                    smtpx_server_connection_answer(conn, std::ptr::null())
                }
                smtpx_action_kind::Write => {
                    // SAFETY: the action's bytes, valid until the next call.
                    let bytes = unsafe { std::slice::from_raw_parts(a.bytes, a.bytes_len) };
                    let n = bytes.len().div_ceil(2);
                    wire.extend_from_slice(&bytes[..n]);
                    smtpx_server_connection_written(conn, n)
                }
                smtpx_action_kind::Read if input.is_empty() => {
                    smtpx_server_connection_receive_eof(conn)
                }
                smtpx_action_kind::Read => {
                    let bytes = input.remove(0);
                    smtpx_server_connection_receive(conn, bytes.as_ptr(), bytes.len(), 0)
                }
                smtpx_action_kind::StartTls => panic!("no STARTTLS offered"),
                smtpx_action_kind::Close => break,
            };
            assert_eq!(r, smtpx_result::Ok);
        }
        smtpx_server_connection_free(conn);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.starts_with("220 localhost"), "{wire}");
        assert!(wire.ends_with("221 2.0.0 Bye\r\n"), "{wire}");
        assert_eq!(
            hooks,
            [
                smtpx_event_kind::Hello,
                smtpx_event_kind::Mail,
                smtpx_event_kind::Close
            ]
        );
    }

    #[test]
    fn null_and_out_of_turn_calls_are_errors() {
        let null = std::ptr::null_mut();
        assert_eq!(
            smtpx_server_connection_new(std::ptr::null(), 0, false, &mut std::ptr::null_mut()),
            smtpx_result::NullParameter
        );
        assert_eq!(
            smtpx_server_connection_written(null, 1),
            smtpx_result::NullParameter
        );
        let config = crate::config::smtpx_server_config_new();
        let mut conn = std::ptr::null_mut();
        assert_eq!(
            smtpx_server_connection_new(config, 0, false, &mut conn),
            smtpx_result::Ok
        );
        crate::config::smtpx_server_config_free(config);
        assert_eq!(
            smtpx_server_connection_answer(conn, std::ptr::null()),
            smtpx_result::NotReady
        );
        assert_eq!(
            smtpx_server_connection_next_action(conn, 0, std::ptr::null_mut()),
            smtpx_result::NullParameter
        );
        smtpx_server_connection_free(conn);
    }
}
