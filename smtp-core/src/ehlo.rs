//! The EHLO (and LHLO) reply: what a server announces it supports
//! (RFC 5321 §4.1.1.1), read by clients with [`Capabilities::from_reply`] and
//! written by servers with [`Capabilities::to_reply`].
//!
//! ```
//! use smtp_core::ehlo::{AuthMechanism, Capabilities};
//!
//! let caps = Capabilities {
//!     domain: "mx.example.com".to_string(),
//!     pipelining: true,
//!     auth: vec![AuthMechanism::Plain],
//!     ..Capabilities::default()
//! };
//! assert_eq!(
//!     caps.to_reply().to_bytes(),
//!     b"250-mx.example.com\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"
//! );
//! ```

use std::fmt;

use crate::reply::{Reply, ReplyCode};

/// A SASL mechanism named in AUTH (RFC 4954).
///
/// ```
/// use smtp_core::ehlo::AuthMechanism;
///
/// assert_eq!(AuthMechanism::parse("plain"), AuthMechanism::Plain);
/// assert_eq!(AuthMechanism::parse("cram-md5"), AuthMechanism::Other("CRAM-MD5".to_string()));
/// assert_eq!(AuthMechanism::XOAuth2.name(), "XOAUTH2");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum AuthMechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN (non-standard but widely deployed).
    Login,
    /// XOAUTH2 (Google and Microsoft OAuth 2.0 bearer tokens).
    XOAuth2,
    /// Any other mechanism, by its upper-cased name.
    Other(String),
}

impl AuthMechanism {
    /// The mechanism called `name`, compared case-insensitively (SASL
    /// mechanism names are case-insensitive on the wire).
    pub fn parse(name: &str) -> AuthMechanism {
        // The known names are compared in place; only an unknown one is copied.
        if name.eq_ignore_ascii_case("PLAIN") {
            AuthMechanism::Plain
        } else if name.eq_ignore_ascii_case("LOGIN") {
            AuthMechanism::Login
        } else if name.eq_ignore_ascii_case("XOAUTH2") {
            AuthMechanism::XOAuth2
        } else {
            AuthMechanism::Other(name.to_ascii_uppercase())
        }
    }

    /// The name as written in AUTH: `"PLAIN"`, `"LOGIN"`, `"XOAUTH2"`, or the
    /// name held by `Other`.
    pub fn name(&self) -> &str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
            AuthMechanism::XOAuth2 => "XOAUTH2",
            AuthMechanism::Other(name) => name,
        }
    }
}

impl fmt::Display for AuthMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a server announces in its EHLO reply.
///
/// ```
/// use smtp_core::ehlo::{AuthMechanism, Capabilities};
/// use smtp_core::reply::{Reply, ReplyCode};
///
/// let reply = Reply::with_lines(
///     ReplyCode::OK,
///     None,
///     vec![
///         "mx.example.com Hello".to_string(),
///         "SIZE 10240000".to_string(),
///         "AUTH PLAIN LOGIN".to_string(),
///         "VRFY".to_string(),
///     ],
/// );
/// let caps = Capabilities::from_reply(&reply);
/// assert_eq!(caps.domain, "mx.example.com");
/// assert_eq!(caps.greeting, "Hello");
/// assert_eq!(caps.size, Some(10_240_000));
/// assert!(caps.supports_auth(&AuthMechanism::Login));
/// assert!(caps.has("vrfy"));
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Capabilities {
    /// The server's name: the first word of the first line.
    pub domain: String,
    /// The rest of the first line after the domain and one space; may be empty.
    pub greeting: String,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870): `Some(n)` when announced, where `Some(0)` means
    /// announced without a fixed limit.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// BINARYMIME (RFC 3030).
    pub binary_mime: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// AUTH mechanisms (RFC 4954), in announced order, without duplicates.
    pub auth: Vec<AuthMechanism>,
    /// Other keywords (upper-cased) with their parameters as announced (`""`
    /// when none), in order.
    pub other: Vec<(String, String)>,
}

impl Capabilities {
    /// Reads an EHLO (or LHLO) reply. Keywords are case-insensitive; the old
    /// form `AUTH=PLAIN LOGIN` also counts as AUTH; a SIZE whose argument is
    /// missing or not a number gives `Some(0)`. Never fails: what it does not
    /// know goes to `other`.
    ///
    /// The reply code is not looked at; check that the reply is a 250 before
    /// trusting what it announces.
    pub fn from_reply(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        let mut lines = reply.lines().iter();
        if let Some(first) = lines.next() {
            let (domain, greeting) = first.split_once(' ').unwrap_or((first, ""));
            caps.domain = domain.to_string();
            caps.greeting = greeting.to_string();
        }
        for line in lines {
            caps.read_line(line.trim_ascii());
        }
        caps
    }

