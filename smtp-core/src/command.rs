//! SMTP commands: parsed by the server, written by the client.
//!
//! Parsing is liberal where that is safe (verbs in any case, `MAIL FROM: <a@b>` with a space
//! after the colon, a path without angle brackets) and strict where it matters (paths,
//! parameter syntax, length limits). Every failure is a [`CommandError`] that knows the reply
//! it deserves, so a server never has to invent one.
//!
//! ```
//! use smtp_core::command::Command;
//! let cmd = Command::parse(b"mail from: <alice@example.com> SIZE=1024").unwrap();
//! let mut wire = Vec::new();
//! cmd.write_to(&mut wire);
//! assert_eq!(wire, b"MAIL FROM:<alice@example.com> SIZE=1024\r\n");
//! ```

use std::fmt;

use crate::address::{self, AddressError, ForwardPath, ReversePath, SpareText};
use crate::ehlo::AuthMechanism;
use crate::reply::{EnhancedCode, Reply, ReplyCode};

/// One SMTP command with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`: plain SMTP greeting.
    Helo(String),
    /// `EHLO domain`: extended greeting; the reply lists the extensions.
    Ehlo(String),
    /// `LHLO domain`: the LMTP greeting (RFC 2033).
    Lhlo(String),
    /// `MAIL FROM:<path> [params]`: starts a transaction.
    Mail {
        /// The sender, or the null path.
        from: ReversePath,
        /// ESMTP parameters.
        params: MailParameters,
    },
    /// `RCPT TO:<path> [params]`: adds a recipient.
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// ESMTP parameters.
        params: RcptParameters,
    },
    /// `DATA`: the message follows, dot-stuffed, up to `<CRLF>.<CRLF>`.
    Data,
    /// `BDAT size [LAST]`: a chunk of exactly `size` octets follows (RFC 3030).
    Bdat {
        /// Octets in the chunk.
        size: u64,
        /// True for the final chunk.
        last: bool,
    },
    /// `RSET`: abandons the transaction.
    Rset,
    /// `NOOP [string]`: does nothing. RFC 5321 4.1.1.9 allows an argument, which the
    /// server ignores; it is kept here for handlers that look at it (aiosmtpd's
    /// `handle_NOOP` gets it).
    Noop(Option<String>),
    /// `QUIT`: closes the session.
    Quit,
    /// `VRFY string`: asks whether a mailbox exists.
    Vrfy(String),
    /// `EXPN string`: asks for a mailing list's members.
    Expn(String),
    /// `HELP [topic]`.
    Help(Option<String>),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism.
        mechanism: AuthMechanism,
        /// The initial response, base64 (or `=` for empty), when sent with the command.
        initial_response: Option<String>,
    },
}

/// The BODY parameter of MAIL (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME`.
    EightBitMime,
    /// `BINARYMIME`: only with BDAT.
    BinaryMime,
}

impl Body {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }
}

/// The RET parameter of MAIL (RFC 3461): what a bounce should carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `FULL`: the whole message.
    Full,
    /// `HDRS`: the headers only.
    Headers,
}

impl Ret {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Headers => "HDRS",
        }
    }
}

/// The NOTIFY parameter of RCPT (RFC 3461): when to send a delivery status notification.
/// `NEVER` is all flags false.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Notify {
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    fn write_to(self, out: &mut Vec<u8>) {
        if self == Notify::NEVER {
            out.extend_from_slice(b"NEVER");
            return;
        }
        let mut first = true;
        for (on, name) in [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ] {
            if on {
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(name.as_bytes());
                first = false;
            }
        }
    }
}

/// Encodes `text` as xtext (RFC 3461 section 4): printable ASCII other than `+` and `=`
/// as is, every other byte as `+XX`. For ENVID and ORCPT values built from raw text.
///
/// ```
/// use smtp_core::command::encode_xtext;
/// assert_eq!(encode_xtext("a+b=c d"), "a+2Bb+3Dc+20d");
/// ```
pub fn encode_xtext(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// An ESMTP parameter that this library does not interpret, kept as sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Parameter {
    /// The keyword, upper-cased.
    pub keyword: String,
    /// The value after `=`, if any.
    pub value: Option<String>,
}

/// The parameters of MAIL FROM.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MailParameters {
    /// `SIZE=n` (RFC 1870): the client's estimate of the message size.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152, RFC 3030).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531): addresses or headers may be UTF-8.
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461), xtext as sent.
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954), xtext as sent (`<>` when unknown).
    pub auth: Option<String>,
    /// Anything else, in order.
    pub other: Vec<Parameter>,
}

/// The parameters of RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RcptParameters {
    /// `NOTIFY=` (RFC 3461).
    pub notify: Option<Notify>,
    /// `ORCPT=addr-type;xtext` (RFC 3461), as sent.
    pub orcpt: Option<String>,
    /// Anything else, in order.
    pub other: Vec<Parameter>,
}

