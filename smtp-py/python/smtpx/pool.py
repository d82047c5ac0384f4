"""Client connection pools: :class:`SMTPPool` for threads and :class:`AsyncSMTPPool` for
asyncio tasks. Both follow the core's pool policy (``PoolCore``; :class:`SMTPPool` is the
core's blocking pool, ``smtpx._native.Pool``, :class:`AsyncSMTPPool` drives
``smtpx._native.PoolCore`` from asyncio): a bounded
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
    """A pool of :class:`smtpx.aio.SMTP` connections for asyncio tasks: the same arguments
    and results as :class:`SMTPPool`, awaited, on the event loop itself (no thread per
    send: each connection is the engine's client runner on asyncio, as
    :class:`smtpx.aio.SMTP` runs it).

    The policy is the core's (:class:`smtpx._native.PoolCore`, the ``PoolCore`` of the
    Rust and C pools): at most ``max_size`` connections, an idle one reused (most recent
    first) and checked with NOOP when idle longer than ``check_after`` seconds, closed
    when idle longer than ``idle_timeout`` or after ``max_messages`` messages; a task that
    finds every connection busy waits up to ``checkout_timeout`` seconds. Any number of
    tasks may share one pool (of one event loop).

    Errors are :mod:`smtpx.aio`'s (aiosmtplib's names, subclasses of smtpx's): a
    connection that cannot be made raises ``SMTPConnectError``; waiting past
    ``checkout_timeout`` raises ``SMTPTimeoutError``. The certificate is checked against
    ``host`` (a different ``server_name`` is refused).
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
        from smtpx import aio

        if server_name is not None and server_name != host:
            raise ValueError("AsyncSMTPPool checks the certificate against host; connect by that name")

        modes: dict[str, dict[str, Any]] = {
            "none": dict(use_tls=False, start_tls=False),
            "starttls": dict(use_tls=False, start_tls=None),
            "starttls-required": dict(use_tls=False, start_tls=True),
            "implicit": dict(use_tls=True, start_tls=None),
        }
        if tls not in modes:
            raise ValueError(f"tls must be one of {sorted(modes)}, not {tls!r}")
        self._client_class = aio.LMTP if lmtp else aio.SMTP
        self._client_options: dict[str, Any] = dict(
            hostname=host,
            port=port,
            local_hostname=local_hostname,
            timeout=timeout,
            username=username,
            password=password,
            cert_bundle=cafile,
            tls_context=context,
            **modes[tls],
        )
        self._core = _native.PoolCore(
            max_size=max_size,
            idle_timeout=idle_timeout,
            max_messages=max_messages,
            check_after=check_after,
            checkout_timeout=checkout_timeout,
        )
        # Woken when a slot or an idle connection becomes free (made on first use, on
        # the loop of the tasks that use the pool).
        self._freed: asyncio.Condition | None = None
        self._waiting = 0  # tasks waiting on _freed
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()

    def _condition(self) -> asyncio.Condition:
        if self._freed is None:
            self._freed = asyncio.Condition()
        return self._freed

    async def _notify(self) -> None:
        """Wakes a task waiting for a connection (after a checkin or discard)."""
        if not self._waiting:
            return
        freed = self._condition()
        async with freed:
            freed.notify()

    def _close_later(self, clients: Sequence[Any], quit: bool) -> None:
        """Closes ``clients`` (with QUIT when ``quit``) in the background: a sender does
        not wait for another connection's goodbye."""
        for client in clients:
            task = asyncio.get_running_loop().create_task(self._close_one(client, quit))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_one(client: Any, quit: bool) -> None:
        try:
            if quit and client.is_connected:
                await client.quit()
        except Exception:
            pass  # a goodbye that fails changes nothing: the connection is closed below
        finally:
            client.close()

    async def _lease(self) -> tuple[Any, Any]:
        """A lease and its connected client, as the core says: reuse (after NOOP when
        due), connect, or wait for a free slot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._core.checkout_timeout
        freed = self._condition()
        while True:
            # The decision and the wait are made under the condition's lock, so that a
            # connection given back in between wakes this task (no lost wake-up).
            async with freed:
                now = loop.time()
                self._close_later(self._core.expired(now), quit=True)
                what, lease, check = self._core.checkout(now)
                if what == "wait":
                    if self._closed:
                        from smtpx.aio.errors import SMTPConnectError

                        raise SMTPConnectError("the pool is closed")
                    left = deadline - now
                    if left <= 0:
                        from smtpx.aio.errors import SMTPTimeoutError

                        raise SMTPTimeoutError(
                            f"no pooled connection came free within {self._core.checkout_timeout} seconds"
                        )
                    self._waiting += 1
                    try:
                        await asyncio.wait_for(freed.wait(), left)
                    except asyncio.TimeoutError:
                        pass
                    finally:
                        self._waiting -= 1
                    continue
            if what == "reuse":
                assert lease is not None
                client = lease.conn
                if not check:
                    return lease, client
                try:
                    usable = (await client.noop()).code == 250
                except BaseException as error:
                    self._core.discard(lease)
                    self._close_later([client], quit=False)
                    await self._notify()
                    if not isinstance(error, Exception):
                        raise  # cancelled: the slot is free again
                    continue
                if usable:
                    return lease, client
                self._core.discard(lease)
                self._close_later([client], quit=True)
                await self._notify()
                continue
            if what == "connect":
                assert lease is not None
                client = self._client_class(**self._client_options)
                try:
                    await client.connect()
                except BaseException:
                    self._core.discard(lease)
                    client.close()
                    await self._notify()
                    raise
                lease.put(client)
                return lease, client

    async def send(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: Message,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> SendResult:
        """Sends one message over a pooled connection and returns its result (a refused
        recipient is in it, not an error); raises when no connection could carry it."""
        data = msg.encode("utf-8") if isinstance(msg, str) else bytes(msg)
        to = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        lease, client = await self._lease()
        sent = 0
        try:
            result: SendResult = await client.send(
                data, sender=from_addr, recipients=to, mail_options=mail_options, rcpt_options=rcpt_options
            )
            sent = 1
            return result
        finally:
            # Healthy when it is still open (a refusal keeps it; a lost or timed-out one
            # is closed by the client).
            retired = self._core.checkin(lease, client.is_connected, sent, asyncio.get_running_loop().time())
            if retired is not None:
                self._close_later([retired], quit=client.is_connected)
            await self._notify()

    def status(self) -> tuple[int, int]:
        """``(open, idle)`` connections now."""
        return self._core.status()

    async def reap(self) -> None:
        """Closes the connections idle for longer than ``idle_timeout`` (senders do this
        as they go; call it for a pool that sits unused)."""
        expired = self._core.expired(asyncio.get_running_loop().time())
        await asyncio.gather(*(self._close_one(c, True) for c in expired))
        await self._notify()

    async def close(self) -> None:
        """QUIT to the idle connections now, to the others when their message is done;
        no new connection is opened; a task still waiting for one gets
        ``SMTPConnectError``."""
        self._closed = True
        idle = self._core.close()
        await asyncio.gather(*(self._close_one(c, True) for c in idle))
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=10)
        freed = self._condition()
        async with freed:
            freed.notify_all()

    async def __aenter__(self) -> AsyncSMTPPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
