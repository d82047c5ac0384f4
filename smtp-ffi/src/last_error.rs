//! The one last-error rule every object with a `*_last_error` function follows.
//!
//! The rule, stated in the header: each call on the object that does something (not the
//! read-only queries such as `*_last_error`, `*_is_*` or `smtpx_client_has_extension`)
//! first clears the object's last error; when the call fails, the last error says why.
//! The last error therefore always describes the most recent such call: empty after a
//! success, the reason after a failure (at least the result code's own description).
//! A call whose object pointer is NULL has no object to record on.

use smtp_core::blocking::client::Error;

use crate::reply::smtpx_reply;
use crate::result::smtpx_result;

/// The detail of the last failure: the message and the server's reply when there was one.
#[derive(Debug, Default)]
pub(crate) struct LastError {
    pub(crate) message: String,
    pub(crate) reply: Option<smtpx_reply>,
}

impl LastError {
    /// Records a client error: its message and the server's reply behind it.
    pub(crate) fn set(&mut self, error: &Error) {
        self.message = error.to_string();
        self.reply = error.reply().map(smtpx_reply::new);
    }

    /// Records a failure found at the boundary (a bad argument, a wrong state).
    pub(crate) fn set_message(&mut self, message: impl Into<String>) {
        self.message = message.into();
        self.reply = None;
    }

    /// Forgets the last failure (a call is starting).
    pub(crate) fn clear(&mut self) {
        self.message.clear();
        self.reply = None;
    }
}

/// An object that keeps the detail of its last failed call.
pub(crate) trait KeepsLastError {
    /// The object's last error.
    fn last_error_mut(&mut self) -> &mut LastError;
}

/// Runs one call on `object` under the last-error rule: cleared first; on failure, set
/// to what the call recorded or else to the result code's description.
pub(crate) fn record<T: KeepsLastError>(
    object: &mut T,
    call: impl FnOnce(&mut T) -> smtpx_result,
) -> smtpx_result {
    object.last_error_mut().clear();
    let result = call(object);
    let last = object.last_error_mut();
    if result == smtpx_result::Ok {
        // A call that succeeds as a whole (a batch with refused messages, say) leaves no
        // last error: the per-item outcomes carry those.
        last.clear();
    } else if last.message.is_empty() {
        last.set_message(result.message().to_string_lossy());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Thing(LastError);

    impl KeepsLastError for Thing {
        fn last_error_mut(&mut self) -> &mut LastError {
            &mut self.0
        }
    }

    #[test]
    fn a_failure_is_described_and_a_success_clears_it() {
        let mut thing = Thing::default();
        assert_eq!(
            record(&mut thing, |_| smtpx_result::NotReady),
            smtpx_result::NotReady
        );
        assert_eq!(
            thing.0.message,
            "the object is not ready for this call (closed or stopped)"
        );
        record(&mut thing, |t| {
            t.0.set_message("specific");
            smtpx_result::Io
        });
        assert_eq!(thing.0.message, "specific");
        let ok = record(&mut thing, |t| {
            t.0.set_message("a part failed");
            smtpx_result::Ok
        });
        assert_eq!(ok, smtpx_result::Ok);
        assert!(thing.0.message.is_empty());
    }
}
