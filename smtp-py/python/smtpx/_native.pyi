"""Type stubs for the compiled module smtpx._native (see smtp-py/src/lib.rs).

Use the ``smtpx`` package instead: it wraps these in smtplib- and aiosmtpd-style classes.
"""

import os
from typing import Any, Callable, Sequence, final

__all__ = [
    "Client",
    "ClientRunner",
    "ClientSession",
    "Event",
    "Pool",
    "PoolCore",
    "PoolLease",
    "Relay",
    "RelayJob",
    "RelaySession",
    "Server",
    "ServerConnection",
    "ServerPoller",
    "ServerSession",
    "TlsConfig",
    "TlsSession",
    "check_envelope",
    "register_result_types",
    "reply_code_meaning",
    "wire_size",
    "__version__",
]

__version__: str

def reply_code_meaning(code: int) -> str | None:
    """The standard meaning of an SMTP reply code (RFC 5321 section 4.2), or None."""

def wire_size(message: bytes) -> int:
    """The octets ``message`` takes on the wire after CRLF canonicalisation: what
    SIZE= declares (RFC 1870)."""

def check_envelope(
    sender: str,
    recipients: list[str],
    mail_options: list[str] = ...,
    rcpt_options: list[str] = ...,
) -> None:
    """Checks an envelope as the clients would (ValueError), sending nothing; the
    clients' ``send_batch`` checks every message so before the first goes out."""

def register_result_types(reply: type, recipient_result: type, send_result: type) -> None:
    """The NamedTuple classes batch outcomes are built as (smtpx.common registers them)."""

# A wire trace callable: (connection id, "C" or "S", the line without CRLF, redacted by
# the engine). It runs attached to the interpreter, from the thread running the
# connection; an exception it raises is ignored and reported once on ``smtpx.wire``.
_Trace = Callable[[int, str, str], object]

# (code, enhanced code or None, text, smtplib message bytes)
_Reply = tuple[int, str | None, str, bytes]
# (address, RCPT reply, LMTP delivery reply or None, accepted)
_Recipient = tuple[str, _Reply, _Reply | None, bool]

