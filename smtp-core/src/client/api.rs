//! The public methods both client drivers share, written once: each starts an operation
//! on the [`ClientRunner`](crate::client::runner::ClientRunner) and lets the driver's
//! `Io::drive` carry it out. The blocking driver expands [`client_api!`] plain, the tokio
//! driver with `async` and `.await`, so the two APIs cannot drift apart.
//!
//! A driver that expands it has `self.runner` (a `ClientRunner`), `self.io` (with
//! `stream.is_tls()`, `now()` and `drive(operation, body)`), `self.peer`, and a `NO_BODY`
//! constant (the body source of operations that send none).

/// A client driver's socket, before and after TLS: `P` the plain socket, `T` the TLS
/// stream over it, `L` a local socket that is never encrypted (the blocking driver's
/// Unix-domain socket; `Infallible` where there is none).
pub(crate) enum Stream<P, T, L = std::convert::Infallible> {
    Plain(P),
    Tls(Box<T>),
    /// A local socket (LMTP delivery over a Unix-domain socket, say).
    Local(L),
    /// Closed, or lost in a failed upgrade; nothing more can be sent.
    Gone,
}

impl<P, T, L> Stream<P, T, L> {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Takes the plain socket for a STARTTLS handshake (leaving `Gone` until the TLS
    /// stream is put back); on any other stream, an error and the stream unchanged.
    pub(crate) fn take_plain(&mut self) -> Result<P, crate::client::error::Error> {
        match std::mem::replace(self, Stream::Gone) {
            Stream::Plain(plain) => Ok(plain),
            stream => {
                *self = stream;
                Err(crate::client::runner::starttls_without_plain_socket())
            }
        }
    }
}

/// A client connection type: the server's address, the driver's `Io` and the runner.
macro_rules! client_struct {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name {
            peer: std::net::SocketAddr,
            io: Io,
            runner: $crate::client::runner::ClientRunner,
        }
    };
}
pub(crate) use client_struct;

