//! `smtpx_tls_session`: one TLS connection without I/O, over the core's
//! [`TlsSession`], so that a C event loop needs no OpenSSL for
//! STARTTLS (or implicit TLS) on either side: the program moves ciphertext between the
//! socket and the session, and plaintext between the session and an SMTP session
//! (`smtpx_server_connection`, `smtpx_server_session`, or its own client).

use std::ffi::c_char;
use std::ptr;

use smtp_core::tls::{self, TlsIdentity, TlsSession, TlsSessionError};

use crate::client::smtpx_client_options;
use crate::client::tls_result;
use crate::config::smtpx_server_config;
use crate::ffi::{
    copy_str_out, free_raw, into_raw, line_arg, obj, obj_mut, out_arg, try_arg, write_out,
};
use crate::last_error::{KeepsLastError, LastError, record};
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// One TLS connection, client or server, without I/O (see `smtpx_tls_session_new_client`
/// and `smtpx_tls_session_new_server`).
///
/// The loop: write what `smtpx_tls_session_output` holds to the socket (then
/// `smtpx_tls_session_consume_output`); give what the socket delivers to
/// `smtpx_tls_session_receive`; read the decrypted bytes with `smtpx_tls_session_plaintext`
/// (then `smtpx_tls_session_consume_plaintext`); encrypt with `smtpx_tls_session_write`
/// once `smtpx_tls_session_is_handshaking` is false. It keeps a last error (see the
/// header's contracts); a failed `receive` gives the kind of failure as its result
/// (SMTPX_RESULT_TLS_UNKNOWN_ISSUER, ...) and may leave an alert in the output to send
/// before closing.
///
/// Thread safety: movable between threads, one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_tls_session {
    session: TlsSession,
    last_error: LastError,
    /// The failure of the last receive or write, for a client session's `tls_failed`.
    failure: Option<TlsSessionError>,
}

/// Hands a core TLS session to C (for a client session's START_TLS).
pub(crate) fn hand_over(session: TlsSession) -> *mut smtpx_tls_session {
    into_raw(smtpx_tls_session {
        session,
        last_error: LastError::default(),
        failure: None,
    })
}

/// What the session's handshake negotiated, for a server connection's handler.
pub(crate) fn info(session: &smtpx_tls_session) -> tls::TlsInfo {
    session.session.info()
}

/// The failure of the session's last receive or write, if it failed.
pub(crate) fn failure(session: &smtpx_tls_session) -> Option<TlsSessionError> {
    session.failure.clone()
}

impl KeepsLastError for smtpx_tls_session {
    fn last_error_mut(&mut self) -> &mut LastError {
        &mut self.last_error
    }
}

fn hand_out(session: TlsSession, out: *mut *mut smtpx_tls_session) -> smtpx_result {
    let s = hand_over(session);
    // SAFETY: out was checked non-NULL by the caller.
    unsafe { write_out(out, s) };
    smtpx_result::Ok
}

/// Creates a client session that checks the server's certificate against `server_name`
/// (a DNS name or IP address) with the TLS settings of `options` (trusted roots, client
/// certificate, minimum version, SNI, insecure), and writes it to `*out_session`; its
/// ClientHello is ready in the output. On failure `options`' last error says why
/// (SMTPX_RESULT_TLS: settings that cannot be used; SMTPX_RESULT_INVALID_ARGUMENT: a bad
/// name).
///
/// Thread safety: `options` is used by this thread during the call only.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_new_client(
    options: *mut smtpx_client_options,
    server_name: *const c_char,
    out_session: *mut *mut smtpx_tls_session,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or live options, used by no other thread.
        let options = try_arg!(unsafe { obj_mut(options) });
        record(options, |o| {
            try_arg!(out_arg(out_session));
            // SAFETY: the caller passes a NUL-terminated string.
            let name = try_arg!(unsafe { line_arg(server_name) });
            let config = match tls::client_config_with(&o.tls_options(), &o.tls_extras) {
                Ok(c) => c,
                Err(e) => {
                    o.last_error.set_message(e.to_string());
                    return smtpx_result::Tls;
                }
            };
            match TlsSession::client(config, name) {
                Ok(session) => hand_out(session, out_session),
                Err(e) => {
                    o.last_error.set_message(e.to_string());
                    smtpx_result::InvalidArgument
                }
            }
        })
    })
}

