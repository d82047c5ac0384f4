"""The wire trace on the Python side.

The engine traces every command and reply line of a connection, already redacted: an AUTH
initial response shows as ``AUTH PLAIN <redacted>``, a SASL response as ``<SASL response
redacted>``, a message only as ``<message content, N octets>``. A native object given a
trace callable calls it with ``(connection_id, "C" | "S", text)`` per line. This module
has the two callables the package installs:

- :func:`log_line`, one DEBUG record per line on the ``smtpx.wire`` logger, message
  ``conn=ID C: text`` (servers, and clients while that logger is enabled for DEBUG);
- :class:`ClientTrace`, smtplib's ``set_debuglevel`` output on standard error.
"""

from __future__ import annotations

import datetime
import logging
import sys

__all__ = ["WIRE_LOGGER", "ClientTrace", "log_line", "wire_logging"]

#: The logger of the wire trace (aiosmtpd's equivalent is ``mail.log``).
WIRE_LOGGER = logging.getLogger("smtpx.wire")


def wire_logging() -> bool:
    """True when ``smtpx.wire`` takes DEBUG records (read when a server starts or a
    client connects: only then is the trace installed)."""
    return WIRE_LOGGER.isEnabledFor(logging.DEBUG)


def log_line(connection: int, direction: str, text: str) -> None:
    """One traced line as a DEBUG record on ``smtpx.wire``: ``conn=ID C: text``."""
    WIRE_LOGGER.debug("conn=%d %s: %s", connection, direction, text)


class ClientTrace:
    """A client's trace callable: prints what smtplib prints at ``level`` 1 (``send:``,
    ``reply:``, ``reply: retcode``, ``connect:`` lines; level 2 prefixes the time) and,
    with ``log``, also sends each line to ``smtpx.wire``.

    It holds no reference to its client, so that the native session holding it makes no
    reference cycle.
    """

    def __init__(self) -> None:
        self.level = 0
        self.log = False
        self._reply: list[bytes] = []
        self._greeting = False

    def set_level(self, level: int) -> None:
        """smtplib's debug level: 0 off, 1 the lines, 2 the lines with the time."""
        if self.level <= 0 < level:
            self._reply.clear()  # switched on in the middle of a connection
            self._greeting = False
        self.level = level

    @property
    def wanted(self) -> bool:
        """Whether the trace must be installed at all."""
        return self.level > 0 or self.log

    def _print(self, *args: object) -> None:
        if self.level > 1:
            print(datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    def connecting(self, host: str, port: int) -> None:
        """A new connection starts: smtplib's ``connect: to`` line; its first reply is
        the greeting (``connect:`` follows it)."""
        self._reply.clear()
        self._greeting = self.level > 0
        if self.level > 0:
            self._print("connect: to", (host, port), None)

    def __call__(self, connection: int, direction: str, text: str) -> None:
        """One traced line (see the module docs)."""
        if self.log:
            log_line(connection, direction, text)
        if self.level <= 0:
            return
        if direction == "C":
            self._print("send:", repr(text + "\r\n"))
            return
        line = text.encode("utf-8", "surrogateescape") + b"\r\n"
        self._print("reply:", repr(line))
        self._reply.append(line[4:].strip(b" \t\r\n"))
        code = line[:3]
        if code.isdigit() and line[3:4] == b"-":
            return  # a continuation line
        errcode = int(code) if code.isdigit() else -1
        message = b"\n".join(self._reply)
        self._reply.clear()
        self._print("reply: retcode (%s); Msg: %a" % (errcode, message))
        if self._greeting:
            self._greeting = False
            self._print("connect:", repr(message))
