//! The policy of a client connection pool, written once for every driver and binding: how
//! many connections may be open, which idle connection a sender gets, when it is checked
//! before reuse, and when it is retired. It holds connections of any type `C` and does no
//! I/O: the drivers ([`crate::blocking::pool::SmtpPool`], the tokio `AsyncSmtpPool`, and
//! the C and Python pools built on them) connect, check with NOOP, send, and close, as
//! [`PoolCore`] tells them.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use smtp_core::client::pool::{Checkout, PoolConfig, PoolCore};
//!
//! let mut pool: PoolCore<&str> = PoolCore::new(PoolConfig::new(1));
//! let now = Instant::now();
//! let Checkout::Connect(lease) = pool.checkout(now) else { unreachable!() };
//! assert!(matches!(pool.checkout(now), Checkout::Wait));    // the one slot is taken
//! let retired = pool.checkin(lease.with("connection"), true, 1, now);
//! assert!(retired.is_none());                                   // kept for the next sender
//! assert!(matches!(pool.checkout(now), Checkout::Reuse { .. }));
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a pool behaves. Each setter's doc gives its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The most connections open at once, busy and idle together. At least 1.
    pub max_size: usize,
    /// An idle connection older than this is closed instead of reused. Default 60 s.
    pub idle_timeout: Duration,
    /// A connection is closed (with QUIT) after carrying this many messages; 0 means no
    /// limit. Default 0.
    pub max_messages: u64,
    /// A connection idle for longer than this is checked with NOOP before it is reused;
    /// one that just carried a message successfully is known to work and is reused at
    /// once. `Duration::ZERO` checks before every reuse. Default 1 s.
    pub check_after: Duration,
    /// How long a sender waits for a connection when all `max_size` are busy. Default
    /// 30 s.
    pub checkout_timeout: Duration,
}

impl PoolConfig {
    /// The defaults, with at most `max_size` connections.
    pub fn new(max_size: usize) -> PoolConfig {
        PoolConfig {
            max_size: max_size.max(1),
            idle_timeout: Duration::from_secs(60),
            max_messages: 0,
            check_after: Duration::from_secs(1),
            checkout_timeout: Duration::from_secs(30),
        }
    }

    /// Sets [`idle_timeout`](Self::idle_timeout) (default 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> PoolConfig {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`max_messages`](Self::max_messages) (default 0, no limit).
    pub fn max_messages(mut self, messages: u64) -> PoolConfig {
        self.max_messages = messages;
        self
    }

    /// Sets [`check_after`](Self::check_after) (default 1 s).
    pub fn check_after(mut self, idle: Duration) -> PoolConfig {
        self.check_after = idle;
        self
    }

    /// Sets [`checkout_timeout`](Self::checkout_timeout) (default 30 s).
    pub fn checkout_timeout(mut self, timeout: Duration) -> PoolConfig {
        self.checkout_timeout = timeout;
        self
    }
}

/// A connection lent out of the pool: the connection (none yet after
/// [`Checkout::Connect`]) and how many messages it has carried. Give it back with
/// [`PoolCore::checkin`], or say it is gone with [`PoolCore::discard`].
#[derive(Debug)]
#[must_use = "a lease holds one of the pool's slots until it is checked in or discarded"]
pub struct Lease<C> {
    conn: Option<C>,
    messages: u64,
}

impl<C> Lease<C> {
    /// The lease with this freshly opened connection in it.
    pub fn with(self, conn: C) -> Lease<C> {
        Lease {
            conn: Some(conn),
            messages: self.messages,
        }
    }

    /// The connection, when there is one.
    pub fn conn(&mut self) -> Option<&mut C> {
        self.conn.as_mut()
    }

    /// The connection, when there is one.
    pub fn conn_ref(&self) -> Option<&C> {
        self.conn.as_ref()
    }

    /// Takes the connection out (the lease keeps its slot until checked in or discarded).
    pub fn take(&mut self) -> Option<C> {
        self.conn.take()
    }

    /// Messages carried by this connection so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }
}

