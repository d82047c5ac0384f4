//! Throughput of the engine's hot paths, with smtp-proto (the parser behind Stalwart) on the
//! same inputs where it has an equivalent, so a number can be read as "fast" or "slow" rather
//! than just as a number.
//!
//! Run with `cargo bench -p smtp-core --bench engine`. Each comparison first checks that both
//! sides accept the input and agree on the result: a benchmark of a parser that fails early
//! would measure nothing.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use smtp_core::BareLinePolicy;
use smtp_core::command::Command;
use smtp_core::data::{DataReceiver, DotStuffer};
use smtp_core::handler::{SessionHandler, Transaction};
use smtp_core::reply::{ReplyLimits, ReplyParser};
use smtp_core::server::connection::{Action, Connection};
use smtp_core::server::hooks::{HookKind, HookSet};
use smtp_core::server::{Decision, ServerConfig, ServerEvent, ServerSession};

/// What a submission server sees most: one transaction's commands plus the usual extras.
const COMMAND_LINES: &[&str] = &[
    "EHLO client.example.com",
    "MAIL FROM:<sender@example.com> SIZE=1024",
    "RCPT TO:<rcpt@example.org>",
    "DATA",
    "RSET",
    "NOOP",
    "QUIT",
    "BDAT 1000 LAST",
    "AUTH PLAIN AHVzZXJAZXhhbXBsZS5jb20Ac2VjcmV0LXBhc3N3b3Jk",
    "STARTTLS",
];

/// The 10 MB benches are long per iteration; fewer samples keep the whole run to minutes.
fn configure_large(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
}

fn configure_small(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
}

fn parse_commands(c: &mut Criterion) {
    let lines: Vec<&[u8]> = COMMAND_LINES.iter().map(|l| l.as_bytes()).collect();
    // smtp-proto reads up to and including the LF, so it gets the wire form.
    let wire: Vec<Vec<u8>> = COMMAND_LINES
        .iter()
        .map(|l| format!("{l}\r\n").into_bytes())
        .collect();

    for line in &lines {
        if let Err(e) = Command::parse(line) {
            panic!("smtp-core refuses {:?}: {e}", String::from_utf8_lossy(line));
        }
    }
    for line in &wire {
        if let Err(e) = smtp_proto::Request::parse(&mut line.iter()) {
            panic!(
                "smtp-proto refuses {:?}: {e:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    let mut group = c.benchmark_group("parse_commands");
    configure_small(&mut group);
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("smtp-core", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = black_box(Command::parse(black_box(line)));
            }
        })
    });
    group.bench_function("smtp-proto", |b| {
        b.iter(|| {
            for line in &wire {
                let _ = black_box(smtp_proto::Request::parse(
                    &mut black_box(line.as_slice()).iter(),
                ));
            }
        })
    });
    group.finish();
}

const MESSAGE_SIZE: usize = 10 * 1024 * 1024;
const LINE_LEN: usize = 78;
const CHUNK: usize = 64 * 1024;

/// A 10 MiB message of 78-byte CRLF lines, every 16th starting with a dot, and its wire form
/// (dot-stuffed, terminated), built independently of the stuffer under test.
fn message() -> (Vec<u8>, Vec<u8>) {
    let mut raw = Vec::with_capacity(MESSAGE_SIZE);
    let mut wire = Vec::with_capacity(MESSAGE_SIZE + MESSAGE_SIZE / 256 + 3);
    let mut n = 0usize;
    while raw.len() + LINE_LEN <= MESSAGE_SIZE {
        let mut line = Vec::with_capacity(LINE_LEN);
        // Never on the first line: smtp-proto only un-stuffs after a CRLF it has seen, as
        // the DATA command's own CRLF is not part of what it is given.
        if n % 16 == 5 {
            line.push(b'.');
        }
        while line.len() < LINE_LEN - 2 {
            line.push(
                b"abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    [(n + line.len()) % 63],
            );
        }
        line.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&line);
        if line[0] == b'.' {
            wire.push(b'.');
        }
        wire.extend_from_slice(&line);
        n += 1;
    }
    wire.extend_from_slice(b".\r\n");
    (raw, wire)
}

