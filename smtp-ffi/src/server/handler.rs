//! `smtpx_handler`: a server handler as a table of C callbacks (their types, the return
//! values `SMTPX_ACCEPT` and `SMTPX_REPLY`), and `CHandler`, the engine's `Handler` over it.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use smtp_core::auth::AuthAttempt;
use smtp_core::handler::{ConnectionInfo, Handler, Transaction};
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::hooks::{Answer, ByHook, Hook, HookHandler, HookKind, HookSet};
use smtp_core::server::{AbortReason, Decision, HelloVerb};

use super::call::ConnState;
use crate::decision::smtpx_decision;
use crate::event::smtpx_abort_reason;

/// A callback's return value: go ahead with the standard reply.
pub const SMTPX_ACCEPT: c_int = 0;

/// A callback's return value: answer with the reply in the callback's `smtpx_decision`.
pub const SMTPX_REPLY: c_int = 1;

/// A handler callback that decides: returns SMTPX_ACCEPT, or SMTPX_REPLY with `*out`
/// filled. `conn_id` identifies the connection (unique within the server); `arg` is the
/// command's argument (connect: the client's address "IP:PORT"; hello: the domain the
/// client gave; mail: the sender, "" for the null sender; rcpt: the recipient; data_start
/// and data_end: NULL), valid during the call only.
///
/// Threads: runs on the thread serving the connection; calls for different connections
/// overlap, so `userdata` must be thread-safe (see `smtpx_handler`).
#[allow(non_camel_case_types)]
pub type smtpx_decide_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        conn_id: u64,
        arg: *const c_char,
        out: *mut smtpx_decision,
    ) -> c_int,
>;

/// The AUTH callback: checks `username` and `password` (valid during the call only);
/// returns SMTPX_ACCEPT to log the client in, or SMTPX_REPLY with `*out` filled (535
/// 5.7.8 for bad credentials).
///
/// Threads: runs on the thread serving the connection; calls for different connections
/// overlap, so `userdata` must be thread-safe (see `smtpx_handler`).
#[allow(non_camel_case_types)]
pub type smtpx_auth_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        conn_id: u64,
        username: *const c_char,
        password: *const c_char,
        out: *mut smtpx_decision,
    ) -> c_int,
>;

/// The data_chunk callback: a piece of the message (un-stuffed, CRLF line endings),
/// valid during the call only. Returning SMTPX_REPLY remembers `*out` as the reply to the
/// end of the message (data_end is then not called).
///
/// Threads: runs on the thread serving the connection; calls for different connections
/// overlap, so `userdata` must be thread-safe (see `smtpx_handler`).
#[allow(non_camel_case_types)]
pub type smtpx_chunk_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        conn_id: u64,
        chunk: *const u8,
        len: usize,
        out: *mut smtpx_decision,
    ) -> c_int,
>;

/// The LMTP end-of-message callback: the whole message has arrived for `n_recipients`
/// accepted recipients. Return SMTPX_ACCEPT to accept it for all, or SMTPX_REPLY with
/// `out[0]` to `out[n_recipients - 1]` filled, one decision per recipient in RCPT order
/// (each zeroed before the call; an entry left with code 0 becomes 451 4.3.0).
///
/// Threads: runs on the thread serving the connection; calls for different connections
/// overlap, so `userdata` must be thread-safe (see `smtpx_handler`).
#[allow(non_camel_case_types)]
pub type smtpx_lmtp_end_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        conn_id: u64,
        n_recipients: usize,
        out: *mut smtpx_decision,
    ) -> c_int,
>;

/// A notification callback (reset, close): no decision.
///
/// Threads: runs on the thread serving the connection; calls for different connections
/// overlap, so `userdata` must be thread-safe (see `smtpx_handler`).
#[allow(non_camel_case_types)]
pub type smtpx_notify_callback = Option<unsafe extern "C" fn(userdata: *mut c_void, conn_id: u64)>;

