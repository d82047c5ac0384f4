//! A blocking SMTP (and LMTP) client: the [`ClientSession`](crate::client::ClientSession) engine on a `std::net`
//! socket, with STARTTLS and implicit TLS through rustls.
//!
//! This driver owns no protocol logic. It moves bytes between the socket and the session,
//! keeps time, and does the TLS handshakes; every decision (what to send, when to upgrade,
//! which AUTH mechanism, pipelining, BDAT, what a reply means) is the session's.
//!
//! ```no_run
//! use smtp_core::blocking::client::{ClientOptions, SmtpClient, TlsMode};
//! use smtp_core::client::Envelope;
//!
//! let mut options = ClientOptions::new("client.example");
//! options.tls = TlsMode::StartTlsRequired;
//! let mut client = SmtpClient::connect("mx.example.com:25", "mx.example.com", options)?;
//! let envelope = Envelope::new("alice@example.com", ["bob@example.org"])?;
//! let result = client.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello.\r\n")?;
//! for refused in result.refused() {
//!     eprintln!("{:?}: {}", refused.address, refused.reply);
//! }
//! client.quit()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # I/O
//! - `TCP_NODELAY` is set, and everything the session has to say goes out in one write, so a
//!   pipelined batch is one segment and never waits for Nagle and a delayed ACK.
//! - One 64 KiB read buffer; every read goes straight to the session.
//! - Before a read the socket's read timeout is set to what is left until the session's
//!   next deadline, unless the one it has is no longer than that and not much shorter;
//!   when it expires the session, not the driver, decides whether that is a timeout. Writes time out after
//!   [`ClientTimeouts::data_block`](crate::client::ClientTimeouts::data_block).
//! - Messages are streamed from any [`Read`] 64 KiB at a time and never held whole.
//! - Dropping an [`SmtpClient`] closes the socket without QUIT; call [`SmtpClient::quit`]
//!   to say goodbye.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use crate::client::TransactionResult;
use crate::client::api::{self, client_api, client_connect, client_debug, client_struct};
use crate::client::options::{Prepared, prepare};
use crate::client::runner::{Action, BatchMessage, ClientRunner, Operation, Outcome, READ_BUFFER};
use crate::clock::Clock;

pub use crate::client::error::{Error, ErrorKind};
pub use crate::client::options::{ClientOptions, TlsMode, TlsSetup};

/// The shortest socket timeout set; zero would mean "no timeout" (or an error) to the OS.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// A socket read timeout at least this long is kept while it is no longer than what is
/// left until the deadline (see `Io::read_once`).
const KEPT_WAIT: Duration = Duration::from_secs(10);

/// A Unix-domain socket where there are some (local LMTP delivery, say).
#[cfg(unix)]
type LocalStream = UnixStream;
#[cfg(not(unix))]
type LocalStream = std::convert::Infallible;

/// The socket, before and after TLS, or a local one.
type Stream = api::Stream<TcpStream, StreamOwned<ClientConnection, TcpStream>, LocalStream>;

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(tls) => Some(tls.get_ref()),
            Stream::Local(_) => None,
            Stream::Gone => None,
        }
    }

    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        #[cfg(unix)]
        if let Stream::Local(unix) = self {
            return unix.set_read_timeout(Some(timeout.max(MIN_WAIT)));
        }
        match self.tcp() {
            Some(tcp) => tcp.set_read_timeout(Some(timeout.max(MIN_WAIT))),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
            #[cfg(unix)]
            Stream::Local(unix) => unix.read(buf),
            #[cfg(not(unix))]
            Stream::Local(never) => match *never {},
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes all of `data` and pushes it out: one `write` on a plain socket, as few TLS
    /// records as rustls makes of it.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.write_all(data),
            Stream::Tls(tls) => {
                tls.write_all(data)?;
                tls.flush()
            }
            #[cfg(unix)]
            Stream::Local(unix) => unix.write_all(data),
            #[cfg(not(unix))]
            Stream::Local(never) => match *never {},
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Closes the connection, with a TLS close_notify when encrypted; errors do not
    /// matter any more.
    fn close(&mut self) {
        match std::mem::replace(self, Stream::Gone) {
            Stream::Plain(tcp) => {
                let _ = tcp.shutdown(Shutdown::Both);
            }
            Stream::Tls(mut tls) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                let _ = tls.sock.shutdown(Shutdown::Both);
            }
            #[cfg(unix)]
            Stream::Local(unix) => {
                let _ = unix.shutdown(Shutdown::Both);
            }
            #[cfg(not(unix))]
            Stream::Local(never) => match never {},
            Stream::Gone => {}
        }
    }
}

client_struct! {
    /// A blocking SMTP client connection. See the [module docs](self).
    SmtpClient
}

/// The driver's half of a connection: the socket, the read buffer and the clock.
struct Io {
    stream: Stream,
    /// The session's clock: `clock.now()` is the `now` it is given (a coarse clock: it is
    /// read at every step of the session, a dozen times per message).
    clock: Clock,
    buffer: Box<[u8]>,
    /// perf: the read timeout the socket has now, if this driver set one. It is set again
    /// only when the next deadline is nearer than that (see `read_once`), which saves a
    /// `setsockopt` per reply.
    read_timeout: Option<Duration>,
}

