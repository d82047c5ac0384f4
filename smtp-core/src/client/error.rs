//! The client drivers' error: a [kind](ErrorKind), the server's reply when there was one,
//! and the underlying error. Shared by the client runner and every driver, so a
//! failure reads the same whichever driver met it.

use std::fmt;
use std::io;

use crate::client::{ClientError, Phase};
use crate::reply::Reply;
use crate::tls::{TlsError, TlsErrorKind};

/// What kind of failure an [`Error`] is. Each kind is meant to become one C result code and
/// one Python exception class; the smtplib counterpart is named where there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The network failed: name resolution, connection refused or reset, a write to a
    /// closed socket. The [`std::io::Error`] is the error's source. (`OSError`)
    Io,
    /// TLS failed: the configuration could not be built, the handshake failed, or the
    /// server's certificate was not trusted. (`ssl.SSLError`)
    Tls,
    /// Connecting, the TLS handshake, a write, or a reply took too long. (`TimeoutError`)
    Timeout,
    /// An argument, address, parameter, HELO name or credential would have injected
    /// commands (CR, LF or NUL) or is otherwise unusable; nothing was sent. (`ValueError`)
    InvalidArgument,
    /// The call does not fit the connection's state: it is closed after an earlier
    /// failure, or another exchange is under way. Nothing was sent.
    NotReady,
    /// The server refused the connection in its greeting; see [`Error::reply`].
    /// (`SMTPConnectError`)
    Greeting,
    /// The server refused EHLO and then HELO (or LHLO); see [`Error::reply`].
    /// (`SMTPHeloError`)
    Hello,
    /// STARTTLS is required but the server does not offer it; nothing else was sent.
    /// (`SMTPNotSupportedError`)
    StartTlsUnavailable,
    /// The server refused STARTTLS; see [`Error::reply`]. (`SMTPResponseException`)
    StartTlsRefused,
    /// No authentication mechanism both sides support (the server may offer AUTH only
    /// after TLS). (`SMTPNotSupportedError`)
    AuthUnsupported,
    /// The server refused the credentials; see [`Error::reply`].
    /// (`SMTPAuthenticationError`)
    AuthFailed,
    /// Authentication was asked for on a connection without TLS, which the options do not
    /// allow (`allow_insecure_auth`); no credential was sent. Under `connect` the
    /// connection was ended with QUIT. (An `SMTPException`; smtplib would send in clear.)
    InsecureAuth,
    /// The message is larger than the server's SIZE limit; nothing was sent.
    MessageTooLarge,
    /// An address needs SMTPUTF8, which the server does not offer; nothing was sent.
    /// (`SMTPNotSupportedError`)
    SmtpUtf8Unsupported,
    /// The server closed the session with 421; see [`Error::reply`].
    /// (`SMTPServerDisconnected`)
    ServerClosed,
    /// The connection ended while a reply was expected. (`SMTPServerDisconnected`)
    ConnectionClosed,
    /// The server sent something that is not a valid reply, or a reply nobody asked for.
    /// (`SMTPResponseException`)
    Protocol,
    /// Reading the message from the caller's source (a `Read` or `AsyncRead`) failed part-way. The connection was
    /// closed, because ending the message any other way would deliver it truncated. The
    /// [`std::io::Error`] is the error's source.
    MessageSource,
}

