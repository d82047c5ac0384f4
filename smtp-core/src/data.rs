//! The DATA phase: dot-stuffing on the client side, end detection and
//! un-stuffing on the server side, both streaming and canonical.
//!
//! # Rules
//!
//! These rules are the SMTP-smuggling defence, so they are strict and exact.
//!
//! * **Line endings.** A CR immediately followed by LF is a *real* line
//!   ending. A CR not followed by LF, or an LF not preceded by CR, is a *bare*
//!   line ending. Every line ending written to an output is CRLF: a bare one is
//!   replaced by CRLF.
//! * **End of data.** DATA ends only at the byte sequence `CR LF . CR LF`, or
//!   at `. CR LF` as the very first bytes (the DATA command's own CRLF counts as
//!   the first CRLF). Both CRLFs must be real. Look-alikes built from bare line
//!   endings, such as `LF . LF`, `CR LF . LF`, `LF . CR LF` or `CR . CR`, are
//!   never an end, and everything after them is content. Equivalently, the end
//!   is the first occurrence of those exact bytes in the stream.
//! * **Un-stuffing.** A line that starts with `.` loses that first dot. A line
//!   starts at the start of the data and after *any* line ending, real or bare,
//!   so a look-alike such as `LF . LF` becomes an empty line: smuggled text
//!   stays visible as content, and a lone dot never reaches the output where a
//!   later hop could mistake it for an end.
//! * **Content.** The CRLF before the terminating dot ends the last content
//!   line, so it belongs to the content: `body CR LF . CR LF` yields
//!   `body CR LF`, and `. CR LF` alone yields nothing.
//!
//! Chunk boundaries may fall anywhere, including between CR and LF or after a
//! line-initial dot; both sides keep a few bits of state so that every way of
//! splitting the same bytes gives the same result.

use memchr::memchr2;

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const CRLF: &[u8] = b"\r\n";

/// What to do with a lone CR or LF inside message content.
///
/// Either way the data is read to its real end, so the connection stays in
/// step with the client; the policy only decides whether the message may be
/// accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BareLinePolicy {
    /// Replace each lone CR or LF by CRLF and accept the message.
    #[default]
    Normalize,
    /// Record that a lone CR or LF was seen (see
    /// [`DataReceiver::saw_bare_line_ending`]) so the server can refuse the
    /// whole message, typically with `550 5.5.2`.
    Reject,
}

/// Client side: canonicalises line endings to CRLF and dot-stuffs, streaming.
///
/// Feed the message in any number of [`stuff`](Self::stuff) calls, then call
/// [`finish`](Self::finish) once.
// The field meanings are chosen so that the derived `Default` is the
// dot-stuffing stuffer at the start of a line.
#[derive(Debug, Clone, Default)]
pub struct DotStuffer {
    /// False at the start of a line, where a dot must be doubled.
    mid_line: bool,
    /// The last input byte was a CR whose LF may still come in the next chunk.
    pending_cr: bool,
    /// BDAT mode: canonicalise, but neither stuff dots nor terminate.
    canonicalize_only: bool,
}

impl DotStuffer {
    /// A stuffer for DATA, at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stuffer that only canonicalises line endings (for BDAT, where no
    /// dot-stuffing happens).
    pub fn canonicalize_only() -> Self {
        Self {
            canonicalize_only: true,
            ..Self::default()
        }
    }

    /// Appends the canonical, stuffed form of `input` to `out`.
    pub fn stuff(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let len = input.len();
        let mut i = 0;
        if self.pending_cr {
            let Some(&first) = input.first() else { return };
            out.extend_from_slice(CRLF);
            self.pending_cr = false;
            self.mid_line = false;
            if first == LF {
                i = 1;
            }
        }
        // Bytes in `input[run..i]` are already known to be copied verbatim;
        // copying them in one go only when something must change keeps the
        // common all-CRLF case at memchr speed.
        let mut run = i;
        while i < len {
            if !self.mid_line {
                self.mid_line = true;
                if !self.canonicalize_only && input[i] == b'.' {
                    out.extend_from_slice(&input[run..i]);
                    out.push(b'.');
                    run = i;
                }
            }
            let Some(off) = memchr2(CR, LF, &input[i..]) else {
                i = len;
                break;
            };
            let p = i + off;
            if input[p] == CR {
                match input.get(p + 1) {
                    Some(&LF) => {
                        i = p + 2;
                    }
                    Some(_) => {
                        out.extend_from_slice(&input[run..p]);
                        out.extend_from_slice(CRLF);
                        i = p + 1;
                        run = i;
                    }
                    None => {
                        out.extend_from_slice(&input[run..p]);
                        self.pending_cr = true;
                        return;
                    }
                }
            } else {
                out.extend_from_slice(&input[run..p]);
                out.extend_from_slice(CRLF);
                i = p + 1;
                run = i;
            }
            self.mid_line = false;
        }
        out.extend_from_slice(&input[run..i]);
    }

    /// Ends the content: flushes a pending CR (as CRLF), adds CRLF if the
    /// content did not end with a line ending (and was non-empty), then for the
    /// dot-stuffing mode appends `.\r\n`. For
    /// [`canonicalize_only`](Self::canonicalize_only) appends nothing but the
    /// pending/missing line ending. Resets the stuffer for the next message.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr || self.mid_line {
            out.extend_from_slice(CRLF);
        }
        if !self.canonicalize_only {
            out.extend_from_slice(b".\r\n");
        }
        self.pending_cr = false;
        self.mid_line = false;
    }
}

