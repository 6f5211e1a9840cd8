"""Temp files of uploads a killed server left behind are removed at the next start; a
folder holding nothing but such leftovers can be removed; a live upload's temp file is
never touched."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    Server,
    basic_request,
    http_port,
    start_server,
    stop_server,
    wait_until,
    write_config,
)

from hoody_mount.core.upload_temps import Journal, is_temp


def _temps(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if is_temp(name)]


def _auth() -> str:
    return "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()


def _start_slow_put(port: int, path: str, total: int) -> socket.socket:
    """A PUT that sends its headers and 1 MiB of a ``total``-byte body, then waits."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {_auth()}\r\n"
        f"Content-Length: {total}\r\n\r\n".encode()
        + b"x" * (1 << 20)
    )
    return sock


def test_a_killed_servers_leftovers_go_at_the_next_start(tmp_path: Path, client_key: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    (root / "up").mkdir(parents=True)
    config = tmp_path / "c.toml"
    write_config(config, root, state, client_key.with_suffix(".pub").read_text().strip())
    for front in ("/dav/up/big.bin", "/api/v1/files/up/big.bin"):
        process, _port, banner = start_server(["--config", str(config)], tmp_path / "log1")
        sock = _start_slow_put(http_port(banner), front, 20 << 20)
        try:
            assert wait_until(lambda: bool(_temps(root / "up")), 30), os.listdir(root / "up")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            sock.close()
        assert _temps(root / "up"), "the temp file outlived the server"
        assert os.listdir(state / "uploads"), "the upload was noted"
        process, _port, banner = start_server(["--config", str(config)], tmp_path / "log2")
        try:
            assert _temps(root / "up") == [], os.listdir(root / "up")
            assert os.listdir(state / "uploads") == []
            assert not (root / "up" / "big.bin").exists()
        finally:
            stop_server(process)


def test_a_folder_of_leftovers_only_can_be_removed(server: Server) -> None:
    for name in ("sftp-empty", "api-empty"):
        folder = server.root / name
        folder.mkdir()
        (folder / ".big.bin.hoody-0123456789ab.part").write_bytes(b"left over")
    result = server.sftp_batch("rmdir /sftp-empty\n")
    assert result.returncode == 0, result.stderr
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    conn.request("DELETE", "/api/v1/files/api-empty", headers={"Authorization": _auth()})
    reply = conn.getresponse()
    assert reply.status == 204, reply.read()
    conn.close()
    assert not (server.root / "sftp-empty").exists() and not (server.root / "api-empty").exists()
    # A folder with anything else in it is not emptied.
    (server.root / "kept").mkdir()
    (server.root / "kept" / ".x.hoody-0123456789ab.part").write_bytes(b"left over")
    (server.root / "kept" / "real.txt").write_text("data")
    assert server.sftp_batch("rmdir /kept\n").returncode != 0
    assert sorted(os.listdir(server.root / "kept")) == [".x.hoody-0123456789ab.part", "real.txt"]


def test_a_live_uploads_temp_file_is_never_touched(server: Server) -> None:
    (server.root / "busy").mkdir()
    total = 3 << 20
    sock = _start_slow_put(server.http_port, "/api/v1/files/busy/live.bin", total)
    try:
        assert wait_until(lambda: bool(_temps(server.root / "busy")), 30)
        assert server.sftp_batch("rmdir /busy\n").returncode != 0
        assert _temps(server.root / "busy")
        sock.sendall(b"x" * (total - (1 << 20)))
        answer = sock.recv(4096)
        deadline = time.monotonic() + 30
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    finally:
        sock.close()
    assert (server.root / "busy" / "live.bin").stat().st_size == total
    assert _temps(server.root / "busy") == []


def test_no_user_may_make_or_touch_a_name_of_the_temp_files_form(server: Server) -> None:
    """Names of the temp files' form are the server's: listings hide them and a folder
    of nothing else is removed with them, so a user who could make one would hide a
    file, or have it deleted by an rmdir. Every front refuses them (403 / permission
    denied), to make, rename to, read or remove."""
    temp = ".report.hoody-0123456789ab.part"
    (server.root / "t").mkdir()
    (server.root / "t" / "plain.txt").write_text("plain")

    def http(method: str, path: str, **headers: str) -> int:
        conn = http_client(server)
        conn.request(method, path, body=b"payload", headers={"Authorization": _auth(), **headers})
        status = conn.getresponse().status
        conn.close()
        return status

    assert http("PUT", f"/api/v1/files/t/{temp}") == 403
    assert http("PUT", f"/dav/t/{temp}") == 403
    assert http("MOVE", "/dav/t/plain.txt", Destination=f"/dav/t/{temp}") == 403
    assert http("COPY", "/dav/t/plain.txt", Destination=f"/dav/t/{temp}/x") == 403
    assert http("GET", f"/api/v1/files/t/{temp}") == 403
    result = server.sftp_batch(f"-put /etc/hostname /t/{temp}\n-rename /t/plain.txt /t/{temp}\n")
    assert result.stderr.lower().count("permission denied") == 2, result.stderr
    assert sorted(os.listdir(server.root / "t")) == ["plain.txt"]
    assert (server.root / "t" / "plain.txt").read_text() == "plain"


def http_client(server: Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)


def _temp_in(folder: Path, key: str) -> tuple[str, int]:
    """A temp file of the temp files' form in ``folder`` and an fd of the folder."""
    name = f".f{key}.hoody-{key}.part"
    (folder / name).write_bytes(b"partial")
    return name, os.open(folder, os.O_RDONLY | os.O_DIRECTORY)


def test_the_journal_lists_what_a_crash_left_and_only_that(tmp_path: Path) -> None:
    """Uploads noted and never ended are swept; ended ones, a line cut by the crash and
    the notes of the file-per-upload journal of earlier versions are read right."""
    data = tmp_path / "data"
    data.mkdir()
    journal = Journal(tmp_path / "uploads")
    fds = []
    names = {}
    for key in ("0123456789ab", "111111111111", "222222222222"):
        names[key], fd = _temp_in(data, key)
        fds.append(fd)
        journal.record(names[key], fd)
    journal.forget(names["111111111111"])  # ended: its temp file is a live upload's now
    journal.close()  # (the server is killed: nothing more is written)
    with open(tmp_path / "uploads" / Journal.FILE, "ab") as out:
        out.write(b"+333333333333 2f746d")  # a line the crash cut
    old = data / ".g.hoody-444444444444.part"
    old.write_bytes(b"from an older version")
    (tmp_path / "uploads" / "444444444444").write_bytes(os.fsencode(old))
    for fd in fds:
        os.close(fd)
    assert Journal(tmp_path / "uploads").sweep() == 3
    assert sorted(os.listdir(data)) == [names["111111111111"]]
    assert os.listdir(tmp_path / "uploads") == []


def test_the_journal_stays_small(tmp_path: Path) -> None:
    """Emptied when no upload is in flight; rewritten with the live ones when uploads
    always overlap; a sweep after a compaction still finds the live one."""
    data = tmp_path / "data"
    data.mkdir()
    journal = Journal(tmp_path / "uploads")
    journal.COMPACT_AT = 4096
    file = tmp_path / "uploads" / Journal.FILE
    name, fd = _temp_in(data, "aaaaaaaaaaaa")
    journal.record(name, fd)
    journal.forget(name)
    assert file.stat().st_size == 0
    journal.record(name, fd)  # a long upload, with many short ones beside it
    for n in range(200):
        short = f".s.hoody-{n:012x}.part"
        journal.record(short, fd)
        journal.forget(short)
        assert file.stat().st_size <= 4096 + 1024  # (one note past the mark)
    journal.close()
    os.close(fd)
    assert Journal(tmp_path / "uploads").sweep() == 1
    assert os.listdir(data) == []


def test_an_upload_that_ends_after_shutdown_closed_the_journal_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Shutdown closes the journal while an upload still runs: its end writes nothing
    and warns of nothing, and the next start's sweep finds its temp file gone."""
    data = tmp_path / "data"
    data.mkdir()
    journal = Journal(tmp_path / "uploads")
    name, fd = _temp_in(data, "cccccccccccc")
    journal.record(name, fd)
    journal.close()
    os.rename(data / name, data / "done.txt")  # the upload ends: its rename
    with caplog.at_level(logging.DEBUG):
        journal.forget(name)
    assert caplog.records == []
    os.close(fd)
    assert Journal(tmp_path / "uploads").sweep() == 0
    assert os.listdir(data) == ["done.txt"]


def test_an_upload_whose_name_holds_a_newline_is_a_temp_file_like_any(server: Server) -> None:
    """A name may hold a line feed: its upload's temp file is still the server's (hidden
    from listings, refused by name, noted in the journal for a crash)."""
    (server.root / "nl").mkdir()
    sock = _start_slow_put(server.http_port, "/api/v1/files/nl/a%0Ab.bin", 3 << 20)
    try:
        assert wait_until(lambda: any("hoody-" in n for n in os.listdir(server.root / "nl")), 30)
        (name,) = [n for n in os.listdir(server.root / "nl") if "hoody-" in n]
        assert "\n" in name and is_temp(name)
        assert "hoody-" not in server.sftp_batch("ls -la /nl\n").stdout
        journal = server.state / "uploads" / Journal.FILE
        assert f"{os.fsencode(name).hex()}".encode() in journal.read_bytes()
    finally:
        sock.close()
    assert wait_until(lambda: _temps(server.root / "nl") == [], 30)


@pytest.mark.parametrize("prefix", ["/dav/", "/api/v1/files/"])
def test_an_upload_whose_folder_is_removed_meanwhile_says_so(server: Server, prefix: str) -> None:
    """A folder removed as a tree while an upload into it runs takes the temp file with
    it (as ``rm -rf`` would): the upload fails naming its own path and the removal,
    never the hidden temp file, and nothing is left."""
    (server.root / "gone").mkdir()
    total = 3 << 20
    sock = _start_slow_put(server.http_port, f"{prefix}gone/x.bin", total)
    try:
        assert wait_until(lambda: bool(_temps(server.root / "gone")), 30)
        status, body = basic_request(
            server.http_port, "DELETE", "/api/v1/files/gone?recursive", "root", PASSWORD
        )
        assert status == 204, body
        sock.sendall(b"x" * (total - (1 << 20)))
        answer = b""
        while b"removed while it ran" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    finally:
        sock.close()
    assert answer.startswith((b"HTTP/1.1 404", b"HTTP/1.1 409")), answer[:300]
    assert b"removed while it ran" in answer, answer[:600]
    assert b".hoody-" not in answer and b".part" not in answer, answer[:600]
    assert not (server.root / "gone").exists()
