//! Every command the client can write, the server must read back as the same command: a
//! mismatch means a message goes to the wrong place or is refused for no reason.
//!
//! The strategies build only valid values (RFC 5321 grammar and its 64/255/256 length
//! limits, RFC 1870/3461/4954/6152/6531 parameters), so any failure is the engine's.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use smtp_core::address::{Address, ForwardPath, ReversePath};
use smtp_core::command::{Body, Command, MailParameters, Notify, Parameter, RcptParameters, Ret};
use smtp_core::ehlo::AuthMechanism;

const ALNUM: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's',
    't', 'u', 'v', 'w', 'x', 'y', 'z', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L',
    'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', '0', '1', '2', '3', '4',
    '5', '6', '7', '8', '9',
];

/// atext (RFC 5322) plus UTF-8, which RFC 6531 allows in local parts.
fn atext() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => select(ALNUM),
        2 => select(&['!', '#', '$', '%', '&', '\'', '*', '+', '-', '/', '=', '?', '^', '_', '`', '{', '|', '}', '~'][..]),
        1 => select(&['é', 'ß', '用', 'ж'][..]),
    ]
}

fn printable_ascii() -> impl Strategy<Value = char> {
    (0x20u8..=0x7e).prop_map(char::from)
}

fn dot_string() -> impl Strategy<Value = String> {
    vec(vec(atext(), 1..12).prop_map(String::from_iter), 1..5).prop_map(|atoms| atoms.join("."))
}

/// A quoted local part: qtextSMTP (space included) or quoted pairs.
fn quoted_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => printable_ascii().prop_filter("qtext", |c| *c != '"' && *c != '\\').prop_map(String::from),
        1 => printable_ascii().prop_map(|c| format!("\\{c}")),
        1 => Just("ü".to_owned()),
    ];
    vec(piece, 0..20).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn local_part() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => dot_string(),
        2 => quoted_string(),
        1 => (1usize..=64).prop_map(|n| "l".repeat(n)),
    ]
    .prop_filter("at most 64 octets", |l| l.len() <= 64)
}

fn label() -> impl Strategy<Value = String> {
    let inner = prop_oneof![8 => select(ALNUM), 2 => Just('-'), 1 => Just('ü')];
    prop_oneof![
        4 => (select(ALNUM), vec(inner, 0..10), select(ALNUM))
            .prop_map(|(a, mid, z)| format!("{a}{}{z}", String::from_iter(mid))),
        2 => select(ALNUM).prop_map(String::from),
        1 => (1usize..=63).prop_map(|n| "d".repeat(n)),
    ]
}

/// A domain of exactly `len` octets made of maximal labels, to sit right on the limits.
fn domain_of_len(len: usize) -> String {
    let mut s = String::new();
    let mut letter = b'a';
    while s.len() < len {
        if !s.is_empty() {
            s.push('.');
            // A trailing dot (fully qualified name) is valid too.
            if s.len() == len {
                break;
            }
        }
        let n = (len - s.len()).min(63);
        s.extend(std::iter::repeat_n(char::from(letter), n));
        letter = if letter == b'z' { b'a' } else { letter + 1 };
    }
    s
}

fn domain_name() -> impl Strategy<Value = String> {
    (vec(label(), 1..5), any::<bool>())
        .prop_map(|(labels, fqdn)| labels.join(".") + if fqdn { "." } else { "" })
        .prop_filter("at most 255 octets", |d| d.len() <= 255)
}

fn address_literal() -> impl Strategy<Value = String> {
    // dcontent: printable ASCII but `[`, `]` and `\`.
    let dcontent = (33u8..=126)
        .prop_filter("dcontent", |b| !matches!(b, b'[' | b']' | b'\\'))
        .prop_map(char::from);
    let tag = (
        select(ALNUM),
        vec(prop_oneof![select(ALNUM), Just('-')], 0..8),
        select(ALNUM),
    )
        .prop_map(|(a, mid, z)| format!("{a}{}{z}", String::from_iter(mid)))
        .prop_filter("IPv6 is not a general tag", |t| {
            !t.eq_ignore_ascii_case("IPv6")
        });
    prop_oneof![
        any::<[u8; 4]>().prop_map(|ip| format!("[{}]", Ipv4Addr::from(ip))),
        any::<u128>().prop_map(|ip| format!("[IPv6:{}]", Ipv6Addr::from(ip))),
        (tag, vec(dcontent, 1..20)).prop_map(|(t, c)| format!("[{t}:{}]", String::from_iter(c))),
    ]
}

