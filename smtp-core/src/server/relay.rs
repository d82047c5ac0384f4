//! [`RelayHandler`]: a before-queue proxy. Each transaction the server receives is
//! forwarded, as it arrives, to a next hop (SMTP or LMTP) over a pooled client connection,
//! and the client is answered with what the next hop answered, so that nothing is
//! acknowledged that the next hop did not accept:
//!
//! - MAIL and each RCPT go to the next hop one at a time, and its reply is the reply
//!   (a recipient it refuses is refused here, with its words);
//! - DATA's 354 is given once the next hop said 354; the content is streamed to it piece
//!   by piece as it arrives (a bounded number of pieces in flight, never the whole
//!   message), and the client's engine re-canonicalises it: no lone CR or LF leaves;
//! - the final reply is the next hop's final reply; under LMTP on the front side, one per
//!   recipient (from an LMTP next hop its per-recipient replies, from an SMTP one its one
//!   reply for each). Under SMTP on the front side with an LMTP next hop that accepted
//!   some recipients and refused others, the client gets 451 4.3.0 (a single reply
//!   cannot say "some"; a retry duplicates the delivered copies rather than losing the
//!   others);
//! - a next hop that is down, slow (past the client options' timeouts), or that closes
//!   gives 451 with an enhanced code (4.4.1 cannot connect, 4.4.2 lost or timed out),
//!   never 250;
//! - connections come from an [`SmtpPool`] and go back after each transaction (STARTTLS
//!   policy, AUTH and timeouts are the pool's [`ClientOptions`]).
//!
//! ```no_run
//! use smtp_core::blocking::client::{ClientOptions, TlsMode};
//! use smtp_core::blocking::server::{Server, ServerOptions};
//! use smtp_core::client::pool::PoolConfig;
//! use smtp_core::server::relay::RelayHandler;
//! use smtp_core::server::ServerConfig;
//!
//! let mut options = ClientOptions::new("relay.example");
//! options.tls = TlsMode::StartTlsRequired;
//! let relay = RelayHandler::new("mx.internal:25", "mx.internal", options, PoolConfig::new(8))?;
//! let server = Server::builder(relay, ServerOptions::new(ServerConfig::new("relay.example")))
//!     .listen("127.0.0.1:2525")?
//!     .start()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each transaction's content is handed to the next hop by a thread of its own (the
//! hooks are called one at a time, while the client driver pulls the message), so the
//! relay runs under the blocking [`Server`](crate::blocking::server::Server) and under
//! the tokio server, where its hooks (which may block) run in `block_in_place`. On the
//! tokio server, prefer its async twin `AsyncRelayHandler` (feature `tokio`): the same
//! decisions (they are written once, in this module), over an async pool, with the
//! content sent by a task; no hook holds a worker thread while the next hop answers.

use std::io::{self, Read};
use std::net::ToSocketAddrs;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use crate::address::{ForwardPath, ReversePath};
use crate::blocking::client::{ClientOptions, Error, ErrorKind};
use crate::blocking::pool::{PooledClient, SmtpPool};
use crate::client::pool::PoolConfig;
use crate::client::{Envelope, Recipient, TransactionResult};
use crate::command::{MailParameters, RcptParameters};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::hooks::{ConnectionInfo, Handler, SessionHandler, Transaction};
use crate::server::{AbortReason, Decision, HelloVerb};

#[cfg(feature = "tokio")]
mod asynchronous;
#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncRelayHandler, AsyncRelaySession};

/// Pieces of content in flight between the server's hooks and the thread that sends them
/// to the next hop: what a slow next hop lets pile up before the client is slowed down.
const PIECES_IN_FLIGHT: usize = 8;

/// Forwards every transaction to a next hop; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct RelayHandler {
    pool: SmtpPool,
}

