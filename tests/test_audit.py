"""The audit trail: every change over every protocol writes exactly one line, made by the
core where the change is committed; names cannot forge or break lines; downloads are
logged at the end of the transfer and can be turned down; the log file is private."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import paramiko
import pytest
from conftest import (
    PASSWORD,
    basic_request,
    http_port,
    password_hash,
    require,
    start_server,
    stop_server,
    wait_until,
)

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@dataclass
class Logged:
    """A running server that logs to a file."""

    root: Path
    log: Path
    stderr: Path
    ssh_port: int
    http_port: int
    key: Path

    def lines(self, pattern: str) -> list[str]:
        """The log lines that hold ``pattern``."""
        return [line for line in self.log.read_text().splitlines() if pattern in line]

    def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        """The lines holding ``pattern`` once there are ``count`` of them (the log thread
        writes every quarter second)."""
        wait_until(lambda: len(self.lines(pattern)) >= count, 20)
        return self.lines(pattern)

    def http(self, method: str, path: str, body: bytes = b"", **headers: str) -> int:
        """One request as root; its status."""
        return basic_request(self.http_port, method, path, "root", PASSWORD, body, **headers)[0]


def _start(tmp_path: Path, client_key: Path, extra: str = "") -> tuple[Logged, object]:
    root, logs = tmp_path / "root", tmp_path / "logs"
    root.mkdir(parents=True)
    logs.mkdir(exist_ok=True)
    pub = client_key.with_suffix(".pub").read_text().strip()
    config = tmp_path / "server.toml"
    config.write_text(
        f"""
root = "{root}"
state_dir = "{tmp_path / "state"}"
log_dir = "{logs}"
{extra}

[ssh]
listen = "127.0.0.1:0"

[http]
listen = "127.0.0.1:0"

