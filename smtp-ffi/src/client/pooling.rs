//! What the connection pool and the relay (`crate::pool`, `crate::relay`) need from the
//! client module: the options a connection is made with, a send result for C, and an
//! error's code.

use smtp_core::blocking::client::{ClientOptions, Error, TlsMode};
use smtp_core::client::TransactionResult;
use smtp_core::tls::{self, TlsClientOptions};

use super::error::result_for;
use super::options::smtpx_client_options;
use super::result::smtpx_send_result;
use crate::log;
use crate::result::smtpx_result;

/// The options every connection of a pool is made with, TLS configuration included (built
/// once, so that the connections share its session cache). On failure the options' last
/// error says why.
pub(crate) fn connection_options(
    options: &mut smtpx_client_options,
) -> Result<ClientOptions, smtpx_result> {
    let mut client_options = options.options.clone();
    if client_options.trace.is_none() {
        client_options.trace = log::env_trace(log::Side::Client);
    }
    if client_options.tls != TlsMode::None {
        let tls_options = TlsClientOptions {
            roots: options.roots.clone(),
            dangerous_accept_invalid_certs: options.insecure,
        };
        match tls::client_config(&tls_options) {
            Ok(config) => client_options.tls_config = Some(config),
            Err(e) => {
                options.last_error.set_message(e.to_string());
                return Err(smtpx_result::Tls);
            }
        }
    }
    Ok(client_options)
}

/// Records a failure on the options (for `smtpx_client_options_last_error`).
pub(crate) fn options_failed(options: &mut smtpx_client_options, error: &Error) -> smtpx_result {
    options.last_error.set(error);
    result_for(error.kind())
}

/// A message's outcome for C.
pub(crate) fn send_result(result: &TransactionResult) -> smtpx_send_result {
    smtpx_send_result::new(result)
}

/// The code of a client error.
pub(crate) fn error_code(error: &Error) -> smtpx_result {
    result_for(error.kind())
}
