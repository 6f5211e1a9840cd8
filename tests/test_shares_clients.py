"""Shares through real clients: a link in headless Chromium, a share mounted with
sshfs (and revoked while mounted) and with ``rclone mount`` over the link's WebDAV URL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from browser import Browser
from conftest import PASSWORD, Server, is_mounted, require, server_log, unmount
from test_shares import create, share_cli


@contextmanager
def mounted(server: Server, command: list[str], mountpoint: Path, log: Path,
            stdin: str = "") -> Iterator[subprocess.Popen[str]]:  # fmt: skip
    """A FUSE client in a child process until ``mountpoint`` is mounted; unmounted after."""
    require("fusermount3", command[0])
    mountpoint.mkdir(parents=True, exist_ok=True)
    process = None
    try:
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True
            )
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[0]} did not mount: {log.read_text()}\n{server_log(server)}")
            time.sleep(0.1)
        yield process
    finally:
        unmount(mountpoint, process)


def sshfs_of_share(server: Server, share: dict[str, str], mnt: Path, log: Path) -> Any:
    options = ",".join([
        "password_stdin", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
        "PubkeyAuthentication=no", "PreferredAuthentications=password", "LogLevel=ERROR",
    ])  # fmt: skip
    command = ["sshfs", "-f", "-p", str(server.port), "-o", options,
               f"{share['user']}@127.0.0.1:/", str(mnt)]  # fmt: skip
    return mounted(server, command, mnt, log, share["secret"] + "\n")


def assert_read_only_view(mnt: Path) -> None:
    """The mount shows exactly the shared folder, and refuses every write."""
    assert sorted(os.listdir(mnt)) == ["docs"]
    assert (mnt / "docs" / "readme.txt").read_text() == "shared text\n"
    with pytest.raises(OSError):
        (mnt / "docs" / "new.txt").write_text("no")
    with pytest.raises(OSError):
        (mnt / "made").mkdir()
    with pytest.raises(OSError):
        (mnt / "docs" / "readme.txt").unlink()


def test_sshfs_sees_the_share_read_only_and_revoke_ends_only_it(
    server: Server, tmp_path: Path
) -> None:
    """sshfs as share-<id>: exactly the folder, read-only; ``share revoke`` while it is
    mounted makes the mount fail, and an SFTP session of root goes on."""
    share = create(server, "/share")

    async def root_session() -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1", server.port, username="root", password=PASSWORD, known_hosts=None,
            client_keys=None,
        )  # fmt: skip

    loop = asyncio.new_event_loop()
    root = loop.run_until_complete(root_session())
    try:
        mnt = tmp_path / "mnt"
        with sshfs_of_share(server, share, mnt, tmp_path / "sshfs.log"):
            assert_read_only_view(mnt)
            assert not (server.root / "share" / "docs" / "new.txt").exists()
            done = share_cli(server, "revoke", share["id"])
            assert done.returncode == 0 and "1 open sessions ended" in done.stdout, done
            time.sleep(0.5)
            with pytest.raises(OSError):
                os.listdir(mnt / "docs")
                (mnt / "docs" / "readme.txt").read_text()
        result = loop.run_until_complete(root.run("echo still here"))
        assert result.stdout == "still here\n"
    finally:
        root.close()
        loop.close()
    assert "the share was revoked" in server_log(server)


def test_rclone_mount_of_the_link_sees_the_share_read_only(server: Server, tmp_path: Path) -> None:
    """``rclone mount`` given the link's WebDAV URL alone (no user, no password)."""
    require("rclone")
    share = create(server, "/share")
    mnt = tmp_path / "mnt"
    command = [
        "rclone", "--config", "/dev/null", "mount", ":webdav:", str(mnt),
        "--webdav-url", f"{server.url}/s/{share['secret']}/dav/",
        "--dir-cache-time", "1s", "--poll-interval", "0", "--low-level-retries", "1",
        "--cache-dir", str(tmp_path / "cache"), "-v", "--log-file", str(tmp_path / "rclone.log"),
    ]  # fmt: skip
    with mounted(server, command, mnt, tmp_path / "rclone.out"):
        assert_read_only_view(mnt)
    assert not (server.root / "share" / "docs" / "new.txt").exists()
    assert not (server.root / "share" / "made").exists()
    assert share["secret"] not in server_log(server)


def test_a_link_in_chromium(server: Server, tmp_path: Path) -> None:
    """A read-only link opens without a prompt, its folders open by a click, and it
    offers no upload; a writable link's page uploads into the shared folder."""
    ro, rw = create(server, "/share"), create(server, "/share/docs", "--rw")
    note = tmp_path / "note.txt"
    note.write_text("from a link\n")
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(f"{server.url}/s/{ro['secret']}/")
        browser.wait_for("document.body.textContent.includes('docs')")
        browser.evaluate("document.querySelector('a[href$=\"/docs/\"]').click(); true")
        browser.wait_for("document.body.textContent.includes('readme.txt')")
        assert browser.evaluate("location.pathname") == f"/s/{ro['secret']}/files/docs/"
        assert "Read-only access" in str(browser.evaluate("document.body.textContent"))
        browser.open(f"{server.url}/s/{rw['secret']}/")
        browser.wait_for("document.body.textContent.includes('readme.txt')")
        browser.set_files("#files", [note])  # (picking files starts their upload)
        browser.wait_for("document.querySelector('#listing tr[data-name=\"note.txt\"]') !== null")
        assert (server.root / "share" / "docs" / "note.txt").read_text() == "from a link\n"
    finally:
        browser.close()
