"""SSH shells and commands end to end: OpenSSH (with a real terminal), rsync, git, scp, rclone.

One server, two kinds of user:

- ``admin`` has ``shell = true``: an interactive login shell with a PTY (driven through a
  tmux pane running ``ssh -tt``) and ``ssh host command`` with or without a PTY. Its start
  folder is ``/work`` of the served root. Shell commands run on the real host filesystem,
  so every write stays under the test's temporary folder.
- ``jailed`` has no shell and is jailed to ``/home/jailed``: only built-ins served through
  the VFS (legacy scp, ``echo`` for rclone's shell detection, ``md5sum``, ``sha1sum``,
  ``sha256sum``, ``df``); everything else is refused on stderr with exit status 1.

Distinctive markers are planted outside the jail (in the ``outside`` neighbour folder, in
the served root's ``/etc/passwd`` and in the server's environment) so that any leak shows.
The configuration check that refuses ``shell = true`` with a jail root lives in
``test_cli.py`` (``users.root.shell``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pwd
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from conftest import (
    Server,
    Vitals,
    assert_back_to_normal,
    http_port,
    require,
    start_server,
    stop_server,
    wait_until,
    write_config,
)

ENV_MARKER = f"hoody-env-marker-{secrets.token_hex(8)}"
OUTSIDE_MARKER = f"hoody-outside-marker-{secrets.token_hex(8)}"
ROOT_MARKER = f"hoody-served-root-marker-{secrets.token_hex(8)}"
JAIL_PASSWD = f"jail-local-passwd-{secrets.token_hex(8)}\n"
TIMEOUT = 60
HASH_COMMANDS = ("md5sum", "sha1sum", "sha256sum")
ALGORITHMS = {"md5sum": hashlib.md5, "sha1sum": hashlib.sha1, "sha256sum": hashlib.sha256}


# --------------------------------------------------------------------------- server


def _config_text(root: Path, state: Path, pub: str, extra: str = "") -> str:
    """A config with a shell user ``admin`` (start folder /work) and a jailed user."""
    return f"""
root = "{root}"
state_dir = "{state}"
default_user = "admin"

[ssh]
listen = "127.0.0.1:0"

[http]
listen = "127.0.0.1:0"

[users.admin]
shell = true
home = "/work"
authorized_keys = ["{pub}"]

[users.jailed]
authorized_keys = ["{pub}"]
root = "/home/jailed"
{extra}
"""


@contextlib.contextmanager
def _running(base: Path, key: Path, extra: str = "") -> Iterator[Server]:
    """Start a server over a fresh tree under ``base`` with markers planted; stop it after."""
    root, outside, state = base / "root", base / "outside", base / "state"
    jail = root / "home" / "jailed"
    for folder in (root / "work", root / "etc", jail / "etc", outside):
        folder.mkdir(parents=True)
    (outside / "secret.txt").write_text(f"{OUTSIDE_MARKER}\n")
    (root / "etc" / "passwd").write_text(f"root:x:0:0:{ROOT_MARKER}:/root:/bin/sh\n")
    (jail / "etc" / "passwd").write_text(JAIL_PASSWD)
    (jail / "escape-link").symlink_to(outside / "secret.txt")
    (jail / "passwd-link").symlink_to("/etc/passwd")
    (jail / "up-link").symlink_to("../../../outside/secret.txt")
    config = base / "hoody-mount.toml"
    pub = key.with_suffix(".pub").read_text().strip()
    config.write_text(_config_text(root, state, pub, extra))
    log = base / "server.log"
    process, port, banner = start_server(
        ["--config", str(config)], log, env={"HOODY_TEST_SECRET": ENV_MARKER}
    )
    try:
        yield Server(port, root, outside, state, key, process, log, http_port(banner))
    finally:
        stop_server(process)


@pytest.fixture
def shell_server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    """A fresh server with a shell user and a jailed user over a fresh tree."""
    with _running(tmp_path / "srv", client_key) as server:
        yield server


def _ssh(
    server: Server,
    user: str,
    command: str | None,
    *,
    tty: bool = False,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    options: tuple[str, ...] = (),
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """OpenSSH ``ssh [-tt] user@server [command]`` with ``stdin`` piped in."""
    require("ssh")
    argv = ["ssh", "-p", str(server.port), *server.ssh_options(), *options]
    if tty:
        argv.append("-tt")
    argv.append(f"{user}@127.0.0.1")
    if command is not None:
        argv.append(command)
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _ssh_command(server: Server) -> list[str]:
    """The ``ssh`` command line (without host) rsync, git and scp should use."""
    return ["ssh", "-p", str(server.port), *server.ssh_options()]


def _run(
    argv: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run a local client program; fail the test with its output if it fails."""
    require(argv[0])
    result = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout}\n{result.stderr}"
    return result


def _same_tree(a: Path, b: Path) -> None:
    """``diff -r`` finds no difference between two folders."""
    result = subprocess.run(
        ["diff", "-r", "--no-dereference", str(a), str(b)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _make_tree(folder: Path, count: int, link: bool = True) -> None:
    """A tree of ``count`` files in nested folders, with spaces, an empty file, a link."""
    for i in range(count):
        sub = folder / f"dir{i % 7}" / f"sub {i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file {i}.txt").write_bytes(os.urandom((i * 997) % 9000))
    (folder / "empty").write_bytes(b"")
    script = folder / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    if link:
        (folder / "link").symlink_to("run.sh")


# --------------------------------------------------------------------------- terminal


class Terminal:
    """A command in a detached tmux session on a private tmux server (its own socket)."""

    def __init__(self, folder: Path, script: str, width: int = 120, height: int = 40) -> None:
        require("tmux")
        self.socket = folder / "tmux.sock"
        path = folder / "terminal.sh"
        path.write_text(script)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t",
                  "-x", str(width), "-y", str(height), f"sh {shlex.quote(str(path))}")  # fmt: skip

    def tmux(self, *args: str) -> str:
        """Run a tmux command against this terminal's server."""
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=20,
            env=self.env,
        )
        assert result.returncode == 0, f"tmux {args}: {result.stderr}"
        return result.stdout

    def type(self, line: str) -> None:
        """Type a line of text literally, then Enter."""
        self.tmux("send-keys", "-t", "t", "-l", line)
        self.tmux("send-keys", "-t", "t", "Enter")

    def screen(self) -> str:
        """The pane's text with its history, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-2000")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Wait until ``pattern`` shows on the screen; fail with the screen if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            match = re.search(pattern, text)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not show within {timeout}s:\n{text}")
            time.sleep(0.1)

    def ready(self, tag: str) -> None:
        """Wait for the remote shell to answer (arithmetic tells output from typed echo)."""
        self.type(f'echo "{tag}-$((40+2))"')
        self.wait_for(rf"{tag}-42")

    def pane_size(self) -> tuple[int, int]:
        """(rows, columns) of the pane, as ``stty size`` would print them."""
        rows, cols = self.tmux(
            "display-message", "-p", "-t", "t", "#{pane_height} #{pane_width}"
        ).split()
        return int(rows), int(cols)

    def close(self) -> None:
        """Stop this terminal's tmux server (and what runs in it)."""
        subprocess.run(
            ["tmux", "-S", str(self.socket), "kill-server"],
            capture_output=True,
            timeout=20,
            env=self.env,
        )


