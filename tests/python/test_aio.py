"""smtpx.aio and the sans-IO sessions of smtpx._native.

The asyncio client against the Rust example server and aiosmtpd; smtplib and aiosmtplib
against the asyncio server; the native sessions driven by hand; cancellation and timeouts.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.message
import smtplib
import socket
import sys
from typing import Any, Awaitable, Callable, TypeVar

import pytest

import smtpx
import smtpx.aio
from smtpx import _native

from conftest import Recorder, RunningServer

T = TypeVar("T")

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: aio\r\n\r\nHello\r\n.leading dot\r\n"


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


# The native sessions, in memory -----------------------------------------------------------


def test_native_sessions_talk_to_each_other_in_memory() -> None:
    server = _native.ServerSession("mx.test", max_recipients=5)
    client = _native.ClientSession("client.test")
    now = 0.0
    received = bytearray()
    seen: list[str] = []
    client_events: list[_native.Event] = []

    def pump_server() -> None:
        while (event := server.next_event()) is not None:
            seen.append(event.kind)
            if event.kind == "message_data":
                assert event.data is not None
                received.extend(event.data)
            elif event.kind == "rcpt" and event.recipient == "nobody@mx.test":
                assert event.needs_decision
                server.reply(550, "No such user", "5.1.1")
            elif event.kind == "message_end":
                server.reply_line("250 2.0.0 Ok: queued as Q1")
            elif event.needs_decision:
                server.accept()

    def exchange() -> None:
        for _ in range(20):
            pump_server()
            to_client = server.output()
            if to_client:
                client.receive(to_client, now)
            while (event := client.next_event()) is not None:
                client_events.append(event)
            to_server = client.output()
            if not to_client and not to_server:
                return
            if to_server:
                assert server.receive(to_server, now) == len(to_server)

    exchange()
    assert [e.kind for e in client_events] == ["ready"]
    assert client.is_ready

    client.send_mail("a@example.com", ["b@mx.test", "nobody@mx.test"], len(MESSAGE))
    exchange()
    assert client_events[-1].kind == "send_body"
    client.send_body(MESSAGE)
    client.finish_body()
    exchange()
    done = client_events[-1]
    assert done.kind == "transaction_complete" and done.result is not None
    mail, recipients, data, queue_id = done.result
    assert mail[0] == 250
    assert [(r[0], r[1][0], r[3]) for r in recipients] == [
        ("b@mx.test", 250, True),
        ("nobody@mx.test", 550, False),
    ]
    assert data is not None and data[0] == 250
    assert queue_id == "Q1"
    assert bytes(received) == MESSAGE
    assert seen[:3] == ["connect", "hello", "mail"]

    client.quit()
    exchange()
    assert client_events[-1].kind == "closed"
    assert "close" in seen
    assert server.is_closed and client.is_closed


def test_native_server_session_answers_and_times_out() -> None:
    server = _native.ServerSession("mx.test", timeout=10.0)
    event = server.next_event()
    assert event is not None and event.kind == "connect" and event.needs_decision
    server.accept()
    assert server.output().startswith(b"220 mx.test")
    assert server.output() == b""  # output() clears
    deadline = server.next_deadline()
    assert deadline == pytest.approx(10.0)
    server.handle_timeout(11.0)
    while server.next_event() is not None:
        pass
    assert server.output().startswith(b"421 4.4.2")
    assert server.is_closed


def test_native_argument_errors() -> None:
    server = _native.ServerSession("mx.test")
    with pytest.raises(RuntimeError):
        server.accept()  # nothing is waiting for a decision yet
    assert server.next_event() is not None
    with pytest.raises(ValueError):
        server.reply_line("not a reply")
    with pytest.raises(ValueError):
        server.receive(b"", float("nan"))
    with pytest.raises(ValueError):
        _native.ClientSession("c.test", username="u")
    client = _native.ClientSession("c.test")
    with pytest.raises(smtpx.SmtpError):
        client.send_mail("a@example.com", ["b@example.com"])  # not greeted yet
    with pytest.raises(ValueError):
        client.send_mail("a@example.com\r\nRSET", ["b@example.com"])


# The asyncio client -----------------------------------------------------------------------


def test_aio_client_to_rust_server(rust_server: RunningServer) -> None:
    async def main() -> tuple[int, bytes]:
        async with smtpx.aio.SMTP(hostname=rust_server.host, port=rust_server.port, timeout=10) as client:
            noop = await client.noop()
            refused, response = await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
            assert refused == {} and response.startswith("2.0.0")
            return noop

    code, _ = run(main())
    assert code == 250
    delivered = rust_server.wait_for(1)
    assert len(delivered) == 1 and delivered[0].endswith(b"Hello\r\n.leading dot\r\n")


def test_aio_send_message_to_aiosmtpd(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, recorder = aiosmtpd_server
    msg = email.message.EmailMessage()
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com, nobody@example.com"
    msg["Bcc"] = "hidden@example.com"
    msg["Subject"] = "aio"
    msg.set_content("Hello from asyncio\n")

    refused, _ = run(smtpx.aio.send(msg, hostname="127.0.0.1", port=port, timeout=10))
    assert list(refused) == ["nobody@example.com"]
    assert refused["nobody@example.com"].code == 550
    assert len(recorder.messages) == 1
    sender, rcpts, content = recorder.messages[0]
    assert sender == "a@example.com"
    assert rcpts == ["b@example.com", "hidden@example.com"]
    assert b"Bcc" not in content and b"Hello from asyncio" in content


def test_aio_client_refusals_raise_smtplib_exceptions(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, _ = aiosmtpd_server

    async def main() -> None:
        async with smtpx.aio.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                await client.sendmail("a@example.com", ["nobody@example.com"], MESSAGE)
            assert (await client.noop())[0] == 250

    run(main())


class FakeServer:
    """A raw asyncio server that greets (or not) and answers EHLO, then goes silent; it
    records when each connection is closed by the client."""

    def __init__(self, greet: bool) -> None:
        self.greet = greet
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        if self.greet:
            writer.write(b"220 fake.test ESMTP\r\n")
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.upper().startswith(b"EHLO"):
                writer.write(b"250-fake.test\r\n250 PIPELINING\r\n")
        self.disconnected.set()
        writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def test_cancelling_a_send_closes_the_connection() -> None:
    async def main() -> None:
        fake = FakeServer(greet=True)
        async with fake as port:
            client = smtpx.aio.SMTP(hostname="127.0.0.1", port=port, timeout=None)
            await client.connect()
            task = asyncio.create_task(client.sendmail("a@example.com", ["b@example.com"], MESSAGE))
            await asyncio.sleep(0.2)  # MAIL is out; the server never answers
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(fake.disconnected.wait(), 5)
            assert not client.is_connected

    run(main())


def test_timeout_on_a_silent_server() -> None:
    async def main() -> None:
        fake = FakeServer(greet=False)
        async with fake as port:
            client = smtpx.aio.SMTP(hostname="127.0.0.1", port=port, timeout=0.5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(smtpx.SmtpTimeoutError):
                await client.connect()
            assert loop.time() - started < 5
            assert fake.connected.is_set()
            await asyncio.wait_for(fake.disconnected.wait(), 5)
            assert not client.is_connected

    run(main())


# The asyncio server -----------------------------------------------------------------------


class AsyncRecorder:
    """Coroutine hooks, aiosmtpd style."""

    def __init__(self) -> None:
        self.messages: list[tuple[str | None, list[str], bytes]] = []
        self.helo: list[str] = []

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        self.helo.append(hostname)
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.startswith("no"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: smtpx.Envelope) -> str:
        assert isinstance(session, smtpx.Session)
        assert server.hostname == "mx.aio.test"
        await asyncio.sleep(0)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content or b""))
        return "250 2.0.0 Ok: queued as A%d" % len(self.messages)


async def with_server(handler: Any, body: Callable[[str, int], Awaitable[T]], **kw: Any) -> T:
    async with smtpx.aio.Server(handler, port=0, server_hostname="mx.aio.test", **kw) as server:
        host, port = server.address
        return await body(host, port)


def test_smtplib_to_aio_server() -> None:
    handler = AsyncRecorder()

    def client(host: str, port: int) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(host, port, timeout=10) as s:
            code, banner = s.ehlo("client.test")
            assert code == 250 and banner.startswith(b"mx.aio.test")
            return s.sendmail("a@example.com", ["b@example.com", "nobody@example.com"], MESSAGE)

    async def body(host: str, port: int) -> dict[str, tuple[int, bytes]]:
        return await asyncio.to_thread(client, host, port)

    refused = run(with_server(handler, body))
    assert refused == {"nobody@example.com": (550, b"5.1.1 no such user")}
    assert handler.helo == ["client.test"]
    assert handler.messages == [("a@example.com", ["b@example.com"], MESSAGE)]


def test_aiosmtplib_to_aio_server() -> None:
    import aiosmtplib

    handler = AsyncRecorder()

    async def body(host: str, port: int) -> Any:
        return await aiosmtplib.send(
            MESSAGE, sender="a@example.com", recipients=["b@example.com"],
            hostname=host, port=port, start_tls=False, timeout=10,
        )

    errors, response = run(with_server(handler, body))
    assert errors == {}
    assert "queued as A1" in response
    assert handler.messages == [("a@example.com", ["b@example.com"], MESSAGE)]


def test_aio_client_to_aio_server_with_auth() -> None:
    handler = AsyncRecorder()
    logins: list[tuple[str, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> bool:
        logins.append((mechanism, data.login))
        return bool(data.password == b"secret")

    async def body(host: str, port: int) -> None:
        # In clear (allowed): the refusal and the login are under test.
        with pytest.raises(smtplib.SMTPAuthenticationError):
            async with smtpx.aio.SMTP(hostname=host, port=port, username="u", password="wrong",
                                      allow_insecure_auth=True, timeout=10):
                pass
        async with smtpx.aio.SMTP(hostname=host, port=port, username="u", password="secret",
                                  allow_insecure_auth=True, timeout=10) as c:
            assert (await c.sendmail("a@example.com", "b@example.com", MESSAGE))[0] == {}

    # auth_require_tls defaults to True (as aiosmtpd's): AUTH in clear is asked for.
    run(with_server(handler, body, authenticator=authenticator, auth_required=True, auth_require_tls=False))
    assert [login for _, login in logins] == [b"u", b"u"]
    assert len(handler.messages) == 1


def test_aio_server_stop_closes_idle_connections() -> None:
    async def main() -> None:
        server = smtpx.aio.Server(AsyncRecorder(), port=0)
        await server.start()
        host, port = server.address
        reader, writer = await asyncio.open_connection(host, port)
        assert (await reader.readline()).startswith(b"220 ")
        assert server.active_connections() == 1
        await server.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert server.active_connections() == 0

    run(main())


def test_aio_server_graceful_stop_says_421_and_lets_a_transaction_finish() -> None:
    """stop(grace=...): an idle connection gets the engine's 421 and is closed at once; one
    in a transaction (its handle_DATA suspended) finishes it, then gets the 421; none is
    cut."""

    class Slow:
        def __init__(self) -> None:
            self.entered = asyncio.Event()
            self.messages: list[bytes] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.entered.set()
            await asyncio.sleep(0.3)
            self.messages.append(envelope.content)
            return "250 2.0.0 queued"

    async def main() -> None:
        handler = Slow()
        server = smtpx.aio.Server(handler, port=0, server_hostname="mx.aio.test")
        await server.start()
        host, port = server.address
        idle_reader, idle_writer = await asyncio.open_connection(host, port)
        assert (await idle_reader.readline()).startswith(b"220 ")
        busy_reader, busy_writer = await asyncio.open_connection(host, port)
        assert (await busy_reader.readline()).startswith(b"220 ")
        busy_writer.write(b"EHLO c.test\r\n")
        while not (await asyncio.wait_for(busy_reader.readline(), 5)).startswith(b"250 "):
            pass
        busy_writer.write(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        for _ in range(3):  # 250, 250, 354: the group's replies, in order
            await asyncio.wait_for(busy_reader.readline(), 5)
        busy_writer.write(b"hi\r\n.\r\n")
        await asyncio.wait_for(handler.entered.wait(), 5)
        cut = await asyncio.wait_for(server.stop(grace=5), 10)
        assert cut == 0
        shutdown = b"421 4.3.2 mx.aio.test Service shutting down, try again later\r\n"
        assert await asyncio.wait_for(idle_reader.read(), 5) == shutdown
        replies = (await asyncio.wait_for(busy_reader.read(), 5)).split(b"\r\n")
        assert [r[:3] for r in replies] == [b"250", b"421", b""], replies
        assert handler.messages == [b"hi\r\n"]
        assert server.active_connections() == 0
        idle_writer.close()
        busy_writer.close()

    run(main())


def test_aio_server_times_out_a_silent_client() -> None:
    """The read deadline of the server's loop: a client that stays silent past `timeout`
    gets the engine's 421 and is disconnected, while a busy one is not."""

    async def main() -> None:
        async with smtpx.aio.Server(AsyncRecorder(), port=0, timeout=0.5) as server:
            host, port = server.address
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection(host, port)
            assert (await reader.readline()).startswith(b"220 ")
            for _ in range(4):  # 0.8 s of activity in all, each command within the timeout
                await asyncio.sleep(0.2)
                writer.write(b"NOOP\r\n")
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 ")
            started = loop.time()
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line.startswith(b"421 4.4.2"), line
            assert 0.3 < loop.time() - started < 5
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main())


