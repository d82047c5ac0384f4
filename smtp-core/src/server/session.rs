//! The session's state and its public face: input and output buffers, time, decisions and
//! the event loop. Reading the input lives in `framing`, checking commands in `admission`,
//! the AUTH exchange in `sasl`, and what a decision does in `apply`.

use std::collections::VecDeque;
use std::time::Duration;

use crate::address::SpareText;
use crate::data::{ChunkNormalizer, DataReceiver};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::trace::{Direction, TraceSink, Tracer};

use super::replies::FixedReply;
use super::{AbortReason, Decision, HelloVerb, NoDecisionPending, ServerConfig, ServerEvent};

/// What is waiting for the embedder's decision.
#[derive(Debug)]
pub(super) enum Pending {
    Connect,
    Hello(HelloVerb),
    Auth(String),
    Mail,
    Rcpt,
    DataStart,
    BdatStart { size: u64, last: bool },
    MessageEnd,
    Verify,
    Expand,
    Noop,
    Rset,
    Quit,
}

/// Where the session is in the conversation.
#[derive(Debug)]
pub(super) enum Phase {
    /// Holding the greeting back until this time.
    GreetingDelay(Duration),
    /// Reading command lines.
    Command,
    /// Greeting was refused with a non-421 code: only QUIT is served.
    Rejected,
    /// Waiting for the PLAIN response line.
    SaslPlain,
    /// Waiting for LOGIN's user name line.
    SaslLoginUser,
    /// Waiting for LOGIN's password line.
    SaslLoginPassword(String),
    /// Reading DATA content.
    Data,
    /// Reading `remaining` octets of an accepted BDAT chunk.
    Bdat {
        remaining: u64,
        last: bool,
        size: u64,
    },
    /// Throwing away `remaining` octets of a refused BDAT chunk, then sending `reply`.
    BdatDrain { remaining: u64, reply: Reply },
    /// The 220 for STARTTLS went out; waiting for the driver's handshake.
    AwaitTls,
    /// Over.
    Closed,
}

