//! Gives the shared library a SONAME that carries the full version, and leaves its debug
//! information out.
//!
//! Before 1.0 there is no ABI stability: any release may break the ABI, so the SONAME is
//! `libsmtpx.so.MAJOR.MINOR.PATCH` (cargo-c's `version_suffix_components = 3`, as
//! rustls-ffi does). A program linked against one release then refuses to load another,
//! instead of misbehaving. From 1.0 on this becomes `libsmtpx.so.MAJOR`.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    // ELF platforms only; Apple uses -install_name and Windows has no SONAME.
    if family.split(',').any(|f| f == "unix") && os != "macos" && os != "ios" {
        let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
        println!("cargo::rustc-cdylib-link-arg=-Wl,-soname,libsmtpx.so.{version}");
        // The shared library ships without debug information (16 MB with it, a few MB
        // without); libsmtpx.a keeps the profile's line tables for the program's own
        // debugger. SMTPX_SO_DEBUG=1 keeps them in the .so too.
        if std::env::var_os("SMTPX_SO_DEBUG").is_none_or(|v| v.is_empty() || v == "0") {
            println!("cargo::rustc-cdylib-link-arg=-Wl,--strip-debug");
        }
    }
    println!("cargo::rerun-if-env-changed=SMTPX_SO_DEBUG");
}
