"""Which stored content a browser could run if it were shown inline."""

from __future__ import annotations

ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
    }
)


def is_active(content_type: str) -> bool:
    """Whether a file of this type may carry script (HTML, SVG, any XML)."""
    kind = content_type.split(";")[0].strip().lower()
    return kind in ACTIVE_TYPES or kind.endswith("+xml")
