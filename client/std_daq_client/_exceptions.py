"""Exceptions raised by the std-daq client."""


class StdDaqAdminException(Exception):
    """State or logic problem reported by the std-daq server.

    Raised when the server answered HTTP 200 with ``"status" != "ok"`` (for example a write request while
    the writer is busy, or an invalid config value). The exception message is the server's message.
    """


class ServerUnreachable(RuntimeError):
    """No answer from the std-daq server at all (connection refused, timed out, ...)."""
