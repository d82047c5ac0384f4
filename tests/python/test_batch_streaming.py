"""smtpx.SMTP.send_batch(..., on_result=...): each outcome handed over as soon as it is
known, before the batch ends; an exception from the callback stops the batch cleanly."""

from __future__ import annotations

import asyncio
import pathlib
import smtplib
import threading
from typing import Any, Iterator

import pytest

import smtpx
from conftest import running_aiosmtpd, start_server

# How long the server holds a reply waiting for the test (a bound: a client that does not
# stream makes the held message fail after this, and the test with it).
HOLD_SECONDS = 5.0


class HoldingHandler:
    """An aiosmtpd handler that holds its final reply to the third message until
    ``release`` is set (or HOLD_SECONDS passed, then refuses it with 451)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.release = threading.Event()
        self.reply_to_third_sent = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        if len(self.messages) == 3:
            loop = asyncio.get_running_loop()
            released = await loop.run_in_executor(None, self.release.wait, HOLD_SECONDS)
            self.reply_to_third_sent.set()
            if not released:
                return "451 4.3.0 held too long"
        return "250 2.0.0 Ok: queued as Q%d" % len(self.messages)


@pytest.fixture
def holding_server() -> Iterator[tuple[int, HoldingHandler]]:
    handler = HoldingHandler()
    with running_aiosmtpd(handler) as port:
        try:
            yield port, handler
        finally:
            handler.release.set()


def batch(count: int) -> list[tuple[str, list[str], bytes]]:
    return [("a@example.org", ["b@example.net"], b"Subject: %d\r\n\r\nhi\r\n" % n) for n in range(count)]


class Stop(Exception):
    pass


def test_an_exception_in_the_callback_stops_the_batch_and_propagates(
    holding_server: tuple[int, HoldingHandler],
) -> None:
    port, handler = holding_server
    handler.release.set()  # nothing held here
    seen: list[int] = []

    def on_result(index: int, outcome: Any) -> None:
        seen.append(index)
        if index == 1:
            raise Stop("enough")

    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        with pytest.raises(Stop, match="enough"):
            client.send_batch(batch(50), on_result=on_result)
        assert seen == [0, 1]
        # No new message was started after the exception; those already under way
        # (chained behind the second, with a server that pipelines) finished, unreported.
        delivered = len(handler.messages)
        assert 2 <= delivered <= 4
        # The connection is usable: its replies were all read.
        assert client.noop()[0] == 250
        assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: after\r\n\r\nhi\r\n") == {}
    assert len(handler.messages) == delivered + 1
    assert handler.messages[-1].startswith(b"Subject: after")


def test_a_callback_using_its_own_connection_is_refused_not_hung(
    holding_server: tuple[int, HoldingHandler],
) -> None:
    port, handler = holding_server
    handler.release.set()
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        with pytest.raises(RuntimeError, match="busy"):
            client.send_batch(batch(3), on_result=lambda index, outcome: client.noop())
        assert client.noop()[0] == 250  # the connection is fine afterwards
    assert 1 <= len(handler.messages) <= 3


def test_indexes_run_across_engine_groups_and_errors_are_outcomes(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--max-size", "5000")
    try:
        messages = batch(1100)
        messages[1050] = ("a@example.org", ["b@example.net"], b"x" * 6000)  # over SIZE
        seen: list[tuple[int, Any]] = []
        with smtpx.SMTP(server.host, server.port, timeout=10) as client:
            outcomes = client.send_batch(messages, on_result=lambda i, o: seen.append((i, o)))
        assert [i for i, _ in seen] == list(range(1100))
        assert all(a is b for (_, a), b in zip(seen, outcomes))
        too_large = seen[1050][1]
        assert isinstance(too_large, smtplib.SMTPDataError) and too_large.smtp_code == 552
        assert sum(isinstance(o, smtpx.SendResult) and o.ok for o in outcomes) == 1099
        assert len(server.wait_for(1099)) == 1099
    finally:
        assert server.stop() == 0


def test_a_recipient_list_changed_between_entries_is_read_again(
    holding_server: tuple[int, HoldingHandler],
) -> None:
    # batch_items uses the previous entry's envelope again when an entry repeats it; a
    # list changed in place by the generator between entries must not be taken as the same.
    port, handler = holding_server
    handler.release.set()
    recipients = ["b@example.net"]

    def messages() -> Iterator[tuple[str, list[str], bytes]]:
        yield ("a@example.org", recipients, b"one\r\n")
        recipients[0] = "Carol <c@example.net>"
        yield ("a@example.org", recipients, b"two\r\n")
        yield ("a@example.org", recipients, b"three\r\n")

    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        outcomes = client.send_batch(messages())
    assert [[r.address for r in o.recipients] for o in outcomes] == [
        ["b@example.net"],
        ["c@example.net"],
        ["c@example.net"],
    ]


def test_a_stopped_batch_on_a_pipelining_server_leaves_the_connection_usable(
    rust_server: Any,
) -> None:
    # The Rust server pipelines, so each next message is chained behind the previous
    # one's dot: at most the two after the failing outcome were under way.
    seen: list[int] = []

    def on_result(index: int, outcome: Any) -> None:
        assert isinstance(outcome, smtpx.SendResult) and outcome.ok
        seen.append(index)
        if index == 1:
            raise Stop("enough")

    with smtpx.SMTP(rust_server.host, rust_server.port, timeout=10) as client:
        assert client.has_extn("pipelining")
        with pytest.raises(Stop):
            client.send_batch(batch(200), on_result=on_result)
        assert seen == [0, 1]
        assert client.noop()[0] == 250
        assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: after\r\n\r\nhi\r\n") == {}
        delivered = rust_server.wait_for(3)
    assert 3 <= len(delivered) <= 5
    assert any(m.find(b"Subject: after") >= 0 for m in delivered)


def run(coroutine: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, 30)

    return asyncio.run(bounded())


def send_batch_blocking(port: int, messages: Any, on_result: Any) -> list[Any]:
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.send_batch(messages, on_result=on_result)


def send_batch_aio(port: int, messages: Any, on_result: Any) -> list[Any]:
    async def main() -> list[Any]:
        async with smtpx.aio.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            return await client.send_batch(messages, on_result=on_result)

    return run(main())


@pytest.mark.parametrize("send_batch", [send_batch_blocking, send_batch_aio], ids=["smtpx.SMTP", "smtpx.aio.SMTP"])
def test_results_come_before_the_batch_ends(holding_server: tuple[int, HoldingHandler], send_batch: Any) -> None:
    port, handler = holding_server
    seen: list[tuple[int, Any]] = []
    third_answered_when_second_seen: list[bool] = []

    def on_result(index: int, outcome: Any) -> None:
        seen.append((index, outcome))
        if index == 1:
            # The third message's reply is still held: this outcome came while the
            # batch was under way. Releasing it lets the batch finish.
            third_answered_when_second_seen.append(handler.reply_to_third_sent.is_set())
            handler.release.set()

    outcomes = send_batch(port, batch(5), on_result)
    assert third_answered_when_second_seen == [False]
    assert [index for index, _ in seen] == [0, 1, 2, 3, 4]
    # The callback got the very objects the list holds, and every one is a success
    # (the third would be a 451 had the client waited for the end of the batch).
    assert all(a is b for (_, a), b in zip(seen, outcomes))
    assert all(isinstance(o, smtpx.SendResult) and o.ok for o in outcomes)
    assert [o.queue_id for o in outcomes] == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    assert len(handler.messages) == 5


def test_aio_an_exception_in_the_callback_stops_the_batch(rust_server: Any) -> None:
    seen: list[int] = []

    def on_result(index: int, outcome: Any) -> None:
        seen.append(index)
        if index == 1:
            raise Stop("enough")

    async def main() -> None:
        async with smtpx.aio.SMTP(hostname=rust_server.host, port=rust_server.port, timeout=10) as client:
            with pytest.raises(Stop):
                await client.send_batch(batch(200), on_result=on_result)
            assert client.is_connected
            reply = await client.noop()
            assert reply.code == 250
            errors, _ = await client.sendmail("a@example.org", ["b@example.net"], b"Subject: after\r\n\r\nhi\r\n")
            assert errors == {}

    run(main())
    assert seen == [0, 1]
    delivered = rust_server.wait_for(3)
    assert 3 <= len(delivered) <= 5
