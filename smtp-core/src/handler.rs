//! Server user code: a [`Handler`] makes one [`SessionHandler`] per connection, whose hooks
//! are called as the conversation goes. Every hook answers with a [`Decision`], so any hook
//! can refuse with any code, enhanced code and text.
//!
//! [`Dispatch`] turns a [`ServerSession`]'s events into hook calls. Every driver (blocking,
//! async, the C server, the Python server) uses it, so the mapping exists once.
//!
//! ```
//! use smtp_core::handler::{Handler, SessionHandler, ConnectionInfo, Transaction};
//! use smtp_core::server::Decision;
//! use smtp_core::reply::{Reply, ReplyCode, EnhancedCode};
//! use smtp_core::address::ForwardPath;
//! use smtp_core::command::RcptParameters;
//!
//! /// Accepts mail for one domain and counts the bytes.
//! struct OneDomain;
//! struct Counter { bytes: usize }
//! impl Handler for OneDomain {
//!     type Session = Counter;
//!     fn connect(&self, _: &ConnectionInfo) -> Result<Counter, Reply> { Ok(Counter { bytes: 0 }) }
//! }
//! impl SessionHandler for Counter {
//!     fn rcpt(&mut self, to: &ForwardPath, _: &RcptParameters) -> Decision {
//!         if to.as_str().ends_with("@example.com") { Decision::Accept } else {
//!             Decision::Reply(Reply::new(ReplyCode::MAILBOX_UNAVAILABLE,
//!                 Some(EnhancedCode::new(5, 7, 1)), "relay denied"))
//!         }
//!     }
//!     fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> { self.bytes += chunk.len(); Ok(()) }
//!     fn data_end(&mut self, _: &Transaction) -> Decision { Decision::Accept }
//! }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use crate::address::{ForwardPath, ReversePath};
use crate::auth::{AuthAttempt, Secret};
use crate::command::{MailParameters, RcptParameters};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::{AbortReason, Decision, HelloVerb, ServerEvent, ServerSession};

/// What a handler knows about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// A number unique within the server, for logs.
    pub id: u64,
    /// The client's address, when the connection has one.
    pub peer: Option<SocketAddr>,
    /// The server's own address.
    pub local: Option<SocketAddr>,
    /// The server's host name.
    pub hostname: String,
    /// True when the connection started encrypted (implicit TLS).
    pub tls: bool,
}

/// The envelope and context of the message being received, handed to
/// [`SessionHandler::data_end`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The verb and name the client greeted with.
    pub hello: Option<(HelloVerb, String)>,
    /// The sender.
    pub from: Option<ReversePath>,
    /// MAIL's parameters.
    pub mail_params: MailParameters,
    /// The accepted recipients, in order.
    pub recipients: Vec<ForwardPath>,
    /// True when the session is encrypted.
    pub tls: bool,
    /// The user the client authenticated as.
    pub authenticated: Option<String>,
}

/// Makes a [`SessionHandler`] for each connection. Shared by all connections, so it must
/// be `Send + Sync`; per-connection state lives in the session handler.
pub trait Handler: Send + Sync + 'static {
    /// The per-connection part.
    type Session: SessionHandler;

    /// A client connected. Return its session handler, or a reply that refuses it (554, or
    /// 421 to close at once).
    fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply>;
}

