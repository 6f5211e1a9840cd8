"""Start and stop the servers under test on loopback, each as a context manager.

Every server serves its own folder under one temp dir (so all sit on the same filesystem)
and writes its output to a log file there. hoody-mount serves SFTP and WebDAV; the anchors
are OpenSSH's sshd with its sftp-server, stock WsgiDAV (FilesystemProvider on cheroot),
``rclone serve webdav`` and ``rclone serve sftp``; a bare app on cheroot marks the floor
of what a request can cost on cheroot, and asyncssh's stock SFTP server (as released, and
with hoody-mount's asyncssh patches) the floor of what an SFTP request costs on asyncssh.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SSHD = "/usr/sbin/sshd"

HOODY = "hoody-mount"
OPENSSH = "openssh"
RCLONE_SFTP = "rclone-sftp"
WSGIDAV = "wsgidav"
RCLONE_WEBDAV = "rclone-webdav"
CHEROOT = "cheroot"
ASYNCSSH = "asyncssh"
ASYNCSSH_PATCHED = "asyncssh-patched"

LABELS = {
    HOODY: "hoody-mount",
    OPENSSH: "OpenSSH sftp-server",
    RCLONE_SFTP: "rclone serve sftp",
    WSGIDAV: "stock WsgiDAV",
    RCLONE_WEBDAV: "rclone serve webdav",
    CHEROOT: "bare cheroot app (floor)",
    ASYNCSSH: "stock asyncssh SFTP server (floor)",
    ASYNCSSH_PATCHED: "stock asyncssh SFTP server, hoody-mount's asyncssh patches (floor)",
}


class ServerError(RuntimeError):
    """A server could not be started."""


@dataclass
class Endpoint:
    """A running server and what a client needs to reach it."""

    key: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path
    ssh_port: int = 0
    ssh_user: str = ""
    ssh_base: str = "/"
    dav_url: str = ""
    api_url: str = ""  # hoody-mount's file API (/api/v1/files/), none for the anchors
    dav_user: str = ""
    dav_password: str = ""

    @property
    def label(self) -> str:
        """Human name of the server."""
        return LABELS[self.key]

    @property
    def pid(self) -> int:
        """Process id of the server (the listening sshd for OpenSSH)."""
        return self.process.pid

    def remote(self, relative: str) -> str:
        """SFTP path of ``relative`` (a path inside the served folder)."""
        return f"{self.ssh_base.rstrip('/')}/{relative.lstrip('/')}"

    def url(self, relative: str) -> str:
        """WebDAV URL of ``relative``."""
        return f"{self.dav_url}{relative.lstrip('/')}"

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    """A TCP port that was free a moment ago on the loopback address."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_for(
    process: subprocess.Popen[bytes], log: Path, pattern: str, timeout: float = 30.0
) -> re.Match[str]:
    """Poll the log file until ``pattern`` appears; fail if the process exits first."""
    regex = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        match = regex.search(text)
        if match:
            return match
        if process.poll() is not None:
            break
        time.sleep(0.05)
    text = log.read_text(errors="replace") if log.exists() else ""
    _stop(process)
    raise ServerError(f"{log.stem}: did not start (waiting for {pattern!r}):\n{text[-2000:]}")


def _spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def descendants(pid: int) -> list[int]:
    """``pid`` and all its living descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (and what it started), then SIGKILL whatever is left."""
    if process.poll() is not None:
        return
    tree = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for pid in tree[1:]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(endpoint: Endpoint) -> Iterator[Endpoint]:
    """Yield the endpoint; stop its server afterwards, whatever happened."""
    try:
        yield endpoint
    finally:
        _stop(endpoint.process)


