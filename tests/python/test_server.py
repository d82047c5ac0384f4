"""smtpx.Controller driven by smtplib, aiosmtplib and smtpx's own client, with handlers
written as aiosmtpd's documentation writes them (and aiosmtpd's own handler classes)."""

from __future__ import annotations

import asyncio
import io
import logging
import pathlib
import smtplib
import socket
import ssl
import threading
import time
from email.message import EmailMessage
from typing import Any, Iterator

import pytest

import smtpx

MSG = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n"


class Collect:
    """aiosmtpd's docs: 'a handler that prints and keeps each message'."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes, tuple[str, int], str | None]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer, session.host_name)
        )
        return "250 Message accepted for delivery"


class ExampleHandler:
    """The handler from aiosmtpd's documentation (docs/controller.rst), verbatim in spirit:
    refuse RCPT outside example.com, print in handle_DATA."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if not address.endswith("@example.com"):
            return "550 not relaying to that domain"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append(envelope.content)
        return "250 Message accepted for delivery"


@pytest.fixture
def collect() -> Iterator[tuple[smtpx.Controller, Collect]]:
    handler = Collect()
    controller = smtpx.Controller(handler, port=0, server_hostname="mx.test", timeout=10)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def test_smtplib_delivers_to_a_python_handler(collect: tuple[smtpx.Controller, Collect]) -> None:
    controller, handler = collect
    with smtplib.SMTP(controller.hostname, controller.port, local_hostname="client.test", timeout=10) as client:
        code, _ = client.ehlo()
        assert code == 250 and client.has_extn("pipelining")
        assert client.sendmail("a@example.org", ["b@example.net", "c@example.net"], MSG) == {}
    ((sender, rcpts, content, peer, host_name),) = handler.received
    assert (sender, rcpts, host_name) == ("a@example.org", ["b@example.net", "c@example.net"], "client.test")
    assert content == MSG
    assert peer[0] == "127.0.0.1" and isinstance(peer[1], int)


def test_aiosmtplib_delivers(collect: tuple[smtpx.Controller, Collect]) -> None:
    import aiosmtplib

    controller, handler = collect
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.net"
    msg["Subject"] = "aio"
    msg.set_content("hi")

    async def send() -> None:
        errors, response = await aiosmtplib.send(msg, hostname=controller.hostname, port=controller.port, timeout=10)
        assert errors == {}
        assert response == "Message accepted for delivery"

    asyncio.run(send())
    assert handler.received[0][1] == ["b@example.net"]


def test_the_aiosmtpd_documentation_example_refuses_relaying() -> None:
    handler = ExampleHandler()
    with smtpx.Controller(handler, port=0) as controller:
        with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
            refused = client.sendmail("a@example.org", ["x@example.com", "y@elsewhere.net"], MSG)
            assert refused == {"y@elsewhere.net": (550, b"not relaying to that domain")}
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("a@example.org", ["z@elsewhere.net"], MSG)
    assert handler.seen == [MSG]


def test_aiosmtpd_builtin_handlers_work_unchanged() -> None:
    from aiosmtpd.handlers import Debugging, Sink

    stream = io.StringIO()
    for handler in (Sink(), Debugging(stream)):
        with smtpx.Controller(handler, port=0) as controller:
            with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
                assert client.sendmail("a@example.org", ["b@example.net"], MSG, mail_options=["BODY=8BITMIME"]) == {}
    printed = stream.getvalue()
    assert "---------- MESSAGE FOLLOWS ----------" in printed
    assert "Subject: hi" in printed
    assert "BODY=8BITMIME" in printed


