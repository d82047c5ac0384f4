"""The wire trace: smtplib's ``set_debuglevel`` output of both clients, the ``smtpx.wire``
logger of both servers (and of the asyncio client), and the native trace callables.
Credentials and message content must never show."""

from __future__ import annotations

import asyncio
import base64
import logging
import pathlib
import re
import smtplib
from typing import Any, Awaitable, Iterator, TypeVar

import pytest

import smtpx
import smtpx.aio
from smtpx import _native

from conftest import RunningServer, start_server
from drivers import DRIVERS, serving

T = TypeVar("T")

USER = "alice"
PASSWORD = "s3cret-pass"
# Everything a leaked credential could look like on the wire.
SECRETS = [
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
]
BODY_MARKER = "trace-body-marker-7f3a"
MESSAGE = f"From: a@example.org\r\nTo: b@example.net\r\nSubject: {BODY_MARKER}\r\n\r\n{BODY_MARKER}\r\n".encode()
# smtplib's level-2 prefix: datetime.time as printed (microseconds may be absent at .0).
TIME = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)? ")


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


def assert_nothing_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert BODY_MARKER not in text


@pytest.fixture
def auth_server(tmp_path: pathlib.Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path / "md", "--auth", f"{USER}:{PASSWORD}", "--allow-insecure-auth")
    try:
        yield server
    finally:
        assert server.stop() == 0


# The clients' debug output ------------------------------------------------------------


