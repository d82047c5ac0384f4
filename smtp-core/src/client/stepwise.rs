//! A transaction one command at a time, for a relay: MAIL alone, then each RCPT alone,
//! each reply handed to the caller as [`ClientEvent::Reply`] before the next command is
//! chosen, then DATA and the content through the ordinary
//! [`send_mail`](ClientSession::send_mail) path (which sends only DATA once MAIL went out
//! this way), so that content streaming, LMTP's per-recipient replies and the results are
//! the same as for any other message.

use crate::address::{ForwardPath, ReversePath};
use crate::command::{Body, Command, MailParameters, RcptParameters};
use crate::data::DotStuffer;
use crate::reply::{Reply, ReplyCode};

use super::session::{BodyMode, Expect, State, Transaction};
use super::{ClientError, ClientSession, Envelope, RecipientResult};

impl ClientSession {
    /// Sends MAIL FROM alone; its reply comes as
    /// [`ClientEvent::Reply`](super::ClientEvent::Reply). `params` are kept only where the
    /// server announced their extension (SIZE, 8BITMIME, SMTPUTF8, DSN, AUTH); BINARYMIME
    /// content cannot go out with DATA and is refused with
    /// [`ClientError::InvalidArgument`]. Follow with [`step_rcpt`](Self::step_rcpt) for
    /// each recipient, then [`send_mail`](Self::send_mail) with the accepted recipients
    /// (only DATA goes out), or [`rset`](Self::rset) to abandon the transaction.
    pub fn step_mail(
        &mut self,
        from: &ReversePath,
        params: &MailParameters,
    ) -> Result<(), ClientError> {
        self.require_ready()?;
        let caps = self.capabilities.clone();
        let mut kept = MailParameters::default();
        if let Some(caps) = &caps {
            if params.body == Some(Body::BinaryMime) {
                return Err(ClientError::InvalidArgument(
                    "BINARYMIME content cannot be relayed with DATA".into(),
                ));
            }
            if caps.size.is_some() {
                kept.size = params.size;
            }
            if caps.eight_bit_mime {
                kept.body = params.body;
            }
            if params.smtputf8 {
                if !caps.smtputf8 {
                    return Err(ClientError::SmtpUtf8Unsupported);
                }
                kept.smtputf8 = true;
            }
            if caps.dsn {
                kept.ret = params.ret;
                kept.envid = params.envid.clone();
            }
            if !caps.auth.is_empty() {
                kept.auth = params.auth.clone();
            }
        }
        let mail = Command::Mail {
            from: from.clone(),
            params: kept,
        };
        mail.check_arguments()?;
        self.state = State::Busy;
        if std::mem::take(&mut self.needs_rset) {
            self.send(&Command::Rset, Expect::CleanupRset);
        }
        self.send(&mail, Expect::Simple);
        self.stepwise = true;
        Ok(())
    }

    /// Sends one RCPT TO of a transaction begun with [`step_mail`](Self::step_mail); its
    /// reply comes as [`ClientEvent::Reply`](super::ClientEvent::Reply). DSN parameters are
    /// kept only when the server offers DSN.
    pub fn step_rcpt(
        &mut self,
        to: &ForwardPath,
        params: &RcptParameters,
    ) -> Result<(), ClientError> {
        self.require_ready()?;
        if !self.stepwise {
            return Err(ClientError::NotReady);
        }
        let dsn = self.capabilities.as_ref().is_some_and(|c| c.dsn);
        let rcpt = Command::Rcpt {
            to: to.clone(),
            params: if dsn {
                params.clone()
            } else {
                RcptParameters::default()
            },
        };
        rcpt.check_arguments()?;
        self.state = State::Busy;
        self.send(&rcpt, Expect::Rcpt(usize::MAX));
        // The reply to a stepwise RCPT goes to the caller, as a simple command's does.
        if let Some(last) = self.expected.back_mut() {
            last.0 = Expect::Simple;
        }
        Ok(())
    }

