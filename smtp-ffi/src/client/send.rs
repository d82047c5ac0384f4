//! Sending mail through an `smtpx_client`: one message in memory, a batch, or a message
//! read piece by piece from a callback.

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::ptr;

use smtp_core::blocking::client::Error;
use smtp_core::client::{Envelope, TransactionResult};

use super::connection::smtpx_client;
use super::envelope::smtpx_envelope;
use super::result::smtpx_send_result;
use crate::ffi::{into_raw, line_arg, obj, obj_mut, out_arg, try_arg, write_out};
use crate::last_error::record;
use crate::panic::ffi_panic_boundary;
use crate::result::smtpx_result;

/// Reads the envelope arguments shared by both send functions.
///
/// # Safety
/// `from` is a C string; `to` is NULL or points to `n_to` C strings.
pub(crate) unsafe fn envelope_args(
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
) -> Result<Envelope, (smtpx_result, String)> {
    let bad =
        |r: smtpx_result, what: &str| (r, format!("{what}: {}", r.message().to_string_lossy()));
    // SAFETY: from is a C string by this function's contract.
    let from = unsafe { line_arg(from) }.map_err(|r| bad(r, "the sender"))?;
    if to.is_null() {
        return Err(bad(smtpx_result::NullParameter, "the recipient list"));
    }
    if n_to == 0 {
        return Err((
            smtpx_result::InvalidArgument,
            "a message needs at least one recipient".to_owned(),
        ));
    }
    // SAFETY: to points to n_to pointers by this function's contract.
    let pointers = unsafe { std::slice::from_raw_parts(to, n_to) };
    let mut recipients = Vec::with_capacity(n_to);
    for (i, &p) in pointers.iter().enumerate() {
        // SAFETY: each element is a C string by this function's contract.
        let r = unsafe { line_arg(p) }.map_err(|r| bad(r, &format!("recipient {i}")))?;
        recipients.push(r);
    }
    Envelope::new(from, &recipients).map_err(|e| (smtpx_result::InvalidArgument, e.to_string()))
}

/// Sends the message through `client` and stores the result for C. A refused MAIL FROM
/// is a failure of the call (SMTPX_RESULT_SENDER_REFUSED, the reply in the last error),
/// not a result whose every recipient shows the 503 that followed.
fn finish_send(
    client: &mut smtpx_client,
    outcome: Result<TransactionResult, Error>,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    match outcome {
        Ok(result) if !result.mail.is_completion() => client.sender_refused(&result.mail),
        Ok(result) => {
            let result = into_raw(smtpx_send_result::new(&result));
            // SAFETY: out_result was checked non-NULL by the caller.
            unsafe { write_out(out_result, result) };
            smtpx_result::Ok
        }
        Err(e) => client.fail(&e),
    }
}

/// Sends one message held in memory (`msg`, `len` bytes: headers, a blank line, the
/// body) from `from` to the `n_to` addresses in `to`, and writes the outcome for each
/// recipient to `*out_result` (release with `smtpx_send_result_free`).
///
/// A refused recipient is not an error: check `smtpx_send_result_success` and each
/// recipient's reply. A refused sender is: SMTPX_RESULT_SENDER_REFUSED, with the MAIL
/// reply as `smtpx_client_last_error_reply` (the connection stays usable). Bare LF and CR become CRLF and dot-stuffing is done here.
/// Addresses are bare (`user@example.com`, no angle brackets); "" is the null sender.
/// An address with CR or LF gives SMTPX_RESULT_INJECTION and sends nothing.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_send(
    client: *mut smtpx_client,
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
    msg: *const u8,
    len: usize,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        record(client, |client| {
            try_arg!(out_arg(out_result));
            if msg.is_null() && len != 0 {
                return client.refuse(smtpx_result::NullParameter, "the message is NULL");
            }
            // SAFETY: from, to and n_to as documented.
            let envelope = match unsafe { envelope_args(from, to, n_to) } {
                Ok(e) => e,
                Err((r, m)) => return client.refuse(r, m),
            };
            let message: &[u8] = if len == 0 {
                &[]
            } else {
                // SAFETY: msg is not NULL and readable for len bytes (the caller's contract).
                unsafe { std::slice::from_raw_parts(msg, len) }
            };
            let session = try_arg!(client.session());
            let outcome = session.send_bytes(&envelope, message);
            finish_send(client, outcome, out_result)
        })
    })
}

