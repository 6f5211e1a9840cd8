"""Group commit of folder fsyncs: every upload is answered only after an fsync of its
folder that started after its rename, and uploads ending together share fsyncs."""

from __future__ import annotations

import base64
import errno
import http.client
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import PASSWORD, Server, require, server_log, wait_until

from hoody_mount.core.folder_syncs import FolderSyncs

_steps = threading.Lock()


class Log:
    """Numbered events of several threads, in the order they happened."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def note(self, kind: str, who: int) -> int:
        with _steps:
            self.events.append((kind, who))
            return len(self.events) - 1


def _run(callers: int, syncs: FolderSyncs, folder: int, log: Log) -> list[BaseException]:
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        log.note("rename", n)
        try:
            syncs.sync(folder)
        except OSError as exc:
            errors.append(exc)
        log.note("answer", n)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def _check_order(log: Log, callers: int) -> None:
    """Each caller's answer comes after an fsync that began after its rename."""
    events = log.events
    syncs = [
        (start, next(i for i in range(start, len(events)) if events[i] == ("end", who)))
        for start, (kind, who) in enumerate(events)
        if kind == "start"
    ]
    for n in range(callers):
        renamed = events.index(("rename", n))
        answered = events.index(("answer", n))
        assert any(renamed < start and end < answered for start, end in syncs), (n, events)


def test_callers_arriving_during_a_sync_share_the_next_one(tmp_path: Path) -> None:
    log = Log()
    callers = 8
    count = iter(range(1000))
    syncs: FolderSyncs

    def fsync(fd: int) -> None:
        number = next(count)
        log.note("start", number)
        if number == 0:  # the first sync waits until every other caller has arrived
            assert wait_until(lambda: syncs.callers(fd) == callers, 30, 0.005)
        log.note("end", number)

    syncs = FolderSyncs(fsync)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _run(callers, syncs, folder, log) == []
    finally:
        os.close(folder)
    _check_order(log, callers)
    assert [kind for kind, _ in log.events].count("start") == 2  # the first, then one for all
    assert syncs.size() == 0  # no group outlives its callers


def test_a_failed_sync_fails_its_callers_and_the_next_one_is_fresh(tmp_path: Path) -> None:
    log = Log()
    failing = [True]

    def fsync(fd: int) -> None:
        log.note("start", 0)
        if failing.pop() if failing else False:
            raise OSError(errno.EIO, "disk error")
        log.note("end", 0)

    syncs = FolderSyncs(fsync)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as caught:
            syncs.sync(folder)
        assert caught.value.errno == errno.EIO
        syncs.sync(folder)  # a later sync is a new one, which succeeds
    finally:
        os.close(folder)
    assert syncs.size() == 0


def test_folders_are_told_apart(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        seen.append((st.st_dev, st.st_ino))

    syncs = FolderSyncs(fsync)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fds = [os.open(tmp_path / name, os.O_RDONLY | os.O_DIRECTORY) for name in "ab"]
    try:
        for fd in fds:
            syncs.sync(fd)
    finally:
        for fd in fds:
            os.close(fd)
    assert len(set(seen)) == 2


# --- the real server, seen through strace -----------------------------------------------

_LINE = re.compile(r"^(\d+) +(\d+\.\d+) (.*)$")
_CALL = re.compile(r"^(\w+)\((\d+)<([^>]*)>")
_DURATION = re.compile(r"<(\d+\.\d+)>$")


def _events(trace: str) -> list[tuple[float, float, int, str, str]]:
    """(start, end, thread, call, fd's path) of the traced calls, in start order; an
    unfinished call is joined with its resumption."""
    open_calls: dict[int, tuple[float, str, str]] = {}
    events = []
    for line in trace.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        tid, when, rest = int(match.group(1)), float(match.group(2)), match.group(3)
        if rest.startswith("<..."):
            if tid in open_calls:
                start, call, path = open_calls.pop(tid)
                events.append((start, when, tid, call, path))
            continue
        call = _CALL.match(rest)
        if not call:
            continue
        if rest.endswith("<unfinished ...>"):
            open_calls[tid] = (when, call.group(1), call.group(3))
            continue
        duration = _DURATION.search(rest)
        end = round(when + (float(duration.group(1)) if duration else 0.0), 6)
        events.append((when, end, tid, call.group(1), call.group(3)))
    return sorted(events)


def test_every_put_is_answered_after_a_folder_fsync_begun_after_its_rename(
    server: Server,
) -> None:
    """strace the server under concurrent PUTs into one folder: for every rename into
    the folder, the same thread's next answer on its socket comes after an fsync of the
    folder that started after the rename ended."""
    require("strace")
    folder = server.root / "together"
    folder.mkdir()
    trace = server.root.parent / "trace.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-ttt", "-T", "-y", "-o", str(trace), "-p", str(server.process.pid),
         "-e", "trace=renameat2,renameat,rename,fsync,sendto,sendmsg,write"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert tracer.stderr is not None
        attached = threading.Event()
        threading.Thread(
            target=lambda: attached.set() if tracer.stderr and tracer.stderr.readline() else None,
            daemon=True,
        ).start()
        assert wait_until(attached.is_set, 30), "strace did not attach"
        clients, files = 6, 8
        failures: list[str] = []
        _put_together(server, clients, files, failures)
        assert failures == [], failures
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    events = _events(trace.read_text())
    where = str(folder)
    syncs = [(s, e) for s, e, _, call, path in events if call == "fsync" and path == where]
    renames = [
        (e, tid) for _, e, tid, call, path in events if call.startswith("rename") and path == where
    ]
    assert len(renames) == clients * files, server_log(server)
    for renamed, tid in renames:
        answer = next(
            start
            for start, _, who, call, path in events
            if who == tid and call in ("sendto", "sendmsg", "write") and start > renamed
            and path.startswith(("socket:", "TCP:"))
        )  # fmt: skip
        assert any(renamed <= began and ended <= answer for began, ended in syncs), (
            f"the answer at {answer} to a rename at {renamed} came after no folder fsync "
            f"begun after it: {syncs}"
        )
    assert len(syncs) <= len(renames)


def _put_together(server: Server, clients: int, files: int, failures: list[str]) -> None:
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    start = threading.Barrier(clients)

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        try:
            start.wait(30)
            for f in range(files):
                connection.request(
                    "PUT", f"/dav/together/c{n}-f{f}", body=os.urandom(4096),
                    headers={"Authorization": f"Basic {token}"},
                )  # fmt: skip
                reply = connection.getresponse()
                reply.read()
                if reply.status not in (201, 204):
                    failures.append(f"PUT c{n}-f{f}: {reply.status}")
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
            failures.append(f"client {n}: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
