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
from conftest import PASSWORD, Server


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
