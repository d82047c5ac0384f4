"""smtplib code with only the import changed: each test runs the same code with
``lib = smtplib`` and with ``lib = smtpx``, against real servers on 127.0.0.1 (aiosmtpd,
the Rust smtp-server example, and tiny scripted servers for the error paths), and
compares what both see. Differences that cannot be helped are in the README's table."""

from __future__ import annotations

import contextlib
import io
import pathlib
import smtplib
import socket
import ssl
import threading
import warnings
from email.message import EmailMessage
from types import ModuleType
from typing import Any, Iterator

import pytest

import smtpx
from conftest import free_port, start_server

LIBS = [pytest.param(smtplib, id="smtplib"), pytest.param(smtpx, id="smtpx")]


class Recording:
    """An aiosmtpd handler that keeps every envelope, refuses recipients named no*,
    refuses the sender refused@... and refuses message content containing REJECT."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.peers: list[Any] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.startswith("refused@"):
            return "553 5.7.1 sender refused"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self.peers.append(session.peer)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.startswith("no"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if b"REJECT" in envelope.original_content:
            return "554 5.6.0 content refused"
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def aiosmtpd() -> Iterator[tuple[int, Recording]]:
    from aiosmtpd.controller import Controller

    handler = Recording()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


@contextlib.contextmanager
def scripted(
    replies: dict[bytes, bytes],
    greeting: bytes = b"220 scripted ESMTP\r\n",
    seen: list[bytes] | None = None,
) -> Iterator[int]:
    """A one-connection server: sends ``greeting``, then answers each command by the
    reply of the first key its line starts with (``502`` otherwise); closes after a 421
    or QUIT. Each command line goes into ``seen``. Every wait is bounded by a socket
    timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            conn.sendall(greeting)
            if not greeting.startswith(b"220"):
                return
            buffer = b""
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    if seen is not None:
                        seen.append(line)
                    reply = next(
                        (r for k, r in replies.items() if line.upper().startswith(k)), b"502 no\r\n"
                    )
                    if line.upper().startswith(b"QUIT"):
                        reply = b"221 bye\r\n"
                    conn.sendall(reply)
                    if reply.startswith((b"421", b"221")):
                        return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(timeout=10)


