"""A folder downloaded as one zip (``GET <folder>/?zip``), made as it is sent.

The stdlib's ``zipfile`` writes into a sink that has no ``seek`` or ``tell``, so each
file's sizes and CRC follow its data (a data descriptor) and nothing is written twice;
files bigger than 2 GiB get ZIP64 headers, and so does the archive once it passes
4 GiB. Files are read in 1 MiB blocks and sent as they are read, stored (not
compressed: no CPU under the GIL that SSH would feel). Memory stays the same whatever
the files' sizes; the central directory, which must end every zip, costs about 600
bytes per entry, so an archive stops at ``MAX_ENTRIES`` entries or ``MAX_INDEX_BYTES``
of index, whichever comes first.

What the archive holds: the folder under its own name, every subfolder as an entry
(empty ones too), regular files with their mode and time. Links are never followed
(a link's target might lie anywhere in the jail, or loop): they are left out and
named in the notes, as are FIFOs, sockets, devices, what could not be opened, and
names an extractor could misread: not UTF-8, or holding a backslash. The notes
(``ERRORS.txt`` beside the folder, at most ``MAX_NOTES`` lines) end the archive when
there are any. A file that fails to be read after its entry has begun ends the
connection without finishing the zip, so no reader takes a cut file for a whole one.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from ..core.session import Session
from ..core.tree_reads import ERROR, FILE, FOLDER, LINK, Item, TreeRead
from ..http_names import CLIENT_GONE
from ..http_rules import status_line
from .errors import ApiError
from .replies import BLOCK, Headers, Streamed

CHUNK = 256 << 10  # headers and small files gathered before a send
MAX_ENTRIES = 500_000
# What the index (the central directory, which ends the archive) may hold in memory:
# about ENTRY_COST bytes an entry besides its name. An archive stops short of it.
MAX_INDEX_BYTES = 64 << 20
ENTRY_COST = 600
MAX_NOTES = 1000
NOTES = "ERRORS.txt"
ZIP64_FROM = 1 << 31  # a file's size from which its entry has ZIP64 headers
_EARLIEST, _LATEST = (1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 58)  # what zip dates hold


class _Sink:
    """Where ``zipfile`` writes: the bytes wait here until the body sends them."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self._pieces.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces, self.size = [], 0
        return data


def _utf8(name: str) -> str:
    """A name as UTF-8 text (bytes that are not UTF-8 become U+FFFD)."""
    return os.fsencode(name).decode("utf-8", "replace")


def _info(name: str, st: os.stat_result) -> zipfile.ZipInfo:
    when = max(_EARLIEST, min(_LATEST, time.localtime(st.st_mtime)[:6]))
    info = zipfile.ZipInfo(name, when)
    info.CRC = info.compress_size = 0  # (what a folder's entry says; a file's is set as written)
    info.external_attr = (st.st_mode & 0xFFFF) << 16 | (0x10 if stat.S_ISDIR(st.st_mode) else 0)
    return info


