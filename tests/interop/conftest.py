"""Fixtures for interop tests: smtpx's example programs against real peers nobody here wrote.

The example binaries are built by `make test` (cargo build --release --examples) before
pytest runs; SMTPX_EXAMPLES names their folder.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
from typing import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = pathlib.Path(os.environ.get("SMTPX_EXAMPLES", ROOT / "target" / "release" / "examples"))


def example(name: str) -> str:
    path = EXAMPLES / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build it with `cargo build --release -p smtp-core --examples`")
    return str(path)


class RunningServer:
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
        raise RuntimeError(f"smtp-server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    host, port = line.removeprefix("listening on ").rsplit(":", 1)
    return RunningServer(proc, host, int(port), maildir)


@pytest.fixture
def smtpx_server(tmp_path: pathlib.Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path / "maildir")
    yield server
    assert server.stop() == 0, "smtp-server must stop cleanly on SIGTERM"


@pytest.fixture(scope="session")
def ca():  # type: ignore[no-untyped-def]
    import trustme

    return trustme.CA()


@pytest.fixture
def cert_files(ca, tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:  # type: ignore[no-untyped-def]
    cert = ca.issue_cert("localhost", "127.0.0.1", "mx.test")
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    return cert_path, key_path


def free_port() -> int:
    """A loopback port nobody listens on right now (for peers that cannot bind port 0)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
