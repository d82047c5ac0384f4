//! SMTP replies: reply codes and their meanings, and the `smtpx_reply` handle.

use std::ffi::{CStr, CString, c_char};
use std::ptr;
use std::sync::OnceLock;

use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};

use crate::ffi::{free_raw, to_cstring};
use crate::panic::ffi_panic_boundary;

/// An RFC 3463 enhanced status code, `status_class.subject.detail` (for example 2.1.5).
///
/// Thread safety: a plain value.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct smtpx_enhanced_code {
    /// 2 (success), 4 (transient failure) or 5 (permanent failure).
    pub status_class: u8,
    /// The subject, 0 to 999.
    pub subject: u16,
    /// The detail, 0 to 999.
    pub detail: u16,
}

impl From<EnhancedCode> for smtpx_enhanced_code {
    fn from(e: EnhancedCode) -> Self {
        smtpx_enhanced_code {
            status_class: e.class,
            subject: e.subject,
            detail: e.detail,
        }
    }
}

/// An SMTP reply from a server: its code, its enhanced status code when it had one, and
/// its text (the lines joined with LF, without codes).
///
/// A reply returned by a function (owned) is released with `smtpx_reply_free`; a reply
/// borrowed from another object (a send result, a client's last error) lives as long as
/// that object says and must not be freed.
///
/// Thread safety: immutable; may be read from several threads at once and moved between
/// threads.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone)]
pub struct smtpx_reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    text: CString,
}

impl smtpx_reply {
    pub(crate) fn new(reply: &Reply) -> smtpx_reply {
        smtpx_reply {
            code: reply.code().get(),
            enhanced: reply.enhanced(),
            text: to_cstring(reply.text()),
        }
    }
}

/// The three-digit code of a reply, for example 250; 0 when `reply` is NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_reply_code(reply: *const smtpx_reply) -> u16 {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live smtpx_reply.
        unsafe { reply.as_ref() }.map_or(0, |r| r.code)
    })
}

/// The enhanced status code of a reply. Returns true and writes it to `*out` when the
/// reply had one; returns false and writes nothing when it had none or an argument is
/// NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_reply_enhanced(
    reply: *const smtpx_reply,
    out: *mut smtpx_enhanced_code,
) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live smtpx_reply.
        let Some(reply) = (unsafe { reply.as_ref() }) else {
            return false;
        };
        match (reply.enhanced, out.is_null()) {
            (Some(e), false) => {
                // SAFETY: out is not NULL and points to a writable smtpx_enhanced_code.
                unsafe { out.write(e.into()) };
                true
            }
            _ => false,
        }
    })
}

/// The text of a reply: its lines without the codes, joined with LF, NUL-terminated.
/// The string belongs to the reply and lives as long as it; NULL when `reply` is NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_reply_text(reply: *const smtpx_reply) -> *const c_char {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live smtpx_reply.
        unsafe { reply.as_ref() }.map_or(ptr::null(), |r| r.text.as_ptr())
    })
}

/// Frees a reply returned (owned) by this library. NULL is fine. Must not be called
/// twice on the same reply, nor on a reply borrowed from another object.
///
/// Thread safety: no other thread may use the reply during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_reply_free(reply: *mut smtpx_reply) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or an owned reply from this library, once.
        unsafe { free_raw(reply) }
    })
}

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