fn unstuff_ours(wire: &[u8], out: &mut Vec<u8>, keep: bool) -> u64 {
    let mut rx = DataReceiver::new(BareLinePolicy::Normalize);
    let mut produced = 0u64;
    let mut finished = false;
    for chunk in wire.chunks(CHUNK) {
        if !keep {
            out.clear();
        }
        let before = out.len();
        let progress = rx.feed(chunk, out);
        produced += (out.len() - before) as u64;
        finished = progress.finished;
    }
    assert!(finished);
    produced
}

fn unstuff_proto(wire: &[u8], out: &mut Vec<u8>, keep: bool) -> u64 {
    let mut rx = smtp_proto::request::receiver::DataReceiver::new();
    let mut produced = 0u64;
    let mut finished = false;
    for chunk in wire.chunks(CHUNK) {
        if !keep {
            out.clear();
        }
        let before = out.len();
        let mut bytes = chunk.iter();
        finished = rx.ingest(&mut bytes, out);
        // Its final pop of the terminator's CR can shrink the buffer.
        produced = (produced + out.len() as u64).saturating_sub(before as u64);
    }
    assert!(finished);
    produced
}

fn unstuff(c: &mut Criterion) {
    let (raw, wire) = message();

    let mut ours = Vec::new();
    unstuff_ours(&wire, &mut ours, true);
    let mut theirs = Vec::new();
    unstuff_proto(&wire, &mut theirs, true);
    assert_eq!(
        ours.len(),
        raw.len(),
        "smtp-core un-stuffed to the wrong length"
    );
    assert_eq!(
        theirs.len(),
        raw.len(),
        "smtp-proto un-stuffed to the wrong length"
    );
    assert!(
        ours == raw && theirs == raw,
        "un-stuffed content differs from the message"
    );

    let mut group = c.benchmark_group("unstuff_10mb");
    configure_large(&mut group);
    group.throughput(Throughput::Bytes(wire.len() as u64));
    let mut out = Vec::with_capacity(CHUNK + 16);
    group.bench_function("smtp-core", |b| {
        b.iter(|| black_box(unstuff_ours(black_box(&wire), &mut out, false)))
    });
    group.bench_function("smtp-proto", |b| {
        b.iter(|| black_box(unstuff_proto(black_box(&wire), &mut out, false)))
    });
    group.finish();
}

