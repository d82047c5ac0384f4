//! The checks a command passes before it becomes an event: sequence, limits, parameters
//! the session did not offer, require-TLS and pipelining synchronisation.

use crate::address::{ForwardPath, ReversePath};
use crate::command::{Body, Command, MailParameters, RcptParameters};
use crate::ehlo::AuthMechanism;
use crate::reply::{EnhancedCode, Reply, ReplyCode};

use super::replies::ok;
use super::session::{Pending, Phase, Step};
use super::{AbortReason, HelloVerb, ServerEvent, ServerSession};

impl ServerSession {
    pub(super) fn command(&mut self, command: Command) -> Step {
        if let Phase::Rejected = self.phase {
            return match command {
                Command::Quit => self.quit(),
                _ => self.sequence_error("Error: session rejected, only QUIT is possible"),
            };
        }
        if self.config.require_tls && !self.tls && !allowed_before_tls(&command) {
            return self.tls_required(&command);
        }
        if self.config.command_limits.is_some() && self.over_command_limit(command.verb()) {
            return Step::Continue;
        }
        match command {
            Command::Helo(domain) if !self.config.lmtp => self.hello(HelloVerb::Helo, domain),
            Command::Ehlo(domain) if !self.config.lmtp => self.hello(HelloVerb::Ehlo, domain),
            Command::Lhlo(domain) if self.config.lmtp => self.hello(HelloVerb::Lhlo, domain),
            Command::Helo(_) | Command::Ehlo(_) | Command::Lhlo(_) => {
                self.error_reply(Reply::new(
                    ReplyCode::SYNTAX_ERROR,
                    Some(EnhancedCode::INVALID_COMMAND),
                    if self.config.lmtp {
                        "Error: this is LMTP, use LHLO"
                    } else {
                        "Error: command not recognized"
                    },
                ));
                Step::Continue
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                let step = self.reset_transaction();
                if self.config.handler_replies {
                    self.queued.push_back(ServerEvent::Rset);
                } else {
                    self.reply(ok("Ok"));
                }
                step
            }
            Command::Noop(argument) if self.config.handler_replies => {
                self.pending = Some(Pending::Noop);
                Step::Event(ServerEvent::Noop(argument))
            }
            Command::Noop(_) => {
                self.reply(ok("Ok"));
                Step::Continue
            }
            Command::Quit => self.quit(),
            Command::Vrfy(arg) => {
                self.pending = Some(Pending::Verify);
                Step::Event(ServerEvent::Verify(arg))
            }
            Command::Expn(arg) => {
                self.pending = Some(Pending::Expand);
                Step::Event(ServerEvent::Expand(arg))
            }
            Command::Help(_) => {
                self.reply(Reply::new(
                    ReplyCode::HELP_MESSAGE,
                    Some(EnhancedCode::OK),
                    self.help_text(),
                ));
                Step::Continue
            }
            Command::StartTls => self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response),
        }
    }

    pub(super) fn quit(&mut self) -> Step {
        self.abort_message(AbortReason::Disconnected);
        if self.config.handler_replies {
            self.queued.push_back(ServerEvent::Quit);
        } else {
            self.close_with(Reply::new(
                ReplyCode::CLOSING,
                Some(EnhancedCode::CLOSING),
                "Bye",
            ));
        }
        Step::Continue
    }

    pub(super) fn hello(&mut self, verb: HelloVerb, domain: String) -> Step {
        self.pending = Some(Pending::Hello(verb));
        Step::Event(ServerEvent::Hello { verb, domain })
    }

    pub(super) fn mail(&mut self, from: ReversePath, params: MailParameters) -> Step {
        let Some(hello) = self.hello else {
            return self.sequence_error("Error: send HELO/EHLO first");
        };
        if self.in_transaction {
            return self.sequence_error("Error: nested MAIL command");
        }
        if self.config.require_tls && !self.tls {
            return self.refuse(
                ReplyCode::AUTH_REQUIRED,
                EnhancedCode::TLS_REQUIRED,
                "Must issue a STARTTLS command first",
            );
        }
        if self.config.require_auth && self.authenticated.is_none() {
            return self.refuse(
                ReplyCode::AUTH_REQUIRED,
                EnhancedCode::AUTH_REQUIRED,
                "Authentication required",
            );
        }
        if hello == HelloVerb::Helo && !no_parameters(&params) {
            return self.refuse(
                ReplyCode::PARAMETERS_UNRECOGNIZED,
                EnhancedCode::INVALID_ARGS,
                "Error: MAIL parameters need EHLO",
            );
        }
        if let Some(size) = params.size
            && size > self.config.max_message_size
        {
            return self.refuse(
                ReplyCode::STORAGE_EXCEEDED,
                EnhancedCode::MESSAGE_TOO_BIG,
                "Message size exceeds fixed limit",
            );
        }
        match params.body {
            Some(Body::BinaryMime) if !self.config.chunking => {
                return self.unsupported_parameter("BODY=BINARYMIME");
            }
            Some(Body::EightBitMime) if !self.config.eight_bit_mime => {
                return self.unsupported_parameter("BODY=8BITMIME");
            }
            _ => {}
        }
        if params.smtputf8 && !self.config.smtputf8 {
            return self.unsupported_parameter("SMTPUTF8");
        }
        if (params.ret.is_some() || params.envid.is_some()) && !self.config.dsn {
            return self.unsupported_parameter("RET/ENVID");
        }
        if let Some(p) = params.other.first() {
            let what = format!("{} not supported", p.keyword);
            return self.refuse_text(
                ReplyCode::PARAMETERS_UNRECOGNIZED,
                EnhancedCode::INVALID_ARGS,
                what,
            );
        }
        if !from.is_ascii() && !params.smtputf8 {
            return self.refuse(
                ReplyCode::MAILBOX_NAME_INVALID,
                EnhancedCode::NON_ASCII_ADDRESS,
                "Non-ASCII address needs SMTPUTF8",
            );
        }
        self.transaction_smtputf8 = params.smtputf8;
        self.transaction_binary = params.body == Some(Body::BinaryMime);
        self.pending = Some(Pending::Mail);
        Step::Event(ServerEvent::Mail { from, params })
    }

    pub(super) fn rcpt(&mut self, to: ForwardPath, params: RcptParameters) -> Step {
        if !self.in_transaction {
            return self.sequence_error("Error: need MAIL command");
        }
        if self.recipients >= self.config.max_recipients {
            return self.refuse(
                ReplyCode::INSUFFICIENT_STORAGE,
                EnhancedCode::TOO_MANY_RECIPIENTS,
                "Error: too many recipients",
            );
        }
        if (params.notify.is_some() || params.orcpt.is_some()) && !self.config.dsn {
            return self.unsupported_parameter("NOTIFY/ORCPT");
        }
        if let Some(p) = params.other.first() {
            let what = format!("{} not supported", p.keyword);
            return self.refuse_text(
                ReplyCode::PARAMETERS_UNRECOGNIZED,
                EnhancedCode::INVALID_ARGS,
                what,
            );
        }
        if !to.is_ascii() && !self.transaction_smtputf8 {
            return self.refuse(
                ReplyCode::MAILBOX_NAME_INVALID,
                EnhancedCode::NON_ASCII_ADDRESS,
                "Non-ASCII address needs SMTPUTF8",
            );
        }
        self.pending = Some(Pending::Rcpt);
        Step::Event(ServerEvent::Rcpt { to, params })
    }

    pub(super) fn data(&mut self) -> Step {
        if !self.in_transaction {
            return self.sequence_error("Error: need MAIL command");
        }
        if self.recipients == 0 {
            // RFC 2920 §3.1: a pipelined DATA after refused recipients gets 554, not 354.
            return self.refuse(
                ReplyCode::TRANSACTION_FAILED,
                EnhancedCode::BAD_SEQUENCE,
                "Error: no valid recipients",
            );
        }
        if self.transaction_binary || self.message_started {
            return self.sequence_error("Error: BDAT in use for this message");
        }
        self.pending = Some(Pending::DataStart);
        Step::Event(ServerEvent::MessageStart)
    }

    pub(super) fn bdat(&mut self, size: u64, last: bool) -> Step {
        // A refused BDAT's octets are still read and thrown away: they were sent regardless,
        // and read as commands they would be an injection (go-smtp #315).
        let refusal = if !self.config.chunking {
            Some(Reply::new(
                ReplyCode::NOT_IMPLEMENTED,
                Some(EnhancedCode::INVALID_COMMAND),
                "Error: command not implemented",
            ))
        } else if !self.in_transaction {
            Some(Reply::new(
                ReplyCode::BAD_SEQUENCE,
                Some(EnhancedCode::BAD_SEQUENCE),
                "Error: need MAIL command",
            ))
        } else if self.recipients == 0 {
            Some(Reply::new(
                ReplyCode::TRANSACTION_FAILED,
                Some(EnhancedCode::BAD_SEQUENCE),
                "Error: no valid recipients",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.phase = Phase::BdatDrain {
                remaining: size,
                reply,
            };
            return Step::Continue;
        }
        if self.message_started {
            self.phase = Phase::Bdat {
                remaining: size,
                last,
                size,
            };
            return Step::Continue;
        }
        self.pending = Some(Pending::BdatStart { size, last });
        Step::Event(ServerEvent::MessageStart)
    }

    pub(super) fn starttls(&mut self) -> Step {
        if self.tls {
            return self.sequence_error("Error: TLS already active");
        }
        if !self.config.starttls {
            return self.refuse(
                ReplyCode::NOT_IMPLEMENTED,
                EnhancedCode::INVALID_COMMAND,
                "Error: command not implemented",
            );
        }
        let step = self.reset_transaction();
        self.reply(Reply::new(
            ReplyCode::SERVICE_READY,
            Some(EnhancedCode::OK),
            "Ready to start TLS",
        ));
        // Whatever the client pipelined after STARTTLS was sent in clear and may have been
        // injected by an attacker (CVE-2011-0411): it must never be executed.
        self.input.clear();
        self.input_pos = 0;
        self.phase = Phase::AwaitTls;
        self.queued.push_back(ServerEvent::StartTls);
        step
    }

    /// True when `command` (just taken from the input) breaks pipelining
    /// synchronisation: see [`ServerConfig::pipelining_sync`].
    #[inline]
    pub(super) fn out_of_sync(&self, command: &Command) -> bool {
        if !self.config.pipelining_sync || matches!(self.phase, Phase::Rejected) {
            return false;
        }
        let mut waiting = (self.input.len() - self.input_pos) as u64;
        if let Command::Bdat { size, .. } = command {
            // A BDAT chunk's octets follow its command by design.
            waiting = waiting.saturating_sub(*size);
        }
        if waiting == 0 {
            return false;
        }
        let offered =
            self.config.pipelining && matches!(self.hello, Some(HelloVerb::Ehlo | HelloVerb::Lhlo));
        !offered || ends_group(command)
    }

    /// Ends the session for a pipelining synchronisation error, storing nothing.
    pub(super) fn sync_error(&mut self) {
        self.abort_message(AbortReason::Disconnected);
        self.close_with(Reply::new(
            ReplyCode::TRANSACTION_FAILED,
            Some(EnhancedCode::PROTOCOL_ERROR),
            "Error: SMTP protocol synchronization",
        ));
    }

    /// Refuses a command that needs TLS first; a BDAT chunk's octets are still read and
    /// thrown away, so they can never run as commands.
    pub(super) fn tls_required(&mut self, command: &Command) -> Step {
        let reply = Reply::new(
            ReplyCode::AUTH_REQUIRED,
            Some(EnhancedCode::TLS_REQUIRED),
            "Must issue a STARTTLS command first",
        );
        if let Command::Bdat { size, .. } = command {
            self.phase = Phase::BdatDrain {
                remaining: *size,
                reply,
            };
        } else {
            self.error_reply(reply);
        }
        Step::Continue
    }

    pub(super) fn sequence_error(&mut self, text: &str) -> Step {
        self.refuse(ReplyCode::BAD_SEQUENCE, EnhancedCode::BAD_SEQUENCE, text)
    }

    pub(super) fn unsupported_parameter(&mut self, what: &str) -> Step {
        self.refuse_text(
            ReplyCode::PARAMETERS_UNRECOGNIZED,
            EnhancedCode::INVALID_ARGS,
            format!("Error: {what} not supported"),
        )
    }

    pub(super) fn refuse(&mut self, code: ReplyCode, enhanced: EnhancedCode, text: &str) -> Step {
        self.refuse_text(code, enhanced, text.to_owned())
    }

    pub(super) fn refuse_text(
        &mut self,
        code: ReplyCode,
        enhanced: EnhancedCode,
        text: String,
    ) -> Step {
        self.error_reply(Reply::new(code, Some(enhanced), text));
        Step::Continue
    }
}

/// True when MAIL came without parameters (as `params == MailParameters::default()`,
/// without making one to compare with; the pattern names every field, so a new one must
/// be added here).
fn no_parameters(params: &MailParameters) -> bool {
    let MailParameters {
        size,
        body,
        smtputf8,
        ret,
        envid,
        auth,
        other,
    } = params;
    size.is_none()
        && body.is_none()
        && !smtputf8
        && ret.is_none()
        && envid.is_none()
        && auth.is_none()
        && other.is_empty()
}

/// True for the commands that must end a pipelined group (RFC 2920 §3.1, RFC 3207 §4,
/// RFC 4954 §4). AUTH PLAIN with an initial response finishes in one round trip, so
/// RFC 4954 lets the client pipeline behind it.
pub(super) fn ends_group(command: &Command) -> bool {
    match command {
        Command::Auth {
            mechanism: AuthMechanism::Plain,
            initial_response: Some(_),
        } => false,
        Command::Helo(_)
        | Command::Ehlo(_)
        | Command::Lhlo(_)
        | Command::Data
        | Command::Vrfy(_)
        | Command::Expn(_)
        | Command::Quit
        | Command::Noop(_)
        | Command::StartTls
        | Command::Auth { .. } => true,
        Command::Mail { .. }
        | Command::Rcpt { .. }
        | Command::Rset
        | Command::Bdat { .. }
        | Command::Help(_) => false,
    }
}

impl ServerSession {
    /// Counts `verb` under [`ServerConfig::command_limits`]; over its limit, the session
    /// closes with 421 4.7.0 (aiosmtpd's reply) and this returns true.
    ///
    /// [`ServerConfig::command_limits`]: super::ServerConfig::command_limits
    fn over_command_limit(&mut self, verb: &'static str) -> bool {
        let Some(limits) = &self.config.command_limits else {
            return false;
        };
        let limit = limits.limit(verb);
        let index = match self.command_counts.iter().position(|(v, _)| *v == verb) {
            Some(index) => index,
            None => {
                self.command_counts.push((verb, 0));
                self.command_counts.len() - 1
            }
        };
        let count = &mut self.command_counts[index].1;
        if *count < limit {
            *count += 1;
            return false;
        }
        log::info!("server: {verb} over its limit of {limit} in one session");
        self.abort_message(AbortReason::Disconnected);
        self.close_with(Reply::new(
            ReplyCode::SERVICE_UNAVAILABLE,
            Some(EnhancedCode::new(4, 7, 0)),
            format!("{verb} sent too many times"),
        ));
        true
    }
}

/// The commands served before STARTTLS under [`ServerConfig::require_tls`] (RFC 3207 §4).
pub(super) fn allowed_before_tls(command: &Command) -> bool {
    matches!(
        command,
        Command::Helo(_)
            | Command::Ehlo(_)
            | Command::Lhlo(_)
            | Command::StartTls
            | Command::Noop(_)
            | Command::Rset
            | Command::Quit
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Parameter, Ret};

    #[test]
    fn no_parameters_is_equality_with_the_default() {
        let default = MailParameters::default();
        let mut each = Vec::new();
        for set in 0..7 {
            let mut p = MailParameters::default();
            match set {
                0 => p.size = Some(1),
                1 => p.body = Some(Body::EightBitMime),
                2 => p.smtputf8 = true,
                3 => p.ret = Some(Ret::Full),
                4 => p.envid = Some("id".into()),
                5 => p.auth = Some("<>".into()),
                _ => p.other.push(Parameter {
                    keyword: "X".into(),
                    value: None,
                }),
            }
            each.push(p);
        }
        assert!(no_parameters(&default));
        for p in &each {
            assert_eq!(no_parameters(p), *p == default, "{p:?}");
        }
    }
}
