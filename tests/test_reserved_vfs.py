"""The VFS keeps the server's own files out of reach, by identity, in both resolution modes.

Layout: ``root/srv/state`` is the state folder (a reserved folder inside the served
root), ``root/srv/logs/server.log`` the server's log file. Every verb of the jail tests
is tried on the state folder, directly and through links, and must fail with EACCES
and leave it as it was.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_vfs_jail import DOOR_OPS, INSIDE, _fill_decoy, _snapshot

from hoody_mount.core import syscalls
from hoody_mount.core.open_files import Times
from hoody_mount.core.reserved import Reserved
from hoody_mount.core.vfs import VFS

# Ways to name the state folder from inside the root.
DOORS = ["/srv/state", "/abs", "/srv/rel", "/srvlink/state", "/srv/logs/../state"]


@dataclass
class Guarded:
    """A VFS over ``root`` with ``root/srv/state`` and a log file reserved."""

    root: Path
    state: Path
    log: Path
    vfs: VFS
    reserved: Reserved


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def guarded(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Guarded]:
    if request.param:
        assert syscalls.openat2_works(), "this kernel lacks openat2"
    root = tmp_path / "root"
    state = root / "srv" / "state"
    _fill_decoy(state, b"state")
    (root / "inside.txt").write_bytes(INSIDE)
    (root / "srv" / "logs").mkdir()
    log = root / "srv" / "logs" / "server.log"
    log.write_bytes(b"log line\n")
    (root / "abs").symlink_to("/srv/state")
    (root / "srv" / "rel").symlink_to("state")
    (root / "srvlink").symlink_to("srv")
    reserved = Reserved([state], [log])
    vfs = VFS.open_root(str(root), use_openat2=request.param, reserved=reserved)
    try:
        yield Guarded(root, state, log, vfs, reserved)
    finally:
        vfs.close()
        reserved.close()


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("op_name", list(DOOR_OPS))
def test_every_verb_is_refused_on_the_state_folder(
    guarded: Guarded, door: str, op_name: str
) -> None:
    before = _snapshot(guarded.state)
    op, _check = DOOR_OPS[op_name]
    with pytest.raises(OSError) as info:
        op(guarded.vfs, door)
    assert info.value.errno == errno.EACCES, info.value
    assert _snapshot(guarded.state) == before
    assert (guarded.root / "inside.txt").read_bytes() == INSIDE


def test_listings_leave_the_state_folder_out(guarded: Guarded) -> None:
    listing = guarded.vfs.listdir("/srv")
    try:
        names = sorted(entry.name for entry in listing.read(100))
    finally:
        listing.close()
    assert names == ["logs", "rel"]


def test_the_state_folder_itself_cannot_be_renamed_removed_or_replaced(guarded: Guarded) -> None:
    vfs = guarded.vfs
    vfs.mkdir("/empty")
    attempts = [
        lambda: vfs.rename("/srv/state", "/moved", replace=False),
        lambda: vfs.rename("/empty", "/srv/state", replace=True),
        lambda: vfs.rmdir("/srv/state"),
        lambda: vfs.remove_tree("/srv/state"),
        lambda: vfs.remove_tree("/srv"),  # it holds the state folder
        lambda: vfs.rename("/srv", "/elsewhere", replace=False),
        lambda: vfs.copy_tree("/srv/state", "/copy"),
        lambda: vfs.sub("/abs"),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError):
            attempt()
    assert guarded.state.is_dir() and (guarded.state / "secret.txt").exists()
    assert not (guarded.root / "copy").exists()
    # A copy of the folder that holds it copies everything else.
    vfs.copy_tree("/srv", "/srv-copy")
    assert sorted(os.listdir(guarded.root / "srv-copy")) == ["logs", "rel"]


def test_the_log_file_reads_but_never_changes(guarded: Guarded) -> None:
    vfs, log = guarded.vfs, "/srv/logs/server.log"
    assert vfs.read_bytes(log) == b"log line\n"
    vfs.open_file("/inside-copy", os.O_WRONLY | os.O_CREAT).close()
    attempts = [
        lambda: vfs.open_file(log, os.O_WRONLY),
        lambda: vfs.open_file(log, os.O_RDWR),
        lambda: vfs.open_file(log, os.O_WRONLY | os.O_APPEND),
        lambda: vfs.open_file(log, os.O_WRONLY | os.O_TRUNC),
        lambda: vfs.open_file(log, os.O_WRONLY | os.O_CREAT),
        lambda: vfs.unlink(log),
        lambda: vfs.rename(log, "/srv/logs/old.log", replace=False),
        lambda: vfs.rename("/inside-copy", log, replace=True),
        lambda: vfs.link(log, "/hard.log"),
        lambda: vfs.set_attrs(log, mode=0o666),
        lambda: vfs.set_attrs(log, size=0),
        lambda: vfs.set_attrs(log, follow=False, times=Times(0, 0)),
        lambda: vfs.atomic_file(log),
        lambda: vfs.copy_file("/inside.txt", log),
        lambda: vfs.remove_tree("/srv/logs"),
        lambda: vfs.rename("/srv/logs", "/logs2", replace=False),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError):
            attempt()
    opened = vfs.open_file(log, os.O_RDONLY)
    try:
        with pytest.raises(PermissionError):
            opened.set_attrs(mode=0o666)
    finally:
        opened.close()
    assert guarded.log.read_bytes() == b"log line\n"
    assert sorted(os.listdir(guarded.log.parent)) == ["server.log"]


def test_a_root_or_jail_inside_the_state_folder_is_refused(guarded: Guarded) -> None:
    with pytest.raises(PermissionError):
        VFS.open_root(str(guarded.state / "folder"), reserved=guarded.reserved)
    with pytest.raises(PermissionError):
        guarded.vfs.sub("/srv/state/folder")


def _names_at_root(vfs: VFS) -> list[str]:
    """The names a listing of the root shows (its first 100)."""
    listing = vfs.listdir("/")
    try:
        return [entry.name for entry in listing.read(100)]
    finally:
        listing.close()


def test_a_bind_mount_of_the_state_folder_is_refused(guarded: Guarded) -> None:
    alias = guarded.root / "alias"
    alias.mkdir()
    result = subprocess.run(
        ["mount", "--bind", str(guarded.state), str(alias)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    try:
        for path in ("/alias", "/alias/secret.txt", "/alias/folder/inner.txt"):
            with pytest.raises(PermissionError):
                guarded.vfs.stat(path)
        with pytest.raises(PermissionError):
            guarded.vfs.read_bytes("/alias/folder/inner.txt")
        assert "alias" not in _names_at_root(guarded.vfs)
    finally:
        subprocess.run(["umount", "-l", str(alias)], capture_output=True)


def test_a_tree_removal_stops_at_the_state_folder_behind_a_bind_mount(guarded: Guarded) -> None:
    """Removing a folder that holds a bind mount of the state folder's parent (the same
    volume mounted twice) or of the log folder removes neither (rm -rf would)."""
    for source, name in ((guarded.root / "srv", "srv-again"), (guarded.log.parent, "logs-again")):
        alias = guarded.root / "trap" / name
        alias.mkdir(parents=True)
        (guarded.root / "trap" / "a-file").write_text("x")
        result = subprocess.run(["mount", "--bind", str(source), str(alias)], capture_output=True)
        assert result.returncode == 0, result.stderr
        try:
            before = _snapshot(guarded.state)
            with pytest.raises(PermissionError):
                guarded.vfs.remove_tree("/trap")
            assert _snapshot(guarded.state) == before
            assert guarded.log.read_bytes() == b"log line\n"
        finally:
            subprocess.run(["umount", "-l", str(alias)], capture_output=True)


def test_a_state_file_bind_mounted_elsewhere_is_refused(guarded: Guarded) -> None:
    (guarded.state / "tokens.json").write_text("[]")
    target = guarded.root / "tok"
    target.write_text("")
    result = subprocess.run(
        ["mount", "--bind", str(guarded.state / "tokens.json"), str(target)], capture_output=True
    )
    assert result.returncode == 0, result.stderr
    try:
        vfs = guarded.vfs
        for attempt in (
            lambda: vfs.read_bytes("/tok"),
            lambda: vfs.stat("/tok"),
            lambda: vfs.lstat("/tok"),
            lambda: vfs.open_file("/tok", os.O_WRONLY | os.O_TRUNC),
        ):
            with pytest.raises(PermissionError):
                attempt()
        assert "tok" not in _names_at_root(vfs)
        assert (guarded.state / "tokens.json").read_text() == "[]"
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_jail_is_its_folder_never_where_a_link_leads(guarded: Guarded) -> None:
    """A user who may write above another's jail swaps it for a link: the jail is
    refused (ELOOP), never moved to where the link leads."""
    (guarded.root / "shares" / "real").mkdir(parents=True)
    (guarded.root / "shares" / "app").symlink_to("/srv/logs")
    with pytest.raises(OSError) as info:
        guarded.vfs.sub("/shares/app", follow_links=False)
    assert info.value.errno == errno.ELOOP
    (guarded.root / "linked").symlink_to("shares")
    with pytest.raises(OSError):
        guarded.vfs.sub("/linked/real", follow_links=False)
    guarded.vfs.sub("/shares/real", follow_links=False).close()


def test_removing_a_deep_chain_takes_linear_work(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain of 3,000 folders is removed with a few opens a level (it was quadratic:
    every step walked down again from the top)."""
    depth = 3000
    folder = os.open(guarded.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.mkdir("chain", dir_fd=folder)
        current = os.open("chain", os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
        for _ in range(depth):
            os.mkdir("d", dir_fd=current)
            deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=current)
            os.close(current)
            current = deeper
        os.close(current)
    finally:
        os.close(folder)
    opens = 0
    real_open = os.open

    def counting_open(*args: object, **kwargs: object) -> int:
        nonlocal opens
        opens += 1
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counting_open)
    guarded.vfs.remove_tree("/chain")
    monkeypatch.undo()
    assert not (guarded.root / "chain").exists()
    assert opens < 3 * depth, f"{opens} opens for {depth} levels"


