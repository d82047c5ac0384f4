"""smtpx.aio.Server's direct-mode connections watched by the server's poller
(``_native.ServerPoller``): one epoll instance of the engine's, whose descriptor is the
only one the event loop watches for them; one callback per loop iteration reads and
answers every ready connection in Rust and hands back only those that need Python.

The tests hold the event loop still (a callback that blocks it) while real clients on
127.0.0.1 make many connections ready at once, then check that one callback of the loop
served them all, and that a connection that closes (cleanly or with a reset) among
ready ones, one that needs a hook and the plain ones each get what they would alone.
"""

from __future__ import annotations

import array
import asyncio
import socket
import struct
import sys
import threading
from typing import Any, Callable

import pytest

import smtpx.aio
from smtpx import _native

# Skipped off Linux only: the poller is an epoll instance, and elsewhere the server keeps
# a reader per socket (the same path as the fallback tested below). CI runs on Linux,
# where every test here runs.
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the poller is epoll's (Linux only)")

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: poller\r\n\r\nHello\r\n"
CONNECTIONS = 12


class Counting:
    """handle_DATA only: MAIL, RCPT and NOOP are answered by the engine."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 OK"


def read_reply(sock: socket.socket) -> bytes:
    """One reply (all its lines), bounded by the socket's timeout."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(line) > 3 and line[3:4] == b" " for line in lines[:-1]):
            return data


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    assert read_reply(sock).startswith(b"220 ")
    sock.sendall(b"EHLO client.test\r\n")
    assert read_reply(sock).startswith(b"250")
    return sock


