"""TLS in smtpx.aio: rustls through smtpx._native.TlsSession.

The native TLS sessions in memory; the asyncio client with STARTTLS and implicit TLS
against the Rust example server and the asyncio server; certificate checks; smtplib and
aiosmtplib upgrading against the asyncio server; and STARTTLS command injection, both
ways: what a client pipelines after STARTTLS is never executed by the server, and reply
bytes a server (or a man in the middle) sends after its 220 are never read by the client.
Certificates come from trustme.
"""

from __future__ import annotations

import asyncio
import pathlib
import smtplib
import socket
import ssl
import threading
from typing import Any

import pytest

import smtpx
import smtpx.aio
from smtpx import _native

from conftest import start_server
from test_aio import MESSAGE, AsyncRecorder, run

CertFiles = tuple[pathlib.Path, pathlib.Path]


@pytest.fixture
def other_ca_cert_files(tmp_path: pathlib.Path) -> CertFiles:
    """A certificate for 127.0.0.1 from a CA nobody trusts."""
    import trustme

    cert = trustme.CA().issue_cert("localhost", "127.0.0.1")
    cert_path = tmp_path / "untrusted-cert.pem"
    key_path = tmp_path / "untrusted-key.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    return cert_path, key_path


class TlsRecorder(AsyncRecorder):
    """Records MAIL and whether each message came over TLS and authenticated."""

    def __init__(self) -> None:
        super().__init__()
        self.mail: list[str] = []
        self.sessions: list[tuple[bool, bool]] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.mail.append(address)
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: smtpx.Envelope) -> str:
        self.sessions.append((session.ssl is not None, session.authenticated))
        return await super().handle_DATA(server, session, envelope)


