"""The file page's Mount panel: commands for the signed-in user with the host people
type (``public_host``, else the one the browser reached) and the ports the server
really listens on, only for the protocols the user may use; ``public_host`` checked at
start."""

from __future__ import annotations

import html
import http.client
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORD, basic_request, password_hash, served

from hoody_mount.mount_commands import Where, systems

PAGE = "/api/v1/files/"


def bearer_request(port: int, path: str, token: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "text/html"}
        )
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def _panel(port: int, user: str, password: str, **headers: str) -> str:
    status, body = basic_request(port, "GET", PAGE, user, password, Accept="text/html", **headers)
    assert status == 200, body[:500]
    text = body.decode()
    start = text.find('<dialog id="mount"')
    return html.unescape(text[start : text.index("</dialog>", start)]) if start >= 0 else ""


def test_the_panel_names_public_host_and_the_real_ports(tmp_path: Path, client_key: Path) -> None:
    top = 'public_host = "files.example.com"'
    with served(tmp_path, client_key, top=top) as server:
        panel = _panel(server.http_port, "root", PASSWORD)
        assert f"sshfs -p {server.port} root@files.example.com:/ ~/hoody" in panel, panel
        assert f"http://files.example.com:{server.http_port}/dav/" in panel
        assert f"\\\\files.example.com@{server.http_port}\\dav" in panel  # Explorer's form
        assert f"winscp.exe sftp://root@files.example.com:{server.port}/" in panel
        assert "vendor owncloud" in panel and "--vfs-cache-mode writes" in panel
        assert "PASSWORD" in panel and PASSWORD not in panel


def test_only_the_protocols_a_user_may_use(tmp_path: Path, client_key: Path) -> None:
    users = f"""
[users.davonly]
password_hash = "{password_hash(PASSWORD)}"
protocols = ["webdav", "http"]
"""
    with served(tmp_path, client_key, users=users) as server:
        panel = _panel(server.http_port, "davonly", PASSWORD, Host="nas.local:8443")
        assert "sshfs" not in panel and "WinSCP" not in panel, panel
        assert "http://nas.local:8443/dav/" in panel, panel
        everything = _panel(server.http_port, "root", PASSWORD)
        assert "root@127.0.0.1:/" in everything and "sshfs" in everything


@pytest.mark.parametrize("host", ["a;id;b", "x$(id)y", "h`id`", "a&calc&b", "<b>x</b>"])
def test_a_host_header_that_is_no_host_name_never_reaches_a_command(
    tmp_path: Path, client_key: Path, host: str
) -> None:
    """Without public_host the commands name the host the browser reached, but only a
    plain name or address: anything else (shell code someone would paste) gives way to
    the listener's address."""
    with served(tmp_path, client_key) as server:
        panel = _panel(server.http_port, "root", PASSWORD, Host=host)
        assert f"sshfs -p {server.port} root@127.0.0.1:/ ~/hoody" in panel, panel
        assert host not in panel and "$(id)" not in panel


def test_a_read_only_login_is_told_what_a_mount_with_the_password_gets(
    tmp_path: Path, client_key: Path
) -> None:
    with served(tmp_path, client_key) as server:
        assert "the account's own rights" not in _panel(server.http_port, "root", PASSWORD)
        token = subprocess.run(
            [sys.executable, "-m", "hoody_mount", "token", "create", "root", "--ro",
             "--config", str(tmp_path / "hoody-mount.toml")],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()[0]  # fmt: skip
        status, body = bearer_request(server.http_port, PAGE, token)
        assert status == 200 and "the account&#x27;s own rights" in body, body[:300]


def test_commands_for_tls_ipv6_and_default_ports() -> None:
    where = Where(host="::1", ssh_port=22, web_scheme="https", web_port=443)
    text = "\n".join(
        c.text for s in systems(where, "ann", frozenset({"sftp", "webdav"})) for c in s.commands
    )
    assert "sshfs -p 22 ann@[::1]:/ ~/hoody" in text
    assert "https://[::1]/dav/" in text and "--no-check-certificate" in text
    assert "\\\\::1@SSL\\dav" in text
    names = [s.name for s in systems(where, "ann", frozenset({"http"}))]
    assert names == []


@pytest.mark.parametrize(
    "value", ["https://files.example.com", "files.example.com:8080", "bad host", "-x.example"]
)
def test_a_public_host_that_is_not_one_is_refused_at_start(tmp_path: Path, value: str) -> None:
    (tmp_path / "root").mkdir()
    config = tmp_path / "c.toml"
    config.write_text(
        f'root = "root"\npublic_host = "{value}"\n'
        f'[users.root]\npassword_hash = "{password_hash(PASSWORD)}"\n'
    )
    config.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "serve", "--config", str(config),
         "--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "public_host" in result.stderr and "not a host name" in result.stderr
    assert "Traceback" not in result.stderr
