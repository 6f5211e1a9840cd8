"""Mounting clients end to end: sshfs (FUSE) as a read-write and a read-only user, and rclone.

These drive the real programs people point at hoody-mount, over a real server, and check every
outcome both through the client and on the disk under ``server.root``.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import (
    MAX_FILES,
    MIN_FILES,
    Server,
    extract,
    is_mounted,
    require,
    server_log,
    snapshot,
    unmount,
)

GIT_IDENTITY = ["-c", "user.name=hoody test", "-c", "user.email=test@hoody.invalid"]


def run(
    args: list[str], *, cwd: Path | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a program with a timeout; when ``check``, fail the test with its output on error."""
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check:
        assert result.returncode == 0, (
            f"{args} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def shell(
    script: str, *, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a ``sh -c`` one-liner without checking its status."""
    return run(["sh", "-c", script], cwd=cwd, timeout=timeout, check=False)


# --------------------------------------------------------------------------- source tree


def count_files(folder: Path) -> int:
    """Regular files under ``folder``."""
    return sum(1 for p in folder.rglob("*") if p.is_file())


def assert_same_tree(left: Path, right: Path) -> None:
    """``diff -r`` finds no difference between the two folders."""
    result = run(["diff", "-r", str(left), str(right)], check=False, timeout=180)
    assert result.returncode == 0, (
        f"diff -r {left} {right}:\n{result.stdout[-3000:]}{result.stderr}"
    )


# --------------------------------------------------------------------------- sshfs


@contextmanager
def sshfs_mount(server: Server, user: str, mountpoint: Path, log: Path) -> Iterator[Path]:
    """Mount ``user@127.0.0.1:/`` with a child ``sshfs -f``; always unmounted on the way out."""
    require("sshfs", "fusermount3")
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = ",".join([
        f"IdentityFile={server.key}",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "IdentitiesOnly=yes",
        "BatchMode=yes",
        "LogLevel=ERROR",
        "reconnect",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
    ])  # fmt: skip
    process: subprocess.Popen[str] | None = None
    try:
        with open(log, "w") as out:
            process = subprocess.Popen(
                ["sshfs", "-f", "-p", str(server.port), "-o", options,
                 f"{user}@127.0.0.1:/", str(mountpoint)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint):
            if process.poll() is not None:
                pytest.fail(
                    f"sshfs exited {process.returncode}: {log.read_text()}\n{server_log(server)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"sshfs did not mount in 30 s: {log.read_text()}\n{server_log(server)}")
            time.sleep(0.1)
        yield mountpoint
    finally:
        unmount(mountpoint, process)


def test_sshfs_read_write_workflow(server: Server, source_tar: Path, tmp_path: Path) -> None:
    """sshfs as root: tar, diff, git, cp -a, mv (save-by-rename too), rm -rf, df, ln -s, chmod."""
    require("tar", "diff", "git", "df", "stat")
    local = extract(source_tar, tmp_path / "local")
    total = count_files(local)
    assert MIN_FILES <= total <= MAX_FILES
    with sshfs_mount(server, "root", tmp_path / "mnt", tmp_path / "sshfs.log") as mnt:
        # df reports the filesystem that holds server.root (statvfs@openssh.com).
        disk = os.statvfs(server.root)
        seen = os.statvfs(mnt)
        disk_size, seen_size = disk.f_blocks * disk.f_frsize, seen.f_blocks * seen.f_frsize
        assert abs(seen_size - disk_size) <= disk_size / 100, (seen_size, disk_size)
        df = run(["df", "-B1", "--output=size", str(mnt)], timeout=30)
        df_size = int(df.stdout.split()[-1])
        assert abs(df_size - disk_size) <= disk_size / 100, (df.stdout, disk_size)

        # A source tree extracted on the mount matches a local extraction, there and on disk.
        (mnt / "tree").mkdir()
        run(["tar", "-xf", str(source_tar), "-C", str(mnt / "tree")], timeout=300)
        assert_same_tree(local, mnt / "tree")
        assert_same_tree(local, server.root / "tree")
        assert count_files(server.root / "tree") == total

        # git works inside the mount: init, add, commit, log, fsck.
        repo = mnt / "tree"
        run(["git", "init", "-q"], cwd=repo, timeout=60)
        run(["git", "add", "-A"], cwd=repo, timeout=300)
        run(["git", *GIT_IDENTITY, "commit", "-q", "-m", "import sources"], cwd=repo, timeout=300)
        log = run(["git", "log", "--oneline"], cwd=repo, timeout=60)
        assert "import sources" in log.stdout
        run(["git", "fsck", "--full"], cwd=repo, timeout=300)
        listed = run(["git", "ls-files"], cwd=repo, timeout=60).stdout.splitlines()
        assert len(listed) == total
        status = run(["git", "status", "--porcelain"], cwd=repo, timeout=120)
        assert status.stdout == ""
        assert (server.root / "tree" / ".git" / "HEAD").is_file()

        # cp -a of a folder within the mount.
        package = sorted(p.name for p in local.iterdir())[0]
        run(["cp", "-a", str(mnt / "tree" / package), str(mnt / "copy")], timeout=300)
        assert_same_tree(local / package, mnt / "copy")
        assert_same_tree(local / package, server.root / "copy")

        # mv a folder, and a file.
        run(["mv", str(mnt / "copy"), str(mnt / "moved")], timeout=30)
        assert not (server.root / "copy").exists()
        assert_same_tree(local / package, server.root / "moved")
        first = sorted(p.name for p in (local / package).iterdir() if p.is_file())[0]
        run(["mv", str(mnt / "moved" / first), str(mnt / "file-moved")], timeout=30)
        assert not (server.root / "moved" / first).exists()
        assert (server.root / "file-moved").read_bytes() == (local / package / first).read_bytes()

        # The editor's save-by-rename: write a temporary file, then mv it over the target.
        (mnt / "notes.txt").write_text("version 1\n")
        (mnt / ".notes.txt.swp").write_text("version 2\n")
        run(["mv", "-f", str(mnt / ".notes.txt.swp"), str(mnt / "notes.txt")], timeout=30)
        assert (mnt / "notes.txt").read_text() == "version 2\n"
        assert (server.root / "notes.txt").read_text() == "version 2\n"
        assert not (server.root / ".notes.txt.swp").exists()
        assert not (mnt / ".notes.txt.swp").exists()

        # Relative symlinks made with ln -s resolve through the mount and on disk. (Debian's
        # sshfs rejects targets holding ".." or starting with "/" by default: contain_symlinks.)
        (mnt / "links").mkdir()
        (mnt / "links" / "target.txt").write_text("link target\n")
        run(["ln", "-s", "target.txt", str(mnt / "links" / "alias")], timeout=30)
        run(["ln", "-s", "links/target.txt", str(mnt / "top-alias")], timeout=30)
        for link, target in (("links/alias", "target.txt"), ("top-alias", "links/target.txt")):
            assert os.readlink(mnt / link) == target
            assert os.readlink(server.root / link) == target
            assert (mnt / link).read_text() == "link target\n"
            assert (server.root / link).read_text() == "link target\n"
            assert run(["stat", "-c", "%F", str(mnt / link)]).stdout.strip() == "symbolic link"

        # chmod, seen by stat on the mount and on disk.
        run(["chmod", "640", str(mnt / "notes.txt")], timeout=30)
        run(["chmod", "750", str(mnt / "links")], timeout=30)
        assert run(["stat", "-c", "%a", str(mnt / "notes.txt")]).stdout.strip() == "640"
        assert run(["stat", "-c", "%a", str(mnt / "links")]).stdout.strip() == "750"
        assert stat.S_IMODE((server.root / "notes.txt").stat().st_mode) == 0o640
        assert stat.S_IMODE((server.root / "links").stat().st_mode) == 0o750

        # rm -rf removes the whole tree (git objects included) from the disk.
        run(["rm", "-rf", str(mnt / "tree"), str(mnt / "moved")], timeout=300)
        assert not (mnt / "tree").exists()
        assert not (server.root / "tree").exists()
        assert not (server.root / "moved").exists()
        assert sorted(os.listdir(mnt)) == sorted(os.listdir(server.root))


def test_sshfs_read_only_user(server: Server, tmp_path: Path) -> None:
    """sshfs as ``reader`` (read-only, jailed to /share): reads work, every write fails."""
    share = server.root / "share"
    (share / "docs" / "sub").mkdir()
    (share / "docs" / "sub" / "deep.txt").write_text("deep\n")
    os.symlink("readme.txt", share / "docs" / "link")
    before = snapshot(share)
    root_before = snapshot(server.root / "etc")
    with sshfs_mount(server, "reader", tmp_path / "mnt", tmp_path / "sshfs.log") as mnt:
        # Reads: the jail's root is /share.
        assert sorted(os.listdir(mnt)) == ["docs"]
        assert sorted(os.listdir(mnt / "docs")) == ["link", "readme.txt", "sub"]
        assert run(["cat", str(mnt / "docs" / "readme.txt")]).stdout == "shared text\n"
        assert (mnt / "docs" / "sub" / "deep.txt").read_text() == "deep\n"
        assert os.readlink(mnt / "docs" / "link") == "readme.txt"
        assert (mnt / "docs" / "link").read_text() == "shared text\n"
        assert not (mnt / "etc").exists()
        assert run(["ls", "-la", str(mnt / "docs")]).returncode == 0

        # Every kind of write fails.
        writes = [
            "touch new.txt",
            "touch docs/readme.txt",
            "echo changed > docs/readme.txt",
            "echo more >> docs/readme.txt",
            "truncate -s 0 docs/readme.txt",
            "mkdir newdir",
            "mkdir docs/newdir",
            "rm docs/readme.txt",
            "rm -f docs/link",
            "rm -rf docs/sub",
            "rmdir docs/sub",
            "mv docs/readme.txt docs/renamed.txt",
            "mv docs/sub docs/sub2",
            "chmod 777 docs/readme.txt",
            "chmod 700 docs",
            "ln -s readme.txt docs/newlink",
            "ln docs/readme.txt docs/hardlink",
            "cp docs/readme.txt docs/copy.txt",
        ]
        succeeded = [w for w in writes if shell(w, cwd=mnt).returncode == 0]
        assert succeeded == [], f"writes that succeeded as the read-only user: {succeeded}"
        assert (mnt / "docs" / "readme.txt").read_text() == "shared text\n"
    assert snapshot(share) == before
    assert snapshot(server.root / "etc") == root_before
    assert sorted(os.listdir(server.root)) == ["etc", "home", "share"]


# --------------------------------------------------------------------------- rclone


def rclone(
    server: Server, user: str, *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """rclone with an on-the-fly ``:sftp:`` remote given by flags, and no config file."""
    require("rclone")
    return run(
        ["rclone", "--config", "/dev/null",
         "--sftp-host", "127.0.0.1", "--sftp-port", str(server.port), "--sftp-user", user,
         "--sftp-key-file", str(server.key), "--sftp-shell-type", "none",
         "--low-level-retries", "1", "--retries", "1", "--contimeout", "20s", "--timeout", "60s",
         *args],
        timeout=timeout, check=check,
    )  # fmt: skip


def test_rclone_copy_check_round_trip(server: Server, source_tar: Path, tmp_path: Path) -> None:
    """rclone sftp: copy a tree up, check it (sizes and content), copy it back, check again."""
    local = extract(source_tar, tmp_path / "local")
    (local / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (local / "empty.txt").write_bytes(b"")
    total = count_files(local)
    rclone(server, "root", "copy", str(local), ":sftp:/up")
    assert_same_tree(local, server.root / "up")
    assert count_files(server.root / "up") == total
    for path in local.rglob("*"):
        if path.is_file():  # rclone sets modification times (whole seconds over SFTP v3)
            disk = server.root / "up" / path.relative_to(local)
            assert int(disk.stat().st_mtime) == int(path.stat().st_mtime), path
    rclone(server, "root", "check", str(local), ":sftp:/up")
    rclone(server, "root", "check", "--download", str(local), ":sftp:/up")

    back = tmp_path / "back"
    rclone(server, "root", "copy", ":sftp:/up", str(back))
    rclone(server, "root", "check", "--download", ":sftp:/up", str(back))
    assert_same_tree(local, back)

    # A changed file is seen as a difference.
    (server.root / "up" / "empty.txt").write_bytes(b"now different")
    changed = rclone(server, "root", "check", str(local), ":sftp:/up", check=False)
    assert changed.returncode != 0
    assert "empty.txt" in changed.stderr


def test_rclone_jailed_user_stays_in_jail(server: Server, tmp_path: Path) -> None:
    """rclone as ``jailed``: it lists only its jail, and copies to ``/../..`` land in the jail."""
    jail = server.root / "home" / "jailed"
    (jail / "mine.txt").write_text("mine\n")
    outside_before = snapshot(server.outside)
    for remote in (":sftp:", ":sftp:/", ":sftp:/..", ":sftp:../.."):
        listed = rclone(server, "jailed", "lsf", remote, timeout=60)
        assert listed.stdout.split() == ["mine.txt"], (remote, listed.stdout)

    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "escape.txt").write_text("trying to escape\n")
    rclone(server, "jailed", "copy", str(upload), ":sftp:/../..", timeout=60)
    rclone(server, "jailed", "copy", str(upload), ":sftp:../../outside", timeout=60)
    assert (jail / "escape.txt").read_text() == "trying to escape\n"
    assert (jail / "outside" / "escape.txt").read_text() == "trying to escape\n"
    assert snapshot(server.outside) == outside_before
    assert not (server.root / "escape.txt").exists()
    assert not (server.root.parent / "escape.txt").exists()
    assert sorted(os.listdir(server.root)) == ["etc", "home", "share"]
    listed = rclone(server, "jailed", "lsf", "-R", ":sftp:/", timeout=60)
    assert sorted(listed.stdout.split()) == [
        "escape.txt",
        "mine.txt",
        "outside/",
        "outside/escape.txt",
    ]


def test_rclone_upload_sizes_around_its_write_chunk(server: Server, tmp_path: Path) -> None:
    """rclone uploads files of every size around its 32 KiB write chunk byte for byte.

    rclone 1.60 (Debian 12) sends the last, short WRITE of a file inside a full-size packet
    (pkg/sftp < 1.13.6); OpenSSH's sftp-server ignores the trailing bytes, so must we.
    """
    local = tmp_path / "sizes"
    local.mkdir()
    sizes = [0, 1, 32767, 32768, 32769, 65536, 65537, 100_000, 1_000_003]
    for size in sizes:
        (local / f"f{size}").write_bytes(os.urandom(size))
    result = rclone(server, "root", "copy", str(local), ":sftp:/sizes", timeout=120, check=False)
    failed = []
    for size in sizes:
        uploaded = server.root / "sizes" / f"f{size}"
        if not uploaded.is_file() or uploaded.read_bytes() != (local / f"f{size}").read_bytes():
            failed.append(size)
    assert result.returncode == 0 and failed == [], (
        f"sizes not uploaded intact: {failed}\n{result.stderr[-2000:]}"
    )


def _status_kib(pid: int, field: str) -> int:
    """A memory figure (VmRSS, VmHWM) of a process, in KiB."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, f"no {field} for {pid}"
    return int(match.group(1))


def test_sshfs_fast_upload_keeps_memory_bounded(server: Server, tmp_path: Path) -> None:
    """An sshfs client writing faster than the server stores never grows the server's
    memory without bound: the SSH window caps what may be buffered."""
    before = _status_kib(server.process.pid, "VmRSS")
    with sshfs_mount(server, "root", tmp_path / "mnt", tmp_path / "sshfs.log") as mnt:
        run(["dd", "if=/dev/zero", f"of={mnt}/big.bin", "bs=1M", "count=384"], timeout=300)
    assert (server.root / "big.bin").stat().st_size == 384 << 20
    growth = _status_kib(server.process.pid, "VmHWM") - before
    assert growth < 100 * 1024, f"peak RSS grew by {growth // 1024} MiB"
