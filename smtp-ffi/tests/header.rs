//! Keeps `include/smtpx.h` identical to what cbindgen generates from this crate.
//!
//! `SMTPX_BLESS=1 cargo test -p smtp-ffi --test header` rewrites the header instead.

use std::fs;
use std::path::{Path, PathBuf};

const BLESS: &str = "SMTPX_BLESS=1 cargo test -p smtp-ffi --test header";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("../include/smtpx.h")
}

/// The header as cbindgen generates it now (generated once per test binary).
fn generated() -> &'static str {
    static GENERATED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    GENERATED.get_or_init(generate)
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("smtp-ffi/cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn header_is_current() {
    let generated = generated();
    let path = header_path();
    if std::env::var_os("SMTPX_BLESS").is_some_and(|v| !v.is_empty() && v != "0") {
        fs::write(&path, generated).expect("write include/smtpx.h");
        eprintln!("rewrote include/smtpx.h");
        return;
    }
    let Ok(checked_in) = fs::read_to_string(&path) else {
        panic!("include/smtpx.h is missing; generate it with:\n    {BLESS}");
    };
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "include/smtpx.h is not what cbindgen generates from smtp-ffi \
             (first difference at line {}).\n\
             If the change to the exported API is intended, regenerate it with:\n    {BLESS}\n\
             and review the diff.",
            first_difference + 1
        );
    }
}

/// The `SMTPX_VERSION_*` macros (written by hand in cbindgen.toml) must match Cargo.toml.
/// Checked on the generated header, which `header_is_current` holds equal to the file.
#[test]
fn version_macros_match_the_crate_version() {
    let header = generated();
    let define = |name: &str| -> u32 {
        let prefix = format!("#define {name} ");
        let line = header
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("the header lacks {name}"));
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number: {line:?}"))
    };
    let expected: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse().unwrap())
        .collect();
    let actual = vec![
        define("SMTPX_VERSION_MAJOR"),
        define("SMTPX_VERSION_MINOR"),
        define("SMTPX_VERSION_PATCH"),
    ];
    assert_eq!(
        actual,
        expected,
        "the SMTPX_VERSION_* macros in smtp-ffi/cbindgen.toml (after_includes) do not match \
         the crate version {}; fix them, then run: {BLESS}",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        actual.iter().all(|&p| p < 256),
        "SMTPX_VERSION_NUMBER packs each part in 8 bits"
    );
    assert!(
        header.contains(
            "((SMTPX_VERSION_MAJOR << 16) | (SMTPX_VERSION_MINOR << 8) | SMTPX_VERSION_PATCH)"
        ),
        "SMTPX_VERSION_NUMBER must combine MAJOR, MINOR and PATCH"
    );
}

/// Every function and type in the header carries the doc comment of its Rust item.
#[test]
fn every_exported_item_is_documented() {
    let lines: Vec<&str> = generated().lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // The first line of every top-level declaration (continuation lines of a long
        // signature are indented; the enum typedefs in #if blocks repeat a documented enum).
        let declares = !line.starts_with([' ', '#', '/', '*', '}'])
            && line.contains("smtpx_")
            && !line.starts_with("typedef enum")
            && !line.starts_with("typedef uint32_t");
        if declares {
            assert_eq!(
                lines.get(i.wrapping_sub(1)).map(|l| l.trim()),
                Some("*/"),
                "undocumented item in the header: {line:?}; add a /// doc comment to it"
            );
        }
    }
}
