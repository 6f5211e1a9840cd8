"""WebDAV clients end to end: litmus, rclone's webdav backend, and ``rclone mount`` over WebDAV.

These drive the real programs people point at hoody-mount's WebDAV share (``/dav/``) over a
real server, and check every outcome both through the client and on the disk under
``server.root``. Every subprocess is bounded by a timeout; a FUSE mount is always removed.
"""

from __future__ import annotations

import base64
import functools
import http.client
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import (
    MAX_FILES,
    MIN_FILES,
    PASSWORD,
    READER_PASSWORD,
    Server,
    extract,
    is_mounted,
    require,
    server_log,
    snapshot,
    unmount,
    wait_until,
)

LITMUS_SUITES = ("basic", "copymove", "props", "locks", "http")
PASSWORDS = {"root": PASSWORD, "reader": READER_PASSWORD}
BIG_SIZE = 5 * 1024 * 1024
DIR_CACHE_SECONDS = 2  # rclone mount --dir-cache-time


def run(
    args: list[str],
    *,
    cwd: Path | None = None,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program with a timeout; when ``check``, fail the test with its output on error."""
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    if check:
        assert result.returncode == 0, (
            f"{args} exited {result.returncode}\n"
            f"stdout: {result.stdout[-4000:]}\nstderr: {result.stderr[-4000:]}"
        )
    return result


# --------------------------------------------------------------------------- source tree


def count_files(folder: Path) -> int:
    """Regular files under ``folder``."""
    return sum(1 for p in folder.rglob("*") if p.is_file())


def tree_difference(left: Path, right: Path) -> str:
    """What ``diff -r`` reports between the two folders (empty when they are the same)."""
    require("diff")
    result = run(["diff", "-r", str(left), str(right)], check=False, timeout=180)
    if result.returncode == 0:
        return ""
    head = f"diff -r {left} {right} exited {result.returncode}:\n"
    return head + result.stdout[-3000:] + result.stderr[-1000:]


def assert_same_tree(left: Path, right: Path) -> None:
    """``diff -r`` finds no difference between the two folders."""
    difference = tree_difference(left, right)
    assert difference == "", difference


# --------------------------------------------------------------------------- litmus

_SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed\.")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%\s*$")
_RESULT = re.compile(r"^\s*\d+\.\s+\S+\.*\s*(FAIL|WARNING|SKIPPED|pass)\b")


def litmus_summaries(output: str) -> dict[str, tuple[int, int, int, str]]:
    """Each suite's summary from litmus' output: run, passed, failed and the percentage."""
    found: dict[str, tuple[int, int, int, str]] = {}
    for line in output.splitlines():
        match = _SUMMARY.search(line)
        if match is None:
            continue
        percent = _PERCENT.search(line)
        found[match.group(1)] = (
            int(match.group(2)),
            int(match.group(3)),
            int(match.group(4)),
            percent.group(1) if percent else "?",
        )
    return found


def litmus_problems(output: str) -> list[str]:
    """The lines of litmus' output that report a failed test or a problem."""
    problems: list[str] = []
    for line in output.splitlines():
        if "FAIL" in line or "WARNING" in line or "SKIPPED" in line or "aborting" in line:
            problems.append(line.rstrip())
    return problems


def test_litmus_all_suites(server: Server, tmp_path: Path) -> None:
    """litmus (basic, copymove, props, locks, http) passes every suite at 100.0%."""
    require("litmus")
    env = {**os.environ, "TESTS": " ".join(LITMUS_SUITES)}
    result = run(
        ["litmus", f"{server.url}/dav/", "root", PASSWORD],
        cwd=tmp_path,
        timeout=600,
        check=False,
        env=env,
    )
    output = result.stdout + result.stderr
    summaries = litmus_summaries(output)
    problems = litmus_problems(output)
    message = (
        f"litmus exited {result.returncode}\nsummaries: {summaries}\n"
        "problem lines:\n" + "\n".join(problems) + f"\n--- output tail:\n{output[-3000:]}"
        f"\n--- server log tail:\n{server_log(server)}"
    )
    missing = [suite for suite in LITMUS_SUITES if suite not in summaries]
    assert missing == [], f"no summary for suites {missing}\n{message}"
    below = {
        suite: summary
        for suite, summary in summaries.items()
        if summary[3] != "100.0" or summary[2] != 0 or summary[1] != summary[0]
    }
    assert below == {}, f"suites below 100.0%: {below}\n{message}"
    assert [line for line in problems if "FAIL" in line] == [], message
    assert result.returncode == 0, message


# --------------------------------------------------------------------------- rclone


@functools.cache
def obscured(password: str) -> str:
    """The password as ``rclone obscure`` encodes it for ``--webdav-pass``."""
    require("rclone")
    return run(["rclone", "--config", "/dev/null", "obscure", password], timeout=30).stdout.strip()


def webdav_flags(server: Server, user: str, vendor: str = "other") -> list[str]:
    """rclone flags that describe the on-the-fly ``:webdav:`` remote (no config file)."""
    return [
        "--webdav-url", f"{server.url}/dav/",
        "--webdav-vendor", vendor,
        "--webdav-user", user,
        "--webdav-pass", obscured(PASSWORDS[user]),
    ]  # fmt: skip


def rclone(
    server: Server,
    user: str,
    *args: str,
    vendor: str = "other",
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """rclone with an on-the-fly ``:webdav:`` remote given by flags, and no config file."""
    require("rclone")
    return run(
        ["rclone", "--config", "/dev/null", *webdav_flags(server, user, vendor),
         "--low-level-retries", "1", "--retries", "1", "--contimeout", "20s", "--timeout", "60s",
         *args],
        timeout=timeout, check=check,
    )  # fmt: skip


def upload_tree(source_tar: Path, into: Path) -> Path:
    """A local tree to upload: the stdlib sources, a 5 MiB file and an empty file."""
    local = extract(source_tar, into)
    (local / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    (local / "empty.txt").write_bytes(b"")
    return local


def test_rclone_webdav_copy_check_round_trip(
    server: Server, source_tar: Path, tmp_path: Path
) -> None:
    """rclone webdav (vendor other): copy a tree up, check it, copy it back down, check again."""
    local = upload_tree(source_tar, tmp_path / "local")
    total = count_files(local)
    assert MIN_FILES <= total <= MAX_FILES + 2

    rclone(server, "root", "copy", str(local), ":webdav:up")
    assert_same_tree(local, server.root / "up")
    assert count_files(server.root / "up") == total
    assert (server.root / "up" / "big.bin").stat().st_size == BIG_SIZE
    assert (server.root / "up" / "empty.txt").stat().st_size == 0
    rclone(server, "root", "check", str(local), ":webdav:up")
    rclone(server, "root", "check", "--download", str(local), ":webdav:up")
    listed = rclone(server, "root", "lsf", "-R", "--files-only", ":webdav:up", timeout=120)
    assert len(listed.stdout.split("\n")) - 1 == total, listed.stdout[-2000:]

    back = tmp_path / "back"
    rclone(server, "root", "copy", ":webdav:up", str(back))
    rclone(server, "root", "check", ":webdav:up", str(back))
    rclone(server, "root", "check", "--download", ":webdav:up", str(back))
    assert_same_tree(local, back)
    assert_same_tree(server.root / "up", back)

    # A changed file is seen as a difference (sizes differ).
    (server.root / "up" / "empty.txt").write_bytes(b"now different")
    changed = rclone(server, "root", "check", str(local), ":webdav:up", check=False)
    assert changed.returncode != 0, changed.stderr
    assert "empty.txt" in changed.stderr


@pytest.mark.parametrize("vendor", ["owncloud", "nextcloud"])
def test_rclone_webdav_oc_mtime(
    server: Server, source_tar: Path, tmp_path: Path, vendor: str
) -> None:
    """rclone webdav with an ownCloud-like vendor sends ``X-OC-Mtime``: mtimes kept on disk."""
    local = upload_tree(source_tar, tmp_path / "local")
    # Times rclone could not confuse with the upload time: whole days in the past.
    for number, path in enumerate(sorted(p for p in local.rglob("*") if p.is_file())):
        stamp = 1_500_000_000 + number * 86_400 + 7
        os.utime(path, (stamp, stamp))
    total = count_files(local)

    rclone(server, "root", "copy", str(local), ":webdav:oc", vendor=vendor)
    assert_same_tree(local, server.root / "oc")
    assert count_files(server.root / "oc") == total
    wrong: list[str] = []
    for path in sorted(local.rglob("*")):
        if path.is_file():
            disk = server.root / "oc" / path.relative_to(local)
            if int(disk.stat().st_mtime) != int(path.stat().st_mtime):
                wrong.append(f"{path.relative_to(local)}: {disk.stat().st_mtime} != "
                             f"{path.stat().st_mtime}")  # fmt: skip
    assert wrong == [], f"{len(wrong)} files lost their mtime on upload:\n" + "\n".join(wrong[:20])

    # rclone sees the same times: check passes and a second copy has nothing to do.
    rclone(server, "root", "check", str(local), ":webdav:oc", vendor=vendor)
    again = rclone(server, "root", "copy", "-v", str(local), ":webdav:oc", vendor=vendor)
    assert "There was nothing to transfer" in again.stderr, again.stderr[-3000:]
    listed = rclone(server, "root", "lsl", ":webdav:oc/json", vendor=vendor, timeout=60)
    for line in listed.stdout.splitlines():
        size, day, clock, name = line.split(maxsplit=3)
        disk = local / "json" / name
        shown = time.mktime(time.strptime(f"{day} {clock.split('.')[0]}", "%Y-%m-%d %H:%M:%S"))
        assert int(shown) == int(disk.stat().st_mtime), (line, disk.stat().st_mtime)
        assert int(size) == disk.stat().st_size, line

    # Both ways: copy down (times kept by rclone locally) and check.
    back = tmp_path / "back"
    rclone(server, "root", "copy", ":webdav:oc", str(back), vendor=vendor)
    rclone(server, "root", "check", ":webdav:oc", str(back), vendor=vendor)
    assert_same_tree(local, back)
    for path in local.rglob("*"):
        if path.is_file():
            copy = back / path.relative_to(local)
            assert int(copy.stat().st_mtime) == int(path.stat().st_mtime), path


def test_rclone_webdav_read_only_user(server: Server, tmp_path: Path) -> None:
    """rclone webdav as ``reader`` (read-only, jailed to /share): lists and reads, never writes."""
    share = server.root / "share"
    (share / "docs" / "sub").mkdir()
    (share / "docs" / "sub" / "deep.txt").write_text("deep\n")
    before = snapshot(share)
    root_before = sorted(os.listdir(server.root))

    listed = rclone(server, "reader", "lsf", ":webdav:", timeout=60)
    assert listed.stdout.split() == ["docs/"], listed.stdout
    listed = rclone(server, "reader", "lsf", "-R", ":webdav:", timeout=60)
    assert sorted(listed.stdout.split()) == [
        "docs/", "docs/readme.txt", "docs/sub/", "docs/sub/deep.txt",
    ], listed.stdout  # fmt: skip
    cat = rclone(server, "reader", "cat", ":webdav:docs/readme.txt", timeout=60)
    assert cat.stdout == "shared text\n"
    back = tmp_path / "back"
    rclone(server, "reader", "copy", ":webdav:", str(back), timeout=60)
    assert_same_tree(share, back)

    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "new.txt").write_text("must not arrive\n")
    (upload / "readme.txt").write_text("must not replace\n")
    attempts = {
        "copy into docs": ["copy", str(upload), ":webdav:docs"],
        "copy into a new folder": ["copy", str(upload), ":webdav:newdir"],
        "copyto a file": ["copyto", str(upload / "new.txt"), ":webdav:new.txt"],
        "mkdir": ["mkdir", ":webdav:docs/made"],
        "deletefile": ["deletefile", ":webdav:docs/readme.txt"],
        "purge": ["purge", ":webdav:docs/sub"],
        "moveto": ["moveto", ":webdav:docs/readme.txt", ":webdav:docs/moved.txt"],
    }
    outcomes = {
        name: rclone(server, "reader", *args, timeout=60, check=False)
        for name, args in attempts.items()
    }
    succeeded = [name for name, result in outcomes.items() if result.returncode == 0]
    assert succeeded == [], f"writes that succeeded as the read-only user: {succeeded}"
    # Each one was refused by the server (403), not lost to some other error.
    unrefused = {
        name: result.stderr[-1000:]
        for name, result in outcomes.items()
        if "403 Forbidden" not in result.stderr
    }
    assert unrefused == {}, f"writes that failed without a 403: {unrefused}"
    assert snapshot(share) == before
    assert sorted(os.listdir(server.root)) == root_before
    assert (upload / "new.txt").exists()


def test_rclone_webdav_listing_hides_uploads_in_flight(server: Server, tmp_path: Path) -> None:
    """A folder listed while another client's PUT is still arriving shows only real files.

    The server writes an upload to a temp file next to its target; clients listing the folder
    meanwhile (``rclone lsf``, ``rclone mount``'s directory cache, ``rclone sync`` deciding what
    to delete) must not see that temp file.
    """
    folder = server.root / "inflight"
    folder.mkdir()
    (folder / "done.txt").write_text("already here\n")
    body = os.urandom(256 * 1024)
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        connection.putrequest("PUT", "/dav/inflight/arriving.bin")
        connection.putheader("Authorization", f"Basic {token}")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        connection.send(body[: len(body) // 2])
        started = wait_until(lambda: len(os.listdir(folder)) > 1, 30, 0.05)
        assert started, f"the upload never started on disk\n{server_log(server)}"
        on_disk = sorted(os.listdir(folder))
        listed = rclone(server, "root", "lsf", ":webdav:inflight", timeout=60)
        connection.send(body[len(body) // 2 :])
        response = connection.getresponse()
        response.read()
        assert response.status in (200, 201, 204), (response.status, server_log(server))
    finally:
        connection.close()
    assert listed.stdout.split() == ["done.txt"], (
        f"PROPFIND Depth 1 of /dav/inflight/ during a PUT of /dav/inflight/arriving.bin "
        f"listed {listed.stdout.split()} (on disk: {on_disk})"
    )
    assert (folder / "arriving.bin").read_bytes() == body
    assert sorted(os.listdir(folder)) == ["arriving.bin", "done.txt"]
    listed = rclone(server, "root", "lsf", ":webdav:inflight", timeout=60)
    assert listed.stdout.split() == ["arriving.bin", "done.txt"]


# --------------------------------------------------------------------------- rclone mount


@contextmanager
def rclone_mount(server: Server, user: str, mountpoint: Path, log: Path) -> Iterator[Path]:
    """``rclone mount :webdav:/`` in a child process; always unmounted on the way out."""
    require("rclone", "fusermount3")
    mountpoint.mkdir(parents=True, exist_ok=True)
    process: subprocess.Popen[str] | None = None
    try:
        with open(log, "w") as out:
            process = subprocess.Popen(
                ["rclone", "--config", "/dev/null", *webdav_flags(server, user),
                 "mount", ":webdav:/", str(mountpoint),
                 "--vfs-cache-mode", "writes", "--vfs-write-back", "1s",
                 "--cache-dir", str(log.parent / "rclone-cache"),
                 "--dir-cache-time", f"{DIR_CACHE_SECONDS}s", "--poll-interval", "0",
                 "--low-level-retries", "2", "--contimeout", "20s", "--timeout", "60s",
                 "-v", "--log-file", str(log)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint):
            if process.poll() is not None:
                pytest.fail(
                    f"rclone mount exited {process.returncode}: {log.read_text()}\n"
                    f"{server_log(server)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"rclone did not mount in 30 s: {log.read_text()}\n{server_log(server)}"
                )
            time.sleep(0.1)
        yield mountpoint
    finally:
        unmount(mountpoint, process)


def test_rclone_mount_webdav_workflow(server: Server, source_tar: Path, tmp_path: Path) -> None:
    """rclone mount over WebDAV as root: extract a tree, diff -r, rename, rm -rf."""
    require("tar", "diff", "mv", "rm")
    local = extract(source_tar, tmp_path / "local")
    total = count_files(local)
    assert MIN_FILES <= total <= MAX_FILES
    log = tmp_path / "rclone-mount.log"

    def context() -> str:
        return f"\n--- rclone log tail:\n{log.read_text()[-3000:]}\n--- server log tail:\n" + (
            server_log(server)
        )

    with rclone_mount(server, "root", tmp_path / "mnt", log) as mnt:
        assert sorted(os.listdir(mnt)) == ["etc", "home", "share"]
        assert (mnt / "share" / "docs" / "readme.txt").read_text() == "shared text\n"

        # A source tree extracted on the mount matches a local extraction, on disk and there.
        # The VFS cache uploads closed files in the background: wait for the disk, bounded.
        # (Listing the mount before that shows the server's upload temp files, which
        # test_rclone_webdav_listing_hides_uploads_in_flight checks deterministically.)
        (mnt / "tree").mkdir()
        extracted = run(
            ["tar", "-xf", str(source_tar), "-C", str(mnt / "tree")], timeout=600, check=False
        )
        assert extracted.returncode == 0, f"tar: {extracted.stderr[-3000:]}{context()}"
        on_disk = wait_until(lambda: tree_difference(local, server.root / "tree") == "", 180, 2)
        assert on_disk, tree_difference(local, server.root / "tree") + context()
        time.sleep(DIR_CACHE_SECONDS + 1)  # listings rclone cached during the uploads expire
        assert_same_tree(local, mnt / "tree")
        assert count_files(server.root / "tree") == total

        # Rename a folder and a file, through the mount; seen on disk and on the mount.
        package = sorted(p.name for p in local.iterdir() if p.is_dir())[0]
        run(["mv", str(mnt / "tree" / package), str(mnt / "tree" / f"{package}-renamed")])
        assert not (mnt / "tree" / package).exists()
        assert not (server.root / "tree" / package).exists(), context()
        assert_same_tree(local / package, server.root / "tree" / f"{package}-renamed")
        assert_same_tree(local / package, mnt / "tree" / f"{package}-renamed")
        first = sorted(p.name for p in (local / package).iterdir() if p.is_file())[0]
        moved = mnt / "tree" / f"{package}-renamed" / first
        run(["mv", str(moved), str(mnt / "tree" / "file-renamed")])
        assert not (server.root / "tree" / f"{package}-renamed" / first).exists(), context()
        content = (local / package / first).read_bytes()
        assert (server.root / "tree" / "file-renamed").read_bytes() == content
        assert (mnt / "tree" / "file-renamed").read_bytes() == content

        # rm -rf removes the whole tree from the mount and from the disk.
        removed = run(["rm", "-rf", str(mnt / "tree")], timeout=600, check=False)
        assert removed.returncode == 0, f"rm -rf: {removed.stderr[-3000:]}{context()}"
        assert not (mnt / "tree").exists()
        assert wait_until(lambda: not (server.root / "tree").exists(), 30), context()
        assert sorted(os.listdir(mnt)) == ["etc", "home", "share"]
    assert sorted(os.listdir(server.root)) == ["etc", "home", "share"]
    leftovers = list((tmp_path / "mnt").iterdir())
    assert leftovers == [], f"files written under the unmounted mountpoint: {leftovers}"
