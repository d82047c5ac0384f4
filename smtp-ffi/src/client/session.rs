//! `smtpx_client_session`: the SMTP client without I/O, for a C program with its own
//! event loop (`poll()`, epoll, libuv...). A translation of the core's
//! [`ClientRunner`]: the program opens the socket, starts an operation (connect, send,
//! a batch, login, STARTTLS, a command, QUIT), and asks `smtpx_client_session_next_action`
//! what to do until DONE; the runner does everything else (which replies end the
//! operation, chaining a batch behind each final dot, a best-effort QUIT after a fatal
//! error, deadlines).

use std::ffi::c_char;
use std::io;
use std::time::Duration;

use smtp_core::blocking::client::{Error, TlsMode};
use smtp_core::client::TransactionResult;
use smtp_core::client::runner::{Action, ClientRunner, Outcome, OwnedOperation};
use smtp_core::reply::Reply;
use smtp_core::tls::{self, TlsSession};

use super::error::result_of;
use super::options::smtpx_client_options;
use super::session_ops::message;
use crate::ffi::{free_raw, into_raw, line_arg, obj_mut, out_arg, try_arg, write_out};
use crate::last_error::{KeepsLastError, LastError, record};
use crate::panic::ffi_panic_boundary;
use crate::reply::smtpx_reply;
use crate::result::smtpx_result;
use crate::tls_session::smtpx_tls_session;

/// Message content goes to the runner this much at a time.
const BODY_PIECE: usize = 64 * 1024;

/// What an `smtpx_client_action` asks of the caller.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_client_action_kind {
    /// Write all of `bytes` (`bytes_len`), through TLS once it is on, then call
    /// `smtpx_client_session_written` (or `smtpx_client_session_lost` if the socket
    /// failed). With `goodbye` the connection is ending: try briefly, then call
    /// `smtpx_client_session_written` whatever happened.
    Write = 1,
    /// Read once, waiting until `deadline_ms` at the most, and report with
    /// `smtpx_client_session_receive`, `_receive_eof`, `_timeout` or `_lost`.
    Read = 2,
    /// Do a TLS client handshake (STARTTLS) by `deadline_ms`: take the TLS session with
    /// `smtpx_client_session_take_tls`, run it to the end of its handshake, then call
    /// `smtpx_client_session_tls_established` or `smtpx_client_session_tls_failed`. From
    /// now on every byte of the socket is TLS (the input rule of the header).
    StartTls = 3,
    /// Close the socket (after a TLS close_notify when `graceful`). Nothing to report: ask
    /// for the next action.
    Close = 4,
    /// The operation is over; `result` is its outcome. Take what it produced with
    /// `smtpx_client_session_take_send_result`, `_take_reply` or `_take_batch`; then start
    /// the next operation.
    Done = 5,
    /// A streamed send (`smtpx_client_session_send_stream`) wants the next piece of the
    /// message: give it with `smtpx_client_session_body`, or end the message with
    /// `smtpx_client_session_body_end` (or abandon it with
    /// `smtpx_client_session_body_failed`). Only streamed sends ask this.
    Body = 6,
}

/// What to do next for the operation in progress (see `smtpx_client_action_kind`).
/// Pointers are valid until the next call on the session.
///
/// Thread safety: a plain value.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_client_action {
    /// What to do.
    pub kind: smtpx_client_action_kind,
    /// WRITE: the bytes.
    pub bytes: *const u8,
    /// WRITE: how many.
    pub bytes_len: usize,
    /// WRITE: the connection is ending (write if quick).
    pub goodbye: bool,
    /// READ and START_TLS: when to give up, in milliseconds on the caller's clock.
    pub deadline_ms: u64,
    /// CLOSE: true for an orderly close, false to drop the connection at once.
    pub graceful: bool,
    /// DONE: the operation's result (SMTPX_RESULT_OK, or why it failed; the session's
    /// last error says more).
    pub result: smtpx_result,
}

/// What the last finished operation produced, until taken.
#[derive(Debug, Default)]
pub(super) enum Produced {
    #[default]
    Nothing,
    Transaction(TransactionResult),
    Reply(Reply),
    Batch(Vec<Result<TransactionResult, Error>>),
}

/// What the operation in progress waits for from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    Write,
    Read,
    Handshake,
    /// A piece of a streamed message.
    Body,
}

