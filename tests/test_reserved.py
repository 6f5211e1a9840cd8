"""The server's own files are out of every user's reach, through every front and trick.

The container's layout on a tmpfs: the served root is the container's ``/``, the state
folder is ``/hoody/storage/files`` and the log folder ``/hoody/storage/logs``. User
``st`` is jailed read-write to ``/hoody/storage`` (where the state folder lies), and
``root`` is the unjailed administrator. Aliases of the state folder are planted: a
symlink inside the jail, one in the root, and a bind mount of it inside the jail.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncssh
import paramiko
import pytest
from conftest import (
    PASSWORD,
    basic_request,
    http_port,
    require,
    start_server,
    stop_server,
    wait_until,
)

from hoody_mount.core.users import hash_password

KEY_NAME = "ssh_host_ed25519_key"
STATE = "/hoody/storage/files"
LOG = "/hoody/storage/logs/hoody-mount.log"


@dataclass
class Container:
    """A running server over the container layout."""

    root: Path
    state: Path
    log: Path
    ssh_port: int
    http_port: int
    key: Path
    server_log: Path

    def sftp(self, user: str) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
        """A paramiko SFTP session as ``user`` (password login)."""
        transport = paramiko.Transport(("127.0.0.1", self.ssh_port))
        transport.connect(username=user, password=PASSWORD)
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        return transport, client

    def http(
        self, method: str, path: str, user: str = "st", body: bytes = b"", **headers: str
    ) -> tuple[int, bytes]:
        """One HTTP request with Basic credentials; the status and body."""
        return basic_request(self.http_port, method, path, user, PASSWORD, body, **headers)

    def state_files(self) -> dict[str, bytes]:
        """The state folder's files and their contents (but the WebDAV stores, which
        the server itself writes as it serves)."""
        return {
            p.name: p.read_bytes()
            for p in sorted(self.state.iterdir())
            if p.is_file() and not p.name.startswith("dav-")
        }


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"mount {' '.join(args)}: {result.stderr}"


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def container(tmp_path: Path, client_key: Path) -> Iterator[Container]:
    """The server over a container layout on a tmpfs, with aliases of its state folder."""
    require("mount", "umount")
    root = tmp_path / "ct"
    root.mkdir()
    _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(root))
    mounts = [root]
    try:
        storage = root / "hoody" / "storage"
        for folder in (storage / "myapp" / "alias", root / "hoody" / "databases", root / "etc"):
            folder.mkdir(parents=True)
        (storage / "myapp" / "a.txt").write_text("app data\n")
        (root / "hoody" / "databases" / "db.sqlite").write_text("db\n")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        state, logs = storage / "files", storage / "logs"
        (storage / "link").symlink_to("/files")  # inside st's jail: its /files
        (root / "statelink").symlink_to(STATE)
        pub = client_key.with_suffix(".pub").read_text().strip()
        config = tmp_path / "container.toml"
        hashed = hash_password(PASSWORD)
        config.write_text(
            f"""
root = "{root}"
state_dir = "{state}"
log_dir = "{logs}"

[ssh]
listen = "127.0.0.1:0"

[http]
listen = "127.0.0.1:0"

[users.root]
password_hash = "{hashed}"
authorized_keys = ["{pub}"]

