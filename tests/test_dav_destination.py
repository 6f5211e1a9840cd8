"""A WebDAV COPY or MOVE lands exactly on the target its Destination names, or gets 400.

WsgiDAV percent-decoded the header before parsing it as a URL: a MOVE to
``report%3Bv2`` replaced ``report`` (``;`` began URL parameters), a COPY to
``what%3Fnot`` made ``what`` and one to ``a%09c`` made ``ac``.
"""

from __future__ import annotations

import base64
import http.client
import os

import pytest
from conftest import PASSWORD, Server, basic_request


def _call(server: Server, method: str, path: str, **headers: str) -> tuple[int, bytes]:
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Basic {token}")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


@pytest.fixture
def folder(server: Server) -> os.PathLike[str]:
    mv = server.root / "mv"
    mv.mkdir()
    (mv / "report").write_text("the report")
    (mv / "report;draft").write_text("the draft")
    return mv


def test_move_onto_a_name_with_a_semicolon(server: Server, folder: os.PathLike[str]) -> None:
    mv = server.root / "mv"
    status, body = _call(
        server, "MOVE", "/dav/mv/report%3Bdraft", Destination="/dav/mv/report%3Bv2"
    )
    assert status == 201, body
    assert (mv / "report").read_text() == "the report"
    assert (mv / "report;v2").read_text() == "the draft"
    assert not (mv / "report;draft").exists()
    url = f"http://127.0.0.1:{server.http_port}/dav/mv/a%3Bb%3Bc"
    status, body = _call(server, "COPY", "/dav/mv/report", Destination=url)
    assert status == 201, body
    assert (mv / "a;b;c").read_text() == "the report"


@pytest.mark.parametrize("name", ["a%09c", "what%3Fnot", "line%0Abreak", "cr%0Dhere", "x%2Fy"])
def test_names_no_destination_can_carry_are_refused(
    server: Server, folder: os.PathLike[str], name: str
) -> None:
    mv = server.root / "mv"
    before = sorted(os.listdir(mv))
    for method in ("COPY", "MOVE"):
        status, body = _call(server, method, "/dav/mv/report", Destination=f"/dav/mv/{name}")
        assert status == 400, (method, name, status, body)
        assert body.startswith(b"Destination: "), body
    assert sorted(os.listdir(mv)) == before
    assert (mv / "report").read_text() == "the report"


def test_other_names_land_exactly(server: Server, folder: os.PathLike[str]) -> None:
    mv = server.root / "mv"
    cases = {
        "sp%20ace": "sp ace",
        "%C3%A9t%C3%A9": "été",
        "p%25q": "p%q",
        "hash%23tag": "hash#tag",
    }
    for encoded, name in cases.items():
        status, body = _call(server, "COPY", "/dav/mv/report", Destination=f"/dav/mv/{encoded}")
        assert status == 201, (encoded, status, body)
        assert (mv / name).read_text() == "the report", encoded
    # Raw UTF-8 in the header (sloppy, but unambiguous) names the same file.
    raw = "/dav/mv/raw-é".encode().decode("latin-1")
    status, body = _call(server, "COPY", "/dav/mv/report", Destination=raw)
    assert status == 201, body
    assert (mv / "raw-é").read_text() == "the report"
    # A folder whose name holds ';' moves whole.
    (mv / "d;1").mkdir()
    (mv / "d;1" / "inside").write_text("in")
    status, body = _call(server, "MOVE", "/dav/mv/d%3B1/", Destination="/dav/mv/d%3B2/")
    assert status == 201, body
    assert (mv / "d;2" / "inside").read_text() == "in" and not (mv / "d;1").exists()


def test_a_lock_on_a_semicolon_name_still_holds(server: Server, folder: os.PathLike[str]) -> None:
    lock = (
        b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
        b"</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"
    )
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    conn.request(
        "LOCK", "/dav/mv/report%3Bdraft", body=lock,
        headers={"Authorization": f"Basic {token}", "Content-Type": "text/xml"},
    )  # fmt: skip
    reply = conn.getresponse()
    reply.read()
    conn.close()
    assert reply.status == 200
    status, body = _call(
        server, "COPY", "/dav/mv/report", Destination="/dav/mv/report%3Bdraft", Overwrite="T"
    )
    assert status == 423, (status, body)
    assert (server.root / "mv" / "report;draft").read_text() == "the draft"


@pytest.mark.parametrize(
    ("method", "source", "destination"),
    [
        ("COPY", "/dav/p/sub/data", "/dav/p"),  # a file over a folder above it
        ("MOVE", "/dav/p/sub", "/dav/p"),  # a folder over its parent
        ("MOVE", "/dav/p/sub/data", "/dav/p/sub"),
        ("COPY", "/dav/p/sub", "/dav/up/p"),  # through a link to the root
        ("MOVE", "/dav/p/sub/data", "/dav/up/p/sub/data"),  # onto itself through a link
        ("MOVE", "/dav/p", "/dav/"),  # over the share's root
        ("MOVE", "/dav/p/sub", "/dav"),
        ("COPY", "/dav/p", "/dav/."),
    ],
)
def test_a_destination_that_holds_the_source_is_refused(
    server: Server, method: str, source: str, destination: str
) -> None:
    """WsgiDAV deleted the Destination it was to replace, and with it the source inside
    it (a 404 after the data was gone), or failed with 500 on the share's root; such a
    request is 403 and nothing changes, whatever path (a link too) names the folder."""
    (server.root / "p" / "sub").mkdir(parents=True)
    (server.root / "p" / "sub" / "data").write_text("precious")
    (server.root / "p" / "other").write_text("other")
    (server.root / "up").symlink_to("/")
    status, body = _call(server, method, source, Destination=destination)
    assert status == 403, body
    assert b"holds" in body
    assert (server.root / "p" / "sub" / "data").read_text() == "precious"
    assert (server.root / "p" / "other").read_text() == "other"


