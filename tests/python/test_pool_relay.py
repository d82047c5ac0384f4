"""The connection pools (threads and asyncio) and the relay handler, against real
servers on loopback: smtp-server (Rust) and aiosmtpd's own Controller as next hops,
smtpx.Controller and smtpx.aio.Server in front, smtplib as the client."""

from __future__ import annotations

import asyncio
import smtplib
import threading
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
