"""Client adapters for the contract suite (``test_contract.py``): one per front.

Each adapter drives one front of a running server with an ordinary client of that
protocol and speaks one neutral vocabulary, so a scenario states one expected outcome
and checks it through every front, the way fsspec tests its backends:

- ``sftp``: asyncssh's SFTP client (one connection, run on a loop in a helper thread);
- ``webdav``: plain ``http.client`` requests under ``/dav/`` (PUT, GET, MKCOL, DELETE,
  MOVE, PROPFIND);
- ``api``: plain ``http.client`` requests to ``/api/v1/files/`` (see README, "HTTP file
  API");
- ``sshfs``: a FUSE mount (``sshfs -f``), driven with the ``os`` module.

Paths are the user's paths (``/share/x`` for root, ``/x`` for the reader jailed to
``/share``), as ``str``; bytes that are not UTF-8 travel as surrogate escapes
(``os.fsdecode``), and each adapter sends the bytes ``os.fsencode`` gives back.

A refusal is ``Refused(kind)``, whatever the front said; each front's table below maps
its protocol's answers (SFTP status codes, HTTP statuses, the API's error codes, errno)
to the kinds. A front that cannot tell two kinds apart says so in ``COARSE`` (the kind a
scenario expects mapped to the kind this front can report), with the protocol's reason;
capabilities that differ by design are flags on the class, each with its reason.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import http.client
import json
import os
import socket
import stat
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, unquote_to_bytes, urlsplit

import asyncssh
from asyncssh.constants import (
    FX_BAD_MESSAGE,
    FX_EOF,
    FX_FAILURE,
    FX_NO_SUCH_FILE,
    FX_OP_UNSUPPORTED,
    FX_PERMISSION_DENIED,
)
from conftest import Server, is_mounted, require, unmount, wait_until

T = TypeVar("T")

TIMEOUT = 60.0

#: The neutral vocabulary of refusals.
KINDS = frozenset(
    {
        "not_found",  # no such file or folder (or a path that leads nowhere)
        "exists",  # the name is taken
        "denied",  # permission denied: a read-only user's write included
        "not_empty",  # a folder that still holds names
        "not_a_folder",  # a file where a folder is needed
        "is_a_folder",  # a folder where a file is needed
        "bad_name",  # a name the server will not take (too long, not UTF-8 over WebDAV)
        "conflict",  # WebDAV's 409: one of not_empty, not_a_folder, is_a_folder
        "failed",  # SFTP's bare FAILURE as sshfs reports it (EPERM): no detail left
        "unsupported",
        "other",
    }
)

#: Names of the server's own temp files (uploads in progress): README, "Names".
TEMP_NAME = r"^\..*\.hoody-[0-9a-f]{12}\.part$"


class Refused(Exception):
    """A front refused an operation; ``kind`` is the neutral name of the refusal."""

    def __init__(self, kind: str, detail: str) -> None:
        assert kind in KINDS, kind
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Info:
    """What ``stat`` tells: ``kind`` is "file" or "folder"; ``size`` for a file."""

    kind: str
    size: int | None


class Front(ABC):
    """One front as a client sees it, in the neutral vocabulary."""

    name: ClassVar[str]
    #: kind a scenario expects -> kind this front can report (what the protocol loses)
    COARSE: ClassVar[dict[str, str]] = {}
    #: an upload replaces the target only when it arrived whole (else: in place)
    atomic_uploads: ClassVar[bool] = True
    #: a test can cut an upload short through this front (and keep using the front)
    can_abort_upload: ClassVar[bool] = True
    #: the delete of a folder removes what it holds (else: refused while not empty)
    delete_removes_tree: ClassVar[bool] = False
    #: names that are not UTF-8 can be named in a request (listing them works anyway)
    byte_names: ClassVar[bool] = True
    #: a rename can be told not to replace an existing target
    rename_noreplace: ClassVar[bool] = True
    #: what a ".." in a path does: "clamped" by the server at the jail's root, "refused"
    #: by the server, or resolved by the "client" before the server sees a name
    dotdot: ClassVar[str] = "clamped"
    #: a read-only user's write is refused before the name is looked up (so a missing
    #: name is "denied" too), as OpenSSH's sftp-server does
    denies_before_lookup: ClassVar[bool] = True
    #: what reading a folder as a file gives: "refused" (is_a_folder) or "listing"
    folder_read: ClassVar[str] = "refused"
    #: a folder's listing names a link that leads nowhere (as readdir does)
    lists_dangling_links: ClassVar[bool] = True
    #: writing a file over a symlink writes where the link leads (open(2) follows it,
    #: in the jail); else the upload replaces the link itself, as rename(2) does
    write_follows_links: ClassVar[bool] = True

    def __init__(self, server: Server, user: str) -> None:
        self.server = server
        self.user = user

    def reports(self, kind: str) -> str:
        """The kind this front reports for a refusal whose true kind is ``kind``."""
        return self.COARSE.get(kind, kind)

    @abstractmethod
    def read(self, path: str) -> bytes:
        """The whole content of a file."""

    @abstractmethod
    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (excluded) of a file, asked for as a range."""

    @abstractmethod
    def write(self, path: str, data: bytes) -> None:
        """Create or replace a file with ``data``."""

    @abstractmethod
    def mkdir(self, path: str) -> None:
        """Make a folder."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file."""

    @abstractmethod
    def rmdir(self, path: str) -> None:
        """Remove a folder (the front's own folder delete)."""

    @abstractmethod
    def rename(self, old: str, new: str, replace: bool) -> None:
        """Rename ``old`` to ``new``; with ``replace``, an existing ``new`` is replaced."""

    @abstractmethod
    def list(self, path: str) -> set[str]:
        """The names in a folder (without ``.`` and ``..``)."""

    @abstractmethod
    def stat(self, path: str) -> Info:
        """Kind and size of what ``path`` leads to."""

    def abort_write(self, path: str, data: bytes, sent: int, started: Callable[[], bool]) -> None:
        """Start replacing ``path`` with ``data``, deliver ``sent`` bytes, wait until
        ``started()`` holds (the server is at work on it), then drop the connection."""
        raise NotImplementedError(f"{self.name} cannot cut an upload short")

    @abstractmethod
    def close(self) -> None:
        """Release the client's connections."""


