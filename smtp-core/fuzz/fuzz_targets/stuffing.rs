//! Client-side stuffing and server-side un-stuffing must be inverse on every message and
//! every way of splitting it: this is the property that keeps a message from ending early
//! (or late) on its way through a relay.
//!
//! Layout of the input: bytes 0..3 seed the split points, the rest is the message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_core::BareLinePolicy;
use smtp_core::data::{DataReceiver, DotStuffer, stuff_message};

struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// The message as it must arrive, written independently of the engine: every CRLF, lone CR
/// and lone LF becomes CRLF, and a non-empty message gets a final line ending.
fn canonical(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 2);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' if message.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn chunks<'a>(bytes: &'a [u8], rng: &mut Rng, max: u32) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        // Empty chunks too: a driver may well call with nothing read.
        let len = (rng.below(max + 1) as usize).min(rest.len());
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [s0, s1, s2, message @ ..] = data else {
        return;
    };
    let mut rng = Rng(u32::from_le_bytes([*s0, *s1, *s2, 0x77]) | 1);
    let max = 1 + rng.below(32);
    let expected = canonical(message);

    let mut wire = Vec::new();
    let mut stuffer = DotStuffer::new();
    for chunk in chunks(message, &mut rng, max) {
        stuffer.stuff(chunk, &mut wire);
    }
    stuffer.finish(&mut wire);
    assert_eq!(
        wire,
        stuff_message(message),
        "chunked stuffing differs from whole-message stuffing"
    );

    let mut content = Vec::new();
    let mut receiver = DataReceiver::new(BareLinePolicy::Reject);
    let mut consumed = 0;
    for chunk in chunks(&wire, &mut rng, max) {
        assert!(
            !receiver.is_finished(),
            "finished {} bytes before the end",
            wire.len() - consumed
        );
        let progress = receiver.feed(chunk, &mut content);
        consumed += progress.consumed;
        assert_eq!(
            progress.finished,
            consumed == wire.len(),
            "finished at {consumed} of {}",
            wire.len()
        );
        assert_eq!(
            progress.consumed,
            chunk.len(),
            "stopped inside a chunk at {consumed} of {}",
            wire.len()
        );
    }
    assert!(receiver.is_finished(), "never finished");
    assert!(
        !receiver.saw_bare_line_ending(),
        "the stuffer let a bare line ending through"
    );
    assert_eq!(receiver.content_len(), content.len() as u64);
    assert!(
        content == expected,
        "content {content:?}\nexpected {expected:?}\nwire {wire:?}"
    );

    // BDAT mode: the same canonical content, with no stuffing and no terminator.
    let mut bdat = Vec::new();
    let mut canonicalizer = DotStuffer::canonicalize_only();
    for chunk in chunks(message, &mut rng, max) {
        canonicalizer.stuff(chunk, &mut bdat);
    }
    canonicalizer.finish(&mut bdat);
    assert!(
        bdat == expected,
        "canonicalised {bdat:?}\nexpected {expected:?}"
    );
});
