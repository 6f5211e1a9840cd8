"""``GET /metrics``: the Prometheus text format, read with prometheus_client's own
parser, for administrators only; counters move by what clients did."""

from __future__ import annotations

import asyncio
import http.client
import os
from pathlib import Path

import asyncssh
import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    password_hash,
    served,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families


def _metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = basic_request(server.http_port, "GET", "/metrics", "root", PASSWORD)
    assert status == 200, body
    values = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(values: dict, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_the_bytes_of_an_sftp_upload_and_a_webdav_download(
    server: Server,
) -> None:
    """An SFTP upload of 300,000 bytes adds exactly that to ``bytes_received`` for
    sftp; a WebDAV GET of it adds it to ``bytes_sent`` for webdav; logins are counted
    by protocol, method and result; the capacity is the served root's."""
    before = _metrics(server)
    data = os.urandom(300_000)
    local = server.root.parent / "upload.bin"
    local.write_bytes(data)

    async def upload() -> None:
        async with asyncssh.connect(
            "127.0.0.1", server.port, username="root", password=PASSWORD,
            known_hosts=None, client_keys=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
            await sftp.put(str(local), "/share/upload.bin")

    asyncio.run(upload())
    status, body = basic_request(server.http_port, "GET", "/dav/share/upload.bin", "root", PASSWORD)
    assert status == 200 and body == data
    basic_request(server.http_port, "GET", "/dav/", "root", "wrong")

    def moved() -> bool:
        now = _metrics(server)
        return _value(now, "hoody_mount_bytes_sent_total", protocol="webdav") > _value(
            before, "hoody_mount_bytes_sent_total", protocol="webdav"
        )

    assert wait_until(moved, 10)
    after = _metrics(server)
    for name, protocol in (
        ("hoody_mount_bytes_received_total", "sftp"),
        ("hoody_mount_bytes_sent_total", "webdav"),
    ):
        grew = _value(after, name, protocol=protocol) - _value(before, name, protocol=protocol)
        assert grew == len(data), (name, grew)
    logins = "hoody_mount_logins_total"
    ssh_ok = dict(protocol="ssh", method="password", result="ok")
    assert _value(after, logins, **ssh_ok) >= _value(before, logins, **ssh_ok) + 1
    http_failed = dict(protocol="http", method="password", result="failed")
    assert _value(after, logins, **http_failed) >= _value(before, logins, **http_failed) + 1
    st = os.statvfs(server.root)
    assert _value(after, "hoody_mount_filesystem_size_bytes") == st.f_blocks * st.f_frsize
    for gauge in ("hoody_mount_workers_busy", "hoody_mount_workers_queued",
                  "hoody_mount_banned_addresses"):  # fmt: skip
        assert (gauge, ()) in after, gauge


def test_an_open_sftp_session_is_a_connection(server: Server) -> None:
    """The ``connections`` gauge counts an SFTP session while it is open, and not after."""

    async def scenario() -> float:
        async with asyncssh.connect(
            "127.0.0.1", server.port, username="root", password=PASSWORD,
            known_hosts=None, client_keys=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
            await sftp.listdir("/")
            loop = asyncio.get_running_loop()
            during = await loop.run_in_executor(None, _metrics, server)
        return _value(during, "hoody_mount_connections", protocol="sftp")

    during = asyncio.run(scenario())
    assert during == 1
    assert wait_until(
        lambda: _value(_metrics(server), "hoody_mount_connections", protocol="sftp") == 0, 10
    )


def test_metrics_are_for_administrators_only(server: Server) -> None:
    """Anonymous: 401; a jailed or read-only user: 403."""
    status, _ = basic_request(server.http_port, "GET", "/metrics", "nobody", "x")
    assert status == 401
    assert _anonymous(server.http_port, "/metrics")[0] == 401
    status, body = basic_request(server.http_port, "GET", "/metrics", "reader", READER_PASSWORD)
    assert status == 403, body
    assert b"not jailed and may write" in body
    status, _ = basic_request(server.http_port, "DELETE", "/metrics", "root", PASSWORD)
    assert status == 405


def test_the_file_apis_bytes_are_labelled_api(server: Server) -> None:
    """An upload through the file API counts under ``api``, as its sessions do."""
    before = _metrics(server)
    status, _ = basic_request(
        server.http_port, "PUT", "/api/v1/files/share/api.bin", "root", PASSWORD, b"x" * 1234
    )
    assert status == 201
    assert wait_until(lambda: _grew(before, _metrics(server), BYTES_IN, protocol="api") == 1234, 10)
    assert _grew(before, _metrics(server), BYTES_IN, protocol="http") == 0


BYTES_IN = "hoody_mount_bytes_received_total"


def test_metrics_keep_to_the_users_protocols(tmp_path: Path, client_key: Path) -> None:
    """An unjailed read-write user allowed SFTP only gets no metrics over HTTP."""
    hashed = password_hash(PASSWORD)
    users = f'\n[users.sftponly]\npassword_hash = "{hashed}"\nprotocols = ["sftp"]\n'
    with served(tmp_path, client_key, users=users) as server:
        status, body = basic_request(server.http_port, "GET", "/metrics", "sftponly", PASSWORD)
    assert status == 403 and b"http is not allowed for sftponly" in body, body


def _grew(before: dict, after: dict, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


def _connect(server: Server) -> asyncssh.SSHClientConnection:
    return asyncssh.connect(
        "127.0.0.1", server.port, username="root", password=PASSWORD,
        known_hosts=None, client_keys=None,
    )  # fmt: skip


def test_sftp_requests_are_counted_by_name_and_result(server: Server) -> None:
    """Each SFTP request counts once under its name and how it ended (a READ past the
    end is ``eof``, a missing file ``not_found``, an existing folder ``conflict``), and
    its duration lands in the histogram: ``_count`` is the sum over results, buckets
    rise to it."""
    before = _metrics(server)

    async def session() -> None:
        async with _connect(server) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("/share/new.txt", "wb") as f:
                await f.write(b"x" * 1000)
            async with sftp.open("/share/new.txt", "rb") as f:
                assert await f.read(1000, 0) == b"x" * 1000
                assert await f.read(10, 1000) == b""
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat("/share/missing")
            with pytest.raises(asyncssh.SFTPFailure):
                await sftp.mkdir("/share/docs")
            await sftp.posix_rename("/share/new.txt", "/share/renamed.txt")

    asyncio.run(session())
    after = _metrics(server)
    ops = "hoody_mount_operations_total"
    expected = {
        ("open", "ok"): 2, ("write", "ok"): 1, ("read", "ok"): 1, ("read", "eof"): 1,
        ("close", "ok"): 2, ("stat", "not_found"): 1, ("mkdir", "conflict"): 1,
        ("posix-rename", "ok"): 1,
    }  # fmt: skip
    for (op, result), count in expected.items():
        assert _grew(before, after, ops, protocol="sftp", op=op, result=result) == count, op
    seconds = "hoody_mount_operation_seconds"
    for op in ("open", "read", "stat", "posix-rename"):
        total = sum(
            value for (name, labels), value in after.items()
            if name == ops and {("protocol", "sftp"), ("op", op)} <= set(labels)
        )  # fmt: skip
        count = _value(after, seconds + "_count", protocol="sftp", op=op)
        assert count == total > 0, op
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (name, labels), value in after.items()
            if name == seconds + "_bucket" and {("protocol", "sftp"), ("op", op)} <= set(labels)
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert buckets[-1] == (float("inf"), count)
        assert buckets[0][0] == 0.0001 and len(buckets) == 18
        assert 0 < _value(after, seconds + "_sum", protocol="sftp", op=op) < 10


def test_http_requests_scp_and_commands_are_counted(server: Server, tmp_path: Path) -> None:
    """WebDAV requests count by method, the file API's by its own names, each with the
    result its status says; a whole scp transfer and a command count once each."""
    port = server.http_port
    before = _metrics(server)
    status, _ = basic_request(port, "PROPFIND", "/dav/share/", "root", PASSWORD, Depth="1")
    assert status == 207
    assert basic_request(port, "GET", "/dav/share/docs/readme.txt", "root", "wrong")[0] == 401
    assert basic_request(port, "GET", "/api/v1/files/share/docs/readme.txt", "root",
                         PASSWORD)[0] == 200  # fmt: skip
    assert basic_request(port, "GET", "/api/v1/files/share/?json", "root", PASSWORD)[0] == 200
    assert basic_request(port, "GET", "/api/v1/files/share/nope", "root", PASSWORD)[0] == 404
    local = tmp_path / "up.txt"
    local.write_bytes(b"by scp\n")

    async def ssh() -> None:
        async with _connect(server) as conn:
            await asyncssh.scp(str(local), (conn, "/share/up.txt"))
            await asyncssh.scp((conn, "/share/up.txt"), str(tmp_path / "down.txt"))
            with pytest.raises(asyncssh.SFTPError):
                await asyncssh.scp((conn, "/share/missing.txt"), str(tmp_path / "no.txt"))
            done = await conn.run("sha256sum /share/up.txt")
            assert done.exit_status == 0, done.stderr

    asyncio.run(ssh())
    assert (tmp_path / "down.txt").read_bytes() == b"by scp\n"
    expected = [
        ("webdav", "propfind", "ok"), ("webdav", "get", "denied"), ("api", "read", "ok"),
        ("api", "list", "ok"), ("api", "read", "not_found"), ("scp", "scp-upload", "ok"),
        ("scp", "scp-download", "ok"), ("scp", "scp-download", "not_found"),
        ("command", "exec", "ok"),
    ]  # fmt: skip
    ops = "hoody_mount_operations_total"

    def grown() -> list[float]:  # (a request counts once its answer is closed)
        now = _metrics(server)
        return [_grew(before, now, ops, protocol=p, op=o, result=r) for p, o, r in expected]

    if not wait_until(lambda: grown() == [1] * len(expected), 10):
        raise AssertionError([*zip(expected, grown(), strict=True)])
    # the scrapes themselves (GETs, several above) are not counted
    assert _grew(before, _metrics(server), ops, protocol="webdav", op="get", result="ok") == 0


def _anonymous(port: int, path: str) -> tuple[int, bytes]:
    """A GET without credentials."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_metrics_public_answers_without_credentials(tmp_path: Path, client_key: Path) -> None:
    """``[http] metrics_public = true``: /metrics answers anyone, even with wrong
    credentials; the rest still needs a login."""
    with served(tmp_path, client_key, http="metrics_public = true") as server:
        status, body = _anonymous(server.http_port, "/metrics")
        assert status == 200
        names = {family.name for family in text_string_to_metric_families(body.decode())}
        assert {"hoody_mount_operations", "hoody_mount_operation_seconds"} <= names, names
        assert basic_request(server.http_port, "GET", "/metrics", "root", "wrong")[0] == 200
        assert _anonymous(server.http_port, "/dav/share/")[0] == 401