/// One step of the state machine, computed without holding a borrow of the session;
/// events that carry no message data are `'static` and can be queued.
pub(super) enum Step {
    Event(ServerEvent<'static>),
    Data,
    NeedInput,
    Continue,
}

/// Replies held back when the output already holds this much, so that a client that
/// pipelines without reading cannot make the server buffer without bound.
pub(super) const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Unprocessed input kept at most, beyond one command line.
pub(super) const INPUT_BUFFER: usize = 64 * 1024;
/// Content handed to the embedder per MessageData event, at most.
pub(super) const CONTENT_CHUNK: usize = 64 * 1024;
/// Longest AUTH command line and SASL response line, CRLF included (RFC 4954 §4:
/// 12,288 octets; Postfix's `smtpd_sasl_response_limit`). Other commands keep
/// [`ServerConfig::max_line_len`].
pub(super) const SASL_LINE_MAX: usize = 12_288;

/// A server-side SMTP session. See the [module docs](super) for the driving loop.
#[derive(Debug)]
pub struct ServerSession {
    pub(super) config: ServerConfig,
    pub(super) phase: Phase,
    pub(super) pending: Option<Pending>,
    pub(super) queued: VecDeque<ServerEvent<'static>>,
    pub(super) input: Vec<u8>,
    pub(super) input_pos: usize,
    pub(super) output: Vec<u8>,
    pub(super) content: Vec<u8>,
    /// No one reads DATA content ([`ServerSession::discard_content`]): it is checked and
    /// counted, not copied into `content`.
    pub(super) discard_content: bool,
    pub(super) receiver: DataReceiver,
    /// BDAT content under the bare line-ending policy, across chunks.
    pub(super) bdat_normalizer: ChunkNormalizer,
    pub(super) now: Duration,
    pub(super) deadline: Option<Duration>,
    pub(super) eof: bool,
    /// Part of an overlong line was thrown away; skip to its end.
    pub(super) skipping_line: bool,
    // Session state.
    pub(super) hello: Option<HelloVerb>,
    pub(super) tls: bool,
    pub(super) authenticated: Option<String>,
    pub(super) errors: u32,
    pub(super) auth_failures: u32,
    /// How many times each verb was given, under [`ServerConfig::command_limits`].
    pub(super) command_counts: Vec<(&'static str, u32)>,
    // Transaction state.
    pub(super) in_transaction: bool,
    pub(super) transaction_smtputf8: bool,
    pub(super) transaction_binary: bool,
    pub(super) recipients: usize,
    pub(super) message_size: u64,
    pub(super) message_started: bool,
    pub(super) message_aborted: Option<AbortReason>,
    /// Where the wire trace goes, when the session traces.
    pub(super) tracer: Tracer,
    /// The strings of the last message's addresses, to hold the next ones.
    pub(super) spare_text: SpareText,
}

impl ServerSession {
    /// A session for a connection accepted at `now`. Unless a greeting delay is configured,
    /// the first event is [`ServerEvent::Connect`].
    pub fn new(config: ServerConfig, now: Duration) -> ServerSession {
        let mut queued = VecDeque::new();
        let phase = match config.greeting_delay {
            Some(delay) if !delay.is_zero() => Phase::GreetingDelay(now + delay),
            _ => {
                queued.push_back(ServerEvent::Connect);
                Phase::Command
            }
        };
        let tls = config.tls_active;
        let receiver = DataReceiver::new(config.bare_line_policy);
        let mut session = ServerSession {
            config,
            phase,
            pending: None,
            queued,
            input: Vec::new(),
            input_pos: 0,
            output: Vec::new(),
            content: Vec::new(),
            discard_content: false,
            receiver,
            bdat_normalizer: ChunkNormalizer::new(),
            now,
            deadline: None,
            eof: false,
            skipping_line: false,
            hello: None,
            tls,
            authenticated: None,
            errors: 0,
            auth_failures: 0,
            command_counts: Vec::new(),
            in_transaction: false,
            transaction_smtputf8: false,
            transaction_binary: false,
            recipients: 0,
            message_size: 0,
            message_started: false,
            message_aborted: None,
            tracer: Tracer::default(),
            spare_text: SpareText::default(),
        };
        if let Phase::GreetingDelay(until) = session.phase {
            session.deadline = Some(until);
        }
        session
    }

    /// Traces every command and reply line of this session into `sink`, marked with
    /// `connection` (see [`crate::trace`]): AUTH payloads redacted, content by size only.
    pub fn set_trace(&mut self, sink: TraceSink, connection: u64) {
        self.tracer.set(sink, connection);
    }

    /// Says whether DATA content is read by anyone. With `discard` it is still read to
    /// its end, counted against the size limit and checked for bare line endings, but no
    /// [`ServerEvent::MessageData`] carries it (BDAT content still comes as events). The
    /// connection layer sets it when the handler leaves `data_chunk` to its default.
    pub(crate) fn discard_content(&mut self, discard: bool) {
        self.discard_content = discard;
    }

    /// Where the strings of addresses done with go, to hold the next ones the session
    /// parses (the dispatch gives back a message's envelope at its end).
    pub(crate) fn spare_text(&mut self) -> &mut SpareText {
        &mut self.spare_text
    }

    /// The configuration this session runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Takes bytes read from the client at `now`. Returns how many were taken: fewer than
    /// offered when the input buffer is full (poll events, then offer the rest again).
    #[must_use = "bytes beyond the returned count were not taken: offer them again after polling events"]
    #[inline]
    pub fn receive(&mut self, bytes: &[u8], now: Duration) -> usize {
        self.now = now;
        if matches!(self.phase, Phase::Closed) {
            return bytes.len();
        }
        if let Phase::GreetingDelay(_) = self.phase {
            if !bytes.is_empty() {
                self.early_talker();
            }
            return bytes.len();
        }
        self.compact_input();
        let room = (INPUT_BUFFER + self.config.max_line_len).saturating_sub(self.input.len());
        let taken = bytes.len().min(room);
        self.input.extend_from_slice(&bytes[..taken]);
        taken
    }

