//! SMTP replies: reply codes (RFC 5321 §4.2), enhanced status codes
//! (RFC 3463), the [`Reply`] type both sides use, and [`ReplyParser`], which
//! reads replies from a server incrementally.
//!
//! ```
//! use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
//!
//! let reply = Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), "queued");
//! assert_eq!(reply.to_bytes(), b"250 2.0.0 queued\r\n");
//! ```

use std::fmt;

/// A three-digit SMTP reply code (RFC 5321 §4.2).
///
/// Only codes the RFC 5321 reply grammar allows can be built: first digit
/// 2 to 5, second digit 0 to 5, third digit 0 to 9. Code that holds a
/// `ReplyCode` can therefore rely on [`ReplyCode::class`] being meaningful.
///
/// ```
/// use smtp_core::reply::{ReplyClass, ReplyCode};
///
/// let code = ReplyCode::new(250).unwrap();
/// assert_eq!(code, ReplyCode::OK);
/// assert_eq!(code.class(), ReplyClass::PositiveCompletion);
/// assert_eq!(code.to_string(), "250");
/// assert_eq!(ReplyCode::new(199), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// Returns the code for `code` if it is a valid reply code: 200..=599
    /// whose second digit is 0..=5 (RFC 5321 §4.2 reply grammar:
    /// `%x32-35 %x30-35 %x30-39`), and `None` otherwise.
    ///
    /// ```
    /// use smtp_core::reply::ReplyCode;
    ///
    /// assert!(ReplyCode::new(554).is_some());
    /// assert!(ReplyCode::new(260).is_none()); // second digit 6
    /// assert!(ReplyCode::new(600).is_none());
    /// ```
    pub const fn new(code: u16) -> Option<ReplyCode> {
        if code >= 200 && code <= 599 && (code / 10) % 10 <= 5 {
            Some(ReplyCode(code))
        } else {
            None
        }
    }

    /// The numeric value, e.g. `250`.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The class given by the first digit.
    pub const fn class(self) -> ReplyClass {
        match self.0 / 100 {
            2 => ReplyClass::PositiveCompletion,
            3 => ReplyClass::PositiveIntermediate,
            4 => ReplyClass::TransientNegative,
            // `new` only admits 2xx to 5xx, so this is 5xx.
            _ => ReplyClass::PermanentNegative,
        }
    }

    /// True for 2xx and 3xx: the command was accepted (or is in progress).
    pub const fn is_positive(self) -> bool {
        self.0 < 400
    }

    /// True for 2xx: the command completed successfully.
    pub const fn is_completion(self) -> bool {
        self.0 / 100 == 2
    }

    /// True for 3xx: the server waits for more input (DATA, AUTH).
    pub const fn is_intermediate(self) -> bool {
        self.0 / 100 == 3
    }

    /// True for 4xx: the command failed but may succeed if retried later.
    pub const fn is_transient(self) -> bool {
        self.0 / 100 == 4
    }

    /// True for 5xx: the command failed and must not be retried as is.
    pub const fn is_permanent(self) -> bool {
        self.0 / 100 == 5
    }

    /// The standard meaning of a named code (one of the constants of this
    /// type), `None` for other codes.
    ///
    /// ```
    /// use smtp_core::reply::ReplyCode;
    ///
    /// assert_eq!(ReplyCode::BAD_SEQUENCE.meaning(), Some("Bad sequence of commands"));
    /// assert_eq!(ReplyCode::new(259).unwrap().meaning(), None);
    /// ```
    pub fn meaning(self) -> Option<&'static str> {
        Some(match self.0 {
            211 => "System status, or system help reply",
            214 => "Help message",
            220 => "Service ready",
            221 => "Service closing transmission channel",
            235 => "Authentication successful",
            250 => "Requested mail action okay, completed",
            251 => "User not local; will forward",
            252 => "Cannot VRFY user, but will accept message and attempt delivery",
            334 => "Authentication challenge",
            354 => "Start mail input; end with <CRLF>.<CRLF>",
            421 => "Service not available, closing transmission channel",
            450 => "Requested mail action not taken: mailbox unavailable",
            451 => "Requested action aborted: local error in processing",
            452 => "Requested action not taken: insufficient system storage",
            454 => "TLS not available due to temporary reason",
            455 => "Server unable to accommodate parameters",
            500 => "Syntax error, command unrecognized",
            501 => "Syntax error in parameters or arguments",
            502 => "Command not implemented",
            503 => "Bad sequence of commands",
            504 => "Command parameter not implemented",
            530 => "Authentication required",
            534 => "Authentication mechanism is too weak",
            535 => "Authentication credentials invalid",
            538 => "Encryption required for requested authentication mechanism",
            550 => "Requested action not taken: mailbox unavailable",
            551 => "User not local; please try <forward-path>",
            552 => "Requested mail action aborted: exceeded storage allocation",
            553 => "Requested action not taken: mailbox name not allowed",
            554 => "Transaction failed",
            555 => "MAIL FROM/RCPT TO parameters not recognized or not implemented",
            _ => return None,
        })
    }

    /// 211: System status, or system help reply (RFC 5321).
    pub const SYSTEM_STATUS: ReplyCode = ReplyCode(211);
    /// 214: Help message (RFC 5321).
    pub const HELP_MESSAGE: ReplyCode = ReplyCode(214);
    /// 220: Service ready; the greeting (RFC 5321).
    pub const SERVICE_READY: ReplyCode = ReplyCode(220);
    /// 221: Service closing transmission channel; the reply to QUIT (RFC 5321).
    pub const CLOSING: ReplyCode = ReplyCode(221);
    /// 235: Authentication successful (RFC 4954).
    pub const AUTH_SUCCEEDED: ReplyCode = ReplyCode(235);
    /// 250: Requested mail action okay, completed (RFC 5321).
    pub const OK: ReplyCode = ReplyCode(250);
    /// 251: User not local; will forward (RFC 5321).
    pub const USER_NOT_LOCAL_WILL_FORWARD: ReplyCode = ReplyCode(251);
    /// 252: Cannot VRFY user, but will accept message and attempt delivery (RFC 5321).
    pub const CANNOT_VERIFY: ReplyCode = ReplyCode(252);
    /// 334: Server challenge during AUTH; the text is base64 (RFC 4954).
    pub const AUTH_CONTINUE: ReplyCode = ReplyCode(334);
    /// 354: Start mail input; end with `<CRLF>.<CRLF>` (RFC 5321).
    pub const START_MAIL_INPUT: ReplyCode = ReplyCode(354);
    /// 421: Service not available, closing transmission channel (RFC 5321).
    pub const SERVICE_UNAVAILABLE: ReplyCode = ReplyCode(421);
    /// 450: Requested mail action not taken: mailbox unavailable, e.g. busy
    /// or temporarily blocked (RFC 5321).
    pub const MAILBOX_BUSY: ReplyCode = ReplyCode(450);
    /// 451: Requested action aborted: local error in processing (RFC 5321).
    pub const LOCAL_ERROR: ReplyCode = ReplyCode(451);
    /// 452: Requested action not taken: insufficient system storage
    /// (RFC 5321); also "too many recipients".
    pub const INSUFFICIENT_STORAGE: ReplyCode = ReplyCode(452);
    /// 454: TLS not available due to temporary reason (RFC 3207); RFC 4954
    /// also uses it for a temporary authentication failure.
    pub const TLS_UNAVAILABLE: ReplyCode = ReplyCode(454);
    /// 455: Server unable to accommodate parameters (RFC 5321).
    pub const PARAMETERS_UNACCOMMODATED: ReplyCode = ReplyCode(455);
    /// 500: Syntax error, command unrecognized; also a command line too long (RFC 5321).
    pub const SYNTAX_ERROR: ReplyCode = ReplyCode(500);
    /// 501: Syntax error in parameters or arguments (RFC 5321).
    pub const PARAMETER_SYNTAX_ERROR: ReplyCode = ReplyCode(501);
    /// 502: Command not implemented (RFC 5321).
    pub const NOT_IMPLEMENTED: ReplyCode = ReplyCode(502);
    /// 503: Bad sequence of commands (RFC 5321).
    pub const BAD_SEQUENCE: ReplyCode = ReplyCode(503);
    /// 504: Command parameter not implemented (RFC 5321).
    pub const PARAMETER_NOT_IMPLEMENTED: ReplyCode = ReplyCode(504);
    /// 530: Authentication required (RFC 4954); RFC 3207 also uses it for
    /// "Must issue a STARTTLS command first".
    pub const AUTH_REQUIRED: ReplyCode = ReplyCode(530);
    /// 534: Authentication mechanism is too weak (RFC 4954).
    pub const AUTH_TOO_WEAK: ReplyCode = ReplyCode(534);
    /// 535: Authentication credentials invalid (RFC 4954).
    pub const AUTH_INVALID: ReplyCode = ReplyCode(535);
    /// 538: Encryption required for requested authentication mechanism (RFC 4954).
    pub const ENCRYPTION_REQUIRED: ReplyCode = ReplyCode(538);
    /// 550: Requested action not taken: mailbox unavailable, e.g. not found
    /// or rejected for policy reasons (RFC 5321).
    pub const MAILBOX_UNAVAILABLE: ReplyCode = ReplyCode(550);
    /// 551: User not local; please try `<forward-path>` (RFC 5321).
    pub const USER_NOT_LOCAL: ReplyCode = ReplyCode(551);
    /// 552: Requested mail action aborted: exceeded storage allocation (RFC 5321).
    pub const STORAGE_EXCEEDED: ReplyCode = ReplyCode(552);
    /// 553: Requested action not taken: mailbox name not allowed (RFC 5321).
    pub const MAILBOX_NAME_INVALID: ReplyCode = ReplyCode(553);
    /// 554: Transaction failed; as a greeting, "No SMTP service here" (RFC 5321).
    pub const TRANSACTION_FAILED: ReplyCode = ReplyCode(554);
    /// 555: MAIL FROM/RCPT TO parameters not recognized or not implemented (RFC 5321).
    pub const PARAMETERS_UNRECOGNIZED: ReplyCode = ReplyCode(555);
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Delegate so width and alignment flags work in log formats.
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<ReplyCode> for u16 {
    fn from(code: ReplyCode) -> u16 {
        code.0
    }
}

