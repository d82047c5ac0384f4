//! The server's hooks: what user code is told about a connection and what it answers.
//! The vocabulary itself is one table beside the session's events (the crate-private
//! `with_hooks!` macro in `server/event.rs`: each hook's name, arguments, answer and
//! default); the synchronous [`SessionHandler`], the async [`AsyncSessionHandler`], the
//! [`Hook`] a driver is asked to call, the way each kind of handler is called, a hook's
//! arguments for a binding ([`Hook::for_each_arg`]), its default answer, and the way a
//! wrapper such as [`PasswordAuth`](crate::handler::PasswordAuth) forwards hooks are all
//! made here from that table.
//!
//! A new hook touches two files of the core: the session, which emits its event, and
//! `server/event.rs`, which names the event, maps it to the hook and lists the hook in the
//! table. The bindings translate hooks they do not know by their name and arguments and
//! answer them with the table's default, so a binding changes only to give the hook a
//! shape of its own (the C callback table, an aiosmtpd `handle_*` method).

use std::future::Future;
use std::net::SocketAddr;

use crate::address::{ForwardPath, ReversePath};
use crate::auth::AuthAttempt;
use crate::command::{MailParameters, RcptParameters};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::{AbortReason, Decision, HelloVerb};

/// What a handler knows about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// A number unique within the server, for logs.
    pub id: u64,
    /// The client's address, when the connection has one. Behind a load balancer
    /// speaking the PROXY protocol, the client's as the header gave it (see `proxy`).
    pub peer: Option<SocketAddr>,
    /// The server's own address.
    pub local: Option<SocketAddr>,
    /// The server's host name.
    pub hostname: String,
    /// True when the connection started encrypted (implicit TLS).
    pub tls: bool,
    /// What the TLS handshake negotiated (version, cipher, the client's SNI name and
    /// certificate), readable from the moment it finished: at connect with implicit TLS,
    /// from the `tls_started` hook on after STARTTLS. Keep a clone of it in the session
    /// handler to read it from any hook, as go-smtp's `Conn.TLSConnectionState()` or
    /// aiosmtpd's `session.ssl`:
    ///
    /// ```
    /// use smtp_core::handler::{ConnectionInfo, Handler, SessionHandler, Transaction};
    /// use smtp_core::reply::{EnhancedCode, Reply, ReplyCode};
    /// use smtp_core::server::Decision;
    /// use smtp_core::tls::TlsState;
    ///
    /// struct RequireClientCert;
    /// struct Session { tls: TlsState }
    /// impl Handler for RequireClientCert {
    ///     type Session = Session;
    ///     fn connect(&self, info: &ConnectionInfo) -> Result<Session, Reply> {
    ///         Ok(Session { tls: info.tls_state.clone() })
    ///     }
    /// }
    /// impl SessionHandler for Session {
    ///     fn data_end(&mut self, _: &Transaction) -> Decision {
    ///         match self.tls.get() {
    ///             Some(tls) if tls.peer_certificate().is_some() => Decision::Accept,
    ///             _ => Decision::Reply(Reply::new(ReplyCode::MAILBOX_UNAVAILABLE,
    ///                 Some(EnhancedCode::NOT_AUTHORIZED), "client certificate required")),
    ///         }
    ///     }
    /// }
    /// ```
    pub tls_state: crate::tls::TlsState,
    /// The PROXY protocol header the connection began with, on a listener configured
    /// for it ([`crate::server::proxy`]): version, command, the client's and the
    /// balancer's addresses, TLVs. `peer` is already the client's.
    pub proxy: Option<crate::server::proxy::ProxyHeader>,
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

    /// The SASL mechanisms this handler's `auth` hook checks. When
    /// [`ServerConfig::auth_mechanisms`](crate::server::ServerConfig::auth_mechanisms) is
    /// left empty, the server offers AUTH with these, so a handler that implements `auth`
    /// says so here, in the same `impl`, and nothing else needs setting.
    /// [`PasswordAuth`](crate::handler::PasswordAuth) answers PLAIN and LOGIN. Default:
    /// none (AUTH is not offered).
    fn auth_mechanisms(&self) -> Vec<crate::ehlo::AuthMechanism> {
        Vec::new()
    }
}

