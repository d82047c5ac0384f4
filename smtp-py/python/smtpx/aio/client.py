"""The asyncio client: the engine's client runner on asyncio streams.

:class:`SMTP`, :class:`LMTP` and :func:`send` are aiosmtplib's (``import smtpx.aio as
aiosmtplib``): its parameter names, ``(errors, response)`` from ``send``, ``sendmail`` and
``send_message``, :class:`~smtpx.aio.errors.SMTPResponse` from each command, and its
exceptions (:mod:`smtpx.aio.errors`)::

    async with smtpx.aio.SMTP(hostname="mx.example", port=25, timeout=30) as client:
        errors, response = await client.sendmail("a@example.com", ["b@example.com"], message_bytes)

Calls from several coroutines are served one after the other; leaving ``async with``
sends QUIT, also after an exception. :meth:`SMTP.send` and :meth:`SMTP.send_batch` give
smtpx's per-recipient :class:`~smtpx.SendResult` instead.

TLS is rustls (:class:`smtpx._native.TlsSession`), configured by the same code as the
blocking client and server and the C API, not Python's :mod:`ssl`. ``use_tls`` is
implicit TLS (port 465); otherwise ``start_tls`` None upgrades with STARTTLS when the
server offers it, True requires it (the connection fails before any MAIL or AUTH when
the server does not offer it), False never upgrades. Certificates are checked against
Mozilla's roots unless ``cert_bundle`` (a PEM file) or ``tls_context`` (its CA
certificates) name others; ``validate_certs=False`` accepts any (tests only).
``client_cert`` and ``client_key`` (PEM files, read when given) are the client
certificate for a server that asks for one (mutual TLS); as in aiosmtplib they do not go
with a ``tls_context``. ``oauth_token_generator`` logs in with XOAUTH2 after connecting.

Credentials (``username``/``password``, or :meth:`SMTP.login`) are sent only over TLS:
without it the connection fails, or ``login`` raises, with
:class:`~smtpx.errors.SmtpInsecureAuthError` before anything of them is written, unless
``allow_insecure_auth=True`` (aiosmtplib sends them in clear).

Debug output: ``set_debuglevel(1)`` (or 2) prints the conversation on standard error in
smtplib's format, as :meth:`smtpx.SMTP.set_debuglevel` does (aiosmtplib has no such
method; it logs instead). While the ``smtpx.wire`` logger is enabled for DEBUG when a
client connects, each line of that connection is logged there as ``conn=ID C: text``
(one DEBUG record per line; the ids count the asyncio clients of the process). Both come
from the engine's wire trace, redacted: credentials show as ``AUTH PLAIN <redacted>`` and
``<SASL response redacted>``, message content as ``<message content, N octets>``. Neither
costs anything while off: the trace is installed only while one of them is on.

Every client operation (connect, send, a batch, STARTTLS, AUTH, a command, QUIT) is the
Rust engine's runner (:class:`smtpx._native.ClientRunner`, the one the Rust drivers
use), including throwing away whatever was pipelined after STARTTLS; this module only
moves bytes, does the TLS I/O and keeps time.
"""

from __future__ import annotations

import asyncio
import base64
import email.message
import os
import socket
import ssl
from smtplib import quoteaddr
from typing import Any, Callable, Iterable, Sequence, Union

from smtpx import _native
from smtpx._trace import ClientTrace, wire_logging
from smtpx.common import (
    LMTP_PORT,
    SMTP_PORT,
    SMTP_SSL_PORT,
    Batch,
    BatchMessage,
    SendResult,
    bare_address,
    check_line,
    default_local_hostname,
    envelope_of,
    flatten,
    message_bytes,
    refused_or_raise,
    tls_mode,
)
from smtpx.aio.auth import auth_crammd5_verify, auth_xoauth2_encode
from smtpx.aio.driver import Connection, client_tls_config, within
from smtpx.aio.typing import Default, SMTPStatus, SMTPTokenGenerator
from smtpx.aio.errors import (
    SMTPAuthenticationError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponse,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    _text_of,
    response,
    translate,
)
from smtpx.errors import (
    SmtpDisconnected,
    SmtpError,
    SmtpNotSupportedError,
    SmtpServerClosed,
    SmtpTimeoutError,
    SmtpTlsError,
    closed_in_phase,
)

__all__ = ["LMTP", "SMTP", "send"]


_Default = Default
_DEFAULT = Default.token
Timeout = Union[float, None, Default]


