//! The server's vocabulary: what a server session tells the embedder
//! ([`ServerEvent`]), what the embedder answers ([`Decision`]), and the table of hooks a
//! handler implements (the crate-private `with_hooks!`), with the mapping from each event
//! to its hook ([`ServerEvent::hook`]).
//!
//! A new verb or event is added here (its event, its name, its hook in the table and the
//! mapping) and in the session that emits it; `server::hooks` makes the handler traits
//! from the table, and the bindings translate a hook they do not know by its name and
//! arguments ([`Hook::for_each_arg`]).

use std::fmt;

use crate::address::{ForwardPath, ReversePath};
use crate::auth::AuthAttempt;
use crate::command::{MailParameters, RcptParameters};
use crate::reply::Reply;
use crate::server::hooks::{Hook, HookKind, Transaction};

// Named only by the docs.
#[cfg(doc)]
use super::ServerSession;
#[cfg(doc)]
use crate::data::BareLinePolicy;

/// Which greeting the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HelloVerb {
    /// HELO: plain SMTP, no extensions.
    Helo,
    /// EHLO: extended SMTP.
    Ehlo,
    /// LHLO: LMTP.
    Lhlo,
}

/// Why a message being received was dropped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// The content grew past the size limit (the client is told 552 at the end).
    TooLarge,
    /// A lone CR or LF arrived under [`BareLinePolicy::Reject`] (550 at the end).
    BareLineEnding,
    /// The connection ended, or timed out, in the middle of the message.
    Disconnected,
    /// The client sent RSET between BDAT chunks.
    Reset,
}

/// Something the embedder must know or decide. Events marked *decision* stop the session
/// until [`ServerSession::decide`] is called.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    /// *Decision.* A client connected: accept to send the 220 greeting, or reply (554 keeps
    /// the connection until QUIT, as RFC 5321 §3.1 asks; 421 closes it).
    Connect,
    /// *Decision.* HELO, EHLO or LHLO. Accepting starts a fresh session state.
    Hello {
        /// The verb used.
        verb: HelloVerb,
        /// The name the client gave.
        domain: String,
    },
    /// The 220 for STARTTLS is in the output: write it, do the TLS handshake on the
    /// connection, then call [`ServerSession::tls_established`]. Input buffered before the
    /// handshake has been thrown away (STARTTLS command injection).
    StartTls,
    /// *Decision.* The client authenticated with these credentials. Accept (235) or reply
    /// (535 5.7.8 is the usual refusal).
    Auth(AuthAttempt),
    /// *Decision.* MAIL FROM.
    Mail {
        /// The sender.
        from: ReversePath,
        /// Its parameters.
        params: MailParameters,
    },
    /// *Decision.* RCPT TO.
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// Its parameters.
        params: RcptParameters,
    },
    /// *Decision.* DATA, or the first BDAT chunk: may the message content come?
    MessageStart,
    /// A piece of the message content, un-stuffed and with CRLF line endings.
    MessageData(&'a [u8]),
    /// *Decision.* The message is complete: accept to reply 250 (the reply text can carry a
    /// queue id), or reply. Under LMTP answer with [`Decision::PerRecipient`].
    MessageEnd,
    /// The message being received was dropped; forget what was stored of it.
    MessageAborted(AbortReason),
    /// The transaction (sender and recipients) was abandoned: RSET, a new greeting, or
    /// STARTTLS.
    Reset,
    /// *Decision.* VRFY. Accepting replies 252 (cannot verify, will try to deliver).
    Verify(String),
    /// *Decision.* EXPN. Accepting replies 252 (will not expand).
    Expand(String),
    /// *Decision.* NOOP, with its argument if it had one (which changes nothing).
    /// Accepting replies 250; a reply is said instead.
    Noop(Option<String>),
    /// *Decision.* The RSET command, in a transaction or not (after [`ServerEvent::Reset`]
    /// when one was abandoned). Accepting replies 250; a reply is said instead.
    Rset,
    /// *Decision.* QUIT. Accepting replies 221; a reply is said instead. The session
    /// closes either way.
    Quit,
    /// The session is over: write the output, then close the connection.
    Close,
}

