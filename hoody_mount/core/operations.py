"""Operations counted for the metrics: how many, how each ended, and how long it took.

An SFTP channel records thousands of operations a second on the event loop, so a
record must cost next to nothing: each thread adds to a table of its own (no lock, no
lost update), a duration goes to its bucket by a bisect into fixed bounds, and
``metrics.py`` sums the tables into Prometheus families only when it is scraped.
"""

from __future__ import annotations

import errno
import threading
from bisect import bisect_left

# Upper bounds of the duration buckets, in seconds (an SFTP READ from the page cache
# takes tens of µs; an HTTP download or an scp transfer, seconds to minutes)
BOUNDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 60.0,
)  # fmt: skip
SUM = len(BOUNDS) + 1  # a row: a count per bucket (the last one past every bound), the sum
Key = tuple[str, str, str]  # protocol, op, result
Row = list[float]

# How an operation ended: "ok", or one of a few classes of error
_ERRNO_RESULTS = {
    errno.ENOENT: "not_found",
    errno.ENOTDIR: "not_found",
    errno.ELOOP: "not_found",
    errno.EACCES: "denied",
    errno.EPERM: "denied",
    errno.EROFS: "denied",
    errno.EEXIST: "conflict",
    errno.ENOTEMPTY: "conflict",
    errno.EBUSY: "conflict",
    errno.EINVAL: "invalid",
    errno.ENAMETOOLONG: "invalid",
}
_STATUS_RESULTS = {401: "denied", 403: "denied", 404: "not_found", 410: "not_found"}
_STATUS_RESULTS |= {409: "conflict", 412: "conflict", 423: "conflict"}


def result_of_errno(number: int | None) -> str:
    """The result of an operation that failed with ``number``."""
    return _ERRNO_RESULTS.get(number or 0, "error")


def result_of_status(status: int) -> str:
    """The result of an HTTP request answered with ``status``."""
    if status < 400:
        return "ok"
    return _STATUS_RESULTS.get(status, "invalid" if status < 500 else "error")


class Operations:
    """Counts and duration buckets by (protocol, op, result), one table per thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()  # only to add a thread's table
        self._tables: list[dict[Key, Row]] = []

    def record(self, protocol: str, op: str, result: str, seconds: float) -> None:
        """Count one operation (``op`` and ``result`` from small fixed sets, never a path)."""
        try:
            table: dict[Key, Row] = self._local.table
        except AttributeError:
            table = self._new_table()
        key = (protocol, op, result)
        row = table.get(key)
        if row is None:
            row = table[key] = [0.0] * (SUM + 1)
        row[bisect_left(BOUNDS, seconds)] += 1
        row[SUM] += seconds

    def _new_table(self) -> dict[Key, Row]:
        table: dict[Key, Row] = {}
        self._local.table = table
        with self._lock:
            self._tables.append(table)
        return table

    def snapshot(self) -> dict[Key, Row]:
        """The rows of every thread summed: per bucket (not cumulative), then the sum."""
        with self._lock:
            tables = list(self._tables)
        total: dict[Key, Row] = {}
        for table in tables:
            for key, row in list(table.items()):  # (a copy: its thread may add a key)
                into = total.setdefault(key, [0.0] * (SUM + 1))
                for i, value in enumerate(row.copy()):
                    into[i] += value
        return total


OPERATIONS = Operations()  # the process's operations