/// The data_aborted callback: the message being received was dropped before its end, for
/// `reason` (never `SMTPX_ABORT_REASON_NONE`). No decision: the reply the client gets is
/// the server's own (552, 550, or none when the connection is gone). A transaction
/// whose data_chunk callback refused the content also ends with this call (reason
/// `SMTPX_ABORT_REASON_DISCONNECTED`) instead of data_end.
///
/// Threads: runs on the thread serving the connection; calls for different connections
/// overlap, so `userdata` must be thread-safe (see `smtpx_handler`).
#[allow(non_camel_case_types)]
pub type smtpx_abort_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, conn_id: u64, reason: smtpx_abort_reason)>;

/// The releaser of a handler's userdata: called once, after the last callback has
/// returned, on the thread that stops or frees the server (a background thread when the
/// server was freed from one of its own callbacks).
#[allow(non_camel_case_types)]
pub type smtpx_userdata_free_callback = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// A server handler as a table of C callbacks. Every callback may be NULL, which means
/// the default: accept (AUTH: refuse with 535 5.7.8; content: thrown away; VRFY and
/// EXPN: 252).
///
/// ABI: always zero-initialise the whole struct before setting the callbacks you use
/// (`smtpx_handler h = {0};` or `memset(&h, 0, sizeof h)`). Later versions append new
/// fields at the end only, so code written this way keeps compiling and the new callbacks
/// stay NULL (their defaults).
///
/// Threads: every callback runs on the thread serving its connection, never on the
/// thread that started the server. Calls for different connections overlap in time, so
/// `userdata` and everything the callbacks touch must be thread-safe; calls for one
/// connection come one at a time, in protocol order (connect, hello, tls_started and
/// hello again after STARTTLS, auth if any, mail, rcpt..., data_start, data_chunk...,
/// data_end or data_aborted, reset if any, verify, expand, noop and rset whenever asked,
/// quit, close).
/// `userdata_free` (may be NULL) is called exactly once with `userdata`, after the last callback has returned: by
/// `smtpx_server_stop` or `smtpx_server_free` on the calling thread (on a background
/// thread when `smtpx_server_free` was called from one of the server's callbacks; before
/// `smtpx_server_start` returns when starting fails).
///
/// Calling back into smtpx from a callback: a callback may use objects of its own
/// (clients, sessions, connections, configurations it owns) and may start other servers.
/// It must not wait for its own server: `smtpx_server_stop` on it returns
/// SMTPX_RESULT_REENTRANT and does nothing (it would wait for the very connection that
/// is calling), and `smtpx_server_free` on it returns at once and stops and frees the
/// server on a background thread (where `userdata_free` is then called). The same holds
/// in the configuration's log callback. Stopping a different server from a callback
/// waits for that server's connections as usual: two servers whose callbacks stop each
/// other wait for each other.
///
/// Per-connection data and connection details, the libcurl way: inside a callback, and
/// only there, the `smtpx_server_call_*` functions act on the connection being called
/// for, on the calling thread. `smtpx_server_call_set_userdata` keeps a pointer of the
/// program's own for the connection (set it in `connect`, read it with
/// `smtpx_server_call_userdata` in every later callback; its free function runs once after
/// `close`); `smtpx_server_call_peer`, `_proxy` and `_proxy_tlv` give the client's address
/// and the PROXY header; `smtpx_server_call_tls_version`, `_tls_cipher`,
/// `_tls_server_name` and `_tls_peer_certificate` what the TLS handshake negotiated (from
/// `connect` on with implicit TLS, from `tls_started` on after STARTTLS). Called outside a
/// callback they return SMTPX_RESULT_NOT_READY.
///
/// The table is copied by `smtpx_server_start`.
///
/// Thread safety: a plain value.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_handler {
    /// Passed as the first argument of every callback.
    pub userdata: *mut c_void,
    /// Releases `userdata` once no callback can run any more.
    pub userdata_free: smtpx_userdata_free_callback,
    /// A client connected (arg: its address). SMTPX_REPLY refuses the connection.
    pub connect: smtpx_decide_callback,
    /// HELO, EHLO or LHLO (arg: the client's domain).
    pub hello: smtpx_decide_callback,
    /// AUTH (only when the configuration has no users of its own).
    pub auth: smtpx_auth_callback,
    /// MAIL FROM (arg: the sender, "" for the null sender).
    pub mail: smtpx_decide_callback,
    /// RCPT TO (arg: the recipient).
    pub rcpt: smtpx_decide_callback,
    /// DATA or the first BDAT chunk (arg: NULL): may the content come?
    pub data_start: smtpx_decide_callback,
    /// A piece of the content.
    pub data_chunk: smtpx_chunk_callback,
    /// The whole message has arrived (arg: NULL): accept or refuse it. Under LMTP, when
    /// `data_end_lmtp` is NULL, the one decision applies to every recipient.
    pub data_end: smtpx_decide_callback,
    /// Under LMTP (a client that said LHLO), the whole message has arrived: one decision
    /// per recipient. NULL: `data_end` decides for all.
    pub data_end_lmtp: smtpx_lmtp_end_callback,
    /// The transaction was abandoned (RSET, a new greeting, STARTTLS).
    pub reset: smtpx_notify_callback,
    /// The connection is over.
    pub close: smtpx_notify_callback,
    /// VRFY (arg: the argument as given). NULL or SMTPX_ACCEPT: 252 (cannot verify, will
    /// try to deliver). SMTPX_REPLY answers with `*out` (for example 250 or 550).
    pub verify: smtpx_decide_callback,
    /// EXPN (arg: the mailing list as given). NULL or SMTPX_ACCEPT: 252. SMTPX_REPLY
    /// answers with `*out`.
    pub expand: smtpx_decide_callback,
    /// The STARTTLS handshake succeeded: the session starts afresh over TLS (the client
    /// greets again). Not called for implicit-TLS connections, which are encrypted from
    /// the start.
    pub tls_started: smtpx_notify_callback,
    /// The message being received was dropped before its end (see
    /// `smtpx_abort_callback`); data_end is not called for it.
    pub data_aborted: smtpx_abort_callback,
    /// NOOP (arg: the command's argument, "" when it has none; RFC 5321 lets a client
    /// give one and says to ignore it), only with
    /// `smtpx_server_config_set_handler_replies`. NULL or
    /// SMTPX_ACCEPT: 250 2.0.0. SMTPX_REPLY answers with `*out`.
    pub noop: smtpx_decide_callback,
    /// The RSET command (arg: NULL; `reset` comes first when a transaction was
    /// abandoned), only with `smtpx_server_config_set_handler_replies`. NULL or
    /// SMTPX_ACCEPT: 250 2.0.0. SMTPX_REPLY answers with `*out`.
    pub rset: smtpx_decide_callback,
    /// QUIT (arg: NULL), only with `smtpx_server_config_set_handler_replies`: the reply
    /// before the session closes. NULL or SMTPX_ACCEPT: 221 2.0.0. SMTPX_REPLY answers
    /// with `*out`; the session closes all the same.
    pub quit: smtpx_decide_callback,
}

