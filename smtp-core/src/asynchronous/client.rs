//! An async SMTP (and LMTP) client: the [`ClientSession`] engine on a tokio socket, with
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
//! let envelope = Envelope::new("alice@example.com", &["bob@example.org"])?;
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

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs, lookup_host};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::auth::Credentials;
use crate::blocking::client::{Batch, BatchStep, Prepared, TlsSetup, prepare};
pub use crate::blocking::client::{ClientOptions, Error, ErrorKind, TlsMode};
use crate::client::{ClientError, ClientEvent, ClientSession, Envelope, TransactionResult};
use crate::ehlo::Capabilities;
use crate::reply::Reply;

/// Size of the read buffer and of the pieces a message is read in.
const BUFFER_SIZE: usize = 64 * 1024;

/// Session output is written once it reaches this size while a message streams.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// How long closing (close_notify, shutdown) may take; errors do not matter any more.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// The socket, before and after TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Closed, or lost in a failed upgrade.
    Gone,
}

impl Stream {
    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf).await,
            Stream::Tls(tls) => tls.read(buf).await,
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
            Stream::Gone => {}
        }
    }
}

/// An async SMTP client connection. See the [module docs](self).
pub struct AsyncSmtpClient {
    id: u64,
    peer: SocketAddr,
    stream: Stream,
    session: ClientSession,
    /// The session's clock: `base.elapsed()` is the `now` it is given.
    base: Instant,
    buffer: Box<[u8]>,
    tls: Option<TlsSetup>,
    handshake_timeout: Duration,
    write_timeout: Duration,
}

