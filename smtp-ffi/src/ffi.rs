//! Helpers for crossing the boundary: pointer checks, C strings in, buffers out.
//!
//! Every helper checks for NULL before building a reference or slice, and returns the
//! `smtpx_result` the caller gets back, so exported functions read as
//! `let x = try_arg!(helper(...));`.

use std::ffi::{CStr, c_char};

use crate::result::smtpx_result;

/// Returns early with the error of a `Result<T, smtpx_result>`.
macro_rules! try_arg {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return e,
        }
    };
}
pub(crate) use try_arg;

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for
/// `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char) -> Result<&'a str, smtpx_result> {
    if p.is_null() {
        return Err(smtpx_result::NullParameter);
    }
    // SAFETY: p is not NULL and, by this function's contract, NUL-terminated and valid.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| smtpx_result::InvalidUtf8)
}

/// A string argument that goes into a protocol line: as [`str_arg`], and without CR or
/// LF (NUL cannot occur in a C string).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn line_arg<'a>(p: *const c_char) -> Result<&'a str, smtpx_result> {
    // SAFETY: the caller's contract is str_arg's.
    let s = unsafe { str_arg(p) }?;
    if s.contains(['\r', '\n']) {
        return Err(smtpx_result::Injection);
    }
    Ok(s)
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As [`line_arg`].
pub(crate) unsafe fn opt_line_arg<'a>(p: *const c_char) -> Result<Option<&'a str>, smtpx_result> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract is line_arg's.
    unsafe { line_arg(p) }.map(Some)
}

/// A shared reference to an object created by this library.
///
/// # Safety
/// `p` is NULL or a live object of type `T` created by this library, not being mutated
/// by another thread.
pub(crate) unsafe fn obj<'a, T>(p: *const T) -> Result<&'a T, smtpx_result> {
    // SAFETY: by this function's contract a non-NULL p is a live T.
    unsafe { p.as_ref() }.ok_or(smtpx_result::NullParameter)
}

/// A mutable reference to an object created by this library.
///
/// # Safety
/// `p` is NULL or a live object of type `T` created by this library, used by no other
/// thread during the call.
pub(crate) unsafe fn obj_mut<'a, T>(p: *mut T) -> Result<&'a mut T, smtpx_result> {
    // SAFETY: by this function's contract a non-NULL p is a live T used only by us.
    unsafe { p.as_mut() }.ok_or(smtpx_result::NullParameter)
}

/// Checks that an out-parameter is not NULL (before any work is done).
pub(crate) fn out_arg<T>(p: *mut T) -> Result<(), smtpx_result> {
    if p.is_null() {
        Err(smtpx_result::NullParameter)
    } else {
        Ok(())
    }
}

/// Writes `value` to an out-parameter already checked by [`out_arg`].
///
/// # Safety
/// `p` is non-NULL, aligned and writable for a `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, value: T) {
    // SAFETY: by this function's contract.
    unsafe { p.write(value) }
}

/// Moves `value` to the heap and hands it to C as an owned pointer.
pub(crate) fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back an object handed out by [`into_raw`] and drops it; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or came from [`into_raw`] for the same `T` and was not freed before.
pub(crate) unsafe fn free_raw<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: by this function's contract p came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Copies `s` and a NUL terminator into the caller's buffer `buf` of `len` bytes and
/// writes the length without the NUL to `out_n`.
///
/// The buffer contract of every string getter: when `buf` is NULL or `len` is too small,
/// nothing is written to `buf`, the size needed (the length plus one, for the NUL) goes
/// to `*out_n`, and the result is `BufferTooSmall`; so a NULL buffer asks for the size.
/// `out_n` NULL is `NullParameter`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes; `out_n` is NULL or writable.
pub(crate) unsafe fn copy_str_out(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    if out_n.is_null() {
        return smtpx_result::NullParameter;
    }
    if buf.is_null() || len <= s.len() {
        // SAFETY: out_n is not NULL and writable (this function's contract).
        unsafe { out_n.write(s.len() + 1) };
        return smtpx_result::BufferTooSmall;
    }
    // SAFETY: buf is writable for len > s.len() bytes, and s cannot overlap the caller's
    // buffer (it is memory owned by this library).
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        buf.add(s.len()).write(0);
        out_n.write(s.len());
    }
    smtpx_result::Ok
}

/// Copies `bytes` under the buffer contract for binary values: `*out_n` is the length;
/// SMTPX_RESULT_BUFFER_TOO_SMALL (nothing copied) when `buf` is NULL or `len` is smaller.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes; `out_n` is NULL or writable.
pub(crate) unsafe fn copy_bytes_out(
    bytes: &[u8],
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    if out_n.is_null() {
        return smtpx_result::NullParameter;
    }
    // SAFETY: out_n is not NULL and writable (this function's contract).
    unsafe { out_n.write(bytes.len()) };
    if bytes.is_empty() {
        return smtpx_result::Ok;
    }
    if buf.is_null() || len < bytes.len() {
        return smtpx_result::BufferTooSmall;
    }
    // SAFETY: buf is writable for len >= bytes.len() bytes; bytes is this library's.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len()) };
    smtpx_result::Ok
}

/// A `String` as a C string, with any NUL bytes (which cannot occur in the texts this
/// library hands out, but might in a server's reply) replaced so nothing is lost silently.
pub(crate) fn to_cstring(s: impl Into<String>) -> std::ffi::CString {
    let s: String = s.into();
    std::ffi::CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}
