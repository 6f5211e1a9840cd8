"""The built-ins about space, in GNU coreutils' output format: ``df`` of each filesystem
the user can see, and ``du -s``, whose ``DIR/*`` it expands itself (no shell runs)."""

from __future__ import annotations

import fnmatch
import os
import re
import time
from typing import TYPE_CHECKING

from ..core import paths
from ..core.disk_usage import Tally
from ..core.filesystems import Usage
from ..core.reserved import Identity
from ..core.session import Session
from .words import Word

if TYPE_CHECKING:
    from .commands import Jobs, Outcome

_UNITS = ("", "K", "M", "G", "T", "P", "E")
SLICE_SECONDS = 0.5  # a du runs this long on a long jobs' thread, then queues again
_DU_FLAGS = {
    "-s": "s", "--summarize": "s", "-h": "h", "--human-readable": "h", "-b": "b",
    "--bytes": "b", "-k": "k", "--apparent-size": "A", "-c": "c", "--total": "c",
}  # fmt: skip


def human(size: int) -> str:
    """A size as ``df -h`` and ``du -h`` show it: powers of 1024, rounded up, one
    decimal below 10 (``1.1K``, ``10K``, ``1.0M`` for 1,048,575 bytes)."""
    power = 0
    while power < len(_UNITS) - 1 and size >= 1024 ** (power + 1):
        power += 1
    if power == 0:
        return str(size)
    base = 1024**power
    tenths = -(-size * 10 // base)
    if tenths < 100:
        return f"{tenths // 10}.{tenths % 10}{_UNITS[power]}"
    whole = -(-size // base)
    if whole >= 1024 and power < len(_UNITS) - 1:
        return f"1.0{_UNITS[power + 1]}"
    return f"{whole}{_UNITS[power]}"


def _mounted_on(path: str, found: list[Usage]) -> str:
    """The deepest of the user's filesystems holding the virtual ``path``."""
    return max((u.path for u in found if paths.is_within(path, u.path)), key=len, default="/")


_MIN_WIDTHS = (14, 5, 5, 5, 4, 0)  # of df's columns, as coreutils' df.c sets them


def df(session: Session, args: list[str], outcome: Outcome) -> None:
    """``df [-h|-k|-P] [PATH…]``: without a path, every filesystem the user can see."""
    options = [
        flag
        for arg in args
        if arg.startswith("-")
        for flag in ([arg] if arg.startswith("--") else [f"-{c}" for c in arg[1:]] or [arg])
    ]  # (-hP is -h -P, as the usual df takes it)
    unknown = [a for a in options if a not in ("-k", "-h", "-P", "--")]
    if unknown:
        outcome.fail(f"df: {unknown[0]}: not supported here (-h, -k and -P are)")
        return
    sizing = [a for a in options if a in ("-h", "-k")]
    is_human = bool(sizing) and sizing[-1] == "-h"  # (the last of -h and -k counts)
    found = session.filesystems()
    rows: list[tuple[Usage, str]] = []
    given = [a for a in args if not a.startswith("-")]
    for path in given:
        try:
            virtual = session.path(path)
            c = session.capacity(path)
        except OSError as exc:
            outcome.fail(f"df: {path}: {exc.strerror}")
            continue
        total, free, avail = c.blocks * c.frsize, c.bfree * c.frsize, c.bavail * c.frsize
        usage = Usage(_mounted_on(virtual, found), total, total - free, avail, 0, 0, 0)
        rows.append((usage, usage.path))
    if not given:
        rows = [(usage, usage.path) for usage in found]
    outcome.out.append(_table(rows, is_human, "-P" in options))


def _table(rows: list[tuple[Usage, str]], is_human: bool, posix: bool) -> bytes:
    """df's table as GNU df lays it out: each column as wide as its widest cell (and
    its least width), one space between, the first and last left-aligned."""
    if is_human:
        header = ["Filesystem", "Size", "Used", "Avail", "Use%", "Mounted on"]
    elif posix:
        header = ["Filesystem", "1024-blocks", "Used", "Available", "Capacity", "Mounted on"]
    else:
        header = ["Filesystem", "1K-blocks", "Used", "Available", "Use%", "Mounted on"]
    table = [header]
    for usage, path in rows:
        where = _CONTROL.sub(lambda m: f"\\{ord(m.group()):03o}", path)  # (as in /proc/mounts)
        sizes = (usage.total_bytes, usage.used_bytes, usage.free_bytes)
        used, avail = sizes[1] // 1024, sizes[2] // 1024
        percent = f"{-(-used * 100 // (used + avail))}%" if used + avail else "-"
        figures = [human(n) if is_human else str(n // 1024) for n in sizes]
        table.append(["hoody-mount", *figures, percent, where])
    widths = [max(least, *(len(row[i]) for row in table)) for i, least in enumerate(_MIN_WIDTHS)]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)]
        lines.append(" ".join([*cells, row[-1]]) + "\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # in a mount's path: one row must stay one line

MAX_ARGUMENTS = 256  # paths in one du command
MAX_NAMES = 10_000  # paths its patterns may expand to (each one is a line)


def _expand(session: Session, word: Word, most: int) -> list[str]:
    """A shell's expansion of ``word`` when its last name is a pattern (``DIR/*``,
    ``*.log``; only unquoted ``*?[`` make one): the matching names, sorted by their
    bytes, hidden ones only for a pattern that starts with a dot; the word itself when
    nothing matches. Past ``most`` matches it stops (``most + 1`` names say so)."""
    arg = word.text
    start = arg.rfind("/") + 1
    if not word.wild or min(word.wild) < start:
        return [arg]
    folder, pattern = arg[:start], word.pattern(start)
    listing = session.listdir(folder or ".")
    shown: list[str] = []
    try:
        while len(shown) <= most and (batch := listing.read(1024)):
            shown.extend(
                entry.name for entry in batch
                if fnmatch.fnmatchcase(entry.name, pattern)
                and (not entry.name.startswith(".") or pattern.startswith("."))
            )  # fmt: skip
    finally:
        listing.close()
    shown.sort(key=os.fsencode)
    return [f"{folder}{name}" for name in shown] or [arg]


def _figure(tally: Tally, apparent: bool, unit: str) -> str:
    size = tally.bytes if apparent else tally.disk
    if unit == "h":
        return human(size)
    return str(size) if unit == "b" else str(-(-size // 1024))


async def du(
    session: Session, words: list[Word], jobs: Jobs, seconds: float, outcome: Outcome
) -> None:
    """``du -s [-h|-b|-k] [-c] [--apparent-size] PATH…`` as GNU du prints it; each path
    walked on the long jobs' threads, half a second at a time, within ``seconds`` in all
    (past it the figure printed is partial and said so)."""
    apparent, unit, summary, total_line = False, "k", False, False
    names: list[Word] = []
    for word in words:
        arg = word.text
        flags = [arg] if arg.startswith("--") or not arg.startswith("-") else [
            f"-{c}" for c in arg[1:]
        ]  # fmt: skip
        if arg == "--" or not arg.startswith("-") or arg == "-":
            names.append(word)
            continue
        for flag in flags:
            kind = _DU_FLAGS.get(flag)
            if kind is None:
                outcome.fail(f"du: {flag}: not supported here (-s, -h, -b, -k, -c and "
                             "--apparent-size are)")  # fmt: skip
                return
            summary |= kind == "s"
            total_line |= kind == "c"
            apparent |= kind in ("b", "A")
            unit = {"h": "h", "b": "b", "k": "k"}.get(kind, unit)
    names = [n for n in names if n.text != "--"]
    if not summary:
        outcome.fail("du: only summaries are served here: add -s (du -sh DIR/*)")
        return
    if len(names) > MAX_ARGUMENTS:
        outcome.fail(f"du: at most {MAX_ARGUMENTS} paths at once")
        return
    deadline = time.monotonic() + seconds
    seen: set[Identity] = set()
    grand = Tally()
    expanded: list[str] = []
    for given in names or [Word(".")]:
        if time.monotonic() >= deadline or jobs.gone():
            break  # (the expansions count against the time too)
        try:
            expanded.extend(await jobs.run(_expand, session, given, MAX_NAMES - len(expanded)))
        except OSError:
            expanded.append(given.text)
        if len(expanded) > MAX_NAMES:
            outcome.fail(f"du: the patterns name more than {MAX_NAMES} paths: name fewer")
            return
    for name in expanded:
        try:
            walk = await jobs.run(session.du_walk, name, name.endswith("/"), seen)
        except OSError as exc:
            outcome.fail(f"du: cannot access '{name}': {exc.strerror}")
            continue
        try:
            finished = False
            while not finished and time.monotonic() < deadline and not jobs.gone():
                until = min(deadline, time.monotonic() + SLICE_SECONDS)
                finished = await jobs.run_long(walk.run, until, jobs.gone)
        finally:
            await jobs.run(walk.close)
        for where, why in walk.errors:
            outcome.fail(f"du: cannot read directory '{_shown(name, walk.path, where)}': {why}")
        outcome.out.append(f"{_figure(walk.tally, apparent, unit)}\t{name}\n".encode(
            "utf-8", "surrogateescape"))  # fmt: skip
        grand.bytes, grand.disk = grand.bytes + walk.tally.bytes, grand.disk + walk.tally.disk
        if not finished:
            outcome.fail(f"du: '{name}': stopped after {seconds:g} s: the figure is partial")
            break
    if total_line:
        outcome.out.append(f"{_figure(grand, apparent, unit)}\ttotal\n".encode())


def _shown(name: str, walked: str, where: str) -> str:
    """A path below the walked one as the user wrote its start (``name``)."""
    below = where[len(walked) :] if paths.is_within(where, walked) else ""
    return name.rstrip("/") + below if below else name
