"""A folder downloaded as a zip (``GET <folder>/?zip``), end to end over a real server.

Each archive is read back with Python's ``zipfile`` (every name and every byte compared)
and, where it matters, tested with ``unzip -t``. A sparse file over 4 GiB proves ZIP64
and streaming: the client reads the answer in a loop while the server's memory is
watched. Permissions, jails, share links, files and clients that leave are covered too.
"""

from __future__ import annotations

import base64
import errno
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    password_hash,
    require,
    served,
    server_log,
    wait_until,
)

from hoody_mount.api import zips
from hoody_mount.core.open_files import OpenFile
from hoody_mount.core.tree_reads import FILE, FOLDER, Item

MiB = 1 << 20
GiB = 1 << 30
WALLED = "walled-secret"
WALLED_USER = """
[users.walled]
password_hash = "{hash}"
root = "/home/jailed"
"""


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _request(
    server: Server, path: str, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


def _zip(server: Server, path: str, user: str = "root", password: str = PASSWORD) -> bytes:
    """A whole zip, with its headers checked."""
    reply = _request(server, path, _auth(user, password) if user else {})
    body = reply.read()
    assert reply.status == 200, (reply.status, body[:300])
    assert reply.getheader("Content-Type") == "application/zip"
    assert reply.getheader("Content-Length") is None
    assert reply.getheader("Cache-Control") == "no-store"
    return body


def _contents(data: bytes) -> dict[str, bytes]:
    """Every entry's name and content (folders: None's place taken by b"/")."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {
            info.filename: b"/" if info.is_dir() else archive.read(info)
            for info in archive.infolist()
        }


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    users = WALLED_USER.replace("{hash}", password_hash(WALLED))
    with served(tmp_path, client_key, users=users) as running:
        yield running


def test_a_tree_comes_whole_with_its_names_and_empty_folders(server: Server) -> None:
    """Nested folders, an empty one, UTF-8 names, a name that is not UTF-8 (stored with
    U+FFFD and noted), a link and a FIFO (left out and noted): every file's bytes."""
    top = server.root / "share" / "tree"
    (top / "a" / "b" / "c").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / "Ünïcødé 名前").mkdir()
    files = {
        "a/one.txt": b"one\n",
        "a/b/two.bin": os.urandom(3 * MiB + 17),
        "a/b/c/three.txt": b"",
        "Ünïcødé 名前/ĉu.txt": "ĉu ne?\n".encode(),
        "top level.txt": b"top\n",
    }
    for name, data in files.items():
        (top / name).write_bytes(data)
    os.chmod(top / "a" / "one.txt", 0o640)
    bad = os.fsencode(str(top)) + b"/bad-\xff.txt"
    with open(bad, "wb") as out:
        out.write(b"bad name\n")
    os.symlink("/etc/passwd", top / "a" / "link")
    os.mkfifo(top / "a" / "fifo")
    data = _zip(server, "/api/v1/files/share/tree/?zip")
    got = _contents(data)
    for name, content in files.items():
        assert got.pop(f"tree/{name}") == content, name
    assert "tree/bad-\N{REPLACEMENT CHARACTER}.txt" not in got  # (left out, and named)
    folders = {"tree/", "tree/a/", "tree/a/b/", "tree/a/b/c/", "tree/empty/", "tree/Ünïcødé 名前/"}
    assert {name for name, content in got.items() if content == b"/"} == folders
    notes = got.pop("ERRORS.txt").decode()
    assert set(got) == folders, got.keys()
    assert "tree/a/link: a link (to /etc/passwd), not followed" in notes
    assert "tree/a/fifo: not a regular file" in notes
    assert "tree/bad-\N{REPLACEMENT CHARACTER}.txt: left out: its name is not UTF-8" in notes
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("tree/a/one.txt")
        assert info.external_attr >> 16 == 0o100640
        assert info.flag_bits & 0x08  # (sizes after the data: nothing written twice)
        assert archive.getinfo("tree/Ünïcødé 名前/ĉu.txt").flag_bits & 0x800  # (UTF-8)
    if sys.platform == "linux":
        require("unzip")
        saved = server.root.parent / "tree.zip"
        saved.write_bytes(data)
        tested = subprocess.run(["unzip", "-t", str(saved)], capture_output=True, timeout=60)
        assert tested.returncode == 0, tested.stdout + tested.stderr
    reply = _request(server, "/api/v1/files/share/tree/?zip", _auth("root", PASSWORD))
    reply.read()
    disposition = reply.getheader("Content-Disposition") or ""
    assert disposition.endswith("filename*=UTF-8''tree.zip"), disposition
    utf8 = _request(server, "/api/v1/files/share/tree/" + quote("Ünïcødé 名前") + "?zip",
                    _auth("root", PASSWORD))  # fmt: skip
    utf8.read()
    assert (utf8.getheader("Content-Disposition") or "").endswith(
        "filename*=UTF-8''" + quote("Ünïcødé 名前.zip", safe="")
    )
    root_zip = _request(server, "/api/v1/files/?zip", _auth("root", PASSWORD))
    root_zip.close()
    assert (root_zip.getheader("Content-Disposition") or "").endswith("''files.zip")
    assert wait_until(lambda: 'op=zip path="/share/tree"' in server_log(server), 10)