/// The copied callback table, shared by every connection; releases the userdata last.
pub(super) struct CTable(pub(super) smtpx_handler);

// SAFETY: the C caller promises (see smtpx_handler) that userdata and the callbacks are
// thread-safe; the table itself is never mutated after it is copied.
unsafe impl Send for CTable {}
// SAFETY: as above.
unsafe impl Sync for CTable {}

impl Drop for CTable {
    fn drop(&mut self) {
        if let Some(free) = self.0.userdata_free {
            // SAFETY: the caller gave this function for this userdata; this is the one
            // call, after the last callback (the table is only dropped with the handler).
            unsafe { free(self.0.userdata) }
        }
    }
}

impl std::fmt::Debug for CTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CTable")
    }
}

/// A `Handler` over the C table, with the token of its server (see `reentry`).
#[derive(Debug, Clone)]
pub(super) struct CHandler(pub(super) Arc<CTable>, pub(super) u64);

/// The per-connection part of [`CHandler`].
#[derive(Debug)]
pub(super) struct CSession {
    table: Arc<CTable>,
    conn_id: u64,
    /// What `smtpx_server_call_*` read and keep, current on the thread while a callback
    /// runs (with the server's token). Boxed: its address is handed to the thread-local
    /// mark and must not move when the session does.
    state: Box<ConnState>,
}

