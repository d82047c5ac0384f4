"""The server: :class:`Controller` runs :class:`smtpx.aio.Server` with an aiosmtpd-style
handler on an event loop of its own, in one background thread, as aiosmtpd's
``Controller`` does.

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
``handle_RSET``, ``handle_VRFY(server, session, envelope, address)``,
``handle_EXPN(server, session, envelope, address)``, ``handle_exception(error)``. Each
returns a status line (``"250 OK"``, ``"550 5.1.1 No such user"``). A missing hook does
what aiosmtpd's default does. A hook that raises is logged on the ``smtpx.server``
logger and answered by ``handle_exception(error)`` when the handler has one, else with
``451 4.3.0 Error: handler failed``; the server keeps running. The hooks are mapped by
:mod:`smtpx.adapter`, with the options and defaults of
:class:`smtpx.adapter.ServerSettings`.

Where hooks run: every connection is served by the one event loop of the controller's
thread (no thread per connection). Coroutine hooks (``async def``) run on that loop, as
in aiosmtpd: one that awaits lets the others go on, one that blocks without awaiting
stalls every connection. Hooks that are plain functions (and a plain ``authenticator``)
run on a bounded pool of ``hook_threads`` threads (default 16), so that a plain hook that
blocks (a database call, ``time.sleep``) holds only its own connection; beyond
``hook_threads`` blocked hooks, further plain hooks wait for a free thread.

Wire trace: while the ``smtpx.wire`` logger is enabled for DEBUG when the server starts
(``logging.getLogger("smtpx.wire").setLevel(logging.DEBUG)`` with a handler, or a root
logger at DEBUG), every command and reply line of every connection is logged there, one
DEBUG record each, as ``conn=ID C: text`` or ``conn=ID S: text`` (aiosmtpd's equivalent is
its ``mail.log`` logger). Credentials and content are redacted by the engine: ``AUTH
PLAIN <redacted>``, ``<SASL response redacted>``, ``<message content, N octets>``. A
server started while that logger is not enabled installs no trace and pays nothing for
it (enable it, then restart the server).

The differences from aiosmtpd are listed in the README ("aiosmtpd: differences").
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from typing import Any

from smtpx import _native
from smtpx._trace import log_line, wire_logging
from smtpx.adapter import (
    CONTROLLER_HOOK_THREADS,
    AuthResult,
    Envelope,
    LoginPassword,
    ServerSettings,
    Session,
)
from smtpx.aio.server import Server

__all__ = [
    "AuthResult",
    "Controller",
    "Envelope",
    "LoginPassword",
    "Maildir",
    "Session",
    "UnixSocketController",
    "UnixSocketUnthreadedController",
    "UnthreadedController",
]

#: aiosmtpd's default ``ready_timeout`` (seconds).
READY_TIMEOUT = 5.0


class Maildir:
    """The built-in handler: delivers every message into the Maildir at ``path``
    (``tmp/``, ``new/``, ``cur/``, created when missing), in Rust, without Python.

    A :class:`Controller` with this handler runs the Rust blocking server (no Python
    code per connection, a Rust thread per connection) with the settings' greeting name,
    size limit, ``(certfile, keyfile)`` TLS, timeout, limits and LMTP; the options that
    only mean something to Python hooks (``authenticator``, ``decode_data``, an
    ``ssl.SSLContext``, ...) are refused with ``ValueError``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def start(self, host: str, port: int, settings: ServerSettings) -> _native.Server:
        """Starts the Rust server delivering into this Maildir."""
        unsupported = {
            "authenticator": settings.authenticator is not None,
            "auth_callback": settings.auth_callback is not None,
            "command_call_limit": settings.command_call_limit is not None,
            "decode_data": settings.decode_data,
            "ident": settings.ident is not None,
            "enable_SMTPUTF8": not settings.enable_SMTPUTF8,
            "auth_exclude_mechanism": bool(settings.auth_exclude_mechanism),
            "implicit_tls": settings.implicit_tls,
            "an ssl.SSLContext": settings.tls_context is not None and settings.tls_files() is None,
            "data_size_limit=None": not settings.data_size_limit,
            "server_kwargs": bool(settings.server_kwargs),
        }
        refused = [name for name, given in unsupported.items() if given]
        if refused:
            raise ValueError(f"the Maildir handler does not support {', '.join(refused)}")
        cert, key = settings.tls_files() or (None, None)
        return _native.Server.start(
            host,
            port,
            maildir=self.path,
            hostname=settings.hostname,
            data_size_limit=settings.data_size_limit or 0,
            tls_cert=cert,
            tls_key=key,
            require_starttls=settings.require_starttls,
            timeout=settings.timeout,
            lmtp=settings.lmtp,
            max_connections=settings.max_connections,
            listen_backlog=settings.listen_backlog,
            pipelining_sync=settings.pipelining_sync,
            trace=log_line if wire_logging() else None,
            **settings.proxy_options(),
        )


