"""Legacy ``scp -O`` replaces a file only when the copy is complete: one killed midway
leaves the old content whole (it was truncated at the open and left cut), and so does one
that fills the disk (it put the part that fitted in place)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from conftest import Server, require, server_log, tmpfs, wait_until

from hoody_mount.core.upload_temps import is_temp


def _scp(server: Server, source: Path, target: str) -> subprocess.Popen[bytes]:
    require("scp")
    return subprocess.Popen(
        ["scp", "-O", "-P", str(server.port), *server.ssh_options(), str(source),
         f"root@127.0.0.1:{target}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_an_aborted_legacy_scp_leaves_the_old_file(server: Server, tmp_path: Path) -> None:
    target = server.root / "share" / "big.bin"
    target.write_bytes(b"the old content\n")
    source = tmp_path / "big.bin"
    with open(source, "wb") as handle:
        handle.write(os.urandom(1 << 20) * 300)  # 300 MiB: the copy takes a while
    folder = target.parent
    copy = _scp(server, source, "/share/big.bin")
    try:
        assert wait_until(lambda: any(is_temp(n) for n in os.listdir(folder)), 60)
        copy.send_signal(signal.SIGKILL)
        copy.wait(timeout=30)
    finally:
        if copy.poll() is None:
            copy.kill()
    assert wait_until(lambda: not any(is_temp(n) for n in os.listdir(folder)), 30)
    assert target.read_bytes() == b"the old content\n"
    # A complete copy replaces it.
    small = tmp_path / "small.bin"
    small.write_bytes(b"the new content\n" * 1000)
    done = _scp(server, small, "/share/big.bin")
    assert done.wait(timeout=60) == 0
    assert target.read_bytes() == small.read_bytes()


def _copy(server: Server, *args: str) -> subprocess.CompletedProcess[bytes]:
    require("scp")
    return subprocess.run(
        ["scp", "-O", "-P", str(server.port), *server.ssh_options(), *args],
        capture_output=True, timeout=120,
    )  # fmt: skip


def test_a_legacy_scp_that_fills_the_disk_leaves_the_old_file(
    server: Server, tmp_path: Path
) -> None:
    """ENOSPC midway fails the copy with that error: the old content stays, no temp file
    remains, no upload is logged. With 8 MiB or less free (the part of an upload written
    through the page cache) the part that fitted replaced the file and was logged as an
    upload; past that (direct writes) too, and in a recursive copy."""
    source = tmp_path / "new.bin"
    source.write_bytes(os.urandom(20 << 20))
    with tmpfs(server.root / "ramdisk", "32m") as disk:
        keep = disk / "keep.bin"
        for free in (4, 7, 12):  # MiB
            old = os.urandom((32 - free) << 20)
            keep.write_bytes(old)
            result = _copy(server, str(source), "root@127.0.0.1:/ramdisk/keep.bin")
            assert result.returncode != 0, f"{free} MiB free: {result.stderr!r}"
            assert b"No space left on device" in result.stderr, result.stderr
            assert keep.read_bytes() == old, f"{free} MiB free: the old content is lost"
            assert os.listdir(disk) == ["keep.bin"], os.listdir(disk)
        # A recursive copy: the file that does not fit stays as it was, the others arrive
        keep.unlink()
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "small.txt").write_bytes(b"fits\n")
        (tree / "big.bin").write_bytes(source.read_bytes())
        (disk / "tree").mkdir()
        old = os.urandom(28 << 20)
        (disk / "tree" / "big.bin").write_bytes(old)
        result = _copy(server, "-r", str(tree), "root@127.0.0.1:/ramdisk/")
        assert result.returncode != 0, result.stderr
        assert b"No space left on device" in result.stderr, result.stderr
        assert (disk / "tree" / "big.bin").read_bytes() == old, "the old content is lost"
        assert (disk / "tree" / "small.txt").read_bytes() == b"fits\n"
        assert sorted(os.listdir(disk / "tree")) == ["big.bin", "small.txt"]
        assert 'op=upload path="/ramdisk/keep.bin"' not in server_log(server)
        assert 'op=upload path="/ramdisk/tree/big.bin"' not in server_log(server)
        # A copy that fits replaces the file
        (disk / "tree" / "big.bin").unlink()
        result = _copy(server, str(source), "root@127.0.0.1:/ramdisk/keep.bin")
        assert result.returncode == 0, result.stderr
        assert keep.read_bytes() == source.read_bytes()
        assert wait_until(lambda: 'op=upload path="/ramdisk/keep.bin"' in server_log(server), 10)


def test_a_recursive_legacy_scp_skips_a_name_with_a_line_break(
    server: Server, tmp_path: Path
) -> None:
    """scp's headers are one line each: a name with a line break is skipped (with a
    word on stderr, as OpenSSH's scp does) and the other files arrive whole; it was
    sent raw, the client stopped there and wrote a file of a stray byte."""
    require("scp")
    shared = server.root / "shared"
    shared.mkdir()
    (shared / "nl\nname").write_text("odd")
    for name in ("a.txt", "b.txt", "z.txt"):
        (shared / name).write_text(f"content of {name}")
    result = subprocess.run(
        ["scp", "-O", "-r", "-P", str(server.port), *server.ssh_options(),
         "root@127.0.0.1:/shared", str(tmp_path / "down")],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert b"skipping, filename contains a newline" in result.stderr, result.stderr
    got = sorted(os.listdir(tmp_path / "down"))
    assert got == ["a.txt", "b.txt", "z.txt"], got
    for name in got:
        assert (tmp_path / "down" / name).read_text() == f"content of {name}"