/// One message of a batch for `smtpx_client_send_batch`: the envelope as
/// `smtpx_client_send` takes it (`from`, and `n_to` recipient addresses in `to`) and the
/// message held in memory (`data`, `len` bytes). Read during the call only.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_message {
    /// The sender, bare (`user@example.com`); "" is the null sender.
    pub from: *const c_char,
    /// `n_to` recipient addresses.
    pub to: *const *const c_char,
    /// How many addresses `to` holds (at least one).
    pub n_to: usize,
    /// The message: headers, a blank line, the body. NULL only when `len` is 0.
    pub data: *const u8,
    /// The length of `data` in bytes.
    pub len: usize,
}

/// Sends the `n` messages of `messages` over this connection, one transaction each. When
/// the server offers PIPELINING (and not CHUNKING) each next message's MAIL, RCPT and
/// DATA leave in the same write as the previous message's final dot, so a message costs
/// one round trip instead of two.
///
/// `out_results` and `out_codes` point to arrays of `n` elements. For message `i`,
/// `out_codes[i]` is SMTPX_RESULT_OK and `out_results[i]` its outcome (refusals are in it;
/// release each with `smtpx_send_result_free`), or `out_codes[i]` is the error that
/// message failed with (SMTPX_RESULT_MESSAGE_TOO_LARGE, say) and `out_results[i]` is
/// NULL. `*out_done` is how many messages have an outcome. Every envelope is checked
/// before anything is sent: a bad one returns its code (SMTPX_RESULT_INJECTION, ...)
/// with `*out_done` 0.
///
/// Returns SMTPX_RESULT_OK when every message has an outcome. An error that closes the
/// connection ends the batch: it is returned, `out_codes[*out_done - 1]` holds it too
/// (for the oldest message without an outcome, which may or may not have been
/// delivered), the messages from `*out_done` on were not sent (their code is
/// SMTPX_RESULT_NOT_READY, their result NULL), and `smtpx_client_last_error` says more.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_send_batch(
    client: *mut smtpx_client,
    messages: *const smtpx_message,
    n: usize,
    out_results: *mut *mut smtpx_send_result,
    out_codes: *mut smtpx_result,
    out_done: *mut usize,
) -> smtpx_result {
    send_batch(
        client,
        messages,
        n,
        out_results,
        out_codes,
        out_done,
        None,
        ptr::null_mut(),
    )
}

/// The outcome callback of `smtpx_client_send_batch_each`, called once per message with
/// an outcome, in message order, as soon as that outcome is known (while later messages
/// are still under way): `index` is the message's place in the batch, `code` and `result`
/// what `out_codes[index]` and `out_results[index]` then hold (`result` is NULL unless
/// `code` is SMTPX_RESULT_OK; the caller owns it, as the array's). Runs on the calling
/// thread, during the call only; it must not use the client.
#[allow(non_camel_case_types)]
pub type smtpx_batch_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        index: usize,
        code: smtpx_result,
        result: *const smtpx_send_result,
    ),
>;

/// Does what `smtpx_client_send_batch` does, and calls `on_result` (with `userdata`) for
/// each message as soon as its outcome is known, so that a caller can mark a message sent
/// without waiting for the whole batch. `on_result` may be NULL (then this is
/// `smtpx_client_send_batch`). The arrays are filled as with `smtpx_client_send_batch`.
///
/// Thread safety: one thread at a time per client.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn smtpx_client_send_batch_each(
    client: *mut smtpx_client,
    messages: *const smtpx_message,
    n: usize,
    out_results: *mut *mut smtpx_send_result,
    out_codes: *mut smtpx_result,
    out_done: *mut usize,
    on_result: smtpx_batch_callback,
    userdata: *mut c_void,
) -> smtpx_result {
    send_batch(
        client,
        messages,
        n,
        out_results,
        out_codes,
        out_done,
        on_result,
        userdata,
    )
}