/// A C string for a callback argument (NUL bytes cannot occur in SMTP arguments the
/// engine accepted, but are replaced rather than trusted).
fn c_arg(s: &str) -> std::ffi::CString {
    crate::ffi::to_cstring(s)
}

impl CSession {
    fn decide(&self, callback: smtpx_decide_callback, arg: Option<&str>) -> Decision {
        let Some(callback) = callback else {
            return Decision::Accept;
        };
        let arg = arg.map(c_arg);
        let mut out = smtpx_decision::zeroed();
        let _inside = self.state.enter();
        // SAFETY: the callback's contract (smtpx_decide_callback): userdata as given,
        // arg NULL or a C string valid during the call, out a writable smtpx_decision.
        let rc = unsafe {
            callback(
                self.table.0.userdata,
                self.conn_id,
                arg.as_ref().map_or(std::ptr::null(), |a| a.as_ptr()),
                &mut out,
            )
        };
        if rc == SMTPX_ACCEPT {
            Decision::Accept
        } else {
            Decision::Reply(out.to_reply())
        }
    }

    fn notify(&self, callback: smtpx_notify_callback) {
        if let Some(callback) = callback {
            let _inside = self.state.enter();
            // SAFETY: the callback's contract: userdata as given.
            unsafe { callback(self.table.0.userdata, self.conn_id) }
        }
    }
}

impl Handler for CHandler {
    type Session = ByHook<CSession>;

    fn connect(&self, info: &ConnectionInfo) -> Result<ByHook<CSession>, Reply> {
        let session = CSession {
            table: Arc::clone(&self.0),
            conn_id: info.id,
            state: Box::new(ConnState::new(info, self.1)),
        };
        let peer = info.peer.map(|p| p.to_string()).unwrap_or_default();
        match session.decide(self.0.0.connect, Some(&peer)) {
            Decision::Reply(reply) if !reply.is_positive() => Err(reply),
            _ => Ok(ByHook(session)),
        }
    }
}

/// Every hook to its C callback, in one match. A hook the table has no callback for (a
/// newer core) gets its default answer, as a NULL callback does.
impl HookHandler for CSession {
    fn on_hook(&mut self, hook: Hook<'_>) -> Answer {
        let table = &self.table.0;
        match hook {
            Hook::Hello { domain, .. } => Answer::Decision(self.decide(table.hello, Some(domain))),
            Hook::TlsStarted => {
                self.notify(table.tls_started);
                Answer::Done
            }
            Hook::Auth { attempt } => Answer::Decision(self.auth(attempt)),
            Hook::Mail { from, .. } => {
                Answer::Decision(self.decide(table.mail, Some(from.as_str())))
            }
            Hook::Rcpt { to, .. } => Answer::Decision(self.decide(table.rcpt, Some(to.as_str()))),
            Hook::DataStart { .. } => Answer::Decision(self.decide(table.data_start, None)),
            Hook::DataChunk { chunk } => Answer::Chunk(self.data_chunk(chunk)),
            Hook::DataEnd { transaction } => Answer::Decision(self.data_end(transaction)),
            Hook::DataAborted { reason } => {
                self.data_aborted(reason);
                Answer::Done
            }
            Hook::Reset => {
                self.notify(table.reset);
                Answer::Done
            }
            Hook::Verify { argument } => {
                Answer::Decision(self.decide(table.verify, Some(argument)))
            }
            Hook::Expand { argument } => {
                Answer::Decision(self.decide(table.expand, Some(argument)))
            }
            Hook::Noop { argument } => Answer::Decision(self.decide(table.noop, Some(argument))),
            Hook::Rset => Answer::Decision(self.decide(table.rset, None)),
            Hook::Quit => Answer::Decision(self.decide(table.quit, None)),
            Hook::Close => {
                self.notify(table.close);
                Answer::Done
            }
            other => other.default_answer(),
        }
    }