impl ServerEvent<'_> {
    /// True for the events that wait for [`ServerSession::decide`].
    pub fn needs_decision(&self) -> bool {
        matches!(
            self,
            ServerEvent::Connect
                | ServerEvent::Hello { .. }
                | ServerEvent::Auth(_)
                | ServerEvent::Mail { .. }
                | ServerEvent::Rcpt { .. }
                | ServerEvent::MessageStart
                | ServerEvent::MessageEnd
                | ServerEvent::Verify(_)
                | ServerEvent::Expand(_)
                | ServerEvent::Noop(_)
                | ServerEvent::Rset
                | ServerEvent::Quit
        )
    }
}

impl<'e> ServerEvent<'e> {
    /// The event's name, as the bindings spell it (`"hello"`, `"message_end"`).
    pub fn name(&self) -> &'static str {
        match self {
            ServerEvent::Connect => "connect",
            ServerEvent::Hello { .. } => "hello",
            ServerEvent::StartTls => "starttls",
            ServerEvent::Auth(_) => "auth",
            ServerEvent::Mail { .. } => "mail",
            ServerEvent::Rcpt { .. } => "rcpt",
            ServerEvent::MessageStart => "message_start",
            ServerEvent::MessageData(_) => "message_data",
            ServerEvent::MessageEnd => "message_end",
            ServerEvent::MessageAborted(_) => "message_aborted",
            ServerEvent::Reset => "reset",
            ServerEvent::Verify(_) => "verify",
            ServerEvent::Expand(_) => "expand",
            ServerEvent::Noop(_) => "noop",
            ServerEvent::Rset => "rset",
            ServerEvent::Quit => "quit",
            ServerEvent::Close => "close",
        }
    }

    /// The hook this event calls, with its arguments (`transaction` for the hooks that
    /// receive the envelope); `None` for Connect and StartTls, which a connection answers
    /// itself (with [`Handler::connect`](crate::server::hooks::Handler::connect) and the
    /// TLS handshake).
    ///
    /// ```
    /// use smtp_core::server::hooks::{Hook, Transaction};
    /// use smtp_core::server::ServerEvent;
    ///
    /// let event = ServerEvent::Verify("postmaster".into());
    /// let transaction = Transaction::default();
    /// let hook = event.hook(&transaction).unwrap();
    /// assert_eq!(hook.name(), "verify");
    /// assert!(matches!(hook, Hook::Verify { argument: "postmaster" }));
    /// ```
    pub fn hook<'a>(&'a self, transaction: &'a Transaction) -> Option<Hook<'a>> {
        Some(match self {
            ServerEvent::Connect | ServerEvent::StartTls => return None,
            ServerEvent::Hello { verb, domain } => Hook::Hello {
                verb: *verb,
                domain,
            },
            ServerEvent::Auth(attempt) => Hook::Auth { attempt },
            ServerEvent::Mail { from, params } => Hook::Mail { from, params },
            ServerEvent::Rcpt { to, params } => Hook::Rcpt { to, params },
            ServerEvent::MessageStart => Hook::DataStart { transaction },
            ServerEvent::MessageData(chunk) => Hook::DataChunk { chunk },
            ServerEvent::MessageEnd => Hook::DataEnd { transaction },
            ServerEvent::MessageAborted(reason) => Hook::DataAborted { reason: *reason },
            ServerEvent::Reset => Hook::Reset,
            ServerEvent::Verify(argument) => Hook::Verify { argument },
            ServerEvent::Expand(argument) => Hook::Expand { argument },
            ServerEvent::Noop(argument) => Hook::Noop {
                argument: argument.as_deref().unwrap_or(""),
            },
            ServerEvent::Rset => Hook::Rset,
            ServerEvent::Quit => Hook::Quit,
            ServerEvent::Close => Hook::Close,
        })
    }

    /// The kind of the hook this event calls ([`hook`](Self::hook)'s), without making
    /// the hook: a cheap look for the connection layer, which answers some kinds itself.
    pub(crate) fn hook_kind(&self) -> Option<HookKind> {
        Some(match self {
            ServerEvent::Connect | ServerEvent::StartTls => return None,
            ServerEvent::Hello { .. } => HookKind::Hello,
            ServerEvent::Auth(_) => HookKind::Auth,
            ServerEvent::Mail { .. } => HookKind::Mail,
            ServerEvent::Rcpt { .. } => HookKind::Rcpt,
            ServerEvent::MessageStart => HookKind::DataStart,
            ServerEvent::MessageData(_) => HookKind::DataChunk,
            ServerEvent::MessageEnd => HookKind::DataEnd,
            ServerEvent::MessageAborted(_) => HookKind::DataAborted,
            ServerEvent::Reset => HookKind::Reset,
            ServerEvent::Verify(_) => HookKind::Verify,
            ServerEvent::Expand(_) => HookKind::Expand,
            ServerEvent::Noop(_) => HookKind::Noop,
            ServerEvent::Rset => HookKind::Rset,
            ServerEvent::Quit => HookKind::Quit,
            ServerEvent::Close => HookKind::Close,
        })
    }

    /// The event without its borrow, to be kept while its hook runs: a chunk of content
    /// is left behind (empty), since the session still holds it
    /// ([`ServerSession::message_data`]).
    pub(crate) fn into_owned(self) -> ServerEvent<'static> {
        match self {
            ServerEvent::Connect => ServerEvent::Connect,
            ServerEvent::Hello { verb, domain } => ServerEvent::Hello { verb, domain },
            ServerEvent::StartTls => ServerEvent::StartTls,
            ServerEvent::Auth(attempt) => ServerEvent::Auth(attempt),
            ServerEvent::Mail { from, params } => ServerEvent::Mail { from, params },
            ServerEvent::Rcpt { to, params } => ServerEvent::Rcpt { to, params },
            ServerEvent::MessageStart => ServerEvent::MessageStart,
            ServerEvent::MessageData(_) => ServerEvent::MessageData(&[]),
            ServerEvent::MessageEnd => ServerEvent::MessageEnd,
            ServerEvent::MessageAborted(reason) => ServerEvent::MessageAborted(reason),
            ServerEvent::Reset => ServerEvent::Reset,
            ServerEvent::Verify(argument) => ServerEvent::Verify(argument),
            ServerEvent::Expand(argument) => ServerEvent::Expand(argument),
            ServerEvent::Noop(argument) => ServerEvent::Noop(argument),
            ServerEvent::Rset => ServerEvent::Rset,
            ServerEvent::Quit => ServerEvent::Quit,
            ServerEvent::Close => ServerEvent::Close,
        }
    }
}

