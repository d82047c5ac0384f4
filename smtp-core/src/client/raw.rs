//! Commands as the caller writes them, for smtplib-style APIs (`docmd`, `putcmd`, `mail`,
//! `rcpt`, `data`, `ehlo`, `helo`, `auth` with a caller's mechanism): the session writes
//! the line, waits for one reply and hands it over as [`ClientEvent::Reply`] whatever its
//! code. The session's own transaction state is not involved: a caller that starts a
//! transaction by hand finishes it by hand (or with RSET).
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::client::{ClientConfig, ClientEvent, ClientSession};
//!
//! let now = Duration::ZERO;
//! let mut client = ClientSession::new(ClientConfig::new("client.example"), now).unwrap();
//! client.receive(b"220 mx.example ESMTP\r\n", now);
//! client.receive(b"250 mx.example\r\n", now);
//! client.clear_output();
//! assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
//! client.raw_command("MAIL FROM:<root>", false).unwrap();
//! assert_eq!(client.take_output(), b"MAIL FROM:<root>\r\n");
//! client.receive(b"250 ok\r\n", now);
//! assert!(matches!(client.poll_event(), Some(ClientEvent::Reply(r)) if r.code().get() == 250));
//! client.raw_command("DATA", false).unwrap();
//! client.receive(b"354 go ahead\r\n", now);
//! client.clear_output();
//! client.poll_event();
//! client.raw_content(b"Subject: x\n\n.dot\n").unwrap();
//! assert_eq!(client.take_output(), b"Subject: x\r\n\r\n..dot\r\n.\r\n");
//! ```

use crate::command::Command;
use crate::data::DotStuffer;
use crate::ehlo::Capabilities;
use crate::reply::Reply;
use crate::trace::Direction;

use super::session::{Expect, State, has_control};
use super::{ClientError, ClientEvent, ClientSession};

/// The longest line [`ClientSession::raw_command`] writes (RFC 5321 §4.5.3.1.4 allows 512
/// octets; extensions such as AUTH raise that, so this leaves room for them).
const MAX_RAW_LINE: usize = 4096;

impl ClientSession {
    /// Sends `line` (without its CRLF) as it is; the reply comes as [`ClientEvent::Reply`].
    /// `secret` marks a SASL response: the trace shows it redacted (an `AUTH` line's
    /// initial response is redacted anyway). Refuses CR, LF and NUL, and lines over 4096
    /// octets, writing nothing; an AUTH line or a SASL response on a connection without
    /// TLS fails with [`ClientError::InsecureAuth`] unless
    /// [`ClientConfig::allow_insecure_auth`](super::ClientConfig::allow_insecure_auth).
    pub fn raw_command(&mut self, line: &str, secret: bool) -> Result<(), ClientError> {
        self.require_ready()?;
        if has_control(line) || line.len() > MAX_RAW_LINE {
            return Err(ClientError::InvalidArgument(
                "a command line contains CR, LF or NUL, or is over 4096 octets".into(),
            ));
        }
        let auth = line
            .get(..5)
            .is_some_and(|verb| verb.eq_ignore_ascii_case("AUTH "));
        if (auth || secret) && !self.auth_allowed() {
            return Err(ClientError::InsecureAuth);
        }
        self.state = State::Busy;
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        if secret {
            self.tracer.secret(Direction::ClientToServer);
        } else {
            self.tracer
                .command(Direction::ClientToServer, line.as_bytes());
        }
        let deadline = self.now + self.config.timeouts.command;
        self.expected.push_back((Expect::Simple, deadline));
        Ok(())
    }

    /// Sends message content after the caller's own `DATA` got its 354: line endings made
    /// CRLF, leading dots stuffed, ended with the final dot. The reply comes as
    /// [`ClientEvent::Reply`].
    pub fn raw_content(&mut self, content: &[u8]) -> Result<(), ClientError> {
        self.require_ready()?;
        self.state = State::Busy;
        let mut stuffer = DotStuffer::new();
        stuffer.stuff(content, &mut self.output);
        stuffer.finish(&mut self.output);
        self.tracer
            .content(Direction::ClientToServer, content.len() as u64);
        let deadline = self.now + self.config.timeouts.data_end;
        self.expected.push_back((Expect::Simple, deadline));
        Ok(())
    }