@pytest.fixture
def terminal(shell_server: Server, tmp_path: Path) -> Iterator[Terminal]:
    """``ssh -tt admin@server`` in a 120x40 tmux pane; prints the terminal state and status."""
    ssh = shlex.join([*_ssh_command(shell_server), "-tt", "admin@127.0.0.1"])
    script = f"""
before=$(stty -g)
{ssh}
status=$?
after=$(stty -g)
if [ "$before" = "$after" ]; then echo TERMINAL-RESTORED; else echo TERMINAL-CHANGED; fi
echo "SSH-EXIT=$status"
sleep 600
"""
    term = Terminal(tmp_path, script)
    try:
        yield term
    finally:
        term.close()


def _processes(argv: list[str]) -> list[int]:
    """Process ids whose command line is exactly ``argv``."""
    wanted = ("\0".join(argv) + "\0").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes() == wanted:
                    found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- shell with a PTY


def test_pty_cd_echo_and_exit_status(shell_server: Server, terminal: Terminal) -> None:
    """``cd /<folder>; echo $PWD; exit 3``: the folder shows, ssh exits 3, the tty is restored."""
    start = shell_server.root / "work"
    folder = shell_server.root / "work" / "project folder"
    folder.mkdir()
    terminal.ready("READY")
    terminal.type('echo "START=$PWD"')
    terminal.wait_for(rf"START={re.escape(str(start))}\n")
    terminal.type(f'cd {shlex.quote(str(folder))}; echo "PWD=$PWD"; exit 3')
    status = terminal.wait_for(r"SSH-EXIT=(\d+)")
    screen = terminal.screen()
    assert f"PWD={folder}" in screen, screen
    assert status.group(1) == "3", screen
    assert "TERMINAL-RESTORED" in screen, screen


def test_pty_window_resize_reaches_stty_size(shell_server: Server, terminal: Terminal) -> None:
    """The starting size and a later window resize both reach ``stty size`` remotely."""
    terminal.ready("READY")
    terminal.type('echo "SIZE=$(stty size)=$((1+1))"')
    first = terminal.wait_for(r"SIZE=(\d+) (\d+)=2")
    assert (int(first.group(1)), int(first.group(2))) == terminal.pane_size()
    terminal.tmux("resize-window", "-t", "t", "-x", "97", "-y", "29")
    rows, cols = terminal.pane_size()
    assert cols == 97, (rows, cols)
    terminal.type('echo "SIZE=$(stty size)=$((1+2))"')
    second = terminal.wait_for(r"SIZE=(\d+) (\d+)=3")
    assert (int(second.group(1)), int(second.group(2))) == (rows, cols), terminal.screen()
    terminal.type("exit")
    assert terminal.wait_for(r"SSH-EXIT=(\d+)").group(1) == "0"


def test_pty_ctrl_c_interrupts_the_foreground_program(
    shell_server: Server, terminal: Terminal
) -> None:
    """Ctrl-C stops a remote ``sleep`` at once; the shell carries on and sees status 130."""
    argv = ["sleep", "97.25"]
    terminal.ready("READY")
    terminal.type(shlex.join(argv))
    deadline = time.monotonic() + 30
    while not _processes(argv):
        assert time.monotonic() < deadline, f"the remote sleep never started:\n{terminal.screen()}"
        time.sleep(0.1)
    started = time.monotonic()
    terminal.tmux("send-keys", "-t", "t", "C-c")
    terminal.type('echo "AFTER=$?=$((2+3))"')
    match = terminal.wait_for(r"AFTER=(\d+)=5")
    assert time.monotonic() - started < 30
    assert match.group(1) == "130", terminal.screen()
    deadline = time.monotonic() + 10
    while _processes(argv):
        assert time.monotonic() < deadline, "the interrupted sleep is still running"
        time.sleep(0.1)
    terminal.type("exit 0")
    assert terminal.wait_for(r"SSH-EXIT=(\d+)").group(1) == "0"
    assert "TERMINAL-RESTORED" in terminal.screen()


# --------------------------------------------------------------------------- ssh host command


