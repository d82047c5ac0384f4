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

mod code;
mod enhanced;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;

pub use code::{ReplyClass, ReplyCode};
pub use enhanced::EnhancedCode;
pub use parser::{ReplyError, ReplyLimits, ReplyParser};

/// Replaces CR and LF by spaces, so text taken from anywhere can never end a
/// reply line early and smuggle in a line of its own.
pub(super) fn sanitize(text: String) -> String {
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
            write_line(out, self.code, self.enhanced, text, i == last);
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

/// Appends one line of a reply (see [`Reply::write_to`]); `text` has no CR or LF.
pub(crate) fn write_line(
    out: &mut Vec<u8>,
    code: ReplyCode,
    enhanced: Option<EnhancedCode>,
    text: &str,
    last: bool,
) {
    // perf: the code, separators and enhanced code are put together in a small array and
    // copied at once (a fixed-size copy, cut to length), instead of eight small appends
    // each checking the capacity: the server says four of these per message.
    let mut head = [0u8; LINE_HEAD_MAX];
    let mut n = put_number(&mut head, 0, code.0);
    let separator = if last { b' ' } else { b'-' };
    if let Some(enhanced) = enhanced {
        head[n] = separator;
        n = put_number(&mut head, n + 1, u16::from(enhanced.class));
        head[n] = b'.';
        n = put_number(&mut head, n + 1, enhanced.subject);
        head[n] = b'.';
        n = put_number(&mut head, n + 1, enhanced.detail);
        if !text.is_empty() {
            head[n] = b' ';
            n += 1;
        }
    } else if !text.is_empty() {
        head[n] = separator;
        n += 1;
    } else if !last {
        // A continuation line needs its '-' even without text; only the last line may
        // end right after the code.
        head[n] = b'-';
        n += 1;
    }
    out.reserve(LINE_HEAD_MAX + text.len() + 2);
    let start = out.len();
    out.extend_from_slice(&head);
    out.truncate(start + n);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The longest start of a reply line: a code, a separator, an enhanced code of three
/// numbers of up to five digits each with its two dots, and a space.
const LINE_HEAD_MAX: usize = 5 + 1 + 3 * 5 + 2 + 1;

/// Writes the decimal form of `n` into `buf` at `at`, without going through `fmt`;
/// returns where it ends.
#[inline(always)]
fn put_number(buf: &mut [u8; LINE_HEAD_MAX], at: usize, n: u16) -> usize {
    if (100..1000).contains(&n) {
        // Every reply code; enhanced-code parts are mostly the one digit below.
        buf[at] = b'0' + (n / 100) as u8;
        buf[at + 1] = b'0' + (n / 10 % 10) as u8;
        buf[at + 2] = b'0' + (n % 10) as u8;
        return at + 3;
    }
    if n < 10 {
        buf[at] = b'0' + n as u8;
        return at + 1;
    }
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut n = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - start;
    buf[at..at + len].copy_from_slice(&digits[start..]);
    at + len
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
