"""The built-in ``sqlite-snapshot PATH``: a consistent copy of a live SQLite database,
written to stdout (``ssh host sqlite-snapshot app.db > app.db``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.session import Session
from ..core.sqlite_snapshots import BLOCK, NotADatabase

if TYPE_CHECKING:
    from .commands import Jobs, Outcome

USAGE = "usage: sqlite-snapshot PATH (a consistent copy of the database goes to stdout)"


async def snapshot(session: Session, args: list[str], jobs: Jobs, outcome: Outcome) -> None:
    """Copy the database (on the long jobs' threads, in the user's turn), then send the
    copy as the client takes it; errors on stderr with status 1."""
    names = [a for a in args if a != "--"]
    if len(names) != 1 or (names[0].startswith("-") and "--" not in args):
        outcome.fail(f"sqlite-snapshot: {USAGE}")
        return
    path = names[0]
    try:
        copy = await jobs.run_long(session.sqlite_snapshot, path)
    except NotADatabase:
        outcome.fail(f"sqlite-snapshot: {path}: not an SQLite database")
        return
    except OSError as exc:
        outcome.fail(f"sqlite-snapshot: {path}: {exc.strerror}")
        return
    try:
        offset = 0
        while not jobs.gone() and (data := await jobs.run(copy.read, offset, BLOCK)):
            await outcome.write(data)
            offset += len(data)
    finally:
        await jobs.run(copy.close)