/// Makes an [`AsyncSessionHandler`] for each connection: the async counterpart of
/// [`Handler`].
pub trait AsyncHandler: Send + Sync + 'static {
    /// The per-connection part.
    type Session: AsyncSessionHandler;

    /// A client connected. Return its session handler, or a reply that refuses it (554, or
    /// 421 to close at once).
    fn connect(
        &self,
        info: &ConnectionInfo,
    ) -> impl Future<Output = Result<Self::Session, Reply>> + Send;

    /// As [`Handler::auth_mechanisms`]: the mechanisms the `auth` hook checks, offered when
    /// the configuration names none. Default: none.
    fn auth_mechanisms(&self) -> Vec<crate::ehlo::AuthMechanism> {
        Vec::new()
    }
}

/// The default answer to AUTH: refused.
pub(crate) fn auth_refused() -> Decision {
    Decision::Reply(Reply::new(
        ReplyCode::AUTH_INVALID,
        Some(EnhancedCode::AUTH_INVALID),
        "Error: authentication failed",
    ))
}

/// Makes [`HookArg`] and its `From` conversions from one list of kinds of values.
macro_rules! hook_args {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// One argument of a [`Hook`], as [`Hook::for_each_arg`] gives it: each kind of
        /// value a hook carries, so that a binding translates kinds of values once rather
        /// than each hook.
        #[derive(Clone, Copy, Debug)]
        #[non_exhaustive]
        pub enum HookArg<'a> {
            $($(#[$doc])* $variant($ty),)*
        }

        $(impl<'a> From<$ty> for HookArg<'a> {
            fn from(value: $ty) -> HookArg<'a> {
                HookArg::$variant(value)
            }
        })*
    };
}

