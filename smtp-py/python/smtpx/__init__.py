"""smtpx: SMTP for Python, backed by a sans-IO Rust engine.

One Rust engine speaks both sides of SMTP (client and server sessions); this package
is its Python binding:

- :class:`SMTP`, :class:`SMTP_SSL`, :class:`LMTP`: clients with smtplib's interface, plus
  :meth:`SMTP.send` (a result for every recipient) and the one-call :func:`send`.
- :class:`Controller`: a server running an aiosmtpd-style handler (``handle_MAIL``,
  ``handle_RCPT``, ``handle_DATA``, ...), or the built-in :class:`Maildir` handler.
- :mod:`smtpx.aio`: the asyncio client (``SMTP``, ``LMTP``, ``send``) and server
  (``Server``), with STARTTLS and implicit TLS, built on the sans-IO sessions
  ``smtpx._native.ClientRunner`` and ``smtpx._native.ServerConnection`` and the sans-IO
  rustls ``smtpx._native.TlsSession``.

Every exception subclasses the matching :mod:`smtplib` exception, so code that catches
``smtplib.SMTPException`` keeps working.
"""

from smtplib import (
    CRLF,
    OLDSTYLE_AUTH,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    bCRLF,
    quoteaddr,
    quotedata,
)

from smtpx._native import __version__, reply_code_meaning
from smtpx.client import (
    LMTP,
    LMTP_PORT,
    SMTP,
    SMTP_PORT,
    SMTP_SSL_PORT,
    SMTP_SSL,
    RecipientResult,
    Reply,
    SendResult,
    send,
)
from smtpx.server import (
    AuthResult,
    Controller,
    Envelope,
    LoginPassword,
    Maildir,
    Session,
    UnixSocketController,
    UnixSocketUnthreadedController,
    UnthreadedController,
)
from smtpx.errors import (
    SmtpAuthError,
    SmtpAuthErrorClosing,
    SmtpCertificateError,
    SmtpConnectError,
    SmtpConnectionRefused,
    SmtpHeloError,
    SmtpServerClosed,
    SmtpDataError,
    SmtpDataErrorClosing,
    SmtpDisconnected,
    SmtpError,
    SmtpInsecureAuthError,
    SmtpNotSupportedError,
    SmtpProtocolError,
    SmtpRecipientsRefused,
    SmtpRecipientsRefusedClosing,
    SmtpReplyError,
    SmtpSenderRefused,
    SmtpSenderRefusedClosing,
    SmtpTimeoutError,
    SmtpTlsError,
)

__all__ = [
    # smtplib's public names: its own exception classes (every smtpx exception
    # subclasses the matching one) and helpers, so `import smtpx as smtplib` works.
    "CRLF",
    "LMTP_PORT",
    "OLDSTYLE_AUTH",
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupportedError",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTP_PORT",
    "SMTP_SSL_PORT",
    "bCRLF",
    "quoteaddr",
    "quotedata",
    "SmtpAuthError",
    "SmtpCertificateError",
    "SmtpConnectError",
    "SmtpConnectionRefused",
    "SmtpHeloError",
    "SmtpServerClosed",
    "SmtpDataError",
    "SmtpDataErrorClosing",
    "SmtpAuthErrorClosing",
    "SmtpRecipientsRefusedClosing",
    "SmtpSenderRefusedClosing",
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
    "AuthResult",
    "Controller",
    "Envelope",
    "LoginPassword",
    "Maildir",
    "Session",
    "UnixSocketController",
    "UnixSocketUnthreadedController",
    "UnthreadedController",
    "LMTP",
    "SMTP",
    "SMTP_SSL",
    "RecipientResult",
    "Reply",
    "SendResult",
    "send",
    "__version__",
    "reply_code_meaning",
    "aio",
]

from smtpx import aio  # noqa: E402 (after the names it imports from this package)