fn stuff(c: &mut Criterion) {
    let (raw, wire) = message();

    let mut check = Vec::new();
    let mut stuffer = DotStuffer::new();
    for chunk in raw.chunks(CHUNK) {
        stuffer.stuff(chunk, &mut check);
    }
    stuffer.finish(&mut check);
    assert!(
        check == wire,
        "DotStuffer output differs from the reference wire form"
    );

    let mut group = c.benchmark_group("stuff_10mb");
    configure_large(&mut group);
    group.throughput(Throughput::Bytes(raw.len() as u64));
    let mut out = Vec::with_capacity(2 * CHUNK);
    group.bench_function("smtp-core", |b| {
        b.iter(|| {
            let mut stuffer = DotStuffer::new();
            for chunk in black_box(&raw).chunks(CHUNK) {
                out.clear();
                stuffer.stuff(chunk, &mut out);
            }
            stuffer.finish(&mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

const REPLIES: &[&str] = &[
    "220 mx.example.com ESMTP ready\r\n",
    "250-mx.example.com Hello client.example.com\r\n\
     250-PIPELINING\r\n\
     250-SIZE 26214400\r\n\
     250-8BITMIME\r\n\
     250-SMTPUTF8\r\n\
     250-ENHANCEDSTATUSCODES\r\n\
     250-CHUNKING\r\n\
     250-BINARYMIME\r\n\
     250-DSN\r\n\
     250-STARTTLS\r\n\
     250 AUTH PLAIN LOGIN\r\n",
    "250 2.1.0 Ok\r\n",
    "250 2.1.5 Ok\r\n",
    "354 End data with <CR><LF>.<CR><LF>\r\n",
    "250 2.0.0 Ok: queued as 4XyZ12AbC\r\n",
    "550 5.1.1 <nobody@example.org>: Recipient address rejected\r\n",
    "221 2.0.0 Bye\r\n",
];

fn replies_ours(parser: &mut ReplyParser, mut input: &[u8]) -> usize {
    let mut n = 0;
    while !input.is_empty() {
        let (consumed, reply) = parser.feed(input).expect("valid replies");
        input = &input[consumed..];
        if let Some(reply) = reply {
            black_box(&reply);
            n += 1;
        }
    }
    n
}

fn replies_proto(
    receiver: &mut smtp_proto::response::parser::ResponseReceiver,
    input: &[u8],
) -> usize {
    let mut n = 0;
    let mut bytes = input.iter();
    while !bytes.as_slice().is_empty() {
        let response = receiver.parse(&mut bytes).expect("valid replies");
        black_box(&response);
        receiver.reset();
        n += 1;
    }
    n
}

fn parse_replies(c: &mut Criterion) {
    let input: Vec<u8> = REPLIES.concat().into_bytes();

    let mut parser = ReplyParser::new(ReplyLimits::default());
    let mut receiver = smtp_proto::response::parser::ResponseReceiver::default();
    assert_eq!(replies_ours(&mut parser, &input), REPLIES.len());
    assert_eq!(replies_proto(&mut receiver, &input), REPLIES.len());
    // Both must also agree on what was read, not only on how many.
    let mut ours = Vec::new();
    let mut rest = input.as_slice();
    while !rest.is_empty() {
        let (consumed, reply) = parser.feed(rest).unwrap();
        rest = &rest[consumed..];
        ours.extend(reply);
    }
    let mut bytes = input.iter();
    for reply in &ours {
        let theirs = receiver.parse(&mut bytes).unwrap();
        receiver.reset();
        assert_eq!(reply.code().get(), theirs.code);
        let esc = reply
            .enhanced()
            .map_or([0; 3], |e| [e.class, e.subject as u8, e.detail as u8]);
        assert_eq!(esc, theirs.esc);
        assert_eq!(reply.lines().join("\n"), theirs.message);
    }

    let mut group = c.benchmark_group("parse_replies");
    configure_small(&mut group);
    group.throughput(Throughput::Elements(REPLIES.len() as u64));
    group.bench_function("smtp-core", |b| {
        b.iter(|| replies_ours(&mut parser, black_box(&input)))
    });
    group.bench_function("smtp-proto", |b| {
        b.iter(|| replies_proto(&mut receiver, black_box(&input)))
    });
    group.finish();
}

/// Drives one connection through a whole transaction; returns the output and the content
/// length the embedder saw.
fn transaction(config: &ServerConfig, input: &[u8], output: &mut Vec<u8>) -> usize {
    let now = Duration::ZERO;
    let mut session = ServerSession::new(config.clone(), now);
    let mut content = 0;
    let mut offered = input;
    loop {
        let taken = session.receive(offered, now);
        offered = &offered[taken..];
        if offered.is_empty() {
            session.receive_eof();
        }
        while let Some(event) = session.poll_event() {
            if let ServerEvent::MessageData(data) = event {
                content += data.len();
            } else if event.needs_decision() {
                session
                    .decide(Decision::Accept)
                    .expect("a decision is pending");
            }
        }
        output.extend_from_slice(session.output());
        session.clear_output();
        if session.is_closed() {
            return content;
        }
    }
}

fn server_session(c: &mut Criterion) {
    let mut config = ServerConfig::new("mx.example.com");
    // The whole transaction is offered at once, the message right behind DATA, which the
    // synchronisation check (on by default) refuses as a client talking out of turn.
    config.pipelining_sync = false;
    let mut input = b"EHLO client.example.com\r\n\
        MAIL FROM:<sender@example.com> SIZE=1100\r\n\
        RCPT TO:<rcpt@example.org>\r\n\
        DATA\r\n"
        .to_vec();
    let mut body = Vec::new();
    while body.len() < 1024 {
        body.extend_from_slice(
            b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eius\r\n",
        );
    }
    body.truncate(1022);
    body.extend_from_slice(b"\r\n");
    input.extend_from_slice(&body);
    input.extend_from_slice(b".\r\nQUIT\r\n");

    let mut output = Vec::new();
    assert_eq!(transaction(&config, &input, &mut output), 1024);
    let text = String::from_utf8(output.clone()).unwrap();
    assert!(text.contains("\r\n250 2.0.0 Ok: queued\r\n"), "{text}");
    assert!(text.ends_with("221 2.0.0 Bye\r\n"), "{text}");

    let mut group = c.benchmark_group("server_session_transaction");
    configure_small(&mut group);
    group.throughput(Throughput::Elements(1));
    group.bench_function("smtp-core", |b| {
        b.iter(|| {
            output.clear();
            black_box(transaction(&config, black_box(&input), &mut output))
        })
    });
    group.finish();
}

/// A session handler that keeps only the end of each message, as the C server with a
/// trivial callback table does (bench/c_sink.c).
struct CountMessages(u64);

impl SessionHandler for CountMessages {
    fn data_end(&mut self, _: &Transaction) -> Decision {
        self.0 += 1;
        Decision::Accept
    }
}

/// S1's conversation (smtp-source's reads: HELO, then per message MAIL, RCPT, DATA, and
/// the 1 KiB message with its end in one read) through the connection layer, every hook
/// but `data_end` left to its default: the engine's share of the C server's cost per
/// message. Returns the messages accepted and the octets written.
fn connection(reads: &[Vec<u8>], defaults: HookSet) -> (u64, usize) {
    let now = Duration::from_secs(1);
    let mut conn = Connection::new(ServerConfig::new("bench.test"), now, false);
    let mut handler = CountMessages(0);
    let mut next = reads.iter();
    let mut written = 0;
    loop {
        match conn.next_action(now) {
            Action::Connect => {
                conn.connected(None);
                conn.answer_by_default(defaults);
            }
            Action::Hook(hook) => {
                let answer = hook.call(&mut handler);
                conn.answer(answer);
            }
            Action::Write(bytes) => {
                let n = bytes.len();
                written += n;
                conn.written(n);
            }
            Action::Read { .. } => match next.next() {
                Some(bytes) => conn.receive(bytes, now),
                None => conn.receive_eof(),
            },
            Action::StartTls { .. } => unreachable!("no STARTTLS offered"),
            Action::Close => return (handler.0, written),
        }
    }
}

fn server_connection(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let mut body = b"From: <a@x.test>\r\nTo: <b@x.test>\r\n\
        Date: Sun,  6 Dec 2026 13:28:55 +0000 (UTC)\r\n\
        Message-Id: <6289.0003.0001@vm>\r\n\r\n"
        .to_vec();
    for i in 0..13 {
        body.push(b'1' + i % 9);
        body.extend_from_slice(&[b'X'; 77]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    let mut reads = vec![b"HELO vm\r\n".to_vec()];
    for _ in 0..MESSAGES {
        reads.push(b"MAIL FROM:<a@x.test>\r\n".to_vec());
        reads.push(b"RCPT TO:<b@x.test>\r\n".to_vec());
        reads.push(b"DATA\r\n".to_vec());
        reads.push(body.clone());
    }
    reads.push(b"QUIT\r\n".to_vec());
    let defaults = [
        HookKind::Hello,
        HookKind::TlsStarted,
        HookKind::Mail,
        HookKind::Rcpt,
        HookKind::DataStart,
        HookKind::DataChunk,
        HookKind::DataAborted,
        HookKind::Reset,
        HookKind::Verify,
        HookKind::Expand,
        HookKind::Noop,
        HookKind::Rset,
        HookKind::Quit,
        HookKind::Close,
    ]
    .into_iter()
    .fold(HookSet::EMPTY, HookSet::with);
    let (accepted, _) = connection(&reads, defaults);
    assert_eq!(accepted, MESSAGES as u64);

    let mut group = c.benchmark_group("server_connection_s1");
    configure_small(&mut group);
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("smtp-core", |b| {
        b.iter(|| black_box(connection(black_box(&reads), defaults)))
    });
    group.finish();
}

criterion_group!(
    benches,
    parse_commands,
    unstuff,
    stuff,
    parse_replies,
    server_session,
    server_connection
);
criterion_main!(benches);
