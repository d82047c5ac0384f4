//! Reading the input: command lines (ending only at CRLF, bounded), DATA content up to its
//! real end, and BDAT chunks by their announced size.

use crate::command::Command;
use crate::data::BareLinePolicy;
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::trace::Direction;

use super::session::{CONTENT_CHUNK, OUTPUT_HIGH_WATER, Pending, Phase, SASL_LINE_MAX, Step};
use super::{AbortReason, ServerEvent, ServerSession};

impl ServerSession {
    pub(super) fn unread(&self) -> &[u8] {
        &self.input[self.input_pos..]
    }

    pub(super) fn compact_input(&mut self) {
        if self.input_pos > 0 {
            if self.input_pos == self.input.len() {
                self.input.clear(); // perf: all taken, the common case
            } else {
                self.input.drain(..self.input_pos);
            }
            self.input_pos = 0;
        }
    }

    /// Goes on with the input left unread, or ends the step if there is none.
    fn more_input_or_end(&mut self) -> Step {
        if self.input_pos < self.input.len() {
            Step::Continue
        } else {
            self.out_of_input()
        }
    }

    /// Ends the step when the input is exhausted: at end of stream the session closes.
    pub(super) fn out_of_input(&mut self) -> Step {
        if self.eof {
            self.abort_message(AbortReason::Disconnected);
            self.phase = Phase::Closed;
            self.queued.push_back(ServerEvent::Close);
            return Step::Continue;
        }
        Step::NeedInput
    }

    pub(super) fn step_line(&mut self) -> Step {
        if self.output.len() >= OUTPUT_HIGH_WATER {
            return Step::NeedInput;
        }
        let sasl = matches!(
            self.phase,
            Phase::SaslPlain | Phase::SaslLoginUser | Phase::SaslLoginPassword(_)
        );
        let max = if sasl || is_auth_line(self.unread()) {
            // RFC 4954 §4: an AUTH line and each SASL response may be longer than a
            // command line (a PLAIN or XOAUTH2 token often is).
            self.config.max_line_len.max(SASL_LINE_MAX)
        } else {
            self.config.max_line_len
        };
        let unread = self.unread();
        // A line ends only at CRLF; a lone CR or LF inside is part of the (refused) line.
        // perf: one scan finds both in the common case, where the first CR or LF is the
        // line's CRLF (and the line then has no bare one).
        let (end, bare_line_ending) = match memchr::memchr2(b'\r', b'\n', unread) {
            Some(p) if unread[p] == b'\r' && unread.get(p + 1) == Some(&b'\n') => (Some(p), false),
            None => (None, false),
            // The first CR or LF is bare: it lies before the line's end, if it has one.
            Some(_) => {
                let mut search = 0;
                let end = loop {
                    match memchr::memchr(b'\n', &unread[search..]) {
                        Some(i) if search + i > 0 && unread[search + i - 1] == b'\r' => {
                            break Some(search + i - 1);
                        }
                        Some(i) => search += i + 1,
                        None => break None,
                    }
                };
                (end, true)
            }
        };
        let Some(end) = end else {
            if unread.len() >= max {
                // Refuse the overlong line now and throw away its rest as it comes, so its
                // tail can never be read as a command.
                let was_skipping = std::mem::replace(&mut self.skipping_line, true);
                self.input_pos = self.input.len();
                if !was_skipping {
                    self.line_too_long(sasl);
                }
                return Step::Continue;
            }
            return self.out_of_input();
        };
        let line_start = self.input_pos;
        self.input_pos += end + 2;
        if std::mem::replace(&mut self.skipping_line, false) {
            return Step::Continue;
        }
        if end + 2 > max {
            self.line_too_long(sasl);
            return Step::Continue;
        }
        if bare_line_ending {
            self.error_reply(Reply::new(
                ReplyCode::SYNTAX_ERROR,
                Some(EnhancedCode::SYNTAX_ERROR),
                "Error: bare <CR> or <LF> in command",
            ));
            return Step::Continue;
        }
        self.wait_for_command();
        let line = line_start..line_start + end;
        if self.tracer.is_on() {
            match self.phase {
                Phase::SaslPlain | Phase::SaslLoginUser | Phase::SaslLoginPassword(_) => {
                    self.tracer.secret(Direction::ClientToServer);
                }
                _ => self
                    .tracer
                    .command(Direction::ClientToServer, &self.input[line.clone()]),
            }
        }
        match self.phase {
            Phase::SaslPlain | Phase::SaslLoginUser | Phase::SaslLoginPassword(_) => {
                // Rare enough that a copy does not matter.
                let line = self.input[line].to_vec();
                self.sasl_line(&line)
            }
            // The parsed command owns its data, so no copy of the line is needed.
            _ => match Command::parse_with(&self.input[line], &mut self.spare_text) {
                Ok(command) => {
                    if self.out_of_sync(&command) {
                        self.sync_error();
                        return Step::Continue;
                    }
                    self.command(command)
                }
                Err(e) => {
                    self.error_reply(e.reply());
                    Step::Continue
                }
            },
        }
    }

