#!/usr/bin/env python3
"""The blocking Python clients into Postfix's smtp-sink over one connection, client and
sink pinned to the same CPU: smtplib's sendmail loop, smtpx's sendmail loop (``import
smtpx as smtplib``) and smtpx's send_batch, side by side in one run.

    .venv/bin/python bench/blocking_client.py [--count 5000] [--size 1024] [--rounds 5]
        [--cpu 0] [--baseline-python OTHER_VENV/bin/python]

Each round runs the three contenders one after the other (the order rotates from round
to round), each on a fresh smtp-sink and a fresh connection, and measures the wall time
of the whole run: with client and sink on one CPU, that is the CPU both spend per
message, the client's share as ``time.process_time``. Prints every round, the medians,
and the median of the per-round ratios against smtplib (messages per second). Each run
is a fresh Python process (its allocator state does not depend on the runs before it).
With --baseline-python, both smtpx contenders also run under that interpreter (another
build of smtpx, such as main's, in another virtual environment) as "(baseline)" rows,
interleaved with the others, for a before/after in one run. Needs
smtp-sink (Debian: postfix), taskset (util-linux) and smtpx in the Python running it
(make python-install).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import smtpx

BASELINE = " (baseline)"

SENDER = "bench@example.org"
RECIPIENTS = ["sink@example.net"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(size: int) -> bytes:
    head = b"From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


class Sink:
    """smtp-sink on a free loopback port, pinned to ``cpu``, counting messages (-c)."""

    def __init__(self, cpu: int) -> None:
        self.port = free_port()
        # -c rewrites its counters as messages end: into a file, which nobody must read
        # while the run goes on (a pipe would fill up and stall smtp-sink).
        self.counts = tempfile.TemporaryFile()
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), binary, "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "100"],
            stdout=self.counts,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("smtp-sink did not start") from None
                time.sleep(0.02)

    def cpu(self) -> float:
        """smtp-sink's CPU seconds so far (utime + stime, from /proc)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """Stops smtp-sink; the number of messages it counted."""
        self.proc.terminate()
        self.proc.communicate(timeout=10)
        self.counts.seek(0)
        text = self.counts.read().decode(errors="replace")
        found = [int(part.split("=")[1]) for part in text.replace("\r", " ").split() if part.startswith("mesg=")]
        # The first connection is the readiness probe, which sends no message.
        return found[-1] if found else 0


