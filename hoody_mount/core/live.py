"""The sessions open now, for ``hoody-mount connections`` and for ending some of them.

A front adds an entry when a client has logged in (an SSH connection, an HTTP request
being served) and removes it when that ends. Each entry says who, over what, from
where, since when, how many bytes went each way and what it is doing, and knows how to
end itself from any thread (``end``). Updates are plain attribute writes made by the
entry's own front; the list is read only when an operator asks for it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SHUTTING_DOWN = "the server is shutting down; try again in a moment"


@dataclass(eq=False)
class Entry:
    """One open session."""

    user: str
    protocol: str
    address: str
    end: Callable[[str], None]  # ends the session (any thread), telling the client why
    id: int = 0
    started: float = field(default_factory=time.time)
    received: int = 0  # bytes from the client
    sent: int = 0  # bytes to the client
    doing: str = ""  # the current or last operation
    meter: Callable[[], tuple[int, int]] | None = None  # (received, sent), when counted elsewhere
    busy: Callable[[], bool] | None = None  # whether a transfer is in flight (None: always)
    ended: str = ""  # why the server ended it, if it did

    def in_flight(self) -> bool:
        """Whether ending the session now would cut a transfer short."""
        return self.busy is None or self.busy()

    def row(self) -> dict[str, object]:
        """The entry as the control socket sends it."""
        received, sent = self.meter() if self.meter is not None else (self.received, self.sent)
        return {
            "id": self.id,
            "user": self.user,
            "protocol": self.protocol,
            "address": self.address,
            "started": round(self.started, 3),
            "received": received,
            "sent": sent,
            "doing": self.doing,
        }


class Live:
    """The open sessions of the process, by id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._entries: dict[int, Entry] = {}
        self.watchers: list[Callable[[Entry, bool], None]] = []  # told (entry, ended)

    def add(self, entry: Entry) -> Entry:
        """Register ``entry``, giving it the next id."""
        with self._lock:
            entry.id = next(self._ids)
            self._entries[entry.id] = entry
        for watcher in self.watchers:
            watcher(entry, False)
        return entry

    def remove(self, entry: Entry) -> None:
        """Forget ``entry`` (it ended)."""
        with self._lock:
            gone = self._entries.pop(entry.id, None)
        if gone is not None:
            for watcher in self.watchers:
                watcher(entry, True)

    def entries(self) -> list[Entry]:
        """The open sessions, oldest first."""
        with self._lock:
            return list(self._entries.values())

    def rows(self) -> list[dict[str, object]]:
        """The open sessions as rows for the control socket."""
        return [entry.row() for entry in self.entries()]

    def end(self, entry_id: int, reason: str) -> Entry | None:
        """End the session ``entry_id``; which it was (None: there is none)."""
        with self._lock:
            entry = self._entries.get(entry_id)
        if entry is not None:
            entry.ended = reason
            entry.end(reason)
        return entry

    def any_in_flight(self) -> bool:
        """Whether a session has a transfer in flight."""
        return any(entry.in_flight() for entry in self.entries())

    def end_where(self, wanted: Callable[[Entry], bool], reason: str) -> int:
        """End every session ``wanted`` picks; how many."""
        chosen = [entry for entry in self.entries() if wanted(entry)]
        for entry in chosen:
            entry.ended = reason
            entry.end(reason)
        return len(chosen)
