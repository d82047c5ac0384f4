"""asyncio drivers: the engine's sans-IO sessions on asyncio streams.

- :class:`SMTP` and :func:`send`: a client with aiosmtplib's parameter names::

      async with smtpx.aio.SMTP(hostname="mx.example", port=25, timeout=30) as client:
          await client.sendmail("a@example.com", ["b@example.com"], message_bytes)

- :class:`Server`: an asyncio server running an aiosmtpd-style handler (coroutine or
  plain ``handle_EHLO``, ``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``, ...), with the
  same :class:`~smtpx.Envelope` and :class:`~smtpx.Session` as :class:`~smtpx.Controller`::

      async with smtpx.aio.Server(handler, hostname="127.0.0.1", port=8025) as server:
          ...

TLS is not supported by these drivers yet: ``use_tls=True`` or ``start_tls=True`` raise
ValueError, and the client never sends STARTTLS. Use :class:`smtpx.SMTP` (blocking,
with implicit TLS and STARTTLS) when the connection must be encrypted.

Every protocol decision is the Rust engine's (:class:`smtpx._native.ClientSession`,
:class:`smtpx._native.ServerSession`); this module only moves bytes and times.
"""

from __future__ import annotations

import asyncio
import email.message
import inspect
import logging
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from smtpx import _native
from smtpx.client import (
    _address,
    _default_local_hostname,
    _envelope_of,
    _flatten,
    _message_bytes,
    _refused_or_raise,
    _send_result,
)
from smtpx.errors import SmtpDisconnected, SmtpError, SmtpTimeoutError
from smtpx.server import AuthResult, Envelope, LoginPassword, Session

__all__ = ["SMTP", "Server", "send"]

log = logging.getLogger("smtpx.aio")

_T = TypeVar("_T")
_READ = 64 * 1024
_NO_TLS = "TLS is not supported by smtpx.aio yet"
_LOCAL_ERROR = "451 4.3.0 Error: handler failed"


def _no_tls(use_tls: bool, start_tls: bool | None) -> None:
    if use_tls or start_tls:
        raise ValueError(_NO_TLS)