@contextlib.contextmanager
def tls_scripted(
    server_context: ssl.SSLContext,
    replies: dict[bytes, bytes],
    *,
    starttls: bool = False,
    seen: list[bytes] | None = None,
) -> Iterator[tuple[int, list[Any]]]:
    """A one-connection server on Python's ``ssl``: implicit TLS, or (``starttls``) clear
    text until STARTTLS. Answers as :func:`scripted` does; yields the port and a list
    that receives the client certificate's subject (a dict, empty when the client sent
    none) once the handshake is over, or the handshake's error. Every wait is bounded."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    peers: list[Any] = []

    def handshake(conn: socket.socket) -> ssl.SSLSocket | None:
        try:
            tls = server_context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as error:
            peers.append(error)
            return None
        cert = tls.getpeercert()
        peers.append({k: v for ((k, v),) in cert["subject"]} if cert else {})
        return tls

    def serve() -> None:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        raw.settimeout(10)
        conn: socket.socket | None = raw if starttls else handshake(raw)
        if conn is None:
            raw.close()
            return
        try:
            try:
                conn.sendall(b"220 tls.scripted ESMTP\r\n")
                buffer = b""
                while True:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffer += data
                    while b"\r\n" in buffer:
                        line, buffer = buffer.split(b"\r\n", 1)
                        if seen is not None:
                            seen.append(line)
                        upper = line.upper()
                        if starttls and upper.startswith(b"STARTTLS"):
                            conn.sendall(b"220 go ahead\r\n")
                            tls = handshake(conn)
                            if tls is None:
                                return
                            conn, buffer = tls, b""
                            continue
                        reply = next((r for k, r in replies.items() if upper.startswith(k)), b"502 no\r\n")
                        if upper.startswith(b"QUIT"):
                            reply = b"221 bye\r\n"
                        conn.sendall(reply)
                        if reply.startswith((b"421", b"221")):
                            return
            except OSError:
                return
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, peers
    finally:
        listener.close()
        thread.join(timeout=10)


def test_every_public_smtplib_name_exists() -> None:
    names = set(smtplib.__all__) | {"SMTP_PORT", "SMTP_SSL_PORT", "LMTP_PORT", "LMTP", "CRLF", "bCRLF"}
    missing = [name for name in sorted(names) if not hasattr(smtpx, name)]
    assert missing == []
    for name in smtplib.__all__:
        value = getattr(smtplib, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            # smtplib's own classes: `except smtpx.SMTPException` catches smtpx's errors.
            assert getattr(smtpx, name) is value
    assert smtpx.quoteaddr("Alice <a@example.org>") == "<a@example.org>"
    assert (smtpx.SMTP_PORT, smtpx.SMTP_SSL_PORT, smtpx.LMTP_PORT) == (25, 465, 2003)


@pytest.mark.parametrize("lib", LIBS)
def test_low_level_commands_really_send(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd
    s = lib.SMTP(timeout=10)
    code, greeting = s.connect("127.0.0.1", port)
    assert code == 220 and greeting
    assert s.ehlo("client.test")[0] == 250
    assert s.has_extn("8bitmime") and s.does_esmtp
    assert s.helo("client.test")[0] == 250
    assert s.docmd("NOOP") == (250, b"OK")
    s.putcmd("NOOP")
    assert s.getreply() == (250, b"OK")
    assert s.mail("root") == (250, b"OK")  # a local part without a domain, as given
    assert s.rcpt("nobody@example.net") == (550, b"5.1.1 no such user")
    assert s.rcpt("bob@example.net") == (250, b"OK")
    assert s.data("Subject: low\r\n\r\n.dot\r\nbody\r\n") == (250, b"OK")
    assert s.mail("a@example.org") == (250, b"OK")
    assert s.rset() == (250, b"OK")
    code, _ = s.quit()
    assert code == 221
    [envelope] = handler.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("root", ["bob@example.net"])
    assert envelope.original_content == b"Subject: low\r\n\r\n.dot\r\nbody\r\n"


@pytest.mark.parametrize("lib", LIBS)
def test_sendmail_errors_as_smtplib(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd
    with lib.SMTP("127.0.0.1", port, timeout=10) as s:
        with pytest.raises(lib.SMTPRecipientsRefused) as everyone:
            s.sendmail("a@example.org", ["no1@example.net", "no2@example.net"], "x\r\n")
        assert everyone.value.recipients == {
            "no1@example.net": (550, b"5.1.1 no such user"),
            "no2@example.net": (550, b"5.1.1 no such user"),
        }
        with pytest.raises(lib.SMTPSenderRefused) as sender:
            s.sendmail("refused@example.org", ["b@example.net"], "x\r\n")
        assert (sender.value.smtp_code, sender.value.smtp_error, sender.value.sender) == (
            553,
            b"5.7.1 sender refused",
            "refused@example.org",
        )
        assert str(sender.value) == "(553, b'5.7.1 sender refused', 'refused@example.org')"
        with pytest.raises(lib.SMTPDataError) as data:
            s.sendmail("a@example.org", ["b@example.net"], "REJECT\r\n")
        assert (data.value.smtp_code, data.value.smtp_error) == (554, b"5.6.0 content refused")
        assert str(data.value) == "(554, b'5.6.0 content refused')"
        assert s.sendmail("a@example.org", ["b@example.net", "no@example.net"], "ok\r\n") == {
            "no@example.net": (550, b"5.1.1 no such user")
        }
        assert s.noop() == (250, b"OK")
    assert len(handler.envelopes) == 1


@pytest.mark.parametrize("lib", LIBS)
def test_connection_refused_is_connection_refused_error(lib: ModuleType) -> None:
    with pytest.raises(ConnectionRefusedError) as refused:
        lib.SMTP("127.0.0.1", free_port(), timeout=5)
    assert refused.value.errno is not None


@pytest.mark.parametrize("lib", LIBS)
def test_bad_greeting_is_smtp_connect_error(lib: ModuleType) -> None:
    with scripted({}, greeting=b"554 no service here\r\n") as port:
        with pytest.raises(lib.SMTPConnectError) as bad:
            lib.SMTP("127.0.0.1", port, timeout=5)
    assert (bad.value.smtp_code, bad.value.smtp_error) == (554, b"no service here")


@pytest.mark.parametrize("lib", LIBS)
def test_refused_ehlo_and_helo_is_smtp_helo_error(lib: ModuleType) -> None:
    # smtplib raises it where it first greets (sendmail); smtpx greets in the constructor.
    with scripted({b"EHLO": b"500 no\r\n", b"HELO": b"501 not you\r\n"}) as port:
        with pytest.raises(lib.SMTPHeloError) as refused:
            with lib.SMTP("127.0.0.1", port, timeout=5) as s:
                s.sendmail("a@example.org", ["b@example.net"], "x\r\n")
    assert (refused.value.smtp_code, refused.value.smtp_error) == (501, b"not you")


@pytest.mark.parametrize("lib", LIBS)
def test_421_keeps_its_code(lib: ModuleType) -> None:
    with scripted({b"EHLO": b"250 scripted\r\n", b"MAIL": b"421 4.3.2 shutting down\r\n"}) as port:
        s = lib.SMTP("127.0.0.1", port, timeout=5)
        with pytest.raises(lib.SMTPResponseException) as closing:
            s.sendmail("a@example.org", ["b@example.net"], "x\r\n")
        s.close()
    assert (closing.value.smtp_code, closing.value.smtp_error) == (421, b"4.3.2 shutting down")


@pytest.mark.parametrize("lib", LIBS)
def test_untrusted_certificate_is_ssl_cert_verification_error(
    lib: ModuleType, tmp_path: pathlib.Path, cert_files: tuple[pathlib.Path, pathlib.Path]
) -> None:
    cert, key = cert_files
    server = start_server(tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        with lib.SMTP("localhost", server.port, timeout=10) as s:
            with pytest.raises(ssl.SSLCertVerificationError):
                s.starttls(context=ssl.create_default_context())
    finally:
        server.stop()


@pytest.mark.parametrize("lib", LIBS)
def test_starttls_re_ehlo_and_login(
    lib: ModuleType, tmp_path: pathlib.Path, ca: Any, cert_files: tuple[pathlib.Path, pathlib.Path]
) -> None:
    cert, key = cert_files
    server = start_server(
        tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--auth", "alice:s3cret"
    )
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with lib.SMTP("localhost", server.port, timeout=10) as s:
            s.ehlo()
            code, message = s.starttls(context=context)
            assert code == 220 and message
            assert s.ehlo()[0] == 250
            assert "PLAIN" in s.esmtp_features["auth"]
            with pytest.raises(lib.SMTPAuthenticationError) as wrong:
                s.login("alice", "wrong")
            assert wrong.value.smtp_code == 535
        with lib.SMTP("localhost", server.port, timeout=10) as s:
            s.starttls(context=context)
            s.ehlo()
            assert s.login("alice", "s3cret", initial_response_ok=False)[0] == 235
        with lib.SMTP("localhost", server.port, timeout=10) as s:
            s.starttls(context=context)
            s.ehlo()
            s.user, s.password = "alice", "s3cret"
            assert s.auth("PLAIN", s.auth_plain)[0] == 235
        with lib.SMTP("localhost", server.port, timeout=10) as s:
            s.starttls(context=context)
            s.ehlo()
            s.user, s.password = "alice", "s3cret"
            assert s.auth("LOGIN", s.auth_login, initial_response_ok=False)[0] == 235
            assert s.sendmail("a@example.org", ["b@example.net"], "Subject: tls\r\n\r\nhi\r\n") == {}
    finally:
        assert server.stop() == 0
    assert len(server.delivered()) == 1


@pytest.mark.parametrize("lib", LIBS)
def test_send_message_international_sends_smtputf8(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd
    msg = EmailMessage()
    msg["From"] = "jörg@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "grüße"
    msg.set_content("Grüße\n")
    with lib.SMTP("127.0.0.1", port, timeout=10) as s:
        assert s.send_message(msg) == {}
    [envelope] = handler.envelopes
    assert envelope.mail_from == "jörg@example.org"
    assert "SMTPUTF8" in envelope.mail_options and "BODY=8BITMIME" in envelope.mail_options


@pytest.mark.parametrize("lib", LIBS)
def test_source_address(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd
    source = ("127.0.0.1", free_port())
    with lib.SMTP("127.0.0.1", port, timeout=10, source_address=source) as s:
        assert s.sendmail("a@example.org", ["b@example.net"], "x\r\n") == {}
    assert tuple(handler.peers[0]) == source


@pytest.mark.parametrize("lib", LIBS)
def test_debuglevel_prints_what_smtplib_prints(
    lib: ModuleType, aiosmtpd: tuple[int, Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = aiosmtpd
    with lib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.set_debuglevel(1)
        s.noop()
    err = capsys.readouterr().err
    assert "send: 'noop\\r\\n'" in err.lower()
    assert "reply: retcode (250); Msg: b'OK'" in err


def test_smtpx_refuses_nul_and_line_breaks_in_commands(aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as s:
        for bad in ("a\x00b@example.org", "a@example.org\rRSET", "a@example.org\nRSET"):
            with pytest.raises(ValueError):
                s.sendmail(bad, ["b@example.net"], "x\r\n")
            with pytest.raises(ValueError):
                s.mail(bad)
        assert s.noop() == (250, b"OK")
    assert handler.envelopes == []


def test_smtpx_auth_responses_never_reach_the_debug_output(
    tmp_path: pathlib.Path, ca: Any, cert_files: tuple[pathlib.Path, pathlib.Path]
) -> None:
    cert, key = cert_files
    server = start_server(tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--auth", "alice:s3cret")
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            with smtpx.SMTP("localhost", server.port, timeout=10) as s:
                s.set_debuglevel(1)
                s.starttls(context=context)
                s.user, s.password = "alice", "s3cret"
                assert s.auth("LOGIN", s.auth_login, initial_response_ok=False)[0] == 235
        assert "AUTH LOGIN" in err.getvalue()
        assert "s3cret" not in err.getvalue() and "czNjcmV0" not in err.getvalue()
        # Without TLS the mechanism's responses are not sent at all.
        with smtpx.SMTP("localhost", server.port, timeout=10) as s:
            s.user, s.password = "alice", "s3cret"
            with pytest.raises(smtpx.SmtpInsecureAuthError):
                s.auth("PLAIN", s.auth_plain)
            assert s.noop()[0] == 250
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("cls", [smtpx.SMTP, smtpx.SMTP_SSL, smtpx.LMTP, smtpx.aio.SMTP, smtpx.aio.LMTP])
def test_every_public_client_method_has_a_docstring(cls: type) -> None:
    import inspect

    missing = [
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_")
        and (inspect.isfunction(member) or isinstance(member, property))
        and not (member.__doc__ or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("lib", LIBS)
def test_lmtp_over_a_unix_socket(lib: ModuleType, tmp_path: pathlib.Path) -> None:
    from aiosmtpd.controller import UnixSocketController
    from aiosmtpd.lmtp import LMTP

    class LmtpController(UnixSocketController):
        def factory(self) -> Any:
            return LMTP(self.handler)

    handler = Recording()
    path = tmp_path / "lmtp.sock"
    controller = LmtpController(handler, unix_socket=str(path))
    controller.start()
    try:
        s = lib.LMTP(str(path))
        assert s.sendmail("a@example.org", ["bob@example.net", "nobody@example.net"], "x\r\n") == {
            "nobody@example.net": (550, b"5.1.1 no such user")
        }
        # Local delivery: local parts without a domain, sent as given.
        assert s.sendmail("me", ["postmaster"], "x\r\n") == {}
        assert s.quit()[0] == 221
    finally:
        controller.stop()
    assert [(e.mail_from, e.rcpt_tos) for e in handler.envelopes] == [
        ("a@example.org", ["bob@example.net"]),
        ("me", ["postmaster"]),
    ]


# -- client certificates (mutual TLS) ---------------------------------------------------


@pytest.fixture
def mutual_tls(ca: Any, tmp_path: pathlib.Path) -> dict[str, Any]:
    """A server context that requires a client certificate from the test CA, the client's
    certificate and key files (apart, and together in one file), and a client context
    that trusts the CA."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ca.issue_cert("client.test", common_name="client.test")
    cert, key, both = tmp_path / "client.pem", tmp_path / "client.key", tmp_path / "client-both.pem"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    both.write_bytes(client.private_key_pem.bytes() + client.cert_chain_pems[0].bytes())
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    return {"server": server, "cert": str(cert), "key": str(key), "both": str(both), "trusted": trusted}


