"""Whether the machine has memory to spare, for calls an event loop makes on tmpfs.

A file or folder made on tmpfs takes memory; when little is left the kernel reclaims
or swaps in that call, which then waits like a disk. So such calls are made on the loop
only while MemAvailable is above ``FLOOR``. The figure is read from procfs (which never
waits) at most every ``EVERY`` seconds.
"""

from __future__ import annotations

import time

FLOOR = 256 << 20  # bytes of available memory below which nothing runs on the loop
EVERY = 0.25  # seconds a reading is trusted

_last = [-EVERY, 0]  # when it was read (monotonic), the bytes available then


def available() -> int:
    """MemAvailable in bytes (0 if it cannot be read)."""
    try:
        with open("/proc/meminfo", "rb") as info:
            for line in info:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def plenty() -> bool:
    """Whether more than ``FLOOR`` bytes of memory are available (as of a reading at
    most ``EVERY`` seconds old)."""
    now = time.monotonic()
    if now - _last[0] >= EVERY:
        _last[0], _last[1] = now, available()
    return _last[1] > FLOOR
