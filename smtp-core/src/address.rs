//! Mailbox addresses and the reverse and forward paths of RFC 5321 §4.1.2.
//!
//! An [`Address`] keeps the exact text it was parsed from (a quoted local part stays quoted),
//! because a server must hand the embedder what the client sent, and a client must put on the
//! wire what its user gave. Validation is strict about the grammar and the length limits of
//! RFC 5321 §4.5.3.1 (64 octets of local part, 255 of domain, 256 of path), and accepts
//! internationalised addresses (RFC 6531) so that the SMTPUTF8 check can be made by whoever
//! knows whether the extension was requested.

use std::fmt;

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Longest domain, in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest path including its angle brackets, in octets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH_LEN: usize = 256;

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// There is no `@`, or nothing on one side of it.
    MissingAt,
    /// The local part breaks the dot-string or quoted-string grammar.
    InvalidLocalPart,
    /// The domain is neither a valid domain name nor an address literal.
    InvalidDomain,
    /// The local part is longer than 64 octets.
    LocalPartTooLong,
    /// The domain is longer than 255 octets.
    DomainTooLong,
    /// The whole path is longer than 256 octets.
    PathTooLong,
    /// The path is not enclosed in `<` and `>` or has text after the `>`.
    InvalidPath,
    /// A CR, LF or NUL byte: never allowed, it could inject a command.
    ControlCharacter,
}

impl AddressError {
    /// A short description fit for a reply text.
    pub fn description(self) -> &'static str {
        match self {
            AddressError::MissingAt => "address has no domain",
            AddressError::InvalidLocalPart => "invalid local part",
            AddressError::InvalidDomain => "invalid domain",
            AddressError::LocalPartTooLong => "local part too long",
            AddressError::DomainTooLong => "domain too long",
            AddressError::PathTooLong => "path too long",
            AddressError::InvalidPath => "invalid path syntax",
            AddressError::ControlCharacter => "control character in address",
        }
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for AddressError {}

/// A validated mailbox, `local-part@domain`, as it appears between the angle brackets.
///
/// ```
/// use smtp_core::address::Address;
/// let a = Address::parse("\"john doe\"@example.com").unwrap();
/// assert_eq!(a.local_part(), "\"john doe\"");
/// assert_eq!(a.domain(), "example.com");
/// assert!(Address::parse("bad\r\nRCPT TO:<x@y>").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    text: String,
    at: usize,
}

