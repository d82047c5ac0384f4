//! A pool of blocking client connections to one server, shared between threads: the
//! policy is [`crate::client::pool::PoolCore`]'s; this only connects, checks, sends and
//! closes as it says.
//!
//! ```no_run
//! use smtp_core::blocking::client::ClientOptions;
//! use smtp_core::blocking::pool::SmtpPool;
//! use smtp_core::client::pool::PoolConfig;
//! use smtp_core::client::Envelope;
//!
//! let pool = SmtpPool::new("mx.example.com:25", "mx.example.com",
//!                          ClientOptions::new("client.example"), PoolConfig::new(8))?;
//! let envelope = Envelope::new("alice@example.com", ["bob@example.org"])?;
//! std::thread::scope(|s| {
//!     for _ in 0..8 {
//!         s.spawn(|| pool.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello.\r\n"));
//!     }
//! });
//! pool.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Condvar;
use std::time::Instant;

use crate::client::pool::{Checkout, pool_api, pooled_client};

use super::client::{Error, ErrorKind, SmtpClient};

pool_api! {
    /// A bounded pool of [`SmtpClient`] connections to one server; cheap to clone, and
    /// every clone is the same pool. See the [module docs](self).
    SmtpPool, PooledClient(SmtpClient), Condvar, notify_all, [] [] [Read]
}

impl SmtpPool {
    /// A connection for this thread's use: an idle one (checked with NOOP first when it
    /// has been idle for longer than `check_after`), a new one when a slot is free, or
    /// the first one given back within `checkout_timeout`. It goes back to the pool when
    /// dropped.
    pub fn get(&self) -> Result<PooledClient, Error> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.core().config().checkout_timeout;
        loop {
            let (checkout, expired) = self.next_checkout();
            close_all(expired);
            match checkout {
                Checkout::Reuse { mut lease, check } => {
                    let usable = !check
                        || lease
                            .conn()
                            .is_some_and(|c| c.noop().is_ok_and(|r| r.is_completion()));
                    if let Some(client) = self.lend_if_usable(lease, usable) {
                        return Ok(client);
                    }
                }
                Checkout::Connect(lease) => {
                    let (addrs, server_name, options) = self.connect_args();
                    let connected = SmtpClient::connect(addrs, server_name, options);
                    return self.lend_or_discard(lease, connected);
                }
                Checkout::Wait => {
                    let core = shared.core();
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            "no pooled connection became free in time",
                        ));
                    }
                    // Woken by a check-in; a spurious wake-up just asks again.
                    drop(shared.available.wait_timeout(core, left));
                }
            }
        }
    }
}

/// The addresses of a pool's server, resolved once when the pool is made.
pub(crate) fn resolve(addr: impl ToSocketAddrs) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::io("cannot resolve the server's address", e))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "the server's address resolved to nothing",
        ));
    }
    Ok(addrs)
}

fn close_all(clients: Vec<SmtpClient>) {
    for client in clients {
        // Best effort: the server may have gone already.
        let _ = client.quit();
    }
}

pooled_client! {
    /// A connection lent by an [`SmtpPool`]: an [`SmtpClient`] (through `Deref`) that goes
    /// back to the pool when dropped, unless it is closed.
    PooledClient(SmtpClient) [] [] [Read]
}

impl PooledClient {
    /// Takes the connection out of the pool for good (its slot is freed).
    pub fn detach(mut self) -> Option<SmtpClient> {
        let lease = self.lease.take()?;
        let client = self.pool.core().discard(lease);
        self.pool.available.notify_one();
        client
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.give_back() {
            let _ = client.quit();
        }
    }
}
