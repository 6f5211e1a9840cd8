"""SSH algorithms and HTTP headers an audit looks at: no SHA-1 and no 1024-bit group
exchange over SSH (ssh-audit finds nothing that OpenSSH's own offer would not show); no
server version in HTTP answers; HSTS over HTTPS."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import PASSWORD, Server, http_port, start_server, stop_server, write_config

# ssh-audit [fail]s that a current OpenSSH's default offer shows too (the NIST curves)
ACCEPTED_FAILS = re.compile(r"^\((kex|key)\) (ecdh-sha2-nistp\d+|ecdsa-sha2-nistp\d+)\b")
SHA1 = ("diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1", "hmac-sha1")
VERSION = re.compile(rb"(WsgiDAV|Cheroot|CherryPy|Python|hoody-mount)/\d", re.IGNORECASE)


def _ssh_audit(port: int) -> str:
    program = Path(sys.executable).parent / "ssh-audit"
    if not program.exists():
        pytest.fail(f"{program} is missing: install the test extras (make test)")
    result = subprocess.run(
        [str(program), "-n", "-p", str(port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "(kex)" in result.stdout, result.stdout + result.stderr
    return result.stdout


def test_ssh_audit_finds_nothing_openssh_does_not_show(server: Server) -> None:
    """ssh-audit: no [fail] but the NIST curves OpenSSH offers too (9 before: SHA-1 key
    exchange and MACs, a 1024-bit group exchange); strict kex still offered."""
    report = _ssh_audit(server.port)
    fails, algorithm = [], ""
    for line in report.splitlines():
        if line.startswith("("):
            algorithm = line
        if "[fail]" in line and not ACCEPTED_FAILS.match(algorithm):
            fails.append(f"{algorithm.split(' -- ')[0]}: {line.strip()}")
    assert fails == [], "\n".join(fails) + "\n\n" + report
    assert "kex-strict-s-v00@openssh.com" in report, report
    assert "diffie-hellman-group-exchange-sha256 (2048-bit)" in report, report
    offered = {line.split()[1] for line in report.splitlines() if line.startswith("(")}
    assert not offered & set(SHA1) and "hmac-sha1-etm@openssh.com" not in offered, offered
    assert {"umac-64-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512-etm@openssh.com"} <= offered


def _gex(port: int, bits: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Key exchange with paramiko, group exchange only, asking for (min, pref, max) bits."""
    from paramiko.kex_gex import KexGexSHA256

    for name, value in zip(("min_bits", "preferred_bits", "max_bits"), bits, strict=True):
        monkeypatch.setattr(KexGexSHA256, name, value)
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", port), timeout=30))
    try:
        transport.get_security_options().kex = ("diffie-hellman-group-exchange-sha256",)
        transport.start_client(timeout=30)
        assert transport.is_active()
        transport.auth_password("root", PASSWORD)
        assert transport.is_authenticated()
    finally:
        transport.close()


def test_group_exchange_refuses_1024_bits(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client asking for min=pref=max=1024 bits completed key exchange (OpenSSH ends it);
    asking for 2048 or more still works."""
    _gex(server.port, (2048, 2048, 8192), monkeypatch)
    _gex(server.port, (1024, 1024, 8192), monkeypatch)  # gets 2048 bits, within its range
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        _gex(server.port, (1024, 1024, 1024), monkeypatch)


def test_openssh_client_still_connects(server: Server) -> None:
    result = server.sftp_batch("ls /share\n")
    assert result.returncode == 0 and "docs" in result.stdout, result.stderr


def _request(
    port: int, method: str, path: str, tls: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 request as root; status, headers (lower-case names), body."""
    credentials = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {credentials}\r\n"
        "Depth: 0\r\nConnection: close\r\n\r\n"
    )
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = context.wrap_socket(raw)
    with raw as conn:
        conn.sendall(head.encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


ERRORS = [
    ("GET", "/dav/no-such-file", 404),
    ("FOO", "/dav/", 405),
    ("GET", "/no-such-share", 404),
    ("GET", "/api/v1/files/no-such-file", 404),
    ("PATCH", "/api/v1/files/", 405),
]


def test_error_answers_show_no_server_version(server: Server) -> None:
    """404 and 405 from WebDAV and the file API: the Server header is ``hoody-mount`` and
    no body names a server with its version (WsgiDAV/4.4.0 signed its error pages)."""
    for method, path, status in ERRORS:
        code, headers, body = _request(server.http_port, method, path)
        assert code == status, (method, path, code, body[:300])
        assert headers.get("server") == "hoody-mount", (path, headers)
        assert not VERSION.search(body), (method, path, body.decode(errors="replace"))
        assert "strict-transport-security" not in headers, "HSTS is for HTTPS only"


@pytest.fixture
def tls_server(tmp_path: Path, client_key: Path) -> Iterator[int]:
    """A server with ``--tls`` (self-signed); its HTTPS port."""
    root = tmp_path / "root"
    (root / "share").mkdir(parents=True)
    config = tmp_path / "c.toml"
    write_config(
        config, root, tmp_path / "state", client_key.with_suffix(".pub").read_text().strip()
    )
    process, _, banner = start_server(["--config", str(config), "--tls"], tmp_path / "log")
    assert "HTTP listening on https://" in banner, banner
    yield http_port(banner)
    stop_server(process)


def test_https_answers_carry_hsts(tls_server: int) -> None:
    """Over HTTPS every answer, errors included, carries Strict-Transport-Security."""
    for method, path, status in [("PROPFIND", "/dav/", 207), ("GET", "/api/v1/files/", 200)]:
        code, headers, _ = _request(tls_server, method, path, tls=True)
        assert code == status, (method, path, code)
        assert headers.get("strict-transport-security") == "max-age=31536000", headers
    for method, path, status in ERRORS:
        code, headers, body = _request(tls_server, method, path, tls=True)
        assert code == status, (method, path, code)
        assert headers.get("strict-transport-security") == "max-age=31536000", headers
        assert headers.get("server") == "hoody-mount" and not VERSION.search(body)
