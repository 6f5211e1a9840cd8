"""An upload's body as the file API receives it: read in blocks (Content-Length or
chunked), hashed on a helper thread as it goes, and checked against the digest the
client expects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.digests import StreamDigest
from .errors import ApiError
from .replies import BLOCK


def received(
    environ: dict[str, Any], write: Callable[[bytes], object], expected: bytes | None
) -> bytes:
    """Read the request's body into ``write``; its SHA-256. 400 when the body ends
    before its Content-Length, 422 when the digest is not ``expected``."""
    length_text = str(environ.get("CONTENT_LENGTH") or "")
    hasher = StreamDigest()
    try:
        stream = environ["wsgi.input"]
        remaining = int(length_text) if length_text else None
        while remaining is None or remaining > 0:
            data = stream.read(BLOCK if remaining is None else min(BLOCK, remaining))
            if not data:
                break
            hasher.update(data)  # hashed on a helper thread while this one goes on
            write(data)
            if remaining is not None:
                remaining -= len(data)
        if remaining:
            raise ApiError(400, "incomplete_body", "the body ended before Content-Length")
        digest = hasher.digest()
    finally:
        hasher.close()
    if expected is not None and digest != expected:
        raise ApiError(
            422, "digest_mismatch", f"expected sha256 {expected.hex()}, received {digest.hex()}"
        )
    return digest
