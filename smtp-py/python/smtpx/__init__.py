"""smtpx: SMTP for Python, backed by a sans-IO Rust engine.

One Rust engine speaks both sides of SMTP (client and server sessions); this package
is its Python binding. The binding is young: today it offers the reply-code table and
the exception hierarchy; client and server sessions follow.

Every exception subclasses the matching :mod:`smtplib` exception, so code that catches
``smtplib.SMTPException`` keeps working.
"""

from smtpx._native import __version__, reply_code_meaning
from smtpx.errors import (
    SmtpAuthError,
    SmtpConnectError,
    SmtpDataError,
    SmtpDisconnected,
    SmtpError,
    SmtpNotSupportedError,
    SmtpProtocolError,
    SmtpRecipientsRefused,
    SmtpReplyError,
    SmtpSenderRefused,
    SmtpTimeoutError,
)

__all__ = [
    "SmtpAuthError",
    "SmtpConnectError",
    "SmtpDataError",
    "SmtpDisconnected",
    "SmtpError",
    "SmtpNotSupportedError",
    "SmtpProtocolError",
    "SmtpRecipientsRefused",
    "SmtpReplyError",
    "SmtpSenderRefused",
    "SmtpTimeoutError",
    "__version__",
    "reply_code_meaning",
]