/// Why a command line was refused; [`CommandError::reply`] gives the reply it deserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// An empty line.
    Empty,
    /// An unknown verb.
    Unrecognized,
    /// NUL bytes or invalid UTF-8 in the line.
    InvalidCharacters,
    /// The arguments do not fit the command's syntax; the text shows the right form.
    Syntax(&'static str),
    /// The MAIL path is malformed.
    BadSender(AddressError),
    /// The RCPT path is malformed.
    BadRecipient(AddressError),
    /// A parameter is malformed or repeated.
    BadParameter(&'static str),
    /// A command argument given to the client contains CR, LF or NUL.
    ControlCharacter,
}

impl CommandError {
    /// The reply a server sends for this error.
    pub fn reply(&self) -> Reply {
        let (code, enhanced, text): (ReplyCode, EnhancedCode, String) = match *self {
            CommandError::Empty => (
                ReplyCode::SYNTAX_ERROR,
                EnhancedCode::SYNTAX_ERROR,
                "Error: bad syntax".into(),
            ),
            CommandError::Unrecognized => (
                ReplyCode::SYNTAX_ERROR,
                EnhancedCode::INVALID_COMMAND,
                "Error: command not recognized".into(),
            ),
            CommandError::InvalidCharacters | CommandError::ControlCharacter => (
                ReplyCode::SYNTAX_ERROR,
                EnhancedCode::SYNTAX_ERROR,
                "Error: invalid characters in command".into(),
            ),
            CommandError::Syntax(usage) => (
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::INVALID_ARGS,
                format!("Syntax: {usage}"),
            ),
            CommandError::BadSender(e) => (
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::BAD_SENDER_SYNTAX,
                format!("Bad sender address syntax: {e}"),
            ),
            CommandError::BadRecipient(e) => (
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::BAD_DESTINATION_SYNTAX,
                format!("Bad recipient address syntax: {e}"),
            ),
            CommandError::BadParameter(what) => (
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::INVALID_ARGS,
                format!("Bad parameter: {what}"),
            ),
        };
        Reply::new(code, Some(enhanced), text)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::ControlCharacter => f.write_str("CR, LF or NUL in a command argument"),
            other => f.write_str(&other.reply().text()),
        }
    }
}

impl std::error::Error for CommandError {}

/// Splits `line` at its first space: the verb and the rest (without the space).
fn split_verb(line: &str) -> (&str, &str) {
    // A byte loop: the verb is a few letters, too short for a memchr call to pay off.
    match line.bytes().position(|b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    }
}

/// A keyword that must be followed by nothing.
fn no_argument(rest: &str, command: Command, usage: &'static str) -> Result<Command, CommandError> {
    if rest.trim_matches(' ').is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax(usage))
    }
}

