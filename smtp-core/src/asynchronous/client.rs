//! An async SMTP (and LMTP) client: the [`ClientSession`](crate::client::ClientSession) engine on a tokio socket, with
//! STARTTLS and implicit TLS through tokio-rustls.
//!
//! It is the [blocking client](crate::blocking::client) with `.await`: the same
//! [`ClientOptions`], [`TlsMode`], [`Error`] and [`ErrorKind`], the same event loop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use smtp_core::asynchronous::client::AsyncSmtpClient;
//! use smtp_core::blocking::client::{ClientOptions, TlsMode};
//! use smtp_core::client::Envelope;
//!
//! let mut options = ClientOptions::new("client.example");
//! options.tls = TlsMode::StartTlsRequired;
//! let mut client = AsyncSmtpClient::connect("mx.example.com:25", "mx.example.com", options).await?;
//! let envelope = Envelope::new("alice@example.com", ["bob@example.org"])?;
//! let result = client.send_bytes(&envelope, b"Subject: hi\r\n\r\nHello.\r\n").await?;
//! for refused in result.refused() {
//!     eprintln!("{:?}: {}", refused.address, refused.reply);
//! }
//! client.quit().await?;
//! # Ok(()) }
//! ```
//!
//! # I/O
//! - `TCP_NODELAY` is set and everything the session has to say goes out in one
//!   `write_all`, so a pipelined batch is one segment.
//! - Each read waits with `tokio::time::timeout_at` until the session's next deadline; when
//!   it expires the session, not the driver, decides whether that is a timeout. Writes time
//!   out after [`ClientTimeouts::data_block`](crate::client::ClientTimeouts::data_block).
//! - Messages are streamed from any [`AsyncRead`] 64 KiB at a time.
//! - Dropping an [`AsyncSmtpClient`] closes the socket without QUIT; call
//!   [`AsyncSmtpClient::quit`] to say goodbye.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs, lookup_host};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::client::TransactionResult;
use crate::client::api::{self, client_api, client_connect, client_debug, client_struct};
use crate::client::options::Prepared;
use crate::client::runner::{Action, BatchMessage, ClientRunner, Operation, Outcome, READ_BUFFER};

pub use crate::client::error::{Error, ErrorKind};
pub use crate::client::options::{ClientOptions, TlsMode, TlsSetup};

/// How long closing (close_notify, shutdown) may take; errors do not matter any more.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The socket, before and after TLS.
type Stream = api::Stream<TcpStream, TlsStream<TcpStream>>;

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf).await,
            Stream::Tls(tls) => tls.read(buf).await,
            Stream::Local(never) => match *never {},
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// One `write_all` (and a flush, which pushes out the TLS records).
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.write_all(data).await,
            Stream::Tls(tls) => {
                tls.write_all(data).await?;
                tls.flush().await
            }
            Stream::Local(never) => match *never {},
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn close(&mut self) {
        match std::mem::replace(self, Stream::Gone) {
            Stream::Plain(mut tcp) => {
                let _ = tokio::time::timeout(CLOSE_WAIT, tcp.shutdown()).await;
            }
            Stream::Tls(mut tls) => {
                // Sends close_notify, then shuts the socket down.
                let _ = tokio::time::timeout(CLOSE_WAIT, tls.shutdown()).await;
            }
            Stream::Local(never) => match never {},
            Stream::Gone => {}
        }
    }
}

client_struct! {
    /// An async SMTP client connection. See the [module docs](self).
    AsyncSmtpClient
}

/// The driver's half of a connection: the socket, the read buffer, the clock and the
/// write timeout.
struct Io {
    stream: Stream,
    /// The session's clock: `base.elapsed()` is the `now` it is given.
    base: Instant,
    buffer: Box<[u8]>,
    write_timeout: Duration,
}

client_debug!(AsyncSmtpClient);

impl AsyncSmtpClient {
    client_connect! {
        /// Connects, sets up TLS, greets, upgrades and authenticates as `options` say, and
        /// returns once the session is ready for mail; see
        /// [`SmtpClient::connect`](crate::blocking::client::SmtpClient::connect), whose
        /// behaviour this repeats.
        [async] [.await]
    }

    client_api!([async] [.await] [AsyncRead + Unpin]);
}

/// `drive`'s message source for every operation but [`AsyncSmtpClient::send`].
const NO_BODY: Option<&mut &[u8]> = None;

impl Io {
    /// Sets up a freshly connected socket (no delay), starts the session's clock, and
    /// does the implicit TLS handshake when `prepared` says so.
    async fn open(tcp: TcpStream, prepared: &Prepared) -> Result<(Io, SocketAddr), Error> {
        let peer = tcp.peer_addr();
        let peer = peer
            .and_then(|peer| tcp.set_nodelay(true).map(|()| peer))
            .map_err(|e| Error::io("cannot set up the connection", e))?;
        let base = Instant::now();
        log::debug!("smtpx async client #{}: connected to {peer}", prepared.id);
        let stream = match (&prepared.tls, prepared.tls_mode) {
            (Some(setup), TlsMode::Implicit) => {
                let deadline = base + prepared.connect_timeout;
                let tls = tls_handshake(tcp, setup, deadline).await?;
                log::debug!(
                    "smtpx async client #{}: implicit TLS established",
                    prepared.id
                );
                Stream::Tls(Box::new(tls))
            }
            _ => Stream::Plain(tcp),
        };
        let io = Io {
            stream,
            base,
            buffer: vec![0; READ_BUFFER].into_boxed_slice(),
            write_timeout: prepared.timeouts.data_block,
        };
        Ok((io, peer))
    }

