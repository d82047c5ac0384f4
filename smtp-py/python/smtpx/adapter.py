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
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generator, Iterable, NamedTuple, Sequence, Union

__all__ = [
    "AUTH_FAILED",
    "AUTH_MECHANISMS",
    "CALL_LIMIT_DEFAULT",
    "CONTROLLER_HOOK_THREADS",
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
#: The replies to NOOP, RSET and QUIT without their hook: aiosmtpd's texts, with the
#: enhanced codes RFC 3463 asks for once ENHANCEDSTATUSCODES is offered.
NOOP_OK = "250 2.0.0 OK"
RSET_OK = "250 2.0.0 OK"
QUIT_BYE = "221 2.0.0 Bye"
#: The reply to a refused authentication (no authenticator, or it did not say yes).
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
#: aiosmtpd's default message size limit (32 MiB).
DATA_SIZE_DEFAULT = 33554432
#: aiosmtpd's ``CALL_LIMIT_DEFAULT``: the limit of the commands a ``command_call_limit``
#: dictionary does not name (when it has no ``"*"``).
CALL_LIMIT_DEFAULT = 20
#: The SASL mechanisms the servers offer with an ``authenticator``.
AUTH_MECHANISMS = ["LOGIN", "PLAIN"]
#: How many threads run :class:`smtpx.Controller`'s plain-function hooks by default.
CONTROLLER_HOOK_THREADS = 16

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
    the option). :class:`smtpx.aio.Server` and :class:`smtpx.Controller` take these as
    keywords and build one of these; an unknown keyword is a ``TypeError``.

    - ``server_hostname``: the name the server greets with; None (the default) is this
      host's FQDN, ``socket.getfqdn()``, as aiosmtpd computes it.
    - ``ident``: the greeting's text after the name (aiosmtpd's ``ident``); None gives
      the engine's ``ESMTP smtpx``.
    - ``data_size_limit``: the largest message in bytes, announced with SIZE; 33,554,432
      (32 MiB) as aiosmtpd. None (or 0), as in aiosmtpd: no limit, and no SIZE.
    - ``enable_SMTPUTF8``: offer and accept SMTPUTF8; True (aiosmtpd's default is False:
      see the README's differences table).
    - ``decode_data``: ``envelope.content`` is a ``str`` (UTF-8 with surrogateescape when
      SMTPUTF8 is enabled, else strict ASCII: other bytes get ``500 Error: strict ASCII
      mode``), and 8BITMIME is not offered, as aiosmtpd; False (bytes).
    - ``timeout``: seconds allowed per command (and for a TLS handshake); 300 as aiosmtpd.
    - ``tls_context``: enables STARTTLS. A ``(certfile, keyfile)`` pair of PEM files runs
      TLS in rustls; an :class:`ssl.SSLContext` (server side, certificate loaded) runs it
      in Python's :mod:`ssl` (OpenSSL) through asyncio. None by default.
    - ``require_starttls``: refuse MAIL and AUTH until STARTTLS; False as aiosmtpd.
    - ``auth_require_tls``: offer AUTH only over TLS; True as aiosmtpd, with or without a
      ``tls_context`` (so a server without TLS offers no AUTH unless this is False).
    - ``auth_required``: refuse MAIL until the client logged in; False as aiosmtpd.
    - ``auth_exclude_mechanism``: mechanism names not to offer (``["LOGIN"]``), as
      aiosmtpd's; an unknown name is a ValueError.
    - ``authenticator(server, session, envelope, mechanism, auth_data)``: enables AUTH
      PLAIN and LOGIN; None by default.
    - ``auth_callback(mechanism, login, password)``: aiosmtpd's older (deprecated, still
      accepted) way to check a login: ``login`` and ``password`` are bytes, a true result
      accepts. Used only when there is no ``authenticator``, as in aiosmtpd; it enables
      AUTH too. None by default.
    - ``command_call_limit``: how many times each command may be given in one session,
      as aiosmtpd's: an int for every command, or a dict of verb to limit whose ``"*"``
      is the default (else :data:`CALL_LIMIT_DEFAULT`). The command over its limit gets
      ``421 4.7.0 <VERB> sent too many times`` and the connection closes. None (the
      default): no limit. Counted by the engine, for commands it recognises.
    - ``lmtp``: speak LMTP instead of SMTP; False.
    - ``implicit_tls``: TLS from the first byte (port 465 style; aiosmtpd's Controller
      ``ssl_context``); False.
    - ``max_connections``: beyond it a client gets ``421 4.7.0``; 10,000.
    - ``listen_backlog``: the listener's accept queue, where a burst of connections
      waits to be accepted (the kernel caps it: ``net.core.somaxconn``); 1,024.
    - ``pipelining_sync``: enforce pipelining synchronisation (RFC 2920): a client that
      sends more behind a command that must end a group (EHLO, DATA, NOOP, QUIT, ...),
      or pipelines without being offered PIPELINING, gets ``554 5.5.0`` and is
      disconnected, as Postfix and Exim do; True (aiosmtpd does not check).
    - ``hook_threads``: how many threads run hooks that are plain functions (not
      coroutine functions), so that a hook that blocks stalls only its own connection.
      0 runs them on the event loop, as aiosmtpd does; :class:`smtpx.aio.Server`'s
      default. :class:`smtpx.Controller` defaults to :data:`CONTROLLER_HOOK_THREADS`.
    - ``server_kwargs``: more keywords for ``loop.create_server`` (aiosmtpd's
      Controller's ``server_kwargs``), such as ``reuse_port``.
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
    ident: str | None = None
    data_size_limit: int | None = DATA_SIZE_DEFAULT
    enable_SMTPUTF8: bool = True
    decode_data: bool = False
    timeout: float = 300.0
    tls_context: TlsFiles | ssl.SSLContext | None = None
    require_starttls: bool = False
    auth_require_tls: bool = True
    auth_required: bool = False
    auth_exclude_mechanism: Iterable[str] | None = None
    authenticator: Callable[..., Any] | None = None
    auth_callback: Callable[[str, bytes, bytes], Any] | None = None
    command_call_limit: int | dict[str, int] | None = None
    lmtp: bool = False
    implicit_tls: bool = False
    max_connections: int = 10000
    listen_backlog: int = 1024
    pipelining_sync: bool = True
    hook_threads: int = 0
    server_kwargs: dict[str, Any] | None = None
    proxy_protocol_timeout: float | None = None
    proxy_trusted: Sequence[str] = ("127.0.0.0/8", "::1")
    #: ``server_hostname``, or the FQDN when it is None.
    hostname: str = field(init=False)
    #: The SASL mechanisms offered when there is an ``authenticator``.
    auth_mechanisms: list[str] = field(init=False)

    def __post_init__(self) -> None:
        context = self.tls_context
        if context is not None and not isinstance(context, ssl.SSLContext):
            if not (isinstance(context, (tuple, list)) and len(context) == 2):
                raise TypeError(
                    f"tls_context must be a (certfile, keyfile) pair or an ssl.SSLContext, not {context!r}"
                )
        if context is None and (self.require_starttls or self.implicit_tls):
            raise ValueError("require_starttls and implicit_tls need a tls_context")
        limit = self.data_size_limit
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValueError(f"data_size_limit must be a number of bytes, or None for no limit, not {limit!r}")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError("timeout must be a positive number of seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        backlog = self.listen_backlog
        if not isinstance(backlog, int) or isinstance(backlog, bool) or not 1 <= backlog < 2**31:
            raise ValueError("listen_backlog must be at least 1 (and below 2**31)")
        if not isinstance(self.hook_threads, int) or not 0 <= self.hook_threads <= 1024:
            raise ValueError("hook_threads must be a number of threads from 0 to 1024")
        excluded = {name.upper() for name in (self.auth_exclude_mechanism or ())}
        unknown = excluded - set(AUTH_MECHANISMS)
        if unknown:
            raise ValueError(f"auth_exclude_mechanism: unknown mechanisms {sorted(unknown)} (smtpx has {AUTH_MECHANISMS})")
        self.auth_mechanisms = [name for name in AUTH_MECHANISMS if name not in excluded]
        if self.auth_callback is not None and not callable(self.auth_callback):
            raise TypeError("auth_callback must be a function (mechanism, login, password) -> bool")
        self.command_limits()  # checked now: aiosmtpd's TypeError for a bad one
        proxy_timeout = self.proxy_protocol_timeout
        if proxy_timeout is not None and not (
            isinstance(proxy_timeout, (int, float)) and not isinstance(proxy_timeout, bool) and proxy_timeout > 0
        ):
            raise ValueError("proxy_protocol_timeout must be None or a positive number of seconds")
        if isinstance(self.proxy_trusted, str):
            raise TypeError("proxy_trusted is a sequence of networks, not one string")
        self.proxy_trusted = tuple(self.proxy_trusted)
        self.hostname = self.server_hostname or socket.getfqdn()

    def command_limits(self) -> tuple[int, list[tuple[str, int]]] | None:
        """``command_call_limit`` as the engine takes it: ``(default, [(verb, limit),
        ...])``, or None. A value of the wrong type is a ``TypeError``, as in aiosmtpd."""
        limit = self.command_call_limit
        if limit is None:
            return None
        if isinstance(limit, bool) or not isinstance(limit, (int, dict)):
            raise TypeError("command_call_limit must be int or Dict[str, int]")
        if isinstance(limit, int):
            if limit < 0:
                raise ValueError("command_call_limit must not be negative")
            return (limit, [])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in limit.values()):
            raise TypeError("All command_call_limit values must be int")
        if any(v < 0 for v in limit.values()):
            raise ValueError("command_call_limit values must not be negative")
        default = limit.get("*", CALL_LIMIT_DEFAULT)
        return (default, [(str(verb), n) for verb, n in limit.items() if verb != "*"])

    def checks_logins(self) -> bool:
        """True when AUTH is offered: an ``authenticator``, or aiosmtpd's older
        ``auth_callback``, and a mechanism left to offer."""
        return (self.authenticator is not None or self.auth_callback is not None) and bool(self.auth_mechanisms)

    def proxy_options(self) -> dict[str, Any]:
        """The PROXY protocol keywords of the native servers."""
        return dict(proxy_protocol_timeout=self.proxy_protocol_timeout, proxy_trusted=list(self.proxy_trusted))

    def tls_files(self) -> tuple[str, str] | None:
        """The certificate and key file names, when TLS is rustls'."""
        if self.tls_context is None or isinstance(self.tls_context, ssl.SSLContext):
            return None
        cert, key = self.tls_context
        return (os.fspath(cert), os.fspath(key))

    def engine_options(self) -> dict[str, Any]:
        """The keywords of :class:`smtpx._native.ServerConnection` these settings give."""
        limit = self.data_size_limit
        return dict(
            banner=self.ident,
            max_message_size=limit if limit else None,
            smtputf8=self.enable_SMTPUTF8,
            eight_bit_mime=not self.decode_data,
            lmtp=self.lmtp,
            auth=self.checks_logins(),
            auth_mechanisms=self.auth_mechanisms,
            allow_insecure_auth=not self.auth_require_tls,
            require_auth=self.auth_required,
            timeout=self.timeout,
            starttls=self.tls_context is not None and not self.implicit_tls,
            implicit_tls=self.implicit_tls,
            require_tls=self.require_starttls,
            pipelining_sync=self.pipelining_sync,
            command_limits=self.command_limits(),
            **self.proxy_options(),
        )


class LoginPassword(NamedTuple):
    """What ``authenticator`` gets as ``auth_data`` (as aiosmtpd's). Its ``str`` and
    ``repr`` hide the password, so that logging one leaks nothing."""

    login: bytes
    password: bytes

    def __str__(self) -> str:
        return f"LoginPassword(login={self.login.decode(errors='replace')!r}, password=...)"

    def __repr__(self) -> str:
        return str(self)


_hybrids: dict[type, type] = {}


def login_password(login: bytes, password: bytes) -> LoginPassword:
    """The ``auth_data`` an authenticator gets: a :class:`LoginPassword`, which is also
    an instance of aiosmtpd's ``LoginPassword`` when aiosmtpd is imported, so that an
    authenticator written for aiosmtpd (``isinstance(auth_data, LoginPassword)`` with
    aiosmtpd's class) accepts it unchanged. smtpx never imports aiosmtpd itself."""
    theirs = getattr(sys.modules.get("aiosmtpd.smtp"), "LoginPassword", None)
    if not isinstance(theirs, type) or not issubclass(theirs, tuple):
        return LoginPassword(login, password)
    hybrid = _hybrids.get(theirs)
    if hybrid is None:
        hybrid = type("LoginPassword", (LoginPassword, theirs), {"__slots__": ()})
        _hybrids[theirs] = hybrid
    return hybrid(login, password)  # type: ignore[no-any-return]


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
    #: The message: bytes, or a str with ``decode_data`` (as aiosmtpd).
    content: bytes | str | None = None
    #: The message as received (after dot-unstuffing), always bytes.
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


def _smtputf8(mail_options: list[str]) -> bool:
    """Whether MAIL's parameters ask for SMTPUTF8 (as aiosmtpd sets ``smtp_utf8``)."""
    # perf: most MAIL commands have no parameter: no generator then.
    return bool(mail_options) and "SMTPUTF8" in (o.upper() for o in mail_options)


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
        offload: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.handler = handler
        self.server = server
        self.authenticator = settings.authenticator
        self.auth_callback = settings.auth_callback
        self.lmtp = settings.lmtp
        self.decode_data = settings.decode_data
        self.smtputf8 = settings.enable_SMTPUTF8
        self.offload = offload
        self.session = Session(peer=peer, ssl={} if tls else None, loop=loop)
        self.envelope = Envelope()

    # Plumbing ------------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any) -> Step:
        """Calls a hook: a plain function on the hook threads when there are some
        (``offload``), so that it blocks only this connection; an awaitable it gives is
        awaited."""
        if self.offload is not None and not inspect.iscoroutinefunction(method):
            value = yield self.offload(method, *args)
        else:
            value = method(*args)
        # perf: an `async def` hook's coroutine is told by its type, without
        # inspect.isawaitable's checks (which still decide for anything else).
        if type(value) is types.CoroutineType or inspect.isawaitable(value):
            value = yield value
        return value

    def _hook(self, name: str, *args: Any) -> Step:
        method = getattr(self.handler, name, None)
        if method is None:
            return _MISSING
        return (yield from self._call(method, self.server, self.session, self.envelope, *args))

    def _guarded(self, what: str, step: Step) -> Step:
        try:
            status = yield from step
        except Exception as error:
            log.exception("smtpx server: the handler failed in %s (peer %s)", what, self.session.peer)
            return (yield from self._exception(error))
        if status is not None and not isinstance(status, str):
            if not (isinstance(status, list) and what == "handle_DATA"):
                log.error("smtpx server: %s returned %r, not a status string", what, status)
                return INVALID_STATUS
        return status

    def _exception(self, error: Exception) -> Step:
        """The reply to a hook that raised: ``handle_exception(error)``'s status, as
        aiosmtpd asks it, else (or when that raises too) :data:`HANDLER_FAILED`."""
        method = getattr(self.handler, "handle_exception", None)
        if method is None:
            return HANDLER_FAILED
        try:
            status = yield from self._call(method, error)
        except Exception:
            log.exception("smtpx server: handle_exception failed (peer %s)", self.session.peer)
            return HANDLER_FAILED
        if not isinstance(status, str):
            log.error("smtpx server: handle_exception returned %r, not a status string", status)
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

    def take_envelope(self, sender: str, mail_options: list[str], recipients: list[str], rcpt_options: list[str]) -> None:
        """perf: the envelope of a message whose MAIL and RCPT the engine accepted without
        a hook (the handler has neither ``handle_MAIL`` nor ``handle_RCPT``), filled as
        aiosmtpd's defaults fill it. The lists are the envelope's from now on (the engine
        gives new ones with each message)."""
        self.envelope = Envelope(
            mail_from=sender,
            mail_options=mail_options,
            smtp_utf8=_smtputf8(mail_options),
            rcpt_tos=recipients,
            rcpt_options=rcpt_options,
        )

    def _take_sender(self, address: str, options: list[str]) -> None:
        self.envelope.mail_from = address
        self.envelope.mail_options.extend(options)
        self.envelope.smtp_utf8 = _smtputf8(options)

    def _take_recipient(self, address: str, options: list[str]) -> None:
        self.envelope.rcpt_tos.append(address)
        self.envelope.rcpt_options.extend(options)

    # The events ----------------------------------------------------------------------------

    def hello(self, verb: str, domain: str, responses: list[str] | None = None) -> Step:
        """HELO, EHLO or LHLO: ``handle_HELO(hostname)`` or ``handle_EHLO(hostname,
        responses)``, ``responses`` being the lines of the engine's EHLO reply
        (``["250-mx.example", "250-PIPELINING", ..., "250 DSN"]``), which the hook may
        return edited (the server then says those lines)."""
        name = "handle_HELO" if verb == "HELO" else "handle_EHLO"
        return self._guarded(name, self._hello(verb, name, domain, responses or []))

    def _hello(self, verb: str, name: str, domain: str, responses: list[str]) -> Step:
        self.envelope = Envelope()
        self.session.host_name = domain
        self.session.extended_smtp = verb != "HELO"
        if verb == "HELO":
            status = yield from self._hook(name, domain)
            if isinstance(status, str) and status.startswith("250"):
                return status  # said as it is, as aiosmtpd says it
        else:
            status = yield from self._hook(name, domain, list(responses))
        if isinstance(status, list):
            # aiosmtpd's responses: accepted when every one is a 250 line, and said as they
            # are when the hook edited them (an empty list, or the lines it was given,
            # keep the engine's reply). Otherwise the first other line is the answer if it
            # refuses; anything else (a line that is no string, a 2xx or 3xx line that is
            # not 250) is no clear answer, and fails closed.
            bad = [line for line in status if not (isinstance(line, str) and line.startswith("250"))]
            if not bad:
                if not status or status == responses:
                    return None
                if any("\r" in line or "\n" in line for line in status):
                    log.error("smtpx server: %s returned a line with a line break: %r", name, status)
                    return INVALID_STATUS
                # One reply: every line a continuation ("250-") but the last ("250 "),
                # whatever markers the hook wrote.
                texts = [line[4:] for line in status]
                return "\r\n".join(
                    f"250{'-' if i < len(texts) - 1 else ' '}{text}" for i, text in enumerate(texts)
                )
            if bad and isinstance(bad[0], str) and bad[0][:1] in ("4", "5"):
                return bad[0]
            log.error("smtpx server: %s returned %r, not a list of 250 lines", name, status)
            return INVALID_STATUS
        if status is _MISSING or (isinstance(status, str) and status.startswith("2")):
            return None
        return status

    def tls_started(self, info: dict[str, Any] | None = None) -> None:
        """TLS is on (STARTTLS, or an implicit-TLS listener's handshake): the session
        starts over, encrypted; ``session.ssl`` is ``info`` (what the TLS layer tells)."""
        self.session.ssl = info if info else {"library": "unknown"}
        self.session.host_name = None
        self.envelope = Envelope()

    def auth(self, mechanism: str, username: str, password: str) -> Step:
        """AUTH PLAIN or LOGIN: the ``authenticator`` decides, failing closed (see
        :func:`auth_succeeded`); a refusal is logged without the password."""
        return self._guarded("authenticator", self._auth(mechanism, username, password))

    def _auth(self, mechanism: str, username: str, password: str) -> Step:
        authenticator = self.authenticator
        data = login_password(username.encode(), password.encode())
        if authenticator is not None:
            result = yield from self._call(authenticator, self.server, self.session, self.envelope, mechanism, data)
        elif self.auth_callback is not None:
            # aiosmtpd's older check: (mechanism, login, password) -> bool; a true
            # answer is its AuthResult(success=True, auth_data=the LoginPassword).
            accepted = yield from self._call(self.auth_callback, mechanism, data.login, data.password)
            result = AuthResult(success=True, auth_data=data) if accepted else AuthResult(success=False, handled=False)
        else:
            return AUTH_FAILED
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
        self.envelope.original_content = content
        if self.decode_data:  # as aiosmtpd decodes
            if self.smtputf8:
                self.envelope.content = content.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    self.envelope.content = content.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    self.envelope = Envelope()
                    return "500 5.6.0 Error: strict ASCII mode"
        else:
            self.envelope.content = content
        try:
            # perf: _hook("handle_DATA") written out, one generator less per message.
            method = getattr(self.handler, "handle_DATA", None)
            if method is None:
                status = _MISSING
            else:
                status = yield from self._call(method, self.server, self.session, self.envelope)
        finally:
            self.envelope = Envelope()
        return None if status is _MISSING else data_answer(status, self.lmtp)

    def reset(self) -> Step:
        """A transaction was abandoned (RSET, a new greeting, STARTTLS): a new
        envelope."""
        self.envelope = Envelope()
        return None
        yield  # a step, like the others

    def rset(self) -> Step:
        """The RSET command (in a transaction or not, as aiosmtpd): a new envelope, then
        ``handle_RSET()``; without it, ``250 2.0.0 OK`` (aiosmtpd's text)."""
        return self._guarded("handle_RSET", self._rset())

    def _rset(self) -> Step:
        self.envelope = Envelope()
        status = yield from self._hook("handle_RSET")
        return RSET_OK if status is _MISSING else status

    def noop(self, argument: str | None = None) -> Step:
        """NOOP: ``handle_NOOP(arg)``, ``arg`` being what followed the verb or None (as
        aiosmtpd gives it; RFC 5321 allows an argument and ignores it); without the hook,
        ``250 2.0.0 OK`` (aiosmtpd's text)."""
        return self._guarded("handle_NOOP", self._noop(argument))

    def _noop(self, argument: str | None) -> Step:
        status = yield from self._hook("handle_NOOP", argument)
        return NOOP_OK if status is _MISSING else status

    def quit(self) -> Step:
        """QUIT: ``handle_QUIT()``, whose status is said before the connection closes;
        without it, ``221 2.0.0 Bye`` (aiosmtpd's text)."""
        return self._guarded("handle_QUIT", self._quit())

    def _quit(self) -> Step:
        status = yield from self._hook("handle_QUIT")
        return QUIT_BYE if status is _MISSING else status

    def vrfy(self, argument: str) -> Step:
        """VRFY: ``handle_VRFY(address)``; without it, the engine's standard answer."""
        return self._guarded("handle_VRFY", self._vrfy(argument))

    def _vrfy(self, argument: str) -> Step:
        status = yield from self._hook("handle_VRFY", argument)
        return None if status is _MISSING else status

    def proxy(self) -> Step:
        """The PROXY header was read: ``handle_PROXY(server, session, envelope,
        proxy_data)``, ``proxy_data`` being ``session.proxy``; its answer is True (go on,
        greet) or False (close without a greeting, as aiosmtpd). Without the hook: True
        (aiosmtpd closes every connection then; see the README). A hook that raises is a
        no."""
        try:
            status = yield from self._hook("handle_PROXY", self.session.proxy)
        except Exception:
            log.exception("smtpx server: the handler failed in handle_PROXY (peer %s)", self.session.peer)
            return False
        return True if status is _MISSING else bool(status)

    def expn(self, argument: str) -> Step:
        """EXPN: ``handle_EXPN(address)``; without it, the engine's standard answer."""
        return self._guarded("handle_EXPN", self._expn(argument))

    def _expn(self, argument: str) -> Step:
        status = yield from self._hook("handle_EXPN", argument)
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
