"""Files whose times no HTTP date can carry (past the year 9999, or long before 1970)
are served by every front like any other: the date is clamped or left out, never a 500."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, Server, basic_request, cannot_run_here, served

FAR = 2 * 253402300800  # seconds: about the year 18000
TIMES = {"future.txt": FAR, "past.txt": -(10**11)}  # (-10^11 s: 3,000 years before 0 AD)


@pytest.fixture(scope="module")
def far(client_key: Path) -> Iterator[Server]:
    """A server over a tmpfs (ext4 keeps no time past 2446 nor before 1901), for every
    test here (they only read)."""
    if not os.path.isdir("/dev/shm"):
        cannot_run_here("no /dev/shm")
    base = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="far-times-"))
    try:
        with served(base, client_key) as server:
            for name, when in TIMES.items():
                path = server.root / name
                path.write_bytes(b"far")
                os.utime(path, ns=(when * 10**9, when * 10**9))
                if os.stat(path).st_mtime_ns != when * 10**9:
                    cannot_run_here("this filesystem clamps far times")
            yield server
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("name", sorted(TIMES))
@pytest.mark.parametrize(
    ("method", "where", "headers"),
    [
        ("GET", "/dav/", {}),
        ("HEAD", "/dav/", {}),
        ("GET", "/dav/", {"If-Modified-Since": "Thu, 01 Jan 2026 00:00:00 GMT"}),
        ("PROPFIND", "/dav/", {"Depth": "0"}),
        ("GET", "/api/v1/files/", {}),
        ("HEAD", "/api/v1/files/", {}),
        ("GET", "/api/v1/files/", {"If-Modified-Since": "Thu, 01 Jan 2026 00:00:00 GMT"}),
    ],
)
def test_http_fronts_answer_for_a_file_of_a_far_time(
    far: Server, name: str, method: str, where: str, headers: dict[str, str]
) -> None:
    status, body = basic_request(far.http_port, method, where + name, "root", PASSWORD, **headers)
    assert status in (200, 207, 304), body
    if method == "GET" and status == 200:
        assert body == b"far"


@pytest.mark.parametrize("query", ["?json", "", "?zip"])
def test_listings_show_a_folder_holding_files_of_far_times(far: Server, query: str) -> None:
    status, body = basic_request(far.http_port, "GET", "/api/v1/files/" + query, "root", PASSWORD)
    assert status == 200, body
    status, body = basic_request(far.http_port, "PROPFIND", "/dav/", "root", PASSWORD, Depth="1")
    assert status == 207, body
    for name in TIMES:
        assert name.encode() in body


def test_sftp_lists_and_fetches_files_of_far_times(far: Server) -> None:
    out = far.outside
    done = far.sftp_batch(f"ls -l /\nget /future.txt {out}/f\nget /past.txt {out}/p\n")
    assert done.returncode == 0, done.stderr
    assert "future.txt" in done.stdout and "past.txt" in done.stdout
    assert (far.outside / "f").read_bytes() == b"far"
