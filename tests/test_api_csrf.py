"""Cross-site requests to the file API: a page on another origin must not change anything.

A form on any page can make the browser POST to the API with the user's Basic credentials;
``enctype=text/plain`` even sends a JSON-looking body. Every request here goes to a real
server with ``http.client``, with the headers a browser (or curl) would send.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
from pathlib import Path

import pytest
from conftest import PASSWORD, Server, require

PREFIX = "/api/v1/files"
BASIC = "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()
ATTACK = b'{"action":"move","to":"/j.txt","overwrite":true}'


def send(
    server: Server,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request as root (Basic); status and body. Only the headers given are added."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    try:
        conn.request(method, target, body=body, headers={"Authorization": BASIC, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def refused(status: int, body: bytes, code: str = "cross_origin", expected: int = 403) -> str:
    """Assert a JSON error with this status and code; its message."""
    assert status == expected, (status, body)
    data = json.loads(body)
    assert set(data) == {"error", "message"} and data["error"] == code, data
    assert data["message"], data
    return str(data["message"])


@pytest.fixture
def files(server: Server) -> tuple[Path, Path]:
    """``/i.txt`` and ``/j.txt`` in the served root."""
    i, j = server.root / "i.txt", server.root / "j.txt"
    i.write_text("i: the attacker's choice")
    j.write_text("j: precious")
    return i, j


def test_the_cross_site_form_move_is_refused(server: Server, files: tuple[Path, Path]) -> None:
    """The exact attack: a text/plain form POST from http://evil.example overwrote j.txt."""
    i, j = files
    form = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
    message = refused(*send(server, "POST", f"{PREFIX}/i.txt", ATTACK, form))
    assert "evil.example" in message
    assert j.read_text() == "j: precious" and i.exists()
    # Labelled as JSON, or with the browser's other hints, it is refused all the same.
    for headers in (
        {"Content-Type": "application/json", "Origin": "http://evil.example"},
        {"Content-Type": "application/json", "Origin": "null"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"},
        {"Content-Type": "text/plain", "Origin": "http://evil.example", "Sec-Fetch-Site": "none"},
        # Another port or scheme of the same host is another origin.
        {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{server.port}"},
        {"Content-Type": "application/json", "Origin": f"https://127.0.0.1:{server.http_port}"},
        {"Content-Type": "application/json", "Origin": "http://127.0.0.1.evil.example"},
        {"Content-Type": "application/json", "Origin": "garbage"},
    ):
        refused(*send(server, "POST", f"{PREFIX}/i.txt", ATTACK, headers))
    assert j.read_text() == "j: precious" and i.exists()
    # PUT and DELETE from another origin (fetch could send them after a CORS preflight).
    evil = {"Origin": "http://evil.example"}
    refused(*send(server, "PUT", f"{PREFIX}/j.txt", b"overwritten", evil))
    refused(*send(server, "DELETE", f"{PREFIX}/j.txt", None, evil))
    refused(*send(server, "PROPPATCH", f"{PREFIX}/j.txt", None, evil))
    assert j.read_text() == "j: precious"
    # Reading is not a change: a GET with a foreign Origin is answered (CORS keeps the
    # answer from the page, since the server sends no Access-Control-Allow-Origin).
    assert send(server, "GET", f"{PREFIX}/j.txt", None, evil)[0] == 200


def test_json_actions_need_a_json_content_type(server: Server, files: tuple[Path, Path]) -> None:
    """Without Origin (not a browser) a text/plain or unlabelled body is still 415."""
    i, j = files
    for headers in ({"Content-Type": "text/plain"}, {}, {"Content-Type": "application/jsonx"}):
        answer = send(server, "POST", f"{PREFIX}/i.txt", ATTACK, headers)
        assert "application/json" in refused(*answer, "unsupported_media_type", 415)
    assert j.read_text() == "j: precious" and i.exists()


def test_a_cross_site_form_mkdir_is_refused(server: Server) -> None:
    """A form-encoded POST to ?mkdir from another site is 403; a form body alone is 415."""
    target = f"{PREFIX}/made?mkdir"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for extra in (
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    ):
        refused(*send(server, "POST", target, b"a=b", {**form, **extra}))
    refused(*send(server, "POST", target, b"a=b", form), "unsupported_media_type", 415)
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    refused(*send(server, "POST", target, b"--x--\r\n", multipart), "unsupported_media_type", 415)
    assert not (server.root / "made").exists()


def test_same_origin_requests_work(server: Server, files: tuple[Path, Path]) -> None:
    """What the listing page's script sends (fetch from the server's own origin) works."""
    i, j = files
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    status, _ = send(server, "PUT", f"{PREFIX}/up.txt", b"uploaded", own)
    assert status == 201 and (server.root / "up.txt").read_bytes() == b"uploaded"
    assert send(server, "POST", f"{PREFIX}/folder?mkdir", None, own)[0] == 201
    json_type = {**own, "Content-Type": "application/json; charset=utf-8"}
    move = b'{"action":"move","to":"/folder/i.txt"}'
    assert send(server, "POST", f"{PREFIX}/i.txt", move, json_type)[0] == 200
    assert (server.root / "folder" / "i.txt").exists() and not i.exists()
    assert send(server, "DELETE", f"{PREFIX}/up.txt", None, own)[0] == 204
    # The origin is compared as scheme, host and port: case and the default port do not
    # matter, and any name the server is reached by is its own origin.
    for n, (host, origin) in enumerate(
        [
            (f"localhost:{server.http_port}", f"http://LOCALHOST:{server.http_port}"),
            ("files.example", "http://files.example:80"),
            ("files.example:80", "http://files.example"),
        ]
    ):
        headers = {"Host": host, "Origin": origin, "Content-Type": "application/json"}
        copy = json.dumps({"action": "copy", "to": f"/copy-{n}.txt"}).encode()
        status, body = send(server, "POST", f"{PREFIX}/j.txt", copy, headers)
        assert status == 200, (host, origin, body)
    assert j.read_text() == "j: precious"


def test_requests_without_origin_work(server: Server, files: tuple[Path, Path]) -> None:
    """curl and scripts send neither Origin nor Sec-Fetch-Site: they work as before."""
    i, j = files
    assert send(server, "POST", f"{PREFIX}/plain?mkdir")[0] == 201
    move = b'{"action":"move","to":"/plain/i.txt"}'
    json_type = {"Content-Type": "application/json"}
    assert send(server, "POST", f"{PREFIX}/i.txt", move, json_type)[0] == 200
    assert (server.root / "plain" / "i.txt").exists()
    user_typed = {"Sec-Fetch-Site": "none"}  # a URL typed by the user: not another site
    assert send(server, "DELETE", f"{PREFIX}/plain?recursive", None, user_typed)[0] == 204

    def curl(*args: str) -> str:
        require("curl")
        result = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"root:{PASSWORD}",
             *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert curl("-X", "POST", f"{server.url}{PREFIX}/by-curl?mkdir") == "201"
    copy = '{"action":"copy","to":"/by-curl/j.txt"}'
    json_header = "Content-Type: application/json"
    assert curl("-H", json_header, "-d", copy, f"{server.url}{PREFIX}/j.txt") == "200"
    assert (server.root / "by-curl" / "j.txt").read_text() == "j: precious"
