"""WebDAV at the protocol level, and hostile input through it.

Every test talks HTTP to a real server (the ``server`` fixture, or a dedicated one started
here when a test needs its own state: a ban, a tmpfs root, TLS, a restart) with the
standard library's ``http.client`` or a raw socket, and checks exact statuses and what is
on disk afterwards. Client sequences follow what Finder and the Windows Mini-Redirector
send (see shared/design/clients.md); hostile input follows shared/design/security.md.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    http_port,
    start_server,
    stop_server,
    wait_until,
    write_config,
)

TIMEOUT = 20.0
DAV = "{DAV:}"
MS = "{urn:schemas-microsoft-com:}"
TEST_NS = "urn:hoody-mount:test"
SECRET = b"outside secret\n"
ROOT_PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"
PASSWORDS = {"root": PASSWORD, "reader": READER_PASSWORD}
LOCK_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
    b"<D:locktype><D:write/></D:locktype><D:owner><D:href>tester</D:href></D:owner>"
    b"</D:lockinfo>"
)
Snapshot = dict[str, tuple[Any, ...]]


# -- HTTP helpers ------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP response, read in full (``complete`` is False when the body fell short)."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool = True

    def header(self, name: str) -> str:
        """A header's value ('' when absent)."""
        return str(self.headers.get(name, ""))

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")


@dataclass
class Web:
    """A dedicated server started by a test: where it listens and what it serves."""

    http_port: int
    root: Path
    outside: Path
    state: Path
    log: Path
    banner: str
    process: subprocess.Popen[str]
    tls: bool = False

    @property
    def url(self) -> str:
        """Base URL of the web listener."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"


Target = Server | Web


def basic(user: str = "root", password: str | None = None) -> str:
    """An Authorization header value for Basic credentials."""
    secret = PASSWORDS.get(user, "") if password is None else password
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def insecure_context() -> ssl.SSLContext:
    """A TLS client context that accepts the server's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def call(
    target: Target,
    method: str,
    path: str,
    *,
    user: str | None = "root",
    password: str | None = None,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    strict: bool = True,
    host: str = "127.0.0.1",
    timeout: float = TIMEOUT,
) -> Reply:
    """Send one request (the path goes out byte for byte as given) and read the answer.

    ``strict`` fails the test when the body is shorter than the Content-Length the
    server announced; otherwise ``complete`` tells. A non-strict request asks the server
    to close the connection, so a short body never makes the client wait.
    """
    all_headers = dict(headers or {})
    if user is not None:
        all_headers.setdefault("Authorization", basic(user, password))
    if not strict:
        all_headers.setdefault("Connection", "close")
    if chunked:
        all_headers["Transfer-Encoding"] = "chunked"
    tls = isinstance(target, Web) and target.tls
    conn: http.client.HTTPConnection
    if tls:
        conn = http.client.HTTPSConnection(
            host, target.http_port, timeout=timeout, context=insecure_context()
        )
    else:
        conn = http.client.HTTPConnection(host, target.http_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=all_headers, encode_chunked=chunked)
        response = conn.getresponse()
        complete = True
        try:
            data = response.read()
        except http.client.IncompleteRead as exc:
            data, complete = exc.partial, False
        except TimeoutError:
            data, complete = b"", False
        reply = Reply(response.status, response.headers, data, complete)
    finally:
        conn.close()
    if strict:
        assert reply.complete, (
            f"{method} {path}: {reply.status} announced Content-Length "
            f"{reply.header('Content-Length')} but sent {len(reply.body)} bytes "
            f"(the client waited {timeout:.0f} s)"
        )
    return reply


def raw_exchange(
    target: Target,
    head: str,
    parts: Iterable[bytes],
    *,
    method: str = "PUT",
    timeout: float = 60.0,
) -> tuple[Reply | None, list[BaseException]]:
    """Send a raw request head, then the body parts from a thread while the answer is read.

    The server may answer before the body is sent in full (413, 507): reading and sending
    at once gets that answer instead of a broken pipe. Returns the reply (None when the
    connection ended without one) and the errors the sender met.
    """
    sock = socket.create_connection(("127.0.0.1", target.http_port), timeout=timeout)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(head.encode("latin-1"))
            for part in parts:
                sock.sendall(part)
        except OSError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send, name="raw-sender", daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None, errors
        try:
            data, complete = response.read(), True
        except http.client.IncompleteRead as exc:
            data, complete = exc.partial, False
        return Reply(response.status, response.headers, data, complete), errors
    finally:
        sender.join(timeout)
        sock.close()


def request_head(
    target: Target, method: str, path: str, headers: dict[str, str], user: str = "root"
) -> str:
    """The head of a request, as it goes on the wire."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{target.http_port}",
        f"Authorization: {basic(user)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


# -- DAV helpers -------------------------------------------------------------------------


def multistatus(reply: Reply) -> dict[str, dict[str, tuple[int, ET.Element]]]:
    """href (unquoted) -> {property tag: (status, element)} of a 207 answer."""
    assert reply.status == 207, f"{reply.status}: {reply.text[:500]}"
    root = ET.fromstring(reply.body)
    assert root.tag == f"{DAV}multistatus", reply.text[:500]
    out: dict[str, dict[str, tuple[int, ET.Element]]] = {}
    for response in root.findall(f"{DAV}response"):
        href = unquote(response.findtext(f"{DAV}href", ""))
        props: dict[str, tuple[int, ET.Element]] = {}
        for propstat in response.findall(f"{DAV}propstat"):
            status = int(propstat.findtext(f"{DAV}status", "HTTP/1.1 0").split()[1])
            prop = propstat.find(f"{DAV}prop")
            for element in prop if prop is not None else []:
                props[element.tag] = (status, element)
        out[href] = props
    return out


def propfind_body(*props: str) -> bytes:
    """A PROPFIND body asking for ``props`` ('D:name' for DAV:, 'T:name' for the test ns)."""
    inner = "".join(f"<{p}/>" for p in props)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" '
        f'xmlns:T="{TEST_NS}"><D:prop>{inner}</D:prop></D:propfind>'
    ).encode()


def lock(target: Target, path: str, user: str = "root", depth: str = "0") -> Reply:
    """An exclusive write LOCK of an hour."""
    return call(
        target,
        "LOCK",
        path,
        user=user,
        body=LOCK_BODY,
        headers={
            "Depth": depth,
            "Timeout": "Second-3600",
            "Content-Type": 'text/xml; charset="utf-8"',
        },
    )


def lock_token(reply: Reply) -> str:
    """The ``<opaquelocktoken:...>`` of a granted LOCK."""
    token = reply.header("Lock-Token")
    assert re.fullmatch(r"<[^<>\s]+>", token), f"Lock-Token {token!r}: {reply.text[:300]}"
    return token


def davs(header: str) -> set[str]:
    """The compliance classes of a DAV header ('1, 2' -> {'1', '2'})."""
    return {part.strip() for part in header.split(",") if part.strip()}


def methods(header: str) -> set[str]:
    """The methods of an Allow header."""
    return {part.strip().upper() for part in header.split(",") if part.strip()}


# -- disk helpers ------------------------------------------------------------------------


def snapshot(top: Path, dir_times: bool = True) -> Snapshot:
    """Every name under ``top`` (itself included): type, mode, size, mtime and content (or
    link target); links are never followed. ``dir_times=False`` leaves out folders' times
    (a temp file made and removed again changes them)."""
    out: Snapshot = {}
    stack = [top]
    while stack:
        path = stack.pop()
        content: bytes | str | None = None
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                stack.extend(path.iterdir())
        except FileNotFoundError:
            continue  # removed while we looked (a server's temp file)
        key = str(path.relative_to(top))
        is_dir = stat.S_ISDIR(st.st_mode)
        mtime = None if is_dir and not dir_times else st.st_mtime_ns
        size = None if is_dir and not dir_times else st.st_size
        out[key] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), size, mtime, content)
    return out


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    """Human-readable differences between two snapshots."""
    lines = [f"gone: {k}" for k in sorted(before.keys() - after.keys())]
    lines += [f"new: {k}" for k in sorted(after.keys() - before.keys())]
    lines += [
        f"changed: {k}: {before[k]} -> {after[k]}"
        for k in sorted(before.keys() & after.keys())
        if before[k] != after[k]
    ]
    return lines


def temp_files(folder: Path) -> list[str]:
    """Upload leftovers in a folder: partial or hidden temp files."""
    return sorted(n for n in os.listdir(folder) if n.endswith(".part") or ".hoody-" in n)


def make_tree(root: Path, outside: Path) -> None:
    """The same tree the ``server`` fixture serves."""
    for folder in (root / "share" / "docs", root / "home" / "jailed", root / "etc", outside):
        folder.mkdir(parents=True, exist_ok=True)
    (root / "share" / "docs" / "readme.txt").write_text("shared text\n")
    (root / "etc" / "passwd").write_bytes(ROOT_PASSWD)
    (outside / "secret.txt").write_bytes(SECRET)


@dataclass
class Layout:
    """Where a dedicated server keeps its files."""

    base: Path
    root: Path
    state: Path
    outside: Path = field(init=False)

    def __post_init__(self) -> None:
        self.outside = self.base / "outside"


@contextlib.contextmanager
def dedicated(
    layout: Layout, key: Path, args: Iterable[str] = (), name: str = "web"
) -> Iterator[Web]:
    """Start a server of the three test users over ``layout``; stop it on exit."""
    config = layout.base / f"{name}.toml"
    write_config(config, layout.root, layout.state, key.with_suffix(".pub").read_text().strip())
    log = layout.base / f"{name}.log"
    process, _, banner = start_server(["--config", str(config), *args], log)
    try:
        yield Web(
            http_port(banner), layout.root, layout.outside, layout.state, log, banner, process,
            tls="HTTP listening on https://" in banner,
        )  # fmt: skip
    finally:
        stop_server(process)


def new_layout(base: Path) -> Layout:
    """A fresh tree for a dedicated server under ``base``."""
    layout = Layout(base, base / "root", base / "state")
    make_tree(layout.root, layout.outside)
    return layout


def log_tail(log: Path, lines: int = 30) -> str:
    """The end of a server log, for assertion messages."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- OPTIONS and PROPFIND on / and /dav/ -----------------------------------------------------