class SlowHooks:
    """Hooks that really suspend (on a timer), and one that fails."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        await asyncio.sleep(0.01)
        if address.startswith("boom"):
            raise RuntimeError("handler failure on purpose")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: smtpx.Envelope) -> str:
        await asyncio.sleep(0.01)
        self.messages.append(envelope.content or b"")
        return "250 2.0.0 queued"


def test_aio_server_pipelined_input_behind_suspended_hooks() -> None:
    """A pipelined group (MAIL, two RCPTs, DATA in one write, as RFC 2920 allows), then
    the content with QUIT behind its final dot, against hooks that suspend: the input
    behind a pending hook waits for it, the replies come in order, a failing hook gets 451
    and the session goes on; three connections at once."""
    handler = SlowHooks()

    async def one(host: str, port: int, i: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(b"EHLO c.test\r\n")
        while not (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 "):
            pass
        writer.write(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<boom@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        replies = [await asyncio.wait_for(reader.readline(), 5) for _ in range(4)]
        writer.write(b"Subject: %d\r\n\r\nbody\r\n.\r\nQUIT\r\n" % i)
        replies += [await asyncio.wait_for(reader.readline(), 5) for _ in range(2)]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        return replies

    async def body(host: str, port: int) -> None:
        for replies in await asyncio.gather(*(one(host, port, i) for i in range(3))):
            assert [r[:3] for r in replies] == [b"250", b"451", b"250", b"354", b"250", b"221"], replies

    run(with_server(handler, body))
    assert sorted(handler.messages) == [b"Subject: %d\r\n\r\nbody\r\n" % i for i in range(3)]


def test_aio_server_stop_cancels_a_pending_hook() -> None:
    """Server.stop while handle_DATA waits forever: the hook is cancelled at its await
    (it sees CancelledError) and stop returns with no connection left."""

    class Stuck:
        def __init__(self) -> None:
            self.entered = asyncio.Event()
            self.cancelled = False

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            return "250 OK"

    async def main() -> None:
        handler = Stuck()
        server = smtpx.aio.Server(handler, port=0)
        await server.start()
        host, port = server.address
        reader, writer = await asyncio.open_connection(host, port)
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(b"HELO c.test\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 ")
        # A client never offered PIPELINING sends one command at a time.
        for command in (b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<b@x.test>\r\n", b"DATA\r\n"):
            writer.write(command)
            await asyncio.wait_for(reader.readline(), 5)
        writer.write(b"hi\r\n.\r\n")
        await asyncio.wait_for(handler.entered.wait(), 5)
        assert server.active_connections() == 1
        await asyncio.wait_for(server.stop(), 10)
        assert handler.cancelled
        assert server.active_connections() == 0
        writer.close()

    run(main())


class TaskMinded:
    """Hooks that need what a task gives: asyncio.timeout before their first suspension,
    asyncio.current_task, and context variables kept from one hook to the next of a
    connection (as in the connection's task of the streams version)."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.seen: list[str | None] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.tasks.append(asyncio.current_task())
        PEER_VAR.set(address)
        try:
            async with asyncio.timeout(0.05):  # armed in place, expires while suspended
                await asyncio.Event().wait()
        except TimeoutError:
            pass
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        self.tasks.append(asyncio.current_task())
        self.seen.append(PEER_VAR.get(None))
        async with asyncio.timeout(5):  # armed and left without suspending
            envelope.rcpt_tos.append(address)
        return "250 OK"


PEER_VAR: "contextvars.ContextVar[str]" = contextvars.ContextVar("PEER_VAR")


# Skipped only on Python 3.10 (the wheel supports 3.10+): the hook under test uses
# asyncio.timeout, which does not exist there. On 3.11, the Python CI runs, it runs.
@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11+")
def test_aio_server_hooks_run_as_the_connections_task() -> None:
    handler = TaskMinded()

    async def body(host: str, port: int) -> None:
        for sender in ("one@x.test", "two@x.test"):  # two connections, one after the other
            async with smtpx.aio.SMTP(hostname=host, port=port, timeout=10) as client:
                assert (await client.sendmail(sender, ["b@x.test"], MESSAGE))[0] == {}

    run(with_server(handler, body))
    assert handler.seen == ["one@x.test", "two@x.test"]
    assert None not in handler.tasks
    first, second = handler.tasks[:2], handler.tasks[2:]
    assert first[0] is first[1] and second[0] is second[1] and first[0] is not second[0]


def test_aio_loopback_example() -> None:
    import subprocess
    import sys

    from conftest import ROOT

    script = str(ROOT / "examples" / "python" / "aio_loopback.py")
    ok = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "received from sender@example.org for someone@example.net" in ok.stdout
    some = subprocess.run(
        [sys.executable, script, "--to", "a@example.net", "b@invalid.example"],
        capture_output=True, text=True, timeout=60,
    )
    assert some.returncode == 1, some.stderr
    assert "b@invalid.example: refused 550" in some.stdout


# LMTP -------------------------------------------------------------------------------------


class LmtpHandler:
    """Answers per recipient, aiosmtpd's way (status lines joined by CRLF) or as a list:
    mailboxes named full* are over quota."""

    def __init__(self, as_list: bool) -> None:
        self.as_list = as_list
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: smtpx.Envelope) -> str | list[str]:
        self.messages.append((list(envelope.rcpt_tos), envelope.content or b""))
        lines = [
            "452 4.2.2 %s is over quota" % rcpt if rcpt.startswith("full") else "250 2.0.0 delivered to %s" % rcpt
            for rcpt in envelope.rcpt_tos
        ]
        return lines if self.as_list else "\r\n".join(lines)


