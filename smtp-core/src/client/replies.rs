//! Reading the server's replies: each one is matched with the command it answers and moves
//! the opening, a transaction or a simple command on.

use crate::auth::{self, Credentials};
use crate::command::Command;
use crate::ehlo::{AuthMechanism, Capabilities};
use crate::reply::{Reply, ReplyCode, ReplyError, ReplyParser};
use crate::trace::Direction;

use super::session::{BodyMode, Expect, State};
use super::{ClientError, ClientEvent, ClientSession, StartTlsPolicy, TransactionResult};

impl ClientSession {
    pub(super) fn on_reply(&mut self, reply: Reply) {
        if self.tracer.is_on() {
            self.tracer
                .replies(Direction::ServerToClient, &reply.to_bytes());
        }
        let Some((expect, _)) = self.expected.pop_front() else {
            if reply.code() == ReplyCode::SERVICE_UNAVAILABLE {
                self.fail(ClientError::ServerClosed(reply));
            } else {
                self.fail(ClientError::Protocol(format!("unexpected reply: {reply}")));
            }
            return;
        };
        // Restart the clock for the next awaited reply: timeouts are per command.
        if let Some((next, deadline)) = self.expected.front_mut() {
            let t = &self.config.timeouts;
            let timeout = match next {
                Expect::Rcpt(_) => t.rcpt,
                Expect::Data => t.data_start,
                Expect::DataEnd | Expect::Bdat { last: true } => t.data_end,
                Expect::Bdat { last: false } => t.data_block,
                Expect::Greeting => t.greeting,
                _ => t.command,
            };
            *deadline = (*deadline).max(self.now + timeout);
        }
        if reply.code() == ReplyCode::SERVICE_UNAVAILABLE && expect != Expect::Quit {
            // The 421 answered `expect`: that is where the session ended, not at whatever
            // the next awaited reply (or the transaction's state) would say.
            self.failed_in
                .get_or_insert(super::Phase::of_expect(expect));
            self.fail(ClientError::ServerClosed(reply));
            return;
        }
        match expect {
            Expect::Greeting => {
                self.kept.greeting = Some(reply.clone());
                if reply.code() == ReplyCode::SERVICE_READY {
                    self.send_hello(Expect::Ehlo);
                } else {
                    self.abandon(ClientError::Greeting(reply));
                }
            }
            Expect::Ehlo => {
                if reply.is_completion() {
                    self.capabilities = Some(Capabilities::from_reply(&reply));
                    self.after_hello();
                } else if reply.is_permanent() && !self.config.lmtp {
                    self.send_hello(Expect::Helo);
                } else {
                    self.abandon(ClientError::Hello(reply));
                }
            }
            Expect::Helo => {
                if reply.is_completion() {
                    self.capabilities = None;
                    self.after_hello();
                } else {
                    self.abandon(ClientError::Hello(reply));
                }
            }
            Expect::StartTls => {
                if reply.code() == ReplyCode::SERVICE_READY {
                    self.kept.starttls = Some(reply);
                    // Anything after the 220 arrived before TLS: it can only be injected.
                    self.parser = ReplyParser::new(self.config.reply_limits);
                    self.expected.clear();
                    self.state = State::AwaitTls;
                    self.explicit_starttls = false;
                    self.events.push_back(ClientEvent::StartTls);
                } else if self.config.starttls == StartTlsPolicy::Required
                    && !self.explicit_starttls
                {
                    self.abandon(ClientError::StartTlsRefused(reply));
                } else {
                    let explicit = std::mem::take(&mut self.explicit_starttls);
                    self.events
                        .push_back(ClientEvent::Error(ClientError::StartTlsRefused(reply)));
                    if explicit {
                        self.state = State::Ready;
                    } else {
                        self.after_tls_decision();
                    }
                }
            }
            Expect::AuthPlain | Expect::AuthLoginPassword | Expect::AuthXOAuth2
                if reply.code() == ReplyCode::AUTH_SUCCEEDED =>
            {
                self.authenticated = true;
                self.events.push_back(ClientEvent::Authenticated(reply));
                self.opening_done();
            }
            Expect::AuthXOAuth2 if reply.code() == ReplyCode::AUTH_CONTINUE => {
                // The server's 334 carries an error description; an empty line ends the
                // exchange and brings the final refusal.
                self.output.extend_from_slice(b"\r\n");
                self.tracer.secret(Direction::ClientToServer);
                self.expected
                    .push_front((Expect::AuthXOAuth2, self.now + self.config.timeouts.command));
            }
            Expect::AuthLoginStart | Expect::AuthLoginUser
                if reply.code() == ReplyCode::AUTH_CONTINUE =>
            {
                let Some(credentials) = self.config.credentials.clone() else {
                    return;
                };
                let (next, secret) = match (expect, &credentials) {
                    (Expect::AuthLoginStart, c) => (Expect::AuthLoginUser, c.username().to_owned()),
                    (_, Credentials::Password { password, .. }) => {
                        (Expect::AuthLoginPassword, password.expose().to_owned())
                    }
                    (_, Credentials::OAuth2 { token, .. }) => {
                        (Expect::AuthLoginPassword, token.expose().to_owned())
                    }
                };
                self.output
                    .extend_from_slice(auth::encode(secret.as_bytes()).as_bytes());
                self.output.extend_from_slice(b"\r\n");
                self.tracer.secret(Direction::ClientToServer);
                self.expected
                    .push_front((next, self.now + self.config.timeouts.command));
            }
            Expect::AuthPlain
            | Expect::AuthLoginStart
            | Expect::AuthLoginUser
            | Expect::AuthLoginPassword
            | Expect::AuthXOAuth2 => {
                // An explicit login() reports only its failure; a configured one also ends
                // the opening, so the session is Ready (without authentication).
                let explicit = std::mem::take(&mut self.explicit_auth);
                self.events
                    .push_back(ClientEvent::Error(ClientError::AuthFailed(reply)));
                self.state = State::Ready;
                if !explicit {
                    self.events.push_back(ClientEvent::Ready);
                }
            }
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Data
            | Expect::DataEnd
            | Expect::Bdat { .. } => self.on_transaction_reply(expect, reply),
            Expect::CleanupRset => self.advance_transaction(),
            Expect::Simple => {
                self.state = State::Ready;
                self.events.push_back(ClientEvent::Reply(reply));
            }
            Expect::Rehello { ehlo } => self.on_rehello(reply, ehlo),
            Expect::Quit => {
                self.kept.quit = Some(reply);
                self.state = State::Closed;
                self.expected.clear();
                self.events.push_back(ClientEvent::Closed);
            }
        }
    }

