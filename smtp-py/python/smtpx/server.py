"""The server: :class:`Controller` runs the Rust server with an aiosmtpd-style handler.

A handler is any object with optional ``handle_<VERB>`` methods, called as aiosmtpd
calls them::

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            print(envelope.mail_from, envelope.rcpt_tos, len(envelope.content))
            return "250 OK"

    with Controller(Sink(), port=8025):
        ...

Hooks: ``handle_HELO(server, session, envelope, hostname)``, ``handle_EHLO(server,
session, envelope, hostname, responses)``, ``handle_MAIL(server, session, envelope,
address, mail_options)`` (must set ``envelope.mail_from``), ``handle_RCPT(server,
session, envelope, address, rcpt_options)`` (must append to ``envelope.rcpt_tos``),
``handle_DATA(server, session, envelope)`` (``envelope.content`` is the message bytes),
``handle_RSET``, ``handle_VRFY(server, session, envelope, address)``. Each returns a
status line (``"250 OK"``, ``"550 5.1.1 No such user"``); plain functions and
coroutines both work (a coroutine runs on a private event loop of its connection). A
missing hook does what aiosmtpd's default does. A hook that raises is logged on the
``smtpx.server`` logger and the client gets ``451 4.3.0 Error: handler failed``; the
server keeps running. The hooks are mapped by :mod:`smtpx.adapter`, as for
:class:`smtpx.aio.Server`, with the same options and defaults
(:class:`smtpx.adapter.ServerSettings`).

Wire trace: while the ``smtpx.wire`` logger is enabled for DEBUG when the server starts
(``logging.getLogger("smtpx.wire").setLevel(logging.DEBUG)`` with a handler, or a root
logger at DEBUG), every command and reply line of every connection is logged there, one
DEBUG record each, as ``conn=ID C: text`` or ``conn=ID S: text`` (aiosmtpd's equivalent is
its ``mail.log`` logger). Credentials and content are redacted by the engine: ``AUTH
PLAIN <redacted>``, ``<SASL response redacted>``, ``<message content, N octets>``. A
server started while that logger is not enabled installs no trace and pays nothing for
it (enable it, then restart the server).

Differences from aiosmtpd: the protocol (and EHLO's list of extensions, which a
``handle_EHLO`` cannot change, only refuse) is the Rust engine's; connections are served
by threads, not an asyncio loop; ``tls_context`` is a ``(certfile, keyfile)`` pair;
``envelope.content`` is always bytes (no ``decode_data``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from smtpx import _native
from smtpx._trace import log_line, wire_logging
from smtpx.adapter import (
    HOOKED,
    AuthResult,
    Envelope,
    HandlerConnection,
    LoginPassword,
    ServerSettings,
    Session,
    Step,
    TlsFiles,
    run_step,
)

__all__ = [
    "AuthResult",
    "Controller",
    "Envelope",
    "LoginPassword",
    "Maildir",
    "ServerInfo",
    "Session",
]

_DEFAULTS = ServerSettings


@dataclass(frozen=True)
class ServerInfo:
    """What hooks get as ``server`` (aiosmtpd passes its ``SMTP`` instance): the server's
    ``hostname`` (its FQDN, as in aiosmtpd), ``data_size_limit`` and the ``controller``."""

    hostname: str
    data_size_limit: int
    controller: Controller


class Maildir:
    """The built-in handler: delivers every message into the Maildir at ``path``
    (``tmp/``, ``new/``, ``cur/``, created when missing), in Rust, without Python."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)