[users.st]
password_hash = "{hashed}"
authorized_keys = ["{pub}"]
root = "/hoody/storage"
"""
        )
        process, ssh_port, banner = start_server(["--config", str(config)], tmp_path / "server.log")
        try:
            # A bind mount of the state folder inside the jail, made once it exists.
            _mount("--bind", str(state), str(storage / "myapp" / "alias"))
            mounts.insert(0, storage / "myapp" / "alias")
            token = subprocess.run(
                [
                    sys.executable, "-m", "hoody_mount", "token", "create", "root",
                    "--config", str(config),
                ],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert token.returncode == 0, token.stderr
            yield Container(
                root,
                state,
                logs / "hoody-mount.log",
                ssh_port,
                http_port(banner),
                client_key,
                tmp_path / "server.log",
            )
        finally:
            stop_server(process)
    finally:
        for path in mounts:
            _umount(path)


# Paths of st's jail (the container's /hoody/storage) that lead into the state folder.
JAILED_ALIASES = ["/files", "/link", "/myapp/alias", "/myapp/../files", "//files/."]
ROOT_ALIASES = [STATE, "/statelink", "/hoody/storage/myapp/alias"]


def _refused(call: object, *args: object) -> None:
    """``call(*args)`` must fail with permission denied or no such file."""
    with pytest.raises((PermissionError, FileNotFoundError, OSError)) as info:
        call(*args)  # type: ignore[operator]
    assert not isinstance(info.value, IsADirectoryError)


def test_sftp_cannot_reach_the_state_folder(container: Container) -> None:
    before = container.state_files()
    assert KEY_NAME in before and "tokens.json" in before
    for user, aliases in (("st", JAILED_ALIASES), ("root", ROOT_ALIASES)):
        transport, sftp = container.sftp(user)
        try:
            top = "/" if user == "st" else "/hoody/storage"
            assert "files" not in sftp.listdir(top)
            assert "myapp" in sftp.listdir(top)
            for alias in aliases:
                key = f"{alias}/{KEY_NAME}"
                with pytest.raises(PermissionError):
                    sftp.stat(alias if alias != "/link" else "/link/.")
                with pytest.raises(PermissionError):
                    sftp.open(key, "r").read()
                with pytest.raises(PermissionError):
                    sftp.listdir(alias)
                with pytest.raises(PermissionError):
                    sftp.open(f"{alias}/tokens.json", "w").write(b"[]")
                with pytest.raises(PermissionError):
                    sftp.open(f"{alias}/new.txt", "w").write(b"x")
                with pytest.raises(PermissionError):
                    sftp.mkdir(f"{alias}/sub")
                with pytest.raises(PermissionError):
                    sftp.remove(key)
                with pytest.raises(PermissionError):
                    sftp.chmod(key, 0o644)
                with pytest.raises(PermissionError):
                    sftp.posix_rename(key, f"{top}/stolen")
                app = f"{top}/myapp/a.txt" if user == "root" else "/myapp/a.txt"
                with pytest.raises(PermissionError):
                    sftp.posix_rename(app, f"{alias}/a.txt")
                with pytest.raises(PermissionError):
                    sftp.rename(app, f"{alias}/a.txt")
            # The folder itself: no rename, no removal, no hard link of its files.
            state = "/files" if user == "st" else STATE
            with pytest.raises(PermissionError):
                sftp.rename(state, f"{top}/moved")
            with pytest.raises(PermissionError):
                sftp.rmdir(state)
            with pytest.raises(OSError):
                sftp.symlink(f"{state}/{KEY_NAME}", f"{top}/keylink")
                sftp.open(f"{top}/keylink").read()
            # The storage folder that holds it cannot be moved away either.
            if user == "root":
                with pytest.raises(PermissionError):
                    sftp.rename("/hoody/storage", "/hoody/elsewhere")
            assert sftp.open(f"{top}/myapp/a.txt" if user == "root" else "/myapp/a.txt").read()
        finally:
            transport.close()
    assert container.state_files() == before
    # Each attempt is a warning in the log, with who, how and where.
    wanted = f'refused user=st proto=sftp op=open path="/files/{KEY_NAME}": Permission denied'
    assert wait_until(lambda: wanted in container.log.read_text(), 20), wanted


def test_hardlink_of_a_state_file_is_refused(container: Container) -> None:
    async def attempt() -> None:
        async with asyncssh.connect(
            "127.0.0.1", container.ssh_port, username="st", password=PASSWORD,
            known_hosts=None, client_keys=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
            for source in (f"/files/{KEY_NAME}", f"/link/{KEY_NAME}", "/logs/hoody-mount.log"):
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await sftp.link(source, "/stolen")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.link("/myapp/a.txt", "/files/planted")

    asyncio.run(asyncio.wait_for(attempt(), 120))
    assert not (container.root / "hoody" / "storage" / "stolen").exists()
    assert not (container.state / "planted").exists()


def test_log_file_is_readable_but_never_changed(container: Container) -> None:
    log = container.log
    assert log.exists()
    transport, sftp = container.sftp("st")
    try:
        assert "hoody-mount.log" in sftp.listdir("/logs")
        assert sftp.open("/logs/hoody-mount.log").read(10)
        for mode in ("w", "a", "r+"):
            with pytest.raises(PermissionError):
                sftp.open("/logs/hoody-mount.log", mode).write(b"FORGED\n")
        with pytest.raises(PermissionError):
            sftp.remove("/logs/hoody-mount.log")
        with pytest.raises(PermissionError):
            sftp.posix_rename("/logs/hoody-mount.log", "/logs/old.log")
        with pytest.raises(PermissionError):
            sftp.posix_rename("/myapp/a.txt", "/logs/hoody-mount.log")
        with pytest.raises(PermissionError):
            sftp.truncate("/logs/hoody-mount.log", 0)
        with pytest.raises(PermissionError):
            sftp.chmod("/logs/hoody-mount.log", 0o666)
        with sftp.open("/logs/hoody-mount.log") as handle, pytest.raises(PermissionError):
            handle.chmod(0o666)
        with pytest.raises(PermissionError):
            sftp.rename("/logs", "/logs2")
        # Other files in the log folder are the container's: they stay writable.
        with sftp.open("/logs/other.log", "w") as handle:
            handle.write(b"mine\n")
        sftp.remove("/logs/other.log")
    finally:
        transport.close()
    assert b"FORGED" not in log.read_bytes()
    assert stat.S_IMODE(log.stat().st_mode) & 0o002 == 0


def test_file_api_cannot_reach_the_state_folder(container: Container) -> None:
    before = container.state_files()
    status, body = container.http("GET", "/api/v1/files/?json")
    assert status == 200, body
    names = [entry["name"] for entry in json.loads(body)["entries"]]
    assert "files" not in names and "myapp" in names
    for alias in ("/files", "/link", "/myapp/alias"):
        for method, suffix, data in (
            ("GET", f"/{KEY_NAME}", b""),
            ("GET", f"/{KEY_NAME}?sha256", b""),
            ("GET", "/?json", b""),
            ("PUT", "/tokens.json", b"[]"),
            ("PUT", "/new.txt", b"x"),
            ("DELETE", f"/{KEY_NAME}", b""),
            ("POST", "/sub?mkdir", b""),
        ):
            path = "/api/v1/files" + quote(alias + suffix, safe="/?")
            status, body = container.http(method, path, body=data)
            assert status == 403, (method, path, status, body)
    for data in (
        {"action": "move", "to": "/files/a.txt"},
        {"action": "copy", "to": "/link/a.txt"},
        {"action": "copy", "to": "/myapp/alias/a.txt", "overwrite": True},
    ):
        status, body = container.http(
            "POST",
            "/api/v1/files/myapp/a.txt",
            body=json.dumps(data).encode(),
            **{"Content-Type": "application/json"},
        )
        assert status == 403, (data, status, body)
    status, body = container.http(
        "POST",
        "/api/v1/files/files",
        body=json.dumps({"action": "copy", "to": "/stolen"}).encode(),
        **{"Content-Type": "application/json"},
    )
    assert status == 403, body
    # The administrator cannot remove the folder that holds the state either.
    status, body = container.http("DELETE", "/api/v1/files/hoody/storage?recursive", user="root")
    assert status == 403, body
    assert (container.root / "hoody" / "storage" / "myapp" / "a.txt").exists()
    status, body = container.http("DELETE", "/api/v1/files/logs/hoody-mount.log")
    assert status == 403, body
    status, body = container.http("PUT", "/api/v1/files/logs/hoody-mount.log", body=b"FORGED")
    assert status == 403, body
    assert container.state_files() == before


def test_webdav_cannot_reach_the_state_folder(container: Container) -> None:
    before = container.state_files()
    status, body = container.http("PROPFIND", "/dav/", Depth="1")
    assert status == 207, body
    assert b"/dav/files/" not in body and b"/dav/myapp/" in body
    for alias in ("/files", "/link", "/myapp/alias"):
        for method, suffix, headers in (
            ("GET", f"/{KEY_NAME}", {}),
            ("PROPFIND", "/", {"Depth": "1"}),
            ("PUT", "/tokens.json", {}),
            ("DELETE", f"/{KEY_NAME}", {}),
            ("MKCOL", "/sub", {}),
            ("COPY", "", {"Destination": "/dav/stolen"}),
            ("MOVE", "", {"Destination": "/dav/stolen"}),
        ):
            path = "/dav" + quote(alias + suffix)
            data = b"[]" if method == "PUT" else b""
            status, body = container.http(method, path, body=data, **headers)
            assert status in (403, 404), (method, path, status, body)
            assert status == 403 or method != "GET", (method, path, status)
        status, body = container.http(
            "MOVE", "/dav/myapp/a.txt", Destination=f"/dav{alias}/a.txt", Overwrite="T"
        )
        assert status == 403, (alias, status, body)
    assert not (container.root / "hoody" / "storage" / "stolen").exists()
    status, body = container.http("PUT", "/dav/logs/hoody-mount.log", body=b"FORGED")
    assert status == 403, body
    status, body = container.http("DELETE", "/dav/logs/hoody-mount.log")
    assert status == 403, body
    assert container.state_files() == before


def test_scp_and_openssh_sftp_cannot_fetch_the_host_key(
    container: Container, tmp_path: Path
) -> None:
    require("scp", "sftp")
    options = [
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(container.key),
    ]  # fmt: skip
    for extra in ([], ["-O"]):
        target = tmp_path / f"key{len(extra)}"
        result = subprocess.run(
            ["scp", *extra, "-P", str(container.ssh_port), *options,
             f"st@127.0.0.1:/files/{KEY_NAME}", str(target)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode != 0 and not target.exists(), result.stderr
    for commands in (f"get /link/{KEY_NAME} {tmp_path}/k\n", "ls /files\n", "ls /myapp/alias\n"):
        result = subprocess.run(
            ["sftp", "-b", "-", "-P", str(container.ssh_port), *options, "st@127.0.0.1"],
            input=commands, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode != 0 and not (tmp_path / "k").exists(), result.stderr


def test_start_says_once_that_the_state_lies_in_the_root(container: Container) -> None:
    text = container.server_log.read_text()
    assert text.count("the state folder") == 1, text
    assert text.count("the log folder") == 1, text


def test_served_root_inside_the_state_folder_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "data").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "serve", "--root", str(state / "data"),
         "--state-dir", str(state), "--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "inside the state folder" in result.stderr