fn address() -> impl Strategy<Value = Address> {
    let regular = (
        local_part(),
        prop_oneof![3 => domain_name(), 1 => address_literal()],
    );
    // Right at the path limit: local part + "@" + domain + "<>" = 256 octets.
    let longest = (1usize..=64).prop_map(|l| ("x".repeat(l), domain_of_len(256 - 3 - l)));
    prop_oneof![6 => regular, 1 => longest]
        .prop_filter("the path fits in 256 octets", |(l, d)| {
            l.len() + 1 + d.len() + 2 <= 256
        })
        .prop_map(|(l, d)| {
            let text = format!("{l}@{d}");
            Address::parse(&text)
                .unwrap_or_else(|e| panic!("strategy made an invalid address {text:?}: {e}"))
        })
}

/// xtext (RFC 3461): printable ASCII but `+` and `=`, or `+XX`.
fn xtext(max_units: usize) -> impl Strategy<Value = String> {
    let unit = prop_oneof![
        4 => (33u8..=126).prop_filter("xchar", |b| *b != b'+' && *b != b'=').prop_map(|b| char::from(b).to_string()),
        1 => any::<u8>().prop_map(|b| format!("+{b:02X}")),
    ];
    vec(unit, 1..=max_units).prop_map(|u| u.concat())
}

/// A value that is not `=`, a space or a control character, ASCII or UTF-8.
fn esmtp_value() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        8 => (33u8..=126).prop_filter("no =", |b| *b != b'=').prop_map(char::from),
        1 => Just('é'),
    ];
    vec(c, 1..20).prop_map(String::from_iter)
}

fn other_parameters(reserved: &'static [&'static str]) -> impl Strategy<Value = Vec<Parameter>> {
    let keyword = (
        select(ALNUM),
        vec(prop_oneof![select(ALNUM), Just('-')], 0..12),
    )
        .prop_map(|(a, rest)| format!("{a}{}", String::from_iter(rest)).to_ascii_uppercase())
        .prop_filter("not a parameter with a field of its own", move |k| {
            !reserved.contains(&k.as_str())
        });
    vec((keyword, proptest::option::of(esmtp_value())), 0..4).prop_map(|params| {
        let mut out: Vec<Parameter> = Vec::new();
        for (keyword, value) in params {
            if !out.iter().any(|p| p.keyword == keyword) {
                out.push(Parameter { keyword, value });
            }
        }
        out
    })
}

// Any u64, 20-digit values included (RFC 1870 allows 20 digits).
const SIZE_LIMIT: u64 = u64::MAX;

fn mail_parameters() -> impl Strategy<Value = MailParameters> {
    let body = proptest::option::of(select(
        &[Body::SevenBit, Body::EightBitMime, Body::BinaryMime][..],
    ));
    let ret = proptest::option::of(select(&[Ret::Full, Ret::Headers][..]));
    let auth = proptest::option::of(prop_oneof![Just("<>".to_owned()), xtext(30)]);
    (
        proptest::option::of(prop_oneof![0..=SIZE_LIMIT, Just(SIZE_LIMIT), 0u64..100_000]),
        body,
        any::<bool>(),
        ret,
        proptest::option::of(xtext(33)).prop_filter("ENVID is at most 100 octets", |e| {
            e.as_ref().is_none_or(|e| e.len() <= 100)
        }),
        auth,
        other_parameters(&["SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH"]),
    )
        .prop_map(
            |(size, body, smtputf8, ret, envid, auth, other)| MailParameters {
                size,
                body,
                smtputf8,
                ret,
                envid,
                auth,
                other,
            },
        )
}

fn rcpt_parameters() -> impl Strategy<Value = RcptParameters> {
    let notify =
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(success, failure, delay)| {
            Notify {
                success,
                failure,
                delay,
            }
        });
    let kind = prop_oneof![
        Just("rfc822".to_owned()),
        vec(select(ALNUM), 1..10).prop_map(String::from_iter)
    ];
    let orcpt = (kind, xtext(40)).prop_map(|(k, a)| format!("{k};{a}"));
    (
        proptest::option::of(notify),
        proptest::option::of(orcpt),
        other_parameters(&["NOTIFY", "ORCPT"]),
    )
        .prop_map(|(notify, orcpt, other)| RcptParameters {
            notify,
            orcpt,
            other,
        })
}