def smtplib_loop(port: int, count: int, msg: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        for _ in range(count):
            client.sendmail(SENDER, RECIPIENTS, msg)


def smtpx_loop(port: int, count: int, msg: bytes) -> None:
    with smtpx.SMTP("127.0.0.1", port) as client:
        for _ in range(count):
            client.sendmail(SENDER, RECIPIENTS, msg)


def smtpx_batch(port: int, count: int, msg: bytes) -> None:
    with smtpx.SMTP("127.0.0.1", port) as client:
        outcomes = client.send_batch([(SENDER, RECIPIENTS, msg)] * count)
        if not all(isinstance(o, smtpx.SendResult) and o.ok for o in outcomes):
            raise RuntimeError("a batch message was not accepted")


class RawReplies:
    """The floor's reply reader: counts final reply lines, checks only their first digit."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""

    def expect(self, count: int, codes: bytes = b"23") -> None:
        """Reads until ``count`` final reply lines have come; each must start with one of
        ``codes``."""
        while count:
            while b"\r\n" not in self.pending:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("smtp-sink closed the connection")
                self.pending += data
            line, self.pending = self.pending.split(b"\r\n", 1)
            if line[3:4] == b"-":
                continue
            if line[:1] not in (codes[i:i + 1] for i in range(len(codes))):
                raise RuntimeError(f"unexpected reply {line!r}")
            count -= 1


def raw_floor(port: int, count: int, msg: bytes) -> None:
    """A calibration row: the exchange smtpx's loop makes, in the least Python can do it
    with: a raw socket, every command and the dot-stuffed message prepared once, MAIL,
    RCPT and DATA in one write and the message in a second, the replies only counted (two
    writes and two reads per message, as smtpx; smtplib needs four of each). Its cost
    beyond smtp-sink and the kernel is four socket calls and the counting in Python."""
    commands = (f"MAIL FROM:<{SENDER}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in RECIPIENTS)
                + "DATA\r\n").encode()
    content = msg if msg.endswith(b"\r\n") else msg + b"\r\n"
    content = content.replace(b"\r\n.", b"\r\n..")
    if content.startswith(b"."):
        content = b"." + content
    content += b".\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        replies = RawReplies(sock)
        replies.expect(1)  # the greeting
        sock.sendall(b"EHLO floor.example\r\n")
        replies.expect(1)
        for _ in range(count):
            sock.sendall(commands)
            replies.expect(1 + len(RECIPIENTS), b"2")
            replies.expect(1, b"3")
            sock.sendall(content)
            replies.expect(1, b"2")
        sock.sendall(b"QUIT\r\n")
        replies.expect(1)


FLOOR = "raw socket loop"
CONTENDERS: list[tuple[str, Callable[[int, int, bytes], None]]] = [
    ("smtplib sendmail loop", smtplib_loop),
    ("smtpx sendmail loop", smtpx_loop),
    ("smtpx send_batch", smtpx_batch),
    (FLOOR, raw_floor),
]


def run_one(name: str, port: int, count: int, size: int) -> None:
    """One run in this process (the parent's ``--one``): prints wall and CPU seconds."""
    run = dict(CONTENDERS)[name]
    msg = message(size)
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(port, count, msg)
    wall, usage = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
    user, system = usage.ru_utime - usage0.ru_utime, usage.ru_stime - usage0.ru_stime
    print(f"RESULT {wall} {user + system} {user} {system}")


def run_fresh(python: str, name: str, port: int, count: int, size: int) -> tuple[float, float, float]:
    """One run in a new Python process (pinned like this one): wall, CPU and kernel CPU
    seconds (the client's system time: its socket calls and the loopback's work they do)."""
    done = subprocess.run(
        [python, os.path.abspath(__file__), "--one", name, "--port", str(port),
         "--count", str(count), "--size", str(size)],
        capture_output=True, text=True, timeout=900,
    )
    found = [line.split() for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not found:
        sys.stderr.write(done.stderr[-2000:])
        raise RuntimeError(f"{name}: the run failed")
    return float(found[-1][1]), float(found[-1][2]), float(found[-1][4])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="messages per run")
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU of client and sink")
    parser.add_argument("--baseline-python", metavar="PYTHON",
                        help="also run the smtpx contenders under this interpreter (another smtpx build)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, in a child
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.port, args.count, args.size)
        return 0
    if shutil.which("taskset") is None:
        print("taskset is needed (util-linux)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {args.cpu})
    msg = message(args.size)
    print(
        f"{args.count} messages of {len(msg)} bytes over one connection into smtp-sink, "
        f"client and sink on CPU {args.cpu}, {args.rounds} rounds, load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    contenders = [(name, sys.executable, name) for name, _ in CONTENDERS]
    if args.baseline_python:
        contenders += [(name + BASELINE, args.baseline_python, name)
                       for name, _ in CONTENDERS if name.startswith("smtpx")]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    client_us: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    kernel_us: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    sink_us: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for round_no in range(args.rounds):
        shift = round_no % len(contenders)
        for name, python, contender in contenders[shift:] + contenders[:shift]:
            sink = Sink(args.cpu)
            try:
                sink_cpu = sink.cpu()
                wall, cpu, kernel = run_fresh(python, contender, sink.port, args.count, args.size)
                sink_cpu = sink.cpu() - sink_cpu
            finally:
                counted = sink.stop()
            if counted != args.count:
                raise RuntimeError(f"{name}: smtp-sink counted {counted} of {args.count} messages")
            rates[name].append(args.count / wall)
            client_us[name].append(cpu / args.count * 1e6)
            kernel_us[name].append(kernel / args.count * 1e6)
            sink_us[name].append(sink_cpu / args.count * 1e6)
            print(
                f"round {round_no + 1} {name:<22} {args.count / wall:9.0f} msg/s  "
                f"client CPU {cpu / args.count * 1e6:6.1f} us/msg (kernel {kernel / args.count * 1e6:5.1f}), "
                f"smtp-sink {sink_cpu / args.count * 1e6:5.1f}"
            )
    base = rates[CONTENDERS[0][0]]
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print()
    print("| contender | median msg/s | median wall us/msg | median client CPU us/msg (of which kernel) "
          "| median smtp-sink CPU us/msg | median ratio to smtplib (per round) |")
    print("|---|---|---|---|---|---|")
    for name, _, _ in contenders:
        ratios = [r / b for r, b in zip(rates[name], base)]
        print(
            f"| {name} | {statistics.median(rates[name]):.0f} | {1e6 / statistics.median(rates[name]):.1f} | "
            f"{statistics.median(client_us[name]):.1f} ({statistics.median(kernel_us[name]):.1f}) | "
            f"{statistics.median(sink_us[name]):.1f} | "
            f"{statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    loop = "smtpx sendmail loop"
    floor = [a / b for a, b in zip(rates[loop], rates[FLOOR])]
    print()
    print(f"{loop} / {FLOOR}, paired by round: {statistics.median(floor):.2f}x msg/s "
          f"({min(floor):.2f}-{max(floor):.2f})")
    if args.baseline_python:
        print()
        for name, _ in CONTENDERS:
            if name + BASELINE not in rates:
                continue
            rate = statistics.median(a / b for a, b in zip(rates[name], rates[name + BASELINE]))
            cpu = statistics.median(a / b for a, b in zip(client_us[name], client_us[name + BASELINE]))
            print(f"{name} / baseline, paired by round: {rate:.2f}x msg/s, {cpu:.2f}x client CPU/msg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