impl RelayHandler {
    /// A relay to `next_hop` (resolved now; `server_name` is the name its certificate must
    /// carry), with connections set up by `options` (`lmtp`, `tls`, `credentials`,
    /// `timeouts`) and pooled as `pool` says. No connection is opened yet.
    pub fn new(
        next_hop: impl ToSocketAddrs,
        server_name: &str,
        options: ClientOptions,
        pool: PoolConfig,
    ) -> Result<RelayHandler, Error> {
        Ok(RelayHandler::with_pool(SmtpPool::new(
            next_hop,
            server_name,
            options,
            pool,
        )?))
    }

    /// A relay over an existing pool (which other code may share).
    pub fn with_pool(pool: SmtpPool) -> RelayHandler {
        RelayHandler { pool }
    }

    /// The pool of next-hop connections.
    pub fn pool(&self) -> &SmtpPool {
        &self.pool
    }
}

impl Handler for RelayHandler {
    type Session = RelaySession;
    fn connect(&self, _info: &ConnectionInfo) -> Result<RelaySession, Reply> {
        Ok(RelaySession {
            pool: self.pool.clone(),
            client: None,
            state: RelayState::default(),
            transfer: None,
        })
    }
}

/// The per-connection part of [`RelayHandler`]: the next-hop connection of the
/// transaction under way.
#[derive(Debug)]
pub struct RelaySession {
    pool: SmtpPool,
    /// Held from MAIL until the transaction ends.
    client: Option<PooledClient>,
    state: RelayState,
    transfer: Option<Transfer>,
}

/// A piece of content on its way to the next hop.
enum Piece {
    Data(Vec<u8>),
    End,
}

/// The thread sending the current message's content to the next hop.
#[derive(Debug)]
struct Transfer {
    pieces: SyncSender<Piece>,
    worker: JoinHandle<(PooledClient, Result<TransactionResult, Error>)>,
}

/// Not debuggable (content), only countable.
impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Piece::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Piece::End => f.write_str("End"),
        }
    }
}

/// What the relay knows of the transaction under way, and every decision it takes from
/// the next hop's replies, for both the blocking [`RelaySession`] and the async
/// [`AsyncRelaySession`]: they only carry the commands and the content to the next hop
/// and hand what came back to these methods.
#[derive(Debug, Default)]
pub(crate) struct RelayState {
    from: Option<ReversePath>,
    /// The recipients the next hop accepted, in order.
    accepted: Vec<Recipient>,
    /// MAIL attempts in this transaction (a pooled connection the next hop closed while it
    /// was idle is worth one more try on another).
    mail_attempts: u8,
}

/// What to do after the next hop's reply to MAIL.
#[derive(Debug)]
pub(crate) enum MailStep {
    /// The next hop opened a transaction: hold the connection and answer this.
    Open(Decision),
    /// Answer this and end the next-hop side of the transaction.
    Refused(Decision),
    /// The connection was lost: drop it and try MAIL on another.
    Retry,
}

/// How many connections MAIL is tried on.
const MAIL_ATTEMPTS: u8 = 2;

impl RelayState {
    /// The transaction is over (or never began): forget it.
    pub(crate) fn clear(&mut self) {
        self.from = None;
        self.accepted.clear();
        self.mail_attempts = 0;
    }

    /// The pool could not give a connection.
    pub(crate) fn unavailable(&self, error: &Error) -> Decision {
        log::warn!("smtpx relay: next hop unavailable: {error}");
        Decision::Reply(unavailable())
    }

    /// The next hop's answer to MAIL (`result` is the reply, or the error that lost the
    /// connection).
    pub(crate) fn mail_replied(
        &mut self,
        from: &ReversePath,
        result: Result<Reply, Error>,
    ) -> MailStep {
        self.mail_attempts += 1;
        let reply = match result {
            Ok(reply) if reply.is_completion() => {
                self.from = Some(from.clone());
                return MailStep::Open(Decision::Reply(reply));
            }
            Ok(reply) => refusal(reply),
            Err(error) if error.kind() == ErrorKind::InvalidArgument => Reply::new(
                ReplyCode::PARAMETERS_UNRECOGNIZED,
                Some(EnhancedCode::new(5, 6, 3)),
                "Error: the next hop cannot take this kind of content",
            ),
            Err(error) if error.kind() == ErrorKind::SmtpUtf8Unsupported => Reply::new(
                ReplyCode::TRANSACTION_FAILED,
                Some(EnhancedCode::NON_ASCII_ADDRESS),
                "Error: the next hop does not accept SMTPUTF8",
            ),
            Err(error) => {
                log::debug!("smtpx relay: MAIL on the next hop failed: {error}");
                if self.mail_attempts < MAIL_ATTEMPTS {
                    return MailStep::Retry;
                }
                failure_reply(&error)
            }
        };
        self.clear();
        MailStep::Refused(Decision::Reply(reply))
    }

