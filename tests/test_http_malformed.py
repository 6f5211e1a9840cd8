"""Malformed and expensive HTTP requests get a clear 4xx, never a 500 (issue 18)."""

from __future__ import annotations

import base64
import random
import socket
import time

import pytest
from conftest import PASSWORD, Server, Vitals, assert_back_to_normal, basic_request

AUTH = b"Authorization: Basic " + base64.b64encode(f"root:{PASSWORD}".encode()) + b"\r\n"


def exchange(server: Server, data: bytes, timeout: float = 20) -> bytes:
    """Send raw bytes; everything the server answers until it closes (or ``timeout``)."""
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=timeout)
    try:
        sock.sendall(data)
        answer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            answer += piece
        return answer
    finally:
        sock.close()


def statuses(answer: bytes) -> list[int]:
    """The status codes of every answer in a stream of them."""
    return [int(line[9:12]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


@pytest.mark.parametrize("prefix", [b"/api/v1/files/", b"/dav/"])
def test_a_chunk_size_past_any_file_is_413_and_closes(server: Server, prefix: bytes) -> None:
    """cheroot read an announced chunk whole: ffffffffffffffff raised OverflowError
    (500), and a chunk of 1 GiB made it allocate 1 GiB."""
    answer = exchange(
        server,
        b"PUT " + prefix + b"x HTTP/1.1\r\nHost: x\r\n" + AUTH
        + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    )  # fmt: skip
    assert statuses(answer) == [413], answer[:300]
    assert b"Content Too Large" in answer or b"Entity Too Large" in answer
    assert not (server.root / "x").exists()


@pytest.mark.parametrize("prefix", [b"/api/v1/files/", b"/dav/"])
def test_a_malformed_chunked_body_is_400_and_the_rest_is_not_read_as_a_request(
    server: Server, prefix: bytes
) -> None:
    """A chunk not followed by CRLF, or a size that is no number: 400, the upload is
    thrown away and the connection closed (the bytes after were read as a request)."""
    for body in (b"3\r\nabcXX0\r\n\r\n", b"zz\r\nabc\r\n0\r\n\r\n", b"-1\r\nabc\r\n0\r\n\r\n"):
        answer = exchange(
            server,
            b"PUT " + prefix + b"y HTTP/1.1\r\nHost: x\r\n" + AUTH
            + b"Transfer-Encoding: chunked\r\n\r\n" + body,
        )  # fmt: skip
        assert statuses(answer) == [400], (body, answer[:400])
        assert b"chunk" in answer
    assert not (server.root / "y").exists()


def test_a_large_chunk_is_read_in_pieces(server: Server) -> None:
    """A well-formed chunked upload with 8 MiB chunks arrives whole."""
    data = random.randbytes(8 << 20)
    body = b""
    for start in range(0, len(data), 4 << 20):
        piece = data[start : start + (4 << 20)]
        body += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer = exchange(
        server,
        b"PUT /api/v1/files/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + AUTH
        + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n",
    )  # fmt: skip
    assert statuses(answer) == [201], answer[:300]
    assert (server.root / "big").read_bytes() == data


def test_content_length_with_transfer_encoding_is_400_and_closes(server: Server) -> None:
    """Both framings at once is how requests are smuggled (RFC 9112, 6.3): refused,
    and what follows is never read as a request."""
    smuggled = b"GET /api/v1/files/ HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"
    answer = exchange(
        server,
        b"PUT /api/v1/files/z HTTP/1.1\r\nHost: x\r\n" + AUTH
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
    )  # fmt: skip
    assert statuses(answer) == [400], answer[:400]
    assert not (server.root / "z").exists()


def _propfind_naming(count: int) -> bytes:
    names = "".join(f"<Z:p{i}/>" for i in range(count))
    return (
        f'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z">'
        f"<D:prop>{names}</D:prop></D:propfind>"
    ).encode()


def test_expensive_xml_bodies_are_400(server: Server) -> None:
    """A PROPFIND naming 60,000 properties (it ran at full CPU and grew the process by
    850 MB), a LOCK owner nested 3,000 deep (RecursionError: 500) and a DTD in UTF-16
    (past a byte search) get 400 saying why; a PROPFIND of 100 properties is served.
    The server's threads and memory are back where they were after."""
    basic_request(server.http_port, "PROPFIND", "/dav/", "root", PASSWORD, Depth="0")
    before = Vitals.of(server.process.pid)
    lock = (
        b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
        b"</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>"
        + b"<a>" * 3000 + b"</a>" * 3000 + b"</D:owner></D:lockinfo>"
    )  # fmt: skip
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x/>'
    for method, body, why in (
        ("PROPFIND", _propfind_naming(60_000), b"elements at most"),
        ("LOCK", lock, b"deep at most"),
        ("PROPFIND", utf16.encode("utf-16"), b"DTD"),
    ):
        status, answer = basic_request(
            server.http_port, method, "/dav/", "root", PASSWORD, body,
            Depth="0", **{"Content-Type": "application/xml"},
        )  # fmt: skip
        assert status == 400, (method, status, answer[:300])
        assert why in answer
    status, answer = basic_request(
        server.http_port, "PROPFIND", "/dav/", "root", PASSWORD, _propfind_naming(100),
        Depth="1", **{"Content-Type": "application/xml"},
    )  # fmt: skip
    assert status == 207, answer[:300]
    assert_back_to_normal(server.process.pid, before)


def test_random_requests_never_get_a_500(server: Server) -> None:
    """Random methods, paths, headers and bodies: answers of 4xx (or 2xx), never 500."""
    rng = random.Random(18)
    methods = [
        b"GET",
        b"PUT",
        b"POST",
        b"DELETE",
        b"MOVE",
        b"COPY",
        b"PROPFIND",
        b"PROPPATCH",
        b"LOCK",
        b"UNLOCK",
        b"MKCOL",
        b"OPTIONS",
        b"HEAD",
        b"PATCH",
        b"BREW",
        b"get",
    ]
    paths = [
        b"/dav/",
        b"/DAV",
        b"/dav/a",
        b"/api/v1/files/",
        b"/api/v1/files/a?json",
        b"/api/v1/files/a?cursor=zz",
        b"/dav/%ff",
        b"/dav/a%2Fb",
        b"/",
        b"/x",
        b"*",
    ]
    headers = [
        b"Depth: infinity",
        b"Depth: 1",
        b"Depth: x",
        b"Destination: /dav/b",
        b"Destination: http://[::1",
        b"Overwrite: Q",
        b"If: (<x>)",
        b"Range: bytes=5-1",
        b"Content-Type: application/json",
        b"Expect: 100-continue",
        b"Timeout: Second-x",
        b"Lock-Token: <nope>",
        b"If-Match: *",
        b"X-OC-Mtime: 99999999999999999999",
    ]
    bodies = [
        b"",
        b"{}",
        b"<x/>",
        b"<?xml version='1.0'?><D:propfind xmlns:D='DAV:'/>",
        b'{"action": "move", "to": 5}',
        bytes(rng.randrange(256) for _ in range(64)),
    ]
    seen = []
    for _ in range(150):
        body = rng.choice(bodies)
        lines = [
            rng.choice(methods) + b" " + rng.choice(paths) + b" HTTP/1.1",
            b"Host: x",
            AUTH.strip(),
            b"Connection: close",
            b"Content-Length: %d" % len(body),
        ]
        lines += rng.sample(headers, rng.randrange(4))
        answer = exchange(server, b"\r\n".join(lines) + b"\r\n\r\n" + body, timeout=20)
        codes = statuses(answer)
        assert codes, (lines, answer[:300])
        assert all(code < 500 for code in codes), (lines, body, answer[:600])
        seen.extend(codes)
    assert len(set(seen)) > 5, seen  # (the requests reached many different answers)


def test_a_move_to_a_lone_surrogate_is_400(server: Server) -> None:
    """JSON can name a character that stands for no byte ("\\ud800"): 400 for any
    user, where a UnicodeEncodeError gave 500 and a traceback in the log."""
    (server.root / "s.txt").write_text("s")
    for action in ("move", "copy"):
        status, body = basic_request(
            server.http_port, "POST", "/api/v1/files/s.txt", "root", PASSWORD,
            b'{"action": "%s", "to": "/\\ud800"}' % action.encode(),
            **{"Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 400, (action, status, body)
    assert (server.root / "s.txt").read_text() == "s"
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize("value", [b"Basic \xff\xfe", b"Basic \xc3\xa9t\xc3\xa9", b"Bearer \xff"])
def test_credentials_that_are_not_ascii_are_401(server: Server, value: bytes) -> None:
    """Bytes past ASCII in Basic credentials were a 500 and a traceback."""
    answer = exchange(server, b"GET /api/v1/files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Authorization: " + value + b"\r\n\r\n")  # fmt: skip
    assert statuses(answer) == [401], answer[:300]


def test_a_chunked_xml_body_is_bounded_and_read_like_any_other(server: Server) -> None:
    """A chunked PROPFIND body past 1 MiB is 413 (one of 3 MB was ignored: WsgiDAV read
    no body without a Content-Length, and answered 207); a small one is read."""
    big = b"<x>" + b"a" * (3 << 20) + b"</x>"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i : i + 65536]), big[i : i + 65536])
                      for i in range(0, len(big), 65536)) + b"0\r\n\r\n"  # fmt: skip
    head = (b"PROPFIND /dav/ HTTP/1.1\r\nHost: x\r\nDepth: 0\r\n" + AUTH
            + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")  # fmt: skip
    answer = exchange(server, head + chunks)
    assert statuses(answer) == [413], answer[:300]
    small = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/>'
             b"</D:prop></D:propfind>")  # fmt: skip
    answer = exchange(server, head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    assert statuses(answer) == [207], answer[:300]
    assert b"resourcetype" in answer and b"getlastmodified" not in answer  # (as asked)
    garbage = b"not xml at all"
    answer = exchange(server, head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(garbage), garbage))
    assert statuses(answer) == [400], answer[:300]


