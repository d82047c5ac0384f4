//! [`AsyncRelayHandler`]: the relay as an [`AsyncHandler`], for the tokio server
//! ([`AsyncServer::builder_async`](crate::asynchronous::AsyncServer::builder_async)). It
//! takes the same decisions as [`RelayHandler`](super::RelayHandler) (they are
//! [`RelayState`]'s) and only carries commands and content differently: over an
//! [`AsyncSmtpPool`], with the content sent by a task of its own through a bounded
//! channel, so that no hook holds a worker thread while the next hop answers.

use std::io;
use std::net::ToSocketAddrs;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{MailStep, PIECES_IN_FLIGHT, Piece, RelayState};
use crate::address::{ForwardPath, ReversePath};
use crate::asynchronous::pool::{AsyncPooledClient, AsyncSmtpPool};
use crate::client::error::Error;
use crate::client::options::ClientOptions;
use crate::client::pool::PoolConfig;
use crate::client::{Envelope, TransactionResult};
use crate::command::{MailParameters, RcptParameters};
use crate::reply::Reply;
use crate::server::hooks::{AsyncHandler, AsyncSessionHandler, ConnectionInfo, Transaction};
use crate::server::{AbortReason, Decision};

/// Forwards every transaction to a next hop without blocking the runtime: the twin of
/// [`RelayHandler`](super::RelayHandler), with the same guarantees (see the
/// [relay module](super)), as an [`AsyncHandler`] for
/// [`AsyncServer::builder_async`](crate::asynchronous::AsyncServer::builder_async). The
/// content of each message is sent by a task of its own through a bounded channel.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use smtp_core::asynchronous::AsyncServer;
/// use smtp_core::client::pool::PoolConfig;
/// use smtp_core::client::{ClientOptions, TlsMode};
/// use smtp_core::server::relay::AsyncRelayHandler;
/// use smtp_core::server::{ServerConfig, ServerOptions};
///
/// let mut options = ClientOptions::new("relay.example");
/// options.tls = TlsMode::StartTlsRequired;
/// let relay = AsyncRelayHandler::new("mx.internal:25", "mx.internal", options, PoolConfig::new(8))?;
/// let server = AsyncServer::builder_async(relay, ServerOptions::new(ServerConfig::new("relay.example")))
///     .listen("127.0.0.1:2525")?
///     .start()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AsyncRelayHandler {
    pool: AsyncSmtpPool,
}

impl AsyncRelayHandler {
    /// A relay to `next_hop` (resolved now, blocking; `server_name` is the name its
    /// certificate must carry), with connections set up by `options` and pooled as `pool`
    /// says. No connection is opened yet.
    pub fn new(
        next_hop: impl ToSocketAddrs,
        server_name: &str,
        options: ClientOptions,
        pool: PoolConfig,
    ) -> Result<AsyncRelayHandler, Error> {
        Ok(AsyncRelayHandler::with_pool(AsyncSmtpPool::new(
            next_hop,
            server_name,
            options,
            pool,
        )?))
    }

    /// A relay over an existing pool (which other code may share).
    pub fn with_pool(pool: AsyncSmtpPool) -> AsyncRelayHandler {
        AsyncRelayHandler { pool }
    }

    /// The pool of next-hop connections.
    pub fn pool(&self) -> &AsyncSmtpPool {
        &self.pool
    }
}

impl AsyncHandler for AsyncRelayHandler {
    type Session = AsyncRelaySession;
    async fn connect(&self, _info: &ConnectionInfo) -> Result<AsyncRelaySession, Reply> {
        Ok(AsyncRelaySession {
            pool: self.pool.clone(),
            client: None,
            state: RelayState::default(),
            transfer: None,
        })
    }
}

/// The per-connection part of [`AsyncRelayHandler`]: the next-hop connection of the
/// transaction under way.
#[derive(Debug)]
pub struct AsyncRelaySession {
    pool: AsyncSmtpPool,
    /// Held from MAIL until the transaction ends.
    client: Option<AsyncPooledClient>,
    state: RelayState,
    transfer: Option<Transfer>,
}

/// The task sending the current message's content to the next hop.
#[derive(Debug)]
struct Transfer {
    pieces: mpsc::Sender<Piece>,
    worker: JoinHandle<(AsyncPooledClient, Result<TransactionResult, Error>)>,
}

impl AsyncRelaySession {
    /// Ends the next-hop side of the transaction, as the blocking relay's does: the
    /// content task (a message not ended is abandoned, never finished at the next hop),
    /// then the connection, cleared with RSET when it is still open, back to the pool.
    async fn end_transaction(&mut self) {
        let transfer = self.transfer.take();
        let client = self.client.take();
        self.state.clear();
        end_next_hop_side(transfer, client).await;
    }