def test_files_coming_and_going_in_the_state_folder_never_hide_other_files(
    guarded: Guarded,
) -> None:
    """The DAV stores replace their files all the time; a stat elsewhere in the tree,
    checked against the state folder's files, gave ENOENT when one of them went between
    the folder's listing and its stat (another user's files "vanished" over every front
    while WebDAV properties were written)."""
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for k in range(20):
                (guarded.state / f"store-{k}.tmp").write_bytes(b"x")
            for k in range(20):
                os.replace(guarded.state / f"store-{k}.tmp", guarded.state / "store.dir")

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(3000):
            assert guarded.vfs.lstat("/inside.txt").st_size == len(INSIDE)
    finally:
        stop.set()
        thread.join(10)


def test_a_bind_mount_of_a_folder_inside_the_state_folder_is_refused(guarded: Guarded) -> None:
    """A bind mount of a folder below the state folder (its uploads' journal, say) leads
    up through the jail, never through the state folder: it is known by its identity,
    and the files in it are state files, through the mount or a hard link."""
    alias = guarded.root / "alias"
    alias.mkdir()
    result = subprocess.run(
        ["mount", "--bind", str(guarded.state / "folder"), str(alias)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    try:
        before = _snapshot(guarded.state)
        vfs = guarded.vfs
        for attempt in (
            lambda: vfs.stat("/alias"),
            lambda: vfs.stat("/alias/inner.txt"),
            lambda: vfs.read_bytes("/alias/inner.txt"),
            lambda: vfs.open_file("/alias/inner.txt", os.O_WRONLY | os.O_TRUNC),
            lambda: vfs.open_file("/alias/new.txt", os.O_WRONLY | os.O_CREAT),
            lambda: vfs.sub("/alias"),
        ):
            with pytest.raises(PermissionError):
                attempt()
        assert "alias" not in _names_at_root(vfs)
        assert _snapshot(guarded.state) == before
    finally:
        subprocess.run(["umount", "-l", str(alias)], capture_output=True)