@contextmanager
def hoody_mount(
    base: Path, data: Path, public_key: str, dav_user: str, password_hash: str, password: str
) -> Iterator[Endpoint]:
    """``python -m hoody_mount serve`` with a key user (``bench``) and a password user."""
    state = base / "state-hoody"
    config = base / "hoody-mount.toml"
    config.write_text(
        f"""# generated by bench/run.py
root = "{data}"
state_dir = "{state}"
default_user = "{dav_user}"

[ssh]
listen = "{HOST}:0"
max_connections = 512
max_connections_per_address = 512
max_unauthenticated = 512
max_unauthenticated_per_address = 512  # (every bench client comes from one address)

[http]
listen = "{HOST}:0"
max_connections_per_address = 4096  # (every bench client comes from one address)
uploads_per_user = 64  # (and is one user)

[users.bench]
authorized_keys = ["{public_key}"]

[users.{dav_user}]
password_hash = "{password_hash}"
"""
    )
    log = base / "hoody-mount.log"
    process = _spawn(
        [sys.executable, "-m", "hoody_mount", "serve", "--config", str(config)],
        log,
        {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(PROJECT_DIR)},
    )
    _wait_for(process, log, r"^Ready\.")
    text = log.read_text(errors="replace")
    ssh = re.search(r"SSH/SFTP listening on \S+:(\d+)", text)
    http = re.search(r"HTTP listening on (https?://\S+?:\d+)", text)
    if not ssh or not http:
        _stop(process)
        raise ServerError(f"hoody-mount: no ports in its banner:\n{text[-2000:]}")
    endpoint = Endpoint(
        HOODY,
        data,
        process,
        log,
        ssh_port=int(ssh.group(1)),
        ssh_user="bench",
        dav_url=f"{http.group(1)}/dav/",
        api_url=f"{http.group(1)}/api/v1/files/",
        dav_user=dav_user,
        dav_password=password,
    )
    yield from _running(endpoint)


@contextmanager
def openssh(base: Path, data: Path, authorized_keys: Path) -> Iterator[Endpoint]:
    """OpenSSH's sshd on a private port with its own host key, config and sftp-server."""
    folder = base / "sshd"
    folder.mkdir()
    host_key = folder / "ssh_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
        check=True,
        timeout=30,
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    for _attempt in range(3):
        port = free_port()
        config = folder / "sshd_config"
        config.write_text(
            f"""# generated by bench/run.py
Port {port}
ListenAddress {HOST}
HostKey {host_key}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 256
MaxSessions 64
LogLevel INFO
Subsystem sftp {SFTP_SERVER}
"""
        )
        log = base / "openssh.log"
        process = _spawn([SSHD, "-D", "-e", "-f", str(config)], log)
        try:
            _wait_for(process, log, r"Server listening on \S+ port \d+")
        except ServerError:
            if "Address already in use" in log.read_text(errors="replace"):
                continue
            raise
        endpoint = Endpoint(
            OPENSSH, data, process, log, ssh_port=port, ssh_user=user, ssh_base=str(data)
        )
        yield from _running(endpoint)
        return
    raise ServerError("sshd: no free port after 3 attempts")


@contextmanager
def wsgidav(base: Path, data: Path, user: str, password: str) -> Iterator[Endpoint]:
    """Stock WsgiDAV (FilesystemProvider on cheroot), see ``stock_wsgidav.py``."""
    yield from _cheroot_script(WSGIDAV, "stock_wsgidav.py", "WsgiDAV", base, data, user, password)


@contextmanager
def bare_cheroot(base: Path, data: Path, user: str, password: str) -> Iterator[Endpoint]:
    """A bare GET-only WSGI app on cheroot, the floor of request costs on cheroot, see
    ``bare_cheroot.py``."""
    yield from _cheroot_script(CHEROOT, "bare_cheroot.py", "cheroot", base, data, user, password)


def _cheroot_script(
    key: str, script: str, banner: str, base: Path, data: Path, user: str, password: str
) -> Iterator[Endpoint]:
    """Run one of the bench's cheroot scripts on ``data`` until the caller is done."""
    log = base / f"{key}.log"
    process = _spawn([sys.executable, str(BENCH_DIR / script), str(data), user, password], log)
    match = _wait_for(process, log, re.escape(banner) + r" listening on \S+:(\d+)")
    endpoint = Endpoint(
        key,
        data,
        process,
        log,
        dav_url=f"http://{HOST}:{match.group(1)}/",
        dav_user=user,
        dav_password=password,
    )
    yield from _running(endpoint)