class _Zip:
    """One archive being made: the walk, the zip writer and the notes."""

    def __init__(self, tree: TreeRead, top: str, gone: Callable[[], bool]) -> None:
        self.tree, self.top, self.gone = tree, top, gone
        self.sink = _Sink()
        self.notes: list[str] = []
        self.skipped = 0  # notes past MAX_NOTES
        self.entries = 0
        self.index_bytes = 0  # what the archive's index holds in memory, about

    def note(self, path: str, why: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(f"{_utf8(self.top + '/' + path if path else self.top)}: {why}")
        else:
            self.skipped += 1

    def pieces(self) -> Iterator[bytes]:
        """The archive's bytes, as they are made."""
        archive = zipfile.ZipFile(self.sink, "w", zipfile.ZIP_STORED, allowZip64=True)
        try:
            for item in self.tree.items():
                if self.gone():
                    return  # (the archive is left without its end: nobody reads it)
                if self.entries >= MAX_ENTRIES or self.index_bytes >= MAX_INDEX_BYTES:
                    self.note(
                        "",
                        f"the archive stops at {self.entries} entries (its index is held in "
                        "memory): the rest is not in it; zip its folders one at a time",
                    )
                    break
                yield from self._add(archive, item)
                archive.NameToInfo.clear()  # (names are unique here; the list is enough)
                if self.sink.size >= CHUNK:
                    yield self.sink.take()
            if self.notes:
                if self.skipped:
                    self.notes.append(f"... and {self.skipped} more")
                text = "\n".join(["Not in this archive, or changed:", *self.notes, ""])
                notes = zipfile.ZipInfo(NOTES if self.top != NOTES else "ERRORS-of-zip.txt")
                notes.external_attr = 0o100644 << 16
                archive.writestr(notes, text)
            archive.close()
            yield self.sink.take()
        finally:
            archive.fp = None  # (an archive cut short is never ended, not even when dropped)

    def _add(self, archive: zipfile.ZipFile, item: Item) -> Iterator[bytes]:
        """Write one item of the walk (what cannot be written is noted)."""
        path = f"{self.top}/{item.path}" if item.path else self.top
        name = _utf8(path)
        if item.kind == ERROR:
            self.note(item.path, f"not read: {item.detail}")
            return
        if item.kind == LINK:
            self.note(item.path, f"a link (to {_utf8(item.detail)}), not followed")
            return
        if item.kind not in (FILE, FOLDER):
            self.note(item.path, "not a regular file (a FIFO, socket or device)")
            return
        if name != path:
            self.note(item.path, "left out: its name is not UTF-8 (rename it to zip it)")
            return
        if "\\" in name:  # (a separator to extractors on Windows: a way out of their folder)
            self.note(item.path, "left out: its name holds a backslash (rename it to zip it)")
            return
        name += "/" if item.kind == FOLDER else ""
        if len(name.encode()) > 0xFFFF:
            self.note(item.path, "the path is too long for a zip (64 KiB)")
            return
        assert item.stat is not None
        info = _info(name, item.stat)
        self.entries += 1
        self.index_bytes += ENTRY_COST + 2 * len(name)
        if item.kind == FOLDER:
            archive.mkdir(info)
            return
        yield from self._file(archive, item, info)

    def _file(self, archive: zipfile.ZipFile, item: Item, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """A file's entry, its data sent in blocks as read. One that cannot be opened or
        read at first is noted and left out; a read that fails once its entry has
        begun raises, and the connection ends without the archive's end."""
        try:
            file = self.tree.open(item)
        except OSError as exc:
            self.entries -= 1
            self.note(item.path, f"not read: {exc.strerror or exc}")
            return
        try:
            size = file.stat().st_size  # (what is read: a file that grows is cut here)
            try:
                data = file.read(0, min(BLOCK, size))
            except OSError as exc:
                self.entries -= 1
                self.note(item.path, f"not read: {exc.strerror or exc}")
                return
            with archive.open(info, "w", force_zip64=size >= ZIP64_FROM) as out:
                offset = 0
                while data:
                    out.write(data)
                    offset += len(data)
                    if self.sink.size >= CHUNK:
                        yield self.sink.take()
                    if offset >= size:
                        break
                    data = file.read(offset, min(BLOCK, size - offset))
            if offset < size:
                self.note(item.path, f"shrank while read: {offset} of {size} bytes stored")
        finally:
            file.close()


def _disposition(name: str) -> str:
    """``attachment`` with the name in UTF-8 (RFC 6266), and a plain ASCII one before."""
    plain = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def answer(
    environ: dict[str, Any], session: Session, path: str, ended: Callable[[], None]
) -> tuple[str, Headers, Streamed]:
    """``?zip`` of the folder ``path``: the headers now, the archive as the body is read
    (400 for anything but a folder); ``ended`` is called once the body is done with."""
    if not stat.S_ISDIR(session.stat(path).st_mode):
        raise ApiError(400, "not_a_directory", "?zip is for folders: download a file as it is")
    shown = session.path(path)
    top = _utf8(
        posixpath.basename(shown.rstrip("/"))
        or posixpath.basename(session.user.root.rstrip("/"))
        or "files"
    )
    tree = session.read_tree(path)
    if tree.pseudo():
        tree.close()
        raise ApiError(400, "pseudo_filesystem", f"{shown} is a pseudo filesystem: no files to zip")
    gone: Callable[[], bool] = environ.get(CLIENT_GONE) or (lambda: False)
    made = _Zip(tree, top, gone)
    began, sent = time.monotonic(), [0]

    def counted() -> Iterator[bytes]:
        for piece in made.pieces():
            sent[0] += len(piece)
            yield piece

    def release() -> None:
        try:
            session.tree_sent(tree, "zip", sent[0], made.entries, time.monotonic() - began)
        finally:
            tree.close()
            ended()

    headers = [
        ("Content-Type", "application/zip"),
        ("Content-Disposition", _disposition(top + ".zip")),
        ("Cache-Control", "no-store"),
    ]
    return status_line(200), headers, Streamed(counted(), release)