client_debug!(SmtpClient);

impl SmtpClient {
    client_connect! {
        /// Connects (with the connect timeout, trying each resolved address in turn), sets up
        /// TLS as `options.tls` says, greets, upgrades with STARTTLS and authenticates as
        /// configured, and returns once the session is ready for mail. All sequencing is the
        /// session's; this only reacts to its events.
        ///
        /// `server_name` is the name the server's certificate must carry (usually the host
        /// part of `addr`); it is not used without TLS.
        ///
        /// The HELO name and credentials are checked before anything is connected. When the
        /// configured credentials are refused (or no mechanism fits), the connection is closed
        /// with QUIT and the error returned: the caller asked for an authenticated session.
        /// A refused STARTTLS under [`TlsMode::StartTlsOpportunistic`] is logged and the
        /// session goes on in clear.
        [] []
    }

    /// Does what [`SmtpClient::connect`] does on a TCP connection the caller made (bound
    /// to a source address, say): TLS as configured, the greeting, EHLO, STARTTLS and
    /// AUTH.
    pub fn from_tcp(
        tcp: TcpStream,
        server_name: &str,
        options: ClientOptions,
    ) -> Result<SmtpClient, Error> {
        let prepared = prepare(options, server_name)?;
        let (io, peer) = Io::open(tcp, &prepared)?;
        SmtpClient::start(io, peer, prepared)
    }

    /// Does what [`SmtpClient::connect`] does over the Unix-domain socket at `path` (local
    /// LMTP or SMTP delivery, as smtplib's `LMTP("/path")`): the greeting, EHLO or LHLO,
    /// AUTH. TLS is refused (`InvalidArgument`): the socket is local. The
    /// [`peer_addr`](SmtpClient::peer_addr) of such a client is `0.0.0.0:0`.
    #[cfg(unix)]
    pub fn connect_unix(
        path: impl AsRef<std::path::Path>,
        options: ClientOptions,
    ) -> Result<SmtpClient, Error> {
        if options.tls != TlsMode::None {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "TLS is not offered over a Unix socket",
            ));
        }
        let prepared = prepare(options, "localhost")?;
        let unix = UnixStream::connect(path.as_ref())
            .map_err(|e| Error::io("cannot connect to the Unix socket", e))?;
        unix.set_write_timeout(Some(prepared.timeouts.data_block.max(MIN_WAIT)))
            .map_err(|e| Error::io("cannot set up the connection", e))?;
        log::debug!(
            "smtpx client #{}: connected to {}",
            prepared.id,
            path.as_ref().display()
        );
        let io = Io {
            stream: Stream::Local(unix),
            clock: Clock::start(),
            buffer: vec![0; READ_BUFFER].into_boxed_slice(),
            read_timeout: None,
        };
        SmtpClient::start(io, SocketAddr::from(([0, 0, 0, 0], 0)), prepared)
    }

    client_api!([] [] [Read]);
}

/// `drive`'s message source for every operation but [`SmtpClient::send`].
const NO_BODY: Option<&mut dyn Read> = None;

impl Io {
    /// Sets up a freshly connected socket (no delay, the write timeout), starts the
    /// session's clock, and does the implicit TLS handshake when `prepared` says so.
    fn open(tcp: TcpStream, prepared: &Prepared) -> Result<(Io, SocketAddr), Error> {
        let setup_failed = |e| Error::io("cannot set up the connection", e);
        let peer = tcp.peer_addr().map_err(setup_failed)?;
        let write_timeout = prepared.timeouts.data_block.max(MIN_WAIT);
        tcp.set_nodelay(true)
            .and_then(|()| tcp.set_write_timeout(Some(write_timeout)))
            .map_err(setup_failed)?;
        let clock = Clock::start();
        log::debug!("smtpx client #{}: connected to {peer}", prepared.id);
        let stream = match (&prepared.tls, prepared.tls_mode) {
            (Some(setup), TlsMode::Implicit) => {
                let tls = tls_handshake(tcp, setup, &clock, prepared.connect_timeout)?;
                log::debug!("smtpx client #{}: implicit TLS established", prepared.id);
                Stream::Tls(Box::new(tls))
            }
            _ => Stream::Plain(tcp),
        };
        let buffer = vec![0; READ_BUFFER].into_boxed_slice();
        Ok((
            Io {
                stream,
                clock,
                buffer,
                read_timeout: None,
            },
            peer,
        ))
    }