    pub(super) fn after_hello(&mut self) {
        let offered = self.capabilities.as_ref().is_some_and(|c| c.starttls);
        if !self.tls && self.config.starttls != StartTlsPolicy::Never {
            if offered {
                self.send(&Command::StartTls, Expect::StartTls);
                return;
            }
            if self.config.starttls == StartTlsPolicy::Required {
                self.abandon(ClientError::StartTlsUnavailable);
                return;
            }
        }
        self.after_tls_decision();
    }

    pub(super) fn after_tls_decision(&mut self) {
        if self.config.credentials.is_some() && !self.authenticated {
            if !self.auth_allowed() {
                // Nothing of the credentials is written; the opening ends with QUIT, as
                // one that cannot go on the way the caller asked does.
                self.abandon(ClientError::InsecureAuth);
                return;
            }
            if !self.start_auth() {
                self.events
                    .push_back(ClientEvent::Error(ClientError::AuthUnsupported));
                self.opening_done();
            }
            return;
        }
        self.opening_done();
    }

    pub(super) fn opening_done(&mut self) {
        self.state = State::Ready;
        if std::mem::take(&mut self.explicit_auth) {
            return;
        }
        self.events.push_back(ClientEvent::Ready);
    }

    /// True when credentials may be sent now: the connection is encrypted, or the
    /// configuration allows clear text.
    pub(super) fn auth_allowed(&self) -> bool {
        self.tls || self.config.allow_insecure_auth
    }

    /// Sends the first AUTH command; false when no mechanism fits, or when credentials may
    /// not go out in clear (the callers check [`ClientSession::auth_allowed`] first, to
    /// report that).
    pub(super) fn start_auth(&mut self) -> bool {
        let Some(credentials) = self.config.credentials.clone() else {
            return false;
        };
        if !self.auth_allowed() {
            return false;
        }
        let offered = self
            .capabilities
            .as_ref()
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        match &credentials {
            Credentials::Password { username, password } => {
                if offered.contains(&AuthMechanism::Plain) {
                    let response = auth::plain_response(username, password.expose());
                    let command = Command::Auth {
                        mechanism: AuthMechanism::Plain,
                        initial_response: Some(response),
                    };
                    self.send(&command, Expect::AuthPlain);
                } else if offered.contains(&AuthMechanism::Login) {
                    let command = Command::Auth {
                        mechanism: AuthMechanism::Login,
                        initial_response: None,
                    };
                    self.send(&command, Expect::AuthLoginStart);
                } else {
                    return false;
                }
            }
            Credentials::OAuth2 { username, token } => {
                if !offered.contains(&AuthMechanism::XOAuth2) {
                    return false;
                }
                let response = auth::xoauth2_response(username, token.expose());
                let command = Command::Auth {
                    mechanism: AuthMechanism::XOAuth2,
                    initial_response: Some(response),
                };
                self.send(&command, Expect::AuthXOAuth2);
            }
        }
        true
    }

