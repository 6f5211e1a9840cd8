"""The errno maps of the three fronts, side by side: the table in docs/design.md is the
one the code applies, row by row, and each front answers by it."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
from asyncssh.constants import FX_FAILURE, FX_NO_SUCH_FILE, FX_PERMISSION_DENIED
from conftest import PASSWORD, Server, basic_request

from hoody_mount.dav.provider import dav_error
from hoody_mount.http_rules import ERRNO_STATUS, INTERNAL, body_refusal, error_status, status_line
from hoody_mount.ssh.wire import _code as sftp_code

DESIGN = Path(__file__).resolve().parent.parent / "docs" / "design.md"
SFTP_NAMES = {
    FX_NO_SUCH_FILE: "no such file",
    FX_PERMISSION_DENIED: "permission denied",
    FX_FAILURE: "failure",
}


def _table() -> dict[str, list[str]]:
    """The rows of the errno table in the design doc: errno name → its cells."""
    text = DESIGN.read_text()
    start = text.index("| errno | SFTP v3 | WebDAV | file API |")
    rows: dict[str, list[str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_design_doc_lists_every_errno_the_code_maps() -> None:
    assert set(_table()) == {errno.errorcode[n] for n in ERRNO_STATUS} | {"any other"}


@pytest.mark.parametrize("name", sorted(_table()))
def test_each_row_of_the_table_is_what_the_fronts_answer(name: str) -> None:
    """SFTP's code, WebDAV's status and the file API's status and code, as written."""
    sftp, dav, api = _table()[name]
    number = errno.EIO if name == "any other" else getattr(errno, name)
    exc = OSError(number, os.strerror(number), "/f")
    assert SFTP_NAMES[sftp_code(number)] == sftp
    status, code = error_status(exc)
    assert (name == "any other") == ((status, code) == INTERNAL)
    assert api == f"{status} {code}"
    assert re.fullmatch(rf"{dav_error(exc).value}( \(MKCOL: 405\))?", dav), dav


def test_webdav_and_the_api_answer_a_link_loop_as_a_dangling_link(server: Server) -> None:
    """Both fronts answer 404 for a link that never resolves, as for one that leads
    nowhere (they answered 409 and 400 before sharing one map)."""
    folder = server.root / "share" / "loops"
    folder.mkdir()
    os.symlink("b", folder / "a")
    os.symlink("a", folder / "b")
    os.symlink("nowhere", folder / "dangling")
    for name in ("a", "dangling"):
        for path in (f"/dav/share/loops/{name}", f"/api/v1/files/share/loops/{name}"):
            status, body = basic_request(server.http_port, "GET", path, "root", PASSWORD)
            assert status == 404, (path, body)


def test_a_fifo_is_409_over_webdav_and_the_api(server: Server) -> None:
    """A FIFO is listed but never opened: the same status over both HTTP fronts."""
    os.mkfifo(server.root / "share" / "pipe")
    for path in ("/dav/share/pipe", "/api/v1/files/share/pipe"):
        status, body = basic_request(server.http_port, "GET", path, "root", PASSWORD)
        assert status == 409, (path, body)
        assert b"not a regular file" in body, body


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TimeoutError(), 408),
        (OSError(errno.EBADMSG, "malformed chunk size"), 400),
        (OSError(errno.EFBIG, "File too large"), 413),
    ],
)
def test_a_body_the_client_spoiled_has_one_status_over_every_http_front(
    error: OSError, status: int
) -> None:
    """The listener (small chunked bodies), WebDAV (uploads) and the API read bodies
    with one rule; any other error while reading is the server's (None)."""
    refusal = body_refusal(error)
    assert refusal is not None and refusal[0] == status
    assert body_refusal(OSError(errno.EIO, "Input/output error")) is None


def test_status_lines_use_the_names_of_rfc_9110() -> None:
    assert status_line(413) == "413 Content Too Large"
    assert status_line(422) == "422 Unprocessable Content"
    assert status_line(404) == "404 Not Found"


def test_the_two_http_fronts_agree_on_missing_places(server: Server) -> None:
    """A name below a file is not found (404) over both; making a folder, or moving or
    copying, into a folder that does not exist is a conflict (409), as RFC 4918 has it
    for MKCOL and MOVE (the file API answered 409 for the first and 404 for the others)."""
    port = server.http_port
    for method in ("GET", "DELETE"):
        for path in ("/dav/share/docs/readme.txt/x", "/api/v1/files/share/docs/readme.txt/x"):
            status, body = basic_request(port, method, path, "root", PASSWORD)
            assert status == 404, (method, path, body)
    status, body = basic_request(port, "MKCOL", "/dav/share/nope/d", "root", PASSWORD)
    assert status == 409, body
    status, body = basic_request(port, "POST", "/api/v1/files/share/nope/d?mkdir", "root", PASSWORD)
    assert (status, json.loads(body)["error"]) == (409, "no_parent"), body
    for action in ("move", "copy"):
        request = json.dumps({"action": action, "to": "/share/nope/m"}).encode()
        status, body = basic_request(
            port, "POST", "/api/v1/files/share/docs/readme.txt", "root", PASSWORD, request,
            **{"Content-Type": "application/json"},
        )  # fmt: skip
        assert (status, json.loads(body)["error"]) == (409, "no_parent"), body
        status, body = basic_request(
            port, action.upper(), "/dav/share/docs/readme.txt", "root", PASSWORD,
            Destination="/dav/share/nope/m",
        )  # fmt: skip
        assert status == 409, body
    request = json.dumps({"action": "move", "to": "/share/m"}).encode()
    status, body = basic_request(
        port, "POST", "/api/v1/files/share/missing.txt", "root", PASSWORD, request,
        **{"Content-Type": "application/json"},
    )  # fmt: skip
    assert (status, json.loads(body)["error"]) == (404, "not_found"), body
    assert (server.root / "share" / "docs" / "readme.txt").read_text() == "shared text\n"
