"""Type stubs for the compiled module smtpx._native (see smtp-py/src/lib.rs)."""

__version__: str

def reply_code_meaning(code: int) -> str | None:
    """The standard meaning of an SMTP reply code (RFC 5321 section 4.2), or None."""