@pytest.mark.parametrize("as_list", [False, True])
def test_aio_lmtp_client_and_server_answer_per_recipient(as_list: bool) -> None:
    handler = LmtpHandler(as_list)
    rcpts = ["a@example.com", "full@example.com", "nobody@example.com", "c@example.com"]

    async def main() -> None:
        async with smtpx.aio.Server(handler, port=0, lmtp=True) as server:
            host, port = server.address
            async with smtpx.aio.LMTP(hostname=host, port=port, timeout=10) as client:
                refused, _ = await client.sendmail("s@example.com", rcpts, MESSAGE)
            # nobody@ is accepted too: LmtpHandler has no handle_RCPT.
            assert refused == {"full@example.com": (452, "4.2.2 full@example.com is over quota")}
            # The blocking client sees each delivery reply too.
            result = await asyncio.to_thread(blocking_lmtp, host, port)
            assert [(r.address, r.code) for r in result.recipients] == [
                ("a@example.com", 250), ("full@example.com", 452)
            ]
            assert result.recipients[0].delivery is not None
            assert result.recipients[0].message == "delivered to a@example.com"

    run(main())
    assert handler.messages[0] == (rcpts, MESSAGE)


def blocking_lmtp(host: str, port: int) -> smtpx.SendResult:
    with smtpx.LMTP(host, port, timeout=10) as client:
        return client.send(MESSAGE, sender="s@example.com", recipients=["a@example.com", "full@example.com"])