impl Address {
    /// Validates `text` as an RFC 5321 mailbox (with RFC 6531 UTF-8 allowed).
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let at = validate_mailbox(text)?;
        Ok(Address {
            text: text.to_owned(),
            at,
        })
    }

    /// Lenient mode for a client that sends addresses as its user gave them: like
    /// [`Address::parse`], but a local part without a domain (`postmaster`, `root`,
    /// `"john doe"`) is taken too, as smtplib sends it for local submission and LMTP.
    /// The local part still follows RFC 5321's dot-string or quoted-string grammar and its
    /// 64-octet limit, so CR, LF, NUL, spaces, `<`, `>` and anything else that could
    /// change the command line are refused as by [`Address::parse`]. Servers never use
    /// this: what they accept is [`Address::parse`]'s (and `<Postmaster>`).
    ///
    /// ```
    /// use smtp_core::address::{Address, AddressError};
    /// let local = Address::parse_allowing_bare_local_part("root").unwrap();
    /// assert_eq!((local.local_part(), local.domain()), ("root", ""));
    /// assert_eq!(Address::parse("root"), Err(AddressError::MissingAt));
    /// assert!(Address::parse_allowing_bare_local_part("root\r\nRSET").is_err());
    /// assert!(Address::parse_allowing_bare_local_part("a> SIZE=1").is_err());
    /// assert!(Address::parse_allowing_bare_local_part("a@").is_err());
    /// ```
    pub fn parse_allowing_bare_local_part(text: &str) -> Result<Address, AddressError> {
        match validate_mailbox(text) {
            Ok(at) => Ok(Address {
                text: text.to_owned(),
                at,
            }),
            Err(AddressError::MissingAt) if is_bare_local_part(text) => {
                if text.len() > MAX_LOCAL_PART_LEN {
                    return Err(AddressError::LocalPartTooLong);
                }
                Ok(Address {
                    text: text.to_owned(),
                    at: text.len(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// [`Address::parse`], holding the text in `spare`'s next string instead of a new one.
    fn parse_in(text: &str, spare: &mut SpareText) -> Result<Address, AddressError> {
        let at = validate_mailbox(text)?;
        Ok(Address::held(text, at, spare))
    }

    /// A mailbox already validated, its `@` at `at`, held in one of `spare`'s strings.
    fn held(text: &str, at: usize, spare: &mut SpareText) -> Address {
        let mut held = spare.take();
        held.push_str(text);
        Address { text: held, at }
    }

    /// The whole address.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The part before the `@`, quotes included when it was quoted (the whole text of a
    /// bare local part).
    pub fn local_part(&self) -> &str {
        &self.text[..self.at]
    }

    /// The part after the `@`: a domain name or an address literal such as `[192.0.2.1]`;
    /// empty for a bare local part ([`Address::parse_allowing_bare_local_part`]).
    pub fn domain(&self) -> &str {
        self.text.get(self.at + 1..).unwrap_or("")
    }

    /// True when the address is all ASCII; otherwise it needs SMTPUTF8.
    pub fn is_ascii(&self) -> bool {
        self.text.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:?})", self.text)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

/// The argument of MAIL FROM: a mailbox, or the null path `<>` used for bounces.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ReversePath {
    /// `<>`: the message is a notification and must never cause another one.
    Null,
    /// A sender mailbox.
    Mailbox(Address),
}

impl ReversePath {
    /// The address text, empty for the null path.
    pub fn as_str(&self) -> &str {
        match self {
            ReversePath::Null => "",
            ReversePath::Mailbox(a) => a.as_str(),
        }
    }

    /// True when the path is all ASCII.
    pub fn is_ascii(&self) -> bool {
        self.as_str().is_ascii()
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.as_str())
    }
}

/// The argument of RCPT TO: a mailbox, or the special `<Postmaster>` with no domain
/// (RFC 5321 §4.5.1: every server must accept it).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain, as written by the client.
    Postmaster(String),
    /// A recipient mailbox.
    Mailbox(Address),
}

impl ForwardPath {
    /// The address text.
    pub fn as_str(&self) -> &str {
        match self {
            ForwardPath::Postmaster(s) => s,
            ForwardPath::Mailbox(a) => a.as_str(),
        }
    }

    /// True when the path is all ASCII.
    pub fn is_ascii(&self) -> bool {
        self.as_str().is_ascii()
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.as_str())
    }
}

/// The strings of addresses no longer needed, kept to hold the next ones: a server parses
/// two or more addresses per message and drops them at its end, and taking a string kept
/// here costs less than allocating one. Bounded: a few strings, none longer than a path.
#[derive(Debug, Default)]
pub(crate) struct SpareText(Vec<String>);

impl SpareText {
    /// Strings kept at most.
    const KEPT: usize = 4;

    /// An empty string, one kept if there is one.
    fn take(&mut self) -> String {
        self.0.pop().unwrap_or_default()
    }

    /// Keeps the string of a path that is done with (emptied), if there is room.
    pub(crate) fn keep(&mut self, mut text: String) {
        if self.0.len() < Self::KEPT && text.capacity() <= MAX_PATH_LEN {
            text.clear();
            self.0.push(text);
        }
    }

    /// Keeps the string of a reverse path that is done with.
    pub(crate) fn keep_reverse(&mut self, path: ReversePath) {
        if let ReversePath::Mailbox(address) = path {
            self.keep(address.text);
        }
    }

    /// Keeps the string of a forward path that is done with.
    pub(crate) fn keep_forward(&mut self, path: ForwardPath) {
        match path {
            ForwardPath::Mailbox(address) => self.keep(address.text),
            ForwardPath::Postmaster(text) => self.keep(text),
        }
    }
}

/// Parses the text of a path after `FROM:`, such as `<a@b>`, `<>` or (liberally) `a@b`
/// without brackets. Returns the path and the rest of the input (the parameters). The
/// address is held in one of `spare`'s strings when it has one.
pub(crate) fn parse_reverse_path_in<'a>(
    input: &'a str,
    spare: &mut SpareText,
) -> Result<(ReversePath, &'a str), AddressError> {
    if let Some((inner, at, rest)) = simple_path(input) {
        return Ok((ReversePath::Mailbox(Address::held(inner, at, spare)), rest));
    }
    let (inner, rest) = split_path(input)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    Ok((
        ReversePath::Mailbox(Address::parse_in(strip_source_route(inner)?, spare)?),
        rest,
    ))
}

