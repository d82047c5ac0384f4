//! What a sans-I/O server tells C: `smtpx_server_event`, `smtpx_event_kind` and
//! `smtpx_abort_reason`, shared by `smtpx_server_session` (its events) and
//! `smtpx_server_connection` (its hooks).

use std::ffi::c_char;
use std::ptr;

use smtp_core::server::AbortReason;
use smtp_core::server::hooks::Hook;

/// What an `smtpx_server_event` is. Kinds marked *decision* stop the session until
/// `smtpx_server_session_decide` is called (or, for a connection's hook,
/// `smtpx_server_connection_answer`). A connection's hooks are HELLO, TLS_STARTED, AUTH,
/// MAIL, RCPT, MESSAGE_START, MESSAGE_DATA, MESSAGE_END, MESSAGE_ABORTED, RESET, VERIFY,
/// EXPAND, NOOP, RSET, QUIT and CLOSE; NONE, CONNECT and START_TLS are the session's only (the connection
/// has actions for them). A hook of a newer library that this header has no kind for
/// is not given to C: it gets its default answer, as from a NULL callback.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_event_kind {
    /// No event: the session needs more input, a decision, or its output written.
    None = 0,
    /// *Decision.* A client connected: accept to send the 220 greeting.
    Connect = 1,
    /// *Decision.* HELO, EHLO or LHLO; `arg` is the client's domain.
    Hello = 2,
    /// The 220 for STARTTLS is in the output: write it, do the TLS handshake, then call
    /// `smtpx_server_session_tls_established`.
    StartTls = 3,
    /// *Decision.* AUTH; `arg` is the user name, `password` the password. Accept (235) or
    /// reply (535 5.7.8 is the usual refusal).
    Auth = 4,
    /// *Decision.* MAIL FROM; `arg` is the sender ("" for the null sender).
    Mail = 5,
    /// *Decision.* RCPT TO; `arg` is the recipient.
    Rcpt = 6,
    /// *Decision.* DATA or the first BDAT chunk: may the content come?
    MessageStart = 7,
    /// A piece of the content (`data`, `data_len`), un-stuffed, CRLF line endings. A
    /// connection's hook may answer it with a refusal, which then answers the end of the
    /// message (MESSAGE_ABORTED comes instead of MESSAGE_END).
    MessageData = 8,
    /// *Decision.* The message is complete: accept (250) or reply.
    MessageEnd = 9,
    /// The message being received was dropped; `abort_reason` says why.
    MessageAborted = 10,
    /// The transaction was abandoned (RSET, a new greeting, STARTTLS).
    Reset = 11,
    /// *Decision.* VRFY; `arg` is its argument. Accepting replies 252.
    Verify = 12,
    /// *Decision.* EXPN; `arg` is its argument. Accepting replies 252.
    Expand = 13,
    /// The session is over: write the output, then close the connection. (A connection's
    /// hook: the connection is over; its last output is already written.)
    Close = 14,
    /// A connection's hook only: the STARTTLS handshake succeeded and the session starts
    /// afresh over TLS (the client greets again). Not given for implicit TLS.
    TlsStarted = 15,
    /// *Decision.* NOOP (the event's argument: the command's, "" when it has none), only
    /// with `smtpx_server_config_set_handler_replies`. Accepting replies 250.
    Noop = 16,
    /// *Decision.* The RSET command (after RESET when a transaction was abandoned), only
    /// with `smtpx_server_config_set_handler_replies`. Accepting replies 250.
    Rset = 17,
    /// *Decision.* QUIT, only with `smtpx_server_config_set_handler_replies`: the reply
    /// said before the session closes. Accepting replies 221.
    Quit = 18,
}

/// Why a message was dropped (`SMTPX_EVENT_KIND_MESSAGE_ABORTED`).
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_abort_reason {
    /// Not an abort event.
    None = 0,
    /// The content grew past the size limit (the client is told 552 at the end).
    TooLarge = 1,
    /// A lone CR or LF arrived under the reject policy (550 at the end).
    BareLineEnding = 2,
    /// The connection ended, or timed out, in the middle of the message.
    Disconnected = 3,
    /// The client sent RSET between BDAT chunks.
    Reset = 4,
}

