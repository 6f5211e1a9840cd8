"""The command line, configuration errors, state files and the embedded default."""

from __future__ import annotations

import http.client
import os
import stat
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from conftest import PASSWORD, http_port, start_server, stop_server, write_config

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoody_mount", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=cwd,
        timeout=60,
    )


async def _password_login(port: int, user: str, password: str) -> list[str]:
    async with (
        asyncssh.connect(
            "127.0.0.1", port, username=user, password=password, known_hosts=None, client_keys=None
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        return sorted(n for n in await sftp.listdir("/") if n not in (".", ".."))


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ('[users.root]\naccess = "rx"\n', "users.root.access"),
        ('colour = "blue"\n[users.root]\n', "colour"),
        ('[ssh]\nlisten = "nowhere"\n[users.root]\n', "ssh.listen"),
        ("[ssh]\nmax_handles = -1\n[users.root]\n", "ssh.max_handles"),
        ('[users.root]\nshell = true\nroot = "/srv"\n', "users.root.shell"),
        ('[users.root]\nprotocols = ["ftp"]\n', "users.root.protocols"),
        (
            '[users.root]\nprotocols = ["webdav"]\nport_forwarding = true\n',
            "users.root.port_forwarding",
        ),
        ("[users.root\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, content: str, key: str) -> None:
    """A bad key gives exit status 2 and one line naming the file and the key."""
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = _cli("serve", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0] and key in lines[0]


def test_bad_flag_exits_2(tmp_path: Path) -> None:
    """A malformed --ssh address is refused with status 2 before anything starts."""
    result = _cli("serve", "--ssh", "no-port-here", cwd=tmp_path)
    assert result.returncode == 2
    assert "--ssh" in result.stderr
    assert not (tmp_path / "data").exists()


def test_embedded_default_first_and_second_start(tmp_path: Path, client_key: Path) -> None:
    """First start: data folder, 0600 host key, a password printed once and stored hashed."""
    args = ["--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    args += ["--authorized-keys", str(client_key) + ".pub"]
    process, port, banner = start_server(args, tmp_path / "log1", cwd=tmp_path)
    try:
        assert (tmp_path / "data").is_dir()
        key_file = tmp_path / ".hoody-mount" / "ssh_host_ed25519_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / ".hoody-mount").stat().st_mode) == 0o700
        password = banner.split("(shown only this once): ")[1].split()[0]
        stored = (tmp_path / ".hoody-mount" / "default-password.hash").read_text()
        assert password not in stored and stored.startswith("$scrypt$")
        for expected in (f"sftp -P {port} root@127.0.0.1", "sshfs -p", "reconnect", "rclone"):
            assert expected in banner
        import asyncio

        assert asyncio.run(_password_login(port, "root", password)) == []
    finally:
        stop_server(process)
    fingerprint = [line for line in banner.splitlines() if line.startswith("Host key")][0]
    process, port, banner2 = start_server(args, tmp_path / "log2", cwd=tmp_path)
    stop_server(process)
    assert "shown only this once" not in banner2
    assert fingerprint.replace(" (new)", "") in banner2


def test_corrupt_host_key_is_not_replaced(tmp_path: Path) -> None:
    """A corrupt host key stops the start with a clear error and is left as it is."""
    state = tmp_path / ".hoody-mount"
    state.mkdir(mode=0o700)
    key_file = state / "ssh_host_ed25519_key"
    key_file.write_text("garbage\n")
    result = _cli("serve", "--ssh", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 2
    assert "host key" in result.stderr and str(key_file) in result.stderr
    assert key_file.read_text() == "garbage\n"


def test_password_from_environment(tmp_path: Path, client_key: Path) -> None:
    """HOODY_MOUNT_PASSWORD sets the default user's password and is never printed."""
    import asyncio

    args = ["--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--authorized-keys", "/dev/null"]
    env = {"HOODY_MOUNT_PASSWORD": "from-the-env"}
    process, port, banner = start_server(args, tmp_path / "log", cwd=tmp_path, env=env)
    try:
        assert "from-the-env" not in banner
        assert asyncio.run(_password_login(port, "root", "from-the-env")) == []
        with pytest.raises(asyncssh.PermissionDenied):
            asyncio.run(_password_login(port, "root", "wrong"))
    finally:
        stop_server(process)


def test_sigterm_stops_cleanly(tmp_path: Path, client_key: Path) -> None:
    """SIGTERM ends the server with exit status 0."""
    config = tmp_path / "c.toml"
    write_config(config, tmp_path / "root", tmp_path / "state", "")
    (tmp_path / "root").mkdir()
    process, _, _ = start_server(["--config", str(config)], tmp_path / "log")
    stop_server(process)
    assert process.returncode == 0


def test_container_profile_entry_command(tmp_path: Path) -> None:
    """The Dockerfile's command (container profile) starts, with folders overridden here."""
    import asyncio

    root = tmp_path / "root"
    (root / "hoody" / "storage").mkdir(parents=True)
    args = [
        "--config", str(REPO / "config" / "container.toml"),
        "--root", str(root),
        "--state-dir", str(tmp_path / "state"),
        "--ssh", "127.0.0.1:0",
        "--http", "127.0.0.1:0",
        "--authorized-keys", "/dev/null",
    ]  # fmt: skip
    env = {"HOODY_MOUNT_PASSWORD": PASSWORD}
    process, port, banner = start_server(args, tmp_path / "log", env=env)
    try:
        assert "container.toml" in banner
        assert asyncio.run(_password_login(port, "root", PASSWORD)) == ["hoody"]
    finally:
        stop_server(process)
    assert "ENTRYPOINT" in (REPO / "Dockerfile").read_text()


def test_user_commands_edit_safely(tmp_path: Path) -> None:
    """user add/list/passwd/remove keep comments, refuse mistakes and leave a valid file."""
    config = tmp_path / "users.toml"
    (tmp_path / "srv" / "hoody" / "storage" / "myapp").mkdir(parents=True)
    config.write_text('# my server\nroot = "srv"\n\n[users.root] # the admin\naccess = "rw"\n')
    missing = _cli("user", "add", "--config", str(config), "late", "--root", "/not/yet", stdin="")
    assert missing.returncode == 2 and "--root /not/yet: no such folder" in missing.stderr
    added = _cli(
        "user", "add", "--config", str(config), "share", "--password-stdin",
        "--root", "/hoody/storage/myapp", "--ro", stdin="pw1\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    text = config.read_text()
    assert "# my server" in text and "# the admin" in text and "pw1" not in text
    listed = _cli("user", "list", "--config", str(config))
    assert "share\tro\troot=/hoody/storage/myapp" in listed.stdout
    again = _cli("user", "add", "--config", str(config), "share", stdin="")
    assert again.returncode == 2 and "already exists" in again.stderr
    before = config.read_text()
    bad = _cli("user", "add", "--config", str(config), "x", "--root", "relative", stdin="")
    assert bad.returncode == 2 and "users.x.root" in bad.stderr
    assert config.read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    changed = _cli(
        "user", "passwd", "--config", str(config), "share", "--password-stdin", stdin="pw2\n"
    )
    assert changed.returncode == 0
    assert config.read_text() != before
    removed = _cli("user", "remove", "--config", str(config), "share")
    assert removed.returncode == 0
    assert "share" not in _cli("user", "list", "--config", str(config)).stdout
    assert os.stat(config).st_size > 0


def test_the_systemd_unit_runs_the_container_profile() -> None:
    """config/hoody-mount.service starts the container profile with a command the
    package installs, stops with SIGTERM, restarts on failure, and keeps no hardening
    option that would hide or freeze the folders it serves."""
    import configparser
    import shlex

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # (keys keep their case)
    unit.read(REPO / "config" / "hoody-mount.service")
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/hoody-mount") and command[1] == "serve"
    config = Path(command[command.index("--config") + 1])
    assert config.name == "container.toml" and (REPO / "config" / config.name).is_file()
    assert config == Path("/etc/hoody-mount/container.toml")  # (where the Dockerfile puts it)
    assert "/etc/hoody-mount/container.toml" in (REPO / "Dockerfile").read_text()
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    for hides in ("ProtectSystem", "ProtectHome", "PrivateTmp", "ReadOnlyPaths"):
        assert hides not in service, hides
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    done = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "serve", *command[2:], "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # (the flags it passes exist)


def test_a_later_start_says_how_to_get_a_new_password(tmp_path: Path) -> None:
    """Once the password was shown, the connect lines say PASSWORD: the start says
    where it comes from and how to get a new one, and the way it names works."""
    args = ["--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--authorized-keys", "/dev/null"]
    process, _, first = start_server(args, tmp_path / "log1", cwd=tmp_path)
    stop_server(process)
    assert "shown only this once" in first and "PASSWORD:" not in first
    process, _, later = start_server(args, tmp_path / "log2", cwd=tmp_path)
    stop_server(process)
    stored = tmp_path / ".hoody-mount" / "default-password.hash"
    hint = next(line for line in later.splitlines() if line.startswith("PASSWORD:"))
    assert f"remove {stored} and start again" in hint and "HOODY_MOUNT_PASSWORD" in hint
    stored.unlink()
    process, _, again = start_server(args, tmp_path / "log3", cwd=tmp_path)
    stop_server(process)
    assert "Password of root (shown only this once):" in again
    # a password kept in the configuration: the command that sets a new one, which works
    (tmp_path / "root").mkdir()
    config = tmp_path / "c.toml"
    write_config(config, tmp_path / "root", tmp_path / "state", "")
    process, _, configured = start_server([*args, "--config", str(config)], tmp_path / "log4")
    stop_server(process)
    hint = next(line for line in configured.splitlines() if line.startswith("PASSWORD:"))
    command = hint.split("a new one: ")[1].split(",")[0]
    assert command == f"hoody-mount user passwd --config {config} root", hint
    words = command.split()[1:]
    changed = _cli(*words, "--password-stdin", stdin="new-secret\n")
    assert changed.returncode == 0, changed.stderr
    process, port, _ = start_server([*args, "--config", str(config)], tmp_path / "log5")
    try:
        import asyncio

        assert asyncio.run(_password_login(port, "root", "new-secret")) == []
    finally:
        stop_server(process)
    env = {"HOODY_MOUNT_PASSWORD": "from-env"}
    process, _, from_env = start_server(args, tmp_path / "log6", cwd=tmp_path, env=env)
    stop_server(process)
    assert "PASSWORD: the password of root in HOODY_MOUNT_PASSWORD" in from_env


def _bearer_status(port: int, token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/api/v1/files/?json", headers={"Authorization": f"Bearer {token}"})
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def test_root_moves_the_state_and_log_folders_the_profile_puts_in_it(tmp_path: Path) -> None:
    """With --root and no --state-dir or --log-dir, the container profile's state and
    log folders (/hoody/storage/files and /logs) are those of the root served; token
    create given the same flags, from another folder, makes a token the server takes."""
    root = tmp_path / "root"
    (root / "hoody" / "storage").mkdir(parents=True)
    profile = str(REPO / "config" / "container.toml")
    args = ["--config", profile, "--root", str(root), "--ssh", "127.0.0.1:0",
            "--http", "127.0.0.1:0", "--authorized-keys", "/dev/null"]  # fmt: skip
    env = {"HOODY_MOUNT_PASSWORD": PASSWORD}
    process, _, banner = start_server(args, tmp_path / "log", env=env)
    try:
        state = root / "hoody" / "storage" / "files"
        assert (state / "ssh_host_ed25519_key").is_file()
        assert (root / "hoody" / "storage" / "logs" / "hoody-mount.log").is_file()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        made = _cli("token", "create", "root", "--config", profile, "--root", str(root),
                    cwd=elsewhere)  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert str(state / "tokens.json") in made.stderr
        assert _bearer_status(http_port(banner), made.stdout.strip()) == 200
    finally:
        stop_server(process)


def test_log_dir_flag_and_the_embedded_default_keeps_its_state(tmp_path: Path) -> None:
    """--log-dir puts the log file there; --root on the embedded default leaves its
    state (host key, password) in ./.hoody-mount, so the fingerprint stays the same."""
    (tmp_path / "served").mkdir()
    logs = tmp_path / "logs"
    args = ["--root", "served", "--log-dir", str(logs), "--ssh", "127.0.0.1:0",
            "--http", "127.0.0.1:0", "--authorized-keys", "/dev/null"]  # fmt: skip
    process, _, _ = start_server(args, tmp_path / "log", cwd=tmp_path)
    stop_server(process)
    assert "serving" in (logs / "hoody-mount.log").read_text()
    assert (tmp_path / ".hoody-mount" / "ssh_host_ed25519_key").is_file()
    assert not (tmp_path / "served" / ".hoody-mount").exists()


def test_token_create_from_another_folder_finds_the_servers_state(tmp_path: Path) -> None:
    """A relative state_dir is relative to the configuration file's folder, for the
    server and for token create, whatever folder each runs from."""
    here = tmp_path / "here"
    (here / "root").mkdir(parents=True)
    config = here / "c.toml"
    write_config(config, Path("root"), Path("state"), "")
    process, _, banner = start_server(["--config", "c.toml"], tmp_path / "log", cwd=here)
    try:
        assert (here / "state" / "ssh_host_ed25519_key").is_file()
        other = tmp_path / "other"
        other.mkdir()
        made = _cli("token", "create", "root", "--config", "../here/c.toml", cwd=other)
        assert made.returncode == 0, made.stderr
        assert str(here / "state" / "tokens.json") in made.stderr
        assert not (other / "state").exists() and not (tmp_path / "state").exists()
        assert _bearer_status(http_port(banner), made.stdout.strip()) == 200
        listed = _cli("connections", "--config", str(config), cwd=other)
        assert listed.returncode == 0, listed.stderr
    finally:
        stop_server(process)


def _one_line_refusal(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_user_add_refuses_what_could_never_log_in(tmp_path: Path) -> None:
    """user add: a missing configuration says how to write one; a name SSH or Basic
    cannot carry, or one a command line takes for a flag, and a user with neither a
    password nor a key are refused in one line, the file unchanged."""
    missing = tmp_path / "none.toml"
    result = _cli("user", "add", "--config", str(missing), "alice", "--password-stdin",
                  stdin="pw\n")  # fmt: skip
    _one_line_refusal(result, f"{missing}: no such file: write the configuration first", "root =")
    assert not missing.exists()
    # the hint, followed as written: the folder to serve, the default user, then alice
    assert f"the default one first: hoody-mount user add root --config {missing}" in result.stderr
    (tmp_path / "files").mkdir()
    missing.write_text(f'root = "{tmp_path / "files"}"\n')
    missing.chmod(0o600)
    for name in ("root", "alice"):
        added = _cli("user", "add", "--config", str(missing), name, "--password-stdin",
                     stdin="a good password\n")  # fmt: skip
        assert added.returncode == 0, (name, added.stderr)
    missing.unlink()
    config = tmp_path / "c.toml"
    (tmp_path / "srv").mkdir()
    config.write_text('root = "srv"\n[users.root]\n')
    before = config.read_text()
    for name in ("bob smith", "a:b", "-dash", "x" * 65, "share-1"):
        result = _cli("user", "add", "--config", str(config), "--password-stdin", "--", name,
                      stdin="pw\n")  # fmt: skip
        _one_line_refusal(result, f"users.{name}")
        assert config.read_text() == before
    result = _cli("user", "add", "--config", str(config), "carol", stdin="")
    _one_line_refusal(result, "users.carol: no password and no key", "--password-stdin", "--key")
    assert config.read_text() == before
    for way, stdin in ((["--password-stdin"], "pw\n"), (["--key", "ssh-ed25519 AAAA x"], "")):
        result = _cli("user", "add", "--config", str(config), f"u{len(stdin)}", *way, stdin=stdin)
        assert result.returncode == 0, result.stderr
    # the default user may have neither: its password is made at the first start
    fresh = tmp_path / "fresh.toml"
    fresh.write_text('root = "srv"\n')
    assert _cli("user", "add", "--config", str(fresh), "root", stdin="").returncode == 0


def test_a_hand_edited_users_file_is_checked_at_start(tmp_path: Path) -> None:
    """Names are refused at start as user add refuses them; a user with neither a
    password nor a key is named in the log (its API tokens may still log it in)."""
    (tmp_path / "root").mkdir()
    config = tmp_path / "c.toml"
    for name in ("bob smith", "a:b"):
        config.write_text(f'root = "root"\n[users.root]\n[users."{name}"]\npassword_hash = "x"\n')
        result = _cli("serve", "--config", str(config), "--ssh", "127.0.0.1:0")
        _one_line_refusal(result, f"users.{name}: a user name is")
    write_config(config, tmp_path / "root", tmp_path / "state", "")
    with config.open("a") as handle:
        handle.write('\n[users.nobody]\nroot = "/"\n')
    process, _, _ = start_server(["--config", str(config)], tmp_path / "log")
    stop_server(process)
    assert "user nobody has no password and no key" in (tmp_path / "log").read_text()