    /// The session clock.
    fn now(&self) -> Duration {
        self.base.elapsed()
    }

    /// The STARTTLS handshake on the plain socket, done by `deadline` (session clock).
    async fn starttls(&mut self, setup: &TlsSetup, deadline: Duration) -> Result<(), Error> {
        let tcp = self.stream.take_plain()?;
        self.stream = Stream::Tls(Box::new(
            tls_handshake(tcp, setup, self.base + deadline).await?,
        ));
        Ok(())
    }

    /// Carries out `op`'s actions on the socket until it is done; `body` is the message
    /// it asks for with [`Action::Body`], `on_result` takes a batch's outcomes as they
    /// become known (before each write and each wait for the server). Every wait is
    /// bounded: reads by the session's deadline, writes by the write timeout, the goodbye
    /// and closing by [`CLOSE_WAIT`].
    async fn drive<I, B>(
        &mut self,
        mut op: Operation<&mut ClientRunner, I>,
        mut body: Option<&mut B>,
        mut on_result: impl FnMut(Result<TransactionResult, Error>),
    ) -> Outcome
    where
        I: Iterator<Item: BatchMessage>,
        B: AsyncRead + Unpin + ?Sized,
    {
        loop {
            op.report_results(&mut on_result);
            match op.next_action(self.base.elapsed()) {
                Action::Write(bytes) => {
                    let written =
                        tokio::time::timeout(self.write_timeout, self.stream.write_all(bytes))
                            .await
                            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
                    match written {
                        Ok(()) => op.written(),
                        Err(e) => op.write_failed(e),
                    }
                }
                Action::Goodbye(bytes) => {
                    let _ = tokio::time::timeout(CLOSE_WAIT, self.stream.write_all(bytes)).await;
                    op.written();
                }
                Action::Read { deadline } => {
                    op.report_results(&mut on_result);
                    let until = tokio::time::Instant::from_std(self.base + deadline);
                    match tokio::time::timeout_at(until, self.stream.read(&mut self.buffer)).await {
                        Err(_) => op.timed_out(self.base.elapsed()),
                        Ok(Ok(0)) => op.eof(),
                        Ok(Ok(n)) => op.received(&self.buffer[..n], self.base.elapsed()),
                        Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        // TCP closed without a TLS close_notify: replies delimit
                        // themselves, so to the session this is an end of stream.
                        Ok(Err(e))
                            if e.kind() == io::ErrorKind::UnexpectedEof && self.stream.is_tls() =>
                        {
                            op.eof();
                        }
                        Ok(Err(e)) => op.read_failed(e),
                    }
                }
                Action::StartTls { setup, deadline } => {
                    match self.starttls(setup, deadline).await {
                        Ok(()) => op.tls_established(self.base.elapsed()),
                        Err(error) => op.tls_failed(error),
                    }
                }
                Action::Body => {
                    let read = match body.as_mut() {
                        Some(message) => message.read(&mut self.buffer).await,
                        None => Err(io::ErrorKind::InvalidInput.into()),
                    };
                    match read {
                        Ok(0) => op.body_end(self.base.elapsed()),
                        Ok(n) => op.body(&self.buffer[..n], self.base.elapsed()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => op.body_failed(e),
                    }
                }
                Action::Close => self.stream.close().await,
                Action::Abort => self.stream = Stream::Gone,
                Action::Done(outcome) => return outcome,
            }
        }
    }
}

async fn connect_tcp(
    addr: impl ToSocketAddrs,
    timeout: Duration,
    id: u64,
) -> Result<TcpStream, Error> {
    let addrs = lookup_host(addr)
        .await
        .map_err(|e| Error::io("cannot resolve the server's address", e))?;
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => {
                log::debug!("smtpx async client #{id}: cannot connect to {addr}: {e}");
                last = Some((addr, e));
            }
            Err(_) => {
                log::debug!("smtpx async client #{id}: connecting to {addr} timed out");
                last = Some((addr, io::ErrorKind::TimedOut.into()));
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

async fn tls_handshake(
    tcp: TcpStream,
    setup: &TlsSetup,
    deadline: Instant,
) -> Result<TlsStream<TcpStream>, Error> {
    let connector = TlsConnector::from(Arc::clone(&setup.config));
    let handshake = connector.connect(setup.server_name.clone(), tcp);
    match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), handshake).await {
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            "the TLS handshake timed out",
        )),
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::new(
            ErrorKind::Tls,
            "TLS handshake failed: the server closed the connection",
        )),
        Ok(Err(e)) => Err(Error::io("TLS handshake failed", e)),
    }
}
