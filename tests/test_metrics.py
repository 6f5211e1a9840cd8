"""``GET /metrics``: the Prometheus text format, read with prometheus_client's own
parser, for administrators only; counters move by what clients did."""

from __future__ import annotations

import asyncio
import os

import asyncssh
from conftest import PASSWORD, READER_PASSWORD, Server, basic_request, wait_until
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
    status, body = basic_request(server.http_port, "GET", "/metrics", "reader", READER_PASSWORD)
    assert status == 403, body
    assert b"not jailed and may write" in body
