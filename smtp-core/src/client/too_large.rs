//! "Message too large" in one shape. A message over the server's announced SIZE is
//! refused before anything is sent (an [`Error`] of kind
//! [`ErrorKind::MessageTooLarge`](crate::client::ErrorKind::MessageTooLarge)); one whose
//! size was unknown is streamed and refused at its end (a [`TransactionResult`] whose
//! final reply is 552 or says `x.3.4`/`x.2.3`). Both answer `message_too_large()` with
//! the same [`TooLarge`], and [`SendOutcome::message_too_large`] asks a `send` result
//! directly.

use crate::client::error::{Error, ErrorKind};
use crate::client::{ClientError, TransactionResult};
use crate::reply::{Reply, ReplyCode};

/// A message refused for its size, however that was found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// The server's limit, when it announced one (SIZE).
    pub limit: Option<u64>,
    /// The server's refusal, when the message was sent and refused at its end.
    pub reply: Option<Reply>,
    /// True when the content went out (the size was discovered while streaming); false
    /// when nothing was sent.
    pub sent: bool,
}

impl Error {
    /// The size refusal this error is, if it is one (nothing was sent).
    pub fn message_too_large(&self) -> Option<TooLarge> {
        if self.kind() != ErrorKind::MessageTooLarge {
            return None;
        }
        let limit = match self.client_error() {
            Some(ClientError::MessageTooLarge { limit }) => Some(*limit),
            _ => None,
        };
        Some(TooLarge {
            limit,
            reply: None,
            sent: false,
        })
    }
}

impl TransactionResult {
    /// The size refusal at the end of the message, if that is how it ended: a final
    /// reply of 552, or with enhanced code `x.3.4` (too big for the system) or `x.2.3`
    /// (over an administrative limit).
    pub fn message_too_large(&self) -> Option<TooLarge> {
        let reply = self.data.as_ref()?;
        let enhanced = reply.enhanced();
        let too_large = match enhanced {
            Some(e) => {
                (e.class == 4 || e.class == 5)
                    && ((e.subject == 3 && e.detail == 4) || (e.subject == 2 && e.detail == 3))
            }
            None => reply.code() == ReplyCode::STORAGE_EXCEEDED,
        };
        too_large.then(|| TooLarge {
            limit: None,
            reply: Some(reply.clone()),
            sent: true,
        })
    }
}

/// What a `send` returned, asked the questions whose answer may be on either side.
///
/// ```
/// use smtp_core::client::{ClientError, Error, SendOutcome, TransactionResult};
/// let refused_early: Result<TransactionResult, Error> =
///     Err(ClientError::MessageTooLarge { limit: 1000 }.into());
/// let too_large = refused_early.message_too_large().unwrap();
/// assert_eq!(too_large.limit, Some(1000));
/// assert!(!too_large.sent);
/// ```
pub trait SendOutcome {
    /// The message was refused for its size, before sending or at its end.
    fn message_too_large(&self) -> Option<TooLarge>;
}

impl SendOutcome for Result<TransactionResult, Error> {
    fn message_too_large(&self) -> Option<TooLarge> {
        match self {
            Ok(result) => result.message_too_large(),
            Err(error) => error.message_too_large(),
        }
    }
}