class SMTP:
    """An asyncio SMTP client connection (see the module docstring for TLS).

    ``timeout`` (seconds, None for none) bounds connecting and every call; each call's own
    ``timeout`` keyword replaces it for that call, as in aiosmtplib. When a call times
    out or is cancelled, the connection is closed: the session cannot go on.
    ``port`` defaults to 465 with ``use_tls``, else 25 (2003 for :class:`LMTP`).
    Calls from several coroutines at once are served one after the other.
    """

    default_port = SMTP_PORT
    _lmtp = False
    #: aiosmtplib's AUTH mechanisms, preferred first: what :attr:`supported_auth_methods`
    #: picks from (``login`` uses PLAIN or LOGIN, the engine's).
    AUTH_METHODS: tuple[str, ...] = ("cram-md5", "plain", "login")

    def __init__(
        self,
        hostname: str = "localhost",
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        oauth_token_generator: SMTPTokenGenerator | None = None,
        allow_insecure_auth: bool = False,
        local_hostname: str | None = None,
        timeout: float | None = 60.0,
        use_tls: bool = False,
        start_tls: bool | None = None,
        validate_certs: bool = True,
        cert_bundle: str | os.PathLike[str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        source_address: tuple[str, int] | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        socket_path: str | bytes | os.PathLike[str] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        if password is not None and oauth_token_generator is not None:
            raise ValueError("password and oauth_token_generator are mutually exclusive")
        if password is not None and username is None:
            raise ValueError("give both a username and a password")
        if username is not None and password is None and oauth_token_generator is None:
            raise ValueError("give both a username and a password")
        if use_tls and start_tls:
            raise ValueError("use_tls and start_tls are exclusive")
        _one_of_context_or_certificate(tls_context, client_cert)
        self.hostname = hostname
        self.port = port if port is not None else (SMTP_SSL_PORT if use_tls else self.default_port)
        self.username = username
        self.password = password
        self.oauth_token_generator = oauth_token_generator
        self.allow_insecure_auth = allow_insecure_auth
        self.local_hostname = local_hostname
        self.timeout = timeout
        self.use_tls = use_tls
        self.start_tls = start_tls
        self._tls_options: _TlsOptions = (validate_certs, cert_bundle, tls_context, client_cert, client_key)
        self.source_address = source_address
        self.socket_path = socket_path
        self.sock = sock
        # Built now so that a bad cert_bundle fails here, not in the middle of a session.
        self._tls_config = (
            client_tls_config(*self._tls_options)
            if use_tls or start_tls is not False
            else None
        )
        self._connection: Connection | None = None
        #: The event loop of the last :meth:`connect` (None before), as aiosmtplib's.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._last_helo: SMTPResponse | None = None
        self._trace = ClientTrace()
        # One operation at a time: concurrent callers wait their turn.
        self._turn = asyncio.Lock()

    @property
    def debuglevel(self) -> int:
        """smtplib's debug level (see :meth:`set_debuglevel`); assignable."""
        return self._trace.level

    @debuglevel.setter
    def debuglevel(self, level: int) -> None:
        self.set_debuglevel(level)

    def set_debuglevel(self, debuglevel: int) -> None:
        """Prints the conversation on standard error as smtplib's ``set_debuglevel``
        does: 0 (the default) nothing, 1 each command and reply line, 2 the same with the
        time. May be changed at any time, connected or not. Credentials and message
        content are never printed (see the module docs)."""
        self._trace.set_level(int(debuglevel))
        if self._connection is not None:
            self._connection.runner.set_trace(self._trace if self._trace.wanted else None)

    @property
    def is_connected(self) -> bool:
        """True while the connection is open."""
        return self._connection is not None and self._connection.is_open

    # -- aiosmtplib's state attributes -------------------------------------------------------

    @property
    def last_ehlo_response(self) -> SMTPResponse | None:
        """The last EHLO reply (the engine's, at connect, or :meth:`ehlo`'s), its lines
        joined with ``\\n``; None before one, or after a HELO."""
        lines = self._connection.runner.ehlo_lines() if self._connection is not None else None
        return SMTPResponse(250, "\n".join(lines)) if lines is not None else None

    @property
    def last_helo_response(self) -> SMTPResponse | None:
        """The reply to the last :meth:`helo` on this connection, or None."""
        return self._last_helo if self.is_connected else None

    @property
    def supports_esmtp(self) -> bool:
        """True when the server answered EHLO."""
        return self.last_ehlo_response is not None

    @property
    def is_ehlo_or_helo_needed(self) -> bool:
        """True until the session has greeted: never while connected here, since
        :meth:`connect` greets."""
        return not self.is_connected

    @property
    def server_auth_methods(self) -> list[str]:
        """The AUTH mechanisms of the last EHLO reply, lower case."""
        return self.esmtp_extensions.get("auth", "").lower().split()

    @property
    def supported_auth_methods(self) -> list[str]:
        """The mechanisms of :attr:`AUTH_METHODS` the server offers, preferred first."""
        offered = self.server_auth_methods
        return [method for method in self.AUTH_METHODS if method in offered]

    @property
    def validate_certs(self) -> bool:
        """Whether the server's certificate is checked (assignable, for the next
        connection or :meth:`starttls`)."""
        return self._tls_options[0]

    @validate_certs.setter
    def validate_certs(self, value: bool) -> None:
        self._apply({"validate_certs": value})

    @property
    def cert_bundle(self) -> str | os.PathLike[str] | None:
        """The PEM file of trusted CAs, or None (assignable)."""
        return self._tls_options[1]

    @cert_bundle.setter
    def cert_bundle(self, value: str | os.PathLike[str] | None) -> None:
        self._apply({"cert_bundle": value})

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The ``ssl.SSLContext`` whose verification setting and CAs are used, or None
        (assignable)."""
        return self._tls_options[2]

    @tls_context.setter
    def tls_context(self, value: ssl.SSLContext | None) -> None:
        self._apply({"tls_context": value})

    @property
    def client_cert(self) -> str | None:
        """The client certificate's PEM file, or None (assignable)."""
        return self._tls_options[3]

    @client_cert.setter
    def client_cert(self, value: str | None) -> None:
        self._apply({"client_cert": value})

    @property
    def client_key(self) -> str | None:
        """The client key's PEM file, or None (assignable)."""
        return self._tls_options[4]

    @client_key.setter
    def client_key(self, value: str | None) -> None:
        self._apply({"client_key": value})

    def sendmail_sync(self, *args: Any, **kwargs: Any) -> tuple[dict[str, SMTPResponse], str]:
        """aiosmtplib's blocking :meth:`sendmail`: runs an event loop that connects,
        sends and quits (not from inside a running loop)."""

        async def sendmail() -> tuple[dict[str, SMTPResponse], str]:
            async with self:
                return await self.sendmail(*args, **kwargs)

        return asyncio.run(sendmail())

    def send_message_sync(self, *args: Any, **kwargs: Any) -> tuple[dict[str, SMTPResponse], str]:
        """aiosmtplib's blocking :meth:`send_message`: runs an event loop that connects,
        sends and quits (not from inside a running loop)."""

        async def send_message() -> tuple[dict[str, SMTPResponse], str]:
            async with self:
                return await self.send_message(*args, **kwargs)

        return asyncio.run(send_message())

    @property
    def is_tls(self) -> bool:
        """True while the connection is encrypted (implicit TLS, or after STARTTLS)."""
        return self._connection is not None and self._connection.is_tls

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The asyncio transport under the connection while it is open (None before
        and after), as aiosmtplib's attribute. Under TLS it carries the TLS records:
        rustls encrypts above it, so it is never an SSL transport."""
        connection = self._connection
        return connection.transport if connection is not None and connection.is_open else None

    def get_transport_info(self, key: str) -> Any:
        """aiosmtplib's: what the connection's transport says of ``key``
        (``peername``, ``sockname``, ``socket``, ...). TLS here is rustls above a plain
        transport, so the TLS keys are answered from the TLS session: ``cipher`` is
        ``(suite, protocol version, None)``, ``sslcontext`` the ``tls_context`` given
        (None without one), and ``peercert``, ``ssl_object``/``sslobject`` and
        ``compression`` are None; on a connection in clear all of them are None, as on
        aiosmtplib's. Raises :class:`~smtpx.aio.errors.SMTPServerDisconnected` when not
        connected."""
        connection, transport = self._connection, self.transport
        if connection is None or transport is None:
            raise SMTPServerDisconnected("Server not connected")
        if key in _TLS_KEYS:
            tls = connection.tls_session
            if tls is None:
                return None
            if key == "cipher":
                return _ssl_cipher(tls.cipher_suite, tls.protocol_version)
            if key == "sslcontext":
                return self.tls_context
            return None
        return transport.get_extra_info(key)

    async def __aenter__(self) -> SMTP:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """QUIT (also after an exception in the block, as aiosmtplib does), then close."""
        if not self.is_connected:
            return
        try:
            await self.quit()
        except Exception:
            pass
        self.close()

    def close(self) -> None:
        """Closes the connection at once (no QUIT)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.runner.abandon()
            connection.close()

    async def _guarded(
        self,
        start: Callable[[_native.ClientRunner, float], None],
        timeout: Timeout = _DEFAULT,
        before_read: Callable[[_native.ClientRunner], None] | None = None,
    ) -> object:
        """Runs one operation of the engine's runner (``start(runner, now)`` starts it)
        under the timeout, after any operation other coroutines started first. A failure
        that leaves the connection unusable (or a cancellation) closes it; errors are
        raised as aiosmtplib's (:mod:`smtpx.aio.errors`)."""
        try:
            return await self._guarded_engine(start, timeout, before_read)
        except SmtpError as error:
            raise translate(error) from None

    async def _guarded_engine(
        self,
        start: Callable[[_native.ClientRunner, float], None],
        timeout: Timeout,
        before_read: Callable[[_native.ClientRunner], None] | None = None,
    ) -> object:
        seconds = self.timeout if isinstance(timeout, _Default) else timeout
        async with self._turn:
            try:
                return await within(self._operation(start, before_read), seconds)
            except asyncio.TimeoutError:
                self.close()
                raise SmtpTimeoutError(f"timed out after {seconds} s") from None
            except SmtpTlsError:
                self.close()  # the TLS layer is broken: nothing more can be said on it
                raise
            except (SmtpError, ValueError):
                # ValueError: an argument refused before anything was written (CR or LF
                # in an address, say). SmtpError: a refusal. Either leaves the session
                # usable, unless the engine ended it.
                if self._connection is None or self._connection.runner.is_closed:
                    self.close()
                raise
            except BaseException:
                self.close()
                raise

    async def _operation(
        self,
        start: Callable[[_native.ClientRunner, float], None],
        before_read: Callable[[_native.ClientRunner], None] | None = None,
    ) -> object:
        connection = self._live()
        start(connection.runner, connection.now())
        return await connection.run(before_read)

    async def connect(self, **options: object) -> SMTPResponse:
        """Connects, then greets (and logs in, when given credentials); returns the
        server's greeting. Keyword arguments (``hostname``, ``port``, ``timeout``,
        ``use_tls``, ``start_tls``, ``socket_path``, ...: the constructor's) replace the
        constructor's values first, as in aiosmtplib. A refused connection raises
        :class:`~smtpx.aio.errors.SMTPConnectError`."""
        if self.is_connected:
            raise ValueError("already connected")
        self._apply(options)
        self.loop = asyncio.get_running_loop()
        try:
            async with self._turn:
                await within(self._connect(), self.timeout)
        except asyncio.TimeoutError:
            self.close()
            raise translate(SmtpTimeoutError(f"timed out after {self.timeout} s"), connecting=True) from None
        except (SmtpError, OSError) as error:
            self.close()  # a session that did not open (say, AUTH not offered) is no use
            raise translate(error, connecting=True) from None
        except BaseException:
            self.close()
            raise
        greeting, _ = self._live().runner.kept_replies()
        return response(greeting) if greeting is not None else SMTPResponse(220, "")

    def _apply(self, options: dict[str, object]) -> None:
        """The keyword arguments of :meth:`connect`, checked as the constructor's."""
        known = {
            "hostname", "port", "username", "password", "oauth_token_generator",
            "local_hostname", "source_address", "timeout", "use_tls", "start_tls",
            "validate_certs", "client_cert", "client_key", "tls_context", "cert_bundle",
            "socket_path", "sock",
        }
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"connect() got unexpected keyword arguments {sorted(unknown)}")
        tls_keys = {"validate_certs", "tls_context", "cert_bundle", "client_cert", "client_key"}
        validate, bundle, context, cert, key = self._tls_options
        _one_of_context_or_certificate(
            options.get("tls_context", context), options.get("client_cert", cert)
        )
        for name, value in options.items():
            if name not in tls_keys:
                setattr(self, name, value)
        if "port" in options and options["port"] is None or "port" not in options and self.port is None:
            self.port = SMTP_SSL_PORT if self.use_tls else self.default_port
        if tls_keys & set(options) or "use_tls" in options or "start_tls" in options:
            self._tls_options = (
                bool(options.get("validate_certs", validate)),
                options.get("cert_bundle", bundle),  # type: ignore[assignment]
                options.get("tls_context", context),
                options.get("client_cert", cert),
                options.get("client_key", key),
            )
            self._tls_config = (
                client_tls_config(*self._tls_options)
                if self.use_tls or self.start_tls is not False
                else None
            )

    async def _connect(self) -> None:
        mode = tls_mode(self.use_tls, self.start_tls)
        trace = self._trace
        trace.log = wire_logging()
        trace.connecting(self.hostname, self.port)
        runner = _native.ClientRunner(
            self.local_hostname or default_local_hostname(),
            server_name=self.hostname,
            tls=mode,
            tls_config=self._tls_config,
            # Without a password (XOAUTH2 with oauth_token_generator), the engine does not
            # log in: _xoauth2_on_connect does, after the opening.
            username=self.username if self.password is not None else None,
            password=self.password,
            allow_insecure_auth=bool(self.allow_insecure_auth),
            lmtp=self._lmtp,
            trace=trace if trace.wanted else None,
        )
        connection = await Connection.open(
            runner,
            hostname=self.hostname,
            port=self.port,
            source_address=self.source_address,
            socket_path=self.socket_path,
            sock=self.sock,
            tls_config=self._client_tls,
        )
        self._connection = connection
        plain = await connection.tls_handshake() if self.use_tls else b""
        runner.start_connect()
        if plain:
            runner.received(plain, connection.now())
        await connection.run()
        if self.oauth_token_generator is not None:
            await self._xoauth2_on_connect(self.oauth_token_generator)

    async def _xoauth2_on_connect(self, generator: SMTPTokenGenerator) -> None:
        """aiosmtplib's login with ``oauth_token_generator``: XOAUTH2 with a fresh token
        (this runs while :meth:`connect` holds the turn, hence the engine directly)."""
        if self.username is None:
            raise SMTPException("username is required when using oauth_token_generator")
        if "xoauth2" not in self.esmtp_extensions.get("auth", "").lower().split():
            raise SMTPException("oauth_token_generator provided but server does not support XOAUTH2")
        token = await generator()
        self._live().runner.set_allow_insecure_auth(bool(self.allow_insecure_auth))
        line = "AUTH XOAUTH2 " + auth_xoauth2_encode(self.username, token).decode("ascii")
        reply = response(await self._operation(  # type: ignore[arg-type]
            lambda runner, now: runner.start_command("raw", line, None, now=now)
        ))
        if reply.code == SMTPStatus.auth_continue:
            reply = response(await self._operation(  # type: ignore[arg-type]
                lambda runner, now: runner.start_command("secret", "", None, now=now)
            ))
        _authenticated(reply)

    def _client_tls(self) -> _native.TlsConfig:
        """The TLS configuration: the one built from the constructor's arguments, or
        (``start_tls=False``, then :meth:`starttls`) one built now."""
        if self._tls_config is None:
            self._tls_config = client_tls_config(*self._tls_options)
        return self._tls_config

    def _live(self) -> Connection:
        if self._connection is None or not self._connection.is_open:
            raise SmtpDisconnected("not connected")
        return self._connection

    async def _command(
        self,
        verb: str,
        argument: str | None = None,
        content: bytes | None = None,
        timeout: Timeout = _DEFAULT,
    ) -> SMTPResponse:
        try:
            reply = await self._guarded_engine(
                lambda runner, now: runner.start_command(verb, argument, content, now=now),
                timeout,
            )
        except SmtpServerClosed as closing:
            # aiosmtplib returns a 421 like any reply, and closes the connection.
            self.close()
            return SMTPResponse(closing.smtp_code, _text_of(closing.smtp_error))
        except SmtpError as error:
            raise translate(error) from None
        return response(reply)  # type: ignore[arg-type]

    async def execute_command(self, *args: bytes, timeout: Timeout = _DEFAULT) -> SMTPResponse:
        """Sends one command line made of ``args`` (joined with spaces) and returns the
        reply, whatever its code (aiosmtplib's ``execute_command``)."""
        line = b" ".join(args).decode("utf-8")
        return await self._command("raw", line, timeout=timeout)

    async def noop(self, *, timeout: Timeout = _DEFAULT) -> SMTPResponse:
        """NOOP; returns the reply (any code but 250 raises SMTPResponseException)."""
        return _expect(await self._command("noop", timeout=timeout), 250)

    async def rset(self, *, timeout: Timeout = _DEFAULT) -> SMTPResponse:
        """RSET; returns the reply (any code but 250 raises SMTPResponseException)."""
        return _expect(await self._command("rset", timeout=timeout), 250)

    async def vrfy(
        self, address: str, /, *, options: Iterable[str] | None = None, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """VRFY ``address``; returns the reply (250, 251 or 252; others raise)."""
        argument = " ".join([address, *(options or ())])
        return _expect(await self._command("vrfy", argument, timeout=timeout), 250, 251, 252)

    async def expn(
        self, address: str, /, *, options: Iterable[str] | None = None, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """EXPN ``address``; returns the reply (any code but 250 raises)."""
        argument = " ".join([address, *(options or ())])
        return _expect(await self._command("expn", argument, timeout=timeout), 250)

    async def help(self, *, timeout: Timeout = _DEFAULT) -> str:
        """HELP; returns the reply's message (214 or 211; others raise)."""
        return _expect(await self._command("help", timeout=timeout), 211, 214).message

    async def ehlo(
        self, *, hostname: str | None = None, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """Sends EHLO again (as ``hostname``, default ``local_hostname``); a 250 refreshes
        the known extensions; any other reply raises SMTPHeloError."""
        reply = await self._command("ehlo", hostname or self.local_hostname, timeout=timeout)
        if reply.code != 250:
            raise SMTPHeloError(reply.code, reply.message)
        return reply

    async def helo(
        self, *, hostname: str | None = None, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """Sends HELO (as ``hostname``); any reply but 250 raises SMTPHeloError."""
        reply = await self._command("helo", hostname or self.local_hostname, timeout=timeout)
        if reply.code != 250:
            raise SMTPHeloError(reply.code, reply.message)
        self._last_helo = reply
        return reply

    def supports_extension(self, extension: str, /) -> bool:
        """True when the server announced ``extension`` (any case) in its last EHLO."""
        return extension.lower() in self.esmtp_extensions

    @property
    def esmtp_extensions(self) -> dict[str, str]:
        """The extensions of the last EHLO reply, ``{lower-case keyword: parameters}``."""
        lines = self._connection.runner.ehlo_lines() if self._connection is not None else None
        found: dict[str, str] = {}
        for line in (lines or [])[1:]:
            keyword, _, params = line.partition(" ")
            found[keyword.lower()] = params
        return found

    async def mail(
        self, sender: str, /, *, options: Iterable[str] | None = None, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """MAIL FROM with the address as given; any reply but 250 raises
        SMTPSenderRefused."""
        check_line("the sender", sender)
        line = " ".join([f"MAIL FROM:{quoteaddr(sender)}", *(options or ())])
        reply = await self._command("raw", line, timeout=timeout)
        if reply.code != 250:
            raise SMTPSenderRefused(reply.code, reply.message, sender)
        return reply

    async def rcpt(
        self,
        recipient: str,
        /,
        *,
        options: Iterable[str] | None = None,
        timeout: Timeout = _DEFAULT,
    ) -> SMTPResponse:
        """RCPT TO with the address as given; any reply but 250 or 251 raises
        SMTPRecipientRefused."""
        check_line("the recipient", recipient)
        line = " ".join([f"RCPT TO:{quoteaddr(recipient)}", *(options or ())])
        reply = await self._command("raw", line, timeout=timeout)
        if reply.code not in (250, 251):
            raise SMTPRecipientRefused(reply.code, reply.message, recipient)
        return reply

    async def data(self, message: str | bytes, /, *, timeout: Timeout = _DEFAULT) -> SMTPResponse:
        """DATA, then after the 354 the message (CRLF line ends, dots stuffed, the final
        dot added); returns the final reply. Any reply to DATA but 354, or a final reply
        but 250, raises SMTPDataError."""
        reply = await self._command("raw", "DATA", timeout=timeout)
        if reply.code != 354:
            raise SMTPDataError(reply.code, reply.message)
        body = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        final = await self._command("content", None, body, timeout=timeout)
        if final.code != 250:
            raise SMTPDataError(final.code, final.message)
        return final

    async def login(
        self, username: str, password: str, /, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """Authenticates now with PLAIN or LOGIN (whichever the server offers) and returns
        the server's 235; a refusal raises SMTPAuthenticationError and leaves the
        connection usable. On a connection without TLS it raises
        :class:`~smtpx.errors.SmtpInsecureAuthError`, sending nothing, unless
        ``allow_insecure_auth`` is true."""

        def start(runner: _native.ClientRunner, now: float) -> None:
            runner.set_allow_insecure_auth(bool(self.allow_insecure_auth))
            runner.start_login(username, password, now=now)

        try:
            return response(await self._guarded_engine(start, timeout))  # type: ignore[arg-type]
        except SmtpServerClosed as closing:
            # As aiosmtplib: a 421 to AUTH is an SMTPAuthenticationError, the connection closed.
            self.close()
            raise translate(closed_in_phase(closing, "", [])) from None
        except SmtpError as error:
            raise translate(error) from None

    async def auth_plain(
        self, username: str, password: str, /, *, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """AUTH PLAIN with these credentials; a refusal raises SMTPAuthenticationError."""
        self._live().runner.set_allow_insecure_auth(bool(self.allow_insecure_auth))
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
        return _authenticated(await self._command("raw", f"AUTH PLAIN {token}", timeout=timeout))

    async def auth_login(
        self, username: str, password: str, /, *, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """AUTH LOGIN with these credentials; a refusal raises SMTPAuthenticationError."""
        self._live().runner.set_allow_insecure_auth(bool(self.allow_insecure_auth))
        user = base64.b64encode(username.encode()).decode("ascii")
        reply = await self._command("raw", f"AUTH LOGIN {user}", timeout=timeout)
        if reply.code == 334:
            secret = base64.b64encode(password.encode()).decode("ascii")
            reply = await self._command("secret", secret, timeout=timeout)
        return _authenticated(reply)

    async def auth_crammd5(
        self, username: str | bytes, password: str | bytes, /, *, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """AUTH CRAM-MD5 with these credentials (the server's challenge answered with
        :func:`smtpx.aio.auth.auth_crammd5_verify`); a refusal raises
        SMTPAuthenticationError. Needs TLS, as every AUTH here, unless
        ``allow_insecure_auth``."""
        self._live().runner.set_allow_insecure_auth(bool(self.allow_insecure_auth))
        challenge = await self._command("raw", "AUTH CRAM-MD5", timeout=timeout)
        if challenge.code != SMTPStatus.auth_continue:
            raise SMTPAuthenticationError(challenge.code, challenge.message)
        answer = auth_crammd5_verify(username, password, challenge.message).decode("ascii")
        return _authenticated(await self._command("secret", answer, timeout=timeout))

    async def auth_xoauth2(
        self, username: str | bytes, access_token: str | bytes, /, *, timeout: Timeout = _DEFAULT
    ) -> SMTPResponse:
        """AUTH XOAUTH2 with an OAuth2 access token (Gmail, Outlook), as aiosmtplib: a
        334 error challenge is answered with an empty line to get the final reply; a
        refusal raises SMTPAuthenticationError."""
        self._live().runner.set_allow_insecure_auth(bool(self.allow_insecure_auth))
        encoded = auth_xoauth2_encode(username, access_token).decode("ascii")
        reply = await self._command("raw", f"AUTH XOAUTH2 {encoded}", timeout=timeout)
        if reply.code == SMTPStatus.auth_continue:
            reply = await self._command("secret", "", timeout=timeout)
        return _authenticated(reply)

    async def starttls(
        self,
        *,
        server_hostname: str | None = None,
        validate_certs: bool | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        cert_bundle: str | os.PathLike[str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        timeout: Timeout = _DEFAULT,
    ) -> SMTPResponse:
        """Upgrades with STARTTLS now and greets again, for a client made with
        ``start_tls=False``; returns the server's 220. The keywords replace the client's
        TLS settings for this upgrade, as in aiosmtplib (``server_hostname``: the name the
        certificate must carry; ``client_cert`` and ``client_key``: the client
        certificate shown to a server that asks for one). A refusal raises
        SMTPResponseException and leaves the connection as it was."""
        if self._live().runner.is_tls:
            raise translate(SmtpNotSupportedError("the connection is already encrypted"))
        given = (validate_certs, cert_bundle, tls_context, client_cert, client_key)
        if all(value is None for value in given):
            config = self._client_tls()
        else:
            validate, bundle, context, cert, key = self._tls_options
            options: _TlsOptions = (
                validate if validate_certs is None else validate_certs,
                bundle if cert_bundle is None else cert_bundle,
                context if tls_context is None else tls_context,
                cert if client_cert is None else client_cert,
                key if client_key is None else client_key,
            )
            _one_of_context_or_certificate(options[2], options[3])
            config = client_tls_config(*options)
            self._tls_options = options  # kept for the next connection, as aiosmtplib
            self._tls_config = config  # the handshake's configuration
        name = server_hostname or self.hostname
        self._live().server_name = name
        await self._guarded(
            lambda runner, now: runner.start_starttls(name, config, now=now), timeout
        )
        _, reply = self._live().runner.kept_replies()
        return response(reply) if reply is not None else SMTPResponse(220, "")

    async def quit(self, *, timeout: Timeout = _DEFAULT) -> SMTPResponse:
        """QUIT, then close the connection; returns the server's reply."""
        try:
            reply = await self._guarded(lambda runner, now: runner.start_quit(now=now), timeout)
        except SMTPServerDisconnected:
            reply = None
        finally:
            self.close()
        return response(reply) if reply is not None else SMTPResponse(221, "")  # type: ignore[arg-type]

    async def sendmail(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: str | bytes | bytearray,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        *,
        timeout: Timeout = _DEFAULT,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """Sends one message, as aiosmtplib's ``sendmail``: returns ``(errors,
        response)``, ``errors`` mapping each refused recipient to its
        :class:`SMTPResponse` and ``response`` the text of the final reply. Raises
        SMTPSenderRefused, SMTPRecipientsRefused (all refused, with the list of each
        SMTPRecipientRefused) or SMTPDataError, also for a 421 in that phase (which
        closes the connection, as in aiosmtplib). Addresses go out as given: a local part
        without a domain (``"postmaster"``) is sent too; a CR, LF or NUL, or anything
        else that is not an address, is a ``ValueError``."""
        to_list = [recipients] if isinstance(recipients, str) else list(recipients)
        body = bytes(message_bytes(message))
        try:
            raw = await self._guarded_engine(
                lambda runner, now: runner.start_send(
                    bare_address(sender),
                    [bare_address(a) for a in to_list],
                    body,
                    list(mail_options or ()),
                    list(rcpt_options or ()),
                    now=now,
                ),
                timeout,
            )
            refused = refused_or_raise(raw, sender, to_list)  # type: ignore[arg-type]
        except SmtpServerClosed as closing:
            # As aiosmtplib: a 421 closes the connection and raises the class of its phase.
            self.close()
            raise translate(closed_in_phase(closing, sender, to_list)) from None
        except SmtpError as error:
            raise translate(error) from None
        errors = {
            address: SMTPResponse(code, message.decode("utf-8", "replace"))
            for address, (code, message) in refused.items()
        }
        data = raw[2]  # type: ignore[index]
        final = data[3].decode("utf-8", "replace") if data is not None else ""
        return errors, final

    async def send(
        self,
        message: email.message.Message | str | bytes | bytearray,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> SendResult:
        """Sends one message and returns the outcome for every recipient, as
        :meth:`smtpx.SMTP.send`: refusals are in the result, not exceptions. ``sender``
        and ``recipients`` are needed unless ``message`` is a Message."""
        body: str | bytes | bytearray
        if isinstance(message, email.message.Message):
            sender, recipients = envelope_of(message, sender, recipients)
            body = flatten(message)
        elif sender is None or recipients is None:
            raise ValueError("sender and recipients are needed unless message is a Message")
        else:
            body = message
        [outcome] = await self.send_batch(
            [(sender, recipients, body)], mail_options=mail_options, rcpt_options=rcpt_options
        )
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def send_batch(
        self,
        messages: Iterable[BatchMessage],
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        on_result: Callable[[int, SendResult | SmtpError], object] | None = None,
    ) -> list[SendResult | SmtpError]:
        """Sends many messages over this connection, one transaction each, and returns an
        outcome per message, in order, as :meth:`smtpx.SMTP.send_batch`: a
        :class:`~smtpx.SendResult`, or the :class:`SmtpError` that message failed with.
        When the server pipelines, each next message goes out right behind the previous
        one's end (one round trip per message). Every envelope is checked first
        (``ValueError``, nothing sent). An error that closes the connection ends the list
        early, its last entry being that error. ``timeout`` bounds each group of 1,000
        messages.

        ``on_result(index, outcome)``, when given, is called for each message as soon as
        its outcome is known (before the next wait for the server), as with
        :meth:`smtpx.SMTP.send_batch`: a plain function, run on the event loop. An
        exception it raises stops the batch (no further message is started; those under
        way finish unreported, leaving the connection usable) and propagates."""
        batch = Batch(messages, mail_options, rcpt_options)
        self._live()
        for group in batch.groups():
            stream = None if on_result is None else _Stream(batch.reporter(on_result))
            raw = await self._guarded(
                lambda runner, now: runner.start_batch(group, *batch.options),
                before_read=None if stream is None else stream.take,
            )
            if stream is not None:
                raw = stream.finish(raw)  # type: ignore[arg-type]
            if not batch.collect(raw, len(group)):  # type: ignore[arg-type]
                break
        return batch.outcomes

    async def send_message(
        self,
        message: email.message.Message,
        /,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        *,
        timeout: Timeout = _DEFAULT,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """Sends an :class:`email.message.Message`, the envelope taken from its headers
        (Bcc removed) unless given; returns ``(errors, response)`` as :meth:`sendmail`."""
        from_addr, to_addrs = envelope_of(message, sender, recipients)
        return await self.sendmail(
            from_addr, to_addrs, flatten(message), mail_options, rcpt_options, timeout=timeout
        )


#: The extra-info keys of an SSL transport, answered by get_transport_info from the
#: rustls session instead.
_TLS_KEYS = frozenset({"sslcontext", "ssl_object", "sslobject", "peercert", "cipher", "compression"})


def _ssl_cipher(suite: str | None, version: str | None) -> tuple[str | None, str | None, int | None]:
    """An SSL object's ``cipher()`` triple from the rustls session's names: a TLS 1.3
    suite by its IANA name, which OpenSSL uses too (rustls says ``TLS13_AES_...``), and
    the secret bits its name gives. (A TLS 1.2 suite keeps its IANA name, where OpenSSL
    has its own, such as ``ECDHE-RSA-AES256-GCM-SHA384``.)"""
    if suite is None:
        return (None, version, None)
    name = "TLS_" + suite[len("TLS13_"):] if suite.startswith("TLS13_") else suite
    bits = 256 if "_256_" in name or "CHACHA20" in name else 128 if "_128_" in name else None
    return (name, version, bits)


class LMTP(SMTP):
    """An asyncio LMTP client (RFC 2033, port 2003), as :class:`smtpx.LMTP`: LHLO, and a
    delivery reply per recipient after the message, which ``sendmail`` reports like a
    refused RCPT."""

    default_port = LMTP_PORT
    _lmtp = True



async def send(
    message: email.message.Message | str | bytes,
    /,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    mail_options: Iterable[str] | None = None,
    rcpt_options: Iterable[str] | None = None,
    lmtp: bool = False,
    **client_options: Any,
) -> tuple[dict[str, SMTPResponse], str]:
    """Connects, sends one message and quits (aiosmtplib's ``send``); returns ``(errors,
    response)`` as :meth:`SMTP.sendmail`. ``client_options`` are :class:`SMTP`'s keyword
    arguments (``hostname``, ``port``, ``username``, ``password``, ``use_tls``,
    ``start_tls``, ``timeout``, ...). ``sender`` and ``recipients`` are needed unless
    ``message`` is a Message."""
    if not isinstance(message, email.message.Message) and (sender is None or recipients is None):
        raise ValueError("sender and recipients are needed unless message is a Message")
    client = (LMTP if lmtp else SMTP)(**client_options)
    async with client:
        if isinstance(message, email.message.Message):
            return await client.send_message(
                message, sender, recipients, mail_options, rcpt_options
            )
        assert sender is not None and recipients is not None
        return await client.sendmail(sender, recipients, message, mail_options, rcpt_options)


class _Stream:
    """A batch group's outcomes handed to ``report`` as the engine knows them (taken
    before each wait for the server, and the rest at the end); an exception from
    ``report`` stops the batch and is raised once the messages under way are done."""

    def __init__(self, report: Callable[[int, Any], object]) -> None:
        self.report = report
        self.reported: list[Any] = []
        self.failure: BaseException | None = None

    def take(self, runner: _native.ClientRunner) -> None:
        self._give(runner.take_results(), runner)

    def finish(self, rest: list[Any]) -> list[Any]:
        """The group's whole list, once its operation is done (``rest`` what the
        engine's outcome holds); raises the report's exception, if any."""
        self._give(rest, None)
        if self.failure is not None:
            raise self.failure
        return self.reported

    def _give(self, outcomes: list[Any], runner: _native.ClientRunner | None) -> None:
        for outcome in outcomes:
            if self.failure is not None:
                return  # under way when the report failed: finished, not reported
            try:
                self.report(len(self.reported), outcome)
            except BaseException as failure:
                self.failure = failure
                if runner is not None:
                    runner.stop_batch()
                return
            self.reported.append(outcome)


def _expect(reply: SMTPResponse, *codes: int) -> SMTPResponse:
    """The reply, when its code is one of ``codes``; SMTPResponseException otherwise."""
    if reply.code not in codes:
        raise SMTPResponseException(reply.code, reply.message)
    return reply


def _authenticated(reply: SMTPResponse) -> SMTPResponse:
    if reply.code != 235:
        raise SMTPAuthenticationError(reply.code, reply.message)
    return reply


# validate_certs, cert_bundle, tls_context, client_cert, client_key: aiosmtplib's TLS
# keywords, as the client keeps them between connections.
_TlsOptions = tuple[
    bool,
    Union[str, "os.PathLike[str]", None],
    Union[ssl.SSLContext, None],
    Union[str, None],
    Union[str, None],
]


def _one_of_context_or_certificate(tls_context: object, client_cert: object) -> None:
    """aiosmtplib's rule: a TLS context, or a client certificate, not both."""
    if tls_context is not None and client_cert is not None:
        raise ValueError("Either a TLS context or a certificate/key must be provided")
