"""WebDAV dead properties: one SQLite row each, bounded per resource, trees in one go."""

from __future__ import annotations

import http.client
import shelve
import sqlite3
from pathlib import Path

import pytest
from test_dav_protocol import basic, dedicated, new_layout
from wsgidav.dav_error import DAVError

from hoody_mount.dav.properties import PropertyTable


def test_set_get_remove_and_the_cap_per_resource(tmp_path: Path) -> None:
    table = PropertyTable(tmp_path / "p.sqlite", per_resource=3)
    for n in range(3):
        table.write_property("/dav/a.txt", f"{{urn:x}}p{n}", b"<v/>")
    table.write_property("/dav/a.txt", "{urn:x}p0", b"<w/>")  # (a change is no new one)
    with pytest.raises(DAVError) as full:
        table.write_property("/dav/a.txt", "{urn:x}p3", b"<v/>", dry_run=True)
    assert full.value.value == 507
    table.write_property("/dav/b.txt", "{urn:x}p3", b"<v/>")  # another resource may
    assert sorted(table.get_properties("/dav/a.txt")) == ["{urn:x}p0", "{urn:x}p1", "{urn:x}p2"]
    assert table.get_property("/dav/a.txt", "{urn:x}p0") == b"<w/>"
    table.remove_property("/dav/a.txt", "{urn:x}p0")
    table.remove_property("/dav/a.txt", "{urn:x}nothing")
    assert table.get_property("/dav/a.txt", "{urn:x}p0") is None
    table.remove_properties("/dav/a.txt")
    assert table.get_properties("/dav/a.txt") == []
    table.close()


def test_trees_move_and_copy_with_their_members_only(tmp_path: Path) -> None:
    table = PropertyTable(tmp_path / "p.sqlite")
    for url in ("/dav/d/", "/dav/d/f", "/dav/d/sub/", "/dav/d/sub/g", "/dav/dx", "/dav/e/old"):
        table.write_property(url, "{urn:x}p", b"<v>%s</v>" % url.encode())
    table.move_properties("/dav/d/", "/dav/m/", with_children=True)
    assert table.get_property("/dav/m/sub/g", "{urn:x}p") == b"<v>/dav/d/sub/g</v>"
    assert table.get_properties("/dav/d/f") == []
    assert table.get_property("/dav/dx", "{urn:x}p") == b"<v>/dav/dx</v>"  # (a sibling stays)
    table.copy_tree("/dav/m/", "/dav/e/", whole=True, replaced=True,
                    exists=lambda url: not url.endswith("/g"))  # fmt: skip
    assert table.get_property("/dav/e/sub/", "{urn:x}p") == b"<v>/dav/d/sub/</v>"
    assert table.get_properties("/dav/e/sub/g") == []  # not in the copy
    assert table.get_properties("/dav/e/old") == []  # the replaced tree's are gone
    assert table.get_property("/dav/m/f", "{urn:x}p") == b"<v>/dav/d/f</v>"  # the source keeps its
    table.close()


def test_the_properties_of_an_older_shelve_are_carried_over_once(tmp_path: Path) -> None:
    with shelve.open(str(tmp_path / "dav-props.shelve")) as old:
        old["/dav/a.txt"] = {"{urn:x}color": b"<x:color xmlns:x='urn:x'>red</x:color>"}
    table = PropertyTable(tmp_path / "dav-props.sqlite")
    assert table.get_property("/dav/a.txt", "{urn:x}color") is not None
    table.close()
    assert not (tmp_path / "dav-props.shelve.dat").exists()
    assert (tmp_path / "dav-props.shelve.dat.imported").exists()
    again = PropertyTable(tmp_path / "dav-props.sqlite")
    assert again.get_properties("/dav/a.txt") == ["{urn:x}color"]
    again.close()


def test_a_proppatch_costs_the_store_about_what_its_body_holds(
    tmp_path: Path, client_key: Path
) -> None:
    """4,000 properties of 200 bytes in one PROPPATCH of a new file grew the shelve by
    1 GB (the whole dict appended again at each property); past 1,000 a resource's
    properties are 507."""
    layout = new_layout(tmp_path)
    (layout.root / "share" / "new.txt").write_bytes(b"x")
    props = "".join(f"<x:p{i} xmlns:x='urn:x'>{'v' * 200}</x:p{i}>" for i in range(900))
    body = (
        "<?xml version='1.0'?><D:propertyupdate xmlns:D='DAV:'><D:set><D:prop>"
        f"{props}</D:prop></D:set></D:propertyupdate>"
    ).encode()
    with dedicated(layout, client_key, name="props") as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.http_port, timeout=120)
        conn.request("PROPPATCH", "/dav/share/new.txt", body=body, headers={
            "Authorization": basic(), "Content-Type": "application/xml"})  # fmt: skip
        reply = conn.getresponse()
        text = reply.read()
        assert reply.status == 207 and text.count(b"200 OK") >= 1, text[:300]
        store = (layout.state / "dav-props.sqlite").stat().st_size
        assert store < 4 * len(body), (store, len(body))
        journal = sum(f.stat().st_size for f in layout.state.glob("dav-props.sqlite-*"))
        assert journal < 16 << 20  # (SQLite's write-ahead log: reused, about 4 MB at most)
        more = body.replace(b"<x:p", b"<x:q").replace(b"</x:p", b"</x:q")
        conn.request("PROPPATCH", "/dav/share/new.txt", body=more, headers={
            "Authorization": basic(), "Content-Type": "application/xml"})  # fmt: skip
        reply = conn.getresponse()
        text = reply.read()
        conn.close()
        assert reply.status == 207 and b"507 Insufficient Storage" in text, text[:300]
        assert b"200 OK" not in text  # (all or none: the others are 424)
        conn = http.client.HTTPConnection("127.0.0.1", web.http_port, timeout=120)
        conn.request("PROPFIND", "/dav/share/new.txt", headers={
            "Authorization": basic(), "Depth": "0"})  # fmt: skip
        listed = conn.getresponse().read()
        conn.close()
        assert listed.count(b"xmlns:x") == 0 or listed.count(b"urn:x") >= 900
        assert b"<ns1:q0" not in listed and b":q0 " not in listed


