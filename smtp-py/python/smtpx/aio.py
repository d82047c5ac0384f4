"""asyncio drivers: the engine's sans-IO sessions on asyncio (the client on streams, the
server on a buffered protocol, one callback per read: see _ServerProtocol).

- :class:`SMTP`, :class:`LMTP` and :func:`send`: a client with aiosmtplib's parameter
  names::

      async with smtpx.aio.SMTP(hostname="mx.example", port=25, timeout=30) as client:
          await client.sendmail("a@example.com", ["b@example.com"], message_bytes)

- :class:`Server`: an asyncio server running an aiosmtpd-style handler (coroutine or
  plain ``handle_EHLO``, ``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``, ...), with the
  same :class:`~smtpx.Envelope` and :class:`~smtpx.Session` as :class:`~smtpx.Controller`::

      async with smtpx.aio.Server(handler, hostname="127.0.0.1", port=8025) as server:
          ...

TLS is rustls (:class:`smtpx._native.TlsSession`), configured by the same code as the
blocking client and server and the C API, not Python's :mod:`ssl`. The client's
``use_tls`` is implicit TLS (port 465); otherwise ``start_tls`` None upgrades with
STARTTLS when the server offers it, True requires it (the connection fails before any
MAIL or AUTH when the server does not offer it), False never upgrades. Certificates are
checked against Mozilla's roots unless ``cert_bundle`` (a PEM file) or ``tls_context``
(its CA certificates) name others; ``validate_certs=False`` accepts any (tests only). The
server offers STARTTLS when given ``tls_context=(certfile, keyfile)``.

Every protocol decision is the Rust engine's (:class:`smtpx._native.ClientSession`,
:class:`smtpx._native.ServerSession`), including throwing away whatever was pipelined
after STARTTLS; this module only moves bytes and times.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import email.message
import inspect
import logging
import os
import ssl
import sys
import types
from typing import Any, Awaitable, Callable, Coroutine, Generator, Iterable, Sequence, TypeVar

from smtpx import _native
from smtpx.common import (
    LMTP_PORT,
    SMTP_PORT,
    SMTP_SSL_PORT,
    BatchMessage,
    SendResult,
    bare_address,
    batch_item,
    default_local_hostname,
    envelope_of,
    flatten,
    message_bytes,
    refused_or_raise,
    send_result,
    tls_arguments,
)
from smtpx.errors import (
    SmtpDisconnected,
    SmtpError,
    SmtpNotSupportedError,
    SmtpTimeoutError,
    SmtpTlsError,
)
from smtpx.server import AuthResult, Envelope, LoginPassword, Session, _auth_failure_reply, _auth_succeeded, _data_answer

__all__ = ["LMTP", "SMTP", "Server", "send"]

log = logging.getLogger("smtpx.aio")

_T = TypeVar("_T")
_READ = 64 * 1024
_LOCAL_ERROR = "451 4.3.0 Error: handler failed"

_default_tls: _native.TlsConfig | None = None


# perf: the client's read deadline and the timeout of each of its calls were an
# asyncio.wait_for. Before Python 3.12 wait_for wraps the awaitable in a new Task each time
# (a Task, its first step, a done callback and more turns of the event loop per read);
# asyncio.timeout (3.11+) only arms a timer on the current task. Same semantics: the
# awaitable is cancelled when the time is up and TimeoutError (asyncio.TimeoutError is
# TimeoutError since 3.11) is raised. See bench/README.md for the measured difference.
if sys.version_info >= (3, 11):

    async def _within(operation: Awaitable[_T], seconds: float | None) -> _T:
        async with asyncio.timeout(seconds):
            return await operation

else:  # pragma: no cover - Python 3.10

    async def _within(operation: Awaitable[_T], seconds: float | None) -> _T:
        return await asyncio.wait_for(operation, seconds)


def _small_reads(writer: asyncio.StreamWriter) -> None:
    """perf (the client; the server reads with recv_into): CPython's selector transports
    read with ``sock.recv(max_size)``, max_size 256 KiB: a new bytes object of that size
    per read, which glibc's malloc serves with mmap (it is above the default 128 KiB mmap
    threshold), then shrinks with mremap and frees with munmap: three system calls and
    fresh page faults for every SMTP reply. With reads of at most _READ (64 KiB) the
    buffer comes from the heap and is shrunk in place.
    ``max_size`` exists only on CPython's selector transports (not uvloop's, not the
    proactor's), hence the check."""
    transport = writer.transport
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = _READ  # type: ignore[attr-defined]