def test_a_sparse_file_over_4_gib_streams_in_bounded_memory_as_zip64(server: Server) -> None:
    """A 4.5 GiB sparse file: the archive is read in a loop (saved sparse), the
    server's resident memory stays within 200 MiB of where it began, and the entry
    reads back whole (ZIP64 sizes and offsets) with zipfile and ``unzip -t``."""
    top = server.root / "share" / "big"
    top.mkdir()
    size = 4 * GiB + GiB // 2
    with open(top / "sparse.bin", "wb") as out:
        out.truncate(size)
        out.seek(size - 5)
        out.write(b"tail!")
    (top / "after.txt").write_bytes(b"after the big one\n")
    before = _rss_kib(server.process.pid)
    peak = before
    saved = server.root.parent / "big.zip"
    reply = _request(server, "/api/v1/files/share/big/?zip", _auth("root", PASSWORD))
    assert reply.status == 200
    received = 0
    with open(saved, "wb") as out:
        while block := reply.read(MiB):
            if block.count(0) == len(block):
                out.seek(len(block), os.SEEK_CUR)  # (kept sparse on this side too)
            else:
                out.write(block)
            received += len(block)
            if received % (256 * MiB) < MiB:
                peak = max(peak, _rss_kib(server.process.pid))
        out.truncate()
    assert received > size
    assert (peak - before) < 200 * 1024, f"server RSS grew by {(peak - before) // 1024} MiB"
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("big/sparse.bin")
        assert info.file_size == size
        assert archive.read("big/after.txt") == b"after the big one\n"
        last, read = b"", 0
        with archive.open(info) as entry:  # (read to the end: the CRC is checked)
            while block := entry.read(16 * MiB):
                last, read = block, read + len(block)
        assert read == size and last.endswith(b"\0tail!")
    require("unzip")
    tested = subprocess.run(["unzip", "-tq", str(saved)], capture_output=True, timeout=600)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_reader_zips_and_a_file_is_400(server: Server) -> None:
    """A read-only user, jailed to /share, zips its root (named after its folder) and
    a subfolder; ``?zip`` of a file is 400 with a JSON error."""
    got = _contents(_zip(server, "/api/v1/files/?zip", "reader", READER_PASSWORD))
    assert got == {"share/": b"/", "share/docs/": b"/", "share/docs/readme.txt": b"shared text\n"}
    got = _contents(_zip(server, "/api/v1/files/docs/?zip", "reader", READER_PASSWORD))
    assert got == {"docs/": b"/", "docs/readme.txt": b"shared text\n"}
    reply = _request(server, "/api/v1/files/docs/readme.txt?zip", _auth("reader", READER_PASSWORD))
    error = json.loads(reply.read())
    assert reply.status == 400 and error["error"] == "not_a_directory", error
    assert "folder" in error["message"]
    missing = _request(server, "/api/v1/files/nope/?zip", _auth("reader", READER_PASSWORD))
    assert missing.status == 404 and json.loads(missing.read())["error"] == "not_found"
    anonymous = _request(server, "/api/v1/files/docs/?zip")
    anonymous.read()
    assert anonymous.status == 401


