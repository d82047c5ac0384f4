//! Result codes returned by fallible functions, and their messages.

use std::ffi::{CStr, c_char};

use crate::panic::{PanicDefault, ffi_panic_boundary};

/// The outcome of a fallible smtpx call.
///
/// Values are grouped in ranges and a value is never reused for another meaning:
/// 0 is success; 1xx are argument and usage errors made by the caller; 2xx are SMTP
/// protocol failures (the server refused or misbehaved); 3xx are I/O failures (network,
/// timeouts, files, the caller's message source); 4xx are TLS and authentication
/// failures; 9xx are internal errors (bugs in smtpx). The type is 32 bits wide in every
/// language mode. Where a call failed on an object that keeps error details (a client,
/// client options, a server configuration), the object's `*_last_error` function gives
/// the full message.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum smtpx_result {
    /// Success.
    Ok = 0,
    /// A pointer argument that must not be NULL was NULL.
    NullParameter = 100,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 101,
    /// An argument was out of range or malformed (for example a string containing CR,
    /// LF or NUL where a single protocol token is expected).
    InvalidArgument = 102,
    /// The caller's output buffer was too small, or NULL: nothing was written to it, and
    /// the size it needs (including the terminating NUL) was written to `*out_n`. Pass a
    /// NULL buffer to ask for the size, allocate it, and call again.
    BufferTooSmall = 103,
    /// A string argument contained CR or LF, which would inject protocol lines; nothing
    /// was sent.
    Injection = 104,
    /// The call does not fit the object's state: for example the client is closed (after
    /// QUIT or an error that ended the connection), or the server is stopped.
    NotReady = 105,
    /// The call was made from inside a callback of the object it acts on and would wait
    /// for that very callback to return (for example `smtpx_server_stop` from a server's
    /// handler or log callback): nothing was done.
    Reentrant = 106,
    /// The server sent something that is not a valid reply, or a reply nobody asked for.
    Protocol = 200,
    /// The server refused the connection in its greeting (see the client's last error).
    Greeting = 201,
    /// The server refused EHLO and then HELO (or LHLO).
    Hello = 202,
    /// The server closed the session with 421.
    ServerClosed = 203,
    /// The message is larger than the server's SIZE limit; nothing was sent.
    MessageTooLarge = 204,
    /// An address needs SMTPUTF8, which the server does not offer; nothing was sent.
    SmtpUtf8Unsupported = 205,
    /// The server refused the sender (MAIL FROM): nothing was delivered, the reply is
    /// the client's `smtpx_client_last_error_reply`, and the connection stays usable.
    SenderRefused = 206,
    /// The network failed: name resolution, connection refused or reset, a closed
    /// socket; or a file or socket of the server could not be opened.
    Io = 300,
    /// Connecting, a handshake, a write or a reply took too long.
    Timeout = 301,
    /// The connection ended while a reply was expected.
    ConnectionClosed = 302,
    /// The caller's message source (a read callback) failed part-way; the connection was
    /// closed so that a truncated message is never delivered.
    MessageSource = 303,
    /// TLS failed: the configuration (certificates, keys, CA file) could not be used. A
    /// handshake that failed has one of the codes below (403 to 406).
    Tls = 400,
    /// STARTTLS is required but the server does not offer it; nothing else was sent.
    StartTlsUnavailable = 401,
    /// The server refused STARTTLS.
    StartTlsRefused = 402,
    /// The peer's certificate does not chain to a trusted root (self-signed, a private CA
    /// that was not configured, a missing intermediate certificate).
    TlsUnknownIssuer = 403,
    /// The peer's certificate is valid, but not for the name that was asked for.
    TlsNameMismatch = 404,
    /// The peer's certificate has expired (or is not valid yet).
    TlsExpired = 405,
    /// The TLS handshake failed otherwise: no protocol version or cipher in common, a
    /// certificate refused for another reason, an alert from the peer (such as a server
    /// that wanted a client certificate), a peer that closed the connection.
    TlsHandshake = 406,
    /// No authentication mechanism that both sides support (the server may offer AUTH
    /// only after TLS).
    AuthUnsupported = 410,
    /// The server refused the credentials.
    AuthFailed = 411,
    /// Authentication was asked for on a connection without TLS, which the options do
    /// not allow (`smtpx_client_options_set_allow_insecure_auth`); no credential was sent.
    InsecureAuth = 412,
    /// A Rust panic was caught at the API boundary. This is a bug in smtpx: please
    /// report it. The object the call was made on should not be used further.
    Panic = 900,
}

impl smtpx_result {
    /// Every value, in ascending order. (Not `pub`: cbindgen would export it as a macro.)
    pub(crate) const ALL: [Self; 30] = [
        Self::Ok,
        Self::NullParameter,
        Self::InvalidUtf8,
        Self::InvalidArgument,
        Self::BufferTooSmall,
        Self::Injection,
        Self::NotReady,
        Self::Reentrant,
        Self::Protocol,
        Self::Greeting,
        Self::Hello,
        Self::ServerClosed,
        Self::MessageTooLarge,
        Self::SmtpUtf8Unsupported,
        Self::SenderRefused,
        Self::Io,
        Self::Timeout,
        Self::ConnectionClosed,
        Self::MessageSource,
        Self::Tls,
        Self::StartTlsUnavailable,
        Self::StartTlsRefused,
        Self::TlsUnknownIssuer,
        Self::TlsNameMismatch,
        Self::TlsExpired,
        Self::TlsHandshake,
        Self::AuthUnsupported,
        Self::AuthFailed,
        Self::InsecureAuth,
        Self::Panic,
    ];

