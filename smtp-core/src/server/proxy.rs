//! The PROXY protocol (HAProxy's specification, versions 1 and 2), receiving side,
//! sans-IO: a load balancer in front of the server writes one header before the client's
//! first byte, saying who the client is. The [connection layer](crate::server::connection)
//! reads it before anything else when a listener is configured for it
//! ([`ProxyProtocol`], [`ServerOptions::proxy_protocol`](crate::server::options::ServerOptions::proxy_protocol)),
//! so every driver gets it.
//!
//! The rules, fail closed:
//! - Only a connection from a [trusted network](ProxyProtocol::trusted) may send a header;
//!   any other connection to such a listener is closed at once, without a greeting (a
//!   client that reaches the listener directly must not be able to claim any address, and
//!   serving it without the header would let it bypass the balancer's own policy).
//! - The header must come whole within [`ProxyProtocol::timeout`]; a missing, malformed,
//!   oversized ([`MAX_HEADER`]) or late header closes the connection without a greeting.
//! - `LOCAL` (v2) and `UNKNOWN` (v1) headers, and v2 address families other than TCP/UDP
//!   over IPv4/IPv6, are accepted as the specification says: the connection is served
//!   with its real endpoints (the balancer's own health checks).
//! - The parser never reads past the header ([`ProxyParser::wanted`]): the bytes after it
//!   belong to the client (an implicit-TLS ClientHello, for instance).
//!
//! ```
//! use smtp_core::server::proxy::{ProxyParser, ProxyProgress};
//!
//! let mut parser = ProxyParser::new();
//! let header = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n";
//! let ProxyProgress::Done(h) = parser.feed(header).unwrap() else { panic!() };
//! assert_eq!(h.source.unwrap().to_string(), "192.0.2.7:40000");
//! assert_eq!(h.version, 1);
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// The largest header accepted, in bytes (a v2 header with its TLVs; a v1 line is at
/// most 107 by the specification). Larger closes the connection.
pub const MAX_HEADER: usize = 4096;

/// The v1 limit, CRLF included.
const MAX_V1: usize = 107;

/// The twelve bytes every v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The shortest header of either version (`PROXY UNKNOWN\r\n`).
const MIN_HEADER: usize = 15;

/// The default of [`ProxyProtocol::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener's PROXY protocol setting: which sources may send a header, and how long the
/// header may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The networks the load balancers connect from. A connection from anywhere else is
    /// closed without a greeting. Empty trusts nobody: set it.
    pub trusted: Vec<IpNetwork>,
    /// How long the whole header may take from the moment the connection is accepted
    /// (aiosmtpd's `proxy_protocol_timeout`). Default 10 s.
    pub timeout: Duration,
}

impl ProxyProtocol {
    /// A setting that trusts `trusted`, with the default timeout.
    pub fn new(trusted: Vec<IpNetwork>) -> ProxyProtocol {
        ProxyProtocol {
            trusted,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// True when a connection from `peer` may send a header. An IPv4 address mapped into
    /// IPv6 (a dual-stack listener) is matched as IPv4.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(peer))
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a
/// network of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `addr` with `prefix` leading bits; `None` when the prefix is longer
    /// than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNetwork> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNetwork { addr, prefix })
    }

    /// True when `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl FromStr for IpNetwork {
    type Err = String;
    fn from_str(s: &str) -> Result<IpNetwork, String> {
        let bad = || format!("not a network in CIDR notation: {s:?}");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        IpNetwork::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What the header says the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyCommand {
    /// Relayed for a client: the addresses are the client's (`PROXY` in v2, `TCP4`/`TCP6`
    /// in v1).
    Proxy,
    /// The balancer's own connection (a health check): v2 `LOCAL`, v1 `UNKNOWN`. The
    /// connection is served with its real endpoints.
    Local,
}

/// One type-length-value of a v2 header, as sent. The types the specification names
/// have constants here ([`ProxyTlv::ALPN`], ...); [`ProxyHeader::tlv`] finds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyTlv {
    /// The type byte.
    pub kind: u8,
    /// The value.
    pub value: Vec<u8>,
}

impl ProxyTlv {
    /// `PP2_TYPE_ALPN`: the protocol the client negotiated with the balancer.
    pub const ALPN: u8 = 0x01;
    /// `PP2_TYPE_AUTHORITY`: the host name the client asked for (TLS SNI).
    pub const AUTHORITY: u8 = 0x02;
    /// `PP2_TYPE_CRC32C`: a checksum of the header (checked here when present).
    pub const CRC32C: u8 = 0x03;
    /// `PP2_TYPE_NOOP`: padding.
    pub const NOOP: u8 = 0x04;
    /// `PP2_TYPE_UNIQUE_ID`: the balancer's id of the connection.
    pub const UNIQUE_ID: u8 = 0x05;
    /// `PP2_TYPE_SSL`: the client's TLS with the balancer (a client flag byte, a
    /// verify word, then sub-TLVs such as version and cipher).
    pub const SSL: u8 = 0x20;
    /// `PP2_TYPE_NETNS`: the network namespace the connection was accepted in.
    pub const NETNS: u8 = 0x30;
}

/// A header read in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 (text) or 2 (binary).
    pub version: u8,
    /// Relayed client connection or the balancer's own.
    pub command: ProxyCommand,
    /// The client's address (`None` for LOCAL, UNKNOWN and non-IP families).
    pub source: Option<SocketAddr>,
    /// The address the client connected to, on the balancer.
    pub destination: Option<SocketAddr>,
    /// The v2 TLVs, in order (empty for v1).
    pub tlvs: Vec<ProxyTlv>,
}

impl ProxyHeader {
    /// The value of the first TLV of `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.value.as_slice())
    }