    /// Starts the content task: DATA, then the pieces as they come.
    async fn start_transfer(&mut self, envelope: Envelope) -> Decision {
        let Some(mut client) = self.client.take() else {
            return self.state.no_transaction();
        };
        let (pieces, incoming) = mpsc::channel(PIECES_IN_FLIGHT);
        let (wanted, body_wanted) = oneshot::channel();
        let worker = tokio::spawn(async move {
            let reader = PieceReader {
                incoming,
                wanted: Some(wanted),
                piece: Vec::new(),
                offset: 0,
                ended: false,
            };
            let result = client.send(&envelope, reader, None).await;
            (client, result)
        });
        // The client asks for the body only once the next hop said 354; if the task ends
        // first, DATA was refused or the connection lost.
        if body_wanted.await.is_ok() {
            self.transfer = Some(Transfer { pieces, worker });
            return Decision::Accept;
        }
        let outcome = worker.await.ok().map(|(client, result)| {
            self.client = Some(client);
            result
        });
        self.state.data_refused(outcome)
    }
}

/// What [`AsyncRelaySession::end_transaction`] does, on what it took out of the session
/// (so that `Drop` can hand it to a task).
async fn end_next_hop_side(transfer: Option<Transfer>, mut client: Option<AsyncPooledClient>) {
    if let Some(transfer) = transfer {
        drop(transfer.pieces);
        if let Ok((returned, _)) = transfer.worker.await {
            client = Some(returned);
        }
    }
    if let Some(mut client) = client
        && !client.is_closed()
        && client.rset().await.is_err()
    {
        log::debug!("smtpx relay: RSET on the next hop failed");
    }
}

impl AsyncSessionHandler for AsyncRelaySession {
    async fn mail(&mut self, from: &ReversePath, params: &MailParameters) -> Decision {
        self.end_transaction().await;
        loop {
            let mut client = match self.pool.get().await {
                Ok(client) => client,
                Err(error) => return self.state.unavailable(&error),
            };
            let result = client.command(|s| s.step_mail(from, params)).await;
            match self.state.mail_replied(from, result) {
                MailStep::Open(decision) => {
                    self.client = Some(client);
                    return decision;
                }
                MailStep::Refused(decision) => {
                    self.client = Some(client);
                    self.end_transaction().await;
                    return decision;
                }
                MailStep::Retry => drop(client),
            }
        }
    }

    async fn rcpt(&mut self, to: &ForwardPath, params: &RcptParameters) -> Decision {
        let result = match self.client.as_mut() {
            Some(client) => client.command(|s| s.step_rcpt(to, params)).await,
            None => return self.state.no_transaction(),
        };
        self.state.rcpt_replied(to, params, result)
    }

    async fn data_start(&mut self, _transaction: &Transaction) -> Decision {
        match self.state.envelope() {
            Ok(envelope) => self.start_transfer(envelope).await,
            Err(decision) => decision,
        }
    }

    async fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        if let Some(transfer) = &self.transfer {
            // Waits while PIECES_IN_FLIGHT are queued: the next hop sets the pace. A task
            // that is gone has its outcome, which data_end reports.
            let _ = transfer.pieces.send(Piece::Data(chunk.to_vec())).await;
        }
        Ok(())
    }

    async fn data_end(&mut self, transaction: &Transaction) -> Decision {
        let Some(transfer) = self.transfer.take() else {
            return self.state.no_transaction();
        };
        let _ = transfer.pieces.send(Piece::End).await;
        drop(transfer.pieces);
        // The dot ended the next hop's transaction: the connection goes back as it is.
        let outcome = transfer.worker.await.ok().map(|(_client, result)| result);
        self.state.data_done(outcome, transaction)
    }

    async fn data_aborted(&mut self, _reason: AbortReason) {
        self.end_transaction().await;
    }

    async fn reset(&mut self) {
        self.end_transaction().await;
    }

    async fn close(&mut self) {
        self.end_transaction().await;
    }
}

impl Drop for AsyncRelaySession {
    /// A session dropped with a transaction open (its connection cut without the close
    /// hook) has it ended by a task, so that no connection goes back to the pool with a
    /// transaction open on it.
    fn drop(&mut self) {
        let transfer = self.transfer.take();
        let client = self.client.take();
        if transfer.is_none() && client.is_none() {
            return;
        }
        // Without a runtime the next-hop connections (tokio sockets) cannot be used again
        // anyway: the runtime they belong to is gone.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(end_next_hop_side(transfer, client));
        }
    }
}

/// The content of the message being relayed, as the client pulls it: pieces from the
/// server's hooks; the channel closing before the end means the message was abandoned,
/// which the client answers by dropping the connection, so that the next hop never takes
/// a truncated message for a whole one.
struct PieceReader {
    incoming: mpsc::Receiver<Piece>,
    /// Told when the body is first wanted (the next hop said 354).
    wanted: Option<oneshot::Sender<()>>,
    piece: Vec<u8>,
    offset: usize,
    ended: bool,
}

impl AsyncRead for PieceReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(wanted) = this.wanted.take() {
            let _ = wanted.send(());
        }
        loop {
            if this.offset < this.piece.len() {
                let n = buf.remaining().min(this.piece.len() - this.offset);
                buf.put_slice(&this.piece[this.offset..this.offset + n]);
                this.offset += n;
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            match this.incoming.poll_recv(cx) {
                Poll::Ready(Some(Piece::Data(data))) => {
                    this.piece = data;
                    this.offset = 0;
                }
                Poll::Ready(Some(Piece::End)) => this.ended = true,
                Poll::Ready(None) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the relayed message was abandoned",
                    )));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
