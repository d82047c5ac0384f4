//! `smtpx_decision`: the reply C code gives to a hook (a handler callback's out-parameter,
//! or the answer to a sans-I/O session's or connection's event), and its translation to a
//! [`Reply`].

use std::ffi::c_char;

use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};

use crate::reply::smtpx_enhanced_code;

/// The size of `smtpx_decision.text`, including the terminating NUL.
pub const SMTPX_DECISION_TEXT_LEN: usize = 256;

/// The reply a handler callback gives when it returns SMTPX_REPLY, and the answer a
/// sans-I/O session or connection is given for an event or hook (zero it, then fill it).
///
/// For callbacks, the library zeroes it before each call. `code` is a reply code (200 to 599): a 2xx
/// (or 3xx for data_start) accepts with this text, anything else refuses. An invalid code
/// becomes 451 4.3.0. `text` is NUL-terminated; an empty text gives the code's standard
/// meaning. A multi-line reply separates its lines with LF (`"first\nsecond"` is sent
/// as `550-first` and `550 second`, the code and enhanced code on every line); CR is
/// dropped, so a text can never inject a line of its own.
///
/// Thread safety: a plain value, owned by the calling thread during the callback.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct smtpx_decision {
    /// The reply code, for example 550.
    pub code: u16,
    /// True when `enhanced` holds an enhanced status code to send.
    pub has_enhanced: bool,
    /// The enhanced status code, for example 5.1.1.
    pub enhanced: smtpx_enhanced_code,
    /// The reply text, NUL-terminated.
    pub text: [c_char; SMTPX_DECISION_TEXT_LEN],
}

impl smtpx_decision {
    pub(crate) fn zeroed() -> smtpx_decision {
        smtpx_decision {
            code: 0,
            has_enhanced: false,
            enhanced: smtpx_enhanced_code::default(),
            text: [0; SMTPX_DECISION_TEXT_LEN],
        }
    }

    /// The reply this decision asks for (451 4.3.0 when the code is invalid).
    pub(crate) fn to_reply(self) -> Reply {
        let len = self
            .text
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.text.len());
        let bytes: Vec<u8> = self.text[..len].iter().map(|&c| c as u8).collect();
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        let enhanced = self.has_enhanced.then(|| {
            EnhancedCode::new(
                self.enhanced.status_class,
                self.enhanced.subject,
                self.enhanced.detail,
            )
        });
        match ReplyCode::new(self.code).filter(|c| (200..600).contains(&c.get())) {
            Some(code) => {
                if text.trim().is_empty() {
                    return Reply::new(code, enhanced, code.meaning().unwrap_or("OK"));
                }
                let lines = text.trim_end_matches('\n').split('\n').map(str::to_owned);
                Reply::with_lines(code, enhanced, lines.collect())
            }
            None => Reply::new(
                ReplyCode::new(451).expect("451 is a reply code"),
                Some(EnhancedCode::TEMP_LOCAL_ERROR),
                "Local error in processing",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(code: u16, text: &[u8]) -> smtpx_decision {
        let mut d = smtpx_decision::zeroed();
        d.code = code;
        for (slot, &b) in d.text.iter_mut().zip(text) {
            *slot = b as c_char;
        }
        d
    }

    #[test]
    fn lf_separates_lines_and_cannot_inject_one() {
        let reply = decision(550, b"no\r\n250 such user").to_reply();
        assert_eq!(reply.code().get(), 550);
        assert_eq!(reply.to_bytes(), b"550-no\r\n550 250 such user\r\n");
        let one = decision(250, b"fine\n").to_reply();
        assert_eq!(one.to_bytes(), b"250 fine\r\n");
    }

    #[test]
    fn an_invalid_code_becomes_a_local_error() {
        for code in [0, 199, 600, 260, u16::MAX] {
            let reply = decision(code, b"x").to_reply();
            assert_eq!(reply.code().get(), 451, "code {code}");
        }
    }

    #[test]
    fn an_empty_text_gives_the_standard_meaning_and_bad_utf8_is_replaced() {
        assert!(!decision(250, b"").to_reply().text().is_empty());
        assert_eq!(decision(250, b"a\xffb").to_reply().text(), "a\u{FFFD}b");
        // A text filling the whole array without a NUL is taken whole, not overrun.
        let full = decision(250, &[b'x'; SMTPX_DECISION_TEXT_LEN]);
        assert_eq!(full.to_reply().text().len(), SMTPX_DECISION_TEXT_LEN);
    }
}
