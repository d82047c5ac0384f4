"""aiosmtplib code with only the import changed: each test runs the same coroutine with
``lib = aiosmtplib`` and with ``lib = smtpx.aio``, against real servers on 127.0.0.1
(aiosmtpd over TCP and over a Unix socket, scripted servers for the error paths), and
compares what both see. Differences that cannot be helped are in the README's table."""

from __future__ import annotations

import asyncio
import base64
import pathlib
import socket
import ssl
from types import ModuleType
from typing import Any, Awaitable, Iterator, TypeVar

import aiosmtplib
import pytest

import smtpx.aio
from conftest import free_port, running_aiosmtpd
from test_smtplib_dropin import Recording, mutual_tls, scripted, tls_scripted  # noqa: F401 (mutual_tls: a fixture)

LIBS = [pytest.param(aiosmtplib, id="aiosmtplib"), pytest.param(smtpx.aio, id="smtpx.aio")]


MESSAGE = "Subject: hi\r\n\r\nHello.\r\n"


def server_tls(cert_files: tuple[pathlib.Path, pathlib.Path]) -> ssl.SSLContext:
    """aiosmtpd's side of TLS: a server context with the test certificate."""
    cert, key = cert_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 20)

    return asyncio.run(bounded())


def run_tls(coroutine: Awaitable[T]) -> T:
    """:func:`run` for a client over TLS. aiosmtplib's TLS is asyncio's SSL transport,
    whose close waits for the server's close_notify before it closes the socket: if
    the loop ends first, that socket is left to the garbage collector (a
    ResourceWarning, which fails whichever test is running then). A bounded pause after
    the coroutine lets that shutdown finish."""

    async def settled() -> T:
        try:
            return await coroutine
        finally:
            await asyncio.sleep(0.2)

    return run(settled())


@pytest.fixture
def aiosmtpd() -> Iterator[tuple[int, Recording]]:
    handler = Recording()
    with running_aiosmtpd(handler) as port:
        yield port, handler


def test_every_public_aiosmtplib_name_exists() -> None:
    import aiosmtplib.auth
    import aiosmtplib.typing

    import smtpx.aio.auth
    import smtpx.aio.typing

    assert sorted(name for name in aiosmtplib.__all__ if not hasattr(smtpx.aio, name)) == []
    # The client's public members; the asyncio plumbing is not there (README: differences).
    plumbing = {"get_transport_info", "loop", "protocol", "transport"}
    theirs = {n for n in [*dir(aiosmtplib.SMTP), *vars(aiosmtplib.SMTP())] if not n.startswith("_")}
    assert sorted(theirs - plumbing - set(dir(smtpx.aio.SMTP()))) == []
    assert smtpx.aio.SMTP.AUTH_METHODS == aiosmtplib.SMTP.AUTH_METHODS
    for theirs, ours in [(aiosmtplib.typing, smtpx.aio.typing), (aiosmtplib.auth, smtpx.aio.auth)]:
        assert sorted(name for name in theirs.__all__ if not hasattr(ours, name)) == []
    assert smtpx.aio.SMTPResponse(250, "OK").code == 250
    assert str(smtpx.aio.SMTPResponse(250, "OK")) == str(aiosmtplib.SMTPResponse(250, "OK"))
    # SMTPStatus: the same names for the same codes.
    assert {s.name: s.value for s in smtpx.aio.SMTPStatus} == {s.name: s.value for s in aiosmtplib.SMTPStatus}
    assert smtpx.aio.typing.SMTPStatus.completed == 250 == smtpx.aio.SMTPResponse(250, "OK").code
    # The SASL encoders give the same bytes, from str and from bytes.
    for user, secret in [("alice", "s3cret"), (b"b\xc3\xb6b", b"pw"), ("j\u00f6rg", "p\u00e4ss")]:
        for name in ("auth_plain_encode", "auth_login_encode", "auth_xoauth2_encode"):
            assert getattr(smtpx.aio.auth, name)(user, secret) == getattr(aiosmtplib.auth, name)(user, secret)
        challenge = base64.b64encode(b"<1896.697170952@postoffice.example>")
        assert smtpx.aio.auth.auth_crammd5_verify(user, secret, challenge) == aiosmtplib.auth.auth_crammd5_verify(
            user, secret, challenge
        )
    # A challenge that is not base64 is refused the same way.
    for lib in (aiosmtplib, smtpx.aio):
        with pytest.raises(lib.SMTPAuthenticationError) as bad:
            lib.auth.auth_crammd5_verify("a", "b", "not base64!")
        assert bad.value.code == 334