def test_exec_output_stderr_and_status(shell_server: Server) -> None:
    """Without a PTY, stdout and stderr stay separate and the exit status comes back."""
    result = _ssh(shell_server, "admin", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7, result.stderr
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


def test_exec_stdin_piped_through(shell_server: Server) -> None:
    """``cat > file`` takes 2 MiB of binary stdin exactly; ``cat file`` gives it back."""
    data = os.urandom(2 * 1024 * 1024 + 13)
    put = _ssh(shell_server, "admin", "cat > piped.bin", stdin=data)
    assert put.returncode == 0, put.stderr
    assert (shell_server.root / "work" / "piped.bin").read_bytes() == data
    get = _ssh(shell_server, "admin", "cat piped.bin")
    assert get.returncode == 0, get.stderr
    assert get.stdout == data
    count = _ssh(shell_server, "admin", "wc -c", stdin=data)
    assert count.stdout.strip() == str(len(data)).encode()


def test_exec_with_tty_output_and_status(shell_server: Server) -> None:
    """With ``-tt``: a terminal on stdin; the output (one stream) and the status come back.

    Repeated: a command that exits at once must not lose the output it wrote before exiting.
    """
    command = "test -t 0 && echo is-a-tty; echo err >&2; exit 5"
    results = [_ssh(shell_server, "admin", command, tty=True) for _ in range(10)]
    assert [r.returncode for r in results] == [5] * 10, results
    lost = [r.stdout for r in results if r.stdout != b"is-a-tty\r\nerr\r\n"]
    assert not lost, f"{len(lost)} of 10 runs lost PTY output: {lost}"


def test_exec_with_tty_stdin_piped_through(shell_server: Server) -> None:
    """With ``-tt``: piped lines reach ``cat > file`` through the terminal, EOF ends it."""
    typed = _ssh(shell_server, "admin", "cat > typed.txt", tty=True, stdin=b"alpha\nbeta gamma\n")
    assert typed.returncode == 0, typed.stderr
    assert (shell_server.root / "work" / "typed.txt").read_text() == "alpha\nbeta gamma\n"


def _environment(output: bytes) -> dict[str, str]:
    lines = output.decode().replace("\r\n", "\n").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_exec_environment_and_start_folder(shell_server: Server) -> None:
    """A clean environment (HOME, SHELL, USER, TERM, PATH, LANG) in the start folder."""
    account = pwd.getpwuid(os.getuid())
    for tty in (False, True):
        result = _ssh(
            shell_server,
            "admin",
            "env; echo CWD=$(pwd -P)",
            tty=tty,
            env={"TERM": "xterm-256color", "LANG": "C.UTF-8"},
            options=("-o", "SendEnv=LANG"),
        )
        assert result.returncode == 0, result.stderr
        env = _environment(result.stdout)
        assert env["HOME"] == account.pw_dir
        assert env["SHELL"] == (account.pw_shell or "/bin/sh")
        assert env["USER"] == account.pw_name
        assert "/usr/bin" in env["PATH"].split(":") and "/bin" in env["PATH"].split(":")
        assert env["LANG"] == "C.UTF-8"
        assert env["CWD"] == os.path.realpath(shell_server.root / "work")
        if tty:
            assert env["TERM"] == "xterm-256color"
        assert ENV_MARKER.encode() not in result.stdout + result.stderr  # not the server's env


@pytest.fixture
def other_account() -> Iterator[pwd.struct_passwd]:
    """A fresh local account with a login shell (made with useradd, removed afterwards)."""
    require("useradd", "userdel")
    if os.getuid() != 0:
        pytest.fail("creating a test account needs root (CI runs as root)")
    name = f"hoody{secrets.token_hex(3)}"
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, timeout=60)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True, timeout=60)


def test_exec_runs_as_configured_os_user(
    tmp_path: Path, client_key: Path, other_account: pwd.struct_passwd
) -> None:
    """``os_user`` names the account commands run as (uid, HOME, USER)."""
    account = other_account
    pub = client_key.with_suffix(".pub").read_text().strip()
    extra = f"""
[users.runner]
shell = true
os_user = "{account.pw_name}"
authorized_keys = ["{pub}"]
"""
    with _running(tmp_path / "srv", client_key, extra) as server:
        result = _ssh(server, "runner", 'id -un; id -u; echo "HOME=$HOME USER=$USER"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        account.pw_name,
        str(account.pw_uid),
        f"HOME={account.pw_dir} USER={account.pw_name}",
    ]


def test_serve_shell_flag_gives_default_user_a_shell(tmp_path: Path, client_key: Path) -> None:
    """``serve --shell``: the default user (not jailed) gets real commands."""
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "c.toml"
    write_config(
        config, root, tmp_path / "state", client_key.with_suffix(".pub").read_text().strip()
    )
    process, port, banner = start_server(["--config", str(config), "--shell"], tmp_path / "log")
    try:
        server = Server(port, root, tmp_path, tmp_path / "state", client_key, process,
                        tmp_path / "log", http_port(banner))  # fmt: skip
        result = _ssh(server, "root", 'echo "$((2+3))"; pwd -P')
        refused = _ssh(server, "jailed", "id -u")
    finally:
        stop_server(process)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["5", os.path.realpath(root)]
    assert refused.returncode == 1 and refused.stdout == b""


def test_serve_shell_flag_refuses_jailed_default_user(tmp_path: Path, client_key: Path) -> None:
    """``serve --shell`` with a jailed default user exits 2 naming the flag; nothing starts."""
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "c.toml"
    write_config(
        config, root, tmp_path / "state", client_key.with_suffix(".pub").read_text().strip()
    )
    config.write_text('default_user = "jailed"\n' + config.read_text())
    result = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "serve", "--config", str(config), "--shell"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "--shell" in result.stderr


# --------------------------------------------------------------------------- rsync, git, scp


def test_rsync_push_and_pull(shell_server: Server, tmp_path: Path) -> None:
    """``rsync -a dir host:dest`` and back, a tree of 300 files: ``diff -r`` finds nothing."""
    src = tmp_path / "src"
    _make_tree(src, 300)
    rsh = ["-e", shlex.join(_ssh_command(shell_server))]
    _run(["rsync", "-a", *rsh, f"{src}/", "admin@127.0.0.1:pushed/"])
    pushed = shell_server.root / "work" / "pushed"
    _same_tree(src, pushed)
    assert (pushed / "link").is_symlink()
    assert (pushed / "run.sh").stat().st_mode & 0o777 == 0o755
    pulled = tmp_path / "pulled"
    _run(["rsync", "-a", *rsh, "admin@127.0.0.1:pushed/", f"{pulled}/"])
    _same_tree(src, pulled)
    # A change and a deletion travel as a delta with --delete.
    (src / "dir1" / "sub 1" / "file 1.txt").write_bytes(b"changed\n")
    (src / "dir2" / "sub 2" / "file 2.txt").unlink()
    _run(["rsync", "-a", "--delete", *rsh, f"{src}/", "admin@127.0.0.1:pushed/"])
    _same_tree(src, pushed)


def _git_env(tmp_path: Path, server: Server) -> dict[str, str]:
    home = tmp_path / "git-home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
        "GIT_SSH_COMMAND": shlex.join(_ssh_command(server)),
        "GIT_TERMINAL_PROMPT": "0",
    }


