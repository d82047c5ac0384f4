"""The clients end TLS with close_notify: smtpx.SMTP (the Rust blocking client) and
smtpx.aio.SMTP (rustls through smtpx._native.TlsSession), with STARTTLS and implicit
TLS, against a TLS server made of Python's ssl in a thread that treats a TCP close without
close_notify as an error (``suppress_ragged_eofs=False``): after ``quit()`` it must read
an orderly TLS end (b""), not ``SSLEOFError``.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import ssl
import threading
from typing import Any

import pytest

import smtpx
import smtpx.aio

#: Every wait of the peer is bounded.
TIMEOUT = 10.0


class TlsPeer:
    """A one-connection SMTP server over Python's ssl on 127.0.0.1: greets, answers EHLO
    (offering STARTTLS before TLS), STARTTLS, NOOP and QUIT, then reads to the end and
    records how the client ended TLS in ``ending``: "close_notify" (b"" from the TLS
    layer), "ragged" (SSLEOFError: TCP closed without close_notify) or an error text."""

    def __init__(self, cert_files: tuple[pathlib.Path, pathlib.Path], implicit: bool) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert_files[0]), str(cert_files[1]))
        self.implicit = implicit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.ending: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        return self.context.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False)

    def _run(self) -> None:
        conn: socket.socket | None = None
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(TIMEOUT)
            self.ending = self._converse(conn)
        except Exception as e:  # recorded for the test to report
            self.ending = f"error: {e!r}"
        finally:
            self.listener.close()
            if conn is not None:
                conn.close()

    def _converse(self, conn: socket.socket) -> str:
        sock: socket.socket = self._wrap(conn) if self.implicit else conn
        try:
            return self._talk(sock)
        finally:
            sock.close()

    def _talk(self, sock: socket.socket, greet: bool = True) -> str:
        if greet:
            sock.sendall(b"220 peer.test ESMTP\r\n")
        buffer = b""
        while True:
            while b"\r\n" not in buffer:
                chunk = sock.recv(4096)
                if not chunk:
                    return "closed before QUIT"
                buffer += chunk
            line, buffer = buffer.split(b"\r\n", 1)
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                tls = isinstance(sock, ssl.SSLSocket)
                sock.sendall(b"250 peer.test\r\n" if tls else b"250-peer.test\r\n250 STARTTLS\r\n")
            elif verb == b"STARTTLS":
                sock.sendall(b"220 go ahead\r\n")
                with self._wrap(sock) as tls:
                    return self._talk_tls(tls)
            elif verb == b"QUIT":
                sock.sendall(b"221 bye\r\n")
                try:
                    while sock.recv(4096):
                        pass
                except ssl.SSLEOFError:
                    return "ragged"
                return "close_notify"
            else:
                sock.sendall(b"250 ok\r\n")

    def _talk_tls(self, tls: ssl.SSLSocket) -> str:
        """After STARTTLS: the client greets again."""
        return self._talk(tls, greet=False)

    def result(self) -> str | None:
        self.thread.join(TIMEOUT * 2)
        assert not self.thread.is_alive(), "the TLS peer did not finish"
        return self.ending


def client_context(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def test_the_peer_tells_a_ragged_end_from_close_notify(ca: Any, cert_files: tuple[pathlib.Path, pathlib.Path]) -> None:
    """The check itself: a TLS client that only closes TCP is seen as "ragged"."""
    peer = TlsPeer(cert_files, implicit=True)
    raw = socket.create_connection(("127.0.0.1", peer.port), timeout=TIMEOUT)
    with client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.recv(4096).startswith(b"220")
        tls.sendall(b"QUIT\r\n")
        assert tls.recv(4096).startswith(b"221")
        # Python's close() (without unwrap()) closes TCP under the TLS layer: no
        # close_notify goes out.
    assert peer.result() == "ragged"


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_blocking_client_ends_tls_with_close_notify(
    ca: Any, cert_files: tuple[pathlib.Path, pathlib.Path], implicit: bool
) -> None:
    peer = TlsPeer(cert_files, implicit=implicit)
    ctx = client_context(ca)
    if implicit:
        client: smtpx.SMTP = smtpx.SMTP_SSL("127.0.0.1", peer.port, timeout=TIMEOUT, context=ctx)
    else:
        client = smtpx.SMTP("127.0.0.1", peer.port, timeout=TIMEOUT)
        client.starttls(context=ctx)
    assert client.noop()[0] == 250
    client.quit()
    assert peer.result() == "close_notify"


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_aio_client_ends_tls_with_close_notify(
    ca: Any, cert_files: tuple[pathlib.Path, pathlib.Path], implicit: bool
) -> None:
    peer = TlsPeer(cert_files, implicit=implicit)
    ctx = client_context(ca)

    async def talk() -> None:
        client = smtpx.aio.SMTP(
            "127.0.0.1",
            peer.port,
            timeout=TIMEOUT,
            use_tls=implicit,
            start_tls=None if implicit else True,
            tls_context=ctx,
        )
        await client.connect()
        assert (await client.noop())[0] == 250
        await client.quit()

    asyncio.run(asyncio.wait_for(talk(), TIMEOUT * 2))
    assert peer.result() == "close_notify"
