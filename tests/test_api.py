"""The HTTP file API (/api/v1/files/<path>) end to end, with curl and with http.client.

Every route is driven over a real server by two clients, curl and Python's ``http.client``,
good and bad requests alike; each test checks the status, the JSON and the disk under
``server.root``. Large transfers (a 5 GiB sparse download, 1 GiB uploads) run with the
server's peak memory (``VmHWM``) bounded, and the HTML listing is rendered in headless
Chromium. Every subprocess and every connection is bounded by a timeout.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
from browser import Browser
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    http_port,
    require,
    server_log,
    start_server,
    stop_server,
    tmpfs,
    wait_until,
    write_config,
)

PREFIX = "/api/v1/files"
MiB = 1 << 20
GiB = 1 << 30
BLOCK = MiB
MEMORY_BOUND = 300 * MiB  # the server idles at ~60-80 MB; buffering 1 GiB would blow this
ROOT = ("root", PASSWORD)
READER = ("reader", READER_PASSWORD)
ERROR_STATUSES = (400, 401, 403, 404, 405, 409, 411, 413, 416, 422, 507)

# Basic as (user, password), a Bearer token as a string, or no credentials at all.
Auth = tuple[str, str] | str | None


@dataclass
class Reply:
    """One HTTP answer: status, headers (lower-case names), body, bytes the client counted."""

    status: int
    headers: dict[str, str]
    body: bytes
    downloaded: int = -1
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """A header's value (the last one when repeated), or None."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON (it must be labelled as JSON)."""
        kind = self.header("content-type") or ""
        assert kind.startswith("application/json"), (self.status, kind, self.body[:300])
        return json.loads(self.body)

    def error(self, status: int, code: str | None = None) -> dict[str, Any]:
        """Assert a JSON error ``{"error", "message"}`` with this status (and code)."""
        assert self.status == status, (self.status, self.body[:500])
        data: dict[str, Any] = self.json()
        assert set(data) == {"error", "message"}, data
        assert isinstance(data["error"], str) and data["error"], data
        assert isinstance(data["message"], str) and data["message"], data
        if code is not None:
            assert data["error"] == code, data
        return data


Client = Callable[..., Reply]


def url_path(path: str) -> str:
    """The request target of a virtual path (quoted; a trailing slash kept)."""
    return PREFIX + quote(path)


