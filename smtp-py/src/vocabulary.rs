//! The one translation of the engine's hooks into Python: a [`Hook`] becomes an
//! [`Event`] whose fields are filled from the hook's arguments by their kind
//! ([`Hook::for_each_arg`]), so a hook the core adds later reaches Python with its name
//! and arguments without a change here. The sans-I/O session's events
//! (`_native.ServerSession`) and the connection's hooks (`_native.ServerConnection`) both
//! come through it.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use smtp_core::server::hooks::{Hook, HookArg};
use smtp_core::server::{AbortReason, HelloVerb};

use crate::sans_io::Event;
use crate::server::{mail_options, rcpt_options};

/// The name Python code sees for a greeting verb.
pub(crate) fn verb_name(verb: HelloVerb) -> &'static str {
    match verb {
        HelloVerb::Helo => "HELO",
        HelloVerb::Ehlo => "EHLO",
        HelloVerb::Lhlo => "LHLO",
    }
}

/// The name Python code sees for why a message was dropped.
fn reason_name(reason: AbortReason) -> &'static str {
    match reason {
        AbortReason::TooLarge => "too_large",
        AbortReason::BareLineEnding => "bare_line_ending",
        AbortReason::Disconnected => "disconnected",
        AbortReason::Reset => "reset",
    }
}

/// `hook` as an [`Event`] of kind `kind`: a greeting's verb and domain, AUTH's
/// mechanism, user name and password, MAIL's sender and RCPT's recipient with their
/// options, a chunk as `data`, an abort's `reason`, and any other text argument as
/// `argument`. The envelope (`transaction`) is not copied: Python keeps its own.
pub(crate) fn hook_event(py: Python<'_>, kind: &'static str, hook: &Hook<'_>) -> Event {
    let mut event = Event {
        kind,
        needs_decision: hook.needs_decision(),
        ..Event::default()
    };
    let mut recipient = None;
    hook.for_each_arg(|name, value| match value {
        HookArg::Verb(verb) => event.verb = Some(verb_name(verb)),
        HookArg::Text(text) if name == "domain" => event.domain = Some(text.to_owned()),
        HookArg::Text(text) => event.argument = Some(text.to_owned()),
        HookArg::Auth(attempt) => {
            event.mechanism = Some(attempt.mechanism.name().to_owned());
            event.username = Some(attempt.username.clone());
            event.password = Some(attempt.password.expose().to_owned());
        }
        HookArg::Sender(from) => event.sender = Some(from.as_str().to_owned()),
        HookArg::MailParams(params) => event.options = mail_options(params),
        HookArg::Recipient(to) => {
            event.recipient = Some(to.as_str().to_owned());
            recipient = Some(to);
        }
        HookArg::RcptParams(params) => {
            if let Some(to) = recipient {
                event.options = rcpt_options(to, params);
            }
        }
        HookArg::Bytes(bytes) => event.data = Some(PyBytes::new(py, bytes).unbind()),
        HookArg::AbortReason(reason) => event.reason = Some(reason_name(reason)),
        // The envelope, and kinds of argument this module does not know yet.
        _ => {}
    });
    event
}
