"""Property tests (hypothesis) of the aiosmtpd adapter's reading of hook answers, end to
end: a handler's hook (or ``authenticator``) returns any value at all, the adapter
(:class:`smtpx.adapter.HandlerConnection`) turns it into an answer, and the engine's
connection layer (``smtpx._native.ServerConnection``, driven in memory) says it on the
wire. Whatever the value:

- nothing raises out of the adapter or the engine, and every line written is a reply line;
- a well-formed positive status line (``"250 Queued as 42"``) is said as it is;
- anything else that is not clearly a success (None, which accepts, aside) is refused
  with a 4xx or 5xx reply: a hook cannot accept by accident;
- an authenticator's result authenticates only when it is ``True`` or has a ``success``
  attribute that is ``True``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from smtpx import _native  # noqa: E402
from smtpx.adapter import AuthResult, HandlerConnection, ServerSettings, run_step  # noqa: E402

SC = _native.ServerConnection
REPLY_LINE = re.compile(rb"\d{3}([ -][^\r\n]*)?\r\n")
#: A status line the engine must say as it is: a code it knows, printable text.
WELL_FORMED_CODES = ["250", "251", "252"]
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
well_formed = st.builds(lambda c, t: f"{c} {t}".rstrip(), st.sampled_from(WELL_FORMED_CODES), printable)

# Anything a hook might return: odd text (control characters, several lines, codes of
# every class, a lone code, a continuation line), lists, and objects that are no status.
codes = st.integers(min_value=0, max_value=999).map(lambda n: f"{n:03d}")
status_like = st.builds(
    lambda code, sep, text, end: f"{code}{sep}{text}{end}",
    codes,
    st.sampled_from(["", " ", "-", "\t", "\r\n", "\n250 "]),
    st.text(max_size=30),
    st.sampled_from(["", "\r\n", "\n", "\r", "\r\n250 smuggled"]),
)
scalar = st.one_of(
    st.none(),
    st.text(max_size=40),
    well_formed,
    status_like,
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.binary(max_size=20),
    st.just(object()),
    st.just(b"250 OK"),
    st.just("250 OK".encode("utf-16")),
)
answers = st.one_of(
    scalar,
    st.lists(st.one_of(well_formed, status_like, st.text(max_size=20), st.integers(), st.none()), max_size=3),
    st.tuples(well_formed, st.one_of(well_formed, status_like)),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


class Exploding:
    """A result whose every look-up fails."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def __bool__(self) -> bool:
        raise RuntimeError("no truth")


class Truthy:
    """Truthy, equal to True, with a success that is truthy but not True."""

    success = 1

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


success_values = st.one_of(
    st.booleans(), st.none(), st.integers(), st.text(max_size=5), st.just([True]), st.just(Truthy())
)
auth_results = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(),
    st.text(max_size=20),
    status_like,
    st.just(Exploding()),
    st.just(Truthy()),
    st.builds(
        AuthResult,
        success=success_values,
        handled=st.booleans(),
        message=st.one_of(st.none(), status_like, st.text(max_size=20), st.integers()),
    ),
)


def drive(handler: Any, script: list[bytes], *, lmtp: bool = False, authenticator: Any = None) -> list[bytes]:
    """Runs a conversation: one command per element of ``script``, each after the replies
    to the previous one. Returns what was written after each (the greeting first)."""
    adapter_settings = ServerSettings(
        server_hostname="mx.test", auth_require_tls=False, authenticator=authenticator, lmtp=lmtp
    )
    conn = HandlerConnection(handler, None, adapter_settings, ("192.0.2.1", 2525), False)
    server = SC("mx.test", lmtp=lmtp, auth=True, allow_insecure_auth=True)

    def resolve(awaitable: Any) -> Any:
        raise AssertionError(f"plain hooks never yield: {awaitable!r}")

    def answer(event: Any) -> Any:
        kind = event.kind
        if kind == "hello":
            step = conn.hello(event.verb or "", event.domain or "")
        elif kind == "auth":
            step = conn.auth(event.mechanism or "", event.username or "", event.password or "")
        elif kind == "mail":
            step = conn.mail(event.sender or "", event.options)
        elif kind == "rcpt":
            step = conn.rcpt(event.recipient or "", event.options)
        elif kind == "message_end":
            step = conn.data(event.data or b"")
        elif kind == "verify":
            step = conn.vrfy(event.argument or "")
        elif kind == "reset":
            step = conn.reset()
        else:
            return None
        return run_step(step, resolve)

    said: list[bytes] = []
    pending = list(script)
    out = b""
    while True:
        kind, payload = server.next_action(0.0)
        if kind == SC.CONNECT:
            server.connected(None)
        elif kind == SC.HOOK:
            server.answer(answer(payload))
        elif kind == SC.WRITE:
            out += payload
        elif kind == SC.READ:
            said.append(out)
            out = b""
            if pending:
                server.receive(pending.pop(0), 0.0)
            else:
                server.receive_eof()
        elif kind == SC.CLOSE:
            said.append(out)
            break
        else:
            raise AssertionError(f"unexpected action {kind}")
    for chunk in said:
        assert REPLY_LINE.sub(b"", chunk) == b"", chunk
    return said