/// The table of hooks: `Variant => fn name(args) -> answer { default }`, in the order a
/// conversation meets them (types spelled out from the crate root, since the table is
/// expanded in other modules). Hands the table to the macro named first, with any tokens
/// after it in brackets, which makes one thing out of it.
macro_rules! with_hooks {
    ($callback:ident ! $($extra:tt)*) => {
        $callback! { [$($extra)*]
            /// HELO, EHLO or LHLO.
            Hello => fn hello<'a>(verb: $crate::server::HelloVerb, domain: &'a str)
                -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// The connection is now encrypted (after STARTTLS).
            TlsStarted => fn tls_started() -> () {}
            /// AUTH: check the credentials (use [`crate::auth::Secret::constant_time_eq`]).
            /// Default: refuse.
            Auth => fn auth<'a>(attempt: &'a $crate::auth::AuthAttempt)
                -> $crate::server::Decision { $crate::server::hooks::auth_refused() }
            /// MAIL FROM.
            Mail => fn mail<'a>(
                from: &'a $crate::address::ReversePath,
                params: &'a $crate::command::MailParameters
            ) -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// RCPT TO.
            Rcpt => fn rcpt<'a>(
                to: &'a $crate::address::ForwardPath,
                params: &'a $crate::command::RcptParameters
            ) -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// DATA or the first BDAT chunk: may the content come?
            DataStart => fn data_start<'a>(transaction: &'a $crate::server::hooks::Transaction)
                -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// A piece of the content (un-stuffed, CRLF line endings). An error is
            /// remembered and becomes the reply to the end of the message.
            DataChunk => fn data_chunk<'a>(chunk: &'a [u8])
                -> Result<(), $crate::reply::Reply> { Ok(()) }
            /// The whole message has arrived: accept (the reply can carry a queue id) or
            /// refuse. Under LMTP answer with [`Decision::PerRecipient`].
            DataEnd => fn data_end<'a>(transaction: &'a $crate::server::hooks::Transaction)
                -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// The message in progress was dropped; discard what was kept of it.
            DataAborted => fn data_aborted(reason: $crate::server::AbortReason) -> () {}
            /// The transaction was abandoned (RSET, a new greeting, STARTTLS).
            Reset => fn reset() -> () {}
            /// VRFY. Default: 252.
            Verify => fn verify<'a>(argument: &'a str)
                -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// EXPN. Default: 252.
            Expand => fn expand<'a>(argument: &'a str)
                -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// NOOP, with its argument (empty when there was none; it changes nothing).
            /// Default: 250.
            Noop => fn noop<'a>(argument: &'a str)
                -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// The RSET command, in a transaction or not (after `reset` when one was
            /// abandoned). Default: 250.
            Rset => fn rset() -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// QUIT: the reply before the session closes. Default: 221.
            Quit => fn quit() -> $crate::server::Decision { $crate::server::Decision::Accept }
            /// The connection is over.
            Close => fn close() -> () {}
        }
    };
}
pub(crate) use with_hooks;

