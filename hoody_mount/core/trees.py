"""Whole trees: remove one, copy a file or a tree, inside the jail.

Each walks the tree by folder fds, one name at a time and without following links,
so its cost is linear in the tree's size and depth at any depth, and a folder swapped
for a link during the walk cannot lead out. Copies keep holes, leave out the server's
own files, and stop between two blocks once their asker has gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import paths, syscalls, upload_temps
from .atomic_files import AtomicFile
from .dirfds import DIR_READ, descend_from, mount_id, swap, umask
from .open_files import COPY_BLOCK, OpenFile, Times, next_piece
from .reserved import Identity, identity, walk_up
from .resolution import MOVE, READ, UNCHECKED

if TYPE_CHECKING:
    from .vfs import VFS

Stop = Callable[[], bool]  # a long operation's question: has its asker gone?


def never() -> bool:
    return False


_INTO_ITSELF = "Cannot copy a folder into itself"


def _back_up(fd: int, expected: Identity, top: int, trail: list[str]) -> int:
    """The folder above the folder ``fd`` of a copy, which must be ``expected``: reached
    through ``..``, or, if the folder was moved meanwhile, by name from ``top``."""
    up = os.open("..", DIR_READ, dir_fd=fd)
    if identity(os.fstat(up)) == expected:
        return up
    os.close(up)
    up = descend_from(top, trail, DIR_READ)
    if identity(os.fstat(up)) != expected:
        os.close(up)
        raise OSError(errno.ENOENT, "A folder of the copy was moved while it was copied")
    return up


def _finish_copied_folder(fd: int, st: os.stat_result, umask: int) -> None:
    """Give a copied folder the source's permission bits (through the umask, as mkdir(2)
    gives them; a setgid bit inherited from its parent stays) and times, once everything
    below it is in place (it is made 0700 so that the copy can always write into it)."""
    now = stat.S_IMODE(os.fstat(fd).st_mode)
    mode = (stat.S_IMODE(st.st_mode) & 0o1777 & ~umask) | (now & stat.S_ISGID)
    if mode != now:
        os.fchmod(fd, mode)
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _fill(
    target: AtomicFile, source: OpenFile, st: os.stat_result, mode_mask: int, stop: Stop
) -> None:
    """Write the content of ``source`` (whose stat is ``st``) into ``target``, to be put
    in place with the source's times and mode (the bits in ``mode_mask``); the target is
    thrown away if that fails. Holes stay holes (copying a 1 TiB sparse file wrote 1 TiB
    of zeros); ECANCELED between two blocks once ``stop()`` says the asker has gone."""
    try:
        offset = 0
        while True:
            if stop():
                raise OSError(errno.ECANCELED, "the copy stopped: the client has gone")
            hole, data = next_piece(source, offset, max(st.st_size, offset), COPY_BLOCK)
            if hole:
                target.skip(hole)
                offset += hole
                continue
            if not data:
                break
            target.write(data)
            offset += len(data)
        target.set_times(Times(st.st_atime_ns, st.st_mtime_ns))
        target.set_mode(stat.S_IMODE(st.st_mode) & mode_mask)
    except BaseException:
        target.abort()
        raise


def remove_tree(vfs: VFS, path: str) -> None:
    """Remove ``path`` and, for a folder, everything below it (no recursion, no links
    followed; at most three fds are held whatever the depth)."""
    with vfs.parent(path, "remove", MOVE) as (dfd, name):
        if not stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=dfd)
            return
        top = os.open(name, DIR_READ, dir_fd=dfd)
        try:
            _empty_folder(vfs, top)
        finally:
            os.close(top)
        os.rmdir(name, dir_fd=dfd)


def _empty_folder(vfs: VFS, top: int) -> None:
    """Remove everything below the folder ``top``, depth first, in time linear in
    the tree's size and depth, holding two fds at most: a folder is left for its
    parent through ``..``, checked to be the folder it came from (by identity; if it
    was moved meanwhile, the parent is found again by name from ``top``). Nothing
    the server keeps is removed: a folder or file among the reserved ones, met
    through a bind mount or a link made by hand, stops the removal (EACCES)."""
    trail: list[str] = []  # names from ``top`` to the folder being emptied
    keys = [identity(os.fstat(top))]  # the identities of the folders on the trail
    fd = os.dup(top)
    try:
        while True:
            child = _unlink_files_until_folder(vfs, fd)
            if child is not None:
                below = os.open(child, DIR_READ, dir_fd=fd)
                trail.append(child)
                keys.append(identity(os.fstat(below)))
                fd = swap(fd, below)
                continue
            if not trail:
                return
            emptied = trail.pop()
            keys.pop()
            up = os.open("..", DIR_READ, dir_fd=fd)
            if identity(os.fstat(up)) != keys[-1]:
                os.close(up)
                up = descend_from(top, trail, DIR_READ)
            fd = swap(fd, up)
            os.rmdir(emptied, dir_fd=fd)
    finally:
        os.close(fd)


def _unlink_files_until_folder(vfs: VFS, fd: int) -> str | None:
    """Remove the folder's non-folders until it meets a folder: return that folder's
    name, or None once the folder is empty."""
    guard = vfs.reserved
    with os.scandir(fd) as entries:
        for entry in entries:
            if guard is not None:  # (every entry: a bind mount may bring them here)
                try:
                    guard.check_name(entry.stat(follow_symlinks=False), change=True)
                except OSError as exc:
                    exc.filename = entry.name
                    raise
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=fd)
    return None


def copy_file(vfs: VFS, src: str, dst: str, mode_mask: int = 0o7777, stop: Stop = never) -> None:
    """Copy a regular file's content, mode (the bits in ``mode_mask``) and times; the
    target appears whole or not (ECANCELED once ``stop()`` is true)."""
    source = vfs.open_file(src, os.O_RDONLY)
    try:
        st = source.stat()
        target = vfs.atomic_file(dst)
        _fill(target, source, st, mode_mask, stop)
        target.commit()
    finally:
        source.close()


def copy_tree(vfs: VFS, src: str, dst: str, mode_mask: int = 0o7777, stop: Stop = never) -> None:
    """Copy a file, or a folder with everything below it, to ``dst``, which must not
    exist yet: links are copied as links, FIFOs, sockets and devices are not copied,
    files appear whole with their times and mode (the bits in ``mode_mask``).

    A folder is never copied into itself, by path or by identity (a link or a bind
    mount on the way to ``dst``); it is walked with held fds at any depth (see
    ``_copy_folder``), and a copy that fails part-way removes what it made (as one
    that ``stop()`` ends, ECANCELED, when the asker has gone).
    """
    top = vfs.lstat(src)
    if dst == src:
        raise OSError(errno.EINVAL, "Source and destination are the same", dst)
    if paths.is_within(dst, src):
        raise OSError(errno.EINVAL, _INTO_ITSELF, dst)
    if not stat.S_ISDIR(top.st_mode):
        _copy_entry(vfs, src, dst, top, mode_mask, stop)
        return
    with vfs.parent(src, "copy", READ) as (sdfd, sname):
        source = os.open(sname, DIR_READ, dir_fd=sdfd)
    try:
        here = os.fstat(source)
        if vfs.reserved is not None:
            vfs.check_reserved(here, READ, src)  # (the name checked before may have moved)
        with vfs.parent(dst, "replace") as (ddfd, dname):
            _refuse_copy_into(vfs, ddfd, identity(here), dst)
            os.mkdir(dname, 0o700, dir_fd=ddfd)
            target = os.open(dname, DIR_READ, dir_fd=ddfd)
        try:
            _copy_folder(vfs, source, target, mode_mask, src, stop)
        except BaseException:
            _discard_copy(vfs, dst, target)
            raise
        finally:
            os.close(target)
    finally:
        os.close(source)


def _refuse_copy_into(vfs: VFS, parent: int, source: Identity, dst: str) -> None:
    """EINVAL if the folder ``parent`` (where the copy is to be made) is the folder
    ``source`` or lies below it, whatever path led there: walked up through ``..``
    to the jail's root."""
    here = identity(os.fstat(parent))
    top = identity(os.fstat(vfs._root))
    if here == source or (here != top and walk_up(parent, here, {source, top}) == source):
        raise OSError(errno.EINVAL, _INTO_ITSELF, dst)


