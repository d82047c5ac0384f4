//! Reply codes (RFC 5321 §4.2) and their classes.

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
pub struct ReplyCode(pub(super) u16);

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
