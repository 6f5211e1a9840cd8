"""Every use of a name cheroot (or the ``_pyio`` module under its streams) keeps private.

cheroot has no public way to replace the loop that accepts connections and hands them
to workers, nor to give a connection a reader of our own over bytes already read; the
intake (``intake.py``) needs both. Each such use sits here, and ``check`` proves at
start that they are all still what this module expects, so a changed cheroot fails
loudly at start instead of misbehaving under load.
"""

from __future__ import annotations

import _pyio  # type: ignore[import-not-found]  # (cheroot's streams are built on it)
import socket
from typing import Any

import cheroot
from cheroot import connections as cheroot_connections
from cheroot import server as cheroot_server
from cheroot.makefile import BufferedWriter, StreamReader

from ..unfit import UnfitLibrary


def check() -> None:
    """UnfitLibrary unless cheroot and ``_pyio`` still have what this module uses."""
    problems = []
    if "ChunkedRFile" not in cheroot_server.HTTPRequest.respond.__code__.co_names:
        problems.append("HTTPRequest.respond no longer makes a ChunkedRFile")
    if not hasattr(cheroot_server.ChunkedRFile, "_fetch"):
        problems.append("ChunkedRFile has no _fetch")
    if "_connections" not in cheroot_server.HTTPServer.serve.__code__.co_names:
        problems.append("HTTPServer.serve no longer runs self._connections")
    for name in ("put", "run", "stop", "close", "can_add_keepalive_connection"):
        if not hasattr(cheroot_connections.ConnectionManager, name):
            problems.append(f"ConnectionManager has no {name}")
    if not issubclass(StreamReader, _pyio.BufferedReader):
        problems.append("cheroot's StreamReader is no longer a _pyio.BufferedReader")
    probe = _pyio.BufferedReader(_pyio.BytesIO(b""))
    for name in ("_read_buf", "_read_pos"):
        if not hasattr(probe, name):
            problems.append(f"_pyio.BufferedReader has no {name}")
    writer = BufferedWriter(_pyio.BytesIO())
    for name in ("_write_lock", "_checkClosed"):
        if not hasattr(writer, name):
            problems.append(f"cheroot's BufferedWriter has no {name}")
    pair = socket.socketpair()
    try:
        if getattr(socket.SocketIO(pair[0], "wb"), "_sock", None) is not pair[0]:
            problems.append("socket.SocketIO no longer keeps its socket as _sock")
    finally:
        for end in pair:
            end.close()
    if problems:
        raise UnfitLibrary(
            f"cheroot {cheroot.__version__} does not fit hoody-mount (constraints.txt pins "
            f"the version it was built for): {'; '.join(problems)}"
        )


def use_chunked_reader(reader: type) -> None:
    """Make cheroot read chunked bodies with ``reader`` (its ChunkedRFile's interface):
    ``HTTPRequest.respond`` looks the class up by name in its module."""
    cheroot_server.ChunkedRFile = reader  # type: ignore[misc,assignment]


def replace_connection_manager(server: cheroot_server.HTTPServer, manager: Any) -> None:
    """Put ``manager`` where cheroot's ConnectionManager was (after ``prepare``, before
    ``serve``): cheroot then runs it for accepting and keeping connections."""
    old = server._connections  # type: ignore[attr-defined]
    if not isinstance(old, cheroot_connections.ConnectionManager):
        raise RuntimeError("cheroot's server has no ConnectionManager to replace")
    server._connections = manager  # type: ignore[attr-defined]
    old.close()  # (unregisters the listening socket from cheroot's selector; keeps it open)


class BufferedStream(StreamReader):
    """cheroot's socket reader, over a raw stream of our own instead of the socket."""

    def __init__(self, raw: Any, bufsize: int = 8192) -> None:
        _pyio.BufferedReader.__init__(self, raw, bufsize)  # (StreamReader's wants a socket)
        self.bytes_read = 0

    def buffered(self) -> bytes:
        """The bytes read from the raw stream and not yet consumed (without reading)."""
        return bytes(self._read_buf[self._read_pos :])  # type: ignore[attr-defined]


def socket_of(writer: BufferedWriter) -> socket.socket:
    """The socket under a writer made over ``socket.SocketIO``."""
    return writer.raw._sock  # type: ignore[attr-defined,no-any-return]


def write_lock(writer: BufferedWriter) -> Any:
    """The lock a ``_pyio`` writer holds while it writes."""
    return writer._write_lock  # type: ignore[attr-defined]


def check_open(writer: BufferedWriter) -> None:
    """ValueError if the writer is closed, as ``_pyio`` writers check."""
    writer._checkClosed()