def _discard_copy(vfs: VFS, dst: str, target: int) -> None:
    """Remove what a copy that failed part-way made below ``dst`` (the folder
    ``target``), and the folder itself if the name still holds it."""
    with contextlib.suppress(OSError):
        made = identity(os.fstat(target))
        _empty_folder(vfs, target)
        with vfs.parent(dst, "remove", UNCHECKED) as (dfd, name):
            if identity(os.stat(name, dir_fd=dfd, follow_symlinks=False)) == made:
                os.rmdir(name, dir_fd=dfd)


def _copy_folder(vfs: VFS, source: int, target: int, mode_mask: int, src: str, stop: Stop) -> None:
    """Copy everything below the folder ``source`` into the new, empty folder
    ``target``, depth first, in time linear in the tree's size and depth.

    The walk holds four fds whatever the depth (both tops, and the folder being
    copied with its copy; copying one file takes up to four more meanwhile): names
    are opened relative to the folder that holds them, never following a link, and
    a folder is left for its parent through ``..``, checked by identity to be the
    folder it came from (if it was moved meanwhile, the parent is found again by name
    from the top). A folder's links and files are copied as it is read, and its
    subfolders wait by name (memory for the names waiting, never an fd each); it
    gets its mode and times once everything below it is in place.

    Every entry is checked against the server's own files (see ``_leaves_out``).
    A folder met twice on one way down (a bind mount of a folder above: a cycle, as
    rm and find call it) stops the copy with ELOOP, and the copy's own folder met in
    the source with EINVAL (it would copy without end). An error names the entry
    below ``src`` where it happened (``src/…/name``: the whole path may be too long).
    """
    mask = umask()
    made = identity(os.fstat(target))
    trail: list[str] = []  # the names from the tops to the folder being copied
    keys: list[tuple[Identity, Identity]] = []  # the folders on the trail, and copies
    seen: set[Identity] = set()  # the source folders on the trail
    levels: list[tuple[os.stat_result, list[str]]] = []  # each one's subfolders to copy
    sfd, tfd = os.dup(source), -1
    try:
        tfd = os.dup(target)
        here = os.fstat(sfd)
        while True:
            keys.append((identity(here), identity(os.fstat(tfd))))
            seen.add(keys[-1][0])
            levels.append((here, _copy_members(vfs, sfd, tfd, mode_mask, stop)))
            while True:
                folder, waiting = levels[-1]
                if waiting:
                    opened = _open_copied_folder(vfs, sfd, tfd, waiting.pop(), made, seen)
                    if opened is None:
                        continue  # gone since it was listed
                    name, below, copy, here = opened
                    sfd, tfd = swap(sfd, below), swap(tfd, copy)
                    trail.append(name)
                    break
                _finish_copied_folder(tfd, folder, mask)
                levels.pop()
                seen.discard(keys.pop()[0])
                if not trail:
                    return
                trail.pop()
                sfd = swap(sfd, _back_up(sfd, keys[-1][0], source, trail))
                tfd = swap(tfd, _back_up(tfd, keys[-1][1], target, trail))
    except OSError as exc:
        exc.filename = f"{src.rstrip('/')}/{'…/' if trail else ''}{exc.filename or ''}"
        raise
    finally:
        os.close(sfd)
        if tfd >= 0:
            os.close(tfd)


