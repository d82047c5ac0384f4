#!/usr/bin/env python3
"""Python SMTP clients compared: smtpx, smtplib and aiosmtplib, each sending N messages
over one connection into Postfix's smtp-sink, and printing a table.

    .venv/bin/python bench/python_client.py [--count 20000] [--size 1024]
    .venv/bin/python bench/python_client.py --aio [--rounds 3] [--target sink|smtp-server]

Needs smtp-sink (Debian: postfix) and, in the Python running this, smtpx (make
python-install) and aiosmtplib. smtp-sink is started on a free loopback port with a
backlog of 100 and stopped at the end; it offers PIPELINING, so smtpx pipelines MAIL,
RCPT and DATA, while smtplib and aiosmtplib wait for each reply.

--aio compares the asyncio clients only, smtpx.aio.SMTP (a sendmail loop, and
send_batch, which chains each next message behind the previous one's final dot) against
aiosmtplib.SMTP, each sending --count messages over one connection, each run in a fresh Python process, for
--rounds paired rounds (A B, A B, ...; a fresh server per run) and prints every round, the
medians and the median of the per-round ratios. The target is smtp-sink (PIPELINING, no CHUNKING: smtpx
needs two round trips per message) or, with --target smtp-server, the repository's
`smtp-server --discard` (target/release/examples, `make examples`; it offers CHUNKING, so
smtpx sends BDAT and needs one round trip, aiosmtplib still four). Both clients always
face the same target. The target runs on CPU 1 and this process on CPU 0 where
`taskset`/`os.sched_setaffinity` allow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

import smtpx

SENDER = "bench@example.org"
RECIPIENTS = ["sink@example.net"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(size: int) -> bytes:
    head = b"From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def bench_smtpx(port: int, count: int, msg: bytes) -> None:
    with smtpx.SMTP("127.0.0.1", port, local_hostname="bench.test", timeout=60) as client:
        for _ in range(count):
            client.sendmail(SENDER, RECIPIENTS, msg)


def bench_smtpx_send(port: int, count: int, msg: bytes) -> None:
    with smtpx.SMTP("127.0.0.1", port, local_hostname="bench.test", timeout=60) as client:
        for _ in range(count):
            if not client.send(msg, sender=SENDER, recipients=RECIPIENTS).ok:
                raise RuntimeError("refused")


def bench_smtpx_send_batch(port: int, count: int, msg: bytes) -> None:
    """The same messages through send_batch: each next MAIL leaves with the previous
    message's final dot (one round trip per message with PIPELINING)."""
    with smtpx.SMTP("127.0.0.1", port, local_hostname="bench.test", timeout=60) as client:
        outcomes = client.send_batch((SENDER, RECIPIENTS, msg) for _ in range(count))
        check_batch(outcomes, count)


def check_batch(outcomes: Sequence[object], count: int) -> None:
    if len(outcomes) != count or not all(isinstance(o, smtpx.SendResult) and o.ok for o in outcomes):
        raise RuntimeError("refused or failed")


def bench_smtplib(port: int, count: int, msg: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.test", timeout=60) as client:
        for _ in range(count):
            client.sendmail(SENDER, RECIPIENTS, msg)


def bench_aiosmtplib(port: int, count: int, msg: bytes) -> None:
    import aiosmtplib

    async def run() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.test", timeout=60,
                                 start_tls=False)
        async with client:
            for _ in range(count):
                await client.sendmail(SENDER, RECIPIENTS, msg)

    asyncio.run(run())


async def _aio_smtpx(port: int, count: int, msg: bytes) -> None:
    import smtpx.aio

    async with smtpx.aio.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.test",
                              timeout=60) as client:
        for _ in range(count):
            errors, _ = await client.sendmail(SENDER, RECIPIENTS, msg)
            if errors:
                raise RuntimeError("refused")


async def _aio_smtpx_batch(port: int, count: int, msg: bytes) -> None:
    import smtpx.aio

    async with smtpx.aio.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.test",
                              timeout=60) as client:
        check_batch(await client.send_batch([(SENDER, RECIPIENTS, msg)] * count), count)


