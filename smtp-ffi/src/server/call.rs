//! `smtpx_server_call_*`: what a handler callback may ask about the connection it was
//! called for, the libcurl way (`curl_easy_getinfo`, `CURLOPT_PRIVATE`): a pointer of the
//! program's own kept per connection, the client's address, the PROXY header and its
//! TLVs, and what the TLS handshake negotiated.
//!
//! These functions take no object: they act on the connection whose callback is running
//! on the calling thread. The connection's state (`ConnState`) is marked current for the
//! length of each callback by a `Current` guard (next to `reentry`'s `Inside`); outside
//! a callback, and on any other thread, every function returns
//! `SMTPX_RESULT_NOT_READY` and writes nothing. Having no object, they keep no last
//! error.

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::net::SocketAddr;

use smtp_core::handler::ConnectionInfo;
use smtp_core::server::proxy::ProxyHeader;
use smtp_core::tls::{TlsInfo, TlsState};

use super::handler::smtpx_userdata_free_callback;
use super::reentry::Inside;
use crate::ffi::{copy_bytes_out, copy_str_out};
use crate::panic::ffi_panic_boundary;
use crate::proxy::{proxy_info, smtpx_proxy_info};
use crate::result::smtpx_result;

/// One connection's state as the `smtpx_server_call_*` functions see it.
#[derive(Debug)]
pub(super) struct ConnState {
    /// The client's address (the PROXY header's when there is one).
    peer: Option<SocketAddr>,
    proxy: Option<ProxyHeader>,
    tls: TlsState,
    /// The program's pointer and its releaser (`smtpx_server_call_set_userdata`).
    user: Cell<(*mut c_void, smtpx_userdata_free_callback)>,
    /// The server's token, set while the releaser runs (see `reentry`).
    server: u64,
}

// SAFETY: the state is used by one thread at a time (the one serving the connection,
// which may change between callbacks, never during one); the user pointer is the C
// program's, which it promises may be released from any of the server's threads.
unsafe impl Send for ConnState {}

impl ConnState {
    pub(super) fn new(info: &ConnectionInfo, server: u64) -> ConnState {
        ConnState {
            peer: info.peer,
            proxy: info.proxy.clone(),
            tls: info.tls_state.clone(),
            user: Cell::new((std::ptr::null_mut(), None)),
            server,
        }
    }

    /// Marks this connection as the one whose callback runs on this thread, until the
    /// guard is dropped (with the server's reentry mark).
    pub(super) fn enter(&self) -> (Inside, Current) {
        let inside = Inside::enter(self.server);
        let current = Current {
            previous: CURRENT.with(|c| c.replace(std::ptr::from_ref(self))),
        };
        (inside, current)
    }

    /// Releases the program's pointer, if it gave one with a releaser.
    fn release_user(&self) {
        let (user, free) = self.user.replace((std::ptr::null_mut(), None));
        if let Some(free) = free {
            // The releaser runs outside any callback: the accessors answer NOT_READY.
            let _inside = Inside::enter(self.server);
            // SAFETY: the program gave this function for this pointer
            // (smtpx_server_call_set_userdata); it is called once, as the pointer is
            // taken out of the state.
            unsafe { free(user) }
        }
    }
}

/// After the connection's last callback (close, or a connect callback that refused).
impl Drop for ConnState {
    fn drop(&mut self) {
        self.release_user();
    }
}

thread_local! {
    /// The state of the connection whose callback runs on this thread; NULL for none.
    static CURRENT: Cell<*const ConnState> = const { Cell::new(std::ptr::null()) };
}

/// Keeps a connection current on this thread until dropped; restores the outer one (a
/// callback that runs another server's callbacks in turn).
#[derive(Debug)]
#[must_use]
pub(super) struct Current {
    previous: *const ConnState,
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Runs `f` on the current connection's state, or gives NOT_READY outside a callback.
fn with_current(f: impl FnOnce(&ConnState) -> smtpx_result) -> smtpx_result {
    let current = CURRENT.with(Cell::get);
    // SAFETY: a non-NULL pointer was set by a `Current` guard that is still alive on this
    // thread: the state it points to is borrowed by the callback's caller for as long.
    match unsafe { current.as_ref() } {
        Some(state) => f(state),
        None => smtpx_result::NotReady,
    }
}

/// Keeps `userdata` for the connection whose callback is running: every later callback
/// for it reads it back with `smtpx_server_call_userdata` (libcurl's `CURLOPT_PRIVATE`).
/// `userdata_free` (may be NULL) is called exactly once with it, on the connection's
/// thread, after the connection's last callback has returned: after `close`, or after a
/// `connect` callback that refused the client (no `close` follows then). Setting another
/// pointer first releases the one set before (with its own releaser), unless it is the
/// same pointer. SMTPX_RESULT_NOT_READY outside a callback (nothing is kept, nothing
/// released).
///
/// ```c
/// static int on_connect(void *ud, uint64_t id, const char *peer, smtpx_decision *out) {
///     struct conn *c = calloc(1, sizeof *c);
///     smtpx_server_call_set_userdata(c, free);
///     return SMTPX_ACCEPT;
/// }
/// static int on_data_end(void *ud, uint64_t id, const char *arg, smtpx_decision *out) {
///     struct conn *c = NULL;
///     smtpx_server_call_userdata((void **)&c);
///     c->messages++;
///     return SMTPX_ACCEPT;
/// }
/// ```
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_set_userdata(
    userdata: *mut c_void,
    userdata_free: smtpx_userdata_free_callback,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        with_current(|state| {
            if state.user.get().0 != userdata {
                state.release_user();
            }
            state.user.set((userdata, userdata_free));
            smtpx_result::Ok
        })
    })
}

