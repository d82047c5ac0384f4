//! The PROXY protocol from C: the configuration setters, and what a sans-I/O connection
//! tells about the header it began with. The protocol itself is the engine's
//! ([`smtp_core::server::proxy`]): the header is read by the connection layer before
//! anything else, on both `smtpx_server_start*` servers and `smtpx_server_connection`s.

use std::ffi::c_char;
use std::net::SocketAddr;
use std::time::Duration;

use smtp_core::server::proxy::{DEFAULT_TIMEOUT, ProxyCommand, ProxyHeader, ProxyProtocol};

use crate::config::smtpx_server_config;
use crate::connection::smtpx_server_connection;
use crate::ffi::{copy_bytes_out, copy_str_out, obj, obj_mut, str_arg, try_arg};
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// Makes every connection begin with a PROXY protocol header (HAProxy's v1 or v2) from a
/// load balancer in one of the trusted networks (`smtpx_server_config_add_proxy_trusted`;
/// none trusted means every connection is refused), within `timeout_ms` of being
/// accepted (0: the default, 10 seconds). The client address the header carries is then
/// the connection's peer: the connect callback's argument, the Received header, the logs.
/// A connection from elsewhere, or without a valid header in time, is closed without a
/// greeting. A `LOCAL` (v2) or `UNKNOWN` (v1) header, a balancer's health check, is
/// served with the real addresses. `enabled` false turns it off (the default).
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_set_proxy_protocol(
    config: *mut smtpx_server_config,
    enabled: bool,
    timeout_ms: u64,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(config) });
        if !enabled {
            c.proxy = None;
            return smtpx_result::Ok;
        }
        let proxy = c
            .proxy
            .get_or_insert_with(|| ProxyProtocol::new(Vec::new()));
        proxy.timeout = match timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        smtpx_result::Ok
    })
}

/// Trusts the network `cidr` ("10.0.0.0/8", "2001:db8::/32", or one address) to send
/// PROXY protocol headers; call once per network. Not CIDR notation gives
/// SMTPX_RESULT_INVALID_ARGUMENT. Takes effect with
/// `smtpx_server_config_set_proxy_protocol` (in either order).
///
/// Thread safety: one thread at a time per config.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_config_add_proxy_trusted(
    config: *mut smtpx_server_config,
    cidr: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(config) });
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let cidr = try_arg!(unsafe { str_arg(cidr) });
        let Ok(net) = cidr.parse() else {
            return smtpx_result::InvalidArgument;
        };
        c.proxy_trusted.push(net);
        smtpx_result::Ok
    })
}

impl smtpx_server_config {
    /// The PROXY protocol setting with its trusted networks, when enabled.
    pub(crate) fn proxy_protocol(&self) -> Option<ProxyProtocol> {
        self.proxy.as_ref().map(|p| ProxyProtocol {
            trusted: self.proxy_trusted.clone(),
            timeout: p.timeout,
        })
    }
}

/// What a connection's PROXY protocol header said (`smtpx_server_connection_proxy`).
///
/// Thread safety: a plain value.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_proxy_info {
    /// 1 or 2; 0 from `smtpx_server_call_proxy` when the connection began with no header.
    pub version: u8,
    /// True for a `LOCAL` (v2) or `UNKNOWN` (v1) header: the balancer's own connection,
    /// served with the real addresses; `source` and `destination` are then empty.
    pub local: bool,
    /// The client's address, `"IP:PORT"` (`"[IPv6]:PORT"`), NUL-terminated.
    pub source: [c_char; 64],
    /// The address the client connected to on the balancer, the same way.
    pub destination: [c_char; 64],
}

fn fill(out: &mut [c_char; 64], addr: Option<SocketAddr>) {
    let text = addr.map(|a| a.to_string()).unwrap_or_default();
    // An address is at most 47 characters: it always fits with its NUL.
    for (slot, byte) in out.iter_mut().zip(text.bytes().take(63)) {
        *slot = byte as c_char;
    }
}