class Controller:
    """Runs an SMTP server for ``handler`` on ``hostname``:``port`` in a background
    thread, as aiosmtpd's ``Controller`` does; ``start()``/``stop()`` or ``with``.

    The server is :class:`smtpx.aio.Server` on an event loop of its own (``loop``, or a
    new one), run by one thread; see the module's doc for where hooks run.

    - ``hostname``: the address to listen on; default ``127.0.0.1``. ``port=0`` picks a
      free port (read ``controller.port`` after ``start()``).
    - ``loop``: the event loop to serve on, as aiosmtpd's. A loop not running is run by
      the controller's thread; a loop already running in another thread is used as it
      is (the server is started and stopped on it).
    - ``ready_timeout``: seconds ``start()`` waits for the server to listen before
      raising ``TimeoutError``; 5 as aiosmtpd.
    - ``ssl_context``: an :class:`ssl.SSLContext` (or a ``(certfile, keyfile)`` pair):
      the listener speaks TLS from the first byte (SMTPS), as aiosmtpd's.
    - ``server_hostname``: the name the server greets with; default the FQDN.
    - ``server_kwargs``: more keywords for ``loop.create_server``.
    - ``hook_threads``: the threads that run plain-function hooks; default 16.
    - every other keyword is one of aiosmtpd's ``SMTP`` (and smtpx's) options, listed
      with their defaults by :class:`smtpx.adapter.ServerSettings`: ``tls_context``,
      ``require_starttls``, ``data_size_limit`` (None: no limit), ``ident``,
      ``enable_SMTPUTF8``, ``decode_data``, ``authenticator``, ``auth_required``,
      ``auth_require_tls``, ``auth_exclude_mechanism``, ``auth_callback``,
      ``command_call_limit``, ``timeout``, ``lmtp``,
      ``max_connections``, ``listen_backlog``, ``pipelining_sync``. An unknown one is a
      ``TypeError``.

    A subclass may override :meth:`factory`, as aiosmtpd's ``Controller.factory``: it
    may return an :class:`smtpx.aio.Server`, or aiosmtpd's ``SMTP`` or ``LMTP`` made for
    this controller's handler (its handler is used, LMTP is honoured, the controller's
    settings apply); anything else is refused with ``TypeError``.
    """

    #: The Unix socket path listened on instead of ``hostname``:``port``
    #: (:class:`UnixSocketController`).
    unix_socket: str | None = None

    def __init__(
        self,
        handler: Any,
        hostname: str | None = None,
        port: int = 8025,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        ready_timeout: float = READY_TIMEOUT,
        ssl_context: Any = None,
        server_hostname: str | None = None,
        server_kwargs: dict[str, Any] | None = None,
        hook_threads: int = CONTROLLER_HOOK_THREADS,
        **SMTP_parameters: Any,
    ) -> None:
        if ssl_context is not None:
            if SMTP_parameters.get("tls_context") is not None:
                raise ValueError("give ssl_context (TLS from the first byte) or tls_context (STARTTLS), not both")
            SMTP_parameters["tls_context"] = ssl_context
            SMTP_parameters["implicit_tls"] = True
        self.settings = ServerSettings(
            server_hostname=server_hostname,
            server_kwargs=server_kwargs,
            hook_threads=hook_threads,
            **SMTP_parameters,
        )
        self.handler = handler
        self.hostname = hostname or "127.0.0.1"
        self.port = port
        self.loop = loop
        self.ready_timeout = ready_timeout
        self.ssl_context = ssl_context
        self.server_hostname = self.settings.hostname
        self.server_kwargs = server_kwargs or {}
        self.SMTP_kwargs = SMTP_parameters
        #: The running :class:`smtpx.aio.Server` (aiosmtpd's ``smtpd``).
        self.smtpd: Server | None = None
        #: The asyncio server listening (as aiosmtpd's ``server``).
        self.server: asyncio.AbstractServer | None = None
        self._native: _native.Server | None = None
        self._running_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._own_loop = False
        self._lock = threading.Lock()
        #: How many connections the last :meth:`stop` cut (after its grace period).
        self.cut_connections = 0

    def factory(self) -> Any:
        """Makes the server (called on the controller's event loop, as aiosmtpd calls
        its ``factory``). Override it to return another :class:`smtpx.aio.Server`, or
        aiosmtpd's ``SMTP``/``LMTP`` (see the class doc)."""
        return Server(self.handler, self.hostname, self.port, unix_socket=self.unix_socket, settings=self.settings)

    def _adopt(self, made: Any) -> Server:
        """The server ``factory()`` means, or TypeError: never silently another one."""
        if isinstance(made, Server):
            return made
        names = {cls.__module__ + "." + cls.__name__ for cls in type(made).__mro__}
        if "aiosmtpd.smtp.SMTP" in names:
            settings = self.settings
            if "aiosmtpd.lmtp.LMTP" in names:
                settings = dataclasses.replace(settings, lmtp=True)
            return Server(
                getattr(made, "event_handler"), self.hostname, self.port, unix_socket=self.unix_socket, settings=settings
            )
        raise TypeError(
            f"{type(self).__name__}.factory() returned {made!r}: smtpx runs an smtpx.aio.Server "
            "or aiosmtpd's SMTP/LMTP (for their handler and LMTP), nothing else"
        )

    async def _start(self) -> Server:
        server = self._adopt(self.factory())
        server.controller = self
        await server.start()
        return server

    def start(self) -> None:
        """Starts listening; returns once the server accepts connections (or raises
        ``TimeoutError`` after ``ready_timeout`` seconds)."""
        with self._lock:
            if self._native is not None or self.smtpd is not None:
                raise RuntimeError("the controller is already running")
            if isinstance(self.handler, Maildir):
                if self.unix_socket is not None:
                    raise ValueError("the Maildir handler listens on TCP only, not on a Unix socket")
                self._native = self.handler.start(self.hostname, self.port, self.settings)
                self.port = self._native.address[1]
                return
            loop = self.loop
            if loop is None or not loop.is_running():
                if loop is None:
                    loop = asyncio.new_event_loop()
                    self._own_loop = True
                self._thread = threading.Thread(target=loop.run_forever, name="smtpx-controller", daemon=True)
                self._thread.start()
            self._running_loop = loop
            future = asyncio.run_coroutine_threadsafe(self._start(), loop)
            try:
                server = future.result(self.ready_timeout)
            except BaseException:
                future.cancel()
                self._halt()
                raise
            self._started(server)

    def _started(self, server: Server) -> None:
        self.smtpd = server
        self.server = server._server
        if self.unix_socket is None:
            self.port = server.address[1]

    def cancel_tasks(self, stop_loop: bool = True) -> None:
        """Stops the loop (unless ``stop_loop`` is False) and cancels every task on it, as
        aiosmtpd's ``BaseController.cancel_tasks``; call it on the loop's thread
        (``loop.call_soon_threadsafe(controller.cancel_tasks)``)."""
        loop = self._running_loop or self.loop
        if loop is None:
            return
        if stop_loop:
            loop.stop()
        for task in asyncio.all_tasks(loop):
            task.cancel()

    def _halt(self) -> None:
        """Stops the controller's own thread and loop (not a loop it was given running)."""
        loop, thread = self._running_loop, self._thread
        self._running_loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            if self._own_loop and not thread.is_alive():
                loop.close()

    def stop(self, grace: float = 5.0, no_assert: bool = False) -> None:
        """Stops accepting, lets transactions in flight finish for up to ``grace``
        seconds, closes idle connections with 421 and cuts the rest (how many were cut
        is then :attr:`cut_connections`). Then the controller's thread ends. Returns None,
        as aiosmtpd's; ``no_assert`` is accepted for its signature (stopping a controller
        that is not running does nothing either way)."""
        with self._lock:
            native, self._native = self._native, None
            if native is not None:
                self.cut_connections = native.stop(grace)
                return
            server, self.smtpd, self.server = self.smtpd, None, None
            loop = self._running_loop
            try:
                if server is not None and loop is not None:
                    future = asyncio.run_coroutine_threadsafe(server.stop(grace), loop)
                    self.cut_connections = future.result(grace + 10)
            finally:
                self._halt()

    @property
    def active_connections(self) -> int:
        """How many connections are being served now."""
        if self._native is not None:
            return self._native.active_connections()
        server = self.smtpd
        return server.active_connections() if server is not None else 0

    def __enter__(self) -> Controller:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class UnixSocketController(Controller):
    """:class:`Controller` listening on the Unix domain socket ``unix_socket`` (a path)
    instead of a TCP port, as aiosmtpd's ``UnixSocketController``; everything else is
    :class:`Controller`'s. The socket file is made by ``start()``; remove it when done
    (aiosmtpd leaves it too)."""

    def __init__(
        self,
        handler: Any,
        unix_socket: str | os.PathLike[str],
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, loop=loop, **kwargs)
        self.unix_socket = os.fspath(unix_socket)


