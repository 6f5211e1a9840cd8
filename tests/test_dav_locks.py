"""WebDAV locks: kept across restarts in SQLite, bounded per user and in all."""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    password_hash,
    served,
)
from test_dav_protocol import LOCK_BODY, basic, dedicated, new_layout
from wsgidav.dav_error import DAVError

from hoody_mount import http_rules
from hoody_mount.core.locks import PER_USER, LockTable
from hoody_mount.dav.locks import LockStorage


def _lock(principal: str, timeout: float = 3600) -> dict[str, Any]:
    return {
        "type": "write", "scope": "exclusive", "depth": "0", "owner": b"<owner/>",
        "timeout": timeout, "principal": principal,
    }  # fmt: skip


def _table(path: Path, per_user: int = 3, total: int = 5) -> LockStorage:
    """WsgiDAV's storage over the core's table, as the server makes it."""
    table = LockStorage(LockTable(path, per_user=per_user, total=total))
    table.open()
    return table


def test_one_user_holds_at_most_per_user_locks_and_others_still_lock(tmp_path: Path) -> None:
    table = _table(tmp_path / "locks.sqlite")
    tokens = [table.create(f"/dav/a{n}", _lock("alice"))["token"] for n in range(3)]
    with pytest.raises(DAVError) as refused:
        table.create("/dav/a3", _lock("alice"))
    assert refused.value.value == 503
    assert "user alice holds 3" in str(refused.value.context_info)
    table.create("/dav/b0", _lock("bob"))  # another user is not held back
    assert table.delete(tokens[0])
    table.create("/dav/a3", _lock("alice"))  # an unlock frees a place
    table.create("/dav/b1", _lock("bob"))
    with pytest.raises(DAVError) as full:  # 5 in all
        table.create("/dav/c0", _lock("carol"))
    assert "the server holds 5" in str(full.value.context_info)
    table.close()


def test_expired_locks_give_their_places_back(tmp_path: Path) -> None:
    table = _table(tmp_path / "locks.sqlite")
    for n in range(3):
        table.create(f"/dav/a{n}", _lock("alice", timeout=0.01))
    time.sleep(0.05)
    table.create("/dav/a3", _lock("alice"))
    assert len(table.get_lock_list("/dav", include_root=True, include_children=True,
                                   token_only=True)) == 1  # fmt: skip
    table.close()


def test_locks_survive_a_reopen_with_their_counts_and_expired_ones_do_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locks.sqlite"
    table = _table(path)
    kept = table.create("/dav/kept", _lock("alice"))
    table.create("/dav/short", _lock("alice", timeout=0.01))
    refreshed = table.create("/dav/refreshed", _lock("alice", timeout=0.5))
    table.refresh(refreshed["token"], timeout=3600)
    table.close()
    time.sleep(0.6)
    table = _table(path)
    assert table.get(kept["token"])["root"] == "/dav/kept"
    assert table.get(refreshed["token"]) is not None
    listed = table.get_lock_list("/dav", include_root=True, include_children=True,
                                 token_only=False)  # fmt: skip
    assert sorted(lock["root"] for lock in listed) == ["/dav/kept", "/dav/refreshed"]
    table.create("/dav/third", _lock("alice"))  # two held: a third fits, a fourth not
    with pytest.raises(DAVError):
        table.create("/dav/fourth", _lock("alice"))
    table.close()


def test_a_user_past_the_lock_cap_gets_503_with_a_clear_text(
    tmp_path: Path, client_key: Path
) -> None:
    """Through the real server: LOCK after LOCK of one user (each one used to rewrite
    the whole shelve index, and nothing bounded them)."""
    layout = new_layout(tmp_path)
    folder = layout.root / "share" / "many"
    folder.mkdir()
    with dedicated(layout, client_key, name="locks") as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.http_port, timeout=60)
        headers = {"Authorization": basic("root"), "Depth": "0", "Timeout": "Second-600",
                   "Content-Type": "application/xml"}  # fmt: skip
        statuses = []
        for n in range(PER_USER + 1):
            conn.request("LOCK", f"/dav/share/many/f{n}", body=LOCK_BODY, headers=headers)
            reply = conn.getresponse()
            text = reply.read().decode(errors="replace")
            statuses.append(reply.status)
        conn.close()
        assert statuses[:PER_USER] == [201] * PER_USER  # (lock-null: an empty file each)
        assert statuses[PER_USER] == 503
        assert "too many locks: user root holds 1000" in text


@pytest.mark.parametrize(
    ("locked", "seen_by_reader"),
    [("/dav/share/docs/readme.txt", "/dav/docs/readme.txt"), ("/dav/share/", "/dav/")],
)
def test_a_lock_is_one_lock_for_every_user_who_sees_the_file(
    server: Server, locked: str, seen_by_reader: str
) -> None:
    """Locks are keyed by the path in the served root: the administrator's lock on a
    shared file, or on the folder that is the reader's jail, is the reader's lock on
    the same resource, shown at the reader's path."""
    status, body = basic_request(
        server.http_port, "LOCK", locked, "root", PASSWORD, LOCK_BODY,
        **{"Content-Type": "application/xml", "Depth": "infinity"},
    )  # fmt: skip
    assert status == 200, body
    status, body = basic_request(
        server.http_port, "PROPFIND", seen_by_reader, "reader", READER_PASSWORD,
        b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/>'
        b"</D:prop></D:propfind>",
        Depth="0",
    )  # fmt: skip
    assert status == 207, body
    found = ElementTree.fromstring(body).findall(".//{DAV:}lockroot/{DAV:}href")
    assert [href.text for href in found] == [seen_by_reader], body


