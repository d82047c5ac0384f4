"""smtpx's exceptions subclass smtplib's, so existing handlers keep catching them."""

from __future__ import annotations

import pickle
import smtplib
import ssl

import pytest

import smtpx
from smtpx import errors

# Each smtpx exception, one instance built with its smtplib-compatible arguments, and
# the smtplib (or builtin) classes it must also be.
CASES: list[tuple[BaseException, tuple[type[BaseException], ...]]] = [
    (smtpx.SmtpError("boom"), (smtplib.SMTPException,)),
    (smtpx.SmtpProtocolError("bad reply line"), (smtplib.SMTPException,)),
    (smtpx.SmtpConnectError("refused"), (smtplib.SMTPException, ConnectionError)),
    (smtpx.SmtpTimeoutError("too slow"), (smtplib.SMTPException, TimeoutError)),
    (smtpx.SmtpTlsError("bad certificate"), (smtplib.SMTPException, ssl.SSLError)),
    (smtpx.SmtpDisconnected("closed"), (smtplib.SMTPServerDisconnected,)),
    (smtpx.SmtpNotSupportedError("no SMTPUTF8"), (smtplib.SMTPNotSupportedError,)),
    (smtpx.SmtpInsecureAuthError("credentials not sent"), (smtplib.SMTPException,)),
    (
        smtpx.SmtpRecipientsRefused({"a@example.org": (550, b"no such user")}),
        (smtplib.SMTPRecipientsRefused,),
    ),
    (smtpx.SmtpReplyError(554, b"transaction failed"), (smtplib.SMTPResponseException,)),
    (
        smtpx.SmtpSenderRefused(553, b"bad sender", "s@example.org"),
        (smtplib.SMTPSenderRefused, smtplib.SMTPResponseException),
    ),
    (smtpx.SmtpDataError(552, b"too big"), (smtplib.SMTPDataError,)),
    (smtpx.SmtpAuthError(535, b"bad credentials"), (smtplib.SMTPAuthenticationError,)),
    (
        smtpx.SmtpConnectionRefused(111, "refused"),
        (smtpx.SmtpConnectError, ConnectionRefusedError),
    ),
    (
        smtpx.SmtpCertificateError("certificate not trusted"),
        (smtpx.SmtpTlsError, ssl.SSLCertVerificationError),
    ),
    (
        smtpx.SmtpServerClosed(421, b"shutting down"),
        (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException),
    ),
    (smtpx.SmtpHeloError(501, b"bad name"), (smtplib.SMTPHeloError,)),
    (
        smtpx.SmtpSenderRefusedClosing(421, b"4.3.2 bye", "s@example.org"),
        (smtplib.SMTPSenderRefused, smtpx.SmtpServerClosed, smtplib.SMTPServerDisconnected),
    ),
    (
        smtpx.SmtpRecipientsRefusedClosing({"a@example.org": (421, b"4.3.2 bye")}, 421, b"4.3.2 bye"),
        (smtplib.SMTPRecipientsRefused, smtpx.SmtpServerClosed, smtplib.SMTPServerDisconnected),
    ),
    (
        smtpx.SmtpAuthErrorClosing(421, b"4.3.2 bye"),
        (smtplib.SMTPAuthenticationError, smtpx.SmtpServerClosed, smtplib.SMTPServerDisconnected),
    ),
    (
        smtpx.SmtpDataErrorClosing(421, b"4.3.2 bye"),
        (smtplib.SMTPDataError, smtpx.SmtpServerClosed, smtplib.SMTPServerDisconnected),
    ),
]

IDS = [type(exc).__name__ for exc, _ in CASES]


def test_every_exception_is_covered() -> None:
    assert sorted(IDS) == sorted(errors.__all__)
    assert set(errors.__all__) <= set(smtpx.__all__)


@pytest.mark.parametrize(("exc", "bases"), CASES, ids=IDS)
def test_is_an_smtpx_and_smtplib_exception(
    exc: BaseException, bases: tuple[type[BaseException], ...]
) -> None:
    assert isinstance(exc, smtpx.SmtpError)
    for base in bases:
        assert isinstance(exc, base)


@pytest.mark.parametrize(("exc", "bases"), CASES, ids=IDS)
def test_catchable_as_smtplib_exception(
    exc: BaseException, bases: tuple[type[BaseException], ...]
) -> None:
    with pytest.raises(smtplib.SMTPException):
        raise exc
    for base in bases:
        with pytest.raises(base):
            raise exc


@pytest.mark.parametrize(("exc", "bases"), CASES, ids=IDS)
def test_pickles(exc: BaseException, bases: tuple[type[BaseException], ...]) -> None:
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert copy.args == exc.args


def test_reply_errors_carry_smtplib_attributes() -> None:
    refused = smtpx.SmtpSenderRefused(553, b"bad sender", "s@example.org")
    assert (refused.smtp_code, refused.smtp_error, refused.sender) == (
        553,
        b"bad sender",
        "s@example.org",
    )
    everyone = smtpx.SmtpRecipientsRefused({"a@example.org": (550, b"no")})
    assert everyone.recipients == {"a@example.org": (550, b"no")}
    assert issubclass(smtpx.SmtpAuthError, smtpx.SmtpReplyError)
    assert issubclass(smtpx.SmtpDataError, smtpx.SmtpReplyError)
