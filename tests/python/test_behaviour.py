"""Behaviour tests written once and run against both drivers of each side: the blocking
``smtpx.SMTP`` and the asyncio ``smtpx.aio.SMTP`` as clients, ``smtpx.Controller`` and
``smtpx.aio.Server`` as servers (see drivers.py). The peers are real: the Rust
``smtp-server`` example and aiosmtpd for the clients, smtplib for the servers."""

from __future__ import annotations

import logging
import pathlib
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from typing import Any, Iterator

import aiosmtpd.smtp
import pytest

import smtpx
import smtpx.adapter
from conftest import Recorder, RunningServer, start_server
from drivers import DRIVERS, open_client, serving


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The clients -----------------------------------------------------------------------------


def test_refused_recipients_come_back_as_smtplib_does(driver: str, aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    with open_client(driver, "127.0.0.1", port, timeout=10) as client:
        refused = client.sendmail("a@example.org", ["b@example.net", "nobody@example.net"], b"Subject: x\r\n\r\nhi\r\n")
        assert refused == {"nobody@example.net": (550, b"5.1.1 no such user")}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as all_refused:
            client.sendmail("a@example.org", ["no1@example.net", "no2@example.net"], b"x\r\n")
        assert set(all_refused.value.recipients) == {"no1@example.net", "no2@example.net"}
        assert client.noop()[0] == 250
    assert [(m[0], m[1]) for m in handler.messages] == [("a@example.org", ["b@example.net"])]


def test_sender_and_data_refusals_raise_like_smtplib(driver: str) -> None:
    class Picky:
        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            if address.startswith("spammer"):
                return "553 5.7.1 go away"
            envelope.mail_from = address
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "554 5.6.0 content rejected"

    # The server is the blocking Controller in both runs: only the client varies here.
    with serving("blocking", Picky()) as (host, port):
        with open_client(driver, host, port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("spammer@example.org", ["b@example.net"], b"x\r\n")
            assert (refused.value.smtp_code, refused.value.sender) == (553, "spammer@example.org")
            with pytest.raises(smtplib.SMTPDataError) as data:
                client.sendmail("a@example.org", ["b@example.net"], b"x\r\n")
            assert data.value.smtp_code == 554
            assert client.noop()[0] == 250


def test_send_message_takes_the_envelope_from_headers(driver: str, aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["To"] = "bob@example.net"
    message["Bcc"] = "hidden@example.net"
    message["Subject"] = "headers"
    message.set_content("body\n")
    with open_client(driver, "127.0.0.1", port, timeout=10) as client:
        assert client.send_message(message) == {}
    [(sender, recipients, content)] = handler.messages
    assert (sender, sorted(recipients)) == ("alice@example.org", ["bob@example.net", "hidden@example.net"])
    assert b"hidden@example.net" not in content


def test_the_body_goes_out_canonical_and_dot_stuffed(driver: str, rust_server: RunningServer) -> None:
    body = b"Subject: dots\n\n.leading dot\n..two dots\nbare LF line\n.\nlast"
    with open_client(driver, rust_server.host, rust_server.port, timeout=10) as client:
        assert client.sendmail("a@example.org", ["b@example.net"], body) == {}
    [stored] = rust_server.wait_for(1)
    # The Maildir file holds Return-Path and Received, then the message as sent.
    assert stored.endswith(b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nbare LF line\r\n.\r\nlast\r\n")


def test_many_messages_over_one_connection(driver: str, rust_server: RunningServer) -> None:
    with open_client(driver, rust_server.host, rust_server.port, timeout=10) as client:
        for n in range(50):
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: %d\r\n\r\nx\r\n" % n) == {}
    assert len(rust_server.wait_for(50)) == 50


def test_cr_lf_in_an_address_is_a_value_error_and_nothing_is_sent(
    driver: str, aiosmtpd_server: tuple[int, Recorder]
) -> None:
    port, handler = aiosmtpd_server
    with open_client(driver, "127.0.0.1", port, timeout=10) as client:
        with pytest.raises(ValueError):
            client.sendmail("a@example.org\r\nRCPT TO:<evil@example.net>", ["b@example.net"], b"x\r\n")
        with pytest.raises(ValueError):
            client.sendmail("a@example.org", ["b@example.net>\r\nDATA"], b"x\r\n")
        assert client.noop()[0] == 250
    assert handler.messages == []


def test_a_message_over_the_size_limit_is_refused_before_sending(driver: str, tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--max-size", "2000")
    try:
        with open_client(driver, server.host, server.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPException) as too_big:
                client.sendmail("a@example.org", ["b@example.net"], b"x" * 5000)
            assert getattr(too_big.value, "smtp_code", None) == 552
            assert client.noop()[0] == 250
        assert server.delivered() == []
    finally:
        assert server.stop() == 0


def test_login_then_send_to_the_rust_server(driver: str, tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--auth", "user:secret", "--allow-insecure-auth")
    try:
        # In clear (allowed): the refusal and the login are under test.
        with open_client(driver, server.host, server.port, timeout=10, allow_insecure_auth=True) as client:
            assert client.has_extn("auth") if driver == "blocking" else True
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("user", "wrong")
            client.login("user", "secret")
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: auth\r\n\r\nx\r\n") == {}
        assert len(server.wait_for(1)) == 1
    finally:
        assert server.stop() == 0


def test_send_gives_a_result_per_recipient(driver: str, aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, handler = aiosmtpd_server
    with open_client(driver, "127.0.0.1", port, timeout=10) as client:
        result = client.send(b"Subject: r\r\n\r\nx\r\n", sender="a@example.org",
                             recipients=["b@example.net", "nobody@example.net"])
    assert isinstance(result, smtpx.SendResult) and result.ok
    assert [(r.address, r.code, r.accepted) for r in result.recipients] == [
        ("b@example.net", 250, True),
        ("nobody@example.net", 550, False),
    ]
    assert result.queue_id == "Q1"


@pytest.mark.parametrize("peer", ["rust", "aiosmtpd"])
def test_send_batch_gives_an_outcome_per_message_in_order(
    driver: str, peer: str, tmp_path: pathlib.Path, aiosmtpd_server: tuple[int, Recorder]
) -> None:
    # The Rust server offers SIZE 2000 here and CHUNKING; aiosmtpd neither nor PIPELINING.
    server = start_server(tmp_path / "md", "--max-size", "2000") if peer == "rust" else None
    host, port = (server.host, server.port) if server is not None else ("127.0.0.1", aiosmtpd_server[0])
    try:
        messages: list[Any] = [("a@example.org", ["b@example.net"], b"Subject: %d\r\n\r\nx\r\n" % n) for n in range(40)]
        messages[5] = ("a@example.org", ["b@example.net"], (b"x" * 70 + b"\r\n") * 45)  # over the Rust SIZE
        messages[7] = ("a@example.org", ["nobody@example.net"], b"Subject: 7\r\n\r\nx\r\n")
        with open_client(driver, host, port, timeout=10) as client:
            with pytest.raises(ValueError):  # checked whole before anything is sent
                client.send_batch(messages + [("a@example.org", ["c@example.net\r\nDATA"], b"x")])
            outcomes = client.send_batch(messages)
            assert client.noop()[0] == 250
        assert len(outcomes) == 40
        if peer == "rust":
            assert isinstance(outcomes[5], smtplib.SMTPDataError) and outcomes[5].smtp_code == 552
        else:
            assert isinstance(outcomes[5], smtpx.SendResult) and outcomes[5].ok
            # aiosmtpd's handler here refuses recipients named no*.
            assert isinstance(outcomes[7], smtpx.SendResult) and not outcomes[7].ok
        for n, outcome in enumerate(outcomes):
            if n not in (5, 7):
                assert isinstance(outcome, smtpx.SendResult) and outcome.ok, (n, outcome)
        stored = len(server.wait_for(39)) if server is not None else len(aiosmtpd_server[1].messages)
        assert stored == 39  # all but the one too large (Rust) or refused (aiosmtpd)
    finally:
        if server is not None:
            assert server.stop() == 0


def test_starttls_then_login_to_the_rust_server(
    driver: str, tmp_path: pathlib.Path, cert_files: tuple[pathlib.Path, pathlib.Path], ca_file: pathlib.Path
) -> None:
    cert, key = cert_files
    server = start_server(tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--auth", "user:secret")
    try:
        with open_client(driver, "localhost", server.port, timeout=10, starttls_ca=ca_file) as client:
            client.login("user", "secret")
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: tls\r\n\r\nx\r\n") == {}
        [stored] = server.wait_for(1)
        assert b"with ESMTPSA" in stored  # encrypted and authenticated
    finally:
        assert server.stop() == 0


def test_lmtp_reports_each_delivery(driver: str, tmp_path: pathlib.Path) -> None:
    server = start_server(tmp_path / "md", "--lmtp")
    try:
        with open_client(driver, server.host, server.port, lmtp=True, timeout=10) as client:
            result = client.send(b"Subject: l\r\n\r\nx\r\n", sender="a@example.org",
                                 recipients=["b@example.net", "c@example.net"])
        assert result.ok
        assert [r.delivery.code if r.delivery else None for r in result.recipients] == [250, 250]
        assert len(server.wait_for(1)) == 1
    finally:
        assert server.stop() == 0


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel) and never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def test_a_silent_server_times_out(driver: str, silent_listener: int) -> None:
    with pytest.raises(smtpx.SmtpTimeoutError):
        with open_client(driver, "127.0.0.1", silent_listener, timeout=0.5):
            pass


def test_a_server_that_hangs_up_is_a_disconnect(driver: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def greet_and_hang_up() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"220 bye soon\r\n")
                conn.recv(1024)  # EHLO

        peer = threading.Thread(target=greet_and_hang_up, daemon=True)
        peer.start()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            with open_client(driver, "127.0.0.1", listener.getsockname()[1], timeout=5):
                pass
        peer.join(5)
        assert not peer.is_alive()


# The servers -----------------------------------------------------------------------------


class Keep:
    """aiosmtpd-style coroutine hooks: refuses recipients named no*, keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str | None, list[str], bytes, str | None]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.startswith("no"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.host_name))
        return "250 2.0.0 Ok: queued as K%d" % len(self.messages)


class KeepSize(Keep):
    """Also keeps the MAIL parameters, to see what SIZE= the client declared."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_options: list[list[str]] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        self.mail_options.append(list(mail_options))
        envelope.mail_from = address
        return "250 OK"


def test_size_declares_the_canonical_octets(driver: str) -> None:
    """SIZE= counts what goes out after CRLF canonicalisation (RFC 1870): a body with bare
    LFs is declared as its CRLF form, by both clients."""
    handler = KeepSize()
    body = b"Subject: x\n\none\ntwo\n"
    with serving(driver, handler) as (host, port):
        for client_driver in DRIVERS:
            with open_client(client_driver, host, port, timeout=10) as client:
                assert client.sendmail("a@example.org", ["b@example.net"], body) == {}
    canonical = len(body.replace(b"\n", b"\r\n"))
    sizes = [o for options in handler.mail_options for o in options if o.upper().startswith("SIZE=")]
    assert sizes == [f"SIZE={canonical}"] * len(DRIVERS), sizes


def test_smtplib_delivers_to_a_coroutine_handler(driver: str) -> None:
    handler = Keep()
    with serving(driver, handler, server_hostname="mx.test") as (host, port):
        with smtplib.SMTP(host, port, local_hostname="client.test", timeout=10) as client:
            assert client.ehlo()[0] == 250
            assert client.has_extn("pipelining") and client.has_extn("8bitmime")
            refused = client.sendmail("a@example.org", ["b@example.net", "nobody@example.net"], b"Subject: s\r\n\r\nhi\r\n")
            assert refused == {"nobody@example.net": (550, b"5.1.1 no such user")}
            assert client.rset()[0] == 250
            assert client.noop()[0] == 250
    assert handler.messages == [("a@example.org", ["b@example.net"], b"Subject: s\r\n\r\nhi\r\n", "client.test")]


def test_plain_function_hooks_and_mail_options(driver: str) -> None:
    seen: list[tuple[str, list[str]]] = []

    class Plain:
        def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            seen.append((address, options))
            envelope.mail_from = address
            envelope.mail_options.extend(options)
            return "250 OK"

        def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 stored"

    with serving(driver, Plain()) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.net"], b"x\r\n", mail_options=["BODY=8BITMIME"])
    # smtplib adds SIZE itself, since the server announces it.
    assert seen == [("a@example.org", ["SIZE=3", "BODY=8BITMIME"])]


def test_a_raising_handler_gives_451_and_the_server_goes_on(driver: str, caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("storage is down")
            return "250 OK"

    with caplog.at_level(logging.ERROR):
        with serving(driver, Flaky()) as (host, port):
            with smtplib.SMTP(host, port, timeout=10) as client:
                with pytest.raises(smtplib.SMTPDataError) as failed:
                    client.sendmail("a@example.org", ["b@example.net"], b"x\r\n")
                assert failed.value.smtp_code == 451
                assert client.sendmail("a@example.org", ["b@example.net"], b"x\r\n") == {}
    assert "storage is down" in caplog.text


def test_a_bad_status_from_a_handler_is_451(driver: str) -> None:
    class Bad:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            return "not a status line"

    with serving(driver, Bad()) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.ehlo()
            client.mail("a@example.org")
            assert client.rcpt("b@example.net")[0] == 451


def test_data_size_limit_is_announced_and_enforced(driver: str) -> None:
    handler = Keep()
    with serving(driver, handler, data_size_limit=1000) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.ehlo()
            assert client.esmtp_features["size"] == "1000"
            with pytest.raises(smtplib.SMTPSenderRefused) as announced:
                client.sendmail("a@example.org", ["b@example.net"], "x" * 5000)
            assert announced.value.smtp_code == 552
            # Without SIZE the server must find out while the content streams in.
            assert client.mail("a@example.org")[0] == 250
            assert client.rcpt("b@example.net")[0] == 250
            assert client.data(b"x" * 5000)[0] == 552
            assert client.noop()[0] == 250
    assert handler.messages == []


def test_authenticator_decides_and_auth_can_be_required(driver: str) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> smtpx.AuthResult:
        ok = (auth_data.login, auth_data.password) == (b"user", b"secret")
        return smtpx.AuthResult(success=ok)

    handler = Keep()
    options: dict[str, Any] = dict(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    with serving(driver, handler, **options) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.ehlo()
            code, _ = client.mail("a@example.org")
            assert code == 530  # authentication required first
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("user", "wrong")
            client.login("user", "secret")
            assert client.sendmail("a@example.org", ["b@example.net"], b"x\r\n") == {}
    assert len(handler.messages) == 1


# What aiosmtpd users' authenticators return, in aiosmtpd's own classes and in the other
# shapes that are not clearly a success: each must be a refusal (535), never a login.
def _aiosmtpd_failure(auth_data: Any) -> Any:
    return aiosmtpd.smtp.AuthResult(success=False, handled=False)


@pytest.mark.parametrize(
    "answer",
    [
        _aiosmtpd_failure,
        lambda auth_data: aiosmtpd.smtp.AuthResult(success=False),
        lambda auth_data: smtpx.AuthResult(success=False),
        lambda auth_data: None,
        lambda auth_data: "yes",
        lambda auth_data: 1,
        lambda auth_data: aiosmtpd.smtp.AuthResult(success="true"),  # type: ignore[arg-type]
    ],
    ids=["aiosmtpd-unhandled", "aiosmtpd", "smtpx", "None", "a-string", "one", "a-truthy-success"],
)
def test_an_authenticator_that_does_not_clearly_say_yes_refuses(
    driver: str, answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Any] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        seen.append(auth_data)
        return answer(auth_data)

    handler = Keep()
    options: dict[str, Any] = dict(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    with caplog.at_level(logging.INFO, logger="smtpx"):
        with serving(driver, handler, **options) as (host, port):
            with smtplib.SMTP(host, port, timeout=10) as client:
                client.ehlo()
                with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                    client.login("user", "hunter2")
                assert refused.value.smtp_code == 535
                # Still not logged in: a transaction needs authentication first.
                assert client.mail("a@example.org")[0] == 530
    assert handler.messages == []
    assert seen and seen[0].login == b"user"
    # The refusal is logged, and the password is not.
    assert any("authentication refused" in r.getMessage() for r in caplog.records)
    assert not any("hunter2" in r.getMessage() for r in caplog.records)


def test_aiosmtpd_auth_result_success_logs_in(driver: str) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        return aiosmtpd.smtp.AuthResult(success=auth_data.password == b"secret")

    handler = Keep()
    options: dict[str, Any] = dict(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    with serving(driver, handler, **options) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.login("user", "secret")
            assert client.sendmail("a@example.org", ["b@example.net"], b"x\r\n") == {}
    assert len(handler.messages) == 1


def test_login_password_hides_the_password_as_aiosmtpd_does() -> None:
    data = smtpx.LoginPassword(b"alice", b"hunter2")
    assert "hunter2" not in repr(data) and "hunter2" not in str(data)
    assert "alice" in repr(data)
    assert data.password == b"hunter2"
    assert "hunter2" not in repr(aiosmtpd.smtp.LoginPassword(b"alice", b"hunter2"))


def test_an_end_of_data_look_alike_stays_content(driver: str) -> None:
    handler = Keep()
    smuggled = b"Subject: s\r\n\r\nbefore\n.\nMAIL FROM:<evil@example.org>\r\nafter\r\n.\r\n"
    with serving(driver, handler) as (host, port):
        with socket.create_connection((host, port), timeout=10) as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"EHLO c.test\r\n")
            replies = [reader.readline() for _ in range(1)]
            while not replies[-1].startswith(b"250 "):  # the end of the EHLO reply
                replies.append(reader.readline())
            conn.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
            assert reader.readline().startswith(b"250")  # MAIL
            assert reader.readline().startswith(b"250")  # RCPT
            assert reader.readline().startswith(b"354")
            conn.sendall(smuggled + b"QUIT\r\n")
            assert reader.readline().startswith(b"250")  # one message...
            assert reader.readline().startswith(b"221")  # ...and no reply to a smuggled MAIL
    [(_, _, content, _)] = handler.messages
    assert b"MAIL FROM:<evil@example.org>" in content


def test_starttls_then_auth_with_smtplib(
    driver: str, cert_files: tuple[pathlib.Path, pathlib.Path], ca_file: pathlib.Path
) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> smtpx.AuthResult:
        return smtpx.AuthResult(success=(auth_data.login, auth_data.password) == (b"user", b"secret"))

    handler = Keep()
    options: dict[str, Any] = dict(tls_context=cert_files, authenticator=authenticator, require_starttls=True)
    with serving(driver, handler, **options) as (host, port):
        with smtplib.SMTP("localhost", port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls") and not client.has_extn("auth")  # no AUTH in clear
            assert client.mail("a@example.org")[0] == 530  # STARTTLS first
            client.starttls(context=ssl.create_default_context(cafile=str(ca_file)))
            client.ehlo()
            assert client.has_extn("auth") and not client.has_extn("starttls")
            client.login("user", "secret")
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: t\r\n\r\nx\r\n") == {}
    assert len(handler.messages) == 1


def test_lmtp_answers_per_recipient(driver: str) -> None:
    class PerRecipient:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "\r\n".join(
                "552 5.2.2 mailbox full" if rcpt.startswith("full") else "250 2.0.0 delivered"
                for rcpt in envelope.rcpt_tos
            )

    with serving(driver, PerRecipient(), lmtp=True) as (host, port):
        with smtpx.LMTP(host, port, timeout=10) as client:
            result = client.send(b"Subject: l\r\n\r\nx\r\n", sender="a@example.org",
                                 recipients=["b@example.net", "full@example.net", "c@example.net"])
    deliveries = [(r.address, r.delivery.code if r.delivery else None) for r in result.recipients]
    assert deliveries == [("b@example.net", 250), ("full@example.net", 552), ("c@example.net", 250)]


def test_connections_beyond_the_limit_get_421(driver: str) -> None:
    with serving(driver, Keep(), max_connections=2) as (host, port):
        held = [socket.create_connection((host, port), timeout=10) for _ in range(2)]
        try:
            for conn in held:
                assert conn.recv(512).startswith(b"220")
            with socket.create_connection((host, port), timeout=10) as extra:
                assert extra.recv(512).startswith(b"421")
                assert extra.recv(512) == b""  # and closed
            held.pop().close()
            # The freed place is given to the next client (the close may take a moment
            # to be seen: bounded retries).
            for _ in range(100):
                with socket.create_connection((host, port), timeout=10) as again:
                    if again.recv(512).startswith(b"220"):
                        break
                threading.Event().wait(0.05)
            else:
                pytest.fail("no connection was served after one closed")
        finally:
            for conn in held:
                conn.close()


def test_a_client_that_pipelines_without_reading_gets_every_reply(driver: str) -> None:
    # 30,000 RSETs (6 bytes each, 14-byte replies) after EHLO: far more output than the
    # session holds (64 KiB), so the server must step the session again after each write
    # instead of waiting for input that is already there. RSET may be pipelined (RFC 2920);
    # a flood of EHLOs would be a synchronisation error.
    commands = 30_000
    with serving(driver, Keep()) as (host, port):
        with socket.create_connection((host, port), timeout=10) as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"EHLO f\r\n")
            line = reader.readline()
            while line.startswith(b"250-"):
                line = reader.readline()
            assert line.startswith(b"250 "), line
            flood = b"RSET\r\n" * commands + b"QUIT\r\n"
            sender = threading.Thread(target=conn.sendall, args=(flood,), daemon=True)
            sender.start()
            for n in range(commands):
                line = reader.readline()
                assert line.startswith(b"250 "), (n, line)
            assert reader.readline().startswith(b"221")
            sender.join(10)
            assert not sender.is_alive()


def _read_reply(reader: Any) -> bytes:
    """The last line of the next reply (b"" when the connection closed)."""
    line = reader.readline()
    while line[3:4] == b"-":
        line = reader.readline()
    return bytes(line)


def test_a_client_that_pipelines_behind_ehlo_gets_554_and_is_disconnected(driver: str) -> None:
    handler = Keep()
    with serving(driver, handler) as (host, port):
        with socket.create_connection((host, port), timeout=10) as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\n")
            assert _read_reply(reader) == b"554 5.5.0 Error: SMTP protocol synchronization\r\n"
            assert reader.readline() == b"", "the server closed the connection"
    assert handler.messages == []


def test_pipelining_sync_false_serves_a_client_that_pipelines_behind_ehlo(driver: str) -> None:
    with serving(driver, Keep(), pipelining_sync=False) as (host, port):
        with socket.create_connection((host, port), timeout=10) as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\n")
            assert _read_reply(reader).startswith(b"250 ")
            assert _read_reply(reader).startswith(b"250 2.1.0")
            conn.sendall(b"QUIT\r\n")
            assert _read_reply(reader).startswith(b"221")


# One adapter, one set of defaults and texts for both servers -----------------------------------


def test_a_failing_hook_gets_the_same_text_from_both_servers(driver: str) -> None:
    class Failing:
        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            raise RuntimeError("boom")

    with serving(driver, Failing()) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.ehlo()
            assert client.mail("a@example.org") == (451, b"4.3.0 Error: handler failed")
            assert client.mail("b@example.org") == (451, b"4.3.0 Error: handler failed")
            assert client.noop()[0] == 250


def test_an_invalid_status_gets_the_same_text_from_both_servers(driver: str) -> None:
    class Invalid:
        def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> Any:
            return 250 if address.startswith("number") else "not a status line"

    with serving(driver, Invalid()) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.ehlo()
            assert client.mail("a@example.org")[0] == 250
            invalid = (451, b"4.3.0 Error: handler returned an invalid status")
            assert client.rcpt("number@example.net") == invalid
            assert client.rcpt("text@example.net") == invalid


def test_both_servers_share_the_defaults(driver: str) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> bool:
        return True

    # No options but the authenticator: aiosmtpd's defaults on both servers.
    with serving(driver, Keep(), authenticator=authenticator) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            code, greeting = client.ehlo()
            assert code == 250
            assert greeting.split(b"\n")[0].split()[0].decode() == socket.getfqdn()
            assert client.esmtp_features.get("size") == "33554432"
            # auth_require_tls is True: no AUTH without TLS.
            assert not client.has_extn("auth")
    assert smtpx.adapter.ServerSettings().data_size_limit == smtpx.adapter.DATA_SIZE_DEFAULT == 33554432


@pytest.mark.parametrize("limit", [None, 0])
def test_no_size_limit_as_aiosmtpd_announces_no_size_and_takes_a_large_message(driver: str, limit: Any) -> None:
    # aiosmtpd: data_size_limit None (or 0) means no limit, and EHLO says no SIZE.
    handler = Keep()
    body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 40_000  # 40 MB, above the 32 MiB default
    with serving(driver, handler, data_size_limit=limit) as (host, port):
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.ehlo()
            assert "size" not in client.esmtp_features
            assert client.sendmail("a@example.org", ["b@example.net"], body) == {}
    assert len(handler.messages) == 1 and len(handler.messages[0][2]) == len(body)


def test_a_negative_size_limit_is_refused_loudly_by_both_servers(driver: str) -> None:
    with pytest.raises(ValueError, match="data_size_limit"):
        with serving(driver, Keep(), data_size_limit=-1):
            pass


def test_a_positive_ehlo_answer_keeps_the_extensions_and_a_negative_one_refuses(driver: str) -> None:
    class Hello:
        def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> str:
            return "550 5.7.1 not you" if hostname == "bad.test" else "250 welcome"

    with serving(driver, Hello(), data_size_limit=1000) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as client:
            assert client.ehlo("good.test")[0] == 250
            assert client.esmtp_features.get("size") == "1000"
            assert client.ehlo("bad.test") == (550, b"5.7.1 not you")


def test_credentials_go_in_clear_only_with_allow_insecure_auth(
    driver: str, cert_files: tuple[pathlib.Path, pathlib.Path], ca_file: pathlib.Path
) -> None:
    # A server that would take AUTH in clear, and offers STARTTLS.
    attempts: list[bytes] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> smtpx.AuthResult:
        attempts.append(auth_data.login)
        return smtpx.AuthResult(success=(auth_data.login, auth_data.password) == (b"user", b"secret"))

    cert, key = cert_files
    options: dict[str, Any] = dict(
        authenticator=authenticator, auth_require_tls=False, tls_context=(str(cert), str(key))
    )
    with serving(driver, Keep(), **options) as (host, port):
        # login() in clear: refused before anything is sent, unlike smtplib; still usable.
        with open_client(driver, "localhost", port, timeout=10) as client:
            with pytest.raises(smtpx.SmtpInsecureAuthError) as refused:
                client.login("user", "secret")
            assert isinstance(refused.value, smtplib.SMTPException)
            assert "starttls()" in str(refused.value) and "allow_insecure_auth=True" in str(refused.value)
            assert client.noop()[0] == 250
        assert attempts == []
        # Allowed: the same login goes through in clear.
        with open_client(driver, "localhost", port, timeout=10, allow_insecure_auth=True) as client:
            assert client.login("user", "secret")[0] == 235
        assert attempts == [b"user"]
        # Over STARTTLS no permission is needed.
        with open_client(driver, "localhost", port, timeout=10, starttls_ca=ca_file) as client:
            assert client.login("user", "secret")[0] == 235
        assert attempts == [b"user", b"user"]