    /// Greets again with EHLO (LHLO under LMTP), or HELO when `ehlo` is false, as `name`
    /// (the configured HELO name when `None`). A 2xx reply replaces what the session knows
    /// of the server's extensions (none after HELO); the reply comes as
    /// [`ClientEvent::Reply`] whatever its code, and a refusal leaves them as they were.
    pub fn hello(&mut self, ehlo: bool, name: Option<&str>) -> Result<(), ClientError> {
        self.require_ready()?;
        let name = name.unwrap_or(&self.config.helo_name).to_owned();
        if name.is_empty() || has_control(&name) || name.contains(' ') {
            return Err(ClientError::InvalidArgument(
                "HELO name is empty or contains spaces or control characters".into(),
            ));
        }
        let command = match (ehlo, self.config.lmtp) {
            (false, _) => Command::Helo(name),
            (true, true) => Command::Lhlo(name),
            (true, false) => Command::Ehlo(name),
        };
        self.state = State::Busy;
        self.send(&command, Expect::Rehello { ehlo });
        Ok(())
    }

    /// The reply to [`ClientSession::hello`].
    pub(super) fn on_rehello(&mut self, reply: Reply, ehlo: bool) {
        if reply.is_completion() {
            self.capabilities = ehlo.then(|| Capabilities::from_reply(&reply));
        }
        self.state = State::Ready;
        self.events.push_back(ClientEvent::Reply(reply));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::client::{ClientConfig, ClientError, ClientEvent, ClientSession};

    const NOW: Duration = Duration::ZERO;

    fn ready(ehlo: &[u8]) -> ClientSession {
        let mut client = ClientSession::new(ClientConfig::new("client.example"), NOW).unwrap();
        client.receive(b"220 mx.example ESMTP hello\r\n", NOW);
        client.receive(ehlo, NOW);
        client.clear_output();
        assert_eq!(client.poll_event(), Some(ClientEvent::Ready));
        client
    }

    fn reply_code(client: &mut ClientSession) -> u16 {
        match client.poll_event() {
            Some(ClientEvent::Reply(reply)) => reply.code().get(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn hello_sends_again_and_refreshes_the_extensions() {
        let mut client = ready(b"250 mx.example\r\n");
        assert_eq!(client.greeting().map(|r| r.code().get()), Some(220));
        assert!(!client.capabilities().unwrap().pipelining);
        client.hello(true, Some("other.example")).unwrap();
        assert_eq!(client.take_output(), b"EHLO other.example\r\n");
        client.receive(b"250-mx.example\r\n250 PIPELINING\r\n", NOW);
        assert_eq!(reply_code(&mut client), 250);
        assert!(client.capabilities().unwrap().pipelining);
        // A refusal leaves what is known; HELO forgets the extensions.
        client.hello(true, None).unwrap();
        assert_eq!(client.take_output(), b"EHLO client.example\r\n");
        client.receive(b"502 no\r\n", NOW);
        assert_eq!(reply_code(&mut client), 502);
        assert!(client.capabilities().is_some());
        client.hello(false, None).unwrap();
        assert_eq!(client.take_output(), b"HELO client.example\r\n");
        client.receive(b"250 mx.example\r\n", NOW);
        assert_eq!(reply_code(&mut client), 250);
        assert!(client.capabilities().is_none());
        assert!(client.is_ready());
    }

    #[test]
    fn raw_lines_refuse_injection_and_credentials_in_clear() {
        let mut client = ready(b"250-mx.example\r\n250 AUTH PLAIN\r\n");
        for bad in ["NOOP\r\nRSET", "NOOP\nX", "NO\0OP"] {
            assert!(matches!(
                client.raw_command(bad, false),
                Err(ClientError::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            client.raw_command("AUTH PLAIN AGEAYg==", false),
            Err(ClientError::InsecureAuth)
        ));
        assert!(matches!(
            client.raw_command("c2VjcmV0", true),
            Err(ClientError::InsecureAuth)
        ));
        assert!(client.output().is_empty());
        client.set_allow_insecure_auth(true);
        client.raw_command("AUTH PLAIN AGEAYg==", false).unwrap();
        assert_eq!(client.take_output(), b"AUTH PLAIN AGEAYg==\r\n");
        client.receive(b"235 ok\r\n", NOW);
        assert_eq!(reply_code(&mut client), 235);
    }

    #[test]
    fn quit_reply_is_kept() {
        let mut client = ready(b"250 mx.example\r\n");
        client.quit().unwrap();
        client.receive(b"221 2.0.0 bye\r\n", NOW);
        assert_eq!(client.quit_reply().map(|r| r.code().get()), Some(221));
        assert!(client.is_closed());
    }
}
