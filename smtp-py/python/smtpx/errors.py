"""The exceptions smtpx raises.

Each one subclasses the matching :mod:`smtplib` exception, so existing code that
catches ``smtplib.SMTPException`` (or a more specific smtplib class) keeps working, and
takes the same constructor arguments and attributes as its smtplib base
(``smtp_code``, ``smtp_error``, ``sender``, ``recipients``).

Hierarchy::

    smtplib.SMTPException (an OSError)
     └── SmtpError
          ├── SmtpProtocolError
          ├── SmtpConnectError         (also smtplib.SMTPConnectError, ConnectionError)
          │    └── SmtpConnectionRefused (also ConnectionRefusedError)
          ├── SmtpTimeoutError         (also TimeoutError)
          ├── SmtpTlsError             (also ssl.SSLError)
          │    └── SmtpCertificateError (also ssl.SSLCertVerificationError)
          ├── SmtpDisconnected         (also smtplib.SMTPServerDisconnected)
          │    └── SmtpServerClosed    (a 421; also SmtpReplyError; in sendmail also
          │                             SmtpSenderRefused, SmtpRecipientsRefused or
          │                             SmtpDataError by its phase, *Closing)
          ├── SmtpNotSupportedError    (also smtplib.SMTPNotSupportedError)
          ├── SmtpInsecureAuthError
          ├── SmtpRecipientsRefused    (also smtplib.SMTPRecipientsRefused)
          └── SmtpReplyError           (also smtplib.SMTPResponseException)
               ├── SmtpHeloError       (also smtplib.SMTPHeloError)
               ├── SmtpSenderRefused   (also smtplib.SMTPSenderRefused)
               ├── SmtpDataError       (also smtplib.SMTPDataError)
               └── SmtpAuthError       (also smtplib.SMTPAuthenticationError)
"""

from __future__ import annotations

import smtplib
import ssl

__all__ = [
    "SmtpAuthError",
    "SmtpCertificateError",
    "SmtpConnectionRefused",
    "SmtpHeloError",
    "SmtpServerClosed",
    "SmtpSenderRefusedClosing",
    "SmtpRecipientsRefusedClosing",
    "SmtpDataErrorClosing",
    "SmtpAuthErrorClosing",
    "SmtpConnectError",
    "SmtpDataError",
    "SmtpDisconnected",
    "SmtpError",
    "SmtpInsecureAuthError",
    "SmtpNotSupportedError",
    "SmtpProtocolError",
    "SmtpRecipientsRefused",
    "SmtpReplyError",
    "SmtpSenderRefused",
    "SmtpTimeoutError",
    "SmtpTlsError",
]


class SmtpError(smtplib.SMTPException):
    """Base class of every exception smtpx raises."""


class SmtpProtocolError(SmtpError):
    """The peer broke the SMTP protocol (for example, a malformed or overlong reply)."""


class SmtpConnectError(SmtpError, smtplib.SMTPConnectError, ConnectionError):
    """The connection to the server could not be made or was refused.

    When the server refused it in its greeting, ``args`` is ``(code, message)`` as for
    smtplib's ``SMTPConnectError``; ``smtp_code`` and ``smtp_error`` give them (None
    otherwise).
    """

    def __init__(self, *args: object) -> None:
        OSError.__init__(self, *args)
        code = args[0] if len(args) == 2 else None
        if isinstance(code, int) and not isinstance(self, ConnectionRefusedError):
            self.smtp_code: int | None = code  # type: ignore[assignment]
            self.smtp_error: bytes | None = args[1]  # type: ignore[assignment]
        else:
            self.smtp_code = None
            self.smtp_error = None


class SmtpConnectionRefused(SmtpConnectError, ConnectionRefusedError):
    """The server refused the TCP connection: a ``ConnectionRefusedError`` with its
    ``errno``, as smtplib raises it, that is also an :class:`SmtpConnectError` (with no
    ``smtp_code``)."""


class SmtpTimeoutError(SmtpError, TimeoutError):
    """A deadline passed while waiting for the peer."""


class SmtpTlsError(SmtpError, ssl.SSLError):
    """TLS failed: the handshake, or the server's certificate was not trusted."""


class SmtpCertificateError(SmtpTlsError, ssl.SSLCertVerificationError):
    """The server's certificate was not trusted (an ``ssl.SSLCertVerificationError``, as
    Python's ssl raises it under smtplib)."""


class SmtpDisconnected(SmtpError, smtplib.SMTPServerDisconnected):
    """The connection closed unexpectedly, or a command was issued without one."""


class SmtpNotSupportedError(SmtpError, smtplib.SMTPNotSupportedError):
    """The command or option is not supported by the server."""


class SmtpInsecureAuthError(SmtpError):
    """Credentials were not sent because the connection is not encrypted.

    smtplib would send them in clear (merely base64-encoded); smtpx refuses before
    writing anything of them. Use ``starttls()`` (or implicit TLS) first, or pass
    ``allow_insecure_auth=True`` for a server on a trusted network. The connection stays
    usable after an explicit ``login()``.
    """


class SmtpRecipientsRefused(SmtpError, smtplib.SMTPRecipientsRefused):
    """Every recipient was refused.

    ``recipients`` maps each address to its ``(code, message)`` reply, as in smtplib.
    (When only some are refused, the send succeeds and reports them per recipient.)
    """


