"""Escape tests of the jailed VFS, each run with openat2 and with the O_NOFOLLOW walk.

Layout of every test (``tmp`` is pytest's ``tmp_path``)::

    tmp/outside/          the host content that must never be reached or changed
    tmp/root/             the folder served as the VFS root

After each escape attempt the outside tree is compared with a snapshot taken before:
names, types, modes, owners, sizes, link counts, mtimes and contents must all be the
same, and no new name may appear next to ``root``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from hoody_mount.core import syscalls
from hoody_mount.core.open_files import Times
from hoody_mount.core.reserved import Reserved
from hoody_mount.core.vfs import VFS

OLD_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09, a fixed mtime for outside files
SECRET = b"OUTSIDE secret"
INSIDE = b"inside content"

Snapshot = dict[str, tuple[Any, ...]]


# -- the tree --


def _snapshot(base: Path) -> Snapshot:
    """Everything observable about ``base`` and what lies below it (no links followed)."""
    out: Snapshot = {}
    stack = [base]
    while stack:
        path = stack.pop()
        st = os.lstat(path)
        extra: Any = None
        if stat.S_ISREG(st.st_mode):
            extra = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            stack.extend(sorted(path.iterdir()))
        key = str(path.relative_to(base))
        out[key] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_nlink,
            st.st_ino,
            st.st_mtime_ns,
            extra,
        )
    return out


@dataclass
class Jail:
    """A served root next to an outside folder, and a VFS on the root."""

    tmp: Path
    root: Path
    outside: Path
    vfs: VFS
    guarded: bool = False
    before: Snapshot = field(default_factory=dict)
    neighbours: set[str] = field(default_factory=set)

    def seal(self) -> None:
        """Record the outside state that every test compares against."""
        self.before = _snapshot(self.outside)
        self.neighbours = set(os.listdir(self.tmp))

    def assert_outside_untouched(self) -> None:
        """The outside tree is exactly as sealed and nothing new appeared beside root."""
        assert set(os.listdir(self.tmp)) == self.neighbours
        assert _snapshot(self.outside) == self.before

    def decoy(self, jail_dir: str) -> Path:
        """The host folder that the virtual folder ``jail_dir`` of the jail is."""
        return self.root / jail_dir.lstrip("/")


def _write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write a file with a fixed mode and an old mtime (so any change shows)."""
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(OLD_NS, OLD_NS))


def _build_outside(outside: Path) -> None:
    """The outside tree: files, a folder with a file, and an empty folder."""
    outside.mkdir()
    _write(outside / "secret.txt", SECRET)
    _write(outside / "f", b"OUTSIDE")
    (outside / "folder").mkdir()
    _write(outside / "folder" / "inner.txt", b"OUTSIDE inner")
    (outside / "empty").mkdir()
    os.chmod(outside / "folder", 0o750)
    for folder in (outside / "folder", outside / "empty", outside):
        os.utime(folder, ns=(OLD_NS, OLD_NS))


def _fill_decoy(folder: Path, label: bytes) -> None:
    """A folder inside root shaped like the outside one, with different content."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "secret.txt").write_bytes(b"decoy " + label)
    (folder / "folder").mkdir()
    (folder / "folder" / "inner.txt").write_bytes(b"decoy inner")
    (folder / "empty").mkdir()


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def mode(request: pytest.FixtureRequest) -> bool:
    """The two resolution modes of the VFS: openat2(RESOLVE_IN_ROOT) or the manual walk."""
    if request.param:
        assert syscalls.openat2_works(), "this kernel lacks openat2"
    return bool(request.param)


@pytest.fixture(params=[False, True], ids=["plain", "guarded"])
def jail(tmp_path: Path, mode: bool, request: pytest.FixtureRequest) -> Iterator[Jail]:
    """tmp/outside with secrets, tmp/root with one inside file, and a VFS on root;
    guarded, the VFS also keeps a reserved folder (tmp/state, beside the root) out of
    reach, which changes how it resolves every path (see ``VFS._open_beside``)."""
    outside = tmp_path / "outside"
    root = tmp_path / "root"
    _build_outside(outside)
    root.mkdir()
    (root / "inside.txt").write_bytes(INSIDE)
    reserved = None
    if request.param:
        (tmp_path / "state").mkdir()
        reserved = Reserved([tmp_path / "state"], [])
    vfs = VFS.open_root(str(root), use_openat2=mode, reserved=reserved)
    j = Jail(tmp_path, root, outside, vfs, guarded=request.param)
    j.seal()
    try:
        yield j
    finally:
        vfs.close()
        if reserved is not None:
            reserved.close()


def _errno_of(call: Callable[[], object]) -> int:
    """Run ``call``, which must fail with OSError, and return its errno."""
    with pytest.raises(OSError) as info:
        call()
    assert info.value.errno is not None
    return info.value.errno


# -- symlinks that point out of the root --


def test_absolute_symlink_is_read_inside_root(jail: Jail) -> None:
    """/etc-like absolute links resolve against the jail root, never the host's /."""
    (jail.root / "etc").mkdir()
    (jail.root / "etc" / "passwd").write_bytes(b"jail passwd")
    os.symlink("/etc/passwd", jail.root / "pw")
    os.symlink("/etc", jail.root / "etclink")
    os.symlink("/etc/shadow", jail.root / "shadow")
    os.symlink(str(jail.outside / "secret.txt"), jail.root / "host_abs")
    os.symlink(str(jail.outside), jail.root / "host_dir")
    os.symlink("/", jail.root / "slash")
    vfs = jail.vfs

    assert vfs.read_bytes("/pw") == b"jail passwd"
    assert vfs.read_bytes("/etclink/passwd") == b"jail passwd"
    assert vfs.stat("/etclink").st_ino == os.stat(jail.root / "etc").st_ino
    assert _errno_of(lambda: vfs.read_bytes("/shadow")) == errno.ENOENT
    assert _errno_of(lambda: vfs.read_bytes("/host_abs")) == errno.ENOENT
    assert _errno_of(lambda: vfs.stat("/host_abs")) == errno.ENOENT
    assert _errno_of(lambda: vfs.listdir("/host_dir")) == errno.ENOENT
    assert vfs.stat("/slash").st_ino == os.stat(jail.root).st_ino
    assert vfs.read_bytes("/slash/slash/inside.txt") == INSIDE
    assert vfs.readlink("/host_abs") == str(jail.outside / "secret.txt")
    jail.assert_outside_untouched()


