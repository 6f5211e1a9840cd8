"""Holes an attacker's probe found around the server's own files and logins, each shut."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import paramiko
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    http_port,
    password_hash,
    start_server,
    stop_server,
    wait_until,
    write_config,
)

from hoody_mount.api.errors import from_os_error
from hoody_mount.http_rules import status_line

_request = basic_request


def test_a_jail_swapped_for_a_link_is_refused(tmp_path: Path) -> None:
    """A user who may write above another's jail moves it away and leaves a link to
    '/' in its place: the other user gets 503, never the whole served root."""
    root = tmp_path / "root"
    (root / "area" / "app").mkdir(parents=True)
    (root / "secret.txt").write_text("not for the reader")
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
root = "{root}"
state_dir = "{tmp_path / "state"}"
[ssh]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[users.root]
password_hash = "{password_hash(PASSWORD)}"
[users.writer]
password_hash = "{password_hash(PASSWORD)}"
root = "/area"
[users.reader]
password_hash = "{password_hash(READER_PASSWORD)}"
root = "/area/app"
access = "ro"
"""
    )
    config.chmod(0o600)
    process, _port, banner = start_server(["--config", str(config)], tmp_path / "log")
    port = http_port(banner)
    try:
        status, body = _request(port, "GET", "/api/v1/files/?json", "reader", READER_PASSWORD)
        assert status == 200, body
        move = json.dumps({"action": "move", "to": "/app-old"}).encode()
        status, body = _request(
            port, "POST", "/api/v1/files/app", "writer", PASSWORD, move,
            **{"Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 200, body
        os.symlink("/", root / "area" / "app")  # what the writer can do over SFTP
        status, body = _request(port, "GET", "/api/v1/files/?json", "reader", READER_PASSWORD)
        assert status == 503, (status, body)
        assert b"secret.txt" not in body
    finally:
        stop_server(process)


def test_deeply_nested_json_is_a_clear_400(server: Server) -> None:
    (server.root / "j.txt").write_text("x")
    body = b"[" * 5000 + b"]" * 5000
    status, answer = _request(
        server.http_port, "POST", "/api/v1/files/j.txt", "root", PASSWORD, body,
        **{"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 400, answer
    assert json.loads(answer)["error"] == "bad_json"
    assert "Traceback" not in server.log.read_text()


def test_ssh_banner_names_no_library(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        banner = sock.recv(256)
    assert banner.startswith(b"SSH-2.0-hoody-mount\r\n"), banner
    assert b"AsyncSSH" not in banner


def test_a_failed_tree_removal_is_logged(server: Server) -> None:
    """A recursive delete that stops part-way (a mount point inside) says so in the log."""
    tree = server.root / "t3"
    (tree / "m").mkdir(parents=True)
    (tree / "f0").write_text("y")
    result = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tree / "m")], capture_output=True)
    assert result.returncode == 0, result.stderr
    try:
        (tree / "m" / "inner").write_text("on another filesystem")
        status, body = _request(
            server.http_port, "DELETE", "/api/v1/files/t3?recursive", "root", PASSWORD
        )
        assert status >= 400, body
        wanted = 'failed user=root proto=http op=remove-tree path="/t3"'
        assert wait_until(lambda: wanted in server.log.read_text(), 20), server.log.read_text()
    finally:
        subprocess.run(["umount", "-l", str(tree / "m")], capture_output=True)


def test_tls_clients_that_leave_mid_request_leave_no_traceback(
    tmp_path: Path, client_key: Path
) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    config = tmp_path / "c.toml"
    write_config(config, root, state, client_key.with_suffix(".pub").read_text().strip())
    process, _port, banner = start_server(["--config", str(config), "--tls"], tmp_path / "log")
    try:
        port = http_port(banner)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET /x HTTP/1.1\r\n")
        time.sleep(1)
        assert "Traceback" not in (tmp_path / "log").read_text()
    finally:
        stop_server(process)


def test_paramiko_still_connects(server: Server) -> None:
    """(The banner change keeps clients that read it working.)"""
    transport = paramiko.Transport(("127.0.0.1", server.port))
    try:
        transport.connect(username="root", password=PASSWORD)
        assert transport.remote_version == "SSH-2.0-hoody-mount"
    finally:
        transport.close()


def test_a_body_that_stops_arriving_is_408_not_500() -> None:
    """cheroot raises TimeoutError when a PUT's body stops arriving for its timeout: the
    API answers 408 (it answered 500 "timed out")."""
    error = from_os_error(TimeoutError("timed out"))
    assert (error.status, error.code) == (408, "request_timeout")
    assert status_line(408) == "408 Request Timeout"
