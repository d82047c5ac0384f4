use super::*;

fn feed_all(bytes: &[u8]) -> Result<ProxyProgress, ProxyError> {
    ProxyParser::new().feed(bytes)
}

/// Feeds `bytes` as a driver honouring `wanted` does: never more than asked for.
fn feed_as_driver(bytes: &[u8]) -> (Result<ProxyHeader, ProxyError>, usize) {
    let mut parser = ProxyParser::new();
    let mut at = 0;
    for _ in 0..10_000 {
        let n = parser.wanted().min(bytes.len() - at);
        assert!(n > 0, "asked for more than the header");
        match parser.feed(&bytes[at..at + n]) {
            Ok(ProxyProgress::More) => at += n,
            Ok(ProxyProgress::Done(h)) => {
                assert!(parser.take_rest().is_empty());
                return (Ok(h), at + n);
            }
            Err(e) => return (Err(e), at + n),
        }
    }
    panic!("the parser did not finish");
}

fn v4(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn v1_tcp4_and_tcp6() {
    let (h, used) = feed_as_driver(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n");
    let h = h.unwrap();
    assert_eq!(used, 44, "nothing read past the CRLF");
    assert_eq!(h.version, 1);
    assert_eq!(h.command, ProxyCommand::Proxy);
    assert_eq!(h.source, Some(v4("192.0.2.7:40000")));
    assert_eq!(h.destination, Some(v4("198.51.100.1:25")));

    let ProxyProgress::Done(h) =
        feed_all(b"PROXY TCP6 2001:db8::7 2001:db8::1 1234 587\r\n").unwrap()
    else {
        panic!()
    };
    assert_eq!(h.source, Some("[2001:db8::7]:1234".parse().unwrap()));
}

#[test]
fn v1_unknown_is_local_and_ignores_the_rest_of_the_line() {
    let (h, _) = feed_as_driver(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
    let h = h.unwrap();
    assert_eq!(h.command, ProxyCommand::Local);
    assert_eq!(h.source, None);
    let (h, used) = feed_as_driver(b"PROXY UNKNOWN\r\n\x16\x03\x01");
    assert_eq!(used, 15);
    assert_eq!(h.unwrap().command, ProxyCommand::Local);
}

#[test]
fn v1_malformed() {
    for bad in [
        &b"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n"[..],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25 9\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.1 40000 25\r\n",
        b"PROXY TCP6 192.0.2.7 198.51.100.1 40000 25\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 040000 25\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 70000 25\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 -1 25\r\n",
        b"PROXY UDP4 192.0.2.7 198.51.100.1 1 25\r\n",
        b"PROXY TCP4  192.0.2.7 198.51.100.1 1 25\r\n",
    ] {
        let (r, _) = feed_as_driver(bad);
        assert!(
            matches!(r, Err(ProxyError::Malformed(_))),
            "{:?}: {r:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn v1_oversized_line_fails_at_the_limit() {
    let mut line = b"PROXY TCP6 ".to_vec();
    line.extend(std::iter::repeat_n(b'1', 200));
    let (r, used) = feed_as_driver(&line);
    assert_eq!(r, Err(ProxyError::TooLong));
    assert!(used <= MAX_V1 + 1, "stopped reading at the limit: {used}");
}

#[test]
fn bad_signature_fails_at_the_first_byte() {
    let mut p = ProxyParser::new();
    assert_eq!(p.feed(b"E"), Err(ProxyError::BadSignature));
    assert_eq!(feed_all(b"EHLO client\r\n"), Err(ProxyError::BadSignature));
    assert_eq!(feed_all(b"PROXY\r\n"), Err(ProxyError::BadSignature));
    assert_eq!(
        feed_all(b"\x16\x03\x01\x02\x00"),
        Err(ProxyError::BadSignature)
    );
    assert_eq!(
        feed_all(b"\r\n\r\n\0\r\nQUIX\n"),
        Err(ProxyError::BadSignature)
    );
}

fn header(version: u8, tlvs: Vec<ProxyTlv>) -> ProxyHeader {
    ProxyHeader {
        version,
        command: ProxyCommand::Proxy,
        source: Some(v4("203.0.113.9:51000")),
        destination: Some(v4("192.0.2.1:25")),
        tlvs,
    }
}

#[test]
fn v2_inet_with_tlvs_round_trips_and_reads_nothing_past_it() {
    let sent = header(
        2,
        vec![
            ProxyTlv {
                kind: ProxyTlv::AUTHORITY,
                value: b"mx.example".to_vec(),
            },
            ProxyTlv {
                kind: ProxyTlv::SSL,
                value: vec![0x01, 0, 0, 0, 0],
            },
        ],
    );
    let mut bytes = sent.to_bytes();
    let len = bytes.len();
    bytes.extend_from_slice(b"\x16\x03\x01 client hello");
    let (h, used) = feed_as_driver(&bytes);
    let h = h.unwrap();
    assert_eq!(used, len);
    assert_eq!(h, sent);
    assert_eq!(h.authority(), Some("mx.example"));
    assert!(h.client_tls());
    // Fed at once, the bytes after it are kept for the session.
    let mut p = ProxyParser::new();
    assert!(matches!(p.feed(&bytes), Ok(ProxyProgress::Done(_))));
    assert_eq!(p.take_rest(), b"\x16\x03\x01 client hello");
}

#[test]
fn v2_inet6() {
    let mut sent = header(2, Vec::new());
    sent.source = Some("[2001:db8::9]:4000".parse().unwrap());
    sent.destination = Some("[2001:db8::1]:25".parse().unwrap());
    let (h, _) = feed_as_driver(&sent.to_bytes());
    assert_eq!(h.unwrap(), sent);
}

#[test]
fn v2_local_uses_the_real_endpoints() {
    // LOCAL with an address block that must be discarded.
    let mut bytes = header(2, Vec::new()).to_bytes();
    bytes[12] = 0x20;
    let (h, _) = feed_as_driver(&bytes);
    let h = h.unwrap();
    assert_eq!(h.command, ProxyCommand::Local);
    assert_eq!((h.source, h.destination), (None, None));
    // LOCAL / UNSPEC with no addresses, as HAProxy sends for health checks.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let (h, used) = feed_as_driver(local);
    assert_eq!((h.unwrap().command, used), (ProxyCommand::Local, 16));
}

#[test]
fn v2_unix_and_unspec_families_keep_the_real_endpoints() {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n\x21\x31".to_vec();
    bytes.extend_from_slice(&216u16.to_be_bytes());
    bytes.extend(std::iter::repeat_n(b'/', 216));
    let (h, _) = feed_as_driver(&bytes);
    let h = h.unwrap();
    assert_eq!((h.command, h.source), (ProxyCommand::Proxy, None));
}

#[test]
fn v2_malformed() {
    let good = header(2, Vec::new()).to_bytes();
    let with = |i: usize, b: u8| {
        let mut v = good.clone();
        v[i] = b;
        v
    };
    let cases: Vec<Vec<u8>> = vec![
        with(12, 0x11), // version 1 in a v2 header
        with(12, 0x22), // command 2
        with(13, 0x41), // family 4
        with(13, 0x13), // transport 3
        with(15, 4),    // INET with a 4-byte block
        {
            // A TLV running past the end.
            let mut v = good.clone();
            v[15] += 3;
            v.extend_from_slice(&[0x02, 0x00, 0x09]);
            v
        },
        {
            // Two bytes of TLV: truncated.
            let mut v = good.clone();
            v[15] += 2;
            v.extend_from_slice(&[0x02, 0x00]);
            v
        },
    ];
    for bad in cases {
        let (r, _) = feed_as_driver(&bad);
        assert!(matches!(r, Err(ProxyError::Malformed(_))), "{bad:?}: {r:?}");
    }
}

#[test]
fn v2_crc32c_is_checked() {
    let mut h = header(
        2,
        vec![ProxyTlv {
            kind: ProxyTlv::CRC32C,
            value: vec![0; 4],
        }],
    );
    let zeroed = h.to_bytes();
    h.tlvs[0].value = crc32c(&zeroed).to_be_bytes().to_vec();
    let (r, _) = feed_as_driver(&h.to_bytes());
    assert_eq!(r.unwrap(), h);
    h.tlvs[0].value[0] ^= 1;
    let (r, _) = feed_as_driver(&h.to_bytes());
    assert_eq!(r, Err(ProxyError::Malformed("v2: CRC32C mismatch")));
    // The check value of the standard test string.
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn v2_oversized_fails_on_its_length_before_reading_the_body() {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    bytes.extend_from_slice(&60_000u16.to_be_bytes());
    let mut p = ProxyParser::new();
    assert_eq!(p.feed(&bytes), Err(ProxyError::TooLong));
}

#[test]
fn truncated_headers_ask_for_more() {
    let v2 = header(2, Vec::new()).to_bytes();
    for cut in 1..v2.len() {
        let mut p = ProxyParser::new();
        assert_eq!(p.feed(&v2[..cut]), Ok(ProxyProgress::More), "cut at {cut}");
        assert!(p.wanted() >= 1 && p.wanted() <= v2.len() - cut);
    }
    let v1 = header(1, Vec::new()).to_bytes();
    for cut in 1..v1.len() {
        let mut p = ProxyParser::new();
        assert_eq!(p.feed(&v1[..cut]), Ok(ProxyProgress::More), "cut at {cut}");
        assert!(p.wanted() <= v1.len() - cut);
    }
}

#[test]
fn networks() {
    let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains("10.200.1.1".parse().unwrap()));
    assert!(
        net.contains("::ffff:10.0.0.1".parse().unwrap()),
        "v4-mapped"
    );
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(!net.contains("::1".parse().unwrap()));
    let one: IpNetwork = "127.0.0.1".parse().unwrap();
    assert_eq!(one.to_string(), "127.0.0.1/32");
    assert!(!one.contains("127.0.0.2".parse().unwrap()));
    let v6: IpNetwork = "2001:db8::/33".parse().unwrap();
    assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
    assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
    let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("192.0.2.1".parse().unwrap()));
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "x",
        "10.0.0.0/",
        "10.0.0.0/-1",
    ] {
        assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
    }
    let p = ProxyProtocol::new(vec![net, one]);
    assert!(p.trusts("127.0.0.1".parse().unwrap()));
    assert!(!p.trusts("192.0.2.1".parse().unwrap()));
    assert!(!ProxyProtocol::new(Vec::new()).trusts("127.0.0.1".parse().unwrap()));
}

/// The connection layer with a PROXY header first.
mod connection {
    use super::*;
    use crate::handler::DiscardSession;
    use crate::server::ServerConfig;
    use crate::server::connection::{Action, Connection};

    const T0: Duration = Duration::ZERO;

    fn balancer() -> Option<SocketAddr> {
        Some(v4("10.1.2.3:33000"))
    }

    fn proxy() -> ProxyProtocol {
        ProxyProtocol::new(vec!["10.0.0.0/8".parse().unwrap()])
    }

    fn conn(implicit_tls: bool, peer: Option<SocketAddr>) -> Connection {
        let mut c = Connection::new(ServerConfig::new("mx.test"), T0, implicit_tls);
        c.expect_proxy_header(&proxy(), peer, T0);
        c
    }

    /// Feeds `bytes` honouring read_limit until the layer asks for something other than a
    /// read; returns that action's name and what was left unread.
    fn feed<'a>(c: &mut Connection, mut bytes: &'a [u8], now: Duration) -> (String, &'a [u8]) {
        for _ in 0..1000 {
            match c.next_action(now) {
                Action::Read { .. } if !bytes.is_empty() => {
                    let n = c.read_limit().min(bytes.len());
                    c.receive(&bytes[..n], now);
                    bytes = &bytes[n..];
                }
                other => {
                    let name = format!("{other:?}");
                    return (name.split([' ', '(']).next().unwrap().to_owned(), bytes);
                }
            }
        }
        panic!("did not settle")
    }

    #[test]
    fn the_header_names_the_peer_then_the_session_begins() {
        let mut c = conn(false, balancer());
        assert!(c.read_limit() <= MIN_HEADER);
        let (next, _) = feed(&mut c, b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n", T0);
        assert_eq!(next, "Connect");
        let info = c.connection_info(3, balancer(), Some(v4("10.0.0.1:25")));
        assert_eq!(info.peer, Some(v4("192.0.2.7:40000")));
        assert_eq!(info.proxy.as_ref().unwrap().version, 1);
        assert_eq!(info.local, Some(v4("10.0.0.1:25")));
        assert_eq!(c.read_limit(), usize::MAX);
        c.connected(None);
        let Action::Write(greeting) = c.next_action(T0) else {
            panic!("greets")
        };
        assert!(greeting.starts_with(b"220 mx.test"));
    }

    #[test]
    fn v2_local_keeps_the_real_peer() {
        let mut c = conn(false, balancer());
        let (next, _) = feed(&mut c, b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", T0);
        assert_eq!(next, "Connect");
        let info = c.connection_info(1, balancer(), None);
        assert_eq!(info.peer, balancer());
        assert_eq!(info.proxy.unwrap().command, ProxyCommand::Local);
    }

    #[test]
    fn untrusted_or_unknown_sources_are_closed_without_a_word() {
        for peer in [Some(v4("192.0.2.9:1000")), None] {
            let mut c = conn(false, peer);
            assert!(matches!(c.next_action(T0), Action::Close), "{peer:?}");
        }
    }

    #[test]
    fn missing_malformed_or_late_headers_close_without_a_greeting() {
        // Malformed: an SMTP client talking first.
        let mut c = conn(false, balancer());
        assert_eq!(feed(&mut c, b"EHLO client\r\n", T0).0, "Close");
        // The end of input before a whole header.
        let mut c = conn(false, balancer());
        feed(&mut c, b"PROXY TCP4 1.2.", T0);
        c.receive_eof();
        assert!(matches!(c.next_action(T0), Action::Close));
        // Slow: half a header, then the deadline.
        let mut c = conn(false, balancer());
        feed(&mut c, b"PROXY TCP4 1.2.", T0);
        let Action::Read { deadline } = c.next_action(T0) else {
            panic!("waits")
        };
        assert_eq!(deadline, DEFAULT_TIMEOUT, "one deadline from the accept");
        c.timeout(deadline - Duration::from_millis(1));
        assert!(matches!(c.next_action(T0), Action::Read { .. }), "not yet");
        c.timeout(deadline);
        assert!(matches!(c.next_action(deadline), Action::Close));
        // Oversized.
        let mut c = conn(false, balancer());
        let long = [b"PROXY TCP4 ".as_slice(), &[b'9'; 200]].concat();
        assert_eq!(feed(&mut c, &long, T0).0, "Close");
        // A shutdown while waiting for it.
        let mut c = conn(false, balancer());
        feed(&mut c, b"PROXY ", T0);
        c.stop();
        assert!(matches!(c.next_action(T0), Action::Close));
    }

    #[test]
    fn implicit_tls_handshakes_after_the_header_with_nothing_read_past_it() {
        let mut c = conn(true, balancer());
        let mut wire = header(2, Vec::new()).to_bytes();
        wire.extend_from_slice(b"\x16\x03\x01 hello");
        let (next, unread) = feed(&mut c, &wire, T0);
        assert_eq!(next, "StartTls");
        assert_eq!(unread, b"\x16\x03\x01 hello");
        c.tls_established(T0);
        assert!(matches!(c.next_action(T0), Action::Connect));
        let info = c.connection_info(1, balancer(), None);
        assert!(info.tls);
        assert_eq!(info.peer, Some(v4("203.0.113.9:51000")));
        c.connected(None);
        let Action::Write(greeting) = c.next_action(T0) else {
            panic!("greets")
        };
        assert!(greeting.starts_with(b"220 "));
    }

    #[test]
    fn bytes_read_past_the_header_reach_the_session() {
        let mut c = conn(false, balancer());
        c.receive(b"PROXY UNKNOWN\r\nQUIT\r\n", T0);
        assert!(matches!(c.next_action(T0), Action::Connect));
        c.connected(None);
        let mut wire = Vec::new();
        for _ in 0..100 {
            match c.next_action(T0) {
                Action::Write(b) => {
                    wire.extend_from_slice(b);
                    let n = b.len();
                    c.written(n);
                }
                Action::Hook(h) => {
                    let a = h.call(&mut DiscardSession);
                    c.answer(a);
                }
                Action::Close => break,
                other => panic!("{other:?}"),
            }
        }
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.starts_with("220 "), "{wire}");
        assert!(wire.contains("221 "), "QUIT answered: {wire}");
    }
}
