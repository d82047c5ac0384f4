//! SMTP reply codes.

use std::ffi::{CStr, CString, c_char};
use std::ptr;
use std::sync::OnceLock;

use smtp_core::reply::ReplyCode;

use crate::panic::ffi_panic_boundary;

/// Reply codes have three digits (RFC 5321 §4.2), so the table covers 0..=999.
const TABLE_LEN: u16 = 1000;

/// NUL-terminated copies of the core's meanings, indexed by code, built once on first
/// use and then shared read-only by every thread. The core's meanings are `&'static str`
/// without a terminator; copying them once keeps every call allocation-free.
fn meanings() -> &'static [Option<Box<CStr>>] {
    static MEANINGS: OnceLock<Box<[Option<Box<CStr>>]>> = OnceLock::new();
    MEANINGS.get_or_init(|| {
        (0..TABLE_LEN)
            .map(|code| {
                let meaning = ReplyCode::new(code)?.meaning()?;
                // A meaning with an interior NUL could not be given to C whole; the core
                // has none, and the unit test below would notice one.
                Some(CString::new(meaning).ok()?.into_boxed_c_str())
            })
            .collect()
    })
}

fn meaning(code: u16) -> Option<&'static CStr> {
    meanings().get(usize::from(code))?.as_deref()
}

/// The standard meaning of an SMTP reply code (RFC 5321 §4.2), for example
/// "Requested mail action okay, completed" for 250.
///
/// Returns NULL when the code has no standard meaning (including any value that is not
/// a three-digit code). The string is static and NUL-terminated; do not free it.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_reply_code_meaning(code: u16) -> *const c_char {
    ffi_panic_boundary(|| meaning(code).map_or(ptr::null(), CStr::as_ptr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_core_for_every_code() {
        for code in 0..=u16::MAX {
            let expected = ReplyCode::new(code).and_then(ReplyCode::meaning);
            let p = smtpx_reply_code_meaning(code);
            let got = (!p.is_null()).then(|| {
                // SAFETY: a non-NULL result points into the static table of C strings.
                unsafe { CStr::from_ptr(p) }.to_str().unwrap()
            });
            if code < TABLE_LEN {
                assert_eq!(got, expected, "code {code}");
            } else {
                assert_eq!(got, None, "code {code}");
            }
        }
    }

    #[test]
    fn well_known_codes() {
        assert!(!smtpx_reply_code_meaning(250).is_null());
        assert!(smtpx_reply_code_meaning(999).is_null());
        assert!(smtpx_reply_code_meaning(0).is_null());
    }

    #[test]
    fn returns_the_same_static_string_every_time() {
        assert_eq!(smtpx_reply_code_meaning(250), smtpx_reply_code_meaning(250));
    }
}
