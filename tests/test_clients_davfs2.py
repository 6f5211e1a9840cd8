"""davfs2 (``mount -t davfs``) end to end, as the README documents it.

The real ``mount.davfs`` mounts the server's ``/dav/`` over http on loopback, as root, with a
private configuration (``-o conf=``), secrets file and cache; nothing under /etc/davfs2 is
changed. Every outcome is checked through the mount and on the disk under ``server.root``;
the mount is always removed, and its daemon never outlives the test.

davfs2 before 1.7.2 (Debian 12 has 1.6.1) answers every READDIR bigger than its message
buffer (``buf_size``, 16 KiB by default) with EINVAL, and Linux 6.16 and later size READDIR
from the caller's buffer, up to 128 KiB (``ls`` asks for 32 KiB): listing a folder then fails
with "Invalid argument". ``buf_size 129`` (KiB) fits the largest READDIR.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    is_mounted,
    require,
    server_log,
    snapshot,
    wait_until,
)
from test_clients_mount import run

BUF_SIZE_KIB = 129  # a READDIR of 128 KiB and davfs2's reply header fit
SBIN = "/usr/sbin:/sbin"


def require_davfs2() -> None:
    """Fail when davfs2 is missing, or when this test cannot mount (it must run as root)."""
    path = f"{os.environ.get('PATH', '')}:{SBIN}"
    if shutil.which("mount.davfs", path=path) is None:
        require("mount.davfs")
    require("mount", "umount")
    if os.geteuid() != 0:
        pytest.fail("mounting davfs2 needs root (mount -t davfs)")


def quoted(value: str) -> str:
    """A value for davfs2's configuration or secrets file (its escaping rules)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'") + '"'


def daemons(mountpoint: Path) -> list[int]:
    """Process ids of the mount.davfs daemons serving ``mountpoint``."""
    target = os.path.realpath(mountpoint)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"mount.davfs") and os.fsencode(target) in argv:
                found.append(int(entry.name))
    return found


def succeeds(args: list[str], timeout: float) -> bool:
    """Whether a program exits 0 within ``timeout`` seconds (it is killed after that)."""
    try:
        return run(args, timeout=timeout, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def unmount_davfs(mountpoint: Path) -> None:
    """``umount`` (which waits for pending uploads); ``umount -l`` and a kill of the daemon
    if that fails; then nothing of the mount is left."""
    if (
        is_mounted(mountpoint)
        and not succeeds(["umount", str(mountpoint)], 120)
        and is_mounted(mountpoint)
    ):
        succeeds(["umount", "-l", str(mountpoint)], 30)
    if not wait_until(lambda: not daemons(mountpoint), 60, 0.2):
        for pid in daemons(mountpoint):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not daemons(mountpoint), 30, 0.2)
    assert not is_mounted(mountpoint), f"{mountpoint} is still mounted"
    assert not daemons(mountpoint), f"mount.davfs still runs for {mountpoint}"


