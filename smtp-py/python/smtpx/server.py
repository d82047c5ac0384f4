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
``smtpx.server`` logger and the client gets ``451 4.3.0``; the server keeps running.

Differences from aiosmtpd: the protocol (and EHLO's list of extensions, which a
``handle_EHLO`` cannot change, only refuse) is the Rust engine's; connections are served
by threads, not an asyncio loop; ``tls_context`` is a ``(certfile, keyfile)`` pair;
``envelope.content`` is always bytes (no ``decode_data``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, TypeVar

from smtpx import _native

__all__ = [
    "AuthResult",
    "Controller",
    "Envelope",
    "LoginPassword",
    "Maildir",
    "ServerInfo",
    "Session",
]

log = logging.getLogger("smtpx.server")

LOCAL_ERROR = "451 4.3.0 Requested action aborted: error in processing"

_Answer = TypeVar("_Answer")


class LoginPassword(NamedTuple):
    """What ``authenticator`` gets as ``auth_data`` (as aiosmtpd's). Its ``str`` and
    ``repr`` hide the password, so that logging one leaks nothing."""

    login: bytes
    password: bytes

    def __str__(self) -> str:
        return f"LoginPassword(login={self.login.decode(errors='replace')!r}, password=...)"

    def __repr__(self) -> str:
        return str(self)


@dataclass
class AuthResult:
    """What an ``authenticator`` may return (a plain bool works too)."""

    success: bool
    handled: bool = True
    message: str | None = None
    auth_data: Any = None


def _auth_succeeded(result: Any) -> bool:
    """Whether an authenticator's result is clearly a success: ``True``, or an object whose
    ``success`` attribute is ``True`` (aiosmtpd's ``AuthResult``, ours). Anything else —
    ``False``, ``None``, a string, an ``AuthResult(success=False)`` of any library — is a
    failure: a compat face fails closed."""
    if result is True:
        return True
    return getattr(result, "success", None) is True


def _auth_failure_reply(result: Any) -> str:
    """The reply to a failed authentication: the result's own ``message`` when it carries
    a 4xx/5xx reply line (aiosmtpd's ``AuthResult(handled=False, message=...)``), else 535."""
    message = getattr(result, "message", None)
    if isinstance(message, str) and message[:1] in ("4", "5") and message[:3].isdigit():
        return message
    return "535 5.7.8 Authentication credentials invalid"


@dataclass
class Envelope:
    """The transaction being received, as aiosmtpd's ``Envelope``."""

    mail_from: str | None = None
    mail_options: list[str] = field(default_factory=list)
    smtp_utf8: bool = False
    content: bytes | None = None
    original_content: bytes | None = None
    rcpt_tos: list[str] = field(default_factory=list)
    rcpt_options: list[str] = field(default_factory=list)


@dataclass
class Session:
    """One connection, as aiosmtpd's ``Session``: ``peer`` is ``(host, port)``."""

    peer: tuple[str, int]
    host_name: str | None = None
    extended_smtp: bool = False
    ssl: dict[str, Any] | None = None
    authenticated: bool = False
    auth_data: Any = None
    loop: asyncio.AbstractEventLoop | None = None


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


class _Connection:
    """The Python side of one connection; the Rust handler calls its methods from the
    connection's thread. Every answer is None (accept) or a status line."""

    def __init__(self, controller: Controller, peer: tuple[str, int], tls: bool) -> None:
        self.controller = controller
        self.server = ServerInfo(controller.server_hostname, controller.data_size_limit, controller)
        self.handler = controller.handler
        self.session = Session(peer=peer, ssl={} if tls else None)
        self.envelope = Envelope()

    # Hook plumbing -----------------------------------------------------------------------

    def _run(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            if self.session.loop is None:
                self.session.loop = asyncio.new_event_loop()
            return self.session.loop.run_until_complete(value)
        return value

    def _hook(self, name: str, *args: Any) -> Any:
        method = getattr(self.handler, name, None)
        if method is None:
            return _MISSING
        return self._run(method(self.server, self.session, self.envelope, *args))

    def _guard(self, what: str, call: Callable[[], _Answer]) -> _Answer | str:
        try:
            status = call()
        except Exception:
            log.exception("smtpx server: the handler failed in %s (peer %s)", what, self.session.peer)
            return LOCAL_ERROR
        if status is not None and not isinstance(status, str):
            if not (isinstance(status, list) and what == "handle_DATA"):
                log.error("smtpx server: %s returned %r, not a status string", what, status)
                return LOCAL_ERROR
        return status

    # Called by the Rust handler -------------------------------------------------------------

    def hello(self, verb: str, hostname: str) -> str | None:
        def call() -> str | None:
            self.envelope = Envelope()
            self.session.host_name = hostname
            self.session.extended_smtp = verb != "HELO"
            if verb == "HELO":
                status = self._hook("handle_HELO", hostname)
            else:
                status = self._hook("handle_EHLO", hostname, [])
            if status is _MISSING:
                return None
            if isinstance(status, list):
                bad = [line for line in status if not str(line).startswith("250")]
                return str(bad[0]) if bad else None
            return status  # type: ignore[no-any-return]

        return self._guard("handle_" + ("HELO" if verb == "HELO" else "EHLO"), call)

    def tls_started(self) -> None:
        self.session.ssl = {}
        self.session.host_name = None
        self.envelope = Envelope()

    def auth(self, mechanism: str, username: str, password: str) -> str | None:
        def call() -> str | None:
            authenticator = self.controller.authenticator
            if authenticator is None:
                return "535 5.7.8 Authentication credentials invalid"
            data = LoginPassword(username.encode(), password.encode())
            result = self._run(authenticator(self.server, self.session, self.envelope, mechanism, data))
            if not _auth_succeeded(result):
                log.info("authentication refused for %r (authenticator returned %r)", data.login, result)
                return _auth_failure_reply(result)
            self.session.authenticated = True
            auth_data = getattr(result, "auth_data", None)
            self.session.auth_data = auth_data if auth_data is not None else data
            return None

        return self._guard("authenticator", call)

    def mail(self, address: str, options: list[str]) -> str | None:
        def call() -> str | None:
            self.envelope = Envelope()
            status = self._hook("handle_MAIL", address, options)
            if status is _MISSING:
                self.envelope.mail_from = address
                self.envelope.mail_options.extend(options)
                self.envelope.smtp_utf8 = "SMTPUTF8" in (o.upper() for o in options)
                return None
            return status  # type: ignore[no-any-return]

        return self._guard("handle_MAIL", call)

    def rcpt(self, address: str, options: list[str]) -> str | None:
        def call() -> str | None:
            status = self._hook("handle_RCPT", address, options)
            if status is _MISSING:
                self.envelope.rcpt_tos.append(address)
                self.envelope.rcpt_options.extend(options)
                return None
            return status  # type: ignore[no-any-return]

        return self._guard("handle_RCPT", call)

    def data(self, content: bytes) -> str | list[str] | None:
        def call() -> str | list[str] | None:
            self.envelope.content = content
            self.envelope.original_content = content
            try:
                status = self._hook("handle_DATA")
            finally:
                self.envelope = Envelope()
            return None if status is _MISSING else _data_answer(status, self.controller.lmtp)

        return self._guard("handle_DATA", call)

    def reset(self) -> None:
        def call() -> None:
            self.envelope = Envelope()
            self._hook("handle_RSET")

        self._guard("handle_RSET", call)

    def vrfy(self, address: str) -> str | None:
        def call() -> str | None:
            status = self._hook("handle_VRFY", address)
            return None if status is _MISSING else status

        return self._guard("handle_VRFY", call)

    def close(self) -> None:
        loop, self.session.loop = self.session.loop, None
        if loop is not None:
            loop.close()


_MISSING: Any = object()


def _data_answer(status: Any, lmtp: bool) -> Any:
    """``handle_DATA``'s answer. Under LMTP, aiosmtpd writes the returned string as is,
    so a handler answers per accepted recipient (in RCPT order) with one status line each
    joined by CRLF; a list of lines works too. Either becomes a list; a single line is
    the answer for every recipient. Anything else is returned as is, for the caller to
    check.
    """
    if not lmtp:
        return status
    if isinstance(status, str) and "\n" in status:
        return [line for line in status.replace("\r\n", "\n").split("\n") if line]
    if isinstance(status, tuple):
        status = list(status)
    if isinstance(status, list):
        if not all(isinstance(line, str) for line in status):
            raise TypeError(f"handle_DATA returned {status!r}, not a list of status lines")
        return status if status else None
    return status


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
    ``max_connections`` a client gets ``421 4.7.0`` and is disconnected.
    """

    def __init__(
        self,
        handler: Any,
        hostname: str | None = None,
        port: int = 8025,
        *,
        server_hostname: str | None = None,
        data_size_limit: int = 33554432,
        tls_context: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        require_starttls: bool = False,
        auth_require_tls: bool = True,
        auth_required: bool = False,
        authenticator: Callable[..., Any] | None = None,
        timeout: float = 300.0,
        lmtp: bool = False,
        max_connections: int = 10000,
    ) -> None:
        if isinstance(tls_context, ssl.SSLContext):
            raise TypeError(
                "tls_context must be a (certfile, keyfile) pair: smtpx's TLS is rustls, "
                "which cannot read an ssl.SSLContext"
            )
        if authenticator is not None and isinstance(handler, Maildir):
            raise ValueError("the Maildir handler does not support an authenticator")
        self.handler = handler
        self.hostname = hostname or "127.0.0.1"
        self.port = port
        self.server_hostname = server_hostname or socket.getfqdn()
        self.data_size_limit = data_size_limit
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.auth_require_tls = auth_require_tls
        self.auth_required = auth_required
        self.authenticator = authenticator
        self.timeout = timeout
        self.lmtp = lmtp
        self.max_connections = max_connections
        self._server: _native.Server | None = None
        self._lock = threading.Lock()

    def _factory(self, host: str, port: int, tls: bool) -> _Connection:
        return _Connection(self, (host, port), tls)

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