/// The embedder's answer to a decision event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead, with the standard reply.
    Accept,
    /// This reply: a positive code (2xx, or 3xx for MessageStart) accepts with this text,
    /// anything else refuses. A 3xx reply to any other event is no acceptance: the session
    /// answers it with 451 (the client would take it as "go on sending").
    Reply(Reply),
    /// LMTP MessageEnd: one reply per accepted recipient, in RCPT order. Missing entries
    /// repeat the last one; for SMTP only the first is used.
    PerRecipient(Vec<Reply>),
}

impl From<Reply> for Decision {
    fn from(reply: Reply) -> Decision {
        Decision::Reply(reply)
    }
}

/// [`ServerSession::decide`] was called with no decision pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoDecisionPending;

impl fmt::Display for NoDecisionPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no event is waiting for a decision")
    }
}

impl std::error::Error for NoDecisionPending {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;

    /// The kind a connection reads without making the hook is the hook's own, event by
    /// event.
    #[test]
    fn hook_kind_is_the_hooks_kind() {
        let attempt = AuthAttempt {
            mechanism: crate::auth::AuthMechanism::Plain,
            authorization_id: String::new(),
            username: "user".into(),
            password: crate::auth::Secret::new("pw"),
        };
        let address = Address::parse("a@example.com").unwrap();
        let events = [
            ServerEvent::Connect,
            ServerEvent::Hello {
                verb: HelloVerb::Ehlo,
                domain: "c.test".into(),
            },
            ServerEvent::StartTls,
            ServerEvent::Auth(attempt),
            ServerEvent::Mail {
                from: ReversePath::Mailbox(address.clone()),
                params: MailParameters::default(),
            },
            ServerEvent::Rcpt {
                to: ForwardPath::Mailbox(address),
                params: RcptParameters::default(),
            },
            ServerEvent::MessageStart,
            ServerEvent::MessageData(b"x"),
            ServerEvent::MessageEnd,
            ServerEvent::MessageAborted(AbortReason::TooLarge),
            ServerEvent::Reset,
            ServerEvent::Verify("postmaster".into()),
            ServerEvent::Expand("list".into()),
            ServerEvent::Noop(None),
            ServerEvent::Rset,
            ServerEvent::Quit,
            ServerEvent::Close,
        ];
        let transaction = Transaction::default();
        for event in &events {
            assert_eq!(
                event.hook_kind(),
                event.hook(&transaction).map(|hook| hook.kind()),
                "{event:?}"
            );
        }
    }
}
