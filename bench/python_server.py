#!/usr/bin/env python3
"""Python SMTP servers compared: smtpx.Controller and the asyncio smtpx.aio.Server against
aiosmtpd's Controller, running the same Python handler, loaded by Postfix's
`smtp-source -d -s 10`.

    .venv/bin/python bench/python_server.py [--messages 30000] [--rounds 3]
        [--baseline-python OTHER_VENV/bin/python]

The contenders run interleaved (A B C, A B C, ...) and the median of the rounds is
printed, with each contender's ratio to aiosmtpd paired by round. smtpx.aio.Server runs
on an asyncio event loop in a thread of the run's process, as aiosmtpd's Controller does.
Postfix's smtp-sink (C, no handler) runs last in each round as a calibration row: what
the load generator can reach on this machine at all (--no-sink leaves it out).
With --baseline-python, smtpx.aio.Server also runs under that interpreter (another
build of smtpx, such as main's, installed in another virtual environment) as the row
"smtpx.aio.Server (baseline)", interleaved with the others, for a before/after in one run.
Every figure is checked: smtp-source must exit 0 and the handler must have counted every
message, or the cell says FAILED. Each run starts a fresh Python process (see run_fresh)
in which the server runs; smtp-source is pinned to CPU 0 and the server to CPU 1 where
`taskset`/`os.sched_setaffinity` allow.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import smtpx


class CountingHandler:
    """The same handler for both servers: aiosmtpd's conventions, a counter, no I/O."""

    def __init__(self) -> None:
        self.count = 0
        self.octets = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            self.count += 1
            self.octets += len(envelope.content)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(port: int, messages: int) -> tuple[bool, float]:
    command = ["smtp-source", "-d", "-s", "10", "-m", str(messages), "-l", "1024",
               "-f", "bench@example.org", "-t", "sink@example.net", f"127.0.0.1:{port}"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    started = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    return done.returncode == 0, time.monotonic() - started


def run_smtpx(messages: int) -> tuple[float, float] | None:
    handler = CountingHandler()
    port = free_port()
    with smtpx.Controller(handler, hostname="127.0.0.1", port=port):
        cpu = cpu_seconds()
        ok, elapsed = load(port, messages)
        cpu = cpu_seconds() - cpu
    if not ok or handler.count != messages:
        return None
    return messages / elapsed, cpu / messages * 1e6


def run_smtpx_aio(messages: int) -> tuple[float, float] | None:
    import smtpx.aio

    handler = CountingHandler()
    port = free_port()
    loop = asyncio.new_event_loop()
    server = smtpx.aio.Server(handler, hostname="127.0.0.1", port=port)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
        cpu = cpu_seconds()
        ok, elapsed = load(port, messages)
        cpu = cpu_seconds() - cpu
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
    if not ok or handler.count != messages:
        return None
    return messages / elapsed, cpu / messages * 1e6


def run_sink(messages: int) -> tuple[float, float] | None:
    """The calibration row: Postfix's smtp-sink (C, no Python, no handler) under the same
    load, on the same CPU. Its CPU is read from /proc; -c makes it count messages."""
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    port = free_port()
    with tempfile.TemporaryFile() as counts:
        proc = subprocess.Popen(["taskset", "-c", "1", sink, "-c", "-u", "nobody", f"127.0.0.1:{port}", "100"],
                                stdout=counts, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        return None
                    time.sleep(0.05)
            cpu = process_cpu(proc.pid)
            ok, elapsed = load(port, messages)
            cpu = process_cpu(proc.pid) - cpu
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        counts.seek(0)
        found = re.findall(rb"mesg=(\d+)", counts.read())
    if not ok or not found or int(found[-1]) != messages:
        return None
    return messages / elapsed, cpu / messages * 1e6


def process_cpu(pid: int) -> float:
    """utime + stime of another process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_aiosmtpd(messages: int) -> tuple[float, float] | None:
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cpu = cpu_seconds()
        ok, elapsed = load(port, messages)
        cpu = cpu_seconds() - cpu
    finally:
        controller.stop()
    if not ok or handler.count != messages:
        return None
    return messages / elapsed, cpu / messages * 1e6


CONTENDERS = {"smtpx.Controller": run_smtpx, "smtpx.aio.Server": run_smtpx_aio,
              "aiosmtpd Controller": run_aiosmtpd, "smtp-sink (reference)": run_sink}
BASELINE = "smtpx.aio.Server (baseline)"


def run_fresh(name: str, messages: int, python: str = sys.executable) -> tuple[float, float] | None:
    """One run in a new Python process (pinned like this one): runs in one process would
    share its allocator state. Measured: once glibc's malloc has raised its mmap threshold
    (after some earlier run freed a large block), asyncio's 256 KiB recv buffers stop
    costing mmap/mremap/munmap per read, which changed a later contender's CPU per message
    by 2x depending on what ran before it."""
    one = "smtpx.aio.Server" if name == BASELINE else name
    done = subprocess.run([python, os.path.abspath(__file__), "--one", one, "--messages", str(messages)],
                          capture_output=True, text=True, timeout=900)
    found = re.search(r"^RESULT (\S+) (\S+)$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        sys.stderr.write(done.stderr[-2000:])
        return None
    return float(found.group(1)), float(found.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-sink", action="store_true",
                        help="leave out the smtp-sink calibration row (C, no handler)")
    parser.add_argument("--baseline-python", metavar="PYTHON",
                        help="also run smtpx.aio.Server under this interpreter (another smtpx build)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, in a child
    args = parser.parse_args()
    if args.one:
        result = CONTENDERS[args.one](args.messages)
        print("FAILED" if result is None else f"RESULT {result[0]} {result[1]}")
        return 0
    if not shutil.which("smtp-source"):
        print("smtp-source is missing (Debian: postfix)", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    contenders = dict(CONTENDERS)
    pythons = {name: sys.executable for name in contenders}
    if args.baseline_python:
        contenders = {"smtpx.aio.Server": run_smtpx_aio, BASELINE: run_smtpx_aio,
                      **{k: v for k, v in contenders.items() if k != "smtpx.aio.Server"}}
        pythons[BASELINE] = args.baseline_python
    if not (shutil.which("smtp-sink") and shutil.which("taskset")) or args.no_sink:
        del contenders["smtp-sink (reference)"]
    results: dict[str, list[tuple[float, float] | None]] = {name: [] for name in contenders}
    print(f"load average at the start {os.getloadavg()[0]:.2f}", flush=True)
    for rnd in range(1, args.rounds + 1):
        for name in contenders:
            result = run_fresh(name, args.messages, pythons[name])
            results[name].append(result)
            shown = "FAILED" if result is None else f"{result[0]:.0f} msg/s, {result[1]:.0f} µs/msg"
            print(f"  round {rnd} {name}: {shown}", flush=True)
    print(f"{args.messages} messages of 1 KiB, smtp-source -d -s 10, median of {args.rounds} rounds; "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'server':<28} {'msg/s':>10} {'server CPU µs/msg':>18}   per round (msg/s)")
    ok = True
    for name, runs in results.items():
        per = " / ".join("FAILED" if r is None else f"{r[0]:.0f}" for r in runs)
        good = [r for r in runs if r is not None]
        ok = ok and len(good) == len(runs)
        if not good:
            print(f"{name:<28} {'FAILED':>10}")
            continue
        rate = statistics.median(r[0] for r in good)
        cpu = statistics.median(r[1] for r in good)
        print(f"{name:<28} {rate:>10.0f} {cpu:>18.0f}   {per}")
    base = results["aiosmtpd Controller"]
    for name in ("smtpx.Controller", "smtpx.aio.Server", BASELINE, "smtp-sink (reference)"):
        if name not in results:
            continue
        pairs = [(a, b) for a, b in zip(results[name], base) if a is not None and b is not None]
        if not pairs:
            continue
        rate = statistics.median(a[0] / b[0] for a, b in pairs)
        cpu = statistics.median(a[1] / b[1] for a, b in pairs)
        goal = f" (goal >= 8x: {'MET' if rate >= 8 else 'NOT MET'})" if name == "smtpx.aio.Server" else ""
        print(f"{name} / aiosmtpd, paired by round: {rate:.2f}x msg/s, {cpu:.2f}x CPU/msg{goal}")
    sink = results.get("smtp-sink (reference)")
    if sink:
        for name in ("smtpx.Controller", "smtpx.aio.Server"):
            pairs = [(a, b) for a, b in zip(results[name], sink) if a is not None and b is not None]
            if pairs:
                cpu = statistics.median(a[1] / b[1] for a, b in pairs)
                print(f"{name} / smtp-sink, paired by round: {cpu:.2f}x server CPU/msg "
                      f"(goal <= 1.5x: {'MET' if cpu <= 1.5 else 'NOT MET'})")
    if BASELINE in results:
        pairs = [(a, b) for a, b in zip(results["smtpx.aio.Server"], results[BASELINE])
                 if a is not None and b is not None]
        if pairs:
            rate = statistics.median(a[0] / b[0] for a, b in pairs)
            cpu = statistics.median(a[1] / b[1] for a, b in pairs)
            print(f"smtpx.aio.Server / its baseline, paired by round: {rate:.2f}x msg/s, {cpu:.2f}x CPU/msg")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