/// A hostname argument of HELO/EHLO/LHLO. Liberal: real clients send all kinds of names
/// ("localhost", bare IPs, underscores), and rejecting them helps nobody; only emptiness
/// and characters that could not be a name are refused.
fn hello_domain(rest: &str, usage: &'static str) -> Result<String, CommandError> {
    let domain = rest.trim_matches(' ');
    if domain.is_empty() || domain.bytes().any(|b| b < 0x21 && b != b' ' || b == 0x7f) {
        return Err(CommandError::Syntax(usage));
    }
    Ok(domain.to_owned())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

impl Command {
    /// Parses one command line, without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        Command::parse_with(line, &mut SpareText::default())
    }

    /// [`Command::parse`], holding a MAIL or RCPT address in one of `spare`'s strings.
    pub(crate) fn parse_with(line: &[u8], spare: &mut SpareText) -> Result<Command, CommandError> {
        // A NUL anywhere refuses the line as invalid characters. perf: the commands of a
        // transaction cannot hold one once parsed (their paths, parameters and names
        // refuse every control character), so the line is only scanned for one when the
        // parse failed or the command carries free text.
        let parsed = Command::parse_text(line, spare);
        let may_hold_nul = !matches!(
            parsed,
            Ok(Command::Mail { .. }
                | Command::Rcpt { .. }
                | Command::Data
                | Command::Bdat { .. }
                | Command::Rset
                | Command::Quit
                | Command::StartTls
                | Command::Helo(_)
                | Command::Ehlo(_)
                | Command::Lhlo(_))
        );
        if may_hold_nul && line.contains(&0) {
            return Err(CommandError::InvalidCharacters);
        }
        parsed
    }

    /// [`Command::parse`] but for the NUL check.
    fn parse_text(line: &[u8], spare: &mut SpareText) -> Result<Command, CommandError> {
        let line = std::str::from_utf8(line).map_err(|_| CommandError::InvalidCharacters)?;
        // Trailing spaces are a common client quirk; they never change a command's meaning.
        let line = line.trim_end_matches(' ');
        if line.is_empty() {
            return Err(CommandError::Empty);
        }
        let (verb, rest) = split_verb(line);
        // perf: every verb is letters only, and for a letter `b | 0x20` is its lower case
        // while no other byte maps onto a lower-case letter, so one OR and one comparison
        // of the whole word match it in any case (as `eq_ignore_ascii_case` would).
        let verb4 = match *verb.as_bytes() {
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]) | 0x2020_2020,
            _ => 0,
        };
        let is4 = |name: &[u8; 4]| verb4 == u32::from_le_bytes(*name);
        match verb.len() {
            4 if is4(b"mail") => parse_mail(rest, spare),
            4 if is4(b"rcpt") => parse_rcpt(rest, spare),
            4 if is4(b"data") => no_argument(rest, Command::Data, "DATA"),
            4 if is4(b"ehlo") => Ok(Command::Ehlo(hello_domain(rest, "EHLO hostname")?)),
            4 if is4(b"helo") => Ok(Command::Helo(hello_domain(rest, "HELO hostname")?)),
            4 if is4(b"lhlo") => Ok(Command::Lhlo(hello_domain(rest, "LHLO hostname")?)),
            4 if is4(b"bdat") => parse_bdat(rest),
            4 if is4(b"rset") => no_argument(rest, Command::Rset, "RSET"),
            4 if is4(b"noop") => {
                let argument = rest.trim_matches(' ');
                Ok(Command::Noop(
                    (!argument.is_empty()).then(|| argument.to_owned()),
                ))
            }
            4 if is4(b"quit") => no_argument(rest, Command::Quit, "QUIT"),
            4 if is4(b"vrfy") => parse_string_argument(rest, "VRFY address").map(Command::Vrfy),
            4 if is4(b"expn") => parse_string_argument(rest, "EXPN list").map(Command::Expn),
            4 if is4(b"help") => {
                let topic = rest.trim_matches(' ');
                Ok(Command::Help((!topic.is_empty()).then(|| topic.to_owned())))
            }
            4 if is4(b"auth") => parse_auth(rest),
            8 if verb.eq_ignore_ascii_case("STARTTLS") => {
                no_argument(rest, Command::StartTls, "STARTTLS")
            }
            _ => Err(CommandError::Unrecognized),
        }
    }

    /// The verb as written on the wire.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Helo(_) => "HELO",
            Command::Ehlo(_) => "EHLO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop(_) => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }

    /// Refuses arguments that contain CR, LF or NUL, or a space where a single token is
    /// expected: written as they are, they would inject extra commands. Addresses are already
    /// safe by construction; this checks the free-text arguments and parameters.
    pub fn check_arguments(&self) -> Result<(), CommandError> {
        fn text(s: &str) -> Result<(), CommandError> {
            if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                Err(CommandError::ControlCharacter)
            } else {
                Ok(())
            }
        }
        fn token(s: &str) -> Result<(), CommandError> {
            text(s)?;
            if s.is_empty() || s.contains(' ') {
                Err(CommandError::BadParameter("empty or contains a space"))
            } else {
                Ok(())
            }
        }
        fn others(params: &[Parameter]) -> Result<(), CommandError> {
            for p in params {
                token(&p.keyword)?;
                if let Some(v) = &p.value {
                    token(v)?;
                }
            }
            Ok(())
        }
        match self {
            Command::Helo(d) | Command::Ehlo(d) | Command::Lhlo(d) => token(d),
            Command::Vrfy(s) | Command::Expn(s) => text(s),
            Command::Help(Some(s)) | Command::Noop(Some(s)) => text(s),
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                token(mechanism.name())?;
                initial_response.as_deref().map_or(Ok(()), token)
            }
            Command::Mail { params, .. } => {
                params.envid.as_deref().map_or(Ok(()), token)?;
                params.auth.as_deref().map_or(Ok(()), token)?;
                others(&params.other)
            }
            Command::Rcpt { params, .. } => {
                params.orcpt.as_deref().map_or(Ok(()), token)?;
                others(&params.other)
            }
            _ => Ok(()),
        }
    }

    /// Appends the command line, CRLF included. Call [`Command::check_arguments`] first for
    /// arguments that came from outside.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.verb().as_bytes());
        match self {
            Command::Helo(d) | Command::Ehlo(d) | Command::Lhlo(d) => {
                out.push(b' ');
                out.extend_from_slice(d.as_bytes());
            }
            Command::Mail { from, params } => {
                out.extend_from_slice(b" FROM:<");
                out.extend_from_slice(from.as_str().as_bytes());
                out.push(b'>');
                params.write_to(out);
            }
            Command::Rcpt { to, params } => {
                out.extend_from_slice(b" TO:<");
                out.extend_from_slice(to.as_str().as_bytes());
                out.push(b'>');
                params.write_to(out);
            }
            Command::Bdat { size, last } => {
                out.push(b' ');
                out.extend_from_slice(size.to_string().as_bytes());
                if *last {
                    out.extend_from_slice(b" LAST");
                }
            }
            Command::Vrfy(s)
            | Command::Expn(s)
            | Command::Help(Some(s))
            | Command::Noop(Some(s)) => {
                out.push(b' ');
                out.extend_from_slice(s.as_bytes());
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                out.push(b' ');
                out.extend_from_slice(mechanism.name().as_bytes());
                if let Some(r) = initial_response {
                    out.push(b' ');
                    out.extend_from_slice(r.as_bytes());
                }
            }
            Command::Data
            | Command::Rset
            | Command::Noop(None)
            | Command::Quit
            | Command::Help(None)
            | Command::StartTls => {}
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The command line as bytes, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        out
    }
}