/// Convenience: the whole message stuffed and terminated, ready to send after
/// the server's `354` reply.
pub fn stuff_message(message: &[u8]) -> Vec<u8> {
    // Stuffing adds a few bytes at most per line; a little headroom avoids a
    // reallocation for typical messages.
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut stuffer = DotStuffer::new();
    stuffer.stuff(message, &mut out);
    stuffer.finish(&mut out);
    out
}

/// The number of octets `message` takes on the wire once its line endings are
/// canonicalised (every lone CR or LF becomes CRLF, and a CRLF is added when
/// the message does not end with a line ending), which is what a client
/// declares with `SIZE=` (RFC 1870: CRLF pairs included, dot-stuffing and the
/// final dot not). It equals the length of what [`DotStuffer::canonicalize_only`]
/// produces for the message, counted without copying it.
///
/// ```
/// use smtp_core::data::wire_size;
/// assert_eq!(wire_size(b"a\r\nb\r\n"), 6);
/// assert_eq!(wire_size(b"a\nb\n"), 6);
/// assert_eq!(wire_size(b"a\rb"), 6);
/// assert_eq!(wire_size(b""), 0);
/// ```
pub fn wire_size(message: &[u8]) -> u64 {
    let mut size = message.len() as u64;
    let mut i = 0;
    while let Some(off) = memchr2(CR, LF, &message[i..]) {
        let p = i + off;
        if message[p] == CR && message.get(p + 1) == Some(&LF) {
            i = p + 2;
        } else {
            // A lone CR or LF goes out as two octets.
            size += 1;
            i = p + 1;
        }
    }
    // The last line gets its CRLF when it has none (a final lone CR was counted above).
    if message.last().is_some_and(|&b| b != CR && b != LF) {
        size += 2;
    }
    size
}

/// Server side for BDAT content: lone CRs and LFs become CRLF, streaming, and
/// the receiver remembers whether it saw any, so BDAT follows the same bare
/// line-ending policy as DATA (which [`DataReceiver`] applies). A CR at the end
/// of one chunk and an LF at the start of the next are a real CRLF.
///
/// Unlike [`DotStuffer::canonicalize_only`] it adds nothing at the end: the
/// content of a BDAT message is exactly what was sent, only canonical.
#[derive(Debug, Clone, Default)]
pub struct ChunkNormalizer {
    /// The last byte seen was a CR whose LF may come in the next chunk.
    pending_cr: bool,
    /// A lone CR or LF was seen (and replaced).
    saw_bare: bool,
}

impl ChunkNormalizer {
    /// A normaliser at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the canonical form of `input` to `out`. A CR at the end of
    /// `input` is held back until the next call (or [`finish`](Self::finish)).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        if self.pending_cr {
            let Some(&first) = input.first() else { return };
            out.extend_from_slice(CRLF);
            self.pending_cr = false;
            if first == LF {
                i = 1;
            } else {
                self.saw_bare = true;
            }
        }
        let mut run = i;
        while let Some(off) = memchr2(CR, LF, &input[i..]) {
            let p = i + off;
            if input[p] == CR {
                match input.get(p + 1) {
                    Some(&LF) => {
                        i = p + 2;
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        out.extend_from_slice(&input[run..p]);
                        self.pending_cr = true;
                        return;
                    }
                }
            }
            out.extend_from_slice(&input[run..p]);
            out.extend_from_slice(CRLF);
            self.saw_bare = true;
            i = p + 1;
            run = i;
        }
        out.extend_from_slice(&input[run..]);
    }

    /// Ends the content: a CR held back by the last [`feed`](Self::feed) was
    /// bare, and goes out as CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.extend_from_slice(CRLF);
            self.saw_bare = true;
        }
    }

    /// True when a CR is held back, waiting for the next chunk.
    pub fn has_pending_cr(&self) -> bool {
        self.pending_cr
    }

    /// True once a lone CR or LF was seen in this message.
    pub fn saw_bare_line_ending(&self) -> bool {
        self.saw_bare
    }

    /// Forgets everything, for a new message.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Where the receiver is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxState {
    /// Inside a line, after at least one byte of it.
    Mid,
    /// At the start of a line; `real` when the previous line ended with a real
    /// CRLF (or this is the start of the data), which is what lets a dot here
    /// begin the terminator.
    LineStart { real: bool },
    /// A CR was read; the next byte decides whether it was real or bare.
    Cr,
    /// A line-initial dot was read and dropped.
    Dot { real: bool },
    /// A line-initial dot and then a CR were read.
    DotCr { real: bool },
    /// The terminator has been read.
    Done,
}

/// Neighbouring-byte pairs [`first_bad_pair`] checks at once.
const PLAIN_BLOCK: usize = 256;
/// Pairs it checks at once while narrowing a bad block down.
const PLAIN_STEP: usize = 16;
/// A run of plain lines shorter than this is not followed by another attempt.
const PLAIN_WORTHWHILE: usize = 256;

