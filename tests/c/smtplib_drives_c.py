"""Python's smtplib against the C example servers (run by `make c-smtplib`).

    python smtplib_drives_c.py EXAMPLES_DIR CERT KEY

- examples/c/server.c (the Maildir server over smtpx_server_start_maildir), with
  STARTTLS and AUTH: smtplib sends over TLS after logging in; the delivered file holds
  the exact message; SIGINT stops the server with status 0.
- examples/c/eventloop.c (smtpx_server_session in a poll() loop): several smtplib
  connections open at once, interleaved, each sending; a refused recipient is reported
  per recipient; SIGINT stops it with status 0.
- examples/c/send.c: sends to the Maildir server; its output and exit status.
- examples/c/handler.c (a callback table with per-connection data): smtplib over
  STARTTLS with and without a client certificate (the test CA beside CERT, made by
  c-cert) and in clear; each connection's closing line shows its own message count and
  the TLS version, cipher, SNI name and client certificate the callbacks read.

Standard library only.
"""

import os
import signal
import socket
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EXAMPLES, CERT, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: from smtplib\r\n\r\n"
    b"Hello from Python.\r\n.A leading dot survives.\r\n"
)


def start(args):
    """Starts an example server and returns (process, port) once it listens."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"{args[0]} did not start: {line!r} {proc.stderr.read()}")
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc):
    """SIGINT, then the exit status must be 0."""
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit(f"{proc.args[0]} did not stop on SIGINT")
    assert proc.returncode == 0, (proc.args[0], proc.returncode, err)
    return out, err


def test_maildir_server(tmp):
    maildir = Path(tmp, "maildir")
    proc, port = start(
        [f"{EXAMPLES}/server", "--listen", "127.0.0.1:0", "--maildir", str(maildir),
         "--hostname", "mx.c.test", "--tls-cert", CERT, "--tls-key", KEY,
         "--auth", "alice:s3cret"]
    )
    try:
        context = ssl.create_default_context(cafile=CERT)
        with smtplib.SMTP("localhost", port, timeout=30) as smtp:
            code, _ = smtp.ehlo("py.test")
            assert code == 250
            assert smtp.has_extn("starttls")
            assert not smtp.has_extn("auth"), "AUTH must not be offered in clear"
            smtp.starttls(context=context)
            smtp.ehlo("py.test")
            assert smtp.has_extn("auth")
            try:
                smtp.login("alice", "wrong")
                raise AssertionError("a wrong password was accepted")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 535
            smtp.login("alice", "s3cret")
            refused = smtp.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
            assert refused == {}
        files = list((maildir / "new").iterdir())
        assert len(files) == 1, files
        delivered = files[0].read_bytes()
        assert delivered.endswith(MESSAGE), delivered
        assert b"Received:" in delivered

        # The C client example sends to the same server (STARTTLS, AUTH, stdin).
        send = subprocess.run(
            [f"{EXAMPLES}/send", "--starttls", "--ca-file", CERT, "--auth", "alice:s3cret",
             "--helo", "send.c.test", f"localhost:{port}", "alice@example.org",
             "bob@example.net", "carol@example.net"],
            input=b"Subject: from send.c\n\nHello over stdin.\n", capture_output=True, timeout=60,
        )
        assert send.returncode == 0, (send.returncode, send.stdout, send.stderr)
        assert b"bob@example.net: 250" in send.stdout, send.stdout
        assert b"final: 250" in send.stdout, send.stdout
        assert len(list((maildir / "new").iterdir())) == 2

        # Usage and connection errors: exit status 2.
        bad = subprocess.run([f"{EXAMPLES}/send", "localhost"], capture_output=True, timeout=60)
        assert bad.returncode == 2
        refused = subprocess.run(
            [f"{EXAMPLES}/send", "--starttls", f"localhost:{port}", "a@example.org", "b@example.net"],
            input=b"x\n", capture_output=True, timeout=60,
        )
        assert refused.returncode == 2 and b"TLS" in refused.stderr, refused.stderr
    finally:
        out, err = stop(proc)
    assert "shutting down" in err


def test_eventloop():
    proc, port = start([f"{EXAMPLES}/eventloop", "--port", "0"])
    try:
        clients = [smtplib.SMTP("127.0.0.1", port, timeout=30) for _ in range(4)]
        for i, smtp in enumerate(clients):
            assert smtp.ehlo(f"client{i}.test")[0] == 250
        # Interleave: every client starts a transaction before any finishes.
        for smtp in clients:
            assert smtp.mail("alice@example.org")[0] == 250
            assert smtp.rcpt("bob@example.net")[0] == 250
            code, text = smtp.rcpt("nobody@example.net")
            assert code == 550 and b"no mailbox" in text, (code, text)
        for i, smtp in enumerate(clients):
            code, text = smtp.data(MESSAGE + b"client %d\r\n" % i)
            assert code == 250 and b"queued as EL" in text, (code, text)
        for smtp in clients:
            refused = smtp.sendmail("a@example.org", ["b@example.net", "nobody@x.test"], MESSAGE)
            assert list(refused) == ["nobody@x.test"], refused
            smtp.quit()
        # A client that goes away without QUIT does not disturb the loop.
        raw = smtplib.SMTP("127.0.0.1", port, timeout=30)
        raw.ehlo("gone.test")
        raw.sock.close()
        time.sleep(0.2)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            assert smtp.noop()[0] == 250
        # A client that pipelines 30,000 RSETs after EHLO (6 bytes each, 14-byte replies,
        # far more than the session buffers) before reading a reply gets every one. RSET
        # may be pipelined (RFC 2920); a flood of EHLOs would be a synchronisation error.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"EHLO f\r\n")
            line = reader.readline()
            while line.startswith(b"250-"):
                line = reader.readline()
            assert line.startswith(b"250 "), line
            flood = threading.Thread(target=conn.sendall, args=(b"RSET\r\n" * 30000 + b"QUIT\r\n",))
            flood.start()
            for n in range(30000):
                line = reader.readline()
                assert line.startswith(b"250 "), (n, line)
            assert reader.readline().startswith(b"221")
            flood.join(30)
            assert not flood.is_alive()
    finally:
        out, err = stop(proc)
    assert out.count("message ") == 8, out
    assert "stopping after 8 message(s)" in err, err


def test_handler():
    tls_dir = Path(CERT).parent
    proc, port = start(
        [f"{EXAMPLES}/handler", "--listen", "127.0.0.1:0",
         "--tls-cert", str(tls_dir / "server.pem"), "--tls-key", str(tls_dir / "server-key.pem"),
         "--client-ca", str(tls_dir / "ca.pem")]
    )
    try:
        for with_cert in (False, True):
            context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
            if with_cert:
                context.load_cert_chain(str(tls_dir / "client.pem"), str(tls_dir / "client-key.pem"))
            with smtplib.SMTP("localhost", port, timeout=30) as smtp:
                smtp.starttls(context=context)
                for _ in range(2):
                    smtp.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            code, text = smtp.noop()
            assert code == 250
            smtp.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
        # The closing lines come as connections close: wait for the three (bounded).
        lines = []
        deadline = time.monotonic() + 30
        while len(lines) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("conn="):
                lines.append(line.strip())
    finally:
        stop(proc)
    assert len(lines) == 3, lines
    fields = [dict(f.split("=", 1) for f in line.split()) for line in lines]
    for f, expect_cert in zip(fields[:2], (False, True)):
        assert f["messages"] == "2" and int(f["bytes"]) >= 2 * len(MESSAGE) - 4, f
        assert f["tls"] in ("TLSv1.3", "TLSv1.2") and f["cipher"].startswith("TLS"), f
        assert f["sni"] == "localhost", f
        assert (int(f["client-cert"]) > 100) == expect_cert, f
        assert f["peer"].startswith("127.0.0.1:") or f["peer"].startswith("[::1]:"), f
    assert fields[2]["messages"] == "1" and fields[2]["tls"] == "none", fields[2]


with tempfile.TemporaryDirectory() as tmp:
    test_maildir_server(tmp)
test_eventloop()
test_handler()
print("smtplib_drives_c: all checks passed")
