"""Consistent copies of live SQLite databases (issue 23): ``GET …?snapshot`` and the
``sqlite-snapshot`` SSH built-in while another process writes, in WAL and in
rollback-journal mode; ``PUT …?restore``; the jail, read-only users and temp files."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    password_hash,
    require,
    served,
    wait_until,
)

WRITER = """
import os, sqlite3, sys, time
db, progress, stop = sys.argv[1:4]
conn = sqlite3.connect(db, timeout=5.0)
conn.execute("PRAGMA busy_timeout=5000")
n = conn.execute("SELECT max(id) FROM t").fetchone()[0]
failures = 0
while not os.path.exists(stop):
    try:
        conn.execute("INSERT INTO t VALUES (?, randomblob(700))", (n + 1,))
        conn.commit()
    except sqlite3.OperationalError as exc:
        failures += 1
        print("writer failed:", exc, file=sys.stderr)
        conn.rollback()
        continue
    n += 1
    with open(progress + ".new", "w") as f:
        f.write(f"{n} {time.time()}")
    os.replace(progress + ".new", progress)
print(failures, n)
"""


def make_db(path: Path, mode: str, rows: int = 3000) -> None:
    """A database of ``rows`` numbered rows (about 0.7 KB each) in journal ``mode``."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB)")
    conn.executemany("INSERT INTO t VALUES (?, randomblob(700))", [(i,) for i in range(1, rows)])
    conn.commit()
    conn.close()


@contextlib.contextmanager
def writer(db: Path) -> Iterator[Path]:
    """A process committing numbered rows into ``db`` until the end of the block; its
    last committed number is in the file yielded. It must never have failed."""
    progress, stop = db.with_name("progress"), db.with_name("stop")
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(progress), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(progress.exists, 10)
        yield progress
    finally:
        stop.touch()
        out, err = process.communicate(timeout=30)
    failures, last = out.split()
    print(f"writer: {last} rows, {failures} failures", err)
    assert process.returncode == 0, err
    assert failures == "0", err


def committed(progress: Path) -> tuple[int, float]:
    """The writer's last committed row and when."""
    n, when = progress.read_text().split()
    return int(n), float(when)


