#!/usr/bin/env python3
"""Python SMTP clients compared: smtpx, smtplib and aiosmtplib, each sending N messages
over one connection into Postfix's smtp-sink, and printing a table.

    .venv/bin/python bench/python_client.py [--count 20000] [--size 1024]

Needs smtp-sink (Debian: postfix) and, in the Python running this, smtpx (make
python-install) and aiosmtplib. smtp-sink is started on a free loopback port with a
backlog of 100 and stopped at the end; it offers PIPELINING, so smtpx pipelines MAIL,
RCPT and DATA, while smtplib and aiosmtplib wait for each reply.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from typing import Callable

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes")
    args = parser.parse_args()
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
