"""Mistakes found at start are one clear line and exit status 2; what the start prints
works as pasted."""

from __future__ import annotations

import base64
import http.client
import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    http_port,
    password_hash,
    require,
    start_server,
    stop_server,
    wait_until,
)

from hoody_mount.core.users import hash_password


def _serve(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoody_mount", "serve", "--ssh", "127.0.0.1:0",
         "--http", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


def _config(path: Path, body: str, users: str = "") -> Path:
    path.write_text(body + f'\n[users.root]\npassword_hash = "{password_hash(PASSWORD)}"\n' + users)
    path.chmod(0o600)
    return path


def _one_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_unusable_log_folder(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    config = _config(tmp_path / "c.toml", 'root = "root"\nlog_dir = "/proc/nope"\n')
    _one_line(_serve("--config", str(config)), "log_dir /proc/nope")


def test_missing_root_and_state_folder_that_is_a_file(tmp_path: Path) -> None:
    config = _config(tmp_path / "c.toml", 'root = "nonexist"\n')
    _one_line(_serve("--config", str(config)), "root", "nonexist", "no such folder")
    (tmp_path / "root").mkdir()
    (tmp_path / "f1.txt").write_text("a file")
    config = _config(tmp_path / "d.toml", 'root = "root"\nstate_dir = "f1.txt"\n')
    _one_line(_serve("--config", str(config)), "state_dir", "f1.txt", "not a folder")


def test_a_mistyped_root_flag_is_not_created(tmp_path: Path) -> None:
    _one_line(_serve("--root", str(tmp_path / "typo"), cwd=tmp_path), "no such folder")
    assert not (tmp_path / "typo").exists()


def test_a_jail_inside_the_state_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root" / "state").mkdir(parents=True)
    config = _config(
        tmp_path / "c.toml",
        'root = "root"\nstate_dir = "root/state"\n',
        f'[users.j2]\npassword_hash = "{hash_password("x")}"\nroot = "/state/sub"\n',
    )
    _one_line(_serve("--config", str(config)), "users.j2.root", "inside the state folder")
    # user add refuses to write such a user too.
    good = _config(tmp_path / "g.toml", 'root = "root"\nstate_dir = "root/state"\n')
    before = good.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "user", "add", "--config", str(good), "j3",
         "--password-stdin", "--root", "/state"],
        input="secret\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    _one_line(result, "users.j3.root", "inside the state folder")
    assert good.read_text() == before


def test_user_names_must_be_plain(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    config = _config(tmp_path / "c.toml", 'root = "root"\n', '[users."bad/name"]\n')
    _one_line(_serve("--config", str(config)), "users.bad/name", "a user name is")


def test_a_missing_jail_is_a_warning_and_a_clear_answer(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    config = _config(
        tmp_path / "c.toml",
        'root = "root"\n[ssh]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\n',
        f'[users.ghost]\npassword_hash = "{hash_password("pw")}"\nroot = "/not-yet"\n',
    )
    process, _port, banner = start_server(["--config", str(config)], tmp_path / "log")
    try:
        log = tmp_path / "log"
        assert wait_until(lambda: "user ghost: the jail /not-yet" in log.read_text(), 20)
        conn = http.client.HTTPConnection("127.0.0.1", http_port(banner), timeout=30)
        token = base64.b64encode(b"ghost:pw").decode()
        conn.request("GET", "/api/v1/files/", headers={"Authorization": f"Basic {token}"})
        reply = conn.getresponse()
        body = reply.read().decode()
        assert reply.status == 503, (reply.status, body)
        # (the reason, not where the jail lies in the served root: the log names that)
        assert "not available" in body and "/not-yet" not in body, body
    finally:
        stop_server(process)


@pytest.mark.parametrize("tls", [False, True])
def test_the_printed_curl_line_works(tmp_path: Path, tls: bool) -> None:
    require("curl")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hello.txt").write_text("hi")
    args = ["--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0", *(["--tls"] if tls else [])]
    process, _port, banner = start_server(
        args, tmp_path / "log", cwd=tmp_path, env={"HOODY_MOUNT_PASSWORD": PASSWORD}
    )
    try:
        line = next(row.strip() for row in banner.splitlines() if row.strip().startswith("curl "))
        words = shlex.split(line)
        words[words.index("-u") + 1] = f"root:{PASSWORD}"  # (curl would ask for it)
        result = subprocess.run(
            [*words, "-sS", "--fail-with-body"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (line, result.stderr, result.stdout)
        names = [entry["name"] for entry in json.loads(result.stdout)["entries"]]
        assert names == ["hello.txt"]
        rclone = next(row for row in banner.splitlines() if "webdav url" in row)
        assert "vendor owncloud" in rclone
        assert ("--no-check-certificate" in rclone) == tls
        assert re.search(r"a browser: https?://127\.0\.0\.1:\d+/api/v1/files/", banner)
    finally:
        stop_server(process)


def test_a_start_that_fails_on_a_busy_port_keeps_no_unseen_password(tmp_path: Path) -> None:
    """The generated password is made once both listeners are bound: a start that
    failed on a port in use had stored a password it never showed, and every later
    start showed none (the default user was locked out until the hash was deleted)."""
    (tmp_path / "root").mkdir()
    state = tmp_path / "state"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        failed = subprocess.run(
            [sys.executable, "-m", "hoody_mount", "serve", "--root", str(tmp_path / "root"),
             "--state-dir", str(state), "--ssh", f"127.0.0.1:{port}", "--http", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert failed.returncode == 2, failed.stdout
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen for SSH on 127.0.0.1:{port} (--ssh" in lines[0]
    assert "Password of" not in failed.stdout
    assert not (state / "default-password.hash").exists()
    process, _port, banner = start_server(
        ["--root", str(tmp_path / "root"), "--state-dir", str(state), "--ssh", "127.0.0.1:0",
         "--http", "127.0.0.1:0"],
        tmp_path / "log",
    )  # fmt: skip
    try:
        assert "Password of root (shown only this once):" in banner, banner
    finally:
        stop_server(process)


def test_the_printed_rclone_lines_take_a_secret_that_starts_with_a_dash() -> None:
    """A generated secret may start with '-' (one in 64): ``rclone obscure`` took it for
    a flag and the printed command failed."""
    require("rclone", "bash")
    from hoody_mount.app import _connect_help
    from hoody_mount.config import Listen

    text = _connect_help(Listen("127.0.0.1", 2222), "http://127.0.0.1:8080", "root", "-jPk_x")
    obscures = re.findall(r"\$\((rclone obscure [^)]*)\)", text)
    assert len(obscures) == 2
    for command in obscures:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip(), (command, done.stderr)


def test_a_root_that_is_a_file_is_one_line_with_its_fix(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("a file")
    result = _serve("--root", str(tmp_path / "f.txt"), cwd=tmp_path)
    _one_line(result, f"root {tmp_path / 'f.txt'}: not a folder", "--root DIR")


@pytest.mark.parametrize("flag", ["--ssh", "--http"])
def test_a_port_in_use_is_one_line_with_its_fix(tmp_path: Path, flag: str) -> None:
    (tmp_path / "root").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _serve("--root", str(tmp_path / "root"), "--state-dir", str(tmp_path / "s"),
                        flag, f"127.0.0.1:{port}")  # fmt: skip
    _one_line(
        result,
        f"127.0.0.1:{port} ({flag}",
        ": Address already in use; another program listens there",
        f'make serve ARGS="{flag} 127.0.0.1:0"',
    )
    assert "Errno" not in result.stderr and "bind" not in result.stderr


def test_a_log_folder_the_server_cannot_write_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "f.txt").write_text("a file")
    for log_dir in ("f.txt", "f.txt/logs"):
        config = _config(tmp_path / "c.toml", f'root = "root"\nlog_dir = "{log_dir}"\n')
        result = _serve("--config", str(config))
        _one_line(result, f"log_dir {tmp_path / log_dir}: cannot write the log there", "--log-dir")
    # a link in place of the log file is never followed (it appended to, and chmodded,
    # the file it named)
    (tmp_path / "logs").mkdir()
    target = tmp_path / "precious"
    target.write_text("keep\n")
    target.chmod(0o644)
    (tmp_path / "logs" / "hoody-mount.log").symlink_to(target)
    config = _config(tmp_path / "c.toml", 'root = "root"\nlog_dir = "logs"\n')
    _one_line(_serve("--config", str(config)), "log file is a symbolic link")
    assert target.read_text() == "keep\n" and target.stat().st_mode & 0o777 == 0o644
