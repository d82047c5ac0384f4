//! The bookkeeping of a batch of messages sent over one connection.

use std::collections::VecDeque;
use std::iter::Peekable;

use crate::client::error::Error;
use crate::client::{ClientError, ClientSession, Envelope, TransactionResult};

/// One message of a batch: its envelope and its content, borrowed or owned.
///
/// Borrowed pairs `(&Envelope, &[u8])` suit a caller that holds its messages while the
/// batch runs; owned pairs `(Envelope, Vec<u8>)` suit a binding whose operation outlives
/// the call that started it.
pub trait BatchMessage {
    /// The envelope.
    fn envelope(&self) -> &Envelope;
    /// The content, as the caller wrote it (the session canonicalises line endings).
    fn content(&self) -> &[u8];
}

impl BatchMessage for (&Envelope, &[u8]) {
    fn envelope(&self) -> &Envelope {
        self.0
    }
    fn content(&self) -> &[u8] {
        self.1
    }
}

impl BatchMessage for (Envelope, Vec<u8>) {
    fn envelope(&self) -> &Envelope {
        &self.0
    }
    fn content(&self) -> &[u8] {
        &self.1
    }
}

/// The bookkeeping of a batch of messages sent over one connection, for the
/// [runner](super::runner)'s `send_batch`: which messages are started (each one's content is the
/// next to be asked for with [`ClientEvent::SendBody`](crate::client::ClientEvent::SendBody), since replies come in order), and
/// the outcomes in message order.
pub(crate) struct Batch<I: Iterator<Item: BatchMessage>> {
    queue: Peekable<I>,
    /// The started messages, oldest first.
    in_flight: VecDeque<I::Item>,
    /// The outcomes not yet taken with [`take_result`](Batch::take_result), in message
    /// order.
    results: VecDeque<Result<TransactionResult, Error>>,
}

impl<I: Iterator<Item: BatchMessage>> Batch<I> {
    pub(crate) fn new(messages: impl IntoIterator<IntoIter = I>) -> Self {
        Batch {
            queue: messages.into_iter().peekable(),
            in_flight: VecDeque::new(),
            results: VecDeque::new(),
        }
    }

    /// Starts as many queued messages as the session takes now: one when it is ready,
    /// one chained behind a finished message, none otherwise. A message the session
    /// refuses for itself (too large, an address it cannot send) gets its error in place
    /// once every message before it has its outcome, and the next one is tried.
    pub(crate) fn start_next(&mut self, session: &mut ClientSession) {
        loop {
            if !self.in_flight.is_empty() && !session.can_send_mail() {
                // Busy with an earlier message: the next starts once that is done. Asked
                // before the queue is peeked, so that a message is taken from the
                // caller's iterator only when it can be started (a caller that stops
                // its iterator meanwhile, on an outcome, starts nothing more).
                return;
            }
            let Some(message) = self.queue.peek() else {
                return;
            };
            let size = crate::data::wire_size(message.content());
            match session.send_mail(message.envelope(), Some(size)) {
                Ok(()) => {
                    if let Some(message) = self.queue.next() {
                        self.in_flight.push_back(message);
                    }
                    return;
                }
                Err(error) if self.in_flight.is_empty() => {
                    self.queue.next();
                    let fatal = error.is_fatal() || session.is_closed();
                    self.results.push_back(Err(error.into()));
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
    pub(crate) fn content(&self) -> Result<&[u8], Error> {
        self.in_flight
            .front()
            .map(BatchMessage::content)
            .ok_or_else(|| {
                Error::from(ClientError::Protocol(
                    "the session asked for content with no message started".into(),
                ))
            })
    }

    /// The oldest started message is done.
    pub(crate) fn complete(&mut self, result: TransactionResult) {
        self.in_flight.pop_front();
        self.results.push_back(Ok(result));
    }

    /// The connection failed: the oldest started message gets the error (its outcome is
    /// unknown), and nothing after it is sent.
    pub(crate) fn fail(&mut self, error: Error) {
        self.results.push_back(Err(error));
        self.stop();
    }

    fn stop(&mut self) {
        self.in_flight.clear();
        self.start_none();
    }

    /// Starts no further message: the queued ones are dropped, those under way finish.
    pub(crate) fn start_none(&mut self) {
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

    /// The oldest outcome not taken yet: outcomes are known in message order, so the
    /// n-th one taken (counting those [`into_results`](Batch::into_results) gives after
    /// them) is the n-th message's.
    pub(crate) fn take_result(&mut self) -> Option<Result<TransactionResult, Error>> {
        self.results.pop_front()
    }

    /// The outcomes not taken yet, in message order.
    pub(crate) fn into_results(self) -> Vec<Result<TransactionResult, Error>> {
        self.results.into()
    }
}