    /// The next hop's answer to RCPT.
    pub(crate) fn rcpt_replied(
        &mut self,
        to: &ForwardPath,
        params: &RcptParameters,
        result: Result<Reply, Error>,
    ) -> Decision {
        match result {
            Ok(reply) if reply.is_completion() => {
                self.accepted.push(Recipient {
                    address: to.clone(),
                    params: params.clone(),
                });
                Decision::Reply(reply)
            }
            Ok(reply) => Decision::Reply(refusal(reply)),
            Err(error) => {
                log::debug!("smtpx relay: RCPT on the next hop failed: {error}");
                Decision::Reply(failure_reply(&error))
            }
        }
    }

    /// The envelope the content goes to the next hop with, or the answer to DATA when
    /// there is nothing to send it for.
    pub(crate) fn envelope(&self) -> Result<Envelope, Decision> {
        if self.accepted.is_empty() {
            return Err(Decision::Reply(next_hop_lost()));
        }
        Ok(Envelope {
            from: self.from.clone().unwrap_or(ReversePath::Null),
            params: MailParameters::default(),
            recipients: self.accepted.clone(),
        })
    }

    /// The answer to DATA when the next hop's side ended before it asked for the content
    /// (DATA refused, or the connection lost); `None` when this relay failed its part.
    pub(crate) fn data_refused(
        &mut self,
        outcome: Option<Result<TransactionResult, Error>>,
    ) -> Decision {
        Decision::Reply(match outcome {
            Some(Ok(result)) => result
                .data
                .filter(|r| !r.is_positive())
                .unwrap_or_else(next_hop_lost),
            Some(Err(error)) => failure_reply(&error),
            None => local_failure(),
        })
    }

    /// The final answer once the next hop's side of the message is over (`None` when this
    /// relay failed its part); the transaction is then over.
    pub(crate) fn data_done(
        &mut self,
        outcome: Option<Result<TransactionResult, Error>>,
        transaction: &Transaction,
    ) -> Decision {
        let decision = match outcome {
            Some(Ok(result)) => {
                let lmtp_front = matches!(transaction.hello, Some((HelloVerb::Lhlo, _)));
                final_decision(&result, self.accepted.len(), lmtp_front)
            }
            Some(Err(error)) => {
                log::debug!("smtpx relay: the next hop failed the message: {error}");
                Decision::Reply(failure_reply(&error))
            }
            None => Decision::Reply(local_failure()),
        };
        self.clear();
        decision
    }

    /// The answer to a hook that needs a transaction the next hop does not hold.
    pub(crate) fn no_transaction(&self) -> Decision {
        Decision::Reply(next_hop_lost())
    }
}

impl RelaySession {
    /// Ends the next-hop side of the transaction: the content thread (abandoning a
    /// message not ended, so that the next hop never sees it finished) and the
    /// connection, cleared with RSET when a transaction is open on it, back to the pool.
    fn end_transaction(&mut self) {
        if let Some(transfer) = self.transfer.take() {
            drop(transfer.pieces);
            if let Ok((client, _)) = transfer.worker.join() {
                self.client = Some(client);
            }
        }
        if let Some(mut client) = self.client.take()
            && !client.is_closed()
            && client.rset().is_err()
        {
            log::debug!("smtpx relay: RSET on the next hop failed");
        }
        self.state.clear();
    }