def test_aio_lmtp_single_answer_and_smtp_greeting_refused() -> None:
    class One:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 all delivered"

    async def main() -> None:
        async with smtpx.aio.Server(One(), port=0, lmtp=True) as server:
            host, port = server.address
            async with smtpx.aio.LMTP(hostname=host, port=port, timeout=10) as client:
                assert (await client.sendmail("s@example.com", ["a@example.com", "b@example.com"], MESSAGE))[0] == {}
            # An SMTP client's EHLO is refused by an LMTP server.
            with pytest.raises(smtpx.SmtpReplyError):
                async with smtpx.aio.SMTP(hostname=host, port=port, timeout=10):
                    pass

    run(main())
    assert smtpx.aio.LMTP().port == 2003


def test_aio_lmtp_client_against_the_rust_server(tmp_path: Any) -> None:
    from conftest import start_server

    server = start_server(tmp_path / "md", "--lmtp")
    try:
        refused, _ = run(smtpx.aio.send(
            MESSAGE, sender="a@example.com", recipients=["b@example.com", "c@example.com"],
            hostname=server.host, port=server.port, lmtp=True, timeout=10,
        ))
        assert refused == {}
        delivered = server.wait_for(1)
        assert len(delivered) == 1 and b"with LMTP" in delivered[0]
    finally:
        assert server.stop() == 0


