"""The asyncio server: :class:`Server` runs an aiosmtpd-style handler (coroutine or plain
``handle_EHLO``, ``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``, ...) on a buffered
protocol (see _ServerProtocol; on a plain socket the engine reads and answers every
ready connection in one callback per loop iteration, see Server._start_poller), with the same
:class:`~smtpx.Envelope` and :class:`~smtpx.Session`, hook mapping, options and defaults
as :class:`~smtpx.Controller` (:mod:`smtpx.adapter`)::

    async with smtpx.aio.Server(handler, hostname="127.0.0.1", port=8025) as server:
        ...

TLS is rustls (:class:`smtpx._native.TlsSession`); ``tls_context=(certfile, keyfile)``
offers STARTTLS, with ``implicit_tls`` the listener speaks TLS from the first byte.
Every protocol and connection decision is the engine's
(:class:`smtpx._native.ServerConnection`).

Wire trace: while the ``smtpx.wire`` logger is enabled for DEBUG when the server starts,
every command and reply line is logged there, one DEBUG record each, as ``conn=ID C:
text`` / ``conn=ID S: text``, redacted by the engine (``AUTH PLAIN <redacted>``, ``<SASL
response redacted>``, ``<message content, N octets>``), as :class:`smtpx.Controller`
does. A server started without it installs no trace (enable it, then restart).
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import concurrent.futures
import contextvars
import itertools
import logging
import ssl
import sys
import types
from typing import Any, Callable, Generator, Iterator, Sequence

from smtpx import _native
from smtpx._trace import log_line, wire_logging
from smtpx.adapter import (
    HOOKED,
    HandlerConnection,
    ServerSettings,
    Step,
)
from smtpx.errors import SmtpTlsError

__all__ = ["Server"]

log = logging.getLogger("smtpx.aio")

_READ_SIZE = 64 * 1024
# How many times one callback of the server's poller asks it for ready connections (see
# Server._poll_ready): more passes serve input that came while Python ran sooner, each
# costing one epoll_wait when nothing came.
_POLL_PASSES = 8
_CONNECT = _native.ServerConnection.CONNECT
_HOOK = _native.ServerConnection.HOOK
_WRITE = _native.ServerConnection.WRITE
_READ = _native.ServerConnection.READ
_START_TLS = _native.ServerConnection.START_TLS

# perf: the transport class whose socket the engine may read and write itself (see
# _ServerProtocol._go_direct): CPython's selector transport, on a loop with the selector
# loop's reader registration. Any other transport (uvloop's, the proactor's, TLS) is used
# through its ordinary callbacks.
_DIRECT_TRANSPORT: type | None = getattr(asyncio.selector_events, "_SelectorSocketTransport", None)


class Server:
    """An asyncio SMTP (or LMTP) server running an aiosmtpd-style ``handler`` on
    ``hostname``:``port`` (``port=0`` picks a free one: read :attr:`address`).

    Hooks get ``(server, session, envelope, ...)`` as aiosmtpd's do, ``server`` being
    this object (``hostname`` is the name the server greets with, as aiosmtpd's
    ``SMTP.hostname``). Every other keyword is an option of
    :class:`smtpx.adapter.ServerSettings`, which lists them with their defaults (those
    of :class:`~smtpx.Controller` too, aiosmtpd's where it has the option):
    ``server_hostname``, ``ident``, ``data_size_limit`` (None: no limit),
    ``enable_SMTPUTF8``, ``decode_data``, ``timeout``, ``tls_context`` (a ``(certfile,
    keyfile)`` pair for rustls or an :class:`ssl.SSLContext`), ``require_starttls``,
    ``implicit_tls``, ``authenticator``, ``auth_required``, ``auth_require_tls``,
    ``auth_exclude_mechanism``, ``auth_callback``, ``command_call_limit``, ``lmtp``,
    ``max_connections``, ``listen_backlog``,
    ``pipelining_sync``, ``proxy_protocol_timeout`` and ``proxy_trusted`` (aiosmtpd's PROXY
    protocol option, see :class:`smtpx.adapter.ServerSettings`), ``hook_threads`` (0 here: plain-function hooks run on the event
    loop, as aiosmtpd's) and ``server_kwargs``. An unknown keyword is a ``TypeError``.

    ``unix_socket``: a path to listen on instead of ``hostname``:``port`` (a Unix domain
    socket, as aiosmtpd's ``UnixSocketController``); sessions then have ``("", 0)`` as
    their peer.

    A :class:`smtpx.relay.RelayHandler` as ``handler`` runs as the core's relay inside
    each connection (its ``native_relay``): MAIL, RCPT and the message get the next hop's
    replies, and the content streams to the next hop as it arrives (:mod:`smtpx.relay`).
    """

    def __init__(
        self,
        handler: Any,
        hostname: str = "127.0.0.1",
        port: int = 8025,
        *,
        unix_socket: str | None = None,
        **options: Any,
    ) -> None:
        settings = options.pop("settings", None)
        if settings is None:
            settings = ServerSettings(**options)
        elif options:
            raise TypeError("give either settings or its keywords, not both")
        self.settings: ServerSettings = settings
        self.handler = handler
        self.host = hostname
        self.port = port
        self.unix_socket = unix_socket
        #: The name the server greets with (aiosmtpd's ``SMTP.hostname``).
        self.hostname = settings.hostname
        self.data_size_limit = settings.data_size_limit
        #: The :class:`smtpx.Controller` running this server, if any.
        self.controller: Any = None
        self._tls_config: _native.TlsConfig | None = None
        self._ssl_context: ssl.SSLContext | None = None
        # perf: the hooks the handler has no code for are answered in Rust; without
        # handle_MAIL and handle_RCPT the envelope comes with the message.
        self._envelope_with_message = not (hasattr(handler, "handle_MAIL") or hasattr(handler, "handle_RCPT"))
        self._options: dict[str, Any] = dict(
            settings.engine_options(),
            mail_rcpt_hooks=not self._envelope_with_message,
        )
        # A handler that is the core's relay (smtpx.relay.RelayHandler) is run inside the
        # native connection: the content streams to the next hop as it arrives, and
        # MAIL, RCPT and the message get the next hop's replies (see _relay_step).
        native_relay = getattr(handler, "native_relay", None)
        if isinstance(native_relay, _native.Relay):
            self._options["relay"] = native_relay
        self._ehlo_hook = hasattr(handler, "handle_EHLO")
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._proxy = settings.proxy_protocol_timeout is not None  # connections begin with a PROXY header
        self._proxy_hook = hasattr(handler, "handle_PROXY")
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerProtocol] = set()
        # perf: one read buffer for all connections (recv_into, no allocation per read).
        # Safe because the event loop reads one socket at a time and buffer_updated copies
        # out what it got before the next read.
        self._read_buffer = bytearray(_READ_SIZE)
        self._trace = False  # the smtpx.wire logger took DEBUG records at start()
        # perf: the direct-mode connections' readiness, one descriptor for the event loop
        # (see _start_poller); None where the loop cannot watch it.
        self._poller: _native.ServerPoller | None = None
        self._poll_loop: asyncio.AbstractEventLoop | None = None
        self._connection_ids = itertools.count(1)

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` listened on (the real port when ``port`` was 0); on a Unix
        socket ``(path, 0)``."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        if self.unix_socket is not None:
            return (self.unix_socket, 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return (str(host), int(port))

    def active_connections(self) -> int:
        """How many connections are being served now."""
        return len(self._connections)

    async def start(self) -> None:
        """Reads the certificate (when given) and starts listening."""
        if self._server is not None:
            raise RuntimeError("already started")
        settings = self.settings
        files = settings.tls_files()
        if files is not None:
            cert, key = files
            self._tls_config = _native.TlsConfig.server_from_files(cert, key)
        elif isinstance(settings.tls_context, ssl.SSLContext):
            self._ssl_context = settings.tls_context
        if settings.hook_threads:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                settings.hook_threads, thread_name_prefix="smtpx-hook"
            )
        # The engine's options are checked now (a network that is no CIDR, a banner of
        # two lines), not at the first connection.
        _native.ServerConnection(self.hostname, **self._options)
        self._trace = wire_logging()
        loop = asyncio.get_running_loop()
        extra = dict(settings.server_kwargs or {})
        if settings.implicit_tls and self._ssl_context is not None:
            extra["ssl"] = self._ssl_context  # asyncio's TLS: the handshake is done before connection_made
        self._start_poller(loop)
        try:
            if self.unix_socket is not None:
                self._server = await loop.create_unix_server(
                    lambda: _ServerProtocol(self), self.unix_socket, backlog=settings.listen_backlog, **extra
                )
                return
            self._server = await loop.create_server(
                lambda: _ServerProtocol(self), self.host, self.port, backlog=settings.listen_backlog, **extra
            )
        except BaseException:
            self._stop_poller()
            raise

    def _start_poller(self, loop: asyncio.AbstractEventLoop) -> None:
        """perf: the sockets of direct-mode connections (see _ServerProtocol._go_direct) are
        watched by one epoll instance of the engine's (:class:`smtpx._native.ServerPoller`)
        rather than each by the loop's selector: the loop watches only its descriptor, and
        its one callback per loop iteration (_poll_ready) has the engine read and answer
        every ready connection, handing back only those that need Python. Loops without the
        selector loop's reader registration (and platforms without epoll) keep a reader per
        socket."""
        if _DIRECT_TRANSPORT is None or not hasattr(loop, "_add_reader") or not hasattr(loop, "_remove_reader"):
            return
        try:
            poller = _native.ServerPoller()
        except OSError:
            return
        loop._add_reader(poller.fileno(), self._poll_ready)
        self._poller, self._poll_loop = poller, loop

    def _stop_poller(self) -> None:
        poller, loop = self._poller, self._poll_loop
        self._poller = self._poll_loop = None
        if poller is None or loop is None:
            return
        if not loop.is_closed():
            loop._remove_reader(poller.fileno())  # type: ignore[attr-defined]
        poller.close()

    def _poll_ready(self) -> None:
        """A watched connection is readable: the engine reads and steps every ready one; the
        protocols of those that need Python go on with the outcome (_ServerProtocol._ready).

        perf: while Python ran for some, more input may have come: the poller is asked
        again (up to _POLL_PASSES times in all) until a pass hands nothing back, rather
        than a turn of the event loop later."""
        poller, loop = self._poller, self._poll_loop
        if poller is None or loop is None:
            return
        for _ in range(_POLL_PASSES):
            now = loop.time()
            try:
                ready = poller.poll(now)
            except OSError as error:  # the epoll descriptor itself failed: nothing can be read
                log.error("smtpx.aio server: polling the connections failed", exc_info=error)
                return
            if ready is None:
                return
            for protocol, outcome in ready:
                try:
                    protocol._ready(now, outcome)
                except Exception as error:  # one connection's failure is not the others'
                    protocol._failed(error)
            if self._poller is not poller:  # stopped meanwhile
                return

    def offload(self, hook: Callable[..., Any], *args: Any) -> Any:
        """Runs the plain-function ``hook`` on the hook threads (``hook_threads``);
        returns the future of its result."""
        return asyncio.get_running_loop().run_in_executor(self._executor, hook, *args)

    async def stop(self, grace: float | None = None) -> int:
        """Stops listening and closes every connection; returns how many were cut.

        By default (as aiosmtpd's ``Controller.stop``) every connection is cut at once: a
        hook still running is cancelled (it sees CancelledError at its await); what is
        already written is sent first, for up to 5 seconds, then the connection is cut.

        With ``grace`` (seconds), the shutdown is graceful, as :class:`smtpx.Controller`'s
        ``stop``: idle connections get ``421`` and are closed at once, transactions in
        flight may finish for up to ``grace`` seconds (each connection then closes with
        421), and what is left after that is cut as above."""
        server, self._server = self._server, None
        if server is None:
            return 0
        server.close()
        connections = list(self._connections)
        if grace is not None and connections:
            for connection in connections:
                connection.stop()
            await asyncio.wait([connection.closed for connection in connections], timeout=grace)
        left = [connection for connection in connections if not connection.closed.done()]
        for connection in left:
            connection.close()
        waits = [w for connection in connections for w in (connection.closed, connection.hooks.task)]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=5)
            if pending:
                for connection in connections:
                    connection.abort()
                await asyncio.wait(pending, timeout=1)
        await server.wait_closed()
        self._stop_poller()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        return len(left)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Over the connection limit: the engine's 421 as the greeting, then close (as
        the blocking server, without TLS even on an implicit-TLS listener: no handshake
        is spent on a client that cannot be served)."""
        transport.write(_native.ServerConnection.busy_reply(self.hostname))
        transport.close()  # after the buffered 421 is written


def _no_task_switch(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    pass


# Private asyncio functions that make a task the current one while a hook's first step runs
# in place (see _Hooks). They exist from Python 3.7 on; were they ever gone, hooks would
# still run, only without a current task until their first suspension.
_TaskSwitch = Callable[[asyncio.AbstractEventLoop, "asyncio.Task[Any]"], None]
_enter_task: _TaskSwitch = getattr(asyncio.tasks, "_enter_task", _no_task_switch)
_leave_task: _TaskSwitch = getattr(asyncio.tasks, "_leave_task", _no_task_switch)


@types.coroutine
def _resume(hook: Iterator[Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Awaits the rest of an awaitable whose first step already ran and yielded ``yielded``
    (the future it waits on): ``yield from hook`` with the first step done, so the awaiting
    task drives the hook as if it had run it from the start (wake-ups, cancellation)."""
    send = getattr(hook, "send")
    throw = getattr(hook, "throw")
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            close = getattr(hook, "close", None)
            if close is not None:
                close()
            raise
        except BaseException as error:
            try:
                yielded = throw(error)
            except StopIteration as done:
                return done.value
        else:
            try:
                yielded = send(sent)
            except StopIteration as done:
                return done.value


async def _finish(step: Step, hook: Iterator[Any], yielded: Any) -> Any:
    """Runs the rest of ``step``, whose hook ``hook`` suspended having yielded ``yielded``."""
    value: Any = None
    error: Exception | None = None
    try:
        value = await _resume(hook, yielded)
    except Exception as failure:
        error = failure
    while True:
        try:
            awaitable = step.send(value) if error is None else step.throw(error)
        except StopIteration as done:
            return done.value
        try:
            value, error = await awaitable, None
        except Exception as failure:
            value, error = None, failure


class _Hooks:
    """Runs one connection's hook steps (:class:`smtpx.adapter.HandlerConnection`'s) as if
    in a task of their own, the connection's, as the streams version of this server did,
    without its cost per command.

    perf: a step whose hooks finish without suspending (the common case) runs in place, in
    the transport's callback, stepping the hook's coroutine by ``send``; no Task, Future
    or turn of the event loop. For the hook's code the connection's task is the current
    task and its context the current context, so that ``asyncio.timeout``,
    ``asyncio.current_task`` and context variables work as in a task. A hook that
    suspends is handed, with the rest of its step, to that task, which finishes them
    (while the connection reads nothing), then calls ``finished`` with the answer.
    Cancelling the task (Server.stop) cancels a pending hook at its await.
    """

    def __init__(self, finished: Callable[[Any], None], failed: Callable[[BaseException], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.finished = finished
        self.failed = failed
        self.pending = False
        self.closing = False
        self.context = contextvars.copy_context()
        self._work: asyncio.Future[tuple[Step, Iterator[Any], Any]] = self.loop.create_future()
        if sys.version_info >= (3, 11):
            self.task = self.loop.create_task(self._drive(), context=self.context)
        else:  # pragma: no cover - Python 3.10: no context argument; in-place steps use self.context
            self.task = self.loop.create_task(self._drive())

    def run(self, step: Step) -> tuple[bool, Any]:
        """Runs ``step`` up to a hook's first suspension: ``(True, the answer)`` when it
        finished, else ``(False, None)`` and ``finished`` will get the answer."""
        loop, task = self.loop, self.task
        current = asyncio.current_task(loop)
        if current is None:  # a transport's callback, the usual case: enter the task
            _enter_task(loop, task)
            try:
                return self.context.run(self._advance, step)
            finally:
                _leave_task(loop, task)
        if current is task:  # continuing after a suspended hook, in the task
            return self._advance(step)
        # Called from another task (not by asyncio), which stays the current one.
        return self.context.run(self._advance, step)

    def _advance(self, step: Step) -> tuple[bool, Any]:
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                awaitable = step.send(value) if error is None else step.throw(error)
            except StopIteration as done:
                return True, done.value
            hook = awaitable.__await__()
            try:
                yielded = hook.send(None)
            except StopIteration as done:
                value, error = done.value, None
                continue
            except Exception as failure:
                value, error = None, failure
                continue
            self.pending = True
            self._work.set_result((step, hook, yielded))
            return False, None

    async def _drive(self) -> None:
        while True:
            step, hook, yielded = await self._work
            self._work = self.loop.create_future()
            try:
                value = await _finish(step, hook, yielded)
            except Exception as error:  # (a cancellation ends the task: Server.stop)
                self.pending = False
                if self.closing:
                    return
                self.failed(error)
                continue
            self.pending = False
            if self.closing:
                return
            self.finished(value)

    def close(self) -> None:
        """The connection is gone: ends the task, unless a hook is pending, which is left to
        finish (as the streams version did; its answer is dropped)."""
        self.closing = True
        if not self.pending:
            self.task.cancel()

    def cancel(self) -> None:
        self.task.cancel()


class _ServerProtocol(asyncio.BufferedProtocol):
    """perf: one connection of :class:`Server`, driven from the transport's callbacks.

    The connection itself is the engine's (:class:`smtpx._native.ServerConnection`: hook
    dispatch, input held while the session is busy, deadlines, the STARTTLS handover,
    graceful shutdown); this protocol does what it asks for, in the callback that made it
    possible: buffer_updated decrypts (under TLS) and hands the bytes over, then
    :meth:`_pump` performs actions until one means waiting: writing, running the
    handler's hooks (:class:`_Hooks`, through the adapter), starting TLS, arming the one
    timer of the connection, closing. A task per connection on asyncio streams cost, per
    SMTP command, a Future and a Task wake-up for the read, a timer armed and cancelled
    and a drain() (bench/README.md); here there is none of that.

    TLS is :class:`smtpx._native.TlsSession`, between the transport and the connection:
    received bytes go through ``tls.receive``, written ones through ``tls.write`` and
    ``tls.output``.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.connection: _native.ServerConnection | None = None  # None: refused (max_connections)
        self.conn: HandlerConnection | None = None
        self.hooks = _Hooks(self._hook_finished, self._failed)
        self.tls: _native.TlsSession | None = None
        self.tls_failed = False
        self.ssl_handshaking = False  # asyncio's TLS (an ssl.SSLContext) is starting
        self.ssl_task: asyncio.Task[None] | None = None
        self.waiting = False  # a hook suspended: its answer comes to _hook_finished
        self.eof = False  # the client closed its side: said to the connection at its next READ
        self.eof_said = False
        self.write_paused = False
        self.cut = False  # given up on a client that does not read: abort, do not flush
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.proxy_pending = False  # a PROXY protocol header is being read
        self.proxy_hook_pending = False  # handle_PROXY suspended: its answer decides CONNECT
        # perf: the socket's descriptor while the engine reads and writes it itself (a
        # plain selector transport; -1 otherwise), see _go_direct.
        self.fd = -1
        self.reader_on = False  # watched for input (by the server's poller, or _readable with the loop)
        self.poller: _native.ServerPoller | None = None  # the server's, in direct mode
        self.transport_holds = False  # bytes were handed to the transport, perhaps unsent

    # asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        server = self.server
        if len(server._connections) >= server.settings.max_connections:
            server._refuse(transport)
            self.hooks.close()
            return
        self.transport = transport
        server._connections.add(self)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.conn = HandlerConnection(
            server.handler,
            server,
            server.settings,
            (str(peer[0]), int(peer[1])),
            False,
            self.loop,
            server.offload if server._executor is not None else None,
        )
        if server._proxy:
            self.proxy_pending = True
            self.connection = _native.ServerConnection(
                server.hostname, now=self.loop.time(), peer=(str(peer[0]), int(peer[1])), **server._options
            )
        else:
            self.connection = _native.ServerConnection(server.hostname, now=self.loop.time(), **server._options)
        if server._trace:
            self.connection.set_trace(log_line, next(server._connection_ids))
        self._go_direct(transport)
        self._pump()

    def _go_direct(self, transport: asyncio.Transport) -> None:
        """perf: on a plain selector transport, the engine does the socket calls itself:
        the transport stops reading, the socket is watched by the server's poller (which
        reads it with ``read_step`` and hands back what needs Python to :meth:`_ready`), or
        else by the loop, which calls :meth:`_readable` when the socket is readable and has
        ``read_step`` read it, and ``read_step`` and ``step`` send the
        replies (what the socket does not take at once goes to the transport, which then
        writes everything until it holds nothing). A read and its replies then cost one callback, without
        the transport's Python read path, its write path or a ``bytes`` object per read.
        The transport still owns the socket: it closes it, and closing removes the
        reader. TLS (STARTTLS) goes back to the transport's callbacks (_leave_direct)."""
        loop = self.loop
        if (
            _DIRECT_TRANSPORT is None
            or sys.platform == "win32"  # the engine's socket calls are POSIX ones
            or type(transport) is not _DIRECT_TRANSPORT
            or not hasattr(loop, "_add_reader")
            or not hasattr(loop, "_remove_reader")
        ):
            return
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        transport.pause_reading()
        self.fd = sock.fileno()
        if self.server._poll_loop is loop:
            self.poller = self.server._poller
        self._reading()

    def _leave_direct(self) -> None:
        """Back to the transport's own reading (before a TLS handshake)."""
        if self.fd < 0:
            return
        self._unwatch()
        self.fd = -1
        self.poller = None
        self._reading()

    def _unwatch(self) -> None:
        """Direct mode: the socket is no longer watched for input (a closed transport has
        removed the loop's reader itself; the poller is told here)."""
        if not self.reader_on:
            return
        self.reader_on = False
        if self.poller is not None:
            if self.connection is not None:
                self.poller.remove(self.fd, self.connection)
        elif self.transport is not None and not self.transport.is_closing():
            self.loop._remove_reader(self.fd)  # type: ignore[attr-defined]

    def _readable(self) -> None:
        """perf: the socket is readable (direct mode, without the server's poller, or when
        the poller leaves the read to this protocol): the engine reads it and takes the
        first step in the same call, then :meth:`_ready` goes on. (Once the transport
        closes, its ``_remove_reader`` has cancelled this callback.)"""
        connection, transport = self.connection, self.transport
        if connection is None or transport is None or transport.is_closing():
            return
        now = self.loop.time()
        got: Any
        try:
            got = connection.read_step(self.fd, now, self.fd if not self.transport_holds else self._direct_fd())
        except Exception as error:
            got = error
        if got != -1:  # (-1: nothing to read)
            self._ready(now, got)

    def _ready(self, now: float, got: Any) -> None:
        """What a read in direct mode led to (``read_step``'s outcome, here or in the
        server's poller): the connection's actions are performed, as buffer_updated and
        eof_received do. ``got`` is the step's tuple, 0 at the end of the stream, the
        exception reading or stepping raised, or None: read the socket here."""
        transport = self.transport
        if self.connection is None or transport is None:
            return
        if transport.is_closing():
            self._unwatch()  # (a step already taken is still performed)
            if got is None:
                return
        if type(got) is tuple:
            kind, payload, out = got
            if kind == _READ and out is None and not self.eof:
                # perf: the usual outcome (the replies are sent, more input is wanted),
                # done here as _pump does it, without its call
                if self.timer is None or payload < self.timer_at:
                    self._arm(payload)
                return
            self._pump(now, got)
        elif got is None:
            self._readable()
        elif isinstance(got, OSError):  # as the transport's fatal read error: cut
            log.debug("smtpx.aio server: read failed: %r", got)
            self._unwatch()
            transport.abort()
        elif isinstance(got, Exception):
            self._failed(got)
        elif got == 0:  # the end of the stream, as the transport's _read_ready__on_eof
            self._unwatch()
            if not self.eof_received():
                transport.close()

    def get_buffer(self, sizehint: int) -> bytearray | memoryview:
        if self.proxy_pending and self.connection is not None:
            # No read past the PROXY header: what follows is the client's (a ClientHello).
            limit = self.connection.read_limit
            if limit:
                return memoryview(self.server._read_buffer)[:limit]
        return self.server._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        connection = self.connection
        if connection is None or self.transport is None:
            return
        now = self.loop.time()
        if self.tls is None:
            connection.receive(self.server._read_buffer, now, nbytes)
        else:
            plain = self._decrypt(bytes(memoryview(self.server._read_buffer)[:nbytes]))
            if plain:
                connection.receive(plain, now)
        self._pump(now)

    def eof_received(self) -> bool:
        connection = self.connection
        if connection is None:
            return False
        if self.tls is not None and self.tls.is_handshaking:
            log.info("smtpx.aio server: connection ended: the connection closed during the TLS handshake")
            connection.lost()
        else:
            self.eof = True
        self._pump()
        return True  # the transport stays open for the last replies; CLOSE closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self._unwatch()
        self.transport = None
        self._cancel_timer()
        if self.connection is not None:
            self.connection.lost()
            self._pump()  # the hooks still due (nothing is written)
        self.hooks.close()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._reading()
        self._pump()

    # Server.stop

    def stop(self) -> None:
        """Graceful: an idle session gets 421 and is closed now, one in a transaction
        when it is over."""
        if self.connection is not None and self.transport is not None:
            self.connection.stop()
            self._pump()

    def close(self) -> None:
        self.hooks.cancel()  # what cancelling the connection's task did in the streams version
        if self.transport is not None:
            self._unwatch()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self._unwatch()
            self.transport.abort()

    # The connection's actions

    def _pump(self, now: float | None = None, first: tuple[int, Any, bytes | None] | None = None) -> None:
        """Performs the connection's actions until one means waiting (for input, a
        handshake, a suspended hook, the transport to drain) or the end. ``first``: the
        step _readable took already."""
        connection = self.connection
        if connection is None:
            return
        if first is None and (self.waiting or (self.write_paused and not self.cut)):
            return  # (a step already taken is performed whatever the state)
        if now is None:
            now = self.loop.time()
        fd = self._direct_fd()
        try:
            while True:
                if first is None:
                    kind, payload, out = connection.step(now, fd)
                else:
                    (kind, payload, out), first = first, None
                if out is not None:  # what was said before a waiting action
                    if self.transport is not None:
                        self._write(out)
                        fd = None  # the transport may hold bytes now: they go first
                    if self.write_paused and not self.cut:
                        return  # resume_writing goes on (step gives the same action again)
                if kind == _READ:
                    if self.eof:
                        if self.eof_said:  # nothing more will come
                            connection.lost()
                        else:
                            self.eof_said = True
                            connection.receive_eof()
                        continue
                    if self.timer is None or payload < self.timer_at:
                        self._arm(payload)
                    return
                elif kind == _WRITE:
                    if self.transport is not None:
                        self._write(payload)
                        fd = None
                    if self.write_paused and not self.cut:
                        return  # resume_writing goes on
                elif kind == _HOOK:
                    status = self._answer(payload)
                    if type(status) is types.GeneratorType:
                        done, status = self.hooks.run(status)
                        if not done:
                            self.waiting = True
                            self._reading()
                            return  # _hook_finished goes on
                    connection.answer(status)
                elif kind == _START_TLS:
                    self.proxy_pending = False
                    self._leave_direct()
                    fd = None
                    if self.server._ssl_context is not None:
                        if self.transport is not None and self.transport.get_extra_info("ssl_object") is not None:
                            # implicit: asyncio did the handshake
                            connection.tls_established(now, tls=self._ssl_details())
                            self._secured()
                            continue
                        if not self.ssl_handshaking:
                            self._start_ssl(payload)
                        return  # _ssl_handshake goes on
                    if self.tls is None:
                        self._start_tls()
                    self._arm(payload)
                    return  # _decrypt goes on when the handshake is done
                elif kind == _CONNECT:
                    if self.server._proxy:
                        self._proxied(connection)
                        if self.server._proxy_hook:
                            assert self.conn is not None
                            done, accepted = self.hooks.run(self.conn.proxy())
                            if not done:
                                self.proxy_hook_pending = self.waiting = True
                                self._reading()
                                return  # _hook_finished goes on
                            if not accepted:
                                self._proxy_refused(connection)
                                continue
                    connection.connected()
                else:
                    self._close()
                    return
        except Exception as error:
            self._failed(error)

    def _proxied(self, connection: _native.ServerConnection) -> None:
        """The PROXY header is read: the session names the client it carried."""
        self.proxy_pending = False
        if self.conn is not None:
            peer = connection.peer
            if peer is not None:
                self.conn.session.peer = peer
            self.conn.session.proxy = connection.proxy

    def _answer(self, event: _native.Event) -> Any:
        """The answer to the hook ``event``, or the adapter's step that gives it when the
        handler's code runs. perf: MAIL and RCPT without their hook are answered at once,
        without a step."""
        conn = self.conn
        assert conn is not None
        kind = event.kind
        if kind == "mail":
            status = conn.mail_now(event.sender or "", event.options)
            return conn.mail(event.sender or "", event.options) if status is HOOKED else status
        if kind == "rcpt":
            status = conn.rcpt_now(event.recipient or "", event.options)
            return conn.rcpt(event.recipient or "", event.options) if status is HOOKED else status
        if kind == "message_end":
            if self.server._envelope_with_message:
                assert self.connection is not None
                envelope = self.connection.take_envelope()
                if envelope is not None:
                    conn.take_envelope(*envelope)
            return conn.data(event.data or b"")
        if kind == "hello":
            verb = event.verb or ""
            lines = None
            if verb != "HELO" and self.server._ehlo_hook and self.connection is not None:
                lines = self.connection.ehlo_lines()
            return conn.hello(verb, event.domain or "", lines)
        if kind == "noop":
            return conn.noop(event.argument or None)  # aiosmtpd's arg: None when there is none
        if kind == "rset":
            return conn.rset()
        if kind == "quit":
            return conn.quit()
        if kind == "reset":
            return conn.reset()
        if kind == "auth":
            return conn.auth(event.mechanism or "", event.username or "", event.password or "")
        if kind == "verify":
            return conn.vrfy(event.argument or "")
        if kind == "expand":
            return conn.expn(event.argument or "")
        if kind == "tls_started":
            conn.tls_started(self._tls_info())
            return None
        if kind == "close":
            return None  # nothing to say
        if kind == "relay":
            return self._relay_step(event)
        # A hook the adapter has no shape of its own for: by its name.
        return conn.by_name(kind, event.argument)

    def _relay_step(self, job: Any) -> Any:
        """A hook of the core's relay (MAIL, RCPT, a piece of content, the end of the
        message, ...): run on the hook threads (or the loop's default executor), since it
        may wait on the next hop; the job then carries its answer. While it runs, this
        connection reads nothing: at most the core's pieces in flight are held."""
        yield self.server.offload(job.run)
        return job

    def _hook_finished(self, status: Any) -> None:
        """A hook that had suspended is done (called in the connection's task)."""
        self.waiting = False
        if self.connection is None:
            return
        if self.proxy_hook_pending:
            self.proxy_hook_pending = False
            if status:
                self.connection.connected()
            else:
                self._proxy_refused(self.connection)
        else:
            self.connection.answer(status)
        self._reading()
        self._pump()

    def _proxy_refused(self, connection: _native.ServerConnection) -> None:
        """``handle_PROXY`` said no: closed without a greeting, as aiosmtpd closes it."""
        log.info("smtpx.aio server: connection refused by handle_PROXY (peer %s)", self.conn and self.conn.session.peer)
        connection.lost()

    def _failed(self, error: BaseException) -> None:
        log.error("smtpx.aio server: connection failed", exc_info=error)
        self.waiting = False
        if self.transport is not None:
            self._unwatch()
            self.transport.close()

    def _direct_fd(self) -> int | None:
        """The descriptor ``step`` may send on: in direct mode, while the transport is
        open and holds nothing unsent (bytes must leave in order)."""
        if self.fd < 0:
            return None
        transport = self.transport
        if transport is None or transport.is_closing():
            return None
        if self.transport_holds:
            if transport.get_write_buffer_size():
                return None
            self.transport_holds = False
            if self.poller is not None:
                self.poller.set_send(self.fd, True)
        return self.fd

    def _write(self, out: bytes) -> None:
        assert self.transport is not None
        if self.tls is not None:
            self.tls.write(out)
            out = self.tls.output()
        self.transport.write(out)
        if self.fd >= 0 and not self.transport_holds:
            self.transport_holds = True
            if self.poller is not None:
                self.poller.set_send(self.fd, False)

    def _close(self) -> None:
        """Every hook has run: close (after a TLS close_notify)."""
        self._cancel_timer()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._unwatch()
        if self.cut:
            transport.abort()
            return
        tls = self.tls
        if tls is not None and not tls.is_handshaking and not self.tls_failed:
            tls.close()
            transport.write(tls.output())
        transport.close()  # after what is buffered is written

    def _reading(self) -> None:
        """Reads only while the peer takes our replies and no hook is pending."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.fd >= 0:  # direct mode: our own reader, until the end of the stream
            wanted = not (self.write_paused or self.waiting or self.eof)
            if wanted != self.reader_on:
                if not wanted:
                    self._unwatch()
                    return
                poller = self.poller
                if poller is not None and self.connection is not None:
                    timer_at = self.timer_at if self.timer is not None else None
                    try:
                        poller.add(self.fd, self.connection, self, not self.transport_holds, timer_at)
                        self.reader_on = True
                        return
                    except (OSError, ValueError) as error:  # (epoll's limit of watches, a closed poller)
                        log.debug("smtpx.aio server: the poller cannot watch a connection: %r", error)
                        self.poller = None  # the loop watches this one
                self.loop._add_reader(self.fd, self._readable)  # type: ignore[attr-defined]
                self.reader_on = True
            return
        if self.write_paused or self.waiting:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    # TLS

    def _start_tls(self) -> None:
        """The server side of a handshake: implicit TLS, or STARTTLS once the 220 is out."""
        assert self.server._tls_config is not None
        self.tls = _native.TlsSession(self.server._tls_config)

    def _ssl_details(self) -> dict[str, Any]:
        """What asyncio's ``ssl`` negotiated, in the keys the engine takes (``version``,
        ``cipher``, ``server_name``, ``peer_certificates``): the connection then tells
        handlers, as it does for the rustls session."""
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is None:
            return {}
        cipher = ssl_object.cipher()
        peer = ssl_object.getpeercert(binary_form=True)
        return {
            "version": ssl_object.version(),
            "cipher": cipher[0] if cipher else None,
            # The name the client asked for (SNI) is only seen by an sni_callback on the
            # server's context, which is the application's; it is not read here.
            "server_name": None,
            "peer_certificates": [peer] if peer else [],
        }

    def _tls_info(self) -> dict[str, Any]:
        """What ``session.ssl`` holds once TLS is on: the keys aiosmtpd's has (asyncio's
        extra info) under Python's ssl; under rustls the ``cipher`` triple (name, version,
        None) and the ``version``. Both add what the engine was told: ``server_name``
        (the SNI name the client sent, rustls only) and ``peer_certificates`` (the
        client's certificate chain as DER bytes, leaf first; empty without one)."""
        told = self.connection.tls if self.connection is not None else None
        extra = {
            "server_name": told.get("server_name") if told else None,
            "peer_certificates": list(told.get("peer_certificates") or []) if told else [],
        }
        if self.tls is not None:
            version, suite = self.tls.protocol_version, self.tls.cipher_suite
            return {
                "cipher": (suite, version, None),
                "version": version,
                "library": "rustls",
                **extra,
            }
        transport = self.transport
        if transport is None:
            return {"library": "ssl", **extra}
        names = ("sslcontext", "ssl_object", "peercert", "cipher", "compression")
        info = {name: transport.get_extra_info(name) for name in names}
        ssl_object = info["ssl_object"]
        info["version"] = ssl_object.version() if ssl_object is not None else None
        info["library"] = "ssl"
        info.update(extra)
        return info

    def _secured(self) -> None:
        """The handshake is done: ``session.ssl`` says so at once (an implicit-TLS
        connection has no STARTTLS hook to say it)."""
        if self.conn is not None:
            self.conn.session.ssl = self._tls_info()

    def _start_ssl(self, deadline: float) -> None:
        """STARTTLS with an :class:`ssl.SSLContext`: asyncio's TLS (Python's ssl over
        memory BIOs) takes over the transport."""
        self.ssl_handshaking = True
        self.ssl_task = self.loop.create_task(self._ssl_handshake(deadline))

    async def _ssl_handshake(self, deadline: float) -> None:
        transport, context = self.transport, self.server._ssl_context
        assert transport is not None and context is not None
        try:
            secured = await self.loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=max(deadline - self.loop.time(), 0.001),
            )
        except (Exception, asyncio.CancelledError) as error:
            self.ssl_handshaking = False
            log.info("smtpx.aio server: connection ended: TLS handshake failed: %r", error)
            self.tls_failed = True
            transport.abort()
            if self.transport is not None:  # asyncio does not call connection_lost here
                self.connection_lost(None)
            return
        self.ssl_handshaking = False
        if self.transport is None or self.connection is None or secured is None:
            return
        self.transport = secured
        self.connection.tls_established(self.loop.time(), tls=self._ssl_details())
        self._secured()
        self._pump()

    def _decrypt(self, data: bytes) -> bytes | None:
        """The plaintext in ``data`` (perhaps none: a handshake's records); None when the
        TLS layer failed (the connection is then lost)."""
        tls, transport, connection = self.tls, self.transport, self.connection
        assert tls is not None and transport is not None and connection is not None
        handshaking = tls.is_handshaking
        try:
            plain = tls.receive(data)
        except SmtpTlsError as e:
            transport.write(tls.output())  # the alert, so that the peer learns why
            log.info("smtpx.aio server: connection ended: %s", e)
            self.tls_failed = True
            connection.lost()
            return None
        out = tls.output()  # the handshake's next flight, a key update's answer
        if out:
            transport.write(out)
        if handshaking and not tls.is_handshaking:
            connection.tls_established(self.loop.time(), tls=tls)
            self._secured()
        if tls.peer_closed:
            self.eof = True
        return plain

    # The one timer

    def _arm(self, deadline: float) -> None:
        """Armed for the deadline of the last READ or START_TLS, moved only when that comes
        earlier; when it fires, _expired re-arms it if the deadline moved on meanwhile (the
        engine keeps the deadline: a READ the server's poller answered moved it there)."""
        if self.timer is not None:
            if deadline >= self.timer_at:
                return
            self.timer.cancel()
        self.timer_at = deadline
        self.timer = self.loop.call_at(deadline, self._expired)
        if self.poller is not None:
            self.poller.set_timer(self.fd, deadline)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            if self.poller is not None:
                self.poller.set_timer(self.fd, None)

    def _expired(self) -> None:
        self.timer = None
        if self.poller is not None:
            self.poller.set_timer(self.fd, None)
        connection = self.connection
        if connection is None or self.transport is None or self.waiting or self.ssl_handshaking:
            return  # gone, a hook is running (the next READ arms the timer again), or asyncio's handshake (its own timeout)
        now = self.loop.time()
        if connection.deadline > now:
            self._arm(connection.deadline)
            return
        if self.tls is not None and self.tls.is_handshaking:
            log.info("smtpx.aio server: connection ended: TLS handshake timed out")
            connection.lost()
        elif self.write_paused:
            log.info("smtpx.aio server: connection ended: the client did not read its replies in time")
            self.cut = True
            connection.lost()
        else:
            connection.timeout(now)
        self._pump()