    /// Only a hook with a C callback can block; the others are answered by the library
    /// at once, so the event-driven server need not hand its thread over for them.
    fn may_block(&self, hook: &Hook<'_>) -> bool {
        let t = &self.table.0;
        match hook {
            Hook::Hello { .. } => t.hello.is_some(),
            Hook::TlsStarted => t.tls_started.is_some(),
            Hook::Auth { .. } => t.auth.is_some(),
            Hook::Mail { .. } => t.mail.is_some(),
            Hook::Rcpt { .. } => t.rcpt.is_some(),
            Hook::DataStart { .. } => t.data_start.is_some(),
            Hook::DataChunk { .. } => t.data_chunk.is_some(),
            Hook::DataEnd { .. } => t.data_end.is_some() || t.data_end_lmtp.is_some(),
            Hook::DataAborted { .. } => t.data_aborted.is_some(),
            Hook::Reset => t.reset.is_some(),
            Hook::Verify { .. } => t.verify.is_some(),
            Hook::Expand { .. } => t.expand.is_some(),
            Hook::Noop { .. } => t.noop.is_some(),
            Hook::Rset => t.rset.is_some(),
            Hook::Quit => t.quit.is_some(),
            Hook::Close => t.close.is_some(),
            _ => false,
        }
    }

    /// The hooks without a callback, whose answer is then the hook's default (every one
    /// but `auth`, whose refusal without a callback is the C server's own): the
    /// connection layer answers them without a call.
    fn default_hooks(&self) -> HookSet {
        let t = &self.table.0;
        let unset = [
            (HookKind::Hello, t.hello.is_none()),
            (HookKind::TlsStarted, t.tls_started.is_none()),
            (HookKind::Mail, t.mail.is_none()),
            (HookKind::Rcpt, t.rcpt.is_none()),
            (HookKind::DataStart, t.data_start.is_none()),
            (HookKind::DataChunk, t.data_chunk.is_none()),
            (
                HookKind::DataEnd,
                t.data_end.is_none() && t.data_end_lmtp.is_none(),
            ),
            (HookKind::DataAborted, t.data_aborted.is_none()),
            (HookKind::Reset, t.reset.is_none()),
            (HookKind::Verify, t.verify.is_none()),
            (HookKind::Expand, t.expand.is_none()),
            (HookKind::Noop, t.noop.is_none()),
            (HookKind::Rset, t.rset.is_none()),
            (HookKind::Quit, t.quit.is_none()),
            (HookKind::Close, t.close.is_none()),
        ];
        unset
            .into_iter()
            .filter(|&(_, unset)| unset)
            .fold(HookSet::EMPTY, |set, (kind, _)| set.with(kind))
    }
}

