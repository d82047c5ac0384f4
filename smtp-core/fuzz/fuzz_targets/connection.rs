//! The server's connection layer (`Connection`) driven by a script read from the input:
//! what the client sends and in which chunks, end of input, time jumps and timeouts,
//! partial writes, the hooks' answers (accept, any reply, an answer of the wrong kind, a
//! failing `data_chunk`), TLS handshakes that succeed or fail, lost connections and server
//! shutdowns.
//!
//! Layout of the input: bytes 0..2 pick the configuration, then each action the connection
//! asks for reads what it needs from the rest (an operation byte, a length, the client's
//! bytes). Once the input is used up the driver behaves: it accepts, writes everything and
//! reports the end of the input, and the connection must then close.
//!
//! Invariants: no panic; every `Write` is non-empty; the bytes written are whole reply
//! lines (three digits, then space, hyphen or the end, then CRLF); nothing but hooks after
//! `lost()`, nothing after `Close`; a connection that was accepted runs its `close` hook
//! exactly once, a refused one runs no hook at all; no `Read` after the end of the input;
//! the content handed to `data_chunk` never exceeds the message size limit; a bounded
//! number of actions; bounded memory.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smtp_core::ehlo::AuthMechanism;
use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
use smtp_core::server::connection::{Action, Connection};
use smtp_core::server::hooks::{Answer, Hook};
use smtp_core::server::{Decision, ServerConfig};

/// Counts the bytes the Rust side holds, to bound what a connection keeps.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What a connection may hold beyond the input itself: the session's input buffer and
/// output high-water mark (64 KiB each) and the layer's spill, with room for `Vec` doubling.
const MEMORY_ALLOWANCE: usize = 1 << 20;
/// Actions allowed once the script is used up (the driver then only helps it finish).
const ACTIONS_AFTER_SCRIPT: usize = 200_000;

struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn config(a: u8, b: u8) -> ServerConfig {
    let mut c = ServerConfig::new("mx.example");
    c.pipelining_sync = a & 0x01 != 0;
    c.lmtp = a & 0x02 != 0;
    c.starttls = a & 0x04 != 0;
    if a & 0x10 != 0 {
        c.max_line_len = 80;
        c.max_message_size = 300;
        c.max_recipients = 2;
    }
    if a & 0x20 != 0 {
        c.auth_mechanisms = vec![AuthMechanism::Plain, AuthMechanism::Login];
        c.allow_insecure_auth = b & 0x40 != 0;
    }
    c.chunking = a & 0x40 == 0;
    if a & 0x80 != 0 {
        c.greeting_delay = Some(Duration::from_secs(1));
    }
    c.require_tls = b & 0x01 != 0;
    c.pipelining = b & 0x02 == 0;
    c.require_auth = b & 0x04 != 0;
    c.enhanced_status_codes = b & 0x08 == 0;
    if b & 0x10 != 0 {
        c.max_errors = 3;
        c.max_auth_failures = 1;
    }
    if b & 0x20 != 0 {
        c.command_timeout = Duration::from_secs(10);
        c.data_timeout = Duration::from_secs(5);
    }
    c
}

fn reply_from(s: &mut Script<'_>) -> Reply {
    const CODES: [u16; 16] = [
        250, 251, 252, 235, 354, 334, 220, 221, 421, 450, 451, 452, 535, 550, 552, 554,
    ];
    let b = s.byte().unwrap_or(0);
    let code = ReplyCode::new(CODES[usize::from(b & 0x0f)]).unwrap();
    let enhanced = match b >> 4 & 3 {
        0 => None,
        n => Some(EnhancedCode::new(
            (code.get() / 100) as u8,
            u16::from(n),
            u16::from(b >> 6),
        )),
    };
    let text = match b >> 6 {
        0 => "",
        1 => "no\r\n250 smuggled",
        _ => "by policy",
    };
    Reply::new(code, enhanced, text)
}

/// The answer to `hook`, chosen by the script (accept once it is used up).
fn answer_for(hook: &Hook<'_>, s: &mut Script<'_>) -> Answer {
    let op = s.byte().unwrap_or(0);
    if let Hook::DataChunk { .. } = hook {
        return match op % 8 {
            0 => Answer::Chunk(Err(reply_from(s))),
            1 => Answer::Done, // the wrong kind: must fail closed
            _ => Answer::Chunk(Ok(())),
        };
    }
    if !hook.needs_decision() {
        return match op % 8 {
            0 => Answer::Decision(Decision::Accept), // the wrong kind: ignored
            _ => Answer::Done,
        };
    }
    match op % 8 {
        0..=3 => Answer::Decision(Decision::Accept),
        4 | 5 => Answer::Decision(Decision::Reply(reply_from(s))),
        6 => match op >> 3 & 3 {
            0 => Answer::Done,
            1 => Answer::Chunk(Ok(())),
            _ => Answer::Chunk(Err(reply_from(s))),
        },
        _ => {
            let n = usize::from(op >> 3 & 3);
            Answer::Decision(Decision::PerRecipient(
                (0..n).map(|_| reply_from(s)).collect(),
            ))
        }
    }
}

/// Checks the written bytes, as they go out, for whole reply lines.
#[derive(Default)]
struct Wire {
    line: Vec<u8>,
    total: usize,
}

