"""The asyncio client's driver: performs the actions of the engine's client runner
(:class:`smtpx._native.ClientRunner`) on an asyncio connection: writes, reads until a
deadline, the TLS I/O of STARTTLS and implicit TLS (rustls through
:class:`smtpx._native.TlsSession`), closing. No protocol decision is made here."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
from typing import Awaitable, Callable, TypeVar

from smtpx import _native
from smtpx.common import client_certificate, tls_arguments
from smtpx.errors import SmtpDisconnected, SmtpError, SmtpTlsError

__all__ = ["Connection", "client_tls_config", "within"]

_T = TypeVar("_T")
_READ = 64 * 1024


# perf: the client's read deadline and the timeout of each of its calls were an
# asyncio.wait_for. Before Python 3.12 wait_for wraps the awaitable in a new Task each time
# (a Task, its first step, a done callback and more turns of the event loop per read);
# asyncio.timeout (3.11+) only arms a timer on the current task. Same semantics: the
# awaitable is cancelled when the time is up and TimeoutError (asyncio.TimeoutError is
# TimeoutError since 3.11) is raised. See bench/README.md for the measured difference.
if sys.version_info >= (3, 11):

    async def within(operation: Awaitable[_T], seconds: float | None) -> _T:
        async with asyncio.timeout(seconds):
            return await operation

else:  # pragma: no cover - Python 3.10

    async def within(operation: Awaitable[_T], seconds: float | None) -> _T:
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


def client_tls_config(
    validate_certs: bool,
    cert_bundle: str | os.PathLike[str] | None,
    tls_context: ssl.SSLContext | None,
    client_cert: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
) -> _native.TlsConfig:
    """The client TLS configuration of aiosmtplib's keywords: the servers trusted
    (``validate_certs``, ``cert_bundle``, or ``tls_context``'s verification setting and
    CAs) and the client certificate shown to a server that asks for one
    (``client_cert``, a PEM chain, and ``client_key``, its key when not in that file;
    as aiosmtplib, a key without a certificate is not used)."""
    cert, key = client_certificate(client_cert, client_key) if client_cert is not None else (None, None)
    if tls_context is not None:
        # As the blocking client reads a context: its verification setting and CAs.
        found = tls_arguments(tls_context, None if cert_bundle is None else os.fspath(cert_bundle))
        return _native.TlsConfig.client(
            ca_pem=found["ca_pem"],
            dangerous_accept_invalid_certs=found["insecure"] or not validate_certs,
            client_cert=cert,
            client_key=key,
        )
    if cert_bundle is None and validate_certs and cert is None:
        # The process's one default configuration (shared session cache).
        return _native.TlsConfig.client()
    return _native.TlsConfig.client(
        ca_file=None if cert_bundle is None else os.fspath(cert_bundle),
        dangerous_accept_invalid_certs=not validate_certs,
        client_cert=cert,
        client_key=key,
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



class Connection:
    """One open connection of the asyncio client and its runner: :meth:`run` carries out
    the operation started on ``runner`` until it is done. ``tls_config`` gives the TLS
    configuration when a handshake needs one; ``server_name`` is what the certificate
    must carry. Times are on the event loop's clock from the moment of connecting."""

    def __init__(
        self,
        runner: _native.ClientRunner,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server_name: str,
        tls_config: Callable[[], _native.TlsConfig],
    ) -> None:
        self.runner = runner
        self._reader: asyncio.StreamReader | None = reader
        self._writer: asyncio.StreamWriter | None = writer
        self._tls: _native.TlsSession | None = None
        #: The name the server's certificate must carry in the next handshake.
        self.server_name = server_name
        self._tls_config = tls_config
        self._base = asyncio.get_running_loop().time()
        _small_reads(writer)

    @classmethod
    async def open(
        cls,
        runner: _native.ClientRunner,
        *,
        hostname: str,
        port: int,
        source_address: tuple[str, int] | None,
        socket_path: str | bytes | os.PathLike[str] | None,
        sock: socket.socket | None,
        tls_config: Callable[[], _native.TlsConfig],
    ) -> Connection:
        """Connects (over ``sock`` when given, else to the Unix socket ``socket_path``,
        else to ``hostname``:``port`` from ``source_address``)."""
        if sock is not None:
            reader, writer = await asyncio.open_connection(sock=sock)
        elif socket_path is not None:
            reader, writer = await asyncio.open_unix_connection(socket_path)  # type: ignore[arg-type]
        else:
            reader, writer = await asyncio.open_connection(hostname, port, local_addr=source_address)
        return cls(runner, reader, writer, hostname, tls_config)

    @property
    def is_open(self) -> bool:
        """True until the connection is closed."""
        return self._writer is not None

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The asyncio transport under the connection; None once it is closed."""
        return None if self._writer is None else self._writer.transport

    @property
    def tls_session(self) -> _native.TlsSession | None:
        """The TLS session while the connection is encrypted, else None."""
        return self._tls if self._writer is not None else None

    @property
    def is_tls(self) -> bool:
        """True while the connection is encrypted."""
        return self._tls is not None and self._writer is not None

    def now(self) -> float:
        """The runner's clock: seconds since the connection was made."""
        return asyncio.get_running_loop().time() - self._base

    async def run(self, before_read: Callable[[_native.ClientRunner], None] | None = None) -> object:
        """Performs the runner's actions until its operation is done; returns the
        outcome (a failed operation raises). ``before_read(runner)``, when given, is
        called before each wait for the server (to take a batch's outcomes as they
        come)."""
        return await self._drive(self.runner, before_read)

    def close(self) -> None:
        """Closes at once (a TLS close_notify first, when encrypted)."""
        self._close_streams()

    async def tls_handshake(self) -> bytes:
        """The TLS handshake (implicit TLS, or after the 220 to STARTTLS); returns the
        plaintext that came with its last records."""
        reader, writer = self._streams()
        tls = _native.TlsSession(self._tls_config(), self.server_name)
        self._tls = tls
        return await _handshake(reader, writer, tls)

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise SmtpDisconnected("not connected")
        return self._reader, self._writer

    async def _drive(
        self,
        runner: _native.ClientRunner,
        before_read: Callable[[_native.ClientRunner], None] | None = None,
    ) -> object:
        """Performs the runner's actions on the connection until its operation is done;
        returns the outcome (a failed operation raises)."""
        reader, writer = self._streams()
        while True:
            kind, value = runner.next_action(self.now())
            if kind == "write":
                try:
                    self._write(writer, value)
                    await writer.drain()
                except OSError as error:
                    runner.write_failed(str(error))
                    continue
                runner.written()
            elif kind == "read":
                if before_read is not None:
                    before_read(runner)
                await self._read(runner, reader, writer, value)
            elif kind == "starttls":
                await self._starttls_handshake(runner, value)
            elif kind == "goodbye":
                try:
                    self._write(writer, value)
                except OSError:
                    pass  # best effort: the connection is ending anyway
                runner.written()
            elif kind == "close":
                self._close_streams()
            elif kind == "abort":
                writer.transport.abort()
                self._close_streams()
            else:  # "done"
                return value

    def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        tls = self._tls
        if tls is not None:
            tls.write(data)
            data = tls.output()
        writer.write(data)

    async def _read(
        self,
        runner: _native.ClientRunner,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
    ) -> None:
        try:
            data = await within(reader.read(_READ), max(0.0, deadline - self.now()))
        except asyncio.TimeoutError:
            runner.timed_out(self.now())
            return
        except OSError as error:
            runner.read_failed(str(error))
            return
        if not data:
            runner.eof()
            return
        tls = self._tls
        if tls is None:
            runner.received(data, self.now())
            return
        try:
            plain = tls.receive(data)
        except SmtpTlsError as error:
            writer.write(tls.output())  # the alert, so that the peer learns why
            runner.tls_failed(str(error))
            return
        out = tls.output()  # a key update's answer
        if out:
            writer.write(out)
        runner.received(plain, self.now())
        if tls.peer_closed:
            runner.eof()

    async def _starttls_handshake(self, runner: _native.ClientRunner, deadline: float) -> None:
        try:
            plain = await within(self.tls_handshake(), max(0.0, deadline - self.now()))
        except asyncio.TimeoutError:
            runner.tls_failed("the TLS handshake timed out", timeout=True)
            return
        except (SmtpError, OSError) as error:
            runner.tls_failed(f"TLS handshake failed: {error}")
            return
        runner.tls_established(self.now())
        if plain:
            runner.received(plain, self.now())

    def _close_streams(self) -> None:
        writer, self._writer = self._writer, None
        self._reader = None
        tls, self._tls = self._tls, None
        if writer is not None:
            if tls is not None and not tls.is_handshaking:
                tls.close()
                writer.write(tls.output())
            writer.close()

