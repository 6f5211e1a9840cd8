"""One lock table for every protocol: a lock taken over WebDAV or the file API is honoured
by SFTP, scp and the file API; reads pass; a lock follows its resource; expiry and the
administrator free it."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from conftest import PASSWORD, READER_PASSWORD, Server, require, served
from test_clients_mount import sshfs_mount

# Finder's LOCK (WebDAVFS): exclusive, depth 0, its owner an href, a timeout of 10 minutes
FINDER_LOCK = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:lockinfo xmlns:D="DAV:">\n'
    b"<D:lockscope><D:exclusive/></D:lockscope>\n"
    b"<D:locktype><D:write/></D:locktype>\n"
    b"<D:owner>\n<D:href>http://www.apple.com/webdav_fs/</D:href>\n</D:owner>\n"
    b"</D:lockinfo>\n"
)
FINDER = {"User-Agent": "WebDAVFS/3.0.0 (03008000) Darwin/21.6.0 (x86_64)"}
FILE = "share/docs/readme.txt"


@pytest.fixture
def server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    with served(tmp_path, client_key) as running:
        yield running


def _request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = b"",
    user: str = "root",
    password: str = PASSWORD,
    chunks: list[bytes] | None = None,
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    """One request; with ``chunks`` a chunked body, as Finder sends its uploads."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        names = {key.replace("_", "-"): value for key, value in headers.items()}
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in {"Authorization": f"Basic {token}", **names}.items():
            conn.putheader(key, value)
        if chunks is not None:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for chunk in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        else:
            conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body or b"")
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def _finder_lock(server: Server, path: str = "/dav/" + FILE, depth: str = "0") -> str:
    """LOCK as Finder sends it; the lock's token."""
    status, headers, body = _request(
        server, "LOCK", path, FINDER_LOCK,
        Content_Type='text/xml; charset="utf-8"', Depth=depth, Timeout="Second-600", **FINDER,
    )  # fmt: skip
    assert status == 200, body
    return headers["Lock-Token"].strip("<>")


def _api_lock(server: Server, path: str, query: str = "") -> dict:
    status, headers, body = _request(server, "POST", f"/api/v1/files/{path}?lock{query}")
    assert status == 200, body
    answer = json.loads(body)
    assert headers["Lock-Token"] == f"<{answer['token']}>"
    return answer


def _sftp(server: Server, commands: str) -> subprocess.CompletedProcess[str]:
    return server.sftp_batch(commands)


