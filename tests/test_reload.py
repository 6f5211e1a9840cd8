"""SIGHUP reloads the configuration without dropping a session: new users log in, a
removed user's sessions end with the reason, open sessions keep the rights they had,
a configuration that does not load changes nothing (one log line says why), and a new
TLS certificate serves new connections."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import asyncssh
import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    password_hash,
    require,
    served,
    server_log,
    wait_until,
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
    read_only_root = without_reader.replace(
        "[users.root]\n", '[users.root]\naccess = "ro"\n', 1
    )

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
            '[http]\n', f'[http]\ncert = "{live_cert}"\nkey = "{live_key}"\n', 1
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
        assert "TLS" in failed[-1], failed
        assert _served_fingerprint(server.http_port) == _fingerprint(second[0])


def _fingerprint(cert: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).hexdigest()