    /// Starts the content thread: DATA, then the pieces as they come.
    fn start_transfer(&mut self, envelope: Envelope) -> Decision {
        let Some(mut client) = self.client.take() else {
            return self.state.no_transaction();
        };
        let (pieces, incoming) = mpsc::sync_channel(PIECES_IN_FLIGHT);
        let (wanted, body_wanted) = mpsc::sync_channel(1);
        let spawned = thread::Builder::new()
            .name("smtpx-relay".into())
            .spawn(move || {
                let reader = PieceReader {
                    incoming,
                    wanted: Some(wanted),
                    piece: Vec::new(),
                    offset: 0,
                    ended: false,
                };
                let result = client.send(&envelope, reader, None);
                (client, result)
            });
        let worker = match spawned {
            Ok(worker) => worker,
            Err(e) => {
                log::warn!("smtpx relay: cannot start a thread: {e}");
                return self.state.data_refused(None);
            }
        };
        // The driver asks for the body only once the next hop said 354; if the thread
        // ends first, DATA was refused or the connection lost.
        if body_wanted.recv().is_ok() {
            self.transfer = Some(Transfer { pieces, worker });
            return Decision::Accept;
        }
        let outcome = worker.join().ok().map(|(client, result)| {
            self.client = Some(client);
            result
        });
        self.state.data_refused(outcome)
    }
}

impl SessionHandler for RelaySession {
    fn mail(&mut self, from: &ReversePath, params: &MailParameters) -> Decision {
        self.end_transaction();
        loop {
            let mut client = match self.pool.get() {
                Ok(client) => client,
                Err(error) => return self.state.unavailable(&error),
            };
            let result = client.command(|s| s.step_mail(from, params));
            match self.state.mail_replied(from, result) {
                MailStep::Open(decision) => {
                    self.client = Some(client);
                    return decision;
                }
                MailStep::Refused(decision) => {
                    self.client = Some(client);
                    self.end_transaction();
                    return decision;
                }
                MailStep::Retry => drop(client),
            }
        }
    }

    fn rcpt(&mut self, to: &ForwardPath, params: &RcptParameters) -> Decision {
        let result = match self.client.as_mut() {
            Some(client) => client.command(|s| s.step_rcpt(to, params)),
            None => return self.state.no_transaction(),
        };
        self.state.rcpt_replied(to, params, result)
    }

    fn data_start(&mut self, _transaction: &Transaction) -> Decision {
        match self.state.envelope() {
            Ok(envelope) => self.start_transfer(envelope),
            Err(decision) => decision,
        }
    }

    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        if let Some(transfer) = &self.transfer {
            // Blocks while PIECES_IN_FLIGHT are waiting: the next hop sets the pace. A
            // thread that is gone has its outcome, which data_end reports.
            let _ = transfer.pieces.send(Piece::Data(chunk.to_vec()));
        }
        Ok(())
    }

    fn data_end(&mut self, transaction: &Transaction) -> Decision {
        let Some(transfer) = self.transfer.take() else {
            return self.state.no_transaction();
        };
        let _ = transfer.pieces.send(Piece::End);
        drop(transfer.pieces);
        let outcome = transfer.worker.join().ok().map(|(client, result)| {
            // The dot ended the next hop's transaction: the connection goes back as it is.
            drop(client);
            result
        });
        self.state.data_done(outcome, transaction)
    }

    fn data_aborted(&mut self, _reason: AbortReason) {
        self.end_transaction();
    }

    fn reset(&mut self) {
        self.end_transaction();
    }

    fn close(&mut self) {
        self.end_transaction();
    }
}

impl Drop for RelaySession {
    fn drop(&mut self) {
        self.end_transaction();
    }
}

