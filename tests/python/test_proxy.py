"""The PROXY protocol on both Python servers (``proxy_protocol_timeout`` as aiosmtpd
names it, and ``proxy_trusted``): the handler's ``session.peer`` is the client's address
from the header and ``session.proxy`` the header; a missing, malformed, late or
untrusted header closes the connection without a greeting; implicit TLS works behind it
on the asyncio server. Raw sockets on loopback, every wait bounded."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import ssl
import struct
import time
from typing import Any, Callable

import pytest

import smtpx
import smtpx.aio

CertFiles = tuple[pathlib.Path, pathlib.Path]


class PeerRecorder:
    """Keeps what each message's session said about its client."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, int], Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append((tuple(session.peer), session.proxy))
        return "250 2.0.0 Ok"


def v1(source: str, port: int) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 25\r\n".encode()


def v2(source: str, port: int, tlvs: list[tuple[int, bytes]]) -> bytes:
    body = socket.inet_aton(source) + socket.inet_aton("192.0.2.1") + struct.pack("!HH", port, 25)
    for kind, value in tlvs:
        body += struct.pack("!BH", kind, len(value)) + value
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


LOCAL = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"


def reply(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """The next whole reply (bounded by the socket's timeout)."""
    data = b""
    while True:
        chunk = sock.recv(1)
        assert chunk, f"closed while a reply was expected: {data!r}"
        data += chunk
        if data.endswith(b"\r\n"):
            last = data.split(b"\r\n")[-2]
            if last[3:4] == b" ":
                return data


def send_one(sock: socket.socket | ssl.SSLSocket) -> None:
    assert reply(sock).startswith(b"220 ")
    for line, code in [
        (b"EHLO client.test", b"250"),
        (b"MAIL FROM:<a@example.org>", b"250"),
        (b"RCPT TO:<b@example.net>", b"250"),
        (b"DATA", b"354"),
        (b"Subject: hi\r\n\r\nx\r\n.", b"250"),
        (b"QUIT", b"221"),
    ]:
        sock.sendall(line + b"\r\n")
        answer = reply(sock)
        assert answer.startswith(code), (line, answer)


def closed_without_a_word(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def dialogues(address: tuple[str, int]) -> None:
    """The checks both servers must pass, in a thread (blocking sockets)."""
    for header in [
        v1("192.0.2.7", 40000),
        v2("198.51.100.9", 41000, [(0x02, b"mx.example")]),
        LOCAL,
        v1("2001:db8::5", 42000),
    ]:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(header)
            send_one(sock)
    # Missing, malformed, oversized: closed before any greeting.
    for bad in [b"EHLO client.test\r\n", b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 25\r\n", b"PROXY TCP4 " + b"1" * 300]:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(bad)
            assert closed_without_a_word(sock), bad
    # Slow: part of a header, then nothing until the deadline (1 s).
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 192.0")
        assert closed_without_a_word(sock)
    assert 0.9 <= time.monotonic() - started < 9


def check_seen(seen: list[tuple[tuple[str, int], Any]], local_host: str) -> None:
    assert len(seen) == 4
    (peer1, proxy1), (peer2, proxy2), (peer3, proxy3), (peer4, _) = seen
    assert peer1 == ("192.0.2.7", 40000)
    assert proxy1["version"] == 1 and proxy1["command"] == "PROXY"
    assert proxy1["source"] == ("192.0.2.7", 40000) and proxy1["destination"] == ("127.0.0.1", 25)
    assert peer2 == ("198.51.100.9", 41000)
    assert proxy2["version"] == 2 and proxy2["tlvs"] == [(2, b"mx.example")]
    assert peer3[0] == local_host and proxy3["command"] == "LOCAL"  # a health check: the real peer
    assert peer4 == ("2001:db8::5", 42000)


def test_controller_takes_the_client_from_the_header() -> None:
    handler = PeerRecorder()
    controller = smtpx.Controller(handler, port=0, proxy_protocol_timeout=1.0)
    with controller:
        dialogues(("127.0.0.1", controller.port))
    check_seen(handler.seen, "127.0.0.1")


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_aio_server_takes_the_client_from_the_header() -> None:
    handler = PeerRecorder()

    async def main() -> None:
        server = smtpx.aio.Server(handler, port=0, proxy_protocol_timeout=1.0)
        await server.start()
        try:
            await asyncio.to_thread(dialogues, server.address)
        finally:
            await server.stop()

    run(main())
    check_seen(handler.seen, "127.0.0.1")


@pytest.mark.parametrize("kind", ["controller", "aio"])
def test_untrusted_sources_are_closed_without_a_greeting(kind: str) -> None:
    handler = PeerRecorder()

    def untrusted(address: tuple[str, int]) -> None:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(v1("192.0.2.7", 40000))
            assert closed_without_a_word(sock)

    options: dict[str, Any] = dict(port=0, proxy_protocol_timeout=5, proxy_trusted=["10.0.0.0/8"])
    if kind == "controller":
        with smtpx.Controller(handler, **options) as controller:
            untrusted(("127.0.0.1", controller.port))
    else:

        async def main() -> None:
            server = smtpx.aio.Server(handler, **options)
            await server.start()
            try:
                await asyncio.to_thread(untrusted, server.address)
            finally:
                await server.stop()

        run(main())
    assert handler.seen == []


@pytest.mark.parametrize("make", [smtpx.Controller, smtpx.aio.Server])
def test_bad_settings_are_refused(make: Callable[..., Any]) -> None:
    for timeout in (0, -1, float("nan"), "5", True):
        with pytest.raises(ValueError):
            make(PeerRecorder(), proxy_protocol_timeout=timeout)
    with pytest.raises(TypeError):
        make(PeerRecorder(), proxy_protocol_timeout=1, proxy_trusted="10.0.0.0/8")


def test_controller_refuses_a_network_that_is_not_cidr() -> None:
    controller = smtpx.Controller(PeerRecorder(), port=0, proxy_protocol_timeout=1, proxy_trusted=["10.0.0.0/99"])
    with pytest.raises(ValueError):
        controller.start()


def test_aio_implicit_tls_behind_the_header(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    """The header in clear, then the TLS handshake: nothing of the ClientHello may be
    taken by the header's reads."""
    handler = PeerRecorder()

    def client(address: tuple[str, int]) -> None:
        raw = socket.create_connection(address, timeout=10)
        # Header and ClientHello in one segment where the kernel allows it.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        raw.sendall(v2("203.0.113.4", 1111, []))
        context = ssl.create_default_context(cafile=str(ca_file))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            send_one(tls)

    async def main() -> None:
        server = smtpx.aio.Server(
            handler, port=0, tls_context=cert_files, implicit_tls=True, proxy_protocol_timeout=5
        )
        await server.start()
        try:
            await asyncio.to_thread(client, server.address)
        finally:
            await server.stop()

    run(main())
    assert [peer for peer, _ in handler.seen] == [("203.0.113.4", 1111)]
