"""What a TLS handshake negotiated, handed to the sans-I/O server connection
(``_native.ServerConnection.tls_established(now, tls=...)``) and read back from its
``tls`` property: from a real rustls handshake in memory (``_native.TlsSession``, a
trustme CA), and from a dict, as a program whose TLS is asyncio's ``ssl`` would give it."""

from typing import Any

import pytest

from smtpx import _native

SC = _native.ServerConnection


def handshake(ca: Any, server_name: str) -> _native.TlsSession:
    """A finished server session after a client handshake for ``server_name``."""
    cert = ca.issue_cert("localhost")
    server = _native.TlsSession(
        _native.TlsConfig.server(cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes())
    )
    client = _native.TlsSession(_native.TlsConfig.client(ca_pem=ca.cert_pem.bytes()), server_name)
    for _ in range(20):
        out = client.output()
        if out:
            server.receive(out)
        back = server.output()
        if back:
            client.receive(back)
        if not client.is_handshaking and not server.is_handshaking:
            return server
    raise AssertionError("the handshake did not finish in 20 rounds")


def until_start_tls(conn: Any) -> None:
    kind, _ = conn.next_action(0.0)
    assert kind == SC.START_TLS, kind


def test_an_implicit_tls_connection_takes_the_sessions_details(ca: Any) -> None:
    conn = SC("mx.test", implicit_tls=True)
    until_start_tls(conn)
    assert conn.tls is None
    server = handshake(ca, "localhost")
    conn.tls_established(0.0, tls=server)
    tls = conn.tls
    assert tls is not None
    assert tls["version"] == server.protocol_version == "TLSv1.3"
    assert tls["cipher"] == server.cipher_suite and tls["cipher"].startswith("TLS13_")
    assert tls["server_name"] == "localhost"
    assert tls["peer_certificates"] == []
    # The connection goes on: CONNECT, then the greeting.
    kind, _ = conn.next_action(0.0)
    assert kind == SC.CONNECT


def test_details_from_another_tls_stack_as_a_dict() -> None:
    conn = SC("mx.test", implicit_tls=True)
    until_start_tls(conn)
    given = {
        "version": "TLSv1.2",
        "cipher": "ECDHE-RSA-AES128-GCM-SHA256",
        "server_name": None,
        "peer_certificates": [b"\x30\x03\x02\x01\x05"],
    }
    conn.tls_established(0.0, tls=given)
    assert conn.tls == given


def test_without_details_there_are_none_and_bad_ones_are_refused() -> None:
    conn = SC("mx.test", implicit_tls=True)
    until_start_tls(conn)
    with pytest.raises(TypeError):
        conn.tls_established(0.0, tls="TLSv1.3")
    with pytest.raises(TypeError):
        conn.tls_established(0.0, tls={"peer_certificates": [42]})
    conn.tls_established(0.0)
    assert conn.tls is None
    assert conn.is_tls
