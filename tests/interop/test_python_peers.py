"""Python's smtplib and aiosmtplib against smtpx's server; smtpx's client against aiosmtpd."""

from __future__ import annotations

import asyncio
import pathlib
import smtplib
import ssl
import subprocess
from email.message import EmailMessage

import pytest

from conftest import RunningServer, example, free_port, start_server


def message(subject: str = "interop", body: str = "Hello from Python.\n.leading dot line\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def test_smtplib_delivers_to_maildir(smtpx_server: RunningServer) -> None:
    with smtplib.SMTP(smtpx_server.host, smtpx_server.port, timeout=10) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250
        assert client.has_extn("pipelining") and client.has_extn("chunking") and client.has_extn("size")
        refused = client.send_message(message(), to_addrs=["bob@example.net", "carol@example.net"])
        assert refused == {}
    files = smtpx_server.wait_for(1)
    assert len(files) == 1
    data = files[0]
    assert data.startswith(b"Return-Path: <alice@example.org>\r\nReceived: from client.test (127.0.0.1)\r\n")
    assert b"Subject: interop\r\n" in data
    # smtplib dot-stuffed the leading dot; the server removed it again.
    assert b"\r\n.leading dot line\r\n" in data
    assert not any(b"\n" in line.rstrip(b"\r\n") for line in data.split(b"\r\n"))


def test_smtplib_sees_refusals_and_limits(tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--max-recipients", "1", "--max-size", "2000")
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            refused = client.sendmail("a@example.org", ["b@example.net", "c@example.net"], b"Subject: x\r\n\r\nhi\r\n")
            assert list(refused) == ["c@example.net"]
            assert refused["c@example.net"][0] == 452
            with pytest.raises(smtplib.SMTPSenderRefused) as announced:
                client.sendmail("a@example.org", ["b@example.net"], b"x" * 5000)
            assert announced.value.smtp_code == 552
        assert len(server.wait_for(1)) == 1
    finally:
        assert server.stop() == 0


def test_smtplib_starttls_and_login(tmp_path: pathlib.Path, ca, cert_files) -> None:  # type: ignore[no-untyped-def]
    cert, key = cert_files
    server = start_server(tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--require-tls", "--auth", "alice:s3cret")
    try:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        # smtplib checks the certificate against the host it connected to.
        with smtplib.SMTP("localhost", server.port, timeout=10) as client:
            client.ehlo("client.test")
            assert client.has_extn("starttls")
            assert not client.has_extn("auth"), "AUTH must not be offered before TLS"
            with pytest.raises(smtplib.SMTPSenderRefused) as before_tls:
                client.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nhi\r\n")
            assert before_tls.value.smtp_code == 530
            client.starttls(context=ctx)
            client.ehlo("client.test")
            assert "PLAIN" in client.esmtp_features["auth"]
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            client.login("alice", "s3cret")
            client.sendmail("a@example.org", ["b@example.net"], b"Subject: tls\r\n\r\nhi\r\n")
        files = server.wait_for(1)
        assert len(files) == 1
        assert b"with ESMTPSA id" in files[0]
    finally:
        assert server.stop() == 0


def test_smtplib_implicit_tls(tmp_path: pathlib.Path, ca, cert_files) -> None:  # type: ignore[no-untyped-def]
    cert, key = cert_files
    server = start_server(tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--tls-listen", "127.0.0.1:0")
    try:
        assert server.proc.stderr is not None
        tls_line = server.proc.stderr.readline().strip()
        assert tls_line.startswith("implicit TLS on "), tls_line
        port = int(tls_line.rsplit(":", 1)[1])
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        with smtplib.SMTP_SSL("localhost", port, timeout=10, context=ctx) as client:
            client.sendmail("a@example.org", ["b@example.net"], b"Subject: 465\r\n\r\nhi\r\n")
        files = server.wait_for(1)
        assert b"with ESMTPS id" in files[0]
    finally:
        assert server.stop() == 0


def test_aiosmtplib_delivers(smtpx_server: RunningServer) -> None:
    import aiosmtplib

    async def send() -> None:
        for i in range(3):
            errors, response = await aiosmtplib.send(
                message(subject=f"aio {i}"), hostname=smtpx_server.host, port=smtpx_server.port, timeout=10
            )
            assert errors == {}
            assert response.startswith("2.0.0 Ok: queued as ")

    asyncio.run(send())
    files = smtpx_server.wait_for(3)
    assert sorted(f.split(b"Subject: ")[1].split(b"\r\n")[0] for f in files) == [b"aio 0", b"aio 1", b"aio 2"]


@pytest.mark.parametrize("flags", [["--async"], ["--async", "--async-threads", "2"]], ids=["current-thread", "multi-thread"])
def test_async_server_delivers_and_stops(tmp_path: pathlib.Path, flags: list[str]) -> None:
    """smtp-server --async: the same handler (Maildir) on the tokio driver, on both runtime
    flavours; two clients at once, then a clean stop on SIGTERM."""
    import aiosmtplib

    server = start_server(tmp_path / "md", *flags)
    try:

        async def one(i: int) -> None:
            errors, response = await aiosmtplib.send(
                message(subject=f"async {i}"), hostname=server.host, port=server.port, timeout=10
            )
            assert errors == {}
            assert response.startswith("2.0.0 Ok: queued as ")

        async def both() -> None:
            await asyncio.wait_for(asyncio.gather(one(0), one(1)), 20)

        asyncio.run(both())
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            assert client.ehlo("client.test")[0] == 250
            assert client.has_extn("chunking") and client.has_extn("pipelining")
            assert client.send_message(message(subject="async 2")) == {}
        files = server.wait_for(3)
        assert sorted(f.split(b"Subject: ")[1].split(b"\r\n")[0] for f in files) == [b"async 0", b"async 1", b"async 2"]
        assert all(b"\r\n.leading dot line\r\n" in f for f in files)
    finally:
        assert server.stop() == 0, "smtp-server --async must stop cleanly on SIGTERM"


def test_async_flag_needs_its_companions(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [example("smtp-server"), "--discard", "--async-threads", "2"], capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 2
    assert "go with --async" in done.stderr


def test_smtp_send_against_aiosmtpd(tmp_path: pathlib.Path) -> None:
    from aiosmtpd.controller import Controller

    received = []

    class Collect:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 Message accepted for delivery"

    controller = Controller(Collect(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        port = controller.port
        msg = tmp_path / "msg.eml"
        msg.write_bytes(b"Subject: from smtpx\n\n.dot first\nbare LF lines\n")
        run = subprocess.run(
            [example("smtp-send"), "--server", f"127.0.0.1:{port}", "--from", "a@example.org",
             "--to", "b@example.net", "c@example.net", "--count", "3", str(msg)],
            capture_output=True, text=True, timeout=60,
        )
        assert run.returncode == 0, run.stderr + run.stdout
        assert run.stdout.count("final: 250") == 3, run.stdout
        assert len(received) == 3
        mail_from, rcpts, content = received[0]
        assert mail_from == "a@example.org"
        assert rcpts == ["b@example.net", "c@example.net"]
        # aiosmtpd un-stuffs: the canonical CRLF message with its leading dot comes back.
        assert content == b"Subject: from smtpx\r\n\r\n.dot first\r\nbare LF lines\r\n"
    finally:
        controller.stop()


def test_smtp_send_reports_refused_recipients(tmp_path: pathlib.Path) -> None:
    from aiosmtpd.controller import Controller

    class RefuseSome:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
            if address.startswith("nobody"):
                return "550 5.1.1 no such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            return "250 OK"

    controller = Controller(RefuseSome(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        port = controller.port
        run = subprocess.run(
            [example("smtp-send"), "--server", f"127.0.0.1:{port}", "--from", "a@example.org",
             "--to", "b@example.net", "nobody@example.net", "-"],
            input=b"Subject: x\r\n\r\nhi\r\n", capture_output=True, timeout=60,
        )
        out = run.stdout.decode()
        assert run.returncode == 1, out + run.stderr.decode()
        assert "<nobody@example.net>: 550 5.1.1 no such user" in out
        assert "<b@example.net>: 250" in out
    finally:
        controller.stop()


def test_smtp_send_starttls_against_aiosmtpd(ca, cert_files) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    cert, key = cert_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    received = []

    class Collect:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(session.ssl is not None)
            return "250 OK"

    controller = Controller(Collect(), hostname="127.0.0.1", port=free_port(), tls_context=context, require_starttls=True)
    controller.start()
    try:
        port = controller.port
        run = subprocess.run(
            [example("smtp-send"), "--server", f"127.0.0.1:{port}", "--starttls", "--insecure",
             "--from", "a@example.org", "--to", "b@example.net", "-"],
            input=b"Subject: tls\r\n\r\nhi\r\n", capture_output=True, timeout=60,
        )
        assert run.returncode == 0, run.stderr.decode() + run.stdout.decode()
        assert received == [True]
    finally:
        controller.stop()
