"""Errors of the file API: JSON ``{"error": code, "message": text}`` with the right status."""

from __future__ import annotations

import errno

_BY_ERRNO: dict[int, tuple[int, str]] = {
    errno.ENOENT: (404, "not_found"),
    errno.EACCES: (403, "forbidden"),
    errno.EPERM: (403, "forbidden"),
    errno.EROFS: (403, "forbidden"),
    errno.EEXIST: (409, "exists"),
    errno.ENOTEMPTY: (409, "not_empty"),
    errno.ENOTDIR: (409, "not_a_directory"),
    errno.EISDIR: (409, "is_a_directory"),
    errno.ENXIO: (409, "not_a_regular_file"),
    errno.EBUSY: (409, "busy"),
    errno.EXDEV: (409, "cross_device"),
    errno.ELOOP: (400, "too_many_links"),
    errno.EINVAL: (400, "invalid"),
    errno.EBADMSG: (400, "bad_body"),
    errno.ECANCELED: (400, "cancelled"),
    errno.EFBIG: (413, "too_large"),
    errno.ENAMETOOLONG: (400, "name_too_long"),
    errno.ENOSPC: (507, "insufficient_storage"),
    errno.EDQUOT: (507, "insufficient_storage"),
}

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    507: "Insufficient Storage",
}


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
    status, code = _BY_ERRNO.get(exc.errno or 0, (500, "internal"))
    text = exc.strerror or str(exc)
    if exc.filename and status != 500:
        text = f"{text}: {exc.filename}"
    return ApiError(status, code, text)


def status_line(status: int) -> str:
    """``404 Not Found`` and so on."""
    return f"{status} {REASONS.get(status, 'Error')}"
