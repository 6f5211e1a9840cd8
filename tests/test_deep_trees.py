"""Trees deeper than any path can name: copied and removed whole on every front.

A chain of 3,000 folders ``d`` is 6,000 bytes of path below its top, beyond PATH_MAX
(4096): it is made here, read back and removed through held folder fds only. The core
copies it (``VFS.copy_tree``) and removes it (``VFS.remove_tree``) in one walk that
names each entry relative to its folder; a WebDAV COPY of a folder is that one call
(WsgiDAV drove it member by member, by full path, and failed with 400 here). These are
liveness tests: the timeouts are generous, and no test measures speed.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, Server, basic_request, require

from hoody_mount.core.names import NameMap
from hoody_mount.core.session import Session
from hoody_mount.core.users import User
from hoody_mount.core.vfs import VFS

DEPTH = 3_000
FILES = {level: 0o640 if level % 1000 else 0o600 for level in range(0, DEPTH, 250)}
LINK_AT, FIFO_AT, SHUT_AT = 1_200, 2_500, 2_999  # a link, a FIFO, a folder mode 0750
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
Shape = list[dict[str, tuple[str, int, int, bytes]]]


def make_chain(top: Path, depth: int = DEPTH, extras: bool = True) -> None:
    """``top``/d/d/…/d, ``depth`` folders, with a small file at every 250th level and
    (with ``extras``) a link, a FIFO and a folder of mode 0750 on the way."""
    top.mkdir()
    fd = os.open(top, _DIR)
    try:
        for level in range(depth):
            os.mkdir("d", dir_fd=fd)
            fd = _down(fd, "d")
            if level in FILES:
                made = os.open(f"f{level}", os.O_WRONLY | os.O_CREAT, FILES[level], dir_fd=fd)
                os.write(made, f"level {level}\n".encode())
                os.close(made)
                os.utime(f"f{level}", ns=(10**18, 10**18 + level), dir_fd=fd)
            if extras and level == LINK_AT:
                os.symlink("../../f1000", "up", dir_fd=fd)
            if extras and level == FIFO_AT:
                os.mkfifo("fifo", dir_fd=fd)
            if extras and level == SHUT_AT:
                os.chmod(fd, 0o750)
    finally:
        os.close(fd)


def _down(fd: int, name: str) -> int:
    below = os.open(name, _DIR, dir_fd=fd)
    os.close(fd)
    return below


def shape(top: Path) -> Shape:
    """Each level's entries: kind, permission bits, mtime and content (a link's target)."""
    levels: Shape = []
    fd = os.open(top, _DIR)
    try:
        while True:
            here: dict[str, tuple[str, int, int, bytes]] = {}
            below = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    bits = stat.S_IMODE(st.st_mode)
                    if stat.S_ISDIR(st.st_mode):
                        here[entry.name] = ("dir", bits, st.st_mtime_ns, b"")
                        below = entry.name
                    elif stat.S_ISLNK(st.st_mode):
                        here[entry.name] = (
                            "link",
                            0,
                            0,
                            os.fsencode(os.readlink(entry.name, dir_fd=fd)),
                        )
                    elif stat.S_ISREG(st.st_mode):
                        data = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                        try:
                            content = os.read(data, 1 << 16)
                        finally:
                            os.close(data)
                        here[entry.name] = ("file", bits, st.st_mtime_ns, content)
                    else:
                        here[entry.name] = ("other", bits, 0, b"")
            levels.append(here)
            if below is None:
                return levels
            fd = _down(fd, below)
    finally:
        os.close(fd)


def without_fifo(levels: Shape) -> Shape:
    return [{k: v for k, v in level.items() if v[0] != "other"} for level in levels]


def remove_deep(path: Path) -> None:
    """rm -rf, which (unlike shutil.rmtree, recursive in Python) goes to any depth."""
    subprocess.run(["rm", "-rf", str(path)], check=True, timeout=300)


@pytest.fixture
def deep(server: Server) -> Iterator[Server]:
    """The server, with ``/deep`` a chain of 3,000 folders; everything it served is
    removed afterwards whatever the test did (pytest's own clean-up would recurse)."""
    make_chain(server.root / "deep")
    yield server
    for path in server.root.iterdir():
        remove_deep(path)


def dav(server: Server, method: str, path: str, **headers: str) -> int:
    return basic_request(server.http_port, method, path, "root", PASSWORD, **headers)[0]


def api_copy(server: Server, src: str, dst: str) -> tuple[int, bytes]:
    body = json.dumps({"action": "copy", "to": dst}).encode()
    return basic_request(
        server.http_port, "POST", "/api/v1/files" + src, "root", PASSWORD, body,
        **{"Content-Type": "application/json"},
    )  # fmt: skip


# -- (a) copies ----------------------------------------------------------------------


def test_a_chain_deeper_than_path_max_is_copied_whole(deep: Server) -> None:
    """WebDAV COPY (Depth infinity) and the file API copy the 3,000 levels: files with
    their content, mode and times, the link as a link, the FIFO left out, the folders
    with their modes and times."""
    source = shape(deep.root / "deep")
    assert len(source) == DEPTH + 1
    assert source[FIFO_AT + 1]["fifo"][0] == "other"
    assert dav(deep, "COPY", "/dav/deep", Destination="/dav/dav-copy") == 201
    status, body = api_copy(deep, "/deep", "/api-copy")
    assert status == 200, body
    for name in ("dav-copy", "api-copy"):
        copied = shape(deep.root / name)
        assert copied == without_fifo(source), name
        assert copied[LINK_AT + 1]["up"] == ("link", 0, 0, b"../../f1000")
        assert copied[SHUT_AT]["d"][1] == 0o750
        assert copied[1000 + 1]["f1000"][:2] == ("file", 0o600)
    assert shape(deep.root / "deep") == source, "the source is left as it was"
    # A file deeper than PATH_MAX has no path for the upload journal: expected, and
    # not a warning per file copied (there was one for each).
    assert "cannot note the upload" not in deep.log.read_text(errors="replace")


# -- (b) removals --------------------------------------------------------------------


def test_a_chain_deeper_than_path_max_is_removed_whole(deep: Server) -> None:
    """WebDAV DELETE and the file API's recursive DELETE remove all 3,000 levels."""
    assert dav(deep, "DELETE", "/dav/deep") == 204
    assert not (deep.root / "deep").exists()
    make_chain(deep.root / "again")
    status, body = basic_request(
        deep.http_port, "DELETE", "/api/v1/files/again?recursive", "root", PASSWORD
    )
    assert status == 204, body
    assert not (deep.root / "again").exists()


def test_a_chain_deeper_than_path_max_is_moved_by_one_rename(deep: Server) -> None:
    """WebDAV MOVE of the 3,000 levels is one rename: WsgiDAV walked the whole tree by
    full paths first (9 s at 2,000 levels, 400 File name too long beyond PATH_MAX)."""
    source = shape(deep.root / "deep")
    assert dav(deep, "MOVE", "/dav/deep", Destination="/dav/moved") == 201
    assert not (deep.root / "deep").exists()
    assert shape(deep.root / "moved") == source


# -- (c) a real SFTP client ----------------------------------------------------------


def test_rclone_purges_a_deep_tree_over_sftp(server: Server) -> None:
    """rclone purge over SFTP removes a chain of 1,000 folders (deep, but within what a
    client can name) with its files, listing and removing it as clients do."""
    require("rclone")
    make_chain(server.root / "tree", 1_000, extras=False)
    try:
        result = subprocess.run(
            ["rclone", "--config", "/dev/null",
             "--sftp-host", "127.0.0.1", "--sftp-port", str(server.port), "--sftp-user", "root",
             "--sftp-key-file", str(server.key), "--sftp-shell-type", "none",
             "--low-level-retries", "1", "--retries", "1", "--contimeout", "20s",
             "--timeout", "120s", "purge", ":sftp:/tree"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert not (server.root / "tree").exists()
    finally:
        remove_deep(server.root / "tree")


# -- (d) the server's own files met deep in a tree ------------------------------------


def _at_level(top: Path, level: int) -> int:
    """An fd of the folder ``level`` levels below ``top`` in a chain."""
    fd = os.open(top, _DIR)
    for _ in range(level):
        fd = _down(fd, "d")
    return fd


def test_a_copy_that_meets_the_state_folder_is_refused_and_leaves_nothing(deep: Server) -> None:
    """A bind mount of the state folder (the same volume mounted twice) 1,800 levels
    down (as deep as mount(8) can name): WebDAV COPY and the file API refuse the copy
    (403) and leave no copy at all, so no state file is copied. A hard link of the host
    key is refused the same way."""
    require("mount", "umount")
    fd = _at_level(deep.root / "deep", 1_800)
    try:
        os.mkdir("alias", dir_fd=fd)
        alias = str(deep.root / "deep") + "/d" * 1_800 + "/alias"
        mounted = subprocess.run(
            ["mount", "--bind", str(deep.state), alias], capture_output=True, text=True
        )
        assert mounted.returncode == 0, mounted.stderr
        try:
            assert dav(deep, "COPY", "/dav/deep", Destination="/dav/stolen") == 403
            assert api_copy(deep, "/deep", "/stolen")[0] == 403
            assert not (deep.root / "stolen").exists()
        finally:
            subprocess.run(["umount", "-l", alias], capture_output=True, timeout=30)
        os.rmdir("alias", dir_fd=fd)
        key = next(p for p in deep.state.iterdir() if p.name.startswith("ssh_host_"))
        os.link(key, "key-copy", dst_dir_fd=fd)
        assert dav(deep, "COPY", "/dav/deep", Destination="/dav/stolen") == 403
        assert api_copy(deep, "/deep", "/stolen")[0] == 403
        assert not (deep.root / "stolen").exists()
    finally:
        os.close(fd)
    assert "refused user=root" in deep.log.read_text(), "a refusal is a warning in the log"


# -- (e) never into itself -----------------------------------------------------------


def test_a_folder_is_never_copied_into_itself(deep: Server) -> None:
    """Into itself by path (WsgiDAV and the API refuse it) or through a link that leads
    into the tree (the core refuses it by identity): 400/403, and nothing is made."""
    (deep.root / "into").symlink_to("deep/d/d")
    for destination in ("/deep/d/inside", "/into/inside"):
        status = dav(deep, "COPY", "/dav/deep", Destination="/dav" + destination)
        assert status in (400, 403), (destination, status)
        assert api_copy(deep, "/deep", destination)[0] == 400, destination
        assert not (deep.root / "deep" / "d" / "inside").exists()
        assert not (deep.root / "deep" / "d" / "d" / "inside").exists()


def test_a_bind_mount_of_a_folder_above_never_copies_without_end(tmp_path: Path) -> None:
    """A tree that holds a bind mount of a folder above (the same folder twice on one
    way down: a cycle, as rm and find call it) is refused with ELOOP, and the copy
    removes what it made (a path-bound walk stopped only at PATH_MAX)."""
    require("mount", "umount")
    top = tmp_path / "top"
    (top / "a" / "loop").mkdir(parents=True)
    (top / "a" / "f.txt").write_text("f")
    mounted = subprocess.run(["mount", "--bind", str(top), str(top / "a" / "loop")])
    assert mounted.returncode == 0
    vfs = VFS.open_root(str(tmp_path))
    try:
        with pytest.raises(OSError) as info:
            vfs.copy_tree("/top", "/copy")
        assert info.value.errno == errno.ELOOP
        assert not (tmp_path / "copy").exists()
    finally:
        vfs.close()
        subprocess.run(["umount", "-l", str(top / "a" / "loop")], capture_output=True)


# -- what else a copy keeps ------------------------------------------------------------


def test_a_deep_copy_holds_a_bounded_number_of_fds(tmp_path: Path) -> None:
    """The walk holds a few fds whatever the depth: a copy of the 3,000 levels runs
    with only 12 descriptors to spare (one per level would need 6,000)."""
    make_chain(tmp_path / "deep")
    program = textwrap.dedent(
        f"""
        import os, resource
        from hoody_mount.core.vfs import VFS
        vfs = VFS.open_root({str(tmp_path)!r})
        spare = 12 + max(int(n) for n in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (spare, spare))
        vfs.copy_tree("/deep", "/copy")
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert shape(tmp_path / "copy") == without_fifo(shape(tmp_path / "deep"))
    finally:
        remove_deep(tmp_path / "deep")
        remove_deep(tmp_path / "copy")


def test_a_jailed_users_copy_never_carries_setuid_bits(tmp_path: Path) -> None:
    """A jailed user may not make setuid or setgid files, so a copy (which the server,
    running as root, owns) drops those bits; the administrator's copy keeps them."""
    (tmp_path / "jail" / "tree").mkdir(parents=True)
    for path in (tmp_path / "jail" / "tool", tmp_path / "jail" / "tree" / "tool"):
        path.write_bytes(b"#!/bin/sh\n")
        path.chmod(0o6755)
    root = VFS.open_root(str(tmp_path))
    try:
        jailed = Session(User(name="u", root="/jail"), root.sub("/jail"), NameMap(root), "test")
        admin = Session(User(name="a"), root.sub("/"), NameMap(root), "test")
        jailed.copy_file("/tool", "/tool-copy")
        jailed.copy_tree("/tree", "/tree-copy")
        admin.copy_tree("/jail/tree", "/jail/tree-admin")
        for name in ("tool-copy", "tree-copy/tool"):
            assert stat.S_IMODE((tmp_path / "jail" / name).stat().st_mode) == 0o755, name
        assert stat.S_IMODE((tmp_path / "jail" / "tree-admin" / "tool").stat().st_mode) == 0o6755
    finally:
        root.close()


def test_webdav_copy_keeps_dead_properties_and_depth_0_copies_the_folder_alone(
    server: Server,
) -> None:
    """The dead properties of the members are copied with the tree (one pass over the
    store); a Depth 0 COPY copies the folder without its members (WsgiDAV copied them
    all); a COPY over a folder that holds the source is refused (WsgiDAV removed the
    source with the destination)."""
    (server.root / "p" / "sub").mkdir(parents=True)
    (server.root / "p" / "sub" / "f.txt").write_text("f")
    prop = (
        b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
        b"<D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>"
    )
    for path in ("/dav/p/sub/f.txt", "/dav/p/sub/"):
        status, _ = basic_request(
            server.http_port, "PROPPATCH", path, "root", PASSWORD, prop,
            **{"Content-Type": "text/xml"},
        )  # fmt: skip
        assert status == 207
    assert dav(server, "COPY", "/dav/p", Destination="/dav/q") == 201
    ask = (
        b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z">'
        b"<D:prop><Z:colour/></D:prop></D:propfind>"
    )
    for path in ("/dav/q/sub/f.txt", "/dav/q/sub/"):
        status, body = basic_request(
            server.http_port, "PROPFIND", path, "root", PASSWORD, ask, Depth="0"
        )
        assert status == 207 and b"blue" in body, (path, body)
    assert dav(server, "COPY", "/dav/p", Destination="/dav/alone", Depth="0") == 201
    assert os.listdir(server.root / "alone") == []
    assert dav(server, "COPY", "/dav/p/sub", Destination="/dav/p", Overwrite="T") == 403
    assert (server.root / "p" / "sub" / "f.txt").read_text() == "f"
