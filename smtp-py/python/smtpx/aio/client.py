"""The asyncio client: the engine's sans-IO client session on asyncio streams.

:class:`SMTP`, :class:`LMTP` and :func:`send` have aiosmtplib's parameter names::

    async with smtpx.aio.SMTP(hostname="mx.example", port=25, timeout=30) as client:
        await client.sendmail("a@example.com", ["b@example.com"], message_bytes)

TLS is rustls (:class:`smtpx._native.TlsSession`), configured by the same code as the
blocking client and server and the C API, not Python's :mod:`ssl`. ``use_tls`` is
implicit TLS (port 465); otherwise ``start_tls`` None upgrades with STARTTLS when the
server offers it, True requires it (the connection fails before any MAIL or AUTH when
the server does not offer it), False never upgrades. Certificates are checked against
Mozilla's roots unless ``cert_bundle`` (a PEM file) or ``tls_context`` (its CA
certificates) name others; ``validate_certs=False`` accepts any (tests only).

Credentials (``username``/``password``, or :meth:`SMTP.login`) are sent only over TLS:
without it the connection fails, or ``login`` raises, with
:class:`~smtpx.errors.SmtpInsecureAuthError` before anything of them is written, unless
``allow_insecure_auth=True`` (aiosmtplib sends them in clear).

Debug output: ``set_debuglevel(1)`` (or 2) prints the conversation on standard error in
smtplib's format, as :meth:`smtpx.SMTP.set_debuglevel` does (aiosmtplib has no such
method; it logs instead). While the ``smtpx.wire`` logger is enabled for DEBUG when a
client connects, each line of that connection is logged there as ``conn=ID C: text``
(one DEBUG record per line; the ids count the asyncio clients of the process). Both come
from the engine's wire trace, redacted: credentials show as ``AUTH PLAIN <redacted>`` and
``<SASL response redacted>``, message content as ``<message content, N octets>``. Neither
costs anything while off: the trace is installed only while one of them is on.

Every protocol decision is the Rust engine's (:class:`smtpx._native.ClientSession`),
including throwing away whatever was pipelined after STARTTLS; this module only moves
bytes and times.
"""

from __future__ import annotations

import asyncio
import collections
import email.message
import itertools
import os
import ssl
import sys
from typing import Awaitable, Callable, Iterable, Sequence, TypeVar

from smtpx import _native
from smtpx._trace import ClientTrace, wire_logging
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

__all__ = ["LMTP", "SMTP", "send"]


_T = TypeVar("_T")
_READ = 64 * 1024

_default_tls: _native.TlsConfig | None = None

# Connection ids of the asyncio clients, for the wire trace.
_connection_ids = itertools.count(1)


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
        allow_insecure_auth: bool = False,
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
        self.allow_insecure_auth = allow_insecure_auth
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
        self._trace = ClientTrace()
        self._connection_id = 0

    @property
    def debuglevel(self) -> int:
        """smtplib's debug level (see :meth:`set_debuglevel`); assignable."""
        return self._trace.level

    @debuglevel.setter
    def debuglevel(self, level: int) -> None:
        self.set_debuglevel(level)

    def set_debuglevel(self, debuglevel: int) -> None:
        """Prints the conversation on standard error as smtplib's ``set_debuglevel``
        does: 0 (the default) nothing, 1 each command and reply line, 2 the same with the
        time. May be changed at any time, connected or not. Credentials and message
        content are never printed (see the module docs)."""
        self._trace.set_level(int(debuglevel))
        if self._session is not None:
            self._session.set_trace(self._trace if self._trace.wanted else None, self._connection_id)

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
            allow_insecure_auth=bool(self.allow_insecure_auth),
            starttls=policy,
            tls_active=self.use_tls,
        )
        trace = self._trace
        trace.log = wire_logging()
        trace.connecting(self.hostname, self.port)
        self._connection_id = next(_connection_ids)
        if trace.wanted:
            self._session.set_trace(trace, self._connection_id)
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
        the connection usable (for a client made without ``username``/``password``). On a
        connection without TLS it raises :class:`SmtpInsecureAuthError`, sending nothing,
        unless ``allow_insecure_auth`` is true."""
        session = self._live()[0]

        async def run() -> tuple[int, bytes]:
            session.set_allow_insecure_auth(bool(self.allow_insecure_auth))
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
                _native.wire_size(body),
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
                    session.send_mail(sender, to, _native.wire_size(body), *options)
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
    allow_insecure_auth: bool = False,
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
        allow_insecure_auth=allow_insecure_auth,
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