def test_values_names_and_a_resources_bytes_are_bounded(tmp_path: Path) -> None:
    """A 1 MB value, 500 times, made one PROPFIND hold 520 MB (four at once took the
    server to 4.35 GB); a name XML cannot carry broke every later PROPFIND."""
    table = PropertyTable(tmp_path / "p.sqlite")
    big = b"<x:v xmlns:x='urn:x'>" + b"a" * (600 << 10) + b"</x:v>"
    table.write_property("/dav/a", "{urn:x}v1", big)
    with pytest.raises(DAVError) as full:
        table.write_property("/dav/a", "{urn:x}v2", big)
    assert full.value.value == 507
    table.write_property("/dav/a", "{urn:x}v1", b"<x:v xmlns:x='urn:x'>small</x:v>")
    table.write_property("/dav/a", "{urn:x}v2", big)  # (the first one shrank)
    with pytest.raises(DAVError) as long_name:
        table.write_property("/dav/a", "{urn:x}" + "n" * 2000, b"<v/>")
    assert long_name.value.value == 400
    with pytest.raises(DAVError) as not_xml:
        table.write_property("/dav/a", "{urn:x}\u00fc", b"<ns0:&#252; xmlns:ns0='urn:x'/>")
    assert not_xml.value.value == 400
    table.close()


def test_a_proppatchs_dry_run_counts_what_it_adds(tmp_path: Path) -> None:
    table = PropertyTable(tmp_path / "p.sqlite", per_resource=3)
    environ: dict[str, object] = {}
    for n in range(3):
        table.write_property("/dav/a", f"{{urn:x}}p{n}", b"<v/>", dry_run=True, environ=environ)
    with pytest.raises(DAVError):
        table.write_property("/dav/a", "{urn:x}p3", b"<v/>", dry_run=True, environ=environ)
    assert table.get_properties("/dav/a") == []  # (a dry run writes nothing)


def test_a_folders_removal_takes_the_properties_below_it(tmp_path: Path) -> None:
    table = PropertyTable(tmp_path / "p.sqlite")
    for url in ("/dav/d/", "/dav/d/f", "/dav/d/sub/g", "/dav/dx"):
        table.write_property(url, "{urn:x}p", b"<v/>")
    table.remove_properties("/dav/d/")
    assert [table.get_properties(u) for u in ("/dav/d/", "/dav/d/f", "/dav/d/sub/g")] == [[]] * 3
    assert table.get_properties("/dav/dx") == ["{urn:x}p"]
    table.close()


def test_a_property_name_xml_cannot_carry_is_refused_and_listings_still_work(
    tmp_path: Path, client_key: Path
) -> None:
    """A property named "ü" was stored as ``<ns0:&#252;>``, which no XML parser reads:
    every later PROPFIND of the file logged a traceback. Now 400 for it (424 for the
    rest), and the file's listing is whole."""
    layout = new_layout(tmp_path)
    (layout.root / "share" / "w.txt").write_bytes(b"x")
    body = ("<?xml version='1.0' encoding='utf-8'?><D:propertyupdate xmlns:D='DAV:' "
            "xmlns:x='urn:x'><D:set><D:prop><x:\u00fc>v</x:\u00fc><x:ok>v</x:ok></D:prop>"
            "</D:set></D:propertyupdate>").encode()  # fmt: skip
    with dedicated(layout, client_key, name="names") as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.http_port, timeout=60)
        conn.request("PROPPATCH", "/dav/share/w.txt", body=body, headers={
            "Authorization": basic(), "Content-Type": "application/xml"})  # fmt: skip
        text = conn.getresponse().read()
        assert b"400 Bad Request" in text and b"424 Failed Dependency" in text, text[:400]
        conn.request("PROPFIND", "/dav/share/w.txt", headers={
            "Authorization": basic(), "Depth": "0"})  # fmt: skip
        reply = conn.getresponse()
        listed = reply.read()
        conn.close()
        assert reply.status == 207 and b"getcontentlength" in listed
    assert "Traceback" not in web.log.read_text()


def test_properties_outside_the_share_are_dropped_at_start(tmp_path: Path) -> None:
    """A property on ``/`` (every user's, so readable from every jail), kept by a version
    that allowed it, is dropped at start; those in the share stay."""
    path = tmp_path / "props.sqlite"
    PropertyTable(path).close()
    with sqlite3.connect(path) as db:
        for url in ("/", "/dav", "/dav/a.txt", "/davx/b", "/elsewhere"):
            db.execute("INSERT INTO props VALUES (?, ?, ?)", (url, "{urn:z}note", b"<x/>"))
    PropertyTable(path).close()
    with sqlite3.connect(path) as db:
        urls = sorted(url for (url,) in db.execute("SELECT url FROM props"))
    assert urls == ["/dav", "/dav/a.txt"]
