//! The replies the session writes on its own: greeting, EHLO capabilities, HELP, and the
//! canned positive and negative replies.

use crate::ehlo::Capabilities;
use crate::reply::{EnhancedCode, Reply, ReplyCode};

use super::ServerSession;

/// A one-line reply of the session's own with a fixed text, in its two wire forms, for the
/// replies said with every message (see [`ServerSession::reply_fixed`]). Each is the wire
/// form of [`FixedReply::to_reply`], which the tests check.
pub(super) struct FixedReply {
    /// With the enhanced status code, for a session that announces ENHANCEDSTATUSCODES.
    pub(super) enhanced: &'static [u8],
    /// Without it.
    pub(super) plain: &'static [u8],
}

impl FixedReply {
    /// The default acceptance of MAIL.
    pub(super) const SENDER_OK: FixedReply = FixedReply {
        enhanced: b"250 2.1.0 Ok\r\n",
        plain: b"250 Ok\r\n",
    };
    /// The default acceptance of RCPT.
    pub(super) const RECIPIENT_OK: FixedReply = FixedReply {
        enhanced: b"250 2.1.5 Ok\r\n",
        plain: b"250 Ok\r\n",
    };
    /// The default go-ahead of DATA (no enhanced code: RFC 3463 gives none to 3xx).
    pub(super) const START_DATA: FixedReply = FixedReply {
        enhanced: b"354 End data with <CR><LF>.<CR><LF>\r\n",
        plain: b"354 End data with <CR><LF>.<CR><LF>\r\n",
    };
    /// The default acceptance of a message.
    pub(super) const QUEUED: FixedReply = FixedReply {
        enhanced: b"250 2.0.0 Ok: queued\r\n",
        plain: b"250 Ok: queued\r\n",
    };

    /// The same reply as a [`Reply`].
    #[cfg(test)]
    fn to_reply(&self) -> Reply {
        let line = std::str::from_utf8(self.enhanced).expect("ASCII");
        let line = line.strip_suffix("\r\n").expect("one line");
        let (code, rest) = line.split_at(3);
        let code = ReplyCode::new(code.parse().expect("a code")).expect("a reply code");
        let rest = &rest[1..];
        match rest.split_once(' ') {
            Some((enhanced, text)) if EnhancedCode::parse(enhanced).is_some() => {
                Reply::new(code, EnhancedCode::parse(enhanced), text)
            }
            _ => Reply::new(code, None, rest),
        }
    }
}

impl ServerSession {
    pub(super) fn help_text(&self) -> String {
        let mut text = String::from(if self.config.lmtp {
            "Commands: LHLO"
        } else {
            "Commands: HELO EHLO"
        });
        text.push_str(" MAIL RCPT DATA");
        if self.config.chunking {
            text.push_str(" BDAT");
        }
        text.push_str(" RSET NOOP QUIT VRFY EXPN HELP");
        if self.config.starttls {
            text.push_str(" STARTTLS");
        }
        if !self.config.auth_mechanisms.is_empty() {
            text.push_str(" AUTH");
        }
        text
    }

    pub(super) fn greeting(&self) -> Reply {
        let banner = self.config.banner.clone().unwrap_or_else(|| {
            if self.config.lmtp {
                "LMTP smtpx".to_owned()
            } else {
                "ESMTP smtpx".to_owned()
            }
        });
        Reply::new(
            ReplyCode::SERVICE_READY,
            None,
            format!("{} {}", self.config.hostname, banner),
        )
    }

    /// The EHLO reply for the session's current state.
    pub fn capabilities(&self) -> Capabilities {
        let c = &self.config;
        Capabilities {
            domain: c.hostname.clone(),
            greeting: String::new(),
            pipelining: c.pipelining,
            // u64::MAX is "no limit": nothing to announce.
            size: (c.max_message_size != u64::MAX).then_some(c.max_message_size),
            eight_bit_mime: c.eight_bit_mime,
            smtputf8: c.smtputf8,
            enhanced_status_codes: c.enhanced_status_codes,
            chunking: c.chunking,
            binary_mime: c.chunking,
            dsn: c.dsn,
            starttls: c.starttls && !self.tls,
            auth: if self.auth_offered() {
                c.auth_mechanisms.clone()
            } else {
                Vec::new()
            },
            other: Vec::new(),
        }
    }
}

pub(super) fn ok(text: &str) -> Reply {
    Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each fixed reply says exactly what its `Reply` would say, with and without the
    /// enhanced code, and names the code and text the session has always used.
    #[test]
    fn fixed_replies_are_the_replies_they_stand_for() {
        let expected = [
            (
                &FixedReply::SENDER_OK,
                250,
                Some(EnhancedCode::SENDER_OK),
                "Ok",
            ),
            (
                &FixedReply::RECIPIENT_OK,
                250,
                Some(EnhancedCode::RECIPIENT_OK),
                "Ok",
            ),
            (
                &FixedReply::START_DATA,
                354,
                None,
                "End data with <CR><LF>.<CR><LF>",
            ),
            (
                &FixedReply::QUEUED,
                250,
                Some(EnhancedCode::OK),
                "Ok: queued",
            ),
        ];
        for (fixed, code, enhanced, text) in expected {
            let reply = Reply::new(ReplyCode::new(code).unwrap(), enhanced, text);
            assert_eq!(fixed.to_reply(), reply);
            assert_eq!(fixed.enhanced, reply.to_bytes());
            assert_eq!(fixed.plain, reply.without_enhanced().to_bytes());
        }
    }
}
