"""Downloads of files over WebDAV and the file API: a file that shrinks or grows while
it is sent.

The answer's Content-Length was promised from the size at the start. When another
writer truncates the file mid-way, the server cannot keep that promise: it must end the
connection, so the client sees a short body at once, instead of waiting on a kept-alive
connection for bytes that never come (or getting padding it would take for the file).
A file that grows mid-way sends what was promised and not a byte more: a byte past
Content-Length would be read by the client as the start of the next answer.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoody_mount.core.read_ahead import THREAD_NAME
from tests.conftest import PASSWORD, Server, basic_request, wait_until

MIB = 1 << 20
BIG = 256 * MIB  # sparse: no disk used
SHRUNK = 96 * MIB  # well past what socket buffers can hold before the truncation
CLIENT_WAIT = 45.0  # a liveness bound: the server's idle connections wait 60 s


def _head_and_start(sock: socket.socket, path: str) -> tuple[bytes, int]:
    """Send a keep-alive GET; read the head; the Content-Length and the body bytes read
    with the head's last recv."""
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        piece = sock.recv(65536)
        assert piece, got
        got += piece
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return body, length


@contextlib.contextmanager
def _slow_download(
    server: Server, prefix: str, big: Path
) -> Iterator[tuple[socket.socket, bytearray]]:
    """A sparse file of BIG bytes and a slow reader of it: the head is read, and at
    least 1 MiB of the body (given back), so the server now waits on a full socket."""
    with open(big, "wb") as out:
        out.truncate(BIG)
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=CLIENT_WAIT)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        body, length = _head_and_start(sock, prefix + big.name)
        assert length == BIG
        received = bytearray(body)
        while len(received) < MIB:
            piece = sock.recv(65536)
            assert piece
            received += piece
        yield sock, received
    finally:
        sock.close()


@pytest.mark.parametrize("prefix", ["/dav/share/", "/api/v1/files/share/"])
def test_a_file_that_shrinks_mid_download_ends_the_connection(server: Server, prefix: str) -> None:
    """A slow reader; the file is truncated mid-way: the body ends short with the
    connection, and the server serves the next request."""
    big = server.root / "share" / "big.bin"
    with _slow_download(server, prefix, big) as (sock, start):
        received = len(start)
        os.truncate(big, SHRUNK)
        ended = False
        while True:
            try:
                piece = sock.recv(1 << 20)
            except TimeoutError:
                break  # the connection stayed open with the body unfinished
            if not piece:
                ended = True
                break
            received += len(piece)
    assert ended, f"the connection stayed open after {received} of {BIG} bytes"
    assert MIB <= received <= SHRUNK
    _serves_the_next_request(server, big)


@pytest.mark.parametrize("prefix", ["/dav/share/", "/api/v1/files/share/"])
def test_a_file_that_grows_mid_download_sends_what_was_promised(
    server: Server, prefix: str
) -> None:
    """A slow reader; bytes are appended mid-way: the body is the file as it was (its
    length and its zeros), nothing follows it, and the connection serves on."""
    big = server.root / "share" / "big.bin"
    with _slow_download(server, prefix, big) as (sock, received):
        length = BIG
        with open(big, "ab") as out:
            out.write(b"X" * (4 * MIB))
        while len(received) < length:
            piece = sock.recv(min(1 << 20, length - len(received)))
            assert piece, f"the body ended after {len(received)} of {length} bytes"
            received += piece
        assert len(received) == length and received.count(0) == length
        # Nothing past the body: the next bytes on the connection, if any, are the next
        # answer's (or the connection ends, which a client also reads right)
        token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
        request = f"HEAD {prefix}big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(f"{request}\r\n\r\n".encode())
        after = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in after:
                piece = sock.recv(65536)
                if not piece:
                    break
                after += piece
        assert after == b"" or after.startswith(b"HTTP/1.1 200"), after[:200]
    _serves_the_next_request(server, big)


def _serves_the_next_request(server: Server, big: Path) -> None:
    big.write_bytes(b"small now\n")
    for path in ("/dav/share/big.bin", "/api/v1/files/share/big.bin"):
        status, body = basic_request(server.http_port, "GET", path, "root", PASSWORD)
        assert (status, body) == (200, b"small now\n")


def _ahead_threads(pid: int) -> int:
    """The server's read-ahead helpers now (``core/read_ahead.py``)."""
    count = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            count += (task / "comm").read_text().strip() == THREAD_NAME
    return count


@pytest.mark.parametrize("prefix", ["/dav/share/", "/api/v1/files/share/"])
def test_read_ahead_sends_every_byte_of_whole_files_and_ranges(server: Server, prefix: str) -> None:
    """Files and ranges long enough to be read ahead come whole and in order."""
    data = os.urandom(MIB) * 19 + os.urandom(MIB // 3)
    (server.root / "share" / "ahead.bin").write_bytes(data)
    path = prefix + "ahead.bin"
    status, body = basic_request(server.http_port, "GET", path, "root", PASSWORD)
    assert status == 200 and body == data
    for first, last in ((5, 10 * MIB + 7), (MIB + 1, len(data) - 1), (3 * MIB, 3 * MIB)):
        status, body = basic_request(
            server.http_port, "GET", path, "root", PASSWORD, Range=f"bytes={first}-{last}"
        )
        assert status == 206 and body == data[first : last + 1], (first, last)


def test_clients_that_leave_mid_download_free_the_read_ahead(server: Server) -> None:
    """Downloads left by their clients stop their helpers; the server serves on."""
    big = server.root / "share" / "big.bin"
    with open(big, "wb") as out:
        out.truncate(BIG)
    socks = []
    try:
        for prefix in ("/dav/share/", "/api/v1/files/share/") * 2:
            sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=CLIENT_WAIT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            socks.append(sock)
            _head_and_start(sock, prefix + "big.bin")
        assert wait_until(lambda: _ahead_threads(server.process.pid) >= 4, 30)
    finally:
        for sock in socks:
            sock.close()
    assert wait_until(lambda: _ahead_threads(server.process.pid) == 0, 60)
    _serves_the_next_request(server, big)
