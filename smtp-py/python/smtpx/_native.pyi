"""Type stubs for the compiled module smtpx._native (see smtp-py/src/lib.rs).

Use the ``smtpx`` package instead: it wraps these in smtplib- and aiosmtpd-style classes.
"""

from typing import Any, Callable, final

__all__ = ["Client", "Server", "reply_code_meaning", "__version__"]

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