/// How many bytes at the start of `input` are whole lines that are content exactly as
/// they stand: each ends with a real CRLF, none holds a bare CR or LF, and none starts
/// with a dot (`line_start`: `input` starts a line; otherwise it goes on with one begun
/// earlier, whose last byte was neither CR nor LF). After them the receiver is at the
/// start of a line that follows a real CRLF.
///
/// perf: the common content, plain lines, is checked a block of pairs at a time by a
/// loop the compiler vectorises, instead of line by line (a memchr call and a state
/// change per line, most of the server's cost for a message); [`DataReceiver::feed`]'s
/// state machine takes over where the lines stop being plain (a dot-started line, a bare
/// line ending, the terminator, a line not yet ended). The data module's tests check that
/// both ways read everything alike.
fn plain_run(input: &[u8], line_start: bool) -> usize {
    match input.first() {
        None | Some(&LF) => return 0,
        Some(&b'.') if line_start => return 0,
        Some(_) => {}
    }
    // Input that ends with the terminator is checked up to its dot (whose LF-dot pair
    // would stop the run a line early); the state machine reads the terminator.
    let lines = match input.strip_suffix(b".\r\n") {
        Some(lines) if lines.ends_with(b"\r\n") => lines,
        _ => input,
    };
    // The bytes up to the first bad pair are plain; the run ends with the last LF
    // among them.
    let limit = first_bad_pair(lines).unwrap_or(lines.len() - 1);
    memchr::memrchr(LF, &lines[..=limit]).map_or(0, |lf| lf + 1)
}

/// Where the first bad pair ([`is_bad_pair`]) of neighbours in `bytes` starts, if any:
/// found by blocks, narrowed down by steps, then pair by pair.
fn first_bad_pair(bytes: &[u8]) -> Option<usize> {
    let pairs = bytes.len().saturating_sub(1);
    let mut k = 0;
    for size in [PLAIN_BLOCK, PLAIN_STEP] {
        while k + size <= pairs && !has_bad_pair(&bytes[k..k + size + 1]) {
            k += size;
        }
    }
    (k..pairs).find(|&j| is_bad_pair(bytes[j], bytes[j + 1]))
}

/// Two neighbouring bytes that a plain line cannot hold: a CR without its LF, an LF
/// without its CR, or a line that starts with a dot.
#[inline]
fn is_bad_pair(a: u8, b: u8) -> bool {
    ((a == CR) != (b == LF)) | ((a == LF) & (b == b'.'))
}

/// True when some two neighbours in `bytes` are a bad pair ([`is_bad_pair`]).
#[inline]
fn has_bad_pair(bytes: &[u8]) -> bool {
    // Over every pair, without an early exit, so that it vectorises.
    let mut bad = 0u8;
    for (&a, &b) in bytes.iter().zip(&bytes[1..]) {
        bad |= u8::from(is_bad_pair(a, b));
    }
    bad != 0
}

/// Where [`DataReceiver`] writes the content it produces.
trait ContentSink {
    fn put(&mut self, bytes: &[u8]);
    fn len(&self) -> usize;
}

impl ContentSink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// Content nobody keeps: only counted ([`DataReceiver::skip`]).
struct Discard(usize);

impl ContentSink for Discard {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
    #[inline]
    fn len(&self) -> usize {
        self.0
    }
}

/// Server side: finds the end of DATA, un-stuffs and canonicalises, streaming.
///
/// Its state is a few bytes whatever the input, so it never buffers: all
/// content goes straight to the caller's `out` vector.
#[derive(Debug, Clone)]
pub struct DataReceiver {
    policy: BareLinePolicy,
    state: RxState,
    saw_bare: bool,
    content_len: u64,
}

/// What one call to [`DataReceiver::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataProgress {
    /// How many bytes of the input were used; when `finished`, the bytes after
    /// these follow the terminator and belong to the next command.
    pub consumed: usize,
    /// Whether the terminator has been read (in this call or an earlier one).
    pub finished: bool,
}

impl DataReceiver {
    /// A receiver at the start of a message's data, just after the server sent
    /// `354`.
    pub fn new(policy: BareLinePolicy) -> Self {
        Self {
            policy,
            state: RxState::LineStart { real: true },
            saw_bare: false,
            content_len: 0,
        }
    }