def test_git_clone_and_push(shell_server: Server, tmp_path: Path) -> None:
    """git over ssh: push to a bare repository under the served root, clone, push back."""
    env = _git_env(tmp_path, shell_server)
    bare = shell_server.root / "work" / "repos" / "project.git"
    _run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], env=env)
    local = tmp_path / "local"
    _run(["git", "init", "-q", "-b", "main", str(local)], env=env)
    _make_tree(local / "tree", 40)
    (local / "README").write_text("hello git over hoody-mount\n")
    _run(["git", "add", "-A"], cwd=local, env=env)
    _run(["git", "commit", "-q", "-m", "first"], cwd=local, env=env)
    url = "admin@127.0.0.1:repos/project.git"
    _run(["git", "push", "-q", url, "main"], cwd=local, env=env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", url, str(clone)], env=env)
    _same_tree(local / "tree", clone / "tree")
    head = _run(["git", "rev-parse", "HEAD"], cwd=local, env=env).stdout
    assert _run(["git", "rev-parse", "HEAD"], cwd=clone, env=env).stdout == head
    (clone / "README").write_text("changed in the clone\n")
    _run(["git", "commit", "-q", "-am", "second"], cwd=clone, env=env)
    _run(["git", "push", "-q", "origin", "main"], cwd=clone, env=env)
    _run(["git", "pull", "-q", "--ff-only", url, "main"], cwd=local, env=env)
    assert (local / "README").read_text() == "changed in the clone\n"
    log = _run(["git", "--git-dir", str(bare), "log", "--format=%s"], env=env).stdout
    assert log.split() == ["second", "first"]
    _run(["git", "--git-dir", str(bare), "fsck", "--strict"], env=env)


def test_scp_legacy_to_and_from_shell_user(shell_server: Server, tmp_path: Path) -> None:
    """``scp -O`` (the remote runs scp through the shell): a file and a tree, both ways."""
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(700_001))
    tree = tmp_path / "tree"
    _make_tree(tree, 30, link=False)  # scp copies what links point to
    scp = ["scp", "-O", "-P", str(shell_server.port), *shell_server.ssh_options()]
    work = shell_server.root / "work"
    _run([*scp, str(blob), "admin@127.0.0.1:up.bin"])
    assert (work / "up.bin").read_bytes() == blob.read_bytes()
    _run([*scp, "-r", str(tree), "admin@127.0.0.1:tree-up"])
    _same_tree(tree, work / "tree-up")
    _run([*scp, "admin@127.0.0.1:up.bin", str(tmp_path / "back.bin")])
    assert (tmp_path / "back.bin").read_bytes() == blob.read_bytes()
    _run([*scp, "-r", "admin@127.0.0.1:tree-up", str(tmp_path / "tree-back")])
    _same_tree(tree, tmp_path / "tree-back")


# --------------------------------------------------------------------------- jailed: built-ins


def _jail(server: Server) -> Path:
    return server.root / "home" / "jailed"


def test_rclone_shell_detection_commands(shell_server: Server) -> None:
    """What rclone runs to detect the shell and hash commands answers like a Unix shell."""
    echo = _ssh(shell_server, "jailed", "echo ${ShellId}%ComSpec%")
    assert (echo.returncode, echo.stdout, echo.stderr) == (0, b"%ComSpec%\n", b"")
    md5 = _ssh(shell_server, "jailed", "md5sum")
    assert (md5.returncode, md5.stdout) == (0, b"d41d8cd98f00b204e9800998ecf8427e  -\n")
    sha1 = _ssh(shell_server, "jailed", "sha1sum")
    assert (sha1.returncode, sha1.stdout) == (0, b"da39a3ee5e6b4b0d3255bfef95601890afd80709  -\n")
    data = os.urandom(300_000)
    piped = _ssh(shell_server, "jailed", "sha256sum", stdin=data)
    assert piped.stdout == f"{hashlib.sha256(data).hexdigest()}  -\n".encode()


def _hash_files(jail: Path) -> list[str]:
    files = ["plain.txt", "sub/inner.bin", "with space.txt", "dir with space/x y.txt", "empty"]
    for name in files:
        path = jail / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(len(name) * 5000))
    return files


@pytest.mark.parametrize("command", HASH_COMMANDS)
def test_builtin_hash_output_matches_coreutils(shell_server: Server, command: str) -> None:
    """Built-in sums print exactly what coreutils prints, relative and absolute names."""
    jail = _jail(shell_server)
    files = _hash_files(jail)
    remote = _ssh(shell_server, "jailed", shlex.join([command, *files]))
    local = subprocess.run([command, *files], cwd=jail, capture_output=True, timeout=TIMEOUT)
    assert local.returncode == 0
    assert (remote.returncode, remote.stdout, remote.stderr) == (0, local.stdout, b"")
    absolute = ["/" + name for name in files]
    remote = _ssh(shell_server, "jailed", shlex.join([command, *absolute]))
    local = subprocess.run(
        [command, *(str(jail / name) for name in files)], capture_output=True, timeout=TIMEOUT
    )
    expected = local.stdout.replace(f"  {jail}/".encode(), b"  /")
    assert (remote.returncode, remote.stdout, remote.stderr) == (0, expected, b"")


@pytest.mark.parametrize("command", HASH_COMMANDS)
def test_builtin_hash_errors_match_coreutils(shell_server: Server, command: str) -> None:
    """A missing file and a folder: the same stdout, stderr lines and status 1 as coreutils."""
    jail = _jail(shell_server)
    _hash_files(jail)
    args = [command, "plain.txt", "missing.txt", "sub", "empty"]
    remote = _ssh(shell_server, "jailed", shlex.join(args))
    local = subprocess.run(args, cwd=jail, capture_output=True, timeout=TIMEOUT)
    assert local.returncode == 1
    assert (remote.returncode, remote.stdout, remote.stderr) == (1, local.stdout, local.stderr)


def test_builtin_hash_escapes_names_like_coreutils(shell_server: Server) -> None:
    """Names with a backslash or a newline get coreutils' escaped form (a leading ``\\``)."""
    jail = _jail(shell_server)
    files = ["back\\slash.txt", "new\nline.txt"]
    for name in files:
        (jail / name).write_bytes(name.encode() * 3)
    remote = _ssh(shell_server, "jailed", shlex.join(["md5sum", *files]))
    local = subprocess.run(["md5sum", *files], cwd=jail, capture_output=True, timeout=TIMEOUT)
    assert (remote.returncode, remote.stdout) == (0, local.stdout)


