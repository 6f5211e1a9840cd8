"""The one holder of the served root: fronts get each user's Session from here.

No front sees the unjailed root VFS. A session opens the user's jail inside it, by its
configured path and without following a symlink on it (ELOOP), so that a user who may
write above another's jail cannot point that jail elsewhere.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from pathlib import Path

from . import filesystems
from .filesystems import Usage
from .locks import LockTable
from .names import NameMap
from .reserved import Reserved
from .session import Session
from .users import User
from .vfs import VFS

log = logging.getLogger(__name__)


class Sessions:
    """Opens sessions over the served root ``root`` (whose host path is ``root_path``)."""

    def __init__(self, root: VFS, root_path: Path, locks: LockTable | None = None) -> None:
        self._root = root
        self.locks = locks if locks is not None else LockTable(None)
        self._root_path = root_path.absolute()
        self._names = NameMap(root)

    def open(self, user: User, protocol: str) -> Session:
        """A session of ``user`` over ``protocol``, its jail opened now (blocking);
        OSError if the jail cannot be opened."""
        jail = self._root.sub(user.root, follow_links=False)
        session = Session(user, jail, self._names, protocol)
        session.mounts = self._root.mounts
        session.locks = self.locks
        return session

    def filesystems(self) -> list[Usage]:
        """The served root's filesystem and each mount below it, as the server sees them
        (the alerts and the metrics watch these; blocking)."""
        return filesystems.visible(self._root, "/", self._root.mounts)

    def host_path(self, virtual: str) -> Path:
        """Where the served root's virtual path ``virtual`` lies on the host (for the
        shells of users allowed one, which run as real processes outside the VFS)."""
        return self._root_path / virtual.lstrip("/")

    def jail_refusal(self, path: str) -> str | None:
        """Why the folder ``path`` of the served root cannot be a jail (missing, not a
        folder, reached through a link, the server's own), or None (blocking)."""
        return jail_refusal(self._root, path)

    def check_jails(self, users: Mapping[str, User]) -> None:
        """Warn once about users whose jail is missing: their logins fail until it
        exists (blocking)."""
        for user in users.values():
            why = jail_refusal(self._root, user.root)
            if why is not None:
                log.warning(
                    "user %s: the jail %s cannot be opened (%s): logins fail until it can",
                    user.name,
                    user.root,
                    why,
                )


def jail_refusal(root: VFS, path: str) -> str | None:
    """Why the folder ``path`` of ``root`` cannot be a jail, or None (blocking)."""
    try:
        root.sub(path, follow_links=False).close()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "its path holds a symlink: name the real folder"
        if exc.errno == errno.ENOENT:
            return "no such folder"
        if exc.errno == errno.ENOTDIR:
            return "not a folder"
        return str(exc.strerror)
    return None


def folder_refusal(root: Path, state_dir: Path, path: str) -> str | None:
    """Why the folder ``path`` of the served ``root`` cannot be a jail, judged as the
    server opens one (without following a link, never the state folder), or None; for
    the commands that name a jail before any server runs (blocking)."""
    reserved = Reserved([state_dir] if state_dir.is_dir() else [], [])  # (made at start)
    try:
        vfs = VFS.open_root(str(root), reserved=reserved)
    except OSError as exc:
        reserved.close()
        return f"the served root {root} cannot be opened: {exc.strerror}"
    try:
        return jail_refusal(vfs, path)
    finally:
        vfs.close()
        reserved.close()