# --------------------------------------------------------------------------- SFTP

#: SFTP v3 status -> kind. The server maps errno to v3 codes as OpenSSH does
#: (hoody_mount/ssh/wire.py): ENOENT and ENOTDIR are NO_SUCH_FILE, EACCES is
#: PERMISSION_DENIED, and every other errno is FAILURE carrying the error's text.
SFTP_STATUS: dict[int, str] = {
    FX_NO_SUCH_FILE: "not_found",
    FX_PERMISSION_DENIED: "denied",
    FX_OP_UNSUPPORTED: "unsupported",
    FX_BAD_MESSAGE: "other",
    FX_EOF: "other",
}
#: FAILURE's text (the errno's strerror) -> kind.
SFTP_FAILURE_TEXT: dict[str, str] = {
    "File exists": "exists",
    "Directory not empty": "not_empty",
    "Is a directory": "is_a_folder",
    "Not a directory": "not_a_folder",
    "File name too long": "bad_name",
    "Invalid argument": "bad_name",
    "The destination exists": "exists",  # a v3 RENAME onto an existing name
}


def sftp_kind(exc: asyncssh.SFTPError) -> str:
    """The neutral kind of an SFTP status."""
    if exc.code == FX_FAILURE:
        for text, kind in SFTP_FAILURE_TEXT.items():
            if str(exc.reason).startswith(text):
                return kind
        return "other"
    return SFTP_STATUS.get(exc.code, "other")


