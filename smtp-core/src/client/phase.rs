//! Where a client session is: what it is waiting for. An error that ends a connection
//! (a timeout, a hang-up, a TLS or network failure) carries the phase it happened in,
//! so that a caller can tell "the server never greeted" from "the connection dropped
//! after the final dot, so the message may have been delivered".

use std::fmt;

use super::session::{ClientSession, Expect, State};

/// The step of the conversation a client session was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the server's 220 greeting.
    Greeting,
    /// EHLO, HELO or LHLO.
    Hello,
    /// STARTTLS, or its TLS handshake.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA, or sending the content (including BDAT chunks before the last).
    Data,
    /// The content is sent (the final dot, or BDAT LAST) and its reply is awaited: the
    /// server may have accepted the message; see [`Phase::delivery_unknown`].
    AfterData,
    /// A command of the caller's (NOOP, RSET, VRFY, EXPN, HELP).
    Command,
    /// QUIT.
    Quit,
    /// Nothing was awaited.
    Idle,
}

impl Phase {
    /// True when a message may or may not have been delivered: the connection ended (or
    /// timed out) after the end of its content and before the server's reply to it. Do
    /// not resend blindly (a duplicate is possible); a queue retries it and accepts that.
    pub fn delivery_unknown(self) -> bool {
        self == Phase::AfterData
    }

    /// A short name: `"greeting"`, `"EHLO"`, `"STARTTLS"`, `"AUTH"`, `"MAIL"`, `"RCPT"`,
    /// `"DATA"`, `"after the end of data"`, `"command"`, `"QUIT"`, `"idle"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Greeting => "greeting",
            Phase::Hello => "EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::Mail => "MAIL",
            Phase::Rcpt => "RCPT",
            Phase::Data => "DATA",
            Phase::AfterData => "after the end of data",
            Phase::Command => "command",
            Phase::Quit => "QUIT",
            Phase::Idle => "idle",
        }
    }

    pub(super) fn of_expect(expect: Expect) -> Phase {
        match expect {
            Expect::Greeting => Phase::Greeting,
            Expect::Ehlo | Expect::Helo => Phase::Hello,
            Expect::StartTls => Phase::StartTls,
            Expect::AuthPlain
            | Expect::AuthLoginStart
            | Expect::AuthLoginUser
            | Expect::AuthLoginPassword
            | Expect::AuthXOAuth2 => Phase::Auth,
            Expect::Mail => Phase::Mail,
            Expect::Rcpt(_) => Phase::Rcpt,
            Expect::Data | Expect::Bdat { last: false } => Phase::Data,
            Expect::DataEnd | Expect::Bdat { last: true } => Phase::AfterData,
            Expect::CleanupRset | Expect::Simple => Phase::Command,
            Expect::Quit => Phase::Quit,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl crate::client::runner::Outcome {
    /// The outcome with `phase` recorded on the error that ended the connection (a
    /// batch's last entry), for every driver at once.
    pub(crate) fn in_phase(self, phase: Phase) -> Self {
        use crate::client::runner::Outcome;
        match self {
            Outcome::Failed(error) => Outcome::Failed(error.in_phase(phase)),
            Outcome::Batch(mut results) => {
                if let Some(last) = results.pop() {
                    results.push(last.map_err(|e| e.in_phase(phase)));
                }
                Outcome::Batch(results)
            }
            other => other,
        }
    }
}

impl ClientSession {
    /// What the session is waiting for now (the oldest reply awaited, or the TLS
    /// handshake, or the content being written), or, once an error has ended it, what it
    /// was waiting for then.
    pub fn phase(&self) -> Phase {
        if let Some(phase) = self.failed_in {
            return phase;
        }
        self.current_phase()
    }

    pub(super) fn current_phase(&self) -> Phase {
        if let Some((expect, _)) = self.expected.front() {
            return Phase::of_expect(*expect);
        }
        match self.state {
            State::AwaitTls => Phase::StartTls,
            State::Opening => Phase::Greeting,
            _ => match &self.transaction {
                Some(t) if t.body_done => Phase::AfterData,
                Some(_) => Phase::Data,
                None => Phase::Idle,
            },
        }
    }
}
