"""The client: :class:`SMTP`, :class:`SMTP_SSL` and :class:`LMTP` with smtplib's method
names and return conventions, plus :meth:`SMTP.send` and the one-call :func:`send`.

How this maps onto smtplib
--------------------------
The Rust engine opens a session in one step: it connects, reads the greeting and sends
EHLO (falling back to HELO). So ``connect()`` (called by the constructor when a host is
given) has already greeted; ``ehlo()``/``helo()``/``ehlo_or_helo_if_needed()`` return that
greeting's reply instead of sending another, and their ``name`` argument (like
``local_hostname``) is used by ``connect()``. ``starttls()`` upgrades and greets again, as
smtplib users then do by hand. ``sendmail()`` pipelines MAIL, RCPT and DATA (or BDAT)
when the server allows it, and the engine sends RSET after a failed transaction itself.

Differences: message bytes are canonicalised to CRLF (smtplib sends bare LF in bytes as
is), ``source_address`` and Unix sockets are not supported (ValueError), and the 220
texts of the greeting and of STARTTLS are not kept.
"""

from __future__ import annotations

import copy
import email.generator
import email.message
import email.policy
import email.utils
import io
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Sequence, Union

from smtpx import _native
from smtpx.errors import (
    SmtpDataError,
    SmtpDisconnected,
    SmtpError,
    SmtpNotSupportedError,
    SmtpRecipientsRefused,
    SmtpSenderRefused,
)

__all__ = [
    "LMTP",
    "LMTP_PORT",
    "SMTP",
    "SMTP_PORT",
    "SMTP_SSL",
    "SMTP_SSL_PORT",
    "RecipientResult",
    "Reply",
    "SendResult",
    "send",
]

SMTP_PORT = 25
SMTP_SSL_PORT = 465
LMTP_PORT = 2003

Message = Union[email.message.Message, bytes, bytearray, str, IO[bytes]]
_ReplyTuple = tuple[int, Union[str, None], str, bytes]
_native_Result = tuple[
    _ReplyTuple,
    list[tuple[str, _ReplyTuple, Union[_ReplyTuple, None], bool]],
    Union[_ReplyTuple, None],
    Union[str, None],
]

_local_hostname: str | None = None


def _default_local_hostname() -> str:
    """This host's name for EHLO, as smtplib picks it (computed once)."""
    global _local_hostname
    if _local_hostname is None:
        fqdn = socket.getfqdn()
        if "." in fqdn and all(c.isalnum() or c in "-." for c in fqdn):
            _local_hostname = fqdn
        else:
            # smtplib's fallback: an address literal.
            try:
                addr = socket.gethostbyname(socket.gethostname())
            except OSError:
                addr = "127.0.0.1"
            _local_hostname = f"[{addr}]"
    return _local_hostname


@dataclass(frozen=True)
class Reply:
    """One server reply: ``code``, the enhanced status code (``"2.0.0"``) or None, and the
    text without codes (lines joined with ``\\n``)."""

    code: int
    enhanced: str | None
    text: str
    #: The text as smtplib gives it (enhanced code kept, bytes).
    message: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.code < 300

    def as_tuple(self) -> tuple[int, bytes]:
        """smtplib's ``(code, message)``."""
        return (self.code, self.message)

    @classmethod
    def _from(cls, raw: _ReplyTuple) -> Reply:
        return cls(raw[0], raw[1], raw[2], raw[3])


@dataclass(frozen=True)
class RecipientResult:
    """The outcome for one recipient: its RCPT reply and, under LMTP, its delivery."""

    address: str
    reply: Reply
    delivery: Reply | None
    accepted: bool

    @property
    def code(self) -> int:
        """The deciding reply's code (the delivery's under LMTP when there is one)."""
        return self.final.code

    @property
    def enhanced(self) -> str | None:
        return self.final.enhanced

    @property
    def message(self) -> str:
        return self.final.text

    @property
    def final(self) -> Reply:
        if self.reply.ok and self.delivery is not None:
            return self.delivery
        return self.reply


@dataclass(frozen=True)
class SendResult:
    """The outcome of one transaction, with a result for every recipient."""

    mail: Reply
    recipients: list[RecipientResult]
    data: Reply | None
    queue_id: str | None

    @property
    def ok(self) -> bool:
        """True when the message was accepted for at least one recipient."""
        return (
            self.mail.ok
            and (self.data is not None and self.data.ok or self._lmtp)
            and any(r.accepted for r in self.recipients)
        )

    @property
    def _lmtp(self) -> bool:
        return any(r.delivery is not None for r in self.recipients)

    @property
    def accepted(self) -> list[RecipientResult]:
        return [r for r in self.recipients if r.accepted]

    @property
    def refused(self) -> list[RecipientResult]:
        return [r for r in self.recipients if not r.accepted]