    /// The client closed its side of the connection. Commands already received are still
    /// answered; a message in progress is aborted.
    ///
    /// **Promise:** after `receive_eof`, the session needs no more input. Keep calling
    /// [`poll_event`](Self::poll_event), answering decisions with
    /// [`decide`](Self::decide) and writing (or dropping) the output: within a bounded
    /// number of steps it yields [`ServerEvent::Close`] and [`is_closed`](Self::is_closed)
    /// turns true, whatever state it was in (before the greeting, mid-command, mid-message,
    /// waiting for a decision). A loop that stops reading at end of input therefore always
    /// ends.
    pub fn receive_eof(&mut self) {
        self.eof = true;
        if let Phase::GreetingDelay(_) = self.phase {
            // The client left before the greeting: there is no one to greet, and waiting
            // for the delay would have the driver read the end of the input again and again.
            self.phase = Phase::Closed;
            self.deadline = None;
            self.queued.push_back(ServerEvent::Close);
        }
    }

    /// Bytes to send to the client. Write them (all or some), then call
    /// [`ServerSession::consume_output`] or [`ServerSession::clear_output`].
    #[must_use]
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Marks the first `n` bytes of [`ServerSession::output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        if n >= self.output.len() {
            self.output.clear(); // perf: all written, the common case
        } else {
            self.output.drain(..n);
        }
    }

    /// Marks all of [`ServerSession::output`] as written.
    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    /// Moves the output out of the session.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True once the session has ended ([`ServerEvent::Close`] was returned).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed) && self.queued.is_empty()
    }

    /// True while the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The name given with HELO/EHLO/LHLO, if any was accepted.
    pub fn hello_verb(&self) -> Option<HelloVerb> {
        self.hello
    }

    /// The user name the client authenticated as.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Recipients accepted in the current transaction.
    pub fn recipient_count(&self) -> usize {
        self.recipients
    }

    /// True between transactions: no sender, message, AUTH exchange or decision in
    /// progress. A server shutting down may end an idle session without losing anything.
    pub fn is_idle(&self) -> bool {
        !self.in_transaction
            && self.pending.is_none()
            && matches!(self.phase, Phase::Command | Phase::Rejected)
    }

    /// True when [`poll_event`](Self::poll_event) would return `None` for want of
    /// input, changing nothing: no event queued or decision pending, every byte read
    /// taken, the end of the input not seen, and reading commands or DATA content not
    /// yet at its end. A cheap look for drivers that ask after every write.
    #[inline(always)]
    pub(crate) fn is_starved(&self) -> bool {
        self.input_pos == self.input.len()
            && self.queued.is_empty()
            && self.pending.is_none()
            && !self.eof
            && match self.phase {
                Phase::Command => true,
                Phase::Data => !self.receiver.is_finished(),
                _ => false,
            }
    }

    /// True while a decision event is unanswered.
    pub fn is_waiting_for_decision(&self) -> bool {
        self.pending.is_some()
    }

    /// When [`ServerSession::handle_timeout`] must be called next, if at all.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.pending.is_some() || matches!(self.phase, Phase::Closed) {
            return None;
        }
        self.deadline
    }

    /// Tells the session the time. When a deadline has passed it ends the greeting delay
    /// (the greeting is then due) or closes the session with 421 4.4.2.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = now;
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        if let Phase::GreetingDelay(_) = self.phase {
            self.phase = Phase::Command;
            self.deadline = None;
            self.queued.push_back(ServerEvent::Connect);
            return;
        }
        self.abort_message(AbortReason::Disconnected);
        let text = format!("{} Error: timeout exceeded", self.config.hostname);
        self.close_with(Reply::new(
            ReplyCode::SERVICE_UNAVAILABLE,
            Some(EnhancedCode::TIMEOUT),
            text,
        ));
    }

    /// True between [`ServerEvent::StartTls`] and [`ServerSession::tls_established`]: the
    /// caller owes the session a TLS handshake, and only then may call
    /// `tls_established`.
    pub fn is_awaiting_tls(&self) -> bool {
        matches!(self.phase, Phase::AwaitTls)
    }

    /// The TLS handshake that followed [`ServerEvent::StartTls`] succeeded. Everything known
    /// about the session is forgotten (RFC 3207 §4.2): the client must greet again.
    pub fn tls_established(&mut self, now: Duration) {
        self.now = now;
        if let Phase::AwaitTls = self.phase {
            self.tls = true;
            self.hello = None;
            self.authenticated = None;
            self.input.clear();
            self.input_pos = 0;
            self.phase = Phase::Command;
            self.wait_for_command();
        }
    }

    /// Answers the event that is waiting for a decision.
    pub fn decide(&mut self, decision: Decision) -> Result<(), NoDecisionPending> {
        let pending = self.pending.take().ok_or(NoDecisionPending)?;
        let (accepted, custom) = match decision {
            Decision::Accept => (true, None),
            Decision::Reply(r) => {
                let r = fit_reply(&pending, r);
                (r.is_positive(), Some(r))
            }
            Decision::PerRecipient(mut replies) => {
                if let Pending::MessageEnd = pending
                    && self.config.lmtp
                {
                    let replies = replies
                        .into_iter()
                        .map(|r| fit_reply(&pending, r))
                        .collect();
                    self.finish_lmtp_message(replies);
                    return Ok(());
                }
                if replies.is_empty() {
                    (true, None)
                } else {
                    let r = fit_reply(&pending, replies.swap_remove(0));
                    (r.is_positive(), Some(r))
                }
            }
        };
        self.apply_decision(pending, accepted, custom);
        Ok(())
    }

    /// The content the last [`ServerEvent::MessageData`] carried, until the next
    /// [`poll_event`](Self::poll_event): lets the dispatcher hand a chunk to a hook after
    /// the event (and its borrow of the session) is gone.
    pub(crate) fn message_data(&self) -> &[u8] {
        &self.content
    }

    /// The next event, or `None` when the session needs more input, a decision, or output
    /// to be written. A [`ServerEvent::MessageData`] slice is valid until the next call.
    #[must_use = "events that need a decision stop the session until decide() is called"]
    pub fn poll_event(&mut self) -> Option<ServerEvent<'_>> {
        self.content.clear();
        loop {
            match self.step() {
                Step::Event(e) => return Some(e),
                Step::Data => return Some(ServerEvent::MessageData(&self.content)),
                Step::NeedInput => return None,
                Step::Continue => {}
            }
        }
    }

    pub(super) fn step(&mut self) -> Step {
        if let Some(e) = self.queued.pop_front() {
            match e {
                ServerEvent::Close => self.phase = Phase::Closed,
                ServerEvent::Connect => self.pending = Some(Pending::Connect),
                // Queued behind the events of the transaction RSET or QUIT ends.
                ServerEvent::Rset => self.pending = Some(Pending::Rset),
                ServerEvent::Quit => self.pending = Some(Pending::Quit),
                _ => {}
            }
            return Step::Event(e);
        }
        if self.pending.is_some()
            || matches!(
                self.phase,
                Phase::Closed | Phase::AwaitTls | Phase::GreetingDelay(_)
            )
        {
            return Step::NeedInput;
        }
        match self.phase {
            Phase::Data => self.step_data(),
            Phase::Bdat { .. } | Phase::BdatDrain { .. } => self.step_bdat(),
            _ => self.step_line(),
        }
    }

    /// Restarts the per-command deadline: the client has this long for its next command.
    pub(super) fn wait_for_command(&mut self) {
        self.deadline = Some(self.now + self.config.command_timeout);
    }

    pub(super) fn early_talker(&mut self) {
        self.close_with(Reply::new(
            ReplyCode::TRANSACTION_FAILED,
            Some(EnhancedCode::INVALID_COMMAND),
            format!(
                "{} Error: protocol error, client talked before the greeting",
                self.config.hostname
            ),
        ));
    }

    pub(super) fn start_message(&mut self) {
        self.message_started = true;
        self.message_size = 0;
        self.message_aborted = None;
        self.bdat_normalizer.reset();
    }

    /// Forgets the transaction; returns a Reset event if there was one.
    pub(super) fn reset_transaction(&mut self) -> Step {
        if self.message_started {
            // RSET between BDAT chunks drops the partial message.
            self.queued
                .push_back(ServerEvent::MessageAborted(AbortReason::Reset));
        }
        if self.in_transaction {
            self.queued.push_back(ServerEvent::Reset);
        }
        self.end_transaction();
        Step::Continue
    }

    pub(super) fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.transaction_smtputf8 = false;
        self.transaction_binary = false;
        self.recipients = 0;
        self.message_started = false;
        self.message_size = 0;
        self.message_aborted = None;
    }

    /// Reports a message in progress as aborted, for a session that ends in its middle.
    pub(super) fn abort_message(&mut self, reason: AbortReason) {
        let in_message =
            matches!(self.phase, Phase::Data | Phase::Bdat { .. }) || self.message_started;
        if in_message && self.message_aborted.is_none() {
            self.queued.push_back(ServerEvent::MessageAborted(reason));
        }
        self.end_transaction();
    }

    pub(super) fn close_with(&mut self, reply: Reply) {
        self.reply(reply);
        self.pending = None;
        self.phase = Phase::Closed;
        self.input.clear();
        self.input_pos = 0;
        self.queued.push_back(ServerEvent::Close);
    }

    pub(super) fn reply(&mut self, reply: Reply) {
        let start = self.output.len();
        if self.config.enhanced_status_codes {
            reply.write_to(&mut self.output);
        } else {
            reply.without_enhanced().write_to(&mut self.output);
        }
        self.tracer
            .replies(Direction::ServerToClient, &self.output[start..]);
    }

    /// Says one of the session's own fixed replies (see [`FixedReply`]) as
    /// [`reply`](Self::reply) would say the same [`Reply`], without building it. perf: the
    /// default replies to MAIL, RCPT, DATA and the message's end, four per message, are
    /// copied as they stand rather than formatted (each a `Vec` and a `String` allocated
    /// and freed when built as a `Reply`, 9 % of the C server's own instructions).
    pub(super) fn reply_fixed(&mut self, reply: &FixedReply) {
        let line = if self.config.enhanced_status_codes {
            reply.enhanced
        } else {
            reply.plain
        };
        self.output.extend_from_slice(line);
        self.tracer.replies(Direction::ServerToClient, line);
    }

    /// Sends a negative reply and counts it; too many and the session ends.
    pub(super) fn error_reply(&mut self, reply: Reply) {
        self.reply(reply);
        self.errors += 1;
        if self.errors >= self.config.max_errors && !matches!(self.phase, Phase::Closed) {
            self.abort_message(AbortReason::Disconnected);
            self.close_with(Reply::new(
                ReplyCode::SERVICE_UNAVAILABLE,
                Some(EnhancedCode::TOO_MANY_ERRORS),
                format!("{} Error: too many errors", self.config.hostname),
            ));
        }
    }
}

/// The embedder's reply to `pending`, made safe to say: a positive intermediate (3xx) reply
/// belongs to DATA and BDAT's start only. To any other command it would tell the client to
/// go on sending (334 to AUTH, 354 to MAIL) while the session takes the command as done, so
/// the two would no longer agree on where they are. Such an answer is no clear acceptance:
/// it becomes the internal error (451), as an answer of the wrong kind does.
fn fit_reply(pending: &Pending, reply: Reply) -> Reply {
    if reply.code().is_intermediate()
        && !matches!(pending, Pending::DataStart | Pending::BdatStart { .. })
    {
        log::warn!(
            "server: a {} reply to a command that completes; answering 451",
            reply.code().get()
        );
        return crate::server::hooks::internal_error();
    }
    reply
}