/// First digit of a reply code (RFC 5321 §4.2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReplyClass {
    /// 2xx: the requested action completed.
    PositiveCompletion,
    /// 3xx: accepted, the server waits for more input.
    PositiveIntermediate,
    /// 4xx: not done this time; the same command may succeed later.
    TransientNegative,
    /// 5xx: not done, and repeating the command will not help.
    PermanentNegative,
}

impl ReplyClass {
    /// The digit of this class: 2, 3, 4 or 5.
    ///
    /// ```
    /// use smtp_core::reply::ReplyCode;
    ///
    /// assert_eq!(ReplyCode::SERVICE_UNAVAILABLE.class().digit(), 4);
    /// ```
    pub const fn digit(self) -> u8 {
        match self {
            ReplyClass::PositiveCompletion => 2,
            ReplyClass::PositiveIntermediate => 3,
            ReplyClass::TransientNegative => 4,
            ReplyClass::PermanentNegative => 5,
        }
    }
}

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
    fn parse_bytes(s: &[u8]) -> Option<Self> {
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
    const fn matches(self, code: ReplyCode) -> bool {
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
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One to three ASCII digits, as RFC 3463 allows for subject and detail.
fn parse_short_number(digits: &[u8]) -> Option<u16> {
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

/// Replaces CR and LF by spaces, so text taken from anywhere can never end a
/// reply line early and smuggle in a line of its own.
fn sanitize(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ")
    } else {
        text
    }
}

/// One SMTP reply: code, optional enhanced code, and one or more text lines.
///
/// The enhanced code, when present, is written at the start of every line,
/// as RFC 2034 asks. Text never contains CR or LF.
///
/// ```
/// use smtp_core::reply::{Reply, ReplyCode};
///
/// let reply = Reply::with_lines(
///     ReplyCode::OK,
///     None,
///     vec!["mail.example.com".to_string(), "PIPELINING".to_string()],
/// );
/// assert_eq!(reply.to_bytes(), b"250-mail.example.com\r\n250 PIPELINING\r\n");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reply {
    code: ReplyCode,
    enhanced: Option<EnhancedCode>,
    /// Never empty, so a reply always has a last line to write.
    lines: Vec<String>,
}

impl Reply {
    /// A one-line reply. CR and LF in `text` are replaced by spaces (a reply
    /// must never be able to inject a line).
    ///
    /// ```
    /// use smtp_core::reply::{Reply, ReplyCode};
    ///
    /// let reply = Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, None, "no\r\n250 such user");
    /// assert_eq!(reply.lines(), ["no  250 such user"]);
    /// ```
    pub fn new(code: ReplyCode, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![sanitize(text.into())],
        }
    }

    /// A multi-line reply; an empty vec means one line with no text. CR and
    /// LF in each line are replaced by spaces.
    pub fn with_lines(
        code: ReplyCode,
        enhanced: Option<EnhancedCode>,
        lines: Vec<String>,
    ) -> Reply {
        let mut lines: Vec<String> = lines.into_iter().map(sanitize).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The reply code.
    pub fn code(&self) -> ReplyCode {
        self.code
    }

    /// The enhanced status code, if the reply carries one.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text of each line, without code, separator or enhanced code.
    /// Never empty: there is at least one line, possibly `""`.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// All lines joined with `'\n'`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// True for 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        self.code.is_positive()
    }

    /// True for 2xx.
    pub fn is_completion(&self) -> bool {
        self.code.is_completion()
    }

    /// True for 3xx.
    pub fn is_intermediate(&self) -> bool {
        self.code.is_intermediate()
    }

    /// True for 4xx.
    pub fn is_transient(&self) -> bool {
        self.code.is_transient()
    }

    /// True for 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code.is_permanent()
    }

    /// Appends the wire form to `out`: `"250-2.0.0 first\r\n250 2.0.0 last\r\n"`,
    /// or without an enhanced code `"250-first\r\n250 last\r\n"`. A last line
    /// with empty text and no enhanced code is `"250\r\n"`, with no trailing
    /// space.
    ///
    /// ```
    /// use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
    ///
    /// let mut out = Vec::new();
    /// Reply::new(ReplyCode::CLOSING, Some(EnhancedCode::CLOSING), "bye").write_to(&mut out);
    /// Reply::new(ReplyCode::START_MAIL_INPUT, None, "").write_to(&mut out);
    /// assert_eq!(out, b"221 2.0.0 bye\r\n354\r\n");
    /// ```
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, text) in self.lines.iter().enumerate() {
            push_number(out, self.code.0);
            let separator = if i == last { b' ' } else { b'-' };
            if let Some(enhanced) = self.enhanced {
                out.push(separator);
                push_number(out, u16::from(enhanced.class));
                out.push(b'.');
                push_number(out, enhanced.subject);
                out.push(b'.');
                push_number(out, enhanced.detail);
                if !text.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(text.as_bytes());
                }
            } else if !text.is_empty() {
                out.push(separator);
                out.extend_from_slice(text.as_bytes());
            } else if i != last {
                // A continuation line needs its '-' even without text; only
                // the last line may end right after the code.
                out.push(b'-');
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new buffer; see [`Reply::write_to`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.len() + 16).sum());
        self.write_to(&mut out);
        out
    }

    /// A copy with the enhanced code removed, for servers that do not
    /// announce ENHANCEDSTATUSCODES.
    pub fn without_enhanced(&self) -> Reply {
        Reply {
            enhanced: None,
            ..self.clone()
        }
    }
}

/// Appends the decimal form of `n` without going through `fmt`, which keeps
/// `write_to` free of fallible writers.
fn push_number(out: &mut Vec<u8>, mut n: u16) {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The wire form for logs: lines separated by `'\n'`, no CR, no final line
/// ending.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, text) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let separator = if i == last { ' ' } else { '-' };
            write!(f, "{}", self.code)?;
            if let Some(enhanced) = self.enhanced {
                write!(f, "{separator}{enhanced}")?;
                if !text.is_empty() {
                    write!(f, " {text}")?;
                }
            } else if !text.is_empty() {
                write!(f, "{separator}{text}")?;
            } else if i != last {
                f.write_str("-")?;
            }
        }
        Ok(())
    }
}

