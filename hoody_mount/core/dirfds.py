"""Small steps on folder fds that the jail's code shares: open one name below a folder
without following a link, reopen, swap, and read a few facts about a fd from procfs."""

from __future__ import annotations

import errno
import os
import stat

from . import syscalls

DIR_STEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def swap(old: int, new: int) -> int:
    """Close ``old`` and return ``new`` (which was opened before ``old`` is let go)."""
    os.close(old)
    return new


def reopen(fd: int, flags: int) -> int:
    """A new fd for the folder behind ``fd``, opened with ``flags`` (creation flags dropped)."""
    flags = (flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)) | os.O_CLOEXEC
    return os.open(syscalls.proc_link(fd), flags)


def descend_from(top: int, names: list[str], flags: int) -> int:
    """Open the folder below ``top`` reached by ``names``, following no link."""
    current = os.dup(top)
    try:
        for name in names:
            current = swap(current, os.open(name, DIR_STEP, dir_fd=current))
        return swap(current, reopen(current, flags))
    except BaseException:
        os.close(current)
        raise


def mount_id(fd: int) -> str:
    """The id of the mount that holds ``fd``, read from procfs (never blocks)."""
    with open(f"/proc/self/fdinfo/{fd}") as info:
        return next(line.split()[1] for line in info if line.startswith("mnt_id:"))


def fs_type(fd: int) -> str:
    """The filesystem type of the mount holding ``fd``, read from procfs (never blocks)."""
    with open(f"/proc/self/fdinfo/{fd}") as info:
        mount_id = next(line.split()[1] for line in info if line.startswith("mnt_id:"))
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[0] == mount_id:
                return fields[fields.index("-") + 1]
    return ""


_umask: int | None = None


def umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads);
    read once: the server sets it at start and never again (every upload asks)."""
    global _umask
    if _umask is None:
        found = 0o022
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    found = int(line.split()[1], 8)
                    break
        _umask = found
    return _umask


def rename_noreplace(sfd: int, sname: str, dfd: int, dname: str) -> None:
    """Rename that never replaces (EEXIST instead)."""
    try:
        syscalls.renameat2(sfd, sname, dfd, dname, syscalls.RENAME_NOREPLACE)
    except OSError as exc:
        if exc.errno != errno.EINVAL or stat.S_ISDIR(
            os.stat(sname, dir_fd=sfd, follow_symlinks=False).st_mode
        ):
            raise
        # The filesystem lacks RENAME_NOREPLACE: link then unlink never replaces.
        os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        os.unlink(sname, dir_fd=sfd)
