"""What each filesystem a user can see holds, as df counts it: the jail's own and each
mount inside it, every figure from statvfs through the jail.

``Usage`` is what the storage API, ``df``, the alerts, the metrics and the listing page
show: bytes (free is what users may still write, ``f_bavail``; used is
``total - f_bfree``) and df's percentage, ``used / (used + free)``, rounded up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import paths
from .mounts import Mount

if TYPE_CHECKING:
    from .vfs import VFS


@dataclass(frozen=True, slots=True)
class Usage:
    """The capacity of one filesystem, seen at ``path`` (a path of the user's jail)."""

    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    used_percent: float
    inodes_total: int
    inodes_free: int

    def as_json(self) -> dict[str, object]:
        """The figures as the storage API gives them."""
        return {
            "path": self.path,
            "total_bytes": self.total_bytes,
            "used_bytes": self.used_bytes,
            "free_bytes": self.free_bytes,
            "used_percent": self.used_percent,
            "inodes_total": self.inodes_total,
            "inodes_free": self.inodes_free,
        }


def used_percent(used: int, free: int) -> float:
    """df's Use%: ``used / (used + free)``, rounded up to a tenth (never less than df)."""
    if used + free <= 0:
        return 0.0
    return math.ceil(used * 1000 / (used + free)) / 10


def usage(path: str, st: os.statvfs_result) -> Usage:
    """The figures of one statvfs answer."""
    total = st.f_blocks * st.f_frsize
    used = total - st.f_bfree * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return Usage(path, total, used, free, used_percent(used, free), st.f_files, st.f_ffree)


def visible(vfs: VFS, jail: str, mounts: Callable[[], list[Mount]]) -> list[Usage]:
    """The jail's own filesystem (at ``/``) and each mount inside the jail ``jail`` (a
    path of the served root), by the jail's paths. A mount is reported only when its
    path, resolved in the jail now, reaches that mount's own root (same mount id): a
    folder renamed or a link put on the way is skipped, never reported as it.
    Filesystems of no blocks (dummies, as df calls them) are left out."""
    found = [usage("/", vfs.statvfs("/"))]
    for mount in sorted(mounts(), key=lambda m: m.point):
        path = paths.in_jail(jail, mount.point)
        if path is None or path == "/":
            continue
        try:
            mount_id, st = vfs.mount_statvfs(path)
        except OSError:
            continue  # gone, covered, not a folder (a file mounted), or the server's own
        if mount_id == mount.mount_id and st.f_blocks:
            found.append(usage(path, st))
    return found
