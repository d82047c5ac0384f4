"""The aiosmtpd face shared by both servers: :class:`ServerSettings` (the one set of
options and defaults of :class:`smtpx.Controller` and :class:`smtpx.aio.Server`) and
:class:`HandlerConnection` (the one mapping of a connection's events onto an
aiosmtpd-style handler's hooks and ``authenticator``).

A server drives a :class:`HandlerConnection` through *steps*: each of its event methods
returns a generator that calls the handler's hook and, when the hook gave an awaitable
(a coroutine hook), yields that awaitable and is sent its result (or thrown its
exception); the generator's return value is the answer: None (accept, the engine's own
reply), a status line, or (LMTP, after the message) a list of them. The thread server
resolves a yielded awaitable on a private event loop of the connection
(:func:`run_step`), the asyncio server in the connection's task. Hooks that are plain
functions, and events without a hook, never yield.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generator, NamedTuple, Sequence, Union

__all__ = [
    "AUTH_FAILED",
    "DATA_SIZE_DEFAULT",
    "HANDLER_FAILED",
    "HOOKED",
    "INVALID_STATUS",
    "AuthResult",
    "Envelope",
    "HandlerConnection",
    "LoginPassword",
    "ServerSettings",
    "Session",
    "Step",
    "auth_failure_reply",
    "auth_succeeded",
    "data_answer",
    "run_step",
]

# Handler failures are logged here by both servers.
log = logging.getLogger("smtpx.server")

#: The reply when a hook or the authenticator raises (the error is logged, not sent).
HANDLER_FAILED = "451 4.3.0 Error: handler failed"
#: The reply when a hook answers something that is not a status line.
INVALID_STATUS = "451 4.3.0 Error: handler returned an invalid status"
#: The reply to a refused authentication (no authenticator, or it did not say yes).
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
#: aiosmtpd's default message size limit (32 MiB).
DATA_SIZE_DEFAULT = 33554432

#: What a step returns: None (accept), a status line, or per-recipient status lines.
Answer = Union[str, list[str], None]
#: A generator that yields the awaitables of coroutine hooks and returns the answer.
Step = Generator[Awaitable[Any], Any, Any]
#: The fast paths' "no answer yet: run the step" (see :meth:`HandlerConnection.mail_now`).
HOOKED: Any = object()
_MISSING: Any = object()

TlsFiles = tuple[Union[str, "os.PathLike[str]"], Union[str, "os.PathLike[str]"]]


@dataclass
class ServerSettings:
    """The options of both servers, with one set of defaults (aiosmtpd's, where it has
    the option):

    - ``server_hostname``: the name the server greets with; None (the default) is this
      host's FQDN, ``socket.getfqdn()``, as aiosmtpd computes it.
    - ``data_size_limit``: the largest message in bytes, announced with SIZE; 33,554,432
      (32 MiB) as aiosmtpd. The engine always enforces a limit, so aiosmtpd's None (or 0)
      for "no limit" is refused with ValueError rather than silently meaning something else.
    - ``timeout``: seconds allowed per command (and for a TLS handshake); 300 as aiosmtpd.
    - ``tls_context``: a ``(certfile, keyfile)`` pair of PEM files enabling STARTTLS (an
      :class:`ssl.SSLContext` is refused: the TLS is rustls). None by default.
    - ``require_starttls``: refuse MAIL and AUTH until STARTTLS; False as aiosmtpd.
    - ``auth_require_tls``: offer AUTH only over TLS; True as aiosmtpd, with or without a
      ``tls_context`` (so a server without TLS offers no AUTH unless this is False).
    - ``auth_required``: refuse MAIL until the client logged in; False as aiosmtpd.
    - ``authenticator(server, session, envelope, mechanism, auth_data)``: enables AUTH
      PLAIN and LOGIN; None by default.
    - ``lmtp``: speak LMTP instead of SMTP; False.
    - ``implicit_tls``: TLS from the first byte (port 465 style; the asyncio server
      only); False.
    - ``max_connections``: beyond it a client gets ``421 4.7.0``; 10,000.
    - ``listen_backlog``: the listener's accept queue, where a burst of connections
      waits to be accepted (the kernel caps it: ``net.core.somaxconn``); 1,024.
    - ``pipelining_sync``: enforce pipelining synchronisation (RFC 2920): a client that
      sends more behind a command that must end a group (EHLO, DATA, NOOP, QUIT, ...),
      or pipelines without being offered PIPELINING, gets ``554 5.5.0`` and is
      disconnected, as Postfix and Exim do; True (aiosmtpd does not check).
    - ``proxy_protocol_timeout``: seconds; when set, every connection must begin with a
      PROXY protocol header (HAProxy's v1 or v2) within that time, or is closed without
      a greeting, as aiosmtpd's option (None, the default, expects none). The client
      address in the header becomes ``session.peer``; the header itself is
      ``session.proxy`` (see :class:`Session`).
    - ``proxy_trusted``: the networks (CIDR strings) a header is accepted from; a
      connection from anywhere else is closed without a greeting (aiosmtpd accepts a
      header from anyone; this fails closed). Default loopback only.
    """

    server_hostname: str | None = None
    data_size_limit: int = DATA_SIZE_DEFAULT
    timeout: float = 300.0
    tls_context: TlsFiles | None = None
    require_starttls: bool = False
    auth_require_tls: bool = True
    auth_required: bool = False
    authenticator: Callable[..., Any] | None = None
    lmtp: bool = False
    implicit_tls: bool = False
    max_connections: int = 10000
    listen_backlog: int = 1024
    pipelining_sync: bool = True
    proxy_protocol_timeout: float | None = None
    proxy_trusted: Sequence[str] = ("127.0.0.0/8", "::1")
    #: ``server_hostname``, or the FQDN when it is None.
    hostname: str = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.tls_context, ssl.SSLContext):
            raise TypeError(
                "tls_context must be a (certfile, keyfile) pair: smtpx's TLS is rustls, "
                "which cannot read an ssl.SSLContext"
            )
        if self.tls_context is None and (self.require_starttls or self.implicit_tls):
            raise ValueError("require_starttls and implicit_tls need a tls_context")
        limit = self.data_size_limit
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(
                f"data_size_limit must be a positive number of bytes, not {limit!r}: "
                "smtpx always enforces a limit (aiosmtpd's None for none is not supported)"
            )
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError("timeout must be a positive number of seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        backlog = self.listen_backlog
        if not isinstance(backlog, int) or isinstance(backlog, bool) or not 1 <= backlog < 2**31:
            raise ValueError("listen_backlog must be at least 1 (and below 2**31)")
        proxy_timeout = self.proxy_protocol_timeout
        if proxy_timeout is not None and not (
            isinstance(proxy_timeout, (int, float)) and not isinstance(proxy_timeout, bool) and proxy_timeout > 0
        ):
            raise ValueError("proxy_protocol_timeout must be None or a positive number of seconds")
        if isinstance(self.proxy_trusted, str):
            raise TypeError("proxy_trusted is a sequence of networks, not one string")
        self.proxy_trusted = tuple(self.proxy_trusted)
        self.hostname = self.server_hostname or socket.getfqdn()

    def proxy_options(self) -> dict[str, Any]:
        """The PROXY protocol keywords of the native servers."""
        return dict(proxy_protocol_timeout=self.proxy_protocol_timeout, proxy_trusted=list(self.proxy_trusted))

    def tls_files(self) -> tuple[str, str] | None:
        """The certificate and key file names, when TLS is configured."""
        if self.tls_context is None:
            return None
        cert, key = self.tls_context
        return (os.fspath(cert), os.fspath(key))


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
    """One connection, as aiosmtpd's ``Session``: ``peer`` is ``(host, port)`` (the
    client's as a PROXY protocol header gave it, on a server with
    ``proxy_protocol_timeout``).

    ``proxy`` is that header, else None: a dict with ``version`` (1 or 2), ``command``
    (``"PROXY"``, or ``"LOCAL"`` for a balancer's own health check, served with the real
    addresses), ``source`` and ``destination`` (``(host, port)`` or None) and ``tlvs``
    (v2: a list of ``(type, value bytes)``, e.g. type 2 the authority, 5 the unique id)."""

    peer: tuple[str, int]
    host_name: str | None = None
    extended_smtp: bool = False
    ssl: dict[str, Any] | None = None
    authenticated: bool = False
    auth_data: Any = None
    loop: asyncio.AbstractEventLoop | None = None
    proxy: dict[str, Any] | None = None


def auth_succeeded(result: Any) -> bool:
    """Whether an authenticator's result is clearly a success: ``True``, or an object whose
    ``success`` attribute is ``True`` (aiosmtpd's ``AuthResult``, ours). Anything else —
    ``False``, ``None``, a string, an ``AuthResult(success=False)`` of any library — is a
    failure: a compat face fails closed."""
    if result is True:
        return True
    return getattr(result, "success", None) is True


def auth_failure_reply(result: Any) -> str:
    """The reply to a failed authentication: the result's own ``message`` when it carries
    a 4xx/5xx reply line (aiosmtpd's ``AuthResult(handled=False, message=...)``), else 535."""
    message = getattr(result, "message", None)
    if isinstance(message, str) and message[:1] in ("4", "5") and message[:3].isdigit():
        return message
    return AUTH_FAILED


def data_answer(status: Any, lmtp: bool) -> Any:
    """``handle_DATA``'s answer. Under LMTP, aiosmtpd writes the returned string as is,
    so a handler answers per accepted recipient (in RCPT order) with one status line each
    joined by CRLF; a list of lines works too. Either becomes a list; a single line is
    the answer for every recipient. No line at all (an empty list, a string of line
    breaks) says nothing, so it is no acceptance: :data:`INVALID_STATUS`. Anything else
    is returned as is, for the caller to check.
    """
    if not lmtp:
        if isinstance(status, list) and not status:
            log.error("smtpx server: handle_DATA returned an empty list, not a status")
            return INVALID_STATUS
        return status
    if isinstance(status, str) and "\n" in status:
        status = [line for line in status.replace("\r\n", "\n").split("\n") if line]
    if isinstance(status, tuple):
        status = list(status)
    if isinstance(status, list):
        if not all(isinstance(line, str) for line in status):
            raise TypeError(f"handle_DATA returned {status!r}, not a list of status lines")
        if not status:
            log.error("smtpx server: handle_DATA returned no status line")
            return INVALID_STATUS
        return status
    return status


def run_step(step: Step, resolve: Callable[[Awaitable[Any]], Any]) -> Any:
    """Runs ``step`` to its answer, ``resolve`` giving the result of each awaitable it
    yields (an exception ``resolve`` raises is thrown into the step)."""
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            awaitable = step.send(value) if error is None else step.throw(error)
        except StopIteration as done:
            return done.value
        try:
            value, error = resolve(awaitable), None
        except Exception as failure:
            value, error = None, failure


class HandlerConnection:
    """One connection's side of an aiosmtpd-style ``handler``: the ``session`` and
    ``envelope`` its hooks get, and a method per engine event. ``server`` is what hooks
    get as their first argument.

    A missing hook does what aiosmtpd's default does. A hook (or the authenticator) that
    raises is logged on the ``smtpx.server`` logger and answered with
    :data:`HANDLER_FAILED`; an answer that is not a status line with
    :data:`INVALID_STATUS`. A positive answer to HELO/EHLO keeps the engine's own reply
    (it lists the extensions, which a hook cannot change, only refuse).
    """

    def __init__(
        self,
        handler: Any,
        server: Any,
        settings: ServerSettings,
        peer: tuple[str, int],
        tls: bool,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.handler = handler
        self.server = server
        self.authenticator = settings.authenticator
        self.lmtp = settings.lmtp
        self.session = Session(peer=peer, ssl={} if tls else None, loop=loop)
        self.envelope = Envelope()

    # Plumbing ------------------------------------------------------------------------------

    def _hook(self, name: str, *args: Any) -> Step:
        method = getattr(self.handler, name, None)
        if method is None:
            return _MISSING
        value = method(self.server, self.session, self.envelope, *args)
        if inspect.isawaitable(value):
            value = yield value
        return value

    def _guarded(self, what: str, step: Step) -> Step:
        try:
            status = yield from step
        except Exception:
            log.exception("smtpx server: the handler failed in %s (peer %s)", what, self.session.peer)
            return HANDLER_FAILED
        if status is not None and not isinstance(status, str):
            if not (isinstance(status, list) and what == "handle_DATA"):
                log.error("smtpx server: %s returned %r, not a status string", what, status)
                return INVALID_STATUS
        return status

    # Fast paths: no step when none of the handler's code runs -----------------------------

    def mail_now(self, address: str, options: list[str]) -> Any:
        """perf: the answer to MAIL when there is no ``handle_MAIL`` (the envelope takes
        the sender, as aiosmtpd's does), else :data:`HOOKED`: run :meth:`mail`."""
        if getattr(self.handler, "handle_MAIL", None) is not None:
            return HOOKED
        self.envelope = Envelope()
        self._take_sender(address, options)
        return None

    def rcpt_now(self, address: str, options: list[str]) -> Any:
        """perf: the answer to RCPT when there is no ``handle_RCPT`` (the envelope takes
        the recipient), else :data:`HOOKED`: run :meth:`rcpt`."""
        if getattr(self.handler, "handle_RCPT", None) is not None:
            return HOOKED
        self._take_recipient(address, options)
        return None

    def _take_sender(self, address: str, options: list[str]) -> None:
        self.envelope.mail_from = address
        self.envelope.mail_options.extend(options)
        self.envelope.smtp_utf8 = "SMTPUTF8" in (o.upper() for o in options)

    def _take_recipient(self, address: str, options: list[str]) -> None:
        self.envelope.rcpt_tos.append(address)
        self.envelope.rcpt_options.extend(options)

    # The events ----------------------------------------------------------------------------

    def hello(self, verb: str, domain: str) -> Step:
        """HELO, EHLO or LHLO: ``handle_HELO(hostname)`` or ``handle_EHLO(hostname,
        responses)``."""
        name = "handle_HELO" if verb == "HELO" else "handle_EHLO"
        return self._guarded(name, self._hello(verb, name, domain))

    def _hello(self, verb: str, name: str, domain: str) -> Step:
        self.envelope = Envelope()
        self.session.host_name = domain
        self.session.extended_smtp = verb != "HELO"
        if verb == "HELO":
            status = yield from self._hook(name, domain)
        else:
            status = yield from self._hook(name, domain, [])
        if isinstance(status, list):
            # aiosmtpd's responses: accepted when every one is a 250 line (an empty list is
            # the `responses` the hook was given, returned as they were). Otherwise the
            # first other line is the answer if it refuses; anything else (a line that is
            # no string, a 2xx or 3xx line that is not 250) is no clear answer, and fails
            # closed.
            bad = [line for line in status if not (isinstance(line, str) and line.startswith("250"))]
            if not bad:
                return None
            if bad and isinstance(bad[0], str) and bad[0][:1] in ("4", "5"):
                return bad[0]
            log.error("smtpx server: %s returned %r, not a list of 250 lines", name, status)
            return INVALID_STATUS
        if status is _MISSING or (isinstance(status, str) and status.startswith("2")):
            return None
        return status

    def tls_started(self) -> None:
        """STARTTLS succeeded: the session starts over, encrypted."""
        self.session.ssl = {}
        self.session.host_name = None
        self.envelope = Envelope()

    def auth(self, mechanism: str, username: str, password: str) -> Step:
        """AUTH PLAIN or LOGIN: the ``authenticator`` decides, failing closed (see
        :func:`auth_succeeded`); a refusal is logged without the password."""
        return self._guarded("authenticator", self._auth(mechanism, username, password))

    def _auth(self, mechanism: str, username: str, password: str) -> Step:
        authenticator = self.authenticator
        if authenticator is None:
            return AUTH_FAILED
        data = LoginPassword(username.encode(), password.encode())
        result = authenticator(self.server, self.session, self.envelope, mechanism, data)
        if inspect.isawaitable(result):
            result = yield result
        if not auth_succeeded(result):
            log.info("authentication refused for %r (authenticator returned %r)", data.login, result)
            return auth_failure_reply(result)
        self.session.authenticated = True
        auth_data = getattr(result, "auth_data", None)
        self.session.auth_data = auth_data if auth_data is not None else data
        return None

    def mail(self, address: str, options: list[str]) -> Step:
        """MAIL FROM: ``handle_MAIL(address, mail_options)``."""
        return self._guarded("handle_MAIL", self._mail(address, options))

    def _mail(self, address: str, options: list[str]) -> Step:
        self.envelope = Envelope()
        status = yield from self._hook("handle_MAIL", address, options)
        if status is _MISSING:
            self._take_sender(address, options)
            return None
        return status

    def rcpt(self, address: str, options: list[str]) -> Step:
        """RCPT TO: ``handle_RCPT(address, rcpt_options)``."""
        return self._guarded("handle_RCPT", self._rcpt(address, options))

    def _rcpt(self, address: str, options: list[str]) -> Step:
        status = yield from self._hook("handle_RCPT", address, options)
        if status is _MISSING:
            self._take_recipient(address, options)
            return None
        return status

    def data(self, content: bytes) -> Step:
        """The end of a message: ``handle_DATA`` with ``envelope.content``; under LMTP its
        answer may be per recipient (:func:`data_answer`)."""
        return self._guarded("handle_DATA", self._data(content))

    def _data(self, content: bytes) -> Step:
        self.envelope.content = content
        self.envelope.original_content = content
        try:
            status = yield from self._hook("handle_DATA")
        finally:
            self.envelope = Envelope()
        return None if status is _MISSING else data_answer(status, self.lmtp)

    def reset(self) -> Step:
        """RSET (or a transaction's end): a new envelope, then ``handle_RSET``."""
        return self._guarded("handle_RSET", self._reset())

    def _reset(self) -> Step:
        self.envelope = Envelope()
        yield from self._hook("handle_RSET")
        return None

    def vrfy(self, argument: str) -> Step:
        """VRFY: ``handle_VRFY(address)``; without it, the engine's standard answer."""
        return self._guarded("handle_VRFY", self._vrfy(argument))

    def _vrfy(self, argument: str) -> Step:
        status = yield from self._hook("handle_VRFY", argument)
        return None if status is _MISSING else status

    def by_name(self, kind: str, argument: str | None) -> Step:
        """Any other hook of the engine's, by its name: ``handle_<KIND>(server, session,
        envelope[, argument])``, as aiosmtpd names its hooks (``handle_NOOP``,
        ``handle_QUIT``); without that method, the engine's standard answer."""
        name = "handle_" + kind.upper()
        return self._guarded(name, self._by_name(name, argument))

    def _by_name(self, name: str, argument: str | None) -> Step:
        args = () if argument is None else (argument,)
        status = yield from self._hook(name, *args)
        return None if status is _MISSING else status
