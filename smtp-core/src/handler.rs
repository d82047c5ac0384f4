//! Server user code: a [`Handler`] makes one [`SessionHandler`] per connection, whose hooks
//! are called as the conversation goes. Every hook answers with a [`Decision`](crate::server::Decision), so any hook
//! can refuse with any code, enhanced code and text.
//!
//! [`Dispatch`] turns a [`ServerSession`](crate::server::ServerSession)'s events into hook calls. Every driver (blocking,
//! async, the C server, the Python server) uses it, or, for hooks that must be awaited, the
//! sans-IO [`DispatchState`] it is built on, so the mapping exists once.
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
//!                 Some(EnhancedCode::NOT_AUTHORIZED), "relay denied"))
//!         }
//!     }
//!     fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> { self.bytes += chunk.len(); Ok(()) }
//!     fn data_end(&mut self, _: &Transaction) -> Decision { Decision::Accept }
//! }
//! ```

pub use crate::server::dispatch::{Dispatch, DispatchState, Flow, HookCall, Step};
pub use crate::server::handlers::{
    DiscardHandler, DiscardSession, PasswordAuth, PasswordAuthSession,
};
pub use crate::server::hooks::{
    Answer, AsyncHandler, AsyncSessionHandler, ConnectionInfo, Handler, Hook, IntoAnswer,
    SessionHandler, Transaction,
};
pub use crate::server::message::{
    AsyncMessageHook, Message, MessageHook, WholeMessage, WholeMessageSession,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{ForwardPath, ReversePath};
    use crate::auth::AuthAttempt;
    use crate::command::{MailParameters, RcptParameters};
    use crate::reply::{EnhancedCode, Reply, ReplyCode};
    use crate::server::ServerConfig;
    use crate::server::{Decision, HelloVerb, ServerSession};
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
                    Some(EnhancedCode::BAD_DESTINATION),
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
                Some(EnhancedCode::OK),
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

    /// A session for these tests, which feed a whole scripted dialogue in one write, before
    /// the greeting: the pipelining sync check (tested on the wire in
    /// tests/session_server.rs) would end it, so it is off here.
    fn scripted_session() -> ServerSession {
        let mut config = ServerConfig::new("mx.test");
        config.pipelining_sync = false;
        ServerSession::new(config, Duration::ZERO)
    }

    #[test]
    fn dispatch_calls_hooks_and_tracks_the_transaction() {
        let mut session = scripted_session();
        let mut dispatch = Dispatch::new(Recorder::default(), false);
        assert_eq!(dispatch.run(&mut session, None), Flow::Continue);
        let _ = session.receive(
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
                    Some(EnhancedCode::SYSTEM_FULL),
                    "disk full",
                ))
            }
        }
        let mut session = scripted_session();
        let mut dispatch = Dispatch::new(Full, false);
        let _ = session.receive(
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
        let mut session = scripted_session();
        let mut dispatch: Dispatch<DiscardSession> = Dispatch::refused();
        let refusal = Reply::new(
            ReplyCode::SERVICE_UNAVAILABLE,
            Some(EnhancedCode::TOO_MANY_CONNECTIONS),
            "too busy",
        );
        assert_eq!(dispatch.run(&mut session, Some(&refusal)), Flow::Close);
        assert_eq!(session.take_output(), b"421 4.7.0 too busy\r\n");
    }

    /// Steps `state` to the end, answering every hook with `answer` and listing them.
    fn step_all(
        state: &mut DispatchState,
        session: &mut ServerSession,
        mut answer: impl FnMut(&Hook<'_>) -> Answer,
    ) -> (Vec<String>, Flow) {
        let mut hooks = Vec::new();
        loop {
            match state.step(session, None) {
                Step::Call(call) => {
                    let hook = call.hook();
                    hooks.push(format!("{hook:?}"));
                    let a = answer(&hook);
                    call.answer(a);
                }
                Step::Done(flow) => return (hooks, flow),
            }
        }
    }

    #[test]
    fn the_state_names_each_hook_and_keeps_what_was_accepted() {
        let mut session = scripted_session();
        let mut state = DispatchState::new(false);
        let _ = session.receive(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<no@y.test>\r\nDATA\r\n",
            Duration::ZERO,
        );
        let refuse_no = |hook: &Hook<'_>| match hook {
            Hook::Rcpt { to, .. } if to.as_str().starts_with("no") => Answer::Decision(
                Decision::Reply(Reply::new(ReplyCode::MAILBOX_UNAVAILABLE, None, "no")),
            ),
            Hook::DataStart { transaction } => {
                // The transaction data_start sees holds only the accepted recipient.
                assert_eq!(transaction.recipients.len(), 1);
                Answer::Decision(Decision::Accept)
            }
            _ => Answer::Decision(Decision::Accept),
        };
        let (hooks, flow) = step_all(&mut state, &mut session, refuse_no);
        assert_eq!(flow, Flow::Continue);
        assert_eq!(hooks.len(), 5, "{hooks:?}");
        assert!(hooks[0].starts_with("Hello"), "{hooks:?}");
        assert!(hooks[4].starts_with("DataStart"), "{hooks:?}");
        let t = state.transaction();
        assert_eq!(t.from.as_ref().unwrap().to_string(), "<a@b.test>");
        assert_eq!(t.recipients.len(), 1);
        assert_eq!(t.recipients[0].as_str(), "x@y.test");
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(
            out.contains("550 no\r\n") && out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
            "{out}"
        );
    }

    #[test]
    fn a_decision_hook_answered_without_a_decision_is_a_temporary_failure() {
        let mut session = scripted_session();
        let mut state = DispatchState::new(false);
        let _ = session.receive(b"EHLO c\r\n", Duration::ZERO);
        let (_, flow) = step_all(&mut state, &mut session, |_| Answer::Done);
        assert_eq!(flow, Flow::Continue);
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(
            out.ends_with("451 4.3.0 Error: internal server error\r\n"),
            "{out}"
        );
        assert_eq!(state.transaction().hello, None);
    }

    #[test]
    fn password_auth_forwards_may_block_except_for_its_own_check() {
        struct MayBlock;
        impl Handler for MayBlock {
            type Session = MayBlock;
            fn connect(&self, _: &ConnectionInfo) -> Result<MayBlock, Reply> {
                Ok(MayBlock)
            }
        }
        impl SessionHandler for MayBlock {}
        let info = ConnectionInfo {
            id: 1,
            peer: None,
            local: None,
            hostname: "mx.test".into(),
            tls: false,
            proxy: None,
            tls_state: Default::default(),
        };
        let t = Transaction::default();
        let attempt = AuthAttempt {
            mechanism: crate::ehlo::AuthMechanism::Plain,
            authorization_id: String::new(),
            username: "u".into(),
            password: crate::auth::Secret::new("p"),
        };
        let blocking = PasswordAuth::new(MayBlock, [("u", "p")])
            .connect(&info)
            .unwrap();
        assert!(!blocking.may_block(&Hook::Auth { attempt: &attempt }));
        assert!(blocking.may_block(&Hook::DataEnd { transaction: &t }));
        let quick = PasswordAuth::new(DiscardHandler, [("u", "p")])
            .connect(&info)
            .unwrap();
        assert!(!quick.may_block(&Hook::DataEnd { transaction: &t }));
    }

    #[test]
    fn the_close_hook_is_called_once() {
        let mut session = scripted_session();
        let mut state = DispatchState::new(false);
        let _ = session.receive(b"QUIT\r\n", Duration::ZERO);
        let (hooks, flow) = step_all(&mut state, &mut session, |_| Answer::Done);
        assert_eq!(
            (hooks.as_slice(), flow),
            (["Close".to_owned()].as_slice(), Flow::Close)
        );
        // The driver's own close after the session's adds nothing.
        assert!(state.close().is_none());
    }

    #[test]
    fn tls_started_starts_an_encrypted_transaction() {
        let mut state = DispatchState::new(false);
        let call = state.tls_started();
        assert!(matches!(call.hook(), Hook::TlsStarted));
        call.answer(Answer::Done);
        assert_eq!(
            state.transaction(),
            &Transaction {
                tls: true,
                ..Transaction::default()
            }
        );
    }
}