def request(
    server: Server, method: str, path: str, user: str = "root", body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    password = READER_PASSWORD if user == "reader" else PASSWORD
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        auth = {"Authorization": f"Basic {token}", **headers}
        conn.request(method, path, body=body, headers=auth)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def ssh(server: Server, user: str, command: str) -> subprocess.CompletedProcess[bytes]:
    require("ssh")
    return subprocess.run(
        ["ssh", "-p", str(server.port), *server.ssh_options(), f"{user}@127.0.0.1", command],
        capture_output=True, timeout=120,
    )  # fmt: skip


def check_copy(data: bytes, where: Path, at_least: int) -> int:
    """The copy is a sound database holding rows 1..n with no gap, n >= ``at_least``."""
    where.write_bytes(data)
    conn = sqlite3.connect(where)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count, top = conn.execute("SELECT count(*), max(id) FROM t").fetchone()
    finally:
        conn.close()
        where.unlink()
    assert count == top, (count, top)
    assert top >= at_least, (top, at_least)
    return int(top)


def temp_files_gone(server: Server) -> bool:
    """No temp file in the server's folder, and none held open by it."""
    if os.listdir(server.state / "snapshots"):
        return False
    fds = Path(f"/proc/{server.process.pid}/fd")
    held = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            held.append(os.readlink(fd))
    return not any("hoody-sqlite-" in target for target in held)


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_snapshots_of_a_database_being_written_hold_every_commit_before_them(
    tmp_path: Path, client_key: Path, mode: str
) -> None:
    """Several snapshots over the API (administrator and the read-only user) and over
    SSH while a writer commits: each is sound and holds every row committed before it
    was asked for; the writer never failed; no temp file is left."""
    with served(tmp_path, client_key) as server:
        (server.root / "share" / "db").mkdir()
        db = server.root / "share" / "db" / "app.db"
        make_db(db, mode)
        with writer(db) as progress:
            seen = 0
            for i in range(4):
                before, when = committed(progress)
                user, path = ("reader", "/db/app.db") if i % 2 else ("root", "/share/db/app.db")
                status, headers, body = request(
                    server, "GET", f"/api/v1/files{path}?snapshot", user
                )
                assert status == 200, body
                assert headers["Content-Type"] == "application/vnd.sqlite3"
                assert headers["Content-Length"] == str(len(body))
                assert headers["Content-Disposition"].startswith('attachment; filename="app.db"')
                sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
                assert headers["Repr-Digest"] == f"sha-256=:{sha}:"
                taken = datetime.datetime.fromisoformat(headers["X-Snapshot-Time"])
                assert taken.timestamp() >= when
                assert "Last-Modified" in headers
                seen = check_copy(body, tmp_path / "copy.db", before)
                print(f"API snapshot {i}: rows 1..{seen}, committed before: {before}")
            for user, path in (("reader", "db/app.db"), ("root", "/share/db/app.db")):
                before, _ = committed(progress)
                result = ssh(server, user, f"sqlite-snapshot {path}")
                assert result.returncode == 0, result.stderr
                seen = check_copy(result.stdout, tmp_path / "copy.db", before)
                print(f"SSH snapshot: rows 1..{seen}, committed before: {before}")
            status, _, raw = request(server, "GET", "/api/v1/files/share/db/app.db")
            (tmp_path / "raw.db").write_bytes(raw)
            try:
                conn = sqlite3.connect(tmp_path / "raw.db")
                verdict = conn.execute("PRAGMA integrity_check").fetchall()[:3]
                rows = conn.execute("SELECT count(*), max(id) FROM t").fetchone()
                print(f"raw copy while written ({mode}): {verdict}, rows {rows}")
            except sqlite3.Error as exc:
                print(f"raw copy while written ({mode}): {exc}")
        assert wait_until(lambda: temp_files_gone(server), 10)


def test_what_is_no_database_or_leads_out_is_refused(tmp_path: Path, client_key: Path) -> None:
    """A file that is no database is 415 (and an error over SSH); a jailed user gets
    nothing of a database outside the jail, through a link or a path."""
    cell = f'[users.cell]\npassword_hash = "{password_hash(PASSWORD)}"\nroot = "/home/jailed"\n'
    with served(tmp_path, client_key, cell) as server:
        status, _, body = request(server, "GET", "/api/v1/files/share/docs/readme.txt?snapshot")
        assert status == 415, body
        assert json.loads(body)["error"] == "not_a_database"
        result = ssh(server, "reader", "sqlite-snapshot docs/readme.txt")
        assert result.returncode == 1 and result.stdout == b""
        assert b"not an SQLite database" in result.stderr
        make_db(server.outside / "secret.db", "wal", rows=10)
        jail = server.root / "home" / "jailed"
        (jail / "abs.db").symlink_to(server.outside / "secret.db")
        (jail / "rel.db").symlink_to("../../../outside/secret.db")
        (jail / "out").symlink_to(server.outside)
        (jail / "mine.db").symlink_to("abs.db")
        for name in ("abs.db", "rel.db", "out/secret.db", "../../../outside/secret.db", "mine.db"):
            status, _, body = request(server, "GET", f"/api/v1/files/{name}?snapshot", "cell")
            assert status in (404, 400), (name, status, body)
            result = ssh(server, "jailed", f"sqlite-snapshot {name}")
            assert result.returncode == 1 and result.stdout == b"", (name, result.stderr)
            assert b"sqlite-snapshot" in result.stderr
        status, _, body = request(server, "GET", "/api/v1/files/abs.db?snapshot", "cell")
        assert b"symlink" in body, body
        assert wait_until(lambda: temp_files_gone(server), 10)


def test_restore_replaces_the_content_in_place_and_refuses_what_is_unfit(
    tmp_path: Path, client_key: Path
) -> None:
    """A restore keeps the inode and a connection open in another process sees the new
    content; a reader may not restore; an upload that is no sound database, or not the
    one its digest names, changes nothing; a target that is no database is 415."""
    with served(tmp_path, client_key) as server:
        live = server.root / "share" / "live.db"
        make_db(live, "wal", rows=50)
        inode = live.stat().st_ino
        other = sqlite3.connect(live)
        assert other.execute("SELECT count(*) FROM t").fetchone() == (49,)
        new = tmp_path / "new.db"
        make_db(new, "delete", rows=500)
        upload = new.read_bytes()
        url = "/api/v1/files/share/live.db?restore"

        def unchanged() -> None:
            assert other.execute("SELECT count(*) FROM t").fetchone() == (49,)

        status, _, body = request(server, "PUT", "/api/v1/files/live.db?restore", "reader", upload)
        assert status == 403, body
        unchanged()
        corrupt = bytearray(upload)
        corrupt[8192:12288] = os.urandom(4096)  # (a page of the table: the header stays)
        for bad, code in ((bytes(corrupt), 422), (os.urandom(20000), 422), (b"", 422)):
            status, _, body = request(server, "PUT", url, body=bad)
            assert status == code, body
            assert b"nothing changed" in body, body
            unchanged()
        wrong = hashlib.sha256(b"other").hexdigest()
        status, _, body = request(server, "PUT", url, body=upload, **{"X-Expected-SHA256": wrong})
        assert status == 422 and json.loads(body)["error"] == "digest_mismatch", body
        unchanged()
        readme = "/api/v1/files/share/docs/readme.txt?restore"
        status, _, body = request(server, "PUT", readme, body=upload)
        assert status == 415, body
        assert (server.root / "share" / "docs" / "readme.txt").read_text() == "shared text\n"
        digest = hashlib.sha256(upload).hexdigest()
        status, _, body = request(server, "PUT", url, body=upload, **{"X-Expected-SHA256": digest})
        assert status == 200, body
        assert json.loads(body)["sha256"] == digest
        assert live.stat().st_ino == inode
        assert other.execute("SELECT count(*) FROM t").fetchone() == (499,)
        # a snapshot (of a WAL database) restores into another database
        status, _, copy = request(server, "GET", "/api/v1/files/share/live.db?snapshot")
        assert status == 200
        second = server.root / "share" / "second.db"
        make_db(second, "delete", rows=3)
        status, _, body = request(server, "PUT", "/api/v1/files/share/second.db?restore", body=copy)
        assert status == 200, body
        conn = sqlite3.connect(second)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (499,)
        conn.close()
        other.close()
        assert wait_until(lambda: temp_files_gone(server), 10)
        restored = 'op=restore path="/share/live.db" bytes='
        assert wait_until(lambda: restored in server.log.read_text(), 5)


def test_a_client_that_leaves_mid_download_leaves_no_temp_file(
    tmp_path: Path, client_key: Path
) -> None:
    with served(tmp_path, client_key) as server:
        db = server.root / "share" / "big.db"
        make_db(db, "wal", rows=40_000)  # (about 30 MB: more than the sockets buffer)
        token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
        with socket.create_connection(("127.0.0.1", server.http_port)) as sock:
            sock.sendall(
                b"GET /api/v1/files/share/big.db?snapshot HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Basic " + token.encode() + b"\r\n\r\n"
            )
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), head
        assert wait_until(lambda: temp_files_gone(server), 20)
        status, _ = basic_request(server.http_port, "GET", "/api/v1/files/", "root", PASSWORD)
        assert status == 200


