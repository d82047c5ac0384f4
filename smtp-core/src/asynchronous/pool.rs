//! A pool of [`AsyncSmtpClient`] connections to one server, shared between tasks: the
//! policy is [`crate::client::pool::PoolCore`]'s (the same as the blocking
//! [`SmtpPool`](crate::blocking::pool::SmtpPool)'s); this only connects, checks, sends and
//! closes as it says.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use smtp_core::asynchronous::pool::AsyncSmtpPool;
//! use smtp_core::blocking::client::ClientOptions;
//! use smtp_core::client::pool::PoolConfig;
//! use smtp_core::client::Envelope;
//!
//! let pool = AsyncSmtpPool::new("mx.example.com:25", "mx.example.com",
//!                               ClientOptions::new("client.example"), PoolConfig::new(8))?;
//! let envelope = Envelope::new("alice@example.com", &["bob@example.org"])?;
//! let result = pool.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello.\r\n").await?;
//! pool.close().await;
//! # Ok(()) }
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::io::AsyncRead;
use tokio::sync::Notify;

use crate::blocking::pool::resolve;
use crate::client::pool::{Checkout, Lease, PoolConfig, PoolCore};
use crate::client::{Envelope, TransactionResult};

use super::client::{AsyncSmtpClient, ClientOptions, Error, ErrorKind};

/// A bounded pool of [`AsyncSmtpClient`] connections to one server; cheap to clone, and
/// every clone is the same pool. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AsyncSmtpPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addrs: Vec<SocketAddr>,
    server_name: String,
    options: ClientOptions,
    core: Mutex<PoolCore<AsyncSmtpClient>>,
    /// Notified when a slot or an idle connection becomes available (a notification with
    /// no waiter is kept for the next one, so none is lost).
    available: Notify,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, PoolCore<AsyncSmtpClient>> {
        // Held only for the core's short decisions, never across an await.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AsyncSmtpPool {
    /// A pool of at most `config.max_size` connections to `addr` (resolved now, blocking),
    /// each set up with `options` as [`AsyncSmtpClient::connect`] does. No connection is
    /// opened yet.
    pub fn new(
        addr: impl ToSocketAddrs,
        server_name: &str,
        options: ClientOptions,
        config: PoolConfig,
    ) -> Result<AsyncSmtpPool, Error> {
        Ok(AsyncSmtpPool {
            shared: Arc::new(Shared {
                addrs: resolve(addr)?,
                server_name: server_name.to_owned(),
                options,
                core: Mutex::new(PoolCore::new(config)),
                available: Notify::new(),
            }),
        })
    }

    /// A connection for this task: as [`SmtpPool::get`](crate::blocking::pool::SmtpPool::get).
    pub async fn get(&self) -> Result<AsyncPooledClient, Error> {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + shared.core().config().checkout_timeout;
        loop {
            let now = Instant::now();
            let (checkout, expired) = {
                let mut core = shared.core();
                let expired = core.expired(now);
                (core.checkout(now), expired)
            };
            close_all(expired).await;
            match checkout {
                Checkout::Reuse { mut lease, check } => {
                    let usable = match (check, lease.conn()) {
                        (false, Some(_)) => true,
                        (true, Some(client)) => {
                            client.noop().await.is_ok_and(|r| r.is_completion())
                        }
                        (_, None) => false,
                    };
                    if usable {
                        return Ok(self.lent(lease));
                    }
                    shared.core().discard(lease);
                    shared.available.notify_one();
                }
                Checkout::Connect(lease) => {
                    let options = shared.options.clone();
                    match AsyncSmtpClient::connect(&shared.addrs[..], &shared.server_name, options)
                        .await
                    {
                        Ok(client) => return Ok(self.lent(lease.with(client))),
                        Err(error) => {
                            shared.core().discard(lease);
                            shared.available.notify_one();
                            return Err(error);
                        }
                    }
                }
                Checkout::Wait => {
                    if tokio::time::timeout_at(deadline, shared.available.notified())
                        .await
                        .is_err()
                    {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            "no pooled connection became free in time",
                        ));
                    }
                }
            }
        }
    }

    /// Sends one message over a pooled connection and returns its per-recipient result;
    /// see [`AsyncSmtpClient::send`].
    pub async fn send(
        &self,
        envelope: &Envelope,
        message: impl AsyncRead + Unpin,
        size: Option<u64>,
    ) -> Result<TransactionResult, Error> {
        self.get().await?.send(envelope, message, size).await
    }

    /// Sends one message held in memory; see [`AsyncSmtpClient::send_bytes`].
    pub async fn send_bytes(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionResult, Error> {
        self.get().await?.send_bytes(envelope, message).await
    }

    /// Closes the connections that have been idle too long (with QUIT).
    pub async fn reap(&self) {
        let expired = self.shared.core().expired(Instant::now());
        close_all(expired).await;
    }

    /// Closes the pool: idle connections now (with QUIT), the others when they are given
    /// back; no new connection is opened.
    pub async fn close(&self) {
        let idle = self.shared.core().close();
        close_all(idle).await;
        self.shared.available.notify_waiters();
    }

    /// Connections open now, and how many of them are idle.
    pub fn status(&self) -> (usize, usize) {
        let core = self.shared.core();
        (core.open(), core.idle())
    }

    fn lent(&self, lease: Lease<AsyncSmtpClient>) -> AsyncPooledClient {
        AsyncPooledClient {
            pool: Arc::clone(&self.shared),
            lease: Some(lease),
            sent: 0,
        }
    }
}

