"""Shared fixtures: a real hoody-mount server on an ephemeral loopback port, and client keys.

``server`` starts ``python -m hoody_mount serve`` with a config file of three users:
- ``root``: read-write over the whole served root, key and password;
- ``reader``: read-only, jailed to ``/share``, key and password;
- ``jailed``: read-write, jailed to ``/home/jailed``, key only.
The served root holds an ``outside`` neighbour folder (``<tmp>/outside``) that no user may
ever reach. Clients tests need are checked by ``require``: a missing client fails.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hoody_mount.core.users import hash_password

PASSWORD = "correct horse battery staple"
READER_PASSWORD = "reader-secret"


def require(*programs: str) -> None:
    """Fail (never skip) when a client program the test drives is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.fail(f"required client(s) not installed: {', '.join(missing)} (run `make test`)")


def cannot_run_here(reason: str) -> None:
    """Skip a test this machine cannot run (no tmpfs, not root), but fail under CI,
    where every test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"cannot run on this CI machine: {reason}")
    pytest.skip(reason)


@dataclass
class Server:
    """A running server and what a test needs to reach it."""

    port: int
    root: Path
    outside: Path
    state: Path
    key: Path
    process: subprocess.Popen[str]
    log: Path
    http_port: int = 0

    @property
    def url(self) -> str:
        """Base URL of the HTTP listener (WebDAV lives under /dav/)."""
        return f"http://127.0.0.1:{self.http_port}"

    def ssh_options(self, key: Path | None = None) -> list[str]:
        """OpenSSH client options for this server (key auth, no host key prompts)."""
        return [
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-i", str(key or self.key),
        ]  # fmt: skip

    def sftp_batch(self, commands: str, user: str = "root") -> subprocess.CompletedProcess[str]:
        """Run OpenSSH ``sftp -b -`` with the commands on stdin."""
        require("sftp")
        return subprocess.run(
            ["sftp", "-b", "-", "-P", str(self.port), *self.ssh_options(), f"{user}@127.0.0.1"],
            input=commands,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ed25519 client key pair made with ssh-keygen."""
    require("ssh-keygen")
    folder = tmp_path_factory.mktemp("keys")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@functools.cache
def password_hash(password: str) -> str:
    """A scrypt hash of ``password``, made once per test run (each costs about 0.1 s,
    and every server a test starts needs two)."""
    return hash_password(password)


def write_config(path: Path, root: Path, state: Path, pub: str) -> None:
    """A config with the three test users."""
    path.write_text(
        f"""
root = "{root}"
state_dir = "{state}"
shutdown_grace = 3

[ssh]
listen = "127.0.0.1:0"
max_handles = 64
max_sessions = 4

[http]
listen = "127.0.0.1:0"

[users.root]
password_hash = "{password_hash(PASSWORD)}"
authorized_keys = ["{pub}"]

[users.reader]
password_hash = "{password_hash(READER_PASSWORD)}"
authorized_keys = ["{pub}"]
root = "/share"
access = "ro"

[users.jailed]
authorized_keys = ["{pub}"]
root = "/home/jailed"
"""
    )