    pub(super) fn step_data(&mut self) -> Step {
        if !self.receiver.is_finished() {
            let start = self.input_pos;
            let end = self.input.len().min(start + CONTENT_CHUNK);
            if self.discard_content {
                return self.skip_data(start, end);
            }
            let progress = self
                .receiver
                .feed(&self.input[start..end], &mut self.content);
            self.input_pos += progress.consumed;
            if progress.consumed > 0
                && memchr::memchr(b'\n', &self.input[start..start + progress.consumed]).is_some()
            {
                self.deadline = Some(self.now + self.config.data_timeout);
            }
            self.message_size += self.content.len() as u64;
            if self.message_aborted.is_none() {
                if self.message_size > self.config.max_message_size {
                    self.content.clear();
                    return self.abort_step(AbortReason::TooLarge);
                }
                if self.receiver.should_reject() {
                    self.content.clear();
                    return self.abort_step(AbortReason::BareLineEnding);
                }
                if !self.content.is_empty() {
                    return Step::Data;
                }
            } else {
                self.content.clear();
            }
        }
        if !self.receiver.is_finished() {
            return self.out_of_input();
        }
        self.phase = Phase::Command;
        self.wait_for_command();
        self.end_of_message()
    }

    /// [`step_data`](Self::step_data) when no one reads the content
    /// ([`ServerSession::discard_content`]): the same end, limits and checks, with the
    /// same events but [`ServerEvent::MessageData`], and no copy of the content.
    fn skip_data(&mut self, start: usize, end: usize) -> Step {
        let before = self.receiver.content_len();
        let progress = self.receiver.skip(&self.input[start..end]);
        self.input_pos += progress.consumed;
        if progress.consumed > 0
            && memchr::memchr(b'\n', &self.input[start..start + progress.consumed]).is_some()
        {
            self.deadline = Some(self.now + self.config.data_timeout);
        }
        self.message_size += self.receiver.content_len() - before;
        if self.message_aborted.is_none() {
            if self.message_size > self.config.max_message_size {
                return self.abort_step(AbortReason::TooLarge);
            }
            if self.receiver.should_reject() {
                return self.abort_step(AbortReason::BareLineEnding);
            }
        }
        if !progress.finished {
            // More content may already be here (past one chunk's worth): go on with it.
            return self.more_input_or_end();
        }
        self.phase = Phase::Command;
        self.wait_for_command();
        self.end_of_message()
    }

