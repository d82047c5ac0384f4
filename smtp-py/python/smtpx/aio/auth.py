"""aiosmtplib's ``aiosmtplib.auth`` helpers: the SASL responses of CRAM-MD5, PLAIN,
LOGIN and XOAUTH2 as base64 bytes, for code that builds its own AUTH exchange
(``execute_command``). The clients' ``auth_*`` methods and ``login`` use the same
encodings."""

from __future__ import annotations

import base64
import binascii
import hmac

from smtpx.aio.errors import SMTPAuthenticationError

__all__ = [
    "auth_crammd5_verify",
    "auth_login_encode",
    "auth_plain_encode",
    "auth_xoauth2_encode",
]


def _ensure_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def auth_crammd5_verify(username: str | bytes, password: str | bytes, challenge: str | bytes, /) -> bytes:
    """The CRAM-MD5 response to the server's base64 ``challenge``: base64 of the user
    name, a space and the hex HMAC-MD5 of the challenge keyed with the password. A
    challenge that is not base64 raises SMTPAuthenticationError (334), as in
    aiosmtplib."""
    try:
        decoded = base64.b64decode(challenge)
    except (binascii.Error, ValueError) as exc:
        raise SMTPAuthenticationError(334, f"Invalid CRAM-MD5 challenge from server: {challenge!r}") from exc
    digest = hmac.new(_ensure_bytes(password), msg=decoded, digestmod="md5")
    return base64.b64encode(_ensure_bytes(username) + b" " + digest.hexdigest().encode("ascii"))


def auth_plain_encode(username: str | bytes, password: str | bytes, /) -> bytes:
    """The PLAIN response: base64 of ``\\0user\\0password``."""
    return base64.b64encode(b"\0" + _ensure_bytes(username) + b"\0" + _ensure_bytes(password))


def auth_login_encode(username: str | bytes, password: str | bytes, /) -> tuple[bytes, bytes]:
    """The two LOGIN responses: the base64 user name, then the base64 password."""
    return base64.b64encode(_ensure_bytes(username)), base64.b64encode(_ensure_bytes(password))


def auth_xoauth2_encode(username: str | bytes, access_token: str | bytes, /) -> bytes:
    """The XOAUTH2 initial response: base64 of ``user=USER\\x01auth=Bearer TOKEN\\x01\\x01``
    (Google's and Microsoft's OAuth2 for SMTP)."""
    return base64.b64encode(
        b"user=" + _ensure_bytes(username) + b"\x01auth=Bearer " + _ensure_bytes(access_token) + b"\x01\x01"
    )
