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
}
