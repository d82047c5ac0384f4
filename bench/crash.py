#!/usr/bin/env python3
"""Crash safety of the Maildir server: SIGKILL it again and again under load, restart it
on the same Maildir, and count what was lost.

    .venv/bin/python bench/crash.py [--kills 50] [--clients 4] [--seed 1] [--async]

Runs `smtp-server` (SMTPX_EXAMPLES, or target/release/examples: `make examples`) on a
free loopback port with a private Maildir in a temporary directory. Real clients
(Python's smtplib, one thread each) send messages of 200 octets to 300 kB, each with a
unique id in its `X-Crash-Id` header and on every body line. Every 0.2-0.5 s the server is
killed with SIGKILL (by its PID) and started again on the same Maildir. At the end the
clients stop, the server is stopped with SIGTERM, and `new/` is checked:

- every message that got its 250 must be in `new/`, byte for byte (trace headers, then
  exactly the content sent); one missing is *lost*;
- a message that got no 250 (the connection died first) may be there or not, but every
  file in `new/` must be a whole message of this run, once: anything else is *partial*
  (or a *duplicate*);
- a message refused with an error reply must not be there.

`tmp/` at each restart: the example uses `MaildirHandler::new`, whose rule removes files
older than 36 hours. Before each restart, every other leftover of the kill gets a
modification time 37 hours back, and two files are planted (37 and 35 hours old); after
the restart every aged file must be gone and every younger one still there (it could be
another process's delivery in progress). The figures are printed at the end; the exit
status is 1 if anything was lost, partial, duplicated or cleaned against the rule.

tests/interop/test_maildir_crash.py runs the same with 10 kills.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import random
import re
import select
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Just past and just inside the handler's 36-hour rule (STALE_TMP_AGE in maildir.rs).
STALE_AGE = 37 * 3600
YOUNG_AGE = 35 * 3600

SIZES = (200, 2_000, 50_000, 300_000)
SENDER = "crash@client.test"
RECIPIENT = "box@mx.test"

# What the handler writes before the content: Return-Path, then Received with its
# continuation lines.
TRACE = re.compile(rb"Return-Path: <[^\r\n]*>\r\nReceived: [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)+")
CRASH_ID = re.compile(rb"\r\nX-Crash-Id: (\S+)\r\n")


def example_binary(name: str) -> str:
    folder = pathlib.Path(os.environ.get("SMTPX_EXAMPLES", ROOT / "target" / "release" / "examples"))
    path = folder / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build it with `make examples`")
    return str(path)


def content_for(msg_id: str, size: int) -> bytes:
    """A message whose every line names it, so that a mix-up shows; lines end in CRLF and
    none starts with a dot, so what smtplib sends is exactly these bytes."""
    head = f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: crash test\r\nX-Crash-Id: {msg_id}\r\n\r\n"
    lines = [head]
    total = len(head)
    n = 0
    while total < size:
        line = f"{msg_id} line {n:06d} {'x' * 60}\r\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines).encode()


class Server:
    """The example server, started and restarted on one Maildir, stopped by its PID."""

    def __init__(self, binary: str, maildir: pathlib.Path, log: IO[bytes], flags: Sequence[str]) -> None:
        self.binary = binary
        self.maildir = maildir
        self.log = log
        self.flags = list(flags)
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._address: tuple[str, int] | None = None
        self.start_times: list[float] = []

    def address(self) -> tuple[str, int] | None:
        with self._lock:
            return self._address

    def start(self, timeout: float = 15.0) -> None:
        began = time.monotonic()
        proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:0", "--maildir", str(self.maildir), "--hostname", "mx.test", *self.flags],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.proc = proc
        assert proc.stdout is not None
        # The line comes once the handler exists, that is after the tmp/ cleanup.
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode(errors="replace").strip() if ready else ""
        if not line.startswith("listening on "):
            self.kill()
            raise RuntimeError(f"smtp-server did not start: {line!r} (stderr: {self.log.name})")
        host, port = line.removeprefix("listening on ").rsplit(":", 1)
        self.start_times.append(time.monotonic() - began)
        with self._lock:
            self._address = (host, int(port))

    def kill(self) -> None:
        with self._lock:
            self._address = None
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None

    def stop(self) -> int:
        """SIGTERM, then the exit status (SIGKILL after 15 s)."""
        with self._lock:
            self._address = None
        proc = self.proc
        if proc is None:
            return 0
        proc.terminate()
        try:
            status = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
            return -1
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None
        return status


@dataclasses.dataclass
class ClientLog:
    # Sizes only: content_for rebuilds the bytes, and thousands of messages of up to
    # 300 kB would not fit in memory.
    sent: dict[str, int] = dataclasses.field(default_factory=dict)
    acked: set[str] = dataclasses.field(default_factory=set)
    refused: set[str] = dataclasses.field(default_factory=set)
    no_reply: set[str] = dataclasses.field(default_factory=set)


def client(number: int, server: Server, stop: threading.Event, log: ClientLog, seed: int) -> None:
    """Sends messages, a few per connection, until `stop`; reconnects whenever the server
    went away."""
    rng = random.Random(seed * 1000 + number)
    seq = 0
    while not stop.is_set():
        address = server.address()
        if address is None:
            time.sleep(0.02)
            continue
        try:
            smtp = smtplib.SMTP(address[0], address[1], local_hostname="client.test", timeout=10)
        except (OSError, smtplib.SMTPException):
            time.sleep(0.02)
            continue
        try:
            for _ in range(rng.randint(1, 5)):
                if stop.is_set():
                    break
                msg_id = f"c{number}-{seq}"
                seq += 1
                size = rng.choice(SIZES)
                content = content_for(msg_id, size)
                log.sent[msg_id] = size
                try:
                    smtp.sendmail(SENDER, [RECIPIENT], content)
                except smtplib.SMTPResponseException as e:
                    # An error reply: the server said it did not take the message.
                    log.refused.add(msg_id)
                    if e.smtp_code == 421:
                        break
                    continue
                except smtplib.SMTPRecipientsRefused:
                    log.refused.add(msg_id)
                    continue
                except (OSError, smtplib.SMTPException):
                    # The connection died: the message may or may not have made it.
                    log.no_reply.add(msg_id)
                    break
                log.acked.add(msg_id)
            else:
                try:
                    smtp.quit()
                except (OSError, smtplib.SMTPException):
                    pass
        finally:
            smtp.close()


@dataclasses.dataclass
class Figures:
    kills: int = 0
    sent: int = 0
    acked: int = 0
    no_reply: int = 0
    refused: int = 0
    delivered_without_250: int = 0
    lost: list[str] = dataclasses.field(default_factory=list)
    partial: list[str] = dataclasses.field(default_factory=list)
    duplicates: list[str] = dataclasses.field(default_factory=list)
    refused_but_delivered: list[str] = dataclasses.field(default_factory=list)
    tmp_leftovers: int = 0  # files the killed servers left in tmp/ (all kills)
    tmp_aged: int = 0  # of those and the planted ones, made 37 hours old before a restart
    tmp_removed: int = 0  # aged files gone after the restart (must equal tmp_aged)
    tmp_young_kept: int = 0  # younger files still there after the restart
    aged_not_removed: list[str] = dataclasses.field(default_factory=list)
    young_removed: list[str] = dataclasses.field(default_factory=list)
    tmp_after_stop: int = 0  # files in tmp/ after the final SIGTERM
    tmp_unexpected_after_stop: list[str] = dataclasses.field(default_factory=list)
    stop_status: int = 0
    restart_median_s: float = 0.0
    restart_max_s: float = 0.0
    seconds: float = 0.0

    def ok(self) -> bool:
        return not (
            self.lost
            or self.partial
            or self.duplicates
            or self.refused_but_delivered
            or self.aged_not_removed
            or self.young_removed
            or self.tmp_unexpected_after_stop
            or self.stop_status != 0
        )


def set_age(path: pathlib.Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def run(
    binary: str,
    workdir: pathlib.Path,
    kills: int = 10,
    clients: int = 4,
    interval: tuple[float, float] = (0.2, 0.5),
    seed: int = 1,
    flags: Sequence[str] = (),
) -> Figures:
    """Runs the whole experiment in `workdir` and returns what it saw. Everything it
    starts is stopped before it returns, also when it raises."""
    began = time.monotonic()
    rng = random.Random(seed)
    maildir = workdir / "maildir"
    tmp = maildir / "tmp"
    figures = Figures()
    logs = [ClientLog() for _ in range(clients)]
    stop = threading.Event()
    # Young leftovers the rule keeps: they must outlive every later restart too.
    kept: set[str] = set()
    with open(workdir / "smtp-server.log", "wb") as server_log:
        server = Server(binary, maildir, server_log, flags)
        threads = [
            threading.Thread(target=client, args=(n, server, stop, logs[n], seed), daemon=True) for n in range(clients)
        ]
        try:
            server.start()
            for thread in threads:
                thread.start()
            # Load first, so that the first kill has something to interrupt.
            deadline = time.monotonic() + 10
            while not any(log.acked for log in logs) and time.monotonic() < deadline:
                time.sleep(0.01)
            for k in range(kills):
                time.sleep(rng.uniform(*interval))
                server.kill()
                figures.kills += 1
                leftovers = sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name not in kept)
                figures.tmp_leftovers += len(leftovers)
                aged = set(leftovers[::2])
                young = set(leftovers[1::2])
                for name in aged:
                    set_age(tmp / name, STALE_AGE)
                planted_old, planted_young = f"planted-{k}-old", f"planted-{k}-young"
                (tmp / planted_old).write_bytes(b"an interrupted delivery, long ago")
                set_age(tmp / planted_old, STALE_AGE)
                (tmp / planted_young).write_bytes(b"maybe another process's delivery in progress")
                set_age(tmp / planted_young, YOUNG_AGE)
                aged.add(planted_old)
                young.add(planted_young)
                figures.tmp_aged += len(aged)

                server.start()
                # A listing taken now may already hold the new server's own messages;
                # only the names above are judged.
                present = {p.name for p in tmp.iterdir()}
                figures.tmp_removed += len(aged - present)
                figures.aged_not_removed += sorted(aged & present)
                kept |= young
                figures.young_removed += sorted(kept - present)
                kept &= present
                figures.tmp_young_kept = len(kept)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            if server.proc is not None:
                figures.stop_status = server.stop()
    # A graceful stop removes the messages in progress: only the kept leftovers remain.
    after = {p.name for p in tmp.iterdir()}
    figures.tmp_after_stop = len(after)
    figures.tmp_unexpected_after_stop = sorted(after - kept)

    sent: dict[str, int] = {}
    acked: set[str] = set()
    refused: set[str] = set()
    for log in logs:
        sent.update(log.sent)
        acked |= log.acked
        refused |= log.refused
        figures.no_reply += len(log.no_reply)
    figures.sent = len(sent)
    figures.acked = len(acked)
    figures.refused = len(refused)

    whole: dict[str, int] = {}
    for path in sorted((maildir / "new").iterdir()):
        data = path.read_bytes()
        found = CRASH_ID.search(data)
        msg_id = found.group(1).decode() if found else None
        size = sent.get(msg_id) if msg_id else None
        expected = content_for(msg_id, size) if msg_id and size is not None else None
        if (
            expected is None
            or not data.endswith(expected)
            or TRACE.fullmatch(data, 0, len(data) - len(expected)) is None
        ):
            figures.partial.append(path.name)
            continue
        assert msg_id is not None
        whole[msg_id] = whole.get(msg_id, 0) + 1
    figures.lost = sorted(acked - whole.keys())
    figures.duplicates = sorted(m for m, n in whole.items() if n > 1)
    figures.refused_but_delivered = sorted(refused & whole.keys())
    figures.delivered_without_250 = len(whole.keys() - acked)
    figures.partial += [f"cur/{p.name}" for p in (maildir / "cur").iterdir()]
    if server.start_times:
        figures.restart_median_s = statistics.median(server.start_times)
        figures.restart_max_s = max(server.start_times)
    figures.seconds = time.monotonic() - began
    return figures


def report(figures: Figures) -> str:
    rows = [
        ("kills (SIGKILL, then restart on the same Maildir)", figures.kills),
        ("messages sent", figures.sent),
        ("acknowledged (250)", figures.acked),
        ("connection died before the reply", figures.no_reply),
        ("  of those delivered anyway (allowed)", figures.delivered_without_250),
        ("refused with an error reply", figures.refused),
        ("LOST (250 but not whole in new/)", len(figures.lost)),
        ("PARTIAL or foreign files in new/ or cur/", len(figures.partial)),
        ("DUPLICATES in new/", len(figures.duplicates)),
        ("refused but delivered", len(figures.refused_but_delivered)),
        ("tmp/ leftovers found after the kills", figures.tmp_leftovers),
        ("tmp/ files aged to 37 h before a restart (leftovers + planted)", figures.tmp_aged),
        ("  removed by the restart (36 h rule)", figures.tmp_removed),
        ("  aged but NOT removed", len(figures.aged_not_removed)),
        ("younger tmp/ files kept (35 h planted + unaged leftovers)", figures.tmp_young_kept),
        ("  younger but REMOVED", len(figures.young_removed)),
        ("tmp/ files after the final SIGTERM (all of them kept ones)", figures.tmp_after_stop),
        ("final SIGTERM exit status", figures.stop_status),
        ("restart to 'listening on', median / max (s)", f"{figures.restart_median_s:.3f} / {figures.restart_max_s:.3f}"),
        ("wall time (s)", f"{figures.seconds:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    for label, items in (
        ("lost", figures.lost),
        ("partial", figures.partial),
        ("duplicates", figures.duplicates),
        ("refused but delivered", figures.refused_but_delivered),
        ("aged but not removed", figures.aged_not_removed),
        ("young but removed", figures.young_removed),
        ("unexpected in tmp/ after stop", figures.tmp_unexpected_after_stop),
    ):
        if items:
            lines.append(f"{label}: {' '.join(items[:20])}{' ...' if len(items) > 20 else ''}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--min-interval", type=float, default=0.2, help="seconds between kills, at least")
    parser.add_argument("--max-interval", type=float, default=0.5, help="seconds between kills, at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--async", dest="use_async", action="store_true", help="run smtp-server --async (tokio driver)")
    parser.add_argument("--keep", action="store_true", help="keep the Maildir and server log, and print where")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.clients < 1 or not 0 < args.min_interval <= args.max_interval:
        parser.error("need --kills >= 1, --clients >= 1 and 0 < --min-interval <= --max-interval")
    binary = example_binary("smtp-server")
    flags = ["--async"] if args.use_async else []
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="smtpx-crash-"))
    try:
        figures = run(binary, workdir, args.kills, args.clients, (args.min_interval, args.max_interval), args.seed, flags)
    finally:
        if args.keep:
            print(f"kept: {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    driver = "async (tokio)" if args.use_async else "blocking"
    print(f"smtp-server ({driver} driver), {args.clients} clients, seed {args.seed}")
    print(report(figures))
    return 0 if figures.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
