"""The client: :class:`SMTP`, :class:`SMTP_SSL` and :class:`LMTP` with smtplib's method
names and return conventions, plus :meth:`SMTP.send` and the one-call :func:`send`.

How this maps onto smtplib
--------------------------
The Rust engine opens a session in one step: it connects, reads the greeting and sends
EHLO (falling back to HELO). So ``connect()`` (called by the constructor when a host is
given) has already greeted, and ``ehlo_or_helo_if_needed()`` has nothing left to do;
``ehlo()`` and ``helo()`` send the command again, as smtplib's do, and refresh
``esmtp_features``. ``starttls()`` upgrades and greets again (smtplib users then call
``ehlo()`` by hand, which sends one more EHLO). ``sendmail()`` pipelines MAIL, RCPT and
DATA (or BDAT) when the server allows it, and the engine sends RSET after a failed
transaction itself. ``docmd``, ``putcmd``/``getreply``, ``mail``, ``rcpt`` and ``data``
write what the caller asks for, as smtplib does; ``putcmd`` waits for the reply, which
``getreply`` then returns.

``set_debuglevel(1)`` prints what smtplib prints on standard error (``connect:``,
``send: 'EHLO ...\\r\\n'``, ``reply: b'250-...\\r\\n'``, ``reply: retcode (250); Msg:
...``; level 2 adds the time), from the engine's wire trace: credentials show as
``AUTH PLAIN <redacted>`` and ``<SASL response redacted>``, message content as
``<message content, N octets>``, and smtplib's ``data:`` lines are not printed. While the
``smtpx.wire`` logger is enabled for DEBUG when connecting, each line is also logged
there as ``conn=ID C: text``.

``sendmail`` sends addresses as given, a local part without a domain too (local
submission, LMTP), and raises a 421 as the class of its phase (``SMTPSenderRefused``,
``SMTPRecipientsRefused``, ``SMTPDataError``), closing the connection, as smtplib does.
``SMTP_SSL(keyfile=, certfile=)`` and ``starttls(keyfile=, certfile=)`` show a client
certificate to a server that asks for one.

Differences (the README's table has them all with their reasons): message bytes are
canonicalised to CRLF (smtplib sends bare LF in bytes as is), ``send(s)`` is smtpx's per-recipient send, not smtplib's raw
write, and ``login()``/``auth()`` on a connection without TLS raise
:class:`~smtpx.errors.SmtpInsecureAuthError` (an ``smtplib.SMTPException``) without
sending the credentials, where smtplib sends them in clear: call ``starttls()`` first, or
set ``allow_insecure_auth=True`` (keyword or attribute) for a trusted network.
"""

from __future__ import annotations

import base64
import email.message
import hmac
import socket
import ssl
import smtplib
from typing import IO, Any, Callable, Iterable, Sequence