def _sftp_refusal(server: Server, op: str, *args: object) -> str:
    """The message of the status an SFTP request gets (OpenSSH's sftp prints only its
    own text for a status code, so asyncssh's client reads the server's)."""

    async def run() -> str:
        async with asyncssh.connect(
            "127.0.0.1", server.port, username="root", client_keys=[str(server.key)],
            known_hosts=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
            try:
                result = getattr(sftp, op)(*args)
                if op == "open":
                    await (await result).close()
                else:
                    await result
            except asyncssh.SFTPError as exc:
                return f"{exc.code}: {exc.reason}"
            return "done"

    return asyncio.run(run())


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    config = server.state.parent / "hoody-mount.toml"
    return subprocess.run(
        [sys.executable, "-m", "hoody_mount", "locks", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_finder_lock_is_honoured_by_sftp_scp_and_the_file_api(
    server: Server, tmp_path: Path
) -> None:
    """Finder locks a file and writes it with its token; sshfs's kind of overwrite
    (OpenSSH sftp ``put``), scp and an API PUT are refused with the lock named; the
    API PUT with the token passes; reads pass over every protocol; UNLOCK frees it."""
    target = server.root / FILE
    token = _finder_lock(server)
    status, _, body = _request(
        server, "PUT", "/dav/" + FILE, chunks=[b"from ", b"Finder\n"], If=f"(<{token}>)", **FINDER
    )
    assert status == 204, body
    assert target.read_bytes() == b"from Finder\n"

    local = tmp_path / "local.txt"
    local.write_text("from sshfs\n")
    done = _sftp(server, f"put {local} /{FILE}\n")
    assert done.returncode != 0
    assert "Permission denied" in done.stderr, done.stderr
    refusal = _sftp_refusal(server, "open", "/" + FILE, "wb")
    assert refusal.startswith(f"3: /{FILE} is locked by root (http://www.apple.com/webdav_fs/) "
                              "until "), refusal  # fmt: skip
    assert re.search(r"\(lock [0-9a-f]{12}\)$", refusal), refusal
    require("scp")
    for legacy in ([], ["-O"]):  # (scp over SFTP, and scp's own protocol)
        copied = subprocess.run(
            ["scp", *legacy, "-P", str(server.port), *server.ssh_options(), str(local),
             f"root@127.0.0.1:/{FILE}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert copied.returncode != 0
        shown = "is locked by root" if legacy else "Permission denied"
        assert shown in copied.stderr, copied.stderr
    status, _, body = _request(server, "PUT", f"/api/v1/files/{FILE}", b"from the API\n")
    assert status == 423, body
    refusal = json.loads(body)
    assert refusal["error"] == "locked"
    assert (
        f"/{FILE} is locked by root (http://www.apple.com/webdav_fs/) until" in refusal["message"]
    )
    assert target.read_bytes() == b"from Finder\n"

    for header in ("If", "Lock-Token"):
        value = f"(<{token}>)" if header == "If" else f"<{token}>"
        status, _, body = _request(
            server, "PUT", f"/api/v1/files/{FILE}", f"with {header}\n".encode(), **{header: value}
        )
        assert status == 200, body
        assert target.read_bytes() == f"with {header}\n".encode()

    fetched = tmp_path / "fetched.txt"
    done = _sftp(server, f"get /{FILE} {fetched}\n")
    assert done.returncode == 0, done.stderr
    assert fetched.read_bytes() == b"with Lock-Token\n"
    for path in (f"/api/v1/files/{FILE}", "/dav/" + FILE):
        status, _, body = _request(server, "GET", path)
        assert (status, body) == (200, b"with Lock-Token\n")
    status, _, body = _request(
        server, "GET", "/dav/docs/readme.txt", user="reader", password=READER_PASSWORD
    )
    assert (status, body) == (200, b"with Lock-Token\n")

    status, _, body = _request(server, "UNLOCK", "/dav/" + FILE, Lock_Token=f"<{token}>", **FINDER)
    assert status == 204, body
    done = _sftp(server, f"put {local} /{FILE}\n")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == b"from sshfs\n"


def test_sftp_rename_remove_and_setstat_of_a_locked_file_are_refused(server: Server) -> None:
    lock = _api_lock(server, FILE, "&owner=editor")
    for command in (
        f"rename /{FILE} /share/docs/moved.txt",
        "rename /share/docs /share/elsewhere",
        f"rm /{FILE}",
        f"chmod 600 /{FILE}",
        "rmdir /share/docs",
    ):
        done = _sftp(server, command + "\n")
        assert done.returncode != 0, command
        assert "Permission denied" in done.stderr, (command, done.stderr)
    (server.root / "share" / "docs" / "other.txt").write_text("other\n")
    for op, *args in (
        ("rename", f"/{FILE}", "/share/docs/moved.txt"),
        ("rename", "/share/docs/other.txt", f"/{FILE}"),  # (the locked file as the target)
        ("posix_rename", "/share/docs/other.txt", f"/{FILE}"),
        ("remove", f"/{FILE}"),
        ("chmod", f"/{FILE}", 0o600),
        ("truncate", f"/{FILE}", 0),
        ("rmdir", "/share/docs"),
        ("open", f"/{FILE}", "r+b"),
        ("link", f"/{FILE}", "/share/docs/hard"),
    ):
        # (a hard link too: a new name for the locked file would be a way around its lock)
        refusal = _sftp_refusal(server, op, *args)
        assert "is locked by root (editor) until " in refusal, (op, refusal)
        assert refusal.endswith(f"(lock {lock['id']})"), (op, refusal)
    assert _sftp_refusal(server, "open", f"/{FILE}", "rb") == "done"  # (reads pass)
    assert (server.root / FILE).read_text() == "shared text\n"
    # a tree holding a locked file is not removed, by the API either, without the token
    status, _, body = _request(server, "DELETE", "/api/v1/files/share?recursive")
    assert status == 423, body
    assert (server.root / FILE).exists()


def test_a_depth_infinity_lock_on_a_folder_covers_what_is_in_it(
    server: Server, tmp_path: Path
) -> None:
    """A new file, a new folder, a link, an overwrite inside a folder locked depth
    infinity over WebDAV are refused over SFTP; a depth-0 lock on a folder refuses new
    members but lets its members' content change."""
    token = _finder_lock(server, "/dav/share/docs", depth="infinity")
    local = tmp_path / "new.txt"
    local.write_text("new\n")
    for command in (
        f"put {local} /share/docs/new.txt",
        "mkdir /share/docs/sub",
        f"symlink /{FILE} /share/docs/link",
        f"put {local} /{FILE}",
    ):
        done = _sftp(server, command + "\n")
        assert done.returncode != 0, command
    for op, *args in (
        ("open", "/share/docs/new.txt", "wb"),
        ("mkdir", "/share/docs/sub"),
        ("symlink", "/share/docs/link", f"/{FILE}"),
        ("link", "/etc/passwd", "/share/docs/hard"),
    ):
        refusal = _sftp_refusal(server, op, *args)
        assert "locked by root (http://www.apple.com/webdav_fs/)" in refusal, (op, refusal)
    assert sorted(p.name for p in (server.root / "share" / "docs").iterdir()) == ["readme.txt"]
    status, _, body = _request(
        server, "PUT", "/api/v1/files/share/docs/new.txt", b"x", If=f"(<{token}>)"
    )
    assert status == 201, body
    assert _request(server, "UNLOCK", "/dav/share/docs", Lock_Token=f"<{token}>")[0] == 204

    _api_lock(server, "share/docs", "&depth=0")
    done = _sftp(server, f"put {local} /share/docs/other.txt\n")
    assert done.returncode != 0, done.stderr
    assert "/share/docs/other.txt is locked by root" in _sftp_refusal(
        server, "open", "/share/docs/other.txt", "wb"
    )
    done = _sftp(server, f"put {local} /{FILE}\n")  # (a member's content: not the folder's)
    assert done.returncode == 0, done.stderr


def test_an_expired_lock_frees_the_file(server: Server, tmp_path: Path) -> None:
    _api_lock(server, FILE, "&timeout=1")
    local = tmp_path / "local.txt"
    local.write_text("later\n")
    assert _sftp(server, f"put {local} /{FILE}\n").returncode != 0
    time.sleep(1.3)
    done = _sftp(server, f"put {local} /{FILE}\n")
    assert done.returncode == 0, done.stderr
    assert (server.root / FILE).read_text() == "later\n"


def test_the_file_api_takes_refreshes_and_releases_locks(server: Server) -> None:
    lock = _api_lock(server, FILE, "&timeout=60&owner=script")
    assert (lock["path"], lock["user"], lock["owner"], lock["depth"]) == (
        f"/{FILE}", "root", "script", "0",
    )  # fmt: skip
    status, _, body = _request(server, "POST", f"/api/v1/files/{FILE}?lock")
    assert status == 423, body  # (a second exclusive lock)
    status, _, body = _request(
        server, "POST", f"/api/v1/files/{FILE}?lock&timeout=600", Lock_Token=f"<{lock['token']}>"
    )
    assert status == 200 and json.loads(body)["expires"] > lock["expires"] + 500, body
    status, _, body = _request(
        server, "DELETE", f"/api/v1/files/{FILE}?lock", Lock_Token="<opaquelocktoken:nope>"
    )
    assert status == 409, body
    status, _, body = _request(
        server, "DELETE", f"/api/v1/files/{FILE}?lock", Lock_Token=f"<{lock['token']}>"
    )
    assert status == 204, body
    status, _, body = _request(server, "PUT", f"/api/v1/files/{FILE}", b"free\n")
    assert status == 200, body
    status, _, body = _request(
        server, "POST", "/api/v1/files/share/docs/readme.txt?lock",
        user="reader", password=READER_PASSWORD,
    )  # fmt: skip
    assert status in (403, 404), body  # (read-only: no lock)


def test_delete_and_recreate_over_the_api_leaves_no_stale_lock(server: Server) -> None:
    """A locked file is not deleted without its token; with it, its lock goes with it,
    and the file made again under that name is free for WebDAV (the old lock refused
    its writes before)."""
    token = _finder_lock(server)
    status, _, body = _request(server, "DELETE", f"/api/v1/files/{FILE}")
    assert status == 423, body
    status, _, body = _request(server, "DELETE", f"/api/v1/files/{FILE}", If=f"(<{token}>)")
    assert status == 204, body
    status, _, body = _request(server, "PUT", f"/api/v1/files/{FILE}", b"again\n")
    assert status == 201, body
    status, _, body = _request(server, "PUT", "/dav/" + FILE, b"over WebDAV\n")
    assert status == 204, body
    assert json.loads(_request(server, "GET", "/api/v1/locks")[2]) == {"locks": []}


def test_an_api_move_with_the_token_drops_the_lock_of_the_source(server: Server) -> None:
    lock = _api_lock(server, FILE)
    move = json.dumps({"action": "move", "to": "/share/docs/moved.txt"}).encode()
    kind = {"Content_Type": "application/json"}
    status, _, body = _request(server, "POST", f"/api/v1/files/{FILE}", move, **kind)
    assert status == 423, body
    status, _, body = _request(
        server, "POST", f"/api/v1/files/{FILE}", move, If=f"(<{lock['token']}>)", **kind
    )
    assert status == 200, body
    assert json.loads(_request(server, "GET", "/api/v1/locks")[2]) == {"locks": []}


def test_the_administrator_lists_and_releases_locks(server: Server, tmp_path: Path) -> None:
    """``hoody-mount locks`` lists every protocol's locks and ``locks release ID`` frees
    one; ``/api/v1/locks`` does the same for administrators only."""
    token = _finder_lock(server)
    other = _api_lock(server, "home/jailed", "&depth=infinity&owner=backup")
    listed = _cli(server, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["path"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"/home/jailed", f"/{FILE}"}
    assert (rows[f"/{FILE}"]["user"], rows[f"/{FILE}"]["owner"]) == (
        "root", "http://www.apple.com/webdav_fs/",
    )  # fmt: skip
    assert rows["/home/jailed"]["depth"] == "infinity"
    assert token not in listed.stdout and other["token"] not in listed.stdout
    table = _cli(server)
    assert table.stdout.startswith("ID\tPATH\tUSER\tOWNER\tDEPTH\tSCOPE\tEXPIRES\n"), table.stdout
    assert f"{rows[f'/{FILE}']['id']}\t/{FILE}\troot\t" in table.stdout

    released = _cli(server, "release", rows[f"/{FILE}"]["id"])
    assert released.returncode == 0, released.stderr
    assert _cli(server, "release", "000000000000").returncode != 0
    status, _, body = _request(server, "PUT", "/dav/" + FILE, b"free again\n")
    assert status == 204, body
    status, _, body = _request(server, "PUT", "/dav/home/jailed/new.txt", b"x")
    assert status == 423, body

    status, _, body = _request(
        server, "GET", "/api/v1/locks", user="reader", password=READER_PASSWORD
    )
    assert status == 403, body
    status, _, body = _request(server, "GET", "/api/v1/locks")
    assert [row["id"] for row in json.loads(body)["locks"]] == [other["id"]]
    status, _, body = _request(server, "DELETE", f"/api/v1/locks/{other['id']}")
    assert status == 204, body
    status, _, body = _request(server, "PUT", "/dav/home/jailed/new.txt", b"x")
    assert status == 201, body


def test_links_are_no_way_around_a_lock(server: Server) -> None:
    """A write through a symlink to a locked file, or into a locked folder, meets the
    lock of what it reaches (found by the attacker pass: the lock was keyed by the
    name written to only)."""
    docs = server.root / "share" / "docs"
    (docs / "inner").mkdir()
    (docs / "inner" / "kept.txt").write_text("kept\n")
    _finder_lock(server)
    _finder_lock(server, "/dav/share/docs/inner/", "infinity")
    (docs / "to-file").symlink_to("readme.txt")
    (docs / "to-folder").symlink_to("inner")
    for op, *args in (
        ("open", "/share/docs/to-file", "wb"),
        ("chmod", "/share/docs/to-file", 0o600),
        ("open", "/share/docs/to-folder/kept.txt", "wb"),
        ("open", "/share/docs/to-folder/new.txt", "wb"),
        ("remove", "/share/docs/to-folder/kept.txt"),
    ):
        refusal = _sftp_refusal(server, op, *args)
        assert "is locked by root" in refusal, (op, args, refusal)
    for path in ("/api/v1/files/share/docs/to-file", "/api/v1/files/share/docs/to-folder/g.txt"):
        status = _request(server, "PUT", path, b"sneaked\n")[0]
        assert status == 423, path
    assert (docs / "readme.txt").read_text() == "shared text\n"
    assert (docs / "inner" / "kept.txt").read_text() == "kept\n"
    assert not (docs / "inner" / "new.txt").exists() and not (docs / "inner" / "g.txt").exists()


def test_an_sshfs_overwrite_of_a_file_finder_locked_is_refused(
    server: Server, tmp_path: Path
) -> None:
    """The issue's case as people meet it: Finder holds a lock, and a copy onto the file
    through an sshfs mount fails, the file unchanged; a read through the mount passes."""
    _finder_lock(server)
    new = tmp_path / "new.txt"
    new.write_text("from sshfs\n")
    with sshfs_mount(server, "root", tmp_path / "mnt", tmp_path / "sshfs.log") as mnt:
        copied = subprocess.run(
            ["cp", str(new), str(mnt / FILE)], capture_output=True, text=True, timeout=60
        )
        assert copied.returncode != 0 and "Permission denied" in copied.stderr, copied
        assert (mnt / FILE).read_text() == "shared text\n"
    assert (server.root / FILE).read_text() == "shared text\n"
