"""SIGHUP reloads the configuration without dropping a session: new users log in, a
removed user's sessions end with the reason, open sessions keep the rights they had,
a configuration that does not load changes nothing (one log line says why), and a new
TLS certificate serves new connections."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    http_port,
    password_hash,
    require,
    served,
    server_log,
    start_server,
    stop_server,
    wait_until,
    write_config,
)
from test_clients_mount import sshfs_mount

NEW_PASSWORD = "a new user's password"


def _config(server: Server) -> Path:
    return server.state.parent / "hoody-mount.toml"


def _reload(server: Server, expected: str) -> None:
    """SIGHUP, then wait for a new log line holding ``expected``."""
    before = server_log(server).count(expected)
    server.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: server_log(server).count(expected) > before, 20), server_log(server)


async def _login(server: Server, user: str, password: str) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1", server.port, username=user, password=password,
        known_hosts=None, client_keys=None,
    )  # fmt: skip


def test_a_new_user_logs_in_while_an_sshfs_mount_stays_usable(
    server: Server, tmp_path: Path
) -> None:
    """A user added to the file logs in after SIGHUP; an sshfs mount made before keeps
    working across the reload."""
    with sshfs_mount(server, "root", tmp_path / "mnt", tmp_path / "sshfs.log") as mnt:
        (mnt / "share" / "before.txt").write_text("before\n")
        with _config(server).open("a") as text:
            text.write(
                f'\n[users.newbie]\npassword_hash = "{password_hash(NEW_PASSWORD)}"\n'
                'root = "/share"\n'
            )
        _reload(server, "reloaded")
        assert "added newbie" in server_log(server)

        async def newbie() -> list[str]:
            async with await _login(server, "newbie", NEW_PASSWORD) as conn:
                sftp = await conn.start_sftp_client()
                return sorted(await sftp.listdir("/"))

        assert "before.txt" in asyncio.run(newbie())
        (mnt / "share" / "after.txt").write_text("after\n")
        assert (mnt / "share" / "before.txt").read_text() == "before\n"
    assert (server.root / "share" / "after.txt").read_text() == "after\n"


def test_a_config_that_does_not_load_changes_nothing(server: Server) -> None:
    """Broken TOML: one error line names the file and the mistake; the users stay."""
    config = _config(server)
    good = config.read_text()
    config.write_text(good + "\n[users.broken\n")
    _reload(server, "reload failed")
    line = [x for x in server_log(server).splitlines() if "reload failed" in x][-1]
    assert "stays as it was" in line and "not valid TOML" in line and str(config) in line
    status, _ = basic_request(server.http_port, "GET", "/api/v1/files/", "root", PASSWORD)
    assert status == 200
    config.write_text(good.replace('[users.reader]\npassword_hash = "', '[users.reader]\nx = "'))
    _reload(server, "reload failed")
    assert "users.reader.x: unknown key" in server_log(server)
    status, _ = basic_request(server.http_port, "GET", "/api/v1/files/", "reader", "wrong")
    assert status == 401


def test_a_removed_user_is_ended_and_others_keep_their_rights(server: Server) -> None:
    """Removing ``reader`` ends its open session (told why) and refuses it afterwards;
    making ``root`` read-only leaves root's open session writable while a new login
    is read-only."""
    config = _config(server)
    text = config.read_text()
    start = text.index("[users.reader]")
    without_reader = text[:start] + text[text.index("[users.jailed]") :]
    read_only_root = without_reader.replace("[users.root]\n", '[users.root]\naccess = "ro"\n', 1)

    async def scenario() -> None:
        reader = await _login(server, "reader", READER_PASSWORD)
        reader_sftp = await reader.start_sftp_client()
        root = await _login(server, "root", PASSWORD)
        root_sftp = await root.start_sftp_client()
        config.write_text(read_only_root)
        await asyncio.to_thread(_reload, server, "reloaded")
        await asyncio.wait_for(reader.wait_closed(), 20)
        with pytest.raises(asyncssh.Error):
            await reader_sftp.listdir("/")
        async with root_sftp.open("/share/kept-rights.txt", "w") as f:
            await f.write("still writable\n")
        async with await _login(server, "root", PASSWORD) as fresh:
            fresh_sftp = await fresh.start_sftp_client()
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                async with fresh_sftp.open("/share/new-login.txt", "w"):
                    pass
        with pytest.raises(asyncssh.PermissionDenied):
            await _login(server, "reader", READER_PASSWORD)
        root.close()

    asyncio.run(scenario())
    assert (server.root / "share" / "kept-rights.txt").read_text() == "still writable\n"
    log = server_log(server)
    assert "removed reader" in log and "changed root" in log
    assert "ended 1 sessions of removed users" in log


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    require("openssl")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", f"/CN={name}", "-days", "2", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _served_fingerprint(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_a_new_certificate_serves_new_connections(tmp_path: Path, client_key: Path) -> None:
    """The certificate files replaced and SIGHUP: new TLS connections get the new one;
    a certificate that does not load keeps the old one (one line says why)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    first, second = _certificate(certs, "first"), _certificate(certs, "second")
    live_cert, live_key = certs / "live.crt", certs / "live.key"
    live_cert.write_bytes(first[0].read_bytes())
    live_key.write_bytes(first[1].read_bytes())
    with served(tmp_path / "tls", client_key, flags=("--tls",)) as server:
        config = _config(server)
        text = config.read_text().replace(
            "[http]\n", f'[http]\ncert = "{live_cert}"\nkey = "{live_key}"\n', 1
        )
        config.write_text(text)
        self_signed = _served_fingerprint(server.http_port)
        _reload(server, "reloaded")
        assert _served_fingerprint(server.http_port) == _fingerprint(first[0]) != self_signed
        live_cert.write_bytes(second[0].read_bytes())
        live_key.write_bytes(second[1].read_bytes())
        _reload(server, "reloaded")
        assert _served_fingerprint(server.http_port) == _fingerprint(second[0])
        live_key.write_bytes(first[1].read_bytes())  # (no longer the certificate's key)
        _reload(server, "reload failed")
        failed = [x for x in server_log(server).splitlines() if "reload failed" in x]
        assert "TLS certificate" in failed[-1] and str(live_key) in failed[-1], failed
        assert _served_fingerprint(server.http_port) == _fingerprint(second[0])