@contextlib.contextmanager
def davfs2_mount(server: Server, user: str, password: str, base: Path) -> Iterator[Path]:
    """``mount -t davfs`` of ``/dav/`` as ``user``, with a private configuration, secrets
    file and cache; always unmounted (uploads finished) and cleaned up on the way out."""
    require_davfs2()
    url = f"{server.url}/dav/"
    mountpoint = base / "mnt"
    mountpoint.mkdir(parents=True)
    # The daemon runs as the davfs2 user: its cache must be reachable by it, and pytest's
    # temp folders are not (0700). A folder of its own in /tmp, removed afterwards.
    cache = Path(tempfile.mkdtemp(prefix="hoody-davfs2-cache-"))
    try:
        os.chown(cache, 0, grp.getgrnam("davfs2").gr_gid)
        os.chmod(cache, 0o770)
        secrets = base / "davfs2.secrets"  # davfs2 refuses it unless it is mode 600
        with open(os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(f"{quoted(url)} {quoted(user)} {quoted(password)}\n")
        conf = base / "davfs2.conf"
        conf.write_text(
            f"secrets {quoted(str(secrets))}\n"
            f"cache_dir {quoted(str(cache))}\n"
            "ask_auth 0\n"
            "use_locks 1\n"
            "delay_upload 0\n"
            f"buf_size {BUF_SIZE_KIB}\n"
            "file_refresh 0\n"  # every open revalidates the cached copy (conditional GET)
        )
        try:
            result = run(
                ["mount", "-t", "davfs", "-o", f"conf={conf}", url, str(mountpoint)],
                timeout=60,
                check=False,
            )
            assert result.returncode == 0 and is_mounted(mountpoint), (
                f"mount -t davfs exited {result.returncode}: {result.stderr}\n{server_log(server)}"
            )
            assert daemons(mountpoint), "no mount.davfs daemon found for the mount"
            yield mountpoint
        finally:
            unmount_davfs(mountpoint)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def listing(folder: Path) -> list[str]:
    """Names in a folder of the mount, without davfs2's own local ``lost+found``."""
    return sorted(name for name in os.listdir(folder) if name != "lost+found")


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its content; folders end in /."""
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if relative == "lost+found" or relative.startswith("lost+found/"):
            continue
        found[relative + ("/" if path.is_dir() else "")] = (
            b"" if path.is_dir() else path.read_bytes()
        )
    return found


def make_tree(into: Path) -> None:
    """A small local tree: nested folders, names with spaces and non-ASCII names."""
    tree: dict[str, bytes] = {}
    for index in range(36):
        folder = ("", "docs/", "docs/deep/er/", "with space/", "naïve café/")[index % 5]
        tree[f"{folder}file {index:02d}.txt"] = f"line {index}\n".encode() * (index * 37 + 1)
    tree["naïve café/日本語 notes.md"] = "# ünïcödé\n".encode() * 100
    tree["docs/big.bin"] = os.urandom(700_000)
    tree["docs/empty"] = b""
    for name, content in tree.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_bytes(content)


def test_davfs2_read_write_workflow(server: Server, tmp_path: Path) -> None:
    """davfs2 as root: write, copy a tree in, read back, rename, delete, mkdir/rmdir, df;
    after umount the disk holds exactly what was written.

    Every change is made both on the mount and on a local copy of the served folder, with
    the same commands; the mount, then the disk, must match that copy exactly."""
    require("sh", "cp", "mv", "rm", "mkdir", "rmdir", "df", "ls")
    local = tmp_path / "local"
    make_tree(local)
    mirror = tmp_path / "mirror"
    shutil.copytree(server.root, mirror)
    with davfs2_mount(server, "root", PASSWORD, tmp_path / "davfs2") as mnt:

        def both(script: str) -> None:
            """Run a shell script in the mount and in the mirror; both must succeed."""
            for folder in (mnt, mirror):
                run(["sh", "-c", script], cwd=folder, timeout=300)

        # The served root is listed (ls fails with EINVAL without buf_size: module doc).
        assert files_under(mnt) == files_under(mirror)
        assert run(["ls", "-la", str(mnt)]).returncode == 0

        # df shows the free space of the disk that holds the served folder (RFC 4331).
        disk, seen = os.statvfs(server.root), os.statvfs(mnt)
        disk_free, seen_free = disk.f_bavail * disk.f_frsize, seen.f_bavail * seen.f_frsize
        slack = max(disk.f_blocks * disk.f_frsize // 100, 256 << 20)  # others write meanwhile
        assert seen_free > 0 and abs(seen_free - disk_free) <= slack, (seen_free, disk_free)
        df = run(["df", "-B1", "--output=avail", str(mnt)], timeout=60)
        assert abs(int(df.stdout.split()[-1]) - disk_free) <= slack, (df.stdout, disk_free)

        # A file written with plain writes, read back.
        both("echo 'hello over davfs2' > hello.txt")
        written = time.time()
        assert (mnt / "hello.txt").read_text() == "hello over davfs2\n"

        # A tree copied in with cp -r, read back through the mount.
        both(f"cp -r '{local}' tree")
        assert files_under(mnt / "tree") == files_under(local)

        # Rename a file, a folder with spaces and one with a non-ASCII name; delete a file
        # and a folder tree; make and remove folders; overwrite and append to files.
        both("mv 'tree/docs/file 01.txt' tree/moved.txt")
        both("mv 'tree/with space' 'tree/renamed folder'")
        both("mv 'tree/naïve café' 'tree/ça va'")
        both("rm 'tree/file 00.txt' && rm -r tree/docs/deep")
        both("mkdir 'tree/new folder' tree/gone && rmdir tree/gone")
        both("echo rewritten > 'tree/file 05.txt'")
        # Opened again once its cached copy is old (file_refresh 0: a second on), a file is
        # revalidated with If-None-Match and If-Modified-Since: 304, then appended to.
        assert wait_until(lambda: time.time() > written + 2, 10)
        both("echo more >> hello.txt")
        assert files_under(mnt) == files_under(mirror)

    # umount waited for every upload: the disk holds exactly what was written, nothing else
    # (no upload temp file either).
    assert files_under(server.root) == files_under(mirror)


def test_davfs2_read_only_user(server: Server, tmp_path: Path) -> None:
    """davfs2 as ``reader`` (read-only, jailed to /share): reads work, every write fails
    with an error, and nothing changes on the disk."""
    share = server.root / "share"
    (share / "docs" / "sub").mkdir()
    (share / "docs" / "sub" / "deep.txt").write_text("deep\n")
    before = snapshot(share)
    root_before = sorted(os.listdir(server.root))
    with davfs2_mount(server, "reader", READER_PASSWORD, tmp_path / "davfs2") as mnt:
        assert listing(mnt) == ["docs"]
        assert listing(mnt / "docs") == ["readme.txt", "sub"]
        assert (mnt / "docs" / "readme.txt").read_text() == "shared text\n"
        assert (mnt / "docs" / "sub" / "deep.txt").read_text() == "deep\n"

        writes = [
            "echo new > new.txt",
            "echo changed > docs/readme.txt",
            "echo more >> docs/readme.txt",
            "cp docs/readme.txt docs/copy.txt",
            "mkdir newdir",
            "mkdir docs/newdir",
            "rm docs/readme.txt",
            "rm -r docs/sub",
            "rmdir docs/sub",
            "mv docs/readme.txt docs/renamed.txt",
            "mv docs/sub docs/sub2",
        ]
        succeeded = [
            w
            for w in writes
            if run(["sh", "-c", w], cwd=mnt, timeout=60, check=False).returncode == 0
        ]
        assert succeeded == [], f"writes that succeeded as the read-only user: {succeeded}"
        assert (mnt / "docs" / "readme.txt").read_text() == "shared text\n"
        assert listing(mnt / "docs") == ["readme.txt", "sub"]
    assert snapshot(share) == before
    assert sorted(os.listdir(server.root)) == root_before
