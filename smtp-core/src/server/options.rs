//! How a server runs beyond the protocol: the options every server driver (blocking,
//! tokio, and through them the C and Python servers) takes.

use std::io;
use std::sync::Arc;

use crate::ehlo::AuthMechanism;
use crate::server::ServerConfig;
use crate::server::proxy::ProxyProtocol;
use crate::trace::TraceSink;

/// How the server runs, beyond the protocol settings of [`ServerConfig`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The protocol settings given to every session. `starttls` is turned on when
    /// [`ServerOptions::tls`] is set.
    pub session: ServerConfig,
    /// The certificate and key for STARTTLS and implicit-TLS listeners.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections served at once; beyond, a new client gets 421 and is closed.
    /// Default 10,000.
    pub max_connections: usize,
    /// Bytes read from a socket at a time. Default 16 KiB: enough for pipelined batches,
    /// small enough that thousands of idle connections stay cheap. (The async server
    /// reads into one such buffer per thread, so its idle connections hold none.)
    pub read_buffer: usize,
    /// The accept queue of each listener the server binds itself (`listen`,
    /// `listen_tls`): how many connections the kernel completes and holds while the
    /// server is busy accepting. Default 1,024. A burst larger than the queue has SYNs
    /// dropped (retried a second later) or, with SYN cookies, handshakes the kernel
    /// forgets, whose clients then wait for a greeting that never comes. The kernel
    /// caps it (`net.core.somaxconn` on Linux, 4,096 by default since 5.4). Listeners
    /// handed over already bound keep their own.
    pub listen_backlog: u32,
    /// Stack reserved for each connection thread. Default 256 KiB.
    pub thread_stack: usize,
    /// The wire trace of every connection (commands and replies, secrets redacted; see
    /// [`crate::trace`]). Default none.
    pub trace: Option<TraceSink>,
    /// Every connection to this server's listeners begins with a PROXY protocol header
    /// (v1 or v2) from a load balancer in one of the trusted networks; the client
    /// address it carries is the connection's peer everywhere. A connection from
    /// elsewhere, or without a valid header in time, is closed without a greeting. See
    /// [`crate::server::proxy`]. Default none (no header expected). This is what the
    /// builders' `listen`, `listen_tls` and `listener` give each listener; a listener
    /// added with `listen_with` or `listener_with` says for itself
    /// ([`ListenerOptions::proxy_protocol`]), so one server can take balanced clients on
    /// one port and direct clients on another.
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// How one listener's connections begin: encrypted from the first byte or not, and
/// whether a PROXY protocol header comes first. Given to the server builders'
/// `listen_with` and `listener_with`; `listen`, `listen_tls` and `listener` make it from
/// the [`ServerOptions`] ([`ServerOptions::listener_options`]).
///
/// ```
/// use smtp_core::server::ListenerOptions;
/// use smtp_core::server::proxy::{IpNetwork, ProxyProtocol};
///
/// let trusted: IpNetwork = "10.0.0.0/8".parse().unwrap();
/// // Port 2525 behind the load balancer, port 2526 for direct clients.
/// let balanced = ListenerOptions::plain().with_proxy_protocol(ProxyProtocol::new(vec![trusted]));
/// let direct = ListenerOptions::plain();
/// assert!(balanced.proxy_protocol.is_some() && direct.proxy_protocol.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerOptions {
    /// TLS from the first byte (port 465 style); needs [`ServerOptions::tls`]. Otherwise
    /// the connection starts in clear and STARTTLS is offered when TLS is configured.
    pub implicit_tls: bool,
    /// A PROXY protocol header (v1 or v2) from a trusted load balancer begins every
    /// connection to this listener (see [`ServerOptions::proxy_protocol`] for what that
    /// means). None: no header is expected, and one that comes is a bad command.
    pub proxy_protocol: Option<ProxyProtocol>,
}

impl ListenerOptions {
    /// A listener in clear (STARTTLS offered when TLS is configured), without PROXY.
    pub fn plain() -> ListenerOptions {
        ListenerOptions::default()
    }

    /// An implicit-TLS listener, without PROXY.
    pub fn implicit_tls() -> ListenerOptions {
        ListenerOptions {
            implicit_tls: true,
            proxy_protocol: None,
        }
    }

    /// The same listener, expecting a PROXY protocol header from `proxy`'s trusted
    /// networks on every connection.
    pub fn with_proxy_protocol(mut self, proxy: ProxyProtocol) -> ListenerOptions {
        self.proxy_protocol = Some(proxy);
        self
    }
}

impl ServerOptions {
    /// Options with the defaults documented on each field.
    pub fn new(session: ServerConfig) -> ServerOptions {
        ServerOptions {
            session,
            tls: None,
            max_connections: 10_000,
            read_buffer: 16 * 1024,
            listen_backlog: 1024,
            thread_stack: 256 * 1024,
            trace: None,
            proxy_protocol: None,
        }
    }

    /// Offers AUTH with the handler's mechanisms ([`Handler::auth_mechanisms`]) when the
    /// configuration names none: what every server driver does with its handler, so that
    /// implementing `auth` (or wrapping in [`PasswordAuth`]) is all it takes.
    ///
    /// [`Handler::auth_mechanisms`]: crate::handler::Handler::auth_mechanisms
    /// [`PasswordAuth`]: crate::handler::PasswordAuth
    pub fn offer_handler_auth(&mut self, mechanisms: Vec<AuthMechanism>) {
        if self.session.auth_mechanisms.is_empty() {
            self.session.auth_mechanisms = mechanisms;
        }
    }

    /// The [`ListenerOptions`] of a listener added without its own (`listen`,
    /// `listen_tls`, `listener`): the server-wide [`ServerOptions::proxy_protocol`].
    pub fn listener_options(&self, implicit_tls: bool) -> ListenerOptions {
        ListenerOptions {
            implicit_tls,
            proxy_protocol: self.proxy_protocol.clone(),
        }
    }

    /// An implicit-TLS listener needs a TLS configuration: the error every server's
    /// `listen_tls` (and `listen_with` for an implicit-TLS listener) gives without one.
    pub fn check_listener(&self, listener: &ListenerOptions) -> io::Result<()> {
        if listener.implicit_tls {
            self.check_implicit_tls()?;
        }
        Ok(())
    }

    /// An implicit-TLS listener needs a TLS configuration: the error every server's
    /// `listen_tls` gives without one.
    pub fn check_implicit_tls(&self) -> io::Result<()> {
        if self.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an implicit-TLS listener needs a TLS configuration",
            ));
        }
        Ok(())
    }
}
