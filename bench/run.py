"""Benchmark hoody-mount against OpenSSH, stock WsgiDAV and rclone on loopback.

Starts every server on identical data in one temp folder, runs each selected workload
``--runs`` times alternating the servers (A B C A B C ...), and prints a Markdown table of
the medians and the ratios hoody-mount / anchor; the same report is written to
``bench/results/YYYY-MM-DD-HOST[-quick].md``. Run it with the project's venv::

    .venv/bin/python bench/run.py --quick
    .venv/bin/python bench/run.py --only sshfs many memory
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from datetime import date
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
import servers  # noqa: E402
import workloads  # noqa: E402
from servers import (  # noqa: E402
    ASYNCSSH,
    ASYNCSSH_PATCHED,
    CHEROOT,
    HOODY,
    OPENSSH,
    RCLONE_SFTP,
    RCLONE_WEBDAV,
    WSGIDAV,
    Endpoint,
)
from workloads import MEMORY, Bench, Recorder, Results, Workload  # noqa: E402

from hoody_mount.core.users import hash_password  # noqa: E402

DAV_USER = "dav"
DAV_PASSWORD = "bench-password-0123"
SINGLE_PROCESS = (HOODY, RCLONE_SFTP, WSGIDAV, RCLONE_WEBDAV)
ORDER = [HOODY, OPENSSH, RCLONE_SFTP, ASYNCSSH, ASYNCSSH_PATCHED, RCLONE_WEBDAV, WSGIDAV, CHEROOT]
FLOORS = (ASYNCSSH, ASYNCSSH_PATCHED, CHEROOT)  # request costs only, no memory rows
MEMORY_SERVERS = [key for key in ORDER if key not in FLOORS]
MEMORY_SSH = (HOODY, OPENSSH, RCLONE_SFTP)
MEMORY_HTTP = (HOODY, RCLONE_WEBDAV, WSGIDAV)


def say(text: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    names = [w.name for w in workloads.catalogue(workloads.FULL)]
    groups = sorted({w.group for w in workloads.catalogue(workloads.FULL)} | {MEMORY})
    parser = argparse.ArgumentParser(
        description="Benchmark hoody-mount against OpenSSH, stock WsgiDAV and rclone.",
        epilog=f"Workloads: {', '.join(names)}, {MEMORY}. Groups: {', '.join(groups)}.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (64 MiB files, ~150-file tree)"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="WORKLOAD", help="run only these workloads or groups"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per server (default 3)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="folder for the report (default bench/results)",
    )
    parser.add_argument("--tmpdir", type=Path, help="where to make the temp folder")
    parser.add_argument(
        "--rclone-sftp",
        action=argparse.BooleanOptionalAction,
        help="also compare with rclone serve sftp (default: yes, but no with --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    known = set(names) | set(groups)
    for name in args.only or []:
        if name not in known:
            parser.error(f"--only: unknown workload {name!r} (known: {', '.join(sorted(known))})")
    if args.runs < 1:
        parser.error("--runs: at least 1")
    return args


def select(catalogue: list[Workload], only: list[str] | None) -> tuple[list[Workload], bool]:
    """The selected workloads, and whether the memory workload is selected."""
    if not only:
        return catalogue, True
    chosen = [w for w in catalogue if w.name in only or w.group in only]
    return chosen, MEMORY in only


def _unmount_all(base: Path) -> None:
    """Lazily unmount any FUSE mount left below ``base`` (never delete through a mount)."""
    with open("/proc/mounts") as handle:
        points = [line.split()[1] for line in handle]
    for point in points:
        if point.startswith(str(base) + "/"):
            subprocess.run(["fusermount3", "-u", "-z", point], capture_output=True)


def start_servers(
    stack: ExitStack,
    base: Path,
    wanted: set[str],
    key: Path,
    problems: list[str],
    prepare: Callable[[Path], None],
) -> dict[str, Endpoint]:
    """Start the wanted servers; a server that fails to start is reported and left out."""
    public_key = key.with_suffix(".pub").read_text().strip()
    authorized = base / "authorized_keys"
    authorized.write_text(public_key + "\n")
    factories: dict[str, Callable[[Path], AbstractContextManager[Endpoint]]] = {
        HOODY: lambda d: servers.hoody_mount(
            base, d, public_key, DAV_USER, hash_password(DAV_PASSWORD), DAV_PASSWORD
        ),
        OPENSSH: lambda d: servers.openssh(base, d, authorized),
        RCLONE_SFTP: lambda d: servers.rclone_sftp(base, d, authorized),
        WSGIDAV: lambda d: servers.wsgidav(base, d, DAV_USER, DAV_PASSWORD),
        RCLONE_WEBDAV: lambda d: servers.rclone_webdav(base, d, DAV_USER, DAV_PASSWORD),
        CHEROOT: lambda d: servers.bare_cheroot(base, d, DAV_USER, DAV_PASSWORD),
        ASYNCSSH: lambda d: servers.bare_asyncssh(base, d, authorized),
        ASYNCSSH_PATCHED: lambda d: servers.bare_asyncssh(base, d, authorized, patched=True),
    }
    endpoints = {}
    for key_name in ORDER:
        if key_name not in wanted:
            continue
        data = base / f"data-{key_name}"
        data.mkdir()
        prepare(data)
        try:
            endpoints[key_name] = stack.enter_context(factories[key_name](data))
        except (servers.ServerError, OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{servers.LABELS[key_name]} could not be started: {exc}")
            say(f"!! {problems[-1]}")
            if key_name == HOODY:
                raise
            continue
        say(f"   started {servers.LABELS[key_name]} (pid {endpoints[key_name].pid})")
    return endpoints


class Peaks:
    """Peak RSS of the single-process servers, for the whole run and per window.

    A peak is the larger of VmHWM and the RSS sampled every 50 ms (VmHWM can miss a peak
    after a reset). A new window resets VmHWM through /proc/PID/clear_refs.
    """

    def __init__(self, endpoints: dict[str, Endpoint], problems: list[str]) -> None:
        self.endpoints = {k: e for k, e in endpoints.items() if k in SINGLE_PROCESS}
        self.problems = problems
        self.sampler = servers.PeakSampler({k: e.pid for k, e in self.endpoints.items()})
        self.before: dict[str, float] = {}  # VmHWM before the last reset

    def new_window(self) -> None:
        """Remember each server's peak so far, then start measuring afresh."""
        for key, endpoint in self.endpoints.items():
            self.before[key] = max(self.before.get(key, 0.0), workloads.peak_rss_mb(endpoint))
            if not servers.reset_peak(endpoint.pid):
                message = f"could not reset VmHWM of {endpoint.label}: peaks include earlier work"
                if message not in self.problems:
                    self.problems.append(message)
            self.sampler.reset_window(key)

    def window(self, key: str) -> float:
        """The peak since the last ``new_window``, in MB."""
        sampled = workloads.kib_to_mb(self.sampler.window_kb(key))
        return max(workloads.peak_rss_mb(self.endpoints[key]), sampled)

    def whole_run(self, key: str) -> float:
        """The peak since the server started, in MB."""
        sampled = workloads.kib_to_mb(self.sampler.total_kb(key))
        return max(self.before.get(key, 0.0), self.window(key), sampled)


