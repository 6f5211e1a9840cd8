"""OpenSSH's own sftp and scp (both the SFTP-based and the legacy -O mode) against the server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import Server, require


def test_sftp_batch_session(server: Server, tmp_path: Path) -> None:
    """A typical sftp session: put, mkdir, rename, get, ls, df, symlink, hardlink, chmod, rm."""
    local = tmp_path / "f.txt"
    local.write_text("hello sftp\n")
    back = tmp_path / "back.txt"
    result = server.sftp_batch(
        f"""
put {local} f.txt
mkdir d
rename f.txt d/g.txt
get d/g.txt {back}
ls -l d
df
symlink d/g.txt lnk
ln d/g.txt hard.txt
chmod 600 hard.txt
rm hard.txt
"""
    )
    assert result.returncode == 0, result.stderr
    assert back.read_text() == "hello sftp\n"
    assert (server.root / "d" / "g.txt").read_text() == "hello sftp\n"
    assert (server.root / "lnk").is_symlink()
    assert not (server.root / "hard.txt").exists()
    assert "g.txt" in result.stdout


def test_sftp_rename_uses_posix_rename(server: Server) -> None:
    """OpenSSH's sftp renames with posix-rename@openssh.com, which replaces the target."""
    (server.root / "a").write_text("A")
    (server.root / "b").write_text("B")
    result = server.sftp_batch("rename a b\n")
    assert result.returncode == 0, result.stderr
    assert not (server.root / "a").exists()
    assert (server.root / "b").read_text() == "A"


def test_sftp_rename_onto_a_hard_link_does_as_openssh(server: Server, tmp_path: Path) -> None:
    """rename and posix-rename onto another name of the same file answer as OpenSSH's
    own sftp-server does (rename(2): both names stay, and it succeeds)."""
    require("sftp")
    openssh = Path("/usr/lib/openssh/sftp-server")
    assert openssh.exists(), "OpenSSH's sftp-server is needed to compare"
    local = tmp_path / "local"
    outcomes = []
    for folder in (server.root, local):
        folder.mkdir(exist_ok=True)
        (folder / "f").write_text("data")
        os.link(folder / "f", folder / "g")
    commands = "rename f g\n"
    ours = server.sftp_batch(commands)
    theirs = subprocess.run(
        ["sftp", "-b", "-", "-D", str(openssh)], input=commands, capture_output=True,
        text=True, timeout=60, cwd=local,
    )  # fmt: skip
    for folder, done in ((server.root, ours), (local, theirs)):
        outcomes.append(
            (done.returncode, sorted(p.name for p in folder.iterdir() if p.name in ("f", "g")))
        )
    assert outcomes[0] == outcomes[1], (outcomes, ours.stderr, theirs.stderr)
    assert (server.root / "f").stat().st_nlink == 2


def _scp(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    require("scp")
    return subprocess.run(
        ["scp", "-P", str(server.port), *server.ssh_options(), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_scp_both_modes(server: Server, tmp_path: Path) -> None:
    """scp (SFTP-based) and scp -O (legacy exec protocol), file and recursive, both ways."""
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a" * 1000)
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 400)
    for mode, folder in (([], "modern"), (["-O"], "legacy")):
        put = _scp(server, *mode, "-r", str(src), f"root@127.0.0.1:/{folder}")
        assert put.returncode == 0, put.stderr
        assert (server.root / folder / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 400
        back = tmp_path / f"back-{folder}"
        get = _scp(server, *mode, "-r", f"root@127.0.0.1:/{folder}", str(back))
        assert get.returncode == 0, get.stderr
        assert (back / "a.txt").read_text() == "a" * 1000
        assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 400