/// Why a batch message failed, kept to be recorded as the client's last error once the
/// batch is over (the session holds the client while it runs).
enum Failure {
    Sender(smtp_core::reply::Reply),
    Error(Error),
}

/// Both batch calls.
#[allow(clippy::too_many_arguments)]
fn send_batch(
    client: *mut smtpx_client,
    messages: *const smtpx_message,
    n: usize,
    out_results: *mut *mut smtpx_send_result,
    out_codes: *mut smtpx_result,
    out_done: *mut usize,
    on_result: smtpx_batch_callback,
    userdata: *mut c_void,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        record(client, |client| {
            try_arg!(out_arg(out_done));
            // SAFETY: out_done was checked non-NULL above.
            unsafe { write_out(out_done, 0) };
            if n == 0 {
                return smtpx_result::Ok;
            }
            if messages.is_null() || out_results.is_null() || out_codes.is_null() {
                return client.refuse(
                    smtpx_result::NullParameter,
                    "messages, out_results and out_codes must not be NULL",
                );
            }
            // SAFETY: messages points to n readable elements (the caller's contract).
            let messages = unsafe { std::slice::from_raw_parts(messages, n) };
            // SAFETY: out_results and out_codes point to n writable elements each.
            let (results, codes) = unsafe {
                (
                    std::slice::from_raw_parts_mut(out_results, n),
                    std::slice::from_raw_parts_mut(out_codes, n),
                )
            };
            results.fill(ptr::null_mut());
            codes.fill(smtpx_result::NotReady);
            let mut envelopes = Vec::with_capacity(n);
            let mut bodies: Vec<&[u8]> = Vec::with_capacity(n);
            for (i, m) in messages.iter().enumerate() {
                if m.data.is_null() && m.len != 0 {
                    return client.refuse(
                        smtpx_result::NullParameter,
                        format!("message {i}: the data is NULL"),
                    );
                }
                // SAFETY: from, to and n_to as documented for smtpx_message.
                match unsafe { envelope_args(m.from, m.to, m.n_to) } {
                    Ok(e) => envelopes.push(e),
                    Err((r, text)) => return client.refuse(r, format!("message {i}: {text}")),
                }
                bodies.push(if m.len == 0 {
                    &[]
                } else {
                    // SAFETY: data is not NULL and readable for len bytes (the caller's
                    // contract), and stays so during the call.
                    unsafe { std::slice::from_raw_parts(m.data, m.len) }
                });
            }
            let session = try_arg!(client.session());
            let mut last = smtpx_result::Ok;
            let mut failure = None;
            let batch = envelopes.iter().zip(bodies.iter().copied());
            let done = session.send_batch_with(batch, |i, outcome| {
                match outcome {
                    Ok(result) if !result.mail.is_completion() => {
                        codes[i] = smtpx_result::SenderRefused;
                        failure = Some(Failure::Sender(result.mail));
                        last = codes[i];
                    }
                    Ok(result) => {
                        results[i] = into_raw(smtpx_send_result::new(&result));
                        codes[i] = smtpx_result::Ok;
                    }
                    Err(e) => {
                        codes[i] = super::error::result_of(&e);
                        failure = Some(Failure::Error(e));
                        last = codes[i];
                    }
                }
                if let Some(callback) = on_result {
                    // SAFETY: the caller's callback, with its userdata, on its thread
                    // during the call; results[i] is NULL or a live result it owns.
                    unsafe { callback(userdata, i, codes[i], results[i]) };
                }
            });
            // The last failure is the client's last error, as each would have been in turn.
            match failure {
                Some(Failure::Sender(mail)) => {
                    client.sender_refused(&mail);
                }
                Some(Failure::Error(e)) => {
                    client.fail(&e);
                }
                None => {}
            }
            // SAFETY: out_done was checked non-NULL above.
            unsafe { write_out(out_done, done) };
            if done == n { smtpx_result::Ok } else { last }
        })
    })
}

