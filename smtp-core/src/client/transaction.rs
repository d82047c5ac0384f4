//! Sending a message: MAIL, RCPT and DATA or BDAT, one at a time or pipelined, and the
//! content, canonicalised and dot-stuffed.

use std::collections::VecDeque;

use crate::command::{Command, MailParameters};
use crate::data::DotStuffer;
use crate::trace::Direction;

use super::session::{BDAT_CHUNK, BodyMode, Expect, State, Transaction, no_reply};
use super::{ClientError, ClientEvent, ClientSession, Envelope, RecipientResult};

impl ClientSession {
    /// Starts a transaction. `size` is the message size when known: it is announced with
    /// SIZE and checked against the server's limit before anything is sent. It must count
    /// the octets that go out after CRLF canonicalisation (RFC 1870), which
    /// [`wire_size`](crate::data::wire_size) gives for a message in memory. The body is
    /// asked for with [`ClientEvent::SendBody`].
    ///
    /// With PIPELINING (and not CHUNKING), a transaction may also start while the previous
    /// one awaits only the reply to its final dot, i.e. after [`finish_body`]: its MAIL,
    /// RCPT and DATA then go out right behind that dot, in the same write (RFC 2920 §3.1:
    /// message content may begin a group), so a stream of messages costs one round trip
    /// each instead of two. The previous [`ClientEvent::TransactionComplete`] still comes
    /// first. At any other time a session that is not ready answers
    /// [`ClientError::NotReady`] and changes nothing.
    ///
    /// [`finish_body`]: ClientSession::finish_body
    pub fn send_mail(&mut self, envelope: &Envelope, size: Option<u64>) -> Result<(), ClientError> {
        if self.stepwise {
            return self.send_stepwise_data(envelope);
        }
        let chaining = self.can_chain();
        if !chaining {
            self.require_ready()?;
        }
        if envelope.recipients.is_empty() {
            return Err(ClientError::InvalidArgument("no recipients".into()));
        }
        // perf: only the four offers a transaction looks at, not a copy of them all (the
        // extension lines, the AUTH list: allocated and freed for every message).
        let (size_limit, smtputf8_offered, pipelining_offered, chunking_offered) =
            match &self.capabilities {
                Some(caps) => (caps.size, caps.smtputf8, caps.pipelining, caps.chunking),
                None => (None, false, false, false),
            };
        let esmtp = self.capabilities.is_some();
        let mut params = envelope.params.clone();
        if let (Some(size), Some(limit)) = (size, size_limit) {
            if limit > 0 && size > limit {
                return Err(ClientError::MessageTooLarge { limit });
            }
            params.size = Some(size);
        }
        // Asked for (UTF-8 headers) or needed (UTF-8 addresses): either way the server
        // must offer it, or nothing is sent.
        if params.smtputf8 || !envelope.is_ascii() {
            if !smtputf8_offered {
                return Err(ClientError::SmtpUtf8Unsupported);
            }
            params.smtputf8 = true;
        }
        if !esmtp {
            // HELO servers know no parameters at all.
            params = MailParameters::default();
        }
        let mail = Command::Mail {
            from: envelope.from.clone(),
            params,
        };
        mail.check_arguments()?;
        let mut commands = Vec::with_capacity(envelope.recipients.len() + 3);
        if self.needs_rset {
            commands.push((Command::Rset, Expect::CleanupRset));
        }
        commands.push((mail, Expect::Mail));
        for (i, r) in envelope.recipients.iter().enumerate() {
            let rcpt = Command::Rcpt {
                to: r.address.clone(),
                params: if esmtp {
                    r.params.clone()
                } else {
                    Default::default()
                },
            };
            rcpt.check_arguments()?;
            commands.push((rcpt, Expect::Rcpt(i)));
        }
        let pipelining = self.config.pipelining && pipelining_offered;
        let mode = if pipelining && self.config.chunking && chunking_offered {
            BodyMode::Bdat
        } else {
            BodyMode::Data
        };
        if mode == BodyMode::Data {
            commands.push((Command::Data, Expect::Data));
        }
        if chaining && mode != BodyMode::Data {
            return Err(ClientError::NotReady);
        }
        self.needs_rset = false;
        self.state = State::Busy;
        let mut transaction = Transaction {
            mode,
            mail: None,
            recipients: envelope
                .recipients
                .iter()
                .map(|r| RecipientResult {
                    address: r.address.clone(),
                    reply: no_reply(),
                    delivery: None,
                })
                .collect(),
            pending_reply: no_reply(),
            unsent: VecDeque::new(),
            data: None,
            body_open: false,
            body_done: false,
            lmtp_replies_left: 0,
            stuffer: if mode == BodyMode::Bdat {
                DotStuffer::canonicalize_only()
            } else {
                DotStuffer::new()
            },
            chunk: Vec::new(),
            content_octets: 0,
        };
        if pipelining {
            // RFC 2920: the whole group in one write, every reply read afterwards.
            for (command, expect) in &commands {
                self.send(command, *expect);
            }
            if mode == BodyMode::Bdat {
                transaction.body_open = true;
                self.events.push_back(ClientEvent::SendBody);
            }
        } else {
            let mut commands = VecDeque::from(commands);
            if let Some((command, expect)) = commands.pop_front() {
                self.send(&command, expect);
            }
            transaction.unsent = commands;
        }
        if chaining {
            self.chained = Some(transaction);
        } else {
            self.transaction = Some(transaction);
        }
        Ok(())
    }