def start_server(
    args: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int, str]:
    """Start ``hoody-mount serve ARGS``; wait for the SSH port it prints; return the banner too."""
    out = open(log, "w")  # noqa: SIM115 - the server writes here until it stops
    process = subprocess.Popen(
        [sys.executable, "-m", "hoody_mount", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=out,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    banner: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        banner.append(line)
        if line.startswith("Ready."):
            break
    text = "".join(banner)
    match = re.search(r"SSH/SFTP listening on \S+:(\d+)", text)
    if match is None:
        process.kill()
        raise RuntimeError(f"server did not start: {text}\n{log.read_text()}")
    return process, int(match.group(1)), text


def basic_request(
    port: int, method: str, path: str, user: str, password: str, body: bytes = b"", **headers: str
) -> tuple[int, bytes]:
    """One HTTP request to 127.0.0.1:``port`` with Basic credentials; status and body."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        auth = {"Authorization": f"Basic {token}", **headers}
        conn.request(method, path, body=body, headers=auth)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def http_port(banner: str) -> int:
    """The HTTP port a server printed at start."""
    match = re.search(r"HTTP listening on https?://\S+:(\d+)", banner)
    assert match, banner
    return int(match.group(1))


def stop_server(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then wait; a server that does not stop in time fails the test."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("server did not stop on SIGTERM") from None


@contextlib.contextmanager
def served(
    base: Path,
    client_key: Path,
    users: str = "",
    flags: tuple[str, ...] = (),
    top: str = "",
    http: str = "",
) -> Iterator[Server]:
    """A server over a fresh tree under ``base`` (``/share/docs/readme.txt``,
    ``/home/jailed``, ``/etc`` with two users, a secret outside the root) for
    ``write_config``'s three users, plus the TOML ``users`` appended, the top-level
    keys ``top`` put first and the keys ``http`` in its [http] table; stopped on exit."""
    root, outside, state = base / "root", base / "outside", base / "state"
    for folder in (root / "share" / "docs", root / "home" / "jailed", root / "etc", outside):
        folder.mkdir(parents=True)
    (root / "share" / "docs" / "readme.txt").write_text("shared text\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/:\n")
    (root / "etc" / "group").write_text("root:x:0:\nstaff:x:1000:\n")
    (outside / "secret.txt").write_text("outside secret\n")
    config = base / "hoody-mount.toml"
    write_config(config, root, state, client_key.with_suffix(".pub").read_text().strip())
    text = config.read_text().replace("[http]\n", f"[http]\n{http}\n", 1)
    config.write_text(top + "\n" + text + users)
    log = base / "server.log"
    process, port, banner = start_server(["--config", str(config), *flags], log)
    try:
        yield Server(port, root, outside, state, client_key, process, log, http_port(banner))
    finally:
        stop_server(process)


@pytest.fixture
def server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    """A fresh server over a fresh tree for one test."""
    with served(tmp_path, client_key) as running:
        yield running


# Stdlib packages whose sources make a realistic tree of a few hundred files.
SOURCE_PACKAGES = (
    "json", "email", "http", "asyncio", "unittest", "xml", "encodings", "lib2to3", "idlelib",
    "ctypes", "multiprocessing", "importlib", "concurrent", "tkinter", "logging", "sqlite3",
)  # fmt: skip
MIN_FILES, MAX_FILES = 300, 700


@pytest.fixture(scope="session")
def source_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tar of a few hundred stdlib source files (no ``__pycache__``)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chosen: list[str] = []
    count = 0
    for package in SOURCE_PACKAGES:
        folder = stdlib / package
        if not folder.is_dir():
            continue
        files = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        if count + len(files) > MAX_FILES:
            continue
        chosen.append(package)
        count += len(files)
    assert count >= MIN_FILES, f"only {count} stdlib source files found under {stdlib}"
    tar = tmp_path_factory.mktemp("source") / "source.tar"

    def no_cache(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if "__pycache__" in info.name.split("/") else info

    with tarfile.open(tar, "w") as archive:
        for package in chosen:
            archive.add(stdlib / package, arcname=package, filter=no_cache)
    return tar


def extract(tar: Path, into: Path) -> Path:
    """Extract ``tar`` into a new local folder ``into`` with the tar program."""
    require("tar")
    into.mkdir(parents=True)
    result = subprocess.run(
        ["tar", "-xf", str(tar), "-C", str(into)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return into


POOL_THREAD_NAMES = {"hoody-io", "hoody-copy"}  # the bounded pools of hoody_mount/workers.py


@dataclass(frozen=True)
class Vitals:
    """A server process's thread count and resident memory. Threads of the server's
    bounded worker pools (named ``hoody-io`` and ``hoody-copy``) are not counted: a pool
    starts threads as it needs them, up to its bound, and keeps them."""

    threads: int
    rss_mb: float

    @classmethod
    def of(cls, pid: int) -> Vitals:
        """Read them from /proc."""
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        threads = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # (a thread that just ended)
                threads += (task / "comm").read_text().strip() not in POOL_THREAD_NAMES
        return cls(threads, int(fields["VmRSS"].split()[0]) / 1024)

    def near(self, now: Vitals) -> bool:
        """Whether ``now`` is back near these: two threads more at most (helpers that are
        ending) and 64 MB (memory the allocator keeps)."""
        return now.threads <= self.threads + 2 and now.rss_mb <= self.rss_mb + 64


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_back_to_normal(pid: int, before: Vitals, within: float = 30.0) -> None:
    """After an attack: the server is idle again (under a tenth of a CPU over a second),
    and its threads and memory come back near ``before``."""
    seen: list[str] = []

    def normal() -> bool:
        used = cpu_seconds(pid)
        time.sleep(1)
        busy = cpu_seconds(pid) - used
        now = Vitals.of(pid)
        seen.append(f"{now}, {busy:.2f} s of CPU in 1 s")
        return busy < 0.1 and before.near(now)

    assert wait_until(normal, within, 0.1), f"before the attack {before}, after it {seen[-1]}"


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def server_log(server: Server) -> str:
    """The end of the server's log, for failure messages."""
    return server.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def tmpfs(at: Path, size: str = "256m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted at ``at`` (made if missing) for the block;
    unmounted on the way out (lazily if it is busy)."""
    require("mount", "umount")
    at.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)], check=True, timeout=30
    )
    try:
        yield at
    finally:
        subprocess.run(["umount", str(at)], capture_output=True, timeout=30)
        if is_mounted(at):
            subprocess.run(["umount", "-l", str(at)], capture_output=True, timeout=30)
        assert not is_mounted(at)


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point, read from mountinfo (never touching a hung mount)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == target:
                return True
    return False


def unmount(mountpoint: Path, process: subprocess.Popen[str] | None) -> None:
    """Unmount a FUSE mount, stop its client process, and make sure nothing is left behind."""

    def quiet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=30)

    if (
        is_mounted(mountpoint)
        and quiet("fusermount3", "-u", str(mountpoint)).returncode
        and is_mounted(mountpoint)
    ):
        quiet("fusermount3", "-u", "-z", str(mountpoint))
    if process is not None:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
    if is_mounted(mountpoint):
        quiet("umount", "-l", str(mountpoint))
    assert not is_mounted(mountpoint), f"{mountpoint} is still mounted"


Snapshot = dict[str, tuple[int, int, bytes]]


def snapshot(folder: Path) -> Snapshot:
    """Every path under ``folder`` (itself included) with its mode, mtime and content."""
    state: Snapshot = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path).encode()
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        else:
            content = b""
        state[str(path.relative_to(folder))] = (info.st_mode, info.st_mtime_ns, content)
    return state
