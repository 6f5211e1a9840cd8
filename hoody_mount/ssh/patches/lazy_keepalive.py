"""Stop asyncssh from re-arming the keepalive timer for every read.

asyncssh pushes its keepalive probe back by cancelling the timer and starting a new one
each time bytes arrive: an event-loop timer made and dropped per read, about 3 µs, and
an SFTP client that waits for each reply makes a read per request. Here a timer that
will not fire for most of the interval yet is left as it is; it is re-armed only once
it is at least a tenth of the interval (at most a second) old. A probe may then go out
up to that much earlier than asyncssh would send it, which is harmless: the client
answers it, and a client that does not answer is dropped after the same number of
probes as before.
"""

from __future__ import annotations

from typing import Any

from asyncssh.connection import SSHConnection

MAX_SLACK = 1.0  # seconds a probe may go out early, at most

_original = SSHConnection._reset_keepalive_timer


def _reset_keepalive_timer(self: Any) -> None:
    timer, interval = self._keepalive_timer, self._keepalive_interval
    if timer is not None and interval:
        left = timer.when() - self._loop.time()
        if interval - min(MAX_SLACK, interval / 10) < left <= interval:
            return  # armed a moment ago, for this interval: leave it
    _original(self)


def install() -> None:
    """Patch asyncssh's connections (idempotent)."""
    SSHConnection._reset_keepalive_timer = _reset_keepalive_timer  # type: ignore[method-assign]