/// Bounds on replies read from a server, so a broken or hostile server cannot
/// make the reader buffer without limit.
///
/// ```
/// use smtp_core::reply::ReplyLimits;
///
/// let limits = ReplyLimits { max_lines: 16, ..ReplyLimits::default() };
/// assert_eq!(limits.max_line_len, 4096);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest accepted line in bytes, counting the code and text but not the
    /// line ending. Default 4096, far above RFC 5321's 512 for servers that
    /// exceed it in practice.
    pub max_line_len: usize,
    /// Most lines accepted in one reply. Default 128.
    pub max_lines: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_line_len: 4096,
            max_lines: 128,
        }
    }
}

/// Why a reply could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line exceeded [`ReplyLimits::max_line_len`].
    LineTooLong,
    /// A reply had more than [`ReplyLimits::max_lines`] lines.
    TooManyLines,
    /// The input is not an SMTP reply; the text says briefly why.
    Malformed(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => f.write_str("reply line too long"),
            ReplyError::TooManyLines => f.write_str("too many lines in reply"),
            ReplyError::Malformed(reason) => write!(f, "malformed reply: {reason}"),
        }
    }
}

impl std::error::Error for ReplyError {}

fn malformed(reason: &str) -> ReplyError {
    ReplyError::Malformed(reason.to_string())
}

/// Reads replies incrementally, across any split of the input.
///
/// A line ends only at CRLF (RFC 5321 §2.3.8); a lone CR or LF inside a line
/// is part of its text and becomes a space, so a server cannot end a reply
/// early with a bare LF and push the pipelined reply stream out of step. Each line is a code, then `-` (more lines follow), ` ` or the
/// end of the line (last line). If the first line's text begins with an
/// enhanced status code of the reply's class, followed by a space or the end
/// of the line, it becomes [`Reply::enhanced`] and is removed from every line
/// that starts with it. Text that is not UTF-8 is converted lossily.
///
/// ```
/// use smtp_core::reply::{EnhancedCode, ReplyCode, ReplyLimits, ReplyParser};
///
/// let mut parser = ReplyParser::new(ReplyLimits::default());
/// assert_eq!(parser.feed(b"250-2.1.0 first\r\n250 2.1").unwrap(), (24, None));
/// assert!(parser.is_partial());
/// let (consumed, reply) = parser.feed(b".0 second\r\n").unwrap();
/// assert_eq!(consumed, 11);
/// let reply = reply.unwrap();
/// assert_eq!(reply.code(), ReplyCode::OK);
/// assert_eq!(reply.enhanced(), Some(EnhancedCode::SENDER_OK));
/// assert_eq!(reply.lines(), ["first", "second"]);
/// ```
#[derive(Debug, Clone)]
pub struct ReplyParser {
    limits: ReplyLimits,
    /// The start of a line whose LF has not arrived yet.
    partial: Vec<u8>,
    /// Code of the reply being read, set by its first line.
    code: Option<ReplyCode>,
    /// Enhanced code found on the first line of the reply being read.
    enhanced: Option<EnhancedCode>,
    /// Text of the lines read so far of the reply being read.
    lines: Vec<String>,
    /// Set on the first error; the stream cannot be resynchronised after a
    /// broken reply, so every later call reports the same error.
    failed: Option<ReplyError>,
}

impl ReplyParser {
    /// A reader with no input yet.
    pub fn new(limits: ReplyLimits) -> Self {
        ReplyParser {
            limits,
            partial: Vec::new(),
            code: None,
            enhanced: None,
            lines: Vec::new(),
            failed: None,
        }
    }

