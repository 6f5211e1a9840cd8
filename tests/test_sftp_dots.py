"""READDIR names ``.`` and ``..`` first, as OpenSSH's sftp-server does; at a jail's root
``..`` is the root itself, never the folder above it."""

from __future__ import annotations

import os

import asyncssh
from conftest import Server, require
from test_sftp_security import connect, run


def test_readdir_starts_with_dot_and_dotdot(server: Server) -> None:
    (server.root / "home" / "jailed" / "sub").mkdir()
    os.chmod(server.root / "home" / "jailed", 0o751)
    os.chmod(server.root / "home" / "jailed" / "sub", 0o705)

    async def names(user: str, path: str) -> dict[str, asyncssh.SFTPAttrs]:
        async with await connect(server, user) as conn, conn.start_sftp_client() as sftp:
            return {entry.filename: entry.attrs for entry in await sftp.readdir(path)}  # type: ignore[misc]

    at_root = run(lambda: names("jailed", "/"))
    assert {".", "..", "sub"} <= set(at_root)
    assert at_root["."].permissions == at_root[".."].permissions  # nothing above the jail
    assert (at_root["."].permissions or 0) & 0o777 == 0o751
    below = run(lambda: names("jailed", "/sub"))
    assert set(below) == {".", ".."}
    assert (below["."].permissions or 0) & 0o777 == 0o705
    assert (below[".."].permissions or 0) & 0o777 == 0o751
    # OpenSSH's sftp shows them with ls -a.
    require("sftp")
    result = server.sftp_batch("ls -la /home/jailed\n")
    assert result.returncode == 0, result.stderr
    shown = [
        line.split()[-1].rsplit("/", 1)[-1]
        for line in result.stdout.splitlines()
        if line[:1] in "d-l"
    ]
    assert "." in shown and ".." in shown and "sub" in shown, result.stdout
