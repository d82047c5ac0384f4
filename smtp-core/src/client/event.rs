//! What a client session tells the embedder: events and errors.

use std::fmt;

use crate::address::AddressError;
use crate::command::CommandError;
use crate::reply::Reply;

use super::TransactionResult;
// Named only by the docs.
#[cfg(doc)]
use super::ClientSession;

/// What went wrong in a client session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A command argument, address or credential contains CR, LF or NUL, or is otherwise
    /// unfit to be written; nothing was sent.
    InvalidArgument(String),
    /// The call does not fit the session's state (for example a send while another one is
    /// under way); nothing was sent.
    NotReady,
    /// The server refused the connection in its greeting.
    Greeting(Reply),
    /// The server refused EHLO, and then HELO.
    Hello(Reply),
    /// STARTTLS is required but the server does not offer it.
    StartTlsUnavailable,
    /// STARTTLS was refused by the server.
    StartTlsRefused(Reply),
    /// No mechanism both sides support.
    AuthUnsupported,
    /// The server refused the credentials.
    AuthFailed(Reply),
    /// Authentication was asked for on a connection that is not encrypted and
    /// [`ClientConfig::allow_insecure_auth`] is false; nothing of the credentials was sent.
    ///
    /// [`ClientConfig::allow_insecure_auth`]: super::ClientConfig::allow_insecure_auth
    InsecureAuth,
    /// The message is larger than the server's announced SIZE limit; nothing was sent.
    MessageTooLarge {
        /// The server's limit.
        limit: u64,
    },
    /// An address needs SMTPUTF8 but the server does not offer it; nothing was sent.
    SmtpUtf8Unsupported,
    /// The server is closing the connection (421).
    ServerClosed(Reply),
    /// The server sent something that is not a valid reply, or a reply nobody asked for.
    Protocol(String),
    /// A reply did not come in time.
    Timeout,
    /// The connection ended while replies were still expected.
    ConnectionClosed,
}

impl ClientError {
    /// True when the session cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ClientError::InvalidArgument(_)
                | ClientError::NotReady
                | ClientError::AuthFailed(_)
                | ClientError::AuthUnsupported
                | ClientError::InsecureAuth
                | ClientError::StartTlsRefused(_)
                | ClientError::MessageTooLarge { .. }
                | ClientError::SmtpUtf8Unsupported
        )
    }

    /// The server's reply behind the error, if there is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Greeting(r)
            | ClientError::Hello(r)
            | ClientError::StartTlsRefused(r)
            | ClientError::AuthFailed(r)
            | ClientError::ServerClosed(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            ClientError::NotReady => f.write_str("the session is not ready for this call"),
            ClientError::Greeting(r) => write!(f, "connection refused by server: {r}"),
            ClientError::Hello(r) => write!(f, "greeting refused by server: {r}"),
            ClientError::StartTlsUnavailable => {
                f.write_str("STARTTLS required but not offered by the server")
            }
            ClientError::StartTlsRefused(r) => write!(f, "STARTTLS refused by server: {r}"),
            ClientError::AuthUnsupported => {
                f.write_str("no authentication mechanism in common with the server")
            }
            ClientError::AuthFailed(r) => write!(f, "authentication failed: {r}"),
            ClientError::InsecureAuth => f.write_str(
                "refusing to send credentials over a connection without TLS: use STARTTLS \
                 or implicit TLS, or allow insecure authentication explicitly",
            ),
            ClientError::MessageTooLarge { limit } => write!(
                f,
                "message larger than the server's limit of {limit} octets"
            ),
            ClientError::SmtpUtf8Unsupported => {
                f.write_str("an address needs SMTPUTF8, which the server does not offer")
            }
            ClientError::ServerClosed(r) => write!(f, "server closed the session: {r}"),
            ClientError::Protocol(what) => write!(f, "protocol error: {what}"),
            ClientError::Timeout => f.write_str("timed out waiting for the server"),
            ClientError::ConnectionClosed => f.write_str("connection closed by the server"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<CommandError> for ClientError {
    fn from(e: CommandError) -> Self {
        ClientError::InvalidArgument(e.to_string())
    }
}

impl From<AddressError> for ClientError {
    fn from(e: AddressError) -> Self {
        ClientError::InvalidArgument(e.to_string())
    }
}

/// Something the embedder must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The session is greeted (and upgraded and authenticated, as configured): commands and
    /// transactions may be started.
    Ready,
    /// The server said 220 to STARTTLS: write the output, do the TLS handshake, then call
    /// [`ClientSession::tls_established`]. Bytes the server sent after its 220 were thrown
    /// away (they could only be injected).
    StartTls,
    /// Authentication succeeded.
    Authenticated(Reply),
    /// Send the message now with [`ClientSession::send_body`] and
    /// [`ClientSession::finish_body`].
    SendBody,
    /// A transaction is over.
    TransactionComplete(TransactionResult),
    /// The reply to NOOP, RSET, VRFY, EXPN or HELP.
    Reply(Reply),
    /// The session is over (after QUIT, or when the server went away while idle); close
    /// the connection.
    Closed,
    /// Something failed; when [`ClientError::is_fatal`] the session is over too.
    Error(ClientError),
}
