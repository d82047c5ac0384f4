#!/usr/bin/env python3
"""smtpx.relay.RelayHandler in front of smtp-sink, its two ways: under smtpx's Controller
(the core's relay inside the native connection, content streamed as it arrives) and
under aiosmtpd's Controller (aiosmtpd's handle_DATA gets the message whole, then it is
streamed on). Reports the front process's CPU per message and its peak resident memory,
in interleaved rounds.

    python3 bench/python_relay.py --messages 40 --size 8388608 --rounds 3

smtp-sink and the front servers are started by this script on free loopback ports and
stopped by their PIDs (the front ones through their standard input).
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import time

FRONT = r"""
import os, sys
from smtpx.relay import RelayHandler
kind, sink_port, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
relay = RelayHandler("127.0.0.1", sink_port, timeout=60)
if kind == "smtpx":
    from smtpx import Controller
    controller = Controller(relay, hostname="127.0.0.1", port=port, data_size_limit=None)
else:
    from aiosmtpd.controller import Controller
    controller = Controller(relay, hostname="127.0.0.1", port=port, data_size_limit=None)
controller.start()
print("ready", flush=True)
sys.stdin.readline()
controller.stop()
relay.close()
times = os.times()
peak = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(times.user + times.system, peak, flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def run_front(kind: str, sink_port: int, messages: int, body: bytes) -> tuple[float, int, float]:
    port = free_port()
    front = subprocess.Popen(
        [sys.executable, "-c", FRONT, kind, str(sink_port), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert front.stdin is not None and front.stdout is not None
    try:
        assert front.stdout.readline().strip() == "ready"
        idle = [l.split()[1] for l in open(f"/proc/{front.pid}/status") if l.startswith("VmRSS")][0]
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            for _ in range(messages):
                client.sendmail("a@example.org", ["b@example.net"], body)
        seconds = time.perf_counter() - started
        front.stdin.write("stop\n")
        front.stdin.flush()
        cpu, peak = front.stdout.readline().split()
        return float(cpu), int(peak) - int(idle), seconds
    finally:
        front.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--size", type=int, default=8 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    line = b"x" * 998 + b"\r\n"
    body = b"Subject: relayed\r\n\r\n" + line * max(1, args.size // len(line))
    sink_port = free_port()
    sink = subprocess.Popen(
        ["smtp-sink", "-u", os.environ.get("USER", "root"), f"127.0.0.1:{sink_port}", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(sink_port)
        results: dict[str, list[tuple[float, int, float]]] = {"smtpx": [], "aiosmtpd": []}
        for _ in range(args.rounds):
            for kind in results:
                results[kind].append(run_front(kind, sink_port, args.messages, body))
    finally:
        sink.terminate()
        sink.wait(10)
    print(f"{args.messages} messages of {len(body):,} octets through the relay into smtp-sink, {args.rounds} rounds")
    for kind, runs in results.items():
        cpu_ms = statistics.median(cpu / args.messages * 1e3 for cpu, _, _ in runs)
        peak_mib = statistics.median(peak / 1024 for _, peak, _ in runs)
        rate = statistics.median(args.messages / s for _, _, s in runs)
        print(f"{kind:>9} Controller: front CPU {cpu_ms:.1f} ms/message, peak RSS above idle {peak_mib:.1f} MiB, "
              f"{rate:.1f} msg/s")


if __name__ == "__main__":
    sys.exit(main())
