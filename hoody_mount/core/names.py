"""User and group names as the served root sees them (its own /etc/passwd and /etc/group).

The host's account database is never consulted: the container's files belong to the
container's accounts.
"""

from __future__ import annotations

import threading
import time

from .vfs import VFS

_REFRESH_SECONDS = 10.0


class NameMap:
    """uid and gid to name, read through the VFS and refreshed now and then."""

    def __init__(self, vfs: VFS) -> None:
        self._vfs = vfs
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}
        self._loaded = 0.0
        self._lock = threading.Lock()

    def _parse(self, path: str) -> dict[int, str]:
        try:
            text = self._vfs.read_bytes(path).decode("utf-8", "replace")
        except OSError:
            return {}
        table: dict[int, str] = {}
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[2].isdigit():
                table.setdefault(int(fields[2]), fields[0])
        return table

    def refresh(self) -> None:
        """Re-read both files when the last read is older than a few seconds (blocking)."""
        with self._lock:
            if time.monotonic() - self._loaded < _REFRESH_SECONDS:
                return
            self._users = self._parse("/etc/passwd")
            self._groups = self._parse("/etc/group")
            self._loaded = time.monotonic()

    def user(self, uid: int) -> str | None:
        """The name of ``uid`` in the root's /etc/passwd, if it has one."""
        return self._users.get(uid)

    def group(self, gid: int) -> str | None:
        """The name of ``gid`` in the root's /etc/group, if it has one."""
        return self._groups.get(gid)