def _trust(lib: ModuleType, context: ssl.SSLContext) -> dict[str, Any]:
    """How the server's CA is trusted next to keyfile/certfile. smtplib (before 3.12)
    does not check the server at all on that path (its context is
    ``ssl._create_stdlib_context``) and refuses a context with them; smtpx checks the
    server and takes the context beside them (README: differences). This is the one
    argument the two runs do not share."""
    return {} if lib is smtplib else {"context": context}


@pytest.mark.parametrize("lib", LIBS)
def test_smtp_ssl_client_certificate_reaches_the_server(lib: ModuleType, mutual_tls: dict[str, Any]) -> None:
    replies = {b"EHLO": b"250 tls.scripted\r\n", b"NOOP": b"250 OK\r\n"}
    with tls_scripted(mutual_tls["server"], replies) as (port, peers):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # smtplib 3.11's keyfile/certfile
            s = lib.SMTP_SSL(
                "localhost", port, keyfile=mutual_tls["key"], certfile=mutual_tls["cert"], timeout=10,
                **_trust(lib, mutual_tls["trusted"]),
            )
        with s:
            assert s.noop() == (250, b"OK")
            assert (s.keyfile, s.certfile) == (mutual_tls["key"], mutual_tls["cert"])
    assert [peer.get("commonName") for peer in peers] == ["client.test"]


