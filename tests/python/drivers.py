"""One face for the blocking and the asyncio drivers, so that a behaviour test is written
once and runs against both (test_behaviour.py).

- :func:`open_client` gives ``smtpx.SMTP`` as it is, or ``smtpx.aio.SMTP`` behind a
  facade whose methods run the coroutines on a private event loop thread and wait for
  them (bounded).
- :func:`serving` runs a handler on ``smtpx.Controller`` (threads) or on
  ``smtpx.aio.Server`` (an event loop on a thread) and yields ``(host, port)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import pathlib
import threading
from typing import Any, Iterator

import smtpx
import smtpx.aio

DRIVERS = ["blocking", "asyncio"]

# Every call through the facade is bounded: a hang fails the test instead of stalling it.
CALL_LIMIT = 30.0


class LoopThread:
    """An asyncio event loop running on its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, limit: float = CALL_LIMIT) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(limit)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive(), "the test event loop did not stop"
        self.loop.close()


def _as_smtplib(value: Any) -> Any:
    """aiosmtplib's conventions (``(errors, response)``, SMTPResponse) as smtplib's, so
    that one behaviour test reads both clients the same way."""
    if isinstance(value, smtpx.aio.SMTPResponse):
        return (value.code, value.message.encode())
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], dict) and isinstance(value[1], str):
        return {address: (r.code, r.message.encode()) for address, r in value[0].items()}
    return value


class AsyncClientFacade:
    """``smtpx.aio.SMTP`` with blocking methods: ``facade.sendmail(...)`` runs
    ``await client.sendmail(...)`` on the loop thread, its aiosmtplib-style outcome read
    the smtplib way."""

    def __init__(self, runner: LoopThread, client: smtpx.aio.SMTP) -> None:
        self._runner = runner
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return _as_smtplib(self._runner.run(attribute(*args, **kwargs)))
            except smtpx.aio.SMTPRecipientsRefused as refused:
                raise smtpx.SmtpRecipientsRefused(
                    {r.recipient: (r.code, r.message.encode()) for r in refused.recipients}
                ) from None

        return call

    def __enter__(self) -> AsyncClientFacade:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._client.is_connected:
            try:
                self.quit()
            finally:
                self._client.close()


@contextlib.contextmanager
def open_client(
    driver: str,
    host: str,
    port: int,
    *,
    lmtp: bool = False,
    starttls_ca: pathlib.Path | None = None,
    **options: Any,
) -> Iterator[Any]:
    """A connected client of either driver (an LMTP one with ``lmtp``); ``options`` use
    the names both share (``timeout``, ``local_hostname``). With ``starttls_ca`` the
    connection is upgraded with STARTTLS, trusting that CA file, before it is handed
    out: ``starttls()`` for the blocking client, ``start_tls=True`` for the asyncio one."""
    if driver == "blocking":
        with (smtpx.LMTP if lmtp else smtpx.SMTP)(host, port, **options) as client:
            if starttls_ca is not None:
                client.starttls(cafile=str(starttls_ca))
            yield client
        return
    runner = LoopThread()
    try:
        kind = smtpx.aio.LMTP if lmtp else smtpx.aio.SMTP
        client = kind(host, port, start_tls=starttls_ca is not None, cert_bundle=starttls_ca, **options)
        runner.run(client.connect())
        with AsyncClientFacade(runner, client) as facade:
            yield facade
    finally:
        runner.close()


@contextlib.contextmanager
def serving(driver: str, handler: Any, **options: Any) -> Iterator[tuple[str, int]]:
    """``handler`` served on 127.0.0.1 (a free port) by either server; ``options`` use the
    names both share (``data_size_limit``, ``authenticator``, ``auth_require_tls``,
    ``timeout``, ``server_hostname``, ...)."""
    if driver == "blocking":
        with smtpx.Controller(handler, hostname="127.0.0.1", port=0, **options) as controller:
            yield ("127.0.0.1", controller.port)
        return
    runner = LoopThread()
    try:
        server = smtpx.aio.Server(handler, hostname="127.0.0.1", port=0, **options)
        runner.run(server.start())
        try:
            yield server.address
        finally:
            runner.run(server.stop())
    finally:
        runner.close()
