"""`smtp-server --relay` in front of real next hops nobody here wrote: a Postfix smtpd
(`postfix -c DIR start`, a private configuration, queue and Maildir, on a loopback port
this test picked) and Dovecot's LMTP server (`dovecot -F -c CONFIG`, likewise). Each
checks the bytes that arrive in the next hop's Maildir, the per-recipient replies, and
that nothing is acknowledged that the next hop refused. Every server is stopped by PID.

Run by `make interop` (which installs the Debian packages `postfix`, `dovecot-core` and
`dovecot-lmtpd` when missing), as root: Postfix and Dovecot drop privileges themselves.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import grp
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = pathlib.Path(os.environ.get("SMTPX_EXAMPLES", ROOT / "target" / "release" / "examples"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} is not listening on port {port}")


def wait_files(folder: pathlib.Path, count: int, timeout: float = 30.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*")) if folder.exists() else []
        if len(files) >= count:
            return [f.read_bytes() for f in files]
        time.sleep(0.1)
    return [f.read_bytes() for f in sorted(folder.glob("*"))] if folder.exists() else []


def stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


class Relay:
    """smtp-server --relay to a next hop, with the flags given."""

    def __init__(self, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [str(EXAMPLES / "smtp-server"), "--listen", "127.0.0.1:0", "--hostname", "relay.test", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise RuntimeError(f"smtp-server did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=15)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code


class Postfix:
    """A Postfix instance of its own: main.cf and master.cf in a private config dir, its
    own queue, data and log, smtpd on a loopback port, mail for example.net delivered by
    the virtual agent into one Maildir; relaying elsewhere refused."""

    def __init__(self, work: pathlib.Path, tls: tuple[pathlib.Path, pathlib.Path] | None) -> None:
        self.work = work
        self.port = free_port()
        conf = work / "conf"
        for d in ("conf", "queue", "data", "mail"):
            (work / d).mkdir(parents=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(work / "mail", nobody.pw_uid, nobody.pw_gid)
        os.chown(work / "data", pwd.getpwnam("postfix").pw_uid, -1)
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {work / 'queue'}",
            f"data_directory = {work / 'data'}",
            "mail_owner = postfix",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "myhostname = postfix.test",
            "mydestination =",
            "mynetworks =",
            "smtpd_relay_restrictions = reject_unauth_destination",
            "virtual_mailbox_domains = example.net",
            f"virtual_mailbox_base = {work / 'mail'}",
            "virtual_mailbox_maps = static:box/",
            f"virtual_uid_maps = static:{nobody.pw_uid}",
            f"virtual_gid_maps = static:{nobody.pw_gid}",
            "virtual_minimum_uid = 1",
            f"maillog_file = {work / 'data' / 'maillog'}",
            f"maillog_file_prefixes = {work}",
            "alias_maps =",
            "alias_database =",
            "smtputf8_enable = no",
        ]
        if tls is not None:
            lines += [
                f"smtpd_tls_cert_file = {tls[0]}",
                f"smtpd_tls_key_file = {tls[1]}",
                "smtpd_tls_security_level = may",
                "smtpd_tls_received_header = yes",
                "smtpd_tls_loglevel = 1",
            ]
        (conf / "main.cf").write_text("\n".join(lines) + "\n")
        master = []
        for line in pathlib.Path("/etc/postfix/master.cf").read_text().splitlines():
            if line.startswith("smtp ") and " inet " in line:
                line = f"{self.port} inet n - n - - smtpd"
            master.append(line)
        (conf / "master.cf").write_text("\n".join(master) + "\n")
        run = subprocess.run(["postfix", "-c", str(conf), "start"], capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            raise RuntimeError(f"postfix did not start: {run.stdout} {run.stderr} {self.log()}")
        self.pid = int((work / "queue" / "pid" / "master.pid").read_text().split()[0])
        wait_listening(self.port, "postfix smtpd")

    def log(self) -> str:
        path = self.work / "data" / "maillog"
        return path.read_text() if path.exists() else ""

    def delivered(self, count: int) -> list[bytes]:
        return wait_files(self.work / "mail" / "box" / "new", count)

    def stop(self) -> None:
        stop_pid(self.pid)


class Dovecot:
    """Dovecot's LMTP server alone, from a private configuration: two known users, each
    with a Maildir under the test's folder; unknown users are refused at RCPT."""

    def __init__(self, work: pathlib.Path) -> None:
        self.work = work
        self.port = free_port()
        for d in ("run", "home"):
            (work / d).mkdir(parents=True)
        nobody = pwd.getpwnam("nobody")
        nogroup = grp.getgrgid(nobody.pw_gid).gr_name
        users = work / "users"
        users.write_text(
            "".join(
                f"{u}@example.net::{nobody.pw_uid}:{nobody.pw_gid}::{work / 'home' / u}::\n" for u in ("bob", "carol")
            )
        )
        os.chown(work / "home", nobody.pw_uid, nobody.pw_gid)
        self.config = work / "dovecot.conf"
        self.config.write_text(
            f"""
base_dir = {work / 'run'}
state_dir = {work / 'run'}
log_path = {work / 'dovecot.log'}
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = nobody
default_internal_group = {nogroup}
default_login_user = nobody
mail_location = maildir:~/Maildir
lmtp_hdr_delivery_address = none
passdb {{
  driver = passwd-file
  args = {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
"""
        )
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_listening(self.port, "dovecot lmtp")
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"dovecot did not start: {self.log()}") from None

    def log(self) -> str:
        path = self.work / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def delivered(self, user: str, count: int) -> list[bytes]:
        return wait_files(self.work / "home" / user / "Maildir" / "new", count)

    def stop(self) -> None:
        stop_pid(self.proc.pid)
        self.proc.wait(timeout=15)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def work() -> Iterator[pathlib.Path]:
    """A folder the servers' own users can reach (pytest's tmp_path is root's alone)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="smtpx-relay-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postfix(work: pathlib.Path) -> Iterator[Postfix]:
    server = Postfix(work / "postfix", None)
    yield server
    server.stop()


@pytest.fixture
def dovecot(work: pathlib.Path) -> Iterator[Dovecot]:
    server = Dovecot(work / "dovecot")
    yield server
    server.stop()


MESSAGE = (
    b"From: alice@example.org\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: relayed by smtpx\r\n"
    b"\r\n"
    b"line one\r\n"
    b"..a line that starts with a dot (stuffed on the wire)\r\n"
    b"bare LF here\n"
    b"bare CR here\r"
    b"last line\r\n"
)
# What must arrive, as the Maildir stores it (LF line ends, which is how both Postfix and
# Dovecot write files): each lone CR and LF became a line end of its own (a lone CR left
# in place would survive as "\r"), the dot line un-stuffed once, intact.
BODY_ON_ARRIVAL = (
    b"line one\n.a line that starts with a dot (stuffed on the wire)\nbare LF here\nbare CR here\nlast line\n"
)


def raw_send(port: int, rcpts: list[str], data: bytes, lhlo: bool = False) -> list[bytes]:
    """Speaks to the relay with raw bytes (so that lone CR and LF really go out), returns
    every reply line after DATA's content."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        f = s.makefile("rb")

        def reply() -> list[bytes]:
            lines = []
            while True:
                line = f.readline()
                assert line, "connection closed"
                lines.append(line)
                if line[3:4] != b"-":
                    return lines

        reply()
        s.sendall(b"LHLO client.test\r\n" if lhlo else b"EHLO client.test\r\n")
        reply()
        s.sendall(b"MAIL FROM:<alice@example.org>\r\n")
        assert reply()[-1].startswith(b"250")
        answers = []
        for r in rcpts:
            s.sendall(b"RCPT TO:<" + r.encode() + b">\r\n")
            answers.append(reply()[-1])
        s.sendall(b"DATA\r\n")
        answers.append(reply()[-1])
        if not answers[-1].startswith(b"354"):
            return answers
        s.sendall(data + b".\r\n")
        accepted = sum(1 for a in answers[:-1] if a.startswith(b"250"))
        for _ in range(accepted if lhlo else 1):
            answers.append(reply()[-1])
        s.sendall(b"QUIT\r\n")
        reply()
        return answers