@pytest.mark.parametrize("lib", LIBS)
def test_starttls_client_certificate_reaches_the_server(lib: ModuleType, mutual_tls: dict[str, Any]) -> None:
    replies = {b"EHLO": b"250-tls.scripted\r\n250 STARTTLS\r\n", b"NOOP": b"250 OK\r\n"}
    with tls_scripted(mutual_tls["server"], replies, starttls=True) as (port, peers):
        with lib.SMTP("localhost", port, timeout=10) as s:
            s.ehlo()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                # The key in the certificate's file, as ssl's load_cert_chain takes it.
                code, _ = s.starttls(certfile=mutual_tls["both"], **_trust(lib, mutual_tls["trusted"]))
            assert code == 220
            s.ehlo()
            assert s.noop() == (250, b"OK")
    assert [peer.get("commonName") for peer in peers] == ["client.test"]


@pytest.mark.parametrize("lib", LIBS)
def test_client_certificate_errors_as_smtplib(
    lib: ModuleType, mutual_tls: dict[str, Any], tmp_path: pathlib.Path, ca: Any
) -> None:
    ca.issue_cert("other.test").private_key_pem.write_to_path(str(tmp_path / "other.key"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="certfile must be specified"):
            lib.SMTP_SSL(keyfile=mutual_tls["key"])
        with pytest.raises(FileNotFoundError):
            lib.SMTP_SSL(keyfile=str(tmp_path / "missing.key"), certfile=str(tmp_path / "missing.pem"))
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a certificate\n")
        with pytest.raises(ssl.SSLError):
            lib.SMTP_SSL(certfile=str(garbage))
        with pytest.raises(ssl.SSLError):  # a key that is not the certificate's
            lib.SMTP_SSL(certfile=mutual_tls["cert"], keyfile=str(tmp_path / "other.key"))


@pytest.mark.parametrize("loaded", [False, True], ids=["no-chain", "chain-in-context"])
def test_smtpx_without_the_required_client_certificate_fails(mutual_tls: dict[str, Any], loaded: bool) -> None:
    # The server refuses the handshake; smtpx raises an ssl.SSLError subclass (TLS 1.3
    # tells the client after its own Finished, so this may come at the greeting). A
    # chain loaded into the context is not sent either: Python's ssl cannot give it back
    # (README: differences; certfile/keyfile is the way).
    context = mutual_tls["trusted"]
    if loaded:
        context.load_cert_chain(mutual_tls["cert"], mutual_tls["key"])
    with tls_scripted(mutual_tls["server"], {}) as (port, peers):
        with pytest.raises((ssl.SSLError, smtpx.SmtpDisconnected)):
            smtpx.SMTP_SSL("localhost", port, timeout=10, context=context)
    assert len(peers) == 1 and isinstance(peers[0], ssl.SSLError)


def test_smtpx_send_with_a_client_certificate_into_aiosmtpd(mutual_tls: dict[str, Any], ca_file: pathlib.Path) -> None:
    # aiosmtpd over implicit TLS that requires a client certificate: delivered means the
    # certificate arrived and was checked.
    from aiosmtpd.controller import Controller

    handler = Recording()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=mutual_tls["server"])
    controller.start()
    try:
        result = smtpx.send(
            b"Subject: mtls\r\n\r\nhi\r\n", sender="a@example.org", recipients=["b@example.net"],
            hostname="localhost", port=port, use_tls=True, cert_bundle=str(ca_file),
            client_cert=mutual_tls["cert"], client_key=mutual_tls["key"], timeout=10,
        )
        assert result.ok
        # Refused: TLS 1.3 tells the client after its Finished, so as an alert (an
        # ssl.SSLError) or, when the server closes without one, as a hang-up.
        with pytest.raises((ssl.SSLError, smtpx.SmtpDisconnected)):
            smtpx.send(
                b"Subject: no cert\r\n\r\nhi\r\n", sender="a@example.org", recipients=["b@example.net"],
                hostname="localhost", port=port, use_tls=True, cert_bundle=str(ca_file), timeout=10,
            )
    finally:
        controller.stop()
    assert [e.rcpt_tos for e in handler.envelopes] == [["b@example.net"]]