    pub(super) fn step_bdat(&mut self) -> Step {
        let available = (self.input.len() - self.input_pos) as u64;
        match &mut self.phase {
            Phase::BdatDrain { remaining, .. } => {
                let take = available.min(*remaining);
                *remaining -= take;
                self.input_pos += take as usize;
                if take > 0 {
                    self.deadline = Some(self.now + self.config.data_timeout);
                }
                if *remaining > 0 {
                    return self.out_of_input();
                }
                let Phase::BdatDrain { reply, .. } =
                    std::mem::replace(&mut self.phase, Phase::Command)
                else {
                    unreachable!("matched above")
                };
                self.wait_for_command();
                self.error_reply(reply);
                Step::Continue
            }
            Phase::Bdat {
                remaining,
                last,
                size,
            } => {
                let (last, size) = (*last, *size);
                let take = available.min(*remaining).min(CONTENT_CHUNK as u64);
                *remaining -= take;
                let remaining = *remaining;
                // BINARYMIME content is not made of lines: it goes through untouched. All
                // other content follows the bare CR/LF policy, as DATA does.
                let normalize = !self.transaction_binary;
                if take > 0 {
                    let start = self.input_pos;
                    self.input_pos += take as usize;
                    self.deadline = Some(self.now + self.config.data_timeout);
                    self.message_size += take;
                    if self.message_aborted.is_none() {
                        if self.message_size > self.config.max_message_size {
                            return self.abort_step(AbortReason::TooLarge);
                        }
                        let chunk = &self.input[start..start + take as usize];
                        if normalize {
                            self.bdat_normalizer.feed(chunk, &mut self.content);
                        } else {
                            self.content.extend_from_slice(chunk);
                        }
                        return self.bdat_content_step();
                    }
                }
                if remaining == 0
                    && last
                    && self.bdat_normalizer.has_pending_cr()
                    && self.message_aborted.is_none()
                {
                    // A CR at the very end of the message had no LF after it: bare.
                    self.bdat_normalizer.finish(&mut self.content);
                    return self.bdat_content_step();
                }
                if remaining > 0 {
                    return self.more_input_or_end();
                }
                self.phase = Phase::Command;
                self.wait_for_command();
                if last {
                    return self.end_of_message();
                }
                if self.message_aborted == Some(AbortReason::TooLarge) {
                    // Nothing more can be taken: the message is refused now. A message
                    // refused for a bare line ending is read through LAST and refused as a
                    // whole, as DATA does (the client then sees the refusal where it looks
                    // for the message's reply).
                    return self.end_of_message();
                }
                self.reply(Reply::new(
                    ReplyCode::OK,
                    Some(EnhancedCode::OK),
                    format!("{size} octets received"),
                ));
                Step::Continue
            }
            _ => Step::Continue,
        }
    }

    /// Hands normalised BDAT content to the embedder, unless the policy refuses it.
    pub(super) fn bdat_content_step(&mut self) -> Step {
        if self.config.bare_line_policy == BareLinePolicy::Reject
            && self.bdat_normalizer.saw_bare_line_ending()
        {
            self.content.clear();
            return self.abort_step(AbortReason::BareLineEnding);
        }
        if self.content.is_empty() {
            Step::Continue
        } else {
            Step::Data
        }
    }

    /// The message is dropped now; its final reply comes when its end is read.
    pub(super) fn abort_step(&mut self, reason: AbortReason) -> Step {
        self.message_aborted = Some(reason);
        Step::Event(ServerEvent::MessageAborted(reason))
    }

    pub(super) fn end_of_message(&mut self) -> Step {
        self.tracer
            .content(Direction::ClientToServer, self.message_size);
        match self.message_aborted.take() {
            None => {
                self.pending = Some(Pending::MessageEnd);
                Step::Event(ServerEvent::MessageEnd)
            }
            Some(reason) => {
                let reply = match reason {
                    AbortReason::TooLarge => Reply::new(
                        ReplyCode::STORAGE_EXCEEDED,
                        Some(EnhancedCode::MESSAGE_TOO_BIG),
                        "Error: message exceeds fixed maximum message size",
                    ),
                    _ => Reply::new(
                        ReplyCode::MAILBOX_UNAVAILABLE,
                        Some(EnhancedCode::SYNTAX_ERROR),
                        "Error: bare <CR> or <LF> in message content",
                    ),
                };
                self.end_transaction();
                self.error_reply(reply);
                Step::Continue
            }
        }
    }

    /// Refuses an overlong line; a SASL response ends the AUTH exchange.
    pub(super) fn line_too_long(&mut self, sasl: bool) {
        let text = if sasl {
            self.phase = Phase::Command;
            "Error: SASL response limit exceeded"
        } else {
            "Error: line too long"
        };
        self.error_reply(Reply::new(
            ReplyCode::SYNTAX_ERROR,
            Some(EnhancedCode::LINE_TOO_LONG),
            text,
        ));
    }
}

/// True for a line that starts with the AUTH verb, which may be longer than other
/// commands (RFC 4954 §4).
pub(super) fn is_auth_line(line: &[u8]) -> bool {
    line.len() >= 5 && line[..4].eq_ignore_ascii_case(b"AUTH") && line[4] == b' '
}