def test_plain_function_hooks_and_mail_options() -> None:
    calls: list[Any] = []

    class Sync:
        def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
            session.host_name = hostname
            calls.append(("EHLO", hostname))
            return responses

        def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
            calls.append(("MAIL", address, mail_options))
            envelope.mail_from = address
            return "250 OK"

        def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            calls.append(("DATA", envelope.mail_from, envelope.rcpt_tos))
            assert server.hostname == "mx.sync.test"
            return "250 2.0.0 Ok: queued as SYNC1"

        def handle_VRFY(self, server: Any, session: Any, envelope: Any, address: str) -> str:
            return "252 2.1.5 maybe"

    with smtpx.Controller(Sync(), port=0, server_hostname="mx.sync.test") as controller:
        with smtpx.SMTP(controller.hostname, controller.port, local_hostname="c.test", timeout=10) as client:
            result = client.send(MSG, sender="a@example.org", recipients=["b@example.net"], mail_options=["BODY=8BITMIME"])
            assert result.ok and result.queue_id == "SYNC1"
            assert client.vrfy("someone") == (252, b"2.1.5 maybe")
    assert calls[0] == ("EHLO", "c.test")
    assert calls[1][0] == "MAIL" and calls[1][1] == "a@example.org" and "BODY=8BITMIME" in calls[1][2]
    assert calls[2] == ("DATA", "a@example.org", ["b@example.net"])


def test_a_raising_handler_gives_451_and_the_server_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("database down")
            return "250 OK"

    handler = Flaky()
    with caplog.at_level(logging.ERROR, logger="smtpx.server"):
        with smtpx.Controller(handler, port=0) as controller:
            with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
                with pytest.raises(smtplib.SMTPDataError) as failed:
                    client.sendmail("a@example.org", ["b@example.net"], MSG)
                assert failed.value.smtp_code == 451
                assert b"database down" not in failed.value.smtp_error
                assert client.sendmail("a@example.org", ["b@example.net"], MSG) == {}
    assert any("database down" in r.getMessage() or (r.exc_info and "database down" in str(r.exc_info[1])) for r in caplog.records)


def test_a_bad_status_from_a_handler_is_451() -> None:
    class Wrong:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> Any:
            return 250

    with smtpx.Controller(Wrong(), port=0) as controller:
        with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("a@example.org", ["b@example.net"], MSG)
            assert refused.value.recipients["b@example.net"][0] == 451


