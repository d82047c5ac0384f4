#!/usr/bin/env python3
"""Sends many messages through a connection pool shared by threads, and prints how each
went: ``N ok``, or the refused recipients.

    python examples/python/pool_send.py HOST:PORT --from ADDR --to ADDR [--count N]
        [--threads T] [--pool P]

Exits 0 when every message was accepted for every recipient, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor

from smtpx.pool import SMTPPool


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Send messages through an smtpx pool.")
    parser.add_argument("server", help="HOST:PORT")
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", action="append", required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pool", type=int, default=4)
    args = parser.parse_args(argv)

    host, _, port = args.server.rpartition(":")
    failures = 0
    with SMTPPool(host, int(port), max_size=args.pool) as pool, ThreadPoolExecutor(args.threads) as workers:
        sends = [
            workers.submit(pool.send, args.sender, args.to, f"Subject: message {i}\r\n\r\nHello.\r\n")
            for i in range(args.count)
        ]
        for i, send in enumerate(sends):
            result = send.result()
            refused = [r.address for r in result.recipients if not r.accepted]
            if result.ok and not refused:
                print(f"{i} ok")
            else:
                failures += 1
                print(f"{i} refused: {', '.join(refused) or result.data}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