impl Wire {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        for &b in bytes {
            self.line.push(b);
            if b == b'\n' {
                let line = &self.line[..];
                let body = line
                    .strip_suffix(b"\r\n")
                    .unwrap_or_else(|| panic!("bare LF in output: {line:?}"));
                assert!(!body.contains(&b'\r'), "bare CR in output: {line:?}");
                assert!(
                    body.len() >= 3 && body[..3].iter().all(u8::is_ascii_digit),
                    "line without a code: {line:?}"
                );
                assert!(
                    body.len() == 3 || matches!(body[3], b' ' | b'-'),
                    "bad separator: {line:?}"
                );
                self.line.clear();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let implicit_tls = b & 0x80 != 0;
    let config = config(*a, *b);
    let max_message_size = config.max_message_size;
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let mut s = Script(rest);
    let mut now = Duration::ZERO;
    let mut conn = Connection::new(config, now, implicit_tls);
    let mut wire = Wire::default();
    let mut accepted = false;
    let mut refused = false;
    let mut lost = false;
    let mut eof = false;
    let mut close_hooks = 0;
    let mut message_bytes = 0u64;
    let mut after_script = 0;

    loop {
        if s.0.is_empty() {
            after_script += 1;
            assert!(
                after_script < ACTIONS_AFTER_SCRIPT,
                "no Close after the end of the input"
            );
        }
        let action = conn.next_action(now);
        if lost {
            assert!(
                matches!(action, Action::Hook(_) | Action::Close),
                "{action:?} after lost()"
            );
        }
        match action {
            Action::Connect => {
                assert!(!accepted && !refused, "Connect twice");
                let refusal = match s.byte().unwrap_or(0xff) % 16 {
                    0 => Some(Reply::new(ReplyCode::TRANSACTION_FAILED, None, "go away")),
                    1 => Some(Reply::new(ReplyCode::SERVICE_UNAVAILABLE, None, "busy")),
                    _ => None,
                };
                refused = refusal.is_some();
                accepted = !refused;
                conn.connected(refusal);
            }
            Action::Hook(hook) => {
                assert!(!refused, "hook on a refused connection: {hook:?}");
                assert!(accepted, "hook before Connect: {hook:?}");
                assert_eq!(close_hooks, 0, "hook after the close hook: {hook:?}");
                match &hook {
                    Hook::Close => close_hooks += 1,
                    Hook::DataStart { .. } => message_bytes = 0,
                    Hook::DataChunk { chunk } => {
                        assert!(!chunk.is_empty(), "empty data_chunk");
                        message_bytes += chunk.len() as u64;
                        assert!(
                            message_bytes <= max_message_size,
                            "{message_bytes} bytes of content delivered"
                        );
                    }
                    _ => {}
                }
                let answer = answer_for(&hook, &mut s);
                conn.answer(answer);
            }
            Action::Write(bytes) => {
                assert!(!bytes.is_empty(), "empty Write");
                let len = bytes.len();
                let op = s.byte();
                let n = match op {
                    None => len,
                    Some(op) if op < 0x80 => len,
                    Some(0x80) => {
                        conn.lost();
                        lost = true;
                        continue;
                    }
                    Some(0x81) => 0, // nothing went out this time
                    Some(0x82) => len,
                    Some(op) => 1 + usize::from(op & 0x7f) % len,
                };
                wire.push(&bytes[..n]);
                conn.written(n);
                if op == Some(0x82) {
                    conn.stop();
                }
            }
            Action::Read { deadline } => {
                assert!(!eof, "Read after the end of the input");
                let Some(op) = s.byte() else {
                    eof = true;
                    conn.receive_eof();
                    continue;
                };
                match op % 16 {
                    0..=8 => {
                        let n = 1 + usize::from(s.byte().unwrap_or(0));
                        let bytes = s.take(n);
                        if bytes.is_empty() {
                            eof = true;
                            conn.receive_eof();
                        } else {
                            conn.receive(bytes, now);
                        }
                    }
                    9 => {
                        // One big read: what the session has no room for is held.
                        let bytes = s.take(usize::MAX);
                        conn.receive(bytes, now);
                    }
                    10 => {
                        eof = true;
                        conn.receive_eof();
                    }
                    11 => {
                        now = now.max(deadline);
                        conn.timeout(now);
                    }
                    12 => now += Duration::from_secs(u64::from(op >> 4)),
                    13 => {
                        conn.lost();
                        lost = true;
                    }
                    14 => conn.stop(),
                    _ => conn.receive(b"", now),
                }
            }
            Action::StartTls { deadline } => {
                assert!(deadline >= now, "a handshake deadline in the past");
                match s.byte().unwrap_or(0xff) % 8 {
                    0 => {
                        conn.lost();
                        lost = true;
                    }
                    1 => {
                        now = deadline;
                        conn.tls_established(now);
                    }
                    _ => conn.tls_established(now),
                }
            }
            Action::Close => break,
        }
    }

    if accepted {
        assert_eq!(close_hooks, 1, "the close hook ran {close_hooks} times");
    }
    if !lost {
        assert!(
            wire.line.is_empty(),
            "closed in the middle of a line: {:?}",
            wire.line
        );
    }
    for _ in 0..3 {
        conn.receive(b"NOOP\r\n", now);
        conn.receive_eof();
        conn.timeout(now + Duration::from_secs(3600));
        assert!(
            matches!(conn.next_action(now), Action::Close),
            "an action after Close"
        );
    }
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        peak <= MEMORY_ALLOWANCE + 4 * data.len(),
        "held {peak} bytes for {} bytes of input",
        data.len()
    );
});