class HeldLoop:
    """Blocks the server's event loop (from a client thread) until ``release``: while it is
    held, whatever the clients send waits, ready, in the socket buffers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.held = threading.Event()
        self.go = threading.Event()

    def hold(self) -> None:
        def block() -> None:
            self.held.set()
            self.go.wait(10)

        self.loop.call_soon_threadsafe(block)
        assert self.held.wait(10)

    def release(self) -> None:
        self.go.set()


def wait_until_received(server: smtpx.aio.Server, descriptors: list[int] | None = None) -> None:
    """Waits (bounded) until every server-side socket (or those of ``descriptors``) has
    input waiting, so that what the clients sent is ready before the loop is released
    (loopback delivery may be deferred to a kernel thread under load)."""
    import fcntl  # (POSIX; this module runs on Linux only)
    import termios

    if descriptors is None:
        descriptors = [protocol.fd for protocol in server._connections]
    assert descriptors and all(fd >= 0 for fd in descriptors)
    for _ in range(500):
        pending = []
        for fd in descriptors:
            count = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, count)
            pending.append(count[0])
        if all(pending):
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"input not received by the server's sockets: {pending}")


def serve(handler: Any, client: Callable[[str, int, smtpx.aio.Server, HeldLoop, list[int]], None]) -> smtpx.aio.Server:
    """Runs ``client`` in a thread against a server whose poll callbacks are counted (the
    list it is given: one entry per call, how many connections the poller watched)."""
    calls: list[int] = []

    async def main() -> smtpx.aio.Server:
        server = smtpx.aio.Server(handler, hostname="127.0.0.1", port=0, server_hostname="mx.poller.test")
        poll_ready = server._poll_ready

        def counted() -> None:
            poller = server._poller
            calls.append(len(poller) if poller is not None else -1)
            poll_ready()

        server._poll_ready = counted  # type: ignore[method-assign]
        await server.start()
        try:
            assert server._poller is not None, "the selector event loop watches the poller"
            host, port = server.address
            held = HeldLoop(asyncio.get_running_loop())
            await asyncio.wait_for(asyncio.to_thread(client, host, port, server, held, calls), 60)
        finally:
            await server.stop()
        return server

    return asyncio.run(main())


def test_every_direct_connection_is_watched_by_the_poller() -> None:
    def client(host: str, port: int, server: smtpx.aio.Server, held: HeldLoop, calls: list[int]) -> None:
        socks = [connect(host, port) for _ in range(3)]
        try:
            poller = server._poller
            assert poller is not None
            protocols = list(server._connections)
            assert len(protocols) == 3
            assert all(p.fd >= 0 and p.poller is poller and p.reader_on for p in protocols)
            assert len(poller) == 3
            socks.pop().close()
            for _ in range(100):  # bounded: the server sees the end of the stream
                if len(poller) == 2 and server.active_connections() == 2:
                    break
                threading.Event().wait(0.05)
            assert len(poller) == 2
            assert server.active_connections() == 2
        finally:
            for sock in socks:
                sock.close()

    server = serve(Counting(), client)
    assert server._poller is None  # stop() closed it


def test_one_callback_serves_many_ready_connections() -> None:
    """A command on each of a dozen connections while the loop is held: one poll callback
    reads them all, and each gets its own reply."""

    def client(host: str, port: int, server: smtpx.aio.Server, held: HeldLoop, calls: list[int]) -> None:
        socks = [connect(host, port) for _ in range(CONNECTIONS)]
        try:
            held.hold()
            for i, sock in enumerate(socks):
                sock.sendall(f"NOOP {i}\r\n".encode())
            wait_until_received(server)
            before = len(calls)
            held.release()
            for sock in socks:
                assert read_reply(sock).startswith(b"250 ")
            assert len(calls) - before == 1, calls[before:]
            assert calls[-1] == CONNECTIONS
            # Then a transaction on each, the commands of a turn sent while the loop is
            # held: MAIL answered in Rust, the message's hook in Python.
            held2 = HeldLoop(held.loop)
            held2.hold()
            for sock in socks:
                sock.sendall(b"MAIL FROM:<a@example.com>\r\n")
            held2.release()
            for sock in socks:
                assert read_reply(sock).startswith(b"250 ")
            for sock in socks:
                sock.sendall(b"RCPT TO:<b@example.com>\r\n")
                assert read_reply(sock).startswith(b"250 ")
                sock.sendall(b"DATA\r\n")
                assert read_reply(sock).startswith(b"354 ")
            held3 = HeldLoop(held.loop)
            held3.hold()
            for sock in socks:
                sock.sendall(MESSAGE + b".\r\n")
            held3.release()
            for sock in socks:
                assert read_reply(sock) == b"250 OK\r\n"
        finally:
            for sock in socks:
                sock.close()

    handler = Counting()
    serve(handler, client)
    assert handler.messages == [MESSAGE] * CONNECTIONS


def test_connections_closing_among_ready_ones() -> None:
    """In one held turn of the loop: one client closes its side after QUIT, one resets its
    connection, one ends a message (a hook), the others send NOOP. Each gets what it would
    alone, and the closed ones leave the poller and the server."""

    def client(host: str, port: int, server: smtpx.aio.Server, held: HeldLoop, calls: list[int]) -> None:
        socks = [connect(host, port) for _ in range(6)]
        quitting, resetting, sending, *plain = socks
        try:
            for line, reply in ((b"MAIL FROM:<a@example.com>", b"250"), (b"RCPT TO:<b@example.com>", b"250"),
                                (b"DATA", b"354")):
                sending.sendall(line + b"\r\n")
                assert read_reply(sending).startswith(reply)
            held.hold()
            quitting.sendall(b"QUIT\r\n")
            quitting.shutdown(socket.SHUT_WR)
            resetting.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            resetting.close()  # an RST: the server's read fails
            sending.sendall(MESSAGE + b".\r\n")
            for sock in plain:
                sock.sendall(b"NOOP\r\n")
            before = len(calls)
            held.release()
            assert read_reply(quitting).startswith(b"221 ")
            assert quitting.recv(4096) == b""  # closed after the 221
            assert read_reply(sending) == b"250 OK\r\n"
            for sock in plain:
                assert read_reply(sock).startswith(b"250 ")
            assert len(calls) - before >= 1
            poller = server._poller
            assert poller is not None
            for _ in range(100):  # bounded: both closed connections are gone
                if server.active_connections() == 4 and len(poller) == 4:
                    break
                threading.Event().wait(0.05)
            assert server.active_connections() == 4
            assert len(poller) == 4
            # The others go on as before.
            for sock in plain:
                sock.sendall(b"NOOP\r\n")
                assert read_reply(sock).startswith(b"250 ")
        finally:
            for sock in (quitting, sending, *plain):
                sock.close()

    handler = Counting()
    serve(handler, client)
    assert handler.messages == [MESSAGE]


def test_the_poller_hands_back_only_what_needs_python() -> None:
    """The native poller alone, with a ServerConnection on a socket pair: a command the
    engine answers itself (RCPT out of a transaction: 503) is answered in Rust and nothing is handed back once the timer is armed; the end of the
    stream is handed back as 0; a connection removed is not read."""
    server_sock, client_sock = socket.socketpair()
    server_sock.setblocking(False)
    client_sock.settimeout(10)
    poller = _native.ServerPoller()
    try:
        now = 1000.0
        connection = _native.ServerConnection("mx.poller.test", now=now, timeout=60.0)
        kind, _, out = connection.step(now, server_sock.fileno())
        assert kind == _native.ServerConnection.CONNECT and out is None
        connection.connected()
        kind, deadline, out = connection.step(now, server_sock.fileno())
        assert kind == _native.ServerConnection.READ and deadline == connection.deadline == now + 60.0
        assert client_sock.recv(4096).startswith(b"220 ")
        owner = object()
        # No timer armed: the READ goes back to Python (to arm one).
        poller.add(server_sock.fileno(), connection, owner, True, None)
        assert len(poller) == 1
        client_sock.sendall(b"RCPT TO:<b@example.com>\r\n")
        ready = poller.poll(now + 1)
        assert ready is not None and len(ready) == 1
        got_owner, outcome = ready[0]
        assert got_owner is owner
        assert outcome == (_native.ServerConnection.READ, now + 61.0, None)
        assert client_sock.recv(4096).startswith(b"503 ")
        # With the timer armed no later than the deadline: done in Rust, nothing back.
        poller.set_timer(server_sock.fileno(), now + 61.0)
        client_sock.sendall(b"RCPT TO:<b@example.com>\r\n")
        assert poller.poll(now + 2) is None
        assert client_sock.recv(4096).startswith(b"503 ")
        assert connection.deadline == now + 62.0
        # Nothing ready: nothing read.
        assert poller.poll(now + 3) is None
        # Not allowed to send (the transport holds bytes): the reply comes back as output.
        poller.set_send(server_sock.fileno(), False)
        client_sock.sendall(b"RCPT TO:<b@example.com>\r\n")
        ready = poller.poll(now + 4)
        assert ready is not None
        outcome = ready[0][1]
        assert type(outcome) is tuple
        kind, _, out = outcome
        assert kind == _native.ServerConnection.READ and out is not None and out.startswith(b"503 ")
        # The end of the stream.
        poller.set_send(server_sock.fileno(), True)
        client_sock.shutdown(socket.SHUT_WR)
        ready = poller.poll(now + 5)
        assert ready == [(owner, 0)]
        # Removed by another connection's call: still watched; by its own: gone.
        other = _native.ServerConnection("mx.poller.test", now=now)
        poller.remove(server_sock.fileno(), other)
        assert len(poller) == 1
        poller.remove(server_sock.fileno(), connection)
        assert len(poller) == 0
        assert poller.poll(now + 6) is None
    finally:
        poller.close()
        server_sock.close()
        client_sock.close()
    assert poller.fileno() == -1
    assert poller.poll(0.0) is None


def test_commands_answered_in_rust_move_the_deadline() -> None:
    """A client whose commands the engine answers without Python (MAIL and RCPT, the
    handler having neither hook) for longer than ``timeout`` is not timed out: the timer,
    when it fires, finds the deadline the engine moved and waits on; once the client is
    silent it gets the 421."""

    async def main() -> None:
        server = smtpx.aio.Server(Counting(), hostname="127.0.0.1", port=0, timeout=0.5)
        await server.start()
        try:
            assert server._poller is not None
            host, port = server.address
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection(host, port)
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
            for command in (b"HELO client.test\r\n", b"MAIL FROM:<a@example.com>\r\n"):
                writer.write(command)
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 ")
            started = loop.time()
            for i in range(6):  # 1.2 s of RCPT, each within the timeout of the one before
                await asyncio.sleep(0.2)
                writer.write(f"RCPT TO:<r{i}@example.com>\r\n".encode())
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 ")
            assert loop.time() - started > 1.0  # past two timeouts, still served
            silent = loop.time()
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line.startswith(b"421 4.4.2"), line
            assert 0.3 < loop.time() - silent < 5
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


class Prodding(Counting):
    """handle_DATA makes another connection ready while it runs: it sends a command on
    that connection's client socket and waits (bounded) until the server's side has it."""

    def __init__(self) -> None:
        super().__init__()
        self.other: socket.socket | None = None
        self.other_server_fd = -1

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import fcntl
        import termios

        assert self.other is not None
        self.other.sendall(b"RSET\r\n")
        for _ in range(500):
            count = array.array("i", [0])
            fcntl.ioctl(self.other_server_fd, termios.FIONREAD, count)
            if count[0]:
                break
            threading.Event().wait(0.01)
        return await super().handle_DATA(server, session, envelope)


def test_input_that_comes_while_python_runs_is_served_in_the_same_callback() -> None:
    """One poll callback asks the poller again after running Python: a command that became
    ready while a hook ran is answered without another turn of the event loop."""
    handler = Prodding()

    def client(host: str, port: int, server: smtpx.aio.Server, held: HeldLoop, calls: list[int]) -> None:
        sending = connect(host, port)
        other = connect(host, port)
        try:
            (other_protocol,) = [p for p in server._connections if p.transport is not None
                                 and p.transport.get_extra_info("peername") == other.getsockname()]
            handler.other, handler.other_server_fd = other, other_protocol.fd
            for line, reply in ((b"MAIL FROM:<a@example.com>", b"250"), (b"RCPT TO:<b@example.com>", b"250"),
                                (b"DATA", b"354")):
                sending.sendall(line + b"\r\n")
                assert read_reply(sending).startswith(reply)
            held.hold()
            sending.sendall(MESSAGE + b".\r\n")
            wait_until_received(server, [p.fd for p in server._connections if p is not other_protocol])
            before = len(calls)
            held.release()
            assert read_reply(sending) == b"250 OK\r\n"
            assert read_reply(other).startswith(b"250 ")  # the RSET sent by the hook
            assert len(calls) - before == 1, calls[before:]
        finally:
            sending.close()
            other.close()

    serve(handler, client)
    assert handler.messages == [MESSAGE]


class RefusingPoller:
    """The server's poller, except that it cannot watch another socket (as when epoll's
    limit of watches is reached): ``add`` raises OSError."""

    def __init__(self, poller: _native.ServerPoller) -> None:
        self.poller = poller

    def add(self, *args: Any) -> None:
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.poller, name)


def test_a_connection_the_poller_cannot_watch_is_watched_by_the_loop() -> None:
    async def main() -> None:
        handler = Counting()
        server = smtpx.aio.Server(handler, hostname="127.0.0.1", port=0)
        await server.start()
        try:
            assert server._poller is not None
            server._poller = RefusingPoller(server._poller)  # type: ignore[assignment]

            def client(host: str, port: int) -> list[Any]:
                sock = connect(host, port)
                try:
                    states = [(p.fd >= 0, p.poller, p.reader_on) for p in server._connections]
                    for line, reply in ((b"MAIL FROM:<a@example.com>", b"250"),
                                        (b"RCPT TO:<b@example.com>", b"250"), (b"DATA", b"354"),
                                        (MESSAGE + b".", b"250")):
                        sock.sendall(line + b"\r\n")
                        assert read_reply(sock).startswith(reply)
                    sock.sendall(b"QUIT\r\n")
                    assert read_reply(sock).startswith(b"221")
                    return states
                finally:
                    sock.close()

            host, port = server.address
            states = await asyncio.wait_for(asyncio.to_thread(client, host, port), 60)
            assert states == [(True, None, True)]  # direct mode, read by the loop's reader
        finally:
            await server.stop()
        assert handler.messages == [MESSAGE]

    asyncio.run(main())


def test_two_servers_on_one_loop_and_a_restart() -> None:
    """Each server has its own poller on the same loop; a stopped server's poller is closed
    and unregistered, and a server started again gets a new one that serves."""

    def one_message(host: str, port: int) -> None:
        sock = connect(host, port)
        try:
            for line, reply in ((b"MAIL FROM:<a@example.com>", b"250"), (b"RCPT TO:<b@example.com>", b"250"),
                                (b"DATA", b"354"), (MESSAGE + b".", b"250"), (b"QUIT", b"221")):
                sock.sendall(line + b"\r\n")
                assert read_reply(sock).startswith(reply)
        finally:
            sock.close()

    async def main() -> None:
        first_handler, second_handler = Counting(), Counting()
        first = smtpx.aio.Server(first_handler, hostname="127.0.0.1", port=0)
        second = smtpx.aio.Server(second_handler, hostname="127.0.0.1", port=0)
        await first.start()
        await second.start()
        try:
            assert first._poller is not None and second._poller is not None
            assert first._poller.fileno() != second._poller.fileno()
            await asyncio.wait_for(asyncio.to_thread(one_message, *first.address), 60)
            await asyncio.wait_for(asyncio.to_thread(one_message, *second.address), 60)
            old = first._poller
            await first.stop()
            assert first._poller is None and old.fileno() == -1
            await asyncio.wait_for(asyncio.to_thread(one_message, *second.address), 60)
            await first.start()
            assert first._poller is not None and first._poller is not old
            await asyncio.wait_for(asyncio.to_thread(one_message, *first.address), 60)
        finally:
            await first.stop()
            await second.stop()
        assert first_handler.messages == [MESSAGE, MESSAGE]
        assert second_handler.messages == [MESSAGE, MESSAGE]

    asyncio.run(main())