class _Loop:
    """An asyncio event loop in a daemon thread, for the async SFTP clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class SftpFront(Front):
    """SFTP through asyncssh's client, one connection per user."""

    name = "sftp"
    # SFTP v3 has no codes for "not empty", "exists" or "is a folder": the server sends
    # FAILURE with the error's text, which this adapter reads (SFTP_FAILURE_TEXT). ENOTDIR
    # is NO_SUCH_FILE, as OpenSSH's sftp-server answers it.
    COARSE = {"not_a_folder": "not_found"}
    # README, "What the SSH server offers": SFTP writes the file in place, as OpenSSH
    # does; an upload cut short leaves the bytes that arrived.
    atomic_uploads = False

    def __init__(self, server: Server, user: str, loop: _Loop) -> None:
        super().__init__(server, user)
        self.loop = loop
        self.conn = self.connect()
        self.sftp = loop.run(self._start(self.conn))

    def connect(self) -> asyncssh.SSHClientConnection:
        """A new SSH connection as this front's user, with the test key."""
        return self.loop.run(self._connect())

    @staticmethod
    async def _start(conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
        return await conn.start_sftp_client()

    async def _connect(self) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1",
            self.server.port,
            username=self.user,
            client_keys=[str(self.server.key)],
            known_hosts=None,
            agent_path=None,
            password=None,
        )

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run(coro)
        except asyncssh.SFTPError as exc:
            raise Refused(sftp_kind(exc), f"SFTP status {exc.code}: {exc.reason}") from None

    def read(self, path: str) -> bytes:
        """OPEN for reading, READ to the end."""

        async def go() -> bytes:
            async with self.sftp.open(os.fsencode(path), "rb") as file:
                data = await file.read()
            assert isinstance(data, bytes)  # (opened "rb")
            return data

        return self._call(go())

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """READ at an offset."""

        async def go() -> bytes:
            async with self.sftp.open(os.fsencode(path), "rb") as file:
                data = await file.read(end - start, start)
            assert isinstance(data, bytes)
            return data

        return self._call(go())

    def write(self, path: str, data: bytes) -> None:
        """OPEN with CREAT and TRUNC, WRITEs, CLOSE (what ``sftp put`` does)."""

        async def go() -> None:
            async with self.sftp.open(os.fsencode(path), "wb") as file:
                await file.write(data)

        self._call(go())

    def mkdir(self, path: str) -> None:
        """MKDIR."""
        self._call(self.sftp.mkdir(os.fsencode(path)))

    def remove(self, path: str) -> None:
        """REMOVE."""
        self._call(self.sftp.remove(os.fsencode(path)))

    def rmdir(self, path: str) -> None:
        """RMDIR."""
        self._call(self.sftp.rmdir(os.fsencode(path)))

    def rename(self, old: str, new: str, replace: bool) -> None:
        """posix-rename@openssh.com to replace; the v3 RENAME never replaces."""
        if replace:
            self._call(self.sftp.posix_rename(os.fsencode(old), os.fsencode(new)))
        else:
            self._call(self.sftp.rename(os.fsencode(old), os.fsencode(new)))

    def list(self, path: str) -> set[str]:
        """OPENDIR, READDIR to the end."""
        names = self._call(self.sftp.listdir(os.fsencode(path)))
        return {os.fsdecode(n) for n in names} - {".", ".."}

    def stat(self, path: str) -> Info:
        """STAT (links followed)."""
        attrs = self._call(self.sftp.stat(os.fsencode(path)))
        assert attrs.permissions is not None
        if stat.S_ISDIR(attrs.permissions):
            return Info("folder", None)
        return Info("file" if stat.S_ISREG(attrs.permissions) else "other", attrs.size)

    def abort_write(self, path: str, data: bytes, sent: int, started: Callable[[], bool]) -> None:
        """On a connection of its own: OPEN (CREAT, TRUNC), WRITE ``sent`` bytes and wait
        for the answer, then drop the connection without a CLOSE."""

        async def cut() -> None:
            conn = await self._connect()
            sftp = await conn.start_sftp_client()
            file = await sftp.open(os.fsencode(path), "wb")
            await file.write(data[:sent])
            assert await asyncio.to_thread(wait_until, started, 10.0), "no sign of the write"
            conn.abort()  # no CLOSE of the file, no channel close: the connection goes

        self._call(cut())

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
        self.loop.run(self.conn.wait_closed())


# --------------------------------------------------------------------------- HTTP fronts