async fn close_all(clients: Vec<AsyncSmtpClient>) {
    for client in clients {
        // Best effort: the server may have gone already.
        let _ = client.quit().await;
    }
}

/// A connection lent by an [`AsyncSmtpPool`]: an [`AsyncSmtpClient`] (through `Deref`)
/// that goes back to the pool when dropped, unless it is closed. A connection retired on
/// its way back (after `max_messages`, or from a closed pool) gets its QUIT from a task
/// of its own.
#[derive(Debug)]
pub struct AsyncPooledClient {
    pool: Arc<Shared>,
    lease: Option<Lease<AsyncSmtpClient>>,
    sent: u64,
}

impl AsyncPooledClient {
    /// [`AsyncSmtpClient::send`], counted against the pool's `max_messages`.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: impl AsyncRead + Unpin,
        size: Option<u64>,
    ) -> Result<TransactionResult, Error> {
        self.sent += 1;
        self.client_mut().send(envelope, message, size).await
    }

    /// [`AsyncSmtpClient::send_bytes`], counted against the pool's `max_messages`.
    pub async fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionResult, Error> {
        self.sent += 1;
        self.client_mut().send_bytes(envelope, message).await
    }

    fn client_mut(&mut self) -> &mut AsyncSmtpClient {
        match self.lease.as_mut().and_then(Lease::conn) {
            Some(client) => client,
            None => unreachable!("a pooled client without its connection"),
        }
    }
}

impl Deref for AsyncPooledClient {
    type Target = AsyncSmtpClient;
    fn deref(&self) -> &AsyncSmtpClient {
        match self.lease.as_ref().and_then(|l| l.conn_ref()) {
            Some(client) => client,
            None => unreachable!("a pooled client without its connection"),
        }
    }
}

impl DerefMut for AsyncPooledClient {
    fn deref_mut(&mut self) -> &mut AsyncSmtpClient {
        self.client_mut()
    }
}

impl Drop for AsyncPooledClient {
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let healthy = lease.conn().is_some_and(|c| !c.is_closed());
        let retired = self
            .pool
            .core()
            .checkin(lease, healthy, self.sent, Instant::now());
        self.pool.available.notify_one();
        if let (Some(client), true) = (retired, healthy)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}
