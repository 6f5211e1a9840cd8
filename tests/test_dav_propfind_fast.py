"""PROPFIND Depth 1 written from templates (dav/propfind_fast.py) says what WsgiDAV says.

Each member's ``<response>`` in a Depth 1 listing is compared, parsed, with WsgiDAV's
own answer to a Depth 0 PROPFIND of that member (which no template writes), for a tree
of files, folders, symlinks in and out of the jail, names XML and URLs must escape,
dates far away, dead properties and locks, for the administrator and a jailed
read-only user, and for the property requests clients send.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote_to_bytes

import pytest
from conftest import PASSWORD, READER_PASSWORD, Server, basic_request
from test_dav_clients import rclone

from hoody_mount.core.listing import Entry
from hoody_mount.dav.propfind_fast import Writer

RCLONE_BODY = (
    '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
    "<d:prop><d:displayname /><d:getlastmodified /><d:getcontentlength /><d:resourcetype />"
    "<d:getcontenttype /><oc:checksums /><oc:permissions /></d:prop></d:propfind>"
)
BENCH_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
    "<D:getetag/><D:resourcetype/><D:getcontentlength/><D:getlastmodified/>"
    "<D:getcontenttype/></D:prop></D:propfind>"
)
EVERY_LIVE = (
    '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:creationdate/>'
    "<D:displayname/><D:supportedlock/><D:lockdiscovery/><D:getetag/><D:getetag/>"
    "<D:quota-used-bytes/><D:getcontentlanguage/><D:resourcetype/></D:prop></D:propfind>"
)
BODIES = (b"", b'<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>',
          RCLONE_BODY.encode(), BENCH_BODY.encode(), EVERY_LIVE.encode())  # fmt: skip
NAMES = ("plain.txt", "x &<>\"' é %.tar.gz", "with space", "til~de.JPG", ".hidden",
         "ctl\x01x", "日本語.md", "a;b?c#d", "100%", "noext")  # fmt: skip
FAR = {"past.txt": -(2**31), "future.bin": 2**40, "beyond.bin": 10**12}


def _tree(folder: Path, outside: Path) -> None:
    folder.mkdir(parents=True)
    for name in NAMES:
        (folder / name).write_text(name)
    (folder / "sub dir").mkdir()
    (folder / "sub dir" / "in.txt").write_text("in")
    os.symlink("plain.txt", folder / "link")
    os.symlink("sub dir", folder / "dirlink")
    os.symlink(outside / "secret.txt", folder / "outlink")  # (outside the served root)
    os.symlink("nowhere", folder / "broken")
    os.mkfifo(folder / "fifo")
    with open(os.path.join(os.fsencode(folder), b"bad\xffname"), "w") as bad:
        bad.write("not UTF-8")
    for name, secs in FAR.items():
        (folder / name).write_text(name)
        with contextlib.suppress(OSError, OverflowError):  # (else it keeps today's)
            os.utime(folder / name, (secs, secs))


def _propfind(server: Server, user: tuple[str, str], path: str, depth: str, body: bytes) -> bytes:
    status, text = basic_request(server.http_port, "PROPFIND", path, *user, body=body,
                                 Depth=depth, **{"Content-Type": "application/xml"})  # fmt: skip
    assert status == 207, (path, status, text[:300])
    return text


def _canonical(response: ET.Element) -> tuple[str, dict[str, list[str]]]:
    """A response's href and, by status, its properties as text (values that change
    from one request to the next, free space and lock timeouts, left out)."""
    href = response.findtext("{DAV:}href") or ""
    found: dict[str, list[str]] = {}
    for propstat in response.findall("{DAV:}propstat"):
        status = propstat.findtext("{DAV:}status") or ""
        props = []
        for prop in propstat.find("{DAV:}prop") or []:
            if prop.tag.startswith("{DAV:}quota-"):
                props.append(prop.tag)
                continue
            text = ET.tostring(prop, encoding="unicode")
            props.append(re.sub(r"Second-\d+", "Second-N", text))
        found[status] = props
    return href, found


def _responses(body: bytes) -> list[ET.Element]:
    root = ET.fromstring(body)
    assert root.tag == "{DAV:}multistatus"
    return root.findall("{DAV:}response")


def _compare(server: Server, user: tuple[str, str], folder: str, body: bytes) -> int:
    """Compare each member of the Depth 1 answer with WsgiDAV's Depth 0 answer; how many."""
    listed = _responses(_propfind(server, user, folder, "1", body))
    compared = 0
    for response in listed:
        href, props = _canonical(response)
        try:
            unquote_to_bytes(href).decode()
        except UnicodeDecodeError:
            continue  # (WebDAV paths must be UTF-8: no Depth 0 of this one to compare)
        alone = _responses(_propfind(server, user, href, "0", body))
        assert len(alone) == 1
        assert (href, props) == _canonical(alone[0]), href
        compared += 1
    return compared


def _hrefs(server: Server, user: tuple[str, str], folder: str) -> set[str]:
    listed = _responses(_propfind(server, user, folder, "1", b""))
    return {response.findtext("{DAV:}href") or "" for response in listed}