class _HttpFront(Front):
    """What WebDAV and the file API share: one kept-alive connection, Basic credentials."""

    prefix: ClassVar[str]
    # An upload is a hidden temp file renamed over the name when complete (README, "Uploads
    # are atomic"; hoody_mount/core/vfs.py, atomic_file: "a link is replaced, as rename(2)
    # does"), so a PUT over a link replaces the link.
    write_follows_links = False

    def __init__(self, server: Server, user: str, password: str) -> None:
        super().__init__(server, user)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.auth = f"Basic {token}"
        self.conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT)

    def url(self, path: str) -> str:
        """The request target of a user's path: its bytes percent-encoded, ``/`` kept."""
        return self.prefix + quote(os.fsencode(path), safe="/")

    def request(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on the kept-alive connection (a fresh one if the server closed it
        while idle); status, headers (lower-case names) and the whole body."""
        all_headers = {"Authorization": self.auth, **(headers or {})}
        for attempt in range(2):
            try:
                self.conn.request(method, target, body=body, headers=all_headers)
                reply = self.conn.getresponse()
                data = reply.read()
                return reply.status, {k.lower(): v for k, v in reply.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    @abstractmethod
    def refusal(self, status: int, body: bytes) -> Refused:
        """The neutral refusal for an error answer."""

    def expect(
        self, answer: tuple[int, dict[str, str], bytes], *ok: int
    ) -> tuple[int, dict[str, str], bytes]:
        """The answer if its status is one of ``ok``; otherwise its refusal."""
        status, _, body = answer
        if status in ok:
            return answer
        raise self.refusal(status, body)

    def read(self, path: str) -> bytes:
        """GET."""
        return self.expect(self.request("GET", self.url(path)), 200)[2]

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """GET with ``Range: bytes=start-(end-1)``; the answer must be 206 with that
        Content-Range."""
        status, headers, body = self.expect(
            self.request("GET", self.url(path), headers={"Range": f"bytes={start}-{end - 1}"}),
            200,
            206,
        )
        assert status == 206, f"{self.name}: a range got {status}, not 206"
        assert headers["content-range"].startswith(f"bytes {start}-{end - 1}/"), headers
        return body

    def abort_write(self, path: str, data: bytes, sent: int, started: Callable[[], bool]) -> None:
        """A PUT announcing ``len(data)`` bytes whose connection closes after ``sent``
        (once ``started()`` holds)."""
        head = (
            f"PUT {self.url(path)} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.http_port}\r\n"
            f"Authorization: {self.auth}\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", self.server.http_port), TIMEOUT) as sock:
            sock.sendall(head.encode() + data[:sent])
            assert wait_until(started, 10.0), "the upload never started"

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


#: WebDAV status -> kind (RFC 4918 and hoody_mount/dav/provider.py's errno table).
DAV_STATUS: dict[int, str] = {
    400: "bad_name",  # EINVAL, ENAMETOOLONG, a path that is not UTF-8
    403: "denied",  # EACCES, EPERM, EROFS: a read-only user's write included
    404: "not_found",
    405: "exists",  # MKCOL of an existing name (RFC 4918 9.3.1)
    409: "conflict",  # ENOTEMPTY, ENOTDIR, EISDIR, a missing parent (RFC 4918 9.3.1, 9.7.1)
    412: "exists",  # MOVE with Overwrite: F onto an existing name (RFC 4918 9.9.4)
    # The gate answers a GET of a folder with 303 to the folder's page in the file API
    # (RFC 4918 9.4 leaves a GET of a collection to the server): it is a folder.
    303: "is_a_folder",
}
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
    b"<D:resourcetype/><D:getcontentlength/></D:prop></D:propfind>"
)
DAV = "{DAV:}"


class WebDavFront(_HttpFront):
    """WebDAV under ``/dav/`` with ``http.client``."""

    name = "webdav"
    prefix = "/dav"
    # HTTP has one status, 409 Conflict, for these (RFC 4918 uses it for each). (A GET of
    # a folder is told apart: the gate's 303, see DAV_STATUS.)
    COARSE = {"not_empty": "conflict", "not_a_folder": "conflict"}
    # RFC 4918 9.6.1: DELETE of a collection acts as Depth infinity, whatever it holds.
    delete_removes_tree = True
    # README, "Names": WebDAV paths must be UTF-8; other names are listed (their hrefs
    # quote the bytes) and a request naming one gets 400.
    byte_names = False
    # docs/design.md, "WebDAV specifics": a link is listed as what it leads to, and one
    # that leads nowhere is left out (WsgiDAV failed the whole PROPFIND on it).
    lists_dangling_links = False
    # hoody_mount/dav/gate.py: a path with a ".." segment gets a complete 400 (WsgiDAV
    # would answer without a body); HTTP clients remove dot segments themselves
    # (RFC 3986 5.2.4), so only a hand-made request carries one.
    dotdot = "refused"

    def refusal(self, status: int, body: bytes) -> Refused:
        """DAV_STATUS."""
        return Refused(DAV_STATUS.get(status, "other"), f"HTTP {status}: {body[:200]!r}")

    def write(self, path: str, data: bytes) -> None:
        """PUT."""
        self.expect(self.request("PUT", self.url(path), data), 201, 204)

    def mkdir(self, path: str) -> None:
        """MKCOL."""
        self.expect(self.request("MKCOL", self.url(path)), 201)

    def remove(self, path: str) -> None:
        """DELETE."""
        self.expect(self.request("DELETE", self.url(path)), 204)

    def rmdir(self, path: str) -> None:
        """DELETE (of a collection: with all it holds, RFC 4918 9.6.1)."""
        self.expect(self.request("DELETE", self.url(path)), 204)

    def rename(self, old: str, new: str, replace: bool) -> None:
        """MOVE with an absolute-path Destination and ``Overwrite: T`` or ``F``."""
        headers = {"Destination": self.url(new), "Overwrite": "T" if replace else "F"}
        self.expect(self.request("MOVE", self.url(old), headers=headers), 201, 204)

    def _propfind(self, path: str, depth: str) -> dict[bytes, ET.Element]:
        target = self.url(path.rstrip("/") + "/") if depth == "1" else self.url(path)
        headers = {"Depth": depth, "Content-Type": "application/xml"}
        body = self.expect(self.request("PROPFIND", target, PROPFIND_BODY, headers), 207)[2]
        found: dict[bytes, ET.Element] = {}
        for response in ET.fromstring(body).iter(f"{DAV}response"):
            href = response.findtext(f"{DAV}href") or ""
            found[unquote_to_bytes(urlsplit(href).path).rstrip(b"/")] = response
        return found

    def list(self, path: str) -> set[str]:
        """PROPFIND Depth 1: the members' hrefs, whose bytes name them exactly."""
        own = os.fsencode(self.prefix + path).rstrip(b"/")
        names = set()
        for href in self._propfind(path, "1"):
            if href != own:
                assert href.startswith(own + b"/"), (href, own)
                names.add(os.fsdecode(href[len(own) + 1 :]))
        return names

    def stat(self, path: str) -> Info:
        """PROPFIND Depth 0: resourcetype and getcontentlength."""
        (response,) = self._propfind(path, "0").values()
        if response.find(f".//{DAV}resourcetype/{DAV}collection") is not None:
            return Info("folder", None)
        length = response.findtext(f".//{DAV}getcontentlength")
        return Info("file", int(length) if length is not None else None)


#: File API error code (README: errors are JSON) -> kind (hoody_mount/api/errors.py).
API_ERROR: dict[str, str] = {
    "not_found": "not_found",
    "no_parent": "not_found",  # a PUT whose folder does not exist (409)
    "forbidden": "denied",  # EACCES, EPERM, EROFS: a read-only user's write included
    "exists": "exists",
    "not_empty": "not_empty",
    "not_a_directory": "not_a_folder",
    "is_a_directory": "is_a_folder",
    "name_too_long": "bad_name",
    "invalid": "bad_name",
}

#: A HEAD's refusal has no body to carry the code: its status alone.
API_HEAD_STATUS: dict[int, str] = {404: "not_found", 403: "denied", 400: "bad_name"}


class ApiFront(_HttpFront):
    """The file API at ``/api/v1/files/`` with ``http.client``."""

    name = "api"
    prefix = "/api/v1/files"
    # README: "A folder opened in a browser shows an HTML listing": a GET of a folder is
    # its listing, by design (there is no separate verb for reading a file).
    folder_read = "listing"

    def refusal(self, status: int, body: bytes) -> Refused:
        """API_ERROR, from the JSON body's ``error`` (API_HEAD_STATUS for a HEAD)."""
        if not body and status in API_HEAD_STATUS:
            return Refused(API_HEAD_STATUS[status], f"HTTP {status} (no body: a HEAD)")
        try:
            code = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return Refused("other", f"HTTP {status} without a JSON error: {body[:200]!r}")
        return Refused(API_ERROR.get(code, "other"), f"HTTP {status} {code}: {body[:200]!r}")

    def write(self, path: str, data: bytes) -> None:
        """PUT."""
        self.expect(self.request("PUT", self.url(path), data), 200, 201)

    def mkdir(self, path: str) -> None:
        """POST ``?mkdir``."""
        self.expect(self.request("POST", self.url(path) + "?mkdir"), 201)

    def remove(self, path: str) -> None:
        """DELETE."""
        self.expect(self.request("DELETE", self.url(path)), 204)

    def rmdir(self, path: str) -> None:
        """DELETE without ``?recursive``: only an empty folder."""
        self.expect(self.request("DELETE", self.url(path)), 204)

    def rename(self, old: str, new: str, replace: bool) -> None:
        """POST ``{"action": "move", "to": new, "overwrite": replace}``."""
        body = json.dumps({"action": "move", "to": new, "overwrite": replace}).encode()
        headers = {"Content-Type": "application/json"}
        self.expect(self.request("POST", self.url(old), body, headers), 200)

    def entries(self, path: str) -> list[dict[str, Any]]:
        """Every entry of a folder's JSON listing, page after page."""
        entries: list[dict[str, Any]] = []
        cursor = ""
        while True:
            query = "?json&limit=10000" + (f"&cursor={quote(cursor)}" if cursor else "")
            status, headers, body = self.expect(
                self.request("GET", self.url(path.rstrip("/") + "/") + query), 200
            )
            assert headers["content-type"].startswith("application/json"), headers
            page = json.loads(body)
            assert page["type"] == "directory", page
            entries += page["entries"]
            if page["next"] is None:
                return entries
            cursor = page["next"]

    def list(self, path: str) -> set[str]:
        """GET ``?json``: the names from the entries' hrefs (which carry any bytes)."""
        return {
            os.fsdecode(unquote_to_bytes(e["href"]).rsplit(b"/", 1)[1]) for e in self.entries(path)
        }

    def stat(self, path: str) -> Info:
        """HEAD ``?json`` (links followed): a file's download carries an ETag and its
        Content-Length; a folder's answer is its JSON listing, which has no ETag."""
        _, headers, _ = self.expect(self.request("HEAD", self.url(path) + "?json"), 200)
        if "etag" not in headers:
            assert headers["content-type"].startswith("application/json"), headers
            return Info("folder", None)
        return Info("file", int(headers["content-length"]))


# --------------------------------------------------------------------------- sshfs

#: errno -> kind, for the OSErrors a FUSE mount raises.
SSHFS_ERRNO: dict[int, str] = {
    errno.ENOENT: "not_found",
    errno.EACCES: "denied",
    errno.EROFS: "denied",
    errno.EEXIST: "exists",  # the kernel looks the name up first (mkdir, O_EXCL)
    errno.ENOTEMPTY: "not_empty",
    errno.ENOTDIR: "not_a_folder",
    errno.EISDIR: "is_a_folder",
    errno.ENAMETOOLONG: "bad_name",
    errno.EPERM: "failed",  # sshfs turns SFTP's FAILURE into EPERM
    errno.EINVAL: "bad_name",
}


@contextmanager
def _oserrors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        kind = SSHFS_ERRNO.get(exc.errno or 0, "other")
        raise Refused(kind, f"errno {exc.errno} ({exc.strerror})") from None


class SshfsFront(Front):
    """An sshfs mount of the user's ``/``, used through ``os``."""

    name = "sshfs"
    # sshfs maps SFTP statuses to errno (sftp_error_to_errno): FAILURE, which carries
    # "name too long" and the like in SFTP v3, becomes EPERM. ENOTDIR is NO_SUCH_FILE in
    # SFTP v3 (see SftpFront), so ENOENT here.
    COARSE = {"bad_name": "failed", "not_a_folder": "not_found"}
    # sshfs writes through to the server's file in place, as SFTP does.
    atomic_uploads = False
    # Cutting an upload short means killing the mount: not a client's upload to abort.
    can_abort_upload = False
    # rename(2) always replaces; sshfs refuses renameat2 flags (RENAME_NOREPLACE: EINVAL).
    rename_noreplace = False
    # The client's kernel resolves ".." in a path before sshfs sees a name.
    dotdot = "client"
    # The client's kernel looks a name up before it asks to remove or rename it: a
    # missing name is ENOENT whatever the user may do.
    denies_before_lookup = False

    def __init__(self, server: Server, user: str, mountpoint: Path, log: Path) -> None:
        super().__init__(server, user)
        require("sshfs", "fusermount3")
        self.mountpoint = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        options = ",".join([
            f"IdentityFile={server.key}",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "LogLevel=ERROR",
            # links are resolved by the server (in the jail), not by this host's kernel,
            # which would follow an absolute link into this host's own filesystem
            "follow_symlinks",
            # tests change folders on disk too: no listing may come from a cache
            "dir_cache=no",
        ])  # fmt: skip
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                ["sshfs", "-f", "-p", str(server.port), "-o", options,
                 f"{user}@127.0.0.1:/", str(mountpoint)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not is_mounted(mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"sshfs did not mount: {log.read_text()}")
            time.sleep(0.05)

    def local(self, path: str) -> bytes:
        """The mounted path of a user's path."""
        return os.fsencode(self.mountpoint) + os.fsencode(path)

    def read(self, path: str) -> bytes:
        """open(2), read(2)."""
        with _oserrors(), open(self.local(path), "rb") as file:
            return file.read()

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """pread(2)."""
        with _oserrors():
            fd = os.open(self.local(path), os.O_RDONLY)
            try:
                return os.pread(fd, end - start, start)
            finally:
                os.close(fd)

    def write(self, path: str, data: bytes) -> None:
        """open(2) with O_CREAT | O_TRUNC, write(2), close(2)."""
        with _oserrors(), open(self.local(path), "wb") as file:
            file.write(data)

    def mkdir(self, path: str) -> None:
        """mkdir(2)."""
        with _oserrors():
            os.mkdir(self.local(path))

    def remove(self, path: str) -> None:
        """unlink(2)."""
        with _oserrors():
            os.unlink(self.local(path))

    def rmdir(self, path: str) -> None:
        """rmdir(2)."""
        with _oserrors():
            os.rmdir(self.local(path))

    def rename(self, old: str, new: str, replace: bool) -> None:
        """rename(2), which always replaces (see ``rename_noreplace``)."""
        assert replace, "sshfs cannot rename without replacing"
        with _oserrors():
            os.rename(self.local(old), self.local(new))

    def list(self, path: str) -> set[str]:
        """readdir(3)."""
        with _oserrors():
            return {os.fsdecode(n) for n in os.listdir(self.local(path))}

    def stat(self, path: str) -> Info:
        """stat(2)."""
        with _oserrors():
            st = os.stat(self.local(path))
        if stat.S_ISDIR(st.st_mode):
            return Info("folder", None)
        return Info("file" if stat.S_ISREG(st.st_mode) else "other", st.st_size)

    def close(self) -> None:
        """Unmount and stop sshfs."""
        unmount(self.mountpoint, self.process)


# --------------------------------------------------------------------------- the pool

FRONTS = ("sftp", "webdav", "api", "sshfs")
FRONT_CLASSES: dict[str, type[Front]] = {
    "sftp": SftpFront,
    "webdav": WebDavFront,
    "api": ApiFront,
    "sshfs": SshfsFront,
}


def fronts_where(test: Callable[[type[Front]], bool]) -> list[str]:
    """The front names whose class passes ``test`` (a capability), in FRONTS order."""
    return [name for name in FRONTS if test(FRONT_CLASSES[name])]


class Pool:
    """One client per (front, user), made at first use and kept for the module."""

    def __init__(self, server: Server, passwords: dict[str, str], scratch: Path) -> None:
        self.server = server
        self.passwords = passwords
        self.scratch = scratch
        self.fronts: dict[tuple[str, str], Front] = {}
        self._loop: _Loop | None = None

    @property
    def loop(self) -> _Loop:
        """The event loop of the SFTP clients (started at first use)."""
        if self._loop is None:
            self._loop = _Loop()
        return self._loop

    def get(self, name: str, user: str) -> Front:
        """The client of ``name`` as ``user``."""
        key = (name, user)
        if key not in self.fronts:
            front: Front
            if name == "sftp":
                front = SftpFront(self.server, user, self.loop)
            elif name == "webdav":
                front = WebDavFront(self.server, user, self.passwords[user])
            elif name == "api":
                front = ApiFront(self.server, user, self.passwords[user])
            elif name == "sshfs":
                folder = self.scratch / f"sshfs-{user}"
                front = SshfsFront(self.server, user, folder / "mnt", folder.with_suffix(".log"))
            else:
                raise ValueError(name)
            self.fronts[key] = front
        return self.fronts[key]

    def close(self) -> None:
        """Close every client."""
        errors: list[BaseException] = []
        for front in self.fronts.values():
            try:
                front.close()
            except Exception as exc:  # close the others first, then report
                errors.append(exc)
        if self._loop is not None:
            self._loop.close()
        if errors:
            raise errors[0]