    /// The host name the client asked the balancer for (`PP2_TYPE_AUTHORITY`), if sent
    /// and valid UTF-8.
    pub fn authority(&self) -> Option<&str> {
        self.tlv(ProxyTlv::AUTHORITY)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The header as a balancer writes it, in its [`version`](Self::version) (TLVs only in
    /// v2; a v1 header without both addresses, or with addresses of two families, is
    /// `UNKNOWN`). For tests and for software that sits in front of a server.
    pub fn to_bytes(&self) -> Vec<u8> {
        let pair = match (self.command, self.source, self.destination) {
            (ProxyCommand::Proxy, Some(s), Some(d)) if s.is_ipv4() == d.is_ipv4() => Some((s, d)),
            _ => None,
        };
        if self.version == 1 {
            return match pair {
                Some((s, d)) => format!(
                    "PROXY {} {} {} {} {}\r\n",
                    if s.is_ipv4() { "TCP4" } else { "TCP6" },
                    s.ip(),
                    d.ip(),
                    s.port(),
                    d.port()
                )
                .into_bytes(),
                None => b"PROXY UNKNOWN\r\n".to_vec(),
            };
        }
        let mut out = V2_SIGNATURE.to_vec();
        let mut body = Vec::new();
        match pair {
            Some((s, d)) => {
                out.push(0x21);
                match (s.ip(), d.ip()) {
                    (IpAddr::V4(si), IpAddr::V4(di)) => {
                        out.push(0x11);
                        body.extend_from_slice(&si.octets());
                        body.extend_from_slice(&di.octets());
                    }
                    (si, di) => {
                        out.push(0x21);
                        body.extend_from_slice(&to_v6(si).octets());
                        body.extend_from_slice(&to_v6(di).octets());
                    }
                }
                body.extend_from_slice(&s.port().to_be_bytes());
                body.extend_from_slice(&d.port().to_be_bytes());
            }
            None => out.extend_from_slice(&[0x20, 0x00]),
        }
        for t in &self.tlvs {
            body.push(t.kind);
            body.extend_from_slice(&(t.value.len() as u16).to_be_bytes());
            body.extend_from_slice(&t.value);
        }
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// True when the client spoke TLS to the balancer (`PP2_TYPE_SSL` with its
    /// `PP2_CLIENT_SSL` flag).
    pub fn client_tls(&self) -> bool {
        self.tlv(ProxyTlv::SSL)
            .and_then(|v| v.first())
            .is_some_and(|flags| flags & 0x01 != 0)
    }
}

/// Why a header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// The first bytes are neither `PROXY ` nor the v2 signature.
    BadSignature,
    /// Longer than [`MAX_HEADER`] (or a v1 line longer than 107 bytes).
    TooLong,
    /// A header that breaks the specification; the reason.
    Malformed(&'static str),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::BadSignature => f.write_str("no PROXY protocol signature"),
            ProxyError::TooLong => f.write_str("PROXY protocol header too long"),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Where the parser is after [`ProxyParser::feed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyProgress {
    /// More bytes are needed (at most [`ProxyParser::wanted`] of them).
    More,
    /// The header is complete. Bytes fed beyond it are [`ProxyParser::take_rest`].
    Done(ProxyHeader),
}

/// Reads one header from the bytes fed to it. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct ProxyParser {
    buf: Vec<u8>,
    /// Bytes fed past the end of the header.
    rest: Vec<u8>,
}

impl ProxyParser {
    /// A parser waiting for the first byte.
    pub fn new() -> ProxyParser {
        ProxyParser::default()
    }

    /// How many bytes may be read now without reading past the header (at least 1): a
    /// driver that reads at most this many leaves the client's own bytes in the socket.
    pub fn wanted(&self) -> usize {
        let have = self.buf.len();
        if have < MIN_HEADER {
            return MIN_HEADER - have;
        }
        if self.buf.starts_with(V2_SIGNATURE) {
            if have < 16 {
                return 16 - have;
            }
            let total = 16 + usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]));
            return total.saturating_sub(have).max(1);
        }
        // v1: the line ends with CRLF, so at least one byte when it ends with CR, two
        // otherwise.
        if self.buf.ends_with(b"\r") { 1 } else { 2 }
    }

    /// Takes `bytes`; says whether the header is complete, or why it is refused (the
    /// connection is then to be closed).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<ProxyProgress, ProxyError> {
        self.buf.extend_from_slice(bytes);
        self.check_start()?;
        if self.buf.len() < V2_SIGNATURE.len() && !self.buf.starts_with(b"PROXY ") {
            return Ok(ProxyProgress::More); // a beginning of either
        }
        if self.buf.starts_with(V2_SIGNATURE) {
            if self.buf.len() < 16 {
                return Ok(ProxyProgress::More);
            }
            let total = 16 + usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]));
            if total > MAX_HEADER {
                return Err(ProxyError::TooLong);
            }
            if self.buf.len() < total {
                return Ok(ProxyProgress::More);
            }
            let header = parse_v2(&self.buf[..total])?;
            self.rest = self.buf.split_off(total);
            return Ok(ProxyProgress::Done(header));
        }
        let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            if self.buf.len() >= MAX_V1 {
                return Err(ProxyError::TooLong);
            }
            return Ok(ProxyProgress::More);
        };
        if end + 2 > MAX_V1 {
            return Err(ProxyError::TooLong);
        }
        let header = parse_v1(&self.buf[..end])?;
        self.rest = self.buf.split_off(end + 2);
        Ok(ProxyProgress::Done(header))
    }

    /// The bytes fed after the end of the header (none when the driver read at most
    /// [`wanted`](Self::wanted) each time).
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rest)
    }

    /// Fails as soon as the bytes so far cannot begin a header.
    fn check_start(&self) -> Result<(), ProxyError> {
        let n = self.buf.len();
        let v1 = b"PROXY ";
        if self.buf[..n.min(v1.len())] == v1[..n.min(v1.len())]
            || self.buf[..n.min(12)] == V2_SIGNATURE[..n.min(12)]
        {
            Ok(())
        } else {
            Err(ProxyError::BadSignature)
        }
    }
}

/// The v1 line without its CRLF.
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1: not ASCII"))?;
    let mut words = line.split(' ');
    words.next(); // "PROXY", checked already
    let local = |_| ProxyHeader {
        version: 1,
        command: ProxyCommand::Local,
        source: None,
        destination: None,
        tlvs: Vec::new(),
    };
    let v6 = match words.next() {
        // "the receiver must ignore anything presented before the CRLF is found".
        Some("UNKNOWN") => return Ok(local(())),
        Some("TCP4") => false,
        Some("TCP6") => true,
        _ => return Err(ProxyError::Malformed("v1: unknown protocol")),
    };
    let mut field = || {
        words
            .next()
            .ok_or(ProxyError::Malformed("v1: missing field"))
    };
    let (src, dst, sport, dport) = (field()?, field()?, field()?, field()?);
    if words.next().is_some() {
        return Err(ProxyError::Malformed("v1: extra field"));
    }
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let bad = ProxyError::Malformed("v1: bad address");
        if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad)
        }
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        // Decimal without a leading zero or sign, as the specification writes them.
        let ok = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        ok.then(|| s.parse().ok())
            .flatten()
            .ok_or(ProxyError::Malformed("v1: bad port"))
    };
    Ok(ProxyHeader {
        version: 1,
        command: ProxyCommand::Proxy,
        source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
        destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
        tlvs: Vec::new(),
    })
}

/// A whole v2 header (signature, 4 fixed bytes, the address block and TLVs).
fn parse_v2(h: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let version = h[12] >> 4;
    if version != 2 {
        return Err(ProxyError::Malformed("v2: unknown version"));
    }
    let command = match h[12] & 0x0f {
        0 => ProxyCommand::Local,
        1 => ProxyCommand::Proxy,
        _ => return Err(ProxyError::Malformed("v2: unknown command")),
    };
    let family = h[13] >> 4;
    let transport = h[13] & 0x0f;
    if transport > 2 || family > 3 {
        return Err(ProxyError::Malformed("v2: unknown family or transport"));
    }
    let body = &h[16..];
    // INET (1) and INET6 (2) over STREAM or DGRAM carry IP addresses; UNSPEC and UNIX are
    // taken with the real endpoints, as the specification allows.
    let (addr_len, addresses) = match family {
        1 => (12, true),
        2 => (36, true),
        3 => (216, false),
        _ => (0, false),
    };
    if body.len() < addr_len {
        return Err(ProxyError::Malformed("v2: address block too short"));
    }
    let (source, destination) = if addresses && transport != 0 {
        let b = &body[..addr_len];
        if family == 1 {
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]));
            let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        } else {
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
    } else {
        (None, None)
    };
    let (tlvs, crc_at) = parse_tlvs(&body[addr_len..])?;
    if let Some(at) = crc_at {
        check_crc(h, 16 + addr_len + at)?;
    }
    let (source, destination) = match command {
        // "the receiver must ... use the real connection endpoints and discard the
        // protocol block including the family".
        ProxyCommand::Local => (None, None),
        ProxyCommand::Proxy => (source, destination),
    };
    Ok(ProxyHeader {
        version: 2,
        command,
        source,
        destination,
        tlvs,
    })
}

/// The TLVs, and the offset in `b` of the first CRC32C value.
fn parse_tlvs(mut b: &[u8]) -> Result<(Vec<ProxyTlv>, Option<usize>), ProxyError> {
    let mut tlvs = Vec::new();
    let mut crc_at = None;
    let mut at = 0;
    while !b.is_empty() {
        if b.len() < 3 {
            return Err(ProxyError::Malformed("v2: truncated TLV"));
        }
        let len = usize::from(u16::from_be_bytes([b[1], b[2]]));
        if b.len() < 3 + len {
            return Err(ProxyError::Malformed("v2: TLV longer than the header"));
        }
        if b[0] == ProxyTlv::CRC32C && crc_at.is_none() {
            if len != 4 {
                return Err(ProxyError::Malformed("v2: CRC32C of the wrong length"));
            }
            crc_at = Some(at + 3);
        }
        tlvs.push(ProxyTlv {
            kind: b[0],
            value: b[3..3 + len].to_vec(),
        });
        b = &b[3 + len..];
        at += 3 + len;
    }
    Ok((tlvs, crc_at))
}

/// Checks the `PP2_TYPE_CRC32C` value at `offset`: the CRC32c of the whole header with
/// the value's four bytes as zeros.
fn check_crc(header: &[u8], offset: usize) -> Result<(), ProxyError> {
    let sent = u32::from_be_bytes([
        header[offset],
        header[offset + 1],
        header[offset + 2],
        header[offset + 3],
    ]);
    let mut copy = header.to_vec();
    copy[offset..offset + 4].fill(0);
    if crc32c(&copy) == sent {
        Ok(())
    } else {
        Err(ProxyError::Malformed("v2: CRC32C mismatch"))
    }
}

/// CRC-32C (Castagnoli), bitwise: run once per header that carries one.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