/// Parses the text of a path after `TO:`, as [`parse_reverse_path_in`] does.
pub(crate) fn parse_forward_path_in<'a>(
    input: &'a str,
    spare: &mut SpareText,
) -> Result<(ForwardPath, &'a str), AddressError> {
    if let Some((inner, at, rest)) = simple_path(input) {
        return Ok((ForwardPath::Mailbox(Address::held(inner, at, spare)), rest));
    }
    let (inner, rest) = split_path(input)?;
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok((ForwardPath::Postmaster(inner.to_owned()), rest));
    }
    if inner.is_empty() {
        return Err(AddressError::InvalidPath);
    }
    Ok((
        ForwardPath::Mailbox(Address::parse_in(strip_source_route(inner)?, spare)?),
        rest,
    ))
}

/// [`parse_reverse_path_in`] into a new string.
#[cfg(test)]
fn parse_reverse_path(input: &str) -> Result<(ReversePath, &str), AddressError> {
    parse_reverse_path_in(input, &mut SpareText::default())
}

/// [`parse_forward_path_in`] into a new string.
#[cfg(test)]
fn parse_forward_path(input: &str) -> Result<(ForwardPath, &str), AddressError> {
    parse_forward_path_in(input, &mut SpareText::default())
}

/// The common path, `<local@domain>` with a dot-string local part and a domain name,
/// read in one pass: its mailbox, the index of its `@` and the rest of the input (the
/// parameters). `None` for every other input (a quoted local part, an address literal, a
/// source route, no brackets, the null path, `<Postmaster>`, a trailing dot, an error),
/// which [`split_path`] and [`validate_mailbox`] then read; for the paths it takes, they
/// would give the same (the tests check that).
///
/// perf: finding the `>`, the `@`, the atoms and the labels in separate scans was most of
/// the cost of parsing MAIL and RCPT.
fn simple_path(input: &str) -> Option<(&str, usize, &str)> {
    let path = input.strip_prefix('<')?;
    let bytes = path.as_bytes();
    // The local part: atoms of atext separated by single dots, up to the `@`.
    let mut i = 0;
    let mut after_dot = true;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'@' {
            break;
        } else if b == b'.' {
            if after_dot {
                return None;
            }
            after_dot = true;
        } else if CLASSES[b as usize] & ATEXT != 0 {
            after_dot = false;
        } else {
            return None;
        }
        i += 1;
    }
    if i == bytes.len() || after_dot {
        return None; // no `@`, an empty local part, or one ending with a dot
    }
    let at = i;
    // The domain: labels of letters, digits and inner hyphens, up to the `>`.
    i += 1;
    let mut label_start = i;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'>' || b == b'.' {
            if !is_label(&bytes[label_start..i]) {
                return None;
            }
            if b == b'>' {
                break;
            }
            label_start = i + 1;
        } else if CLASSES[b as usize] & LDH == 0 {
            return None;
        }
        i += 1;
    }
    let close = i;
    if close == bytes.len()
        || at > MAX_LOCAL_PART_LEN
        || close - at - 1 > MAX_DOMAIN_LEN
        || close + 2 > MAX_PATH_LEN
    {
        return None;
    }
    let (mailbox, after) = path.split_at(close);
    let rest = &after[1..];
    if !rest.is_empty() && rest.as_bytes()[0] != b' ' {
        return None;
    }
    Some((mailbox, at, rest))
}