def _fingerprint(cert: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).hexdigest()


def test_a_removed_users_request_with_a_slow_body_is_ended(
    tmp_path: Path, client_key: Path
) -> None:
    """A DELETE whose chunked body trickles in (read whole before it runs) belongs to
    its user's sessions: removing the user ends it with 503, and nothing is deleted."""
    temp = f'\n[users.temp]\npassword_hash = "{password_hash(NEW_PASSWORD)}"\nroot = "/share"\n'
    with served(tmp_path, client_key, users=temp) as server:
        victim = server.root / "share" / "victim.txt"
        victim.write_text("keep me\n")
        token = base64.b64encode(f"temp:{NEW_PASSWORD}".encode()).decode()
        sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
        sock.sendall(
            b"DELETE /api/v1/files/victim.txt HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Basic {token}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"10\r\n"
            + b"x" * 16
            + b"\r\n"
        )
        assert wait_until(lambda: "temp" in _listed(server), 10)
        config = _config(server)
        config.write_text(config.read_text().replace(temp, "\n"))
        _reload(server, "reloaded")
        answer = sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert victim.read_text() == "keep me\n"


def _listed(server: Server) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "connections", "--state-dir", str(server.state)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout


LOCK_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:">'
    b"<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>"
    b"</D:lockinfo>"
)


def test_a_removed_user_leaves_no_locks_or_tokens(tmp_path: Path, client_key: Path) -> None:
    """A removed user's WebDAV locks are released (others may write its files again)
    and its tokens revoked: the same name added again does not bring them back."""
    temp = f'\n[users.temp]\npassword_hash = "{password_hash(NEW_PASSWORD)}"\nroot = "/share"\n'
    with served(tmp_path, client_key, users=temp) as server:
        config = _config(server)
        made = subprocess.run(
            [sys.executable, "-m", "hoody_mount", "token", "create", "temp", "--config",
             str(config)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        token = made.stdout.strip()
        status, _ = basic_request(
            server.http_port, "LOCK", "/dav/locked.txt", "temp", NEW_PASSWORD, LOCK_BODY,
            Timeout="Second-99999", Depth="0",
        )  # fmt: skip
        assert status in (200, 201)
        status, _ = basic_request(server.http_port, "PUT", "/dav/share/locked.txt", "root",
                                  PASSWORD, b"root's")  # fmt: skip
        assert status == 423
        config.write_text(config.read_text().replace(temp, "\n"))
        _reload(server, "reloaded")
        assert wait_until(lambda: "released 2 locks and tokens" in server_log(server), 10)
        status, _ = basic_request(server.http_port, "PUT", "/dav/share/locked.txt", "root",
                                  PASSWORD, b"root's")  # fmt: skip
        assert status in (201, 204)
        config.write_text(config.read_text() + temp)
        _reload(server, "added temp")
        reply = _bearer(server.http_port, "/api/v1/files/", token)
        assert reply == 401


def _bearer(port: int, path: str, token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def test_tls_and_other_start_settings_wait_for_a_restart(server: Server) -> None:
    """Turning TLS on in the file and reloading changes nothing but a warning, which
    every later reload repeats while the file and the running server differ."""
    config = _config(server)
    config.write_text(
        config.read_text().replace("[http]\n", "[http]\ntls = true\nthreads = 8\n", 1)
    )
    _reload(server, "a restart is needed")
    _reload(server, "a restart is needed")
    assert "a restart is needed for http.tls, http.threads" in server_log(server)
    status, _ = basic_request(server.http_port, "GET", "/api/v1/files/", "root", PASSWORD)
    assert status == 200  # (still plain HTTP)


def test_a_reload_with_the_password_in_the_environment_changes_no_user(
    tmp_path: Path, client_key: Path
) -> None:
    """The default user's password from HOODY_MOUNT_PASSWORD (hashed anew at each
    hashing) does not make every reload name that user as changed."""
    root, state = tmp_path / "root", tmp_path / "state"
    (root / "home" / "jailed").mkdir(parents=True)
    config = tmp_path / "hoody-mount.toml"
    write_config(config, root, state, client_key.with_suffix(".pub").read_text().strip())
    text = config.read_text()
    start = text.index("[users.root]\npassword_hash = ") + len("[users.root]\n")
    config.write_text(text[:start] + text[text.index("\n", start) + 1 :])  # (no hash)
    log = tmp_path / "server.log"
    process, port, banner = start_server(
        ["--config", str(config)], log, env={"HOODY_MOUNT_PASSWORD": "from the environment"}
    )
    server = Server(port, root, tmp_path, state, client_key, process, log, http_port(banner))
    try:
        _reload(server, "reloaded")
        assert "reloaded" in server_log(server) and "no user changed" in server_log(server)
        status, _ = basic_request(
            server.http_port, "GET", "/api/v1/files/", "root", "from the environment"
        )
        assert status == 200
    finally:
        stop_server(process)
