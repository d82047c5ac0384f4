//! TLS settings for C: the trust store (system, a PEM file, PEM in memory), a client
//! certificate for mutual TLS, the oldest protocol version, SNI; on a server, asking
//! clients for certificates. The result codes of failed handshakes
//! (`SMTPX_RESULT_TLS_UNKNOWN_ISSUER` and the others) come from the core's
//! [`TlsErrorKind`](smtp_core::tls::TlsErrorKind).

use std::ffi::c_char;
use std::path::Path;

use smtp_core::tls::{self, ClientAuth, RootCerts, TlsClientOptions, TlsIdentity, TlsVersion};

use crate::client::smtpx_client_options;
use crate::config::smtpx_server_config;
use crate::ffi::{obj_mut, str_arg, try_arg};
use crate::last_error::record;
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// The oldest TLS protocol version a client or server accepts.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_tls_version {
    /// TLS 1.2 and 1.3 (the default).
    Tls12 = 12,
    /// TLS 1.3 only.
    Tls13 = 13,
}

/// A raw `smtpx_tls_version` as it arrives from C (see `smtpx_result_code` for why); the
/// header spells it `smtpx_tls_version`.
#[allow(non_camel_case_types)]
pub type smtpx_tls_version_code = u32;

fn tls_version(code: smtpx_tls_version_code) -> Result<TlsVersion, smtpx_result> {
    match code {
        c if c == smtpx_tls_version::Tls12 as u32 => Ok(TlsVersion::Tls12),
        c if c == smtpx_tls_version::Tls13 as u32 => Ok(TlsVersion::Tls13),
        _ => Err(smtpx_result::InvalidArgument),
    }
}

/// A byte buffer argument: NULL only with length 0.
///
/// # Safety
/// `p` is NULL or readable for `len` bytes during the call.
unsafe fn bytes_arg<'a>(p: *const u8, len: usize) -> Result<&'a [u8], smtpx_result> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(smtpx_result::NullParameter)
        };
    }
    // SAFETY: p is not NULL and readable for len bytes by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Runs `f` on the client options behind `options` under the last-error rule.
fn with_options(
    options: *mut smtpx_client_options,
    f: impl FnOnce(&mut smtpx_client_options) -> smtpx_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, f)
    })
}

/// Checks roots now, so that a bad CA is reported by its setter rather than at connect.
fn check_roots(options: &mut smtpx_client_options, roots: RootCerts) -> smtpx_result {
    let check = TlsClientOptions {
        roots: roots.clone(),
        dangerous_accept_invalid_certs: false,
    };
    match tls::client_config(&check) {
        Ok(_) => {
            options.roots = roots;
            smtpx_result::Ok
        }
        Err(e) => {
            options.last_error.set_message(e.to_string());
            smtpx_result::Tls
        }
    }
}

/// Trusts the operating system's certificate store (on Debian the ca-certificates
/// bundle) instead of the compiled-in Mozilla roots. Read now: SMTPX_RESULT_TLS (and the
/// last error) when the store holds no usable certificate, and nothing changes.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_system_roots(
    options: *mut smtpx_client_options,
) -> smtpx_result {
    with_options(options, |o| check_roots(o, RootCerts::System))
}

/// Trusts the certificate authorities in `pem` (`len` bytes of PEM text, copied) instead
/// of the compiled-in Mozilla roots: a private CA held in memory. Checked now:
/// SMTPX_RESULT_TLS when it holds no usable certificate, and nothing changes. NULL with
/// length 0 goes back to the Mozilla roots.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_ca_pem(
    options: *mut smtpx_client_options,
    pem: *const u8,
    len: usize,
) -> smtpx_result {
    with_options(options, |o| {
        if pem.is_null() && len == 0 {
            o.roots = RootCerts::WebPki;
            return smtpx_result::Ok;
        }
        // SAFETY: pem is readable for len bytes (the caller's contract).
        let pem = try_arg!(unsafe { bytes_arg(pem, len) });
        check_roots(o, RootCerts::Pem(pem.to_vec()))
    })
}

