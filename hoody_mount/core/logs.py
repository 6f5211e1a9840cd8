"""Logging written by a background thread, and a cheap way to log from a request.

Every change a user makes is logged (the audit lines of ``core.session``). Logging one
line to stderr and the log file the usual way cost a serial SFTP SETSTAT about 60 µs of
the server's 296 µs of CPU here: making the record, formatting it and two write system
calls, on a CPU that had been idle. ``DeferredHandler`` moves the formatting and the
writes to a background thread, which writes what has queued up every ``FLUSH_EVERY``
seconds, at once for a warning or an error, and whatever is left when logging shuts
down (at exit, after a SIGTERM too; lines logged after that are written on the spot).
``later`` also moves the making of the record there: the request only queues its
arguments (CPU per SETSTAT: 236 µs, as with no audit line at all). A crash that kills
the process outright loses at most the last ``FLUSH_EVERY`` seconds of lines.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import stat
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from pathlib import Path

FLUSH_EVERY = 0.25  # seconds
MAX_QUEUED = 100_000  # lines waiting; beyond, the thread that logs writes (stderr blocked)

# A line queued by ``later``: when, by which logger, and its message and arguments.
_Later = tuple[float, logging.Logger, str, tuple[object, ...]]

_installed: DeferredHandler | None = None


def later(logger: logging.Logger, msg: str, *args: object) -> None:
    """``logger.info(msg, *args)``, the record made on the background thread if one
    runs (else now) and handed straight to its targets. Arguments must not change
    afterwards (strings and numbers)."""
    handler = _installed
    if handler is None:
        logger.info(msg, *args)
    elif logger.isEnabledFor(logging.INFO):
        handler.put((time.time(), logger, msg, args))


class DeferredHandler(logging.Handler):
    """Queues records and hands them to ``targets`` on a background thread."""

    def __init__(self, targets: Sequence[logging.Handler], every: float = FLUSH_EVERY) -> None:
        super().__init__()
        global _installed
        self.targets = list(targets)
        self.queue: deque[logging.LogRecord | _Later] = deque()
        self._every = every
        self._drain = threading.Lock()  # one drainer at a time keeps the lines in order
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hoody-log", daemon=True)
        self._thread.start()
        _installed = self

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` with its message fixed now (its arguments may change later)."""
        try:
            if isinstance(record.args, tuple) and record.args:
                record.args = _escaped(record.args)
                record.hoody_escaped = True
            record.msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format is reported, as handlers do
            self.handleError(record)
            return
        record.args = None
        self.put(record, urgent=record.levelno >= logging.WARNING)

    def put(self, item: logging.LogRecord | _Later, urgent: bool = False) -> None:
        """Queue a line for the thread (woken at once if ``urgent``); once closed, or with
        ``MAX_QUEUED`` lines waiting (the writer is behind), the caller writes."""
        self.queue.append(item)
        if self._closed or len(self.queue) >= MAX_QUEUED:
            self.flush()
        elif urgent:
            self._wake.set()

    def flush(self) -> None:
        """Write what is queued, in order, to every target whose level it reaches: a
        stream's lines in one write, each record formatted once per formatter."""
        with self._drain:
            batches: list[list[str]] = [[] for _ in self.targets]
            while self.queue:
                item = self.queue.popleft()
                try:
                    record = item if isinstance(item, logging.LogRecord) else _record(*item)
                except Exception:  # noqa: BLE001 - e.g. a bad format: that line is lost
                    traceback.print_exc(file=sys.__stderr__)
                    continue
                texts: dict[int, str] = {}  # id of a formatter -> the record's line
                for target, batch in zip(self.targets, batches, strict=True):
                    if record.levelno < target.level:
                        continue
                    if not _is_stream(target):
                        target.handle(record)
                    elif target.filter(record):
                        key = id(target.formatter)
                        if key not in texts:
                            texts[key] = _formatted(target, record)
                        batch.append(texts[key])
            for target, batch in zip(self.targets, batches, strict=True):
                if batch:
                    _write(target, batch)
                with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
                    target.flush()

    def close(self) -> None:
        """Write what is left and stop the thread (the targets stay open)."""
        global _installed
        if _installed is self:
            _installed = None
        self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()
        super().close()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._every)
            self._wake.clear()
            try:
                self.flush()  # (a target that fails to write reports it, as handlers do)
            except Exception:  # noqa: BLE001 - the writer must outlive a broken record
                traceback.print_exc(file=sys.__stderr__)


def _is_stream(target: logging.Handler) -> bool:
    """Whether the target writes to an open stream, which ``_write`` can batch."""
    return isinstance(target, logging.StreamHandler) and target.stream is not None


def _formatted(target: logging.Handler, record: logging.LogRecord) -> str:
    """The record's line for ``target`` (with logging's report of a bad record)."""
    try:
        return target.format(record)
    except Exception:  # noqa: BLE001 - reported as a handler reports it
        target.handleError(record)
        return ""


def _write(target: logging.Handler, lines: list[str]) -> None:
    """Write ``lines`` to the stream of ``target`` in one write, under its lock."""
    assert isinstance(target, logging.StreamHandler)
    text = "".join(f"{line}{target.terminator}" for line in lines if line)
    target.acquire()
    try:
        target.stream.write(text)
    except Exception:  # noqa: BLE001 - e.g. a full disk: reported as handlers do
        target.handleError(logging.makeLogRecord({"msg": "(a batch of log lines)"}))
    finally:
        target.release()