/// Hooks for one connection. Every hook has a default: accept everything, refuse AUTH,
/// throw content away.
pub trait SessionHandler: Send + 'static {
    /// HELO, EHLO or LHLO.
    fn hello(&mut self, _verb: HelloVerb, _domain: &str) -> Decision {
        Decision::Accept
    }

    /// The connection is now encrypted (after STARTTLS).
    fn tls_started(&mut self) {}

    /// AUTH: check the credentials (use [`crate::auth::Secret::constant_time_eq`]).
    /// Default: refuse.
    fn auth(&mut self, _attempt: &AuthAttempt) -> Decision {
        Decision::Reply(Reply::new(
            ReplyCode::AUTH_INVALID,
            Some(EnhancedCode::new(5, 7, 8)),
            "Error: authentication failed",
        ))
    }

    /// MAIL FROM.
    fn mail(&mut self, _from: &ReversePath, _params: &MailParameters) -> Decision {
        Decision::Accept
    }

    /// RCPT TO.
    fn rcpt(&mut self, _to: &ForwardPath, _params: &RcptParameters) -> Decision {
        Decision::Accept
    }

    /// DATA or the first BDAT chunk: may the content come?
    fn data_start(&mut self, _transaction: &Transaction) -> Decision {
        Decision::Accept
    }

    /// A piece of the content (un-stuffed, CRLF line endings). An error is remembered and
    /// becomes the reply to the end of the message.
    fn data_chunk(&mut self, _chunk: &[u8]) -> Result<(), Reply> {
        Ok(())
    }

    /// The whole message has arrived: accept (the reply can carry a queue id) or refuse.
    /// Under LMTP answer with [`Decision::PerRecipient`].
    fn data_end(&mut self, _transaction: &Transaction) -> Decision {
        Decision::Accept
    }

    /// The message in progress was dropped; discard what was kept of it.
    fn data_aborted(&mut self, _reason: AbortReason) {}

    /// The transaction was abandoned (RSET, a new greeting, STARTTLS).
    fn reset(&mut self) {}

    /// VRFY. Default: 252.
    fn verify(&mut self, _argument: &str) -> Decision {
        Decision::Accept
    }

    /// EXPN. Default: 252.
    fn expand(&mut self, _argument: &str) -> Decision {
        Decision::Accept
    }

    /// The connection is over.
    fn close(&mut self) {}
}

/// What the driver must do after [`Dispatch::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Write the output, then read more input.
    Continue,
    /// Write the output, do the TLS handshake, then call
    /// [`ServerSession::tls_established`] and [`Dispatch::tls_started`].
    StartTls,
    /// Write the output, then close the connection.
    Close,
}

/// Connects a [`ServerSession`] to a [`SessionHandler`]: polls events, calls hooks,
/// answers decisions and keeps the [`Transaction`] that `data_end` receives.
#[derive(Debug)]
pub struct Dispatch<S> {
    handler: Option<S>,
    transaction: Transaction,
    data_error: Option<Reply>,
    closed: bool,
}

impl<S: SessionHandler> Dispatch<S> {
    /// A dispatcher for a connection whose handler accepted it. `tls` says whether the
    /// connection is already encrypted.
    pub fn new(handler: S, tls: bool) -> Dispatch<S> {
        Dispatch {
            handler: Some(handler),
            transaction: Transaction {
                tls,
                ..Transaction::default()
            },
            data_error: None,
            closed: false,
        }
    }

    /// A dispatcher for a connection the handler refused in [`Handler::connect`]: the
    /// refusal is the session's reply to Connect.
    pub fn refused() -> Dispatch<S> {
        Dispatch {
            handler: None,
            transaction: Transaction::default(),
            data_error: None,
            closed: false,
        }
    }

    /// The session handler, while the connection lasts.
    pub fn handler(&mut self) -> Option<&mut S> {
        self.handler.as_mut()
    }

    /// The transaction as known so far.
    pub fn transaction(&self) -> &Transaction {
        &self.transaction
    }