    pub(super) fn on_transaction_reply(&mut self, expect: Expect, reply: Reply) {
        let Some(t) = self.transaction.as_mut() else {
            self.fail(ClientError::Protocol(format!(
                "reply with no transaction: {reply}"
            )));
            return;
        };
        match expect {
            Expect::Mail => {
                let ok = reply.is_completion();
                t.mail = Some(reply);
                if !ok && !t.unsent.is_empty() {
                    // Not pipelined: nothing more is sent for a refused sender.
                    t.unsent.clear();
                }
            }
            Expect::Rcpt(i) => {
                if let Some(r) = t.recipients.get_mut(i) {
                    r.reply = reply;
                }
                let accepted = t.recipients.iter().any(|r| r.reply.is_completion());
                let all_answered = !matches!(t.unsent.front(), Some((_, Expect::Rcpt(_))));
                if all_answered && !accepted && !t.unsent.is_empty() {
                    // Not pipelined and every recipient refused: do not send DATA.
                    t.unsent.clear();
                }
            }
            Expect::Data => {
                if reply.code() == ReplyCode::START_MAIL_INPUT {
                    if t.recipients.iter().any(|r| r.reply.is_completion()) {
                        t.body_open = true;
                        self.events.push_back(ClientEvent::SendBody);
                    } else {
                        // A server that says 354 with no valid recipient must still get an
                        // end of data (RFC 2920 §3.1); send an empty message.
                        self.output.extend_from_slice(b".\r\n");
                        t.body_open = true;
                        t.body_done = true;
                        t.lmtp_replies_left = 1;
                        self.expected
                            .push_back((Expect::DataEnd, self.now + self.config.timeouts.data_end));
                    }
                } else {
                    t.data = Some(reply);
                }
            }
            Expect::Bdat { last } => {
                if !reply.is_completion() && t.data.is_none() {
                    t.data = Some(reply.clone());
                }
                if last && t.data.is_none() {
                    if self.config.lmtp {
                        // Under LMTP the reply to the last chunk is the first recipient's.
                        t.lmtp_replies_left = t
                            .recipients
                            .iter()
                            .filter(|r| r.reply.is_completion())
                            .count();
                        self.record_lmtp_reply(reply);
                        return;
                    }
                    t.data = Some(reply);
                }
            }
            Expect::DataEnd => {
                if self.config.lmtp {
                    self.record_lmtp_reply(reply);
                    return;
                }
                t.data = Some(reply);
            }
            _ => {}
        }
        self.advance_transaction();
    }

    /// Stores one LMTP per-recipient reply; more may follow for the same message.
    pub(super) fn record_lmtp_reply(&mut self, reply: Reply) {
        let Some(t) = self.transaction.as_mut() else {
            return;
        };
        if let Some(r) = t
            .recipients
            .iter_mut()
            .find(|r| r.reply.is_completion() && r.delivery.is_none())
        {
            r.delivery = Some(reply.clone());
        }
        t.lmtp_replies_left = t.lmtp_replies_left.saturating_sub(1);
        if t.lmtp_replies_left > 0 {
            self.expected
                .push_front((Expect::DataEnd, self.now + self.config.timeouts.data_end));
            return;
        }
        t.data = Some(reply);
        self.advance_transaction();
    }

    /// Sends the next unsent command, or completes the transaction when nothing more is
    /// awaited.
    pub(super) fn advance_transaction(&mut self) {
        let Some(t) = self.transaction.as_mut() else {
            return;
        };
        // A chained transaction's replies queue behind the current one's single DataEnd,
        // which has just been taken off: the current one awaits nothing more.
        let waiting = self.chained.is_none()
            && self.expected.iter().any(|(e, _)| {
                matches!(
                    e,
                    Expect::Mail
                        | Expect::Rcpt(_)
                        | Expect::Data
                        | Expect::DataEnd
                        | Expect::Bdat { .. }
                )
            });
        if waiting {
            return;
        }
        if let Some((command, expect)) = t.unsent.pop_front() {
            if command == Command::Data && t.mode == BodyMode::Bdat {
                t.body_open = true;
                self.events.push_back(ClientEvent::SendBody);
                return;
            }
            self.send(&command, expect);
            return;
        }
        if t.body_open && !t.body_done {
            // The body is still being written; its end brings the final reply.
            return;
        }
        let Some(t) = self.transaction.take() else {
            return;
        };
        let mail = t.mail.unwrap_or(t.pending_reply);
        let mail_ok = mail.is_completion();
        let result = TransactionResult {
            mail,
            recipients: t.recipients,
            data: t.data,
        };
        // A server left holding a half-done transaction needs RSET before the next MAIL.
        // After the reply to a DATA dot it holds nothing, whatever that reply said
        // (RFC 5321 §4.1.1.4: the end of data clears the buffers).
        let ended_by_dot = t.mode == BodyMode::Data && t.body_done;
        self.needs_rset =
            mail_ok && !ended_by_dot && !result.data.as_ref().is_some_and(Reply::is_completion);
        self.events
            .push_back(ClientEvent::TransactionComplete(result));
        match self.chained.take() {
            // The chained transaction's replies come next; the session stays Busy.
            Some(next) => self.transaction = Some(next),
            None => self.state = State::Ready,
        }
    }
}

pub(super) fn reply_error_text(e: &ReplyError) -> String {
    format!("bad reply from server: {e}")
}