    /// The value with discriminant `raw`, if there is one.
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|&r| r as u32 == raw)
    }

    /// A short human-readable description.
    pub const fn message(self) -> &'static CStr {
        match self {
            Self::Ok => c"success",
            Self::NullParameter => c"a required pointer argument was NULL",
            Self::InvalidUtf8 => c"a string argument was not valid UTF-8",
            Self::InvalidArgument => c"an argument was out of range or malformed",
            Self::BufferTooSmall => c"the output buffer was too small",
            Self::Injection => c"a string argument contained CR or LF",
            Self::NotReady => c"the object is not ready for this call (closed or stopped)",
            Self::Reentrant => {
                c"called from inside the object's own callback, where it would wait for itself"
            }
            Self::Protocol => c"the server broke the SMTP protocol",
            Self::Greeting => c"the server refused the connection in its greeting",
            Self::Hello => c"the server refused EHLO and HELO",
            Self::ServerClosed => c"the server closed the session (421)",
            Self::MessageTooLarge => c"the message exceeds the server's size limit",
            Self::SmtpUtf8Unsupported => c"an address needs SMTPUTF8, which the server lacks",
            Self::SenderRefused => c"the server refused the sender",
            Self::Io => c"an I/O error occurred",
            Self::Timeout => c"the operation timed out",
            Self::ConnectionClosed => c"the connection closed while a reply was expected",
            Self::MessageSource => c"the message source failed",
            Self::Tls => c"the TLS configuration could not be used",
            Self::StartTlsUnavailable => c"STARTTLS is required but not offered",
            Self::StartTlsRefused => c"the server refused STARTTLS",
            Self::TlsUnknownIssuer => c"the certificate's issuer is not trusted",
            Self::TlsNameMismatch => c"the certificate is not valid for the name",
            Self::TlsExpired => c"the certificate has expired or is not valid yet",
            Self::TlsHandshake => c"the TLS handshake failed",
            Self::AuthUnsupported => c"no authentication mechanism in common",
            Self::AuthFailed => c"the server refused the credentials",
            Self::InsecureAuth => c"credentials not sent: the connection has no TLS",
            Self::Panic => c"internal error: a panic was caught at the smtpx API boundary",
        }
    }
}

/// What [`smtpx_result_str`] says about a value that is not an `smtpx_result`.
const UNKNOWN_RESULT: &CStr = c"unknown smtpx_result value";

/// A raw `smtpx_result` as it arrives from C.
///
/// C may pass any 32-bit value where an `smtpx_result` is expected, and receiving an
/// out-of-range value as a Rust enum would be undefined behaviour, so functions taking a
/// result code take this instead. cbindgen is told (cbindgen.toml: `export.exclude` and
/// `export.rename`) to spell it `smtpx_result` in the header, which is ABI-identical
/// (`uint32_t`, or an enum with `uint32_t` as its underlying type).
#[allow(non_camel_case_types)]
pub type smtpx_result_code = u32;

/// Describes a result code: a static, NUL-terminated English sentence fragment.
///
/// Never returns NULL: a value that is not an `smtpx_result` gives
/// "unknown smtpx_result value". The string is owned by the library and lives for the
/// whole program; do not free it.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_result_str(result: smtpx_result_code) -> *const c_char {
    ffi_panic_boundary(|| {
        smtpx_result::from_raw(result)
            .map_or(UNKNOWN_RESULT, smtpx_result::message)
            .as_ptr()
    })
}

/// A panic in a function that returns `smtpx_result` gives `SMTPX_RESULT_PANIC`.
impl PanicDefault for smtpx_result {
    fn panic_default() -> Self {
        smtpx_result::Panic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_is_complete_sorted_and_round_trips() {
        let raws: Vec<u32> = smtpx_result::ALL.iter().map(|&r| r as u32).collect();
        assert!(
            raws.windows(2).all(|w| w[0] < w[1]),
            "ALL must be ascending: {raws:?}"
        );
        for r in smtpx_result::ALL {
            // The match in message() is exhaustive, so adding a variant without a message
            // fails to compile; adding it without listing it in ALL fails here.
            assert_eq!(smtpx_result::from_raw(r as u32), Some(r));
        }
        assert_eq!(smtpx_result::from_raw(1), None);
        assert_eq!(smtpx_result::from_raw(u32::MAX), None);
    }

    #[test]
    fn every_value_has_a_distinct_message() {
        let mut seen = HashSet::new();
        for r in smtpx_result::ALL {
            let p = smtpx_result_str(r as u32);
            assert!(!p.is_null());
            // SAFETY: smtpx_result_str returns a pointer to a static NUL-terminated string.
            let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
            assert!(!s.is_empty());
            assert!(seen.insert(s.to_owned()), "duplicate message {s:?}");
        }
        assert!(seen.insert("unknown smtpx_result value".to_owned()));
    }

    #[test]
    fn unknown_values_are_described_not_null() {
        for raw in [1, 99, 107, 199, 299, 407, 899, 901, u32::MAX] {
            assert_eq!(smtpx_result_str(raw), UNKNOWN_RESULT.as_ptr());
        }
    }

    #[test]
    fn a_panic_becomes_the_panic_result() {
        assert_eq!(ffi_panic_boundary(|| smtpx_result::Ok), smtpx_result::Ok);
        assert_eq!(
            ffi_panic_boundary(|| -> smtpx_result { panic!("test panic (expected)") }),
            smtpx_result::Panic
        );
    }
}
