"""Cross-site requests: a request that changes something must come from the server's origin.

A page elsewhere can make a browser POST a form to the API with the user's credentials
(``enctype=text/plain`` even makes a JSON-looking body). Browsers name the page's origin
in ``Origin`` and say where a request comes from in ``Sec-Fetch-Site``; a state-changing
request whose ``Origin`` is another origin (or ``null``), or that is ``cross-site`` or
``same-site``, is refused with 403. A request without either header (curl, scripts) is not
a browser's and goes through.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The body types an HTML form can send (the CORS "simple" ones).
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})

Origin = tuple[str, str, int]


def _parse(scheme: str, netloc: str) -> Origin | None:
    """(scheme, host, port) of ``scheme://netloc``, the port defaulted; None if malformed."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not netloc or "@" in netloc:
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def own_origin(environ: dict[str, Any]) -> Origin | None:
    """The origin the request was sent to: its scheme and ``Host`` (or the server's name)."""
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    host = environ.get("HTTP_HOST")
    if not host:
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return _parse(scheme, str(host).strip())


def foreign(environ: dict[str, Any]) -> str | None:
    """Why the request comes from another site (one sentence), or None when it does not."""
    site = str(environ.get("HTTP_SEC_FETCH_SITE", "")).strip().lower()
    if site in _FOREIGN_SITES:
        return f"the browser says this request is {site} (Sec-Fetch-Site)"
    sent = environ.get("HTTP_ORIGIN")
    if sent is None:
        return None
    text = str(sent).strip()
    scheme, sep, rest = text.partition("://")
    parsed = _parse(scheme, rest) if sep else None
    if parsed is None or parsed != own_origin(environ):
        return f"the request comes from the origin {text!r}, not from this server"
    return None


def check(environ: dict[str, Any]) -> None:
    """Refuse a state-changing request made from another origin (403 ``cross_origin``)."""
    reason = foreign(environ)
    if reason is not None:
        raise ApiError(
            403, "cross_origin", f"{reason}; changes are accepted only from this server's pages"
        )
