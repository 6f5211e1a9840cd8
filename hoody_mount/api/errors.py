"""Errors of the file API: JSON ``{"error": code, "message": text}`` with the right status."""

from __future__ import annotations

from ..http_rules import error_status


class ApiError(Exception):
    """A request the API refuses, with its HTTP status and a stable error code."""

    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or []
        self.message = message


def from_os_error(exc: OSError) -> ApiError:
    """The API error for an OSError of the core (or of the connection: a body that
    stopped arriving is 408, not an internal error)."""
    if isinstance(exc, TimeoutError):
        return ApiError(408, "request_timeout", "the request body stopped arriving")
    status, code = error_status(exc)
    text = exc.strerror or str(exc)
    if exc.filename and status not in (423, 500):  # (a lock's text names its path)
        text = f"{text}: {exc.filename}"
    return ApiError(status, code, text)
