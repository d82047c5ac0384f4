//! The library version, as a string and (in the header) as macros.

use std::ffi::{CStr, c_char};

use crate::panic::ffi_panic_boundary;

/// `smtpx/` followed by the crate version, NUL-terminated at compile time.
const VERSION: &CStr = match CStr::from_bytes_with_nul(
    concat!("smtpx/", env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(version) => version,
    Err(_) => panic!("the crate version contains a NUL byte"),
};

/// The version of the library actually linked, as `"smtpx/MAJOR.MINOR.PATCH"`.
///
/// Compare with the `SMTPX_VERSION_*` macros to detect a header/library mismatch.
/// The string is static and NUL-terminated; do not free it. Never returns NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_version() -> *const c_char {
    ffi_panic_boundary(|| VERSION.as_ptr())
}

/// The version of the library actually linked as a number, `0xMMmmpp` (major, minor,
/// patch: 0.1.0 is `0x000100`), the run-time twin of the header's `SMTPX_VERSION_NUMBER`:
///
/// ```c
/// if (smtpx_version_number() != SMTPX_VERSION_NUMBER)
///     fprintf(stderr, "built with another smtpx.h than the library\n");
/// ```
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_version_number() -> u32 {
    ffi_panic_boundary(|| VERSION_NUMBER)
}

/// `0xMMmmpp` from the crate version (each part below 256).
const VERSION_NUMBER: u32 = {
    let major = parse(env!("CARGO_PKG_VERSION_MAJOR"));
    let minor = parse(env!("CARGO_PKG_VERSION_MINOR"));
    let patch = parse(env!("CARGO_PKG_VERSION_PATCH"));
    assert!(major < 256 && minor < 256 && patch < 256);
    (major << 16) | (minor << 8) | patch
};

/// A decimal number at compile time.
const fn parse(digits: &str) -> u32 {
    let bytes = digits.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit());
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_brand_slash_crate_version() {
        // SAFETY: smtpx_version returns a pointer to a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(smtpx_version()) };
        assert_eq!(
            v.to_str().unwrap(),
            format!("smtpx/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn version_number_is_major_minor_patch() {
        let n = smtpx_version_number();
        let text = format!("{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
        assert_eq!(text, env!("CARGO_PKG_VERSION"));
    }
}
