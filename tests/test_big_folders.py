"""Folders of 100,000 names: listings stream, memory stays bounded, pages read only
what they return.

These assert shape, never speed: the server still reads the folder (its fd is open)
when the client already has the first bytes; its memory does not grow with the folder
or run after run; a page decodes only the names it returns.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

from conftest import PASSWORD, Server, wait_until

from hoody_mount.core.vfs import VFS

COUNT = 100_000
MIB = 1 << 20


def _fill(folder: Path, count: int = COUNT) -> None:
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            os.close(os.open(f"file-{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _rss(server: Server) -> int:
    """The server's resident memory in bytes."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _holds_open(server: Server, folder: Path) -> bool:
    """Whether the server has ``folder`` open (it is still being read)."""
    fds = Path(f"/proc/{server.process.pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(folder):
                return True
        except OSError:
            continue
    return False


def _connect(server: Server, method: str, path: str, **headers: str) -> http.client.HTTPResponse:
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
    conn.request(method, path, headers={"Authorization": f"Basic {token}", **headers})
    return conn.getresponse()


def _propfind(server: Server) -> http.client.HTTPResponse:
    return _connect(server, "PROPFIND", "/dav/big/", Depth="1")


def _count_responses(reply: http.client.HTTPResponse, first: bytes = b"") -> int:
    parser = ET.XMLPullParser(events=("end",))
    parser.feed(first)
    count = 0
    while True:
        piece = reply.read(1 << 16)
        if not piece:
            break
        parser.feed(piece)
        count += sum(1 for _, el in parser.read_events() if el.tag == "{DAV:}response")
    parser.close()  # (raises on a cut or malformed document)
    count += sum(1 for _, el in parser.read_events() if el.tag == "{DAV:}response")
    return count


def test_propfind_of_a_big_folder_streams_in_bounded_memory(server: Server) -> None:
    """PROPFIND Depth 1 of 100,000 files: the first bytes arrive while the server still
    reads the folder (it used to build the 80 MB answer in memory first: 600-900 MB,
    half a minute); the server's memory stays within a small bound while the client
    pauses and after repeated listings; every member is in a well-formed answer."""
    folder = server.root / "big"
    _fill(folder)
    baseline = _rss(server)
    reply = _propfind(server)
    assert reply.status == 207
    assert reply.getheader("Content-Length") is None  # streamed (chunked)
    first = reply.read(1 << 16)
    assert first.startswith(b"<?xml")
    # the client pauses: the server is mid-listing, with the folder open
    assert _holds_open(server, folder)
    assert _rss(server) < baseline + 60 * MIB
    assert _count_responses(reply, first) == COUNT + 1
    reply.close()
    assert wait_until(lambda: not _holds_open(server, folder), 10)

    after_first = _rss(server)
    for _ in range(3):
        reply = _propfind(server)
        assert _count_responses(reply) == COUNT + 1
        reply.close()
    # memory is given back: the process does not grow run after run (it grew by about
    # 50 MB a listing)
    assert _rss(server) < after_first + 20 * MIB


def test_conditions_keep_the_listing_streamed(server: Server) -> None:
    """A PROPFIND with a condition header is evaluated on the folder and still streamed
    (any If-* header sent it to WsgiDAV, which built the whole answer in memory: 640 MB
    for 100,000 files, per request, for any user); conditions that fail still fail."""
    folder = server.root / "big"
    _fill(folder)
    baseline = _rss(server)
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    reply = _connect(server, "PROPFIND", "/dav/big/", Depth="1", **{"If-Unmodified-Since": future})
    assert reply.status == 207
    assert reply.getheader("Content-Length") is None  # streamed
    first = reply.read(1 << 16)
    assert _holds_open(server, folder)  # the first bytes came while the folder is read
    assert _rss(server) < baseline + 60 * MIB
    assert _count_responses(reply, first) == COUNT + 1
    reply.close()
    for name, value in (  # (a folder has no ETag: If-Match is not evaluated, as in WsgiDAV)
        ("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:01 GMT"),
        ("If", "(<opaquelocktoken:no-such-lock>)"),
    ):
        reply = _connect(server, "PROPFIND", "/dav/big/", Depth="1", **{name: value})
        status = reply.status
        reply.close()
        assert status == 412, (name, status)


def test_a_client_leaving_mid_listing_releases_the_folder(server: Server) -> None:
    """A PROPFIND and an HTML page abandoned after their first bytes: the server stops
    reading and closes the folder (no fd kept for a client that is gone)."""
    folder = server.root / "big"
    _fill(folder)
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    for head in (
        "PROPFIND /dav/big/ HTTP/1.1\r\nDepth: 1\r\n",
        "GET /api/v1/files/big/ HTTP/1.1\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=60) as sock:
            sock.sendall(f"{head}Host: x\r\nAuthorization: Basic {token}\r\n\r\n".encode())
            got = b""
            while len(got) < 1 << 16:
                got += sock.recv(1 << 16)
            assert b" 207 " in got.split(b"\r\n")[0] or b" 200 " in got.split(b"\r\n")[0]
            assert _holds_open(server, folder)
        # the client is gone: the server's next send fails and it stops reading
        assert wait_until(lambda: not _holds_open(server, folder), 30), head


def test_html_page_of_a_big_folder_streams(server: Server) -> None:
    """The browser page of 100,000 files starts before the folder is read to its end,
    shows every name in the folder's own order (unsorted, said on the page) and keeps
    the server's memory bounded; a small folder is still sorted."""
    folder = server.root / "big"
    _fill(folder)
    baseline = _rss(server)
    reply = _connect(server, "GET", "/api/v1/files/big/")
    assert reply.status == 200 and reply.getheader("Content-Length") is None
    first = reply.read(1 << 16)
    assert _holds_open(server, folder)
    assert _rss(server) < baseline + 60 * MIB
    page = (first + reply.read()).decode()
    assert "shown in the folder&#x27;s own order" in page or "own order" in page
    assert page.rstrip().endswith("</html>")
    for i in (0, 1, 50_000, COUNT - 1):
        assert f'href="/api/v1/files/big/file-{i:06d}"' in page
    assert page.count('<tr class="file" ') == COUNT

    small = server.root / "small"
    _fill(small, 30)
    reply = _connect(server, "GET", "/api/v1/files/small/?sort=name&desc")
    text = reply.read().decode()
    order = [text.index(f"file-{i:06d}") for i in (29, 15, 0)]
    assert order == sorted(order) and "own order" not in text


def test_json_pages_walk_a_big_folder_once(server: Server) -> None:
    """Pages of 1,000 with the opaque cursor reach each of 100,000 names exactly once
    (every page read and sorted the whole folder: 112 s for the walk)."""
    folder = server.root / "big"
    _fill(folder)
    seen: list[str] = []
    cursor = None
    for _ in range(COUNT // 1000 + 2):
        query = "?json&limit=1000" + (f"&cursor={quote(cursor)}" if cursor else "")
        reply = _connect(server, "GET", "/api/v1/files/big/" + query)
        assert reply.status == 200
        page = json.loads(reply.read())
        assert len(page["entries"]) <= 1000
        seen.extend(entry["name"] for entry in page["entries"])
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == COUNT and set(seen) == {f"file-{i:06d}" for i in range(COUNT)}


def test_a_page_decodes_only_what_it_returns(tmp_path: Path) -> None:
    """A page resumed from a position in a folder of 20,000 names decodes the page's
    names (and none of the folder before them), wherever in the folder it starts."""
    _fill(tmp_path / "big", 20_000)
    vfs = VFS.open_root(str(tmp_path))
    try:
        position, seen = 0, 0
        for _ in range(30):  # walk the first 30 pages of 10
            listing = vfs.listdir("/big", position=position)
            try:
                page = listing.read(10)
                assert len(page) == 10
                assert listing.decoded <= 12  # the page's names (and . or .. at most)
                position = listing.position
                seen += len(page)
            finally:
                listing.close()
        assert seen == 300
    finally:
        vfs.close()