    /// Processes every event the session has; `refusal` answers Connect when the handler
    /// refused the connection.
    pub fn run(&mut self, session: &mut ServerSession, refusal: Option<&Reply>) -> Flow {
        let mut flow = Flow::Continue;
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Connect => {
                    let d = match refusal {
                        Some(r) => Decision::Reply(r.clone()),
                        None => Decision::Accept,
                    };
                    decide(session, d);
                }
                ServerEvent::StartTls => {
                    self.reset_transaction();
                    flow = Flow::StartTls;
                }
                ServerEvent::Close => {
                    self.close();
                    return Flow::Close;
                }
                event => {
                    let decision = self.hook(event);
                    if let Some(d) = decision {
                        decide(session, d);
                    }
                }
            }
            if flow == Flow::StartTls {
                return flow;
            }
        }
        flow
    }

    /// Calls the hook for one event; returns the decision for decision events.
    fn hook(&mut self, event: ServerEvent<'_>) -> Option<Decision> {
        let Some(h) = self.handler.as_mut() else {
            return event.needs_decision().then(|| {
                Decision::Reply(Reply::new(
                    ReplyCode::BAD_SEQUENCE,
                    Some(EnhancedCode::new(5, 5, 1)),
                    "Error: session rejected",
                ))
            });
        };
        let t = &mut self.transaction;
        match event {
            ServerEvent::Hello { verb, domain } => {
                let d = h.hello(verb, &domain);
                if is_accept(&d) {
                    t.hello = Some((verb, domain));
                    t.from = None;
                    t.recipients.clear();
                }
                Some(d)
            }
            ServerEvent::Auth(attempt) => {
                let d = h.auth(&attempt);
                if is_accept(&d) {
                    t.authenticated = Some(attempt.username.clone());
                }
                Some(d)
            }
            ServerEvent::Mail { from, params } => {
                let d = h.mail(&from, &params);
                if is_accept(&d) {
                    t.from = Some(from);
                    t.mail_params = params;
                    t.recipients.clear();
                }
                Some(d)
            }
            ServerEvent::Rcpt { to, params } => {
                let d = h.rcpt(&to, &params);
                if is_accept(&d) {
                    t.recipients.push(to);
                }
                Some(d)
            }
            ServerEvent::MessageStart => {
                self.data_error = None;
                Some(h.data_start(t))
            }
            ServerEvent::MessageData(chunk) => {
                if self.data_error.is_none()
                    && let Err(reply) = h.data_chunk(chunk)
                {
                    self.data_error = Some(reply);
                }
                None
            }
            ServerEvent::MessageEnd => {
                let d = match self.data_error.take() {
                    Some(reply) => {
                        h.data_aborted(AbortReason::Disconnected);
                        Decision::Reply(reply)
                    }
                    None => h.data_end(t),
                };
                t.from = None;
                t.recipients.clear();
                Some(d)
            }
            ServerEvent::MessageAborted(reason) => {
                self.data_error = None;
                h.data_aborted(reason);
                None
            }
            ServerEvent::Reset => {
                t.from = None;
                t.recipients.clear();
                h.reset();
                None
            }
            ServerEvent::Verify(arg) => Some(h.verify(&arg)),
            ServerEvent::Expand(arg) => Some(h.expand(&arg)),
            ServerEvent::Connect | ServerEvent::StartTls | ServerEvent::Close => None,
        }
    }

    fn reset_transaction(&mut self) {
        let tls = self.transaction.tls;
        self.transaction = Transaction {
            tls,
            ..Transaction::default()
        };
    }

    /// The TLS handshake succeeded; call after [`ServerSession::tls_established`].
    pub fn tls_started(&mut self) {
        self.reset_transaction();
        self.transaction.tls = true;
        if let Some(h) = self.handler.as_mut() {
            h.tls_started();
        }
    }

    /// The connection ended (the session closed it, or the driver lost it). Idempotent.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Some(h) = self.handler.as_mut() {
            h.close();
        }
    }
}

fn decide(session: &mut ServerSession, decision: Decision) {
    // The session asked for this decision in the event just polled.
    let answered = session.decide(decision);
    debug_assert!(answered.is_ok());
}

fn is_accept(decision: &Decision) -> bool {
    match decision {
        Decision::Accept => true,
        Decision::Reply(r) => r.is_positive(),
        Decision::PerRecipient(rs) => rs.first().is_none_or(Reply::is_positive),
    }
}