class SMTP:
    """An asyncio SMTP client connection (plain text only; see the module docstring).

    ``timeout`` (seconds, None for none) bounds connecting and every call. When a call
    times out or is cancelled, the connection is closed: the session cannot go on.
    """

    def __init__(
        self,
        hostname: str = "localhost",
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        local_hostname: str | None = None,
        timeout: float | None = 60.0,
        use_tls: bool = False,
        start_tls: bool | None = None,
    ) -> None:
        _no_tls(use_tls, start_tls)
        if (username is None) != (password is None):
            raise ValueError("give both a username and a password")
        self.hostname = hostname
        self.port = 25 if port is None else port
        self.username = username
        self.password = password
        self.local_hostname = local_hostname
        self.timeout = timeout
        self._session: _native.ClientSession | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_connected(self) -> bool:
        return self._writer is not None

    async def __aenter__(self) -> SMTP:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._writer is None:
            return
        if exc_info[0] is None:
            try:
                await self.quit()
            except Exception:
                pass
        self.close()

    def close(self) -> None:
        """Closes the connection at once (no QUIT)."""
        writer, self._writer = self._writer, None
        self._reader = None
        self._session = None
        if writer is not None:
            writer.close()

    async def _guarded(self, operation: Awaitable[_T]) -> _T:
        """Runs one call under the timeout; any failure or cancellation closes the
        connection, since the session is then in an unknown state."""
        try:
            return await asyncio.wait_for(operation, self.timeout)
        except asyncio.TimeoutError:
            self.close()
            raise SmtpTimeoutError(f"timed out after {self.timeout} s") from None
        except SmtpError:
            # A refusal that leaves the session usable (a fatal one closed it already).
            if self._session is None or not self._session.is_ready:
                self.close()
            raise
        except BaseException:
            self.close()
            raise

    async def connect(self) -> None:
        """Connects, then greets (and logs in, when given credentials)."""
        if self._writer is not None:
            raise ValueError("already connected")
        await self._guarded(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._session = _native.ClientSession(
            self.local_hostname or _default_local_hostname(),
            now=loop.time(),
            username=self.username,
            password=self.password,
        )
        self._reader, self._writer = await asyncio.open_connection(self.hostname, self.port)
        await self._until("ready")

    def _live(self) -> tuple[_native.ClientSession, asyncio.StreamReader, asyncio.StreamWriter]:
        if self._session is None or self._reader is None or self._writer is None:
            raise SmtpDisconnected("not connected")
        return self._session, self._reader, self._writer

    async def _until(self, *kinds: str) -> _native.Event:
        """Writes, reads and feeds the session until one of ``kinds`` comes."""
        session, reader, writer = self._live()
        loop = asyncio.get_running_loop()
        while True:
            out = session.output()
            if out:
                writer.write(out)
                await writer.drain()
            event = session.next_event()
            if event is not None:
                if event.kind in kinds:
                    return event
                if event.kind == "error":
                    if event.fatal:
                        self.close()
                    assert event.exception is not None
                    raise event.exception
                if event.kind == "closed":
                    self.close()
                    raise SmtpDisconnected("the server closed the session")
                continue
            deadline = session.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await asyncio.wait_for(reader.read(_READ), wait)
            except asyncio.TimeoutError:
                session.handle_timeout(loop.time())
                continue
            if data:
                session.receive(data, loop.time())
            else:
                session.receive_eof()

    async def _simple(self, call: Callable[[], None]) -> tuple[int, bytes]:
        async def run() -> tuple[int, bytes]:
            call()
            event = await self._until("reply")
            assert event.reply is not None
            return (event.reply[0], event.reply[3])

        return await self._guarded(run())

    async def noop(self) -> tuple[int, bytes]:
        """NOOP; returns ``(code, message)`` as smtplib does."""
        return await self._simple(self._live()[0].noop)

    async def rset(self) -> tuple[int, bytes]:
        return await self._simple(self._live()[0].rset)

    async def vrfy(self, address: str) -> tuple[int, bytes]:
        session = self._live()[0]
        return await self._simple(lambda: session.vrfy(address))

    async def quit(self) -> None:
        """QUIT, then close the connection."""
        session = self._live()[0]

        async def run() -> None:
            session.quit()
            await self._until("closed")

        try:
            await self._guarded(run())
        except SmtpDisconnected:
            pass
        finally:
            self.close()

    async def sendmail(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: str | bytes | bytearray,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Sends one message; like :meth:`smtpx.SMTP.sendmail` returns the refused
        recipients as ``{address: (code, message)}`` and raises :class:`SmtpSenderRefused`,
        :class:`SmtpRecipientsRefused` (all refused) or :class:`SmtpDataError`."""
        to_list = [recipients] if isinstance(recipients, str) else list(recipients)
        body = bytes(_message_bytes(message))
        session = self._live()[0]

        async def run() -> _native.Event:
            session.send_mail(
                _address(sender),
                [_address(a) for a in to_list],
                len(body),
                list(mail_options),
                list(rcpt_options),
            )
            event = await self._until("send_body", "transaction_complete")
            if event.kind == "send_body":
                session.send_body(body)
                session.finish_body()
                event = await self._until("transaction_complete")
            return event

        done = await self._guarded(run())
        assert done.result is not None
        return _refused_or_raise(_send_result(done.result), sender, to_list)

    async def send_message(
        self,
        message: email.message.Message,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Sends an :class:`email.message.Message`, the envelope taken from its headers
        (Bcc removed) unless given."""
        from_addr, to_addrs = _envelope_of(message, sender, recipients)
        return await self.sendmail(from_addr, to_addrs, _flatten(message), mail_options, rcpt_options)


async def send(
    message: email.message.Message | str | bytes,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    hostname: str = "localhost",
    port: int | None = None,
    username: str | None = None,
    password: str | None = None,
    local_hostname: str | None = None,
    timeout: float | None = 60.0,
    use_tls: bool = False,
    start_tls: bool | None = None,
    mail_options: Sequence[str] | None = None,
    rcpt_options: Sequence[str] | None = None,
) -> dict[str, tuple[int, bytes]]:
    """Connects, sends one message and quits (aiosmtplib's ``send``). Returns the refused
    recipients. ``sender`` and ``recipients`` are needed unless ``message`` is a Message."""
    client = SMTP(
        hostname,
        port,
        username=username,
        password=password,
        local_hostname=local_hostname,
        timeout=timeout,
        use_tls=use_tls,
        start_tls=start_tls,
    )
    async with client:
        if isinstance(message, email.message.Message):
            return await client.send_message(
                message, sender, recipients, mail_options or (), rcpt_options or ()
            )
        if sender is None or recipients is None:
            raise ValueError("sender and recipients are needed unless message is a Message")
        return await client.sendmail(
            sender, recipients, message, mail_options or (), rcpt_options or ()
        )


# The server ----------------------------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


_MISSING: Any = object()


class _Connection:
    """One client connection: runs the handler's hooks for the session's events. Every
    answer is None (accept) or a status line."""

    def __init__(self, server: Server, peer: tuple[str, int]) -> None:
        self.server = server
        self.handler = server.handler
        self.session = Session(peer=peer, loop=asyncio.get_running_loop())
        self.envelope = Envelope()

    async def _hook(self, name: str, *args: Any) -> Any:
        method = getattr(self.handler, name, None)
        if method is None:
            return _MISSING
        return await _maybe_await(method(self.server, self.session, self.envelope, *args))

    async def answer(self, event: _native.Event, content: bytes) -> str | None:
        try:
            status = await self._answer(event, content)
        except Exception:
            log.exception("smtpx.aio server: the handler failed on %s (peer %s)", event.kind, self.session.peer)
            return _LOCAL_ERROR
        if status is not None and not isinstance(status, str):
            log.error("smtpx.aio server: the handler returned %r, not a status string", status)
            return _LOCAL_ERROR
        return status

    async def _answer(self, event: _native.Event, content: bytes) -> Any:
        kind = event.kind
        if kind == "hello":
            self.envelope = Envelope()
            self.session.host_name = event.domain
            self.session.extended_smtp = event.verb != "HELO"
            if event.verb == "HELO":
                status = await self._hook("handle_HELO", event.domain)
            else:
                status = await self._hook("handle_EHLO", event.domain, [])
            if isinstance(status, list):
                bad = [line for line in status if not str(line).startswith("250")]
                return str(bad[0]) if bad else None
            if isinstance(status, str) and status.startswith("250"):
                return None  # the engine's own 250 lists the extensions
            return None if status is _MISSING else status
        if kind == "auth":
            authenticator = self.server.authenticator
            if authenticator is None:
                return "535 5.7.8 Authentication credentials invalid"
            data = LoginPassword((event.username or "").encode(), (event.password or "").encode())
            result = await _maybe_await(
                authenticator(self.server, self.session, self.envelope, event.mechanism, data)
            )
            if not (result.success if isinstance(result, AuthResult) else bool(result)):
                return getattr(result, "message", None) or "535 5.7.8 Authentication credentials invalid"
            self.session.authenticated = True
            auth_data = getattr(result, "auth_data", None)
            self.session.auth_data = auth_data if auth_data is not None else data
            return None
        if kind == "mail":
            self.envelope = Envelope()
            status = await self._hook("handle_MAIL", event.sender, event.options)
            if status is _MISSING:
                self.envelope.mail_from = event.sender
                self.envelope.mail_options.extend(event.options)
                self.envelope.smtp_utf8 = "SMTPUTF8" in (o.upper() for o in event.options)
                return None
            return status
        if kind == "rcpt":
            status = await self._hook("handle_RCPT", event.recipient, event.options)
            if status is _MISSING:
                assert event.recipient is not None
                self.envelope.rcpt_tos.append(event.recipient)
                self.envelope.rcpt_options.extend(event.options)
                return None
            return status
        if kind == "message_end":
            self.envelope.content = content
            self.envelope.original_content = content
            try:
                status = await self._hook("handle_DATA")
            finally:
                self.envelope = Envelope()
            return None if status is _MISSING else status
        if kind == "verify":
            status = await self._hook("handle_VRFY", event.argument)
            return None if status is _MISSING else status
        return None  # connect, message_start, expand: the engine's standard answer

    async def reset(self) -> None:
        self.envelope = Envelope()
        await self._hook("handle_RSET")


class Server:
    """An asyncio SMTP server (plain text only) running an aiosmtpd-style ``handler``.

    Hooks get ``(server, session, envelope, ...)`` as aiosmtpd's do, ``server`` being
    this object (``hostname`` is the name the server greets with). ``authenticator``,
    when given, enables AUTH PLAIN/LOGIN (``auth_require_tls`` defaults to False here,
    since this server has no TLS).
    """

    def __init__(
        self,
        handler: Any,
        hostname: str = "127.0.0.1",
        port: int = 8025,
        *,
        server_hostname: str | None = None,
        data_size_limit: int = 33554432,
        timeout: float = 300.0,
        authenticator: Callable[..., Any] | None = None,
        auth_required: bool = False,
        auth_require_tls: bool = False,
        use_tls: bool = False,
        start_tls: bool | None = None,
    ) -> None:
        _no_tls(use_tls or auth_require_tls, start_tls)
        self.handler = handler
        self.host = hostname
        self.port = port
        self.hostname = server_hostname or _default_local_hostname()
        self.data_size_limit = data_size_limit
        self.timeout = timeout
        self.authenticator = authenticator
        self.auth_required = auth_required
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` listened on (the real port when ``port`` was 0)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return (str(host), int(port))

    def active_connections(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def stop(self) -> None:
        """Stops listening and closes every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._run(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("smtpx.aio server: connection failed")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername") or ("", 0)
        conn = _Connection(self, (str(peer[0]), int(peer[1])))
        session = _native.ServerSession(
            self.hostname,
            now=loop.time(),
            max_message_size=self.data_size_limit,
            auth=self.authenticator is not None,
            allow_insecure_auth=True,
            require_auth=self.auth_required,
            timeout=self.timeout,
        )
        content = bytearray()
        pending = b""
        eof = False
        while True:
            if pending:
                taken = session.receive(pending, loop.time())
                pending = pending[taken:]
            while (event := session.next_event()) is not None:
                if event.kind == "message_data":
                    content += event.data or b""
                elif event.kind == "message_aborted":
                    content.clear()
                elif event.kind == "reset":
                    await conn.reset()
                elif event.needs_decision:
                    status = await conn.answer(event, bytes(content))
                    if event.kind == "message_end":
                        content.clear()
                    if status is None:
                        session.accept()
                    else:
                        try:
                            session.reply_line(status)
                        except ValueError:
                            log.error("smtpx.aio server: invalid status line %r", status)
                            session.reply_line(_LOCAL_ERROR)
            out = session.output()
            if out:
                writer.write(out)
                await writer.drain()
            if session.is_closed:
                return
            if pending:
                continue
            if eof:
                return  # nothing more will come, and the session did not close itself
            deadline = session.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await asyncio.wait_for(reader.read(_READ), wait)
            except asyncio.TimeoutError:
                session.handle_timeout(loop.time())
                continue
            if data:
                pending = data
            else:
                eof = True
                session.receive_eof()
