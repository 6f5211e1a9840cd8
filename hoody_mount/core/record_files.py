"""JSON files of records in the state folder (tokens, shares): read again when they change.

A file is a JSON list of objects, written whole and private (``secret_file``). It must be
trusted (``core.trusted_files``); a re-read file that is not, or that cannot be parsed,
leaves the records read before in force and is logged once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import trusted_files
from .secret_file import write_secret

log = logging.getLogger(__name__)
T = TypeVar("T")
Stamp = tuple[int, int, int, int]


class RecordFileError(Exception):
    """The file is not trusted or cannot be parsed; the message is one line."""


def _stamp(st: os.stat_result) -> Stamp:
    """What changes with the file's content, owner or mode (a chmod changes ctime)."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class RecordFile(Generic[T]):
    """The records of one file, by id; ``make`` turns a JSON object into a record
    (TypeError, KeyError or ValueError when it cannot), ``dump`` back."""

    def __init__(
        self,
        path: Path,
        what: str,
        make: Callable[[dict[str, Any]], T],
        dump: Callable[[T], dict[str, Any]],
    ) -> None:
        self.path, self.what = path, what
        self._make, self._dump = make, dump
        self._records: dict[str, T] = {}
        self._stamp: Stamp | None = None
        self._refused: Stamp | None = None  # the last version refused (logged once)
        self.lock = threading.Lock()  # held around ``read`` and ``save`` by the stores

    def read(self) -> dict[str, T]:
        """The records, read again when the file changed; ``RecordFileError`` if unusable."""
        try:
            stamp = _stamp(self.path.stat())
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return self._records
        if stamp == self._stamp:
            return self._records
        try:
            data, st = trusted_files.read(self.path)
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return self._records
        except trusted_files.UntrustedFile as exc:
            self._refused = _stamp(exc.status) if exc.status else stamp
            raise RecordFileError(str(exc)) from None
        except OSError as exc:
            self._refused = stamp
            raise RecordFileError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            items = json.loads(data or b"[]")
            if not isinstance(items, list):
                raise ValueError(f"expected a list of {self.what}s")
            records = {item["id"]: self._make(item) for item in items}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._refused = _stamp(st)
            raise RecordFileError(f"{self.path}: not a valid {self.what} file ({exc})") from None
        self._records, self._stamp = records, _stamp(st)
        return self._records

    def current(self) -> dict[str, T]:
        """For logins: the records in force; a refused file keeps the previous ones."""
        try:
            if self._refused is not None and _stamp(self.path.stat()) == self._refused:
                return self._records  # refused and logged already
        except OSError:
            pass
        try:
            return self.read()
        except RecordFileError as exc:
            log.warning("%s; keeping the %d %s(s) read before", exc, len(self._records), self.what)
            return self._records

    def save(self, records: dict[str, T]) -> None:
        """Replace the file with ``records``."""
        data = json.dumps([self._dump(r) for r in records.values()], indent=1).encode()
        write_secret(self.path, data + b"\n")