def _copy_members(vfs: VFS, sfd: int, tfd: int, mode_mask: int, stop: Stop) -> list[str]:
    """Copy the links and regular files of the folder ``sfd`` into the folder ``tfd``
    (FIFOs, sockets, devices and uploads in flight are left out); return the names of
    its folders."""
    folders: list[str] = []
    with os.scandir(sfd) as entries:
        for entry in entries:
            name = entry.name
            if upload_temps.is_temp(name):
                continue  # an upload in flight is not a file yet
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            try:
                if vfs.reserved is not None and _leaves_out(vfs, sfd, name, st):
                    continue
                if stat.S_ISDIR(st.st_mode):
                    folders.append(name)
                elif stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=tfd)
                elif stat.S_ISREG(st.st_mode):
                    _copy_file_at(vfs, sfd, tfd, name, mode_mask, stop)
            except OSError as exc:
                exc.filename = name
                raise
    return folders


def _leaves_out(vfs: VFS, sfd: int, name: str, st: os.stat_result) -> bool:
    """Whether a copy leaves out the entry ``name`` (lstat ``st``) of the folder
    ``sfd`` as the server's own: the state folder in the folder that holds it (where
    listings leave it out too). Met anywhere else (a mount point: a bind mount of it),
    or a state file met anywhere (a bind mount or a hard link of one), the copy stops
    with EACCES before anything of it is read."""
    assert vfs.reserved is not None
    if identity(st) in vfs.reserved.hidden and stat.S_ISDIR(st.st_mode):
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            if mount_id(fd) == mount_id(sfd):
                return True
        finally:
            os.close(fd)
    vfs.reserved.check_name(st, change=False)
    return False