/// Adds password authentication to any handler: AUTH is checked against a fixed table of
/// users (in time that does not depend on how much of a password was right), and everything
/// else goes to the inner handler.
///
/// ```
/// use smtp_core::handler::{DiscardHandler, PasswordAuth};
/// let handler = PasswordAuth::new(DiscardHandler, [("alice", "secret")]);
/// ```
#[derive(Debug)]
pub struct PasswordAuth<H> {
    inner: H,
    users: Arc<Vec<(String, Secret)>>,
}

impl<H> PasswordAuth<H> {
    /// Wraps `inner` with these user names and passwords.
    pub fn new<U: Into<String>, P: Into<String>>(
        inner: H,
        users: impl IntoIterator<Item = (U, P)>,
    ) -> PasswordAuth<H> {
        let users = users
            .into_iter()
            .map(|(u, p)| (u.into(), Secret::new(p)))
            .collect();
        PasswordAuth {
            inner,
            users: Arc::new(users),
        }
    }
}

impl<H: Handler> Handler for PasswordAuth<H> {
    type Session = PasswordAuthSession<H::Session>;
    fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply> {
        Ok(PasswordAuthSession {
            inner: self.inner.connect(info)?,
            users: Arc::clone(&self.users),
        })
    }
}

/// The per-connection part of [`PasswordAuth`].
#[derive(Debug)]
pub struct PasswordAuthSession<S> {
    inner: S,
    users: Arc<Vec<(String, Secret)>>,
}

impl<S: SessionHandler> SessionHandler for PasswordAuthSession<S> {
    fn hello(&mut self, verb: HelloVerb, domain: &str) -> Decision {
        self.inner.hello(verb, domain)
    }
    fn tls_started(&mut self) {
        self.inner.tls_started()
    }
    fn auth(&mut self, attempt: &AuthAttempt) -> Decision {
        // Check every entry so that the time taken does not reveal which user exists.
        let mut ok = false;
        for (user, password) in self.users.iter() {
            let user_ok = Secret::new(user.as_str()).constant_time_eq(&attempt.username);
            let password_ok = password.constant_time_eq(attempt.password.expose());
            ok |= user_ok & password_ok;
        }
        let authz_ok =
            attempt.authorization_id.is_empty() || attempt.authorization_id == attempt.username;
        if ok && authz_ok {
            Decision::Accept
        } else {
            Decision::Reply(Reply::new(
                ReplyCode::AUTH_INVALID,
                Some(EnhancedCode::new(5, 7, 8)),
                "Error: authentication failed",
            ))
        }
    }
    fn mail(&mut self, from: &ReversePath, params: &MailParameters) -> Decision {
        self.inner.mail(from, params)
    }
    fn rcpt(&mut self, to: &ForwardPath, params: &RcptParameters) -> Decision {
        self.inner.rcpt(to, params)
    }
    fn data_start(&mut self, transaction: &Transaction) -> Decision {
        self.inner.data_start(transaction)
    }
    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        self.inner.data_chunk(chunk)
    }
    fn data_end(&mut self, transaction: &Transaction) -> Decision {
        self.inner.data_end(transaction)
    }
    fn data_aborted(&mut self, reason: AbortReason) {
        self.inner.data_aborted(reason)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn verify(&mut self, argument: &str) -> Decision {
        self.inner.verify(argument)
    }
    fn expand(&mut self, argument: &str) -> Decision {
        self.inner.expand(argument)
    }
    fn close(&mut self) {
        self.inner.close()
    }
}

/// Accepts every message and throws it away: for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardHandler;

/// The per-connection part of [`DiscardHandler`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSession;

impl Handler for DiscardHandler {
    type Session = DiscardSession;
    fn connect(&self, _info: &ConnectionInfo) -> Result<DiscardSession, Reply> {
        Ok(DiscardSession)
    }
}