def test_two_different_content_lengths_are_400(server: Server) -> None:
    """Content-Length 5 and 7 in one request: cheroot kept the last (a 7-byte file was
    written), a proxy may keep the first; 400 (RFC 9112, 6.3). The same value twice
    is one length, and served."""
    answer = exchange(server, b"PUT /api/v1/files/two.txt HTTP/1.1\r\nHost: x\r\n" + AUTH
                      + b"Content-Length: 5\r\nContent-Length: 7\r\nConnection: close\r\n\r\n"
                      b"helloXX")  # fmt: skip
    assert statuses(answer) == [400], answer[:300]
    assert b"Content-Length is given twice" in answer
    assert not (server.root / "two.txt").exists()
    answer = exchange(server, b"PUT /api/v1/files/one.txt HTTP/1.1\r\nHost: x\r\n" + AUTH
                      + b"Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
                      b"hello")  # fmt: skip
    assert statuses(answer) == [201], answer[:300]


@pytest.mark.parametrize("length", [b"-1", b"+5", b"0_5", b"5x", b"0x5", b" "])
@pytest.mark.parametrize("prefix", [b"/dav/", b"/api/v1/files/"])
def test_a_content_length_that_is_not_digits_is_400_and_the_file_stays(
    server: Server, prefix: bytes, length: bytes
) -> None:
    """Content-Length is digits only (RFC 9110, 8.6): ``-1`` had WebDAV replace the
    file with an empty one; ``+5`` and ``0_5`` were read as 5, where a proxy in front
    may read them otherwise."""
    victim = server.root / "victim.txt"
    victim.write_bytes(b"precious")
    answer = exchange(server, b"PUT " + prefix + b"victim.txt HTTP/1.1\r\nHost: x\r\n" + AUTH
                      + b"Content-Length: " + length + b"\r\n\r\nhello", timeout=10)  # fmt: skip
    assert statuses(answer) == [400], answer[:300]
    assert victim.read_bytes() == b"precious"
    assert basic_request(server.http_port, "GET", "/dav/victim.txt", "root", PASSWORD) == (
        200,
        b"precious",
    )
