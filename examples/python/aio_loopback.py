#!/usr/bin/env python3
"""smtpx.aio end to end in one asyncio program: an asyncio SMTP server with an
aiosmtpd-style handler, and the asyncio client sending it a message.

    python examples/python/aio_loopback.py [--to ADDR...]

Prints each message the handler received. Exit status 0 when every recipient was
accepted, 1 otherwise. (smtpx.aio speaks plain text only for now.)
"""

from __future__ import annotations

import argparse
import asyncio
import email.message
import sys
from typing import Any

import smtpx
import smtpx.aio


class PrintingHandler:
    """Refuses recipients at invalid.example; prints every message."""

    async def handle_RCPT(
        self, server: Any, session: smtpx.Session, envelope: smtpx.Envelope, address: str, options: list[str]
    ) -> str:
        if address.endswith("@invalid.example"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: smtpx.Session, envelope: smtpx.Envelope) -> str:
        content = envelope.content or b""
        print(f"received from {envelope.mail_from} for {', '.join(envelope.rcpt_tos)}: {len(content)} bytes")
        return "250 2.0.0 Ok: queued"


async def main(recipients: list[str]) -> int:
    async with smtpx.aio.Server(PrintingHandler(), hostname="127.0.0.1", port=0) as server:
        host, port = server.address
        message = email.message.EmailMessage()
        message["From"] = "sender@example.org"
        message["To"] = ", ".join(recipients)
        message["Subject"] = "smtpx.aio loopback"
        message.set_content("Sent and received by asyncio.\n")
        try:
            refused, _ = await smtpx.aio.send(message, hostname=host, port=port, timeout=10)
        except smtpx.aio.SMTPRecipientsRefused as e:
            refused = {r.recipient: smtpx.aio.SMTPResponse(r.code, r.message) for r in e.recipients}
        for address, response in refused.items():
            print(f"{address}: refused {response.code} {response.message}")
        return 1 if refused else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="smtpx.aio client and server in one program.")
    parser.add_argument("--to", nargs="+", default=["someone@example.net"], help="recipients")
    sys.exit(asyncio.run(main(parser.parse_args().to)))
