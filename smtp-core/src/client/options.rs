//! How a client connection is set up ([`ClientOptions`], [`TlsMode`]) and what the drivers
//! make of it before a socket exists ([`TlsSetup`] and the session).

use crate::trace::TraceSink;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::auth::Credentials;
use crate::client::error::{Error, ErrorKind};
use crate::client::{ClientConfig, ClientSession, ClientTimeouts, StartTlsPolicy};
use crate::tls;

/// How a connection is encrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plain text throughout; STARTTLS is never sent.
    None,
    /// Upgrade with STARTTLS when the server offers it; go on in clear when it does not (or
    /// refuses). Protects against passive eavesdropping only.
    #[default]
    StartTlsOpportunistic,
    /// Upgrade with STARTTLS or fail before any credentials or mail are sent.
    StartTlsRequired,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

/// How a client driver (`SmtpClient::connect`, `AsyncSmtpClient::connect`) sets up a
/// connection.
#[derive(Clone)]
pub struct ClientOptions {
    /// The name sent with EHLO, HELO or LHLO: this host's fully qualified domain name, or an
    /// address literal such as `[192.0.2.1]`.
    pub helo_name: String,
    /// How the connection is encrypted. Default [`TlsMode::StartTlsOpportunistic`].
    pub tls: TlsMode,
    /// The rustls configuration for TLS; `None` uses [`tls::default_client_config`] (the
    /// webpki roots, full verification; one per process, so connections again to the
    /// same server resume their TLS session). Share one configuration between
    /// connections: it caches sessions for resumption. Default `None`.
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Authenticate with these once the greeting (and TLS) is done; a refusal makes
    /// `connect` fail. Default `None`.
    pub credentials: Option<Credentials>,
    /// Allow AUTH (the configured credentials, or a later `login`) on a connection that is
    /// not encrypted: [`TlsMode::None`], or an opportunistic STARTTLS the server did not
    /// offer. Default false: such an attempt fails with [`ErrorKind::InsecureAuth`] before
    /// any credential is written.
    pub allow_insecure_auth: bool,
    /// How long to wait for each TCP connection attempt (one per resolved address), and
    /// for the handshake of implicit TLS. Name resolution itself is not bounded by it.
    /// Default 30 seconds.
    pub connect_timeout: Duration,
    /// How long to wait for each reply; the defaults are RFC 5321's. The STARTTLS
    /// handshake gets [`ClientTimeouts::command`], and each write
    /// [`ClientTimeouts::data_block`].
    pub timeouts: ClientTimeouts,
    /// Speak LMTP (RFC 2033): LHLO, and one reply per recipient after the message.
    /// Default false.
    pub lmtp: bool,
    /// Pipeline commands when the server offers PIPELINING. Default true.
    pub pipelining: bool,
    /// Send messages with BDAT when the server offers CHUNKING (and PIPELINING). Default
    /// true.
    pub chunking: bool,
    /// The wire trace of the connection (commands and replies, secrets redacted; see
    /// [`crate::trace`]). Default none.
    pub trace: Option<TraceSink>,
}

impl ClientOptions {
    /// Options with the defaults documented on each field.
    pub fn new(helo_name: impl Into<String>) -> ClientOptions {
        ClientOptions {
            helo_name: helo_name.into(),
            tls: TlsMode::default(),
            tls_config: None,
            credentials: None,
            allow_insecure_auth: false,
            connect_timeout: Duration::from_secs(30),
            timeouts: ClientTimeouts::default(),
            lmtp: false,
            pipelining: true,
            chunking: true,
            trace: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("helo_name", &self.helo_name)
            .field("tls", &self.tls)
            .field("tls_config", &self.tls_config.as_ref().map(|_| "custom"))
            // Not even the user name: logs of options should not say who sends.
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_insecure_auth", &self.allow_insecure_auth)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeouts", &self.timeouts)
            .field("lmtp", &self.lmtp)
            .field("pipelining", &self.pipelining)
            .field("chunking", &self.chunking)
            .field("trace", &self.trace.is_some())
            .finish()
    }
}

/// What the STARTTLS or implicit TLS handshake needs.
#[derive(Clone)]
pub struct TlsSetup {
    /// The rustls configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry.
    pub server_name: ServerName<'static>,
}

impl TlsSetup {
    /// The setup for a server known as `server_name`, with `config` or (`None`) the
    /// default client configuration ([`tls::client_config`]).
    pub fn new(
        server_name: &str,
        config: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<TlsSetup, Error> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{server_name:?} is not a valid TLS server name"),
            )
        })?;
        let config = match config {
            Some(config) => config,
            None => tls::default_client_config()?,
        };
        Ok(TlsSetup {
            config,
            server_name: name,
        })
    }
}

impl fmt::Debug for TlsSetup {
    // The configuration holds keys and caches: its name is enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSetup")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Client connection ids, unique within the process (both drivers), for logs and the trace.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// What both client drivers make of [`ClientOptions`] before any connection is opened:
/// the engine session (made now, it refuses a bad HELO name or credentials before a
/// socket exists) and the TLS setup.
pub(crate) struct Prepared {
    /// The connection's id, for logs and the trace.
    pub(crate) id: u64,
    pub(crate) session: ClientSession,
    pub(crate) tls: Option<TlsSetup>,
    pub(crate) tls_mode: TlsMode,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeouts: ClientTimeouts,
}

/// Checks `options` and turns them into the engine's configuration; the session's time
/// starts at zero, which each driver takes as the moment it connects.
pub(crate) fn prepare(options: ClientOptions, server_name: &str) -> Result<Prepared, Error> {
    let ClientOptions {
        helo_name,
        tls: tls_mode,
        tls_config,
        credentials,
        allow_insecure_auth,
        connect_timeout,
        timeouts,
        lmtp,
        pipelining,
        chunking,
        trace,
    } = options;
    let mut config = ClientConfig::new(helo_name);
    config.lmtp = lmtp;
    config.pipelining = pipelining;
    config.chunking = chunking;
    config.credentials = credentials;
    config.allow_insecure_auth = allow_insecure_auth;
    config.timeouts = timeouts;
    config.tls_active = tls_mode == TlsMode::Implicit;
    config.starttls = match tls_mode {
        TlsMode::StartTlsOpportunistic => StartTlsPolicy::Opportunistic,
        TlsMode::StartTlsRequired => StartTlsPolicy::Required,
        TlsMode::None | TlsMode::Implicit => StartTlsPolicy::Never,
    };
    if connect_timeout.is_zero() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "the connect timeout must not be zero",
        ));
    }
    let mut session = ClientSession::new(config, Duration::ZERO)?;
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    if let Some(trace) = trace {
        session.set_trace(trace, id);
    }
    let tls = match tls_mode {
        TlsMode::None => None,
        _ => Some(TlsSetup::new(server_name, tls_config)?),
    };

    Ok(Prepared {
        id,
        session,
        tls,
        tls_mode,
        connect_timeout,
        timeouts,
    })
}