/// What a sender does to get a connection.
#[derive(Debug)]
pub enum Checkout<C> {
    /// Use this idle connection; when `check` is true, send NOOP first and, if that
    /// fails, [`discard`](PoolCore::discard) it and check out again.
    Reuse {
        /// The connection.
        lease: Lease<C>,
        /// Check it with NOOP before use.
        check: bool,
    },
    /// A slot is free: open a new connection and put it in the lease with
    /// [`Lease::with`] (or [`discard`](PoolCore::discard) the lease if connecting fails).
    Connect(Lease<C>),
    /// Every slot is busy: wait until a connection is checked in or discarded, then ask
    /// again.
    Wait,
}

struct Idle<C> {
    conn: C,
    messages: u64,
    since: Instant,
}

/// The pool's state: idle connections and the count of open ones. Not thread-safe by
/// itself: a driver keeps it under its lock, and calls it only for short decisions.
pub struct PoolCore<C> {
    config: PoolConfig,
    /// Most recently used last: reuse takes from the back (a warm connection), expiry
    /// looks at the front.
    idle: VecDeque<Idle<C>>,
    /// Connections open or being opened, lent out or idle.
    open: usize,
    closed: bool,
}

impl<C> std::fmt::Debug for PoolCore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCore")
            .field("config", &self.config)
            .field("idle", &self.idle.len())
            .field("open", &self.open)
            .finish()
    }
}