/// The final answer: the next hop's, per recipient when the front side speaks LMTP.
fn final_decision(result: &TransactionResult, accepted: usize, lmtp_front: bool) -> Decision {
    let data = result.data.clone().unwrap_or_else(next_hop_lost);
    // From an LMTP next hop, one reply per recipient; from SMTP, its one reply for each.
    let per_recipient: Vec<Reply> = (0..accepted)
        .map(|i| {
            result
                .recipients
                .get(i)
                .and_then(|r| r.delivery.clone())
                .unwrap_or_else(|| data.clone())
        })
        .map(|r| if r.is_completion() { r } else { refusal(r) })
        .collect();
    if lmtp_front {
        return Decision::PerRecipient(per_recipient);
    }
    if per_recipient.iter().all(Reply::is_completion) {
        return Decision::Reply(per_recipient.into_iter().next().unwrap_or(data));
    }
    if per_recipient.iter().all(Reply::is_permanent) {
        return Decision::Reply(per_recipient.into_iter().next().unwrap_or(data));
    }
    if per_recipient.iter().all(|r| !r.is_completion()) {
        // Refused for all, temporarily for some: a temporary refusal, which loses nothing.
        if let Some(reply) = per_recipient.into_iter().find(Reply::is_transient) {
            return Decision::Reply(reply);
        }
    }
    Decision::Reply(Reply::new(
        ReplyCode::LOCAL_ERROR,
        Some(EnhancedCode::TEMP_LOCAL_ERROR),
        "Error: the next hop did not accept the message for every recipient",
    ))
}

/// A refusal from the next hop, as given: only never a positive or intermediate code
/// where a refusal is meant (a 354 to RCPT would make the client send content).
fn refusal(reply: Reply) -> Reply {
    if reply.is_transient() || reply.is_permanent() {
        reply
    } else {
        next_hop_lost()
    }
}

/// The next hop cannot be reached.
fn unavailable() -> Reply {
    Reply::new(
        ReplyCode::LOCAL_ERROR,
        Some(EnhancedCode::new(4, 4, 1)),
        "Error: the next hop is unavailable, try again later",
    )
}

/// The next-hop connection was lost, timed out or misbehaved mid-transaction.
fn next_hop_lost() -> Reply {
    Reply::new(
        ReplyCode::LOCAL_ERROR,
        Some(EnhancedCode::TIMEOUT),
        "Error: the next hop did not complete the transaction, try again later",
    )
}

/// This relay could not do its part.
fn local_failure() -> Reply {
    Reply::new(
        ReplyCode::LOCAL_ERROR,
        Some(EnhancedCode::TEMP_LOCAL_ERROR),
        "Error: local error in processing",
    )
}

/// The reply to a next-hop error: its own temporary reply when it said one (a 421 or a
/// 4xx refusal), otherwise 451 4.4.2.
fn failure_reply(error: &Error) -> Reply {
    match error.reply() {
        Some(reply) if reply.code() == ReplyCode::SERVICE_UNAVAILABLE => Reply::new(
            ReplyCode::LOCAL_ERROR,
            Some(EnhancedCode::new(4, 4, 2)),
            "Error: the next hop closed the connection, try again later",
        ),
        Some(reply) if reply.is_transient() || reply.is_permanent() => reply.clone(),
        _ => next_hop_lost(),
    }
}

/// The content of the message being relayed, as the client driver pulls it: pieces from
/// the server's hooks; the channel closing before the end means the message was
/// abandoned, which the driver answers by dropping the connection, so that the next hop
/// never takes a truncated message for a whole one.
struct PieceReader {
    incoming: Receiver<Piece>,
    /// Told when the body is first wanted (the next hop said 354).
    wanted: Option<SyncSender<()>>,
    piece: Vec<u8>,
    offset: usize,
    ended: bool,
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(wanted) = self.wanted.take() {
            let _ = wanted.send(());
        }
        loop {
            if self.offset < self.piece.len() {
                let n = buf.len().min(self.piece.len() - self.offset);
                buf[..n].copy_from_slice(&self.piece[self.offset..self.offset + n]);
                self.offset += n;
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match self.incoming.recv() {
                Ok(Piece::Data(data)) => {
                    self.piece = data;
                    self.offset = 0;
                }
                Ok(Piece::End) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the relayed message was abandoned",
                    ));
                }
            }
        }
    }
}