def test_smtp_debuglevel_1_prints_what_smtplib_prints(
    auth_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Plain TCP (allowed): the trace, not TLS, is under test.
    client = smtpx.SMTP(timeout=10, allow_insecure_auth=True)
    client.set_debuglevel(1)
    assert client.debuglevel == 1
    client.connect(auth_server.host, auth_server.port)
    client.login(USER, PASSWORD)
    assert client.sendmail("a@example.org", ["b@example.net"], MESSAGE) == {}
    client.quit()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == f"connect: to ('{auth_server.host}', {auth_server.port}) None"
    assert lines[1].startswith("reply: b'220 mx.test")
    assert lines[2].startswith("reply: retcode (220); Msg: b'mx.test")
    assert lines[3].startswith("connect: b'mx.test")
    assert lines[4].startswith("send: 'EHLO ") and lines[4].endswith("\\r\\n'")
    assert "reply: b'250-mx.test" in err
    assert re.search(r"^reply: retcode \(250\); Msg: b'mx\.test\\n.*PIPELINING", err, re.M)
    assert "send: 'AUTH PLAIN <redacted>\\r\\n'" in err
    assert "reply: retcode (235);" in err
    assert "send: 'MAIL FROM:<a@example.org>" in err
    assert "send: '<message content, " in err
    assert "send: 'QUIT\\r\\n'" in err
    assert "reply: b'221 " in err
    assert_nothing_secret(err)
    assert len(auth_server.wait_for(1)) == 1


def test_smtp_debuglevel_2_adds_the_time_and_0_stops(
    auth_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with smtpx.SMTP(auth_server.host, auth_server.port, timeout=10, allow_insecure_auth=True) as client:
        assert capsys.readouterr().err == ""  # level 0: nothing
        client.set_debuglevel(2)  # on a connected client
        client.noop()
        client.login(USER, PASSWORD)
        err = capsys.readouterr().err
        lines = err.splitlines()
        assert lines and all(TIME.match(line) for line in lines), lines
        assert any(line.endswith("send: 'NOOP\\r\\n'") for line in lines)
        assert any(re.search(r" reply: b'250 2\.0\.0 ", line) for line in lines)
        assert any(" reply: retcode (250); Msg: b'2.0.0 " in line for line in lines)
        assert any(line.endswith("send: 'AUTH PLAIN <redacted>\\r\\n'") for line in lines)
        assert not any("connect:" in line for line in lines)  # switched on after the greeting
        assert_nothing_secret(err)
        client.debuglevel = 0
        assert client.noop()[0] == 250
        assert capsys.readouterr().err == ""


def test_lmtp_debuglevel_shows_lhlo(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = start_server(tmp_path / "md", "--lmtp")
    try:
        client = smtpx.LMTP()
        client.set_debuglevel(1)
        client.connect(server.host, server.port)
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.quit()
        err = capsys.readouterr().err
        assert re.search(r"^send: 'LHLO ", err, re.M)
        assert re.search(r"^reply: retcode \(250\);", err, re.M)
        assert_nothing_secret(err)
    finally:
        assert server.stop() == 0


def test_aio_smtp_debuglevel_and_wire_logger(
    auth_server: RunningServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    async def talk() -> None:
        client = smtpx.aio.SMTP(
            auth_server.host, auth_server.port, timeout=10, start_tls=False, allow_insecure_auth=True
        )
        client.set_debuglevel(1)
        await client.connect()
        await client.login(USER, PASSWORD)
        await client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.set_debuglevel(0)
        await client.noop()  # not printed
        await client.quit()

    run(talk())
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == f"connect: to ('{auth_server.host}', {auth_server.port}) None"
    assert lines[3].startswith("connect: b'mx.test")
    assert re.search(r"^send: 'EHLO ", err, re.M)
    assert re.search(r"^reply: b'250", err, re.M)
    assert "send: 'AUTH PLAIN <redacted>\\r\\n'" in err
    assert "send: '<message content, " in err
    assert "NOOP" not in err
    assert_nothing_secret(err)

    # With smtpx.wire at DEBUG when connecting, every line is also logged.
    caplog.set_level(logging.DEBUG, logger="smtpx.wire")

    async def logged() -> None:
        async with smtpx.aio.SMTP(
            auth_server.host, auth_server.port, timeout=10, start_tls=False, allow_insecure_auth=True
        ) as client:
            await client.login(USER, PASSWORD)
            await client.noop()

    run(logged())
    messages = [r.getMessage() for r in caplog.records if r.name == "smtpx.wire"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "smtpx.wire")
    assert any(re.fullmatch(r"conn=\d+ S: 220 mx\.test.*", m) for m in messages)
    assert any(re.fullmatch(r"conn=\d+ C: EHLO .*", m) for m in messages)
    assert any(re.fullmatch(r"conn=\d+ C: AUTH PLAIN <redacted>", m) for m in messages)
    assert any(re.fullmatch(r"conn=\d+ C: NOOP", m) for m in messages)
    assert_nothing_secret("\n".join(messages))
    assert capsys.readouterr().err == ""  # logging is not debug output


# The servers' wire logger -------------------------------------------------------------


class Keep:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> smtpx.AuthResult:
    return smtpx.AuthResult(success=(auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode()))


@pytest.mark.parametrize("driver", DRIVERS)
def test_server_logs_the_wire_on_smtpx_wire(driver: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpx.wire")
    handler = Keep()
    with serving(driver, handler, authenticator=authenticator, auth_require_tls=False) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.login(USER, PASSWORD)
            assert client.sendmail("a@example.org", ["b@example.net"], MESSAGE) == {}
            assert client.noop()[0] == 250  # the DATA lines are logged by now
    assert len(handler.messages) == 1
    records = [r for r in caplog.records if r.name == "smtpx.wire"]
    assert records and all(r.levelno == logging.DEBUG for r in records)
    messages = [r.getMessage() for r in records]
    assert all(re.fullmatch(r"conn=\d+ [CS]: .*", m) for m in messages), messages
    assert any(re.fullmatch(r"conn=\d+ C: (?i:ehlo) .*", m) for m in messages)
    assert any(re.fullmatch(r"conn=\d+ S: 250.*", m) for m in messages)
    assert any(re.fullmatch(r"conn=\d+ C: (?i:auth) PLAIN <redacted>", m) for m in messages)
    assert any(re.fullmatch(r"conn=\d+ C: <message content, \d+ octets>", m) for m in messages)
    assert_nothing_secret("\n".join(messages))


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_wire_logger_is_read_when_the_server_starts(driver: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smtpx.wire")
    with serving(driver, Keep()) as (host, port):
        # Enabled after the start: this server installed no trace, so logs nothing.
        caplog.set_level(logging.DEBUG, logger="smtpx.wire")
        with smtplib.SMTP(host, port, timeout=10) as client:
            assert client.noop()[0] == 250
    assert [r for r in caplog.records if r.name == "smtpx.wire"] == []


# The native trace callables ------------------------------------------------------------


def test_native_sessions_trace_to_a_callable_which_can_be_removed() -> None:
    server = _native.ServerSession("mx.test")
    lines: list[tuple[int, str, str]] = []
    server.set_trace(lambda *line: lines.append(line), 7)
    while (event := server.next_event()) is not None:
        if event.needs_decision:
            server.accept()
    server.receive(b"NOOP\r\n", 0.0)
    while server.next_event() is not None:
        pass
    assert lines == [(7, "S", "220 mx.test ESMTP smtpx"), (7, "C", "NOOP"), (7, "S", "250 2.0.0 Ok")]
    server.set_trace(None)
    server.receive(b"NOOP\r\n", 0.0)
    while server.next_event() is not None:
        pass
    assert len(lines) == 3
    assert server.output().count(b"250 2.0.0 Ok\r\n") == 2

    client = _native.ClientSession("client.test")
    seen: list[tuple[int, str, str]] = []
    client.set_trace(lambda *line: seen.append(line), 9)
    client.receive(b"220 mx.test ESMTP\r\n", 0.0)
    assert client.next_event() is None
    assert seen == [(9, "S", "220 mx.test ESMTP"), (9, "C", "EHLO client.test")]


def test_a_trace_callable_that_raises_is_reported_once_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(connection: int, direction: str, text: str) -> None:
        calls.append(text)
        raise RuntimeError("trace bug")

    connection = _native.ServerConnection("mx.test")
    connection.set_trace(broken, 3)
    kind, _ = connection.next_action(0.0)
    assert kind == _native.ServerConnection.CONNECT
    connection.connected()
    out = b""

    def pump() -> None:
        nonlocal out
        for _ in range(100):
            kind, payload = connection.next_action(0.0)
            if kind == _native.ServerConnection.WRITE:
                out += payload
            elif kind == _native.ServerConnection.HOOK:
                connection.answer(None)
            else:
                assert kind == _native.ServerConnection.READ
                return
        raise AssertionError("the connection never waited to read")

    pump()
    for _ in range(2):
        connection.receive(b"NOOP\r\n", 0.0)
        pump()
    assert out == b"220 mx.test ESMTP smtpx\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
    assert calls == ["220 mx.test ESMTP smtpx", "NOOP", "250 2.0.0 Ok", "NOOP", "250 2.0.0 Ok"]
    errors = [r for r in caplog.records if r.name == "smtpx.wire" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)
