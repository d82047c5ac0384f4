//! The panic boundary: no unwind ever leaves an exported function.
//!
//! Every exported function keeps a plain `#[unsafe(no_mangle)] pub extern "C" fn`
//! signature (so cbindgen sees it) and runs its body through [`ffi_panic_boundary`].
//! The value returned on a panic is chosen by the return type, through [`PanicDefault`]
//! (implemented for `smtpx_result` beside it, in `result.rs`, so that this module
//! depends on no other).
//! (Since Rust 1.81 an unwind out of an `extern "C"` fn aborts the process; catching it
//! lets the caller get an error instead of losing the process.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

/// The value an exported function returns when its body panicked.
pub trait PanicDefault {
    /// The value returned to C after a caught panic.
    fn panic_default() -> Self;
}

impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        ptr::null()
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        ptr::null_mut()
    }
}

macro_rules! zero_on_panic {
    ($($t:ty),*) => {$(
        impl PanicDefault for $t {
            fn panic_default() -> Self {
                0
            }
        }
    )*};
}
zero_on_panic!(u8, u16, u32, u64, usize, i32);

impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

/// Runs `body`; if it panics, returns `R::panic_default()` instead of unwinding.
///
/// Written as a function taking a closure rather than a macro wrapping the item, so
/// that the exported signature stays visible to cbindgen and rustfmt formats the body.
/// `AssertUnwindSafe` is sound here: after a panic nothing the body touched is observed
/// again by this call, and shared state is only ever published through `OnceLock`,
/// which stays uninitialised if its initialiser panics.
pub fn ffi_panic_boundary<R: PanicDefault>(body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_payload| R::panic_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_char;

    #[test]
    fn passes_values_through() {
        assert_eq!(ffi_panic_boundary(|| 7u16), 7);
        assert!(ffi_panic_boundary(|| true));
    }

    #[test]
    fn turns_panics_into_defaults() {
        assert!(
            ffi_panic_boundary(|| -> *const c_char { panic!("test panic (expected)") }).is_null()
        );
        assert_eq!(
            ffi_panic_boundary(|| -> usize { panic!("test panic (expected)") }),
            0
        );
        assert!(!ffi_panic_boundary(|| -> bool {
            panic!("test panic (expected)")
        }));
    }
}