/// An operation in progress, with the message it is sending (fed in pieces).
#[derive(Debug)]
pub(super) struct Busy {
    pub(super) op: OwnedOperation,
    /// The message, or (streamed) the caller's last piece.
    body: Vec<u8>,
    fed: usize,
    awaiting: Awaiting,
    /// The caller gives the message in pieces (BODY actions) until it says the end.
    streamed: bool,
    /// A streamed message's end was said.
    body_ended: bool,
}

#[derive(Debug)]
pub(super) enum State {
    Idle(Box<ClientRunner>),
    Busy(Box<Busy>),
    /// Only while moving between the two (a panic there leaves it so).
    Moving,
}

/// An SMTP client connection without I/O (see `smtpx_client_session_new`).
///
/// Thread safety: movable between threads, one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_client_session {
    pub(super) state: State,
    /// The caller's clock at creation: the session's zero.
    epoch_ms: u64,
    pub(super) produced: Produced,
    /// The TLS session for the START_TLS being handled, until taken.
    tls: Option<TlsSession>,
    pub(super) last_error: LastError,
}

impl KeepsLastError for smtpx_client_session {
    fn last_error_mut(&mut self) -> &mut LastError {
        &mut self.last_error
    }
}

impl smtpx_client_session {
    pub(super) fn at(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.epoch_ms))
    }

    /// Starts an operation made by `start` from the idle runner (with `body`, the message
    /// it sends); NOT_READY while another is in progress or after the connection ended.
    pub(super) fn start(
        &mut self,
        body: Vec<u8>,
        start: impl FnOnce(ClientRunner) -> OwnedOperation,
    ) -> smtpx_result {
        self.start_with(body, false, start)
    }

    /// As [`start`](Self::start); with `streamed`, the message comes from the caller
    /// piece by piece (BODY actions) instead of `body`.
    pub(super) fn start_with(
        &mut self,
        body: Vec<u8>,
        streamed: bool,
        start: impl FnOnce(ClientRunner) -> OwnedOperation,
    ) -> smtpx_result {
        let runner = match std::mem::replace(&mut self.state, State::Moving) {
            State::Idle(runner) => runner,
            other => {
                self.state = other;
                self.last_error
                    .set_message("an operation is in progress: run it to DONE first");
                return smtpx_result::NotReady;
            }
        };
        self.produced = Produced::Nothing;
        self.state = State::Busy(Box::new(Busy {
            op: start(*runner),
            body,
            fed: 0,
            awaiting: Awaiting::Nothing,
            streamed,
            body_ended: false,
        }));
        smtpx_result::Ok
    }

    fn busy(&mut self, awaiting: Awaiting) -> Result<&mut Busy, smtpx_result> {
        match &mut self.state {
            State::Busy(b) if b.awaiting == awaiting => Ok(b),
            _ => {
                self.last_error
                    .set_message("this report does not answer the last action");
                Err(smtpx_result::NotReady)
            }
        }
    }

    /// Runs the operation to its next action for the caller (feeding the message itself).
    fn next(&mut self, now: Duration) -> Result<smtpx_client_action, smtpx_result> {
        let mut action = smtpx_client_action {
            kind: smtpx_client_action_kind::Done,
            bytes: std::ptr::null(),
            bytes_len: 0,
            goodbye: false,
            deadline_ms: 0,
            graceful: false,
            result: smtpx_result::Ok,
        };
        let State::Busy(busy) = &mut self.state else {
            self.last_error.set_message("no operation in progress");
            return Err(smtpx_result::NotReady);
        };
        // Each round either hands an action to the caller, or feeds a piece of the
        // message (bounded by its size), or fails a TLS session that could not start.
        let outcome = loop {
            let step = match busy.op.next_action(now) {
                Action::Write(bytes) => Step::Write(bytes.as_ptr(), bytes.len(), false),
                Action::Goodbye(bytes) => Step::Write(bytes.as_ptr(), bytes.len(), true),
                Action::Read { deadline } => Step::Read(deadline),
                Action::StartTls { setup, deadline } => {
                    Step::StartTls(TlsSession::client_for(setup).map(Box::new), deadline)
                }
                Action::Body => Step::Body,
                Action::Close => Step::Close(true),
                Action::Abort => Step::Close(false),
                Action::Done(outcome) => Step::Done(outcome),
            };
            match step {
                Step::Write(bytes, len, goodbye) => {
                    action.kind = smtpx_client_action_kind::Write;
                    action.bytes = bytes;
                    action.bytes_len = len;
                    action.goodbye = goodbye;
                    busy.awaiting = Awaiting::Write;
                    return Ok(action);
                }
                Step::Read(deadline) => {
                    action.kind = smtpx_client_action_kind::Read;
                    action.deadline_ms = ms(self.epoch_ms, deadline);
                    busy.awaiting = Awaiting::Read;
                    return Ok(action);
                }
                Step::StartTls(Ok(session), deadline) => {
                    self.tls = Some(*session);
                    action.kind = smtpx_client_action_kind::StartTls;
                    action.deadline_ms = ms(self.epoch_ms, deadline);
                    busy.awaiting = Awaiting::Handshake;
                    return Ok(action);
                }
                Step::StartTls(Err(e), _) => busy.op.tls_failed(Error::from(e)),
                Step::Body => {
                    let Busy {
                        op,
                        body,
                        fed,
                        streamed,
                        body_ended,
                        awaiting,
                    } = &mut **busy;
                    let n = (body.len() - *fed).min(BODY_PIECE);
                    if n == 0 && *streamed && !*body_ended {
                        // The caller's piece is all sent: ask for the next.
                        body.clear();
                        *fed = 0;
                        action.kind = smtpx_client_action_kind::Body;
                        *awaiting = Awaiting::Body;
                        return Ok(action);
                    }
                    if n == 0 {
                        op.body_end(now);
                    } else {
                        op.body(&body[*fed..*fed + n], now);
                        *fed += n;
                    }
                }
                Step::Close(graceful) => {
                    action.kind = smtpx_client_action_kind::Close;
                    action.graceful = graceful;
                    busy.awaiting = Awaiting::Nothing;
                    return Ok(action);
                }
                Step::Done(outcome) => break outcome,
            }
        };
        action.result = self.finish(outcome);
        Ok(action)
    }

    /// The operation ended: the runner goes back to idle and the outcome is kept.
    fn finish(&mut self, outcome: Outcome) -> smtpx_result {
        if let State::Busy(busy) = std::mem::replace(&mut self.state, State::Moving) {
            self.state = State::Idle(Box::new(busy.op.into_runner()));
        }
        self.tls = None;
        self.last_error.clear();
        match outcome {
            Outcome::Ready | Outcome::Closed => smtpx_result::Ok,
            Outcome::Transaction(t) if !t.mail.is_completion() => {
                self.last_error.message = format!("the server refused the sender: {}", t.mail);
                self.last_error.reply = Some(smtpx_reply::new(&t.mail));
                smtpx_result::SenderRefused
            }
            Outcome::Transaction(t) => {
                self.produced = Produced::Transaction(t);
                smtpx_result::Ok
            }
            Outcome::Reply(r) => {
                self.produced = Produced::Reply(r);
                smtpx_result::Ok
            }
            Outcome::Batch(b) => {
                self.produced = Produced::Batch(b);
                smtpx_result::Ok
            }
            Outcome::Failed(e) => {
                self.last_error.set(&e);
                result_of(&e)
            }
            // Outcome is non_exhaustive for bindings: an outcome added later.
            #[allow(unreachable_patterns)]
            _ => smtpx_result::Protocol,
        }
    }
}

