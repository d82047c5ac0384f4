//! The bookkeeping of a batch of messages sent over one connection.

use std::collections::VecDeque;
use std::iter::Peekable;

use crate::client::error::Error;
use crate::client::{ClientError, ClientSession, Envelope, TransactionResult};

/// The bookkeeping of a batch of messages sent over one connection, for the
/// [runner](super::runner)'s `send_batch`: which messages are started (each one's content is the
/// next to be asked for with [`ClientEvent::SendBody`](crate::client::ClientEvent::SendBody), since replies come in order), and
/// the outcomes in message order.
pub(crate) struct Batch<'m, I: Iterator<Item = (&'m Envelope, &'m [u8])>> {
    queue: Peekable<I>,
    /// The contents of the started transactions, oldest first.
    in_flight: VecDeque<&'m [u8]>,
    results: Vec<Result<TransactionResult, Error>>,
}

impl<'m, I: Iterator<Item = (&'m Envelope, &'m [u8])>> Batch<'m, I> {
    pub(crate) fn new(messages: impl IntoIterator<IntoIter = I>) -> Self {
        Batch {
            queue: messages.into_iter().peekable(),
            in_flight: VecDeque::new(),
            results: Vec::new(),
        }
    }

    /// Starts as many queued messages as the session takes now: one when it is ready,
    /// one chained behind a finished message, none otherwise. A message the session
    /// refuses for itself (too large, an address it cannot send) gets its error in place
    /// once every message before it has its outcome, and the next one is tried.
    pub(crate) fn start_next(&mut self, session: &mut ClientSession) {
        while let Some(&(envelope, content)) = self.queue.peek() {
            if !self.in_flight.is_empty() && !session.can_send_mail() {
                // Busy with an earlier message: this one starts once that is done.
                return;
            }
            match session.send_mail(envelope, Some(crate::data::wire_size(content))) {
                Ok(()) => {
                    self.queue.next();
                    self.in_flight.push_back(content);
                    return;
                }
                Err(error) if self.in_flight.is_empty() => {
                    self.queue.next();
                    let fatal = error.is_fatal() || session.is_closed();
                    self.results.push(Err(error.into()));
                    if fatal {
                        self.stop();
                    }
                }
                // Refused for itself, behind messages without an outcome yet: keep the
                // order, report it after them.
                Err(_) => return,
            }
        }
    }

    /// The content the session asks for now.
    pub(crate) fn content(&self) -> Result<&'m [u8], Error> {
        self.in_flight.front().copied().ok_or_else(|| {
            Error::from(ClientError::Protocol(
                "the session asked for content with no message started".into(),
            ))
        })
    }

    /// The oldest started message is done.
    pub(crate) fn complete(&mut self, result: TransactionResult) {
        self.in_flight.pop_front();
        self.results.push(Ok(result));
    }

    /// The connection failed: the oldest started message gets the error (its outcome is
    /// unknown), and nothing after it is sent.
    pub(crate) fn fail(&mut self, error: Error) {
        self.results.push(Err(error));
        self.stop();
    }

    fn stop(&mut self) {
        self.in_flight.clear();
        while self.queue.next().is_some() {}
    }

    /// Nothing started and nothing left to start.
    pub(crate) fn is_done(&mut self) -> bool {
        self.in_flight.is_empty() && self.queue.peek().is_none()
    }

    /// True when no message is under way (so the next must be started before waiting).
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub(crate) fn into_results(self) -> Vec<Result<TransactionResult, Error>> {
        self.results
    }
}