    /// Consumes bytes from `input` up to and including the end of the first
    /// complete reply and returns `(consumed, Some(reply))`; if no reply
    /// completes, consumes all of `input` (keeping a partial line internally,
    /// bounded by `max_line_len`) and returns `(input.len(), None)`. Call
    /// again with the rest of the input to read further replies.
    ///
    /// Errors are final for the connection: once one is returned, every
    /// later call returns it again.
    ///
    /// ```
    /// use smtp_core::reply::{ReplyCode, ReplyLimits, ReplyParser};
    ///
    /// let mut parser = ReplyParser::new(ReplyLimits::default());
    /// let input = b"250 ok\r\n354 go ahead\r\n";
    /// let (n, first) = parser.feed(input).unwrap();
    /// assert_eq!(first.unwrap().code(), ReplyCode::OK);
    /// let (_, second) = parser.feed(&input[n..]).unwrap();
    /// assert_eq!(second.unwrap().code(), ReplyCode::START_MAIL_INPUT);
    /// ```
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        // A line may be one byte longer than the limit while its CR is still
        // attached.
        let max_raw = self.limits.max_line_len.saturating_add(1);
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            // A line ends only at CRLF (RFC 5321 §2.3.8): a lone LF is part of the text, so
            // a server that writes `250 ok<LF>250 x<CRLF>` sends one reply, not two, and the
            // pipelined stream cannot be pushed out of step by it.
            let mut search = 0;
            let lf = loop {
                match memchr::memchr(b'\n', &rest[search..]) {
                    Some(i) => {
                        let p = search + i;
                        let after_cr = if p > 0 {
                            rest[p - 1] == b'\r'
                        } else {
                            self.partial.last() == Some(&b'\r')
                        };
                        if after_cr {
                            break Some(p);
                        }
                        search = p + 1;
                    }
                    None => break None,
                }
            };
            let Some(lf) = lf else {
                // No line end yet: keep the fragment, but refuse before
                // copying it if the line already cannot fit, so a server that
                // never sends LF cannot make us buffer without bound.
                if self.partial.len() + rest.len() > max_raw {
                    return Err(self.fail(ReplyError::LineTooLong));
                }
                self.partial.extend_from_slice(rest);
                return Ok((input.len(), None));
            };
            consumed += lf + 1;
            let result = if self.partial.is_empty() {
                // The common case: the whole line is in `input`, read it in
                // place without copying.
                self.read_line(&rest[..lf])
            } else if self.partial.len() + lf > max_raw {
                Err(ReplyError::LineTooLong)
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..lf]);
                let result = self.read_line(&line);
                // Keep the allocation for the next split line.
                line.clear();
                self.partial = line;
                result
            };
            match result {
                Ok(None) => {}
                Ok(Some(reply)) => return Ok((consumed, Some(reply))),
                Err(error) => return Err(self.fail(error)),
            }
        }
        Ok((consumed, None))
    }

    /// True when part of a reply has been read but not completed.
    pub fn is_partial(&self) -> bool {
        !self.partial.is_empty() || !self.lines.is_empty()
    }

    fn fail(&mut self, error: ReplyError) -> ReplyError {
        self.failed = Some(error.clone());
        // Drop buffered data: nothing more will be read.
        self.partial = Vec::new();
        self.lines = Vec::new();
        error
    }

    /// Handles one complete line (without its LF); returns the reply when
    /// this was its last line.
    fn read_line(&mut self, raw: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.len() > self.limits.max_line_len {
            return Err(ReplyError::LineTooLong);
        }
        let (code, last, text) = split_line(line)?;
        // A CR inside the text becomes a space before anything reads it, so what is parsed
        // here is what a writer of the parsed reply would put on the wire.
        // A lone LF (never a line end, see `feed`) likewise becomes a space.
        let cleaned: std::borrow::Cow<'_, [u8]> = if memchr::memchr2(b'\r', b'\n', text).is_some() {
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                .collect::<Vec<u8>>()
                .into()
        } else {
            text.into()
        };
        let mut text: &[u8] = &cleaned;
        if let Some(current) = self.code
            && current != code
        {
            return Err(malformed("reply code changed between lines"));
        }
        if self.lines.len() >= self.limits.max_lines {
            return Err(ReplyError::TooManyLines);
        }
        if self.lines.is_empty() {
            self.code = Some(code);
            self.enhanced = None;
            if let Some((enhanced, len)) = enhanced_prefix(text, code) {
                self.enhanced = Some(enhanced);
                text = &text[len..];
            }
        } else if let Some(expected) = self.enhanced
            && let Some((enhanced, len)) = enhanced_prefix(text, code)
            && enhanced == expected
        {
            text = &text[len..];
        }
        self.lines
            .push(sanitize(String::from_utf8_lossy(text).into_owned()));
        if !last {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply {
            code,
            enhanced: self.enhanced.take(),
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// Splits a line into its code, whether it is the last line, and its text.
fn split_line(line: &[u8]) -> Result<(ReplyCode, bool, &[u8]), ReplyError> {
    let (digits, rest) = match line {
        [a, b, c, rest @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            ([*a, *b, *c], rest)
        }
        _ => return Err(malformed("bad reply code")),
    };
    let value = digits
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    let code = ReplyCode::new(value).ok_or_else(|| malformed("reply code out of range"))?;
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(malformed("bad separator after reply code")),
    }
}

/// If `text` starts with an enhanced code of `code`'s class followed by a
/// space or the end, returns it and how many bytes to strip (the space
/// included).
fn enhanced_prefix(text: &[u8], code: ReplyCode) -> Option<(EnhancedCode, usize)> {
    // The longest enhanced code is "5.999.999" (9 bytes): never scan a long
    // line further than that.
    const LONGEST: usize = 9;
    let end = match text.iter().take(LONGEST + 1).position(|&b| b == b' ') {
        Some(end) => end,
        None if text.len() <= LONGEST => text.len(),
        None => return None,
    };
    let enhanced = EnhancedCode::parse_bytes(&text[..end])?;
    if !enhanced.matches(code) {
        return None;
    }
    Some((enhanced, (end + 1).min(text.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use ReplyClass::*;

    /// Every named code with its value and class.
    const NAMED: [(ReplyCode, u16, ReplyClass); 31] = [
        (ReplyCode::SYSTEM_STATUS, 211, PositiveCompletion),
        (ReplyCode::HELP_MESSAGE, 214, PositiveCompletion),
        (ReplyCode::SERVICE_READY, 220, PositiveCompletion),
        (ReplyCode::CLOSING, 221, PositiveCompletion),
        (ReplyCode::AUTH_SUCCEEDED, 235, PositiveCompletion),
        (ReplyCode::OK, 250, PositiveCompletion),
        (
            ReplyCode::USER_NOT_LOCAL_WILL_FORWARD,
            251,
            PositiveCompletion,
        ),
        (ReplyCode::CANNOT_VERIFY, 252, PositiveCompletion),
        (ReplyCode::AUTH_CONTINUE, 334, PositiveIntermediate),
        (ReplyCode::START_MAIL_INPUT, 354, PositiveIntermediate),
        (ReplyCode::SERVICE_UNAVAILABLE, 421, TransientNegative),
        (ReplyCode::MAILBOX_BUSY, 450, TransientNegative),
        (ReplyCode::LOCAL_ERROR, 451, TransientNegative),
        (ReplyCode::INSUFFICIENT_STORAGE, 452, TransientNegative),
        (ReplyCode::TLS_UNAVAILABLE, 454, TransientNegative),
        (ReplyCode::PARAMETERS_UNACCOMMODATED, 455, TransientNegative),
        (ReplyCode::SYNTAX_ERROR, 500, PermanentNegative),
        (ReplyCode::PARAMETER_SYNTAX_ERROR, 501, PermanentNegative),
        (ReplyCode::NOT_IMPLEMENTED, 502, PermanentNegative),
        (ReplyCode::BAD_SEQUENCE, 503, PermanentNegative),
        (ReplyCode::PARAMETER_NOT_IMPLEMENTED, 504, PermanentNegative),
        (ReplyCode::AUTH_REQUIRED, 530, PermanentNegative),
        (ReplyCode::AUTH_TOO_WEAK, 534, PermanentNegative),
        (ReplyCode::AUTH_INVALID, 535, PermanentNegative),
        (ReplyCode::ENCRYPTION_REQUIRED, 538, PermanentNegative),
        (ReplyCode::MAILBOX_UNAVAILABLE, 550, PermanentNegative),
        (ReplyCode::USER_NOT_LOCAL, 551, PermanentNegative),
        (ReplyCode::STORAGE_EXCEEDED, 552, PermanentNegative),
        (ReplyCode::MAILBOX_NAME_INVALID, 553, PermanentNegative),
        (ReplyCode::TRANSACTION_FAILED, 554, PermanentNegative),
        (ReplyCode::PARAMETERS_UNRECOGNIZED, 555, PermanentNegative),
    ];

    fn code(value: u16) -> ReplyCode {
        ReplyCode::new(value).unwrap()
    }

    fn parser() -> ReplyParser {
        ReplyParser::new(ReplyLimits::default())
    }

    /// Feeds `input` in one call and expects exactly one reply using all of it.
    fn parse_one(input: &[u8]) -> Reply {
        let (consumed, reply) = parser().feed(input).unwrap();
        assert_eq!(consumed, input.len());
        reply.unwrap()
    }

    fn parse_err(input: &[u8]) -> ReplyError {
        parser().feed(input).unwrap_err()
    }

    fn lines(texts: &[&str]) -> Vec<String> {
        texts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_named_code_has_value_class_meaning_and_display() {
        for (named, value, class) in NAMED {
            assert_eq!(named.get(), value);
            assert_eq!(u16::from(named), value);
            assert_eq!(ReplyCode::new(value), Some(named), "{value}");
            assert_eq!(named.class(), class, "{value}");
            assert_eq!(u16::from(named.class().digit()), value / 100);
            assert_eq!(named.to_string(), value.to_string());
            let meaning = named.meaning().unwrap();
            assert!(!meaning.is_empty(), "{value}");
            assert_eq!(
                named.is_completion(),
                class == PositiveCompletion,
                "{value}"
            );
            assert_eq!(
                named.is_intermediate(),
                class == PositiveIntermediate,
                "{value}"
            );
            assert_eq!(named.is_transient(), class == TransientNegative, "{value}");
            assert_eq!(named.is_permanent(), class == PermanentNegative, "{value}");
            assert_eq!(
                named.is_positive(),
                matches!(class, PositiveCompletion | PositiveIntermediate),
                "{value}"
            );
        }
    }

    #[test]
    fn named_codes_are_distinct() {
        let mut values: Vec<u16> = NAMED.iter().map(|(c, _, _)| c.get()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), NAMED.len());
    }

    #[test]
    fn specific_meanings() {
        assert_eq!(
            ReplyCode::OK.meaning(),
            Some("Requested mail action okay, completed")
        );
        assert_eq!(
            ReplyCode::START_MAIL_INPUT.meaning(),
            Some("Start mail input; end with <CRLF>.<CRLF>")
        );
        assert_eq!(
            ReplyCode::AUTH_INVALID.meaning(),
            Some("Authentication credentials invalid")
        );
    }

    #[test]
    fn unnamed_codes_have_no_meaning() {
        for value in [200, 259, 300, 420, 453, 459, 505, 559] {
            assert_eq!(code(value).meaning(), None, "{value}");
        }
    }

    #[test]
    fn new_bounds() {
        assert_eq!(ReplyCode::new(0), None);
        assert_eq!(ReplyCode::new(199), None);
        assert_eq!(ReplyCode::new(200).map(ReplyCode::get), Some(200));
        assert_eq!(ReplyCode::new(259).map(ReplyCode::get), Some(259));
        assert_eq!(ReplyCode::new(260), None);
        assert_eq!(ReplyCode::new(299), None);
        assert_eq!(ReplyCode::new(300).map(ReplyCode::get), Some(300));
        assert_eq!(ReplyCode::new(559).map(ReplyCode::get), Some(559));
        assert_eq!(ReplyCode::new(560), None);
        assert_eq!(ReplyCode::new(599), None);
        assert_eq!(ReplyCode::new(600), None);
        assert_eq!(ReplyCode::new(u16::MAX), None);
    }

    #[test]
    fn new_accepts_exactly_the_rfc_grammar() {
        for value in 0..=u16::MAX {
            let first = value / 100;
            let second = (value / 10) % 10;
            let expected = (2..=5).contains(&first) && second <= 5 && value < 1000;
            assert_eq!(ReplyCode::new(value).is_some(), expected, "{value}");
        }
        // 2-5, 0-5, 0-9: 4 * 6 * 10 codes.
        assert_eq!(
            (0..=u16::MAX)
                .filter(|&v| ReplyCode::new(v).is_some())
                .count(),
            240
        );
    }

    #[test]
    fn class_of_unnamed_codes() {
        assert_eq!(code(200).class(), PositiveCompletion);
        assert_eq!(code(359).class(), PositiveIntermediate);
        assert_eq!(code(400).class(), TransientNegative);
        assert_eq!(code(559).class(), PermanentNegative);
        assert!(code(359).is_positive() && code(359).is_intermediate());
        assert!(!code(400).is_positive());
    }

    #[test]
    fn codes_order_numerically() {
        assert!(ReplyCode::OK < ReplyCode::START_MAIL_INPUT);
        assert!(ReplyCode::SERVICE_UNAVAILABLE < ReplyCode::SYNTAX_ERROR);
    }

    #[test]
    fn enhanced_parse_good_forms() {
        assert_eq!(
            EnhancedCode::parse("2.1.0"),
            Some(EnhancedCode::new(2, 1, 0))
        );
        assert_eq!(
            EnhancedCode::parse("4.4.2"),
            Some(EnhancedCode::new(4, 4, 2))
        );
        assert_eq!(
            EnhancedCode::parse("5.7.11"),
            Some(EnhancedCode::new(5, 7, 11))
        );
        assert_eq!(
            EnhancedCode::parse("5.999.999"),
            Some(EnhancedCode::new(5, 999, 999))
        );
        assert_eq!(EnhancedCode::parse("2.0.0"), Some(EnhancedCode::OK));
        // RFC 3463 allows up to three digits, leading zeros included.
        assert_eq!(
            EnhancedCode::parse("2.01.000"),
            Some(EnhancedCode::new(2, 1, 0))
        );
    }

    #[test]
    fn enhanced_parse_bad_forms() {
        for bad in [
            "",
            ".",
            "..",
            "2",
            "2.",
            "2.1",
            "2.1.",
            "2..0",
            ".1.0",
            "2.1.0.",
            "2.1.0.0",
            "1.0.0",
            "3.0.0",
            "6.0.0",
            "0.0.0",
            "9.1.1",
            "22.1.0",
            "02.1.0",
            "2.1000.0",
            "2.1.1000",
            " 2.1.0",
            "2.1.0 ",
            "2.a.0",
            "2.1.b",
            "x.1.0",
            "+2.1.0",
            "2.+1.0",
            "2.-1.0",
            "2.1.-0",
            "2,1,0",
            "2.1.0x",
            "\u{ff12}.1.0",
            "2.\u{0661}.0",
        ] {
            assert_eq!(EnhancedCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn enhanced_display() {
        assert_eq!(EnhancedCode::new(2, 0, 0).to_string(), "2.0.0");
        assert_eq!(EnhancedCode::new(5, 7, 11).to_string(), "5.7.11");
        assert_eq!(EnhancedCode::new(4, 999, 100).to_string(), "4.999.100");
        for class in [2, 4, 5] {
            for subject in [0, 1, 9, 10, 99, 100, 999] {
                for detail in [0, 7, 11, 999] {
                    let enhanced = EnhancedCode::new(class, subject, detail);
                    assert_eq!(EnhancedCode::parse(&enhanced.to_string()), Some(enhanced));
                }
            }
        }
    }

    #[test]
    fn named_enhanced_codes() {
        let table = [
            (EnhancedCode::OK, "2.0.0"),
            (EnhancedCode::SENDER_OK, "2.1.0"),
            (EnhancedCode::RECIPIENT_OK, "2.1.5"),
            (EnhancedCode::MESSAGE_ACCEPTED, "2.6.0"),
            (EnhancedCode::CLOSING, "2.0.0"),
            (EnhancedCode::AUTH_SUCCEEDED, "2.7.0"),
            (EnhancedCode::BAD_DESTINATION, "5.1.1"),
            (EnhancedCode::SYNTAX_ERROR, "5.5.2"),
            (EnhancedCode::INVALID_COMMAND, "5.5.1"),
            (EnhancedCode::BAD_SEQUENCE, "5.5.1"),
            (EnhancedCode::INVALID_ARGS, "5.5.4"),
            (EnhancedCode::TOO_MANY_RECIPIENTS, "4.5.3"),
            (EnhancedCode::MESSAGE_TOO_BIG, "5.3.4"),
            (EnhancedCode::MAILBOX_FULL, "4.2.2"),
            (EnhancedCode::MAILBOX_FULL_PERMANENT, "5.2.2"),
            (EnhancedCode::AUTH_INVALID, "5.7.8"),
            (EnhancedCode::AUTH_REQUIRED, "5.7.0"),
            (EnhancedCode::AUTH_TOO_WEAK, "5.7.9"),
            (EnhancedCode::AUTH_TEMP_FAILURE, "4.7.0"),
            (EnhancedCode::ENCRYPTION_REQUIRED, "5.7.11"),
            (EnhancedCode::TLS_REQUIRED, "5.7.0"),
            (EnhancedCode::TEMP_LOCAL_ERROR, "4.3.0"),
            (EnhancedCode::SERVICE_UNAVAILABLE, "4.3.2"),
            (EnhancedCode::TIMEOUT, "4.4.2"),
            (EnhancedCode::NETWORK_ERROR, "4.4.0"),
        ];
        for (named, text) in table {
            assert_eq!(named.to_string(), text);
            assert_eq!(EnhancedCode::parse(text), Some(named));
        }
        // Each pairs with the reply code it is used with.
        assert!(EnhancedCode::AUTH_INVALID.matches(ReplyCode::AUTH_INVALID));
        assert!(EnhancedCode::TOO_MANY_RECIPIENTS.matches(ReplyCode::INSUFFICIENT_STORAGE));
        assert!(EnhancedCode::TIMEOUT.matches(ReplyCode::SERVICE_UNAVAILABLE));
        assert!(!EnhancedCode::OK.matches(ReplyCode::START_MAIL_INPUT));
    }

    #[test]
    fn write_single_line() {
        assert_eq!(
            Reply::new(ReplyCode::OK, None, "ok").to_bytes(),
            b"250 ok\r\n"
        );
        assert_eq!(
            Reply::new(ReplyCode::OK, Some(EnhancedCode::SENDER_OK), "sender ok").to_bytes(),
            b"250 2.1.0 sender ok\r\n"
        );
        assert_eq!(
            Reply::new(
                ReplyCode::ENCRYPTION_REQUIRED,
                Some(EnhancedCode::ENCRYPTION_REQUIRED),
                "tls first"
            )
            .to_bytes(),
            b"538 5.7.11 tls first\r\n"
        );
    }

    #[test]
    fn write_empty_text() {
        assert_eq!(
            Reply::new(ReplyCode::START_MAIL_INPUT, None, "").to_bytes(),
            b"354\r\n"
        );
        assert_eq!(
            Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), "").to_bytes(),
            b"250 2.0.0\r\n"
        );
        let reply = Reply::with_lines(ReplyCode::OK, None, Vec::new());
        assert_eq!(reply.lines(), [""]);
        assert_eq!(reply.to_bytes(), b"250\r\n");
        // A continuation line keeps its '-' even when empty.
        let reply = Reply::with_lines(ReplyCode::OK, None, lines(&["a", "", "b", ""]));
        assert_eq!(reply.to_bytes(), b"250-a\r\n250-\r\n250-b\r\n250\r\n");
    }

    #[test]
    fn write_multi_line() {
        let reply = Reply::with_lines(ReplyCode::OK, None, lines(&["first", "middle", "last"]));
        assert_eq!(reply.to_bytes(), b"250-first\r\n250-middle\r\n250 last\r\n");
        let reply = Reply::with_lines(
            ReplyCode::OK,
            Some(EnhancedCode::OK),
            lines(&["first", "last"]),
        );
        assert_eq!(reply.to_bytes(), b"250-2.0.0 first\r\n250 2.0.0 last\r\n");
        let reply = Reply::with_lines(
            ReplyCode::SYSTEM_STATUS,
            Some(EnhancedCode::OK),
            lines(&["", "x"]),
        );
        assert_eq!(reply.to_bytes(), b"211-2.0.0\r\n211 2.0.0 x\r\n");
    }

    #[test]
    fn write_to_appends() {
        let mut out = b"prefix ".to_vec();
        Reply::new(ReplyCode::CLOSING, None, "bye").write_to(&mut out);
        Reply::new(ReplyCode::OK, None, "ok").write_to(&mut out);
        assert_eq!(out, b"prefix 221 bye\r\n250 ok\r\n");
    }

    #[test]
    fn cr_and_lf_are_replaced_by_spaces() {
        let reply = Reply::new(ReplyCode::OK, None, "a\r\n250 injected\rb\nc");
        assert_eq!(reply.lines(), ["a  250 injected b c"]);
        assert_eq!(reply.to_bytes(), b"250 a  250 injected b c\r\n");
        let reply = Reply::with_lines(ReplyCode::OK, None, lines(&["x\r\n", "\n", "ok"]));
        assert_eq!(reply.lines(), ["x  ", " ", "ok"]);
        assert_eq!(reply.to_bytes(), b"250-x  \r\n250- \r\n250 ok\r\n");
        // Non-ASCII text passes through unchanged.
        assert_eq!(Reply::new(ReplyCode::OK, None, "grüße").lines(), ["grüße"]);
    }

    #[test]
    fn accessors_and_predicates() {
        let reply = Reply::with_lines(
            ReplyCode::MAILBOX_UNAVAILABLE,
            Some(EnhancedCode::BAD_DESTINATION),
            lines(&["no such", "user"]),
        );
        assert_eq!(reply.code(), ReplyCode::MAILBOX_UNAVAILABLE);
        assert_eq!(reply.enhanced(), Some(EnhancedCode::BAD_DESTINATION));
        assert_eq!(reply.lines(), ["no such", "user"]);
        assert_eq!(reply.text(), "no such\nuser");
        assert!(reply.is_permanent());
        assert!(
            !reply.is_positive()
                && !reply.is_completion()
                && !reply.is_intermediate()
                && !reply.is_transient()
        );
        let reply = Reply::new(ReplyCode::START_MAIL_INPUT, None, "go");
        assert!(reply.is_positive() && reply.is_intermediate() && !reply.is_completion());
        let reply = Reply::new(ReplyCode::OK, None, "");
        assert!(reply.is_positive() && reply.is_completion());
        assert_eq!(reply.text(), "");
        assert!(Reply::new(ReplyCode::LOCAL_ERROR, None, "").is_transient());
    }

    #[test]
    fn without_enhanced_drops_only_the_code() {
        let reply = Reply::with_lines(ReplyCode::OK, Some(EnhancedCode::OK), lines(&["a", "b"]));
        let plain = reply.without_enhanced();
        assert_eq!(plain.enhanced(), None);
        assert_eq!(plain.code(), ReplyCode::OK);
        assert_eq!(plain.lines(), reply.lines());
        assert_eq!(plain.to_bytes(), b"250-a\r\n250 b\r\n");
        assert_eq!(reply.enhanced(), Some(EnhancedCode::OK));
    }

    #[test]
    fn display_is_wire_form_for_logs() {
        let reply = Reply::with_lines(
            ReplyCode::OK,
            Some(EnhancedCode::OK),
            lines(&["first", "last"]),
        );
        assert_eq!(reply.to_string(), "250-2.0.0 first\n250 2.0.0 last");
        let reply = Reply::with_lines(ReplyCode::OK, None, lines(&["a", "", ""]));
        assert_eq!(reply.to_string(), "250-a\n250-\n250");
        assert_eq!(
            Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), "").to_string(),
            "250 2.0.0"
        );
    }

    #[test]
    fn limits_default() {
        let limits = ReplyLimits::default();
        assert_eq!(limits.max_line_len, 4096);
        assert_eq!(limits.max_lines, 128);
    }

    #[test]
    fn error_display() {
        assert_eq!(ReplyError::LineTooLong.to_string(), "reply line too long");
        assert_eq!(
            ReplyError::TooManyLines.to_string(),
            "too many lines in reply"
        );
        assert_eq!(
            malformed("bad reply code").to_string(),
            "malformed reply: bad reply code"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(ReplyError::LineTooLong);
        assert_eq!(boxed.to_string(), "reply line too long");
    }

    #[test]
    fn parse_single_line() {
        let reply = parse_one(b"220 mx.example.com ESMTP ready\r\n");
        assert_eq!(reply.code(), ReplyCode::SERVICE_READY);
        assert_eq!(reply.enhanced(), None);
        assert_eq!(reply.lines(), ["mx.example.com ESMTP ready"]);
    }

    #[test]
    fn parse_code_only_and_empty_text() {
        assert_eq!(
            parse_one(b"354\r\n"),
            Reply::new(ReplyCode::START_MAIL_INPUT, None, "")
        );
        assert_eq!(parse_one(b"250 \r\n"), Reply::new(ReplyCode::OK, None, ""));
        assert_eq!(
            parse_one(b"250-\r\n250\r\n"),
            Reply::with_lines(ReplyCode::OK, None, lines(&["", ""]))
        );
        // Spaces after the separator belong to the text.
        assert_eq!(parse_one(b"250  two\r\n").lines(), [" two"]);
    }

    #[test]
    fn parse_multi_line() {
        let reply =
            parse_one(b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
        assert_eq!(reply.code(), ReplyCode::OK);
        assert_eq!(
            reply.lines(),
            ["mx.example.com", "PIPELINING", "SIZE 1000", "8BITMIME"]
        );
    }

    #[test]
    fn parse_partial_lines_across_every_split() {
        let input = b"250-2.0.0 first line\r\n250-2.0.0 second\r\n250 2.0.0 last\r\n";
        let expected = Reply::with_lines(
            ReplyCode::OK,
            Some(EnhancedCode::OK),
            lines(&["first line", "second", "last"]),
        );
        // Every split short of the end leaves the reply incomplete.
        for split in 0..input.len() {
            let mut p = parser();
            let (a, none) = p.feed(&input[..split]).unwrap();
            assert_eq!((a, none), (split, None), "split {split}");
            assert_eq!(p.is_partial(), split > 0, "split {split}");
            let (b, reply) = p.feed(&input[split..]).unwrap();
            assert_eq!(b, input.len() - split, "split {split}");
            assert_eq!(reply.as_ref(), Some(&expected), "split {split}");
            assert!(!p.is_partial());
        }
    }

    #[test]
    fn parse_byte_at_a_time() {
        let input = b"221-2.0.0 bye\r\n221 2.0.0 now\r\n";
        let mut p = parser();
        let mut replies = Vec::new();
        for byte in input.chunks(1) {
            let (consumed, reply) = p.feed(byte).unwrap();
            assert_eq!(consumed, 1);
            replies.extend(reply);
        }
        assert_eq!(
            replies,
            [Reply::with_lines(
                ReplyCode::CLOSING,
                Some(EnhancedCode::CLOSING),
                lines(&["bye", "now"])
            )]
        );
    }

    #[test]
    fn parse_cr_split_from_lf() {
        let mut p = parser();
        assert_eq!(p.feed(b"250 ok\r").unwrap(), (7, None));
        assert!(p.is_partial());
        let (n, reply) = p.feed(b"\n").unwrap();
        assert_eq!(n, 1);
        assert_eq!(reply.unwrap().lines(), ["ok"]);
    }

    #[test]
    fn parse_returns_at_end_of_first_reply() {
        let input = b"250 first\r\n251-second\r\n251 done\r\n354 go\r\n";
        let mut p = parser();
        let (n, reply) = p.feed(input).unwrap();
        assert_eq!(n, 11);
        assert_eq!(reply.unwrap().lines(), ["first"]);
        assert!(!p.is_partial());
        let (m, reply) = p.feed(&input[n..]).unwrap();
        assert_eq!(m, 22);
        assert_eq!(
            reply.unwrap().code(),
            ReplyCode::USER_NOT_LOCAL_WILL_FORWARD
        );
        let (k, reply) = p.feed(&input[n + m..]).unwrap();
        assert_eq!(n + m + k, input.len());
        assert_eq!(reply.unwrap().code(), ReplyCode::START_MAIL_INPUT);
    }

    #[test]
    fn parse_keeps_partial_second_reply() {
        let mut p = parser();
        let (n, reply) = p.feed(b"250 a\r\n250 b").unwrap();
        assert_eq!(n, 7);
        assert!(reply.is_some());
        assert!(!p.is_partial());
        assert_eq!(p.feed(b"250 b").unwrap(), (5, None));
        assert!(p.is_partial());
        let (_, reply) = p.feed(b"c\r\n").unwrap();
        assert_eq!(reply.unwrap().lines(), ["bc"]);
    }

    #[test]
    fn parse_empty_input() {
        let mut p = parser();
        assert_eq!(p.feed(b"").unwrap(), (0, None));
        assert!(!p.is_partial());
    }

    #[test]
    fn parse_partial_reply_between_lines() {
        let mut p = parser();
        assert_eq!(p.feed(b"250-a\r\n").unwrap(), (7, None));
        assert!(p.is_partial());
    }

    #[test]
    fn parse_bare_lf_is_not_a_line_end() {
        // `250 ok<LF>250 second<CRLF>` is one reply whose text holds the LF as a space;
        // read as two it would answer a command that the server has not answered yet.
        assert_eq!(
            parse_one(b"250 ok\n250 second\r\n"),
            Reply::new(ReplyCode::OK, None, "ok 250 second")
        );
        assert_eq!(
            parse_one(b"250-a\n250-b\r\n250 c\r\n"),
            Reply::with_lines(ReplyCode::OK, None, lines(&["a 250-b", "c"]))
        );
        // A line ended by a bare LF only is still incomplete: nothing is returned.
        let mut p = parser();
        assert_eq!(p.feed(b"250 ok\n").unwrap(), (7, None));
        assert!(p.is_partial());
        // Also when the CR and LF of the real end arrive in different pieces.
        let (n, reply) = p.feed(b"more\r").unwrap();
        assert_eq!((n, reply), (5, None));
        let (n, reply) = p.feed(b"\n").unwrap();
        assert_eq!(n, 1);
        assert_eq!(reply.unwrap().lines(), ["ok more"]);
        // An LF at the start of a piece after a partial line without CR is no end either.
        let mut p = parser();
        assert_eq!(p.feed(b"250 ok").unwrap(), (6, None));
        assert_eq!(p.feed(b"\n").unwrap(), (1, None));
        assert_eq!(p.feed(b"\r\n").unwrap().1.unwrap().lines(), ["ok "]);
    }

    #[test]
    fn parse_inner_cr_becomes_space() {
        // Only the CR right before LF ends the line; any other is text, and
        // text never carries CR.
        assert_eq!(parse_one(b"250 a\rb\r\r\n").lines(), ["a b "]);
    }

    #[test]
    fn parse_invalid_utf8_is_lossy() {
        assert_eq!(parse_one(b"250 caf\xe9 ok\r\n").lines(), ["caf\u{fffd} ok"]);
        assert_eq!(parse_one("250 grüße\r\n".as_bytes()).lines(), ["grüße"]);
    }

    #[test]
    fn parse_code_mismatch() {
        assert_eq!(
            parse_err(b"250-a\r\n251 b\r\n"),
            ReplyError::Malformed("reply code changed between lines".into())
        );
        // The same code with a different class is still a mismatch.
        assert!(matches!(
            parse_err(b"250-a\r\n550 b\r\n"),
            ReplyError::Malformed(_)
        ));
    }

    #[test]
    fn parse_bad_separator() {
        for input in [
            &b"250x\r\n"[..],
            b"250\tok\r\n",
            b"250=ok\r\n",
            b"2500 ok\r\n",
            b"250-a\r\n250_b\r\n",
        ] {
            assert_eq!(
                parse_err(input),
                ReplyError::Malformed("bad separator after reply code".into()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn parse_bad_code() {
        for input in [
            &b"\r\n"[..],
            b"25\r\n",
            b"25 ok\r\n",
            b"abc ok\r\n",
            b"2a0 ok\r\n",
            b" 250 ok\r\n",
            b"+50 ok\r\n",
        ] {
            assert_eq!(
                parse_err(input),
                ReplyError::Malformed("bad reply code".into()),
                "{input:?}"
            );
        }
        for input in [
            &b"199 ok\r\n"[..],
            b"260 ok\r\n",
            b"600 ok\r\n",
            b"000\r\n",
            b"999 x\r\n",
        ] {
            assert_eq!(
                parse_err(input),
                ReplyError::Malformed("reply code out of range".into()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn errors_are_final() {
        let mut p = parser();
        let error = p.feed(b"hello\r\n").unwrap_err();
        assert_eq!(p.feed(b"250 ok\r\n"), Err(error.clone()));
        assert_eq!(p.feed(b""), Err(error));
        assert!(!p.is_partial());
    }

    fn limited(max_line_len: usize, max_lines: usize) -> ReplyParser {
        ReplyParser::new(ReplyLimits {
            max_line_len,
            max_lines,
        })
    }

    #[test]
    fn line_length_limit() {
        // "250 " + 6 = 10 bytes: exactly at the limit.
        assert!(limited(10, 8).feed(b"250 abcdef\r\n").unwrap().1.is_some());
        assert_eq!(
            limited(10, 8).feed(b"250 abcdefg\r\n"),
            Err(ReplyError::LineTooLong)
        );
        // A bare LF does not end the line, so it counts towards its length.
        assert_eq!(
            limited(10, 8).feed(b"250 abc\nefg\r\n"),
            Err(ReplyError::LineTooLong)
        );
        // Also when the line arrives in pieces.
        let mut p = limited(10, 8);
        assert_eq!(p.feed(b"250 ab").unwrap(), (6, None));
        assert_eq!(p.feed(b"cdefg\r\n"), Err(ReplyError::LineTooLong));
        let mut p = limited(10, 8);
        assert_eq!(p.feed(b"250 ab").unwrap(), (6, None));
        assert_eq!(p.feed(b"cdef\r").unwrap(), (5, None));
        assert!(p.feed(b"\n").unwrap().1.is_some());
        // A limit too small for any code rejects every line without panicking.
        assert_eq!(limited(2, 8).feed(b"250\r\n"), Err(ReplyError::LineTooLong));
    }

    #[test]
    fn long_partial_line_errors_before_buffering_it() {
        let limit = 100;
        let mut p = limited(limit, 8);
        let chunk = [b'a'; 30];
        assert_eq!(p.feed(b"250 ").unwrap(), (4, None));
        let mut fed = 4;
        let error = loop {
            match p.feed(&chunk) {
                Ok((n, None)) => {
                    fed += n;
                    assert!(p.partial.len() <= limit + 1);
                }
                Ok((_, Some(_))) => panic!("no reply expected"),
                Err(error) => break error,
            }
        };
        assert_eq!(error, ReplyError::LineTooLong);
        // It failed on the first chunk that could not fit, not at the end of
        // the line, and dropped what it held.
        assert!(
            fed <= limit + 1 && fed + chunk.len() > limit + 1,
            "fed {fed}"
        );
        assert!(p.partial.capacity() == 0);

        // A single huge chunk without LF is refused without being copied.
        let mut p = limited(limit, 8);
        assert_eq!(p.feed(&vec![b'5'; 10_000]), Err(ReplyError::LineTooLong));
        assert_eq!(p.partial.capacity(), 0);

        // A short partial line completed by a huge one is refused without
        // joining them.
        let mut p = limited(limit, 8);
        assert_eq!(p.feed(b"250 x").unwrap(), (5, None));
        let mut rest = vec![b'y'; 10_000];
        rest.extend_from_slice(b"\r\n");
        assert_eq!(p.feed(&rest), Err(ReplyError::LineTooLong));
        assert!(p.partial.capacity() < 1000);
    }

    #[test]
    fn line_count_limit() {
        assert_eq!(
            limited(100, 3)
                .feed(b"250-a\r\n250-b\r\n250 c\r\n")
                .unwrap()
                .1
                .unwrap()
                .lines()
                .len(),
            3
        );
        assert_eq!(
            limited(100, 3).feed(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n"),
            Err(ReplyError::TooManyLines)
        );
        // The limit is per reply.
        let mut p = limited(100, 2);
        let input = b"250-a\r\n250 b\r\n250-c\r\n250 d\r\n";
        let (n, reply) = p.feed(input).unwrap();
        assert!(reply.is_some());
        assert!(p.feed(&input[n..]).unwrap().1.is_some());
        // Refused as soon as the extra line arrives, before the reply ends.
        let mut p = limited(100, 2);
        assert_eq!(p.feed(b"250-a\r\n250-b\r\n").unwrap(), (14, None));
        assert_eq!(p.feed(b"250-c\r\n"), Err(ReplyError::TooManyLines));
        assert_eq!(
            limited(100, 0).feed(b"250 a\r\n"),
            Err(ReplyError::TooManyLines)
        );
    }

    #[test]
    fn enhanced_extracted_when_class_matches() {
        let reply = parse_one(b"550 5.1.1 no such user\r\n");
        assert_eq!(reply.enhanced(), Some(EnhancedCode::BAD_DESTINATION));
        assert_eq!(reply.lines(), ["no such user"]);
        let reply = parse_one(b"452 4.5.3 too many\r\n");
        assert_eq!(reply.enhanced(), Some(EnhancedCode::TOO_MANY_RECIPIENTS));
        // At the end of the line.
        let reply = parse_one(b"250 2.1.0\r\n");
        assert_eq!(reply.enhanced(), Some(EnhancedCode::SENDER_OK));
        assert_eq!(reply.lines(), [""]);
        // Only one space is part of the prefix.
        assert_eq!(parse_one(b"250 2.0.0  x\r\n").lines(), [" x"]);
    }

    #[test]
    fn enhanced_not_extracted_when_class_differs() {
        let reply = parse_one(b"250 5.1.1 looks like a failure\r\n");
        assert_eq!(reply.enhanced(), None);
        assert_eq!(reply.lines(), ["5.1.1 looks like a failure"]);
        let reply = parse_one(b"550 2.0.0 odd\r\n");
        assert_eq!(reply.enhanced(), None);
        assert_eq!(reply.lines(), ["2.0.0 odd"]);
        // 3xx has no enhanced class.
        let reply = parse_one(b"354 3.0.0 go\r\n");
        assert_eq!(reply.enhanced(), None);
        assert_eq!(reply.lines(), ["3.0.0 go"]);
    }

    #[test]
    fn enhanced_not_extracted_without_clean_end() {
        for (input, text) in [
            (&b"250 2.0.0x ok\r\n"[..], "2.0.0x ok"),
            (b"250 2.0.0.1 ok\r\n", "2.0.0.1 ok"),
            (b"250 2.0.0-ok\r\n", "2.0.0-ok"),
            (b"250 2.0 ok\r\n", "2.0 ok"),
            (b"250 2.1000.0 ok\r\n", "2.1000.0 ok"),
            (b"250  2.0.0 ok\r\n", " 2.0.0 ok"),
            (b"250 2.0.0\tok\r\n", "2.0.0\tok"),
        ] {
            let reply = parse_one(input);
            assert_eq!(reply.enhanced(), None, "{input:?}");
            assert_eq!(reply.lines(), [text], "{input:?}");
        }
    }

    #[test]
    fn enhanced_stripped_from_each_line_that_has_it() {
        let reply = parse_one(b"250-2.0.0 a\r\n250-b\r\n250-2.1.0 c\r\n250 2.0.0 d\r\n");
        assert_eq!(reply.enhanced(), Some(EnhancedCode::OK));
        assert_eq!(reply.lines(), ["a", "b", "2.1.0 c", "d"]);
        // Found only on a later line: not the reply's enhanced code.
        let reply = parse_one(b"250-a\r\n250 2.0.0 b\r\n");
        assert_eq!(reply.enhanced(), None);
        assert_eq!(reply.lines(), ["a", "2.0.0 b"]);
        // Written forms that differ but mean the same code are stripped too.
        let reply = parse_one(b"250-2.0.0 a\r\n250 2.00.0 b\r\n");
        assert_eq!(reply.lines(), ["a", "b"]);
    }

    #[test]
    fn enhanced_state_resets_between_replies() {
        let input = b"250 2.0.0 a\r\n250 2.0.0\r\n250 b\r\n";
        let mut p = parser();
        let (n, first) = p.feed(input).unwrap();
        assert_eq!(first.unwrap().enhanced(), Some(EnhancedCode::OK));
        let (m, second) = p.feed(&input[n..]).unwrap();
        assert_eq!(
            second.unwrap(),
            Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), "")
        );
        let (_, third) = p.feed(&input[n + m..]).unwrap();
        assert_eq!(third.unwrap(), Reply::new(ReplyCode::OK, None, "b"));
    }

    #[test]
    fn written_replies_read_back() {
        for reply in [
            Reply::new(ReplyCode::OK, None, ""),
            Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), ""),
            Reply::with_lines(ReplyCode::OK, None, lines(&["", "", ""])),
            Reply::with_lines(
                ReplyCode::OK,
                Some(EnhancedCode::OK),
                lines(&["", "2.0.0 x", ""]),
            ),
            Reply::new(ReplyCode::AUTH_CONTINUE, None, "VXNlcm5hbWU6"),
        ] {
            assert_eq!(parse_one(&reply.to_bytes()), reply);
        }
    }

    // Property tests.

    fn arb_code() -> impl Strategy<Value = ReplyCode> {
        (2u16..=5, 0u16..=5, 0u16..=9).prop_map(|(a, b, c)| code(a * 100 + b * 10 + c))
    }

    /// Random replies that can be read back as written: the enhanced class
    /// matches the code (none on 3xx), and without an enhanced code the
    /// first line does not itself start with one.
    fn arb_reply() -> impl Strategy<Value = Reply> {
        (
            arb_code(),
            any::<bool>(),
            0u16..1000,
            0u16..1000,
            prop::collection::vec("(?s).{0,30}", 0..6),
        )
            .prop_map(|(code, with_enhanced, subject, detail, lines)| {
                let class = code.class().digit();
                let enhanced = (with_enhanced && class != 3)
                    .then(|| EnhancedCode::new(class, subject, detail));
                Reply::with_lines(code, enhanced, lines)
            })
            .prop_filter("text reads as an enhanced code", |reply| {
                reply.enhanced().is_some()
                    || enhanced_prefix(reply.lines()[0].as_bytes(), reply.code()).is_none()
            })
    }

    /// Splits `bytes` at the given points (taken modulo its length).
    fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2)
            .map(|w| bytes[w[0]..w[1]].to_vec())
            .collect()
    }

    /// Feeds every chunk, calling again on the rest after each reply, and
    /// collects the replies.
    fn read_all(p: &mut ReplyParser, chunks: &[Vec<u8>]) -> Result<Vec<Reply>, ReplyError> {
        let mut replies = Vec::new();
        for chunk in chunks {
            let mut at = 0;
            while at < chunk.len() {
                let (n, reply) = p.feed(&chunk[at..])?;
                assert!(n > 0 && at + n <= chunk.len());
                // A call that returns no reply has consumed everything.
                assert!(reply.is_some() || at + n == chunk.len());
                at += n;
                replies.extend(reply);
            }
        }
        Ok(replies)
    }

    proptest! {
        #[test]
        fn parser_reads_back_written_replies(
            replies in prop::collection::vec(arb_reply(), 1..4),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut wire = Vec::new();
            for reply in &replies {
                reply.write_to(&mut wire);
            }
            let mut p = parser();
            let read = read_all(&mut p, &chunks(&wire, &cuts)).unwrap();
            prop_assert_eq!(read, replies);
            prop_assert!(!p.is_partial());
        }

        #[test]
        fn display_matches_wire_form(reply in arb_reply()) {
            let wire = String::from_utf8(reply.to_bytes()).unwrap();
            let expected = wire.strip_suffix("\r\n").unwrap().replace("\r\n", "\n");
            prop_assert_eq!(reply.to_string(), expected);
        }

        #[test]
        fn parser_never_panics_and_stays_bounded(
            bytes in prop::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'-'), Just(b'.'), b'0'..=b'9', any::<u8>()],
                0..400,
            ),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            max_line_len in 0usize..40,
            max_lines in 0usize..5,
        ) {
            let mut p = limited(max_line_len, max_lines);
            let mut result = Ok(Vec::new());
            for chunk in chunks(&bytes, &cuts) {
                result = read_all(&mut p, &[chunk]);
                prop_assert!(p.partial.len() <= max_line_len + 1);
                prop_assert!(p.lines.len() <= max_lines);
                if result.is_err() {
                    break;
                }
            }
            if let Ok(replies) = result {
                for reply in replies {
                    prop_assert!(!reply.lines().is_empty());
                    prop_assert!(reply.lines().len() <= max_lines);
                    prop_assert!(reply.lines().iter().all(|l| !l.contains(['\r', '\n'])));
                }
            }
        }

        #[test]
        fn sanitised_text_never_adds_lines(text in "(?s).{0,40}", code in arb_code()) {
            let reply = Reply::new(code, None, text);
            let wire = reply.to_bytes();
            prop_assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(wire.iter().filter(|&&b| b == b'\r').count(), 1);
        }
    }
}
