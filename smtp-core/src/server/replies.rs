//! The replies the session writes on its own: greeting, EHLO capabilities, HELP, and the
//! canned positive and negative replies.

use crate::ehlo::Capabilities;
use crate::reply::{EnhancedCode, Reply, ReplyCode};

use super::ServerSession;

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
