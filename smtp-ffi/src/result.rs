//! Result codes returned by fallible functions, and their messages.

use std::ffi::{CStr, c_char};

use crate::panic::ffi_panic_boundary;

/// The outcome of a fallible smtpx call.
///
/// Values are grouped in ranges and a value is never reused for another meaning:
/// 0 is success; 1xx are argument and usage errors made by the caller; 9xx are internal
/// errors (bugs in smtpx). Later ranges (protocol, I/O, TLS, authentication) will be
/// added as the API grows. The type is 32 bits wide in every language mode.
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
    /// The caller's output buffer was too small; nothing was written to it.
    BufferTooSmall = 103,
    /// A Rust panic was caught at the API boundary. This is a bug in smtpx: please
    /// report it. The object the call was made on should not be used further.
    Panic = 900,
}

impl smtpx_result {
    /// Every value, in ascending order. (Not `pub`: cbindgen would export it as a macro.)
    pub(crate) const ALL: [Self; 6] = [
        Self::Ok,
        Self::NullParameter,
        Self::InvalidUtf8,
        Self::InvalidArgument,
        Self::BufferTooSmall,
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
        for raw in [1, 99, 104, 899, 901, u32::MAX] {
            assert_eq!(smtpx_result_str(raw), UNKNOWN_RESULT.as_ptr());
        }
    }
}