def test_options_root_answers_as_dav_class_2(server: Server) -> None:
    """Windows probes OPTIONS / first: it must see a class 1 and 2 DAV server."""
    reply = call(server, "OPTIONS", "/")
    assert reply.status == 200, reply.text
    assert davs(reply.header("DAV")) >= {"1", "2"}, f"DAV: {reply.header('DAV')!r} on /"
    assert {"OPTIONS", "PROPFIND"} <= methods(reply.header("Allow"))


@pytest.mark.parametrize("depth", ["0", "1"])
def test_propfind_root_lists_the_share(server: Server, depth: str) -> None:
    """PROPFIND / answers 207 with / as a collection (and, at depth 1, the dav/ member)."""
    reply = call(server, "PROPFIND", "/", headers={"Depth": depth})
    assert reply.status == 207, f"PROPFIND / Depth {depth}: {reply.status} {reply.text[:600]}"
    found = multistatus(reply)
    assert "/" in found, found.keys()
    assert found["/"][f"{DAV}resourcetype"][1].find(f"{DAV}collection") is not None
    if depth == "1":
        assert set(found) == {"/", "/dav/"}, found.keys()
        member = found["/dav/"][f"{DAV}resourcetype"][1]
        assert member.find(f"{DAV}collection") is not None
    else:
        assert set(found) == {"/"}


def test_propfind_lists_links_by_their_targets_and_leaves_out_broken_ones(server: Server) -> None:
    """A folder's members come with the attributes of the listing; a link is shown as
    what it leads to, and one that leads nowhere or into a loop is left out instead of
    failing the whole PROPFIND."""
    folder = server.root / "links"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"12345")
    os.symlink("a.txt", folder / "to-file")
    os.symlink("sub", folder / "to-dir")
    os.symlink("missing", folder / "dangling")
    os.symlink("loop-b", folder / "loop-a")
    os.symlink("loop-a", folder / "loop-b")
    body = propfind_body("D:resourcetype", "D:getcontentlength")
    reply = call(server, "PROPFIND", "/dav/links/", headers={"Depth": "1"}, body=body)
    found = multistatus(reply)
    assert set(found) == {
        "/dav/links/", "/dav/links/a.txt", "/dav/links/sub/", "/dav/links/to-file",
        "/dav/links/to-dir/",
    }, found.keys()  # fmt: skip
    for href in ("/dav/links/a.txt", "/dav/links/to-file"):
        assert found[href][f"{DAV}getcontentlength"][1].text == "5"
    for href in ("/dav/links/sub/", "/dav/links/to-dir/"):
        assert found[href][f"{DAV}resourcetype"][1].find(f"{DAV}collection") is not None
    assert call(server, "GET", "/dav/links/dangling", strict=False).status == 404


