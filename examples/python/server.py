#!/usr/bin/env python3
"""An SMTP server with smtpx: Maildir delivery, or a Python handler that prints.

    python examples/python/server.py [--listen ADDR] [--maildir DIR | --print]
        [--hostname NAME] [--tls-cert PEM --tls-key PEM] [--auth USER:PASS]
        [--proxy-trusted CIDR]...

``--proxy-trusted`` puts the server behind a load balancer speaking the PROXY protocol
(HAProxy's send-proxy / send-proxy-v2) from that network: each connection begins with
its header, and ``session.peer`` is the client's address from it (``--print`` shows it).

Prints one line ``listening on ADDR`` when ready and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

import smtpx


class PrintHandler:
    """An aiosmtpd-style handler: prints who sent what to whom."""

    async def handle_RCPT(self, server: Any, session: smtpx.Session, envelope: smtpx.Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: smtpx.Session, envelope: smtpx.Envelope) -> str:
        size = len(envelope.content or b"")
        client = session.peer[0]
        print(f"from {envelope.mail_from} ({client}) to {', '.join(envelope.rcpt_tos)}: {size} bytes", flush=True)
        return "250 OK: message accepted"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run an SMTP server with smtpx.")
    parser.add_argument("--listen", default="127.0.0.1:2525", help="ADDR:PORT (port 0 picks one)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--maildir", default="./maildir", help="deliver into this Maildir")
    what.add_argument("--print", action="store_true", help="print each message instead")
    parser.add_argument("--hostname", default=None, help="the server's name")
    parser.add_argument("--tls-cert", help="PEM certificate (enables STARTTLS)")
    parser.add_argument("--tls-key", help="PEM private key")
    parser.add_argument("--auth", action="append", default=[],
                        help="USER:PASS (repeatable; messages are then printed: the Maildir handler takes no authenticator)")
    parser.add_argument("--proxy-trusted", action="append", default=[], metavar="CIDR",
                        help="expect a PROXY protocol header from this network (repeatable)")
    args = parser.parse_args(argv)

    host, _, port = args.listen.rpartition(":")
    users = dict(entry.partition(":")[::2] for entry in args.auth)

    def authenticator(server: Any, session: smtpx.Session, envelope: smtpx.Envelope,
                      mechanism: str, auth_data: smtpx.LoginPassword) -> bool:
        return users.get(auth_data.login.decode()) == auth_data.password.decode()

    handler: Any = PrintHandler() if args.print or users else smtpx.Maildir(args.maildir)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert and args.tls_key else None
    controller = smtpx.Controller(
        handler, host, int(port), server_hostname=args.hostname, tls_context=tls,
        authenticator=authenticator if users else None,
        proxy_protocol_timeout=10.0 if args.proxy_trusted else None,
        proxy_trusted=args.proxy_trusted or ("127.0.0.0/8", "::1"),
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    print(f"listening on {controller.hostname}:{controller.port}", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