    /// Consumes bytes from `input`, appending un-stuffed canonical content to
    /// `out`, and stops right after the terminator (`consumed < input.len()`
    /// when more bytes follow it: those are the next commands, left to the
    /// caller).
    ///
    /// Once finished, further calls consume nothing and report `finished`
    /// until [`reset`](Self::reset). Under [`BareLinePolicy::Reject`] the
    /// content is still produced, normalised; only the flag differs.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        self.feed_to(input, out)
    }

    /// [`feed`](Self::feed) for a server that does not keep the content: the same end,
    /// the same checks and the same [`content_len`](Self::content_len), without copying
    /// the content anywhere.
    ///
    /// ```
    /// use smtp_core::data::{BareLinePolicy, DataReceiver};
    ///
    /// let mut receiver = DataReceiver::new(BareLinePolicy::Normalize);
    /// let progress = receiver.skip(b"..a\r\nb\nc\r\n.\r\nQUIT\r\n");
    /// assert!(progress.finished);
    /// assert_eq!(progress.consumed, 13);
    /// assert_eq!(receiver.content_len(), 10); // ".a\r\nb\r\nc\r\n"
    /// assert!(receiver.saw_bare_line_ending());
    /// ```
    pub fn skip(&mut self, input: &[u8]) -> DataProgress {
        self.feed_to(input, &mut Discard(0))
    }

    /// The receiver itself, writing its content to `out`.
    #[inline]
    fn feed_to<S: ContentSink>(&mut self, input: &[u8], out: &mut S) -> DataProgress {
        let start_len = out.len();
        let len = input.len();
        let mut state = self.state;
        let mut i = 0;
        // As in the stuffer, `input[run..i]` is verbatim content not yet
        // copied. Outside `Mid` and `LineStart` it is always empty.
        let mut run = 0;
        // perf: runs of whole plain lines go by in one pass (see `plain_run`), from
        // a line start after a real CRLF (below) or, at the start of the input, from
        // inside a line; they are content as they stand, copied with what follows.
        // `plain_end` is where the last run stopped (the line there is not plain), and
        // `last_run` how long it was: after short runs the lines are left to the state
        // machine, so that content with many non-plain lines is not checked twice.
        let mut plain_end = usize::MAX;
        let mut last_run = usize::MAX;
        if state == RxState::Mid {
            last_run = plain_run(input, false);
            if last_run > 0 {
                i = last_run;
                plain_end = i;
                state = RxState::LineStart { real: true };
            }
        }
        while i < len {
            match state {
                RxState::Mid => {
                    let Some(off) = memchr2(CR, LF, &input[i..]) else {
                        i = len;
                        break;
                    };
                    let p = i + off;
                    if input[p] == LF {
                        out.put(&input[run..p]);
                        out.put(CRLF);
                        self.saw_bare = true;
                        i = p + 1;
                        run = i;
                        state = RxState::LineStart { real: false };
                    } else {
                        match input.get(p + 1) {
                            Some(&LF) => {
                                i = p + 2;
                                state = RxState::LineStart { real: true };
                            }
                            Some(_) => {
                                out.put(&input[run..p]);
                                out.put(CRLF);
                                self.saw_bare = true;
                                i = p + 1;
                                run = i;
                                state = RxState::LineStart { real: false };
                            }
                            None => {
                                out.put(&input[run..p]);
                                i = p + 1;
                                run = i;
                                state = RxState::Cr;
                            }
                        }
                    }
                }
                RxState::LineStart { real } => {
                    if input[i] == b'.' {
                        out.put(&input[run..i]);
                        i += 1;
                        run = i;
                        state = RxState::Dot { real };
                    } else if real && i != plain_end && last_run >= PLAIN_WORTHWHILE && {
                        last_run = plain_run(&input[i..], true);
                        last_run > 0
                    } {
                        i += last_run;
                        plain_end = i;
                    } else {
                        // A CR or LF here is an empty line, which `Mid`
                        // already handles correctly.
                        state = RxState::Mid;
                    }
                }
                RxState::Cr => {
                    out.put(CRLF);
                    if input[i] == LF {
                        i += 1;
                        run = i;
                        state = RxState::LineStart { real: true };
                    } else {
                        self.saw_bare = true;
                        state = RxState::LineStart { real: false };
                    }
                }
                RxState::Dot { real } => match input[i] {
                    CR => {
                        i += 1;
                        run = i;
                        state = RxState::DotCr { real };
                    }
                    LF => {
                        out.put(CRLF);
                        self.saw_bare = true;
                        i += 1;
                        run = i;
                        state = RxState::LineStart { real: false };
                    }
                    _ => state = RxState::Mid,
                },
                RxState::DotCr { real } => {
                    if input[i] == LF {
                        i += 1;
                        run = i;
                        if real {
                            state = RxState::Done;
                            break;
                        }
                        out.put(CRLF);
                        state = RxState::LineStart { real: true };
                    } else {
                        out.put(CRLF);
                        self.saw_bare = true;
                        state = RxState::LineStart { real: false };
                    }
                }
                RxState::Done => break,
            }
        }
        out.put(&input[run..i]);
        self.state = state;
        let produced = out.len() - start_len;
        self.content_len = self.content_len.saturating_add(produced as u64);
        DataProgress {
            consumed: i,
            finished: state == RxState::Done,
        }
    }

    /// True once a lone CR or LF has been seen in this message.
    ///
    /// Under [`BareLinePolicy::Reject`] a server refuses the message when this
    /// is true after the data finished; under
    /// [`BareLinePolicy::Normalize`] it is informational.
    pub fn saw_bare_line_ending(&self) -> bool {
        self.saw_bare
    }

    /// Whether the message must be refused: the policy is
    /// [`BareLinePolicy::Reject`] and a lone CR or LF was seen.
    pub fn should_reject(&self) -> bool {
        self.policy == BareLinePolicy::Reject && self.saw_bare
    }

    /// The policy this receiver was made with.
    pub fn policy(&self) -> BareLinePolicy {
        self.policy
    }

    /// Whether the terminator has been read.
    pub fn is_finished(&self) -> bool {
        self.state == RxState::Done
    }

    /// Content bytes produced so far (after un-stuffing and canonicalisation).
    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    /// Resets for a new message with the same policy.
    pub fn reset(&mut self) {
        *self = Self::new(self.policy);
    }
}

