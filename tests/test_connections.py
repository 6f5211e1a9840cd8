"""``hoody-mount connections``: the running server's open sessions, listed and ended
over the control socket in the state folder, never over the network."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

from conftest import PASSWORD, Server, require, server_log, wait_until


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    config = server.state.parent / "hoody-mount.toml"
    return subprocess.run(
        [sys.executable, "-m", "hoody_mount", "connections", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _rows(server: Server) -> list[dict]:
    done = _cli(server, "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_a_live_sftp_session_is_listed_and_killed(server: Server) -> None:
    """An OpenSSH sftp session shows its user, protocol, address and the bytes it
    moved; kill ends it, the client is told why, and the list and the log say so."""
    require("sftp")
    data = os.urandom(200_000)
    local = server.root.parent / "live.bin"
    local.write_bytes(data)
    # (at LogLevel INFO, ssh prints the reason of a disconnect)
    options = [o.replace("LogLevel=ERROR", "LogLevel=INFO") for o in server.ssh_options()]
    client = subprocess.Popen(
        ["sftp", "-b", "-", "-P", str(server.port), *options, "root@127.0.0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert client.stdin is not None
    try:
        client.stdin.write(f"put {local} /share/live.bin\n")
        client.stdin.flush()
        target = server.root / "share" / "live.bin"
        assert wait_until(lambda: target.exists() and target.read_bytes() == data, 30)
        rows = [row for row in _rows(server) if row["protocol"] == "sftp"]
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["user"] == "root" and row["address"] == "127.0.0.1"
        assert row["received"] > len(data) and row["sent"] > 0
        assert row["doing"] in ("close", "fsetstat", "lstat", "stat", "realpath"), row
        table = _cli(server)
        assert table.returncode == 0 and f"{row['id']}\troot\tsftp\t127.0.0.1" in table.stdout
        killed = _cli(server, "kill", str(row["id"]))
        assert killed.returncode == 0 and f"ended session {row['id']}" in killed.stdout
        _, err = client.communicate("ls /share\n", timeout=30)
    finally:
        client.kill()
    assert client.returncode != 0
    assert "ended by the administrator" in err, err
    assert wait_until(lambda: not _rows(server), 10)
    assert wait_until(lambda: "logout root" in server_log(server), 10)
    logout = [line for line in server_log(server).splitlines() if "logout root" in line]
    assert 'ended="ended by the administrator' in logout[-1], logout[-1]
    assert f"session {row['id']} of root (sftp from 127.0.0.1) ended by the administrator" in (
        server_log(server)
    )
    counted = re.search(r"\(sftp\) received=(\d+) sent=(\d+)", logout[-1])
    assert counted, logout[-1]
    assert int(counted[1]) >= row["received"] and int(counted[2]) >= row["sent"]


DOING = "GET /api/v1/files/share/big\t9\n\x1b[2K.bin"


def test_a_download_in_flight_is_listed_and_killed(server: Server) -> None:
    """An HTTP download the client reads slowly is a session (protocol, method and
    path); kill cuts its connection."""
    # (a name with a tab, a newline and a terminal escape: it must not forge a row)
    (server.root / "share" / "big\t9\n\x1b[2K.bin").write_bytes(os.urandom(64 << 20))
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    sock.sendall(
        b"GET /api/v1/files/share/big%099%0A%1B[2K.bin HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Basic {token}\r\n\r\n".encode()
    )
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")

    def listed() -> list[dict]:
        return [r for r in _rows(server) if r["doing"] == DOING]

    assert wait_until(lambda: bool(listed()), 10)
    row = listed()[0]
    assert row["protocol"] == "api" and row["user"] == "root" and row["sent"] > 0
    table = _cli(server).stdout.splitlines()
    assert len(table) == 2 and table[1].endswith("GET /api/v1/files/share/big\\t9\\n\\x1b[2K.bin")
    assert _cli(server, "kill", str(row["id"])).returncode == 0
    sock.settimeout(30)
    received = 0
    while piece := sock.recv(1 << 20):
        received += len(piece)
    assert received < 64 << 20  # cut short, not completed
    sock.close()
    assert wait_until(lambda: not listed(), 10)
    assert wait_until(lambda: 'cut="ended by the administrator' in server_log(server), 10)


def test_mistakes_get_a_clear_line(server: Server, tmp_path: Path) -> None:
    """An unknown id, and a state folder no server runs with, are one clear line and
    status 2; the socket is the owner's alone."""
    unknown = _cli(server, "kill", "999999")
    assert unknown.returncode == 2 and "no session 999999" in unknown.stderr
    # (the options may come after the subcommand, as the README writes them)
    base = [sys.executable, "-m", "hoody_mount", "connections"]
    state = ["--state-dir", str(server.state)]
    after = subprocess.run([*base, "list", "--json", *state], capture_output=True, text=True)
    assert after.returncode == 0 and json.loads(after.stdout) == [], after.stderr
    killed = subprocess.run([*base, "kill", "999999", *state], capture_output=True, text=True)
    assert killed.returncode == 2 and "no session 999999" in killed.stderr
    nobody = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "connections", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nobody.returncode == 2 and "no server is running" in nobody.stderr, nobody.stderr
    mode = (server.state / "control.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(server.state.stat().st_mode) == 0o700


def test_the_socket_refuses_garbage(server: Server) -> None:
    """A request that is not JSON, or an unknown command, gets an error, not a crash."""
    for request, expected in (
        (b"nonsense\n", "not JSON"),
        (b'{"command": "x"}\n', "unknown"),
        (b"x" * 70_000 + b"\n", "too long"),
    ):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(server.state / "control.sock"))
            sock.sendall(request)
            answer = json.loads(sock.makefile().readline())
        assert expected in answer["error"]
    assert _rows(server) == []


def test_a_second_server_on_the_same_state_folder_is_refused(server: Server) -> None:
    """Two servers on one state folder would share its socket, upload temps and locks
    (the second took the socket over and removed it when it stopped, found by the
    new-user pass): the second is refused in one line, and the first is still reached."""
    config = server.root.parent / "hoody-mount.toml"
    second = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 2, second.stderr
    assert "another hoody-mount is serving with the state folder" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    listed = _cli(server)
    assert listed.returncode == 0, listed.stderr