/// A failed client operation: a [kind](ErrorKind), the server's reply when there was one,
/// and the underlying error as [`std::error::Error::source`].
///
/// Its `Display` form is complete on its own (bindings show only that), so it repeats the
/// source's text.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    client: Option<ClientError>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// Where the session was when a failure ended the connection.
    phase: Option<Phase>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            client: None,
            source: None,
            phase: None,
        }
    }

    /// An I/O error with what was being done; rustls errors inside it become
    /// [`ErrorKind::Tls`] and expired socket timeouts [`ErrorKind::Timeout`].
    pub(crate) fn io(context: &str, error: io::Error) -> Error {
        let kind = match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            if let Some(inner) = error.into_inner() {
                return Error {
                    kind: ErrorKind::Tls,
                    message: format!("{context}: {inner}"),
                    client: None,
                    source: Some(inner),
                    phase: None,
                };
            }
            // into_inner gave nothing back although get_ref saw something: cannot happen.
            return Error::new(ErrorKind::Tls, context.to_owned());
        }
        Error {
            kind,
            message: format!("{context}: {error}"),
            client: None,
            source: Some(Box::new(error)),
            phase: None,
        }
    }

    /// rustls refused to start a TLS connection (a configuration it cannot use).
    pub(crate) fn tls_start(error: rustls::Error) -> Error {
        Error {
            kind: ErrorKind::Tls,
            message: format!("cannot start TLS: {error}"),
            client: None,
            source: Some(Box::new(error)),
            phase: None,
        }
    }

    /// Reading the caller's message failed; the connection was closed so that no truncated
    /// message is delivered (both drivers).
    pub(crate) fn message_source(error: io::Error) -> Error {
        let mut error = Error::io("cannot read the message", error);
        error.kind = ErrorKind::MessageSource;
        error
            .message
            .push_str(" (the connection was closed so that no truncated message is delivered)");
        error
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's reply behind the error, when there is one (a refused greeting, EHLO,
    /// STARTTLS or AUTH, or a 421).
    pub fn reply(&self) -> Option<&Reply> {
        self.client.as_ref().and_then(ClientError::reply)
    }

    /// The engine's error, unchanged, when the failure came from the session (every kind
    /// but `Io`, `Tls`, `MessageSource` and the driver's own timeouts).
    pub fn client_error(&self) -> Option<&ClientError> {
        self.client.as_ref()
    }

    /// True when trying again later may succeed: network failures, timeouts, a closed
    /// connection, and refusals with a 4xx reply.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ErrorKind::Io
            | ErrorKind::Timeout
            | ErrorKind::ConnectionClosed
            | ErrorKind::ServerClosed => true,
            ErrorKind::Greeting
            | ErrorKind::Hello
            | ErrorKind::StartTlsRefused
            | ErrorKind::AuthFailed => self.reply().is_some_and(Reply::is_transient),
            _ => false,
        }
    }

    /// For a [`ErrorKind::Tls`] failure, what it was about: a certificate problem
    /// (unknown issuer, name mismatch, expired, a CA used as end entity...) or this
    /// side's configuration; `None` for other kinds.
    ///
    /// ```no_run
    /// # use smtp_core::blocking::client::{ClientOptions, SmtpClient};
    /// # use smtp_core::tls::TlsErrorKind;
    /// match SmtpClient::connect("mx.example.net:25", "mx.example.net", ClientOptions::new("me.example")) {
    ///     Err(e) if e.tls_kind() == Some(TlsErrorKind::UnknownIssuer) => eprintln!("untrusted: {e}"),
    ///     Err(e) if e.tls_kind().is_some_and(|k| k.is_certificate()) => eprintln!("bad certificate: {e}"),
    ///     Err(e) => eprintln!("{e}"),
    ///     Ok(_client) => {}
    /// }
    /// ```
    pub fn tls_kind(&self) -> Option<TlsErrorKind> {
        if self.kind != ErrorKind::Tls {
            return None;
        }
        // A TLS error without a classifiable source is about the set-up.
        Some(
            self.source
                .as_deref()
                .and_then(|s| TlsErrorKind::of(s as &(dyn std::error::Error + 'static)))
                .unwrap_or(TlsErrorKind::Configuration),
        )
    }

    /// Where the conversation was when this failure ended the connection (a timeout, a
    /// hang-up, a network or TLS failure, a protocol error): the greeting, EHLO, STARTTLS,
    /// AUTH, MAIL, RCPT, DATA, after the end of data... `None` for failures that leave
    /// the connection usable (a refusal, a bad argument).
    pub fn phase(&self) -> Option<Phase> {
        self.phase
    }

    /// True when a message may have been delivered although this error came instead of
    /// its reply: the connection ended after the end of the content
    /// ([`Phase::AfterData`]). Resending may deliver it twice.
    pub fn delivery_unknown(&self) -> bool {
        self.phase.is_some_and(Phase::delivery_unknown)
    }

    /// Records where the session was, for an error that ended the connection (the
    /// runner's, for every driver); the message says it too.
    pub(crate) fn in_phase(mut self, phase: Phase) -> Error {
        if self.phase.is_none() && phase != Phase::Idle && self.ends_connection() {
            self.phase = Some(phase);
            self.message.push_str(&format!(" (during {phase}"));
            if phase.delivery_unknown() {
                self.message
                    .push_str("; the message may have been delivered");
            }
            self.message.push(')');
        }
        self
    }

    fn ends_connection(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Io
                | ErrorKind::Tls
                | ErrorKind::Timeout
                | ErrorKind::ConnectionClosed
                | ErrorKind::ServerClosed
                | ErrorKind::Protocol
        )
    }

    /// True when something took longer than its timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    // The engine's error is not a source: it is this error, as `client_error` gives it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<ClientError> for Error {
    fn from(error: ClientError) -> Error {
        let kind = match &error {
            ClientError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            ClientError::NotReady => ErrorKind::NotReady,
            ClientError::Greeting(_) => ErrorKind::Greeting,
            ClientError::Hello(_) => ErrorKind::Hello,
            ClientError::StartTlsUnavailable => ErrorKind::StartTlsUnavailable,
            ClientError::StartTlsRefused(_) => ErrorKind::StartTlsRefused,
            ClientError::AuthUnsupported => ErrorKind::AuthUnsupported,
            ClientError::AuthFailed(_) => ErrorKind::AuthFailed,
            ClientError::InsecureAuth => ErrorKind::InsecureAuth,
            ClientError::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
            ClientError::SmtpUtf8Unsupported => ErrorKind::SmtpUtf8Unsupported,
            ClientError::ServerClosed(_) => ErrorKind::ServerClosed,
            ClientError::Protocol(_) => ErrorKind::Protocol,
            ClientError::Timeout => ErrorKind::Timeout,
            ClientError::ConnectionClosed => ErrorKind::ConnectionClosed,
        };
        Error {
            kind,
            message: error.to_string(),
            client: Some(error),
            source: None,
            phase: None,
        }
    }
}

impl From<TlsError> for Error {
    fn from(error: TlsError) -> Error {
        Error {
            kind: ErrorKind::Tls,
            message: error.to_string(),
            client: None,
            source: Some(Box::new(error)),
            phase: None,
        }
    }
}

impl From<crate::client::InvalidAddress> for Error {
    fn from(error: crate::client::InvalidAddress) -> Error {
        Error::from(ClientError::from(error))
    }
}
