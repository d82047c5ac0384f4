//! Enhanced status codes (RFC 3463) and the named ones this crate uses.

use std::fmt;

use super::ReplyCode;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
///
/// The fields are public so any code can be expressed; [`EnhancedCode::parse`]
/// only accepts what RFC 3463 allows (class 2, 4 or 5; subject and detail of
/// at most three digits), so a code outside that range is written but will
/// not be recognised when read back.
///
/// ```
/// use smtp_core::reply::EnhancedCode;
///
/// let code = EnhancedCode::parse("5.1.1").unwrap();
/// assert_eq!(code, EnhancedCode::new(5, 1, 1));
/// assert_eq!(code.to_string(), "5.1.1");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject: 0 other, 1 addressing, 2 mailbox, 3 mail system,
    /// 4 network and routing, 5 mail delivery protocol, 6 message content,
    /// 7 security or policy.
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedCode {
    /// The code `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Parses `"2.1.0"`: class 2, 4 or 5; subject and detail of 1 to 3 digits
    /// each (0..=999). Anything else, including surrounding spaces, gives
    /// `None`.
    ///
    /// ```
    /// use smtp_core::reply::EnhancedCode;
    ///
    /// assert_eq!(EnhancedCode::parse("4.7.0"), Some(EnhancedCode::new(4, 7, 0)));
    /// assert_eq!(EnhancedCode::parse("3.0.0"), None);
    /// assert_eq!(EnhancedCode::parse("2.1000.0"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_bytes(s.as_bytes())
    }

    /// Byte form of `parse`, so the reply reader can look at raw line text
    /// before it is converted to a string.
    pub(super) fn parse_bytes(s: &[u8]) -> Option<Self> {
        let mut parts = s.split(|&b| b == b'.');
        let class = match parts.next()? {
            [c @ (b'2' | b'4' | b'5')] => c - b'0',
            _ => return None,
        };
        let subject = parse_short_number(parts.next()?)?;
        let detail = parse_short_number(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(EnhancedCode::new(class, subject, detail))
    }

    /// The class digit must match the reply code's first digit for the code
    /// to be meaningful on a reply (RFC 3463 §2).
    pub(super) const fn matches(self, code: ReplyCode) -> bool {
        self.class == code.class().digit()
    }

    /// 2.0.0: Other or undefined success; the generic OK.
    pub const OK: EnhancedCode = EnhancedCode::new(2, 0, 0);
    /// 2.1.0: Other address status; used to accept the sender (MAIL FROM).
    pub const SENDER_OK: EnhancedCode = EnhancedCode::new(2, 1, 0);
    /// 2.1.5: Destination address valid; used to accept a recipient (RCPT TO).
    pub const RECIPIENT_OK: EnhancedCode = EnhancedCode::new(2, 1, 5);
    /// 2.6.0: Other or undefined media error, used as success for an accepted
    /// message after DATA.
    pub const MESSAGE_ACCEPTED: EnhancedCode = EnhancedCode::new(2, 6, 0);
    /// 2.0.0: the reply to QUIT (221).
    pub const CLOSING: EnhancedCode = EnhancedCode::new(2, 0, 0);
    /// 2.7.0: Other or undefined security status; authentication succeeded (235, RFC 4954).
    pub const AUTH_SUCCEEDED: EnhancedCode = EnhancedCode::new(2, 7, 0);
    /// 5.1.1: Bad destination mailbox address; the recipient does not exist.
    pub const BAD_DESTINATION: EnhancedCode = EnhancedCode::new(5, 1, 1);
    /// 5.5.2: Syntax error; the command is not recognised.
    pub const SYNTAX_ERROR: EnhancedCode = EnhancedCode::new(5, 5, 2);
    /// 5.5.1: Invalid command; a command that is known but not allowed.
    pub const INVALID_COMMAND: EnhancedCode = EnhancedCode::new(5, 5, 1);
    /// 5.5.1: Invalid command, used for a bad sequence of commands (503).
    pub const BAD_SEQUENCE: EnhancedCode = EnhancedCode::new(5, 5, 1);
    /// 5.5.4: Invalid command arguments.
    pub const INVALID_ARGS: EnhancedCode = EnhancedCode::new(5, 5, 4);
    /// 4.5.3: Too many recipients (452, RFC 5321 §4.5.3.1.10).
    pub const TOO_MANY_RECIPIENTS: EnhancedCode = EnhancedCode::new(4, 5, 3);
    /// 5.3.4: Message too big for system (552, RFC 1870).
    pub const MESSAGE_TOO_BIG: EnhancedCode = EnhancedCode::new(5, 3, 4);
    /// 4.2.2: Mailbox full, as a transient failure (452).
    pub const MAILBOX_FULL: EnhancedCode = EnhancedCode::new(4, 2, 2);
    /// 5.2.2: Mailbox full, as a permanent failure (552).
    pub const MAILBOX_FULL_PERMANENT: EnhancedCode = EnhancedCode::new(5, 2, 2);
    /// 5.7.8: Authentication credentials invalid (535, RFC 4954).
    pub const AUTH_INVALID: EnhancedCode = EnhancedCode::new(5, 7, 8);
    /// 5.7.0: Other or undefined security status; authentication required
    /// (530, RFC 4954).
    pub const AUTH_REQUIRED: EnhancedCode = EnhancedCode::new(5, 7, 0);
    /// 5.7.9: Authentication mechanism is too weak (534, RFC 4954).
    pub const AUTH_TOO_WEAK: EnhancedCode = EnhancedCode::new(5, 7, 9);
    /// 4.7.0: Temporary authentication failure (454, RFC 4954).
    pub const AUTH_TEMP_FAILURE: EnhancedCode = EnhancedCode::new(4, 7, 0);
    /// 5.7.11: Encryption required for requested authentication mechanism (538, RFC 4954).
    pub const ENCRYPTION_REQUIRED: EnhancedCode = EnhancedCode::new(5, 7, 11);
    /// 5.7.0: Must issue a STARTTLS command first (530, RFC 3207).
    pub const TLS_REQUIRED: EnhancedCode = EnhancedCode::new(5, 7, 0);
    /// 4.3.0: Other or undefined mail system status; a temporary local error (451).
    pub const TEMP_LOCAL_ERROR: EnhancedCode = EnhancedCode::new(4, 3, 0);
    /// 4.3.2: System not accepting network messages (421).
    pub const SERVICE_UNAVAILABLE: EnhancedCode = EnhancedCode::new(4, 3, 2);
    /// 4.4.2: Bad connection; used when the peer timed out (421).
    pub const TIMEOUT: EnhancedCode = EnhancedCode::new(4, 4, 2);
    /// 4.4.0: Other or undefined network or routing status.
    pub const NETWORK_ERROR: EnhancedCode = EnhancedCode::new(4, 4, 0);
    /// 5.5.0: Other or undefined protocol status; used for a pipelining
    /// synchronisation error (554, RFC 2920 §3.1).
    pub const PROTOCOL_ERROR: EnhancedCode = EnhancedCode::new(5, 5, 0);
    /// 5.5.6: Syntax error, a line too long; also a SASL response over its
    /// limit (500, RFC 4954 §4).
    pub const LINE_TOO_LONG: EnhancedCode = EnhancedCode::new(5, 5, 6);
    /// 4.7.0: too many connections (the server is at its limit; try again later).
    pub const TOO_MANY_CONNECTIONS: EnhancedCode = EnhancedCode::new(4, 7, 0);
    /// 2.5.0: Other or undefined protocol status; a positive reply that promises nothing,
    /// such as 252 to VRFY or EXPN.
    pub const PROTOCOL_OK: EnhancedCode = EnhancedCode::new(2, 5, 0);
    /// 5.7.1: Delivery not authorized, message refused; the default when a hook refuses
    /// a greeting, a sender or a message.
    pub const NOT_AUTHORIZED: EnhancedCode = EnhancedCode::new(5, 7, 1);
    /// 4.7.0: Other or undefined security status, temporary; the session ends after too
    /// many errors or failed authentications (421).
    pub const TOO_MANY_ERRORS: EnhancedCode = EnhancedCode::new(4, 7, 0);
    /// 5.6.7: Non-ASCII addresses not permitted for that sender or recipient (553; defined
    /// by RFC 6531 §3.7.4.1 for SMTPUTF8, after RFC 3463's media subjects).
    pub const NON_ASCII_ADDRESS: EnhancedCode = EnhancedCode::new(5, 6, 7);
    /// 5.0.0: Other undefined status, permanent; used when the client cancels an AUTH
    /// exchange with `*` (501, RFC 4954 §4).
    pub const PERMANENT_FAILURE: EnhancedCode = EnhancedCode::new(5, 0, 0);
    /// 4.3.1: Mail system full; the local disk is out of space (452).
    pub const SYSTEM_FULL: EnhancedCode = EnhancedCode::new(4, 3, 1);
    /// 5.1.3: Bad destination mailbox address syntax (501 to RCPT).
    pub const BAD_DESTINATION_SYNTAX: EnhancedCode = EnhancedCode::new(5, 1, 3);
    /// 5.1.7: Bad sender's mailbox address syntax (501 to MAIL).
    pub const BAD_SENDER_SYNTAX: EnhancedCode = EnhancedCode::new(5, 1, 7);
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One to three ASCII digits, as RFC 3463 allows for subject and detail.
pub(super) fn parse_short_number(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 3 {
        return None;
    }
    let mut value = 0u16;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u16::from(b - b'0');
    }
    Some(value)
}
