//! Whole-message handlers: [`WholeMessage`] gathers the content the chunk hooks see and
//! hands the complete message to one hook, with its transaction, the way go-smtp's
//! `Data(io.Reader)` does. The message comes as a [`Message`]: its bytes, or a reader
//! (`std::io::Read`, and `tokio::io::AsyncRead` with the `tokio` feature).
//!
//! The message is held in memory, so it is bounded twice: by the session's
//! [`ServerConfig::max_message_size`](crate::server::ServerConfig::max_message_size) (the
//! SIZE the server announces; a larger message is refused with `552 5.3.4` and the hook is
//! not called) and by the adapter's own [`WholeMessage::max_size`] (the same reply). For
//! messages too large to hold, implement `data_chunk` and stream them instead.
//!
//! ```
//! use smtp_core::handler::{ConnectionInfo, Handler, Message, MessageHook, SessionHandler, Transaction, WholeMessage};
//! use smtp_core::reply::Reply;
//! use smtp_core::server::Decision;
//! use std::io::Read;
//!
//! struct Inbox;
//! struct InboxSession;
//! impl Handler for Inbox {
//!     type Session = InboxSession;
//!     fn connect(&self, _: &ConnectionInfo) -> Result<InboxSession, Reply> { Ok(InboxSession) }
//! }
//! impl SessionHandler for InboxSession {} // the other hooks: their defaults
//! impl MessageHook for InboxSession {
//!     fn message(&mut self, transaction: &Transaction, mut message: Message<'_>) -> Decision {
//!         let mut text = String::new();
//!         if message.read_to_string(&mut text).is_err() {
//!             return Decision::reject(550, "5.6.0", "not UTF-8");
//!         }
//!         println!("{} bytes from {:?}", text.len(), transaction.from);
//!         Decision::queued("42")
//!     }
//! }
//! let handler = WholeMessage::new(Inbox); // give this to Server::builder
//! ```

use std::future::Future;
use std::io;

use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::Decision;
use crate::server::hooks::{
    Answer, AsyncHandler, AsyncSessionHandler, ConnectionInfo, Handler, Hook, IntoAnswer,
    SessionHandler, Transaction, forward_hooks, with_hooks,
};
use crate::server::wrap::forward_hooks_async;

/// A complete message: the content as received (un-stuffed, CRLF line endings), readable
/// as bytes or as a reader.
#[derive(Debug)]
pub struct Message<'a> {
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// The whole content.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Its size in octets.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for an empty message.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl io::Read for Message<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bytes.read(buf)
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncRead for Message<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.bytes).poll_read(cx, buf)
    }
}

/// The one hook of a whole-message session handler (beside the ordinary
/// [`SessionHandler`] hooks, whose defaults apply unless implemented).
pub trait MessageHook {
    /// The message has arrived in full: accept ([`Decision::Accept`],
    /// [`Decision::queued`]) or refuse ([`Decision::reject`]). Under LMTP answer with
    /// [`Decision::PerRecipient`].
    fn message(&mut self, transaction: &Transaction, message: Message<'_>) -> Decision;
}

/// The async counterpart of [`MessageHook`], for [`AsyncSessionHandler`]s.
pub trait AsyncMessageHook {
    /// As [`MessageHook::message`], awaited.
    fn message(
        &mut self,
        transaction: &Transaction,
        message: Message<'_>,
    ) -> impl Future<Output = Decision> + Send;
}

/// Wraps a handler whose sessions implement [`MessageHook`] (or [`AsyncMessageHook`] for
/// an [`AsyncHandler`]): the content is gathered and given to that hook in one piece.
/// Every other hook goes to the inner handler.
#[derive(Debug)]
pub struct WholeMessage<H> {
    inner: H,
    max_size: usize,
}

impl<H> WholeMessage<H> {
    /// Wraps `inner`, holding messages of up to 25 MiB (the default
    /// [`ServerConfig::max_message_size`](crate::server::ServerConfig::max_message_size)).
    pub fn new(inner: H) -> WholeMessage<H> {
        WholeMessage {
            inner,
            max_size: 25 << 20,
        }
    }

    /// Holds messages of up to `bytes`; a larger one is refused with `552 5.3.4`.
    pub fn max_size(mut self, bytes: usize) -> WholeMessage<H> {
        self.max_size = bytes;
        self
    }