impl<C> PoolCore<C> {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> PoolCore<C> {
        PoolCore {
            config,
            idle: VecDeque::new(),
            open: 0,
            closed: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Connections open now (idle and lent out).
    pub fn open(&self) -> usize {
        self.open
    }

    /// Idle connections now.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// A connection for a sender. Idle connections past `idle_timeout` are not offered:
    /// take them with [`expired`](Self::expired) and close them.
    pub fn checkout(&mut self, now: Instant) -> Checkout<C> {
        // The most recently used; when it is too old, so is everything in front of it,
        // which expired() takes out.
        let fresh = self.idle.back().is_some_and(|idle| {
            now.saturating_duration_since(idle.since) < self.config.idle_timeout
        });
        if let Some(idle) = fresh.then(|| self.idle.pop_back()).flatten() {
            let check = now.saturating_duration_since(idle.since) >= self.config.check_after;
            return Checkout::Reuse {
                lease: Lease {
                    conn: Some(idle.conn),
                    messages: idle.messages,
                },
                check,
            };
        }
        if !self.closed && self.open < self.config.max_size {
            self.open += 1;
            return Checkout::Connect(Lease {
                conn: None,
                messages: 0,
            });
        }
        Checkout::Wait
    }

    /// Gives a lease back after use: `healthy` says the connection can carry more mail
    /// (not closed, no error that ended it), `sent` how many messages it carried this
    /// time. Returns the connection when it must be closed now (unhealthy connections
    /// are simply dropped by the caller, retired ones get QUIT).
    pub fn checkin(
        &mut self,
        mut lease: Lease<C>,
        healthy: bool,
        sent: u64,
        now: Instant,
    ) -> Option<C> {
        let messages = lease.messages + sent;
        let Some(conn) = lease.conn.take() else {
            self.open = self.open.saturating_sub(1);
            return None;
        };
        let retire = !healthy
            || self.closed
            || (self.config.max_messages > 0 && messages >= self.config.max_messages);
        if retire {
            self.open = self.open.saturating_sub(1);
            return Some(conn);
        }
        self.idle.push_back(Idle {
            conn,
            messages,
            since: now,
        });
        None
    }

    /// A lease whose connection failed to open, failed its check, or was lost: its slot
    /// is free again. Returns the connection, if the lease still held one, for closing.
    pub fn discard(&mut self, mut lease: Lease<C>) -> Option<C> {
        self.open = self.open.saturating_sub(1);
        lease.conn.take()
    }

    /// Takes out the idle connections past `idle_timeout`, for the caller to close; their
    /// slots are free again.
    pub fn expired(&mut self, now: Instant) -> Vec<C> {
        let mut out = Vec::new();
        while let Some(front) = self.idle.front() {
            if now.saturating_duration_since(front.since) < self.config.idle_timeout {
                break;
            }
            if let Some(idle) = self.idle.pop_front() {
                self.open = self.open.saturating_sub(1);
                out.push(idle.conn);
            }
        }
        out
    }

    /// Closes the pool: no new connections are opened, connections checked in from now on
    /// are retired, and the idle ones are returned for closing.
    pub fn close(&mut self) -> Vec<C> {
        self.closed = true;
        let out: Vec<C> = self.idle.drain(..).map(|i| i.conn).collect();
        self.open = self.open.saturating_sub(out.len());
        out
    }

    /// The earliest time an idle connection expires, for a driver that reaps in the
    /// background.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.idle
            .front()
            .map(|i| i.since + self.config.idle_timeout)
    }
}

/// A driver's pooled connection type, written once: `$name` lends a `$client` (through
/// `Deref`) and gives it back to the pool with `give_back` (the driver's `Drop` closes
/// what the pool retired). `[async]`/`[.await]` or `[]`/`[]`, then the bound of a
/// streamed message. The driver's pool state is `Shared`, with `core()` and `available`.
macro_rules! pooled_client {
    ($(#[$doc:meta])* $name:ident($client:ty) [$($async:tt)*] [$($await:tt)*] [$($read:tt)+]) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            pool: std::sync::Arc<Shared>,
            lease: Option<$crate::client::pool::Lease<$client>>,
            sent: u64,
        }

        impl $name {
            /// The connection's `send`, counted against the pool's `max_messages`.
            pub $($async)* fn send(
                &mut self,
                envelope: &$crate::client::Envelope,
                message: impl $($read)+,
                size: Option<u64>,
            ) -> Result<$crate::client::TransactionResult, $crate::client::error::Error> {
                self.sent += 1;
                self.client_mut().send(envelope, message, size) $($await)*
            }

            /// The connection's `send_bytes`, counted against the pool's `max_messages`.
            pub $($async)* fn send_bytes(
                &mut self,
                envelope: &$crate::client::Envelope,
                message: &[u8],
            ) -> Result<$crate::client::TransactionResult, $crate::client::error::Error> {
                self.sent += 1;
                self.client_mut().send_bytes(envelope, message) $($await)*
            }

            /// The connection's `send_batch`, each message counted against the pool's
            /// `max_messages`.
            pub $($async)* fn send_batch<M: $crate::client::BatchMessage>(
                &mut self,
                messages: impl IntoIterator<Item = M>,
            ) -> Vec<Result<$crate::client::TransactionResult, $crate::client::error::Error>> {
                let mut outcomes = Vec::new();
                self.send_batch_with(messages, |_, outcome| outcomes.push(outcome)) $($await)*;
                outcomes
            }

            /// The connection's `send_batch_with` (each outcome as soon as it is known),
            /// each message counted against the pool's `max_messages`.
            pub $($async)* fn send_batch_with<M: $crate::client::BatchMessage>(
                &mut self,
                messages: impl IntoIterator<Item = M>,
                on_result: impl FnMut(
                    usize,
                    Result<$crate::client::TransactionResult, $crate::client::error::Error>,
                ),
            ) -> usize {
                let given = self.client_mut().send_batch_with(messages, on_result) $($await)*;
                self.sent += given as u64;
                given
            }

            fn client_mut(&mut self) -> &mut $client {
                match self.lease.as_mut().and_then($crate::client::pool::Lease::conn) {
                    Some(client) => client,
                    // A lent connection is held until it is dropped or detached.
                    None => unreachable!("a pooled client without its connection"),
                }
            }

            /// Gives the connection back to the pool (once); returns the connection the
            /// pool retired on the way, when it is still good for a QUIT.
            fn give_back(&mut self) -> Option<$client> {
                let mut lease = self.lease.take()?;
                let healthy = lease.conn().is_some_and(|c| !c.is_closed());
                let retired =
                    self.pool.core().checkin(lease, healthy, self.sent, std::time::Instant::now());
                self.pool.available.notify_one();
                retired.filter(|_| healthy)
            }
        }

        impl std::ops::Deref for $name {
            type Target = $client;
            fn deref(&self) -> &$client {
                match self.lease.as_ref().and_then(|l| l.conn_ref()) {
                    Some(client) => client,
                    None => unreachable!("a pooled client without its connection"),
                }
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $client {
                self.client_mut()
            }
        }
    };
}
pub(crate) use pooled_client;

/// A driver's pool type, written once around the driver's own `get` (its waits differ):
/// the shared state (`Shared`: the resolved addresses, the options, the [`PoolCore`]
/// behind a lock, and `available`, the driver's wake-up), `new`, `send`, `send_bytes`,
/// `reap`, `close`, `status`. The driver provides `close_all(clients)`, `resolve(addr)`
/// and its `wake_all` for `available`. Arguments: the pool, its pooled connection and
/// client types, the wake-up type, `[async]`/`[.await]` or `[]`/`[]`, and the bound of
/// a streamed message.
macro_rules! pool_api {
    (
        $(#[$doc:meta])* $pool:ident, $pooled:ident($client:ty), $wake:ty, $wake_all:ident,
        [$($async:tt)*] [$($await:tt)*] [$($read:tt)+]
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $pool {
            shared: std::sync::Arc<Shared>,
        }

        #[derive(Debug)]
        struct Shared {
            addrs: Vec<std::net::SocketAddr>,
            server_name: String,
            options: $crate::client::options::ClientOptions,
            core: std::sync::Mutex<$crate::client::pool::PoolCore<$client>>,
            /// Woken when a slot or an idle connection becomes available.
            available: $wake,
        }

        impl Shared {
            fn core(&self) -> std::sync::MutexGuard<'_, $crate::client::pool::PoolCore<$client>> {
                // Held only for the core's short decisions (never across a wait or an
                // await); its state stays consistent whatever panicked while holding it.
                self.core.lock().unwrap_or_else(|e| e.into_inner())
            }
        }

        impl $pool {
            /// A pool of at most `config.max_size` connections to `addr` (resolved now),
            /// each set up with `options` as the client's `connect` does. No connection is
            /// opened yet.
            pub fn new(
                addr: impl std::net::ToSocketAddrs,
                server_name: &str,
                options: $crate::client::options::ClientOptions,
                config: $crate::client::pool::PoolConfig,
            ) -> Result<$pool, $crate::client::error::Error> {
                Ok($pool {
                    shared: std::sync::Arc::new(Shared {
                        addrs: resolve(addr)?,
                        server_name: server_name.to_owned(),
                        options,
                        core: std::sync::Mutex::new($crate::client::pool::PoolCore::new(config)),
                        available: <$wake>::new(),
                    }),
                })
            }

            /// Sends one message over a pooled connection and returns its per-recipient
            /// result; see the client's `send`.
            pub $($async)* fn send(
                &self,
                envelope: &$crate::client::Envelope,
                message: impl $($read)+,
                size: Option<u64>,
            ) -> Result<$crate::client::TransactionResult, $crate::client::error::Error> {
                self.get() $($await)* ?.send(envelope, message, size) $($await)*
            }

            /// Sends one message held in memory; see the client's `send_bytes`.
            pub $($async)* fn send_bytes(
                &self,
                envelope: &$crate::client::Envelope,
                message: &[u8],
            ) -> Result<$crate::client::TransactionResult, $crate::client::error::Error> {
                self.get() $($await)* ?.send_bytes(envelope, message) $($await)*
            }

            /// Closes the connections that have been idle too long (with QUIT). Senders do
            /// this as they go; call it to reap a pool that sits unused.
            pub $($async)* fn reap(&self) {
                let expired = self.shared.core().expired(std::time::Instant::now());
                close_all(expired) $($await)*;
            }

            /// Closes the pool: idle connections now (with QUIT), the others when they are
            /// given back; no new connection is opened.
            pub $($async)* fn close(&self) {
                let idle = self.shared.core().close();
                close_all(idle) $($await)*;
                self.shared.available.$wake_all();
            }

            /// Connections open now, and how many of them are idle.
            pub fn status(&self) -> (usize, usize) {
                let core = self.shared.core();
                (core.open(), core.idle())
            }

            /// What the pool says to do next, and the idle connections it retired on the
            /// way (to be closed).
            fn next_checkout(&self) -> ($crate::client::pool::Checkout<$client>, Vec<$client>) {
                let now = std::time::Instant::now();
                let mut core = self.shared.core();
                let expired = core.expired(now);
                (core.checkout(now), expired)
            }

            /// An idle connection lent when it passed its check, else dropped (its slot
            /// is free).
            fn lend_if_usable(
                &self,
                lease: $crate::client::pool::Lease<$client>,
                usable: bool,
            ) -> Option<$pooled> {
                if usable {
                    return Some(self.lent(lease));
                }
                self.discard(lease);
                None
            }

            /// Where and how a new connection is made: the addresses, the name its
            /// certificate must carry and the options.
            fn connect_args(
                &self,
            ) -> (&[std::net::SocketAddr], &str, $crate::client::options::ClientOptions) {
                let shared = &self.shared;
                (&shared.addrs[..], &shared.server_name, shared.options.clone())
            }

            /// A new connection lent, or its failure (the slot freed for another try).
            fn lend_or_discard(
                &self,
                lease: $crate::client::pool::Lease<$client>,
                connected: Result<$client, $crate::client::error::Error>,
            ) -> Result<$pooled, $crate::client::error::Error> {
                match connected {
                    Ok(client) => Ok(self.lent(lease.with(client))),
                    Err(error) => {
                        self.discard(lease);
                        Err(error)
                    }
                }
            }

            /// Drops a connection that failed its check or its connect; its slot is free.
            fn discard(&self, lease: $crate::client::pool::Lease<$client>) {
                self.shared.core().discard(lease);
                self.shared.available.notify_one();
            }

            fn lent(&self, lease: $crate::client::pool::Lease<$client>) -> $pooled {
                $pooled {
                    pool: std::sync::Arc::clone(&self.shared),
                    lease: Some(lease),
                    sent: 0,
                }
            }
        }
    };
}
pub(crate) use pool_api;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reused_checked_and_retired() {
        let config = PoolConfig::new(2)
            .max_messages(3)
            .check_after(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(60));
        let mut pool: PoolCore<u32> = PoolCore::new(config);
        let t0 = Instant::now();
        let Checkout::Connect(a) = pool.checkout(t0) else {
            panic!()
        };
        let Checkout::Connect(b) = pool.checkout(t0) else {
            panic!()
        };
        assert!(matches!(pool.checkout(t0), Checkout::Wait));
        assert!(pool.checkin(a.with(1), true, 1, t0).is_none());
        assert!(pool.checkin(b.with(2), true, 1, t0).is_none());
        // The most recently used first, unchecked while fresh.
        let Checkout::Reuse { lease, check } = pool.checkout(t0) else {
            panic!()
        };
        assert!(!check);
        assert_eq!(lease.messages(), 1);
        // Two more messages reach max_messages: retired.
        assert_eq!(pool.checkin(lease, true, 2, t0), Some(2));
        assert_eq!(pool.open(), 1);
        // Idle past check_after: checked.
        let t1 = t0 + Duration::from_secs(6);
        let Checkout::Reuse { lease, check } = pool.checkout(t1) else {
            panic!()
        };
        assert!(check);
        assert_eq!(pool.discard(lease), Some(1));
        assert_eq!(pool.open(), 0);
    }

    #[test]
    fn idle_too_long_expires_and_unhealthy_is_dropped() {
        let mut pool: PoolCore<u32> =
            PoolCore::new(PoolConfig::new(1).idle_timeout(Duration::from_secs(10)));
        let t0 = Instant::now();
        let Checkout::Connect(a) = pool.checkout(t0) else {
            panic!()
        };
        assert!(pool.checkin(a.with(7), true, 1, t0).is_none());
        let late = t0 + Duration::from_secs(11);
        assert_eq!(pool.next_expiry(), Some(t0 + Duration::from_secs(10)));
        // Not offered once expired; the slot is still counted until expired() takes it.
        assert!(matches!(pool.checkout(late), Checkout::Wait));
        assert_eq!(pool.expired(late), vec![7]);
        let Checkout::Connect(b) = pool.checkout(late) else {
            panic!()
        };
        assert_eq!(pool.checkin(b.with(8), false, 1, late), Some(8));
        assert_eq!(pool.open(), 0);
        assert!(pool.close().is_empty());
        assert!(matches!(pool.checkout(late), Checkout::Wait));
    }
}