def test_options_share_shows_class_2_and_write_methods(server: Server) -> None:
    """Finder mounts read-write only when OPTIONS shows DAV 1,2 and the write methods."""
    reply = call(server, "OPTIONS", "/dav/")
    assert reply.status == 200, reply.text
    assert davs(reply.header("DAV")) >= {"1", "2"}, reply.header("DAV")
    assert reply.header("MS-Author-Via") == "DAV"
    allow = methods(reply.header("Allow"))
    assert {"OPTIONS", "GET", "HEAD", "PROPFIND"} <= allow, allow
    assert {"DELETE", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK"} <= allow, allow
    unmapped = call(server, "OPTIONS", "/dav/share/not-yet.txt")
    assert unmapped.status == 200
    assert {"PUT", "MKCOL"} <= methods(unmapped.header("Allow")), unmapped.header("Allow")


@pytest.mark.parametrize("path", ["/dav/", "/dav/docs/readme.txt", "/dav/not-yet.txt"])
def test_options_reader_sees_only_read_methods(server: Server, path: str) -> None:
    """A read-only user is shown exactly the methods it may use."""
    reply = call(server, "OPTIONS", path, user="reader")
    assert reply.status == 200, reply.text
    allow = reply.header("Allow")
    assert methods(allow) == {"OPTIONS", "HEAD", "GET", "PROPFIND"}, allow


# -- authentication ----------------------------------------------------------------------


def test_no_credentials_is_401_with_basic_challenge(server: Server) -> None:
    """Without an Authorization header: 401 and a Basic challenge."""
    for method, path in (("GET", "/dav/"), ("PROPFIND", "/dav/"), ("OPTIONS", "/")):
        reply = call(server, method, path, user=None, headers={"Depth": "0"})
        assert reply.status == 401, f"{method} {path}: {reply.status}"
        challenge = reply.header("WWW-Authenticate")
        assert challenge.lower().startswith("basic "), challenge
        assert 'realm="' in challenge


def test_wrong_password_and_unknown_user_are_401(server: Server) -> None:
    """A wrong password or an unknown user: 401, nothing served."""
    for user, password in (("root", "wrong"), ("reader", PASSWORD), ("nobody", PASSWORD)):
        reply = call(server, "GET", "/dav/share/docs/readme.txt", user=user, password=password)
        assert reply.status == 401, f"{user}: {reply.status}"
        assert b"shared text" not in reply.body
        assert reply.header("WWW-Authenticate").lower().startswith("basic ")


@pytest.mark.parametrize(
    "authorization",
    [
        'Digest username="root", realm="hoody-mount", response="x"',
        "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==",
        "Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXegMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNw",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    ],
    ids=["digest", "ntlm", "negotiate", "bad-base64", "bad-utf8"],
)
def test_unknown_scheme_or_malformed_basic_is_401(server: Server, authorization: str) -> None:
    """Other schemes, and Basic credentials that cannot be decoded: 401."""
    reply = call(server, "GET", "/dav/", user=None, headers={"Authorization": authorization})
    assert reply.status == 401, f"{authorization[:20]}: {reply.status} {reply.text}"


def test_ten_failed_logins_ban_the_address(tmp_path: Path, client_key: Path) -> None:
    """After 10 failures from one address, even the right password gets 429 there."""
    layout = new_layout(tmp_path)
    with dedicated(layout, client_key) as web:
        assert call(web, "PROPFIND", "/dav/", headers={"Depth": "0"}).status == 207
        for attempt in range(10):
            reply = call(web, "GET", "/dav/", password=f"wrong-{attempt}")
            assert reply.status == 401, f"attempt {attempt + 1}: {reply.status}"
        for user in ("root", "reader"):
            reply = call(web, "GET", "/dav/share/docs/readme.txt", user=user)
            assert reply.status == 429, f"{user} after the ban: {reply.status} {reply.text}"
            assert b"shared text" not in reply.body
        # the log is written by a background thread: a warning within moments
        banned = wait_until(lambda: "banned 127.0.0.1" in web.log.read_text(), 5)
        assert banned, log_tail(web.log)


# -- client sequences ------------------------------------------------------------------------


def test_finder_sequence(server: Server) -> None:
    """PROPFIND, chunked PUT without Content-Length, AppleDouble files, LOCK/UNLOCK."""
    share = server.root / "share"
    listing = multistatus(call(server, "PROPFIND", "/dav/share/", headers={"Depth": "1"}))
    assert {"/dav/share/", "/dav/share/docs/"} <= set(listing), listing.keys()

    payload = bytes(range(256)) * 6000  # 1.5 MB, more than one server block
    pieces = [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    reply = call(server, "PUT", "/dav/share/finder.bin", body=iter(pieces), chunked=True)
    assert reply.status == 201, f"{reply.status}: {reply.text}"
    assert (share / "finder.bin").read_bytes() == payload

    fork = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 64
    for name, data in (("._finder.bin", fork), (".DS_Store", b"\x00\x00\x00\x01Bud1" * 8)):
        reply = call(server, "PUT", f"/dav/share/{name}", body=iter([data]), chunked=True)
        assert reply.status == 201, f"{name}: {reply.status} {reply.text}"
        assert (share / name).read_bytes() == data

    locked = lock(server, "/dav/share/new-doc.txt")
    assert locked.status == 201, f"LOCK of a new file: {locked.status} {locked.text}"
    token = lock_token(locked)
    refused = call(server, "PUT", "/dav/share/new-doc.txt", body=b"intruder")
    assert refused.status == 423, refused.status
    reply = call(
        server, "PUT", "/dav/share/new-doc.txt", body=iter([b"finder ", b"text"]), chunked=True,
        headers={"If": f"({token})"},
    )  # fmt: skip
    assert reply.status in (201, 204), f"{reply.status}: {reply.text}"
    unlocked = call(server, "UNLOCK", "/dav/share/new-doc.txt", headers={"Lock-Token": token})
    assert unlocked.status == 204, unlocked.text
    assert (share / "new-doc.txt").read_bytes() == b"finder text"
    assert call(server, "PUT", "/dav/share/new-doc.txt", body=b"after").status == 204
    assert (share / "new-doc.txt").read_bytes() == b"after"
    assert temp_files(share) == []


def test_windows_mini_redirector_sequence(server: Server) -> None:
    """OPTIONS and PROPFIND on /, lock-null LOCK, PUT with If, PROPPATCH Win32 times, UNLOCK."""
    assert call(server, "OPTIONS", "/").status == 200
    root = multistatus(call(server, "PROPFIND", "/", headers={"Depth": "0"}))
    assert "/" in root
    assert call(server, "OPTIONS", "/dav/share/").status == 200
    assert call(server, "PROPFIND", "/dav/share/", headers={"Depth": "1"}).status == 207

    target = server.root / "share" / "win.txt"
    locked = lock(server, "/dav/share/win.txt")
    assert locked.status == 201, f"{locked.status}: {locked.text}"
    token = lock_token(locked)
    discovery = ET.fromstring(locked.body).find(f"{DAV}lockdiscovery")
    assert discovery is not None, locked.text
    assert token.strip("<>") in locked.text

    put = call(
        server, "PUT", "/dav/share/win.txt", body=b"written by windows",
        headers={"If": f"({token})", "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert put.status in (201, 204), f"{put.status}: {put.text}"
    assert target.read_bytes() == b"written by windows"

    stamp = "Wed, 01 Jan 2020 00:00:00 GMT"
    props = {
        "Win32CreationTime": stamp,
        "Win32LastAccessTime": stamp,
        "Win32LastModifiedTime": stamp,
        "Win32FileAttributes": "00000020",
    }
    inner = "".join(f"<Z:{name}>{value}</Z:{name}>" for name, value in props.items())
    body = (
        '<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" '
        f'xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>{inner}</D:prop></D:set>'
        "</D:propertyupdate>"
    ).encode()
    patched = call(
        server, "PROPPATCH", "/dav/share/win.txt", body=body,
        headers={"If": f"({token})", "Content-Type": 'text/xml; charset="utf-8"'},
    )  # fmt: skip
    result = multistatus(patched)["/dav/share/win.txt"]
    for name in props:
        assert result[f"{MS}{name}"][0] == 200, f"{name}: {patched.text}"
    assert target.stat().st_mtime == 1577836800, target.stat().st_mtime
    assert call(server, "GET", "/dav/share/win.txt").header("Last-Modified") == stamp

    unlocked = call(server, "UNLOCK", "/dav/share/win.txt", headers={"Lock-Token": token})
    assert unlocked.status == 204, unlocked.text
    after = call(server, "PUT", "/dav/share/win.txt", body=b"unlocked")
    assert after.status == 204, after.text
    assert target.read_bytes() == b"unlocked"


# -- RFC 4331 quota ------------------------------------------------------------------------


def test_quota_properties_match_statvfs(server: Server) -> None:
    """quota-available-bytes and quota-used-bytes are the served filesystem's numbers."""
    reply = call(
        server, "PROPFIND", "/dav/share/", headers={"Depth": "0"},
        body=propfind_body("D:quota-available-bytes", "D:quota-used-bytes"),
    )  # fmt: skip
    st = os.statvfs(server.root)
    props = multistatus(reply)["/dav/share/"]
    available_status, available = props[f"{DAV}quota-available-bytes"]
    used_status, used = props[f"{DAV}quota-used-bytes"]
    assert (available_status, used_status) == (200, 200), reply.text
    tolerance = 16 << 20
    expected_available = st.f_bavail * st.f_frsize
    expected_used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert abs(int(available.text or "-1") - expected_available) <= tolerance, (
        available.text, expected_available,
    )  # fmt: skip
    assert abs(int(used.text or "-1") - expected_used) <= tolerance, (used.text, expected_used)


# -- conditional and partial GET, conditional PUT ---------------------------------------------


def test_etag_last_modified_range_and_conditions(server: Server) -> None:
    """ETag and Last-Modified, Range (206, suffix, open-ended, 416), 304 and 412."""
    data = bytes(range(256)) * 40
    target = server.root / "share" / "data.bin"
    assert call(server, "PUT", "/dav/share/data.bin", body=data).status == 201
    full = call(server, "GET", "/dav/share/data.bin")
    assert full.status == 200 and full.body == data
    etag = full.header("ETag")
    assert re.fullmatch(r'(W/)?"[^"]+"', etag), etag
    mtime = target.stat().st_mtime
    assert full.header("Last-Modified") == email.utils.formatdate(int(mtime), usegmt=True)
    assert full.header("Accept-Ranges") == "bytes"
    head = call(server, "HEAD", "/dav/share/data.bin")
    assert head.status == 200 and head.header("ETag") == etag and head.body == b""

    cases = {
        "bytes=10-19": (10, 20),
        "bytes=-5": (len(data) - 5, len(data)),
        f"bytes={len(data) - 7}-": (len(data) - 7, len(data)),
        "bytes=0-0": (0, 1),
        f"bytes=100-{len(data) * 3}": (100, len(data)),
    }
    for spec, (start, end) in cases.items():
        part = call(server, "GET", "/dav/share/data.bin", headers={"Range": spec})
        assert part.status == 206, f"{spec}: {part.status}"
        assert part.body == data[start:end], spec
        assert part.header("Content-Range") == f"bytes {start}-{end - 1}/{len(data)}", spec
        assert int(part.header("Content-Length")) == end - start
    beyond = call(server, "GET", "/dav/share/data.bin", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416, beyond.status
    assert beyond.header("Content-Range") == f"bytes */{len(data)}"

    assert call(server, "GET", "/dav/share/data.bin", headers={"If-None-Match": etag}).status == 304
    other = call(server, "GET", "/dav/share/data.bin", headers={"If-None-Match": '"nope"'})
    assert other.status == 200 and other.body == data

    before = snapshot(server.root)
    stale = call(
        server, "PUT", "/dav/share/data.bin", body=b"lost update", headers={"If-Match": '"stale"'}
    )
    assert stale.status == 412, stale.status
    assert diff(before, snapshot(server.root)) == []
    fresh = call(
        server, "PUT", "/dav/share/data.bin", body=b"good update", headers={"If-Match": etag}
    )
    assert fresh.status == 204, fresh.text
    assert target.read_bytes() == b"good update"
    assert fresh.header("ETag") not in ("", etag)


@pytest.mark.parametrize(
    "spec",
    ["bytes=5-2", "bytes=-0", "items=0-1"],
    ids=["reversed", "empty-suffix", "unknown-unit"],
)
def test_malformed_range_never_serves_other_bytes(server: Server, spec: str) -> None:
    """A Range the server cannot honour is ignored (200, whole file) or refused (416).

    RFC 9110 14.2: an invalid range set or unknown unit is ignored; a suffix of 0 bytes
    is unsatisfiable. Never a 206 carrying bytes the client did not ask for.
    """
    data = b"0123456789abcdefghij"
    (server.root / "share" / "r.txt").write_bytes(data)
    reply = call(server, "GET", "/dav/share/r.txt", headers={"Range": spec})
    assert reply.status in (200, 416), (
        f"Range: {spec}: {reply.status} Content-Range {reply.header('Content-Range')!r} "
        f"body {reply.body!r}"
    )
    if reply.status == 200:
        assert reply.body == data


# -- data safety of uploads --------------------------------------------------------------------


@pytest.mark.parametrize(
    "existing,chunked",
    [(True, False), (False, False), (True, True)],
    ids=["over-existing", "new-file", "chunked-over-existing"],
)
def test_aborted_put_leaves_old_content_and_no_temp(
    server: Server, existing: bool, chunked: bool
) -> None:
    """A PUT whose client disconnects after part of the body changes nothing on disk.

    With Content-Length the body stops at 300000 of 1000000 bytes; chunked, the
    connection ends after one 300000-byte chunk, without the terminating empty chunk.
    """
    share = server.root / "share"
    target = share / "victim.txt"
    if existing:
        target.write_bytes(b"precious old content\n")
    before = snapshot(server.root, dir_times=False)
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT)
    try:
        framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": "1000000"}
        head = request_head(server, "PUT", "/dav/share/victim.txt", framing)
        body = b"x" * 300_000
        if chunked:
            body = f"{len(body):x}\r\n".encode() + body + b"\r\n"
        sock.sendall(head.encode() + body)
        time.sleep(0.5)
    finally:
        sock.close()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not diff(before, snapshot(server.root, False)):
        time.sleep(0.1)
    time.sleep(0.2)  # a late commit or clean-up shows here
    changes = diff(before, snapshot(server.root, dir_times=False))
    assert changes == [], (
        f"after an aborted {'chunked ' if chunked else ''}PUT (300000 bytes sent):\n"
        + "\n".join(changes)
        + f"\n{target} holds {target.stat().st_size if target.exists() else 'nothing'} bytes"
        + f"\nlog:\n{log_tail(server.log, 10)}"
    )
    assert temp_files(share) == []
    assert call(server, "GET", "/dav/share/docs/readme.txt").body == b"shared text\n"


def test_put_replaces_atomically(server: Server) -> None:
    """While a PUT is in flight the old file is whole; the new one replaces it by rename."""
    share = server.root / "share"
    target = share / "doc.txt"
    target.write_bytes(b"version one\n")
    target.chmod(0o640)
    old_inode = target.stat().st_ino
    new = b"version two " * 50_000
    half = len(new) // 2
    gate = threading.Event()

    def parts() -> Iterator[bytes]:
        yield new[:half]
        gate.wait(TIMEOUT)
        yield new[half:]

    with open(target, "rb") as held:
        result: list[tuple[Reply | None, list[BaseException]]] = []
        head = request_head(server, "PUT", "/dav/share/doc.txt", {"Content-Length": str(len(new))})
        worker = threading.Thread(
            target=lambda: result.append(raw_exchange(server, head, parts())), daemon=True
        )
        worker.start()
        try:
            deadline = time.monotonic() + 10
            while not temp_files(share) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert temp_files(share), "no hidden temp file while the upload is in flight"
            assert target.read_bytes() == b"version one\n"
        finally:
            gate.set()
            worker.join(TIMEOUT)
        reply, errors = result[0]
        assert reply is not None and reply.status == 204, (reply, errors)
        assert held.read() == b"version one\n"
    assert target.read_bytes() == new
    st = target.stat()
    assert st.st_ino != old_inode
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert temp_files(share) == []


def test_put_to_missing_parent_is_409(server: Server) -> None:
    """PUT under a folder that does not exist: 409 Conflict, nothing created."""
    before = snapshot(server.root)
    reply = call(server, "PUT", "/dav/share/no/such/folder/file.txt", body=b"x")
    assert reply.status == 409, reply.status
    assert diff(before, snapshot(server.root)) == []


def test_put_enospc_is_507_and_keeps_old_file(tmp_path: Path, client_key: Path) -> None:
    """On a full filesystem a PUT fails with 507; the old file and the free space return."""
    layout = Layout(tmp_path, tmp_path / "root", tmp_path / "state")
    layout.root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(layout.root)], check=True)
    try:
        make_tree(layout.root, layout.outside)
        target = layout.root / "share" / "small.txt"
        target.write_bytes(b"small but precious\n")
        free_before = os.statvfs(layout.root).f_bavail
        with dedicated(layout, client_key) as web:
            size = 20 << 20
            head = request_head(web, "PUT", "/dav/share/small.txt", {"Content-Length": str(size)})
            chunk = b"z" * (1 << 20)
            reply, errors = raw_exchange(web, head, (chunk for _ in range(size >> 20)))
            assert reply is not None, f"no answer (sender: {errors})\n{log_tail(web.log)}"
            assert reply.status == 507, f"{reply.status}: {reply.text[:300]}"
            assert target.read_bytes() == b"small but precious\n"
            assert temp_files(target.parent) == []
            assert os.statvfs(layout.root).f_bavail >= free_before - 2
            follow = call(web, "GET", "/dav/share/small.txt")
            assert follow.status == 200 and follow.body == b"small but precious\n"
    finally:
        subprocess.run(["umount", str(layout.root)], check=False)


# -- XML attacks -------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE D:{root} [\n <!ENTITY l0 "lol">\n'
    + "".join(f' <!ENTITY l{i} "{f"&l{i - 1};" * 10}">\n' for i in range(1, 10))
    + "]>\n"
)
XML_ATTACKS = {
    "billion-laughs": (BILLION_LAUGHS, "&l9;"),
    "external-entity": (
        '<?xml version="1.0"?>\n<!DOCTYPE D:{root} [ <!ENTITY xxe SYSTEM "file://{secret}"> '
        '<!ENTITY pw SYSTEM "file:///etc/passwd"> ]>\n',
        "&xxe;&pw;",
    ),
    "parameter-entity": (
        '<?xml version="1.0"?>\n<!DOCTYPE D:{root} [ <!ENTITY % ext SYSTEM "file://{secret}"> '
        "%ext; ]>\n",
        "x",
    ),
    "external-dtd": ('<?xml version="1.0"?>\n<!DOCTYPE D:{root} SYSTEM "file://{secret}">\n', "x"),
}


def attack_body(method: str, attack: str, secret: Path) -> bytes:
    """A PROPFIND, PROPPATCH or LOCK body carrying ``attack`` where text goes."""
    prolog, text = XML_ATTACKS[attack]
    root = {"PROPFIND": "propfind", "PROPPATCH": "propertyupdate", "LOCK": "lockinfo"}[method]
    prolog = prolog.replace("{root}", root).replace("{secret}", str(secret))
    if method == "PROPFIND":
        element = f'<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>{text}</D:displayname>'
        element += "</D:prop></D:propfind>"
    elif method == "PROPPATCH":
        element = (
            f'<D:propertyupdate xmlns:D="DAV:" xmlns:T="{TEST_NS}"><D:set><D:prop>'
            f"<T:leak>{text}</T:leak></D:prop></D:set></D:propertyupdate>"
        )
    else:
        element = (
            '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            f"<D:locktype><D:write/></D:locktype><D:owner>{text}</D:owner></D:lockinfo>"
        )
    return (prolog + element).encode()


@pytest.mark.parametrize("attack", list(XML_ATTACKS))
def test_xml_attacks_are_refused(server: Server, attack: str) -> None:
    """Entity expansion, external entities and DTDs in request bodies: 4xx, fast, no leak."""
    secret = server.outside / "secret.txt"
    (server.root / "share" / "target.txt").write_bytes(b"t")
    for method in ("PROPFIND", "PROPPATCH", "LOCK"):
        started = time.monotonic()
        reply = call(
            server, method, "/dav/share/target.txt", body=attack_body(method, attack, secret),
            headers={"Depth": "0", "Content-Type": "application/xml"},
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert 400 <= reply.status < 500, f"{method} {attack}: {reply.status} {reply.text[:400]}"
        assert elapsed < 10, f"{method} {attack}: {elapsed:.1f} s"
        for leak in (SECRET.strip(), b"root:x:0:0", b"lollollol"):
            assert leak not in reply.body, f"{method} {attack}: {reply.text[:400]}"
    stored = call(
        server, "PROPFIND", "/dav/share/target.txt", headers={"Depth": "0"},
        body=propfind_body("T:leak", "D:lockdiscovery"),
    )  # fmt: skip
    props = multistatus(stored)["/dav/share/target.txt"]
    assert props[f"{{{TEST_NS}}}leak"][0] == 404, stored.text
    assert props[f"{DAV}lockdiscovery"][1].find(f"{DAV}activelock") is None, stored.text
    assert call(server, "GET", "/dav/share/docs/readme.txt").body == b"shared text\n"


def test_propfind_body_over_1mib_is_413(server: Server) -> None:
    """XML bodies are bounded: a 1.5 MiB PROPFIND body gets 413 and the server stays up."""
    filler = b"<!-- " + b"x" * (3 << 19) + b" -->"
    body = propfind_body("D:displayname").replace(b"<D:prop>", filler + b"<D:prop>")
    head = request_head(
        server, "PROPFIND", "/dav/share/",
        {"Depth": "0", "Content-Type": "application/xml", "Content-Length": str(len(body))},
    )  # fmt: skip
    reply, errors = raw_exchange(server, head, [body], method="PROPFIND")
    assert reply is not None, errors
    assert reply.status == 413, f"{reply.status}: {reply.text[:300]}"
    assert call(server, "PROPFIND", "/dav/share/", headers={"Depth": "0"}).status == 207


@pytest.mark.parametrize("depth", ["infinity", "Infinity", None])
def test_propfind_infinite_depth_is_403(server: Server, depth: str | None) -> None:
    """Depth infinity (the default when Depth is missing) is refused with the DAV: condition."""
    headers = {} if depth is None else {"Depth": depth}
    reply = call(server, "PROPFIND", "/dav/", headers=headers)
    assert reply.status == 403, f"Depth {depth}: {reply.status}"
    error = ET.fromstring(reply.body)
    assert error.tag == f"{DAV}error" and error.find(f"{DAV}propfind-finite-depth") is not None


# -- read-only user ----------------------------------------------------------------------------

PROPPATCH_BODY = (
    f'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:T="{TEST_NS}"><D:set>'
    "<D:prop><T:color>red</T:color></D:prop></D:set></D:propertyupdate>"
).encode()
READER_WRITES: dict[str, tuple[str, str, dict[str, str], bytes]] = {
    "put-new": ("PUT", "/dav/new.txt", {}, b"new"),
    "put-existing": ("PUT", "/dav/docs/readme.txt", {}, b"overwritten"),
    "delete-file": ("DELETE", "/dav/docs/readme.txt", {}, b""),
    "delete-folder": ("DELETE", "/dav/docs", {}, b""),
    "mkcol": ("MKCOL", "/dav/newdir", {}, b""),
    "copy": ("COPY", "/dav/docs/readme.txt", {"Destination": "/dav/copy.txt"}, b""),
    "move": ("MOVE", "/dav/docs/readme.txt", {"Destination": "/dav/moved.txt"}, b""),
    "move-folder": ("MOVE", "/dav/docs", {"Destination": "/dav/docs2"}, b""),
    "proppatch": ("PROPPATCH", "/dav/docs/readme.txt", {}, PROPPATCH_BODY),
    "lock-existing": ("LOCK", "/dav/docs/readme.txt", {"Depth": "0"}, LOCK_BODY),
    "lock-folder": ("LOCK", "/dav/docs", {"Depth": "infinity"}, LOCK_BODY),
    "lock-unmapped": ("LOCK", "/dav/unmapped.txt", {"Depth": "0"}, LOCK_BODY),
}


@pytest.mark.parametrize("case", list(READER_WRITES))
def test_reader_write_methods_are_403(server: Server, case: str) -> None:
    """Every write method of the read-only user: 403, the disk unchanged, no lock or prop."""
    method, path, headers, body = READER_WRITES[case]
    if "Destination" in headers:
        headers = {**headers, "Destination": server.url + headers["Destination"]}
    headers = {**headers, "Content-Type": "application/xml"} if body.startswith(b"<") else headers
    before = snapshot(server.root)
    reply = call(server, method, path, user="reader", body=body, headers=headers)
    assert reply.status == 403, f"{method} {path} as reader: {reply.status} {reply.text[:300]}"
    assert diff(before, snapshot(server.root)) == []
    # Nothing was recorded on the side either: no dead property, no lock blocking others.
    props = multistatus(
        call(
            server, "PROPFIND", "/dav/share/docs/readme.txt", headers={"Depth": "0"},
            body=propfind_body("T:color", "D:lockdiscovery"),
        )
    )["/dav/share/docs/readme.txt"]  # fmt: skip
    assert props[f"{{{TEST_NS}}}color"][0] == 404
    assert props[f"{DAV}lockdiscovery"][1].find(f"{DAV}activelock") is None
    write = call(server, "PUT", "/dav/share/docs/readme.txt", body=b"root still writes\n")
    assert write.status == 204, f"root's PUT after reader's {method}: {write.status}"


# -- jail --------------------------------------------------------------------------------------

ESCAPES = [
    "/dav/../etc/passwd",
    "/dav/../../etc/passwd",
    "/dav/%2e%2e/%2e%2e/etc/passwd",
    "/dav/%2E%2E/%2E%2E/%2E%2E/outside/secret.txt",
    "/dav/..%2f..%2fetc%2fpasswd",
    "/dav/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/dav/docs/..%2f..%2f..%2foutside%2fsecret.txt",
    "/dav/%2fetc/passwd",
    "/dav//etc/passwd",
    "/dav/..\\..\\etc\\passwd",
    "/dav/docs/%2e%2e/%2e%2e/etc/passwd",
    "/dav/%252e%252e/%252e%252e/etc/passwd",
    "/dav/abs/secret.txt",
    "/dav/rel/secret.txt",
    "/dav/up/passwd",
    "/dav/absfile",
    "/dav/docs/deep/secret.txt",
    "/../etc/passwd",
]


def plant_links(server: Server) -> None:
    """Links in the reader's jail leading to the outside folder and the rest of the root."""
    share = server.root / "share"
    os.symlink(server.outside, share / "abs")
    os.symlink("../../outside", share / "rel")
    os.symlink("../etc", share / "up")
    os.symlink(server.outside / "secret.txt", share / "absfile")
    os.symlink("../../../outside", share / "docs" / "deep")


@pytest.mark.parametrize("user", ["reader", "root"])
def test_jail_escapes_never_return_outside_content(server: Server, user: str) -> None:
    """Dot-dot, encoded and backslash paths and planted links never serve what is outside."""
    plant_links(server)
    before = snapshot(server.outside)
    # root may read the served root's etc/passwd; nobody may read the outside folder.
    markers = [SECRET.strip()] + ([b"root:x:0:0", b"alice:x:1000"] if user == "reader" else [])
    failures: list[str] = []
    for escape in ESCAPES:
        path = escape.replace("/dav/", "/dav/share/", 1) if user == "root" else escape
        for method, headers in (("GET", {}), ("PROPFIND", {"Depth": "1"})):
            reply = call(server, method, path, user=user, headers=headers, strict=False)
            leaked = [m for m in markers if m in reply.body]
            if reply.status == 207:
                hrefs = re.findall(rb"<[^>]*href>([^<]*)<", reply.body)
                names = (b"secret", b"passwd") if user == "reader" else (b"secret",)
                leaked += [h for h in hrefs if any(n in h for n in names)]
            if leaked:
                failures.append(f"{method} {path}: {reply.status} {leaked} {reply.body[:200]!r}")
        if user == "root":
            call(server, "PUT", path + ".new", body=b"x", strict=False)
    assert failures == [], "\n".join(failures)
    assert diff(before, snapshot(server.outside)) == []
    # The links themselves are listed (or not), but never followed outside.
    listing = call(server, "PROPFIND", "/dav/share/abs/", user="root", headers={"Depth": "1"})
    assert b"secret.txt" not in listing.body, listing.text[:300]


def test_escaping_path_gets_a_complete_answer(server: Server) -> None:
    """A path that climbs above / is refused with a whole response, never a hung request."""
    for path in ("/dav/%2e%2e/%2e%2e/etc/passwd", "/../etc/passwd"):
        reply = call(server, "GET", path, user="reader", timeout=5)
        assert 400 <= reply.status < 500, f"{path}: {reply.status}"
        assert b"root:x" not in reply.body
    assert call(server, "GET", "/dav/share/docs/readme.txt").body == b"shared text\n"


@pytest.mark.parametrize(
    "destination",
    [
        "http://evil.example.com/dav/share/x.txt",
        "https://127.0.0.1:1/dav/share/x.txt",
        "//evil.example.com/dav/share/x.txt",
    ],
)
@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_copy_move_to_another_host_is_refused(
    server: Server, method: str, destination: str
) -> None:
    """A Destination on another host is never performed (502 or 403)."""
    before = snapshot(server.root), snapshot(server.outside)
    reply = call(server, method, "/dav/share/docs/readme.txt", headers={"Destination": destination})
    assert reply.status in (502, 403), f"{method} -> {destination}: {reply.status}"
    assert diff(before[0], snapshot(server.root)) == []
    assert diff(before[1], snapshot(server.outside)) == []


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
@pytest.mark.parametrize(
    "destination",
    ["/dav/../../x.txt", "/dav/share/../../../x.txt", "/dav/%2e%2e/%2e%2e/x.txt"],
)
def test_copy_move_destination_stays_inside(server: Server, method: str, destination: str) -> None:
    """A Destination climbing out of the share: refused or kept inside the served root."""
    before_outer = {p.name for p in server.root.parent.iterdir() if p != server.root} | set(
        os.listdir(server.outside)
    )
    reply = call(server, method, "/dav/share/docs/readme.txt", headers={"Destination": destination})
    after_outer = {p.name for p in server.root.parent.iterdir() if p != server.root} | set(
        os.listdir(server.outside)
    )
    assert after_outer == before_outer, f"{method} -> {destination}: {reply.status}"
    assert not (server.root.parent / "x.txt").exists()
    assert not (server.root.parent.parent / "x.txt").exists()
    if reply.status < 300:
        assert any(server.root.rglob("x.txt")), f"{reply.status} but no x.txt inside"
    else:
        assert reply.status in (400, 403, 404, 409, 502), reply.status
        assert (server.root / "share" / "docs" / "readme.txt").read_bytes() == b"shared text\n"


def test_reader_move_within_jail_counts_as_delete(server: Server) -> None:
    """MOVE removes the source: refused to the read-only user even inside its jail."""
    before = snapshot(server.root)
    for destination in ("/dav/docs/renamed.txt", "/dav/readme.txt"):
        reply = call(
            server, "MOVE", "/dav/docs/readme.txt", user="reader",
            headers={"Destination": server.url + destination, "Overwrite": "T"},
        )  # fmt: skip
        assert reply.status == 403, f"MOVE -> {destination}: {reply.status}"
    assert diff(before, snapshot(server.root)) == []


# -- active content ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,data",
    [
        ("page.html", b"<html><script>alert(document.cookie)</script></html>"),
        ("image.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
        ("page.xhtml", b'<html xmlns="http://www.w3.org/1999/xhtml"><script/></html>'),
        ("feed.xml", b"<?xml version='1.0'?><x:script xmlns:x='http://www.w3.org/1999/xhtml'/>"),
    ],
    ids=["html", "svg", "xhtml", "xml"],
)
def test_uploaded_active_content_is_a_sandboxed_attachment(
    server: Server, name: str, data: bytes
) -> None:
    """HTML, SVG and XML come back as attachments with nosniff and a sandbox CSP."""
    assert call(server, "PUT", f"/dav/share/{name}", body=data).status == 201
    for method in ("GET", "HEAD"):
        reply = call(server, method, f"/dav/share/{name}")
        assert reply.status == 200
        assert reply.header("X-Content-Type-Options") == "nosniff", f"{method} {name}"
        assert reply.header("Content-Disposition").startswith("attachment"), (
            f"{method} {name}: Content-Type {reply.header('Content-Type')!r}"
        )
        assert "sandbox" in reply.header("Content-Security-Policy"), f"{method} {name}"
    plain = call(server, "GET", "/dav/share/docs/readme.txt")
    assert plain.header("X-Content-Type-Options") == "nosniff"


# -- persistence of dead properties and locks ----------------------------------------------------


def test_dead_properties_and_locks_survive_restart(tmp_path: Path, client_key: Path) -> None:
    """A PROPPATCHed property and a LOCK are still there after the server restarts."""
    layout = new_layout(tmp_path)
    path = "/dav/share/docs/readme.txt"
    with dedicated(layout, client_key, name="first") as web:
        patched = call(
            web, "PROPPATCH", path, body=PROPPATCH_BODY,
            headers={"Content-Type": "application/xml"},
        )  # fmt: skip
        assert multistatus(patched)[path][f"{{{TEST_NS}}}color"][0] == 200
        locked = lock(web, path)
        assert locked.status == 200, locked.text
        token = lock_token(locked)
    with dedicated(layout, client_key, name="second") as web:
        found = call(
            web, "PROPFIND", path, headers={"Depth": "0"},
            body=propfind_body("T:color", "D:lockdiscovery"),
        )  # fmt: skip
        props = multistatus(found)[path]
        status, color = props[f"{{{TEST_NS}}}color"]
        assert (status, color.text) == (200, "red"), found.text
        discovery = props[f"{DAV}lockdiscovery"][1]
        tokens = [t.text for t in discovery.iter(f"{DAV}href") if t.text and "lock" in t.text]
        assert token.strip("<>") in tokens, found.text
        refused = call(web, "PUT", path, body=b"no token")
        assert refused.status == 423, refused.status
        assert call(web, "UNLOCK", path, headers={"Lock-Token": token}).status == 204
        assert call(web, "PUT", path, body=b"unlocked").status == 204
    assert (layout.root / "share" / "docs" / "readme.txt").read_bytes() == b"unlocked"


# -- TLS and the loopback rule -------------------------------------------------------------------


def slow_get(target: Target, path: str) -> bytes:
    """GET ``path`` on a connection that reads nothing for a while, then reads in small
    pieces: the server's sends wait on full socket buffers."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    raw.settimeout(TIMEOUT)
    raw.connect(("127.0.0.1", target.http_port))
    tls = isinstance(target, Web) and target.tls
    with insecure_context().wrap_socket(raw) if tls else raw as conn:
        conn.sendall(request_head(target, "GET", path, {"Connection": "close"}).encode())
        time.sleep(0.5)
        received = bytearray()
        while chunk := conn.recv(16 * 1024):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length and int(length.group(1)) == len(body), (head, len(body))
    return body


@pytest.mark.parametrize("prefix", ["/dav/", "/api/v1/files/"])
def test_big_bodies_reach_a_slow_reader_whole(server: Server, prefix: str) -> None:
    """A 24 MiB body sent over a connection whose reader lags arrives byte for byte."""
    content = os.urandom(24 << 20)
    (server.root / "slow-read.bin").write_bytes(content)
    try:
        assert slow_get(server, prefix + "slow-read.bin") == content
    finally:
        (server.root / "slow-read.bin").unlink()


def test_tls_self_signed(tmp_path: Path, client_key: Path) -> None:
    """--tls: the banner shows the certificate's SHA-256, HTTPS serves Basic, the key is 0600."""
    layout = new_layout(tmp_path)
    with dedicated(layout, client_key, args=["--tls"]) as web:
        match = re.search(r"TLS certificate SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", web.banner)
        assert match, web.banner
        assert web.tls, web.banner
        with (
            socket.create_connection(("127.0.0.1", web.http_port), timeout=TIMEOUT) as raw,
            insecure_context().wrap_socket(raw) as wrapped,
        ):
            der = wrapped.getpeercert(binary_form=True)
        assert der is not None
        digest = hashlib.sha256(der).hexdigest().upper()
        assert match.group(1).replace(":", "") == digest
        reply = call(web, "PROPFIND", "/dav/", headers={"Depth": "1"})
        assert "/dav/share/" in multistatus(reply)
        assert call(web, "GET", "/dav/share/docs/readme.txt").body == b"shared text\n"
        content = os.urandom(8 << 20)
        (layout.root / "big.bin").write_bytes(content)
        assert slow_get(web, "/dav/big.bin") == content
        assert call(web, "GET", "/dav/", user=None).status == 401
        assert call(web, "GET", "/dav/", password="wrong").status == 401
        key = layout.state / "tls-key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, oct(key.stat().st_mode)
        assert key.stat().st_uid == os.getuid()
        with socket.create_connection(("127.0.0.1", web.http_port), timeout=5) as plain:
            plain.sendall(request_head(web, "GET", "/dav/share/docs/readme.txt", {}).encode())
            try:
                answer = plain.recv(4096)
            except (TimeoutError, ConnectionResetError):
                answer = b""
        assert b"shared text" not in answer and not answer.startswith(b"HTTP/1.1 2"), answer


def non_loopback_address() -> str:
    """An IPv4 address of this machine that is not loopback (the default route's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    assert not address.startswith("127."), f"no non-loopback address here ({address})"
    return address


def test_basic_over_plain_http_only_from_loopback(tmp_path: Path, client_key: Path) -> None:
    """Plain-HTTP Basic works from loopback; from another address it is refused (403)."""
    layout = new_layout(tmp_path)
    with dedicated(layout, client_key, args=["--http", "0.0.0.0:0"]) as web:
        local = call(web, "GET", "/dav/share/docs/readme.txt")
        assert local.status == 200 and local.body == b"shared text\n"
        address = non_loopback_address()
        remote = call(web, "GET", "/dav/share/docs/readme.txt", host=address)
        assert remote.status == 403, f"Basic over HTTP from {address}: {remote.status}"
        assert b"shared text" not in remote.body
        anonymous = call(web, "GET", "/dav/", user=None, host=address)
        assert anonymous.status == 401


# -- trees with links and locks ----------------------------------------------------------


def _tree_with_links(top: Path) -> None:
    """A folder with a file, a link to a folder beside it, and a link loop."""
    (top / "src").mkdir(parents=True)
    (top / "src" / "s.txt").write_bytes(b"source")
    (top / "precious").mkdir()
    (top / "precious" / "keep.txt").write_bytes(b"precious")
    os.symlink("../precious", top / "src" / "to-precious")
    os.symlink(".", top / "src" / "self")


def test_copy_over_a_folder_never_deletes_through_its_links(server: Server) -> None:
    """COPY with Overwrite: T onto a folder holding a link to another folder replaces the
    destination, and leaves what the link leads to alone."""
    top = server.root / "cp"
    _tree_with_links(top)
    (top / "dst").mkdir()
    os.symlink("../precious", top / "dst" / "lnk")
    headers = {"Destination": "/dav/cp/dst", "Overwrite": "T"}
    reply = call(server, "COPY", "/dav/cp/src", headers=headers, timeout=20)
    assert reply.status in (201, 204), reply.text[:300]
    assert (top / "precious" / "keep.txt").read_bytes() == b"precious"
    assert (top / "dst" / "s.txt").read_bytes() == b"source"
    assert os.readlink(top / "dst" / "to-precious") == "../precious", "a link is copied as a link"
    assert os.readlink(top / "dst" / "self") == "."


@pytest.mark.parametrize("method", ["COPY", "MOVE", "DELETE"])
def test_link_loops_never_send_a_tree_walk_round_and_round(server: Server, method: str) -> None:
    """Two links to their own folder (a walk through them never ends) are handled as
    links: the request ends at once, and nothing outside the tree is touched."""
    top = server.root / "loops"
    _tree_with_links(top)
    os.symlink(".", top / "src" / "again")
    headers = {"Destination": "/dav/loops/out"} if method != "DELETE" else {}
    reply = call(server, method, "/dav/loops/src", headers=headers, timeout=20)
    assert reply.status in (201, 204), reply.text[:300]
    assert (top / "precious" / "keep.txt").read_bytes() == b"precious"
    if method == "DELETE":
        assert not (top / "src").exists()
    else:
        assert sorted(os.listdir(top / "out")) == ["again", "s.txt", "self", "to-precious"]
        assert os.path.islink(top / "out" / "again")


@pytest.mark.parametrize("url", ["/dav/lk", "/dav/lk/"])
def test_delete_of_a_folder_with_a_locked_member_keeps_both(server: Server, url: str) -> None:
    """A lock on a member that the request does not hold refuses the folder's DELETE
    (423), with or without a trailing slash; with the token, the DELETE goes through."""
    (server.root / "lk").mkdir()
    (server.root / "lk" / "locked.txt").write_bytes(b"keep")
    (server.root / "lk" / "other.txt").write_bytes(b"other")
    token = lock_token(lock(server, "/dav/lk/locked.txt"))
    reply = call(server, "DELETE", url, strict=False)
    assert reply.status == 423, reply.text[:300]
    assert (server.root / "lk" / "locked.txt").read_bytes() == b"keep"
    assert (server.root / "lk" / "other.txt").exists()
    held = {"If": f"<http://127.0.0.1:{server.http_port}/dav/lk/locked.txt> ({token})"}
    assert call(server, "DELETE", url, headers=held, strict=False).status == 204
    assert not (server.root / "lk").exists()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "MOVE", "COPY"])
@pytest.mark.parametrize("path", ["/dav/", "/dav"])
def test_the_share_root_is_never_replaced_moved_or_deleted(
    server: Server, method: str, path: str
) -> None:
    """The user's whole folder answers 405 with an Allow header, never 500."""
    headers = {"Destination": "/dav/elsewhere/"} if method in ("MOVE", "COPY") else {}
    reply = call(server, method, path, headers=headers, body=b"x" if method == "PUT" else None,
                 strict=False)  # fmt: skip
    assert reply.status == 405, f"{method} {path}: {reply.status} {reply.text[:200]}"
    assert "PROPFIND" in reply.headers.get("Allow", "")
    assert (server.root / "share" / "docs" / "readme.txt").exists()


def test_an_mtime_no_file_can_have_is_refused_before_the_upload(server: Server) -> None:
    """X-OC-Mtime beyond what a file's time can hold gets 400, and the old content stays."""
    target = server.root / "share" / "docs" / "readme.txt"
    headers = {"X-OC-Mtime": "99999999999999999999"}
    reply = call(server, "PUT", "/dav/share/docs/readme.txt", headers=headers, body=b"new",
                 strict=False)  # fmt: skip
    assert reply.status == 400, reply.text[:200]
    assert target.read_text() == "shared text\n"
    ok = call(server, "PUT", "/dav/share/docs/readme.txt", headers={"X-OC-Mtime": "1000000000"},
              body=b"new")  # fmt: skip
    assert ok.status in (200, 204) and target.read_bytes() == b"new"


@pytest.mark.parametrize("chars", [77, 85])
def test_long_multibyte_names_are_uploaded(server: Server, chars: int) -> None:
    """Names of up to 255 bytes of multibyte characters are uploaded whole (the upload's
    temp name once counted characters, not bytes)."""
    name = "中" * chars  # 231 and 255 bytes
    reply = call(server, "PUT", "/dav/share/" + quote(name), body=b"wide")
    assert reply.status == 201, reply.text[:200]
    assert (server.root / "share" / name).read_bytes() == b"wide"


def test_names_xml_cannot_carry_are_still_listed(server: Server) -> None:
    """A folder holding a name whose bytes are not UTF-8 and one with a control character
    lists as well-formed XML: the hrefs quote the bytes, the display names show U+FFFD."""
    folder = server.root / "odd"
    folder.mkdir()
    with open(os.fsencode(folder) + b"/inv\xff.txt", "wb") as odd:
        odd.write(b"x")
    (folder / "a\x01b").write_bytes(b"y")
    body = propfind_body("D:displayname", "D:getcontentlength")
    found = multistatus(call(server, "PROPFIND", "/dav/odd/", headers={"Depth": "1"}, body=body))
    reply = call(server, "PROPFIND", "/dav/odd/", headers={"Depth": "1"}, body=body)
    assert b"/dav/odd/inv%FF.txt" in reply.body and b"/dav/odd/a%01b" in reply.body
    names = {props[f"{DAV}displayname"][1].text for props in found.values()}
    assert {"inv\ufffd.txt", "a\ufffdb"} <= names, names


def test_ranges_wsgidav_would_misread_are_served_right(server: Server) -> None:
    """Several ranges (WsgiDAV sent the last alone) get the whole file with 200; one
    range with spaces gets exactly those bytes."""
    (server.root / "r.txt").write_bytes(b"0123456789")
    whole = call(server, "GET", "/dav/r.txt", headers={"Range": "bytes=0-1,5-6"})
    assert (whole.status, whole.body) == (200, b"0123456789")
    part = call(server, "GET", "/dav/r.txt", headers={"Range": "bytes= 1 - 2"})
    assert (part.status, part.body) == (206, b"12"), part.headers


@pytest.mark.parametrize("method", ["GET", "DELETE", "PROPFIND"])
def test_a_path_that_is_not_utf8_gets_a_clear_answer(server: Server, method: str) -> None:
    """WebDAV cannot name bytes that are not UTF-8: a complete 400 that says so, and the
    file stays (it is reachable over SFTP and the file API)."""
    with open(os.fsencode(server.root) + b"/inv\xff.txt", "wb") as odd:
        odd.write(b"x")
    reply = call(server, method, "/dav/inv%FF.txt", headers={"Depth": "0"}, strict=False)
    assert reply.status == 400 and b"UTF-8" in reply.body, (reply.status, reply.body[:200])
    assert os.path.exists(os.fsencode(server.root) + b"/inv\xff.txt")


def test_if_modified_since_its_own_last_modified_is_304(server: Server) -> None:
    """A client sending back the Last-Modified it was given gets 304, and one with an
    earlier date gets the file (RFC 9110 §13.1.3)."""
    (server.root / "m.txt").write_bytes(b"m")
    stamp = call(server, "GET", "/dav/m.txt").headers["Last-Modified"]
    assert call(server, "GET", "/dav/m.txt", headers={"If-Modified-Since": stamp}).status == 304
    early = email.utils.formatdate(os.stat(server.root / "m.txt").st_mtime - 60, usegmt=True)
    reply = call(server, "GET", "/dav/m.txt", headers={"If-Modified-Since": early})
    assert (reply.status, reply.body) == (200, b"m")


def test_if_none_match_wins_over_if_modified_since(server: Server) -> None:
    """A GET or HEAD with both If-None-Match and If-Modified-Since (davfs2 revalidates its
    cache so) is judged on If-None-Match alone (RFC 9110 §13.1.3): the file's own tag gives
    304 whatever the date, another tag the file. It was 412 when the date was the file's
    own Last-Modified, and davfs2 then failed to open the file ("Invalid argument")."""
    (server.root / "n.txt").write_bytes(b"n")
    first = call(server, "GET", "/dav/n.txt")
    etag, stamp = first.header("ETag"), first.header("Last-Modified")
    early = email.utils.formatdate(os.stat(server.root / "n.txt").st_mtime - 60, usegmt=True)
    for method in ("GET", "HEAD"):
        for since in (stamp, early):
            conditions = {"If-None-Match": etag, "If-Modified-Since": since}
            same = call(server, method, "/dav/n.txt", headers=conditions)
            assert same.status == 304, (method, since, same.status, same.text[:200])
            conditions = {"If-None-Match": '"other"', "If-Modified-Since": since}
            other = call(server, method, "/dav/n.txt", headers=conditions)
            assert other.status == 200, (method, since, other.status, other.text[:200])
            assert other.body == (b"n" if method == "GET" else b"")


def test_copy_never_writes_through_a_link_in_the_destination(server: Server) -> None:
    """COPY with Overwrite: T where the destination holds a link at the name of a source
    folder: the link is replaced by a real folder, and what it led to is left alone."""
    top = server.root / "cpl"
    (top / "src" / "D").mkdir(parents=True)
    (top / "src" / "D" / "f.txt").write_bytes(b"source")
    os.symlink("f.txt", top / "src" / "D" / "L")
    (top / "other" / "L").mkdir(parents=True)
    (top / "other" / "L" / "keep.txt").write_bytes(b"keep")
    (top / "dst").mkdir()
    os.symlink("../other", top / "dst" / "D")
    headers = {"Destination": "/dav/cpl/dst", "Overwrite": "T"}
    reply = call(server, "COPY", "/dav/cpl/src", headers=headers, timeout=20)
    assert reply.status in (201, 204), reply.text[:300]
    assert (top / "other" / "L" / "keep.txt").read_bytes() == b"keep"
    assert sorted(os.listdir(top / "other")) == ["L"]
    assert not os.path.islink(top / "dst" / "D")
    assert (top / "dst" / "D" / "f.txt").read_bytes() == b"source"
    assert os.readlink(top / "dst" / "D" / "L") == "f.txt"


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Modified-Since": "Fri, 31 Dec 9999 23:59:59 GMT"},
        {"If-Modified-Since": "not a date"},
        {"X-OC-Mtime": "\u00b2"},
    ],
)
def test_odd_condition_headers_never_fail_the_gate(server: Server, headers: dict[str, str]) -> None:
    """Dates out of range and digits that are not ASCII get an answer, never a 500."""
    (server.root / "g.txt").write_bytes(b"g")
    method = "PUT" if "X-OC-Mtime" in headers else "GET"
    body = b"new" if method == "PUT" else None
    reply = call(server, method, "/dav/g.txt", headers=headers, body=body, strict=False)
    assert reply.status < 500, (reply.status, reply.text[:200])


