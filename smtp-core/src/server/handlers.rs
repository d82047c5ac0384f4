//! Ready-made handlers: [`PasswordAuth`] (AUTH against a fixed table of users, around any
//! handler) and [`DiscardHandler`] (accept and drop). The Maildir handler is
//! [`crate::maildir::MaildirHandler`].

use std::sync::Arc;

use crate::auth::{AuthAttempt, Secret};
use crate::ehlo::AuthMechanism;
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::Decision;
use crate::server::hooks::{
    Answer, AsyncHandler, AsyncSessionHandler, ConnectionInfo, Handler, Hook, IntoAnswer,
    SessionHandler, forward_hooks, with_hooks,
};
use crate::server::wrap::forward_hooks_async;

/// Adds password authentication to any handler, a [`Handler`] or an [`AsyncHandler`]:
/// AUTH is checked against a fixed table of users (in time that does not depend on how
/// much of a password was right), and everything else goes to the inner handler. The
/// server offers AUTH PLAIN and LOGIN for it ([`Handler::auth_mechanisms`]; none when
/// the table is empty) unless the configuration names mechanisms itself; as always, only over TLS unless
/// [`ServerConfig::allow_insecure_auth`](crate::server::ServerConfig::allow_insecure_auth).
///
/// ```
/// use smtp_core::handler::{DiscardHandler, Handler, PasswordAuth};
/// let handler = PasswordAuth::new(DiscardHandler, [("alice", "secret")]);
/// assert!(!handler.auth_mechanisms().is_empty());
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

impl<H> PasswordAuth<H> {
    /// PLAIN and LOGIN, when there is a user to check (an empty table offers nothing).
    fn mechanisms(&self) -> Vec<AuthMechanism> {
        if self.users.is_empty() {
            Vec::new()
        } else {
            vec![AuthMechanism::Plain, AuthMechanism::Login]
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

    fn auth_mechanisms(&self) -> Vec<AuthMechanism> {
        self.mechanisms()
    }
}

impl<H: AsyncHandler> AsyncHandler for PasswordAuth<H> {
    type Session = PasswordAuthSession<H::Session>;
    async fn connect(&self, info: &ConnectionInfo) -> Result<Self::Session, Reply> {
        Ok(PasswordAuthSession {
            inner: self.inner.connect(info).await?,
            users: Arc::clone(&self.users),
        })
    }

    fn auth_mechanisms(&self) -> Vec<AuthMechanism> {
        self.mechanisms()
    }
}

/// The per-connection part of [`PasswordAuth`].
#[derive(Debug)]
pub struct PasswordAuthSession<S> {
    inner: S,
    users: Arc<Vec<(String, Secret)>>,
}

impl<S> PasswordAuthSession<S> {
    /// Answers AUTH from the table; every other hook goes to the inner handler.
    fn intercept(&mut self, hook: &Hook<'_>) -> Option<Answer> {
        match hook {
            Hook::Auth { attempt } => Some(Answer::Decision(self.check(attempt))),
            _ => None,
        }
    }

    fn check(&self, attempt: &AuthAttempt) -> Decision {
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
                Some(EnhancedCode::AUTH_INVALID),
                "Error: authentication failed",
            ))
        }
    }
}

impl<S: Send> PasswordAuthSession<S> {
    async fn intercept_async(&mut self, hook: &Hook<'_>) -> Option<Answer> {
        self.intercept(hook)
    }
}

impl<S: AsyncSessionHandler> AsyncSessionHandler for PasswordAuthSession<S> {
    with_hooks!(forward_hooks_async! inner);
}

impl<S: SessionHandler> SessionHandler for PasswordAuthSession<S> {
    with_hooks!(forward_hooks! inner);

    fn may_block(&self, hook: &Hook<'_>) -> bool {
        // The password check only computes.
        !matches!(hook, Hook::Auth { .. }) && self.inner.may_block(hook)
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

impl SessionHandler for DiscardSession {
    fn may_block(&self, _hook: &Hook<'_>) -> bool {
        false
    }
}