/// One answer of the operation, without its borrow of the runner.
enum Step {
    Write(*const u8, usize, bool),
    Read(Duration),
    StartTls(Result<Box<TlsSession>, tls::TlsError>, Duration),
    Body,
    Close(bool),
    Done(Outcome),
}

/// A time on the session's clock as a time on the caller's.
fn ms(epoch_ms: u64, t: Duration) -> u64 {
    epoch_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}

/// Creates a client session for a connection the caller has opened (or is opening) to a
/// server known as `server_name` (the name its certificate must carry), set up as
/// `options` say (HELO name, TLS mode and settings, credentials, timeouts, LMTP,
/// pipelining, the log callback), with `now_ms` as the time now on the caller's clock;
/// writes it to `*out_session` (free with `smtpx_client_session_free`). Start with
/// `smtpx_client_session_connect`. With SMTPX_TLS_MODE_IMPLICIT, do the TLS handshake
/// first (`smtpx_tls_session_new_client` with the same options and name) and carry every
/// byte through it. On failure `options`' last error says why.
///
/// Thread safety: `options` is used by this thread during the call only.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_new(
    options: *mut smtpx_client_options,
    server_name: *const c_char,
    now_ms: u64,
    out_session: *mut *mut smtpx_client_session,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |o| {
            try_arg!(out_arg(out_session));
            // SAFETY: the caller passes a NUL-terminated string.
            let name = try_arg!(unsafe { line_arg(server_name) });
            let mut client_options = o.options.clone();
            if client_options.trace.is_none() {
                client_options.trace = crate::log::env_trace(crate::log::Side::Client);
            }
            if client_options.tls != TlsMode::None {
                match tls::client_config_with(&o.tls_options(), &o.tls_extras) {
                    Ok(config) => client_options.tls_config = Some(config),
                    Err(e) => {
                        o.last_error.set_message(e.to_string());
                        return smtpx_result::Tls;
                    }
                }
            }
            match ClientRunner::from_options(client_options, name) {
                Ok(runner) => {
                    let session = into_raw(smtpx_client_session {
                        state: State::Idle(Box::new(runner)),
                        epoch_ms: now_ms,
                        produced: Produced::Nothing,
                        tls: None,
                        last_error: LastError::default(),
                    });
                    // SAFETY: out_session was checked non-NULL above.
                    unsafe { write_out(out_session, session) };
                    smtpx_result::Ok
                }
                Err(e) => {
                    o.last_error.set(&e);
                    result_of(&e)
                }
            }
        })
    })
}

