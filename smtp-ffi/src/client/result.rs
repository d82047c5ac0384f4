//! `smtpx_send_result`: the outcome of one sent message, per recipient, and its accessors.

use std::ffi::{CString, c_char};
use std::ptr;

use smtp_core::client::TransactionResult;

use crate::ffi::{free_raw, to_cstring};
use crate::panic::ffi_panic_boundary;
use crate::reply::smtpx_reply;

/// One recipient's outcome, kept for C.
#[derive(Debug)]
struct RecipientOutcome {
    address: CString,
    reply: smtpx_reply,
    delivery: Option<smtpx_reply>,
    accepted: bool,
}

/// The outcome of one sent message: the reply to MAIL FROM, each recipient's reply (and,
/// under LMTP, its delivery reply), the final reply after the message, and the queue id
/// the server named.
///
/// Strings and replies borrowed from it live until `smtpx_send_result_free`.
///
/// Thread safety: immutable; may be read from several threads at once and moved between
/// threads.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct smtpx_send_result {
    success: bool,
    mail: smtpx_reply,
    recipients: Vec<RecipientOutcome>,
    data: Option<smtpx_reply>,
    queue_id: Option<CString>,
}

impl smtpx_send_result {
    pub(super) fn new(result: &TransactionResult) -> smtpx_send_result {
        smtpx_send_result {
            success: result.is_success(),
            mail: smtpx_reply::new(&result.mail),
            recipients: result
                .recipients
                .iter()
                .map(|r| RecipientOutcome {
                    address: to_cstring(r.address.as_str()),
                    reply: smtpx_reply::new(&r.reply),
                    delivery: r.delivery.as_ref().map(smtpx_reply::new),
                    accepted: r.is_accepted(),
                })
                .collect(),
            data: result.data.as_ref().map(smtpx_reply::new),
            queue_id: result.queue_id().map(to_cstring),
        }
    }

    /// Recipient `i`, if there is one.
    ///
    /// # Safety
    /// `result` is NULL or a live result.
    unsafe fn recipient<'a>(
        result: *const smtpx_send_result,
        i: usize,
    ) -> Option<&'a RecipientOutcome> {
        // SAFETY: by this function's contract.
        unsafe { result.as_ref() }?.recipients.get(i)
    }
}

/// Frees a send result. NULL is fine; must not be called twice on the same result.
///
/// Thread safety: no other thread may use the result during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_free(result: *mut smtpx_send_result) {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a result from this library, once.
        unsafe { free_raw(result) }
    })
}

/// True when the message was accepted for at least one recipient (false for NULL).
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_success(result: *const smtpx_send_result) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }.is_some_and(|r| r.success)
    })
}

/// How many recipients the result covers (the envelope's, in order); 0 for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_count(result: *const smtpx_send_result) -> usize {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }.map_or(0, |r| r.recipients.len())
    })
}

/// The address of recipient `index` (bare, without angle brackets), borrowed from the
/// result; NULL when `index` is out of range or `result` is NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_address(
    result: *const smtpx_send_result,
    index: usize,
) -> *const c_char {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }
            .map_or(ptr::null(), |r| r.address.as_ptr())
    })
}

/// True when the message was taken for recipient `index` (its RCPT was accepted, and
/// under LMTP its delivery too); false when refused, out of range or NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_accepted(
    result: *const smtpx_send_result,
    index: usize,
) -> bool {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }.is_some_and(|r| r.accepted)
    })
}

/// The server's reply to recipient `index`'s RCPT, borrowed from the result; NULL when
/// `index` is out of range or `result` is NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_reply(
    result: *const smtpx_send_result,
    index: usize,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }
            .map_or(ptr::null(), |r| &r.reply as *const smtpx_reply)
    })
}

/// Under LMTP, the delivery reply for recipient `index` after the message, borrowed from
/// the result; NULL for SMTP, out of range or NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_recipient_delivery(
    result: *const smtpx_send_result,
    index: usize,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { smtpx_send_result::recipient(result, index) }
            .and_then(|r| r.delivery.as_ref())
            .map_or(ptr::null(), |r| r as *const smtpx_reply)
    })
}

/// The reply to MAIL FROM, borrowed from the result; NULL for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_mail_reply(
    result: *const smtpx_send_result,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }.map_or(ptr::null(), |r| &r.mail as *const smtpx_reply)
    })
}

/// The final reply after the message (the last one under LMTP) or the refusal of
/// DATA/BDAT, borrowed from the result; NULL when the message was never sent (every
/// recipient refused) or for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_final_reply(
    result: *const smtpx_send_result,
) -> *const smtpx_reply {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }
            .and_then(|r| r.data.as_ref())
            .map_or(ptr::null(), |r| r as *const smtpx_reply)
    })
}

/// The queue id the server named in its final reply ("queued as ID" or "id=ID"),
/// borrowed from the result; NULL when it named none or for NULL.
///
/// Thread safety: safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_send_result_queue_id(result: *const smtpx_send_result) -> *const c_char {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live result.
        unsafe { result.as_ref() }
            .and_then(|r| r.queue_id.as_ref())
            .map_or(ptr::null(), |q| q.as_ptr())
    })
}
