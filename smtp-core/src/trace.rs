//! The wire trace: every command and reply line of a conversation, with its direction and
//! connection id, as the sessions see them. AUTH payloads and SASL responses are redacted,
//! and message content is not traced (its size is).
//!
//! A session traces when it is given a [`TraceSink`] ([`crate::server::ServerSession::set_trace`],
//! [`crate::client::ClientSession::set_trace`]; the drivers do it when their options carry
//! one). [`LogTrace`] writes the lines to the `log` facade under the target `smtpx::wire`
//! at debug level; the C and Python bindings install sinks of their own.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use smtp_core::server::{ServerConfig, ServerSession};
//! use smtp_core::trace::{Direction, Trace, TraceSink};
//!
//! #[derive(Default)]
//! struct Keep(Mutex<Vec<String>>);
//! impl Trace for Keep {
//!     fn line(&self, connection: u64, direction: Direction, text: &str) {
//!         self.0.lock().unwrap().push(format!("{connection} {direction} {text}"));
//!     }
//! }
//!
//! let keep = Arc::new(Keep::default());
//! let mut session = ServerSession::new(ServerConfig::new("mx.test"), Duration::ZERO);
//! session.set_trace(TraceSink::new(keep.clone()), 7);
//! session.poll_event(); // Connect
//! session.decide(smtp_core::Decision::Accept).unwrap();
//! session.receive(b"NOOP\r\n", Duration::ZERO);
//! while session.poll_event().is_some() {}
//! let lines = keep.0.lock().unwrap();
//! assert_eq!(lines[0], "7 S: 220 mx.test ESMTP smtpx");
//! assert_eq!(lines[1], "7 C: NOOP");
//! assert_eq!(lines[2], "7 S: 250 2.0.0 Ok");
//! ```

use std::fmt;
use std::sync::Arc;

/// Who said a traced line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A command (or a redacted SASL response, or a content summary) from the client.
    ClientToServer,
    /// A reply line from the server.
    ServerToClient,
}

impl fmt::Display for Direction {
    /// `C:` or `S:`, as transcripts are written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ClientToServer => "C:",
            Direction::ServerToClient => "S:",
        })
    }
}

/// Where traced lines go. Called from whatever thread runs the connection, possibly from
/// several at once: implementations must be cheap and thread-safe.
pub trait Trace: Send + Sync {
    /// One line, without its CRLF, already redacted.
    fn line(&self, connection: u64, direction: Direction, text: &str);

    /// False while the sink would drop every line: the session then skips building them
    /// (redacting, decoding, cutting). A sink that can be switched off and on while the
    /// connection runs (Python's `set_debuglevel`) says so here; the default is true.
    fn enabled(&self) -> bool {
        true
    }
}

/// A shared [`Trace`], as options and sessions hold it.
#[derive(Clone)]
pub struct TraceSink(Arc<dyn Trace>);

impl TraceSink {
    /// Wraps a trace implementation.
    pub fn new(trace: Arc<dyn Trace>) -> TraceSink {
        TraceSink(trace)
    }

    /// The sink that writes to the `log` facade ([`LogTrace`]).
    pub fn log() -> TraceSink {
        TraceSink(Arc::new(LogTrace))
    }

    /// The sink that prints each line on standard error ([`StderrTrace`]).
    pub fn stderr() -> TraceSink {
        TraceSink(Arc::new(StderrTrace))
    }
}

impl fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceSink")
    }
}

/// Writes each line to the `log` facade: target `smtpx::wire`, level debug, as
/// `conn=ID C: LINE`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogTrace;

impl Trace for LogTrace {
    fn line(&self, connection: u64, direction: Direction, text: &str) {
        log::debug!(target: "smtpx::wire", "conn={connection} {direction} {text}");
    }
}

/// Prints each line on standard error as `conn=ID C: LINE` (what `smtp-server -v` and
/// `smtp-send -v` show). One `write` per line, so lines of concurrent connections do not
/// interleave within a line.
#[derive(Clone, Copy, Debug, Default)]
pub struct StderrTrace;

impl Trace for StderrTrace {
    fn line(&self, connection: u64, direction: Direction, text: &str) {
        use std::io::Write as _;
        let line = format!("conn={connection} {direction} {text}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// The longest line text handed to a sink; longer lines are cut (a trace is for reading).
const MAX_TRACED: usize = 1024;

/// A session's tracing state: the sink and the connection id, when tracing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tracer {
    sink: Option<(TraceSink, u64)>,
}

impl Tracer {
    pub(crate) fn set(&mut self, sink: TraceSink, connection: u64) {
        self.sink = Some((sink, connection));
    }

    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.sink.as_ref().is_some_and(|(sink, _)| sink.0.enabled())
    }

    fn emit(&self, direction: Direction, text: &str) {
        if let Some((sink, id)) = &self.sink
            && sink.0.enabled()
        {
            let text = match text.char_indices().nth(MAX_TRACED) {
                Some((cut, _)) => &text[..cut],
                None => text,
            };
            sink.0.line(*id, direction, text);
        }
    }

    /// A command line (without CRLF); an AUTH initial response is redacted.
    pub(crate) fn command(&self, direction: Direction, line: &[u8]) {
        if self.is_on() {
            self.emit(direction, &redact_command(line));
        }
    }

    /// A SASL response line: never traced as it is.
    pub(crate) fn secret(&self, direction: Direction) {
        self.emit(direction, "<SASL response redacted>");
    }

    /// The bytes of one or more reply lines (CRLF-terminated), as written or read.
    #[inline]
    pub(crate) fn replies(&self, direction: Direction, bytes: &[u8]) {
        // perf: the check is inlined into every reply the server says; the tracing is not.
        if self.is_on() {
            self.trace_replies(direction, bytes);
        }
    }

    #[inline(never)]
    fn trace_replies(&self, direction: Direction, bytes: &[u8]) {
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                self.emit(direction, &String::from_utf8_lossy(line));
            }
        }
    }

    /// A message's content, by its size only.
    #[inline]
    pub(crate) fn content(&self, direction: Direction, octets: u64) {
        if self.is_on() {
            self.trace_content(direction, octets);
        }
    }

    #[inline(never)]
    fn trace_content(&self, direction: Direction, octets: u64) {
        self.emit(direction, &format!("<message content, {octets} octets>"));
    }
}

/// `AUTH MECH initial-response` becomes `AUTH MECH <redacted>`; every other line is shown
/// as it is (lossily decoded).
fn redact_command(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut words = text.splitn(3, ' ');
    let verb = words.next().unwrap_or("");
    if verb.eq_ignore_ascii_case("AUTH") {
        let mechanism = words.next().unwrap_or("");
        return match words.next() {
            Some(_) => format!("{verb} {mechanism} <redacted>"),
            None => format!("{verb} {mechanism}"),
        };
    }
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_initial_responses_are_redacted() {
        assert_eq!(
            redact_command(b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            "AUTH PLAIN <redacted>"
        );
        assert_eq!(redact_command(b"auth login"), "auth login");
        assert_eq!(redact_command(b"MAIL FROM:<a@b>"), "MAIL FROM:<a@b>");
    }
}