/// Frees a client session (an operation in progress is abandoned; close the socket
/// yourself). NULL is fine; must not be called twice.
///
/// Thread safety: no other thread may use the session during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_free(session: *mut smtpx_client_session) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a session from smtpx_client_session_new, once.
        unsafe { free_raw(session) }
    })
}

/// Runs `call` on the session under the last-error rule.
pub(super) fn on_session(
    session: *mut smtpx_client_session,
    call: impl FnOnce(&mut smtpx_client_session) -> smtpx_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        record(s, call)
    })
}

/// Writes what to do next for the operation in progress to `*out_action` (see
/// `smtpx_client_action_kind`); `now_ms` is the time now. Report on a WRITE, READ or
/// START_TLS before asking again. Without an operation in progress:
/// SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_next_action(
    session: *mut smtpx_client_session,
    now_ms: u64,
    out_action: *mut smtpx_client_action,
) -> smtpx_result {
    // Not under the usual last-error rule: the last error is the operation's, set (or
    // cleared) by the call that gives DONE, and kept until the next call that fails or
    // starts an operation.
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        try_arg!(out_arg(out_action));
        let now = s.at(now_ms);
        let action = try_arg!(s.next(now));
        // SAFETY: out_action was checked non-NULL above.
        unsafe { write_out(out_action, action) };
        smtpx_result::Ok
    })
}

