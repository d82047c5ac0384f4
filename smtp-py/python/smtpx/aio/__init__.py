"""asyncio drivers of the engine's sans-IO sessions.

- :class:`SMTP`, :class:`LMTP` and :func:`send` (:mod:`smtpx.aio.client`): a client with
  aiosmtplib's parameter names, return values (``(errors, response)``,
  :class:`SMTPResponse`) and exceptions (:mod:`smtpx.aio.errors`), so that
  ``import smtpx.aio as aiosmtplib`` runs aiosmtplib code::

      async with smtpx.aio.SMTP(hostname="mx.example", port=25, timeout=30) as client:
          await client.sendmail("a@example.com", ["b@example.com"], message_bytes)

- :class:`Server` (:mod:`smtpx.aio.server`): an asyncio server running an aiosmtpd-style
  handler (coroutine or plain ``handle_EHLO``, ``handle_MAIL``, ``handle_RCPT``,
  ``handle_DATA``, ...), with the same :class:`~smtpx.Envelope`, :class:`~smtpx.Session`,
  hook mapping, options and defaults as :class:`~smtpx.Controller`::

      async with smtpx.aio.Server(handler, hostname="127.0.0.1", port=8025) as server:
          ...

aiosmtplib's other public names are here too: :class:`SMTPStatus` and
:data:`SMTPTokenGenerator` (also in :mod:`smtpx.aio.typing`, as in ``aiosmtplib.typing``)
and the SASL encoders of :mod:`smtpx.aio.auth` (``aiosmtplib.auth``).

TLS is rustls (:class:`smtpx._native.TlsSession`), not Python's :mod:`ssl`; every
protocol decision is the Rust engine's.
"""

from smtpx.aio import auth, typing
from smtpx.aio.client import LMTP, SMTP, send
from smtpx.aio.errors import *  # noqa: F403 (aiosmtplib's names, listed in errors.__all__)
from smtpx.aio.errors import __all__ as _error_names
from smtpx.aio.server import Server
from smtpx.aio.typing import SMTPStatus, SMTPTokenGenerator

__all__ = [
    "LMTP",
    "SMTP",
    "SMTPStatus",
    "SMTPTokenGenerator",
    "Server",
    "send",
    *(n for n in _error_names if n != "translate"),
]
