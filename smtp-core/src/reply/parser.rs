//! Reading replies from a server incrementally, each line bounded and ending only at CRLF.

use std::fmt;

use super::{EnhancedCode, Reply, ReplyCode};

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

pub(super) fn malformed(reason: &str) -> ReplyError {
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
    pub(super) limits: ReplyLimits,
    /// The start of a line whose LF has not arrived yet.
    pub(super) partial: Vec<u8>,
    /// Code of the reply being read, set by its first line.
    pub(super) code: Option<ReplyCode>,
    /// Enhanced code found on the first line of the reply being read.
    pub(super) enhanced: Option<EnhancedCode>,
    /// Text of the lines read so far of the reply being read.
    pub(super) lines: Vec<String>,
    /// Set on the first error; the stream cannot be resynchronised after a
    /// broken reply, so every later call reports the same error.
    pub(super) failed: Option<ReplyError>,
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

    pub(super) fn fail(&mut self, error: ReplyError) -> ReplyError {
        self.failed = Some(error.clone());
        // Drop buffered data: nothing more will be read.
        self.partial = Vec::new();
        self.lines = Vec::new();
        error
    }

    /// Handles one complete line (without its LF); returns the reply when
    /// this was its last line.
    pub(super) fn read_line(&mut self, raw: &[u8]) -> Result<Option<Reply>, ReplyError> {
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
        // No CR or LF is left in `text` (cleaned above): `sanitize` would scan it again.
        debug_assert!(memchr::memchr2(b'\r', b'\n', text).is_none());
        self.lines.push(String::from_utf8_lossy(text).into_owned());
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
pub(super) fn split_line(line: &[u8]) -> Result<(ReplyCode, bool, &[u8]), ReplyError> {
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
pub(super) fn enhanced_prefix(text: &[u8], code: ReplyCode) -> Option<(EnhancedCode, usize)> {
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