    /// `send_mail` after [`step_mail`](Self::step_mail): MAIL and RCPT are done, so only
    /// DATA goes out; `envelope` lists the recipients the server accepted.
    pub(super) fn send_stepwise_data(&mut self, envelope: &Envelope) -> Result<(), ClientError> {
        self.require_ready()?;
        if envelope.recipients.is_empty() {
            return Err(ClientError::InvalidArgument("no recipients".into()));
        }
        let accepted = || Reply::new(ReplyCode::OK, None, "accepted at RCPT");
        self.stepwise = false;
        self.state = State::Busy;
        self.send(&Command::Data, Expect::Data);
        self.transaction = Some(Transaction {
            mode: BodyMode::Data,
            mail: Some(accepted()),
            recipients: envelope
                .recipients
                .iter()
                .map(|r| RecipientResult {
                    address: r.address.clone(),
                    reply: accepted(),
                    delivery: None,
                })
                .collect(),
            pending_reply: accepted(),
            unsent: Default::default(),
            data: None,
            body_open: false,
            body_done: false,
            lmtp_replies_left: 0,
            stuffer: DotStuffer::new(),
            chunk: Vec::new(),
            content_octets: 0,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::address::{Address, ForwardPath, ReversePath};
    use crate::client::{ClientConfig, ClientEvent, ClientSession, Envelope};
    use crate::command::{MailParameters, RcptParameters};

    fn ready(lmtp: bool) -> ClientSession {
        let mut config = ClientConfig::new("relay.example");
        config.lmtp = lmtp;
        let mut s = ClientSession::new(config, Duration::ZERO).unwrap();
        s.receive(b"220 hop.example\r\n", Duration::ZERO);
        s.clear_output();
        s.receive(b"250-hop.example\r\n250 PIPELINING\r\n", Duration::ZERO);
        assert_eq!(s.poll_event(), Some(ClientEvent::Ready));
        s
    }

    fn reply(s: &mut ClientSession, bytes: &[u8]) -> ClientEvent {
        s.receive(bytes, Duration::ZERO);
        s.poll_event().expect("an event")
    }

    #[test]
    fn one_command_at_a_time_then_data_with_lmtp_replies() {
        let mut s = ready(true);
        let from = ReversePath::Mailbox(Address::parse("a@example.org").unwrap());
        s.step_mail(&from, &MailParameters::default()).unwrap();
        assert_eq!(s.take_output(), b"MAIL FROM:<a@example.org>\r\n");
        assert!(
            matches!(reply(&mut s, b"250 ok\r\n"), ClientEvent::Reply(r) if r.code().get() == 250)
        );
        for (to, answer, code) in [
            ("b@x.example", &b"250 ok\r\n"[..], 250),
            ("c@x.example", b"550 no\r\n", 550),
            ("d@x.example", b"250 ok\r\n", 250),
        ] {
            let to = ForwardPath::Mailbox(Address::parse(to).unwrap());
            s.step_rcpt(&to, &RcptParameters::default()).unwrap();
            assert!(s.take_output().starts_with(b"RCPT TO:<"));
            assert!(
                matches!(reply(&mut s, answer), ClientEvent::Reply(r) if r.code().get() == code)
            );
        }
        let envelope = Envelope::new("a@example.org", ["b@x.example", "d@x.example"]).unwrap();
        s.send_mail(&envelope, None).unwrap();
        assert_eq!(s.take_output(), b"DATA\r\n");
        assert_eq!(reply(&mut s, b"354 go\r\n"), ClientEvent::SendBody);
        s.send_body(b"lone\rCR and lone\nLF\r\n").unwrap();
        s.finish_body().unwrap();
        assert_eq!(s.take_output(), b"lone\r\nCR and lone\r\nLF\r\n.\r\n");
        s.receive(b"250 b done\r\n452 d full\r\n", Duration::ZERO);
        let Some(ClientEvent::TransactionComplete(result)) = s.poll_event() else {
            panic!("no result");
        };
        let deliveries: Vec<u16> = result
            .recipients
            .iter()
            .map(|r| r.delivery.as_ref().unwrap().code().get())
            .collect();
        assert_eq!(deliveries, [250, 452]);
    }

    #[test]
    fn rcpt_needs_mail_first_and_rset_abandons() {
        let mut s = ready(false);
        let to = ForwardPath::Mailbox(Address::parse("b@x.example").unwrap());
        assert!(s.step_rcpt(&to, &RcptParameters::default()).is_err());
        s.step_mail(&ReversePath::Null, &MailParameters::default())
            .unwrap();
        reply(&mut s, b"250 ok\r\n");
        s.rset().unwrap();
        reply(&mut s, b"250 reset\r\n");
        assert!(s.step_rcpt(&to, &RcptParameters::default()).is_err());
    }
}
