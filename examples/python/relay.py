#!/usr/bin/env python3
"""A before-queue relay with smtpx: every transaction forwarded to a next hop as it
arrives, each client answered with the next hop's replies.

    python examples/python/relay.py --relay HOST:PORT [--listen ADDR] [--lmtp]
        [--starttls] [--auth USER:PASS] [--pool N]

Prints one line ``listening on ADDR`` when ready and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import smtpx
from smtpx.relay import RelayHandler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Relay mail to a next hop with smtpx.")
    parser.add_argument("--relay", required=True, help="the next hop, HOST:PORT")
    parser.add_argument("--listen", default="127.0.0.1:2525", help="ADDR:PORT (port 0 picks one)")
    parser.add_argument("--lmtp", action="store_true", help="speak LMTP to the next hop")
    parser.add_argument("--starttls", action="store_true", help="require STARTTLS to the next hop")
    parser.add_argument("--auth", help="USER:PASS to log in to the next hop")
    parser.add_argument("--pool", type=int, default=8, help="next-hop connections at most")
    args = parser.parse_args(argv)

    next_host, _, next_port = args.relay.rpartition(":")
    user, _, password = (args.auth or "").partition(":")
    relay = RelayHandler(
        next_host,
        int(next_port),
        lmtp=args.lmtp,
        tls="starttls-required" if args.starttls else "none",
        username=user or None,
        password=password if args.auth else None,
        max_size=args.pool,
    )
    host, _, port = args.listen.rpartition(":")
    controller = smtpx.Controller(relay, host, int(port))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    print(f"listening on {controller.hostname}:{controller.port}", flush=True)
    stop.wait()
    controller.stop()
    relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