@contextmanager
def bare_asyncssh(
    base: Path, data: Path, authorized_keys: Path, patched: bool = False
) -> Iterator[Endpoint]:
    """asyncssh's stock SFTP server rooted at ``data`` (``--patched``: with hoody-mount's
    asyncssh patches), the floor of request costs on asyncssh, see ``bare_asyncssh.py``."""
    key = ASYNCSSH_PATCHED if patched else ASYNCSSH
    host_key = base / f"{key}_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
        check=True,
        timeout=30,
    )
    log = base / f"{key}.log"
    command = [
        sys.executable, str(BENCH_DIR / "bare_asyncssh.py"),
        str(data), str(host_key), str(authorized_keys),
    ]  # fmt: skip
    process = _spawn(
        [*command, "--patched"] if patched else command,
        log,
        {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(PROJECT_DIR)},
    )
    match = _wait_for(process, log, r"asyncssh listening on \S+:(\d+)")
    user = pwd.getpwuid(os.getuid()).pw_name  # (any name will do; OpenSSH's, for symmetry)
    endpoint = Endpoint(key, data, process, log, ssh_port=int(match.group(1)), ssh_user=user)
    yield from _running(endpoint)


def _rclone_env(base: Path) -> dict[str, str]:
    config = base / "rclone.conf"
    config.touch()
    return {"RCLONE_CONFIG": str(config)}


@contextmanager
def rclone_webdav(base: Path, data: Path, user: str, password: str) -> Iterator[Endpoint]:
    """``rclone serve webdav`` of the folder, with a user and password."""
    log = base / "rclone-webdav.log"
    process = _spawn(
        [
            "rclone", "serve", "webdav", str(data), "--addr", f"{HOST}:0",
            "--user", user, "--pass", password,
        ],
        log,
        _rclone_env(base),
    )  # fmt: skip
    match = _wait_for(process, log, r"WebDav Server started on \[?(http://[^\s\]/]+)/")
    endpoint = Endpoint(
        RCLONE_WEBDAV,
        data,
        process,
        log,
        dav_url=f"{match.group(1)}/",
        dav_user=user,
        dav_password=password,
    )
    yield from _running(endpoint)


@contextmanager
def rclone_sftp(base: Path, data: Path, authorized_keys: Path) -> Iterator[Endpoint]:
    """``rclone serve sftp`` of the folder, with key authentication."""
    host_key = base / "rclone_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
        check=True,
        timeout=30,
    )
    log = base / "rclone-sftp.log"
    process = _spawn(
        [
            "rclone", "serve", "sftp", str(data), "--addr", f"{HOST}:0",
            "--authorized-keys", str(authorized_keys), "--key", str(host_key),
        ],
        log,
        _rclone_env(base),
    )  # fmt: skip
    match = _wait_for(process, log, r"SFTP server listening on \S+:(\d+)")
    endpoint = Endpoint(
        RCLONE_SFTP, data, process, log, ssh_port=int(match.group(1)), ssh_user="bench"
    )
    yield from _running(endpoint)


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A memory field of /proc/PID/status in KiB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid: int) -> tuple[int, int, int]:
    """RSS and PSS summed over ``pid`` and its descendants, in KiB; and how many processes."""
    total_rss = total_pss = 0
    pids = descendants(pid)
    for member in pids:
        total_rss += rss_kb(member)
        try:
            with open(f"/proc/{member}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total_pss += int(line.split()[1])
                        break
        except OSError:
            pass
    return total_rss, total_pss, len(pids)


class PeakSampler:
    """Samples the RSS of some processes every ``interval`` seconds, in a thread.

    VmHWM alone can miss a peak after a reset: the kernel updates it lazily (on unmap),
    and memory given back with madvise (Go's scavenger, glibc's trimming) lowers RSS
    without updating it. The peaks reported are the larger of VmHWM and these samples.
    """

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids, self.interval = pids, interval
        self.window: dict[str, int] = dict.fromkeys(pids, 0)
        self.total: dict[str, int] = dict.fromkeys(pids, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample of every process now."""
        for key, pid in self.pids.items():
            value = rss_kb(pid)
            with self._lock:
                self.window[key] = max(self.window[key], value)
                self.total[key] = max(self.total[key], value)

    def reset_window(self, key: str) -> None:
        """Start a new window for ``key`` (alongside a VmHWM reset)."""
        with self._lock:
            self.window[key] = 0

    def window_kb(self, key: str) -> int:
        """The highest RSS sampled for ``key`` since its window began."""
        self.sample()
        with self._lock:
            return self.window[key]

    def total_kb(self, key: str) -> int:
        """The highest RSS sampled for ``key`` since the sampler started."""
        self.sample()
        with self._lock:
            return self.total[key]


def reset_peak(pid: int) -> bool:
    """Reset VmHWM of ``pid`` (``echo 5 > /proc/PID/clear_refs``); False if not possible."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