/// The next piece of a streamed message, for the last BODY action (`len` bytes of
/// `data`, copied; any size, any split: dot-stuffing and line endings are the library's,
/// across pieces too). Then ask for the next action: the piece is sent, and BODY comes
/// again for the next one. Without a BODY action to answer: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_body(
    session: *mut smtpx_client_session,
    data: *const u8,
    len: usize,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: data is readable for len bytes (the caller's contract).
        let piece = try_arg!(unsafe { message(data, len) });
        let busy = try_arg!(s.busy(Awaiting::Body));
        busy.body.extend_from_slice(piece);
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The streamed message is complete (answering a BODY action): the library ends it (the
/// final dot, or the last BDAT) and the operation goes on to the server's verdict.
/// Without a BODY action to answer: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_body_end(
    session: *mut smtpx_client_session,
) -> smtpx_result {
    on_session(session, |s| {
        let busy = try_arg!(s.busy(Awaiting::Body));
        busy.body_ended = true;
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The streamed message cannot be completed (its source failed), answering a BODY
/// action. Ending it now would deliver it truncated, so the connection is dropped: the
/// next actions CLOSE it, and DONE gives SMTPX_RESULT_MESSAGE_SOURCE. Without a BODY
/// action to answer: SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_body_failed(
    session: *mut smtpx_client_session,
) -> smtpx_result {
    on_session(session, |s| {
        let busy = try_arg!(s.busy(Awaiting::Body));
        busy.op
            .body_failed(io::Error::other("the program abandoned the message"));
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The bytes of the last WRITE went out (all of them; or, for a goodbye, whatever
/// happened).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_written(session: *mut smtpx_client_session) -> smtpx_result {
    on_session(session, |s| {
        let busy = try_arg!(s.busy(Awaiting::Write));
        busy.op.written();
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// Bytes read for the last READ at `now_ms` (decrypted, once TLS is on).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_receive(
    session: *mut smtpx_client_session,
    bytes: *const u8,
    len: usize,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: bytes is readable for len bytes (the caller's contract).
        let input = try_arg!(unsafe { message(bytes, len) });
        let now = s.at(now_ms);
        let busy = try_arg!(s.busy(Awaiting::Read));
        busy.op.received(input, now);
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The server closed the connection (the last READ found the end of input).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_receive_eof(
    session: *mut smtpx_client_session,
) -> smtpx_result {
    on_session(session, |s| {
        let busy = try_arg!(s.busy(Awaiting::Read));
        busy.op.eof();
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The deadline of the last READ passed; `now_ms` is the time now.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_timeout(
    session: *mut smtpx_client_session,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        let now = s.at(now_ms);
        let busy = try_arg!(s.busy(Awaiting::Read));
        busy.op.timed_out(now);
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The socket failed during the last WRITE or READ (an error other than the end of
/// input): the operation ends with SMTPX_RESULT_IO.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_lost(session: *mut smtpx_client_session) -> smtpx_result {
    on_session(session, |s| {
        let error = || io::Error::new(io::ErrorKind::ConnectionReset, "the socket failed");
        match &mut s.state {
            State::Busy(b) if b.awaiting == Awaiting::Write => b.op.write_failed(error()),
            State::Busy(b) if b.awaiting == Awaiting::Read => b.op.read_failed(error()),
            _ => {
                s.last_error.set_message("no WRITE or READ to report on");
                return smtpx_result::NotReady;
            }
        }
        if let State::Busy(b) = &mut s.state {
            b.awaiting = Awaiting::Nothing;
        }
        smtpx_result::Ok
    })
}

/// For a START_TLS action: hands over the TLS session to do the handshake with (a client
/// session for the server's name with the options' TLS settings), to be freed with
/// `smtpx_tls_session_free` after the connection. Once only per START_TLS; otherwise
/// SMTPX_RESULT_NOT_READY.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_take_tls(
    session: *mut smtpx_client_session,
    out_tls: *mut *mut smtpx_tls_session,
) -> smtpx_result {
    on_session(session, |s| {
        try_arg!(out_arg(out_tls));
        let Some(tls) = s.tls.take() else {
            s.last_error
                .set_message("no START_TLS action waiting for its session");
            return smtpx_result::NotReady;
        };
        let tls = crate::tls_session::hand_over(tls);
        // SAFETY: out_tls was checked non-NULL above.
        unsafe { write_out(out_tls, tls) };
        smtpx_result::Ok
    })
}

/// The handshake of the last START_TLS succeeded at `now_ms`: from now on the caller
/// carries every byte through the TLS session.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_tls_established(
    session: *mut smtpx_client_session,
    now_ms: u64,
) -> smtpx_result {
    on_session(session, |s| {
        let now = s.at(now_ms);
        let busy = try_arg!(s.busy(Awaiting::Handshake));
        busy.op.tls_established(now);
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}

/// The handshake of the last START_TLS failed (or ran past its deadline): `tls` is the
/// TLS session that failed, whose failure becomes the operation's (DONE then gives
/// SMTPX_RESULT_TLS_UNKNOWN_ISSUER and the like), or NULL (SMTPX_RESULT_TLS_HANDSHAKE).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_session_tls_failed(
    session: *mut smtpx_client_session,
    tls: *const smtpx_tls_session,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: the caller passes NULL or a live TLS session.
        let failure = unsafe { tls.as_ref() }.and_then(crate::tls_session::failure);
        let busy = try_arg!(s.busy(Awaiting::Handshake));
        let error = match failure {
            Some(f) => Error::from(f),
            None => Error::from(smtp_core::tls::TlsSessionError::handshake(
                "the TLS handshake failed or timed out",
            )),
        };
        busy.op.tls_failed(error);
        busy.awaiting = Awaiting::Nothing;
        smtpx_result::Ok
    })
}