def test_a_copy_over_a_file_keeps_its_owner_and_takes_the_sources_properties(
    server: Server,
) -> None:
    """A COPY over an existing file replaces it whole and keeps its owner and group
    (WsgiDAV deleted it first, so the copy became root's); its dead properties give way
    to the source's."""
    (server.root / "new").write_text("new content")
    owned = server.root / "owned"
    owned.write_text("old content")
    os.chown(owned, 1234, 4321)
    prop = (
        b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
        b"<D:set><D:prop><Z:colour>{}</Z:colour></D:prop></D:set></D:propertyupdate>"
    )
    for path, colour in (("/dav/new", b"blue"), ("/dav/owned", b"red")):
        status, _ = basic_request(
            server.http_port, "PROPPATCH", path, "root", PASSWORD,
            prop.replace(b"{}", colour), **{"Content-Type": "application/xml"},
        )  # fmt: skip
        assert status == 207
    status, body = _call(server, "COPY", "/dav/new", Destination="/dav/owned")
    assert status == 204, body
    st = owned.stat()
    assert owned.read_text() == "new content"
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    asked = (
        b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z">'
        b"<D:prop><Z:colour/></D:prop></D:propfind>"
    )
    status, answer = basic_request(
        server.http_port, "PROPFIND", "/dav/owned", "root", PASSWORD, asked, Depth="0",
        **{"Content-Type": "application/xml"},
    )  # fmt: skip
    assert status == 207
    assert b"blue" in answer and b"red" not in answer
    status, body = _call(server, "COPY", "/dav/new", Destination="/dav/fresh")
    assert status == 201, body  # (a new destination: WsgiDAV's own path, 201)


def test_a_relative_destination_is_400_saying_so(server: Server) -> None:
    """A Destination must be absolute; a relative one got 502 "Inter-realm copy/move is
    not supported", which told the client nothing it could fix."""
    (server.root / "r.txt").write_text("r")
    for destination in ("r2.txt", "sub/r2.txt", "http:r2.txt"):
        status, body = _call(server, "MOVE", "/dav/r.txt", Destination=destination)
        assert status == 400, (destination, status, body)
        assert b"absolute" in body
    assert (server.root / "r.txt").read_text() == "r"


def test_a_browser_opening_a_folder_is_sent_to_its_page(server: Server) -> None:
    """GET of a folder of the share is 303 to its page in the file API (WsgiDAV's 403
    named options no user can set, and came as a download); files are served as ever,
    and an error page is shown, not downloaded."""
    (server.root / "docs").mkdir()
    (server.root / "docs" / "a b.txt").write_text("text")
    for path, where in (("/dav/", "/api/v1/files/"), ("/dav/docs", "/api/v1/files/docs/")):
        status, body = _call(server, "GET", path)
        assert status == 303, (path, status, body)
        assert where.encode() in body
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    conn.request("GET", "/dav/docs", headers={"Authorization": f"Basic {token}"})
    reply = conn.getresponse()
    reply.read()
    assert reply.getheader("Location") == "/api/v1/files/docs/"
    conn.request("GET", "/api/v1/files/docs/", headers={"Authorization": f"Basic {token}"})
    page = conn.getresponse()
    assert page.status == 200 and b"a b.txt" in page.read()
    conn.request("GET", "/dav/docs/nothing.html", headers={"Authorization": f"Basic {token}"})
    missing = conn.getresponse()
    missing.read()
    assert missing.status == 404
    assert missing.getheader("Content-Disposition") is None
    conn.close()
    assert _call(server, "GET", "/dav/docs/a%20b.txt") == (200, b"text")


def test_an_encoded_slash_in_a_path_is_400_so_each_path_names_one_file(server: Server) -> None:
    """cheroot keeps %2F as three characters: ``sl%2Fx.txt`` and ``sl%252Fx.txt`` both
    named the file "sl%2Fx.txt". A path with an encoded '/' is refused on both fronts;
    the literal name stays reachable, spelled one way."""
    for prefix in ("/api/v1/files/", "/dav/"):
        for method in ("PUT", "GET"):
            status, body = _call(server, method, prefix + "sl%2Fx.txt")
            assert status == 400, (prefix, method, status, body)
            assert b"%2F" in body
    assert _call(server, "PUT", "/dav/sl%252Fx.txt")[0] == 201
    assert (server.root / "sl%2Fx.txt").exists()
    assert _call(server, "GET", "/api/v1/files/sl%252Fx.txt")[0] == 200


def test_the_share_named_in_other_letters_is_refused(server: Server) -> None:
    """WsgiDAV matches share names whatever their case, so /DAV/… reached the share
    around every check that names /dav (a MOVE onto the folder holding its source went
    through again; DELETE /DAV gave 500). Paths are case-sensitive: 404, and a
    Destination naming /DAV is 400."""
    (server.root / "p" / "sub").mkdir(parents=True)
    (server.root / "p" / "sub" / "data").write_text("precious")
    for method, path, headers in (
        ("MOVE", "/DAV/p/sub", {"Destination": "/dav/p"}),
        ("DELETE", "/DAV", {}),
        ("PUT", "/Dav/new.txt", {}),
        ("GET", "/dAV/p/sub/data", {}),
    ):
        status, body = _call(server, method, path, **headers)
        assert status == 404, (method, path, status, body)
        assert b"case-sensitive" in body
    status, body = _call(server, "MOVE", "/dav/p/sub", Destination="/DAV/p")
    assert status == 400 and b"case-sensitive" in body, (status, body)
    assert (server.root / "p" / "sub" / "data").read_text() == "precious"
    assert not (server.root / "new.txt").exists()
