"""What the blocking client (:mod:`smtpx.client`) and the asyncio client
(:mod:`smtpx.aio`) share: the result types, smtplib's rules for addresses, messages and
envelopes, the reading of an :class:`ssl.SSLContext`, and the host name to greet with.
"""

from __future__ import annotations

import contextlib
import copy
import email.generator
import email.message
import email.policy
import email.utils
import gc
import io
import os
import re
import socket
import ssl
from typing import IO, Any, Callable, Iterable, Iterator, NamedTuple, Sequence, Union

from smtpx import _native
from smtpx.errors import SmtpDataError, SmtpError, SmtpRecipientsRefused, SmtpSenderRefused

__all__ = [
    "LMTP_PORT",
    "SMTP_PORT",
    "SMTP_SSL_PORT",
    "Batch",
    "BatchMessage",
    "Message",
    "RecipientResult",
    "Reply",
    "SendResult",
    "bare_address",
    "batch_item",
    "check_line",
    "client_certificate",
    "default_local_hostname",
    "envelope_of",
    "flatten",
    "gc_paused",
    "message_bytes",
    "refused_or_raise",
    "seconds",
    "send_result",
    "tls_arguments",
    "tls_mode",
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


def default_local_hostname() -> str:
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


# perf: the result types are NamedTuples, not frozen dataclasses: a frozen dataclass sets
# each field through object.__setattr__, and building a SendResult with its replies cost
# about 18 us per message, more than the rest of the Python layer together. A NamedTuple
# is built from the engine's tuples in one step (bench/blocking_client.py).
class Reply(NamedTuple):
    """One server reply: ``code``, the enhanced status code (``"2.0.0"``) or None, the
    text without codes (lines joined with ``\\n``), and ``message``, the text as smtplib
    gives it (enhanced code kept, bytes). Immutable."""

    code: int
    enhanced: str | None
    text: str
    message: bytes

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.code < 300

    def as_tuple(self) -> tuple[int, bytes]:
        """smtplib's ``(code, message)``."""
        return (self.code, self.message)

    @classmethod
    def _from(cls, raw: _ReplyTuple) -> Reply:
        return cls._make(raw)


class RecipientResult(NamedTuple):
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
        """The deciding reply's enhanced status code, or None."""
        return self.final.enhanced

    @property
    def message(self) -> str:
        """The deciding reply's text."""
        return self.final.text

    @property
    def final(self) -> Reply:
        """The deciding reply: the LMTP delivery when the RCPT was accepted, else the
        RCPT reply."""
        if self.reply.ok and self.delivery is not None:
            return self.delivery
        return self.reply


class SendResult(NamedTuple):
    """The outcome of one transaction, with a result for every recipient."""

    mail: Reply
    recipients: list[RecipientResult]
    data: Reply | None
    queue_id: str | None

    @property
    def ok(self) -> bool:
        """True when the message was accepted for at least one recipient."""
        # perf: the codes compared here, not through Reply.ok (a property call each),
        # and a loop instead of any() over a generator (a frame per call).
        mail, recipients, data, _ = self
        if not 200 <= mail[0] < 300:
            return False
        if (data is None or not 200 <= data[0] < 300) and not self._lmtp:
            return False
        for recipient in recipients:
            if recipient[3]:
                return True
        return False

    @property
    def _lmtp(self) -> bool:
        return any(r.delivery is not None for r in self.recipients)

    @property
    def accepted(self) -> list[RecipientResult]:
        """The recipients the message was accepted for."""
        return [r for r in self.recipients if r.accepted]

    @property
    def refused(self) -> list[RecipientResult]:
        """The recipients refused (at RCPT, or under LMTP at delivery)."""
        return [r for r in self.recipients if not r.accepted]


def seconds(timeout: object) -> float | None:
    """A timeout in seconds, or None for the engine's RFC 5321 defaults (which is also
    what smtplib's "global default" sentinel means here)."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout)
    return None


def tls_mode(use_tls: bool, start_tls: bool | None) -> str:
    """The engine's TLS mode for aiosmtplib's ``use_tls``/``start_tls``: implicit TLS, or
    STARTTLS when offered (None), required (True) or never (False)."""
    if use_tls:
        return "implicit"
    if start_tls is None:
        return "starttls"
    return "starttls-required" if start_tls else "none"


def check_line(what: str, text: str) -> None:
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"{what} contains CR, LF or NUL: {text!r}")


def bare_address(addr: str) -> str:
    """The bare address of ``addr`` as smtplib's ``quoteaddr`` finds it
    (``"Alice <a@example.com>"`` gives ``a@example.com``)."""
    if "<" not in addr and "\r" not in addr and "\n" not in addr and "\0" not in addr:
        return addr.strip()  # perf: a bare address already (the usual case)
    check_line("an address", addr)
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


def message_bytes(msg: str | bytes | bytearray) -> bytes | bytearray:
    if isinstance(msg, str):
        # As smtplib: a str message is ASCII with any line ending.
        return _EOLS.sub("\r\n", msg).encode("ascii")
    return msg


def flatten(msg: email.message.Message) -> bytes:
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


def envelope_of(
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


def tls_arguments(context: ssl.SSLContext | None, cafile: str | None) -> dict[str, Any]:
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


def client_certificate(
    certfile: str | os.PathLike[str] | None, keyfile: str | os.PathLike[str] | None
) -> tuple[str | None, str | None]:
    """The client certificate (mutual TLS) as the engine takes it, ``(client_cert,
    client_key)``: ``certfile`` a PEM chain, leaf first, and ``keyfile`` its key (None
    when the key is in ``certfile``), as ``ssl``'s ``load_cert_chain`` reads them;
    ``(None, None)`` for none. Both files are opened here, so that a
    missing one raises ``FileNotFoundError`` before connecting, as with ``ssl``, and one
    that holds no certificate or key an ``SmtpTlsError`` (an ``ssl.SSLError``); a key
    without a certificate is a ``ValueError`` (smtplib's "certfile must be specified")."""
    if certfile is None:
        if keyfile is not None:
            raise ValueError("certfile must be specified")
        return (None, None)
    cert = os.fspath(certfile)
    key = os.fspath(keyfile) if keyfile is not None else None
    for path in (cert, key):
        if path is not None:
            with open(path, "rb"):
                pass
    # Parsed now, as ssl's load_cert_chain does: bad PEM, or a key that is not the
    # certificate's, is an SmtpTlsError (an ssl.SSLError) here, not at the handshake. No
    # roots are loaded for this check (dangerous_accept_invalid_certs).
    _native.TlsConfig.client(dangerous_accept_invalid_certs=True, client_cert=cert, client_key=key)
    return (cert, key)


# perf: tuple.__new__ is what NamedTuple._make calls, without _make's Python frame and
# length check (the engine's tuples have the fields' number): about half the cost of
# building a send_batch outcome (bench/blocking_client.py).
_tuple_new = tuple.__new__


def send_result(raw: _native_Result) -> SendResult:
    """A SendResult from the native (mail, recipients, data, queue id) tuple."""
    new = _tuple_new
    mail, recipients, data, queue_id = raw
    return new(
        SendResult,
        (
            new(Reply, mail),
            [
                new(
                    RecipientResult,
                    (address, new(Reply, reply), None if delivery is None else new(Reply, delivery), accepted),
                )
                for address, reply, delivery, accepted in recipients
            ],
            None if data is None else new(Reply, data),
            queue_id,
        ),
    )


# Batch outcomes are built by the engine as these classes (see _native's results).
_native.register_result_types(Reply, RecipientResult, SendResult)


def refused_or_raise(
    raw: _native_Result, from_addr: str, to_list: list[str]
) -> dict[str, tuple[int, bytes]]:
    """smtplib's sendmail outcome, read straight from the engine's result tuple (no
    SendResult is built: sendmail does not return one): the refused recipients as
    ``{address: (code, message)}``, or the exception smtplib raises."""
    mail, recipients, data, _ = raw
    if not 200 <= mail[0] < 300:
        raise SmtpSenderRefused(mail[0], mail[3], from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    lmtp = False
    for given, (_, reply, delivery, accepted) in zip(to_list, recipients):
        lmtp = lmtp or delivery is not None
        if not accepted:
            # The deciding reply, as RecipientResult.final says.
            final = delivery if delivery is not None and 200 <= reply[0] < 300 else reply
            refused[given] = (final[0], final[3])
    if len(refused) == len(to_list):
        raise SmtpRecipientsRefused(refused)
    if not lmtp and (data is None or not 200 <= data[0] < 300):
        raise SmtpDataError(data[0] if data else 554, data[3] if data else b"message not sent")
    return refused


BatchMessage = Union[email.message.Message, tuple[str, Union[str, Sequence[str]], Union[str, bytes, bytearray]]]


def batch_item(message: BatchMessage) -> tuple[str, list[str], bytes]:
    """``(sender, recipients, bytes)`` of a batch entry: a Message (envelope from its
    headers, Bcc removed) or a ``(sender, recipients, message)`` tuple."""
    if isinstance(message, email.message.Message):
        sender, recipients = envelope_of(message, None, None)
        body = flatten(message)
    else:
        sender, to, data = message
        recipients = [to] if isinstance(to, str) else list(to)
        body = bytes(message_bytes(data))
    return (bare_address(sender), [bare_address(a) for a in recipients], body)


def batch_items(messages: Iterable[BatchMessage]) -> list[tuple[str, list[str], bytes]]:
    """:func:`batch_item` of every entry. perf: a batch usually repeats one envelope (a
    newsletter, a queue run to one relay): when an entry's sender and recipients equal
    the previous entry's, that envelope's bare addresses are used again instead of being
    found again (``bench/blocking_client.py``). The previous recipients are compared
    with a copy, so a list changed in place between entries is read again."""
    items: list[tuple[str, list[str], bytes]] = []
    append = items.append
    last_sender: object = None
    last_to: object = None
    envelope: tuple[str, list[str]] = ("", [])
    for message in messages:
        if type(message) is not tuple:
            append(batch_item(message))
            last_sender = None
            continue
        sender, to, data = message  # batch_item's ValueError for another length
        if sender != last_sender or to != last_to or type(sender) is not str:
            item = batch_item(message)
            append(item)
            envelope = (item[0], item[1])
            last_sender = sender
            last_to = to if type(to) in (str, tuple) else list(to)
            continue
        append((envelope[0], envelope[1], data if type(data) is bytes else bytes(message_bytes(data))))
    return items


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """perf: Python's cyclic garbage collector paused while a batch's outcomes are built.
    They are thousands of tuples without cycles, and each collection it would run meanwhile
    walks all of them again: about 15 % of the client's CPU per message of a send_batch
    (bench/blocking_client.py). Reference counting still frees everything as usual; the
    collector runs again, as it was, at the end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Batch:
    """What both clients' ``send_batch`` do around the engine's batch: every envelope
    checked before anything is sent (``ValueError``), the messages handed over
    :data:`BATCH_GROUP` at a time (which bounds the copies the engine holds), and the
    outcomes collected in order, a :class:`SendResult` or the :class:`SmtpError` of each
    message."""

    def __init__(
        self, messages: Iterable[BatchMessage], mail_options: Sequence[str], rcpt_options: Sequence[str]
    ) -> None:
        self.options = (list(mail_options), list(rcpt_options))
        with gc_paused():  # thousands of new tuples and lists, no cycles (see gc_paused)
            self.items = batch_items(messages)
        if len(self.items) > BATCH_GROUP:
            # The engine checks each group before sending any of it; with several
            # groups, a bad envelope in a later one must stop the first, too.
            # perf: an envelope that batch_items shared with the previous entry (the
            # same objects) was checked with it.
            last: tuple[object, object] = (None, None)
            for sender, to, _ in self.items:
                if sender is not last[0] or to is not last[1]:
                    _native.check_envelope(sender, to, *self.options)
                    last = (sender, to)
        self.outcomes: list[SendResult | SmtpError] = []

    def groups(self) -> Iterator[list[tuple[str, list[str], bytes]]]:
        """The messages, :data:`BATCH_GROUP` at a time."""
        for start in range(0, len(self.items), BATCH_GROUP):
            yield self.items[start : start + BATCH_GROUP]

    def collect(self, raw: list[Any], sent: int) -> bool:
        """Takes the engine's outcomes of a group of ``sent`` messages (each a
        :class:`SendResult` or an exception, built by the engine); False when the
        connection ended (the rest were not sent)."""
        for item in raw:
            if type(item) is not SendResult and not isinstance(item, SmtpError):
                raise item
        self.outcomes += raw
        return len(raw) >= sent

    def reporter(
        self, on_result: Callable[[int, SendResult | SmtpError], object]
    ) -> Callable[[int, Any], object]:
        """The engine's per-outcome callback for the next group: ``on_result`` with the
        message's index in the whole batch."""
        offset = len(self.outcomes)

        def report(index: int, outcome: Any) -> object:
            if isinstance(outcome, BaseException) and not isinstance(outcome, SmtpError):
                raise outcome
            return on_result(offset + index, outcome)

        return report


# Messages handed to the engine per call of a batch: bounds the copies it holds at once.
BATCH_GROUP = 1000
