//! SMTP AUTH (RFC 4954): the SASL mechanisms PLAIN (RFC 4616), LOGIN and, on the client side,
//! XOAUTH2, with secrets that never show up in logs.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use crate::ehlo::AuthMechanism;

/// A password or token. Its `Debug` form is redacted so that it cannot leak through logs
/// or error messages, and its memory is overwritten when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself; call this only where the secret must be used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `other` in time that depends only on the lengths, so that a password
    /// check does not tell an attacker how many leading bytes were right.
    pub fn constant_time_eq(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocation goes back to the allocator.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        for b in bytes.iter_mut() {
            // black_box keeps the compiler from removing the wipe as a dead store.
            *b = std::hint::black_box(0);
        }
    }
}

/// What a client authenticates with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password, sent with PLAIN or LOGIN (whichever the server offers,
    /// PLAIN first).
    Password {
        /// The user name (authentication identity).
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth 2 bearer token sent with XOAUTH2, as Gmail and Microsoft 365 expect.
    OAuth2 {
        /// The mailbox the token was issued for.
        username: String,
        /// The access token.
        token: Secret,
    },
}

impl Credentials {
    /// User name and password credentials.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials::Password {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// XOAUTH2 credentials.
    pub fn oauth2(username: impl Into<String>, token: impl Into<String>) -> Credentials {
        Credentials::OAuth2 {
            username: username.into(),
            token: Secret::new(token),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        match self {
            Credentials::Password { username, .. } | Credentials::OAuth2 { username, .. } => {
                username
            }
        }
    }

    /// True when a field contains CR, LF or NUL, which the SASL encodings cannot carry
    /// safely (NUL is PLAIN's separator).
    pub(crate) fn has_control_characters(&self) -> bool {
        let bad = |s: &str| s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        match self {
            Credentials::Password { username, password } => bad(username) || bad(password.expose()),
            Credentials::OAuth2 { username, token } => {
                bad(username) || bad(token.expose()) || token.expose().contains('\x01')
            }
        }
    }
}

/// The credentials a client presented to a server, decoded from the SASL exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthAttempt {
    /// The mechanism used.
    pub mechanism: AuthMechanism,
    /// The authorization identity (PLAIN's first field); empty when the client acts as itself.
    pub authorization_id: String,
    /// The authentication identity (user name).
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// Base64 of `bytes`, as SASL carries it.
pub(crate) fn encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Decodes a SASL response line; `=` stands for an empty response (RFC 4954 §4).
pub(crate) fn decode(line: &str) -> Option<Vec<u8>> {
    if line == "=" {
        return Some(Vec::new());
    }
    BASE64.decode(line.trim_end()).ok()
}

/// PLAIN's message: `authzid NUL authcid NUL passwd`.
pub(crate) fn plain_response(username: &str, password: &str) -> String {
    let mut raw = Vec::with_capacity(username.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    let encoded = encode(&raw);
    raw.fill(0);
    encoded
}

/// Splits a decoded PLAIN message into its three fields. Exactly two NULs: RFC 4616 §2
/// forbids NUL in every field, so a third one (which would otherwise end up inside the
/// password) makes the message malformed.
pub(crate) fn parse_plain(decoded: &[u8]) -> Option<(String, String, Secret)> {
    let mut parts = decoded.split(|&b| b == 0);
    let authzid = std::str::from_utf8(parts.next()?).ok()?;
    let authcid = std::str::from_utf8(parts.next()?).ok()?;
    let passwd = std::str::from_utf8(parts.next()?).ok()?;
    if authcid.is_empty() || parts.next().is_some() {
        return None;
    }
    Some((authzid.to_owned(), authcid.to_owned(), Secret::new(passwd)))
}

/// XOAUTH2's message: `user=U ^A auth=Bearer T ^A ^A`.
pub(crate) fn xoauth2_response(username: &str, token: &str) -> String {
    encode(format!("user={username}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let c = Credentials::password("alice", "hunter2");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"));
    }

    #[test]
    fn constant_time_compare() {
        let s = Secret::new("hunter2");
        assert!(s.constant_time_eq("hunter2"));
        assert!(!s.constant_time_eq("hunter3"));
        assert!(!s.constant_time_eq("hunter"));
        assert!(!s.constant_time_eq("hunter22"));
        assert!(!s.constant_time_eq(""));
        assert!(Secret::new("").constant_time_eq(""));
    }

    #[test]
    fn plain_round_trip() {
        let encoded = plain_response("alice", "pw");
        assert_eq!(encoded, "AGFsaWNlAHB3");
        let (authz, user, pass) = parse_plain(&decode(&encoded).unwrap()).unwrap();
        assert_eq!(
            (authz.as_str(), user.as_str(), pass.expose()),
            ("", "alice", "pw")
        );
        assert!(parse_plain(b"no-nul").is_none());
        assert!(parse_plain(b"\0\0pw").is_none());
        // Found by the `sasl` fuzz target: a NUL in a field shifted the rest into the
        // password, and the message was accepted as "admin" / "bo" / "\0\0b\0s3cret".
        assert!(parse_plain(b"admin\0bo\0\0\0b\0s3cret").is_none());
        assert!(parse_plain(b"\0alice\0pw\0").is_none());
        assert!(
            parse_plain(b"\0alice\0").is_some(),
            "an empty password is for the hook"
        );
    }

    #[test]
    fn xoauth2_format() {
        let raw = decode(&xoauth2_response("a@b.c", "tok")).unwrap();
        assert_eq!(raw, b"user=a@b.c\x01auth=Bearer tok\x01\x01");
    }

    #[test]
    fn decode_empty_and_bad() {
        assert_eq!(decode("="), Some(vec![]));
        assert_eq!(decode("!!!"), None);
    }

    #[test]
    fn control_characters_detected() {
        assert!(Credentials::password("a\r\n", "b").has_control_characters());
        assert!(Credentials::password("a", "b\0c").has_control_characters());
        assert!(Credentials::oauth2("a", "t\x01").has_control_characters());
        assert!(!Credentials::password("a", "b").has_control_characters());
    }
}
