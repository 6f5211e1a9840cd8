"""Files the server trusts: the configuration, the state folder and the files read there.

Each must be owned by the server's uid and not writable by group or others. At start a
violation is one line and exit status 2; ``tokens.json`` changed while the server runs is
re-read, and a version that is not trusted (or not valid) leaves the tokens read before in
force and is logged once.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSWORD, Server, wait_until, write_config

UID = os.geteuid()
NOBODY = 65534
FILE = "/api/v1/files/share/docs/readme.txt"


def _serve(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``hoody-mount serve --config CONFIG``, expected to stop at once."""
    return subprocess.run(
        [sys.executable, "-m", "hoody_mount", "serve", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused start (status 2, nothing on stdout)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Ready." not in result.stdout, result.stdout
    return lines[0]


@pytest.fixture
def setup(tmp_path: Path, client_key: Path) -> tuple[Path, Path]:
    """A config and a (not yet existing) state folder for it."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    config = tmp_path / "hoody-mount.toml"
    write_config(config, root, state, client_key.with_suffix(".pub").read_text().strip())
    return config, state


def test_a_config_writable_by_others_is_refused(setup: tuple[Path, Path]) -> None:
    config, state = setup
    config.chmod(0o666)
    line = _one_line(_serve(config))
    assert line == (
        f"hoody-mount: {config}: not trusted: writable by group/others (mode 0666); "
        f"chmod go-w {config}"
    )
    assert not state.exists(), "nothing is made before the configuration is trusted"
    config.chmod(0o620)
    assert "(mode 0620)" in _one_line(_serve(config))
    # The token commands read the same file: refused the same way.
    result = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "token", "list", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "not trusted" in _one_line(result)


def test_a_config_owned_by_another_uid_is_refused(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    os.chown(config, NOBODY, -1)
    line = _one_line(_serve(config))
    assert line == (
        f"hoody-mount: {config}: not trusted: owned by uid {NOBODY} (the server runs as uid {UID})"
    )


@pytest.mark.parametrize(
    "name", ["ssh_host_ed25519_key", "default-password.hash", "tokens.json", "dav-locks.sqlite"]
)
def test_a_state_file_owned_by_another_uid_is_refused(setup: tuple[Path, Path], name: str) -> None:
    config, state = setup
    state.mkdir(mode=0o700)
    (state / name).write_text("[]\n")
    os.chown(state / name, NOBODY, -1)
    line = _one_line(_serve(config))
    assert line == (
        f"hoody-mount: {state / name}: not trusted: owned by uid {NOBODY} "
        f"(the server runs as uid {UID})"
    )


def test_an_untrusted_state_folder_is_refused(setup: tuple[Path, Path]) -> None:
    config, state = setup
    state.mkdir()
    state.chmod(0o777)
    line = _one_line(_serve(config))
    assert line == (
        f"hoody-mount: {state}: not trusted: writable by group/others (mode 0777); "
        f"chmod go-w {state}"
    )
    state.chmod(0o700)
    os.chown(state, NOBODY, -1)
    assert f"owned by uid {NOBODY}" in _one_line(_serve(config))


def test_a_group_writable_state_file_is_refused(setup: tuple[Path, Path]) -> None:
    config, state = setup
    state.mkdir(mode=0o700)
    (state / "tls-key.pem").write_text("not even a key\n")
    (state / "tls-key.pem").chmod(0o660)
    line = _one_line(_serve(config, "--tls"))
    assert line.endswith(f"(mode 0660); chmod go-w {state / 'tls-key.pem'}"), line


def test_an_invalid_tokens_file_stops_the_start(setup: tuple[Path, Path]) -> None:
    config, state = setup
    state.mkdir(mode=0o700)
    (state / "tokens.json").write_text("{not json")
    line = _one_line(_serve(config))
    assert line.startswith(f"hoody-mount: {state / 'tokens.json'}: not a valid token file"), line


def _get(server: Server, token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        conn.request("GET", FILE, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _clear_failures(server: Server) -> None:
    """A good Basic login clears the failed logins counted for this address."""
    basic = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        conn.request("GET", FILE, headers={"Authorization": f"Basic {basic}"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()


def _create_token(server: Server) -> str:
    config = server.root.parent / "hoody-mount.toml"
    result = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "token", "create", "root", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _add_by_hand(tokens: Path) -> str:
    """Write a new token record into the file in place (same inode and mode); its text."""
    token_id, secret = "0123456789ab", "s" * 40
    records = json.loads(tokens.read_text())
    records.append(
        {
            "id": token_id,
            "user": "root",
            "digest": hashlib.sha256(secret.encode()).hexdigest(),
            "read_only": False,
            "created": time.time(),
            "expires": None,
        }
    )
    with open(tokens, "r+") as handle:
        handle.truncate(0)
        handle.write(json.dumps(records))
    return f"hm_{token_id}_{secret}"


def _warnings(server: Server) -> list[str]:
    return [
        line
        for line in server.log.read_text(errors="replace").splitlines()
        if "WARNING" in line and "tokens.json" in line
    ]


def test_tokens_made_group_writable_keep_the_old_ones(server: Server) -> None:
    """A re-read tokens.json that is not trusted: old tokens work, the new one does not."""
    old = _create_token(server)
    assert _get(server, old) == 200
    tokens = server.state / "tokens.json"
    tokens.chmod(0o660)
    new = _add_by_hand(tokens)
    assert new[3:15] in tokens.read_text()
    for _ in range(3):
        assert _get(server, new) == 401
        assert _get(server, old) == 200
    _clear_failures(server)
    assert wait_until(lambda: len(_warnings(server)) >= 1, 5), server.log.read_text()[-2000:]
    time.sleep(0.5)  # the log thread writes every 0.25 s: anything more would show by now
    (warning,) = _warnings(server)
    assert f"{tokens}: not trusted: writable by group/others (mode 0660)" in warning, warning

    # Fixed by its owner, the file is read again and the new token counts.
    tokens.chmod(0o600)
    assert _get(server, new) == 200
    assert _get(server, old) == 200
    assert len(_warnings(server)) == 1


def test_an_invalid_tokens_file_keeps_the_old_ones(server: Server) -> None:
    """A re-read tokens.json that cannot be parsed: the old tokens stay, logged once."""
    old = _create_token(server)
    assert _get(server, old) == 200
    tokens = server.state / "tokens.json"
    tokens.write_text(tokens.read_text()[:-10])  # cut short: not JSON
    for _ in range(3):
        assert _get(server, old) == 200
    assert wait_until(lambda: len(_warnings(server)) >= 1, 5), server.log.read_text()[-2000:]
    time.sleep(0.5)
    (warning,) = _warnings(server)
    assert "not a valid token file" in warning, warning
