//! What a server session tells the embedder, and what the embedder answers.

use std::fmt;

use crate::address::{ForwardPath, ReversePath};
use crate::auth::AuthAttempt;
use crate::command::{MailParameters, RcptParameters};
use crate::reply::Reply;

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
        )
    }
}

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
