//! How a server session is configured: limits, extensions offered, timeouts.

use std::time::Duration;

use crate::data::BareLinePolicy;
use crate::ehlo::AuthMechanism;

/// How a server session behaves. Every limit has a default fit for a public MX.
///
/// ```
/// use smtp_core::server::ServerConfig;
/// let mut config = ServerConfig::new("mx.example");
/// config.max_message_size = 10 << 20;
/// config.max_recipients = 50;
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name the server gives in its greeting and replies.
    pub hostname: String,
    /// Text after the hostname in the 220 greeting. Default `"ESMTP smtpx"` (or `"LMTP smtpx"`).
    pub banner: Option<String>,
    /// Speak LMTP (RFC 2033): LHLO instead of HELO/EHLO and one DATA reply per recipient.
    /// Default false.
    pub lmtp: bool,
    /// Longest command line accepted, CRLF included. Default 4096 (RFC 5321's minimum is 512).
    pub max_line_len: usize,
    /// Largest message in octets, announced as SIZE and enforced on the content. Default 25 MiB.
    /// `u64::MAX` means no limit: SIZE is then not announced.
    pub max_message_size: u64,
    /// Most recipients per message (452 beyond). Default 100, RFC 5321 §4.5.3.1.8's minimum.
    pub max_recipients: usize,
    /// Error replies allowed before the session is closed with 421. Default 20.
    pub max_errors: u32,
    /// Failed AUTH attempts allowed before the session is closed with 421. Default 3.
    pub max_auth_failures: u32,
    /// What to do with a lone CR or LF in message content. Default: normalise to CRLF.
    pub bare_line_policy: BareLinePolicy,
    /// Announce and serve PIPELINING. Default true.
    pub pipelining: bool,
    /// Enforce pipelining synchronisation (RFC 2920 §3.1; Postfix's
    /// `smtpd_forbid_unauth_pipelining`, Exim's `smtp_enforce_sync`). Input already waiting
    /// behind a command that must end a group (EHLO, HELO, LHLO, DATA, VRFY, EXPN, QUIT,
    /// NOOP, STARTTLS, AUTH but AUTH PLAIN with its initial response), any command
    /// pipelined by a client that was not offered PIPELINING, and input sent before the
    /// greeting get `554 5.5.0 Error: SMTP protocol synchronization` and the session ends.
    /// Bytes after the final dot of a message are the start of the next group and are
    /// allowed, so a client may chain `MAIL`/`RCPT`/`DATA` or `QUIT` behind the dot.
    /// Default true.
    pub pipelining_sync: bool,
    /// Announce and serve CHUNKING (BDAT) and BINARYMIME. Default true.
    pub chunking: bool,
    /// Announce 8BITMIME. Default true.
    pub eight_bit_mime: bool,
    /// Announce and accept SMTPUTF8. Default true.
    pub smtputf8: bool,
    /// Announce DSN and accept its parameters. Default true.
    pub dsn: bool,
    /// Announce ENHANCEDSTATUSCODES and put enhanced codes on replies. Default true.
    pub enhanced_status_codes: bool,
    /// The driver can do TLS, so STARTTLS is offered. Default false.
    pub starttls: bool,
    /// The connection is already encrypted (implicit TLS, port 465). Default false.
    pub tls_active: bool,
    /// Refuse every command but EHLO, HELO, LHLO, STARTTLS, NOOP, RSET and QUIT with
    /// `530 5.7.0 Must issue a STARTTLS command first` until TLS is active (RFC 3207 §4).
    /// Default false.
    pub require_tls: bool,
    /// SASL mechanisms offered. Empty (the default): the server drivers offer those of
    /// the handler ([`Handler::auth_mechanisms`](crate::handler::Handler::auth_mechanisms)),
    /// and AUTH is not offered when it names none.
    pub auth_mechanisms: Vec<AuthMechanism>,
    /// Offer and accept AUTH without TLS. Default false: passwords never travel in clear.
    pub allow_insecure_auth: bool,
    /// Refuse MAIL until the client has authenticated. Default false.
    pub require_auth: bool,
    /// Wait this long before the greeting; a client that talks first gets 554 and is
    /// closed (RFC 5321 §4.3.1 forbids talking before the greeting). Default none.
    pub greeting_delay: Option<Duration>,
    /// Time allowed for each command line, from the moment the server is ready for it;
    /// bytes trickling in do not extend it. Default 5 minutes (RFC 5321 §4.5.3.2.7).
    pub command_timeout: Duration,
    /// Time allowed between lines (or 1 KiB of BDAT content) while a message is read.
    /// Default 3 minutes (RFC 5321 §4.5.3.2.5's data block timeout).
    pub data_timeout: Duration,
    /// The handler answers more: NOOP, RSET (in a transaction or not) and QUIT become
    /// decision events (hooks `noop`, `rset`, `quit`), and a positive reply to HELO, EHLO
    /// or LHLO is said instead of the standard one (an EHLO reply with its extension lines
    /// edited; what the session accepts stays the same). Default false: the session
    /// answers those itself. aiosmtpd-style servers (Python) turn it on.
    pub handler_replies: bool,
    /// How many times each command may be given in one session (aiosmtpd's
    /// `command_call_limit`); `None` (the default) counts nothing. The command over its
    /// limit is answered `421 4.7.0 <VERB> sent too many times` and the session closes.
    pub command_limits: Option<CommandLimits>,
}

