"""A log of refusals that a flood cannot turn into a flood of lines.

A client that opens thousands of connections a second must not write thousands of log
lines a second (7,076 lines in 45 s, before): the first few refusals of each period are
logged whole, the rest are counted and summed up in one line when the period ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

PERIOD = 10.0  # seconds
WHOLE_PER_PERIOD = 5


class Throttled:
    """Refusals of one kind (``what``), logged at most ``WHOLE_PER_PERIOD`` a period."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._lock = threading.Lock()
        self._period_start = time.monotonic()
        self._logged = 0
        self._left_out: Counter[str] = Counter()

    def note(self, address: str, reason: str) -> None:
        """One refusal of a client at ``address``, for ``reason``."""
        self.flush()
        with self._lock:
            if self._logged < WHOLE_PER_PERIOD:
                self._logged += 1
                whole = True
            else:
                self._left_out[address] += 1
                whole = False
        if whole:
            self._log.warning("%s: %s from %s", self._what, reason, address or "?")

    def flush(self, now: float | None = None) -> None:
        """Close the period if it is over: one line for what was left out of it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._period_start < PERIOD:
                return
            left_out, self._left_out = self._left_out, Counter()
            self._period_start, self._logged = now, 0
        if left_out:
            most = left_out.most_common(3)
            top = ", ".join(f"{address or '?'} {count}" for address, count in most)
            self._log.warning(
                "%s: %d more in the last %.0f s (most from: %s)",
                self._what,
                sum(left_out.values()),
                PERIOD,
                top,
            )
