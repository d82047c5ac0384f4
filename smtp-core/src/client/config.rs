//! How a client session is configured: its HELO name, STARTTLS and AUTH policy, limits
//! and timeouts.

use std::time::Duration;

use crate::auth::Credentials;
use crate::reply::ReplyLimits;

/// Whether to upgrade a plain connection with STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartTlsPolicy {
    /// Never send STARTTLS.
    Never,
    /// Upgrade when the server offers it; go on in clear otherwise.
    #[default]
    Opportunistic,
    /// Upgrade or stop: a server that does not offer STARTTLS, or refuses it, ends the
    /// session with an error before any mail or credentials are sent.
    Required,
}

/// Per-phase reply timeouts. The defaults are RFC 5321 §4.5.3.2's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// Waiting for the 220 greeting. Default 5 minutes.
    pub greeting: Duration,
    /// Waiting for the reply to EHLO, HELO, STARTTLS, AUTH, RSET, NOOP, VRFY, EXPN, HELP,
    /// QUIT and MAIL. Default 5 minutes.
    pub command: Duration,
    /// Waiting for the reply to each RCPT. Default 5 minutes.
    pub rcpt: Duration,
    /// Waiting for the 354 to DATA. Default 2 minutes.
    pub data_start: Duration,
    /// Waiting for the reply to a BDAT chunk that is not the last. Default 3 minutes.
    pub data_block: Duration,
    /// Waiting for the reply after the final dot or the last BDAT chunk. Default 10 minutes.
    pub data_end: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            rcpt: Duration::from_secs(300),
            data_start: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
        }
    }
}

/// How a client session behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent with EHLO/HELO/LHLO. Default `localhost`.
    pub helo_name: String,
    /// Speak LMTP: LHLO, and one reply per recipient after the message. Default false.
    pub lmtp: bool,
    /// STARTTLS policy. Default [`StartTlsPolicy::Opportunistic`].
    pub starttls: StartTlsPolicy,
    /// The connection is already encrypted (implicit TLS). Default false.
    pub tls_active: bool,
    /// Authenticate with these after the greeting (and TLS). Default none.
    pub credentials: Option<Credentials>,
    /// Allow AUTH on a connection that is not encrypted. Default false: without TLS,
    /// authentication (configured or by [`ClientSession::login`]) fails with
    /// [`ClientError::InsecureAuth`] before any credential is written, since PLAIN, LOGIN
    /// and XOAUTH2 only base64-encode the secret.
    ///
    /// [`ClientSession::login`]: super::ClientSession::login
    /// [`ClientError::InsecureAuth`]: super::ClientError::InsecureAuth
    pub allow_insecure_auth: bool,
    /// Pipeline when the server offers PIPELINING. Default true.
    pub pipelining: bool,
    /// Send the message with BDAT when the server offers CHUNKING. Default true.
    pub chunking: bool,
    /// Bounds on the replies read.
    pub reply_limits: ReplyLimits,
    /// Reply timeouts.
    pub timeouts: ClientTimeouts,
}

impl ClientConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.into(),
            lmtp: false,
            starttls: StartTlsPolicy::Opportunistic,
            tls_active: false,
            credentials: None,
            allow_insecure_auth: false,
            pipelining: true,
            chunking: true,
            reply_limits: ReplyLimits::default(),
            timeouts: ClientTimeouts::default(),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new("localhost")
    }
}
