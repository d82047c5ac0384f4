"""TLS ends with close_notify, seen by a real TLS peer (Python's ssl, OpenSSL) that treats
a TCP close without it as an error (``suppress_ragged_eofs=False``).

The server side: smtp-server (the blocking driver and ``--async``) with STARTTLS and with
implicit TLS; after QUIT the peer reads to the end and must see an orderly TLS end, not
``SSLEOFError`` ("EOF occurred in violation of protocol").
"""

from __future__ import annotations

import pathlib
import socket
import ssl

import pytest

from conftest import start_server

#: Every read is bounded.
TIMEOUT = 10.0


def read_reply(tls: ssl.SSLSocket) -> bytes:
    """One whole reply (its last line has a space after the code)."""
    data = b""
    while True:
        chunk = tls.recv(4096)
        assert chunk, f"the connection ended inside a reply: {data!r}"
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(line) > 3 and line[3:4] == b" " for line in lines[:-1]):
            return data


def read_plain_reply(sock: socket.socket) -> bytes:
    data = b""
    while not (data.endswith(b"\r\n") and data.split(b"\r\n")[-2][3:4] == b" "):
        chunk = sock.recv(4096)
        assert chunk, f"the connection ended inside a reply: {data!r}"
        data += chunk
    return data


def quit_and_read_to_the_end(tls: ssl.SSLSocket) -> bytes:
    """QUIT, then read until the TLS layer reports its end: b"" after close_notify. A TCP
    close without close_notify raises ssl.SSLEOFError here."""
    tls.sendall(b"QUIT\r\n")
    rest = b""
    while True:
        chunk = tls.recv(4096)
        if not chunk:
            return rest
        rest += chunk


def client_context(ca) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.mark.parametrize("driver", ["blocking", "async"])
def test_server_ends_starttls_with_close_notify(tmp_path: pathlib.Path, ca, cert_files, driver: str) -> None:  # type: ignore[no-untyped-def]
    cert, key = cert_files
    flags = ["--tls-cert", str(cert), "--tls-key", str(key)] + (["--async"] if driver == "async" else [])
    server = start_server(tmp_path / "md", *flags)
    try:
        with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
            assert read_plain_reply(sock).startswith(b"220 ")
            sock.sendall(b"EHLO peer.test\r\n")
            assert b"STARTTLS" in read_plain_reply(sock)
            sock.sendall(b"STARTTLS\r\n")
            assert read_plain_reply(sock).startswith(b"220 ")
            ctx = client_context(ca)
            with ctx.wrap_socket(sock, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
                tls.sendall(b"EHLO peer.test\r\n")
                assert read_reply(tls).startswith(b"250")
                rest = quit_and_read_to_the_end(tls)
                assert rest.startswith(b"221 "), rest
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("driver", ["blocking", "async"])
def test_server_ends_implicit_tls_with_close_notify(tmp_path: pathlib.Path, ca, cert_files, driver: str) -> None:  # type: ignore[no-untyped-def]
    cert, key = cert_files
    flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-listen", "127.0.0.1:0"]
    server = start_server(tmp_path / "md", *flags, *(["--async"] if driver == "async" else []))
    try:
        assert server.proc.stderr is not None
        tls_line = server.proc.stderr.readline().strip()
        assert tls_line.startswith("implicit TLS on "), tls_line
        port = int(tls_line.rsplit(":", 1)[1])
        ctx = client_context(ca)
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            assert read_reply(tls).startswith(b"220 ")
            tls.sendall(b"EHLO peer.test\r\n")
            assert read_reply(tls).startswith(b"250")
            rest = quit_and_read_to_the_end(tls)
            assert rest.startswith(b"221 "), rest
    finally:
        assert server.stop() == 0
