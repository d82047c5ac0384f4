"""aiosmtplib's ``aiosmtplib.typing`` names: :class:`SMTPStatus` (reply codes by name),
:data:`SMTPTokenGenerator` (what ``oauth_token_generator`` is), :class:`Default` (the
"use the client's value" marker of each call's ``timeout``) and :data:`SocketPathType`,
so that ``from aiosmtplib.typing import SMTPStatus`` runs with ``smtpx.aio.typing``."""

from __future__ import annotations

import enum
import os
from typing import Awaitable, Callable, Union

__all__ = ["Default", "SMTPStatus", "SMTPTokenGenerator", "SocketPathType", "_default"]

SMTPTokenGenerator = Callable[[], Awaitable[str]]
"""An async callable that returns an OAuth2 access token, for XOAUTH2
(``oauth_token_generator``)."""

SocketPathType = Union[str, bytes, "os.PathLike[str]"]
"""A Unix socket path, as ``socket_path`` takes it."""


class Default(enum.Enum):
    """The default of each call's ``timeout``: the client's own, as in aiosmtplib."""

    token = 0


_default = Default.token


@enum.unique
class SMTPStatus(enum.IntEnum):
    """SMTP reply codes by name, aiosmtplib's (``SMTPStatus.completed == 250``); a
    reply's ``code`` compares equal to them."""

    invalid_response = -1
    system_status_ok = 211
    help_message = 214
    ready = 220
    closing = 221
    auth_successful = 235
    completed = 250
    will_forward = 251
    cannot_vrfy = 252
    auth_continue = 334
    start_input = 354
    domain_unavailable = 421
    mailbox_unavailable = 450
    error_processing = 451
    insufficient_storage = 452
    tls_not_available = 454
    unrecognized_command = 500
    unrecognized_parameters = 501
    command_not_implemented = 502
    bad_command_sequence = 503
    parameter_not_implemented = 504
    domain_does_not_accept_mail = 521
    access_denied = 530  # Sendmail's
    auth_failed = 535
    mailbox_does_not_exist = 550
    user_not_local = 551
    storage_exceeded = 552
    mailbox_name_invalid = 553
    transaction_failed = 554
    syntax_error = 555