fn parse_string_argument(rest: &str, usage: &'static str) -> Result<String, CommandError> {
    let arg = rest.trim_matches(' ');
    if arg.is_empty() {
        Err(CommandError::Syntax(usage))
    } else {
        Ok(arg.to_owned())
    }
}

fn parse_mail(rest: &str, spare: &mut SpareText) -> Result<Command, CommandError> {
    const USAGE: &str = "MAIL FROM:<address>";
    let after = strip_prefix_ignore_case(rest, "FROM:").ok_or(CommandError::Syntax(USAGE))?;
    let after = after.trim_start_matches(' ');
    let (from, params) =
        address::parse_reverse_path_in(after, spare).map_err(CommandError::BadSender)?;
    Ok(Command::Mail {
        from,
        params: MailParameters::parse(params)?,
    })
}

fn parse_rcpt(rest: &str, spare: &mut SpareText) -> Result<Command, CommandError> {
    const USAGE: &str = "RCPT TO:<address>";
    let after = strip_prefix_ignore_case(rest, "TO:").ok_or(CommandError::Syntax(USAGE))?;
    let after = after.trim_start_matches(' ');
    let (to, params) =
        address::parse_forward_path_in(after, spare).map_err(CommandError::BadRecipient)?;
    Ok(Command::Rcpt {
        to,
        params: RcptParameters::parse(params)?,
    })
}

fn parse_bdat(rest: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "BDAT size [LAST]";
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(CommandError::Syntax(USAGE))?;
    // RFC 3030 allows any number of digits; past 20 none fits in a u64, and parse catches
    // overflow within 20.
    if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandError::Syntax(USAGE));
    }
    let size = size.parse().map_err(|_| CommandError::Syntax(USAGE))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax(USAGE)),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &str) -> Result<Command, CommandError> {
    const USAGE: &str = "AUTH mechanism [initial-response]";
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let name = words.next().ok_or(CommandError::Syntax(USAGE))?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || name.len() > 20
    {
        return Err(CommandError::Syntax(USAGE));
    }
    let initial_response = words.next().map(str::to_owned);
    if words.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Auth {
        mechanism: AuthMechanism::parse(name),
        initial_response,
    })
}