def test_a_jailed_user_never_reaches_outside_through_a_link(server: Server) -> None:
    """Links inside the jail that lead out (absolute, relative, to the outside folder
    by its host path) are left out, never followed; a zip asked through such a link
    resolves inside the jail like any path."""
    jail = server.root / "home" / "jailed"
    (jail / "mine").mkdir()
    (jail / "mine" / "own.txt").write_bytes(b"own\n")
    os.symlink(str(server.outside), jail / "mine" / "host-path")
    os.symlink("../../../../outside", jail / "mine" / "relative")
    os.symlink("/", jail / "mine" / "slash")
    os.symlink("../../..", jail / "escape")
    data = _zip(server, "/api/v1/files/mine/?zip", "walled", WALLED)
    assert b"outside secret" not in data
    got = _contents(data)
    assert got["mine/own.txt"] == b"own\n"
    assert set(got) == {"mine/", "mine/own.txt", "ERRORS.txt"}
    notes = got["ERRORS.txt"].decode()
    for name in ("host-path", "relative", "slash"):
        assert f"mine/{name}: a link" in notes, notes
    through = _zip(server, "/api/v1/files/escape/?zip", "walled", WALLED)
    assert b"outside secret" not in through
    assert "escape/mine/own.txt" in _contents(through)  # (the jail's own root)


def test_zip_through_a_share_link(server: Server) -> None:
    """A share link's folder zips without a login, named after the shared folder."""
    config = server.state.parent / "hoody-mount.toml"
    done = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "share", "create", "--config", str(config),
         "/share", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    link = "/s/" + json.loads(done.stdout)["secret"]
    got = _contents(_zip(server, link + "/?zip", user=""))
    assert got["share/docs/readme.txt"] == b"shared text\n"
    got = _contents(_zip(server, link + "/files/docs/?zip", user=""))
    assert got == {"docs/": b"/", "docs/readme.txt": b"shared text\n"}
    reply = _request(server, link + "/docs/readme.txt?zip")
    assert reply.status == 400 and json.loads(reply.read())["error"] == "not_a_directory"


def test_a_client_that_leaves_mid_zip_frees_the_server(server: Server) -> None:
    """A client that reads a little of a big archive and leaves: the server stops,
    logs the zip once, and answers the next request; the metrics count op zip."""
    top = server.root / "share" / "leave"
    top.mkdir()
    with open(top / "sparse.bin", "wb") as out:
        out.truncate(8 * GiB)
    for round_ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
        token = _auth("root", PASSWORD)["Authorization"]
        sock.sendall(
            f"GET /api/v1/files/share/leave/?zip HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {token}\r\n\r\n".encode()
        )
        got = 0
        while got < 16 * MiB:
            got += len(sock.recv(MiB))
        sock.close()
        assert wait_until(
            lambda n=round_: server_log(server).count('op=zip path="/share/leave"') > n, 20
        ), server_log(server)[-2000:]
    started = time.monotonic()
    assert _contents(_zip(server, "/api/v1/files/share/docs/?zip"))["docs/readme.txt"]
    assert time.monotonic() - started < 10
    metrics = _request(server, "/metrics", _auth("root", PASSWORD)).read().decode()
    assert 'op="zip"' in metrics, metrics[:2000]


class _Failing(OpenFile):
    """A file whose second read fails, as a disk error would."""

    def __init__(self) -> None:
        super().__init__(-1, "/x")
        self.reads = 0

    def stat(self) -> os.stat_result:
        return os.stat_result((0o100644, 1, 1, 1, 0, 0, 4 * MiB, 0, 0, 0))

    def read(self, offset: int, size: int) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise OSError(errno.EIO, "Input/output error")
        return b"x" * size


