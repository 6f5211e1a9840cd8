"""Mount points below the served root, read from the kernel's ``/proc/self/mountinfo``.

Only the table is read here (procfs, which never blocks); what each mount holds is
asked through a VFS (``filesystems``), so a mount point is reached only inside a jail.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from . import paths, syscalls

# Filesystems with nothing to store (df leaves them out too): never listed or walked.
PSEUDO = frozenset(
    {
        "proc", "sysfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs", "tracefs",
        "securityfs", "pstore", "bpf", "autofs", "configfs", "fusectl", "binfmt_misc",
        "nsfs", "efivarfs", "selinuxfs", "hugetlbfs", "rpc_pipefs", "nfsd",
    }
)  # fmt: skip
_ESCAPE = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount: the kernel's id, where it is mounted and its filesystem type."""

    mount_id: str
    point: str
    fs_type: str


def unescape(field: str) -> str:
    """A mountinfo field with the kernel's octal escapes (``\\040`` for a space, ``\\011``,
    ``\\012``, ``\\134``) turned back into the name's bytes (decoded as ``os`` decodes)."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), os.fsencode(field))
    return os.fsdecode(raw)


def parse(text: str) -> list[Mount]:
    """The mounts of a mountinfo text, in its order (a later one may cover an earlier)."""
    found = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:] or len(fields) < 5:
            continue
        kind = fields[fields.index("-", 6) + 1]
        found.append(Mount(fields[0], unescape(fields[4]), kind))
    return found


def read() -> list[Mount]:
    """The process's mounts, now."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        return parse(table.read())


def below(root_fd: int) -> list[Mount]:
    """The mounts at or below the folder ``root_fd``, as paths of that root (``/`` for
    the root itself), pseudo filesystems left out. A point mounted on twice is listed
    once, with the mount on top (the last one)."""
    top = os.readlink(syscalls.proc_link(root_fd))
    found: dict[str, Mount] = {}
    for mount in read():
        if mount.fs_type in PSEUDO or not paths.is_within(mount.point, top):
            continue
        inner = "/" + mount.point[len(top) :].lstrip("/") if top != "/" else mount.point
        found.pop(inner, None)
        found[inner] = Mount(mount.mount_id, inner, mount.fs_type)
    return list(found.values())