    /// True when [`send_mail`](Self::send_mail) would start a transaction now: the
    /// session is ready, or the current transaction awaits only its final reply and the
    /// next may be chained behind it.
    pub fn can_send_mail(&self) -> bool {
        self.state == State::Ready || self.can_chain()
    }

    /// True when [`send_mail`](Self::send_mail) may start a transaction behind the current
    /// one: pipelining is on, nothing else is queued, and the current transaction has
    /// written its whole message with DATA and awaits only the reply to the dot (so the
    /// server has said 354, and that reply ends its transaction whatever it is: no RSET
    /// can be needed). LMTP, with one reply per recipient after the dot, is left out.
    pub(super) fn can_chain(&self) -> bool {
        let pipelining =
            self.config.pipelining && self.capabilities.as_ref().is_some_and(|c| c.pipelining);
        self.state == State::Busy
            && pipelining
            && !self.config.lmtp
            && self.chained.is_none()
            && self
                .transaction
                .as_ref()
                .is_some_and(|t| t.mode == BodyMode::Data && t.body_done && t.unsent.is_empty())
            && self.expected.iter().all(|(e, _)| *e == Expect::DataEnd)
    }

    /// Adds message content. Line endings are made CRLF and, for DATA, lines starting with
    /// a dot are stuffed, so any bytes may be given, split anywhere.
    pub fn send_body(&mut self, chunk: &[u8]) -> Result<(), ClientError> {
        let t = self
            .transaction
            .as_mut()
            .filter(|t| t.body_open && !t.body_done)
            .ok_or(ClientError::NotReady)?;
        t.content_octets += chunk.len() as u64;
        match t.mode {
            BodyMode::Data => t.stuffer.stuff(chunk, &mut self.output),
            BodyMode::Bdat => {
                t.stuffer.stuff(chunk, &mut t.chunk);
                if t.chunk.len() >= BDAT_CHUNK {
                    let content = std::mem::take(&mut t.chunk);
                    self.send_bdat(&content, false);
                }
            }
        }
        Ok(())
    }

    /// Ends the message content: the final dot for DATA, the LAST chunk for BDAT.
    pub fn finish_body(&mut self) -> Result<(), ClientError> {
        let t = self
            .transaction
            .as_mut()
            .filter(|t| t.body_open && !t.body_done)
            .ok_or(ClientError::NotReady)?;
        t.body_done = true;
        self.tracer
            .content(Direction::ClientToServer, t.content_octets);
        let deadline = self.now + self.config.timeouts.data_end;
        match t.mode {
            BodyMode::Data => {
                t.stuffer.finish(&mut self.output);
                t.lmtp_replies_left = if self.config.lmtp {
                    t.recipients
                        .iter()
                        .filter(|r| r.reply.is_completion())
                        .count()
                } else {
                    1
                };
                self.expected.push_back((Expect::DataEnd, deadline));
            }
            BodyMode::Bdat => {
                t.stuffer.finish(&mut t.chunk);
                let content = std::mem::take(&mut t.chunk);
                self.send_bdat(&content, true);
            }
        }
        Ok(())
    }

    pub(super) fn send_bdat(&mut self, content: &[u8], last: bool) {
        let command = Command::Bdat {
            size: content.len() as u64,
            last,
        };
        self.write_command(&command);
        self.output.extend_from_slice(content);
        let timeout = if last {
            self.config.timeouts.data_end
        } else {
            self.config.timeouts.data_block
        };
        self.expected
            .push_back((Expect::Bdat { last }, self.now + timeout));
    }
}
