"""The connection pools (threads and asyncio) and the relay handler, against real
servers on loopback: smtp-server (Rust) and aiosmtpd's own Controller as next hops,
smtpx.Controller and smtpx.aio.Server in front, smtplib as the client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import smtplib
import threading
import time
from typing import Any

import pytest

import smtpx
from smtpx.pool import AsyncSMTPPool, SMTPPool
from smtpx.relay import RelayHandler

from conftest import Recorder, RunningServer, free_port

MSG = b"Subject: pooled\r\n\r\nbare LF\nand CRLF\r\n"


def test_a_pool_shared_by_threads_reuses_a_bounded_number_of_connections(rust_server: RunningServer) -> None:
    pool = SMTPPool(rust_server.host, rust_server.port, max_size=3, max_messages=10)
    results: list[smtpx.SendResult] = []
    lock = threading.Lock()
    most_open = 0

    def sender() -> None:
        nonlocal most_open
        for _ in range(5):
            result = pool.send("a@example.org", ["b@example.net"], MSG)
            with lock:
                results.append(result)
                most_open = max(most_open, pool.status()[0])

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 30 and all(r.ok for r in results)
    assert 1 <= most_open <= 3
    assert len(rust_server.wait_for(30)) == 30
    assert all(b"bare LF\r\nand CRLF\r\n" in m for m in rust_server.delivered())
    pool.close()
    assert pool.status() == (0, 0)


def test_an_asyncio_pool_gives_each_message_its_own_result(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, recorder = aiosmtpd_server

    async def main() -> list[smtpx.SendResult]:
        async with AsyncSMTPPool("127.0.0.1", port, max_size=4) as pool:
            sends = [
                pool.send("a@example.org", ["b@example.net", "nobody@example.net" if i % 3 == 0 else "c@example.net"], MSG)
                for i in range(12)
            ]
            results = await asyncio.gather(*sends)
            assert pool.status()[0] <= 4
            return results

    results = asyncio.run(main())
    assert len(recorder.messages) == 12
    for i, result in enumerate(results):
        assert result.ok
        second = result.recipients[1]
        if i % 3 == 0:
            assert not second.accepted and second.reply.code == 550
        else:
            assert second.accepted


class _PeerRecorder:
    """Keeps the client port each message came over (one per connection), slowly enough
    that concurrent senders overlap."""

    def __init__(self) -> None:
        self.peers: list[Any] = []
        self.noops = 0

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: Any) -> str:
        self.noops += 1
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.01)
        self.peers.append(session.peer)
        return "250 OK"


def test_the_asyncio_pool_is_bounded_reuses_connections_and_runs_on_the_loop() -> None:
    from aiosmtpd.controller import Controller as AiosmtpdController

    recorder = _PeerRecorder()
    port = free_port()
    controller = AiosmtpdController(recorder, hostname="127.0.0.1", port=port)
    controller.start()

    class NoThreads(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the asyncio pool handed work to an executor thread")

    async def main() -> tuple[list[smtpx.SendResult], int]:
        # Any run_in_executor(None, ...) now fails: the sends must run on the loop.
        asyncio.get_running_loop().set_default_executor(NoThreads(1))
        most_open = 0
        async with AsyncSMTPPool("127.0.0.1", port, max_size=3, timeout=10) as pool:

            async def sender(i: int) -> list[smtpx.SendResult]:
                nonlocal most_open
                out = []
                for j in range(5):
                    out.append(await pool.send("a@example.org", [f"r{i}.{j}@example.net"], MSG))
                    most_open = max(most_open, pool.status()[0])
                return out

            per_sender = await asyncio.gather(*(sender(i) for i in range(8)))
            assert pool.status()[0] <= 3
        assert pool.status() == (0, 0)  # closed: every connection said QUIT
        return [r for results in per_sender for r in results], most_open

    try:
        results, most_open = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        controller.stop()
    assert len(results) == 40 and all(r.ok for r in results)
    assert sorted(r.recipients[0].address for r in results) == sorted(
        f"r{i}.{j}@example.net" for i in range(8) for j in range(5)
    )
    assert 1 <= most_open <= 3
    # 40 messages over at most 3 connections: reused, not one per message.
    assert 1 <= len(set(recorder.peers)) <= 3 and len(recorder.peers) == 40


def test_the_asyncio_pool_retires_after_max_messages_and_checks_idle_ones() -> None:
    from aiosmtpd.controller import Controller as AiosmtpdController

    recorder = _PeerRecorder()
    port = free_port()
    controller = AiosmtpdController(recorder, hostname="127.0.0.1", port=port)
    controller.start()

    async def main() -> list[int]:
        seen_open = []
        async with AsyncSMTPPool("127.0.0.1", port, max_size=2, max_messages=2, check_after=0.0) as pool:
            for _ in range(6):
                result = await pool.send("a@example.org", ["b@example.net"], MSG)
                assert result.ok
                seen_open.append(pool.status()[0])
        return seen_open

    try:
        seen_open = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        controller.stop()
    # Sequential sends: one connection at a time, a new one after every second message.
    assert seen_open == [1, 0, 1, 0, 1, 0]
    peers = recorder.peers
    assert len(peers) == 6 and len(set(peers)) == 3
    assert peers[0] == peers[1] and peers[2] == peers[3] and peers[4] == peers[5]
    # check_after=0: every reuse was checked with NOOP first (the second message of each).
    assert recorder.noops == 3


def test_the_asyncio_pool_frees_the_slot_of_a_connection_that_failed() -> None:
    async def main() -> tuple[int, int]:
        pool = AsyncSMTPPool("127.0.0.1", free_port(), max_size=1, timeout=2)
        for _ in range(2):  # the failed attempt held no slot: the second may try again
            with pytest.raises(smtpx.aio.SMTPConnectError):
                await pool.send("a@example.org", ["b@example.net"], MSG)
        status = pool.status()
        await pool.close()
        return status

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (0, 0)


def test_the_asyncio_pool_waits_for_a_free_connection_up_to_checkout_timeout() -> None:
    from aiosmtpd.controller import Controller as AiosmtpdController

    class Slow:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await asyncio.sleep(1.5)
            return "250 OK"

    port = free_port()
    controller = AiosmtpdController(Slow(), hostname="127.0.0.1", port=port)
    controller.start()

    async def main() -> None:
        async with AsyncSMTPPool("127.0.0.1", port, max_size=1, checkout_timeout=0.3, timeout=10) as pool:
            first = asyncio.ensure_future(pool.send("a@example.org", ["b@example.net"], MSG))
            await asyncio.sleep(0.2)  # the one connection is busy with the first message
            with pytest.raises(smtpx.aio.SMTPTimeoutError, match="no pooled connection"):
                await pool.send("a@example.org", ["c@example.net"], MSG)
            assert (await first).ok

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        controller.stop()


def test_closing_the_asyncio_pool_fails_the_tasks_waiting_for_a_connection() -> None:
    from aiosmtpd.controller import Controller as AiosmtpdController

    class Slow:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await asyncio.sleep(1.0)
            return "250 OK"

    port = free_port()
    controller = AiosmtpdController(Slow(), hostname="127.0.0.1", port=port)
    controller.start()

    async def main() -> None:
        pool = AsyncSMTPPool("127.0.0.1", port, max_size=1, checkout_timeout=20, timeout=10)
        first = asyncio.ensure_future(pool.send("a@example.org", ["b@example.net"], MSG))
        await asyncio.sleep(0.2)
        waiting = asyncio.ensure_future(pool.send("a@example.org", ["c@example.net"], MSG))
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        await pool.close()
        with pytest.raises(smtpx.aio.SMTPConnectError, match="closed"):
            await waiting
        # Failed at the close, not at the end of checkout_timeout.
        assert asyncio.get_running_loop().time() - started < 5
        assert (await first).ok  # the message in flight finished
        assert pool.status() == (0, 0)  # and its connection was retired, not kept

    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        controller.stop()


def test_a_pool_to_nowhere_raises_and_holds_no_connection() -> None:
    pool = SMTPPool("127.0.0.1", free_port(), timeout=2)
    # No connection could carry the message: smtplib's SMTPServerDisconnected family.
    with pytest.raises(smtpx.SmtpDisconnected, match="cannot connect"):
        pool.send("a@example.org", ["b@example.net"], MSG)
    assert pool.status() == (0, 0)


def test_the_relay_under_controller_answers_with_the_next_hops_replies(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, recorder = aiosmtpd_server
    relay = RelayHandler("127.0.0.1", port)
    with smtpx.Controller(relay, port=0) as controller:
        for n in range(3):
            with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
                refused = client.sendmail("a@example.org", ["b@example.net", "nobody@example.net"], MSG)
                # aiosmtpd's own refusal of nobody@, word for word.
                assert refused == {"nobody@example.net": (550, b"5.1.1 no such user")}
                code, text = client.noop()
                assert code == 250
    relay.close()
    assert [(m[0], m[1]) for m in recorder.messages] == [("a@example.org", ["b@example.net"])] * 3
    assert recorder.messages[0][2].endswith(b"bare LF\r\nand CRLF\r\n")


def test_the_relay_under_aio_server_gives_451_when_the_next_hop_is_down() -> None:
    relay = RelayHandler("127.0.0.1", free_port(), timeout=2)

    async def main() -> None:
        async with smtpx.aio.Server(relay, port=0, server_hostname="relay.test") as server:
            host, port = server.address

            def client() -> tuple[int, bytes]:
                with smtplib.SMTP(host, port, timeout=10) as c:
                    c.ehlo("client.test")
                    return c.mail("a@example.org")

            code, text = await asyncio.get_running_loop().run_in_executor(None, client)
            assert code == 451 and text.startswith(b"4.4.1"), (code, text)

    asyncio.run(main())
    relay.close()


def test_the_relay_passes_on_the_next_hops_final_reply(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, recorder = aiosmtpd_server
    relay = RelayHandler("127.0.0.1", port)

    async def main() -> smtpx.SendResult:
        async with smtpx.aio.SMTP(hostname="127.0.0.1", port=front_port, timeout=10) as client:
            return await client.send(MSG, sender="a@example.org", recipients=["b@example.net"])

    with smtpx.Controller(relay, port=0) as controller:
        front_port = controller.port
        result = asyncio.run(main())
    relay.close()
    assert result.ok
    # The next hop's own final reply, queue id included.
    assert result.data is not None and "queued as Q1" in result.data.text
    assert len(recorder.messages) == 1


class _CountingNextHop:
    """A next hop on a real loopback socket, written out here so that the test can see
    the content arrive while the client is still sending: it counts the octets after
    DATA as they come, refuses recipients named no*, and answers the end of the message
    with the count. One connection at a time; every read bounded by a timeout."""

    def __init__(self) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.messages: list[bytes] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            reader = conn.makefile("rb")
            conn.sendall(b"220 nexthop.test ESMTP\r\n")
            while True:
                line = reader.readline(1000)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-nexthop.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT" and b"<no" in line:
                    conn.sendall(b"550 5.1.1 nexthop: no such user\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    content = bytearray()
                    while not content.endswith(b"\r\n.\r\n"):
                        chunk = reader.read1(65536)
                        if not chunk:
                            return
                        content += chunk
                        with self.lock:
                            self.received += len(chunk)
                    self.messages.append(bytes(content))
                    conn.sendall(b"250 2.0.0 nexthop got %d octets\r\n" % len(content))
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:  # MAIL, RCPT, RSET, NOOP
                    conn.sendall(b"250 2.0.0 ok\r\n")

    def close(self) -> None:
        self.listener.close()
        self.thread.join(30)


def test_the_relay_under_controller_streams_content_from_the_client_side() -> None:
    """Under smtpx's Controller the relay is the core's, inside the connection: the next
    hop sees the content while the client is still sending it (the aiosmtpd-style path
    could not: handle_DATA gets the message only once it is whole), and a message larger
    than any buffer on the way goes through intact, with the next hop's replies."""
    import socket

    next_hop = _CountingNextHop()
    relay = RelayHandler("127.0.0.1", next_hop.port, timeout=30)
    line = b"x" * 998 + b"\r\n"
    first, second = line * 1024, line * 2048  # 1 MiB, then 2 MiB
    try:
        with smtpx.Controller(relay, port=0) as controller:
            with socket.create_connection((controller.hostname, controller.port), timeout=30) as sock:
                reader = sock.makefile("rb")

                def say(command: bytes) -> bytes:
                    sock.sendall(command)
                    reply = reader.readline()
                    while reply[3:4] == b"-":
                        reply = reader.readline()
                    return reply

                assert reader.readline().startswith(b"220 ")
                assert say(b"EHLO client.test\r\n").startswith(b"250 ")
                assert say(b"MAIL FROM:<a@example.org>\r\n").startswith(b"250")
                # RCPT gets the next hop's own reply, refusal included.
                assert say(b"RCPT TO:<nobody@example.net>\r\n") == b"550 5.1.1 nexthop: no such user\r\n"
                assert say(b"RCPT TO:<b@example.net>\r\n").startswith(b"250")
                assert say(b"DATA\r\n").startswith(b"354")
                sock.sendall(first)
                deadline = time.monotonic() + 20
                while next_hop.received < 512 * 1024 and time.monotonic() < deadline:
                    time.sleep(0.01)
                streamed = next_hop.received
                assert streamed >= 512 * 1024, f"the next hop had {streamed} octets before the end"
                final = say(second + b".\r\n")
                assert final == b"250 2.0.0 nexthop got %d octets\r\n" % (len(first) + len(second) + 3)
                assert say(b"QUIT\r\n").startswith(b"221")
    finally:
        relay.close()
        next_hop.close()
    assert next_hop.messages == [first + second + b".\r\n"]


