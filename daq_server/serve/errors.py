"""The error every layer of the server raises for a state or logic problem with a request."""


class AdminError(RuntimeError):
    """Answered as HTTP 200 ``{"status": "error", "message": ...}`` (StdDaqAdminException in the client)."""
