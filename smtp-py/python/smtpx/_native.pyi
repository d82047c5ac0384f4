"""Type stubs for the compiled module smtpx._native (see smtp-py/src/lib.rs).

Use the ``smtpx`` package instead: it wraps these in smtplib- and aiosmtpd-style classes.
"""

from typing import Any, Callable, final

__all__ = ["Client", "ClientSession", "Event", "Server", "ServerSession", "reply_code_meaning", "__version__"]

__version__: str

def reply_code_meaning(code: int) -> str | None:
    """The standard meaning of an SMTP reply code (RFC 5321 section 4.2), or None."""

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
        pipelining: bool = True,
        chunking: bool = True,
    ) -> Client: ...
    def ehlo_lines(self) -> list[str] | None: ...
    def features(self) -> list[tuple[str, str]]: ...
    def is_tls(self) -> bool: ...
    def is_closed(self) -> bool: ...
    def peer(self) -> tuple[str, int] | None: ...
    def starttls(self, server_name: str, *, insecure: bool = False, ca_pem: bytes | None = None) -> None: ...
    def login(self, username: str, password: str) -> _Reply: ...
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
    def send_batch(
        self,
        messages: list[tuple[str, list[str], bytes]],
        mail_options: list[str] = ...,
        rcpt_options: list[str] = ...,
    ) -> list[tuple[_Reply, list[_Recipient], _Reply | None, str | None] | BaseException]: ...
    def quit(self) -> None: ...
    def close(self) -> None: ...

@final
class Server:
    """A running server (the blocking Rust server)."""

    @staticmethod
    def start(
        host: str,
        port: int,
        *,
        factory: Callable[[str, int, bool], Any] | None = None,
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
    ) -> Server: ...
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
    ) -> ServerSession: ...
    def receive(self, data: bytes, now: float) -> int: ...
    def receive_eof(self) -> None: ...
    def next_event(self) -> Event | None: ...
    def accept(self) -> None: ...
    def reply(self, code: int, text: str, enhanced: str | None = None) -> None: ...
    def reply_line(self, line: str) -> None:
        """Answers with a status line such as "550 5.1.1 No such user"."""
    def output(self) -> bytes: ...
    def next_deadline(self) -> float | None: ...
    def handle_timeout(self, now: float) -> None: ...
    @property
    def is_closed(self) -> bool: ...
    @property
    def is_waiting_for_decision(self) -> bool: ...
    @property
    def authenticated_user(self) -> str | None: ...

@final
class ClientSession:
    """The client side of one connection, without I/O: the engine's ClientSession
    (plain text only: STARTTLS is never sent). It greets (and logs in, when given
    credentials) by itself; "ready" then means commands and ``send_mail`` may start::

        session = ClientSession("client.example", now=clock())
        # connect; then loop: write session.output(), feed what is read to
        # session.receive(data, clock()), and handle session.next_event():
        #   "ready"                -> session.send_mail(sender, [rcpt])
        #   "send_body"            -> session.send_body(message); session.finish_body()
        #   "transaction_complete" -> event.result; session.quit()
        #   "closed" / fatal "error" -> close the connection
    """

    def __new__(
        cls,
        helo_name: str,
        *,
        now: float = 0.0,
        lmtp: bool = False,
        username: str | None = None,
        password: str | None = None,
        pipelining: bool = True,
        chunking: bool = True,
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
    def output(self) -> bytes: ...
    def next_deadline(self) -> float | None: ...
    def handle_timeout(self, now: float) -> None: ...
    @property
    def is_ready(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...