def test_the_relay_under_an_lmtp_controller_answers_per_recipient(aiosmtpd_server: tuple[int, Recorder]) -> None:
    """LMTP on the front side: one delivery reply per accepted recipient, each the next
    hop's final reply (its queue id in it)."""
    port, recorder = aiosmtpd_server
    relay = RelayHandler("127.0.0.1", port)
    try:
        with smtpx.Controller(relay, port=0, lmtp=True) as controller:
            with smtpx.LMTP(controller.hostname, controller.port, timeout=10) as client:
                result = client.send(
                    MSG, sender="a@example.org", recipients=["b@example.net", "nobody@example.net", "c@example.net"]
                )
    finally:
        relay.close()
    by_address = {r.address: r for r in result.recipients}
    assert by_address["nobody@example.net"].reply.code == 550 and not by_address["nobody@example.net"].accepted
    for address in ("b@example.net", "c@example.net"):
        delivery = by_address[address].delivery
        assert by_address[address].accepted and delivery is not None
        assert delivery.code == 250 and "queued as Q1" in delivery.text, delivery
    assert [(m[0], m[1]) for m in recorder.messages] == [("a@example.org", ["b@example.net", "c@example.net"])]


def test_the_relay_under_aiosmtpds_own_controller_keeps_the_aiosmtpd_path(aiosmtpd_server: tuple[int, Recorder]) -> None:
    from aiosmtpd.controller import Controller as AiosmtpdController

    port, recorder = aiosmtpd_server
    relay = RelayHandler("127.0.0.1", port)
    front = AiosmtpdController(relay, hostname="127.0.0.1", port=free_port())
    front.start()
    try:
        with smtplib.SMTP(front.hostname, front.port, timeout=10) as client:
            refused = client.sendmail("a@example.org", ["b@example.net", "nobody@example.net"], MSG)
            assert refused == {"nobody@example.net": (550, b"5.1.1 no such user")}
    finally:
        front.stop()
        relay.close()
    assert [(m[0], m[1]) for m in recorder.messages] == [("a@example.org", ["b@example.net"])]
    assert recorder.messages[0][2].endswith(b"bare LF\r\nand CRLF\r\n")


def test_the_relay_and_pool_examples_run(rust_server: RunningServer) -> None:
    import pathlib
    import subprocess
    import sys

    examples = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"
    relay = subprocess.Popen(
        [sys.executable, str(examples / "relay.py"), "--relay", f"{rust_server.host}:{rust_server.port}",
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        line = relay.stdout.readline().strip()
        assert line.startswith("listening on "), line
        port = line.rsplit(":", 1)[1]
        sent = subprocess.run(
            [sys.executable, str(examples / "pool_send.py"), f"127.0.0.1:{port}", "--from", "a@example.org",
             "--to", "b@example.net", "--count", "6", "--threads", "3", "--pool", "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.splitlines() == [f"{i} ok" for i in range(6)]
        assert len(rust_server.wait_for(6)) == 6
    finally:
        relay.terminate()
        assert relay.wait(timeout=15) == 0
        if relay.stdout is not None:
            relay.stdout.close()