def run_workload(
    workload: Workload,
    bench: Bench,
    endpoints: dict[str, Endpoint],
    results: Results,
    runs: int,
) -> None:
    """``runs`` rounds, each running every server once, always in the same order."""
    for index in range(runs):
        say(f"== {workload.name}: run {index + 1}/{runs}")
        for key in workload.servers:
            endpoint = endpoints.get(key)
            if endpoint is None:
                continue
            recorder = Recorder(results, key, say)
            try:
                workload.run(bench, endpoint, recorder, index)
            except Exception as exc:  # a broken run must not stop the benchmark
                message = f"run aborted: {type(exc).__name__}: {exc}"
                say(f"!! {workload.name} on {endpoint.label}: {message}")
                say(traceback.format_exc(limit=3))
                for metric in workload.metrics:
                    recorder.cell(metric.id).error(message)
            if endpoint.process.poll() is not None:
                say(f"!! {endpoint.label} exited:\n{endpoint.log_tail()}")


def measure_memory(bench: Bench, endpoints: dict[str, Endpoint], results: Results) -> None:
    """RSS idle, with idle SSH connections, with idle HTTP keep-alive connections."""
    say("== memory: idle connections")
    for key in MEMORY_SERVERS:
        endpoint = endpoints.get(key)
        if endpoint is None:
            continue
        recorder = Recorder(results, key, say)
        workloads.idle_rss(endpoint, recorder)
        jobs = []
        if key in MEMORY_SSH:
            jobs.append((True, False))
        if key in MEMORY_HTTP:
            jobs.append((False, True))
        if key == HOODY:
            jobs.append((True, True))
        for ssh, http_ in jobs:
            try:
                workloads.idle_connections(bench, endpoint, recorder, ssh, http_)
            except Exception as exc:  # report, go on with the next measurement
                metric = "idle-" + ("both" if ssh and http_ else "ssh" if ssh else "http")
                recorder.cell(metric).error(f"{type(exc).__name__}: {exc}")
                say(f"!! {metric} on {endpoint.label}: {exc}")
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write and print the report."""
    args = parse_args(argv)
    sizes = workloads.QUICK if args.quick else workloads.FULL
    catalogue = workloads.catalogue(sizes)
    chosen, memory = select(catalogue, args.only)
    wanted = {key for w in chosen for key in (*w.servers, *w.partners)}
    if memory:
        wanted |= set(MEMORY_SSH) | set(MEMORY_HTTP)
    if not (args.rclone_sftp if args.rclone_sftp is not None else not args.quick):
        wanted.discard(RCLONE_SFTP)

    def terminate(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="hoody-bench-", dir=args.tmpdir)).resolve()
    facts = report.machine_facts(base)
    say(f"hoody-mount benchmark ({'quick' if args.quick else 'full'}) in {base}")
    problems: list[str] = []
    results: Results = {}
    durations: dict[str, float] = {}
    try:
        key = base / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
        )
        bench = Bench(base, sizes, key)
        if not bench.can_drop_caches:
            problems.append("page cache not dropped between write and read (needs root)")
        names = {w.name for w in chosen}
        say("   preparing data")
        if names & {"sshfs-file", "sftp", "dav-file"}:
            bench.make_big_file()
        if "dav-file-mid" in names:
            bench.make_big_file(bench.mid, sizes.mid_file_mib)
        if names & {"sshfs-tree", "dav-tree", "dav-tree-unpaced"}:
            bench.make_tree()
        if names & {"many-sftp", "many-dav", "many-dav-shared"}:
            bench.make_small_files()
        with ExitStack() as stack:
            propfind = "dav-propfind" in names
            big = any(w.group == workloads.BIG_FOLDER_GROUP for w in chosen)
            endpoints = start_servers(
                stack, base, wanted, key, problems, lambda d: bench.prepare_server(d, propfind, big)
            )
            bench.endpoints = endpoints
            peaks = Peaks(endpoints, problems)
            stack.enter_context(peaks.sampler)
            # Idle memory first and then the many-clients workloads, on fresh servers: what
            # the big transfers leave behind in a process must not count against them.
            if memory:
                began = time.monotonic()
                measure_memory(bench, endpoints, results)
                durations[MEMORY] = time.monotonic() - began
            peak_many: dict[str, float] = {}
            for workload in sorted(chosen, key=lambda w: w.group != "many"):
                began = time.monotonic()
                peaks.new_window()
                run_workload(workload, bench, endpoints, results, args.runs)
                for key_name in peaks.endpoints:
                    if key_name in workload.servers:
                        value = peaks.window(key_name)
                        Recorder(results, key_name, say).value(f"peak-{workload.name}", value)
                        if workload.group == "many":
                            peak_many[key_name] = max(peak_many.get(key_name, 0.0), value)
                durations[workload.name] = time.monotonic() - began
            for key_name, value in peak_many.items():
                Recorder(results, key_name, say).value("peak-many", value)
            for key_name in peaks.endpoints:
                Recorder(results, key_name, say).value("peak-run", peaks.whole_run(key_name))
            for endpoint in endpoints.values():
                if endpoint.process.poll() is not None:
                    problems.append(
                        f"{endpoint.label} exited during the run (status "
                        f"{endpoint.process.returncode}): {endpoint.log_tail(5)}"
                    )
            say("   stopping servers")
    finally:
        _unmount_all(base)
        if args.keep:
            say(f"   kept {base}")
        else:
            try:
                shutil.rmtree(base, ignore_errors=True)
            except RecursionError:  # a deep tree a workload could not remove: rm can
                subprocess.run(["rm", "-rf", "--one-file-system", "--", str(base)], check=False)

    elapsed = time.monotonic() - started
    settings = {
        "mode": "quick" if args.quick else "full",
        "runs per server": str(args.runs),
        "workloads": ", ".join(w.name for w in chosen) + (", memory" if memory else ""),
        "big file": f"{sizes.file_text} (pseudo-random)",
        "tree": f"{sizes.tree_files} files, {bench.tree_bytes / 1e6:.1f} MB from the Python stdlib",
        "many clients": f"{sizes.clients} x {sizes.files_per_client} files of "
        f"{sizes.small_file_kib} KiB, put then get",
        "idle connections": str(sizes.idle_connections),
        "big folder": f"{sizes.big_folder_files} empty files",
        "deep tree": f"a chain of {sizes.deep_levels} folders named d, small files at 3 levels",
        "duration": f"{elapsed:.0f} s ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in durations.items())
        + ")",
    }
    metrics = [metric for w in chosen for metric in w.metrics]
    text = report.render(facts, settings, metrics, results, ORDER, problems, sizes.idle_connections)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("-quick" if args.quick else "") + ("-partial" if args.only else "")
    path = args.out / f"{date.today().isoformat()}-{socket.gethostname()}{suffix}.md"
    path.write_text(text)
    print(text)
    say(f"report written to {path} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