class SmtpReplyError(SmtpError, smtplib.SMTPResponseException):
    """The server answered with an error reply.

    ``smtp_code`` is the reply code and ``smtp_error`` the reply text, as in smtplib.
    """


class SmtpServerClosed(SmtpDisconnected, SmtpReplyError):
    """The server closed the session with a 421 reply: ``smtp_code`` (421) and
    ``smtp_error`` are that reply's, as in smtplib's ``SMTPResponseException``.
    ``phase`` says what the reply answered (``"MAIL"``, ``"RCPT"``, ``"DATA"``, ``"after
    the end of data"``, ``"command"``, ...; None when unknown). ``sendmail`` and
    ``send_message`` raise a 421 as the class of its phase instead, as smtplib does
    (see :func:`closed_in_phase`)."""

    def __init__(self, code: int, msg: bytes | str, phase: str | None = None) -> None:
        smtplib.SMTPResponseException.__init__(self, code, msg)
        self.phase = phase

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.smtp_code, self.smtp_error, self.phase))


class SmtpHeloError(SmtpReplyError, smtplib.SMTPHeloError):
    """The server refused EHLO and then HELO (or LHLO)."""


class SmtpSenderRefused(SmtpReplyError, smtplib.SMTPSenderRefused):
    """The server refused the sender (MAIL FROM); ``sender`` is the address."""


class SmtpDataError(SmtpReplyError, smtplib.SMTPDataError):
    """The server refused the message data."""


class SmtpAuthError(SmtpReplyError, smtplib.SMTPAuthenticationError):
    """Authentication failed: the server refused the credentials or the mechanism."""


# A 421 during a transaction, raised as smtplib raises it in that phase (the class of the
# phase), and still an SmtpServerClosed, so that code that caught a closing server keeps
# catching it. smtplib closes the connection in each case; so does the engine.


class SmtpSenderRefusedClosing(SmtpSenderRefused, SmtpServerClosed):
    """A 421 in reply to MAIL FROM: smtplib's ``SMTPSenderRefused`` (``smtp_code`` 421,
    ``sender``), and an :class:`SmtpServerClosed`: the connection is closed."""

    def __init__(self, code: int, msg: bytes, sender: str, phase: str | None = "MAIL") -> None:
        smtplib.SMTPSenderRefused.__init__(self, code, msg, sender)
        self.phase = phase

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.smtp_code, self.smtp_error, self.sender, self.phase))


class SmtpRecipientsRefusedClosing(SmtpRecipientsRefused, SmtpServerClosed):  # type: ignore[misc]
    """A 421 in reply to RCPT TO: smtplib's ``SMTPRecipientsRefused`` (``recipients``
    maps each recipient to the 421), and an :class:`SmtpServerClosed` (``smtp_code``
    421): the connection is closed and the message went to nobody."""

    def __init__(
        self,
        recipients: dict[str, tuple[int, bytes]],
        code: int = 421,
        msg: bytes = b"",
        phase: str | None = "RCPT",
    ) -> None:
        smtplib.SMTPRecipientsRefused.__init__(self, recipients)
        self.smtp_code = code
        self.smtp_error = msg
        self.phase = phase

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.recipients, self.smtp_code, self.smtp_error, self.phase))


class SmtpDataErrorClosing(SmtpDataError, SmtpServerClosed):
    """A 421 in reply to DATA or to the message: smtplib's ``SMTPDataError``
    (``smtp_code`` 421), and an :class:`SmtpServerClosed`: the connection is closed."""

    def __init__(self, code: int, msg: bytes, phase: str | None = "DATA") -> None:
        smtplib.SMTPResponseException.__init__(self, code, msg)
        self.phase = phase


class SmtpAuthErrorClosing(SmtpAuthError, SmtpServerClosed):
    """A 421 in reply to AUTH: smtplib's ``SMTPAuthenticationError`` (``smtp_code``
    421), and an :class:`SmtpServerClosed`: the connection is closed."""

    def __init__(self, code: int, msg: bytes, phase: str | None = "AUTH") -> None:
        smtplib.SMTPResponseException.__init__(self, code, msg)
        self.phase = phase


def closed_in_phase(
    error: SmtpServerClosed, sender: str, recipients: list[str]
) -> SmtpError:
    """The exception smtplib's ``sendmail`` raises for this 421, by the phase it came
    in: :class:`SmtpSenderRefusedClosing` at MAIL, :class:`SmtpRecipientsRefusedClosing`
    at RCPT (every recipient with the 421: with pipelining the replies after it never
    come), :class:`SmtpDataErrorClosing` at DATA or after the message,
    :class:`SmtpAuthErrorClosing` at AUTH (as ``login`` raises it); ``error`` itself in
    any other phase."""
    code, msg = error.smtp_code, error.smtp_error
    if not isinstance(msg, bytes):
        msg = str(msg).encode("utf-8")
    if error.phase == "MAIL":
        return SmtpSenderRefusedClosing(code, msg, sender)
    if error.phase == "RCPT":
        return SmtpRecipientsRefusedClosing({r: (code, msg) for r in recipients}, code, msg)
    if error.phase in ("DATA", "after the end of data"):
        return SmtpDataErrorClosing(code, msg, error.phase)
    if error.phase == "AUTH":
        return SmtpAuthErrorClosing(code, msg)
    return error