def test_a_folder_listing_keeps_the_connection(server: Server) -> None:
    """A PROPFIND Depth 1 streams its answer chunked: the connection stays open for the
    next request (WsgiDAV closed it after every answer without Content-Length, so each
    listing cost a new connection, and over TLS a new handshake)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT)
    try:
        sockets = []
        for body in (None, propfind_body("D:getcontentlength")):
            conn.request("PROPFIND", "/dav/", body=body, headers={
                "Authorization": basic(), "Depth": "1"})  # fmt: skip
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 207
            assert reply.getheader("Transfer-Encoding") == "chunked"
            assert reply.getheader("Connection") is None
            sockets.append(conn.sock)
        assert sockets[0] is sockets[1] and sockets[0] is not None
    finally:
        conn.close()


def test_copies_of_a_sparse_file_stay_sparse(server: Server) -> None:
    """A 1 TiB sparse file copied over WebDAV and the file API: each copy is done at
    once and takes no room (both wrote the whole TiB of zeros, filling the disk)."""
    share = server.root / "share"
    with open(share / "huge.bin", "wb") as handle:
        handle.seek(1 << 40)
        handle.write(b"end")
    copied = call(server, "COPY", "/dav/share/huge.bin", headers={
        "Destination": f"{server.url}/dav/share/dav-copy.bin"}, timeout=60)  # fmt: skip
    assert copied.status == 201, copied.text
    body = json.dumps({"action": "copy", "to": "/share/api-copy.bin"}).encode()
    moved = call(server, "POST", "/api/v1/files/share/huge.bin", body=body,
                 headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip
    assert moved.status in (200, 201), moved.text
    for name in ("dav-copy.bin", "api-copy.bin"):
        st = (share / name).stat()
        assert st.st_size == (1 << 40) + 3
        assert st.st_blocks * 512 < 1 << 20
