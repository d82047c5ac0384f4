"""Fixtures: the Rust example server (smtp-server), aiosmtpd, and a trustme CA.

`make test-python` builds the example binaries first; SMTPX_EXAMPLES names their folder.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import time
from typing import Any, Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = pathlib.Path(os.environ.get("SMTPX_EXAMPLES", ROOT / "target" / "release" / "examples"))


def example(name: str) -> str:
    path = EXAMPLES / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build it with `make examples`")
    return str(path)


def free_port() -> int:
    """A loopback port nobody listens on right now (aiosmtpd's Controller cannot bind 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """The smtp-server example, delivering into a Maildir."""

    def __init__(self, proc: subprocess.Popen[str], host: str, port: int, maildir: pathlib.Path) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.maildir = maildir

    def delivered(self) -> list[bytes]:
        new = self.maildir / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.delivered()
            if len(files) >= count:
                return files
            time.sleep(0.02)
        return self.delivered()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode


def start_server(maildir: pathlib.Path, *flags: str) -> RunningServer:
    proc = subprocess.Popen(
        [example("smtp-server"), "--listen", "127.0.0.1:0", "--maildir", str(maildir), "--hostname", "mx.test", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        proc.wait(timeout=5)
        raise RuntimeError(f"smtp-server did not start: {line!r}")
    host, port = line.removeprefix("listening on ").rsplit(":", 1)
    return RunningServer(proc, host, int(port), maildir)


@pytest.fixture
def rust_server(tmp_path: pathlib.Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path / "maildir")
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="session")
def ca() -> Any:
    import trustme

    return trustme.CA()


@pytest.fixture
def cert_files(ca: Any, tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    cert = ca.issue_cert("localhost", "127.0.0.1", "mx.test")
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    return cert_path, key_path


@pytest.fixture
def ca_file(ca: Any, tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


class Recorder:
    """An aiosmtpd handler that keeps every message and refuses recipients named no*."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.startswith("no"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: queued as Q%d" % len(self.messages)


@contextlib.contextmanager
def running_aiosmtpd(handler: Any, **options: Any) -> Iterator[int]:
    """aiosmtpd's own Controller serving ``handler`` on a free loopback port (yielded),
    with its other keyword ``options`` (``tls_context``...), stopped on the way out."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def aiosmtpd_server() -> Iterator[tuple[int, Recorder]]:
    handler = Recorder()
    with running_aiosmtpd(handler) as port:
        yield port, handler