class UnthreadedController(Controller):
    """:class:`Controller` without a thread of its own, as aiosmtpd's
    ``UnthreadedController``: :meth:`begin` sets the server up on ``loop`` (a new one when
    None) without running it; the caller runs the loop. :meth:`end` (or ``await``
    :meth:`finalize`) stops it, then :attr:`ended` is set::

        controller = UnthreadedController(handler, loop=loop)
        controller.begin()
        loop.run_forever()   # until something stops the loop
        controller.end()

    ``start()`` and ``stop()`` are the threaded controller's and are refused here.
    """

    def __init__(
        self,
        handler: Any,
        hostname: str | None = None,
        port: int = 8025,
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, hostname, port, loop, **kwargs)
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        #: Set when :meth:`finalize` is done.
        self.ended = threading.Event()
        self._finalizing: asyncio.Task[None] | None = None

    def begin(self) -> None:
        """Makes the server and starts listening on ``loop``, which must not be running
        (as aiosmtpd's ``begin``); run the loop afterwards."""
        loop = self.loop
        assert loop is not None
        if self.smtpd is not None:
            raise RuntimeError("the controller is already running")
        asyncio.set_event_loop(loop)
        self._running_loop = loop
        self._started(loop.run_until_complete(self._start()))

    async def finalize(self) -> None:
        """Stops listening and closes the connections (on the controller's loop); then
        :attr:`ended` is set."""
        self.ended.clear()
        server, self.smtpd, self.server = self.smtpd, None, None
        try:
            if server is not None:
                self.cut_connections = await server.stop()
        finally:
            self._running_loop = None
            self.ended.set()

    def end(self) -> None:
        """:meth:`finalize` from plain code: scheduled on the loop when it is running (wait
        on :attr:`ended`; from another thread use ``loop.call_soon_threadsafe(controller.end)``),
        else run to its end now."""
        self.ended.clear()
        loop = self.loop
        assert loop is not None
        if loop.is_running():
            self._finalizing = loop.create_task(self.finalize())
        else:
            loop.run_until_complete(self.finalize())

    def start(self) -> None:
        """Refused: an unthreaded controller is started with :meth:`begin`."""
        raise RuntimeError(f"{type(self).__name__} is started with begin() on a loop the caller runs, not start()")

    def stop(self, grace: float = 5.0, no_assert: bool = False) -> None:
        """Refused: an unthreaded controller is stopped with :meth:`end` or :meth:`finalize`."""
        raise RuntimeError(f"{type(self).__name__} is stopped with end() or finalize(), not stop()")


class UnixSocketUnthreadedController(UnthreadedController):
    """:class:`UnthreadedController` listening on the Unix domain socket ``unix_socket``,
    as aiosmtpd's ``UnixSocketUnthreadedController``."""

    def __init__(
        self,
        handler: Any,
        unix_socket: str | os.PathLike[str],
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, loop=loop, **kwargs)
        self.unix_socket = os.fspath(unix_socket)