def test_builtin_hash_of_a_name_that_is_not_utf8(shell_server: Server) -> None:
    """A command line that is not UTF-8 runs (asyncssh refused the exec request: "exec
    request failed on channel 0"), and the name comes back byte for byte."""
    jail = _jail(shell_server)
    name = os.fsdecode(b"caf\xe9.txt")
    (jail / name).write_bytes(b"latin-1 name\n")
    remote = _ssh(shell_server, "jailed", shlex.join(["md5sum", name]))
    local = subprocess.run(["md5sum", name], cwd=jail, capture_output=True, timeout=TIMEOUT)
    assert (remote.returncode, remote.stdout) == (0, local.stdout), remote.stderr


def test_builtin_hash_of_a_sparse_file_is_right(shell_server: Server) -> None:
    """Holes are hashed as zeros without reading the disk; the digest is coreutils'."""
    jail = _jail(shell_server)
    with open(jail / "sparse.bin", "wb") as handle:
        for offset in (5, (3 << 20) + 17, 40 << 20):
            handle.seek(offset)
            handle.write(b"data at %d" % offset)
        handle.truncate(64 << 20)
    remote = _ssh(shell_server, "jailed", "md5sum sparse.bin")
    local = subprocess.run(["md5sum", "sparse.bin"], cwd=jail, capture_output=True, timeout=60)
    assert (remote.returncode, remote.stdout) == (0, local.stdout), remote.stderr


def _quoting_files(jail: Path) -> None:
    """Names a shell's quoting tells apart: ``z$v.txt`` beside ``z.txt``, a ``?`` and a
    backtick in a name, a backslash."""
    folder = jail / "q"
    folder.mkdir()
    contents = {"z$v.txt": "REAL", "z.txt": "OTHER", "q?.txt": "1", "qq.txt": "22",
                "bq`.txt": "333", "a\\b.txt": "4444", "d$.txt": "55555",
                "h #.txt": "6"}  # fmt: skip
    for name, text in contents.items():
        (folder / name).write_text(text)