/// Convenience for tests and simple callers: the content of a complete DATA
/// stream (terminator included) and whether it finished, plus how many bytes
/// were consumed.
///
/// When the stream has no terminator, `finished` is false and the content is
/// what could be decided so far (a trailing CR or line-initial dot is held
/// back, as [`DataReceiver::feed`] would).
pub fn unstuff_message(data: &[u8], policy: BareLinePolicy) -> (Vec<u8>, DataProgress) {
    let mut out = Vec::with_capacity(data.len());
    let mut receiver = DataReceiver::new(policy);
    let progress = receiver.feed(data, &mut out);
    (out, progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn normalize_chunks(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut n = ChunkNormalizer::new();
        let mut out = Vec::new();
        for c in chunks {
            n.feed(c, &mut out);
        }
        n.finish(&mut out);
        (out, n.saw_bare_line_ending())
    }

    #[test]
    fn chunk_normalizer_makes_lone_cr_and_lf_crlf() {
        assert_eq!(
            normalize_chunks(&[b"a\r\nb\r\n"]),
            (b"a\r\nb\r\n".to_vec(), false)
        );
        assert_eq!(normalize_chunks(&[b"a\nb"]), (b"a\r\nb".to_vec(), true));
        assert_eq!(
            normalize_chunks(&[b"a\rb\r"]),
            (b"a\r\nb\r\n".to_vec(), true)
        );
        // A CRLF split between chunks is real, not bare.
        assert_eq!(
            normalize_chunks(&[b"a\r", b"\nb"]),
            (b"a\r\nb".to_vec(), false)
        );
        assert_eq!(
            normalize_chunks(&[b"a\r", b"", b"\nb"]),
            (b"a\r\nb".to_vec(), false)
        );
        assert_eq!(
            normalize_chunks(&[b"a\r", b"b"]),
            (b"a\r\nb".to_vec(), true)
        );
        // No line ending is added at the end.
        assert_eq!(normalize_chunks(&[b"abc"]), (b"abc".to_vec(), false));
    }

    #[test]
    fn wire_size_counts_canonical_octets() {
        for message in [
            &b""[..],
            b"x",
            b"a\r\n",
            b"a\n",
            b"a\r",
            b"a\nb\rc\r\nd",
            b"\n\n\r\r",
            b".dot\n",
        ] {
            let mut out = Vec::new();
            let mut stuffer = DotStuffer::canonicalize_only();
            stuffer.stuff(message, &mut out);
            stuffer.finish(&mut out);
            assert_eq!(wire_size(message), out.len() as u64, "{message:?}");
        }
    }

    proptest! {
        #[test]
        fn wire_size_is_the_canonical_length(message in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..64)) {
            let mut out = Vec::new();
            let mut stuffer = DotStuffer::canonicalize_only();
            stuffer.stuff(&message, &mut out);
            stuffer.finish(&mut out);
            prop_assert_eq!(wire_size(&message), out.len() as u64);
        }

        #[test]
        fn chunk_normalizer_is_split_independent(
            message in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..64),
            split in 0usize..64,
        ) {
            let split = split.min(message.len());
            let whole = normalize_chunks(&[&message]);
            let parts = normalize_chunks(&[&message[..split], &message[split..]]);
            prop_assert_eq!(whole, parts);
        }
    }

    fn dp(consumed: usize, finished: bool) -> DataProgress {
        DataProgress { consumed, finished }
    }

    fn feed_chunks(policy: BareLinePolicy, chunks: &[&[u8]]) -> (Vec<u8>, usize, bool, bool) {
        let mut rx = DataReceiver::new(policy);
        let mut out = Vec::new();
        let mut consumed = 0;
        for chunk in chunks {
            let p = rx.feed(chunk, &mut out);
            consumed += p.consumed;
            if p.finished {
                break;
            }
        }
        assert_eq!(rx.content_len(), out.len() as u64);
        (out, consumed, rx.is_finished(), rx.saw_bare_line_ending())
    }

    fn feed_split(
        policy: BareLinePolicy,
        data: &[u8],
        cuts: &[usize],
    ) -> (Vec<u8>, usize, bool, bool) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts {
            chunks.push(&data[prev..c]);
            prev = c;
        }
        chunks.push(&data[prev..]);
        feed_chunks(policy, &chunks)
    }

    fn feed_bytewise(policy: BareLinePolicy, data: &[u8]) -> (Vec<u8>, usize, bool, bool) {
        let chunks: Vec<&[u8]> = data.chunks(1).collect();
        feed_chunks(policy, &chunks)
    }

    fn canonicalise(m: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < m.len() {
            match m[i] {
                CR => {
                    out.extend_from_slice(CRLF);
                    if m.get(i + 1) == Some(&LF) {
                        i += 1;
                    }
                }
                LF => out.extend_from_slice(CRLF),
                b => out.push(b),
            }
            i += 1;
        }
        if !out.is_empty() && !out.ends_with(CRLF) {
            out.extend_from_slice(CRLF);
        }
        out
    }

    /// The end position by the byte-pattern definition alone.
    fn oracle_end(data: &[u8]) -> Option<usize> {
        if data.starts_with(b".\r\n") {
            return Some(3);
        }
        data.windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .map(|p| p + 5)
    }

    const LOOKALIKES: &[&[u8]] = &[
        b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\n", b"\r\n.\r", b"\n.\r",
    ];

    #[test]
    fn lookalike_terminators_are_content() {
        for look in LOOKALIKES {
            let mut data = b"a".to_vec();
            data.extend_from_slice(look);
            data.extend_from_slice(b"X\r\n.\r\nQUIT\r\n");
            for policy in [BareLinePolicy::Normalize, BareLinePolicy::Reject] {
                let (out, p) = unstuff_message(&data, policy);
                assert!(p.finished, "{look:?}");
                assert_eq!(p.consumed, data.len() - 6, "{look:?}");
                assert_eq!(out, b"a\r\n\r\nX\r\n", "{look:?}");
                assert_eq!(
                    feed_bytewise(policy, &data),
                    (out, data.len() - 6, true, true),
                    "{look:?}"
                );
            }
            let mut rx = DataReceiver::new(BareLinePolicy::Reject);
            rx.feed(&data, &mut Vec::new());
            assert!(rx.should_reject(), "{look:?}");
        }
    }

    #[test]
    fn lookalike_at_end_of_stream_is_not_an_end() {
        for look in LOOKALIKES {
            let mut data = b"a".to_vec();
            data.extend_from_slice(look);
            data.extend_from_slice(b"MAIL FROM:<x@y>\r\n");
            let (_, p) = unstuff_message(&data, BareLinePolicy::Normalize);
            assert_eq!(p, dp(data.len(), false), "{look:?}");
        }
    }

    #[test]
    fn cr_dot_cr_lf_after_bare_line_is_content() {
        // The dot line ends with a real CRLF but did not start after one.
        let (out, p) = unstuff_message(b"a\n.\r\nb\r\n.\r\n", BareLinePolicy::Normalize);
        assert_eq!(out, b"a\r\n\r\nb\r\n");
        assert_eq!(p.consumed, 11);
        assert!(p.finished);
    }

    #[test]
    fn documented_example() {
        let (out, p) = unstuff_message(b"a\n.\nb\r\n.\r\n", BareLinePolicy::Normalize);
        assert_eq!(out, b"a\r\n\r\nb\r\n");
        assert!(p.finished);
    }

    #[test]
    fn first_line_dot_ends_immediately() {
        let data = b".\r\nMAIL FROM:<a@b>\r\n";
        let (out, p) = unstuff_message(data, BareLinePolicy::Normalize);
        assert_eq!(out, b"");
        assert_eq!(p, dp(3, true));
        assert_eq!(
            feed_bytewise(BareLinePolicy::Normalize, data),
            (Vec::new(), 3, true, false)
        );
    }

    #[test]
    fn first_line_dot_lookalikes_do_not_end() {
        for data in [&b".\nX\r\n.\r\n"[..], b".\rX\r\n.\r\n"] {
            let (out, p) = unstuff_message(data, BareLinePolicy::Normalize);
            assert_eq!(out, b"\r\nX\r\n");
            assert_eq!(p, dp(data.len(), true));
        }
    }

    #[test]
    fn simple_message() {
        let (out, p) = unstuff_message(
            b"Subject: x\r\n\r\nbody\r\n.\r\n",
            BareLinePolicy::Normalize,
        );
        assert_eq!(out, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(p, dp(23, true));
    }

    #[test]
    fn unstuffs_leading_dots() {
        let data = b"..\r\n..x\r\n...\r\na.b\r\n .\r\n.y\r\n.\r\n";
        let (out, p) = unstuff_message(data, BareLinePolicy::Normalize);
        assert_eq!(out, b".\r\n.x\r\n..\r\na.b\r\n .\r\ny\r\n");
        assert!(p.finished);
        assert_eq!(feed_bytewise(BareLinePolicy::Normalize, data).0, out);
    }

    #[test]
    fn stuffs_leading_dots() {
        assert_eq!(stuff_message(b"."), b"..\r\n.\r\n");
        assert_eq!(
            stuff_message(b".\r\n..x\r\na.b\r\n"),
            b"..\r\n...x\r\na.b\r\n.\r\n"
        );
        assert_eq!(stuff_message(b"a\n.b\r.c"), b"a\r\n..b\r\n..c\r\n.\r\n");
        assert_eq!(stuff_message(b""), b".\r\n");
        assert_eq!(stuff_message(b"x"), b"x\r\n.\r\n");
    }

    #[test]
    fn stuffer_normalises_bare_endings() {
        assert_eq!(
            stuff_message(b"a\nb\rc\r\n\r\rd\n\r"),
            b"a\r\nb\r\nc\r\n\r\n\r\nd\r\n\r\n.\r\n"
        );
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.stuff(b"a\r", &mut out);
        assert_eq!(out, b"a");
        s.stuff(b"\n.", &mut out);
        s.stuff(b"b\r", &mut out);
        s.stuff(b"", &mut out);
        s.stuff(b"c", &mut out);
        s.stuff(b"\r", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"a\r\n..b\r\nc\r\n.\r\n");
        // finish resets: the next message starts at a line start.
        out.clear();
        s.stuff(b".z", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"..z\r\n.\r\n");
    }

    #[test]
    fn canonicalize_only_does_not_stuff() {
        let mut s = DotStuffer::canonicalize_only();
        let mut out = Vec::new();
        s.stuff(b".a\n.\r", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b".a\r\n.\r\n");
        out.clear();
        s.stuff(b"", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"");
        s.stuff(b"x\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"x\r\n");
    }

    #[test]
    fn receiver_normalises_bare_endings() {
        let data = b"a\nb\rc\r\n\r\rd\n\r.\r\n";
        let (out, p) = unstuff_message(data, BareLinePolicy::Normalize);
        // The final ".\r\n" follows a bare CR, so it is not an end but an
        // un-stuffed empty line.
        assert_eq!(out, b"a\r\nb\r\nc\r\n\r\n\r\nd\r\n\r\n\r\n");
        assert_eq!(p, dp(data.len(), false));
        let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
        rx.feed(data, &mut Vec::new());
        assert!(rx.saw_bare_line_ending());
        assert!(!rx.should_reject());
    }

    #[test]
    fn reject_reads_to_real_end_and_flags() {
        let data = b"a\nb\r\n.\nc\r\n.\r\nRSET\r\n";
        let mut rx = DataReceiver::new(BareLinePolicy::Reject);
        let mut out = Vec::new();
        let p = rx.feed(data, &mut out);
        assert_eq!(p, dp(data.len() - 6, true));
        assert_eq!(out, b"a\r\nb\r\n\r\nc\r\n");
        assert!(rx.saw_bare_line_ending());
        assert!(rx.should_reject());
        rx.reset();
        assert!(!rx.saw_bare_line_ending());
        assert_eq!(rx.policy(), BareLinePolicy::Reject);
        let p = rx.feed(b"clean\r\n.\r\n", &mut Vec::new());
        assert!(p.finished);
        assert!(!rx.should_reject());
    }

    #[test]
    fn cr_at_chunk_end_is_held() {
        let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
        let mut out = Vec::new();
        assert_eq!(rx.feed(b"abc\r", &mut out), dp(4, false));
        assert_eq!(out, b"abc");
        assert_eq!(rx.feed(b"\n.", &mut out), dp(2, false));
        assert_eq!(rx.feed(b"\r", &mut out), dp(1, false));
        assert_eq!(out, b"abc\r\n");
        assert_eq!(rx.feed(b"\nNEXT", &mut out), dp(1, true));
        assert_eq!(out, b"abc\r\n");
        assert!(!rx.saw_bare_line_ending());

        let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
        let mut out = Vec::new();
        rx.feed(b"abc\r", &mut out);
        rx.feed(b"x\r\n.\r\n", &mut out);
        assert_eq!(out, b"abc\r\nx\r\n");
        assert!(rx.saw_bare_line_ending());
        assert!(rx.is_finished());
    }

    #[test]
    fn bytes_after_terminator_are_left() {
        let data = b"hi\r\n.\r\nMAIL FROM:<a@b>\r\n";
        let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
        let mut out = Vec::new();
        let p = rx.feed(data, &mut out);
        assert_eq!(p, dp(7, true));
        assert_eq!(&data[p.consumed..], b"MAIL FROM:<a@b>\r\n");
        // Finished receivers take nothing more until reset.
        assert_eq!(rx.feed(b"more", &mut out), dp(0, true));
        assert_eq!(out, b"hi\r\n");
        rx.reset();
        assert!(!rx.is_finished());
        assert_eq!(rx.content_len(), 0);
    }

    #[test]
    fn content_len_counts_output() {
        let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
        let mut out = b"prefix".to_vec();
        rx.feed(b"..a\nb", &mut out);
        assert_eq!(rx.content_len(), 5);
        rx.feed(b"\r\n.\r\n", &mut out);
        assert_eq!(rx.content_len(), 7);
        assert_eq!(out, b"prefix.a\r\nb\r\n");
    }

    #[test]
    fn empty_feeds_change_nothing() {
        let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
        let mut out = Vec::new();
        for chunk in [&b""[..], b".", b"", b"\r", b"", b"\n"] {
            rx.feed(chunk, &mut out);
        }
        assert!(rx.is_finished());
        assert!(out.is_empty());
    }

    fn smtp_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => Just(CR),
            4 => Just(LF),
            4 => Just(b'.'),
            2 => Just(b'a'),
            1 => any::<u8>(),
        ];
        prop_oneof![
            proptest::collection::vec(byte, 0..64),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    fn cuts() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(any::<usize>(), 0..8)
    }

    proptest! {
        #[test]
        fn stuff_then_unstuff_round_trips(msg in smtp_bytes(), cuts in cuts()) {
            let wire = stuff_message(&msg);
            let (out, consumed, finished, bare) = feed_split(BareLinePolicy::Reject, &wire, &cuts);
            prop_assert_eq!(out, canonicalise(&msg));
            prop_assert_eq!(consumed, wire.len());
            prop_assert!(finished);
            prop_assert!(!bare);
        }

        #[test]
        fn receiver_is_split_invariant(data in smtp_bytes(), cuts in cuts()) {
            let (whole, p) = unstuff_message(&data, BareLinePolicy::Normalize);
            let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
            rx.feed(&data, &mut Vec::new());
            let expected = (whole, p.consumed, p.finished, rx.saw_bare_line_ending());
            prop_assert_eq!(&feed_split(BareLinePolicy::Normalize, &data, &cuts), &expected);
            prop_assert_eq!(&feed_bytewise(BareLinePolicy::Normalize, &data), &expected);
            prop_assert_eq!(&feed_split(BareLinePolicy::Reject, &data, &cuts), &expected);
            // The end is exactly the first real CRLF.CRLF, nothing else.
            prop_assert_eq!(oracle_end(&data), p.finished.then_some(p.consumed));
            if !p.finished {
                prop_assert_eq!(p.consumed, data.len());
            }
            // Content is canonical: never a bare CR or LF.
            prop_assert!(!has_bare(&expected.0));
        }

        /// Skipping reads as feeding does, chunk by chunk: the same progress, the same
        /// count of content and the same bare line endings, only nothing copied.
        #[test]
        fn skip_reads_as_feed_does(data in smtp_bytes(), cuts in cuts()) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(data.len());
            let (mut fed, mut skipped) = (
                DataReceiver::new(BareLinePolicy::Reject),
                DataReceiver::new(BareLinePolicy::Reject),
            );
            let mut out = Vec::new();
            let mut prev = 0;
            for c in cuts {
                let chunk = &data[prev..c];
                prev = c;
                let before = out.len();
                prop_assert_eq!(fed.feed(chunk, &mut out), skipped.skip(chunk));
                prop_assert_eq!(fed.content_len(), skipped.content_len());
                prop_assert_eq!(skipped.content_len() - before as u64, (out.len() - before) as u64);
                prop_assert_eq!(fed.should_reject(), skipped.should_reject());
                prop_assert_eq!(fed.is_finished(), skipped.is_finished());
            }
        }

        #[test]
        fn stuffer_output_is_safe(msg in smtp_bytes(), cuts in cuts()) {
            let whole = stuff_message(&msg);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (msg.len() + 1)).collect();
            cuts.sort_unstable();
            let mut s = DotStuffer::new();
            let mut out = Vec::new();
            let mut prev = 0;
            for c in cuts {
                s.stuff(&msg[prev..c], &mut out);
                prev = c;
            }
            s.stuff(&msg[prev..], &mut out);
            s.finish(&mut out);
            prop_assert_eq!(&out, &whole);
            prop_assert!(!has_bare(&whole));
            prop_assert!(whole.ends_with(b".\r\n"));
            prop_assert_eq!(oracle_end(&whole), Some(whole.len()));

            let mut c = DotStuffer::canonicalize_only();
            let mut bdat = Vec::new();
            c.stuff(&msg, &mut bdat);
            c.finish(&mut bdat);
            prop_assert_eq!(bdat, canonicalise(&msg));
        }
    }

    /// Messages made of whole lines, mostly plain, so that the receiver's one-pass check
    /// of plain lines (see `plain_run`) is taken, and refused at a line-initial dot,
    /// a bare line ending or an early terminator placed anywhere.
    fn line_messages() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            8 => Just(&b"Subject: a plain line\r\n"[..]),
            4 => Just(&b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n"[..]),
            2 => Just(&b"\r\n"[..]),
            1 => Just(&b"..stuffed\r\n"[..]),
            1 => Just(&b".\r\n"[..]),
            1 => Just(&b"bare\nlf\r\n"[..]),
            1 => Just(&b"bare\rcr\r\n"[..]),
            1 => Just(&b"no end"[..]),
            1 => Just(&b"\n"[..]),
            1 => Just(&b"\r"[..]),
            1 => Just(&b"."[..]),
        ];
        proptest::collection::vec(line, 0..24).prop_map(|lines| lines.concat())
    }

    proptest! {
        #[test]
        fn plain_lines_agree_with_the_byte_by_byte_reading(
            data in line_messages(),
            cuts in cuts(),
        ) {
            // Byte by byte, no chunk is whole lines: the state machine alone decides.
            let expected = feed_bytewise(BareLinePolicy::Reject, &data);
            prop_assert_eq!(&feed_split(BareLinePolicy::Reject, &data, &cuts), &expected);
            prop_assert_eq!(&feed_chunks(BareLinePolicy::Reject, &[&data]), &expected);
            prop_assert_eq!(oracle_end(&data), expected.2.then_some(expected.1));
            // A message written by the stuffer is read back whole, however it is cut.
            let wire = stuff_message(&data);
            let (out, consumed, finished, bare) = feed_split(BareLinePolicy::Reject, &wire, &cuts);
            prop_assert_eq!(out, canonicalise(&data));
            prop_assert_eq!(consumed, wire.len());
            prop_assert!(finished);
            prop_assert!(!bare);
        }
    }

    #[test]
    fn plain_lines_read_alike_wherever_the_read_is_cut() {
        // The shapes the server meets most: a message cut mid-line, then its rest with
        // the terminator; and a message whose first read ends at a line's end.
        let wire: &[u8] = b"From: <a@x.test>\r\nSubject: s\r\n\r\nbody line\r\nlast\r\n.\r\nQUIT";
        let end = wire.len() - 4;
        for cut in 0..=end {
            let (out, consumed, finished, bare) =
                feed_chunks(BareLinePolicy::Reject, &[&wire[..cut], &wire[cut..end]]);
            assert_eq!(out, &wire[..end - 3], "cut at {cut}");
            assert_eq!(
                (consumed, finished, bare),
                (end, true, false),
                "cut at {cut}"
            );
        }
        // The terminator's first CRLF may come as the very start of a read.
        let (out, consumed, finished, _) =
            feed_chunks(BareLinePolicy::Reject, &[b"abc", b"\r\n.\r\n"]);
        assert_eq!((out, consumed, finished), (b"abc\r\n".to_vec(), 8, true));
        // A dot-started line in the last read is un-stuffed, not passed as it stands.
        let (out, _, finished, _) =
            feed_chunks(BareLinePolicy::Reject, &[b"a\r\n", b"..b\r\n.\r\n"]);
        assert_eq!((out, finished), (b"a\r\n.b\r\n".to_vec(), true));
    }

    fn has_bare(b: &[u8]) -> bool {
        b.iter().enumerate().any(|(i, &c)| {
            (c == CR && b.get(i + 1) != Some(&LF)) || (c == LF && (i == 0 || b[i - 1] != CR))
        })
    }
}