async def _aio_aiosmtplib(port: int, count: int, msg: bytes) -> None:
    import aiosmtplib

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.test",
                             timeout=60, start_tls=False)
    async with client:
        for _ in range(count):
            errors, _ = await client.sendmail(SENDER, RECIPIENTS, msg)
            if errors:
                raise RuntimeError("refused")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Target:
    """A fresh server for one run, pinned to CPU 1: smtp-sink (counts messages with -c)
    or the repository's smtp-server --discard (checked by the clients' 250s only)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        pin = ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
        if kind == "sink":
            self.port = free_port()
            # -c rewrites "sess=N quit=N mesg=N" as messages end: to a file, since a pipe
            # nobody reads while the run goes on would fill up and stall smtp-sink.
            self.counts = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                pin + [shutil.which("smtp-sink") or "/usr/sbin/smtp-sink", "-c", "-u", "nobody",
                       f"127.0.0.1:{self.port}", "100"],
                stdout=self.counts, stderr=subprocess.DEVNULL)
            wait_port(self.port)
        else:
            binary = os.path.join(REPO, "target", "release", "examples", "smtp-server")
            self.proc = subprocess.Popen(
                pin + [binary, "--listen", "127.0.0.1:0", "--hostname", "bench.test", "--discard"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode()
            found = re.search(r"listening on \S+:(\d+)", line)
            if not found:
                self.close()
                raise RuntimeError(f"smtp-server did not start: {line!r}")
            self.port = int(found.group(1))

    def close(self) -> int | None:
        """Stops the server; for smtp-sink, returns the number of messages it counted."""
        self.proc.terminate()
        self.proc.communicate(timeout=10)
        if self.kind != "sink":
            return None
        self.counts.seek(0)
        counts = re.findall(rb"mesg=(\d+)", self.counts.read())
        self.counts.close()
        return int(counts[-1]) if counts else 0


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


AIO_CLIENTS = {"smtpx.aio.SMTP": _aio_smtpx, "smtpx.aio.SMTP.send_batch": _aio_smtpx_batch,
               "aiosmtplib.SMTP": _aio_aiosmtplib}


def aio_fresh(name: str, port: int, args: argparse.Namespace) -> float | None:
    """One client run in a new Python process (pinned like this one), timed there from
    connecting to QUIT: runs in one process would share its allocator state, which changed
    the CPU cost of asyncio's reads by up to 2x (see python_server.py's run_fresh)."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--one-aio", name, "--port", str(port),
                           "--count", str(args.count), "--size", str(args.size)],
                          capture_output=True, text=True, timeout=900)
    found = re.search(r"^RESULT (\S+)$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        print(f"  {name}: FAILED {done.stderr.strip()[-500:]}", flush=True)
        return None
    return float(found.group(1))


def aio_one(args: argparse.Namespace) -> int:
    msg = message(args.size)
    started = time.perf_counter()
    asyncio.run(AIO_CLIENTS[args.one_aio](args.port, args.count, msg))
    print(f"RESULT {args.count / (time.perf_counter() - started)}")
    return 0


def aio_main(args: argparse.Namespace) -> int:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    msg = message(args.size)
    contenders = AIO_CLIENTS
    rates: dict[str, list[float | None]] = {name: [] for name in contenders}
    target_name = "smtp-sink" if args.target == "sink" else "smtp-server --discard"
    print(f"{args.count} messages of {len(msg)} bytes over one connection into {target_name}, "
          f"{args.rounds} paired rounds; load average {os.getloadavg()[0]:.2f}", flush=True)
    for rnd in range(1, args.rounds + 1):
        for name, run in contenders.items():
            target = Target(args.target)
            rate: float | None = None
            try:
                rate = aio_fresh(name, target.port, args)
            finally:
                counted = target.close()
            if rate is not None and counted is not None and counted != args.count:
                print(f"  round {rnd} {name}: FAILED, smtp-sink counted {counted}", flush=True)
                rate = None
            rates[name].append(rate)
            if rate is not None:
                print(f"  round {rnd} {name}: {rate:,.0f} msg/s", flush=True)
    ok = True
    for name, runs in rates.items():
        good = [r for r in runs if r is not None]
        per = " / ".join("FAILED" if r is None else f"{r:,.0f}" for r in runs)
        med = f"{statistics.median(good):,.0f}" if good else "FAILED"
        ok = ok and len(good) == len(runs)
        print(f"{name:<26} median {med:>8} msg/s   rounds: {per}")
    for name in ("smtpx.aio.SMTP", "smtpx.aio.SMTP.send_batch"):
        pairs = [(a, b) for a, b in zip(rates[name], rates["aiosmtplib.SMTP"])
                 if a is not None and b is not None]
        if pairs:
            ratios = [a / b for a, b in pairs]
            med = statistics.median(ratios)
            print(f"{name} / aiosmtplib, paired by round: {' / '.join(f'{r:.2f}x' for r in ratios)}"
                  f"; median {med:.2f}x (goal >= 3x: {'MET' if med >= 3 else 'NOT MET'})")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes")
    parser.add_argument("--aio", action="store_true", help="smtpx.aio.SMTP against aiosmtplib only")
    parser.add_argument("--rounds", type=int, default=3, help="with --aio: paired rounds")
    parser.add_argument("--target", choices=["sink", "smtp-server"], default="sink",
                        help="with --aio: the server both clients send to")
    parser.add_argument("--one-aio", help=argparse.SUPPRESS)  # internal: one run, in a child
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_aio:
        return aio_one(args)
    if args.aio:
        return aio_main(args)
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    port = free_port()
    proc = subprocess.Popen([sink, "-u", "nobody", f"127.0.0.1:{port}", "100"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        msg = message(args.size)
        clients: list[tuple[str, Callable[[int, int, bytes], None]]] = [
            ("smtpx SMTP.sendmail", bench_smtpx),
            ("smtpx SMTP.send", bench_smtpx_send),
            ("smtpx SMTP.send_batch", bench_smtpx_send_batch),
            ("smtplib", bench_smtplib),
            ("aiosmtplib", bench_aiosmtplib),
        ]
        print(f"{args.count} messages of {len(msg)} bytes over one connection into smtp-sink")
        print(f"{'client':<22} {'seconds':>8} {'msg/s':>9} {'vs smtplib':>10}")
        results: dict[str, float] = {}
        for name, run in clients:
            started = time.perf_counter()
            run(port, args.count, msg)
            results[name] = time.perf_counter() - started
        base = results["smtplib"]
        for name, seconds in results.items():
            print(f"{name:<22} {seconds:>8.2f} {args.count / seconds:>9.0f} {base / seconds:>9.2f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