/// One event of a server session. Pointers are borrowed from the session and valid until
/// the next call on it; unused pointers are NULL with length 0.
///
/// Thread safety: a plain value (its pointers follow the session's rules).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_server_event {
    /// What happened.
    pub kind: smtpx_event_kind,
    /// True when the session waits for `smtpx_server_session_decide`.
    pub needs_decision: bool,
    /// The command's argument, NUL-terminated (see `smtpx_event_kind`).
    pub arg: *const c_char,
    /// The length of `arg` without the NUL.
    pub arg_len: usize,
    /// AUTH's password, NUL-terminated.
    pub password: *const c_char,
    /// The length of `password` without the NUL.
    pub password_len: usize,
    /// Message content (MESSAGE_DATA).
    pub data: *const u8,
    /// The length of `data`.
    pub data_len: usize,
    /// Why the message was dropped (MESSAGE_ABORTED).
    pub abort_reason: smtpx_abort_reason,
}

impl smtpx_server_event {
    pub(crate) fn empty(kind: smtpx_event_kind) -> smtpx_server_event {
        smtpx_server_event {
            kind,
            needs_decision: false,
            arg: ptr::null(),
            arg_len: 0,
            password: ptr::null(),
            password_len: 0,
            data: ptr::null(),
            data_len: 0,
            abort_reason: smtpx_abort_reason::None,
        }
    }
}

impl From<AbortReason> for smtpx_abort_reason {
    fn from(reason: AbortReason) -> smtpx_abort_reason {
        match reason {
            AbortReason::TooLarge => smtpx_abort_reason::TooLarge,
            AbortReason::BareLineEnding => smtpx_abort_reason::BareLineEnding,
            AbortReason::Disconnected => smtpx_abort_reason::Disconnected,
            AbortReason::Reset => smtpx_abort_reason::Reset,
        }
    }
}

/// The strings an `smtpx_server_event` points to, which its owner keeps until its next
/// call.
#[derive(Debug, Default)]
pub(crate) struct EventStrings {
    /// The command's argument (`arg`).
    pub(crate) arg: Option<String>,
    /// AUTH's password (`password`).
    pub(crate) password: Option<String>,
}

/// What C is told of `hook`: fills `event`'s kind, data and abort reason, and returns the
/// strings its `arg` and `password` are to point to. `None` for a hook this header does
/// not name (a newer core): the caller answers it with [`Hook::default_answer`], as a
/// handler without that callback would. The one translation of hooks into C, for the
/// sans-I/O session's events and the connection's hooks alike.
pub(crate) fn describe_hook(
    hook: &Hook<'_>,
    event: &mut smtpx_server_event,
) -> Option<EventStrings> {
    let mut strings = EventStrings::default();
    event.kind = match hook {
        Hook::Hello { domain, .. } => {
            strings.arg = Some((*domain).to_owned());
            smtpx_event_kind::Hello
        }
        Hook::TlsStarted => smtpx_event_kind::TlsStarted,
        Hook::Auth { attempt } => {
            strings.arg = Some(attempt.username.clone());
            strings.password = Some(attempt.password.expose().to_owned());
            smtpx_event_kind::Auth
        }
        Hook::Mail { from, .. } => {
            strings.arg = Some(from.as_str().to_owned());
            smtpx_event_kind::Mail
        }
        Hook::Rcpt { to, .. } => {
            strings.arg = Some(to.as_str().to_owned());
            smtpx_event_kind::Rcpt
        }
        Hook::DataStart { .. } => smtpx_event_kind::MessageStart,
        Hook::DataChunk { chunk } => {
            // The chunk lives in the session until its next call, as documented.
            event.data = chunk.as_ptr();
            event.data_len = chunk.len();
            smtpx_event_kind::MessageData
        }
        Hook::DataEnd { .. } => smtpx_event_kind::MessageEnd,
        Hook::DataAborted { reason } => {
            event.abort_reason = (*reason).into();
            smtpx_event_kind::MessageAborted
        }
        Hook::Reset => smtpx_event_kind::Reset,
        Hook::Verify { argument } | Hook::Expand { argument } => {
            strings.arg = Some((*argument).to_owned());
            if matches!(hook, Hook::Verify { .. }) {
                smtpx_event_kind::Verify
            } else {
                smtpx_event_kind::Expand
            }
        }
        Hook::Noop { argument } => {
            strings.arg = Some((*argument).to_owned());
            smtpx_event_kind::Noop
        }
        Hook::Rset => smtpx_event_kind::Rset,
        Hook::Quit => smtpx_event_kind::Quit,
        Hook::Close => smtpx_event_kind::Close,
        _ => return None,
    };
    Some(strings)
}