/// Splits `<inner> rest` (or a bare `inner rest`, which many clients send) and enforces the
/// 256-octet path limit.
fn split_path(input: &str) -> Result<(&str, &str), AddressError> {
    if let Some(after) = input.strip_prefix('<') {
        let close = find_path_end(after).ok_or(AddressError::InvalidPath)?;
        if close + 2 > MAX_PATH_LEN {
            return Err(AddressError::PathTooLong);
        }
        let rest = &after[close + 1..];
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(AddressError::InvalidPath);
        }
        Ok((&after[..close], rest))
    } else {
        let end = input.find(' ').unwrap_or(input.len());
        let inner = &input[..end];
        if inner.is_empty() || inner.contains(['<', '>']) {
            return Err(AddressError::InvalidPath);
        }
        if inner.len() + 2 > MAX_PATH_LEN {
            return Err(AddressError::PathTooLong);
        }
        Ok((inner, &input[end..]))
    }
}

/// Finds the `>` that closes a path, skipping any inside a quoted local part or an
/// address literal (RFC 5321 allows both characters in each).
fn find_path_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    // perf: before the first quote or `[` nothing changes the state below, so the first
    // `>` ahead of both closes the path (the common case, one comparison loop).
    match bytes.iter().position(|&b| matches!(b, b'>' | b'"' | b'[')) {
        Some(i) if bytes[i] == b'>' => return Some(i),
        None => return None,
        Some(_) => {}
    }
    let mut i = 0;
    let mut quoted = false;
    let mut literal = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' if !literal => quoted = !quoted,
            b'[' if !quoted => literal = true,
            b']' if !quoted => literal = false,
            b'>' if !quoted && !literal => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// RFC 5321 §4.1.2 still allows `@relay1,@relay2:user@host`; §3.6.1 says to accept and
/// ignore the route, which is what this does.
fn strip_source_route(inner: &str) -> Result<&str, AddressError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(AddressError::InvalidPath)?;
    for hop in inner[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::InvalidPath)?;
        validate_domain(domain)?;
    }
    Ok(&inner[colon + 1..])
}

/// Validates a mailbox and returns the index of the `@` that separates its parts. A CR,
/// LF or NUL anywhere is [`AddressError::ControlCharacter`], whatever else is wrong.
fn validate_mailbox(text: &str) -> Result<usize, AddressError> {
    // perf: no valid mailbox holds CR, LF or NUL (atext, qtextSMTP, quoted pairs, domain
    // labels and address literals all exclude them), so the scan for them is only needed
    // to name the error of a refused one, not to accept a good one.
    validate_mailbox_grammar(text).map_err(|e| {
        if text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            AddressError::ControlCharacter
        } else {
            e
        }
    })
}

fn validate_mailbox_grammar(text: &str) -> Result<usize, AddressError> {
    let at = if text.starts_with('"') {
        let end = quoted_string_end(text).ok_or(AddressError::InvalidLocalPart)?;
        if text.as_bytes().get(end) != Some(&b'@') {
            return Err(if end == text.len() {
                AddressError::MissingAt
            } else {
                AddressError::InvalidLocalPart
            });
        }
        end
    } else {
        // A dot-string holds no `@`, so the first one separates (a literal may hold more).
        let at = text
            .bytes()
            .position(|b| b == b'@')
            .ok_or(AddressError::MissingAt)?;
        if !is_dot_string(&text[..at]) {
            return Err(if at == 0 {
                AddressError::MissingAt
            } else {
                AddressError::InvalidLocalPart
            });
        }
        at
    };
    if at > MAX_LOCAL_PART_LEN {
        return Err(AddressError::LocalPartTooLong);
    }
    let domain = &text[at + 1..];
    if domain.is_empty() {
        return Err(AddressError::MissingAt);
    }
    validate_domain(domain)?;
    Ok(at)
}

