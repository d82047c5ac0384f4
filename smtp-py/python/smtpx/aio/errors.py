"""aiosmtplib's names for the asyncio client: :class:`SMTPResponse` and the exceptions,
with aiosmtplib's attributes (``code``, ``message`` as text, ``sender``, ``recipient``,
``recipients`` as a list of :class:`SMTPRecipientRefused`), so that code written for
aiosmtplib runs with ``import smtpx.aio as aiosmtplib``.

Each one also subclasses the matching :mod:`smtpx.errors` class (and so smtplib's), so
``except smtpx.SmtpError`` keeps catching what the asyncio client raises.
"""

from __future__ import annotations

from typing import NamedTuple

from smtpx import errors

__all__ = [
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPConnectResponseError",
    "SMTPConnectTimeoutError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupported",
    "SMTPReadTimeoutError",
    "SMTPRecipientRefused",
    "SMTPRecipientsRefused",
    "SMTPResponse",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTPTimeoutError",
    "translate",
]


class SMTPResponse(NamedTuple):
    """A server reply: ``code`` and ``message`` (the text, lines joined with ``\\n``)."""

    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


def response(reply: tuple[int, str | None, str, bytes]) -> SMTPResponse:
    """An engine reply tuple as aiosmtplib's :class:`SMTPResponse`."""
    return SMTPResponse(reply[0], reply[3].decode("utf-8", "replace"))


class SMTPException(errors.SmtpError):
    """Base class of the asyncio client's exceptions; ``message`` is the text."""

    def __init__(self, message: str, /) -> None:
        Exception.__init__(self, message)
        self.message = message

    __str__ = BaseException.__str__


class SMTPServerDisconnected(SMTPException, errors.SmtpDisconnected):
    """The connection was lost, or a command needs one."""


class SMTPConnectError(SMTPException, ConnectionError):
    """Connecting failed (refused, unreachable, or the TLS handshake of implicit TLS)."""


class SMTPTimeoutError(SMTPException, errors.SmtpTimeoutError):
    """A network operation took longer than ``timeout``."""


class SMTPConnectTimeoutError(SMTPTimeoutError, SMTPConnectError):
    """Connecting took longer than ``timeout``."""


class SMTPReadTimeoutError(SMTPTimeoutError):
    """A reply took longer than ``timeout``."""


class SMTPNotSupported(SMTPException, errors.SmtpNotSupportedError):
    """The server does not support the command or option."""


class SMTPResponseException(SMTPException, errors.SmtpReplyError):
    """An error reply: ``code`` and ``message`` (text); ``smtp_code``/``smtp_error``
    as smtplib names them."""

    def __init__(self, code: int, message: str, /) -> None:
        Exception.__init__(self, code, message)
        self.code = code
        self.message = message
        self.smtp_code = code
        self.smtp_error = message.encode("utf-8")


class SMTPConnectResponseError(SMTPResponseException, SMTPConnectError):
    """The server refused the connection in its greeting."""


class SMTPHeloError(SMTPResponseException, errors.SmtpHeloError):
    """The server refused EHLO and HELO."""


class SMTPDataError(SMTPResponseException, errors.SmtpDataError):
    """The server refused the message content."""


class SMTPAuthenticationError(SMTPResponseException, errors.SmtpAuthError):
    """The server refused the credentials."""


class SMTPSenderRefused(SMTPResponseException, errors.SmtpSenderRefused):
    """The server refused the sender; ``sender`` is the address."""

    def __init__(self, code: int, message: str, sender: str, /) -> None:
        SMTPResponseException.__init__(self, code, message)
        self.sender = sender
        self.args = (code, message, sender)  # type: ignore[assignment]


class SMTPRecipientRefused(SMTPResponseException):
    """The server refused one recipient; ``recipient`` is the address."""

    def __init__(self, code: int, message: str, recipient: str, /) -> None:
        SMTPResponseException.__init__(self, code, message)
        self.recipient = recipient
        self.args = (code, message, recipient)  # type: ignore[assignment]


class SMTPRecipientsRefused(SMTPException, errors.SmtpRecipientsRefused):
    """The server refused every recipient: ``recipients`` lists them, each an
    :class:`SMTPRecipientRefused`."""

    recipients: list[SMTPRecipientRefused]  # type: ignore[assignment]

    def __init__(self, recipients: list[SMTPRecipientRefused], /) -> None:
        Exception.__init__(self, recipients)
        self.recipients = recipients


def _text(error: errors.SmtpReplyError) -> str:
    message = error.smtp_error
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def translate(error: BaseException, *, connecting: bool = False) -> BaseException:
    """The aiosmtplib exception for an error of the engine (an :mod:`smtpx.errors` one)
    or of the network while ``connecting``; anything else is returned as it is."""
    if isinstance(error, SMTPException):
        return error
    if isinstance(error, errors.SmtpInsecureAuthError):
        return error  # smtpx's own refusal: no aiosmtplib counterpart (see the README)
    if isinstance(error, errors.SmtpTimeoutError) or isinstance(error, TimeoutError):
        kind = SMTPConnectTimeoutError if connecting else SMTPReadTimeoutError
        return kind(str(error))
    if isinstance(error, errors.SmtpConnectError):
        code = error.smtp_code
        if code is not None:
            return SMTPConnectResponseError(code, _text_of(error.smtp_error))
        return SMTPConnectError(str(error))
    if isinstance(error, errors.SmtpHeloError):
        return SMTPHeloError(error.smtp_code, _text(error))
    if isinstance(error, errors.SmtpAuthError):
        return SMTPAuthenticationError(error.smtp_code, _text(error))
    if isinstance(error, errors.SmtpSenderRefused):
        return SMTPSenderRefused(error.smtp_code, _text(error), str(error.sender))
    if isinstance(error, errors.SmtpDataError):
        return SMTPDataError(error.smtp_code, _text(error))
    if isinstance(error, errors.SmtpRecipientsRefused):
        return SMTPRecipientsRefused(
            [
                SMTPRecipientRefused(code, _text_of(message), address)
                for address, (code, message) in error.recipients.items()
            ]
        )
    if isinstance(error, errors.SmtpDisconnected):
        return SMTPServerDisconnected(str(error))
    if isinstance(error, errors.SmtpNotSupportedError):
        return SMTPNotSupported(str(error))
    if isinstance(error, errors.SmtpReplyError):
        return SMTPResponseException(error.smtp_code, _text(error))
    if connecting and isinstance(error, OSError) and not isinstance(error, errors.SmtpError):
        return SMTPConnectError(f"Error connecting: {error}")
    return error


def _text_of(message: object) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
