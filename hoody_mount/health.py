"""Whether the server serves, for health checks, and the versions it runs.

``starting`` until both listeners are bound, ``serving`` then, ``draining`` once a stop
has begun. The HTTP listener answers ``/healthz`` and ``/readyz`` from it without
authentication (a platform's probe has no credentials); they say nothing a client could
not learn by connecting.
"""

from __future__ import annotations

import platform
import time
from importlib import metadata

STARTING, SERVING, DRAINING = "starting", "serving", "draining"


def version(package: str = "hoody-mount") -> str:
    """The installed version of ``package`` ("unknown" when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> str:
    """hoody-mount's version and those of the libraries it serves with, one line."""
    parts = ", ".join(f"{name} {version(name)}" for name in ("asyncssh", "WsgiDAV", "cheroot"))
    return f"hoody-mount {version()} ({parts}, Python {platform.python_version()})"


class Health:
    """The server's state, as health checks report it."""

    def __init__(self) -> None:
        self._since = time.monotonic()
        self.state = STARTING

    def serving(self) -> None:
        """Both listeners serve."""
        self.state = SERVING

    def draining(self) -> None:
        """A stop has begun: no new work is wanted."""
        self.state = DRAINING

    def report(self) -> tuple[int, dict[str, object]]:
        """The HTTP status (200 only while serving) and the JSON body of a health check."""
        body: dict[str, object] = {
            "status": "ok" if self.state == SERVING else self.state,
            "version": version(),
            "uptime_s": round(time.monotonic() - self._since, 1),
        }
        return (200 if self.state == SERVING else 503), body