@pytest.mark.parametrize("method", ["LOCK", "PROPPATCH", "DELETE", "MKCOL", "PUT"])
def test_the_root_above_the_share_cannot_be_locked_or_changed(server: Server, method: str) -> None:
    """``/`` is every user's: a LOCK Depth infinity there by one jailed user blocked
    every write of every user, the administrator's too, for up to 28 days; a property
    set there was read from every jail. Only the /dav share can be changed or locked."""
    bodies = {
        "LOCK": LOCK_BODY,
        "PROPPATCH": b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
        b"<D:set><D:prop><Z:note>x</Z:note></D:prop></D:set></D:propertyupdate>",
    }
    for path in ("/", "/elsewhere"):
        status, body = basic_request(
            server.http_port, method, path, "root", PASSWORD, bodies.get(method, b""),
            **{"Content-Type": "application/xml", "Depth": "infinity"},
        )  # fmt: skip
        assert status == 403, (path, body)
        assert body == b"only the /dav share can be changed or locked\n"
    status, body = basic_request(server.http_port, "PUT", "/dav/free.txt", "root", PASSWORD, b"x")
    assert status == 201, body


def test_a_lock_outside_the_share_left_by_an_older_version_is_dropped(tmp_path: Path) -> None:
    """Locks kept in the database by a version whose locks were WebDAV's alone (keyed by
    URL, some on ``/``) are dropped at start; the share refuses a lock on ``/``; locks
    in the share stay."""
    table = _table(tmp_path / "locks.sqlite")
    with pytest.raises(DAVError) as refused:
        table.create("/", _lock("bob"))
    assert refused.value.value == 403
    kept = table.create("/dav/home/bob/", _lock("bob"))["token"]
    table.close()
    with sqlite3.connect(tmp_path / "locks.sqlite") as db:  # (a row as the older version wrote)
        old = {**_lock("bob"), "root": "/", "expire": time.time() + 600}
        old.pop("owner")
        db.execute("INSERT INTO locks VALUES ('old-token', x'', ?)", (json.dumps(old),))
    db.close()
    table = _table(tmp_path / "locks.sqlite")
    assert [lock["token"] for lock in table.get_lock_list(
        "/", include_root=True, include_children=True, token_only=False
    )] == [kept]  # fmt: skip
    assert table.get(kept)["root"] == "/dav/home/bob"
    table.close()


@pytest.fixture
def jailed_writer(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    """A server where ``carol`` may write in her jail ``/home/carol`` over HTTP."""
    (tmp_path / "root" / "home" / "carol").mkdir(parents=True)
    users = f'\n[users.carol]\npassword_hash = "{password_hash(PASSWORD)}"\nroot = "/home/carol"\n'
    with served(tmp_path, client_key, users) as running:
        yield running


def test_a_tagged_if_header_of_a_jailed_user_is_checked(jailed_writer: Server) -> None:
    """``If: <URL> (["etag"])`` names the resource by the user's URL: it is checked
    against that resource (a jailed user's tag was compared with the server's internal
    key, never matched, and the write went through with a wrong tag)."""
    port, file = jailed_writer.http_port, jailed_writer.root / "home" / "carol" / "c.txt"
    assert basic_request(port, "PUT", "/dav/c.txt", "carol", PASSWORD, b"one")[0] == 201
    for tag in ("/dav/c.txt", f"http://127.0.0.1:{port}/dav/c.txt"):
        status, body = basic_request(
            port, "PUT", "/dav/c.txt", "carol", PASSWORD, b"two", If=f'<{tag}> (["nope"])'
        )
        assert status == 412, (tag, body)
        assert file.read_bytes() == b"one"
    etag = http_rules.opaque_tag(file.stat())
    status, body = basic_request(
        port, "PUT", "/dav/c.txt", "carol", PASSWORD, b"two", If=f'</dav/c.txt> (["{etag}"])'
    )
    assert status == 204, body
    assert file.read_bytes() == b"two"


def test_a_lock_conflict_names_the_resource_as_the_user_knows_it(jailed_writer: Server) -> None:
    """A 423 names the locked resource at the asking user's URL: carol's own lock is
    ``/dav/c.txt`` to her (it showed ``/dav/home/carol/c.txt``: where her jail lies),
    and ``/dav/home/carol/c.txt`` to the administrator."""
    port = jailed_writer.http_port
    assert basic_request(port, "PUT", "/dav/c.txt", "carol", PASSWORD, b"one")[0] == 201
    status, body = basic_request(
        port, "LOCK", "/dav/c.txt", "carol", PASSWORD, LOCK_BODY, **{"Content-Type": "text/xml"}
    )
    assert status == 200, body
    for user, path, shown in (
        ("carol", "/dav/c.txt", b"<D:href>/dav/c.txt</D:href>"),
        ("root", "/dav/home/carol/c.txt", b"<D:href>/dav/home/carol/c.txt</D:href>"),
    ):
        status, body = basic_request(port, "PUT", path, user, PASSWORD, b"two")
        assert status == 423, (user, body)
        assert shown in body.replace(b"ns0:", b"D:"), (user, body)
        if user == "carol":
            assert b"home/carol" not in body, body