def test_blocking_controller_lmtp_answers_per_recipient() -> None:
    handler = LmtpHandler(as_list=False)
    with smtpx.Controller(handler, port=0, lmtp=True) as controller:
        result = blocking_lmtp("127.0.0.1", controller.port)
    assert [(r.address, r.code) for r in result.recipients] == [("a@example.com", 250), ("full@example.com", 452)]
    assert result.recipients[1].message == "full@example.com is over quota"


# The connection limit ---------------------------------------------------------------------


def test_aio_server_connection_limit() -> None:
    async def greeting(host: str, port: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        return await asyncio.wait_for(reader.readline(), 5), reader, writer

    async def main() -> None:
        async with smtpx.aio.Server(AsyncRecorder(), port=0, server_hostname="mx.aio.test", max_connections=2) as server:
            host, port = server.address
            first, r1, w1 = await greeting(host, port)
            second, _, w2 = await greeting(host, port)
            assert first.startswith(b"220 ") and second.startswith(b"220 ")
            refused, r3, w3 = await greeting(host, port)
            assert refused == b"421 4.7.0 mx.aio.test Error: too many connections, try again later\r\n"
            assert await asyncio.wait_for(r3.read(), 5) == b""  # and closed
            w3.close()
            assert server.active_connections() == 2
            # One leaves (its EOF comes after the server let go of the slot): room again.
            w1.write(b"QUIT\r\n")
            assert (await asyncio.wait_for(r1.readline(), 5)).startswith(b"221 ")
            assert await asyncio.wait_for(r1.read(), 5) == b""
            w1.close()
            third, r4, w4 = await greeting(host, port)
            assert third.startswith(b"220 ")
            w4.write(b"NOOP\r\n")
            assert (await asyncio.wait_for(r4.readline(), 5)).startswith(b"250 ")
            w2.close()
            w4.close()

    run(main())


def test_blocking_controller_connection_limit() -> None:
    # The same limit, and the same 421, as the asyncio server's.
    with smtpx.Controller(AsyncRecorder(), port=0, server_hostname="mx.test", max_connections=1) as controller:
        with socket.create_connection(("127.0.0.1", controller.port), timeout=10) as first:
            assert first.recv(100).startswith(b"220 ")
            with socket.create_connection(("127.0.0.1", controller.port), timeout=10) as second:
                assert second.recv(100) == b"421 4.7.0 mx.test Error: too many connections, try again later\r\n"


def test_configured_credentials_in_clear_need_allow_insecure_auth() -> None:
    attempts: list[bytes] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> bool:
        attempts.append(data.login)
        return bool(data.login == b"u" and data.password == b"secret")

    async def body(host: str, port: int) -> None:
        message = b"Subject: x\r\n\r\nx\r\n"
        # The server would take them in clear; the client does not send them.
        with pytest.raises(smtpx.SmtpInsecureAuthError) as refused:
            async with smtpx.aio.SMTP(hostname=host, port=port, username="u", password="secret", timeout=10):
                pass
        assert isinstance(refused.value, smtplib.SMTPException)
        with pytest.raises(smtpx.SmtpInsecureAuthError):
            await smtpx.aio.send(message, sender="a@example.org", recipients=["b@example.net"],
                                 hostname=host, port=port, username="u", password="secret", timeout=10)
        assert attempts == []
        # Allowed: the client and the one-call send log in.
        async with smtpx.aio.SMTP(hostname=host, port=port, username="u", password="secret",
                                  allow_insecure_auth=True, timeout=10) as c:
            assert (await c.noop())[0] == 250
        refused_rcpts, _ = await smtpx.aio.send(
            message, sender="a@example.org", recipients=["b@example.net"], hostname=host, port=port,
            username="u", password="secret", allow_insecure_auth=True, timeout=10,
        )
        assert refused_rcpts == {}
        assert attempts == [b"u", b"u"]

    run(with_server(AsyncRecorder(), body, authenticator=authenticator, auth_required=True, auth_require_tls=False))