/// A HELO/EHLO/LHLO argument: any single printable token, as real clients send.
fn hello_name() -> impl Strategy<Value = String> {
    prop_oneof![
        domain_name(),
        address_literal(),
        vec((33u8..=126).prop_map(char::from), 1..64).prop_map(String::from_iter),
    ]
}

/// Free text (VRFY, EXPN, HELP): no CR, LF or NUL, and no edge spaces, which the parser
/// trims.
fn free_text() -> impl Strategy<Value = String> {
    let edge = prop_oneof![(33u8..=126).prop_map(char::from), Just('é')];
    let inner = prop_oneof![8 => printable_ascii(), 1 => Just('\t'), 1 => Just('用')];
    (edge.clone(), vec(inner, 0..40), edge)
        .prop_map(|(a, mid, z)| format!("{a}{}{z}", String::from_iter(mid)))
}

fn mechanism() -> impl Strategy<Value = AuthMechanism> {
    let other = vec(prop_oneof![select(ALNUM), Just('-'), Just('_')], 1..=20)
        .prop_map(|c| String::from_iter(c).to_ascii_uppercase())
        .prop_filter("named mechanisms have variants", |n| {
            !matches!(n.as_str(), "PLAIN" | "LOGIN" | "XOAUTH2")
        });
    prop_oneof![
        Just(AuthMechanism::Plain),
        Just(AuthMechanism::Login),
        Just(AuthMechanism::XOAuth2),
        other.prop_map(AuthMechanism::Other),
    ]
}

/// Base64 of some bytes, or `=` for an empty initial response (RFC 4954 §4).
fn initial_response() -> impl Strategy<Value = String> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let encoded = vec(any::<u8>(), 1..80).prop_map(|bytes| {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    });
    prop_oneof![4 => encoded, 1 => Just("=".to_owned())]
}

