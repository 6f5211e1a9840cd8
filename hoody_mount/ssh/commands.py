"""Commands for users without a shell: a few built-ins served through the VFS, nothing else.

rclone's sftp backend runs ``echo`` (to learn the shell's kind) and ``md5sum`` /
``sha1sum`` to verify transfers, and ``df`` for ``rclone about``; people run ``du -sh
DIR/*`` and ``df -h`` (``disk``), and ``sqlite-snapshot PATH`` (``databases``). These are answered
here, inside the user's jail, in the exact output format of GNU coreutils. No external
program ever runs for such a user; anything else is refused on stderr with status 1.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import digests
from ..core.session import Session
from ..fair_share import SLICE, Cancelled
from . import databases, disk, words

log = logging.getLogger("hoody_mount.ssh")

HASHES: dict[str, Callable[[], Any]] = {
    "md5sum": hashlib.md5,
    "sha1sum": hashlib.sha1,
    "sha256sum": hashlib.sha256,
}
BLOCK = 1 << 20

Runner = Callable[..., Any]


@dataclass
class Jobs:
    """Where a built-in's blocking calls run: ``run`` for short ones, ``run_long`` for
    long ones (on threads of their own, shared fairly between users: see
    ``fair_share``); ``gone`` says whether the client has left."""

    run: Runner
    run_long: Runner
    gone: Cancelled
    du_seconds: float = 60.0  # a du's budget, in all


class Outcome:
    """What a built-in wrote and its exit status."""

    def __init__(self, stdout: Any = None) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.status = 0
        self._stdout = stdout  # (where ``write`` sends at once; else kept in ``out``)

    async def write(self, data: bytes) -> None:
        """Output sent now, as fast as the client takes it (a large one: a copy)."""
        if self._stdout is None:
            self.out.append(data)
            return
        self._stdout.write(data)
        await self._stdout.drain()

    def fail(self, text: str) -> None:
        self.err.append(text.encode("utf-8", "surrogateescape") + b"\n")
        self.status = 1


async def _hash_file(session: Session, path: str, algorithm: Callable[[], Any], jobs: Jobs) -> str:
    """The digest of a file, a slice at a time in the user's turn on the long jobs'
    threads (see ``fair_share``); ECANCELED once the client has gone."""
    file = await jobs.run(session.open, path, os.O_RDONLY)
    try:
        hasher = algorithm()
        offset, done = 0, False
        while not done:
            if jobs.gone():
                raise OSError(errno.ECANCELED, "the client went away")
            offset, done = await jobs.run_long(digests.feed_slice, file, hasher, offset, SLICE)
        return str(hasher.hexdigest())
    finally:
        await jobs.run(file.close)


def _checksum_line(digest: str, path: str) -> bytes:
    """One output line as GNU coreutils writes it (escaped when the name needs it)."""
    if "\\" in path or "\n" in path:
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{digest}  {escaped}\n".encode("utf-8", "surrogateescape")
    return f"{digest}  {path}\n".encode("utf-8", "surrogateescape")


async def _checksum(
    name: str, args: list[str], session: Session, jobs: Jobs, stdin: Any, outcome: Outcome
) -> None:
    algorithm = HASHES[name]
    files = [a for a in args if a not in ("-b", "--binary", "-t", "--text", "--")]
    if any(a.startswith("-") and a != "-" for a in files):
        outcome.fail(f"{name}: only file names are supported here")
        return
    for path in files or ["-"]:
        if path == "-":
            hasher = algorithm()
            while data := await stdin.read(BLOCK):
                hasher.update(data)
            outcome.out.append(f"{hasher.hexdigest()}  -\n".encode())
            continue
        try:
            digest = await _hash_file(session, path, algorithm, jobs)
        except IsADirectoryError:
            outcome.fail(f"{name}: {path}: Is a directory")
            continue
        except OSError as exc:
            outcome.fail(f"{name}: {path}: {exc.strerror}")
            continue
        outcome.out.append(_checksum_line(digest, path))


async def run_builtin(
    command: str, session: Session, jobs: Jobs, stdin: Any, stdout: Any = None
) -> Outcome:
    """Run one built-in command line for a user without a shell (output to ``stdout``
    as it is made, if given)."""
    outcome = Outcome(stdout)
    try:
        line = words.split(command)
    except ValueError as exc:
        log.warning("refused command %r for %s", command, session.user.name)
        if isinstance(exc, words.Refused):
            outcome.fail(
                f"hoody-mount: a line with ; | & < > or substitutions is not available for "
                f"{session.user.name}: one command at a time (no shell runs here; this one "
                f"has {exc})"
            )
        else:
            outcome.fail(f"hoody-mount: {exc} in the command line (no shell runs here)")
        return outcome
    argv = [word.text for word in line]
    name = argv[0] if argv else ""
    if name == "echo":
        outcome.out.append((" ".join(argv[1:]) + "\n").encode("utf-8", "surrogateescape"))
    elif name in HASHES:
        await _checksum(name, argv[1:], session, jobs, stdin, outcome)
    elif name == "df":
        await jobs.run(disk.df, session, argv[1:], outcome)
    elif name == "du":
        await disk.du(session, line[1:], jobs, jobs.du_seconds, outcome)
    elif name == "sqlite-snapshot":
        await databases.snapshot(session, argv[1:], jobs, outcome)
    else:
        log.warning("refused command %r for %s", command, session.user.name)
        outcome.fail(
            f"hoody-mount: {name or 'this command'!s} is not available for {session.user.name}: "
            "only SFTP, scp, echo, md5sum, sha1sum, sha256sum, df, du and sqlite-snapshot "
            "are served"
        )
    return outcome


async def answer(process: Any, command: str, session: Session, jobs: Jobs) -> int:
    """Run a built-in on an SSH channel and report its output and exit status (which
    is returned too)."""
    outcome = await run_builtin(command, session, jobs, process.stdin, process.stdout)
    for chunk in outcome.out:
        process.stdout.write(chunk)
    for chunk in outcome.err:
        process.stderr.write(chunk)
    await asyncio.sleep(0)
    process.exit(outcome.status)
    return outcome.status