def last_line(chunk: bytes) -> str:
    return chunk.decode().split("\r\n")[-2]


def is_positive(line: str) -> bool:
    return line[:1] in ("2", "3")


def check(value: Any, reply: str, engine_default: bool = False) -> None:
    """The reply to a command whose hook returned ``value``."""
    status = value.rstrip("\r\n") if isinstance(value, str) else None
    if value is None:
        assert is_positive(reply), reply
    elif status is not None and re.fullmatch(r"25[012]( [\x20-\x7e]*)?", status):
        if not engine_default:
            assert reply.rstrip() == status.rstrip(), (value, reply)
        else:
            assert reply.startswith("250"), (value, reply)
    elif is_positive(reply):
        # Accepted: the hook must have said so in words the engine repeats (or, for EHLO,
        # whose reply lists the extensions, a line starting with 2).
        assert isinstance(value, str), (value, reply)
        if engine_default:
            assert value.startswith("2"), (value, reply)
        else:
            assert reply[:3] == status[:3] and status[:1] == "2", (value, reply)
    else:
        assert reply[:1] in ("4", "5"), (value, reply)


SMTP_SCRIPT = [
    b"EHLO client.test\r\n",
    b"MAIL FROM:<a@example.org>\r\n",
    b"RCPT TO:<b@example.net>\r\n",
    b"DATA\r\n",
    b"Subject: hi\r\n\r\nhello\r\n.\r\n",
    b"VRFY someone\r\n",
    b"QUIT\r\n",
]


def handler_with(hook: str, value: Any) -> Any:
    def method(self: Any, server: Any, session: Any, envelope: Any, *args: Any) -> Any:
        if hook == "handle_MAIL":
            envelope.mail_from = args[0]
        if hook == "handle_RCPT":
            envelope.rcpt_tos.append(args[0])
        return value

    return type("Handler", (), {hook: method})()


# Found by this test: a 3xx reply to MAIL or RCPT was said and taken as an acceptance.
@example(value="354 go on")
@settings(max_examples=300, deadline=None)
@given(value=answers)
def test_handle_mail_answer(value: Any) -> None:
    said = drive(handler_with("handle_MAIL", value), SMTP_SCRIPT[:2] + [b"QUIT\r\n"])
    check(value, last_line(said[2]))


@example(value="300")
@settings(max_examples=300, deadline=None)
@given(value=answers)
def test_handle_rcpt_answer(value: Any) -> None:
    said = drive(handler_with("handle_RCPT", value), SMTP_SCRIPT[:3] + [b"QUIT\r\n"])
    check(value, last_line(said[3]))


# Found by this test: an empty list from handle_DATA accepted the message.
@example(value=[])
@settings(max_examples=300, deadline=None)
@given(value=answers)
def test_handle_data_answer(value: Any) -> None:
    said = drive(handler_with("handle_DATA", value), SMTP_SCRIPT)
    assert said[4].startswith(b"354 "), said
    reply = last_line(said[5])
    if isinstance(value, list) and value and all(isinstance(v, str) and _parses(v) for v in value):
        # Under SMTP a list is read as LMTP's per-recipient answer: its first line counts.
        check(value[0], reply)
    elif isinstance(value, list):
        # No line, or one that is no status line: refused.
        assert reply[:1] in ("4", "5"), (value, reply)
    else:
        check(value, reply)