def test_relative_dotdot_symlinks_clamp_at_root(jail: Jail) -> None:
    """``../..`` in a link stops at the jail root like ``..`` of a chroot."""
    (jail.root / "a" / "b").mkdir(parents=True)
    os.symlink("../outside/secret.txt", jail.root / "rel1")
    os.symlink("../../outside/secret.txt", jail.root / "a" / "rel2")
    os.symlink("../../../outside/secret.txt", jail.root / "a" / "b" / "rel3")
    os.symlink("../../../../../../../../../outside", jail.root / "a" / "b" / "reldir")
    os.symlink("/../../outside/secret.txt", jail.root / "absdots")
    os.symlink("/../.." + str(jail.outside / "secret.txt"), jail.root / "absdots_host")
    os.symlink("..", jail.root / "up")
    os.symlink("../..", jail.root / "a" / "up2")
    vfs = jail.vfs

    for path in ["/rel1", "/a/rel2", "/a/b/rel3", "/absdots", "/absdots_host"]:
        assert _errno_of(partial(vfs.read_bytes, path)) == errno.ENOENT, path
        assert _errno_of(partial(vfs.stat, path)) == errno.ENOENT, path
    assert _errno_of(lambda: vfs.stat("/a/b/reldir/secret.txt")) == errno.ENOENT
    assert _errno_of(lambda: vfs.read_bytes("/up/outside/secret.txt")) == errno.ENOENT
    assert _errno_of(lambda: vfs.read_bytes("/a/up2/outside/secret.txt")) == errno.ENOENT
    root_ino = os.stat(jail.root).st_ino
    assert vfs.stat("/up").st_ino == root_ino
    assert vfs.stat("/up/up/up/up").st_ino == root_ino
    assert vfs.stat("/a/up2/a/up2").st_ino == root_ino
    assert vfs.read_bytes("/up/up/inside.txt") == INSIDE
    jail.assert_outside_untouched()


def test_symlink_loop_is_eloop(jail: Jail) -> None:
    """A loop of links fails with ELOOP rather than spinning."""
    os.symlink("loop2", jail.root / "loop1")
    os.symlink("loop1", jail.root / "loop2")
    os.symlink("self/x", jail.root / "self")
    assert _errno_of(lambda: jail.vfs.stat("/loop1")) == errno.ELOOP
    assert _errno_of(lambda: jail.vfs.stat("/self")) == errno.ELOOP
    jail.assert_outside_untouched()


# -- a symlinked parent folder --

# (door path, link target) pairs: every target reaches tmp/outside when read by the host.
DOORS: dict[str, Callable[[Path], tuple[str, str, str]]] = {
    # name: outside -> (door in the jail, link target, where the target lands in the jail)
    "absolute": lambda out: ("/door", str(out), str(out)),
    "relative": lambda out: ("/door", "../outside", "/outside"),
    "deep-relative": lambda out: ("/a/b/door", "../../../outside", "/outside"),
    "root-dotdot": lambda out: ("/door", "/../../../.." + str(out), str(out)),
}


def _op_stat(v: VFS, d: str) -> object:
    """stat a file behind the door."""
    return v.stat(f"{d}/secret.txt")


def _op_lstat(v: VFS, d: str) -> object:
    """lstat a file behind the door."""
    return v.lstat(f"{d}/secret.txt")


def _cached(v: VFS, path: str, follow: bool) -> object:
    """stat or lstat from the kernel's caches (filled by a first lookup), else as usual."""
    with contextlib.suppress(OSError):
        v.stat(path) if follow else v.lstat(path)
    result = v.stat_cached(path, follow)
    if result is None:
        return v.stat(path) if follow else v.lstat(path)
    return result


def _op_stat_cached(v: VFS, d: str) -> object:
    """stat a file behind the door, from the caches."""
    return _cached(v, f"{d}/secret.txt", True)


def _op_lstat_cached(v: VFS, d: str) -> object:
    """lstat a file behind the door, from the caches."""
    return _cached(v, f"{d}/secret.txt", False)


def _op_read(v: VFS, d: str) -> object:
    """Read a file behind the door."""
    return v.read_bytes(f"{d}/secret.txt")


def _op_write(v: VFS, d: str) -> object:
    """Overwrite a file behind the door."""
    f = v.open_file(f"{d}/secret.txt", os.O_WRONLY | os.O_TRUNC)
    try:
        f.write(0, b"pwned")
    finally:
        f.close()
    return None


def _op_create(v: VFS, d: str) -> object:
    """Create a file behind the door."""
    v.open_file(f"{d}/new.txt", os.O_WRONLY | os.O_CREAT, 0o644).close()
    return None


def _op_listdir(v: VFS, d: str) -> object:
    """List the folder the door leads to."""
    listing = v.listdir(d)
    try:
        return sorted(e.name for e in listing.read(100))
    finally:
        listing.close()


def _op_unlink(v: VFS, d: str) -> object:
    """Remove a file behind the door."""
    v.unlink(f"{d}/secret.txt")
    return None


def _op_mkdir(v: VFS, d: str) -> object:
    """Make a folder behind the door."""
    v.mkdir(f"{d}/newdir")
    return None


def _op_rmdir(v: VFS, d: str) -> object:
    """Remove an empty folder behind the door."""
    v.rmdir(f"{d}/empty")
    return None


def _op_rename_out(v: VFS, d: str) -> object:
    """Move a file from behind the door into the root."""
    v.rename(f"{d}/secret.txt", "/moved.txt", replace=True)
    return None


def _op_rename_in(v: VFS, d: str) -> object:
    """Move an inside file behind the door."""
    v.rename("/inside.txt", f"{d}/planted.txt", replace=False)
    return None


def _op_rename_over(v: VFS, d: str) -> object:
    """Replace a file behind the door with an inside file."""
    v.rename("/inside.txt", f"{d}/secret.txt", replace=True)
    return None


def _op_link_out(v: VFS, d: str) -> object:
    """Hard-link a file behind the door into the root."""
    v.link(f"{d}/secret.txt", "/hardlink.txt")
    return None


def _op_link_in(v: VFS, d: str) -> object:
    """Hard-link an inside file behind the door."""
    v.link("/inside.txt", f"{d}/hardlink.txt")
    return None


def _op_symlink(v: VFS, d: str) -> object:
    """Make a symlink behind the door."""
    v.symlink("/inside.txt", f"{d}/sl")
    return None


def _op_chmod(v: VFS, d: str) -> object:
    """Change the mode of a file behind the door."""
    v.set_attrs(f"{d}/secret.txt", mode=0o777)
    return None


