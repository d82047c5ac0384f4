#!/usr/bin/env python3
"""Python SMTP servers compared: smtpx.Controller against aiosmtpd's Controller, running
the same Python handler, loaded by Postfix's `smtp-source -d -s 10`.

    .venv/bin/python bench/python_server.py [--messages 10000] [--rounds 3]

The contenders run interleaved (A B, A B, ...) and the median of the rounds is printed.
Every figure is checked: smtp-source must exit 0 and the handler must have counted every
message, or the cell says FAILED. The server runs in this process; smtp-source is pinned
to CPU 0 and this process to CPU 1 where `taskset`/`os.sched_setaffinity` allow.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("smtp-source"):
        print("smtp-source is missing (Debian: postfix)", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    contenders = {"smtpx.Controller": run_smtpx, "aiosmtpd Controller": run_aiosmtpd}
    results: dict[str, list[tuple[float, float] | None]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            results[name].append(run(args.messages))
    print(f"{args.messages} messages of 1 KiB, smtp-source -d -s 10, median of {args.rounds} rounds")
    print(f"{'server':<22} {'msg/s':>10} {'server CPU µs/msg':>18}")
    medians: dict[str, float] = {}
    for name, runs in results.items():
        if any(r is None for r in runs):
            print(f"{name:<22} {'FAILED':>10}")
            continue
        rate = statistics.median(r[0] for r in runs if r)
        cpu = statistics.median(r[1] for r in runs if r)
        medians[name] = rate
        print(f"{name:<22} {rate:>10.0f} {cpu:>18.0f}")
    if len(medians) == 2:
        print(f"ratio: {medians['smtpx.Controller'] / medians['aiosmtpd Controller']:.1f}x")
    return 0 if len(medians) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