# Found by this test: a list of non-strings reading "250" accepted EHLO, and a "220"
# line among 250 lines was said as an acceptance.
@example(value=[])
@example(value=[250])
@example(value=["250 ok", "220 sneaky"])
@settings(max_examples=300, deadline=None)
@given(value=answers)
def test_handle_ehlo_answer(value: Any) -> None:
    said = drive(handler_with("handle_EHLO", value), [SMTP_SCRIPT[0], b"QUIT\r\n"])
    reply = last_line(said[1])
    if isinstance(value, (list, tuple)):
        # aiosmtpd's list of responses: accepted only when all of them are 250 lines
        # without line breaks (an empty list is the `responses` the hook was given,
        # returned unchanged); an edited list is said as one reply, its last line "250".
        ok = isinstance(value, list) and all(
            isinstance(v, str) and v.startswith("250") and "\r" not in v and "\n" not in v for v in value
        )
        assert (reply[:3] == "250" if ok else reply[:1] in ("4", "5")), (value, reply)
    else:
        check(value, reply, engine_default=True)


@settings(max_examples=300, deadline=None)
@given(value=answers)
def test_handle_vrfy_answer(value: Any) -> None:
    said = drive(handler_with("handle_VRFY", value), [SMTP_SCRIPT[0], SMTP_SCRIPT[5], b"QUIT\r\n"])
    check(value, last_line(said[2]))


@example(value=[], recipients=2)
@example(value="\r\n", recipients=1)
@settings(max_examples=300, deadline=None)
@given(value=answers, recipients=st.integers(min_value=1, max_value=3))
def test_lmtp_data_answer(value: Any, recipients: int) -> None:
    script = [b"LHLO client.test\r\n", b"MAIL FROM:<a@example.org>\r\n"]
    script += [f"RCPT TO:<r{i}@example.net>\r\n".encode() for i in range(recipients)]
    script += [b"DATA\r\n", b"hello\r\n.\r\n", b"QUIT\r\n"]
    said = drive(handler_with("handle_DATA", value), script, lmtp=True)
    assert said[3 + recipients].startswith(b"354 "), said
    replies = said[4 + recipients].decode().split("\r\n")[:-1]
    assert len(replies) == recipients, replies
    if isinstance(value, str) and "\n" in value:
        lines = [line for line in value.replace("\r\n", "\n").split("\n") if line]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        lines = list(value)
    elif value is None:
        lines = []
    else:
        lines = [value]
    for i, reply in enumerate(replies):
        if value is None:
            assert is_positive(reply), (value, replies)
        elif not lines:
            # No line at all says nothing: no acceptance.
            assert reply[:1] in ("4", "5"), (value, replies)
        elif not all(isinstance(line, str) and _parses(line) for line in lines):
            # One bad line spoils the answer: every recipient is refused.
            assert reply[:1] in ("4", "5"), (value, replies)
        else:
            check(lines[min(i, len(lines) - 1)], reply)


def _parses(line: str) -> bool:
    """A status line as the engine's reply parser reads it (roughly: the tests of
    :func:`check` say where it matters)."""
    return re.fullmatch(r"[2-5][0-5]\d( [^\r\n]*)?", line.rstrip("\r\n")) is not None


@example(result=AuthResult(success=1))
@example(result=Truthy())
@example(result=Exploding())
@example(result=AuthResult(success=False, handled=False, message="334 more"))
@settings(max_examples=300, deadline=None)
@given(result=auth_results)
def test_authenticator_result(result: Any) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert (data.login, data.password) == (b"alice", b"pw")
        return result

    # "\0alice\0pw"
    said = drive(object(), [SMTP_SCRIPT[0], b"AUTH PLAIN AGFsaWNlAHB3\r\n", b"QUIT\r\n"], authenticator=authenticator)
    reply = last_line(said[2])
    clearly = result is True or (
        not isinstance(result, Exploding) and getattr(result, "success", None) is True
    )
    if clearly:
        assert reply.startswith("235 "), (result, reply)
    else:
        assert reply[:1] in ("4", "5"), (result, reply)