/// The shared `connect`, after the doc comment the driver gives it; `[async]`/`[.await]`
/// or `[]`/`[]`. The driver has `connect_tcp(addr, timeout, id)`, `Io::open(tcp,
/// &Prepared)` (the socket options, the clock, implicit TLS) and `ToSocketAddrs` in
/// scope.
macro_rules! client_connect {
    ($(#[$doc:meta])* [$($async:tt)*] [$($await:tt)*]) => {
        $(#[$doc])*
        pub $($async)* fn connect(
            addr: impl ToSocketAddrs,
            server_name: &str,
            options: $crate::client::options::ClientOptions,
        ) -> Result<Self, $crate::client::error::Error> {
            let prepared = $crate::client::options::prepare(options, server_name)?;
            let tcp = connect_tcp(addr, prepared.connect_timeout, prepared.id) $($await)* ?;
            let (io, peer) = Io::open(tcp, &prepared) $($await)* ?;
            Self::start(io, peer, prepared) $($await)*
        }

        /// Greets (and upgrades and authenticates as configured) on a connection set up.
        $($async)* fn start(
            io: Io,
            peer: std::net::SocketAddr,
            prepared: $crate::client::options::Prepared,
        ) -> Result<Self, $crate::client::error::Error> {
            let $crate::client::options::Prepared { id, session, tls, timeouts, .. } = prepared;
            let mut client = Self {
                peer,
                io,
                runner: $crate::client::runner::ClientRunner::new(id, session, tls, timeouts.command),
            };
            client.io.drive(client.runner.connect(), NO_BODY, $crate::client::runner::no_results) $($await)* .ready()?;
            Ok(client)
        }
    };
}
pub(crate) use client_connect;

/// The shared methods; `[async]`/`[.await]` or `[]`/`[]`, then the bound of a streamed
/// message (`Read` or `AsyncRead + Unpin`).
macro_rules! client_api {
    ([$($async:tt)*] [$($await:tt)*] [$($read:tt)+]) => {
        /// What the server announced in its last EHLO reply (`None` after a HELO fallback).
        pub fn capabilities(&self) -> Option<&$crate::ehlo::Capabilities> {
            self.runner.session().capabilities()
        }

        /// True when the connection is encrypted.
        pub fn is_tls(&self) -> bool {
            self.io.stream.is_tls()
        }

        /// True once the connection is over, after an error that ended it (a timeout, a
        /// lost connection, a 421, a failed message source). Every further call fails with
        /// [`ErrorKind::NotReady`]($crate::client::error::ErrorKind::NotReady).
        pub fn is_closed(&self) -> bool {
            self.runner.is_closed()
        }

        /// The server's address.
        pub fn peer_addr(&self) -> std::net::SocketAddr {
            self.peer
        }

        /// Sends one message and returns the outcome for each recipient. A refused
        /// recipient is not an error: see
        /// [`TransactionResult::refused`]($crate::client::TransactionResult::refused). The
        /// message is streamed from `message` 64 KiB at a time; bare LF and CR become CRLF,
        /// and dot-stuffing is done here. `size`, when known, is announced with SIZE (and a
        /// message over the server's limit is refused before anything is sent): give the
        /// size after CRLF canonicalisation ([`crate::data::wire_size`]).
        ///
        /// If reading `message` fails part-way, the connection is closed (a message cannot
        /// be ended without being delivered) and the error is
        /// [`ErrorKind::MessageSource`]($crate::client::error::ErrorKind::MessageSource).
        pub $($async)* fn send(
            &mut self,
            envelope: &$crate::client::Envelope,
            mut message: impl $($read)+,
            size: Option<u64>,
        ) -> Result<$crate::client::TransactionResult, $crate::client::error::Error> {
            let op = self.runner.send(envelope, size, self.io.now());
            self.io.drive(op, Some(&mut message), $crate::client::runner::no_results) $($await)* .transaction()
        }

        /// Sends several messages over this connection, one transaction each, and returns
        /// an outcome per message, in order. With a server that offers PIPELINING but not
        /// CHUNKING, each next message's MAIL, RCPT and DATA leave in the same write as the
        /// previous message's final dot (RFC 2920 §3.1), so a message costs one round trip
        /// instead of two; with CHUNKING a message is one round trip already.
        ///
        /// A refused message does not stop the batch (its `TransactionResult` says so), nor
        /// does an error that leaves the connection usable, such as a message over the
        /// server's size limit: that message's entry is the error. An error that ends the
        /// connection ends the batch: the list then stops with it, shorter than
        /// `messages`. That last entry belongs to the oldest message without an outcome,
        /// which may or may not have been delivered; the messages after it were not.
        ///
        /// `messages` is any iterable of [`BatchMessage`]($crate::client::BatchMessage)s:
        /// borrowed `(&Envelope, &[u8])` pairs or owned `(Envelope, Vec<u8>)` ones, from a
        /// collection or an iterator that makes them as the batch goes (each message is
        /// taken from it only when it is about to be sent).
        ///
        /// To act on each outcome as soon as it is known, see
        /// [`send_batch_with`](Self::send_batch_with), on which this is built.
        pub $($async)* fn send_batch<M: $crate::client::BatchMessage>(
            &mut self,
            messages: impl IntoIterator<Item = M>,
        ) -> Vec<Result<$crate::client::TransactionResult, $crate::client::error::Error>> {
            let mut outcomes = Vec::new();
            self.send_batch_with(messages, |_, outcome| outcomes.push(outcome)) $($await)*;
            outcomes
        }

        /// Does what [`send_batch`](Self::send_batch) does, handing each message's outcome
        /// to `on_result` with the message's index (from 0) as soon as the server's final
        /// reply to that message is read, while the next messages are still under way: to
        /// mark a message sent in a queue, say, without waiting for the whole batch.
        /// Outcomes come in message order, each index once; returns how many came (fewer
        /// than `messages` when an error ended the connection, whose outcome is then the
        /// last one given).
        ///
        /// `on_result` runs on the caller's thread (or task) between reads: what it does
        /// delays the batch, but it may not touch the connection.
        ///
        /// With the blocking client (the tokio client's is the same call with `.await`):
        ///
        /// ```no_run
        /// # use smtp_core::client::Envelope;
        /// # fn demo(mut client: smtp_core::blocking::SmtpClient, queue: Vec<(u64, Envelope, Vec<u8>)>)
        /// #     -> Result<(), Box<dyn std::error::Error>> {
        /// let ids: Vec<u64> = queue.iter().map(|(id, _, _)| *id).collect();
        /// let messages = queue.into_iter().map(|(_, envelope, content)| (envelope, content));
        /// let given = client.send_batch_with(messages, |index, outcome| match outcome {
        ///     Ok(result) if result.is_success() => println!("{} sent", ids[index]),
        ///     Ok(result) => println!("{} refused: {:?}", ids[index], result.data),
        ///     Err(error) => eprintln!("{} not sent: {error}", ids[index]),
        /// });
        /// if given < ids.len() {
        ///     eprintln!("the connection ended; {} messages left to retry", ids.len() - given);
        /// }
        /// # Ok(()) }
        /// ```
        pub $($async)* fn send_batch_with<M: $crate::client::BatchMessage>(
            &mut self,
            messages: impl IntoIterator<Item = M>,
            mut on_result: impl FnMut(
                usize,
                Result<$crate::client::TransactionResult, $crate::client::error::Error>,
            ),
        ) -> usize {
            let mut given = 0;
            let mut report = |outcome| {
                on_result(given, outcome);
                given += 1;
            };
            let op = self.runner.send_batch(messages);
            let rest = self.io.drive(op, NO_BODY, &mut report) $($await)* .batch();
            rest.into_iter().for_each(&mut report);
            given
        }

        /// Sends one message held in memory; see [`send`](Self::send). SIZE declares the
        /// octets that go out after CRLF canonicalisation.
        pub $($async)* fn send_bytes(
            &mut self,
            envelope: &$crate::client::Envelope,
            message: &[u8],
        ) -> Result<$crate::client::TransactionResult, $crate::client::error::Error> {
            self.send(envelope, message, Some($crate::data::wire_size(message))) $($await)*
        }

        /// Allows (or forbids again) [`login`](Self::login) while the connection is not
        /// encrypted, as [`ClientOptions::allow_insecure_auth`]($crate::client::options::ClientOptions::allow_insecure_auth)
        /// does from the start.
        pub fn set_allow_insecure_auth(&mut self, allow: bool) {
            self.runner.set_allow_insecure_auth(allow);
        }

        /// Authenticates now (PLAIN, LOGIN or XOAUTH2, whichever the server offers and
        /// fits the credentials) and returns the server's 235. A refusal is
        /// [`ErrorKind::AuthFailed`]($crate::client::error::ErrorKind::AuthFailed) and
        /// leaves the connection usable. On a connection without TLS the call fails with
        /// [`ErrorKind::InsecureAuth`]($crate::client::error::ErrorKind::InsecureAuth) and
        /// sends nothing, unless `allow_insecure_auth` allowed it.
        pub $($async)* fn login(
            &mut self,
            credentials: $crate::auth::Credentials,
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            let op = self.runner.login(credentials, self.io.now());
            self.io.drive(op, NO_BODY, $crate::client::runner::no_results) $($await)* .reply()
        }

        /// Upgrades a plain connection with STARTTLS now (for a connection opened with
        /// [`TlsMode::None`]($crate::client::options::TlsMode::None), as smtplib's
        /// `starttls()` does) and returns once the session has greeted again over TLS:
        /// [`capabilities`](Self::capabilities) then holds the new EHLO reply.
        /// `server_name` is the name the certificate must carry; `tls_config` `None` means
        /// [`default_client_config`]($crate::tls::default_client_config)`()`.
        ///
        /// A refusal is
        /// [`ErrorKind::StartTlsRefused`]($crate::client::error::ErrorKind::StartTlsRefused)
        /// and leaves the connection usable in clear; a failed handshake closes it. On an
        /// encrypted connection the call fails with
        /// [`ErrorKind::NotReady`]($crate::client::error::ErrorKind::NotReady) and sends
        /// nothing.
        pub $($async)* fn starttls(
            &mut self,
            server_name: &str,
            tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
        ) -> Result<(), $crate::client::error::Error> {
            let op = self.runner.starttls(server_name, tls_config, self.io.now());
            self.io.drive(op, NO_BODY, $crate::client::runner::no_results) $($await)* .ready()
        }

        /// Sends NOOP and returns the reply, whatever its code.
        pub $($async)* fn noop(&mut self) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command($crate::client::ClientSession::noop) $($await)*
        }

        /// Sends RSET and returns the reply, whatever its code.
        pub $($async)* fn rset(&mut self) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command($crate::client::ClientSession::rset) $($await)*
        }

        /// Sends VRFY and returns the reply, whatever its code.
        pub $($async)* fn vrfy(
            &mut self,
            argument: &str,
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command(|session| session.vrfy(argument)) $($await)*
        }

        /// Sends EXPN and returns the reply, whatever its code.
        pub $($async)* fn expn(
            &mut self,
            argument: &str,
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command(|session| session.expn(argument)) $($await)*
        }

        /// Sends HELP (with an optional topic) and returns the reply, whatever its code.
        pub $($async)* fn help(
            &mut self,
            topic: Option<&str>,
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command(|session| session.help(topic)) $($await)*
        }

        /// Sends QUIT, waits for the reply and closes the connection. A server that hangs
        /// up without replying is not an error; a connection already closed is closed
        /// quietly.
        pub $($async)* fn quit(self) -> Result<(), $crate::client::error::Error> {
            self.quit_reply() $($await)* .map(drop)
        }

        /// Does what [`quit`](Self::quit) does and returns the server's reply to QUIT
        /// (`None` when it hung up without one, or the connection was already over).
        pub $($async)* fn quit_reply(
            mut self,
        ) -> Result<Option<$crate::reply::Reply>, $crate::client::error::Error> {
            let op = self.runner.quit(self.io.now());
            let outcome = self.io.drive(op, NO_BODY, $crate::client::runner::no_results) $($await)*;
            log::debug!("smtpx client #{}: closed", self.runner.id());
            outcome.closed()?;
            Ok(self.runner.session().quit_reply().cloned())
        }

        /// The server's greeting (its 220 line or lines).
        pub fn greeting(&self) -> Option<&$crate::reply::Reply> {
            self.runner.session().greeting()
        }

        /// The server's 220 to the last STARTTLS, after an upgrade.
        pub fn starttls_reply(&self) -> Option<&$crate::reply::Reply> {
            self.runner.session().starttls_reply()
        }

        /// Sends `line` (without CRLF) as it is and returns the reply, whatever its code:
        /// smtplib's `docmd`. `secret` marks a SASL response, which the wire trace then
        /// redacts. See [`ClientSession::raw_command`]($crate::client::ClientSession::raw_command).
        pub $($async)* fn raw_command(
            &mut self,
            line: &str,
            secret: bool,
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command(|session| session.raw_command(line, secret)) $($await)*
        }

        /// Sends message content (dot-stuffed, ended with the final dot) after the caller's
        /// own `DATA` got its 354, and returns the reply, whatever its code.
        pub $($async)* fn raw_content(
            &mut self,
            content: &[u8],
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command(|session| session.raw_content(content)) $($await)*
        }

        /// Greets again with EHLO (or HELO when `ehlo` is false) and returns the reply,
        /// whatever its code; a 2xx replaces the known extensions. See
        /// [`ClientSession::hello`]($crate::client::ClientSession::hello).
        pub $($async)* fn hello(
            &mut self,
            ehlo: bool,
            name: Option<&str>,
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            self.command(|session| session.hello(ehlo, name)) $($await)*
        }

        /// Sends one command that `start` writes and returns its reply (the crate's relay
        /// sends MAIL and RCPT one at a time this way).
        pub(crate) $($async)* fn command(
            &mut self,
            start: impl FnOnce(
                &mut $crate::client::ClientSession,
            ) -> Result<(), $crate::client::ClientError>,
        ) -> Result<$crate::reply::Reply, $crate::client::error::Error> {
            let op = self.runner.command(start, self.io.now());
            self.io.drive(op, NO_BODY, $crate::client::runner::no_results) $($await)* .reply()
        }
    };
}
pub(crate) use client_api;

/// The `Debug` of a client driver: hand-written so that neither the session (which holds
/// the credentials) nor the TLS state is printed.
macro_rules! client_debug {
    ($client:ident) => {
        impl std::fmt::Debug for $client {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($client))
                    .field("id", &self.runner.id())
                    .field("peer", &self.peer)
                    .field("tls", &self.is_tls())
                    .field("authenticated", &self.runner.session().is_authenticated())
                    .field("closed", &self.is_closed())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use client_debug;