# -- addresses as given ------------------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_sendmail_to_a_local_part_without_a_domain(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd
    with lib.SMTP("127.0.0.1", port, timeout=10) as s:
        assert s.sendmail("me", ["postmaster", "root"], "Subject: local\r\n\r\nhi\r\n") == {}
        msg = EmailMessage()
        msg["From"] = "me"
        msg["To"] = "postmaster"
        msg.set_content("hi\n")
        assert s.send_message(msg) == {}
        assert s.noop() == (250, b"OK")
    assert [(e.mail_from, e.rcpt_tos) for e in handler.envelopes] == [
        ("me", ["postmaster", "root"]),
        ("me", ["postmaster"]),
    ]


def test_smtpx_refuses_what_is_not_an_address_before_sending(aiosmtpd: tuple[int, Recording]) -> None:
    # smtplib's quoteaddr drops what follows a CR or LF ("me\r\nRSET" goes out as <me>);
    # smtpx refuses it, and a local part that is not one, before writing anything.
    port, handler = aiosmtpd
    with smtpx.SMTP("127.0.0.1", port, timeout=10) as s:
        for bad in ("me\r\nRSET", "me\nRCPT TO:<x@y>", "me\0", "a b", "me> SIZE=1", "a@"):
            with pytest.raises(ValueError, match="invalid address|CR, LF or NUL"):
                s.sendmail("me", [bad], "x\r\n")
            with pytest.raises(ValueError, match="invalid address|CR, LF or NUL"):
                s.sendmail(bad, ["postmaster"], "x\r\n")
        assert s.noop() == (250, b"OK")
    assert handler.envelopes == []


