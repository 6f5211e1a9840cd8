"""Capacity alerts: when a watched filesystem crosses ``[alerts] used_percent``, one
JSON event to a webhook (POST) and/or a command (on its stdin, no shell), once per
crossing and again when it drops back below.

Two daemon threads, so nothing else ever waits for an alert: one looks at the
filesystems every ``interval`` seconds (the served root's and each mount below it, as
the server sees them); the other delivers events in order, retrying a failed delivery
with a growing pause and logging each failure.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
import urllib.request
from collections.abc import Callable

from .config import Alerts as Settings
from .core.filesystems import Usage

log = logging.getLogger("hoody_mount.alerts")

ATTEMPTS = 8  # deliveries of one event before it is given up (logged)
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 60.0  # seconds between attempts: doubled each time
SEND_TIMEOUT = 10.0  # seconds a webhook or a command may take

Event = dict[str, object]


class Watch:
    """Which watched filesystems are above the threshold, and the events of a look."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._above: dict[str, bool] = {}

    def events(self, found: list[Usage]) -> list[Event]:
        """The crossings since the last look (a filesystem first seen above counts as
        one; first seen below, as none; one unmounted while above is ``gone``)."""
        out: list[Event] = []
        for usage in found:
            above = usage.used_percent >= self.threshold
            if self._above.get(usage.path, False) != above:
                out.append(
                    {
                        "event": "capacity",
                        "state": "above" if above else "below",
                        "path": usage.path,
                        "used_percent": usage.used_percent,
                        "free_bytes": usage.free_bytes,
                        "total_bytes": usage.total_bytes,
                        "threshold": self.threshold,
                    }
                )
            self._above[usage.path] = above
        present = {usage.path for usage in found}
        for path in [path for path in self._above if path not in present]:
            if self._above.pop(path):  # (unmounted while above: no longer so, say it)
                out.append(
                    {"event": "capacity", "state": "gone", "path": path,
                     "threshold": self.threshold}
                )  # fmt: skip
        return out


class Alerter:
    """The two threads of the alerts: ``start`` them, ``stop`` them at the end."""

    def __init__(self, settings: Settings, watched: Callable[[], list[Usage]]) -> None:
        self.settings = settings
        self._watched = watched
        self._watch = Watch(settings.used_percent)
        self._stop = threading.Event()
        self._outbox: queue.Queue[tuple[str, Event] | None] = queue.Queue()

    def start(self) -> None:
        for target, name in ((self._look, "hoody-alerts"), (self._send, "hoody-alert-send")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._outbox.put(None)

    def _look(self) -> None:
        while True:
            try:
                events = self._watch.events(self._watched())
            except OSError as exc:
                log.warning("alerts: cannot read the filesystems: %s", exc)
                events = []
            for event in events:
                log.info("capacity %s %.1f%% at %s", event["state"], event["used_percent"],
                         event["path"])  # fmt: skip
                if self.settings.webhook:
                    self._outbox.put((self.settings.webhook, event))
                if self.settings.command:
                    self._outbox.put(("command", event))
            if self._stop.wait(self.settings.interval):
                return

    def _send(self) -> None:
        while (item := self._outbox.get()) is not None:
            where, event = item
            pause = FIRST_PAUSE
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    self._deliver(where, json.dumps(event).encode())
                    break
                except (OSError, subprocess.SubprocessError) as exc:
                    if attempt == ATTEMPTS:
                        log.error("alert to %s given up after %d attempts: %s", where,
                                  attempt, exc)  # fmt: skip
                        break
                    log.warning("alert to %s failed (attempt %d of %d): %s; again in %g s",
                                where, attempt, ATTEMPTS, exc, pause)  # fmt: skip
                    if self._stop.wait(pause):
                        return
                    pause = min(pause * 2, LONGEST_PAUSE)

    def _deliver(self, where: str, body: bytes) -> None:
        """One attempt: a POST answered 2xx, or the command ending with status 0."""
        if where == "command":
            subprocess.run(
                list(self.settings.command), input=body, capture_output=True,
                timeout=SEND_TIMEOUT, check=True,
            )  # fmt: skip
            return
        request = urllib.request.Request(
            where, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as answer:
            answer.read()
