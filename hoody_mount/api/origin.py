"""Cross-site requests: a request that changes something must come from the server's origin.

A page elsewhere can make a browser POST a form to the API with the user's credentials
(``enctype=text/plain`` even makes a JSON-looking body). Browsers name the page's origin
in ``Origin`` and say where a request comes from in ``Sec-Fetch-Site``; a state-changing
request whose ``Origin`` is another origin (or ``null``), or that is ``cross-site`` or
``same-site``, is refused with 403. A request without either header (curl, scripts) is not
a browser's and goes through. (``foreign`` itself is in ``http_rules``: the login page
asks it too.)
"""

from __future__ import annotations

from typing import Any

from ..http_rules import foreign, own_origin
from .errors import ApiError

__all__ = ["FORM_TYPES", "SAFE_METHODS", "check", "foreign", "own_origin"]  # (both in http_rules)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The body types an HTML form can send (the CORS "simple" ones).
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def check(environ: dict[str, Any]) -> None:
    """Refuse a state-changing request made from another origin (403 ``cross_origin``)."""
    reason = foreign(environ)
    if reason is not None:
        raise ApiError(
            403, "cross_origin", f"{reason}; changes are accepted only from this server's pages"
        )