def _op_chmod_folder(v: VFS, d: str) -> object:
    """Change the mode of the folder the door leads to."""
    v.set_attrs(d, mode=0o700)
    return None


def _op_chown(v: VFS, d: str) -> object:
    """Change the owner of a file behind the door."""
    v.set_attrs(f"{d}/secret.txt", owner=(4321, 4321))
    return None


def _op_utime(v: VFS, d: str) -> object:
    """Change the times of a file behind the door."""
    v.set_attrs(f"{d}/secret.txt", times=Times(5 * 10**9, 7 * 10**9))
    return None


def _op_utime_nofollow(v: VFS, d: str) -> object:
    """Change the times of a file behind the door, follow=False."""
    v.set_attrs(f"{d}/secret.txt", follow=False, times=Times(5 * 10**9, 7 * 10**9))
    return None


def _op_truncate(v: VFS, d: str) -> object:
    """Truncate a file behind the door."""
    v.set_attrs(f"{d}/secret.txt", size=0)
    return None


def _op_sub(v: VFS, d: str) -> object:
    """Open a sub jail on the door and read through it."""
    sub = v.sub(d)
    try:
        return sub.lstat("/").st_ino, sub.read_bytes("/secret.txt")
    finally:
        sub.close()


def _op_statvfs(v: VFS, d: str) -> object:
    """statvfs the folder the door leads to."""
    return v.statvfs(d)


# name: (operation, check of its effect on the decoy folder inside root)
DOOR_OPS: dict[str, tuple[Callable[[VFS, str], object], Callable[[Path, Path, object], None]]] = {
    "stat": (_op_stat, lambda dec, root, r: _same_ino(r, dec / "secret.txt")),
    "lstat": (_op_lstat, lambda dec, root, r: _same_ino(r, dec / "secret.txt")),
    "stat-cached": (_op_stat_cached, lambda dec, root, r: _same_ino(r, dec / "secret.txt")),
    "lstat-cached": (_op_lstat_cached, lambda dec, root, r: _same_ino(r, dec / "secret.txt")),
    "read": (_op_read, lambda dec, root, r: _eq(r, (dec / "secret.txt").read_bytes())),
    "write": (_op_write, lambda dec, root, r: _eq((dec / "secret.txt").read_bytes(), b"pwned")),
    "create": (_op_create, lambda dec, root, r: _true((dec / "new.txt").is_file())),
    "listdir": (_op_listdir, lambda dec, root, r: _eq(r, sorted(os.listdir(dec)))),
    "unlink": (_op_unlink, lambda dec, root, r: _true(not (dec / "secret.txt").exists())),
    "mkdir": (_op_mkdir, lambda dec, root, r: _true((dec / "newdir").is_dir())),
    "rmdir": (_op_rmdir, lambda dec, root, r: _true(not (dec / "empty").exists())),
    "rename-out": (
        _op_rename_out,
        lambda dec, root, r: _true((root / "moved.txt").read_bytes().startswith(b"decoy")),
    ),
    "rename-in": (
        _op_rename_in,
        lambda dec, root, r: _eq((dec / "planted.txt").read_bytes(), INSIDE),
    ),
    "rename-over": (
        _op_rename_over,
        lambda dec, root, r: _eq((dec / "secret.txt").read_bytes(), INSIDE),
    ),
    "link-out": (
        _op_link_out,
        lambda dec, root, r: _eq(
            os.stat(root / "hardlink.txt").st_ino, os.stat(dec / "secret.txt").st_ino
        ),
    ),
    "link-in": (
        _op_link_in,
        lambda dec, root, r: _eq(
            os.stat(dec / "hardlink.txt").st_ino, os.stat(root / "inside.txt").st_ino
        ),
    ),
    "symlink": (_op_symlink, lambda dec, root, r: _true((dec / "sl").is_symlink())),
    "chmod": (
        _op_chmod,
        lambda dec, root, r: _eq(stat.S_IMODE(os.stat(dec / "secret.txt").st_mode), 0o777),
    ),
    "chmod-folder": (
        _op_chmod_folder,
        lambda dec, root, r: _eq(stat.S_IMODE(os.stat(dec).st_mode), 0o700),
    ),
    "chown": (_op_chown, lambda dec, root, r: _eq(os.stat(dec / "secret.txt").st_uid, 4321)),
    "utime": (
        _op_utime,
        lambda dec, root, r: _eq(os.stat(dec / "secret.txt").st_mtime_ns, 7 * 10**9),
    ),
    "utime-nofollow": (
        _op_utime_nofollow,
        lambda dec, root, r: _eq(os.stat(dec / "secret.txt").st_mtime_ns, 7 * 10**9),
    ),
    "truncate": (_op_truncate, lambda dec, root, r: _eq(os.stat(dec / "secret.txt").st_size, 0)),
    "sub": (
        _op_sub,
        lambda dec, root, r: _eq(r, (os.stat(dec).st_ino, (dec / "secret.txt").read_bytes())),
    ),
    "statvfs": (_op_statvfs, lambda dec, root, r: None),
}


def _eq(a: object, b: object) -> None:
    """Assert equality (usable inside a lambda)."""
    assert a == b


def _true(value: bool) -> None:
    """Assert truth (usable inside a lambda)."""
    assert value


def _same_ino(result: object, path: Path) -> None:
    """Assert that a stat result describes the host file ``path``."""
    assert isinstance(result, os.stat_result)
    assert result.st_ino == os.stat(path).st_ino


def _make_door(jail: Jail, door_kind: str) -> tuple[str, str]:
    """Create the door link; return its jail path and where its target lands in the jail."""
    door, target, lands = DOORS[door_kind](jail.outside)
    host_door = jail.decoy(door)
    host_door.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, host_door)
    # The host itself would follow the door straight outside: that is the attack.
    assert os.path.realpath(host_door) == str(jail.outside)
    return door, lands


@pytest.mark.parametrize("op_name", list(DOOR_OPS))
@pytest.mark.parametrize("door_kind", list(DOORS))
def test_symlinked_parent_without_decoy_fails(jail: Jail, door_kind: str, op_name: str) -> None:
    """Through a folder link pointing outside, every verb fails and outside is untouched."""
    door, _ = _make_door(jail, door_kind)
    op, _check = DOOR_OPS[op_name]
    with pytest.raises(OSError):
        op(jail.vfs, door)
    assert (jail.root / "inside.txt").read_bytes() == INSIDE
    jail.assert_outside_untouched()


