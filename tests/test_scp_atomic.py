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
