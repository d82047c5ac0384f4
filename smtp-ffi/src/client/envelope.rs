//! `smtpx_envelope`: a message's envelope with every parameter the Rust API has (DSN's
//! NOTIFY, ORCPT, RET and ENVID; BODY; SMTPUTF8), for `smtpx_client_send_envelope`.

use std::ffi::c_char;

use smtp_core::client::Envelope;
use smtp_core::client::InvalidAddress;
use smtp_core::command::{Body, Notify, Ret, encode_xtext};

use crate::ffi::{
    free_raw, into_raw, line_arg, obj_mut, opt_line_arg, out_arg, try_arg, write_out,
};
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// NOTIFY=SUCCESS for a recipient (a flag of `smtpx_envelope_add_recipient`).
pub const SMTPX_NOTIFY_SUCCESS: u32 = 1;
/// NOTIFY=FAILURE for a recipient.
pub const SMTPX_NOTIFY_FAILURE: u32 = 2;
/// NOTIFY=DELAY for a recipient.
pub const SMTPX_NOTIFY_DELAY: u32 = 4;
/// NOTIFY=NEVER for a recipient (alone: not with the other flags).
pub const SMTPX_NOTIFY_NEVER: u32 = 8;

/// RET (RFC 3461): what a bounce of the message should carry.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_dsn_ret {
    /// No RET parameter (the default).
    None = 0,
    /// RET=FULL: the whole message.
    Full = 1,
    /// RET=HDRS: the headers only.
    Headers = 2,
}

/// BODY (RFC 6152, RFC 3030): what the message's content is.
///
/// Thread safety: a plain value.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum smtpx_body {
    /// No BODY parameter (the default).
    None = 0,
    /// BODY=7BIT.
    SevenBit = 1,
    /// BODY=8BITMIME (needs the server's 8BITMIME).
    EightBitMime = 2,
    /// BODY=BINARYMIME (needs the server's BINARYMIME and CHUNKING).
    BinaryMime = 3,
}

/// A raw `smtpx_dsn_ret` from C; the header spells it `smtpx_dsn_ret`.
#[allow(non_camel_case_types)]
pub type smtpx_dsn_ret_code = u32;
/// A raw `smtpx_body` from C; the header spells it `smtpx_body`.
#[allow(non_camel_case_types)]
pub type smtpx_body_code = u32;

/// A message's envelope: the sender, the recipients, and their parameters. Built with
/// `smtpx_envelope_new` and the setters, sent with `smtpx_client_send_envelope` (which
/// does not consume it), freed with `smtpx_envelope_free`.
///
/// Thread safety: movable between threads, one thread at a time.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_envelope {
    pub(crate) envelope: Envelope,
}

fn address_error(_: InvalidAddress) -> smtpx_result {
    smtpx_result::InvalidArgument
}

/// Creates an envelope from `from` (bare, as `smtpx_client_send` takes it; "" is the
/// null sender) with no recipients yet, and writes it to `*out_envelope`. A malformed
/// address gives SMTPX_RESULT_INVALID_ARGUMENT, CR or LF SMTPX_RESULT_INJECTION.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_envelope_new(
    from: *const c_char,
    out_envelope: *mut *mut smtpx_envelope,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        try_arg!(out_arg(out_envelope));
        // SAFETY: the caller passes a NUL-terminated string.
        let from = try_arg!(unsafe { line_arg(from) });
        let envelope = try_arg!(Envelope::new(from, [] as [&str; 0]).map_err(address_error));
        // SAFETY: out_envelope was checked non-NULL above.
        unsafe { write_out(out_envelope, into_raw(smtpx_envelope { envelope })) };
        smtpx_result::Ok
    })
}

/// Frees an envelope. NULL is fine; must not be called twice.
///
/// Thread safety: no other thread may use the envelope during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_envelope_free(envelope: *mut smtpx_envelope) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or an envelope from smtpx_envelope_new, once.
        unsafe { free_raw(envelope) }
    })
}