def auth_headers(auth: Auth) -> dict[str, str]:
    """The Authorization header for ``auth``."""
    if auth is None:
        return {}
    if isinstance(auth, str):
        return {"Authorization": f"Bearer {auth}"}
    user, password = auth
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def http_request(
    server: Server,
    method: str,
    target: str,
    body: bytes | None = None,
    *,
    auth: Auth = ROOT,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> Reply:
    """One request with http.client (the target is sent exactly as given)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=timeout)
    try:
        all_headers = {**auth_headers(auth), **(headers or {})}
        if body is not None and "Content-Type" not in all_headers:
            all_headers["Content-Type"] = "application/octet-stream"
        conn.request(method, target, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        pairs = response.getheaders()
        return Reply(
            response.status, {k.lower(): v for k, v in pairs}, data, len(data), list(pairs)
        )
    finally:
        conn.close()


def _parse_curl_headers(text: str) -> tuple[int, list[tuple[str, str]]]:
    """Status and headers of the last response block curl dumped (after any 100 Continue)."""
    blocks = [b for b in re.split(r"\r?\n\r?\n", text) if b.strip().startswith("HTTP/")]
    assert blocks, text
    lines = blocks[-1].strip().splitlines()
    status = int(lines[0].split()[1])
    pairs = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return status, pairs


def curl_request(
    server: Server,
    method: str,
    target: str,
    body: bytes | None = None,
    *,
    auth: Auth = ROOT,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
    upload: Path | None = None,
    output: Path | None = None,
) -> Reply:
    """One request with curl (``--path-as-is``: the target is sent exactly as given).

    ``upload`` sends a file with ``-T``; ``output`` keeps the body on disk (``/dev/null``
    to drop it) instead of returning it.
    """
    require("curl")
    with tempfile.TemporaryDirectory(prefix="hoody-curl-") as tmp:
        head, out = Path(tmp) / "head", output or Path(tmp) / "body"
        args = [
            "curl", "-sS", "--path-as-is", "--max-time", str(timeout),
            "-D", str(head), "-o", str(out), "-w", "%{http_code} %{size_download}",
        ]  # fmt: skip
        args += ["--head"] if method == "HEAD" else ["-X", method]
        extra = dict(headers or {})
        if body is not None:
            data = Path(tmp) / "data"
            data.write_bytes(body)
            args += ["--data-binary", f"@{data}"]
            extra.setdefault("Content-Type", "application/octet-stream")
        if upload is not None:
            args += ["-T", str(upload)]
        if isinstance(auth, tuple):
            args += ["-u", f"{auth[0]}:{auth[1]}"]
        else:
            extra.update(auth_headers(auth))
        for name, value in extra.items():
            args += ["-H", f"{name}: {value}"]
        args.append(server.url + target)
        result = subprocess.run(args, capture_output=True, timeout=timeout + 15)
        assert result.returncode == 0, (args, result.returncode, result.stderr[-2000:])
        code, size = result.stdout.decode().split()
        status, pairs = _parse_curl_headers(head.read_text(errors="replace"))
        assert status == int(code), (status, code)
        data_out = b"" if output is not None else (out.read_bytes() if out.exists() else b"")
        if method == "HEAD":  # --head writes the headers to -o as well: no body to return
            data_out = b""
        return Reply(status, {k.lower(): v for k, v in pairs}, data_out, int(size), pairs)


@pytest.fixture(params=["curl", "http.client"])
def client(request: pytest.FixtureRequest) -> Client:
    """Each test that takes ``client`` runs once with curl and once with http.client."""
    if request.param == "curl":
        require("curl")
        return curl_request
    return http_request


def part_files(folder: Path) -> list[str]:
    """Upload temp files (``.<name>.hoody-<hex>.part``) anywhere under ``folder``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + dirnames:
            if re.fullmatch(r"\..*\.hoody-[0-9a-f]+\.part", name):
                found.append(os.path.join(dirpath, name))
    return found


def snapshot(folder: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under ``folder``: kind, mode, size, mtime and content (or link target)."""
    state: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                extra: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                extra = None
            state[os.path.relpath(path, folder)] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
                st.st_mtime_ns, extra,
            )  # fmt: skip
    st = os.lstat(folder)
    state["."] = (st.st_mtime_ns,)
    return state


def digest_header(data: bytes) -> str:
    """``sha-256=:<base64>:`` of ``data`` (RFC 9530)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def zeros_sha256(size: int) -> bytes:
    """SHA-256 of ``size`` zero bytes, computed in 1 MiB steps."""
    hasher = hashlib.sha256()
    block = bytes(BLOCK)
    full, rest = divmod(size, BLOCK)
    for _ in range(full):
        hasher.update(block)
    hasher.update(bytes(rest))
    return hasher.digest()


def proc_io(pid: int) -> dict[str, int]:
    """The counters of /proc/<pid>/io (``rchar``: bytes the process read, all threads)."""
    counters = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        counters[name] = int(value)
    return counters


def peak_memory(pid: int) -> int:
    """VmHWM (peak resident set) of a process, in bytes."""
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, f"no VmHWM for {pid}"
    return int(match.group(1)) * 1024


def raw_exchange(server: Server, request_line: str, auth: Auth, extra: str = "") -> bytes:
    """Send one request head over a raw socket (Connection: close); all the server sent."""
    lines = request_line + "Host: 127.0.0.1\r\nConnection: close\r\n"
    for name, value in auth_headers(auth).items():
        lines += f"{name}: {value}\r\n"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall((lines + extra + "\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def token_cli(server: Server, *args: str) -> str:
    """Run ``hoody-mount token ARGS --config <the server's config>``; its stdout."""
    config = server.root.parent / "hoody-mount.toml"
    assert config.exists(), config
    result = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "token", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout.strip()


# --------------------------------------------------------------------------- reading


def test_get_and_head_a_file(server: Server, client: Client) -> None:
    """GET streams the file with its headers; HEAD gives the same headers and no body."""
    data = os.urandom(300_000) + b"end"
    path = server.root / "share" / "docs" / "data.bin"
    path.write_bytes(data)
    st = path.stat()

    got = client(server, "GET", url_path("/share/docs/data.bin"))
    assert got.status == 200, got
    assert got.body == data
    assert got.header("content-length") == str(len(data))
    assert got.header("content-type") == "application/octet-stream"
    assert got.header("accept-ranges") == "bytes"
    assert got.header("repr-digest") == digest_header(data)
    assert got.header("x-content-type-options") == "nosniff"
    etag = got.header("etag")
    assert etag and re.fullmatch(r'"[^"]+"', etag), etag
    modified = got.header("last-modified")
    assert modified and modified.endswith(" GMT"), modified
    assert modified == time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(st.st_mtime))

    head = client(server, "HEAD", url_path("/share/docs/data.bin"))
    assert head.status == 200, head
    assert head.body == b"" and head.downloaded == 0
    raw = raw_exchange(server, f"HEAD {url_path('/share/docs/data.bin')} HTTP/1.1\r\n", ROOT)
    status_line, _, after_headers = raw.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), raw[:300]
    assert after_headers == b"", "HEAD sent a body"
    for name in ("content-length", "content-type", "etag", "last-modified", "accept-ranges"):
        assert head.header(name) == got.header(name), name
    assert head.header("repr-digest") == digest_header(data)

    text = client(server, "GET", url_path("/share/docs/readme.txt"))
    assert text.status == 200 and text.body == b"shared text\n"
    assert (text.header("content-type") or "").startswith("text/plain")

    client(server, "GET", url_path("/share/docs/missing.txt")).error(404, "not_found")
    missing_head = client(server, "HEAD", url_path("/share/docs/missing.txt"))
    assert missing_head.status == 404 and missing_head.body == b""
    # (a name below a file is not found, as over WebDAV: it was 409)
    client(server, "GET", url_path("/share/docs/readme.txt/child")).error(404, "not_found")

    anonymous = client(server, "GET", url_path("/share/docs/data.bin"), auth=None)
    anonymous.error(401)
    assert (anonymous.header("www-authenticate") or "").startswith("Basic")
    assert data[:64] not in anonymous.body
    wrong = client(server, "GET", url_path("/share/docs/data.bin"), auth=("root", "wrong"))
    wrong.error(401)
    assert data[:64] not in wrong.body
    client(server, "GET", url_path("/share/docs/data.bin"), auth=("nobody", "x")).error(401)
    client(server, "GET", "/api/v1/nothing-here").error(404)
    client(server, "PATCH", url_path("/share/docs/data.bin")).error(405)


def test_sha256_query_and_digest_changes(server: Server, client: Client) -> None:
    """``?sha256`` answers {path, size, sha256}; a changed file gets a new digest."""
    path = server.root / "share" / "docs" / "sum.txt"
    path.write_bytes(b"first version\n")
    got = client(server, "GET", url_path("/share/docs/sum.txt") + "?sha256")
    assert got.status == 200, got
    assert got.json() == {
        "path": "/share/docs/sum.txt",
        "size": 14,
        "sha256": hashlib.sha256(b"first version\n").hexdigest(),
    }
    assert got.header("repr-digest") == digest_header(b"first version\n")

    with path.open("ab") as handle:  # grows: size and content change
        handle.write(b"appended\n")
    grown = client(server, "GET", url_path("/share/docs/sum.txt") + "?sha256").json()
    assert grown["size"] == 23
    assert grown["sha256"] == hashlib.sha256(b"first version\nappended\n").hexdigest()

    time.sleep(0.05)  # a same-size rewrite, a little later (coarse kernel timestamps)
    path.write_bytes(b"FIRST VERSION\nAPPENDED\n")
    rewritten = client(server, "GET", url_path("/share/docs/sum.txt") + "?sha256").json()
    assert rewritten["sha256"] == hashlib.sha256(b"FIRST VERSION\nAPPENDED\n").hexdigest()
    full = client(server, "GET", url_path("/share/docs/sum.txt"))
    assert full.header("repr-digest") == digest_header(b"FIRST VERSION\nAPPENDED\n")

    replaced = server.root / "share" / "docs" / "sum.new"
    replaced.write_bytes(b"replaced by rename\n")
    os.replace(replaced, path)
    renamed = client(server, "GET", url_path("/share/docs/sum.txt") + "?sha256").json()
    assert renamed["sha256"] == hashlib.sha256(b"replaced by rename\n").hexdigest()

    empty = server.root / "share" / "empty"
    empty.write_bytes(b"")
    assert client(server, "GET", url_path("/share/empty") + "?sha256").json() == {
        "path": "/share/empty",
        "size": 0,
        "sha256": hashlib.sha256(b"").hexdigest(),
    }
    client(server, "GET", url_path("/share/docs") + "?sha256").error(400)
    client(server, "GET", url_path("/share/docs/nope") + "?sha256").error(404, "not_found")


def test_sha256_progress_says_how_far_a_digest_has_come(server: Server) -> None:
    """``?sha256&progress`` answers at once: null before a digest is asked for, the
    bytes hashed so far while one is computed, the whole size and the digest after."""
    big = server.root / "share" / "data-1g.bin"
    hasher = hashlib.sha256()
    block = os.urandom(16 * MiB)
    with big.open("wb") as handle:
        for _ in range(64):
            handle.write(block)
            hasher.update(block)
    size = 1024 * MiB
    target = url_path("/share/data-1g.bin")
    before = http_request(server, "GET", target + "?sha256&progress").json()
    assert before == {"path": "/share/data-1g.bin", "size": size, "hashed": None, "sha256": None}
    seen: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        digest = pool.submit(http_request, server, "GET", target + "?sha256", timeout=300)
        while not digest.done():
            hashed = http_request(server, "GET", target + "?sha256&progress").json()["hashed"]
            if hashed is not None:
                seen.append(hashed)
        assert digest.result().json()["sha256"] == hasher.hexdigest()
    assert any(0 <= hashed < size for hashed in seen), seen
    assert seen == sorted(seen), "the progress went backwards"
    after = http_request(server, "GET", target + "?sha256&progress").json()
    assert after == {
        "path": "/share/data-1g.bin", "size": size, "hashed": size, "sha256": hasher.hexdigest()
    }  # fmt: skip


def test_sha256_of_a_large_file_is_cached(server: Server) -> None:
    """A 256 MiB file is read once for its digest; asking again reads nothing of it.
    (Its data is real: the holes of a sparse file are hashed without being read.)"""
    require("curl")
    big = server.root / "share" / "data-256m.bin"
    hasher = hashlib.sha256()
    with big.open("wb") as handle:
        for _ in range(16):
            block = os.urandom(16 * MiB)
            handle.write(block)
            hasher.update(block)
    size = 256 * MiB
    expected = hasher.hexdigest()
    pid = server.process.pid
    target = url_path("/share/data-256m.bin") + "?sha256"

    before = proc_io(pid)["rchar"]
    first = http_request(server, "GET", target, timeout=300)
    after_first = proc_io(pid)["rchar"]
    assert first.status == 200, first
    assert first.json() == {"path": "/share/data-256m.bin", "size": size, "sha256": expected}
    assert after_first - before >= size, "the first digest must read the whole file"

    second = curl_request(server, "GET", target, timeout=300)
    after_second = proc_io(pid)["rchar"]
    assert second.json() == first.json()
    assert after_second - after_first < 16 * MiB, (
        f"the second ?sha256 read {after_second - after_first} bytes: the digest is not cached"
    )

    ranged = http_request(
        server, "GET", url_path("/share/data-256m.bin"), headers={"Range": "bytes=0-9"}
    )
    after_range = proc_io(pid)["rchar"]
    assert ranged.status == 206 and ranged.body == big.read_bytes()[:10]
    expected_header_value = base64.b64encode(bytes.fromhex(expected)).decode()
    assert ranged.header("repr-digest") == f"sha-256=:{expected_header_value}:"
    assert after_range - after_second < 16 * MiB, "a ranged GET re-read the file for its digest"

    with big.open("r+b") as handle:  # one byte changes: the digest must follow
        handle.seek(size // 2)
        handle.write(b"\x01")
    changed = http_request(server, "GET", target, timeout=300).json()
    assert changed["sha256"] != expected
    hasher = hashlib.sha256(big.read_bytes())
    assert changed["sha256"] == hasher.hexdigest()


def test_a_range_of_a_big_file_does_not_hash_the_whole_file(server: Server) -> None:
    """A 10-byte range of a 64 MiB file whose digest is not known yet is sent at once,
    without Repr-Digest (the whole file was read for it first); a small file's range
    still carries it."""
    big = server.root / "share" / "big-64m.bin"
    with big.open("wb") as handle:
        for _ in range(4):
            handle.write(os.urandom(16 * MiB))
    pid = server.process.pid
    before = proc_io(pid)["rchar"]
    ranged = http_request(
        server, "GET", url_path("/share/big-64m.bin"), headers={"Range": "bytes=0-9"}
    )
    assert ranged.status == 206 and ranged.body == big.read_bytes()[:10]
    assert ranged.header("repr-digest") is None
    assert proc_io(pid)["rchar"] - before < 16 * MiB, "the range read the whole file"


# --------------------------------------------------------------------------- folders


def test_list_folder_json_and_paging(server: Server, client: Client) -> None:
    """``?json`` or ``Accept: application/json`` list entries; limit/after/next page them."""
    folder = server.root / "share" / "list"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"abc")
    (folder / "b.bin").write_bytes(b"x" * 1000)
    (folder / "b.bin").chmod(0o640)
    (folder / "sub").mkdir()
    (folder / "sub").chmod(0o750)
    (folder / "link").symlink_to("a.txt")
    (folder / "dangling").symlink_to("no-such-file")
    os.mkfifo(folder / "pipe")
    (folder / "ünïcødé name.md").write_text("u")
    names = sorted(os.listdir(folder), key=os.fsencode)

    got = client(server, "GET", url_path("/share/list") + "?json")
    assert got.status == 200, got
    data = got.json()
    assert data["path"] == "/share/list" and data["type"] == "directory"
    assert data["next"] is None
    listed = [e["name"] for e in data["entries"]]  # in the folder's own order
    assert sorted(listed, key=os.fsencode) == names
    by_name = {e["name"]: e for e in data["entries"]}
    for name, entry in by_name.items():
        st = os.lstat(folder / name)
        assert entry["size"] == st.st_size, entry
        assert abs(entry["mtime"] - st.st_mtime) < 1e-3, entry
        assert entry["mode"] == f"{stat.S_IMODE(st.st_mode):04o}", entry
    assert by_name["a.txt"]["type"] == "file" and by_name["a.txt"]["size"] == 3
    assert by_name["b.bin"]["mode"] == "0640"
    assert by_name["sub"]["type"] == "directory" and by_name["sub"]["mode"] == "0750"
    assert by_name["link"]["type"] == "symlink" and by_name["link"]["target"] == "a.txt"
    assert by_name["dangling"]["target"] == "no-such-file"
    assert by_name["pipe"]["type"] == "fifo"
    assert "target" not in by_name["a.txt"]
    for entry in data["entries"]:
        assert set(entry) <= {"name", "href", "type", "size", "mtime", "mode", "target"}, entry
        assert entry["href"] == "/api/v1/files/share/list/" + quote(entry["name"]), entry

    accept = client(server, "GET", url_path("/share/list/"), headers={"Accept": "application/json"})
    assert accept.status == 200 and accept.json()["entries"] == data["entries"]

    pages: list[str] = []
    cursor = ""
    for _ in range(len(names) + 2):
        query = "?json&limit=3" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = client(server, "GET", url_path("/share/list") + query).json()
        assert len(page["entries"]) <= 3
        pages.extend(e["name"] for e in page["entries"])
        if page["next"] is None:
            break
        assert page["entries"], page  # a page that says there is more has some
        cursor = page["next"]  # (opaque: passed back as it is)
    assert pages == listed  # each name once, in the same order as one big page
    one = client(server, "GET", url_path("/share/list") + "?json&limit=1").json()
    assert [e["name"] for e in one["entries"]] == listed[:1] and one["next"]
    sub_page = client(server, "GET", url_path("/share/list/sub") + "?json").json()
    for bad in (
        "after=a.txt",  # the old name-based cursor: refused with what to use instead
        "cursor=nonsense",
        "cursor=12",
        f"cursor={quote(one['next'].split('.')[0])}.zz",
    ):
        client(server, "GET", url_path("/share/list") + f"?json&{bad}").error(400)
    inode = one["next"].split(".")[0]
    for position in ("8000000000000000", "ffffffffffffffff", "-1", "+1", "0x1", "1_0"):
        # past a folder offset's range (an OverflowError: 500 before) or not in its form
        bad = f"cursor={quote(inode)}.{quote(position)}"
        client(server, "GET", url_path("/share/list") + f"?json&{bad}").error(400, "bad_cursor")
    # a cursor of one folder is refused by another
    other = client(server, "GET", url_path("/share/list/sub") + f"?json&cursor={one['next']}")
    other.error(400, "bad_cursor")
    assert sub_page["entries"] == [] and sub_page["next"] is None

    for suffix in ("", "?sha256"):  # a FIFO is listed but never opened (that would hang)
        client(server, "GET", url_path("/share/list/pipe") + suffix, timeout=20).error(409)
    for bad in ("limit=0", "limit=abc", "limit=-1", "limit=100001"):
        client(server, "GET", url_path("/share/list") + f"?json&{bad}").error(400)
    client(server, "GET", url_path("/share/nope") + "?json").error(404, "not_found")

    page = client(server, "GET", url_path("/share/list/"))
    assert page.status == 200
    assert (page.header("content-type") or "").startswith("text/html")
    assert "default-src 'none'" in (page.header("content-security-policy") or "")
    assert page.header("x-content-type-options") == "nosniff"
    html_text = page.body.decode()
    for name in names:
        assert name in html_text, name
    both = client(
        server, "GET", url_path("/share/list/"), headers={"Accept": "text/html,application/json"}
    )
    assert (both.header("content-type") or "").startswith("text/html")


def test_paging_reaches_names_that_are_not_utf8(server: Server, client: Client) -> None:
    """Pages of one entry walk a folder whose names are not all UTF-8 to its end, each
    name exactly once (the cursor turned such bytes into U+FFFD, and every page after
    it returned the same entry); each entry's href reaches its file."""
    folder = os.fsencode(server.root / "share" / "raw")
    os.mkdir(folder)
    raw_names = [b"a", b"b\xff", b"b\xffz", b"c\xfe\xfd", "d é".encode(), b"e%20f"]
    for name in raw_names:
        with open(folder + b"/" + name, "wb") as handle:
            handle.write(b"content of " + name)
    seen: list[bytes] = []
    cursor = ""
    for _ in range(len(raw_names) + 2):
        query = "?json&limit=1" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = client(server, "GET", url_path("/share/raw") + query).json()
        for entry in page["entries"]:
            name = unquote_to_bytes(entry["href"].rsplit("/", 1)[1])
            seen.append(name)
            got = client(server, "GET", entry["href"])
            assert got.status == 200 and got.body == b"content of " + name, entry
        if page["next"] is None:
            break
        cursor = page["next"]
    assert sorted(seen) == sorted(raw_names), seen  # each exactly once


def test_active_content_never_runs_in_the_origin(server: Server, client: Client) -> None:
    """Uploaded HTML/SVG is served as a sandboxed attachment that is never sniffed."""
    bodies = {
        "/share/page.html": b"<html><script>alert(document.cookie)</script></html>",
        "/share/pic.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "/share/doc.xhtml": b'<html xmlns="http://www.w3.org/1999/xhtml"><script>1</script></html>',
        "/share/fake.txt": b"<html><script>alert(1)</script></html>",
    }
    for path, body in bodies.items():
        put = client(server, "PUT", url_path(path), body)
        assert put.status == 201, put
    for path in ("/share/page.html", "/share/pic.svg", "/share/doc.xhtml"):
        for method in ("GET", "HEAD"):
            got = client(server, method, url_path(path))
            assert got.status == 200, got
            assert (got.header("content-disposition") or "").startswith("attachment"), got
            assert got.header("content-security-policy") == "sandbox", got
            assert got.header("x-content-type-options") == "nosniff", got
    fake = client(server, "GET", url_path("/share/fake.txt"))
    assert (fake.header("content-type") or "").startswith("text/plain")
    assert fake.header("x-content-type-options") == "nosniff"


# --------------------------------------------------------------------------- writing


def test_put_creates_and_replaces(server: Server, client: Client) -> None:
    """PUT answers 201 then 200 with the digest; the disk holds exactly the body."""
    first = b"version one\n" * 1000
    created = client(server, "PUT", url_path("/share/docs/new.txt"), first)
    assert created.status == 201, created
    assert created.json() == {
        "path": "/share/docs/new.txt",
        "size": len(first),
        "sha256": hashlib.sha256(first).hexdigest(),
    }
    assert created.header("repr-digest") == digest_header(first)
    assert created.header("etag")
    target = server.root / "share" / "docs" / "new.txt"
    assert target.read_bytes() == first

    target.chmod(0o640)
    inode = target.stat().st_ino
    second = os.urandom(70_000)
    replaced = client(server, "PUT", url_path("/share/docs/new.txt"), second)
    assert replaced.status == 200, replaced
    assert replaced.json()["sha256"] == hashlib.sha256(second).hexdigest()
    assert target.read_bytes() == second
    assert stat.S_IMODE(target.stat().st_mode) == 0o640, "PUT must keep the file's mode"
    assert target.stat().st_ino != inode, "the new content is renamed into place"
    got = client(server, "GET", url_path("/share/docs/new.txt"))
    assert got.body == second and got.header("repr-digest") == digest_header(second)
    assert got.header("etag") == replaced.header("etag")

    empty = client(server, "PUT", url_path("/share/empty.bin"), b"")
    assert empty.status == 201 and empty.json()["size"] == 0
    assert (server.root / "share" / "empty.bin").read_bytes() == b""

    odd = "/share/spaced name #1 ü.txt"
    assert client(server, "PUT", url_path(odd), b"odd").status == 201
    assert (server.root / "share" / "spaced name #1 ü.txt").read_bytes() == b"odd"

    client(server, "PUT", url_path("/share/no/such/dir/f.txt"), b"x").error(409)
    assert not (server.root / "share" / "no").exists()
    client(server, "PUT", url_path("/share/docs"), b"x").error(409)
    assert (server.root / "share" / "docs").is_dir()
    client(server, "PUT", url_path("/share/docs/readme.txt/x"), b"x").error(409)
    assert part_files(server.root) == []


HEADER_FORMS = ("x-expected-sha256", "content-digest", "repr-digest")


def expected_header(form: str, data: bytes) -> dict[str, str]:
    """The header that announces ``data``'s SHA-256 in one of the three forms."""
    if form == "x-expected-sha256":
        return {"X-Expected-SHA256": hashlib.sha256(data).hexdigest()}
    name = "Content-Digest" if form == "content-digest" else "Repr-Digest"
    return {name: digest_header(data)}


@pytest.mark.parametrize("form", HEADER_FORMS)
def test_put_digest_verification(server: Server, client: Client, form: str) -> None:
    """A matching digest is accepted; a mismatch is 422 with the old file untouched."""
    target = server.root / "share" / "docs" / "checked.bin"
    old = b"the old content\n"
    target.write_bytes(old)
    body = os.urandom(200_000)

    bad = client(
        server,
        "PUT",
        url_path("/share/docs/checked.bin"),
        body,
        headers=expected_header(form, b"something else"),
    )
    bad.error(422, "digest_mismatch")
    assert target.read_bytes() == old
    assert part_files(server.root) == []
    fresh = client(
        server,
        "PUT",
        url_path("/share/docs/never.bin"),
        body,
        headers=expected_header(form, b"something else"),
    )
    fresh.error(422, "digest_mismatch")
    assert not (server.root / "share" / "docs" / "never.bin").exists()

    good = client(
        server,
        "PUT",
        url_path("/share/docs/checked.bin"),
        body,
        headers=expected_header(form, body),
    )
    assert good.status == 200, good
    assert good.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert good.header("repr-digest") == digest_header(body)
    assert target.read_bytes() == body
    assert part_files(server.root) == []


MALFORMED_DIGESTS = (
    {"X-Expected-SHA256": "not-hex"},
    {"X-Expected-SHA256": "ab" * 31},
    {"X-Expected-SHA256": "zz" * 32},
    {"Content-Digest": "md5=:1B2M2Y8AsgTpgAmY7PhCfg==:"},
    {"Content-Digest": "sha-256=:abc:"},
    {"Content-Digest": "sha-256=:AAAA:"},
    {"Repr-Digest": "sha-256=:!!!notbase64!!!:"},
    {"Repr-Digest": "sha-256=" + hashlib.sha256(b"x").hexdigest()},
)


def test_put_malformed_digest_is_400(server: Server, client: Client) -> None:
    """A digest header that cannot be read is refused with 400 before anything changes."""
    target = server.root / "share" / "docs" / "readme.txt"
    for header in MALFORMED_DIGESTS:
        reply = client(server, "PUT", url_path("/share/docs/readme.txt"), b"new", headers=header)
        reply.error(400)
        assert target.read_bytes() == b"shared text\n", header
        created = client(server, "PUT", url_path("/share/docs/created.txt"), b"n", headers=header)
        created.error(400)
        assert not (server.root / "share" / "docs" / "created.txt").exists(), header
    assert part_files(server.root) == []

    body = b"upper-case hex and a list of digests"
    upper = {"X-Expected-SHA256": hashlib.sha256(body).hexdigest().upper()}
    assert client(server, "PUT", url_path("/share/u.txt"), body, headers=upper).status == 201
    listed = {
        "Content-Digest": f"sha-512=:{base64.b64encode(bytes(64)).decode()}:, "
        + digest_header(body)
    }
    assert client(server, "PUT", url_path("/share/u.txt"), body, headers=listed).status == 200
    assert (server.root / "share" / "u.txt").read_bytes() == body


def test_mkdir_and_delete(server: Server, client: Client) -> None:
    """POST ?mkdir makes a folder; DELETE removes files, empty folders, trees with ?recursive."""
    share = server.root / "share"
    made = client(server, "POST", url_path("/share/new") + "?mkdir")
    assert made.status == 201, made
    assert made.json() == {"path": "/share/new", "type": "directory"}
    assert (share / "new").is_dir()
    client(server, "POST", url_path("/share/new") + "?mkdir").error(409, "exists")
    client(server, "POST", url_path("/share/docs/readme.txt") + "?mkdir").error(409)
    # (a missing parent is a conflict, as for PUT and WebDAV's MKCOL: it was 404)
    client(server, "POST", url_path("/share/none/deeper") + "?mkdir").error(409, "no_parent")
    assert not (share / "none").exists()

    (share / "tree" / "a" / "b").mkdir(parents=True)
    (share / "tree" / "a" / "b" / "f.txt").write_text("f")
    (share / "tree" / "top.txt").write_text("t")
    (share / "tree" / "link").symlink_to(server.root / "share" / "docs")

    deleted = client(server, "DELETE", url_path("/share/tree/top.txt"))
    assert deleted.status == 204 and deleted.body == b""
    assert not (share / "tree" / "top.txt").exists()
    client(server, "DELETE", url_path("/share/tree/top.txt")).error(404, "not_found")

    client(server, "DELETE", url_path("/share/tree")).error(409, "not_empty")
    assert (share / "tree" / "a" / "b" / "f.txt").exists()

    link = client(server, "DELETE", url_path("/share/tree/link"))
    assert link.status == 204
    assert not (share / "tree" / "link").is_symlink()
    assert (share / "docs" / "readme.txt").read_text() == "shared text\n", "link target kept"

    assert client(server, "DELETE", url_path("/share/new")).status == 204
    assert not (share / "new").exists()
    recursive = client(server, "DELETE", url_path("/share/tree") + "?recursive")
    assert recursive.status == 204
    assert not (share / "tree").exists()
    assert (share / "docs" / "readme.txt").exists()


def post_json(client: Client, server: Server, path: str, data: Any, **kw: Any) -> Reply:
    """POST a JSON document to a file's URL."""
    body = json.dumps(data).encode()
    return client(
        server, "POST", url_path(path), body, headers={"Content-Type": "application/json"}, **kw
    )


def test_move_or_copy_onto_a_hard_link_of_the_source_is_refused(
    server: Server, client: Client
) -> None:
    """rename(2) of two names of one file does nothing yet succeeds: a move (or copy)
    with overwrite onto a hard link of the source is refused with the reason, both
    names left as they were, as WebDAV's MOVE and COPY refuse it (403)."""
    folder = server.root / "share" / "hl"
    folder.mkdir()
    (folder / "f").write_text("data\n")
    os.link(folder / "f", folder / "g")
    for action in ("move", "copy"):
        request = {"action": action, "to": "/share/hl/g", "overwrite": True}
        refused = post_json(client, server, "/share/hl/f", request)
        message = refused.error(400, "invalid")["message"]
        assert "same file" in message and message.endswith("/share/hl/g"), message
        assert (folder / "f").stat().st_ino == (folder / "g").stat().st_ino
        assert (folder / "f").read_text() == "data\n"
    for method in ("MOVE", "COPY"):
        status, _ = basic_request(
            server.http_port, method, "/dav/share/hl/f", "root", PASSWORD,
            Destination=f"{server.url}/dav/share/hl/g", Overwrite="T",
        )  # fmt: skip
        assert status == 403, method
    assert (folder / "f").exists() and (folder / "g").exists()
    (folder / "h").write_text("other\n")  # (another file is still replaced)
    moved = post_json(client, server, "/share/hl/h", {"action": "move", "to": "/share/hl/g",
                                                      "overwrite": True})  # fmt: skip
    assert moved.status == 200, moved
    assert (folder / "g").read_text() == "other\n" and (folder / "f").read_text() == "data\n"


def test_move_and_copy(server: Server, client: Client) -> None:
    """POST {"action": "move"|"copy", "to"} moves or copies files and trees."""
    share = server.root / "share"
    (share / "a.txt").write_text("alpha")
    (share / "b.txt").write_text("beta")

    moved = post_json(client, server, "/share/a.txt", {"action": "move", "to": "/share/c.txt"})
    assert moved.status == 200, moved
    assert moved.json() == {"path": "/share/c.txt", "action": "move"}
    assert not (share / "a.txt").exists() and (share / "c.txt").read_text() == "alpha"

    refused = post_json(client, server, "/share/c.txt", {"action": "move", "to": "/share/b.txt"})
    refused.error(409)
    assert (share / "c.txt").read_text() == "alpha" and (share / "b.txt").read_text() == "beta"
    over = post_json(
        client, server, "/share/c.txt", {"action": "move", "to": "/share/b.txt", "overwrite": True}
    )
    assert over.status == 200
    assert not (share / "c.txt").exists() and (share / "b.txt").read_text() == "alpha"

    copied = post_json(client, server, "/share/b.txt", {"action": "copy", "to": "/share/d.txt"})
    assert copied.status == 200 and copied.json() == {"path": "/share/d.txt", "action": "copy"}
    assert (share / "b.txt").read_text() == "alpha" and (share / "d.txt").read_text() == "alpha"
    (share / "e.txt").write_text("echo")
    post_json(client, server, "/share/b.txt", {"action": "copy", "to": "/share/e.txt"}).error(409)
    assert (share / "e.txt").read_text() == "echo"
    forced = post_json(
        client, server, "/share/b.txt", {"action": "copy", "to": "/share/e.txt", "overwrite": True}
    )
    assert forced.status == 200 and (share / "e.txt").read_text() == "alpha"

    (share / "docs" / "deep" / "er").mkdir(parents=True)
    (share / "docs" / "deep" / "er" / "x.bin").write_bytes(b"\x00\x01" * 5000)
    tree = post_json(client, server, "/share/docs", {"action": "copy", "to": "/share/docs2"})
    assert tree.status == 200, tree
    assert (share / "docs2" / "readme.txt").read_text() == "shared text\n"
    assert (share / "docs2" / "deep" / "er" / "x.bin").read_bytes() == b"\x00\x01" * 5000
    assert (share / "docs" / "deep" / "er" / "x.bin").exists()
    folder = post_json(client, server, "/share/docs2", {"action": "move", "to": "/home/docs3"})
    assert folder.status == 200
    assert not (share / "docs2").exists()
    assert (server.root / "home" / "docs3" / "deep" / "er" / "x.bin").exists()

    itself = post_json(
        client, server, "/share/b.txt", {"action": "copy", "to": "/share/b.txt", "overwrite": True}
    )
    assert itself.status in (200, 400, 409), itself
    assert (share / "b.txt").read_text() == "alpha", "a copy onto itself lost the content"
    (share / "loop" / "in").mkdir(parents=True)
    (share / "loop" / "in" / "f").write_text("f")
    before_loop = snapshot(share / "loop")
    into = post_json(client, server, "/share/loop", {"action": "copy", "to": "/share/loop/in/c"})
    into.error(400)
    inside = post_json(client, server, "/share/loop", {"action": "move", "to": "/share/loop/in/m"})
    assert "into itself" in inside.error(400)["message"]  # ("Invalid argument: m" before)
    assert snapshot(share / "loop") == before_loop
    over_folder = {"action": "move", "to": "/share/loop", "overwrite": True}
    onto = post_json(client, server, "/share/loop/in/f", over_folder)  # over its own folder
    assert "not empty" in onto.error(409)["message"]
    slash = post_json(client, server, "/share/b.txt", {"action": "move", "to": "/share/newdir/"})
    slash.error(400, "not_a_directory")  # (it made a file "newdir")
    assert not (share / "newdir").exists() and (share / "b.txt").exists()

    missing = post_json(client, server, "/share/missing", {"action": "move", "to": "/share/z"})
    assert missing.error(404)["message"].endswith("/share/missing")  # (it named /share/z)
    lost = post_json(client, server, "/share/b.txt", {"action": "move", "to": "/no/dir/z"})
    lost.error(409, "no_parent")
    lost.error(lost.status)
    assert (share / "b.txt").exists()
    for bad in (
        {"action": "delete", "to": "/share/z"},
        {"to": "/share/z"},
        {"action": "move"},
        {"action": "move", "to": ""},
        {"action": "move", "to": 5},
        {"action": "copy", "to": "/share/z", "overwrite": "yes"},
        ["move", "/share/z"],
        None,
    ):
        post_json(client, server, "/share/b.txt", bad).error(400)
    client(
        server,
        "POST",
        url_path("/share/b.txt"),
        b"{not json",
        headers={"Content-Type": "application/json"},
    ).error(400, "bad_json")
    client(
        server,
        "POST",
        url_path("/share/b.txt"),
        b"\xff\xfe",
        headers={"Content-Type": "application/json"},
    ).error(400)
    huge = json.dumps({"action": "move", "to": "/share/z", "pad": "x" * 70_000}).encode()
    client(
        server, "POST", url_path("/share/b.txt"), huge, headers={"Content-Type": "application/json"}
    ).error(413)
    assert (share / "b.txt").read_text() == "alpha"
    assert not (share / "z").exists()


def test_errors_are_json_on_every_refusal(server: Server, client: Client) -> None:
    """Refusals made before the API runs (bad auth, oversized bodies) are JSON errors too."""
    target = url_path("/share/docs/readme.txt")
    digest_auth = {"Authorization": "Digest username=root"}
    client(server, "GET", target, headers=digest_auth, auth=None).error(401)
    client(server, "GET", target, headers={"Authorization": "Basic !!!"}, auth=None).error(401)
    client(server, "GET", target, headers={"Authorization": "Bearer"}, auth=None).error(401)
    big = b"x" * (2 * MiB)  # bodies of requests other than PUT/POST are limited to 1 MiB
    for method in ("GET", "DELETE"):
        reply = client(server, method, target, big)
        assert reply.status == 413, reply
        assert reply.header("x-content-type-options") == "nosniff", reply.raw_headers
        reply.error(413)
    assert (server.root / "share" / "docs" / "readme.txt").exists()


def test_put_without_length_is_411(server: Server) -> None:
    """A PUT with neither Content-Length nor a chunked body is refused (raw socket)."""
    answer = raw_exchange(server, f"PUT {url_path('/share/nolength')} HTTP/1.1\r\n", ROOT)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411"), answer
    assert json.loads(body)["error"] == "length_required"
    assert not (server.root / "share" / "nolength").exists()


# --------------------------------------------------------------------------- ranges


def parse_byteranges(reply: Reply) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, data) of each part of a multipart/byteranges body."""
    kind = reply.header("content-type") or ""
    match = re.fullmatch(r'multipart/byteranges;\s*boundary="?([^";]+)"?', kind)
    assert match, kind
    delimiter = b"--" + match.group(1).encode()
    chunks = reply.body.split(delimiter)
    assert chunks[0].strip() == b"", chunks[0][:100]
    assert chunks[-1] == b"--\r\n", chunks[-1][:100]
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n"), chunk[:100]
        head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
        assert sep, chunk[:200]
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers.get("content-type", ""), headers.get("content-range", ""), data))
    return parts


def test_ranges(server: Server, client: Client) -> None:
    """Single, suffix, open and multiple ranges; more than 16 or none satisfiable is 416."""
    data = os.urandom(100_000)
    (server.root / "share" / "r.bin").write_bytes(data)
    target = url_path("/share/r.bin")
    size = len(data)

    def ranged(spec: str, **headers: str) -> Reply:
        return client(server, "GET", target, headers={"Range": spec, **headers})

    for spec, first, last in (
        ("bytes=10-19", 10, 19),
        ("bytes=0-0", 0, 0),
        ("bytes=-500", size - 500, size - 1),
        ("bytes=99990-", 99990, size - 1),
        ("bytes=99990-200000", 99990, size - 1),
        ("bytes=-200000", 0, size - 1),
    ):
        got = ranged(spec)
        assert got.status == 206, (spec, got)
        assert got.body == data[first : last + 1], spec
        assert got.header("content-range") == f"bytes {first}-{last}/{size}", spec
        assert got.header("content-length") == str(last - first + 1), spec
        assert got.header("repr-digest") == digest_header(data), spec

    multi = ranged("bytes=0-9,100-199,-5")
    assert multi.status == 206, multi
    assert multi.header("content-length") == str(len(multi.body))
    parts = parse_byteranges(multi)
    assert parts == [
        ("application/octet-stream", f"bytes 0-9/{size}", data[0:10]),
        ("application/octet-stream", f"bytes 100-199/{size}", data[100:200]),
        ("application/octet-stream", f"bytes {size - 5}-{size - 1}/{size}", data[-5:]),
    ]
    sixteen = ",".join(f"{i * 1000}-{i * 1000 + 9}" for i in range(16))
    got16 = ranged(f"bytes={sixteen}")
    assert got16.status == 206
    assert [p[2] for p in parse_byteranges(got16)] == [
        data[i * 1000 : i * 1000 + 10] for i in range(16)
    ]

    seventeen = ",".join(f"{i * 1000}-{i * 1000 + 9}" for i in range(17))
    too_many = ranged(f"bytes={seventeen}")
    too_many.error(416, "range_not_satisfiable")
    assert too_many.header("content-range") == f"bytes */{size}"
    for spec in (f"bytes={size}-{size + 10}", f"bytes={size + 5}-{size + 6}", "bytes=-0"):
        beyond = ranged(spec)
        beyond.error(416, "range_not_satisfiable")
        assert beyond.header("content-range") == f"bytes */{size}", spec

    overlapping = "bytes=" + ",".join(["0-"] * 16)  # (asked for 16 times the file)
    for spec in ("bytes=abc", "bytes=20-10", "items=0-5", "bytes=", overlapping):
        whole = ranged(spec)  # ignored: the whole file, once
        assert whole.status == 200, (spec, whole.status)
        assert whole.body == data

    etag = client(server, "HEAD", target).header("etag")
    assert etag
    for tags in (etag, f'"nope", {etag}', "*", f"W/{etag}"):
        cached = client(server, "GET", target, headers={"If-None-Match": tags})
        assert cached.status == 304, (tags, cached)
        assert cached.body == b""
        assert cached.header("etag") == etag
    assert client(server, "GET", target, headers={"If-None-Match": '"other"'}).status == 200
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    assert client(server, "GET", target, headers={"If-Modified-Since": later}).status == 304
    assert (
        client(
            server, "GET", target, headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
        ).status
        == 200
    )

    same = ranged("bytes=5-9", **{"If-Range": etag})
    assert same.status == 206 and same.body == data[5:10]
    stale = ranged("bytes=5-9", **{"If-Range": '"stale"'})
    assert stale.status == 200 and stale.body == data

    empty = server.root / "share" / "empty.bin"
    empty.write_bytes(b"")
    whole_empty = client(server, "GET", url_path("/share/empty.bin"))
    assert whole_empty.status == 200 and whole_empty.body == b""
    client(server, "GET", url_path("/share/empty.bin"), headers={"Range": "bytes=0-0"}).error(416)


def test_open_range_past_the_end_is_416(server: Server, client: Client) -> None:
    """``bytes=<size>-`` (what a resuming client sends for a complete file) is 416."""
    data = os.urandom(5000)
    (server.root / "share" / "r.bin").write_bytes(data)
    for spec in ("bytes=5000-", "bytes=5001-", "bytes=9999-", "bytes=5000-,6000-"):
        reply = client(server, "GET", url_path("/share/r.bin"), headers={"Range": spec})
        assert reply.status == 416, (spec, reply.status, reply.header("content-range"))
        reply.error(416, "range_not_satisfiable")
        assert reply.header("content-range") == "bytes */5000", spec


def test_curl_resumes_a_download(server: Server, tmp_path: Path) -> None:
    """``curl -C -`` completes a partial download with a Range request."""
    require("curl")
    data = os.urandom(3 * MiB + 123)
    (server.root / "share" / "resume.bin").write_bytes(data)
    local = tmp_path / "resume.bin"
    local.write_bytes(data[:MiB])
    result = subprocess.run(
        ["curl", "-sS", "--fail", "-C", "-", "-u", f"root:{PASSWORD}", "-o", str(local),
         "-w", "%{http_code}", server.url + url_path("/share/resume.bin")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "206"
    assert local.read_bytes() == data


# --------------------------------------------------------------------------- big transfers


def test_big_transfers_keep_memory_bounded(server: Server, tmp_path: Path) -> None:
    """A 5 GiB download and two 1 GiB uploads stream: the server's peak memory stays low."""
    require("curl")
    free = shutil.disk_usage(server.root).free
    assert free > 3 * GiB, f"the test needs 3 GiB free under {server.root}, {free} free"
    pid = server.process.pid
    baseline = peak_memory(pid)
    folder = server.root / "big"
    folder.mkdir()
    sparse = folder / "zeros-5g.bin"
    with sparse.open("wb") as handle:
        handle.truncate(5 * GiB)
    upload_target = folder / "uploaded.bin"
    local = tmp_path / "sparse-1g.bin"
    try:
        down = curl_request(
            server, "GET", url_path("/big/zeros-5g.bin"), output=Path("/dev/null"), timeout=900
        )
        assert down.status == 200, down
        assert down.downloaded == 5 * GiB, down.downloaded
        assert down.header("content-length") == str(5 * GiB)
        expected = base64.b64encode(zeros_sha256(5 * GiB)).decode()
        assert down.header("repr-digest") == f"sha-256=:{expected}:"
        after_download = peak_memory(pid)

        with local.open("wb") as handle:
            handle.truncate(GiB)
        zeros = zeros_sha256(GiB).hex()
        up = curl_request(
            server,
            "PUT",
            url_path("/big/uploaded.bin"),
            upload=local,
            headers={"X-Expected-SHA256": zeros},
            timeout=900,
        )
        assert up.status == 201, up
        assert up.json() == {"path": "/big/uploaded.bin", "size": GiB, "sha256": zeros}
        assert upload_target.stat().st_size == GiB
        after_curl_upload = peak_memory(pid)

        pattern = os.urandom(BLOCK)
        hasher = hashlib.sha256()
        for _ in range(GiB // BLOCK):
            hasher.update(pattern)
        patterned = hasher.hexdigest()

        def body() -> Iterator[bytes]:
            for _ in range(GiB // BLOCK):
                yield pattern

        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=900)
        try:  # an iterable body without a length: http.client sends it chunked
            announced = base64.b64encode(bytes.fromhex(patterned)).decode()
            headers = {**auth_headers(ROOT), "Repr-Digest": f"sha-256=:{announced}:"}
            conn.request("PUT", url_path("/big/uploaded.bin"), body=body(), headers=headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
            assert response.status == 200, answer
        finally:
            conn.close()
        assert answer == {"path": "/big/uploaded.bin", "size": GiB, "sha256": patterned}
        after_chunked_upload = peak_memory(pid)

        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=900)
        try:
            conn.request("GET", url_path("/big/uploaded.bin"), headers=auth_headers(ROOT))
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Length") == str(GiB)
            check = hashlib.sha256()
            received = 0
            while chunk := response.read(BLOCK):
                check.update(chunk)
                received += len(chunk)
        finally:
            conn.close()
        assert received == GiB and check.hexdigest() == patterned
        peak = peak_memory(pid)
        report = (
            f"server VmHWM: start {baseline >> 20} MiB, after 5 GiB download "
            f"{after_download >> 20} MiB, after curl 1 GiB upload {after_curl_upload >> 20} MiB, "
            f"after chunked 1 GiB upload {after_chunked_upload >> 20} MiB, end {peak >> 20} MiB"
        )
        print(report)
        assert peak < MEMORY_BOUND, report
        assert part_files(server.root) == []
    finally:
        for path in (upload_target, sparse, local):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def test_refused_big_uploads_are_not_buffered(server: Server, tmp_path: Path) -> None:
    """A 1 GiB PUT refused at once (no credentials, read-only user) costs the server no memory."""
    require("curl")
    pid = server.process.pid
    local = tmp_path / "sparse-1g.bin"
    with local.open("wb") as handle:
        handle.truncate(GiB)
    try:
        anonymous = curl_request(
            server, "PUT", url_path("/share/anon.bin"), upload=local, auth=None, timeout=600
        )
        anonymous.error(401)
        after_anonymous = peak_memory(pid)
        reader = curl_request(
            server, "PUT", url_path("/docs/ro.bin"), upload=local, auth=READER, timeout=600
        )
        reader.error(403)
        peak = peak_memory(pid)
    finally:
        local.unlink()
    report = f"server VmHWM after refused 401: {after_anonymous >> 20} MiB, 403: {peak >> 20} MiB"
    print(report)
    assert not (server.root / "share" / "anon.bin").exists()
    assert not (server.root / "share" / "docs" / "ro.bin").exists()
    assert after_anonymous < MEMORY_BOUND, report
    assert peak < MEMORY_BOUND, report


def expecting_put(server: Server, target: str, auth: Auth, length: int) -> socket.socket:
    """A connection that sent the head of a PUT with ``Expect: 100-continue`` and no body."""
    head = [
        f"PUT {url_path(target)} HTTP/1.1",
        "Host: 127.0.0.1",
        "Expect: 100-continue",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in auth_headers(auth).items()),
    ]
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = bytearray()
    while chunk := sock.recv(65536):
        received += chunk
    return bytes(received)


@pytest.mark.parametrize("auth", [None, READER], ids=["anonymous", "read-only"])
def test_a_refused_upload_is_answered_without_100_continue(server: Server, auth: Auth) -> None:
    """The client that waits for 100 Continue gets the refusal instead, then a clean close:
    it never starts sending the body (sending it and hitting a reset lost the answer)."""
    with expecting_put(server, "/share/docs/refused.bin", auth, GiB) as sock:
        answer = read_all(sock)  # the server closes: nothing is left to read
    status = answer.split(b"\r\n", 1)[0]
    assert status in (b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 403 Forbidden"), answer[:300]
    assert b"100 Continue" not in answer, answer[:300]
    assert not (server.root / "share" / "docs" / "refused.bin").exists()


def test_an_accepted_upload_gets_100_continue_at_once(server: Server) -> None:
    """100 Continue comes when the upload starts reading (the client need not wait out its
    own timeout), and the body that follows is stored."""
    body = os.urandom(100_000)
    with expecting_put(server, "/share/continued.bin", ROOT, len(body)) as sock:
        started = time.monotonic()
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
        assert time.monotonic() - started < 15  # (liveness, for a loaded machine)
        sock.sendall(body)
        final = sock.recv(65536)
    assert final.startswith(b"HTTP/1.1 201 "), final[:300]
    assert (server.root / "share" / "continued.bin").read_bytes() == body


# --------------------------------------------------------------------------- interruptions


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_client_gone_mid_upload_leaves_old_file(server: Server, ending: str) -> None:
    """A PUT whose client goes away (FIN or RST) after 1 of 10 MB changes nothing."""
    target = server.root / "share" / "keep.bin"
    old = os.urandom(50_000)
    target.write_bytes(old)
    share = server.root / "share"
    auth = auth_headers(ROOT)["Authorization"]
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    try:
        sock.sendall(
            f"PUT {url_path('/share/keep.bin')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {auth}\r\nContent-Length: {10 * 1000 * 1000}\r\n\r\n".encode()
        )
        sock.sendall(os.urandom(MiB))
        assert wait_until(lambda: part_files(share) != [], 10), "the upload never started"
        if ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    assert wait_until(lambda: part_files(server.root) == [], 15), (
        f"temp file left behind: {part_files(server.root)}\n{server_log(server)}"
    )
    assert target.read_bytes() == old
    assert http_request(server, "GET", url_path("/share/keep.bin")).body == old


def test_curl_killed_mid_upload_leaves_old_file(server: Server, tmp_path: Path) -> None:
    """curl killed in the middle of a slow upload: old file intact, no temp file left."""
    require("curl")
    target = server.root / "share" / "keep.bin"
    old = b"keep me\n" * 1000
    target.write_bytes(old)
    local = tmp_path / "ten-mb.bin"
    local.write_bytes(os.urandom(10 * MiB))
    process = subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "--limit-rate", "1M", "--max-time", "60",
         "-u", f"root:{PASSWORD}", "-T", str(local), server.url + url_path("/share/keep.bin")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = wait_until(lambda: part_files(server.root / "share") != [], 15)
        assert started, "the upload never started"
        assert process.poll() is None, "curl finished before it could be interrupted"
    finally:
        process.kill()
        process.wait(timeout=10)
    assert wait_until(lambda: part_files(server.root) == [], 15), part_files(server.root)
    assert target.read_bytes() == old


# --------------------------------------------------------------------------- tokens


def test_tokens(server: Server) -> None:
    """Bearer tokens: rw writes, --ro reads only (403), expired/revoked/garbage are 401."""
    share = server.root / "share"
    rw = token_cli(server, "create", "root")
    ro = token_cli(server, "create", "root", "--ro")
    for token in (rw, ro):
        assert re.fullmatch(r"hm_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}", token), token

    tokens_file = server.state / "tokens.json"
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    stored = tokens_file.read_text()
    records = {r["id"]: r for r in json.loads(stored)}
    for token in (rw, ro):
        token_id, secret = token[3:15], token[16:]
        assert secret not in stored and token not in stored
        assert records[token_id]["digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert records[ro[3:15]]["read_only"] is True and records[rw[3:15]]["read_only"] is False

    for call in (curl_request, http_request):
        name = "c" if call is curl_request else "h"
        put = call(server, "PUT", url_path(f"/share/{name}.txt"), b"by token", auth=rw)
        assert put.status == 201, put
        assert (share / f"{name}.txt").read_bytes() == b"by token"
        assert (
            call(server, "POST", url_path(f"/share/{name}-dir") + "?mkdir", auth=rw).status == 201
        )
        moved = post_json(
            call,
            server,
            f"/share/{name}.txt",
            {"action": "move", "to": f"/share/{name}-dir/{name}.txt"},
            auth=rw,
        )
        assert moved.status == 200
        got = call(server, "GET", url_path(f"/share/{name}-dir/{name}.txt"), auth=ro)
        assert got.status == 200 and got.body == b"by token"
        assert call(server, "GET", url_path("/share/") + "?json", auth=ro).status == 200

        before = snapshot(server.root)
        call(server, "PUT", url_path(f"/share/{name}-ro.txt"), b"no", auth=ro).error(403)
        call(server, "PUT", url_path(f"/share/{name}-dir/{name}.txt"), b"no", auth=ro).error(403)
        call(server, "POST", url_path(f"/share/{name}-ro") + "?mkdir", auth=ro).error(403)
        post_json(
            call, server, f"/share/{name}-dir", {"action": "move", "to": "/share/ro-moved"}, auth=ro
        ).error(403)
        post_json(
            call,
            server,
            f"/share/{name}-dir",
            {"action": "copy", "to": "/share/ro-copied"},
            auth=ro,
        ).error(403)
        call(server, "DELETE", url_path(f"/share/{name}-dir/{name}.txt"), auth=ro).error(403)
        call(server, "DELETE", url_path(f"/share/{name}-dir") + "?recursive", auth=ro).error(403)
        assert snapshot(server.root) == before

        deleted = call(server, "DELETE", url_path(f"/share/{name}-dir") + "?recursive", auth=rw)
        assert deleted.status == 204 and not (share / f"{name}-dir").exists()

    # Failed logins are counted per address and only age out (10 ban it): this test
    # makes 8; the garbage tokens are tried on a server of their own below.
    short = token_cli(server, "create", "root", "--expires", "3s")
    assert http_request(server, "GET", url_path("/share/docs/readme.txt"), auth=short).status == 200
    time.sleep(3.5)
    for call in (curl_request, http_request):
        expired = call(server, "GET", url_path("/share/docs/readme.txt"), auth=short)
        expired.error(401)
        assert (expired.header("www-authenticate") or "").startswith("Basic")
        call(server, "PUT", url_path("/share/expired.txt"), b"x", auth=short).error(401)
    assert not (share / "expired.txt").exists()

    doomed = token_cli(server, "create", "root")
    assert curl_request(server, "GET", url_path("/share/"), auth=doomed).status == 200
    assert "revoked" in token_cli(server, "revoke", doomed[3:15])
    assert doomed[3:15] not in tokens_file.read_text()
    for call in (curl_request, http_request):
        call(server, "GET", url_path("/share/docs/readme.txt"), auth=doomed).error(401)
        call(server, "DELETE", url_path("/share/docs/readme.txt"), auth=doomed).error(401)
    assert (share / "docs" / "readme.txt").exists()
    listing = token_cli(server, "list")
    assert rw[3:15] in listing and ro[3:15] in listing and doomed[3:15] not in listing
    assert rw[16:] not in listing


def test_garbage_tokens(server: Server) -> None:
    """A forged token (one character changed), an unknown id and nonsense: 401."""
    rw = token_cli(server, "create", "root")
    forged = rw[:-1] + ("A" if rw[-1] != "A" else "B")
    for garbage in (forged, "hm_000000000000_" + "x" * 43, "nonsense"):
        for call in (curl_request, http_request):
            call(server, "GET", url_path("/share/docs/readme.txt"), auth=garbage).error(401)
    assert http_request(server, "GET", url_path("/share/docs/readme.txt"), auth=rw).status == 200
    listing = token_cli(server, "list")
    assert rw[3:15] in listing and rw[16:] not in listing


# --------------------------------------------------------------------------- permissions


def test_read_only_user_cannot_write(server: Server, client: Client) -> None:
    """``reader`` (Basic, read-only, jailed to /share) gets 403 on every write route."""
    share = server.root / "share"
    (share / "sub" / "deeper").mkdir(parents=True)
    (share / "sub" / "deeper" / "f.txt").write_text("f")
    got = client(server, "GET", url_path("/docs/readme.txt"), auth=READER)
    assert got.status == 200 and got.body == b"shared text\n"
    listing = client(server, "GET", url_path("/") + "?json", auth=READER).json()
    assert {e["name"] for e in listing["entries"]} == {"docs", "sub"}
    assert (
        client(server, "GET", url_path("/docs/readme.txt") + "?sha256", auth=READER).status == 200
    )

    before = snapshot(server.root)
    body = b"should never land"
    attempts = [
        ("PUT", "/docs/readme.txt", body, {}),
        ("PUT", "/docs/new.txt", body, {}),
        ("PUT", "/docs/new.txt", body, {"X-Expected-SHA256": hashlib.sha256(body).hexdigest()}),
        ("POST", "/docs/newdir?mkdir", None, {}),
        ("DELETE", "/docs/readme.txt", None, {}),
        ("DELETE", "/sub", None, {}),
        ("DELETE", "/sub?recursive", None, {}),
    ]
    for method, path, data, headers in attempts:
        target, _, query = path.partition("?")
        reply = client(
            server,
            method,
            url_path(target) + (f"?{query}" if query else ""),
            data,
            auth=READER,
            headers=headers,
        )
        reply.error(403)
    for action, to in (("move", "/moved.txt"), ("copy", "/copied.txt"), ("move", "/sub/x.txt")):
        post_json(
            client, server, "/docs/readme.txt", {"action": action, "to": to}, auth=READER
        ).error(403)
    post_json(client, server, "/sub", {"action": "copy", "to": "/sub2"}, auth=READER).error(403)
    assert snapshot(server.root) == before
    assert part_files(server.root) == []


def assert_refused(reply: Reply, secrets_seen: list[bytes]) -> None:
    """Not a success, a JSON error, and none of the secret contents in the body."""
    assert reply.status in (400, 403, 404, 409), (reply.status, reply.body[:300])
    reply.error(reply.status)
    for secret in secrets_seen:
        assert secret not in reply.body, (reply.status, reply.body[:300])


def test_jail_cannot_be_escaped(server: Server, client: Client) -> None:
    """Dot-dot paths (plain or percent-encoded) and planted symlinks never leave the jail."""
    share = server.root / "share"
    (share / "out-dir").symlink_to(server.outside)
    (share / "out-file").symlink_to(server.outside / "secret.txt")
    (share / "rel-out").symlink_to("../../outside/secret.txt")
    (share / "root-passwd").symlink_to("../etc/passwd")
    (share / "host-passwd").symlink_to("/etc/passwd")
    (server.root / "escape").symlink_to(server.outside)
    host_passwd = Path("/etc/passwd").read_bytes().splitlines()[0]
    secrets_seen = [b"outside secret", b"root:x:0:0:root:/root:/bin/sh", host_passwd]
    outside_digest = hashlib.sha256(b"outside secret\n").hexdigest().encode()

    reader_paths = [
        "/../../etc/passwd",
        "/../etc/passwd",
        "/docs/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/docs/%2e%2e/%2e%2e/%2e%2e/outside/secret.txt",
        "/../outside/secret.txt",
        "/out-dir/secret.txt",
        "/out-file",
        "/rel-out",
        "/root-passwd",
        "/host-passwd",
    ]
    for path in reader_paths:
        target = PREFIX + path
        for suffix in ("", "?sha256", "?json"):
            reply = client(server, "GET", target + suffix, auth=READER)
            assert_refused(reply, [*secrets_seen, outside_digest])
    listing = client(server, "GET", PREFIX + "/out-dir/?json", auth=READER)
    assert_refused(listing, [b"secret.txt"])
    for path in (
        "/escape/secret.txt",
        "/share/out-file",
        "/share/rel-out",
        "/../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
    ):
        for suffix in ("", "?sha256"):
            assert_refused(
                client(server, "GET", PREFIX + path + suffix), [*secrets_seen[:1], outside_digest]
            )
    assert_refused(client(server, "GET", PREFIX + "/escape/?json"), [b"secret.txt"])

    # Copying or writing through an escaping link must not touch or reveal the outside.
    copy = post_json(client, server, "/share/out-file", {"action": "copy", "to": "/share/copy"})
    if copy.status == 200:
        copied = share / "copy"
        assert copied.is_symlink() or b"outside secret" not in copied.read_bytes()
    else:
        assert_refused(copy, secrets_seen)
    written = client(server, "PUT", url_path("/escape/secret.txt"), b"overwritten")
    assert written.status in (403, 404, 409), written
    client(server, "PUT", url_path("/share/out-dir/new.txt"), b"x").error(written.status)
    assert (server.outside / "secret.txt").read_bytes() == b"outside secret\n"
    assert sorted(os.listdir(server.outside)) == ["secret.txt"]
    removed = client(server, "DELETE", url_path("/escape/secret.txt"))
    assert removed.status in (403, 404, 409), removed
    removed.error(removed.status)
    assert (server.outside / "secret.txt").exists()


# --------------------------------------------------------------------------- disk full


def test_disk_full_is_507(tmp_path: Path, client_key: Path, client: Client) -> None:
    """ENOSPC while uploading answers 507; the old file stays, no temp file remains."""
    with tmpfs(tmp_path / "small", "8m") as root:
        for folder in (root / "share", root / "home" / "jailed"):
            folder.mkdir(parents=True)
        old = os.urandom(MiB)
        (root / "share" / "keep.bin").write_bytes(old)
        config = tmp_path / "small.toml"
        write_config(
            config, root, tmp_path / "state", client_key.with_suffix(".pub").read_text().strip()
        )
        process, port, banner = start_server(["--config", str(config)], tmp_path / "small.log")
        try:
            server = Server(
                port,
                root,
                tmp_path / "outside",
                tmp_path / "state",
                client_key,
                process,
                tmp_path / "small.log",
                http_port(banner),
            )
            free_before = os.statvfs(root).f_bfree
            big = os.urandom(16 * MiB)
            full = client(server, "PUT", url_path("/share/keep.bin"), big, timeout=120)
            full.error(507, "insufficient_storage")
            assert (root / "share" / "keep.bin").read_bytes() == old
            fresh = client(server, "PUT", url_path("/share/fresh.bin"), big, timeout=120)
            fresh.error(507, "insufficient_storage")
            assert not (root / "share" / "fresh.bin").exists()
            assert wait_until(lambda: part_files(root) == [], 10), part_files(root)
            assert os.statvfs(root).f_bfree >= free_before - 16, "space was not given back"
            small = client(server, "PUT", url_path("/share/small.bin"), b"fits")
            assert small.status == 201, small
            assert (root / "share" / "small.bin").read_bytes() == b"fits"
        finally:
            stop_server(process)


# --------------------------------------------------------------------------- browser


def _event_handlers(dom: str) -> list[tuple[str, str]]:
    """The elements of ``dom`` that carry an ``on…`` attribute, and that attribute."""
    found: list[tuple[str, str]] = []

    class Finder(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend((tag, name) for name, _ in attrs if name.startswith("on"))

    Finder().feed(dom)
    return found


def test_html_page_in_chromium(server: Server, tmp_path: Path) -> None:
    """The listing renders in Chromium; every name shows, an HTML-like name as inert text."""
    folder = server.root / "share" / "page"
    folder.mkdir()
    evil = "<img src=x onerror=alert(1)>.txt"
    names = ["alpha.txt", "beta report.pdf", "ünïcødé.md", "quote'\"&.txt", evil]
    for name in names:
        (folder / name).write_bytes(b"content of " + name.encode())
    (folder / "subfolder").mkdir()
    # (Basic sent by the browser: a page opened without credentials goes to /login)
    basic = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(f"{server.url}{PREFIX}/share/page/", {"Authorization": f"Basic {basic}"})
        browser.wait_for("document.body.textContent.includes('subfolder/')")
        dom = str(browser.evaluate("document.documentElement.outerHTML"))
        assert "hoody-mount" in dom and '<table id="listing">' in dom
        for name in names:
            escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            assert escaped in dom, (name, dom[:3000])
        assert "&lt;img src=x onerror=alert(1)&gt;.txt" in dom
        assert "<img" not in dom.lower(), "an uploaded name became a live element"
        assert not _event_handlers(dom), "a name became an event handler"
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=1200, height=800, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        shot = browser.call("Page.captureScreenshot", format="png")
    finally:
        browser.close()
    screenshot = tmp_path / "page.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 5 * 1024, f"screenshot is only {len(png)} bytes"
    shutil.copy(screenshot, "/tmp/hoody-api-page.png")


# -- conditional requests ------------------------------------------------------------------


def test_conditional_writes_and_reads_answer_412_and_change_nothing(server: Server) -> None:
    """If-None-Match: * refuses to replace an existing file; If-Match with another ETag
    refuses PUT, DELETE and GET; If-Unmodified-Since before the file's time refuses a
    write; with the right ETag the write goes through (RFC 9110 §13)."""
    target = server.root / "cond.txt"
    target.write_bytes(b"old")
    path = "/api/v1/files/cond.txt"
    etag = http_request(server, "HEAD", path).headers["etag"]
    refusals = [
        ("PUT", {"If-None-Match": "*"}),
        ("PUT", {"If-Match": '"not-it"'}),
        ("DELETE", {"If-Match": '"not-it"'}),
        ("GET", {"If-Match": '"not-it"'}),
        ("PUT", {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:10 GMT"}),
    ]
    for method, headers in refusals:
        body = b"new" if method == "PUT" else None
        reply = http_request(server, method, path, body, headers=headers)
        assert reply.status == 412, (method, headers, reply.status, reply.body[:200])
        assert json.loads(reply.body)["error"] == "precondition_failed"
    assert target.read_bytes() == b"old"
    reply = http_request(server, "PUT", path, b"new", headers={"If-Match": etag})
    assert reply.status in (200, 204), reply.body[:200]
    assert target.read_bytes() == b"new"
    created = http_request(server, "PUT", "/api/v1/files/fresh.txt", b"x",
                           headers={"If-None-Match": "*"})  # fmt: skip
    assert created.status == 201, created.body[:200]


def test_unknown_method_lists_the_allowed_ones(server: Server) -> None:
    """405 carries an Allow header (RFC 9110 §15.5.6)."""
    reply = http_request(server, "PATCH", "/api/v1/files/x.txt", b"x")
    assert reply.status == 405
    assert "PUT" in reply.headers.get("allow", "")


def test_a_suffix_range_of_an_empty_file_is_unsatisfiable(server: Server) -> None:
    """bytes=-1 of an empty file is 416 with Content-Range bytes */0, never a 206 with
    the impossible range 0--1."""
    (server.root / "empty.bin").write_bytes(b"")
    reply = http_request(server, "GET", "/api/v1/files/empty.bin", headers={"Range": "bytes=-1"})
    assert reply.status == 416, reply.headers
    assert reply.headers.get("content-range") == "bytes */0"


def test_a_create_only_put_never_replaces_a_file_made_meanwhile(server: Server) -> None:
    """PUT with If-None-Match: * answers 412 when the file appears while the body is
    still arriving, and what appeared stays; a weak ETag matches If-None-Match too."""
    target = server.root / "race.txt"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        head = (
            "PUT /api/v1/files/race.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
            f"If-None-Match: *\r\n{_basic_header()}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"12345")
        time.sleep(0.3)
        target.write_bytes(b"theirs")
        sock.sendall(b"67890")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 412"), answer[:200]
    assert target.read_bytes() == b"theirs"
    etag = http_request(server, "HEAD", "/api/v1/files/race.txt").headers["etag"]
    weak = http_request(server, "PUT", "/api/v1/files/race.txt", b"x",
                        headers={"If-None-Match": f"W/{etag}"})  # fmt: skip
    assert weak.status == 412 and target.read_bytes() == b"theirs"


def _basic_header() -> str:
    return "Authorization: " + auth_headers(ROOT)["Authorization"]


def test_a_browser_at_the_root_or_a_webdav_folder_lands_on_the_file_page(server: Server) -> None:
    """A browser at ``/`` or ``/dav/…/`` (it showed ERR_INVALID_RESPONSE, or WsgiDAV's
    "Directory browsing is not enabled") is sent to the file page of that folder;
    WebDAV clients are not (PROPFIND, or no text/html)."""
    html = "text/html,application/xhtml+xml,*/*;q=0.8"
    for path, where in (("/", "/api/v1/files/"), ("/dav/", "/api/v1/files/"),
                        ("/dav/share/docs/", "/api/v1/files/share/docs/"),
                        ("/dav/a%20b/", "/api/v1/files/a%20b/")):  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        conn.request("GET", path, headers={"Accept": html})
        reply = conn.getresponse()
        reply.read()
        conn.close()
        assert (reply.status, reply.getheader("Location")) == (303, where), path
    status, _ = basic_request(server.http_port, "PROPFIND", "/dav/", "root", PASSWORD,
                                 Depth="0")  # fmt: skip
    assert status == 207
    status, _ = basic_request(server.http_port, "GET", "/dav/share/docs/readme.txt", "root",
                              PASSWORD, Accept=html)  # fmt: skip
    assert status == 200


def test_the_page_sorts_names_as_people_do(server: Server) -> None:
    """Numbers by value and case ignored (f2, F10, f19), found by the new-user pass; ties
    of a size sort fall back on that order."""
    folder = server.root / "share" / "natural"
    folder.mkdir()
    for name in ("f19.txt", "f2.txt", "F10.txt", "a.txt"):
        (folder / name).write_bytes(b"same")
    for query in ("", "?sort=size"):
        page = http_request(
            server, "GET", url_path("/share/natural/") + query, headers={"Accept": "text/html"}
        ).body.decode()
        order = [
            page.index(f'data-name="{name}"') for name in ("a.txt", "f2.txt", "F10.txt", "f19.txt")
        ]
        assert order == sorted(order), query
