"""smtpx's client against aiosmtpd and against the Rust example server (smtp-server)."""

from __future__ import annotations

import io
import pathlib
import smtplib
import ssl
import threading
from email.message import EmailMessage
from typing import Any

import pytest

import smtpx
from conftest import Recorder, RunningServer, free_port, start_server


def message(subject: str = "hello", to: str = "bob@example.net") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = to
    msg["Bcc"] = "hidden@example.net"
    msg["Subject"] = subject
    msg.set_content("Hello from smtpx.\n.leading dot\n")
    return msg


# -- against aiosmtpd ---------------------------------------------------------------------


def test_smtplib_conventions_against_aiosmtpd(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    with smtpx.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as client:
        code, msg = client.ehlo()
        assert code == 250 and isinstance(msg, bytes)
        assert client.does_esmtp
        assert client.has_extn("SIZE") and "size" in client.esmtp_features
        assert client.noop() == (250, b"OK")
        assert client.vrfy("someone")[0] == 252
        assert client.help().startswith(b"Supported commands")
        refused = client.sendmail(
            "alice@example.org", ["bob@example.net", "nobody@example.net"], "Subject: x\n\nhi\n"
        )
        assert refused == {"nobody@example.net": (550, b"5.1.1 no such user")}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as everyone:
            client.sendmail("alice@example.org", ["no1@example.net", "no2@example.net"], b"x\r\n")
        assert set(everyone.value.recipients) == {"no1@example.net", "no2@example.net"}
        assert isinstance(everyone.value, smtpx.SmtpRecipientsRefused)
        # The connection is still usable after the refusal.
        assert client.rset()[0] == 250
    assert handler.messages == [("alice@example.org", ["bob@example.net"], b"Subject: x\r\n\r\nhi\r\n")]


def test_send_message_takes_envelope_from_headers(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.send_message(message()) == {}
    ((sender, rcpts, content),) = handler.messages
    assert sender == "alice@example.org"
    assert rcpts == ["bob@example.net", "hidden@example.net"]
    assert b"Bcc" not in content and b"Subject: hello\r\n" in content
    assert b"\r\n.leading dot\r\n" in content


def test_send_returns_a_result_per_recipient(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, _ = aiosmtpd_server
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        result = client.send(
            b"Subject: r\r\n\r\nhi\r\n",
            sender="alice@example.org",
            recipients=["bob@example.net", "nobody@example.net"],
        )
    assert result.ok
    assert result.queue_id == "Q1"
    assert [(r.address, r.code, r.accepted) for r in result.recipients] == [
        ("bob@example.net", 250, True),
        ("nobody@example.net", 550, False),
    ]
    assert result.refused[0].enhanced == "5.1.1"
    assert result.refused[0].message == "no such user"
    assert result.data is not None and result.data.enhanced == "2.0.0"


def test_send_streams_a_binary_file(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    body = b"".join(b"line %d of a long message\r\n" % i for i in range(20000))
    source = io.BytesIO(b"Subject: big\r\n\r\n" + body)
    reads = 0
    original = source.read

    def counting_read(n: int = -1) -> bytes:
        nonlocal reads
        reads += 1
        assert n == 64 * 1024
        return original(n)

    source.read = counting_read  # type: ignore[method-assign]
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        result = client.send(source, sender="a@example.org", recipients=["b@example.net"])
    assert result.ok
    assert handler.messages[0][2] == b"Subject: big\r\n\r\n" + body
    assert reads > 5


def test_an_exception_in_the_file_is_raised_and_nothing_is_delivered(
    aiosmtpd_server: tuple[int, Recorder],
) -> None:
    port, handler = aiosmtpd_server

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            raise RuntimeError("disk on fire")

    client = smtpx.SMTP("127.0.0.1", port, timeout=10)
    with pytest.raises(RuntimeError, match="disk on fire"):
        client.send(Broken(), sender="a@example.org", recipients=["b@example.net"])
    client.close()
    assert handler.messages == []


def test_one_call_send(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    result = smtpx.send(message(), hostname="127.0.0.1", port=port, timeout=10)
    assert result.ok and len(result.accepted) == 2
    assert handler.messages[0][0] == "alice@example.org"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.sendmail("a@example.org\r\nRSET", ["b@example.net"], b"x"),
        lambda c: c.sendmail("a@example.org", ["b@example.net\nDATA"], b"x"),
        lambda c: c.sendmail("a@example.org", ["b@example.net"], b"x", mail_options=["X=1\r\nRSET"]),
        lambda c: c.sendmail("a@example.org", ["b@example.net"], b"x", rcpt_options=["NOTIFY=NEVER\r\n"]),
        lambda c: c.vrfy("x\r\nRSET"),
        lambda c: c.expn("list\n"),
        lambda c: c.help("x\rQUIT"),
        lambda c: c.login("user\r\n", "pw"),
    ],
)
def test_cr_lf_is_a_value_error_and_nothing_is_sent(
    aiosmtpd_server: tuple[int, Recorder], call: Any
) -> None:
    port, handler = aiosmtpd_server
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        with pytest.raises(ValueError):
            call(client)
        # The session is intact: nothing half-sent is waiting for a reply.
        assert client.noop() == (250, b"OK")
    assert handler.messages == []


def test_cr_lf_in_one_call_send_is_refused_before_connecting() -> None:
    port = free_port()  # nobody listens: a connection attempt would fail differently
    with pytest.raises(ValueError):
        smtpx.send(b"x", sender="a@example.org\r\n", recipients=["b@example.net"], port=port)
    with pytest.raises(ValueError):
        smtpx.SMTP("127.0.0.1", port, local_hostname="client\r\n.test")


def test_connection_refused_is_a_connect_error() -> None:
    with pytest.raises(smtpx.SmtpConnectError) as refused:
        smtpx.SMTP("127.0.0.1", free_port(), timeout=5)
    assert isinstance(refused.value, ConnectionError)


def test_calls_after_quit_raise_disconnected(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, _ = aiosmtpd_server
    client = smtpx.SMTP("127.0.0.1", port, timeout=10)
    client.quit()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    unconnected = smtpx.SMTP()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        unconnected.noop()


# -- against the Rust server ------------------------------------------------------------------


def test_delivers_to_the_rust_server(rust_server: RunningServer) -> None:
    with smtpx.SMTP(rust_server.host, rust_server.port, local_hostname="client.test", timeout=10) as client:
        assert client.has_extn("pipelining") and client.has_extn("chunking")
        result = client.send(message(), recipients=["bob@example.net"])
        assert result.ok and result.queue_id
        assert result.data is not None and f"queued as {result.queue_id}" in result.data.text
    (data,) = rust_server.wait_for(1)
    assert data.startswith(b"Return-Path: <alice@example.org>\r\nReceived: from client.test")
    assert b"\r\n.leading dot\r\n" in data


def test_many_messages_over_one_connection(rust_server: RunningServer) -> None:
    with smtpx.SMTP(rust_server.host, rust_server.port, timeout=10) as client:
        for i in range(50):
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: %d\r\n\r\nhi\r\n" % i) == {}
    assert len(rust_server.wait_for(50)) == 50


def test_send_batch_from_a_generator_past_one_engine_batch(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--max-size", "5000")
    try:
        def messages() -> Any:
            for n in range(1100):  # more than the 1,000 handed to the engine at a time
                if n == 10:
                    yield ("a@example.org", ["b@example.net"], b"x" * 6000)  # over SIZE
                elif n == 20:
                    yield ("a@example.org", ["nobody@example.net", "b@example.net"], b"Subject: 20\r\n\r\nx\r\n")
                elif n == 30:
                    yield message(subject="thirty")
                else:
                    yield ("a@example.org", "b@example.net", "Subject: %d\n\nhi\n" % n)

        with smtpx.SMTP(server.host, server.port, timeout=10) as client:
            outcomes = client.send_batch(messages())
        assert len(outcomes) == 1100
        too_large = outcomes[10]
        assert isinstance(too_large, smtplib.SMTPDataError) and too_large.smtp_code == 552
        ok = [o for i, o in enumerate(outcomes) if i != 10]
        assert all(isinstance(o, smtpx.SendResult) and o.ok for o in ok)
        assert isinstance(outcomes[30], smtpx.SendResult)
        assert [r.address for r in outcomes[30].accepted] == ["bob@example.net", "hidden@example.net"]
        assert len(server.wait_for(1099)) == 1099
    finally:
        assert server.stop() == 0


def test_send_batch_checks_every_envelope_before_sending(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
        with pytest.raises(ValueError):
            client.send_batch([
                ("a@example.org", ["b@example.net"], b"one\r\n"),
                ("a@example.org", ["b@example.net>\r\nRSET"], b"two\r\n"),
            ])
        # Past the first 1,000 handed to the engine too, and for what only the engine's
        # address parser refuses.
        many: list[tuple[str, list[str], bytes]] = [("a@example.org", ["b@example.net"], b"x\r\n")] * 1500
        with pytest.raises(ValueError):
            client.send_batch(many + [("a@example.org", ["not an address"], b"x\r\n")])
        outcomes = client.send_batch([("a@example.org", ["b@example.net", "nobody@example.net"], b"three\r\n")])
        [result] = outcomes
        assert isinstance(result, smtpx.SendResult)
        assert [r.address for r in result.refused] == ["nobody@example.net"]
    assert [m[2] for m in handler.messages] == [b"three\r\n"]


def test_sixteen_threads_send_at_once(rust_server: RunningServer) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with smtpx.SMTP(rust_server.host, rust_server.port, timeout=20) as client:
                for i in range(5):
                    client.sendmail("a@example.org", [f"t{n}@example.net"], b"Subject: %d-%d\r\n\r\nhi\r\n" % (n, i))
        except BaseException as e:  # noqa: BLE001 - collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(rust_server.wait_for(80, timeout=20)) == 80


def test_sender_and_data_refusals_raise_like_smtplib() -> None:
    from aiosmtpd.controller import Controller

    class Picky:
        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            if address.startswith("spammer"):
                return "553 5.7.1 go away"
            envelope.mail_from = address
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "554 5.6.0 content rejected"

    port = free_port()
    controller = Controller(Picky(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with smtpx.SMTP("127.0.0.1", port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("spammer@example.org", ["b@example.net"], b"x\r\n")
            assert (refused.value.smtp_code, refused.value.sender) == (553, "spammer@example.org")
            assert refused.value.smtp_error == b"5.7.1 go away"
            with pytest.raises(smtplib.SMTPDataError) as data:
                client.sendmail("a@example.org", ["b@example.net"], b"x\r\n")
            assert data.value.smtp_code == 554
            assert client.noop()[0] == 250
    finally:
        controller.stop()


def test_message_over_the_size_limit_is_refused_before_sending(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--max-size", "2000")
    try:
        with smtpx.SMTP(server.host, server.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as too_big:
                client.sendmail("a@example.org", ["b@example.net"], b"x" * 5000)
            assert too_big.value.smtp_code == 552
            assert client.noop()[0] == 250
    finally:
        assert server.stop() == 0


def test_starttls_and_login_against_the_rust_server(
    tmp_path: pathlib.Path, ca: Any, cert_files: tuple[pathlib.Path, pathlib.Path], ca_file: pathlib.Path
) -> None:
    cert, key = cert_files
    server = start_server(
        tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--require-tls", "--auth", "alice:s3cret"
    )
    try:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        with smtpx.SMTP("localhost", server.port, timeout=10) as client:
            assert client.has_extn("starttls") and not client.has_extn("auth")
            with pytest.raises(smtplib.SMTPNotSupportedError):
                client.login("alice", "s3cret")
            with pytest.raises(smtplib.SMTPSenderRefused) as before_tls:
                client.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nhi\r\n")
            assert before_tls.value.smtp_code == 530
            assert client.starttls(context=ctx)[0] == 220
            assert "PLAIN" in client.esmtp_features["auth"]
            with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
                client.login("alice", "wrong")
            assert wrong.value.smtp_code == 535
            assert client.login("alice", "s3cret")[0] == 235
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: tls\r\n\r\nhi\r\n") == {}
        # An untrusted certificate fails the handshake.
        with smtpx.SMTP("localhost", server.port, timeout=10) as client:
            with pytest.raises(smtpx.SmtpTlsError):
                client.starttls()
        # cafile, and the one-call send with a required STARTTLS and login.
        with smtpx.SMTP("localhost", server.port, timeout=10) as client:
            client.starttls(cafile=str(ca_file))
        result = smtpx.send(
            b"Subject: one call\r\n\r\nhi\r\n",
            sender="a@example.org",
            recipients=["b@example.net"],
            hostname="localhost",
            port=server.port,
            start_tls=True,
            cert_bundle=str(ca_file),
            username="alice",
            password="s3cret",
            timeout=10,
        )
        assert result.ok
        files = server.wait_for(2)
        assert len(files) == 2 and all(b"with ESMTPSA id" in f for f in files)
    finally:
        assert server.stop() == 0


def test_smtp_ssl(tmp_path: pathlib.Path, cert_files: tuple[pathlib.Path, pathlib.Path]) -> None:
    cert, key = cert_files
    server = start_server(tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--tls-listen", "127.0.0.1:0")
    try:
        assert server.proc.stderr is not None
        tls_line = server.proc.stderr.readline().strip()
        port = int(tls_line.rsplit(":", 1)[1])
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        with smtpx.SMTP_SSL("localhost", port, timeout=10, context=unverified) as client:
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: 465\r\n\r\nhi\r\n") == {}
        assert b"with ESMTPS id" in server.wait_for(1)[0]
    finally:
        assert server.stop() == 0


def test_lmtp_reports_each_delivery(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--lmtp")
    try:
        with smtpx.LMTP(server.host, server.port, timeout=10) as client:
            result = client.send(b"Subject: l\r\n\r\nhi\r\n", sender="a@example.org", recipients=["b@example.net", "c@example.net"])
            assert result.ok
            assert all(r.delivery is not None and r.delivery.code == 250 for r in result.recipients)
            assert client.sendmail("a@example.org", ["d@example.net"], b"Subject: l2\r\n\r\nhi\r\n") == {}
    finally:
        assert server.stop() == 0


def test_smtplib_default_timeout_sentinel_is_accepted(aiosmtpd_server: tuple[int, Recorder]) -> None:
    import socket

    port, _ = aiosmtpd_server
    with smtpx.SMTP("127.0.0.1", port, timeout=socket._GLOBAL_DEFAULT_TIMEOUT) as client:  # type: ignore[attr-defined]
        assert client.noop()[0] == 250


def test_international_addresses_use_smtputf8(rust_server: RunningServer) -> None:
    with smtpx.SMTP(rust_server.host, rust_server.port, timeout=10) as client:
        assert client.has_extn("smtputf8")
        refused = client.sendmail("ålice@exämple.org", ["bøb@example.net"], "Subject: utf8\r\n\r\nhi\r\n".encode())
        assert refused == {}
    (data,) = rust_server.wait_for(1)
    assert data.startswith("Return-Path: <ålice@exämple.org>".encode())


def test_network_waits_release_the_gil() -> None:
    """While the client waits for a slow server, other Python threads keep running."""
    import asyncio

    from aiosmtpd.controller import Controller

    class Slow:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await asyncio.sleep(0.5)
            return "250 OK"

    port = free_port()
    controller = Controller(Slow(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        client = smtpx.SMTP("127.0.0.1", port, timeout=10)
        done = threading.Event()
        ticks = 0

        def count() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1

        counter = threading.Thread(target=count)
        counter.start()
        try:
            client.sendmail("a@example.org", ["b@example.net"], b"Subject: slow\r\n\r\nhi\r\n")
        finally:
            done.set()
            counter.join()
        client.quit()
        # Holding the GIL for the 0.5 s wait would leave the counter a handful of
        # switch intervals (5 ms each); released, it counts freely.
        assert ticks > 100_000, ticks
    finally:
        controller.stop()


def test_one_connection_shared_by_threads(rust_server: RunningServer) -> None:
    client = smtpx.SMTP(rust_server.host, rust_server.port, timeout=20)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                client.sendmail("a@example.org", ["b@example.net"], b"Subject: %d-%d\r\n\r\nhi\r\n" % (n, i))
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    client.quit()
    assert errors == []
    assert len(rust_server.wait_for(20)) == 20


def test_login_in_clear_is_refused_unless_allowed(tmp_path: pathlib.Path) -> None:
    # The server would take AUTH in clear; smtplib would send it. smtpx does not, unless
    # allow_insecure_auth (keyword or attribute) says so.
    server = start_server(tmp_path / "md", "--auth", "alice:s3cret", "--allow-insecure-auth")
    message_bytes = b"Subject: clear\r\n\r\nhi\r\n"
    try:
        with smtpx.SMTP(server.host, server.port, timeout=10) as client:
            assert client.allow_insecure_auth is False and client.has_extn("auth")
            with pytest.raises(smtpx.SmtpInsecureAuthError) as refused:
                client.login("alice", "s3cret")
            assert isinstance(refused.value, smtplib.SMTPException)
            assert not isinstance(refused.value, smtplib.SMTPAuthenticationError)
            assert "starttls()" in str(refused.value) and "allow_insecure_auth=True" in str(refused.value)
            client.allow_insecure_auth = True
            assert client.login("alice", "s3cret")[0] == 235
            assert client.sendmail("a@example.org", ["b@example.net"], message_bytes) == {}
        with smtpx.SMTP(server.host, server.port, timeout=10, allow_insecure_auth=True) as client:
            assert client.login("alice", "s3cret")[0] == 235
        one_call: dict[str, Any] = dict(
            sender="a@example.org", recipients=["b@example.net"], hostname=server.host, port=server.port,
            username="alice", password="s3cret", timeout=10,
        )
        with pytest.raises(smtpx.SmtpInsecureAuthError):
            smtpx.send(message_bytes, **one_call)
        assert smtpx.send(message_bytes, allow_insecure_auth=True, **one_call).ok
        files = server.wait_for(2)
        assert len(files) == 2 and all(b"with ESMTPA id" in f for f in files)
    finally:
        assert server.stop() == 0