class _Tree:
    """Two items: a folder and a file that fails part-way."""

    def __init__(self, file: OpenFile) -> None:
        self.file = file

    def items(self) -> Iterator[Item]:
        folder = os.stat_result((0o40755, 1, 1, 1, 0, 0, 0, 0, 0, 0))
        yield Item("", FOLDER, folder)
        yield Item("f.bin", FILE, self.file.stat())

    def open(self, item: Item) -> OpenFile:
        return self.file


def test_a_read_that_fails_mid_file_never_ends_the_archive() -> None:
    """Once a file's entry has begun, a failing read raises out of the body (the
    server then drops the connection): the central directory is never written, so
    no reader takes the cut file for a whole one."""
    made = zips._Zip(_Tree(_Failing()), "top", lambda: False)  # type: ignore[arg-type]
    sent = []
    with pytest.raises(OSError) as failed:
        for piece in made.pieces():
            sent.append(piece)
    assert failed.value.errno == errno.EIO
    data = b"".join(sent)
    assert data and b"PK\x05\x06" not in data  # (no end of central directory)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data))


def test_names_extractors_could_misread_are_left_out_and_named(server: Server) -> None:
    """A backslash is a separator to extractors on Windows (``..\\..\\x`` would land
    outside their folder): such names are left out of the archive and named in its
    notes, as are names that are not UTF-8 (whose U+FFFD form could be another file's)."""
    top = server.root / "share" / "names"
    top.mkdir()
    (top / "..\\..\\evil.bat").write_bytes(b"evil\n")
    (top / "C:\\x.txt").write_bytes(b"drive\n")
    (top / "a\N{REPLACEMENT CHARACTER}.txt").write_bytes(b"the real one\n")
    with open(os.fsencode(str(top)) + b"/a\xff.txt", "wb") as out:
        out.write(b"impostor\n")
    got = _contents(_zip(server, "/api/v1/files/share/names/?zip"))
    notes = got.pop("ERRORS.txt").decode()
    assert got == {"names/": b"/", "names/a\N{REPLACEMENT CHARACTER}.txt": b"the real one\n"}
    assert "names/..\\..\\evil.bat: left out: its name holds a backslash" in notes
    assert "names/C:\\x.txt: left out: its name holds a backslash" in notes
    assert "names/a\N{REPLACEMENT CHARACTER}.txt: left out: its name is not UTF-8" in notes


def test_a_user_sends_two_zips_at_once_and_a_third_waits(server: Server) -> None:
    """Each archive keeps its index in memory until it ends: a user has two at once."""
    big = server.root / "share" / "big"
    big.mkdir()
    with open(big / "sparse.bin", "wb") as out:
        out.truncate(8 << 30)
    first = _request(server, "/api/v1/files/share/big/?zip", _auth("root", PASSWORD))
    second = _request(server, "/api/v1/files/share/big/?zip", _auth("root", PASSWORD))
    assert first.status == second.status == 200
    first.read(1 << 20), second.read(1 << 20)
    third = _request(server, "/api/v1/files/share/big/?zip", _auth("root", PASSWORD))
    body = json.loads(third.read())
    assert third.status == 503 and third.getheader("Retry-After")
    assert body["error"] == "busy" and "2 zips being sent" in body["message"]
    other = _request(server, "/api/v1/files/docs/?zip", _auth("reader", READER_PASSWORD))
    assert other.status == 200  # (another user is not held back)
    other.read()
    first.close(), second.close()
    deadline = time.monotonic() + 60
    while True:  # (the slots come back once the server sees the clients gone)
        again = _request(server, "/api/v1/files/share/docs/?zip", _auth("root", PASSWORD))
        again.read()
        if again.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.status == 200


def test_a_pseudo_filesystem_is_no_tree_to_zip(server: Server) -> None:
    proc = server.root / "share" / "proc"
    proc.mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    try:
        reply = _request(server, "/api/v1/files/share/proc/?zip", _auth("root", PASSWORD))
        body = json.loads(reply.read())
        assert reply.status == 400 and body["error"] == "pseudo_filesystem", body
    finally:
        subprocess.run(["umount", "-l", str(proc)], check=True)