def _default_tls_config() -> _native.TlsConfig:
    """The client configuration with Mozilla's roots and full checks, built once (it
    also keeps session tickets for resumption across connections)."""
    global _default_tls
    if _default_tls is None:
        _default_tls = _native.TlsConfig.client()
    return _default_tls


def _client_tls_config(
    validate_certs: bool, cert_bundle: str | os.PathLike[str] | None, tls_context: ssl.SSLContext | None
) -> _native.TlsConfig:
    if tls_context is not None:
        # As the blocking client reads a context: its verification setting and CAs.
        found = tls_arguments(tls_context, None if cert_bundle is None else os.fspath(cert_bundle))
        return _native.TlsConfig.client(
            ca_pem=found["ca_pem"],
            dangerous_accept_invalid_certs=found["insecure"] or not validate_certs,
        )
    if cert_bundle is None and validate_certs:
        return _default_tls_config()
    return _native.TlsConfig.client(
        ca_file=None if cert_bundle is None else os.fspath(cert_bundle),
        dangerous_accept_invalid_certs=not validate_certs,
    )


async def _handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: _native.TlsSession
) -> bytes:
    """Runs a TLS handshake on the connection; returns the plaintext that arrived with
    its last records (the peer may talk right after its Finished)."""
    plain = b""
    while True:
        out = tls.output()
        if out:
            writer.write(out)
            await writer.drain()
        if not tls.is_handshaking:
            return plain
        data = await reader.read(_READ)
        if not data:
            raise SmtpDisconnected("the connection closed during the TLS handshake")
        try:
            plain += tls.receive(data)
        except SmtpTlsError:
            writer.write(tls.output())  # the alert, so that the peer learns why
            raise