def test_starttls_and_auth(cert_files: tuple[pathlib.Path, pathlib.Path], ca_file: pathlib.Path) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> smtpx.AuthResult:
        ok = auth_data.login == b"alice" and auth_data.password == b"s3cret"
        return smtpx.AuthResult(success=ok)

    handler = Collect()
    with smtpx.Controller(
        handler, port=0, tls_context=cert_files, require_starttls=True, authenticator=authenticator, auth_required=True
    ) as controller:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        with smtplib.SMTP("localhost", controller.port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls") and not client.has_extn("auth")
            with pytest.raises(smtplib.SMTPSenderRefused) as plain:
                client.sendmail("a@example.org", ["b@example.net"], MSG)
            assert plain.value.smtp_code == 530
            client.starttls(context=ctx)
            client.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            client.login("alice", "s3cret")
            assert client.sendmail("a@example.org", ["b@example.net"], MSG) == {}
        # smtpx's own client, STARTTLS required and login in one call.
        result = smtpx.send(
            MSG, sender="a@example.org", recipients=["c@example.net"], hostname="localhost", port=controller.port,
            start_tls=True, cert_bundle=str(ca_file), username="alice", password="s3cret", timeout=10,
        )
        assert result.ok
    assert [r[1] for r in handler.received] == [["b@example.net"], ["c@example.net"]]


def test_maildir_handler(tmp_path: pathlib.Path) -> None:
    maildir = tmp_path / "Maildir"
    with smtpx.Controller(smtpx.Maildir(maildir), port=0, server_hostname="mx.test") as controller:
        with smtpx.SMTP(controller.hostname, controller.port, local_hostname="client.test", timeout=10) as client:
            assert client.sendmail("a@example.org", ["b@example.net"], MSG) == {}
    (delivered,) = list((maildir / "new").iterdir())
    data = delivered.read_bytes()
    assert data.startswith(b"Return-Path: <a@example.org>\r\n")
    assert data.endswith(MSG)


def test_stop_with_connections_open() -> None:
    class Slow:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await asyncio.sleep(0.3)
            return "250 OK"

    controller = smtpx.Controller(Slow(), port=0, timeout=30)
    controller.start()
    idle = socket.create_connection((controller.hostname, controller.port), timeout=10)
    assert idle.recv(1024).startswith(b"220 ")
    busy = smtplib.SMTP(controller.hostname, controller.port, timeout=10)
    outcome: list[Any] = []
    sender = threading.Thread(target=lambda: outcome.append(busy.sendmail("a@example.org", ["b@example.net"], MSG)))
    sender.start()
    time.sleep(0.1)
    started = time.monotonic()
    controller.stop(grace=5)
    cut = controller.cut_connections
    assert time.monotonic() - started < 5
    sender.join(timeout=10)
    assert outcome == [{}], "the transaction in flight finishes"
    assert cut == 0
    assert idle.recv(1024).startswith(b"421 ")
    idle.close()
    busy.close()
    with pytest.raises(OSError):
        socket.create_connection((controller.hostname, controller.port), timeout=2).close()


def test_sixteen_threads_send_to_a_python_handler(collect: tuple[smtpx.Controller, Collect]) -> None:
    controller, handler = collect
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with smtpx.SMTP(controller.hostname, controller.port, timeout=20) as client:
                for i in range(5):
                    client.sendmail("a@example.org", [f"t{n}-{i}@example.net"], MSG)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(r[1][0] for r in handler.received) == sorted(f"t{n}-{i}@example.net" for n in range(16) for i in range(5))


def test_connection_events_reach_python_logging(caplog: pytest.LogCaptureFixture, tmp_path: pathlib.Path) -> None:
    with caplog.at_level(logging.INFO, logger="smtpx"):
        with smtpx.Controller(smtpx.Maildir(tmp_path / "md"), port=0) as controller:
            with smtplib.SMTP(controller.hostname, controller.port, timeout=10) as client:
                client.sendmail("a@example.org", ["b@example.net"], MSG)
            deadline = time.monotonic() + 5
            while not any("closed" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
                time.sleep(0.02)
    messages = [(r.name, r.getMessage()) for r in caplog.records if r.name.startswith("smtpx.")]
    assert any(name == "smtpx.smtp_core.server.connection" and "connected" in text for name, text in messages), messages
    assert any("closed" in text for _, text in messages), messages
    # No message content or credentials in the log.
    assert not any("Hello." in text for _, text in messages)


FLOOD = 2000


def _flood(port: int, count: int, within: float) -> list[bytes]:
    """Opens `count` connections to 127.0.0.1:`port` at once (non-blocking connects) and
    returns the first line each one reads within `within` seconds (b"" when none)."""
    import selectors

    sel = selectors.DefaultSelector()
    socks = []
    lines: dict[int, bytes] = {}
    try:
        for i in range(count):
            s = socket.socket()
            s.setblocking(False)
            socks.append(s)
            lines[i] = b""
        # The connects back to back, so that they arrive as one burst.
        for s in socks:
            s.connect_ex(("127.0.0.1", port))
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
        deadline = time.monotonic() + within
        waiting = count
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                i = key.data
                try:
                    chunk = key.fileobj.recv(512)  # type: ignore[union-attr]
                except OSError:
                    chunk = b""
                lines[i] += chunk
                if not chunk or b"\r\n" in lines[i]:
                    sel.unregister(key.fileobj)
                    waiting -= 1
        return [lines[i] for i in range(count)]
    finally:
        sel.close()
        for s in socks:
            s.close()


def test_a_flood_of_connections_is_greeted() -> None:
    """2,000 connections opened at once are each greeted (220, or 421 past the limit)
    within seconds: the listener's accept queue (listen_backlog, 1,024 by default) holds
    the burst, where std's 128 left hundreds in handshakes the kernel had forgotten."""
    import resource

    from smtpx.adapter import ServerSettings

    assert ServerSettings().listen_backlog == 1024
    # A descriptor at each end of each connection, in this one process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * FLOOD + 200
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard), hard))
    with pytest.raises(ValueError):
        smtpx.Controller(Collect(), port=0, listen_backlog=0)
    with smtpx.Controller(Collect(), port=0, server_hostname="mx.flood.test", listen_backlog=1024) as controller:
        lines = _flood(controller.port, FLOOD, within=10.0)
    silent = [line for line in lines if not (line.startswith(b"220 ") or line.startswith(b"421 "))]
    assert not silent, f"{len(silent)} of {FLOOD} connections not greeted, first: {silent[0]!r}"