class _ThreadConnection:
    """The Python object of one connection, called by the Rust server from the
    connection's thread: each call runs the adapter's step to its answer, a coroutine
    hook on a private event loop of the connection (made on first use)."""

    def __init__(
        self, controller: Controller, peer: tuple[str, int], tls: bool, proxy: dict[str, Any] | None = None
    ) -> None:
        server = ServerInfo(controller.server_hostname, controller.data_size_limit, controller)
        self.adapter = HandlerConnection(controller.handler, server, controller.settings, peer, tls)
        self.adapter.session.proxy = proxy

    def _resolve(self, awaitable: Awaitable[Any]) -> Any:
        session = self.adapter.session
        if session.loop is None:
            session.loop = asyncio.new_event_loop()
        return session.loop.run_until_complete(awaitable)

    def _finish(self, step: Step) -> Any:
        return run_step(step, self._resolve)

    def hello(self, verb: str, hostname: str) -> str | None:
        return self._finish(self.adapter.hello(verb, hostname))  # type: ignore[no-any-return]

    def tls_started(self) -> None:
        self.adapter.tls_started()

    def auth(self, mechanism: str, username: str, password: str) -> str | None:
        return self._finish(self.adapter.auth(mechanism, username, password))  # type: ignore[no-any-return]

    def mail(self, address: str, options: list[str]) -> str | None:
        status = self.adapter.mail_now(address, options)
        if status is HOOKED:
            status = self._finish(self.adapter.mail(address, options))
        return status  # type: ignore[no-any-return]

    def rcpt(self, address: str, options: list[str]) -> str | None:
        status = self.adapter.rcpt_now(address, options)
        if status is HOOKED:
            status = self._finish(self.adapter.rcpt(address, options))
        return status  # type: ignore[no-any-return]

    def data(self, content: bytes) -> str | list[str] | None:
        return self._finish(self.adapter.data(content))  # type: ignore[no-any-return]

    def reset(self) -> None:
        self._finish(self.adapter.reset())

    def vrfy(self, address: str) -> str | None:
        return self._finish(self.adapter.vrfy(address))  # type: ignore[no-any-return]

    def close(self) -> None:
        session = self.adapter.session
        loop, session.loop = session.loop, None
        if loop is not None:
            loop.close()