impl SessionHandler for DiscardSession {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerConfig;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        content: Vec<u8>,
    }

    impl SessionHandler for Recorder {
        fn hello(&mut self, verb: HelloVerb, domain: &str) -> Decision {
            self.calls.push(format!("hello {verb:?} {domain}"));
            Decision::Accept
        }
        fn mail(&mut self, from: &ReversePath, _: &MailParameters) -> Decision {
            self.calls.push(format!("mail {from}"));
            Decision::Accept
        }
        fn rcpt(&mut self, to: &ForwardPath, _: &RcptParameters) -> Decision {
            self.calls.push(format!("rcpt {to}"));
            if to.as_str().starts_with("no") {
                Decision::Reply(Reply::new(
                    ReplyCode::MAILBOX_UNAVAILABLE,
                    Some(EnhancedCode::new(5, 1, 1)),
                    "no",
                ))
            } else {
                Decision::Accept
            }
        }
        fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
            self.content.extend_from_slice(chunk);
            Ok(())
        }
        fn data_end(&mut self, t: &Transaction) -> Decision {
            let to: Vec<_> = t.recipients.iter().map(|r| r.as_str().to_owned()).collect();
            self.calls.push(format!(
                "data_end from={} to={}",
                t.from.as_ref().unwrap(),
                to.join(",")
            ));
            Decision::Reply(Reply::new(
                ReplyCode::OK,
                Some(EnhancedCode::new(2, 0, 0)),
                "queued as X1",
            ))
        }
        fn reset(&mut self) {
            self.calls.push("reset".into());
        }
        fn close(&mut self) {
            self.calls.push("close".into());
        }
    }

    #[test]
    fn dispatch_calls_hooks_and_tracks_the_transaction() {
        let mut session = ServerSession::new(ServerConfig::new("mx.test"), Duration::ZERO);
        let mut dispatch = Dispatch::new(Recorder::default(), false);
        assert_eq!(dispatch.run(&mut session, None), Flow::Continue);
        session.receive(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<no@y.test>\r\nDATA\r\nhi\r\n.\r\nRSET\r\nQUIT\r\n",
            Duration::ZERO,
        );
        assert_eq!(dispatch.run(&mut session, None), Flow::Close);
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.contains("250 2.0.0 queued as X1\r\n"), "{out}");
        let h = dispatch.handler().unwrap();
        assert_eq!(h.content, b"hi\r\n");
        assert_eq!(
            h.calls,
            [
                "hello Ehlo c",
                "mail <a@b.test>",
                "rcpt <x@y.test>",
                "rcpt <no@y.test>",
                "data_end from=<a@b.test> to=x@y.test",
                "close"
            ]
        );
    }

    #[test]
    fn a_failing_chunk_becomes_the_final_reply() {
        struct Full;
        impl SessionHandler for Full {
            fn data_chunk(&mut self, _: &[u8]) -> Result<(), Reply> {
                Err(Reply::new(
                    ReplyCode::INSUFFICIENT_STORAGE,
                    Some(EnhancedCode::new(4, 3, 1)),
                    "disk full",
                ))
            }
        }
        let mut session = ServerSession::new(ServerConfig::new("mx.test"), Duration::ZERO);
        let mut dispatch = Dispatch::new(Full, false);
        session.receive(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nhi\r\n.\r\n",
            Duration::ZERO,
        );
        dispatch.run(&mut session, None);
        dispatch.run(&mut session, None);
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.ends_with("452 4.3.1 disk full\r\n"), "{out}");
    }

    #[test]
    fn refused_connection() {
        let mut session = ServerSession::new(ServerConfig::new("mx.test"), Duration::ZERO);
        let mut dispatch: Dispatch<DiscardSession> = Dispatch::refused();
        let refusal = Reply::new(
            ReplyCode::SERVICE_UNAVAILABLE,
            Some(EnhancedCode::new(4, 7, 0)),
            "too busy",
        );
        assert_eq!(dispatch.run(&mut session, Some(&refusal)), Flow::Close);
        assert_eq!(session.take_output(), b"421 4.7.0 too busy\r\n");
    }
}