# -- a 421 raised as the class of its phase ----------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("phase", ["MAIL", "RCPT", "DATA"])
def test_421_is_raised_as_the_class_of_its_phase(lib: ModuleType, phase: str) -> None:
    replies = {b"EHLO": b"250 scripted\r\n", b"MAIL": b"250 OK\r\n", b"RCPT": b"250 OK\r\n"}
    replies[phase.encode()] = b"421 4.3.2 shutting down\r\n"
    with scripted(replies) as port:
        s = lib.SMTP("127.0.0.1", port, timeout=5)
        with pytest.raises(lib.SMTPResponseException if phase != "RCPT" else lib.SMTPRecipientsRefused) as closing:
            s.sendmail("a@example.org", ["b@example.net"], "x\r\n")
        error = closing.value
        if phase == "MAIL":
            assert isinstance(error, lib.SMTPSenderRefused)
            assert (error.smtp_code, error.smtp_error, error.sender) == (421, b"4.3.2 shutting down", "a@example.org")
            assert s.sock is None  # closed, as smtplib closes after a 421
        elif phase == "RCPT":
            assert error.recipients == {"b@example.net": (421, b"4.3.2 shutting down")}
            assert s.sock is None
        else:
            assert isinstance(error, lib.SMTPDataError)
            assert (error.smtp_code, error.smtp_error) == (421, b"4.3.2 shutting down")
        s.close()
        with pytest.raises(lib.SMTPServerDisconnected):
            s.noop()


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("command", ["docmd", "noop", "rset", "vrfy"])
def test_421_to_a_command_is_returned_as_smtplib_does(lib: ModuleType, command: str) -> None:
    replies = {b"EHLO": b"250 scripted\r\n", b"NOOP": b"421 4.3.2 bye\r\n", b"RSET": b"421 4.3.2 bye\r\n",
               b"VRFY": b"421 4.3.2 bye\r\n"}
    with scripted(replies) as port:
        s = lib.SMTP("127.0.0.1", port, timeout=5)
        call = {"docmd": lambda: s.docmd("NOOP"), "noop": s.noop, "rset": s.rset, "vrfy": lambda: s.vrfy("x")}
        assert call[command]() == (421, b"4.3.2 bye")
        s.close()


@pytest.mark.parametrize("lib", LIBS)
def test_421_to_auth_is_an_authentication_error(lib: ModuleType) -> None:
    # One mechanism: with several, both libraries try the next on the closed connection
    # and raise SMTPServerDisconnected (which smtpx's SmtpAuthErrorClosing also is).
    replies = {b"EHLO": b"250-scripted\r\n250 AUTH PLAIN\r\n", b"AUTH": b"421 4.3.2 bye\r\n"}
    with scripted(replies) as port:
        s = lib.SMTP("127.0.0.1", port, timeout=5)
        s.allow_insecure_auth = True  # smtpx's opt-in to AUTH without TLS; smtplib ignores it
        with pytest.raises(lib.SMTPAuthenticationError) as refused:
            s.login("alice", "s3cret")
        assert (refused.value.smtp_code, refused.value.smtp_error) == (421, b"4.3.2 bye")
        s.close()
