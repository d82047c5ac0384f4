//! The AUTH exchange: PLAIN and LOGIN, with or without an initial response.

use crate::auth::{self, AuthAttempt, Secret};
use crate::ehlo::AuthMechanism;
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::trace::Direction;

use super::session::{Pending, Phase, Step};
use super::{HelloVerb, ServerEvent, ServerSession};

impl ServerSession {
    pub(super) fn auth_offered(&self) -> bool {
        !self.config.auth_mechanisms.is_empty() && (self.tls || self.config.allow_insecure_auth)
    }

    pub(super) fn auth(&mut self, mechanism: AuthMechanism, initial: Option<String>) -> Step {
        if self.config.auth_mechanisms.is_empty() {
            return self.refuse(
                ReplyCode::NOT_IMPLEMENTED,
                EnhancedCode::INVALID_COMMAND,
                "Error: authentication not enabled",
            );
        }
        if !matches!(self.hello, Some(HelloVerb::Ehlo | HelloVerb::Lhlo)) {
            return self.sequence_error("Error: send EHLO first");
        }
        if self.authenticated.is_some() {
            return self.sequence_error("Error: already authenticated");
        }
        if self.in_transaction {
            return self.sequence_error("Error: AUTH not allowed during a mail transaction");
        }
        if !self.tls && !self.config.allow_insecure_auth {
            return self.refuse(
                ReplyCode::ENCRYPTION_REQUIRED,
                EnhancedCode::ENCRYPTION_REQUIRED,
                "Encryption required for requested authentication mechanism",
            );
        }
        if !self.config.auth_mechanisms.contains(&mechanism) {
            return self.refuse(
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                EnhancedCode::INVALID_ARGS,
                "Unrecognized authentication type",
            );
        }
        match (mechanism, initial) {
            (AuthMechanism::Plain, Some(response)) => self.sasl_plain(&response),
            (AuthMechanism::Plain, None) => {
                self.phase = Phase::SaslPlain;
                // RFC 4954 §4: "334" SP [base64]; the space stays even with no challenge.
                self.output.extend_from_slice(b"334 \r\n");
                self.tracer.replies(Direction::ServerToClient, b"334 \r\n");
                Step::Continue
            }
            (AuthMechanism::Login, Some(user)) => self.sasl_login_user(&user),
            (AuthMechanism::Login, None) => {
                self.phase = Phase::SaslLoginUser;
                self.reply(Reply::new(ReplyCode::AUTH_CONTINUE, None, "VXNlcm5hbWU6"));
                Step::Continue
            }
            _ => self.refuse(
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                EnhancedCode::INVALID_ARGS,
                "Unrecognized authentication type",
            ),
        }
    }

    pub(super) fn sasl_line(&mut self, line: &[u8]) -> Step {
        let phase = std::mem::replace(&mut self.phase, Phase::Command);
        let Ok(line) = std::str::from_utf8(line) else {
            return self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::SYNTAX_ERROR,
                "Invalid base64 data",
            );
        };
        if line == "*" {
            return self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::PERMANENT_FAILURE,
                "Authentication aborted",
            );
        }
        match phase {
            Phase::SaslPlain => self.sasl_plain(line),
            Phase::SaslLoginUser => self.sasl_login_user(line),
            Phase::SaslLoginPassword(user) => match auth::decode(line).map(String::from_utf8) {
                // NUL is no more a part of a password here than in PLAIN (RFC 4616 §2).
                Some(Ok(password)) if !password.contains('\0') => self.auth_attempt(AuthAttempt {
                    mechanism: AuthMechanism::Login,
                    authorization_id: String::new(),
                    username: user,
                    password: Secret::new(password),
                }),
                _ => self.refuse(
                    ReplyCode::PARAMETER_SYNTAX_ERROR,
                    EnhancedCode::SYNTAX_ERROR,
                    "Invalid base64 data",
                ),
            },
            _ => Step::Continue,
        }
    }

    pub(super) fn sasl_plain(&mut self, response: &str) -> Step {
        let decoded = auth::decode(response);
        match decoded.as_deref().and_then(auth::parse_plain) {
            Some((authorization_id, username, password)) => self.auth_attempt(AuthAttempt {
                mechanism: AuthMechanism::Plain,
                authorization_id,
                username,
                password,
            }),
            None => self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::SYNTAX_ERROR,
                "Invalid authentication data",
            ),
        }
    }

    pub(super) fn sasl_login_user(&mut self, line: &str) -> Step {
        match auth::decode(line).map(String::from_utf8) {
            Some(Ok(user)) if !user.is_empty() && !user.contains('\0') => {
                self.phase = Phase::SaslLoginPassword(user);
                self.reply(Reply::new(ReplyCode::AUTH_CONTINUE, None, "UGFzc3dvcmQ6"));
                Step::Continue
            }
            _ => self.refuse(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                EnhancedCode::SYNTAX_ERROR,
                "Invalid base64 data",
            ),
        }
    }

    pub(super) fn auth_attempt(&mut self, attempt: AuthAttempt) -> Step {
        self.pending = Some(Pending::Auth(attempt.username.clone()));
        Step::Event(ServerEvent::Auth(attempt))
    }
}
