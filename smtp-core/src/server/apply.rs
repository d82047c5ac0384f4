//! What the embedder's answer to a decision event does to the session.

use crate::reply::{EnhancedCode, Reply, ReplyCode};

use super::replies::{FixedReply, ok};
use super::session::{Pending, Phase};
use super::{HelloVerb, ServerEvent, ServerSession};

impl ServerSession {
    pub(super) fn apply_decision(
        &mut self,
        pending: Pending,
        accepted: bool,
        custom: Option<Reply>,
    ) {
        match pending {
            Pending::Connect => {
                if accepted {
                    if self.config.pipelining_sync && self.input_pos < self.input.len() {
                        // Input that is here before the greeting was sent before it (RFC
                        // 5321 §4.3.1): a spam engine that does not wait.
                        self.sync_error();
                        return;
                    }
                    let reply = custom.unwrap_or_else(|| self.greeting());
                    self.reply(reply.without_enhanced());
                    self.wait_for_command();
                } else {
                    let reply = custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        None,
                        format!("{} Service not available", self.config.hostname),
                    ));
                    if reply.code() == ReplyCode::SERVICE_UNAVAILABLE {
                        self.close_with(reply);
                    } else {
                        self.reply(reply);
                        self.phase = Phase::Rejected;
                        self.wait_for_command();
                    }
                }
            }
            Pending::Hello(verb) => {
                if accepted {
                    if self.in_transaction {
                        self.queued.push_back(ServerEvent::Reset);
                    }
                    self.end_transaction();
                    self.hello = Some(verb);
                    // A positive reply of the handler's is said instead of the standard
                    // one (an EHLO reply with its extension lines edited); the session's
                    // state is the same either way.
                    let custom = custom.filter(|_| self.config.handler_replies);
                    let reply = match (verb, custom) {
                        (_, Some(reply)) => reply,
                        (HelloVerb::Helo, None) => {
                            Reply::new(ReplyCode::OK, None, self.config.hostname.clone())
                        }
                        (HelloVerb::Ehlo | HelloVerb::Lhlo, None) => self.capabilities().to_reply(),
                    };
                    self.reply(reply);
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::NOT_AUTHORIZED),
                        "Error: greeting refused",
                    )));
                }
            }
            Pending::Auth(user) => {
                if accepted {
                    self.authenticated = Some(user);
                    self.reply(custom.unwrap_or_else(|| {
                        Reply::new(
                            ReplyCode::AUTH_SUCCEEDED,
                            Some(EnhancedCode::AUTH_SUCCEEDED),
                            "Authentication successful",
                        )
                    }));
                } else {
                    self.auth_failures += 1;
                    let reply = custom.unwrap_or(Reply::new(
                        ReplyCode::AUTH_INVALID,
                        Some(EnhancedCode::AUTH_INVALID),
                        "Error: authentication failed",
                    ));
                    if self.auth_failures >= self.config.max_auth_failures {
                        self.reply(reply);
                        self.close_with(Reply::new(
                            ReplyCode::SERVICE_UNAVAILABLE,
                            Some(EnhancedCode::TOO_MANY_ERRORS),
                            format!(
                                "{} Error: too many authentication failures",
                                self.config.hostname
                            ),
                        ));
                    } else {
                        self.error_reply(reply);
                    }
                }
            }
            Pending::Mail => {
                if accepted {
                    self.in_transaction = true;
                    match custom {
                        Some(reply) => self.reply(reply),
                        None => self.reply_fixed(&FixedReply::SENDER_OK),
                    }
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::NOT_AUTHORIZED),
                        "Error: sender refused",
                    )));
                }
            }
            Pending::Rcpt => {
                if accepted {
                    self.recipients += 1;
                    match custom {
                        Some(reply) => self.reply(reply),
                        None => self.reply_fixed(&FixedReply::RECIPIENT_OK),
                    }
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::BAD_DESTINATION),
                        "Error: recipient refused",
                    )));
                }
            }
            Pending::DataStart => {
                if accepted {
                    match custom.filter(|r| r.code() == ReplyCode::START_MAIL_INPUT) {
                        Some(reply) => self.reply(reply),
                        None => self.reply_fixed(&FixedReply::START_DATA),
                    }
                    self.start_message();
                    self.receiver.reset();
                    self.phase = Phase::Data;
                    self.deadline = Some(self.now + self.config.data_timeout);
                } else {
                    self.error_reply(custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        Some(EnhancedCode::NOT_AUTHORIZED),
                        "Error: message refused",
                    )));
                }
            }
            Pending::BdatStart { size, last } => {
                if accepted {
                    self.start_message();
                    self.phase = Phase::Bdat {
                        remaining: size,
                        last,
                        size,
                    };
                } else {
                    let reply = custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        Some(EnhancedCode::NOT_AUTHORIZED),
                        "Error: message refused",
                    ));
                    self.end_transaction();
                    self.queued.push_back(ServerEvent::Reset);
                    self.phase = Phase::BdatDrain {
                        remaining: size,
                        reply,
                    };
                }
            }
            Pending::MessageEnd if accepted && custom.is_none() && !self.config.lmtp => {
                self.end_transaction();
                self.reply_fixed(&FixedReply::QUEUED);
            }
            Pending::MessageEnd => {
                let reply = if accepted {
                    custom.unwrap_or_else(|| {
                        Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), "Ok: queued")
                    })
                } else {
                    custom.unwrap_or(Reply::new(
                        ReplyCode::TRANSACTION_FAILED,
                        Some(EnhancedCode::NOT_AUTHORIZED),
                        "Error: message refused",
                    ))
                };
                let recipients = self.recipients;
                self.end_transaction();
                if self.config.lmtp {
                    for _ in 0..recipients.max(1) {
                        self.reply(reply.clone());
                    }
                } else if accepted {
                    self.reply(reply);
                } else {
                    self.error_reply(reply);
                }
            }
            Pending::Noop | Pending::Rset => match custom {
                Some(reply) if !accepted => self.error_reply(reply),
                custom => self.reply(custom.unwrap_or_else(|| ok("Ok"))),
            },
            Pending::Quit => self.close_with(custom.unwrap_or_else(|| {
                Reply::new(ReplyCode::CLOSING, Some(EnhancedCode::CLOSING), "Bye")
            })),
            Pending::Verify => {
                self.reply(custom.unwrap_or_else(|| {
                    Reply::new(
                        ReplyCode::CANNOT_VERIFY,
                        Some(EnhancedCode::PROTOCOL_OK),
                        "Cannot verify the address, but will accept mail and attempt delivery",
                    )
                }));
            }
            Pending::Expand => {
                self.reply(custom.unwrap_or_else(|| {
                    Reply::new(
                        ReplyCode::CANNOT_VERIFY,
                        Some(EnhancedCode::PROTOCOL_OK),
                        "Will not expand the list",
                    )
                }));
            }
        }
    }

    pub(super) fn finish_lmtp_message(&mut self, mut replies: Vec<Reply>) {
        let recipients = self.recipients.max(1);
        let fallback = replies
            .last()
            .cloned()
            .unwrap_or_else(|| Reply::new(ReplyCode::OK, Some(EnhancedCode::OK), "Ok: delivered"));
        replies.resize(recipients, fallback);
        replies.truncate(recipients);
        self.end_transaction();
        for reply in replies {
            self.reply(reply);
        }
    }
}
