"""The exceptions smtpx raises.

Each one subclasses the matching :mod:`smtplib` exception, so existing code that
catches ``smtplib.SMTPException`` (or a more specific smtplib class) keeps working, and
takes the same constructor arguments and attributes as its smtplib base
(``smtp_code``, ``smtp_error``, ``sender``, ``recipients``).

Hierarchy::

    smtplib.SMTPException (an OSError)
     └── SmtpError
          ├── SmtpProtocolError
          ├── SmtpConnectError         (also ConnectionError)
          ├── SmtpTimeoutError         (also TimeoutError)
          ├── SmtpDisconnected         (also smtplib.SMTPServerDisconnected)
          ├── SmtpNotSupportedError    (also smtplib.SMTPNotSupportedError)
          ├── SmtpRecipientsRefused    (also smtplib.SMTPRecipientsRefused)
          └── SmtpReplyError           (also smtplib.SMTPResponseException)
               ├── SmtpSenderRefused   (also smtplib.SMTPSenderRefused)
               ├── SmtpDataError       (also smtplib.SMTPDataError)
               └── SmtpAuthError       (also smtplib.SMTPAuthenticationError)
"""

from __future__ import annotations

import smtplib

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
]


class SmtpError(smtplib.SMTPException):
    """Base class of every exception smtpx raises."""


class SmtpProtocolError(SmtpError):
    """The peer broke the SMTP protocol (for example, a malformed or overlong reply)."""


class SmtpConnectError(SmtpError, ConnectionError):
    """The connection to the server could not be made or was refused."""


class SmtpTimeoutError(SmtpError, TimeoutError):
    """A deadline passed while waiting for the peer."""


class SmtpDisconnected(SmtpError, smtplib.SMTPServerDisconnected):
    """The connection closed unexpectedly, or a command was issued without one."""


class SmtpNotSupportedError(SmtpError, smtplib.SMTPNotSupportedError):
    """The command or option is not supported by the server."""


class SmtpRecipientsRefused(SmtpError, smtplib.SMTPRecipientsRefused):
    """Every recipient was refused.

    ``recipients`` maps each address to its ``(code, message)`` reply, as in smtplib.
    (When only some are refused, the send succeeds and reports them per recipient.)
    """


class SmtpReplyError(SmtpError, smtplib.SMTPResponseException):
    """The server answered with an error reply.

    ``smtp_code`` is the reply code and ``smtp_error`` the reply text, as in smtplib.
    """


class SmtpSenderRefused(SmtpReplyError, smtplib.SMTPSenderRefused):
    """The server refused the sender (MAIL FROM); ``sender`` is the address."""


class SmtpDataError(SmtpReplyError, smtplib.SMTPDataError):
    """The server refused the message data."""


class SmtpAuthError(SmtpReplyError, smtplib.SMTPAuthenticationError):
    """Authentication failed: the server refused the credentials or the mechanism."""