/// Sets the certificate chain (leaf first) and private key the client shows a server
/// that asks for one (mutual TLS), as PEM text in memory (copied). Checked now:
/// SMTPX_RESULT_TLS with the detail in the last error when either cannot be used.
/// NULL for both (lengths 0) removes the client certificate.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_client_cert_pem(
    options: *mut smtpx_client_options,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> smtpx_result {
    with_options(options, |o| {
        if cert_pem.is_null() && key_pem.is_null() {
            o.tls_extras.identity = None;
            return smtpx_result::Ok;
        }
        // SAFETY: each buffer is readable for its length (the caller's contract).
        let cert = try_arg!(unsafe { bytes_arg(cert_pem, cert_len) });
        // SAFETY: as above.
        let key = try_arg!(unsafe { bytes_arg(key_pem, key_len) });
        set_identity(o, TlsIdentity::from_pem(cert, key))
    })
}

/// As `smtpx_client_options_set_client_cert_pem`, from two PEM files read now. NULL for
/// both removes the client certificate.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_client_cert_files(
    options: *mut smtpx_client_options,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> smtpx_result {
    with_options(options, |o| {
        if cert_path.is_null() && key_path.is_null() {
            o.tls_extras.identity = None;
            return smtpx_result::Ok;
        }
        // SAFETY: the caller passes NUL-terminated strings.
        let cert = try_arg!(unsafe { str_arg(cert_path) });
        // SAFETY: as above.
        let key = try_arg!(unsafe { str_arg(key_path) });
        set_identity(
            o,
            TlsIdentity::from_pem_files(Path::new(cert), Path::new(key)),
        )
    })
}

fn set_identity(
    options: &mut smtpx_client_options,
    identity: Result<TlsIdentity, tls::TlsError>,
) -> smtpx_result {
    match identity {
        Ok(identity) => {
            options.tls_extras.identity = Some(identity);
            smtpx_result::Ok
        }
        Err(e) => {
            options.last_error.set_message(e.to_string());
            smtpx_result::Tls
        }
    }
}

/// Sets the oldest TLS version the client accepts (default SMTPX_TLS_VERSION_TLS12). A
/// value that is not an `smtpx_tls_version` gives SMTPX_RESULT_INVALID_ARGUMENT. A server
/// that cannot speak it fails the handshake with SMTPX_RESULT_TLS_HANDSHAKE.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_min_tls_version(
    options: *mut smtpx_client_options,
    version: smtpx_tls_version_code,
) -> smtpx_result {
    with_options(options, |o| {
        o.tls_extras.min_version = try_arg!(tls_version(version));
        smtpx_result::Ok
    })
}

/// Sends the server's name in the TLS handshake (SNI) when true, the default. The name
/// is the `server_name` of `smtpx_client_connect` (or of `smtpx_client_starttls`), which
/// is also the name the certificate must carry; an IP address is never sent.
///
/// Thread safety: one thread at a time per options object.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_options_set_sni(
    options: *mut smtpx_client_options,
    enable: bool,
) -> smtpx_result {
    with_options(options, |o| {
        o.tls_extras.enable_sni = enable;
        smtpx_result::Ok
    })
}

/// Runs `f` on the configuration behind `config` under the last-error rule.
fn with_config(
    config: *mut smtpx_server_config,
    f: impl FnOnce(&mut smtpx_server_config) -> smtpx_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let config = try_arg!(unsafe { obj_mut(config) });
        record(config, f)
    })
}

/// Asks TLS clients for a certificate that chains to the certificate authorities in the
/// PEM file `ca_path` (mutual TLS). With `required` a client without one fails the
/// handshake; without, it is let in. The file is read when the server starts (its
/// errors are SMTPX_RESULT_TLS there). NULL stops asking. Needs the TLS files of
/// `smtpx_server_config_set_tls_files`.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_client_ca_file(
    config: *mut smtpx_server_config,
    ca_path: *const c_char,
    required: bool,
) -> smtpx_result {
    with_config(config, |c| {
        if ca_path.is_null() {
            c.tls_extras.client_auth = ClientAuth::None;
            return smtpx_result::Ok;
        }
        // SAFETY: the caller passes a NUL-terminated string.
        let path = try_arg!(unsafe { str_arg(ca_path) });
        let roots = RootCerts::PemFile(path.into());
        c.tls_extras.client_auth = if required {
            ClientAuth::Required(roots)
        } else {
            ClientAuth::Optional(roots)
        };
        smtpx_result::Ok
    })
}

/// Sets the oldest TLS version the server accepts (default SMTPX_TLS_VERSION_TLS12). A
/// value that is not an `smtpx_tls_version` gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_min_tls_version(
    config: *mut smtpx_server_config,
    version: smtpx_tls_version_code,
) -> smtpx_result {
    with_config(config, |c| {
        c.tls_extras.min_version = try_arg!(tls_version(version));
        smtpx_result::Ok
    })
}