from smtpx import _native
from smtpx._trace import ClientTrace, wire_logging
from smtpx.common import (
    LMTP_PORT,
    SMTP_PORT,
    SMTP_SSL_PORT,
    Batch,
    BatchMessage,
    Message,
    RecipientResult,
    Reply,
    SendResult,
    bare_address,
    check_line,
    client_certificate,
    default_local_hostname,
    envelope_of,
    flatten,
    gc_paused,
    message_bytes,
    refused_or_raise,
    seconds,
    send_result,
    tls_arguments,
    tls_mode,
)
from smtpx.errors import (
    SmtpAuthError,
    SmtpDataError,
    SmtpDisconnected,
    SmtpError,
    SmtpHeloError,
    SmtpNotSupportedError,
    SmtpServerClosed,
    closed_in_phase,
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

class SMTP:
    """An SMTP client connection with smtplib's interface (see the module docs).

    ``SMTP(host, port)`` connects and greets at once; use it as a context manager to QUIT
    at the end. ``timeout`` (seconds) bounds the connection and every reply; the default
    waits as RFC 5321 says (minutes). ``allow_insecure_auth`` (also an attribute, read by
    each :meth:`login`) lets credentials go over a connection without TLS.
    """

    default_port = SMTP_PORT
    _tls_mode = "none"
    _lmtp = False
    _trace: ClientTrace

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None | object = None,
        source_address: tuple[str, int] | None = None,
        *,
        context: ssl.SSLContext | None = None,
        allow_insecure_auth: bool = False,
    ) -> None:
        if local_hostname is not None:
            check_line("local_hostname", local_hostname)
        self.allow_insecure_auth = allow_insecure_auth
        self.source_address = source_address
        self.user: str | None = None
        self.password: str | None = None
        self._replies: list[tuple[int, bytes]] = []
        self._auth_challenge_count = 0
        self._host = host
        self.local_hostname = local_hostname
        self.timeout = timeout
        self._context = context
        # The client certificate (SMTP_SSL's certfile/keyfile), for the handshake.
        self._client_certificate: tuple[str | None, str | None] = (None, None)
        self._trace = ClientTrace()
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
        """Connects (from ``source_address``, a ``(host, port)`` to bind to, when given)
        and greets; returns the server's greeting as ``(code, message)``, as smtplib's
        ``connect`` does. A refused connection raises ``ConnectionRefusedError`` (as
        :class:`~smtpx.errors.SmtpConnectionRefused`), a refusing greeting
        :class:`~smtpx.errors.SmtpConnectError`, a refused EHLO and HELO
        :class:`~smtpx.errors.SmtpHeloError`."""
        if source_address is not None:
            self.source_address = source_address
        check_line("host", host)
        unix_path = None
        if host.startswith("/"):
            if not self._lmtp:
                raise ValueError("a Unix socket path is for LMTP (smtpx.LMTP('/path'))")
            unix_path = host
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
            cert, key = self._client_certificate
            tls = {**tls_arguments(self._context, None), "client_cert": cert, "client_key": key}
        trace = self._trace
        trace.log = wire_logging()
        trace.connecting(host, port)
        sock_fd = None
        if self.source_address is not None:
            sock_fd = _bound_connection(host, port, self.source_address, seconds(self.timeout))
        self._native = _native.Client.connect(
            host,
            port,
            sock_fd=sock_fd,
            unix_path=unix_path,
            helo_name=self.local_hostname or default_local_hostname(),
            tls=self._tls_mode,
            timeout=seconds(self.timeout),
            lmtp=self._lmtp,
            trace=trace if trace.wanted else None,
            **tls,
        )
        self._refresh()
        greeting, _ = self._native.kept_replies()
        return (greeting[0], greeting[3]) if greeting is not None else (220, b"")

    # -- debug output -------------------------------------------------------------------

    @property
    def debuglevel(self) -> int:
        """smtplib's debug level (see :meth:`set_debuglevel`); assignable."""
        return self._trace.level

    @debuglevel.setter
    def debuglevel(self, level: int) -> None:
        self.set_debuglevel(level)

    def set_debuglevel(self, debuglevel: int) -> None:
        """Prints the conversation on standard error as smtplib does: 0 (the default)
        nothing, 1 each command and reply line, 2 the same with the time. May be changed
        at any time, connected or not. Credentials and message content are never
        printed (see the module docs)."""
        self._trace.set_level(int(debuglevel))
        if self._native is not None:
            self._native.set_trace(self._trace if self._trace.wanted else None)

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
        """Sends QUIT, closes, and returns the server's reply to QUIT as ``(code,
        message)`` (``(221, b"")`` when it hung up without one)."""
        native, self._native = self._native, None
        if native is None:
            raise SmtpDisconnected("please run connect() first")
        reply = native.quit()
        self.esmtp_features = {}
        self.does_esmtp = False
        self.ehlo_resp = self.helo_resp = None
        return (reply[0], reply[3]) if reply is not None else (221, b"")

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
        """Sends EHLO (LHLO for :class:`LMTP`) as ``name`` (default: ``local_hostname``)
        and returns the reply as ``(code, message)``; a 250 refreshes ``esmtp_features``,
        ``does_esmtp`` and ``ehlo_resp``, as smtplib's ``ehlo`` does."""
        if name:
            check_line("name", name)
        code, message = self._answer(lambda c: c.hello(True, name or None))
        self.ehlo_resp = message
        if code == 250:
            self._refresh()
        else:
            self.does_esmtp = False
        return (code, message)

    def helo(self, name: str = "") -> tuple[int, bytes]:
        """Sends HELO as ``name`` (default: ``local_hostname``) and returns the reply;
        ``helo_resp`` keeps its text and the session then knows no extensions."""
        if name:
            check_line("name", name)
        code, message = self._answer(lambda c: c.hello(False, name or None))
        self.helo_resp = message
        if 200 <= code <= 299:
            self._refresh()
        return (code, message)

    def ehlo_or_helo_if_needed(self) -> None:
        """Greets when the session has not: never needed here, since ``connect()``
        greets (and raises :class:`~smtpx.errors.SmtpHeloError` when EHLO and HELO are
        both refused); kept for smtplib code that calls it."""
        self._client()

    def has_extn(self, opt: str) -> bool:
        """True when the server announced the extension ``opt`` (any case) in its last
        EHLO reply."""
        return opt.lower() in self.esmtp_features

    # -- commands as the caller writes them (smtplib's low-level API) -------------------

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Sends ``cmd`` (and ``args``) as one line. Unlike smtplib, this waits for the
        reply, which the next :meth:`getreply` returns; CR and LF raise ``ValueError``
        as in smtplib."""
        line = cmd if args == "" else f"{cmd} {args}"
        if "\r" in line or "\n" in line:
            shown = line.replace("\n", "\\n").replace("\r", "\\r")
            raise ValueError(
                f"command and arguments contain prohibited newline characters: {shown}"
            )
        self._replies.append(self._command(line))

    def getreply(self) -> tuple[int, bytes]:
        """The reply to the last :meth:`putcmd` as ``(code, message)``, message lines
        joined with ``\\n`` as smtplib gives them."""
        if not self._replies:
            self.close()
            raise SmtpDisconnected("Connection unexpectedly closed")
        return self._replies.pop(0)

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Sends one command line and returns its reply as ``(code, message)``."""
        self.putcmd(cmd, args)
        return self.getreply()

    def _command(self, line: str, secret: bool = False) -> tuple[int, bytes]:
        allow = bool(self.allow_insecure_auth)
        return self._answer(lambda c: c.command(line, secret=secret, allow_insecure_auth=allow))

    def _answer(
        self, call: Callable[[_native.Client], tuple[int, str | None, str, bytes]]
    ) -> tuple[int, bytes]:
        """One command's reply as ``(code, message)``. A 421 is returned like any reply,
        as smtplib returns it; the server has hung up, so the connection is closed (as
        smtplib's sendmail closes it after a 421)."""
        try:
            return _pair(call(self._client()))
        except SmtpServerClosed as closing:
            self.close()
            message = closing.smtp_error
            return (closing.smtp_code, message if isinstance(message, bytes) else message.encode())

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """Sends ``MAIL FROM:`` with the address as given (quoted as smtplib's
        ``quoteaddr`` does) and the ESMTP ``options``; returns the reply. ``SMTPUTF8``
        among the options needs the server to offer it (SmtpNotSupportedError)."""
        check_line("the sender", sender)
        option_list = ""
        if options and self.does_esmtp:
            if any(o.lower() == "smtputf8" for o in options) and not self.has_extn("smtputf8"):
                raise SmtpNotSupportedError("SMTPUTF8 not supported by server")
            option_list = " " + " ".join(options)
        return self.docmd("MAIL", f"FROM:{smtplib.quoteaddr(sender)}{option_list}")

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """Sends ``RCPT TO:`` with the address as given and the ESMTP ``options``;
        returns the reply."""
        check_line("the recipient", recip)
        option_list = " " + " ".join(options) if options and self.does_esmtp else ""
        return self.docmd("RCPT", f"TO:{smtplib.quoteaddr(recip)}{option_list}")

    def data(self, msg: str | bytes | bytearray) -> tuple[int, bytes]:
        """Sends DATA and, after the server's 354, the message (line ends made CRLF,
        leading dots doubled, the final dot added); returns the final reply. Any reply
        to DATA but 354 raises :class:`~smtpx.errors.SmtpDataError`."""
        code, message = self.docmd("DATA")
        if code != 354:
            raise SmtpDataError(code, message)
        body = msg.encode("ascii") if isinstance(msg, str) else bytes(msg)
        return self._answer(lambda c: c.content(body))

    # -- authentication with a caller's mechanism (smtplib's auth API) -----------------

    def auth(
        self,
        mechanism: str,
        authobject: Callable[..., str | None],
        *,
        initial_response_ok: bool = True,
    ) -> tuple[int, bytes]:
        """Authenticates with ``mechanism``, ``authobject(challenge)`` giving each
        response (``authobject()`` the initial one, when ``initial_response_ok``), as
        smtplib's ``auth``: returns ``(235 or 503, message)``, raises
        :class:`~smtpx.errors.SmtpAuthError` otherwise. The responses never appear in the
        debug output; without TLS they are not sent unless ``allow_insecure_auth``."""
        mechanism = mechanism.upper()
        check_line("the mechanism", mechanism)
        initial = authobject() if initial_response_ok else None
        if initial is not None:
            encoded = base64.b64encode(initial.encode("ascii")).decode("ascii")
            code, resp = self._command(f"AUTH {mechanism} {encoded}")
            self._auth_challenge_count = 1
        else:
            code, resp = self._command(f"AUTH {mechanism}")
            self._auth_challenge_count = 0
        while code == 334:
            self._auth_challenge_count += 1
            answer = authobject(base64.decodebytes(resp)) or ""
            code, resp = self._command(
                base64.b64encode(answer.encode("ascii")).decode("ascii"), secret=True
            )
            if self._auth_challenge_count > _MAX_CHALLENGES:
                raise SmtpError(
                    "Server AUTH mechanism infinite loop. Last response: " + repr((code, resp))
                )
        if code in (235, 503):
            return (code, resp)
        raise SmtpAuthError(code, resp)

    def auth_plain(self, challenge: bytes | None = None) -> str:
        """smtplib's PLAIN authobject: ``\\0user\\0password`` from ``self.user`` and
        ``self.password`` (set by :meth:`login`)."""
        return f"\0{self.user}\0{self.password}"

    def auth_login(self, challenge: bytes | None = None) -> str:
        """smtplib's LOGIN authobject: the user name first, then the password."""
        if challenge is None or self._auth_challenge_count < 2:
            return str(self.user)
        return str(self.password)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        """smtplib's CRAM-MD5 authobject: ``user`` and the HMAC-MD5 of the challenge."""
        if challenge is None:
            return None
        digest = hmac.HMAC(str(self.password).encode("ascii"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"

    def starttls(
        self,
        keyfile: str | None = None,
        certfile: str | None = None,
        context: ssl.SSLContext | None = None,
        *,
        cafile: str | None = None,
    ) -> tuple[int, bytes]:
        """Upgrades with STARTTLS and greets again; returns the server's 220 as ``(code,
        message)``. A refusal raises :class:`~smtpx.errors.SmtpReplyError`. Only
        ``context``'s verification setting and CA certificates are used (``CERT_NONE`` or
        ``check_hostname=False`` means no verification); ``cafile`` adds a PEM file of
        trusted CAs. ``certfile`` (a PEM chain, leaf first) and ``keyfile`` (its key,
        when not in ``certfile``) are the client certificate shown to a server that asks
        for one, as in smtplib before Python 3.12; unlike smtplib they may come with a
        ``context``, since a chain loaded into an ``ssl.SSLContext`` cannot be read
        back from it."""
        cert, key = client_certificate(certfile, keyfile)
        client = self._client()
        if not self.has_extn("starttls"):
            raise SmtpNotSupportedError("STARTTLS extension not supported by server.")
        client.starttls(self._host, **tls_arguments(context, cafile), client_cert=cert, client_key=key)
        self._refresh()
        _, reply = client.kept_replies()
        return (reply[0], reply[3]) if reply is not None else (220, b"")

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """Authenticates with PLAIN or LOGIN (whichever the server offers).

        Unlike smtplib, on a connection without TLS this raises
        :class:`~smtpx.errors.SmtpInsecureAuthError` and sends nothing, unless
        ``allow_insecure_auth`` is true; the connection stays usable (``starttls()``, then
        ``login()`` again)."""
        check_line("the user name", user)
        check_line("the password", password)
        client = self._client()
        if not self.has_extn("auth"):
            raise SmtpNotSupportedError("SMTP AUTH extension not supported by server.")
        self.user, self.password = user, password
        if not initial_response_ok:
            # smtplib's way: each response only after the server's 334.
            offered = self.esmtp_features["auth"].upper().split()
            for mechanism, method in (("PLAIN", self.auth_plain), ("LOGIN", self.auth_login)):
                if mechanism in offered:
                    return self.auth(mechanism, method, initial_response_ok=False)
            raise SmtpNotSupportedError("No suitable authentication method found.")
        try:
            return Reply._from(
                client.login(user, password, allow_insecure_auth=bool(self.allow_insecure_auth))
            ).as_tuple()
        except SmtpServerClosed as closing:
            # As smtplib: a 421 to AUTH is an SMTPAuthenticationError; the server hung up.
            self.close()
            raise closed_in_phase(closing, "", []) from None

    # -- simple commands ----------------------------------------------------------------

    def noop(self) -> tuple[int, bytes]:
        """Sends NOOP; returns the reply as ``(code, message)``."""
        return self._answer(lambda c: c.noop())

    def rset(self) -> tuple[int, bytes]:
        """Sends RSET (abandoning a transaction begun with :meth:`mail`); returns the
        reply as ``(code, message)``."""
        self._replies.clear()
        return self._answer(lambda c: c.rset())

    def vrfy(self, address: str) -> tuple[int, bytes]:
        """Sends VRFY for ``address``; returns the reply as ``(code, message)``."""
        return self._answer(lambda c: c.vrfy(address))

    verify = vrfy

    def expn(self, address: str) -> tuple[int, bytes]:
        """Sends EXPN for ``address``; returns the reply as ``(code, message)``."""
        return self._answer(lambda c: c.expn(address))

    def help(self, args: str = "") -> bytes:
        """Sends HELP (with a topic when given); returns the reply's message."""
        return self._answer(lambda c: c.help(args or None))[1]

    # -- sending ------------------------------------------------------------------------

    def _transaction(
        self,
        from_addr: str,
        to_addrs: Iterable[str],
        message: bytes | bytearray | IO[bytes],
        mail_options: Iterable[str],
        rcpt_options: Iterable[str],
    ) -> Any:
        """The engine's result tuple of one transaction."""
        return self._client().send(
            bare_address(from_addr),
            [bare_address(a) for a in to_addrs],
            message,
            list(mail_options),
            list(rcpt_options),
        )

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
        :class:`SmtpRecipientsRefused` (all refused) or :class:`SmtpDataError`, also for a
        421 in that phase (which closes the connection, as in smtplib). Addresses go out
        as given: a local part without a domain (``"postmaster"``) is sent too; a CR, LF
        or NUL, or anything else that is not an address, is a ``ValueError``."""
        to_list = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        try:
            # perf: the engine finds the bare addresses (as bare_address does) and builds
            # the result tuple only when something was refused.
            result = self._client().sendmail(
                from_addr,
                to_list,
                msg if type(msg) is bytes else message_bytes(msg),
                mail_options if type(mail_options) is tuple else list(mail_options),
                rcpt_options if type(rcpt_options) is tuple else list(rcpt_options),
            )
        except SmtpServerClosed as closing:
            # As smtplib: a 421 closes the connection and raises the class of its phase.
            self.close()
            raise closed_in_phase(closing, from_addr, to_list) from None
        if result is None:
            return {}
        return refused_or_raise(result, from_addr, to_list)

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
        sender, recipients = envelope_of(msg, from_addr, to_addrs)
        if not "".join([sender, *recipients]).isascii():
            if not self.has_extn("smtputf8"):
                raise SmtpNotSupportedError(
                    "One or more source or delivery addresses require internationalized "
                    "email support, but the server does not advertise the required "
                    "SMTPUTF8 capability"
                )
            mail_options = (*mail_options, "SMTPUTF8", "BODY=8BITMIME")
        return self.sendmail(sender, recipients, flatten(msg), mail_options, rcpt_options)

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
            sender, recipients = envelope_of(message, sender, recipients)
            body = flatten(message)
        elif isinstance(message, str):
            body = message.encode("utf-8")
        else:
            body = message
        if sender is None or recipients is None:
            raise ValueError("sender and recipients are needed unless message is a Message")
        if isinstance(recipients, str):
            recipients = [recipients]
        return send_result(self._transaction(sender, recipients, body, mail_options, rcpt_options))


    def send_batch(
        self,
        messages: Iterable[BatchMessage],
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        on_result: Callable[[int, SendResult | SmtpError], object] | None = None,
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

        ``on_result``, when given, is called as ``on_result(index, outcome)`` for each
        message (``index`` from 0 in ``messages``, ``outcome`` the entry the list will
        hold) as soon as the server's final reply to it is read, while the next messages
        are still under way: to mark each message done in a queue without waiting for
        the whole batch. It runs on this thread, in message order; a call it makes on
        this connection raises ``RuntimeError`` (the batch holds it). An exception it
        raises stops the batch: no further message is
        started, the messages already sent are finished (their replies read, so the
        connection stays usable) but not reported, and the exception propagates from
        ``send_batch``. Only outcomes handed to ``on_result`` were reported; a message
        not reported may or may not have been delivered::

            done = []
            client.send_batch(queue, on_result=lambda i, outcome: done.append(i))
        """
        client = self._client()
        # perf: the collector paused for the whole batch, not per group: each time it ran
        # again between groups it walked the outcomes of the group just built (5 % of the
        # client's CPU per message); now it walks them once, at the end.
        with gc_paused():
            batch = Batch(messages, mail_options, rcpt_options)
            for group in batch.groups():
                report = None if on_result is None else batch.reporter(on_result)
                raw = client.send_batch(group, *batch.options, report)
                if not batch.collect(raw, len(group)):
                    break  # the connection ended: the rest were not sent
        return batch.outcomes


# smtplib's bound on the challenges of one AUTH exchange.
_MAX_CHALLENGES = 5


def _pair(reply: tuple[int, str | None, str, bytes]) -> tuple[int, bytes]:
    return (reply[0], reply[3])


def _bound_connection(
    host: str, port: int, source_address: tuple[str, int], timeout: float | None
) -> int:
    """A TCP connection to ``host``:``port`` from ``source_address``, made as smtplib
    makes it (``socket.create_connection``); its descriptor, handed over to the engine."""
    sock = socket.create_connection((host, port), timeout, source_address)
    sock.setblocking(True)
    return sock.detach()


class SMTP_SSL(SMTP):
    """SMTP over implicit TLS (port 465). ``context`` is read as by :meth:`SMTP.starttls`.

    The arguments are smtplib's (Python 3.11's order, which 3.12's keywords also fit):
    ``certfile`` (a PEM chain, leaf first) and ``keyfile`` (its key, when not in
    ``certfile``) are the client certificate shown to a server that asks for one. Unlike
    smtplib they may come with a ``context`` (which then says which servers to trust),
    since a chain loaded into an ``ssl.SSLContext`` cannot be read back from it; a
    missing file raises ``FileNotFoundError`` here, as in smtplib.
    """

    default_port = SMTP_SSL_PORT
    _tls_mode = "implicit"

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        keyfile: str | None = None,
        certfile: str | None = None,
        timeout: float | None | object = None,
        source_address: tuple[str, int] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.keyfile = keyfile
        self.certfile = certfile
        identity = client_certificate(certfile, keyfile)
        super().__init__(
            "", port, local_hostname, timeout, source_address, context=context
        )
        self._client_certificate = identity
        if host:
            self.connect(host, port)


class LMTP(SMTP):
    """LMTP (RFC 2033, port 2003): LHLO, and a delivery reply per recipient, which
    ``sendmail`` reports like a refused RCPT and :meth:`send` as ``delivery``. As in
    smtplib, a host starting with ``/`` is the path of a Unix-domain socket
    (``LMTP("/var/run/lmtp.sock")``)."""

    default_port = LMTP_PORT
    _lmtp = True

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = None,
        *,
        allow_insecure_auth: bool = False,
    ) -> None:
        super().__init__(
            host,
            port,
            local_hostname,
            timeout,
            source_address,
            allow_insecure_auth=allow_insecure_auth,
        )


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
    allow_insecure_auth: bool = False,
    local_hostname: str | None = None,
    timeout: float | None = 60,
    use_tls: bool = False,
    start_tls: bool | None = None,
    validate_certs: bool = True,
    cert_bundle: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    lmtp: bool = False,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
) -> SendResult:
    """Connects, sends one message, says QUIT: aiosmtplib's ``send`` for blocking code.

    ``use_tls`` is implicit TLS (default port 465); otherwise ``start_tls`` None upgrades
    when the server offers STARTTLS, True requires it, False never upgrades. Credentials
    go only over TLS unless ``allow_insecure_auth`` (otherwise
    :class:`~smtpx.errors.SmtpInsecureAuthError`, nothing of them sent). Returns the
    per-recipient :class:`SendResult`. ``client_cert`` (a PEM chain, leaf first) and
    ``client_key`` (its key, when not in ``client_cert``) are shown to a server that asks
    for a certificate, as in aiosmtplib.
    """
    if use_tls and start_tls:
        raise ValueError("use_tls and start_tls are exclusive")
    # Refuse what cannot be sent before connecting at all.
    if isinstance(message, email.message.Message):
        sender, recipients = envelope_of(message, sender, recipients)
    if sender is None or recipients is None:
        raise ValueError("sender and recipients are needed unless message is a Message")
    if isinstance(recipients, str):
        recipients = [recipients]
    for text in [sender, *recipients, *mail_options, *rcpt_options]:
        check_line("an argument", text)
    mode = tls_mode(use_tls, start_tls)
    if port is None:
        port = SMTP_SSL_PORT if use_tls else (LMTP_PORT if lmtp else SMTP_PORT)
    cert, key = client_certificate(client_cert, client_key)
    tls = {**tls_arguments(tls_context, cert_bundle), "client_cert": cert, "client_key": key}
    if not validate_certs:
        tls["insecure"] = True
    if local_hostname is not None:
        check_line("local_hostname", local_hostname)
    smtp = SMTP()
    smtp._trace.log = wire_logging()
    client = _native.Client.connect(
        hostname,
        port,
        helo_name=local_hostname or default_local_hostname(),
        tls=mode,
        timeout=seconds(timeout),
        lmtp=lmtp,
        username=username,
        password=password,
        allow_insecure_auth=allow_insecure_auth,
        trace=smtp._trace if smtp._trace.wanted else None,
        **(tls if mode != "none" else {}),
    )
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