    /// Records one capability line (already trimmed).
    fn read_line(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        let (word, params) = match line.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((word, params)) => (word, params.trim_ascii()),
            None => (line, ""),
        };
        let keyword = word.to_ascii_uppercase();
        // Old servers (and Outlook-era clients that expect it) announce
        // "AUTH=PLAIN LOGIN" next to or instead of "AUTH PLAIN LOGIN".
        if let Some(first_mechanism) = keyword.strip_prefix("AUTH=") {
            self.add_auth(first_mechanism);
            self.add_auth(params);
            return;
        }
        match keyword.as_str() {
            "PIPELINING" => self.pipelining = true,
            "SIZE" => {
                // RFC 1870: the number is optional, and 0 means no fixed limit.
                // Anything unreadable is treated as "no known limit".
                let size = params
                    .split_ascii_whitespace()
                    .next()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                self.size = Some(size);
            }
            "8BITMIME" => self.eight_bit_mime = true,
            "SMTPUTF8" => self.smtputf8 = true,
            "ENHANCEDSTATUSCODES" => self.enhanced_status_codes = true,
            "CHUNKING" => self.chunking = true,
            "BINARYMIME" => self.binary_mime = true,
            "DSN" => self.dsn = true,
            "STARTTLS" => self.starttls = true,
            "AUTH" => self.add_auth(params),
            _ => self.other.push((keyword, params.to_string())),
        }
    }

    /// Adds the space-separated mechanisms in `names`, skipping ones already
    /// known (servers often announce both AUTH forms with the same list).
    fn add_auth(&mut self, names: &str) {
        for name in names.split_ascii_whitespace() {
            let mechanism = AuthMechanism::parse(name);
            if !self.auth.contains(&mechanism) {
                self.auth.push(mechanism);
            }
        }
    }

    /// The reply a server sends: code 250 without an enhanced code (RFC 2034
    /// exempts EHLO); first line `"domain greeting"` (just `"domain"` when
    /// the greeting is empty), then one line per capability: PIPELINING,
    /// SIZE (`"SIZE n"`, or `"SIZE"` alone for `Some(0)` as RFC 1870 allows),
    /// 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, BINARYMIME, DSN,
    /// STARTTLS, AUTH with its mechanisms, then the `other` lines in order.
    pub fn to_reply(&self) -> Reply {
        let mut lines = Vec::new();
        lines.push(if self.greeting.is_empty() {
            self.domain.clone()
        } else {
            format!("{} {}", self.domain, self.greeting)
        });
        if self.pipelining {
            lines.push("PIPELINING".to_string());
        }
        match self.size {
            Some(0) => lines.push("SIZE".to_string()),
            Some(n) => lines.push(format!("SIZE {n}")),
            None => {}
        }
        let flags = [
            (self.eight_bit_mime, "8BITMIME"),
            (self.smtputf8, "SMTPUTF8"),
            (self.enhanced_status_codes, "ENHANCEDSTATUSCODES"),
            (self.chunking, "CHUNKING"),
            (self.binary_mime, "BINARYMIME"),
            (self.dsn, "DSN"),
            (self.starttls, "STARTTLS"),
        ];
        for (on, keyword) in flags {
            if on {
                lines.push(keyword.to_string());
            }
        }
        if !self.auth.is_empty() {
            let mut line = String::from("AUTH");
            for mechanism in &self.auth {
                line.push(' ');
                line.push_str(mechanism.name());
            }
            lines.push(line);
        }
        for (keyword, params) in &self.other {
            lines.push(if params.is_empty() {
                keyword.clone()
            } else {
                format!("{keyword} {params}")
            });
        }
        Reply::with_lines(ReplyCode::OK, None, lines)
    }

    /// True if `mechanism` is among the announced AUTH mechanisms (names are
    /// compared case-insensitively).
    pub fn supports_auth(&self, mechanism: &AuthMechanism) -> bool {
        self.auth
            .iter()
            .any(|m| m.name().eq_ignore_ascii_case(mechanism.name()))
    }

    /// Case-insensitive: is this keyword announced, built-in or other?
    ///
    /// ```
    /// use smtp_core::ehlo::Capabilities;
    ///
    /// let caps = Capabilities { starttls: true, ..Capabilities::default() };
    /// assert!(caps.has("StartTLS"));
    /// assert!(!caps.has("PIPELINING"));
    /// ```
    pub fn has(&self, keyword: &str) -> bool {
        match keyword.to_ascii_uppercase().as_str() {
            "PIPELINING" => self.pipelining,
            "SIZE" => self.size.is_some(),
            "8BITMIME" => self.eight_bit_mime,
            "SMTPUTF8" => self.smtputf8,
            "ENHANCEDSTATUSCODES" => self.enhanced_status_codes,
            "CHUNKING" => self.chunking,
            "BINARYMIME" => self.binary_mime,
            "DSN" => self.dsn,
            "STARTTLS" => self.starttls,
            "AUTH" => !self.auth.is_empty(),
            upper => self
                .other
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(upper)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{EnhancedCode, ReplyLimits, ReplyParser};
    use proptest::prelude::*;

    /// Reads one reply from wire bytes, as a client would.
    fn read(wire: &[u8]) -> Reply {
        let (consumed, reply) = ReplyParser::new(ReplyLimits::default()).feed(wire).unwrap();
        assert_eq!(consumed, wire.len());
        reply.unwrap()
    }

    fn caps_of(lines: &[&str]) -> Capabilities {
        let lines = lines.iter().map(ToString::to_string).collect();
        Capabilities::from_reply(&Reply::with_lines(ReplyCode::OK, None, lines))
    }

    fn other(keyword: &str, params: &str) -> (String, String) {
        (keyword.to_string(), params.to_string())
    }

    #[test]
    fn postfix_ehlo_reply() {
        let wire = b"250-mail.example.com\r\n\
            250-PIPELINING\r\n\
            250-SIZE 10240000\r\n\
            250-VRFY\r\n\
            250-ETRN\r\n\
            250-STARTTLS\r\n\
            250-AUTH PLAIN LOGIN\r\n\
            250-AUTH=PLAIN LOGIN\r\n\
            250-ENHANCEDSTATUSCODES\r\n\
            250-8BITMIME\r\n\
            250-DSN\r\n\
            250-SMTPUTF8\r\n\
            250 CHUNKING\r\n";
        let caps = Capabilities::from_reply(&read(wire));
        assert_eq!(
            caps,
            Capabilities {
                domain: "mail.example.com".to_string(),
                greeting: String::new(),
                pipelining: true,
                size: Some(10_240_000),
                eight_bit_mime: true,
                smtputf8: true,
                enhanced_status_codes: true,
                chunking: true,
                binary_mime: false,
                dsn: true,
                starttls: true,
                auth: vec![AuthMechanism::Plain, AuthMechanism::Login],
                other: vec![other("VRFY", ""), other("ETRN", "")],
            }
        );
        assert!(
            caps.has("vrfy") && caps.has("ETRN") && caps.has("auth") && !caps.has("BINARYMIME")
        );
    }

    #[test]
    fn exim_style_reply_with_greeting() {
        let wire = b"250-mx.example.org Hello client.example.net [192.0.2.1]\r\n\
            250-SIZE 52428800\r\n\
            250-8BITMIME\r\n\
            250-PIPELINING\r\n\
            250-AUTH CRAM-MD5 PLAIN XOAUTH2\r\n\
            250-CHUNKING\r\n\
            250-PRDR\r\n\
            250 HELP\r\n";
        let caps = Capabilities::from_reply(&read(wire));
        assert_eq!(caps.domain, "mx.example.org");
        assert_eq!(caps.greeting, "Hello client.example.net [192.0.2.1]");
        assert_eq!(caps.size, Some(52_428_800));
        assert_eq!(
            caps.auth,
            [
                AuthMechanism::Other("CRAM-MD5".to_string()),
                AuthMechanism::Plain,
                AuthMechanism::XOAuth2
            ]
        );
        assert_eq!(caps.other, [other("PRDR", ""), other("HELP", "")]);
        assert!(caps.chunking && caps.pipelining && caps.eight_bit_mime && !caps.starttls);
    }

    #[test]
    fn lowercase_keywords() {
        let caps = caps_of(&[
            "mx Hi",
            "pipelining",
            "Size 2048",
            "8bitmime",
            "smtputf8",
            "EnhancedStatusCodes",
            "chunking",
            "binarymime",
            "dsn",
            "starttls",
            "auth plain login xoauth2",
            "x-custom Some Params",
        ]);
        assert!(
            caps.pipelining && caps.eight_bit_mime && caps.smtputf8 && caps.enhanced_status_codes
        );
        assert!(caps.chunking && caps.binary_mime && caps.dsn && caps.starttls);
        assert_eq!(caps.size, Some(2048));
        assert_eq!(
            caps.auth,
            [
                AuthMechanism::Plain,
                AuthMechanism::Login,
                AuthMechanism::XOAuth2
            ]
        );
        // The keyword is upper-cased, the parameters are kept as announced.
        assert_eq!(caps.other, [other("X-CUSTOM", "Some Params")]);
    }

    #[test]
    fn auth_equals_form() {
        let caps = caps_of(&["mx", "AUTH=PLAIN LOGIN"]);
        assert_eq!(caps.auth, [AuthMechanism::Plain, AuthMechanism::Login]);
        assert!(caps.other.is_empty());
        assert!(caps.has("AUTH"));
        let caps = caps_of(&["mx", "auth=login"]);
        assert_eq!(caps.auth, [AuthMechanism::Login]);
        // Both forms, in either order, give each mechanism once in first-seen order.
        let caps = caps_of(&[
            "mx",
            "AUTH=LOGIN",
            "AUTH PLAIN LOGIN CRAM-MD5",
            "AUTH plain",
        ]);
        assert_eq!(
            caps.auth,
            [
                AuthMechanism::Login,
                AuthMechanism::Plain,
                AuthMechanism::Other("CRAM-MD5".to_string())
            ]
        );
        // No mechanisms at all: nothing to record.
        let caps = caps_of(&["mx", "AUTH=", "AUTH"]);
        assert!(caps.auth.is_empty());
        assert!(!caps.has("AUTH"));
    }

    #[test]
    fn unknown_keywords_go_to_other_in_order() {
        let caps = caps_of(&[
            "mx",
            "VRFY",
            "XCLIENT NAME ADDR PORT",
            "ETRN",
            "deliverby 3600",
            "VRFY",
        ]);
        assert_eq!(
            caps.other,
            [
                other("VRFY", ""),
                other("XCLIENT", "NAME ADDR PORT"),
                other("ETRN", ""),
                other("DELIVERBY", "3600"),
                other("VRFY", ""),
            ]
        );
        assert!(caps.has("xclient") && caps.has("DeliverBy"));
        assert!(!caps.has("XFORWARD"));
    }

    #[test]
    fn size_forms() {
        assert_eq!(caps_of(&["mx"]).size, None);
        assert_eq!(caps_of(&["mx", "SIZE"]).size, Some(0));
        assert_eq!(caps_of(&["mx", "SIZE 0"]).size, Some(0));
        assert_eq!(caps_of(&["mx", "SIZE 1000"]).size, Some(1000));
        assert_eq!(caps_of(&["mx", "SIZE   1000  "]).size, Some(1000));
        assert_eq!(caps_of(&["mx", "SIZE 1000 extra"]).size, Some(1000));
        assert_eq!(
            caps_of(&["mx", "SIZE 18446744073709551615"]).size,
            Some(u64::MAX)
        );
        for bad in [
            "SIZE abc",
            "SIZE -5",
            "SIZE +5",
            "SIZE 1e6",
            "SIZE 18446744073709551616",
            "SIZE 10MB",
        ] {
            assert_eq!(caps_of(&["mx", bad]).size, Some(0), "{bad}");
        }
        assert!(caps_of(&["mx", "SIZE"]).has("size"));
        assert!(!caps_of(&["mx"]).has("SIZE"));
    }

    #[test]
    fn first_line_forms() {
        let caps = caps_of(&["mx.example.com"]);
        assert_eq!(
            (caps.domain.as_str(), caps.greeting.as_str()),
            ("mx.example.com", "")
        );
        let caps = caps_of(&["mx.example.com greets you"]);
        assert_eq!(
            (caps.domain.as_str(), caps.greeting.as_str()),
            ("mx.example.com", "greets you")
        );
        let caps = caps_of(&[""]);
        assert_eq!(caps, Capabilities::default());
        let caps = Capabilities::from_reply(&Reply::with_lines(ReplyCode::OK, None, Vec::new()));
        assert_eq!(caps, Capabilities::default());
    }

    #[test]
    fn blank_lines_and_spacing_are_ignored() {
        let caps = caps_of(&["mx", "", "  PIPELINING  ", "\tSTARTTLS", "XFOO   a b  "]);
        assert!(caps.pipelining && caps.starttls);
        assert_eq!(caps.other, [other("XFOO", "a b")]);
    }

    #[test]
    fn builtin_keywords_ignore_parameters() {
        let caps = caps_of(&["mx", "PIPELINING yes", "STARTTLS now"]);
        assert!(caps.pipelining && caps.starttls);
        assert!(caps.other.is_empty());
    }

    #[test]
    fn reply_code_and_enhanced_code_are_not_consulted() {
        let reply = Reply::with_lines(
            ReplyCode::OK,
            Some(EnhancedCode::OK),
            vec!["mx".to_string(), "DSN".to_string()],
        );
        let caps = Capabilities::from_reply(&reply);
        assert_eq!(caps.domain, "mx");
        assert!(caps.dsn);
        let caps = Capabilities::from_reply(&read(b"250-2.0.0 mx hi\r\n250 2.0.0 DSN\r\n"));
        assert_eq!(
            (caps.domain.as_str(), caps.greeting.as_str(), caps.dsn),
            ("mx", "hi", true)
        );
    }

    #[test]
    fn to_reply_full() {
        let caps = Capabilities {
            domain: "mx.example.com".to_string(),
            greeting: "ESMTP ready".to_string(),
            pipelining: true,
            size: Some(35_882_577),
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            chunking: true,
            binary_mime: true,
            dsn: true,
            starttls: true,
            auth: vec![
                AuthMechanism::Plain,
                AuthMechanism::Login,
                AuthMechanism::XOAuth2,
            ],
            other: vec![other("VRFY", ""), other("XCLIENT", "NAME ADDR")],
        };
        let reply = caps.to_reply();
        assert_eq!(reply.code(), ReplyCode::OK);
        assert_eq!(reply.enhanced(), None);
        assert_eq!(
            String::from_utf8(reply.to_bytes()).unwrap(),
            "250-mx.example.com ESMTP ready\r\n\
             250-PIPELINING\r\n\
             250-SIZE 35882577\r\n\
             250-8BITMIME\r\n\
             250-SMTPUTF8\r\n\
             250-ENHANCEDSTATUSCODES\r\n\
             250-CHUNKING\r\n\
             250-BINARYMIME\r\n\
             250-DSN\r\n\
             250-STARTTLS\r\n\
             250-AUTH PLAIN LOGIN XOAUTH2\r\n\
             250-VRFY\r\n\
             250 XCLIENT NAME ADDR\r\n"
        );
        assert_eq!(Capabilities::from_reply(&reply), caps);
    }

    #[test]
    fn to_reply_minimal_and_size_forms() {
        let mut caps = Capabilities {
            domain: "mx".to_string(),
            ..Capabilities::default()
        };
        assert_eq!(caps.to_reply().to_bytes(), b"250 mx\r\n");
        caps.size = Some(0);
        assert_eq!(caps.to_reply().to_bytes(), b"250-mx\r\n250 SIZE\r\n");
        caps.size = Some(1);
        assert_eq!(caps.to_reply().to_bytes(), b"250-mx\r\n250 SIZE 1\r\n");
        assert_eq!(Capabilities::default().to_reply().to_bytes(), b"250\r\n");
    }

    #[test]
    fn to_reply_cannot_inject_lines() {
        let caps = Capabilities {
            domain: "mx".to_string(),
            greeting: "hi\r\n250 AUTH PLAIN".to_string(),
            ..Capabilities::default()
        };
        let wire = caps.to_reply().to_bytes();
        assert_eq!(wire, b"250 mx hi  250 AUTH PLAIN\r\n");
        assert!(Capabilities::from_reply(&read(&wire)).auth.is_empty());
    }

    #[test]
    fn auth_mechanism_names() {
        for (mechanism, name) in [
            (AuthMechanism::Plain, "PLAIN"),
            (AuthMechanism::Login, "LOGIN"),
            (AuthMechanism::XOAuth2, "XOAUTH2"),
            (AuthMechanism::Other("CRAM-MD5".to_string()), "CRAM-MD5"),
        ] {
            assert_eq!(mechanism.name(), name);
            assert_eq!(mechanism.to_string(), name);
            assert_eq!(AuthMechanism::parse(name), mechanism);
            assert_eq!(AuthMechanism::parse(&name.to_lowercase()), mechanism);
        }
        assert_eq!(AuthMechanism::parse("xOAuth2"), AuthMechanism::XOAuth2);
        assert_eq!(
            AuthMechanism::parse("scram-sha-256"),
            AuthMechanism::Other("SCRAM-SHA-256".to_string())
        );
        assert_eq!(
            AuthMechanism::parse(""),
            AuthMechanism::Other(String::new())
        );
    }

    #[test]
    fn supports_auth_is_case_insensitive() {
        let caps = caps_of(&["mx", "AUTH PLAIN cram-md5"]);
        assert!(caps.supports_auth(&AuthMechanism::Plain));
        assert!(!caps.supports_auth(&AuthMechanism::Login));
        assert!(caps.supports_auth(&AuthMechanism::Other("CRAM-MD5".to_string())));
        // A hand-built Other with a lower-case or built-in name still matches.
        assert!(caps.supports_auth(&AuthMechanism::Other("cram-md5".to_string())));
        assert!(caps.supports_auth(&AuthMechanism::Other("plain".to_string())));
        assert!(!Capabilities::default().supports_auth(&AuthMechanism::Plain));
    }

    #[test]
    fn has_every_builtin() {
        let none = Capabilities::default();
        let all = caps_of(&[
            "mx",
            "PIPELINING",
            "SIZE",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "BINARYMIME",
            "DSN",
            "STARTTLS",
            "AUTH PLAIN",
        ]);
        for keyword in BUILT_IN {
            assert!(all.has(keyword), "{keyword}");
            assert!(all.has(&keyword.to_lowercase()), "{keyword}");
            assert!(!none.has(keyword), "{keyword}");
        }
        assert!(all.other.is_empty());
        assert!(!all.has("") && !all.has("VRFY"));
    }

    // Property tests.

    const BUILT_IN: [&str; 10] = [
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
        "STARTTLS",
        "AUTH",
    ];

    fn arb_mechanism() -> impl Strategy<Value = AuthMechanism> {
        prop_oneof![
            Just(AuthMechanism::Plain),
            Just(AuthMechanism::Login),
            Just(AuthMechanism::XOAuth2),
            "[A-Z0-9_-]{1,20}".prop_map(|name| AuthMechanism::parse(&name)),
        ]
    }

    /// Keywords as RFC 5321 spells them, other than the built-in ones.
    fn arb_other() -> impl Strategy<Value = (String, String)> {
        (
            "[A-Z0-9][A-Z0-9-]{0,15}"
                .prop_filter("built-in keyword", |k| !BUILT_IN.contains(&k.as_str())),
            // Parameters without leading or trailing white space.
            "([!-~]([ -~]{0,20}[!-~])?)?",
        )
    }

    prop_compose! {
        fn arb_capabilities()(
            domain in "[a-zA-Z][a-zA-Z0-9.-]{0,20}",
            greeting in "[^\r\n]{0,30}",
            flags in prop::array::uniform9(any::<bool>()),
            size in prop::option::of(any::<u64>()),
            auth in prop::collection::vec(arb_mechanism(), 0..5),
            other in prop::collection::vec(arb_other(), 0..5),
        ) -> Capabilities {
            let mut unique = Vec::new();
            for mechanism in auth {
                if !unique.contains(&mechanism) {
                    unique.push(mechanism);
                }
            }
            Capabilities {
                domain,
                greeting,
                pipelining: flags[0],
                size,
                eight_bit_mime: flags[1],
                smtputf8: flags[2],
                enhanced_status_codes: flags[3],
                chunking: flags[4],
                binary_mime: flags[5],
                dsn: flags[6],
                starttls: flags[7],
                auth: if flags[8] { unique } else { Vec::new() },
                other,
            }
        }
    }

    proptest! {
        #[test]
        fn capabilities_round_trip(caps in arb_capabilities()) {
            prop_assert_eq!(Capabilities::from_reply(&caps.to_reply()), caps);
        }

        #[test]
        fn capabilities_round_trip_over_the_wire(caps in arb_capabilities()) {
            let wire = caps.to_reply().to_bytes();
            prop_assert_eq!(Capabilities::from_reply(&read(&wire)), caps);
        }

        #[test]
        fn from_reply_never_panics(lines in prop::collection::vec("(?s).{0,40}", 0..8)) {
            let caps = Capabilities::from_reply(&Reply::with_lines(ReplyCode::OK, None, lines));
            for (keyword, _) in &caps.other {
                prop_assert!(!BUILT_IN.contains(&keyword.as_str()));
                prop_assert_eq!(keyword.to_ascii_uppercase(), keyword.clone());
            }
        }
    }
}
