"""The server's metrics in the Prometheus text format, for ``GET /metrics``.

Counts come from ``core.counters`` (added where events happen) and ``core.operations``
(each operation of a client, made into families only here); the rest is read when the
metrics are asked for: banned addresses, the worker pool's load and the served root's
capacity, with each mount below it (by ``path``). Everything is in a registry of its
own, prefixed ``hoody_mount_``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .core.counters import COUNTERS
from .core.filesystems import Usage
from .core.guard import LoginGuard
from .core.operations import BOUNDS, OPERATIONS, SUM

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# name in ``COUNTERS``, kind, help, label names
FAMILIES = (
    ("connections", "gauge", "Sessions open now: SSH channels, HTTP requests", ("protocol",)),
    ("logins", "counter", "Login attempts", ("protocol", "method", "result")),
    ("bytes_received", "counter", "File data written by clients", ("protocol",)),
    ("bytes_sent", "counter", "File data read by clients", ("protocol",)),
    (
        "requests_on_loop",
        "counter",
        "Requests answered on the event loop without a worker (on tmpfs)",
        ("protocol", "op"),
    ),  # fmt: skip
)


class ServerCollector(Collector):
    """What the registry reports, made at each scrape."""

    def __init__(
        self,
        guard: LoginGuard,
        root: Path,
        load: Callable[[], tuple[int, int]],
        filesystems: Callable[[], list[Usage]] = list,
    ) -> None:
        self._guard = guard
        self._root = root
        self._load = load
        self._filesystems = filesystems

    def collect(self) -> Iterator[Metric]:
        for name, kind, text, labels in FAMILIES:
            family_type = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            family = family_type(f"hoody_mount_{name}", text, labels=list(labels))
            for values, amount in sorted(COUNTERS.snapshot(name).items()):
                family.add_metric(list(values), amount)
            yield family
        yield from _operations()
        busy, queued = self._load()
        yield GaugeMetricFamily("hoody_mount_workers_busy", "Worker threads running a job", busy)
        yield GaugeMetricFamily("hoody_mount_workers_queued", "Jobs waiting for a worker", queued)
        banned = self._guard.banned_addresses()
        yield GaugeMetricFamily("hoody_mount_banned_addresses", "Addresses refused now", banned)
        st = os.statvfs(self._root)
        size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        yield GaugeMetricFamily(
            "hoody_mount_filesystem_size_bytes", "Size of the served root's filesystem", size
        )
        yield GaugeMetricFamily(
            "hoody_mount_filesystem_free_bytes", "Space free for users there", free
        )
        yield from _mounts(self._filesystems())


# family name, help, the figure of a ``Usage``
MOUNT_FAMILIES: tuple[tuple[str, str, Callable[[Usage], float]], ...] = (
    ("mount_size_bytes", "Size of each watched filesystem", lambda u: u.total_bytes),
    ("mount_used_bytes", "Bytes used there (size - free blocks)", lambda u: u.used_bytes),
    ("mount_free_bytes", "Bytes users may still write there", lambda u: u.free_bytes),
    ("mount_used_percent", "Used, as df's Use%", lambda u: u.used_percent),
    ("mount_inodes", "Inodes there", lambda u: u.inodes_total),
    ("mount_inodes_free", "Inodes free there", lambda u: u.inodes_free),
)


def _mounts(found: list[Usage]) -> Iterator[Metric]:
    """The served root's filesystem and each mount below it, by ``path`` (the alerts
    watch the same ones)."""
    for name, text, figure in MOUNT_FAMILIES:
        family = GaugeMetricFamily(f"hoody_mount_{name}", text, labels=["path"])
        for usage in found:
            family.add_metric([usage.path], figure(usage))
        yield family


def _operations() -> Iterator[Metric]:
    """``operations_total`` by protocol, op and result; ``operation_seconds`` by
    protocol and op, whatever the result."""
    counts = CounterMetricFamily(
        "hoody_mount_operations", "Operations of clients: SFTP requests, HTTP requests, "
        "scp transfers, commands", labels=["protocol", "op", "result"],
    )  # fmt: skip
    merged: dict[tuple[str, str], list[float]] = {}
    for (protocol, op, result), row in sorted(OPERATIONS.snapshot().items()):
        counts.add_metric([protocol, op, result], sum(row[:SUM]))
        into = merged.setdefault((protocol, op), [0.0] * len(row))
        for i, value in enumerate(row):
            into[i] += value
    yield counts
    seconds = HistogramMetricFamily(
        "hoody_mount_operation_seconds", "How long operations took", labels=["protocol", "op"]
    )
    for (protocol, op), row in merged.items():
        cumulative, buckets = 0.0, []
        for bound, count in zip((*map(str, BOUNDS), "+Inf"), row[:SUM], strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        seconds.add_metric([protocol, op], buckets, row[SUM])
    yield seconds


class Metrics:
    """The registry of one server; ``public``: served without credentials."""

    def __init__(
        self,
        guard: LoginGuard,
        root: Path,
        load: Callable[[], tuple[int, int]],
        public: bool = False,
        filesystems: Callable[[], list[Usage]] = list,
    ) -> None:
        self.public = public
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(ServerCollector(guard, root, load, filesystems))

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return bytes(generate_latest(self._registry))
