//! Short ways to answer a hook: `Decision::reject(550, "5.7.1", "relay denied")` instead of
//! building the [`Reply`] by hand.

use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::Decision;
use crate::server::hooks::internal_error;

impl Decision {
    /// Refuses with this code (4xx temporary, 5xx permanent), enhanced code (`"5.7.1"`, or
    /// `""` for none) and text.
    ///
    /// A code that is not 4xx or 5xx, or an enhanced code that does not parse or whose
    /// class disagrees with the code, is a bug in the caller: it becomes `451 4.3.0`
    /// (logged), never an acceptance.
    ///
    /// ```
    /// use smtp_core::server::Decision;
    /// use smtp_core::reply::{EnhancedCode, ReplyCode};
    /// let Decision::Reply(reply) = Decision::reject(550, "5.7.1", "relay denied") else { panic!() };
    /// assert_eq!(reply.code(), ReplyCode::MAILBOX_UNAVAILABLE);
    /// assert_eq!(reply.enhanced(), Some(EnhancedCode::new(5, 7, 1)));
    /// // Not a refusal: fails closed.
    /// let Decision::Reply(reply) = Decision::reject(250, "2.0.0", "ok") else { panic!() };
    /// assert_eq!(reply.code().get(), 451);
    /// ```
    pub fn reject(code: u16, enhanced: &str, text: impl Into<String>) -> Decision {
        Decision::Reply(refusal(code, enhanced, text.into()))
    }

    /// Refuses for now: `451 4.3.0` with this text (the client tries again later).
    pub fn temp_fail(text: impl Into<String>) -> Decision {
        Decision::Reply(Reply::new(
            ReplyCode::LOCAL_ERROR,
            Some(EnhancedCode::TEMP_LOCAL_ERROR),
            text,
        ))
    }

    /// Accepts a message with `250 2.0.0 Ok: queued as ID`, the form clients read a queue
    /// id from (for `data_end`).
    pub fn queued(id: impl std::fmt::Display) -> Decision {
        Decision::Reply(Reply::new(
            ReplyCode::OK,
            Some(EnhancedCode::OK),
            format!("Ok: queued as {id}"),
        ))
    }
}

fn refusal(code: u16, enhanced: &str, text: String) -> Reply {
    let Some(code) = ReplyCode::new(code).filter(|c| c.get() >= 400 && c.get() < 600) else {
        log::error!("Decision::reject with {code}, which is no refusal: answering 451");
        return internal_error();
    };
    let enhanced = if enhanced.is_empty() {
        None
    } else {
        match EnhancedCode::parse(enhanced) {
            Some(e) if u16::from(e.class) == code.get() / 100 => Some(e),
            _ => {
                log::error!(
                    "Decision::reject with enhanced code {enhanced:?} for {code}: answering 451"
                );
                return internal_error();
            }
        }
    };
    Reply::new(code, enhanced, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_answers() {
        assert_eq!(
            Decision::reject(452, "4.2.2", "full"),
            Decision::Reply(Reply::new(
                ReplyCode::new(452).unwrap(),
                Some(EnhancedCode::new(4, 2, 2)),
                "full"
            ))
        );
        let Decision::Reply(r) = Decision::reject(554, "", "no") else {
            panic!()
        };
        assert_eq!(r.enhanced(), None);
        for bad in [
            Decision::reject(354, "", "go"),
            Decision::reject(550, "2.0.0", "mismatch"),
            Decision::reject(550, "5.x", "garbage"),
            Decision::reject(9999, "", "nonsense"),
        ] {
            assert_eq!(bad, Decision::Reply(internal_error()));
        }
        let Decision::Reply(r) = Decision::queued("ABC123") else {
            panic!()
        };
        assert_eq!(r.text(), "Ok: queued as ABC123");
        assert!(r.is_completion());
        let Decision::Reply(r) = Decision::temp_fail("later") else {
            panic!()
        };
        assert!(r.is_transient());
    }
}
