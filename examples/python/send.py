#!/usr/bin/env python3
"""Send a message with smtpx, like the Rust example smtp-send.

    python examples/python/send.py --server HOST:PORT --from ADDR --to ADDR... \\
        [--starttls | --tls] [--insecure] [--auth USER:PASS] [--allow-insecure-auth] \
        [--helo NAME] [--count N] [FILE|-]

(As --to takes several addresses, put FILE before the options or after ``--``.)
Sends the message (from FILE, or stdin) N times over one connection and prints each
recipient's result and the final reply. Exit status: 0 all accepted, 1 some refused,
2 error.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from typing import BinaryIO

import smtpx


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send a message with smtpx.")
    parser.add_argument("--server", required=True, help="HOST:PORT")
    parser.add_argument("--from", dest="sender", required=True, help="envelope sender")
    parser.add_argument("--to", nargs="+", required=True, help="envelope recipients")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS (required)")
    tls.add_argument("--tls", action="store_true", help="implicit TLS")
    parser.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument("--auth", help="USER:PASS")
    parser.add_argument(
        "--allow-insecure-auth",
        action="store_true",
        help="let --auth send the password without TLS (in clear; test servers only)",
    )
    parser.add_argument("--helo", help="name to greet with")
    parser.add_argument("--count", type=int, default=1, help="send the message N times")
    parser.add_argument("file", nargs="?", default="-", help="the message (default: stdin)")
    return parser.parse_args(argv)


def read_message(path: str) -> bytes:
    source: BinaryIO
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as source:
        return source.read()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    host, _, port_text = args.server.rpartition(":")
    context: ssl.SSLContext | None = None
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    message = read_message(args.file)
    some_refused = False
    try:
        client: smtpx.SMTP
        if args.tls:
            client = smtpx.SMTP_SSL(host, int(port_text), local_hostname=args.helo, timeout=60, context=context)
        else:
            client = smtpx.SMTP(host, int(port_text), local_hostname=args.helo, timeout=60)
        with client:
            if args.starttls:
                client.starttls(context=context)
            if args.auth:
                user, _, password = args.auth.partition(":")
                client.allow_insecure_auth = args.allow_insecure_auth
                client.login(user, password)
            for _ in range(args.count):
                result = client.send(message, sender=args.sender, recipients=args.to)
                for rcpt in result.recipients:
                    state = "accepted" if rcpt.accepted else "refused"
                    print(f"{rcpt.address}: {state} {rcpt.code} {rcpt.message}")
                final = result.data
                print(f"final: {final.code} {final.text}" if final else "final: message not sent")
                some_refused |= bool(result.refused)
    except (smtpx.SmtpError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if some_refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