@pytest.mark.parametrize("body", BODIES, ids=["empty", "allprop", "rclone", "bench", "live"])
def test_each_member_as_wsgidav_answers_it(server: Server, body: bytes) -> None:
    _tree(server.root / "share" / "t", server.outside)
    root = ("root", PASSWORD)
    assert _compare(server, root, "/dav/share/t/", body) >= len(NAMES) + len(FAR) + 4
    hrefs = _hrefs(server, root, "/dav/share/t/")
    assert "/dav/share/t/bad%FFname" in hrefs  # (answered by WsgiDAV's code)
    assert "/dav/share/t/broken" not in hrefs and "/dav/share/t/outlink" not in hrefs
    assert "/dav/share/t/x%20%26%3C%3E%22'%20%C3%A9%20%25.tar.gz" in hrefs
    reader = ("reader", READER_PASSWORD)  # jailed in /share, read-only
    assert _compare(server, reader, "/dav/t/", body) >= len(NAMES) + len(FAR) + 4
    assert "/dav/t/sub%20dir/" in _hrefs(server, reader, "/dav/t/")


@pytest.mark.parametrize("body", BODIES[1:3], ids=["allprop", "rclone"])
def test_dead_properties_and_locks_are_shown(server: Server, body: bytes) -> None:
    _tree(server.root / "share" / "t", server.outside)
    root = ("root", PASSWORD)
    patch = (
        b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns">'
        b"<D:set><D:prop><oc:checksums>SHA1:abc</oc:checksums></D:prop></D:set></D:propertyupdate>"
    )
    status, _ = basic_request(server.http_port, "PROPPATCH", "/dav/share/t/plain.txt", *root,
                              body=patch)  # fmt: skip
    assert status == 207
    listed = _propfind(server, root, "/dav/share/t/", "1", body)
    assert b"SHA1:abc" in listed
    _compare(server, root, "/dav/share/t/", body)
    lock = (
        b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
        b"</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>"
    )
    status, _ = basic_request(server.http_port, "LOCK", "/dav/share/t/with%20space", *root,
                              body=lock, Depth="0", Timeout="Second-600")  # fmt: skip
    assert status == 200
    if b"allprop" in body:
        assert b"activelock" in _propfind(server, root, "/dav/share/t/", "1", body)
    _compare(server, root, "/dav/share/t/", body)


def test_a_big_folder_listing_is_complete(server: Server) -> None:
    folder = server.root / "share" / "many"
    folder.mkdir(parents=True)
    for n in range(3000):
        (folder / f"f{n:05d}.txt").touch()
    listed = _responses(_propfind(server, ("root", PASSWORD), "/dav/share/many/", "1",
                                  BENCH_BODY.encode()))  # fmt: skip
    hrefs = {response.findtext("{DAV:}href") for response in listed}
    assert len(listed) == 3001 == len(hrefs)
    assert "/dav/share/many/f02999.txt" in hrefs


def test_a_date_no_template_can_write_goes_to_wsgidav() -> None:
    """A time beyond year 9999 (ext4 cannot hold one, other filesystems can): that
    member is answered by WsgiDAV's code (500 for the one property), never a failed
    listing."""
    folder = SimpleNamespace(get_href=lambda: "/dav/d/", get_ref_url=lambda: "/dav/d/",
                             _member=lambda entry: entry.name, path="/d")  # fmt: skip
    templates = SimpleNamespace(file="%(href)s %(mtime)s", file_fields=frozenset({"mtime"}),
                                folder="", folder_fields=frozenset())  # fmt: skip
    writer = Writer(folder, templates, frozenset(), lambda member: f"slow:{member}")  # type: ignore[arg-type]
    regular = os.stat_result((0o100644, 1, 1, 1, 0, 0, 0, 0, 0, 0))
    assert writer.write(Entry("now.txt", regular)) == "/dav/d/now.txt Thu, 01 Jan 1970 00:00:00 GMT"
    far = os.stat_result((0o100644, 1, 1, 1, 0, 0, 0, 0, 10**12, 0))
    assert writer.write(Entry("far.txt", far)) == "slow:far.txt"
    assert writer.write(Entry("b\udcffd", regular)) == "slow:b\udcffd"


@pytest.mark.parametrize("vendor", ["other", "owncloud"])
def test_rclone_lsjson_lists_the_tree(server: Server, vendor: str) -> None:
    """rclone's webdav backend lists names, sizes, times and folders as they are."""
    folder = server.root / "share" / "t"
    _tree(folder, server.outside)
    out = rclone(server, "root", "lsjson", ":webdav:share/t", vendor=vendor, timeout=120).stdout
    listed = {item["Name"]: item for item in json.loads(out)}
    for name in [*NAMES, *FAR, "sub dir", "link", "dirlink"]:
        if name == "ctl\x01x":
            continue  # (shown as U+FFFD by every WebDAV answer: XML cannot carry it)
        st = (folder / name).stat()
        item = listed[name]
        assert item["IsDir"] == (name in ("sub dir", "dirlink")), name
        if not item["IsDir"]:
            assert item["Size"] == st.st_size, name
            shown = datetime.fromisoformat(item["ModTime"].replace("Z", "+00:00")).timestamp()
            assert int(shown) == int(st.st_mtime), name
    assert "broken" not in listed and "outlink" not in listed