/// Iterates over `KEYWORD[=value]` words, checking the RFC 5321 §4.1.2 esmtp-param syntax.
fn parameters(rest: &str) -> impl Iterator<Item = Result<(&str, Option<&str>), CommandError>> {
    rest.split(' ').filter(|w| !w.is_empty()).map(|word| {
        let (keyword, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let kb = keyword.as_bytes();
        if kb.is_empty()
            || !kb[0].is_ascii_alphanumeric()
            || !kb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return Err(CommandError::BadParameter("malformed keyword"));
        }
        if let Some(v) = value {
            // esmtp-value: printable ASCII except `=`, or UTF-8 (RFC 6531).
            if v.is_empty() || v.bytes().any(|b| b < 33 || b == b'=' || b == 127) {
                return Err(CommandError::BadParameter("malformed value"));
            }
        }
        Ok((keyword, value))
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(CommandError::BadParameter("repeated parameter"));
    }
    *slot = Some(value);
    Ok(())
}

/// Keeps a parameter this library does not interpret; a repeated one is an error.
fn push_other(
    other: &mut Vec<Parameter>,
    keyword: &str,
    value: Option<&str>,
) -> Result<(), CommandError> {
    if other
        .iter()
        .any(|o| o.keyword.eq_ignore_ascii_case(keyword))
    {
        return Err(CommandError::BadParameter("repeated parameter"));
    }
    other.push(Parameter {
        keyword: keyword.to_ascii_uppercase(),
        value: value.map(str::to_owned),
    });
    Ok(())
}

fn write_other(params: &[Parameter], out: &mut Vec<u8>) {
    for p in params {
        out.push(b' ');
        out.extend_from_slice(p.keyword.as_bytes());
        if let Some(v) = &p.value {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
    }
}

impl MailParameters {
    fn parse(rest: &str) -> Result<MailParameters, CommandError> {
        let mut p = MailParameters::default();
        if rest.bytes().all(|b| b == b' ') {
            return Ok(p); // no parameters, the common case: no splitting
        }
        for item in parameters(rest) {
            let (keyword, value) = item?;
            let is = |name: &str| keyword.eq_ignore_ascii_case(name);
            if is("SIZE") {
                let v = value.ok_or(CommandError::BadParameter("SIZE needs a value"))?;
                // RFC 1870: 1 to 20 digits.
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CommandError::BadParameter("SIZE must be a number"));
                }
                set_once(
                    &mut p.size,
                    v.parse()
                        .map_err(|_| CommandError::BadParameter("SIZE must be a number"))?,
                )?;
            } else if is("BODY") {
                let v = value.ok_or(CommandError::BadParameter("BODY needs a value"))?;
                let body = if v.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case("8BITMIME") {
                    Body::EightBitMime
                } else if v.eq_ignore_ascii_case("BINARYMIME") {
                    Body::BinaryMime
                } else {
                    return Err(CommandError::BadParameter(
                        "BODY must be 7BIT, 8BITMIME or BINARYMIME",
                    ));
                };
                set_once(&mut p.body, body)?;
            } else if is("SMTPUTF8") {
                if value.is_some() || p.smtputf8 {
                    return Err(CommandError::BadParameter("SMTPUTF8 takes no value"));
                }
                p.smtputf8 = true;
            } else if is("RET") {
                let v = value.ok_or(CommandError::BadParameter("RET needs a value"))?;
                let ret = if v.eq_ignore_ascii_case("FULL") {
                    Ret::Full
                } else if v.eq_ignore_ascii_case("HDRS") {
                    Ret::Headers
                } else {
                    return Err(CommandError::BadParameter("RET must be FULL or HDRS"));
                };
                set_once(&mut p.ret, ret)?;
            } else if is("ENVID") {
                let v = value.ok_or(CommandError::BadParameter("ENVID needs a value"))?;
                if v.len() > 100 {
                    return Err(CommandError::BadParameter(
                        "ENVID longer than 100 characters",
                    ));
                }
                set_once(&mut p.envid, v.to_owned())?;
            } else if is("AUTH") {
                let v = value.ok_or(CommandError::BadParameter("AUTH needs a value"))?;
                set_once(&mut p.auth, v.to_owned())?;
            } else {
                push_other(&mut p.other, keyword, value)?;
            }
        }
        Ok(p)
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(size) = self.size {
            out.extend_from_slice(b" SIZE=");
            out.extend_from_slice(size.to_string().as_bytes());
        }
        if let Some(body) = self.body {
            out.extend_from_slice(b" BODY=");
            out.extend_from_slice(body.as_str().as_bytes());
        }
        if self.smtputf8 {
            out.extend_from_slice(b" SMTPUTF8");
        }
        if let Some(ret) = self.ret {
            out.extend_from_slice(b" RET=");
            out.extend_from_slice(ret.as_str().as_bytes());
        }
        if let Some(envid) = &self.envid {
            out.extend_from_slice(b" ENVID=");
            out.extend_from_slice(envid.as_bytes());
        }
        if let Some(auth) = &self.auth {
            out.extend_from_slice(b" AUTH=");
            out.extend_from_slice(auth.as_bytes());
        }
        write_other(&self.other, out);
    }
}

impl RcptParameters {
    fn parse(rest: &str) -> Result<RcptParameters, CommandError> {
        let mut p = RcptParameters::default();
        if rest.bytes().all(|b| b == b' ') {
            return Ok(p); // no parameters, the common case: no splitting
        }
        for item in parameters(rest) {
            let (keyword, value) = item?;
            if keyword.eq_ignore_ascii_case("NOTIFY") {
                let v = value.ok_or(CommandError::BadParameter("NOTIFY needs a value"))?;
                set_once(&mut p.notify, parse_notify(v)?)?;
            } else if keyword.eq_ignore_ascii_case("ORCPT") {
                let v = value.ok_or(CommandError::BadParameter("ORCPT needs a value"))?;
                let (kind, addr) = v
                    .split_once(';')
                    .ok_or(CommandError::BadParameter("ORCPT must be type;address"))?;
                if kind.is_empty() || addr.is_empty() || v.len() > 500 {
                    return Err(CommandError::BadParameter("ORCPT must be type;address"));
                }
                set_once(&mut p.orcpt, v.to_owned())?;
            } else {
                push_other(&mut p.other, keyword, value)?;
            }
        }
        Ok(p)
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(notify) = self.notify {
            out.extend_from_slice(b" NOTIFY=");
            notify.write_to(out);
        }
        if let Some(orcpt) = &self.orcpt {
            out.extend_from_slice(b" ORCPT=");
            out.extend_from_slice(orcpt.as_bytes());
        }
        write_other(&self.other, out);
    }
}