# Characters a log line must not carry as they are: control characters and the Unicode
# line and paragraph separators (a newline would start a forged line), the backslash that
# escapes, and the bytes of names that are not UTF-8 (``os.fsdecode`` turns each into a
# lone surrogate, which no file encoding takes).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, quotes: bool = False) -> str:
    """``text`` on one line, every unsafe character written as a backslash escape (and,
    with ``quotes``, every ``"``, so that a quoted value ends where it seems to)."""
    text = _UNSAFE.sub(_escape_one, text)
    return text.replace('"', "\\x22") if quotes else text


def _escaped(args: tuple[object, ...]) -> tuple[object, ...]:
    """A message's arguments made safe: numbers as they are, anything else as escaped
    text. Quoted values (``path="%s"``) then end where they seem to."""
    return tuple(
        arg if isinstance(arg, int | float) else escape(str(arg), quotes=True) for arg in args
    )


class OneLineFormatter(logging.Formatter):
    """Formats each message as exactly one line: names from clients are escaped (a
    newline in a file name cannot forge a line, a name that is not UTF-8 cannot break
    the write). A traceback, which only the server writes, keeps its lines."""

    _second: tuple[int, str] = (-1, "")  # the last second written, as text

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        if not getattr(record, "hoody_escaped", False):  # (its arguments were escaped)
            record.message = escape(record.message)
        return super().formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """logging's default time (``2026-12-04 14:28:19,739``), its second made into
        text once for all the lines of that second."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        known, text = self._second
        if known != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"


# A message, token by token: a quoted value whole (a client's quotes inside are escaped,
# so it ends where it seems to), a key=value field, or any other word.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]*)|[^\s"]+')
# Lines whose first values are named by their place: "login alice from 192.0.2.1 over
# ssh …", "logout …", 'failed login for "alice" from … over http', and the access line
# of a request, 'http GET "/dav/f.txt" 200 bytes=…'. Fields are read after the match
# only: what a client sent (a path, a name) never becomes a field of its own.
_PLACED = (
    (re.compile(r"(?:login|logout) (\S+) from (\S+) over (\S+)"), ("user", "address", "protocol")),
    (
        re.compile(r'failed login for "((?:[^"\\]|\\.)*)" from (\S+) over (\S+)'),
        ("user", "address", "protocol"),
    ),
    (re.compile(r'http (\S+) "((?:[^"\\]|\\.)*)" (\S+)'), ("method", "path", "status")),
)
_NUMBERS = frozenset({"bytes", "seconds", "status", "received", "sent"})  # keys of numbers


def _number(text: str) -> int | float | str:
    """``text`` as the number it writes (as it is when it writes none)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _fields(message: str) -> dict[str, object]:
    """The fields of an escaped message: those its place names, then its key=value
    pairs outside quoted values (the first of each key wins)."""
    fields: dict[str, object] = {}
    start = 0
    for pattern, names in _PLACED:
        placed = pattern.match(message)
        if placed is not None:
            fields.update(zip(names, placed.groups(), strict=True))
            start = placed.end()
            break
    for token in _TOKEN.finditer(message, start):
        key, value = token.group(1), token.group(2)
        if key is None:
            continue
        key = "protocol" if key == "proto" else key
        if key not in fields:
            fields[key] = value[1:-1] if value.startswith('"') else value
    for key in _NUMBERS & fields.keys():
        fields[key] = _number(str(fields[key]))
    return fields


class JsonFormatter(OneLineFormatter):
    """Formats each message as one JSON object on one line: ``time`` (ISO 8601, UTC),
    ``level``, ``logger``, ``event`` (the message, escaped as in text) and its fields
    (``user``, ``protocol``, ``address``, ``op``, ``path``…, see ``_fields``) as keys of
    their own, for log pipelines to filter on."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "hoody_escaped", False):
            message = record.getMessage()
        elif isinstance(record.args, tuple) and record.args:
            message = str(record.msg) % _escaped(record.args)  # (as ``later`` makes them)
        else:
            message = escape(record.getMessage())
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        data: dict[str, object] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": message,
        }
        for key, value in _fields(message).items():
            data.setdefault(key, value)
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


LOG_MODE = 0o640  # the log holds users, addresses and every path: no one else reads it


def private_log(path: Path) -> Path:
    """Create the log file with mode 0640 (or take away the bits an older one has beyond
    that) before a handler opens it for appending; a symbolic link there is refused
    (ELOOP): the server would append to, and chmod, whatever file it names."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, LOG_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & ~LOG_MODE:
            os.fchmod(fd, mode & LOG_MODE)
    finally:
        os.close(fd)
    return path


def _record(
    created: float, logger: logging.Logger, msg: str, args: tuple[object, ...]
) -> logging.LogRecord:
    """The record ``logger.info`` would have made at ``created``."""
    record = logger.makeRecord(logger.name, logging.INFO, "(later)", 0, msg, _escaped(args), None)
    record.hoody_escaped = True
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record
