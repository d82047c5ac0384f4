//! `smtpx_server_start_relay`: a server whose every transaction is forwarded to a next
//! hop as it arrives (`smtp_core::server::relay::RelayHandler`), each client answered with
//! the next hop's replies.

use std::ffi::c_char;

use smtp_core::server::relay::RelayHandler;

use crate::client::options::smtpx_client_options;
use crate::client::pooling::{connection_options, options_failed};
use crate::config::smtpx_server_config;
use crate::ffi::{line_arg, obj_mut, opt_line_arg, out_arg, try_arg};
use crate::last_error::record;
use crate::panic::ffi_panic_boundary;
use crate::pool::{smtpx_pool_config, smtpx_pool_config_default};
use crate::result::smtpx_result;
use crate::server::reentry;
use crate::server::run::{finish_start, smtpx_server, start};

/// Starts a relay: a server (configured by `config`, as `smtpx_server_start` is) that
/// forwards each transaction to `host`:`port` over a pool of connections made with
/// `options` (`smtpx_client_options_set_lmtp` for an LMTP next hop, the TLS mode,
/// credentials and timeouts; not consumed) and `pool` (NULL: the defaults). MAIL and each
/// RCPT get the next hop's reply, the content is streamed to it as it arrives, and the
/// final reply is the next hop's (per recipient under LMTP); a next hop that is down or
/// slow gives 451 with an enhanced code, never 250. `server_name` is the name the next
/// hop's certificate must carry (NULL: `host`).
///
/// Writes the server to `*out_server` (release with `smtpx_server_free`). On failure
/// `smtpx_server_config_last_error` (listening) or `smtpx_client_options_last_error` (the
/// next hop's address or TLS setup) gives the detail.
///
/// Thread safety: `config` and `options` are used by this thread during the call only.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_server_start_relay(
    config: *mut smtpx_server_config,
    host: *const c_char,
    port: u16,
    server_name: *const c_char,
    options: *mut smtpx_client_options,
    pool: *const smtpx_pool_config,
    out_server: *mut *mut smtpx_server,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live config, used by no other thread.
        let config = try_arg!(unsafe { obj_mut(config) });
        record(config, |config| {
            // SAFETY: the caller passes NULL or live options, used by no other thread.
            let options = try_arg!(unsafe { obj_mut(options) });
            try_arg!(out_arg(out_server));
            // SAFETY: the caller passes NUL-terminated strings (server_name may be NULL).
            let host = try_arg!(unsafe { line_arg(host) });
            // SAFETY: as above.
            let server_name = try_arg!(unsafe { opt_line_arg(server_name) }).unwrap_or(host);
            // SAFETY: the caller passes NULL or a readable smtpx_pool_config.
            let pool = unsafe { pool.as_ref() }
                .copied()
                .unwrap_or_else(|| smtpx_pool_config_default());
            let client_options = try_arg!(connection_options(options));
            let relay =
                match RelayHandler::new((host, port), server_name, client_options, pool.into()) {
                    Ok(relay) => relay,
                    Err(e) => return options_failed(options, &e),
                };
            let started = start(config, relay, false, reentry::new_token());
            finish_start(started, out_server)
        })
    })
}
