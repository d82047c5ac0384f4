use super::parser::{enhanced_prefix, malformed};
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
            let enhanced =
                (with_enhanced && class != 3).then(|| EnhancedCode::new(class, subject, detail));
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

proptest! {
    /// `write_line` puts its pieces together in one buffer; it must say exactly what the
    /// formatting machinery says, for every code and enhanced code it can be given
    /// (enhanced-code numbers outside the RFC's range included: they are written too).
    #[test]
    fn write_line_matches_formatting(
        code in 200u16..600,
        enhanced in proptest::option::of((any::<u8>(), any::<u16>(), any::<u16>())),
        text in "[ -~]{0,40}",
        last in any::<bool>(),
    ) {
        let mut out = b"before".to_vec();
        let enhanced = enhanced.map(|(c, s, d)| EnhancedCode::new(c, s, d));
        write_line(&mut out, ReplyCode(code), enhanced, &text, last);
        let separator = if last { ' ' } else { '-' };
        let expected = match enhanced {
            Some(e) if text.is_empty() => {
                format!("{code}{separator}{}.{}.{}", e.class, e.subject, e.detail)
            }
            Some(e) => format!(
                "{code}{separator}{}.{}.{} {text}",
                e.class, e.subject, e.detail
            ),
            None if text.is_empty() && last => format!("{code}"),
            None => format!("{code}{separator}{text}"),
        };
        prop_assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("before{expected}\r\n")
        );
    }
}
