#!/usr/bin/env python3
"""Before/after: the server CPU per message of two smtp-server builds, run in turn.

    bench/ab_server.py NEW_SMTP_SERVER OLD_SMTP_SERVER [smtp-server flags...]

Each round starts one build on CPU 0 (`--discard`, plus the flags given, for example
`--async`), sends 30,000 messages of 1 KiB from Postfix's smtp-source on CPU 1 over 10
connections (`-d -s 10`, the S1 load of bench/peers), reads the server's user+system CPU
time from /proc before and after, and stops it; then the same for the other build. Six
rounds, A B A B ...: the ratio is taken pair by pair, so that the machine's drift between
rounds cancels out. Prints the medians and the paired ratio. Loopback only; every process
it starts is stopped by its PID.
"""
import os
import re
import statistics
import subprocess
import sys
import time

MESSAGES = 30000
ROUNDS = 6


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(binary: str, extra: list[str]) -> tuple[float, float]:
    server = subprocess.Popen(
        ["taskset", "-c", "0", binary, "--listen", "127.0.0.1:0", "--discard", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        match = re.search(r":(\d+)", line)
        if not match:
            raise RuntimeError(f"{binary} did not start: {line!r}")
        before, started = cpu_seconds(server.pid), time.monotonic()
        subprocess.run(
            ["taskset", "-c", "1", "smtp-source", "-d", "-s", "10", "-m", str(MESSAGES), "-l", "1024",
             "-f", "a@x.test", "-t", "b@x.test", f"127.0.0.1:{match.group(1)}"],
            check=True, timeout=300,
        )
        elapsed, used = time.monotonic() - started, cpu_seconds(server.pid) - before
        return used / MESSAGES * 1e6, MESSAGES / elapsed
    finally:
        server.terminate()
        server.wait(20)


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    new, old, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    runs: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
    for _ in range(ROUNDS):
        runs["new"].append(one_run(new, extra))
        runs["old"].append(one_run(old, extra))
    for name, results in runs.items():
        us = [r[0] for r in results]
        print(f"{name}: median {statistics.median(us):.1f} us/msg server CPU, "
              f"{statistics.median(r[1] for r in results):.0f} msg/s; per round {[round(u, 1) for u in us]}")
    ratios = [a[0] / b[0] for a, b in zip(runs["new"], runs["old"])]
    print(f"paired server CPU new/old: median {statistics.median(ratios):.3f}; per round {[round(r, 2) for r in ratios]}")


if __name__ == "__main__":
    main()