    fn session<S>(&self, inner: S) -> WholeMessageSession<S> {
        WholeMessageSession {
            inner,
            content: Vec::new(),
            failed: false,
            max_size: self.max_size,
        }
    }
}

impl<H: Handler> Handler for WholeMessage<H>
where
    H::Session: MessageHook,
{
    type Session = WholeMessageSession<H::Session>;
    fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply> {
        Ok(self.session(self.inner.connect(info)?))
    }

    fn auth_mechanisms(&self) -> Vec<crate::ehlo::AuthMechanism> {
        self.inner.auth_mechanisms()
    }
}

impl<H: AsyncHandler> AsyncHandler for WholeMessage<H>
where
    H::Session: AsyncMessageHook + Send,
{
    type Session = WholeMessageSession<H::Session>;
    async fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply> {
        Ok(self.session(self.inner.connect(info).await?))
    }

    fn auth_mechanisms(&self) -> Vec<crate::ehlo::AuthMechanism> {
        self.inner.auth_mechanisms()
    }
}

/// The per-connection part of [`WholeMessage`].
#[derive(Debug)]
pub struct WholeMessageSession<S> {
    inner: S,
    content: Vec<u8>,
    /// The message outgrew the limit: the rest is dropped and its end refused.
    failed: bool,
    max_size: usize,
}

/// What [`WholeMessageSession`] does with a hook before (or instead of) the inner handler.
enum Step {
    /// Answer this; the inner handler is not called.
    Answer(Answer),
    /// Call the message hook and answer with its decision.
    Deliver,
    /// Give the hook to the inner handler.
    Forward,
}

impl<S> WholeMessageSession<S> {
    fn step(&mut self, hook: &Hook<'_>) -> Step {
        match hook {
            Hook::DataChunk { chunk } => {
                if !self.failed && self.content.len() + chunk.len() > self.max_size {
                    self.failed = true;
                    self.content = Vec::new();
                }
                if self.failed {
                    return Step::Answer(Answer::Chunk(Err(too_large())));
                }
                self.content.extend_from_slice(chunk);
                Step::Answer(Answer::Chunk(Ok(())))
            }
            Hook::DataEnd { .. } if self.failed => {
                self.clear();
                Step::Answer(Answer::Decision(Decision::Reply(too_large())))
            }
            Hook::DataEnd { .. } => Step::Deliver,
            Hook::DataAborted { .. } | Hook::Reset | Hook::DataStart { .. } => {
                self.clear();
                Step::Forward
            }
            _ => Step::Forward,
        }
    }

    fn clear(&mut self) {
        self.content = Vec::new();
        self.failed = false;
    }
}

fn too_large() -> Reply {
    Reply::new(
        ReplyCode::STORAGE_EXCEEDED,
        Some(EnhancedCode::MESSAGE_TOO_BIG),
        "Error: message too large",
    )
}

impl<S: SessionHandler + MessageHook> WholeMessageSession<S> {
    fn intercept(&mut self, hook: &Hook<'_>) -> Option<Answer> {
        match self.step(hook) {
            Step::Answer(answer) => Some(answer),
            Step::Forward => None,
            Step::Deliver => {
                let Hook::DataEnd { transaction } = hook else {
                    return None;
                };
                let content = std::mem::take(&mut self.content);
                let decision = self.inner.message(transaction, Message { bytes: &content });
                Some(decision.into_answer())
            }
        }
    }
}

impl<S: SessionHandler + MessageHook> SessionHandler for WholeMessageSession<S> {
    with_hooks!(forward_hooks! inner);

    fn may_block(&self, hook: &Hook<'_>) -> bool {
        // Gathering chunks only copies; the message hook is the inner data_end's slot.
        match hook {
            Hook::DataChunk { .. } => false,
            Hook::DataEnd { .. } => true,
            _ => self.inner.may_block(hook),
        }
    }
}

impl<S: AsyncSessionHandler + AsyncMessageHook + Send> WholeMessageSession<S> {
    async fn intercept_async(&mut self, hook: &Hook<'_>) -> Option<Answer> {
        match self.step(hook) {
            Step::Answer(answer) => Some(answer),
            Step::Forward => None,
            Step::Deliver => {
                let Hook::DataEnd { transaction } = hook else {
                    return None;
                };
                let content = std::mem::take(&mut self.content);
                let decision = self
                    .inner
                    .message(transaction, Message { bytes: &content })
                    .await;
                Some(decision.into_answer())
            }
        }
    }
}

impl<S: AsyncSessionHandler + AsyncMessageHook + Send> AsyncSessionHandler
    for WholeMessageSession<S>
{
    with_hooks!(forward_hooks_async! inner);
}