def _like_a_shell(server: Server, command: str) -> None:
    """The built-in's answer to ``command`` is a POSIX shell's running coreutils (in the
    jail's root, with no variable set): status, stdout and stderr."""
    remote = _ssh(server, "jailed", command)
    local = subprocess.run(
        ["sh", "-c", command],
        cwd=_jail(server),
        env={"PATH": os.environ["PATH"], "LC_ALL": "C"},
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert (remote.returncode, remote.stdout, remote.stderr) == (
        local.returncode,
        local.stdout,
        local.stderr,
    ), command


QUOTED_HASHES = [
    "md5sum 'q/z$v.txt'",
    "md5sum q/z\\$v.txt",
    'md5sum "q/z\\$v.txt"',
    "sha1sum q/z$v.txt",
    'sha256sum "q/z$v.txt" q/z"$v".txt',
    "md5sum q/bq\\`.txt 'q/bq`.txt' \"q/bq\\`.txt\"",
    "md5sum 'q/q?.txt' q/q\\?.txt \"q/a\\b.txt\" q/a\\\\b.txt 'q/a\\b.txt'",
    "sha1sum q/d$.txt 'q/d$'.txt \"q/d$.txt\" q/d\\$.txt",
    "md5sum q/z.txt # q/qq.txt",
    "md5sum q/h\\ #.txt 'q/h #.txt'",
]


def test_builtin_hashes_quote_names_as_a_shell_does(shell_server: Server) -> None:
    """Single quotes keep ``$`` and ``?``, a backslash escapes ``$`` and a backtick, and
    in double quotes ``\\$`` is ``$``: ``md5sum 'z$v.txt'`` hashed ``z.txt`` (so rclone
    got another file's hash), and ``\\``` was refused as a substitution."""
    _quoting_files(_jail(shell_server))
    for command in QUOTED_HASHES:
        _like_a_shell(shell_server, command)


QUOTED_DU = [
    "du -sb 'q/q?.txt'",
    "du -sb q/q\\?.txt",
    'du -sb "q/q?".txt',
    "du -sb q/q?.txt",
    'du -sb "q/"q?.txt',
    "du -sb q/\\*.txt",
    "du -sb 'q/z$v.txt' q/z$v.txt",
    "du -sbc q/[bz]*.txt q/'['bz]*.txt",
]


def test_builtin_du_expands_only_unquoted_patterns(shell_server: Server) -> None:
    """Only an unquoted ``*``, ``?`` or ``[`` makes a pattern (``du -sb 'q?.txt'``
    counted ``qq.txt`` too); quoted ones are themselves."""
    _quoting_files(_jail(shell_server))
    for command in QUOTED_DU:
        _like_a_shell(shell_server, command)


def test_scp_legacy_names_are_unquoted_as_a_shell_does(
    shell_server: Server, tmp_path: Path
) -> None:
    """``scp -O`` sends the remote path for a shell to read: ``"q/d\\$q.txt"`` names
    ``d$q.txt`` (it made ``d\\$q.txt``), and ``'q/z$v.txt'`` is ``z$v.txt``."""
    jail = _jail(shell_server)
    _quoting_files(jail)
    source = tmp_path / "new.txt"
    source.write_text("NEW")
    scp = ["scp", "-O", "-P", str(shell_server.port), *shell_server.ssh_options()]
    _run([*scp, str(source), 'jailed@127.0.0.1:"q/d\\$q.txt"'])
    _run([*scp, str(source), "jailed@127.0.0.1:q/up\\$v.txt"])
    assert sorted(p.name for p in (jail / "q").glob("[du]*")) == ["d$.txt", "d$q.txt", "up$v.txt"]
    back = [*scp, "-T", "jailed@127.0.0.1:'q/z$v.txt'", str(tmp_path / "back.txt")]
    _run(back)  # (-T: scp cannot match the quoted request to the name, with OpenSSH too)
    assert (tmp_path / "back.txt").read_text() == "REAL"


def test_hashes_of_one_user_hold_a_bounded_share_and_stop_when_the_client_goes(
    shell_server: Server,
) -> None:
    """A user runs 70 hashes of a 1 TiB sparse file at once (7 connections of 10
    channels; each hash would run for many minutes): short requests are served
    meanwhile (the 70 filled all 64 shared workers, and every other request timed out
    until a restart); once the clients go, the running hashes stop, and the same
    user's next hash is answered; the server's threads and memory come back."""
    jail = _jail(shell_server)
    with open(jail / "huge.bin", "wb") as handle:
        handle.seek(1 << 40)
        handle.write(b"abc")
    (jail / "small.txt").write_text("small\n")
    assert _ssh(shell_server, "jailed", "md5sum small.txt").returncode == 0
    before = Vitals.of(shell_server.process.pid)

    async def attack() -> None:
        conns = [
            await asyncssh.connect(
                "127.0.0.1",
                shell_server.port,
                username="jailed",
                client_keys=[str(shell_server.key)],
                known_hosts=None,
            )  # fmt: skip
            for _ in range(7)
        ]
        channels = []
        for conn in conns:
            for _ in range(10):
                channels.append(await conn.create_process("md5sum huge.bin"))
        await asyncio.sleep(3)  # (every hash has started or waits its turn)
        loop = asyncio.get_running_loop()
        df = await loop.run_in_executor(None, _ssh, shell_server, "jailed", "df")
        assert df.returncode == 0, df.stderr
        listing = await loop.run_in_executor(None, shell_server.sftp_batch, "ls /\n", "jailed")
        assert listing.returncode == 0, listing.stderr
        for conn in conns:
            conn.abort()

    asyncio.run(asyncio.wait_for(attack(), 120))
    small = _ssh(shell_server, "jailed", "md5sum small.txt", timeout=60)
    assert small.returncode == 0, small.stderr
    assert small.stdout.startswith(hashlib.md5(b"small\n").hexdigest().encode())
    assert_back_to_normal(shell_server.process.pid, before)


def test_two_users_endless_hashes_do_not_keep_a_third_waiting(
    tmp_path: Path, client_key: Path
) -> None:
    """Users a and b each run 2 hashes of a 1 TiB sparse file (each ten minutes long),
    which hold all 4 long-job threads; user c's hash of a small file is answered in
    seconds (it waited for them: the jobs ran whole, now in slices served in turn)."""
    pub = client_key.with_suffix(".pub").read_text().strip()
    extra = "".join(
        f'\n[users.{name}]\nauthorized_keys = ["{pub}"]\nroot = "/home/jailed"\n'
        for name in ("a", "b", "c")
    )
    with _running(tmp_path / "srv", client_key, extra) as server:
        jail = _jail(server)
        with open(jail / "huge.bin", "wb") as handle:
            handle.seek(1 << 40)
            handle.write(b"abc")
        (jail / "small.txt").write_text("small\n")

        async def scenario() -> None:
            conns = []
            for user in ("a", "a", "b", "b"):
                conn = await asyncssh.connect(
                    "127.0.0.1", server.port, username=user,
                    client_keys=[str(server.key)], known_hosts=None,
                )  # fmt: skip
                await conn.create_process("sha256sum huge.bin")
                conns.append(conn)
            await asyncio.sleep(2)  # (the four hashes hold the four threads)
            loop = asyncio.get_running_loop()
            small = await loop.run_in_executor(None, _ssh, server, "c", "md5sum small.txt")
            assert small.returncode == 0, small.stderr
            assert small.stdout.startswith(hashlib.md5(b"small\n").hexdigest().encode())
            for conn in conns:
                conn.abort()

        asyncio.run(asyncio.wait_for(scenario(), 120))


def test_builtin_df_reports_the_jail(shell_server: Server) -> None:
    """``df`` prints coreutils' header and 1K-block numbers from statvfs of the jail."""
    jail = _jail(shell_server)
    before = os.statvfs(jail)
    result = _ssh(shell_server, "jailed", "df")
    after = os.statvfs(jail)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].split() == ["Filesystem", "1K-blocks", "Used", "Available", "Use%", "Mounted",
                                "on"]  # fmt: skip
    match = re.fullmatch(r"(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+(/)", lines[1])
    assert match, lines[1]
    total, used, avail, percent = (int(match.group(i)) for i in range(2, 6))

    def kib(st: os.statvfs_result) -> tuple[int, int, int]:
        t = st.f_blocks * st.f_frsize // 1024
        return t, t - st.f_bfree * st.f_frsize // 1024, st.f_bavail * st.f_frsize // 1024

    slack = 64 * 1024  # KiB: other processes may write to this filesystem meanwhile
    (t0, u0, a0), (t1, u1, a1) = kib(before), kib(after)
    assert total in (t0, t1)
    assert min(u0, u1) - slack <= used <= max(u0, u1) + slack
    assert min(a0, a1) - slack <= avail <= max(a0, a1) + slack
    assert percent == -(-used * 100 // (used + avail))
    again = _ssh(shell_server, "jailed", "df /")
    assert again.returncode == 0 and again.stdout.decode().splitlines()[0] == lines[0]
    missing = _ssh(shell_server, "jailed", "df /no-such-folder")
    assert missing.returncode == 1
    assert b"df: /no-such-folder: No such file or directory" in missing.stderr


def _df_layout(text: str) -> list[str]:
    """df's lines without the Filesystem and Mounted on columns, digits as 9: what its
    options and the figures' widths decide, whatever the device or the mount point."""
    lines = text.splitlines()
    width = max(14, *(len(line.split()[0]) for line in lines[1:]))
    middle = [lines[0][width + 1 :].removesuffix(" Mounted on")]
    middle += [line[width + 1 :].rsplit(" ", 1)[0] for line in lines[1:]]
    return [re.sub(r"\d", "9", line) for line in middle]


def _plain_env() -> dict[str, str]:
    """The environment without what changes df's block size."""
    sizing = ("DF_BLOCK_SIZE", "BLOCK_SIZE", "BLOCKSIZE", "POSIXLY_CORRECT")
    return {name: value for name, value in os.environ.items() if name not in sizing}


@pytest.mark.parametrize("options", ["", "-k", "-P", "-Pk", "-h", "-hP", "-P -h", "-h -k"])
def test_builtin_df_prints_as_coreutils_df(shell_server: Server, options: str) -> None:
    """The built-in ``df`` prints GNU coreutils' headers (``df -P``: ``1024-blocks`` and
    ``Capacity``) and aligns columns as it does, compared with the real ``df`` of the
    jail's folder (figures may move meanwhile: only their widths are compared)."""
    require("df")
    ours = _ssh(shell_server, "jailed", f"df {options} /".replace("  ", " "))
    assert ours.returncode == 0, ours.stderr
    real = subprocess.run(
        ["df", *options.split(), str(_jail(shell_server))], capture_output=True, text=True,
        env={**_plain_env(), "LC_ALL": "C"}, timeout=TIMEOUT,
    )  # fmt: skip
    assert real.returncode == 0, real.stderr
    text = ours.stdout.decode()
    assert text.split("\n", 1)[0].split()[1:] == real.stdout.split("\n", 1)[0].split()[1:]
    assert _df_layout(text) == _df_layout(real.stdout), (text, real.stdout)


def _forbidden(server: Server) -> list[bytes]:
    """What must never reach a jailed user: markers, host files' text and their digests."""
    texts = [ENV_MARKER, OUTSIDE_MARKER, ROOT_MARKER, "root:x:0:0"]
    sources = [
        Path("/etc/passwd").read_bytes(),
        (server.root / "etc" / "passwd").read_bytes(),
        (server.outside / "secret.txt").read_bytes(),
        Path(f"/proc/{server.process.pid}/environ").read_bytes(),
    ]
    assert ENV_MARKER.encode() in sources[-1]
    digests = [ALGORITHMS[c](data).hexdigest() for data in sources for c in ALGORITHMS]
    return [t.encode() for t in texts + digests]


REFUSED = [
    "sh -c id",
    "id",
    "bash -l",
    "/bin/sh -c 'cat /etc/passwd'",
    "cat /etc/passwd",
    "rsync --server -vlogDtpre.iLsfxCIvu . /tmp",
    "env",
    "scp",
    "md5sum; cat /etc/passwd",
]


@pytest.mark.parametrize("command", REFUSED)
def test_jailed_other_commands_are_refused_and_logged(shell_server: Server, command: str) -> None:
    """Anything but the built-ins: a clear message on stderr, status 1, nothing run, logged."""
    result = _ssh(shell_server, "jailed", command)
    assert result.returncode == 1, result
    assert result.stdout == b""
    assert b"not available for jailed" in result.stderr, result.stderr
    for secret in _forbidden(shell_server):
        assert secret not in result.stdout + result.stderr
    deadline = time.monotonic() + 10
    while "refused command" not in shell_server.log.read_text():
        assert time.monotonic() < deadline, "the refusal was not logged"
        time.sleep(0.1)
    assert repr(command) in shell_server.log.read_text()


ESCAPES = [
    "sha256sum ../../etc/passwd",
    "md5sum /proc/self/environ",
    "md5sum ../../../outside/secret.txt",
    "sha1sum /../../../../etc/passwd",
    "md5sum $HOME/../../../etc/passwd",
    "sha256sum ${PWD}/../../../../proc/self/environ",
    "md5sum escape-link",
    "md5sum passwd-link",
    "sha1sum up-link",
    "md5sum x; cat /etc/passwd",
    "echo $(cat /etc/passwd)",
    "echo `cat /etc/passwd` $HOODY_TEST_SECRET ${HOODY_TEST_SECRET}",
    "df ../../../outside",
]


@pytest.mark.parametrize("command", ESCAPES)
def test_jailed_commands_reveal_nothing_outside(shell_server: Server, command: str) -> None:
    """Paths, links, substitutions and variables: status 1 or a jail-local answer, no leak."""
    result = _ssh(shell_server, "jailed", command)
    for secret in _forbidden(shell_server):
        assert secret not in result.stdout + result.stderr, (command, result)
    jail_digests = {
        ALGORITHMS[c](path.read_bytes()).hexdigest()
        for path in _jail(shell_server).rglob("*")
        if path.is_file() and not path.is_symlink()
        for c in ALGORITHMS
    }
    name = command.split()[0]
    if name in ALGORITHMS:
        assert result.returncode in (0, 1), result
        for line in result.stdout.decode().splitlines():
            assert line.split("  ", 1)[0] in jail_digests, (command, line)
    if command.startswith(("md5sum /proc", "sha256sum ${PWD}", "md5sum escape", "sha1sum up")):
        assert result.returncode == 1 and result.stdout == b"", (command, result)
    if command == "sha256sum ../../etc/passwd":
        local = hashlib.sha256(JAIL_PASSWD.encode()).hexdigest()
        assert result.returncode == 1 or result.stdout == f"{local}  ../../etc/passwd\n".encode()


def test_jailed_user_gets_no_shell(shell_server: Server) -> None:
    """``ssh -tt jailed@host`` (a shell request) is refused with a message and status 1:
    one that says how to get a shell, and ends its line as a terminal needs (it ended
    with a bare newline, and the next line began mid-screen)."""
    result = _ssh(shell_server, "jailed", None, tty=True)
    assert result.returncode == 1, result
    assert b"no shell for jailed" in result.stderr
    assert b"shell = true in [users.jailed]" in result.stderr
    assert b"for the default user)\r\n" in result.stderr, result.stderr


# --------------------------------------------------------------------------- jailed: rclone


def _rclone(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """rclone over an on-the-fly ``:sftp:`` remote as ``jailed``, hash commands given."""
    require("rclone")
    argv = ["rclone", "--config", "/dev/null",
            "--sftp-host", "127.0.0.1", "--sftp-port", str(server.port), "--sftp-user", "jailed",
            "--sftp-key-file", str(server.key),
            "--sftp-md5sum-command", "md5sum", "--sftp-sha1sum-command", "sha1sum",
            "--low-level-retries", "1", "--retries", "1", "--contimeout", "20s",
            "--timeout", "60s", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def _rclone_data(server: Server) -> Path:
    data = _jail(server) / "data"
    _make_tree(data, 25, link=False)  # rclone skips links by default
    (data / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    return data


def test_rclone_check_download(shell_server: Server, tmp_path: Path) -> None:
    """``rclone check`` by hash and ``--download``: no difference; a changed file is found."""
    data = _rclone_data(shell_server)
    local = tmp_path / "copy"
    _run(["cp", "-a", str(data), str(local)])
    for extra in ([], ["--download"]):
        result = _rclone(shell_server, "check", *extra, str(local), ":sftp:data")
        assert result.returncode == 0, result.stderr
        assert "0 differences found" in result.stderr
    (local / "dir3" / "sub 0" / "file 3.txt").write_bytes(b"not the same\n")
    for extra in ([], ["--download"]):
        result = _rclone(shell_server, "check", *extra, str(local), ":sftp:data")
        assert result.returncode != 0, result.stderr
        assert "1 differences found" in result.stderr, result.stderr


def test_rclone_uploads_a_name_that_is_not_utf8(shell_server: Server, tmp_path: Path) -> None:
    """rclone checks each upload with md5sum over exec: a name that is not UTF-8 made
    that exec fail, and rclone took the upload for corrupted and deleted it."""
    local = tmp_path / "odd"
    local.mkdir()
    name = os.fsdecode(b"bad\xffup.txt")
    (local / name).write_bytes(b"payload\n")
    result = _rclone(shell_server, "copy", str(local), ":sftp:odd")
    assert result.returncode == 0, result.stderr
    assert (_jail(shell_server) / "odd" / name).read_bytes() == b"payload\n"


def test_rclone_sees_the_hash_of_a_name_with_a_dollar(shell_server: Server, tmp_path: Path) -> None:
    """rclone quotes ``z$v.txt`` as ``z\\$v.txt`` for md5sum: the built-in hashed
    ``z.txt`` instead, so ``rclone check`` found no difference where there was one and
    an upload of ``price$usd.txt`` failed as "corrupted on transfer"."""
    remote, local = _jail(shell_server) / "dollar", tmp_path / "dollar"
    for folder, changed in ((remote, b"BBBB"), (local, b"AAAA")):
        folder.mkdir()
        (folder / "z.txt").write_bytes(b"AAAA")
        (folder / "z$v.txt").write_bytes(changed)
    result = _rclone(shell_server, "hashsum", "MD5", ":sftp:dollar")
    assert result.returncode == 0, result.stderr
    sums = dict(reversed(line.split("  ", 1)) for line in result.stdout.splitlines())
    assert sums == {"z.txt": hashlib.md5(b"AAAA").hexdigest(),
                    "z$v.txt": hashlib.md5(b"BBBB").hexdigest()}  # fmt: skip
    result = _rclone(shell_server, "check", str(local), ":sftp:dollar")
    assert result.returncode != 0 and "1 differences found" in result.stderr, result.stderr
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "price$usd.txt").write_bytes(b"12.50 USD\n")
    (upload / "price.txt").write_bytes(b"other\n")
    result = _rclone(shell_server, "copy", str(upload), ":sftp:prices")
    assert result.returncode == 0, result.stderr
    assert (_jail(shell_server) / "prices" / "price$usd.txt").read_bytes() == b"12.50 USD\n"


@pytest.mark.parametrize(("kind", "command"), [("MD5", "md5sum"), ("SHA1", "sha1sum")])
def test_rclone_hashsum_agrees(shell_server: Server, kind: str, command: str) -> None:
    """``rclone hashsum`` over the jailed user's sftp agrees with local sums of every file."""
    data = _rclone_data(shell_server)
    result = _rclone(shell_server, "hashsum", kind, ":sftp:data")
    assert result.returncode == 0, result.stderr
    remote = dict(reversed(line.split("  ", 1)) for line in result.stdout.splitlines())
    local = {
        str(path.relative_to(data)): ALGORITHMS[command](path.read_bytes()).hexdigest()
        for path in data.rglob("*")
        if path.is_file()
    }
    assert remote == local


def test_rclone_about_reports_the_jail(shell_server: Server) -> None:
    """``rclone about`` (df over the shell or statvfs) gives the jail filesystem's size."""
    result = _rclone(shell_server, "about", "--json", ":sftp:")
    assert result.returncode == 0, result.stderr
    about = json.loads(result.stdout)
    st = os.statvfs(_jail(shell_server))
    total = st.f_blocks * st.f_frsize
    assert abs(about["total"] - total) <= 1024, (about, total)


def test_builtin_df_h_is_human_readable_and_other_options_are_named(
    shell_server: Server,
) -> None:
    """``df -h`` prints sizes as coreutils does (powers of 1024 with a unit); an option
    the built-in lacks is named in the refusal (it was ignored)."""
    human = _ssh(shell_server, "jailed", "df -h")
    assert human.returncode == 0, human.stderr
    header, line = human.stdout.decode().splitlines()
    assert header.split() == ["Filesystem", "Size", "Used", "Avail", "Use%", "Mounted", "on"]
    sizes = line.split()[1:4]
    assert all(re.fullmatch(r"\d+(\.\d)?[KMGTPE]?", size) for size in sizes), line
    refused = _ssh(shell_server, "jailed", "df -i")
    assert refused.returncode == 1
    assert b"df: -i: not supported here" in refused.stderr


@pytest.mark.parametrize(
    "command",
    [
        "sha256sum small.txt; md5sum small.txt",
        "md5sum small.txt | cat",
        "md5sum $(echo x)",
        'md5sum "$(echo x)"',
        'md5sum "small`echo x`.txt"',
        "md5sum small.txt\nmd5sum small.txt",
    ],
)
def test_a_builtin_line_with_shell_operators_is_refused_whole(
    shell_server: Server, command: str
) -> None:
    """No shell runs for such a user: a line with ``;``, ``|`` or a substitution is
    refused with the reason (``;`` was read as part of a file name)."""
    (_jail(shell_server) / "small.txt").write_text("small\n")
    result = _ssh(shell_server, "jailed", command)
    assert result.returncode == 1
    assert b"one command at a time" in result.stderr, result.stderr
    assert result.stdout == b""
    quoted = _ssh(shell_server, "jailed", "md5sum 'small.txt'")
    assert quoted.returncode == 0, quoted.stderr


def test_the_refusal_of_an_unknown_command_lists_every_builtin(shell_server: Server) -> None:
    result = _ssh(shell_server, "jailed", "ls")
    assert result.returncode == 1
    served = (
        b"only SFTP, scp, echo, md5sum, sha1sum, sha256sum, df, du and sqlite-snapshot are served"
    )
    assert served in result.stderr


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "pty"])
def test_a_command_ends_when_its_client_goes(shell_server: Server, tty: bool) -> None:
    """A command whose client goes away (or is sent away: a kill, a stop) gets SIGHUP,
    as on a terminal that hangs up, and is gone: it did not run on, orphaned."""
    pid_file = shell_server.root / "work" / f"cmd-{tty}.pid"
    argv = [*_ssh_command(shell_server), *(["-tt"] if tty else []), "admin@127.0.0.1",
            f"echo $$ > {pid_file.name}; exec sleep 300"]  # fmt: skip
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline")
        # The pid is written before ``exec``: wait for the shell to become the sleep.
        assert wait_until(lambda: cmdline.read_bytes().startswith(b"sleep"), 30)
        client.kill()
        client.wait()
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), 20), "still running"
    finally:
        client.kill()
