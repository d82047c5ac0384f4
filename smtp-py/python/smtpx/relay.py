""":class:`RelayHandler`: an aiosmtpd-style handler for :class:`smtpx.Controller` and
:class:`smtpx.aio.Server` that forwards each transaction to a next hop (SMTP or LMTP)
through a pool of connections, answering each client with the next hop's replies: MAIL
and every RCPT get the next hop's reply to them, the message's final reply is the next
hop's (under LMTP on the front side, one per recipient), and a next hop that is down or
slow gives 451 with an enhanced code, never 250. The logic is the core's
(``smtp_core::server::relay``); the hooks only hand it what the server received.

Two ways to run it:

- Under smtpx's own :class:`smtpx.Controller` or :class:`smtpx.aio.Server`, the handler is
  the core's relay run inside the native connection (``native_relay``): the content is
  streamed to the next hop as it arrives, in the pieces the connection receives, with at
  most the core's bounded number of pieces in flight (the connection stops reading while
  the next hop catches up), never held whole; the aiosmtpd hooks below are not called.
- Under aiosmtpd's own ``Controller`` (or any server calling aiosmtpd's hooks), the
  ``handle_*`` methods run: the content reaches ``handle_DATA`` whole (aiosmtpd's model)
  and goes to the next hop in 64 KiB pieces.

Either way the content is re-canonicalised (no lone CR or LF leaves), and the relay's
waits on the next hop run on threads (the server's hook threads, or the event loop's
default executor), so a slow next hop never blocks other connections.

>>> from smtpx import Controller                                      # doctest: +SKIP
>>> relay = RelayHandler("mx.internal", 25, tls="starttls-required")  # doctest: +SKIP
>>> Controller(relay, hostname="127.0.0.1", port=2525).start()        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from smtpx import _native
from smtpx.common import tls_arguments

__all__ = ["RelayHandler"]


class RelayHandler:
    """Relays every transaction to ``host``:``port``. ``lmtp`` speaks LMTP to it; ``tls``
    (``"none"``, ``"starttls"``, ``"starttls-required"``, ``"implicit"``), ``context`` /
    ``cafile``, ``username``/``password`` and ``timeout`` (seconds, per reply) are the
    next-hop connections' settings; ``max_size`` bounds them."""

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        local_hostname: str = "localhost",
        lmtp: bool = False,
        tls: str = "none",
        server_name: str | None = None,
        context: ssl.SSLContext | None = None,
        cafile: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = None,
        max_size: int = 8,
    ) -> None:
        tls_kw: dict[str, Any] = tls_arguments(context, cafile) if tls != "none" else {}
        #: The core's relay, which :class:`smtpx.aio.Server` (and so
        #: :class:`smtpx.Controller`) runs inside each connection.
        self.native_relay = self._relay = _native.Relay(
            host,
            port,
            helo_name=local_hostname,
            lmtp=lmtp,
            tls=tls,
            server_name=server_name,
            username=username,
            password=password,
            timeout=timeout,
            max_size=max_size,
            **tls_kw,
        )

    def _session(self, session: Any) -> _native.RelaySession:
        """The relay session of this client connection (kept on the server's session
        object, so that it lives and goes exactly as long as the connection)."""
        relay: _native.RelaySession | None = getattr(session, "_smtpx_relay", None)
        if relay is None:
            relay = self._relay.session()
            session._smtpx_relay = relay
        return relay

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        relay = self._session(session)
        status: str = await asyncio.get_running_loop().run_in_executor(
            None, relay.mail, address, list(mail_options)
        )
        if status.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return status

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        relay = self._session(session)
        status: str = await asyncio.get_running_loop().run_in_executor(
            None, relay.rcpt, address, list(rcpt_options)
        )
        if status.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return status

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str | list[str]:
        relay = self._session(session)
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        lmtp = self._front_lmtp(server)
        lines: list[str] = await asyncio.get_running_loop().run_in_executor(
            None, relay.data, bytes(content), lmtp
        )
        return lines if lmtp else lines[0]

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> None:
        relay = self._session(session)
        await asyncio.get_running_loop().run_in_executor(None, relay.reset)

    def close(self) -> None:
        """Closes the next-hop connections (the server's own stop does not)."""
        self._relay.close()

    @staticmethod
    def _front_lmtp(server: Any) -> bool:
        """True when the server this handler runs under speaks LMTP (``server`` is the
        :class:`smtpx.aio.Server`, or the :class:`smtpx.ServerInfo` of a Controller)."""
        return bool(getattr(getattr(server, "controller", server), "lmtp", False))