class Logins:
    """An authenticator that accepts alice/s3cret and counts the attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> bool:
        self.attempts += 1
        return bool(data.login == b"alice" and data.password == b"s3cret")


def tls_server(handler: Any, cert_files: CertFiles, **kw: Any) -> smtpx.aio.Server:
    return smtpx.aio.Server(handler, port=0, server_hostname="mx.aio.test", tls_context=cert_files, **kw)


# The native TLS sessions, in memory ------------------------------------------------------------


def handshake_in_memory(client: _native.TlsSession, server: _native.TlsSession) -> None:
    for _ in range(10):
        if not client.is_handshaking and not server.is_handshaking:
            return
        assert server.receive(client.output()) == b""
        assert client.receive(server.output()) == b""
    raise AssertionError("the handshake did not finish in 10 rounds")


def test_native_tls_sessions_in_memory(ca: Any, cert_files: CertFiles) -> None:
    cert, key = cert_files
    server_config = _native.TlsConfig.server(cert.read_bytes(), key.read_bytes())
    client_config = _native.TlsConfig.client(ca_pem=ca.cert_pem.bytes())
    assert server_config.is_server and not client_config.is_server
    client = _native.TlsSession(client_config, "mx.test")
    server = _native.TlsSession(server_config)
    assert client.is_handshaking and client.protocol_version is None
    handshake_in_memory(client, server)
    assert client.protocol_version == "TLSv1.3" and client.cipher_suite is not None
    server.output()  # session tickets

    big = bytes(range(256)) * 4096  # 1 MiB: more than rustls buffers at once
    client.write(big)
    wire = client.output()
    assert len(wire) > len(big) and big[:64] not in wire
    received = b"".join(server.receive(wire[i : i + 1000]) for i in range(0, len(wire), 1000))
    assert received == big

    server.write(b"221 bye\r\n")
    server.close()
    assert client.receive(server.output()) == b"221 bye\r\n"
    assert client.peer_closed and not server.peer_closed


def test_native_tls_refuses_an_untrusted_or_misnamed_server(ca: Any, cert_files: CertFiles) -> None:
    cert, key = cert_files
    server_config = _native.TlsConfig.server_from_files(cert, key)
    for config, name, why in [
        (_native.TlsConfig.client(), "mx.test", "UnknownIssuer"),  # Mozilla's roots
        (_native.TlsConfig.client(ca_pem=ca.cert_pem.bytes()), "other.test", "not valid for name"),
    ]:
        client = _native.TlsSession(config, name)
        server = _native.TlsSession(server_config)
        server.receive(client.output())
        with pytest.raises(smtpx.SmtpTlsError, match=why) as failed:
            client.receive(server.output())
        assert "handshake" in str(failed.value)
        # The client's alert tells the server why.
        with pytest.raises(smtpx.SmtpTlsError, match="alert"):
            server.receive(client.output())
    accept_any = _native.TlsConfig.client(dangerous_accept_invalid_certs=True)
    handshake_in_memory(_native.TlsSession(accept_any, "other.test"), _native.TlsSession(server_config))


def test_native_tls_argument_errors(tmp_path: pathlib.Path, cert_files: CertFiles) -> None:
    client_config = _native.TlsConfig.client()
    server_config = _native.TlsConfig.server_from_files(*cert_files)
    with pytest.raises(ValueError, match="server_name"):
        _native.TlsSession(client_config)
    with pytest.raises(ValueError, match="server_name"):
        _native.TlsSession(server_config, "mx.test")
    with pytest.raises(ValueError, match="not a DNS name"):
        _native.TlsSession(client_config, "bad name!")
    with pytest.raises(ValueError, match="roots"):
        _native.TlsConfig.client(roots="everything")
    with pytest.raises(ValueError, match="not both"):
        _native.TlsConfig.client(ca_file="a.pem", ca_pem=b"")
    with pytest.raises(smtpx.SmtpTlsError, match="no CERTIFICATE"):
        _native.TlsConfig.client(ca_pem=b"not PEM")
    with pytest.raises(smtpx.SmtpTlsError, match="missing-ca.pem"):
        _native.TlsConfig.client(ca_file=tmp_path / "missing-ca.pem")
    with pytest.raises(smtpx.SmtpTlsError, match="missing-key.pem"):
        _native.TlsConfig.server_from_files(cert_files[0], tmp_path / "missing-key.pem")
    with pytest.raises(smtpx.SmtpTlsError, match="no PRIVATE KEY"):
        _native.TlsConfig.server(cert_files[0].read_bytes(), b"")
    # Garbage instead of a ServerHello.
    client = _native.TlsSession(client_config, "mx.test")
    with pytest.raises(smtpx.SmtpTlsError):
        client.receive(b"220 not TLS at all\r\n")


# The asyncio client ---------------------------------------------------------------------------


def test_aio_starttls_and_auth_against_the_rust_server(
    tmp_path: pathlib.Path, cert_files: CertFiles, ca_file: pathlib.Path
) -> None:
    cert, key = cert_files
    server = start_server(
        tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--require-tls", "--auth", "alice:s3cret"
    )

    async def main() -> None:
        client = smtpx.aio.SMTP(
            hostname="127.0.0.1", port=server.port, username="alice", password="s3cret",
            cert_bundle=ca_file, timeout=10,
        )
        async with client:
            assert client.is_tls
            assert (await client.sendmail("a@example.org", ["b@example.net"], MESSAGE))[0] == {}
        assert not client.is_tls
        with pytest.raises(smtpx.SmtpAuthError):
            async with smtpx.aio.SMTP(
                hostname="127.0.0.1", port=server.port, username="alice", password="wrong",
                start_tls=True, cert_bundle=ca_file, timeout=10,
            ):
                pass
        # Without TLS the server offers no AUTH and refuses MAIL (--require-tls).
        async with smtpx.aio.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False, timeout=10) as plain:
            assert not plain.is_tls
            with pytest.raises(smtpx.SmtpSenderRefused) as refused:
                await plain.sendmail("a@example.org", ["b@example.net"], MESSAGE)
            assert refused.value.smtp_code == 530

    try:
        run(main())
        delivered = server.wait_for(1)
        assert len(delivered) == 1 and b"with ESMTPSA id" in delivered[0]
    finally:
        assert server.stop() == 0


def test_aio_implicit_tls_against_the_rust_server(tmp_path: pathlib.Path, cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    cert, key = cert_files
    server = start_server(tmp_path / "md", "--tls-cert", str(cert), "--tls-key", str(key), "--tls-listen", "127.0.0.1:0")
    try:
        assert server.proc.stderr is not None
        port = int(server.proc.stderr.readline().strip().rsplit(":", 1)[1])
        refused, _ = run(smtpx.aio.send(
            MESSAGE, sender="a@example.org", recipients=["b@example.net"], hostname="127.0.0.1", port=port,
            use_tls=True, cert_bundle=ca_file, timeout=10,
        ))
        assert refused == {}
        assert len(server.wait_for(1)) == 1
    finally:
        assert server.stop() == 0


def test_aio_client_and_server_starttls_with_auth(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    handler = TlsRecorder()
    logins = Logins()

    async def main() -> None:
        async with tls_server(handler, cert_files, authenticator=logins, auth_required=True) as server:
            host, port = server.address
            # auth_require_tls defaults to True with a certificate: no AUTH in clear (the
            # client would send it here: allowed, so that the server's side is what shows).
            with pytest.raises(smtpx.SmtpNotSupportedError):
                async with smtpx.aio.SMTP(
                    hostname=host, port=port, username="alice", password="s3cret", start_tls=False,
                    allow_insecure_auth=True, timeout=10,
                ):
                    pass
            # Without the permission the client refuses first, and says why.
            with pytest.raises(smtpx.SmtpInsecureAuthError):
                async with smtpx.aio.SMTP(
                    hostname=host, port=port, username="alice", password="s3cret", start_tls=False, timeout=10
                ):
                    pass
            assert logins.attempts == 0
            async with smtpx.aio.SMTP(
                hostname=host, port=port, username="alice", password="s3cret", cert_bundle=ca_file, timeout=10
            ) as client:
                assert client.is_tls
                assert (await client.sendmail("a@example.com", ["b@example.com"], MESSAGE))[0] == {}
                assert (await client.noop())[0] == 250

    run(main())
    assert logins.attempts == 1
    assert handler.messages == [("a@example.com", ["b@example.com"], MESSAGE)]
    assert handler.sessions == [(True, True)]


def test_aio_implicit_tls_client_and_server(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    handler = TlsRecorder()

    async def main() -> None:
        async with tls_server(handler, cert_files, implicit_tls=True) as server:
            host, port = server.address
            refused, _ = await smtpx.aio.send(
                MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                use_tls=True, cert_bundle=ca_file, timeout=10,
            )
            assert refused == {}
            # A plain-text client on the TLS port gets no SMTP at all.
            with pytest.raises((smtpx.SmtpError, ConnectionError)):
                await smtpx.aio.send(
                    MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                    start_tls=False, timeout=2,
                )

    run(main())
    assert handler.sessions == [(True, False)]
    assert handler.mail == ["a@example.com"]


@pytest.mark.parametrize("implicit", [False, True])
def test_aio_server_times_out_a_stalled_handshake(cert_files: CertFiles, implicit: bool) -> None:
    """A client that stops during the TLS handshake (before its ClientHello) is
    disconnected once the server's timeout has passed, with nothing said in clear."""

    async def main() -> None:
        async with tls_server(TlsRecorder(), cert_files, timeout=0.5, implicit_tls=implicit) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            if not implicit:
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
                writer.write(b"EHLO client.test\r\n")
                while not (line := await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 "):
                    assert line.startswith(b"250-"), line
                writer.write(b"STARTTLS\r\n")
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert asyncio.get_running_loop().time() - started > 0.3
            writer.close()

    run(main())


def test_aio_client_checks_the_certificate(
    ca: Any, cert_files: CertFiles, other_ca_cert_files: CertFiles, ca_file: pathlib.Path
) -> None:
    handler = TlsRecorder()

    async def main() -> None:
        async with tls_server(handler, other_ca_cert_files) as server:
            host, port = server.address
            for kw in [{}, {"cert_bundle": ca_file}]:
                with pytest.raises(smtpx.SmtpTlsError, match="UnknownIssuer"):
                    await smtpx.aio.send(
                        MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                        start_tls=True, timeout=10, **kw,
                    )
            assert handler.mail == []
            # validate_certs=False: any certificate (tests only).
            assert (await smtpx.aio.send(
                MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                start_tls=True, validate_certs=False, timeout=10,
            ))[0] == {}
            # An ssl.SSLContext is read as the blocking client reads it: its CAs.
            context = ssl.create_default_context()
            ca.configure_trust(context)
            with pytest.raises(smtpx.SmtpTlsError):
                await smtpx.aio.send(
                    MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                    tls_context=context, timeout=10,
                )
        async with tls_server(handler, cert_files) as server:
            host, port = server.address
            assert (await smtpx.aio.send(
                MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                tls_context=context, timeout=10,
            ))[0] == {}

    run(main())
    assert handler.sessions == [(True, False), (True, False)]


def test_aio_required_starttls_fails_before_mail_and_auth() -> None:
    handler = TlsRecorder()
    logins = Logins()

    async def main() -> None:
        # No certificate: no STARTTLS, and AUTH offered in clear (asked for: auth_require_tls
        # defaults to True, as aiosmtpd's).
        async with smtpx.aio.Server(
            handler, port=0, server_hostname="mx.aio.test", authenticator=logins, auth_require_tls=False
        ) as server:
            host, port = server.address
            with pytest.raises(smtpx.SmtpNotSupportedError, match="STARTTLS"):
                await smtpx.aio.send(
                    MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                    username="alice", password="s3cret", start_tls=True, timeout=10,
                )
            client = smtpx.aio.SMTP(hostname=host, port=port, start_tls=True, timeout=10)
            with pytest.raises(smtpx.SmtpNotSupportedError):
                await client.connect()
            assert not client.is_connected
            # Opportunistic (the default) goes on in clear, but not with the credentials...
            with pytest.raises(smtpx.SmtpInsecureAuthError):
                await smtpx.aio.send(
                    MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                    username="alice", password="s3cret", timeout=10,
                )
            # ...unless allowed.
            assert (await smtpx.aio.send(
                MESSAGE, sender="a@example.com", recipients="b@example.com", hostname=host, port=port,
                username="alice", password="s3cret", allow_insecure_auth=True, timeout=10,
            ))[0] == {}

    run(main())
    assert logins.attempts == 1
    assert handler.mail == ["a@example.com"]
    assert handler.sessions == [(False, True)]


def test_aio_explicit_starttls(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    handler = TlsRecorder()

    async def main() -> None:
        async with tls_server(handler, cert_files) as server:
            host, port = server.address
            async with smtpx.aio.SMTP(hostname=host, port=port, start_tls=False, cert_bundle=ca_file, timeout=10) as c:
                assert not c.is_tls
                code, message = await c.starttls()
                assert code == 220 and "TLS" in message  # the server's own 220
                assert c.is_tls
                with pytest.raises(smtpx.SmtpNotSupportedError):
                    await c.starttls()
                assert (await c.sendmail("a@example.com", "b@example.com", MESSAGE))[0] == {}
        async with smtpx.aio.Server(handler, port=0, server_hostname="mx.aio.test") as server:
            host, port = server.address
            async with smtpx.aio.SMTP(hostname=host, port=port, start_tls=False, timeout=10) as c:
                with pytest.raises(smtpx.SmtpReplyError) as refused:
                    await c.starttls()
                assert refused.value.smtp_code == 502
                assert not c.is_tls and (await c.noop())[0] == 250

    run(main())
    assert handler.sessions == [(True, False)]


def test_aio_client_argument_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="exclusive"):
        smtpx.aio.SMTP(use_tls=True, start_tls=True)
    with pytest.raises(smtpx.SmtpTlsError, match="missing.pem"):
        smtpx.aio.SMTP(cert_bundle=tmp_path / "missing.pem")
    assert smtpx.aio.SMTP(use_tls=True).port == 465
    assert smtpx.aio.SMTP().port == 25
    with pytest.raises(ValueError, match="tls_context"):
        smtpx.aio.Server(AsyncRecorder(), implicit_tls=True)
    with pytest.raises(TypeError, match="certfile"):
        smtpx.aio.Server(AsyncRecorder(), tls_context="cert.pem")
    with pytest.raises(TypeError, match="no_such_option"):
        smtpx.aio.Server(AsyncRecorder(), no_such_option=1)


# Other clients against the asyncio server ------------------------------------------------------


def test_smtplib_starttls_to_aio_server(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    handler = TlsRecorder()
    logins = Logins()

    def client(host: str, port: int) -> None:
        with smtplib.SMTP(host, port, timeout=10) as s:
            s.ehlo("client.test")
            assert s.has_extn("starttls") and not s.has_extn("auth")
            assert s.starttls(context=ssl.create_default_context(cafile=str(ca_file)))[0] == 220
            s.ehlo("client.test")
            assert s.has_extn("auth") and not s.has_extn("starttls")
            assert s.login("alice", "s3cret")[0] == 235
            assert s.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}

    async def main() -> None:
        async with tls_server(handler, cert_files, authenticator=logins) as server:
            await asyncio.to_thread(client, *server.address)

    run(main())
    assert handler.messages == [("a@example.com", ["b@example.com"], MESSAGE)]
    assert handler.sessions == [(True, True)]


def test_aiosmtplib_start_tls_and_use_tls_to_aio_server(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    import aiosmtplib

    handler = TlsRecorder()
    logins = Logins()

    async def main() -> None:
        async with tls_server(handler, cert_files, authenticator=logins, require_starttls=True) as server:
            host, port = server.address
            errors, response = await aiosmtplib.send(
                MESSAGE, sender="a@example.com", recipients=["b@example.com"], hostname=host, port=port,
                start_tls=True, cert_bundle=str(ca_file), username="alice", password="s3cret", timeout=10,
            )
            assert errors == {} and "queued as" in response
            with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                await aiosmtplib.send(
                    MESSAGE, sender="a@example.com", recipients=["b@example.com"], hostname=host, port=port,
                    start_tls=False, timeout=10,
                )
            assert refused.value.code == 530  # require_starttls
        async with tls_server(handler, cert_files, implicit_tls=True) as server:
            host, port = server.address
            errors, _ = await aiosmtplib.send(
                MESSAGE, sender="a@example.com", recipients=["b@example.com"], hostname=host, port=port,
                use_tls=True, cert_bundle=str(ca_file), timeout=10,
            )
            assert errors == {}

    run(main())
    assert handler.sessions == [(True, True), (True, False)]


# STARTTLS command injection ---------------------------------------------------------------------


def read_reply(sock: socket.socket | ssl.SSLSocket, buffered: bytearray) -> bytes:
    """One whole (possibly multi-line) reply from a blocking socket with a timeout."""
    while True:
        end = 0
        while (nl := buffered.find(b"\r\n", end)) >= 0:
            line = bytes(buffered[end : nl + 2])
            end = nl + 2
            if line[3:4] == b" ":
                reply = bytes(buffered[:end])
                del buffered[:end]
                return reply
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; unread {bytes(buffered)!r}")
        buffered += chunk


def test_commands_pipelined_behind_starttls_are_a_synchronisation_error(cert_files: CertFiles) -> None:
    """By default, input waiting behind STARTTLS is refused as RFC 2920 says (554 5.5.0,
    and the connection is closed) before any handshake, so nothing injected is run."""
    handler = TlsRecorder()

    def attacker(host: str, port: int) -> list[bytes]:
        with socket.create_connection((host, port), timeout=10) as raw:
            buffered = bytearray()
            replies = [read_reply(raw, buffered)]
            raw.sendall(b"EHLO client.test\r\n")
            replies.append(read_reply(raw, buffered))
            raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<b@example.com>\r\n")
            replies.append(read_reply(raw, buffered))
            try:
                replies.append(raw.recv(100))
            except ConnectionResetError:  # closed with the injected input unread
                replies.append(b"")
            return replies

    async def main() -> list[bytes]:
        async with tls_server(handler, cert_files) as server:
            return await asyncio.to_thread(attacker, *server.address)

    greeting, ehlo, refused, after = run(main())
    assert greeting.startswith(b"220 ") and b"STARTTLS" in ehlo
    assert refused.startswith(b"554 5.5.0"), refused
    assert after == b""  # closed
    assert handler.mail == []


def test_server_never_executes_commands_pipelined_after_starttls(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    """With the synchronisation check off, what was pipelined behind STARTTLS is thrown
    away at the handshake (the STARTTLS injection defence of its own)."""
    handler = TlsRecorder()

    def attacker(host: str, port: int) -> list[bytes]:
        replies = []
        with socket.create_connection((host, port), timeout=10) as raw:
            buffered = bytearray()
            replies.append(read_reply(raw, buffered))  # 220
            raw.sendall(b"EHLO client.test\r\n")
            replies.append(read_reply(raw, buffered))
            # What a man in the middle appends to the client's STARTTLS, in clear.
            raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<b@example.com>\r\n")
            replies.append(read_reply(raw, buffered))
            assert buffered == b""  # nothing answered the injected commands
            context = ssl.create_default_context(cafile=str(ca_file))
            with context.wrap_socket(raw, server_hostname=host) as tls:
                buffered = bytearray()
                tls.sendall(b"EHLO client.test\r\nRCPT TO:<b@example.com>\r\n")
                replies.append(read_reply(tls, buffered))
                replies.append(read_reply(tls, buffered))
                tls.sendall(b"QUIT\r\n")
                replies.append(read_reply(tls, buffered))
        return replies

    async def main() -> list[bytes]:
        async with tls_server(handler, cert_files, pipelining_sync=False) as server:
            return await asyncio.to_thread(attacker, *server.address)

    greeting, ehlo, starttls, ehlo_tls, rcpt, quit = run(main())
    assert greeting.startswith(b"220 ") and b"STARTTLS" in ehlo
    assert starttls.startswith(b"220 ")
    assert ehlo_tls.startswith(b"250-mx.aio.test") and b"STARTTLS" not in ehlo_tls
    assert rcpt.startswith(b"503 ")  # the injected MAIL was never executed
    assert quit.startswith(b"221 ")
    assert handler.mail == []


class InjectingServer:
    """A scripted server (a thread, blocking sockets, Python's ssl) that answers STARTTLS
    with its 220 followed, in the same write, by a forged reply, as a man in the middle
    would inject it in clear. It records every command it gets after the handshake."""

    FORGED = b"250-forged.test\r\n250 AUTH PLAIN\r\n"

    def __init__(self, cert_files: CertFiles) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*cert_files)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = int(self.listener.getsockname()[1])
        self.commands: list[bytes] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            with conn:
                conn.sendall(b"220 fake.test ESMTP\r\n")
                self.expect(conn, b"EHLO")
                conn.sendall(b"250-fake.test\r\n250 STARTTLS\r\n")
                self.expect(conn, b"STARTTLS")
                conn.sendall(b"220 2.0.0 go ahead\r\n" + self.FORGED)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    answers = {
                        b"EHLO": b"250-fake.test\r\n250 PIPELINING\r\n",
                        b"NOOP": b"250 2.0.0 the real NOOP reply\r\n",
                        b"QUIT": b"221 2.0.0 bye\r\n",
                    }
                    while verb := self.line(tls).split(b" ")[0].strip():
                        self.commands.append(verb)
                        tls.sendall(answers.get(verb, b"500 unexpected\r\n"))
                        if verb == b"QUIT":
                            break
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.listener.close()

    @staticmethod
    def line(sock: socket.socket | ssl.SSLSocket) -> bytes:
        out = b""
        while not out.endswith(b"\n"):
            byte = sock.recv(1)
            if not byte:
                break
            out += byte
        return out

    def expect(self, sock: socket.socket, verb: bytes) -> None:
        line = self.line(sock)
        assert line.upper().startswith(verb), line


def test_client_ignores_replies_injected_after_the_starttls_220(cert_files: CertFiles, ca_file: pathlib.Path) -> None:
    fake = InjectingServer(cert_files)

    async def main() -> tuple[int, bytes]:
        async with smtpx.aio.SMTP(
            hostname="127.0.0.1", port=fake.port, start_tls=True, cert_bundle=ca_file, timeout=10
        ) as client:
            assert client.is_tls
            return await client.noop()

    try:
        noop = run(main())
    finally:
        fake.thread.join(15)
    assert fake.error is None, fake.error
    # Had the forged 250 been read as the EHLO reply after TLS, every later reply would
    # be one behind: NOOP would get the real EHLO reply.
    assert noop == (250, "2.0.0 the real NOOP reply")
    assert fake.commands == [b"EHLO", b"NOOP", b"QUIT"]