impl CSession {
    fn auth(&mut self, attempt: &AuthAttempt) -> Decision {
        let Some(callback) = self.table.0.auth else {
            return Decision::Reply(Reply::new(
                ReplyCode::new(535).expect("535 is a reply code"),
                Some(EnhancedCode::AUTH_INVALID),
                "Error: authentication failed",
            ));
        };
        let user = c_arg(&attempt.username);
        let pass = c_arg(attempt.password.expose());
        let mut out = smtpx_decision::zeroed();
        let _inside = self.state.enter();
        // SAFETY: the callback's contract (smtpx_auth_callback): C strings valid during
        // the call, out a writable smtpx_decision.
        let rc = unsafe {
            callback(
                self.table.0.userdata,
                self.conn_id,
                user.as_ptr(),
                pass.as_ptr(),
                &mut out,
            )
        };
        if rc == SMTPX_ACCEPT {
            Decision::Accept
        } else {
            Decision::Reply(out.to_reply())
        }
    }

    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        let Some(callback) = self.table.0.data_chunk else {
            return Ok(());
        };
        let mut out = smtpx_decision::zeroed();
        let _inside = self.state.enter();
        // SAFETY: the callback's contract (smtpx_chunk_callback): chunk readable for len
        // bytes during the call, out a writable smtpx_decision.
        let rc = unsafe {
            callback(
                self.table.0.userdata,
                self.conn_id,
                chunk.as_ptr(),
                chunk.len(),
                &mut out,
            )
        };
        if rc == SMTPX_ACCEPT {
            Ok(())
        } else {
            Err(out.to_reply())
        }
    }

    fn data_end(&mut self, transaction: &Transaction) -> Decision {
        let lmtp = matches!(transaction.hello, Some((HelloVerb::Lhlo, _)));
        let n = transaction.recipients.len();
        match self.table.0.data_end_lmtp {
            Some(callback) if lmtp && n > 0 => {
                let mut out = vec![smtpx_decision::zeroed(); n];
                let _inside = self.state.enter();
                // SAFETY: the callback's contract (smtpx_lmtp_end_callback): out points to
                // n writable smtpx_decision values during the call.
                let rc =
                    unsafe { callback(self.table.0.userdata, self.conn_id, n, out.as_mut_ptr()) };
                if rc == SMTPX_ACCEPT {
                    Decision::Accept
                } else {
                    Decision::PerRecipient(out.into_iter().map(smtpx_decision::to_reply).collect())
                }
            }
            _ => self.decide(self.table.0.data_end, None),
        }
    }

    fn data_aborted(&mut self, reason: AbortReason) {
        let Some(callback) = self.table.0.data_aborted else {
            return;
        };
        let reason = smtpx_abort_reason::from(reason);
        let _inside = self.state.enter();
        // SAFETY: the callback's contract (smtpx_abort_callback): userdata as given.
        unsafe { callback(self.table.0.userdata, self.conn_id, reason) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_core::address::{Address, ForwardPath, ReversePath};
    use smtp_core::command::{MailParameters, RcptParameters};
    use smtp_core::handler::SessionHandler;

    /// A session of a table without callbacks.
    fn session() -> ByHook<CSession> {
        // SAFETY: smtpx_handler is plain C data (nullable function pointers and a
        // pointer); all zeroes is the table without callbacks or userdata.
        let table: smtpx_handler = unsafe { std::mem::zeroed() };
        let info = ConnectionInfo {
            id: 1,
            peer: None,
            local: None,
            hostname: "mx.test".into(),
            tls: false,
            tls_state: Default::default(),
            proxy: None,
        };
        CHandler(Arc::new(CTable(table)), 0).connect(&info).unwrap()
    }

    /// Without a callback, every hook but `auth` is left to the layer, and the answer it
    /// then gets (the hook's default) is what the C session would have answered.
    #[test]
    fn hooks_without_a_callback_are_answered_as_the_session_would() {
        let mut session = session();
        let set = SessionHandler::default_hooks(&session);
        let from = ReversePath::Mailbox(Address::parse("a@x.test").unwrap());
        let to = ForwardPath::Mailbox(Address::parse("b@x.test").unwrap());
        let (mail, rcpt) = (MailParameters::default(), RcptParameters::default());
        let transaction = Transaction::default();
        let hooks = [
            Hook::Hello {
                verb: HelloVerb::Ehlo,
                domain: "c.test",
            },
            Hook::TlsStarted,
            Hook::Mail {
                from: &from,
                params: &mail,
            },
            Hook::Rcpt {
                to: &to,
                params: &rcpt,
            },
            Hook::DataStart {
                transaction: &transaction,
            },
            Hook::DataChunk { chunk: b"x\r\n" },
            Hook::DataEnd {
                transaction: &transaction,
            },
            Hook::DataAborted {
                reason: AbortReason::Disconnected,
            },
            Hook::Reset,
            Hook::Verify { argument: "b" },
            Hook::Expand { argument: "list" },
            Hook::Noop { argument: "" },
            Hook::Rset,
            Hook::Quit,
            Hook::Close,
        ];
        for hook in hooks {
            assert!(set.contains(hook.kind()), "{hook:?} has no callback");
            let default = hook.default_answer();
            assert_eq!(session.0.on_hook(hook), default);
        }
        assert!(
            !set.contains(HookKind::Auth),
            "auth without a callback is the C server's own"
        );
    }
}