fn parse_notify(v: &str) -> Result<Notify, CommandError> {
    const BAD: CommandError =
        CommandError::BadParameter("NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY");
    if v.eq_ignore_ascii_case("NEVER") {
        return Ok(Notify::NEVER);
    }
    let mut n = Notify::default();
    for item in v.split(',') {
        let flag = if item.eq_ignore_ascii_case("SUCCESS") {
            &mut n.success
        } else if item.eq_ignore_ascii_case("FAILURE") {
            &mut n.failure
        } else if item.eq_ignore_ascii_case("DELAY") {
            &mut n.delay
        } else {
            return Err(BAD);
        };
        if *flag {
            return Err(BAD);
        }
        *flag = true;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use proptest::prelude::*;

    proptest! {
        /// A NUL anywhere in a line refuses it as invalid characters, whatever the
        /// command, including where the rest of the line would parse.
        #[test]
        fn a_nul_anywhere_is_invalid_characters(
            line in prop_oneof![
                Just("MAIL FROM:<a@x.test> SIZE=10 BODY=8BITMIME"),
                Just("MAIL FROM:<\"q u\"@[192.0.2.1]> ENVID=x AUTH=<>"),
                Just("RCPT TO:<b@x.test> NOTIFY=NEVER ORCPT=rfc822;b@x.test"),
                Just("RCPT TO:<Postmaster>"),
                Just("DATA"), Just("RSET"), Just("QUIT"), Just("STARTTLS"),
                Just("BDAT 100 LAST"), Just("EHLO client.test"), Just("HELO h"),
                Just("LHLO l"), Just("NOOP text"), Just("HELP topic"),
                Just("VRFY user"), Just("EXPN list"), Just("AUTH PLAIN dGVzdA=="),
                Just("XFOO bar"),
            ],
            at in any::<prop::sample::Index>(),
            replace in any::<bool>(),
        ) {
            let mut bytes = line.as_bytes().to_vec();
            let at = at.index(bytes.len() + 1);
            if replace && at < bytes.len() {
                bytes[at] = 0;
            } else {
                bytes.insert(at, 0);
            }
            prop_assert_eq!(Command::parse(&bytes), Err(CommandError::InvalidCharacters));
            // Without the NUL every one of these lines parses (but the unknown verb).
            prop_assert_eq!(Command::parse(line.as_bytes()).is_ok(), !line.starts_with('X'));
        }
    }

    fn parse(s: &str) -> Result<Command, CommandError> {
        Command::parse(s.as_bytes())
    }

    fn code(e: CommandError) -> (u16, String) {
        let r = e.reply();
        (
            r.code().get(),
            r.enhanced().map(|e| e.to_string()).unwrap_or_default(),
        )
    }

    #[test]
    fn hello_commands() {
        assert_eq!(
            parse("HELO client.example").unwrap(),
            Command::Helo("client.example".into())
        );
        assert_eq!(
            parse("ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(
            parse("LhLo [127.0.0.1]").unwrap(),
            Command::Lhlo("[127.0.0.1]".into())
        );
        assert_eq!(code(parse("EHLO").unwrap_err()), (501, "5.5.4".into()));
        assert_eq!(code(parse("HELO  ").unwrap_err()), (501, "5.5.4".into()));
    }

    #[test]
    fn mail_variants() {
        let Command::Mail { from, params } = parse("MAIL FROM:<a@b.example>").unwrap() else {
            panic!()
        };
        assert_eq!(from.as_str(), "a@b.example");
        assert_eq!(params, MailParameters::default());
        // The seed's sample session: lower case and a space after the colon.
        let Command::Mail { from, .. } = parse("mail from: <askcuix@domain.com>").unwrap() else {
            panic!()
        };
        assert_eq!(from.as_str(), "askcuix@domain.com");
        assert_eq!(
            parse("MAIL FROM:<>").unwrap(),
            Command::Mail {
                from: ReversePath::Null,
                params: Default::default()
            }
        );
        assert_eq!(
            code(parse("MAIL TO:<a@b>").unwrap_err()),
            (501, "5.5.4".into())
        );
        assert_eq!(
            code(parse("MAIL FROM:<a@>").unwrap_err()),
            (501, "5.1.7".into())
        );
        assert_eq!(code(parse("MAIL").unwrap_err()), (501, "5.5.4".into()));
    }

    #[test]
    fn mail_parameters() {
        let Command::Mail { params, .. } =
            parse("MAIL FROM:<a@b.example> size=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ314159 AUTH=<> X-FOO=bar XBAZ")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(params.size, Some(1000));
        assert_eq!(params.body, Some(Body::EightBitMime));
        assert!(params.smtputf8);
        assert_eq!(params.ret, Some(Ret::Headers));
        assert_eq!(params.envid.as_deref(), Some("QQ314159"));
        assert_eq!(params.auth.as_deref(), Some("<>"));
        assert_eq!(
            params.other,
            vec![
                Parameter {
                    keyword: "X-FOO".into(),
                    value: Some("bar".into())
                },
                Parameter {
                    keyword: "XBAZ".into(),
                    value: None
                }
            ]
        );
        for bad in [
            "MAIL FROM:<a@b> SIZE=abc",
            "MAIL FROM:<a@b> SIZE",
            "MAIL FROM:<a@b> SIZE=1 SIZE=2",
            "MAIL FROM:<a@b> BODY=9BIT",
            "MAIL FROM:<a@b> RET=ALL",
            "MAIL FROM:<a@b> SMTPUTF8=yes",
            "MAIL FROM:<a@b> =x",
            "MAIL FROM:<a@b> X=",
            "MAIL FROM:<a@b> SIZE=99999999999999999999",
        ] {
            assert_eq!(
                code(parse(bad).unwrap_err()),
                (501, "5.5.4".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn rcpt_variants() {
        let Command::Rcpt { to, params } =
            parse("RCPT TO:<b@c.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@c.example").unwrap()
        else {
            panic!()
        };
        assert_eq!(to.as_str(), "b@c.example");
        assert_eq!(
            params.notify,
            Some(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(params.orcpt.as_deref(), Some("rfc822;b@c.example"));
        let Command::Rcpt { params, .. } = parse("rcpt to:<postmaster> NOTIFY=never").unwrap()
        else {
            panic!()
        };
        assert_eq!(params.notify, Some(Notify::NEVER));
        assert_eq!(
            code(parse("RCPT TO:<>").unwrap_err()),
            (501, "5.1.3".into())
        );
        assert_eq!(
            code(parse("RCPT TO:<b@c> NOTIFY=SOMETIMES").unwrap_err()),
            (501, "5.5.4".into())
        );
        assert_eq!(
            code(parse("RCPT TO:<b@c> NOTIFY=SUCCESS,SUCCESS").unwrap_err()),
            (501, "5.5.4".into())
        );
        assert_eq!(
            code(parse("RCPT TO:<b@c> ORCPT=nocolon").unwrap_err()),
            (501, "5.5.4".into())
        );
        assert_eq!(
            code(parse("RCPT FROM:<b@c>").unwrap_err()),
            (501, "5.5.4".into())
        );
    }

    #[test]
    fn simple_commands() {
        assert_eq!(parse("DATA").unwrap(), Command::Data);
        assert_eq!(parse("data  ").unwrap(), Command::Data);
        assert_eq!(code(parse("DATA now").unwrap_err()), (501, "5.5.4".into()));
        assert_eq!(parse("RSET").unwrap(), Command::Rset);
        assert_eq!(parse("NOOP").unwrap(), Command::Noop(None));
        assert_eq!(parse("NOOP  ").unwrap(), Command::Noop(None));
        assert_eq!(parse("QUIT").unwrap(), Command::Quit);
        assert_eq!(code(parse("QUIT now").unwrap_err()), (501, "5.5.4".into()));
        assert_eq!(parse("STARTTLS").unwrap(), Command::StartTls);
        assert_eq!(
            code(parse("STARTTLS x").unwrap_err()),
            (501, "5.5.4".into())
        );
        assert_eq!(parse("VRFY alice").unwrap(), Command::Vrfy("alice".into()));
        assert_eq!(code(parse("VRFY").unwrap_err()), (501, "5.5.4".into()));
        assert_eq!(parse("EXPN staff").unwrap(), Command::Expn("staff".into()));
        assert_eq!(code(parse("EXPN").unwrap_err()), (501, "5.5.4".into()));
        assert_eq!(parse("HELP").unwrap(), Command::Help(None));
        assert_eq!(
            parse("help mail").unwrap(),
            Command::Help(Some("mail".into()))
        );
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(
            parse("BDAT 100").unwrap(),
            Command::Bdat {
                size: 100,
                last: false
            }
        );
        assert_eq!(
            parse("bdat 0 last").unwrap(),
            Command::Bdat {
                size: 0,
                last: true
            }
        );
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT 1 FIRST",
            "BDAT 1 LAST more",
            "BDAT 99999999999999999999",
        ] {
            assert_eq!(
                code(parse(bad).unwrap_err()),
                (501, "5.5.4".into()),
                "{bad}"
            );
        }
        assert_eq!(
            parse("AUTH PLAIN AGFsaWNlAHB3").unwrap(),
            Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial_response: Some("AGFsaWNlAHB3".into())
            }
        );
        assert_eq!(
            parse("auth login").unwrap(),
            Command::Auth {
                mechanism: AuthMechanism::Login,
                initial_response: None
            }
        );
        assert_eq!(code(parse("AUTH").unwrap_err()), (501, "5.5.4".into()));
        assert_eq!(
            code(parse("AUTH PLAIN a b").unwrap_err()),
            (501, "5.5.4".into())
        );
    }

    /// RFC 5321 4.1.1.9: `NOOP [ SP String ]`; the argument is accepted and kept as given
    /// (trimmed), and a written one cannot smuggle a second command.
    #[test]
    fn noop_takes_an_optional_argument() {
        assert_eq!(
            parse("noop anything at all").unwrap(),
            Command::Noop(Some("anything at all".into()))
        );
        assert_eq!(
            parse("NOOP \"quoted\" ").unwrap(),
            Command::Noop(Some("\"quoted\"".into()))
        );
        assert_eq!(
            Command::Noop(Some("x y".into())).to_bytes(),
            b"NOOP x y\r\n".to_vec()
        );
        assert_eq!(Command::Noop(None).to_bytes(), b"NOOP\r\n".to_vec());
        assert_eq!(
            Command::Noop(Some("x\r\nRSET".into())).check_arguments(),
            Err(CommandError::ControlCharacter)
        );
    }

    #[test]
    fn framing_errors() {
        assert_eq!(code(parse("").unwrap_err()), (500, "5.5.2".into()));
        assert_eq!(code(parse("FOO bar").unwrap_err()), (500, "5.5.1".into()));
        assert_eq!(
            code(parse("MAILX FROM:<a@b>").unwrap_err()),
            (500, "5.5.1".into())
        );
        assert_eq!(
            code(Command::parse(b"NOOP\0").unwrap_err()),
            (500, "5.5.2".into())
        );
        assert_eq!(
            code(Command::parse(b"MAIL FROM:<\xff@b>").unwrap_err()),
            (500, "5.5.2".into())
        );
    }

    #[test]
    fn write_round_trip() {
        let cases = [
            "HELO a.example",
            "EHLO a.example",
            "LHLO a.example",
            "MAIL FROM:<a@b.example> SIZE=10 BODY=BINARYMIME SMTPUTF8 RET=FULL ENVID=x AUTH=a+2Bb X-Y=z",
            "MAIL FROM:<>",
            "RCPT TO:<b@c.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@c.example",
            "RCPT TO:<Postmaster>",
            "DATA",
            "BDAT 42 LAST",
            "BDAT 7",
            "RSET",
            "NOOP",
            "NOOP keep-alive 1",
            "QUIT",
            "VRFY alice",
            "EXPN list",
            "HELP",
            "HELP DATA",
            "STARTTLS",
            "AUTH LOGIN",
            "AUTH PLAIN =",
            "AUTH XOAUTH2 dG9rZW4=",
        ];
        for line in cases {
            let cmd = parse(line).unwrap();
            assert_eq!(cmd.to_bytes(), format!("{line}\r\n").into_bytes(), "{line}");
            assert!(cmd.check_arguments().is_ok());
        }
    }

    #[test]
    fn injection_is_refused_before_writing() {
        let evil = [
            Command::Ehlo("a\r\nRSET".into()),
            Command::Vrfy("x\nQUIT".into()),
            Command::Help(Some("\0".into())),
            Command::Auth {
                mechanism: AuthMechanism::Plain,
                initial_response: Some("x\r\nDATA".into()),
            },
            Command::Mail {
                from: ReversePath::Mailbox(Address::parse("a@b").unwrap()),
                params: MailParameters {
                    envid: Some("x\r\nRCPT TO:<evil@x>".into()),
                    ..Default::default()
                },
            },
            Command::Rcpt {
                to: ForwardPath::Mailbox(Address::parse("a@b").unwrap()),
                params: RcptParameters {
                    other: vec![Parameter {
                        keyword: "X".into(),
                        value: Some("1\r\nDATA".into()),
                    }],
                    ..Default::default()
                },
            },
        ];
        for cmd in evil {
            assert_eq!(
                cmd.check_arguments(),
                Err(CommandError::ControlCharacter),
                "{cmd:?}"
            );
        }
        assert!(Command::Ehlo("two words".into()).check_arguments().is_err());
    }
}