class SMTP:
    """An asyncio SMTP client connection (see the module docstring for TLS).

    ``timeout`` (seconds, None for none) bounds connecting and every call. When a call
    times out or is cancelled, the connection is closed: the session cannot go on.
    ``port`` defaults to 465 with ``use_tls``, else 25 (2003 for :class:`LMTP`).
    """

    default_port = SMTP_PORT
    _lmtp = False

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
        validate_certs: bool = True,
        cert_bundle: str | os.PathLike[str] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both a username and a password")
        if use_tls and start_tls:
            raise ValueError("use_tls and start_tls are exclusive")
        self.hostname = hostname
        self.port = port if port is not None else (SMTP_SSL_PORT if use_tls else self.default_port)
        self.username = username
        self.password = password
        self.local_hostname = local_hostname
        self.timeout = timeout
        self.use_tls = use_tls
        self.start_tls = start_tls
        self._tls_options = (validate_certs, cert_bundle, tls_context)
        # Built now so that a bad cert_bundle fails here, not in the middle of a session.
        self._tls_config = (
            _client_tls_config(validate_certs, cert_bundle, tls_context)
            if use_tls or start_tls is not False
            else None
        )
        self._session: _native.ClientSession | None = None
        self._tls: _native.TlsSession | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_connected(self) -> bool:
        return self._writer is not None

    @property
    def is_tls(self) -> bool:
        """True while the connection is encrypted (implicit TLS, or after STARTTLS)."""
        return self._tls is not None and self._writer is not None

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
        tls, self._tls = self._tls, None
        self._reader = None
        self._session = None
        if writer is not None:
            if tls is not None and not tls.is_handshaking:
                tls.close()
                writer.write(tls.output())  # close_notify; close() flushes it
            writer.close()

    async def _guarded(self, operation: Awaitable[_T]) -> _T:
        """Runs one call under the timeout; any failure or cancellation closes the
        connection, since the session is then in an unknown state."""
        try:
            return await _within(operation, self.timeout)
        except asyncio.TimeoutError:
            self.close()
            raise SmtpTimeoutError(f"timed out after {self.timeout} s") from None
        except SmtpTlsError:
            self.close()  # the TLS layer is broken: nothing more can be said on it
            raise
        except (SmtpError, ValueError):
            # ValueError: an argument refused before anything was written (CR or LF in
            # an address, say). SmtpError: a refusal.
            # Either leaves the session usable (a fatal error closed it already).
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
        try:
            await self._guarded(self._connect())
        except BaseException:
            self.close()  # a session that did not open (say, AUTH not offered) is no use
            raise

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        if self.use_tls:
            policy = "never"
        elif self.start_tls is None:
            policy = "opportunistic"
        else:
            policy = "required" if self.start_tls else "never"
        self._session = _native.ClientSession(
            self.local_hostname or default_local_hostname(),
            now=loop.time(),
            lmtp=self._lmtp,
            username=self.username,
            password=self.password,
            starttls=policy,
            tls_active=self.use_tls,
        )
        self._reader, self._writer = await asyncio.open_connection(self.hostname, self.port)
        _small_reads(self._writer)
        if self.use_tls:
            await self._start_tls()
        await self._until("ready")

    async def _start_tls(self) -> None:
        """The TLS handshake (implicit TLS, or after the 220 to STARTTLS)."""
        session, reader, writer = self._live()
        if self._tls_config is None:  # start_tls=False, then starttls()
            self._tls_config = _client_tls_config(*self._tls_options)
        tls = _native.TlsSession(self._tls_config, self.hostname)
        self._tls = tls
        plain = await _handshake(reader, writer, tls)
        loop = asyncio.get_running_loop()
        session.tls_established(loop.time())  # (nothing to do under implicit TLS)
        if plain:
            session.receive(plain, loop.time())

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
                tls = self._tls
                if tls is not None:
                    tls.write(out)
                    out = tls.output()
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
                if event.kind == "starttls":
                    await self._start_tls()
                continue
            deadline = session.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await _within(reader.read(_READ), wait)
            except asyncio.TimeoutError:
                session.handle_timeout(loop.time())
                continue
            if not data:
                session.receive_eof()
            elif self._tls is None:
                session.receive(data, loop.time())
            else:
                tls = self._tls
                try:
                    plain = tls.receive(data)
                finally:
                    out = tls.output()  # a key update's answer, or an alert
                    if out:
                        writer.write(out)
                session.receive(plain, loop.time())
                if tls.peer_closed:
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

    async def login(self, username: str, password: str) -> tuple[int, bytes]:
        """Authenticates now with PLAIN or LOGIN (whichever the server offers) and returns
        the server's ``(235, message)``; a refusal raises :class:`SmtpAuthError` and leaves
        the connection usable (for a client made without ``username``/``password``)."""
        session = self._live()[0]

        async def run() -> tuple[int, bytes]:
            session.login(username, password)
            event = await self._until("authenticated")
            assert event.reply is not None
            return (event.reply[0], event.reply[3])

        return await self._guarded(run())

    async def starttls(self) -> tuple[int, bytes]:
        """Upgrades with STARTTLS now and greets again (logging in then, when given
        credentials), for a client made with ``start_tls=False``; as the blocking
        :meth:`smtpx.SMTP.starttls` returns ``(220, b"TLS established")``. A refusal raises
        :class:`SmtpReplyError` and leaves the connection as it was."""
        session = self._live()[0]
        if session.is_tls:
            raise SmtpNotSupportedError("the connection is already encrypted")

        async def run() -> None:
            session.starttls()
            await self._until("ready")

        await self._guarded(run())
        return (220, b"TLS established")

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
        body = bytes(message_bytes(message))
        session = self._live()[0]

        async def run() -> _native.Event:
            session.send_mail(
                bare_address(sender),
                [bare_address(a) for a in to_list],
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
        return refused_or_raise(send_result(done.result), sender, to_list)

    async def send(
        self,
        message: email.message.Message | str | bytes | bytearray,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> SendResult:
        """Sends one message and returns the outcome for every recipient, as
        :meth:`smtpx.SMTP.send`: refusals are in the result, not exceptions. ``sender``
        and ``recipients`` are needed unless ``message`` is a Message."""
        body: str | bytes | bytearray
        if isinstance(message, email.message.Message):
            sender, recipients = envelope_of(message, sender, recipients)
            body = flatten(message)
        elif sender is None or recipients is None:
            raise ValueError("sender and recipients are needed unless message is a Message")
        else:
            body = message
        [outcome] = await self.send_batch(
            [(sender, recipients, body)], mail_options=mail_options, rcpt_options=rcpt_options
        )
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def send_batch(
        self,
        messages: Iterable[BatchMessage],
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> list[SendResult | SmtpError]:
        """Sends many messages over this connection, one transaction each, and returns an
        outcome per message, in order, as :meth:`smtpx.SMTP.send_batch`: a
        :class:`~smtpx.SendResult`, or the :class:`SmtpError` that message failed with.
        When the server pipelines, each next message goes out right behind the previous
        one's end (one round trip per message). Every envelope is checked first
        (``ValueError``, nothing sent). An error that closes the connection ends the list
        early, its last entry being that error. ``timeout`` bounds each wait, not the
        whole batch."""
        items = [batch_item(m) for m in messages]
        session = self._live()[0]
        options = (list(mail_options), list(rcpt_options))
        for sender, to, _ in items:
            _native.check_envelope(sender, to, *options)
        outcomes: list[SendResult | SmtpError] = []
        queue = collections.deque(items)
        in_flight: collections.deque[bytes] = collections.deque()

        def start_next() -> None:
            # One message at a time: when the session is ready, or chained behind the
            # message just written. A message refused for itself (too large) gets its
            # error in place once every message before it has its outcome.
            while queue and session.can_send_mail:
                sender, to, body = queue[0]
                try:
                    session.send_mail(sender, to, len(body), *options)
                except SmtpError as error:
                    if in_flight:
                        return
                    queue.popleft()
                    outcomes.append(error)
                    continue
                queue.popleft()
                in_flight.append(body)
                return

        async def step() -> None:
            event = await self._until("send_body", "transaction_complete")
            if event.kind == "send_body":
                session.send_body(in_flight[0])
                session.finish_body()
                start_next()  # leaves with the final dot, in the same write
            else:
                assert event.result is not None
                in_flight.popleft()
                outcomes.append(send_result(event.result))

        start_next()
        while in_flight or queue:
            if not in_flight:
                if not session.can_send_mail:
                    outcomes.append(SmtpDisconnected("the session cannot start a message"))
                    break
                start_next()
                continue
            try:
                await self._guarded(step())
            except SmtpError as error:
                # Only errors that end the session come here (refusals are results), so
                # the oldest message without an outcome gets it, and the batch ends.
                self.close()
                outcomes.append(error)
                break
        return outcomes

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
        from_addr, to_addrs = envelope_of(message, sender, recipients)
        return await self.sendmail(from_addr, to_addrs, flatten(message), mail_options, rcpt_options)


class LMTP(SMTP):
    """An asyncio LMTP client (RFC 2033, port 2003), as :class:`smtpx.LMTP`: LHLO, and a
    delivery reply per recipient after the message, which ``sendmail`` reports like a
    refused RCPT."""

    default_port = LMTP_PORT
    _lmtp = True


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
    validate_certs: bool = True,
    cert_bundle: str | os.PathLike[str] | None = None,
    tls_context: ssl.SSLContext | None = None,
    lmtp: bool = False,
    mail_options: Sequence[str] | None = None,
    rcpt_options: Sequence[str] | None = None,
) -> dict[str, tuple[int, bytes]]:
    """Connects, sends one message and quits (aiosmtplib's ``send``). Returns the refused
    recipients. ``sender`` and ``recipients`` are needed unless ``message`` is a Message."""
    client = (LMTP if lmtp else SMTP)(
        hostname,
        port,
        username=username,
        password=password,
        local_hostname=local_hostname,
        timeout=timeout,
        use_tls=use_tls,
        start_tls=start_tls,
        validate_certs=validate_certs,
        cert_bundle=cert_bundle,
        tls_context=tls_context,
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
_HOOKED: Any = object()  # answer_now: the handler's code must run (answer())
_NO_HOOK = frozenset({"connect", "message_start", "expand"})  # the engine's standard answer


class _Connection:
    """One client connection: runs the handler's hooks for the session's events. Every
    answer is None (accept), a status line, or (LMTP, after the message) a list of them,
    one per accepted recipient."""

    def __init__(self, server: Server, peer: tuple[str, int], tls: bool) -> None:
        self.server = server
        self.handler = server.handler
        self.session = Session(peer=peer, ssl={} if tls else None, loop=asyncio.get_running_loop())
        self.envelope = Envelope()

    async def _hook(self, name: str, *args: Any) -> Any:
        method = getattr(self.handler, name, None)
        if method is None:
            return _MISSING
        return await _maybe_await(method(self.server, self.session, self.envelope, *args))

    def answer_now(self, event: _native.Event) -> Any:
        """perf: the answer to ``event`` when none of the handler's code runs for it (MAIL
        or RCPT without their hook, and the events no hook sees), given at once without a
        coroutine; _HOOKED when :meth:`answer` must run. The same answers as answer()."""
        kind = event.kind
        if kind == "mail":
            if getattr(self.handler, "handle_MAIL", None) is not None:
                return _HOOKED
            self.envelope = Envelope()
            self._take_sender(event)
            return None
        if kind == "rcpt":
            if getattr(self.handler, "handle_RCPT", None) is not None:
                return _HOOKED
            self._take_recipient(event)
            return None
        return None if kind in _NO_HOOK else _HOOKED

    def _take_sender(self, event: _native.Event) -> None:
        """MAIL without a handle_MAIL hook: the envelope takes the sender, as aiosmtpd's."""
        self.envelope.mail_from = event.sender
        self.envelope.mail_options.extend(event.options)
        self.envelope.smtp_utf8 = "SMTPUTF8" in (o.upper() for o in event.options)

    def _take_recipient(self, event: _native.Event) -> None:
        """RCPT without a handle_RCPT hook: the envelope takes the recipient."""
        assert event.recipient is not None
        self.envelope.rcpt_tos.append(event.recipient)
        self.envelope.rcpt_options.extend(event.options)

    async def answer(self, event: _native.Event, content: bytes) -> str | list[str] | None:
        try:
            status = await self._answer(event, content)
        except Exception:
            log.exception("smtpx.aio server: the handler failed on %s (peer %s)", event.kind, self.session.peer)
            return _LOCAL_ERROR
        if status is not None and not isinstance(status, str):
            if not (isinstance(status, list) and event.kind == "message_end"):
                log.error("smtpx.aio server: the handler returned %r, not a status string", status)
                return _LOCAL_ERROR
        return status  # type: ignore[no-any-return]

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
            if not _auth_succeeded(result):
                log.info("authentication refused for %r (authenticator returned %r)", data.login, result)
                return _auth_failure_reply(result)
            self.session.authenticated = True
            auth_data = getattr(result, "auth_data", None)
            self.session.auth_data = auth_data if auth_data is not None else data
            return None
        if kind == "mail":
            self.envelope = Envelope()
            status = await self._hook("handle_MAIL", event.sender, event.options)
            if status is _MISSING:
                self._take_sender(event)
                return None
            return status
        if kind == "rcpt":
            status = await self._hook("handle_RCPT", event.recipient, event.options)
            if status is _MISSING:
                self._take_recipient(event)
                return None
            return status
        if kind == "message_end":
            self.envelope.content = content
            self.envelope.original_content = content
            try:
                status = await self._hook("handle_DATA")
            finally:
                self.envelope = Envelope()
            return None if status is _MISSING else _data_answer(status, self.server.lmtp)
        if kind == "verify":
            status = await self._hook("handle_VRFY", event.argument)
            return None if status is _MISSING else status
        return None  # _NO_HOOK (connect, message_start, expand): the engine's standard answer

    async def reset(self) -> None:
        self.envelope = Envelope()
        await self._hook("handle_RSET")

    def tls_started(self) -> None:
        """As the blocking Controller's: the session starts over, encrypted."""
        self.session.ssl = {}
        self.session.host_name = None
        self.envelope = Envelope()


class Server:
    """An asyncio SMTP (or LMTP) server running an aiosmtpd-style ``handler``.

    Hooks get ``(server, session, envelope, ...)`` as aiosmtpd's do, ``server`` being
    this object (``hostname`` is the name the server greets with). The options are the
    blocking :class:`~smtpx.Controller`'s:

    - ``tls_context=(certfile, keyfile)`` (PEM) offers STARTTLS; ``require_starttls``
      refuses MAIL and AUTH until it; ``implicit_tls`` makes the listener speak TLS from
      the first byte instead (port 465 style).
    - ``authenticator(server, session, envelope, mechanism, auth_data)`` enables AUTH
      PLAIN and LOGIN, offered only over TLS unless ``auth_require_tls=False`` (the
      default is True when ``tls_context`` is given, as aiosmtpd's, else False).
    - ``lmtp`` speaks LMTP: ``handle_DATA`` may answer per accepted recipient, with one
      status line each joined by CRLF (as aiosmtpd's LMTP pushes them) or as a list.
    - ``max_connections``: beyond it a client gets ``421 4.7.0`` and is disconnected.
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
        auth_require_tls: bool | None = None,
        tls_context: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        lmtp: bool = False,
        max_connections: int = 10000,
    ) -> None:
        if isinstance(tls_context, ssl.SSLContext):
            raise TypeError(
                "tls_context must be a (certfile, keyfile) pair: smtpx's TLS is rustls, "
                "which cannot read an ssl.SSLContext"
            )
        if tls_context is None and (require_starttls or implicit_tls):
            raise ValueError("require_starttls and implicit_tls need a tls_context")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.handler = handler
        self.host = hostname
        self.port = port
        self.hostname = server_hostname or default_local_hostname()
        self.data_size_limit = data_size_limit
        self.timeout = timeout
        self.authenticator = authenticator
        self.auth_required = auth_required
        self.auth_require_tls = tls_context is not None if auth_require_tls is None else auth_require_tls
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.implicit_tls = implicit_tls
        self.lmtp = lmtp
        self.max_connections = max_connections
        self._tls_config: _native.TlsConfig | None = None
        self._options: dict[str, Any] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerProtocol] = set()
        # perf: one read buffer for all connections (recv_into, no allocation per read).
        # Safe because the event loop reads one socket at a time and buffer_updated copies
        # out what it got before the next read.
        self._read_buffer = bytearray(_READ)

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` listened on (the real port when ``port`` was 0)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return (str(host), int(port))

    def active_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Reads the certificate (when given) and starts listening."""
        if self._server is not None:
            raise RuntimeError("already started")
        if self.tls_context is not None:
            cert, key = (os.fspath(p) for p in self.tls_context)
            self._tls_config = _native.TlsConfig.server_from_files(cert, key)
        # The same engine settings as the blocking Controller's (smtp-py/src/server.rs).
        self._options = dict(
            max_message_size=self.data_size_limit,
            lmtp=self.lmtp,
            auth=self.authenticator is not None,
            allow_insecure_auth=not self.auth_require_tls,
            require_auth=self.auth_required,
            timeout=self.timeout,
            starttls=self.tls_context is not None and not self.implicit_tls,
            tls_active=self.implicit_tls,
            require_tls=self.require_starttls,
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerProtocol(self), self.host, self.port)

    async def stop(self) -> None:
        """Stops listening and closes every connection: a hook still running is cancelled
        (it sees CancelledError at its await); what is already written is sent first, for
        up to 5 seconds, then the connection is cut."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.close()
        waits = [w for connection in connections for w in (connection.closed, connection.hooks.task)]
        if waits:
            _, left = await asyncio.wait(waits, timeout=5)
            if left:
                for connection in connections:
                    connection.abort()
                await asyncio.wait(left, timeout=1)
        await server.wait_closed()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Over the connection limit: the engine's 421 as the greeting, then close (as
        the blocking server, without TLS even on an implicit-TLS listener: no handshake
        is spent on a client that cannot be served)."""
        session = _native.ServerSession(self.hostname, **self._options)
        while (event := session.next_event()) is not None:
            if event.kind == "connect":
                session.reply_line(
                    f"421 4.7.0 {self.hostname} Error: too many connections, try again later"
                )
        transport.write(session.output())
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
def _resume(hook: Coroutine[Any, Any, _T], yielded: Any) -> Generator[Any, Any, _T]:
    """Awaits the rest of a coroutine whose first step already ran and yielded ``yielded``
    (the future it waits on): ``yield from hook`` with the first step done, so the awaiting
    task drives the hook as if it had run it from the start (wake-ups, cancellation)."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            hook.close()
            raise
        except BaseException as error:
            try:
                yielded = hook.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = hook.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


class _Hooks:
    """Runs one connection's hooks (coroutines of :class:`_Connection`) as if in a task of
    their own, the connection's, as the streams version of this server did, without its
    cost per command.

    perf: a hook that finishes without suspending (the common case) runs in place, in the
    transport's callback, by ``coroutine.send``; no Task, Future or turn of the event loop.
    For its code the connection's task is the current task and its context the current
    context, so that ``asyncio.timeout``, ``asyncio.current_task`` and context variables
    work as in a task. A hook that suspends is handed to that task, which finishes it
    (while the connection reads nothing), then calls ``finished`` with its answer.
    Cancelling the task (Server.stop) cancels a pending hook at its await.
    """

    def __init__(self, finished: Callable[[Any], None], failed: Callable[[BaseException], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.finished = finished
        self.failed = failed
        self.pending = False
        self.closing = False
        self.context = contextvars.copy_context()
        self._work: asyncio.Future[tuple[Coroutine[Any, Any, Any], Any]] = self.loop.create_future()
        if sys.version_info >= (3, 11):
            self.task = self.loop.create_task(self._drive(), context=self.context)
        else:  # pragma: no cover - Python 3.10: no context argument; in-place steps use self.context
            self.task = self.loop.create_task(self._drive())

    def run(self, hook: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
        """Runs ``hook`` up to its first suspension: ``(True, its value)`` when it finished
        (an exception it raised propagates), else ``(False, None)`` and ``finished`` will
        get the value."""
        loop, task = self.loop, self.task
        current = asyncio.current_task(loop)
        try:
            if current is None:  # a transport's callback, the usual case: enter the task
                _enter_task(loop, task)
                try:
                    yielded = self.context.run(hook.send, None)
                finally:
                    _leave_task(loop, task)
            elif current is task:  # continuing after a suspended hook, in the task
                yielded = hook.send(None)
            else:  # called from another task (not by asyncio), which stays the current one
                yielded = self.context.run(hook.send, None)
        except StopIteration as done:
            return True, done.value
        self.pending = True
        self._work.set_result((hook, yielded))
        return False, None

    async def _drive(self) -> None:
        while True:
            hook, yielded = await self._work
            self._work = self.loop.create_future()
            try:
                value = await _resume(hook, yielded)
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

    A task per connection on asyncio streams cost, per SMTP command, a Future and a Task
    wake-up for the read, a timer armed and cancelled for its deadline, and a drain();
    that machinery was over half of the server's CPU per message (bench/README.md). Here
    buffer_updated decrypts (under TLS), feeds the session, runs the handler's hooks
    (_Hooks) and writes the replies in the same callback. The read deadline is one timer
    per connection, re-armed when it fires. Every decision is the engine's; _Connection
    turns the session's events into the handler's hooks.

    TLS is :class:`smtpx._native.TlsSession`, between the transport and the session:
    received bytes go through ``tls.receive`` to the session, the session's output
    through ``tls.write`` and ``tls.output`` to the transport.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.session: _native.ServerSession | None = None  # None: refused (max_connections)
        self.conn: _Connection | None = None
        self.hooks = _Hooks(self._hook_finished, self._failed)
        self.waiting: _native.Event | None = None  # the event a pending hook answers
        self.tls: _native.TlsSession | None = None
        self.handshake_deadline: float | None = None  # while a TLS handshake runs
        self.starting_tls = False  # STARTTLS accepted: the handshake starts after the 220
        self.content = bytearray()
        self.pending = b""  # plaintext input the session has not taken yet
        self.eof = False
        self.eof_fed = False
        self.write_paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        server = self.server
        if len(server._connections) >= server.max_connections:
            server._refuse(transport)
            self.hooks.close()
            return
        self.transport = transport
        server._connections.add(self)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.conn = _Connection(server, (str(peer[0]), int(peer[1])), server.implicit_tls)
        self.session = _native.ServerSession(server.hostname, now=self.loop.time(), **server._options)
        if server.implicit_tls:
            self._start_tls()  # the greeting waits for the handshake
        else:
            self._run()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.server._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.session is None or self.transport is None:
            return
        data = bytes(memoryview(self.server._read_buffer)[:nbytes])
        if self.tls is not None:
            plain = self._decrypt(data)
            if plain is None:
                return
            data = plain
        if data:
            self.pending = self.pending + data if self.pending else data
        self._run()

    def eof_received(self) -> bool:
        if self.session is None:
            return False
        if self.tls is not None and self.tls.is_handshaking:
            log.info("smtpx.aio server: connection ended: the connection closed during the TLS handshake")
            return False  # the transport closes itself
        self.eof = True
        self._run()
        return True  # the transport stays open for the last replies; _run closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
        self.hooks.close()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._reading()

    # Server.stop

    def close(self) -> None:
        self.hooks.cancel()  # what cancelling the connection's task did in the streams version
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # TLS

    def _start_tls(self) -> None:
        """Starts the server side of a handshake: implicit TLS, or STARTTLS once the 220
        is out. It must end within the server's timeout."""
        assert self.server._tls_config is not None
        self.tls = _native.TlsSession(self.server._tls_config)
        self.handshake_deadline = self.loop.time() + self.server.timeout
        self._arm_deadline()

    def _decrypt(self, data: bytes) -> bytes | None:
        """The plaintext in ``data`` (perhaps none: a handshake's records); None when the
        TLS layer failed and the connection is closing."""
        tls, transport = self.tls, self.transport
        assert tls is not None and transport is not None
        handshaking = tls.is_handshaking
        try:
            plain = tls.receive(data)
        except SmtpTlsError as e:
            transport.write(tls.output())  # the alert, so that the peer learns why
            log.info("smtpx.aio server: connection ended: %s", e)
            transport.close()
            return None
        out = tls.output()  # the handshake's next flight, a key update's answer
        if out:
            transport.write(out)
        if handshaking and not tls.is_handshaking:
            self.handshake_deadline = None
            if not self.server.implicit_tls:  # STARTTLS: the session starts over, encrypted
                assert self.conn is not None and self.session is not None
                self.conn.tls_started()
                self.session.tls_established(self.loop.time())
        if tls.peer_closed:
            self.eof = True
        return plain

    # The connection

    def _reading(self) -> None:
        """Reads only while the peer takes our replies and no hook is pending (what the
        streams version got from drain() and from awaiting the hook)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.write_paused or self.waiting is not None:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _write(self, out: bytes) -> None:
        assert self.transport is not None
        if self.tls is not None:
            self.tls.write(out)
            out = self.tls.output()
        self.transport.write(out)

    def _run(self) -> None:
        """Feeds the pending input, answers the session's events and writes its output,
        until the session needs more input, a hook suspends or a handshake starts."""
        session, transport = self.session, self.transport
        if self.waiting is not None or session is None or transport is None:
            return
        if self.tls is not None and self.tls.is_handshaking:
            return  # the session waits for the handshake (implicit TLS: even its greeting)
        try:
            while True:
                if self.pending:
                    taken = session.receive(self.pending, self.loop.time())
                    self.pending = self.pending[taken:]
                if not self._events():
                    return  # a hook suspended: _hook_finished goes on when it is done
                out = session.output()
                if out:
                    self._write(out)
                if session.is_closed:
                    if self.tls is not None:
                        self.tls.close()
                        transport.write(self.tls.output())  # close_notify
                    transport.close()
                    return
                if self.starting_tls:
                    # The 220 is out. What was pipelined after STARTTLS (the rest of
                    # `pending` too) came in clear and is dropped, neither plaintext nor
                    # TLS: only what comes through the handshake counts.
                    self.starting_tls = False
                    self.pending = b""
                    self._start_tls()
                    return
                if self.pending or out:
                    # After a write, step the session again: it holds input back while its
                    # output is full (a client that pipelines without reading), and that
                    # input is already here.
                    continue
                if self.eof:
                    if not self.eof_fed:
                        self.eof_fed = True
                        session.receive_eof()
                        continue
                    transport.close()  # nothing more will come, and the session did not close
                    return
                self._arm_deadline()
                return
        except Exception as error:
            self._failed(error)

    def _events(self) -> bool:
        """Answers the session's events; False when a hook suspended."""
        session, conn = self.session, self.conn
        assert session is not None and conn is not None
        while (event := session.next_event()) is not None:
            kind = event.kind
            if kind == "message_data":
                self.content += event.data or b""
            elif kind == "message_aborted":
                self.content.clear()
            elif kind == "starttls":
                self.starting_tls = True
            elif kind == "reset" or event.needs_decision:
                status = _HOOKED if kind == "reset" else conn.answer_now(event)
                if status is _HOOKED:
                    hook = conn.reset() if kind == "reset" else conn.answer(event, bytes(self.content))
                    done, status = self.hooks.run(hook)
                    if not done:
                        self.waiting = event
                        self._reading()
                        return False
                self._decide(kind, status)
        return True

    def _hook_finished(self, status: Any) -> None:
        """A hook that had suspended is done (called in the connection's task)."""
        event, self.waiting = self.waiting, None
        if self.transport is None or event is None:
            return  # the connection is gone: the answer is dropped
        self._decide(event.kind, status)
        self._reading()
        self._run()

    def _failed(self, error: BaseException) -> None:
        log.error("smtpx.aio server: connection failed", exc_info=error)
        self.waiting = None
        if self.transport is not None:
            self.transport.close()

    def _decide(self, kind: str, status: Any) -> None:
        session = self.session
        assert session is not None
        if kind == "reset":
            return  # nothing to answer
        if kind == "message_end":
            self.content.clear()
        if status is None:
            session.accept()
            return
        try:
            if isinstance(status, str):
                session.reply_line(status)
            else:
                session.reply_per_recipient(status)
        except ValueError:
            log.error("smtpx.aio server: invalid status line %r", status)
            session.reply_line(_LOCAL_ERROR)

    def _deadline_now(self) -> float | None:
        if self.handshake_deadline is not None:
            return self.handshake_deadline
        assert self.session is not None
        return self.session.next_deadline()

    def _arm_deadline(self) -> None:
        """One timer per connection: armed for the deadline (the handshake's, else the
        session's), moved only when the deadline comes earlier; when it fires, _deadline
        re-arms it if input moved the deadline on meanwhile."""
        deadline = self._deadline_now()
        if deadline is None or (self.timer is not None and deadline >= self.timer_at):
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = deadline
        self.timer = self.loop.call_at(deadline, self._deadline)

    def _deadline(self) -> None:
        self.timer = None
        session, transport = self.session, self.transport
        if session is None or transport is None or self.waiting is not None:
            return  # gone, or a hook is running (_run arms the timer again after it)
        deadline = self._deadline_now()
        now = self.loop.time()
        if deadline is None or deadline > now:
            self._arm_deadline()
        elif self.handshake_deadline is not None:
            log.info("smtpx.aio server: connection ended: TLS handshake timed out")
            transport.close()
        else:
            session.handle_timeout(now)
            self._run()
