#!/usr/bin/env python3
"""smtpx.pool.AsyncSMTPPool into smtp-sink: messages per second and client CPU per
message, for one or more Python interpreters (each with its own smtpx installed), in
interleaved rounds so that they share the machine's state.

    python3 bench/python_pool.py --python A=.venv/bin/python --python B=other/bin/python \
        --messages 4000 --tasks 8 --pool 8 --rounds 3

smtp-sink is started by this script on a free loopback port and stopped by its PID.
The figure to compare is the client's CPU time per message (user + system of the
sending process, over the whole run), which the machine's load disturbs least.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

CHILD = r"""
import asyncio, json, os, sys, time
from smtpx.pool import AsyncSMTPPool

port, messages, tasks, size = (int(a) for a in sys.argv[1:5])
body = b"Subject: bench\r\n\r\n" + b"x" * 76 + b"\r\n"
body = body * max(1, size // len(body))

async def main():
    async with AsyncSMTPPool("127.0.0.1", port, max_size=int(sys.argv[5]), timeout=30) as pool:
        left = messages
        async def sender():
            nonlocal left
            while left > 0:
                left -= 1
                result = await pool.send("a@example.org", ["b@example.net"], body)
                assert result.ok, result
        await asyncio.gather(*(sender() for _ in range(tasks)))

cpu0, t0 = os.times(), time.perf_counter()
asyncio.run(main())
t1, cpu1 = time.perf_counter(), os.times()
cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
print(json.dumps({"seconds": t1 - t0, "cpu": cpu}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", required=True, help="NAME=interpreter (repeat)")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pythons = [entry.split("=", 1) for entry in args.python]
    port = free_port()
    sink = subprocess.Popen(
        ["smtp-sink", "-u", os.environ.get("USER", "root"), f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in pythons}
        for _ in range(args.rounds):
            for name, python in pythons:
                out = subprocess.run(
                    [python, "-c", CHILD, str(port), str(args.messages), str(args.tasks), str(args.size), str(args.pool)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        sink.terminate()
        sink.wait(10)
    print(f"{args.messages} messages of ~{args.size} octets, {args.tasks} tasks, pool of {args.pool}, {args.rounds} rounds")
    for name, runs in results.items():
        rate = statistics.median(args.messages / r["seconds"] for r in runs)
        cpu_us = statistics.median(r["cpu"] / args.messages * 1e6 for r in runs)
        print(f"{name:>10}: median {rate:,.0f} msg/s, client CPU {cpu_us:.0f} us/message "
              f"(rounds: {', '.join('%.0f' % (r['cpu'] / args.messages * 1e6) for r in runs)} us)")


if __name__ == "__main__":
    sys.exit(main())
