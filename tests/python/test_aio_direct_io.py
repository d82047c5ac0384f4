"""smtpx.aio.Server reading and writing a plain socket itself (its direct mode).

On CPython's selector event loop the engine does the socket calls of a plain connection
(``ServerConnection.read_step`` and ``step(now, fd)``); what the socket does not take at
once goes through the transport, which then writes everything until it holds nothing.
These tests run real clients on 127.0.0.1 against such a server: a client that pipelines
far more replies than the socket buffers hold before it reads any (the replies must all
come, whole and in order), a message after that on the same connection, and a client
that closes its side right after its last command.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from typing import Any, Awaitable, Callable, TypeVar

import smtpx.aio

T = TypeVar("T")

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: direct\r\n\r\nHello\r\n.leading dot\r\n"
# As a raw client sends it (dot-stuffed).
STUFFED = MESSAGE.replace(b"\r\n.", b"\r\n..")


class Counting:
    """An aiosmtpd-style handler with only handle_DATA (MAIL and RCPT answered by the
    engine, the envelope delivered with the message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def serve(handler: Any, client: Callable[[str, int, smtpx.aio.Server], T]) -> T:
    """Runs ``client(host, port, server)`` in a thread against a server on this loop."""

    async def main() -> T:
        server = smtpx.aio.Server(handler, hostname="127.0.0.1", port=0, server_hostname="mx.direct.test")
        await server.start()
        try:
            host, port = server.address
            return await asyncio.wait_for(asyncio.to_thread(client, host, port, server), 60)
        finally:
            await server.stop()

    return asyncio.run(main())


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` reply lines from ``sock`` (bounded by the socket's timeout)."""
    buffered = b""
    lines: list[bytes] = []
    while len(lines) < count:
        data = sock.recv(65536)
        assert data, f"the server closed after {len(lines)} of {count} lines"
        buffered += data
        *complete, buffered = buffered.split(b"\r\n")
        lines.extend(complete)
    assert buffered == b""
    return lines


def test_direct_mode_is_used_on_a_plain_connection() -> None:
    handler = Counting()

    def client(host: str, port: int, server: smtpx.aio.Server) -> list[int]:
        with smtplib.SMTP(host, port, timeout=10) as s:
            s.ehlo("client.test")
            # White-box: the connection's protocol reads the socket itself (fd set), so
            # the other tests of this module exercise that path.
            descriptors = [protocol.fd for protocol in server._connections]
            s.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        return descriptors

    descriptors = serve(handler, client)
    assert len(descriptors) == 1 and descriptors[0] >= 0
    assert handler.messages == [("a@example.com", ["b@example.com"], MESSAGE)]


def test_replies_beyond_the_socket_buffers_come_whole_and_in_order() -> None:
    """The client pipelines 20,000 RSETs on a socket with a small receive buffer and
    reads nothing for a while: the server's sends stop being taken, the rest goes through
    the transport (which pauses the server's reading), and every reply must still come,
    in order, followed by a message on the same connection."""
    handler = Counting()
    resets = 20000  # RSET may be pipelined (RFC 2920); NOOP must end a group

    def client(host: str, port: int, server: smtpx.aio.Server) -> tuple[list[bytes], list[bytes]]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect((host, port))
        with sock:
            greeting = read_lines(sock, 1)
            assert greeting[0].startswith(b"220 ")
            # The server's send buffer made small too (white-box: its socket, which the
            # transport owns), so that the socket soon stops taking replies.
            for protocol in list(server._connections):
                assert protocol.transport is not None
                server_sock = protocol.transport.get_extra_info("socket")
                server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.sendall(b"EHLO client.test\r\n")
            ehlo: list[bytes] = []
            while not ehlo or not ehlo[-1].startswith(b"250 "):
                ehlo += read_lines(sock, 1)
            sent = threading.Event()
            errors: list[BaseException] = []

            def send_all() -> None:
                try:
                    sock.sendall(b"RSET\r\n" * resets)
                except BaseException as error:  # reported by the test below
                    errors.append(error)
                finally:
                    sent.set()

            sender = threading.Thread(target=send_all)
            sender.start()
            # Nothing is read until the server has had to stop: its replies fill the small
            # receive buffer and its own send buffer, then the transport's.
            sent.wait(1.0)
            replies = read_lines(sock, resets)
            sender.join(30)
            assert not sender.is_alive() and not errors
            sock.sendall(
                b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
            )
            after = read_lines(sock, 3)
            sock.sendall(STUFFED + b".\r\nQUIT\r\n")
            after += read_lines(sock, 2)
        return replies, after

    replies, after = serve(handler, client)
    assert len(replies) == resets
    assert set(replies) == {replies[0]} and replies[0].startswith(b"250 ")
    assert [line[:3] for line in after] == [b"250", b"250", b"354", b"250", b"221"]
    assert handler.messages == [("a@example.com", ["b@example.com"], MESSAGE)]


def test_a_client_that_closes_its_side_still_gets_its_replies() -> None:
    """Commands followed at once by the end of the client's stream (shutdown SHUT_WR):
    the server reads the end in direct mode, answers what came before it, and closes."""
    handler = Counting()

    def client(host: str, port: int, server: smtpx.aio.Server) -> bytes:
        with socket.create_connection((host, port), timeout=10) as sock:
            assert read_lines(sock, 1)[0].startswith(b"220 ")
            sock.sendall(b"EHLO client.test\r\n")
            ehlo: list[bytes] = []
            while not ehlo or not ehlo[-1].startswith(b"250 "):
                ehlo += read_lines(sock, 1)
            sock.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            assert [line[:3] for line in read_lines(sock, 3)] == [b"250", b"250", b"354"]
            sock.sendall(STUFFED + b".\r\nQUIT\r\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    return received
                received += data

    received = serve(handler, client)
    codes = [line[:3] for line in received.split(b"\r\n") if line]
    assert codes == [b"250", b"221"]
    assert handler.messages == [("a@example.com", ["b@example.com"], MESSAGE)]