/// Adds a recipient (bare address) with its DSN parameters: `notify` is 0 (no NOTIFY)
/// or SMTPX_NOTIFY_* flags ORed (SMTPX_NOTIFY_NEVER alone); `original` is NULL or the
/// recipient's original address, sent as ORCPT=rfc822;ADDRESS (xtext-encoded here).
/// Errors: SMTPX_RESULT_INVALID_ARGUMENT (a malformed address, unknown flags, NEVER with
/// another flag), SMTPX_RESULT_INJECTION; nothing is added then.
///
/// Thread safety: one thread at a time per envelope.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_envelope_add_recipient(
    envelope: *mut smtpx_envelope,
    to: *const c_char,
    notify: u32,
    original: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live envelope, used by no other thread.
        let e = try_arg!(unsafe { obj_mut(envelope) });
        // SAFETY: the caller passes NUL-terminated strings (original may be NULL).
        let to = try_arg!(unsafe { line_arg(to) });
        // SAFETY: as above.
        let original = try_arg!(unsafe { opt_line_arg(original) });
        let all = SMTPX_NOTIFY_SUCCESS | SMTPX_NOTIFY_FAILURE | SMTPX_NOTIFY_DELAY;
        let notify = match notify {
            0 => None,
            SMTPX_NOTIFY_NEVER => Some(Notify::NEVER),
            n if n & !all == 0 => Some(Notify {
                success: n & SMTPX_NOTIFY_SUCCESS != 0,
                failure: n & SMTPX_NOTIFY_FAILURE != 0,
                delay: n & SMTPX_NOTIFY_DELAY != 0,
            }),
            _ => return smtpx_result::InvalidArgument,
        };
        let mut one = try_arg!(Envelope::new("", [to]).map_err(address_error));
        let Some(mut recipient) = one.recipients.pop() else {
            return smtpx_result::InvalidArgument;
        };
        recipient.params.notify = notify;
        recipient.params.orcpt = original.map(|o| format!("rfc822;{}", encode_xtext(o)));
        e.envelope.recipients.push(recipient);
        smtpx_result::Ok
    })
}

/// Sets RET (see `smtpx_dsn_ret`); an unknown value gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per envelope.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_envelope_set_ret(
    envelope: *mut smtpx_envelope,
    ret: smtpx_dsn_ret_code,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live envelope, used by no other thread.
        let e = try_arg!(unsafe { obj_mut(envelope) });
        e.envelope.params.ret = match ret {
            r if r == smtpx_dsn_ret::None as u32 => None,
            r if r == smtpx_dsn_ret::Full as u32 => Some(Ret::Full),
            r if r == smtpx_dsn_ret::Headers as u32 => Some(Ret::Headers),
            _ => return smtpx_result::InvalidArgument,
        };
        smtpx_result::Ok
    })
}

/// Sets ENVID, the envelope identifier bounces refer to (any text; xtext-encoded here;
/// at most 100 characters once encoded, RFC 3461). NULL removes it.
///
/// Thread safety: one thread at a time per envelope.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_envelope_set_envid(
    envelope: *mut smtpx_envelope,
    envid: *const c_char,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live envelope, used by no other thread.
        let e = try_arg!(unsafe { obj_mut(envelope) });
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let envid = try_arg!(unsafe { opt_line_arg(envid) }).map(encode_xtext);
        if envid
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > 100)
        {
            return smtpx_result::InvalidArgument;
        }
        e.envelope.params.envid = envid;
        smtpx_result::Ok
    })
}

/// Sets BODY (see `smtpx_body`); an unknown value gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per envelope.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_envelope_set_body(
    envelope: *mut smtpx_envelope,
    body: smtpx_body_code,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live envelope, used by no other thread.
        let e = try_arg!(unsafe { obj_mut(envelope) });
        e.envelope.params.body = match body {
            b if b == smtpx_body::None as u32 => None,
            b if b == smtpx_body::SevenBit as u32 => Some(Body::SevenBit),
            b if b == smtpx_body::EightBitMime as u32 => Some(Body::EightBitMime),
            b if b == smtpx_body::BinaryMime as u32 => Some(Body::BinaryMime),
            _ => return smtpx_result::InvalidArgument,
        };
        smtpx_result::Ok
    })
}

/// Asks for SMTPUTF8 (RFC 6531) even when the addresses are ASCII (for UTF-8 headers).
/// An address that needs it gets it anyway. When the server does not offer SMTPUTF8 the
/// send fails with SMTPX_RESULT_SMTP_UTF8_UNSUPPORTED before anything is sent.
///
/// Thread safety: one thread at a time per envelope.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_envelope_set_smtputf8(
    envelope: *mut smtpx_envelope,
    smtputf8: bool,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live envelope, used by no other thread.
        let e = try_arg!(unsafe { obj_mut(envelope) });
        e.envelope.params.smtputf8 = smtputf8;
        smtpx_result::Ok
    })
}