    /// The session clock.
    fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Carries out `op`'s actions on the socket until it is done; `body` is the message
    /// it asks for with [`Action::Body`], `on_result` takes a batch's outcomes as they
    /// become known (before each write and each wait for the server).
    fn drive<I>(
        &mut self,
        mut op: Operation<&mut ClientRunner, I>,
        mut body: Option<&mut dyn Read>,
        mut on_result: impl FnMut(Result<TransactionResult, Error>),
    ) -> Outcome
    where
        I: Iterator<Item: BatchMessage>,
    {
        loop {
            op.report_results(&mut on_result);
            match op.next_action(self.clock.now()) {
                Action::Write(bytes) => match self.stream.write_all(bytes) {
                    Ok(()) => op.written(),
                    Err(e) => op.write_failed(e),
                },
                Action::Goodbye(bytes) => {
                    let _ = self.stream.write_all(bytes);
                    op.written();
                }
                Action::Read { deadline } => {
                    op.report_results(&mut on_result);
                    self.read_once(&mut op, deadline);
                }
                Action::StartTls { setup, deadline } => match self.starttls(setup, deadline) {
                    Ok(()) => op.tls_established(self.clock.now()),
                    Err(error) => op.tls_failed(error),
                },
                Action::Body => match body.as_mut().map(|message| message.read(&mut self.buffer)) {
                    Some(Ok(0)) => op.body_end(self.clock.now()),
                    Some(Ok(n)) => op.body(&self.buffer[..n], self.clock.now()),
                    Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Some(Err(e)) => op.body_failed(e),
                    None => op.body_failed(io::ErrorKind::InvalidInput.into()),
                },
                Action::Close => self.stream.close(),
                Action::Abort => self.stream = Stream::Gone,
                Action::Done(outcome) => return outcome,
            }
        }
    }

    /// The STARTTLS handshake on the plain socket, done by `deadline` (session clock).
    fn starttls(&mut self, setup: &TlsSetup, deadline: Duration) -> Result<(), Error> {
        let tcp = self.stream.take_plain()?;
        self.read_timeout = None; // the handshake sets its own
        self.stream = Stream::Tls(Box::new(tls_handshake(tcp, setup, &self.clock, deadline)?));
        Ok(())
    }

    /// Waits for bytes until `deadline` and hands what happened to `op`.
    fn read_once<I>(&mut self, op: &mut Operation<&mut ClientRunner, I>, deadline: Duration)
    where
        I: Iterator<Item: BatchMessage>,
    {
        // A timeout no longer than what is left, and not much shorter (at least half of
        // it, or KEPT_WAIT), is kept: should it expire before the deadline, the session
        // only asks to read again (`handle_timeout`), and the timeout is then set anew.
        // So no read waits past the deadline, a wait wakes up early only a few times, and
        // a connection whose replies come in time makes a `setsockopt` now and then
        // instead of one per read, even as the timeouts of its phases differ (RFC 5321's
        // are 2 to 10 minutes). A timeout of seconds is set to whole seconds, so that the
        // next wait, whose deadline is a little later, finds it no longer than what is left.
        let left = deadline.saturating_sub(self.clock.now()).max(MIN_WAIT);
        if self
            .read_timeout
            .is_none_or(|set| set > left || set < (left / 2).min(KEPT_WAIT))
        {
            let timeout = if left >= Duration::from_secs(2) {
                Duration::from_secs(left.as_secs())
            } else {
                left
            };
            if let Err(e) = self.stream.set_read_timeout(timeout) {
                self.read_timeout = None;
                return op.read_failed(e);
            }
            self.read_timeout = Some(timeout);
        }
        match self.stream.read(&mut self.buffer) {
            Ok(0) => op.eof(),
            Ok(n) => op.received(&self.buffer[..n], self.clock.now()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                op.timed_out(self.clock.now());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // TCP closed without a TLS close_notify. Replies delimit themselves, so there
            // is no truncation to detect: to the session this is an end of stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.stream.is_tls() => op.eof(),
            Err(e) => op.read_failed(e),
        }
    }
}

/// Connects to the first address that answers within `timeout`.
fn connect_tcp(addr: impl ToSocketAddrs, timeout: Duration, id: u64) -> Result<TcpStream, Error> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| Error::io("cannot resolve the server's address", e))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => {
                log::debug!("smtpx client #{id}: cannot connect to {addr}: {e}");
                last = Some((addr, e));
            }
        }
    }
    match last {
        Some((addr, e)) => Err(Error::io(&format!("cannot connect to {addr}"), e)),
        None => Err(Error::new(
            ErrorKind::Io,
            "the server's address resolved to nothing",
        )),
    }
}

/// Does a TLS client handshake on `tcp`, giving up at `deadline` (on `clock`).
fn tls_handshake(
    mut tcp: TcpStream,
    setup: &TlsSetup,
    clock: &Clock,
    deadline: Duration,
) -> Result<StreamOwned<ClientConnection, TcpStream>, Error> {
    let mut conn = ClientConnection::new(setup.config.clone(), setup.server_name.clone())
        .map_err(Error::tls_start)?;
    while conn.is_handshaking() {
        let now = clock.now();
        if now >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                "the TLS handshake timed out",
            ));
        }
        tcp.set_read_timeout(Some((deadline - now).max(MIN_WAIT)))
            .map_err(|e| Error::io("TLS handshake failed", e))?;
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Error::new(
                    ErrorKind::Tls,
                    "TLS handshake failed: the server closed the connection",
                ));
            }
            Err(e) => return Err(Error::io("TLS handshake failed", e)),
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}