fn postmaster() -> impl Strategy<Value = String> {
    vec(any::<bool>(), 10).prop_map(|upper| {
        "postmaster"
            .chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => hello_name().prop_map(Command::Helo),
        1 => hello_name().prop_map(Command::Ehlo),
        1 => hello_name().prop_map(Command::Lhlo),
        3 => (prop_oneof![1 => Just(ReversePath::Null), 5 => address().prop_map(ReversePath::Mailbox)], mail_parameters())
            .prop_map(|(from, params)| Command::Mail { from, params }),
        3 => (
            prop_oneof![1 => postmaster().prop_map(ForwardPath::Postmaster), 5 => address().prop_map(ForwardPath::Mailbox)],
            rcpt_parameters()
        )
            .prop_map(|(to, params)| Command::Rcpt { to, params }),
        1 => Just(Command::Data),
        1 => (prop_oneof![0..=SIZE_LIMIT, 0u64..100_000], any::<bool>()).prop_map(|(size, last)| Command::Bdat { size, last }),
        1 => Just(Command::Rset),
        1 => Just(Command::Noop(None)),
        1 => Just(Command::Quit),
        1 => free_text().prop_map(Command::Vrfy),
        1 => free_text().prop_map(Command::Expn),
        1 => proptest::option::of(free_text()).prop_map(Command::Help),
        1 => Just(Command::StartTls),
        1 => (mechanism(), proptest::option::of(initial_response()))
            .prop_map(|(mechanism, initial_response)| Command::Auth { mechanism, initial_response }),
    ]
}

/// Arbitrary bytes, and bytes after a real verb so that argument parsing gets exercised.
fn command_line_bytes() -> impl Strategy<Value = Vec<u8>> {
    let verbs = select(
        &[
            "",
            "MAIL FROM:",
            "mail from: <",
            "RCPT TO:<",
            "RCPT TO:<a@b> ",
            "MAIL FROM:<a@b.c> ",
            "BDAT ",
            "AUTH ",
            "EHLO ",
            "HELO ",
            "LHLO ",
            "VRFY ",
            "EXPN ",
            "HELP ",
            "DATA",
            "QUIT ",
            "NOOP ",
            "STARTTLS",
            "RSET ",
        ][..],
    );
    let tail = prop_oneof![
        vec(any::<u8>(), 0..300),
        vec(select(&b"<>@.:\"\\[]= ,;+-_aZ09\xc3\xa9"[..]), 0..80),
    ];
    (verbs, tail).prop_map(|(v, t)| [v.as_bytes(), &t].concat())
}

fn line_of(cmd: &Command) -> Vec<u8> {
    let mut wire = cmd.to_bytes();
    assert!(wire.ends_with(b"\r\n"), "{wire:?}");
    wire.truncate(wire.len() - 2);
    wire
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn written_commands_parse_back(cmd in command()) {
        prop_assert_eq!(cmd.check_arguments(), Ok(()));
        let line = line_of(&cmd);
        prop_assert!(!line.contains(&b'\r') && !line.contains(&b'\n'), "{:?}", String::from_utf8_lossy(&line));
        prop_assert_eq!(Command::parse(&line), Ok(cmd), "line {:?}", String::from_utf8_lossy(&line));
    }

    #[test]
    fn parse_never_panics_and_errors_are_5xx(line in command_line_bytes()) {
        match Command::parse(&line) {
            Err(e) => {
                let reply = e.reply();
                prop_assert!(reply.is_permanent(), "{e:?} gives {reply}");
                let enhanced = reply.enhanced();
                prop_assert!(enhanced.is_some_and(|c| c.class == 5), "{e:?} gives {reply}");
            }
            // Whatever the parser accepts and would let a client write must read back the
            // same: the normal form is a fixed point.
            Ok(cmd) if cmd.check_arguments().is_ok() => {
                prop_assert_eq!(Command::parse(&line_of(&cmd)), Ok(cmd));
            }
            Ok(_) => {}
        }
    }
}

// Regressions: engine bugs the first runs of these properties found.

#[test]
fn regression_twenty_digit_sizes() {
    let bdat = Command::Bdat {
        size: u64::MAX,
        last: true,
    };
    assert_eq!(Command::parse(&line_of(&bdat)), Ok(bdat));
    assert!(Command::parse(b"MAIL FROM:<a@b.example> SIZE=10000000000000000000").is_ok());
}

#[test]
fn regression_at_sign_in_address_literal() {
    assert!(Address::parse("a@[x:@b]").is_ok());
}

#[test]
fn regression_path_end_inside_address_literal() {
    for text in ["a@[x:>]", "a@[x:\"]"] {
        let from = ReversePath::Mailbox(Address::parse(text).unwrap());
        let mail = Command::Mail {
            from,
            params: MailParameters::default(),
        };
        assert_eq!(Command::parse(&line_of(&mail)), Ok(mail));
    }
}

/// Found by the reply_parser fuzzer: a CR inside the text used to become a space only after
/// the enhanced code was looked for, so a parsed reply and its written form disagreed.
#[test]
fn regression_bare_cr_in_reply_text() {
    use smtp_core::reply::{ReplyLimits, ReplyParser};
    let mut parser = ReplyParser::new(ReplyLimits::default());
    let (_, reply) = parser.feed(b"250 2.0.0\rx\r\n").unwrap();
    let reply = reply.unwrap();
    let mut again = ReplyParser::new(ReplyLimits::default());
    let (_, reread) = again.feed(&reply.to_bytes()).unwrap();
    assert_eq!(reread.unwrap(), reply);
}

/// Found by the client_session fuzzer: a body request queued before a fatal error in the
/// same read was still handed out, and send_body then failed.
#[test]
fn regression_no_send_body_after_a_fatal_error() {
    use smtp_core::client::{ClientConfig, ClientEvent, ClientSession, Envelope};
    use std::time::Duration;
    let now = Duration::ZERO;
    let mut client = ClientSession::new(ClientConfig::new("c.test"), now).unwrap();
    client.receive(b"220 mx\r\n250-mx\r\n250 PIPELINING\r\n", now);
    assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
    client
        .send_mail(&Envelope::new("a@b.test", ["c@d.test"]).unwrap(), None)
        .unwrap();
    client.receive(b"250 ok\r\n250 ok\r\n354 go\r\nxx\r\n", now);
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(!events.contains(&ClientEvent::SendBody), "{events:?}");
    assert_eq!(events.last(), Some(&ClientEvent::Closed));
}