/// What a PROXY header said, for C; `None` gives version 0 and empty addresses.
pub(crate) fn proxy_info(header: Option<&ProxyHeader>) -> smtpx_proxy_info {
    let mut info = smtpx_proxy_info {
        version: 0,
        local: false,
        source: [0; 64],
        destination: [0; 64],
    };
    if let Some(h) = header {
        info.version = h.version;
        info.local = h.command == ProxyCommand::Local;
        fill(&mut info.source, h.source);
        fill(&mut info.destination, h.destination);
    }
    info
}

/// Tells a sans-I/O connection the address of the socket's peer, "IP:PORT" (before its
/// first `smtpx_server_connection_next_action`). With the PROXY protocol enabled in the
/// configuration it was created from, the header is accepted only from a trusted peer: a
/// connection whose peer was never set is closed at once. Not an address gives
/// SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_set_peer(
    conn: *mut smtpx_server_connection,
    peer: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection, used by no other thread.
        let c = try_arg!(unsafe { obj_mut(conn) });
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let peer = try_arg!(unsafe { str_arg(peer) });
        match peer.parse() {
            Ok(addr) => {
                c.peer = Some(addr);
                smtpx_result::Ok
            }
            Err(_) => smtpx_result::InvalidArgument,
        }
    })
}

/// The client's address, "IP:PORT", copied NUL-terminated into `buf` (of `len` bytes; 64
/// is always enough), its length to `*out_n`: the one the PROXY header carried, or else
/// the one given to `smtpx_server_connection_set_peer` (empty when neither).
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_peer(
    conn: *const smtpx_server_connection,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection.
        let c = try_arg!(unsafe { obj(conn) });
        let peer = c.conn.peer(c.peer).map(|a| a.to_string());
        // SAFETY: buf is writable for len bytes and out_n for a size_t, or NULL.
        unsafe { copy_str_out(peer.as_deref().unwrap_or(""), buf, len, out_n) }
    })
}

/// The header of a connection, NOT_READY when it has none.
fn header(c: &smtpx_server_connection) -> Result<&ProxyHeader, smtpx_result> {
    c.conn.proxy_header().ok_or(smtpx_result::NotReady)
}

/// Writes what the connection's PROXY header said to `*out` (see `smtpx_proxy_info`);
/// SMTPX_RESULT_NOT_READY when it began with none (yet).
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_proxy(
    conn: *const smtpx_server_connection,
    out: *mut smtpx_proxy_info,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        if out.is_null() {
            return smtpx_result::NullParameter;
        }
        // SAFETY: the caller passes NULL or a live connection.
        let c = try_arg!(unsafe { obj(conn) });
        let h = try_arg!(header(c));
        let info = proxy_info(Some(h));
        // SAFETY: out was checked non-NULL and is writable by the caller's contract.
        unsafe { out.write(info) };
        smtpx_result::Ok
    })
}

/// Copies the value of the connection's first PROXY v2 TLV of type `kind` (0x02 the
/// authority the client asked for, 0x05 the balancer's unique id, 0x20 its TLS facts,
/// ...) into `buf` (of `len` bytes, not NUL-terminated), its length to `*out_n`.
/// SMTPX_RESULT_NOT_READY when there is no header or no such TLV;
/// SMTPX_RESULT_BUFFER_TOO_SMALL (nothing written, `*out_n` the length needed) when it
/// does not fit, and when `buf` is NULL (which asks for the length).
///
/// Thread safety: one thread at a time per connection.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_connection_proxy_tlv(
    conn: *const smtpx_server_connection,
    kind: u8,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live connection.
        let c = try_arg!(unsafe { obj(conn) });
        let h = try_arg!(header(c));
        let Some(value) = h.tlv(kind) else {
            return smtpx_result::NotReady;
        };
        // SAFETY: buf is NULL or writable for len bytes, out_n NULL or writable (the
        // caller's contract); copy_bytes_out checks both.
        unsafe { copy_bytes_out(value, buf, len, out_n) }
    })
}