/// Writes the pointer kept with `smtpx_server_call_set_userdata` for the connection whose
/// callback is running to `*out` (NULL when none was set). SMTPX_RESULT_NOT_READY
/// outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_userdata(out: *mut *mut c_void) -> smtpx_result {
    ffi_panic_boundary(|| {
        if out.is_null() {
            return smtpx_result::NullParameter;
        }
        with_current(|state| {
            // SAFETY: out was checked non-NULL and is writable by the caller's contract.
            unsafe { out.write(state.user.get().0) };
            smtpx_result::Ok
        })
    })
}

/// The client's address, "IP:PORT", copied into `buf` under the buffer contract (64
/// bytes always suffice): behind a load balancer speaking the PROXY protocol, the one the
/// header carried. Empty when the connection has none (a Unix socket).
/// SMTPX_RESULT_NOT_READY outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_peer(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        with_current(|state| {
            let peer = state.peer.map(|p| p.to_string()).unwrap_or_default();
            // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
            unsafe { copy_str_out(&peer, buf, len, out_n) }
        })
    })
}

/// Writes what the PROXY protocol header the connection began with said to `*out` (see
/// `smtpx_proxy_info`); a connection that began with none gives `version` 0 and empty
/// addresses. SMTPX_RESULT_NOT_READY outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_proxy(out: *mut smtpx_proxy_info) -> smtpx_result {
    ffi_panic_boundary(|| {
        if out.is_null() {
            return smtpx_result::NullParameter;
        }
        with_current(|state| {
            let info = proxy_info(state.proxy.as_ref());
            // SAFETY: out was checked non-NULL and is writable by the caller's contract.
            unsafe { out.write(info) };
            smtpx_result::Ok
        })
    })
}

/// Copies the value of the connection's first PROXY v2 TLV of type `kind` (0x01 ALPN,
/// 0x02 the authority the client asked for, 0x05 the balancer's unique id, 0x20 its TLS
/// facts, ...) into `buf` (of `len` bytes, not NUL-terminated); `*out_n` is its length.
/// When `buf` is NULL or `len` is smaller: SMTPX_RESULT_BUFFER_TOO_SMALL, nothing
/// copied. No header or no such TLV: SMTPX_RESULT_OK with `*out_n` 0 (as an empty TLV).
/// SMTPX_RESULT_NOT_READY outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_proxy_tlv(
    kind: u8,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        with_current(|state| {
            let value = state.proxy.as_ref().and_then(|h| h.tlv(kind));
            // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
            unsafe { copy_bytes_out(value.unwrap_or(&[]), buf, len, out_n) }
        })
    })
}

/// The TLS details, once the connection is encrypted and the server knows them.
fn tls(state: &ConnState) -> Option<&TlsInfo> {
    state.tls.get()
}

/// One text field of the TLS details (`pick`), copied out under the buffer contract;
/// empty while the connection is not encrypted or the field is unknown.
fn tls_text_out(
    pick: fn(&TlsInfo) -> Option<&str>,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        with_current(|state| {
            let text = tls(state).and_then(pick).unwrap_or("");
            // SAFETY: the caller passes buf writable for len bytes and out_n for a
            // size_t, or NULL (the contract of every function calling this).
            unsafe { copy_str_out(text, buf, len, out_n) }
        })
    })
}

/// The negotiated TLS version, "TLSv1.2" or "TLSv1.3", copied into `buf` under the
/// buffer contract: known from the connect callback on for implicit TLS, from the
/// `tls_started` callback on after STARTTLS. Empty while the connection is not
/// encrypted. SMTPX_RESULT_NOT_READY outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_tls_version(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    tls_text_out(|t| t.version.as_deref(), buf, len, out_n)
}

/// The negotiated cipher suite's IANA name (for example "TLS13_AES_256_GCM_SHA384"),
/// copied into `buf` under the buffer contract; empty while the connection is not
/// encrypted. SMTPX_RESULT_NOT_READY outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_tls_cipher(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    tls_text_out(|t| t.cipher.as_deref(), buf, len, out_n)
}

/// The host name the client asked for in its TLS handshake (SNI), copied into `buf`
/// under the buffer contract; empty when it sent none or the connection is not
/// encrypted. SMTPX_RESULT_NOT_READY outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_tls_server_name(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    tls_text_out(|t| t.server_name.as_deref(), buf, len, out_n)
}

/// The client's certificate number `index` (0 is its own, then the chain it sent), DER
/// encoded, copied into `buf` (of `len` bytes); `*out_n` is its length. When `buf` is
/// NULL or `len` is smaller: SMTPX_RESULT_BUFFER_TOO_SMALL, nothing copied (so a NULL
/// buffer asks for the size). No certificate at `index` (the client sent none, or the
/// connection is not encrypted): SMTPX_RESULT_OK with `*out_n` 0.
/// SMTPX_RESULT_NOT_READY outside a callback.
///
/// Thread safety: only on the thread running a callback of a server, for its connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_call_tls_peer_certificate(
    index: usize,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        with_current(|state| {
            let cert = tls(state).and_then(|t| t.peer_certificates.get(index));
            let der: &[u8] = cert.map_or(&[], |c| c.as_ref());
            // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
            unsafe { copy_bytes_out(der, buf, len, out_n) }
        })
    })
}
