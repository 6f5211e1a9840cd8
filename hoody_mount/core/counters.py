"""Counts the server keeps for its metrics: how many of a thing, by labels.

The fronts and the core add to them where an event happens (a login, a session
opened or closed, the bytes of a file read or written when it closes); ``metrics.py``
reads them when ``/metrics`` is asked for. An addition is one dictionary update under a
lock, made once per event, never per packet.
"""

from __future__ import annotations

import threading
from collections import defaultdict

Labels = tuple[str, ...]


class Counters:
    """Numbers by name and labels, added to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: defaultdict[str, defaultdict[Labels, float]] = defaultdict(
            lambda: defaultdict(float)
        )

    def add(self, name: str, labels: Labels, amount: float = 1) -> None:
        """Add ``amount`` (which may be negative, for a gauge) to ``name`` at ``labels``."""
        if amount:
            with self._lock:
                self._values[name][labels] += amount

    def snapshot(self, name: str) -> dict[Labels, float]:
        """The values of ``name`` now, by labels."""
        with self._lock:
            return dict(self._values.get(name, {}))


COUNTERS = Counters()  # the process's counts


def counted_as(protocol: str) -> str:
    """The ``protocol`` label of a session's protocol: the file API's sessions are
    ``http`` to the permissions and ``api`` in every family of the metrics."""
    return "api" if protocol == "http" else protocol