/// A local part alone, no `@` outside quotes: a dot-string, or one quoted string.
fn is_bare_local_part(text: &str) -> bool {
    if text.starts_with('"') {
        quoted_string_end(text) == Some(text.len())
    } else {
        is_dot_string(text)
    }
}

/// Returns the index just past the closing quote of a quoted string starting at 0.
fn quoted_string_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i + 1),
            // quoted-pairSMTP: backslash followed by any printable ASCII character.
            b'\\' => match bytes.get(i + 1) {
                Some(32..=126) => i += 2,
                _ => return None,
            },
            // qtextSMTP: printable ASCII but `"` and `\`, space included, or UTF-8.
            32..=126 | 0x80.. => i += 1,
            _ => return None,
        }
    }
    None
}

/// Character classes, looked up once per byte: addresses are parsed for every MAIL and
/// RCPT, so validation is a single table-driven pass rather than several scans.
const ATEXT: u8 = 1;
const LDH: u8 = 2;
const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            t[i] = ATEXT | LDH;
        }
        i += 1;
    }
    let specials = b"!#$%&'*+-/=?^_`{|}~";
    let mut j = 0;
    while j < specials.len() {
        t[specials[j] as usize] |= ATEXT;
        j += 1;
    }
    t[b'-' as usize] |= LDH;
    t
};

/// Dot-string: atoms of atext (RFC 6531 adds UTF-8) separated by single dots.
fn is_dot_string(s: &str) -> bool {
    let mut after_dot = true;
    for &b in s.as_bytes() {
        if b == b'.' {
            if after_dot {
                return false;
            }
            after_dot = true;
        } else if CLASSES[b as usize] & ATEXT != 0 {
            after_dot = false;
        } else {
            return false;
        }
    }
    !after_dot
}

pub(crate) fn validate_domain(domain: &str) -> Result<(), AddressError> {
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong);
    }
    if domain.starts_with('[') {
        return if is_address_literal(domain) {
            Ok(())
        } else {
            Err(AddressError::InvalidDomain)
        };
    }
    if is_domain_name(domain) {
        Ok(())
    } else {
        Err(AddressError::InvalidDomain)
    }
}

/// Letters, digits and inner hyphens per label; non-ASCII (U-labels) allowed for SMTPUTF8.
/// A trailing dot (a fully qualified name) is tolerated.
pub(crate) fn is_domain_name(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain).as_bytes();
    let mut label_start = 0;
    for (i, &b) in domain.iter().enumerate() {
        if b == b'.' {
            if !is_label(&domain[label_start..i]) {
                return false;
            }
            label_start = i + 1;
        } else if CLASSES[b as usize] & LDH == 0 {
            return false;
        }
    }
    is_label(&domain[label_start..])
}

/// A label of letters, digits and inner hyphens (its characters were checked already).
fn is_label(label: &[u8]) -> bool {
    !label.is_empty() && label.len() <= 63 && label[0] != b'-' && label[label.len() - 1] != b'-'
}