class Controller:
    """Runs an SMTP server for ``handler`` on ``hostname``:``port`` in background
    threads, as aiosmtpd's ``Controller`` does; ``start()``/``stop()`` or ``with``.

    ``port=0`` picks a free port (read ``controller.port`` after ``start()``).
    ``tls_context`` is ``(certfile, keyfile)`` (PEM) and enables STARTTLS.
    ``authenticator(server, session, envelope, mechanism, auth_data)`` enables AUTH
    PLAIN and LOGIN, offered only over TLS unless ``auth_require_tls=False``.
    ``timeout`` is the per-command deadline in seconds. ``lmtp`` speaks LMTP:
    ``handle_DATA`` may then answer per accepted recipient, in RCPT order, with one status
    line each joined by CRLF (as aiosmtpd's LMTP writes them) or as a list. Beyond
    ``max_connections`` a client gets ``421 4.7.0`` and is disconnected;
    ``listen_backlog`` (default 1,024) is the listener's accept queue.
    ``pipelining_sync`` (default True) answers a client that pipelines what RFC 2920
    does not allow (more input behind EHLO, DATA, NOOP, QUIT, ...) with ``554 5.5.0``
    and disconnects it. ``proxy_protocol_timeout`` (aiosmtpd's) makes every connection
    begin with a PROXY protocol header from a load balancer in ``proxy_trusted`` (CIDR
    strings, default loopback); see :class:`smtpx.adapter.ServerSettings`.

    The options and their defaults are :class:`smtpx.adapter.ServerSettings`' (those of
    :class:`smtpx.aio.Server` too, aiosmtpd's where it has the option): the greeting
    name ``server_hostname`` defaults to ``socket.getfqdn()``, ``data_size_limit`` to
    33,554,432 bytes (None, no limit, is refused: the engine always has one),
    ``auth_require_tls`` to True, ``timeout`` to 300 seconds, ``max_connections`` to
    10,000. The listening address ``hostname`` defaults to ``127.0.0.1``.
    """

    def __init__(
        self,
        handler: Any,
        hostname: str | None = None,
        port: int = 8025,
        *,
        server_hostname: str | None = _DEFAULTS.server_hostname,
        data_size_limit: int = _DEFAULTS.data_size_limit,
        tls_context: TlsFiles | None = _DEFAULTS.tls_context,
        require_starttls: bool = _DEFAULTS.require_starttls,
        auth_require_tls: bool = _DEFAULTS.auth_require_tls,
        auth_required: bool = _DEFAULTS.auth_required,
        authenticator: Callable[..., Any] | None = _DEFAULTS.authenticator,
        timeout: float = _DEFAULTS.timeout,
        lmtp: bool = _DEFAULTS.lmtp,
        max_connections: int = _DEFAULTS.max_connections,
        listen_backlog: int = _DEFAULTS.listen_backlog,
        pipelining_sync: bool = _DEFAULTS.pipelining_sync,
        proxy_protocol_timeout: float | None = _DEFAULTS.proxy_protocol_timeout,
        proxy_trusted: Sequence[str] = _DEFAULTS.proxy_trusted,
    ) -> None:
        settings = ServerSettings(
            server_hostname=server_hostname,
            data_size_limit=data_size_limit,
            timeout=timeout,
            tls_context=tls_context,
            require_starttls=require_starttls,
            auth_require_tls=auth_require_tls,
            auth_required=auth_required,
            authenticator=authenticator,
            lmtp=lmtp,
            max_connections=max_connections,
            listen_backlog=listen_backlog,
            pipelining_sync=pipelining_sync,
            proxy_protocol_timeout=proxy_protocol_timeout,
            proxy_trusted=proxy_trusted,
        )
        if authenticator is not None and isinstance(handler, Maildir):
            raise ValueError("the Maildir handler does not support an authenticator")
        self.settings = settings
        self.handler = handler
        self.hostname = hostname or "127.0.0.1"
        self.port = port
        self.server_hostname = settings.hostname
        self.data_size_limit = settings.data_size_limit
        self.tls_context = settings.tls_context
        self.require_starttls = settings.require_starttls
        self.auth_require_tls = settings.auth_require_tls
        self.auth_required = settings.auth_required
        self.authenticator = settings.authenticator
        self.timeout = settings.timeout
        self.lmtp = settings.lmtp
        self.max_connections = settings.max_connections
        self.listen_backlog = settings.listen_backlog
        self.pipelining_sync = settings.pipelining_sync
        self._server: _native.Server | None = None
        self._lock = threading.Lock()

    def _factory(self, host: str, port: int, tls: bool, proxy: dict[str, Any] | None = None) -> _ThreadConnection:
        return _ThreadConnection(self, (host, port), tls, proxy)

    def start(self) -> None:
        """Starts listening; returns once the server accepts connections."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the controller is already running")
            cert = key = None
            if self.tls_context is not None:
                cert, key = (os.fspath(p) for p in self.tls_context)
            common: dict[str, Any] = dict(
                hostname=self.server_hostname,
                data_size_limit=self.data_size_limit,
                tls_cert=cert,
                tls_key=key,
                require_starttls=self.require_starttls,
                auth=self.authenticator is not None,
                auth_require_tls=self.auth_require_tls,
                auth_required=self.auth_required,
                timeout=self.timeout,
                lmtp=self.lmtp,
                max_connections=self.max_connections,
                listen_backlog=self.listen_backlog,
                pipelining_sync=self.pipelining_sync,
                trace=log_line if wire_logging() else None,
                **self.settings.proxy_options(),
            )
            if isinstance(self.handler, Maildir):
                server = _native.Server.start(self.hostname, self.port, maildir=self.handler.path, **common)
            else:
                server = _native.Server.start(self.hostname, self.port, factory=self._factory, **common)
            self._server = server
            self.port = server.address[1]

    def stop(self, grace: float = 5.0) -> int:
        """Stops accepting, lets transactions in flight finish for up to ``grace``
        seconds, closes idle connections with 421 and cuts the rest (returned: how many
        were cut)."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return 0
        return server.stop(grace)

    @property
    def active_connections(self) -> int:
        server = self._server
        return server.active_connections() if server is not None else 0

    def __enter__(self) -> Controller:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
