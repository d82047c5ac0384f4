"""examples/python/send.py and server.py, run as programs."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys

import smtpx
from conftest import RunningServer, Recorder, ROOT

SEND = str(ROOT / "examples" / "python" / "send.py")
SERVER = str(ROOT / "examples" / "python" / "server.py")


def test_send_py_reports_each_recipient(aiosmtpd_server: tuple[int, Recorder], tmp_path: pathlib.Path) -> None:
    port, handler = aiosmtpd_server
    msg = tmp_path / "msg.eml"
    msg.write_bytes(b"Subject: example\n\nhi\n")
    run = subprocess.run(
        [sys.executable, SEND, "--server", f"127.0.0.1:{port}", "--from", "a@example.org",
         "--to", "b@example.net", "nobody@example.net", "--count", "2", str(msg)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 1, run.stderr
    assert "b@example.net: accepted 250" in run.stdout
    assert "nobody@example.net: refused 550" in run.stdout
    assert len(handler.messages) == 2


def test_send_py_into_the_rust_server(rust_server: RunningServer) -> None:
    run = subprocess.run(
        [sys.executable, SEND, "-", "--server", f"{rust_server.host}:{rust_server.port}", "--from", "a@example.org",
         "--to", "b@example.net"],
        input=b"Subject: stdin\r\n\r\nhi\r\n", capture_output=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert b"final: 250" in run.stdout
    assert len(rust_server.wait_for(1)) == 1


def test_send_py_exits_2_on_errors() -> None:
    from conftest import free_port

    run = subprocess.run(
        [sys.executable, SEND, "--server", f"127.0.0.1:{free_port()}", "--from", "a@example.org", "--to", "b@example.net"],
        input=b"x", capture_output=True, timeout=60,
    )
    assert run.returncode == 2
    assert b"error:" in run.stderr


def test_server_py_delivers_and_stops_on_sigterm(tmp_path: pathlib.Path) -> None:
    maildir = tmp_path / "md"
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--listen", "127.0.0.1:0", "--maildir", str(maildir), "--hostname", "mx.test"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on "), line
        host, port = line.removeprefix("listening on ").rsplit(":", 1)
        with smtpx.SMTP(host, int(port), timeout=10) as client:
            assert client.sendmail("a@example.org", ["b@example.net"], b"Subject: py\r\n\r\nhi\r\n") == {}
        assert len(list((maildir / "new").iterdir())) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
