"""Locks hold through links: a change made through a symbolic link to a locked file (or
into a locked folder) is checked against the lock of where the link leads, in every
protocol; the holder of the lock passes through the link with its token."""

from __future__ import annotations

import os
import re

import pytest
from conftest import PASSWORD, Server, basic_request
from test_dav_protocol import LOCK_BODY

PROPPATCH = (
    b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
    b"<D:set><D:prop><Z:note>x</Z:note></D:prop></D:set></D:propertyupdate>"
)


def _locked(server: Server, path: str = "/dav/a.txt", depth: str = "0") -> str:
    """Lock ``path`` as root; its token."""
    status, body = basic_request(
        server.http_port, "LOCK", path, "root", PASSWORD, LOCK_BODY,
        **{"Content-Type": "application/xml", "Depth": depth, "Timeout": "Second-600"},
    )  # fmt: skip
    assert status == 200, body
    found = re.search(rb"opaquelocktoken:[0-9a-f-]+", body)
    assert found, body
    return found.group().decode()


@pytest.fixture
def linked(server: Server) -> Server:
    """``/a.txt`` and ``/link`` → ``a.txt``, ``/dir/`` and ``/dirlink`` → ``dir``."""
    (server.root / "a.txt").write_bytes(b"original")
    os.symlink("a.txt", server.root / "link")
    (server.root / "dir").mkdir()
    (server.root / "dir" / "in.txt").write_bytes(b"inside")
    os.symlink("dir", server.root / "dirlink")
    return server


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("PUT", "/dav/link", b"changed", {}),
        ("PROPPATCH", "/dav/link", PROPPATCH, {"Content-Type": "application/xml"}),
        ("PUT", "/dav/dirlink/in.txt", b"changed", {}),
        ("DELETE", "/dav/dirlink/in.txt", b"", {}),
        ("PUT", "/dav/dirlink/new.txt", b"new", {}),
    ],
)
def test_a_dav_change_through_a_link_meets_the_lock_of_its_target(
    linked: Server, method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    target = "/dav/dir" if "dirlink" in path else "/dav/a.txt"
    _locked(linked, target, depth="infinity" if target == "/dav/dir" else "0")
    port = linked.http_port
    status, answer = basic_request(port, method, path, "root", PASSWORD, body, **headers)
    if method == "PROPPATCH":  # (all of its properties refused, each one 423)
        assert status == 207, answer
        assert answer.count(b"<ns0:status>") == answer.count(b"HTTP/1.1 423 Locked") == 1
    else:
        assert status == 423, answer
    assert (linked.root / "a.txt").read_bytes() == b"original"
    assert (linked.root / "dir" / "in.txt").read_bytes() == b"inside"
    assert not (linked.root / "dir" / "new.txt").exists()


def test_a_dav_move_of_a_link_into_a_locked_folder_is_refused(linked: Server) -> None:
    _locked(linked, "/dav/dir", depth="0")
    status, answer = basic_request(
        linked.http_port, "MOVE", "/dav/dirlink/in.txt", "root", PASSWORD,
        Destination="/dav/moved.txt",
    )  # fmt: skip
    assert status == 423, answer
    assert (linked.root / "dir" / "in.txt").read_bytes() == b"inside"


def test_the_holder_of_the_lock_writes_through_the_link_with_its_token(linked: Server) -> None:
    """The lock's token, tagged with the locked resource (RFC 4918 §10.4: a token of
    another resource than the one asked for), lets its holder through the link."""
    token = _locked(linked, "/dav/dir", depth="infinity")
    port, file = linked.http_port, linked.root / "dir" / "in.txt"
    status, answer = basic_request(
        port, "PUT", "/dav/dirlink/in.txt", "root", PASSWORD, b"by dav",
        If=f"</dav/dir> (<{token}>)",
    )  # fmt: skip
    assert status == 204, answer
    assert file.read_bytes() == b"by dav"
    status, answer = basic_request(
        port, "PUT", "/api/v1/files/dirlink/in.txt", "root", PASSWORD, b"by api",
        If=f"(<{token}>)",
    )  # fmt: skip
    assert status in (200, 201, 204), answer
    assert file.read_bytes() == b"by api"


def test_the_file_api_and_sftp_meet_the_lock_through_a_link(linked: Server) -> None:
    _locked(linked)
    status, answer = basic_request(
        linked.http_port, "PUT", "/api/v1/files/link", "root", PASSWORD, b"changed"
    )
    assert status == 423, answer
    (linked.outside / "up.txt").write_bytes(b"changed")
    done = linked.sftp_batch(f"put {linked.outside / 'up.txt'} /link\n")
    assert done.returncode != 0, done.stdout
    assert "Permission denied" in done.stderr  # (OpenSSH shows no more)
    assert (linked.root / "a.txt").read_bytes() == b"original"


@pytest.mark.parametrize("method", ["MOVE", "COPY"])
def test_a_dav_destination_through_a_link_into_a_locked_folder_is_refused(
    linked: Server, method: str
) -> None:
    (linked.root / "free.txt").write_bytes(b"free")
    _locked(linked, "/dav/dir", depth="0")  # (its list of members)
    status, answer = basic_request(
        linked.http_port, method, "/dav/free.txt", "root", PASSWORD,
        Destination="/dav/dirlink/new.txt",
    )  # fmt: skip
    assert status == 423, answer
    assert sorted(os.listdir(linked.root / "dir")) == ["in.txt"]
    assert (linked.root / "dir" / "in.txt").read_bytes() == b"inside"


@pytest.mark.parametrize("path", ["/link", "/dirlink/in.txt"])
def test_a_lock_through_a_link_is_refused_naming_the_file_to_lock(
    linked: Server, path: str
) -> None:
    """A lock taken through a link lay on the link's name: the file it named was then
    changed by its own name, over every protocol, as if unlocked."""
    real = "/a.txt" if path == "/link" else "/dir/in.txt"
    status, answer = basic_request(
        linked.http_port, "LOCK", "/dav" + path, "root", PASSWORD, LOCK_BODY,
        **{"Content-Type": "application/xml", "Depth": "0"},
    )  # fmt: skip
    assert status == 403, answer
    assert f"leads through a link to {real}: lock {real} itself".encode() in answer
    status, answer = basic_request(
        linked.http_port, "POST", f"/api/v1/files{path}?lock", "root", PASSWORD
    )
    assert status == 403, answer
    assert f"lock {real} itself".encode() in answer
    status, answer = basic_request(linked.http_port, "GET", "/api/v1/locks", "root", PASSWORD)
    assert status == 200 and b'"locks": []' in answer.replace(b"\n", b""), answer
    _locked(linked, "/dav" + real)  # (the file itself, by its own name)