def _seconds(timeout: object) -> float | None:
    """A timeout in seconds, or None for the engine's RFC 5321 defaults (which is also
    what smtplib's "global default" sentinel means here)."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout)
    return None


def _check_line(what: str, text: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"{what} contains CR, LF or NUL: {text!r}")


def _address(addr: str) -> str:
    """The bare address of ``addr`` as smtplib's ``quoteaddr`` finds it
    (``"Alice <a@example.com>"`` gives ``a@example.com``)."""
    _check_line("an address", addr)
    stripped = addr.strip()
    if stripped in ("", "<>"):
        return ""
    if "<" in stripped:
        _, bare = email.utils.parseaddr(stripped)
        if bare:
            return bare
        return stripped.strip("<>")
    return stripped


_EOLS = re.compile(r"(?:\r\n|\n|\r(?!\n))")


def _message_bytes(msg: str | bytes | bytearray) -> bytes | bytearray:
    if isinstance(msg, str):
        # As smtplib: a str message is ASCII with any line ending.
        return _EOLS.sub("\r\n", msg).encode("ascii")
    return msg


def _flatten(msg: email.message.Message) -> bytes:
    """The message without Bcc/Resent-Bcc, with CRLF line ends (smtplib's send_message)."""
    copied = copy.copy(msg)
    del copied["Bcc"]
    del copied["Resent-Bcc"]
    out = io.BytesIO()
    policy = msg.policy.clone(linesep="\r\n")
    international = not all(
        str(v).isascii() for v in (msg.get_all("From", []) + msg.get_all("To", []))
    )
    if international and isinstance(policy, email.policy.EmailPolicy):
        policy = policy.clone(utf8=True)
    email.generator.BytesGenerator(out, policy=policy).flatten(copied, linesep="\r\n")
    return out.getvalue()


def _envelope_of(
    msg: email.message.Message, from_addr: str | None, to_addrs: Sequence[str] | str | None
) -> tuple[str, list[str]]:
    """Sender and recipients from the headers, as smtplib's send_message takes them."""
    resent = msg.get_all("Resent-Date")
    if resent is not None and len(resent) > 1:
        raise ValueError("message has more than one 'Resent-' header block")
    prefix = "Resent-" if resent else ""
    if from_addr is None:
        sender = msg[prefix + "Sender"] or msg[prefix + "From"]
        if sender is None:
            raise ValueError("no sender: the message has no From or Sender header")
        from_addr = email.utils.getaddresses([str(sender)])[0][1]
    if to_addrs is None:
        fields = [
            str(v)
            for name in ("To", "Bcc", "Cc")
            for v in (msg.get_all(prefix + name) or [])
        ]
        to_addrs = [a for _, a in email.utils.getaddresses(fields) if a]
    elif isinstance(to_addrs, str):
        to_addrs = [to_addrs]
    return from_addr, list(to_addrs)


def _tls_arguments(context: ssl.SSLContext | None, cafile: str | None) -> dict[str, Any]:
    """What the Rust TLS configuration needs from an :class:`ssl.SSLContext`: whether to
    verify, and the CA certificates it was given (cafile/cadata)."""
    insecure = False
    pem = b""
    if context is not None:
        insecure = context.verify_mode == ssl.CERT_NONE or not context.check_hostname
        if not insecure:
            for der in context.get_ca_certs(binary_form=True):
                pem += ssl.DER_cert_to_PEM_cert(der).encode("ascii")
    if cafile is not None:
        with open(cafile, "rb") as f:
            pem += f.read()
    return {"insecure": insecure, "ca_pem": pem or None}


def _send_result(raw: _native_Result) -> SendResult:
    """A SendResult from the native (mail, recipients, data, queue id) tuple."""
    mail, recipients, data, queue_id = raw
    return SendResult(
        Reply._from(mail),
        [
            RecipientResult(
                address,
                Reply._from(reply),
                Reply._from(delivery) if delivery is not None else None,
                accepted,
            )
            for address, reply, delivery, accepted in recipients
        ],
        Reply._from(data) if data is not None else None,
        queue_id,
    )


def _refused_or_raise(
    result: SendResult, from_addr: str, to_list: list[str]
) -> dict[str, tuple[int, bytes]]:
    """smtplib's sendmail outcome: the refused recipients, or the exception it raises."""
    if not result.mail.ok:
        raise SmtpSenderRefused(result.mail.code, result.mail.message, from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    for given, outcome in zip(to_list, result.recipients):
        if not outcome.accepted:
            refused[given] = outcome.final.as_tuple()
    if len(refused) == len(to_list):
        raise SmtpRecipientsRefused(refused)
    if not result._lmtp and (result.data is None or not result.data.ok):
        data = result.data
        raise SmtpDataError(
            data.code if data else 554, data.message if data else b"message not sent"
        )
    return refused


class SMTP:
    """An SMTP client connection with smtplib's interface (see the module docs).

    ``SMTP(host, port)`` connects and greets at once; use it as a context manager to QUIT
    at the end. ``timeout`` (seconds) bounds the connection and every reply; the default
    waits as RFC 5321 says (minutes).
    """

    default_port = SMTP_PORT
    _tls_mode = "none"
    _lmtp = False

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None | object = None,
        source_address: tuple[str, int] | None = None,
        *,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if source_address is not None:
            raise ValueError("smtpx does not support source_address")
        if local_hostname is not None:
            _check_line("local_hostname", local_hostname)
        self._host = host
        self.local_hostname = local_hostname
        self.timeout = timeout
        self._context = context
        self._native: _native.Client | None = None
        self.esmtp_features: dict[str, str] = {}
        self.does_esmtp = False
        self.ehlo_resp: bytes | None = None
        self.helo_resp: bytes | None = None
        if host:
            self.connect(host, port)

    # -- connection --------------------------------------------------------------------

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: Any = None
    ) -> tuple[int, bytes]:
        """Connects and greets; returns ``(220, first line of the EHLO reply)``."""
        if source_address is not None:
            raise ValueError("smtpx does not support source_address")
        _check_line("host", host)
        if host.startswith("/"):
            raise ValueError("smtpx does not support Unix sockets")
        if not port and ":" in host and host.count(":") == 1:
            host, _, port_text = host.partition(":")
            try:
                port = int(port_text)
            except ValueError:
                raise OSError("nonnumeric port") from None
        if not port:
            port = self.default_port
        self.close()
        self._host = host
        tls: dict[str, Any] = {}
        if self._tls_mode != "none":
            tls = _tls_arguments(self._context, None)
        self._native = _native.Client.connect(
            host,
            port,
            helo_name=self.local_hostname or _default_local_hostname(),
            tls=self._tls_mode,
            timeout=_seconds(self.timeout),
            lmtp=self._lmtp,
            **tls,
        )
        self._refresh()
        lines = self._native.ehlo_lines()
        first = lines[0].encode() if lines else b""
        return (220, first)

    def _refresh(self) -> None:
        client = self._client()
        lines = client.ehlo_lines()
        self.does_esmtp = lines is not None
        self.esmtp_features = dict(client.features())
        self.ehlo_resp = "\n".join(lines).encode() if lines is not None else None

    def _client(self) -> _native.Client:
        if self._native is None:
            raise SmtpDisconnected("please run connect() first")
        return self._native

    @property
    def sock(self) -> object | None:
        """Truthy while connected (smtplib code tests ``smtp.sock``)."""
        if self._native is None or self._native.is_closed():
            return None
        return self._native

    def close(self) -> None:
        """Closes the connection without QUIT."""
        native, self._native = self._native, None
        if native is not None:
            native.close()

    def quit(self) -> tuple[int, bytes]:
        """Sends QUIT and closes."""
        native, self._native = self._native, None
        if native is None:
            raise SmtpDisconnected("please run connect() first")
        native.quit()
        self.esmtp_features = {}
        self.does_esmtp = False
        return (221, b"")

    def __enter__(self) -> SMTP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._native is not None:
                self.quit()
        except (SmtpDisconnected, OSError):
            pass
        finally:
            self.close()

    # -- greeting, TLS, AUTH -----------------------------------------------------------

    def ehlo(self, name: str = "") -> tuple[int, bytes]:
        """The EHLO reply of the session (the engine greets when connecting)."""
        if name:
            _check_line("name", name)
        self._client()
        if self.ehlo_resp is None:
            return (502, b"EHLO refused: the session greeted with HELO")
        return (250, self.ehlo_resp)

    def helo(self, name: str = "") -> tuple[int, bytes]:
        """The greeting's reply (the engine greets with EHLO, or HELO when refused)."""
        if name:
            _check_line("name", name)
        self._client()
        first = (self.ehlo_resp or b"").split(b"\n", 1)[0]
        self.helo_resp = first
        return (250, first)

    def ehlo_or_helo_if_needed(self) -> None:
        self._client()

    def has_extn(self, opt: str) -> bool:
        return opt.lower() in self.esmtp_features

    def starttls(
        self,
        keyfile: None = None,
        certfile: None = None,
        context: ssl.SSLContext | None = None,
        *,
        cafile: str | None = None,
    ) -> tuple[int, bytes]:
        """Upgrades with STARTTLS and greets again. Only ``context``'s verification
        setting and CA certificates are used (``CERT_NONE`` or ``check_hostname=False``
        means no verification); ``cafile`` adds a PEM file of trusted CAs."""
        if keyfile is not None or certfile is not None:
            raise ValueError("client certificates are not supported")
        client = self._client()
        if not self.has_extn("starttls"):
            raise SmtpNotSupportedError("STARTTLS extension not supported by server.")
        client.starttls(self._host, **_tls_arguments(context, cafile))
        self._refresh()
        return (220, b"TLS established")

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """Authenticates with PLAIN or LOGIN (whichever the server offers)."""
        _check_line("the user name", user)
        _check_line("the password", password)
        client = self._client()
        if not self.has_extn("auth"):
            raise SmtpNotSupportedError("SMTP AUTH extension not supported by server.")
        return Reply._from(client.login(user, password)).as_tuple()

    # -- simple commands ----------------------------------------------------------------

    def noop(self) -> tuple[int, bytes]:
        return Reply._from(self._client().noop()).as_tuple()

    def rset(self) -> tuple[int, bytes]:
        return Reply._from(self._client().rset()).as_tuple()

    def vrfy(self, address: str) -> tuple[int, bytes]:
        return Reply._from(self._client().vrfy(address)).as_tuple()

    verify = vrfy

    def expn(self, address: str) -> tuple[int, bytes]:
        return Reply._from(self._client().expn(address)).as_tuple()

    def help(self, args: str = "") -> bytes:
        return Reply._from(self._client().help(args or None)).message

    # -- sending ------------------------------------------------------------------------

    def _transaction(
        self,
        from_addr: str,
        to_addrs: Iterable[str],
        message: bytes | bytearray | IO[bytes],
        mail_options: Iterable[str],
        rcpt_options: Iterable[str],
    ) -> SendResult:
        raw = self._client().send(
            _address(from_addr),
            [_address(a) for a in to_addrs],
            message,
            list(mail_options),
            list(rcpt_options),
        )
        return _send_result(raw)

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes | bytearray,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Sends one message as smtplib does: returns the refused recipients as
        ``{address: (code, message)}``; raises :class:`SmtpSenderRefused`,
        :class:`SmtpRecipientsRefused` (all refused) or :class:`SmtpDataError`."""
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        to_list = list(to_addrs)
        result = self._transaction(
            from_addr, to_list, _message_bytes(msg), mail_options, rcpt_options
        )
        return _refused_or_raise(result, from_addr, to_list)

    def send_message(
        self,
        msg: email.message.Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Sends an :class:`email.message.Message`, the envelope taken from its headers
        (Bcc removed) as smtplib does."""
        sender, recipients = _envelope_of(msg, from_addr, to_addrs)
        return self.sendmail(sender, recipients, _flatten(msg), mail_options, rcpt_options)

    def send(
        self,
        message: Message,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> SendResult:
        """Sends one message and returns the outcome for every recipient; refusals are in
        the result, not exceptions. ``message`` is an :class:`email.message.Message`
        (envelope from its headers unless given), bytes, str, or a binary file object
        (streamed 64 KiB at a time)."""
        body: bytes | bytearray | IO[bytes]
        if isinstance(message, email.message.Message):
            sender, recipients = _envelope_of(message, sender, recipients)
            body = _flatten(message)
        elif isinstance(message, str):
            body = message.encode("utf-8")
        else:
            body = message
        if sender is None or recipients is None:
            raise ValueError("sender and recipients are needed unless message is a Message")
        if isinstance(recipients, str):
            recipients = [recipients]
        return self._transaction(sender, recipients, body, mail_options, rcpt_options)


    def send_batch(
        self,
        messages: Iterable[BatchMessage],
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> list[SendResult | SmtpError]:
        """Sends many messages over this connection, one transaction each, and returns an
        outcome per message, in order: a :class:`SendResult` (refusals are in it), or the
        :class:`SmtpError` that message failed with (over the server's size limit, say).

        Each message is an :class:`email.message.Message` (envelope from its headers) or a
        ``(sender, recipients, message)`` tuple. When the server pipelines, each next
        message goes out right behind the previous one's end, so a message costs one
        round trip instead of two. Every envelope is checked before anything is sent
        (``ValueError``). An error that closes the connection ends the list early: its
        last entry is that error, for the oldest message without an outcome (which may or
        may not have been delivered); the messages after it were not sent. The messages
        are handed to the engine 1,000 at a time, which bounds the copies it holds.
        """
        client = self._client()
        options = (list(mail_options), list(rcpt_options))
        items = [_batch_item(m) for m in messages]
        for sender, to, _ in items:
            _native.check_envelope(sender, to, *options)
        outcomes: list[SendResult | SmtpError] = []
        for start in range(0, len(items), _BATCH):
            group = items[start : start + _BATCH]
            raw = client.send_batch(group, *options)
            for item in raw:
                if isinstance(item, BaseException):
                    if not isinstance(item, SmtpError):
                        raise item
                    outcomes.append(item)
                else:
                    outcomes.append(_send_result(item))
            if len(raw) < len(group):
                break  # the connection ended: the rest were not sent
        return outcomes


# Messages handed to the engine per call of send_batch: bounds the copies it holds at once.
_BATCH = 1000

BatchMessage = Union[email.message.Message, tuple[str, Union[str, Sequence[str]], Union[str, bytes, bytearray]]]


def _batch_item(message: BatchMessage) -> tuple[str, list[str], bytes]:
    """``(sender, recipients, bytes)`` of a batch entry: a Message (envelope from its
    headers, Bcc removed) or a ``(sender, recipients, message)`` tuple."""
    if isinstance(message, email.message.Message):
        sender, recipients = _envelope_of(message, None, None)
        body = _flatten(message)
    else:
        sender, to, data = message
        recipients = [to] if isinstance(to, str) else list(to)
        body = bytes(_message_bytes(data))
    return (_address(sender), [_address(a) for a in recipients], body)


class SMTP_SSL(SMTP):
    """SMTP over implicit TLS (port 465). ``context`` is read as by :meth:`SMTP.starttls`."""

    default_port = SMTP_SSL_PORT
    _tls_mode = "implicit"

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
        *,
        context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            host, port, local_hostname, timeout, source_address, context=context
        )


class LMTP(SMTP):
    """LMTP (RFC 2033, port 2003): LHLO, and a delivery reply per recipient, which
    ``sendmail`` reports like a refused RCPT and :meth:`send` as ``delivery``."""

    default_port = LMTP_PORT
    _lmtp = True

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(host, port, local_hostname, timeout, source_address)


def send(
    message: Message,
    /,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    hostname: str = "localhost",
    port: int | None = None,
    username: str | None = None,
    password: str | None = None,
    local_hostname: str | None = None,
    timeout: float | None = 60,
    use_tls: bool = False,
    start_tls: bool | None = None,
    validate_certs: bool = True,
    cert_bundle: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    lmtp: bool = False,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
) -> SendResult:
    """Connects, sends one message, says QUIT: aiosmtplib's ``send`` for blocking code.

    ``use_tls`` is implicit TLS (default port 465); otherwise ``start_tls`` None upgrades
    when the server offers STARTTLS, True requires it, False never upgrades. Returns the
    per-recipient :class:`SendResult`.
    """
    if use_tls and start_tls:
        raise ValueError("use_tls and start_tls are exclusive")
    # Refuse what cannot be sent before connecting at all.
    if isinstance(message, email.message.Message):
        sender, recipients = _envelope_of(message, sender, recipients)
    if sender is None or recipients is None:
        raise ValueError("sender and recipients are needed unless message is a Message")
    if isinstance(recipients, str):
        recipients = [recipients]
    for text in [sender, *recipients, *mail_options, *rcpt_options]:
        _check_line("an argument", text)
    if use_tls:
        mode = "implicit"
    elif start_tls is None:
        mode = "starttls"
    else:
        mode = "starttls-required" if start_tls else "none"
    if port is None:
        port = SMTP_SSL_PORT if use_tls else (LMTP_PORT if lmtp else SMTP_PORT)
    tls = _tls_arguments(tls_context, cert_bundle)
    if not validate_certs:
        tls["insecure"] = True
    if local_hostname is not None:
        _check_line("local_hostname", local_hostname)
    client = _native.Client.connect(
        hostname,
        port,
        helo_name=local_hostname or _default_local_hostname(),
        tls=mode,
        timeout=_seconds(timeout),
        lmtp=lmtp,
        username=username,
        password=password,
        **(tls if mode != "none" else {}),
    )
    smtp = SMTP()
    smtp._native = client
    smtp._host = hostname
    with smtp:
        smtp._refresh()
        return smtp.send(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
        )