/// `[IPv4]`, `[IPv6:...]` or a general literal `[tag:content]` (RFC 5321 §4.1.3).
pub(crate) fn is_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if let Some(v6) = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
    {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if inner.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    match inner.split_once(':') {
        Some((tag, content)) => {
            is_domain_name(tag)
                && !tag.contains('.')
                && !content.is_empty()
                && content
                    .bytes()
                    .all(|b| (33..=126).contains(&b) && b != b'[' && b != b']' && b != b'\\')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the general reading says of a path: the mailbox, its `@` and the rest.
    fn general_path(input: &str) -> Option<(&str, usize, &str)> {
        let (inner, rest) = split_path(input).ok()?;
        let mailbox = strip_source_route(inner).ok()?;
        let at = validate_mailbox(mailbox).ok()?;
        Some((mailbox, at, rest))
    }

    #[test]
    fn the_simple_path_reads_as_the_general_one() {
        let long_local = format!("<{}@x.test>", "a".repeat(64));
        let too_long_local = format!("<{}@x.test>", "a".repeat(65));
        let long_label = format!("<a@{}.test>", "b".repeat(63));
        let too_long_label = format!("<a@{}.test>", "b".repeat(64));
        let long_path = format!("<{}@{}c>", "a".repeat(64), "b.".repeat(94));
        let too_long_path = format!("<{}@{}cc>", "a".repeat(64), "b.".repeat(94));
        for input in [
            "<a@x.test>",
            "<a@x.test> SIZE=10",
            "<a.b-c+d@x-y.test>",
            "<用户@例子.广告>",
            long_local.as_str(),
            long_label.as_str(),
            long_path.as_str(),
        ] {
            let simple = simple_path(input);
            assert!(simple.is_some(), "{input}");
            assert!(
                input.len() <= MAX_PATH_LEN || input.contains(' '),
                "{input}"
            );
            assert_eq!(simple, general_path(input), "{input}");
        }
        for input in [
            "<>",
            "<Postmaster>",
            "a@x.test",
            "<\"a b\"@x.test>",
            "<a@[192.0.2.1]>",
            "<@r.test:a@x.test>",
            "<a@x.test.>",
            "<a@x.test>junk",
            "<a..b@x.test>",
            "<.a@x.test>",
            "<a.@x.test>",
            "<a@-x.test>",
            "<a@x..test>",
            "<a@x.test",
            "<a@>",
            "<@>",
            too_long_local.as_str(),
            too_long_label.as_str(),
            too_long_path.as_str(),
        ] {
            assert_eq!(simple_path(input), None, "{input}");
        }
    }

    proptest::proptest! {
        /// Wherever the one-pass reading takes a path, the general one reads it alike.
        #[test]
        fn the_simple_path_never_disagrees(
            input in proptest::prop_oneof![
                "[<>@.a-c\\-\"\\[\\] :\r\n\u{e9}]{0,24}",
                "[a-c.\\-\"\u{e9}]{0,6}@[a-c.\\-\\[]{0,8}>",
            ],
            tail in "( [A-Z=0-9]{0,6})?",
        ) {
            let input = format!("<{input}{tail}");
            if let Some(simple) = simple_path(&input) {
                proptest::prop_assert_eq!(Some(simple), general_path(&input));
            }
        }
    }

    #[test]
    fn spare_strings_hold_addresses_alike_and_stay_bounded() {
        let mut spare = SpareText::default();
        for _ in 0..10 {
            spare.keep(String::with_capacity(32));
        }
        spare.keep(String::with_capacity(MAX_PATH_LEN + 1));
        assert_eq!(spare.0.len(), SpareText::KEPT);
        assert!(
            spare
                .0
                .iter()
                .all(|s| s.is_empty() && s.capacity() <= MAX_PATH_LEN)
        );
        for text in ["a@x.test", "\"j d\"@example.com", "用户@例子.广告"] {
            let held = Address::parse_in(text, &mut spare).unwrap();
            assert_eq!(held, Address::parse(text).unwrap());
            spare.keep(held.text);
        }
        // A refused address takes no string.
        let before = spare.0.len();
        assert_eq!(
            Address::parse_in("a b@x.test", &mut spare),
            Err(AddressError::InvalidLocalPart)
        );
        assert_eq!(spare.0.len(), before);
    }

    #[test]
    fn plain_addresses() {
        let a = Address::parse("user.name+tag@example.com").unwrap();
        assert_eq!(a.local_part(), "user.name+tag");
        assert_eq!(a.domain(), "example.com");
        assert!(a.is_ascii());
        assert_eq!(a.to_string(), "user.name+tag@example.com");
    }

    #[test]
    fn quoted_local_parts() {
        let a = Address::parse("\"a@b c\\\"d\"@example.com").unwrap();
        assert_eq!(a.local_part(), "\"a@b c\\\"d\"");
        assert_eq!(
            Address::parse("\"unterminated@example.com"),
            Err(AddressError::InvalidLocalPart)
        );
        assert_eq!(
            Address::parse("\"ok\"x@example.com"),
            Err(AddressError::InvalidLocalPart)
        );
        assert_eq!(Address::parse("\"ok\""), Err(AddressError::MissingAt));
    }

    #[test]
    fn address_literals() {
        assert!(Address::parse("root@[192.0.2.1]").is_ok());
        assert!(Address::parse("root@[IPv6:2001:db8::1]").is_ok());
        assert!(Address::parse("root@[x-tag:stuff]").is_ok());
        assert_eq!(
            Address::parse("root@[300.1.1.1]"),
            Err(AddressError::InvalidDomain)
        );
        assert_eq!(
            Address::parse("root@[IPv6:zz]"),
            Err(AddressError::InvalidDomain)
        );
    }

    #[test]
    fn utf8_addresses_are_valid_but_not_ascii() {
        let a = Address::parse("用户@例子.广告").unwrap();
        assert!(!a.is_ascii());
        assert!(Address::parse("jöran@bücher.example").is_ok());
    }

    #[test]
    fn bad_addresses() {
        assert_eq!(Address::parse("nobody"), Err(AddressError::MissingAt));
        assert_eq!(Address::parse("@example.com"), Err(AddressError::MissingAt));
        assert_eq!(Address::parse("a@"), Err(AddressError::MissingAt));
        assert_eq!(
            Address::parse("a..b@example.com"),
            Err(AddressError::InvalidLocalPart)
        );
        assert_eq!(
            Address::parse(".a@example.com"),
            Err(AddressError::InvalidLocalPart)
        );
        assert_eq!(
            Address::parse("a b@example.com"),
            Err(AddressError::InvalidLocalPart)
        );
        assert_eq!(
            Address::parse("a@-example.com"),
            Err(AddressError::InvalidDomain)
        );
        assert_eq!(
            Address::parse("a@exa_mple.com"),
            Err(AddressError::InvalidDomain)
        );
        assert_eq!(
            Address::parse("a@b\r\nRSET"),
            Err(AddressError::ControlCharacter)
        );
        assert_eq!(Address::parse("a\0@b"), Err(AddressError::ControlCharacter));
        assert_eq!(Address::parse("a@b\n"), Err(AddressError::ControlCharacter));
    }

    #[test]
    fn length_limits() {
        let local64 = "a".repeat(64);
        assert!(Address::parse(&format!("{local64}@example.com")).is_ok());
        assert_eq!(
            Address::parse(&format!("a{local64}@example.com")),
            Err(AddressError::LocalPartTooLong)
        );
        let label = "b".repeat(63);
        let domain255 = format!("{label}.{label}.{label}.{}", "c".repeat(63));
        assert_eq!(domain255.len(), 255);
        assert!(Address::parse(&format!("a@{domain255}")).is_ok());
        assert_eq!(
            Address::parse(&format!("a@{domain255}x")),
            Err(AddressError::DomainTooLong)
        );
        // The path limit counts the brackets too.
        let ok = format!("<{}@{}>", "a".repeat(64), domain255.get(..189).unwrap());
        assert_eq!(ok.len(), 256);
        assert!(parse_reverse_path(&ok).is_ok());
        let too_long = format!("<{}@{}x>", "a".repeat(64), domain255.get(..189).unwrap());
        assert_eq!(
            parse_reverse_path(&too_long).unwrap_err(),
            AddressError::PathTooLong
        );
    }

    #[test]
    fn paths() {
        assert_eq!(parse_reverse_path("<>").unwrap(), (ReversePath::Null, ""));
        let (p, rest) = parse_reverse_path("<a@b.c> SIZE=10").unwrap();
        assert_eq!(p.as_str(), "a@b.c");
        assert_eq!(rest, " SIZE=10");
        let (p, _) = parse_reverse_path("a@b.c").unwrap();
        assert_eq!(p.to_string(), "<a@b.c>");
        let (p, _) = parse_reverse_path("<@relay.example,@r2.example:a@b.c>").unwrap();
        assert_eq!(p.as_str(), "a@b.c");
        let (p, _) = parse_reverse_path("<\"x>y\"@b.c>").unwrap();
        assert_eq!(p.as_str(), "\"x>y\"@b.c");
        assert_eq!(
            parse_reverse_path("<a@b.c").unwrap_err(),
            AddressError::InvalidPath
        );
        assert_eq!(
            parse_reverse_path("<a@b.c>junk").unwrap_err(),
            AddressError::InvalidPath
        );
        assert_eq!(
            parse_forward_path("<>").unwrap_err(),
            AddressError::InvalidPath
        );
        let (p, _) = parse_forward_path("<Postmaster>").unwrap();
        assert_eq!(p, ForwardPath::Postmaster("Postmaster".into()));
        let (p, _) = parse_forward_path("<postmaster@example.com>").unwrap();
        assert!(matches!(p, ForwardPath::Mailbox(_)));
    }

    #[test]
    fn bare_local_parts_only_in_lenient_mode() {
        for local in [
            "root",
            "postmaster",
            "first.last",
            "\"john doe\"",
            "\"a@b\"",
        ] {
            assert_eq!(
                Address::parse(local),
                Err(AddressError::MissingAt),
                "{local}"
            );
            let a = Address::parse_allowing_bare_local_part(local).unwrap();
            assert_eq!((a.as_str(), a.local_part(), a.domain()), (local, local, ""));
        }
        // A whole mailbox is the same in both modes.
        let a = Address::parse_allowing_bare_local_part("a@example.com").unwrap();
        assert_eq!(a, Address::parse("a@example.com").unwrap());
        // Injection and bad syntax stay refused.
        for (bad, why) in [
            ("root\r\nRSET", AddressError::ControlCharacter),
            ("root\0", AddressError::ControlCharacter),
            ("ro\not", AddressError::ControlCharacter),
            ("a b", AddressError::MissingAt),
            ("a>", AddressError::MissingAt),
            ("<a>", AddressError::MissingAt),
            ("a.", AddressError::MissingAt),
            ("", AddressError::MissingAt),
            ("a@", AddressError::MissingAt),
            ("@b.c", AddressError::MissingAt),
        ] {
            assert_eq!(
                Address::parse_allowing_bare_local_part(bad),
                Err(why),
                "{bad:?}"
            );
        }
        let long = "a".repeat(MAX_LOCAL_PART_LEN + 1);
        assert_eq!(
            Address::parse_allowing_bare_local_part(&long),
            Err(AddressError::LocalPartTooLong)
        );
    }

    proptest::proptest! {
        /// A CR, LF or NUL put anywhere into a mailbox, valid or not, refuses it as a
        /// control character (the grammar is checked first, the scan for these only names
        /// the error, so this holds only because no valid mailbox can hold one).
        #[test]
        fn a_control_character_anywhere_is_named(
            text in proptest::prop_oneof![
                proptest::strategy::Just("user.name+tag@example.com"),
                proptest::strategy::Just("\"john doe\"@[192.0.2.1]"),
                proptest::strategy::Just("a@[IPv6:2001:db8::1]"),
                proptest::strategy::Just("b@[tag:content]"),
                proptest::strategy::Just("\"q\\\"x\"@x.test."),
                proptest::strategy::Just("no-at-sign"),
                proptest::strategy::Just("bad..dots@x.test"),
            ],
            control in proptest::sample::select(vec![b'\r', b'\n', 0u8]),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            replace in proptest::prelude::any::<bool>(),
        ) {
            // The first five are valid as they are.
            let valid = !text.contains("no-at") && !text.contains("..");
            proptest::prop_assert_eq!(Address::parse(text).is_ok(), valid);
            let mut bytes = text.as_bytes().to_vec();
            let at = at.index(bytes.len() + 1);
            if replace && at < bytes.len() {
                bytes[at] = control;
            } else {
                bytes.insert(at, control);
            }
            let text = String::from_utf8(bytes).expect("ASCII");
            proptest::prop_assert_eq!(Address::parse(&text), Err(AddressError::ControlCharacter));
        }
    }
}