/// Creates a server session with the certificate and key of
/// `smtpx_server_config_set_tls_files` and the configuration's TLS settings (client
/// certificates, minimum version), and writes it to `*out_session`. The files are read
/// by every call: make one session per connection. On failure the configuration's last
/// error says why (SMTPX_RESULT_TLS; SMTPX_RESULT_NOT_READY without TLS files).
///
/// Thread safety: `config` is used by this thread during the call only.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_new_server(
    config: *mut smtpx_server_config,
    out_session: *mut *mut smtpx_tls_session,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let config = try_arg!(unsafe { obj_mut(config) });
        record(config, |c| {
            try_arg!(out_arg(out_session));
            let Some((cert, key)) = &c.tls_files else {
                c.last_error
                    .set_message("no TLS certificate and key (smtpx_server_config_set_tls_files)");
                return smtpx_result::NotReady;
            };
            let built = TlsIdentity::from_pem_files(cert, key)
                .and_then(|id| tls::server_config_with(id, &c.tls_extras))
                .and_then(TlsSession::server);
            match built {
                Ok(session) => hand_out(session, out_session),
                Err(e) => {
                    c.last_error.set_message(e.to_string());
                    smtpx_result::Tls
                }
            }
        })
    })
}

/// Frees a session. NULL is fine; must not be called twice.
///
/// Thread safety: no other thread may use the session during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_free(session: *mut smtpx_tls_session) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a session from smtpx_tls_session_new_*, once.
        unsafe { free_raw(session) }
    })
}

/// A byte slice argument: NULL only with length 0.
///
/// # Safety
/// `p` is NULL or readable for `len` bytes during the call.
unsafe fn bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], smtpx_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(smtpx_result::NullParameter);
    }
    // SAFETY: p is not NULL and readable for len bytes by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Runs one call on a session under the last-error rule.
fn on_session(
    session: *mut smtpx_tls_session,
    call: impl FnOnce(&mut smtpx_tls_session) -> smtpx_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session, used by no other thread.
        let s = try_arg!(unsafe { obj_mut(session) });
        record(s, call)
    })
}

/// Takes `len` bytes of ciphertext read from the socket (all of them); the plaintext
/// they carried is added to `smtpx_tls_session_plaintext`. A TLS failure returns its
/// kind (SMTPX_RESULT_TLS_UNKNOWN_ISSUER, _NAME_MISMATCH, _EXPIRED, _HANDSHAKE); the
/// output may then hold an alert to send before closing the socket.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_receive(
    session: *mut smtpx_tls_session,
    data: *const u8,
    len: usize,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: data is readable for len bytes (the caller's contract).
        let data = try_arg!(unsafe { bytes(data, len) });
        match s.session.receive(data) {
            Ok(()) => smtpx_result::Ok,
            Err(e) => {
                s.last_error.set_message(e.to_string());
                let code = tls_result(e.kind());
                s.failure = Some(e);
                code
            }
        }
    })
}

/// Encrypts `len` bytes of plaintext to send; the ciphertext goes to the output. Before
/// the handshake is over: SMTPX_RESULT_NOT_READY, nothing taken.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_write(
    session: *mut smtpx_tls_session,
    data: *const u8,
    len: usize,
) -> smtpx_result {
    on_session(session, |s| {
        // SAFETY: data is readable for len bytes (the caller's contract).
        let data = try_arg!(unsafe { bytes(data, len) });
        if s.session.is_handshaking() {
            s.last_error.set_message("the TLS handshake is not over");
            return smtpx_result::NotReady;
        }
        match s.session.write(data) {
            Ok(()) => smtpx_result::Ok,
            Err(e) => {
                s.last_error.set_message(e.to_string());
                let code = tls_result(e.kind());
                s.failure = Some(e);
                code
            }
        }
    })
}

/// Writes a pointer to `buf`'s bytes and their count to the out-parameters.
fn borrow_out(buf: &[u8], out_ptr: *mut *const u8, out_len: *mut usize) -> smtpx_result {
    try_arg!(out_arg(out_ptr));
    try_arg!(out_arg(out_len));
    // SAFETY: both out-pointers were checked non-NULL above.
    unsafe {
        write_out(out_ptr, buf.as_ptr());
        write_out(out_len, buf.len());
    }
    smtpx_result::Ok
}