/// The read callback of `smtpx_client_send_stream`: fills `buf` (of `len` bytes) with up
/// to `len` bytes of the message, writes how many to `*out_n`, and returns 0; `*out_n`
/// 0 means the message is complete. Any other return value is an error (an errno value,
/// for example): the connection is then closed, so that a truncated message is never
/// delivered, and the send fails with SMTPX_RESULT_MESSAGE_SOURCE. Runs on the calling
/// thread, during the call only.
#[allow(non_camel_case_types)]
pub type smtpx_read_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        buf: *mut u8,
        len: usize,
        out_n: *mut usize,
    ) -> c_int,
>;

/// Adapts a C read callback to `std::io::Read`.
struct CallbackReader {
    callback: unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> c_int,
    userdata: *mut c_void,
}

impl io::Read for CallbackReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        // SAFETY: buf is initialised and writable for buf.len() bytes, n is a valid
        // out-pointer; the callback's contract is to write at most len bytes.
        let rc = unsafe { (self.callback)(self.userdata, buf.as_mut_ptr(), buf.len(), &mut n) };
        if rc != 0 {
            return Err(io::Error::other(format!("the read callback returned {rc}")));
        }
        if n > buf.len() {
            return Err(io::Error::other(format!(
                "the read callback reported {n} bytes for a buffer of {}",
                buf.len()
            )));
        }
        Ok(n)
    }
}

/// Sends one message read piece by piece from `read_callback` (see
/// `smtpx_read_callback`), which receives `userdata`; otherwise as `smtpx_client_send`.
/// The message is never held whole in memory. SIZE is not announced.
///
/// Thread safety: one thread at a time per client; the callback runs on the calling
/// thread.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_send_stream(
    client: *mut smtpx_client,
    from: *const c_char,
    to: *const *const c_char,
    n_to: usize,
    read_callback: smtpx_read_callback,
    userdata: *mut c_void,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        record(client, |client| {
            try_arg!(out_arg(out_result));
            let Some(callback) = read_callback else {
                return client.refuse(smtpx_result::NullParameter, "the read callback is NULL");
            };
            // SAFETY: from, to and n_to as documented.
            let envelope = match unsafe { envelope_args(from, to, n_to) } {
                Ok(e) => e,
                Err((r, m)) => return client.refuse(r, m),
            };
            let session = try_arg!(client.session());
            let reader = CallbackReader { callback, userdata };
            let outcome = session.send(&envelope, reader, None);
            finish_send(client, outcome, out_result)
        })
    })
}

/// Sends one message held in memory (`msg`, `len` bytes) with the envelope `envelope`
/// (see `smtpx_envelope`: DSN parameters, BODY, SMTPUTF8), otherwise as
/// `smtpx_client_send`. The envelope is not consumed. An envelope without recipients
/// gives SMTPX_RESULT_INVALID_ARGUMENT.
///
/// Thread safety: one thread at a time per client and per envelope.
#[unsafe(no_mangle)]
pub extern "C" fn smtpx_client_send_envelope(
    client: *mut smtpx_client,
    envelope: *const smtpx_envelope,
    msg: *const u8,
    len: usize,
    out_result: *mut *mut smtpx_send_result,
) -> smtpx_result {
    ffi_panic_boundary(|| {
        // SAFETY: the caller passes NULL or a live client, used by no other thread.
        let client = try_arg!(unsafe { obj_mut(client) });
        record(client, |client| {
            try_arg!(out_arg(out_result));
            // SAFETY: the caller passes NULL or a live envelope.
            let envelope = try_arg!(unsafe { obj(envelope) });
            if envelope.envelope.recipients.is_empty() {
                return client.refuse(
                    smtpx_result::InvalidArgument,
                    "a message needs at least one recipient",
                );
            }
            if msg.is_null() && len != 0 {
                return client.refuse(smtpx_result::NullParameter, "the message is NULL");
            }
            let message: &[u8] = if len == 0 {
                &[]
            } else {
                // SAFETY: msg is not NULL and readable for len bytes (the caller's contract).
                unsafe { std::slice::from_raw_parts(msg, len) }
            };
            let session = try_arg!(client.session());
            let outcome = session.send_bytes(&envelope.envelope, message);
            finish_send(client, outcome, out_result)
        })
    })
}