def test_a_copy_that_cannot_fit_is_507(tmp_path: Path, client_key: Path) -> None:
    """The copy's size is checked against the free space of the server's folder first."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m,mode=700", "tmpfs", str(state)]
    subprocess.run(mount, check=True)
    try:
        with served(tmp_path, client_key) as server:
            make_db(server.root / "share" / "app.db", "delete", rows=6000)  # (about 4.5 MB)
            status, _, body = request(server, "GET", "/api/v1/files/share/app.db?snapshot")
            assert status == 507, body
            assert b"no room for a copy" in body, body
            assert wait_until(lambda: temp_files_gone(server), 10)
    finally:
        subprocess.run(["umount", "-l", str(state)], check=True)


def test_attacker_pass_holes_stay_shut(tmp_path: Path, client_key: Path) -> None:
    """Found by the attacker pass: a restore went past a lock; a FIFO where SQLite opens
    the journal held a worker for good; one user could hold any number of copies (each
    the database's size on the server's disk)."""
    with served(tmp_path, client_key) as server:
        share = server.root / "share"
        make_db(share / "app.db", "delete", rows=10)
        make_db(tmp_path / "new.db", "delete", rows=5)
        lock = (
            '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            "</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>finder</D:owner>"
            "</D:lockinfo>"
        )
        status, _, _ = request(
            server, "LOCK", "/dav/share/app.db", body=lock.encode(),
            **{"Content-Type": "application/xml", "Timeout": "Second-600"},
        )  # fmt: skip
        assert status == 200
        new = (tmp_path / "new.db").read_bytes()
        status, _, body = request(server, "PUT", "/api/v1/files/share/app.db?restore", body=new)
        assert status == 423 and json.loads(body)["error"] == "locked", body
        with sqlite3.connect(share / "app.db") as check:
            assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 9  # (unchanged)

        make_db(share / "piped.db", "delete", rows=10)
        os.mkfifo(share / "piped.db-journal")
        status, _, body = request(server, "GET", "/api/v1/files/share/piped.db?snapshot")
        assert status == 409 and b"journal file is not a regular file" in body, body
        result = ssh(server, "root", "sqlite-snapshot /share/piped.db")
        assert result.returncode == 1 and b"not a regular file" in result.stderr

        make_db(share / "big.db", "wal", rows=40_000)
        token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
        held = []
        for _ in range(2):  # two copies held: their clients read nothing yet
            sock = socket.create_connection(("127.0.0.1", server.http_port))
            sock.sendall(
                b"GET /api/v1/files/share/big.db?snapshot HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Basic " + token.encode() + b"\r\n\r\n"
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(sock)
        status, headers, body = request(server, "GET", "/api/v1/files/share/app.db?snapshot")
        assert status == 503 and "2 database copies" in json.loads(body)["message"], body
        assert headers.get("Retry-After")
        status, _, _ = request(server, "GET", "/api/v1/files/docs/app.db?snapshot", "reader")
        assert status == 404  # (another user is not held back: the reader meets no such file)
        for sock in held:
            sock.close()
        assert wait_until(
            lambda: request(server, "GET", "/api/v1/files/share/app.db?snapshot")[0] == 200, 30
        )


def test_a_damaged_database_is_422_and_an_error_over_ssh(tmp_path: Path, client_key: Path) -> None:
    """A file with an SQLite header that SQLite finds damaged (a page count or a page
    size no database has) is the client's: 422 naming the damage, not a 500."""
    with served(tmp_path, client_key) as server:
        sound = server.root / "share" / "sound.db"
        make_db(sound, "delete", rows=10)
        for name, offset, value in (("count.db", 28, 0x7FFFFFFF), ("page.db", 16, 1)):
            damaged = bytearray(sound.read_bytes())
            damaged[offset : offset + (4 if offset == 28 else 2)] = value.to_bytes(
                4 if offset == 28 else 2, "big"
            )
            (server.root / "share" / name).write_bytes(damaged)
            status, _, body = request(server, "GET", f"/api/v1/files/share/{name}?snapshot")
            assert status == 422, body
            assert json.loads(body)["error"] == "damaged_database", body
            assert b"damaged" in body and b"malformed" in body, body
            result = ssh(server, "reader", f"sqlite-snapshot {name}")
            assert result.returncode == 1 and result.stdout == b"", result.stderr
            assert b"damaged" in result.stderr, result.stderr
        assert wait_until(lambda: temp_files_gone(server), 10)