@pytest.mark.parametrize("lib", LIBS)
def test_sendmail_returns_errors_and_response(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd

    async def main() -> Any:
        async with lib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            sent = await client.sendmail(
                "a@example.org", ["b@example.net", "nobody@example.net"], MESSAGE, mail_options=None, timeout=10
            )
            message = await client.send_message(_message())
            return sent, message

    (errors, response), (errors2, response2) = run(main())
    assert {k: (v.code, v.message) for k, v in errors.items()} == {
        "nobody@example.net": (550, "5.1.1 no such user")
    }
    assert (response, errors2, response2) == ("OK", {}, "OK")
    assert len(handler.envelopes) == 2


def _message() -> Any:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.net"
    msg["Subject"] = "m"
    msg.set_content("hi\n")
    return msg


@pytest.mark.parametrize("lib", LIBS)
def test_commands_return_smtp_responses(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd

    async def main() -> list[Any]:
        client = lib.SMTP(timeout=10)
        greeting = await client.connect(hostname="127.0.0.1", port=port)
        seen = [greeting.code]
        seen.append(tuple(await client.ehlo()))
        seen.append(client.supports_extension("8BITMIME"))
        seen.append(tuple(await client.noop(timeout=5)))
        seen.append(tuple(await client.execute_command(b"NOOP")))
        seen.append((await client.vrfy("someone")).code)
        seen.append(tuple(await client.mail("root")))
        seen.append(tuple(await client.rcpt("bob@example.net")))
        seen.append(tuple(await client.data(MESSAGE)))
        seen.append(tuple(await client.rset()))
        seen.append((await client.helo()).code)
        seen.append(tuple(await client.quit()))
        return seen

    seen = run(main())
    assert seen[0] == 220
    assert seen[1][0] == 250
    assert seen[2:] == [
        True,
        (250, "OK"),
        (250, "OK"),
        252,
        (250, "OK"),
        (250, "OK"),
        (250, "OK"),
        (250, "OK"),
        250,
        (221, "Bye"),
    ]
    [envelope] = handler.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("root", ["bob@example.net"])


@pytest.mark.parametrize("lib", LIBS)
def test_refusals_raise_aiosmtplib_exceptions(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, _ = aiosmtpd

    async def main() -> list[BaseException]:
        raised: list[BaseException] = []
        async with lib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            for sender, recipients, body in [
                ("a@example.org", ["no1@example.net", "no2@example.net"], MESSAGE),
                ("refused@example.org", ["b@example.net"], MESSAGE),
                ("a@example.org", ["b@example.net"], "REJECT\r\n"),
            ]:
                try:
                    await client.sendmail(sender, recipients, body)
                except lib.SMTPException as error:
                    raised.append(error)
            await client.noop()
        return raised

    everyone, sender, data = run(main())
    assert isinstance(everyone, lib.SMTPRecipientsRefused)
    assert [(r.code, r.message, r.recipient) for r in everyone.recipients] == [
        (550, "5.1.1 no such user", "no1@example.net"),
        (550, "5.1.1 no such user", "no2@example.net"),
    ]
    assert all(isinstance(r, lib.SMTPRecipientRefused) for r in everyone.recipients)
    assert isinstance(sender, lib.SMTPSenderRefused)
    assert (sender.code, sender.message, sender.sender) == (553, "5.7.1 sender refused", "refused@example.org")
    assert str(sender) == "(553, '5.7.1 sender refused', 'refused@example.org')"
    assert isinstance(data, lib.SMTPDataError)
    assert (data.code, data.message) == (554, "5.6.0 content refused")


@pytest.mark.parametrize("lib", LIBS)
def test_refused_connection_is_smtp_connect_error(lib: ModuleType) -> None:
    async def main() -> None:
        await lib.SMTP(hostname="127.0.0.1", port=free_port(), timeout=5).connect()

    with pytest.raises(lib.SMTPConnectError):
        run(main())


@pytest.mark.parametrize("lib", LIBS)
def test_bad_greeting_is_connect_response_error(lib: ModuleType) -> None:
    with scripted({}, greeting=b"554 no service here\r\n") as port:
        with pytest.raises(lib.SMTPConnectResponseError) as bad:
            run(lib.SMTP(hostname="127.0.0.1", port=port, timeout=5).connect())
    assert bad.value.code == 554


@pytest.mark.parametrize("lib", LIBS)
def test_concurrent_sendmail_on_one_client_is_serialised(
    lib: ModuleType, aiosmtpd: tuple[int, Recording]
) -> None:
    port, handler = aiosmtpd

    async def main() -> list[Any]:
        async with lib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            return list(
                await asyncio.gather(
                    *(client.sendmail("a@example.org", ["b@example.net"], f"Subject: {n}\r\n\r\nx\r\n") for n in range(5))
                )
            )

    results = run(main())
    assert [errors for errors, _ in results] == [{}] * 5
    assert sorted(e.original_content.split(b"\r\n")[0] for e in handler.envelopes) == [
        b"Subject: %d" % n for n in range(5)
    ]


@pytest.mark.parametrize("lib", LIBS)
def test_quit_after_an_exception_in_async_with(lib: ModuleType) -> None:
    seen: list[bytes] = []
    with scripted({b"EHLO": b"250 scripted\r\n", b"NOOP": b"250 ok\r\n"}, seen=seen) as port:

        async def main() -> None:
            async with lib.SMTP(hostname="127.0.0.1", port=port, timeout=5) as client:
                await client.noop()
                raise KeyError("the caller's own failure")

        with pytest.raises(KeyError):
            run(main())
    assert seen[-1] == b"QUIT"


@pytest.mark.parametrize("lib", LIBS)
def test_socket_path_sock_and_source_address(
    lib: ModuleType, aiosmtpd: tuple[int, Recording], tmp_path: pathlib.Path
) -> None:
    from aiosmtpd.controller import UnixSocketController

    port, handler = aiosmtpd
    path = tmp_path / "smtp.sock"
    unix_handler = Recording()
    controller = UnixSocketController(unix_handler, unix_socket=str(path))
    controller.start()
    source = ("127.0.0.1", free_port())
    try:

        async def main() -> None:
            async with lib.SMTP(socket_path=str(path), timeout=10) as client:
                await client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            async with lib.SMTP(sock=sock, timeout=10) as client:
                await client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
            async with lib.SMTP(hostname="127.0.0.1", port=port, source_address=source, timeout=10) as client:
                await client.sendmail("a@example.org", ["b@example.net"], MESSAGE)

        run(main())
    finally:
        controller.stop()
    assert len(unix_handler.envelopes) == 1 and len(handler.envelopes) == 2
    assert tuple(handler.peers[-1]) == source


@pytest.mark.parametrize("lib", LIBS)
def test_module_send(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd
    errors, response = run(
        lib.send(MESSAGE, sender="a@example.org", recipients=["b@example.net"], hostname="127.0.0.1", port=port)
    )
    assert (errors, response) == ({}, "OK")
    assert len(handler.envelopes) == 1


@pytest.mark.parametrize("lib", LIBS)
def test_a_call_s_own_timeout(lib: ModuleType) -> None:
    # The server never answers NOOP and the client has no timeout of its own: only the
    # call's (0.5 s) can end the wait before run()'s bound (a builtin TimeoutError).
    with scripted({b"EHLO": b"250 scripted\r\n", b"NOOP": b""}) as port:

        async def main() -> float:
            client = lib.SMTP(hostname="127.0.0.1", port=port, timeout=None)
            await client.connect()
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                with pytest.raises(lib.SMTPTimeoutError):
                    await client.noop(timeout=0.5)
            finally:
                client.close()
            return loop.time() - started

        assert run(main()) < 5


@pytest.mark.parametrize("lib", LIBS)
def test_starttls_with_its_own_tls_settings(
    lib: ModuleType, cert_files: tuple[pathlib.Path, pathlib.Path], ca_file: pathlib.Path
) -> None:
    handler = Recording()
    with running_aiosmtpd(handler, tls_context=server_tls(cert_files)) as port:

        async def main(name: str) -> int:
            async with lib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10) as client:
                code = (await client.starttls(server_hostname=name, cert_bundle=str(ca_file))).code
                await client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
                return int(code)

        assert run(main("mx.test")) == 220
        with pytest.raises((ssl.SSLError, lib.SMTPException)):
            run(main("other.test"))  # the certificate does not name it
    assert len(handler.envelopes) == 1


@pytest.mark.parametrize("lib", LIBS)
def test_loop_transport_and_transport_info(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, _ = aiosmtpd

    async def main() -> list[Any]:
        client = lib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
        seen: list[Any] = [client.loop, client.transport]
        with pytest.raises(lib.SMTPServerDisconnected):
            client.get_transport_info("peername")
        await client.connect()
        info = client.get_transport_info
        seen += [client.loop is asyncio.get_running_loop(), isinstance(client.transport, asyncio.BaseTransport)]
        seen += [info("peername")[:2], info("sockname")[0], info("socket").family == socket.AF_INET]
        seen += [info(key) for key in ("sslcontext", "cipher", "peercert", "compression")]
        await client.quit()
        with pytest.raises(lib.SMTPServerDisconnected):
            client.get_transport_info("peername")
        return seen

    assert run(main()) == [
        None, None, True, True, ("127.0.0.1", port), "127.0.0.1", True, None, None, None, None
    ]


@pytest.mark.parametrize("lib", LIBS)
def test_transport_info_under_starttls(
    lib: ModuleType, cert_files: tuple[pathlib.Path, pathlib.Path], ca_file: pathlib.Path
) -> None:
    with running_aiosmtpd(Recording(), tls_context=server_tls(cert_files)) as port:

        async def main() -> Any:
            async with lib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10) as client:
                await client.starttls(server_hostname="mx.test", cert_bundle=str(ca_file))
                return client.get_transport_info("cipher")

        name, version, bits = run_tls(main())
    # The same triple as an SSL object's cipher(): OpenSSL's (IANA) name for TLS 1.3.
    assert version == "TLSv1.3" and name.startswith("TLS_")
    assert ("AES" in name or "CHACHA20" in name) and bits in (128, 256)


# -- client certificates (mutual TLS) ---------------------------------------------------

@pytest.mark.parametrize("lib", LIBS)
def test_client_cert_and_key_reach_the_server(
    lib: ModuleType, mutual_tls: dict[str, Any], ca_file: pathlib.Path
) -> None:
    replies = {b"EHLO": b"250 tls.scripted\r\n", b"NOOP": b"250 OK\r\n"}
    with tls_scripted(mutual_tls["server"], replies) as (port, peers):

        async def main() -> Any:
            async with lib.SMTP(
                hostname="localhost", port=port, use_tls=True, timeout=10, cert_bundle=str(ca_file),
                client_cert=mutual_tls["cert"], client_key=mutual_tls["key"],
            ) as client:
                return tuple(await client.noop())

        assert run_tls(main()) == (250, "OK")
    assert [peer.get("commonName") for peer in peers] == ["client.test"]


@pytest.mark.parametrize("lib", LIBS)
def test_send_with_a_client_cert_into_aiosmtpd(
    lib: ModuleType, mutual_tls: dict[str, Any], ca_file: pathlib.Path
) -> None:
    # aiosmtpd over implicit TLS that requires a client certificate: delivered means the
    # certificate arrived and was checked.
    from aiosmtpd.controller import Controller

    handler = Recording()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=mutual_tls["server"])
    controller.start()
    try:
        sent = run_tls(lib.send(
            MESSAGE, sender="a@example.org", recipients=["b@example.net"], hostname="localhost", port=port,
            use_tls=True, cert_bundle=str(ca_file), client_cert=mutual_tls["cert"], client_key=mutual_tls["key"],
            timeout=10,
        ))
    finally:
        controller.stop()
    assert sent == ({}, "OK")
    assert [e.rcpt_tos for e in handler.envelopes] == [["b@example.net"]]


@pytest.mark.parametrize("lib", LIBS)
def test_starttls_with_a_client_cert(lib: ModuleType, mutual_tls: dict[str, Any], ca_file: pathlib.Path) -> None:
    replies = {b"EHLO": b"250-tls.scripted\r\n250 STARTTLS\r\n", b"NOOP": b"250 OK\r\n"}
    with tls_scripted(mutual_tls["server"], replies, starttls=True) as (port, peers):

        async def main() -> Any:
            client = lib.SMTP(hostname="localhost", port=port, start_tls=False, timeout=10, cert_bundle=str(ca_file))
            await client.connect()
            # The key in the certificate's file; client_key left out, as ssl allows.
            reply = await client.starttls(client_cert=mutual_tls["both"])
            noop = await client.noop()
            await client.quit()
            return reply.code, tuple(noop)

        assert run_tls(main()) == (220, (250, "OK"))
    assert [peer.get("commonName") for peer in peers] == ["client.test"]


@pytest.mark.parametrize("lib", LIBS)
def test_a_missing_or_bad_client_cert_file(lib: ModuleType, tmp_path: pathlib.Path) -> None:
    # smtpx reads the files when the client is made, aiosmtplib when it connects (README).
    async def main() -> None:
        client = lib.SMTP(hostname="127.0.0.1", port=free_port(), use_tls=True, timeout=5,
                          client_cert=str(tmp_path / "missing.pem"))
        await client.connect()

    with pytest.raises(FileNotFoundError):
        run(main())
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")

    async def bad_pem() -> None:
        client = lib.SMTP(hostname="127.0.0.1", port=free_port(), use_tls=True, timeout=5,
                          client_cert=str(garbage))
        await client.connect()

    with pytest.raises(ssl.SSLError):
        run(bad_pem())


@pytest.mark.parametrize("lib", LIBS)
def test_client_cert_with_a_tls_context_is_refused(lib: ModuleType, mutual_tls: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Either a TLS context or a certificate/key"):
        lib.SMTP(hostname="localhost", tls_context=mutual_tls["trusted"], client_cert=mutual_tls["cert"])


# -- addresses as given, and 421 -----------------------------------------------------------


@pytest.mark.parametrize("lib", LIBS)
def test_sendmail_to_a_local_part_without_a_domain(lib: ModuleType, aiosmtpd: tuple[int, Recording]) -> None:
    port, handler = aiosmtpd

    async def main() -> Any:
        async with lib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
            return await client.sendmail("me", ["postmaster", "root"], MESSAGE)

    assert run(main()) == ({}, "OK")
    [envelope] = handler.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("me", ["postmaster", "root"])


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("phase", ["MAIL", "RCPT", "DATA"])
def test_421_is_raised_as_the_class_of_its_phase(lib: ModuleType, phase: str) -> None:
    replies = {b"EHLO": b"250 scripted\r\n", b"MAIL": b"250 OK\r\n", b"RCPT": b"250 OK\r\n"}
    replies[phase.encode()] = b"421 4.3.2 shutting down\r\n"
    with scripted(replies) as port:

        async def main() -> tuple[BaseException, bool]:
            client = lib.SMTP(hostname="127.0.0.1", port=port, timeout=5)
            await client.connect()
            try:
                await client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
            except lib.SMTPException as error:
                return error, client.is_connected
            raise AssertionError("no exception")

        error, connected = run(main())
    assert not connected  # closed after the 421, as aiosmtplib closes
    if phase == "MAIL":
        assert isinstance(error, lib.SMTPSenderRefused)
        assert (error.code, error.message, error.sender) == (421, "4.3.2 shutting down", "a@example.org")
    elif phase == "RCPT":
        assert isinstance(error, lib.SMTPRecipientsRefused)
        assert [(r.code, r.message, r.recipient) for r in error.recipients] == [
            (421, "4.3.2 shutting down", "b@example.net")
        ]
    else:
        assert isinstance(error, lib.SMTPDataError)
        assert (error.code, error.message) == (421, "4.3.2 shutting down")


# -- XOAUTH2 --------------------------------------------------------------------------------


@pytest.fixture
def tls_server_context(ca: Any) -> ssl.SSLContext:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    return server


@pytest.mark.parametrize("lib", LIBS)
def test_oauth_token_generator_and_auth_xoauth2(
    lib: ModuleType, tls_server_context: ssl.SSLContext, ca_file: pathlib.Path
) -> None:
    replies = {
        b"EHLO": b"250-tls.scripted\r\n250 AUTH XOAUTH2 PLAIN\r\n",
        b"AUTH XOAUTH2 " + aiosmtplib.auth.auth_xoauth2_encode("me@example.org", "good"): b"235 2.7.0 Accepted\r\n",
        b"AUTH XOAUTH2 ": b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n",
        b"NOOP": b"250 OK\r\n",
        b"": b"535 5.7.8 Username and Password not accepted\r\n",
    }
    seen: list[bytes] = []
    with tls_scripted(tls_server_context, {k.upper(): v for k, v in replies.items()}, seen=seen) as (port, _):

        async def main() -> Any:
            async def token() -> str:
                return "good"

            async with lib.SMTP(
                hostname="localhost", port=port, use_tls=True, timeout=10, cert_bundle=str(ca_file),
                username="me@example.org", oauth_token_generator=token,
            ) as client:
                noop = tuple(await client.noop())
                assert client.server_auth_methods == ["xoauth2", "plain"]
                assert client.supported_auth_methods == ["plain"]
                with pytest.raises(lib.SMTPAuthenticationError) as refused:
                    await client.auth_xoauth2("me@example.org", "expired")
                return noop, refused.value.code, refused.value.message

        assert run_tls(main()) == ((250, "OK"), 535, "5.7.8 Username and Password not accepted")
    expected = b"AUTH XOAUTH2 " + aiosmtplib.auth.auth_xoauth2_encode("me@example.org", "good")
    assert seen[1:3] == [expected, b"NOOP"]
    assert seen[4] == b""  # the empty response to the error challenge


@pytest.mark.parametrize("lib", LIBS)
def test_oauth_token_generator_errors(lib: ModuleType) -> None:
    async def token() -> str:
        return "t"

    with pytest.raises(ValueError, match="mutually exclusive"):
        lib.SMTP(hostname="localhost", username="u", password="p", oauth_token_generator=token)


@pytest.mark.parametrize("lib", LIBS)
def test_state_attributes_and_sync_sends(lib: ModuleType, aiosmtpd: tuple[int, Recording], ca_file: pathlib.Path) -> None:
    port, handler = aiosmtpd

    async def main() -> list[Any]:
        client = lib.SMTP(hostname="127.0.0.1", port=port, timeout=10, cert_bundle=str(ca_file))
        seen: list[Any] = [client.is_ehlo_or_helo_needed, client.last_ehlo_response]
        await client.connect()
        ehlo = client.last_ehlo_response
        seen += [client.is_ehlo_or_helo_needed, ehlo.code, ehlo.message.splitlines()[1:], client.supports_esmtp]
        seen += [client.server_auth_methods, client.supported_auth_methods]
        seen += [client.validate_certs, client.cert_bundle, client.client_cert, client.tls_context]
        helo = await client.helo()
        seen += [client.last_helo_response == helo]
        await client.quit()
        return seen

    seen = run(main())
    assert seen == [True, None, False, 250, ["SIZE 33554432", "8BITMIME", "SMTPUTF8", "HELP"], True, [], [], True, str(ca_file), None, None, True]
    client = lib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    assert client.sendmail_sync("a@example.org", ["b@example.net"], MESSAGE) == ({}, "OK")
    assert client.send_message_sync(_message()) == ({}, "OK")
    assert len(handler.envelopes) == 2


@pytest.mark.parametrize("lib", LIBS)
def test_421_to_auth_is_an_authentication_error(lib: ModuleType) -> None:
    # One mechanism: with several, both libraries try the next on the closed connection
    # and raise SMTPServerDisconnected (which smtpx's SmtpAuthErrorClosing also is).
    replies = {b"EHLO": b"250-scripted\r\n250 AUTH PLAIN\r\n", b"AUTH": b"421 4.3.2 bye\r\n"}
    with scripted(replies) as port:

        async def main() -> tuple[Any, bool]:
            client = lib.SMTP(hostname="127.0.0.1", port=port, timeout=5)
            client.allow_insecure_auth = True  # smtpx's opt-in to AUTH without TLS
            await client.connect()
            try:
                await client.login("alice", "s3cret")
            except lib.SMTPAuthenticationError as error:
                return (error.code, error.message), client.is_connected
            raise AssertionError("no exception")

        assert run(main()) == ((421, "4.3.2 bye"), False)