def body_of(message: bytes) -> bytes:
    """The body of a stored message, CRLF read as LF (Maildir files may hold either)."""
    return message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


# Each case runs on both servers: a thread per connection with the relay's blocking
# hooks, and the tokio server (--async) with the async relay.
FRONTS = pytest.mark.parametrize("front", [(), ("--async",)], ids=["threads", "async"])


@FRONTS
def test_relay_into_postfix_smtpd(postfix: Postfix, front: tuple[str, ...]) -> None:
    relay = Relay(*front, "--relay", f"127.0.0.1:{postfix.port}")
    try:
        answers = raw_send(relay.port, ["bob@example.net", "eve@elsewhere.test", "carol@example.net"], MESSAGE)
        # Postfix refuses to relay to elsewhere.test: the client hears Postfix's own refusal.
        assert answers[0].startswith(b"250"), answers
        assert answers[1].startswith(b"554") and b"Relay access denied" in answers[1], answers
        assert answers[2].startswith(b"250"), answers
        assert answers[3].startswith(b"354"), answers
        assert answers[4].startswith(b"250") and b"queued as" in answers[4], answers
        # One copy per accepted recipient (both map to one Maildir), each byte for byte.
        stored = postfix.delivered(2)
        assert len(stored) == 2, postfix.log()
        for copy in stored:
            assert body_of(copy) == BODY_ON_ARRIVAL, copy
            assert b"\nSubject: relayed by smtpx\n" in copy
        assert b"Delivered-To: bob@example.net" in b"".join(stored)
        assert b"Delivered-To: carol@example.net" in b"".join(stored)
        # A second message reuses the pooled connection to Postfix.
        answers = raw_send(relay.port, ["carol@example.net"], b"Subject: two\r\n\r\nsecond\r\n")
        assert answers[-1].startswith(b"250"), answers
        assert len(postfix.delivered(3)) == 3
        log = postfix.log()
        # Two connections in all: the readiness probe, and the relay's one pooled
        # connection that carried both messages.
        assert log.count(": connect from localhost[127.0.0.1]") == 2, log
    finally:
        assert relay.stop() == 0