@final
class Client:
    """A connection to an SMTP or LMTP server (the blocking Rust client)."""

    @staticmethod
    def connect(
        host: str,
        port: int,
        *,
        helo_name: str,
        tls: str = "none",
        server_name: str | None = None,
        insecure: bool = False,
        ca_pem: bytes | None = None,
        timeout: float | None = None,
        lmtp: bool = False,
        username: str | None = None,
        password: str | None = None,
        allow_insecure_auth: bool = False,
        pipelining: bool = True,
        chunking: bool = True,
        trace: _Trace | None = None,
        sock_fd: int | None = None,
        unix_path: str | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> Client:
        """Connects (and greets, upgrades, logs in, as asked). ``trace`` sees every line
        from the first; ``set_trace`` changes it later. ``client_cert`` (a PEM chain)
        and ``client_key`` (its key, None when in ``client_cert``) are shown to a server
        that asks for a certificate."""
    def set_trace(self, trace: _Trace | None) -> None:
        """Calls ``trace`` for each line from now on; None stops calling (the switch
        stays installed: a line then costs a lock, no Python)."""
    def ehlo_lines(self) -> list[str] | None: ...
    def features(self) -> list[tuple[str, str]]: ...
    def is_tls(self) -> bool: ...
    def is_closed(self) -> bool: ...
    def peer(self) -> tuple[str, int] | None: ...
    def starttls(
        self,
        server_name: str,
        *,
        insecure: bool = False,
        ca_pem: bytes | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None: ...
    def login(
        self, username: str, password: str, *, allow_insecure_auth: bool = False
    ) -> _Reply:
        """Authenticates; without TLS raises SmtpInsecureAuthError, sending nothing,
        unless ``allow_insecure_auth``."""
    def noop(self) -> _Reply: ...
    def rset(self) -> _Reply: ...
    def vrfy(self, argument: str) -> _Reply: ...
    def expn(self, argument: str) -> _Reply: ...
    def help(self, topic: str | None = None) -> _Reply: ...
    def send(
        self,
        from_addr: str,
        to_addrs: list[str],
        message: Any,
        mail_options: list[str] = ...,
        rcpt_options: list[str] = ...,
    ) -> tuple[_Reply, list[_Recipient], _Reply | None, str | None]: ...
    def sendmail(
        self,
        from_addr: object,
        to_addrs: Sequence[object],
        message: Any,
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
    ) -> tuple[_Reply, list[_Recipient], _Reply | None, str | None] | None: ...
    def send_batch(
        self,
        messages: list[tuple[str, list[str], bytes]],
        mail_options: list[str] = ...,
        rcpt_options: list[str] = ...,
        on_result: Callable[[int, Any], object] | None = None,
    ) -> list[Any]:
        """One ``SendResult`` or exception per message (the registered result types);
        ``on_result(index, outcome)`` is called for each as soon as it is known."""
    def command(
        self, line: str, *, secret: bool = False, allow_insecure_auth: bool = False
    ) -> _Reply:
        """Sends ``line`` as it is; the reply whatever its code (smtplib's docmd)."""
    def content(self, message: bytes) -> _Reply:
        """The message after the caller's own DATA got 354; the final reply."""
    def hello(self, ehlo: bool, name: str | None = None) -> _Reply: ...
    def kept_replies(self) -> tuple[_Reply | None, _Reply | None]:
        """The greeting and the 220 to the last STARTTLS."""
    def quit(self) -> _Reply | None: ...
    def close(self) -> None: ...

@final
class ClientRunner:
    """The engine's client runner for an asyncio driver (see smtp-py/src/runner.rs)."""

    def __new__(
        cls,
        helo_name: str,
        *,
        server_name: str,
        tls: str = "none",
        tls_config: TlsConfig | None = None,
        username: str | None = None,
        password: str | None = None,
        allow_insecure_auth: bool = False,
        lmtp: bool = False,
        timeout: float | None = None,
        trace: _Trace | None = None,
    ) -> ClientRunner: ...
    def set_trace(self, trace: _Trace | None) -> None: ...
    @property
    def id(self) -> int: ...
    @property
    def is_ready(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...
    @property
    def is_tls(self) -> bool: ...
    def ehlo_lines(self) -> list[str] | None: ...
    def kept_replies(self) -> tuple[_Reply | None, _Reply | None]: ...
    def set_allow_insecure_auth(self, allow: bool) -> None: ...
    def start_connect(self) -> None: ...
    def start_send(
        self,
        from_addr: str,
        to_addrs: list[str],
        message: bytes,
        mail_options: list[str] = ...,
        rcpt_options: list[str] = ...,
        *,
        now: float,
    ) -> None: ...
    def start_batch(
        self,
        messages: list[tuple[str, list[str], bytes]],
        mail_options: list[str] = ...,
        rcpt_options: list[str] = ...,
    ) -> None: ...
    def start_login(self, username: str, password: str, *, now: float) -> None: ...
    def start_starttls(
        self, server_name: str, tls_config: TlsConfig | None = None, *, now: float
    ) -> None: ...
    def start_command(
        self,
        verb: str,
        argument: str | None = None,
        content: bytes | None = None,
        *,
        now: float,
    ) -> None: ...
    def start_quit(self, *, now: float) -> None: ...
    def abandon(self) -> None: ...
    def next_action(self, now: float) -> tuple[str, Any]:
        """One of ("write", bytes), ("goodbye", bytes), ("read", deadline),
        ("starttls", deadline), ("close", None), ("abort", None), ("done", outcome)."""
    def take_results(self) -> list[Any]:
        """The batch outcomes known since the last call (SendResult or exception)."""
    def stop_batch(self) -> None:
        """Starts no further message of the batch under way."""
    def written(self) -> None: ...
    def write_failed(self, reason: str) -> None: ...
    def received(self, data: bytes, now: float) -> None: ...
    def eof(self) -> None: ...
    def timed_out(self, now: float) -> None: ...
    def read_failed(self, reason: str) -> None: ...
    def tls_established(self, now: float) -> None: ...
    def tls_failed(self, reason: str, *, timeout: bool = False) -> None: ...

@final
class Server:
    """A running server (the blocking Rust server)."""

    @staticmethod
    def start(
        host: str,
        port: int,
        *,
        factory: Callable[..., Any] | None = None,
        maildir: str | None = None,
        hostname: str,
        data_size_limit: int = 33554432,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        require_starttls: bool = False,
        auth: bool = False,
        auth_require_tls: bool = True,
        auth_required: bool = False,
        timeout: float = 300.0,
        lmtp: bool = False,
        max_connections: int = 10000,
        listen_backlog: int = 1024,
        pipelining_sync: bool = True,
        trace: _Trace | None = None,
        proxy_protocol_timeout: float | None = None,
        proxy_trusted: list[str] = ...,
    ) -> Server:
        """Starts listening. ``trace``, when given, sees every line of every connection,
        called from the connection threads (the server's connection ids).
        ``factory(host, port, tls)`` makes each connection's object; with
        ``proxy_protocol_timeout`` (seconds) every connection begins with a PROXY protocol
        header from one of the ``proxy_trusted`` networks, and the factory is called as
        ``factory(host, port, tls, proxy)`` with the client's address and the header
        (see ``ServerConnection.proxy``)."""
    @property
    def address(self) -> tuple[str, int]: ...
    def active_connections(self) -> int: ...
    def stop(self, grace: float = 5.0) -> int: ...

# (MAIL reply, recipients, final reply or None, queue id or None)
_Result = tuple[_Reply, list[_Recipient], _Reply | None, str | None]

@final
class Event:
    """Something a sans-IO session reports. ``kind`` says what; the other fields are
    None (or empty, or False) unless that kind carries them.

    ServerConnection hooks (``needs_decision`` ones answer with a status, see
    ``ServerConnection.answer``): "hello"* (verb, domain), "tls_started", "auth"*
    (mechanism, username, password), "mail"* (sender, options), "rcpt"* (recipient,
    options), "message_end"* (data: the whole message), "reset", "verify"* (argument),
    "close".

    ServerSession kinds (``needs_decision`` ones wait for ``accept()`` or ``reply()``):
    "connect"*, "hello"* (verb, domain), "starttls", "auth"* (mechanism, username,
    password), "mail"* (sender, options), "rcpt"* (recipient, options), "message_start"*,
    "message_data" (data), "message_end"*, "message_aborted" (reason), "reset",
    "verify"* (argument), "expand"* (argument), "close".

    ClientSession kinds: "ready", "starttls", "authenticated" (reply), "send_body",
    "transaction_complete" (result), "reply" (reply), "closed", "error" (error, reply,
    fatal).
    """

    @property
    def kind(self) -> str: ...
    @property
    def needs_decision(self) -> bool: ...
    @property
    def verb(self) -> str | None: ...
    @property
    def domain(self) -> str | None: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def recipient(self) -> str | None: ...
    @property
    def options(self) -> list[str]: ...
    @property
    def data(self) -> bytes | None: ...
    @property
    def mechanism(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def argument(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def reply(self) -> _Reply | None: ...
    @property
    def result(self) -> _Result | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def exception(self) -> BaseException | None:
        """For a client "error": the smtpx exception the blocking client would raise."""
    @property
    def fatal(self) -> bool: ...

@final
class ServerSession:
    """The server side of one connection, without I/O: the engine's ServerSession.

    The embedder owns the socket and a monotonic clock (seconds as floats, for example
    ``loop.time()``). A custom loop::

        session = ServerSession("mx.example", now=clock())
        while not session.is_closed:
            while (event := session.next_event()) is not None:
                if event.kind == "message_data":
                    content += event.data
                elif event.needs_decision:
                    session.accept()  # or session.reply(550, "No", "5.7.1")
            sock.sendall(session.output())
            data = sock.recv(65536)  # wait at most until session.next_deadline()
            if data:
                session.receive(data, clock())
            else:
                session.receive_eof()
            session.handle_timeout(clock())

    ``receive`` returns how many bytes were taken: offer the rest again after polling
    events. ``output`` returns the bytes to write and clears them.
    """

    def __new__(
        cls,
        hostname: str,
        *,
        now: float = 0.0,
        max_message_size: int = 26214400,
        max_recipients: int = 100,
        lmtp: bool = False,
        auth: bool = False,
        allow_insecure_auth: bool = False,
        require_auth: bool = False,
        timeout: float = 300.0,
        starttls: bool = False,
        tls_active: bool = False,
        require_tls: bool = False,
        pipelining_sync: bool = True,
    ) -> ServerSession:
        """``starttls`` offers STARTTLS (the embedder can do TLS); ``tls_active`` says the
        connection is already encrypted (implicit TLS); ``require_tls`` refuses MAIL and
        AUTH until STARTTLS."""
    def receive(self, data: bytes, now: float) -> int: ...
    def receive_eof(self) -> None: ...
    def next_event(self) -> Event | None: ...
    def accept(self) -> None: ...
    def reply(self, code: int, text: str, enhanced: str | None = None) -> None: ...
    def reply_line(self, line: str) -> None:
        """Answers with a status line such as "550 5.1.1 No such user"."""
    def reply_per_recipient(self, lines: list[str]) -> None:
        """LMTP's answer to "message_end": one status line per accepted recipient, in RCPT
        order (missing ones repeat the last). Under SMTP only the first is used."""
    def output(self) -> bytes: ...
    def next_deadline(self) -> float | None: ...
    def handle_timeout(self, now: float) -> None: ...
    def tls_established(self, now: float) -> None:
        """The TLS handshake after the "starttls" event succeeded: the client must greet
        again. Whatever was received after STARTTLS and before this was thrown away."""
    @property
    def is_closed(self) -> bool: ...
    @property
    def is_tls(self) -> bool: ...
    @property
    def is_waiting_for_decision(self) -> bool: ...
    @property
    def authenticated_user(self) -> str | None: ...
    def set_trace(self, trace: _Trace | None, connection_id: int = 0) -> None:
        """Calls ``trace`` for each line from now on, with ``connection_id``; None stops
        calling. Nothing is traced until a trace is set."""

@final
class ServerConnection:
    """The server side of one connection, without I/O: the engine's connection layer
    (smtp_core::server::connection). It owns the session, the hook dispatch, input held
    while the session is busy, the deadlines (per command, per data block, the TLS
    handshake), the STARTTLS handover and graceful shutdown; the embedder reads, writes,
    keeps one timer and does the TLS I/O. ``smtpx.aio.Server`` is such an embedder.

    ``next_action(now)`` says what to do next, as ``(kind, payload)``; ``now`` is a
    monotonic clock in seconds (for example ``loop.time()``)::

        conn = ServerConnection("mx.example", now=clock())
        while True:
            kind, payload = conn.next_action(clock())
            if kind == ServerConnection.CONNECT:   # a client: accept it, or refuse it
                conn.connected()                   # (conn.connected("554 go away"))
            elif kind == ServerConnection.HOOK:    # payload: an Event
                conn.answer(None)                  # accept, or a status line
            elif kind == ServerConnection.WRITE:   # payload: bytes, already counted
                sock.sendall(payload)              # as written: send them all
            elif kind == ServerConnection.READ:    # payload: the deadline
                data = sock.recv(65536)            # wait at most until the deadline
                if data:                           # (then conn.timeout(clock()))
                    conn.receive(data, clock())
                else:
                    conn.receive_eof()
            elif kind == ServerConnection.START_TLS:  # payload: the handshake's deadline
                ...                                # TlsSession, then tls_established
            else:                                  # CLOSE: every hook has run
                sock.close()
                break

    Hooks come as ``Event`` objects (see ``Event`` for the kinds). The content of a
    message is gathered here and comes whole with "message_end"; DATA's start, EXPN and
    an aborted message are answered here (accept, the engine's standard reply, drop).

    A connection that broke (an I/O error, a failed handshake): ``lost()``, then keep
    answering hooks until CLOSE; nothing more is written. A server stopping: ``stop()``;
    an idle session gets 421 and closes at once, one in a transaction finishes first.
    """

    CONNECT: int
    HOOK: int
    WRITE: int
    READ: int
    START_TLS: int
    CLOSE: int

    def __new__(
        cls,
        hostname: str,
        *,
        now: float = 0.0,
        max_message_size: int | None = ...,  # 26214400
        max_recipients: int = 100,
        lmtp: bool = False,
        auth: bool = False,
        allow_insecure_auth: bool = False,
        require_auth: bool = False,
        timeout: float = 300.0,
        starttls: bool = False,
        implicit_tls: bool = False,
        require_tls: bool = False,
        pipelining_sync: bool = True,
        banner: str | None = None,
        smtputf8: bool = True,
        eight_bit_mime: bool = True,
        auth_mechanisms: list[str] | None = None,
        mail_rcpt_hooks: bool = True,
        peer: tuple[str, int] | None = None,
        proxy_protocol_timeout: float | None = None,
        proxy_trusted: list[str] = ...,
        command_limits: tuple[int, list[tuple[str, int]]] | None = None,
        relay: Relay | None = None,
    ) -> ServerConnection:
        """The options are ServerSession's; with ``implicit_tls`` (port 465 style) the TLS
        handshake is the first action. ``max_message_size=None``: no limit (and no SIZE).
        ``banner``: the greeting's text after the name. ``auth_mechanisms``: the names
        offered with ``auth`` (PLAIN, LOGIN; default both). perf: ``mail_rcpt_hooks=False``
        accepts MAIL and RCPT here (no "mail"/"rcpt" hooks; the envelope comes with the
        message, :meth:`take_envelope`). "reset" is answered here; NOOP, RSET and QUIT are the
        hooks "noop", "rset" and "quit" (a status line answers them), and a status of
        several lines (CRLF-joined) answers EHLO with edited extension lines.
        With ``proxy_protocol_timeout`` (seconds) the connection must begin with a PROXY
        protocol header within that time, and only when ``peer`` (the socket's ``(host,
        port)``) is in one of the ``proxy_trusted`` networks (CIDR strings); otherwise the
        first action is CLOSE, nothing said. Until the header is read, read at most
        ``read_limit`` bytes at a time. ``command_limits``: ``(default, [(verb, limit),
        ...])``, how many times each command may be given (aiosmtpd's
        ``command_call_limit``); the one over its limit gets 421 4.7.0 and the session
        closes. ``relay``: the core's relay answers the transaction hooks (MAIL, RCPT, the
        content piece by piece, the end of the message, RSET, the close) itself; each is
        handed over as a :class:`RelayJob` (kind ``"relay"``) to ``run()`` off the event
        loop and give back to :meth:`answer`."""
    @staticmethod
    def busy_reply(hostname: str) -> bytes:
        """The 421 a server at its connection limit says before closing a connection."""
    def next_action(self, now: float) -> tuple[int, Any]:
        """``(kind, payload)``: CONNECT (None), HOOK (an Event), WRITE (bytes), READ (the
        deadline), START_TLS (the handshake's deadline) or CLOSE (None). Output is handed
        over when the embedder is to wait (before READ, START_TLS, CLOSE), so what a
        pipelined group of commands says comes as one WRITE. Non-hook actions are the
        same until acted on."""
    def connected(self, refusal: str | None = None) -> None:
        """The answer to CONNECT: None, or a status line refusing the client (554 keeps
        the session for QUIT only, 421 closes at once)."""
    def answer(self, status: str | list[str] | RelayJob | None = None) -> None:
        """The answer to the last HOOK. For a hook that needs a decision: None accepts
        (the engine's own reply), a status line such as "550 5.1.1 No such user"
        replies, and after "message_end" under LMTP a list gives one line per accepted
        recipient. Anything else is logged and answered with 451 4.3.0. A
        :class:`RelayJob` that was run answers with what the relay said."""
    def receive(self, data: bytes | bytearray, now: float, size: int | None = None) -> None:
        """Input read from the client (the first ``size`` bytes of ``data``). All of it
        is kept: what the session has no room for waits, and no READ comes until it is
        taken."""
    def step(self, now: float, fd: int | None = None) -> tuple[int, Any, bytes | None]:
        """perf: :meth:`next_action` with the output gathered before a waiting action
        (CONNECT, READ, START_TLS, CLOSE) handed over with it: ``(kind, payload, output or
        None)``. Write the output first; asking again gives the same waiting action.
        With ``fd``, a plain non-blocking socket whose transport holds nothing unsent,
        the output is sent on it here, and only what it did not take is handed over."""
    def read_socket(self, fd: int, now: float) -> int:
        """perf: one read from the plain non-blocking socket ``fd`` (at most
        :attr:`read_limit` bytes), taken as :meth:`receive` takes input. Returns the bytes
        read, 0 at the end of the stream, -1 when there was nothing to read; a failed read
        raises OSError."""
    def read_step(self, fd: int, now: float, send_fd: int | None = None) -> tuple[int, Any, bytes | None] | int:
        """perf: :meth:`read_socket`, then, when bytes came, ``step(now, send_fd)`` in the
        same call: the step's tuple; else what :meth:`read_socket` returned."""
    def ehlo_lines(self) -> list[str]:
        """The lines of the EHLO reply the engine would say now, as written."""
    def take_envelope(self) -> tuple[str, list[str], list[str], list[str]] | None:
        """With ``mail_rcpt_hooks=False``: the envelope of the message just handed over
        ("message_end"), ``(sender, mail_options, recipients, rcpt_options)``."""
    def receive_eof(self) -> None:
        """The client closed its side (call it when the action is READ)."""
    def timeout(self, now: float) -> None:
        """The deadline of the last READ passed."""
    def tls_established(self, now: float, tls: TlsSession | dict[str, Any] | None = None) -> None:
        """The handshake of the last START_TLS succeeded. ``tls`` tells what it
        negotiated: the TlsSession that did it, or a dict with "version", "cipher",
        "server_name" and "peer_certificates" (DER bytes) for another TLS stack."""
    def lost(self) -> None:
        """The connection is gone: the remaining hooks come, then CLOSE."""
    def stop(self) -> None:
        """The server is shutting down (see the class docs)."""
    def set_trace(self, trace: _Trace | None, connection_id: int = 0) -> None:
        """Calls ``trace`` for each line from now on, with ``connection_id``; None stops
        calling. Nothing is traced until a trace is set."""
    @property
    def is_idle(self) -> bool:
        """True between transactions: a shutdown loses nothing by ending it."""
    @property
    def is_tls(self) -> bool: ...
    @property
    def tls(self) -> dict[str, Any] | None:
        """What the handshake negotiated, as given to ``tls_established`` ("version",
        "cipher", "server_name", "peer_certificates"), or None before it."""
    @property
    def read_limit(self) -> int:
        """The most bytes the next read may take; 0 for any number. Not 0 only while a
        PROXY header is read: reading past it would take the client's first bytes."""
    @property
    def peer(self) -> tuple[str, int] | None:
        """The client's ``(host, port)``: the PROXY header's, else the ``peer`` given."""
    @property
    def proxy(self) -> dict[str, Any] | None:
        """The PROXY protocol header the connection began with: ``{"version": 1 | 2,
        "command": "PROXY" | "LOCAL", "source": (host, port) | None, "destination":
        (host, port) | None, "tlvs": [(type, value), ...]}``; None without one."""
    @property
    def deadline(self) -> float:
        """The deadline of the last READ or START_TLS action handed out, in the clock of
        ``now`` (0.0 before the first)."""

@final
class ServerPoller:
    """perf: the readiness of one server's direct-mode connections (whose socket the
    engine reads and writes itself, :meth:`ServerConnection.read_step`), watched by an
    epoll instance of its own: the event loop watches only :meth:`fileno`, and
    :meth:`poll` reads and steps every ready connection, handing back only those that
    need the driver. Linux only (OSError elsewhere)."""

    def __init__(self) -> None: ...
    def fileno(self) -> int:
        """The epoll descriptor, readable while a watched connection is (-1 once closed)."""
    def __len__(self) -> int:
        """How many connections are watched."""
    def add(self, fd: int, connection: ServerConnection, owner: Any, send: bool, timer_at: float | None) -> None:
        """Watches the socket ``fd`` of ``connection`` for input; :meth:`poll` hands
        ``owner`` back with what a read led to. ``send``: the engine may send on ``fd``
        (the transport holds nothing unsent); ``timer_at``: when the connection's timer
        fires (None: none is armed). Watching a descriptor again replaces its entry."""
    def remove(self, fd: int, connection: ServerConnection) -> None:
        """Stops watching ``fd`` if it is ``connection``'s."""
    def set_send(self, fd: int, send: bool) -> None:
        """Whether the engine may send on ``fd``."""
    def set_timer(self, fd: int, timer_at: float | None) -> None:
        """When the timer of the connection on ``fd`` fires (None: none is armed)."""
    def poll(self, now: float) -> list[tuple[Any, tuple[int, Any, bytes | None] | int | BaseException | None]] | None:
        """Reads every ready connection once and takes the step it leads to; returns the
        ``(owner, outcome)`` pairs that need the driver, or None. The outcome is the
        step's tuple, 0 at the end of the stream, the exception reading or stepping
        raised, or None (read the socket yourself). A READ with nothing to write and a
        deadline no earlier than ``timer_at`` is done and not handed back."""
    def close(self) -> None:
        """Stops watching every connection and closes the epoll descriptor."""

@final
class ClientSession:
    """The client side of one connection, without I/O: the engine's ClientSession. It
    greets (and upgrades and logs in, as configured) by itself; "ready" then means
    commands and ``send_mail`` may start::

        session = ClientSession("client.example", now=clock())
        # connect; then loop: write session.output(), feed what is read to
        # session.receive(data, clock()), and handle session.next_event():
        #   "ready"                -> session.send_mail(sender, [rcpt])
        #   "send_body"            -> session.send_body(message); session.finish_body()
        #   "transaction_complete" -> event.result; session.quit()
        #   "closed" / fatal "error" -> close the connection
        #   "starttls"             -> TLS handshake (TlsSession), then
        #                             session.tls_established(clock())

    ``starttls`` is "never" (the default), "opportunistic" (upgrade when offered) or
    "required" (a server that does not offer it ends the session before MAIL or AUTH);
    ``tls_active`` says the connection is already encrypted (implicit TLS). Credentials
    are sent only over TLS unless ``allow_insecure_auth``: otherwise the opening ends
    with an "error" (SmtpInsecureAuthError) and QUIT, and ``login`` raises it.
    """

    def __new__(
        cls,
        helo_name: str,
        *,
        now: float = 0.0,
        lmtp: bool = False,
        username: str | None = None,
        password: str | None = None,
        allow_insecure_auth: bool = False,
        pipelining: bool = True,
        chunking: bool = True,
        starttls: str = "never",
        tls_active: bool = False,
    ) -> ClientSession: ...
    def receive(self, data: bytes, now: float) -> None: ...
    def receive_eof(self) -> None: ...
    def next_event(self) -> Event | None: ...
    def send_mail(
        self,
        sender: str,
        recipients: list[str],
        size: int | None = None,
        mail_options: list[str] = ...,
        rcpt_options: list[str] = ...,
    ) -> None: ...
    def send_body(self, data: bytes) -> None: ...
    def finish_body(self) -> None: ...
    def noop(self) -> None: ...
    def rset(self) -> None: ...
    def vrfy(self, argument: str) -> None: ...
    def quit(self) -> None: ...
    def login(self, username: str, password: str) -> None:
        """Authenticates now (PLAIN or LOGIN, whichever the server offers):
        "authenticated" follows, or an "error" that leaves the session ready. Without
        TLS raises SmtpInsecureAuthError at once, writing nothing, unless AUTH in clear
        is allowed."""
    def set_allow_insecure_auth(self, allow: bool) -> None:
        """Allows (or forbids again) AUTH without TLS from the next ``login`` on."""
    @property
    def can_send_mail(self) -> bool:
        """True when ``send_mail`` would start a transaction now: the session is ready, or
        the current message is written and the next can be chained behind its end (with
        PIPELINING and without CHUNKING: one round trip per message)."""
    def starttls(self) -> None:
        """Sends STARTTLS now (ready and not yet encrypted): "starttls" follows, or an
        "error" when the server refuses."""
    def output(self) -> bytes: ...
    def next_deadline(self) -> float | None: ...
    def handle_timeout(self, now: float) -> None: ...
    def tls_established(self, now: float) -> None:
        """The TLS handshake after the "starttls" event succeeded: the session greets
        again. What the server sent after its 220 was thrown away."""
    def set_trace(self, trace: _Trace | None, connection_id: int = 0) -> None:
        """Calls ``trace`` for each line from now on, with ``connection_id``; None stops
        calling. Nothing is traced until a trace is set."""
    @property
    def is_ready(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...
    @property
    def is_tls(self) -> bool: ...

@final
class TlsConfig:
    """A rustls configuration built by the engine's builders (smtp_core::tls), as the
    blocking client and server and the C API use. Build once, share between sessions;
    errors (an unreadable file, bad PEM) raise ``smtpx.SmtpTlsError`` here."""

    @staticmethod
    def client(
        *,
        roots: str = "webpki",
        ca_file: str | os.PathLike[str] | None = None,
        ca_pem: bytes | None = None,
        dangerous_accept_invalid_certs: bool = False,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> TlsConfig:
        """Trust Mozilla's roots ("webpki", compiled in) or the system's ("system"), or
        only the certificates of ``ca_file`` or ``ca_pem``. With
        ``dangerous_accept_invalid_certs`` any certificate is accepted (tests only).
        ``client_cert`` (a PEM chain, leaf first) and ``client_key`` (its key, None
        when in ``client_cert``) are shown to a server that asks for a certificate.
        Without arguments: the process's one default configuration, whose session cache
        every client given no settings shares (so they resume their TLS sessions)."""
    @staticmethod
    def server(cert_pem: bytes, key_pem: bytes) -> TlsConfig:
        """A PEM certificate chain (leaf first) and private key."""
    @staticmethod
    def server_from_files(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> TlsConfig: ...
    @property
    def is_server(self) -> bool: ...

@final
class TlsSession:
    """One TLS connection without I/O (rustls). Feed it what the socket gave
    (``receive`` returns the plaintext), give it plaintext to send (``write``), and write
    ``output()`` to the socket after each call. The handshake runs until
    ``is_handshaking`` is False::

        tls = TlsSession(config, "mx.example")   # a server session: TlsSession(config)
        while tls.is_handshaking:
            sock.sendall(tls.output())
            plain = tls.receive(sock.recv(65536))  # may already carry application data
        sock.sendall(tls.output())

    Failures (a broken record, an untrusted certificate) raise ``smtpx.SmtpTlsError``;
    ``output()`` then holds the alert to send. Buffers hold at most one partial record
    between calls.
    """

    def __new__(cls, config: TlsConfig, server_name: str | None = None) -> TlsSession: ...
    def receive(self, data: bytes) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def output(self) -> bytes: ...
    def close(self) -> None:
        """Queues close_notify (take it with ``output()``)."""
    @property
    def is_handshaking(self) -> bool: ...
    @property
    def peer_closed(self) -> bool: ...
    @property
    def protocol_version(self) -> str | None: ...
    @property
    def cipher_suite(self) -> str | None: ...

@final
class Pool:
    """A bounded pool of client connections to one server, shared between threads (the
    core's pool policy); see ``smtpx.pool.SMTPPool``."""

    def __new__(
        cls,
        host: str,
        port: int,
        *,
        helo_name: str,
        tls: str = "none",
        server_name: str | None = None,
        insecure: bool = False,
        ca_pem: bytes | None = None,
        timeout: float | None = None,
        lmtp: bool = False,
        username: str | None = None,
        password: str | None = None,
        max_size: int = 8,
        idle_timeout: float = 60.0,
        max_messages: int = 0,
        check_after: float = 1.0,
        checkout_timeout: float = 30.0,
    ) -> Pool: ...
    def send(
        self,
        from_addr: str,
        to_addrs: list[str],
        message: bytes,
        mail_options: list[str] = ...,
        rcpt_options: list[str] = ...,
    ) -> _Result:
        """Sends one message (bytes) over a pooled connection; the result tuple as
        `Client.send` gives it."""
    def status(self) -> tuple[int, int]:
        """`(open, idle)` connections now."""
    def reap(self) -> None:
        """Closes the connections idle for too long."""
    def close(self) -> None:
        """Closes the pool: idle connections now, the others when given back."""

@final
class RelayJob:
    """A relay hook of a :class:`ServerConnection` made with ``relay``: ``run()`` it where
    it may wait on the next hop, then pass it to ``ServerConnection.answer``."""

    @property
    def kind(self) -> str:
        """``"relay"``."""
    def run(self) -> None:
        """Runs the hook (the interpreter is released while it waits)."""

@final
class PoolLease:
    """A connection lent by :class:`PoolCore`; ``conn`` is None until ``put``."""

    @property
    def conn(self) -> Any:
        """The connection, or None."""
    @property
    def messages(self) -> int:
        """Messages the connection carried before this lease."""
    def put(self, conn: Any) -> None:
        """Puts the freshly opened connection in."""

@final
class PoolCore:
    """The core's pool policy over Python connection objects (for a pool whose I/O is
    Python's); times are the caller's clock in seconds. See ``smtpx.pool.AsyncSMTPPool``."""

    def __new__(
        cls,
        *,
        max_size: int = 8,
        idle_timeout: float = 60.0,
        max_messages: int = 0,
        check_after: float = 1.0,
        checkout_timeout: float = 30.0,
        now: float = 0.0,
    ) -> PoolCore: ...
    def checkout(self, now: float) -> tuple[str, PoolLease | None, bool]:
        """``("reuse", lease, check)``, ``("connect", lease, False)`` or ``("wait", None,
        False)``."""
    def checkin(self, lease: PoolLease, healthy: bool, sent: int, now: float) -> Any:
        """Gives a lease back; returns the connection to close now, or None."""
    def discard(self, lease: PoolLease) -> Any:
        """Frees a lease's slot; returns the connection it held, or None."""
    def expired(self, now: float) -> list[Any]:
        """The idle connections past ``idle_timeout``, taken out for closing."""
    def close(self) -> list[Any]:
        """Closes the pool; returns the idle connections for closing."""
    def status(self) -> tuple[int, int]:
        """``(open, idle)`` connections now."""
    @property
    def checkout_timeout(self) -> float:
        """Seconds a sender waits for a free slot."""

@final
class Relay:
    """A relay to one next hop (the core's relay handler); see
    ``smtpx.relay.RelayHandler``."""

    def __new__(
        cls,
        host: str,
        port: int,
        *,
        helo_name: str,
        tls: str = "none",
        server_name: str | None = None,
        insecure: bool = False,
        ca_pem: bytes | None = None,
        timeout: float | None = None,
        lmtp: bool = False,
        username: str | None = None,
        password: str | None = None,
        max_size: int = 8,
    ) -> Relay: ...
    def session(self) -> RelaySession:
        """The per-connection part, for one client connection."""
    def status(self) -> tuple[int, int]:
        """`(open, idle)` next-hop connections now."""
    def close(self) -> None:
        """Closes the next-hop connections."""

@final
class RelaySession:
    """The relay's hooks for one client connection; each answers with status lines (the
    next hop's replies)."""

    def mail(self, address: str, options: list[str] = ...) -> str:
        """MAIL FROM (options as aiosmtpd gives them, e.g. `["SIZE=100"]`): the next hop's
        status line."""
    def rcpt(self, address: str, options: list[str] = ...) -> str:
        """RCPT TO: the next hop's status line."""
    def data(self, content: bytes, lmtp: bool = False) -> list[str]:
        """The whole message (the content as the server received it): DATA on the next hop,
        the content in pieces, and its final reply: one status line, or under `lmtp` one
        per accepted recipient."""
    def reset(self) -> None:
        """RSET, or the end of a transaction: the next hop's transaction is abandoned."""
    def close(self) -> None:
        """The client connection is over: the next-hop connection goes back to the pool."""