impl fmt::Debug for AsyncSmtpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSmtpClient")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("tls", &self.is_tls())
            .field("authenticated", &self.session.is_authenticated())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl AsyncSmtpClient {
    /// Connects, sets up TLS, greets, upgrades and authenticates as `options` say, and
    /// returns once the session is ready for mail; see
    /// [`SmtpClient::connect`](crate::blocking::client::SmtpClient::connect), whose
    /// behaviour this repeats.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        server_name: &str,
        options: ClientOptions,
    ) -> Result<AsyncSmtpClient, Error> {
        let Prepared {
            session,
            tls,
            tls_mode,
            connect_timeout,
            timeouts,
        } = prepare(options, server_name)?;

        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let tcp = connect_tcp(addr, connect_timeout, id).await?;
        let peer = tcp
            .peer_addr()
            .map_err(|e| Error::io("cannot set up the connection", e))?;
        tcp.set_nodelay(true)
            .map_err(|e| Error::io("cannot set up the connection", e))?;
        let base = Instant::now();
        log::debug!("smtpx async client #{id}: connected to {peer}");
        let stream = match (&tls, tls_mode) {
            (Some(setup), TlsMode::Implicit) => {
                let tls = tls_handshake(tcp, setup, base + connect_timeout).await?;
                log::debug!("smtpx async client #{id}: implicit TLS established");
                Stream::Tls(Box::new(tls))
            }
            _ => Stream::Plain(tcp),
        };
        let mut client = AsyncSmtpClient {
            id,
            peer,
            stream,
            session,
            base,
            buffer: vec![0; BUFFER_SIZE].into_boxed_slice(),
            tls,
            handshake_timeout: timeouts.command,
            write_timeout: timeouts.data_block,
        };
        let mut goodbye = None;
        let ready = client
            .run(|client, event| match event {
                ClientEvent::Ready => Ok(Some(())),
                ClientEvent::Authenticated(_) => {
                    log::debug!("smtpx async client #{}: authenticated", client.id);
                    Ok(None)
                }
                ClientEvent::Error(ClientError::StartTlsRefused(reply)) => {
                    log::warn!(
                        "smtpx async client #{}: STARTTLS refused ({}), going on in clear",
                        client.id,
                        reply.code()
                    );
                    Ok(None)
                }
                ClientEvent::Error(error) => {
                    goodbye = Some(error);
                    Ok(Some(()))
                }
                other => unexpected(client.id, other),
            })
            .await;
        ready?;
        if let Some(error) = goodbye {
            client.say_goodbye().await;
            return Err(error.into());
        }
        Ok(client)
    }

    /// The server's capabilities from its last EHLO (or LHLO).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.session.capabilities()
    }

    /// True when the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.session.is_closed() || matches!(self.stream, Stream::Gone)
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message, streamed from `message`; `size` (when known) is announced with
    /// SIZE. Returns the per-recipient result; see
    /// [`SmtpClient::send`](crate::blocking::client::SmtpClient::send).
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        mut message: impl AsyncRead + Unpin,
        size: Option<u64>,
    ) -> Result<TransactionResult, Error> {
        self.begin()?;
        self.session.send_mail(envelope, size)?;
        loop {
            let mut body = false;
            let done = self
                .run(|client, event| match event {
                    ClientEvent::SendBody => {
                        body = true;
                        Ok(Some(None))
                    }
                    ClientEvent::TransactionComplete(result) => Ok(Some(Some(result))),
                    other => unexpected(client.id, other),
                })
                .await?;
            if let Some(result) = done {
                return Ok(result);
            }
            if body {
                self.stream_body(&mut message).await?;
            }
        }
    }

    /// Sends several messages over this connection, one transaction each, and returns an
    /// outcome per message, in order, chaining each next message behind the previous
    /// one's final dot when the server pipelines; see
    /// [`SmtpClient::send_batch`](crate::blocking::client::SmtpClient::send_batch), whose
    /// behaviour this repeats.
    pub async fn send_batch<'m>(
        &mut self,
        messages: impl IntoIterator<Item = (&'m Envelope, &'m [u8])>,
    ) -> Vec<Result<TransactionResult, Error>> {
        let mut batch = Batch::new(messages);
        while !batch.is_done() {
            if batch.is_idle() {
                if let Err(error) = self.begin() {
                    batch.fail(error);
                    break;
                }
                batch.start_next(&mut self.session);
                continue;
            }
            let step = self
                .run(|client, event| match event {
                    ClientEvent::SendBody => Ok(Some(BatchStep::Content)),
                    ClientEvent::TransactionComplete(result) => {
                        Ok(Some(BatchStep::Complete(result)))
                    }
                    other => unexpected(client.id, other),
                })
                .await;
            match step {
                Ok(BatchStep::Content) => {
                    let written = match batch.content() {
                        Ok(mut content) => self.stream_body(&mut content).await,
                        Err(error) => Err(error),
                    };
                    if let Err(error) = written {
                        batch.fail(error);
                        break;
                    }
                    // Chained behind the dot: `run` writes both at once.
                    batch.start_next(&mut self.session);
                }
                Ok(BatchStep::Complete(result)) => batch.complete(result),
                Err(error) => {
                    batch.fail(error);
                    break;
                }
            }
        }
        batch.into_results()
    }

    /// Sends a message held in memory.
    pub async fn send_bytes(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionResult, Error> {
        self.send(envelope, message, Some(crate::data::wire_size(message)))
            .await
    }

    /// Authenticates now (when the credentials were not given to `connect`).
    pub async fn login(&mut self, credentials: Credentials) -> Result<Reply, Error> {
        self.begin()?;
        self.session.login(credentials)?;
        self.run(|client, event| match event {
            ClientEvent::Authenticated(reply) => Ok(Some(reply)),
            other => unexpected(client.id, other),
        })
        .await
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<Reply, Error> {
        self.begin()?;
        self.session.noop()?;
        self.reply().await
    }

    /// RSET.
    pub async fn rset(&mut self) -> Result<Reply, Error> {
        self.begin()?;
        self.session.rset()?;
        self.reply().await
    }

    /// VRFY.
    pub async fn vrfy(&mut self, argument: &str) -> Result<Reply, Error> {
        self.begin()?;
        self.session.vrfy(argument)?;
        self.reply().await
    }

    /// EXPN.
    pub async fn expn(&mut self, argument: &str) -> Result<Reply, Error> {
        self.begin()?;
        self.session.expn(argument)?;
        self.reply().await
    }

    /// HELP, with an optional topic.
    pub async fn help(&mut self, topic: Option<&str>) -> Result<Reply, Error> {
        self.begin()?;
        self.session.help(topic)?;
        self.reply().await
    }

    /// QUIT, then closes the connection. A server that hangs up without answering QUIT
    /// is not an error.
    pub async fn quit(mut self) -> Result<(), Error> {
        if self.is_closed() {
            self.stream.close().await;
            return Ok(());
        }
        self.sync_clock();
        self.session.quit()?;
        let result = self
            .run(|client, event| match event {
                ClientEvent::Closed => Ok(Some(())),
                other => unexpected(client.id, other),
            })
            .await;
        self.stream.close().await;
        log::debug!("smtpx async client #{}: closed", self.id);
        match result {
            Err(e) if e.kind() == ErrorKind::ConnectionClosed => Ok(()),
            other => other,
        }
    }

    async fn reply(&mut self) -> Result<Reply, Error> {
        self.run(|client, event| match event {
            ClientEvent::Reply(reply) => Ok(Some(reply)),
            other => unexpected(client.id, other),
        })
        .await
    }

    fn begin(&mut self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::NotReady, "the connection is closed"));
        }
        self.sync_clock();
        Ok(())
    }

    /// Tells the session the time before new work, so an expired deadline is noticed.
    fn sync_clock(&mut self) {
        let now = self.base.elapsed();
        if self.session.next_deadline().is_none_or(|d| d > now) {
            self.session.handle_timeout(now);
        }
    }

    /// The event loop: hands events to `on_event` until it returns a value, writes the
    /// session's output in one piece, reads. STARTTLS and fatal errors are handled here.
    async fn run<T>(
        &mut self,
        mut on_event: impl FnMut(&AsyncSmtpClient, ClientEvent) -> Result<Option<T>, Error>,
    ) -> Result<T, Error> {
        loop {
            while let Some(event) = self.session.poll_event() {
                match event {
                    ClientEvent::StartTls => self.start_tls().await?,
                    ClientEvent::Error(error) if error.is_fatal() || self.session.is_closed() => {
                        log::debug!("smtpx async client #{}: {error}", self.id);
                        self.say_goodbye().await;
                        return Err(error.into());
                    }
                    event => {
                        if let Some(done) = on_event(self, event)? {
                            return Ok(done);
                        }
                    }
                }
            }
            if self.session.is_closed() {
                self.stream.close().await;
                return Err(ClientError::ConnectionClosed.into());
            }
            self.flush().await?;
            self.read_once().await?;
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        let written = tokio::time::timeout(
            self.write_timeout,
            self.stream.write_all(self.session.output()),
        )
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        match written {
            Ok(()) => {
                self.session.clear_output();
                Ok(())
            }
            Err(e) => Err(self.connection_lost("cannot send to the server", e)),
        }
    }

    async fn read_once(&mut self) -> Result<(), Error> {
        let Some(deadline) = self.session.next_deadline() else {
            return Err(Error::new(
                ErrorKind::NotReady,
                "the session is not waiting for any reply",
            ));
        };
        let until = tokio::time::Instant::from_std(self.base + deadline);
        match tokio::time::timeout_at(until, self.stream.read(&mut self.buffer)).await {
            Err(_) => self.session.handle_timeout(self.base.elapsed()),
            Ok(Ok(0)) => self.session.receive_eof(),
            Ok(Ok(n)) => self.session.receive(&self.buffer[..n], self.base.elapsed()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof && self.stream.is_tls() => {
                self.session.receive_eof();
            }
            Ok(Err(e)) => return Err(self.connection_lost("cannot read from the server", e)),
        }
        Ok(())
    }

    fn connection_lost(&mut self, context: &str, error: io::Error) -> Error {
        let error = Error::io(context, error);
        log::debug!("smtpx async client #{}: {error}", self.id);
        self.session.receive_eof();
        while self.session.poll_event().is_some() {}
        self.stream = Stream::Gone;
        error
    }

    /// After a fatal error: sends what is pending and QUIT without waiting for replies,
    /// then closes. Every write is bounded.
    async fn say_goodbye(&mut self) {
        if !self.session.is_closed() && self.session.quit().is_ok() {
            // QUIT is queued behind whatever was pending.
        }
        if !self.session.output().is_empty() {
            let _ = tokio::time::timeout(CLOSE_WAIT, self.stream.write_all(self.session.output()))
                .await;
            self.session.clear_output();
        }
        if !self.session.is_closed() {
            self.session.receive_eof();
            while self.session.poll_event().is_some() {}
        }
        self.stream.close().await;
    }

    async fn start_tls(&mut self) -> Result<(), Error> {
        self.flush().await?;
        let setup = self.tls.clone();
        let stream = std::mem::replace(&mut self.stream, Stream::Gone);
        let result = match (setup, stream) {
            (Some(setup), Stream::Plain(tcp)) => {
                tls_handshake(tcp, &setup, Instant::now() + self.handshake_timeout).await
            }
            (_, stream) => {
                self.stream = stream;
                Err(Error::new(
                    ErrorKind::Protocol,
                    "the session asked for STARTTLS on a connection that cannot do it",
                ))
            }
        };
        match result {
            Ok(tls) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.session.tls_established(self.base.elapsed());
                log::debug!("smtpx async client #{}: STARTTLS established", self.id);
                Ok(())
            }
            Err(error) => {
                log::debug!("smtpx async client #{}: {error}", self.id);
                self.session.receive_eof();
                while self.session.poll_event().is_some() {}
                self.stream.close().await;
                Err(error)
            }
        }
    }

    async fn stream_body(&mut self, message: &mut (impl AsyncRead + Unpin)) -> Result<(), Error> {
        loop {
            let n = match message.read(&mut self.buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!(
                        "smtpx async client #{}: reading the message failed",
                        self.id
                    );
                    self.session.receive_eof();
                    while self.session.poll_event().is_some() {}
                    self.stream = Stream::Gone;
                    return Err(Error::message_source(e));
                }
            };
            self.sync_clock();
            self.session.send_body(&self.buffer[..n])?;
            if self.session.output().len() >= FLUSH_THRESHOLD {
                self.flush().await?;
            }
        }
        self.sync_clock();
        self.session.finish_body()?;
        // The rest of the output leaves with whatever follows (a chained transaction)
        // when `run` flushes.
        Ok(())
    }
}

fn unexpected<T>(id: u64, event: ClientEvent) -> Result<Option<T>, Error> {
    match event {
        ClientEvent::Error(error) => Err(error.into()),
        ClientEvent::Closed => Ok(None),
        other => {
            log::debug!("smtpx async client #{id}: ignoring event {other:?}");
            Ok(None)
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