/// The ciphertext to write to the socket: a pointer to it in `*out_ptr` and its length in
/// `*out_len` (0: nothing to send). Valid until the next call on the session; after
/// writing some, call `smtpx_tls_session_consume_output`.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_output(
    session: *const smtpx_tls_session,
    out_ptr: *mut *const u8,
    out_len: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        borrow_out(s.session.output(), out_ptr, out_len)
    })
}

/// Marks the first `n` bytes of the output as written (more than there are: all).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_consume_output(
    session: *mut smtpx_tls_session,
    n: usize,
) -> smtpx_result {
    on_session(session, |s| {
        s.session.consume_output(n);
        smtpx_result::Ok
    })
}

/// The decrypted bytes received and not yet consumed: a pointer in `*out_ptr`, the
/// length in `*out_len`. Valid until the next call on the session; after using some,
/// call `smtpx_tls_session_consume_plaintext`.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_plaintext(
    session: *const smtpx_tls_session,
    out_ptr: *mut *const u8,
    out_len: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        borrow_out(s.session.plaintext(), out_ptr, out_len)
    })
}

/// Marks the first `n` bytes of the plaintext as used (more than there are: all).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_consume_plaintext(
    session: *mut smtpx_tls_session,
    n: usize,
) -> smtpx_result {
    on_session(session, |s| {
        s.session.consume_plaintext(n);
        smtpx_result::Ok
    })
}

/// Queues a close_notify alert in the output: the orderly end of the TLS connection.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_close(session: *mut smtpx_tls_session) -> smtpx_result {
    on_session(session, |s| {
        s.session.close();
        smtpx_result::Ok
    })
}

/// True until the handshake is complete (true for NULL).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_is_handshaking(session: *const smtpx_tls_session) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        unsafe { session.as_ref() }.is_none_or(|s| s.session.is_handshaking())
    })
}

/// True once the peer sent close_notify: it sends nothing more (false for NULL).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_peer_closed(session: *const smtpx_tls_session) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        unsafe { session.as_ref() }.is_some_and(|s| s.session.peer_closed())
    })
}

/// The negotiated protocol version, "TLSv1.2" or "TLSv1.3": a static string (never
/// free it); NULL before the handshake has chosen one, or for NULL.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_protocol_version(
    session: *const smtpx_tls_session,
) -> *const c_char {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let version = unsafe { session.as_ref() }.and_then(|s| s.session.protocol_version());
        match version {
            Some("TLSv1.2") => c"TLSv1.2".as_ptr(),
            Some("TLSv1.3") => c"TLSv1.3".as_ptr(),
            Some(_) => c"TLS".as_ptr(),
            None => ptr::null(),
        }
    })
}

/// The negotiated cipher suite's IANA name (for example "TLS13_AES_256_GCM_SHA384"),
/// copied into `buf` under the buffer contract. SMTPX_RESULT_NOT_READY before one is
/// negotiated.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_cipher_suite(
    session: *const smtpx_tls_session,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        let Some(suite) = s.session.cipher_suite() else {
            return smtpx_result::NotReady;
        };
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(suite, buf, len, out_n) }
    })
}

/// On a server session, the name the client asked for (SNI), copied into `buf` under the
/// buffer contract. SMTPX_RESULT_NOT_READY when the client sent none (or on a client).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_server_name(
    session: *const smtpx_tls_session,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        let Some(name) = s.session.server_name() else {
            return smtpx_result::NotReady;
        };
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(name, buf, len, out_n) }
    })
}

/// The peer's certificate number `index` (0 is its own, then the chain it sent), DER
/// encoded: a pointer in `*out_der` and the length in `*out_len`, valid as long as the
/// session. On a server this is the client's certificate (mutual TLS). SMTPX_RESULT_NOT_READY
/// when there is none at that index (before the handshake, or a client without one).
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_peer_certificate(
    session: *const smtpx_tls_session,
    index: usize,
    out_der: *mut *const u8,
    out_len: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        let Some(cert) = s.session.peer_certificates().and_then(|c| c.get(index)) else {
            return smtpx_result::NotReady;
        };
        borrow_out(cert.as_ref(), out_der, out_len)
    })
}

/// The message of the session's last call if it failed (see the header's contracts),
/// copied into `buf` under the buffer contract.
///
/// Thread safety: one thread at a time per session.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_tls_session_last_error(
    session: *const smtpx_tls_session,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live session.
        let s = try_arg!(unsafe { obj(session) });
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(&s.last_error.message, buf, len, out_n) }
    })
}