@pytest.mark.parametrize("op_name", list(DOOR_OPS))
@pytest.mark.parametrize("door_kind", list(DOORS))
def test_symlinked_parent_reaches_decoy(jail: Jail, door_kind: str, op_name: str) -> None:
    """With a same-named folder inside root, every verb acts on it and never on outside."""
    door, lands = _make_door(jail, door_kind)
    decoy = jail.decoy(lands)
    _fill_decoy(decoy, door_kind.encode())
    op, check = DOOR_OPS[op_name]
    result = op(jail.vfs, door)
    check(decoy, jail.root, result)
    jail.assert_outside_untouched()


# -- dangling links used to create --


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/created.txt", "/created.txt"),
        ("../../../created.txt", "/created.txt"),
        ("../outside/new.txt", "/outside/new.txt"),
        ("/../../outside/new.txt", "/outside/new.txt"),
        ("<abs>/new.txt", "<abs>/new.txt"),
        ("/../../<abs>/new.txt", "<abs>/new.txt"),
    ],
)
def test_dangling_symlink_create_lands_inside(jail: Jail, target: str, lands: str) -> None:
    """O_CREAT through a dangling link creates its target inside the root, never outside."""
    target = target.replace("<abs>", str(jail.outside))
    lands = lands.replace("<abs>", str(jail.outside))
    jail.decoy(lands).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, jail.root / "dangling")
    f = jail.vfs.open_file("/dangling", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        f.write(0, b"created")
    finally:
        f.close()
    assert jail.decoy(lands).read_bytes() == b"created"
    assert (jail.root / "dangling").is_symlink()
    jail.assert_outside_untouched()


def test_dangling_symlink_create_without_parent_fails(jail: Jail) -> None:
    """A dangling link into a folder that only exists outside cannot create anything."""
    os.symlink(str(jail.outside / "new.txt"), jail.root / "d1")
    os.symlink("../outside/new.txt", jail.root / "d2")
    for path in ("/d1", "/d2"):
        code = _errno_of(partial(jail.vfs.open_file, path, os.O_WRONLY | os.O_CREAT))
        assert code == errno.ENOENT
    jail.assert_outside_untouched()


# -- moving links around --


def test_relative_link_moved_to_shallower_folder(jail: Jail) -> None:
    """A relative link that gains ``..`` reach by a rename still resolves inside root."""
    _fill_decoy(jail.root / "outside", b"moved")
    (jail.root / "a" / "b").mkdir(parents=True)
    decoy = b"decoy moved"
    # Made through the VFS, read fine in place, then moved up one level.
    jail.vfs.symlink("../outside/secret.txt", "/a/l")
    assert jail.vfs.read_bytes("/a/l") == decoy
    jail.vfs.rename("/a/l", "/l", replace=False)
    assert os.path.realpath(jail.root / "l") == str(jail.outside / "secret.txt")
    assert jail.vfs.read_bytes("/l") == decoy
    # A folder holding a link moved up: the link's ``..`` now reaches one level further.
    jail.vfs.symlink("../../outside/secret.txt", "/a/b/l2")
    assert jail.vfs.read_bytes("/a/b/l2") == decoy
    jail.vfs.rename("/a/b", "/b", replace=False)
    assert os.path.realpath(jail.root / "b" / "l2") == str(jail.outside / "secret.txt")
    assert jail.vfs.read_bytes("/b/l2") == decoy
    jail.vfs.set_attrs("/b/l2", mode=0o600, times=Times(1, 2))
    assert os.stat(jail.root / "outside" / "secret.txt").st_mtime_ns == 2
    jail.assert_outside_untouched()


# -- sub jails --


def test_sub_jail_cannot_reach_parent_folders(jail: Jail) -> None:
    """A sub jail clamps ``..`` and absolute links at its own root."""
    sub_host = jail.root / "a" / "sub"
    sub_host.mkdir(parents=True)
    (jail.root / "a" / "other").mkdir()
    (jail.root / "a" / "other" / "secret.txt").write_bytes(b"sibling secret")
    (sub_host / "own.txt").write_bytes(b"own")
    os.symlink("../other/secret.txt", sub_host / "up")
    os.symlink("../../../../inside.txt", sub_host / "upup")
    os.symlink("/a/other/secret.txt", sub_host / "abs")
    os.symlink("/", sub_host / "slash")
    os.symlink("/own.txt", sub_host / "abs_own")
    os.symlink(str(jail.outside), sub_host / "host")
    sub = jail.vfs.sub("/a/sub")
    try:
        sub_ino = os.stat(sub_host).st_ino
        assert sub.lstat("/").st_ino == sub_ino
        assert sub.stat("/").st_ino == sub_ino
        assert sub.stat("/slash").st_ino == sub_ino
        assert sub.read_bytes("/abs_own") == b"own"
        assert sub.read_bytes("/slash/own.txt") == b"own"
        for path in ("/up", "/upup", "/abs", "/host/secret.txt"):
            assert _errno_of(partial(sub.read_bytes, path)) == errno.ENOENT, path
        # raw ``..`` (defence in depth: callers normalise, the VFS clamps anyway)
        assert sub.stat("/..").st_ino == sub_ino
        assert _errno_of(lambda: sub.read_bytes("/../other/secret.txt")) == errno.ENOENT
        assert _errno_of(lambda: sub.read_bytes("/../../inside.txt")) == errno.ENOENT
        # the verbs that act on a name
        assert _errno_of(lambda: sub.unlink("/abs/x")) == errno.ENOENT
        assert _errno_of(lambda: sub.mkdir("/up/x")) in (errno.ENOENT, errno.ENOTDIR)
        assert _errno_of(lambda: sub.link("/abs", "/../other/hl")) == errno.ENOENT
        sub.symlink("x", "/slash/made")
        assert (sub_host / "made").is_symlink()
        with pytest.raises(OSError) as info:
            sub.unlink("/")
        assert info.value.errno == errno.EBUSY
        nested = sub.sub("/slash")
        try:
            assert nested.stat("/").st_ino == sub_ino
        finally:
            nested.close()
    finally:
        sub.close()
    assert (jail.root / "a" / "other" / "secret.txt").read_bytes() == b"sibling secret"
    assert sorted(os.listdir(jail.root / "a" / "other")) == ["secret.txt"]
    jail.assert_outside_untouched()


def test_sub_jail_through_link(jail: Jail) -> None:
    """sub() resolves its path inside the parent jail, links included."""
    (jail.root / "real").mkdir()
    (jail.root / "real" / "x").write_bytes(b"x")
    os.symlink("/real", jail.root / "via")
    os.symlink(str(jail.outside), jail.root / "host")
    os.symlink("../outside", jail.root / "rel")
    sub = jail.vfs.sub("/via")
    try:
        assert sub.read_bytes("/x") == b"x"
    finally:
        sub.close()
    assert _errno_of(lambda: jail.vfs.sub("/host")) == errno.ENOENT
    assert _errno_of(lambda: jail.vfs.sub("/rel")) == errno.ENOENT
    assert _errno_of(lambda: jail.vfs.sub("/inside.txt")) == errno.ENOTDIR
    jail.assert_outside_untouched()


# -- attributes of links, hard links of links --


def test_set_attrs_nofollow_changes_link_not_target(jail: Jail) -> None:
    """follow=False changes the link's own times and owner, never its target's."""
    os.symlink("inside.txt", jail.root / "l")
    os.symlink(str(jail.outside / "secret.txt"), jail.root / "out")
    os.symlink("../outside/secret.txt", jail.root / "outrel")
    target_before = os.stat(jail.root / "inside.txt")
    vfs = jail.vfs

    vfs.set_attrs("/l", follow=False, times=Times(3 * 10**9, 4 * 10**9))
    assert os.lstat(jail.root / "l").st_mtime_ns == 4 * 10**9
    vfs.set_attrs("/l", follow=False, owner=(1234, 1234))
    assert os.lstat(jail.root / "l").st_uid == 1234
    vfs.set_attrs("/l", follow=False, mode=0o600)  # ignored for a link
    assert _errno_of(lambda: vfs.set_attrs("/l", follow=False, size=0)) == errno.EINVAL
    target_after = os.stat(jail.root / "inside.txt")
    assert target_after.st_mtime_ns == target_before.st_mtime_ns
    assert target_after.st_mode == target_before.st_mode
    assert target_after.st_uid == target_before.st_uid
    assert (jail.root / "inside.txt").read_bytes() == INSIDE

    for link in ("/out", "/outrel"):
        vfs.set_attrs(link, follow=False, times=Times(3 * 10**9, 4 * 10**9))
        vfs.set_attrs(link, follow=False, owner=(1234, 1234))
        vfs.set_attrs(link, follow=False, mode=0o777)
        assert os.lstat(jail.decoy(link)).st_mtime_ns == 4 * 10**9
    jail.assert_outside_untouched()


@pytest.mark.parametrize(
    "attrs",
    [
        {"mode": 0o777},
        {"times": Times(5, 6)},
        {"size": 0},
        {"owner": (4321, 4321)},
        {"mode": 0o600, "times": Times(5, 6), "size": 1, "owner": (1, 1)},
    ],
    ids=["mode", "times", "size", "owner", "all"],
)
def test_set_attrs_follow_on_outside_link(jail: Jail, attrs: dict[str, Any]) -> None:
    """follow=True on links aimed outside resolves in the jail and never touches outside."""
    os.symlink(str(jail.outside / "secret.txt"), jail.root / "abs")
    os.symlink("../outside/secret.txt", jail.root / "rel")
    os.symlink("/../../outside/folder", jail.root / "dots")
    os.symlink(str(jail.outside), jail.root / "hostdir")
    for link in ("/abs", "/rel", "/dots", "/hostdir"):
        assert _errno_of(partial(jail.vfs.set_attrs, link, **attrs)) == errno.ENOENT
    jail.assert_outside_untouched()


def test_hardlink_of_symlink_links_the_link(jail: Jail) -> None:
    """link() of a symlink makes a second name for the link, not for its target."""
    os.symlink(str(jail.outside / "secret.txt"), jail.root / "out")
    os.symlink("inside.txt", jail.root / "in")
    jail.vfs.link("/out", "/out2")
    jail.vfs.link("/in", "/in2")
    for a, b in (("out", "out2"), ("in", "in2")):
        st_a, st_b = os.lstat(jail.root / a), os.lstat(jail.root / b)
        assert stat.S_ISLNK(st_b.st_mode)
        assert st_a.st_ino == st_b.st_ino
        assert os.readlink(jail.root / b) == os.readlink(jail.root / a)
    assert os.stat(jail.root / "inside.txt").st_nlink == 1
    assert _errno_of(lambda: jail.vfs.read_bytes("/out2")) == errno.ENOENT
    assert jail.vfs.read_bytes("/in2") == INSIDE
    jail.assert_outside_untouched()


# -- FIFOs --


def _bounded(call: Callable[[], object], fifo: Path, seconds: float = 3.0) -> BaseException | None:
    """Run ``call`` in a thread; fail the test if it has not returned within ``seconds``.

    Returns the exception it raised (None if it returned). A hung open is released by
    opening the FIFO from the other side, so the thread never outlives the test.
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            result = call()
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)
        else:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            outcome.append(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            worker.join(5)
        finally:
            os.close(fd)
        pytest.fail(f"call on a FIFO still blocked after {seconds}s")
    return outcome[0]


@pytest.mark.parametrize(
    ("via", "flags"),
    [
        ("/fifo", os.O_RDONLY),
        ("/fifo", os.O_WRONLY),
        ("/fifo", os.O_RDWR),
        ("/fifo", os.O_WRONLY | os.O_CREAT),
        ("/fifo", os.O_WRONLY | os.O_TRUNC),
        ("/fifo", os.O_RDONLY | os.O_NONBLOCK),
        ("/fifolink", os.O_RDONLY),
        ("/fifolink", os.O_WRONLY | os.O_CREAT),
        ("/absfifolink", os.O_RDONLY),
    ],
)
def test_fifo_is_never_opened(jail: Jail, via: str, flags: int) -> None:
    """open_file on a FIFO (or a link to one) fails fast with ENXIO and never blocks."""
    fifo = jail.root / "fifo"
    os.mkfifo(fifo)
    os.symlink("fifo", jail.root / "fifolink")
    os.symlink("/fifo", jail.root / "absfifolink")
    started = time.monotonic()
    exc = _bounded(lambda: jail.vfs.open_file(via, flags), fifo)
    assert isinstance(exc, OSError), exc
    assert exc.errno == errno.ENXIO
    assert time.monotonic() - started < 10  # (liveness: an open of a FIFO waits forever)
    jail.assert_outside_untouched()


def test_fifo_other_verbs(jail: Jail) -> None:
    """read_bytes and truncation refuse a FIFO quickly; listing shows it; stat works."""
    fifo = jail.root / "fifo"
    os.mkfifo(fifo)
    exc = _bounded(lambda: jail.vfs.read_bytes("/fifo"), fifo)
    assert isinstance(exc, OSError) and exc.errno == errno.ENXIO
    exc = _bounded(lambda: jail.vfs.set_attrs("/fifo", size=0), fifo)
    assert isinstance(exc, OSError) and exc.errno == errno.ENXIO
    assert _bounded(lambda: jail.vfs.stat("/fifo"), fifo) is None
    assert stat.S_ISFIFO(jail.vfs.lstat("/fifo").st_mode)
    listing = jail.vfs.listdir("/")
    try:
        entries = {e.name: e for e in listing.read(100)}
    finally:
        listing.close()
    assert "fifo" in entries
    assert stat.S_ISFIFO(entries["fifo"].stat.st_mode)
    jail.assert_outside_untouched()


# -- the root itself --


def test_root_stat(jail: Jail) -> None:
    """lstat and stat of / describe the served folder."""
    for st in (jail.vfs.lstat("/"), jail.vfs.stat("/")):
        assert stat.S_ISDIR(st.st_mode)
        assert st.st_ino == os.stat(jail.root).st_ino
    listing = jail.vfs.listdir("/")
    try:
        assert [e.name for e in listing.read(10)] == ["inside.txt"]
    finally:
        listing.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda v: v.unlink("/"),
        lambda v: v.rmdir("/"),
        lambda v: v.rename("/", "/x", replace=False),
        lambda v: v.rename("/", "/x", replace=True),
        lambda v: v.rename("/inside.txt", "/", replace=False),
        lambda v: v.rename("/inside.txt", "/", replace=True),
        lambda v: v.link("/", "/x"),
        lambda v: v.link("/inside.txt", "/"),
        lambda v: v.symlink("x", "/"),
    ],
    ids=[
        "unlink",
        "rmdir",
        "rename-from",
        "rename-from-replace",
        "rename-onto",
        "rename-onto-replace",
        "link-from",
        "link-onto",
        "symlink-onto",
    ],
)
def test_root_cannot_be_removed_or_replaced(jail: Jail, call: Callable[[VFS], object]) -> None:
    """Verbs that would remove or replace / fail with EBUSY and change nothing."""
    assert _errno_of(lambda: call(jail.vfs)) == errno.EBUSY
    assert jail.root.is_dir()
    assert os.listdir(jail.root) == ["inside.txt"]
    assert jail.vfs.read_bytes("/inside.txt") == INSIDE
    jail.assert_outside_untouched()


def test_mkdir_root_is_eexist(jail: Jail) -> None:
    """mkdir of / says it exists."""
    assert _errno_of(lambda: jail.vfs.mkdir("/")) == errno.EEXIST


# -- rename and exclusive create --


def test_rename_noreplace_onto_existing(jail: Jail) -> None:
    """rename(replace=False) onto an existing name is EEXIST and leaves both files."""
    (jail.root / "other.txt").write_bytes(b"other")
    code = _errno_of(lambda: jail.vfs.rename("/inside.txt", "/other.txt", replace=False))
    assert code == errno.EEXIST
    assert (jail.root / "inside.txt").read_bytes() == INSIDE
    assert (jail.root / "other.txt").read_bytes() == b"other"
    (jail.root / "d1").mkdir()
    (jail.root / "d2").mkdir()
    assert _errno_of(lambda: jail.vfs.rename("/d1", "/d2", replace=False)) == errno.EEXIST
    os.symlink("nowhere", jail.root / "dangling")
    code = _errno_of(lambda: jail.vfs.rename("/inside.txt", "/dangling", replace=False))
    assert code == errno.EEXIST
    assert (jail.root / "dangling").is_symlink()
    assert sorted(os.listdir(jail.root)) == ["d1", "d2", "dangling", "inside.txt", "other.txt"]


def test_rename_noreplace_to_new_name(jail: Jail) -> None:
    """rename(replace=False) to a free name moves the file."""
    jail.vfs.rename("/inside.txt", "/renamed.txt", replace=False)
    assert os.listdir(jail.root) == ["renamed.txt"]
    assert (jail.root / "renamed.txt").read_bytes() == INSIDE


def test_rename_replace(jail: Jail) -> None:
    """rename(replace=True) replaces the existing name atomically."""
    (jail.root / "other.txt").write_bytes(b"other")
    jail.vfs.rename("/inside.txt", "/other.txt", replace=True)
    assert os.listdir(jail.root) == ["other.txt"]
    assert (jail.root / "other.txt").read_bytes() == INSIDE


def test_rename_replace_symlink_replaces_link_itself(jail: Jail) -> None:
    """Replacing a link pointing outside replaces the link, the outside file stays."""
    os.symlink(str(jail.outside / "secret.txt"), jail.root / "out")
    jail.vfs.rename("/inside.txt", "/out", replace=True)
    assert not (jail.root / "out").is_symlink()
    assert (jail.root / "out").read_bytes() == INSIDE
    jail.assert_outside_untouched()


@pytest.mark.parametrize("what", ["file", "folder", "link-to-file", "dangling-link"])
def test_create_exclusive_on_existing(jail: Jail, what: str) -> None:
    """O_CREAT|O_EXCL on any existing name is EEXIST and creates or changes nothing.

    As open(2) says, this holds for a symlink whatever it points to, dangling included.
    """
    name = {"file": "inside.txt", "folder": "dir", "link-to-file": "l", "dangling-link": "dl"}
    (jail.root / "dir").mkdir()
    os.symlink("inside.txt", jail.root / "l")
    os.symlink("nothing-here.txt", jail.root / "dl")
    listing = sorted(os.listdir(jail.root))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    path = "/" + name[what]
    assert _errno_of(lambda: jail.vfs.open_file(path, flags, 0o644)) == errno.EEXIST
    assert sorted(os.listdir(jail.root)) == listing
    assert (jail.root / "inside.txt").read_bytes() == INSIDE


def test_create_exclusive_new(jail: Jail) -> None:
    """O_CREAT|O_EXCL on a free name creates an empty file with the requested mode."""
    f = jail.vfs.open_file("/new.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    f.close()
    st = os.stat(jail.root / "new.txt")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert stat.S_IMODE(st.st_mode) & ~0o600 == 0


# -- odd names --


def test_backslash_and_non_utf8_names(jail: Jail) -> None:
    """A backslash is part of a name; non-UTF-8 names round-trip through surrogateescape."""
    raw = os.fsdecode(b"caf\xe9.txt")
    jail.vfs.open_file("/" + raw, os.O_WRONLY | os.O_CREAT).close()
    jail.vfs.mkdir("/a\\b")
    assert (jail.root / "a\\b").is_dir()
    assert not (jail.root / "a").exists()
    assert os.path.exists(os.fsencode(jail.root) + b"/caf\xe9.txt")
    listing = jail.vfs.listdir("/")
    try:
        names = {e.name for e in listing.read(100)}
    finally:
        listing.close()
    assert names == {"inside.txt", raw, "a\\b"}


# -- a deep tree --


DEPTH = 1500


def test_deep_tree(jail: Jail) -> None:
    """1500 nested folders made through the VFS; the deepest is reachable, no RecursionError."""
    path = ""
    try:
        for _ in range(DEPTH):
            path += "/d"
            jail.vfs.mkdir(path)
        st = jail.vfs.stat(path)
        assert stat.S_ISDIR(st.st_mode)
        assert stat.S_ISDIR(jail.vfs.lstat(path).st_mode)
        jail.vfs.open_file(path + "/leaf", os.O_WRONLY | os.O_CREAT).close()
        assert jail.vfs.read_bytes(path + "/leaf") == b""
    finally:
        _remove_tree(jail.root / "d")
    jail.assert_outside_untouched()


def _remove_tree(top: Path) -> None:
    """Remove a tree without recursion (shutil.rmtree, used by pytest, recurses per level)."""
    stack: list[tuple[Path, bool]] = [(top, False)]
    while stack:
        path, emptied = stack.pop()
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        elif emptied:
            path.rmdir()
        else:
            stack.append((path, True))
            stack.extend((child, False) for child in path.iterdir())


def _make_deep(root: Path, depth: int) -> str:
    """Make ``depth`` nested folders ``d`` on the host without recursion; return the path."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return "/d" * depth


def test_deep_tree_under_default_fd_limit(jail: Jail) -> None:
    """A deep path resolves under the common 1024 open-file limit (systemd's default).

    Resolution must not need one open fd per level: a user who makes a deep tree would
    otherwise get EMFILE for it and starve every other session of descriptors.
    """
    path = _make_deep(jail.root, DEPTH)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    failure: OSError | None = None
    try:
        st = jail.vfs.stat(path)
    except OSError as exc:
        failure = exc
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        _remove_tree(jail.root / "d")
    if failure is not None:
        code = errno.errorcode.get(failure.errno or 0, failure.errno)
        pytest.fail(f"stat of a {DEPTH}-deep path under RLIMIT_NOFILE=1024 failed: {code}")
    assert stat.S_ISDIR(st.st_mode)


# -- the swap race --


RACE_SECONDS = 1.0

# name: outside -> target of the link swapped in for <root>/swap (each reaches outside)
RACE_TARGETS: dict[str, Callable[[Path], str]] = {
    "absolute": lambda out: str(out),
    "relative": lambda out: "../outside",
    "root-dotdot": lambda out: "/../../../.." + str(out),
}


@dataclass
class RaceCounts:
    """What the racing reader saw while the swapper ran."""

    swaps: int = 0
    inside_reads: int = 0
    outside_reads: int = 0
    inside_stats: int = 0
    outside_stats: int = 0
    writes: int = 0
    errors: dict[int, int] = field(default_factory=dict)

    def error(self, exc: OSError) -> None:
        """Count one failed call by its errno."""
        code = exc.errno or 0
        self.errors[code] = self.errors.get(code, 0) + 1


def _swapper(swap: Path, alt: Path, park: Path, stop: threading.Event, counts: RaceCounts) -> None:
    """Swap ``swap`` and ``alt`` until stopped: by RENAME_EXCHANGE, and by three renames.

    RENAME_EXCHANGE swaps a folder and a link atomically (a plain rename cannot put a
    link over a folder); the three atomic renames of prepared names leave a short gap.
    """
    a, b = str(swap), str(alt)
    exchange = syscalls.RENAME_EXCHANGE
    while not stop.is_set():
        for _ in range(8):
            syscalls.renameat2(syscalls.AT_FDCWD, a, syscalls.AT_FDCWD, b, exchange)
            counts.swaps += 1
        os.rename(swap, park)
        os.rename(alt, swap)
        os.rename(park, alt)
        counts.swaps += 1


def _race(
    jail: Jail,
    path: str,
    swap: str,
    read: Callable[[str], bytes],
    do_stat: Callable[[str], os.stat_result],
    write: Callable[[int], None],
) -> RaceCounts:
    """Swap <root>/<swap> with <root>/<swap>_alt while reading and statting ``path``.

    Every 16th round also calls ``write(i)``, a changing verb aimed through the swap.
    """
    counts = RaceCounts()
    inside_ino = os.stat(jail.decoy(path)).st_ino
    outside_ino = os.stat(jail.outside / "f").st_ino
    stop = threading.Event()
    host = jail.root / swap
    swapper = threading.Thread(
        target=_swapper,
        args=(host, host.with_name(swap + "_alt"), host.with_name(swap + "_park"), stop, counts),
        daemon=True,
    )
    swapper.start()
    deadline = time.monotonic() + RACE_SECONDS
    i = 0
    try:
        while time.monotonic() < deadline:
            i += 1
            try:
                data = read(path)
            except OSError as exc:
                counts.error(exc)
            else:
                if data == b"OUTSIDE":
                    counts.outside_reads += 1
                elif data == b"inside":
                    counts.inside_reads += 1
                else:
                    raise AssertionError(f"unexpected content {data!r}")
            try:
                st = do_stat(path)
            except OSError as exc:
                counts.error(exc)
            else:
                if st.st_ino == outside_ino:
                    counts.outside_stats += 1
                elif st.st_ino == inside_ino:
                    counts.inside_stats += 1
            if i % 16 == 0:
                try:
                    write(i)
                except OSError as exc:
                    counts.error(exc)
                else:
                    counts.writes += 1
    finally:
        stop.set()
        swapper.join(10)
    assert not swapper.is_alive()
    return counts


def _assert_race_ran_clean(jail: Jail, counts: RaceCounts) -> None:
    """No escape at all, and enough successful calls to show the race really ran."""
    assert counts.outside_reads == 0, counts
    assert counts.outside_stats == 0, counts
    assert counts.swaps > 1000, counts
    assert counts.inside_reads > 200, counts
    assert counts.inside_stats > 200, counts
    assert counts.errors.get(errno.ENOENT, 0) > 100, counts
    assert counts.writes > 10, counts
    jail.assert_outside_untouched()


@pytest.mark.parametrize("target_kind", list(RACE_TARGETS))
def test_swap_race_folder(jail: Jail, target_kind: str) -> None:
    """A folder swapped with an outside link mid-lookup is never followed outside.

    The reader opens and reads /swap/f, stats it, and creates files in /swap.
    """
    (jail.root / "swap").mkdir()
    (jail.root / "swap" / "f").write_bytes(b"inside")
    os.symlink(RACE_TARGETS[target_kind](jail.outside), jail.root / "swap_alt")
    assert (jail.root / "swap_alt" / "f").read_bytes() == b"OUTSIDE"  # the host would escape

    def create(i: int) -> None:
        jail.vfs.open_file(f"/swap/c{i}", os.O_WRONLY | os.O_CREAT).close()

    counts = _race(jail, "/swap/f", "swap", jail.vfs.read_bytes, jail.vfs.stat, create)
    _assert_race_ran_clean(jail, counts)


@pytest.mark.parametrize("target_kind", list(RACE_TARGETS))
def test_swap_race_leaf(jail: Jail, target_kind: str) -> None:
    """A file swapped with a link to an outside file is never followed outside.

    The reader reads and stats /leaf and changes its mode and times, following links
    and not, so the last-name checks of both resolution modes are raced too.
    """
    (jail.root / "leaf").write_bytes(b"inside")
    target = RACE_TARGETS[target_kind](jail.outside) + "/f"
    os.symlink(target, jail.root / "leaf_alt")
    assert (jail.root / "leaf_alt").read_bytes() == b"OUTSIDE"  # the host would escape

    def touch(i: int) -> None:
        jail.vfs.set_attrs("/leaf", follow=bool(i & 16), mode=0o600, times=Times(i, i))

    counts = _race(jail, "/leaf", "leaf", jail.vfs.read_bytes, jail.vfs.stat, touch)
    _assert_race_ran_clean(jail, counts)


def test_cached_stat_matches_stat_and_stays_on_its_mount(jail: Jail, mode: bool) -> None:
    """stat_cached agrees with stat and lstat, answers from the dcache only, refuses to
    leave the root's mount, and is off without openat2."""
    assert os.geteuid() == 0, "dropping caches and mounting need root (CI runs as root)"
    os.symlink("/inside.txt", jail.root / "link")
    os.symlink("/nowhere", jail.root / "dangling")
    found = [("/inside.txt", True), ("/inside.txt", False), ("/link", True), ("/link", False)]
    found += [("/", True), ("/", False), ("/dangling", False)]
    missing = [("/nowhere", True), ("/nowhere", False), ("/dangling", True)]
    for path, follow in found:
        expected = jail.vfs.stat(path) if follow else jail.vfs.lstat(path)
        got = jail.vfs.stat_cached(path, follow)
        if not mode:
            assert got is None, "the walk has no cached lookups"
            continue
        if jail.guarded and follow and path == "/link":
            assert got is None, "guarded, a link to follow is left to a worker"
            continue
        assert got is not None, f"{path} was just looked up, so it is cached"
        assert (got.st_ino, got.st_mode) == (expected.st_ino, expected.st_mode)
    for path, follow in missing:
        lookup = jail.vfs.stat if follow else jail.vfs.lstat
        assert _errno_of(partial(lookup, path)) == errno.ENOENT
        try:
            assert jail.vfs.stat_cached(path, follow) is None  # not kept: ask the disk
        except OSError as exc:
            assert mode and exc.errno == errno.ENOENT  # a kept negative dentry
    if not mode:
        return
    # A path whose dentries were dropped needs the disk: None, not a blocking lookup.
    (jail.root / "cold").mkdir()
    (jail.root / "cold" / "file").write_bytes(b"x")
    Path("/proc/sys/vm/drop_caches").write_text("2")
    assert jail.vfs.stat_cached("/cold/file") is None
    assert jail.vfs.stat("/cold/file").st_size == 1
    assert jail.vfs.stat_cached("/cold/file") is not None
    # Another mount below the root is never answered from the caches.
    mnt = jail.root / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], check=True)
    try:
        (mnt / "f").write_bytes(b"x")
        assert jail.vfs.stat("/mnt/f").st_size == 1
        assert jail.vfs.stat_cached("/mnt/f") is None
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_open_file_is_local_only_on_the_roots_own_filesystem(jail: Jail) -> None:
    """An open file answers fstat on the spot (``stat_cached``) only on the root's own
    local filesystem; one on another mount below the root goes to a worker."""
    assert os.geteuid() == 0, "mounting needs root (CI runs as root)"
    file = jail.vfs.open_file("/inside.txt", os.O_RDONLY)
    try:
        assert file.local
        cached = file.stat_cached()
        assert cached is not None and cached.st_ino == file.stat().st_ino
    finally:
        file.close()
    mnt = jail.root / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], check=True)
    try:
        for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT):
            (mnt / "f").write_bytes(b"x")
            other = jail.vfs.open_file("/mnt/f" if flags == os.O_RDONLY else "/mnt/new", flags)
            try:
                assert not other.local
                assert other.stat_cached() is None
            finally:
                other.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_jails_learn_the_filesystem_from_their_parent(
    jail: Jail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procfs is read once per served root, not once per jail (an HTTP request opens a
    jail every time); a jail on another filesystem finds out for itself."""
    from hoody_mount.core import resolution

    reads: list[int] = []
    real = resolution.fs_type
    monkeypatch.setattr(resolution, "fs_type", lambda fd: reads.append(fd) or real(fd))
    (jail.root / "sub").mkdir(exist_ok=True)
    (jail.root / "sub" / "f").write_bytes(b"x")
    for _ in range(5):
        sub = jail.vfs.sub("/sub")
        try:
            file = sub.open_file("/f", os.O_RDONLY)
            assert file.local
            file.close()
        finally:
            sub.close()
    assert len(reads) == 1, "the root's filesystem was read once"


def test_listing_close_twice_never_closes_another_fd(jail: Jail) -> None:
    """A second close of a listing is a no-op: its fd number may already belong to
    another open file."""
    listing = jail.vfs.listdir("/")
    listing.close()
    other = os.open(jail.root / "inside.txt", os.O_RDONLY)  # likely reuses the number
    try:
        listing.close()
        os.fstat(other)  # still open
    finally:
        os.close(other)