hook_args! {
    /// The greeting verb.
    Verb(HelloVerb),
    /// A name or a command's argument (the HELO domain, VRFY's argument).
    Text(&'a str),
    /// AUTH's credentials.
    Auth(&'a AuthAttempt),
    /// MAIL's sender.
    Sender(&'a ReversePath),
    /// MAIL's parameters.
    MailParams(&'a MailParameters),
    /// RCPT's recipient.
    Recipient(&'a ForwardPath),
    /// RCPT's parameters.
    RcptParams(&'a RcptParameters),
    /// The envelope and context of the message.
    Transaction(&'a Transaction),
    /// A piece of content.
    Bytes(&'a [u8]),
    /// Why a message was dropped.
    AbortReason(AbortReason),
}

/// The traits, the [`Hook`] enum and the calls, from the table.
macro_rules! define_hooks {
    ([] $(
        $(#[$doc:meta])*
        $variant:ident => fn $name:ident $(<$lt:lifetime>)? ($($arg:ident: $ty:ty),*) -> $answer:ty $default:block
    )*) => {
        /// Hooks for one connection. Every hook has a default: accept everything, refuse
        /// AUTH, throw content away.
        pub trait SessionHandler: Send + 'static {
            $(
                $(#[$doc])*
                #[allow(unused_variables)]
                fn $name $(<$lt>)? (&mut self, $($arg: $ty),*) -> $answer $default
            )*

            /// Whether `hook` may block the calling thread (file, database or network I/O,
            /// a lock). The async server on a multi-threaded runtime runs the hooks that
            /// may block in `tokio::task::block_in_place` (feature `tokio`), so that they
            /// do not stall other connections, and calls the others inline, which costs
            /// far less. Default: every hook may block; override it to name the quick ones.
            /// Wrappers forward it.
            fn may_block(&self, _hook: &Hook<'_>) -> bool {
                true
            }

            /// The hooks this session leaves to the trait's defaults (it does not
            /// implement them): the connection layer answers those itself with
            /// [`Hook::default_answer`], without asking the driver to call them, which
            /// saves a round trip through the driver per hook. Name only hooks whose
            /// method is the default: a hook named here is never called. Default: none.
            /// Wrappers do not forward it (their own interception must see every hook).
            fn default_hooks(&self) -> HookSet {
                HookSet::EMPTY
            }
        }

        /// The hooks of [`SessionHandler`] as `async fn`s, with the same meaning and the
        /// same defaults (accept everything, refuse AUTH, throw content away). Each hook
        /// is awaited before the connection goes on, so a slow hook delays only its own
        /// connection. A hook that never finishes is not interrupted, not even by the end
        /// of a shutdown's grace period (the connection is cut once the hook returns).
        pub trait AsyncSessionHandler: Send + 'static {
            $(
                $(#[$doc])*
                #[allow(unused_variables)]
                fn $name $(<$lt>)? (&mut self, $($arg: $ty),*)
                    -> impl Future<Output = $answer> + Send {
                    async move $default
                }
            )*
        }

        hook_enum!(@acc [] $($(#[$doc])* $variant ($($arg: $ty),*);)*);

        /// The kinds of [`Hook`], without their arguments (see [`HookSet`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HookKind {
            $(#[allow(missing_docs)] $variant,)*
        }

        // A HookSet is one u32, a bit per kind.
        const _: () = assert!([$(HookKind::$variant),*].len() <= 32);

        impl Hook<'_> {
            /// Calls this hook on a synchronous handler.
            pub fn call<S: SessionHandler + ?Sized>(self, h: &mut S) -> Answer {
                match self {
                    $(Hook::$variant { $($arg),* } => h.$name($($arg),*).into_answer(),)*
                }
            }

            /// Calls this hook on an async handler and awaits it.
            pub async fn call_async<S: AsyncSessionHandler + ?Sized>(self, h: &mut S) -> Answer {
                match self {
                    $(Hook::$variant { $($arg),* } => h.$name($($arg),*).await.into_answer(),)*
                }
            }

            /// True for the hooks whose answer is a [`Decision`] (the session waits for it).
            pub fn needs_decision(&self) -> bool {
                match self {
                    $(Hook::$variant { .. } => <$answer as IntoAnswer>::DECIDES,)*
                }
            }

            /// The hook's kind, without its arguments.
            pub fn kind(&self) -> HookKind {
                match self {
                    $(Hook::$variant { .. } => HookKind::$variant,)*
                }
            }

            /// The hook's name, as the trait methods are named (`"hello"`, `"data_end"`).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Hook::$variant { .. } => stringify!($name),)*
                }
            }

            /// Calls `f` with each argument's name (as the trait method names it) and
            /// value, in order: how a binding translates a hook it has no shape of its own
            /// for.
            ///
            /// ```
            /// use smtp_core::server::hooks::{Hook, HookArg};
            ///
            /// let mut seen = Vec::new();
            /// Hook::Verify { argument: "postmaster" }.for_each_arg(|name, value| {
            ///     if let HookArg::Text(text) = value {
            ///         seen.push((name, text.to_owned()));
            ///     }
            /// });
            /// assert_eq!(seen, [("argument", "postmaster".to_owned())]);
            /// ```
            pub fn for_each_arg<'s>(&'s self, mut f: impl FnMut(&'static str, HookArg<'s>)) {
                match self {
                    $(Hook::$variant { $($arg),* } => {
                        $(f(stringify!($arg), HookArg::from(*$arg));)*
                    })*
                }
            }

            /// What a handler that does not implement this hook answers: the table's
            /// default (accept, refuse AUTH, throw content away, nothing to say).
            pub fn default_answer(&self) -> Answer {
                self.kind().default_answer()
            }
        }

        impl HookKind {
            /// [`Hook::default_answer`] for a hook of this kind (no default depends on
            /// the hook's arguments).
            pub(crate) fn default_answer(self) -> Answer {
                match self {
                    $(HookKind::$variant => {
                        let answer: $answer = $default;
                        answer.into_answer()
                    })*
                }
            }
        }
    };
}

/// Builds the [`Hook`] enum: a variant with fields for each hook with arguments, a unit
/// variant for each without.
macro_rules! hook_enum {
    (@acc [$($done:tt)*]) => {
        /// A hook with its arguments: what a driver is asked to call. The variants are the
        /// [`SessionHandler`] methods of the same names, with the same arguments. New hooks
        /// may come in any release: a binding's match ends with a translation by
        /// [`Hook::name`] and [`Hook::for_each_arg`], answered by [`Hook::default_answer`].
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum Hook<'a> { $($done)* }
    };
    (@acc [$($done:tt)*] $(#[$doc:meta])* $variant:ident (); $($rest:tt)*) => {
        hook_enum!(@acc [$($done)* $(#[$doc])* $variant,] $($rest)*);
    };
    (@acc [$($done:tt)*] $(#[$doc:meta])* $variant:ident ($($arg:ident: $ty:ty),+); $($rest:tt)*) => {
        hook_enum!(@acc [$($done)* $(#[$doc])* $variant {
            $(#[allow(missing_docs)] $arg: $ty),+
        },] $($rest)*);
    };
}

/// A wrapper's [`SessionHandler`] methods: each hook goes first to the wrapper's own
/// `fn intercept(&mut self, hook: &Hook<'_>) -> Option<Answer>`, and to `self.$inner` when
/// that says `None`. Use inside the wrapper's `impl SessionHandler` block, as
/// `with_hooks!(forward_hooks! inner);`.
macro_rules! forward_hooks {
    ([$inner:ident] $(
        $(#[$doc:meta])*
        $variant:ident => fn $name:ident $(<$lt:lifetime>)? ($($arg:ident: $ty:ty),*) -> $answer:ty $default:block
    )*) => {
        $(
            fn $name $(<$lt>)? (&mut self, $($arg: $ty),*) -> $answer {
                if let Some(answer) = self.intercept(&Hook::$variant { $($arg),* }) {
                    return <$answer as IntoAnswer>::from_answer(answer);
                }
                self.$inner.$name($($arg),*)
            }
        )*
    };
}
pub(crate) use forward_hooks;

/// Every hook of a [`SessionHandler`] as calls of one method: the methods of a wrapped
/// [`HookHandler`]'s session. Use inside an `impl SessionHandler` block, as
/// `with_hooks!(hooks_by_call! on_hook);`.
macro_rules! hooks_by_call {
    ([$method:ident] $(
        $(#[$doc:meta])*
        $variant:ident => fn $name:ident $(<$lt:lifetime>)? ($($arg:ident: $ty:ty),*) -> $answer:ty $default:block
    )*) => {
        $(
            fn $name $(<$lt>)? (&mut self, $($arg: $ty),*) -> $answer {
                <$answer as IntoAnswer>::from_answer(self.0.$method(Hook::$variant { $($arg),* }))
            }
        )*
    };
}

/// A session handler written as one function over [`Hook`]s instead of a method per hook:
/// what a binding to another language implements, so that it translates each hook in one
/// place for every server it runs under. [`ByHook`] makes it a [`SessionHandler`].
///
/// ```
/// use smtp_core::server::hooks::{Answer, ByHook, Hook, HookHandler, SessionHandler};
/// use smtp_core::server::Decision;
///
/// struct Names(Vec<&'static str>);
/// impl HookHandler for Names {
///     fn on_hook(&mut self, hook: Hook<'_>) -> Answer {
///         self.0.push(hook.name());
///         match hook {
///             Hook::Verify { .. } => Answer::Decision(Decision::Accept),
///             _ => Answer::Done,
///         }
///     }
/// }
/// let mut session = ByHook(Names(Vec::new()));
/// assert_eq!(session.verify("postmaster"), Decision::Accept);
/// session.reset();
/// assert_eq!(session.0 .0, ["verify", "reset"]);
/// ```
pub trait HookHandler: Send + 'static {
    /// Answers one hook: a [`Decision`] for the hooks that decide, the chunk's result for
    /// `data_chunk`, [`Answer::Done`] for the others. An answer of the wrong kind is a
    /// temporary failure (451), never an acceptance.
    fn on_hook(&mut self, hook: Hook<'_>) -> Answer;

    /// As [`SessionHandler::may_block`]. Default: every hook may block.
    fn may_block(&self, _hook: &Hook<'_>) -> bool {
        true
    }

    /// As [`SessionHandler::default_hooks`]: the hooks that would only be answered with
    /// [`Hook::default_answer`]. Default: none.
    fn default_hooks(&self) -> HookSet {
        HookSet::EMPTY
    }
}

/// A [`HookHandler`] as a [`SessionHandler`].
#[derive(Debug)]
pub struct ByHook<T>(pub T);

impl<T: HookHandler> SessionHandler for ByHook<T> {
    with_hooks!(hooks_by_call! on_hook);

    fn may_block(&self, hook: &Hook<'_>) -> bool {
        self.0.may_block(hook)
    }

    fn default_hooks(&self) -> HookSet {
        self.0.default_hooks()
    }
}

/// A set of [`HookKind`]s: the hooks a session leaves to their defaults
/// ([`SessionHandler::default_hooks`]).
///
/// ```
/// use smtp_core::server::hooks::{HookKind, HookSet};
///
/// let quiet = HookSet::EMPTY.with(HookKind::Mail).with(HookKind::Rcpt);
/// assert!(quiet.contains(HookKind::Rcpt));
/// assert!(!quiet.contains(HookKind::DataEnd));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookSet(u32);

impl HookSet {
    /// No hook.
    pub const EMPTY: HookSet = HookSet(0);

    /// This set and `kind`.
    #[must_use]
    pub const fn with(self, kind: HookKind) -> HookSet {
        HookSet(self.0 | 1 << kind as u32)
    }

    /// True when `kind` is in the set.
    pub const fn contains(self, kind: HookKind) -> bool {
        self.0 & 1 << kind as u32 != 0
    }
}

/// What a hook returned, for the dispatch to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The decision of `hello`, `auth`, `mail`, `rcpt`, `data_start`, `data_end`,
    /// `verify` or `expand`.
    Decision(Decision),
    /// The result of `data_chunk`.
    Chunk(Result<(), Reply>),
    /// A hook without a result returned.
    Done,
}

/// A hook's return value as an [`Answer`], and back.
pub trait IntoAnswer: Sized {
    /// True when the session waits for this kind of answer.
    const DECIDES: bool;
    /// The answer.
    fn into_answer(self) -> Answer;
    /// The return value an answer stands for; an answer of the wrong kind is a temporary
    /// failure where a decision or a chunk result is due (fail closed).
    fn from_answer(answer: Answer) -> Self;
}

impl IntoAnswer for Decision {
    const DECIDES: bool = true;
    fn into_answer(self) -> Answer {
        Answer::Decision(self)
    }
    #[inline]
    fn from_answer(answer: Answer) -> Decision {
        match answer {
            Answer::Decision(d) => d,
            Answer::Chunk(_) | Answer::Done => Decision::Reply(internal_error()),
        }
    }
}

impl IntoAnswer for Result<(), Reply> {
    const DECIDES: bool = false;
    fn into_answer(self) -> Answer {
        Answer::Chunk(self)
    }
    fn from_answer(answer: Answer) -> Result<(), Reply> {
        match answer {
            Answer::Chunk(result) => result,
            Answer::Decision(_) | Answer::Done => Err(internal_error()),
        }
    }
}

impl IntoAnswer for () {
    const DECIDES: bool = false;
    fn into_answer(self) -> Answer {
        Answer::Done
    }
    fn from_answer(_answer: Answer) {}
}

/// The reply to a hook answered with the wrong kind of answer: a bug, which the client
/// sees as a temporary failure rather than as an acceptance.
pub(crate) fn internal_error() -> Reply {
    Reply::new(
        ReplyCode::LOCAL_ERROR,
        Some(EnhancedCode::TEMP_LOCAL_ERROR),
        "Error: internal server error",
    )
}

pub(crate) use crate::server::event::with_hooks;

with_hooks!(define_hooks!);

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that implements no hook.
    struct Defaults;
    impl SessionHandler for Defaults {}

    /// The default answer a binding gives a hook it does not know is the trait's own
    /// default, hook by hook.
    #[test]
    fn default_answers_are_the_traits_defaults() {
        let transaction = Transaction::default();
        let attempt = AuthAttempt {
            mechanism: crate::auth::AuthMechanism::Plain,
            authorization_id: String::new(),
            username: "user".into(),
            password: crate::auth::Secret::new("pw"),
        };
        let from = ReversePath::Null;
        let to = ForwardPath::Mailbox(crate::address::Address::parse("a@example.com").unwrap());
        let (mail, rcpt) = (MailParameters::default(), RcptParameters::default());
        let hooks = [
            Hook::Hello {
                verb: HelloVerb::Ehlo,
                domain: "client.example",
            },
            Hook::TlsStarted,
            Hook::Auth { attempt: &attempt },
            Hook::Mail {
                from: &from,
                params: &mail,
            },
            Hook::Rcpt {
                to: &to,
                params: &rcpt,
            },
            Hook::DataStart {
                transaction: &transaction,
            },
            Hook::DataChunk { chunk: b"x" },
            Hook::DataEnd {
                transaction: &transaction,
            },
            Hook::DataAborted {
                reason: AbortReason::TooLarge,
            },
            Hook::Reset,
            Hook::Verify {
                argument: "postmaster",
            },
            Hook::Expand { argument: "list" },
            Hook::Close,
        ];
        for hook in hooks {
            let by_table = hook.default_answer();
            let by_trait = Hook::call(hook, &mut Defaults);
            assert_eq!(by_table, by_trait);
        }
        let refused = Hook::Auth { attempt: &attempt }.default_answer();
        assert_eq!(refused, Answer::Decision(auth_refused()));
    }

    /// Every argument of a hook comes out of `for_each_arg`, named as the trait names it.
    #[test]
    fn for_each_arg_names_every_argument() {
        let to = ForwardPath::Mailbox(crate::address::Address::parse("a@example.com").unwrap());
        let params = RcptParameters::default();
        let mut names = Vec::new();
        Hook::Rcpt {
            to: &to,
            params: &params,
        }
        .for_each_arg(|name, value| {
            names.push(name);
            match (name, value) {
                ("to", HookArg::Recipient(r)) => assert_eq!(r.as_str(), "a@example.com"),
                ("params", HookArg::RcptParams(_)) => {}
                other => panic!("unexpected argument {other:?}"),
            }
        });
        assert_eq!(names, ["to", "params"]);
        Hook::Close.for_each_arg(|name, _| panic!("close has no argument, got {name}"));
    }
}
