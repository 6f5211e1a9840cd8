"""The per-user session: permission checks and policies that hold for every protocol."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoody_mount.core.names import NameMap
from hoody_mount.core.open_files import Times
from hoody_mount.core.session import Session
from hoody_mount.core.users import User
from hoody_mount.core.vfs import VFS


@pytest.fixture
def root(tmp_path: Path) -> Iterator[VFS]:
    """A served root with a jail folder holding one file."""
    (tmp_path / "jail" / "sub").mkdir(parents=True)
    (tmp_path / "jail" / "f.txt").write_text("data")
    vfs = VFS.open_root(str(tmp_path))
    yield vfs
    vfs.close()


def _session(served: VFS, **fields: object) -> Session:
    user = User(name="u", **fields)  # type: ignore[arg-type]
    jail = served.sub(user.root)
    return Session(user, jail, NameMap(served), "test")


def test_relative_paths_start_at_home(root: VFS) -> None:
    """Relative paths are taken from the start folder; `..` stops at the jail's root."""
    session = _session(root, root="/jail", home="/sub")
    assert session.path("x") == "/sub/x"
    assert session.path("../../../f.txt") == "/f.txt"
    assert session.stat("../f.txt").st_size == 4


def test_read_only_refuses_every_write(root: VFS, tmp_path: Path) -> None:
    """Each write of a read-only user raises EACCES and changes nothing."""
    session = _session(root, root="/jail", access="ro")
    file = session.open("/f.txt", os.O_RDONLY)
    attempts = [
        lambda: session.open("/f.txt", os.O_WRONLY),
        lambda: session.open("/f.txt", os.O_RDONLY | os.O_CREAT),
        lambda: session.open("/f.txt", os.O_RDONLY | os.O_TRUNC),
        lambda: session.open("/f.txt", os.O_RDONLY | os.O_APPEND),
        lambda: session.write(file, 0, b"x"),
        lambda: session.write_many(file, 0, [memoryview(b"x")]),
        lambda: session.fsync(file),
        lambda: session.fset_attrs(file, size=0),
        lambda: session.set_attrs("/f.txt", mode=0o600),
        lambda: session.set_attrs("/f.txt", times=Times(0, 0)),
        lambda: session.mkdir("/new"),
        lambda: session.rmdir("/sub"),
        lambda: session.remove("/f.txt"),
        lambda: session.rename("/f.txt", "/g.txt", True),
        lambda: session.link("/f.txt", "/g.txt"),
        lambda: session.symlink("f.txt", "/g.txt"),
        lambda: session.copy_data(file, 0, 0, file, 0),
    ]
    before = sorted(p.name for p in (tmp_path / "jail").iterdir())
    for attempt in attempts:
        with pytest.raises(PermissionError) as info:
            attempt()
        assert info.value.errno == errno.EACCES
    file.close()
    assert sorted(p.name for p in (tmp_path / "jail").iterdir()) == before
    assert (tmp_path / "jail" / "f.txt").read_text() == "data"
    assert session.capacity().flag & 1


def test_write_many_writes_the_pieces_one_after_the_other(root: VFS, tmp_path: Path) -> None:
    """Pieces of any size (empty ones too) land back to back from the offset, over and
    past the old end; the caller's list is left as it was."""
    session = _session(root, root="/jail")
    file = session.open("/f.txt", os.O_WRONLY)
    pieces = [memoryview(b"AB"), memoryview(b""), memoryview(b"x" * 70_000), memoryview(b"Z")]
    session.write_many(file, 3, pieces)
    file.close()
    assert [bytes(piece) for piece in pieces] == [b"AB", b"", b"x" * 70_000, b"Z"]
    assert (tmp_path / "jail" / "f.txt").read_bytes() == b"datAB" + b"x" * 70_000 + b"Z"
    file = session.open("/f.txt", os.O_WRONLY)
    session.write_many(file, 0, [memoryview(b""), memoryview(b"")])  # nothing to write
    file.close()
    assert (tmp_path / "jail" / "f.txt").stat().st_size == 5 + 70_000 + 1