@FRONTS
def test_relay_into_postfix_with_starttls(work: pathlib.Path, front: tuple[str, ...]) -> None:
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    certs = work / "certs"
    certs.mkdir()
    cert.private_key_pem.write_to_path(str(certs / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    server = Postfix(work / "postfix", (certs / "cert.pem", certs / "key.pem"))
    relay = None
    try:
        relay = Relay(
            *front, "--relay", f"localhost:{server.port}", "--relay-starttls", "--relay-ca", str(certs / "ca.pem")
        )
        answers = raw_send(relay.port, ["bob@example.net"], b"Subject: tls\r\n\r\nover TLS\r\n")
        assert answers[-1].startswith(b"250"), answers
        [stored] = server.delivered(1)
        assert body_of(stored) == b"over TLS\n"
        # Postfix's own word that the relay came over TLS: its Received header and its log.
        assert b"(using TLSv1.3" in stored, stored
        assert "TLS connection established from localhost" in server.log(), server.log()
    finally:
        if relay is not None:
            assert relay.stop() == 0
        server.stop()


@FRONTS
def test_postfix_down_gives_451(front: tuple[str, ...]) -> None:
    relay = Relay(*front, "--relay", f"127.0.0.1:{free_port()}")
    try:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
            client.ehlo("client.test")
            code, text = client.mail("alice@example.org")
            assert code == 451 and text.startswith(b"4.4.1"), (code, text)
    finally:
        assert relay.stop() == 0


@FRONTS
def test_relay_into_dovecot_lmtp(dovecot: Dovecot, front: tuple[str, ...]) -> None:
    relay = Relay(*front, "--relay", f"127.0.0.1:{dovecot.port}", "--relay-lmtp")
    try:
        answers = raw_send(relay.port, ["bob@example.net", "nobody-here@example.net", "carol@example.net"], MESSAGE)
        assert answers[0].startswith(b"250"), answers
        # Dovecot's own refusal of an unknown user, as the RCPT reply.
        assert answers[1].startswith(b"550") and b"5.1.1" in answers[1], answers
        assert answers[2].startswith(b"250"), answers
        # SMTP on the front: one final reply, given only because Dovecot stored it for both.
        assert answers[4].startswith(b"250"), answers
        for user in ("bob", "carol"):
            [stored] = dovecot.delivered(user, 1)
            assert body_of(stored) == BODY_ON_ARRIVAL, stored
    finally:
        assert relay.stop() == 0


@FRONTS
def test_lmtp_front_gets_dovecots_reply_per_recipient(work: pathlib.Path, front: tuple[str, ...]) -> None:
    server = Dovecot(work / "dovecot")
    relay = None
    try:
        relay = Relay(*front, "--relay", f"127.0.0.1:{server.port}", "--relay-lmtp", "--lmtp")
        answers = raw_send(relay.port, ["bob@example.net", "carol@example.net"], b"Subject: x\r\n\r\nper recipient\r\n", lhlo=True)
        finals = answers[3:]
        assert len(finals) == 2 and all(a.startswith(b"250") for a in finals), answers
        # Dovecot's words (its session id and "Saved"), not the relay's own.
        assert all(b"Saved" in a for a in finals), answers
        assert body_of(server.delivered("bob", 1)[0]) == b"per recipient\n"
        assert body_of(server.delivered("carol", 1)[0]) == b"per recipient\n"
    finally:
        if relay is not None:
            assert relay.stop() == 0
        server.stop()