/// Per-command limits for [`ServerConfig::command_limits`]: each verb's own, else
/// `default`. Counted per session, for commands that parse (a malformed line counts
/// toward [`ServerConfig::max_errors`] instead).
///
/// ```
/// use smtp_core::server::CommandLimits;
/// let limits = CommandLimits::new(20).with("NOOP", 5).with("rcpt", 200);
/// assert_eq!(limits.limit("NOOP"), 5);
/// assert_eq!(limits.limit("RCPT"), 200);
/// assert_eq!(limits.limit("MAIL"), 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// The limit of the verbs not listed in `per_verb`.
    pub default: u32,
    /// Verbs (as written on the wire, any case) with their own limit.
    pub per_verb: Vec<(String, u32)>,
}

impl CommandLimits {
    /// Every command at most `default` times per session.
    pub fn new(default: u32) -> CommandLimits {
        CommandLimits {
            default,
            per_verb: Vec::new(),
        }
    }

    /// The same, with `verb`'s own limit.
    #[must_use]
    pub fn with(mut self, verb: &str, limit: u32) -> CommandLimits {
        self.per_verb.push((verb.to_ascii_uppercase(), limit));
        self
    }

    /// How many times `verb` may be given.
    pub fn limit(&self, verb: &str) -> u32 {
        self.per_verb
            .iter()
            .rev()
            .find(|(v, _)| v.eq_ignore_ascii_case(verb))
            .map_or(self.default, |(_, limit)| *limit)
    }
}

impl ServerConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(hostname: impl Into<String>) -> ServerConfig {
        ServerConfig {
            hostname: hostname.into(),
            banner: None,
            lmtp: false,
            max_line_len: 4096,
            max_message_size: 25 << 20,
            max_recipients: 100,
            max_errors: 20,
            max_auth_failures: 3,
            bare_line_policy: BareLinePolicy::Normalize,
            pipelining: true,
            pipelining_sync: true,
            chunking: true,
            eight_bit_mime: true,
            smtputf8: true,
            dsn: true,
            enhanced_status_codes: true,
            starttls: false,
            tls_active: false,
            require_tls: false,
            auth_mechanisms: Vec::new(),
            allow_insecure_auth: false,
            require_auth: false,
            greeting_delay: None,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            handler_replies: false,
            command_limits: None,
        }
    }
}