def test_write_many_goes_on_after_short_writes(
    root: VFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel that writes 3 bytes per call (a full disk's last bytes, a signal) still
    gets every byte, in place."""
    calls: list[int] = []

    def short_pwritev(fd: int, buffers: list[memoryview], offset: int) -> int:
        calls.append(offset)
        return os.pwrite(fd, b"".join(bytes(buffer) for buffer in buffers)[:3], offset)

    monkeypatch.setattr(os, "pwritev", short_pwritev)
    session = _session(root, root="/jail")
    file = session.open("/f.txt", os.O_WRONLY | os.O_TRUNC)
    session.write_many(file, 0, [memoryview(b"abcd"), memoryview(b"ef"), memoryview(b"ghijk")])
    file.close()
    assert (tmp_path / "jail" / "f.txt").read_bytes() == b"abcdefghijk"
    assert calls == [0, 3, 6, 9]


def test_jailed_user_cannot_plant_privileged_files(root: VFS, tmp_path: Path) -> None:
    """No setuid/setgid bits and no owner changes for a jailed user; new modes are masked."""
    session = _session(root, root="/jail")
    with pytest.raises(PermissionError):
        session.set_attrs("/f.txt", mode=0o4755)
    with pytest.raises(PermissionError):
        session.set_attrs("/f.txt", owner=(1234, 1234))
    file = session.open("/new", os.O_WRONLY | os.O_CREAT, 0o6755)
    with pytest.raises(PermissionError):
        session.fset_attrs(file, mode=0o2755)
    file.close()
    assert not stat.S_IMODE((tmp_path / "jail" / "new").stat().st_mode) & 0o6000
    current = (tmp_path / "jail" / "f.txt").stat()
    session.set_attrs("/f.txt", mode=0o640, owner=(current.st_uid, -1))
    assert stat.S_IMODE((tmp_path / "jail" / "f.txt").stat().st_mode) == 0o640


def test_a_jailed_users_change_strips_setuid_and_setgid(root: VFS, tmp_path: Path) -> None:
    """A setuid or setgid file an administrator put in a share loses those bits when a
    jailed user changes it, by upload, open for writing or truncation, as the kernel
    does for an unprivileged writer: the server runs as root, so the new content would
    otherwise run with root's rights. A replaced file keeps its owner; the bits a write
    leaves are kept (setgid without group execute marks locking, not a privilege)."""
    jail = tmp_path / "jail"
    for name in ("up", "opened", "cut", "kept"):
        (jail / name).write_bytes(b"#!/bin/sh\n")
        os.chown(jail / name, 1234, 4321)
        (jail / name).chmod(0o6755)
    (jail / "locking").write_bytes(b"x")
    (jail / "locking").chmod(0o2644)
    session = _session(root, root="/jail")
    upload = session.upload("/up")
    upload.write(b"#!/bin/sh\nid\n")
    upload.commit()
    session.open("/opened", os.O_WRONLY).close()
    session.set_attrs("/cut", size=0)
    upload = session.upload("/locking")
    upload.write(b"y")
    upload.commit()
    for name in ("up", "opened", "cut"):
        st = (jail / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o755, name
        assert (st.st_uid, st.st_gid) == (1234, 4321), name
    assert (jail / "up").read_bytes() == b"#!/bin/sh\nid\n"
    assert stat.S_IMODE((jail / "locking").stat().st_mode) == 0o2644
    session.open("/kept", os.O_RDONLY).close()
    assert stat.S_IMODE((jail / "kept").stat().st_mode) == 0o6755
    admin = _session(root)
    upload = admin.upload("/jail/kept")
    upload.write(b"#!/bin/sh\n")
    upload.commit()
    st = (jail / "kept").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o6755, 1234, 4321)


def test_admin_may_set_any_mode(root: VFS, tmp_path: Path) -> None:
    """The unjailed administrator keeps full control of mode bits."""
    session = _session(root)
    session.set_attrs("/jail/f.txt", mode=0o4755)
    assert stat.S_IMODE((tmp_path / "jail" / "f.txt").stat().st_mode) == 0o4755


def test_copy_data_refuses_the_same_file(root: VFS, tmp_path: Path) -> None:
    """copy-data from a file onto itself (even through two handles) is refused."""
    session = _session(root, root="/jail")
    a = session.open("/f.txt", os.O_RDONLY)
    b = session.open("/f.txt", os.O_WRONLY)
    with pytest.raises(OSError) as info:
        session.copy_data(a, 0, 0, b, 4)
    assert info.value.errno == errno.EINVAL
    a.close()
    b.close()
    assert (tmp_path / "jail" / "f.txt").read_text() == "data"


def test_atomic_file_keeps_old_content_until_commit(root: VFS, tmp_path: Path) -> None:
    """An aborted atomic write leaves the old file and no temp file; commit replaces."""
    target = tmp_path / "jail" / "f.txt"
    target.chmod(0o640)
    upload = root.sub("/jail").atomic_file("/f.txt")
    upload.write(b"new content")
    assert target.read_text() == "data"
    upload.abort()
    assert target.read_text() == "data"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt", "sub"]
    upload = root.sub("/jail").atomic_file("/f.txt")
    upload.write(b"new content")
    upload.commit()
    assert target.read_text() == "new content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt", "sub"]


def test_remove_tree_is_deep_and_never_follows_links(root: VFS, tmp_path: Path) -> None:
    """remove_tree deletes 1500 levels without recursion and removes links, not targets."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    session = _session(root, root="/jail")
    path = "/deep"
    for _ in range(1500):
        session.mkdir(path)
        path += "/d"
    (tmp_path / "jail" / "deep" / "link").symlink_to(outside)
    (tmp_path / "jail" / "deep" / "file").write_text("x")
    session.remove_tree("/deep")
    assert not (tmp_path / "jail" / "deep").exists()
    assert (outside / "keep.txt").read_text() == "keep"


def test_copy_file_keeps_mode_and_times(root: VFS, tmp_path: Path) -> None:
    """copy_file copies content, mode and mtime, through the jail."""
    source = tmp_path / "jail" / "f.txt"
    source.chmod(0o604)
    os.utime(source, (1_000_000, 2_000_000))
    session = _session(root, root="/jail")
    session.copy_file("/f.txt", "/sub/copy.txt")
    copy = tmp_path / "jail" / "sub" / "copy.txt"
    assert copy.read_text() == "data"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o604
    assert copy.stat().st_mtime == 2_000_000


def _sparse(path: Path, pieces: dict[int, bytes], size: int) -> bytes:
    """A sparse file with ``pieces`` at their offsets, ``size`` long; its content."""
    with open(path, "wb") as handle:
        for offset, data in pieces.items():
            handle.seek(offset)
            handle.write(data)
        handle.truncate(size)
    return path.read_bytes()


def test_copies_keep_holes_and_stop_when_the_asker_goes(root: VFS, tmp_path: Path) -> None:
    """Copying a 1 TiB sparse file wrote 1 TiB of zeros (a disk filled without sending
    a byte): a copy keeps the holes, a trailing one too, and stops (ECANCELED, nothing
    left behind) once its session's client has gone."""
    jail = tmp_path / "jail"
    content = _sparse(jail / "sparse.bin", {0: b"head", 8 << 20: b"mid" * 1000}, 64 << 20)
    session = _session(root, root="/jail")
    session.copy_file("/sparse.bin", "/copy.bin")
    copy = jail / "copy.bin"
    assert copy.read_bytes() == content
    assert copy.stat().st_blocks * 512 < 1 << 20  # (64 MiB long, a few KiB on the disk)
    with open(jail / "huge.bin", "wb") as handle:
        handle.seek(1 << 40)
        handle.write(b"end")
    session.copy_tree("/huge.bin", "/huge-copy.bin")
    assert (jail / "huge-copy.bin").stat().st_size == (1 << 40) + 3
    assert (jail / "huge-copy.bin").stat().st_blocks * 512 < 1 << 20
    asked = [0]

    def gone() -> bool:
        asked[0] += 1
        return asked[0] > 2

    session.gone = gone
    (jail / "tree").mkdir()
    (jail / "tree" / "data.bin").write_bytes(os.urandom(4 << 20))
    with pytest.raises(OSError) as stopped:
        session.copy_tree("/tree", "/tree-copy")
    assert stopped.value.errno == errno.ECANCELED
    assert not (jail / "tree-copy").exists()


def test_copy_data_keeps_holes_past_the_targets_end(root: VFS, tmp_path: Path) -> None:
    """SFTP copy-data (``cp`` over sshfs) into a new file keeps the source's holes; over
    existing bytes a hole is written as the zeros it reads as."""
    jail = tmp_path / "jail"
    content = _sparse(jail / "sparse.bin", {4 << 20: b"data"}, 32 << 20)
    (jail / "old.bin").write_bytes(b"\xff" * (8 << 20))
    session = _session(root, root="/jail")
    src = session.open("/sparse.bin", os.O_RDONLY)
    for name in ("new.bin", "old.bin"):
        dst = session.open(f"/{name}", os.O_WRONLY | os.O_CREAT)
        assert session.copy_data(src, 0, 0, dst, 0) == 32 << 20
        dst.close()
    src.close()
    assert (jail / "new.bin").read_bytes() == content
    assert (jail / "new.bin").stat().st_blocks * 512 < 1 << 20
    assert (jail / "old.bin").read_bytes() == content
