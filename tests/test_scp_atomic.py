"""Legacy ``scp -O`` replaces a file only when the copy is complete: one killed midway
leaves the old content whole (it was truncated at the open and left cut)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from conftest import Server, require, wait_until

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
