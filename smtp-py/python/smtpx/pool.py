"""Client connection pools: :class:`SMTPPool` for threads and :class:`AsyncSMTPPool` for
asyncio tasks. Both are thin over the core's pool (``smtpx._native.Pool``): a bounded
number of connections to one server, reused across messages, checked with NOOP before
reuse once idle longer than ``check_after`` seconds, closed when idle longer than
``idle_timeout`` or after ``max_messages`` messages; each :meth:`send` gives that
message's own :class:`~smtpx.SendResult` (a refused recipient is in it, not an error).

>>> pool = SMTPPool("mx.example.com", 25, max_size=8)        # doctest: +SKIP
>>> result = pool.send("a@example.org", ["b@example.net"], b"Subject: hi\\r\\n\\r\\nHello.\\r\\n")  # doctest: +SKIP
>>> pool.close()                                              # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Sequence, Union

from smtpx import _native
from smtpx.common import SendResult, send_result, tls_arguments

__all__ = ["AsyncSMTPPool", "SMTPPool"]

Message = Union[bytes, bytearray, str]


class SMTPPool:
    """A pool of at most ``max_size`` connections to ``host``:``port``, safe to share
    between threads; every wait on the network releases the interpreter.

    ``tls`` is ``"none"``, ``"starttls"`` (when offered), ``"starttls-required"`` or
    ``"implicit"``; ``context`` / ``cafile`` say which certificates to trust, as for
    :class:`smtpx.SMTP`. ``timeout`` (seconds) bounds connecting and each reply.
    ``username``/``password`` log each connection in. ``lmtp`` speaks LMTP.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        local_hostname: str = "localhost",
        tls: str = "none",
        server_name: str | None = None,
        context: ssl.SSLContext | None = None,
        cafile: str | None = None,
        timeout: float | None = None,
        lmtp: bool = False,
        username: str | None = None,
        password: str | None = None,
        max_size: int = 8,
        idle_timeout: float = 60.0,
        max_messages: int = 0,
        check_after: float = 1.0,
        checkout_timeout: float = 30.0,
    ) -> None:
        tls_kw: dict[str, Any] = tls_arguments(context, cafile) if tls != "none" else {}
        self._pool = _native.Pool(
            host,
            port,
            helo_name=local_hostname,
            tls=tls,
            server_name=server_name,
            timeout=timeout,
            lmtp=lmtp,
            username=username,
            password=password,
            max_size=max_size,
            idle_timeout=idle_timeout,
            max_messages=max_messages,
            check_after=check_after,
            checkout_timeout=checkout_timeout,
            **tls_kw,
        )

    def send(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: Message,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> SendResult:
        """Sends one message over a pooled connection and returns its result. Raises
        the smtplib-compatible exceptions of :class:`smtpx.SMTP` when no connection
        could carry it (connect failures, a lost connection, a timeout)."""
        data = msg.encode("utf-8") if isinstance(msg, str) else bytes(msg)
        to = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        raw = self._pool.send(from_addr, to, data, list(mail_options), list(rcpt_options))
        return send_result(raw)

    def status(self) -> tuple[int, int]:
        """``(open, idle)`` connections now."""
        return self._pool.status()

    def reap(self) -> None:
        """Closes the connections idle for longer than ``idle_timeout`` (senders do this
        as they go; call it for a pool that sits unused)."""
        self._pool.reap()

    def close(self) -> None:
        """QUIT to the idle connections now, to the others when their message is done;
        no new connection is opened."""
        self._pool.close()

    def __enter__(self) -> SMTPPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSMTPPool:
    """:class:`SMTPPool` for asyncio: the same arguments and results, awaited. Each
    :meth:`send` runs on the loop's default executor (the interpreter is released while
    it waits on the network), so any number of tasks may share one pool without
    blocking the event loop; the pool bounds the connections, the executor the number of
    sends in flight."""

    def __init__(self, host: str, port: int = 25, **options: Any) -> None:
        self._pool = SMTPPool(host, port, **options)

    async def send(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: Message,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> SendResult:
        """Sends one message over a pooled connection and returns its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self._pool.send, from_addr, to_addrs, msg, mail_options, rcpt_options
        )

    def status(self) -> tuple[int, int]:
        """``(open, idle)`` connections now."""
        return self._pool.status()

    async def close(self) -> None:
        """Closes the pool (see :meth:`SMTPPool.close`)."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.close)

    async def __aenter__(self) -> AsyncSMTPPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