[users.root]
password_hash = "{password_hash(PASSWORD)}"
authorized_keys = ["{pub}"]
"""
    )
    process, ssh_port, banner = start_server(["--config", str(config)], tmp_path / "stderr.log")
    logged = Logged(
        root, logs / "hoody-mount.log", tmp_path / "stderr.log", ssh_port, http_port(banner),
        client_key,
    )  # fmt: skip
    return logged, process


@pytest.fixture
def logged(tmp_path: Path, client_key: Path) -> Iterator[Logged]:
    server, process = _start(tmp_path, client_key)
    yield server
    stop_server(process)  # type: ignore[arg-type]


def _sftp(server: Logged) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", server.ssh_port))
    transport.connect(username="root", password=PASSWORD)
    client = paramiko.SFTPClient.from_transport(transport)
    assert client is not None
    return transport, client


def _changes(server: Logged) -> list[str]:
    return server.lines("hoody_mount.audit: ")


def test_every_upload_writes_exactly_one_line(logged: Logged, tmp_path: Path) -> None:
    data = b"x" * 100_000
    assert logged.http("PUT", "/dav/dav.bin", data) == 201
    line = logged.wait_for('op=upload path="/dav.bin"')
    assert len(line) == 1 and "proto=webdav" in line[0] and "bytes=100000" in line[0]
    assert logged.http("PUT", "/api/v1/files/api.bin", data) == 201
    line = logged.wait_for('op=upload path="/api.bin"')
    assert len(line) == 1 and "proto=http" in line[0]
    assert f"sha256={hashlib.sha256(data).hexdigest()}" in line[0]
    transport, sftp = _sftp(logged)
    try:
        with sftp.open("/sftp.bin", "w") as handle:
            handle.write(data)
            handle.write(data)
        with sftp.open("/sftp.bin", "a") as handle:
            handle.write(b"tail")
        with sftp.open("/sftp.bin", "r") as handle:
            assert len(handle.read()) == 200_004
    finally:
        transport.close()
    lines = logged.wait_for('op=write path="/sftp.bin" bytes=', 2)
    assert len(lines) == 2, lines
    assert "op=write" in lines[0] and "bytes=200000 (create)" in lines[0]
    assert "bytes=4 (update)" in lines[1]
    require("scp")
    source = tmp_path / "scp.bin"
    source.write_bytes(data)
    for extra in ([], ["-O"]):
        target = f"/scp{len(extra)}.bin"
        result = subprocess.run(
            ["scp", *extra, "-P", str(logged.ssh_port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
             "-i", str(logged.key), str(source), f"root@127.0.0.1:{target}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        line = logged.wait_for(f'path="{target}" bytes=')
        assert len(line) == 1 and "bytes=100000" in line[0], line
    # Other changes: one line each, from every front.
    assert logged.http("MOVE", "/dav/dav.bin", Destination="/dav/moved.bin") == 201
    assert logged.http("COPY", "/dav/moved.bin", Destination="/dav/copied.bin") == 201
    assert logged.http("DELETE", "/api/v1/files/copied.bin") == 204
    for pattern in (
        'op=rename path="/dav.bin" -> "/moved.bin"',
        'op=copy path="/moved.bin" -> "/copied.bin"',
        'op=remove path="/copied.bin"',
    ):
        assert len(logged.wait_for(pattern)) == 1, pattern
    # A folder's COPY is one call of the core: one line for the whole tree (WsgiDAV drove
    # it member by member: a line per folder made, for its times, and for each file).
    (logged.root / "tree" / "sub").mkdir(parents=True)
    (logged.root / "tree" / "sub" / "f.txt").write_bytes(b"f")
    assert logged.http("COPY", "/dav/tree", Destination="/dav/tree2") == 201
    assert len(logged.wait_for('op=copy path="/tree" -> "/tree2"')) == 1
    assert (logged.root / "tree2" / "sub" / "f.txt").read_bytes() == b"f"
    # A dead property is kept in WsgiDAV's store, not in a file: it is logged too.
    body = (
        b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
        b"<D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>"
    )
    assert logged.http("PROPPATCH", "/dav/moved.bin", body, **{"Content-Type": "text/xml"}) == 207
    line = logged.wait_for('op=proppatch path="/moved.bin" property={urn:z}colour (set)')
    assert len(line) == 1, line
    # scp over SFTP sets the mode with an FSETSTAT of its own: a change of its own.
    assert len(logged.lines('op=fsetstat path="/scp0.bin"')) == 1
    assert len(_changes(logged)) == 12, "\n".join(_changes(logged))


def test_downloads_are_logged_at_the_end(logged: Logged) -> None:
    (logged.root / "big.bin").write_bytes(b"y" * 300_000)
    assert logged.http("GET", "/api/v1/files/big.bin") == 200
    assert logged.http("GET", "/dav/big.bin") == 200
    transport, sftp = _sftp(logged)
    try:
        with sftp.open("/big.bin") as handle:
            assert len(handle.read()) == 300_000
    finally:
        transport.close()
    lines = logged.wait_for('op=read path="/big.bin" bytes=300000', 3)
    assert len(lines) == 3
    assert all("hoody_mount.access" in line and "seconds=" in line for line in lines)
    assert {re.search(r"proto=(\w+)", line).group(1) for line in lines} == {  # type: ignore[union-attr]
        "http",
        "webdav",
        "sftp",
    }
    assert logged.wait_for("login root from 127.0.0.1"), "logins are logged too"
    # Hashing is no download: sha256sum over ssh reads the file but sends 64 digits.
    require("ssh")
    result = subprocess.run(
        ["ssh", "-p", str(logged.ssh_port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-i", str(logged.key),
         "root@127.0.0.1", "sha256sum /big.bin"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and hashlib.sha256(b"y" * 300_000).hexdigest() in result.stdout
    assert logged.wait_for("logout root")
    assert len(logged.lines('op=read path="/big.bin"')) == 3


def test_downloads_can_be_turned_down(tmp_path: Path, client_key: Path) -> None:
    server, process = _start(tmp_path, client_key, "access_log = false")
    try:
        (server.root / "f.txt").write_text("content")
        assert server.http("GET", "/api/v1/files/f.txt") == 200
        assert server.http("PUT", "/api/v1/files/g.txt", b"new") == 201
        assert server.wait_for('op=upload path="/g.txt"')
        assert not server.lines("op=read")
        assert not server.lines("hoody_mount.access")
    finally:
        stop_server(process)  # type: ignore[arg-type]


def test_names_cannot_forge_or_break_lines(logged: Logged) -> None:
    forged = "x\n2026-12-02 16:40:00,000 INFO hoody_mount.audit: user=root op=mkdir FORGED"

    async def make() -> None:
        async with asyncssh.connect(
            "127.0.0.1", logged.ssh_port, username="root", password=PASSWORD,
            known_hosts=None, client_keys=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
            await sftp.mkdir(b"/x\xff")
            await sftp.mkdir(b"/tab\there\x1b[31m\\")
            await sftp.mkdir(forged.encode())
            await sftp.mkdir('/q" bytes=1 x="')

    asyncio.run(asyncio.wait_for(make(), 60))
    assert os.path.isdir(os.fsencode(logged.root) + b"/x\xff")
    logged.wait_for("op=mkdir", 4)
    text = logged.log.read_text()
    for line in text.splitlines():
        assert LINE.match(line), f"a line that is not a log line: {line!r}"
    assert 'path="/x\\xff"' in text
    assert 'path="/tab\\there\\x1b[31m\\\\"' in text
    assert 'path="/x\\n2026-12-02 16:40:00,000 INFO hoody_mount.audit: user=root' in text
    assert sum("FORGED" in line for line in text.splitlines()) == 1
    # A quote in a name cannot end the quoted path early and fake a field.
    assert 'path="/q\\x22 bytes=1 x=\\x22"' in text
    stderr = logged.stderr.read_text()
    assert "Traceback" not in stderr and "UnicodeEncodeError" not in stderr, stderr


def test_log_file_is_private(tmp_path: Path, client_key: Path) -> None:
    fresh, process = _start(tmp_path / "new", client_key)
    try:
        assert stat.S_IMODE(fresh.log.stat().st_mode) == 0o640
    finally:
        stop_server(process)  # type: ignore[arg-type]
    # A log left by an older version, readable and writable by everyone, is made private.
    logs = tmp_path / "old" / "logs"
    logs.mkdir(parents=True)
    (logs / "hoody-mount.log").write_text("2026-01-01 00:00:00,000 INFO old: line\n")
    os.chmod(logs / "hoody-mount.log", 0o666)
    old, process = _start(tmp_path / "old", client_key)
    try:
        assert stat.S_IMODE(old.log.stat().st_mode) == 0o640
        assert old.log.read_text().startswith("2026-01-01 00:00:00,000 INFO old: line\n")
    finally:
        stop_server(process)  # type: ignore[arg-type]


def test_each_http_request_is_one_access_line(logged: Logged) -> None:
    """A line per HTTP request: method, path, status, bytes sent, seconds, user and
    address (refused logins too, with no user); none for the health probes."""
    (logged.root / "f.txt").write_bytes(b"z" * 1234)
    assert logged.http("GET", "/api/v1/files/f.txt") == 200
    assert logged.http("PUT", "/dav/g.txt", b"new") == 201
    line = logged.wait_for('http GET "/api/v1/files/f.txt" 200 bytes=1234 ')[0]
    assert "hoody_mount.access" in line and "user=root address=127.0.0.1" in line, line
    assert re.search(r"seconds=\d+\.\d{3}", line), line
    assert logged.wait_for('http PUT "/dav/g.txt" 201 bytes=')
    conn = http.client.HTTPConnection("127.0.0.1", logged.http_port, timeout=30)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    assert not logged.lines("/healthz")


def test_http_access_lines_can_be_turned_down(tmp_path: Path, client_key: Path) -> None:
    server, process = _start(tmp_path, client_key, "access_log = false")
    try:
        assert server.http("PUT", "/api/v1/files/g.txt", b"new") == 201
        assert server.wait_for('op=upload path="/g.txt"')
        assert not server.lines('http PUT "')
    finally:
        stop_server(process)  # type: ignore[arg-type]
