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
//! let envelope = Envelope::new("alice@example.com", ["bob@example.org"])?;
//! let result = pool.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello.\r\n").await?;
//! pool.close().await;
//! # Ok(()) }
//! ```

use tokio::io::AsyncRead;
use tokio::sync::Notify;

use crate::blocking::pool::resolve;
use crate::client::pool::{Checkout, pool_api, pooled_client};

use super::client::{AsyncSmtpClient, Error, ErrorKind};

pool_api! {
    /// A bounded pool of [`AsyncSmtpClient`] connections to one server; cheap to clone,
    /// and every clone is the same pool. See the [module docs](self). (The server's
    /// address is resolved when the pool is made, blocking.)
    AsyncSmtpPool, AsyncPooledClient(AsyncSmtpClient), Notify, notify_waiters,
    [async] [.await] [AsyncRead + Unpin]
}

impl AsyncSmtpPool {
    /// A connection for this task: as [`SmtpPool::get`](crate::blocking::pool::SmtpPool::get).
    pub async fn get(&self) -> Result<AsyncPooledClient, Error> {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + shared.core().config().checkout_timeout;
        loop {
            let (checkout, expired) = self.next_checkout();
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
                    if let Some(client) = self.lend_if_usable(lease, usable) {
                        return Ok(client);
                    }
                }
                Checkout::Connect(lease) => {
                    let (addrs, server_name, options) = self.connect_args();
                    let connected = AsyncSmtpClient::connect(addrs, server_name, options).await;
                    return self.lend_or_discard(lease, connected);
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
}

async fn close_all(clients: Vec<AsyncSmtpClient>) {
    for client in clients {
        // Best effort: the server may have gone already.
        let _ = client.quit().await;
    }
}

pooled_client! {
    /// A connection lent by an [`AsyncSmtpPool`]: an [`AsyncSmtpClient`] (through `Deref`)
    /// that goes back to the pool when dropped, unless it is closed. A connection retired
    /// on its way back (after `max_messages`, or from a closed pool) gets its QUIT from a
    /// task of its own.
    AsyncPooledClient(AsyncSmtpClient) [async] [.await] [AsyncRead + Unpin]
}

impl Drop for AsyncPooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.give_back()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}