def _open_copied_folder(
    vfs: VFS, sfd: int, tfd: int, name: str, made: Identity, seen: set[Identity]
) -> tuple[str, int, int, os.stat_result] | None:
    """Open the subfolder ``name`` of the folder ``sfd`` and make its copy in ``tfd``:
    the name, both fds and the source's stat; None if the source is gone."""
    try:
        below = os.open(name, DIR_READ, dir_fd=sfd)
    except FileNotFoundError:
        return None
    try:
        here = os.fstat(below)
        if identity(here) == made:
            raise OSError(errno.EINVAL, _INTO_ITSELF, name)
        if identity(here) in seen:
            raise OSError(errno.ELOOP, "The tree holds a folder above itself", name)
        if vfs.reserved is not None:
            vfs.reserved.check_name(here, change=False)  # (put there since it was read)
        os.mkdir(name, 0o700, dir_fd=tfd)
        return name, below, os.open(name, DIR_READ, dir_fd=tfd), here
    except BaseException:
        os.close(below)
        raise


def _copy_file_at(vfs: VFS, sfd: int, tfd: int, name: str, mode_mask: int, stop: Stop) -> None:
    """Copy the regular file ``name`` of the folder ``sfd`` into the folder ``tfd``
    through an ``AtomicFile`` (whole or not at all; a name that appeared meanwhile
    is never replaced: EEXIST). It is reached with O_PATH and opened for reading
    only once it is known to be a regular file and none of the server's own, so a
    FIFO or device put in its place is never opened."""
    pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    try:
        st = os.fstat(pfd)
        if not stat.S_ISREG(st.st_mode):
            return  # no longer a file: what was put in its place is not copied
        if vfs.reserved is not None:
            vfs.reserved.check_name(st, change=False)
        fd = os.open(syscalls.proc_link(pfd), os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(pfd)
    source = OpenFile(fd, name)
    try:
        dir_fd = os.dup(tfd)
        try:
            target = AtomicFile(dir_fd, name, name, 0o600)
        except BaseException:
            os.close(dir_fd)  # (the AtomicFile owns it only once its temp file exists)
            raise
        _fill(target, source, st, mode_mask, stop)
        target.commit(replace=False)
    finally:
        source.close()


def _copy_entry(
    vfs: VFS, src: str, dst: str, st: os.stat_result, mode_mask: int, stop: Stop
) -> None:
    if stat.S_ISLNK(st.st_mode):
        vfs.symlink(vfs.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        if _exists(vfs, dst):
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        vfs.copy_file(src, dst, mode_mask, stop)


def _exists(vfs: VFS, path: str) -> bool:
    try:
        vfs.lstat(path)
    except FileNotFoundError:
        return False
    return True
