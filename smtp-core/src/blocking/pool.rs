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
//! let envelope = Envelope::new("alice@example.com", &["bob@example.org"])?;
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
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::client::pool::{Checkout, Lease, PoolConfig, PoolCore};
use crate::client::{Envelope, TransactionResult};

use super::client::{ClientOptions, Error, ErrorKind, SmtpClient};

/// A bounded pool of [`SmtpClient`] connections to one server; cheap to clone, and every
/// clone is the same pool. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SmtpPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addrs: Vec<SocketAddr>,
    server_name: String,
    options: ClientOptions,
    core: Mutex<PoolCore<SmtpClient>>,
    /// Signalled when a slot or an idle connection becomes available.
    available: Condvar,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, PoolCore<SmtpClient>> {
        // The core's state stays consistent whatever panicked while holding the lock.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SmtpPool {
    /// A pool of at most `config.max_size` connections to `addr` (resolved now), each set
    /// up with `options` as [`SmtpClient::connect`] does. No connection is opened yet.
    pub fn new(
        addr: impl ToSocketAddrs,
        server_name: &str,
        options: ClientOptions,
        config: PoolConfig,
    ) -> Result<SmtpPool, Error> {
        let addrs = resolve(addr)?;
        Ok(SmtpPool {
            shared: Arc::new(Shared {
                addrs,
                server_name: server_name.to_owned(),
                options,
                core: Mutex::new(PoolCore::new(config)),
                available: Condvar::new(),
            }),
        })
    }

    /// A connection for this thread's use: an idle one (checked with NOOP first when it
    /// has been idle for longer than `check_after`), a new one when a slot is free, or
    /// the first one given back within `checkout_timeout`. It goes back to the pool when
    /// dropped.
    pub fn get(&self) -> Result<PooledClient, Error> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.core().config().checkout_timeout;
        loop {
            let now = Instant::now();
            let (checkout, expired) = {
                let mut core = shared.core();
                let expired = core.expired(now);
                (core.checkout(now), expired)
            };
            close_all(expired);
            match checkout {
                Checkout::Reuse { mut lease, check } => {
                    let usable = !check
                        || lease
                            .conn()
                            .is_some_and(|c| c.noop().is_ok_and(|r| r.is_completion()));
                    if usable {
                        return Ok(self.lent(lease));
                    }
                    shared.core().discard(lease);
                    shared.available.notify_one();
                }
                Checkout::Connect(lease) => {
                    let options = shared.options.clone();
                    match SmtpClient::connect(&shared.addrs[..], &shared.server_name, options) {
                        Ok(client) => return Ok(self.lent(lease.with(client))),
                        Err(error) => {
                            shared.core().discard(lease);
                            shared.available.notify_one();
                            return Err(error);
                        }
                    }
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

    /// Sends one message over a pooled connection and returns its per-recipient result;
    /// see [`SmtpClient::send`].
    pub fn send(
        &self,
        envelope: &Envelope,
        message: impl Read,
        size: Option<u64>,
    ) -> Result<TransactionResult, Error> {
        self.get()?.send(envelope, message, size)
    }

    /// Sends one message held in memory; see [`SmtpClient::send_bytes`].
    pub fn send_bytes(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionResult, Error> {
        self.get()?.send_bytes(envelope, message)
    }

    /// Closes the idle connections that have been idle too long (with QUIT). Senders do
    /// this as they go; call it to reap a pool that sits unused.
    pub fn reap(&self) {
        let expired = self.shared.core().expired(Instant::now());
        close_all(expired);
    }

    /// Closes the pool: idle connections now (with QUIT), the others when they are given
    /// back; no new connection is opened.
    pub fn close(&self) {
        let idle = self.shared.core().close();
        close_all(idle);
        self.shared.available.notify_all();
    }

    /// Connections open now, and how many of them are idle.
    pub fn status(&self) -> (usize, usize) {
        let core = self.shared.core();
        (core.open(), core.idle())
    }

    fn lent(&self, lease: Lease<SmtpClient>) -> PooledClient {
        PooledClient {
            pool: Arc::clone(&self.shared),
            lease: Some(lease),
            sent: 0,
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

/// A connection lent by an [`SmtpPool`]: an [`SmtpClient`] (through `Deref`) that goes
/// back to the pool when dropped, unless it is closed.
#[derive(Debug)]
pub struct PooledClient {
    pool: Arc<Shared>,
    lease: Option<Lease<SmtpClient>>,
    sent: u64,
}

impl PooledClient {
    /// [`SmtpClient::send`], counted against the pool's `max_messages`.
    pub fn send(
        &mut self,
        envelope: &Envelope,
        message: impl Read,
        size: Option<u64>,
    ) -> Result<TransactionResult, Error> {
        self.sent += 1;
        self.client_mut().send(envelope, message, size)
    }

    /// [`SmtpClient::send_bytes`], counted against the pool's `max_messages`.
    pub fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionResult, Error> {
        self.sent += 1;
        self.client_mut().send_bytes(envelope, message)
    }

    /// Takes the connection out of the pool for good (its slot is freed).
    pub fn detach(mut self) -> Option<SmtpClient> {
        let lease = self.lease.take()?;
        let client = self.pool.core().discard(lease);
        self.pool.available.notify_one();
        client
    }

    fn client_mut(&mut self) -> &mut SmtpClient {
        match self.lease.as_mut().and_then(Lease::conn) {
            Some(client) => client,
            // A lent PooledClient always holds its connection until dropped or detached.
            None => unreachable!("a pooled client without its connection"),
        }
    }
}

impl Deref for PooledClient {
    type Target = SmtpClient;
    fn deref(&self) -> &SmtpClient {
        match self.lease.as_ref().and_then(|l| l.conn_ref()) {
            Some(client) => client,
            None => unreachable!("a pooled client without its connection"),
        }
    }
}

impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut SmtpClient {
        self.client_mut()
    }
}

impl Drop for PooledClient {
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
        if let (Some(client), true) = (retired, healthy) {
            let _ = client.quit();
        }
    }
}
